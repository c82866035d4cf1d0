//! Test support: a real kube-apiserver + etcd per test (see `testenv/`), fixtures, snapshots,
//! and running the built binary against it. The test files hold cases; the machinery is here,
//! one module for each thing:
//!
//! - what is expected: `contract` (docs/contract.md's names, spelled out: a test takes its expectation of
//!   a name from here, never from the crate's own tables), `legacy_cases`, `generators`;
//! - the cluster: `TestCluster` (below), `fixtures`, `snapshot` and `unchanged` (whole states,
//!   compared; "writes nothing"), `values`, `config_maps`, `cr`, `events`, `archive`,
//!   `service_mappings`, `kubeconfigs`, `secrets`;
//! - the module: `module` (enabled), `operator` (its operator, emulated);
//! - what runs Pods: `TestCluster::with_controllers` (kube-controller-manager) and `node_agent`
//!   (a kubelet's part: binding, Running, Ready, grace periods), `endpoints` (what a Service's
//!   clients see), `outage` (a migration as those clients see it), `workloads`;
//! - the tool run otherwise: `requests` (its logged requests and retries), `faultproxy` (a proxy
//!   that injects faults), `crash_rig` (tests/reliability.rs's rig and crash matrix), `rbac` and
//!   `rbac_scenario` (the RBAC manifests and the scenario run as their ServiceAccount), `podman`,
//!   `images` and `pod` (the images run as a kubelet would run the example Deployment's Pod).
//!
//! Each test file compiles this module on its own and uses a part of it, so the rest is dead
//! code there: dead code is allowed here for that reason alone. `scripts/dead-test-helpers`
//! finds what no test file and no benchmark uses.
#![allow(dead_code)]

pub mod archive;
pub mod config_maps;
pub mod contract;
pub mod cr;
pub mod crash_rig;
pub mod endpoints;
pub mod events;
pub mod faultproxy;
pub mod fixtures;
pub mod generators;
pub mod images;
pub mod kubeconfigs;
pub mod legacy_cases;
pub mod module;
pub mod node_agent;
pub mod operator;
pub mod operator_diff;
pub mod outage;
pub mod pod;
pub mod podman;
pub mod rbac;
pub mod rbac_scenario;
pub mod real_operator;
pub mod requests;
pub mod secrets;
pub mod service_mappings;
pub mod snapshot;
pub mod unchanged;
pub mod values;
pub mod way_back;
pub mod workloads;

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::sync::OnceLock;
use std::time::{Duration, Instant};

use k8s_openapi::api::authentication::v1::TokenRequest;
use k8s_openapi::api::core::v1::ServiceAccount;
use k8s_openapi::apiextensions_apiserver::pkg::apis::apiextensions::v1::CustomResourceDefinition;
use kube::api::{Api, DynamicObject, Patch, PatchParams, PostParams};
use kube::core::{ApiResource, GroupVersionKind};
use kube::discovery::{Discovery, Scope, verbs};
use kube::{Client, Config, ResourceExt};
use serde_json::Value;

/// The environment variable that names the file of the tool's termination message (a Pod's
/// `/dev/termination-log` when it is not set).
pub const TERMINATION_LOG_ENV: &str = "CP_MIGRATOR_TERMINATION_LOG";

pub const MODULE: &str = "module";
pub const LEGACY: &str = "legacy-2.9.3";
pub const LEGACY_SHARED: &str = "legacy-2.9.3-shared";

/// The two legacy installations: the tenant mode of the user configuration.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Tenant {
    Dedicated,
    Shared,
}

impl Tenant {
    /// The fixtures of the legacy installation and of the enabled module.
    pub fn fixtures(self) -> &'static [&'static str] {
        match self {
            Tenant::Dedicated => &[LEGACY, MODULE],
            Tenant::Shared => &[LEGACY, LEGACY_SHARED, MODULE],
        }
    }
}

pub fn repo_root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

pub fn fixture_dir(name: &str) -> PathBuf {
    repo_root().join("fixtures").join(name)
}

/// Fixtures and manifests are read as the tool reads YAML: YAML 1.2, so `yes`, `off`, `0644`
/// and `1_000` stay strings.
fn yaml_options() -> serde_saphyr::Options {
    serde_saphyr::options! {
        strict_booleans: true,
        leading_zero_numbers_as_strings: true,
        underscored_numbers_as_strings: true,
    }
}

/// One YAML document.
pub fn from_yaml<T: serde::de::DeserializeOwned>(text: &str) -> T {
    serde_saphyr::from_str_with_options(text, yaml_options())
        .unwrap_or_else(|e| panic!("YAML: {e}"))
}

/// Every non-empty document of a YAML stream.
pub fn yaml_documents(text: &str) -> Vec<Value> {
    serde_saphyr::from_multiple_with_options(text, yaml_options())
        .unwrap_or_else(|e| panic!("YAML: {e}"))
}

pub fn to_yaml<T: serde::Serialize>(value: &T) -> String {
    serde_saphyr::to_string(value).expect("serialize YAML")
}

/// The test server binary, built (or found in its cache) once per test process.
fn server_binary() -> &'static Path {
    static BIN: OnceLock<PathBuf> = OnceLock::new();
    BIN.get_or_init(|| testenv_build("build"))
}

/// kube-controller-manager of the server's release (`testenv/controllers`), built (or found in
/// its cache) once per test process.
fn controllers_binary() -> &'static Path {
    static BIN: OnceLock<PathBuf> = OnceLock::new();
    BIN.get_or_init(|| testenv_build("build-controllers"))
}

/// `testenv/cluster <command>`: builds a binary of the test environment, prints its path.
fn testenv_build(command: &str) -> PathBuf {
    let out = Command::new(repo_root().join("testenv/cluster"))
        .arg(command)
        .stderr(Stdio::inherit())
        .output()
        .unwrap_or_else(|e| panic!("run testenv/cluster {command}: {e}"));
    assert!(out.status.success(), "testenv/cluster {command} failed");
    PathBuf::from(String::from_utf8(out.stdout).expect("utf-8 path").trim())
}

/// One real API server with its own etcd, stopped when dropped (also when the test panics).
/// Its stdin is a lifeline: if this process dies, the server sees EOF and exits.
pub struct TestCluster {
    dir: tempfile::TempDir,
    child: Child,
    /// kube-controller-manager, when the test asked for the controllers.
    controllers: Option<Child>,
    pub kubeconfig: PathBuf,
    pub client: Client,
}

impl Drop for TestCluster {
    fn drop(&mut self) {
        for child in self.controllers.iter_mut().chain([&mut self.child]) {
            let _ = child.kill();
            let _ = child.wait();
        }
    }
}

/// Starts `command` with its output in `dir/<log>` and its stdin as its lifeline (it exits
/// when this process goes), then waits until `ready`; panics with the log's tail if it exits
/// first, or after 120 s.
async fn spawn_until_ready(
    mut command: Command,
    dir: &Path,
    log: &str,
    what: &str,
    mut ready: impl AsyncFnMut() -> bool,
) -> Child {
    let file = std::fs::File::create(dir.join(log)).expect("log file");
    let mut child = command
        .arg("--lifeline-stdin")
        .stdin(Stdio::piped())
        .stdout(file.try_clone().expect("log"))
        .stderr(file)
        .spawn()
        .unwrap_or_else(|e| panic!("start {what}: {e}"));
    let started = Instant::now();
    while !ready().await {
        if let Ok(Some(status)) = child.try_wait() {
            let log = std::fs::read_to_string(dir.join(log)).unwrap_or_default();
            panic!(
                "{what} exited ({status}) before it was ready:\n{}",
                tail(&log, 30)
            );
        }
        assert!(
            started.elapsed() < Duration::from_secs(120),
            "{what} not ready after 120 s"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    child
}

impl TestCluster {
    /// A fresh, empty cluster.
    pub async fn start() -> TestCluster {
        let dir = tempfile::Builder::new()
            .prefix("cp-testenv-")
            .tempdir()
            .expect("tempdir");
        let kubeconfig = dir.path().join("kubeconfig");
        let mut serve = Command::new(server_binary());
        serve.args(["serve", "--dir"]).arg(dir.path());
        let child = spawn_until_ready(
            serve,
            dir.path(),
            "server.log",
            "test API server",
            async || kubeconfig.exists(),
        )
        .await;
        let client = client_for(&kubeconfig).await;
        TestCluster {
            dir,
            child,
            controllers: None,
            kubeconfig,
            client,
        }
    }

    /// A fresh cluster with the controllers that make and replace Pods and decide a Service's
    /// endpoints (kube-controller-manager of the same release: StatefulSet, Deployment,
    /// ReplicaSet, EndpointSlice, garbage collector, ServiceAccount; see
    /// `testenv/controllers/`). Pods need a node agent ([`node_agent`]) to be bound and Ready.
    pub async fn with_controllers() -> TestCluster {
        let mut c = TestCluster::start().await;
        let mut run = Command::new(controllers_binary());
        run.arg("--kubeconfig").arg(&c.kubeconfig);
        // The controllers are up when the ServiceAccount controller has made `default`.
        let accounts: Api<ServiceAccount> = Api::namespaced(c.client.clone(), "default");
        let child = spawn_until_ready(
            run,
            c.dir(),
            "controllers.log",
            "kube-controller-manager",
            async || accounts.get_opt("default").await.ok().flatten().is_some(),
        )
        .await;
        c.controllers = Some(child);
        c
    }

    /// A fresh cluster with the named fixture folders applied, in order.
    pub async fn with(fixtures: &[&str]) -> TestCluster {
        let c = TestCluster::start().await;
        for f in fixtures {
            c.apply_dir(&fixture_dir(f)).await;
        }
        c
    }

    /// The module's CRD and default CR, and the legacy installation (dedicated tenant).
    pub async fn legacy_and_module() -> TestCluster {
        TestCluster::with(&[LEGACY, MODULE]).await
    }

    pub fn dir(&self) -> &Path {
        self.dir.path()
    }

    /// Server-side applies every YAML document of every `*.yaml` file in `dir`, in file-name
    /// order, waiting for each CRD to be established before going on.
    pub async fn apply_dir(&self, dir: &Path) {
        let mut files: Vec<PathBuf> = std::fs::read_dir(dir)
            .unwrap_or_else(|e| panic!("read {}: {e}", dir.display()))
            .map(|e| e.expect("dir entry").path())
            .filter(|p| p.extension().is_some_and(|x| x == "yaml"))
            .collect();
        files.sort();
        for f in files {
            let text = std::fs::read_to_string(&f).expect("read fixture");
            self.apply_yaml(&text).await;
        }
    }

    pub async fn apply_yaml(&self, text: &str) {
        for value in yaml_documents(text) {
            let obj: DynamicObject = serde_json::from_value(value).expect("fixture object");
            self.apply(&obj).await;
        }
    }

    /// Server-side apply of one object (forced), then waits if it is a CRD.
    pub async fn apply(&self, obj: &DynamicObject) {
        let (api, gvk) = self.api_of(obj).await;
        let name = obj.name_any();
        api.patch(
            &name,
            &PatchParams::apply("testenv-fixtures").force(),
            &Patch::Apply(obj),
        )
        .await
        .unwrap_or_else(|e| panic!("apply {} {name}: {e}", gvk.kind));
        if gvk.kind == "CustomResourceDefinition" {
            self.wait_established(&name).await;
        }
    }

    /// A merge patch of the object of `kind` (found by discovery) at `namespace`/`name`.
    pub async fn merge_patch(&self, kind: &str, namespace: &str, name: &str, patch: &Value) {
        let discovery = Discovery::new(self.client.clone())
            .run()
            .await
            .expect("discovery");
        let (ar, _) = discovery
            .groups()
            .flat_map(|g| g.recommended_resources())
            .find(|(ar, _)| ar.kind == kind)
            .unwrap_or_else(|| panic!("no kind {kind} served"));
        Api::<DynamicObject>::namespaced_with(self.client.clone(), namespace, &ar)
            .patch(name, &PatchParams::default(), &Patch::Merge(patch))
            .await
            .unwrap_or_else(|e| panic!("patch {kind} {namespace}/{name}: {e}"));
    }

    /// Deletes the object that `obj` names (its kind, namespace and name), if it exists.
    pub async fn delete(&self, obj: &DynamicObject) {
        let (api, gvk) = self.api_of(obj).await;
        match api.delete(&obj.name_any(), &Default::default()).await {
            Ok(_) => {}
            Err(kube::Error::Api(s)) if s.code == 404 => {}
            Err(e) => panic!("delete {} {}: {e}", gvk.kind, obj.name_any()),
        }
    }

    /// The API of the kind `obj` names (found by discovery), in its namespace if it has one.
    async fn api_of(&self, obj: &DynamicObject) -> (Api<DynamicObject>, GroupVersionKind) {
        let types = obj.types.clone().expect("apiVersion and kind");
        let gvk = GroupVersionKind::try_from(&types).expect("gvk");
        let (ar, namespaced) = self.resource(&gvk).await;
        let api = if namespaced {
            Api::namespaced_with(
                self.client.clone(),
                &obj.namespace().expect("namespace"),
                &ar,
            )
        } else {
            Api::all_with(self.client.clone(), &ar)
        };
        (api, gvk)
    }

    async fn resource(&self, gvk: &GroupVersionKind) -> (ApiResource, bool) {
        let (ar, caps) = kube::discovery::pinned_kind(&self.client, gvk)
            .await
            .unwrap_or_else(|e| panic!("discover {gvk:?}: {e}"));
        (ar, caps.scope == Scope::Namespaced)
    }

    pub async fn wait_established(&self, name: &str) {
        let crds: Api<CustomResourceDefinition> = Api::all(self.client.clone());
        let started = Instant::now();
        loop {
            let crd = crds.get(name).await.expect("get CRD");
            let established = crd.status.and_then(|s| s.conditions).is_some_and(|c| {
                c.iter()
                    .any(|c| c.type_ == "Established" && c.status == "True")
            });
            if established {
                // Discovery of the new kind lags the condition slightly.
                let group = crd.spec.group.clone();
                let version = crd.spec.versions[0].name.clone();
                let gv = format!("{group}/{version}");
                while self
                    .client
                    .list_api_group_resources(&gv)
                    .await
                    .map(|l| l.resources.iter().all(|r| r.name != crd.spec.names.plural))
                    .unwrap_or(true)
                {
                    assert!(
                        started.elapsed() < Duration::from_secs(60),
                        "CRD {name} not discoverable"
                    );
                    tokio::time::sleep(Duration::from_millis(50)).await;
                }
                return;
            }
            assert!(
                started.elapsed() < Duration::from_secs(60),
                "CRD {name} not established"
            );
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }

    /// A token for a ServiceAccount (created if needed), from the TokenRequest API.
    pub async fn token_for(&self, namespace: &str, name: &str) -> String {
        let sas: Api<ServiceAccount> = Api::namespaced(self.client.clone(), namespace);
        let mut sa = ServiceAccount::default();
        sa.metadata.name = Some(name.into());
        match sas.create(&PostParams::default(), &sa).await {
            Ok(_) => {}
            Err(kube::Error::Api(s)) if s.code == 409 => {}
            Err(e) => panic!("create ServiceAccount: {e}"),
        }
        let request: TokenRequest =
            serde_json::from_value(serde_json::json!({"spec": {"expirationSeconds": 3600}}))
                .expect("TokenRequest");
        let tr: TokenRequest = sas
            .create_subresource("token", name, &PostParams::default(), &request)
            .await
            .expect("TokenRequest");
        tr.status.and_then(|s| s.token).expect("token")
    }

    /// A kubeconfig that authenticates with `token` instead of the admin certificate.
    pub fn kubeconfig_with_token(&self, token: &str, file_name: &str) -> PathBuf {
        let admin: Value =
            from_yaml(&std::fs::read_to_string(&self.kubeconfig).expect("kubeconfig"));
        let cluster = &admin["clusters"][0]["cluster"];
        let text = format!(
            "apiVersion: v1\nkind: Config\nclusters:\n- name: c\n  cluster:\n    server: {}\n    certificate-authority-data: {}\nusers:\n- name: u\n  user:\n    token: {token}\ncontexts:\n- name: c\n  context:\n    cluster: c\n    user: u\ncurrent-context: c\n",
            cluster["server"].as_str().expect("server"),
            cluster["certificate-authority-data"].as_str().expect("ca"),
        );
        let path = self.dir().join(file_name);
        std::fs::write(&path, text).expect("write kubeconfig");
        path
    }

    /// Runs the tool against this cluster with the admin kubeconfig.
    pub fn run(&self, args: &[&str]) -> RunResult {
        run_tool(&self.kubeconfig, args)
    }

    /// Every stored object of every listable kind, keyed "group/Kind ns/name", minus the ones
    /// the API server itself keeps rewriting (leases, events), exactly as listed.
    pub async fn snapshot(&self) -> BTreeMap<String, Value> {
        let kinds = snapshot::discover(&self.client).await;
        snapshot::values(&snapshot::snap(&self.client, &kinds).await)
    }

    pub async fn cr(&self) -> DynamicObject {
        cr::api(&self.client)
            .get(contract::cr::NAME)
            .await
            .expect("get CR")
    }
}

/// Every listable kind (and whether it is namespaced), minus the ones the API server itself
/// keeps writing (Events, Leases). Each kind at every served version: a kind served only at a
/// non-preferred version (EnvoyFilter at v1alpha3) must be seen too.
pub async fn listable_kinds(client: &Client) -> Vec<(ApiResource, bool)> {
    let discovery = Discovery::new(client.clone())
        .run()
        .await
        .expect("discovery");
    let mut out = Vec::new();
    for group in discovery.groups() {
        for (ar, caps) in group.resources_by_stability() {
            if caps.supports_operation(verbs::LIST)
                && !["Event", "Lease"].contains(&ar.kind.as_str())
            {
                out.push((ar, caps.scope == Scope::Namespaced));
            }
        }
    }
    out
}

/// `group/Kind namespace/name`: one object's key in a snapshot.
pub fn object_key(ar: &ApiResource, obj: &DynamicObject) -> String {
    format!(
        "{}/{} {}/{}",
        ar.group,
        ar.kind,
        obj.namespace().unwrap_or_default(),
        obj.name_any()
    )
}

/// What one run of the binary did.
pub struct RunResult {
    pub output: Output,
    pub stdout: String,
    pub stderr: String,
}

impl RunResult {
    /// What a finished process printed, as text.
    pub fn of(output: Output) -> RunResult {
        RunResult {
            stdout: String::from_utf8_lossy(&output.stdout).into_owned(),
            stderr: String::from_utf8_lossy(&output.stderr).into_owned(),
            output,
        }
    }

    pub fn success(&self) -> bool {
        self.output.status.success()
    }

    /// The closing log line (JSON).
    pub fn last_line(&self) -> Value {
        let line = self
            .stderr
            .lines()
            .rev()
            .find(|l| !l.trim().is_empty())
            .unwrap_or("");
        serde_json::from_str(line)
            .unwrap_or_else(|e| panic!("last log line is not JSON ({e}): {line}\n{}", self.stderr))
    }

    pub fn outcome(&self) -> String {
        self.last_line()["outcome"]
            .as_str()
            .unwrap_or_default()
            .to_string()
    }

    pub fn reason(&self) -> String {
        self.last_line()["reason"]
            .as_str()
            .unwrap_or_default()
            .to_string()
    }

    pub fn api_requests(&self) -> u64 {
        self.last_line()["api_requests"].as_u64().unwrap_or(0)
    }

    #[track_caller]
    pub fn assert_ok(&self) -> &Self {
        assert!(
            self.success(),
            "expected success:\nstdout:\n{}\nstderr:\n{}",
            self.stdout,
            self.stderr
        );
        self
    }

    #[track_caller]
    pub fn assert_failed_with(&self, needles: &[&str]) -> &Self {
        assert!(
            !self.success(),
            "expected failure:\nstdout:\n{}\nstderr:\n{}",
            self.stdout,
            self.stderr
        );
        assert_eq!(self.outcome(), "failed", "{}", self.stderr);
        let reason = self.reason();
        for n in needles {
            assert!(reason.contains(n), "error {reason:?} should contain {n:?}");
        }
        self
    }
}

/// Drops the metadata the API server sets on every write, for comparing two states of an object
/// or writing one back.
pub fn drop_server_owned(object: &mut Value) {
    if let Some(meta) = object.get_mut("metadata").and_then(Value::as_object_mut) {
        for field in [
            "uid",
            "resourceVersion",
            "creationTimestamp",
            "managedFields",
            "generation",
        ] {
            meta.remove(field);
        }
    }
}

/// The tool against `kubeconfig`, with JSON logs and no stdin; the caller adds the arguments
/// and decides how to run it.
pub fn tool_command(kubeconfig: &Path) -> Command {
    let mut cmd = tool_base();
    cmd.arg("--kubeconfig")
        .arg(kubeconfig)
        .env_remove("KUBECONFIG");
    cmd
}

/// The tool with JSON logs and no stdin, before any choice of kubeconfig.
pub fn tool_base() -> Command {
    let mut cmd = Command::new(tool_binary());
    cmd.args(["--log-format", "json"])
        // Where a test itself runs in a Pod, its commands must not write that Pod's message.
        .env(
            TERMINATION_LOG_ENV,
            "/nonexistent/cp-mod-migrator-termination-log",
        )
        .stdin(Stdio::null());
    cmd
}

pub fn tool_binary() -> &'static str {
    env!("CARGO_BIN_EXE_cp-mod-migrator")
}

pub fn run_tool(kubeconfig: &Path, args: &[&str]) -> RunResult {
    run_tool_with_env(kubeconfig, args, &[])
}

/// [`run_tool`] with extra environment variables (e.g. `CP_MIGRATOR_LOG`).
pub fn run_tool_with_env(kubeconfig: &Path, args: &[&str], env: &[(&str, &str)]) -> RunResult {
    let output = tool_command(kubeconfig)
        .args(["--deadline", "60s"])
        .args(args)
        .envs(env.iter().copied())
        .output()
        .expect("run cp-mod-migrator");
    RunResult::of(output)
}

/// The tool against `kubeconfig` with `global` flags and `args`, its output captured; see
/// [`finish`].
pub fn spawn_tool(kubeconfig: &Path, global: &[&str], args: &[&str]) -> Child {
    tool_command(kubeconfig)
        .args(global)
        .args(args)
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("spawn cp-mod-migrator")
}

/// Waits for the process (at most `limit`, then it is killed and the test fails).
pub async fn finish(child: Child, limit: Duration) -> RunResult {
    let pid = child.id();
    let waiting = tokio::task::spawn_blocking(move || child.wait_with_output());
    let output = match tokio::time::timeout(limit, waiting).await {
        Ok(joined) => joined.expect("join").expect("wait"),
        Err(_) => {
            // SAFETY: kill(2) on our own child, not reaped yet (the wait above still runs).
            unsafe { libc::kill(pid as libc::pid_t, libc::SIGKILL) };
            panic!("cp-mod-migrator (pid {pid}) still running after {limit:?}");
        }
    };
    RunResult::of(output)
}

/// How long [`finish`] waits for one run of the tool.
pub const RUN_LIMIT: Duration = Duration::from_secs(120);

/// The JSON log line of one step of `run` (the last one for that step).
pub fn step_line(r: &RunResult, step: &str) -> Option<Value> {
    r.stderr
        .lines()
        .rev()
        .filter_map(|l| serde_json::from_str::<Value>(l).ok())
        .find(|v| v["step"] == step)
}

pub async fn client_for(kubeconfig: &Path) -> Client {
    let kc = kube::config::Kubeconfig::read_from(kubeconfig).expect("kubeconfig");
    let config = Config::from_custom_kubeconfig(kc, &Default::default())
        .await
        .expect("config");
    Client::try_from(config).expect("client")
}

pub fn tail(s: &str, n: usize) -> String {
    let lines: Vec<&str> = s.lines().collect();
    lines[lines.len().saturating_sub(n)..].join("\n")
}
