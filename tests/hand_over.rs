//! Handing the legacy installation over to the module without an outage rests on what the
//! Kubernetes controllers do with a workload's Pods. These cases run the real controllers
//! (kube-controller-manager of the API server's release) with a node agent in a kubelet's place,
//! and watch what a client of Service `kyma-system/connectivity-proxy` would see.

mod support;

use std::time::Duration;

use futures::StreamExt;
use k8s_openapi::api::apps::v1::StatefulSet;
use k8s_openapi::api::core::v1::Service;
use kube::ResourceExt;
use kube::api::{Api, DeleteParams, PropagationPolicy};
use support::node_agent::{Happened, NodeAgent, PodEvent};
use support::outage::{self, LIMIT};
use support::rbac::{HAND_OVER, Manifest, SA_NAME, sa_user};
use support::workloads::*;
use support::{Tenant, TestCluster, contract, fixture_dir, operator};

#[tokio::test]
async fn a_stateful_set_deleted_with_its_pods_orphaned_is_replaced_by_its_successor_without_an_outage()
 {
    let s = legacy_serving().await;

    // Deleted with its Pods orphaned: the garbage collector takes its ownership off them, and
    // they keep serving.
    delete_legacy(&s.c, PropagationPolicy::Orphan).await;
    let legacy_uid = s.legacy.uid().expect("uid");
    wait_for_pods(&s.c.client, "the legacy Pods orphaned", |pods| {
        pods.len() == 2 && pods.iter().all(|p| !owned_by(p, &legacy_uid))
    })
    .await;
    assert_eq!(s.endpoints.now(), 2, "orphaned Pods still serve");

    // The module's StatefulSet of the same name adopts them and replaces them one at a time,
    // from the highest ordinal down.
    let module: StatefulSet = create(&s.c.client, module_stateful_set()).await;
    let replaced = module_serving(&s.c, &module, &s.legacy_pods).await;
    s.endpoints.wait_for(2, LIMIT).await;
    let created = |name: &str| {
        replaced
            .iter()
            .find(|p| p.name_any() == name)
            .and_then(|p| p.metadata.creation_timestamp.clone())
            .unwrap_or_else(|| panic!("{name} replaced"))
    };
    assert!(
        created("connectivity-proxy-1").0 < created("connectivity-proxy-0").0,
        "-1 is replaced before -0"
    );

    // A client of the Service never lost it: the same ClusterIP, always a ready endpoint.
    let services: Api<Service> = Api::namespaced(s.c.client.clone(), NAMESPACE);
    let now = services.get(NAME).await.expect("Service");
    assert_eq!(
        now.spec.and_then(|s| s.cluster_ip),
        s.service.spec.clone().and_then(|s| s.cluster_ip)
    );
    assert_eq!(
        s.endpoints.outages(),
        Vec::<Duration>::new(),
        "intervals with no ready endpoint"
    );
}

#[tokio::test]
async fn a_stateful_set_deleted_with_its_pods_leaves_the_service_without_endpoints_until_its_successor_is_ready()
 {
    let s = legacy_serving().await;

    // Today's clean: the StatefulSet goes with its Pods (background propagation, the default).
    delete_legacy(&s.c, PropagationPolicy::Background).await;
    wait_for_pods(&s.c.client, "the legacy Pods gone", |pods| pods.is_empty()).await;
    assert_eq!(s.endpoints.now(), 0);

    let module: StatefulSet = create(&s.c.client, module_stateful_set()).await;
    module_serving(&s.c, &module, &s.legacy_pods).await;
    s.endpoints.wait_for(2, LIMIT).await;
    let outages = s.endpoints.outages();
    assert_eq!(outages.len(), 1, "one outage: {outages:?}");
    // At least the first Pod's start to Ready.
    assert!(outages[0] >= TIMING.ready_after, "{outages:?}");
}

/// Delays short enough for a test, long enough that their order shows.
const MODEL: outage::Model = outage::Model {
    replicas: 1,
    operator_start: Duration::from_secs(3),
    pods: TIMING,
};

#[tokio::test]
async fn with_todays_clean_the_proxy_has_no_endpoint_from_its_deletion_until_the_modules_pod_is_ready()
 {
    let seen = outage::migration(&["run"], MODEL).await;
    assert_eq!(seen.outages.len(), 1, "one outage: {seen:?}");
    assert!(
        seen.outages[0] >= MODEL.operator_start + MODEL.pods.ready_after,
        "at least the operator's start and its Pod's start: {seen:?}"
    );
}

/// docs/operator.md, the adoption rule: an object with the label and both annotations is
/// adopted, the next reconcile applies its desired state with force, and immutable fields such
/// as a StatefulSet's selector still refuse a change. Every legacy object at one of the operator's names handed over by
/// hand: the legacy workloads' selectors refuse the operator's; once they are deleted (their
/// Pods orphaned), the operator adopts the rest in place, each Service with its ClusterIP.
#[tokio::test]
async fn legacy_objects_at_the_operators_names_are_adopted_in_place_except_the_workloads() {
    // The garbage collector takes an orphaning delete's finalizer off.
    let c = TestCluster::with_controllers().await;
    for fixture in Tenant::Dedicated.fixtures() {
        c.apply_dir(&fixture_dir(fixture)).await;
    }
    c.run(&["migrate"]).assert_ok();
    c.run(&["backup"]).assert_ok();
    let mut handed_over = Vec::new();
    for d in operator::table(&c).await {
        if let Some(object) = d.get(&c.client).await {
            d.hand_over(&c.client).await;
            handed_over.push((d, object));
        }
    }
    let workload = |d: &operator::Dependent| ["StatefulSet", "Deployment"].contains(&d.kind.kind);
    assert!(handed_over.iter().any(|(d, _)| workload(d)));
    assert!(handed_over.iter().any(|(d, _)| !workload(d)));

    match operator::reconcile(&c).await {
        operator::Outcome::Error {
            object,
            code,
            message,
        } => {
            assert!(object.starts_with("Deployment ") || object.starts_with("StatefulSet "));
            assert_eq!(code, Some(422), "{message}");
            assert!(
                message.contains("spec.selector") && message.contains("field is immutable"),
                "{message}"
            );
        }
        other => panic!("a legacy workload's selector refuses the operator's: {other:?}"),
    }

    for (d, _) in handed_over.iter().filter(|(d, _)| workload(d)) {
        d.api(&c.client)
            .delete(
                &d.name,
                &DeleteParams {
                    propagation_policy: Some(PropagationPolicy::Orphan),
                    ..DeleteParams::default()
                },
            )
            .await
            .expect("delete a legacy workload, its Pods orphaned");
        let started = std::time::Instant::now();
        while d.get(&c.client).await.is_some() {
            assert!(started.elapsed() < LIMIT, "{} not gone", d.key());
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }
    assert_eq!(operator::reconcile(&c).await, operator::Outcome::Ready);
    for (d, before) in handed_over.iter().filter(|(d, _)| !workload(d)) {
        let after = d.get(&c.client).await.expect("still there");
        assert_eq!(after.uid(), before.uid(), "{} adopted in place", d.key());
        if d.kind.kind == "Service" {
            assert_eq!(
                after.data["spec"]["clusterIP"],
                before.data["spec"]["clusterIP"],
                "{} keeps its ClusterIP",
                d.key()
            );
        }
    }
}

// ---------------------------------------------------------------------------------------------
// clean --hand-over and finish (docs/contract.md)

/// The plan of `clean --hand-over --dry-run`: for each legacy object, handed over, orphaned,
/// left for finish or deleted; nothing written.
#[tokio::test]
async fn the_hand_over_plan_names_what_becomes_of_each_legacy_object() {
    let c = TestCluster::with(Tenant::Dedicated.fixtures()).await;
    c.run(&["migrate"]).assert_ok();
    c.run(&["backup"]).assert_ok();
    let r =
        support::unchanged::assert_writes_nothing(&c, &["clean", "--hand-over", "--dry-run"]).await;
    r.assert_ok();
    let planned = |verb: &str| -> Vec<String> {
        let prefix = format!("--- clean (dry run): would {verb} ");
        // "would delete 3 …", not "would delete with their Pods orphaned 3 …".
        let line = r
            .stdout
            .lines()
            .filter_map(|l| l.strip_prefix(&prefix))
            .find(|rest| rest.starts_with(|ch: char| ch.is_ascii_digit()))
            .unwrap_or_else(|| panic!("no plan line {prefix:?}:\n{}", r.stdout));
        let (_, objects) = line.split_once(": ").unwrap_or(("", ""));
        plan_entries(objects)
    };
    let sorted = |names: &[&str]| {
        let mut v: Vec<String> = names.iter().map(|s| s.to_string()).collect();
        v.sort();
        v
    };
    let mut handed = planned("hand over to the module's operator");
    handed.sort();
    assert_eq!(handed, sorted(&contract::hand_over::HANDED_OVER));
    let mut orphaned = planned("delete with their Pods orphaned");
    orphaned.sort();
    assert_eq!(orphaned, sorted(&contract::hand_over::ORPHANED));
    let mut left = planned("leave for finish");
    left.sort();
    assert_eq!(left, sorted(&contract::hand_over::LEFT_FOR_FINISH));
    // The rest of clean's table goes as in a plain clean: the webhook among it.
    let deleted = planned("delete");
    assert!(deleted.contains(&"ValidatingWebhookConfiguration webhook-secret".to_string()));
    assert_eq!(
        handed.len() + orphaned.len() + left.len() + deleted.len(),
        contract::CLEAN_TABLE
            .iter()
            .map(|r| r.names.len())
            .sum::<usize>(),
        "every object of clean's table has one fate: {deleted:?}"
    );
    assert!(
        r.stdout
            .contains(&format!("{}=true", contract::markers::HANDED_OVER)),
        "{}",
        r.stdout
    );
}

/// A legacy ConfigMap at one of the operator's names marked `immutable: true`: the API server
/// would refuse the operator's apply of its own data over it (the module in Error for good), so
/// `check` names it before anything is written and `clean --hand-over` deletes it, saying why,
/// while the rest is handed over.
#[tokio::test]
async fn an_immutable_config_map_is_deleted_instead_of_handed_over_and_check_names_it() {
    const INFO: &str = "ConfigMap kyma-system/connectivity-proxy-info";
    let c = TestCluster::with(Tenant::Dedicated.fixtures()).await;
    c.merge_patch(
        "ConfigMap",
        contract::KYMA_SYSTEM,
        "connectivity-proxy-info",
        &serde_json::json!({"immutable": true}),
    )
    .await;

    let r = support::unchanged::assert_writes_nothing(&c, &["check", "-o", "json"]).await;
    let report: serde_json::Value = serde_json::from_str(&r.stdout).expect("check's JSON");
    let named: Vec<&serde_json::Value> = report["not_handed_over"]
        .as_array()
        .expect("not_handed_over")
        .iter()
        .filter(|reason| reason["object"] == INFO)
        .collect();
    assert_eq!(named.len(), 1, "{report:#}");
    assert!(
        named[0]["message"]
            .as_str()
            .is_some_and(|m| m.contains("immutable")),
        "{report:#}"
    );

    c.run(&["migrate"]).assert_ok();
    c.run(&["backup"]).assert_ok();
    let r =
        support::unchanged::assert_writes_nothing(&c, &["clean", "--hand-over", "--dry-run"]).await;
    let deleted = r
        .stdout
        .lines()
        .filter_map(|l| l.strip_prefix("--- clean (dry run): would delete "))
        .find(|rest| rest.starts_with(|ch: char| ch.is_ascii_digit()))
        .unwrap_or_else(|| panic!("no plan of deletions:\n{}", r.stdout));
    assert!(
        deleted.contains(&format!("{INFO} (immutable")),
        "the plan says why: {deleted}"
    );

    c.run(&["clean", "--hand-over"]).assert_ok();
    assert_eq!(existing(&c, &[INFO]).await, Vec::<String>::new(), "deleted");
    let snapshot = c.snapshot().await;
    for key in contract::hand_over::HANDED_OVER
        .iter()
        .filter(|k| **k != INFO)
    {
        let (kind, place) = key.split_once(' ').expect("Kind namespace/name");
        let object = snapshot
            .iter()
            .find(|(k, _)| k.ends_with(&format!("/{kind} {place}")))
            .map(|(_, v)| v)
            .unwrap_or_else(|| panic!("{key} gone"));
        let meta: kube::api::ObjectMeta =
            serde_json::from_value(object["metadata"].clone()).expect("metadata");
        assert!(contract::is_adopted(&meta), "{key} handed over: {object}");
    }
}

/// The objects of one plan line, each `Kind namespace/name` without the reason after it.
fn plan_entries(line: &str) -> Vec<String> {
    let mut entries: Vec<String> = Vec::new();
    for piece in line.split(", ") {
        match entries.last_mut() {
            // A reason's own commas: the next entry starts with a Kind.
            Some(last) if !piece.starts_with(|ch: char| ch.is_ascii_uppercase()) => {
                last.push_str(", ");
                last.push_str(piece);
            }
            _ => entries.push(piece.to_string()),
        }
    }
    entries
        .into_iter()
        .filter(|e| !e.is_empty())
        .map(|e| e.split(" (").next().unwrap_or("").to_string())
        .collect()
}

/// Two replicas, the hand-over, the operator, then finish: no interval without a ready endpoint
/// on the proxy or its tunnel, the same ClusterIP throughout; every handed-over object adopted
/// in place and nothing finish should delete gone before it; after finish no legacy object and
/// no legacy Pod without a controller.
#[tokio::test]
async fn with_hand_over_two_replicas_serve_throughout_and_finish_leaves_no_legacy_object() {
    let model = outage::Model {
        replicas: 2,
        ..MODEL
    };
    let m = outage::migrated(&["run", "--hand-over"], model).await;
    let c = &m.c;
    assert_eq!(m.seen.outages, Vec::<Duration>::new(), "{:?}", m.seen);
    assert_eq!(
        m.seen.tunnel_outages,
        Vec::<Duration>::new(),
        "{:?}",
        m.seen
    );
    assert_eq!(m.seen.cluster_ips.len(), 1, "{:?}", m.seen);

    // The module adopted what was handed over: the operator's label and annotations, same uid.
    for d in operator::table(c).await {
        let key = d.key();
        if !contract::hand_over::HANDED_OVER.contains(&key.as_str()) {
            continue;
        }
        let now = d
            .get(&c.client)
            .await
            .unwrap_or_else(|| panic!("{key} is there"));
        assert!(
            contract::is_the_operators(&now.metadata),
            "{key} is the operator's"
        );
        let managers: Vec<String> = now
            .metadata
            .managed_fields
            .iter()
            .flatten()
            .filter_map(|f| f.manager.clone())
            .collect();
        assert!(
            managers.contains(&operator::FIELD_MANAGER.to_string()),
            "{key} reconciled by the operator: {managers:?}"
        );
    }
    let left_before = existing(c, &contract::hand_over::LEFT_FOR_FINISH).await;
    assert_eq!(
        left_before.len(),
        contract::hand_over::LEFT_FOR_FINISH.len(),
        "nothing finish should delete is gone before it: {left_before:?}"
    );
    let status = c.run(&["status", "-o", "json"]);
    let status: serde_json::Value = serde_json::from_str(&status.stdout).expect("status JSON");
    assert_eq!(status["phase"], "handed-over", "{status}");

    c.run(&["finish"]).assert_ok();
    let cr = c.cr().await;
    assert_eq!(
        cr.annotations()
            .get(contract::markers::FINISHED)
            .map(String::as_str),
        Some("true")
    );
    assert_eq!(
        existing(c, &contract::hand_over::LEFT_FOR_FINISH).await,
        Vec::<String>::new()
    );
    let pods: Api<k8s_openapi::api::core::v1::Pod> = Api::namespaced(c.client.clone(), NAMESPACE);
    let uncontrolled: Vec<String> = pods
        .list(&Default::default())
        .await
        .expect("Pods")
        .items
        .iter()
        .filter(|p| p.metadata.deletion_timestamp.is_none() && !controlled(&p.metadata))
        .map(|p| p.name_any())
        .collect();
    assert_eq!(uncontrolled, Vec::<String>::new(), "orphaned legacy Pods");
    let status = c.run(&["status", "-o", "json"]);
    let status: serde_json::Value = serde_json::from_str(&status.stdout).expect("status JSON");
    assert_eq!(status["phase"], "done", "{status}");
    // Once finished, finish has nothing to do.
    let again = c.run(&["finish"]);
    again.assert_ok();
    assert!(
        again.reason().contains("already finished"),
        "{}",
        again.reason()
    );
}

/// One replica: the legacy Pod serves through `run` and the operator's start, and the one
/// outage is its replacement alone: it begins once the legacy Pod is removed, after the
/// operator started, and ends once the new Pod is Ready, with no other event of the proxy's
/// Pods in between. (How long that takes, and today's outage beside it, are the benchmark's
/// figures, section 8.)
#[tokio::test]
async fn with_hand_over_one_replica_the_outage_is_only_the_replacement_of_its_pod() {
    let seen = outage::migration(&["run", "--hand-over"], MODEL).await;
    assert!(seen.outage_spans.len() <= 1, "{seen:?}");
    assert_eq!(seen.cluster_ips.len(), 1, "{seen:?}");
    let Some(&(from, to)) = seen.outage_spans.first() else {
        return;
    };
    assert!(
        from >= seen.operator_started,
        "the legacy Pod served until the operator started: {seen:?}"
    );
    // The proxy's Pods: the StatefulSet's, `connectivity-proxy-<ordinal>`.
    let proxy_pods: Vec<&PodEvent> = seen
        .pods
        .iter()
        .filter(|e| {
            e.pod
                .strip_prefix("connectivity-proxy-")
                .is_some_and(|ordinal| ordinal.parse::<u32>().is_ok())
        })
        .collect();
    let legacy = proxy_pods
        .first()
        .map(|e| e.uid.clone())
        .unwrap_or_default();
    let removed = proxy_pods
        .iter()
        .find(|e| e.uid == legacy && e.happened == Happened::Removed);
    let Some(removed) = removed else {
        panic!("the legacy Pod was never removed: {proxy_pods:#?}");
    };
    assert!(
        removed.at <= from,
        "the outage began once the legacy Pod was removed, not before: {proxy_pods:#?}"
    );
    let since_removed: Vec<(Happened, bool)> = proxy_pods
        .iter()
        .filter(|e| removed.at <= e.at && e.at <= to)
        .map(|e| (e.happened, e.uid == legacy))
        .collect();
    assert_eq!(
        since_removed,
        [
            (Happened::Removed, true),
            (Happened::Started, false),
            (Happened::Ready, false)
        ],
        "from the legacy Pod's removal to the end of the outage, only its replacement started \
         and became Ready: {proxy_pods:#?}"
    );
}

/// finish before the module is Ready: with --no-wait it exits 0 saying what it waits for and
/// deletes nothing; without, it waits until the deadline and fails saying the same.
#[tokio::test]
async fn finish_before_the_module_is_ready_waits_and_deletes_nothing() {
    let c = TestCluster::with(Tenant::Dedicated.fixtures()).await;
    c.run(&["run", "--hand-over"]).assert_ok();
    let r = support::unchanged::assert_writes_nothing(&c, &["finish", "--no-wait"]).await;
    r.assert_ok();
    assert_eq!(r.outcome(), "skipped");
    assert!(
        r.reason().contains("waiting for the module to be Ready"),
        "{}",
        r.reason()
    );
    let r = support::unchanged::assert_writes_nothing(&c, &["finish", "--deadline", "3s"]).await;
    r.assert_failed_with(&["waited for the module to be Ready", "nothing was deleted"]);
    // A watch on which nothing happens for longer than one request's timeout is not a failed
    // request: the server ends it first, and finish watches again, with nothing retried.
    let r = support::unchanged::assert_writes_nothing(
        &c,
        &["finish", "--deadline", "7s", "--request-timeout", "2s"],
    )
    .await;
    r.assert_failed_with(&["waited for the module to be Ready", "nothing was deleted"]);
    assert_eq!(r.last_line()["retries"], 0, "{}", r.stderr);
}

/// finish started while the module is not yet Ready waits on a watch of the CR, longer than one
/// request's timeout, and finishes as soon as the module is Ready and rolled.
#[tokio::test]
async fn finish_started_before_the_module_is_ready_finishes_once_it_is() {
    let (c, _agent) = legacy_on_the_controllers().await;
    c.run(&["run", "--hand-over"]).assert_ok();
    let finishing = support::spawn_tool(
        &c.kubeconfig,
        &["--deadline", "100s", "--request-timeout", "3s"],
        &["finish"],
    );
    // Several watches' worth of waiting before the module gets there.
    tokio::time::sleep(Duration::from_secs(8)).await;
    operator_ready(&c).await;
    let r = support::finish(finishing, LIMIT).await;
    r.assert_ok();
    assert_eq!(r.outcome(), "done", "{}", r.stderr);
    assert_eq!(
        existing(&c, &contract::hand_over::LEFT_FOR_FINISH).await,
        Vec::<String>::new()
    );
}

/// The objects of `keys` (`Kind namespace/name`, as the contract names them) that exist.
async fn existing(c: &TestCluster, keys: &[&str]) -> Vec<String> {
    let snapshot = c.snapshot().await;
    keys.iter()
        .filter(|key| {
            let (kind, place) = key.split_once(' ').expect("Kind namespace/name");
            snapshot
                .keys()
                .any(|k| k.ends_with(&format!("/{kind} {place}")))
        })
        .map(|k| k.to_string())
        .collect()
}

// ---------------------------------------------------------------------------------------------
// Permissions: deploy/rbac-hand-over.yaml beside deploy/rbac.yaml

/// The legacy installation and the module on the real controllers, with Pods that become Ready
/// (the module's StatefulSet replaces the legacy ones, and finish waits for that).
async fn legacy_on_the_controllers() -> (TestCluster, NodeAgent) {
    let c = TestCluster::with_controllers().await;
    let agent = NodeAgent::start(&c.client, "node-a", TIMING).await;
    for fixture in Tenant::Dedicated.fixtures() {
        c.apply_dir(&fixture_dir(fixture)).await;
    }
    (c, agent)
}

/// A cluster with the legacy installation, the module and the controllers (the garbage
/// collector completes the orphaning deletes), deploy/rbac.yaml applied, and a kubeconfig of
/// its ServiceAccount.
async fn cluster_as_sa(manifest: &Manifest) -> (TestCluster, std::path::PathBuf, NodeAgent) {
    let (c, agent) = legacy_on_the_controllers().await;
    let kubeconfig = manifest.as_service_account(&c).await;
    support::workloads::settled(&c).await;
    (c, kubeconfig, agent)
}

/// The module's operator after clean: once the orphaned legacy workloads are gone, it adopts
/// what was handed over and reports Ready.
async fn operator_ready(c: &TestCluster) {
    let started = std::time::Instant::now();
    while !existing(c, &contract::hand_over::ORPHANED).await.is_empty() {
        assert!(started.elapsed() < LIMIT, "the orphaned workloads not gone");
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    assert_eq!(
        operator::reconcile_until_rolled(c, Duration::from_millis(500), LIMIT).await,
        operator::Outcome::Ready
    );
}

/// As the ServiceAccount: migrate and backup; clean --hand-over, then (the operator Ready)
/// finish. Returns the first command that did not succeed, with its log.
async fn hand_over_as(
    c: &TestCluster,
    kubeconfig: &std::path::Path,
) -> Result<(), (String, String)> {
    let as_sa = |args: &[&str]| support::run_tool(kubeconfig, args);
    for args in [&["migrate"][..], &["backup"], &["clean", "--hand-over"]] {
        let r = as_sa(args);
        if !r.success() {
            return Err((args.join(" "), r.stderr.clone()));
        }
    }
    operator_ready(c).await;
    let r = as_sa(&["finish", "--deadline", "30s"]);
    if !r.success() {
        return Err(("finish".into(), r.stderr.clone()));
    }
    Ok(())
}

/// deploy/rbac.yaml alone: clean --hand-over and finish stop before they write anything,
/// naming deploy/rbac-hand-over.yaml; with it beside, the hand-over and finish run through.
#[tokio::test]
async fn the_hand_over_runs_with_its_manifest_and_stops_without_it_writing_nothing() {
    let manifest = Manifest::hand_over();
    let (c, kubeconfig, _agent) = cluster_as_sa(&manifest).await;
    let as_sa = |args: &[&str]| support::run_tool(&kubeconfig, args);
    as_sa(&["migrate"]).assert_ok();
    as_sa(&["backup"]).assert_ok();
    let r =
        support::unchanged::assert_writes_nothing_as(&c, &kubeconfig, &["clean", "--hand-over"])
            .await;
    r.assert_failed_with(&[
        "clean --hand-over needs the permissions of deploy/rbac-hand-over.yaml",
        "patch services connectivity-proxy in kyma-system",
        "nothing was written",
    ]);
    let r = support::unchanged::assert_writes_nothing_as(&c, &kubeconfig, &["finish", "--no-wait"])
        .await;
    r.assert_failed_with(&[
        "finish needs the permissions of deploy/rbac-hand-over.yaml",
        "watch connectivityproxy.sap.com/connectivityproxies connectivity-proxy in kyma-system",
    ]);

    manifest.apply(&c, HAND_OVER).await;
    manifest
        .wait_effective(&c, &sa_user(SA_NAME), HAND_OVER)
        .await;
    as_sa(&["clean", "--hand-over"]).assert_ok();
    operator_ready(&c).await;
    as_sa(&["finish", "--deadline", "30s"]).assert_ok();
    assert_eq!(
        existing(&c, &contract::hand_over::LEFT_FOR_FINISH).await,
        Vec::<String>::new()
    );
}

/// Each rule of deploy/rbac-hand-over.yaml removed in turn (on a cluster of its own): the
/// hand-over or finish stops, naming the manifest.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_hand_over_rule_is_necessary() {
    let manifest = Manifest::hand_over();
    let rules: Vec<_> = manifest
        .rules()
        .into_iter()
        .filter(|id| manifest.file_of(*id) == HAND_OVER)
        .collect();
    assert_eq!(rules.len(), 7, "the rules of {HAND_OVER}");
    let cases = rules.iter().map(|&id| {
        let manifest = &manifest;
        async move {
            let reduced = manifest.without(id);
            let (c, kubeconfig, _agent) = cluster_as_sa(&reduced).await;
            reduced.apply(&c, HAND_OVER).await;
            reduced
                .wait_effective(&c, &sa_user(SA_NAME), HAND_OVER)
                .await;
            (manifest.describe(id), hand_over_as(&c, &kubeconfig).await)
        }
    });
    // Two clusters with controllers at a time: a 2-core machine.
    let results: Vec<_> = futures::stream::iter(cases)
        .buffer_unordered(2)
        .collect()
        .await;
    let unnecessary: Vec<&String> = results
        .iter()
        .filter(|(_, r)| r.is_ok())
        .map(|(rule, _)| rule)
        .collect();
    assert!(unnecessary.is_empty(), "runs without: {unnecessary:?}");
    for (rule, r) in &results {
        let Err((command, log)) = r else { continue };
        assert!(
            log.contains(&format!("needs the permissions of {HAND_OVER}"))
                && log.contains("nothing was written"),
            "without {rule}, {command} stopped for another reason:\n{log}"
        );
    }
}

/// contract.md: finish deletes "the orphaned legacy ReplicaSets and Pods that no workload adopted".
/// With the restart watcher off in the CR, the operator makes no Deployment of that name: the
/// legacy one's ReplicaSet and Pod, orphaned by the hand-over, stay until finish.
#[tokio::test]
async fn finish_deletes_the_legacy_pods_no_workload_adopted() {
    let c = TestCluster::with_controllers().await;
    let _agent = support::node_agent::NodeAgent::start(&c.client, "node-a", TIMING).await;
    for fixture in Tenant::Dedicated.fixtures() {
        c.apply_dir(&fixture_dir(fixture)).await;
    }
    support::cr::api(&c.client)
        .patch(
            contract::cr::NAME,
            &kube::api::PatchParams::default(),
            &kube::api::Patch::Merge(serde_json::json!(
                {"spec": {"deployment": {"restartWatcher": {"enabled": false}}}}
            )),
        )
        .await
        .expect("the restart watcher off");
    let watcher = "app=connectivity-proxy-restart-watcher";
    wait_for_pods_of(&c, watcher, "the legacy restart watcher runs", |p| {
        p.len() == 1
    })
    .await;
    c.run(&["run", "--hand-over"]).assert_ok();
    assert_eq!(
        operator::reconcile_until_rolled(&c, Duration::from_millis(500), LIMIT).await,
        operator::Outcome::Ready
    );
    // Its ReplicaSet lost its Deployment and no other took it; its Pod is still the
    // ReplicaSet's, and serves.
    let sets: Api<k8s_openapi::api::apps::v1::ReplicaSet> =
        Api::namespaced(c.client.clone(), NAMESPACE);
    let listed = sets
        .list(&kube::api::ListParams::default().labels(watcher))
        .await
        .expect("ReplicaSets")
        .items;
    assert_eq!(listed.len(), 1, "the legacy ReplicaSet");
    assert!(!controlled(&listed[0].metadata), "orphaned");
    wait_for_pods_of(&c, watcher, "the legacy Pod", |p| p.len() == 1).await;

    let r = c.run(&["finish"]);
    r.assert_ok();
    assert!(
        r.reason()
            .contains("1 orphaned legacy Pods and ReplicaSets deleted"),
        "{}",
        r.reason()
    );
    wait_for_pods_of(&c, watcher, "the orphaned legacy Pod gone", |p| {
        p.is_empty()
    })
    .await;
    let sets: Api<k8s_openapi::api::apps::v1::ReplicaSet> =
        Api::namespaced(c.client.clone(), NAMESPACE);
    let left = sets
        .list(&kube::api::ListParams::default().labels(watcher))
        .await
        .expect("ReplicaSets");
    assert!(left.items.is_empty(), "the legacy ReplicaSet deleted");
}

fn controlled(meta: &kube::core::ObjectMeta) -> bool {
    meta.owner_references
        .iter()
        .flatten()
        .any(|o| o.controller == Some(true))
}

/// Waits until the Pods of `selector` in kyma-system satisfy `done`, and returns them.
async fn wait_for_pods_of(
    c: &TestCluster,
    selector: &str,
    what: &str,
    done: impl Fn(&[k8s_openapi::api::core::v1::Pod]) -> bool,
) -> Vec<k8s_openapi::api::core::v1::Pod> {
    let pods: Api<k8s_openapi::api::core::v1::Pod> = Api::namespaced(c.client.clone(), NAMESPACE);
    let started = std::time::Instant::now();
    loop {
        let listed = pods
            .list(&kube::api::ListParams::default().labels(selector))
            .await
            .expect("Pods")
            .items;
        if done(&listed) {
            return listed;
        }
        assert!(started.elapsed() < LIMIT, "{what}: not within {LIMIT:?}");
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

/// contract.md: finish "can run as a native sidecar of the operator Pod": with `--idle`, once it has
/// nothing left to do it stays running without a request until the container is stopped
/// (SIGTERM), then exits 0. Its memory while idle is printed.
#[tokio::test]
async fn finish_as_a_sidecar_idles_without_requests_until_stopped() {
    let c = TestCluster::with(Tenant::Dedicated.fixtures()).await;
    c.run(&["run"]).assert_ok();
    let proxy = support::faultproxy::FaultProxy::start(&c.kubeconfig, c.dir());
    let child = support::spawn_tool(proxy.kubeconfig(), &[], &["finish", "--idle"]);
    let pid = child.id();
    // A plain clean: nothing to finish; then it idles.
    let started = std::time::Instant::now();
    let mut requests = proxy.requests();
    loop {
        tokio::time::sleep(Duration::from_millis(500)).await;
        let now = proxy.requests();
        if now > 0 && now == requests {
            break;
        }
        requests = now;
        assert!(started.elapsed() < LIMIT, "finish never went idle");
    }
    tokio::time::sleep(Duration::from_secs(3)).await;
    assert_eq!(proxy.requests(), requests, "no request while idle");
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).expect("still running");
    let rss = status
        .lines()
        .find(|l| l.starts_with("VmRSS:"))
        .unwrap_or("VmRSS: unknown");
    eprintln!("finish --idle: {requests} requests, then idle; {rss}");
    unsafe {
        libc::kill(pid as i32, libc::SIGTERM);
    }
    let r = support::finish(child, LIMIT).await;
    r.assert_ok();
    // Its closing line comes before it idles.
    let closing: serde_json::Value = r
        .stderr
        .lines()
        .filter_map(|l| serde_json::from_str::<serde_json::Value>(l).ok())
        .find(|l| l["step"] == "finish" && l.get("outcome").is_some())
        .unwrap_or_else(|| panic!("no closing line:\n{}", r.stderr));
    assert_eq!(closing["outcome"], "skipped", "{}", r.stderr);
    assert!(
        closing["reason"]
            .as_str()
            .is_some_and(|reason| reason.contains("clean did not hand over")),
        "{closing}"
    );
}
