//! The two user-configuration ConfigMaps: copies for the backup, and back again for restore.

use std::collections::BTreeMap;

use k8s_openapi::api::core::v1::ConfigMap;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta;
use kube::api::Api;
use kube::{Client, ResourceExt};

use crate::conflicts;
use crate::error::{Context, Result};
use crate::names::{self, backup};

pub fn api(client: &Client, namespace: &str) -> Api<ConfigMap> {
    Api::namespaced(client.clone(), namespace)
}

pub async fn get(client: &Client, namespace: &str, name: &str) -> Result<Option<ConfigMap>> {
    api(client, namespace)
        .get_opt(name)
        .await
        .context(|| format!("reading ConfigMap {namespace}/{name}"))
}

/// Data and binary data equal (an absent map counts as empty).
pub fn same_data(a: &ConfigMap, b: &ConfigMap) -> bool {
    let empty_s = BTreeMap::new();
    let empty_b = BTreeMap::new();
    a.data.as_ref().unwrap_or(&empty_s) == b.data.as_ref().unwrap_or(&empty_s)
        && a.binary_data.as_ref().unwrap_or(&empty_b) == b.binary_data.as_ref().unwrap_or(&empty_b)
}

/// Same name, data, binary data, labels and annotations, without server-owned metadata.
fn portable(src: &ConfigMap, namespace: &str) -> ConfigMap {
    ConfigMap {
        metadata: ObjectMeta {
            name: src.metadata.name.clone(),
            namespace: Some(namespace.to_string()),
            labels: src.metadata.labels.clone(),
            annotations: src.metadata.annotations.clone(),
            ..Default::default()
        },
        data: src.data.clone(),
        binary_data: src.binary_data.clone(),
        immutable: None,
    }
}

/// The backup copy of `src`, recording where it came from and when.
pub fn backup_copy(src: &ConfigMap, at: jiff::Timestamp) -> ConfigMap {
    let mut copy = portable(src, names::BACKUP_NAMESPACE);
    let annotations = copy.metadata.annotations.get_or_insert_with(BTreeMap::new);
    annotations.insert(
        backup::SOURCE_ANNOTATION.into(),
        format!("{}/{}", src.namespace().unwrap_or_default(), src.name_any()),
    );
    annotations.insert(
        backup::SOURCE_UID_ANNOTATION.into(),
        src.uid().unwrap_or_default(),
    );
    annotations.insert(
        backup::SOURCE_RV_ANNOTATION.into(),
        src.resource_version().unwrap_or_default(),
    );
    annotations.insert(backup::TIME_ANNOTATION.into(), at.to_string());
    copy.metadata
        .labels
        .get_or_insert_with(BTreeMap::new)
        .insert(backup::LABEL.into(), "true".into());
    copy
}

/// The ConfigMap as it was before the migration: the backup's own bookkeeping removed.
pub fn restored(copy: &ConfigMap) -> ConfigMap {
    let mut out = portable(copy, names::KYMA_SYSTEM);
    if let Some(a) = out.metadata.annotations.as_mut() {
        for key in backup::ALL_ANNOTATIONS {
            a.remove(key);
        }
    }
    if let Some(l) = out.metadata.labels.as_mut() {
        l.remove(backup::LABEL);
    }
    out.metadata.annotations = out.metadata.annotations.filter(|a| !a.is_empty());
    out.metadata.labels = out.metadata.labels.filter(|l| !l.is_empty());
    out
}

/// Creates `cm`, or replaces what has its name: the result holds exactly `cm`'s content. An
/// immutable ConfigMap cannot be updated: it is replaced by delete and create.
pub async fn put(
    client: &Client,
    cm: &ConfigMap,
    dry_run: bool,
    deadline: tokio::time::Instant,
) -> Result<ConfigMap> {
    let namespace = cm.namespace().unwrap_or_default();
    let display = format!("ConfigMap {namespace}/{}", cm.name_any());
    let pp = crate::client::post_params(dry_run);
    let immutable = |existing: &ConfigMap| existing.immutable == Some(true);
    conflicts::create_or_replace(
        &api(client, &namespace),
        cm,
        &pp,
        deadline,
        immutable,
        &display,
    )
    .await
}

#[cfg(test)]
mod tests {
    use super::*;

    fn source() -> ConfigMap {
        let mut cm = ConfigMap::default();
        cm.metadata.name = Some("connectivity-proxy".into());
        cm.metadata.namespace = Some("kyma-system".into());
        cm.metadata.uid = Some("u1".into());
        cm.metadata.resource_version = Some("42".into());
        cm.metadata.generation = Some(3);
        cm.metadata.labels = Some([("l".to_string(), "v".to_string())].into());
        cm.metadata.annotations = Some([("a".to_string(), "b".to_string())].into());
        cm.data = Some([("k".to_string(), "v".to_string())].into());
        cm.binary_data =
            Some([("bin".to_string(), k8s_openapi::ByteString(vec![0xff, 0, 1]))].into());
        cm
    }

    #[test]
    fn backup_copy_keeps_content_and_drops_server_metadata() {
        let copy = backup_copy(&source(), jiff::Timestamp::UNIX_EPOCH);
        assert_eq!(
            copy.metadata.namespace.as_deref(),
            Some("connectivity-proxy-backup")
        );
        assert_eq!(copy.metadata.uid, None);
        assert_eq!(copy.metadata.resource_version, None);
        assert_eq!(copy.metadata.generation, None);
        assert!(same_data(&copy, &source()));
        let a = copy.metadata.annotations.as_ref().unwrap();
        assert_eq!(a["a"], "b");
        assert_eq!(
            a[backup::SOURCE_ANNOTATION],
            "kyma-system/connectivity-proxy"
        );
        assert_eq!(a[backup::SOURCE_UID_ANNOTATION], "u1");
        assert_eq!(copy.metadata.labels.as_ref().unwrap()["l"], "v");
    }

    #[test]
    fn restore_removes_exactly_the_bookkeeping() {
        let back = restored(&backup_copy(&source(), jiff::Timestamp::UNIX_EPOCH));
        let src = source();
        assert_eq!(back.metadata.namespace.as_deref(), Some("kyma-system"));
        assert_eq!(back.metadata.labels, src.metadata.labels);
        assert_eq!(back.metadata.annotations, src.metadata.annotations);
        assert_eq!(back.data, src.data);
        assert_eq!(back.binary_data, src.binary_data);
    }

    #[test]
    fn same_data_treats_absent_as_empty_and_sees_binary_differences() {
        let mut a = ConfigMap::default();
        let b = ConfigMap {
            data: Some(BTreeMap::new()),
            ..Default::default()
        };
        assert!(same_data(&a, &b));
        a.binary_data = Some([("x".to_string(), k8s_openapi::ByteString(vec![1]))].into());
        assert!(!same_data(&a, &b));
    }
}
