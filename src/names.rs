//! Every Kubernetes name from the behaviour contract (docs/contract.md), in one place.

/// Namespace of the legacy installation and of the ConnectivityProxy CR.
pub const KYMA_SYSTEM: &str = "kyma-system";
/// Namespace that holds the copies of the user configuration.
pub const BACKUP_NAMESPACE: &str = "connectivity-proxy-backup";

/// The ConnectivityProxy custom resource.
pub mod cr {
    pub const GROUP: &str = "connectivityproxy.sap.com";
    pub const VERSION: &str = "v1";
    pub const KIND: &str = "ConnectivityProxy";
    pub const PLURAL: &str = "connectivityproxies";
    pub const CRD_NAME: &str = "connectivityproxies.connectivityproxy.sap.com";
    pub const NAME: &str = "connectivity-proxy";
}

/// The legacy StatefulSet whose presence (with a reconciler marker) means "legacy installed".
pub mod legacy_marker {
    pub const STATEFULSET: &str = "connectivity-proxy";
    pub const DISCLAIMER_ANNOTATION: &str =
        "reconciler.kyma-project.io/managed-by-reconciler-disclaimer";
    pub const MANAGED_BY_LABEL: &str = "reconciler.kyma-project.io/managed-by";
    pub const MANAGED_BY_VALUE: &str = "reconciler";
    pub const CHART_LABEL: &str = "chart";
    pub const EXPECTED_CHART: &str = "connectivity-proxy-2.9.3";
}

/// The two ConfigMaps that hold the user configuration.
pub mod config_maps {
    pub const CONFIG: &str = "connectivity-proxy";
    pub const CONFIG_KEY: &str = "connectivity-proxy-config.yml";
    pub const INFO: &str = "connectivity-proxy-info";
    /// Both, in the order they are backed up and restored.
    pub const USER_CONFIG: [&str; 2] = [CONFIG, INFO];
}

/// Keys of `connectivity-proxy-info` and where in `spec.config` their ports go.
pub const PORTS: [(&str, [&str; 3]); 3] = [
    ("onpremise_proxy_http_port", ["servers", "proxy", "http"]),
    (
        "onpremise_proxy_ldap_port",
        ["servers", "proxy", "rfcAndLdap"],
    ),
    (
        "onpremise_socks5_proxy_port",
        ["servers", "proxy", "socks5"],
    ),
];
/// The leaf under each of the mappings in [`PORTS`].
pub const PORT_FIELD: &str = "port";

pub const TENANT_MODE_FIELD: &str = "tenantMode";
pub const TENANT_SHARED: &str = "shared";
pub const TENANT_DEDICATED: &str = "dedicated";
/// Where the shared-tenant secret name goes, under `spec`.
pub const SECRET_NAME_PATH: [&str; 4] = [
    "secretConfig",
    "integration",
    "connectivityService",
    "secretName",
];
pub const SHARED_TENANT_SECRET: &str = "connectivity-proxy-service-key";

/// Step markers: annotations on the CR with value `"true"`.
pub mod markers {
    pub const TRUE: &str = "true";
    pub const MIGRATED: &str = "migrator.kyma-project.io/migrated";
    pub const BACKED_UP: &str = "migrator.kyma-project.io/backed-up";
    pub const CLEANED: &str = "migrator.kyma-project.io/cleaned";
    /// Set with the cleaned marker by `clean --hand-over`: legacy objects wait for `finish`.
    pub const HANDED_OVER: &str = "migrator.kyma-project.io/handed-over";
    /// Set by `finish` once what the hand-over left is gone.
    pub const FINISHED: &str = "migrator.kyma-project.io/finished";
    /// Keys that an earlier tool or a person used; each also counts as done.
    pub const MIGRATED_ALT: &[&str] = &["connectivityproxy.sap.com/migrated"];
    pub const BACKED_UP_ALT: &[&str] = &["connectivityproxy.sap.com/backed-up"];
    pub const CLEANED_ALT: &[&str] = &[
        "connectivityproxy.sap.com/cleaned",
        "connectivityproxy.sap.com/cleaned-up",
    ];
}

/// The new operator's own label: objects carrying it are never deleted.
pub const OPERATOR_LABEL: &str = "app.kubernetes.io/managed-by";
pub const OPERATOR_LABEL_VALUE: &str = "sap.connectivity.proxy.operator";
/// The operator Deployment that status reports on; while it exists, `rollback` refuses.
pub const OPERATOR_DEPLOYMENT: &str = "connectivity-proxy-operator";
/// The images of the three init containers (the last segment of the image reference, without
/// tag or digest): `status` tells by it which step a failing init container runs.
pub mod images {
    pub const MIGRATE: &str = "cp-mod-migrator";
    pub const BACKUP: &str = "cp-mod-backup";
    pub const CLEAN: &str = "cp-mod-cleaner";
}
/// The init containers of the example Deployment (deploy/operator-deployment-example.yaml).
pub mod init_containers {
    pub const MIGRATE: &str = "init-migrator";
    pub const BACKUP: &str = "init-backup";
    pub const CLEAN: &str = "init-cleaner";
}
/// The kubelet's reason for a container that it starts again only after a growing delay.
pub const CRASH_LOOP_BACK_OFF: &str = "CrashLoopBackOff";
/// Where the kubelet reads a container's termination message (the default
/// `terminationMessagePath`): a failed step writes its reason there.
pub const TERMINATION_LOG: &str = "/dev/termination-log";

/// ServiceMapping adoption by the new operator.
pub mod service_mappings {
    pub const CRD_NAME: &str = "servicemappings.connectivityproxy.sap.com";
    pub const GROUP: &str = "connectivityproxy.sap.com";
    pub const KIND: &str = "ServiceMapping";
    pub const PLURAL: &str = "servicemappings";
    pub const PRIMARY_NAME_ANNOTATION: &str = "io.javaoperatorsdk/primary-name";
    pub const PRIMARY_NAMESPACE_ANNOTATION: &str = "io.javaoperatorsdk/primary-namespace";
}

/// Bookkeeping written on backup copies, removed again by restore.
pub mod backup {
    pub const SOURCE_ANNOTATION: &str = "migrator.kyma-project.io/backup-source";
    pub const SOURCE_UID_ANNOTATION: &str = "migrator.kyma-project.io/backup-source-uid";
    pub const SOURCE_RV_ANNOTATION: &str =
        "migrator.kyma-project.io/backup-source-resource-version";
    pub const TIME_ANNOTATION: &str = "migrator.kyma-project.io/backed-up-at";
    pub const LABEL: &str = "migrator.kyma-project.io/backup";
    pub const ALL_ANNOTATIONS: [&str; 4] = [
        SOURCE_ANNOTATION,
        SOURCE_UID_ANNOTATION,
        SOURCE_RV_ANNOTATION,
        TIME_ANNOTATION,
    ];
}

/// clean's archive of what it removes, for `rollback`: Secrets in the backup namespace.
pub mod archive {
    /// The archive itself when it fits one Secret, else its index (which part set is current).
    pub const SECRET: &str = "connectivity-proxy-legacy-archive";
    /// The key that holds the gzip-compressed JSON (or one part of it).
    pub const DATA_KEY: &str = "archive.json.gz";
    /// uid of the ConnectivityProxy CR the archive belongs to.
    pub const CR_UID_ANNOTATION: &str = "migrator.kyma-project.io/archive-cr-uid";
    /// How many parts hold the archive (0: the index holds it inline).
    pub const PARTS_ANNOTATION: &str = "migrator.kyma-project.io/archive-parts";
    /// Which of the two part sets is current: a new set is written beside the current one and
    /// the index switches to it in one write, so a crash never leaves a half-written archive.
    pub const SLOT_ANNOTATION: &str = "migrator.kyma-project.io/archive-slot";
    pub const SLOTS: [&str; 2] = ["a", "b"];
    /// Parts per set; deploy/rbac.yaml names each of them.
    pub const MAX_PARTS: usize = 4;
    /// Bytes of compressed archive per Secret: below the API server's 1 MiB limit for a
    /// Secret's data, with room for base64 under etcd's request limit.
    pub const PART_BYTES: usize = 900_000;

    /// `connectivity-proxy-legacy-archive-a1`: part `index` (from 1) of set `slot`.
    pub fn part_name(slot: &str, index: usize) -> String {
        format!("{SECRET}-{slot}{index}")
    }
}

/// Type of the archive's Secrets.
pub const SECRET_TYPE_OPAQUE: &str = "Opaque";

/// The order in which `rollback` recreates the legacy kinds: each stage only needs what the
/// stages before it made (the webhook last, so it judges nothing before its Pods exist).
pub const ROLLBACK_ORDER: &[&[&str]] = &[
    &["PriorityClass"],
    &["ServiceAccount"],
    &["ClusterRole"],
    &["ClusterRoleBinding"],
    &["ConfigMap", "Secret"],
    &["Service"],
    &[
        "EnvoyFilter",
        "Gateway",
        "VirtualService",
        "DestinationRule",
        "PeerAuthentication",
        "Certificate",
    ],
    &["StatefulSet", "Deployment"],
    &["ValidatingWebhookConfiguration"],
];

/// The module's operator, as docs/operator.md describes it.
pub mod operator {
    /// `status.state` of the CR while a workload of the module is not ready yet.
    pub const STATE_PROCESSING: &str = "Processing";
    /// `status.state` of the CR once every workload of the module is ready.
    pub const STATE_READY: &str = "Ready";
    /// `status.state` of the CR after a failed reconcile (a 409 on an object it does not own,
    /// a missing CRD).
    pub const STATE_ERROR: &str = "Error";

    /// The CRDs that must be served for the operator to start (it exits otherwise): the CR's
    /// own, Istio's five, Gardener's certificates, the BTP operator's instances and bindings.
    pub const PREREQUISITE_CRDS: [&str; 9] = [
        super::cr::CRD_NAME,
        "gateways.networking.istio.io",
        "virtualservices.networking.istio.io",
        "destinationrules.networking.istio.io",
        "envoyfilters.networking.istio.io",
        "peerauthentications.security.istio.io",
        "certificates.cert.gardener.cloud",
        "serviceinstances.services.cloud.sap.com",
        "servicebindings.services.cloud.sap.com",
    ];

    /// The field manager of the operator's server-side applies (forced). A handed-over object's
    /// fields are given to it, so that its first apply removes what it does not declare.
    pub const FIELD_MANAGER: &str = "connectivityproxyreconciler";

    /// The tenant mode in which the operator's ServiceMapping schema also requires
    /// `subaccountId` (the CR's `spec.config.tenantMode`).
    pub const SHARED_TENANT: &str = super::TENANT_SHARED;

    /// The ConfigMap of a Gardener shoot that the operator reads on every reconcile while the CR
    /// asks it to provision both the ingress TLS Secret's name and the tunnel's external host
    /// (its source: the host becomes `cp.<domain>`); without it every reconcile fails.
    pub const SHOOT_INFO_NAMESPACE: &str = "kube-system";
    pub const SHOOT_INFO: &str = "shoot-info";
    pub const SHOOT_INFO_DOMAIN_KEY: &str = "domain";
    /// The CR's tunnel host (`spec.config.servers.businessDataTunnel.externalHost`).
    pub const EXTERNAL_HOST: [&str; 4] =
        ["config", "servers", "businessDataTunnel", "externalHost"];
}

/// The RBAC manifests of the repository, named in messages that ask for one to be applied.
pub mod rbac {
    /// What the init containers and the everyday commands need.
    pub const MANIFEST: &str = "deploy/rbac.yaml";
    /// What only `rollback` needs (it amounts to cluster-admin): applied for a rollback and
    /// deleted after it.
    pub const ROLLBACK_MANIFEST: &str = "deploy/rbac-rollback.yaml";
    /// What `clean --hand-over` and `finish` need beyond [`MANIFEST`]: applied beside it while
    /// the hand-over is opted into.
    pub const HAND_OVER_MANIFEST: &str = "deploy/rbac-hand-over.yaml";

    /// A request the API server authorizes: `verb` on `resource` of `group`, in `namespace`
    /// (`None`: cluster-scoped), on the object `name` (`None`: any, as for a create).
    #[derive(Debug, Clone, Copy)]
    pub struct Permission {
        pub verb: &'static str,
        pub group: &'static str,
        pub resource: &'static str,
        pub namespace: Option<&'static str>,
        pub name: Option<&'static str>,
    }

    pub(crate) const fn may(
        verb: &'static str,
        group: &'static str,
        resource: &'static str,
        namespace: Option<&'static str>,
        name: Option<&'static str>,
    ) -> Permission {
        Permission {
            verb,
            group,
            resource,
            namespace,
            name,
        }
    }

    use super::{IS, KS};
    const RBAC: &str = "rbac.authorization.k8s.io";
    const ISTIO: &str = "networking.istio.io";

    /// What `rollback` needs beyond [`MANIFEST`], which [`ROLLBACK_MANIFEST`] grants: the
    /// ServiceMapping CRD and the ServiceMappings recreated (the module's uninstall deletes them;
    /// a CRD that it spared is put back with the patch that deploy/rbac.yaml grants), the creates of the legacy kinds it recreates, `escalate` to
    /// create ClusterRoles with rules it does not hold, and `bind` of the ClusterRoles the legacy
    /// ClusterRoleBindings refer to.
    pub const ROLLBACK_NEEDS: &[Permission] = &[
        may(
            "create",
            "apiextensions.k8s.io",
            "customresourcedefinitions",
            None,
            None,
        ),
        may(
            "create",
            super::service_mappings::GROUP,
            super::service_mappings::PLURAL,
            None,
            None,
        ),
        may("create", "scheduling.k8s.io", "priorityclasses", None, None),
        may("create", "", "serviceaccounts", KS, None),
        may("create", RBAC, "clusterroles", None, None),
        may("escalate", RBAC, "clusterroles", None, None),
        may("create", RBAC, "clusterrolebindings", None, None),
        may(
            "bind",
            RBAC,
            "clusterroles",
            None,
            Some("connectivity-proxy-restart-watcher"),
        ),
        may(
            "bind",
            RBAC,
            "clusterroles",
            None,
            Some("connectivity-proxy-service-mappings"),
        ),
        may(
            "bind",
            RBAC,
            "clusterroles",
            None,
            Some("connectivity-proxy-service-mappings-kyma-system"),
        ),
        may("create", "", "services", KS, None),
        may("create", ISTIO, "envoyfilters", IS, None),
        may("create", ISTIO, "gateways", KS, None),
        may("create", ISTIO, "virtualservices", KS, None),
        may("create", ISTIO, "destinationrules", KS, None),
        may(
            "create",
            "security.istio.io",
            "peerauthentications",
            KS,
            None,
        ),
        may("create", "cert.gardener.cloud", "certificates", IS, None),
        may("create", "apps", "statefulsets", KS, None),
        may("create", "apps", "deployments", KS, None),
        may(
            "create",
            "admissionregistration.k8s.io",
            "validatingwebhookconfigurations",
            None,
            None,
        ),
    ];
}

pub mod finish {
    use super::KS;
    use super::rbac::{Permission, may};

    /// What `finish` needs beyond deploy/rbac.yaml (deploy/rbac-hand-over.yaml grants it): a
    /// watch of the CR while it waits for `Ready`, and the orphaned legacy ReplicaSets and Pods
    /// listed and deleted (their names are generated).
    pub const NEEDS: &[Permission] = &[
        may(
            "watch",
            super::cr::GROUP,
            super::cr::PLURAL,
            KS,
            Some(super::cr::NAME),
        ),
        may("delete", "", "pods", KS, None),
        may("list", "apps", "replicasets", KS, None),
        may("delete", "apps", "replicasets", KS, None),
    ];
}

/// Name this tool reports Events and field ownership under.
pub const FIELD_MANAGER: &str = "cp-mod-migrator";

/// One row of a table of named objects: the contract's legacy objects removed by clean, or the
/// module operator's objects (the same shape serves both).
#[derive(Debug, Clone, Copy)]
pub struct LegacyObjects {
    pub group: &'static str,
    /// `Some` for kinds every cluster serves; `None` for kinds (Istio, Gardener) whose served
    /// version is found by discovery, and which may not be served at all.
    pub version: Option<&'static str>,
    pub kind: &'static str,
    pub plural: &'static str,
    /// `None` for cluster-scoped kinds.
    pub namespace: Option<&'static str>,
    pub names: &'static [&'static str],
}

const fn row(
    group: &'static str,
    version: Option<&'static str>,
    kind: &'static str,
    plural: &'static str,
    namespace: Option<&'static str>,
    names: &'static [&'static str],
) -> LegacyObjects {
    LegacyObjects {
        group,
        version,
        kind,
        plural,
        namespace,
        names,
    }
}

const KS: Option<&str> = Some(KYMA_SYSTEM);
const IS: Option<&str> = Some("istio-system");

/// The legacy installation, as docs/contract.md's clean table lists it, in deletion order: the workloads
/// first (so nothing keeps using what is removed after them), the configuration last.
pub const LEGACY_OBJECTS: &[LegacyObjects] = &[
    row(
        "apps",
        Some("v1"),
        "StatefulSet",
        "statefulsets",
        KS,
        &["connectivity-proxy"],
    ),
    row(
        "apps",
        Some("v1"),
        "Deployment",
        "deployments",
        KS,
        &[
            "connectivity-proxy-restart-watcher",
            "connectivity-proxy-sm-operator",
        ],
    ),
    row(
        "",
        Some("v1"),
        "Service",
        "services",
        KS,
        &[
            "connectivity-proxy",
            "connectivity-proxy-smv",
            "connectivity-proxy-tunnel",
            "connectivity-proxy-tunnel-0",
            "connectivity-proxy-tunnel-healthcheck",
        ],
    ),
    row(
        "rbac.authorization.k8s.io",
        Some("v1"),
        "ClusterRoleBinding",
        "clusterrolebindings",
        None,
        &[
            "connectivity-proxy-restart-watcher",
            "connectivity-proxy-service-mappings",
            "connectivity-proxy-service-mappings-kyma-system",
        ],
    ),
    row(
        "rbac.authorization.k8s.io",
        Some("v1"),
        "ClusterRole",
        "clusterroles",
        None,
        &[
            "connectivity-proxy-restart-watcher",
            "connectivity-proxy-service-mappings",
            "connectivity-proxy-sm-validation-webhook-cluster-role",
            "connectivity-proxy-service-mappings-kyma-system",
        ],
    ),
    row(
        "",
        Some("v1"),
        "ServiceAccount",
        "serviceaccounts",
        KS,
        &[
            "connectivity-proxy-restart-watcher",
            "connectivity-proxy-sm-operator",
            "connectivity-proxy-sm-validation",
            "connectivity-proxy-sm-validation-webhook",
        ],
    ),
    row(
        "admissionregistration.k8s.io",
        Some("v1"),
        "ValidatingWebhookConfiguration",
        "validatingwebhookconfigurations",
        None,
        &["webhook-secret"],
    ),
    row(
        "networking.istio.io",
        None,
        "EnvoyFilter",
        "envoyfilters",
        IS,
        &["connectivity-proxy-custom-protocol"],
    ),
    row(
        "networking.istio.io",
        None,
        "Gateway",
        "gateways",
        KS,
        &["kyma-gateway-cc"],
    ),
    row(
        "networking.istio.io",
        None,
        "VirtualService",
        "virtualservices",
        KS,
        &["cc-proxy", "cc-proxy-healthcheck"],
    ),
    row(
        "networking.istio.io",
        None,
        "DestinationRule",
        "destinationrules",
        KS,
        &["connectivity-proxy-tunnel-0", "connectivity-proxy"],
    ),
    row(
        "security.istio.io",
        None,
        "PeerAuthentication",
        "peerauthentications",
        KS,
        &["enable-permissive-mode-for-cp"],
    ),
    row(
        "cert.gardener.cloud",
        None,
        "Certificate",
        "certificates",
        IS,
        &["cc-certs"],
    ),
    row(
        "",
        Some("v1"),
        "Secret",
        "secrets",
        IS,
        &["cc-certs-cacert", "cc-certs"],
    ),
    row(
        "",
        Some("v1"),
        "Secret",
        "secrets",
        KS,
        &["connectivity-sm-operator-secrets-tls"],
    ),
    row(
        "scheduling.k8s.io",
        Some("v1"),
        "PriorityClass",
        "priorityclasses",
        None,
        &["connectivity-proxy-priority-class"],
    ),
    row(
        "",
        Some("v1"),
        "ConfigMap",
        "configmaps",
        KS,
        &[
            "connectivity-proxy",
            "connectivity-proxy-info",
            "connectivity-proxy-service-mappings",
        ],
    ),
];

/// The objects the module's operator makes at fixed names (docs/operator.md's table), in the order
/// it reconciles them: it stops at the first one it cannot create, so the first of these that
/// exists without its label and both annotations is where it stops. Objects whose names follow
/// from the CR's values (the service-key Secret, `istio-system/<tls secret>-cacert`, the
/// Gardener Certificate, the BTP ServiceInstance and ServiceBinding) are not listed.
pub const OPERATOR_OBJECTS: &[LegacyObjects] = &[
    row(
        "scheduling.k8s.io",
        Some("v1"),
        "PriorityClass",
        "priorityclasses",
        None,
        &["connectivity-proxy-kyma-system-priority-class"],
    ),
    row(
        "",
        Some("v1"),
        "ServiceAccount",
        "serviceaccounts",
        KS,
        &[
            "connectivity-proxy-restart-watcher",
            "connectivity-proxy-region-configurations-controller",
            "connectivity-proxy-startup",
            "connectivity-proxy-sm-operator",
        ],
    ),
    row(
        "",
        Some("v1"),
        "Secret",
        "secrets",
        KS,
        &[
            "connectivity-ca-connectivity-proxy",
            "connectivity-proxy-region-configurations",
            "connectivity-proxy-sm-validation",
        ],
    ),
    row(
        "",
        Some("v1"),
        "ConfigMap",
        "configmaps",
        KS,
        &[
            "connectivity-proxy",
            "connectivity-proxy-info",
            "connectivity-proxy-region-configurations",
            "connectivity-proxy-service-mappings",
        ],
    ),
    row(
        "apiextensions.k8s.io",
        Some("v1"),
        "CustomResourceDefinition",
        "customresourcedefinitions",
        None,
        &[service_mappings::CRD_NAME],
    ),
    row(
        "admissionregistration.k8s.io",
        Some("v1"),
        "ValidatingWebhookConfiguration",
        "validatingwebhookconfigurations",
        None,
        &["connectivity-proxy-sm-validation-webhook"],
    ),
    row(
        "rbac.authorization.k8s.io",
        Some("v1"),
        "ClusterRole",
        "clusterroles",
        None,
        &OPERATOR_CLUSTER_RBAC,
    ),
    row(
        "rbac.authorization.k8s.io",
        Some("v1"),
        "ClusterRoleBinding",
        "clusterrolebindings",
        None,
        &OPERATOR_CLUSTER_RBAC,
    ),
    row(
        "rbac.authorization.k8s.io",
        Some("v1"),
        "Role",
        "roles",
        KS,
        &["connectivity-proxy-startup"],
    ),
    row(
        "rbac.authorization.k8s.io",
        Some("v1"),
        "RoleBinding",
        "rolebindings",
        KS,
        &["connectivity-proxy-startup"],
    ),
    row(
        "",
        Some("v1"),
        "Service",
        "services",
        KS,
        &[
            "connectivity-proxy",
            "connectivity-proxy-tunnel",
            "connectivity-proxy-tunnel-0",
            "connectivity-proxy-smv",
        ],
    ),
    row(
        "apps",
        Some("v1"),
        "Deployment",
        "deployments",
        KS,
        &[
            "connectivity-proxy-restart-watcher",
            "connectivity-proxy-region-configurations-controller",
            "connectivity-proxy-sm-operator",
        ],
    ),
    row(
        "apps",
        Some("v1"),
        "StatefulSet",
        "statefulsets",
        KS,
        &["connectivity-proxy"],
    ),
    row(
        "networking.istio.io",
        None,
        "DestinationRule",
        "destinationrules",
        KS,
        &["connectivity-proxy-tunnel-0", "connectivity-proxy"],
    ),
    row(
        "networking.istio.io",
        None,
        "VirtualService",
        "virtualservices",
        KS,
        &["connectivity-proxy-tunnel"],
    ),
    row(
        "networking.istio.io",
        None,
        "Gateway",
        "gateways",
        KS,
        &["connectivity-proxy-tunnel"],
    ),
    row(
        "security.istio.io",
        None,
        "PeerAuthentication",
        "peerauthentications",
        KS,
        &["connectivity-proxy"],
    ),
];

/// The operator's ClusterRoles and their ClusterRoleBindings (one of each per name).
const OPERATOR_CLUSTER_RBAC: [&str; 3] = [
    "connectivity-proxy-restart-watcher-kyma-system",
    "connectivity-proxy-region-configurations-controller-kyma-system",
    "connectivity-proxy-service-mappings-kyma-system",
];

/// `clean --hand-over` (docs/contract.md, "clean --hand-over and finish"): which legacy objects the module's
/// operator can take over in place, and which carry traffic until its own are in place.
pub mod hand_over {
    /// The environment variable that turns `--hand-over` on (`true`), for the init container.
    pub const ENV: &str = "CP_MIGRATOR_HAND_OVER";

    /// Labels of a selector, as `matchLabels` (or a Service's selector) holds them.
    pub type Labels = &'static [(&'static str, &'static str)];

    /// What the operator's desired state fixes of an object that the legacy installation has at
    /// the same name (docs/operator.md's table; the fields the API server does not let change).
    #[derive(Debug, Clone, Copy)]
    pub enum Fits {
        /// `spec.selector.matchLabels`, `podManagementPolicy` and `serviceName`.
        StatefulSet {
            selector: Labels,
            pod_management_policy: &'static str,
            service_name: &'static str,
        },
        /// `spec.selector.matchLabels`.
        Deployment { selector: Labels },
        /// Headless (`clusterIP: None`) or not, `type: ClusterIP`, and the selector: the
        /// operator applies its own, but a forced apply leaves keys that another manager set,
        /// so the hand-over removes the legacy selector's other keys (the Pods it selected
        /// stay selected when the operator's labels are among the legacy ones).
        Service { headless: bool, selector: Labels },
        /// Never handed over, for the reason given: deleted as by a plain clean.
        Never(&'static str),
    }

    const APP: &str = "app";
    const PROXY: &str = "connectivity-proxy";

    /// The operator's immutable fields at the names it shares with the legacy installation, by
    /// kind and name (namespace kyma-system, or cluster-scoped). Shared names not listed have no
    /// field the operator's state could be refused on (ConfigMaps, ServiceAccounts,
    /// DestinationRules): they are handed over.
    pub const OPERATOR_FIELDS: &[(&str, &str, Fits)] = &[
        (
            "StatefulSet",
            PROXY,
            Fits::StatefulSet {
                selector: &[(APP, PROXY)],
                pod_management_policy: "OrderedReady",
                service_name: "connectivity-proxy-tunnel",
            },
        ),
        (
            "Deployment",
            "connectivity-proxy-restart-watcher",
            Fits::Deployment {
                selector: &[(APP, "connectivity-proxy-restart-watcher")],
            },
        ),
        (
            "Deployment",
            "connectivity-proxy-sm-operator",
            Fits::Deployment {
                selector: &[(APP, "connectivity-proxy-sm-operator")],
            },
        ),
        (
            "Service",
            PROXY,
            Fits::Service {
                headless: false,
                selector: &[(APP, PROXY)],
            },
        ),
        (
            "Service",
            "connectivity-proxy-tunnel",
            Fits::Service {
                headless: true,
                selector: &[(APP, PROXY)],
            },
        ),
        (
            "Service",
            "connectivity-proxy-tunnel-0",
            Fits::Service {
                headless: false,
                selector: &[
                    (APP, PROXY),
                    ("statefulset.kubernetes.io/pod-name", "connectivity-proxy-0"),
                ],
            },
        ),
        (
            "Service",
            "connectivity-proxy-smv",
            Fits::Service {
                headless: false,
                selector: &[(APP, "connectivity-proxy-sm-operator")],
            },
        ),
        (
            "ConfigMap",
            "connectivity-proxy-service-mappings",
            Fits::Never(
                "the operator creates it once and never writes it again: handed over, it would keep the legacy content",
            ),
        ),
        (
            "ClusterRole",
            "connectivity-proxy-service-mappings-kyma-system",
            Fits::Never(NO_RBAC),
        ),
        (
            "ClusterRoleBinding",
            "connectivity-proxy-service-mappings-kyma-system",
            Fits::Never(NO_RBAC),
        ),
    ];

    /// The field of a ConfigMap or Secret that freezes its data and itself once `true`.
    pub const IMMUTABLE: &str = "immutable";

    const NO_RBAC: &str =
        "labelling RBAC takes escalate or bind, which the everyday permissions do not grant";

    /// The legacy objects with names of their own that carry the tunnel's traffic: left in
    /// place by the hand-over until `finish`, as (kind, namespace, name).
    pub const LEFT_FOR_FINISH: &[(&str, &str, &str)] = &[
        (
            "EnvoyFilter",
            "istio-system",
            "connectivity-proxy-custom-protocol",
        ),
        ("Gateway", super::KYMA_SYSTEM, "kyma-gateway-cc"),
        ("VirtualService", super::KYMA_SYSTEM, "cc-proxy"),
        ("VirtualService", super::KYMA_SYSTEM, "cc-proxy-healthcheck"),
        (
            "Service",
            super::KYMA_SYSTEM,
            "connectivity-proxy-tunnel-healthcheck",
        ),
        (
            "PeerAuthentication",
            super::KYMA_SYSTEM,
            "enable-permissive-mode-for-cp",
        ),
        ("Certificate", "istio-system", "cc-certs"),
        ("Secret", "istio-system", "cc-certs-cacert"),
        ("Secret", "istio-system", "cc-certs"),
    ];

    /// Where the operator puts the CA of the TLS Secret the CR names
    /// (`spec.ingress.tls.secretName`): `<istio namespace>/<secret>-cacert`. A legacy object
    /// left for finish at that name would stop the operator, so it is deleted instead.
    pub const TLS_SECRET_NAME: [&str; 3] = ["ingress", "tls", "secretName"];
    pub const ISTIO_NAMESPACE: [&str; 3] = ["ingress", "istio", "namespace"];
    pub const DEFAULT_ISTIO_NAMESPACE: &str = "istio-system";
    pub const CA_SECRET_SUFFIX: &str = "-cacert";
    /// A CR value that asks the operator to choose the name itself (`cp-tls-…`).
    pub const AUTO_PROVISION: &str = "auto-provision";
}
