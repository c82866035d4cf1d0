//! rollback: undoes clean from its archive once the module is disabled, so the legacy
//! Connectivity Proxy is back in seconds instead of after the Kyma Control Plane's next pass.

use std::collections::BTreeSet;

use futures::{StreamExt, TryStreamExt, stream};
use k8s_openapi::api::apps::v1::Deployment;
use k8s_openapi::apiextensions_apiserver::pkg::apis::apiextensions::v1::CustomResourceDefinition;
use kube::api::{Api, DynamicObject, PartialObjectMeta};
use serde_json::Value;

mod mappings;
pub mod prepare;

use super::restore::restore_one;
use super::{Ctx, Outcome};
use crate::access;
use crate::archive;
use crate::client::post_params;
use crate::diff::first_difference;
use crate::error::{Context, Error, Result, is_already_exists};
use crate::legacy;
use crate::names::rbac::{self, Permission};
use crate::names::{self, LEGACY_OBJECTS, ROLLBACK_ORDER, config_maps};
use crate::service_mappings;

/// Requests in flight at once.
const CONCURRENCY: usize = service_mappings::CONCURRENCY;

/// An archived object and where this cluster serves its kind.
struct Target {
    object: Value,
    api: Api<DynamicObject>,
    name: String,
    display: String,
    stage: usize,
    /// One of the two user ConfigMaps, which come back from their backup copies.
    user_config: Option<&'static str>,
}

pub async fn run(ctx: &Ctx) -> Result<Outcome> {
    // Before anything is read or written (a dry run too: the API server authorizes its
    // server-side dry runs like real writes).
    permitted(ctx, rbac::ROLLBACK_NEEDS).await?;
    // The archive and discovery are independent reads: one round trip for both.
    let (archived, served) = futures::try_join!(
        archive::read(&ctx.client),
        legacy::resolve(&ctx.client, LEGACY_OBJECTS)
    )?;
    let Some(archived) = archived else {
        return Err(Error::NoArchive {
            location: archive::location(),
        });
    };
    let (targets, unserved) = resolve(ctx, &archived.objects, &served);
    let found = read_cluster(ctx, &targets, &archived.service_mappings).await?;
    refuse_while_installed(&targets, &found)?;
    // Before the legacy webhook is back: it would judge these writes before its Pods can answer.
    let mappings = mappings::restore(ctx, &archived.service_mappings, found.crd).await?;
    let objects = recreate_in_order(ctx, &targets, &found.existing).await?;
    if ctx.options.dry_run {
        for what in &objects.recreated {
            ctx.plan("rollback", &format!("would recreate {what}"));
        }
    } else {
        verify(&targets, &objects.recreated).await?;
    }
    let summary = closing_line(ctx, &objects, &unserved, &mappings);
    if ctx.options.dry_run {
        ctx.plan("rollback", &summary);
    }
    Ok(Outcome::Done(summary))
}

/// What is in the cluster now: the module's operator, each archived name, and the
/// ServiceMapping CRD.
struct Found {
    operator: bool,
    /// For each target, in order: its object, if one is at its name.
    existing: Vec<Option<PartialObjectMeta<DynamicObject>>>,
    crd: Option<CustomResourceDefinition>,
}

/// Reads all of it in one round trip.
async fn read_cluster(
    ctx: &Ctx,
    targets: &[Target],
    mappings: &archive::MappingsArchive,
) -> Result<Found> {
    let operator = async {
        let api: Api<Deployment> = Api::namespaced(ctx.client.clone(), names::KYMA_SYSTEM);
        api.get_metadata_opt(names::OPERATOR_DEPLOYMENT)
            .await
            .context(|| {
                format!(
                    "reading Deployment {}/{}",
                    names::KYMA_SYSTEM,
                    names::OPERATOR_DEPLOYMENT
                )
            })
    };
    let existing = stream::iter(targets)
        .map(|t| async move {
            t.api
                .get_metadata_opt(&t.name)
                .await
                .context(|| format!("reading {}", t.display))
        })
        .buffered(legacy::LEGACY_CONCURRENCY)
        .try_collect::<Vec<_>>();
    // The ServiceMapping CRD only when there is anything to un-adopt.
    let crd = async {
        if mappings.items.is_empty() && mappings.crd.is_none() && mappings.crd_object.is_none() {
            return Ok(None);
        }
        service_mappings::crd(&ctx.client).await
    };
    let (operator, existing, crd) = futures::try_join!(operator, existing, crd)?;
    Ok(Found {
        operator: operator.is_some(),
        existing,
        crd,
    })
}

/// rollback refuses while the module is still installed: its operator Deployment exists, or an
/// archived name carries the operator's label.
fn refuse_while_installed(targets: &[Target], found: &Found) -> Result<()> {
    let mut blockers = Vec::new();
    if found.operator {
        blockers.push(format!(
            "Deployment {}/{} (the new operator) exists",
            names::KYMA_SYSTEM,
            names::OPERATOR_DEPLOYMENT
        ));
    }
    for (t, object) in targets.iter().zip(&found.existing) {
        if object
            .as_ref()
            .is_some_and(|m| legacy::has_operator_label(&m.metadata))
        {
            blockers.push(format!(
                "{} carries the new operator's label {}={}",
                t.display,
                names::OPERATOR_LABEL,
                names::OPERATOR_LABEL_VALUE
            ));
        }
    }
    if blockers.is_empty() {
        Ok(())
    } else {
        Err(Error::RollbackRefused {
            blockers: blockers.join("; "),
        })
    }
}

/// What rollback did to the legacy objects, each named as `Kind namespace/name`, sorted.
#[derive(Default)]
struct Objects {
    recreated: Vec<String>,
    /// There already, so left as they were.
    left: Vec<String>,
    /// The user ConfigMaps, from their backup copies.
    restored: Vec<String>,
}

/// Recreates the missing legacy objects stage by stage (ROLLBACK_ORDER), each stage at once.
async fn recreate_in_order(
    ctx: &Ctx,
    targets: &[Target],
    existing: &[Option<PartialObjectMeta<DynamicObject>>],
) -> Result<Objects> {
    let mut objects = Objects::default();
    for stage in 0..ROLLBACK_ORDER.len() {
        let in_stage: Vec<(&Target, bool)> = targets
            .iter()
            .zip(existing)
            .filter(|(t, _)| t.stage == stage)
            .map(|(t, found)| (t, found.is_some()))
            .collect();
        recreate_stage(ctx, in_stage, &mut objects).await?;
    }
    objects.recreated.sort();
    objects.left.sort();
    Ok(objects)
}

/// One stage: the user configuration as `restore` writes it, from its verified copies (both at
/// once); every other missing object from the archive.
async fn recreate_stage(
    ctx: &Ctx,
    in_stage: Vec<(&Target, bool)>,
    objects: &mut Objects,
) -> Result<()> {
    let mut from_copy = BTreeSet::new();
    let user_config: Vec<&'static str> =
        in_stage.iter().filter_map(|(t, _)| t.user_config).collect();
    let from_copies = futures::future::try_join_all(
        user_config
            .iter()
            .map(|name| async move { restore_one(ctx, name).await }),
    )
    .await?;
    for (name, target) in user_config.into_iter().zip(from_copies) {
        if let Some(target) = target {
            from_copy.insert(name);
            objects.restored.push(format!("ConfigMap {target}"));
        }
    }
    let results: Vec<(String, bool)> = stream::iter(in_stage)
        .filter(|(t, _)| {
            futures::future::ready(t.user_config.is_none_or(|n| !from_copy.contains(n)))
        })
        .map(|(t, exists)| async move {
            if exists {
                return Ok((t.display.clone(), false));
            }
            Ok((t.display.clone(), recreate(ctx, t).await?))
        })
        .buffer_unordered(CONCURRENCY)
        .try_collect()
        .await?;
    for (what, created) in results {
        if created {
            objects.recreated.push(what);
        } else {
            tracing::info!(object = %what, "exists already; left as it is");
            objects.left.push(what);
        }
    }
    Ok(())
}

/// Names only for what needs a look: objects left as found, kinds skipped, mappings changed.
fn closing_line(
    ctx: &Ctx,
    objects: &Objects,
    unserved: &[String],
    mappings: &mappings::Restored,
) -> String {
    let would =
        |done: &str, planned: &str| if ctx.options.dry_run { planned } else { done }.to_string();
    format!(
        "{} {} legacy objects; {} left as they were{}; {} skipped as not served{}; {}; {} {}",
        would("recreated", "would recreate"),
        objects.recreated.len(),
        objects.left.len(),
        list(&objects.left),
        unserved.len(),
        list(unserved),
        mappings_summary(mappings, &would),
        would("restored", "would restore"),
        if objects.restored.is_empty() {
            "no ConfigMap from the backup (no copy)".to_string()
        } else {
            format!("{} from the backup", objects.restored.join(", "))
        },
    )
}

/// What rollback did to the ServiceMappings and their CRD, for the closing line.
fn mappings_summary(m: &mappings::Restored, would: &impl Fn(&str, &str) -> String) -> String {
    let crd = |action: mappings::CrdAction| {
        if m.crd == action {
            " and their CRD"
        } else {
            ""
        }
    };
    let mut text = format!(
        "{} {} ServiceMappings{}, {} {} ServiceMappings{}",
        would("un-adopted", "would un-adopt"),
        m.unadopted,
        crd(mappings::CrdAction::PutBack),
        would("recreated", "would recreate"),
        m.recreated,
        crd(mappings::CrdAction::Recreated),
    );
    if !m.changed.is_empty() {
        text.push_str(&format!(
            ", {} changed since the archive and left as they are{}",
            m.changed.len(),
            list(&first_few(&m.changed))
        ));
    }
    if !m.names_only.is_empty() {
        text.push_str(&format!(
            ", {} gone that the archive holds by name only (written by an older version)",
            m.names_only.len()
        ));
    }
    text
}

/// The first ten of a long list, and how many more: a closing line stays one line.
fn first_few(items: &[String]) -> Vec<String> {
    const SHOWN: usize = 10;
    let mut few: Vec<String> = items.iter().take(SHOWN).cloned().collect();
    if items.len() > SHOWN {
        few.push(format!("{} more", items.len() - SHOWN));
    }
    few
}

/// Fails, naming the manifest that grants them, unless this identity holds every permission of
/// `needs`.
async fn permitted(ctx: &Ctx, needs: &[Permission]) -> Result<()> {
    let missing = access::missing(&ctx.client, needs).await?;
    if missing.is_empty() {
        return Ok(());
    }
    Err(Error::RollbackNotPermitted {
        missing: missing.join(", "),
        manifest: rbac::ROLLBACK_MANIFEST,
    })
}

/// ` (a, b)` for a non-empty list.
fn list(items: &[String]) -> String {
    if items.is_empty() {
        String::new()
    } else {
        format!(" ({})", items.join(", "))
    }
}

/// Where each archived object's kind is served now; kinds no longer served are reported.
fn resolve(
    ctx: &Ctx,
    objects: &[Value],
    served: &[Option<kube::core::ApiResource>],
) -> (Vec<Target>, Vec<String>) {
    let mut targets = Vec::new();
    let mut unserved = Vec::new();
    for object in objects {
        let archive::ObjectKey {
            group,
            kind,
            namespace,
            name,
        } = archive::key_of(object);
        let what = archive::display(object);
        let row = LEGACY_OBJECTS.iter().zip(served).find(|(r, _)| {
            r.group == group
                && r.kind == kind
                && r.namespace.unwrap_or("") == namespace
                && r.names.contains(&name.as_str())
        });
        let Some((row, ar)) = row else {
            tracing::warn!(object = %what, "not an object of the legacy installation; not recreated");
            unserved.push(what);
            continue;
        };
        let Some(ar) = ar else {
            tracing::warn!(object = %what, "its kind is no longer served by this cluster; skipped");
            unserved.push(what);
            continue;
        };
        let mut object = object.clone();
        if object["apiVersion"] != ar.api_version.as_str() {
            tracing::warn!(object = %what, archived = %object["apiVersion"], served = %ar.api_version, "recreated at the version the cluster serves now");
            object["apiVersion"] = ar.api_version.clone().into();
        }
        let api = match row.namespace {
            Some(ns) => Api::namespaced_with(ctx.client.clone(), ns, ar),
            None => Api::all_with(ctx.client.clone(), ar),
        };
        let stage = ROLLBACK_ORDER
            .iter()
            .position(|kinds| kinds.contains(&kind.as_str()))
            .unwrap_or(ROLLBACK_ORDER.len() - 1);
        let user_config = (row.kind == "ConfigMap" && row.namespace == Some(names::KYMA_SYSTEM))
            .then(|| config_maps::USER_CONFIG.into_iter().find(|n| *n == name))
            .flatten();
        targets.push(Target {
            object,
            api,
            name,
            display: what,
            stage,
            user_config,
        });
    }
    (targets, unserved)
}

/// Creates an archived object; `false` when it exists already (created in the meantime).
async fn recreate(ctx: &Ctx, t: &Target) -> Result<bool> {
    let object: DynamicObject =
        serde_json::from_value(t.object.clone()).map_err(|e| Error::Archive {
            reason: format!("{} in the archive is not an object: {e}", t.display),
        })?;
    match t
        .api
        .create(&post_params(ctx.options.dry_run), &object)
        .await
    {
        Ok(_) => {
            if !ctx.options.dry_run {
                tracing::info!(object = %t.display, "recreated");
            }
            Ok(true)
        }
        Err(e) if is_already_exists(&e) => Ok(false),
        Err(e) => Err(e).context(|| format!("recreating {}", t.display)),
    }
}

/// Reads every recreated object back: it must hold everything the archive holds of it.
async fn verify(targets: &[Target], recreated: &[String]) -> Result<()> {
    stream::iter(targets.iter().filter(|t| recreated.contains(&t.display)))
        .map(|t| async move {
            let back = t
                .api
                .get_opt(&t.name)
                .await
                .context(|| format!("reading {} back", t.display))?;
            let back = back
                .map(|b| serde_json::to_value(b).unwrap_or(Value::Null))
                .unwrap_or(Value::Null);
            match first_difference("", &t.object, &back) {
                None => Ok(()),
                Some(difference) => Err(Error::RollbackMismatch {
                    object: t.display.clone(),
                    difference,
                }),
            }
        })
        .buffer_unordered(CONCURRENCY)
        .try_collect::<Vec<()>>()
        .await?;
    Ok(())
}
