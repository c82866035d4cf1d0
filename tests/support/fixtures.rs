//! The fixtures read as the tests need them, independently of the tool: the legacy document,
//! the default CR's configuration, a legacy ConfigMap; and a cluster with only part of them.

use k8s_openapi::api::core::v1::ConfigMap;
use serde_json::Value;

use super::contract::USER_CONFIG_KEY;
use super::{LEGACY, MODULE, TestCluster, fixture_dir, from_yaml};

/// The file of a fixture that holds the user configuration.
const CONFIG_FILE: &str = "30-configmap-connectivity-proxy.yaml";

/// ConfigMap `file` of the legacy fixture.
pub fn fixture_configmap(file: &str) -> ConfigMap {
    let text = std::fs::read_to_string(fixture_dir(LEGACY).join(file)).expect("fixture");
    from_yaml(&text)
}

/// The user configuration's ConfigMap of fixture `dir`.
pub fn legacy_configmap(dir: &str) -> ConfigMap {
    let text = std::fs::read_to_string(fixture_dir(dir).join(CONFIG_FILE)).expect("fixture");
    from_yaml(&text)
}

/// The legacy document of fixture `dir`, parsed independently of the tool.
pub fn legacy_document(dir: &str) -> Value {
    let cm = legacy_configmap(dir);
    from_yaml(&cm.data.expect("data")[USER_CONFIG_KEY])
}

/// `spec.config` of the module's default CR.
pub fn default_cr_config() -> Value {
    let text =
        std::fs::read_to_string(fixture_dir(MODULE).join("default-cr.yaml")).expect("fixture");
    let cr: Value = from_yaml(&text);
    cr["spec"]["config"].clone()
}

/// The legacy installation without the Istio and Gardener kinds and their objects (the BTP
/// operator's CRDs are there), and the module.
pub async fn legacy_without_istio_or_gardener() -> TestCluster {
    let c = TestCluster::start().await;
    let mut files: Vec<_> = std::fs::read_dir(fixture_dir(LEGACY))
        .expect("dir")
        .map(|e| e.expect("entry").path())
        .collect();
    files.sort();
    for f in files {
        let name = f.file_name().expect("name").to_string_lossy().to_string();
        if name.starts_with("80-") || name.starts_with("81-") {
            continue;
        }
        let text = std::fs::read_to_string(&f).expect("read");
        if name.starts_with("10-") {
            for doc in text.split("\n---") {
                if doc.contains("servicemappings.connectivityproxy.sap.com")
                    && doc.contains("CustomResourceDefinition")
                {
                    c.apply_yaml(doc).await;
                }
            }
            continue;
        }
        c.apply_yaml(&text).await;
    }
    c.apply_dir(&fixture_dir(MODULE)).await;
    c
}

/// The legacy PriorityClass back as the fixture has it, with label `changed` of its own (as the
/// control plane might bring it back), as the admin.
pub async fn legacy_priority_class_back(c: &TestCluster, changed: &str) {
    let text = std::fs::read_to_string(fixture_dir(LEGACY).join("20-priorityclass.yaml"))
        .expect("fixture");
    let mut pc: Value = from_yaml(&text);
    pc["metadata"]["labels"]["changed"] = serde_json::json!(changed);
    c.apply(&serde_json::from_value(pc).expect("object")).await;
}
