//! Step 1: the user configuration from the legacy ConfigMaps into the ConnectivityProxy CR.

use kube::api::DynamicObject;
use serde_json::Value;

use super::{Ctx, Outcome};
use crate::conflicts::Conflicts;
use crate::cr;
use crate::error::Result;
use crate::migration::{
    LegacyInput, Replaced, desired, field_loss, judge_losses, no_legacy_installation,
    read_legacy_input, summary, warn_on_version, write,
};
use crate::step::Step;
use crate::{diff, translate};

pub async fn run(ctx: &Ctx) -> Result<Outcome> {
    // The legacy input is read once per run; after a conflict only the CR is read again, which
    // keeps the read-to-write window short against a busy concurrent writer.
    let mut input = None;
    let mut conflicts = Conflicts::until(ctx.options.deadline);
    loop {
        match attempt_once(ctx, &mut input).await? {
            Attempt::Finished(outcome) => return Ok(outcome),
            Attempt::Conflict(message) => {
                let attempt = conflicts.seen() + 1;
                tracing::info!(attempt, conflict = %message, "the CR changed since it was read; reading it again");
                conflicts.pause(cr::display).await?;
            }
        }
    }
}

enum Attempt {
    Finished(Outcome),
    /// The server's message about the conflict.
    Conflict(String),
}

/// One attempt: the CR and (the first time) the legacy input, the desired CR judged by the
/// server, then the guarded write, or a dry run's plan.
async fn attempt_once(ctx: &Ctx, input: &mut Option<LegacyInput>) -> Result<Attempt> {
    let (current, read) = match read_inputs(ctx, input).await? {
        Ok(read) => read,
        Err(skipped) => return Ok(Attempt::Finished(skipped)),
    };
    let ports = read.ports;
    let (plan, desired) = desired(&current, read)?;
    let accepted = match judge_on_the_server(ctx, &plan, &desired).await? {
        Judged::Accepted(accepted) => accepted,
        Judged::Conflict(conflict) => return Ok(Attempt::Conflict(conflict)),
    };
    let summary = summary(&plan, ports, &accepted);
    if ctx.options.dry_run {
        let config = current.data.pointer("/spec/config").unwrap_or(&Value::Null);
        let change = diff::diff("config", config, &plan.config);
        let display = cr::display();
        let text = format!("{summary}\n{display} spec.config would change as follows:\n{change}");
        ctx.plan(Step::Migrate.name(), &text);
        ctx.assume(Step::Migrate);
        let outcome = Outcome::Done(format!("would migrate: {summary}"));
        return Ok(Attempt::Finished(outcome));
    }
    let written = match write(&ctx.client, &desired, false).await? {
        Replaced::Stored(written) => *written,
        Replaced::Conflict(conflict) => return Ok(Attempt::Conflict(conflict)),
    };
    ctx.pass_on(&written);
    let note = format!("Migrated the legacy Connectivity Proxy configuration: {summary}");
    ctx.event(&written, false, "Migrated", "Migrate", note);
    Ok(Attempt::Finished(Outcome::Done(summary)))
}

/// The CR and the legacy input, or why migrate skips (marked migrated, no legacy
/// installation). The first attempt reads both together: they are independent reads. The CR's
/// answer is judged first, so a CR that is missing or marked migrated still decides the
/// outcome; the legacy reads are then merely unused. A later attempt reads the CR alone.
async fn read_inputs<'a>(
    ctx: &Ctx,
    input: &'a mut Option<LegacyInput>,
) -> Result<std::result::Result<(DynamicObject, &'a LegacyInput), Outcome>> {
    let client = &ctx.client;
    let (lookup, legacy_read) = if input.is_some() {
        (cr::lookup(client).await, None)
    } else {
        let (lookup, legacy_read) = futures::join!(cr::lookup(client), read_legacy_input(client));
        (lookup, Some(legacy_read))
    };
    let current = lookup?.required()?;
    if let Some(key) = cr::marked(&current, Step::Migrate) {
        let skipped = format!("already migrated ({key}=true on the CR)");
        return Ok(Err(Outcome::Skipped(skipped)));
    }
    if let Some(legacy_read) = legacy_read {
        let Some((install, read)) = legacy_read? else {
            return Ok(Err(Outcome::Skipped(no_legacy_installation())));
        };
        warn_on_version(&install);
        *input = Some(read);
    }
    match input.as_ref() {
        Some(read) => Ok(Ok((current, read))),
        None => Ok(Err(Outcome::Skipped(no_legacy_installation()))),
    }
}

/// What the server would store of the CR migrate writes.
enum Judged {
    /// It keeps every migrated field, but those the user accepted to lose (named).
    Accepted(Vec<String>),
    /// The CR changed since it was read: the server's message.
    Conflict(String),
}

/// Asks the server what it would store (a dry run of the guarded write), and refuses if it
/// would drop or change a migrated field the user did not accept to lose.
async fn judge_on_the_server(
    ctx: &Ctx,
    plan: &translate::Plan,
    desired: &DynamicObject,
) -> Result<Judged> {
    let stored = match write(&ctx.client, desired, true).await? {
        Replaced::Stored(stored) => *stored,
        Replaced::Conflict(conflict) => return Ok(Judged::Conflict(conflict)),
    };
    let (refused, accepted) = judge_losses(
        plan,
        stored.data.get("spec").unwrap_or(&Value::Null),
        &ctx.options.allow_field_loss,
    );
    if !refused.is_empty() {
        return Err(field_loss(&refused));
    }
    let accepted: Vec<String> = accepted.iter().map(|l| l.to_string()).collect();
    for line in &accepted {
        tracing::warn!(field = %line, "accepted loss of a migrated field (--allow-field-loss)");
    }
    Ok(Judged::Accepted(accepted))
}
