//! Many clusters at once: `status` and `check` with `--context` given several times or
//! `--all-contexts`. The kubeconfig is merged as kubectl merges it, every selected context gets
//! a client of its own and its own deadline, at most `--parallel` clusters are asked at a time,
//! and each cluster is one row: a cluster that cannot be asked is a row with its error, never
//! the end of the command.

use std::collections::BTreeMap;
use std::path::Path;
use std::sync::{Arc, OnceLock};
use std::time::Duration;

use futures::{StreamExt, stream};
use kube::config::{KubeConfigOptions, Kubeconfig};
use kube::{Client, Config};
use serde::Serialize;
use tokio::time::Instant;
use tracing::Instrument;

use crate::client::{self, ApiStats, ClientOptions, Reads};
use crate::commands::Outcome;
use crate::commands::check::{self, CheckOptions, CheckReport, Reason};
use crate::commands::status::phase::Phase;
use crate::commands::status::{self, BackupCopy, Report, Unreachable};
use crate::error::{Error, Result};
use crate::step::Step;

/// Each cluster's deadline when `--deadline` is not given.
pub const DEFAULT_DEADLINE: Duration = Duration::from_secs(10);

/// How many times a refused connection is tried again before the cluster's row says
/// unreachable (about 0.3 s with the client's backoff): a hibernated or deleted cluster must
/// not hold a slot of `--parallel` for its whole deadline.
pub const REFUSED_RETRIES: u32 = 2;

/// Requests in flight to one cluster at once. Alone, status sends its 35 legacy reads together,
/// which over HTTP/1 is up to 35 connections and TLS handshakes; across hundreds of clusters
/// those handshakes were half of the tool's CPU. 8 costs a few round trips per cluster.
pub const IN_FLIGHT_PER_CLUSTER: usize = 8;

/// What is asked of every cluster.
#[derive(Debug, Clone)]
pub enum Question {
    Status,
    Check(CheckOptions),
}

/// How the clusters are asked.
#[derive(Debug, Clone)]
pub struct Options {
    pub question: Question,
    /// Each cluster's own deadline, retries included.
    pub deadline: Duration,
    pub request_timeout: Duration,
    /// At most this many clusters at a time.
    pub parallel: usize,
}

/// The kubeconfig: `file` alone when given (`--kubeconfig`), else every file of `KUBECONFIG`
/// merged as kubectl merges them (the first file to define a context, cluster or user wins,
/// and the first `current-context` set; empty entries and files that do not exist are
/// skipped), else `~/.kube/config`.
pub fn load_kubeconfig(file: Option<&Path>) -> Result<Kubeconfig> {
    if let Some(path) = file {
        return Kubeconfig::read_from(path).map_err(|e| {
            Error::ClientConfig(format!("reading kubeconfig {}: {e}", path.display()))
        });
    }
    match client::kubeconfig_from_env()? {
        Some(merged) => Ok(merged),
        None => Kubeconfig::read()
            .map_err(|e| Error::ClientConfig(format!("reading ~/.kube/config: {e}"))),
    }
}

/// The contexts to ask, sorted and each once: those named with `--context`, and with
/// `--all-contexts` every context of the kubeconfig. A named context that the kubeconfig does
/// not have stays in: its row says so.
pub fn select(kubeconfig: &Kubeconfig, named: &[String], all: bool) -> Vec<String> {
    let mut contexts: Vec<String> = named.to_vec();
    if all {
        contexts.extend(kubeconfig.contexts.iter().map(|c| c.name.clone()));
    }
    contexts.sort();
    contexts.dedup();
    contexts
}

/// The three step markers, each set or not.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
pub struct Markers {
    pub migrated: bool,
    #[serde(rename = "backed-up")]
    pub backed_up: bool,
    pub cleaned: bool,
}

/// ServiceMappings on the cluster, and how many the new operator owns.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
pub struct MappingCount {
    pub adopted: usize,
    pub total: usize,
}

/// check's part of a row.
#[derive(Debug, Clone, Serialize)]
pub struct Readiness {
    pub ready: bool,
    pub verdict: String,
    pub reasons: Vec<Reason>,
    /// As `warnings` of one cluster's check.
    pub warnings: Vec<Reason>,
}

/// One cluster. The fields are documented in docs/many-clusters.md;
/// scripts depend on them.
#[derive(Debug, Clone, Serialize)]
pub struct Row {
    pub context: String,
    /// The API server's URL, as the kubeconfig gives it.
    pub cluster: Option<String>,
    pub phase: Phase,
    pub phase_reason: String,
    /// Whether the legacy installation is there (`None`: not known, the cluster was not read).
    pub legacy_installed: Option<bool>,
    /// Its StatefulSet's `chart` label.
    pub legacy_version: Option<String>,
    pub markers: Option<Markers>,
    /// The backup copies in one word: `none`, `partial`, `matches`, `differs`, `sources-gone`.
    pub backup: Option<&'static str>,
    pub legacy_objects_left: Option<usize>,
    /// `None`: the ServiceMapping CRD is not installed (or the cluster was not read).
    pub service_mappings: Option<MappingCount>,
    /// `None`: no operator Deployment (or the cluster was not read).
    pub operator_ready: Option<bool>,
    /// The module's `status.state` on the CR; `None`: no CR, no state yet, or not read.
    pub module_state: Option<String>,
    /// Why the cluster could not be asked; `None` unless the phase is `unreachable`.
    pub error: Option<String>,
    pub duration_ms: u64,
    /// check only: `ready`, `verdict`, `reasons` and `warnings`.
    #[serde(flatten)]
    pub check: Option<Readiness>,
}

impl Row {
    fn unreachable(context: String, cluster: Option<String>, error: &Error, retries: u64) -> Row {
        let described = error.describe(retries);
        let u = Unreachable::new(described, error.is_refusal());
        Row {
            context,
            cluster,
            phase: u.phase,
            phase_reason: u.phase_reason,
            legacy_installed: None,
            legacy_version: None,
            markers: None,
            backup: None,
            legacy_objects_left: None,
            service_mappings: None,
            operator_ready: None,
            module_state: None,
            error: Some(u.error),
            duration_ms: 0,
            check: None,
        }
    }

    /// A cluster that could not be asked; for check also not ready, for that reason.
    fn unanswered(
        question: &Question,
        context: String,
        cluster: Option<String>,
        error: &Error,
        retries: u64,
    ) -> Row {
        let mut row = Row::unreachable(context, cluster, error, retries);
        if matches!(question, Question::Check(_)) {
            let message = row.error.clone().unwrap_or_default();
            let server = row.cluster.as_deref().unwrap_or("?");
            row.check = Some(Readiness {
                ready: false,
                verdict: message.clone(),
                reasons: vec![Reason {
                    object: format!("API server {server}"),
                    key: None,
                    value: None,
                    message,
                    origin: None,
                }],
                warnings: Vec::new(),
            });
        }
        row
    }

    fn of(context: String, cluster: Option<String>, report: &Report) -> Row {
        let s = &report.status;
        let marked = |m: Step| s.markers.get(&m).is_some_and(Option::is_some);
        Row {
            context,
            cluster,
            phase: report.phase,
            phase_reason: report.phase_reason.clone(),
            legacy_installed: Some(s.legacy_installation.is_some()),
            legacy_version: s.legacy_installation.as_ref().and_then(|l| l.chart.clone()),
            markers: Some(Markers {
                migrated: marked(Step::Migrate),
                backed_up: marked(Step::Backup),
                cleaned: marked(Step::Clean),
            }),
            backup: Some(backup_word(&s.backup)),
            legacy_objects_left: Some(s.legacy_objects_remaining.len()),
            service_mappings: s.service_mappings.as_ref().map(|m| MappingCount {
                adopted: m.adopted,
                total: m.total,
            }),
            operator_ready: s.operator.as_ref().map(|o| o.ready),
            module_state: s.module.as_ref().and_then(|m| m.state.clone()),
            error: None,
            duration_ms: 0,
            check: None,
        }
    }

    /// Ready for check: readable and ready.
    pub fn ready(&self) -> bool {
        self.check.as_ref().is_some_and(|c| c.ready)
    }
}

/// The backup copies in one word.
fn backup_word(copies: &[BackupCopy]) -> &'static str {
    if copies.iter().any(|b| b.copy_matches_source == Some(false)) {
        "differs"
    } else if copies.iter().all(|b| !b.copy_exists) {
        "none"
    } else if !copies.iter().all(|b| b.copy_exists) {
        "partial"
    } else if copies.iter().all(|b| b.source_exists) {
        "matches"
    } else {
        "sources-gone"
    }
}

/// Every cluster's row, sorted by context, and how many are in each phase.
#[derive(Debug, Serialize)]
pub struct Fleet {
    pub clusters: Vec<Row>,
    pub summary: BTreeMap<&'static str, usize>,
}

impl Fleet {
    fn new(mut clusters: Vec<Row>) -> Fleet {
        clusters.sort_by(|a, b| a.context.cmp(&b.context));
        let mut summary = BTreeMap::new();
        for row in &clusters {
            *summary.entry(row.phase.name()).or_insert(0) += 1;
        }
        Fleet { clusters, summary }
    }

    pub fn unreachable(&self) -> usize {
        self.summary
            .get(Phase::Unreachable.name())
            .copied()
            .unwrap_or(0)
    }

    /// `12 clusters: 3 done, 1 unreachable` (phases in the order of docs/status.md); for check also
    /// `; 10 ready, 2 not ready`.
    pub fn summary_line(&self) -> String {
        let counts: Vec<String> = Phase::ALL
            .iter()
            .filter_map(|p| {
                self.summary
                    .get(p.name())
                    .map(|n| format!("{n} {}", p.name()))
            })
            .collect();
        let n = self.clusters.len();
        let mut line = format!(
            "{n} cluster{}: {}",
            if n == 1 { "" } else { "s" },
            if counts.is_empty() {
                "none".to_string()
            } else {
                counts.join(", ")
            }
        );
        if self.clusters.iter().any(|r| r.check.is_some()) {
            let ready = self.clusters.iter().filter(|r| r.ready()).count();
            line.push_str(&format!("; {ready} ready, {} not ready", n - ready));
        }
        line
    }

    /// Aligned columns under a header, then the summary line.
    pub fn render_text(&self) -> String {
        let checking = self.clusters.iter().any(|r| r.check.is_some());
        let mut table = vec![header(checking)];
        table.extend(self.clusters.iter().map(|r| r.cells(checking)));
        let mut out = aligned(&table);
        out.push_str(&self.summary_line());
        out.push('\n');
        out
    }
}

/// The text table's header; READY only when the clusters were checked.
fn header(checking: bool) -> Vec<String> {
    let mut header = vec!["CONTEXT"];
    if checking {
        header.push("READY");
    }
    header.extend([
        "PHASE",
        "LEGACY",
        "MARKERS",
        "BACKUP",
        "LEGACY-LEFT",
        "SERVICEMAPPINGS",
        "OPERATOR",
        "MODULE",
        "REASON",
    ]);
    header.into_iter().map(String::from).collect()
}

impl Row {
    /// Its cells in the text table, in the header's order: `?` for what was not read, `-` for
    /// what is not there.
    fn cells(&self, checking: bool) -> Vec<String> {
        let mut cells = vec![self.context.clone()];
        if checking {
            cells.push(if self.ready() { "yes" } else { "no" }.into());
        }
        let operator = |ready: bool| if ready { "ready" } else { "not-ready" }.to_string();
        cells.extend([
            self.phase.name().into(),
            self.legacy_cell(),
            self.markers_cell(),
            self.backup.unwrap_or("?").into(),
            self.legacy_objects_left
                .map_or_else(|| "?".into(), |n| n.to_string()),
            self.read_cell(
                self.service_mappings
                    .map(|m| format!("{}/{}", m.adopted, m.total)),
            ),
            self.read_cell(self.operator_ready.map(operator)),
            self.read_cell(self.module_state.clone()),
            self.reason_cell(),
        ]);
        cells
    }

    fn legacy_cell(&self) -> String {
        match (self.legacy_installed, &self.legacy_version) {
            (None, _) => "?".into(),
            (Some(false), _) => "-".into(),
            (Some(true), Some(v)) => v.clone(),
            (Some(true), None) => "present".into(),
        }
    }

    /// `MBC` with a `-` for each step marker that is not set.
    fn markers_cell(&self) -> String {
        match self.markers {
            None => "?".into(),
            Some(m) => [(m.migrated, 'M'), (m.backed_up, 'B'), (m.cleaned, 'C')]
                .iter()
                .map(|&(set, c)| if set { c } else { '-' })
                .collect(),
        }
    }

    /// A value read from the cluster: `?` when the cluster could not be read, `-` when there is
    /// none.
    fn read_cell(&self, value: Option<String>) -> String {
        match (value, self.error.is_some()) {
            (_, true) => "?".into(),
            (Some(value), _) => value,
            (None, _) => "-".into(),
        }
    }

    /// The first line of check's verdict, else of the phase's reason.
    fn reason_cell(&self) -> String {
        let reason = match &self.check {
            Some(c) => &c.verdict,
            None => &self.phase_reason,
        };
        reason.lines().next().unwrap_or_default().to_string()
    }
}

/// The rows as columns as wide as their widest cell, two spaces apart; the last column is not
/// padded.
fn aligned(table: &[Vec<String>]) -> String {
    let columns = table.first().map(Vec::len).unwrap_or(0);
    let widths: Vec<usize> = (0..columns)
        .map(|i| {
            table
                .iter()
                .map(|row| row.get(i).map(|c| c.chars().count()).unwrap_or(0))
                .max()
                .unwrap_or(0)
        })
        .collect();
    let mut out = String::new();
    for row in table {
        let line: Vec<String> = row
            .iter()
            .enumerate()
            .map(|(i, cell)| {
                if i + 1 == row.len() {
                    cell.clone()
                } else {
                    format!("{cell:<w$}", w = widths[i])
                }
            })
            .collect();
        out.push_str(line.join("  ").trim_end());
        out.push('\n');
    }
    out
}

/// The roots that verify a cluster whose kubeconfig names no CA: the system's, read once for
/// the whole fleet. Without a CA, each client would read and parse the system's certificate
/// bundle itself (several milliseconds of CPU per cluster, the largest part of a fleet's).
/// Plain `http://` needs none.
fn system_roots(url: &http::Uri) -> &'static [Vec<u8>] {
    static ROOTS: OnceLock<Vec<Vec<u8>>> = OnceLock::new();
    if url.scheme() == Some(&http::uri::Scheme::HTTP) {
        return &[];
    }
    ROOTS.get_or_init(|| {
        let loaded = rustls_native_certs::load_native_certs();
        for e in &loaded.errors {
            tracing::warn!(error = %e, "a system CA certificate could not be read");
        }
        loaded.certs.into_iter().map(|c| c.to_vec()).collect()
    })
}

/// The part of the kubeconfig that one context uses: its entry, its cluster's and its user's.
/// Each cluster's client is built from this, not from a copy of the whole file, which for a
/// fleet of contexts would copy the file once per context.
fn context_part(kubeconfig: &Kubeconfig, context: &str) -> Kubeconfig {
    let entry = kubeconfig.contexts.iter().find(|c| c.name == context);
    let used = entry.and_then(|c| c.context.as_ref());
    Kubeconfig {
        preferences: kubeconfig.preferences.clone(),
        clusters: kubeconfig
            .clusters
            .iter()
            .filter(|c| used.is_some_and(|u| u.cluster == c.name))
            .take(1)
            .cloned()
            .collect(),
        auth_infos: kubeconfig
            .auth_infos
            .iter()
            .filter(|a| used.is_some_and(|u| u.user.as_deref() == Some(a.name.as_str())))
            .take(1)
            .cloned()
            .collect(),
        contexts: entry.cloned().into_iter().collect(),
        current_context: Some(context.to_string()),
        extensions: kubeconfig.extensions.clone(),
        kind: kubeconfig.kind.clone(),
        api_version: kubeconfig.api_version.clone(),
        other: kubeconfig.other.clone(),
    }
}

/// The server URL of a context, from the kubeconfig alone (also when its client cannot be
/// built).
fn server_of(kubeconfig: &Kubeconfig, context: &str) -> Option<String> {
    let ctx = kubeconfig
        .contexts
        .iter()
        .find(|c| c.name == context)?
        .context
        .as_ref()?;
    kubeconfig
        .clusters
        .iter()
        .find(|c| c.name == ctx.cluster)?
        .cluster
        .as_ref()?
        .server
        .clone()
}

/// Asks one cluster, within its own deadline. Its client counts into `stats`, which outlive the
/// work: a cluster cut off at its deadline still reports the retries it made.
async fn ask_one(kubeconfig: &Kubeconfig, context: String, opts: &Options) -> (Row, Arc<ApiStats>) {
    let started = Instant::now();
    let cluster = server_of(kubeconfig, &context);
    let stats = Arc::new(ApiStats::default());
    let work = answer(kubeconfig, &context, opts, started + opts.deadline, &stats);
    let answered = match tokio::time::timeout(opts.deadline, work).await {
        Ok(answered) => answered,
        Err(_) => Err(Error::Deadline {
            action: format!("asking context {context}"),
            deadline: opts.deadline,
        }),
    };
    let mut row = match answered {
        Ok((report, checked)) => Row {
            check: checked.map(readiness),
            ..Row::of(context, cluster, &report)
        },
        Err(e) => Row::unanswered(&opts.question, context, cluster, &e, stats.retries()),
    };
    row.duration_ms = started.elapsed().as_millis() as u64;
    tracing::debug!(
        phase = row.phase.name(),
        duration_ms = row.duration_ms,
        "cluster asked"
    );
    (row, stats)
}

/// status of the cluster, and for check also check's report.
async fn answer(
    kubeconfig: &Kubeconfig,
    context: &str,
    opts: &Options,
    deadline: Instant,
    stats: &Arc<ApiStats>,
) -> Result<(Report, Option<CheckReport>)> {
    let client = client_of(kubeconfig, context, opts, deadline, stats).await?;
    match &opts.question {
        Question::Status => status::collect(&client).await.map(|r| (r, None)),
        Question::Check(options) => {
            futures::try_join!(status::collect(&client), check::check(&client, options))
                .map(|(r, c)| (r, Some(c)))
        }
    }
}

/// The cluster's own client, counting into `stats`; errors name the context.
async fn client_of(
    kubeconfig: &Kubeconfig,
    context: &str,
    opts: &Options,
    deadline: Instant,
    stats: &Arc<ApiStats>,
) -> Result<Client> {
    let named = |m: String| Error::ClientConfig(format!("context {context}: {m}"));
    let mut config = Config::from_custom_kubeconfig(
        context_part(kubeconfig, context),
        &KubeConfigOptions {
            context: Some(context.to_string()),
            ..Default::default()
        },
    )
    .await
    .map_err(|e| named(e.to_string()))?;
    if config.root_cert.is_none() && config.root_cert_file.is_none() {
        config.root_cert = Some(system_roots(&config.cluster_url).to_vec());
    }
    let client_opts = ClientOptions {
        kubeconfig: None,
        context: Some(context.to_string()),
        deadline: opts.deadline,
        request_timeout: opts.request_timeout,
        refused_retries: Some(REFUSED_RETRIES),
        max_in_flight: Some(IN_FLIGHT_PER_CLUSTER),
        // check's dry run is guarded by the resourceVersion it read: its reads stay consistent.
        reads: match opts.question {
            Question::Status => Reads::FromCache,
            Question::Check(_) => Reads::Consistent,
        },
    };
    client::from_config(config, &client_opts, deadline, stats.clone()).map_err(|e| match e {
        Error::ClientConfig(m) => named(m),
        other => other,
    })
}

fn readiness(c: CheckReport) -> Readiness {
    Readiness {
        ready: c.ready,
        verdict: c.verdict,
        reasons: c.reasons,
        warnings: c.warnings,
    }
}

/// Asks every context, at most `opts.parallel` at a time; also the requests of all the
/// clusters' clients together.
pub async fn ask(
    kubeconfig: &Kubeconfig,
    contexts: Vec<String>,
    opts: &Options,
) -> (Fleet, Arc<ApiStats>) {
    let total = Arc::new(ApiStats::default());
    let rows: Vec<(Row, Arc<ApiStats>)> = stream::iter(contexts)
        .map(|context| {
            let span = tracing::info_span!("cluster", context = %context);
            ask_one(kubeconfig, context, opts).instrument(span)
        })
        .buffer_unordered(opts.parallel.max(1))
        .collect()
        .await;
    let rows = rows
        .into_iter()
        .map(|(row, stats)| {
            total.add(&stats);
            row
        })
        .collect();
    (Fleet::new(rows), total)
}

/// How a fleet's command went, from its rows: `Ok` when every cluster was asked (for check:
/// and every one is ready); the summary names the time it took since `started`.
pub fn verdict(fleet: &Fleet, question: &Question, started: Instant) -> Result<Outcome> {
    let summary = format!(
        "{} in {:.1} s",
        fleet.summary_line(),
        started.elapsed().as_secs_f64()
    );
    let total = fleet.clusters.len();
    match question {
        Question::Check(_) => {
            let not_ready = fleet.clusters.iter().filter(|r| !r.ready()).count();
            if not_ready == 0 {
                Ok(Outcome::Done(summary))
            } else {
                Err(Error::FleetNotReady {
                    not_ready,
                    total,
                    summary,
                })
            }
        }
        Question::Status => match fleet.unreachable() {
            0 => Ok(Outcome::Done(summary)),
            unreachable => Err(Error::FleetUnreachable {
                unreachable,
                total,
                summary,
            }),
        },
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn copy(source: bool, copy: bool, matches: Option<bool>) -> BackupCopy {
        BackupCopy {
            name: "x".into(),
            source_exists: source,
            copy_exists: copy,
            copy_matches_source: matches,
        }
    }

    #[test]
    fn the_backup_in_one_word() {
        let m = copy(true, true, Some(true));
        assert_eq!(backup_word(&[m, copy(true, true, Some(true))]), "matches");
        assert_eq!(
            backup_word(&[copy(true, true, Some(true)), copy(true, true, Some(false))]),
            "differs"
        );
        assert_eq!(
            backup_word(&[copy(true, false, None), copy(false, false, None)]),
            "none"
        );
        assert_eq!(
            backup_word(&[copy(true, true, Some(true)), copy(true, false, None)]),
            "partial"
        );
        assert_eq!(
            backup_word(&[copy(false, true, None), copy(false, true, None)]),
            "sources-gone"
        );
    }

    #[test]
    fn contexts_are_selected_sorted_and_once() {
        let kc: Kubeconfig = serde_json::from_value(serde_json::json!({
            "contexts": [
                {"name": "b", "context": {"cluster": "c", "user": "u"}},
                {"name": "a", "context": {"cluster": "c", "user": "u"}},
            ]
        }))
        .expect("kubeconfig");
        assert_eq!(select(&kc, &["z".into(), "b".into()], false), ["b", "z"]);
        assert_eq!(select(&kc, &["b".into()], true), ["a", "b"]);
        assert_eq!(select(&kc, &[], true), ["a", "b"]);
    }

    #[test]
    fn the_summary_counts_every_phase_that_occurred() {
        let row = |context: &str, phase: Phase| Row {
            phase,
            ..Row::unreachable(context.into(), None, &Error::ClientConfig("x".into()), 0)
        };
        let fleet = Fleet::new(vec![
            row("c", Phase::Done),
            row("a", Phase::Unreachable),
            row("b", Phase::Done),
        ]);
        let contexts: Vec<&str> = fleet.clusters.iter().map(|r| r.context.as_str()).collect();
        assert_eq!(contexts, ["a", "b", "c"]);
        assert_eq!(
            serde_json::to_value(&fleet.summary).expect("json"),
            serde_json::json!({"done": 2, "unreachable": 1})
        );
        assert_eq!(fleet.summary_line(), "3 clusters: 2 done, 1 unreachable");
        let text = fleet.render_text();
        let lines: Vec<&str> = text.lines().collect();
        assert_eq!(lines.len(), 5, "{text}");
        let phase_at = lines[0].find("PHASE").expect("PHASE");
        for l in &lines[1..4] {
            assert!(
                l[phase_at..].starts_with("done") || l[phase_at..].starts_with("unreachable"),
                "{text}"
            );
        }
    }

    /// A server that answers its first `failures` requests with 503 and never answers another.
    async fn failing_then_silent(failures: usize) -> u16 {
        use std::sync::atomic::{AtomicUsize, Ordering};
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
            .await
            .expect("bind");
        let port = listener.local_addr().expect("addr").port();
        let left = Arc::new(AtomicUsize::new(failures));
        tokio::spawn(async move {
            while let Ok((stream, _)) = listener.accept().await {
                let left = left.clone();
                let service = hyper::service::service_fn(move |_req| {
                    let failing = left
                        .fetch_update(Ordering::SeqCst, Ordering::SeqCst, |n| n.checked_sub(1))
                        .is_ok();
                    async move {
                        if !failing {
                            std::future::pending::<()>().await;
                        }
                        http::Response::builder().status(503).body(String::new())
                    }
                });
                tokio::spawn(
                    hyper::server::conn::http1::Builder::new()
                        .serve_connection(hyper_util::rt::TokioIo::new(stream), service),
                );
            }
        });
        port
    }

    /// A cluster whose requests fail, are retried and then hang until the cluster's deadline:
    /// its row and the fleet's totals count the retries its client made before the deadline.
    #[tokio::test]
    async fn a_cluster_asked_past_its_deadline_keeps_its_retries() {
        let port = failing_then_silent(3).await;
        let kc: Kubeconfig = serde_json::from_value(serde_json::json!({
            "clusters": [{"name": "c", "cluster": {"server": format!("http://127.0.0.1:{port}")}}],
            "users": [{"name": "u", "user": {"token": "t"}}],
            "contexts": [{"name": "slow", "context": {"cluster": "c", "user": "u"}}],
        }))
        .expect("kubeconfig");
        let opts = Options {
            question: Question::Status,
            deadline: Duration::from_millis(1500),
            request_timeout: Duration::from_secs(60),
            parallel: 1,
        };
        let (fleet, total) = ask(&kc, vec!["slow".into()], &opts).await;
        let row = &fleet.clusters[0];
        assert_eq!(row.phase, Phase::Unreachable, "{row:?}");
        // Each of the three 503s was retried once; the retries then hang.
        assert_eq!(total.retries(), 3, "{row:?}");
        let error = row.error.as_deref().unwrap_or_default();
        assert!(error.contains("after 3 retries"), "{error}");
    }
}
