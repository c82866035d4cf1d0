//! Reliability on the real API server, through a fault-injecting proxy (tests/support/faultproxy):
//! the tool killed after any request, a flapping API server, a full outage, concurrent runs and
//! a concurrent writer. Each ends with the state of an uninterrupted run and nothing lost.
//!
//! A "rig" is one real cluster with the legacy fixture, a proxy in front of it, the state before
//! the command (pristine) and after an uninterrupted run of it (golden): `run` on the legacy
//! installation, or `rollback` once the migration is done and the module disabled. Between cases
//! the rig puts the cluster back into its pristine state and verifies that with a full snapshot,
//! so one cluster serves many cases; the crash matrix would otherwise need ~200 fresh clusters.

mod support;

use std::collections::{BTreeMap, BTreeSet};
use std::process::Child;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use futures::StreamExt;
use k8s_openapi::api::core::v1::ConfigMap;
use kube::api::{Api, DeleteParams, DynamicObject, ListParams, Patch, PatchParams, PostParams};
use kube::core::ApiResource;
use kube::{Client, ResourceExt};
use serde_json::{Value, json};

use cp_mod_migrator::archive;
use cp_mod_migrator::names::{self, config_maps, markers};
use support::faultproxy::{Fault, FaultProxy, Hook, Schedule, Seen};
use support::snapshot::*;
use support::*;

/// Clusters alive at once in this test binary: the machine has two cores, and an API server
/// is busy for a few seconds while it starts.
static CLUSTERS: tokio::sync::Semaphore = tokio::sync::Semaphore::const_new(3);

/// Workers (each with its own cluster) per crash matrix.
const CRASH_WORKERS: usize = 3;

// ---------------------------------------------------------------------------------------------
// The rig

/// The command a rig runs, and the state it starts from.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Command {
    /// `run` on the legacy installation with the module enabled.
    Migration,
    /// `rollback` as the runbook has it: after `run`, the module's operator at `Ready`,
    /// `rollback --prepare`, and the module disabled (its uninstall deleted the ServiceMapping
    /// CRD that clean adopted, and so every ServiceMapping).
    Rollback,
    /// `rollback --prepare` after `run`, with the module's operator at `Ready`, ServiceMappings
    /// created since and one changed since.
    Prepare,
}

impl Command {
    fn args(self) -> &'static [&'static str] {
        match self {
            Command::Migration => &["run"],
            Command::Rollback => &["rollback"],
            Command::Prepare => &["rollback", "--prepare"],
        }
    }

    /// Where the user configuration is before the command.
    fn user_config_namespace(self) -> &'static str {
        match self {
            Command::Migration => names::KYMA_SYSTEM,
            Command::Rollback | Command::Prepare => names::BACKUP_NAMESPACE,
        }
    }

    /// The compared state: rollback creates Services and the ServiceMapping CRD anew, with
    /// addresses and condition times of their own; prepare's archive is compared as it decodes
    /// (its Secret says when it was written).
    fn state(self, s: &Snap) -> State {
        match self {
            Command::Migration => state_of(s),
            Command::Rollback => state_across_recreation(s),
            Command::Prepare => with_archive_decoded(state_of(s)),
        }
    }

    /// How many requests an uninterrupted run may make more or fewer than another: rollback
    /// waits until the ServiceMapping CRD it recreated is Established, reading it again until
    /// then.
    fn request_spread(self) -> u64 {
        match self {
            Command::Migration | Command::Prepare => 0,
            Command::Rollback => 3,
        }
    }

    /// Workers of its crash matrix, each with a cluster of its own: `--prepare` makes a handful
    /// of requests, fewer than it takes to make a rig.
    fn crash_workers(self) -> usize {
        match self {
            Command::Migration | Command::Rollback => CRASH_WORKERS,
            Command::Prepare => 1,
        }
    }
}

/// Snapshot key of the archive's Secret (it holds the archive inline at this size).
fn archive_key() -> String {
    format!(
        "/Secret {}/{}",
        names::BACKUP_NAMESPACE,
        names::archive::SECRET
    )
}

/// `state` with the inline archive's data as the archive it decodes to.
fn with_archive_decoded(mut state: State) -> State {
    if let Some(secret) = state.get_mut(&archive_key())
        && secret["data"].get(names::archive::DATA_KEY).is_some()
    {
        let archive = serde_json::to_value(decoded_archive(secret)).expect("archive as JSON");
        secret["data"] = json!({ "(decoded)": archive });
    }
    state
}

/// Snapshot key of the ServiceMapping CRD.
fn service_mapping_crd_key() -> String {
    format!(
        "apiextensions.k8s.io/CustomResourceDefinition /{}",
        names::service_mappings::CRD_NAME
    )
}

/// Whether a snapshot key is a ServiceMapping's.
fn is_service_mapping(key: &str) -> bool {
    key.starts_with(&format!(
        "{}/{} ",
        names::service_mappings::GROUP,
        names::service_mappings::KIND
    ))
}

/// The ServiceMappings and their CRD in a state.
fn service_mappings_in(state: &State) -> State {
    state
        .iter()
        .filter(|(k, _)| is_service_mapping(k) || **k == service_mapping_crd_key())
        .map(|(k, v)| (k.clone(), v.clone()))
        .collect()
}

/// After `run`, the module's operator reconciles to `Ready`.
async fn migrated_with_the_module_running(cluster: &TestCluster) {
    cluster.run(&["run"]).assert_ok();
    assert_eq!(operator::reconcile(cluster).await, operator::Outcome::Ready);
}

/// ServiceMappings made while the module ran, for `--prepare` to record: created since clean.
const MADE_AFTER_THE_MIGRATION: usize = 3;
/// A legacy ServiceMapping changed while the module ran, and its new address.
const CHANGED_MAPPING: &str = "sm-erp";
const CHANGED_ADDRESS: &str = "erp-new.onprem.example:3300";

/// What users do while the module runs: create ServiceMappings, change one.
async fn mappings_changed_while_the_module_ran(cluster: &TestCluster) {
    service_mappings::create(
        &cluster.client,
        "after-migration",
        MADE_AFTER_THE_MIGRATION,
        |_| false,
    )
    .await;
    service_mappings::api(&cluster.client)
        .patch(
            CHANGED_MAPPING,
            &PatchParams::default(),
            &Patch::Merge(json!({"spec": {"internalAddress": CHANGED_ADDRESS}})),
        )
        .await
        .expect("change a ServiceMapping");
}

/// The legacy objects of a snapshot, by snapshot key and by archive key.
fn legacy_objects(s: &Snap) -> Vec<(String, archive::ObjectKey)> {
    s.iter()
        .filter_map(|(key, o)| {
            let namespace = o.value["metadata"]["namespace"].as_str().unwrap_or("");
            let name = o.value["metadata"]["name"].as_str().unwrap_or("");
            names::LEGACY_OBJECTS
                .iter()
                .any(|r| {
                    r.group == o.ar.group
                        && r.kind == o.ar.kind
                        && r.namespace.unwrap_or("") == namespace
                        && r.names.contains(&name)
                })
                .then(|| {
                    let archived = archive::ObjectKey {
                        group: o.ar.group.clone(),
                        kind: o.ar.kind.clone(),
                        namespace: namespace.to_string(),
                        name: name.to_string(),
                    };
                    (key.clone(), archived)
                })
        })
        .collect()
}

struct Rig {
    _permit: tokio::sync::SemaphorePermit<'static>,
    tenant: Tenant,
    command: Command,
    /// The legacy installation's objects, before the migration.
    legacy: Vec<(String, archive::ObjectKey)>,
    /// The ServiceMappings and their CRD before the migration (as compared across recreation).
    mappings_before: State,
    cluster: TestCluster,
    proxy: FaultProxy,
    kinds: Kinds,
    pristine: Snap,
    /// The user configuration before the migration: (name, data, binaryData).
    user_config: Vec<(String, Value, Value)>,
    golden: State,
    /// Requests of the uninterrupted run.
    golden_requests: u64,
    golden_ms: u128,
}

impl Rig {
    async fn new(tenant: Tenant) -> Rig {
        Rig::for_command(tenant, Command::Migration).await
    }

    async fn for_command(tenant: Tenant, command: Command) -> Rig {
        let permit = CLUSTERS.acquire().await.expect("semaphore");
        let cluster = TestCluster::with(tenant.fixtures()).await;
        let proxy = FaultProxy::start(&cluster.kubeconfig, cluster.dir());
        let before = snap(&cluster.client, &discover(&cluster.client).await).await;
        let legacy = legacy_objects(&before);
        assert_eq!(legacy.len(), 35, "the legacy fixture");
        let mappings_before = service_mappings_in(&state_across_recreation(&before));
        match command {
            Command::Migration => {}
            Command::Rollback => {
                migrated_with_the_module_running(&cluster).await;
                cluster.run(&["rollback", "--prepare"]).assert_ok();
                operator::uninstall(&cluster).await;
            }
            Command::Prepare => {
                migrated_with_the_module_running(&cluster).await;
                mappings_changed_while_the_module_ran(&cluster).await;
            }
        }
        let pristine = snap(&cluster.client, &discover(&cluster.client).await).await;
        let user_config = config_maps::USER_CONFIG
            .iter()
            .map(|name| {
                let key = format!("/ConfigMap {}/{name}", command.user_config_namespace());
                let v = &pristine.get(&key).expect("legacy ConfigMap").value;
                (
                    name.to_string(),
                    v["data"].clone(),
                    v.get("binaryData").cloned().unwrap_or(Value::Null),
                )
            })
            .collect();

        let started = Instant::now();
        let r = finish(
            spawn_tool(proxy.kubeconfig(), &[], command.args()),
            RUN_LIMIT,
        )
        .await;
        let golden_ms = started.elapsed().as_millis();
        r.assert_ok();
        let golden_requests = proxy.requests();
        assert_eq!(
            golden_requests,
            r.api_requests(),
            "the proxy and the tool count the same requests"
        );
        if command == Command::Rollback {
            // Discovery offers the recreated ServiceMappings a moment after their CRD is
            // Established.
            cluster
                .wait_established(names::service_mappings::CRD_NAME)
                .await;
        }
        // Discovered now: the kinds of the golden state, the ServiceMappings that rollback
        // brings back included (their CRD is gone before it).
        let kinds = discover(&cluster.client).await;
        let after = snap(&cluster.client, &kinds).await;
        let rig = Rig {
            _permit: permit,
            tenant,
            command,
            legacy,
            mappings_before,
            cluster,
            proxy,
            kinds,
            pristine,
            user_config,
            golden: command.state(&after),
            golden_requests,
            golden_ms,
        };
        match command {
            Command::Migration => rig.check_golden_is_a_migration().await,
            Command::Rollback => rig.check_golden_is_a_rollback(&r),
            Command::Prepare => rig.check_golden_is_a_prepare(&r),
        }
        rig.restore().await;
        rig
    }

    /// The golden state of a rollback is the legacy installation back, whole, with every
    /// ServiceMapping and their CRD as before the migration.
    fn check_golden_is_a_rollback(&self, r: &RunResult) {
        assert!(
            r.reason()
                .starts_with("recreated 33 legacy objects; 0 left as they were"),
            "{}",
            r.reason()
        );
        assert!(
            r.reason().contains(
                "un-adopted 0 ServiceMappings, recreated 3 ServiceMappings and their CRD;"
            ),
            "{}",
            r.reason()
        );
        let missing: Vec<&String> = self
            .legacy
            .iter()
            .map(|(key, _)| key)
            .filter(|key| !self.golden.contains_key(*key))
            .collect();
        assert!(missing.is_empty(), "not back after rollback: {missing:?}");
        assert_eq!(
            self.mappings_before.len(),
            4,
            "three ServiceMappings and their CRD"
        );
        let diff = state_diff(&self.mappings_before, &service_mappings_in(&self.golden));
        assert!(
            diff.is_empty(),
            "the ServiceMappings and their CRD not as before the migration:\n{}",
            diff.join("\n")
        );
    }

    /// The golden state of `--prepare`: the archive, and nothing else, changed; it holds every
    /// ServiceMapping as it is now.
    fn check_golden_is_a_prepare(&self, r: &RunResult) {
        assert_eq!(
            r.reason(),
            "recorded 6 ServiceMappings (3 new since the archive was written, 1 changed); \
             0 deleted since and kept in the archive"
        );
        let pristine = self.command.state(&self.pristine);
        let written: BTreeSet<&String> = pristine
            .keys()
            .chain(self.golden.keys())
            .filter(|k| pristine.get(*k) != self.golden.get(*k))
            .collect();
        assert_eq!(
            written.into_iter().collect::<Vec<_>>(),
            [&archive_key()],
            "--prepare wrote its archive, and only it"
        );
        let archived = &self.golden[&archive_key()]["data"]["(decoded)"]["serviceMappings"];
        let spec_of = |name: &str| {
            archived["items"]
                .as_array()
                .expect("archived ServiceMappings")
                .iter()
                .find(|m| m["name"] == name)
                .map(|m| m["object"]["spec"].clone())
                .unwrap_or_else(|| panic!("{name} is not in the archive"))
        };
        assert_eq!(spec_of(CHANGED_MAPPING)["internalAddress"], CHANGED_ADDRESS);
        for i in 0..MADE_AFTER_THE_MIGRATION {
            let key = format!(
                "{}/{} /after-migration-{i}",
                names::service_mappings::GROUP,
                names::service_mappings::KIND
            );
            assert_eq!(
                spec_of(&format!("after-migration-{i}")),
                pristine[&key]["spec"]
            );
        }
    }

    /// Legacy objects, and ServiceMappings of the pristine state or from before the migration,
    /// that exist neither in the cluster nor in clean's archive (read whole; a ServiceMapping
    /// counts as archived with its content).
    async fn objects_nowhere(&self) -> Vec<String> {
        let now = snap(&self.cluster.client, &self.kinds).await;
        let archive = archive::read(&self.cluster.client)
            .await
            .unwrap_or_else(|e| panic!("the archive does not read back whole: {e}"));
        let archived: Vec<archive::ObjectKey> = archive
            .iter()
            .flat_map(|a| a.objects.iter().map(archive::key_of))
            .collect();
        let archived_mappings: Vec<String> = archive
            .iter()
            .flat_map(|a| &a.service_mappings.items)
            .filter(|m| m.object.is_some())
            .map(|m| m.name.clone())
            .collect();
        let legacy = self
            .legacy
            .iter()
            .filter(|(key, archive_key)| !now.contains_key(key) && !archived.contains(archive_key))
            .map(|(key, _)| key.clone());
        let pristine = self.pristine.iter().map(|(key, o)| (key, &o.value));
        let mappings = self
            .mappings_before
            .iter()
            .chain(pristine)
            .filter(|(key, v)| {
                is_service_mapping(key)
                    && !now.contains_key(*key)
                    && !archived_mappings
                        .iter()
                        .any(|m| v["metadata"]["name"] == *m)
            })
            .map(|(key, _)| key.clone());
        let mut nowhere: Vec<String> = legacy.chain(mappings).collect();
        nowhere.sort();
        nowhere.dedup();
        nowhere
    }

    /// The golden state is the contract's end state, not merely whatever the tool left.
    async fn check_golden_is_a_migration(&self) {
        let cr = self.cluster.cr().await;
        for m in [markers::MIGRATED, markers::BACKED_UP, markers::CLEANED] {
            assert_eq!(
                cr.annotations().get(m).map(String::as_str),
                Some("true"),
                "{m}"
            );
        }
        for (name, data, binary) in &self.user_config {
            let key = format!("/ConfigMap {}/{name}", names::BACKUP_NAMESPACE);
            let copy = self
                .golden
                .get(&key)
                .expect("backup copy in the golden state");
            assert_eq!(&copy["data"], data, "{key}");
            assert_eq!(
                copy.get("binaryData").unwrap_or(&Value::Null),
                binary,
                "{key}"
            );
            assert!(
                !self
                    .golden
                    .contains_key(&format!("/ConfigMap {}/{name}", names::KYMA_SYSTEM)),
                "clean removed {name}"
            );
        }
        // The user configuration of the fixture is in the CR.
        let config = &cr.data["spec"]["config"];
        assert_eq!(
            config["servers"]["businessDataTunnel"]["externalHost"],
            json!("test.me.plz")
        );
        for (field, port) in [("http", 20003), ("rfcAndLdap", 20001), ("socks5", 20004)] {
            assert_eq!(config["servers"]["proxy"][field]["port"], json!(port));
        }
        match self.tenant {
            Tenant::Shared => assert_eq!(config["tenantMode"], json!("shared")),
            Tenant::Dedicated => assert_eq!(
                config["subaccountId"],
                json!("00000000-0000-0000-0000-000000000000")
            ),
        }
        let secret =
            &cr.data["spec"]["secretConfig"]["integration"]["connectivityService"]["secretName"];
        match self.tenant {
            Tenant::Shared => assert_eq!(secret, &json!(names::SHARED_TENANT_SECRET)),
            Tenant::Dedicated => assert_eq!(secret, &json!("auto-provision")),
        }
    }

    /// Back to the pristine state, verified object by object.
    async fn restore(&self) {
        self.restore_from(None).await;
    }

    /// [`Rig::restore`], given a snapshot of the current state if one was just taken.
    async fn restore_from(&self, mut current: Option<Snap>) {
        self.proxy.set_schedule(Schedule::None);
        self.proxy.set_hook(None);
        self.proxy.reset();
        let client = &self.cluster.client;
        let mut diff = Vec::new();
        for _ in 0..3 {
            restore(client, &self.kinds, &self.pristine, current.take()).await;
            let now = self.command.state(&snap(client, &self.kinds).await);
            diff = state_diff(&self.command.state(&self.pristine), &now);
            if diff.is_empty() {
                return;
            }
        }
        panic!(
            "test rig: the cluster could not be restored to its pristine state:\n{}",
            diff.join("\n")
        );
    }

    async fn state(&self) -> State {
        self.command
            .state(&snap(&self.cluster.client, &self.kinds).await)
    }

    /// User configuration that exists neither in kyma-system nor in the backup namespace
    /// (with the data it had before the migration).
    async fn lost_user_config(&self) -> Vec<String> {
        let mut lost = Vec::new();
        for (name, data, binary) in &self.user_config {
            let mut found = false;
            for ns in [names::KYMA_SYSTEM, names::BACKUP_NAMESPACE] {
                let api: Api<ConfigMap> = Api::namespaced(self.cluster.client.clone(), ns);
                if let Some(cm) = api.get_opt(name).await.expect("get ConfigMap") {
                    let v = serde_json::to_value(&cm).expect("json");
                    if &v["data"] == data && v.get("binaryData").unwrap_or(&Value::Null) == binary {
                        found = true;
                    }
                }
            }
            if !found {
                lost.push(name.clone());
            }
        }
        lost
    }

    async fn migrated_events(&self) -> usize {
        let events: Api<k8s_openapi::api::events::v1::Event> =
            Api::namespaced(self.cluster.client.clone(), names::KYMA_SYSTEM);
        events
            .list(&ListParams::default())
            .await
            .expect("list events")
            .items
            .iter()
            .filter(|e| e.reason.as_deref() == Some("Migrated"))
            .count()
    }
}

fn cr_path() -> String {
    format!(
        "/apis/{}/{}/namespaces/{}/{}/{}",
        names::cr::GROUP,
        names::cr::VERSION,
        names::KYMA_SYSTEM,
        names::cr::PLURAL,
        names::cr::NAME
    )
}

fn is_cr(seen: &Seen) -> bool {
    seen.path.split('?').next() == Some(cr_path().as_str())
}

fn is_dry_run(seen: &Seen) -> bool {
    seen.path.contains("dryRun=All")
}

// ---------------------------------------------------------------------------------------------
// Crash at every request

struct CrashCase {
    k: u64,
    /// Runs that ended on their own before request k (a run that waits makes a number of
    /// requests of its own), each followed by a restore and another try; at most
    /// [`CRASH_ATTEMPTS`] - 1, and then the case had no kill.
    ended_before_k: u32,
    /// User configuration, and legacy objects, found nowhere right after the kill (a legacy
    /// object counts as kept when the verified archive holds it).
    lost: Vec<String>,
    /// Differences from the golden state after the next run.
    diff: Vec<String>,
    rerun_requests: u64,
    rerun_ok: bool,
    rerun_log: String,
    /// Time of: the killed run, the next run, the comparison, the restore.
    phases: [Duration; 4],
}

/// Tries of a crash point whose run may end before it (see [`Command::request_spread`]).
const CRASH_ATTEMPTS: u32 = 3;

/// The command killed after its request `k` (of `n` in the first uninterrupted run), then run
/// again, compared with the golden state; the cluster restored after.
async fn crash_case(rig: &Rig, k: u64, n: u64) -> CrashCase {
    let t = Instant::now();
    let mut ended_before_k = 0;
    loop {
        rig.proxy.reset();
        rig.proxy.kill_after(k);
        let child = spawn_tool(
            rig.proxy.kubeconfig(),
            &["--deadline", "60s"],
            rig.command.args(),
        );
        rig.proxy.set_pid(child.id());
        let killed = finish(child, RUN_LIMIT).await;
        if rig.proxy.killed_at() == Some(k) {
            assert_eq!(
                std::os::unix::process::ExitStatusExt::signal(&killed.output.status),
                Some(libc::SIGKILL),
                "crash point {k}: killed by SIGKILL"
            );
            break;
        }
        // Only a run that waits may make fewer requests than another, and only by its waits.
        assert!(
            killed.success() && k + rig.command.request_spread() > n,
            "crash point {k}: the run ended before its request {k} ({} requests):\n{}",
            rig.proxy.requests(),
            killed.stderr
        );
        ended_before_k += 1;
        if ended_before_k == CRASH_ATTEMPTS {
            break;
        }
        rig.restore().await;
    }
    let mut lost = rig.lost_user_config().await;
    lost.extend(rig.objects_nowhere().await);
    let killed_run = t.elapsed();

    let t = Instant::now();
    rig.proxy.reset();
    let rerun = finish(
        spawn_tool(
            rig.proxy.kubeconfig(),
            &["--deadline", "60s"],
            rig.command.args(),
        ),
        RUN_LIMIT,
    )
    .await;
    let rerun_requests = rig.proxy.requests();
    let next_run = t.elapsed();

    let t = Instant::now();
    let after = snap(&rig.cluster.client, &rig.kinds).await;
    let diff = state_diff(&rig.golden, &rig.command.state(&after));
    let compare = t.elapsed();

    let t = Instant::now();
    rig.restore_from(Some(after)).await;
    CrashCase {
        k,
        ended_before_k,
        lost,
        diff,
        rerun_requests,
        rerun_ok: rerun.success(),
        rerun_log: rerun.stderr,
        phases: [killed_run, next_run, compare, t.elapsed()],
    }
}

impl Rig {
    async fn state_diff_from_golden(&self) -> Vec<String> {
        state_diff(&self.golden, &self.state().await)
    }

    /// The rig's command, run once through the proxy without a fault; the state after it.
    async fn run_uninterrupted(&self) -> State {
        self.proxy.reset();
        finish(
            spawn_tool(
                self.proxy.kubeconfig(),
                &["--deadline", "60s"],
                self.command.args(),
            ),
            RUN_LIMIT,
        )
        .await
        .assert_ok();
        self.state().await
    }

    /// After `--prepare`: the module's uninstall deletes every ServiceMapping, and `rollback`
    /// brings each back as it was at `--prepare` (without clean's adoption), their CRD as before
    /// the migration.
    async fn mappings_made_after_the_migration_come_back(&self) {
        operator::uninstall(&self.cluster).await;
        let client = &self.cluster.client;
        assert!(
            service_mappings::api(client)
                .list(&ListParams::default())
                .await
                .is_err(),
            "the uninstall deleted the ServiceMapping CRD, and so every ServiceMapping"
        );
        let r = self.cluster.run(&["rollback"]);
        r.assert_ok();
        assert!(
            r.reason().contains(
                "un-adopted 0 ServiceMappings, recreated 6 ServiceMappings and their CRD;"
            ),
            "{}",
            r.reason()
        );
        self.cluster
            .wait_established(names::service_mappings::CRD_NAME)
            .await;
        let after = state_across_recreation(&snap(client, &self.kinds).await);

        let mut expected = self.mappings_before.clone();
        let key = |name: &str| {
            format!(
                "{}/{} /{name}",
                names::service_mappings::GROUP,
                names::service_mappings::KIND
            )
        };
        expected
            .get_mut(&key(CHANGED_MAPPING))
            .expect("the changed mapping")["spec"]["internalAddress"] = json!(CHANGED_ADDRESS);
        let pristine = state_across_recreation(&self.pristine);
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
}

/// Development aids; the default is every crash point, on reused clusters.
/// `CP_CRASH_FRESH_CLUSTERS=1`: every crash point gets a fresh cluster of its own (to compare
/// with the reuse, and its cost). `CP_CRASH_POINTS=FROM-TO`: only these crash points (the
/// summary line says so).
fn crash_options() -> (bool, Option<(u64, u64)>) {
    let fresh = std::env::var("CP_CRASH_FRESH_CLUSTERS").is_ok_and(|v| v == "1");
    let range = std::env::var("CP_CRASH_POINTS").ok().map(|v| {
        let (a, b) = v.split_once('-').expect("CP_CRASH_POINTS=FROM-TO");
        (
            a.parse().expect("CP_CRASH_POINTS from"),
            b.parse().expect("CP_CRASH_POINTS to"),
        )
    });
    (fresh, range)
}

/// Kills `command` after each of its requests and runs it again; returns one of the rigs, in
/// its pristine state, for the caller's own checks.
async fn crash_matrix(tenant: Tenant, command: Command) -> Rig {
    let started = Instant::now();
    let (fresh, range) = crash_options();
    let first = range.map_or(1, |r| r.0);
    let next = Arc::new(AtomicU64::new(first));
    let total = Arc::new(std::sync::OnceLock::<u64>::new());
    let workers_n = command.crash_workers();
    let mut workers = Vec::new();
    for _ in 0..workers_n {
        let next = next.clone();
        let total = total.clone();
        workers.push(async move {
            let mut rig = Some(Rig::for_command(tenant, command).await);
            let first_rig = rig.as_ref().expect("rig");
            let mut golden = vec![(first_rig.golden_ms, first_rig.golden_requests)];
            let mut cases = Vec::new();
            let mut busy = Duration::ZERO;
            loop {
                let current = rig.as_ref().expect("rig");
                let n = *total.get_or_init(|| current.golden_requests);
                assert!(
                    current.golden_requests.abs_diff(n) <= command.request_spread(),
                    "uninterrupted runs make the same number of requests (but for waits): {} and {n}",
                    current.golden_requests
                );
                let k = next.fetch_add(1, Ordering::SeqCst);
                if k > range.map_or(n, |r| r.1.min(n)) {
                    break;
                }
                let t = Instant::now();
                cases.push(crash_case(current, k, n).await);
                busy += t.elapsed();
                if fresh {
                    // Its permit goes back before the next cluster starts.
                    drop(rig.take());
                    let t = Instant::now();
                    let next_rig = Rig::for_command(tenant, command).await;
                    busy += t.elapsed();
                    golden.push((next_rig.golden_ms, next_rig.golden_requests));
                    rig = Some(next_rig);
                }
            }
            (golden, cases, busy, rig.expect("rig"))
        });
    }
    let mut cases = Vec::new();
    let mut golden = Vec::new();
    let mut busy = Duration::ZERO;
    let mut rigs = Vec::new();
    // One task: the cluster helpers are not Send; the work is waiting on processes and the API.
    for (g, c, b, rig) in futures::future::join_all(workers).await {
        golden.extend(g);
        cases.extend(c);
        busy += b;
        rigs.push(rig);
    }
    // The others' clusters (and permits) go now.
    rigs.truncate(1);
    cases.sort_by_key(|c| c.k);
    let n = *total.get().expect("N");
    let lost: Vec<&CrashCase> = cases.iter().filter(|c| !c.lost.is_empty()).collect();
    let failed: Vec<&CrashCase> = cases
        .iter()
        .filter(|c| !c.rerun_ok || !c.diff.is_empty())
        .collect();
    let rerun_requests: Vec<u64> = cases.iter().map(|c| c.rerun_requests).collect();
    let golden_ms: Vec<u128> = golden.iter().map(|g| g.0).collect();
    let golden_requests: Vec<u64> = golden.iter().map(|g| g.1).collect();
    let tried_again = cases.iter().filter(|c| c.ended_before_k > 0).count();
    let never_killed: Vec<u64> = cases
        .iter()
        .filter(|c| c.ended_before_k == CRASH_ATTEMPTS)
        .map(|c| c.k)
        .collect();
    let mean = |i: usize| {
        cases.iter().map(|c| c.phases[i].as_secs_f64()).sum::<f64>() / cases.len().max(1) as f64
    };
    eprintln!(
        "crash matrix {command:?} {tenant:?}: {n} requests in an uninterrupted run ({}-{} requests, {}-{} ms){}; {} crash points tried \
         ({tried_again} tried again after a run that ended before it, {never_killed:?} never reached in {CRASH_ATTEMPTS} runs), \
         {} lost user configuration, legacy objects or ServiceMappings, {} did not converge to the golden state; requests of the run after the crash: \
         min {} max {}; wall {:.1}s with {workers_n} {} clusters at a time, {:.2}s per crash point (killed run {:.2}s, \
         next run {:.2}s, compare {:.2}s, restore {:.2}s)",
        golden_requests.iter().min().unwrap_or(&0),
        golden_requests.iter().max().unwrap_or(&0),
        golden_ms.iter().min().unwrap_or(&0),
        golden_ms.iter().max().unwrap_or(&0),
        match range {
            Some((a, b)) => format!(" (LIMITED to crash points {a}-{b} by CP_CRASH_POINTS)"),
            None => String::new(),
        },
        cases.len(),
        lost.len(),
        failed.len(),
        rerun_requests.iter().min().unwrap_or(&0),
        rerun_requests.iter().max().unwrap_or(&0),
        started.elapsed().as_secs_f64(),
        if fresh { "fresh" } else { "reused" },
        busy.as_secs_f64() / cases.len().max(1) as f64,
        mean(0),
        mean(1),
        mean(2),
        mean(3),
    );
    let last = range.map_or(n, |r| r.1.min(n));
    assert_eq!(
        cases.len() as u64,
        last + 1 - first,
        "every crash point was tried"
    );
    let report: Vec<String> = lost
        .iter()
        .map(|c| format!("k={}: lost {:?}", c.k, c.lost))
        .chain(failed.iter().map(|c| {
            format!(
                "k={}: rerun ok={}; {}\n{}",
                c.k,
                c.rerun_ok,
                c.diff.join("\n  "),
                c.rerun_log
            )
        }))
        .collect();
    assert!(report.is_empty(), "{}", report.join("\n"));
    rigs.pop().expect("a rig")
}

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
    rig.mappings_made_after_the_migration_come_back().await;
}

// ---------------------------------------------------------------------------------------------
// A flapping API server, and an outage

fn fault_counts(log: &[Seen]) -> BTreeMap<String, usize> {
    let mut out = BTreeMap::new();
    for s in log {
        if let Some(f) = s.fault {
            *out.entry(format!("{f:?}")).or_default() += 1;
        }
    }
    out
}

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

/// A full outage (from the start, and from the middle of the run): the run fails within its
/// deadline with a clear error, nothing is lost, and the next run finishes.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn outage_fails_within_the_deadline_and_the_next_run_finishes() {
    let rig = Rig::new(Tenant::Dedicated).await;
    let deadline = Duration::from_secs(5);
    let request_timeout = Duration::from_secs(2);
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
        // The deadline bounds the whole command; one request may be in flight when it ends.
        assert!(
            wall < deadline + request_timeout + Duration::from_secs(3),
            "{what}: failed only after {wall:?}"
        );
        r.assert_failed_with(&needles);
        let lost = rig.lost_user_config().await;
        assert!(lost.is_empty(), "{what}: lost {lost:?}");

        rig.proxy.set_schedule(Schedule::None);
        let next = finish(
            spawn_tool(rig.proxy.kubeconfig(), &["--deadline", "60s"], &["run"]),
            RUN_LIMIT,
        )
        .await;
        next.assert_ok();
        let diff = rig.state_diff_from_golden().await;
        assert!(diff.is_empty(), "{what}: {}", diff.join("\n"));
    }
}

// ---------------------------------------------------------------------------------------------
// Concurrent runs, and a concurrent writer

/// Holds each of the first `n` reads of the CR until all `n` happened, so that the runs really
/// race for the CR write instead of finishing one after the other.
fn barrier_on_cr_reads(n: usize) -> Hook {
    let barrier = Arc::new(tokio::sync::Barrier::new(n));
    let reads = Arc::new(AtomicUsize::new(0));
    Arc::new(move |seen: &Seen, _: &Client| {
        if seen.method != http::Method::GET
            || !is_cr(seen)
            || reads.fetch_add(1, Ordering::SeqCst) >= n
        {
            return None;
        }
        let barrier = barrier.clone();
        Some(Box::pin(async move {
            let _ = tokio::time::timeout(Duration::from_secs(20), barrier.wait()).await;
        }))
    })
}

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

/// The foreign write: a label and an unrelated spec field, through the admin client.
fn foreign_write(client: &Client) -> futures::future::BoxFuture<'static, ()> {
    let api = cp_mod_migrator::cr::api(client);
    Box::pin(async move {
        let patch = json!({
            "metadata": {"labels": {"example.com/owner": "team-a"}},
            "spec": {"deployment": {"replicaCount": 3}},
        });
        api.patch(
            names::cr::NAME,
            &PatchParams::default(),
            &Patch::Merge(&patch),
        )
        .await
        .expect("foreign write");
    })
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
    let r = finish(
        spawn_tool(rig.proxy.kubeconfig(), &["--deadline", "60s"], &["migrate"]),
        RUN_LIMIT,
    )
    .await;
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
        names::cr::GROUP,
        names::cr::KIND,
        names::KYMA_SYSTEM,
        names::cr::NAME
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
    let rest = finish(
        spawn_tool(rig.proxy.kubeconfig(), &["--deadline", "60s"], &["run"]),
        RUN_LIMIT,
    )
    .await;
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

fn legacy_statefulset_path() -> String {
    format!(
        "/apis/apps/v1/namespaces/{}/statefulsets/{}",
        names::KYMA_SYSTEM,
        names::legacy_marker::STATEFULSET
    )
}

fn user_config_path(name: &str) -> String {
    format!(
        "/api/v1/namespaces/{}/configmaps/{name}",
        names::KYMA_SYSTEM
    )
}

/// The value of `key` in user ConfigMap `name`, if both exist.
async fn user_config_value(rig: &Rig, name: &str, key: &str) -> Option<String> {
    let cms: Api<ConfigMap> = Api::namespaced(rig.cluster.client.clone(), names::KYMA_SYSTEM);
    cms.get_opt(name)
        .await
        .expect("read the ConfigMap")
        .and_then(|cm| cm.data)
        .and_then(|mut d| d.remove(key))
}

/// A merge patch through the admin client, as a hook's foreign write.
fn merge_patch(
    client: &Client,
    ar: ApiResource,
    name: &'static str,
    patch: Value,
) -> futures::future::BoxFuture<'static, ()> {
    let api: Api<DynamicObject> = Api::namespaced_with(client.clone(), names::KYMA_SYSTEM, &ar);
    Box::pin(async move {
        api.patch(name, &PatchParams::default(), &Patch::Merge(&patch))
            .await
            .unwrap_or_else(|e| panic!("foreign write to {name}: {e}"));
    })
}

/// The cluster as before the migration, then migrate and backup run.
async fn migrated_and_backed_up(rig: &Rig) {
    rig.restore().await;
    for step in ["migrate", "backup"] {
        finish(
            spawn_tool(rig.proxy.kubeconfig(), &["--deadline", "60s"], &[step]),
            RUN_LIMIT,
        )
        .await
        .assert_ok();
    }
}

/// Runs clean with `write` done once, right after clean's first read of `path` (before the
/// tool sees the answer). Returns clean's result and clean's requests.
async fn clean_with_write_after_read(
    rig: &Rig,
    path: fn() -> String,
    write: fn(&Client) -> futures::future::BoxFuture<'static, ()>,
) -> (RunResult, Vec<Seen>) {
    rig.proxy.reset();
    let fired = Arc::new(AtomicUsize::new(0));
    let hook_fired = fired.clone();
    rig.proxy
        .set_hook(Some(Arc::new(move |seen: &Seen, client: &Client| {
            let read = seen.method == http::Method::GET
                && seen.path.split('?').next() == Some(path().as_str());
            (read && hook_fired.swap(1, Ordering::SeqCst) == 0).then(|| write(client))
        })));
    let r = finish(
        spawn_tool(rig.proxy.kubeconfig(), &["--deadline", "60s"], &["clean"]),
        RUN_LIMIT,
    )
    .await;
    rig.proxy.set_hook(None);
    assert_eq!(
        fired.load(Ordering::SeqCst),
        1,
        "the foreign write happened"
    );
    (r, rig.proxy.log())
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
            names::legacy_marker::STATEFULSET,
            json!({"metadata": {"labels": {names::OPERATOR_LABEL: names::OPERATOR_LABEL_VALUE}}}),
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
        Api::namespaced(rig.cluster.client.clone(), names::KYMA_SYSTEM);
    let sts = sts
        .get_opt(names::legacy_marker::STATEFULSET)
        .await
        .expect("read the StatefulSet");
    assert_eq!(
        sts.as_ref()
            .and_then(|s| s.labels().get(names::OPERATOR_LABEL).cloned())
            .as_deref(),
        Some(names::OPERATOR_LABEL_VALUE),
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
        || user_config_path(config_maps::CONFIG),
        |client| {
            merge_patch(
                client,
                ApiResource::erase::<ConfigMap>(&()),
                config_maps::CONFIG,
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
        user_config_value(rig, config_maps::CONFIG, "edited-after-the-backup")
            .await
            .as_deref(),
        Some("yes"),
        "the edited user configuration still exists"
    );
    finish(
        spawn_tool(rig.proxy.kubeconfig(), &["--deadline", "60s"], &["clean"]),
        RUN_LIMIT,
    )
    .await
    .assert_failed_with(&["differs from ConfigMap kyma-system/connectivity-proxy"]);
}

/// A user ConfigMap that did not exist at the backup check (deleted after the backup) is
/// created before clean deletes the legacy objects: it has no verified copy, so it is kept.
async fn user_config_created_between_backup_check_and_delete(rig: &Rig) {
    migrated_and_backed_up(rig).await;
    let cms: Api<ConfigMap> = Api::namespaced(rig.cluster.client.clone(), names::KYMA_SYSTEM);
    cms.delete(config_maps::INFO, &DeleteParams::default())
        .await
        .expect("delete the proxy ports ConfigMap");
    let (r, _) = clean_with_write_after_read(
        rig,
        || user_config_path(config_maps::INFO),
        |client| {
            let cms: Api<ConfigMap> = Api::namespaced(client.clone(), names::KYMA_SYSTEM);
            Box::pin(async move {
                let mut cm = ConfigMap::default();
                cm.metadata.name = Some(config_maps::INFO.into());
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
        user_config_value(rig, config_maps::INFO, "created-after-the-check")
            .await
            .as_deref(),
        Some("yes"),
        "the new ConfigMap still exists"
    );
}
