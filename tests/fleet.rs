//! status and check of many clusters at once, on real API servers (docs/contract.md, **status**, "Many
//! clusters at once"): `--context` repeated, `--all-contexts`, and a `KUBECONFIG` of several
//! files merged as kubectl merges them. Each cluster is a row; one that cannot be asked, or
//! refuses, is a row with its error and never the end of the command.
//!
//! Three clusters are started once for the whole file and shared by its tests (they only read
//! them): `legacy` (the legacy installation alone), `migrated` (after `run`, the module
//! reporting `Ready`) and `bad-port` (the legacy installation with a port that is no port). Beside them, in the same merged kubeconfig,
//! `gone` points at a closed port and `forbidden` at `legacy`'s server with the token of a
//! ServiceAccount that has no binding at all.

mod support;

use std::ffi::OsString;
use std::path::PathBuf;
use std::sync::OnceLock;
use std::time::{Duration, Instant};

use serde_json::{Value, json};
use support::config_maps::set_port;
use support::faultproxy::{FaultProxy, Seen, gather};
use support::kubeconfigs::{self, Kubeconfig, closed_port, joined, run_with_kubeconfig_env};
use support::requests::{Retry, retries_in, retry_chains};
use support::*;

const PORT_KEY: &str = "onpremise_proxy_http_port";
const BAD_PORT: &str = "99999";

/// The shared clusters and the kubeconfig files a:b:c:d that name them.
struct Fleet {
    /// Kept so that the servers live as long as the test process (a static is never dropped;
    /// each server exits when this process does: its stdin is a lifeline).
    clusters: Vec<TestCluster>,
    dir: tempfile::TempDir,
    files: Vec<PathBuf>,
    legacy_server: String,
    gone_server: String,
}

impl Fleet {
    fn kubeconfig(&self) -> OsString {
        joined(&self.files)
    }
}

fn fleet() -> &'static Fleet {
    static FLEET: OnceLock<Fleet> = OnceLock::new();
    FLEET.get_or_init(|| {
        // Its own runtime: the test functions are synchronous and only run the tool.
        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .expect("runtime");
        rt.block_on(start_fleet())
    })
}

async fn start_fleet() -> Fleet {
    let started = Instant::now();
    let (legacy, migrated, bad_port) = tokio::join!(
        TestCluster::with(&[LEGACY]),
        TestCluster::legacy_and_module(),
        TestCluster::with(&[LEGACY]),
    );
    migrated.run(&["run"]).assert_ok();
    module::report_state(&migrated, "Ready").await;
    set_port(&bad_port.client, PORT_KEY, BAD_PORT).await;
    let token = legacy.token_for("default", "may-read-nothing").await;
    let dir = tempfile::tempdir().expect("tempdir");
    let gone_server = format!("https://127.0.0.1:{}", closed_port());
    let (legacy_server, legacy_ca, _) = kubeconfigs::admin_entries(&legacy);
    // a: legacy, and the ServiceAccount without permissions on the same server; no
    // current-context. b: migrated, and the first current-context. c: bad-port, another
    // current-context (not the one that counts). d: a cluster that is gone.
    let files = vec![
        Kubeconfig::new()
            .admin_of(&legacy, "legacy")
            .cluster("legacy-sa", &legacy_server, Some(&legacy_ca))
            .user("nobody", json!({"token": token}))
            .context("forbidden", "legacy-sa", "nobody")
            .write(&dir.path().join("a")),
        Kubeconfig::new()
            .admin_of(&migrated, "migrated")
            .current("migrated")
            .write(&dir.path().join("b")),
        Kubeconfig::new()
            .admin_of(&bad_port, "bad-port")
            .current("bad-port")
            .write(&dir.path().join("c")),
        Kubeconfig::new()
            .cluster("gone", &gone_server, None)
            .user("gone", json!({"token": "t"}))
            .context("gone", "gone", "gone")
            .write(&dir.path().join("d")),
    ];
    eprintln!("fleet: three clusters ready in {:?}", started.elapsed());
    Fleet {
        clusters: vec![legacy, migrated, bad_port],
        dir,
        files,
        legacy_server,
        gone_server,
    }
}

fn parse(r: &RunResult) -> Value {
    serde_json::from_str(&r.stdout)
        .unwrap_or_else(|e| panic!("no JSON ({e}):\n{}\n{}", r.stdout, r.stderr))
}

/// The row of `context`.
#[track_caller]
fn row<'a>(json: &'a Value, context: &str) -> &'a Value {
    json["clusters"]
        .as_array()
        .expect("clusters")
        .iter()
        .find(|r| r["context"] == context)
        .unwrap_or_else(|| panic!("no row for {context}: {json:#}"))
}

/// The migrated cluster.
fn migrated(f: &Fleet) -> &TestCluster {
    &f.clusters[1]
}

const ALL: [&str; 5] = ["bad-port", "forbidden", "gone", "legacy", "migrated"];

// ---------------------------------------------------------------------------------------------
// status

/// `KUBECONFIG=a:b:c:d status --all-contexts -o json`: one row per context, sorted, each with
/// its phase; the two that cannot be asked are rows with their error; a count per phase; exit 1
/// because not every cluster was reached, and the command ends normally with its closing line.
#[test]
fn status_of_all_contexts_gives_each_cluster_a_row_with_its_phase() {
    let f = fleet();
    let r = run_with_kubeconfig_env(&f.kubeconfig(), &["status", "--all-contexts", "-o", "json"]);
    assert_eq!(r.output.status.code(), Some(1), "{}", r.stderr);
    let json = parse(&r);
    let contexts: Vec<&str> = json["clusters"]
        .as_array()
        .expect("clusters")
        .iter()
        .map(|r| r["context"].as_str().expect("context"))
        .collect();
    assert_eq!(contexts, ALL, "sorted by context");
    assert_eq!(
        json["summary"],
        json!({"not-started": 2, "done": 1, "unreachable": 2})
    );

    let legacy = row(&json, "legacy");
    assert_eq!(legacy["phase"], "not-started", "{legacy:#}");
    assert_eq!(legacy["cluster"], json!(f.legacy_server));
    assert_eq!(legacy["legacy_installed"], true);
    assert_eq!(legacy["legacy_version"], "connectivity-proxy-2.9.3");
    assert_eq!(
        legacy["markers"],
        json!({"migrated": false, "backed-up": false, "cleaned": false})
    );
    assert_eq!(legacy["backup"], "none");
    assert!(legacy["legacy_objects_left"].as_u64().expect("count") > 0);
    assert_eq!(legacy["operator_ready"], Value::Null);
    assert_eq!(legacy["module_state"], Value::Null, "no CR");
    assert_eq!(legacy["error"], Value::Null);
    assert!(legacy.get("ready").is_none(), "status rows have no verdict");

    let migrated = row(&json, "migrated");
    assert_eq!(migrated["phase"], "done", "{migrated:#}");
    assert_eq!(migrated["module_state"], "Ready", "{migrated:#}");
    assert_eq!(migrated["legacy_installed"], false);
    assert_eq!(migrated["legacy_version"], Value::Null);
    assert_eq!(
        migrated["markers"],
        json!({"migrated": true, "backed-up": true, "cleaned": true})
    );
    assert_eq!(migrated["legacy_objects_left"], 0);
    let sm = &migrated["service_mappings"];
    assert!(sm["total"].as_u64().expect("total") > 0, "{migrated:#}");
    assert_eq!(sm["adopted"], sm["total"], "{migrated:#}");
    assert!(
        ["matches", "sources-gone"].contains(&migrated["backup"].as_str().unwrap_or_default()),
        "{migrated:#}"
    );

    // status does not judge the configuration: a bad port is still a cluster not started.
    assert_eq!(row(&json, "bad-port")["phase"], "not-started");

    let gone = row(&json, "gone");
    assert_eq!(gone["phase"], "unreachable", "{gone:#}");
    assert_eq!(gone["cluster"], json!(f.gone_server));
    assert!(
        gone["phase_reason"]
            .as_str()
            .is_some_and(|r| r.starts_with("the API server could not be asked: ")),
        "{gone:#}"
    );
    assert!(gone["error"].as_str().is_some_and(|e| !e.is_empty()));
    for field in [
        "markers",
        "backup",
        "legacy_objects_left",
        "legacy_version",
        "module_state",
    ] {
        assert_eq!(gone[field], Value::Null, "{field}: {gone:#}");
    }

    let forbidden = row(&json, "forbidden");
    assert_eq!(forbidden["phase"], "unreachable", "{forbidden:#}");
    assert!(
        forbidden["phase_reason"]
            .as_str()
            .is_some_and(|r| r.starts_with("the API server refused: ") && r.contains("forbidden")),
        "{forbidden:#}"
    );

    let last = r.last_line();
    assert_eq!(last["step"], "status");
    assert_eq!(last["outcome"], "failed");
    let reason = last["reason"].as_str().expect("reason");
    assert!(
        reason.starts_with("2 of 5 clusters could not be asked: 5 clusters: 2 not-started, 1 done, 2 unreachable in "),
        "{reason}"
    );
    assert!(last["api_requests"].as_u64().expect("requests") > 0);
}

/// Many clusters are read from each API server's cache (`resourceVersion=0`, no etcd read),
/// except the paginated ServiceMapping list, and at most 8 requests of a cluster are in flight
/// at once (over HTTP/1 each is a connection and a TLS handshake). One cluster alone is read as
/// of now, all its reads at once, as before.
#[test]
fn many_clusters_are_read_from_the_cache_eight_requests_at_a_time_one_cluster_as_of_now() {
    let f = fleet();
    let cluster = migrated(f);
    let proxy = FaultProxy::start(&cluster.kubeconfig, cluster.dir());
    let kubeconfig = Kubeconfig::new()
        .cluster("proxied", &format!("http://{}", proxy.addr), None)
        .user("anonymous", json!({}))
        .context("first", "proxied", "anonymous")
        .context("second", "proxied", "anonymous")
        .current("first")
        .write(&f.dir.path().join("proxied"));
    let kubeconfig = OsString::from(kubeconfig);
    let versions = |log: &[Seen]| -> Vec<(bool, bool)> {
        log.iter()
            // Objects and lists; not discovery (`/apis`), which has no versions.
            .filter(|s| {
                s.method == http::Method::GET
                    && (s.path.starts_with("/api/") || s.path.starts_with("/apis/"))
            })
            .map(|s| {
                (
                    s.path.contains("limit="),
                    s.path.contains("resourceVersion=0"),
                )
            })
            .collect()
    };

    // --parallel 1: the two clusters one after the other, so what is in flight is one's. Each
    // answer is held until nine are in flight (or for a while): the tool's eight together are
    // seen together, and a ninth would be seen beside them.
    proxy.set_hook(Some(gather(9, GATHER_PATIENCE)));
    let r = run_with_kubeconfig_env(
        &kubeconfig,
        &["status", "--all-contexts", "--parallel", "1", "-o", "json"],
    );
    assert_eq!(r.output.status.code(), Some(0), "{}", r.stderr);
    let json = parse(&r);
    assert_eq!(json["summary"], json!({"done": 2}), "{json:#}");
    let gets = versions(&proxy.log());
    assert!(gets.len() > 2 * 35, "{} GETs", gets.len());
    assert!(
        gets.iter().any(|(paged, _)| *paged),
        "the ServiceMapping list"
    );
    for (paged, cached) in &gets {
        assert_eq!(*cached, !paged, "{:#?}", proxy.log());
    }
    assert_eq!(proxy.max_in_flight(), 8);

    // One cluster: each answer is held until 31 are in flight (or for a while).
    proxy.reset();
    proxy.set_hook(Some(gather(31, GATHER_PATIENCE)));
    let r = run_with_kubeconfig_env(&kubeconfig, &["status", "-o", "json"]);
    assert_eq!(r.output.status.code(), Some(0), "{}", r.stderr);
    assert_eq!(parse(&r)["phase"], "done", "{}", r.stdout);
    let gets = versions(&proxy.log());
    assert!(gets.len() > 35, "{} GETs", gets.len());
    assert!(gets.iter().all(|(_, cached)| !cached), "{:#?}", proxy.log());
    assert!(proxy.max_in_flight() > 30, "{}", proxy.max_in_flight());
}

/// How long the proxy holds an answer at most while it gathers the requests sent with it:
/// requests sent together arrive well within it, even on a busy machine.
const GATHER_PATIENCE: Duration = Duration::from_millis(500);

/// The same as text: a header, one aligned row per cluster, and the count per phase.
#[test]
fn status_of_all_contexts_as_text_is_one_aligned_row_per_cluster() {
    let f = fleet();
    let r = run_with_kubeconfig_env(&f.kubeconfig(), &["status", "--all-contexts"]);
    assert_eq!(r.output.status.code(), Some(1), "{}", r.stderr);
    eprintln!("{}", r.stdout);
    let lines: Vec<&str> = r.stdout.lines().collect();
    assert_eq!(lines.len(), 7, "{}", r.stdout);
    assert!(lines[0].starts_with("CONTEXT "), "{}", r.stdout);
    let phase_at = lines[0].find("PHASE").expect("PHASE");
    let module_at = lines[0].find("MODULE").expect("MODULE");
    let reason_at = lines[0].find("REASON").expect("REASON");
    let expected = [
        ("bad-port", "not-started"),
        ("forbidden", "unreachable"),
        ("gone", "unreachable"),
        ("legacy", "not-started"),
        ("migrated", "done"),
    ];
    for ((context, phase), line) in expected.iter().zip(&lines[1..6]) {
        assert!(line.starts_with(&format!("{context} ")), "{}", r.stdout);
        assert!(
            line[phase_at..].starts_with(&format!("{phase} ")),
            "{phase} in its column:\n{}",
            r.stdout
        );
        assert!(line.len() > reason_at, "a reason: {line}");
    }
    let modules: Vec<&str> = lines[1..6]
        .iter()
        .map(|l| l[module_at..].split(' ').next().unwrap_or_default())
        .collect();
    assert_eq!(modules, ["-", "?", "?", "-", "Ready"], "{}", r.stdout);
    assert!(
        lines[4].contains("connectivity-proxy-2.9.3"),
        "{}",
        lines[4]
    );
    assert!(
        lines[5].contains(" MBC "),
        "all three markers: {}",
        lines[5]
    );
    assert!(lines[4].contains(" --- "), "no marker: {}", lines[4]);
    assert_eq!(lines[6], "5 clusters: 2 not-started, 1 done, 2 unreachable");
}

/// `--context` given twice names the clusters to ask; when both are reached the exit code is 0.
#[test]
fn status_of_clusters_that_are_all_reached_exits_0() {
    let f = fleet();
    let r = run_with_kubeconfig_env(
        &f.kubeconfig(),
        &[
            "status",
            "--context",
            "migrated",
            "--context",
            "legacy",
            "-o",
            "json",
        ],
    );
    r.assert_ok();
    let json = parse(&r);
    assert_eq!(
        json["clusters"].as_array().map(Vec::len),
        Some(2),
        "{json:#}"
    );
    assert_eq!(json["summary"], json!({"not-started": 1, "done": 1}));
    assert_eq!(r.outcome(), "done");
    assert!(
        r.reason()
            .starts_with("2 clusters: 1 not-started, 1 done in "),
        "{}",
        r.reason()
    );
}

/// A context the kubeconfig does not have is a row with its error, too.
#[test]
fn a_context_that_the_kubeconfig_lacks_is_a_row_with_its_error() {
    let f = fleet();
    let r = run_with_kubeconfig_env(
        &f.kubeconfig(),
        &[
            "status",
            "--context",
            "legacy",
            "--context",
            "nowhere",
            "-o",
            "json",
        ],
    );
    assert_eq!(r.output.status.code(), Some(1), "{}", r.stderr);
    let json = parse(&r);
    assert_eq!(row(&json, "legacy")["phase"], "not-started");
    let nowhere = row(&json, "nowhere");
    assert_eq!(nowhere["phase"], "unreachable");
    assert!(
        nowhere["error"]
            .as_str()
            .is_some_and(|e| e.contains("nowhere")),
        "{nowhere:#}"
    );
}

/// A cluster whose connections are refused does not hold its slot for the deadline: each of its
/// refused requests is tried again twice, and no more, although its deadline (60 s) would leave
/// room for many more tries.
#[test]
fn a_cluster_that_refuses_connections_is_given_up_without_waiting_for_its_deadline() {
    let f = fleet();
    let r = run_with_kubeconfig_env(
        &f.kubeconfig(),
        &[
            "status",
            "--deadline",
            "60s",
            "--context",
            "gone",
            "--context",
            "legacy",
            "-o",
            "json",
        ],
    );
    assert_eq!(r.output.status.code(), Some(1), "{}", r.stderr);
    let json = parse(&r);
    let gone = row(&json, "gone");
    assert_eq!(gone["phase"], "unreachable");
    let error = gone["error"].as_str().expect("error");
    assert!(error.contains("Connection refused"), "{error}");
    let retries: Vec<Retry> = retries_in(&r.stderr)
        .into_iter()
        .filter(|t| t.context.as_deref() == Some("gone"))
        .collect();
    // A request still being tried when the cluster is given up ends with it.
    let chains = retry_chains(&retries);
    for chain in &chains {
        let attempts: Vec<u64> = chain.iter().map(|t| t.attempt).collect();
        assert!(
            attempts == [1] || attempts == [1, 2],
            "{}: tried again at most twice: {attempts:?}",
            chain[0].request
        );
    }
    assert!(
        chains.iter().any(|c| c.len() == 2),
        "a refused request is given up after it was tried again twice: {retries:?}"
    );
    assert_eq!(row(&json, "legacy")["phase"], "not-started");
}

/// With zero or one context, status prints exactly what it printed before: one cluster's JSON.
#[test]
fn one_context_is_one_cluster_as_before() {
    let f = fleet();
    let r = run_with_kubeconfig_env(
        &f.kubeconfig(),
        &["status", "--context", "legacy", "-o", "json"],
    );
    r.assert_ok();
    let json = parse(&r);
    assert!(json.get("clusters").is_none(), "{json:#}");
    assert_eq!(json["phase"], "not-started");
    assert!(json.get("legacy_installation").is_some(), "{json:#}");
}

// ---------------------------------------------------------------------------------------------
// check

/// `check --all-contexts -o json`: each row has the status fields and the verdict. legacy is
/// ready; migrated is ready (nothing to migrate); bad-port is not, naming the ConfigMap, its key
/// and value; the clusters that cannot be asked are not ready, their error the reason. Exit 1.
#[test]
fn check_of_all_contexts_gives_each_cluster_its_verdict() {
    let f = fleet();
    let r = run_with_kubeconfig_env(&f.kubeconfig(), &["check", "--all-contexts", "-o", "json"]);
    assert_eq!(r.output.status.code(), Some(1), "{}", r.stderr);
    let json = parse(&r);
    assert_eq!(
        json["summary"],
        json!({"not-started": 2, "done": 1, "unreachable": 2})
    );
    let legacy = row(&json, "legacy");
    assert_eq!(legacy["ready"], true, "{legacy:#}");
    assert_eq!(legacy["phase"], "not-started");
    assert_eq!(legacy["reasons"], json!([]));
    assert!(
        legacy["verdict"]
            .as_str()
            .is_some_and(|v| v.starts_with("migrate would write")),
        "{legacy:#}"
    );
    let migrated = row(&json, "migrated");
    assert_eq!(migrated["ready"], true, "{migrated:#}");
    assert_eq!(migrated["phase"], "done");
    assert!(
        migrated["verdict"]
            .as_str()
            .is_some_and(|v| v.starts_with("nothing to migrate: already migrated")),
        "{migrated:#}"
    );
    let bad = row(&json, "bad-port");
    assert_eq!(bad["ready"], false, "{bad:#}");
    assert_eq!(bad["phase"], "not-started");
    let reason = &bad["reasons"][0];
    assert_eq!(
        reason["object"], "ConfigMap kyma-system/connectivity-proxy-info",
        "{bad:#}"
    );
    assert_eq!(reason["key"], PORT_KEY, "{bad:#}");
    assert!(
        bad["verdict"]
            .as_str()
            .is_some_and(|v| v.contains(BAD_PORT)),
        "{bad:#}"
    );
    for context in ["gone", "forbidden"] {
        let u = row(&json, context);
        assert_eq!(u["ready"], false, "{u:#}");
        assert_eq!(u["phase"], "unreachable", "{u:#}");
        assert_eq!(u["verdict"], u["error"], "{u:#}");
        assert_eq!(u["reasons"][0]["message"], u["error"], "{u:#}");
    }
    let last = r.last_line();
    assert_eq!(last["step"], "check");
    assert_eq!(last["outcome"], "failed");
    assert!(
        last["reason"]
            .as_str()
            .is_some_and(|r| r.starts_with("3 of 5 clusters not ready: ")
                && r.contains("; 2 ready, 3 not ready")),
        "{last}"
    );
}

/// check exits 0 only when every cluster is ready; the text has a READY column.
#[test]
fn check_exits_0_only_when_every_cluster_is_ready() {
    let f = fleet();
    let ready = run_with_kubeconfig_env(
        &f.kubeconfig(),
        &["check", "--context", "legacy", "--context", "migrated"],
    );
    ready.assert_ok();
    let lines: Vec<&str> = ready.stdout.lines().collect();
    assert!(lines[0].starts_with("CONTEXT "), "{}", ready.stdout);
    let ready_at = lines[0].find("READY").expect("READY");
    for line in &lines[1..3] {
        assert!(line[ready_at..].starts_with("yes "), "{}", ready.stdout);
    }
    assert_eq!(
        lines[3],
        "2 clusters: 1 not-started, 1 done; 2 ready, 0 not ready"
    );

    let not_ready = run_with_kubeconfig_env(
        &f.kubeconfig(),
        &["check", "--context", "legacy", "--context", "bad-port"],
    );
    assert_eq!(
        not_ready.output.status.code(),
        Some(1),
        "{}",
        not_ready.stderr
    );
    let bad = not_ready
        .stdout
        .lines()
        .find(|l| l.starts_with("bad-port "))
        .expect("bad-port row");
    assert!(bad[ready_at..].starts_with("no "), "{}", not_ready.stdout);
    assert!(bad.contains(BAD_PORT), "the verdict names the value: {bad}");
}

// ---------------------------------------------------------------------------------------------
// the kubeconfig

/// The merge follows kubectl's rules: the first file to define a context, cluster or user wins
/// (a later file's `legacy` context, cluster and user, pointing elsewhere with other
/// credentials, are ignored; its context `shadowed`, which names them, gets the first file's), the current-context is the first file's that sets one, and a
/// file of KUBECONFIG that does not exist is skipped.
#[test]
fn the_kubeconfig_files_are_merged_as_kubectl_merges_them() {
    let f = fleet();
    let shadow = Kubeconfig::new()
        .cluster("legacy", &f.gone_server, None)
        .user("legacy-admin", json!({"token": "not-the-admin"}))
        .context("legacy", "gone", "gone")
        .context("shadowed", "legacy", "legacy-admin")
        .current("legacy")
        .write(&f.dir.path().join("shadow"));
    let mut files = f.files.clone();
    files.insert(0, f.dir.path().join("does-not-exist"));
    files.push(shadow.clone());
    let merged = joined(&files);

    let r = run_with_kubeconfig_env(&merged, &["status", "--all-contexts", "-o", "json"]);
    let json = parse(&r);
    assert_eq!(
        json["clusters"].as_array().map(Vec::len),
        Some(6),
        "{json:#}"
    );
    let legacy = row(&json, "legacy");
    assert_eq!(legacy["cluster"], json!(f.legacy_server), "{legacy:#}");
    assert_eq!(legacy["phase"], "not-started", "{legacy:#}");
    // The shadow's own context, on the cluster and user of a's names: a's entries, so it
    // reaches legacy as its admin.
    let shadowed = row(&json, "shadowed");
    assert_eq!(shadowed["cluster"], json!(f.legacy_server), "{shadowed:#}");
    assert_eq!(shadowed["phase"], "not-started", "{shadowed:#}");

    // One cluster: the current-context of b (the first file that sets one), not c's nor the
    // shadow's.
    let r = run_with_kubeconfig_env(&merged, &["status", "-o", "json"]);
    r.assert_ok();
    assert_eq!(parse(&r)["phase"], "done", "{}", r.stdout);

    // The shadow first: now its entries win, and its current-context.
    let mut files = vec![shadow];
    files.extend(f.files.iter().cloned());
    // (One cluster keeps retrying a refused connection until its deadline: a short one.)
    let r = run_with_kubeconfig_env(
        &joined(&files),
        &["--deadline", "2s", "status", "-o", "json"],
    );
    assert_eq!(r.output.status.code(), Some(1), "{}", r.stderr);
    assert_eq!(parse(&r)["phase"], "unreachable", "{}", r.stdout);
}

// ---------------------------------------------------------------------------------------------
// the other commands

/// Every other command works on one cluster: given several, it fails with a usage error before
/// it reads anything (the kubeconfig points nowhere).
#[test]
fn other_commands_refuse_several_clusters() {
    let dir = tempfile::tempdir().expect("tempdir");
    let kc = Kubeconfig::new()
        .cluster("x", &format!("https://127.0.0.1:{}", closed_port()), None)
        .user("x", json!({}))
        .context("x", "x", "x")
        .context("y", "x", "x")
        .write(&dir.path().join("kc"));
    for command in [
        "migrate",
        "backup",
        "clean",
        "run",
        "restore",
        "rollback",
        "mark-done",
    ] {
        for flags in [
            &["--all-contexts"][..],
            &["--context", "x", "--context", "y"],
        ] {
            let mut args = flags.to_vec();
            args.push(command);
            let r = run_with_kubeconfig_env(&joined(std::slice::from_ref(&kc)), &args);
            assert_eq!(
                r.output.status.code(),
                Some(2),
                "{command} {flags:?}: {}",
                r.stderr
            );
            assert!(
                r.stderr
                    .contains(&format!("{command} works on one cluster")),
                "{}",
                r.stderr
            );
            assert!(r.stdout.is_empty());
        }
    }
}
