//! What a plan changes in a configuration, field by field, for dry runs: the changed, added and
//! removed fields with their paths and values, and how many stayed as they were.

use std::fmt;

use serde_json::Value;

use crate::translate::{display_path, same_number};

/// One field that differs. Fields are the leaves of the mappings: scalars, lists (compared as a
/// whole) and empty mappings.
#[derive(Debug, Clone, PartialEq)]
pub enum Change {
    Changed {
        path: String,
        old: Value,
        new: Value,
    },
    Added {
        path: String,
        new: Value,
    },
    Removed {
        path: String,
        old: Value,
    },
}

/// The difference between two configurations.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct Diff {
    /// In path order.
    pub changes: Vec<Change>,
    /// Fields present and equal on both sides.
    pub unchanged: usize,
}

/// Compares `before` with `after`, naming fields from `root` (`config` gives
/// `config.servers.proxy.http.port`). A missing or null `before` counts as empty.
pub fn diff(root: &str, before: &Value, after: &Value) -> Diff {
    let empty = Value::Object(serde_json::Map::new());
    let before = if before.is_null() { &empty } else { before };
    let mut out = Diff::default();
    walk(before, after, &mut vec![root.to_string()], &mut out);
    out
}

fn walk(before: &Value, after: &Value, path: &mut Vec<String>, out: &mut Diff) {
    match (before, after) {
        (Value::Object(b), Value::Object(a)) if !b.is_empty() && !a.is_empty() => {
            let mut keys: Vec<&String> = b.keys().chain(a.keys()).collect();
            keys.sort();
            keys.dedup();
            for key in keys {
                path.push(key.clone());
                match (b.get(key), a.get(key)) {
                    (Some(bv), Some(av)) => walk(bv, av, path, out),
                    (Some(bv), None) => each_leaf(bv, path, &mut |path, v| {
                        out.changes.push(Change::Removed {
                            path,
                            old: v.clone(),
                        })
                    }),
                    (None, Some(av)) => each_leaf(av, path, &mut |path, v| {
                        out.changes.push(Change::Added {
                            path,
                            new: v.clone(),
                        })
                    }),
                    (None, None) => {}
                }
                path.pop();
            }
        }
        // An empty mapping on one side: the other side's fields are all added or removed.
        (Value::Object(b), Value::Object(a)) if b.is_empty() && !a.is_empty() => {
            each_leaf(after, path, &mut |path, v| {
                out.changes.push(Change::Added {
                    path,
                    new: v.clone(),
                })
            })
        }
        (Value::Object(b), Value::Object(a)) if !b.is_empty() && a.is_empty() => {
            each_leaf(before, path, &mut |path, v| {
                out.changes.push(Change::Removed {
                    path,
                    old: v.clone(),
                })
            })
        }
        (b, a) if same(b, a) => out.unchanged += 1,
        (b, a) => out.changes.push(Change::Changed {
            path: display_path(path),
            old: b.clone(),
            new: a.clone(),
        }),
    }
}

/// Equal as the CR would hold them: numbers by value (443 and 443.0 are the same).
fn same(a: &Value, b: &Value) -> bool {
    match (a, b) {
        (Value::Number(x), Value::Number(y)) => same_number(x, y),
        (Value::Array(x), Value::Array(y)) => {
            x.len() == y.len() && x.iter().zip(y).all(|(x, y)| same(x, y))
        }
        (Value::Object(x), Value::Object(y)) => {
            x.len() == y.len()
                && x.iter()
                    .all(|(k, xv)| y.get(k).is_some_and(|yv| same(xv, yv)))
        }
        (x, y) => x == y,
    }
}

fn each_leaf(v: &Value, path: &mut Vec<String>, f: &mut dyn FnMut(String, &Value)) {
    match v {
        Value::Object(m) if !m.is_empty() => {
            for (k, v) in m {
                path.push(k.clone());
                each_leaf(v, path, f);
                path.pop();
            }
        }
        _ => f(display_path(path), v),
    }
}

impl fmt::Display for Change {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Change::Changed { path, old, new } => write!(f, "changed {path}: {old} -> {new}"),
            Change::Added { path, new } => write!(f, "added   {path}: {new}"),
            Change::Removed { path, old } => write!(f, "removed {path}: {old}"),
        }
    }
}

/// One line per change, then the count of unchanged fields.
impl fmt::Display for Diff {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for change in &self.changes {
            writeln!(f, "{change}")?;
        }
        write!(
            f,
            "{} field{} unchanged",
            self.unchanged,
            if self.unchanged == 1 { "" } else { "s" }
        )
    }
}

/// The first field of `want` that `got` lacks or holds otherwise (fields the server added
/// count as equal), by path; never the values, which may be Secret data.
pub fn first_difference(path: &str, want: &Value, got: &Value) -> Option<String> {
    match (want, got) {
        (Value::Object(w), Value::Object(g)) => w.iter().find_map(|(k, v)| {
            let p = format!("{path}.{k}");
            match g.get(k) {
                Some(gv) => first_difference(&p, v, gv),
                None => Some(format!("{p} is missing")),
            }
        }),
        (Value::Array(w), Value::Array(g)) if w.len() == g.len() => w
            .iter()
            .zip(g)
            .enumerate()
            .find_map(|(i, (a, b))| first_difference(&format!("{path}[{i}]"), a, b)),
        _ if want == got => None,
        _ => Some(format!(
            "{} differs",
            if path.is_empty() { "the object" } else { path }
        )),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn changed_added_and_removed_fields_with_paths_and_values() {
        let before = json!({
            "servers": {"proxy": {"http": {"port": 20003, "enabled": true}}},
            "subaccountId": "auto-provision",
            "tenantMode": "dedicated",
            "old": {"a": 1, "b": [1, 2]},
        });
        let after = json!({
            "servers": {"proxy": {"http": {"port": 20004, "enabled": true}, "socks5": {"port": 20005}}},
            "subaccountId": "abc",
            "tenantMode": "dedicated",
            "old": 5,
            "extra": {"x": {"y": null}},
        });
        let d = diff("config", &before, &after);
        assert_eq!(
            d.changes,
            vec![
                Change::Added {
                    path: "config.extra.x.y".into(),
                    new: json!(null)
                },
                Change::Changed {
                    path: "config.old".into(),
                    old: json!({"a": 1, "b": [1, 2]}),
                    new: json!(5)
                },
                Change::Changed {
                    path: "config.servers.proxy.http.port".into(),
                    old: json!(20003),
                    new: json!(20004)
                },
                Change::Added {
                    path: "config.servers.proxy.socks5.port".into(),
                    new: json!(20005)
                },
                Change::Changed {
                    path: "config.subaccountId".into(),
                    old: json!("auto-provision"),
                    new: json!("abc")
                },
            ]
        );
        assert_eq!(d.unchanged, 2);
        assert_eq!(
            d.to_string(),
            "added   config.extra.x.y: null\n\
             changed config.old: {\"a\":1,\"b\":[1,2]} -> 5\n\
             changed config.servers.proxy.http.port: 20003 -> 20004\n\
             added   config.servers.proxy.socks5.port: 20005\n\
             changed config.subaccountId: \"auto-provision\" -> \"abc\"\n\
             2 fields unchanged"
        );
    }

    #[test]
    fn removed_fields_and_empty_mappings() {
        let d = diff(
            "config",
            &json!({"a": {"b": 1, "c": {"d": "x"}}, "e": {}}),
            &json!({"a": {}, "e": {}, "f": {}}),
        );
        assert_eq!(
            d.changes,
            vec![
                Change::Removed {
                    path: "config.a.b".into(),
                    old: json!(1)
                },
                Change::Removed {
                    path: "config.a.c.d".into(),
                    old: json!("x")
                },
                Change::Added {
                    path: "config.f".into(),
                    new: json!({})
                },
            ]
        );
        assert_eq!(d.unchanged, 1);
    }

    #[test]
    fn nothing_before_means_every_field_is_added() {
        let after = json!({"a": 1, "b": {"c": [1]}, "odd.key": true});
        for before in [json!(null), json!({})] {
            let d = diff("config", &before, &after);
            assert_eq!(d.unchanged, 0);
            assert_eq!(
                d.changes
                    .iter()
                    .map(ToString::to_string)
                    .collect::<Vec<_>>(),
                vec![
                    "added   config.a: 1",
                    "added   config.b.c: [1]",
                    "added   config[\"odd.key\"]: true"
                ]
            );
        }
    }

    #[test]
    fn same_values_in_another_form_are_unchanged() {
        let d = diff(
            "config",
            &json!({"port": 443, "list": [1.0, {"a": 2}]}),
            &json!({"port": 443.0, "list": [1, {"a": 2.0}]}),
        );
        assert!(d.changes.is_empty(), "{d}");
        assert_eq!(d.to_string(), "2 fields unchanged");
        let d = diff("config", &json!({"a": 1}), &json!({"a": 1}));
        assert_eq!(d.to_string(), "1 field unchanged");
    }
}
