//! The emulated module operator (tests/support/operator.rs) on the real API server, read against
//! docs/operator.md: after `run` it reconciles to `Ready` on both tenant
//! modes with the objects of its table as the page gives them; an object at one of its names
//! without its label and both annotations stops it with 409 and `Error`; it does not start
//! without the CRDs it needs; disabling the module deletes what it owns (every ServiceMapping
//! with the CRD that clean adopted) and nothing else.

mod support;

use std::collections::BTreeMap;

use k8s_openapi::api::core::v1::{ConfigMap, Service};
use k8s_openapi::apiextensions_apiserver::pkg::apis::apiextensions::v1::CustomResourceDefinition;
use kube::api::{Api, DeleteParams, DynamicObject, Patch, PatchParams, PostParams};
use kube::{Client, ResourceExt};
use serde_json::{Value, json};

use support::operator::{self, Dependent, Outcome, Workloads};
use support::*;

const KYMA_SYSTEM: &str = "kyma-system";
const LABEL: &str = "app.kubernetes.io/managed-by";
const LABEL_VALUE: &str = "sap.connectivity.proxy.operator";
const PRIMARY_NAME: &str = "io.javaoperatorsdk/primary-name";
const PRIMARY_NAMESPACE: &str = "io.javaoperatorsdk/primary-namespace";
const SERVICE_MAPPING_CRD: &str = "servicemappings.connectivityproxy.sap.com";
const REGION_CONFIG_MAP: &str = "ConfigMap kyma-system/connectivity-proxy-region-configurations";

/// What the operator makes for the CR after `run` (docs/operator.md's table, in its order): the
/// migrated CR keeps `auto-provision` for the TLS secret, so the Gardener certificate is made;
/// the dedicated tenant keeps it for the service key too, so the BTP instance and binding are
/// made; no CR gives `secretData`, so no service key Secret.
fn made_after_run(tenant: Tenant) -> Vec<&'static str> {
    let btp = [
        "ServiceInstance kyma-system/cp-service-instance-connectivity-proxy-kyma-system",
        "ServiceBinding kyma-system/cp-service-binding-connectivity-proxy-kyma-system",
    ];
    [
        "Certificate istio-system/cp-tls-connectivity-proxy-kyma-system",
        btp[0],
        btp[1],
        "PriorityClass connectivity-proxy-kyma-system-priority-class",
        "ServiceAccount kyma-system/connectivity-proxy-restart-watcher",
        "ServiceAccount kyma-system/connectivity-proxy-region-configurations-controller",
        "ServiceAccount kyma-system/connectivity-proxy-startup",
        "ServiceAccount kyma-system/connectivity-proxy-sm-operator",
        "Secret kyma-system/connectivity-ca-connectivity-proxy",
        "Secret istio-system/cp-tls-connectivity-proxy-kyma-system-cacert",
        "Secret kyma-system/connectivity-proxy-region-configurations",
        "Secret kyma-system/connectivity-proxy-sm-validation",
        "ConfigMap kyma-system/connectivity-proxy",
        "ConfigMap kyma-system/connectivity-proxy-info",
        REGION_CONFIG_MAP,
        "ConfigMap kyma-system/connectivity-proxy-service-mappings",
        "CustomResourceDefinition servicemappings.connectivityproxy.sap.com",
        "ValidatingWebhookConfiguration connectivity-proxy-sm-validation-webhook",
        "ClusterRole connectivity-proxy-restart-watcher-kyma-system",
        "ClusterRole connectivity-proxy-region-configurations-controller-kyma-system",
        "ClusterRole connectivity-proxy-service-mappings-kyma-system",
        "ClusterRoleBinding connectivity-proxy-restart-watcher-kyma-system",
        "ClusterRoleBinding connectivity-proxy-region-configurations-controller-kyma-system",
        "ClusterRoleBinding connectivity-proxy-service-mappings-kyma-system",
        "Role kyma-system/connectivity-proxy-startup",
        "RoleBinding kyma-system/connectivity-proxy-startup",
        "Service kyma-system/connectivity-proxy",
        "Service kyma-system/connectivity-proxy-tunnel",
        "Service kyma-system/connectivity-proxy-tunnel-0",
        "Service kyma-system/connectivity-proxy-smv",
        "Deployment kyma-system/connectivity-proxy-restart-watcher",
        "Deployment kyma-system/connectivity-proxy-region-configurations-controller",
        "Deployment kyma-system/connectivity-proxy-sm-operator",
        "StatefulSet kyma-system/connectivity-proxy",
        "DestinationRule kyma-system/connectivity-proxy-tunnel-0",
        "DestinationRule kyma-system/connectivity-proxy",
        "VirtualService kyma-system/connectivity-proxy-tunnel",
        "Gateway kyma-system/connectivity-proxy-tunnel",
        "PeerAuthentication kyma-system/connectivity-proxy",
    ]
    .into_iter()
    .filter(|k| tenant == Tenant::Dedicated || !btp.contains(k))
    .collect()
}

fn keys(rows: &[Dependent]) -> Vec<String> {
    rows.iter().map(Dependent::key).collect()
}

fn has_label_and_both_annotations(o: &DynamicObject) -> bool {
    o.labels().get(LABEL).map(String::as_str) == Some(LABEL_VALUE)
        && o.annotations().get(PRIMARY_NAME).map(String::as_str) == Some("connectivity-proxy")
        && o.annotations().get(PRIMARY_NAMESPACE).map(String::as_str) == Some(KYMA_SYSTEM)
}

fn applied_by_the_operator(o: &DynamicObject) -> bool {
    o.managed_fields().iter().any(|f| {
        f.manager.as_deref() == Some("connectivityproxyreconciler")
            && f.operation.as_deref() == Some("Apply")
    })
}

/// The objects of `rows`, by key (those that exist).
async fn existing(client: &Client, rows: &[Dependent]) -> BTreeMap<String, DynamicObject> {
    let mut out = BTreeMap::new();
    for d in rows {
        if let Some(o) = d.get(client).await {
            out.insert(d.key(), o);
        }
    }
    out
}

fn status_of(cr: &DynamicObject) -> (Option<&str>, Option<i64>) {
    (
        cr.data["status"]["state"].as_str(),
        cr.data["status"]["observedGeneration"].as_i64(),
    )
}

async fn legacy_after_run(tenant: Tenant) -> TestCluster {
    let c = TestCluster::with(tenant.fixtures()).await;
    c.run(&["run"]).assert_ok();
    c
}

// ---------------------------------------------------------------------------------------------
// Ready after run

/// "Processing while a workload is not ready; Ready once all are": after `run`, the operator
/// makes every object of its table (each with its label and both annotations, applied by
/// `connectivityproxyreconciler`) and the CR reports it, with `observedGeneration`. A second
/// reconcile adopts its own objects and is `Ready` again.
#[tokio::test]
async fn after_run_the_operator_reconciles_to_ready_dedicated_tenant() {
    let c = legacy_after_run(Tenant::Dedicated).await;
    assert_eq!(
        operator::reconcile_with(&c, Workloads::NotReady).await,
        Outcome::Processing
    );
    let cr = c.cr().await;
    assert_eq!(status_of(&cr), (Some("Processing"), cr.metadata.generation));
    assert_eq!(operator::reconcile(&c).await, Outcome::Ready);
    let cr = c.cr().await;
    assert_eq!(status_of(&cr), (Some("Ready"), cr.metadata.generation));
    assert!(
        cr.finalizers()
            .contains(&"connectivityproxies.connectivityproxy.sap.com/finalizer".to_string()),
        "{:?}",
        cr.finalizers()
    );
    let table = every_object_of_the_table_is_made(&c, Tenant::Dedicated).await;
    the_objects_are_as_operator_md_gives_them(&c).await;
    the_service_mapping_crd_carries_the_operators_schema(&c.client, Tenant::Dedicated).await;

    assert_eq!(
        operator::reconcile(&c).await,
        Outcome::Ready,
        "its own objects"
    );
    uninstall_deletes_what_it_owns_and_every_service_mapping(&c, &table).await;
}

#[tokio::test]
async fn after_run_the_operator_reconciles_to_ready_shared_tenant() {
    let c = legacy_after_run(Tenant::Shared).await;
    assert_eq!(operator::reconcile(&c).await, Outcome::Ready);
    let cr = c.cr().await;
    assert_eq!(status_of(&cr), (Some("Ready"), cr.metadata.generation));
    every_object_of_the_table_is_made(&c, Tenant::Shared).await;
    the_service_mapping_crd_carries_the_operators_schema(&c.client, Tenant::Shared).await;
}

async fn every_object_of_the_table_is_made(c: &TestCluster, tenant: Tenant) -> Vec<Dependent> {
    let table = operator::table(c).await;
    assert_eq!(table.len(), 40, "forty objects: {:?}", keys(&table));
    let made: Vec<Dependent> = table.iter().filter(|d| d.made).cloned().collect();
    assert_eq!(keys(&made), made_after_run(tenant));
    let found = existing(&c.client, &table).await;
    for d in &table {
        match found.get(&d.key()) {
            Some(o) if d.made => {
                assert!(has_label_and_both_annotations(o), "{}", d.key());
                assert!(applied_by_the_operator(o), "{}", d.key());
                assert!(o.owner_references().is_empty(), "{}", d.key());
            }
            Some(_) => panic!("{} is made, though this CR does not ask for it", d.key()),
            None => assert!(!d.made, "{} is not made", d.key()),
        }
    }
    table
}

/// The fields docs/operator.md's table names.
async fn the_objects_are_as_operator_md_gives_them(c: &TestCluster) {
    let get = |kind: &str, name: &str| {
        let client = c.client.clone();
        let kind = kind.to_string();
        let name = name.to_string();
        async move {
            let ar = match kind.as_str() {
                "StatefulSet" | "Deployment" => kube::core::ApiResource::from_gvk(
                    &kube::core::GroupVersionKind::gvk("apps", "v1", &kind),
                ),
                _ => kube::core::ApiResource::from_gvk(&kube::core::GroupVersionKind::gvk(
                    "", "v1", &kind,
                )),
            };
            let api: Api<DynamicObject> = Api::namespaced_with(client, KYMA_SYSTEM, &ar);
            serde_json::to_value(api.get(&name).await.expect(&name)).expect("json")
        }
    };
    let sts = get("StatefulSet", "connectivity-proxy").await;
    assert_eq!(
        sts["spec"]["selector"],
        json!({"matchLabels": {"app": "connectivity-proxy"}})
    );
    assert_eq!(sts["spec"]["podManagementPolicy"], "OrderedReady");
    assert_eq!(sts["spec"]["serviceName"], "connectivity-proxy-tunnel");
    assert_eq!(sts["spec"]["updateStrategy"]["type"], "RollingUpdate");

    let ports = |svc: &Value| -> Vec<(Value, Value)> {
        svc["spec"]["ports"]
            .as_array()
            .expect("ports")
            .iter()
            .map(|p| (p["port"].clone(), p["name"].clone()))
            .collect()
    };
    let proxy = get("Service", "connectivity-proxy").await;
    assert_eq!(
        ports(&proxy)
            .iter()
            .map(|(p, _)| p.clone())
            .collect::<Vec<_>>(),
        [json!(20003), json!(20001), json!(20004)]
    );
    assert_eq!(ports(&proxy)[0].1, "https");
    assert_eq!(
        proxy["spec"]["selector"],
        json!({"app": "connectivity-proxy"})
    );
    let tunnel = get("Service", "connectivity-proxy-tunnel").await;
    assert_eq!(tunnel["spec"]["clusterIP"], "None", "headless");
    assert_eq!(ports(&tunnel)[0].0, json!(8042));
    let zero = get("Service", "connectivity-proxy-tunnel-0").await;
    assert_eq!(ports(&zero)[0].0, json!(8042));
    assert_eq!(
        zero["spec"]["selector"]["statefulset.kubernetes.io/pod-name"],
        "connectivity-proxy-0"
    );
    let smv = get("Service", "connectivity-proxy-smv").await;
    assert_eq!(ports(&smv)[0].0, json!(443));
    assert_eq!(
        smv["spec"]["selector"],
        json!({"app": "connectivity-proxy-sm-operator"})
    );

    for (name, selector) in [
        (
            "connectivity-proxy-restart-watcher",
            json!({"app": "connectivity-proxy-restart-watcher"}),
        ),
        (
            "connectivity-proxy-region-configurations-controller",
            json!({"app": "connectivity-proxy-region-configurations-controller",
                "installation-name": "connectivity-proxy"}),
        ),
        (
            "connectivity-proxy-sm-operator",
            json!({"app": "connectivity-proxy-sm-operator"}),
        ),
    ] {
        let d = get("Deployment", name).await;
        assert_eq!(d["spec"]["selector"]["matchLabels"], selector, "{name}");
    }

    // `connectivity-proxy-config.yml` = YAML of `spec.config`.
    let config = get("ConfigMap", "connectivity-proxy").await;
    let yaml: Value = from_yaml(
        config["data"]["connectivity-proxy-config.yml"]
            .as_str()
            .expect("the config key"),
    );
    assert_eq!(yaml, c.cr().await.data["spec"]["config"]);
}

/// `type` one of RFC, JDBC, TCP; `internalAddress` `host:port`; `type`, `serviceId` and
/// `internalAddress` required, `subaccountId` too in the shared tenant mode; cluster-scoped v1.
async fn the_service_mapping_crd_carries_the_operators_schema(client: &Client, tenant: Tenant) {
    let crds: Api<CustomResourceDefinition> = Api::all(client.clone());
    let crd = crds.get(SERVICE_MAPPING_CRD).await.expect("the CRD");
    assert_eq!(crd.spec.scope, "Cluster");
    let versions: Vec<&str> = crd.spec.versions.iter().map(|v| v.name.as_str()).collect();
    assert_eq!(versions, ["v1"]);

    let mappings = service_mappings::api(client);
    let create = |name: &str, spec: Value| {
        let obj: DynamicObject = serde_json::from_value(json!({
            "apiVersion": "connectivityproxy.sap.com/v1",
            "kind": "ServiceMapping",
            "metadata": {"name": name},
            "spec": spec,
        }))
        .expect("ServiceMapping");
        let mappings = mappings.clone();
        async move { mappings.create(&PostParams::default(), &obj).await }
    };
    let good = json!({"type": "RFC", "serviceId": "s", "internalAddress": "host.example:3300",
        "subaccountId": "00000000-0000-0000-0000-000000000000"});
    let refused = [
        ("type", json!({"type": "HTTP"})),
        (
            "internalAddress",
            json!({"internalAddress": "host.example"}),
        ),
        (
            "internalAddress",
            json!({"internalAddress": "host.example:65536"}),
        ),
        (
            "internalAddress",
            json!({"internalAddress": "host.example:0"}),
        ),
        ("serviceId", json!({"serviceId": null})),
        ("type", json!({"type": null})),
        ("internalAddress", json!({"internalAddress": null})),
    ];
    for (i, (field, change)) in refused.iter().enumerate() {
        let mut spec = good.clone();
        for (k, v) in change.as_object().expect("change") {
            match v {
                Value::Null => {
                    spec.as_object_mut().expect("spec").remove(k);
                }
                v => spec[k] = v.clone(),
            }
        }
        match create(&format!("refused-{i}"), spec.clone()).await {
            Err(kube::Error::Api(s)) => {
                assert_eq!(s.code, 422, "{spec}");
                assert!(s.message.contains(field), "{field}: {}", s.message);
            }
            other => panic!("{spec} is accepted: {other:?}"),
        }
    }
    let mut without_subaccount = good.clone();
    without_subaccount
        .as_object_mut()
        .expect("spec")
        .remove("subaccountId");
    let r = create("without-subaccount", without_subaccount).await;
    match tenant {
        Tenant::Dedicated => {
            r.expect("subaccountId is optional for a dedicated tenant");
        }
        Tenant::Shared => match r {
            Err(kube::Error::Api(s)) => assert!(s.message.contains("subaccountId"), "{s:?}"),
            other => panic!("shared tenant, no subaccountId, accepted: {other:?}"),
        },
    }
    create("good", good).await.expect("a valid ServiceMapping");
}

// ---------------------------------------------------------------------------------------------
// Disabling the module

/// "deletes every object it sees as its own, in reverse order": the ServiceMapping CRD that
/// clean adopted, and with it every ServiceMapping; the CR, the operator Deployment and the
/// CR's CRD go too. "Objects without its label and annotations are never deleted by it."
async fn uninstall_deletes_what_it_owns_and_every_service_mapping(
    c: &TestCluster,
    table: &[Dependent],
) {
    support::service_mappings::create(&c.client, "mapping", 50, |_| false).await;
    let (total, _) = support::service_mappings::count_adopted(&c.client).await;
    assert!(total > 50, "{total}");
    module::install_operator(c).await;
    // One of its objects loses an annotation: no longer its own.
    let services: Api<Service> = Api::namespaced(c.client.clone(), KYMA_SYSTEM);
    services
        .patch(
            "connectivity-proxy-smv",
            &PatchParams::default(),
            &Patch::Merge(json!({"metadata": {"annotations": {PRIMARY_NAME: null}}})),
        )
        .await
        .expect("drop an annotation");

    operator::uninstall(c).await;

    let left = existing(&c.client, table).await;
    assert_eq!(
        left.keys().collect::<Vec<_>>(),
        ["Service kyma-system/connectivity-proxy-smv"],
        "only the object it no longer owns"
    );
    let crds: Api<CustomResourceDefinition> = Api::all(c.client.clone());
    for crd in [
        SERVICE_MAPPING_CRD,
        "connectivityproxies.connectivityproxy.sap.com",
    ] {
        assert!(crds.get_opt(crd).await.expect("get").is_none(), "{crd}");
    }
    match support::service_mappings::api(&c.client)
        .list(&Default::default())
        .await
    {
        Err(kube::Error::Api(s)) => assert_eq!(s.code, 404, "no ServiceMapping is served"),
        Ok(l) => panic!("{} ServiceMappings left", l.items.len()),
        Err(e) => panic!("{e}"),
    }
    let deployments: Api<k8s_openapi::api::apps::v1::Deployment> =
        Api::namespaced(c.client.clone(), KYMA_SYSTEM);
    assert!(
        deployments
            .get_opt("connectivity-proxy-operator")
            .await
            .expect("get")
            .is_none()
    );
}

// ---------------------------------------------------------------------------------------------
// Objects it does not own

/// "An object at one of its names without its label and annotations is not taken over: the
/// create fails with 409 Conflict, the reconcile stops at that object (the later ones in its
/// order are not made), and the CR's status.state becomes Error." With the label alone it is
/// still not its own; with the label and both annotations it is adopted. An adopted CRD of
/// another scope than the operator's refuses its apply (the scope is immutable).
#[tokio::test]
async fn an_object_it_does_not_own_at_one_of_its_names_stops_it_with_409() {
    let c = legacy_after_run(Tenant::Dedicated).await;
    let cms: Api<ConfigMap> = Api::namespaced(c.client.clone(), KYMA_SYSTEM);
    let unowned: ConfigMap = serde_json::from_value(json!({
        "metadata": {"name": "connectivity-proxy-region-configurations"},
        "data": {"default": "mine"},
    }))
    .expect("ConfigMap");
    let unowned = cms
        .create(&PostParams::default(), &unowned)
        .await
        .expect("create");

    let outcome = operator::reconcile(&c).await;
    let Outcome::Error { object, code, .. } = &outcome else {
        panic!("{outcome:?}");
    };
    assert_eq!((object.as_str(), *code), (REGION_CONFIG_MAP, Some(409)));
    assert_eq!(operator::state(&c).await.as_deref(), Some("Error"));
    let now = cms
        .get("connectivity-proxy-region-configurations")
        .await
        .expect("get");
    assert_eq!(
        now.resource_version(),
        unowned.resource_version(),
        "not written"
    );
    only_the_objects_before_it_are_made(&c, REGION_CONFIG_MAP).await;

    // The label alone: still not its own.
    label(&cms, json!({"labels": {LABEL: LABEL_VALUE}})).await;
    let outcome = operator::reconcile(&c).await;
    assert!(
        matches!(&outcome, Outcome::Error { object, code: Some(409), .. } if object == REGION_CONFIG_MAP),
        "{outcome:?}"
    );

    // The label and both annotations: adopted, and given the operator's content.
    label(
        &cms,
        json!({"annotations": {PRIMARY_NAME: "connectivity-proxy", PRIMARY_NAMESPACE: KYMA_SYSTEM}}),
    )
    .await;
    assert_eq!(operator::reconcile(&c).await, Outcome::Ready);
    let adopted = cms
        .get("connectivity-proxy-region-configurations")
        .await
        .expect("get");
    let default: Value =
        serde_json::from_str(&adopted.data.expect("data")["default"]).expect("the operator's JSON");
    assert_eq!(
        default["dependencies"]["connectivity"],
        "cp-secret-connectivity-proxy-kyma-system"
    );

    an_adopted_crd_of_another_scope_refuses_the_operators_apply(&c).await;
}

async fn label(cms: &Api<ConfigMap>, metadata: Value) {
    cms.patch(
        "connectivity-proxy-region-configurations",
        &PatchParams::default(),
        &Patch::Merge(json!({ "metadata": metadata })),
    )
    .await
    .expect("label");
}

async fn only_the_objects_before_it_are_made(c: &TestCluster, stopped_at: &str) {
    let table = operator::table(c).await;
    let at = table
        .iter()
        .position(|d| d.key() == stopped_at)
        .expect("in the table");
    let found = existing(&c.client, &table).await;
    for (i, d) in table.iter().enumerate().filter(|(_, d)| d.made) {
        let made = found.get(&d.key()).is_some_and(applied_by_the_operator);
        assert_eq!(made, i < at, "{}", d.key());
    }
    assert!(
        !found.contains_key("StatefulSet kyma-system/connectivity-proxy"),
        "the workloads come after it"
    );
}

async fn an_adopted_crd_of_another_scope_refuses_the_operators_apply(c: &TestCluster) {
    let crds: Api<CustomResourceDefinition> = Api::all(c.client.clone());
    crds.delete(SERVICE_MAPPING_CRD, &DeleteParams::default())
        .await
        .expect("delete");
    let started = std::time::Instant::now();
    while crds
        .get_opt(SERVICE_MAPPING_CRD)
        .await
        .expect("get")
        .is_some()
    {
        assert!(started.elapsed().as_secs() < 60, "CRD not gone");
        tokio::time::sleep(std::time::Duration::from_millis(50)).await;
    }
    let namespaced: CustomResourceDefinition = serde_json::from_value(json!({
        "metadata": {"name": SERVICE_MAPPING_CRD,
            "labels": {LABEL: LABEL_VALUE},
            "annotations": {PRIMARY_NAME: "connectivity-proxy", PRIMARY_NAMESPACE: KYMA_SYSTEM}},
        "spec": {"group": "connectivityproxy.sap.com", "scope": "Namespaced",
            "names": {"kind": "ServiceMapping", "plural": "servicemappings",
                "singular": "servicemapping"},
            "versions": [{"name": "v1", "served": true, "storage": true,
                "schema": {"openAPIV3Schema": {"type": "object",
                    "x-kubernetes-preserve-unknown-fields": true}}}]},
    }))
    .expect("CRD");
    crds.create(&PostParams::default(), &namespaced)
        .await
        .expect("create");
    c.wait_established(SERVICE_MAPPING_CRD).await;

    let outcome = operator::reconcile(c).await;
    let Outcome::Error {
        object,
        code,
        message,
    } = &outcome
    else {
        panic!("{outcome:?}");
    };
    assert_eq!(
        (object.as_str(), *code),
        (
            "CustomResourceDefinition servicemappings.connectivityproxy.sap.com",
            Some(422)
        )
    );
    assert!(message.contains("scope"), "{message}");
    assert_eq!(operator::state(c).await.as_deref(), Some("Error"));
}

// ---------------------------------------------------------------------------------------------
// The start check

/// "At start the operator exits unless these CRDs are served": without the BTP operator's two
/// (and then without Istio's EnvoyFilter too) it refuses, naming them, and writes nothing. On
/// this cluster nothing was migrated: disabling the module deletes the CR, its CRD and the
/// operator Deployment, and the legacy installation, its ServiceMappings and their CRD (not the
/// operator's) stay.
#[tokio::test]
async fn without_the_crds_it_needs_the_operator_refuses_to_start() {
    let c = TestCluster::with(&[LEGACY]).await;
    operator::enable(&c).await;
    delete_crds(
        &c,
        &[
            "serviceinstances.services.cloud.sap.com",
            "servicebindings.services.cloud.sap.com",
        ],
    )
    .await;
    let before = c.snapshot().await;
    assert_eq!(
        operator::reconcile(&c).await,
        Outcome::RefusedToStart {
            missing_crds: vec![
                "serviceinstances.services.cloud.sap.com".into(),
                "servicebindings.services.cloud.sap.com".into(),
            ]
        }
    );
    assert_eq!(
        snapshot::state_diff(&before, &c.snapshot().await),
        Vec::<String>::new(),
        "nothing written"
    );

    delete_crds(&c, &["envoyfilters.networking.istio.io"]).await;
    assert_eq!(
        operator::reconcile(&c).await,
        Outcome::RefusedToStart {
            missing_crds: vec![
                "envoyfilters.networking.istio.io".into(),
                "serviceinstances.services.cloud.sap.com".into(),
                "servicebindings.services.cloud.sap.com".into(),
            ]
        }
    );
    assert_eq!(operator::state(&c).await, None, "no state written");

    let before = c.snapshot().await;
    operator::uninstall(&c).await;
    let diff = snapshot::state_diff(&before, &c.snapshot().await);
    assert_eq!(
        diff,
        [
            "missing: apiextensions.k8s.io/CustomResourceDefinition /connectivityproxies.connectivityproxy.sap.com",
            "missing: apps/Deployment kyma-system/connectivity-proxy-operator",
            "missing: connectivityproxy.sap.com/ConnectivityProxy kyma-system/connectivity-proxy",
        ],
    );
}

async fn delete_crds(c: &TestCluster, names: &[&str]) {
    let crds: Api<CustomResourceDefinition> = Api::all(c.client.clone());
    let mut served = Vec::new();
    for name in names {
        let crd = crds.get(name).await.expect("get CRD");
        for v in &crd.spec.versions {
            served.push((
                format!("{}/{}", crd.spec.group, v.name),
                crd.spec.names.plural.clone(),
            ));
        }
        crds.delete(name, &DeleteParams::default())
            .await
            .expect("delete CRD");
    }
    let started = std::time::Instant::now();
    for name in names {
        while crds.get_opt(name).await.expect("get").is_some() {
            assert!(started.elapsed().as_secs() < 60, "{name} not gone");
            tokio::time::sleep(std::time::Duration::from_millis(50)).await;
        }
    }
    for (gv, plural) in served {
        operator::wait_undiscoverable(&c.client, &gv, &plural).await;
    }
}
