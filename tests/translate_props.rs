//! Property tests (bounded fuzzing) of the translation from the legacy ConfigMaps to the CR:
//! nothing panics, no field of the legacy document is dropped or changed, CR-only fields stay,
//! the ports land where the contract says, and parsing agrees with serialization. A case found
//! here becomes a unit test in src/translate.rs. The case counts keep the whole file to a few
//! seconds; PROPTEST_CASES raises them for a longer run.

mod support;

use proptest::prelude::*;
use serde_json::{Map, Value, json};
use support::generators::*;
use support::values::{at, leaves};

use cp_mod_migrator::error::{Error, Source};
use cp_mod_migrator::names;
use cp_mod_migrator::translate::{
    Document, apply_to_spec, deep_merge, display_path, lost_fields, parse_legacy_document,
    parse_port, plan,
};

fn source() -> Source {
    Source {
        namespace: names::KYMA_SYSTEM.into(),
        name: names::config_maps::CONFIG.into(),
        key: Some(names::config_maps::CONFIG_KEY.into()),
    }
}

fn config(cases: u32) -> ProptestConfig {
    let defaults = ProptestConfig::default();
    ProptestConfig {
        // PROPTEST_CASES, when set, raises the count for a longer run.
        cases: cases.max(
            std::env::var("PROPTEST_CASES")
                .ok()
                .and_then(|v| v.parse().ok())
                .unwrap_or(0),
        ),
        // Findings become unit tests; no files are written next to the sources.
        failure_persistence: None,
        ..defaults
    }
}

// ---------------------------------------------------------------------------------------------
// Generators

/// Numbers of every JSON kind, the edges of the exactly representable ones included.
fn number() -> impl Strategy<Value = Value> {
    prop_oneof![
        any::<i64>().prop_map(Value::from),
        any::<u64>().prop_map(Value::from),
        any::<f64>()
            .prop_filter("finite", |f| f.is_finite())
            .prop_map(Value::from),
        prop::sample::select(vec![
            json!(0),
            json!(-0.0),
            json!(1),
            json!(1.0),
            json!(0.1),
            json!(9_007_199_254_740_992u64),
            json!(9_007_199_254_740_993u64),
            json!(9_007_199_254_740_992.0),
            json!(i64::MAX),
            json!(i64::MIN),
            json!(u64::MAX),
            json!(9.223_372_036_854_776e18),
            json!(1.844_674_407_370_955_2e19),
            json!(-9.223_372_036_854_776e18),
        ]),
    ]
}

/// The number as a float: what a store that keeps only float64 would hand back.
fn as_float(v: &Value) -> Value {
    v.as_f64().map(Value::from).unwrap_or(Value::Null)
}

/// The exact decimal value of a JSON number, to compare numbers without rounding.
fn exact(v: &Value) -> String {
    let s = match (v.as_i64(), v.as_u64(), v.as_f64()) {
        (Some(i), _, _) => i.to_string(),
        (_, Some(u), _) => u.to_string(),
        (_, _, Some(f)) if f.fract() == 0.0 => format!("{f:.0}"),
        (_, _, Some(f)) => format!("{:e}", f),
        _ => v.to_string(),
    };
    if s == "-0" { "0".into() } else { s }
}

/// Text made of YAML's structural tokens, to reach the parser's odd corners.
fn yamlish_text() -> impl Strategy<Value = String> {
    prop::collection::vec(
        prop::sample::select(vec![
            "a",
            "b",
            ":",
            ": ",
            " ",
            "  ",
            "\n",
            "\t",
            "- ",
            "[",
            "]",
            "{",
            "}",
            ",",
            "&x ",
            "*x",
            "!t ",
            "!!str ",
            "'",
            "\"",
            "#",
            "---",
            "...",
            "|",
            ">",
            "? ",
            "<<: ",
            "1",
            "-1",
            ".5",
            "~",
            "null",
            "true",
            "\\",
            "%YAML 1.2\n",
            "\u{0}",
            "é",
            "\r",
        ]),
        0..40,
    )
    .prop_map(|parts| parts.concat())
}

// ---------------------------------------------------------------------------------------------
// Helpers for the properties

const PORT_PATHS: [[&str; 4]; 3] = [
    ["servers", "proxy", "http", "port"],
    ["servers", "proxy", "rfcAndLdap", "port"],
    ["servers", "proxy", "socks5", "port"],
];

/// Whether the legacy document blocks a port: something on a port's way is not a mapping.
fn blocks_a_port(legacy: &Document) -> bool {
    let root = Value::Object(legacy.clone());
    PORT_PATHS.iter().any(|p| {
        (1..p.len()).any(|n| {
            let prefix: Vec<String> = p[..n].iter().map(|s| s.to_string()).collect();
            at(&root, &prefix).is_some_and(|v| !v.is_object())
        })
    })
}

fn numbers_equal(a: &Value, b: &Value) -> bool {
    lost_fields(a, b).is_empty() && lost_fields(b, a).is_empty()
}

// ---------------------------------------------------------------------------------------------
// Properties

proptest! {
    #![proptest_config(config(3000))]

    /// Any text: an answer, never a panic; an error names the ConfigMap and the key.
    #[test]
    fn parsing_any_text_never_panics(text in prop_oneof![any::<String>(), yamlish_text()]) {
        match parse_legacy_document(&source(), &text) {
            Ok(doc) => {
                // What parses once parses again, to the same document, after serializing it.
                let again = serde_saphyr::to_string(&Value::Object(doc.clone())).expect("serialize");
                let reparsed = parse_legacy_document(&source(), &again);
                prop_assert!(reparsed.is_ok(), "{again:?}: {:?}", reparsed.err());
                let reparsed = reparsed.expect("checked");
                prop_assert!(numbers_equal(&Value::Object(reparsed), &Value::Object(doc)));
            }
            Err(e) => {
                let msg = e.to_string();
                prop_assert!(
                    msg.contains("ConfigMap kyma-system/connectivity-proxy key \"connectivity-proxy-config.yml\""),
                    "{msg}"
                );
                prop_assert!(!msg.contains("line 0"), "{msg}");
            }
        }
    }

    /// Any port text: accepted only as the canonical decimal form of 1..=65535.
    #[test]
    fn ports_are_exactly_the_canonical_decimals(raw in prop_oneof![
        any::<String>(),
        "[+ -]?[0-9]{0,7}[ e.]?[0-9]{0,2}",
        (0u32..70_000).prop_map(|n| n.to_string()),
    ]) {
        match parse_port(&source(), &raw) {
            Ok(p) => {
                prop_assert!(p >= 1);
                prop_assert_eq!(p.to_string(), raw);
            }
            Err(e) => {
                let canonical = raw.parse::<u32>().ok().filter(|n| n.to_string() == raw);
                prop_assert!(
                    !canonical.is_some_and(|n| (1..=65535).contains(&n)),
                    "{raw:?} rejected: {e}"
                );
                prop_assert!(e.to_string().contains(&format!("value {raw:?}")), "{e}");
            }
        }
    }
}

proptest! {
    #![proptest_config(config(1000))]

    /// A document written as YAML parses back to exactly itself: no field dropped or changed.
    #[test]
    fn yaml_round_trip_keeps_every_field(doc in document()) {
        let text = serde_saphyr::to_string(&Value::Object(doc.clone())).expect("serialize");
        let parsed = parse_legacy_document(&source(), &text);
        prop_assert!(parsed.is_ok(), "{text}\n{:?}", parsed.err());
        let parsed = Value::Object(parsed.expect("checked"));
        let doc = Value::Object(doc);
        prop_assert!(numbers_equal(&parsed, &doc), "{text}\nparsed {parsed}\nwanted {doc}");
    }

    /// The merge keeps every leaf of the overlay and every leaf of the base it does not cover.
    #[test]
    fn merge_keeps_overlay_and_uncovered_base(base in value(), overlay in value()) {
        let mut merged = base.clone();
        deep_merge(&mut merged, &overlay);
        prop_assert!(lost_fields(&overlay, &merged).is_empty(), "overlay lost in {merged}");
        let base_leaves = leaves(&base);
        for (path, v) in base_leaves {
            // Covered: the overlay holds something at a prefix of the path that is not a mapping,
            // or at the path itself.
            let covered = (0..=path.len()).any(|n| {
                at(&overlay, &path[..n]).is_some_and(|o| !o.is_object() || n == path.len())
            });
            if !covered {
                prop_assert_eq!(at(&merged, &path), Some(&v), "{:?} lost", path);
            }
        }
    }

    /// The plan: every legacy field arrives, CR-only fields stay, the ports land at their
    /// paths, the tenant mode is decided by the merged config, and errors are the right ones.
    #[test]
    fn plan_loses_nothing(
        current in prop::collection::btree_map(key(), value(), 0..6),
        legacy in document(),
        ports in prop::array::uniform3(1u16..=65535),
        tenant in prop::option::of(prop::sample::select(vec![
            json!("dedicated"), json!("shared"), json!("Shared"), json!(null), json!(1),
        ])),
    ) {
        let mut legacy = legacy;
        if let Some(t) = tenant {
            legacy.insert(names::TENANT_MODE_FIELD.into(), t);
        }
        let current = Value::Object(current.into_iter().collect::<Map<_, _>>());
        let result = plan(Some(&current), &legacy, ports);
        if blocks_a_port(&legacy) {
            prop_assert!(matches!(result, Err(Error::InvalidConfig { .. })), "{:?}", result);
            return Ok(());
        }
        let mut merged_tenant = current.get(names::TENANT_MODE_FIELD).cloned();
        if let Some(t) = legacy.get(names::TENANT_MODE_FIELD) {
            merged_tenant = Some(t.clone());
        }
        let expect_shared = match &merged_tenant {
            None => Some(false),
            Some(Value::String(s)) if s == "dedicated" => Some(false),
            Some(Value::String(s)) if s == "shared" => Some(true),
            Some(_) => None,
        };
        let Some(expect_shared) = expect_shared else {
            prop_assert!(matches!(result, Err(Error::UnknownTenantMode { .. })), "{:?}", result);
            return Ok(());
        };
        prop_assert!(result.is_ok(), "{:?}", result.as_ref().err());
        let p = result.expect("checked");
        prop_assert_eq!(p.shared_tenant, expect_shared);

        // Every legacy leaf, as it was (the three ports excepted: those come from the info map).
        let legacy_leaves = leaves(&Value::Object(legacy.clone()));
        for (path, v) in legacy_leaves {
            if PORT_PATHS.iter().any(|pp| path.iter().map(String::as_str).eq(pp.iter().copied())) {
                continue;
            }
            let got = at(&p.config, &path);
            prop_assert!(
                got.is_some_and(|g| numbers_equal(g, &v) || (v.as_object().is_some_and(|m| m.is_empty()) && g.is_object())),
                "legacy {} = {} became {:?}", display_path(&path), v, got
            );
        }
        // The ports.
        for (pp, port) in PORT_PATHS.iter().zip(ports) {
            let path: Vec<String> = pp.iter().map(|s| s.to_string()).collect();
            prop_assert_eq!(at(&p.config, &path), Some(&json!(port)));
        }
        // CR-only leaves not covered by the legacy document stay.
        let legacy_root = Value::Object(legacy.clone());
        let current_leaves = leaves(&current);
        for (path, v) in current_leaves {
            let covered = (0..=path.len()).any(|n| {
                at(&legacy_root, &path[..n]).is_some_and(|o| !o.is_object() || n == path.len())
            }) || PORT_PATHS.iter().any(|pp| {
                // On a port's way (replaced by, or merged into, the mappings that hold it), or
                // at or below the port itself.
                let n = path.len().min(pp.len());
                path[..n].iter().map(String::as_str).eq(pp[..n].iter().copied())
            });
            if !covered {
                prop_assert_eq!(at(&p.config, &path), Some(&v), "CR field {} lost", display_path(&path));
            }
        }
        // What the plan expects to be stored is what applying it stores.
        let mut spec = json!({"config": current, "secretConfig": {"integration": {"connectivityService": {"secretName": "auto-provision"}}}});
        prop_assert!(apply_to_spec(&mut spec, &p).is_ok());
        let lost = lost_fields(&p.expected_spec, &spec);
        prop_assert!(lost.is_empty(), "{:?}", lost);
        let secret = &spec["secretConfig"]["integration"]["connectivityService"]["secretName"];
        prop_assert_eq!(
            secret,
            &json!(if expect_shared { names::SHARED_TENANT_SECRET } else { "auto-provision" })
        );
    }

    /// The loss check calls two numbers the same only when they are exactly the same number:
    /// a value that a store rounded (to float64) is a changed value.
    #[test]
    fn lost_fields_compares_numbers_exactly(
        (a, b) in number().prop_flat_map(|a| {
            let rounded = as_float(&a);
            (Just(a), prop_oneof![Just(rounded), number()])
        })
    ) {
        let same = lost_fields(&json!({"n": a}), &json!({"n": b})).is_empty();
        prop_assert_eq!(same, exact(&a) == exact(&b), "{} vs {}", a, b);
    }

    /// The loss check sees every dropped or changed leaf, and nothing when nothing changed.
    #[test]
    fn lost_fields_sees_every_removed_leaf(v in value(), pick in any::<prop::sample::Index>()) {
        prop_assert!(lost_fields(&v, &v).is_empty());
        let all = leaves(&v);
        let (path, _) = pick.get(&all).clone();
        if path.is_empty() {
            return Ok(());
        }
        let mut without = v.clone();
        let mut cur = &mut without;
        for k in &path[..path.len() - 1] {
            cur = cur.get_mut(k).expect("path exists");
        }
        cur.as_object_mut().expect("mapping").remove(&path[path.len() - 1]);
        let lost = lost_fields(&v, &without);
        prop_assert!(!lost.is_empty(), "removing {} went unnoticed", display_path(&path));
    }
}
