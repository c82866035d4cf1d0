//! finish: after `clean --hand-over`, once the module is `Ready`, deletes what the hand-over
//! left (the legacy objects that carried traffic, each only in the state the archive holds) and
//! the legacy Pods and ReplicaSets that no workload of the operator adopted, then sets the
//! finished marker (SPEC "clean --hand-over and finish").

use futures::{StreamExt, TryStreamExt, stream};
use k8s_openapi::api::apps::v1::ReplicaSet;
use k8s_openapi::api::core::v1::Pod;
use kube::api::{
    Api, DeleteParams, DynamicObject, ListParams, PropagationPolicy, WatchEvent, WatchParams,
};
use kube::core::ObjectMeta;
use kube::{Resource, ResourceExt};
use serde_json::Value;

use super::clean::{Against, How, Written, unchanged, write_one};
use super::{Ctx, Outcome};
use crate::access;
use crate::archive;
use crate::conflicts::Conflicts;
use crate::cr;
use crate::error::{Context, Error, Result, is_conflict, is_not_found};
use crate::hand_over;
use crate::legacy;
use crate::module::{self, ModuleState};
use crate::names::{self, LEGACY_OBJECTS};
use crate::step::{Marker, Step};

/// Requests in flight at once for the objects finish deletes (a dozen on a full installation).
const CONCURRENCY: usize = 16;

#[derive(Debug, Clone, Copy, Default)]
pub struct FinishOptions {
    /// Exit at once, saying what finish waits for, instead of waiting for it.
    pub no_wait: bool,
}

/// What finish waits for, or the CR it can finish with.
enum Waiting {
    For(String),
    Ready(Box<DynamicObject>),
    Nothing(Outcome),
}

pub async fn run(ctx: &Ctx, options: FinishOptions) -> Result<Outcome> {
    permitted(ctx).await?;
    let current = match ready_cr(ctx, options).await? {
        Ok(current) => current,
        Err(outcome) => return Ok(outcome),
    };
    let stored = archive_of(ctx, &current).await?;
    let (left, pods) = futures::try_join!(
        delete_left(ctx, &stored.archive.objects),
        delete_orphans(ctx, &stored.archive.objects)
    )?;
    let summary = format!(
        "{} legacy objects left by the hand-over deleted ({} absent); {} orphaned legacy Pods and ReplicaSets deleted",
        left.0.len(),
        left.1,
        pods.len()
    );
    if ctx.options.dry_run {
        let deleted: Vec<String> = left.0.iter().chain(&pods).cloned().collect();
        let plan = format!(
            "would delete {}; would set {}=true on {}",
            deleted.join(", "),
            Marker::Finished.key(),
            cr::display()
        );
        ctx.plan("finish", &plan);
        return Ok(Outcome::Done(format!("would have: {summary}")));
    }
    let note = format!("Deleted what the hand-over left: {summary}");
    ctx.event(&current, false, "Finished", "Finish", note);
    cr::set_markers(&ctx.client, &[Marker::Finished], false).await?;
    Ok(Outcome::Done(summary))
}

/// Fails, before anything is read or written, unless this identity has what finish needs.
async fn permitted(ctx: &Ctx) -> Result<()> {
    let missing = access::missing(&ctx.client, names::finish::NEEDS).await?;
    if missing.is_empty() {
        return Ok(());
    }
    Err(Error::HandOverNotPermitted {
        command: "finish",
        missing: missing.join(", "),
        manifest: names::rbac::HAND_OVER_MANIFEST,
    })
}

/// The CR once it is ready to finish with (waiting for it within the deadline, unless
/// `--no-wait`), or the outcome when there is nothing to do or no waiting.
async fn ready_cr(
    ctx: &Ctx,
    options: FinishOptions,
) -> Result<std::result::Result<Box<DynamicObject>, Outcome>> {
    loop {
        let (waiting, resource_version) = match cr::lookup(&ctx.client).await? {
            cr::Lookup::Found(current) => {
                let rv = current.resource_version();
                (judge(*current), rv)
            }
            _ => (Waiting::For(format!("{} to exist", cr::display())), None),
        };
        let (why, rolling) = match waiting {
            Waiting::Ready(current) => match unsettled_roll(ctx).await? {
                None => return Ok(Ok(current)),
                Some(roll) => (roll, true),
            },
            Waiting::Nothing(outcome) => return Ok(Err(outcome)),
            Waiting::For(why) => (why, false),
        };
        if options.no_wait {
            return Ok(Err(Outcome::Skipped(format!(
                "waiting for {why}; nothing was deleted (--no-wait)"
            ))));
        }
        tracing::info!(waiting_for = %why, "finish waits");
        if rolling {
            wait_a_little(ctx, &why).await?;
        } else {
            wait_for_change(ctx, resource_version, &why).await?;
        }
    }
}

/// `Ready` counts ready replicas, not updated ones: what finish waits for while one of the
/// module's workloads has not replaced every legacy Pod it took over.
async fn unsettled_roll(ctx: &Ctx) -> Result<Option<String>> {
    Ok(module::rolls(&ctx.client)
        .await?
        .into_iter()
        .find(|r| !r.settled)
        .map(|r| format!("{} (it replaces them one by one)", r.describe())))
}

/// How often finish looks again at a roll: its workloads' status changes without the CR's.
const ROLL_RECHECK: std::time::Duration = std::time::Duration::from_secs(2);

/// Sleeps [`ROLL_RECHECK`], or fails at the deadline saying what it waited for.
async fn wait_a_little(ctx: &Ctx, why: &str) -> Result<()> {
    let deadline = ctx.options.deadline;
    if tokio::time::Instant::now() + ROLL_RECHECK > deadline {
        tokio::time::sleep_until(deadline).await;
        return Err(Error::NotReady {
            verdict: format!("finish waited for {why} until the deadline; nothing was deleted"),
        });
    }
    tokio::time::sleep(ROLL_RECHECK).await;
    Ok(())
}

/// clean's archive of this CR: finish deletes only what it holds.
async fn archive_of(ctx: &Ctx, current: &DynamicObject) -> Result<archive::Stored> {
    archive::read_stored(&ctx.client)
        .await?
        .filter(|s| Some(s.archive.cr_uid.as_str()) == current.uid().as_deref())
        .ok_or_else(|| Error::Archive {
            reason: format!(
                "finish deletes only what the archive holds, and {} holds none of {}; nothing was deleted",
                archive::location(),
                cr::display()
            ),
        })
}

/// Whether the CR is ready to finish with, what it waits for, or why there is nothing to do.
fn judge(current: DynamicObject) -> Waiting {
    if let Some(key) = cr::marked(&current, Marker::Finished) {
        return Waiting::Nothing(Outcome::Skipped(format!(
            "already finished ({key}=true on the CR)"
        )));
    }
    if cr::marked(&current, Step::Clean).is_none() {
        return Waiting::For(format!(
            "clean ({} on {})",
            Marker::Cleaned.key(),
            cr::display()
        ));
    }
    if cr::marked(&current, Marker::HandedOver).is_none() {
        return Waiting::Nothing(Outcome::Skipped(format!(
            "clean did not hand over (no {} on the CR): nothing to finish",
            Marker::HandedOver.key()
        )));
    }
    let state = ModuleState::of(&current);
    if state.is_ready() {
        return Waiting::Ready(Box::new(current));
    }
    Waiting::For(format!(
        "the module to be {} (status.state {}, observedGeneration {} of generation {})",
        names::operator::STATE_READY,
        state.state.as_deref().unwrap_or("unset"),
        shown(state.observed_generation),
        shown(state.generation),
    ))
}

/// How long the server keeps a watch open: ended by the server a second before the client's
/// read timeout would cut it (a quiet watch is not a failed request), at most the 290 s the API
/// server allows by default.
fn watch_seconds(request_timeout: std::time::Duration) -> u32 {
    let secs = request_timeout.as_secs().saturating_sub(1).clamp(1, 290);
    u32::try_from(secs).unwrap_or(290)
}

fn shown(n: Option<i64>) -> String {
    n.map_or_else(|| "unset".into(), |n| n.to_string())
}

/// Waits, on a watch of the CR and without polling, until it changes (or the watch ends, or
/// the deadline passes: then fails saying what it waited for).
async fn wait_for_change(ctx: &Ctx, resource_version: Option<String>, why: &str) -> Result<()> {
    let api = cr::api(&ctx.client);
    let params = WatchParams::default()
        .fields(&format!("metadata.name={}", names::cr::NAME))
        .timeout(watch_seconds(ctx.options.request_timeout));
    let version = resource_version.unwrap_or_else(|| "0".into());
    let changed = async {
        let mut events = api
            .watch(&params, &version)
            .await
            .context(|| format!("watching {}", cr::display()))?
            .boxed();
        // A broken watch ends the wait like a change: the caller reads the CR again (through
        // the client's retries) and watches anew.
        while let Some(event) = events.next().await {
            match event {
                Ok(WatchEvent::Bookmark(_)) => continue,
                Ok(_) => break,
                Err(e) => {
                    tracing::debug!(error = %e, "the watch of the CR broke; reading it again");
                    break;
                }
            }
        }
        Ok::<_, Error>(())
    };
    match tokio::time::timeout_at(ctx.options.deadline, changed).await {
        Ok(r) => r,
        Err(_) => Err(Error::NotReady {
            verdict: format!("finish waited for {why} until the deadline; nothing was deleted"),
        }),
    }
}

/// Deletes the legacy objects that the hand-over left for finish, each only in the state the
/// archive holds. Returns what was deleted and how many were absent.
async fn delete_left(ctx: &Ctx, archived: &[Value]) -> Result<(Vec<String>, usize)> {
    let served = legacy::discover(&ctx.client).await?;
    let (objects, _) = legacy::objects_of(&ctx.client, &served, LEGACY_OBJECTS);
    let entries: std::collections::BTreeMap<archive::ObjectKey, &Value> =
        archived.iter().map(|o| (archive::key_of(o), o)).collect();
    let left = objects
        .into_iter()
        .filter(|o| hand_over::left_for_finish(o.row, o.name));
    let results: Vec<Written> = stream::iter(left)
        .map(|o| {
            let entries = &entries;
            async move {
                let read = o
                    .api
                    .get_opt(o.name)
                    .await
                    .context(|| format!("reading {}", o.display))?;
                let key = archive::ObjectKey::of_row(o.row, o.name);
                let against = Against::Archived {
                    read: read.map(Box::new),
                    entry: entries.get(&key).copied(),
                };
                write_one(
                    o,
                    against,
                    How::Delete,
                    ctx.options.dry_run,
                    ctx.options.deadline,
                )
                .await
            }
        })
        .buffered(CONCURRENCY)
        .try_collect()
        .await?;
    let mut deleted = Vec::new();
    let mut absent = 0;
    for r in results {
        match r {
            Written::Done(what) => deleted.push(what),
            Written::Absent | Written::Protected(_) => absent += 1,
        }
    }
    Ok((deleted, absent))
}

/// Deletes the legacy Pods and ReplicaSets that no workload adopted: those that the archived
/// legacy workloads' selectors select and that have no controller. A ReplicaSet goes with its
/// Pods.
async fn delete_orphans(ctx: &Ctx, archived: &[Value]) -> Result<Vec<String>> {
    let mut deleted = Vec::new();
    for workload in archived.iter().filter(|o| {
        o["metadata"]["namespace"] == names::KYMA_SYSTEM
            && matches!(o["kind"].as_str(), Some("StatefulSet" | "Deployment"))
    }) {
        let Some(selector) = label_selector(&workload["spec"]["selector"]) else {
            continue;
        };
        if workload["kind"] == "Deployment" {
            let api: Api<ReplicaSet> = Api::namespaced(ctx.client.clone(), names::KYMA_SYSTEM);
            deleted.extend(delete_uncontrolled(ctx, &api, &selector).await?);
        }
        let api: Api<Pod> = Api::namespaced(ctx.client.clone(), names::KYMA_SYSTEM);
        deleted.extend(delete_uncontrolled(ctx, &api, &selector).await?);
    }
    Ok(deleted)
}

/// `a=b,c=d` from a selector's `matchLabels` (`None` without labels: it would select all).
fn label_selector(selector: &Value) -> Option<String> {
    let labels = selector["matchLabels"].as_object()?;
    let parts: Vec<String> = labels
        .iter()
        .filter_map(|(k, v)| v.as_str().map(|v| format!("{k}={v}")))
        .collect();
    (!parts.is_empty()).then(|| parts.join(","))
}

/// Deletes each object that `selector` selects and no controller owns, guarded by its uid and
/// resourceVersion: one adopted in between has a controller, and is left.
async fn delete_uncontrolled<K>(ctx: &Ctx, api: &Api<K>, selector: &str) -> Result<Vec<String>>
where
    K: Resource<DynamicType = ()> + Clone + serde::de::DeserializeOwned + std::fmt::Debug,
{
    let kind = K::kind(&());
    let listed = api
        .list_metadata(&ListParams::default().labels(selector))
        .await
        .context(|| format!("listing {kind}s {selector} in {}", names::KYMA_SYSTEM))?;
    let mut deleted = Vec::new();
    for meta in listed.items.into_iter().map(|m| m.metadata) {
        let name = meta.name.clone().unwrap_or_default();
        let what = format!("{kind} {}/{name}", names::KYMA_SYSTEM);
        if delete_if_uncontrolled(ctx, api, meta, &what).await? {
            deleted.push(what);
        }
    }
    Ok(deleted)
}

/// Deletes the object while no controller owns it; re-read after each conflict.
async fn delete_if_uncontrolled<K>(
    ctx: &Ctx,
    api: &Api<K>,
    meta: ObjectMeta,
    what: &str,
) -> Result<bool>
where
    K: Resource<DynamicType = ()> + Clone + serde::de::DeserializeOwned + std::fmt::Debug,
{
    let mut current = Some(meta);
    let mut conflicts = Conflicts::until(ctx.options.deadline);
    loop {
        let Some(meta) = current.take() else {
            return Ok(false);
        };
        let controlled = meta
            .owner_references
            .iter()
            .flatten()
            .any(|o| o.controller == Some(true));
        if controlled || meta.deletion_timestamp.is_some() {
            return Ok(false);
        }
        let name = meta.name.clone().unwrap_or_default();
        let params = DeleteParams {
            propagation_policy: Some(PropagationPolicy::Background),
            ..unchanged(&meta, ctx.options.dry_run)
        };
        match api.delete(&name, &params).await {
            Ok(_) => {
                if !ctx.options.dry_run {
                    tracing::info!(object = %what, "orphaned legacy object deleted");
                }
                return Ok(true);
            }
            Err(e) if is_not_found(&e) => return Ok(false),
            Err(e) if is_conflict(&e) => {
                conflicts.pause(|| what.to_string()).await?;
                current = api
                    .get_metadata_opt(&name)
                    .await
                    .context(|| format!("reading {what}"))?
                    .map(|m| m.metadata)
                    .filter(|m| m.uid == meta.uid);
            }
            Err(e) => return Err(e).context(|| format!("deleting {what}")),
        }
    }
}

/// Stays running, without work and without requests, until the container is stopped (SIGTERM,
/// or SIGINT by hand): a native sidecar that exits would be started again.
pub async fn idle() {
    tracing::info!("finish idles until the Pod stops");
    let mut term = match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
        Ok(s) => s,
        Err(e) => {
            tracing::warn!(error = %e, "cannot wait for SIGTERM; waiting for SIGINT only");
            let _ = tokio::signal::ctrl_c().await;
            return;
        }
    };
    tokio::select! {
        _ = term.recv() => {}
        _ = tokio::signal::ctrl_c() => {}
    }
}
