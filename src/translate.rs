//! Pure translation of the legacy ConfigMaps into the ConnectivityProxy spec: no I/O here.

use serde_json::{Map, Value};

use crate::error::{Error, Result, Source};
use crate::names;
use crate::yaml::{self, Item, Node};

/// The legacy configuration document, parsed into JSON values that the CR can hold.
pub type Document = Map<String, Value>;

/// Parses the `connectivity-proxy-config.yml` document. It must be one YAML mapping whose keys
/// are strings and whose values have a JSON form; anything else is an error that names where.
pub fn parse_legacy_document(source: &Source, text: &str) -> Result<Document> {
    // The reader refuses duplicate keys and a second document, and bounds nesting and alias
    // expansion, so hostile input fails fast instead of exhausting memory.
    let node = yaml::parse(text).map_err(|e| Error::InvalidYaml {
        input: source.clone(),
        line: e.line,
        column: e.column,
        message: e.message,
    })?;
    match to_json(source, &node, &mut Vec::new())? {
        Value::Object(map) => Ok(map),
        other => Err(Error::InvalidConfig {
            input: source.clone(),
            message: format!(
                "the document is {}, expected a mapping of configuration fields",
                describe(&other)
            ),
        }),
    }
}

/// The JSON value of a parsed YAML item: its tag, then its node (a scalar, a list or a mapping).
fn to_json(source: &Source, item: &Item, path: &mut Vec<String>) -> Result<Value> {
    if let Some(tag) = item.tag.as_deref().filter(|t| !yaml::is_core_tag(t)) {
        return Err(invalid(
            source,
            path,
            format!("YAML tag {} is not supported", yaml::tag_text(tag)),
        ));
    }
    let node = &item.node;
    match node {
        Node::Null => Ok(Value::Null),
        Node::Bool(b) => Ok(Value::Bool(*b)),
        Node::String(s) => Ok(Value::String(s.clone())),
        Node::Int(i) => Ok(Value::from(*i)),
        Node::UInt(u) => Ok(Value::from(*u)),
        Node::Float(f) => serde_json::Number::from_f64(*f)
            .map(Value::Number)
            .ok_or_else(|| {
                let text = yaml::scalar_text(node);
                let message = format!("value {text} has no JSON form (NaN or infinity)");
                invalid(source, path, message)
            }),
        Node::LargeInteger(literal) => Err(invalid(
            source,
            path,
            format!(
                "value {literal} is an integer beyond 64 bits, which the CR cannot hold exactly"
            ),
        )),
        Node::List(items) => list_to_json(source, items, path),
        Node::Mapping(entries) => mapping_to_json(source, entries, path),
    }
}

fn list_to_json(source: &Source, items: &[Item], path: &mut Vec<String>) -> Result<Value> {
    let mut out = Vec::with_capacity(items.len());
    for (i, item) in items.iter().enumerate() {
        path.push(format!("[{i}]"));
        out.push(to_json(source, item, path)?);
        path.pop();
    }
    Ok(Value::Array(out))
}

fn mapping_to_json(
    source: &Source,
    entries: &[(Item, Item)],
    path: &mut Vec<String>,
) -> Result<Value> {
    let mut out = Map::new();
    for (key, value) in entries {
        let key = key_text(source, key, path)?;
        // The reader compares keys with their tags; the CR only by their text.
        if out.contains_key(key) {
            return Err(invalid(source, path, format!("duplicate key {key:?}")));
        }
        path.push(key.clone());
        let value = to_json(source, value, path)?;
        path.pop();
        out.insert(key.clone(), value);
    }
    Ok(Value::Object(out))
}

/// A mapping key as the CR holds it: a string without a tag of its own.
fn key_text<'a>(source: &Source, key: &'a Item, path: &[String]) -> Result<&'a String> {
    let text = || yaml::scalar_text(&key.node);
    if let Some(tag) = key.tag.as_deref().filter(|t| !yaml::is_core_tag(t)) {
        let (text, tag) = (text(), yaml::tag_text(tag));
        let message = format!("key {text} has the YAML tag {tag}, which is not supported");
        return Err(invalid(source, path, message));
    }
    match &key.node {
        Node::String(key) => Ok(key),
        _ => Err(invalid(
            source,
            path,
            format!(
                "key {} is not a string; the CR only holds string keys",
                text()
            ),
        )),
    }
}

/// An invalid field of the legacy document, named by its path.
fn invalid(source: &Source, path: &[String], message: String) -> Error {
    Error::InvalidConfig {
        input: source.clone(),
        message: format!("field {}: {message}", display_path(path)),
    }
}

fn describe(v: &Value) -> &'static str {
    match v {
        Value::Null => "empty",
        Value::Bool(_) => "a boolean",
        Value::Number(_) => "a number",
        Value::String(_) => "a string",
        Value::Array(_) => "a list",
        Value::Object(_) => "a mapping",
    }
}

/// A port from `connectivity-proxy-info`: decimal digits only, no sign, no blanks, no leading
/// zero, 1 to 65535. Anything looser could turn a typo into a different port.
pub fn parse_port(source: &Source, raw: &str) -> Result<u16> {
    let bad = || Error::InvalidPort {
        input: source.clone(),
        value: raw.to_string(),
    };
    if raw.is_empty()
        || !raw.bytes().all(|b| b.is_ascii_digit())
        || raw.starts_with('0')
        || raw.len() > 5
    {
        return Err(bad());
    }
    match raw.parse::<u32>() {
        Ok(p @ 1..=65535) => Ok(p as u16),
        _ => Err(bad()),
    }
}

/// The three proxy ports, in the order of [`names::PORTS`].
pub fn parse_ports(
    namespace: &str,
    name: &str,
    data: &std::collections::BTreeMap<String, String>,
) -> Result<[u16; 3]> {
    let mut ports = [0u16; 3];
    for (slot, (key, _)) in ports.iter_mut().zip(names::PORTS.iter()) {
        let source = Source {
            namespace: namespace.into(),
            name: name.into(),
            key: Some((*key).into()),
        };
        let raw = data.get(*key).ok_or_else(|| Error::KeyMissing {
            input: source.clone(),
        })?;
        *slot = parse_port(&source, raw)?;
    }
    Ok(ports)
}

/// What migrate writes, computed from the CR's current config and the legacy configuration.
#[derive(Debug, Clone, PartialEq)]
pub struct Plan {
    /// The new `spec.config`.
    pub config: Value,
    /// Whether `spec.secretConfig.integration.connectivityService.secretName` is set to the
    /// shared-tenant secret.
    pub shared_tenant: bool,
    /// Everything migrated, as it must appear in the stored `spec`: the legacy document and
    /// the ports under `config`, and the secret name when shared.
    pub expected_spec: Value,
}

/// Deep-merges `overlay` into `base`: mappings merge key by key, anything else in `overlay`
/// replaces what `base` has, and keys only `base` has stay.
pub fn deep_merge(base: &mut Value, overlay: &Value) {
    match (base, overlay) {
        (Value::Object(b), Value::Object(o)) => {
            for (k, v) in o {
                match b.get_mut(k) {
                    Some(existing) => deep_merge(existing, v),
                    None => {
                        b.insert(k.clone(), v.clone());
                    }
                }
            }
        }
        (b, o) => *b = o.clone(),
    }
}

/// Sets `value` at `path` below `root`, creating mappings on the way; fails if something on the
/// way is not a mapping (it names that field).
fn set_path(root: &mut Value, path: &[&str], value: Value) -> std::result::Result<(), String> {
    let mut cur = root;
    for (i, key) in path.iter().enumerate() {
        let Value::Object(map) = cur else {
            return Err(display_path(&path[..i]));
        };
        if i + 1 == path.len() {
            map.insert((*key).to_string(), value);
            return Ok(());
        }
        cur = map
            .entry((*key).to_string())
            .or_insert_with(|| Value::Object(Map::new()));
    }
    Ok(())
}

/// Computes the new spec.config: current CR config, deep-merged with the legacy document, then
/// the three ports; and decides the tenant mode.
pub fn plan(current_config: Option<&Value>, legacy: &Document, ports: [u16; 3]) -> Result<Plan> {
    let config_source = Source {
        namespace: names::KYMA_SYSTEM.into(),
        name: names::config_maps::CONFIG.into(),
        key: Some(names::config_maps::CONFIG_KEY.into()),
    };
    let mut migrated = Value::Object(legacy.clone());
    for ((key, parent), port) in names::PORTS.iter().zip(ports) {
        let mut path: Vec<&str> = parent.to_vec();
        path.push(names::PORT_FIELD);
        set_path(&mut migrated, &path, Value::from(port)).map_err(|field| Error::InvalidConfig {
            input: config_source.clone(),
            message: format!(
                "field {field} is not a mapping, so the port from {}/{} key {key:?} cannot be placed under it",
                names::KYMA_SYSTEM,
                names::config_maps::INFO
            ),
        })?;
    }

    let mut config = match current_config {
        Some(c @ Value::Object(_)) => c.clone(),
        _ => Value::Object(Map::new()),
    };
    deep_merge(&mut config, &migrated);

    let shared_tenant = match config.get(names::TENANT_MODE_FIELD) {
        // The CRD defaults a missing tenantMode to dedicated.
        None => false,
        Some(Value::String(s)) if s == names::TENANT_SHARED => true,
        Some(Value::String(s)) if s == names::TENANT_DEDICATED => false,
        Some(other) => {
            return Err(Error::UnknownTenantMode {
                input: config_source,
                value: other.to_string(),
            });
        }
    };

    let mut expected_spec = Value::Object(Map::from_iter([("config".to_string(), migrated)]));
    if shared_tenant {
        deep_merge(
            &mut expected_spec,
            &nested(
                &names::SECRET_NAME_PATH,
                Value::from(names::SHARED_TENANT_SECRET),
            ),
        );
    }
    Ok(Plan {
        config,
        shared_tenant,
        expected_spec,
    })
}

/// `value` under the mappings named by `path`.
fn nested(path: &[&str], value: Value) -> Value {
    path.iter().rev().fold(value, |inner, key| {
        Value::Object(Map::from_iter([((*key).to_string(), inner)]))
    })
}

/// Applies a plan to a CR's `spec` (a JSON object): new config, and the secret name if shared.
pub fn apply_to_spec(spec: &mut Value, plan: &Plan) -> std::result::Result<(), String> {
    if !spec.is_object() {
        *spec = Value::Object(Map::new());
    }
    set_path(spec, &["config"], plan.config.clone())?;
    if plan.shared_tenant {
        set_path(
            spec,
            &names::SECRET_NAME_PATH,
            Value::from(names::SHARED_TENANT_SECRET),
        )?;
    }
    Ok(())
}

/// A migrated field that the stored object lacks, or holds with another value.
#[derive(Debug, Clone, PartialEq)]
pub struct Lost {
    /// Where, below `spec`: keys, and `[i]` for list items.
    pub path: Vec<String>,
    /// The value migrate wrote.
    pub expected: Value,
    /// What would be stored instead; `None` when the field is dropped.
    pub stored: Option<Value>,
}

impl Lost {
    /// The field as migrate names it, e.g. `config.servers.proxy.http.colour`.
    pub fn field(&self) -> String {
        display_path(&self.path)
    }
}

impl std::fmt::Display for Lost {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match &self.stored {
            None => write!(f, "{}: dropped", self.field()),
            Some(s) => write!(
                f,
                "{}: {} would be stored as {}",
                self.field(),
                self.expected,
                s
            ),
        }
    }
}

/// Every field of `expected` that `stored` lacks or holds with another value. Fields that
/// `stored` has in addition (server defaults) are fine; an empty mapping in `expected` only
/// needs a mapping in `stored`.
pub fn lost(expected: &Value, stored: &Value) -> Vec<Lost> {
    let mut out = Vec::new();
    compare(expected, Some(stored), &mut Vec::new(), &mut out);
    out
}

/// [`lost`] as readable lines ("config.foo.bar: dropped").
pub fn lost_fields(expected: &Value, stored: &Value) -> Vec<String> {
    lost(expected, stored).iter().map(Lost::to_string).collect()
}

fn compare(expected: &Value, stored: Option<&Value>, path: &mut Vec<String>, out: &mut Vec<Lost>) {
    let mut push = |stored: Option<&Value>| {
        out.push(Lost {
            path: path.clone(),
            expected: expected.clone(),
            stored: stored.cloned(),
        })
    };
    match (expected, stored) {
        (_, None) => push(None),
        (Value::Object(e), Some(Value::Object(s))) => {
            for (k, v) in e {
                path.push(k.clone());
                compare(v, s.get(k), path, out);
                path.pop();
            }
        }
        (Value::Array(e), Some(Value::Array(s))) if e.len() == s.len() => {
            for (i, (ev, sv)) in e.iter().zip(s).enumerate() {
                path.push(format!("[{i}]"));
                compare(ev, Some(sv), path, out);
                path.pop();
            }
        }
        (Value::Number(a), Some(Value::Number(b))) if same_number(a, b) => {}
        (e, Some(s)) if e == s => {}
        (_, Some(s)) => push(Some(s)),
    }
}

/// Equal as numbers, exactly: 443 and 443.0 are the same; an integer and the float it was
/// rounded to are not.
pub(crate) fn same_number(a: &serde_json::Number, b: &serde_json::Number) -> bool {
    match (exact_integer(a), exact_integer(b)) {
        (Some(x), Some(y)) => x == y,
        (None, None) => a.as_f64() == b.as_f64(),
        _ => false,
    }
}

/// The integer a number is exactly, if it is one (an integral float too).
fn exact_integer(n: &serde_json::Number) -> Option<i128> {
    if let Some(i) = n.as_i64() {
        return Some(i.into());
    }
    if let Some(u) = n.as_u64() {
        return Some(u.into());
    }
    let f = n.as_f64()?;
    // Integral floats of this size convert to i128 exactly; larger ones compare as floats.
    (f.fract() == 0.0 && f.abs() < 1e30).then_some(f as i128)
}

/// `a.b["c.d"][0]`: dotted where plain, quoted where a key has dots or blanks.
pub fn display_path<S: AsRef<str>>(path: &[S]) -> String {
    let mut out = String::new();
    for seg in path {
        let seg = seg.as_ref();
        if seg.starts_with('[')
            && seg.ends_with(']')
            && seg[1..seg.len() - 1].bytes().all(|b| b.is_ascii_digit())
        {
            out.push_str(seg);
        } else if !seg.is_empty()
            && seg
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || b == b'_' || b == b'-')
        {
            if !out.is_empty() {
                out.push('.');
            }
            out.push_str(seg);
        } else {
            out.push_str(&format!("[{seg:?}]"));
        }
    }
    if out.is_empty() {
        "(document root)".into()
    } else {
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn src() -> Source {
        Source {
            namespace: "kyma-system".into(),
            name: "connectivity-proxy".into(),
            key: Some("connectivity-proxy-config.yml".into()),
        }
    }

    fn doc(text: &str) -> Document {
        parse_legacy_document(&src(), text).unwrap()
    }

    #[test]
    fn parses_the_reference_document() {
        let d = doc(
            "highAvailabilityMode: \"off\"\nservers:\n  businessDataTunnel:\n    externalPort: 443\ntenantMode: dedicated\n",
        );
        assert_eq!(d["highAvailabilityMode"], json!("off"));
        assert_eq!(
            d["servers"]["businessDataTunnel"]["externalPort"],
            json!(443)
        );
    }

    #[test]
    fn yaml_1_1_booleans_stay_strings() {
        // YAML 1.2: `off` unquoted is a string, as the CRD's pattern for highAvailabilityMode wants.
        assert_eq!(
            doc("highAvailabilityMode: off")["highAvailabilityMode"],
            json!("off")
        );
    }

    #[test]
    fn invalid_yaml_names_line_and_column() {
        let err = parse_legacy_document(&src(), "a: 1\nb: [1, 2\nc: 3\n").unwrap_err();
        let Error::InvalidYaml { line, column, .. } = &err else {
            panic!("{err}")
        };
        assert!(*line >= 2, "line {line}");
        assert!(*column > 0);
        let msg = err.to_string();
        assert!(
            msg.contains(
                "ConfigMap kyma-system/connectivity-proxy key \"connectivity-proxy-config.yml\""
            ),
            "{msg}"
        );
        assert!(
            msg.contains(&format!("line {line}, column {column}")),
            "{msg}"
        );
    }

    #[test]
    fn tabs_are_invalid_yaml() {
        let err = parse_legacy_document(&src(), "a:\n\tb: 1\n").unwrap_err();
        assert!(matches!(err, Error::InvalidYaml { line: 2, .. }), "{err}");
    }

    #[test]
    fn non_mappings_are_rejected() {
        for (text, what) in [
            ("- a\n- b\n", "a list"),
            ("just a string", "a string"),
            ("42", "a number"),
            ("", "empty"),
            ("~", "empty"),
        ] {
            let err = parse_legacy_document(&src(), text).unwrap_err();
            assert!(
                err.to_string().contains(&format!("the document is {what}")),
                "{text:?}: {err}"
            );
        }
    }

    #[test]
    fn duplicate_keys_are_rejected() {
        let err = parse_legacy_document(&src(), "a: 1\na: 2\n").unwrap_err();
        assert!(err.to_string().contains("duplicate"), "{err}");
    }

    #[test]
    fn alias_bomb_does_not_expand() {
        let mut text = String::from("a0: &a0 [x, x, x, x, x, x, x, x, x, x]\n");
        for i in 1..12 {
            let p = i - 1;
            text.push_str(&format!("a{i}: &a{i} [*a{p}, *a{p}, *a{p}, *a{p}, *a{p}, *a{p}, *a{p}, *a{p}, *a{p}, *a{p}]\n"));
        }
        let start = std::time::Instant::now();
        let err = parse_legacy_document(&src(), &text).unwrap_err();
        assert!(start.elapsed() < std::time::Duration::from_secs(5));
        assert!(matches!(err, Error::InvalidYaml { .. }), "{err}");
    }

    #[test]
    fn deep_nesting_is_bounded() {
        let text = format!("{}1{}", "[".repeat(10_000), "]".repeat(10_000));
        let err = parse_legacy_document(&src(), &format!("a: {text}")).unwrap_err();
        assert!(matches!(err, Error::InvalidYaml { .. }), "{err}");
    }

    #[test]
    fn non_string_keys_and_tags_and_nan_are_named() {
        let err = parse_legacy_document(&src(), "servers:\n  8080: x\n").unwrap_err();
        assert!(
            err.to_string()
                .contains("field servers: key 8080 is not a string"),
            "{err}"
        );
        let err = parse_legacy_document(&src(), "a:\n  b: !custom 1\n").unwrap_err();
        assert!(
            err.to_string().contains("field a.b: YAML tag !custom"),
            "{err}"
        );
        let err = parse_legacy_document(&src(), "a: .nan\n").unwrap_err();
        assert!(
            err.to_string()
                .contains("field a: value .nan has no JSON form"),
            "{err}"
        );
    }

    #[test]
    fn values_the_reader_would_change_are_named() {
        for (text, want) in [
            (
                "a:\n  b: 99999999999999999999\n",
                "field a.b: value 99999999999999999999 is an integer beyond 64 bits",
            ),
            ("a: !!binary aGVsbG8=\n", "field a: YAML tag !!binary"),
            ("a: 1e999\n", "field a: value .inf has no JSON form"),
            (
                "a: [1, -.inf]\n",
                "field a[1]: value -.inf has no JSON form",
            ),
            ("a:\n  !t b: 1\n", "field a: key \"b\" has the YAML tag !t"),
            ("a: 1\n\"a\": 2\n", "duplicate key \"a\""),
            ("a: 1\n!!str a: 2\n", "duplicate key \"a\""),
        ] {
            let err = parse_legacy_document(&src(), text).unwrap_err();
            assert!(err.to_string().contains(want), "{text:?}: {err}");
        }
        // Core-schema tags are applied, not refused.
        let d = doc("a: !!str 1\nb: !!int \"2\"\nc: !!float 3\n");
        assert_eq!(json!(d), json!({"a": "1", "b": 2, "c": 3.0}));
    }

    #[test]
    fn multiple_documents_are_rejected() {
        assert!(parse_legacy_document(&src(), "a: 1\n---\nb: 2\n").is_err());
    }

    #[test]
    fn ports_are_strict() {
        for ok in ["1", "80", "20003", "65535"] {
            assert_eq!(parse_port(&src(), ok).unwrap().to_string(), ok);
        }
        for bad in [
            "",
            "0",
            "65536",
            "abc",
            " 80",
            "80 ",
            "8e1",
            "-1",
            "+80",
            "080",
            "1.0",
            "99999999999999999999",
            "٨٠",
        ] {
            let err = parse_port(&src(), bad).unwrap_err();
            assert!(
                err.to_string()
                    .contains(&format!("value {bad:?} is not a port")),
                "{bad:?}: {err}"
            );
        }
    }

    #[test]
    fn missing_port_key_is_named() {
        let mut data = std::collections::BTreeMap::new();
        data.insert("onpremise_proxy_http_port".to_string(), "20003".to_string());
        data.insert("onpremise_proxy_ldap_port".to_string(), "20001".to_string());
        let err = parse_ports("kyma-system", "connectivity-proxy-info", &data).unwrap_err();
        assert_eq!(
            err.to_string(),
            "ConfigMap kyma-system/connectivity-proxy-info key \"onpremise_socks5_proxy_port\" is missing"
        );
    }

    #[test]
    fn merge_keeps_cr_only_fields_and_legacy_wins() {
        let mut base = json!({"a": {"x": 1, "y": [1, 2]}, "only_cr": true, "s": "cr"});
        deep_merge(
            &mut base,
            &json!({"a": {"y": [3], "z": null}, "s": "legacy", "new": {"n": 1}}),
        );
        assert_eq!(
            base,
            json!({"a": {"x": 1, "y": [3], "z": null}, "only_cr": true, "s": "legacy", "new": {"n": 1}})
        );
    }

    #[test]
    fn merge_replaces_mapping_with_scalar_and_back() {
        let mut base = json!({"a": {"x": 1}, "b": 2});
        deep_merge(&mut base, &json!({"a": 5, "b": {"y": 1}}));
        assert_eq!(base, json!({"a": 5, "b": {"y": 1}}));
    }

    #[test]
    fn plan_sets_ports_and_keeps_every_legacy_leaf() {
        let current = json!({"subaccountId": "auto-provision", "serviceChannels": {"enabled": true}, "servers": {"proxy": {"http": {"port": 1}}}});
        let legacy = doc(
            "subaccountId: abc\nservers:\n  proxy:\n    http:\n      enabled: true\ntenantMode: dedicated\n",
        );
        let p = plan(Some(&current), &legacy, [20003, 20001, 20004]).unwrap();
        assert!(!p.shared_tenant);
        assert_eq!(p.config["subaccountId"], json!("abc"));
        assert_eq!(p.config["serviceChannels"], json!({"enabled": true}));
        assert_eq!(
            p.config["servers"]["proxy"]["http"],
            json!({"port": 20003, "enabled": true})
        );
        assert_eq!(
            p.config["servers"]["proxy"]["rfcAndLdap"]["port"],
            json!(20001)
        );
        assert_eq!(p.config["servers"]["proxy"]["socks5"]["port"], json!(20004));
        assert_eq!(p.expected_spec["config"]["subaccountId"], json!("abc"));
        assert!(lost_fields(&p.expected_spec, &json!({"config": p.config.clone()})).is_empty());
    }

    #[test]
    fn info_ports_win_over_legacy_document_ports() {
        let legacy = doc("servers:\n  proxy:\n    http:\n      port: 8080\n");
        let p = plan(None, &legacy, [20003, 20001, 20004]).unwrap();
        assert_eq!(p.config["servers"]["proxy"]["http"]["port"], json!(20003));
    }

    #[test]
    fn port_parent_that_is_not_a_mapping_fails() {
        let legacy = doc("servers:\n  proxy: direct\n");
        let err = plan(None, &legacy, [1, 2, 3]).unwrap_err();
        assert!(
            err.to_string()
                .contains("field servers.proxy is not a mapping"),
            "{err}"
        );
    }

    #[test]
    fn tenant_modes() {
        let shared = plan(None, &doc("tenantMode: shared"), [1, 2, 3]).unwrap();
        assert!(shared.shared_tenant);
        assert_eq!(
            shared.expected_spec["secretConfig"]["integration"]["connectivityService"]["secretName"],
            json!("connectivity-proxy-service-key")
        );
        assert!(
            !plan(None, &doc("tenantMode: dedicated"), [1, 2, 3])
                .unwrap()
                .shared_tenant
        );
        assert!(!plan(None, &doc("a: 1"), [1, 2, 3]).unwrap().shared_tenant);
        // The CR's own tenantMode counts when the legacy document has none.
        assert!(
            plan(
                Some(&json!({"tenantMode": "shared"})),
                &doc("a: 1"),
                [1, 2, 3]
            )
            .unwrap()
            .shared_tenant
        );
        for bad in [
            "tenantMode: Shared",
            "tenantMode: multi",
            "tenantMode: 1",
            "tenantMode: [shared]",
            "tenantMode: ~",
        ] {
            let err = plan(None, &doc(bad), [1, 2, 3]).unwrap_err();
            assert!(
                matches!(err, Error::UnknownTenantMode { .. }),
                "{bad}: {err}"
            );
        }
    }

    #[test]
    fn apply_sets_secret_only_when_shared() {
        let mut spec = json!({"config": {"old": 1}, "secretConfig": {"integration": {"connectivityService": {"secretName": "auto-provision"}}}});
        let p = plan(spec.get("config"), &doc("tenantMode: dedicated"), [1, 2, 3]).unwrap();
        apply_to_spec(&mut spec, &p).unwrap();
        assert_eq!(
            spec["secretConfig"]["integration"]["connectivityService"]["secretName"],
            json!("auto-provision")
        );
        assert_eq!(spec["config"]["old"], json!(1));
        let p = plan(spec.get("config"), &doc("tenantMode: shared"), [1, 2, 3]).unwrap();
        apply_to_spec(&mut spec, &p).unwrap();
        assert_eq!(
            spec["secretConfig"]["integration"]["connectivityService"]["secretName"],
            json!("connectivity-proxy-service-key")
        );
    }

    #[test]
    fn lost_fields_finds_drops_and_changes_but_not_defaults() {
        let expected = json!({"config": {"a": {"b": 1, "c": "x"}, "empty": {}, "list": [1, {"k": "v"}], "f": 1.0}});
        let stored = json!({"config": {"a": {"b": 1, "d": "default"}, "empty": {"enabled": false}, "list": [1, {"k": "w"}], "f": 1}});
        let lost = lost_fields(&expected, &stored);
        assert_eq!(
            lost,
            vec![
                "config.a.c: dropped".to_string(),
                "config.list[1].k: \"v\" would be stored as \"w\"".to_string()
            ]
        );
    }

    #[test]
    fn lost_fields_sees_an_integer_rounded_to_a_float() {
        // Found by tests/translate_props.rs: large integers came back as the float they round
        // to and counted as unchanged.
        for (sent, stored) in [
            (
                json!(12_364_193_473_415_531u64),
                json!(1.236_419_347_341_553_2e16),
            ),
            (json!(u64::MAX), json!(1.844_674_407_370_955_2e19)),
            (json!(i64::MAX), json!(9.223_372_036_854_776e18)),
        ] {
            assert_eq!(
                lost_fields(&json!({ "n": sent }), &json!({ "n": stored })).len(),
                1,
                "{sent} vs {stored}"
            );
        }
        // The same number in another form is no change.
        for (sent, stored) in [
            (json!(443), json!(443.0)),
            (
                json!(9_007_199_254_740_992u64),
                json!(9_007_199_254_740_992.0),
            ),
            (json!(-0.0), json!(0)),
            (json!(0.1), json!(0.1)),
        ] {
            assert!(
                lost_fields(&json!({ "n": sent }), &json!({ "n": stored })).is_empty(),
                "{sent} vs {stored}"
            );
        }
    }

    #[test]
    fn display_path_quotes_odd_keys() {
        assert_eq!(
            display_path(&["config", "a.b", "[0]", "c d"]),
            "config[\"a.b\"][0][\"c d\"]"
        );
    }
}
