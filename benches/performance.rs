//! `make bench`: what the tool costs on a real API server, and how close it gets to what the
//! server can take. Prints a table; asserts nothing about time (a shared machine is too noisy
//! for that), only that the work measured was really done.
//!
//! 1. Whole migration: `run` on the legacy fixture, process start to exit.
//! 2. Adoption at scale: `clean` with N ServiceMappings (after `migrate` and `backup`); at the
//!    largest N, `clean` once more on the same cluster, when every mapping is adopted already.
//! 3. The limit: the same N merge-patches from a minimal concurrent client loop.
//! 4. The way back: `rollback` after `run` on the fixture (the module disabled), and after the
//!    first clean at each N; with clean's archive (size, and the time clean spent on it).
//! 5. Round trips in sequence: `run`, then `rollback`; and migrate, backup and clean each as
//!    its own process (as the init containers run them), on the fixture with 40 ServiceMappings,
//!    through a proxy that adds a fixed delay each way to every request. Round trips in
//!    sequence = (wall at d - wall at 0) / d, from the medians of the repetitions.
//! 6. Many clusters at once: `status --all-contexts -o json` over one kubeconfig of 500
//!    contexts, spread over 4 clusters at different stages, each behind a proxy that adds
//!    20 ms to every round trip, and 2 % of them at a closed port; wall time, peak RSS and rows
//!    per phase at several `--parallel`.
//!
//! 7. As the ServiceAccount: clean and the limit loop again, as the admin (exempt from API
//!    Priority and Fairness) and as the ServiceAccount of deploy/rbac.yaml, with the server's
//!    flow-control counters around each.
//!
//! 8. The outage: seconds with no ready endpoint of the proxy's Service through `run` until the
//!    module is `Ready`, on the real controllers, with modelled operator and Pod delays
//!    (benches/performance/outage.rs).
//!
//! Every measurement gets a fresh cluster. Environment: `CP_BENCH_TOOL` (the binary to measure;
//! default: the one cargo built for this bench), `CP_BENCH_REPS` (whole-migration repetitions,
//! default 5), `CP_BENCH_N` (comma-separated sizes, default 100,1000,10000), `CP_BENCH_ROUNDS`
//! (runs of clean and of each limit level per N, default 2), `CP_BENCH_LIMIT_CONCURRENCY`
//! (default 8,16,64), `CP_BENCH_LATENCY_MS` (added round trips in ms, default 0,5,20; 0 must be
//! among them), `CP_BENCH_LATENCY_REPS` (default 3), `CP_BENCH_PARTS` (any of
//! run,clean,limit,latency,fleet,apf,outage; default all).

#[path = "performance/apf.rs"]
mod apf;
#[path = "performance/fleet.rs"]
mod fleet;
#[path = "performance/launcher.rs"]
mod launcher;
#[path = "performance/outage.rs"]
mod outage;
#[path = "performance/report.rs"]
mod report;
#[path = "../tests/support/mod.rs"]
mod support;

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use futures::{StreamExt, TryStreamExt, stream};
use kube::Client;
use kube::api::{DeleteParams, DynamicObject, ListParams, Patch, PatchParams, PostParams};
use serde_json::Value;

use cp_mod_migrator::names;
use launcher::{LAUNCHER_ENV, Measured, STDOUT_ENV, launched, launcher, measure};
use report::{median, mib, ms, print_latency, print_report, print_way_back, rate, yes};
use support::contract::markers;
use support::faultproxy::FaultProxy;
use support::{TestCluster, cr, module, operator, service_mappings};

fn main() {
    if std::env::var_os(LAUNCHER_ENV).is_some() {
        launcher();
        return;
    }
    // `cargo bench` passes `--bench`; this target takes no arguments of its own.
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .expect("tokio runtime");
    runtime.block_on(bench());
}

fn env_list(name: &str, default: &[usize]) -> Vec<usize> {
    match std::env::var(name) {
        Ok(v) if !v.trim().is_empty() => v
            .split(',')
            .map(|s| {
                s.trim()
                    .replace('_', "")
                    .parse()
                    .unwrap_or_else(|e| panic!("{name}: {s:?}: {e}"))
            })
            .collect(),
        _ => default.to_vec(),
    }
}

fn tool() -> PathBuf {
    std::env::var_os("CP_BENCH_TOOL")
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from(support::tool_binary()))
}

async fn bench() {
    let tool = tool();
    // `cargo test --all-targets` runs this target without `--bench`: then one small pass of
    // everything, so that the bench keeps working, in seconds.
    let smoke = !std::env::args().any(|a| a == "--bench");
    let (reps, rounds, sizes, levels, parts) = if smoke {
        (
            1,
            1,
            vec![20],
            vec![8],
            "run,clean,limit,latency,fleet,apf,outage".to_string(),
        )
    } else {
        (
            env_list("CP_BENCH_REPS", &[5])[0].max(1),
            env_list("CP_BENCH_ROUNDS", &[2])[0].max(1),
            env_list("CP_BENCH_N", &[100, 1_000, 10_000]),
            env_list("CP_BENCH_LIMIT_CONCURRENCY", &[8, 16, 64]),
            std::env::var("CP_BENCH_PARTS")
                .unwrap_or_else(|_| "run,clean,limit,latency,fleet,apf,outage".into()),
        )
    };
    // The smoke pass: one repetition at two delays, enough to keep the section working.
    let (latency_reps, delays) = if smoke {
        (1, vec![0, 5])
    } else {
        (
            env_list("CP_BENCH_LATENCY_REPS", &[3])[0].max(1),
            env_list("CP_BENCH_LATENCY_MS", &[0, 5, 20]),
        )
    };
    let delays: Vec<u64> = delays.into_iter().map(|d| d as u64).collect();
    let part = |p: &str| parts.split(',').any(|x| x.trim() == p);
    let bench_started = Instant::now();
    eprintln!("bench: tool {}", tool.display());
    if smoke {
        println!("Smoke pass (no --bench): tiny sizes, figures are not a benchmark.");
    }

    // 1. Whole migration.
    let mut runs = Vec::new();
    let mut rollbacks = Vec::new();
    let mut breakdown = None;
    for rep in 0..if part("run") { reps } else { 0 } {
        let c = TestCluster::legacy_and_module().await;
        let before = if rep == 0 {
            Some(request_counts(&c.client).await)
        } else {
            None
        };
        let m = measure(&tool, &c.kubeconfig, &["run"]).await;
        m.expect_done("run");
        if let Some(before) = before {
            let after = request_counts(&c.client).await;
            breakdown = Some(diff_counts(&before, &after));
        }
        eprintln!(
            "bench: run #{}: {:.0} ms, {} requests, {} KiB",
            rep + 1,
            ms(m.wall),
            m.requests(),
            m.max_rss_kib
        );
        runs.push(m);
        // The figure is rollback after the module's uninstall: its operator's cleanup deleted
        // the ServiceMapping CRD and every mapping, which rollback recreates.
        disable_the_module(&c).await;
        let r = measure(&tool, &c.kubeconfig, &["rollback"]).await;
        r.expect_done("rollback");
        eprintln!(
            "bench: rollback #{}: {:.0} ms, {} requests",
            rep + 1,
            ms(r.wall),
            r.requests()
        );
        rollbacks.push(r);
    }

    // 2. Adoption at scale, and 3. the limit, for each N, in rounds that alternate the tool and
    // the limit so that both see the same conditions. Once, at the largest N, clean runs again
    // on mappings that are all adopted already.
    let largest = sizes.iter().copied().max().unwrap_or(0);
    let mut adoption = Vec::new();
    let mut readopt = None;
    let mut way_backs = Vec::new();
    let mut limits = Vec::new();
    for &n in &sizes {
        let mut row = CleanRow {
            n,
            runs: Vec::new(),
        };
        let mut limit = LimitRow {
            n,
            levels: levels.iter().map(|&c| (c, Vec::new())).collect(),
        };
        for round in 0..rounds {
            if part("clean") {
                let again = n == largest && round == 0;
                let (m, second, way_back) = bench_clean(&tool, n, again, round == 0).await;
                row.runs.push(m);
                readopt = readopt.or(second.map(|m| CleanRow { n, runs: vec![m] }));
                way_backs.extend(way_back);
            }
            if part("limit") {
                for (c, samples) in &mut limit.levels {
                    samples.push(bench_limit(n, *c).await);
                }
            }
        }
        if !row.runs.is_empty() {
            adoption.push(row);
        }
        if part("limit") {
            limits.push(limit);
        }
    }

    let latency = if part("latency") {
        bench_latency(&tool, &delays, latency_reps).await
    } else {
        Vec::new()
    };

    let apf = if part("apf") {
        apf::bench_apf(&tool, &apf_sizes(&sizes, smoke), rounds).await
    } else {
        Vec::new()
    };

    let fleet = if part("fleet") {
        let (contexts, levels) = if smoke {
            (20, vec![16])
        } else {
            (
                env_list("CP_BENCH_FLEET_CONTEXTS", &[500])[0].max(1),
                env_list("CP_BENCH_FLEET_PARALLEL", &[4, 16, 64]),
            )
        };
        Some(fleet::bench(&tool, contexts, &levels).await)
    } else {
        None
    };

    let outages = if part("outage") {
        outage::bench(smoke).await
    } else {
        Vec::new()
    };

    let way_back = print_way_back(&rollbacks, &way_backs, &adoption);
    let mut targets = print_latency(&latency, &delays, latency_reps);
    targets.extend(way_back);
    apf::print_apf(&apf);
    print_report(
        &tool,
        &runs,
        breakdown.as_ref(),
        &sizes,
        &adoption,
        &limits,
        readopt.as_ref(),
        targets,
        bench_started.elapsed(),
        smoke,
    );
    if let Some(fleet) = &fleet {
        fleet::print(fleet);
    }
    outage::print(&outages);
}

/// Section 7 runs at the sizes of sections 2 and 3 from 1 000 up (the smallest differences
/// drown in noise below), or at the smoke pass's size.
fn apf_sizes(sizes: &[usize], smoke: bool) -> Vec<usize> {
    let large: Vec<usize> = sizes.iter().copied().filter(|&n| n >= 1_000).collect();
    if smoke || large.is_empty() {
        sizes.to_vec()
    } else {
        large
    }
}

/// ServiceMappings on the cluster of the latency section: the fixture's 3 and 37 more.
const LATENCY_MAPPINGS: usize = 40;
const FIXTURE_MAPPINGS: usize = 3;

/// The commands of the latency section, in the order they run, and their targets (round trips
/// in sequence at most; `None`: no target).
const LATENCY_COMMANDS: [(&str, Option<f64>); 5] = [
    ("run", Some(25.0)),
    ("rollback", None),
    ("migrate", Some(8.0)),
    ("backup", Some(8.0)),
    ("clean", Some(15.0)),
];

/// One command of the latency section: its runs at each added round trip (ms).
struct LatencyRow {
    command: &'static str,
    target: Option<f64>,
    /// Each run, with the longest chain of requests in sequence that the proxy saw.
    by_delay: BTreeMap<u64, Vec<(Measured, usize)>>,
}

impl LatencyRow {
    fn wall(&self, delay: u64) -> Option<Duration> {
        self.by_delay
            .get(&delay)
            .filter(|runs| !runs.is_empty())
            .map(|runs| median(runs.iter().map(|(m, _)| m.wall).collect()))
    }

    /// The proxy's count of requests in sequence, at the largest delay (where the client's own
    /// work between requests weighs least).
    fn chain(&self) -> Option<usize> {
        self.by_delay
            .iter()
            .rev()
            .find(|(_, runs)| !runs.is_empty())
            .map(|(_, runs)| median(runs.iter().map(|(_, n)| *n).collect()))
    }

    /// (wall at d - wall at 0) / d.
    fn round_trips(&self, delay: u64) -> Option<f64> {
        let (at, base) = (self.wall(delay)?, self.wall(0)?);
        (delay > 0).then(|| (ms(at) - ms(base)) / delay as f64)
    }

    fn requests(&self) -> u64 {
        median(
            self.by_delay
                .values()
                .flatten()
                .map(|(m, _)| m.requests())
                .collect(),
        )
    }
}

/// A fresh cluster with the legacy fixture, the module and 40 ServiceMappings in all, and a
/// proxy in front of it that adds `delay_ms` to every round trip (half of it each way).
async fn latency_cluster(delay_ms: u64) -> (TestCluster, FaultProxy) {
    let c = TestCluster::legacy_and_module().await;
    service_mappings::create(
        &c.client,
        "latency",
        LATENCY_MAPPINGS - FIXTURE_MAPPINGS,
        |_| false,
    )
    .await;
    let proxy = FaultProxy::start(&c.kubeconfig, c.dir());
    proxy.set_delay_each_way(Duration::from_micros(delay_ms * 500));
    (c, proxy)
}

/// Section 5: at each delay, in each repetition (delays interleaved, so that they share the
/// machine's conditions), `run` and then `rollback` on one cluster, and migrate, backup and
/// clean as separate processes on another.
async fn bench_latency(tool: &Path, delays: &[u64], reps: usize) -> Vec<LatencyRow> {
    let mut rows: Vec<LatencyRow> = LATENCY_COMMANDS
        .iter()
        .map(|&(command, target)| LatencyRow {
            command,
            target,
            by_delay: delays.iter().map(|&d| (d, Vec::new())).collect(),
        })
        .collect();
    let mut record = |command: &str, delay: u64, (m, chain): (Measured, usize)| {
        m.expect_done(command);
        eprintln!(
            "bench: latency {delay} ms, {command}: {:.0} ms, {} requests, {chain} in sequence",
            ms(m.wall),
            m.requests()
        );
        if let Some(row) = rows.iter_mut().find(|r| r.command == command) {
            row.by_delay.entry(delay).or_default().push((m, chain));
        }
    };
    for _ in 0..reps {
        for &delay in delays {
            let (c, proxy) = latency_cluster(delay).await;
            record("run", delay, measure_via(tool, &proxy, "run").await);
            let (_, adopted) = service_mappings::count_adopted(&c.client).await;
            assert_eq!(adopted, LATENCY_MAPPINGS, "run adopted every mapping");
            // The figure is rollback after the module's uninstall (it recreates the mappings).
            disable_the_module(&c).await;
            record(
                "rollback",
                delay,
                measure_via(tool, &proxy, "rollback").await,
            );
            drop((proxy, c));

            let (c, proxy) = latency_cluster(delay).await;
            for step in ["migrate", "backup", "clean"] {
                record(step, delay, measure_via(tool, &proxy, step).await);
            }
            let (_, adopted) = service_mappings::count_adopted(&c.client).await;
            assert_eq!(adopted, LATENCY_MAPPINGS, "clean adopted every mapping");
        }
    }
    rows
}

/// One command through the proxy, and the longest chain of its requests in sequence.
async fn measure_via(tool: &Path, proxy: &FaultProxy, command: &str) -> (Measured, usize) {
    proxy.reset();
    let m = measure(tool, proxy.kubeconfig(), &[command]).await;
    (m, proxy.round_trips_in_sequence())
}

/// clean's archive at one N, and the rollback that read it.
struct WayBack {
    n: usize,
    /// The bare loop that creates the same mappings on the same server: rollback's floor.
    create_loop: Duration,
    archive_bytes: usize,
    archive_parts: usize,
    /// The time clean spent writing and checking the archive, from its log.
    archive_ms: u64,
    clean: Duration,
    rollback: Measured,
}

/// Every run of clean at one N.
struct CleanRow {
    n: usize,
    runs: Vec<Measured>,
}

impl CleanRow {
    fn wall(&self) -> Duration {
        median(self.runs.iter().map(|m| m.wall).collect())
    }
    fn cpu(&self) -> Duration {
        median(self.runs.iter().map(|m| m.cpu).collect())
    }
    fn requests(&self) -> u64 {
        median(self.runs.iter().map(Measured::requests).collect())
    }
    /// The highest of the runs: a peak is a peak.
    fn max_rss_kib(&self) -> u64 {
        self.runs.iter().map(|m| m.max_rss_kib).max().unwrap_or(0)
    }
}

/// A cluster where migrate and backup are done and N more ServiceMappings exist.
async fn cluster_ready_for_clean(tool: &Path, n: usize) -> TestCluster {
    let c = TestCluster::legacy_and_module().await;
    for step in ["migrate", "backup"] {
        measure(tool, &c.kubeconfig, &[step])
            .await
            .expect_done(step);
    }
    let t = Instant::now();
    service_mappings::create(&c.client, "bench", n, |_| false).await;
    eprintln!(
        "bench: created {n} ServiceMappings in {:.1} s",
        t.elapsed().as_secs_f64()
    );
    c
}

/// clean with N more mappings; with `again`, clean once more on the same cluster after removing
/// the cleaned marker: then every mapping is adopted already and may cost list pages only.
async fn bench_clean(
    tool: &Path,
    n: usize,
    again: bool,
    way_back: bool,
) -> (Measured, Option<Measured>, Option<WayBack>) {
    let c = cluster_ready_for_clean(tool, n).await;
    let (total, _) = service_mappings::count_adopted(&c.client).await;
    let m = measure(tool, &c.kubeconfig, &["clean"]).await;
    m.expect_done("clean");
    let (after, adopted) = service_mappings::count_adopted(&c.client).await;
    assert!(
        after == total && adopted == total,
        "clean adopted {adopted} of {total} ServiceMappings"
    );
    eprintln!(
        "bench: clean, N={n}: {:.0} ms, {} requests, {} KiB",
        ms(m.wall),
        m.requests(),
        m.max_rss_kib
    );
    let stored = cp_mod_migrator::archive::read_stored(&c.client)
        .await
        .expect("read the archive")
        .expect("clean wrote an archive");
    assert_eq!(stored.archive.service_mappings.items.len(), n + 3);
    let archive_ms = m
        .stderr
        .lines()
        .filter_map(|l| serde_json::from_str::<Value>(l).ok())
        .find(|v| v["message"] == "archived and verified")
        .and_then(|v| v["archive_ms"].as_u64())
        .expect("clean logs its archive time");
    let second = if again {
        Some(clean_again(tool, &c, n).await)
    } else {
        None
    };
    if !way_back {
        return (m, second, None);
    }
    // The figure is rollback un-adopting N mappings (asserted below).
    disable_the_module(&c).await;
    let rollback = measure(tool, &c.kubeconfig, &["rollback"]).await;
    rollback.expect_done("rollback");
    let (back, adopted) = service_mappings::count_adopted(&c.client).await;
    assert_eq!(
        (back, adopted),
        (n + 3, 0),
        "rollback recreated every mapping, as it was before clean"
    );
    eprintln!(
        "bench: rollback, N={n}: {:.0} ms, {} requests",
        ms(rollback.wall),
        rollback.requests()
    );
    let create_loop = create_loop(&c, &stored.archive, CREATE_LOOP_CONCURRENCY).await;
    eprintln!(
        "bench: create loop, N={n}: {:.0} ms ({:.0}/s)",
        ms(create_loop),
        rate(n + 3, create_loop)
    );
    let clean = m.wall;
    (
        m,
        second,
        Some(WayBack {
            n,
            archive_bytes: stored.bytes,
            archive_parts: stored.parts,
            archive_ms,
            clean,
            rollback,
            create_loop,
        }),
    )
}

/// clean once more on the same cluster after removing the cleaned marker: then every mapping
/// is adopted already and may cost list pages only.
async fn clean_again(tool: &Path, c: &TestCluster, n: usize) -> Measured {
    cr::remove_annotations(c, &[markers::CLEANED]).await;
    let second = measure(tool, &c.kubeconfig, &["clean"]).await;
    second.expect_done("clean again");
    eprintln!(
        "bench: clean again, N={n} adopted: {:.0} ms, {} requests",
        ms(second.wall),
        second.requests()
    );
    second
}

/// What disabling the module does on a cluster the operator ran on: it reconciles to Ready,
/// the runbook's `rollback --prepare`, then its uninstall (the ServiceMapping CRD it adopted
/// and every mapping deleted).
async fn disable_the_module(c: &TestCluster) {
    module::install_operator(c).await;
    assert_eq!(operator::reconcile(c).await, operator::Outcome::Ready);
    c.run(&["rollback", "--prepare"]).assert_ok();
    operator::uninstall(c).await;
}

/// Requests in flight in the create loop: as many as rollback's writes.
const CREATE_LOOP_CONCURRENCY: usize = cp_mod_migrator::service_mappings::CONCURRENCY;

/// The floor of rollback's recreation: every mapping deleted again (one request), then the
/// simplest concurrent loop creates the archived mappings as rollback does, on the same server.
async fn create_loop(
    c: &TestCluster,
    archive: &cp_mod_migrator::archive::Archive,
    concurrency: usize,
) -> Duration {
    let api = service_mappings::api(&c.client);
    api.delete_collection(&DeleteParams::default(), &ListParams::default())
        .await
        .expect("delete every ServiceMapping");
    while !api
        .list_metadata(&ListParams::default().limit(1))
        .await
        .expect("list")
        .items
        .is_empty()
    {
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let objects: Vec<DynamicObject> = archive
        .service_mappings
        .items
        .iter()
        .map(|m| {
            serde_json::from_value(m.restored().expect("valid").expect("format 2")).expect("object")
        })
        .collect();
    // A client of its own, as the tool has, with nothing in front of it.
    let client = support::client_for(&c.kubeconfig).await;
    let api = service_mappings::api(&client);
    let pp = PostParams {
        field_manager: Some(names::FIELD_MANAGER.into()),
        ..Default::default()
    };
    let started = Instant::now();
    stream::iter(&objects)
        .map(|o| {
            let (api, pp) = (&api, &pp);
            async move { api.create(pp, o).await.map(|_| ()) }
        })
        .buffer_unordered(concurrency)
        .try_collect::<()>()
        .await
        .expect("create ServiceMappings");
    started.elapsed()
}

/// Every run of the limit loop at one N, by concurrency.
struct LimitRow {
    n: usize,
    levels: Vec<(usize, Vec<Duration>)>,
}

impl LimitRow {
    /// The concurrency with the shortest median time, and that time.
    fn best(&self) -> (usize, Duration) {
        self.levels
            .iter()
            .filter(|(_, d)| !d.is_empty())
            .map(|(c, d)| (*c, median(d.clone())))
            .min_by_key(|(_, d)| *d)
            .unwrap_or((0, Duration::MAX))
    }
}

/// The same merge-patch the tool sends, to N fresh mappings, from the simplest concurrent loop,
/// on a fresh cluster with the same fixtures, so that every run patches unadopted objects in a
/// store of the same size.
async fn bench_limit(n: usize, concurrency: usize) -> Duration {
    let c = TestCluster::legacy_and_module().await;
    service_mappings::create(&c.client, "limit", n, |_| false).await;
    // A client of its own, as the tool has, with nothing in front of it.
    let client = support::client_for(&c.kubeconfig).await;
    let wall = limit_loop(&client, n, concurrency).await;
    let (total, adopted) = service_mappings::count_adopted(&c.client).await;
    assert!(adopted >= n, "limit loop adopted {adopted} of {total}");
    eprintln!(
        "bench: limit, N={n}, concurrency {concurrency}: {:.0} ms ({:.0}/s)",
        ms(wall),
        rate(n, wall)
    );
    wall
}

/// Adopts the mappings `limit-0..n` with `concurrency` patches in flight; the time it took.
async fn limit_loop(client: &Client, n: usize, concurrency: usize) -> Duration {
    let patch = cp_mod_migrator::service_mappings::adoption_patch();
    let api = service_mappings::api(client);
    let pp = PatchParams {
        field_manager: Some(names::FIELD_MANAGER.into()),
        ..Default::default()
    };
    let started = Instant::now();
    stream::iter(0..n)
        .map(|i| {
            let (api, pp, patch) = (&api, &pp, &patch);
            async move {
                api.patch_metadata(&format!("limit-{i}"), pp, &Patch::Merge(patch))
                    .await
                    .map(|_| ())
            }
        })
        .buffer_unordered(concurrency)
        .try_collect::<()>()
        .await
        .expect("patch ServiceMappings");
    started.elapsed()
}

type Counts = BTreeMap<String, f64>;

/// The API server's metrics, as text.
async fn metrics(client: &Client) -> String {
    let req = http::Request::get("/metrics")
        .body(Vec::new())
        .expect("request");
    client.request_text(req).await.expect("GET /metrics")
}

/// The server's own count of requests (apiserver_request_total), by verb and resource.
async fn request_counts(client: &Client) -> Counts {
    let text = metrics(client).await;
    let mut out = Counts::new();
    for line in text.lines() {
        let Some(rest) = line.strip_prefix("apiserver_request_total{") else {
            continue;
        };
        let Some((labels, value)) = rest.rsplit_once("} ") else {
            continue;
        };
        let label = |k: &str| {
            labels
                .split(",")
                .find_map(|kv| kv.strip_prefix(&format!("{k}=\"")))
                .map(|v| v.trim_end_matches('"').to_string())
                .unwrap_or_default()
        };
        let (group, resource) = (label("group"), label("resource"));
        if resource.is_empty() {
            continue;
        }
        let sub = label("subresource");
        let key = format!(
            "{} {}{}{}",
            label("verb"),
            if group.is_empty() {
                String::new()
            } else {
                format!("{group}/")
            },
            resource,
            if sub.is_empty() {
                String::new()
            } else {
                format!("/{sub}")
            }
        );
        *out.entry(key).or_default() += value.trim().parse::<f64>().unwrap_or(0.0);
    }
    out
}

fn diff_counts(before: &Counts, after: &Counts) -> Vec<(String, u64)> {
    let mut out: Vec<(String, u64)> = after
        .iter()
        .map(|(k, v)| (k.clone(), (v - before.get(k).unwrap_or(&0.0)) as u64))
        .filter(|(_, n)| *n > 0)
        .collect();
    out.sort_by(|a, b| b.1.cmp(&a.1).then(a.0.cmp(&b.0)));
    out
}
