//! Handing the legacy installation over to the module without an outage rests on what the
//! Kubernetes controllers do with a workload's Pods. These cases run the real controllers
//! (kube-controller-manager of the API server's release) with a node agent in a kubelet's place,
//! and watch what a client of Service `kyma-system/connectivity-proxy` would see.

mod support;

use std::time::Duration;

use k8s_openapi::api::apps::v1::StatefulSet;
use k8s_openapi::api::core::v1::Service;
use kube::ResourceExt;
use kube::api::{Api, DeleteParams, PropagationPolicy};
use support::outage::{self, LIMIT};
use support::workloads::*;
use support::{Tenant, TestCluster, fixture_dir, operator};

#[tokio::test]
async fn a_stateful_set_deleted_with_its_pods_orphaned_is_replaced_by_its_successor_without_an_outage()
 {
    let s = legacy_serving().await;

    // Deleted with its Pods orphaned: the garbage collector takes its ownership off them, and
    // they keep serving.
    delete_legacy(&s.c, PropagationPolicy::Orphan).await;
    let legacy_uid = s.legacy.uid().expect("uid");
    wait_for_pods(&s.c.client, "the legacy Pods orphaned", |pods| {
        pods.len() == 2 && pods.iter().all(|p| !owned_by(p, &legacy_uid))
    })
    .await;
    assert_eq!(s.endpoints.now(), 2, "orphaned Pods still serve");

    // The module's StatefulSet of the same name adopts them and replaces them one at a time,
    // from the highest ordinal down.
    let module: StatefulSet = create(&s.c.client, module_stateful_set()).await;
    let replaced = module_serving(&s.c, &module, &s.legacy_pods).await;
    s.endpoints.wait_for(2, LIMIT).await;
    let created = |name: &str| {
        replaced
            .iter()
            .find(|p| p.name_any() == name)
            .and_then(|p| p.metadata.creation_timestamp.clone())
            .unwrap_or_else(|| panic!("{name} replaced"))
    };
    assert!(
        created("connectivity-proxy-1").0 < created("connectivity-proxy-0").0,
        "-1 is replaced before -0"
    );

    // A client of the Service never lost it: the same ClusterIP, always a ready endpoint.
    let services: Api<Service> = Api::namespaced(s.c.client.clone(), NAMESPACE);
    let now = services.get(NAME).await.expect("Service");
    assert_eq!(
        now.spec.and_then(|s| s.cluster_ip),
        s.service.spec.clone().and_then(|s| s.cluster_ip)
    );
    assert_eq!(
        s.endpoints.outages(),
        Vec::<Duration>::new(),
        "intervals with no ready endpoint"
    );
}

#[tokio::test]
async fn a_stateful_set_deleted_with_its_pods_leaves_the_service_without_endpoints_until_its_successor_is_ready()
 {
    let s = legacy_serving().await;

    // Today's clean: the StatefulSet goes with its Pods (background propagation, the default).
    delete_legacy(&s.c, PropagationPolicy::Background).await;
    wait_for_pods(&s.c.client, "the legacy Pods gone", |pods| pods.is_empty()).await;
    assert_eq!(s.endpoints.now(), 0);

    let module: StatefulSet = create(&s.c.client, module_stateful_set()).await;
    module_serving(&s.c, &module, &s.legacy_pods).await;
    s.endpoints.wait_for(2, LIMIT).await;
    let outages = s.endpoints.outages();
    assert_eq!(outages.len(), 1, "one outage: {outages:?}");
    // At least the first Pod's start to Ready.
    assert!(outages[0] >= TIMING.ready_after, "{outages:?}");
}

/// Delays short enough for a test, long enough that their order shows.
const MODEL: outage::Model = outage::Model {
    replicas: 1,
    operator_start: Duration::from_secs(3),
    pods: TIMING,
};

#[tokio::test]
async fn with_todays_clean_the_proxy_has_no_endpoint_from_its_deletion_until_the_modules_pod_is_ready()
 {
    let seen = outage::migration(&["run"], MODEL).await;
    assert_eq!(seen.outages.len(), 1, "one outage: {seen:?}");
    assert!(
        seen.outages[0] >= MODEL.operator_start + MODEL.pods.ready_after,
        "at least the operator's start and its Pod's start: {seen:?}"
    );
}

/// OPERATOR.md: "An object with the label and annotations is adopted: the next reconcile
/// applies its desired state with force (immutable fields such as a StatefulSet's selector
/// still refuse a change)." Every legacy object at one of the operator's names handed over by
/// hand: the legacy workloads' selectors refuse the operator's; once they are deleted (their
/// Pods orphaned), the operator adopts the rest in place, each Service with its ClusterIP.
#[tokio::test]
async fn legacy_objects_at_the_operators_names_are_adopted_in_place_except_the_workloads() {
    // The garbage collector takes an orphaning delete's finalizer off.
    let c = TestCluster::with_controllers().await;
    for fixture in Tenant::Dedicated.fixtures() {
        c.apply_dir(&fixture_dir(fixture)).await;
    }
    c.run(&["migrate"]).assert_ok();
    c.run(&["backup"]).assert_ok();
    let mut handed_over = Vec::new();
    for d in operator::table(&c).await {
        if let Some(object) = d.get(&c.client).await {
            d.hand_over(&c.client).await;
            handed_over.push((d, object));
        }
    }
    let workload = |d: &operator::Dependent| ["StatefulSet", "Deployment"].contains(&d.kind.kind);
    assert!(handed_over.iter().any(|(d, _)| workload(d)));
    assert!(handed_over.iter().any(|(d, _)| !workload(d)));

    match operator::reconcile(&c).await {
        operator::Outcome::Error {
            object,
            code,
            message,
        } => {
            assert!(object.starts_with("Deployment ") || object.starts_with("StatefulSet "));
            assert_eq!(code, Some(422), "{message}");
            assert!(
                message.contains("spec.selector") && message.contains("field is immutable"),
                "{message}"
            );
        }
        other => panic!("a legacy workload's selector refuses the operator's: {other:?}"),
    }

    for (d, _) in handed_over.iter().filter(|(d, _)| workload(d)) {
        d.api(&c.client)
            .delete(
                &d.name,
                &DeleteParams {
                    propagation_policy: Some(PropagationPolicy::Orphan),
                    ..DeleteParams::default()
                },
            )
            .await
            .expect("delete a legacy workload, its Pods orphaned");
        let started = std::time::Instant::now();
        while d.get(&c.client).await.is_some() {
            assert!(started.elapsed() < LIMIT, "{} not gone", d.key());
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }
    assert_eq!(operator::reconcile(&c).await, operator::Outcome::Ready);
    for (d, before) in handed_over.iter().filter(|(d, _)| !workload(d)) {
        let after = d.get(&c.client).await.expect("still there");
        assert_eq!(after.uid(), before.uid(), "{} adopted in place", d.key());
        if d.kind.kind == "Service" {
            assert_eq!(
                after.data["spec"]["clusterIP"],
                before.data["spec"]["clusterIP"],
                "{} keeps its ClusterIP",
                d.key()
            );
        }
    }
}
