//! The legacy installation: whether it is there, and where its objects (and the kinds the
//! module's operator needs) are served.

use std::collections::{BTreeMap, BTreeSet};

use k8s_openapi::Resource as _;
use k8s_openapi::api::apps::v1::StatefulSet;
use k8s_openapi::api::core::v1::ConfigMap;
use kube::Client;
use kube::api::{Api, DynamicObject};
use kube::core::ObjectMeta;
use kube::core::{ApiResource, GroupVersionKind};

use crate::error::{Context, Result};
use crate::names::{self, LEGACY_OBJECTS, LegacyObjects, config_maps, legacy_marker};

/// Requests in flight at once for the objects of the legacy table (35 on a full installation):
/// clean reads and deletes them, and rollback reads the archived ones, each in one round trip
/// with all the others.
pub const LEGACY_CONCURRENCY: usize = 64;

/// Reads each of `objects` for which `wanted` holds (`None` for the others and for one that is
/// absent), [`LEGACY_CONCURRENCY`] at a time, in their order.
pub async fn read_each(
    objects: impl IntoIterator<Item = LegacyObject>,
    wanted: impl Fn(&LegacyObject) -> bool,
) -> Result<Vec<(LegacyObject, Option<DynamicObject>)>> {
    use futures::{StreamExt, TryStreamExt, stream};
    let wanted = &wanted;
    stream::iter(objects)
        .map(|o| async move {
            if !wanted(&o) {
                return Ok((o, None));
            }
            let read = o
                .api
                .get_opt(o.name)
                .await
                .context(|| format!("reading {}", o.display))?;
            Ok((o, read))
        })
        .buffered(LEGACY_CONCURRENCY)
        .try_collect()
        .await
}

/// A legacy installation that the reconciler manages.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct LegacyInstall {
    /// The `chart` label of the StatefulSet, e.g. `connectivity-proxy-2.9.3`.
    pub chart: Option<String>,
}

impl LegacyInstall {
    pub fn is_expected_version(&self) -> bool {
        self.chart.as_deref() == Some(legacy_marker::EXPECTED_CHART)
    }
}

/// The StatefulSet `kyma-system/connectivity-proxy` with the reconciler's annotation or label,
/// or `None` when it is absent or not the reconciler's.
pub async fn detect(client: &Client) -> Result<Option<LegacyInstall>> {
    let api: Api<StatefulSet> = Api::namespaced(client.clone(), names::KYMA_SYSTEM);
    let meta = api
        .get_metadata_opt(legacy_marker::STATEFULSET)
        .await
        .context(|| {
            format!(
                "reading StatefulSet {}/{}",
                names::KYMA_SYSTEM,
                legacy_marker::STATEFULSET
            )
        })?;
    Ok(meta.and_then(|m| installation(&m.metadata)))
}

/// The installation that the marker StatefulSet's metadata shows: `None` when it is not the
/// reconciler's.
pub fn installation(meta: &ObjectMeta) -> Option<LegacyInstall> {
    let label = |key: &str| meta.labels.as_ref().and_then(|l| l.get(key));
    let managed = meta
        .annotations
        .as_ref()
        .is_some_and(|a| a.contains_key(legacy_marker::DISCLAIMER_ANNOTATION))
        || label(legacy_marker::MANAGED_BY_LABEL).map(String::as_str)
            == Some(legacy_marker::MANAGED_BY_VALUE);
    managed.then(|| LegacyInstall {
        chart: label(legacy_marker::CHART_LABEL).cloned(),
    })
}

/// What the cluster serves, from one aggregated-discovery request (`/apis`; the core group is
/// served everywhere and not in it).
#[derive(Debug, Default, Clone)]
pub struct Served {
    /// The preferred version of each served kind, by (group, kind).
    versions: BTreeMap<(String, String), String>,
    /// Each served resource of a group as a CRD names it: `plural.group`.
    resources: BTreeSet<String>,
}

impl Served {
    /// Where each row is served: `None` for a kind the cluster does not serve.
    pub fn resolve(&self, rows: &[LegacyObjects]) -> Vec<Option<ApiResource>> {
        rows.iter()
            .map(|r| {
                let version = match r.version {
                    Some(v) => Some(v.to_string()),
                    None => self
                        .versions
                        .get(&(r.group.to_string(), r.kind.to_string()))
                        .cloned(),
                };
                version.map(|v| {
                    ApiResource::from_gvk_with_plural(
                        &GroupVersionKind::gvk(r.group, &v, r.kind),
                        r.plural,
                    )
                })
            })
            .collect()
    }

    /// Whether the resource a CRD of this name defines (`plural.group`) is served.
    pub fn serves(&self, crd_name: &str) -> bool {
        self.resources.contains(crd_name)
    }
}

/// Asks the API server what it serves: one aggregated-discovery request.
pub async fn discover(client: &Client) -> Result<Served> {
    let groups = client
        .list_api_groups_aggregated()
        .await
        .context(|| "discovering the API groups the cluster serves".into())?;
    let mut served = Served::default();
    for g in groups.items {
        let group = g.metadata.and_then(|m| m.name).unwrap_or_default();
        // Versions come in the server's order of preference: keep the first that serves a kind.
        for v in g.versions {
            let Some(version) = v.version else { continue };
            for r in v.resources {
                if let Some(plural) = &r.resource {
                    served.resources.insert(format!("{plural}.{group}"));
                }
                if let Some(kind) = r.response_kind.and_then(|k| k.kind) {
                    served
                        .versions
                        .entry((group.clone(), kind))
                        .or_insert_with(|| version.clone());
                }
            }
        }
    }
    Ok(served)
}

/// Where each row of the legacy table is served on this cluster: one aggregated-discovery
/// request, and only when a row needs it. `None` for a kind the cluster does not serve.
pub async fn resolve(client: &Client, rows: &[LegacyObjects]) -> Result<Vec<Option<ApiResource>>> {
    let served = if rows.iter().any(|r| r.version.is_none()) {
        discover(client).await?
    } else {
        Served::default()
    };
    Ok(served.resolve(rows))
}

/// One object of the legacy table, at the version this cluster serves its kind.
pub struct LegacyObject {
    pub api: Api<DynamicObject>,
    pub row: &'static LegacyObjects,
    pub name: &'static str,
    /// `Kind namespace/name`, for logs and messages.
    pub display: String,
}

impl LegacyObject {
    /// Whether this is one of the user-configuration ConfigMaps that backup copies.
    pub fn is_user_config(&self) -> bool {
        is_user_config(self.row, self.name)
    }

    /// Whether this is the StatefulSet whose metadata tells whether the installation is there.
    pub fn is_marker(&self) -> bool {
        is_marker(self.row, self.name)
    }
}

fn is_user_config(row: &LegacyObjects, name: &str) -> bool {
    row.group == ConfigMap::GROUP
        && row.kind == ConfigMap::KIND
        && row.namespace == Some(names::KYMA_SYSTEM)
        && config_maps::USER_CONFIG.contains(&name)
}

fn is_marker(row: &LegacyObjects, name: &str) -> bool {
    row.group == StatefulSet::GROUP
        && row.kind == StatefulSet::KIND
        && row.namespace == Some(names::KYMA_SYSTEM)
        && name == legacy_marker::STATEFULSET
}

/// The legacy table's objects on this cluster, in table order, and the kinds it does not serve
/// (as `Kind.group`).
pub async fn objects(client: &Client) -> Result<(Vec<LegacyObject>, Vec<String>)> {
    let served = discover(client).await?;
    Ok(objects_of(client, &served, LEGACY_OBJECTS))
}

/// The objects of `table` on this cluster as `served` says, in table order, and the kinds of
/// the table it does not serve (as `Kind.group`).
pub fn objects_of(
    client: &Client,
    served: &Served,
    table: &'static [LegacyObjects],
) -> (Vec<LegacyObject>, Vec<String>) {
    let mut objects = Vec::new();
    let mut not_served = Vec::new();
    for (row, ar) in table.iter().zip(served.resolve(table)) {
        let Some(ar) = ar else {
            not_served.push(format!("{}.{}", row.kind, row.group));
            continue;
        };
        for name in row.names {
            let (api, prefix) = match row.namespace {
                Some(ns) => (
                    Api::namespaced_with(client.clone(), ns, &ar),
                    format!("{ns}/"),
                ),
                None => (Api::all_with(client.clone(), &ar), String::new()),
            };
            objects.push(LegacyObject {
                api,
                row,
                name,
                display: format!("{} {prefix}{name}", row.kind),
            });
        }
    }
    (objects, not_served)
}

/// Whether the object `name` of `row` (a row of any table) is one of the legacy table's: the
/// same kind, namespace and name.
pub fn in_legacy_table(row: &LegacyObjects, name: &str) -> bool {
    in_table(LEGACY_OBJECTS, row, name)
}

/// Whether the object `name` of `row` (a row of any table) is one of `table`'s.
pub fn in_table(table: &[LegacyObjects], row: &LegacyObjects, name: &str) -> bool {
    table.iter().any(|l| {
        l.group == row.group
            && l.kind == row.kind
            && l.namespace == row.namespace
            && l.names.contains(&name)
    })
}

/// Whether an object carries the new operator's label: it belongs to the module, and is never
/// deleted.
pub fn has_operator_label(meta: &ObjectMeta) -> bool {
    meta.labels
        .as_ref()
        .and_then(|l| l.get(names::OPERATOR_LABEL))
        .map(String::as_str)
        == Some(names::OPERATOR_LABEL_VALUE)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn table() -> impl Iterator<Item = (&'static LegacyObjects, &'static str)> {
        LEGACY_OBJECTS
            .iter()
            .flat_map(|row| row.names.iter().map(move |name| (row, *name)))
    }

    /// status reads these among the legacy objects and nowhere else: each must be in the table
    /// exactly once, at a version every cluster serves.
    #[test]
    fn the_marker_and_the_user_config_maps_are_in_the_legacy_table_once() {
        let markers: Vec<_> = table().filter(|(r, n)| is_marker(r, n)).collect();
        assert_eq!(markers.len(), 1);
        assert!(markers[0].0.version.is_some());
        for name in config_maps::USER_CONFIG {
            let rows: Vec<_> = table()
                .filter(|(r, n)| *n == name && is_user_config(r, n))
                .collect();
            assert_eq!(rows.len(), 1, "{name}");
            assert!(rows[0].0.version.is_some(), "{name}");
        }
    }

    #[test]
    fn the_installation_is_the_reconcilers_by_annotation_or_label() {
        let meta = |labels: &[(&str, &str)], annotations: &[(&str, &str)]| ObjectMeta {
            labels: Some(
                labels
                    .iter()
                    .map(|(k, v)| (k.to_string(), v.to_string()))
                    .collect(),
            ),
            annotations: Some(
                annotations
                    .iter()
                    .map(|(k, v)| (k.to_string(), v.to_string()))
                    .collect(),
            ),
            ..Default::default()
        };
        let chart = (legacy_marker::CHART_LABEL, legacy_marker::EXPECTED_CHART);
        let by_label = meta(
            &[
                (
                    legacy_marker::MANAGED_BY_LABEL,
                    legacy_marker::MANAGED_BY_VALUE,
                ),
                chart,
            ],
            &[],
        );
        assert_eq!(
            installation(&by_label).and_then(|i| i.chart),
            Some(legacy_marker::EXPECTED_CHART.to_string())
        );
        let by_annotation = meta(&[], &[(legacy_marker::DISCLAIMER_ANNOTATION, "x")]);
        assert_eq!(
            installation(&by_annotation),
            Some(LegacyInstall { chart: None })
        );
        let someone_elses = meta(&[chart, (legacy_marker::MANAGED_BY_LABEL, "Helm")], &[]);
        assert_eq!(installation(&someone_elses), None);
    }
}
