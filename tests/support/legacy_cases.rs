//! The legacy ConfigMaps of a test cluster, set up case by case: the hostile and malformed
//! configurations, each with what the one error must name.

use std::collections::BTreeMap;

use k8s_openapi::ByteString;
use k8s_openapi::api::core::v1::ConfigMap;
use kube::Client;
use kube::api::DeleteParams;

use super::config_maps::{cm_api, put_configmap};
use super::contract::{USER_CONFIG, USER_CONFIG_KEY};

pub const CONFIG: &str = USER_CONFIG[0];
pub const KEY: &str = USER_CONFIG_KEY;
pub const INFO: &str = USER_CONFIG[1];
pub const OBJ: &str =
    "ConfigMap kyma-system/connectivity-proxy key \"connectivity-proxy-config.yml\"";
pub const INFO_OBJ: &str = "ConfigMap kyma-system/connectivity-proxy-info";

/// What a case does to the legacy ConfigMaps before `run`.
pub enum Setup {
    /// The configuration document.
    Document(String),
    /// A port value in connectivity-proxy-info.
    Port(&'static str, &'static str),
    /// A key removed from a ConfigMap.
    RemoveKey(&'static str, &'static str),
    /// A ConfigMap deleted.
    Delete(&'static str),
    /// The document moved to binaryData, as bytes that are not UTF-8.
    BinaryDocument(Vec<u8>),
}

pub struct Case {
    pub name: &'static str,
    pub setup: Setup,
    /// Each must appear in the one error.
    pub expect: Vec<String>,
}

pub fn case(name: &'static str, setup: Setup, expect: &[&str]) -> Case {
    Case {
        name,
        setup,
        expect: expect.iter().map(|s| s.to_string()).collect(),
    }
}

pub fn doc(text: &str) -> Setup {
    Setup::Document(text.to_string())
}

/// A document whose aliases would expand to 10^9 nodes.
pub fn alias_bomb() -> String {
    let mut text = String::from("a0: &a0 [lol, lol, lol, lol, lol, lol, lol, lol, lol, lol]\n");
    for i in 1..10 {
        let p = i - 1;
        let refs = vec![format!("*a{p}"); 10].join(", ");
        text.push_str(&format!("a{i}: &a{i} [{refs}]\n"));
    }
    text
}

/// 1 MiB of plausible configuration with one broken line at its very end.
pub fn mebibyte_broken_at_end() -> String {
    let mut text = String::from("tenantMode: dedicated\nservers:\n");
    let mut i = 0;
    while text.len() < (1 << 20) - 64 {
        text.push_str(&format!("  host{i:06}: {{externalHost: h{i}.example}}\n"));
        i += 1;
    }
    text.push_str("  last: [unclosed\n");
    text
}

/// 1 MiB (just under the ConfigMap limit) of fields the CRD does not know.
pub fn mebibyte_of_unknown_fields() -> String {
    let mut text = String::from("tenantMode: dedicated\n");
    let mut i = 0;
    while text.len() < (1 << 20) - 1024 {
        text.push_str(&format!("unknownField{i:06}: {}\n", "x".repeat(40)));
        i += 1;
    }
    text
}

pub fn hostile_cases() -> Vec<Case> {
    let line = "line";
    vec![
        // Not YAML, or not one mapping.
        case(
            "invalid YAML: unclosed flow sequence",
            doc("tenantMode: dedicated\nservers: [1, 2\n"),
            &[OBJ, "invalid YAML", line],
        ),
        case(
            "tabs for indentation",
            doc("servers:\n\tproxy:\n\t\thttp: {}\n"),
            &[OBJ, "invalid YAML", "line 2"],
        ),
        case(
            "a list as the document",
            doc("- tenantMode: dedicated\n- servers: {}\n"),
            &[OBJ, "the document is a list"],
        ),
        case(
            "a string as the document",
            doc("dedicated"),
            &[OBJ, "the document is a string"],
        ),
        case(
            "a number as the document",
            doc("20003"),
            &[OBJ, "the document is a number"],
        ),
        case(
            "an empty document",
            doc(""),
            &[OBJ, "the document is empty"],
        ),
        case(
            "a null document",
            doc("~\n"),
            &[OBJ, "the document is empty"],
        ),
        case(
            "two documents",
            doc("tenantMode: dedicated\n---\ntenantMode: shared\n"),
            &[
                OBJ,
                "invalid YAML at line 2, column 1: ",
                "more than one document",
            ],
        ),
        case(
            "duplicate keys",
            doc("tenantMode: dedicated\nsubaccountId: a\ntenantMode: shared\n"),
            &[OBJ, "duplicate", "tenantMode"],
        ),
        case(
            "a NUL byte",
            doc("tenantMode: dedicated\nsubaccountId: \"a\0b\"\n"),
            &[OBJ, "invalid YAML", line],
        ),
        case(
            "a YAML alias bomb",
            Setup::Document(alias_bomb()),
            &[OBJ, "invalid YAML at line ", "repetition limit exceeded"],
        ),
        case(
            "nesting 10000 deep",
            Setup::Document(format!(
                "servers: {}1{}\n",
                "[".repeat(10_000),
                "]".repeat(10_000)
            )),
            &[OBJ, "invalid YAML", line],
        ),
        {
            let text = mebibyte_broken_at_end();
            // The unclosed `[` of the last line.
            let at = format!("invalid YAML at line {}, column 9", text.lines().count());
            Case {
                name: "a 1 MiB document broken at its end",
                setup: Setup::Document(text),
                expect: vec![OBJ.to_string(), at],
            }
        },
        // YAML, but nothing the CR can hold.
        case(
            "a number as a mapping key",
            doc("servers:\n  8080: proxy\n"),
            &[OBJ, "field servers", "key 8080 is not a string"],
        ),
        case(
            "a custom YAML tag",
            doc("subaccountId: !secret abc\n"),
            &[OBJ, "field subaccountId", "!secret"],
        ),
        case(
            "NaN as a value",
            doc("servers:\n  businessDataTunnel:\n    externalPort: .nan\n"),
            &[OBJ, "field servers.businessDataTunnel.externalPort", ".nan"],
        ),
        case(
            "a string where the ports go",
            doc("servers:\n  proxy: direct\n"),
            &[OBJ, "servers.proxy", "not a mapping"],
        ),
        // Wrong types and values for the CRD or the contract.
        case(
            "an unknown tenant mode",
            doc("tenantMode: multi\n"),
            &[OBJ, "tenantMode", "\"multi\""],
        ),
        case(
            "tenant mode as a list",
            doc("tenantMode: [shared]\n"),
            &[OBJ, "tenantMode", "[\"shared\"]"],
        ),
        case(
            "tenant mode in capitals",
            doc("tenantMode: Shared\n"),
            &[OBJ, "tenantMode", "\"Shared\""],
        ),
        case(
            "a list where the schema wants a string",
            doc("tenantMode: dedicated\nhighAvailabilityMode: [on, off]\n"),
            &[
                "ConnectivityProxy kyma-system/connectivity-proxy",
                "highAvailabilityMode",
            ],
        ),
        case(
            "a field the CRD would prune",
            doc(
                "tenantMode: dedicated\nservers:\n  proxy:\n    http:\n      enabled: true\n      colour: blue\n",
            ),
            &[
                "ConnectivityProxy kyma-system/connectivity-proxy",
                "config.servers.proxy.http.colour",
                "nothing was written",
            ],
        ),
        case(
            "a 1 MiB document of fields the CRD would prune",
            Setup::Document(mebibyte_of_unknown_fields()),
            &[
                "ConnectivityProxy kyma-system/connectivity-proxy",
                "config.unknownField000000",
                "more fields",
                "nothing was written",
            ],
        ),
        // Missing pieces.
        case(
            "the configuration key missing",
            Setup::RemoveKey(CONFIG, KEY),
            &[OBJ, "is missing"],
        ),
        case(
            "the configuration ConfigMap missing",
            Setup::Delete(CONFIG),
            &["ConfigMap kyma-system/connectivity-proxy does not exist"],
        ),
        case(
            "the document as non-UTF-8 binaryData",
            Setup::BinaryDocument(b"tenantMode: \xff\xfe dedicated\n\x80".to_vec()),
            &[OBJ, "binaryData", "not UTF-8", "0xff at offset 12"],
        ),
        case(
            "the ports ConfigMap missing",
            Setup::Delete(INFO),
            &["ConfigMap kyma-system/connectivity-proxy-info does not exist"],
        ),
        case(
            "a port key missing",
            Setup::RemoveKey(INFO, "onpremise_socks5_proxy_port"),
            &[INFO_OBJ, "\"onpremise_socks5_proxy_port\"", "is missing"],
        ),
        // Ports.
        port_case("port 0", "onpremise_proxy_http_port", "0"),
        port_case("port 65536", "onpremise_proxy_http_port", "65536"),
        port_case("port abc", "onpremise_proxy_ldap_port", "abc"),
        port_case("port with a blank", "onpremise_proxy_http_port", " 80"),
        port_case(
            "port in exponent form",
            "onpremise_socks5_proxy_port",
            "8e1",
        ),
        port_case("negative port", "onpremise_proxy_ldap_port", "-1"),
        port_case("empty port", "onpremise_socks5_proxy_port", ""),
        port_case("port with a plus sign", "onpremise_proxy_http_port", "+80"),
        port_case(
            "port with a leading zero",
            "onpremise_proxy_http_port",
            "080",
        ),
        port_case(
            "port in Arabic-Indic digits",
            "onpremise_proxy_http_port",
            "٨٠",
        ),
        port_case(
            "port far beyond u64",
            "onpremise_proxy_http_port",
            "99999999999999999999999",
        ),
    ]
}

pub fn port_case(name: &'static str, key: &'static str, value: &'static str) -> Case {
    Case {
        name,
        setup: Setup::Port(key, value),
        expect: vec![
            INFO_OBJ.to_string(),
            format!("key {key:?}"),
            format!("value {value:?}"),
        ],
    }
}

pub async fn apply_setup(client: &Client, originals: &BTreeMap<String, ConfigMap>, setup: &Setup) {
    let api = cm_api(client);
    match setup {
        Setup::Document(text) => {
            let mut cm = originals[CONFIG].clone();
            cm.data
                .get_or_insert_with(BTreeMap::new)
                .insert(KEY.into(), text.clone());
            put_configmap(client, &cm).await;
        }
        Setup::Port(key, value) => {
            let mut cm = originals[INFO].clone();
            cm.data
                .get_or_insert_with(BTreeMap::new)
                .insert(key.to_string(), value.to_string());
            put_configmap(client, &cm).await;
        }
        Setup::RemoveKey(name, key) => {
            let mut cm = originals[*name].clone();
            cm.data.get_or_insert_with(BTreeMap::new).remove(*key);
            put_configmap(client, &cm).await;
        }
        Setup::Delete(name) => {
            api.delete(name, &DeleteParams::default())
                .await
                .expect("delete ConfigMap");
        }
        Setup::BinaryDocument(bytes) => {
            let mut cm = originals[CONFIG].clone();
            cm.data.get_or_insert_with(BTreeMap::new).remove(KEY);
            cm.binary_data
                .get_or_insert_with(BTreeMap::new)
                .insert(KEY.into(), ByteString(bytes.clone()));
            put_configmap(client, &cm).await;
        }
    }
}
