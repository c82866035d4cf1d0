//! The three steps on a real API server, point by point against docs/contract.md.

mod support;

use std::collections::BTreeMap;

use k8s_openapi::api::core::v1::ConfigMap;
use k8s_openapi::apiextensions_apiserver::pkg::apis::apiextensions::v1::CustomResourceDefinition;
use kube::ResourceExt;
use kube::api::{Api, ListParams, Patch, PatchParams};
use serde_json::{Value, json};
use support::config_maps::{configmap, set_configmap, set_legacy_config};
use support::contract::{self, is_adopted, markers, remaining_legacy_objects};
use support::events::event_reasons;
use support::fixtures::{
    default_cr_config, fixture_configmap, legacy_configmap, legacy_document,
    legacy_without_istio_or_gardener,
};
use support::requests::{requests_in, run_logged};
use support::unchanged::{assert_unchanged, assert_writes_nothing};
use support::values::{at, dotted, leaves};
use support::*;

/// The most of a termination message the kubelet keeps.
const TERMINATION_MESSAGE_BYTES: usize = 4096;

// ---------------------------------------------------------------------------------------------
// happy path

async fn assert_golden_state(c: &TestCluster, legacy_dir: &str, shared: bool) {
    let cr = c.cr().await;
    let config = &cr.data["spec"]["config"];
    // Every legacy leaf is present with its value.
    let legacy_leaves = leaves(&legacy_document(legacy_dir));
    assert!(legacy_leaves.len() >= 10);
    for (path, value) in &legacy_leaves {
        assert_eq!(
            at(config, path),
            Some(value),
            "legacy field {}",
            dotted(path)
        );
    }
    // Every field only the CR had is kept.
    let cr_leaves = leaves(&default_cr_config());
    for (path, value) in cr_leaves
        .iter()
        .filter(|(p, _)| !legacy_leaves.iter().any(|(l, _)| l == p))
    {
        if path.last().map(String::as_str) != Some("port") {
            assert_eq!(
                at(config, path),
                Some(value),
                "CR-only field {}",
                dotted(path)
            );
        }
    }
    assert_eq!(config["servers"]["proxy"]["http"]["port"], json!(20003));
    assert_eq!(
        config["servers"]["proxy"]["rfcAndLdap"]["port"],
        json!(20001)
    );
    assert_eq!(config["servers"]["proxy"]["socks5"]["port"], json!(20004));
    let secret =
        &cr.data["spec"]["secretConfig"]["integration"]["connectivityService"]["secretName"];
    assert_eq!(
        secret,
        &json!(if shared {
            "connectivity-proxy-service-key"
        } else {
            "auto-provision"
        })
    );
    for key in markers::ALL {
        assert_eq!(
            cr.annotations().get(key).map(String::as_str),
            Some("true"),
            "{key}"
        );
    }

    // The backup holds copies equal to the originals.
    let mut originals = vec![fixture_configmap(
        "31-configmap-connectivity-proxy-info.yaml",
    )];
    originals.push(legacy_configmap(legacy_dir));
    for original in originals {
        let copy = configmap(c, contract::BACKUP_NAMESPACE, &original.name_any())
            .await
            .expect("backup copy");
        assert_eq!(copy.data, original.data, "{}", original.name_any());
        let source = format!("kyma-system/{}", original.name_any());
        assert!(
            copy.annotations().values().any(|v| *v == source),
            "the copy records where it came from: {:?}",
            copy.annotations()
        );
        for (k, v) in original.labels() {
            assert_eq!(copy.labels().get(k), Some(v));
        }
    }

    assert_eq!(remaining_legacy_objects(c).await, Vec::<String>::new());
    let sms = service_mappings::api(&c.client)
        .list(&ListParams::default())
        .await
        .expect("list");
    assert_eq!(sms.items.len(), 3);
    assert!(sms.items.iter().all(|s| is_adopted(&s.metadata)));
    let crd = Api::<CustomResourceDefinition>::all(c.client.clone())
        .get("servicemappings.connectivityproxy.sap.com")
        .await
        .expect("crd");
    assert!(is_adopted(&crd.metadata));
    assert_eq!(
        event_reasons(c).await,
        vec!["BackedUp", "Cleaned", "Migrated"]
    );
}

#[tokio::test]
async fn run_migrates_dedicated_tenant_and_a_second_run_writes_nothing() {
    let c = TestCluster::legacy_and_module().await;
    let out = run_logged(&c.kubeconfig, &["run"]);
    out.assert_ok();
    assert_eq!(out.outcome(), "done");
    assert_eq!(out.reason(), "migrate: done; backup: done; clean: done");
    assert_golden_state(&c, LEGACY, false).await;
    // Backup and clean start from the CR the step before them wrote: the run reads it once.
    let cr_reads: Vec<_> = requests_in(&out.stderr)
        .into_iter()
        .filter(|r| r.resource == contract::cr::PLURAL && r.verb == "get")
        .collect();
    assert_eq!(
        cr_reads.len(),
        1,
        "reads of the CR in one run: {cr_reads:?}"
    );
    eprintln!(
        "run on the fixture: {} API requests, {} ms",
        out.api_requests(),
        out.last_line()["duration_ms"]
    );

    let again = assert_writes_nothing(&c, &["run"]).await;
    again.assert_ok();
    assert_eq!(
        again.reason(),
        "migrate: skipped; backup: skipped; clean: skipped"
    );
}

#[tokio::test]
async fn run_migrates_shared_tenant() {
    let c = TestCluster::with(&[LEGACY, LEGACY_SHARED, MODULE]).await;
    c.run(&["run"]).assert_ok();
    assert_golden_state(&c, LEGACY_SHARED, true).await;
}

#[tokio::test]
async fn steps_run_one_by_one_like_init_containers() {
    let c = TestCluster::legacy_and_module().await;
    for step in ["migrate", "backup", "clean"] {
        let out = c.run(&[step]);
        out.assert_ok();
        assert_eq!(out.last_line()["step"], json!(step));
        assert_eq!(out.outcome(), "done", "{}", out.stderr);
    }
    assert_golden_state(&c, LEGACY, false).await;
}

#[tokio::test]
async fn a_legacy_chart_of_another_version_is_migrated_with_a_warning() {
    let c = TestCluster::legacy_and_module().await;
    let sts: Api<k8s_openapi::api::apps::v1::StatefulSet> =
        Api::namespaced(c.client.clone(), "kyma-system");
    sts.patch(
        "connectivity-proxy",
        &PatchParams::default(),
        &Patch::Merge(json!({"metadata": {"labels": {"chart": "connectivity-proxy-2.9.1"}}})),
    )
    .await
    .expect("label");
    let out = c.run(&["migrate"]);
    out.assert_ok();
    assert_eq!(out.outcome(), "done");
    assert!(
        out.stderr.contains("connectivity-proxy-2.9.1") && out.stderr.contains("another version"),
        "{}",
        out.stderr
    );
}

// ---------------------------------------------------------------------------------------------
// skips

#[tokio::test]
async fn migrate_skips_without_writing() {
    let c = TestCluster::legacy_and_module().await;
    for key in [
        "migrator.kyma-project.io/migrated",
        "connectivityproxy.sap.com/migrated",
    ] {
        cr::annotate(&c, &[(key, "true")]).await;
        let out = assert_writes_nothing(&c, &["migrate"]).await;
        out.assert_ok();
        assert_eq!(out.outcome(), "skipped");
        assert!(out.reason().contains(key), "{}", out.reason());
        cr::annotate(&c, &[(key, "false")]).await;
    }
    // A StatefulSet without the reconciler's marks is not the legacy installation.
    let sts: Api<k8s_openapi::api::apps::v1::StatefulSet> =
        Api::namespaced(c.client.clone(), "kyma-system");
    sts.patch(
        "connectivity-proxy",
        &PatchParams::default(),
        &Patch::Json::<()>(serde_json::from_value(json!([
            {"op": "remove", "path": "/metadata/annotations/reconciler.kyma-project.io~1managed-by-reconciler-disclaimer"}
        ])).expect("patch")),
    )
    .await
    .expect("unmark");
    let out = assert_writes_nothing(&c, &["migrate"]).await;
    assert_eq!(out.outcome(), "skipped");
    assert!(
        out.reason().contains("no legacy installation"),
        "{}",
        out.reason()
    );
    // The label alone marks it again.
    sts.patch("connectivity-proxy", &PatchParams::default(), &Patch::Merge(json!({"metadata": {"labels": {"reconciler.kyma-project.io/managed-by": "reconciler"}}})))
        .await
        .expect("label");
    let out = assert_writes_nothing(&c, &["migrate", "--dry-run"]).await;
    assert_eq!(out.outcome(), "done");
    // No StatefulSet at all.
    sts.delete("connectivity-proxy", &Default::default())
        .await
        .expect("delete");
    let out = assert_writes_nothing(&c, &["migrate"]).await;
    assert_eq!(out.outcome(), "skipped");
}

#[tokio::test]
async fn backup_and_clean_skip_without_writing() {
    // No CRD at all.
    let c = TestCluster::with(&[LEGACY]).await;
    for step in ["backup", "clean"] {
        let out = assert_writes_nothing(&c, &[step]).await;
        assert_eq!(out.outcome(), "skipped");
        assert!(
            out.reason().contains("is not installed"),
            "{}",
            out.reason()
        );
    }
    // CRD but no CR.
    c.apply_yaml(
        &std::fs::read_to_string(fixture_dir(MODULE).join("connectivityproxy-crd.yaml"))
            .expect("crd"),
    )
    .await;
    for step in ["backup", "clean"] {
        let out = assert_writes_nothing(&c, &[step]).await;
        assert_eq!(out.outcome(), "skipped");
        assert!(out.reason().contains("does not exist"), "{}", out.reason());
    }
    // CR not marked migrated.
    c.apply_dir(&fixture_dir(MODULE)).await;
    for step in ["backup", "clean"] {
        let out = assert_writes_nothing(&c, &[step]).await;
        assert_eq!(out.outcome(), "skipped");
        assert!(
            out.reason().contains("not marked migrated"),
            "{}",
            out.reason()
        );
    }
    // Done already, under the other tool's keys too.
    cr::annotate(
        &c,
        &[
            ("connectivityproxy.sap.com/migrated", "true"),
            ("connectivityproxy.sap.com/backed-up", "true"),
        ],
    )
    .await;
    let out = assert_writes_nothing(&c, &["backup"]).await;
    assert!(
        out.reason()
            .contains("already backed up (connectivityproxy.sap.com/backed-up"),
        "{}",
        out.reason()
    );
    for key in [
        "connectivityproxy.sap.com/cleaned",
        "connectivityproxy.sap.com/cleaned-up",
        "migrator.kyma-project.io/cleaned",
    ] {
        cr::annotate(&c, &[(key, "true")]).await;
        let out = assert_writes_nothing(&c, &["clean"]).await;
        assert!(
            out.reason().contains(&format!("already cleaned ({key}")),
            "{}",
            out.reason()
        );
        cr::annotate(&c, &[(key, "no")]).await;
    }
}

// ---------------------------------------------------------------------------------------------
// failures of migrate: each names object, key and value, and nothing is written

async fn assert_migrate_fails(c: &TestCluster, needles: &[&str]) {
    let out = assert_writes_nothing(c, &["migrate"]).await;
    out.assert_failed_with(needles);
    let errors = out
        .stderr
        .lines()
        .filter(|l| l.contains("\"level\":\"ERROR\""))
        .count();
    assert_eq!(errors, 1, "one clear error:\n{}", out.stderr);
}

#[tokio::test]
async fn migrate_fails_on_bad_configuration_and_writes_nothing() {
    let c = TestCluster::legacy_and_module().await;
    set_legacy_config(&c, "servers:\n  proxy: [1, 2\nsubaccountId: x\n").await;
    assert_migrate_fails(
        &c,
        &[
            "ConfigMap kyma-system/connectivity-proxy",
            "connectivity-proxy-config.yml",
            "invalid YAML at line 3, column",
        ],
    )
    .await;
    set_legacy_config(&c, "- tenantMode: shared\n").await;
    assert_migrate_fails(
        &c,
        &[
            "ConfigMap kyma-system/connectivity-proxy",
            "the document is a list",
        ],
    )
    .await;
    set_legacy_config(&c, "tenantMode: multi\n").await;
    assert_migrate_fails(
        &c,
        &["connectivity-proxy-config.yml", "tenantMode \"multi\""],
    )
    .await;
    set_configmap(&c, "connectivity-proxy", [("other.yml", "a: 1")].into()).await;
    assert_migrate_fails(&c, &["ConfigMap kyma-system/connectivity-proxy key \"connectivity-proxy-config.yml\" is missing"]).await;
    Api::<ConfigMap>::namespaced(c.client.clone(), "kyma-system")
        .delete("connectivity-proxy", &Default::default())
        .await
        .expect("delete");
    assert_migrate_fails(
        &c,
        &["ConfigMap kyma-system/connectivity-proxy does not exist"],
    )
    .await;
}

#[tokio::test]
async fn migrate_fails_on_bad_ports_and_writes_nothing() {
    let c = TestCluster::legacy_and_module().await;
    for bad in ["0", "65536", "abc", " 80", "8e1", "-1", ""] {
        set_configmap(
            &c,
            "connectivity-proxy-info",
            [
                ("onpremise_proxy_http_port", "20003"),
                ("onpremise_proxy_ldap_port", bad),
                ("onpremise_socks5_proxy_port", "20004"),
            ]
            .into(),
        )
        .await;
        assert_migrate_fails(
            &c,
            &[
                "ConfigMap kyma-system/connectivity-proxy-info",
                "onpremise_proxy_ldap_port",
                &format!("value {bad:?} is not a port"),
            ],
        )
        .await;
    }
    set_configmap(
        &c,
        "connectivity-proxy-info",
        [
            ("onpremise_proxy_http_port", "20003"),
            ("onpremise_proxy_ldap_port", "20001"),
        ]
        .into(),
    )
    .await;
    assert_migrate_fails(&c, &["ConfigMap kyma-system/connectivity-proxy-info key \"onpremise_socks5_proxy_port\" is missing"]).await;
    Api::<ConfigMap>::namespaced(c.client.clone(), "kyma-system")
        .delete("connectivity-proxy-info", &Default::default())
        .await
        .expect("delete");
    assert_migrate_fails(
        &c,
        &["ConfigMap kyma-system/connectivity-proxy-info does not exist"],
    )
    .await;
}

#[tokio::test]
async fn migrate_fails_without_the_crd_or_the_cr() {
    let c = TestCluster::with(&[LEGACY]).await;
    assert_migrate_fails(&c, &["CustomResourceDefinition connectivityproxies.connectivityproxy.sap.com is not installed"]).await;
    c.apply_yaml(
        &std::fs::read_to_string(fixture_dir(MODULE).join("connectivityproxy-crd.yaml"))
            .expect("crd"),
    )
    .await;
    assert_migrate_fails(
        &c,
        &["ConnectivityProxy kyma-system/connectivity-proxy does not exist"],
    )
    .await;
}

#[tokio::test]
async fn migrate_refuses_to_let_the_server_drop_a_field_unless_allowed() {
    let c = TestCluster::legacy_and_module().await;
    let mut doc = legacy_document(LEGACY);
    doc["notInTheSchema"] = json!({"keep": "me"});
    doc["servers"]["proxy"]["http"]["unknownFlag"] = json!(true);
    set_legacy_config(&c, &to_yaml(&doc)).await;
    assert_migrate_fails(
        &c,
        &[
            "would drop or change migrated fields",
            "config.notInTheSchema: dropped",
            "config.servers.proxy.http.unknownFlag: dropped",
        ],
    )
    .await;
    // Allowing one of them is not enough.
    let out = assert_writes_nothing(
        &c,
        &["migrate", "--allow-field-loss", "config.notInTheSchema"],
    )
    .await;
    out.assert_failed_with(&["config.servers.proxy.http.unknownFlag"]);
    assert!(!out.reason().contains("notInTheSchema"), "{}", out.reason());
    let out = c.run(&[
        "migrate",
        "--allow-field-loss",
        "config.notInTheSchema",
        "--allow-field-loss",
        "config.servers.proxy.http.unknownFlag",
    ]);
    out.assert_ok();
    assert!(
        out.reason().contains("fields dropped as allowed"),
        "{}",
        out.reason()
    );
    assert_eq!(
        c.cr().await.data["spec"]["config"]["subaccountId"],
        json!("00000000-0000-0000-0000-000000000000")
    );
}

#[tokio::test]
async fn migrate_reports_schema_violations_instead_of_writing() {
    let c = TestCluster::legacy_and_module().await;
    let mut doc = legacy_document(LEGACY);
    doc["highAvailabilityMode"] = json!("sometimes");
    set_legacy_config(&c, &to_yaml(&doc)).await;
    assert_migrate_fails(
        &c,
        &[
            "rejects the migrated configuration",
            "highAvailabilityMode",
            "sometimes",
        ],
    )
    .await;
}

// ---------------------------------------------------------------------------------------------
// clean's safety gate and robustness

#[tokio::test]
async fn clean_deletes_nothing_without_a_verified_backup() {
    let c = TestCluster::legacy_and_module().await;
    c.run(&["migrate"]).assert_ok();
    // Not backed up.
    assert_writes_nothing(&c, &["clean"])
        .await
        .assert_failed_with(&["refusing to delete", "not marked backed up"]);
    c.run(&["backup"]).assert_ok();
    let backup = Api::<ConfigMap>::namespaced(c.client.clone(), "connectivity-proxy-backup");
    // A copy whose data differs from the source.
    backup
        .patch(
            "connectivity-proxy-info",
            &PatchParams::default(),
            &Patch::Merge(json!({"data": {"onpremise_proxy_http_port": "1"}})),
        )
        .await
        .expect("tamper");
    assert_writes_nothing(&c, &["clean"])
        .await
        .assert_failed_with(&[
            "refusing to delete",
            "connectivity-proxy-backup/connectivity-proxy-info differs",
        ]);
    // A missing copy.
    backup
        .delete("connectivity-proxy-info", &Default::default())
        .await
        .expect("delete copy");
    assert_writes_nothing(&c, &["clean"])
        .await
        .assert_failed_with(&["refusing to delete", "holds no copy"]);
    // Back up again (marker removed, as the message says), then clean works.
    cr::annotate(&c, &[("migrator.kyma-project.io/backed-up", "false")]).await;
    c.run(&["backup"]).assert_ok();
    c.run(&["clean"]).assert_ok();
    assert_eq!(remaining_legacy_objects(&c).await, Vec::<String>::new());
}

/// The CRDs the module's operator needs to start (docs/operator.md) that a cluster without Istio
/// and Gardener lacks.
const ISTIO_AND_GARDENER_CRDS: [&str; 6] = [
    "gateways.networking.istio.io",
    "virtualservices.networking.istio.io",
    "destinationrules.networking.istio.io",
    "envoyfilters.networking.istio.io",
    "peerauthentications.security.istio.io",
    "certificates.cert.gardener.cloud",
];

/// Never tear down what cannot be replaced: without Istio and Gardener the module's operator
/// exits at start, so clean refuses, naming each missing CRD, before its archive: no archive
/// Secret, no marker, no object deleted or adopted; its reason is the termination message.
/// check is not ready and names them; with `--skip-operator-prerequisites` (or its environment
/// variable) check is ready and clean runs, and status says the operator does not start.
#[tokio::test]
async fn clean_refuses_while_a_crd_the_modules_operator_needs_is_not_served() {
    let c = legacy_without_istio_or_gardener().await;
    let check = c.run(&["check", "-o", "json"]);
    assert_eq!(check.output.status.code(), Some(1), "{}", check.stderr);
    let report: Value = serde_json::from_str(&check.stdout).expect("check JSON");
    assert_eq!(report["ready"], false, "{report:#}");
    let named: Vec<&str> = report["reasons"]
        .as_array()
        .expect("reasons")
        .iter()
        .map(|r| r["object"].as_str().expect("object"))
        .collect();
    let expected: Vec<String> = ISTIO_AND_GARDENER_CRDS
        .iter()
        .map(|crd| format!("CustomResourceDefinition {crd}"))
        .collect();
    assert_eq!(named, expected, "{report:#}");
    let verdict = report["verdict"].as_str().expect("verdict");
    assert!(
        verdict.starts_with("refusing to delete the legacy installation: "),
        "{verdict}"
    );
    for crd in ISTIO_AND_GARDENER_CRDS {
        assert!(verdict.contains(crd), "{verdict} lacks {crd}");
    }

    c.run(&["migrate"]).assert_ok();
    c.run(&["backup"]).assert_ok();
    let before = c.snapshot().await;
    let log = c.dir().join("termination-log");
    std::fs::write(&log, "").expect("termination log");
    let refused = run_tool_with_env(
        &c.kubeconfig,
        &["clean"],
        &[(TERMINATION_LOG_ENV, log.to_str().expect("path"))],
    );
    let mut needles = vec![
        "refusing to delete the legacy installation: the module's operator does not start while",
        "--skip-operator-prerequisites",
    ];
    needles.extend(ISTIO_AND_GARDENER_CRDS);
    refused.assert_failed_with(&needles);
    assert_eq!(
        std::fs::read_to_string(&log).expect("termination log"),
        refused.reason()
    );
    // Nothing written: no archive, no marker, nothing adopted or deleted.
    assert_unchanged(&before, &c.snapshot().await, "the refused clean");
    let secrets: Api<k8s_openapi::api::core::v1::Secret> =
        Api::namespaced(c.client.clone(), contract::BACKUP_NAMESPACE);
    assert!(
        secrets
            .get_opt(contract::ARCHIVE)
            .await
            .expect("get")
            .is_none()
    );
    assert_eq!(
        c.cr()
            .await
            .annotations()
            .get("migrator.kyma-project.io/cleaned"),
        None
    );

    let skip = [("CP_MIGRATOR_SKIP_OPERATOR_PREREQUISITES", "true")];
    let check = run_tool_with_env(&c.kubeconfig, &["check", "-o", "json"], &skip);
    check.assert_ok();
    let check = c.run(&["check", "--skip-operator-prerequisites"]);
    check.assert_ok();
    run_tool_with_env(&c.kubeconfig, &["clean"], &skip).assert_ok();
    assert_eq!(remaining_legacy_objects(&c).await, Vec::<String>::new());

    // The module's operator (this one needs them all) does not start; status says why.
    assert_eq!(
        operator::reconcile(&c).await,
        operator::Outcome::RefusedToStart {
            missing_crds: ISTIO_AND_GARDENER_CRDS.map(String::from).to_vec()
        }
    );

    let status = c.run(&["status", "-o", "json"]);
    status.assert_ok();
    let status: Value = serde_json::from_str(&status.stdout).expect("status JSON");
    assert_eq!(
        status["operator_prerequisites_missing"],
        json!(ISTIO_AND_GARDENER_CRDS),
        "{status:#}"
    );
    assert_eq!(status["phase"], "needs-attention", "{status:#}");
    assert_eq!(
        status["phase_reason"],
        format!(
            "the module's operator does not start while {} are not served",
            ISTIO_AND_GARDENER_CRDS.join(", ")
        )
    );
}

#[tokio::test]
async fn clean_works_without_istio_or_gardener_and_keeps_the_operators_objects() {
    let c = legacy_without_istio_or_gardener().await;
    // An object of the new operator under a legacy name.
    let services: Api<k8s_openapi::api::core::v1::Service> =
        Api::namespaced(c.client.clone(), "kyma-system");
    services
        .patch("connectivity-proxy", &PatchParams::default(), &Patch::Merge(json!({"metadata": {"labels": {"app.kubernetes.io/managed-by": "sap.connectivity.proxy.operator"}}})))
        .await
        .expect("label");
    let out = c.run(&["run", "--skip-operator-prerequisites"]);
    out.assert_ok();
    assert!(
        out.stderr
            .contains("kinds not served: EnvoyFilter.networking.istio.io"),
        "{}",
        out.stderr
    );
    assert!(
        out.stderr.contains("Certificate.cert.gardener.cloud"),
        "{}",
        out.stderr
    );
    assert!(
        services
            .get_opt("connectivity-proxy")
            .await
            .expect("get")
            .is_some(),
        "the operator's Service must stay"
    );
    assert_eq!(
        remaining_legacy_objects(&c).await,
        vec!["Service connectivity-proxy".to_string()]
    );
}

#[tokio::test]
async fn clean_adopts_500_service_mappings_and_skips_adopted_ones() {
    let c = TestCluster::legacy_and_module().await;
    let api = service_mappings::api(&c.client);
    let pre_adopted: BTreeMap<String, Option<String>> =
        service_mappings::create(&c.client, "bulk", 500, |i| i % 5 == 0)
            .await
            .into_iter()
            .filter(|sm| is_adopted(&sm.metadata))
            .map(|sm| (sm.name_any(), sm.resource_version()))
            .collect();
    assert_eq!(pre_adopted.len(), 100);
    c.run(&["migrate"]).assert_ok();
    c.run(&["backup"]).assert_ok();
    let out = c.run(&["clean"]);
    out.assert_ok();
    assert!(
        out.reason().contains("403 of 503 ServiceMappings adopted"),
        "{}",
        out.reason()
    );
    let all = api.list(&ListParams::default()).await.expect("list");
    assert_eq!(all.items.len(), 503);
    for sm in &all.items {
        assert!(is_adopted(&sm.metadata), "{} not adopted", sm.name_any());
        if let Some(rv) = pre_adopted.get(&sm.name_any()) {
            assert_eq!(
                &sm.resource_version(),
                rv,
                "{} was written although adopted",
                sm.name_any()
            );
        }
    }
}

// ---------------------------------------------------------------------------------------------
// dry run

#[tokio::test]
async fn dry_run_of_each_step_changes_nothing_and_shows_the_plan() {
    let c = TestCluster::legacy_and_module().await;
    // The CR differs from what the migration makes of it: another port, and a field that only
    // the legacy document has.
    cr::api(&c.client)
        .patch(
            "connectivity-proxy",
            &PatchParams::default(),
            &Patch::Json::<()>(
                serde_json::from_value(json!([
                    {"op": "replace", "path": "/spec/config/servers/proxy/http/port", "value": 8080},
                    {"op": "remove", "path": "/spec/config/subaccountSubdomain"},
                ]))
                .expect("patch"),
            ),
        )
        .await
        .expect("prepare the CR");
    let config_before = c.cr().await.data["spec"]["config"].clone();
    let out = assert_writes_nothing(&c, &["run", "--dry-run"]).await;
    out.assert_ok();
    // What migrate would change, field by field: each changed and added field with its path
    // and values, and a count for the rest; no field is listed that keeps its value.
    let changes = [
        "changed config.servers.businessDataTunnel.externalHost: \"auto-provision\" -> \"test.me.plz\"",
        "changed config.servers.proxy.http.port: 8080 -> 20003",
        "changed config.subaccountId: \"auto-provision\" -> \"00000000-0000-0000-0000-000000000000\"",
        "added   config.subaccountSubdomain: \"obfuscated-subaccount-subdomain\"",
    ];
    let leaves_before = leaves(&config_before);
    let unchanged = leaves_before.len() - 3;
    let plan: Vec<&str> = out
        .stdout
        .lines()
        .skip_while(|l| !l.starts_with("--- migrate (dry run)"))
        .skip(2)
        .take_while(|l| !l.starts_with("--- "))
        .collect();
    let mut want: Vec<String> = changes.iter().map(|c| c.to_string()).collect();
    want.push(format!("{unchanged} fields unchanged"));
    let mut got: Vec<String> = plan.iter().map(|l| l.to_string()).collect();
    got.sort();
    want.sort();
    assert_eq!(got, want, "{}", out.stdout);
    for needle in [
        "--- migrate (dry run)",
        "ConnectivityProxy kyma-system/connectivity-proxy spec.config would change as follows:",
        "--- backup (dry run): would create namespace connectivity-proxy-backup",
        "would copy ConfigMap kyma-system/connectivity-proxy to connectivity-proxy-backup/connectivity-proxy",
        "--- clean (dry run): would adopt 3 of 3 ServiceMappings",
        "would delete 35 legacy objects",
        "StatefulSet kyma-system/connectivity-proxy",
    ] {
        assert!(
            out.stdout.contains(needle),
            "missing {needle:?} in:\n{}",
            out.stdout
        );
    }
    let out = assert_writes_nothing(&c, &["migrate", "--dry-run"]).await;
    for change in changes {
        assert!(out.stdout.contains(change), "{change}: {}", out.stdout);
    }
    c.run(&["migrate"]).assert_ok();
    let out = assert_writes_nothing(&c, &["backup", "--dry-run"]).await;
    assert!(
        out.stdout
            .contains("would copy ConfigMap kyma-system/connectivity-proxy-info"),
        "{}",
        out.stdout
    );
    c.run(&["backup"]).assert_ok();
    let out = assert_writes_nothing(&c, &["clean", "--dry-run"]).await;
    assert!(
        out.stdout.contains("would delete 35 legacy objects"),
        "{}",
        out.stdout
    );
}

// ---------------------------------------------------------------------------------------------
// a concurrent writer

#[tokio::test]
async fn migrate_outlasts_a_busy_concurrent_writer_and_keeps_its_changes() {
    let c = TestCluster::legacy_and_module().await;
    let api = cr::api(&c.client);
    // Back-to-back writes for 1.5 s: a read-modify-write of migrate meanwhile conflicts.
    let writer = {
        let api = api.clone();
        tokio::spawn(async move {
            let started = std::time::Instant::now();
            let mut n = 0u32;
            while started.elapsed() < std::time::Duration::from_millis(1500) {
                n += 1;
                let patch = json!({"metadata": {"labels": {"writer": n.to_string()}}, "spec": {"deployment": {"replicaCount": 1 + n % 3}}});
                api.patch(
                    "connectivity-proxy",
                    &PatchParams::default(),
                    &Patch::Merge(patch),
                )
                .await
                .expect("concurrent write");
            }
            n
        })
    };
    let out = tokio::task::spawn_blocking({
        let kubeconfig = c.kubeconfig.clone();
        move || run_tool(&kubeconfig, &["migrate"])
    })
    .await
    .expect("join");
    let writes = writer.await.expect("writer");
    out.assert_ok();
    // Whether the burst overlapped a read-modify-write depends on timing; the deterministic
    // interleaving (a foreign write between read and write) is tests/reliability.rs's job.
    let conflicts = out
        .stderr
        .lines()
        .filter(|l| l.contains("the CR changed since it was read"))
        .count();
    let cr = c.cr().await;
    assert_eq!(
        cr.labels().get("writer"),
        Some(&writes.to_string()),
        "the other writer's last label survives"
    );
    assert_eq!(
        cr.data["spec"]["deployment"]["replicaCount"],
        json!(1 + writes % 3)
    );
    assert_eq!(
        cr.data["spec"]["config"]["subaccountId"],
        json!("00000000-0000-0000-0000-000000000000")
    );
    assert_eq!(
        cr.annotations()
            .get("migrator.kyma-project.io/migrated")
            .map(String::as_str),
        Some("true")
    );
    eprintln!(
        "concurrent writer made {writes} writes; migrate met {conflicts} conflicts and succeeded"
    );
}

#[tokio::test]
async fn run_stops_at_the_first_failing_step() {
    let c = TestCluster::legacy_and_module().await;
    set_configmap(
        &c,
        "connectivity-proxy-info",
        [
            ("onpremise_proxy_http_port", "20003"),
            ("onpremise_proxy_ldap_port", "20001"),
            ("onpremise_socks5_proxy_port", "0"),
        ]
        .into(),
    )
    .await;
    let out = assert_writes_nothing(&c, &["run"]).await;
    out.assert_failed_with(&[
        "migrate failed (the steps after it did not run)",
        "onpremise_socks5_proxy_port",
        "value \"0\"",
    ]);
    assert_eq!(out.last_line()["step"], json!("run"));
    assert!(
        !out.stderr.contains("\"step\":\"backup\""),
        "backup must not run:\n{}",
        out.stderr
    );
}

// ---------------------------------------------------------------------------------------------
// For every command: the termination message

/// A failed step also writes its reason to its container's termination message where the file
/// exists (the kubelet provides it; here `CP_MIGRATOR_TERMINATION_LOG` names it): the reason of
/// the closing line, on one line, within the kubelet's 4096 bytes. A step that succeeds leaves
/// the file as it is, and without the file every step ends as it would with it.
#[tokio::test]
async fn a_failed_step_leaves_its_reason_in_the_termination_message() {
    let c = TestCluster::legacy_and_module().await;
    let log = c.dir().join("termination-log");
    let absent = c.dir().join("no-termination-log");
    let with_log = [(TERMINATION_LOG_ENV, log.to_str().expect("path"))];
    let without = [(TERMINATION_LOG_ENV, absent.to_str().expect("path"))];
    let read = || std::fs::read_to_string(&log).expect("termination log");
    async fn ports(c: &TestCluster, socks5: &str) {
        set_configmap(
            c,
            "connectivity-proxy-info",
            [
                ("onpremise_proxy_http_port", "20003"),
                ("onpremise_proxy_ldap_port", "20001"),
                ("onpremise_socks5_proxy_port", socks5),
            ]
            .into(),
        )
        .await;
    }

    ports(&c, "0").await;
    for command in ["migrate", "run"] {
        std::fs::write(&log, "").expect("the kubelet's empty file");
        let out = run_tool_with_env(&c.kubeconfig, &[command], &with_log);
        out.assert_failed_with(&["onpremise_socks5_proxy_port", "value \"0\""]);
        assert_eq!(read(), out.reason(), "{command}");
        let out = run_tool_with_env(&c.kubeconfig, &[command], &without);
        out.assert_failed_with(&["onpremise_socks5_proxy_port", "value \"0\""]);
        assert!(!absent.exists(), "{command}: no file is created");
    }

    // A reason longer than the kubelet keeps: cut at 4096 bytes, the start of it intact.
    let long = "8".repeat(5000);
    ports(&c, &long).await;
    let out = run_tool_with_env(&c.kubeconfig, &["migrate"], &with_log);
    out.assert_failed_with(&["onpremise_socks5_proxy_port"]);
    let message = read();
    assert!(
        message.len() <= TERMINATION_MESSAGE_BYTES,
        "{} bytes",
        message.len()
    );
    assert!(
        message.len() > TERMINATION_MESSAGE_BYTES - 8,
        "{} bytes",
        message.len()
    );
    let kept = message.strip_suffix('…').expect("marked as cut");
    assert!(out.reason().starts_with(kept), "{message}");
    assert!(!message.contains('\n'));

    ports(&c, "20004").await;
    std::fs::write(&log, "from an earlier container").expect("write");
    // Each step done once with the file and once without it; the second run of each skips, and
    // `run` finds all three done.
    for (command, first, second) in [
        ("migrate", &with_log, &without),
        ("backup", &without, &with_log),
        ("clean", &with_log, &without),
        ("run", &without, &with_log),
    ] {
        let out = run_tool_with_env(&c.kubeconfig, &[command], first);
        out.assert_ok();
        assert_eq!(out.outcome(), "done", "{command}: {}", out.stderr);
        run_tool_with_env(&c.kubeconfig, &[command], second).assert_ok();
    }
    assert_eq!(
        read(),
        "from an earlier container",
        "success writes nothing"
    );
    assert!(!absent.exists());
}
