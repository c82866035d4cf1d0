//! restore: the user-configuration ConfigMaps from the backup namespace back into kyma-system.

use super::{Ctx, Outcome};
use crate::configmaps;
use crate::error::{Error, Result};
use crate::names::{self, config_maps};

pub async fn run(ctx: &Ctx) -> Result<Outcome> {
    let mut restored = Vec::new();
    for name in config_maps::USER_CONFIG {
        if let Some(target) = restore_one(ctx, name).await? {
            restored.push(target);
        }
    }
    Ok(if restored.is_empty() {
        Outcome::Skipped(format!(
            "namespace {} holds no backup copy",
            names::BACKUP_NAMESPACE
        ))
    } else if ctx.options.dry_run {
        Outcome::Done(format!("would restore {}", restored.join(", ")))
    } else {
        Outcome::Done(format!("restored {}", restored.join(", ")))
    })
}

/// Writes ConfigMap `name` into kyma-system from its backup copy and reads it back; returns
/// `namespace/name` of what was restored, `None` (with a warning) when there is no copy.
pub async fn restore_one(ctx: &Ctx, name: &str) -> Result<Option<String>> {
    let Some(copy) = configmaps::get(&ctx.client, names::BACKUP_NAMESPACE, name).await? else {
        tracing::warn!(copy = %format!("{}/{name}", names::BACKUP_NAMESPACE), "no backup copy; skipped");
        return Ok(None);
    };
    let original = configmaps::restored(&copy);
    let target = format!("{}/{name}", names::KYMA_SYSTEM);
    configmaps::put(
        &ctx.client,
        &original,
        ctx.options.dry_run,
        ctx.options.deadline,
    )
    .await?;
    if ctx.options.dry_run {
        ctx.plan(
            "restore",
            &format!(
                "would write ConfigMap {target} from the copy {}/{name}",
                names::BACKUP_NAMESPACE
            ),
        );
        return Ok(Some(target));
    }
    let back = configmaps::get(&ctx.client, names::KYMA_SYSTEM, name).await?;
    if !back
        .as_ref()
        .is_some_and(|b| configmaps::same_data(b, &copy))
    {
        return Err(Error::BackupMismatch {
            copy: format!("ConfigMap {target}"),
            source_object: format!("ConfigMap {}/{name}", names::BACKUP_NAMESPACE),
        });
    }
    tracing::info!(configmap = %target, "restored from backup");
    Ok(Some(target))
}
