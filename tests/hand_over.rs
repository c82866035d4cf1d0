//! Handing the legacy installation over to the module without an outage rests on what the
//! Kubernetes controllers do with a workload's Pods. These cases run the real controllers
//! (kube-controller-manager of the API server's release) with a node agent in a kubelet's place,
//! and watch what a client of Service `kyma-system/connectivity-proxy` would see.

mod support;

use std::time::Duration;

use k8s_openapi::api::apps::v1::StatefulSet;
use k8s_openapi::api::core::v1::{Pod, Service};
use kube::api::{Api, DeleteParams, ListParams, PostParams, PropagationPolicy};
use kube::{Client, ResourceExt};
use serde_json::{Value, json};
use support::endpoints::ReadyEndpoints;
use support::node_agent::{NodeAgent, Timing};
use support::*;

const NAMESPACE: &str = "kyma-system";
const NAME: &str = "connectivity-proxy";
/// Long enough for a loaded 2-core machine, never reached when the controllers work.
const LIMIT: Duration = Duration::from_secs(120);

/// A Pod starts Ready a second after it runs and serves two seconds after its deletion: short,
/// so that the case is quick, and long enough that the controllers' order shows.
const TIMING: Timing = Timing {
    ready_after: Duration::from_secs(1),
    grace_cap: Duration::from_secs(2),
};

/// The legacy StatefulSet's immutable shape: selector `{app, release}`, Pods made in parallel.
fn legacy_stateful_set() -> Value {
    stateful_set(
        json!({"app": NAME, "release": NAME}),
        "Parallel",
        "eu.gcr.io/kyma-project/connectivity-proxy:2.9.3",
    )
}

/// The module operator's StatefulSet of the same name (OPERATOR.md): selector `{app}`, Pods
/// made in order.
fn module_stateful_set() -> Value {
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

async fn create<K>(client: &Client, object: Value) -> K
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

async fn pods(client: &Client) -> Vec<Pod> {
    let api: Api<Pod> = Api::namespaced(client.clone(), NAMESPACE);
    api.list(&ListParams::default().labels(&format!("app={NAME}")))
        .await
        .expect("list Pods")
        .items
}

/// Waits until `done` holds for the Pods of the Service's selector.
async fn wait_for_pods(client: &Client, what: &str, done: impl Fn(&[Pod]) -> bool) -> Vec<Pod> {
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

fn owned_by(pod: &Pod, uid: &str) -> bool {
    pod.owner_references().iter().any(|o| o.uid == uid)
}

/// A cluster with the controllers and a node, where the legacy proxy serves with two Pods
/// behind Service `connectivity-proxy`, watched from the start.
struct Serving {
    c: TestCluster,
    _agent: NodeAgent,
    service: Service,
    legacy: StatefulSet,
    endpoints: ReadyEndpoints,
}

async fn legacy_serving() -> Serving {
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
    assert_eq!(pods(&c.client).await.len(), 2);
    Serving {
        c,
        _agent: agent,
        service,
        legacy,
        endpoints,
    }
}

async fn delete_legacy(c: &TestCluster, propagation: PropagationPolicy) {
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

fn ready(pod: &Pod) -> bool {
    pod.status
        .as_ref()
        .and_then(|s| s.conditions.as_ref())
        .is_some_and(|c| c.iter().any(|c| c.type_ == "Ready" && c.status == "True"))
}

/// Waits until the module's StatefulSet runs two Ready Pods of its own, none of `before`.
async fn module_serving(c: &TestCluster, module: &StatefulSet, before: &[String]) -> Vec<Pod> {
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

#[tokio::test]
async fn a_stateful_set_deleted_with_its_pods_orphaned_is_replaced_by_its_successor_without_an_outage()
 {
    let s = legacy_serving().await;
    let legacy_uids: Vec<String> = pods(&s.c.client)
        .await
        .iter()
        .filter_map(|p| p.uid())
        .collect();

    // Deleted with its Pods orphaned: the garbage collector takes its ownership off them, and
    // they keep serving.
    delete_legacy(&s.c, PropagationPolicy::Orphan).await;
    let legacy_uid = s.legacy.uid().expect("uid");
    wait_for_pods(&s.c.client, "the legacy Pods orphaned", |pods| {
        pods.len() == 2 && pods.iter().all(|p| !owned_by(p, &legacy_uid))
    })
    .await;
    assert_eq!(s.endpoints.now(), 2, "orphaned Pods still serve");

    // The module's StatefulSet of the same name adopts them and replaces them one at a time,
    // from the highest ordinal down.
    let module: StatefulSet = create(&s.c.client, module_stateful_set()).await;
    let replaced = module_serving(&s.c, &module, &legacy_uids).await;
    s.endpoints.wait_for(2, LIMIT).await;
    let created = |name: &str| {
        replaced
            .iter()
            .find(|p| p.name_any() == name)
            .and_then(|p| p.metadata.creation_timestamp.clone())
            .unwrap_or_else(|| panic!("{name} replaced"))
    };
    assert!(
        created("connectivity-proxy-1").0 < created("connectivity-proxy-0").0,
        "-1 is replaced before -0"
    );

    // A client of the Service never lost it: the same ClusterIP, always a ready endpoint.
    let services: Api<Service> = Api::namespaced(s.c.client.clone(), NAMESPACE);
    let now = services.get(NAME).await.expect("Service");
    assert_eq!(
        now.spec.and_then(|s| s.cluster_ip),
        s.service.spec.clone().and_then(|s| s.cluster_ip)
    );
    assert_eq!(
        s.endpoints.outages(),
        Vec::<Duration>::new(),
        "intervals with no ready endpoint"
    );
}

#[tokio::test]
async fn a_stateful_set_deleted_with_its_pods_leaves_the_service_without_endpoints_until_its_successor_is_ready()
 {
    let s = legacy_serving().await;
    let legacy_uids: Vec<String> = pods(&s.c.client)
        .await
        .iter()
        .filter_map(|p| p.uid())
        .collect();

    // Today's clean: the StatefulSet goes with its Pods (background propagation, the default).
    delete_legacy(&s.c, PropagationPolicy::Background).await;
    wait_for_pods(&s.c.client, "the legacy Pods gone", |pods| pods.is_empty()).await;
    assert_eq!(s.endpoints.now(), 0);

    let module: StatefulSet = create(&s.c.client, module_stateful_set()).await;
    module_serving(&s.c, &module, &legacy_uids).await;
    s.endpoints.wait_for(2, LIMIT).await;
    let outages = s.endpoints.outages();
    assert_eq!(outages.len(), 1, "one outage: {outages:?}");
    // At least the first Pod's start to Ready.
    assert!(outages[0] >= TIMING.ready_after, "{outages:?}");
}
