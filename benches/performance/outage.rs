//! Section 8: the outage, measured on the real controllers. Seconds with no endpoint a client
//! reaches of Service `kyma-system/connectivity-proxy` (and of the tunnel's headless Service),
//! from the legacy proxy serving through `run` (today's clean, and `--hand-over`) until the
//! module is `Ready` (tests/support/outage.rs), under modelled delays: the operator's start
//! after the init containers, a Pod's start to Ready, and the part of a deleted Pod's grace
//! period it serves. Environment: `CP_BENCH_OUTAGE_REPLICAS` (default 1,2),
//! `CP_BENCH_OUTAGE_OPERATOR_START_S` (default 10), `CP_BENCH_OUTAGE_READY_AFTER_S` (default 5),
//! `CP_BENCH_OUTAGE_GRACE_S` (default 5).

use super::*;
use support::node_agent::Timing;
use support::outage::{self, Model, Seen};

pub struct Row {
    way: &'static str,
    model: Model,
    seen: Seen,
}

/// The two ways of `run`, as the table names them.
const WAYS: [(&str, &[&str]); 2] = [
    ("today's clean", &["run"]),
    ("--hand-over", &["run", "--hand-over"]),
];

pub async fn bench(smoke: bool) -> Vec<Row> {
    let secs = |name: &str, default: usize, smoke_value: u64| {
        Duration::from_secs(if smoke {
            smoke_value
        } else {
            env_list(name, &[default])[0] as u64
        })
    };
    let replicas = if smoke {
        vec![1]
    } else {
        env_list("CP_BENCH_OUTAGE_REPLICAS", &[1, 2])
    };
    let mut rows = Vec::new();
    for replicas in replicas {
        let model = Model {
            replicas: replicas as i64,
            operator_start: secs("CP_BENCH_OUTAGE_OPERATOR_START_S", 10, 1),
            pods: Timing {
                ready_after: secs("CP_BENCH_OUTAGE_READY_AFTER_S", 5, 1),
                grace_cap: secs("CP_BENCH_OUTAGE_GRACE_S", 5, 1),
            },
        };
        for (way, args) in WAYS {
            eprintln!("bench: outage, {way}, {replicas} replica(s)");
            let seen = outage::migration(args, model).await;
            // The work measured was done: the module serves; today's clean left a gap.
            assert!(
                way != WAYS[0].0 || !seen.outages.is_empty(),
                "today's clean left no outage: {seen:?}"
            );
            rows.push(Row { way, model, seen });
        }
    }
    rows
}

pub fn print(rows: &[Row]) {
    if rows.is_empty() {
        return;
    }
    println!(
        "## 8. The outage (no endpoint a client reaches of Service kyma-system/connectivity-proxy)"
    );
    println!();
    if let Some(first) = rows.first() {
        println!(
            "Modelled: the operator starts {} s after the init containers; a Pod is Ready {} s \
             after it starts; a deleted Pod serves {} s of its grace period.",
            first.model.operator_start.as_secs(),
            first.model.pods.ready_after.as_secs(),
            first.model.pods.grace_cap.as_secs(),
        );
        println!();
    }
    println!(
        "| way | replicas | seconds without an endpoint | intervals | tunnel Service: seconds without | `run` start to Ready | ClusterIPs seen |"
    );
    println!("| --- | ---: | ---: | ---: | ---: | ---: | ---: |");
    for r in rows {
        println!(
            "| {} | {} | {:.1} s | {} | {:.1} s | {:.1} s | {} |",
            r.way,
            r.model.replicas,
            r.seen.total_outage().as_secs_f64(),
            r.seen.outages.len(),
            r.seen.tunnel_outages.iter().sum::<Duration>().as_secs_f64(),
            r.seen.until_ready.as_secs_f64(),
            r.seen.cluster_ips.len(),
        );
    }
    println!();
}
