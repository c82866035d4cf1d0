//! clean's archive (docs/contract.md, clean step 3) on the real API server: split into parts when it
//! outgrows one Secret, rewritten beside the current set so a crash never leaves half an archive,
//! added to by a later run for the same CR, and read by rollback whatever its shape.

mod support;

use k8s_openapi::api::core::v1::Secret;
use kube::ResourceExt;
use kube::api::Api;
use serde_json::{Value, json};

use cp_mod_migrator::archive;
use cp_mod_migrator::names;
use support::contract::{BACKUP_NAMESPACE, markers};
use support::fixtures::legacy_priority_class_back;
use support::unchanged::assert_writes_nothing;
use support::*;

/// The index Secret's annotations that say where the archive is.
async fn index(c: &TestCluster) -> (Option<String>, Option<String>) {
    let secrets: Api<Secret> = Api::namespaced(c.client.clone(), BACKUP_NAMESPACE);
    let index = secrets
        .get(support::contract::ARCHIVE)
        .await
        .expect("the archive's index");
    let a = index.annotations();
    (
        a.get(names::archive::PARTS_ANNOTATION).cloned(),
        a.get(names::archive::SLOT_ANNOTATION).cloned(),
    )
}

/// clean again for the same CR: its marker removed, and the legacy PriorityClass back with a
/// label of its own, as the control plane might bring it.
async fn clean_again_with_a_changed_priority_class(c: &TestCluster, label: &str, part_bytes: &str) {
    legacy_priority_class_back(c, label).await;
    cr::remove_annotations(c, &[markers::CLEANED]).await;
    let r = c.run(&["--archive-part-bytes", part_bytes, "clean"]);
    r.assert_ok();
    assert!(
        r.reason().starts_with("archive of 35 objects"),
        "{}",
        r.reason()
    );
}

fn priority_class_label(a: &archive::Archive) -> Option<String> {
    a.objects
        .iter()
        .find(|o| o["kind"] == "PriorityClass")
        .and_then(|o| o.pointer("/metadata/labels/changed"))
        .and_then(Value::as_str)
        .map(str::to_string)
}

/// An archive larger than one Secret holds is split into parts; each rewrite fills the set the
/// index does not point at and then switches the index, so the set it pointed at stays whole
/// until the switch. Every version reads back whole, and rollback restores from the last one.
#[tokio::test]
async fn an_archive_in_parts_is_rewritten_beside_the_current_set_and_rollback_reads_it() {
    let c = TestCluster::legacy_and_module().await;
    // The fixture's archive is a few KiB compressed: 1 200 bytes a part makes several parts.
    let part_bytes = "1200";
    let r = c.run(&["--archive-part-bytes", part_bytes, "run"]);
    r.assert_ok();
    let (parts, slot) = index(&c).await;
    let parts: usize = parts.expect("parts").parse().expect("a number");
    assert!(
        (2..=names::archive::MAX_PARTS).contains(&parts),
        "{parts} parts"
    );
    assert_eq!(slot.as_deref(), Some("a"));
    let first = archive::read(&c.client)
        .await
        .expect("read")
        .expect("an archive");
    assert_eq!(first.objects.len(), 35);
    assert_eq!(priority_class_label(&first), None);
    assert_eq!(first.cr_uid, c.cr().await.uid().expect("uid"));

    // Rewrites alternate between the two sets; each holds what the run before it archived,
    // and the entry of the object the later run found changed is the fresh one.
    for (round, expected_slot) in [(1, "b"), (2, "a")] {
        let label = format!("round-{round}");
        clean_again_with_a_changed_priority_class(&c, &label, part_bytes).await;
        let (_, slot) = index(&c).await;
        assert_eq!(slot.as_deref(), Some(expected_slot), "round {round}");
        let now = archive::read(&c.client)
            .await
            .expect("read")
            .expect("an archive");
        assert_eq!(now.objects.len(), 35, "no entry is lost (round {round})");
        assert_eq!(priority_class_label(&now).as_deref(), Some(label.as_str()));
        assert_eq!(
            now.service_mappings, first.service_mappings,
            "the ServiceMappings adopted by the first run stay in the archive"
        );
    }
    let status = c.run(&["status", "-o", "json"]);
    status.assert_ok();
    let status: Value = serde_json::from_str(&status.stdout).expect("status JSON");
    assert_eq!(status["archive"]["parts"], json!(parts));
    assert_eq!(status["archive"]["objects"], json!(35));
    assert_eq!(status["archive"]["belongs_to_current_cr"], json!(true));

    // The module disabled (its operator's cleanup deletes the ServiceMapping CRD that clean
    // adopted, and the mappings): rollback reads the archive from its parts.
    operator::uninstall(&c).await;
    let r = c.run(&["rollback"]);
    r.assert_ok();
    // 33 from the archive; the two user ConfigMaps from their backup copies.
    assert!(
        r.reason()
            .starts_with("recreated 33 legacy objects; 0 left as they were"),
        "{}",
        r.reason()
    );
    let pc: Api<k8s_openapi::api::scheduling::v1::PriorityClass> = Api::all(c.client.clone());
    let pc = pc
        .get("connectivity-proxy-priority-class")
        .await
        .expect("the PriorityClass is back");
    assert_eq!(
        pc.labels().get("changed").map(String::as_str),
        Some("round-2"),
        "as the last clean archived it"
    );
}

/// An archive that would need more parts than the manifest names is refused before anything
/// is written: nothing adopted or deleted, and no part of the archive left behind.
#[tokio::test]
async fn an_archive_too_large_for_its_parts_stops_clean_before_it_changes_anything() {
    let c = TestCluster::legacy_and_module().await;
    for step in ["migrate", "backup"] {
        c.run(&[step]).assert_ok();
    }
    // Nothing written: no object adopted or deleted, and no part of the archive either.
    let r = assert_writes_nothing(&c, &["--archive-part-bytes", "100", "clean"]).await;
    r.assert_failed_with(&[
        "clean's archive of the legacy installation",
        "more than 4 parts",
    ]);
}
