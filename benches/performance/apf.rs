//! Section 7: adoption and the limit as the ServiceAccount of deploy/rbac.yaml. The admin's
//! client certificate (system:masters) is exempt from API Priority and Fairness; the
//! ServiceAccount's requests are classified, may wait in a queue of their priority level, and
//! can be rejected with 429. The same clean and limit loop as sections 2 and 3 run as each, on
//! fresh clusters, alternately, with the server's own flow-control counters read around each.

use super::*;
use support::rbac;

/// Who the requests come from.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Who {
    Admin,
    ServiceAccount,
}

impl Who {
    const BOTH: [Who; 2] = [Who::Admin, Who::ServiceAccount];

    fn name(self) -> &'static str {
        match self {
            Who::Admin => "admin (system:masters)",
            Who::ServiceAccount => "ServiceAccount cp-mod-migrator",
        }
    }

    /// The kubeconfig that authenticates as this one on `c`.
    async fn kubeconfig(self, c: &TestCluster) -> PathBuf {
        match self {
            Who::Admin => c.kubeconfig.clone(),
            Who::ServiceAccount => rbac::as_migrator_service_account(c).await,
        }
    }
}

/// What the server's flow control did with the requests of one measured run, by priority level.
#[derive(Debug, Default, Clone)]
pub struct Flow {
    /// Requests dispatched, by priority level.
    dispatched: BTreeMap<String, f64>,
    /// Seconds spent waiting in a queue before being dispatched, summed, by priority level.
    waited: BTreeMap<String, f64>,
    rejected: f64,
}

impl Flow {
    /// The priority level that took most of the requests, with its count and mean wait.
    fn main_level(&self) -> Option<(String, f64, f64)> {
        let (level, n) = self
            .dispatched
            .iter()
            .max_by(|a, b| a.1.total_cmp(b.1))
            .map(|(k, v)| (k.clone(), *v))?;
        let waited = self.waited.get(&level).copied().unwrap_or(0.0);
        Some((level, n, if n > 0.0 { waited / n } else { 0.0 }))
    }

    fn describe(&self) -> String {
        match self.main_level() {
            Some((level, n, wait)) => format!(
                "{level}: {n:.0} dispatched, mean queue wait {:.2} ms; {:.0} rejected",
                wait * 1000.0,
                self.rejected
            ),
            None => "-".into(),
        }
    }
}

/// The server's flow-control counters now.
async fn flow_now(client: &Client) -> Flow {
    let text = metrics(client).await;
    let mut flow = Flow::default();
    for line in text.lines() {
        let Some((name_labels, value)) = line.rsplit_once(' ') else {
            continue;
        };
        let Some((name, labels)) = name_labels.split_once('{') else {
            continue;
        };
        let value: f64 = value.trim().parse().unwrap_or(0.0);
        let label = |k: &str| {
            labels
                .trim_end_matches('}')
                .split(',')
                .find_map(|kv| kv.strip_prefix(&format!("{k}=\"")))
                .map(|v| v.trim_end_matches('"').to_string())
                .unwrap_or_default()
        };
        match name {
            "apiserver_flowcontrol_dispatched_requests_total" => {
                *flow.dispatched.entry(label("priority_level")).or_default() += value;
            }
            "apiserver_flowcontrol_request_wait_duration_seconds_sum" => {
                *flow.waited.entry(label("priority_level")).or_default() += value;
            }
            "apiserver_flowcontrol_rejected_requests_total" => flow.rejected += value,
            _ => {}
        }
    }
    flow
}

fn flow_since(before: &Flow, after: &Flow) -> Flow {
    let minus = |a: &BTreeMap<String, f64>, b: &BTreeMap<String, f64>| {
        a.iter()
            .map(|(k, v)| (k.clone(), v - b.get(k).copied().unwrap_or(0.0)))
            .filter(|(_, v)| *v > 0.0)
            .collect()
    };
    Flow {
        dispatched: minus(&after.dispatched, &before.dispatched),
        waited: minus(&after.waited, &before.waited),
        rejected: after.rejected - before.rejected,
    }
}

/// One N, as one of the two.
pub struct ApfRow {
    n: usize,
    who: Who,
    clean: Vec<(Measured, Flow)>,
    limit: Vec<(Duration, Flow)>,
}

/// Runs clean and the limit loop (at the tool's own concurrency) as the admin and as the
/// ServiceAccount, `rounds` times each, alternately.
pub async fn bench_apf(tool: &Path, sizes: &[usize], rounds: usize) -> Vec<ApfRow> {
    let mut rows = Vec::new();
    for &n in sizes {
        let mut by_who: Vec<ApfRow> = Who::BOTH
            .into_iter()
            .map(|who| ApfRow {
                n,
                who,
                clean: Vec::new(),
                limit: Vec::new(),
            })
            .collect();
        for _ in 0..rounds {
            for row in &mut by_who {
                row.clean.push(clean_as(tool, n, row.who).await);
                row.limit.push(limit_as(n, row.who).await);
            }
        }
        rows.extend(by_who);
    }
    rows
}

async fn clean_as(tool: &Path, n: usize, who: Who) -> (Measured, Flow) {
    let c = cluster_ready_for_clean(tool, n).await;
    let kubeconfig = who.kubeconfig(&c).await;
    let before = flow_now(&c.client).await;
    let m = measure(tool, &kubeconfig, &["clean"]).await;
    let after = flow_now(&c.client).await;
    m.expect_done("clean");
    let (total, adopted) = service_mappings::count_adopted(&c.client).await;
    assert_eq!(
        adopted,
        total,
        "clean as {} adopted every mapping",
        who.name()
    );
    eprintln!(
        "bench: clean as {}, N={n}: {:.0} ms, {} requests",
        who.name(),
        ms(m.wall),
        m.requests()
    );
    (m, flow_since(&before, &after))
}

async fn limit_as(n: usize, who: Who) -> (Duration, Flow) {
    let c = TestCluster::legacy_and_module().await;
    service_mappings::create(&c.client, "limit", n, |_| false).await;
    let kubeconfig = who.kubeconfig(&c).await;
    let client = support::client_for(&kubeconfig).await;
    let before = flow_now(&c.client).await;
    let wall = limit_loop(&client, n, cp_mod_migrator::service_mappings::CONCURRENCY).await;
    let after = flow_now(&c.client).await;
    let (_, adopted) = service_mappings::count_adopted(&c.client).await;
    assert!(
        adopted >= n,
        "the limit loop as {} adopted {adopted}",
        who.name()
    );
    eprintln!(
        "bench: limit as {}, N={n}: {:.0} ms ({:.0}/s)",
        who.name(),
        ms(wall),
        rate(n, wall)
    );
    (wall, flow_since(&before, &after))
}

/// Section 7.
pub fn print_apf(rows: &[ApfRow]) {
    if rows.is_empty() {
        return;
    }
    println!("## 7. As the ServiceAccount: API Priority and Fairness");
    println!();
    println!(
        "clean and the limit loop (concurrency {}) on fresh clusters, as the admin (exempt from",
        cp_mod_migrator::service_mappings::CONCURRENCY
    );
    println!(
        "flow control) and as the ServiceAccount of deploy/rbac.yaml, alternately; medians of the"
    );
    println!("rounds. Flow control: the server's own counters around the measured process.");
    println!();
    println!(
        "| N | as | clean wall | mappings/s | limit mappings/s | tool / limit | flow control during clean |"
    );
    println!("| ---: | --- | ---: | ---: | ---: | ---: | --- |");
    for r in rows {
        let clean = median(r.clean.iter().map(|(m, _)| m.wall).collect());
        let limit = median(r.limit.iter().map(|(d, _)| *d).collect());
        let flow = r
            .clean
            .iter()
            .map(|(_, f)| f)
            .max_by(|a, b| a.rejected.total_cmp(&b.rejected))
            .map(Flow::describe)
            .unwrap_or_default();
        println!(
            "| {} | {} | {:.0} ms | {:.0} | {:.0} | {:.0} % | {flow} |",
            r.n,
            r.who.name(),
            ms(clean),
            rate(r.n, clean),
            rate(r.n, limit),
            100.0 * rate(r.n, clean) / rate(r.n, limit)
        );
    }
    println!();
    println!("Flow control during the limit loop:");
    println!();
    for r in rows {
        let flows: Vec<String> = r.limit.iter().map(|(_, f)| f.describe()).collect();
        println!(
            "    N={:>6} {:<32} {}",
            r.n,
            r.who.name(),
            flows.join(" | ")
        );
    }
    println!();
}
