//! The crash rig of tests/reliability.rs: one real cluster with the legacy fixture, a
//! fault-injecting proxy in front of it (tests/support/faultproxy), the state before a command
//! (pristine) and after an uninterrupted run of it (golden): `run` on the legacy installation,
//! `rollback` once the migration is done and the module disabled, or `rollback --prepare`.
//! Between cases the rig puts the cluster back into its pristine state and verifies that with a
//! full snapshot, so one cluster serves many cases; the crash matrix would otherwise need ~200
//! fresh clusters. Also: the crash matrix itself (the command killed after each of its requests,
//! then run again), and the hooks and paths the other reliability cases use.

use std::collections::{BTreeMap, BTreeSet};
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use k8s_openapi::api::core::v1::ConfigMap;
use kube::api::{Api, DynamicObject, Patch, PatchParams};
use kube::core::ApiResource;
use kube::{Client, ResourceExt};
use serde_json::{Value, json};

use cp_mod_migrator::archive;

use super::archive::{archive_key, with_archive_decoded};
use super::contract::{
    self, BACKUP_NAMESPACE, KYMA_SYSTEM, SHARED_TENANT_SECRET, USER_CONFIG, legacy_marker, markers,
    service_mapping,
};
use super::events::event_reasons;
use super::faultproxy::{FaultProxy, Hook, Schedule, Seen};
use super::snapshot::*;
use super::{
    RUN_LIMIT, RunResult, Tenant, TestCluster, cr, finish, operator, service_mappings, spawn_tool,
};

/// Clusters alive at once in this test binary: the machine has two cores, and an API server
/// is busy for a few seconds while it starts.
pub static CLUSTERS: tokio::sync::Semaphore = tokio::sync::Semaphore::const_new(3);

/// Workers (each with its own cluster) per crash matrix.
pub const CRASH_WORKERS: usize = 3;

// ---------------------------------------------------------------------------------------------
// The rig

/// The command a rig runs, and the state it starts from.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Command {
    /// `run` on the legacy installation with the module enabled.
    Migration,
    /// `rollback` as the runbook has it: after `run`, the module's operator at `Ready`,
    /// `rollback --prepare`, and the module disabled (its uninstall deleted the ServiceMapping
    /// CRD that clean adopted, and so every ServiceMapping).
    Rollback,
    /// `rollback --prepare` after `run`, with the module's operator at `Ready`, ServiceMappings
    /// created since and one changed since.
    Prepare,
    /// `run --hand-over` on the legacy installation with the module enabled.
    HandOver,
    /// `finish` after `run --hand-over`, the orphaning deletes completed and the module's
    /// operator at `Ready`.
    Finish,
}

impl Command {
    pub fn args(self) -> &'static [&'static str] {
        match self {
            Command::Migration => &["run"],
            Command::Rollback => &["rollback"],
            Command::Prepare => &["rollback", "--prepare"],
            Command::HandOver => &["run", "--hand-over"],
            Command::Finish => &["finish"],
        }
    }

    /// Where the user configuration is before the command.
    pub fn user_config_namespace(self) -> &'static str {
        match self {
            Command::Migration | Command::HandOver | Command::Finish => KYMA_SYSTEM,
            Command::Rollback | Command::Prepare => BACKUP_NAMESPACE,
        }
    }

    /// The compared state: rollback creates Services and the ServiceMapping CRD anew, with
    /// addresses and condition times of their own; prepare's archive is compared as it decodes
    /// (its Secret says when it was written).
    pub fn state(self, s: &Snap) -> State {
        match self {
            Command::Migration | Command::Finish => state_of(s),
            Command::Rollback => state_across_recreation(s),
            Command::Prepare => with_archive_decoded(state_of(s)),
            Command::HandOver => without_deletion_times(state_of(s)),
        }
    }

    /// How many requests an uninterrupted run may make more or fewer than another: rollback
    /// waits until the ServiceMapping CRD it recreated is Established, reading it again until
    /// then.
    pub fn request_spread(self) -> u64 {
        match self {
            Command::Migration | Command::Prepare | Command::HandOver | Command::Finish => 0,
            Command::Rollback => 3,
        }
    }

    /// Workers of its crash matrix, each with a cluster of its own: `--prepare` makes a handful
    /// of requests, fewer than it takes to make a rig.
    pub fn crash_workers(self) -> usize {
        match self {
            Command::Migration | Command::Rollback | Command::HandOver => CRASH_WORKERS,
            Command::Prepare | Command::Finish => 1,
        }
    }
}

/// A state without when each object's deletion began: the legacy workloads that a hand-over
/// deleted with their Pods orphaned wait, on a cluster without a garbage collector, with the
/// `orphan` finalizer (which is compared).
fn without_deletion_times(mut state: State) -> State {
    for v in state.values_mut() {
        if let Some(meta) = v.get_mut("metadata").and_then(Value::as_object_mut) {
            meta.remove("deletionTimestamp");
            meta.remove("deletionGracePeriodSeconds");
        }
    }
    state
}

/// What the garbage collector does after an orphaning delete, on a cluster that runs none: once
/// it has taken the owner's references off the dependents (there are none without the
/// controllers), it removes the `orphan` finalizer, and the object goes.
pub async fn orphaning_completed(cluster: &TestCluster) {
    for (kind, name) in [
        ("StatefulSet", "connectivity-proxy"),
        ("Deployment", "connectivity-proxy-restart-watcher"),
        ("Deployment", "connectivity-proxy-sm-operator"),
    ] {
        let ar = ApiResource::from_gvk_with_plural(
            &kube::core::GroupVersionKind::gvk("apps", "v1", kind),
            &format!("{}s", kind.to_lowercase()),
        );
        let api: Api<DynamicObject> =
            Api::namespaced_with(cluster.client.clone(), KYMA_SYSTEM, &ar);
        if let Some(o) = api.get_opt(name).await.expect("get legacy workload") {
            assert!(
                o.metadata.deletion_timestamp.is_some(),
                "{kind} {name} deleted by the hand-over"
            );
            api.patch(
                name,
                &PatchParams::default(),
                &Patch::Merge(json!({"metadata": {"finalizers": null}})),
            )
            .await
            .expect("the garbage collector's part");
        }
    }
}

/// Snapshot key of the ServiceMapping CRD.
pub fn service_mapping_crd_key() -> String {
    format!(
        "apiextensions.k8s.io/CustomResourceDefinition /{}",
        service_mapping::CRD
    )
}

/// Whether a snapshot key is a ServiceMapping's.
pub fn is_service_mapping(key: &str) -> bool {
    key.starts_with(&format!(
        "{}/{} ",
        service_mapping::GROUP,
        service_mapping::KIND
    ))
}

/// The ServiceMappings and their CRD in a state.
pub fn service_mappings_in(state: &State) -> State {
    state
        .iter()
        .filter(|(k, _)| is_service_mapping(k) || **k == service_mapping_crd_key())
        .map(|(k, v)| (k.clone(), v.clone()))
        .collect()
}

/// After `run`, the module's operator reconciles to `Ready`.
pub async fn migrated_with_the_module_running(cluster: &TestCluster) {
    cluster.run(&["run"]).assert_ok();
    assert_eq!(operator::reconcile(cluster).await, operator::Outcome::Ready);
}

/// ServiceMappings made while the module ran, for `--prepare` to record: created since clean.
pub const MADE_AFTER_THE_MIGRATION: usize = 3;
/// A legacy ServiceMapping changed while the module ran, and its new address.
pub const CHANGED_MAPPING: &str = "sm-erp";
pub const CHANGED_ADDRESS: &str = "erp-new.onprem.example:3300";

/// What users do while the module runs: create ServiceMappings, change one.
pub async fn mappings_changed_while_the_module_ran(cluster: &TestCluster) {
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
pub fn legacy_objects_in(s: &Snap) -> Vec<(String, archive::ObjectKey)> {
    s.iter()
        .filter_map(|(key, o)| {
            let namespace = o.value["metadata"]["namespace"].as_str().unwrap_or("");
            let name = o.value["metadata"]["name"].as_str().unwrap_or("");
            contract::is_legacy(&o.ar.group, &o.ar.kind, namespace, name).then(|| {
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

pub struct Rig {
    _permit: tokio::sync::SemaphorePermit<'static>,
    pub tenant: Tenant,
    pub command: Command,
    /// The legacy installation's objects, before the migration.
    pub legacy: Vec<(String, archive::ObjectKey)>,
    /// The ServiceMappings and their CRD before the migration (as compared across recreation).
    pub mappings_before: State,
    pub cluster: TestCluster,
    pub proxy: FaultProxy,
    pub kinds: Kinds,
    pub pristine: Snap,
    /// The user configuration before the migration: (name, data, binaryData).
    pub user_config: Vec<(String, Value, Value)>,
    pub golden: State,
    /// Requests of the uninterrupted run.
    pub golden_requests: u64,
    pub golden_ms: u128,
}

impl Rig {
    pub async fn new(tenant: Tenant) -> Rig {
        Rig::for_command(tenant, Command::Migration).await
    }

    pub async fn for_command(tenant: Tenant, command: Command) -> Rig {
        let permit = CLUSTERS.acquire().await.expect("semaphore");
        let cluster = TestCluster::with(tenant.fixtures()).await;
        let proxy = FaultProxy::start(&cluster.kubeconfig, cluster.dir());
        let before = snap(&cluster.client, &discover(&cluster.client).await).await;
        let legacy = legacy_objects_in(&before);
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
            Command::HandOver => {}
            Command::Finish => {
                cluster.run(&["run", "--hand-over"]).assert_ok();
                orphaning_completed(&cluster).await;
                assert_eq!(
                    operator::reconcile(&cluster).await,
                    operator::Outcome::Ready
                );
                // No controller runs here: the status its controllers would write once the
                // module's workloads had replaced the legacy Pods, which finish waits for.
                operator::report_workloads_rolled(&cluster).await;
            }
        }
        let pristine = snap(&cluster.client, &discover(&cluster.client).await).await;
        let user_config = USER_CONFIG
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
            cluster.wait_established(service_mapping::CRD).await;
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
            Command::HandOver => rig.check_golden_is_a_hand_over().await,
            Command::Finish => rig.check_golden_is_a_finish(&r).await,
        }
        rig.restore().await;
        rig
    }

    /// The golden state of a rollback is the legacy installation back, whole, with every
    /// ServiceMapping and their CRD as before the migration.
    pub fn check_golden_is_a_rollback(&self, r: &RunResult) {
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
    pub fn check_golden_is_a_prepare(&self, r: &RunResult) {
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
                service_mapping::GROUP,
                service_mapping::KIND
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
    pub async fn objects_nowhere(&self) -> Vec<String> {
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

    /// The golden state of a hand-over: every marker, the hand-over's among them; the user
    /// configuration copied, and in kyma-system still, the operator's now; each object of the
    /// contract's lists where the hand-over puts it.
    pub async fn check_golden_is_a_hand_over(&self) {
        let cr = self.cluster.cr().await;
        for m in markers::ALL.iter().chain([&markers::HANDED_OVER]) {
            assert_eq!(
                cr.annotations().get(*m).map(String::as_str),
                Some("true"),
                "{m}"
            );
        }
        let key_of = |listed: &str| {
            let (kind, place) = listed.split_once(' ').expect("Kind namespace/name");
            self.golden
                .keys()
                .find(|k| k.ends_with(&format!("/{kind} {place}")))
                .cloned()
        };
        for listed in contract::hand_over::HANDED_OVER {
            let key = key_of(listed).unwrap_or_else(|| panic!("{listed} is there"));
            let meta: kube::core::ObjectMeta =
                serde_json::from_value(self.golden[&key]["metadata"].clone()).expect("metadata");
            assert!(contract::is_adopted(&meta), "{listed} handed over");
        }
        for listed in contract::hand_over::LEFT_FOR_FINISH {
            assert!(key_of(listed).is_some(), "{listed} left for finish");
        }
        for listed in contract::hand_over::ORPHANED {
            let key = key_of(listed).unwrap_or_else(|| panic!("{listed} waits for its orphaning"));
            assert_eq!(
                self.golden[&key]["metadata"]["finalizers"],
                json!(["orphan"]),
                "{listed} deleted with its Pods orphaned"
            );
        }
        for (name, data, _) in &self.user_config {
            let copy = &self.golden[&format!("/ConfigMap {BACKUP_NAMESPACE}/{name}")];
            assert_eq!(&copy["data"], data, "the copy of {name}");
        }
    }

    /// The golden state of finish: what the hand-over left gone, the finished marker set.
    pub async fn check_golden_is_a_finish(&self, r: &RunResult) {
        assert!(
            r.reason().starts_with(&format!(
                "{} legacy objects left by the hand-over deleted",
                contract::hand_over::LEFT_FOR_FINISH.len()
            )),
            "{}",
            r.reason()
        );
        let cr = self.cluster.cr().await;
        assert_eq!(
            cr.annotations().get(markers::FINISHED).map(String::as_str),
            Some("true")
        );
        for listed in contract::hand_over::LEFT_FOR_FINISH {
            let (kind, place) = listed.split_once(' ').expect("Kind namespace/name");
            assert!(
                !self
                    .golden
                    .keys()
                    .any(|k| k.ends_with(&format!("/{kind} {place}"))),
                "{listed} deleted by finish"
            );
        }
    }

    /// The golden state is the contract's end state, not merely whatever the tool left.
    pub async fn check_golden_is_a_migration(&self) {
        let cr = self.cluster.cr().await;
        for m in markers::ALL {
            assert_eq!(
                cr.annotations().get(m).map(String::as_str),
                Some("true"),
                "{m}"
            );
        }
        for (name, data, binary) in &self.user_config {
            let key = format!("/ConfigMap {}/{name}", BACKUP_NAMESPACE);
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
                    .contains_key(&format!("/ConfigMap {}/{name}", KYMA_SYSTEM)),
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
            Tenant::Shared => assert_eq!(secret, &json!(SHARED_TENANT_SECRET)),
            Tenant::Dedicated => assert_eq!(secret, &json!("auto-provision")),
        }
    }

    /// Back to the pristine state, verified object by object.
    pub async fn restore(&self) {
        self.restore_from(None).await;
    }

    /// [`Rig::restore`], given a snapshot of the current state if one was just taken.
    pub async fn restore_from(&self, mut current: Option<Snap>) {
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

    pub async fn state(&self) -> State {
        self.command
            .state(&snap(&self.cluster.client, &self.kinds).await)
    }

    /// User configuration that exists neither in kyma-system nor in the backup namespace
    /// (with the data it had before the migration).
    pub async fn lost_user_config(&self) -> Vec<String> {
        let mut lost = Vec::new();
        for (name, data, binary) in &self.user_config {
            let mut found = false;
            for ns in [KYMA_SYSTEM, BACKUP_NAMESPACE] {
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

    /// How many `Migrated` Events the tool recorded (the restore deletes the Events).
    pub async fn migrated_events(&self) -> usize {
        event_reasons(&self.cluster)
            .await
            .iter()
            .filter(|r| *r == "Migrated")
            .count()
    }

    /// The tool with `args` through the rig's proxy (deadline 60 s), to its end.
    pub async fn run(&self, args: &[&str]) -> RunResult {
        finish(
            spawn_tool(self.proxy.kubeconfig(), &["--deadline", "60s"], args),
            RUN_LIMIT,
        )
        .await
    }
}

pub fn cr_path() -> String {
    format!(
        "/apis/{}/{}/namespaces/{}/{}/{}",
        contract::cr::GROUP,
        contract::cr::VERSION,
        KYMA_SYSTEM,
        contract::cr::PLURAL,
        contract::cr::NAME
    )
}

pub fn is_cr(seen: &Seen) -> bool {
    seen.path.split('?').next() == Some(cr_path().as_str())
}

pub fn is_dry_run(seen: &Seen) -> bool {
    seen.path.contains("dryRun=All")
}

// ---------------------------------------------------------------------------------------------
// Crash at every request

pub struct CrashCase {
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
pub const CRASH_ATTEMPTS: u32 = 3;

/// The command killed after its request `k` (of `n` in the first uninterrupted run), then run
/// again, compared with the golden state; the cluster restored after.
pub async fn crash_case(rig: &Rig, k: u64, n: u64) -> CrashCase {
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
    let rerun = rig.run(rig.command.args()).await;
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
    pub async fn state_diff_from_golden(&self) -> Vec<String> {
        state_diff(&self.golden, &self.state().await)
    }

    /// The rig's command, run once through the proxy without a fault; the state after it.
    pub async fn run_uninterrupted(&self) -> State {
        self.proxy.reset();
        self.run(self.command.args()).await.assert_ok();
        self.state().await
    }
}

/// Development aids; the default is every crash point, on reused clusters.
/// `CP_CRASH_FRESH_CLUSTERS=1`: every crash point gets a fresh cluster of its own (to compare
/// with the reuse, and its cost). `CP_CRASH_POINTS=FROM-TO`: only these crash points (the
/// summary line and every failure say so; .ci/run refuses to run with it).
pub fn crash_options() -> (bool, Option<(u64, u64)>) {
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
pub async fn crash_matrix(tenant: Tenant, command: Command) -> Rig {
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
    // A limited matrix says so in every failure: it proves less than the whole one.
    let limited = match range {
        Some((a, b)) => format!(
            "\n(CP_CRASH_POINTS={a}-{b} was in effect: only crash points {first}-{last} of {n} were tried)"
        ),
        None => String::new(),
    };
    assert_eq!(
        cases.len() as u64,
        last + 1 - first,
        "every crash point was tried{limited}"
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
    assert!(report.is_empty(), "{}{limited}", report.join("\n"));
    rigs.pop().expect("a rig")
}

pub fn fault_counts(log: &[Seen]) -> BTreeMap<String, usize> {
    let mut out = BTreeMap::new();
    for s in log {
        if let Some(f) = s.fault {
            *out.entry(format!("{f:?}")).or_default() += 1;
        }
    }
    out
}

/// Holds each of the first `n` reads of the CR until all `n` happened, so that the runs really
/// race for the CR write instead of finishing one after the other.
pub fn barrier_on_cr_reads(n: usize) -> Hook {
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

/// The foreign write: a label and an unrelated spec field, through the admin client.
pub fn foreign_write(client: &Client) -> futures::future::BoxFuture<'static, ()> {
    let api = cr::api(client);
    Box::pin(async move {
        let patch = json!({
            "metadata": {"labels": {"example.com/owner": "team-a"}},
            "spec": {"deployment": {"replicaCount": 3}},
        });
        api.patch(
            contract::cr::NAME,
            &PatchParams::default(),
            &Patch::Merge(&patch),
        )
        .await
        .expect("foreign write");
    })
}

pub fn legacy_statefulset_path() -> String {
    format!(
        "/apis/apps/v1/namespaces/{}/statefulsets/{}",
        KYMA_SYSTEM,
        legacy_marker::STATEFULSET
    )
}

pub fn user_config_path(name: &str) -> String {
    format!("/api/v1/namespaces/{}/configmaps/{name}", KYMA_SYSTEM)
}

/// A merge patch through the admin client, as a hook's foreign write.
pub fn merge_patch(
    client: &Client,
    ar: ApiResource,
    name: &'static str,
    patch: Value,
) -> futures::future::BoxFuture<'static, ()> {
    let api: Api<DynamicObject> = Api::namespaced_with(client.clone(), KYMA_SYSTEM, &ar);
    Box::pin(async move {
        api.patch(name, &PatchParams::default(), &Patch::Merge(&patch))
            .await
            .unwrap_or_else(|e| panic!("foreign write to {name}: {e}"));
    })
}

/// The cluster as before the migration, then migrate and backup run.
pub async fn migrated_and_backed_up(rig: &Rig) {
    rig.restore().await;
    for step in ["migrate", "backup"] {
        rig.run(&[step]).await.assert_ok();
    }
}

/// Runs clean with `write` done once, right after clean's first read of `path` (before the
/// tool sees the answer). Returns clean's result and clean's requests.
pub async fn clean_with_write_after_read(
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
    let r = rig.run(&["clean"]).await;
    rig.proxy.set_hook(None);
    assert_eq!(
        fired.load(Ordering::SeqCst),
        1,
        "the foreign write happened"
    );
    (r, rig.proxy.log())
}
