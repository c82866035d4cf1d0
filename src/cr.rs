//! The ConnectivityProxy CR: finding it, and reading and writing the step markers on it.

use k8s_openapi::apiextensions_apiserver::pkg::apis::apiextensions::v1::CustomResourceDefinition;
use kube::api::{Api, DynamicObject, Patch};
use kube::core::{ApiResource, GroupVersionKind};
use kube::{Client, ResourceExt};
use serde_json::json;

use crate::error::{Context, Error, Result, is_not_found};
use crate::names::{self, markers};
use crate::step::Marker;

pub fn api_resource() -> ApiResource {
    ApiResource::from_gvk_with_plural(
        &GroupVersionKind::gvk(names::cr::GROUP, names::cr::VERSION, names::cr::KIND),
        names::cr::PLURAL,
    )
}

pub fn api(client: &Client) -> Api<DynamicObject> {
    Api::namespaced_with(client.clone(), names::KYMA_SYSTEM, &api_resource())
}

/// `ConnectivityProxy kyma-system/connectivity-proxy`, for messages.
pub fn display() -> String {
    format!(
        "{} {}/{}",
        names::cr::KIND,
        names::KYMA_SYSTEM,
        names::cr::NAME
    )
}

/// What the cluster has of the CR.
#[derive(Debug)]
pub enum Lookup {
    Found(Box<DynamicObject>),
    CrdMissing,
    CrMissing,
}

impl Lookup {
    /// The CR, or the error that migrate (which requires it) reports.
    pub fn required(self) -> Result<DynamicObject> {
        match self {
            Lookup::Found(cr) => Ok(*cr),
            Lookup::CrdMissing => Err(Error::CrdMissing {
                crd: names::cr::CRD_NAME.into(),
            }),
            Lookup::CrMissing => Err(Error::CrMissing {
                kind: names::cr::KIND.into(),
                namespace: names::KYMA_SYSTEM.into(),
                name: names::cr::NAME.into(),
            }),
        }
    }
}

/// Reads the CR; on 404 asks for the CRD (one more request, only then) to tell which is missing.
pub async fn lookup(client: &Client) -> Result<Lookup> {
    match api(client).get(names::cr::NAME).await {
        Ok(cr) => Ok(Lookup::Found(Box::new(cr))),
        Err(e) if is_not_found(&e) => {
            let crds: Api<CustomResourceDefinition> = Api::all(client.clone());
            let crd = crds
                .get_metadata_opt(names::cr::CRD_NAME)
                .await
                .context(|| format!("reading CustomResourceDefinition {}", names::cr::CRD_NAME))?;
            Ok(if crd.is_some() {
                Lookup::CrMissing
            } else {
                Lookup::CrdMissing
            })
        }
        Err(e) => Err(Error::Kube {
            action: format!("reading {}", display()),
            source: e,
        }),
    }
}

/// The key that sets `marker` on `cr`, if any (a step counts as its marker).
pub fn marked(cr: &DynamicObject, marker: impl Into<Marker>) -> Option<&'static str> {
    marker.into().key_in(cr.annotations())
}

/// Sets markers with a merge patch of the annotations alone: it cannot undo anyone else's change.
pub async fn set_markers(client: &Client, set: &[Marker], dry_run: bool) -> Result<DynamicObject> {
    let annotations: serde_json::Map<String, serde_json::Value> = set
        .iter()
        .map(|m| (m.key().to_string(), json!(markers::TRUE)))
        .collect();
    let patch = json!({ "metadata": { "annotations": annotations } });
    api(client)
        .patch(
            names::cr::NAME,
            &crate::client::patch_params(dry_run),
            &Patch::Merge(&patch),
        )
        .await
        .context(|| {
            let keys: Vec<&str> = set.iter().map(|m| m.key()).collect();
            format!("setting {} on {}", keys.join(", "), display())
        })
}
