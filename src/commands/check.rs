//! check: whether migrate would succeed on this cluster now, why not, and what it would write.
//! It writes nothing: the legacy input is read and validated by migrate's own functions, and the
//! new spec is judged by the API server (a server-side dry run of migrate's own write) where the
//! CR exists, otherwise offline against the CRD's schema (see `crate::schema`).

use std::sync::Arc;

use k8s_openapi::apiextensions_apiserver::pkg::apis::apiextensions::v1::CustomResourceDefinition;
use kube::Client;
use kube::api::{Api, DynamicObject};
use serde::{Deserialize, Serialize};
use serde_json::Value;

use super::Outcome;

use crate::cr::{self, Lookup};
use crate::error::Violation;
use crate::error::{Context, Error, Result, Source};
use crate::hand_over::{self, Derived, Disposition};
use crate::legacy::{self, LegacyInstall, Served};
use crate::migration;
use crate::module::{self, JudgedMappings};
use crate::names::{self, config_maps};
use crate::schema::{self, CrdSchema};
use crate::step::Step;
use crate::translate::{self, Lost};

/// The answer for one cluster. Serializable, so that many clusters' answers can be gathered.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct CheckReport {
    /// Whether migrate would succeed now (or has nothing to do).
    pub ready: bool,
    /// Why it is ready; or, when not, the error migrate would end with, word for word.
    pub verdict: String,
    /// The legacy installation, if the reconciler's StatefulSet is there.
    pub legacy_installation: Option<LegacyVersion>,
    /// How the new spec was judged; absent when there was nothing to judge.
    pub validation: Option<Validation>,
    /// Each problem, naming the object, the key and the value; empty when ready.
    pub reasons: Vec<Reason>,
    /// Lost fields the user accepted with --allow-field-loss.
    pub accepted_losses: Vec<Reason>,
    /// What migrate would write, when ready and there is something to migrate.
    pub would_write: Option<WouldWrite>,
    /// What the reader should know about how the answer was reached.
    pub notes: Vec<String>,
    /// What does not stop the migration but fails later: each field of an existing
    /// ServiceMapping that the module's ServiceMapping schema refuses (once the module runs, a
    /// write that changes that field fails; for a missing required field, any change of the
    /// spec), shaped like `reasons` (`key`: the field from the object's root).
    #[serde(default)]
    pub warnings: Vec<Reason>,
    /// What `clean --hand-over` would delete (or orphan, for a workload) instead of handing it
    /// over to the module's operator, each with why; judged while the legacy installation is
    /// there. It does not change `ready`: clean deletes these and the operator makes its own.
    #[serde(default)]
    pub not_handed_over: Vec<Reason>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct LegacyVersion {
    /// The StatefulSet's `chart` label, e.g. `connectivity-proxy-2.9.3`.
    pub chart: Option<String>,
    /// Whether that is the version this tool was made for (others are migrated the same way).
    pub expected_version: bool,
}

impl From<&LegacyInstall> for LegacyVersion {
    fn from(l: &LegacyInstall) -> Self {
        LegacyVersion {
            chart: l.chart.clone(),
            expected_version: l.is_expected_version(),
        }
    }
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Validation {
    pub method: Method,
    /// Whose CRD: `cluster`, `built-in`, or the file given with --crd.
    pub crd: String,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum Method {
    /// A server-side dry run of migrate's write.
    ServerDryRun,
    /// The CRD's schema applied by this tool.
    Offline,
}

/// One problem.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Reason {
    /// `ConfigMap kyma-system/connectivity-proxy-info`, or the CR for a field of the new spec.
    pub object: String,
    /// The ConfigMap's key, or the field below the CR's `spec` as migrate names it
    /// (`config.servers.proxy.http.port`).
    pub key: Option<String>,
    /// The offending value, when there is one.
    pub value: Option<Value>,
    pub message: String,
    /// For a field of the new spec: where in the legacy configuration it comes from.
    pub origin: Option<Origin>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Origin {
    pub object: String,
    pub key: String,
    /// The field within the configuration document, when it comes from one.
    pub field: Option<String>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct WouldWrite {
    pub object: String,
    /// migrate's own summary line.
    pub summary: String,
    /// What changes in `spec.config`, one field a line, as `migrate --dry-run` prints it.
    pub changes: Vec<String>,
    /// Fields of `spec.config` that stay as they are.
    pub unchanged_fields: usize,
    /// The new `spec.config`.
    pub spec_config: Value,
    /// `spec.secretConfig.integration.connectivityService.secretName`, when migrate sets it.
    pub secret_name: Option<String>,
}

/// What check needs besides the cluster.
#[derive(Debug, Clone, Default)]
pub struct CheckOptions {
    /// A CRD to judge against offline instead of the cluster (from --crd).
    pub crd: Option<Arc<CrdSchema>>,
    /// As migrate's --allow-field-loss.
    pub allow_field_loss: Vec<String>,
    /// As clean's --skip-operator-prerequisites: the CRDs the module's operator needs are not
    /// judged.
    pub skip_operator_prerequisites: bool,
}

impl CheckOptions {
    /// The options of the command line: the CRD of `--crd`, read once (for every cluster).
    pub fn new(
        crd_file: Option<&std::path::Path>,
        allow_field_loss: &[String],
        skip_operator_prerequisites: bool,
    ) -> Result<Self> {
        let crd = match crd_file {
            Some(path) => {
                let origin = path.display().to_string();
                let text = std::fs::read_to_string(path).map_err(|e| Error::CrdSchema {
                    origin: origin.clone(),
                    message: e.to_string(),
                })?;
                Some(Arc::new(CrdSchema::from_yaml(&text, &origin)?))
            }
            None => None,
        };
        Ok(CheckOptions {
            crd,
            allow_field_loss: allow_field_loss.to_vec(),
            skip_operator_prerequisites,
        })
    }
}

/// How many conflicting dry runs (the CR changed under it) before giving up.
const MAX_CONFLICTS: u32 = 5;

/// Checks one cluster. `Err` only when the cluster could not be asked (or --crd is unusable):
/// a configuration migrate would refuse is an `Ok` report that is not ready. Besides migrate's
/// verdict: whether clean would refuse for lack of a CRD the module's operator needs, and
/// whether an object at one of the operator's names would stop it (either makes it not
/// ready); and the ServiceMappings the module's schema refuses (warnings).
pub async fn check(client: &Client, options: &CheckOptions) -> Result<CheckReport> {
    let (lookup, install) = futures::try_join!(cr::lookup(client), legacy::detect(client))?;
    let found = match &lookup {
        Lookup::Found(cr) => Some(cr.as_ref()),
        _ => None,
    };
    let cleaned = found.is_some_and(|cr| cr::marked(cr, Step::Clean).is_some());
    let cr_tenant_mode = found.and_then(module::tenant_mode_of).cloned();
    let cr_spec = found.and_then(|cr| cr.data.get("spec")).cloned();
    let migrated = found.is_some_and(|cr| cr::marked(cr, Step::Migrate).is_some());
    let legacy_present = install.is_some();
    // Clean has the legacy installation still to remove: it needs the operator's CRDs served.
    let judge_prerequisites = install.is_some() && !cleaned && !options.skip_operator_prerequisites;
    let (mut report, mut found) = futures::try_join!(
        check_migrate(client, options, lookup, install),
        inspect_module(client)
    )?;
    // The spec the operator will read is known once migrate would write it, or has written it.
    if judge_prerequisites && (report.would_write.is_some() || migrated) {
        let spec = spec_after_migrate(cr_spec.clone(), report.would_write.as_ref());
        found.shoot_info_missing = module::shoot_info_missing(client, Some(&spec)).await?;
    }
    if legacy_present && !cleaned {
        let spec = spec_after_migrate(cr_spec, report.would_write.as_ref());
        report.not_handed_over = not_handed_over(client, &found.served, &spec).await?;
    }
    add_module_findings(&mut report, found, judge_prerequisites, cr_tenant_mode);
    Ok(report)
}

/// The legacy objects that `clean --hand-over` would delete or orphan instead of handing over,
/// judged as clean judges them (`hand_over::disposition`) from the objects as they are now.
async fn not_handed_over(client: &Client, served: &Served, spec: &Value) -> Result<Vec<Reason>> {
    let derived = Derived::of(Some(spec));
    let (objects, _) = legacy::objects_of(client, served, names::LEGACY_OBJECTS);
    let judged = objects.into_iter().filter(|o| {
        hand_over::at_operator_name(o.row, o.name) || hand_over::left_for_finish(o.row, o.name)
    });
    let read = legacy::read_each(judged, |_| true).await?;
    Ok(read
        .into_iter()
        .filter_map(|(o, read)| {
            let object = serde_json::to_value(read?).ok()?;
            let message = match hand_over::disposition(o.row, o.name, &object, &derived) {
                Disposition::Delete(Some(why)) => format!("deleted: {why}"),
                Disposition::Orphan(why) => format!(
                    "deleted with its Pods orphaned, for the operator's workload to adopt: {why}"
                ),
                _ => return None,
            };
            Some(Reason {
                object: o.display,
                key: None,
                value: None,
                message,
                origin: None,
            })
        })
        .collect())
}

/// The CR's spec as the operator will read it after migrate: the CR's own (without a CR, the
/// module's default, which provisions the ingress TLS Secret itself), with the `spec.config`
/// that migrate would write.
fn spec_after_migrate(cr_spec: Option<Value>, would_write: Option<&WouldWrite>) -> Value {
    let mut spec = cr_spec.unwrap_or_else(|| {
        serde_json::json!({"ingress": {"tls": {"secretName": names::hand_over::AUTO_PROVISION}},
            "config": {"servers": {"businessDataTunnel":
                {"externalHost": names::hand_over::AUTO_PROVISION}}}})
    });
    if let (Some(w), Some(object)) = (would_write, spec.as_object_mut()) {
        object.insert("config".into(), w.spec_config.clone());
    }
    spec
}

/// What check learns of the module's side: what the cluster serves, the objects at the
/// operator's names, and every ServiceMapping judged against the module's schema.
struct ModuleFindings {
    served: Served,
    blocking: Vec<String>,
    mappings: Option<JudgedMappings>,
    /// The shoot's ConfigMap the operator would read for the migrated CR, when it is missing.
    shoot_info_missing: Option<String>,
}

async fn inspect_module(client: &Client) -> Result<ModuleFindings> {
    let names = async {
        let served = legacy::discover(client).await?;
        let blocking = module::blocking_objects(client, &served).await?;
        Ok::<_, Error>((served, blocking))
    };
    let ((served, blocking), mappings) = futures::try_join!(names, module::judge_mappings(client))?;
    Ok(ModuleFindings {
        served,
        blocking,
        mappings,
        shoot_info_missing: None,
    })
}

/// Adds what stops the module (not ready) and what the module's schema refuses (warnings) to
/// migrate's report. A verdict of migrate's that is not ready stays the verdict.
fn add_module_findings(
    report: &mut CheckReport,
    found: ModuleFindings,
    judge_prerequisites: bool,
    cr_tenant_mode: Option<Value>,
) {
    let missing = if judge_prerequisites {
        module::prerequisites_missing(&found.served, false)
    } else {
        Vec::new()
    };
    let shoot_info = found
        .shoot_info_missing
        .as_deref()
        .map(module::shoot_info_message);
    let stops = module_stops(&missing, shoot_info.as_deref(), &found.blocking);
    if !stops.is_empty() && report.ready {
        report.ready = false;
        report.verdict = match (missing.is_empty(), &shoot_info) {
            (false, _) => Error::CleanGate {
                reason: module::prerequisites_refusal(&missing),
            }
            .to_string(),
            (true, Some(message)) => format!("clean would refuse: {message}"),
            (true, None) => module::blocked_verdict(&found.blocking),
        };
    }
    report.reasons.extend(stops);
    if let Some(mappings) = found.mappings {
        add_mapping_warnings(report, &mappings, cr_tenant_mode);
    }
}

/// One reason for each thing that stops the module: a CRD its operator needs and the cluster
/// does not serve, the shoot's ConfigMap it would read, an object at one of its names.
fn module_stops(missing: &[String], shoot_info: Option<&str>, blocking: &[String]) -> Vec<Reason> {
    let reason = |object: String, key: Option<String>, message: String| Reason {
        object,
        key,
        value: None,
        message,
        origin: None,
    };
    let mut stops: Vec<Reason> = missing
        .iter()
        .map(|crd| {
            reason(
                format!("CustomResourceDefinition {crd}"),
                None,
                "not served: the module's operator does not start without it, so clean \
                 refuses to delete the legacy installation"
                    .into(),
            )
        })
        .collect();
    stops.extend(shoot_info.map(|message| {
        reason(
            module::shoot_info_display(),
            Some(names::operator::SHOOT_INFO_DOMAIN_KEY.into()),
            message.to_string(),
        )
    }));
    stops.extend(
        blocking
            .iter()
            .map(|object| reason(object.clone(), None, module::blocking_message())),
    );
    stops
}

/// The ServiceMappings the module's schema refuses in the tenant mode the CR will have: a note
/// with how many, and each field as a warning.
fn add_mapping_warnings(
    report: &mut CheckReport,
    mappings: &JudgedMappings,
    cr_tenant_mode: Option<Value>,
) {
    // The tenant mode the CR will have: what migrate would write, else the CR's own.
    let tenant_mode = report
        .would_write
        .as_ref()
        .and_then(|w| w.spec_config.get(names::TENANT_MODE_FIELD).cloned())
        .or(cr_tenant_mode);
    let shared = module::is_shared_tenant(tenant_mode.as_ref());
    let refused = mappings.refused.in_mode(shared);
    if refused > 0 {
        report.notes.push(format!(
            "{refused} of {} ServiceMappings would be refused by the module's ServiceMapping \
             schema (tenant mode {}): the migration is not affected (it writes their metadata \
             only), but once the module runs a write that changes a refused field fails (for a \
             missing required field: any change of the spec); each field is named under warnings",
            mappings.total,
            if shared {
                names::TENANT_SHARED
            } else {
                names::TENANT_DEDICATED
            }
        ));
    }
    report.warnings = mappings
        .refusals_in(shared)
        .map(|r| Reason {
            object: r.object.clone(),
            key: Some(r.field.clone()),
            value: r.value.clone(),
            message: r.message.clone(),
            origin: None,
        })
        .collect();
}

/// migrate's side of the check: whether it would succeed, and what it would write. It reads
/// and judges as migrate does: the CR's marker, the legacy installation, its configuration,
/// then the write the server (or the CRD offline) would take, and the fields it would lose.
async fn check_migrate(
    client: &Client,
    options: &CheckOptions,
    lookup: Lookup,
    install: Option<LegacyInstall>,
) -> Result<CheckReport> {
    let mut report = CheckReport {
        ready: true,
        verdict: String::new(),
        legacy_installation: install.as_ref().map(LegacyVersion::from),
        validation: None,
        reasons: Vec::new(),
        accepted_losses: Vec::new(),
        would_write: None,
        notes: Vec::new(),
        warnings: Vec::new(),
        not_handed_over: Vec::new(),
    };
    if let Lookup::Found(current) = &lookup
        && let Some(key) = cr::marked(current, Step::Migrate)
    {
        report.verdict = already_migrated(key);
        return Ok(report);
    }
    let Some(install) = install else {
        report.verdict = format!(
            "nothing to migrate: {}",
            migration::no_legacy_installation()
        );
        return Ok(report);
    };
    migration::warn_on_version(&install);
    let input = match migration::read_legacy_configuration(client).await {
        Ok(input) => input,
        Err(e) if is_input_error(&e) => return Ok(not_ready(report, &e, input_reason(&e))),
        Err(e) => return Err(e),
    };
    let (base, judge) = base_and_judge(client, options, lookup, &mut report.notes).await?;
    report.validation = Some(judge.validation());
    match judge_write(client, &judge, base, &input).await? {
        Judged::AlreadyMigrated(key) => {
            report.verdict = already_migrated(key);
            report.validation = None;
            Ok(report)
        }
        Judged::InputError(e) => Ok(not_ready(report, &e, input_reason(&e))),
        Judged::Rejected(e, desired) => {
            let reasons = rejection_reasons(&e, &desired);
            Ok(not_ready(report, &e, reasons))
        }
        Judged::Admitted(admitted) => Ok(judge_losses(report, options, &input, *admitted)),
    }
}

/// The CR migrate would start from, and how its write is judged: the server's dry run of the
/// cluster's CR, or offline against a CRD (the one given, the cluster's, or the built-in one)
/// when the CR or its CRD does not exist yet.
async fn base_and_judge(
    client: &Client,
    options: &CheckOptions,
    lookup: Lookup,
    notes: &mut Vec<String>,
) -> Result<(DynamicObject, Judge)> {
    let (base, judge) = match (lookup, &options.crd) {
        (Lookup::Found(current), None) => (*current, Judge::Server),
        (Lookup::Found(current), Some(crd)) => (*current, Judge::Offline(crd.clone())),
        (missing, crd) => {
            notes.push(format!(
                "{} does not exist yet: judged as migrate would write it into the module's default CR (built in)",
                cr::display()
            ));
            let judge = match (crd, missing) {
                (Some(crd), _) => Judge::Offline(crd.clone()),
                (None, Lookup::CrMissing) => Judge::Offline(Arc::new(cluster_crd(client).await?)),
                (None, _) => Judge::Offline(built_in_crd()?),
            };
            (default_cr()?, judge)
        }
    };
    if let Judge::Offline(crd) = &judge
        && crd.has_cel_rules
    {
        notes.push(format!(
            "the CRD from {} has CEL rules (x-kubernetes-validations), which an offline check does not evaluate",
            crd.origin
        ));
    }
    Ok((base, judge))
}

/// How the write migrate would make was judged.
enum Judged {
    /// A concurrent migrate marked the CR while check was judging.
    AlreadyMigrated(&'static str),
    /// The legacy configuration cannot become a CR.
    InputError(Error),
    /// The server (or the CRD offline) refuses the CR migrate would write.
    Rejected(Error, Box<DynamicObject>),
    Admitted(Box<Admitted>),
}

/// A write the server would take: the CR it started from, the plan, and the spec it would store.
struct Admitted {
    base: DynamicObject,
    plan: translate::Plan,
    stored_spec: Value,
}

/// Judges the CR migrate would write; a conflict of the server's dry run reads the CR again, as
/// migrate would.
async fn judge_write(
    client: &Client,
    judge: &Judge,
    mut base: DynamicObject,
    input: &migration::LegacyInput,
) -> Result<Judged> {
    let mut conflicts = 0;
    loop {
        let (plan, desired) = match migration::desired(&base, input) {
            Ok(prepared) => prepared,
            Err(e) if is_input_error(&e) => return Ok(Judged::InputError(e)),
            Err(e) => return Err(e),
        };
        let admission = match judge {
            Judge::Server => match migration::write(client, &desired, true).await {
                Ok(migration::Replaced::Stored(stored)) => {
                    Ok(stored.data.get("spec").cloned().unwrap_or(Value::Null))
                }
                Ok(migration::Replaced::Conflict(conflict)) => {
                    conflicts += 1;
                    tracing::info!(conflict = %conflict, "the CR changed since it was read; reading it again");
                    if conflicts >= MAX_CONFLICTS {
                        return Err(Error::TooManyConflicts {
                            object: cr::display(),
                            attempts: conflicts,
                        });
                    }
                    base = cr::lookup(client).await?.required()?;
                    // A concurrent migrate may be what changed it.
                    if let Some(key) = cr::marked(&base, Step::Migrate) {
                        return Ok(Judged::AlreadyMigrated(key));
                    }
                    continue;
                }
                // The server's refusal is check's answer; any other failure is check's own.
                Err(e @ Error::Rejected { .. }) => Err(e),
                Err(e) => return Err(e),
            },
            Judge::Offline(crd) => admit_offline(crd, &desired),
        };
        return Ok(match admission {
            Ok(stored_spec) => Judged::Admitted(Box::new(Admitted {
                base,
                plan,
                stored_spec,
            })),
            Err(e) => Judged::Rejected(e, Box::new(desired)),
        });
    }
}

/// The spec the API server would store for `desired`, judged offline against `crd`.
fn admit_offline(crd: &CrdSchema, desired: &DynamicObject) -> Result<Value> {
    let object = serde_json::to_value(desired).unwrap_or(Value::Null);
    crd.admit(&object)
        .map(|stored| stored.get("spec").cloned().unwrap_or(Value::Null))
        .map_err(|violations| Error::Rejected {
            object: cr::display(),
            message: schema::rejection_message(
                &format!("{}.{}", names::cr::KIND, names::cr::GROUP),
                names::cr::NAME,
                &violations,
            ),
            violations,
        })
}

/// Ready unless the server would lose a migrated field the user did not accept; then what
/// migrate would write.
fn judge_losses(
    mut report: CheckReport,
    options: &CheckOptions,
    input: &migration::LegacyInput,
    admitted: Admitted,
) -> CheckReport {
    let Admitted {
        base,
        plan,
        stored_spec,
    } = admitted;
    let (refused, accepted) =
        migration::judge_losses(&plan, &stored_spec, &options.allow_field_loss);
    report.accepted_losses = accepted.iter().map(lost_reason).collect();
    if !refused.is_empty() {
        let reasons = refused.iter().map(lost_reason).collect();
        return not_ready(report, &migration::field_loss(&refused), reasons);
    }
    let accepted: Vec<String> = accepted.iter().map(Lost::to_string).collect();
    let summary = migration::summary(&plan, input.ports, &accepted);
    report.verdict = format!("migrate would write {}: {summary}", cr::display());
    let diff = crate::diff::diff(
        "config",
        base.data.pointer("/spec/config").unwrap_or(&Value::Null),
        &plan.config,
    );
    report.would_write = Some(WouldWrite {
        object: cr::display(),
        summary,
        changes: diff.changes.iter().map(ToString::to_string).collect(),
        unchanged_fields: diff.unchanged,
        spec_config: plan.config.clone(),
        secret_name: plan
            .shared_tenant
            .then(|| names::SHARED_TENANT_SECRET.to_string()),
    });
    report
}

impl CheckReport {
    /// How check ends: done when migrate would succeed, else the verdict as its error.
    pub fn outcome(&self) -> Result<Outcome> {
        if self.ready {
            Ok(Outcome::Done(format!("ready: {}", self.verdict)))
        } else {
            Err(Error::NotReady {
                verdict: self.verdict.clone(),
            })
        }
    }
}

fn already_migrated(key: &str) -> String {
    format!("nothing to migrate: already migrated ({key}=true on the CR)")
}

const BUILT_IN: &str = "built-in";
const CLUSTER: &str = "cluster";

/// Who judges the new spec.
enum Judge {
    Server,
    Offline(Arc<CrdSchema>),
}

impl Judge {
    fn validation(&self) -> Validation {
        match self {
            Judge::Server => Validation {
                method: Method::ServerDryRun,
                crd: CLUSTER.into(),
            },
            Judge::Offline(crd) => Validation {
                method: Method::Offline,
                crd: crd.origin.clone(),
            },
        }
    }
}

/// The CRD the tool was built with, compiled once per process (many clusters share it).
fn built_in_crd() -> Result<Arc<CrdSchema>> {
    static BUILT: std::sync::OnceLock<Arc<CrdSchema>> = std::sync::OnceLock::new();
    if let Some(crd) = BUILT.get() {
        return Ok(crd.clone());
    }
    let crd = Arc::new(CrdSchema::from_yaml(schema::BUILT_IN_CRD, BUILT_IN)?);
    Ok(BUILT.get_or_init(|| crd).clone())
}

/// The module's default CR, as migrate would find it once the module is enabled.
fn default_cr() -> Result<DynamicObject> {
    let bad = |e: String| Error::CrdSchema {
        origin: BUILT_IN.into(),
        message: format!("the built-in default CR is not a ConnectivityProxy: {e}"),
    };
    let value = crate::yaml::manifest(schema::BUILT_IN_CR).map_err(bad)?;
    serde_json::from_value(value).map_err(|e| bad(e.to_string()))
}

/// The cluster's ConnectivityProxy CRD (installed, while its CR is not there yet).
async fn cluster_crd(client: &Client) -> Result<CrdSchema> {
    let crds: Api<CustomResourceDefinition> = Api::all(client.clone());
    let crd = crds
        .get(names::cr::CRD_NAME)
        .await
        .context(|| format!("reading CustomResourceDefinition {}", names::cr::CRD_NAME))?;
    let value = serde_json::to_value(&crd).map_err(|e| Error::CrdSchema {
        origin: CLUSTER.into(),
        message: e.to_string(),
    })?;
    CrdSchema::from_crd(&value, CLUSTER)
}

fn not_ready(mut report: CheckReport, error: &Error, reasons: Vec<Reason>) -> CheckReport {
    report.ready = false;
    report.verdict = error.to_string();
    report.reasons = reasons;
    report
}

/// Errors about the legacy input, which make the cluster not ready (rather than the check failed).
fn is_input_error(e: &Error) -> bool {
    matches!(
        e,
        Error::ConfigMapMissing { .. }
            | Error::KeyMissing { .. }
            | Error::InvalidYaml { .. }
            | Error::InvalidConfig { .. }
            | Error::InvalidPort { .. }
            | Error::UnknownTenantMode { .. }
            | Error::Rejected { .. }
    )
}

fn input_reason(e: &Error) -> Vec<Reason> {
    let from_source = |input: &Source, value: Option<Value>| Reason {
        object: format!("ConfigMap {}/{}", input.namespace, input.name),
        key: input.key.clone(),
        value,
        message: e.to_string(),
        origin: None,
    };
    vec![match e {
        Error::ConfigMapMissing { namespace, name } => Reason {
            object: format!("ConfigMap {namespace}/{name}"),
            key: None,
            value: None,
            message: e.to_string(),
            origin: None,
        },
        Error::KeyMissing { input }
        | Error::InvalidYaml { input, .. }
        | Error::InvalidConfig { input, .. } => from_source(input, None),
        Error::InvalidPort { input, value } => from_source(input, Some(Value::from(value.clone()))),
        Error::UnknownTenantMode { input, value } => from_source(
            input,
            Some(serde_json::from_str(value).unwrap_or_else(|_| Value::from(value.clone()))),
        ),
        _ => Reason {
            object: cr::display(),
            key: None,
            value: None,
            message: e.to_string(),
            origin: None,
        },
    }]
}

/// One reason per field the server (or the offline schema) rejects.
fn rejection_reasons(e: &Error, desired: &DynamicObject) -> Vec<Reason> {
    let Error::Rejected { violations, .. } = e else {
        return input_reason(e);
    };
    if violations.is_empty() {
        return input_reason(e);
    }
    violations
        .iter()
        .map(|v| violation_reason(v, desired))
        .collect()
}

fn violation_reason(v: &Violation, desired: &DynamicObject) -> Reason {
    let below_spec = v.field.strip_prefix("spec.").unwrap_or(&v.field);
    let path: Vec<String> = below_spec.split('.').map(str::to_string).collect();
    let value = desired
        .data
        .get("spec")
        .and_then(|spec| path.iter().try_fold(spec, |cur, k| cur.get(k.as_str())))
        .filter(|_| v.reason != "FieldValueRequired")
        .cloned();
    Reason {
        object: cr::display(),
        key: Some(below_spec.to_string()),
        value,
        message: v.message.clone(),
        origin: origin(&path),
    }
}

fn lost_reason(l: &Lost) -> Reason {
    Reason {
        object: cr::display(),
        key: Some(l.field()),
        value: Some(l.expected.clone()),
        message: match &l.stored {
            None => "dropped".into(),
            Some(s) => format!("would be stored as {s}"),
        },
        origin: origin(&l.path),
    }
}

/// Where a field below the CR's `spec` comes from in the legacy configuration.
fn origin(path: &[String]) -> Option<Origin> {
    let config_document = |field: Option<String>| Origin {
        object: format!("ConfigMap {}/{}", names::KYMA_SYSTEM, config_maps::CONFIG),
        key: config_maps::CONFIG_KEY.into(),
        field,
    };
    match path.split_first() {
        Some((first, rest)) if first == "config" => {
            for (key, parent) in names::PORTS {
                let port_path = parent.iter().copied().chain([names::PORT_FIELD]);
                if rest.iter().map(String::as_str).eq(port_path) {
                    return Some(Origin {
                        object: format!("ConfigMap {}/{}", names::KYMA_SYSTEM, config_maps::INFO),
                        key: key.into(),
                        field: None,
                    });
                }
            }
            (!rest.is_empty()).then(|| config_document(Some(translate::display_path(rest))))
        }
        // The shared-tenant secret name follows from the tenant mode.
        Some((first, _)) if first == names::SECRET_NAME_PATH[0] => {
            Some(config_document(Some(names::TENANT_MODE_FIELD.into())))
        }
        _ => None,
    }
}

/// The report for a person: the verdict and how it was reached, each list of reasons, the
/// notes, then what migrate would write.
pub fn render_text(r: &CheckReport) -> String {
    let mut out = verdict_lines(r);
    list_reasons(&mut out, "reasons", &r.reasons);
    list_reasons(
        &mut out,
        "accepted losses (--allow-field-loss)",
        &r.accepted_losses,
    );
    list_reasons(
        &mut out,
        "warnings (ServiceMappings the module's schema refuses; the migration is not affected)",
        &r.warnings,
    );
    list_reasons(
        &mut out,
        "clean --hand-over would delete, not hand over (the module makes its own)",
        &r.not_handed_over,
    );
    for note in &r.notes {
        out.push_str(&format!("note: {note}\n"));
    }
    if let Some(w) = &r.would_write {
        out.push_str(&would_write_lines(w));
    }
    out
}

/// The head of the text report: the legacy installation, how it was judged, the verdict.
fn verdict_lines(r: &CheckReport) -> String {
    let mut out = String::new();
    let mut line = |k: &str, v: &str| out.push_str(&format!("{k:<21} {v}\n"));
    line(
        "legacy installation",
        &match &r.legacy_installation {
            Some(l) => format!(
                "present ({}{})",
                l.chart.as_deref().unwrap_or("no chart label"),
                if l.expected_version {
                    ""
                } else {
                    "; another version than the one this tool was made for, migrated the same way"
                }
            ),
            None => "absent".into(),
        },
    );
    if let Some(v) = &r.validation {
        line(
            "judged by",
            &match v.method {
                Method::ServerDryRun => {
                    "a server-side dry run of migrate's write (the cluster's CRD)".to_string()
                }
                Method::Offline => format!("the CRD's schema, offline (CRD: {})", v.crd),
            },
        );
    }
    line("verdict", if r.ready { "ready" } else { "not ready" });
    line(if r.ready { "because" } else { "why not" }, &r.verdict);
    out
}

/// A titled list of reasons, at most [`MAX_TEXT_REASONS`] of them; nothing when empty.
fn list_reasons(out: &mut String, title: &str, reasons: &[Reason]) {
    if reasons.is_empty() {
        return;
    }
    out.push_str(&format!("{title}:\n"));
    for reason in reasons.iter().take(MAX_TEXT_REASONS) {
        out.push_str(&format!("  - {}\n", reason_line(reason)));
    }
    if reasons.len() > MAX_TEXT_REASONS {
        out.push_str(&format!(
            "  … and {} more (all of them with -o json)\n",
            reasons.len() - MAX_TEXT_REASONS
        ));
    }
}

/// What migrate would change in `spec.config`, one field a line, and the Secret it would name.
fn would_write_lines(w: &WouldWrite) -> String {
    let mut out = format!("{} spec.config would change as follows:\n", w.object);
    for change in &w.changes {
        out.push_str(&format!("  {change}\n"));
    }
    out.push_str(&format!("  {} fields unchanged\n", w.unchanged_fields));
    if let Some(secret) = &w.secret_name {
        out.push_str(&format!(
            "{} spec.secretConfig.integration.connectivityService.secretName would be {secret}\n",
            w.object
        ));
    }
    out
}

/// Reasons listed in the text output; JSON has all.
const MAX_TEXT_REASONS: usize = 20;

fn reason_line(r: &Reason) -> String {
    let mut s = r.object.clone();
    if let Some(key) = &r.key {
        s.push_str(&format!(" {key}"));
    }
    if let Some(value) = &r.value {
        let mut shown = value.to_string();
        if shown.len() > 80 {
            let mut cut = 77;
            while !shown.is_char_boundary(cut) {
                cut -= 1;
            }
            shown.truncate(cut);
            shown.push('…');
        }
        s.push_str(&format!(" = {shown}"));
    }
    s.push_str(&format!(": {}", r.message));
    if let Some(o) = &r.origin {
        s.push_str(&format!(" (from {} key {:?}", o.object, o.key));
        if let Some(field) = &o.field {
            s.push_str(&format!(" field {field}"));
        }
        s.push(')');
    }
    s
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn origins_name_the_legacy_input() {
        let p = |s: &[&str]| s.iter().map(|x| x.to_string()).collect::<Vec<_>>();
        assert_eq!(
            origin(&p(&["config", "servers", "proxy", "http", "port"])),
            Some(Origin {
                object: "ConfigMap kyma-system/connectivity-proxy-info".into(),
                key: "onpremise_proxy_http_port".into(),
                field: None
            })
        );
        assert_eq!(
            origin(&p(&["config", "servers", "proxy", "http", "colour"])),
            Some(Origin {
                object: "ConfigMap kyma-system/connectivity-proxy".into(),
                key: "connectivity-proxy-config.yml".into(),
                field: Some("servers.proxy.http.colour".into())
            })
        );
        assert_eq!(
            origin(&p(&["secretConfig", "integration"])).and_then(|o| o.field),
            Some("tenantMode".into())
        );
        assert_eq!(origin(&p(&["deployment"])), None);
    }

    #[test]
    fn input_errors_name_object_key_and_value() {
        let e = Error::InvalidPort {
            input: Source {
                namespace: "kyma-system".into(),
                name: "connectivity-proxy-info".into(),
                key: Some("onpremise_proxy_http_port".into()),
            },
            value: "abc".into(),
        };
        let r = &input_reason(&e)[0];
        assert_eq!(r.object, "ConfigMap kyma-system/connectivity-proxy-info");
        assert_eq!(r.key.as_deref(), Some("onpremise_proxy_http_port"));
        assert_eq!(r.value, Some(json!("abc")));
        assert_eq!(r.message, e.to_string());
    }

    #[test]
    fn a_violation_names_the_field_below_spec_and_its_value() {
        let desired: DynamicObject = serde_json::from_value(json!({
            "apiVersion": "connectivityproxy.sap.com/v1", "kind": "ConnectivityProxy",
            "metadata": {"name": "connectivity-proxy"},
            "spec": {"config": {"highAvailabilityMode": "on"}}
        }))
        .expect("object");
        let r = violation_reason(
            &Violation {
                field: "spec.config.highAvailabilityMode".into(),
                reason: "FieldValueInvalid".into(),
                message: "Invalid value: \"on\": …".into(),
            },
            &desired,
        );
        assert_eq!(r.key.as_deref(), Some("config.highAvailabilityMode"));
        assert_eq!(r.value, Some(json!("on")));
        assert_eq!(
            r.origin.and_then(|o| o.field).as_deref(),
            Some("highAvailabilityMode")
        );
    }

    #[test]
    fn the_options_can_be_shared_by_concurrent_checks() {
        fn shareable<T: Send + Sync>(_: &T) {}
        shareable(&CheckOptions {
            crd: Some(built_in_crd().expect("built-in CRD")),
            allow_field_loss: Vec::new(),
            skip_operator_prerequisites: false,
        });
    }

    #[test]
    fn the_built_in_default_cr_is_a_connectivity_proxy() {
        let cr = default_cr().expect("default CR");
        assert_eq!(cr.metadata.name.as_deref(), Some(names::cr::NAME));
        assert!(cr.data.pointer("/spec/config").is_some());
    }

    #[test]
    fn the_report_round_trips_through_json() {
        let report = CheckReport {
            ready: false,
            verdict: "v".into(),
            legacy_installation: Some(LegacyVersion {
                chart: Some("connectivity-proxy-2.9.3".into()),
                expected_version: true,
            }),
            validation: Some(Validation {
                method: Method::ServerDryRun,
                crd: CLUSTER.into(),
            }),
            reasons: vec![lost_reason(&Lost {
                path: vec!["config".into(), "x".into()],
                expected: json!(1),
                stored: None,
            })],
            accepted_losses: Vec::new(),
            would_write: None,
            notes: Vec::new(),
            warnings: Vec::new(),
            not_handed_over: vec![Reason {
                object: "ConfigMap kyma-system/connectivity-proxy-info".into(),
                key: None,
                value: None,
                message: "deleted: immutable".into(),
                origin: None,
            }],
        };
        let text = serde_json::to_string(&report).expect("json");
        assert!(text.contains("\"method\":\"server-dry-run\""), "{text}");
        assert_eq!(
            serde_json::from_str::<CheckReport>(&text).expect("parse"),
            report
        );
        assert!(render_text(&report).contains(
            "ConnectivityProxy kyma-system/connectivity-proxy config.x = 1: dropped (from ConfigMap kyma-system/connectivity-proxy key \"connectivity-proxy-config.yml\" field x)"
        ));
        assert!(
            render_text(&report).contains(
                "not hand over (the module makes its own):\n  - ConfigMap kyma-system/connectivity-proxy-info: deleted: immutable\n"
            ),
            "{}",
            render_text(&report)
        );
    }
}
