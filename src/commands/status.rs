//! status: a read-only picture of the migration on this cluster, summed up in one phase.

pub mod operator_pods;
pub mod phase;
pub mod picture;

use std::collections::BTreeMap;

use k8s_openapi::api::apps::v1::Deployment;
use k8s_openapi::api::core::v1::{ConfigMap, Namespace};
use kube::api::{Api, DynamicObject};
use kube::{Client, ResourceExt};
use serde::Serialize;

use crate::archive;
use crate::configmaps;
use crate::cr::{self, Lookup};
use crate::error::{Context, Result};
use crate::legacy::{self, LegacyInstall, Served};
use crate::module::{self, ModuleState, RefusedCount};
use crate::names::{self, config_maps};
use crate::service_mappings::{Listed, is_adopted};
use crate::step::{Marker, Step};
use crate::translate;
use operator_pods::Failing;
use phase::Phase;
pub use picture::{
    ArchiveStatus, BackupCopy, HandOver, MappingsDrift, Operator, ServiceMappings, Status,
};

/// What `status` prints: the phase and its reason first, then everything it read.
#[derive(Debug, Serialize)]
pub struct Report {
    pub phase: Phase,
    pub phase_reason: String,
    #[serde(flatten)]
    pub status: Status,
}

impl Report {
    pub fn new(status: Status) -> Report {
        let (phase, phase_reason) = phase::decide(&status);
        Report {
            phase,
            phase_reason,
            status,
        }
    }
}

/// What `status` prints when it could not read the cluster: the phase `unreachable`, why, and
/// the whole error.
#[derive(Debug, Serialize)]
pub struct Unreachable {
    pub phase: Phase,
    pub phase_reason: String,
    pub error: String,
}

impl Unreachable {
    /// `error` is the command's closing reason; `refused` when the API server answered with a
    /// refusal (401, 403) rather than not at all.
    pub fn new(error: String, refused: bool) -> Unreachable {
        let first_line = error.lines().next().unwrap_or_default();
        Unreachable {
            phase: Phase::Unreachable,
            phase_reason: if refused {
                format!("the API server refused: {first_line}")
            } else {
                format!("the API server could not be asked: {first_line}")
            },
            error,
        }
    }

    pub fn render_text(&self) -> String {
        render_rows(&[
            ("phase".into(), row_of_phase(self.phase, &self.phase_reason)),
            ("error".into(), self.error.clone()),
        ])
    }
}

/// Reads everything status shows; any read the API server does not answer or refuses is an
/// error (the caller shows the cluster as `unreachable`), except clean's archive, whose
/// problem is a row of its own.
pub async fn collect(client: &Client) -> Result<Report> {
    // The reads that do not depend on each other go out together: a distant API server costs a
    // handful of round trips, not one per read.
    let (
        (legacy, unowned, served),
        lookup,
        (backup_namespace_exists, copies),
        (deployment, failing),
        mut service_mappings,
        archive,
    ) = futures::try_join!(
        at_known_names(client),
        cr::lookup(client),
        backup_copies(client),
        operator_and_failing(client),
        service_mappings(client),
        // Its problem is a row of its own, never the end of status.
        async { Ok(archive::read_stored(client).await) },
    )?;
    let cr = match &lookup {
        Lookup::Found(cr) => Some(cr.as_ref()),
        _ => None,
    };
    if let Some(m) = &mut service_mappings {
        let shared = shared_tenant(cr, legacy.user_config.get(config_maps::CONFIG));
        m.refused_by_module_schema = m.refused.in_mode(shared);
    }
    let hand_over = cr.map(hand_over_of).unwrap_or_default();
    let (operator_stops_at, rolls) = futures::try_join!(
        operator_stops_at(client, cr, &unowned),
        rolls_after(client, hand_over)
    )?;
    let (waiting_for_finish, remaining) =
        waiting_for_finish(hand_over, legacy.remaining, &legacy.left_for_finish);
    Ok(Report::new(Status {
        legacy_installation: legacy.installation,
        hand_over,
        waiting_for_finish,
        crd_installed: !matches!(lookup, Lookup::CrdMissing),
        cr_exists: cr.is_some(),
        markers: markers_of(cr),
        backup_namespace_exists,
        backup: backup_copies_of(&legacy.user_config, copies),
        legacy_objects_remaining: remaining,
        legacy_kinds_not_served: legacy.not_served,
        operator: deployment.as_ref().map(operator),
        archive: archive_status(archive, cr, service_mappings.as_ref()),
        service_mappings,
        failing,
        module: cr.map(ModuleState::of),
        operator_prerequisites_missing: module::prerequisites_missing(&served, false),
        blocking_objects: module::blocking(&unowned),
        operator_stops_at,
        rolls,
    }))
}

/// Where the module's operator stops while the module reports `Error`: the shoot's ConfigMap
/// it reads for the CR and lacks, else the first object at its names that it does not own
/// (its create there fails with 409 Conflict). `None` while it is not in `Error`, or when the
/// cluster shows no cause.
async fn operator_stops_at(
    client: &Client,
    cr: Option<&DynamicObject>,
    unowned: &[module::Unowned],
) -> Result<Option<String>> {
    let Some(cr) = cr.filter(|cr| ModuleState::of(cr).is_error()) else {
        return Ok(None);
    };
    if let Some(missing) = module::shoot_info_missing(client, cr.data.get("spec")).await? {
        return Ok(Some(module::shoot_info_message(&missing)));
    }
    // One that clean leaves is named as a blocker already, in the words of that finding.
    Ok(unowned.first().filter(|u| !u.left_by_clean).map(|u| {
        format!(
            "{} exists at one of its names without its label and annotations: its create there \
             fails with 409 Conflict",
            u.display
        )
    }))
}

/// After a hand-over, how far the module's workloads have replaced the legacy Pods they took
/// over (nothing is read without one).
async fn rolls_after(client: &Client, hand_over: HandOver) -> Result<Vec<module::Roll>> {
    if !hand_over.handed_over {
        return Ok(Vec::new());
    }
    module::rolls(client).await
}

/// The legacy objects still there, split into those waiting for finish and the rest: what a
/// hand-over leaves waits for finish, it is not left over from clean.
fn waiting_for_finish(
    hand_over: HandOver,
    remaining: Vec<String>,
    left_for_finish: &[String],
) -> (Vec<String>, Vec<String>) {
    if hand_over.handed_over && !hand_over.finished {
        remaining
            .into_iter()
            .partition(|o| left_for_finish.contains(o))
    } else {
        (Vec::new(), remaining)
    }
}

/// The key that marks each step done on the CR, if any.
fn markers_of(cr: Option<&DynamicObject>) -> BTreeMap<Step, Option<String>> {
    Step::IN_ORDER
        .into_iter()
        .map(|m| (m, cr.and_then(|cr| cr::marked(cr, m)).map(str::to_string)))
        .collect()
}

/// The markers of `clean --hand-over` and `finish` on the CR.
fn hand_over_of(cr: &DynamicObject) -> HandOver {
    HandOver {
        handed_over: cr::marked(cr, Marker::HandedOver).is_some(),
        finished: cr::marked(cr, Marker::Finished).is_some(),
    }
}

/// Each user-configuration ConfigMap (in `USER_CONFIG` order): its source, its copy, and
/// whether they hold the same data.
fn backup_copies_of(
    sources: &BTreeMap<&'static str, ConfigMap>,
    copies: Vec<Option<ConfigMap>>,
) -> Vec<BackupCopy> {
    config_maps::USER_CONFIG
        .into_iter()
        .zip(copies)
        .map(|(name, copy)| {
            let source = sources.get(name);
            BackupCopy {
                name: name.into(),
                source_exists: source.is_some(),
                copy_exists: copy.is_some(),
                copy_matches_source: match (source, &copy) {
                    (Some(s), Some(c)) => Some(configmaps::same_data(s, c)),
                    _ => None,
                },
            }
        })
        .collect()
}

/// What the cluster serves (one discovery request), then the legacy table's objects and those
/// at the operator's names, all read at once.
async fn at_known_names(client: &Client) -> Result<(LegacyRead, Vec<module::Unowned>, Served)> {
    let served = legacy::discover(client).await?;
    let (read, unowned) = futures::try_join!(
        legacy_objects(client, &served),
        module::unowned_at_names(client, &served)
    )?;
    Ok((read, unowned, served))
}

/// Whether the module's ServiceMappings are judged in the shared tenant mode: the CR's once
/// migrated (or with no legacy configuration to migrate), else the legacy configuration's
/// `tenantMode` that migrate will carry over (the CR's when it has none).
fn shared_tenant(cr: Option<&DynamicObject>, legacy_config: Option<&ConfigMap>) -> bool {
    let migrated = cr.is_some_and(|c| cr::marked(c, Step::Migrate).is_some());
    let legacy_mode = legacy_config
        .filter(|_| !migrated)
        .and_then(|cm| cm.data.as_ref()?.get(config_maps::CONFIG_KEY).cloned())
        .and_then(|text| {
            let source = crate::error::Source {
                namespace: names::KYMA_SYSTEM.into(),
                name: config_maps::CONFIG.into(),
                key: Some(config_maps::CONFIG_KEY.into()),
            };
            translate::parse_legacy_document(&source, &text).ok()
        })
        .and_then(|mut doc| doc.remove(names::TENANT_MODE_FIELD));
    match legacy_mode {
        Some(mode) => module::is_shared_tenant(Some(&mode)),
        None => module::is_shared_tenant(cr.and_then(module::tenant_mode_of)),
    }
}

/// Whether the backup namespace exists, and the copy of each user-configuration ConfigMap (in
/// `USER_CONFIG` order): the namespace and the copies read at once (a copy in a namespace that
/// does not exist is simply not found). Their sources are read among the legacy objects.
async fn backup_copies(client: &Client) -> Result<(bool, Vec<Option<ConfigMap>>)> {
    let namespaces: Api<Namespace> = Api::all(client.clone());
    let namespace = async {
        namespaces
            .get_metadata_opt(names::BACKUP_NAMESPACE)
            .await
            .context(|| format!("reading namespace {}", names::BACKUP_NAMESPACE))
    };
    let copies = futures::future::try_join_all(
        config_maps::USER_CONFIG
            .into_iter()
            .map(|name| configmaps::get(client, names::BACKUP_NAMESPACE, name)),
    );
    let (namespace, copies) = futures::try_join!(namespace, copies)?;
    let exists = namespace.is_some();
    // As before: without the namespace there is no copy.
    Ok((
        exists,
        copies.into_iter().map(|c| c.filter(|_| exists)).collect(),
    ))
}

/// The operator Deployment, and then the init container of its Pods that keeps failing.
async fn operator_and_failing(client: &Client) -> Result<(Option<Deployment>, Option<Failing>)> {
    let deployment = operator_deployment(client).await?;
    let failing = match &deployment {
        Some(d) => operator_pods::failing(client, d).await?,
        None => None,
    };
    Ok((deployment, failing))
}

fn archive_status(
    read: Result<Option<archive::Stored>>,
    cr: Option<&DynamicObject>,
    mappings: Option<&ServiceMappings>,
) -> ArchiveStatus {
    match read {
        Ok(None) => ArchiveStatus::default(),
        Ok(Some(stored)) => ArchiveStatus {
            present: true,
            objects: Some(stored.archive.objects.len()),
            service_mappings: Some(stored.archive.service_mappings.items.len()),
            crd_adopted: Some(
                stored
                    .archive
                    .service_mappings
                    .crd
                    .as_ref()
                    .is_some_and(|p| !p.is_adoption()),
            ),
            service_mappings_differ: mappings.map(|m| drift(&stored.archive, m)),
            belongs_to_current_cr: cr
                .map(|cr| cr.uid().as_deref() == Some(stored.archive.cr_uid.as_str())),
            cr_uid: Some(stored.archive.cr_uid),
            bytes: Some(stored.bytes),
            parts: Some(stored.parts),
            error: None,
        },
        // The rest of the status is still worth showing; the row says what went wrong.
        Err(e) => ArchiveStatus {
            present: true,
            error: Some(e.to_string()),
            ..Default::default()
        },
    }
}

/// How the mappings listed now differ from the archived ones: by content where the archive
/// holds it, by name where it holds names only (an older version's archive).
fn drift(archive: &archive::Archive, now: &ServiceMappings) -> MappingsDrift {
    let mut drift = MappingsDrift::default();
    let mut archived = 0;
    for entry in &archive.service_mappings.items {
        match now
            .digests
            .get(&(entry.namespace.clone(), entry.name.clone()))
        {
            None => drift.deleted += 1,
            Some(d) => {
                archived += 1;
                if entry
                    .object
                    .as_ref()
                    .is_some_and(|o| o.value().map(|o| archive::digest(&o)).ok() != Some(*d))
                {
                    drift.changed += 1;
                }
            }
        }
    }
    drift.created = now.digests.len() - archived;
    drift
}

/// What status learns from the legacy table's objects, each read once.
struct LegacyRead {
    /// From the marker StatefulSet's metadata.
    installation: Option<LegacyInstall>,
    /// `Kind namespace/name` of each legacy object still there (not the operator's).
    remaining: Vec<String>,
    /// Those of them that a hand-over leaves for finish.
    left_for_finish: Vec<String>,
    /// Kinds of the table that the cluster does not serve, as `Kind.group`.
    not_served: Vec<String>,
    /// The user-configuration ConfigMaps that exist and are not the module operator's, read
    /// whole: their copies are compared with them.
    user_config: BTreeMap<&'static str, ConfigMap>,
}

async fn legacy_objects(client: &Client, served: &Served) -> Result<LegacyRead> {
    let (objects, not_served) = legacy::objects_of(client, served, names::LEGACY_OBJECTS);
    // Every object at once: one round trip for all of them. The user ConfigMaps are read whole,
    // the rest as metadata only (Secrets among them: status never needs their data).
    let reads = futures::future::try_join_all(objects.iter().map(|o| async move {
        if o.is_user_config() {
            let whole = configmaps::get(client, names::KYMA_SYSTEM, o.name).await?;
            let meta = whole.as_ref().map(|c| c.metadata.clone());
            Ok::<_, crate::error::Error>((o, meta, whole))
        } else {
            let meta = o
                .api
                .get_metadata_opt(o.name)
                .await
                .context(|| format!("reading {}", o.display))?;
            Ok((o, meta.map(|m| m.metadata), None))
        }
    }))
    .await?;
    let mut read = LegacyRead {
        installation: None,
        remaining: Vec::new(),
        left_for_finish: Vec::new(),
        not_served,
        user_config: BTreeMap::new(),
    };
    for (o, meta, whole) in reads {
        let Some(meta) = meta else { continue };
        if o.is_marker() {
            read.installation = legacy::installation(&meta);
        }
        // The module's operator makes ConfigMaps of the same names (its own): they are not the
        // legacy sources of the copies.
        if legacy::has_operator_label(&meta) {
            continue;
        }
        read.remaining.push(o.display.clone());
        if crate::hand_over::left_for_finish(o.row, o.name) {
            read.left_for_finish.push(o.display.clone());
        }
        if let Some(cm) = whole {
            read.user_config.insert(o.name, cm);
        }
    }
    Ok(read)
}

async fn service_mappings(client: &Client) -> Result<Option<ServiceMappings>> {
    let Some(crd) = crate::service_mappings::crd(client).await? else {
        return Ok(None);
    };
    let Some(ar) = crate::service_mappings::resource(&crd) else {
        return Ok(None);
    };
    let namespaced = crd.spec.scope == "Namespaced";
    let (mut adopted, mut digests, mut refused) = (0, BTreeMap::new(), RefusedCount::default());
    let mut failed = None;
    crate::service_mappings::list(client, &ar, |listed| match listed {
        Listed::Restart => {
            (adopted, digests, refused) = (0, BTreeMap::new(), RefusedCount::default());
        }
        Listed::Page(page) => {
            adopted += page.iter().filter(|m| is_adopted(&m.metadata)).count();
            for m in &page {
                let content = archive::archival(m).map(archive::without_adoption);
                let key = (if namespaced { m.namespace() } else { None }, m.name_any());
                digests.insert(key, content.map_or(0, |c| archive::digest(&c)));
                match module::refusals(m) {
                    Ok(r) => refused.add(&r),
                    Err(e) => {
                        failed.get_or_insert(e);
                    }
                }
            }
        }
    })
    .await?;
    if let Some(e) = failed {
        return Err(e);
    }
    Ok(Some(ServiceMappings {
        total: digests.len(),
        adopted,
        crd_adopted: is_adopted(&crd.metadata),
        refused_by_module_schema: 0,
        refused,
        digests,
    }))
}

async fn operator_deployment(client: &Client) -> Result<Option<Deployment>> {
    let api: Api<Deployment> = Api::namespaced(client.clone(), names::KYMA_SYSTEM);
    api.get_opt(names::OPERATOR_DEPLOYMENT).await.context(|| {
        format!(
            "reading Deployment {}/{}",
            names::KYMA_SYSTEM,
            names::OPERATOR_DEPLOYMENT
        )
    })
}

fn operator(d: &Deployment) -> Operator {
    let replicas = d.spec.as_ref().and_then(|s| s.replicas).unwrap_or(1);
    let ready_replicas = d
        .status
        .as_ref()
        .and_then(|s| s.ready_replicas)
        .unwrap_or(0);
    Operator {
        replicas,
        ready_replicas,
        ready: ready_replicas >= replicas && replicas > 0,
    }
}

/// The status as a person reads it: the phase first, then what each part of the migration
/// left, in the order the steps leave it.
pub fn render_text(report: &Report) -> String {
    let s = &report.status;
    let mut rows = Rows::default();
    rows.line("phase", row_of_phase(report.phase, &report.phase_reason));
    installation_rows(&mut rows, s);
    backup_rows(&mut rows, s);
    legacy_rows(&mut rows, s);
    rows.line("ServiceMappings", service_mappings_row(s));
    module_rows(&mut rows, s);
    operator_rows(&mut rows, s);
    archive_rows(&mut rows, &s.archive);
    render_rows(&rows.0)
}

/// Label and value, one row each.
#[derive(Default)]
struct Rows(Vec<(String, String)>);

impl Rows {
    fn line(&mut self, label: &str, value: impl Into<String>) {
        self.0.push((label.to_string(), value.into()));
    }
}

fn yes(b: bool) -> &'static str {
    if b { "yes" } else { "no" }
}

/// The legacy installation, the module's CRD and CR, and the steps' markers on it.
fn installation_rows(rows: &mut Rows, s: &Status) {
    rows.line(
        "legacy installation",
        match &s.legacy_installation {
            Some(l) => format!(
                "present ({})",
                l.chart.as_deref().unwrap_or("no chart label")
            ),
            None => "absent".into(),
        },
    );
    rows.line("ConnectivityProxy CRD", yes(s.crd_installed));
    rows.line("ConnectivityProxy CR", yes(s.cr_exists));
    for (step, key) in &s.markers {
        rows.line(
            &format!("step {}", step.marker().name()),
            key.as_ref()
                .map(|k| format!("done ({k})"))
                .unwrap_or_else(|| "not done".into()),
        );
    }
}

/// The backup namespace and each copy against its source.
fn backup_rows(rows: &mut Rows, s: &Status) {
    rows.line(
        "backup namespace",
        if s.backup_namespace_exists {
            format!("{} exists", names::BACKUP_NAMESPACE)
        } else {
            "absent".into()
        },
    );
    for b in &s.backup {
        rows.line(
            &format!("backup of {}", b.name),
            match (b.source_exists, b.copy_exists, b.copy_matches_source) {
                (_, false, _) => format!(
                    "no copy (source {})",
                    if b.source_exists { "exists" } else { "absent" }
                ),
                (false, true, _) => "copy present, source gone".into(),
                (true, true, Some(true)) => "copy matches source".into(),
                (true, true, _) => "copy DIFFERS from source".into(),
            },
        );
    }
}

/// What clean has still to delete.
fn legacy_rows(rows: &mut Rows, s: &Status) {
    rows.line(
        "legacy objects remaining",
        s.legacy_objects_remaining.len().to_string(),
    );
    for o in &s.legacy_objects_remaining {
        rows.line("", o.clone());
    }
    if s.hand_over.handed_over {
        rows.line(
            "hand-over",
            if s.hand_over.finished {
                "handed over, finished".to_string()
            } else {
                format!(
                    "handed over; {} legacy objects wait for finish",
                    s.waiting_for_finish.len()
                )
            },
        );
        for o in &s.waiting_for_finish {
            rows.line("", o.clone());
        }
    }
    if !s.legacy_kinds_not_served.is_empty() {
        rows.line(
            "legacy kinds not served",
            s.legacy_kinds_not_served.join(", "),
        );
    }
}

fn service_mappings_row(s: &Status) -> String {
    let Some(m) = &s.service_mappings else {
        return "CRD not installed".into();
    };
    format!(
        "{} of {} adopted; CRD {}{}",
        m.adopted,
        m.total,
        if m.crd_adopted {
            "adopted"
        } else {
            "not adopted"
        },
        match m.refused_by_module_schema {
            0 => String::new(),
            n => format!("; {n} REFUSED by the module's schema (check names them)"),
        }
    )
}

/// The module's own state, what it needs to start, and what stands in its way.
fn module_rows(rows: &mut Rows, s: &Status) {
    rows.line(
        "module state",
        match &s.module {
            None => "no CR".into(),
            Some(m) => match (&m.state, m.is_current()) {
                (None, _) => "none yet".into(),
                (Some(state), true) => {
                    format!("{state} (generation {})", m.generation.unwrap_or(0))
                }
                (Some(state), false) => format!(
                    "{state} (for generation {}; the CR is at {})",
                    m.observed_generation
                        .map(|g| g.to_string())
                        .unwrap_or_else(|| "none".into()),
                    m.generation.unwrap_or(0)
                ),
            },
        },
    );
    rows.line(
        "operator prerequisites",
        if s.operator_prerequisites_missing.is_empty() {
            "served".into()
        } else {
            format!(
                "NOT SERVED: {}",
                s.operator_prerequisites_missing.join(", ")
            )
        },
    );
    rows.line(
        "blocking the operator",
        s.blocking_objects.len().to_string(),
    );
    for o in &s.blocking_objects {
        rows.line("", o.clone());
    }
}

/// The operator Deployment, and the init container of its Pods that keeps failing.
fn operator_rows(rows: &mut Rows, s: &Status) {
    rows.line(
        "operator Deployment",
        match &s.operator {
            Some(o) => format!(
                "{}/{} ready{}",
                o.ready_replicas,
                o.replicas,
                if o.ready { "" } else { " (NOT READY)" }
            ),
            None => "absent".into(),
        },
    );
    let Some(f) = &s.failing else {
        return;
    };
    rows.line(
        "failing init container",
        format!(
            "{} in Pod {}: step {}, {} restarts",
            f.container,
            f.pod,
            f.step.map(|st| st.name()).unwrap_or("unknown"),
            f.restarts
        ),
    );
    // The step's own closing reason, on one line.
    rows.line(
        "",
        format!(
            "message: {}",
            f.message
                .as_deref()
                .map(|m| m.trim().replace(['\r', '\n'], " "))
                .unwrap_or_else(|| "(none)".into())
        ),
    );
}

/// clean's archive, and whether the ServiceMappings still match it.
fn archive_rows(rows: &mut Rows, a: &ArchiveStatus) {
    let summary = match (&a.error, a.present) {
        (Some(e), _) => format!("UNREADABLE: {e}"),
        (None, false) => "absent".into(),
        (None, true) => format!(
            "{} objects, {} ServiceMappings{}; {} ({} bytes in {})",
            a.objects.unwrap_or(0),
            a.service_mappings.unwrap_or(0),
            if a.crd_adopted == Some(true) {
                " and their CRD"
            } else {
                ""
            },
            match a.belongs_to_current_cr {
                Some(true) => "of this CR".to_string(),
                Some(false) => format!(
                    "of ANOTHER CR (uid {})",
                    a.cr_uid.as_deref().unwrap_or_default()
                ),
                None => format!("of CR uid {}", a.cr_uid.as_deref().unwrap_or_default()),
            },
            a.bytes.unwrap_or(0),
            match a.parts {
                Some(p) if p > 0 => format!("{p} parts"),
                _ => "one Secret".into(),
            }
        ),
    };
    rows.line("archive for rollback", summary);
    if let Some(d) = a.service_mappings_differ.as_ref().filter(|d| d.total() > 0) {
        rows.line(
            "",
            format!(
                "{} ServiceMappings differ from the archive ({} created, {} changed, {} deleted \
                 since): run `rollback --prepare` before the module is disabled",
                d.total(),
                d.created,
                d.changed,
                d.deleted
            ),
        );
    }
}

fn row_of_phase(phase: Phase, reason: &str) -> String {
    format!("{}: {reason}", phase.name())
}

/// One row per line; the values start in one column, after the longest label.
fn render_rows(rows: &[(String, String)]) -> String {
    let width = rows
        .iter()
        .map(|(k, _)| k.chars().count())
        .max()
        .unwrap_or(0);
    rows.iter()
        .map(|(k, v)| format!("{k:<width$}  {v}\n"))
        .collect()
}
