//! Step 2: copies of the user-configuration ConfigMaps in the backup namespace, verified.

use k8s_openapi::api::core::v1::{ConfigMap, Namespace};
use kube::ResourceExt;
use kube::api::{Api, DynamicObject};

use super::{Ctx, Outcome};
use crate::configmaps;
use crate::cr;
use crate::error::{Context, Error, Result, is_already_exists};
use crate::names::{self, config_maps};
use crate::step::{Marker, Step};

pub async fn run(ctx: &Ctx) -> Result<Outcome> {
    let current = match super::target(ctx).await? {
        super::Target::Cr(cr) => *cr,
        super::Target::Skip(skipped) => return Ok(skipped),
    };
    if let Some(skipped) = nothing_to_do(ctx, &current) {
        return Ok(skipped);
    }
    // The namespace and the sources are independent: created and read in one round trip. Then
    // both copies are written together, and read back together.
    let (namespace_exists, present) = namespace_and_sources(ctx).await?;
    let now = jiff::Timestamp::now();
    let copied: Vec<String> = if ctx.options.dry_run {
        plan_copies(ctx, namespace_exists, &present, now).await?
    } else {
        let copies = present
            .iter()
            .map(|(name, source)| copy_and_verify(ctx, name, source, now));
        futures::future::try_join_all(copies).await?
    };
    let summary = if copied.is_empty() {
        "no source ConfigMap exists; nothing was copied".to_string()
    } else {
        format!("copied and verified {}", copied.join(", "))
    };
    mark_backed_up(ctx, &current, summary).await
}

/// Why backup skips: the CR is not marked migrated, or marked backed up already.
fn nothing_to_do(ctx: &Ctx, current: &DynamicObject) -> Option<Outcome> {
    if ctx.marked(current, Step::Migrate).is_none() {
        return Some(Outcome::Skipped(
            "the CR is not marked migrated, so there is no migrated configuration to protect"
                .into(),
        ));
    }
    let key = cr::marked(current, Step::Backup)?;
    Some(Outcome::Skipped(format!(
        "already backed up ({key}=true on the CR)"
    )))
}

/// The backed-up marker with an Event that tells of the verified copies; in a dry run, the plan.
async fn mark_backed_up(ctx: &Ctx, current: &DynamicObject, summary: String) -> Result<Outcome> {
    if ctx.options.dry_run {
        let key = Marker::BackedUp.key();
        ctx.plan(
            Step::Backup.name(),
            &format!("would set {key}=true on {}", cr::display()),
        );
        ctx.assume(Step::Backup);
        return Ok(Outcome::Done(format!("would have {summary}")));
    }
    // The Event tells of the verified copies, which the marker does not change: both go out
    // together.
    let note = format!("Backed up the user configuration: {summary}");
    ctx.event(current, false, "BackedUp", "Backup", note);
    let marked = cr::set_markers(&ctx.client, &[Marker::BackedUp], false).await?;
    ctx.pass_on(&marked);
    Ok(Outcome::Done(summary))
}

/// Creates the backup namespace (whether it existed) while it reads the user ConfigMaps; each
/// that exists, by name.
async fn namespace_and_sources(ctx: &Ctx) -> Result<(bool, Vec<(&'static str, ConfigMap)>)> {
    let (namespace_exists, sources) = futures::try_join!(
        ensure_namespace(ctx),
        futures::future::try_join_all(config_maps::USER_CONFIG.map(|name| configmaps::get(
            &ctx.client,
            names::KYMA_SYSTEM,
            name
        )))
    )?;
    let mut present = Vec::new();
    for (name, source) in config_maps::USER_CONFIG.into_iter().zip(sources) {
        match source {
            Some(source) => present.push((name, source)),
            None => {
                tracing::warn!(configmap = %format!("{}/{name}", names::KYMA_SYSTEM), "source ConfigMap does not exist; nothing to back up for it")
            }
        }
    }
    Ok((namespace_exists, present))
}

/// A dry run's copies: asked of the server where the namespace exists, and planned.
async fn plan_copies(
    ctx: &Ctx,
    namespace_exists: bool,
    present: &[(&'static str, ConfigMap)],
    now: jiff::Timestamp,
) -> Result<Vec<String>> {
    // A dry-run write into a namespace that does not exist yet cannot be asked of the server.
    if namespace_exists {
        futures::future::try_join_all(present.iter().map(|(_, source)| async move {
            configmaps::put(
                &ctx.client,
                &configmaps::backup_copy(source, now),
                true,
                ctx.options.deadline,
            )
            .await
        }))
        .await?;
    }
    let target = |name: &str| format!("{}/{name}", names::BACKUP_NAMESPACE);
    for (name, _) in present {
        ctx.plan(
            Step::Backup.name(),
            &format!(
                "would copy ConfigMap {}/{name} to {}",
                names::KYMA_SYSTEM,
                target(name)
            ),
        );
    }
    Ok(present.iter().map(|(name, _)| target(name)).collect())
}

/// Writes the copy of one source ConfigMap, reads it back and checks its data; returns where it is.
async fn copy_and_verify(
    ctx: &Ctx,
    name: &str,
    source: &ConfigMap,
    now: jiff::Timestamp,
) -> Result<String> {
    let target = format!("{}/{name}", names::BACKUP_NAMESPACE);
    configmaps::put(
        &ctx.client,
        &configmaps::backup_copy(source, now),
        false,
        ctx.options.deadline,
    )
    .await?;
    let read_back = configmaps::get(&ctx.client, names::BACKUP_NAMESPACE, name).await?;
    if !read_back
        .as_ref()
        .is_some_and(|c| configmaps::same_data(c, source))
    {
        return Err(Error::BackupMismatch {
            copy: format!("ConfigMap {target}"),
            source_object: format!("ConfigMap {}/{name}", names::KYMA_SYSTEM),
        });
    }
    tracing::info!(source = %format!("{}/{name}", names::KYMA_SYSTEM), copy = %target, resource_version = %source.resource_version().unwrap_or_default(), "copied and verified");
    Ok(target)
}

/// Creates the backup namespace unless it exists; returns whether it exists (after this call).
async fn ensure_namespace(ctx: &Ctx) -> Result<bool> {
    let api: Api<Namespace> = Api::all(ctx.client.clone());
    let mut ns = Namespace::default();
    ns.metadata.name = Some(names::BACKUP_NAMESPACE.into());
    let pp = crate::client::post_params(ctx.options.dry_run);
    match api.create(&pp, &ns).await {
        Ok(_) if ctx.options.dry_run => {
            ctx.plan(
                Step::Backup.name(),
                &format!("would create namespace {}", names::BACKUP_NAMESPACE),
            );
            Ok(false)
        }
        Ok(_) => {
            tracing::info!(
                namespace = names::BACKUP_NAMESPACE,
                "created the backup namespace"
            );
            Ok(true)
        }
        Err(e) if is_already_exists(&e) => Ok(true),
        Err(e) => Err(e).context(|| format!("creating namespace {}", names::BACKUP_NAMESPACE)),
    }
}
