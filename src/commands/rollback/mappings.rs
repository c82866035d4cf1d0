//! rollback's ServiceMappings and their CRD, brought back as they were before clean: the CRD
//! first (recreated if the module's uninstall deleted it, else its spec, labels and annotations put
//! back), then each archived mapping recreated if missing, un-adopted if present and unchanged, and
//! left (and named) if changed since the archive.

use std::time::Duration;

use futures::{StreamExt, TryStreamExt, stream};
use k8s_openapi::apiextensions_apiserver::pkg::apis::apiextensions::v1::CustomResourceDefinition;
use kube::api::{Api, DynamicObject, Patch};
use kube::core::ApiResource;
use serde_json::Value;

use crate::archive::{self, MappingEntry, MappingsArchive, Prior};
use crate::client::{patch_params, post_params};
use crate::commands::Ctx;
use crate::conflicts::Conflicts;
use crate::diff::first_difference;
use crate::error::{Context, Error, Result, is_already_exists, is_conflict, is_not_found};
use crate::names::service_mappings as sm;
use crate::service_mappings;

/// What rollback did to the ServiceMappings and their CRD.
#[derive(Debug, Default)]
pub struct Restored {
    pub crd: CrdAction,
    pub recreated: usize,
    pub unadopted: usize,
    /// Present, but changed since the archive was written: left as they are.
    pub changed: Vec<String>,
    /// Missing, and the archive holds their names only (written by an older version).
    pub names_only: Vec<String>,
}

#[derive(Debug, Default, PartialEq, Eq)]
pub enum CrdAction {
    #[default]
    Unchanged,
    /// It was gone: created from the archive.
    Recreated,
    /// Its spec, or the adoption's keys, put back as they were before clean.
    PutBack,
    /// Gone, and the archive does not hold it (written by an older version): nothing to do.
    Gone,
}

/// How long the API server may still judge ServiceMapping writes by the CRD as it was before
/// rollback wrote it: it serves a changed CRD a moment after the write is stored.
const CRD_SETTLING: Duration = Duration::from_secs(10);

pub async fn restore(
    ctx: &Ctx,
    archived: &MappingsArchive,
    current: Option<CustomResourceDefinition>,
) -> Result<Restored> {
    let mut restored = Restored::default();
    if archived.items.is_empty() && archived.crd.is_none() && archived.crd_object.is_none() {
        return Ok(restored);
    }
    let (crd, action) = restore_crd(ctx, archived, current).await?;
    restored.crd = action;
    let Some(crd) = crd else {
        // Dry run of a recreation: nothing is served yet to dry-run the creates against.
        if restored.crd == CrdAction::Recreated {
            restored.recreated = archived.items.iter().filter(|m| m.object.is_some()).count();
            restored.names_only = names_only(archived.items.iter());
        } else if !archived.items.is_empty() {
            tracing::warn!(
                crd = sm::CRD_NAME,
                "the ServiceMapping CRD is gone and the archive holds no copy of it (written by an \
                 older version); no ServiceMapping can be brought back"
            );
            restored.names_only = archived.items.iter().map(MappingEntry::display).collect();
        }
        return Ok(restored);
    };
    let Some(ar) = service_mappings::resource(&crd) else {
        return Ok(restored);
    };
    let namespaced = crd.spec.scope == "Namespaced";
    let seen = unadopt_present(ctx, archived, &ar, namespaced, &mut restored).await?;
    let missing = archived.items.iter().zip(&seen).filter(|(_, s)| !**s);
    let (recreatable, gone): (Vec<_>, Vec<_>) =
        missing.map(|(m, _)| m).partition(|m| m.object.is_some());
    restored.names_only = names_only(gone.into_iter());
    let settling =
        (restored.crd != CrdAction::Unchanged).then(|| tokio::time::Instant::now() + CRD_SETTLING);
    restored.recreated = stream::iter(recreatable)
        .map(|m| recreate(ctx, &ar, m, settling))
        .buffer_unordered(service_mappings::CONCURRENCY)
        .try_fold(
            0usize,
            |n, created| async move { Ok(n + usize::from(created)) },
        )
        .await?;
    Ok(restored)
}

fn names_only<'a>(entries: impl Iterator<Item = &'a MappingEntry>) -> Vec<String> {
    let names: Vec<String> = entries
        .filter(|m| m.object.is_none())
        .map(MappingEntry::display)
        .collect();
    for name in &names {
        tracing::warn!(object = %name, "gone, and the archive holds its name only; not recreated");
    }
    names
}

/// The CRD as it was before clean: recreated (and Established) if gone, else its spec and the
/// adoption's keys put back. Returns the CRD as it is now (`None` if gone, or in a dry run of
/// its recreation).
async fn restore_crd(
    ctx: &Ctx,
    archived: &MappingsArchive,
    mut current: Option<CustomResourceDefinition>,
) -> Result<(Option<CustomResourceDefinition>, CrdAction)> {
    let Some(object) = &archived.crd_object else {
        return unadopt_crd(ctx, archived, current).await;
    };
    let api: Api<CustomResourceDefinition> = Api::all(ctx.client.clone());
    let prior = archived.crd.clone().unwrap_or_default();
    let mut conflicts = Conflicts::until(ctx.options.deadline);
    loop {
        let done = match &current {
            None => recreate_crd(ctx, &api, object, &prior).await?,
            Some(crd) => put_crd_back(ctx, &api, crd, object, &prior).await?,
        };
        if let Some(done) = done {
            return Ok(done);
        }
        conflicts.pause(crd_display).await?;
        current = api
            .get_opt(sm::CRD_NAME)
            .await
            .context(|| format!("reading {}", crd_display()))?;
    }
}

fn crd_display() -> String {
    format!("CustomResourceDefinition {}", sm::CRD_NAME)
}

/// An older archive holds only the adoption's keys of the CRD: those are put back.
async fn unadopt_crd(
    ctx: &Ctx,
    archived: &MappingsArchive,
    current: Option<CustomResourceDefinition>,
) -> Result<(Option<CustomResourceDefinition>, CrdAction)> {
    let Some(crd) = current else {
        return Ok((None, CrdAction::Gone));
    };
    let prior = match &archived.crd {
        Some(prior) if !prior.matches(&crd.metadata) => prior,
        _ => return Ok((Some(crd), CrdAction::Unchanged)),
    };
    let api: Api<CustomResourceDefinition> = Api::all(ctx.client.clone());
    let crd = api
        .patch(
            sm::CRD_NAME,
            &patch_params(ctx.options.dry_run),
            &Patch::Merge(&prior.restoring_patch()),
        )
        .await
        .context(|| format!("un-adopting {}", crd_display()))?;
    Ok((Some(crd), CrdAction::PutBack))
}

/// Creates the CRD as the archive holds it and waits until it is Established; `None` when it
/// exists after all (created concurrently).
async fn recreate_crd(
    ctx: &Ctx,
    api: &Api<CustomResourceDefinition>,
    object: &Value,
    prior: &Prior,
) -> Result<Option<(Option<CustomResourceDefinition>, CrdAction)>> {
    let crd: CustomResourceDefinition = decode(prior.applied_to(object.clone()), &crd_display)?;
    match api.create(&post_params(ctx.options.dry_run), &crd).await {
        Ok(_) if ctx.options.dry_run => Ok(Some((None, CrdAction::Recreated))),
        Ok(_) => {
            tracing::info!(crd = sm::CRD_NAME, "recreated from the archive");
            let crd = established(ctx, api).await?;
            Ok(Some((Some(crd), CrdAction::Recreated)))
        }
        Err(e) if is_already_exists(&e) => Ok(None),
        Err(e) => Err(e).context(|| format!("recreating {}", crd_display())),
    }
}

/// Puts the CRD's spec, labels and annotations back as the archive holds them, guarded by its
/// resourceVersion; `None` after a conflict (or when it is gone since it was read).
async fn put_crd_back(
    ctx: &Ctx,
    api: &Api<CustomResourceDefinition>,
    crd: &CustomResourceDefinition,
    object: &Value,
    prior: &Prior,
) -> Result<Option<(Option<CustomResourceDefinition>, CrdAction)>> {
    let Some(wanted) = put_back(crd, object, prior, &crd_display)? else {
        // An earlier rollback may have stopped right after creating it.
        if !ctx.options.dry_run && !is_established(crd) {
            let crd = established(ctx, api).await?;
            return Ok(Some((Some(crd), CrdAction::Unchanged)));
        }
        return Ok(Some((Some(crd.clone()), CrdAction::Unchanged)));
    };
    let pp = patch_params(ctx.options.dry_run);
    match api.patch(sm::CRD_NAME, &pp, &Patch::Merge(&wanted)).await {
        Ok(_) if ctx.options.dry_run => Ok(Some((Some(crd.clone()), CrdAction::PutBack))),
        Ok(_) => {
            tracing::info!(
                crd = sm::CRD_NAME,
                "spec and adoption put back as before clean"
            );
            let crd = established(ctx, api).await?;
            Ok(Some((Some(crd), CrdAction::PutBack)))
        }
        Err(e) if is_conflict(&e) || is_not_found(&e) => Ok(None),
        Err(e) => Err(e).context(|| format!("putting back {}", crd_display())),
    }
}

/// The merge patch that makes `current` as it was before clean: the archived spec, labels and
/// annotations (the adoption's keys as they were), guarded by its resourceVersion; `None` when
/// it is so already. The server's own fields are kept. A patch, not an update: the everyday
/// RBAC manifest lets clean patch this CRD already.
fn put_back(
    current: &CustomResourceDefinition,
    archived: &Value,
    prior: &Prior,
    what: &impl Fn() -> String,
) -> Result<Option<Value>> {
    let encode = |e: serde_json::Error| Error::Archive {
        reason: format!("encoding {}: {e}", what()),
    };
    let now = serde_json::to_value(current).map_err(encode)?;
    let before = prior.applied_to(archived.clone());
    let mut wanted = now.clone();
    wanted["spec"] = before["spec"].clone();
    for field in ["labels", "annotations"] {
        match before["metadata"].get(field) {
            Some(v) => wanted["metadata"][field] = v.clone(),
            None => {
                if let Some(meta) = wanted["metadata"].as_object_mut() {
                    meta.remove(field);
                }
            }
        }
    }
    if wanted == now {
        return Ok(None);
    }
    let mut patch = merge_diff(&now, &wanted);
    patch["metadata"]["resourceVersion"] = now["metadata"]["resourceVersion"].clone();
    Ok(Some(patch))
}

/// The JSON merge patch (RFC 7386) that turns `from` into `to`: changed keys set, missing ones
/// null, lists replaced whole.
fn merge_diff(from: &Value, to: &Value) -> Value {
    match (from, to) {
        (Value::Object(f), Value::Object(t)) => {
            let mut patch = serde_json::Map::new();
            for (k, tv) in t {
                match f.get(k) {
                    Some(fv) if fv == tv => {}
                    Some(fv) => {
                        patch.insert(k.clone(), merge_diff(fv, tv));
                    }
                    None => {
                        patch.insert(k.clone(), tv.clone());
                    }
                }
            }
            for k in f.keys().filter(|k| !t.contains_key(*k)) {
                patch.insert(k.clone(), Value::Null);
            }
            Value::Object(patch)
        }
        _ => to.clone(),
    }
}

fn decode<T: serde::de::DeserializeOwned>(value: Value, what: &impl Fn() -> String) -> Result<T> {
    serde_json::from_value(value).map_err(|e| Error::Archive {
        reason: format!("{} in the archive is not a valid object: {e}", what()),
    })
}

/// Waits (within the deadline) until the CRD is Established, and returns it.
async fn established(
    ctx: &Ctx,
    api: &Api<CustomResourceDefinition>,
) -> Result<CustomResourceDefinition> {
    loop {
        let crd = api
            .get_opt(sm::CRD_NAME)
            .await
            .context(|| format!("reading CustomResourceDefinition {}", sm::CRD_NAME))?;
        if let Some(crd) = crd.filter(is_established) {
            return Ok(crd);
        }
        if tokio::time::Instant::now() >= ctx.options.deadline {
            return Err(Error::Archive {
                reason: format!(
                    "CustomResourceDefinition {} was written but is not Established before the deadline",
                    sm::CRD_NAME
                ),
            });
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

fn is_established(crd: &CustomResourceDefinition) -> bool {
    crd.status
        .as_ref()
        .and_then(|s| s.conditions.as_ref())
        .is_some_and(|c| {
            c.iter()
                .any(|c| c.type_ == "Established" && c.status == "True")
        })
}

/// Lists the mappings there are, un-adopts each archived one that is unchanged since the
/// archive (as its page arrives), and names each that changed. Returns, per archived entry,
/// whether it exists.
async fn unadopt_present(
    ctx: &Ctx,
    archived: &MappingsArchive,
    ar: &ApiResource,
    namespaced: bool,
    restored: &mut Restored,
) -> Result<Vec<bool>> {
    let index: std::collections::BTreeMap<(Option<&str>, &str), usize> = archived
        .items
        .iter()
        .enumerate()
        .map(|(i, m)| ((m.namespace.as_deref(), m.name.as_str()), i))
        .collect();
    // Once each, also when a restarted list shows a mapping again.
    let mut seen = vec![false; archived.items.len()];
    let mut changed = Vec::new();
    let select = |m: &DynamicObject| {
        let namespace = m.metadata.namespace.as_deref().filter(|_| namespaced);
        let name = m.metadata.name.as_deref().unwrap_or_default();
        let i = *index.get(&(namespace, name))?;
        if std::mem::replace(&mut seen[i], true) {
            return None;
        }
        let entry = &archived.items[i];
        if let Some(object) = &entry.object {
            let now = archive::archival(m).map(archive::without_adoption).ok();
            if !now.is_some_and(|now| object.holds(&now)) {
                tracing::warn!(object = %entry.display(), "changed since the archive was written; left as it is");
                changed.push(entry.display());
                return None;
            }
        }
        (!entry.prior.matches(&m.metadata)).then(|| {
            (
                entry.namespace.clone(),
                entry.name.clone(),
                entry.prior.restoring_patch(),
            )
        })
    };
    restored.unadopted = service_mappings::list_and_patch(
        &ctx.client,
        ar,
        select,
        ctx.options.dry_run,
        "un-adopting",
    )
    .await?;
    changed.sort();
    restored.changed = changed;
    Ok(seen)
}

/// Creates an archived mapping as it was before clean and checks what the server stored;
/// `false` when it exists already (created in the meantime). While the CRD that rollback wrote
/// settles, the server may still answer by the one before: such answers are tried again.
async fn recreate(
    ctx: &Ctx,
    ar: &ApiResource,
    entry: &MappingEntry,
    settling: Option<tokio::time::Instant>,
) -> Result<bool> {
    let what = entry.display();
    let Some(wanted) = entry.restored()? else {
        return Ok(false);
    };
    let object: DynamicObject = decode(wanted.clone(), &|| what.clone())?;
    let api: Api<DynamicObject> = match &entry.namespace {
        Some(ns) => Api::namespaced_with(ctx.client.clone(), ns, ar),
        None => Api::all_with(ctx.client.clone(), ar),
    };
    loop {
        match api.create(&post_params(ctx.options.dry_run), &object).await {
            Ok(stored) => {
                let stored = serde_json::to_value(stored).unwrap_or(Value::Null);
                return match first_difference("", &wanted, &stored) {
                    None => Ok(true),
                    Some(difference) => Err(Error::RollbackMismatch {
                        object: what,
                        difference,
                    }),
                };
            }
            Err(e) if is_already_exists(&e) => return Ok(false),
            Err(kube::Error::Api(s))
                if (s.code == 404 || s.code == 422)
                    && settling.is_some_and(|until| tokio::time::Instant::now() < until) =>
            {
                tokio::time::sleep(Duration::from_millis(100)).await;
            }
            Err(e) => return Err(e).context(|| format!("recreating {what}")),
        }
    }
}
