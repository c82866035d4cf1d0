//! The Connectivity Proxy module's operator, emulated on the test server from
//! `docs/operator.md` (and its public source where that page is not enough):
//! what enabling the module, its operator's reconcile and disabling the module do to a cluster.
//!
//! Its names are written out here, from that page, and not taken from the crate's own tables:
//! a wrong name in the crate must make a test fail.
//!
//! - [`reconcile`]: the start check (the CRDs it needs), then every object of its table in its
//!   order as a forced server-side apply by `connectivityproxyreconciler`: created only where no
//!   object exists (a `resourceVersion: "1"` guard, so an object it does not own gives the API
//!   server's own 409), adopted where the object carries its label and both annotations;
//!   stopping at the first failure; then the CR's `status.state`.
//! - [`uninstall`]: what disabling the module does: its cleanup deletes every object of its
//!   table that it owns, in reverse order (the ServiceMapping CRD that clean adopted with them,
//!   and so every ServiceMapping), then the CR goes, then the operator Deployment and the CR's
//!   CRD.
//!
//! Where the emulation differs from the real operator, on purpose:
//! - No controller or kubelet runs on a plain test server, so no workload ever becomes ready:
//!   the caller says whether they are ([`Workloads`]); `Ready` by default. On a cluster with the
//!   controllers and a node agent, [`reconcile_until_ready`] reads the workloads' own status.
//! - One call is one reconcile; the real operator retries a failing one (5 attempts) and
//!   reconciles again on every event. Its end state is the same: `Error` until the cause goes.
//! - The ServiceMapping validating webhook configuration is made without its webhook: nothing
//!   serves it here, and with its `failurePolicy: Fail` every ServiceMapping write would be
//!   refused, which a `Ready` module does not do.
//! - Specs are minimal: the names, labels, annotations, selectors and the fields docs/operator.md
//!   names (StatefulSet `podManagementPolicy` and `serviceName`, Service ports, the headless
//!   Service, the ServiceMapping CRD's schema) are the operator's; images, probes, volumes and
//!   environment are left out.

use std::time::{Duration, Instant};

use k8s_openapi::ByteString;
use k8s_openapi::api::core::v1::{ConfigMap, Secret};
use k8s_openapi::apiextensions_apiserver::pkg::apis::apiextensions::v1::CustomResourceDefinition;
use kube::api::{Api, DeleteParams, DynamicObject, ListParams, Patch, PatchParams};
use kube::core::{ApiResource, GroupVersionKind, ObjectMeta};
use kube::{Client, ResourceExt};
use serde_json::{Value, json};

use super::{MODULE, TestCluster, fixture_dir, from_yaml, module, to_yaml};

// ---------------------------------------------------------------------------------------------
// Names (docs/operator.md)

/// Namespace of the CR and of the operator's namespaced objects.
pub const NAMESPACE: &str = "kyma-system";
/// The module's CR.
pub const CR_NAME: &str = "connectivity-proxy";
pub const CR_GROUP: &str = "connectivityproxy.sap.com";
pub const CR_KIND: &str = "ConnectivityProxy";
pub const CR_PLURAL: &str = "connectivityproxies";
pub const CR_CRD: &str = "connectivityproxies.connectivityproxy.sap.com";
/// The CRD the operator makes while service channels are enabled (the legacy one has its name).
pub const SERVICE_MAPPING_CRD: &str = "servicemappings.connectivityproxy.sap.com";
/// Every object of the operator carries this label ...
pub const MANAGED_BY_LABEL: &str = "app.kubernetes.io/managed-by";
pub const MANAGED_BY_VALUE: &str = "sap.connectivity.proxy.operator";
/// ... and these two annotations, naming the CR.
pub const PRIMARY_NAME_ANNOTATION: &str = "io.javaoperatorsdk/primary-name";
pub const PRIMARY_NAMESPACE_ANNOTATION: &str = "io.javaoperatorsdk/primary-namespace";
/// The field manager of its server-side applies.
pub const FIELD_MANAGER: &str = "connectivityproxyreconciler";
/// The finalizer its framework puts on the CR before the first reconcile.
pub const FINALIZER: &str = "connectivityproxies.connectivityproxy.sap.com/finalizer";
/// The operator Deployment that the module installs beside the CR.
pub const OPERATOR_DEPLOYMENT: &str = "connectivity-proxy-operator";
/// The value that asks the operator to provision something itself.
pub const AUTO_PROVISION: &str = "auto-provision";
/// The CR's `status.state`: every workload ready, one not ready yet, a reconcile failed.
pub const STATE_READY: &str = "Ready";
pub const STATE_PROCESSING: &str = "Processing";
pub const STATE_ERROR: &str = "Error";

/// The CRDs without which the operator exits at start, in the order it checks them.
pub const REQUIRED_CRDS: [&str; 9] = [
    CR_CRD,
    "gateways.networking.istio.io",
    "virtualservices.networking.istio.io",
    "destinationrules.networking.istio.io",
    "envoyfilters.networking.istio.io",
    "peerauthentications.security.istio.io",
    "certificates.cert.gardener.cloud",
    "serviceinstances.services.cloud.sap.com",
    "servicebindings.services.cloud.sap.com",
];

/// `host:port` with a port of 1-65535, anchored at the end only: the operator's own pattern,
/// character for character (its CRD spec is compared with the real one's).
pub const INTERNAL_ADDRESS_PATTERN: &str = r"[^\:]+:([1-9][0-9]{0,3}|[1-5][0-9]{4}|6[0-4][0-9]{3}|65[0-4][0-9]{2}|655[0-2][0-9]|6553[0-5])$";

const PROXY: &str = "connectivity-proxy";
const TUNNEL: &str = "connectivity-proxy-tunnel";
const TUNNEL_ZERO: &str = "connectivity-proxy-tunnel-0";
const RESTART_WATCHER: &str = "connectivity-proxy-restart-watcher";
const REGION_CONFIGURATIONS: &str = "connectivity-proxy-region-configurations";
const REGION_CONTROLLER: &str = "connectivity-proxy-region-configurations-controller";
const STARTUP: &str = "connectivity-proxy-startup";
const SM_OPERATOR: &str = "connectivity-proxy-sm-operator";
const SM_VALIDATION: &str = "connectivity-proxy-sm-validation";
const SM_VALIDATION_SERVICE: &str = "connectivity-proxy-smv";
const SM_VALIDATION_WEBHOOK: &str = "connectivity-proxy-sm-validation-webhook";
const SERVICE_MAPPINGS_CONFIG_MAP: &str = "connectivity-proxy-service-mappings";
const CA_SECRET: &str = "connectivity-ca-connectivity-proxy";
const ISTIO_NAMESPACE: &str = "istio-system";
const APP: &str = "app";
const RESTART_LABEL: &str = "connectivityproxy.sap.com/restart";
const SERVICE_KEY_IDENTIFIER_LABEL: &str = "com.sap.connectivityproxy/resource-identifier";
const TUNNEL_PORT: u16 = 8042;

// ---------------------------------------------------------------------------------------------
// Kinds

/// A kind the operator writes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Kind {
    pub group: &'static str,
    pub version: &'static str,
    pub kind: &'static str,
    pub plural: &'static str,
    pub namespaced: bool,
}

impl Kind {
    const fn new(
        group: &'static str,
        version: &'static str,
        kind: &'static str,
        plural: &'static str,
        namespaced: bool,
    ) -> Kind {
        Kind {
            group,
            version,
            kind,
            plural,
            namespaced,
        }
    }

    pub fn resource(&self) -> ApiResource {
        ApiResource::from_gvk_with_plural(
            &GroupVersionKind::gvk(self.group, self.version, self.kind),
            self.plural,
        )
    }
}

const CERTIFICATE: Kind = Kind::new(
    "cert.gardener.cloud",
    "v1alpha1",
    "Certificate",
    "certificates",
    true,
);
const SERVICE_INSTANCE: Kind = Kind::new(
    "services.cloud.sap.com",
    "v1",
    "ServiceInstance",
    "serviceinstances",
    true,
);
const SERVICE_BINDING: Kind = Kind::new(
    "services.cloud.sap.com",
    "v1",
    "ServiceBinding",
    "servicebindings",
    true,
);
const PRIORITY_CLASS: Kind = Kind::new(
    "scheduling.k8s.io",
    "v1",
    "PriorityClass",
    "priorityclasses",
    false,
);
const SERVICE_ACCOUNT: Kind = Kind::new("", "v1", "ServiceAccount", "serviceaccounts", true);
const SECRET: Kind = Kind::new("", "v1", "Secret", "secrets", true);
const CONFIG_MAP: Kind = Kind::new("", "v1", "ConfigMap", "configmaps", true);
const CRD: Kind = Kind::new(
    "apiextensions.k8s.io",
    "v1",
    "CustomResourceDefinition",
    "customresourcedefinitions",
    false,
);
const WEBHOOK: Kind = Kind::new(
    "admissionregistration.k8s.io",
    "v1",
    "ValidatingWebhookConfiguration",
    "validatingwebhookconfigurations",
    false,
);
const CLUSTER_ROLE: Kind = Kind::new(
    "rbac.authorization.k8s.io",
    "v1",
    "ClusterRole",
    "clusterroles",
    false,
);
const CLUSTER_ROLE_BINDING: Kind = Kind::new(
    "rbac.authorization.k8s.io",
    "v1",
    "ClusterRoleBinding",
    "clusterrolebindings",
    false,
);
const ROLE: Kind = Kind::new("rbac.authorization.k8s.io", "v1", "Role", "roles", true);
const ROLE_BINDING: Kind = Kind::new(
    "rbac.authorization.k8s.io",
    "v1",
    "RoleBinding",
    "rolebindings",
    true,
);
const SERVICE: Kind = Kind::new("", "v1", "Service", "services", true);
const DEPLOYMENT: Kind = Kind::new("apps", "v1", "Deployment", "deployments", true);
const STATEFUL_SET: Kind = Kind::new("apps", "v1", "StatefulSet", "statefulsets", true);
const DESTINATION_RULE: Kind = Kind::new(
    "networking.istio.io",
    "v1beta1",
    "DestinationRule",
    "destinationrules",
    true,
);
const VIRTUAL_SERVICE: Kind = Kind::new(
    "networking.istio.io",
    "v1beta1",
    "VirtualService",
    "virtualservices",
    true,
);
const GATEWAY: Kind = Kind::new(
    "networking.istio.io",
    "v1beta1",
    "Gateway",
    "gateways",
    true,
);
const PEER_AUTHENTICATION: Kind = Kind::new(
    "security.istio.io",
    "v1beta1",
    "PeerAuthentication",
    "peerauthentications",
    true,
);

// ---------------------------------------------------------------------------------------------
// What one reconcile ends in

/// The result of one [`reconcile`], as the CR's `status.state` says it (or, when the operator
/// does not start, as its exit says it).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Outcome {
    /// Every object applied and every workload ready.
    Ready,
    /// Every object applied, a workload not ready yet.
    Processing,
    /// The reconcile stopped at `object` ("Kind namespace/name", or "Kind name" for a
    /// cluster-scoped one): `code` is the API server's HTTP status where it answered with one.
    Error {
        object: String,
        code: Option<u16>,
        message: String,
    },
    /// The operator exited at start: these CRDs are not served. Nothing was written.
    RefusedToStart { missing_crds: Vec<String> },
}

/// Whether the module's workloads are ready: as the caller says, where no controller runs on
/// the test server to tell, or as their own status says (`TestCluster::with_controllers`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Workloads {
    Ready,
    NotReady,
    /// Ready once every StatefulSet and Deployment the operator made is ready as fabric8's
    /// `isReady()` judges it (ready replicas, not updated ones: see `workloads_ready`).
    Observed,
}

// ---------------------------------------------------------------------------------------------
// The CR as the operator reads it

/// Which values of the CR ask to be provisioned (as the CR says, before they are resolved).
#[derive(Debug, Clone, Copy, Default)]
struct AutoProvision {
    tls_secret_name: bool,
    external_host: bool,
    service_key_secret_name: bool,
    subaccount_id: bool,
    subaccount_subdomain: bool,
}

/// The CR with its `auto-provision` values resolved, as the operator reconciles it.
#[derive(Debug, Clone)]
struct Cr {
    name: String,
    namespace: String,
    generation: Option<i64>,
    /// `spec`, with the provisioned values filled in.
    spec: Value,
    auto: AutoProvision,
}

fn at<'a>(v: &'a Value, path: &[&str]) -> &'a Value {
    path.iter().fold(v, |v, k| &v[*k])
}

fn text<'a>(v: &'a Value, path: &[&str]) -> Option<&'a str> {
    at(v, path).as_str()
}

fn is_auto(v: &Value, path: &[&str]) -> bool {
    text(v, path).is_some_and(|s| s.eq_ignore_ascii_case(AUTO_PROVISION))
}

fn set(v: &mut Value, path: &[&str], value: Value) {
    let (last, parents) = path.split_last().expect("a path");
    let mut node = v;
    for k in parents {
        if !node[*k].is_object() {
            node[*k] = json!({});
        }
        node = &mut node[*k];
    }
    node[*last] = value;
}

const TLS_SECRET_NAME: [&str; 3] = ["ingress", "tls", "secretName"];
const EXTERNAL_HOST: [&str; 4] = ["config", "servers", "businessDataTunnel", "externalHost"];
const EXTERNAL_PORT: [&str; 4] = ["config", "servers", "businessDataTunnel", "externalPort"];
const SERVICE_KEY_SECRET_NAME: [&str; 4] = [
    "secretConfig",
    "integration",
    "connectivityService",
    "secretName",
];
const SERVICE_KEY_SECRET_DATA: [&str; 4] = [
    "secretConfig",
    "integration",
    "connectivityService",
    "secretData",
];
const SERVICE_CREDENTIALS_KEY: [&str; 4] = [
    "config",
    "integration",
    "connectivityService",
    "serviceCredentialsKey",
];
const SUBACCOUNT_ID: [&str; 2] = ["config", "subaccountId"];
const SUBACCOUNT_SUBDOMAIN: [&str; 2] = ["config", "subaccountSubdomain"];

impl Cr {
    /// The CR as read, nothing resolved yet.
    fn read(cr: &Value) -> Cr {
        let spec = cr["spec"].clone();
        let auto = AutoProvision {
            tls_secret_name: is_auto(&spec, &TLS_SECRET_NAME),
            external_host: is_auto(&spec, &EXTERNAL_HOST),
            service_key_secret_name: is_auto(&spec, &SERVICE_KEY_SECRET_NAME),
            subaccount_id: is_auto(&spec, &SUBACCOUNT_ID),
            subaccount_subdomain: is_auto(&spec, &SUBACCOUNT_SUBDOMAIN),
        };
        Cr {
            name: text(cr, &["metadata", "name"]).unwrap_or(CR_NAME).into(),
            namespace: text(cr, &["metadata", "namespace"])
                .unwrap_or(NAMESPACE)
                .into(),
            generation: cr["metadata"]["generation"].as_i64(),
            spec,
            auto,
        }
    }

    fn identifier(&self) -> String {
        format!("{}-{}", self.name, self.namespace)
    }

    fn str(&self, path: &[&str]) -> &str {
        text(&self.spec, path).unwrap_or_default()
    }

    fn flag(&self, path: &[&str]) -> bool {
        at(&self.spec, path).as_bool().unwrap_or(false)
    }

    fn restart_watcher(&self) -> bool {
        self.flag(&["deployment", "restartWatcher", "enabled"])
    }

    fn multi_region(&self) -> bool {
        self.flag(&["config", "multiRegionMode", "enabled"])
    }

    fn service_channels(&self) -> bool {
        self.flag(&["config", "serviceChannels", "enabled"])
    }

    fn istio(&self) -> bool {
        self.str(&["ingress", "className"]) == "istio"
    }

    fn shared_tenant(&self) -> bool {
        self.str(&["config", "tenantMode"]) == "shared"
    }

    fn istio_namespace(&self) -> String {
        text(&self.spec, &["ingress", "istio", "namespace"])
            .unwrap_or(ISTIO_NAMESPACE)
            .into()
    }

    fn tls_secret_name(&self) -> String {
        self.str(&TLS_SECRET_NAME).into()
    }

    fn service_key_secret_name(&self) -> String {
        self.str(&SERVICE_KEY_SECRET_NAME).into()
    }

    fn external_host(&self) -> String {
        self.str(&EXTERNAL_HOST).into()
    }

    fn external_port(&self) -> Value {
        at(&self.spec, &EXTERNAL_PORT).clone()
    }

    fn port(&self, server: &str, default: u16) -> u64 {
        at(&self.spec, &["config", "servers", "proxy", server, "port"])
            .as_u64()
            .unwrap_or(default.into())
    }

    fn priority_class(&self) -> String {
        format!("{PROXY}-{}-priority-class", self.namespace)
    }

    fn rbac_name(&self, base: &str) -> String {
        format!("{base}-{}", self.namespace)
    }

    fn image(&self, which: &str) -> String {
        let image = &self.spec["deployment"][which];
        let part = |k: &str| image[k].as_str().unwrap_or_default().to_string();
        match (part("digest"), part("tag")) {
            (d, _) if !d.is_empty() => format!("{}/{}@{d}", part("registry"), part("repository")),
            (_, t) => format!("{}/{}:{t}", part("registry"), part("repository")),
        }
    }

    fn service_key_secret(&self) -> bool {
        let data = self.str(&SERVICE_KEY_SECRET_DATA);
        !self.auto.service_key_secret_name && !data.trim().is_empty()
    }
}

/// The error of a failed read or write, at `object`.
fn failure(object: String, e: kube::Error) -> Outcome {
    match e {
        kube::Error::Api(s) => Outcome::Error {
            object,
            code: Some(s.code),
            message: s.message.clone(),
        },
        e => Outcome::Error {
            object,
            code: None,
            message: e.to_string(),
        },
    }
}

fn refusal(object: String, message: String) -> Outcome {
    Outcome::Error {
        object,
        code: None,
        message,
    }
}

/// What the operator fills in for `auto-provision` before a reconcile: the TLS secret's name
/// (and the tunnel host from the shoot's domain), the service key Secret's name, and the
/// subaccount from the service key when that Secret exists.
async fn resolve_for_reconcile(client: &Client, cr: &mut Cr) -> Result<(), Outcome> {
    resolve_tls(cr);
    if cr.auto.tls_secret_name && cr.auto.external_host {
        let host = format!("cp.{}", shoot_domain(client).await?);
        set(&mut cr.spec, &EXTERNAL_HOST, json!(host));
    }
    if cr.auto.service_key_secret_name {
        let name = format!("cp-secret-{}", cr.identifier());
        set(&mut cr.spec, &SERVICE_KEY_SECRET_NAME, json!(name));
    }
    if cr.auto.subaccount_id || cr.auto.subaccount_subdomain {
        resolve_subaccount(client, cr).await?;
    }
    Ok(())
}

/// What it fills in before its cleanup: the TLS secret's name only.
fn resolve_tls(cr: &mut Cr) {
    if cr.auto.tls_secret_name {
        let name = format!("cp-tls-{}", cr.identifier());
        set(&mut cr.spec, &TLS_SECRET_NAME, json!(name));
    }
}

async fn shoot_domain(client: &Client) -> Result<String, Outcome> {
    const WHERE: &str = "ConfigMap kube-system/shoot-info";
    let cms: Api<ConfigMap> = Api::namespaced(client.clone(), "kube-system");
    let cm = cms
        .get_opt("shoot-info")
        .await
        .map_err(|e| failure(WHERE.into(), e))?
        .ok_or_else(|| refusal(WHERE.into(), "not found".into()))?;
    cm.data
        .and_then(|d| d.get("domain").cloned())
        .ok_or_else(|| refusal(WHERE.into(), "no key domain".into()))
}

async fn resolve_subaccount(client: &Client, cr: &mut Cr) -> Result<(), Outcome> {
    let name = cr.service_key_secret_name();
    let object = format!("Secret {}/{name}", cr.namespace);
    let secrets: Api<Secret> = Api::namespaced(client.clone(), &cr.namespace);
    let Some(secret) = secrets
        .get_opt(&name)
        .await
        .map_err(|e| failure(object.clone(), e))?
    else {
        return Ok(());
    };
    let key = cr.str(&SERVICE_CREDENTIALS_KEY).to_string();
    let key_data: Value = secret
        .data
        .and_then(|d| d.get(&key).cloned())
        .and_then(|ByteString(bytes)| serde_json::from_slice(&bytes).ok())
        .ok_or_else(|| refusal(object.clone(), format!("no service key (JSON) at {key}")))?;
    for (wanted, path, field) in [
        (cr.auto.subaccount_id, &SUBACCOUNT_ID[..], "subaccount_id"),
        (
            cr.auto.subaccount_subdomain,
            &SUBACCOUNT_SUBDOMAIN[..],
            "subaccount_subdomain",
        ),
    ] {
        if wanted {
            let value = key_data[field]
                .as_str()
                .ok_or_else(|| refusal(object.clone(), format!("no {field} in the service key")))?;
            set(&mut cr.spec, path, json!(value));
        }
    }
    Ok(())
}

// ---------------------------------------------------------------------------------------------
// The table

/// One object of the operator's table, for one CR.
#[derive(Debug, Clone)]
pub struct Dependent {
    pub kind: Kind,
    pub namespace: Option<String>,
    pub name: String,
    /// Whether the operator makes it for this CR; when not, it deletes its own object there.
    pub made: bool,
    /// Created once and never written again (its matcher always says it matches).
    pub created_once: bool,
    /// The object as the operator applies it.
    pub desired: Value,
}

impl Dependent {
    /// "Kind namespace/name", or "Kind name" for a cluster-scoped object.
    pub fn key(&self) -> String {
        match &self.namespace {
            Some(ns) => format!("{} {ns}/{}", self.kind.kind, self.name),
            None => format!("{} {}", self.kind.kind, self.name),
        }
    }

    pub fn api(&self, client: &Client) -> Api<DynamicObject> {
        let ar = self.kind.resource();
        match &self.namespace {
            Some(ns) => Api::namespaced_with(client.clone(), ns, &ar),
            None => Api::all_with(client.clone(), &ar),
        }
    }

    /// Gives the object at its name the operator's label and both annotations, as its own
    /// objects carry them: from its next reconcile on, the operator adopts it.
    pub async fn hand_over(&self, client: &Client) {
        let annotations = &self.desired["metadata"]["annotations"];
        let patch = json!({"metadata": {
            "labels": {MANAGED_BY_LABEL: MANAGED_BY_VALUE},
            "annotations": {
                PRIMARY_NAME_ANNOTATION: annotations[PRIMARY_NAME_ANNOTATION],
                PRIMARY_NAMESPACE_ANNOTATION: annotations[PRIMARY_NAMESPACE_ANNOTATION],
            },
        }});
        self.api(client)
            .patch(&self.name, &PatchParams::default(), &Patch::Merge(&patch))
            .await
            .unwrap_or_else(|e| panic!("hand over {}: {e}", self.key()));
    }

    /// The object at its name, if any (none where its kind is not served).
    pub async fn get(&self, client: &Client) -> Option<DynamicObject> {
        get_opt(&self.api(client), &self.name)
            .await
            .unwrap_or_else(|e| panic!("get {}: {e}", self.key()))
    }
}

/// Builds the table's rows for one CR.
struct Table<'a> {
    cr: &'a Cr,
    rows: Vec<Dependent>,
}

/// How a row is added: in the CR's namespace, in another, or cluster-scoped.
enum Place {
    Own,
    In(String),
    Cluster,
}

impl Table<'_> {
    fn add(&mut self, kind: Kind, place: Place, name: &str, made: bool, body: Value) {
        self.add_with(kind, place, name, made, body, json!({}));
    }

    fn add_with(
        &mut self,
        kind: Kind,
        place: Place,
        name: &str,
        made: bool,
        body: Value,
        extra: Value,
    ) {
        let namespace = match place {
            Place::Own => Some(self.cr.namespace.clone()),
            Place::In(ns) => Some(ns),
            Place::Cluster => None,
        };
        let mut labels = json!({ MANAGED_BY_LABEL: MANAGED_BY_VALUE });
        let mut annotations = json!({
            PRIMARY_NAME_ANNOTATION: self.cr.name,
            PRIMARY_NAMESPACE_ANNOTATION: self.cr.namespace,
        });
        merge(&mut labels, &extra["labels"]);
        merge(&mut annotations, &extra["annotations"]);
        let mut metadata = json!({ "name": name, "labels": labels, "annotations": annotations });
        if let Some(ns) = &namespace {
            metadata["namespace"] = json!(ns);
        }
        let mut desired = json!({
            "apiVersion": kind.resource().api_version,
            "kind": kind.kind,
            "metadata": metadata,
        });
        merge(&mut desired, &body);
        self.rows.push(Dependent {
            kind,
            namespace,
            name: name.into(),
            made,
            created_once: extra["createdOnce"] == json!(true),
            desired,
        });
    }
}

/// The object at `name`, if any; none also where its kind is not served.
async fn get_opt(
    api: &Api<DynamicObject>,
    name: &str,
) -> Result<Option<DynamicObject>, kube::Error> {
    match api.get_opt(name).await {
        Err(kube::Error::Api(s)) if s.code == 404 => Ok(None),
        other => other,
    }
}

fn merge(into: &mut Value, from: &Value) {
    if let (Some(into), Some(from)) = (into.as_object_mut(), from.as_object()) {
        for (k, v) in from {
            into.insert(k.clone(), v.clone());
        }
    }
}

/// The `extra` of a row that is created once and never written again.
fn created_once() -> Value {
    json!({ "createdOnce": true })
}

/// The operator's table for `cr` (resolved), in its order (`ResourceManager`): the forty
/// objects of docs/operator.md, each with whether this CR makes it.
fn dependents(cr: &Cr) -> Vec<Dependent> {
    let mut t = Table {
        cr,
        rows: Vec::new(),
    };
    provisioned(&mut t);
    service_accounts(&mut t);
    secrets(&mut t);
    config_maps(&mut t);
    service_mappings(&mut t);
    rbac(&mut t);
    services(&mut t);
    workloads(&mut t);
    istio(&mut t);
    t.rows
}

/// Gardener certificate, BTP service instance and binding; the PriorityClass.
fn provisioned(t: &mut Table) {
    let cr = t.cr;
    let tls = cr.tls_secret_name();
    let host = cr.external_host();
    t.add(
        CERTIFICATE,
        Place::In(cr.istio_namespace()),
        &tls,
        cr.auto.tls_secret_name,
        json!({"spec": {"commonName": host, "dnsNames": [format!("*.{host}")], "secretName": tls}}),
    );
    let instance = format!("cp-service-instance-{}", cr.identifier());
    let binding = format!("cp-service-binding-{}", cr.identifier());
    let btp = cr.auto.service_key_secret_name;
    t.add(
        SERVICE_INSTANCE,
        Place::Own,
        &instance,
        btp,
        json!({"spec": {"externalName": instance, "serviceOfferingName": "connectivity",
            "servicePlanName": "connectivity_proxy"}}),
    );
    t.add(
        SERVICE_BINDING,
        Place::Own,
        &binding,
        btp,
        json!({"spec": {"externalName": binding, "serviceInstanceName": instance,
            "secretName": cr.service_key_secret_name(),
            "secretKey": cr.str(&SERVICE_CREDENTIALS_KEY)}}),
    );
    t.add(
        PRIORITY_CLASS,
        Place::Cluster,
        &cr.priority_class(),
        true,
        json!({"value": 2000000, "globalDefault": false,
            "description": "Scheduling priority of connectivity-proxy component."}),
    );
}

fn service_accounts(t: &mut Table) {
    let cr = t.cr;
    for (name, made) in [
        (RESTART_WATCHER, cr.restart_watcher()),
        (REGION_CONTROLLER, true),
        (STARTUP, true),
        (SM_OPERATOR, cr.service_channels()),
    ] {
        t.add(SERVICE_ACCOUNT, Place::Own, name, made, json!({}));
    }
}

fn secrets(t: &mut Table) {
    let cr = t.cr;
    t.add_with(
        SECRET,
        Place::Own,
        CA_SECRET,
        true,
        json!({"type": "Opaque", "data": {"ca.crt": ""}}),
        created_once(),
    );
    let key = cr.str(&SERVICE_CREDENTIALS_KEY).to_string();
    t.add_with(
        SECRET,
        Place::Own,
        &cr.service_key_secret_name(),
        cr.service_key_secret(),
        json!({"type": "Opaque", "data": {key: cr.str(&SERVICE_KEY_SECRET_DATA)}}),
        json!({"labels": {SERVICE_KEY_IDENTIFIER_LABEL: "connectivity-proxy-secret"}}),
    );
    t.add_with(
        SECRET,
        Place::In(cr.istio_namespace()),
        &format!("{}-cacert", cr.tls_secret_name()),
        cr.istio(),
        json!({"type": "Opaque", "data": {"cacert": ""}}),
        created_once(),
    );
    t.add_with(
        SECRET,
        Place::Own,
        REGION_CONFIGURATIONS,
        true,
        json!({"data": {"regionconfigurations": "e30="}}),
        created_once(),
    );
    // A self-signed certificate in the real operator, kept while it is valid.
    let placeholder = "ZW11bGF0ZWQ=";
    t.add_with(
        SECRET,
        Place::Own,
        SM_VALIDATION,
        cr.service_channels(),
        json!({"type": "kubernetes.io/tls",
            "data": {"ca.crt": placeholder, "tls.crt": placeholder, "tls.key": placeholder}}),
        created_once(),
    );
}

fn config_maps(t: &mut Table) {
    let cr = t.cr;
    let mut labels = json!({});
    if cr.restart_watcher() {
        labels[RESTART_LABEL] = json!(format!("{}.{}", cr.name, cr.namespace));
    }
    t.add_with(
        CONFIG_MAP,
        Place::Own,
        PROXY,
        true,
        json!({"data": {"connectivity-proxy-config.yml": to_yaml(&cr.spec["config"])}}),
        json!({ "labels": labels }),
    );
    let host = format!("{PROXY}.{}.svc.cluster.local", cr.namespace);
    let (http, rfc, socks5) = (
        cr.port("http", 20003).to_string(),
        cr.port("rfcAndLdap", 20001).to_string(),
        cr.port("socks5", 20004).to_string(),
    );
    t.add(
        CONFIG_MAP,
        Place::Own,
        "connectivity-proxy-info",
        true,
        json!({"data": {
            "onpremise_proxy_host": host,
            "onpremise_proxy_http_port": http,
            "onpremise_proxy_ldap_port": rfc,
            "onpremise_proxy_port": http,
            "onpremise_proxy_rfc_port": rfc,
            "onpremise_socks5_proxy_port": socks5,
        }}),
    );
    let regions = json!({"dependencies": {"connectivity": cr.service_key_secret_name()}});
    t.add(
        CONFIG_MAP,
        Place::Own,
        REGION_CONFIGURATIONS,
        !cr.multi_region(),
        json!({"data": {"default": regions.to_string()}}),
    );
    t.add_with(
        CONFIG_MAP,
        Place::Own,
        SERVICE_MAPPINGS_CONFIG_MAP,
        cr.service_channels(),
        json!({"data": {"servicemappings": "{}"}}),
        created_once(),
    );
}

/// The ServiceMapping CRD with the operator's own schema, and its webhook configuration.
fn service_mappings(t: &mut Table) {
    let cr = t.cr;
    t.add_with(
        CRD,
        Place::Cluster,
        SERVICE_MAPPING_CRD,
        cr.service_channels(),
        json!({ "spec": service_mapping_crd_spec(cr.shared_tenant()) }),
        json!({"labels": {APP: PROXY}}),
    );
    t.add(
        WEBHOOK,
        Place::Cluster,
        SM_VALIDATION_WEBHOOK,
        cr.service_channels(),
        json!({}),
    );
}

/// The ServiceMapping CRD's spec as the operator writes it (docs/operator.md): cluster-scoped, v1;
/// `type` one of RFC, JDBC, TCP; `internalAddress` `host:port`; `type`, `serviceId` and
/// `internalAddress` required, and `subaccountId` too in the shared tenant mode.
pub fn service_mapping_crd_spec(shared_tenant: bool) -> Value {
    let mut required = vec!["type", "serviceId", "internalAddress"];
    if shared_tenant {
        required.push("subaccountId");
    }
    let string = |description: &str| json!({"type": "string", "description": description});
    let mut address = string("Internal address of the service mapping");
    address["pattern"] = json!(INTERNAL_ADDRESS_PATTERN);
    let mut kind = string("Type of the service mapping");
    kind["enum"] = json!(["RFC", "JDBC", "TCP"]);
    json!({
        "group": CR_GROUP,
        "scope": "Cluster",
        "names": {"kind": "ServiceMapping", "plural": "servicemappings",
            "singular": "servicemapping", "shortNames": ["sm"]},
        "versions": [{
            "name": "v1",
            "served": true,
            "storage": true,
            "subresources": {"status": {}},
            "schema": {"openAPIV3Schema": {
                "type": "object",
                "required": ["spec"],
                "properties": {
                    "spec": {
                        "type": "object",
                        "required": required,
                        "properties": {
                            "type": kind,
                            // Its own spelling, typo included.
                            "subaccountId": string("SubaccoundId of the service mapping"),
                            "serviceId": string("ServiceId of the service mapping"),
                            "tenantId": string("TenantId of the service mapping"),
                            "internalAddress": address,
                            "locationIds": {"type": "array", "items": {"type": "string"},
                                "description": "Cloud Connector location ids"},
                        },
                    },
                    "status": {
                        "type": "object",
                        "required": ["endpoint"],
                        "properties": {"endpoint": string("Endpoint of the service mapping")},
                    },
                },
            }},
        }],
    })
}

fn rbac(t: &mut Table) {
    let cr = t.cr;
    let core_read = |resources: &[&str]| json!({"apiGroups": [""], "resources": resources, "verbs": ["get", "list", "watch"]});
    let restart_statefulset = json!({"apiGroups": ["apps"], "resources": ["statefulsets"],
        "verbs": ["get", "patch"]});
    let mut region_secrets = vec![REGION_CONFIGURATIONS.to_string(), CA_SECRET.into()];
    if cr.istio() {
        region_secrets.push(format!("{}-cacert", cr.tls_secret_name()));
    }
    let mut proxy_restart = restart_statefulset.clone();
    proxy_restart["resourceNames"] = json!([PROXY]);
    let bindings = [
        (
            RESTART_WATCHER,
            cr.restart_watcher(),
            json!([core_read(&["configmaps", "secrets"]), restart_statefulset]),
        ),
        (
            REGION_CONTROLLER,
            true,
            json!([
                core_read(&["configmaps", "secrets", "pods"]),
                {"apiGroups": [""], "resources": ["secrets"], "resourceNames": region_secrets,
                    "verbs": ["get", "list", "update", "patch"]},
                proxy_restart,
            ]),
        ),
        (
            SERVICE_MAPPINGS_CONFIG_MAP,
            cr.service_channels(),
            json!([
                {"apiGroups": [CR_GROUP], "resources": ["servicemappings", "servicemappings/status"],
                    "verbs": ["*"]},
                {"apiGroups": ["apiextensions.k8s.io"], "resources": ["customresourcedefinitions"],
                    "verbs": ["get", "list"]},
                {"apiGroups": [""], "resources": ["configmaps"],
                    "resourceNames": [SERVICE_MAPPINGS_CONFIG_MAP],
                    "verbs": ["get", "list", "update", "patch"]},
                {"apiGroups": [""], "resources": ["configmaps"], "verbs": ["get", "list", "create"]},
            ]),
        ),
    ];
    for (base, made, rules) in &bindings {
        t.add(
            CLUSTER_ROLE,
            Place::Cluster,
            &cr.rbac_name(base),
            *made,
            json!({ "rules": rules }),
        );
    }
    // The ServiceAccount each ClusterRole is bound to.
    fn account(base: &str) -> &str {
        match base {
            SERVICE_MAPPINGS_CONFIG_MAP => SM_OPERATOR,
            other => other,
        }
    }
    for (base, made, _) in &bindings {
        let name = cr.rbac_name(base);
        t.add(
            CLUSTER_ROLE_BINDING,
            Place::Cluster,
            &name,
            *made,
            json!({
                "subjects": [{"kind": "ServiceAccount", "name": account(base),
                    "namespace": cr.namespace}],
                "roleRef": {"apiGroup": "rbac.authorization.k8s.io", "kind": "ClusterRole",
                    "name": name},
            }),
        );
    }
    t.add(
        ROLE,
        Place::Own,
        STARTUP,
        true,
        json!({"rules": [{"apiGroups": [""], "resources": ["secrets"],
            "resourceNames": [REGION_CONFIGURATIONS, CA_SECRET], "verbs": ["get"]}]}),
    );
    t.add(
        ROLE_BINDING,
        Place::Own,
        STARTUP,
        true,
        json!({
            "subjects": [{"kind": "ServiceAccount", "name": STARTUP, "namespace": cr.namespace}],
            "roleRef": {"apiGroup": "rbac.authorization.k8s.io", "kind": "Role", "name": STARTUP},
        }),
    );
}

fn tcp_port(name: &str, port: u64) -> Value {
    json!({"name": name, "protocol": "TCP", "port": port})
}

fn services(t: &mut Table) {
    let cr = t.cr;
    let mut rfc = tcp_port("rfc-and-ldap", cr.port("rfcAndLdap", 20001));
    rfc["appProtocol"] = json!("tcp");
    let mut socks5 = tcp_port("socks5", cr.port("socks5", 20004));
    socks5["appProtocol"] = json!("tcp");
    t.add(
        SERVICE,
        Place::Own,
        PROXY,
        true,
        json!({"spec": {"selector": {APP: PROXY},
            "ports": [tcp_port("https", cr.port("http", 20003)), rfc, socks5]}}),
    );
    let tunnel = tcp_port("tunnel", TUNNEL_PORT.into());
    t.add(
        SERVICE,
        Place::Own,
        TUNNEL,
        true,
        json!({"spec": {"clusterIP": "None", "selector": {APP: PROXY}, "ports": [tunnel]}}),
    );
    t.add(
        SERVICE,
        Place::Own,
        TUNNEL_ZERO,
        true,
        json!({"spec": {
            "selector": {APP: PROXY, "statefulset.kubernetes.io/pod-name": "connectivity-proxy-0"},
            "ports": [tunnel]}}),
    );
    t.add(
        SERVICE,
        Place::Own,
        SM_VALIDATION_SERVICE,
        cr.service_channels(),
        json!({"spec": {"type": "ClusterIP", "selector": {APP: SM_OPERATOR},
            "ports": [tcp_port("https", 443)]}}),
    );
}

/// A pod template with `labels`, run as `account`, with one container.
fn template(cr: &Cr, labels: &Value, account: &str, container: &str) -> Value {
    json!({
        "metadata": {"labels": labels},
        "spec": {
            "serviceAccountName": account,
            "priorityClassName": cr.priority_class(),
            "containers": [{"name": container, "image": cr.image("image")}],
        },
    })
}

fn workloads(t: &mut Table) {
    let cr = t.cr;
    let deployments = [
        (
            RESTART_WATCHER,
            cr.restart_watcher(),
            json!({APP: RESTART_WATCHER}),
        ),
        (
            REGION_CONTROLLER,
            true,
            json!({APP: REGION_CONTROLLER, "installation-name": cr.name}),
        ),
        (
            SM_OPERATOR,
            cr.service_channels(),
            json!({APP: SM_OPERATOR}),
        ),
    ];
    for (name, made, selector) in deployments {
        let mut pod = template(cr, &selector, name, name);
        let mut extra = json!({});
        if name == SM_OPERATOR {
            extra = json!({"labels": {APP: SM_OPERATOR}});
            if cr.istio() {
                pod["metadata"]["annotations"] = json!({"sidecar.istio.io/inject": "false"});
            }
        }
        t.add_with(
            DEPLOYMENT,
            Place::Own,
            name,
            made,
            json!({"spec": {"replicas": 1, "selector": {"matchLabels": selector},
                "template": pod}}),
            extra,
        );
    }
    let replicas = cr.spec["deployment"]["replicaCount"].as_u64().unwrap_or(1);
    let selector = json!({ APP: PROXY });
    let mut pod = template(cr, &selector, STARTUP, PROXY);
    pod["spec"]["initContainers"] = json!([{"name": "init-fd-limit",
        "image": cr.image("utilityImage")}]);
    t.add(
        STATEFUL_SET,
        Place::Own,
        PROXY,
        true,
        json!({"spec": {
            "replicas": replicas,
            "podManagementPolicy": "OrderedReady",
            "selector": {"matchLabels": selector},
            "serviceName": TUNNEL,
            "template": pod,
        }}),
    );
}

fn istio(t: &mut Table) {
    let cr = t.cr;
    let on = cr.istio();
    let ns = &cr.namespace;
    let fqdn = |service: &str| format!("{service}.{ns}.svc.cluster.local");
    let timeout = format!(
        "{}s",
        cr.spec["ingress"]["timeouts"]["proxy"]["connect"]
            .as_u64()
            .unwrap_or(20)
    );
    for (name, host) in [(TUNNEL_ZERO, fqdn(TUNNEL_ZERO)), (PROXY, fqdn(TUNNEL))] {
        t.add(
            DESTINATION_RULE,
            Place::Own,
            name,
            on,
            json!({"spec": {"host": host,
                "trafficPolicy": {"connectionPool": {"tcp": {"connectTimeout": timeout}}}}}),
        );
    }
    let host = cr.external_host();
    let port = cr.external_port();
    let ingress_annotations = json!({ "annotations": cr.spec["ingress"]["annotations"] });
    let route = |prefix: &str, service: &str| {
        json!({"match": [{"port": port, "uri": {"prefix": prefix}}],
            "route": [{"destination": {"host": fqdn(service), "port": {"number": TUNNEL_PORT}}}]})
    };
    t.add_with(
        VIRTUAL_SERVICE,
        Place::Own,
        TUNNEL,
        on,
        json!({"spec": {
            "gateways": [format!("{ns}/{TUNNEL}")],
            "hosts": [host],
            "http": [route("/connectivity-proxy-0", TUNNEL_ZERO), route("/connectivity", TUNNEL)],
        }}),
        ingress_annotations.clone(),
    );
    let selector = match &cr.spec["ingress"]["istio"]["gateway"]["selector"] {
        Value::Object(s) => Value::Object(s.clone()),
        _ => json!({"istio": "ingressgateway"}),
    };
    t.add_with(
        GATEWAY,
        Place::Own,
        TUNNEL,
        on,
        json!({"spec": {"selector": selector, "servers": [{
            "hosts": [host],
            "port": {"name": "tunnel", "number": port, "protocol": "HTTPS"},
            "tls": {"credentialName": cr.tls_secret_name(), "minProtocolVersion": "TLSV1_2",
                "mode": "MUTUAL"},
        }]}}),
        ingress_annotations,
    );
    t.add(
        PEER_AUTHENTICATION,
        Place::Own,
        PROXY,
        on,
        json!({"spec": {"mtls": {"mode": "PERMISSIVE"},
            "selector": {"matchLabels": {APP: PROXY}}}}),
    );
}

// ---------------------------------------------------------------------------------------------
// Ownership

/// The operator counts an object as its own only with its label and both annotations naming
/// the CR.
pub fn owned_by(meta: &ObjectMeta, cr_name: &str, cr_namespace: &str) -> bool {
    let label = meta
        .labels
        .as_ref()
        .and_then(|l| l.get(MANAGED_BY_LABEL))
        .is_some_and(|v| v == MANAGED_BY_VALUE);
    let annotation = |key: &str, want: &str| {
        meta.annotations
            .as_ref()
            .and_then(|a| a.get(key))
            .is_some_and(|v| v == want)
    };
    label
        && annotation(PRIMARY_NAME_ANNOTATION, cr_name)
        && annotation(PRIMARY_NAMESPACE_ANNOTATION, cr_namespace)
}

fn owned(meta: &ObjectMeta, cr: &Cr) -> bool {
    owned_by(meta, &cr.name, &cr.namespace)
}

// ---------------------------------------------------------------------------------------------
// reconcile

/// The CRDs of [`REQUIRED_CRDS`] that the cluster does not have, in that order.
pub async fn missing_crds(client: &Client) -> Vec<String> {
    let crds: Api<CustomResourceDefinition> = Api::all(client.clone());
    let present: Vec<String> = crds
        .list_metadata(&ListParams::default())
        .await
        .expect("list CRDs")
        .items
        .into_iter()
        .map(|c| c.name_any())
        .collect();
    REQUIRED_CRDS
        .iter()
        .filter(|n| !present.iter().any(|p| p == *n))
        .map(|n| n.to_string())
        .collect()
}

pub fn cr_resource() -> ApiResource {
    ApiResource::from_gvk_with_plural(&GroupVersionKind::gvk(CR_GROUP, "v1", CR_KIND), CR_PLURAL)
}

fn cr_api(client: &Client) -> Api<DynamicObject> {
    Api::namespaced_with(client.clone(), NAMESPACE, &cr_resource())
}

/// One reconcile of the CR with every workload ready: `Ready`, or where it stopped.
pub async fn reconcile(c: &TestCluster) -> Outcome {
    reconcile_with(c, Workloads::Ready).await
}

/// One reconcile of the CR: the operator's start check, its finalizer on the CR, every object
/// of its table in order (stopping at the first failure), then `status.state` through the
/// status subresource: `Ready` or `Processing` (as `workloads` says) with `observedGeneration`,
/// or `Error`. The CR must exist.
pub async fn reconcile_with(c: &TestCluster, workloads: Workloads) -> Outcome {
    let client = &c.client;
    let missing = missing_crds(client).await;
    if !missing.is_empty() {
        return Outcome::RefusedToStart {
            missing_crds: missing,
        };
    }
    let object = add_finalizer(client).await;
    let mut cr = Cr::read(&serde_json::to_value(&object).expect("CR as JSON"));
    let outcome = match apply_table(client, &mut cr).await {
        Err(error) => error,
        Ok(()) => match workloads {
            Workloads::Ready => Outcome::Ready,
            Workloads::NotReady => Outcome::Processing,
            Workloads::Observed if workloads_ready(client, &cr).await => Outcome::Ready,
            Workloads::Observed => Outcome::Processing,
        },
    };
    write_state(client, &outcome, cr.generation).await;
    outcome
}

/// Reconciles as the operator does on a cluster whose controllers run the workloads: again and
/// again (its recheck every 15 s, here every `every`) until `Ready`, an error, or `limit`.
pub async fn reconcile_until_ready(c: &TestCluster, every: Duration, limit: Duration) -> Outcome {
    let started = Instant::now();
    loop {
        let outcome = reconcile_with(c, Workloads::Observed).await;
        if outcome != Outcome::Processing || started.elapsed() >= limit {
            return outcome;
        }
        tokio::time::sleep(every).await;
    }
}

/// Every StatefulSet and Deployment the operator made is ready as its client library judges
/// it (fabric8's `isReady()`, which the real operator asks): a StatefulSet when its ready
/// replicas equal its replicas, a Deployment when its Pods are as many as it wants and that many
/// are available. Neither asks whether the Pods run the current template, so a workload that
/// adopted the legacy Pods is ready before it has replaced them.
async fn workloads_ready(client: &Client, cr: &Cr) -> bool {
    for d in dependents(cr) {
        if !d.made || ![STATEFUL_SET.kind, DEPLOYMENT.kind].contains(&d.kind.kind) {
            continue;
        }
        let Some(object) = d.get(client).await else {
            return false;
        };
        let wanted = object.data["spec"]["replicas"].as_i64();
        let status = &object.data["status"];
        let count = |field: &str| status[field].as_i64();
        let ready = if d.kind == STATEFUL_SET {
            count("readyReplicas").is_some() && count("readyReplicas") == wanted
        } else {
            wanted.is_some()
                && count("replicas") == wanted
                && count("availableReplicas").is_some_and(|a| Some(a) >= wanted)
        };
        if !ready {
            return false;
        }
    }
    true
}

/// Whether every StatefulSet and Deployment the operator made runs its current template in all
/// its replicas, each ready: what `Ready` does not say (see [`workloads_ready`]).
pub async fn workloads_rolled(c: &TestCluster) -> bool {
    for d in table(c).await {
        if !d.made || ![STATEFUL_SET.kind, DEPLOYMENT.kind].contains(&d.kind.kind) {
            continue;
        }
        let Some(object) = d.get(&c.client).await else {
            return false;
        };
        let wanted = object.data["spec"]["replicas"].as_i64().unwrap_or(1);
        let status = &object.data["status"];
        let count = |field: &str| status[field].as_i64().unwrap_or(0);
        let current = status["observedGeneration"].as_i64() == object.metadata.generation;
        let revisions_agree =
            d.kind != STATEFUL_SET || status["currentRevision"] == status["updateRevision"];
        if !current
            || !revisions_agree
            || count("readyReplicas") < wanted
            || count("updatedReplicas") < wanted
            || count("replicas") != wanted
        {
            return false;
        }
    }
    true
}

/// Writes, as the controllers would once every Pod runs the current template, the status of
/// each StatefulSet and Deployment the operator made: for a cluster without controllers.
pub async fn report_workloads_rolled(c: &TestCluster) {
    for d in table(c).await {
        if !d.made || ![STATEFUL_SET.kind, DEPLOYMENT.kind].contains(&d.kind.kind) {
            continue;
        }
        let Some(object) = d.get(&c.client).await else {
            continue;
        };
        let replicas = object.data["spec"]["replicas"].as_i64().unwrap_or(1);
        let mut status = json!({"observedGeneration": object.metadata.generation,
            "replicas": replicas, "readyReplicas": replicas, "updatedReplicas": replicas,
            "availableReplicas": replicas});
        if d.kind == STATEFUL_SET {
            status["currentRevision"] = json!("rolled");
            status["updateRevision"] = json!("rolled");
            status["currentReplicas"] = json!(replicas);
        }
        d.api(&c.client)
            .patch_status(
                &d.name,
                &PatchParams::default(),
                &Patch::Merge(json!({ "status": status })),
            )
            .await
            .unwrap_or_else(|e| panic!("write the status of {}: {e}", d.key()));
    }
}

/// Reconciles as the operator does on the events of its workloads while they roll to its
/// template (every `every`), until they have rolled and it reports `Ready`, or `limit`.
pub async fn reconcile_until_rolled(c: &TestCluster, every: Duration, limit: Duration) -> Outcome {
    let started = Instant::now();
    loop {
        let outcome = reconcile_with(c, Workloads::Observed).await;
        let settled = outcome == Outcome::Ready && workloads_rolled(c).await;
        if settled || matches!(outcome, Outcome::Error { .. }) || started.elapsed() >= limit {
            return outcome;
        }
        tokio::time::sleep(every).await;
    }
}

async fn apply_table(client: &Client, cr: &mut Cr) -> Result<(), Outcome> {
    resolve_for_reconcile(client, cr).await?;
    for d in dependents(cr) {
        reconcile_one(client, cr, &d)
            .await
            .map_err(|e| failure(d.key(), e))?;
    }
    Ok(())
}

/// Creates, adopts or (where the CR no longer asks for it) deletes one object.
async fn reconcile_one(client: &Client, cr: &Cr, d: &Dependent) -> Result<(), kube::Error> {
    if d.name.is_empty() {
        // A name the CR leaves empty: nothing the operator could make or find there.
        return Ok(());
    }
    let api = d.api(client);
    let existing = get_opt(&api, &d.name).await?;
    let is_own = existing.as_ref().is_some_and(|o| owned(&o.metadata, cr));
    if !d.made {
        if is_own {
            api.delete(&d.name, &DeleteParams::default()).await?;
        }
        return Ok(());
    }
    if is_own && d.created_once {
        return Ok(());
    }
    let mut desired = d.desired.clone();
    if !is_own {
        // Created only where no object exists: the API server refuses it (409) elsewhere.
        desired["metadata"]["resourceVersion"] = json!("1");
    }
    api.patch(
        &d.name,
        &PatchParams::apply(FIELD_MANAGER).force(),
        &Patch::Apply(&desired),
    )
    .await?;
    Ok(())
}

/// Adds the operator's finalizer to the CR (a write guarded by its resourceVersion); returns
/// the CR as it is then.
async fn add_finalizer(client: &Client) -> DynamicObject {
    let crs = cr_api(client);
    for _ in 0..10 {
        let cr = crs
            .get_opt(CR_NAME)
            .await
            .expect("get CR")
            .expect("the CR (enable the module first)");
        if cr.finalizers().iter().any(|f| f == FINALIZER) {
            return cr;
        }
        let mut finalizers = cr.finalizers().to_vec();
        finalizers.push(FINALIZER.into());
        if let Some(done) = write_finalizers(&crs, &cr, finalizers).await {
            return done;
        }
    }
    panic!("the CR kept changing while its finalizer was added");
}

/// Sets the CR's finalizers, guarded by the resourceVersion of `cr`: `None` on a conflict.
async fn write_finalizers(
    crs: &Api<DynamicObject>,
    cr: &DynamicObject,
    finalizers: Vec<String>,
) -> Option<DynamicObject> {
    let patch = json!({"metadata": {"resourceVersion": cr.resource_version(),
        "finalizers": finalizers}});
    match crs
        .patch(CR_NAME, &PatchParams::default(), &Patch::Merge(&patch))
        .await
    {
        Ok(cr) => Some(cr),
        Err(kube::Error::Api(s)) if s.code == 409 => None,
        Err(e) => panic!("write the CR's finalizers: {e}"),
    }
}

/// The CR's `status`, written through its status subresource. `Error` leaves
/// `observedGeneration` as it was.
async fn write_state(client: &Client, outcome: &Outcome, generation: Option<i64>) {
    let status = match outcome {
        Outcome::Ready => json!({"state": "Ready", "observedGeneration": generation}),
        Outcome::Processing => json!({"state": "Processing", "observedGeneration": generation}),
        Outcome::Error { .. } => json!({"state": "Error"}),
        Outcome::RefusedToStart { .. } => return,
    };
    cr_api(client)
        .patch_status(
            CR_NAME,
            &PatchParams::default(),
            &Patch::Merge(json!({ "status": status })),
        )
        .await
        .unwrap_or_else(|e| panic!("write the CR's status: {e}"));
}

/// The CR's `status.state`, if the CR and a state exist.
pub async fn state(c: &TestCluster) -> Option<String> {
    let cr = cr_api(&c.client).get_opt(CR_NAME).await.expect("get CR")?;
    cr.data["status"]["state"].as_str().map(String::from)
}

/// The operator's table for the CR as it is now (its `auto-provision` values resolved as a
/// reconcile would), in the operator's order. Panics where the resolution itself would fail.
pub async fn table(c: &TestCluster) -> Vec<Dependent> {
    let object = cr_api(&c.client)
        .get(CR_NAME)
        .await
        .expect("get CR (enable the module first)");
    let mut cr = Cr::read(&serde_json::to_value(&object).expect("CR as JSON"));
    if let Err(e) = resolve_for_reconcile(&c.client, &mut cr).await {
        panic!("the operator would not get to its table: {e:?}");
    }
    dependents(&cr)
}

// ---------------------------------------------------------------------------------------------
// Enabling and disabling the module

/// What enabling the module does on a test cluster: the CR's CRD, the default CR, and the
/// operator Deployment (from deploy/operator-deployment-example.yaml; nothing runs it).
pub async fn enable(c: &TestCluster) {
    module::enable(c).await;
    module::install_operator(c).await;
}

/// What disabling the module does: the CR is deleted; the operator's cleanup deletes every
/// object of its table that it owns, in reverse order (the ServiceMapping CRD that clean
/// adopted among them, and with it every ServiceMapping); its finalizer lets the CR go; then
/// the operator Deployment and the CR's CRD are deleted. Returns when the CR, its CRD and the
/// ServiceMapping CRD (if it was the operator's) are gone. Objects without the operator's label
/// and both annotations are left as they are.
///
/// Without a CR (deleted before), the cleanup works from the default CR's names, as the
/// operator cleaned up when that CR went.
pub async fn uninstall(c: &TestCluster) {
    uninstall_with(c, Cleanup::Whole).await;
}

/// How far the operator's cleanup gets.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Cleanup {
    /// Every object it owns.
    Whole,
    /// Every object it owns but the ServiceMapping CRD (its deletion did not happen, say the
    /// operator was stopped first): the CRD stays with the operator's schema and adoption, and
    /// so do the ServiceMappings.
    SparingTheServiceMappingCrd,
}

/// [`uninstall`], with a cleanup that may stop short of the ServiceMapping CRD.
pub async fn uninstall_with(c: &TestCluster, how: Cleanup) {
    let client = &c.client;
    let crs = cr_api(client);
    let object = crs.get_opt(CR_NAME).await.expect("get CR");
    if object.is_some() {
        delete_if_present(&crs, CR_NAME).await;
    }
    let value = match &object {
        Some(o) => serde_json::to_value(o).expect("CR as JSON"),
        None => default_cr(),
    };
    let mut cr = Cr::read(&value);
    resolve_tls(&mut cr);
    let sm_crd_was_its_own = cleanup(client, &cr, how).await;
    if object.is_some() {
        remove_finalizer(&crs).await;
        wait_gone(&crs, CR_NAME, "the CR").await;
    }
    let deployments =
        Api::<DynamicObject>::namespaced_with(client.clone(), NAMESPACE, &DEPLOYMENT.resource());
    delete_if_present(&deployments, OPERATOR_DEPLOYMENT).await;
    let crds = Api::<DynamicObject>::all_with(client.clone(), &CRD.resource());
    delete_if_present(&crds, CR_CRD).await;
    wait_gone(&crds, CR_CRD, "the ConnectivityProxy CRD").await;
    let gv = format!("{CR_GROUP}/v1");
    wait_undiscoverable(client, &gv, CR_PLURAL).await;
    if sm_crd_was_its_own {
        wait_gone(&crds, SERVICE_MAPPING_CRD, "the ServiceMapping CRD").await;
        wait_undiscoverable(client, &gv, "servicemappings").await;
    }
}

/// Waits until discovery no longer offers `plural` in `group_version`, in the group's list of
/// resources or as a group version whose list is gone (both lag a CRD's deletion), so that a
/// discovery right after does not meet a kind that is gone.
pub async fn wait_undiscoverable(client: &Client, group_version: &str, plural: &str) {
    let started = Instant::now();
    while discoverable(client, group_version, plural).await {
        assert!(
            started.elapsed() < Duration::from_secs(60),
            "{plural} still discoverable after 60 s"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

async fn discoverable(client: &Client, group_version: &str, plural: &str) -> bool {
    match client.list_api_group_resources(group_version).await {
        Ok(list) => list.resources.iter().any(|r| r.name == plural),
        Err(_) => client
            .list_api_groups()
            .await
            .expect("list API groups")
            .groups
            .iter()
            .flat_map(|g| &g.versions)
            .any(|v| v.group_version == group_version),
    }
}

/// The cleanup: every object of the table that the operator owns, deleted in reverse order.
/// Returns whether the ServiceMapping CRD was among them.
async fn cleanup(client: &Client, cr: &Cr, how: Cleanup) -> bool {
    let mut sm_crd = false;
    let spared = |d: &&Dependent| {
        how == Cleanup::SparingTheServiceMappingCrd
            && d.kind == CRD
            && d.name == SERVICE_MAPPING_CRD
    };
    for d in dependents(cr)
        .iter()
        .rev()
        .filter(|d| !d.name.is_empty() && !spared(d))
    {
        let Some(o) = d.get(client).await else {
            continue;
        };
        if !owned(&o.metadata, cr) {
            continue;
        }
        delete_if_present(&d.api(client), &d.name).await;
        sm_crd |= d.kind == CRD && d.name == SERVICE_MAPPING_CRD;
    }
    sm_crd
}

fn default_cr() -> Value {
    let text = std::fs::read_to_string(fixture_dir(MODULE).join("default-cr.yaml"))
        .expect("the default CR fixture");
    from_yaml(&text)
}

async fn remove_finalizer(crs: &Api<DynamicObject>) {
    for _ in 0..10 {
        let Some(cr) = crs.get_opt(CR_NAME).await.expect("get CR") else {
            return;
        };
        let rest: Vec<String> = cr
            .finalizers()
            .iter()
            .filter(|f| *f != FINALIZER)
            .cloned()
            .collect();
        if rest.len() == cr.finalizers().len() || write_finalizers(crs, &cr, rest).await.is_some() {
            return;
        }
    }
    panic!("the CR kept changing while its finalizer was removed");
}

async fn delete_if_present(api: &Api<DynamicObject>, name: &str) {
    match api.delete(name, &DeleteParams::default()).await {
        Ok(_) => {}
        Err(kube::Error::Api(s)) if s.code == 404 => {}
        Err(e) => panic!("delete {name}: {e}"),
    }
}

async fn wait_gone(api: &Api<DynamicObject>, name: &str, what: &str) {
    let started = Instant::now();
    while api.get_opt(name).await.expect("get").is_some() {
        assert!(
            started.elapsed() < Duration::from_secs(60),
            "{what} ({name}) not gone after 60 s"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}
