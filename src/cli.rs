//! The command line, and the one closing log line every command ends with (and, when it fails,
//! the container's termination message).

use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Duration;

use clap::{Args, CommandFactory, Parser, Subcommand, ValueEnum};
use tokio::time::Instant;

use crate::client::{self, ApiStats, ClientOptions, Reads};
use crate::commands::{self, Ctx, Outcome};
use crate::error::{Error, Result};
use crate::fleet;
use crate::logging::LogFormat;
use crate::step::Step;
use crate::termination;

#[derive(Debug, Parser)]
#[command(
    name = "cp-mod-migrator",
    version,
    about = "Moves a Kyma cluster from the legacy Connectivity Proxy 2.9.3 to the Connectivity Proxy module"
)]
pub struct Cli {
    #[command(flatten)]
    pub global: Global,
    #[command(subcommand)]
    pub command: Command,
}

#[derive(Debug, Args)]
pub struct Global {
    /// Kubeconfig file (this file alone); without it: KUBECONFIG (several files joined by `:`,
    /// merged as kubectl merges them), ~/.kube/config, then the Pod's ServiceAccount.
    #[arg(long, global = true)]
    pub kubeconfig: Option<PathBuf>,
    /// Kubeconfig context to use. status and check take it more than once: each cluster a row.
    #[arg(long, global = true, value_name = "NAME")]
    pub context: Vec<String>,
    /// status and check: every context of the kubeconfig, each cluster a row.
    #[arg(long, global = true)]
    pub all_contexts: bool,
    /// status and check of several clusters: how many are asked at a time.
    #[arg(long, global = true, default_value_t = 16, value_parser = clap::value_parser!(u16).range(1..))]
    pub parallel: u16,
    /// Persist nothing: every write is a server-side dry run; print what would change.
    #[arg(long, global = true)]
    pub dry_run: bool,
    /// Log format; default: json when stderr is not a terminal, else text.
    #[arg(long, global = true, value_enum)]
    pub log_format: Option<LogFormat>,
    /// Time for the whole command, retries of transient API failures included (e.g. 90s, 5m);
    /// default 120s. Of several clusters: each cluster's own time, default 10s.
    #[arg(long, global = true, value_parser = humantime::parse_duration, env = "CP_MIGRATOR_DEADLINE")]
    pub deadline: Option<Duration>,
    /// Time for one API request and its response.
    #[arg(long, global = true, default_value = "10s", value_parser = humantime::parse_duration)]
    pub request_timeout: Duration,
    /// Compressed bytes per Secret of clean's archive; lower only to exercise the split into parts.
    #[arg(long, global = true, hide = true, default_value_t = crate::names::archive::PART_BYTES, env = "CP_MIGRATOR_ARCHIVE_PART_BYTES")]
    pub archive_part_bytes: usize,
}

/// The time for one cluster's command when `--deadline` is not given.
pub const DEFAULT_DEADLINE: Duration = Duration::from_secs(120);

impl Global {
    /// Several clusters at once: `--context` more than once, or `--all-contexts`.
    pub fn fleet(&self) -> bool {
        self.all_contexts || self.context.len() > 1
    }
}

#[derive(Debug, Subcommand)]
pub enum Command {
    /// Step 1: the legacy user configuration into the ConnectivityProxy CR.
    Migrate(MigrateArgs),
    /// Step 2: verified copies of the user configuration in the backup namespace.
    Backup,
    /// Step 3: adopt the ServiceMappings and delete the legacy installation (or, with
    /// --hand-over, hand it over to the module's operator).
    Clean(CleanArgs),
    /// migrate, backup and clean in order, stopping at the first failure.
    Run(RunArgs),
    /// After clean --hand-over, once the module is Ready: delete what the hand-over left and
    /// the legacy Pods no workload adopted, and set the finished marker.
    Finish(FinishArgs),
    /// Copy the user configuration from the backup namespace back into kyma-system.
    Restore,
    /// Undo clean from its archive once the module is disabled: the legacy installation back
    /// without waiting for the Kyma Control Plane.
    Rollback(RollbackArgs),
    /// Set all three step markers, so that the init containers do nothing on the next start.
    MarkDone,
    /// Show the state of the migration; changes nothing.
    Status(StatusArgs),
    /// Whether migrate would succeed now, why not, and what it would write; changes nothing.
    Check(CheckArgs),
}

#[derive(Debug, Args, Default)]
pub struct MigrateArgs {
    /// Accept that the server drops or changes this migrated field (as the error names it, e.g.
    /// config.foo.bar); fields below it count too. Repeatable.
    #[arg(long = "allow-field-loss", value_name = "FIELD")]
    pub allow_field_loss: Vec<String>,
}

/// The CRDs the module's operator needs to start (clean refuses while one is not served).
#[derive(Debug, Args, Default)]
pub struct PrerequisitesArgs {
    /// Do not require the CRDs that the module's operator needs to start (Istio's, Gardener's
    /// certificates, the BTP operator's), for an operator build that needs fewer: clean then
    /// deletes the legacy installation without them, and check does not judge them.
    #[arg(long, env = "CP_MIGRATOR_SKIP_OPERATOR_PREREQUISITES")]
    pub skip_operator_prerequisites: bool,
}

/// How clean leaves the legacy installation.
#[derive(Debug, Args, Default)]
pub struct HandOverArgs {
    /// Hand the legacy installation over to the module's operator instead of deleting it first
    /// (no outage where Kubernetes allows it): objects at the operator's names are labelled for
    /// it to adopt, the legacy workloads deleted with their Pods orphaned, the tunnel's objects
    /// left for `finish`. Off by default until seen on a real cluster.
    #[arg(long, env = crate::names::hand_over::ENV)]
    pub hand_over: bool,
}

#[derive(Debug, Args, Default)]
pub struct CleanArgs {
    #[command(flatten)]
    pub prerequisites: PrerequisitesArgs,
    #[command(flatten)]
    pub hand_over: HandOverArgs,
}

#[derive(Debug, Args, Default)]
pub struct RunArgs {
    #[command(flatten)]
    pub migrate: MigrateArgs,
    #[command(flatten)]
    pub prerequisites: PrerequisitesArgs,
    #[command(flatten)]
    pub hand_over: HandOverArgs,
}

#[derive(Debug, Args, Default)]
pub struct FinishArgs {
    /// Do not wait for the module to be Ready: exit 0 saying what finish waits for.
    #[arg(long)]
    pub no_wait: bool,
    /// Once finished (or with nothing to finish), stay running without any work until stopped,
    /// as a native sidecar (an init container with restartPolicy: Always) must.
    #[arg(long)]
    pub idle: bool,
}

#[derive(Debug, Args)]
pub struct RollbackArgs {
    /// The runbook's first step, before the module is disabled: record the ServiceMappings as
    /// they are now into clean's archive (the module's uninstall deletes them); nothing else is
    /// written.
    #[arg(long)]
    pub prepare: bool,
}

#[derive(Debug, Args)]
pub struct StatusArgs {
    #[arg(short = 'o', long = "output", value_enum, default_value = "text")]
    pub output: OutputFormat,
}

#[derive(Debug, Args)]
pub struct CheckArgs {
    /// Judge offline against this ConnectivityProxy CRD (YAML or JSON) instead of the cluster's.
    #[arg(long, value_name = "FILE")]
    pub crd: Option<PathBuf>,
    #[arg(short = 'o', long = "output", value_enum, default_value = "text")]
    pub output: OutputFormat,
    #[command(flatten)]
    pub migrate: MigrateArgs,
    #[command(flatten)]
    pub prerequisites: PrerequisitesArgs,
}

#[derive(Debug, Clone, Copy, ValueEnum)]
pub enum OutputFormat {
    Text,
    Json,
}

impl Cli {
    /// Parses the command line, and refuses (as a usage error, before anything is read) several
    /// clusters for a command that takes one.
    pub fn parse_checked() -> Cli {
        let cli = Cli::parse();
        if cli.global.fleet() && !matches!(cli.command, Command::Status(_) | Command::Check(_)) {
            Cli::command()
                .error(
                    clap::error::ErrorKind::ArgumentConflict,
                    format!(
                        "{} works on one cluster: --context more than once and --all-contexts are for status and check only",
                        cli.command.name()
                    ),
                )
                .exit();
        }
        cli
    }
}

impl Command {
    fn name(&self) -> &'static str {
        match self {
            Command::Migrate(_) => Step::Migrate.name(),
            Command::Backup => Step::Backup.name(),
            Command::Clean(_) => Step::Clean.name(),
            Command::Run(_) => "run",
            Command::Finish(_) => "finish",
            Command::Restore => "restore",
            Command::Rollback(_) => "rollback",
            Command::MarkDone => "mark-done",
            Command::Status(_) => "status",
            Command::Check(_) => "check",
        }
    }
}

/// Runs the command and logs its closing line; the exit code is 0 for done or skipped.
pub async fn execute(cli: Cli) -> ExitCode {
    let started = Instant::now();
    let name = cli.command.name();
    if cli.global.fleet() {
        return execute_fleet(&cli, started).await;
    }
    let deadline_for = cli.global.deadline.unwrap_or(DEFAULT_DEADLINE);
    let deadline = started + deadline_for;
    let (client, stats) = match client::build(&client_options(&cli), deadline).await {
        Ok(c) => c,
        Err(e) => {
            show_unreachable(&cli.command, &e, 0);
            return conclude(name, Err(e), started, None);
        }
    };
    let ctx = Ctx::new(client, options(&cli, deadline));
    let result = within_deadline(&cli, &ctx, started, &stats).await;
    // Also what a step planned before the deadline stopped it.
    show_plans(&ctx);
    if let Err(e) = &result {
        show_unreachable(&cli.command, e, stats.retries());
    }
    let code = conclude(name, result, started, Some(&stats));
    if let Command::Finish(FinishArgs { idle: true, .. }) = &cli.command
        && code == ExitCode::SUCCESS
    {
        commands::finish::idle().await;
    }
    code
}

/// The one cluster's client: `--kubeconfig`, the first `--context`, the timeouts.
fn client_options(cli: &Cli) -> ClientOptions {
    ClientOptions {
        kubeconfig: cli.global.kubeconfig.clone(),
        context: cli.global.context.first().cloned(),
        deadline: cli.global.deadline.unwrap_or(DEFAULT_DEADLINE),
        request_timeout: cli.global.request_timeout,
        refused_retries: None,
        max_in_flight: None,
        reads: Reads::Consistent,
    }
}

/// Runs the command and waits for its Events, within the deadline and one request's timeout:
/// the client stops retrying at the deadline, and this bounds everything else as well.
async fn within_deadline(
    cli: &Cli,
    ctx: &Ctx,
    started: Instant,
    stats: &ApiStats,
) -> Result<Outcome> {
    let deadline = cli.global.deadline.unwrap_or(DEFAULT_DEADLINE);
    let limit = deadline + cli.global.request_timeout;
    let work = async {
        let result = dispatch(ctx, &cli.command, started, stats).await;
        // The Events went out beside the work; the closing line counts their requests too.
        ctx.events_sent().await;
        result
    };
    match tokio::time::timeout(limit, work).await {
        Ok(r) => r,
        Err(_) => Err(Error::Deadline {
            action: format!("running {}", cli.command.name()),
            deadline,
        }),
    }
}

/// The command's options, from its flags.
fn options(cli: &Cli, deadline: Instant) -> commands::Options {
    let mut options = commands::Options::new(deadline);
    options.dry_run = cli.global.dry_run;
    options.archive_part_bytes = cli.global.archive_part_bytes;
    options.request_timeout = cli.global.request_timeout;
    if let Command::Migrate(a) | Command::Run(RunArgs { migrate: a, .. }) = &cli.command {
        options.allow_field_loss = a.allow_field_loss.clone();
    }
    if let Command::Clean(CleanArgs {
        prerequisites: p,
        hand_over: h,
    })
    | Command::Run(RunArgs {
        prerequisites: p,
        hand_over: h,
        ..
    }) = &cli.command
    {
        options.skip_operator_prerequisites = p.skip_operator_prerequisites;
        options.hand_over = h.hand_over;
    }
    options
}

/// status or check of several clusters (see `crate::fleet`): one row per cluster; exit 0 when
/// every cluster was asked (check: and every one is ready).
async fn execute_fleet(cli: &Cli, started: Instant) -> ExitCode {
    let name = cli.command.name();
    let (question, output) = match &cli.command {
        Command::Status(args) => (fleet::Question::Status, args.output),
        Command::Check(args) => {
            match commands::check::CheckOptions::new(
                args.crd.as_deref(),
                &args.migrate.allow_field_loss,
                args.prerequisites.skip_operator_prerequisites,
            ) {
                Ok(options) => (fleet::Question::Check(options), args.output),
                Err(e) => return conclude(name, Err(e), started, None),
            }
        }
        // Refused by `Cli::parse_checked` before anything was read.
        _ => {
            let e = Error::ClientConfig(format!("{name} works on one cluster"));
            return conclude(name, Err(e), started, None);
        }
    };
    let kubeconfig = match fleet::load_kubeconfig(cli.global.kubeconfig.as_deref()) {
        Ok(k) => k,
        Err(e) => return conclude(name, Err(e), started, None),
    };
    let contexts = fleet::select(&kubeconfig, &cli.global.context, cli.global.all_contexts);
    let opts = fleet::Options {
        question,
        deadline: cli.global.deadline.unwrap_or(fleet::DEFAULT_DEADLINE),
        request_timeout: cli.global.request_timeout,
        parallel: usize::from(cli.global.parallel),
    };
    let (fleet, stats) = fleet::ask(&kubeconfig, contexts, &opts).await;
    show(output, &fleet, fleet::Fleet::render_text);
    let result = fleet::verdict(&fleet, &opts.question, started);
    conclude(name, result, started, Some(&stats))
}

/// status still prints its row when it could not read the cluster: the phase `unreachable`
/// and the error (the exit code is 1 all the same).
fn show_unreachable(command: &Command, e: &Error, retries: u64) {
    let Command::Status(args) = command else {
        return;
    };
    let unreachable = commands::status::Unreachable::new(e.describe(retries), e.is_refusal());
    show(
        args.output,
        &unreachable,
        commands::status::Unreachable::render_text,
    );
}

/// Prints a report on stdout (logs go to stderr): the one place that renders text or JSON.
fn show<T: serde::Serialize>(format: OutputFormat, report: &T, text: impl FnOnce(&T) -> String) {
    match format {
        OutputFormat::Json => println!(
            "{}",
            serde_json::to_string_pretty(report).unwrap_or_default()
        ),
        OutputFormat::Text => print!("{}", text(report)),
    }
}

/// Prints the dry-run plans the steps recorded so far, on stdout, so they can be piped apart.
fn show_plans(ctx: &Ctx) {
    for line in ctx.take_plans() {
        println!("{line}");
    }
}

/// Runs one migration step.
async fn run_step(step: Step, ctx: &Ctx) -> Result<Outcome> {
    match step {
        Step::Migrate => commands::migrate::run(ctx).await,
        Step::Backup => commands::backup::run(ctx).await,
        Step::Clean => commands::clean::run(ctx).await,
    }
}

async fn dispatch(
    ctx: &Ctx,
    command: &Command,
    started: Instant,
    stats: &ApiStats,
) -> Result<Outcome> {
    match command {
        Command::Migrate(_) => run_step(Step::Migrate, ctx).await,
        Command::Backup => run_step(Step::Backup, ctx).await,
        Command::Clean(_) => run_step(Step::Clean, ctx).await,
        Command::Finish(args) => {
            let options = commands::finish::FinishOptions {
                no_wait: args.no_wait,
            };
            commands::finish::run(ctx, options).await
        }
        Command::Restore => commands::restore::run(ctx).await,
        Command::Rollback(args) if args.prepare => commands::rollback::prepare::run(ctx).await,
        Command::Rollback(_) => commands::rollback::run(ctx).await,
        Command::MarkDone => commands::mark_done::run(ctx).await,
        Command::Status(args) => {
            let report = commands::status::collect(&ctx.client).await?;
            show(args.output, &report, commands::status::render_text);
            Ok(Outcome::Done(format!(
                "status shown: {}",
                report.phase.name()
            )))
        }
        Command::Check(args) => {
            let options = commands::check::CheckOptions::new(
                args.crd.as_deref(),
                &args.migrate.allow_field_loss,
                args.prerequisites.skip_operator_prerequisites,
            )?;
            let report = commands::check::check(&ctx.client, &options).await?;
            show(args.output, &report, commands::check::render_text);
            report.outcome()
        }
        Command::Run(_) => {
            // Strictly in order, and nothing after a failure: backup and clean must never run
            // when the step before them did not finish.
            let mut parts = Vec::new();
            for step in Step::IN_ORDER {
                let outcome = run_step(step, ctx).await;
                show_plans(ctx);
                let outcome = outcome.map_err(|e| Error::InStep {
                    step: step.name(),
                    source: Box::new(e),
                })?;
                log_step(step.name(), Ok(&outcome), started, Some(stats));
                parts.push(format!("{}: {}", step.name(), short(&outcome)));
            }
            Ok(Outcome::Done(parts.join("; ")))
        }
    }
}

fn short(o: &Outcome) -> &'static str {
    match o {
        Outcome::Done(_) => "done",
        Outcome::Skipped(_) => "skipped",
    }
}

fn log_step(
    step: &str,
    outcome: std::result::Result<&Outcome, &Error>,
    started: Instant,
    stats: Option<&ApiStats>,
) {
    let duration_ms = started.elapsed().as_millis() as u64;
    let requests = stats.map(|s| s.requests()).unwrap_or(0);
    let retries = stats.map(|s| s.retries()).unwrap_or(0);
    match outcome {
        Ok(Outcome::Done(what)) => {
            tracing::info!(step, outcome = "done", reason = %what, duration_ms, api_requests = requests, retries, "{step} done")
        }
        Ok(Outcome::Skipped(why)) => {
            tracing::info!(step, outcome = "skipped", reason = %why, duration_ms, api_requests = requests, retries, "{step} skipped")
        }
        Err(e) => {
            let reason = e.describe(retries);
            tracing::error!(step, outcome = "failed", %reason, duration_ms, api_requests = requests, retries, "{step} failed")
        }
    }
}

/// Ends the command: its closing log line, and for a failure its container's termination
/// message; returns its exit code.
fn conclude(
    step: &str,
    result: Result<Outcome>,
    started: Instant,
    stats: Option<&ApiStats>,
) -> ExitCode {
    log_step(step, result.as_ref(), started, stats);
    match &result {
        Ok(_) => ExitCode::SUCCESS,
        Err(e) => {
            // The same reason as the closing line, for `kubectl describe pod` and `status`.
            let retries = stats.map(|s| s.retries()).unwrap_or(0);
            termination::write(&e.describe(retries));
            ExitCode::FAILURE
        }
    }
}
