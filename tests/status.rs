//! status sums the cluster up in one phase, with its reason, on a real API server (docs/contract.md,
//! **status**): `no-legacy`, `not-started`, `in-progress`, `failing`, `done`,
//! `needs-attention` and `unreachable`, in text and in JSON.

mod support;

use std::path::Path;

use k8s_openapi::api::core::v1::{ConfigMap, PodStatus};
use kube::api::{Api, Patch, PatchParams};
use serde_json::{Value, json};
use support::config_maps::{set_copy_port, user_config_value};
use support::fixtures::legacy_priority_class_back;
use support::operator::{self, Outcome, Workloads};
use support::*;

use support::contract::{KYMA_SYSTEM, USER_CONFIG};

// ---------------------------------------------------------------------------------------------
// helpers

/// `status -o json` and `status` against `kubeconfig`; both must succeed.
fn status_of(kubeconfig: &Path) -> (Value, String) {
    let json_run = run_tool(kubeconfig, &["status", "-o", "json"]);
    json_run.assert_ok();
    let text_run = run_tool(kubeconfig, &["status"]);
    text_run.assert_ok();
    let json: Value = serde_json::from_str(&json_run.stdout)
        .unwrap_or_else(|e| panic!("status JSON ({e}):\n{}", json_run.stdout));
    (json, text_run.stdout)
}

/// The value column of status's text: where the value of its first row starts.
fn value_column(line: &str, label: &str) -> usize {
    let rest = line
        .strip_prefix(label)
        .unwrap_or_else(|| panic!("{line:?} does not start with {label:?}"));
    label.len() + rest.len() - rest.trim_start().len()
}

/// The phase in JSON and in the text's first row (aligned with the rows below it), with a
/// reason that contains `reason_has`. Returns the JSON and the text.
#[track_caller]
fn assert_phase(c: &TestCluster, phase: &str, reason_has: &str) -> (Value, String) {
    let (json, text) = status_of(&c.kubeconfig);
    assert_eq!(json["phase"], json!(phase), "{json:#}");
    let reason = json["phase_reason"].as_str().expect("phase_reason");
    assert!(
        reason.contains(reason_has),
        "phase_reason {reason:?} lacks {reason_has:?}"
    );
    let mut lines = text.lines();
    let first = lines.next().expect("a first line");
    let column = value_column(first, "phase");
    assert_eq!(&first[column..], format!("{phase}: {reason}"), "{text}");
    let second = lines.next().expect("a second line");
    assert_eq!(
        value_column(second, "legacy installation"),
        column,
        "the phase's value in the column of the others:\n{text}"
    );
    // Every field of the picture is still there, besides the phase.
    for field in [
        "legacy_installation",
        "crd_installed",
        "cr_exists",
        "markers",
        "backup_namespace_exists",
        "backup",
        "legacy_objects_remaining",
        "legacy_kinds_not_served",
        "service_mappings",
        "operator",
        "archive",
        "failing",
        "module",
        "operator_prerequisites_missing",
        "blocking_objects",
    ] {
        assert!(json.get(field).is_some(), "{field} missing: {json:#}");
    }
    (json, text)
}

/// The value of the text's row `label`.
#[track_caller]
fn row_value<'a>(text: &'a str, label: &str) -> &'a str {
    let line = text
        .lines()
        .find(|l| l.starts_with(&format!("{label}  ")))
        .unwrap_or_else(|| panic!("no row {label:?}:\n{text}"));
    line[label.len()..].trim()
}

fn user_config_api(c: &TestCluster, namespace: &str) -> Api<ConfigMap> {
    Api::namespaced(c.client.clone(), namespace)
}

// ---------------------------------------------------------------------------------------------
// One cluster through the phases of a migration

/// An empty cluster is `no-legacy`; with the legacy installation `not-started`; with the module
/// enabled and while the steps run `in-progress`; a backup copy edited is `needs-attention`
/// until it matches again; after clean `in-progress` while the module starts (no state yet,
/// `Processing`, `Ready` for an older generation of the CR), `done` once it is `Ready` for the
/// CR as it is, `needs-attention` while it reports `Error`; a legacy object recreated after
/// clean is `needs-attention` again.
#[tokio::test]
async fn status_follows_a_cluster_through_the_phases_of_its_migration() {
    let c = TestCluster::start().await;
    let (json, _) = assert_phase(
        &c,
        "no-legacy",
        "no legacy installation and nothing migrated; the module is not enabled",
    );
    assert_eq!(json["failing"], Value::Null);

    c.apply_dir(&fixture_dir(LEGACY)).await;
    assert_phase(
        &c,
        "not-started",
        "legacy installation present (connectivity-proxy-2.9.3); the module is not enabled",
    );

    module::enable(&c).await;
    assert_phase(
        &c,
        "in-progress",
        "the module is enabled; no step done yet; next: migrate",
    );
    c.run(&["migrate"]).assert_ok();
    assert_phase(&c, "in-progress", "done: migrate; next: backup");
    c.run(&["backup"]).assert_ok();
    assert_phase(&c, "in-progress", "done: migrate, backup; next: clean");

    // A copy edited by hand no longer matches its source.
    let port = "onpremise_proxy_http_port";
    let copied = user_config_value(&c.client, USER_CONFIG[1], port).await;
    set_copy_port(&c.client, port, "1").await;
    let (_, text) = assert_phase(
        &c,
        "needs-attention",
        "the backup copy connectivity-proxy-backup/connectivity-proxy-info differs from its \
         source kyma-system/connectivity-proxy-info",
    );
    assert!(text.contains("copy DIFFERS from source"), "{text}");
    set_copy_port(&c.client, port, &copied.expect("the port")).await;
    assert_phase(&c, "in-progress", "next: clean");

    c.run(&["clean"]).assert_ok();
    let (json, text) = assert_phase(
        &c,
        "in-progress",
        "migrated, backed up and cleaned; the module is starting (no state yet)",
    );
    assert_eq!(json["legacy_objects_remaining"], json!([]));
    let generation = c.cr().await.metadata.generation.expect("generation");
    assert_eq!(
        json["module"],
        json!({"state": null, "observed_generation": null, "generation": generation})
    );
    assert_eq!(json["operator_prerequisites_missing"], json!([]));
    assert_eq!(json["blocking_objects"], json!([]));
    assert_eq!(row_value(&text, "module state"), "none yet", "{text}");

    module::report_state(&c, "Processing").await;
    assert_phase(
        &c,
        "in-progress",
        "migrated, backed up and cleaned; the module is starting (state Processing)",
    );
    module::report_state(&c, "Ready").await;
    let (json, text) = assert_phase(
        &c,
        "done",
        "migrated, backed up and cleaned; no legacy object left; 3 of 3 ServiceMappings \
         adopted; the module is Ready",
    );
    assert_eq!(
        json["module"],
        json!({"state": "Ready", "observed_generation": generation, "generation": generation})
    );
    assert_eq!(
        row_value(&text, "module state"),
        format!("Ready (generation {generation})"),
        "{text}"
    );

    // A change of the CR's spec: its Ready is about the generation before.
    cr::change_spec(&c).await;
    assert_phase(
        &c,
        "in-progress",
        &format!(
            "the module is starting (state Ready for generation {generation} of the CR, which \
             is at {})",
            generation + 1
        ),
    );
    module::report_state(&c, "Error").await;
    assert_phase(
        &c,
        "needs-attention",
        "the module reports Error (status.state of the CR): its operator's log says why",
    );
    module::report_state(&c, "Ready").await;
    assert_phase(&c, "done", "the module is Ready");

    // The control plane brings one legacy object back after clean.
    legacy_priority_class_back(&c, "control-plane").await;
    assert_phase(
        &c,
        "needs-attention",
        "marked cleaned, but 1 legacy object remains (PriorityClass connectivity-proxy-priority-class)",
    );
}

// ---------------------------------------------------------------------------------------------
// The module's operator

/// The ConfigMap `kyma-system/connectivity-proxy-region-configurations`: one of the operator's
/// names (docs/operator.md) that the legacy installation does not have and clean does not remove.
const REGION_CONFIGURATIONS: &str = "connectivity-proxy-region-configurations";

/// An object at one of the operator's names without its label and both annotations, which
/// clean leaves, stops the operator with 409 Conflict: status says `needs-attention` and names
/// it, before and after the migration; with the module in `Error`, it is the reason given. The
/// label alone does not make it the operator's; the label and both annotations do. The legacy
/// installation's own objects at the operator's names are clean's to remove: they block nothing.
#[tokio::test]
async fn an_object_at_an_operator_name_that_clean_leaves_needs_attention_and_is_named() {
    let c = TestCluster::legacy_and_module().await;
    let (json, _) = assert_phase(&c, "in-progress", "no step done yet; next: migrate");
    assert_eq!(json["blocking_objects"], json!([]));

    let cms = user_config_api(&c, KYMA_SYSTEM);
    let mut extra = ConfigMap::default();
    extra.metadata.name = Some(REGION_CONFIGURATIONS.into());
    extra.data = Some([("regions".to_string(), "eu10".to_string())].into());
    cms.create(&Default::default(), &extra)
        .await
        .expect("create the ConfigMap");
    let blocked = "ConfigMap kyma-system/connectivity-proxy-region-configurations exists at one \
                   of the module operator's names without its label and annotations: the \
                   operator's create there fails with 409 Conflict";
    let (json, text) = assert_phase(&c, "needs-attention", blocked);
    assert_eq!(
        json["blocking_objects"],
        json!(["ConfigMap kyma-system/connectivity-proxy-region-configurations"])
    );
    assert_eq!(row_value(&text, "blocking the operator"), "1", "{text}");
    let below = text
        .lines()
        .skip_while(|l| !l.starts_with("blocking the operator"))
        .nth(1)
        .unwrap_or_default();
    assert_eq!(
        below.trim(),
        "ConfigMap kyma-system/connectivity-proxy-region-configurations",
        "{text}"
    );

    // The migration itself does not stop at it; the module does.
    c.run(&["run"]).assert_ok();
    assert_phase(&c, "needs-attention", blocked);
    module::report_state(&c, "Error").await;
    assert_phase(
        &c,
        "needs-attention",
        &format!("the module reports Error: {blocked}"),
    );

    let label = json!({"metadata": {"labels": {"app.kubernetes.io/managed-by": "sap.connectivity.proxy.operator"}}});
    cms.patch(
        REGION_CONFIGURATIONS,
        &PatchParams::default(),
        &Patch::Merge(&label),
    )
    .await
    .expect("label");
    assert_phase(&c, "needs-attention", blocked);
    let annotations = json!({"metadata": {"annotations": {
        "io.javaoperatorsdk/primary-name": "connectivity-proxy",
        "io.javaoperatorsdk/primary-namespace": "kyma-system",
    }}});
    cms.patch(
        REGION_CONFIGURATIONS,
        &PatchParams::default(),
        &Patch::Merge(&annotations),
    )
    .await
    .expect("annotate");
    let (json, _) = assert_phase(
        &c,
        "needs-attention",
        "the module reports Error (status.state of the CR)",
    );
    assert_eq!(json["blocking_objects"], json!([]));
    module::report_state(&c, "Ready").await;
    assert_phase(&c, "done", "the module is Ready");
}

/// The ServiceMappings that the module's schema would refuse (docs/operator.md: `type` one of RFC,
/// JDBC, TCP; `internalAddress` `host:port`; `type`, `serviceId`, `internalAddress` required,
/// and `subaccountId` too in the shared tenant mode) are counted, in the tenant mode of the
/// legacy configuration before migrate and of the CR after it.
#[tokio::test]
async fn service_mappings_the_modules_schema_refuses_are_counted_in_the_tenant_mode() {
    let c = TestCluster::legacy_and_module().await;
    for (name, spec) in [
        (
            "sm-http",
            json!({"type": "HTTP", "serviceId": "s", "subaccountId": "a",
                   "internalAddress": "erp.onprem.example:3300"}),
        ),
        (
            "sm-no-port",
            json!({"type": "RFC", "serviceId": "s", "subaccountId": "a",
                   "internalAddress": "erp.onprem.example"}),
        ),
        (
            "sm-no-subaccount",
            json!({"type": "TCP", "serviceId": "s", "internalAddress": "hana.onprem.example:30015"}),
        ),
    ] {
        c.apply_yaml(&to_yaml(&json!({
            "apiVersion": "connectivityproxy.sap.com/v1",
            "kind": "ServiceMapping",
            "metadata": {"name": name},
            "spec": spec,
        })))
        .await;
    }
    let (json, text) = status_of(&c.kubeconfig);
    assert_eq!(
        json["service_mappings"],
        json!({"total": 6, "adopted": 0, "crd_adopted": false, "refused_by_module_schema": 2}),
        "dedicated"
    );
    assert_eq!(
        row_value(&text, "ServiceMappings"),
        "0 of 6 adopted; CRD not adopted; 2 REFUSED by the module's schema (check names them)",
        "{text}"
    );

    c.apply_dir(&fixture_dir(LEGACY_SHARED)).await;
    let (json, _) = status_of(&c.kubeconfig);
    assert_eq!(
        json["service_mappings"]["refused_by_module_schema"], 3,
        "shared, from the legacy configuration: {json:#}"
    );
    c.run(&["run"]).assert_ok();
    let (json, _) = status_of(&c.kubeconfig);
    assert_eq!(
        json["service_mappings"],
        json!({"total": 6, "adopted": 6, "crd_adopted": true, "refused_by_module_schema": 3}),
        "shared, from the CR"
    );
}

// ---------------------------------------------------------------------------------------------
// With the module's operator (emulated from docs/operator.md: tests/support/operator.rs)

/// After `run` the module starts: status is `in-progress` while the CR has no state and while
/// the operator reports `Processing`, and `done` once it has reconciled to `Ready`, on both
/// tenant variants. The operator's own objects at its names (and at legacy names) are neither
/// legacy objects left nor in its way.
#[tokio::test]
async fn after_run_status_is_done_once_the_operator_has_reconciled_to_ready() {
    for tenant in [Tenant::Dedicated, Tenant::Shared] {
        let c = TestCluster::with(tenant.fixtures()).await;
        c.run(&["run"]).assert_ok();
        assert_phase(&c, "in-progress", "the module is starting (no state yet)");
        assert_eq!(
            operator::reconcile_with(&c, Workloads::NotReady).await,
            Outcome::Processing,
            "{tenant:?}"
        );
        assert_phase(
            &c,
            "in-progress",
            "the module is starting (state Processing)",
        );
        assert_eq!(operator::reconcile(&c).await, Outcome::Ready, "{tenant:?}");
        let (json, _) = assert_phase(
            &c,
            "done",
            "migrated, backed up and cleaned; no legacy object left; 3 of 3 ServiceMappings \
             adopted; the module is Ready",
        );
        assert_eq!(json["blocking_objects"], json!([]), "{tenant:?}");
        assert_eq!(json["legacy_objects_remaining"], json!([]), "{tenant:?}");
        assert_eq!(
            json["service_mappings"]["refused_by_module_schema"], 0,
            "{tenant:?}"
        );
    }
}

/// An object at one of the operator's names that it does not own, there before the module is
/// enabled: check names it and status says `needs-attention` naming it; the migration runs, the
/// operator then stops there with 409 Conflict and reports `Error`, and status names it as the
/// reason. Once it is gone, the operator reaches `Ready` and status says `done`.
#[tokio::test]
async fn an_unowned_object_at_an_operator_name_is_named_before_and_stops_the_operator_after() {
    let c = TestCluster::with(&[LEGACY]).await;
    let cms = user_config_api(&c, KYMA_SYSTEM);
    let mut extra = ConfigMap::default();
    extra.metadata.name = Some(REGION_CONFIGURATIONS.into());
    cms.create(&Default::default(), &extra)
        .await
        .expect("create the ConfigMap");
    let object = "ConfigMap kyma-system/connectivity-proxy-region-configurations";

    let check = c.run(&["check", "-o", "json"]);
    assert_eq!(check.output.status.code(), Some(1), "{}", check.stderr);
    let report: Value = serde_json::from_str(&check.stdout).expect("check JSON");
    assert_eq!(report["reasons"][0]["object"], object, "{report:#}");
    let blocked = format!(
        "{object} exists at one of the module operator's names without its label and \
         annotations: the operator's create there fails with 409 Conflict"
    );
    assert_phase(&c, "needs-attention", &blocked);

    operator::enable(&c).await;
    c.run(&["run"]).assert_ok();
    let outcome = operator::reconcile(&c).await;
    let Outcome::Error {
        object: stopped_at,
        code,
        ..
    } = &outcome
    else {
        panic!("{outcome:?}");
    };
    assert_eq!((stopped_at.as_str(), *code), (object, Some(409)));
    assert_phase(
        &c,
        "needs-attention",
        &format!("the module reports Error: {blocked}"),
    );

    cms.delete(REGION_CONFIGURATIONS, &Default::default())
        .await
        .expect("delete the ConfigMap");
    assert_eq!(operator::reconcile(&c).await, Outcome::Ready);
    assert_phase(&c, "done", "the module is Ready");
}

// ---------------------------------------------------------------------------------------------
// failing

/// No kubelet runs here: the operator Deployment is installed, a Pod of it created through the
/// API, and its status written as the kubelet writes it for an init container in
/// CrashLoopBackOff. status finds the Pod by the Deployment's selector and names the step, the
/// restarts and the termination message, and nothing else of the Pod.
#[tokio::test]
async fn an_init_container_that_keeps_failing_makes_the_cluster_failing() {
    let c = TestCluster::legacy_and_module().await;
    for step in ["migrate", "backup"] {
        c.run(&[step]).assert_ok();
    }
    module::install_operator(&c).await;
    let pod_name = "connectivity-proxy-operator-7c9d6b5f4-x2k9q";
    let mut pod = module::operator_pod(&c, pod_name).await;
    // A value of the Pod that status must never show.
    let secret_value = "value-status-never-shows";
    pod.spec
        .as_mut()
        .expect("spec")
        .init_containers
        .as_mut()
        .expect("init containers")[2]
        .env
        .get_or_insert_default()
        .push(serde_json::from_value(json!({"name": "X", "value": secret_value})).expect("env"));
    module::create_pod(&c, &pod).await;
    // Another Pod in kyma-system, not the Deployment's, failing the same way: not looked at.
    let mut other = pod.clone();
    other.metadata.name = Some("someone-else".into());
    other.metadata.labels = Some([("app".to_string(), "someone-else".to_string())].into());
    module::create_pod(&c, &other).await;

    // Created, not started: not failing.
    assert_phase(&c, "in-progress", "next: clean");

    let message = "clean failed: refusing to delete the legacy installation: backup copy \
                   connectivity-proxy-backup/connectivity-proxy does not match its source";
    let statuses = |message: &str| -> PodStatus {
        serde_json::from_value(json!({
            "phase": "Pending",
            "initContainerStatuses": [
                {"name": "init-migrator", "image": "cp-mod-migrator:0.1.0", "imageID": "",
                 "ready": true, "restartCount": 0,
                 "state": {"terminated": {"exitCode": 0, "reason": "Completed"}}},
                {"name": "init-backup", "image": "cp-mod-backup:0.1.0", "imageID": "",
                 "ready": true, "restartCount": 0,
                 "state": {"terminated": {"exitCode": 0, "reason": "Completed"}}},
                {"name": "init-cleaner", "image": "cp-mod-cleaner:0.1.0", "imageID": "",
                 "ready": false, "restartCount": 4,
                 "state": {"waiting": {"reason": "CrashLoopBackOff",
                     "message": "back-off 1m20s restarting failed container"}},
                 "lastState": {"terminated": {"exitCode": 1, "reason": "Error",
                     "message": message}}},
            ],
        }))
        .expect("PodStatus")
    };
    module::write_pod_status(&c, "someone-else", statuses("not this one")).await;
    assert_phase(&c, "in-progress", "next: clean");

    module::write_pod_status(&c, pod_name, statuses(message)).await;
    let (json, text) = assert_phase(
        &c,
        "failing",
        &format!(
            "init container init-cleaner (step clean) of Pod {pod_name} keeps failing after 4 \
             restarts"
        ),
    );
    assert_eq!(
        json["failing"],
        json!({
            "pod": pod_name,
            "container": "init-cleaner",
            "step": "clean",
            "restarts": 4,
            "message": message,
        })
    );
    let rows: Vec<&str> = text.lines().collect();
    let at = rows
        .iter()
        .position(|l| l.starts_with("failing init container"))
        .unwrap_or_else(|| panic!("no failing row:\n{text}"));
    assert!(
        rows[at].ends_with(&format!(
            "init-cleaner in Pod {pod_name}: step clean, 4 restarts"
        )),
        "{text}"
    );
    assert_eq!(rows[at + 1].trim(), format!("message: {message}"), "{text}");
    for shown in [&json.to_string(), &text] {
        assert!(!shown.contains(secret_value), "{shown}");
        assert!(!shown.contains("not this one"), "{shown}");
        assert!(!shown.contains("back-off"), "{shown}");
    }

    // The container ran once more and finished: failing no longer.
    let mut recovered = statuses(message);
    let cleaner = &mut recovered
        .init_container_statuses
        .as_mut()
        .expect("statuses")[2];
    cleaner.restart_count = 5;
    cleaner.state = Some(
        serde_json::from_value(json!({"terminated": {"exitCode": 0, "reason": "Completed"}}))
            .expect("state"),
    );
    module::write_pod_status(&c, pod_name, recovered).await;
    assert_phase(&c, "in-progress", "next: clean");
}

// ---------------------------------------------------------------------------------------------
// unreachable

/// A kubeconfig whose server is a closed port on 127.0.0.1: status prints the phase
/// `unreachable` with the error, in text and JSON, and exits 1.
#[tokio::test]
async fn a_cluster_that_cannot_be_asked_is_unreachable_and_status_exits_1() {
    let dir = tempfile::tempdir().expect("tempdir");
    let port = {
        let listener = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
        listener.local_addr().expect("addr").port()
    };
    let kubeconfig = dir.path().join("kubeconfig");
    std::fs::write(
        &kubeconfig,
        format!(
            "apiVersion: v1\nkind: Config\nclusters:\n- name: c\n  cluster:\n    server: https://127.0.0.1:{port}\n    insecure-skip-tls-verify: true\nusers:\n- name: u\n  user:\n    token: t\ncontexts:\n- name: c\n  context:\n    cluster: c\n    user: u\ncurrent-context: c\n"
        ),
    )
    .expect("write kubeconfig");
    for output in ["json", "text"] {
        let child = spawn_tool(
            &kubeconfig,
            &["--deadline", "2s"],
            &["status", "-o", output],
        );
        let r = finish(child, RUN_LIMIT).await;
        assert_eq!(r.output.status.code(), Some(1), "{}", r.stderr);
        assert_eq!(r.outcome(), "failed");
        if output == "json" {
            let json: Value = serde_json::from_str(&r.stdout)
                .unwrap_or_else(|e| panic!("status JSON ({e}):\n{}", r.stdout));
            assert_eq!(json["phase"], "unreachable", "{json:#}");
            let reason = json["phase_reason"].as_str().expect("phase_reason");
            assert!(
                reason.starts_with("the API server could not be asked: "),
                "{reason}"
            );
            assert_eq!(json["error"].as_str(), Some(r.reason().as_str()));
        } else {
            let first = r.stdout.lines().next().expect("a first line");
            assert!(
                first.starts_with("phase  unreachable: the API server could not be asked: "),
                "{}",
                r.stdout
            );
            let error_row = r.stdout.lines().nth(1).expect("an error row");
            assert_eq!(error_row, format!("error  {}", r.reason()), "{}", r.stdout);
        }
    }
}

/// A ServiceAccount that may read nothing: the API server answers, and refuses. status prints
/// `unreachable` with the refusal and exits 1.
#[tokio::test]
async fn a_cluster_that_refuses_is_unreachable_and_status_exits_1() {
    let c = TestCluster::start().await;
    let token = c.token_for("default", "may-read-nothing").await;
    let kubeconfig = c.kubeconfig_with_token(&token, "nothing.kubeconfig");
    let r = run_tool(&kubeconfig, &["status", "-o", "json"]);
    assert_eq!(r.output.status.code(), Some(1), "{}", r.stderr);
    let json: Value = serde_json::from_str(&r.stdout)
        .unwrap_or_else(|e| panic!("status JSON ({e}):\n{}", r.stdout));
    assert_eq!(json["phase"], "unreachable", "{json:#}");
    let reason = json["phase_reason"].as_str().expect("phase_reason");
    assert!(
        reason.starts_with("the API server refused: ") && reason.contains("forbidden"),
        "{reason}"
    );
}
