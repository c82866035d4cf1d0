//! The commands: the three steps, and finish, restore, rollback, mark-done, status and check.
//! Each reads the cluster, decides, and (unless dry-run) writes; it returns what it did, and the
//! command line shows it.

pub mod backup;
pub mod check;
pub mod clean;
pub mod finish;
pub mod mark_done;
pub mod migrate;
pub mod restore;
pub mod rollback;
pub mod status;

use std::collections::BTreeSet;
use std::sync::{Mutex, MutexGuard, PoisonError};

use kube::Client;
use kube::api::DynamicObject;
use kube::runtime::events::{Event, EventType, Recorder, Reporter};

use crate::cr;
use crate::names;
use crate::step::Step;

/// How a step ended when it did not fail.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Outcome {
    Done(String),
    Skipped(String),
}

/// What a command was asked to do: the command line's flags, set once.
#[derive(Debug, Clone)]
pub struct Options {
    pub dry_run: bool,
    /// Fields (as migrate names them) whose loss to CRD pruning the user accepted.
    pub allow_field_loss: Vec<String>,
    /// When the command must be finished; retries after conflicts stop here.
    pub deadline: tokio::time::Instant,
    /// Compressed bytes per Secret of clean's archive (smaller only to test the split).
    pub archive_part_bytes: usize,
    /// clean deletes the legacy installation even while a CRD the module's operator needs to
    /// start is not served (`--skip-operator-prerequisites`).
    pub skip_operator_prerequisites: bool,
    /// clean hands the legacy installation over to the module's operator (`--hand-over`).
    pub hand_over: bool,
    /// The client's time for one request and its response (`--request-timeout`): a watch must
    /// end on the server's side before it, or the client cuts it as a failed read.
    pub request_timeout: std::time::Duration,
}

/// `--request-timeout`'s default.
pub const DEFAULT_REQUEST_TIMEOUT: std::time::Duration = std::time::Duration::from_secs(10);

impl Options {
    /// The defaults of every flag but the deadline.
    pub fn new(deadline: tokio::time::Instant) -> Options {
        Options {
            dry_run: false,
            allow_field_loss: Vec::new(),
            deadline,
            archive_part_bytes: names::archive::PART_BYTES,
            skip_operator_prerequisites: false,
            hand_over: false,
            request_timeout: DEFAULT_REQUEST_TIMEOUT,
        }
    }
}

/// What every command needs: the client, its options, and what it leaves for the command line
/// (a dry run's plan) and for the cluster (its Events); in `run`, what one step passes on to the
/// next.
pub struct Ctx {
    pub client: Client,
    pub options: Options,
    plan: Plan,
    events: Events,
    carried: Carried,
}

impl Ctx {
    pub fn new(client: Client, options: Options) -> Self {
        Ctx {
            events: Events::new(&client),
            plan: Plan::default(),
            carried: Carried::default(),
            client,
            options,
        }
    }

    /// The key marking `marker` done on the CR, or (dry-run of `run`) that an earlier step would set it.
    pub fn marked(&self, cr: &DynamicObject, marker: Step) -> Option<&'static str> {
        cr::marked(cr, marker).or_else(|| {
            self.carried
                .is_assumed(marker)
                .then_some("(set by the earlier steps of this dry run)")
        })
    }

    /// Records that a dry-run step would have set `marker`.
    pub fn assume(&self, marker: Step) {
        self.carried.assume(marker);
    }

    /// Keeps the CR a step has just written for the next step of this run.
    pub fn pass_on(&self, written: &DynamicObject) {
        *lock(&self.carried.cr) = Some(written.clone());
    }

    fn take_passed_on(&self) -> Option<DynamicObject> {
        lock(&self.carried.cr).take()
    }

    /// Records a line of a dry run's plan: what `step` would write.
    pub fn plan(&self, step: &str, text: &str) {
        lock(&self.plan.lines).push(format!("--- {step} (dry run): {text}"));
    }

    /// The plan lines recorded since the last call.
    pub fn take_plans(&self) -> Vec<String> {
        std::mem::take(&mut *lock(&self.plan.lines))
    }

    /// Records an Event on the CR. An Event that cannot be written is logged, not fatal: the
    /// step's work and its marker are already stored. Nothing depends on its answer, so it is
    /// sent on its own while the command goes on; [`Ctx::events_sent`] waits for it.
    pub fn event(
        &self,
        cr: &DynamicObject,
        warning: bool,
        reason: &str,
        action: &str,
        note: String,
    ) {
        if !self.options.dry_run {
            self.events.send(cr, warning, reason, action, note);
        }
    }

    /// Waits until every Event recorded so far has been sent (or has failed, which is logged).
    pub async fn events_sent(&self) {
        self.events.sent().await;
    }
}

/// The lock of state that stays whole whatever panicked while holding it (lines pushed or
/// taken, a value set or taken): a poisoned lock is used as it is, not lost.
fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(PoisonError::into_inner)
}

/// Dry-run plans, in the order the steps made them, for the command line to show.
#[derive(Default)]
struct Plan {
    lines: Mutex<Vec<String>>,
}

/// What one step of `run` passes on to the next.
#[derive(Default)]
struct Carried {
    /// With `run --dry-run`: markers that the earlier steps would have set, so that each step's
    /// plan is shown as if they had been done.
    assumed: Mutex<BTreeSet<Step>>,
    /// The CR as the last step's own write returned it, so that the next step does not read it
    /// again. Steps are idempotent, so a concurrent change it misses is harmless.
    cr: Mutex<Option<DynamicObject>>,
}

impl Carried {
    fn is_assumed(&self, marker: Step) -> bool {
        lock(&self.assumed).contains(&marker)
    }

    fn assume(&self, marker: Step) {
        lock(&self.assumed).insert(marker);
    }
}

/// The Events on the CR: their recorder, and those on their way (nothing waits for them but
/// the end of the command).
struct Events {
    recorder: Recorder,
    sending: Mutex<Vec<tokio::task::JoinHandle<()>>>,
}

impl Events {
    fn new(client: &Client) -> Events {
        let instance = std::env::var("POD_NAME")
            .ok()
            .or_else(|| std::env::var("HOSTNAME").ok());
        let reporter = Reporter {
            controller: names::FIELD_MANAGER.into(),
            instance,
        };
        Events {
            recorder: Recorder::new(client.clone(), reporter),
            sending: Mutex::default(),
        }
    }

    fn send(&self, cr: &DynamicObject, warning: bool, reason: &str, action: &str, note: String) {
        let ev = Event {
            type_: if warning {
                EventType::Warning
            } else {
                EventType::Normal
            },
            reason: reason.into(),
            note: Some(shortened(note)),
            action: action.into(),
            secondary: None,
        };
        let reference = kube::Resource::object_ref(cr, &cr::api_resource());
        let recorder = self.recorder.clone();
        let reason = reason.to_string();
        let sending = tokio::spawn(async move {
            if let Err(e) = recorder.publish(&ev, &reference).await {
                tracing::warn!(error = %e, reason, "could not record an Event on the CR");
            }
        });
        lock(&self.sending).push(sending);
    }

    async fn sent(&self) {
        let sending = std::mem::take(&mut *lock(&self.sending));
        for handle in sending {
            if let Err(e) = handle.await {
                tracing::warn!(error = %e, "recording an Event on the CR did not finish");
            }
        }
    }
}

/// An Event's note cut to what the API server accepts (1 kB), at a character boundary.
fn shortened(mut note: String) -> String {
    if note.len() > 1000 {
        let mut cut = 990;
        while !note.is_char_boundary(cut) {
            cut -= 1;
        }
        note.truncate(cut);
        note.push_str(" …");
    }
    note
}

/// The CR that backup and clean work on, or why they have nothing to do.
pub enum Target {
    Cr(Box<DynamicObject>),
    /// The CRD or the CR is missing: the step is skipped (unlike migrate, which fails).
    Skip(Outcome),
}

/// The CR for backup and clean (within `run`, the one the step before wrote), or the skip they
/// report when the CRD or the CR is missing.
pub async fn target(ctx: &Ctx) -> crate::Result<Target> {
    if let Some(written) = ctx.take_passed_on() {
        return Ok(Target::Cr(Box::new(written)));
    }
    Ok(match cr::lookup(&ctx.client).await? {
        cr::Lookup::Found(cr) => Target::Cr(cr),
        cr::Lookup::CrdMissing => Target::Skip(Outcome::Skipped(format!(
            "CRD {} is not installed",
            names::cr::CRD_NAME
        ))),
        cr::Lookup::CrMissing => Target::Skip(Outcome::Skipped(format!(
            "{} does not exist",
            cr::display()
        ))),
    })
}
