//! Operating the tool: the RBAC manifests (deploy/rbac.yaml, and deploy/rbac-rollback.yaml for a
//! rollback only) proven sufficient and minimal on the RBAC-enforcing test API server, the restore
//! drill, and the container images with the example Deployment's init containers run against a
//! test cluster.

mod support;

use std::path::Path;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use k8s_openapi::api::authorization::v1::ResourceAttributes;
use k8s_openapi::api::core::v1::ConfigMap;
use kube::api::{Api, DeleteParams, DynamicObject, Patch, PatchParams, ValidationDirective};
use kube::{Client, ResourceExt};
use serde_json::{Value, json};
use support::config_maps::user_config;
use support::contract::{
    BACKUP_NAMESPACE, KYMA_SYSTEM, OPERATOR_DEPLOYMENT, USER_CONFIG, legacy_installed, markers,
};
use support::events::tool_events;
use support::images::Image;
use support::pod::{Pod, example_deployment, image_of, security_context_flags};
use support::podman::Podman;
use support::rbac::{
    EVERYDAY, Manifest, ROLLBACK, RuleId, SA_NAME, SA_NAMESPACE, Usage, cluster_as_sa, create,
    permissions_of, refused_create, sa_user,
};
use support::rbac_scenario::{Scenario, Stop};
use support::snapshot::{comparable_across_clusters, state_diff};
use support::values::str_of;
use support::*;

// ---------------------------------------------------------------------------------------------
// RBAC: sufficient

/// The whole migration and every hand-run command succeed as the ServiceAccount, and the state
/// after `run` equals that of the same run with cluster-admin rights. Every request the tool
/// made is allowed by exactly one rule, and every verb and every resource name of every rule
/// was used by some request: so no rule, verb or name is redundant (the next test proves each
/// rule necessary by removing it).
#[tokio::test]
async fn the_rbac_manifest_suffices_for_every_command() {
    let manifest = Manifest::load();
    let (reference, (c, kubeconfig)) = tokio::join!(
        async {
            let a = TestCluster::legacy_and_module().await;
            manifest.apply(&a, EVERYDAY).await;
            a.run(&["run"]).assert_ok();
            comparable_across_clusters(a.snapshot().await)
        },
        cluster_as_sa(&manifest)
    );
    let scenario = Scenario::played(&c, &kubeconfig, &manifest, Some(&reference)).await;
    let requests = scenario.requests();
    assert!(
        requests.len() > 100,
        "request log: {} requests",
        requests.len()
    );

    let usage = Usage::of(&manifest, &requests, &c).await;
    let unused = usage.unused(&manifest);
    assert!(
        unused.is_empty(),
        "granted but never used:\n{}",
        unused.join("\n")
    );
    // The everyday commands ran before deploy/rbac-rollback.yaml was applied: the everyday
    // manifest needs nothing that only rollback uses.
    let rollback_only = usage.rollback_only(&manifest);
    assert!(
        rollback_only.is_empty(),
        "used by rollback alone, so it belongs in {ROLLBACK}:\n{}",
        rollback_only.join("\n")
    );
    assert_eq!(manifest.unbound_roles(), Vec::<String>::new());
}

/// No wildcards anywhere, and a rule without `resourceNames` only where names cannot be given:
/// `create` and `list` (the name is not in the request path), and the users' own ServiceMappings.
#[test]
fn the_rbac_manifest_has_no_wildcards_and_names_what_it_can() {
    let manifest = Manifest::load();
    for id in manifest.rules() {
        let rule = manifest.rule(id);
        let what = manifest.describe(id);
        for key in ["apiGroups", "resources", "verbs", "resourceNames"] {
            assert!(
                rule[key]
                    .as_array()
                    .is_none_or(|a| a.iter().all(|x| !str_of(x).contains('*'))),
                "{what}: wildcard in {key}"
            );
        }
        assert!(rule.get("nonResourceURLs").is_none(), "{what}");
        if rule["resourceNames"].as_array().is_none_or(Vec::is_empty) {
            let user_named = rule["resources"] == json!(["servicemappings"]);
            // `escalate` is checked on a ClusterRole's create, before the name is known.
            let on_create = rule["resources"] == json!(["clusterroles"])
                && rule["verbs"]
                    .as_array()
                    .is_some_and(|v| v.contains(&json!("create")));
            for verb in rule["verbs"].as_array().expect("verbs") {
                assert!(
                    ["create", "list"].contains(&str_of(verb))
                        || (str_of(verb) == "escalate" && on_create)
                        || user_named,
                    "{what}: `{}` could be limited by resourceNames",
                    str_of(verb)
                );
            }
        }
    }
}

/// The ServiceAccount cannot make itself cluster-admin. On a cluster that clean has cleaned (the
/// normal state after a migration), as that ServiceAccount:
/// - with deploy/rbac.yaml alone, the four creates that together would make it cluster-admin
///   are refused: the legacy ClusterRole `connectivity-proxy-restart-watcher` with `*` on
///   everything, its binding to the legacy ServiceAccount of that name, that ServiceAccount,
///   and a Deployment of any name running as it; `rollback`, also with `--dry-run`, refuses
///   before writing anything and names deploy/rbac-rollback.yaml;
/// - the admission policy refuses the creates that RBAC cannot limit by name at other names:
///   Secrets only at the legacy names and the archive's (never a ServiceAccount token),
///   ConfigMaps and the namespace only at the legacy and backup names;
/// - with deploy/rbac-rollback.yaml too, the admission policy still refuses a Deployment at a
///   name that is not legacy, a legacy workload running as a ServiceAccount that is not legacy,
///   a ClusterRole at a name that is not legacy, and a legacy ClusterRoleBinding to a
///   ServiceAccount that is not legacy (itself); and `rollback --dry-run` goes through.
///
/// The operator's own ServiceAccount, bound to the same everyday roles, is not held to the
/// policy.
#[tokio::test]
async fn the_service_account_cannot_make_itself_cluster_admin() {
    let manifest = Manifest::load();
    let (c, kubeconfig) = cluster_as_sa(&manifest).await;
    c.run(&["run"]).assert_ok();
    let as_sa = client_for(&kubeconfig).await;
    rbac_alone_refuses_every_step_to_cluster_admin(&c, &as_sa).await;
    rollback_refuses_without_its_manifest_and_writes_nothing(&c, &kubeconfig).await;
    the_policy_refuses_creates_at_names_rbac_cannot_limit(&c, &as_sa).await;
    with_the_rollback_manifest_the_policy_still_refuses(&c, &manifest, &as_sa, &kubeconfig).await;
    the_operators_service_account_is_not_held_to_the_policy(&c).await;
}

/// A legacy ServiceAccount of kyma-system.
const LEGACY_SA: &str = "connectivity-proxy-restart-watcher";

/// What the admission policy says when it refuses a name.
const ONLY_LEGACY: &str =
    "may write only the objects of the legacy installation, its backup and its archive";

/// A Secret `namespace/name` of type `type_`, for the ServiceAccount.
fn secret(namespace: &str, name: &str, type_: &str) -> Value {
    json!({"apiVersion": "v1", "kind": "Secret",
        "metadata": {"name": name, "namespace": namespace,
            "annotations": {"kubernetes.io/service-account.name": SA_NAME}},
        "type": type_})
}

async fn rbac_alone_refuses_every_step_to_cluster_admin(c: &TestCluster, as_sa: &Client) {
    // With deploy/rbac.yaml alone: RBAC refuses each create.
    let escalation = [
        (
            "ClusterRole",
            json!({"apiVersion": "rbac.authorization.k8s.io/v1", "kind": "ClusterRole",
                "metadata": {"name": "connectivity-proxy-restart-watcher"},
                "rules": [{"apiGroups": ["*"], "resources": ["*"], "verbs": ["*"]}]}),
        ),
        (
            "ClusterRoleBinding",
            cluster_role_binding("connectivity-proxy-restart-watcher", LEGACY_SA),
        ),
        (
            "ServiceAccount",
            json!({"apiVersion": "v1", "kind": "ServiceAccount",
                "metadata": {"name": LEGACY_SA, "namespace": KYMA_SYSTEM}}),
        ),
        (
            "Deployment",
            workload("Deployment", "anything-i-like", Some(LEGACY_SA)),
        ),
    ];
    for (kind, object) in &escalation {
        let e = refused_create(c, as_sa, object).await;
        assert!(
            e.code == 403 && e.message.contains("cannot create resource"),
            "{kind}: {}",
            e.message
        );
    }
    // `kubectl auth can-i '*' '*' --as=system:serviceaccount:kyma-system:LEGACY_SA`
    let everything = ResourceAttributes {
        verb: Some("*".into()),
        group: Some("*".into()),
        resource: Some("*".into()),
        ..Default::default()
    };
    assert!(
        !support::rbac::allows(c, &sa_user(LEGACY_SA), &everything).await,
        "{LEGACY_SA} holds everything"
    );
}

async fn rollback_refuses_without_its_manifest_and_writes_nothing(
    c: &TestCluster,
    kubeconfig: &Path,
) {
    for args in [&["rollback"][..], &["rollback", "--dry-run"]] {
        let before = c.snapshot().await;
        let r = run_tool(kubeconfig, args);
        assert!(!r.success(), "{args:?} without {ROLLBACK}");
        let reason = r.reason();
        assert!(
            reason.contains(&format!("rollback needs the permissions of {ROLLBACK}"))
                && reason.contains("create apps/deployments in kyma-system")
                && reason.contains("escalate rbac.authorization.k8s.io/clusterroles")
                && reason.contains(&format!("kubectl apply -f {ROLLBACK}"))
                && reason.contains("nothing was written"),
            "{args:?}: {reason}"
        );
        let diff = state_diff(&before, &c.snapshot().await);
        assert!(diff.is_empty(), "{args:?} wrote: {diff:?}");
    }
}

async fn the_policy_refuses_creates_at_names_rbac_cannot_limit(c: &TestCluster, as_sa: &Client) {
    // Secrets: the policy reaches the admission chain through an informer; wait until it
    // refuses.
    let started = Instant::now();
    while create(as_sa, &secret(KYMA_SYSTEM, "probe", "Opaque"), true)
        .await
        .is_ok()
    {
        assert!(
            started.elapsed() < Duration::from_secs(30),
            "the admission policy is not in force after 30s"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let token = "kubernetes.io/service-account-token";
    let refused = [
        (
            secret(KYMA_SYSTEM, "not-a-legacy-secret", "Opaque"),
            ONLY_LEGACY,
        ),
        (secret("default", "anything", "Opaque"), ONLY_LEGACY),
        (
            secret(
                BACKUP_NAMESPACE,
                "connectivity-proxy-legacy-archive-b4",
                token,
            ),
            token,
        ),
        (
            secret(KYMA_SYSTEM, "connectivity-sm-operator-secrets-tls", token),
            token,
        ),
        // The other creates RBAC cannot limit by name: a ConfigMap that a cluster's DNS reads,
        // a namespace of any name.
        (
            json!({"apiVersion": "v1", "kind": "ConfigMap",
                "metadata": {"name": "coredns-custom", "namespace": "kube-system"}}),
            ONLY_LEGACY,
        ),
        (
            json!({"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": "anything"}}),
            ONLY_LEGACY,
        ),
    ];
    for (object, why) in &refused {
        let e = refused_create(c, as_sa, object).await;
        assert!(
            e.code == 403 && e.message.contains(why) && e.message.contains("denied"),
            "{} {}/{}: {}",
            object["kind"],
            object["metadata"]["namespace"],
            object["metadata"]["name"],
            e.message
        );
    }
    // What the tool writes is allowed.
    create(
        as_sa,
        &secret(
            BACKUP_NAMESPACE,
            "connectivity-proxy-legacy-archive-b4",
            "Opaque",
        ),
        true,
    )
    .await
    .expect("a part of the archive");
}

async fn with_the_rollback_manifest_the_policy_still_refuses(
    c: &TestCluster,
    manifest: &Manifest,
    as_sa: &Client,
    kubeconfig: &Path,
) {
    // With deploy/rbac-rollback.yaml too: the policy refuses what is not the legacy
    // installation.
    manifest.apply(c, ROLLBACK).await;
    manifest
        .wait_effective(c, &sa_user(SA_NAME), ROLLBACK)
        .await;
    let as_workload = "may run a workload only as a legacy ServiceAccount";
    let refused = [
        (
            workload("Deployment", "anything-i-like", Some(LEGACY_SA)),
            ONLY_LEGACY,
        ),
        (
            workload(
                "Deployment",
                "connectivity-proxy-restart-watcher",
                Some("connectivity-proxy-operator"),
            ),
            as_workload,
        ),
        (
            workload("StatefulSet", "connectivity-proxy", Some(SA_NAME)),
            as_workload,
        ),
        (
            json!({"apiVersion": "rbac.authorization.k8s.io/v1", "kind": "ClusterRole",
                "metadata": {"name": "not-a-legacy-role"}, "rules": []}),
            ONLY_LEGACY,
        ),
        (
            cluster_role_binding("connectivity-proxy-restart-watcher", SA_NAME),
            "may bind only the legacy ClusterRoles to the legacy ServiceAccounts of kyma-system",
        ),
    ];
    for (object, why) in &refused {
        let e = refused_create(c, as_sa, object).await;
        assert!(
            e.code == 403 && e.message.contains(why) && e.message.contains("denied"),
            "{} {}: {} {}",
            object["kind"],
            object["metadata"]["name"],
            e.code,
            e.message
        );
    }
    let r = run_tool(kubeconfig, &["rollback", "--dry-run"]);
    assert!(
        r.success() && r.reason().starts_with("would recreate 33 legacy objects"),
        "rollback --dry-run with {ROLLBACK}: {}",
        r.stderr
    );
}

async fn the_operators_service_account_is_not_held_to_the_policy(c: &TestCluster) {
    // The operator's own ServiceAccount is bound to the same ClusterRole, not to the policy.
    let token = c
        .token_for(SA_NAMESPACE, "connectivity-proxy-operator")
        .await;
    let as_operator = client_for(&c.kubeconfig_with_token(&token, "operator.kubeconfig")).await;
    create(
        &as_operator,
        &secret(KYMA_SYSTEM, "operators-own", "Opaque"),
        false,
    )
    .await
    .expect("the operator's ServiceAccount creates a Secret of its own");
}

/// A ClusterRoleBinding `name` of the ClusterRole of the same name to ServiceAccount
/// kyma-system/`service_account`.
fn cluster_role_binding(name: &str, service_account: &str) -> Value {
    json!({"apiVersion": "rbac.authorization.k8s.io/v1", "kind": "ClusterRoleBinding",
        "metadata": {"name": name},
        "roleRef": {"apiGroup": "rbac.authorization.k8s.io", "kind": "ClusterRole", "name": name},
        "subjects": [{"kind": "ServiceAccount", "name": service_account,
            "namespace": KYMA_SYSTEM}]})
}

/// A StatefulSet or Deployment in kyma-system whose Pods run any image as `service_account`.
fn workload(kind: &str, name: &str, service_account: Option<&str>) -> Value {
    let mut spec = json!({
        "selector": {"matchLabels": {"app": name}},
        "template": {
            "metadata": {"labels": {"app": name}},
            "spec": {"containers": [{"name": "any", "image": "registry.example/anything:latest"}]},
        },
    });
    if let Some(sa) = service_account {
        spec["template"]["spec"]["serviceAccountName"] = json!(sa);
    }
    if kind == "StatefulSet" {
        spec["serviceName"] = json!(name);
    }
    json!({"apiVersion": "apps/v1", "kind": kind,
        "metadata": {"name": name, "namespace": KYMA_SYSTEM}, "spec": spec})
}

// ---------------------------------------------------------------------------------------------
// RBAC: necessary

/// Clusters run in parallel, each in a thread of its own; the API servers take most of the time.
const WORKERS: usize = 3;

/// For every rule of both manifests: the same scenario, on a fresh cluster whose RBAC lacks only
/// that rule, is refused somewhere: by the API server ("forbidden"), or, for a rule of
/// deploy/rbac-rollback.yaml, by rollback itself before it writes anything, naming exactly what
/// the rule grants. So no rule is there without need.
#[test]
fn every_rbac_rule_is_necessary() {
    let manifest = Manifest::load();
    let rules = manifest.rules();
    assert!(!rules.is_empty());
    let queue = Arc::new(Mutex::new(rules.clone()));
    type Outcome = (RuleId, Result<Stop, String>, Duration, Duration);
    let results: Arc<Mutex<Vec<Outcome>>> = Arc::default();
    let started = Instant::now();
    let workers: Vec<_> = (0..WORKERS)
        .map(|_| {
            let (queue, results, manifest) = (queue.clone(), results.clone(), manifest.clone());
            std::thread::spawn(move || {
                let rt = tokio::runtime::Builder::new_current_thread()
                    .enable_all()
                    .build()
                    .expect("runtime");
                loop {
                    let Some(id) = queue.lock().expect("queue").pop() else {
                        break;
                    };
                    let t = Instant::now();
                    let mut setup = Duration::ZERO;
                    let outcome = rt.block_on(async {
                        let reduced = manifest.without(id);
                        let (c, kubeconfig) = cluster_as_sa(&reduced).await;
                        setup = t.elapsed();
                        let mut scenario = Scenario {
                            c: &c,
                            kubeconfig: &kubeconfig,
                            manifest: &reduced,
                            runs: Vec::new(),
                        };
                        match scenario.play(None).await {
                            Ok(()) => Err("the whole scenario succeeded".to_string()),
                            Err(stop) => Ok(stop),
                        }
                    });
                    results
                        .lock()
                        .expect("results")
                        .push((id, outcome, setup, t.elapsed()));
                }
            })
        })
        .collect();
    for w in workers {
        w.join().expect("worker");
    }
    let mut results = std::mem::take(&mut *results.lock().expect("results"));
    results.sort_by_key(|r| r.0);
    let mut report = String::new();
    let mut wrong = Vec::new();
    for (id, outcome, setup, took) in &results {
        let in_rollback = manifest.file_of(*id) == ROLLBACK;
        let line = match outcome {
            Ok(stop)
                if in_rollback && stop.rollback_refused_for(&permissions_of(&manifest, *id)) =>
            {
                "rollback refused, naming it, before writing anything".to_string()
            }
            Ok(stop) if !in_rollback && stop.forbidden() => format!("refused in `{}`", stop.step),
            Ok(stop) => {
                wrong.push(id);
                format!(
                    "stopped in `{}` but not {}: {}",
                    stop.step,
                    if in_rollback {
                        "by rollback's check of its permissions"
                    } else {
                        "by RBAC"
                    },
                    stop.evidence
                )
            }
            Err(e) => {
                wrong.push(id);
                e.clone()
            }
        };
        report.push_str(&format!(
            "{:>5.1}s (cluster {:>4.1}s)  without {}: {line}\n",
            took.as_secs_f64(),
            setup.as_secs_f64(),
            manifest.describe(*id)
        ));
    }
    eprintln!(
        "{} rules, each removed on a cluster of its own, {WORKERS} in parallel: {:.1}s\n{report}",
        results.len(),
        started.elapsed().as_secs_f64()
    );
    assert_eq!(results.len(), rules.len());
    assert!(
        wrong.is_empty(),
        "rules the scenario does not need:\n{report}"
    );
}

// ---------------------------------------------------------------------------------------------
// Restore drill

/// Migrate, back up and clean; the legacy installation comes back without its two ConfigMaps
/// (as the control plane brings it back after the module is disabled); `restore` puts both back
/// exactly as they were before the migration: data, binaryData, labels and annotations.
#[tokio::test]
async fn restore_drill_brings_back_the_user_configuration() {
    let c = TestCluster::legacy_and_module().await;
    // Binary data, a label and an annotation of the user's own, so that every part is checked.
    let cms: Api<ConfigMap> = Api::namespaced(c.client.clone(), KYMA_SYSTEM);
    for name in USER_CONFIG {
        cms.patch(
            name,
            &PatchParams::default(),
            &Patch::Merge(json!({
                "metadata": {"labels": {"team": "integration"},
                             "annotations": {"owner": "ops@example.com"}},
                "binaryData": {"blob": "AP8BAg=="},
            })),
        )
        .await
        .expect("patch");
    }
    let originals = user_config(&c, KYMA_SYSTEM).await;
    assert!(originals.iter().all(|o| {
        o.as_ref()
            .is_some_and(|(_, b, l, a)| !b.is_empty() && !l.is_empty() && !a.is_empty())
    }));

    for step in ["migrate", "backup", "clean"] {
        c.run(&[step]).assert_ok();
        assert_eq!(c.run(&[step]).outcome(), "skipped", "{step} again");
    }
    assert_eq!(
        user_config(&c, KYMA_SYSTEM).await,
        vec![None, None],
        "clean removed the user configuration from kyma-system"
    );

    // The legacy installation is back, without the two ConfigMaps.
    let dir = tempfile::tempdir().expect("tempdir");
    for entry in std::fs::read_dir(fixture_dir(LEGACY)).expect("fixtures") {
        let path = entry.expect("entry").path();
        let file = path
            .file_name()
            .and_then(|f| f.to_str())
            .unwrap_or_default();
        if !file.starts_with("30-configmap-") && !file.starts_with("31-configmap-") {
            std::fs::copy(&path, dir.path().join(file)).expect("copy");
        }
    }
    c.apply_dir(dir.path()).await;
    assert!(legacy_installed(&c.client).await);

    let before = c.snapshot().await;
    let dry = c.run(&["restore", "--dry-run"]);
    dry.assert_ok();
    for name in USER_CONFIG {
        assert!(
            dry.stdout
                .contains(&format!("would write ConfigMap kyma-system/{name}")),
            "{}",
            dry.stdout
        );
    }
    assert_eq!(
        state_diff(&before, &c.snapshot().await),
        Vec::<String>::new()
    );

    let r = c.run(&["restore"]);
    r.assert_ok();
    assert_eq!(
        r.reason(),
        "restored kyma-system/connectivity-proxy, kyma-system/connectivity-proxy-info"
    );
    assert_eq!(user_config(&c, KYMA_SYSTEM).await, originals);

    // A copy that is missing is skipped with a warning; the other is still restored.
    Api::<ConfigMap>::namespaced(c.client.clone(), BACKUP_NAMESPACE)
        .delete(USER_CONFIG[1], &DeleteParams::default())
        .await
        .expect("delete copy");
    cms.delete(USER_CONFIG[0], &DeleteParams::default())
        .await
        .expect("delete");
    let r = c.run(&["restore"]);
    r.assert_ok();
    assert!(r.stderr.contains("no backup copy; skipped"), "{}", r.stderr);
    assert_eq!(r.reason(), "restored kyma-system/connectivity-proxy");
    assert_eq!(user_config(&c, KYMA_SYSTEM).await, originals);
}

// ---------------------------------------------------------------------------------------------
// Images and the example Deployment

/// `make images` builds a static binary and one FROM-scratch image per step; the example
/// Deployment's init containers, run from those images (their OCI archives) under a real OCI
/// runtime as a kubelet runs them (read-only root filesystem, UID 1337, no capabilities, no new
/// privileges, the Pod's ServiceAccount token, a termination message file), migrate the cluster
/// in order, and do nothing when the Pod restarts; a failing step leaves its reason as the
/// termination message. The commented single `run` container does the same.
#[tokio::test]
async fn images_run_the_example_deployment_init_containers() {
    let t = Instant::now();
    let build = images::build();
    eprintln!(
        "scripts/images build: {:.1}s\n{}",
        t.elapsed().as_secs_f64(),
        String::from_utf8_lossy(&build.stderr)
    );
    let t = Instant::now();
    let runtime_dir = tempfile::tempdir().expect("tempdir");
    let podman = Podman::new(runtime_dir.path());
    let images = images::load(&podman);
    each_image_is_one_layer_from_scratch_for_its_step(&images);
    eprintln!(
        "podman and runc ready, the three archives loaded: {:.1}s",
        t.elapsed().as_secs_f64()
    );

    let (deployment, alternative) = example_deployment();
    let pod_spec = &deployment["spec"]["template"]["spec"];
    let init: Vec<Value> = pod_spec["initContainers"]
        .as_array()
        .expect("initContainers")
        .clone();
    let order: Vec<&str> = init.iter().map(|c| str_of(&c["name"])).collect();
    assert_eq!(order, ["init-migrator", "init-backup", "init-cleaner"]);
    for (container, expected) in init.iter().zip(&images) {
        assert_eq!(image_of(container, &images).name, expected.name);
    }
    assert_eq!(str_of(&alternative["command"][1]), "run");
    for container in init.iter().chain([&alternative]) {
        runs_as_a_hardened_container(container);
    }
    let service_account = str_of(&pod_spec["serviceAccountName"]).to_string();

    let (three, single) = tokio::join!(
        TestCluster::legacy_and_module(),
        TestCluster::legacy_and_module()
    );
    the_api_server_accepts_the_deployment_and_its_variant(&three, &deployment, &alternative).await;
    let pods = [
        pod_of_the_service_account(&three, &service_account).await,
        pod_of_the_service_account(&single, &service_account).await,
    ];
    neither_root_nor_writable(&three, &podman, &init[0], &images[0]);
    a_failing_step_leaves_its_reason(&three, &pods[0], &podman, &init[0], &images).await;

    let t = Instant::now();
    each_step_runs_once_and_skips_on_a_restart(&pods[0], &podman, &init, &images);
    eprintln!(
        "three init containers, started twice: {:.1}s",
        t.elapsed().as_secs_f64()
    );
    let cr_now = three.cr().await;
    for key in markers::ALL {
        assert_eq!(
            cr_now.annotations().get(key).map(String::as_str),
            Some("true"),
            "{key}"
        );
    }
    assert!(!legacy_installed(&three.client).await);
    let ours = tool_events(&three).await;
    assert_eq!(ours.len(), 3);
    assert!(
        ours.iter()
            .all(|e| e.reporting_instance.as_deref() == Some(pods[0].name.as_str())),
        "Events name the Pod"
    );

    let r = pods[1].run(&podman, &alternative, &images);
    r.result.assert_ok();
    assert_eq!(
        r.result.reason(),
        "migrate: done; backup: done; clean: done",
        "{}",
        r.result.stderr
    );
    assert_eq!(r.termination_message, "");
    assert!(!legacy_installed(&single.client).await);
}

/// One image per step, in the steps' order, each FROM scratch plus the binary, running it with
/// its step as UID 1337.
fn each_image_is_one_layer_from_scratch_for_its_step(images: &[Image]) {
    for image in images {
        assert_eq!(image.config["User"], "1337:1337", "{}", image.reference);
        assert_eq!(
            image.config["Entrypoint"],
            json!(["/cp-mod-migrator", image.step]),
            "{}",
            image.reference
        );
        assert_eq!(
            image.layers,
            Some(1),
            "{}: FROM scratch plus the binary",
            image.reference
        );
    }
    let names: Vec<&str> = images.iter().map(|i| i.name.as_str()).collect();
    assert_eq!(
        names,
        ["cp-mod-migrator", "cp-mod-backup", "cp-mod-cleaner"]
    );
}

/// The example's container: not root, read-only, no capabilities, no new privileges, the
/// runtime's seccomp profile, requests and limits, its Pod's name, and its reason kept when it
/// fails.
fn runs_as_a_hardened_container(container: &Value) {
    let sc = &container["securityContext"];
    let name = str_of(&container["name"]);
    assert_eq!(sc["runAsUser"], 1337, "{name}");
    assert_eq!(sc["runAsGroup"], 1337, "{name}");
    assert_eq!(sc["runAsNonRoot"], true, "{name}");
    assert_eq!(sc["readOnlyRootFilesystem"], true, "{name}");
    assert_eq!(sc["allowPrivilegeEscalation"], false, "{name}");
    assert_eq!(sc["capabilities"]["drop"], json!(["ALL"]), "{name}");
    assert_eq!(sc["seccompProfile"]["type"], "RuntimeDefault", "{name}");
    for kind in ["requests", "limits"] {
        for r in ["cpu", "memory"] {
            assert!(
                container["resources"][kind][r].is_string(),
                "{name}: resources.{kind}.{r}"
            );
        }
    }
    assert!(
        container["env"]
            .as_array()
            .is_some_and(|e| e.iter().any(|e| e["name"] == "POD_NAME"
                && e["valueFrom"]["fieldRef"]["fieldPath"] == "metadata.name")),
        "{name}: POD_NAME from the downward API"
    );
    // The termination message, or else the log's tail, when a step fails.
    assert_eq!(
        container["terminationMessagePolicy"], "FallbackToLogsOnError",
        "{name}"
    );
    assert!(container["terminationMessagePath"].is_null(), "{name}");
}

/// The API server accepts the Deployment, and the variant with the single container, as they
/// are (strict field validation, server-side dry run).
async fn the_api_server_accepts_the_deployment_and_its_variant(
    c: &TestCluster,
    deployment: &Value,
    alternative: &Value,
) {
    let deployments: Api<DynamicObject> = Api::namespaced_with(
        c.client.clone(),
        KYMA_SYSTEM,
        &kube::core::ApiResource::erase::<k8s_openapi::api::apps::v1::Deployment>(&()),
    );
    let strict = PatchParams {
        dry_run: true,
        field_validation: Some(ValidationDirective::Strict),
        ..PatchParams::apply("example-check")
    };
    let mut variant = deployment.clone();
    variant["spec"]["template"]["spec"]["initContainers"] = json!([alternative.clone()]);
    for d in [deployment, &variant] {
        deployments
            .patch(OPERATOR_DEPLOYMENT, &strict, &Patch::Apply(d))
            .await
            .unwrap_or_else(|e| panic!("the API server rejects the example Deployment: {e}"));
    }
}

/// The init containers run as the Pod's ServiceAccount, which the manifest binds.
async fn pod_of_the_service_account(c: &TestCluster, service_account: &str) -> Pod {
    let manifest = Manifest::load();
    manifest.apply(c, EVERYDAY).await;
    let pod = Pod::new(
        c,
        service_account,
        "connectivity-proxy-operator-5f7d9-x2k4q",
    )
    .await;
    manifest
        .wait_effective(c, &sa_user(service_account), EVERYDAY)
        .await;
    pod
}

/// Not root: a file only root may read is out of reach for the image's user. Read-only: the
/// failed command's termination message, sent to the image's only file, is refused by the
/// kernel (EROFS), and the command ends as it would anyway.
fn neither_root_nor_writable(c: &TestCluster, podman: &Podman, container: &Value, image: &Image) {
    let secret = c.dir().join("root-only");
    std::fs::write(&secret, "apiVersion: v1\nkind: Config\n").expect("write");
    std::fs::set_permissions(&secret, std::os::unix::fs::PermissionsExt::from_mode(0o600))
        .expect("chmod");
    let out = podman
        .command()
        .args(["run", "--rm", "--network", "none"])
        .args(security_context_flags(&container["securityContext"]))
        .arg("--volume")
        .arg(format!("{}:/probe/kubeconfig:ro", secret.display()))
        .args(["--env", "CP_MIGRATOR_LOG=info,cp_mod_migrator=debug"])
        .args([
            "--env",
            &format!("{}=/cp-mod-migrator", TERMINATION_LOG_ENV),
        ])
        .arg(&image.id)
        .args(["--kubeconfig", "/probe/kubeconfig"])
        .output()
        .expect("podman run");
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        !out.status.success() && stderr.contains("Permission denied"),
        "as the image's user, a root-only file must be unreadable:\n{stderr}"
    );
    assert!(
        stderr.contains("no termination message written")
            && stderr.contains("Read-only file system"),
        "the root filesystem must be read-only:\n{stderr}"
    );
}

/// A step that fails leaves its reason as the termination message; the kubelet then starts the
/// same container again, not the next one. The bad input is put back after.
async fn a_failing_step_leaves_its_reason(
    c: &TestCluster,
    pod: &Pod,
    podman: &Podman,
    container: &Value,
    images: &[Image],
) {
    let info: Api<ConfigMap> = Api::namespaced(c.client.clone(), KYMA_SYSTEM);
    let socks5 = |port: &str| Patch::Merge(json!({"data": {"onpremise_socks5_proxy_port": port}}));
    let good = info
        .get(USER_CONFIG[1])
        .await
        .expect("get")
        .data
        .expect("data")["onpremise_socks5_proxy_port"]
        .clone();
    info.patch(USER_CONFIG[1], &PatchParams::default(), &socks5("0"))
        .await
        .expect("a bad port");
    let failed = pod.run(podman, container, images);
    failed.result.assert_failed_with(&[
        "connectivity-proxy-info",
        "onpremise_socks5_proxy_port",
        "value \"0\"",
    ]);
    assert_eq!(
        failed.termination_message,
        failed.result.reason(),
        "{}",
        failed.result.stderr
    );
    info.patch(USER_CONFIG[1], &PatchParams::default(), &socks5(&good))
        .await
        .expect("the port as it was");
}

/// The three init containers in order: each done on the Pod's first start, each skipped on a
/// restart, none writing a termination message.
fn each_step_runs_once_and_skips_on_a_restart(
    pod: &Pod,
    podman: &Podman,
    init: &[Value],
    images: &[Image],
) {
    for round in ["first start", "restart"] {
        for (container, image) in init.iter().zip(images) {
            let r = pod.run(podman, container, images);
            r.result.assert_ok();
            assert_eq!(
                r.termination_message, "",
                "a step that succeeds writes none"
            );
            let line = r.result.last_line();
            assert_eq!(line["step"], image.step.as_str(), "{round}");
            let expected = if round == "first start" {
                "done"
            } else {
                "skipped"
            };
            assert_eq!(
                line["outcome"], expected,
                "{round} {}: {}",
                image.step, r.result.stderr
            );
        }
    }
}
