//! The module's operator itself, run as the module runs it: built from the snapshot of its public
//! source (`testenv/cluster build-operator`: Java 17 and Maven, cached by the snapshot's hash),
//! started as a plain JVM process against a test cluster, authenticated with a token of its own
//! ServiceAccount `kyma-system/connectivity-proxy-operator`, which is bound to the ClusterRole of
//! the operator's own release manifest (not cluster-admin).
//!
//! Its main class binds its liveness server on port 8080 of every address and exits when it
//! cannot, so one runs on a machine at a time: [`RealOperator::start`] holds a machine-wide lock
//! (an `flock` on a file) until the operator is dropped; every other test goes on in parallel.
//!
//! Where the snapshot is: `CP_OPERATOR_SOURCE`, else `../shared/reference/module/operator-source`
//! beside the repository (testenv/cluster). A test that needs the operator fails, naming the
//! variable, when neither holds it.

use std::os::fd::AsRawFd as _;
use std::os::unix::process::CommandExt as _;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Stdio};
use std::sync::{Mutex, OnceLock};
use std::time::{Duration, Instant};

use k8s_openapi::api::core::v1::ConfigMap;
use kube::api::{Api, DynamicObject, Patch, PatchParams, PostParams};
use kube::runtime::watcher::{self, Event};
use kube::{Client, ResourceExt};
use serde_json::{Value, json};

use super::operator::{
    CR_CRD, CR_NAME, FINALIZER, NAMESPACE, OPERATOR_DEPLOYMENT, STATE_ERROR, STATE_READY,
    cr_resource, wait_undiscoverable,
};
use super::{TestCluster, repo_root, tail, yaml_documents};

/// Where the tests find the snapshot of the operator's source, when not beside the repository.
pub const SOURCE_ENV: &str = "CP_OPERATOR_SOURCE";
/// The operator's ServiceAccount (its release manifest), in the module's namespace.
pub const SERVICE_ACCOUNT: &str = "connectivity-proxy-operator";
/// The port its liveness server binds on every address (`ConnectivityProxyOperator.java`).
pub const LIVENESS_PORT: u16 = 8080;
/// Its main class (the image's start script runs it so).
const MAIN_CLASS: &str = "com.sap.cloud.connectivity.proxy.operator.ConnectivityProxyOperator";
/// The ConfigMap the operator reads for `externalHost: auto-provision` (Gardener shoots have it).
pub const SHOOT_INFO_NAMESPACE: &str = "kube-system";
pub const SHOOT_INFO: &str = "shoot-info";
/// The domain the tests give the shoot: the operator makes the tunnel host `cp.<domain>`.
pub const SHOOT_DOMAIN: &str = "c-1a2b3c.kyma.example.com";

/// Long enough for the JVM, its informers and a loaded 2-core machine.
const START_LIMIT: Duration = Duration::from_secs(180);

/// The built operator: `lib/` its jars, `proxy-operator.yaml` its release manifest. Built (or
/// found in its cache) once per test process.
pub fn build() -> &'static Path {
    static DIR: OnceLock<PathBuf> = OnceLock::new();
    DIR.get_or_init(|| {
        let out = Command::new(repo_root().join("testenv/cluster"))
            .arg("build-operator")
            .stderr(Stdio::inherit())
            .output()
            .unwrap_or_else(|e| panic!("run testenv/cluster build-operator: {e}"));
        assert!(
            out.status.success(),
            "the module's operator could not be built (testenv/cluster build-operator): its \
             source snapshot is read from {SOURCE_ENV} or ../shared/reference/module/\
             operator-source beside the repository; set {SOURCE_ENV} to generic-module.tar.gz \
             or the folder that holds it"
        );
        PathBuf::from(String::from_utf8(out.stdout).expect("utf-8 path").trim())
    })
}

/// The operator's ServiceAccount, ClusterRole and ClusterRoleBinding from its release manifest,
/// in the module's namespace (the manifest leaves the account's namespace to the installer).
fn release_rbac() -> Vec<Value> {
    let text = std::fs::read_to_string(build().join("proxy-operator.yaml"))
        .expect("the operator's release manifest");
    yaml_documents(&text)
        .into_iter()
        .filter(|d| {
            ["ServiceAccount", "ClusterRole", "ClusterRoleBinding"]
                .contains(&d["kind"].as_str().unwrap_or_default())
        })
        .map(|mut d| {
            if d["kind"] == "ServiceAccount" {
                d["metadata"]["namespace"] = json!(NAMESPACE);
            }
            if let Some(subjects) = d.get_mut("subjects").and_then(Value::as_array_mut) {
                for s in subjects {
                    s["namespace"] = json!(NAMESPACE);
                }
            }
            d
        })
        .collect()
}

/// The ConfigMap `kube-system/shoot-info` of a Gardener shoot, with its `domain`.
pub async fn give_shoot_info(c: &TestCluster) {
    let cms: Api<ConfigMap> = Api::namespaced(c.client.clone(), SHOOT_INFO_NAMESPACE);
    let cm: ConfigMap = serde_json::from_value(json!({
        "metadata": {"name": SHOOT_INFO},
        "data": {"domain": SHOOT_DOMAIN},
    }))
    .expect("shoot-info");
    match cms.create(&PostParams::default(), &cm).await {
        Ok(_) => {}
        Err(kube::Error::Api(s)) if s.code == 409 => {}
        Err(e) => panic!("create ConfigMap kube-system/shoot-info: {e}"),
    }
}

/// Its RBAC from the release manifest, applied as an installer would; returns a kubeconfig with
/// a token of its ServiceAccount.
pub async fn install_rbac(c: &TestCluster) -> PathBuf {
    for object in release_rbac() {
        let obj: DynamicObject = serde_json::from_value(object).expect("release RBAC object");
        c.apply(&obj).await;
    }
    let token = c.token_for(NAMESPACE, SERVICE_ACCOUNT).await;
    c.kubeconfig_with_token(&token, "operator-kubeconfig")
}

/// The machine's one liveness port, held from before the operator starts until it is gone.
struct PortLock(#[allow(dead_code)] std::fs::File);

async fn lock_port() -> PortLock {
    tokio::task::spawn_blocking(|| {
        let path = std::env::temp_dir().join(format!("cp-mod-migrator-port-{LIVENESS_PORT}.lock"));
        let file = std::fs::File::create(&path).expect("the operator's lock file");
        // SAFETY: flock(2) on a descriptor this function owns; released when it is closed.
        let rc = unsafe { libc::flock(file.as_raw_fd(), libc::LOCK_EX) };
        assert_eq!(rc, 0, "lock {}", path.display());
        PortLock(file)
    })
    .await
    .expect("join the lock")
}

/// The module's operator, running against one test cluster; stopped when dropped.
pub struct RealOperator {
    child: Child,
    log: PathBuf,
    _port: PortLock,
}

impl Drop for RealOperator {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl RealOperator {
    /// Installs its RBAC and starts it; returns once its liveness server says every event
    /// source is healthy (it has checked the CRDs it needs and its informers run). Panics with
    /// its log's tail if it exits first.
    pub async fn start(c: &TestCluster) -> RealOperator {
        let (mut op, started) = RealOperator::spawn(c).await;
        while !healthy().await {
            if let Ok(Some(status)) = op.child.try_wait() {
                panic!(
                    "the module's operator exited ({status}) before it was healthy:\n{}",
                    tail(&op.log(), 40)
                );
            }
            assert!(
                started.elapsed() < START_LIMIT,
                "the module's operator not healthy after {START_LIMIT:?}:\n{}",
                tail(&op.log(), 40)
            );
            tokio::time::sleep(Duration::from_millis(200)).await;
        }
        op
    }

    /// Starts it where it is expected to exit at once (a CRD it needs is not served): its exit
    /// status and its log.
    pub async fn start_expecting_exit(c: &TestCluster) -> (ExitStatus, String) {
        let (mut op, started) = RealOperator::spawn(c).await;
        loop {
            if let Ok(Some(status)) = op.child.try_wait() {
                return (status, op.log());
            }
            assert!(
                started.elapsed() < START_LIMIT,
                "the module's operator still running after {START_LIMIT:?}:\n{}",
                tail(&op.log(), 40)
            );
            tokio::time::sleep(Duration::from_millis(200)).await;
        }
    }

    async fn spawn(c: &TestCluster) -> (RealOperator, Instant) {
        let dir = build();
        let kubeconfig = install_rbac(c).await;
        let port = lock_port().await;
        let log = c.dir().join("operator.log");
        let file = std::fs::File::create(&log).expect("operator log");
        let mut command = Command::new("java");
        command
            // A small heap and the quick compiler: it starts faster on a 2-core machine.
            .args(["-Xmx384m", "-XX:TieredStopAtLevel=1", "-XX:+UseSerialGC"])
            .arg("-classpath")
            .arg(format!("{}/lib/*:", dir.display()))
            .arg(MAIN_CLASS)
            .env("KUBECONFIG", &kubeconfig)
            .env("KUBERNETES_NAMESPACE", NAMESPACE)
            .stdin(Stdio::null())
            .stdout(file.try_clone().expect("log"))
            .stderr(file);
        // SAFETY: prctl(2) in the child before exec: it dies with the thread that started it,
        // so a test process that dies leaves no operator holding the port.
        unsafe {
            command.pre_exec(|| {
                libc::prctl(libc::PR_SET_PDEATHSIG, libc::SIGKILL);
                Ok(())
            });
        }
        let child = command
            .spawn()
            .unwrap_or_else(|e| panic!("start the module's operator (java): {e}"));
        (
            RealOperator {
                child,
                log,
                _port: port,
            },
            Instant::now(),
        )
    }

    /// What it logged so far.
    pub fn log(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }
}

/// Whether the liveness server answers 200 (one plain HTTP/1.0 request on loopback).
async fn healthy() -> bool {
    tokio::task::spawn_blocking(|| {
        use std::io::{Read as _, Write as _};
        let timeout = Duration::from_secs(5);
        let Ok(mut stream) = std::net::TcpStream::connect_timeout(
            &std::net::SocketAddr::from(([127, 0, 0, 1], LIVENESS_PORT)),
            timeout,
        ) else {
            return false;
        };
        let _ = stream.set_read_timeout(Some(timeout));
        let mut answer = Vec::new();
        stream
            .write_all(b"GET /health HTTP/1.0\r\nHost: localhost\r\n\r\n")
            .and_then(|()| stream.read_to_end(&mut answer))
            .is_ok()
            && answer.starts_with(b"HTTP/1.1 200")
    })
    .await
    .unwrap_or(false)
}

// ---------------------------------------------------------------------------------------------
// What it reports on the CR

/// Every `status.state` of the CR, in order, as a watch of it saw them (a repeat of the same
/// state is not recorded again). The watch stops when the last clone is dropped.
#[derive(Clone)]
pub struct States {
    seen: std::sync::Arc<Mutex<Vec<Seen>>>,
    _watch: std::sync::Arc<AbortOnDrop>,
}

/// One state as seen: `status.state`, `status.observedGeneration`, `metadata.generation`.
type Seen = (String, Option<i64>, Option<i64>);

/// A task that ends with its owner: a watch left running after its cluster is gone would keep
/// the runtime from shutting down.
struct AbortOnDrop(tokio::task::JoinHandle<()>);

impl Drop for AbortOnDrop {
    fn drop(&mut self) {
        self.0.abort();
    }
}

impl States {
    /// Watches the CR from now on, until dropped.
    pub fn watch(client: &Client) -> States {
        use kube::runtime::WatchStreamExt as _;
        let seen = std::sync::Arc::new(Mutex::new(Vec::new()));
        let api: Api<DynamicObject> =
            Api::namespaced_with(client.clone(), NAMESPACE, &cr_resource());
        let record = seen.clone();
        let task = tokio::spawn(async move {
            use futures::StreamExt as _;
            let config = watcher::Config::default().fields(&format!("metadata.name={CR_NAME}"));
            // Backing off between failed attempts also yields to the runtime.
            let mut events = watcher::watcher(api, config).default_backoff().boxed();
            while let Some(event) = events.next().await {
                if let Ok(Event::Apply(cr) | Event::InitApply(cr)) = event {
                    record_state(&record, &cr);
                }
            }
        });
        States {
            seen,
            _watch: std::sync::Arc::new(AbortOnDrop(task)),
        }
    }

    /// The states seen so far, in order.
    pub fn seen(&self) -> Vec<String> {
        self.seen
            .lock()
            .expect("states")
            .iter()
            .map(|(s, _, _)| s.clone())
            .collect()
    }

    /// Whether the CR says `Ready` now, for its current generation.
    pub fn last_is_ready(&self) -> bool {
        self.seen
            .lock()
            .expect("states")
            .last()
            .is_some_and(|(s, observed, generation)| {
                s == STATE_READY && observed.is_some() && observed == generation
            })
    }

    /// Waits until the CR says `state` for its current generation; panics after `limit`.
    pub async fn wait_for(&self, state: &str, limit: Duration) {
        let started = Instant::now();
        loop {
            let current = self.seen.lock().expect("states").last().is_some_and(
                |(s, observed, generation)| {
                    s == state
                        && (state == STATE_ERROR || (observed.is_some() && observed == generation))
                },
            );
            if current {
                return;
            }
            assert!(
                started.elapsed() < limit,
                "the module not {state} after {limit:?}; states seen: {:?}",
                self.seen()
            );
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }
}

/// Records `cr`'s state unless it repeats the last one.
fn record_state(seen: &Mutex<Vec<Seen>>, cr: &DynamicObject) {
    let status = &cr.data["status"];
    let Some(state) = status["state"].as_str() else {
        return;
    };
    let entry = (
        state.to_string(),
        status["observedGeneration"].as_i64(),
        cr.metadata.generation,
    );
    let mut seen = seen.lock().expect("states");
    if seen.last().map(|(s, o, _)| (s, o)) != Some((&entry.0, &entry.1)) {
        seen.push(entry);
    }
}

// ---------------------------------------------------------------------------------------------
// Disabling the module, the real way

/// What disabling the module does with its operator running: the CR is deleted, the operator's
/// cleanup deletes what it owns and lets the CR go (its finalizer); then the operator stops and
/// the module's operator Deployment and the CR's CRD are deleted. Returns when they are gone.
pub async fn uninstall(c: &TestCluster, operator: RealOperator) {
    let crs: Api<DynamicObject> = Api::namespaced_with(c.client.clone(), NAMESPACE, &cr_resource());
    if let Err(e) = crs.delete(CR_NAME, &Default::default()).await {
        panic!("delete the CR: {e}");
    }
    let started = Instant::now();
    while let Some(cr) = crs.get_opt(CR_NAME).await.expect("get CR") {
        assert!(
            started.elapsed() < START_LIMIT,
            "the operator's cleanup did not let the CR go (finalizers {:?}):\n{}",
            cr.finalizers(),
            tail(&operator.log(), 40)
        );
        assert!(
            cr.finalizers().iter().any(|f| f == FINALIZER),
            "the CR is held by another finalizer: {:?}",
            cr.finalizers()
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    drop(operator);
    let deployments: Api<k8s_openapi::api::apps::v1::Deployment> =
        Api::namespaced(c.client.clone(), NAMESPACE);
    let _ = deployments
        .delete(OPERATOR_DEPLOYMENT, &Default::default())
        .await;
    // The rest of the operator's own installation: its ServiceAccount and cluster RBAC.
    for object in release_rbac() {
        let obj: DynamicObject = serde_json::from_value(object).expect("release RBAC object");
        c.delete(&obj).await;
    }
    let crds: Api<k8s_openapi::apiextensions_apiserver::pkg::apis::apiextensions::v1::CustomResourceDefinition> =
        Api::all(c.client.clone());
    let _ = crds.delete(CR_CRD, &Default::default()).await;
    let started = Instant::now();
    while crds.get_opt(CR_CRD).await.expect("get CRD").is_some()
        || deployments
            .get_opt(OPERATOR_DEPLOYMENT)
            .await
            .expect("get Deployment")
            .is_some()
    {
        assert!(
            started.elapsed() < Duration::from_secs(60),
            "the module's CRD or operator Deployment not gone"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    wait_undiscoverable(
        &c.client,
        "connectivityproxy.sap.com/v1",
        "connectivityproxies",
    )
    .await;
    // The ServiceMapping CRD, when the operator's cleanup deleted it, lags in discovery too.
    if crds
        .get_opt(super::operator::SERVICE_MAPPING_CRD)
        .await
        .expect("get CRD")
        .is_none()
    {
        wait_undiscoverable(&c.client, "connectivityproxy.sap.com/v1", "servicemappings").await;
    }
}

/// Patches the CR (a merge patch), as a user editing it would.
pub async fn patch_cr(c: &TestCluster, patch: Value) {
    let crs: Api<DynamicObject> = Api::namespaced_with(c.client.clone(), NAMESPACE, &cr_resource());
    crs.patch(CR_NAME, &PatchParams::default(), &Patch::Merge(&patch))
        .await
        .unwrap_or_else(|e| panic!("patch the CR: {e}"));
}
