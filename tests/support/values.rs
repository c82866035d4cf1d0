//! JSON values as the tests walk them: every leaf with its path, and the value at a path.

use serde_json::Value;

/// Every leaf of `v` with its path (the keys from the root); an empty mapping is a leaf, and so
/// is a list.
pub fn leaves(v: &Value) -> Vec<(Vec<String>, Value)> {
    let mut out = Vec::new();
    collect(v, &mut Vec::new(), &mut out);
    out
}

fn collect(v: &Value, path: &mut Vec<String>, out: &mut Vec<(Vec<String>, Value)>) {
    match v {
        Value::Object(m) if !m.is_empty() => {
            for (k, v) in m {
                path.push(k.clone());
                collect(v, path, out);
                path.pop();
            }
        }
        _ => out.push((path.clone(), v.clone())),
    }
}

/// The value at `path` (keys of nested mappings), if every step of it is there.
pub fn at<'a, K: AsRef<str>>(v: &'a Value, path: &[K]) -> Option<&'a Value> {
    path.iter()
        .try_fold(v, |cur, k| cur.as_object()?.get(k.as_ref()))
}

/// A path as text, for messages: `servers.proxy.http.port`.
pub fn dotted<K: AsRef<str>>(path: &[K]) -> String {
    path.iter()
        .map(|k| k.as_ref())
        .collect::<Vec<_>>()
        .join(".")
}

/// A string value as text; anything else as the empty string.
pub fn str_of(v: &Value) -> &str {
    v.as_str().unwrap_or_default()
}
