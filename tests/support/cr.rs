//! The ConnectivityProxy CR as the tests read and write it, at the names of docs/contract.md
//! ([`super::contract::cr`]): its annotations (the step markers among them) set and removed as
//! the admin, as a person or another tool would.

use kube::Client;
use kube::api::{Api, DynamicObject, Patch, PatchParams};
use kube::core::{ApiResource, GroupVersionKind};
use serde_json::{Value, json};

use super::TestCluster;
use super::contract::{KYMA_SYSTEM, cr};

pub fn resource() -> ApiResource {
    ApiResource::from_gvk_with_plural(
        &GroupVersionKind::gvk(cr::GROUP, cr::VERSION, cr::KIND),
        cr::PLURAL,
    )
}

/// The CRs of kyma-system.
pub fn api(client: &Client) -> Api<DynamicObject> {
    Api::namespaced_with(client.clone(), KYMA_SYSTEM, &resource())
}

/// Changes the CR's spec (its `replicaCount`), as a user would: its generation grows.
pub async fn change_spec(c: &TestCluster) {
    api(&c.client)
        .patch(
            cr::NAME,
            &PatchParams::default(),
            &Patch::Merge(json!({"spec": {"deployment": {"replicaCount": 2}}})),
        )
        .await
        .expect("change the CR's spec");
}

/// Sets `annotations` on the CR (a merge patch: the others stay).
pub async fn annotate(c: &TestCluster, annotations: &[(&str, &str)]) {
    let set: serde_json::Map<String, Value> = annotations
        .iter()
        .map(|(k, v)| (k.to_string(), json!(v)))
        .collect();
    patch_annotations(c, set).await;
}

/// Removes the annotations `keys` from the CR (the others stay).
pub async fn remove_annotations(c: &TestCluster, keys: &[&str]) {
    let unset: serde_json::Map<String, Value> =
        keys.iter().map(|k| (k.to_string(), Value::Null)).collect();
    patch_annotations(c, unset).await;
}

async fn patch_annotations(c: &TestCluster, annotations: serde_json::Map<String, Value>) {
    api(&c.client)
        .patch(
            cr::NAME,
            &PatchParams::default(),
            &Patch::Merge(json!({"metadata": {"annotations": annotations}})),
        )
        .await
        .unwrap_or_else(|e| panic!("annotate the CR: {e}"));
}
