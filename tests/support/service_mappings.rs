//! ServiceMappings (cluster-scoped, CRD from the legacy fixture) in numbers: created
//! concurrently, some of them adopted by hand beforehand, and counted.

use futures::{StreamExt, TryStreamExt, stream};
use kube::Client;
use kube::api::{Api, DynamicObject, ListParams, PostParams};
use kube::core::{ApiResource, GroupVersionKind};
use serde_json::{Value, json};

use super::contract::{adoption, is_adopted, service_mapping as sm};

/// Concurrent creations: enough to create thousands in seconds, few enough for a shared machine.
pub const CREATE_CONCURRENCY: usize = 64;

pub fn resource() -> ApiResource {
    ApiResource::from_gvk_with_plural(
        &GroupVersionKind::gvk(sm::GROUP, sm::VERSION, sm::KIND),
        sm::PLURAL,
    )
}

pub fn api(client: &Client) -> Api<DynamicObject> {
    Api::all_with(client.clone(), &resource())
}

/// The annotations and the label by which the new operator adopts a ServiceMapping.
pub fn adoption_metadata() -> Value {
    json!({
        "annotations": {
            adoption::PRIMARY_NAME: adoption::PRIMARY_NAME_VALUE,
            adoption::PRIMARY_NAMESPACE: adoption::PRIMARY_NAMESPACE_VALUE,
        },
        "labels": { adoption::LABEL: adoption::LABEL_VALUE },
    })
}

/// Creates `n` ServiceMappings named `{prefix}-{i}` (i = 0..n), each with a spec of its own;
/// those for which `adopted(i)` holds carry the adoption already (someone adopted them by hand,
/// or an earlier run did). Returns them as created, in the order of `i`.
pub async fn create(
    client: &Client,
    prefix: &str,
    n: usize,
    adopted: impl Fn(usize) -> bool,
) -> Vec<DynamicObject> {
    let api = api(client);
    let objects: Vec<DynamicObject> = (0..n)
        .map(|i| {
            let mut metadata = json!({ "name": format!("{prefix}-{i}") });
            if adopted(i) {
                let adoption = adoption_metadata();
                metadata["annotations"] = adoption["annotations"].clone();
                metadata["labels"] = adoption["labels"].clone();
            }
            serde_json::from_value(json!({
                "apiVersion": resource().api_version,
                "kind": sm::KIND,
                "metadata": metadata,
                "spec": {
                    "type": "TCP",
                    "subaccountId": "00000000-0000-0000-0000-000000000000",
                    "serviceId": format!("{prefix}-service-{i}"),
                    "tenantId": "11111111-1111-1111-1111-111111111111",
                    "internalAddress": format!("host-{i}.onprem.example:443"),
                }
            }))
            .expect("ServiceMapping")
        })
        .collect();
    stream::iter(objects)
        .map(|obj| {
            let api = api.clone();
            async move { api.create(&PostParams::default(), &obj).await }
        })
        .buffered(CREATE_CONCURRENCY)
        .try_collect()
        .await
        .expect("create ServiceMappings")
}

/// How many ServiceMappings exist, and how many carry the operator's annotations and label.
pub async fn count_adopted(client: &Client) -> (usize, usize) {
    let api = api(client);
    let (mut total, mut adopted) = (0, 0);
    let mut token: Option<String> = None;
    loop {
        let mut lp = ListParams::default().limit(1000);
        if let Some(t) = &token {
            lp = lp.continue_token(t);
        }
        let page = api.list_metadata(&lp).await.expect("list ServiceMappings");
        total += page.items.len();
        adopted += page
            .items
            .iter()
            .filter(|m| is_adopted(&m.metadata))
            .count();
        token = page.metadata.continue_.filter(|t| !t.is_empty());
        if token.is_none() {
            return (total, adopted);
        }
    }
}
