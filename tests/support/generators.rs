//! Generators of legacy configurations for property tests and for the check-versus-server
//! agreement: keys that collide with the contract's paths, strings a YAML parser might take for
//! something else, and documents of any shape; and a deterministic sample of any of them.

use proptest::prelude::*;
use proptest::strategy::ValueTree;
use proptest::test_runner::TestRunner;
use serde_json::Value;

use cp_mod_migrator::translate::Document;

/// Keys that collide with the contract's paths often, plus odd and arbitrary ones.
pub fn key() -> impl Strategy<Value = String> {
    prop_oneof![
        4 => prop::sample::select(vec![
            "servers", "proxy", "http", "rfcAndLdap", "socks5", "port", "tenantMode",
            "enabled", "subaccountId", "integration", "highAvailabilityMode",
        ])
        .prop_map(String::from),
        2 => "[a-zA-Z][a-zA-Z0-9_.-]{0,8}",
        1 => prop::sample::select(vec![
            "", " ", "a b", "a.b", "8080", "true", "null", "~", "-", "? x", "#", "[0]", "ü", "\t",
            "key: value", "'", "\"", "&a", "*a", "!tag", "<<",
        ])
        .prop_map(String::from),
        1 => any::<String>(),
    ]
}

/// Strings a YAML parser might take for something else.
pub fn tricky_string() -> impl Strategy<Value = String> {
    prop::sample::select(vec![
        "off",
        "on",
        "yes",
        "no",
        "y",
        "n",
        "True",
        "FALSE",
        "~",
        "null",
        "Null",
        "1.0",
        "0x1F",
        "0o17",
        "1e3",
        ".nan",
        "-.inf",
        "08",
        "012",
        "+1",
        "1_000",
        "2001-12-14",
        "",
        " ",
        " a",
        "a ",
        "a: b",
        "- x",
        "#c",
        "'",
        "\"",
        "\t",
        "\n",
        "a\nb",
        "\r\n",
        "---",
        "...",
        "|",
        ">",
        "&anchor",
        "*alias",
        "!!str",
        "%YAML",
        "@",
        "`",
        "{}",
        "[]",
        "\u{feff}",
        "é",
        "\u{85}",
        "\u{2028}",
    ])
    .prop_map(String::from)
}

pub fn scalar() -> impl Strategy<Value = Value> {
    prop_oneof![
        Just(Value::Null),
        any::<bool>().prop_map(Value::Bool),
        any::<i64>().prop_map(Value::from),
        any::<u64>().prop_map(Value::from),
        any::<f64>()
            .prop_filter("finite", |f| f.is_finite())
            .prop_map(Value::from),
        tricky_string().prop_map(Value::String),
        any::<String>().prop_map(Value::String),
    ]
}

pub fn value() -> impl Strategy<Value = Value> {
    scalar().prop_recursive(4, 48, 5, |inner| {
        prop_oneof![
            prop::collection::vec(inner.clone(), 0..4).prop_map(Value::Array),
            prop::collection::btree_map(key(), inner, 0..5)
                .prop_map(|m| Value::Object(m.into_iter().collect())),
        ]
    })
}

pub fn document() -> impl Strategy<Value = Document> {
    prop::collection::btree_map(key(), value(), 0..6).prop_map(|m| m.into_iter().collect())
}

/// `n` values of `strategy`, the same ones on every run (a fixed seed).
pub fn sample<S: Strategy>(strategy: S, n: usize) -> Vec<S::Value> {
    let mut runner = TestRunner::deterministic();
    (0..n)
        .map(|_| {
            strategy
                .new_tree(&mut runner)
                .expect("a value from the generator")
                .current()
        })
        .collect()
}

/// Known fields of the ConnectivityProxy configuration (`spec.config`), each with values that
/// are valid, of a wrong type, out of range, against its pattern, or null.
fn known_fields() -> Vec<(&'static str, Vec<Value>)> {
    use serde_json::json;
    let flags = vec![
        json!(true),
        json!(false),
        json!("true"),
        json!(1),
        json!(null),
    ];
    let texts = vec![json!("a"), json!(""), json!(5), json!(null), json!(["a"])];
    vec![
        (
            "highAvailabilityMode",
            vec![
                json!("off"),
                json!("path"),
                json!("subdomain"),
                json!("on"),
                json!("OFF"),
                json!("off\n"),
                json!(false),
                json!(null),
            ],
        ),
        (
            "integration.auditlog.mode",
            vec![
                json!("console"),
                json!("service"),
                json!("file"),
                json!(null),
            ],
        ),
        ("integration.auditlog.serviceCredentialsKey", texts.clone()),
        (
            "integration.connectivityService.serviceCredentialsKey",
            texts.clone(),
        ),
        ("multiRegionMode.enabled", flags.clone()),
        ("multiRegionMode.configMapName", texts.clone()),
        ("servers.businessDataTunnel.externalHost", texts.clone()),
        (
            "servers.businessDataTunnel.externalPort",
            vec![
                json!(443),
                json!(1),
                json!(65535),
                json!(0),
                json!(65536),
                json!(-1),
                json!(443.0),
                json!(1.5),
                json!("443"),
                json!(u64::MAX),
                json!(null),
            ],
        ),
        ("servers.proxy.http.enabled", flags.clone()),
        ("servers.proxy.http.allowRemoteConnections", flags.clone()),
        (
            "servers.proxy.rfcAndLdap.enableProxyAuthorization",
            flags.clone(),
        ),
        ("servers.proxy.socks5.enabled", flags.clone()),
        (
            "servers.proxy.authorization.oauth.allowedClientId",
            texts.clone(),
        ),
        ("serviceChannels.enabled", flags),
        (
            "subaccountId",
            vec![
                json!("00000000-0000-0000-0000-000000000000"),
                json!("abc-123"),
                json!("a_b"),
                json!(""),
                json!("ü"),
                json!(7),
                json!(null),
            ],
        ),
        ("subaccountSubdomain", texts),
        ("tenantMode", vec![json!("dedicated"), json!("shared")]),
    ]
}

/// Mappings of the configuration where an unknown field can be put, from the top down.
const KNOWN_MAPPINGS: [&str; 7] = [
    "",
    "servers",
    "servers.proxy",
    "servers.proxy.http",
    "integration.auditlog",
    "servers.businessDataTunnel",
    "servers.proxy.authorization.oauth",
];

/// Legacy documents shaped like the ConnectivityProxy configuration: known fields at their real
/// paths with valid and invalid values, and unknown fields beside them at several depths.
pub fn schema_shaped_document() -> impl Strategy<Value = Document> {
    let fields = known_fields();
    let known = (0..fields.len()).prop_flat_map(move |i| {
        let (path, values) = fields[i].clone();
        prop_oneof![
            4 => prop::sample::select(values),
            1 => scalar(),
        ]
        .prop_map(move |v| (path.to_string(), v))
    });
    let unknown = (
        prop::sample::select(KNOWN_MAPPINGS.to_vec()),
        key(),
        scalar(),
    )
        .prop_map(|(parent, key, v)| {
            let path = if parent.is_empty() {
                key
            } else {
                format!("{parent}.{key}")
            };
            (path, v)
        });
    prop::collection::vec(prop_oneof![3 => known, 1 => unknown], 1..5).prop_map(|fields| {
        let mut root = Value::Object(Default::default());
        for (path, value) in fields {
            set_dotted(&mut root, &path, value);
        }
        match root {
            Value::Object(map) => map,
            _ => Document::new(),
        }
    })
}

/// Sets `value` at a dotted path, making every mapping on the way (replacing what is not one).
/// An unknown key with a dot in it lands in nested mappings too, which is just as unknown.
fn set_dotted(root: &mut Value, path: &str, value: Value) {
    let mut cur = root;
    let mut keys = path.split('.').peekable();
    while let Some(key) = keys.next() {
        if !cur.is_object() {
            *cur = Value::Object(Default::default());
        }
        let Value::Object(map) = cur else { return };
        if keys.peek().is_none() {
            map.insert(key.to_string(), value);
            return;
        }
        cur = map
            .entry(key.to_string())
            .or_insert_with(|| Value::Object(Default::default()));
    }
}
