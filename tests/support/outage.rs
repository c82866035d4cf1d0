//! The outage a migration causes, as the clients of Service `kyma-system/connectivity-proxy`
//! see it: the legacy proxy serving on the real controllers (with the node agent in a kubelet's
//! place), the tool's `run`, the module's operator started after it (the tool runs as its Pod's
//! init containers) and reconciling until `Ready`, and every interval with no ready endpoint.

use std::time::{Duration, Instant};

use kube::api::{Api, DynamicObject, Patch, PatchParams};
use serde_json::json;

use super::endpoints::ReadyEndpoints;
use super::node_agent::{NodeAgent, PodEvent, Timing};
use super::operator::{self, Outcome};
use super::workloads::{NAME as PROXY, NAMESPACE};
use super::{Tenant, TestCluster, cr, fixture_dir};

/// Long enough for a loaded 2-core machine, never reached when the controllers work.
pub const LIMIT: Duration = Duration::from_secs(120);

/// The delays a migration's outage depends on, modelled.
#[derive(Debug, Clone, Copy)]
pub struct Model {
    /// Replicas of the legacy proxy and of the module's (the CR's `replicaCount`).
    pub replicas: i64,
    /// From the end of the init containers to the operator's first reconcile.
    pub operator_start: Duration,
    /// A Pod's start to Ready, and the most of its grace period it serves.
    pub pods: Timing,
}

/// What a client saw.
#[derive(Debug)]
pub struct Seen {
    /// Every interval with no ready endpoint.
    pub outages: Vec<Duration>,
    /// The same, from when each began to when it ended.
    pub outage_spans: Vec<(Instant, Instant)>,
    /// When the module's operator started, after `run`.
    pub operator_started: Instant,
    /// What the node agent did to each Pod, in order.
    pub pods: Vec<PodEvent>,
    /// The same for the headless tunnel Service `connectivity-proxy-tunnel`.
    pub tunnel_outages: Vec<Duration>,
    /// From the start of `run` until the module was `Ready` with a ready endpoint.
    pub until_ready: Duration,
    /// Every ClusterIP the Service had, in order.
    pub cluster_ips: Vec<String>,
}

impl Seen {
    pub fn total_outage(&self) -> Duration {
        self.outages.iter().sum()
    }
}

/// A migration done, its cluster still running with the node agent and the watches.
pub struct Migrated {
    pub c: TestCluster,
    pub seen: Seen,
    pub endpoints: ReadyEndpoints,
    pub tunnel: ReadyEndpoints,
    _agent: NodeAgent,
}

/// The legacy proxy serving with `model.replicas` Pods, then `run` with `args` after it, then
/// the module's operator until `Ready`.
pub async fn migration(args: &[&str], model: Model) -> Seen {
    migrated(args, model).await.seen
}

/// [`migration`], and the cluster it ran on.
pub async fn migrated(args: &[&str], model: Model) -> Migrated {
    let c = TestCluster::with_controllers().await;
    let agent = NodeAgent::start(&c.client, "node-a", model.pods).await;
    let endpoints = ReadyEndpoints::watch(&c.client, NAMESPACE, PROXY);
    let tunnel = ReadyEndpoints::watch(&c.client, NAMESPACE, TUNNEL);
    for fixture in Tenant::Dedicated.fixtures() {
        c.apply_dir(&fixture_dir(fixture)).await;
    }
    let replicas = model.replicas;
    let sets: Api<DynamicObject> = Api::namespaced_with(
        c.client.clone(),
        NAMESPACE,
        &kube::core::ApiResource::erase::<k8s_openapi::api::apps::v1::StatefulSet>(&()),
    );
    sets.patch(
        PROXY,
        &PatchParams::default(),
        &Patch::Merge(json!({"spec": {"replicas": replicas}})),
    )
    .await
    .expect("scale the legacy proxy");
    cr::api(&c.client)
        .patch(
            PROXY,
            &PatchParams::default(),
            &Patch::Merge(json!({"spec": {"deployment": {"replicaCount": replicas}}})),
        )
        .await
        .expect("the module's replicas");
    endpoints
        .wait_for(usize::try_from(replicas).expect("replicas"), LIMIT)
        .await;
    tunnel
        .wait_for(usize::try_from(replicas).expect("replicas"), LIMIT)
        .await;

    let started = Instant::now();
    c.run(args).assert_ok();
    tokio::time::sleep(model.operator_start).await;
    let operator_started = Instant::now();
    assert_eq!(
        operator::reconcile_until_ready(&c, Duration::from_millis(500), LIMIT).await,
        Outcome::Ready
    );
    endpoints.wait_for(1, LIMIT).await;
    let seen = Seen {
        outages: endpoints.outages(),
        outage_spans: endpoints.outage_spans(),
        operator_started,
        pods: agent.journal(),
        tunnel_outages: tunnel.outages(),
        until_ready: started.elapsed(),
        cluster_ips: endpoints.cluster_ips(),
    };
    Migrated {
        c,
        seen,
        endpoints,
        tunnel,
        _agent: agent,
    }
}

/// The headless Service of the proxy's tunnel (OPERATOR.md), the StatefulSet's `serviceName`.
pub const TUNNEL: &str = "connectivity-proxy-tunnel";
