//! Section 6: many clusters at once. Self-contained: its clusters, proxies and kubeconfig are
//! its own.

use std::collections::BTreeMap;
use std::path::Path;
use std::process::{Command, Stdio};
use std::time::Duration;

use serde_json::{Value, json};

use super::support::faultproxy::FaultProxy;
use super::support::kubeconfigs::{Kubeconfig, closed_port};
use super::support::{LEGACY, TestCluster};
use super::{LAUNCHER_ENV, Measured, STDOUT_ENV, launched, mib, ms};

/// Milliseconds added each way by every proxy: 20 ms per round trip.
const DELAY_EACH_WAY_MS: u64 = 10;

/// One `--parallel` level.
pub struct Level {
    parallel: usize,
    measured: Measured,
    rows: usize,
    summary: BTreeMap<String, u64>,
    /// The slowest cluster's duration_ms.
    slowest_ms: u64,
}

pub struct Report {
    contexts: usize,
    gone: usize,
    stages: Vec<&'static str>,
    levels: Vec<Level>,
}

/// Four clusters, one at each stage: no legacy installation, legacy only, the module
/// enabled (in progress), migrated with the module reporting `Ready` (done).
async fn clusters(tool: &Path) -> Vec<(TestCluster, &'static str)> {
    let (empty, legacy, enabled, migrated) = tokio::join!(
        TestCluster::start(),
        TestCluster::with(&[LEGACY]),
        TestCluster::legacy_and_module(),
        TestCluster::legacy_and_module(),
    );
    super::measure(tool, &migrated.kubeconfig, &["run"])
        .await
        .expect_done("run");
    super::support::module::report_state(&migrated, "Ready").await;
    vec![
        (empty, "no-legacy"),
        (legacy, "not-started"),
        (enabled, "in-progress"),
        (migrated, "done"),
    ]
}

pub async fn bench(tool: &Path, contexts: usize, levels: &[usize]) -> Report {
    let clusters = clusters(tool).await;
    let proxies: Vec<FaultProxy> = clusters
        .iter()
        .map(|(c, _)| {
            let p = FaultProxy::start(&c.kubeconfig, c.dir());
            p.set_delay_each_way(Duration::from_millis(DELAY_EACH_WAY_MS));
            p
        })
        .collect();
    // About 2 % of the contexts at a closed port: hibernated or deleted clusters.
    let gone = (contexts / 50).max(1).min(contexts);
    let reachable = contexts - gone;
    let mut kc = Kubeconfig::new().user("anonymous", json!({}));
    for (i, p) in proxies.iter().enumerate() {
        kc = kc.cluster(&format!("proxy-{i}"), &format!("http://{}", p.addr), None);
    }
    let mut expected: BTreeMap<String, u64> = BTreeMap::new();
    for i in 0..reachable {
        let k = i % proxies.len();
        kc = kc.context(
            &format!("cluster-{i:04}"),
            &format!("proxy-{k}"),
            "anonymous",
        );
        *expected.entry(clusters[k].1.to_string()).or_default() += 1;
    }
    for i in 0..gone {
        let name = format!("gone-{i:02}");
        kc = kc
            .cluster(&name, &format!("http://127.0.0.1:{}", closed_port()), None)
            .context(&name, &name, "anonymous");
    }
    expected.insert("unreachable".into(), gone as u64);
    let dir = tempfile::tempdir().expect("tempdir");
    let path = kc.write(&dir.path().join("kubeconfig"));
    let mut out = Vec::new();
    for &parallel in levels {
        let stdout = dir.path().join(format!("status-{parallel}.json"));
        let measured = measure(tool, &path, parallel, &stdout).await;
        // Exit 1: the closed ports are unreachable; the command must still end normally.
        assert_eq!(measured.last["step"], "status", "{}", measured.stderr);
        let json: Value =
            serde_json::from_str(&std::fs::read_to_string(&stdout).expect("the tool's stdout"))
                .unwrap_or_else(|e| panic!("status JSON ({e}):\n{}", measured.stderr));
        let rows = json["clusters"].as_array().map(Vec::len).unwrap_or(0);
        assert_eq!(rows, contexts, "every context a row");
        let summary: BTreeMap<String, u64> =
            serde_json::from_value(json["summary"].clone()).expect("summary");
        assert_eq!(summary, expected, "rows per phase");
        let slowest_ms = json["clusters"]
            .as_array()
            .into_iter()
            .flatten()
            .filter_map(|r| r["duration_ms"].as_u64())
            .max()
            .unwrap_or(0);
        eprintln!(
            "bench: fleet of {contexts} at --parallel {parallel}: {:.0} ms, {:.1} MiB, {} requests",
            ms(measured.wall),
            mib(measured.max_rss_kib),
            measured.requests()
        );
        out.push(Level {
            parallel,
            measured,
            rows,
            summary,
            slowest_ms,
        });
    }
    drop(proxies);
    Report {
        contexts,
        gone,
        stages: clusters.iter().map(|(_, s)| *s).collect(),
        levels: out,
    }
}

/// The tool through the bench's launcher (peak RSS of exactly that process), with its JSON
/// on stdout written to `stdout`, the default per-cluster deadline.
async fn measure(tool: &Path, kubeconfig: &Path, parallel: usize, stdout: &Path) -> Measured {
    let mut cmd = Command::new(std::env::current_exe().expect("bench executable"));
    cmd.env(LAUNCHER_ENV, "1")
        .env(STDOUT_ENV, stdout)
        .arg(tool)
        .arg("--kubeconfig")
        .arg(kubeconfig)
        .args(["--log-format", "json", "--all-contexts", "--parallel"])
        .arg(parallel.to_string())
        .args(["status", "-o", "json"])
        .env_remove("KUBECONFIG")
        .env_remove("CP_MIGRATOR_LOG")
        .env_remove("CP_MIGRATOR_DEADLINE")
        .stdin(Stdio::null());
    launched(cmd).await
}

pub fn print(r: &Report) {
    println!();
    println!(
        "## 6. Many clusters at once (`status --all-contexts -o json`, {} contexts)",
        r.contexts
    );
    println!();
    println!(
        "{} contexts spread over 4 clusters ({}), each behind a proxy that adds {} ms to every round trip; {} at a closed port. Process start to exit, one run per level.",
        r.contexts - r.gone,
        r.stages.join(", "),
        2 * DELAY_EACH_WAY_MS,
        r.gone
    );
    println!();
    println!(
        "| --parallel | wall | tool CPU | peak RSS | API requests | retries | slowest cluster | rows | rows per phase |"
    );
    println!("| ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | --- |");
    for l in &r.levels {
        let phases: Vec<String> = l.summary.iter().map(|(p, n)| format!("{p} {n}")).collect();
        println!(
            "| {} | {:.0} ms | {:.0} ms | {:.1} MiB | {} | {} | {} ms | {} | {} |",
            l.parallel,
            ms(l.measured.wall),
            ms(l.measured.cpu),
            mib(l.measured.max_rss_kib),
            l.measured.requests(),
            l.measured.last["retries"].as_u64().unwrap_or(0),
            l.slowest_ms,
            l.rows,
            phases.join(", ")
        );
    }
    println!();
    if let Some(l) = r.levels.iter().find(|l| l.parallel == 16) {
        println!(
            "targets at --parallel 16: wall < 10 s: {:.1} s, {}; peak RSS < 100 MiB: {:.1} MiB, {}",
            l.measured.wall.as_secs_f64(),
            super::yes(l.measured.wall < Duration::from_secs(10)),
            mib(l.measured.max_rss_kib),
            super::yes(l.measured.max_rss_kib < 100 * 1024)
        );
    }
}
