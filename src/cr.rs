//! The ConnectivityProxy CR: finding it, and reading and writing the step markers on it.

use std::collections::BTreeMap;

use k8s_openapi::apiextensions_apiserver::pkg::apis::apiextensions::v1::CustomResourceDefinition;
use kube::api::{Api, DynamicObject, Patch};
use kube::core::{ApiResource, GroupVersionKind};
use kube::{Client, ResourceExt};
use serde_json::json;

use crate::error::{Context, Error, Result, is_not_found};
use crate::names::{self, markers};

/// A migration step, as marked on the CR.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, serde::Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum Marker {
    Migrated,
    BackedUp,
    Cleaned,
}

impl Marker {
    pub const ALL: [Marker; 3] = [Marker::Migrated, Marker::BackedUp, Marker::Cleaned];

    /// The key this tool writes.
    pub fn key(self) -> &'static str {
        match self {
            Marker::Migrated => markers::MIGRATED,
            Marker::BackedUp => markers::BACKED_UP,
            Marker::Cleaned => markers::CLEANED,
        }
    }

    /// Keys of earlier tools and hand-run instructions that count as well.
    pub fn alternative_keys(self) -> &'static [&'static str] {
        match self {
            Marker::Migrated => markers::MIGRATED_ALT,
            Marker::BackedUp => markers::BACKED_UP_ALT,
            Marker::Cleaned => markers::CLEANED_ALT,
        }
    }

    /// The key that marks this step done on `annotations`, if any.
    pub fn found_in(self, annotations: &BTreeMap<String, String>) -> Option<&'static str> {
        std::iter::once(self.key())
            .chain(self.alternative_keys().iter().copied())
            .find(|k| annotations.get(*k).is_some_and(|v| v == markers::TRUE))
    }
}

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

/// The key that marks `marker` done on the CR, if any.
pub fn marked(cr: &DynamicObject, marker: Marker) -> Option<&'static str> {
    marker.found_in(cr.annotations())
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
            format!(
                "setting {} on {}",
                set.iter().map(|m| m.key()).collect::<Vec<_>>().join(", "),
                display()
            )
        })
}
