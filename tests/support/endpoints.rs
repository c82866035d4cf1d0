//! What a Service's clients see: a watch on the Service and its EndpointSlices that records
//! how many ready endpoints it has over time, so that a test can say how long it had none.
//!
//! A client reaches the Service by its name while it exists, and then its ready endpoints: those
//! of the slices the Service owns; when none is ready, the serving ones that are terminating
//! (a deleted Pod through its grace period), as kube-proxy does since Kubernetes 1.28
//! (ProxyTerminatingEndpoints). A slice left from a deleted Service of the same name (the
//! garbage collector takes a while) does not count, nor does anything while the Service is gone.

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use futures::{StreamExt, TryStreamExt};
use k8s_openapi::api::core::v1::Service;
use k8s_openapi::api::discovery::v1::EndpointSlice;
use kube::api::Api;
use kube::runtime::watcher;
use kube::{Client, ResourceExt};
use tokio::task::JoinHandle;

/// What the watch knows now.
#[derive(Default)]
struct Seen {
    /// The Service's uid while it exists.
    service: Option<String>,
    /// Every ClusterIP the Service had, in order.
    cluster_ips: Vec<String>,
    /// Each slice: the Service that owns it, its ready endpoints, and its serving ones.
    slices: BTreeMap<String, (Option<String>, usize, usize)>,
    /// Ready endpoints after each change.
    timeline: Vec<(Instant, usize)>,
}

impl Seen {
    fn record(&mut self) {
        let (ready, serving) = match &self.service {
            None => (0, 0),
            Some(uid) => self
                .slices
                .values()
                .filter(|(owner, _, _)| owner.as_deref() == Some(uid.as_str()))
                .fold((0, 0), |(r, s), (_, ready, serving)| {
                    (r + ready, s + serving)
                }),
        };
        let total = if ready > 0 { ready } else { serving };
        self.timeline.push((Instant::now(), total));
    }
}

/// A running record of one Service's ready endpoints; it stops when dropped.
pub struct ReadyEndpoints {
    seen: Arc<Mutex<Seen>>,
    tasks: [JoinHandle<()>; 2],
}

impl Drop for ReadyEndpoints {
    fn drop(&mut self) {
        for task in &self.tasks {
            task.abort();
        }
    }
}

impl ReadyEndpoints {
    /// Starts recording Service `namespace/service`.
    pub fn watch(client: &Client, namespace: &str, service: &str) -> ReadyEndpoints {
        let seen = Arc::new(Mutex::new(Seen::default()));
        let services: Api<Service> = Api::namespaced(client.clone(), namespace);
        let by_name = watcher::Config::default().fields(&format!("metadata.name={service}"));
        let record = seen.clone();
        let service_task = tokio::spawn(async move {
            let mut events = watcher(services, by_name).boxed();
            while let Ok(Some(event)) = events.try_next().await {
                let mut seen = record.lock().expect("seen");
                match event {
                    watcher::Event::Delete(_) => seen.service = None,
                    watcher::Event::Apply(s) | watcher::Event::InitApply(s) => {
                        let ip = s.spec.as_ref().and_then(|s| s.cluster_ip.clone());
                        if let Some(ip) = ip
                            && seen.cluster_ips.last() != Some(&ip)
                        {
                            seen.cluster_ips.push(ip);
                        }
                        seen.service = s.uid();
                    }
                    watcher::Event::Init | watcher::Event::InitDone => continue,
                }
                seen.record();
            }
        });
        let slices: Api<EndpointSlice> = Api::namespaced(client.clone(), namespace);
        let by_label =
            watcher::Config::default().labels(&format!("kubernetes.io/service-name={service}"));
        let record = seen.clone();
        let slice_task = tokio::spawn(async move {
            let mut events = watcher(slices, by_label).boxed();
            while let Ok(Some(event)) = events.try_next().await {
                let mut seen = record.lock().expect("seen");
                match event {
                    watcher::Event::Delete(slice) => {
                        seen.slices.remove(&slice.name_any());
                    }
                    watcher::Event::Apply(slice) | watcher::Event::InitApply(slice) => {
                        let owner = slice.owner_references().first().map(|o| o.uid.clone());
                        let (ready, serving) = reachable(&slice);
                        seen.slices
                            .insert(slice.name_any(), (owner, ready, serving));
                    }
                    watcher::Event::Init | watcher::Event::InitDone => continue,
                }
                seen.record();
            }
        });
        ReadyEndpoints {
            seen,
            tasks: [service_task, slice_task],
        }
    }

    /// Every ClusterIP the Service had while watched, in order.
    pub fn cluster_ips(&self) -> Vec<String> {
        self.seen.lock().expect("seen").cluster_ips.clone()
    }

    /// Ready endpoints now, as last seen.
    pub fn now(&self) -> usize {
        self.seen
            .lock()
            .expect("seen")
            .timeline
            .last()
            .map_or(0, |(_, n)| *n)
    }

    /// Waits until the Service has at least `n` ready endpoints.
    pub async fn wait_for(&self, n: usize, limit: Duration) {
        let started = Instant::now();
        while self.now() < n {
            assert!(
                started.elapsed() < limit,
                "no {n} ready endpoints in {limit:?} (now {})",
                self.now()
            );
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }

    /// How long each of [`ReadyEndpoints::outage_spans`] lasted.
    pub fn outages(&self) -> Vec<Duration> {
        self.outage_spans()
            .into_iter()
            .map(|(from, to)| to - from)
            .collect()
    }

    /// Every interval, after the first ready endpoint, in which there was none, from when it
    /// began to when it ended (one still open, to now).
    pub fn outage_spans(&self) -> Vec<(Instant, Instant)> {
        let seen = self.seen.lock().expect("seen");
        let mut spans = Vec::new();
        let mut since: Option<Instant> = None;
        let mut served = false;
        for (at, n) in seen.timeline.iter() {
            match (*n, since) {
                (0, None) if served => since = Some(*at),
                (n, Some(start)) if n > 0 => {
                    spans.push((start, *at));
                    since = None;
                }
                _ => {}
            }
            served |= *n > 0;
        }
        if let Some(start) = since {
            spans.push((start, Instant::now()));
        }
        spans
    }
}

/// Endpoints of one slice that are ready, and that are serving (the EndpointSlice API: `ready`
/// unset means ready, `serving` unset means as `ready`).
fn reachable(slice: &EndpointSlice) -> (usize, usize) {
    let endpoints = slice.endpoints.iter().flatten();
    let ready = |e: &&k8s_openapi::api::discovery::v1::Endpoint| {
        e.conditions.as_ref().and_then(|c| c.ready).unwrap_or(true)
    };
    let serving = |e: &&k8s_openapi::api::discovery::v1::Endpoint| {
        let c = e.conditions.as_ref();
        c.and_then(|c| c.serving)
            .unwrap_or_else(|| c.and_then(|c| c.ready).unwrap_or(true))
    };
    (
        endpoints.clone().filter(ready).count(),
        endpoints.filter(serving).count(),
    )
}
