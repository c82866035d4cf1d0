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
use kube::api::{Api, DynamicObject, Patch};
use kube::core::ApiResource;
use serde_json::Value;

mod guarded;

pub use guarded::{Against, How, Written, unchanged, write_one};

use super::{Ctx, Outcome};
use crate::access;
use crate::archive::{self, Archive, MappingEntry, MappingsArchive, Prior, WriteOutcome};
use crate::client::patch_params;
use crate::configmaps;
use crate::conflicts::Conflicts;
use crate::cr;
use crate::error::{Context, Error, Result, is_not_found};
use crate::hand_over::{self, Derived, Disposition};
use crate::legacy;
use crate::module;
use crate::names::rbac::Permission;
use crate::names::{self, config_maps, service_mappings as sm};
use crate::service_mappings;
use crate::step::{Marker, Step};

pub async fn run(ctx: &Ctx) -> Result<Outcome> {
    let current = match super::target(ctx).await? {
        super::Target::Cr(cr) => *cr,
        super::Target::Skip(skipped) => return Ok(skipped),
    };
    if let Some(skipped) = nothing_to_do(ctx, &current) {
        return Ok(skipped);
    }
    // The gate and the survey only read: they go out together, and nothing is written unless
    // the gate passes.
    let (checked, mut survey) = futures::try_join!(check_backup(ctx, &current), survey(ctx))?;
    check_operator_prerequisites(ctx, &survey.served, &current).await?;
    let dispositions = decide_hand_over(ctx, &current, &survey.objects, &checked).await?;
    let cr_uid = current.uid().unwrap_or_default();
    let archived = archive_legacy(ctx, &cr_uid, &checked, &mut survey).await?;
    // What the deletes are guarded by; the mappings are in the verified archive now.
    let archived_mappings = archived.service_mappings.items.len();
    let archived = archived.objects;
    let adoption = adopt_service_mappings(ctx, &survey.mappings).await?;
    let settle = Settle {
        objects: survey.objects,
        unserved: survey.unserved,
        dispositions,
    };
    let deletion = delete_legacy_objects(ctx, &checked, settle, &archived).await?;
    let summary = closing_line(archived.len(), archived_mappings, &adoption, &deletion);
    mark_cleaned(ctx, &current, summary).await
}

/// Why clean skips: the CR is not marked migrated, or marked cleaned already.
fn nothing_to_do(ctx: &Ctx, current: &DynamicObject) -> Option<Outcome> {
    if ctx.marked(current, Step::Migrate).is_none() {
        return Some(Outcome::Skipped(
            "the CR is not marked migrated; the legacy installation stays".into(),
        ));
    }
    let key = cr::marked(current, Step::Clean)?;
    Some(Outcome::Skipped(format!(
        "already cleaned ({key}=true on the CR)"
    )))
}

/// With `--hand-over`, what becomes of each object, decided before anything is written: the
/// hand-over's permissions are asked for exactly the objects it labels.
async fn decide_hand_over(
    ctx: &Ctx,
    current: &DynamicObject,
    objects: &[(legacy::LegacyObject, Option<DynamicObject>)],
    checked: &BackupCheck,
) -> Result<Option<Vec<Disposition>>> {
    if !ctx.options.hand_over {
        return Ok(None);
    }
    let derived = Derived::of(current.data.get("spec"));
    let decided: Vec<Disposition> = objects
        .iter()
        .map(|(o, read)| {
            // The user's ConfigMaps were read by the backup's gate, not by the survey.
            let json = if o.is_user_config() {
                checked
                    .get(o.name)
                    .and_then(|cm| serde_json::to_value(cm).ok())
            } else {
                read.as_ref().and_then(|r| serde_json::to_value(r).ok())
            };
            hand_over::disposition(o.row, o.name, &json.unwrap_or_default(), &derived)
        })
        .collect();
    hand_over_permitted(ctx, objects, &decided).await?;
    Ok(Some(decided))
}

/// The cleaned marker (and with `--hand-over` the handed-over one) with an Event that says
/// what was done; in a dry run, the plan.
async fn mark_cleaned(ctx: &Ctx, current: &DynamicObject, summary: String) -> Result<Outcome> {
    let mut markers = vec![Marker::Cleaned];
    if ctx.options.hand_over {
        markers.push(Marker::HandedOver);
    }
    if ctx.options.dry_run {
        let set: Vec<String> = markers
            .iter()
            .map(|m| format!("{}=true", m.key()))
            .collect();
        let plan = format!("would set {} on {}", set.join(", "), cr::display());
        ctx.plan(Step::Clean.name(), &plan);
        return Ok(Outcome::Done(format!("would have: {summary}")));
    }
    let note = if ctx.options.hand_over {
        format!("Handed the legacy Connectivity Proxy over to the module: {summary}")
    } else {
        format!("Removed the legacy Connectivity Proxy: {summary}")
    };
    // The Event tells what was done, which the marker does not change: both go out together.
    ctx.event(current, false, "Cleaned", "Clean", note);
    cr::set_markers(&ctx.client, &markers, false).await?;
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
         {} legacy objects deleted, {} absent, {} kept as the new operator's{}{}",
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
        hand_over_part(deletion),
        if deletion.unserved.is_empty() {
            String::new()
        } else {
            format!(", kinds not served: {}", deletion.unserved.join(", "))
        },
    )
}

/// What a hand-over did beyond the deletes, for the closing line (nothing without it).
fn hand_over_part(deletion: &Deletion) -> String {
    if deletion.handed_over.is_empty() && deletion.orphaned.is_empty() && deletion.left.is_empty() {
        return String::new();
    }
    format!(
        "; {} handed over to the module's operator, {} deleted with their Pods orphaned, {} left for finish",
        deletion.handed_over.len(),
        deletion.orphaned.len(),
        deletion.left.len()
    )
}

/// The legacy objects as the survey read them, and (with `--hand-over`) what becomes of each.
struct Settle {
    objects: Vec<(legacy::LegacyObject, Option<DynamicObject>)>,
    unserved: Vec<String>,
    dispositions: Option<Vec<Disposition>>,
}

/// Fails before anything is written unless this identity may label each object the hand-over
/// labels (deploy/rbac-hand-over.yaml grants it for the legacy installation's).
async fn hand_over_permitted(
    ctx: &Ctx,
    objects: &[(legacy::LegacyObject, Option<DynamicObject>)],
    dispositions: &[Disposition],
) -> Result<()> {
    let needs: Vec<Permission> = objects
        .iter()
        .zip(dispositions)
        .filter(|((o, read), d)| {
            **d == Disposition::HandOver && (read.is_some() || o.is_user_config())
        })
        .map(|((o, _), _)| Permission {
            verb: "patch",
            group: o.row.group,
            resource: o.row.plural,
            namespace: o.row.namespace,
            name: Some(o.name),
        })
        .collect();
    let missing = access::missing(&ctx.client, &needs).await?;
    if missing.is_empty() {
        return Ok(());
    }
    Err(Error::HandOverNotPermitted {
        command: "clean --hand-over",
        missing: missing.join(", "),
        manifest: names::rbac::HAND_OVER_MANIFEST,
    })
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
                Marker::BackedUp.key()
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
/// start is not served (it would exit, and nothing would replace the legacy proxy), or while
/// the CR keeps `auto-provision` for the tunnel's host and the shoot's ConfigMap the operator
/// reads for it is missing (every reconcile would fail), unless `--skip-operator-prerequisites`.
async fn check_operator_prerequisites(
    ctx: &Ctx,
    served: &legacy::Served,
    current: &DynamicObject,
) -> Result<()> {
    if ctx.options.skip_operator_prerequisites {
        tracing::info!(
            "--skip-operator-prerequisites: what the module's operator needs is not checked"
        );
        return Ok(());
    }
    let missing = module::prerequisites_missing(served, true);
    if !missing.is_empty() {
        return Err(Error::CleanGate {
            reason: module::prerequisites_refusal(&missing),
        });
    }
    if cr::marked(current, Step::Migrate).is_none() {
        // A dry run of `run`: migrate was only assumed, so the CR's spec is not what the
        // operator will read; the real run judges the migrated one.
        ctx.plan(
            Step::Clean.name(),
            &format!(
                "would check {} once the CR is migrated, if it keeps auto-provision",
                module::shoot_info_display()
            ),
        );
        return Ok(());
    }
    match module::shoot_info_missing(&ctx.client, current.data.get("spec")).await? {
        None => Ok(()),
        Some(missing) => Err(Error::CleanGate {
            reason: format!(
                "{}; nothing was written. Or run with --skip-operator-prerequisites \
                 (CP_MIGRATOR_SKIP_OPERATOR_PREREQUISITES=true)",
                module::shoot_info_message(&missing)
            ),
        }),
    }
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
        // The user's ConfigMaps are read by the backup's gate.
        let read = legacy::read_each(objects, |o| !o.is_user_config()).await?;
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
    let mut conflicts = Conflicts::until(ctx.options.deadline);
    loop {
        let merged = merged_with_stored(stored.as_ref(), &fresh);
        if store_archive(ctx, &merged, stored.as_ref(), started).await? == Stored::Conflict {
            conflicts.pause(archive::location).await?;
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
        ctx.options.dry_run,
        ctx.options.archive_part_bytes,
        ctx.options.deadline,
    )
    .await;
    match written {
        // `run --dry-run`: the backup namespace is not there yet to dry-run the write in.
        Err(Error::Kube { source, .. }) if ctx.options.dry_run && is_not_found(&source) => {}
        Err(e) => return Err(e),
        Ok(WriteOutcome::Conflict) => return Ok(Stored::Conflict),
        Ok(WriteOutcome::Written { .. }) if ctx.options.dry_run => {}
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
        // One being deleted (an earlier run's orphaning delete) is in that run's archive as it
        // was; as it is now, it carries the deletion's finalizer.
        if !legacy::has_operator_label(&read.metadata) && read.metadata.deletion_timestamp.is_none()
        {
            objects.push(archive::archival(read)?);
        }
    }
    for cm in checked.values().flatten() {
        if !legacy::has_operator_label(&cm.metadata) {
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
                ctx.options.dry_run,
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
            &patch_params(ctx.options.dry_run),
            &Patch::Merge(&service_mappings::adoption_patch()),
        )
        .await
        .context(|| format!("adopting CustomResourceDefinition {}", sm::CRD_NAME))?;
        adoption.crd_adopted = true;
    }
    if ctx.options.dry_run {
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
    /// With `--hand-over`: labelled for the operator to adopt.
    pub handed_over: Vec<String>,
    /// With `--hand-over`: workloads deleted with their Pods orphaned, and why.
    pub orphaned: Vec<String>,
    /// With `--hand-over`: kept for `finish`.
    pub left: Vec<String>,
}

/// Deletes every object of the legacy table that exists, is served, and is not the new
/// operator's (with `--hand-over`: hands over, orphans, leaves or deletes each as
/// [`hand_over::disposition`] says): each only in the state that the archive holds.
async fn delete_legacy_objects(
    ctx: &Ctx,
    checked: &BackupCheck,
    survey: Settle,
    archived: &[Value],
) -> Result<Deletion> {
    let hand_over = survey.dispositions.is_some();
    for kind in &survey.unserved {
        tracing::info!(kind = %kind, "kind not served by this cluster; skipped");
    }
    let (writes, mut deletion) = planned_writes(checked, survey, archived);
    // Every write goes out at once: each is independent of the others, guarded by the
    // preconditions of its own object. Starting the workloads' deletes a few milliseconds
    // before the rest (table order) bought nothing: a deleted workload's Pods terminate
    // seconds later in any case, long after every other delete has been answered.
    let results: Vec<(Written, Disposition)> = stream::iter(writes)
        .map(|w| async move {
            let written = guarded::write_one(
                w.object,
                w.against,
                w.how,
                ctx.options.dry_run,
                ctx.options.deadline,
            )
            .await?;
            Ok::<_, Error>((written, w.disposition))
        })
        .buffered(legacy::LEGACY_CONCURRENCY)
        .try_collect()
        .await?;
    for (written, disposition) in results {
        deletion.count(written, disposition, hand_over);
    }
    if ctx.options.dry_run {
        show_plan(ctx, &deletion, hand_over);
    }
    Ok(deletion)
}

/// One guarded write of a legacy object, and what it is for.
struct PlannedWrite<'a> {
    object: legacy::LegacyObject,
    against: Against<'a>,
    disposition: Disposition,
    how: How,
}

/// The write of each legacy object, with the state it is guarded by: a user ConfigMap as the
/// backup check read it, any other object as the archive holds it. What is left for finish is
/// counted at once (left, or absent).
fn planned_writes<'a>(
    checked: &BackupCheck,
    survey: Settle,
    archived: &'a [Value],
) -> (Vec<PlannedWrite<'a>>, Deletion) {
    let Settle {
        objects,
        unserved,
        dispositions,
    } = survey;
    let dispositions = dispositions
        .map(|d| d.into_iter().map(Some).collect())
        .unwrap_or_else(|| vec![None; objects.len()]);
    let mut deletion = Deletion {
        unserved,
        ..Default::default()
    };
    let entries: BTreeMap<archive::ObjectKey, &Value> =
        archived.iter().map(|o| (archive::key_of(o), o)).collect();
    let mut writes = Vec::new();
    for ((o, read), disposition) in objects.into_iter().zip(dispositions) {
        let disposition = disposition.unwrap_or(Disposition::Delete(None));
        let how = match &disposition {
            Disposition::LeaveForFinish if read.is_some() => {
                deletion.left.push(o.display);
                continue;
            }
            Disposition::LeaveForFinish => {
                deletion.absent += 1;
                continue;
            }
            Disposition::HandOver => How::HandOver,
            Disposition::Orphan(_) => How::Orphan,
            Disposition::Delete(_) => How::Delete,
        };
        let against = guard(checked, &entries, &o, read);
        writes.push(PlannedWrite {
            object: o,
            against,
            disposition,
            how,
        });
    }
    (writes, deletion)
}

/// What a write of `o` is guarded by: a user ConfigMap by the state the backup check read,
/// any other object by the archive's entry.
fn guard<'a>(
    checked: &BackupCheck,
    entries: &BTreeMap<archive::ObjectKey, &'a Value>,
    o: &legacy::LegacyObject,
    read: Option<DynamicObject>,
) -> Against<'a> {
    if o.is_user_config() {
        let read = checked.get(o.name).cloned().flatten();
        return Against::BackupCheck(read.map(|c| Box::new(c.metadata)));
    }
    let key = archive::ObjectKey::of_row(o.row, o.name);
    Against::Archived {
        read: read.map(Box::new),
        entry: entries.get(&key).copied(),
    }
}

impl Deletion {
    /// Counts one written object under what became of it.
    fn count(&mut self, written: Written, disposition: Disposition, hand_over: bool) {
        match (written, disposition) {
            (Written::Done(what), Disposition::HandOver) => self.handed_over.push(what),
            (Written::Done(what), Disposition::Orphan(why)) => {
                self.orphaned.push(format!("{what} ({why})"))
            }
            (Written::Done(what), Disposition::Delete(Some(why))) if hand_over => {
                self.deleted.push(format!("{what} ({why})"))
            }
            (Written::Done(what), _) => self.deleted.push(what),
            (Written::Absent, _) => self.absent += 1,
            (Written::Protected(what), _) => self.protected.push(what),
        }
    }
}

/// The plan of a dry run: what would become of each legacy object.
fn show_plan(ctx: &Ctx, deletion: &Deletion, hand_over: bool) {
    let mut parts = vec![("delete", &deletion.deleted)];
    if hand_over {
        parts = vec![
            ("hand over to the module's operator", &deletion.handed_over),
            ("delete with their Pods orphaned", &deletion.orphaned),
            ("leave for finish", &deletion.left),
            ("delete", &deletion.deleted),
        ];
    }
    for (verb, objects) in parts {
        ctx.plan(
            Step::Clean.name(),
            &format!(
                "would {verb} {} legacy objects: {}",
                objects.len(),
                objects.join(", ")
            ),
        );
    }
}
