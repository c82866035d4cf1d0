//! Step 2: copies of the user-configuration ConfigMaps in the backup namespace, verified.

use k8s_openapi::api::core::v1::Namespace;
use kube::ResourceExt;
use kube::api::Api;

use super::{Ctx, Outcome, print_plan};
use crate::configmaps;
use crate::cr::{self, Marker};
use crate::error::{Context, Error, Result, is_already_exists};
use crate::names::{self, config_maps};

pub async fn run(ctx: &Ctx) -> Result<Outcome> {
    let current = match super::cr_or_skip(ctx).await? {
        Ok(cr) => cr,
        Err(skipped) => return Ok(skipped),
    };
    if ctx.marked(&current, Marker::Migrated).is_none() {
        return Ok(Outcome::Skipped(
            "the CR is not marked migrated, so there is no migrated configuration to protect"
                .into(),
        ));
    }
    if let Some(key) = cr::marked(&current, Marker::BackedUp) {
        return Ok(Outcome::Skipped(format!(
            "already backed up ({key}=true on the CR)"
        )));
    }

    let namespace_exists = ensure_namespace(ctx).await?;
    let now = jiff::Timestamp::now();
    let mut copied = Vec::new();
    for name in config_maps::USER_CONFIG {
        let Some(source) = configmaps::get(&ctx.client, names::KYMA_SYSTEM, name).await? else {
            tracing::warn!(configmap = %format!("{}/{name}", names::KYMA_SYSTEM), "source ConfigMap does not exist; nothing to back up for it");
            continue;
        };
        let copy = configmaps::backup_copy(&source, now);
        let target = format!("{}/{name}", names::BACKUP_NAMESPACE);
        if ctx.dry_run {
            // A dry-run write into a namespace that does not exist yet cannot be asked of the server.
            if namespace_exists {
                configmaps::put(&ctx.client, &copy, true).await?;
            }
            print_plan(
                "backup",
                &format!(
                    "would copy ConfigMap {}/{name} to {target}",
                    names::KYMA_SYSTEM
                ),
            );
            copied.push(target);
            continue;
        }
        configmaps::put(&ctx.client, &copy, false).await?;
        let read_back = configmaps::get(&ctx.client, names::BACKUP_NAMESPACE, name).await?;
        if !read_back
            .as_ref()
            .is_some_and(|c| configmaps::same_data(c, &source))
        {
            return Err(Error::BackupMismatch {
                copy: format!("ConfigMap {target}"),
                source_object: format!("ConfigMap {}/{name}", names::KYMA_SYSTEM),
            });
        }
        tracing::info!(source = %format!("{}/{name}", names::KYMA_SYSTEM), copy = %target, resource_version = %source.resource_version().unwrap_or_default(), "copied and verified");
        copied.push(target);
    }

    let summary = if copied.is_empty() {
        "no source ConfigMap exists; nothing was copied".to_string()
    } else {
        format!("copied and verified {}", copied.join(", "))
    };
    if ctx.dry_run {
        print_plan(
            "backup",
            &format!(
                "would set {}=true on {}",
                Marker::BackedUp.key(),
                cr::display()
            ),
        );
        ctx.assume(Marker::BackedUp);
        return Ok(Outcome::Done(format!("would have {summary}")));
    }
    let marked = cr::set_markers(&ctx.client, &[Marker::BackedUp], false).await?;
    ctx.hand_on(&marked);
    ctx.event(
        &marked,
        false,
        "BackedUp",
        "Backup",
        format!("Backed up the user configuration: {summary}"),
    )
    .await;
    Ok(Outcome::Done(summary))
}

/// Creates the backup namespace unless it exists; returns whether it exists (after this call).
async fn ensure_namespace(ctx: &Ctx) -> Result<bool> {
    let api: Api<Namespace> = Api::all(ctx.client.clone());
    let mut ns = Namespace::default();
    ns.metadata.name = Some(names::BACKUP_NAMESPACE.into());
    let pp = crate::client::post_params(ctx.dry_run);
    match api.create(&pp, &ns).await {
        Ok(_) if ctx.dry_run => {
            print_plan(
                "backup",
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
