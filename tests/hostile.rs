//! Hostile and malformed legacy configurations on the real API server: each one makes `run` fail
//! with one clear error that names the object, the key and the value, changes nothing on the
//! cluster, does not panic, and stays within bounded time and memory.
//!
//! A few clusters serve all cases: between cases the two legacy ConfigMaps are put back and the
//! whole cluster is checked against its state before the first case.

mod support;

use std::collections::BTreeMap;
use std::process::Stdio;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use k8s_openapi::api::core::v1::ConfigMap;
use serde_json::Value;

use support::config_maps::{cm_api, put_configmap};
use support::legacy_cases::*;
use support::snapshot::{Kinds, discover, snap, state_of, values};
use support::*;

/// Clusters at once (two shared cores).
const WORKERS: usize = 3;
/// Bounds that no case may exceed (the tool normally needs well under a second and ~20 MiB).
const TIME_BOUND: Duration = Duration::from_secs(30);
const RSS_BOUND_KIB: i64 = 256 * 1024;

static BASELINE_RSS_KIB: AtomicUsize = AtomicUsize::new(0);

// ---------------------------------------------------------------------------------------------

/// A finished run, with its wall time and peak memory.
struct Measured {
    result: RunResult,
    wall: Duration,
    /// Upper bound of the peak resident memory (wait4).
    max_rss_kib: i64,
    /// The peak resident memory seen while it ran (/proc, every 2 ms).
    hwm_kib: i64,
}

/// Runs the tool and reaps it with wait4(2), which reports the child's peak resident memory.
async fn run_measured(kubeconfig: &std::path::Path, args: &[&str]) -> Measured {
    let mut child = tool_command(kubeconfig)
        .args(["--deadline", "30s"])
        .args(args)
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("spawn cp-mod-migrator");
    let started = Instant::now();
    let pid = child.id();
    let out = child.stdout.take().expect("stdout");
    let err = child.stderr.take().expect("stderr");
    fn reader(mut r: impl std::io::Read + Send + 'static) -> std::thread::JoinHandle<Vec<u8>> {
        std::thread::spawn(move || {
            let mut buf = Vec::new();
            let _ = r.read_to_end(&mut buf);
            buf
        })
    }
    let out_t = reader(out);
    let err_t = reader(err);
    // The tool's own high-water mark, read while it runs (wait4 below gives an upper bound that
    // includes what the process inherited from this one when it was spawned).
    let stop = Arc::new(std::sync::atomic::AtomicBool::new(false));
    let poll_stop = stop.clone();
    let poller = std::thread::spawn(move || {
        let mut hwm = 0i64;
        while !poll_stop.load(Ordering::SeqCst) {
            let Ok(status) = std::fs::read_to_string(format!("/proc/{pid}/status")) else {
                break;
            };
            let Some(kib) = status
                .lines()
                .find_map(|l| l.strip_prefix("VmHWM:"))
                .and_then(|v| v.trim().trim_end_matches("kB").trim().parse::<i64>().ok())
            else {
                break;
            };
            hwm = hwm.max(kib);
            std::thread::sleep(Duration::from_millis(2));
        }
        hwm
    });
    let waited = tokio::task::spawn_blocking(move || {
        let mut status = 0;
        // SAFETY: plain wait4(2) on our own child; rusage is written by the kernel.
        let mut usage: libc::rusage = unsafe { std::mem::zeroed() };
        let rc = unsafe { libc::wait4(pid as libc::pid_t, &mut status, 0, &mut usage) };
        assert_eq!(rc, pid as libc::pid_t, "wait4");
        (status, usage.ru_maxrss)
    });
    let (status, max_rss_kib) = match tokio::time::timeout(TIME_BOUND * 2, waited).await {
        Ok(r) => r.expect("join"),
        Err(_) => {
            // SAFETY: kill(2) on our own child, not reaped yet.
            unsafe { libc::kill(pid as libc::pid_t, libc::SIGKILL) };
            panic!("cp-mod-migrator still running after {:?}", TIME_BOUND * 2);
        }
    };
    let wall = started.elapsed();
    stop.store(true, Ordering::SeqCst);
    let hwm_kib = poller.join().expect("memory poller");
    drop(child);
    let output = std::process::Output {
        status: std::os::unix::process::ExitStatusExt::from_raw(status),
        stdout: out_t.join().expect("stdout reader"),
        stderr: err_t.join().expect("stderr reader"),
    };
    Measured {
        result: RunResult {
            stdout: String::from_utf8_lossy(&output.stdout).into_owned(),
            stderr: String::from_utf8_lossy(&output.stderr).into_owned(),
            output,
        },
        wall,
        max_rss_kib,
        hwm_kib,
    }
}

struct Outcome {
    name: &'static str,
    problems: Vec<String>,
    reason: String,
    wall: Duration,
    max_rss_kib: i64,
    hwm_kib: i64,
}

async fn check_case(
    c: &TestCluster,
    kinds: &Kinds,
    originals: &BTreeMap<String, ConfigMap>,
    pristine: &BTreeMap<String, Value>,
    case: &Case,
) -> Outcome {
    apply_setup(&c.client, originals, &case.setup).await;
    let before = values(&snap(&c.client, kinds).await);
    let m = run_measured(&c.kubeconfig, &["run"]).await;
    let after = values(&snap(&c.client, kinds).await);
    let r = &m.result;
    let mut problems = Vec::new();
    if r.output.status.code() != Some(1) {
        problems.push(format!("exit status {} (expected 1)", r.output.status));
    }
    if r.stderr.contains("panicked") {
        problems.push("panicked".into());
    }
    let lines: Vec<Value> = r
        .stderr
        .lines()
        .filter_map(|l| serde_json::from_str(l).ok())
        .collect();
    let errors = lines.iter().filter(|l| l["level"] == "ERROR").count();
    if errors != 1 {
        problems.push(format!("{errors} error lines (expected 1)"));
    }
    let last = lines.last().cloned().unwrap_or(Value::Null);
    let reason = last["reason"].as_str().unwrap_or_default().to_string();
    if last["outcome"] != "failed" {
        problems.push(format!("last line is not a failure: {last}"));
    }
    for e in &case.expect {
        if !reason.contains(e.as_str()) {
            problems.push(format!("the error does not name {e:?}"));
        }
    }
    if reason.len() > 2000 {
        problems.push(format!("the error is {} bytes long", reason.len()));
    }
    if before != after {
        let changed: Vec<&String> = before
            .keys()
            .chain(after.keys())
            .filter(|k| before.get(*k) != after.get(*k))
            .collect();
        problems.push(format!("the cluster changed: {changed:?}"));
    }
    if m.wall > TIME_BOUND {
        problems.push(format!("took {:?}", m.wall));
    }
    if m.max_rss_kib > RSS_BOUND_KIB {
        problems.push(format!("peak memory {} MiB", m.max_rss_kib / 1024));
    }

    // Back to the state before the first case, verified.
    for cm in originals.values() {
        put_configmap(&c.client, cm).await;
    }
    let now = state_of(&snap(&c.client, kinds).await);
    assert_eq!(
        &now, pristine,
        "test rig: the cluster is not back in its state before the cases (after {:?})",
        case.name
    );
    Outcome {
        name: case.name,
        problems,
        reason,
        wall: m.wall,
        max_rss_kib: m.max_rss_kib,
        hwm_kib: m.hwm_kib,
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 3)]
async fn hostile_legacy_configurations_fail_cleanly_and_change_nothing() {
    let started = Instant::now();
    let cases = Arc::new(hostile_cases());
    assert!(cases.len() >= 25, "{} cases", cases.len());
    let next = Arc::new(AtomicUsize::new(0));
    let workers = (0..WORKERS).map(|_| {
        let cases = cases.clone();
        let next = next.clone();
        async move {
            let c = TestCluster::legacy_and_module().await;
            let kinds = discover(&c.client).await;
            let mut originals = BTreeMap::new();
            for name in [CONFIG, INFO] {
                let cm = cm_api(&c.client).get(name).await.expect("legacy ConfigMap");
                originals.insert(name.to_string(), cm);
            }
            let pristine = state_of(&snap(&c.client, &kinds).await);
            // The same measurement of a run that does nothing: wait4 reports the larger of the
            // tool's peak and what it inherited from this test process when it was spawned.
            let baseline = run_measured(&c.kubeconfig, &["--version"])
                .await
                .max_rss_kib;
            BASELINE_RSS_KIB.fetch_max(baseline as usize, Ordering::SeqCst);
            let mut out = Vec::new();
            loop {
                let i = next.fetch_add(1, Ordering::SeqCst);
                let Some(case) = cases.get(i) else { break };
                out.push(check_case(&c, &kinds, &originals, &pristine, case).await);
            }
            out
        }
    });
    // One task: the cluster helpers are not Send; the work is waiting on processes and the API.
    let outcomes: Vec<Outcome> = futures::future::join_all(workers)
        .await
        .into_iter()
        .flatten()
        .collect();
    let mut failures = Vec::new();
    for o in &outcomes {
        eprintln!(
            "hostile {:?}: {:.0} ms, peak memory {} MiB (at most {} MiB): {}",
            o.name,
            o.wall.as_secs_f64() * 1000.0,
            o.hwm_kib / 1024,
            o.max_rss_kib / 1024,
            truncate(&o.reason, 300)
        );
        if !o.problems.is_empty() {
            failures.push(format!(
                "{}: {}\n    error: {}",
                o.name,
                o.problems.join("; "),
                truncate(&o.reason, 600)
            ));
        }
    }
    let slowest = outcomes.iter().map(|o| o.wall).max().unwrap_or_default();
    let largest = outcomes.iter().map(|o| o.hwm_kib).max().unwrap_or(0);
    let bound = outcomes.iter().map(|o| o.max_rss_kib).max().unwrap_or(0);
    eprintln!(
        "hostile inputs: {} cases, {} failed their checks; slowest run {:.0} ms, largest peak memory {} MiB \
         (upper bound {} MiB; a `--version` run has an upper bound of {} MiB measured the same way); \
         wall {:.1}s with {WORKERS} clusters",
        outcomes.len(),
        failures.len(),
        slowest.as_secs_f64() * 1000.0,
        largest / 1024,
        bound / 1024,
        BASELINE_RSS_KIB.load(Ordering::SeqCst) / 1024,
        started.elapsed().as_secs_f64()
    );
    assert_eq!(outcomes.len(), cases.len());
    assert!(failures.is_empty(), "\n{}", failures.join("\n"));
}

fn truncate(s: &str, n: usize) -> String {
    if s.len() <= n {
        return s.to_string();
    }
    let mut cut = n;
    while !s.is_char_boundary(cut) {
        cut -= 1;
    }
    format!("{}… ({} bytes)", &s[..cut], s.len())
}
