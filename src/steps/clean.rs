//! Step 3: ServiceMappings handed to the new operator, then the legacy installation deleted,
//! but only once a verified copy of the user configuration exists.

use std::collections::BTreeMap;

use futures::channel::mpsc;
use futures::{SinkExt, StreamExt, TryStreamExt, stream};
use k8s_openapi::api::core::v1::ConfigMap;
use k8s_openapi::apiextensions_apiserver::pkg::apis::apiextensions::v1::CustomResourceDefinition;
use kube::ResourceExt;
use kube::api::{Api, DeleteParams, DynamicObject, ListParams, Patch, Preconditions};
use kube::core::{ApiResource, GroupVersionKind, ObjectMeta};
use serde_json::json;

use super::{Ctx, Outcome, print_plan};
use crate::client::patch_params;
use crate::configmaps;
use crate::cr::{self, Marker};
use crate::error::{Context, Error, Result, is_conflict, is_not_found};
use crate::legacy;
use crate::names::{self, config_maps, service_mappings as sm};

/// ServiceMappings fetched per list request.
const PAGE_SIZE: u32 = 500;
/// Writes in flight at once: enough to keep the API server busy, few enough not to be throttled.
const CONCURRENCY: usize = 16;

pub async fn run(ctx: &Ctx) -> Result<Outcome> {
    let current = match super::cr_or_skip(ctx).await? {
        Ok(cr) => cr,
        Err(skipped) => return Ok(skipped),
    };
    if ctx.marked(&current, Marker::Migrated).is_none() {
        return Ok(Outcome::Skipped(
            "the CR is not marked migrated; the legacy installation stays".into(),
        ));
    }
    if let Some(key) = cr::marked(&current, Marker::Cleaned) {
        return Ok(Outcome::Skipped(format!(
            "already cleaned ({key}=true on the CR)"
        )));
    }
    let checked = check_backup(ctx, &current).await?;

    let adoption = adopt_service_mappings(ctx).await?;
    let deletion = delete_legacy_objects(ctx, &checked).await?;
    let summary = format!(
        "{} of {} ServiceMappings adopted{}; {} legacy objects deleted, {} absent, {} kept as the new operator's{}",
        adoption.adopted,
        adoption.examined,
        if adoption.crd_adopted {
            " (and their CRD)"
        } else {
            ""
        },
        deletion.deleted.len(),
        deletion.absent,
        deletion.protected.len(),
        if deletion.unserved.is_empty() {
            String::new()
        } else {
            format!(", kinds not served: {}", deletion.unserved.join(", "))
        },
    );
    if ctx.dry_run {
        print_plan(
            "clean",
            &format!(
                "would set {}=true on {}",
                Marker::Cleaned.key(),
                cr::display()
            ),
        );
        return Ok(Outcome::Done(format!("would have: {summary}")));
    }
    let marked = cr::set_markers(&ctx.client, &[Marker::Cleaned], false).await?;
    ctx.event(
        &marked,
        false,
        "Cleaned",
        "Clean",
        format!("Removed the legacy Connectivity Proxy: {summary}"),
    )
    .await;
    Ok(Outcome::Done(summary))
}

/// The user ConfigMaps as the backup check saw them: the metadata of each that existed (its copy
/// has equal data), `None` for one that did not exist. Only that state has a verified copy, so
/// only that state is deleted.
type BackupCheck = BTreeMap<&'static str, Option<ObjectMeta>>;

/// The safety gate: nothing is deleted unless the backup is marked done and each user
/// ConfigMap that still exists has a copy with equal data in the backup namespace.
async fn check_backup(ctx: &Ctx, current: &DynamicObject) -> Result<BackupCheck> {
    if ctx.marked(current, Marker::BackedUp).is_none() {
        return Err(Error::CleanGate {
            reason: format!(
                "{} is not marked backed up ({}=true); run the backup step first",
                cr::display(),
                Marker::BackedUp.key()
            ),
        });
    }
    // In `run --dry-run` the backup was not really made; it would copy exactly the sources.
    let backup_assumed = cr::marked(current, Marker::BackedUp).is_none();
    let mut checked = BackupCheck::new();
    for name in config_maps::USER_CONFIG {
        let source = configmaps::get(&ctx.client, names::KYMA_SYSTEM, name).await?;
        if let Some(source) = &source
            && !backup_assumed
        {
            check_copy(ctx, name, source).await?;
        }
        checked.insert(name, source.map(|s| s.metadata));
    }
    Ok(checked)
}

/// Fails unless the backup namespace holds a copy of `source` with equal data.
async fn check_copy(ctx: &Ctx, name: &str, source: &ConfigMap) -> Result<()> {
    let gate = |reason: String| Err(Error::CleanGate { reason });
    match configmaps::get(&ctx.client, names::BACKUP_NAMESPACE, name).await? {
        None => gate(format!(
            "ConfigMap {}/{name} exists but namespace {} holds no copy of it; run the backup step again \
             (remove {} from the CR first)",
            names::KYMA_SYSTEM,
            names::BACKUP_NAMESPACE,
            Marker::BackedUp.key()
        )),
        Some(copy) if !configmaps::same_data(&copy, source) => gate(format!(
            "the copy {}/{name} differs from ConfigMap {}/{name}: the configuration changed after the backup; \
             remove {} from the CR and run the backup step again",
            names::BACKUP_NAMESPACE,
            names::KYMA_SYSTEM,
            Marker::BackedUp.key()
        )),
        Some(_) => Ok(()),
    }
}

#[derive(Debug, Default)]
pub struct Adoption {
    pub examined: usize,
    pub adopted: usize,
    pub crd_adopted: bool,
}

/// Whether an object already carries the new operator's annotations and label.
/// Where the ServiceMappings are served: the storage version if served, else the first served
/// one; `None` when the CRD serves no version.
pub fn service_mapping_resource(crd: &CustomResourceDefinition) -> Option<ApiResource> {
    let versions = &crd.spec.versions;
    let version = versions
        .iter()
        .find(|v| v.storage && v.served)
        .or_else(|| versions.iter().find(|v| v.served))?;
    Some(ApiResource::from_gvk_with_plural(
        &GroupVersionKind::gvk(&crd.spec.group, &version.name, &crd.spec.names.kind),
        &crd.spec.names.plural,
    ))
}

pub fn is_adopted(meta: &ObjectMeta) -> bool {
    let ann = |k: &str| {
        meta.annotations
            .as_ref()
            .and_then(|a| a.get(k))
            .map(String::as_str)
    };
    let label = meta
        .labels
        .as_ref()
        .and_then(|l| l.get(names::OPERATOR_LABEL))
        .map(String::as_str);
    ann(sm::PRIMARY_NAME_ANNOTATION) == Some(names::cr::NAME)
        && ann(sm::PRIMARY_NAMESPACE_ANNOTATION) == Some(names::KYMA_SYSTEM)
        && label == Some(names::OPERATOR_LABEL_VALUE)
}

fn adoption_patch() -> serde_json::Value {
    json!({
        "metadata": {
            "annotations": {
                sm::PRIMARY_NAME_ANNOTATION: names::cr::NAME,
                sm::PRIMARY_NAMESPACE_ANNOTATION: names::KYMA_SYSTEM,
            },
            "labels": { names::OPERATOR_LABEL: names::OPERATOR_LABEL_VALUE },
        }
    })
}

/// Adds the operator's annotations and label to every ServiceMapping and to their CRD. The list
/// is streamed in pages and the writes run with bounded concurrency, so memory does not grow
/// with the number of mappings; mappings that are adopted already cost no request.
pub async fn adopt_service_mappings(ctx: &Ctx) -> Result<Adoption> {
    let crds: Api<CustomResourceDefinition> = Api::all(ctx.client.clone());
    let Some(crd) = crds
        .get_opt(sm::CRD_NAME)
        .await
        .context(|| format!("reading CustomResourceDefinition {}", sm::CRD_NAME))?
    else {
        tracing::info!(
            crd = sm::CRD_NAME,
            "no ServiceMapping CRD; nothing to adopt"
        );
        return Ok(Adoption::default());
    };
    let Some(ar) = service_mapping_resource(&crd) else {
        tracing::info!(
            crd = sm::CRD_NAME,
            "the ServiceMapping CRD serves no version; no mapping to adopt"
        );
        return adopt_crd(ctx, &crds, &crd, Adoption::default()).await;
    };
    let namespaced = crd.spec.scope == "Namespaced";
    let all: Api<DynamicObject> = Api::all_with(ctx.client.clone(), &ar);
    let patch = adoption_patch();
    let pp = patch_params(ctx.dry_run);

    // The lister runs ahead of the writers through a bounded channel: the next page is fetched
    // while the writes of this one are in flight, so the writers never wait for a page and at
    // most about two pages of names are held at once, whatever the number of mappings.
    let (tx, rx) = mpsc::channel::<(Option<String>, String)>(PAGE_SIZE as usize);
    let list = async move {
        let mut tx = tx;
        let mut examined = 0usize;
        let mut token: Option<String> = None;
        loop {
            let mut lp = ListParams::default().limit(PAGE_SIZE);
            if let Some(t) = &token {
                lp = lp.continue_token(t);
            }
            let page = match all.list_metadata(&lp).await {
                Ok(page) => page,
                // The continue token expired during a long pass: list again; adopted ones are
                // skipped, so only the count starts over.
                Err(kube::Error::Api(s)) if s.code == 410 && token.is_some() => {
                    token = None;
                    examined = 0;
                    continue;
                }
                Err(e) => return Err(e).context(|| format!("listing {}", sm::PLURAL)),
            };
            examined += page.items.len();
            for m in page.items.iter().filter(|m| !is_adopted(&m.metadata)) {
                let key = (if namespaced { m.namespace() } else { None }, m.name_any());
                // Fails only when the writers stopped on an error, which they report.
                if tx.send(key).await.is_err() {
                    return Ok(examined);
                }
            }
            token = page.metadata.continue_.filter(|t| !t.is_empty());
            if token.is_none() {
                return Ok(examined);
            }
        }
    };
    let write = rx
        .map(|(ns, name)| {
            let api: Api<DynamicObject> = match &ns {
                Some(ns) => Api::namespaced_with(ctx.client.clone(), ns, &ar),
                None => Api::all_with(ctx.client.clone(), &ar),
            };
            let (patch, pp) = (&patch, &pp);
            async move {
                // Only the metadata comes back: the answer is not needed, so keep it small.
                match api.patch_metadata(&name, pp, &Patch::Merge(patch)).await {
                    Ok(_) => Ok(1usize),
                    // Deleted since it was listed: nothing left to adopt.
                    Err(e) if is_not_found(&e) => Ok(0),
                    Err(e) => Err(e).context(|| {
                        format!(
                            "adopting {} {}{name}",
                            sm::KIND,
                            ns.map(|n| format!("{n}/")).unwrap_or_default()
                        )
                    }),
                }
            }
        })
        .buffer_unordered(CONCURRENCY)
        .try_fold(0usize, |acc, n| async move { Ok(acc + n) });
    let (examined, adopted) = futures::try_join!(list, write)?;
    adopt_crd(
        ctx,
        &crds,
        &crd,
        Adoption {
            examined,
            adopted,
            crd_adopted: false,
        },
    )
    .await
}

/// Adopts the ServiceMapping CRD itself (unless it is already), and shows the plan of a dry run.
async fn adopt_crd(
    ctx: &Ctx,
    crds: &Api<CustomResourceDefinition>,
    crd: &CustomResourceDefinition,
    mut adoption: Adoption,
) -> Result<Adoption> {
    if !is_adopted(&crd.metadata) {
        crds.patch(
            sm::CRD_NAME,
            &patch_params(ctx.dry_run),
            &Patch::Merge(&adoption_patch()),
        )
        .await
        .context(|| format!("adopting CustomResourceDefinition {}", sm::CRD_NAME))?;
        adoption.crd_adopted = true;
    }
    if ctx.dry_run {
        print_plan(
            "clean",
            &format!(
                "would adopt {} of {} ServiceMappings{}",
                adoption.adopted,
                adoption.examined,
                if adoption.crd_adopted {
                    " and their CRD"
                } else {
                    ""
                }
            ),
        );
    }
    Ok(adoption)
}

#[derive(Debug, Default)]
pub struct Deletion {
    pub deleted: Vec<String>,
    pub absent: usize,
    pub protected: Vec<String>,
    pub unserved: Vec<String>,
}

enum Deleted {
    Yes(String),
    Absent,
    Protected(String),
}

/// Deletes every object of the legacy table that exists, is served, and is not the new operator's.
async fn delete_legacy_objects(ctx: &Ctx, checked: &BackupCheck) -> Result<Deletion> {
    let (objects, unserved) = legacy::objects(&ctx.client).await?;
    for kind in &unserved {
        tracing::info!(kind = %kind, "kind not served by this cluster; skipped");
    }
    let mut deletion = Deletion {
        unserved,
        ..Default::default()
    };
    // `buffered` starts deletions in table order (workloads first) while several are in flight.
    let results: Vec<Deleted> = stream::iter(objects)
        .map(|o| {
            let against = if o.is_user_config() {
                Against::BackupCheck(checked.get(o.name).cloned().flatten().map(Box::new))
            } else {
                Against::FreshRead
            };
            delete_one(o, against, ctx.dry_run)
        })
        .buffered(CONCURRENCY)
        .try_collect()
        .await?;
    for r in results {
        match r {
            Deleted::Yes(what) => deletion.deleted.push(what),
            Deleted::Absent => deletion.absent += 1,
            Deleted::Protected(what) => deletion.protected.push(what),
        }
    }
    if ctx.dry_run {
        print_plan(
            "clean",
            &format!(
                "would delete {} legacy objects: {}",
                deletion.deleted.len(),
                deletion.deleted.join(", ")
            ),
        );
    }
    Ok(deletion)
}

/// The state of a legacy object that its deletion is checked against.
enum Against {
    /// Read just before the delete.
    FreshRead,
    /// A user ConfigMap as the backup check saw it (`None`: it did not exist then).
    BackupCheck(Option<Box<ObjectMeta>>),
}

/// Deletes one legacy object unless it is the new operator's.
async fn delete_one(
    object: legacy::LegacyObject,
    against: Against,
    dry_run: bool,
) -> Result<Deleted> {
    if let Against::BackupCheck(verified) = against {
        return delete_backed_up(object, verified, dry_run).await;
    }
    let legacy::LegacyObject {
        api,
        name,
        display: what,
        ..
    } = object;
    // The uid and resourceVersion preconditions make sure that what is deleted is the object
    // just checked, unchanged: if it was replaced, or labelled as the operator's, in between,
    // the delete conflicts and the object is checked again.
    const ATTEMPTS: u32 = 5;
    for _ in 0..ATTEMPTS {
        let Some(meta) = api
            .get_metadata_opt(name)
            .await
            .context(|| format!("reading {what}"))?
        else {
            return Ok(Deleted::Absent);
        };
        if legacy::is_operators(&meta.metadata) {
            tracing::info!(object = %what, "carries the new operator's label; kept");
            return Ok(Deleted::Protected(what));
        }
        match api.delete(name, &unchanged(&meta.metadata, dry_run)).await {
            Ok(_) => return Ok(deleted(what, dry_run)),
            Err(e) if is_not_found(&e) => return Ok(Deleted::Absent),
            Err(e) if is_conflict(&e) => continue,
            Err(e) => return Err(e).context(|| format!("deleting {what}")),
        }
    }
    Err(Error::TooManyConflicts {
        object: what,
        attempts: ATTEMPTS,
    })
}

/// Deletes a user ConfigMap only in the state whose copy the backup check verified. Any other
/// state has no verified copy: it is kept and the step fails; the next run checks again.
async fn delete_backed_up(
    object: legacy::LegacyObject,
    verified: Option<Box<ObjectMeta>>,
    dry_run: bool,
) -> Result<Deleted> {
    let legacy::LegacyObject {
        api,
        name,
        display: what,
        ..
    } = object;
    let Some(meta) = verified else {
        return match api
            .get_metadata_opt(name)
            .await
            .context(|| format!("reading {what}"))?
        {
            None => Ok(Deleted::Absent),
            Some(_) => Err(Error::ChangedSinceBackupCheck {
                object: what,
                change: "was created",
            }),
        };
    };
    if legacy::is_operators(&meta) {
        tracing::info!(object = %what, "carries the new operator's label; kept");
        return Ok(Deleted::Protected(what));
    }
    match api.delete(name, &unchanged(&meta, dry_run)).await {
        Ok(_) => Ok(deleted(what, dry_run)),
        Err(e) if is_not_found(&e) => Ok(Deleted::Absent),
        Err(e) if is_conflict(&e) => Err(Error::ChangedSinceBackupCheck {
            object: what,
            change: "changed",
        }),
        Err(e) => Err(e).context(|| format!("deleting {what}")),
    }
}

/// A delete that succeeds only while the object is exactly as `meta` describes it.
fn unchanged(meta: &ObjectMeta, dry_run: bool) -> DeleteParams {
    DeleteParams {
        dry_run,
        preconditions: Some(Preconditions {
            uid: meta.uid.clone(),
            resource_version: meta.resource_version.clone(),
        }),
        ..Default::default()
    }
}

fn deleted(what: String, dry_run: bool) -> Deleted {
    if !dry_run {
        tracing::info!(object = %what, "deleted");
    }
    Deleted::Yes(what)
}
