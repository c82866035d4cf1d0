//! The user configuration's two ConfigMaps (docs/contract.md, Names), as the tests read and write them:
//! by the admin, as a user would.

use std::collections::BTreeMap;

use k8s_openapi::ByteString;
use k8s_openapi::api::core::v1::ConfigMap;
use kube::api::{Api, DynamicObject, Patch, PatchParams, PostParams};
use kube::{Client, ResourceExt};
use serde_json::json;

use super::TestCluster;
use super::contract::{BACKUP_NAMESPACE, KYMA_SYSTEM, USER_CONFIG, USER_CONFIG_KEY};

/// The ConfigMaps of kyma-system.
pub fn cm_api(client: &Client) -> Api<ConfigMap> {
    Api::namespaced(client.clone(), KYMA_SYSTEM)
}

/// ConfigMap `namespace/name`, if it exists.
pub async fn configmap(c: &TestCluster, namespace: &str, name: &str) -> Option<ConfigMap> {
    Api::<ConfigMap>::namespaced(c.client.clone(), namespace)
        .get_opt(name)
        .await
        .expect("get ConfigMap")
}

/// ConfigMap kyma-system/`name` with exactly `data` (server-side apply by the fixtures' field
/// manager: the keys it set before and does not set now are gone).
pub async fn set_configmap(c: &TestCluster, name: &str, data: BTreeMap<&str, &str>) {
    let obj: DynamicObject = serde_json::from_value(json!({
        "apiVersion": "v1", "kind": "ConfigMap",
        "metadata": {"name": name, "namespace": KYMA_SYSTEM},
        "data": data,
    }))
    .expect("object");
    c.apply(&obj).await;
}

/// The user configuration's document is `text`.
pub async fn set_legacy_config(c: &TestCluster, text: &str) {
    set_configmap(c, USER_CONFIG[0], [(USER_CONFIG_KEY, text)].into()).await;
}

/// Sets one key of `connectivity-proxy-info` (a port) by a merge patch.
pub async fn set_port(client: &Client, key: &str, value: &str) {
    set_port_in(client, KYMA_SYSTEM, key, value).await;
}

/// Sets one key of the backup copy of `connectivity-proxy-info`, as an edit by hand would.
pub async fn set_copy_port(client: &Client, key: &str, value: &str) {
    set_port_in(client, BACKUP_NAMESPACE, key, value).await;
}

async fn set_port_in(client: &Client, namespace: &str, key: &str, value: &str) {
    Api::<ConfigMap>::namespaced(client.clone(), namespace)
        .patch(
            USER_CONFIG[1],
            &PatchParams::default(),
            &Patch::Merge(json!({"data": {key: value}})),
        )
        .await
        .expect("patch ConfigMap");
}

/// Writes `cm` as the whole object of its name in kyma-system (created if it is gone).
pub async fn put_configmap(client: &Client, cm: &ConfigMap) {
    let api = cm_api(client);
    let mut cm = cm.clone();
    cm.metadata.uid = None;
    cm.metadata.creation_timestamp = None;
    cm.metadata.managed_fields = None;
    match api.get_opt(&cm.name_any()).await.expect("get ConfigMap") {
        Some(current) => {
            cm.metadata.resource_version = current.resource_version();
            api.replace(&cm.name_any(), &PostParams::default(), &cm)
                .await
                .expect("replace ConfigMap");
        }
        None => {
            cm.metadata.resource_version = None;
            api.create(&PostParams::default(), &cm)
                .await
                .expect("create ConfigMap");
        }
    }
}

/// What a user ConfigMap holds that must survive the migration and a restore: data,
/// binaryData, labels, annotations.
pub type Content = (
    BTreeMap<String, String>,
    BTreeMap<String, ByteString>,
    BTreeMap<String, String>,
    BTreeMap<String, String>,
);

pub fn content(cm: &ConfigMap) -> Content {
    (
        cm.data.clone().unwrap_or_default(),
        cm.binary_data.clone().unwrap_or_default(),
        cm.metadata.labels.clone().unwrap_or_default(),
        cm.metadata.annotations.clone().unwrap_or_default(),
    )
}

/// The content of both user ConfigMaps in `namespace` (`None`: absent), in the contract's order.
pub async fn user_config(c: &TestCluster, namespace: &str) -> Vec<Option<Content>> {
    let mut out = Vec::new();
    for name in USER_CONFIG {
        out.push(configmap(c, namespace, name).await.map(|cm| content(&cm)));
    }
    out
}

/// The value of `key` in ConfigMap kyma-system/`name`, if both exist.
pub async fn user_config_value(client: &Client, name: &str, key: &str) -> Option<String> {
    cm_api(client)
        .get_opt(name)
        .await
        .expect("read the ConfigMap")
        .and_then(|cm| cm.data)
        .and_then(|mut d| d.remove(key))
}
