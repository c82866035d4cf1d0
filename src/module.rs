//! The module's operator as the migration must expect it (docs/operator.md): the
//! CRDs it needs to start, the objects at its names that would stop it, the state it reports on
//! the CR, and the ServiceMapping schema it applies over the CRD that clean adopted.

use std::sync::OnceLock;

use futures::{StreamExt, TryStreamExt, stream};
use k8s_openapi::api::apps::v1::{Deployment, StatefulSet};
use kube::api::{Api, DynamicObject};
use kube::core::ObjectMeta;
use kube::{Client, ResourceExt};
use serde::Serialize;
use serde_json::{Value, json};

use crate::configmaps;
use crate::error::Violation;
use crate::error::{Context, Error, Result};
use crate::legacy::{self, LegacyObject, Served};
use crate::names::{self, OPERATOR_OBJECTS, hand_over, operator, service_mappings as sm};
use crate::schema::CrdSchema;
use crate::service_mappings::{self, Listed, is_adopted};

/// The module's own state, as its operator reports it on the CR.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
pub struct ModuleState {
    /// `status.state` of the CR (`Processing`, `Ready`, `Error`), `None` before the operator
    /// wrote one.
    pub state: Option<String>,
    /// `status.observedGeneration`: the generation of the CR that state is about.
    pub observed_generation: Option<i64>,
    /// `metadata.generation` of the CR.
    pub generation: Option<i64>,
}

impl ModuleState {
    /// The state on `cr`.
    pub fn of(cr: &DynamicObject) -> ModuleState {
        let status = cr.data.get("status");
        ModuleState {
            state: status
                .and_then(|s| s.get("state"))
                .and_then(Value::as_str)
                .map(str::to_string),
            observed_generation: status
                .and_then(|s| s.get("observedGeneration"))
                .and_then(Value::as_i64),
            generation: cr.metadata.generation,
        }
    }

    /// `Ready`, for the CR as it is now (`observedGeneration` equal to `generation`).
    pub fn is_ready(&self) -> bool {
        self.is(operator::STATE_READY) && self.is_current()
    }

    pub fn is_error(&self) -> bool {
        self.is(operator::STATE_ERROR)
    }

    /// Whether the state is about the CR's current generation.
    pub fn is_current(&self) -> bool {
        self.observed_generation.is_some() && self.observed_generation == self.generation
    }

    fn is(&self, state: &str) -> bool {
        self.state.as_deref() == Some(state)
    }
}

// ---------------------------------------------------------------------------------------------
// What the operator needs to start

/// The CRDs of [`operator::PREREQUISITE_CRDS`] that `served` lacks. Without `with_own`, the CR's
/// own CRD is left out: before the module is enabled it is missing, and the module brings it.
pub fn prerequisites_missing(served: &Served, with_own: bool) -> Vec<String> {
    operator::PREREQUISITE_CRDS
        .into_iter()
        .filter(|crd| with_own || *crd != names::cr::CRD_NAME)
        .filter(|crd| !served.serves(crd))
        .map(str::to_string)
        .collect()
}

/// Why clean refuses while `missing` CRDs are not served (the reason of its gate).
pub fn prerequisites_refusal(missing: &[String]) -> String {
    format!(
        "the module's operator does not start while {} {} not served, and nothing would replace \
         the legacy Connectivity Proxy; nothing was written. Install {}, or, for an operator \
         build that needs fewer, run with --skip-operator-prerequisites \
         (CP_MIGRATOR_SKIP_OPERATOR_PREREQUISITES=true)",
        crds(missing),
        if missing.len() == 1 { "is" } else { "are" },
        if missing.len() == 1 { "it" } else { "them" },
    )
}

/// `CustomResourceDefinition a` or `CustomResourceDefinitions a, b`.
fn crds(names: &[String]) -> String {
    format!(
        "CustomResourceDefinition{} {}",
        if names.len() == 1 { "" } else { "s" },
        names.join(", ")
    )
}

// ---------------------------------------------------------------------------------------------
// What the operator reads on every reconcile

/// Whether the operator reads the shoot's ConfigMap for a CR of this `spec`: it does while the
/// CR asks it to provision both the ingress TLS Secret's name and the tunnel's external host
/// (its source reads the domain only then, not for `externalHost` alone).
pub fn reads_shoot_info(spec: Option<&Value>) -> bool {
    let auto = |path: &[&str]| {
        spec.and_then(|s| path.iter().try_fold(s, |v, key| v.get(*key)))
            .and_then(Value::as_str)
            == Some(hand_over::AUTO_PROVISION)
    };
    auto(&hand_over::TLS_SECRET_NAME) && auto(&operator::EXTERNAL_HOST)
}

/// `ConfigMap kube-system/shoot-info`.
pub fn shoot_info_display() -> String {
    format!(
        "ConfigMap {}/{}",
        operator::SHOOT_INFO_NAMESPACE,
        operator::SHOOT_INFO
    )
}

/// Whether the operator would fail every reconcile of a CR of `spec` for want of the shoot's
/// ConfigMap or of its key `domain`: what is missing, named, or `None`.
pub async fn shoot_info_missing(client: &Client, spec: Option<&Value>) -> Result<Option<String>> {
    if !reads_shoot_info(spec) {
        return Ok(None);
    }
    let found =
        configmaps::get(client, operator::SHOOT_INFO_NAMESPACE, operator::SHOOT_INFO).await?;
    let has_domain = found
        .as_ref()
        .and_then(|cm| cm.data.as_ref())
        .and_then(|d| d.get(operator::SHOOT_INFO_DOMAIN_KEY))
        .is_some_and(|d| !d.is_empty());
    Ok(match (found, has_domain) {
        (_, true) => None,
        (None, _) => Some(format!("{} does not exist", shoot_info_display())),
        (Some(_), false) => Some(format!(
            "{} has no key {}",
            shoot_info_display(),
            operator::SHOOT_INFO_DOMAIN_KEY
        )),
    })
}

/// Why the module would stay in `Error` while the shoot's ConfigMap is `missing` (as
/// [`shoot_info_missing`] names it).
pub fn shoot_info_message(missing: &str) -> String {
    format!(
        "{missing}: the CR keeps {}: {} with {}: {}, for which the module's operator reads the \
         shoot's domain from its key {}, and without it every reconcile fails (the module stays \
         in Error). Create it as a Gardener shoot has it, or give the CR a tunnel host of its own",
        dotted_spec(&operator::EXTERNAL_HOST),
        hand_over::AUTO_PROVISION,
        dotted_spec(&hand_over::TLS_SECRET_NAME),
        hand_over::AUTO_PROVISION,
        operator::SHOOT_INFO_DOMAIN_KEY,
    )
}

fn dotted_spec(path: &[&str]) -> String {
    format!("spec.{}", path.join("."))
}

// ---------------------------------------------------------------------------------------------
// The legacy Pods its workloads took over

/// How far one of the module's workloads at a legacy workload's name has replaced the Pods it
/// took over with Pods of its own template. Its `Ready` does not say this: the operator counts
/// ready replicas, not updated ones.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Roll {
    /// `Kind namespace/name`.
    pub workload: String,
    /// Replicas of its current template.
    pub replaced: i64,
    pub replicas: i64,
    /// Every Pod runs its current template and is ready, and no other Pod is left.
    pub settled: bool,
}

impl Roll {
    /// `the module's StatefulSet kyma-system/connectivity-proxy has replaced 1 of 2 legacy Pods`.
    pub fn describe(&self) -> String {
        let ready = if self.replaced == self.replicas {
            "; not all of its Pods are ready yet"
        } else {
            ""
        };
        format!(
            "the module's {} has replaced {} of {} legacy Pods{ready}",
            self.workload, self.replaced, self.replicas
        )
    }
}

/// Each of the module's workloads at the names of the legacy ones (which clean hands over with
/// their Pods), as far as it has rolled; one that does not exist (yet) is left out.
pub async fn rolls(client: &Client) -> Result<Vec<Roll>> {
    let workloads = names::LEGACY_OBJECTS
        .iter()
        .filter(|r| [STATEFUL_SET, DEPLOYMENT].contains(&r.kind))
        .flat_map(|r| r.names.iter().map(move |n| (r, *n)));
    let reads = workloads.map(|(row, name)| async move {
        let namespace = row.namespace.unwrap_or(names::KYMA_SYSTEM);
        let display = format!("{} {namespace}/{name}", row.kind);
        let object = if row.kind == STATEFUL_SET {
            Api::<StatefulSet>::namespaced(client.clone(), namespace)
                .get_opt(name)
                .await
                .map(|o| o.map(|o| stateful_set_roll(&o)))
        } else {
            Api::<Deployment>::namespaced(client.clone(), namespace)
                .get_opt(name)
                .await
                .map(|o| o.map(|o| deployment_roll(&o)))
        }
        .context(|| format!("reading {display}"))?;
        Ok::<_, Error>(object.map(|(replaced, replicas, settled)| Roll {
            workload: display,
            replaced,
            replicas,
            settled,
        }))
    });
    Ok(futures::future::try_join_all(reads)
        .await?
        .into_iter()
        .flatten()
        .collect())
}

const STATEFUL_SET: &str = "StatefulSet";
const DEPLOYMENT: &str = "Deployment";

/// (replaced, replicas, settled) of a StatefulSet: settled once its current revision is its
/// update revision for its current generation, with every replica updated, ready, and no other
/// (the controller moves its current revision on as soon as the last Pod is made again, before
/// that Pod is ready: the operator then reports Processing until it is).
fn stateful_set_roll(o: &StatefulSet) -> (i64, i64, bool) {
    let replicas = i64::from(o.spec.as_ref().and_then(|s| s.replicas).unwrap_or(1));
    let Some(status) = &o.status else {
        return (0, replicas, false);
    };
    let replaced = i64::from(status.updated_replicas.unwrap_or(0));
    let settled = status.observed_generation == o.metadata.generation
        && status.current_revision.is_some()
        && status.current_revision == status.update_revision
        && replaced == replicas
        && i64::from(status.replicas) == replicas
        && i64::from(status.ready_replicas.unwrap_or(0)) == replicas;
    (replaced, replicas, settled)
}

/// (replaced, replicas, settled) of a Deployment: settled once every Pod it has is of its
/// current template, as many as it wants, each available.
fn deployment_roll(o: &Deployment) -> (i64, i64, bool) {
    let replicas = i64::from(o.spec.as_ref().and_then(|s| s.replicas).unwrap_or(1));
    let Some(status) = &o.status else {
        return (0, replicas, false);
    };
    let replaced = i64::from(status.updated_replicas.unwrap_or(0));
    let settled = status.observed_generation == o.metadata.generation
        && replaced == replicas
        && i64::from(status.replicas.unwrap_or(0)) == replicas
        && i64::from(status.available_replicas.unwrap_or(0)) == replicas;
    (replaced, replicas, settled)
}

// ---------------------------------------------------------------------------------------------
// Objects at the operator's names

/// Requests in flight at once for the objects at the operator's names (19 on a full table).
const NAMES_CONCURRENCY: usize = 32;

/// An object at one of the operator's names that the operator does not own (no label, or not
/// both annotations): its create there fails with 409 Conflict and the module stays in `Error`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Unowned {
    /// `Kind namespace/name`.
    pub display: String,
    /// Whether clean leaves it (it is not in the legacy table clean deletes): such an object
    /// stops the operator also after a migration.
    pub left_by_clean: bool,
}

/// Reads, as metadata and all at once, every object at the operator's names (kinds the cluster
/// does not serve skipped; the ServiceMapping CRD, which clean adopts, left out), and names, in
/// the operator's order, each that it does not own.
pub async fn unowned_at_names(client: &Client, served: &Served) -> Result<Vec<Unowned>> {
    let (objects, _) = legacy::objects_of(client, served, OPERATOR_OBJECTS);
    let reads: Vec<(LegacyObject, Option<ObjectMeta>)> = stream::iter(
        objects
            .into_iter()
            .filter(|o| !adopted_by_clean(o.row, o.name)),
    )
    .map(|o| async move {
        let meta = o
            .api
            .get_metadata_opt(o.name)
            .await
            .context(|| format!("reading {}", o.display))?;
        Ok::<_, Error>((o, meta.map(|m| m.metadata)))
    })
    .buffered(NAMES_CONCURRENCY)
    .try_collect()
    .await?;
    Ok(reads
        .into_iter()
        .filter(|(_, meta)| meta.as_ref().is_some_and(|m| !is_adopted(m)))
        .map(|(o, _)| Unowned {
            left_by_clean: !legacy::in_legacy_table(o.row, o.name),
            display: o.display,
        })
        .collect())
}

/// Of [`unowned_at_names`], those that clean leaves: each would stop the operator after the
/// migration too.
pub fn blocking(unowned: &[Unowned]) -> Vec<String> {
    unowned
        .iter()
        .filter(|u| u.left_by_clean)
        .map(|u| u.display.clone())
        .collect()
}

/// [`blocking`] of what the cluster holds now.
pub async fn blocking_objects(client: &Client, served: &Served) -> Result<Vec<String>> {
    Ok(blocking(&unowned_at_names(client, served).await?))
}

/// Whether `name` of `row` (a row of the operator's table) is the ServiceMapping CRD, which
/// clean adopts for the operator.
fn adopted_by_clean(row: &names::LegacyObjects, name: &str) -> bool {
    row.kind == "CustomResourceDefinition" && name == sm::CRD_NAME
}

/// Why an object at one of the operator's names stops it: the message beside each one named.
pub fn blocking_message() -> String {
    format!(
        "exists without the module operator's label {}={} and annotations {}={}, {}={}: the \
         operator's create there fails with 409 Conflict and the module stays in Error. Delete \
         it, or give it that label and both annotations for the operator to adopt",
        names::OPERATOR_LABEL,
        names::OPERATOR_LABEL_VALUE,
        sm::PRIMARY_NAME_ANNOTATION,
        names::cr::NAME,
        sm::PRIMARY_NAMESPACE_ANNOTATION,
        names::KYMA_SYSTEM,
    )
}

/// The verdict while objects block the operator: the first one (where the operator stops) and
/// how many more.
pub fn blocked_verdict(blocking: &[String]) -> String {
    let more = match blocking.len() {
        0 | 1 => String::new(),
        n => format!(
            " ({} more object{} likewise)",
            n - 1,
            if n == 2 { "" } else { "s" }
        ),
    };
    format!(
        "the module's operator would stop at {}{more}: it {}",
        blocking.first().map(String::as_str).unwrap_or_default(),
        blocking_message()
    )
}

// ---------------------------------------------------------------------------------------------
// ServiceMappings the operator's schema refuses

/// `internalAddress` as the operator's schema requires it: `host:port`, the port 1–65535 (the
/// pattern word for word, so that the message is the API server's).
const INTERNAL_ADDRESS_PATTERN: &str = r"[^\:]+:([1-9][0-9]{0,3}|[1-5][0-9]{4}|6[0-4][0-9]{3}|65[0-4][0-9]{2}|655[0-2][0-9]|6553[0-5])$";

/// The spec field that the shared tenant mode adds to the required ones.
const SHARED_ONLY_REQUIRED: &str = "spec.subaccountId";

/// The `openAPIV3Schema` the operator applies over the ServiceMapping CRD, in the shared
/// tenant mode (its strictest: `subaccountId` required too). The mappings' `status` is the
/// module's to write, and not judged.
fn module_mapping_schema() -> Value {
    let string = || json!({"type": "string"});
    json!({
        "type": "object",
        "required": ["spec"],
        "properties": {
            "spec": {
                "type": "object",
                "required": ["type", "serviceId", "internalAddress", "subaccountId"],
                "properties": {
                    "type": {"type": "string", "enum": ["RFC", "JDBC", "TCP"]},
                    "subaccountId": string(),
                    "serviceId": string(),
                    "tenantId": string(),
                    "internalAddress": {"type": "string", "pattern": INTERNAL_ADDRESS_PATTERN},
                    "locationIds": {"type": "array", "items": string()},
                },
            },
        },
    })
}

/// The schema of [`module_mapping_schema`], compiled once per process.
fn module_schema() -> Result<&'static CrdSchema> {
    static SCHEMA: OnceLock<CrdSchema> = OnceLock::new();
    if let Some(s) = SCHEMA.get() {
        return Ok(s);
    }
    let compiled = CrdSchema::from_openapi(&module_mapping_schema(), "the module's operator")?;
    Ok(SCHEMA.get_or_init(|| compiled))
}

/// One field of a ServiceMapping that the module's schema refuses.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Refusal {
    /// `ServiceMapping name` (`ServiceMapping namespace/name` for a namespaced CRD).
    pub object: String,
    /// The field, from the object's root: `spec.internalAddress`.
    pub field: String,
    /// Its value, when it has one.
    pub value: Option<Value>,
    /// The API server's message.
    pub message: String,
    /// Refused only in the shared tenant mode (`subaccountId` missing).
    pub shared_only: bool,
}

/// What the module's schema refuses of `mapping`, in either tenant mode.
pub fn refusals(mapping: &DynamicObject) -> Result<Vec<Refusal>> {
    // Its fields besides the metadata, which the schema does not judge; nor `status`.
    let mut judged = mapping.data.clone();
    if let Some(o) = judged.as_object_mut() {
        o.remove("status");
    }
    let Err(violations) = module_schema()?.admit(&judged) else {
        return Ok(Vec::new());
    };
    let object = format!(
        "{} {}{}",
        sm::KIND,
        mapping
            .namespace()
            .map(|n| format!("{n}/"))
            .unwrap_or_default(),
        mapping.name_any()
    );
    Ok(violations
        .into_iter()
        .map(|v| refusal(&object, &judged, v))
        .collect())
}

fn refusal(object: &str, judged: &Value, v: Violation) -> Refusal {
    let required = v.reason == "FieldValueRequired";
    let pointer = format!("/{}", v.field.replace('.', "/"));
    Refusal {
        object: object.to_string(),
        value: (!required)
            .then(|| judged.pointer(&pointer).cloned())
            .flatten(),
        shared_only: required && v.field == SHARED_ONLY_REQUIRED,
        field: v.field,
        message: v.message,
    }
}

/// Whether `tenant_mode` (of a CR's `spec.config`, or of the legacy configuration) is the
/// shared tenant mode, in which the operator's schema requires `subaccountId` too.
pub fn is_shared_tenant(tenant_mode: Option<&Value>) -> bool {
    tenant_mode.and_then(Value::as_str) == Some(operator::SHARED_TENANT)
}

/// The `tenantMode` of a CR's `spec.config`.
pub fn tenant_mode_of(cr: &DynamicObject) -> Option<&Value> {
    cr.data
        .pointer("/spec/config")
        .and_then(|c| c.get(names::TENANT_MODE_FIELD))
}

/// How many ServiceMappings the module's schema refuses, in each tenant mode.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct RefusedCount {
    /// Refused in the dedicated tenant mode.
    pub dedicated: usize,
    /// Refused in the shared tenant mode (the dedicated ones among them).
    pub shared: usize,
}

impl RefusedCount {
    /// Counts one mapping with what the schema refuses of it ([`refusals`]).
    pub fn add(&mut self, refused: &[Refusal]) {
        self.shared += usize::from(!refused.is_empty());
        self.dedicated += usize::from(refused.iter().any(|r| !r.shared_only));
    }

    /// How many are refused in the given tenant mode.
    pub fn in_mode(&self, shared: bool) -> usize {
        if shared { self.shared } else { self.dedicated }
    }
}

/// Every ServiceMapping, judged: how many, how many the module's schema refuses in each tenant
/// mode, and each refused field.
#[derive(Debug, Default)]
pub struct JudgedMappings {
    pub total: usize,
    pub refused: RefusedCount,
    pub refusals: Vec<Refusal>,
}

impl JudgedMappings {
    /// The refused fields of the given tenant mode.
    pub fn refusals_in(&self, shared: bool) -> impl Iterator<Item = &Refusal> {
        self.refusals
            .iter()
            .filter(move |r| shared || !r.shared_only)
    }

    fn count(&mut self, page: &[DynamicObject]) -> Result<()> {
        for m in page {
            let refused = refusals(m)?;
            self.total += 1;
            self.refused.add(&refused);
            self.refusals.extend(refused);
        }
        Ok(())
    }
}

/// Lists every ServiceMapping, a page at a time, and judges each against the module's schema;
/// `None` when their CRD is not installed or serves no version.
pub async fn judge_mappings(client: &Client) -> Result<Option<JudgedMappings>> {
    let Some(crd) = service_mappings::crd(client).await? else {
        return Ok(None);
    };
    let Some(ar) = service_mappings::resource(&crd) else {
        return Ok(None);
    };
    let mut judged = JudgedMappings::default();
    let mut failed = None;
    service_mappings::list(client, &ar, |listed| match listed {
        Listed::Restart => judged = JudgedMappings::default(),
        Listed::Page(page) => {
            if let Err(e) = judged.count(&page) {
                failed.get_or_insert(e);
            }
        }
    })
    .await?;
    match failed {
        Some(e) => Err(e),
        None => Ok(Some(judged)),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn mapping(spec: Value) -> DynamicObject {
        serde_json::from_value(json!({
            "apiVersion": "connectivityproxy.sap.com/v1",
            "kind": "ServiceMapping",
            "metadata": {"name": "sm-x"},
            "spec": spec,
            "status": {"anything": 1},
        }))
        .expect("mapping")
    }

    fn fields(spec: Value) -> Vec<(String, Option<Value>, bool)> {
        refusals(&mapping(spec))
            .expect("judged")
            .into_iter()
            .map(|r| (r.field, r.value, r.shared_only))
            .collect()
    }

    #[test]
    fn a_complete_mapping_passes_in_both_modes() {
        for address in [
            "erp.onprem.example:3300",
            "10.0.0.1:1",
            "h:65535",
            "a:b:443",
        ] {
            assert_eq!(
                fields(json!({"type": "TCP", "serviceId": "s", "subaccountId": "a",
                              "internalAddress": address, "locationIds": ["l"]})),
                vec![],
                "{address}"
            );
        }
    }

    #[test]
    fn type_address_and_required_fields_are_refused_with_their_values() {
        assert_eq!(
            fields(
                json!({"type": "HTTP", "serviceId": "s", "subaccountId": "a",
                          "internalAddress": "host"})
            ),
            vec![
                ("spec.internalAddress".into(), Some(json!("host")), false),
                ("spec.type".into(), Some(json!("HTTP")), false),
            ]
        );
        for port in ["0", "65536", "080", "x", ""] {
            let found = fields(json!({"type": "RFC", "serviceId": "s", "subaccountId": "a",
                                      "internalAddress": format!("h:{port}")}));
            assert_eq!(found.len(), 1, "{port}: {found:?}");
            assert_eq!(found[0].0, "spec.internalAddress");
        }
        assert_eq!(
            fields(json!({"type": "JDBC"})),
            vec![
                ("spec.internalAddress".into(), None, false),
                ("spec.serviceId".into(), None, false),
                ("spec.subaccountId".into(), None, true),
            ]
        );
    }

    #[test]
    fn a_mapping_without_spec_is_refused() {
        let mut m = mapping(json!({}));
        m.data.as_object_mut().expect("object").remove("spec");
        let found = refusals(&m).expect("judged");
        assert_eq!(found.len(), 1, "{found:?}");
        assert_eq!(found[0].field, "spec");
        assert_eq!(found[0].object, "ServiceMapping sm-x");
    }

    #[test]
    fn the_module_state_is_ready_only_for_the_current_generation() {
        let cr = |status: Value, generation: i64| -> DynamicObject {
            serde_json::from_value(json!({
                "apiVersion": "connectivityproxy.sap.com/v1", "kind": "ConnectivityProxy",
                "metadata": {"name": "connectivity-proxy", "generation": generation},
                "status": status,
            }))
            .expect("cr")
        };
        assert!(
            ModuleState::of(&cr(json!({"state": "Ready", "observedGeneration": 2}), 2)).is_ready()
        );
        assert!(
            !ModuleState::of(&cr(json!({"state": "Ready", "observedGeneration": 1}), 2)).is_ready()
        );
        assert!(!ModuleState::of(&cr(json!({"state": "Ready"}), 2)).is_ready());
        assert!(
            !ModuleState::of(&cr(
                json!({"state": "Processing", "observedGeneration": 2}),
                2
            ))
            .is_ready()
        );
        assert!(
            ModuleState::of(&cr(json!({"state": "Error", "observedGeneration": 2}), 2)).is_error()
        );
        assert_eq!(ModuleState::of(&cr(json!(null), 1)).state, None);
    }

    #[test]
    fn clean_leaves_the_operator_names_outside_the_legacy_table_but_the_adopted_crd() {
        let left: Vec<String> = OPERATOR_OBJECTS
            .iter()
            .flat_map(|r| r.names.iter().map(move |n| (r, *n)))
            .filter(|(r, n)| !adopted_by_clean(r, n) && !legacy::in_legacy_table(r, n))
            .map(|(r, n)| format!("{} {n}", r.kind))
            .collect();
        assert!(left.contains(&"ConfigMap connectivity-proxy-region-configurations".to_string()));
        assert!(left.contains(&"Gateway connectivity-proxy-tunnel".to_string()));
        for legacy_or_adopted in [
            "ConfigMap connectivity-proxy",
            "StatefulSet connectivity-proxy",
            "Service connectivity-proxy-tunnel",
            "ClusterRole connectivity-proxy-service-mappings-kyma-system",
            "DestinationRule connectivity-proxy",
            "CustomResourceDefinition servicemappings.connectivityproxy.sap.com",
        ] {
            assert!(
                !left.contains(&legacy_or_adopted.to_string()),
                "{legacy_or_adopted}"
            );
        }
    }
}
