//! Step 3: an archive of what clean changes, then the ServiceMappings handed to the new
//! operator and the legacy installation deleted, but only once a verified copy of the user
//! configuration and a verified archive exist, and while the CRDs the new operator needs to
//! start are served (or `--skip-operator-prerequisites`).

use std::borrow::Cow;
use std::collections::BTreeMap;

use futures::{StreamExt, TryStreamExt, stream};
use k8s_openapi::api::core::v1::ConfigMap;
use k8s_openapi::apiextensions_apiserver::pkg::apis::apiextensions::v1::CustomResourceDefinition;
use kube::ResourceExt;
use kube::api::{Api, DeleteParams, DynamicObject, Patch, Preconditions};
use kube::core::{ApiResource, ObjectMeta};
use serde_json::Value;

use super::{Ctx, Outcome};
use crate::archive::{self, Archive, MappingEntry, MappingsArchive, Prior, WriteOutcome};
use crate::client::patch_params;
use crate::configmaps;
use crate::cr;
use crate::error::{Context, Error, Result, is_conflict, is_not_found};
use crate::legacy;
use crate::module;
use crate::names::{self, config_maps, service_mappings as sm};
use crate::service_mappings;
use crate::step::Step;

/// Requests in flight at once for the objects of the legacy table (35 on a full installation):
/// each is read, and deleted, in one round trip with all the others.
const LEGACY_CONCURRENCY: usize = 64;

pub async fn run(ctx: &Ctx) -> Result<Outcome> {
    let current = match super::target(ctx).await? {
        super::Target::Cr(cr) => *cr,
        super::Target::Skip(skipped) => return Ok(skipped),
    };
    if ctx.marked(&current, Step::Migrate).is_none() {
        return Ok(Outcome::Skipped(
            "the CR is not marked migrated; the legacy installation stays".into(),
        ));
    }
    if let Some(key) = cr::marked(&current, Step::Clean) {
        return Ok(Outcome::Skipped(format!(
            "already cleaned ({key}=true on the CR)"
        )));
    }
    // The gate and the survey only read: they go out together, and nothing is written unless
    // the gate passes.
    let (checked, mut survey) = futures::try_join!(check_backup(ctx, &current), survey(ctx))?;
    check_operator_prerequisites(ctx, &survey.served)?;
    let archived = archive_legacy(
        ctx,
        &current.uid().unwrap_or_default(),
        &checked,
        &mut survey,
    )
    .await?;
    // What the deletes are guarded by; the mappings are in the verified archive now.
    let archived_mappings = archived.service_mappings.items.len();
    let archived = archived.objects;

    let adoption = adopt_service_mappings(ctx, &survey.mappings).await?;
    let deletion =
        delete_legacy_objects(ctx, &checked, survey.objects, survey.unserved, &archived).await?;
    let summary = closing_line(archived.len(), archived_mappings, &adoption, &deletion);
    if ctx.dry_run {
        ctx.plan(
            Step::Clean.name(),
            &format!(
                "would set {}=true on {}",
                Step::Clean.marker_key(),
                cr::display()
            ),
        );
        return Ok(Outcome::Done(format!("would have: {summary}")));
    }
    // The Event tells what was done, which the marker does not change: both go out together.
    ctx.event(
        &current,
        false,
        "Cleaned",
        "Clean",
        format!("Removed the legacy Connectivity Proxy: {summary}"),
    );
    cr::set_markers(&ctx.client, &[Step::Clean], false).await?;
    Ok(Outcome::Done(summary))
}

/// What clean did, for its closing line and its Event.
fn closing_line(
    objects: usize,
    mappings: usize,
    adoption: &Adoption,
    deletion: &Deletion,
) -> String {
    format!(
        "archive of {objects} objects and {mappings} ServiceMappings verified; {} of {} ServiceMappings adopted{}; \
         {} legacy objects deleted, {} absent, {} kept as the new operator's{}",
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
    )
}

/// The user ConfigMaps as the backup check saw them: each that existed (its copy has equal
/// data), `None` for one that did not exist. Only that state has a verified copy, so only that
/// state is archived and deleted.
type BackupCheck = BTreeMap<&'static str, Option<ConfigMap>>;

/// The safety gate: nothing is deleted unless the backup is marked done and each user
/// ConfigMap that still exists has a copy with equal data in the backup namespace.
async fn check_backup(ctx: &Ctx, current: &DynamicObject) -> Result<BackupCheck> {
    if ctx.marked(current, Step::Backup).is_none() {
        return Err(Error::CleanGate {
            reason: format!(
                "{} is not marked backed up ({}=true); run the backup step first",
                cr::display(),
                Step::Backup.marker_key()
            ),
        });
    }
    // In `run --dry-run` the backup was not really made; it would copy exactly the sources.
    let backup_assumed = cr::marked(current, Step::Backup).is_none();
    // Each source and its copy are independent reads: all four go out together, and each
    // copy is judged against its source once both answered.
    let checks = config_maps::USER_CONFIG.map(|name| async move {
        let (source, copy) = futures::try_join!(
            configmaps::get(&ctx.client, names::KYMA_SYSTEM, name),
            async {
                if backup_assumed {
                    Ok(None)
                } else {
                    configmaps::get(&ctx.client, names::BACKUP_NAMESPACE, name).await
                }
            }
        )?;
        if let Some(source) = &source
            && !backup_assumed
        {
            check_copy(name, source, copy)?;
        }
        Ok::<_, Error>((name, source))
    });
    Ok(futures::future::try_join_all(checks)
        .await?
        .into_iter()
        .collect())
}

/// Never tear down what cannot be replaced: fails while a CRD the module's operator needs to
/// start is not served (it would exit, and nothing would replace the legacy proxy), unless
/// `--skip-operator-prerequisites`.
fn check_operator_prerequisites(ctx: &Ctx, served: &legacy::Served) -> Result<()> {
    if ctx.skip_operator_prerequisites {
        tracing::info!(
            "--skip-operator-prerequisites: the CRDs the module's operator needs are not checked"
        );
        return Ok(());
    }
    let missing = module::prerequisites_missing(served, true);
    if missing.is_empty() {
        return Ok(());
    }
    Err(Error::CleanGate {
        reason: module::prerequisites_refusal(&missing),
    })
}

/// Fails unless the backup namespace holds a copy of `source` with equal data.
fn check_copy(name: &str, source: &ConfigMap, copy: Option<ConfigMap>) -> Result<()> {
    let gate = |reason: String| Err(Error::CleanGate { reason });
    match copy {
        None => gate(format!(
            "ConfigMap {}/{name} exists but namespace {} holds no copy of it; run the backup step again \
             (remove {} from the CR first)",
            names::KYMA_SYSTEM,
            names::BACKUP_NAMESPACE,
            Step::Backup.marker_key()
        )),
        Some(copy) if !configmaps::same_data(&copy, source) => gate(format!(
            "the copy {}/{name} differs from ConfigMap {}/{name}: the configuration changed after the backup; \
             remove {} from the CR and run the backup step again",
            names::BACKUP_NAMESPACE,
            names::KYMA_SYSTEM,
            Step::Backup.marker_key()
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

/// What clean is about to change, read before anything is written: the legacy objects, the
/// ServiceMappings to adopt, and the archive an earlier run wrote.
struct Survey {
    /// Each served legacy object, as read (`None`: absent, or a user ConfigMap, which the backup
    /// check reads).
    objects: Vec<(legacy::LegacyObject, Option<DynamicObject>)>,
    unserved: Vec<String>,
    /// What the cluster serves.
    served: legacy::Served,
    mappings: Mappings,
    stored: Option<archive::Stored>,
}

/// The ServiceMappings and their CRD, as listed before adoption.
#[derive(Default)]
struct Mappings {
    crd: Option<CustomResourceDefinition>,
    /// Where the mappings are served (`None`: no CRD, or it serves no version).
    resource: Option<ApiResource>,
    examined: usize,
    /// Every mapping as listed, for the archive (which takes them: one copy is held, at
    /// 10 000 mappings the largest thing clean holds).
    listed: Vec<MappingEntry>,
    /// Namespace and name of each listed without the adoption: the ones to adopt.
    to_adopt: Vec<(Option<String>, String)>,
}

async fn survey(ctx: &Ctx) -> Result<Survey> {
    let objects = async {
        let served = legacy::discover(&ctx.client).await?;
        let (objects, unserved) = legacy::objects_of(&ctx.client, &served, names::LEGACY_OBJECTS);
        let read: Vec<(legacy::LegacyObject, Option<DynamicObject>)> = stream::iter(objects)
            .map(|o| async move {
                if o.is_user_config() {
                    return Ok((o, None));
                }
                let read = o
                    .api
                    .get_opt(o.name)
                    .await
                    .context(|| format!("reading {}", o.display))?;
                Ok::<_, Error>((o, read))
            })
            .buffered(LEGACY_CONCURRENCY)
            .try_collect()
            .await?;
        Ok::<_, Error>((read, unserved, served))
    };
    let ((objects, unserved, served), mappings, stored) = futures::try_join!(
        objects,
        list_service_mappings(ctx),
        archive::read_stored(&ctx.client)
    )?;
    Ok(Survey {
        objects,
        unserved,
        served,
        mappings,
        stored,
    })
}

/// Lists every ServiceMapping in pages (metadata only) and keeps the ones to adopt.
async fn list_service_mappings(ctx: &Ctx) -> Result<Mappings> {
    let Some(crd) = service_mappings::crd(&ctx.client).await? else {
        tracing::info!(
            crd = sm::CRD_NAME,
            "no ServiceMapping CRD; nothing to adopt"
        );
        return Ok(Mappings::default());
    };
    let Some(ar) = service_mappings::resource(&crd) else {
        tracing::info!(
            crd = sm::CRD_NAME,
            "the ServiceMapping CRD serves no version; no mapping to adopt"
        );
        return Ok(Mappings {
            crd: Some(crd),
            ..Default::default()
        });
    };
    let namespaced = crd.spec.scope == "Namespaced";
    let mut mappings = Mappings {
        crd: Some(crd),
        resource: Some(ar.clone()),
        ..Default::default()
    };
    let listed = archive::list_mappings(&ctx.client, &ar, namespaced).await?;
    mappings.examined = listed.len();
    mappings.to_adopt = listed
        .iter()
        .filter(|m| !m.prior.is_adoption())
        .map(|m| (m.namespace.clone(), m.name.clone()))
        .collect();
    mappings.listed = listed;
    Ok(mappings)
}

/// Conflicting writes of the archive (a concurrent run) after which clean gives up for now.
const ARCHIVE_ATTEMPTS: u32 = 10;

/// Writes the archive of what clean is about to change (merged into an earlier run's archive
/// for the same CR), reads it back and checks it. Returns what the archive holds.
async fn archive_legacy(
    ctx: &Ctx,
    cr_uid: &str,
    checked: &BackupCheck,
    survey: &mut Survey,
) -> Result<Archive> {
    let started = tokio::time::Instant::now();
    let listed = std::mem::take(&mut survey.mappings.listed);
    let fresh = fresh_archive(cr_uid, checked, survey, listed)?;
    let mut stored = survey.stored.take();
    for _ in 0..ARCHIVE_ATTEMPTS {
        let merged = merged_with_stored(stored.as_ref(), &fresh);
        if store_archive(ctx, &merged, stored.as_ref(), started).await? == Stored::Conflict {
            stored = archive::read_stored(&ctx.client).await?;
            continue;
        }
        // Without an archive of an earlier run, what was read now is the archive: no copy.
        let merged = match merged {
            Cow::Owned(merged) => Some(merged),
            Cow::Borrowed(_) => None,
        };
        return Ok(merged.unwrap_or(fresh));
    }
    Err(Error::TooManyConflicts {
        object: archive::location(),
        attempts: ARCHIVE_ATTEMPTS,
    })
}

#[derive(PartialEq)]
enum Stored {
    /// Written and read back equal, held already, or (dry run) planned.
    Verified,
    /// The stored archive changed since it was read.
    Conflict,
}

/// Writes `archive` over `stored` (guarded by its resourceVersions) and reads it back; nothing
/// to write when `stored` holds it already.
async fn store_archive(
    ctx: &Ctx,
    archive: &Archive,
    stored: Option<&archive::Stored>,
    started: tokio::time::Instant,
) -> Result<Stored> {
    let (objects, mappings) = (archive.objects.len(), archive.service_mappings.items.len());
    // Read and decoded in full, equal to what it must hold: verified, nothing to write.
    if stored.is_some_and(|s| s.archive == *archive) {
        tracing::info!(archive = %archive::location(), objects, service_mappings = mappings, "the archive holds everything already");
        return Ok(Stored::Verified);
    }
    let written = archive::write(
        &ctx.client,
        archive,
        stored,
        ctx.dry_run,
        ctx.archive_part_bytes,
    )
    .await;
    match written {
        // `run --dry-run`: the backup namespace is not there yet to dry-run the write in.
        Err(Error::Kube { source, .. }) if ctx.dry_run && is_not_found(&source) => {}
        Err(e) => return Err(e),
        Ok(WriteOutcome::Conflict) => return Ok(Stored::Conflict),
        Ok(WriteOutcome::Written { .. }) if ctx.dry_run => {}
        Ok(WriteOutcome::Written { bytes, parts }) => {
            verify_archive(ctx, archive).await?;
            tracing::info!(archive = %archive::location(), objects, service_mappings = mappings, bytes, parts, archive_ms = started.elapsed().as_millis() as u64, "archived and verified");
            return Ok(Stored::Verified);
        }
    }
    ctx.plan(
        Step::Clean.name(),
        &format!(
            "would archive {objects} legacy objects and {mappings} ServiceMappings in {}",
            archive::location()
        ),
    );
    Ok(Stored::Verified)
}

/// The archive of what clean is about to change, as read now: the legacy objects (without the
/// operator's), the user ConfigMaps as the backup check read them, and the ServiceMappings and
/// their CRD as listed before adoption.
fn fresh_archive(
    cr_uid: &str,
    checked: &BackupCheck,
    survey: &Survey,
    listed: Vec<MappingEntry>,
) -> Result<Archive> {
    let mut objects = Vec::new();
    for read in survey.objects.iter().filter_map(|(_, read)| read.as_ref()) {
        if !legacy::is_operators(&read.metadata) {
            objects.push(archive::archival(read)?);
        }
    }
    for cm in checked.values().flatten() {
        if !legacy::is_operators(&cm.metadata) {
            let object: DynamicObject = serde_json::to_value(cm)
                .and_then(serde_json::from_value)
                .map_err(|e| Error::Archive {
                reason: format!("encoding ConfigMap {}: {e}", cm.name_any()),
            })?;
            objects.push(archive::archival(&object)?);
        }
    }
    let crd = match &survey.mappings.crd {
        Some(c) => Some((Prior::of(&c.metadata), archive::crd_archival(c)?)),
        None => None,
    };
    Ok(Archive::new(
        cr_uid.to_string(),
        objects,
        MappingsArchive {
            crd: crd.as_ref().map(|(prior, _)| prior.clone()),
            crd_object: crd.map(|(_, object)| object),
            items: listed,
        },
    ))
}

/// What the archive must hold: the stored one (an earlier, interrupted clean's) with what was
/// read now added, or only what was read now when it belongs to another CR.
fn merged_with_stored<'a>(
    stored: Option<&archive::Stored>,
    fresh: &'a Archive,
) -> Cow<'a, Archive> {
    match stored {
        Some(s) if s.archive.cr_uid == fresh.cr_uid => {
            Cow::Owned(s.archive.clone().merged_with(fresh.clone()))
        }
        Some(s) => {
            tracing::info!(archive = %archive::location(), previous_cr_uid = %s.archive.cr_uid, cr_uid = %fresh.cr_uid, "the archive belongs to another CR (the module was enabled again); replacing it");
            Cow::Borrowed(fresh)
        }
        None => Cow::Borrowed(fresh),
    }
}

/// Reads the archive back: nothing is adopted or deleted unless it holds what was written.
async fn verify_archive(ctx: &Ctx, written: &Archive) -> Result<()> {
    let back = archive::read_stored(&ctx.client).await?;
    if back.as_ref().map(|b| &b.archive) == Some(written) {
        return Ok(());
    }
    Err(Error::Archive {
        reason: format!(
            "{} read back does not hold what was written; nothing was adopted or deleted",
            archive::location()
        ),
    })
}

/// Adds the operator's annotations and label to the ServiceMappings listed without them, and
/// to their CRD. Mappings that were adopted already cost no request.
async fn adopt_service_mappings(ctx: &Ctx, mappings: &Mappings) -> Result<Adoption> {
    let crds: Api<CustomResourceDefinition> = Api::all(ctx.client.clone());
    let Some(crd) = &mappings.crd else {
        return Ok(Adoption::default());
    };
    let adopted = match &mappings.resource {
        None => 0,
        Some(ar) => {
            let patch = service_mappings::adoption_patch();
            let writes = mappings
                .to_adopt
                .iter()
                .map(|(namespace, name)| (namespace.clone(), name.clone(), patch.clone()));
            service_mappings::patch_each(
                &ctx.client,
                ar,
                futures::stream::iter(writes),
                ctx.dry_run,
                "adopting",
            )
            .await?
        }
    };
    adopt_crd(
        ctx,
        &crds,
        crd,
        Adoption {
            examined: mappings.examined,
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
    if !service_mappings::is_adopted(&crd.metadata) {
        crds.patch(
            sm::CRD_NAME,
            &patch_params(ctx.dry_run),
            &Patch::Merge(&service_mappings::adoption_patch()),
        )
        .await
        .context(|| format!("adopting CustomResourceDefinition {}", sm::CRD_NAME))?;
        adoption.crd_adopted = true;
    }
    if ctx.dry_run {
        ctx.plan(
            Step::Clean.name(),
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

/// Deletes every object of the legacy table that exists, is served, and is not the new
/// operator's: each only in the state that the archive holds.
async fn delete_legacy_objects(
    ctx: &Ctx,
    checked: &BackupCheck,
    objects: Vec<(legacy::LegacyObject, Option<DynamicObject>)>,
    unserved: Vec<String>,
    archived: &[Value],
) -> Result<Deletion> {
    for kind in &unserved {
        tracing::info!(kind = %kind, "kind not served by this cluster; skipped");
    }
    let mut deletion = Deletion {
        unserved,
        ..Default::default()
    };
    let entries: BTreeMap<archive::ObjectKey, &Value> =
        archived.iter().map(|o| (archive::key_of(o), o)).collect();
    // Every delete goes out at once: each is independent of the others, guarded by the
    // preconditions of its own object. Starting the workloads' deletes a few milliseconds
    // before the rest (table order) bought nothing: a deleted workload's Pods terminate
    // seconds later in any case, long after every other delete has been answered.
    let results: Vec<Deleted> = stream::iter(objects)
        .map(|(o, read)| {
            let against = if o.is_user_config() {
                Against::BackupCheck(
                    checked
                        .get(o.name)
                        .cloned()
                        .flatten()
                        .map(|c| Box::new(c.metadata)),
                )
            } else {
                let key = archive::ObjectKey {
                    group: o.row.group.to_string(),
                    kind: o.row.kind.to_string(),
                    namespace: o.row.namespace.unwrap_or("").to_string(),
                    name: o.name.to_string(),
                };
                Against::Archived {
                    read: read.map(Box::new),
                    entry: entries.get(&key).copied(),
                }
            };
            delete_one(o, against, ctx.dry_run)
        })
        .buffered(LEGACY_CONCURRENCY)
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
        ctx.plan(
            Step::Clean.name(),
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
enum Against<'a> {
    /// As the survey read it, and its entry in the verified archive.
    Archived {
        read: Option<Box<DynamicObject>>,
        entry: Option<&'a Value>,
    },
    /// A user ConfigMap as the backup check saw it (`None`: it did not exist then).
    BackupCheck(Option<Box<ObjectMeta>>),
}

/// Deletes one legacy object unless it is the new operator's.
async fn delete_one(
    object: legacy::LegacyObject,
    against: Against<'_>,
    dry_run: bool,
) -> Result<Deleted> {
    let (mut current, entry) = match against {
        Against::BackupCheck(verified) => return delete_backed_up(object, verified, dry_run).await,
        Against::Archived { read, entry } => (read, entry),
    };
    let legacy::LegacyObject {
        api,
        name,
        display: what,
        ..
    } = object;
    // The uid and resourceVersion preconditions make sure that what is deleted is the object
    // as read, unchanged: if it was replaced, or labelled as the operator's, in between, the
    // delete conflicts and the object is checked again.
    const ATTEMPTS: u32 = 5;
    for _ in 0..ATTEMPTS {
        let Some(read) = current.take() else {
            return Ok(Deleted::Absent);
        };
        if legacy::is_operators(&read.metadata) {
            tracing::info!(object = %what, "carries the new operator's label; kept");
            return Ok(Deleted::Protected(what));
        }
        // Only a state the archive holds may go: a status update changes nothing archived.
        if entry != Some(&archive::archival(&read)?) {
            return Err(Error::ChangedSinceArchive { object: what });
        }
        match api.delete(name, &unchanged(&read.metadata, dry_run)).await {
            Ok(_) => return Ok(deleted(what, dry_run)),
            Err(e) if is_not_found(&e) => return Ok(Deleted::Absent),
            Err(e) if is_conflict(&e) => {
                current = api
                    .get_opt(name)
                    .await
                    .context(|| format!("reading {what}"))?
                    .map(Box::new);
            }
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
