//! Workloads on the real controllers, as tests/hand_over.rs uses them: the legacy proxy's
//! StatefulSet and the module's of the same name (their immutable shapes from docs/operator.md),
//! the Pods of the Service's selector, and the legacy proxy serving behind its Service.

use std::time::Duration;

use k8s_openapi::api::apps::v1::StatefulSet;
use k8s_openapi::api::core::v1::{Pod, Service};
use kube::api::{Api, DeleteParams, ListParams, PostParams, PropagationPolicy};
use kube::{Client, ResourceExt};
use serde_json::{Value, json};

use super::TestCluster;
use super::endpoints::ReadyEndpoints;
use super::node_agent::{NodeAgent, Timing};
use super::outage::LIMIT;

pub const NAMESPACE: &str = super::contract::KYMA_SYSTEM;
pub const NAME: &str = "connectivity-proxy";

/// A Pod starts Ready a second after it runs and serves two seconds after its deletion: short,
/// so that the case is quick, and long enough that the controllers' order shows.
pub const TIMING: Timing = Timing {
    ready_after: Duration::from_secs(1),
    grace_cap: Duration::from_secs(2),
};

/// The legacy StatefulSet's immutable shape: selector `{app, release}`, Pods made in parallel.
pub fn legacy_stateful_set() -> Value {
    stateful_set(
        json!({"app": NAME, "release": NAME}),
        "Parallel",
        "eu.gcr.io/kyma-project/connectivity-proxy:2.9.3",
    )
}

/// The module operator's StatefulSet of the same name (docs/operator.md): selector `{app}`, Pods
/// made in order.
pub fn module_stateful_set() -> Value {
    stateful_set(
        json!({"app": NAME}),
        "OrderedReady",
        "europe-docker.pkg.dev/kyma-project/prod/connectivity-proxy:2.16.0",
    )
}

fn stateful_set(selector: Value, pod_management: &str, image: &str) -> Value {
    json!({
        "apiVersion": "apps/v1",
        "kind": "StatefulSet",
        "metadata": {"name": NAME, "namespace": NAMESPACE},
        "spec": {
            "replicas": 2,
            "serviceName": "connectivity-proxy-tunnel",
            "podManagementPolicy": pod_management,
            "selector": {"matchLabels": selector},
            "template": {
                "metadata": {"labels": {"app": NAME, "release": NAME}},
                "spec": {
                    "terminationGracePeriodSeconds": 30,
                    "containers": [{"name": NAME, "image": image}],
                },
            },
        },
    })
}

pub async fn create<K>(client: &Client, object: Value) -> K
where
    K: kube::Resource<Scope = kube::core::NamespaceResourceScope>
        + Clone
        + serde::de::DeserializeOwned
        + serde::Serialize
        + std::fmt::Debug,
    K::DynamicType: Default,
{
    let api: Api<K> = Api::namespaced(client.clone(), NAMESPACE);
    let object: K = serde_json::from_value(object).expect("object");
    api.create(&PostParams::default(), &object)
        .await
        .unwrap_or_else(|e| panic!("create {}: {e}", object.name_any()))
}

pub async fn pods(client: &Client) -> Vec<Pod> {
    let api: Api<Pod> = Api::namespaced(client.clone(), NAMESPACE);
    api.list(&ListParams::default().labels(&format!("app={NAME}")))
        .await
        .expect("list Pods")
        .items
}

/// Waits until `done` holds for the Pods of the Service's selector.
pub async fn wait_for_pods(client: &Client, what: &str, done: impl Fn(&[Pod]) -> bool) -> Vec<Pod> {
    let started = std::time::Instant::now();
    loop {
        let pods = pods(client).await;
        if done(&pods) {
            return pods;
        }
        assert!(
            started.elapsed() < LIMIT,
            "{what}: not within {LIMIT:?}; Pods: {:?}",
            pods.iter()
                .map(|p| (p.name_any(), p.owner_references().to_vec()))
                .collect::<Vec<_>>()
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

pub fn owned_by(pod: &Pod, uid: &str) -> bool {
    pod.owner_references().iter().any(|o| o.uid == uid)
}

/// A cluster with the controllers and a node, where the legacy proxy serves with two Pods
/// behind Service `connectivity-proxy`, watched from the start.
pub struct Serving {
    pub c: TestCluster,
    _agent: NodeAgent,
    pub service: Service,
    pub legacy: StatefulSet,
    /// The uids of the legacy Pods.
    pub legacy_pods: Vec<String>,
    pub endpoints: ReadyEndpoints,
}

pub async fn legacy_serving() -> Serving {
    let c = TestCluster::with_controllers().await;
    let agent = NodeAgent::start(&c.client, "node-a", TIMING).await;
    c.apply_yaml(&format!(
        "apiVersion: v1\nkind: Namespace\nmetadata:\n  name: {NAMESPACE}\n"
    ))
    .await;
    let service: Service = create(
        &c.client,
        json!({
            "apiVersion": "v1",
            "kind": "Service",
            "metadata": {"name": NAME, "namespace": NAMESPACE},
            "spec": {"selector": {"app": NAME}, "ports": [{"name": "http-proxy", "port": 20003}]},
        }),
    )
    .await;
    let endpoints = ReadyEndpoints::watch(&c.client, NAMESPACE, NAME);
    let legacy: StatefulSet = create(&c.client, legacy_stateful_set()).await;
    endpoints.wait_for(2, LIMIT).await;
    let legacy_pods: Vec<String> = pods(&c.client)
        .await
        .iter()
        .filter_map(|p| p.uid())
        .collect();
    assert_eq!(legacy_pods.len(), 2);
    Serving {
        c,
        _agent: agent,
        service,
        legacy,
        legacy_pods,
        endpoints,
    }
}

pub async fn delete_legacy(c: &TestCluster, propagation: PropagationPolicy) {
    let sets: Api<StatefulSet> = Api::namespaced(c.client.clone(), NAMESPACE);
    sets.delete(
        NAME,
        &DeleteParams {
            propagation_policy: Some(propagation),
            ..DeleteParams::default()
        },
    )
    .await
    .expect("delete the legacy StatefulSet");
    while sets.get_opt(NAME).await.expect("get").is_some() {
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

pub fn ready(pod: &Pod) -> bool {
    pod.status
        .as_ref()
        .and_then(|s| s.conditions.as_ref())
        .is_some_and(|c| c.iter().any(|c| c.type_ == "Ready" && c.status == "True"))
}

/// Waits until the module's StatefulSet runs two Ready Pods of its own, none of `before`.
pub async fn module_serving(c: &TestCluster, module: &StatefulSet, before: &[String]) -> Vec<Pod> {
    let module_uid = module.uid().expect("uid");
    wait_for_pods(&c.client, "two Ready Pods of the module's", |pods| {
        pods.len() == 2
            && pods.iter().all(|p| {
                owned_by(p, &module_uid)
                    && !before.contains(&p.uid().unwrap_or_default())
                    && ready(p)
            })
    })
    .await
}

/// Waits until the cluster is at rest: every Pod Ready, then two snapshots a second apart
/// equal. A test that asserts "writes nothing" needs it, or the controllers' own status
/// updates (a Pod turning Ready, its Deployment counting it) show up as the tool's writes.
pub async fn settled(c: &TestCluster) {
    let started = std::time::Instant::now();
    let all: Api<Pod> = Api::all(c.client.clone());
    loop {
        let pods = all.list(&ListParams::default()).await.expect("list Pods");
        if pods.items.iter().all(ready) {
            break;
        }
        assert!(started.elapsed() < LIMIT, "Pods not Ready within {LIMIT:?}");
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    let mut before = c.snapshot().await;
    loop {
        tokio::time::sleep(Duration::from_secs(1)).await;
        let now = c.snapshot().await;
        if now == before {
            return;
        }
        assert!(
            started.elapsed() < LIMIT,
            "the cluster not at rest within {LIMIT:?}"
        );
        before = now;
    }
}
