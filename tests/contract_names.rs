//! docs/contract.md's names, spelled out as that page gives them (tests/support/contract.rs, never the
//! crate's own tables), against what the tool does on a real API server: the step markers and
//! the keys of an earlier tool, the legacy marker, the backup namespace and what it holds,
//! clean's table of the legacy objects it deletes (and what stays), and the adoption's label
//! and annotations. A typo in any of these names in src/names.rs fails here.

mod support;

use std::collections::{BTreeMap, BTreeSet};

use k8s_openapi::api::apps::v1::StatefulSet;
use k8s_openapi::api::core::v1::{ConfigMap, Secret};
use k8s_openapi::apiextensions_apiserver::pkg::apis::apiextensions::v1::CustomResourceDefinition;
use kube::ResourceExt;
use kube::api::{Api, ListParams, Patch, PatchParams};
use serde_json::{Value, json};

use support::contract::{self, adoption, legacy_marker, markers};
use support::unchanged::assert_writes_nothing;
use support::*;

/// A legacy object at a name of clean's table that carries the new operator's label: contract.md says
/// it belongs to the new module, and clean never deletes it.
const OPERATORS_SERVICE: &str = "connectivity-proxy-smv";

/// migrate, backup and clean on the legacy fixture write the step markers, the backup namespace
/// with its copies and the archive, adopt every ServiceMapping and their CRD, and delete exactly
/// the objects of clean's table: every one of them but the one the new operator owns, and
/// nothing else of the fixture.
#[tokio::test]
async fn migrate_backup_and_clean_write_and_delete_at_the_names_of_spec() {
    let c = TestCluster::legacy_and_module().await;
    operators_label_on_a_legacy_service(&c).await;
    let pristine = c.snapshot().await;
    let cr_uid = c.cr().await.uid().expect("the CR's uid");
    for step in ["migrate", "backup", "clean"] {
        let r = c.run(&[step]);
        r.assert_ok();
        assert_eq!(r.outcome(), "done", "{step}: {}", r.stderr);
    }

    the_cr_carries_the_three_markers(&c).await;
    the_backup_namespace_holds_the_copies_and_the_archive(&c, &pristine, &cr_uid).await;
    every_service_mapping_and_their_crd_are_adopted(&c).await;
    clean_deleted_its_table_and_nothing_else(&c, &pristine).await;
}

/// The marker keys of an earlier tool count as their step done (each step skips, naming the key,
/// and writes nothing); the legacy installation is known by either of its two marks, and is not
/// there without them.
#[tokio::test]
async fn other_markers_and_the_legacy_marks_are_read_at_the_names_of_spec() {
    let c = TestCluster::legacy_and_module().await;
    for key in markers::OTHER_MIGRATED {
        cr::annotate(&c, &[(key, "true")]).await;
        skips_naming(&c, "migrate", key).await;
    }
    for key in markers::OTHER_BACKED_UP {
        cr::annotate(&c, &[(key, "true")]).await;
        skips_naming(&c, "backup", key).await;
    }
    for key in markers::OTHER_CLEANED {
        cr::annotate(&c, &[(key, "true")]).await;
        skips_naming(&c, "clean", key).await;
        cr::remove_annotations(&c, &[key]).await;
    }
    let others: Vec<&str> = markers::OTHER_MIGRATED
        .into_iter()
        .chain(markers::OTHER_BACKED_UP)
        .collect();
    cr::remove_annotations(&c, &others).await;

    // The fixture's StatefulSet carries the annotation; then the label alone; then neither.
    let r = assert_writes_nothing(&c, &["migrate", "--dry-run"]).await;
    assert_eq!(r.outcome(), "done", "{}", r.stderr);
    let statefulsets: Api<StatefulSet> = Api::namespaced(c.client.clone(), contract::KYMA_SYSTEM);
    let marks = |annotation: Value, label: Value| {
        Patch::Merge(json!({"metadata": {
            "annotations": {legacy_marker::ANNOTATION: annotation},
            "labels": {legacy_marker::LABEL: label},
        }}))
    };
    for (patch, legacy_there) in [
        (marks(Value::Null, json!(legacy_marker::LABEL_VALUE)), true),
        (marks(Value::Null, Value::Null), false),
    ] {
        statefulsets
            .patch(legacy_marker::STATEFULSET, &PatchParams::default(), &patch)
            .await
            .expect("mark the StatefulSet");
        let r = assert_writes_nothing(&c, &["migrate", "--dry-run"]).await;
        r.assert_ok();
        if legacy_there {
            assert_eq!(r.outcome(), "done", "{}", r.stderr);
        } else {
            assert_eq!(r.outcome(), "skipped", "{}", r.stderr);
            assert!(
                r.reason().contains("no legacy installation"),
                "{}",
                r.reason()
            );
        }
    }
}

/// `step` skips, naming `key` as the reason, and writes nothing.
async fn skips_naming(c: &TestCluster, step: &str, key: &str) {
    let r = assert_writes_nothing(c, &[step]).await;
    r.assert_ok();
    assert_eq!(r.outcome(), "skipped", "{step} with {key}: {}", r.stderr);
    assert!(
        r.reason().contains(key),
        "{step}: the reason names {key}: {}",
        r.reason()
    );
}

/// The new operator's label on a legacy Service, as the admin.
async fn operators_label_on_a_legacy_service(c: &TestCluster) {
    let services: Api<k8s_openapi::api::core::v1::Service> =
        Api::namespaced(c.client.clone(), contract::KYMA_SYSTEM);
    services
        .patch(
            OPERATORS_SERVICE,
            &PatchParams::default(),
            &Patch::Merge(
                json!({"metadata": {"labels": {adoption::LABEL: adoption::LABEL_VALUE}}}),
            ),
        )
        .await
        .expect("label the Service");
}

async fn the_cr_carries_the_three_markers(c: &TestCluster) {
    let cr = c.cr().await;
    for key in markers::ALL {
        assert_eq!(
            cr.annotations().get(key).map(String::as_str),
            Some("true"),
            "marker {key}: {:?}",
            cr.annotations()
        );
    }
}

/// Both user ConfigMaps copied into the backup namespace under their names, with their data;
/// the archive, a Secret of type Opaque labelled like the copies, recording the CR's uid.
async fn the_backup_namespace_holds_the_copies_and_the_archive(
    c: &TestCluster,
    pristine: &snapshot::State,
    cr_uid: &str,
) {
    let copies: Api<ConfigMap> = Api::namespaced(c.client.clone(), contract::BACKUP_NAMESPACE);
    let mut copy_labels = Vec::new();
    for name in contract::USER_CONFIG {
        let copy = copies
            .get_opt(name)
            .await
            .expect("get")
            .unwrap_or_else(|| panic!("no copy {}/{name}", contract::BACKUP_NAMESPACE));
        let source = &pristine[&format!("/ConfigMap {}/{name}", contract::KYMA_SYSTEM)];
        assert_eq!(
            serde_json::to_value(&copy.data).expect("json"),
            source["data"],
            "{name}"
        );
        copy_labels.push(copy.labels().clone());
    }
    let secrets: Api<Secret> = Api::namespaced(c.client.clone(), contract::BACKUP_NAMESPACE);
    let archive = secrets
        .get_opt(contract::ARCHIVE)
        .await
        .expect("get")
        .unwrap_or_else(|| {
            panic!(
                "no archive {}/{}",
                contract::BACKUP_NAMESPACE,
                contract::ARCHIVE
            )
        });
    assert_eq!(archive.type_.as_deref(), Some("Opaque"));
    for (name, labels) in contract::USER_CONFIG.iter().zip(&copy_labels) {
        // What the backup added to the copy: the labels its source did not carry.
        let source = &pristine[&format!("/ConfigMap {}/{name}", contract::KYMA_SYSTEM)];
        let added: BTreeMap<&String, &String> = labels
            .iter()
            .filter(|(k, v)| source["metadata"]["labels"][k.as_str()] != json!(v))
            .collect();
        assert!(!added.is_empty(), "the backup labels its copy {name}");
        assert_eq!(
            archive.labels().iter().collect::<BTreeMap<_, _>>(),
            added,
            "the archive is labelled like the backup copy {name}"
        );
    }
    assert!(
        archive.annotations().values().any(|v| v == cr_uid),
        "the archive records the CR's uid {cr_uid}: {:?}",
        archive.annotations()
    );
}

/// Every ServiceMapping, and then their CRD, carries the operator's label and both
/// `io.javaoperatorsdk/primary-*` annotations with the contract's values.
async fn every_service_mapping_and_their_crd_are_adopted(c: &TestCluster) {
    let mappings = service_mappings::api(&c.client)
        .list(&ListParams::default())
        .await
        .expect("list ServiceMappings");
    assert_eq!(mappings.items.len(), 3, "the fixture's three");
    let crd = Api::<CustomResourceDefinition>::all(c.client.clone())
        .get(contract::service_mapping::CRD)
        .await
        .expect("the ServiceMapping CRD");
    let metadata = mappings
        .items
        .iter()
        .map(|m| (m.name_any(), &m.metadata))
        .chain([(crd.name_any(), &crd.metadata)]);
    for (name, meta) in metadata {
        assert!(
            contract::is_adopted(meta),
            "{name} adopted: labels {:?}, annotations {:?}",
            meta.labels,
            meta.annotations
        );
    }
}

/// Gone: every object of clean's table (all 35 are in the fixture) but the Service the new
/// operator owns. Everything else of the fixture is still there: the namespaces, the CRDs, the
/// ServiceMappings, the CR. (A Service's IPAddress goes with it: the API server's, not clean's.)
async fn clean_deleted_its_table_and_nothing_else(c: &TestCluster, pristine: &snapshot::State) {
    let table: BTreeSet<String> = contract::legacy_keys().into_iter().collect();
    assert_eq!(table.len(), 35);
    let missing_from_fixture: Vec<&String> = table
        .iter()
        .filter(|k| !pristine.contains_key(*k))
        .collect();
    assert!(
        missing_from_fixture.is_empty(),
        "the fixture holds the whole table: {missing_from_fixture:?}"
    );
    let kept = format!("/Service {}/{OPERATORS_SERVICE}", contract::KYMA_SYSTEM);
    let expected: BTreeSet<&String> = table.iter().filter(|k| **k != kept).collect();

    let after = c.snapshot().await;
    let gone: BTreeSet<&String> = pristine
        .keys()
        .filter(|k| !after.contains_key(*k) && !k.starts_with("networking.k8s.io/IPAddress "))
        .collect();
    assert_eq!(gone, expected, "clean deletes exactly its table");
    assert!(
        after[&kept]["metadata"]["labels"][adoption::LABEL] == adoption::LABEL_VALUE,
        "the new operator's Service stays as it was"
    );
    assert_eq!(
        contract::remaining_legacy_objects(c).await,
        [format!("Service {OPERATORS_SERVICE}")]
    );
}
