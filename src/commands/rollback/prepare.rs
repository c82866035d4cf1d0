//! `rollback --prepare`, the runbook's first step, before the module is disabled: records into
//! clean's archive the ServiceMappings as they are now (created or changed since clean
//! included), so that rollback can bring back what the module's uninstall deletes. One deleted
//! since clean stays in the archive. Nothing else in the cluster changes.

use k8s_openapi::apiextensions_apiserver::pkg::apis::apiextensions::v1::CustomResourceDefinition;

use crate::archive::{self, Archive, MappingEntry, MappingsArchive, WriteOutcome};
use crate::commands::{Ctx, Outcome};
use crate::conflicts::Conflicts;
use crate::error::{Error, Result};
use crate::names::service_mappings as sm;
use crate::service_mappings;

pub async fn run(ctx: &Ctx) -> Result<Outcome> {
    let (stored, crd) = futures::try_join!(
        archive::read_stored(&ctx.client),
        service_mappings::crd(&ctx.client)
    )?;
    let Some(mut stored) = stored else {
        return Err(no_archive());
    };
    let Some(crd) = crd else {
        return Ok(Outcome::Skipped(format!(
            "no CustomResourceDefinition {}: no ServiceMapping to record; the archive holds {} ServiceMappings",
            sm::CRD_NAME,
            stored.archive.service_mappings.items.len()
        )));
    };
    let fresh = read_now(ctx, &stored.archive, &crd).await?;
    let mut conflicts = Conflicts::until(ctx.options.deadline);
    loop {
        let before = &stored.archive;
        let merged = before.clone().merged_with(Archive::new(
            before.cr_uid.clone(),
            Vec::new(),
            fresh.clone(),
        ));
        let summary = summary(before, &merged, fresh.items.len());
        if merged == *before {
            return Ok(Outcome::Done(format!(
                "{summary}; the archive held them already"
            )));
        }
        match record(ctx, &merged, &stored, summary).await? {
            Some(outcome) => return Ok(outcome),
            None => {
                conflicts.pause(archive::location).await?;
                stored = archive::read_stored(&ctx.client)
                    .await?
                    .ok_or_else(no_archive)?
            }
        }
    }
}

fn no_archive() -> Error {
    Error::NoArchive {
        location: archive::location(),
    }
}

/// The ServiceMappings as they are now, and the CRD when the archive holds no copy of it.
async fn read_now(
    ctx: &Ctx,
    archived: &Archive,
    crd: &CustomResourceDefinition,
) -> Result<MappingsArchive> {
    let mut fresh = MappingsArchive {
        items: list(ctx, crd).await?,
        ..Default::default()
    };
    // An archive of an older version holds no copy of the CRD: the one there now is better than
    // none (its spec may be the module's by now).
    if archived.service_mappings.crd_object.is_none() {
        tracing::warn!(
            crd = sm::CRD_NAME,
            "the archive holds no copy of the ServiceMapping CRD (written by an older version); recording it as it is now"
        );
        fresh.crd_object = Some(archive::crd_archival(crd)?);
    }
    Ok(fresh)
}

/// Writes `merged` over `stored` and reads it back: prepare's outcome, or `None` when the
/// archive changed since it was read (a concurrent run).
async fn record(
    ctx: &Ctx,
    merged: &Archive,
    stored: &archive::Stored,
    summary: String,
) -> Result<Option<Outcome>> {
    let written = archive::write(
        &ctx.client,
        merged,
        Some(stored),
        ctx.options.dry_run,
        ctx.options.archive_part_bytes,
        ctx.options.deadline,
    )
    .await?;
    match written {
        WriteOutcome::Conflict => Ok(None),
        WriteOutcome::Written { .. } if ctx.options.dry_run => {
            ctx.plan(
                "rollback",
                &format!("would record in {}: {summary}", archive::location()),
            );
            Ok(Some(Outcome::Done(format!("would have: {summary}"))))
        }
        WriteOutcome::Written { bytes, parts } => {
            let back = archive::read(&ctx.client).await?;
            if back.as_ref() != Some(merged) {
                return Err(Error::Archive {
                    reason: format!(
                        "{} read back does not hold what was written",
                        archive::location()
                    ),
                });
            }
            tracing::info!(archive = %archive::location(), bytes, parts, "recorded and verified");
            Ok(Some(Outcome::Done(summary)))
        }
    }
}

/// Every ServiceMapping as it is now.
async fn list(ctx: &Ctx, crd: &CustomResourceDefinition) -> Result<Vec<MappingEntry>> {
    let Some(ar) = service_mappings::resource(crd) else {
        return Ok(Vec::new());
    };
    archive::list_mappings(&ctx.client, &ar, crd.spec.scope == "Namespaced").await
}

/// `recorded N ServiceMappings (a new since clean, b changed since the archive); c deleted since
/// and kept in the archive`.
fn summary(before: &Archive, after: &Archive, listed: usize) -> String {
    let old: std::collections::BTreeMap<_, _> = before
        .service_mappings
        .items
        .iter()
        .map(|m| ((&m.namespace, &m.name), m))
        .collect();
    let (mut new, mut changed) = (0, 0);
    for m in &after.service_mappings.items {
        match old.get(&(&m.namespace, &m.name)) {
            None => new += 1,
            Some(o) if o.object != m.object => changed += 1,
            Some(_) => {}
        }
    }
    format!(
        "recorded {listed} ServiceMappings ({new} new since the archive was written, {changed} changed); \
         {} deleted since and kept in the archive",
        after.service_mappings.items.len() - listed
    )
}
