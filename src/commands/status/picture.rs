//! What status read: the picture that the phase is decided from and that status shows.

use std::collections::BTreeMap;

use serde::Serialize;

use super::operator_pods::Failing;
use crate::legacy::LegacyInstall;
use crate::module::{ModuleState, RefusedCount};
use crate::step::Step;

#[derive(Debug, Serialize)]
pub struct Status {
    pub legacy_installation: Option<LegacyInstall>,
    /// Whether clean handed over, and whether finish has run since.
    pub hand_over: HandOver,
    /// The legacy objects a hand-over left that finish has yet to delete (not counted among
    /// the remaining ones).
    pub waiting_for_finish: Vec<String>,
    pub crd_installed: bool,
    pub cr_exists: bool,
    /// For each step, the annotation key that marks it done, if any.
    #[serde(serialize_with = "crate::step::serialize_markers")]
    pub markers: std::collections::BTreeMap<Step, Option<String>>,
    pub backup_namespace_exists: bool,
    pub backup: Vec<BackupCopy>,
    pub legacy_objects_remaining: Vec<String>,
    pub legacy_kinds_not_served: Vec<String>,
    pub service_mappings: Option<ServiceMappings>,
    pub operator: Option<Operator>,
    pub archive: ArchiveStatus,
    /// The operator Pod's init container that keeps failing, if any.
    pub failing: Option<Failing>,
    /// The module's own state on the CR (`None`: no CR).
    pub module: Option<ModuleState>,
    /// CRDs the module's operator needs to start that the cluster does not serve (the CR's own
    /// aside, which the module brings).
    pub operator_prerequisites_missing: Vec<String>,
    /// Objects at the operator's names that would stop it with 409 Conflict: without its label
    /// and both annotations, and not removed by clean.
    pub blocking_objects: Vec<String>,
    /// While the module reports `Error`: where its operator stops, as far as the cluster shows
    /// it (the shoot's ConfigMap it reads and lacks, else the first object at its names, in its
    /// order, that it does not own).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub operator_stops_at: Option<String>,
    /// After a hand-over: how far each of the module's workloads at a legacy workload's name
    /// has replaced the legacy Pods it took over (empty without a hand-over).
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub rolls: Vec<crate::module::Roll>,
}

/// The markers of `clean --hand-over` and `finish` on the CR.
#[derive(Debug, Default, Clone, Copy, Serialize)]
pub struct HandOver {
    pub handed_over: bool,
    pub finished: bool,
}

/// clean's archive, for `rollback`: counts and ownership only, never its content.
#[derive(Debug, Default, Serialize)]
pub struct ArchiveStatus {
    pub present: bool,
    pub objects: Option<usize>,
    pub service_mappings: Option<usize>,
    /// Whether clean adopted the ServiceMapping CRD (rollback gives it back).
    pub crd_adopted: Option<bool>,
    /// uid of the ConnectivityProxy CR whose clean wrote it.
    pub cr_uid: Option<String>,
    /// Whether that CR is the one that exists now (`None`: no CR).
    pub belongs_to_current_cr: Option<bool>,
    /// Size of the compressed archive, and the Secrets beside the index that hold it (0: inline).
    pub bytes: Option<usize>,
    pub parts: Option<usize>,
    /// How the ServiceMappings there are now differ from the ones the archive holds (`None`:
    /// no archive, or no ServiceMapping CRD to compare with). Nonzero before the module is
    /// disabled: run `rollback --prepare` first.
    pub service_mappings_differ: Option<MappingsDrift>,
    /// Why it could not be read.
    pub error: Option<String>,
}

/// ServiceMappings created, changed or deleted since the archive was written (or last prepared).
#[derive(Debug, Default, Clone, PartialEq, Eq, Serialize)]
pub struct MappingsDrift {
    pub created: usize,
    pub changed: usize,
    pub deleted: usize,
}

impl MappingsDrift {
    pub fn total(&self) -> usize {
        self.created + self.changed + self.deleted
    }
}

#[derive(Debug, Serialize)]
pub struct BackupCopy {
    pub name: String,
    pub source_exists: bool,
    pub copy_exists: bool,
    /// Both exist and their data is equal.
    pub copy_matches_source: Option<bool>,
}

#[derive(Debug, Serialize)]
pub struct ServiceMappings {
    pub total: usize,
    pub adopted: usize,
    pub crd_adopted: bool,
    /// How many the module's ServiceMapping schema refuses (in the tenant mode the CR has or
    /// migrate gives it): once the module runs, a write that changes a refused field fails.
    pub refused_by_module_schema: usize,
    /// How many it refuses in each tenant mode, until the mode is known.
    #[serde(skip)]
    pub(crate) refused: RefusedCount,
    /// Each mapping's content (as the archive keeps it), as a digest, by namespace and name:
    /// compared with the archive, never shown.
    #[serde(skip)]
    pub(crate) digests: BTreeMap<(Option<String>, String), u64>,
}

#[derive(Debug, Serialize)]
pub struct Operator {
    pub replicas: i32,
    pub ready_replicas: i32,
    pub ready: bool,
}
