//! What a Service's clients see: a watch on its EndpointSlices that records how many ready
//! endpoints it has over time, so that a test can say how long it had none.

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use futures::{StreamExt, TryStreamExt};
use k8s_openapi::api::discovery::v1::EndpointSlice;
use kube::api::Api;
use kube::runtime::{WatchStreamExt, watcher};
use kube::{Client, ResourceExt};
use tokio::task::JoinHandle;

/// A running record of one Service's ready endpoints; it stops when dropped.
pub struct ReadyEndpoints {
    timeline: Arc<Mutex<Vec<(Instant, usize)>>>,
    task: JoinHandle<()>,
}

impl Drop for ReadyEndpoints {
    fn drop(&mut self) {
        self.task.abort();
    }
}

impl ReadyEndpoints {
    /// Starts recording Service `namespace/service`.
    pub fn watch(client: &Client, namespace: &str, service: &str) -> ReadyEndpoints {
        let slices: Api<EndpointSlice> = Api::namespaced(client.clone(), namespace);
        let selector = format!("kubernetes.io/service-name={service}");
        let timeline = Arc::new(Mutex::new(Vec::new()));
        let record = timeline.clone();
        let task = tokio::spawn(async move {
            let mut ready_by_slice: BTreeMap<String, usize> = BTreeMap::new();
            let mut events = watcher(slices, watcher::Config::default().labels(&selector))
                .default_backoff()
                .touched_objects()
                .boxed();
            while let Ok(Some(slice)) = events.try_next().await {
                let name = slice.name_any();
                if slice.metadata.deletion_timestamp.is_some() {
                    ready_by_slice.remove(&name);
                } else {
                    ready_by_slice.insert(name, ready(&slice));
                }
                let total = ready_by_slice.values().sum();
                record
                    .lock()
                    .expect("timeline")
                    .push((Instant::now(), total));
            }
        });
        ReadyEndpoints { timeline, task }
    }

    /// Ready endpoints now, as last seen.
    pub fn now(&self) -> usize {
        self.timeline
            .lock()
            .expect("timeline")
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

    /// Every interval, after the first ready endpoint, in which there was none (one still
    /// open counts up to now).
    pub fn outages(&self) -> Vec<Duration> {
        let timeline = self.timeline.lock().expect("timeline");
        let mut outages = Vec::new();
        let mut since: Option<Instant> = None;
        let mut served = false;
        for (at, n) in timeline.iter() {
            match (*n, since) {
                (0, None) if served => since = Some(*at),
                (n, Some(start)) if n > 0 => {
                    outages.push(*at - start);
                    since = None;
                }
                _ => {}
            }
            served |= *n > 0;
        }
        if let Some(start) = since {
            outages.push(start.elapsed());
        }
        outages
    }
}

/// Endpoints of one slice that are ready (the EndpointSlice API: `ready` unset means ready).
fn ready(slice: &EndpointSlice) -> usize {
    slice
        .endpoints
        .iter()
        .flatten()
        .filter(|e| e.conditions.as_ref().and_then(|c| c.ready).unwrap_or(true))
        .count()
}
