//! Section 8: the outage, measured on the real controllers. Seconds with no endpoint a client
//! reaches of Service `kyma-system/connectivity-proxy` (and of the tunnel's headless Service),
//! from the legacy proxy serving through `run` (today's clean, and `--hand-over`) until the
//! module is `Ready` (tests/support/outage.rs), under modelled delays: the operator's start
//! after the init containers, a Pod's start to Ready, and the part of a deleted Pod's grace
//! period it serves. Environment: `CP_BENCH_OUTAGE_REPLICAS` (default 1,2),
//! `CP_BENCH_OUTAGE_OPERATOR_START_S` (default 10), `CP_BENCH_OUTAGE_READY_AFTER_S` (default 5),
//! `CP_BENCH_OUTAGE_GRACE_S` (default 5), `CP_BENCH_OUTAGE_OPERATOR` (`emulated`, `real` or
//! both, comma-separated; default both: the real one starts in its own time, so the modelled
//! operator start does not apply to it; the smoke pass only the emulation).

use super::*;
use support::node_agent::Timing;
use support::outage::{self, Model, Operator, Seen};

pub struct Row {
    way: &'static str,
    operator: Operator,
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
    let operators: Vec<Operator> = if smoke {
        vec![Operator::Emulated]
    } else {
        std::env::var("CP_BENCH_OUTAGE_OPERATOR")
            .unwrap_or_else(|_| "emulated,real".into())
            .split(',')
            .map(|o| match o.trim() {
                "emulated" => Operator::Emulated,
                "real" => Operator::Real,
                other => panic!("CP_BENCH_OUTAGE_OPERATOR: {other:?} is neither emulated nor real"),
            })
            .collect()
    };
    let mut rows = Vec::new();
    for (operator, replicas) in operators
        .iter()
        .flat_map(|o| replicas.iter().map(move |r| (*o, *r)))
    {
        let model = Model {
            replicas: replicas as i64,
            operator_start: secs("CP_BENCH_OUTAGE_OPERATOR_START_S", 10, 1),
            pods: Timing {
                ready_after: secs("CP_BENCH_OUTAGE_READY_AFTER_S", 5, 1),
                grace_cap: secs("CP_BENCH_OUTAGE_GRACE_S", 5, 1),
            },
        };
        for (way, args) in WAYS {
            eprintln!("bench: outage, {way}, {replicas} replica(s), {operator:?} operator");
            let seen = outage::migrated_with(args, model, operator).await.seen;
            // The work measured was done: the module serves; today's clean left a gap.
            assert!(
                way != WAYS[0].0 || !seen.outages.is_empty(),
                "today's clean left no outage: {seen:?}"
            );
            rows.push(Row {
                way,
                operator,
                model,
                seen,
            });
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
            "Modelled: the emulated operator starts {} s after the init containers (the real one \
             in its own time); a Pod is Ready {} s after it starts; a deleted Pod serves {} s of \
             its grace period.",
            first.model.operator_start.as_secs(),
            first.model.pods.ready_after.as_secs(),
            first.model.pods.grace_cap.as_secs(),
        );
        println!();
    }
    println!(
        "| operator | way | replicas | seconds without an endpoint | intervals | tunnel Service: seconds without | tunnel-0: seconds without | `run` start to Ready | ClusterIPs seen |"
    );
    println!("| --- | --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: |");
    for r in rows {
        println!(
            "| {} | {} | {} | {:.1} s | {} | {:.1} s | {:.1} s | {:.1} s | {} |",
            match r.operator {
                Operator::Emulated => "emulated",
                Operator::Real => "real",
            },
            r.way,
            r.model.replicas,
            r.seen.total_outage().as_secs_f64(),
            r.seen.outages.len(),
            r.seen.tunnel_outages.iter().sum::<Duration>().as_secs_f64(),
            r.seen
                .tunnel_0_outages
                .iter()
                .sum::<Duration>()
                .as_secs_f64(),
            r.seen.until_ready.as_secs_f64(),
            r.seen.cluster_ips.len(),
        );
    }
    println!();
}
