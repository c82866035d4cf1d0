//! The library's error type: every message names the object, the key and the value involved.

use std::time::Duration;

/// One reason the API server would reject a write, as it reports it: the field (dotted, from the
/// object's root, e.g. `spec.config.tenantMode`), the cause's reason and its message.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, serde::Serialize, serde::Deserialize)]
pub struct Violation {
    pub field: String,
    pub reason: String,
    pub message: String,
}

impl std::fmt::Display for Violation {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}: {}", self.field, self.message)
    }
}

/// Where a piece of user configuration came from, for error messages.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Source {
    pub namespace: String,
    pub name: String,
    pub key: Option<String>,
}

impl std::fmt::Display for Source {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "ConfigMap {}/{}", self.namespace, self.name)?;
        if let Some(key) = &self.key {
            write!(f, " key {key:?}")?;
        }
        Ok(())
    }
}

#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error(
        "CustomResourceDefinition {crd} is not installed: the module must be installed before the migration runs"
    )]
    CrdMissing { crd: String },

    #[error(
        "{kind} {namespace}/{name} does not exist: the module's default CR must exist before the migration runs"
    )]
    CrMissing {
        kind: String,
        namespace: String,
        name: String,
    },

    #[error("ConfigMap {namespace}/{name} does not exist")]
    ConfigMapMissing { namespace: String, name: String },

    #[error("{input} is missing")]
    KeyMissing { input: Source },

    #[error("{input}: invalid YAML{}: {message}", at_line(*line, *column))]
    InvalidYaml {
        input: Source,
        line: usize,
        column: usize,
        message: String,
    },

    #[error("{input}: {message}")]
    InvalidConfig { input: Source, message: String },

    #[error("{input}: value {value:?} is not a port (an integer from 1 to 65535)")]
    InvalidPort { input: Source, value: String },

    #[error("{input}: tenantMode {value} is neither \"shared\" nor \"dedicated\"")]
    UnknownTenantMode { input: Source, value: String },

    #[error(
        "the API server would drop or change migrated fields of {object}: {fields}; nothing was written. \
         Extend the CRD, fix the legacy configuration, or accept the loss of exactly these fields with \
         --allow-field-loss=<field> (repeatable)"
    )]
    FieldLoss { object: String, fields: String },

    #[error(
        "the API server rejects the migrated configuration for {object}; nothing was written: {message}"
    )]
    Rejected {
        object: String,
        message: String,
        /// The server's causes, each naming a field (empty when it gave none).
        violations: Vec<Violation>,
    },

    /// check: migrate would fail now; the verdict is the error it would end with.
    #[error("not ready: {verdict}")]
    NotReady { verdict: String },

    #[error("CustomResourceDefinition from {origin} cannot be used for the check: {message}")]
    CrdSchema { origin: String, message: String },

    #[error("refusing to delete the legacy installation: {reason}")]
    CleanGate { reason: String },

    #[error(
        "{object} {change} after the backup check, so it has no verified copy and was not deleted; \
         the next run checks its copy again"
    )]
    ChangedSinceBackupCheck {
        object: String,
        change: &'static str,
    },

    #[error("clean's archive of the legacy installation: {reason}")]
    Archive { reason: String },

    #[error(
        "{object} changed after clean archived it, so the archive does not hold its current state \
         and it was not deleted; the next run archives it again"
    )]
    ChangedSinceArchive { object: String },

    #[error(
        "there is no archive of the legacy installation ({location} does not exist): this cluster \
         was cleaned by an older tool or not cleaned at all. Wait until the Kyma Control Plane has \
         brought the legacy installation back (30 to 60 minutes after the module is disabled), then \
         run `cp-mod-migrator restore`"
    )]
    NoArchive { location: String },

    #[error(
        "refusing to roll back while the module is still installed: {blockers}; nothing was written. \
         Disable the Connectivity Proxy module, wait until it is uninstalled, and run rollback again"
    )]
    RollbackRefused { blockers: String },

    /// rollback without the permissions of its own manifest (asked before anything is written).
    #[error(
        "rollback needs the permissions of {manifest}, and this identity lacks {missing}; nothing \
         was written. Apply {manifest} for the rollback (`kubectl apply -f {manifest}`) and delete \
         it right after (`kubectl delete -f {manifest}`): it amounts to cluster-admin"
    )]
    RollbackNotPermitted {
        missing: String,
        manifest: &'static str,
    },

    /// clean --hand-over or finish without the permissions of the hand-over's manifest (asked
    /// before anything is written).
    #[error(
        "{command} needs the permissions of {manifest}, and this identity lacks {missing}; nothing \
         was written. Apply {manifest} beside deploy/rbac.yaml (`kubectl apply -f {manifest}`) \
         while the hand-over is used"
    )]
    HandOverNotPermitted {
        command: &'static str,
        missing: String,
        manifest: &'static str,
    },

    #[error("{object} does not hold what rollback wrote after writing it: {difference}")]
    RollbackMismatch { object: String, difference: String },

    #[error("backup copy {copy} does not match its source {source_object} after writing it")]
    BackupMismatch { copy: String, source_object: String },

    #[error(
        "{object} changed concurrently {attempts} times in a row until the deadline; the next run tries again"
    )]
    TooManyConflicts { object: String, attempts: u32 },

    #[error("{action}: {source}")]
    Kube {
        action: String,
        #[source]
        source: kube::Error,
    },

    #[error("{action}: no answer from the API server within the deadline of {deadline:?}")]
    Deadline { action: String, deadline: Duration },

    /// A step of `run` failed; the steps after it did not run.
    #[error("{step} failed (the steps after it did not run): {source}")]
    InStep {
        step: &'static str,
        #[source]
        source: Box<Error>,
    },

    /// status of many clusters: some could not be asked (each has its row).
    #[error("{unreachable} of {total} clusters could not be asked: {summary}")]
    FleetUnreachable {
        unreachable: usize,
        total: usize,
        summary: String,
    },

    /// check of many clusters: some are not ready, or could not be asked (each has its row).
    #[error("{not_ready} of {total} clusters not ready: {summary}")]
    FleetNotReady {
        not_ready: usize,
        total: usize,
        summary: String,
    },

    #[error("Kubernetes client configuration: {0}")]
    ClientConfig(String),
}

pub type Result<T, E = Error> = std::result::Result<T, E>;

/// " at line L, column C", or nothing when the parser could not tell (line 0).
fn at_line(line: usize, column: usize) -> String {
    if line == 0 {
        String::new()
    } else {
        format!(" at line {line}, column {column}")
    }
}

/// Attaches what was being done to a Kubernetes client error.
pub trait Context<T> {
    fn context(self, action: impl FnOnce() -> String) -> Result<T>;
}

impl<T> Context<T> for std::result::Result<T, kube::Error> {
    fn context(self, action: impl FnOnce() -> String) -> Result<T> {
        self.map_err(|source| Error::Kube {
            action: action(),
            source,
        })
    }
}

/// True for a 409 from the server: a stale resourceVersion or a failed precondition.
pub fn is_conflict(err: &kube::Error) -> bool {
    matches!(err, kube::Error::Api(s) if s.code == 409 && s.reason == "Conflict")
}

pub fn is_not_found(err: &kube::Error) -> bool {
    matches!(err, kube::Error::Api(s) if s.code == 404)
}

pub fn is_already_exists(err: &kube::Error) -> bool {
    matches!(err, kube::Error::Api(s) if s.code == 409 && s.reason == "AlreadyExists")
}

impl Error {
    /// The message, its root cause when the message does not show it yet, and the retries it
    /// survived: the closing line's reason and the container's termination message.
    pub fn describe(&self, retries: u64) -> String {
        let mut msg = self.to_string();
        let mut root: &dyn std::error::Error = self;
        while let Some(next) = root.source() {
            root = next;
        }
        let root = root.to_string();
        if !msg.contains(&root) {
            msg = format!("{msg}: {root}");
        }
        if retries > 0 {
            msg.push_str(&format!(
                " (after {retries} retries of transient API failures)"
            ));
        }
        msg
    }

    /// The API server answered and refused: the credentials (401) or the permission (403).
    pub fn is_refusal(&self) -> bool {
        match self {
            Error::Kube {
                source: kube::Error::Api(s),
                ..
            } => s.code == 401 || s.code == 403,
            Error::InStep { source, .. } => source.is_refusal(),
            _ => false,
        }
    }
}
