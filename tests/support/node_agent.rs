//! A node agent: what a kubelet does to Pods, as far as the controllers and a Service's endpoints
//! can see it. No kubelet runs beside the test server, and without one a Pod is never bound,
//! never Ready, and deleted at once without its grace period (the API server does that to a Pod
//! no Node holds). The agent registers a Node and, for every Pod:
//!
//! - binds it to that Node if no Node holds it;
//! - reports it Running with an IP, and Ready after [`Timing::ready_after`];
//! - once it is deleted, keeps it (still Running, its endpoint `serving` and `terminating`) for
//!   its grace period, capped by [`Timing::grace_cap`], then removes it, as a kubelet does after
//!   its containers stopped.
//!
//! No container runs: what the agent models is the Pod's lifecycle, not its process. Its
//! journal says when it started, readied and removed each Pod, as a kubelet's events would.

use std::collections::HashSet;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use futures::{StreamExt, TryStreamExt};
use k8s_openapi::api::core::v1::{Node, Pod};
use kube::api::{Api, DeleteParams, Patch, PatchParams, PostParams, Preconditions};
use kube::runtime::{WatchStreamExt, watcher};
use kube::{Client, ResourceExt};
use serde_json::json;
use tokio::task::JoinHandle;

/// The delays the agent models.
#[derive(Debug, Clone, Copy)]
pub struct Timing {
    /// From a Pod's start (Running) to its readiness probe passing.
    pub ready_after: Duration,
    /// The most of a deleted Pod's grace period it serves before it goes (a Pod's own
    /// `terminationGracePeriodSeconds` is usually 30 s; a test need not wait that long).
    pub grace_cap: Duration,
}

/// A running agent; it stops when dropped.
pub struct NodeAgent {
    pub node: String,
    seen: Arc<Mutex<Seen>>,
    task: JoinHandle<()>,
}

/// What the agent did to a Pod. Each is journaled as the agent does it, before the API server
/// is told: what the Pod's endpoints show follows it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Happened {
    /// Running, not yet Ready.
    Started,
    Ready,
    /// Removed after its grace period: it serves no more.
    Removed,
}

/// One entry of the journal.
#[derive(Debug, Clone)]
pub struct PodEvent {
    pub at: Instant,
    pub pod: String,
    pub uid: String,
    pub happened: Happened,
}

impl Drop for NodeAgent {
    fn drop(&mut self) {
        self.task.abort();
    }
}

/// Which Pods (by uid) the agent has started and which it is terminating, so that each is
/// started once and ended once whatever the watch repeats.
#[derive(Default)]
struct Seen {
    started: HashSet<String>,
    ending: HashSet<String>,
    next_ip: u32,
    journal: Vec<PodEvent>,
}

fn journal(seen: &Mutex<Seen>, pod: &str, uid: &str, happened: Happened) {
    seen.lock().expect("seen").journal.push(PodEvent {
        at: Instant::now(),
        pod: pod.to_string(),
        uid: uid.to_string(),
        happened,
    });
}

impl NodeAgent {
    /// Registers Node `node` (Ready) and starts the agent's watch of every Pod.
    pub async fn start(client: &Client, node: &str, timing: Timing) -> NodeAgent {
        register_node(client, node).await;
        let pods: Api<Pod> = Api::all(client.clone());
        let node_name = node.to_string();
        let seen = Arc::new(Mutex::new(Seen::default()));
        let shared = seen.clone();
        let task = tokio::spawn(async move {
            let mut events = watcher(pods.clone(), watcher::Config::default())
                .default_backoff()
                .applied_objects()
                .boxed();
            while let Ok(Some(pod)) = events.try_next().await {
                act(&pods, &node_name, &shared, timing, pod).await;
            }
        });
        NodeAgent {
            node: node.to_string(),
            seen,
            task,
        }
    }

    /// What it did to each Pod so far, in order.
    pub fn journal(&self) -> Vec<PodEvent> {
        self.seen.lock().expect("seen").journal.clone()
    }
}

async fn register_node(client: &Client, node: &str) {
    let nodes: Api<Node> = Api::all(client.clone());
    let body: Node = serde_json::from_value(json!({
        "apiVersion": "v1",
        "kind": "Node",
        "metadata": {"name": node, "labels": {"kubernetes.io/hostname": node}},
    }))
    .expect("node");
    nodes
        .create(&PostParams::default(), &body)
        .await
        .expect("register the node");
    let now = jiff::Timestamp::now().to_string();
    nodes
        .patch_status(
            node,
            &PatchParams::default(),
            &Patch::Merge(json!({"status": {
                "conditions": [{
                    "type": "Ready", "status": "True", "reason": "KubeletReady",
                    "lastHeartbeatTime": now, "lastTransitionTime": now,
                }],
                "addresses": [{"type": "InternalIP", "address": "10.0.0.1"}],
            }})),
        )
        .await
        .expect("report the node Ready");
}

/// One Pod event: bind it, start it, or end it.
async fn act(pods: &Api<Pod>, node: &str, seen: &Arc<Mutex<Seen>>, timing: Timing, pod: Pod) {
    let (Some(namespace), Some(uid)) = (pod.namespace(), pod.uid()) else {
        return;
    };
    let name = pod.name_any();
    let api: Api<Pod> = Api::namespaced(pods.clone().into_client(), &namespace);
    let bound_to = pod.spec.as_ref().and_then(|s| s.node_name.clone());
    if pod.metadata.deletion_timestamp.is_some() {
        if bound_to.as_deref() == Some(node)
            && seen.lock().expect("seen").ending.insert(uid.clone())
        {
            let grace = pod
                .metadata
                .deletion_grace_period_seconds
                .map_or(timing.grace_cap, |s| {
                    Duration::from_secs(s.max(0) as u64).min(timing.grace_cap)
                });
            tokio::spawn(end(api, name, uid, grace, seen.clone()));
        }
        return;
    }
    match bound_to.as_deref() {
        None => bind(&api, &name, node).await,
        Some(n) if n == node => {
            let ip = {
                let mut s = seen.lock().expect("seen");
                if !s.started.insert(uid.clone()) {
                    return;
                }
                s.next_ip += 1;
                format!("10.244.{}.{}", s.next_ip / 250, s.next_ip % 250 + 2)
            };
            tokio::spawn(run(api, name, uid, ip, timing.ready_after, seen.clone()));
        }
        Some(_) => {}
    }
}

async fn bind(api: &Api<Pod>, name: &str, node: &str) {
    let binding = json!({
        "apiVersion": "v1",
        "kind": "Binding",
        "metadata": {"name": name},
        "target": {"apiVersion": "v1", "kind": "Node", "name": node},
    });
    // A Pod deleted or bound meanwhile answers 404 or 409: nothing left to do.
    let _: Result<serde_json::Value, _> = api
        .create_subresource("binding", name, &PostParams::default(), &binding)
        .await;
}

/// A started Pod: Running with an IP at once, Ready after `ready_after`.
async fn run(
    api: Api<Pod>,
    name: String,
    uid: String,
    ip: String,
    ready_after: Duration,
    seen: Arc<Mutex<Seen>>,
) {
    journal(&seen, &name, &uid, Happened::Started);
    if write_status(&api, &name, &ip, false).await {
        tokio::time::sleep(ready_after).await;
        journal(&seen, &name, &uid, Happened::Ready);
        write_status(&api, &name, &ip, true).await;
    }
}

/// Writes a running Pod's status; false if the Pod is gone.
async fn write_status(api: &Api<Pod>, name: &str, ip: &str, ready: bool) -> bool {
    let now = jiff::Timestamp::now().to_string();
    let ready = if ready { "True" } else { "False" };
    let condition = |kind: &str, status: &str| json!({"type": kind, "status": status, "lastTransitionTime": now});
    let status = json!({"status": {
        "phase": "Running",
        "hostIP": "10.0.0.1",
        "podIP": ip,
        "podIPs": [{"ip": ip}],
        "startTime": now,
        "conditions": [
            condition("PodScheduled", "True"),
            condition("Initialized", "True"),
            condition("ContainersReady", ready),
            condition("Ready", ready),
        ],
    }});
    api.patch_status(name, &PatchParams::default(), &Patch::Merge(status))
        .await
        .is_ok()
}

/// A deleted Pod serves for its grace period, then goes (only that Pod: its uid guards the
/// delete, as a new Pod of the same name may follow it).
async fn end(api: Api<Pod>, name: String, uid: String, grace: Duration, seen: Arc<Mutex<Seen>>) {
    tokio::time::sleep(grace).await;
    journal(&seen, &name, &uid, Happened::Removed);
    let params = DeleteParams {
        grace_period_seconds: Some(0),
        preconditions: Some(Preconditions {
            uid: Some(uid),
            resource_version: None,
        }),
        ..DeleteParams::default()
    };
    let _ = api.delete(&name, &params).await;
}
