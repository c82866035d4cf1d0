//! The ServiceMappings and their CRD: where they are served, whether the new operator adopted
//! them, and listing and patching all of them, which clean, rollback and status share.

use futures::{SinkExt, Stream, StreamExt, TryStreamExt, stream};
use k8s_openapi::apiextensions_apiserver::pkg::apis::apiextensions::v1::CustomResourceDefinition;
use kube::Client;
use kube::api::{Api, DynamicObject, ListParams, Patch};
use kube::core::{ApiResource, GroupVersionKind, ObjectMeta};
use serde_json::{Value, json};

use crate::client::patch_params;
use crate::error::{Context, Result, is_not_found};
use crate::names::{self, service_mappings as sm};

/// ServiceMappings fetched per list request.
pub const PAGE_SIZE: u32 = 500;
/// Writes in flight at once: enough to keep the API server busy, few enough not to be throttled.
pub const CONCURRENCY: usize = 16;

/// The ServiceMapping CRD, if installed.
pub async fn crd(client: &Client) -> Result<Option<CustomResourceDefinition>> {
    Api::<CustomResourceDefinition>::all(client.clone())
        .get_opt(sm::CRD_NAME)
        .await
        .context(|| format!("reading CustomResourceDefinition {}", sm::CRD_NAME))
}

/// Where the ServiceMappings are served: the storage version if served, else the first served
/// one; `None` when the CRD serves no version.
pub fn resource(crd: &CustomResourceDefinition) -> Option<ApiResource> {
    let versions = &crd.spec.versions;
    let version = versions
        .iter()
        .find(|v| v.storage && v.served)
        .or_else(|| versions.iter().find(|v| v.served))?;
    Some(ApiResource::from_gvk_with_plural(
        &GroupVersionKind::gvk(&crd.spec.group, &version.name, &crd.spec.names.kind),
        &crd.spec.names.plural,
    ))
}

/// Whether an object already carries the new operator's annotations and label.
pub fn is_adopted(meta: &ObjectMeta) -> bool {
    let ann = |k: &str| {
        meta.annotations
            .as_ref()
            .and_then(|a| a.get(k))
            .map(String::as_str)
    };
    let label = meta
        .labels
        .as_ref()
        .and_then(|l| l.get(names::OPERATOR_LABEL))
        .map(String::as_str);
    ann(sm::PRIMARY_NAME_ANNOTATION) == Some(names::cr::NAME)
        && ann(sm::PRIMARY_NAMESPACE_ANNOTATION) == Some(names::KYMA_SYSTEM)
        && label == Some(names::OPERATOR_LABEL_VALUE)
}

/// The merge patch that adopts an object for the new operator.
pub fn adoption_patch() -> Value {
    json!({
        "metadata": {
            "annotations": {
                sm::PRIMARY_NAME_ANNOTATION: names::cr::NAME,
                sm::PRIMARY_NAMESPACE_ANNOTATION: names::KYMA_SYSTEM,
            },
            "labels": { names::OPERATOR_LABEL: names::OPERATOR_LABEL_VALUE },
        }
    })
}

/// What [`list`] hands on.
pub enum Listed {
    /// The next page of ServiceMappings, in full: clean archives them, rollback and status
    /// compare them with the archive.
    Page(Vec<DynamicObject>),
    /// The continue token expired during a long list: forget the pages so far, the list starts
    /// over.
    Restart,
}

/// Lists every ServiceMapping in pages, handing each to `on`.
pub async fn list(client: &Client, ar: &ApiResource, mut on: impl FnMut(Listed)) -> Result<()> {
    pages(client, ar)
        .try_for_each(|listed| {
            on(listed);
            futures::future::ready(Ok(()))
        })
        .await
}

/// Every ServiceMapping, page by page; a [`Listed::Restart`] when the continue token
/// expired and the list starts over.
fn pages<'a>(client: &'a Client, ar: &'a ApiResource) -> impl Stream<Item = Result<Listed>> + 'a {
    let all: Api<DynamicObject> = Api::all_with(client.clone(), ar);
    // The state: the continue token, or `None` once the last page is handed on.
    stream::try_unfold(Some(None::<String>), move |state| {
        let all = all.clone();
        async move {
            let Some(token) = state else {
                return Ok(None);
            };
            let mut lp = ListParams::default().limit(PAGE_SIZE);
            if let Some(t) = &token {
                lp = lp.continue_token(t);
            }
            match all.list(&lp).await {
                Ok(listed) => {
                    let next = listed.metadata.continue_.filter(|t| !t.is_empty());
                    Ok(Some((Listed::Page(listed.items), next.map(Some))))
                }
                Err(kube::Error::Api(s)) if s.code == 410 && token.is_some() => {
                    Ok(Some((Listed::Restart, Some(None))))
                }
                Err(e) => Err(e).context(|| format!("listing {}", sm::PLURAL)),
            }
        }
    })
}

/// One ServiceMapping to write: namespace (for a namespaced CRD), name, merge patch.
pub type Write = (Option<String>, String, Value);

/// Writes the list may run ahead of the patches by: two pages, so that the next page is on its
/// way while the patches of this one go out, and memory stays bounded at any N.
const LIST_AHEAD: usize = 2 * PAGE_SIZE as usize;

/// Lists every ServiceMapping and merge-patches each one `select` picks while the next pages are
/// still arriving, so that the list costs no time of its own; returns how many were written.
/// After a restarted list `select` sees mappings again whose patch went out already (some still
/// on their way): it must not pick one twice.
pub async fn list_and_patch(
    client: &Client,
    ar: &ApiResource,
    mut select: impl FnMut(&DynamicObject) -> Option<Write>,
    dry_run: bool,
    doing: &str,
) -> Result<usize> {
    let (mut tx, rx) = futures::channel::mpsc::channel::<Write>(LIST_AHEAD);
    let lister = async move {
        let mut pages = std::pin::pin!(pages(client, ar));
        while let Some(listed) = pages.try_next().await? {
            let Listed::Page(page) = listed else {
                continue;
            };
            for write in page.iter().filter_map(&mut select) {
                if tx.send(write).await.is_err() {
                    // The patches stopped at an error of their own, which is the one reported.
                    return Ok(());
                }
            }
        }
        Ok(())
    };
    let (_, written) = futures::try_join!(lister, patch_each(client, ar, rx, dry_run, doing))?;
    Ok(written)
}

/// Merge-patches each ServiceMapping's metadata with bounded concurrency; returns how many were
/// written (one deleted since it was listed has nothing left to change). `doing` names the
/// change in errors ("adopting").
pub async fn patch_each(
    client: &Client,
    ar: &ApiResource,
    writes: impl Stream<Item = Write>,
    dry_run: bool,
    doing: &str,
) -> Result<usize> {
    let pp = patch_params(dry_run);
    writes
        .map(|(namespace, name, patch)| {
            let api: Api<DynamicObject> = match &namespace {
                Some(ns) => Api::namespaced_with(client.clone(), ns, ar),
                None => Api::all_with(client.clone(), ar),
            };
            let pp = &pp;
            async move {
                // Only the metadata comes back: the answer is not needed, so keep it small.
                match api.patch_metadata(&name, pp, &Patch::Merge(&patch)).await {
                    Ok(_) => Ok(1usize),
                    Err(e) if is_not_found(&e) => Ok(0),
                    Err(e) => Err(e).context(|| {
                        format!(
                            "{doing} {} {}{name}",
                            sm::KIND,
                            namespace.map(|n| format!("{n}/")).unwrap_or_default()
                        )
                    }),
                }
            }
        })
        .buffer_unordered(CONCURRENCY)
        .try_fold(0usize, |acc, n| async move { Ok(acc + n) })
        .await
}
