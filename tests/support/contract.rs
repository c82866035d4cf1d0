//! docs/contract.md's names, spelled out here as that page gives them. What a test expects of the tool's
//! names comes from this module, never from the crate's own tables (src/names.rs): a typo there
//! must fail a test instead of passing every one. tests/contract_names.rs compares each of
//! them with what the tool does on a real API server.

use kube::Client;
use kube::api::{Api, DynamicObject};
use kube::core::{ApiResource, ObjectMeta};

use super::{TestCluster, listable_kinds};

/// contract.md, Names: the namespace of everything legacy and of the CR.
pub const KYMA_SYSTEM: &str = "kyma-system";
/// contract.md, clean's table: the namespace of the legacy Istio and certificate objects.
pub const ISTIO_SYSTEM: &str = "istio-system";
/// contract.md, Names: the backup namespace.
pub const BACKUP_NAMESPACE: &str = "connectivity-proxy-backup";

/// contract.md, Names: the CR, `connectivityproxies.connectivityproxy.sap.com/v1`, name
/// `connectivity-proxy` (in kyma-system).
pub mod cr {
    pub const GROUP: &str = "connectivityproxy.sap.com";
    pub const VERSION: &str = "v1";
    pub const KIND: &str = "ConnectivityProxy";
    pub const PLURAL: &str = "connectivityproxies";
    pub const CRD: &str = "connectivityproxies.connectivityproxy.sap.com";
    pub const NAME: &str = "connectivity-proxy";
}

/// contract.md, Names: the legacy marker, on StatefulSet kyma-system/connectivity-proxy: the annotation
/// (any value) or the label with its value.
pub mod legacy_marker {
    pub const STATEFULSET: &str = "connectivity-proxy";
    pub const ANNOTATION: &str = "reconciler.kyma-project.io/managed-by-reconciler-disclaimer";
    pub const LABEL: &str = "reconciler.kyma-project.io/managed-by";
    pub const LABEL_VALUE: &str = "reconciler";
}

/// contract.md, For every command: where a failed step writes its reason, where the file exists.
pub const TERMINATION_LOG: &str = "/dev/termination-log";

/// contract.md, rollback step 2: the new operator's Deployment, in kyma-system.
pub const OPERATOR_DEPLOYMENT: &str = "connectivity-proxy-operator";

/// contract.md, clean step 3: clean's archive, Secret(s) of type Opaque in the backup namespace.
pub const ARCHIVE: &str = "connectivity-proxy-legacy-archive";

/// contract.md, Names and migrate step 7: the shared-tenant secret name.
pub const SHARED_TENANT_SECRET: &str = "connectivity-proxy-service-key";

/// contract.md, Names: the user configuration and the proxy ports, in kyma-system.
pub const USER_CONFIG: [&str; 2] = ["connectivity-proxy", "connectivity-proxy-info"];
/// contract.md, Names: the key of the user configuration.
pub const USER_CONFIG_KEY: &str = "connectivity-proxy-config.yml";

/// contract.md, Step markers: annotations on the CR with value `"true"`.
pub mod markers {
    pub const MIGRATED: &str = "migrator.kyma-project.io/migrated";
    pub const BACKED_UP: &str = "migrator.kyma-project.io/backed-up";
    pub const CLEANED: &str = "migrator.kyma-project.io/cleaned";
    /// The three, in the order of the steps.
    pub const ALL: [&str; 3] = [MIGRATED, BACKED_UP, CLEANED];
    /// contract.md, clean --hand-over and finish: what finish sets (and, with the cleaned marker,
    /// what a hand-over sets, so that status and finish know it happened).
    pub const FINISHED: &str = "migrator.kyma-project.io/finished";
    pub const HANDED_OVER: &str = "migrator.kyma-project.io/handed-over";
    /// Keys that an earlier tool or a person used: each also counts as its step done.
    pub const OTHER_MIGRATED: [&str; 1] = ["connectivityproxy.sap.com/migrated"];
    pub const OTHER_BACKED_UP: [&str; 1] = ["connectivityproxy.sap.com/backed-up"];
    pub const OTHER_CLEANED: [&str; 2] = [
        "connectivityproxy.sap.com/cleaned",
        "connectivityproxy.sap.com/cleaned-up",
    ];
}

/// contract.md, Names: the new operator's own label; contract.md, clean step 4: the adoption.
pub mod adoption {
    pub const LABEL: &str = "app.kubernetes.io/managed-by";
    pub const LABEL_VALUE: &str = "sap.connectivity.proxy.operator";
    pub const PRIMARY_NAME: &str = "io.javaoperatorsdk/primary-name";
    pub const PRIMARY_NAME_VALUE: &str = "connectivity-proxy";
    pub const PRIMARY_NAMESPACE: &str = "io.javaoperatorsdk/primary-namespace";
    pub const PRIMARY_NAMESPACE_VALUE: &str = "kyma-system";
}

/// contract.md, clean step 4: the ServiceMappings that clean adopts, and their CRD
/// `servicemappings.connectivityproxy.sap.com`, which it adopts too.
pub mod service_mapping {
    pub const GROUP: &str = "connectivityproxy.sap.com";
    pub const VERSION: &str = "v1";
    pub const KIND: &str = "ServiceMapping";
    pub const PLURAL: &str = "servicemappings";
    pub const CRD: &str = "servicemappings.connectivityproxy.sap.com";
}

/// Whether an object carries the adoption of clean step 4: the operator's label and both
/// `io.javaoperatorsdk/primary-*` annotations, each with its value.
pub fn is_adopted(meta: &ObjectMeta) -> bool {
    let label = |k: &str| meta.labels.as_ref().and_then(|l| l.get(k));
    let annotation = |k: &str| meta.annotations.as_ref().and_then(|a| a.get(k));
    label(adoption::LABEL).map(String::as_str) == Some(adoption::LABEL_VALUE)
        && annotation(adoption::PRIMARY_NAME).map(String::as_str)
            == Some(adoption::PRIMARY_NAME_VALUE)
        && annotation(adoption::PRIMARY_NAMESPACE).map(String::as_str)
            == Some(adoption::PRIMARY_NAMESPACE_VALUE)
}

/// Whether an object carries the new operator's label (docs/contract.md: never deleted by clean).
pub fn is_the_operators(meta: &ObjectMeta) -> bool {
    meta.labels
        .as_ref()
        .and_then(|l| l.get(adoption::LABEL))
        .is_some_and(|v| v == adoption::LABEL_VALUE)
}

/// One row of the contract's table of the legacy objects that clean removes. The API group is the
/// Kubernetes group of the kind (docs/contract.md names it for the kinds outside the core ones).
#[derive(Debug, Clone, Copy)]
pub struct Row {
    pub group: &'static str,
    pub kind: &'static str,
    /// `None`: cluster-scoped ("—" in docs/contract.md).
    pub namespace: Option<&'static str>,
    pub names: &'static [&'static str],
}

const KS: Option<&str> = Some(KYMA_SYSTEM);
const IS: Option<&str> = Some(ISTIO_SYSTEM);
const RBAC: &str = "rbac.authorization.k8s.io";

/// contract.md, "Legacy objects removed by clean", row by row as it lists them.
pub const CLEAN_TABLE: [Row; 17] = [
    Row {
        group: "apps",
        kind: "StatefulSet",
        namespace: KS,
        names: &["connectivity-proxy"],
    },
    Row {
        group: "apps",
        kind: "Deployment",
        namespace: KS,
        names: &[
            "connectivity-proxy-restart-watcher",
            "connectivity-proxy-sm-operator",
        ],
    },
    Row {
        group: "",
        kind: "Service",
        namespace: KS,
        names: &[
            "connectivity-proxy",
            "connectivity-proxy-smv",
            "connectivity-proxy-tunnel",
            "connectivity-proxy-tunnel-0",
            "connectivity-proxy-tunnel-healthcheck",
        ],
    },
    Row {
        group: RBAC,
        kind: "ClusterRoleBinding",
        namespace: None,
        names: &[
            "connectivity-proxy-restart-watcher",
            "connectivity-proxy-service-mappings",
            "connectivity-proxy-service-mappings-kyma-system",
        ],
    },
    Row {
        group: RBAC,
        kind: "ClusterRole",
        namespace: None,
        names: &[
            "connectivity-proxy-restart-watcher",
            "connectivity-proxy-service-mappings",
            "connectivity-proxy-sm-validation-webhook-cluster-role",
            "connectivity-proxy-service-mappings-kyma-system",
        ],
    },
    Row {
        group: "",
        kind: "ServiceAccount",
        namespace: KS,
        names: &[
            "connectivity-proxy-restart-watcher",
            "connectivity-proxy-sm-operator",
            "connectivity-proxy-sm-validation",
            "connectivity-proxy-sm-validation-webhook",
        ],
    },
    Row {
        group: "admissionregistration.k8s.io",
        kind: "ValidatingWebhookConfiguration",
        namespace: None,
        names: &["webhook-secret"],
    },
    Row {
        group: "",
        kind: "ConfigMap",
        namespace: KS,
        names: &[
            "connectivity-proxy",
            "connectivity-proxy-info",
            "connectivity-proxy-service-mappings",
        ],
    },
    Row {
        group: "networking.istio.io",
        kind: "EnvoyFilter",
        namespace: IS,
        names: &["connectivity-proxy-custom-protocol"],
    },
    Row {
        group: "networking.istio.io",
        kind: "Gateway",
        namespace: KS,
        names: &["kyma-gateway-cc"],
    },
    Row {
        group: "networking.istio.io",
        kind: "VirtualService",
        namespace: KS,
        names: &["cc-proxy", "cc-proxy-healthcheck"],
    },
    Row {
        group: "networking.istio.io",
        kind: "DestinationRule",
        namespace: KS,
        names: &["connectivity-proxy-tunnel-0", "connectivity-proxy"],
    },
    Row {
        group: "security.istio.io",
        kind: "PeerAuthentication",
        namespace: KS,
        names: &["enable-permissive-mode-for-cp"],
    },
    Row {
        group: "cert.gardener.cloud",
        kind: "Certificate",
        namespace: IS,
        names: &["cc-certs"],
    },
    Row {
        group: "",
        kind: "Secret",
        namespace: IS,
        names: &["cc-certs-cacert", "cc-certs"],
    },
    Row {
        group: "",
        kind: "Secret",
        namespace: KS,
        names: &["connectivity-sm-operator-secrets-tls"],
    },
    Row {
        group: "scheduling.k8s.io",
        kind: "PriorityClass",
        namespace: None,
        names: &["connectivity-proxy-priority-class"],
    },
];

/// One legacy object of [`CLEAN_TABLE`].
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord)]
pub struct LegacyObject {
    pub group: &'static str,
    pub kind: &'static str,
    /// Empty for a cluster-scoped object.
    pub namespace: &'static str,
    pub name: &'static str,
}

impl LegacyObject {
    /// Its key in a snapshot of the cluster (`group/Kind namespace/name`, see
    /// [`super::object_key`]).
    pub fn key(&self) -> String {
        format!(
            "{}/{} {}/{}",
            self.group, self.kind, self.namespace, self.name
        )
    }
}

/// Every object of [`CLEAN_TABLE`], in its order: 35.
pub fn legacy_objects() -> Vec<LegacyObject> {
    CLEAN_TABLE
        .iter()
        .flat_map(|row| {
            row.names.iter().map(|name| LegacyObject {
                group: row.group,
                kind: row.kind,
                namespace: row.namespace.unwrap_or_default(),
                name,
            })
        })
        .collect()
}

/// The snapshot key of every object of [`CLEAN_TABLE`].
pub fn legacy_keys() -> Vec<String> {
    legacy_objects().iter().map(LegacyObject::key).collect()
}

/// Whether `(group, kind, namespace, name)` is an object of [`CLEAN_TABLE`].
pub fn is_legacy(group: &str, kind: &str, namespace: &str, name: &str) -> bool {
    legacy_objects()
        .iter()
        .any(|o| o.group == group && o.kind == kind && o.namespace == namespace && o.name == name)
}

/// The names that [`CLEAN_TABLE`] lists for `kind`.
pub fn legacy_names(kind: &str) -> Vec<&'static str> {
    legacy_objects()
        .into_iter()
        .filter(|o| o.kind == kind)
        .map(|o| o.name)
        .collect()
}

/// Where the cluster serves `kind` of `group` (any served version), by its own discovery; `None`
/// when it does not serve it (no Istio, no Gardener certificates).
pub fn served<'a>(
    kinds: &'a [(ApiResource, bool)],
    group: &str,
    kind: &str,
) -> Option<&'a ApiResource> {
    kinds
        .iter()
        .map(|(ar, _)| ar)
        .find(|ar| ar.group == group && ar.kind == kind)
}

/// The objects of [`CLEAN_TABLE`] that exist on the cluster, as "Kind name" (a kind the cluster
/// does not serve has none).
pub async fn remaining_legacy_objects(c: &TestCluster) -> Vec<String> {
    let kinds = listable_kinds(&c.client).await;
    let mut left = Vec::new();
    for o in legacy_objects() {
        let Some(ar) = served(&kinds, o.group, o.kind) else {
            continue;
        };
        if get(&c.client, ar, &o).await.is_some() {
            left.push(format!("{} {}", o.kind, o.name));
        }
    }
    left
}

/// The legacy object `o`, if it exists, where `ar` serves its kind.
pub async fn get(client: &Client, ar: &ApiResource, o: &LegacyObject) -> Option<DynamicObject> {
    let api: Api<DynamicObject> = if o.namespace.is_empty() {
        Api::all_with(client.clone(), ar)
    } else {
        Api::namespaced_with(client.clone(), o.namespace, ar)
    };
    api.get_opt(o.name)
        .await
        .unwrap_or_else(|e| panic!("get {} {}/{}: {e}", o.kind, o.namespace, o.name))
}

/// Whether the legacy installation is there, as the contract's legacy marker says: StatefulSet
/// kyma-system/connectivity-proxy with the reconciler's annotation or its label.
pub async fn legacy_installed(client: &Client) -> bool {
    let statefulsets: Api<k8s_openapi::api::apps::v1::StatefulSet> =
        Api::namespaced(client.clone(), KYMA_SYSTEM);
    let Some(sts) = statefulsets
        .get_opt(legacy_marker::STATEFULSET)
        .await
        .expect("get the legacy StatefulSet")
    else {
        return false;
    };
    let annotated = sts
        .metadata
        .annotations
        .as_ref()
        .is_some_and(|a| a.contains_key(legacy_marker::ANNOTATION));
    let labelled = sts
        .metadata
        .labels
        .as_ref()
        .and_then(|l| l.get(legacy_marker::LABEL))
        .is_some_and(|v| v == legacy_marker::LABEL_VALUE);
    annotated || labelled
}

/// contract.md, clean --hand-over and finish, with docs/operator.md's names and fields: what a hand-over
/// does to each object of the legacy fixture, as `Kind namespace/name` (cluster-scoped: `Kind
/// name`).
pub mod hand_over {
    /// At the operator's names, with fields its state fits: labelled for it to adopt.
    pub const HANDED_OVER: [&str; 9] = [
        "Service kyma-system/connectivity-proxy",
        "Service kyma-system/connectivity-proxy-smv",
        "Service kyma-system/connectivity-proxy-tunnel",
        "ServiceAccount kyma-system/connectivity-proxy-restart-watcher",
        "ServiceAccount kyma-system/connectivity-proxy-sm-operator",
        "ConfigMap kyma-system/connectivity-proxy",
        "ConfigMap kyma-system/connectivity-proxy-info",
        "DestinationRule kyma-system/connectivity-proxy-tunnel-0",
        "DestinationRule kyma-system/connectivity-proxy",
    ];
    /// Workloads at the operator's names whose selectors (and the StatefulSet's
    /// podManagementPolicy) refuse its own: deleted, their Pods orphaned.
    pub const ORPHANED: [&str; 3] = [
        "StatefulSet kyma-system/connectivity-proxy",
        "Deployment kyma-system/connectivity-proxy-restart-watcher",
        "Deployment kyma-system/connectivity-proxy-sm-operator",
    ];
    /// Names of their own that carry the tunnel's traffic: kept until finish.
    pub const LEFT_FOR_FINISH: [&str; 9] = [
        "EnvoyFilter istio-system/connectivity-proxy-custom-protocol",
        "Gateway kyma-system/kyma-gateway-cc",
        "VirtualService kyma-system/cc-proxy",
        "VirtualService kyma-system/cc-proxy-healthcheck",
        "Service kyma-system/connectivity-proxy-tunnel-healthcheck",
        "PeerAuthentication kyma-system/enable-permissive-mode-for-cp",
        "Certificate istio-system/cc-certs",
        "Secret istio-system/cc-certs-cacert",
        "Secret istio-system/cc-certs",
    ];
}
