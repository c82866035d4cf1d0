//! The bench's report: the tables of its sections 1 to 5 (sections 6 and 7 print their own, in
//! fleet.rs and apf.rs), the target lines, and the arithmetic of its figures.

use std::path::Path;
use std::time::Duration;

use super::launcher::Measured;
use super::{CleanRow, LATENCY_MAPPINGS, LatencyRow, LimitRow, WayBack};

/// Section 4, and its target lines.
pub fn print_way_back(
    rollbacks: &[Measured],
    way_backs: &[WayBack],
    adoption: &[CleanRow],
) -> Vec<String> {
    let mut targets = Vec::new();
    if rollbacks.is_empty() && way_backs.is_empty() {
        return targets;
    }
    println!("## 4. The way back (`rollback`, the module disabled) and clean's archive");
    println!();
    if !rollbacks.is_empty() {
        let walls: Vec<f64> = rollbacks.iter().map(|m| ms(m.wall)).collect();
        println!(
            "rollback on the fixture (35 legacy objects, 3 ServiceMappings): median {:.0} ms ({:.0}..{:.0}), {} API requests, {:.1} MiB peak RSS, {} repetitions",
            median(walls.clone()),
            walls.iter().copied().fold(f64::MAX, f64::min),
            walls.iter().copied().fold(0.0, f64::max),
            median(rollbacks.iter().map(Measured::requests).collect()),
            mib(median(rollbacks.iter().map(|m| m.max_rss_kib).collect())),
            rollbacks.len()
        );
        println!();
    }
    if !way_backs.is_empty() {
        println!(
            "| N | archive (compressed) | parts | clean's archive time | of clean's wall | rollback wall | rollback requests | rollback peak RSS | create loop | rollback / loop |"
        );
        println!("| ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: |");
        for w in way_backs {
            println!(
                "| {} | {} bytes | {} | {} ms | {:.1} % | {:.0} ms | {} | {:.1} MiB | {:.0} ms | {:.2} |",
                w.n,
                w.archive_bytes,
                if w.archive_parts == 0 {
                    "inline".to_string()
                } else {
                    w.archive_parts.to_string()
                },
                w.archive_ms,
                100.0 * w.archive_ms as f64 / ms(w.clean),
                ms(w.rollback.wall),
                w.rollback.requests(),
                mib(w.rollback.max_rss_kib),
                ms(w.create_loop),
                w.rollback.wall.as_secs_f64() / w.create_loop.as_secs_f64()
            );
        }
        println!();
        println!(
            "clean's archive time: building, compressing, writing and reading back the archive (its"
        );
        println!(
            "reads of the legacy objects and the list of ServiceMappings replaced reads clean made before)."
        );
        println!();
        if let Some(w) = way_backs.iter().max_by_key(|w| w.n) {
            let ratio = w.rollback.wall.as_secs_f64() / w.create_loop.as_secs_f64();
            targets.push(format!(
                "rollback after the uninstall within 1.1x the bare create loop at N = {}: {:.1} s against {:.1} s ({ratio:.2}x), {}",
                w.n,
                w.rollback.wall.as_secs_f64(),
                w.create_loop.as_secs_f64(),
                yes(ratio <= 1.1)
            ));
            targets.push(format!(
                "archive at N = {}: {} bytes compressed",
                w.n, w.archive_bytes
            ));
        }
        if let Some(w) = way_backs.iter().find(|w| w.n == 1_000) {
            let clean = adoption
                .iter()
                .find(|r| r.n == 1_000)
                .map_or(w.clean, CleanRow::wall);
            let share = w.archive_ms as f64 / ms(clean);
            targets.push(format!(
                "clean's archive < 10 % of clean's time at N = 1000: {:.1} %, {}",
                100.0 * share,
                yes(share < 0.1)
            ));
        }
    }
    targets
}

/// Section 5, and its target lines.
pub fn print_latency(rows: &[LatencyRow], delays: &[u64], reps: usize) -> Vec<String> {
    let mut targets = Vec::new();
    if rows.is_empty() {
        return targets;
    }
    let added: Vec<u64> = delays.iter().copied().filter(|&d| d > 0).collect();
    println!(
        "## 5. Round trips in sequence (fixture with {LATENCY_MAPPINGS} ServiceMappings, through a delaying proxy)"
    );
    println!();
    println!(
        "Medians of {reps} repetitions; round trips in sequence = (wall at d - wall at 0) / d."
    );
    println!(
        "Requests in sequence (proxy): the longest chain of requests each sent after the answer"
    );
    println!(
        "to the one before it, as the proxy saw them at the largest delay; it does not depend on"
    );
    println!("the machine's load.");
    println!();
    let mut header = String::from("| command | API requests | requests in sequence (proxy) |");
    let mut rule = String::from("| --- | ---: | ---: |");
    for d in delays {
        header.push_str(&format!(" wall at {d} ms |"));
        rule.push_str(" ---: |");
    }
    for d in &added {
        header.push_str(&format!(" round trips at {d} ms |"));
        rule.push_str(" ---: |");
    }
    println!("{header}");
    println!("{rule}");
    for row in rows {
        let mut line = format!(
            "| {} | {} | {} |",
            row.command,
            row.requests(),
            row.chain().map_or("-".into(), |n| n.to_string())
        );
        for &d in delays {
            match row.wall(d) {
                Some(w) => line.push_str(&format!(" {:.0} ms |", ms(w))),
                None => line.push_str(" - |"),
            }
        }
        for &d in &added {
            match row.round_trips(d) {
                Some(n) => line.push_str(&format!(" {n:.1} |")),
                None => line.push_str(" - |"),
            }
        }
        println!("{line}");
    }
    println!();
    // The largest delay measures the sequence best: the machine's noise weighs least there.
    if let Some(&d) = added.iter().max() {
        for row in rows {
            let (Some(limit), Some(n)) = (row.target, row.round_trips(d)) else {
                continue;
            };
            let chain = row.chain().unwrap_or(0);
            targets.push(format!(
                "{} at most {limit:.0} round trips in sequence: {n:.1} at {d} ms, {}; {chain} requests in sequence (proxy), {}",
                row.command,
                yes(n <= limit),
                yes(chain as f64 <= limit)
            ));
        }
    }
    targets
}

pub fn ms(d: Duration) -> f64 {
    d.as_secs_f64() * 1000.0
}

pub fn rate(n: usize, d: Duration) -> f64 {
    n as f64 / d.as_secs_f64()
}

pub fn mib(kib: u64) -> f64 {
    kib as f64 / 1024.0
}

/// The middle value; of an even number, the upper one of the two in the middle.
pub fn median<T: Copy + PartialOrd>(mut v: Vec<T>) -> T {
    v.sort_by(|a, b| a.partial_cmp(b).unwrap_or(std::cmp::Ordering::Equal));
    v[v.len() / 2]
}

pub fn yes(ok: bool) -> &'static str {
    if ok { "met" } else { "NOT met" }
}

#[allow(clippy::too_many_arguments)]
pub fn print_report(
    tool: &Path,
    runs: &[Measured],
    breakdown: Option<&Vec<(String, u64)>>,
    sizes: &[usize],
    adoption: &[CleanRow],
    limits: &[LimitRow],
    readopt: Option<&CleanRow>,
    earlier_targets: Vec<String>,
    took: Duration,
    smoke: bool,
) {
    let size = std::fs::metadata(tool).map(|m| m.len()).unwrap_or(0);
    let mut targets = earlier_targets;
    println!();
    if !runs.is_empty() {
        let walls: Vec<f64> = runs.iter().map(|m| ms(m.wall)).collect();
        let wall = median(walls.clone());
        let cpu = median(runs.iter().map(|m| ms(m.cpu)).collect());
        let requests = median(runs.iter().map(Measured::requests).collect());
        let rss = median(runs.iter().map(|m| m.max_rss_kib).collect());
        println!("## 1. Whole migration (`run` on the legacy fixture, process start to exit)");
        println!();
        println!(
            "| repetitions | wall (median) | wall (min..max) | tool CPU (median) | API requests | peak RSS (median) |"
        );
        println!("| ---: | ---: | ---: | ---: | ---: | ---: |");
        println!(
            "| {} | {:.0} ms | {:.0}..{:.0} ms | {:.0} ms | {} | {:.1} MiB |",
            runs.len(),
            wall,
            walls.iter().copied().fold(f64::MAX, f64::min),
            walls.iter().copied().fold(0.0, f64::max),
            cpu,
            requests,
            mib(rss)
        );
        if let Some(b) = breakdown {
            println!();
            println!("Requests as the API server counted them (first repetition; includes the");
            println!("server's own follow-ups, e.g. freeing the ClusterIPs of deleted Services):");
            println!();
            for (k, n) in b {
                println!("    {n:>3}  {k}");
            }
        }
        println!();
        targets.push(format!(
            "whole migration < 1 s: {wall:.0} ms, {}",
            yes(wall < 1000.0)
        ));
        // Two requests per legacy object are accepted (read, then delete only what was read).
        targets.push(format!("API requests of the whole migration: {requests}"));
    }
    if !adoption.is_empty() || !limits.is_empty() {
        println!("## 2. Adoption at scale (`clean` with N ServiceMappings) and 3. the limit");
        println!("Medians over the rounds (of two: the slower); peak RSS is the highest of them.");
        println!("The limit is the concurrency level with the best median.");
        println!();
        println!(
            "| N | clean wall | mappings/s | tool CPU | API requests | requests - (N+3) | peak RSS | limit mappings/s (concurrency) | tool / limit |"
        );
        println!("| ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: |");
        for &n in sizes {
            let row = adoption.iter().find(|r| r.n == n);
            let lim = limits.iter().find(|l| l.n == n);
            let tool_rate = row.map(|r| rate(n, r.wall()));
            let limit_rate = lim.map(|l| rate(n, l.best().1));
            let cell = |v: Option<String>| v.unwrap_or_else(|| "-".into());
            println!(
                "| {n} | {} | {} | {} | {} | {} | {} | {} | {} |",
                cell(row.map(|r| format!("{:.0} ms", ms(r.wall())))),
                cell(tool_rate.map(|r| format!("{r:.0}"))),
                cell(row.map(|r| format!("{:.0} ms", ms(r.cpu())))),
                cell(row.map(|r| r.requests().to_string())),
                cell(row.map(|r| (r.requests() as i64 - (n as i64 + 3)).to_string())),
                cell(row.map(|r| format!("{:.1} MiB", mib(r.max_rss_kib())))),
                cell(lim.map(|l| format!("{:.0} ({})", rate(n, l.best().1), l.best().0))),
                cell(
                    tool_rate
                        .zip(limit_rate)
                        .map(|(t, l)| format!("{:.0} %", 100.0 * t / l))
                ),
            );
        }
        println!();
        println!(
            "clean's wall time is the whole process: it also reads the CR, checks the backup, adopts"
        );
        println!(
            "the 3 ServiceMappings of the fixture and the CRD, deletes the 35 legacy objects (a read"
        );
        println!(
            "and a delete each, but only a delete for the two user ConfigMaps, which the backup"
        );
        println!("check read) and marks the CR.");
        if adoption.iter().any(|r| r.runs.len() > 1) {
            println!();
            println!("clean, every round (mappings/s):");
            println!();
            for r in adoption {
                let rates: Vec<String> = r
                    .runs
                    .iter()
                    .map(|m| format!("{:.0}", rate(r.n, m.wall)))
                    .collect();
                println!("    N={:>6}  {}", r.n, rates.join("/"));
            }
        }
        if !limits.is_empty() {
            println!();
            println!("Limit, every concurrency level and round (mappings/s):");
            println!();
            for lim in limits {
                let levels: Vec<String> = lim
                    .levels
                    .iter()
                    .map(|(c, d)| {
                        let rates: Vec<String> = d
                            .iter()
                            .map(|d| format!("{:.0}", rate(lim.n, *d)))
                            .collect();
                        format!("{c}: {}", rates.join("/"))
                    })
                    .collect();
                println!("    N={:>6}  {}", lim.n, levels.join(", "));
            }
        }
        println!();
    }
    if let Some(r) = readopt {
        println!(
            "clean again with all {} (+3) mappings adopted already: {:.0} ms, {} API requests, {:.1} MiB",
            r.n,
            ms(r.wall()),
            r.requests(),
            mib(r.max_rss_kib())
        );
        println!();
    }
    if let Some(r) = adoption.iter().max_by_key(|r| r.n) {
        if let Some(l) = limits.iter().find(|l| l.n == r.n) {
            let ratio = rate(r.n, r.wall()) / rate(l.n, l.best().1);
            targets.push(format!(
                "adoption >= 70 % of the limit at N = {}: {:.0} %, {}",
                r.n,
                ratio * 100.0,
                yes(ratio >= 0.7)
            ));
        }
        targets.push(format!(
            "peak RSS < 50 MiB at N = {}: {:.1} MiB, {}",
            r.n,
            mib(r.max_rss_kib()),
            yes(r.max_rss_kib() < 50 * 1024)
        ));
        let rss: Vec<String> = adoption
            .iter()
            .map(|r| format!("N={}: {:.1} MiB", r.n, mib(r.max_rss_kib())))
            .collect();
        targets.push(format!(
            "peak RSS by N (should stay flat): {}",
            rss.join(", ")
        ));
    }
    targets.push(format!(
        "stripped release binary < 15 MiB: {:.1} MiB, {}",
        size as f64 / 1024.0 / 1024.0,
        yes(size < 15 * 1024 * 1024)
    ));
    println!("## Targets");
    println!();
    if smoke {
        // A debug binary at tiny sizes: its figures would read as verdicts in CI logs.
        println!("Not judged in a smoke pass; `make bench` judges them.");
    } else {
        for t in targets {
            println!("- {t}");
        }
    }
    println!();
    println!(
        "Sizes: {:?}; bench took {:.0} s; binary {}",
        sizes,
        took.as_secs_f64(),
        tool.display()
    );
}
