//! mark-done: all three step markers on the CR, so the init containers do nothing next time.

use super::{Ctx, Outcome};
use crate::cr;
use crate::error::Result;
use crate::step::{Marker, Step};

pub async fn run(ctx: &Ctx) -> Result<Outcome> {
    let current = cr::lookup(&ctx.client).await?.required()?;
    let missing: Vec<Step> = Step::IN_ORDER
        .into_iter()
        .filter(|m| cr::marked(&current, *m) != Some(m.marker().key()))
        .collect();
    if missing.is_empty() {
        return Ok(Outcome::Skipped("all three markers are set already".into()));
    }
    let markers: Vec<Marker> = missing.iter().map(|m| m.marker()).collect();
    let keys: Vec<&str> = markers.iter().map(|m| m.key()).collect();
    let marked = cr::set_markers(&ctx.client, &markers, ctx.options.dry_run).await?;
    if ctx.options.dry_run {
        ctx.plan(
            "mark-done",
            &format!("would set {} on {}", keys.join(", "), cr::display()),
        );
        return Ok(Outcome::Done(format!("would set {}", keys.join(", "))));
    }
    ctx.event(
        &marked,
        true,
        "MarkedDone",
        "MarkDone",
        format!("Migration steps marked done by hand: {}", keys.join(", ")),
    );
    Ok(Outcome::Done(format!("set {}", keys.join(", "))))
}
