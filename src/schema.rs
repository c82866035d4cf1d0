//! A CRD's structural schema, applied offline the way the API server applies it to a write:
//! numbers decoded as the server decodes them, unknown fields pruned, non-nullable nulls pruned
//! or defaulted, defaults applied, and then the object validated. The validation itself is the
//! `jsonschema` crate's; this module converts the CRD's OpenAPI v3 schema into a JSON Schema
//! that crate accepts, and implements pruning and defaulting after the API server's algorithms
//! (k8s.io/apiextensions-apiserver, `schema/pruning` and `schema/defaulting`).
//!
//! Not modelled, because the ConnectivityProxy CRD uses none of it: CEL rules
//! (`x-kubernetes-validations`, reported when present), `format`, the uniqueness of map-list
//! keys, validation ratcheting of unchanged invalid values, and the metadata of embedded
//! resources.

use std::collections::{BTreeMap, HashMap};

use serde_json::{Map, Number, Value};

use crate::error::{Error, Result, Violation};
use crate::names;

/// The ConnectivityProxy CRD this tool was built with.
pub const BUILT_IN_CRD: &str = include_str!("../fixtures/module/connectivityproxy-crd.yaml");
/// The default CR the module creates, which migrate starts from when the module is enabled.
pub const BUILT_IN_CR: &str = include_str!("../fixtures/module/default-cr.yaml");

/// The server's own message for a rejected write, from its causes:
/// `Kind.group "name" is invalid: [field: message, ...]`.
pub fn rejection_message(kind_group: &str, name: &str, violations: &[Violation]) -> String {
    let causes: Vec<String> = violations.iter().map(Violation::to_string).collect();
    match causes.as_slice() {
        [one] => format!("{kind_group} {name:?} is invalid: {one}"),
        _ => format!("{kind_group} {name:?} is invalid: [{}]", causes.join(", ")),
    }
}

/// The skeleton of a structural schema: what pruning and defaulting walk.
#[derive(Debug, Default)]
struct Node {
    properties: BTreeMap<String, Node>,
    additional: Option<Box<Node>>,
    items: Option<Box<Node>>,
    preserve_unknown: bool,
    embedded: bool,
    nullable: bool,
    default: Option<Value>,
    /// `type: integer`, for the server's check that a number is an int64.
    integer: bool,
}

impl Node {
    fn from_openapi(s: &Value) -> Node {
        let flag = |k: &str| s.get(k).and_then(Value::as_bool).unwrap_or(false);
        Node {
            properties: s
                .get("properties")
                .and_then(Value::as_object)
                .map(|p| {
                    p.iter()
                        .map(|(k, v)| (k.clone(), Node::from_openapi(v)))
                        .collect()
                })
                .unwrap_or_default(),
            // `additionalProperties: true` has no schema: the server prunes below it as below
            // a schema that names nothing, which an empty node does.
            additional: match s.get("additionalProperties") {
                Some(v @ Value::Object(_)) => Some(Box::new(Node::from_openapi(v))),
                Some(Value::Bool(true)) => Some(Box::default()),
                _ => None,
            },
            items: s
                .get("items")
                .filter(|v| v.is_object())
                .map(|v| Box::new(Node::from_openapi(v))),
            preserve_unknown: flag("x-kubernetes-preserve-unknown-fields"),
            embedded: flag("x-kubernetes-embedded-resource"),
            nullable: flag("nullable"),
            // A null default is no default to the server.
            default: s.get("default").filter(|d| !d.is_null()).cloned(),
            integer: s.get("type").and_then(Value::as_str) == Some("integer"),
        }
    }

    fn for_field(&self, key: &str) -> Option<&Node> {
        self.properties.get(key).or(self.additional.as_deref())
    }
}

const META_FIELDS: [&str; 3] = ["apiVersion", "kind", "metadata"];

/// Removes the fields the schema does not specify (pruning.Prune with root=true).
fn prune_root(x: &mut Value, root: &Node) {
    prune(x, Some(root), true);
}

fn prune(x: &mut Value, s: Option<&Node>, embedded_here: bool) {
    if let Some(s) = s
        && s.preserve_unknown
    {
        skip_prune(x, s, embedded_here);
        return;
    }
    match x {
        Value::Object(map) => {
            let Some(s) = s else {
                map.clear();
                return;
            };
            let embedded = embedded_here || s.embedded;
            map.retain(|k, v| {
                if embedded && META_FIELDS.contains(&k.as_str()) {
                    return true;
                }
                if let Some(prop) = s.properties.get(k) {
                    prune(v, Some(prop), false);
                    true
                } else if let Some(additional) = &s.additional {
                    prune(v, Some(additional), false);
                    true
                } else {
                    false
                }
            });
        }
        Value::Array(items) => {
            let item_schema = s.and_then(|s| s.items.as_deref());
            for v in items {
                prune(v, item_schema, false);
            }
        }
        _ => {}
    }
}

fn skip_prune(x: &mut Value, s: &Node, embedded_here: bool) {
    match x {
        Value::Object(map) => {
            let embedded = embedded_here || s.embedded;
            for (k, v) in map.iter_mut() {
                if embedded && META_FIELDS.contains(&k.as_str()) {
                    continue;
                }
                if let Some(prop) = s.properties.get(k) {
                    prune(v, Some(prop), false);
                } else if let Some(additional) = &s.additional {
                    prune(v, Some(additional), false);
                }
            }
        }
        Value::Array(items) => {
            if let Some(item_schema) = s.items.as_deref() {
                for v in items {
                    skip_prune(v, item_schema, false);
                }
            }
        }
        _ => {}
    }
}

fn is_non_nullable_null(x: &Value, s: Option<&Node>) -> bool {
    x.is_null() && s.is_some_and(|s| !s.nullable)
}

/// Removes nulls the schema does not allow and has no default for
/// (defaulting.PruneNonNullableNullsWithoutDefaults).
fn prune_nulls(x: &mut Value, s: Option<&Node>) {
    match x {
        Value::Object(map) => {
            map.retain(|k, v| {
                let schema = s.and_then(|s| s.for_field(k));
                if is_non_nullable_null(v, schema) && schema.is_some_and(|s| s.default.is_none()) {
                    return false;
                }
                prune_nulls(v, schema);
                true
            });
        }
        Value::Array(items) => {
            let item_schema = s.and_then(|s| s.items.as_deref());
            for v in items {
                prune_nulls(v, item_schema);
            }
        }
        _ => {}
    }
}

/// Applies defaults: a missing field, or a null the schema does not allow, becomes the default;
/// defaults are then defaulted in turn (defaulting.Default).
fn apply_defaults(x: &mut Value, s: Option<&Node>) {
    let Some(s) = s else { return };
    match x {
        Value::Object(map) => {
            for (k, prop) in &s.properties {
                let Some(default) = &prop.default else {
                    continue;
                };
                match map.get(k) {
                    Some(v) if !is_non_nullable_null(v, Some(prop)) => {}
                    _ => {
                        map.insert(k.clone(), default.clone());
                    }
                }
            }
            for (k, v) in map.iter_mut() {
                if let Some(prop) = s.properties.get(k) {
                    apply_defaults(v, Some(prop));
                } else if let Some(additional) = s.additional.as_deref() {
                    if is_non_nullable_null(v, Some(additional)) {
                        *v = additional.default.clone().unwrap_or(Value::Null);
                    }
                    apply_defaults(v, Some(additional));
                }
            }
        }
        Value::Array(items) => {
            let item_schema = s.items.as_deref();
            for v in items {
                if let Some(item_schema) = item_schema
                    && is_non_nullable_null(v, Some(item_schema))
                {
                    *v = item_schema.default.clone().unwrap_or(Value::Null);
                }
                apply_defaults(v, item_schema);
            }
        }
        _ => {}
    }
}

/// Numbers as the API server decodes a request body: an integer that fits in int64 stays one,
/// every other number becomes a float64.
fn decode_numbers(x: &mut Value) {
    match x {
        Value::Number(n) if n.as_i64().is_none() => {
            if let Some(f) = n.as_f64().and_then(Number::from_f64) {
                *n = f;
            }
        }
        Value::Object(map) => map.values_mut().for_each(decode_numbers),
        Value::Array(items) => items.iter_mut().for_each(decode_numbers),
        _ => {}
    }
}

/// The validation keywords of OpenAPI v3 that carry over to JSON Schema unchanged. Everything
/// else (`default`, `description`, `x-kubernetes-*`, ...) is no validation, or is converted.
const PLAIN_KEYWORDS: [&str; 13] = [
    "enum",
    "minLength",
    "maxLength",
    "minItems",
    "maxItems",
    "uniqueItems",
    "minProperties",
    "maxProperties",
    "multipleOf",
    "required",
    "minimum",
    "maximum",
    "type",
];

/// The CRD's schema as a JSON Schema (draft 7), and the original of every pattern it rewrote.
fn to_json_schema(s: &Value, patterns: &mut HashMap<String, String>) -> Value {
    let Some(obj) = s.as_object() else {
        return s.clone();
    };
    let mut out = Map::new();
    for k in PLAIN_KEYWORDS {
        if let Some(v) = obj.get(k) {
            out.insert(k.into(), v.clone());
        }
    }
    // OpenAPI v3 (like draft 4) marks an exclusive bound with a boolean next to it.
    for (bound, exclusive) in [
        ("maximum", "exclusiveMaximum"),
        ("minimum", "exclusiveMinimum"),
    ] {
        if obj.get(exclusive) == Some(&Value::Bool(true))
            && let Some(limit) = out.remove(bound)
        {
            out.insert(exclusive.into(), limit);
        }
    }
    if let Some(Value::String(p)) = obj.get("pattern") {
        let translated = go_pattern(p);
        patterns.insert(translated.clone(), p.clone());
        out.insert("pattern".into(), Value::String(translated));
    }
    if obj.get("x-kubernetes-int-or-string") == Some(&Value::Bool(true)) {
        out.insert("type".into(), serde_json::json!(["integer", "string"]));
    }
    if obj.get("nullable") == Some(&Value::Bool(true)) {
        nullable(&mut out);
    }
    nested_schemas(obj, &mut out, patterns);
    if obj.get("x-kubernetes-list-type").and_then(Value::as_str) == Some("set") {
        out.insert("uniqueItems".into(), Value::Bool(true));
    }
    Value::Object(out)
}

/// `nullable: true`: null is one more type, and one more value of an enum.
fn nullable(out: &mut Map<String, Value>) {
    match out.get_mut("type") {
        Some(Value::String(t)) => {
            let t = t.clone();
            out.insert("type".into(), serde_json::json!([t, "null"]));
        }
        Some(Value::Array(types)) => types.push(Value::from("null")),
        _ => {}
    }
    if let Some(Value::Array(options)) = out.get_mut("enum") {
        options.push(Value::Null);
    }
}

/// The schemas inside a schema (properties, additional properties, items, `not`, and the
/// lists of `allOf`, `anyOf`, `oneOf`), each translated in turn.
fn nested_schemas(
    obj: &Map<String, Value>,
    out: &mut Map<String, Value>,
    patterns: &mut HashMap<String, String>,
) {
    if let Some(props) = obj.get("properties").and_then(Value::as_object) {
        let props = props
            .iter()
            .map(|(k, v)| (k.clone(), to_json_schema(v, patterns)))
            .collect();
        out.insert("properties".into(), Value::Object(props));
    }
    for k in ["additionalProperties", "items", "not"] {
        match obj.get(k) {
            Some(v @ Value::Object(_)) => {
                out.insert(k.into(), to_json_schema(v, patterns));
            }
            Some(Value::Bool(b)) if k == "additionalProperties" => {
                out.insert(k.into(), Value::Bool(*b));
            }
            _ => {}
        }
    }
    for k in ["allOf", "anyOf", "oneOf"] {
        if let Some(Value::Array(list)) = obj.get(k) {
            let list = list.iter().map(|v| to_json_schema(v, patterns)).collect();
            out.insert(k.into(), Value::Array(list));
        }
    }
}

/// A Go (RE2) pattern for Rust's `regex` crate, whose syntax is RE2's. They differ in the Perl
/// classes: Go's `\d`, `\w`, `\s` are ASCII, Rust's are Unicode, so those become ASCII classes.
fn go_pattern(p: &str) -> String {
    let mut out = String::with_capacity(p.len());
    let mut chars = p.chars();
    let mut in_class = false;
    while let Some(c) = chars.next() {
        match c {
            '\\' => match chars.next() {
                Some(e @ ('d' | 'w' | 's' | 'D' | 'W' | 'S')) => {
                    let set = match e.to_ascii_lowercase() {
                        'd' => "0-9",
                        'w' => "0-9A-Za-z_",
                        _ => "\\t\\n\\f\\r ",
                    };
                    match (in_class, e.is_ascii_lowercase()) {
                        (true, true) => out.push_str(set),
                        // A negated class inside a class has no ASCII spelling; Unicode it stays.
                        (true, false) => {
                            out.push('\\');
                            out.push(e);
                        }
                        (false, true) => out.push_str(&format!("[{set}]")),
                        (false, false) => out.push_str(&format!("[^{set}]")),
                    }
                }
                Some(other) => {
                    out.push('\\');
                    out.push(other);
                }
                None => out.push('\\'),
            },
            '[' if !in_class => {
                in_class = true;
                out.push(c);
                // A `]` first in a class (after an optional `^`) is a literal.
                let rest = chars.as_str();
                let skip = match rest.as_bytes() {
                    [b'^', b']', ..] => 2,
                    [b']', ..] => 1,
                    _ => 0,
                };
                out.push_str(&rest[..skip]);
                chars = rest[skip..].chars();
            }
            ']' if in_class => {
                in_class = false;
                out.push(c);
            }
            _ => out.push(c),
        }
    }
    out
}

/// A CRD's schema for one version, ready to apply offline.
pub struct CrdSchema {
    /// Where the CRD came from, for messages: `built-in`, a file, or the cluster.
    pub origin: String,
    skeleton: Node,
    validator: jsonschema::Validator,
    patterns: HashMap<String, String>,
    /// Whether the schema has CEL rules, which this check does not evaluate.
    pub has_cel_rules: bool,
}

impl std::fmt::Debug for CrdSchema {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("CrdSchema")
            .field("origin", &self.origin)
            .finish_non_exhaustive()
    }
}

impl CrdSchema {
    /// The schema of the ConnectivityProxy CRD in `text` (YAML or JSON), at the CR's version.
    pub fn from_yaml(text: &str, origin: &str) -> Result<CrdSchema> {
        let crd: Value = crate::yaml::manifest(text).map_err(|e| Error::CrdSchema {
            origin: origin.into(),
            message: format!("not a YAML or JSON document: {e}"),
        })?;
        CrdSchema::from_crd(&crd, origin)
    }

    /// The schema of a ConnectivityProxy CRD object, at the CR's version.
    pub fn from_crd(crd: &Value, origin: &str) -> Result<CrdSchema> {
        let bad = |message: String| Error::CrdSchema {
            origin: origin.into(),
            message,
        };
        if crd["kind"] != "CustomResourceDefinition" {
            return Err(bad(format!(
                "kind is {}, expected CustomResourceDefinition",
                crd["kind"]
            )));
        }
        let (group, kind) = (&crd["spec"]["group"], &crd["spec"]["names"]["kind"]);
        if group != names::cr::GROUP || kind != names::cr::KIND {
            return Err(bad(format!(
                "it defines {kind} of group {group}, expected {} of group {}",
                names::cr::KIND,
                names::cr::GROUP
            )));
        }
        let version = crd["spec"]["versions"]
            .as_array()
            .and_then(|vs| vs.iter().find(|v| v["name"] == names::cr::VERSION))
            .ok_or_else(|| bad(format!("it has no version {}", names::cr::VERSION)))?;
        let openapi = &version["schema"]["openAPIV3Schema"];
        if !openapi.is_object() {
            return Err(bad(format!(
                "version {} has no schema.openAPIV3Schema",
                names::cr::VERSION
            )));
        }
        CrdSchema::from_openapi(openapi, origin)
    }

    /// A schema from an `openAPIV3Schema` value.
    pub fn from_openapi(openapi: &Value, origin: &str) -> Result<CrdSchema> {
        let mut patterns = HashMap::new();
        let json_schema = to_json_schema(openapi, &mut patterns);
        let validator = jsonschema::options()
            .with_draft(jsonschema::Draft::Draft7)
            .with_pattern_options(jsonschema::PatternOptions::regex())
            .build(&json_schema)
            .map_err(|e| Error::CrdSchema {
                origin: origin.into(),
                message: format!("its schema cannot be compiled: {e}"),
            })?;
        Ok(CrdSchema {
            origin: origin.into(),
            skeleton: Node::from_openapi(openapi),
            validator,
            patterns,
            has_cel_rules: has_key(openapi, "x-kubernetes-validations"),
        })
    }

    /// What the API server would store for a write of `object` (a whole CR), or why it would
    /// reject it.
    pub fn admit(&self, object: &Value) -> std::result::Result<Value, Vec<Violation>> {
        let mut x = object.clone();
        decode_numbers(&mut x);
        prune_root(&mut x, &self.skeleton);
        prune_nulls(&mut x, Some(&self.skeleton));
        apply_defaults(&mut x, Some(&self.skeleton));
        let mut violations: Vec<Violation> = self
            .validator
            .iter_errors(&x)
            // A float at an integer field is judged by `integer_checks`, as the server judges it.
            .filter(|e| !is_float_at_integer(e))
            .map(|e| self.violation(&e, &x))
            .collect();
        integer_checks(&x, &self.skeleton, &mut Vec::new(), &mut violations);
        if violations.is_empty() {
            return Ok(x);
        }
        violations.sort();
        violations.dedup();
        Err(violations)
    }

    fn violation(&self, e: &jsonschema::ValidationError<'_>, root: &Value) -> Violation {
        use jsonschema::error::ValidationErrorKind as K;
        let mut field = field_name(root, e.instance_path().as_str());
        let instance: &Value = e.instance();
        let invalid = |field: &str, detail: String| {
            (
                "FieldValueInvalid",
                format!(
                    "Invalid value: {}: {field} in body {detail}",
                    go_value(instance)
                ),
            )
        };
        let (reason, message) = match e.kind() {
            K::Required { property } => {
                let property = property.as_str().unwrap_or_default();
                field = if field.is_empty() {
                    property.to_string()
                } else {
                    format!("{field}.{property}")
                };
                ("FieldValueRequired", "Required value".to_string())
            }
            K::Type { kind } => {
                let expected = match kind {
                    jsonschema::error::TypeKind::Single(t) => t.to_string(),
                    jsonschema::error::TypeKind::Multiple(ts) => ts
                        .iter()
                        .map(|t| t.to_string())
                        .collect::<Vec<_>>()
                        .join(","),
                };
                let actual = openapi_type(instance);
                (
                    "FieldValueInvalid",
                    format!(
                        "Invalid value: {actual:?}: {field} in body must be of type {expected}: {actual:?}"
                    ),
                )
            }
            K::Pattern { pattern } => {
                let original = self.patterns.get(pattern).unwrap_or(pattern);
                invalid(&field, format!("should match '{original}'"))
            }
            K::Maximum { limit } => invalid(
                &field,
                format!("should be less than or equal to {}", go_value(limit)),
            ),
            K::ExclusiveMaximum { limit } => {
                invalid(&field, format!("should be less than {}", go_value(limit)))
            }
            K::Minimum { limit } => invalid(
                &field,
                format!("should be greater than or equal to {}", go_value(limit)),
            ),
            K::ExclusiveMinimum { limit } => invalid(
                &field,
                format!("should be greater than {}", go_value(limit)),
            ),
            K::MinLength { limit } => {
                invalid(&field, format!("should be at least {limit} chars long"))
            }
            K::MaxLength { limit } => (
                "FieldValueTooLong",
                format!("Too long: may not be more than {limit} bytes"),
            ),
            K::MinItems { limit } => invalid(&field, format!("should have at least {limit} items")),
            K::MaxItems { limit } => (
                "FieldValueTooMany",
                format!(
                    "Too many: {}: must have at most {limit} items",
                    instance.as_array().map(Vec::len).unwrap_or(0)
                ),
            ),
            K::MinProperties { limit } => {
                invalid(&field, format!("should have at least {limit} properties"))
            }
            K::MaxProperties { limit } => {
                invalid(&field, format!("should have at most {limit} properties"))
            }
            K::MultipleOf { multiple_of, .. } => invalid(
                &field,
                format!("should be a multiple of {}", go_float(*multiple_of)),
            ),
            K::Enum { options } => (
                "FieldValueNotSupported",
                format!(
                    "Unsupported value: {}: supported values: {}",
                    go_value(instance),
                    options
                        .as_array()
                        .map(|o| o.iter().map(go_value).collect::<Vec<_>>())
                        .unwrap_or_default()
                        .join(", ")
                ),
            ),
            K::UniqueItems => (
                "FieldValueDuplicate",
                format!("Duplicate value: {}", go_value(instance)),
            ),
            _ => invalid(&field, e.to_string()),
        };
        Violation {
            field,
            reason: reason.into(),
            message,
        }
    }
}

fn is_float_at_integer(e: &jsonschema::ValidationError<'_>) -> bool {
    use jsonschema::error::{TypeKind, ValidationErrorKind as K};
    let K::Type { kind } = e.kind() else {
        return false;
    };
    // Only `type: integer` alone: that is what `integer_checks` knows.
    matches!(kind, TypeKind::Single(jsonschema::JsonType::Integer)) && e.instance().is_number()
}

/// A JSON pointer as the API server names a field: `/spec/config/a` is `spec.config.a`, and
/// a list item is `[i]`.
fn field_name(root: &Value, pointer: &str) -> String {
    let mut out = String::new();
    let mut cur = Some(root);
    for token in pointer.split('/').skip(1) {
        let token = token.replace("~1", "/").replace("~0", "~");
        match cur {
            Some(Value::Array(items)) => {
                out.push_str(&format!("[{token}]"));
                cur = token.parse::<usize>().ok().and_then(|i| items.get(i));
            }
            other => {
                if !out.is_empty() {
                    out.push('.');
                }
                out.push_str(&token);
                cur = other.and_then(|v| v.get(&token));
            }
        }
    }
    out
}

/// The server's own checks of a float at an integer field, which JSON Schema's `integer` does
/// not make: its type check takes a float for an integer when it is within 2^53 and within a
/// relative 1e-6 of a whole number (go-openapi's `IsFloat64AJSONInteger`); and its range check
/// wants a whole number in int64's range, in a cause that names no field (`<nil>`).
fn integer_checks(x: &Value, s: &Node, path: &mut Vec<String>, out: &mut Vec<Violation>) {
    match x {
        Value::Number(n) if s.integer && n.as_i64().is_none() => {
            let f = n.as_f64().unwrap_or(f64::NAN);
            let field = path.join(".");
            if !is_json_integer(f) {
                out.push(Violation {
                    field: field.clone(),
                    reason: "FieldValueInvalid".into(),
                    message: format!(
                        "Invalid value: \"number\": {field} in body must be of type integer: \"number\""
                    ),
                });
            }
            if !(f.fract() == 0.0 && f >= i64::MIN as f64 && f < i64::MAX as f64) {
                out.push(Violation {
                    field: "<nil>".into(),
                    reason: "FieldValueInvalid".into(),
                    message: format!(
                        "Invalid value: \"\": Checked value must be of type integer (default format) in {field}"
                    ),
                });
            }
        }
        Value::Object(map) => {
            for (k, v) in map {
                if let Some(prop) = s.for_field(k) {
                    path.push(k.clone());
                    integer_checks(v, prop, path, out);
                    path.pop();
                }
            }
        }
        Value::Array(items) => {
            if let Some(item) = s.items.as_deref() {
                for (i, v) in items.iter().enumerate() {
                    let last = path.pop().unwrap_or_default();
                    path.push(format!("{last}[{i}]"));
                    integer_checks(v, item, path, out);
                    path.pop();
                    path.push(last);
                }
            }
        }
        _ => {}
    }
}

/// go-openapi's `swag.IsFloat64AJSONInteger`, as it behaves on amd64.
fn is_json_integer(f: f64) -> bool {
    const MAX_JSON_INTEGER: f64 = 9_007_199_254_740_991.0;
    if !f.is_finite() || f.abs() > MAX_JSON_INTEGER {
        return false;
    }
    if f.fract() == 0.0 {
        return true;
    }
    // Go's uint64() of a negative float is far from it, so only positive floats get the
    // tolerance; between 0 and 1 the whole part is 0, which gets none.
    let whole = f.trunc();
    f > 0.0 && whole > 0.0 && (f - whole) / (f + whole) < 1e-6
}

/// The OpenAPI type name of a value, as the API server's messages say it.
fn openapi_type(v: &Value) -> &'static str {
    match v {
        Value::Null => "null",
        Value::Bool(_) => "boolean",
        Value::Number(n) if n.is_f64() => "number",
        Value::Number(_) => "integer",
        Value::String(_) => "string",
        Value::Array(_) => "array",
        Value::Object(_) => "object",
    }
}

/// A value in an API server message: scalars as Go prints them, compound values by their type.
fn go_value(v: &Value) -> String {
    match v {
        Value::Array(_) | Value::Object(_) => format!("{:?}", openapi_type(v)),
        Value::Number(n) if n.is_f64() => n.as_f64().map(go_float).unwrap_or_default(),
        Value::String(s) => go_quote(s),
        other => other.to_string(),
    }
}

/// A string as Go's `%q` quotes it: printable characters as they are (Go's `unicode.IsPrint`:
/// letters, marks, numbers, punctuation, symbols and the ASCII space), the rest escaped.
fn go_quote(s: &str) -> String {
    use unicode_general_category::{GeneralCategory as G, get_general_category};
    let mut out = String::with_capacity(s.len() + 2);
    out.push('"');
    for c in s.chars() {
        match c {
            '"' => out.push_str("\\\""),
            '\\' => out.push_str("\\\\"),
            '\u{7}' => out.push_str("\\a"),
            '\u{8}' => out.push_str("\\b"),
            '\u{c}' => out.push_str("\\f"),
            '\n' => out.push_str("\\n"),
            '\r' => out.push_str("\\r"),
            '\t' => out.push_str("\\t"),
            '\u{b}' => out.push_str("\\v"),
            ' ' => out.push(' '),
            c => {
                let printable = !matches!(
                    get_general_category(c),
                    G::Control
                        | G::Format
                        | G::Surrogate
                        | G::PrivateUse
                        | G::Unassigned
                        | G::SpaceSeparator
                        | G::LineSeparator
                        | G::ParagraphSeparator
                );
                if printable {
                    out.push(c);
                } else if (c as u32) < 0x10000 {
                    out.push_str(&format!("\\u{:04x}", c as u32));
                } else {
                    out.push_str(&format!("\\U{:08x}", c as u32));
                }
            }
        }
    }
    out.push('"');
    out
}

/// A float64 as Go's `%v` prints it: the shortest digits, in exponent form when the exponent is
/// below -4 or at least 6 (`65535`, `1.5`, `1e+06`, `1.8446744073709552e+19`).
fn go_float(f: f64) -> String {
    let sci = format!("{f:e}");
    let (mantissa, exp) = sci.split_once('e').unwrap_or((&sci, "0"));
    let exp: i32 = exp.parse().unwrap_or(0);
    if (-4..6).contains(&exp) {
        return format!("{f}");
    }
    let sign = if exp < 0 { '-' } else { '+' };
    format!("{mantissa}e{sign}{:02}", exp.abs())
}

fn has_key(v: &Value, key: &str) -> bool {
    match v {
        Value::Object(m) => m.contains_key(key) || m.values().any(|v| has_key(v, key)),
        Value::Array(a) => a.iter().any(|v| has_key(v, key)),
        _ => false,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn schema(openapi: Value) -> CrdSchema {
        CrdSchema::from_openapi(&openapi, "test").expect("schema")
    }

    fn built_in() -> CrdSchema {
        CrdSchema::from_yaml(BUILT_IN_CRD, "built-in").expect("built-in CRD")
    }

    fn default_cr() -> Value {
        crate::yaml::manifest(BUILT_IN_CR).expect("built-in CR")
    }

    fn fields(v: &[Violation]) -> Vec<&str> {
        v.iter().map(|v| v.field.as_str()).collect()
    }

    #[test]
    fn the_built_in_crd_admits_the_built_in_cr_unchanged() {
        let cr = default_cr();
        let stored = built_in().admit(&cr).expect("valid");
        assert_eq!(stored["spec"], cr["spec"]);
    }

    #[test]
    fn the_minimal_cr_is_defaulted_like_the_server_does() {
        let minimal: Value =
            crate::yaml::manifest(include_str!("../fixtures/module/default-cr-minimal.yaml"))
                .expect("CR");
        let stored = built_in().admit(&minimal).expect("valid");
        let spec = &stored["spec"];
        assert_eq!(spec["config"]["tenantMode"], json!("dedicated"));
        assert_eq!(spec["config"]["highAvailabilityMode"], json!("off"));
        assert_eq!(
            spec["config"]["servers"]["businessDataTunnel"]["externalPort"],
            json!(443)
        );
        // A default is defaulted in turn: the proxy's default names each server, whose own
        // defaults fill in what it leaves out.
        assert_eq!(
            spec["config"]["servers"]["proxy"]["http"],
            json!({"enableProxyAuthorization": false, "enabled": true, "port": 20003})
        );
        assert_eq!(spec["deployment"]["replicaCount"], json!(1));
        assert_eq!(spec["ingress"]["timeouts"]["proxy"]["connect"], json!(20));
        // Fields the user set stay.
        assert_eq!(
            spec["secretConfig"]["integration"]["connectivityService"]["secretName"],
            json!("auto-provision")
        );
    }

    #[test]
    fn unknown_fields_are_pruned_at_every_depth_but_not_object_meta() {
        let mut cr = default_cr();
        cr["metadata"]["annotations"] = json!({"a": "b"});
        cr["extra"] = json!(1);
        cr["spec"]["unknownTop"] = json!({"x": 1});
        cr["spec"]["config"]["colour"] = json!("blue");
        cr["spec"]["config"]["servers"]["proxy"]["http"]["colour"] = json!("blue");
        let stored = built_in().admit(&cr).expect("valid");
        assert_eq!(stored["metadata"]["annotations"], json!({"a": "b"}));
        assert!(stored.get("extra").is_none());
        assert!(stored["spec"].get("unknownTop").is_none());
        assert!(stored["spec"]["config"].get("colour").is_none());
        assert!(
            stored["spec"]["config"]["servers"]["proxy"]["http"]
                .get("colour")
                .is_none()
        );
        assert_eq!(
            stored["spec"]["config"]["servers"]["proxy"]["http"]["port"],
            json!(20003)
        );
    }

    #[test]
    fn a_mapping_where_a_scalar_belongs_is_emptied_and_then_rejected() {
        let mut cr = default_cr();
        cr["spec"]["config"]["tenantMode"] = json!({"a": 1});
        let v = built_in().admit(&cr).unwrap_err();
        assert_eq!(fields(&v), ["spec.config.tenantMode"]);
        assert!(
            v[0].message.contains("must be of type string: \"object\""),
            "{v:?}"
        );
    }

    #[test]
    fn preserve_unknown_fields_keeps_unknown_but_prunes_below_known() {
        let s = schema(json!({
            "type": "object",
            "properties": {
                "free": {
                    "type": "object",
                    "x-kubernetes-preserve-unknown-fields": true,
                    "properties": {"known": {"type": "object", "properties": {"a": {"type": "string"}}}}
                },
                "map": {"type": "object", "additionalProperties": {"type": "object", "properties": {"x": {"type": "integer"}}}}
            }
        }));
        let stored = s
            .admit(&json!({
                "free": {"anything": {"deep": 1}, "known": {"a": "x", "b": "pruned"}},
                "map": {"k1": {"x": 1, "y": 2}},
                "gone": true
            }))
            .expect("valid");
        assert_eq!(
            stored,
            json!({"free": {"anything": {"deep": 1}, "known": {"a": "x"}}, "map": {"k1": {"x": 1}}})
        );
    }

    #[test]
    fn nulls_are_pruned_or_defaulted_unless_nullable() {
        let s = schema(json!({
            "type": "object",
            "properties": {
                "plain": {"type": "string"},
                "withDefault": {"type": "string", "default": "d"},
                "nullable": {"type": "string", "nullable": true},
                "list": {"type": "array", "items": {"type": "string", "default": "i"}}
            }
        }));
        let stored = s
            .admit(
                &json!({"plain": null, "withDefault": null, "nullable": null, "list": ["a", null]}),
            )
            .expect("valid");
        assert_eq!(
            stored,
            json!({"withDefault": "d", "nullable": null, "list": ["a", "i"]})
        );
    }

    #[test]
    fn required_pattern_range_type_and_length_are_named_like_the_server() {
        let s = schema(json!({
            "type": "object",
            "required": ["spec"],
            "properties": {"spec": {
                "type": "object",
                "required": ["name", "mode"],
                "properties": {
                    "name": {"type": "string", "pattern": "^[a-z]+$", "maxLength": 3, "minLength": 1},
                    "mode": {"type": "string", "enum": ["a", "b"]},
                    "port": {"type": "integer", "minimum": 1, "maximum": 65535},
                    "ratio": {"type": "number", "maximum": 1, "exclusiveMaximum": true},
                    "on": {"type": "boolean"},
                    "ios": {"x-kubernetes-int-or-string": true}
                }
            }}
        }));
        let v = s
            .admit(&json!({"spec": {"name": "ABCD", "port": 70000, "ratio": 1, "on": "yes", "ios": true}}))
            .unwrap_err();
        assert_eq!(
            fields(&v),
            [
                "spec.ios",
                "spec.mode",
                "spec.name",
                "spec.name",
                "spec.on",
                "spec.port",
                "spec.ratio"
            ]
        );
        let messages: Vec<String> = v.iter().map(Violation::to_string).collect();
        for expected in [
            "spec.mode: Required value",
            "spec.name: Invalid value: \"ABCD\": spec.name in body should match '^[a-z]+$'",
            "spec.name: Too long: may not be more than 3 bytes",
            "spec.on: Invalid value: \"string\": spec.on in body must be of type boolean: \"string\"",
            "spec.port: Invalid value: 70000: spec.port in body should be less than or equal to 65535",
            "spec.ratio: Invalid value: 1: spec.ratio in body should be less than 1",
        ] {
            assert!(messages.iter().any(|m| m == expected), "{messages:#?}");
        }
        assert!(
            s.admit(&json!({"spec": {"name": "ab", "mode": "a", "ios": "x"}}))
                .is_ok()
        );
        assert!(
            s.admit(&json!({"spec": {"name": "ab", "mode": "a", "ios": 8080}}))
                .is_ok()
        );
    }

    #[test]
    fn numbers_are_decoded_as_the_server_decodes_them() {
        let s = schema(json!({
            "type": "object",
            "properties": {"port": {"type": "integer", "maximum": 65535}, "n": {"type": "number"}}
        }));
        // An integral float is an integer to the server.
        assert_eq!(
            s.admit(&json!({"port": 443.0})).expect("valid")["port"],
            json!(443.0)
        );
        // Beyond int64, an integer becomes a float64.
        let stored = s.admit(&json!({"n": u64::MAX})).expect("valid");
        assert!(stored["n"].is_f64(), "{stored}");
        let v = s.admit(&json!({"port": 1.5})).unwrap_err();
        assert!(
            v.iter()
                .any(|v| v.message.ends_with("must be of type integer: \"number\"")),
            "{v:?}"
        );
    }

    #[test]
    fn strings_are_quoted_as_go_quotes_them() {
        assert_eq!(go_quote("a_b"), "\"a_b\"");
        assert_eq!(go_quote("\u{85}"), "\"\\u0085\"");
        assert_eq!(go_quote("a\tb\n\"\\"), "\"a\\tb\\n\\\"\\\\\"");
        assert_eq!(
            go_quote("ü é \u{a0}\u{2028}\u{feff}"),
            "\"ü é \\u00a0\\u2028\\ufeff\""
        );
        assert_eq!(go_quote("\u{10ffff}"), "\"\\U0010ffff\"");
    }

    #[test]
    fn floats_read_as_go_prints_them() {
        assert_eq!(go_float(65535.0), "65535");
        assert_eq!(go_float(1.5), "1.5");
        assert_eq!(go_float(-0.0001), "-0.0001");
        assert_eq!(go_float(0.00001), "1e-05");
        assert_eq!(go_float(1e6), "1e+06");
        assert_eq!(go_float(u64::MAX as f64), "1.8446744073709552e+19");
        assert_eq!(go_float(1e300), "1e+300");
    }

    #[test]
    fn a_float_at_an_integer_field_must_be_an_int64() {
        let s = schema(json!({
            "type": "object",
            "properties": {"ports": {"type": "array", "items": {"type": "integer"}}, "port": {"type": "integer"}}
        }));
        assert!(s.admit(&json!({"port": 443.0, "ports": [1.0]})).is_ok());
        let v = s
            .admit(&json!({"port": u64::MAX, "ports": [1, 2.5]}))
            .unwrap_err();
        let messages: Vec<String> = v.iter().map(Violation::to_string).collect();
        for expected in [
            "<nil>: Invalid value: \"\": Checked value must be of type integer (default format) in port",
            "<nil>: Invalid value: \"\": Checked value must be of type integer (default format) in ports[1]",
            "ports[1]: Invalid value: \"number\": ports[1] in body must be of type integer: \"number\"",
            // Beyond 2^53, a whole float is no integer to the type check either.
            "port: Invalid value: \"number\": port in body must be of type integer: \"number\"",
        ] {
            assert!(messages.iter().any(|m| m == expected), "{messages:#?}");
        }
    }

    #[test]
    fn go_patterns_keep_ascii_perl_classes() {
        assert_eq!(go_pattern(r"^\d+$"), "^[0-9]+$");
        assert_eq!(go_pattern(r"[\w.-]"), "[0-9A-Za-z_.-]");
        assert_eq!(go_pattern(r"\S"), r"[^\t\n\f\r ]");
        assert_eq!(go_pattern(r"[]\d]"), "[]0-9]");
        assert_eq!(go_pattern(r"\\d"), r"\\d");
        assert_eq!(
            go_pattern("^(off|path|subdomain)$"),
            "^(off|path|subdomain)$"
        );
        let s = schema(json!({"type": "string", "pattern": r"^\d+$"}));
        assert!(s.admit(&json!("123")).is_ok());
        // Arabic-Indic digits are digits to Rust's Unicode \d, not to Go's.
        assert!(s.admit(&json!("٨٠")).is_err());
    }

    #[test]
    fn a_crd_of_another_kind_or_without_the_version_is_refused() {
        let mut crd: Value = crate::yaml::manifest(BUILT_IN_CRD).expect("CRD");
        crd["spec"]["names"]["kind"] = json!("Other");
        let err = CrdSchema::from_crd(&crd, "f.yaml").unwrap_err().to_string();
        assert!(err.contains("f.yaml") && err.contains("Other"), "{err}");
        let mut crd: Value = crate::yaml::manifest(BUILT_IN_CRD).expect("CRD");
        crd["spec"]["versions"][0]["name"] = json!("v2");
        let err = CrdSchema::from_crd(&crd, "f.yaml").unwrap_err().to_string();
        assert!(err.contains("no version v1"), "{err}");
        let err = CrdSchema::from_yaml("a: [", "f.yaml")
            .unwrap_err()
            .to_string();
        assert!(err.contains("not a YAML or JSON document"), "{err}");
    }

    #[test]
    fn cel_rules_are_noticed() {
        assert!(!built_in().has_cel_rules);
        let s = schema(json!({"type": "object", "x-kubernetes-validations": [{"rule": "true"}]}));
        assert!(s.has_cel_rules);
    }

    #[test]
    fn rejection_message_reads_like_the_servers() {
        let v = Violation {
            field: "spec.a".into(),
            reason: "FieldValueRequired".into(),
            message: "Required value".into(),
        };
        assert_eq!(
            rejection_message(
                "ConnectivityProxy.connectivityproxy.sap.com",
                "connectivity-proxy",
                std::slice::from_ref(&v)
            ),
            "ConnectivityProxy.connectivityproxy.sap.com \"connectivity-proxy\" is invalid: spec.a: Required value"
        );
        assert!(
            rejection_message("K.g", "n", &[v.clone(), v])
                .ends_with(": [spec.a: Required value, spec.a: Required value]")
        );
    }
}
