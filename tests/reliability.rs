//! Reliability on the real API server, through a fault-injecting proxy (tests/support/faultproxy):
//! the tool killed after any request, a flapping API server, a full outage, concurrent runs and
//! a concurrent writer. Each ends with the state of an uninterrupted run and nothing lost.
//!
//! A "rig" (tests/support/crash_rig.rs) is one real cluster with the legacy fixture, a proxy in
//! front of it, the state before the command (pristine) and after an uninterrupted run of it
//! (golden): `run` on the legacy installation, or `rollback` once the migration is done and the
//! module disabled. Between cases the rig puts the cluster back into its pristine state and
//! verifies that with a full snapshot, so one cluster serves many cases.

mod support;

use std::process::Child;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use futures::StreamExt;
use k8s_openapi::api::core::v1::ConfigMap;
use kube::api::{Api, DeleteParams, ListParams, PostParams};
use kube::core::ApiResource;
use kube::{Client, ResourceExt};
use serde_json::json;

use support::config_maps::user_config_value;
use support::contract::{
    self, KYMA_SYSTEM, USER_CONFIG, adoption, legacy_marker, markers, service_mapping,
};
use support::crash_rig::*;
use support::faultproxy::{Fault, Schedule, Seen};
use support::requests::{retries_in, retry_chains};
use support::snapshot::*;
use support::*;

/// `run` killed after each of its requests, then run again: the golden state every time, and
/// at every crash point each legacy object is in the cluster or in clean's verified archive.
#[tokio::test(flavor = "multi_thread", worker_threads = 3)]
async fn crash_at_every_request_dedicated_tenant() {
    crash_matrix(Tenant::Dedicated, Command::Migration).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 3)]
async fn crash_at_every_request_shared_tenant() {
    crash_matrix(Tenant::Shared, Command::Migration).await;
}

/// `rollback` after the module's real uninstall killed after each of its requests, then run
/// again: the state of an uninterrupted rollback every time, which is the legacy installation
/// with every ServiceMapping and their CRD as before the migration.
#[tokio::test(flavor = "multi_thread", worker_threads = 3)]
async fn crash_at_every_request_of_rollback() {
    crash_matrix(Tenant::Dedicated, Command::Rollback).await;
}

/// `run --hand-over` killed after each of its requests, then run again: the state of an
/// uninterrupted hand-over every time, and at every crash point each legacy object in the
/// cluster or in clean's verified archive.
#[tokio::test(flavor = "multi_thread", worker_threads = 3)]
async fn crash_at_every_request_of_a_hand_over() {
    crash_matrix(Tenant::Dedicated, Command::HandOver).await;
}

/// `finish` killed after each of its requests, then run again: the state of an uninterrupted
/// finish every time.
#[tokio::test(flavor = "multi_thread", worker_threads = 3)]
async fn crash_at_every_request_of_finish() {
    crash_matrix(Tenant::Dedicated, Command::Finish).await;
}

/// `rollback --prepare` killed after each of its requests, then run again: the archive of an
/// uninterrupted `--prepare` every time, and nothing else written. Then the module is disabled
/// and `rollback` brings back every ServiceMapping as it was then: those made after the
/// migration, and the one changed since, too.
#[tokio::test(flavor = "multi_thread", worker_threads = 3)]
async fn crash_at_every_request_of_rollback_prepare() {
    let rig = crash_matrix(Tenant::Dedicated, Command::Prepare).await;
    let prepared = rig.run_uninterrupted().await;
    let diff = state_diff(&rig.golden, &prepared);
    assert!(diff.is_empty(), "{}", diff.join("\n"));
    mappings_made_after_the_migration_come_back(&rig).await;
}

/// After `--prepare`: the module's uninstall deletes every ServiceMapping, and `rollback`
/// brings each back as it was at `--prepare` (without clean's adoption), their CRD as before
/// the migration.
async fn mappings_made_after_the_migration_come_back(rig: &Rig) {
    operator::uninstall(&rig.cluster).await;
    let client = &rig.cluster.client;
    assert!(
        service_mappings::api(client)
            .list(&ListParams::default())
            .await
            .is_err(),
        "the uninstall deleted the ServiceMapping CRD, and so every ServiceMapping"
    );
    let r = rig.cluster.run(&["rollback"]);
    r.assert_ok();
    assert!(
        r.reason()
            .contains("un-adopted 0 ServiceMappings, recreated 6 ServiceMappings and their CRD;"),
        "{}",
        r.reason()
    );
    rig.cluster.wait_established(service_mapping::CRD).await;
    let after = state_across_recreation(&snap(client, &rig.kinds).await);

    let mut expected = rig.mappings_before.clone();
    let key = |name: &str| {
        format!(
            "{}/{} /{name}",
            service_mapping::GROUP,
            service_mapping::KIND
        )
    };
    expected
        .get_mut(&key(CHANGED_MAPPING))
        .expect("the changed mapping")["spec"]["internalAddress"] = json!(CHANGED_ADDRESS);
    let pristine = state_across_recreation(&rig.pristine);
    for i in 0..MADE_AFTER_THE_MIGRATION {
        let made = key(&format!("after-migration-{i}"));
        expected.insert(made.clone(), pristine[&made].clone());
    }
    assert_eq!(expected.len(), 7, "six ServiceMappings and their CRD");
    let diff = state_diff(&expected, &service_mappings_in(&after));
    assert!(
        diff.is_empty(),
        "not every ServiceMapping came back as it was at --prepare:\n{}",
        diff.join("\n")
    );
}

// ---------------------------------------------------------------------------------------------
// A flapping API server, and an outage

const FLAP_SEEDS: [u64; 3] = [1, 2, 3];

async fn flapping(tenant: Tenant, seeds: &[u64]) {
    let rig = Rig::new(tenant).await;
    for &seed in seeds {
        rig.restore().await;
        rig.proxy.set_schedule(Schedule::Seeded {
            seed,
            rate: 0.2,
            kinds: Fault::ALL.to_vec(),
            hold: Duration::from_millis(2500),
        });
        let started = Instant::now();
        let r = finish(
            spawn_tool(
                rig.proxy.kubeconfig(),
                &["--deadline", "90s", "--request-timeout", "2s"],
                &["run"],
            ),
            RUN_LIMIT,
        )
        .await;
        let wall = started.elapsed();
        let log = rig.proxy.log();
        let faults = fault_counts(&log);
        let injected: usize = faults.values().sum();
        let retries = r.last_line()["retries"].as_u64().unwrap_or(0);
        eprintln!(
            "flapping {tenant:?} seed {seed}: 20% fault rate, {} requests, {injected} faults {faults:?}, \
             {retries} retries, exit {}, {:.1}s",
            log.len(),
            r.output.status,
            wall.as_secs_f64()
        );
        r.assert_ok();
        assert!(injected > 0, "the schedule injected faults");
        assert!(
            retries >= injected as u64,
            "every injected fault was retried: {retries} retries for {injected} faults"
        );
        rig.proxy.set_schedule(Schedule::None);
        let diff = rig.state_diff_from_golden().await;
        assert!(
            diff.is_empty(),
            "seed {seed}: not the golden state:\n{}",
            diff.join("\n")
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn flapping_api_server_converges_dedicated_tenant() {
    flapping(Tenant::Dedicated, &FLAP_SEEDS).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn flapping_api_server_converges_shared_tenant() {
    flapping(Tenant::Shared, &[4]).await;
}

/// A full outage (from the start, and from the middle of the run): the run fails with a clear
/// error, having retried only within its deadline; nothing is lost, and the next run finishes.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn outage_fails_within_the_deadline_and_the_next_run_finishes() {
    let rig = Rig::new(Tenant::Dedicated).await;
    let deadline = Duration::from_secs(5);
    // What failed, and the root cause, are both in the one error.
    let cases = [
        (
            "503 from the start",
            Schedule::Outage(Fault::Unavailable),
            ["migrate failed", "reading ConnectivityProxy", "503"],
        ),
        (
            "connections reset from the start",
            Schedule::Outage(Fault::ResetBeforeForward),
            [
                "migrate failed",
                "reading ConnectivityProxy",
                "connection closed",
            ],
        ),
        (
            "responses held from the start",
            Schedule::Outage(Fault::Hold),
            ["migrate failed", "reading ConnectivityProxy", "timed out"],
        ),
        (
            "503 after the CR was written",
            Schedule::OutageAfter {
                after: 6,
                fault: Fault::Unavailable,
            },
            ["failed", "503", "retries"],
        ),
        (
            "connections reset during clean",
            Schedule::OutageAfter {
                after: 40,
                fault: Fault::ResetBeforeForward,
            },
            ["clean failed", "connection closed", "retries"],
        ),
    ];
    for (what, schedule, needles) in cases {
        rig.restore().await;
        rig.proxy.set_schedule(schedule);
        let started = Instant::now();
        let r = finish(
            spawn_tool(
                rig.proxy.kubeconfig(),
                &["--deadline", "5s", "--request-timeout", "2s"],
                &["run"],
            ),
            RUN_LIMIT,
        )
        .await;
        let wall = started.elapsed();
        let last = r.last_line();
        eprintln!(
            "outage ({what}): exit {}, {:.1}s, {} requests, {} retries: {}",
            r.output.status,
            wall.as_secs_f64(),
            last["api_requests"],
            last["retries"],
            last["reason"]
        );
        assert!(!r.success(), "{what}: the run must fail");
        assert_eq!(r.outcome(), "failed");
        r.assert_failed_with(&needles);
        // The deadline bounds the retries: the tool retries a request only while the deadline
        // leaves room for the wait before it, so no request waited longer than the deadline in
        // all its retries. Every retry is logged, and counted in the closing line.
        let retries = retries_in(&r.stderr);
        assert!(!retries.is_empty(), "{what}: the failures were retried");
        assert_eq!(last["retries"], json!(retries.len()), "{what}");
        for chain in retry_chains(&retries) {
            let waited: u64 = chain.iter().map(|t| t.delay_ms).sum();
            assert!(
                u128::from(waited) <= deadline.as_millis(),
                "{what}: {} waited {waited} ms in {} retries, beyond the deadline",
                chain[0].request,
                chain.len()
            );
        }
        let lost = rig.lost_user_config().await;
        assert!(lost.is_empty(), "{what}: lost {lost:?}");

        rig.proxy.set_schedule(Schedule::None);
        let next = rig.run(&["run"]).await;
        next.assert_ok();
        let diff = rig.state_diff_from_golden().await;
        assert!(diff.is_empty(), "{what}: {}", diff.join("\n"));
    }
}

// ---------------------------------------------------------------------------------------------
// Concurrent runs, and a concurrent writer

async fn concurrent_runs(rig: &Rig, runs: usize, barrier: bool) {
    rig.restore().await;
    if barrier {
        rig.proxy.set_hook(Some(barrier_on_cr_reads(runs)));
    }
    let children: Vec<Child> = (0..runs)
        .map(|_| spawn_tool(rig.proxy.kubeconfig(), &["--deadline", "60s"], &["run"]))
        .collect();
    let results: Vec<RunResult> = futures::stream::iter(children)
        .map(|c| finish(c, RUN_LIMIT))
        .buffered(runs)
        .collect()
        .await;
    rig.proxy.set_hook(None);
    for r in &results {
        r.assert_ok();
    }
    let log = rig.proxy.log();
    let cr_writes = log
        .iter()
        .filter(|s| s.method == http::Method::PUT && is_cr(s) && !is_dry_run(s))
        .collect::<Vec<_>>();
    let stored = cr_writes
        .iter()
        .filter(|s| s.upstream_status == Some(200))
        .count();
    let conflicts = log
        .iter()
        .filter(|s| s.method == http::Method::PUT && is_cr(s) && s.upstream_status == Some(409))
        .count();
    let migrate_outcomes: Vec<String> = results
        .iter()
        .map(|r| {
            step_line(r, "migrate").expect("migrate line")["outcome"]
                .as_str()
                .unwrap_or_default()
                .to_string()
        })
        .collect();
    let events = rig.migrated_events().await;
    eprintln!(
        "concurrent runs ({runs}, barrier {barrier}): all exit 0; CR writes stored {stored}, CR PUT conflicts {conflicts}, \
         migrate outcomes {migrate_outcomes:?}, Migrated events {events}, {} requests in all",
        log.len()
    );
    assert_eq!(stored, 1, "the migration's CR write happens once");
    assert_eq!(events, 1, "one Migrated event");
    assert_eq!(
        migrate_outcomes.iter().filter(|o| *o == "done").count(),
        1,
        "{migrate_outcomes:?}"
    );
    if barrier {
        assert!(
            conflicts >= runs - 1,
            "the others met a conflict: {conflicts}"
        );
    }
    let diff = rig.state_diff_from_golden().await;
    assert!(diff.is_empty(), "{}", diff.join("\n"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn four_concurrent_runs_converge_and_migrate_once() {
    let rig = Rig::new(Tenant::Dedicated).await;
    // Forced race: all four read the unmigrated CR before any of them writes.
    concurrent_runs(&rig, 4, true).await;
    // Started together, no help.
    for _ in 0..3 {
        concurrent_runs(&rig, 4, false).await;
    }
}

async fn concurrent_writer(rig: &Rig, after: &'static str, matches: fn(&Seen) -> bool) {
    rig.restore().await;
    let fired = Arc::new(AtomicUsize::new(0));
    let hook_fired = fired.clone();
    rig.proxy
        .set_hook(Some(Arc::new(move |seen: &Seen, client: &Client| {
            (matches(seen) && hook_fired.swap(1, Ordering::SeqCst) == 0)
                .then(|| foreign_write(client))
        })));
    let r = rig.run(&["migrate"]).await;
    rig.proxy.set_hook(None);
    r.assert_ok();
    assert_eq!(
        fired.load(Ordering::SeqCst),
        1,
        "the foreign write happened ({after})"
    );
    let log = rig.proxy.log();
    let conflicts = log
        .iter()
        .filter(|s| s.method == http::Method::PUT && is_cr(s) && s.upstream_status == Some(409))
        .count();
    assert!(
        conflicts >= 1,
        "the tool met the foreign write as a conflict"
    );

    let cr = rig.cluster.cr().await;
    assert_eq!(
        cr.labels().get("example.com/owner").map(String::as_str),
        Some("team-a"),
        "the foreign label survives ({after})"
    );
    assert_eq!(
        cr.data["spec"]["deployment"]["replicaCount"],
        json!(3),
        "the foreign spec change survives ({after})"
    );
    let golden_cr = &rig.golden[&format!(
        "{}/{} {}/{}",
        contract::cr::GROUP,
        contract::cr::KIND,
        KYMA_SYSTEM,
        contract::cr::NAME
    )];
    assert_eq!(
        cr.data["spec"]["config"], golden_cr["spec"]["config"],
        "the migration survives ({after})"
    );
    assert_eq!(
        cr.annotations().get(markers::MIGRATED).map(String::as_str),
        Some("true")
    );
    eprintln!(
        "concurrent writer ({after}): both changes kept; {conflicts} conflict(s), {} requests",
        log.len()
    );

    // The rest of the run goes on as usual and ends in the golden state plus the foreign change.
    let rest = rig.run(&["run"]).await;
    rest.assert_ok();
    let diff = rig.state_diff_from_golden().await;
    let expected = [
        ".metadata.labels: (absent) -> {\"example.com/owner\":\"team-a\"}",
        ".spec.deployment.replicaCount: 1 -> 3",
    ];
    assert_eq!(diff.len(), 1, "{}", diff.join("\n"));
    for e in expected {
        assert!(diff[0].contains(e), "{}", diff[0]);
    }
}

/// Foreign writes at the worst moments: to the CR while migrate works on it, and to a legacy
/// object or the user configuration between clean's checks and its deletes.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn concurrent_writer_changes_survive() {
    let rig = Rig::new(Tenant::Dedicated).await;
    concurrent_writer(&rig, "after the tool read the CR", |s| {
        s.method == http::Method::GET && is_cr(s)
    })
    .await;
    concurrent_writer(&rig, "between the dry run and the write", |s| {
        s.method == http::Method::PUT && is_cr(s) && is_dry_run(s)
    })
    .await;
    operator_takes_over_between_read_and_delete(&rig).await;
    user_edit_between_backup_check_and_delete(&rig).await;
    user_config_created_between_backup_check_and_delete(&rig).await;
}

/// The new operator takes over a legacy object (labels it: same object, same uid) after clean
/// read it and before clean deletes it. The delete's precondition sees the change, and the
/// object is kept as the operator's.
async fn operator_takes_over_between_read_and_delete(rig: &Rig) {
    migrated_and_backed_up(rig).await;
    let (r, log) = clean_with_write_after_read(rig, legacy_statefulset_path, |client| {
        merge_patch(
            client,
            ApiResource::erase::<k8s_openapi::api::apps::v1::StatefulSet>(&()),
            legacy_marker::STATEFULSET,
            json!({"metadata": {"labels": {adoption::LABEL: adoption::LABEL_VALUE}}}),
        )
    })
    .await;
    r.assert_ok();
    let conflicts = log
        .iter()
        .filter(|s| {
            s.method == http::Method::DELETE
                && s.path.split('?').next() == Some(legacy_statefulset_path().as_str())
                && s.upstream_status == Some(409)
        })
        .count();
    assert_eq!(
        conflicts, 1,
        "the delete met the operator's write as a conflict"
    );
    let sts: Api<k8s_openapi::api::apps::v1::StatefulSet> =
        Api::namespaced(rig.cluster.client.clone(), KYMA_SYSTEM);
    let sts = sts
        .get_opt(legacy_marker::STATEFULSET)
        .await
        .expect("read the StatefulSet");
    assert_eq!(
        sts.as_ref()
            .and_then(|s| s.labels().get(adoption::LABEL).cloned())
            .as_deref(),
        Some(adoption::LABEL_VALUE),
        "the StatefulSet the operator took over still exists"
    );
    assert!(
        r.reason()
            .contains("34 legacy objects deleted, 0 absent, 1 kept as the new operator's"),
        "clean reports the kept object: {}",
        r.reason()
    );
}

/// The user edits the configuration after clean verified its backup copy and before clean
/// deletes it: the edited ConfigMap is not deleted (its copy is stale), clean fails saying so,
/// and the next clean stops at the backup check, which asks for a new backup.
async fn user_edit_between_backup_check_and_delete(rig: &Rig) {
    migrated_and_backed_up(rig).await;
    let (r, _) = clean_with_write_after_read(
        rig,
        || user_config_path(USER_CONFIG[0]),
        |client| {
            merge_patch(
                client,
                ApiResource::erase::<ConfigMap>(&()),
                USER_CONFIG[0],
                json!({"data": {"edited-after-the-backup": "yes"}}),
            )
        },
    )
    .await;
    r.assert_failed_with(&[
        "ConfigMap kyma-system/connectivity-proxy changed after the backup check",
        "was not deleted",
    ]);
    assert_eq!(
        user_config_value(
            &rig.cluster.client,
            USER_CONFIG[0],
            "edited-after-the-backup"
        )
        .await
        .as_deref(),
        Some("yes"),
        "the edited user configuration still exists"
    );
    rig.run(&["clean"])
        .await
        .assert_failed_with(&["differs from ConfigMap kyma-system/connectivity-proxy"]);
}

/// A user ConfigMap that did not exist at the backup check (deleted after the backup) is
/// created before clean deletes the legacy objects: it has no verified copy, so it is kept.
async fn user_config_created_between_backup_check_and_delete(rig: &Rig) {
    migrated_and_backed_up(rig).await;
    let cms: Api<ConfigMap> = Api::namespaced(rig.cluster.client.clone(), KYMA_SYSTEM);
    cms.delete(USER_CONFIG[1], &DeleteParams::default())
        .await
        .expect("delete the proxy ports ConfigMap");
    let (r, _) = clean_with_write_after_read(
        rig,
        || user_config_path(USER_CONFIG[1]),
        |client| {
            let cms: Api<ConfigMap> = Api::namespaced(client.clone(), KYMA_SYSTEM);
            Box::pin(async move {
                let mut cm = ConfigMap::default();
                cm.metadata.name = Some(USER_CONFIG[1].into());
                cm.data = Some([("created-after-the-check".to_string(), "yes".to_string())].into());
                cms.create(&PostParams::default(), &cm)
                    .await
                    .expect("create the proxy ports ConfigMap again");
            })
        },
    )
    .await;
    r.assert_failed_with(&[
        "ConfigMap kyma-system/connectivity-proxy-info was created after the backup check",
        "was not deleted",
    ]);
    assert_eq!(
        user_config_value(
            &rig.cluster.client,
            USER_CONFIG[1],
            "created-after-the-check"
        )
        .await
        .as_deref(),
        Some("yes"),
        "the new ConfigMap still exists"
    );
}
