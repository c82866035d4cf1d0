//! The one phase that sums a cluster up, and why: a pure function of what status read.
//!
//! Precedence, first match wins (docs/status.md, "The phase"):
//! 1. `unreachable`: nothing could be read (decided by the caller, not here).
//! 2. `failing`: an init container of the operator Pod keeps failing. It comes before the
//!    contradictions: the Pod does not start, and its termination message is the step's own
//!    reason (which usually names the contradiction).
//! 3. `needs-attention`: the state contradicts itself, or the module cannot come up (it
//!    reports `Error`, an object at one of its operator's names stops it, or its operator
//!    cannot start); the first such finding is the reason.
//! 4. `handed-over`: all three markers, no legacy object left but what waits for finish, both
//!    copies present, and the CR marked handed-over but not finished.
//! 5. `done`: all three markers, no legacy object left, both copies present, and the module
//!    `Ready` for the CR's current generation (until then `in-progress`: the module is
//!    starting).
//! 6. `no-legacy`: no legacy object, no marker, no copy, no archive.
//! 7. `not-started`: legacy objects present, module not enabled (no CR, no operator Deployment).
//! 8. `in-progress`: the rest: the module is enabled and the steps are under way.

use serde::Serialize;

use super::operator_pods::Failing;
use super::picture::{BackupCopy, Status};
use crate::module::ModuleState;
use crate::names::{self, operator};
use crate::step::Step;

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum Phase {
    NoLegacy,
    NotStarted,
    InProgress,
    HandedOver,
    Failing,
    Done,
    NeedsAttention,
    Unreachable,
}

impl Phase {
    /// Every phase, in the order of the table of phases in docs/status.md (as a fleet's summary line
    /// lists them).
    pub const ALL: [Phase; 8] = [
        Phase::NoLegacy,
        Phase::NotStarted,
        Phase::InProgress,
        Phase::HandedOver,
        Phase::Failing,
        Phase::Done,
        Phase::NeedsAttention,
        Phase::Unreachable,
    ];

    /// As in the JSON: `no-legacy`, `not-started`, ….
    pub fn name(self) -> &'static str {
        match self {
            Phase::NoLegacy => "no-legacy",
            Phase::NotStarted => "not-started",
            Phase::InProgress => "in-progress",
            Phase::HandedOver => "handed-over",
            Phase::Failing => "failing",
            Phase::Done => "done",
            Phase::NeedsAttention => "needs-attention",
            Phase::Unreachable => "unreachable",
        }
    }
}

/// The phase and its one-line reason, in the precedence above.
pub fn decide(s: &Status) -> (Phase, String) {
    if let Some(f) = &s.failing {
        return (Phase::Failing, failing(f));
    }
    if let Some(why) = contradiction(s) {
        return (Phase::NeedsAttention, why);
    }
    let legacy_left = legacy_left(s);
    let all_marked = Step::IN_ORDER.into_iter().all(|m| marked(s, m));
    if all_marked && legacy_left == 0 && s.backup.iter().all(|b| b.copy_exists) {
        return migrated(s);
    }
    let module_enabled = s.cr_exists || s.operator.is_some();
    let module = if module_enabled {
        "the module is enabled"
    } else {
        "the module is not enabled"
    };
    let any_marked = Step::IN_ORDER.into_iter().any(|m| marked(s, m));
    if legacy_left == 0 && !any_marked && !left_by_a_migration(s) {
        return (
            Phase::NoLegacy,
            format!("no legacy installation and nothing migrated; {module}"),
        );
    }
    if legacy_left > 0 && !module_enabled {
        return (Phase::NotStarted, not_started(s, legacy_left, module));
    }
    (Phase::InProgress, under_way(s, module))
}

/// Whether the step's marker is set on the CR.
fn marked(s: &Status, step: Step) -> bool {
    s.markers.get(&step).is_some_and(Option::is_some)
}

fn failing(f: &Failing) -> String {
    let step = f
        .step
        .map(|st| format!("step {}", st.name()))
        .unwrap_or_else(|| "step unknown".into());
    format!(
        "init container {} ({step}) of Pod {} keeps failing after {} restarts",
        f.container, f.pod, f.restarts
    )
}

/// Every step marked, no legacy object left and both copies there: handed over and waiting
/// for finish, the module starting, or done once it is `Ready`.
fn migrated(s: &Status) -> (Phase, String) {
    let module = s.module.clone().unwrap_or_default();
    // Ready counts ready replicas: a module still rolling the legacy Pods it took over is not
    // done, finished or not.
    let rolling = s.rolls.iter().any(|r| !r.settled);
    if s.hand_over.handed_over && (!s.hand_over.finished || rolling) {
        return (Phase::HandedOver, handed_over(s, &module));
    }
    if !module.is_ready() {
        return (
            Phase::InProgress,
            format!(
                "migrated, backed up and cleaned; the module is starting ({})",
                starting(&module)
            ),
        );
    }
    let adopted = s
        .service_mappings
        .as_ref()
        .map(|m| format!("; {} of {} ServiceMappings adopted", m.adopted, m.total))
        .unwrap_or_default();
    (
        Phase::Done,
        format!(
            "migrated, backed up and cleaned; no legacy object left{adopted}; the module is {}",
            operator::STATE_READY
        ),
    )
}

/// The legacy installation (or what is left of it) and the module not enabled.
fn not_started(s: &Status, legacy_left: usize, module: &str) -> String {
    let what = match &s.legacy_installation {
        Some(l) => format!(
            "legacy installation present ({})",
            l.chart.as_deref().unwrap_or("no chart label")
        ),
        None => format!("{} present", legacy_objects(legacy_left)),
    };
    format!("{what}; {module}")
}

/// The steps done so far and the next one.
fn under_way(s: &Status, module: &str) -> String {
    if !s.cr_exists {
        return "the operator Deployment exists, the ConnectivityProxy CR does not yet".into();
    }
    let done: Vec<&str> = Step::IN_ORDER
        .into_iter()
        .filter(|m| marked(s, *m))
        .map(Step::name)
        .collect();
    let next = Step::IN_ORDER
        .into_iter()
        .find(|m| !marked(s, *m))
        .map(Step::name)
        .unwrap_or("none");
    if done.is_empty() {
        format!("{module}; no step done yet; next: {next}")
    } else {
        format!("{module}; done: {}; next: {next}", done.join(", "))
    }
}

/// Migrated and serving (the legacy Pods or the module's), waiting for finish.
fn handed_over(s: &Status, module: &ModuleState) -> String {
    let rolling = s.rolls.iter().find(|r| !r.settled);
    let state = if let (true, Some(roll)) = (module.is_ready(), rolling) {
        format!(
            "the module is {}, but {}: finish waits for it",
            operator::STATE_READY,
            roll.describe()
        )
    } else if module.is_ready() {
        format!("the module is {}: run finish", operator::STATE_READY)
    } else {
        format!("the module is starting ({})", starting(module))
    };
    format!(
        "migrated and handed over to the module; {} wait{} for finish; {state}",
        legacy_objects(s.waiting_for_finish.len()),
        if s.waiting_for_finish.len() == 1 {
            "s"
        } else {
            ""
        }
    )
}

/// The first thing that contradicts the rest, if any, in this order.
fn contradiction(s: &Status) -> Option<String> {
    cleaned_with_legacy_left(s)
        .or_else(|| copy_differs(s))
        .or_else(|| {
            let e = s.archive.error.as_ref()?;
            Some(format!("clean's archive cannot be read: {e}"))
        })
        .or_else(|| archive_of_another_cr(s))
        .or_else(|| out_of_order(s))
        .or_else(|| backed_up_without_copy(s))
        .or_else(|| module_cannot_come_up(s))
        .or_else(|| left_by_a_forgotten_migration(s))
}

fn backup_copy(b: &BackupCopy) -> String {
    format!("{}/{}", names::BACKUP_NAMESPACE, b.name)
}

fn cleaned_with_legacy_left(s: &Status) -> Option<String> {
    let legacy_left = legacy_left(s);
    if !marked(s, Step::Clean) || legacy_left == 0 {
        return None;
    }
    let first = s
        .legacy_objects_remaining
        .first()
        .map(|o| format!(" ({o}{})", if legacy_left > 1 { ", …" } else { "" }))
        .unwrap_or_default();
    Some(format!(
        "marked cleaned, but {} remain{}{first}",
        legacy_objects(legacy_left),
        if legacy_left == 1 { "s" } else { "" }
    ))
}

fn copy_differs(s: &Status) -> Option<String> {
    let b = s
        .backup
        .iter()
        .find(|b| b.copy_matches_source == Some(false))?;
    Some(format!(
        "the backup copy {} differs from its source {}/{}",
        backup_copy(b),
        names::KYMA_SYSTEM,
        b.name
    ))
}

fn archive_of_another_cr(s: &Status) -> Option<String> {
    if !marked(s, Step::Clean) || s.archive.belongs_to_current_cr != Some(false) {
        return None;
    }
    Some(format!(
        "marked cleaned, but clean's archive belongs to another CR (uid {})",
        s.archive.cr_uid.as_deref().unwrap_or_default()
    ))
}

/// A step marked while an earlier one is not.
fn out_of_order(s: &Status) -> Option<String> {
    Step::IN_ORDER
        .into_iter()
        .enumerate()
        .filter(|(_, later)| marked(s, *later))
        .find_map(|(i, later)| {
            let earlier = Step::IN_ORDER[..i].iter().find(|m| !marked(s, **m))?;
            Some(format!(
                "marked {} but not {}: the steps run in order",
                later.marker().name(),
                earlier.marker().name()
            ))
        })
}

fn backed_up_without_copy(s: &Status) -> Option<String> {
    if !marked(s, Step::Backup) {
        return None;
    }
    let b = s.backup.iter().find(|b| !b.copy_exists)?;
    Some(format!(
        "marked backed-up, but the backup copy {} is missing",
        backup_copy(b)
    ))
}

/// Nothing legacy and no marker, but copies or an archive in the backup namespace.
fn left_by_a_forgotten_migration(s: &Status) -> Option<String> {
    let any_marked = Step::IN_ORDER.into_iter().any(|m| marked(s, m));
    if legacy_left(s) > 0 || any_marked || !left_by_a_migration(s) {
        return None;
    }
    Some(format!(
        "no legacy installation and no marker on a CR, but an earlier migration left {} in \
         {}: the module was disabled or its CR replaced after the migration",
        if s.archive.present {
            "clean's archive"
        } else {
            "backup copies"
        },
        names::BACKUP_NAMESPACE
    ))
}

/// Why the module cannot reach `Ready` as things are, if it cannot: it reports `Error` (the
/// object that stops its operator named, when one is found), an object at one of its
/// operator's names would stop it, or its operator cannot start (it has written no state, and
/// a CRD it needs is not served).
fn module_cannot_come_up(s: &Status) -> Option<String> {
    let blocker = s.blocking_objects.first().map(|b| {
        let more = match s.blocking_objects.len() {
            1 => String::new(),
            n => format!(", and {} more", n - 1),
        };
        format!(
            "{b} exists at one of the module operator's names without its label and \
             annotations: the operator's create there fails with 409 Conflict{more}"
        )
    });
    let module = s.module.as_ref();
    if module.is_some_and(ModuleState::is_error) {
        // Where it stops comes first: the shoot's ConfigMap is read before any object, and
        // the first unowned object in its order may be a legacy one before any blocker.
        return Some(match (&s.operator_stops_at, blocker) {
            (Some(at), _) => format!(
                "the module reports {} (status.state of the CR): its operator stops at {at}",
                operator::STATE_ERROR
            ),
            (None, Some(b)) => format!("the module reports {}: {b}", operator::STATE_ERROR),
            (None, None) => format!(
                "the module reports {} (status.state of the CR): its operator's log says why",
                operator::STATE_ERROR
            ),
        });
    }
    if blocker.is_some() {
        return blocker;
    }
    if module.is_some_and(|m| m.state.is_none()) && !s.operator_prerequisites_missing.is_empty() {
        return Some(format!(
            "the module's operator does not start while {} {} not served",
            s.operator_prerequisites_missing.join(", "),
            if s.operator_prerequisites_missing.len() == 1 {
                "is"
            } else {
                "are"
            }
        ));
    }
    None
}

/// How far the module is while it starts: its state, and for which generation of the CR.
fn starting(m: &ModuleState) -> String {
    match (&m.state, m.is_current()) {
        (None, _) => "no state yet".into(),
        (Some(state), true) => format!("state {state}"),
        (Some(state), false) => format!(
            "state {state} for generation {} of the CR, which is at {}",
            m.observed_generation
                .map(|g| g.to_string())
                .unwrap_or_else(|| "none".into()),
            m.generation
                .map(|g| g.to_string())
                .unwrap_or_else(|| "none".into())
        ),
    }
}

/// Legacy objects still there (the StatefulSet that marks the installation among them).
fn legacy_left(s: &Status) -> usize {
    s.legacy_objects_remaining
        .len()
        .max(usize::from(s.legacy_installation.is_some()))
}

/// "1 legacy object", "2 legacy objects".
fn legacy_objects(n: usize) -> String {
    format!("{n} legacy object{}", if n == 1 { "" } else { "s" })
}

/// What only a migration writes: a backup copy or clean's archive.
fn left_by_a_migration(s: &Status) -> bool {
    s.archive.present || s.backup.iter().any(|b| b.copy_exists)
}

#[cfg(test)]
mod tests {
    use super::super::operator_pods::{Failing, InitCommand};
    use super::super::picture::{ArchiveStatus, Operator, ServiceMappings};
    use super::*;
    use crate::legacy::LegacyInstall;

    fn copies(exist: bool) -> Vec<BackupCopy> {
        names::config_maps::USER_CONFIG
            .iter()
            .map(|n| BackupCopy {
                name: n.to_string(),
                source_exists: !exist,
                copy_exists: exist,
                copy_matches_source: None,
            })
            .collect()
    }

    fn markers(set: &[Step]) -> std::collections::BTreeMap<Step, Option<String>> {
        Step::IN_ORDER
            .into_iter()
            .map(|m| (m, set.contains(&m).then(|| m.marker().key().to_string())))
            .collect()
    }

    /// The legacy installation alone: nothing of the module.
    fn legacy_only() -> Status {
        Status {
            legacy_installation: Some(LegacyInstall {
                chart: Some("connectivity-proxy-2.9.3".into()),
            }),
            crd_installed: false,
            cr_exists: false,
            markers: markers(&[]),
            backup_namespace_exists: false,
            backup: copies(false)
                .into_iter()
                .map(|mut b| {
                    b.source_exists = true;
                    b
                })
                .collect(),
            legacy_objects_remaining: vec![
                "StatefulSet kyma-system/connectivity-proxy".into(),
                "ConfigMap kyma-system/connectivity-proxy".into(),
            ],
            legacy_kinds_not_served: vec![],
            service_mappings: None,
            operator: None,
            archive: ArchiveStatus::default(),
            failing: None,
            module: None,
            operator_prerequisites_missing: vec![],
            blocking_objects: vec![],
            operator_stops_at: None,
            rolls: vec![],
            hand_over: Default::default(),
            waiting_for_finish: vec![],
        }
    }

    /// The module's state on the CR, at generation 2 of it.
    fn module(state: Option<&str>, observed_generation: Option<i64>) -> Option<ModuleState> {
        Some(ModuleState {
            state: state.map(str::to_string),
            observed_generation,
            generation: Some(2),
        })
    }

    /// The module enabled, the CR without markers.
    fn enabled() -> Status {
        Status {
            crd_installed: true,
            cr_exists: true,
            operator: Some(Operator {
                replicas: 1,
                ready_replicas: 0,
                ready: false,
            }),
            module: module(None, None),
            ..legacy_only()
        }
    }

    /// After `run`: three markers, copies, archive of this CR, no legacy object.
    fn done() -> Status {
        Status {
            legacy_installation: None,
            markers: markers(&Step::IN_ORDER),
            backup_namespace_exists: true,
            backup: copies(true),
            legacy_objects_remaining: vec![],
            service_mappings: Some(ServiceMappings {
                total: 3,
                adopted: 3,
                crd_adopted: true,
                refused_by_module_schema: 0,
                refused: Default::default(),
                digests: Default::default(),
            }),
            archive: ArchiveStatus {
                present: true,
                cr_uid: Some("uid-1".into()),
                belongs_to_current_cr: Some(true),
                ..Default::default()
            },
            module: module(Some("Ready"), Some(2)),
            ..enabled()
        }
    }

    fn empty() -> Status {
        Status {
            legacy_installation: None,
            legacy_objects_remaining: vec![],
            backup: copies(false),
            ..legacy_only()
        }
    }

    fn failing() -> Failing {
        Failing {
            pod: "connectivity-proxy-operator-1".into(),
            container: "init-cleaner".into(),
            step: Some(InitCommand::Step(Step::Clean)),
            restarts: 4,
            message: Some("clean failed: refusing to delete".into()),
        }
    }

    fn phase(s: &Status) -> Phase {
        decide(s).0
    }

    #[track_caller]
    fn assert_phase(s: &Status, phase: Phase, reason_has: &str) {
        let (p, reason) = decide(s);
        assert_eq!(p, phase, "{reason}");
        assert!(
            reason.contains(reason_has),
            "{reason:?} lacks {reason_has:?}"
        );
        assert!(!reason.contains('\n'), "one line: {reason:?}");
    }

    #[test]
    fn handed_over_and_not_finished_is_handed_over_and_done_needs_finished() {
        let handed_over = Status {
            hand_over: super::super::HandOver {
                handed_over: true,
                finished: false,
            },
            waiting_for_finish: vec!["Gateway kyma-system/kyma-gateway-cc".into()],
            ..done()
        };
        assert_phase(
            &handed_over,
            Phase::HandedOver,
            "1 legacy object waits for finish",
        );
        assert_phase(&handed_over, Phase::HandedOver, "run finish");
        let starting = Status {
            module: module(Some("Processing"), Some(2)),
            ..handed_over
        };
        assert_phase(&starting, Phase::HandedOver, "the module is starting");
        let finished = Status {
            hand_over: super::super::HandOver {
                handed_over: true,
                finished: true,
            },
            waiting_for_finish: vec![],
            ..done()
        };
        assert_phase(&finished, Phase::Done, "no legacy object left");
    }

    /// contract.md: a handed-over cluster is done only once no Pod of the module's workloads runs a
    /// legacy revision; until then it is handed-over and says how far the roll is.
    #[test]
    fn handed_over_is_done_only_once_the_legacy_pods_are_replaced() {
        let roll = |replaced, settled| crate::module::Roll {
            workload: "StatefulSet kyma-system/connectivity-proxy".into(),
            replaced,
            replicas: 2,
            settled,
        };
        let rolling = Status {
            hand_over: super::super::HandOver {
                handed_over: true,
                finished: false,
            },
            rolls: vec![roll(1, false)],
            ..done()
        };
        assert_phase(
            &rolling,
            Phase::HandedOver,
            "the module's StatefulSet kyma-system/connectivity-proxy has replaced 1 of 2 legacy Pods",
        );
        let finished_but_rolling = Status {
            hand_over: super::super::HandOver {
                handed_over: true,
                finished: true,
            },
            ..rolling
        };
        assert_phase(&finished_but_rolling, Phase::HandedOver, "replaced 1 of 2");
        let rolled = Status {
            rolls: vec![roll(2, true)],
            ..finished_but_rolling
        };
        assert_phase(&rolled, Phase::Done, "no legacy object left");
    }

    #[test]
    fn no_legacy_nothing_migrated_with_or_without_the_module() {
        assert_phase(&empty(), Phase::NoLegacy, "the module is not enabled");
        let with_module = Status {
            cr_exists: true,
            crd_installed: true,
            ..empty()
        };
        assert_phase(&with_module, Phase::NoLegacy, "the module is enabled");
    }

    #[test]
    fn legacy_present_module_not_enabled_is_not_started() {
        assert_phase(
            &legacy_only(),
            Phase::NotStarted,
            "connectivity-proxy-2.9.3",
        );
        // The CRD alone (left from an earlier module) does not enable the module.
        let crd_only = Status {
            crd_installed: true,
            ..legacy_only()
        };
        assert_eq!(phase(&crd_only), Phase::NotStarted);
        // Legacy objects without the StatefulSet still are a legacy installation to migrate.
        let objects_only = Status {
            legacy_installation: None,
            ..legacy_only()
        };
        assert_phase(&objects_only, Phase::NotStarted, "2 legacy objects present");
    }

    #[test]
    fn module_enabled_and_steps_under_way_is_in_progress() {
        assert_phase(
            &enabled(),
            Phase::InProgress,
            "no step done yet; next: migrate",
        );
        let migrated = Status {
            markers: markers(&[Step::Migrate]),
            ..enabled()
        };
        assert_phase(&migrated, Phase::InProgress, "done: migrate; next: backup");
        let backed_up = Status {
            markers: markers(&[Step::Migrate, Step::Backup]),
            backup: copies(true)
                .into_iter()
                .map(|mut b| {
                    b.source_exists = true;
                    b.copy_matches_source = Some(true);
                    b
                })
                .collect(),
            ..enabled()
        };
        assert_phase(
            &backed_up,
            Phase::InProgress,
            "done: migrate, backup; next: clean",
        );
        // clean deleted everything but was stopped before its marker.
        let cleaned_unmarked = Status {
            markers: markers(&[Step::Migrate, Step::Backup]),
            ..done()
        };
        assert_phase(&cleaned_unmarked, Phase::InProgress, "next: clean");
        // The operator Deployment before the module's CR.
        let no_cr = Status {
            cr_exists: false,
            ..enabled()
        };
        assert_phase(&no_cr, Phase::InProgress, "CR does not yet");
    }

    #[test]
    fn three_markers_no_legacy_and_copies_is_done() {
        assert_phase(&done(), Phase::Done, "3 of 3 ServiceMappings adopted");
        // An older tool's clean left no archive: still done.
        let no_archive = Status {
            archive: ArchiveStatus::default(),
            ..done()
        };
        assert_eq!(phase(&no_archive), Phase::Done);
    }

    #[test]
    fn done_needs_the_module_ready_for_the_current_generation() {
        assert_phase(&done(), Phase::Done, "; the module is Ready");
        for (state, observed, reason) in [
            (None, None, "the module is starting (no state yet)"),
            (
                Some("Processing"),
                Some(2),
                "the module is starting (state Processing)",
            ),
            (
                Some("Ready"),
                Some(1),
                "the module is starting (state Ready for generation 1 of the CR, which is at 2)",
            ),
            (
                Some("Ready"),
                None,
                "(state Ready for generation none of the CR, which is at 2)",
            ),
        ] {
            let starting = Status {
                module: module(state, observed),
                ..done()
            };
            assert_phase(&starting, Phase::InProgress, reason);
        }
    }

    #[test]
    fn a_module_that_cannot_come_up_needs_attention() {
        let error = Status {
            module: module(Some("Error"), Some(2)),
            ..done()
        };
        assert_phase(
            &error,
            Phase::NeedsAttention,
            "the module reports Error (status.state of the CR): its operator's log says why",
        );
        let blocked = Status {
            blocking_objects: vec![
                "ConfigMap kyma-system/connectivity-proxy-region-configurations".into(),
                "Gateway kyma-system/connectivity-proxy-tunnel".into(),
            ],
            ..error
        };
        assert_phase(
            &blocked,
            Phase::NeedsAttention,
            "the module reports Error: ConfigMap kyma-system/connectivity-proxy-region-configurations \
             exists at one of the module operator's names without its label and annotations: the \
             operator's create there fails with 409 Conflict, and 1 more",
        );
        // Before the module is enabled, and before it reports anything.
        let ahead = Status {
            blocking_objects: vec!["Role kyma-system/connectivity-proxy-startup".into()],
            ..legacy_only()
        };
        assert_phase(
            &ahead,
            Phase::NeedsAttention,
            "Role kyma-system/connectivity-proxy-startup exists at one of the module operator's names",
        );
        let no_istio = Status {
            operator_prerequisites_missing: vec![
                "gateways.networking.istio.io".into(),
                "certificates.cert.gardener.cloud".into(),
            ],
            module: module(None, None),
            ..done()
        };
        assert_phase(
            &no_istio,
            Phase::NeedsAttention,
            "the module's operator does not start while gateways.networking.istio.io, \
             certificates.cert.gardener.cloud are not served",
        );
        // An operator that writes a state runs: it needed fewer.
        let started = Status {
            module: module(Some("Processing"), Some(2)),
            ..no_istio
        };
        assert_eq!(phase(&started), Phase::InProgress);
        // Not enabled yet: the operator has not been asked to start.
        let not_enabled = Status {
            operator_prerequisites_missing: vec!["gateways.networking.istio.io".into()],
            ..legacy_only()
        };
        assert_eq!(phase(&not_enabled), Phase::NotStarted);
    }

    #[test]
    fn contradictions_need_attention() {
        let recreated = Status {
            legacy_objects_remaining: vec![
                "PriorityClass connectivity-proxy-priority-class".into(),
            ],
            ..done()
        };
        assert_phase(
            &recreated,
            Phase::NeedsAttention,
            "marked cleaned, but 1 legacy object remains (PriorityClass connectivity-proxy-priority-class)",
        );
        let two = Status {
            legacy_objects_remaining: vec![
                "Service kyma-system/a".into(),
                "Service kyma-system/b".into(),
            ],
            ..done()
        };
        assert_phase(
            &two,
            Phase::NeedsAttention,
            "marked cleaned, but 2 legacy objects remain (Service kyma-system/a, …)",
        );
        let mut differs = enabled();
        differs.markers = markers(&[Step::Migrate, Step::Backup]);
        differs.backup = copies(true);
        for b in &mut differs.backup {
            b.source_exists = true;
            b.copy_matches_source = Some(b.name != names::config_maps::INFO);
        }
        assert_phase(
            &differs,
            Phase::NeedsAttention,
            "connectivity-proxy-backup/connectivity-proxy-info differs from its source",
        );
        let mut unreadable = done();
        unreadable.archive = ArchiveStatus {
            present: true,
            error: Some("part 2 of 3 is missing".into()),
            ..Default::default()
        };
        assert_phase(&unreadable, Phase::NeedsAttention, "part 2 of 3 is missing");
        let mut other_cr = done();
        other_cr.archive.belongs_to_current_cr = Some(false);
        other_cr.archive.cr_uid = Some("uid-0".into());
        assert_phase(&other_cr, Phase::NeedsAttention, "another CR (uid uid-0)");
        let out_of_order = Status {
            markers: markers(&[Step::Migrate, Step::Clean]),
            ..done()
        };
        assert_phase(
            &out_of_order,
            Phase::NeedsAttention,
            "marked cleaned but not backed-up",
        );
        let mut copy_gone = done();
        copy_gone.backup[0].copy_exists = false;
        assert_phase(
            &copy_gone,
            Phase::NeedsAttention,
            "the backup copy connectivity-proxy-backup/connectivity-proxy is missing",
        );
        // The module disabled after the migration, before the legacy installation is back.
        let disabled = Status {
            cr_exists: false,
            crd_installed: false,
            operator: None,
            markers: markers(&[]),
            archive: ArchiveStatus {
                present: true,
                ..Default::default()
            },
            ..done()
        };
        assert_phase(&disabled, Phase::NeedsAttention, "clean's archive");
        let copies_only = Status {
            archive: ArchiveStatus::default(),
            ..disabled
        };
        assert_phase(&copies_only, Phase::NeedsAttention, "backup copies");
    }

    #[test]
    fn an_archive_of_another_cr_before_clean_is_no_contradiction() {
        // The module was enabled again (a new CR) and clean has not run for it yet.
        let mut s = enabled();
        s.markers = markers(&[Step::Migrate]);
        s.archive = ArchiveStatus {
            present: true,
            belongs_to_current_cr: Some(false),
            cr_uid: Some("uid-0".into()),
            ..Default::default()
        };
        assert_eq!(phase(&s), Phase::InProgress);
    }

    #[test]
    fn precedence_failing_before_contradictions_before_the_rest() {
        // failing wins over every other phase.
        for base in [legacy_only(), enabled(), done(), empty()] {
            let s = Status {
                failing: Some(failing()),
                ..base
            };
            assert_phase(
                &s,
                Phase::Failing,
                "init container init-cleaner (step clean) of Pod connectivity-proxy-operator-1 keeps failing after 4 restarts",
            );
        }
        let contradictory = Status {
            legacy_objects_remaining: vec!["Service kyma-system/connectivity-proxy".into()],
            failing: Some(failing()),
            ..done()
        };
        assert_eq!(phase(&contradictory), Phase::Failing);
        let unknown_step = Status {
            failing: Some(Failing {
                step: None,
                ..failing()
            }),
            ..enabled()
        };
        assert_phase(&unknown_step, Phase::Failing, "(step unknown)");
        // needs-attention before done: all markers and copies, but a copy differs.
        let mut s = done();
        s.backup[1].source_exists = true;
        s.backup[1].copy_matches_source = Some(false);
        assert_eq!(phase(&s), Phase::NeedsAttention);
        // needs-attention before not-started and no-legacy.
        let mut s = legacy_only();
        s.archive = ArchiveStatus {
            present: true,
            error: Some("not gzip".into()),
            ..Default::default()
        };
        assert_eq!(phase(&s), Phase::NeedsAttention);
        let mut s = empty();
        s.archive = archive_error();
        assert_eq!(phase(&s), Phase::NeedsAttention);
        // done before in-progress and no-legacy: nothing left, everything marked.
        assert_eq!(phase(&done()), Phase::Done);
        // not-started before in-progress: legacy present, the CR not there.
        assert_eq!(phase(&legacy_only()), Phase::NotStarted);
    }

    fn archive_error() -> ArchiveStatus {
        ArchiveStatus {
            present: true,
            error: Some("forbidden".into()),
            ..Default::default()
        }
    }

    #[test]
    fn phases_serialize_as_the_contract_names_them() {
        for p in Phase::ALL {
            assert_eq!(
                serde_json::to_value(p).unwrap(),
                serde_json::json!(p.name())
            );
        }
    }
}
