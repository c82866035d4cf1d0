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
