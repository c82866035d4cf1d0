//! `rollback` on the real API server: after `run` and the module disabled, the legacy
//! installation comes back from clean's archive exactly as it was, without the control plane;
//! it refuses while the module is still there; objects that came back already are left alone;
//! a module enabled again migrates again. No Secret data appears in any output on the way.

mod support;

use std::collections::BTreeSet;
use std::time::Instant;

use k8s_openapi::api::core::v1::Secret;
use kube::api::{Api, DeleteParams, ListParams, Patch, PatchParams, PostParams};
use kube::{Client, ResourceExt};
use serde_json::{Value, json};

use support::archive::{archive_data, archived_form, delete_archive, is_archive, key_of};
use support::contract::{
    self, BACKUP_NAMESPACE, KYMA_SYSTEM, adoption, is_adopted, legacy_keys, markers,
    service_mapping,
};
use support::secrets::Transcript;
use support::snapshot::*;
use support::unchanged::assert_unchanged;
use support::way_back::{as_before_the_migration, without_the_controllers_work};
use support::*;

/// ServiceMappings besides the fixture's three.
const MAPPINGS: usize = 1000;

/// ServiceMappings someone adopted by hand before the migration: clean does not change them,
/// so rollback must not either.
fn adopted_by_hand(i: usize) -> bool {
    i % 250 == 7
}

/// Label of the legacy objects that the control plane brought back before the rollback.
const BROUGHT_BACK_LABEL: &str = "example.com/brought-back-by";

// ---------------------------------------------------------------------------------------------
// Round trip

/// The runbook on the real module: `run`, the operator reconciles to Ready, `rollback
/// --prepare`, the module disabled (its operator's cleanup deletes the ServiceMapping CRD it
/// adopted, and with it every ServiceMapping), `rollback`.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn run_then_rollback_after_the_modules_uninstall_restores_everything_exactly_dedicated_tenant()
 {
    round_trip(Tenant::Dedicated, List::Whole, Road::Uninstall).await;
}

/// The admission controller's road: disabling is refused while ServiceMappings exist, so the
/// user deletes them by hand (the archive holds them), then the module is disabled.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn run_then_rollback_after_the_mappings_were_deleted_by_hand_restores_everything_exactly_shared_tenant()
 {
    round_trip(Tenant::Shared, List::Whole, Road::MappingsDeletedByHand).await;
}

/// The operator's cleanup stopped short of the ServiceMapping CRD: it is still there with the
/// operator's schema and adoption, and so are the mappings; rollback puts the CRD's spec back
/// and un-adopts them. Also: the list of ServiceMappings that rollback un-adopts while it is
/// still arriving loses its continue token half-way (the server compacted it); the list starts
/// over and no mapping is missed or written twice.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn run_then_rollback_with_the_crd_spared_puts_its_spec_back_exactly_shared_tenant_through_an_expired_list()
 {
    round_trip(Tenant::Shared, List::TokenExpires, Road::CrdSpared).await;
}

/// How rollback's list of ServiceMappings goes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum List {
    Whole,
    /// Through a proxy that answers the first page after the first with 410 Gone.
    TokenExpires,
}

/// How the module went away before the rollback.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Road {
    /// Its operator's cleanup, whole.
    Uninstall,
    /// Every ServiceMapping deleted by hand, then the operator's cleanup.
    MappingsDeletedByHand,
    /// The operator's cleanup without the ServiceMapping CRD.
    CrdSpared,
}

/// Legacy fixture with 1 000 more ServiceMappings, some adopted by hand: `run`, the operator
/// reconciles to Ready, `rollback --prepare`, the module disabled by `road`, `rollback
/// --dry-run` (changes nothing), `rollback`: every legacy object, every ServiceMapping and their
/// CRD as before, field by field (the CRD's spec included); a second `rollback` changes nothing.
async fn round_trip(tenant: Tenant, list: List, road: Road) {
    let started = Instant::now();
    let c = TestCluster::with(tenant.fixtures()).await;
    let t = Transcript::default();
    let hand_adopted: BTreeSet<String> =
        support::service_mappings::create(&c.client, "mapping", MAPPINGS, adopted_by_hand)
            .await
            .iter()
            .filter(|m| is_adopted(&m.metadata))
            .map(|m| m.name_any())
            .collect();
    assert_eq!(hand_adopted.len(), 4, "{hand_adopted:?}");
    carry_part_of_the_adoption(&c.client).await;
    let pristine = snap(&c.client, &discover(&c.client).await).await;
    let cr_uid = c.cr().await.uid().expect("uid");
    let setup = started.elapsed();

    let run = t.run(&c, &["run"]);
    run.assert_ok();
    the_archive_holds_what_clean_changed(&c, &pristine, &cr_uid, &hand_adopted).await;

    // The module runs: its operator adopts the CRD and applies its own schema over it.
    module::install_operator(&c).await;
    assert_eq!(operator::reconcile(&c).await, operator::Outcome::Ready);
    let prepare = t.run(&c, &["rollback", "--prepare"]);
    prepare.assert_ok();
    assert!(
        prepare.reason().starts_with(&format!(
            "recorded {} ServiceMappings (0 new since the archive was written, 0 changed)",
            MAPPINGS + 3
        )),
        "{}",
        prepare.reason()
    );
    match road {
        Road::Uninstall => operator::uninstall(&c).await,
        Road::MappingsDeletedByHand => {
            support::service_mappings::api(&c.client)
                .delete_collection(&DeleteParams::default(), &ListParams::default())
                .await
                .expect("delete every ServiceMapping");
            operator::uninstall(&c).await;
        }
        Road::CrdSpared => {
            operator::uninstall_with(&c, operator::Cleanup::SparingTheServiceMappingCrd).await
        }
    }

    let before = c.snapshot().await;
    let dry = t.run(&c, &["rollback", "--dry-run"]);
    dry.assert_ok();
    assert_unchanged(&before, &c.snapshot().await, "rollback --dry-run");
    for key in [
        "StatefulSet kyma-system/connectivity-proxy",
        "ValidatingWebhookConfiguration webhook-secret",
        "Secret istio-system/cc-certs",
    ] {
        assert!(
            dry.stdout.contains(key),
            "the plan names {key}:\n{}",
            dry.stdout
        );
    }

    let rollback = match list {
        List::Whole => t.run(&c, &["rollback"]),
        List::TokenExpires => {
            let proxy = faultproxy::FaultProxy::start(&c.kubeconfig, c.dir());
            proxy.expire_continue_tokens(1);
            let r = run_tool(proxy.kubeconfig(), &["rollback"]);
            t.record(&["rollback"], &r);
            let pages = proxy
                .log()
                .iter()
                .filter(|s| s.path.contains("/servicemappings?") && s.path.contains("limit="))
                .count();
            // 1 003 mappings are 3 pages: the first, the expired second, then 3 again.
            assert_eq!(pages, 5, "the list started over once");
            r
        }
    };
    rollback.assert_ok();
    let mappings_back = match road {
        Road::CrdSpared => format!(
            "un-adopted {} ServiceMappings and their CRD, recreated 0 ServiceMappings;",
            MAPPINGS + 3 - hand_adopted.len()
        ),
        Road::Uninstall | Road::MappingsDeletedByHand => format!(
            "un-adopted 0 ServiceMappings, recreated {} ServiceMappings and their CRD;",
            MAPPINGS + 3
        ),
    };
    assert!(
        rollback.reason().contains(&mappings_back),
        "each archived mapping written once: {}",
        rollback.reason()
    );
    let after = snap(&c.client, &discover(&c.client).await).await;
    as_before_the_migration(&pristine, &after, &[]);
    let still_adopted: BTreeSet<String> = after
        .iter()
        .filter(|(_, o)| o.ar.kind == service_mapping::KIND)
        .filter(|(_, o)| {
            let meta: kube::core::ObjectMeta =
                serde_json::from_value(o.value["metadata"].clone()).expect("metadata");
            is_adopted(&meta)
        })
        .map(|(_, o)| o.value["metadata"]["name"].as_str().expect("name").into())
        .collect();
    assert_eq!(
        still_adopted, hand_adopted,
        "the ServiceMappings adopted by hand stay adopted, and only they"
    );
    for name in hand_adopted.iter().filter(|_| road == Road::CrdSpared) {
        let key = format!(
            "{}/{} /{name}",
            service_mapping::GROUP,
            service_mapping::KIND
        );
        assert_eq!(
            after[&key].value["metadata"]["resourceVersion"],
            pristine[&key].value["metadata"]["resourceVersion"],
            "{key}: neither clean nor rollback wrote it"
        );
    }
    for name in contract::USER_CONFIG {
        let key = format!("/ConfigMap {}/{name}", BACKUP_NAMESPACE);
        assert!(after.contains_key(&key), "the backup copy {key} is kept");
    }

    let before = c.snapshot().await;
    let again = t.run(&c, &["rollback"]);
    again.assert_ok();
    assert_unchanged(&before, &c.snapshot().await, "a second rollback");

    let status = t.run(&c, &["status", "-o", "json"]);
    status.assert_ok();
    let status: Value = serde_json::from_str(&status.stdout).expect("status JSON");
    let legacy_count = legacy_keys().len();
    let archive = &status["archive"];
    for (field, value) in [
        ("present", json!(true)),
        ("objects", json!(legacy_count)),
        ("service_mappings", json!(MAPPINGS + 3)),
        ("crd_adopted", json!(true)),
        ("cr_uid", json!(cr_uid)),
    ] {
        assert_eq!(archive[field], value, "status: archive.{field}: {archive}");
    }
    t.run(&c, &["status"]).assert_ok();

    t.assert_free_of_secret_data(&c.client, &archive_data(&c.client).await)
        .await;
    eprintln!(
        "round trip {tenant:?}, {} ServiceMappings: setup {:.1}s; run {} ms, {} requests; \
         rollback --dry-run {} ms, {} requests; rollback {} ms, {} requests ({}); \
         second rollback {} ms, {} requests; {} commands searched for Secret data; {:.1}s in all ({road:?})",
        MAPPINGS + 3,
        setup.as_secs_f64(),
        run.last_line()["duration_ms"],
        run.api_requests(),
        dry.last_line()["duration_ms"],
        dry.api_requests(),
        rollback.last_line()["duration_ms"],
        rollback.api_requests(),
        rollback.reason(),
        again.last_line()["duration_ms"],
        again.api_requests(),
        t.commands(),
        started.elapsed().as_secs_f64()
    );
}

/// ServiceMappings created and changed while the module ran, and one deleted since clean:
/// status counts them as differing from the archive until `rollback --prepare` records them;
/// after the module's uninstall `rollback` brings every one back as it was last recorded, the
/// deleted one too (it stays in the archive).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn mappings_made_after_the_migration_come_back_too() {
    let c = TestCluster::with(Tenant::Dedicated.fixtures()).await;
    c.run(&["run"]).assert_ok();
    module::install_operator(&c).await;
    assert_eq!(operator::reconcile(&c).await, operator::Outcome::Ready);

    // While the module runs, as a user would under its schema: five new, one changed, one gone.
    support::service_mappings::create(&c.client, "after", 5, |_| false).await;
    let api = support::service_mappings::api(&c.client);
    api.patch(
        "sm-erp",
        &PatchParams::default(),
        &Patch::Merge(json!({"spec": {"internalAddress": "erp2.onprem.example:3301"}})),
    )
    .await
    .expect("change sm-erp");
    api.delete("sm-hana", &DeleteParams::default())
        .await
        .expect("delete sm-hana");
    let differ = |c: &TestCluster| {
        let status = c.run(&["status", "-o", "json"]);
        status.assert_ok();
        let status: Value = serde_json::from_str(&status.stdout).expect("status JSON");
        status["archive"]["service_mappings_differ"].clone()
    };
    assert_eq!(
        differ(&c),
        json!({"created": 5, "changed": 1, "deleted": 1}),
        "status warns that the archive is stale"
    );
    let text = c.run(&["status"]);
    assert!(
        text.stdout
            .contains("7 ServiceMappings differ from the archive")
            && text.stdout.contains("rollback --prepare"),
        "{}",
        text.stdout
    );

    let before = c.snapshot().await;
    let prepare = c.run(&["rollback", "--prepare"]);
    prepare.assert_ok();
    assert_eq!(
        prepare.reason(),
        "recorded 7 ServiceMappings (5 new since the archive was written, 1 changed); \
         1 deleted since and kept in the archive"
    );
    let after = c.snapshot().await;
    let written: Vec<&String> = after
        .keys()
        .filter(|k| before.get(*k) != after.get(*k))
        .chain(before.keys().filter(|k| !after.contains_key(*k)))
        .collect();
    assert!(
        written.iter().all(|k| k.contains(contract::ARCHIVE)),
        "prepare writes the archive and nothing else: {written:?}"
    );
    assert_eq!(
        differ(&c),
        json!({"created": 0, "changed": 0, "deleted": 1}),
        "only the deleted one differs: the archive keeps it"
    );
    let recorded: Value = api
        .get("sm-erp")
        .await
        .map(|m| serde_json::to_value(m).expect("json"))
        .expect("get sm-erp");
    let new_ones: Vec<Value> = futures::future::join_all((0..5).map(|i| {
        let api = api.clone();
        async move {
            serde_json::to_value(api.get(&format!("after-{i}")).await.expect("get")).expect("json")
        }
    }))
    .await;

    operator::uninstall(&c).await;
    assert!(
        api.list(&ListParams::default()).await.is_err(),
        "the uninstall deleted their CRD and every ServiceMapping"
    );
    let r = c.run(&["rollback"]);
    r.assert_ok();
    assert!(
        r.reason()
            .contains("un-adopted 0 ServiceMappings, recreated 8 ServiceMappings and their CRD;"),
        "{}",
        r.reason()
    );
    let content = |v: &Value| {
        let mut v = archived_form(v);
        for key in [
            adoption::LABEL,
            adoption::PRIMARY_NAME,
            adoption::PRIMARY_NAMESPACE,
        ] {
            for field in ["labels", "annotations"] {
                if let Some(m) = v["metadata"][field].as_object_mut() {
                    m.remove(key);
                }
            }
        }
        if let Some(meta) = v["metadata"].as_object_mut() {
            meta.retain(|_, m| !m.is_null() && m.as_object().is_none_or(|m| !m.is_empty()));
        }
        v
    };
    for (name, want) in std::iter::once(("sm-erp".to_string(), recorded)).chain(
        new_ones
            .into_iter()
            .enumerate()
            .map(|(i, v)| (format!("after-{i}"), v)),
    ) {
        let got = api
            .get(&name)
            .await
            .unwrap_or_else(|e| panic!("{name} is back: {e}"));
        let got = serde_json::to_value(got).expect("json");
        assert_eq!(content(&got), content(&want), "{name} as last recorded");
    }
    let erp = api.get("sm-erp").await.expect("sm-erp");
    assert_eq!(
        erp.data["spec"]["internalAddress"], "erp2.onprem.example:3301",
        "the change made while the module ran"
    );
    assert!(
        !is_adopted(&erp.metadata),
        "sm-erp as before clean: not adopted"
    );
    api.get("sm-hana")
        .await
        .expect("sm-hana, deleted since clean, is back from the archive");
}

/// Two ServiceMappings carry some of the adoption's keys already: clean completes it, and
/// rollback gives back exactly what they carried.
async fn carry_part_of_the_adoption(client: &Client) {
    let api = support::service_mappings::api(client);
    for (name, metadata) in [
        (
            "mapping-11",
            json!({"labels": {adoption::LABEL: adoption::LABEL_VALUE}}),
        ),
        (
            "mapping-261",
            json!({"annotations": {adoption::PRIMARY_NAME: "someone-else"}}),
        ),
    ] {
        api.patch(
            name,
            &PatchParams::default(),
            &Patch::Merge(json!({ "metadata": metadata })),
        )
        .await
        .unwrap_or_else(|e| panic!("patch {name}: {e}"));
    }
}

/// clean's archive: every legacy object as it was, every ServiceMapping and their CRD as they
/// were (with which adoption clean added to each), and the uid of the CR it belongs to.
async fn the_archive_holds_what_clean_changed(
    c: &TestCluster,
    pristine: &Snap,
    cr_uid: &str,
    hand_adopted: &BTreeSet<String>,
) {
    let archive = cp_mod_migrator::archive::read(&c.client)
        .await
        .expect("read the archive")
        .expect("clean wrote an archive");
    assert_eq!(archive.cr_uid, cr_uid, "the archive belongs to the CR");
    let secrets: Api<Secret> = Api::namespaced(c.client.clone(), BACKUP_NAMESPACE);
    let stored: Vec<Secret> = secrets
        .list(&ListParams::default())
        .await
        .expect("list Secrets")
        .items
        .into_iter()
        .filter(is_archive)
        .collect();
    assert!(
        stored.iter().any(|s| s.name_any() == contract::ARCHIVE),
        "Secret {}/{} exists",
        BACKUP_NAMESPACE,
        contract::ARCHIVE
    );
    // The labels the backup gave its copies: those of the copy that its source did not carry.
    let copy = Api::<k8s_openapi::api::core::v1::ConfigMap>::namespaced(
        c.client.clone(),
        BACKUP_NAMESPACE,
    )
    .get(contract::USER_CONFIG[0])
    .await
    .expect("the backup copy");
    let source = &pristine[&format!("/ConfigMap {KYMA_SYSTEM}/{}", contract::USER_CONFIG[0])];
    let backup_labels: std::collections::BTreeMap<&String, &String> = copy
        .labels()
        .iter()
        .filter(|(k, v)| source.value["metadata"]["labels"][k.as_str()] != json!(v))
        .collect();
    assert!(!backup_labels.is_empty(), "the backup labels its copies");
    for s in &stored {
        assert_eq!(s.type_.as_deref(), Some("Opaque"), "{}", s.name_any());
        assert_eq!(
            s.labels()
                .iter()
                .collect::<std::collections::BTreeMap<_, _>>(),
            backup_labels,
            "{} is labelled like the backup copies",
            s.name_any()
        );
    }

    let archived: State = archive
        .objects
        .iter()
        .map(|o| (key_of(o), archived_form(o)))
        .collect();
    let expected: State = pristine
        .iter()
        .filter(|(k, _)| legacy_keys().contains(k))
        .map(|(k, o)| {
            let mut v = o.value.clone();
            v["apiVersion"] = json!(o.ar.api_version);
            v["kind"] = json!(o.ar.kind);
            (k.clone(), archived_form(&v))
        })
        .collect();
    assert_eq!(expected.len(), legacy_keys().len(), "the whole fixture");
    let diff = state_diff(&expected, &archived);
    assert!(
        diff.is_empty(),
        "the archive holds every legacy object as clean read it:\n{}",
        diff.join("\n")
    );
    for o in &archive.objects {
        for field in [
            "uid",
            "resourceVersion",
            "creationTimestamp",
            "managedFields",
        ] {
            assert!(
                o["metadata"].get(field).is_none(),
                "{}: server-owned {field} is not archived",
                key_of(o)
            );
        }
        assert!(o.get("status").is_none(), "{}: no status", key_of(o));
    }

    // Every ServiceMapping in full, as it was before clean (those adopted by hand too: the
    // module's uninstall deletes them all), and their CRD.
    let mappings: State = pristine
        .values()
        .filter(|o| o.ar.kind == service_mapping::KIND)
        .map(|o| {
            let name = o.value["metadata"]["name"].as_str().expect("name");
            (name.to_string(), archived_form(&o.value))
        })
        .collect();
    let archived_mappings: State = archive
        .service_mappings
        .items
        .iter()
        .map(|m| {
            let restored = m
                .restored()
                .expect("a valid archived object")
                .expect("format 2: each mapping in full");
            (m.name.clone(), archived_form(&restored))
        })
        .collect();
    assert_eq!(archived_mappings.len(), MAPPINGS + 3);
    let diff = state_diff(&mappings, &archived_mappings);
    assert!(
        diff.is_empty(),
        "the archive holds every ServiceMapping as it was before clean:\n{}",
        diff.join("\n")
    );
    for m in &archive.service_mappings.items {
        let adopted_before = m.prior.annotations.len() == 2 && m.prior.labels.len() == 1;
        assert_eq!(
            adopted_before,
            hand_adopted.contains(&m.name),
            "{}: the archive records which adoption clean added",
            m.name
        );
    }
    let crd_key = format!(
        "apiextensions.k8s.io/CustomResourceDefinition /{}",
        service_mapping::CRD
    );
    let archived_crd = archive
        .service_mappings
        .crd
        .as_ref()
        .expect("clean adopted the CRD: what it carried before")
        .applied_to(
            archive
                .service_mappings
                .crd_object
                .clone()
                .expect("the CRD in full"),
        );
    let mut pristine_crd = pristine[&crd_key].value.clone();
    pristine_crd["apiVersion"] = json!("apiextensions.k8s.io/v1");
    pristine_crd["kind"] = json!("CustomResourceDefinition");
    let diff = state_diff(
        &State::from([(crd_key.clone(), archived_form(&pristine_crd))]),
        &State::from([(crd_key, archived_form(&archived_crd))]),
    );
    assert!(
        diff.is_empty(),
        "the archive holds the CRD as it was before clean:\n{}",
        diff.join("\n")
    );
}

// ---------------------------------------------------------------------------------------------
// Refusals

/// While the module is still there (its operator Deployment, or its object at a legacy name),
/// and without an archive, rollback refuses, names what is in the way and writes nothing.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn rollback_refuses_while_the_module_is_there_or_without_an_archive() {
    let c = TestCluster::legacy_and_module().await;
    let t = Transcript::default();
    t.run(&c, &["run"]).assert_ok();
    module::install_operator(&c).await;
    create_operators_service(&c.client).await;

    const DEPLOYMENT: &str = "Deployment kyma-system/connectivity-proxy-operator";
    const SERVICE: &str = "Service kyma-system/connectivity-proxy";
    // The module enabled: its operator Deployment and its Service at a legacy name.
    refused(&c, &t, &[DEPLOYMENT, SERVICE], &[]).await;
    // The module disabled, but its Service is still there: it carries the operator's label
    // without its annotations, so the operator's cleanup leaves it.
    operator::uninstall(&c).await;
    refused(&c, &t, &[SERVICE], &[DEPLOYMENT]).await;
    let services: Api<k8s_openapi::api::core::v1::Service> =
        Api::namespaced(c.client.clone(), KYMA_SYSTEM);
    services
        .delete("connectivity-proxy", &DeleteParams::default())
        .await
        .expect("delete the operator's Service");

    // No archive: a cluster cleaned by an older tool.
    let also = archive_data(&c.client).await;
    delete_archive(&c.client).await;
    refused(&c, &t, &["archive", "restore"], &[]).await;

    t.assert_free_of_secret_data(&c.client, &also).await;
}

/// A Service of the new operator at the name of a legacy one.
async fn create_operators_service(client: &Client) {
    let services: Api<k8s_openapi::api::core::v1::Service> =
        Api::namespaced(client.clone(), KYMA_SYSTEM);
    let service = serde_json::from_value(json!({
        "metadata": {
            "name": "connectivity-proxy",
            "labels": {adoption::LABEL: adoption::LABEL_VALUE},
        },
        "spec": {"ports": [{"name": "http", "port": 20003}]},
    }))
    .expect("Service");
    services
        .create(&PostParams::default(), &service)
        .await
        .expect("create the operator's Service");
}

/// `rollback` and `rollback --dry-run` each exit 1 with an error that names each of `named`
/// and none of `not_named`, and write nothing.
async fn refused(c: &TestCluster, t: &Transcript, named: &[&str], not_named: &[&str]) {
    for args in [&["rollback", "--dry-run"][..], &["rollback"][..]] {
        let before = c.snapshot().await;
        let r = t.run(c, args);
        assert_eq!(r.output.status.code(), Some(1), "{args:?}:\n{}", r.stderr);
        r.assert_failed_with(named);
        for n in not_named {
            assert!(
                !r.reason().contains(n),
                "{args:?}: {:?} names {n:?}",
                r.reason()
            );
        }
        assert_unchanged(&before, &c.snapshot().await, &format!("refused {args:?}"));
    }
}

// ---------------------------------------------------------------------------------------------
// After a hand-over

/// contract.md: rollback after a hand-over works as after a plain clean (the archive was written before
/// anything was handed over; the module's uninstall deletes what its operator adopted, and
/// rollback brings it back); the objects still waiting for finish are left as they are. On the
/// real controllers, whose garbage collector completes the orphaning deletes.
#[tokio::test]
async fn rollback_after_a_hand_over_restores_everything_exactly() {
    let c = TestCluster::with_controllers().await;
    for fixture in Tenant::Dedicated.fixtures() {
        c.apply_dir(&fixture_dir(fixture)).await;
    }
    let t = Transcript::default();
    let pristine = without_the_controllers_work(&snap(&c.client, &discover(&c.client).await).await);
    t.run(&c, &["run", "--hand-over"]).assert_ok();
    let started = Instant::now();
    while operator::reconcile(&c).await != operator::Outcome::Ready {
        assert!(started.elapsed().as_secs() < 120, "the module not Ready");
        tokio::time::sleep(std::time::Duration::from_millis(200)).await;
    }
    t.run(&c, &["rollback", "--prepare"]).assert_ok();
    operator::uninstall(&c).await;

    let r = t.run(&c, &["rollback"]);
    r.assert_ok();
    let left = contract::hand_over::LEFT_FOR_FINISH.len();
    assert!(
        r.reason().contains(&format!("{left} left as they were")),
        "what waits for finish is left as it is: {}",
        r.reason()
    );
    let after = without_the_controllers_work(&snap(&c.client, &discover(&c.client).await).await);
    as_before_the_migration(&pristine, &after, &[]);
}

// ---------------------------------------------------------------------------------------------
// What came back already, and the module enabled again

/// Objects that the control plane brought back before the rollback are left as they are, and
/// the rest is recreated. Then the module is enabled again: a fresh CR and a new `run` replace
/// the archive and migrate again.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn rollback_leaves_what_came_back_and_a_reenabled_module_migrates_again() {
    let c = TestCluster::legacy_and_module().await;
    let t = Transcript::default();
    let pristine = snap(&c.client, &discover(&c.client).await).await;
    let first_uid = c.cr().await.uid().expect("uid");
    t.run(&c, &["run"]).assert_ok();
    // The end state is compared with the one before the migration, ServiceMappings included.
    operator::uninstall(&c).await;

    objects_brought_back_are_left_as_they_are(&c, &t, &pristine).await;
    a_reenabled_module_replaces_the_archive_and_migrates_again(&c, &t, &first_uid).await;

    t.assert_free_of_secret_data(&c.client, &archive_data(&c.client).await)
        .await;
}

async fn objects_brought_back_are_left_as_they_are(
    c: &TestCluster,
    t: &Transcript,
    pristine: &Snap,
) {
    let brought_back = [
        "/ConfigMap kyma-system/connectivity-proxy-service-mappings",
        "/Service kyma-system/connectivity-proxy-smv",
    ];
    let mut versions = Vec::new();
    for key in brought_back {
        let o = &pristine[key];
        let mut obj = writable(o, None);
        obj.labels_mut()
            .insert(BROUGHT_BACK_LABEL.into(), "control-plane".into());
        let created = api_for(&c.client, o)
            .create(&PostParams::default(), &obj)
            .await
            .unwrap_or_else(|e| panic!("bring back {key}: {e}"));
        versions.push(created.resource_version());
    }

    let r = t.run(c, &["rollback"]);
    r.assert_ok();
    let reason = r.reason();
    assert!(reason.contains("left as"), "{reason}");
    for name in [
        "ConfigMap kyma-system/connectivity-proxy-service-mappings",
        "Service kyma-system/connectivity-proxy-smv",
    ] {
        assert!(
            reason.contains(name),
            "the closing line names {name}: {reason}"
        );
    }

    let after = snap(&c.client, &discover(&c.client).await).await;
    as_before_the_migration(pristine, &after, &brought_back);
    for (key, version) in brought_back.iter().zip(versions) {
        let o = &after[*key];
        assert_eq!(
            o.value["metadata"]["labels"][BROUGHT_BACK_LABEL],
            json!("control-plane"),
            "{key} keeps its change"
        );
        assert_eq!(
            o.value["metadata"]["resourceVersion"].as_str(),
            version.as_deref(),
            "{key} was not written"
        );
    }
}

async fn a_reenabled_module_replaces_the_archive_and_migrates_again(
    c: &TestCluster,
    t: &Transcript,
    first_uid: &str,
) {
    let archive = cp_mod_migrator::archive::read(&c.client)
        .await
        .expect("read the archive")
        .expect("the archive is kept after a rollback");
    assert_eq!(archive.cr_uid, first_uid);

    module::enable(c).await;
    let uid = c.cr().await.uid().expect("uid");
    assert_ne!(uid, first_uid, "a fresh CR");
    let r = t.run(c, &["run"]);
    r.assert_ok();
    assert_eq!(
        r.reason(),
        "migrate: done; backup: done; clean: done",
        "migrated again"
    );

    let archive = cp_mod_migrator::archive::read(&c.client)
        .await
        .expect("read the archive")
        .expect("an archive");
    assert_eq!(archive.cr_uid, uid, "the archive belongs to the new CR");
    let archived: BTreeSet<String> = archive.objects.iter().map(key_of).collect();
    let legacy: BTreeSet<String> = legacy_keys().into_iter().collect();
    assert_eq!(archived, legacy, "every legacy object, once");
    let brought_back = archive
        .objects
        .iter()
        .find(|o| key_of(o) == "/ConfigMap kyma-system/connectivity-proxy-service-mappings")
        .expect("archived");
    assert_eq!(
        brought_back["metadata"]["labels"][BROUGHT_BACK_LABEL],
        json!("control-plane"),
        "the archive holds the objects as the second clean read them"
    );

    let cr = c.cr().await;
    for m in [markers::MIGRATED, markers::BACKED_UP, markers::CLEANED] {
        assert_eq!(
            cr.annotations().get(m).map(String::as_str),
            Some("true"),
            "{m}"
        );
    }
    let status = t.run(c, &["status", "-o", "json"]);
    status.assert_ok();
    let status: Value = serde_json::from_str(&status.stdout).expect("status JSON");
    assert_eq!(status["legacy_objects_remaining"], json!([]), "{status}");
    assert_eq!(status["archive"]["cr_uid"], json!(uid), "{status}");
    assert_eq!(
        status["archive"]["belongs_to_current_cr"],
        json!(true),
        "{status}"
    );
    t.run(c, &["status"]).assert_ok();
}
