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
use super::real_operator::{self, RealOperator, States};
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
    /// The same for `connectivity-proxy-tunnel-0`, where the legacy VirtualService `cc-proxy`
    /// sends Cloud Connector's tunnel: a hand-over deletes it (headless) for the operator's.
    pub tunnel_0_outages: Vec<Duration>,
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

/// Which operator reconciles the module once the init containers are done.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Operator {
    /// `super::operator`, reconciling every half second after `Model::operator_start`.
    Emulated,
    /// The module's own operator, started after the init containers (its start is its own).
    Real,
}

/// A migration done, its cluster still running with the node agent and the watches.
pub struct Migrated {
    pub c: TestCluster,
    pub seen: Seen,
    pub endpoints: ReadyEndpoints,
    pub tunnel: ReadyEndpoints,
    /// The ServiceMapping validation Service `connectivity-proxy-smv` (the sm-operator's).
    pub smv: ReadyEndpoints,
    /// The uids of the Pods that served before the migration: the legacy ones.
    pub legacy_pods: Vec<String>,
    /// The cluster before the migration, without what the controllers make of themselves.
    pub pristine: super::snapshot::Snap,
    /// Every `status.state` the CR went through, from before the migration on.
    pub states: States,
    /// The real operator, still running, when it was the one.
    pub operator: Option<RealOperator>,
    _agent: NodeAgent,
}

/// The legacy proxy serving with `model.replicas` Pods, then `run` with `args` after it, then
/// the module's operator until `Ready`.
pub async fn migration(args: &[&str], model: Model) -> Seen {
    migrated(args, model).await.seen
}

/// [`migration`], and the cluster it ran on.
pub async fn migrated(args: &[&str], model: Model) -> Migrated {
    migrated_with(args, model, Operator::Emulated).await
}

/// [`migrated`] with `operator` reconciling the module.
pub async fn migrated_with(args: &[&str], model: Model, which: Operator) -> Migrated {
    let c = TestCluster::with_controllers().await;
    let agent = NodeAgent::start(&c.client, "node-a", model.pods).await;
    let endpoints = ReadyEndpoints::watch(&c.client, NAMESPACE, PROXY);
    let tunnel = ReadyEndpoints::watch(&c.client, NAMESPACE, TUNNEL);
    let tunnel_0 = ReadyEndpoints::watch(&c.client, NAMESPACE, TUNNEL_0);
    let smv = ReadyEndpoints::watch(&c.client, NAMESPACE, SM_VALIDATION);
    for fixture in Tenant::Dedicated.fixtures() {
        c.apply_dir(&fixture_dir(fixture)).await;
    }
    if which == Operator::Real {
        // A Gardener shoot's, which the real operator reads for `auto-provision`.
        real_operator::give_shoot_info(&c).await;
    }
    let states = States::watch(&c.client);
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
    tunnel_0.wait_for(1, LIMIT).await;
    smv.wait_for(1, LIMIT).await;
    let legacy_pods = all_pods(&c.client)
        .await
        .into_iter()
        .filter_map(|p| p.metadata.uid)
        .collect();
    let pristine = super::way_back::without_the_controllers_work(
        &super::snapshot::snap(&c.client, &super::snapshot::discover(&c.client).await).await,
    );
    let started = Instant::now();
    c.run(args).assert_ok();
    let mut operator_started = Instant::now();
    let operator = match which {
        Operator::Emulated => {
            tokio::time::sleep(model.operator_start).await;
            operator_started = Instant::now();
            assert_eq!(
                operator::reconcile_until_rolled(&c, Duration::from_millis(500), LIMIT).await,
                Outcome::Ready
            );
            None
        }
        Operator::Real => {
            let op = RealOperator::start(&c).await;
            states.wait_for(operator::STATE_READY, LIMIT).await;
            Some(op)
        }
    };
    endpoints.wait_for(1, LIMIT).await;
    tunnel_0.wait_for(1, LIMIT).await;
    let seen = Seen {
        outages: endpoints.outages(),
        outage_spans: endpoints.outage_spans(),
        operator_started,
        pods: agent.journal(),
        tunnel_outages: tunnel.outages(),
        tunnel_0_outages: tunnel_0.outages(),
        until_ready: started.elapsed(),
        cluster_ips: endpoints.cluster_ips(),
    };
    Migrated {
        c,
        seen,
        endpoints,
        tunnel,
        smv,
        legacy_pods,
        pristine,
        states,
        operator,
        _agent: agent,
    }
}

/// The headless Service of the proxy's tunnel (docs/operator.md), the StatefulSet's `serviceName`.
pub const TUNNEL: &str = "connectivity-proxy-tunnel";
/// The tunnel's Service of the first Pod, `connectivity-proxy-0` (docs/operator.md).
pub const TUNNEL_0: &str = "connectivity-proxy-tunnel-0";
/// The Service of the ServiceMapping validation webhook, in front of the sm-operator's Pods.
pub const SM_VALIDATION: &str = "connectivity-proxy-smv";

/// Every Pod of the module's namespace.
pub async fn all_pods(client: &kube::Client) -> Vec<k8s_openapi::api::core::v1::Pod> {
    Api::namespaced(client.clone(), NAMESPACE)
        .list(&Default::default())
        .await
        .expect("list Pods")
        .items
}
