//! The test cluster is a real API server: it serves the fixtures, validates and prunes by the
//! CRD's schema, and enforces RBAC.

mod support;

use k8s_openapi::api::core::v1::Secret;
use k8s_openapi::api::rbac::v1::{PolicyRule, Role, RoleBinding, RoleRef, Subject};
use kube::api::{Api, ListParams, PostParams};
use serde_json::json;
use support::*;

use cp_mod_migrator::{legacy, names};

#[tokio::test]
async fn fixtures_load_completely() {
    let c = TestCluster::legacy_and_module().await;
    // Every object of the contract's clean table exists, at a version discovery finds.
    let kinds = listable_kinds(&c.client).await;
    let mut found = 0;
    for o in contract::legacy_objects() {
        let ar = contract::served(&kinds, o.group, o.kind)
            .unwrap_or_else(|| panic!("{} not served", o.kind));
        contract::get(&c.client, ar, &o)
            .await
            .unwrap_or_else(|| panic!("{} {}/{} is missing", o.kind, o.namespace, o.name));
        found += 1;
    }
    assert_eq!(found, 35);
    // EnvoyFilter is served only at v1alpha3 although the group prefers v1, and the tool finds
    // it there.
    let envoy_filter = names::LEGACY_OBJECTS
        .iter()
        .position(|r| r.kind == "EnvoyFilter")
        .expect("EnvoyFilter in the table");
    let istio = legacy::resolve(
        &c.client,
        &names::LEGACY_OBJECTS[envoy_filter..=envoy_filter],
    )
    .await
    .expect("resolve");
    assert_eq!(
        istio[0].as_ref().map(|a| a.version.as_str()),
        Some("v1alpha3")
    );
    assert_eq!(
        c.cr().await.data["spec"]["config"]["subaccountId"],
        json!("auto-provision")
    );
    assert!(
        legacy::detect(&c.client)
            .await
            .expect("detect")
            .is_some_and(|l| l.is_expected_version())
    );
}

#[tokio::test]
async fn server_validates_and_prunes_by_the_crd_schema() {
    let c = TestCluster::with(&[LEGACY, MODULE]).await;
    let api = cr::api(&c.client);
    let mut bad = c.cr().await;
    bad.metadata = kube::core::ObjectMeta {
        name: Some("bad-tenant".into()),
        namespace: Some("kyma-system".into()),
        ..Default::default()
    };
    bad.data["spec"]["config"]["tenantMode"] = json!("multi");
    let err = api
        .create(&PostParams::default(), &bad)
        .await
        .expect_err("pattern violation must be rejected");
    let kube::Error::Api(status) = err else {
        panic!("{err}")
    };
    assert_eq!(status.code, 422);
    assert!(status.message.contains("tenantMode"), "{}", status.message);

    let mut unknown = c.cr().await;
    unknown.metadata = kube::core::ObjectMeta {
        name: Some("unknown-field".into()),
        namespace: Some("kyma-system".into()),
        ..Default::default()
    };
    unknown.data["spec"]["config"]["notInTheSchema"] = json!({"x": 1});
    let stored = api
        .create(&PostParams::default(), &unknown)
        .await
        .expect("create");
    assert!(
        stored.data["spec"]["config"]
            .get("notInTheSchema")
            .is_none(),
        "the server prunes unknown fields"
    );
    assert_eq!(
        stored.data["spec"]["config"]["subaccountId"],
        json!("auto-provision")
    );
}

#[tokio::test]
async fn rbac_is_enforced_for_service_account_tokens() {
    let c = TestCluster::start().await;
    c.apply_yaml("apiVersion: v1\nkind: Namespace\nmetadata:\n  name: rbac-test\n")
        .await;
    let token = c.token_for("rbac-test", "nobody").await;
    let as_sa = client_for(&c.kubeconfig_with_token(&token, "sa.kubeconfig")).await;
    let secrets: Api<Secret> = Api::namespaced(as_sa, "rbac-test");
    let err = secrets
        .list(&ListParams::default())
        .await
        .expect_err("no binding, no access");
    assert!(
        matches!(&err, kube::Error::Api(s) if s.code == 403),
        "{err}"
    );

    let roles: Api<Role> = Api::namespaced(c.client.clone(), "rbac-test");
    let mut role = Role::default();
    role.metadata.name = Some("read-secrets".into());
    role.rules = Some(vec![PolicyRule {
        api_groups: Some(vec!["".into()]),
        resources: Some(vec!["secrets".into()]),
        verbs: vec!["list".into()],
        ..Default::default()
    }]);
    roles
        .create(&PostParams::default(), &role)
        .await
        .expect("role");
    let bindings: Api<RoleBinding> = Api::namespaced(c.client.clone(), "rbac-test");
    let mut rb = RoleBinding::default();
    rb.metadata.name = Some("read-secrets".into());
    rb.role_ref = RoleRef {
        api_group: Some("rbac.authorization.k8s.io".into()),
        kind: "Role".into(),
        name: "read-secrets".into(),
    };
    rb.subjects = Some(vec![Subject {
        kind: "ServiceAccount".into(),
        name: "nobody".into(),
        namespace: Some("rbac-test".into()),
        ..Default::default()
    }]);
    bindings
        .create(&PostParams::default(), &rb)
        .await
        .expect("binding");
    // RBAC changes reach the authorizer through its informer: allow it a moment.
    let start = std::time::Instant::now();
    loop {
        match secrets.list(&ListParams::default()).await {
            Ok(_) => break,
            Err(e) if start.elapsed() < std::time::Duration::from_secs(10) => {
                assert!(matches!(&e, kube::Error::Api(s) if s.code == 403), "{e}");
                tokio::time::sleep(std::time::Duration::from_millis(100)).await;
            }
            Err(e) => panic!("still refused after binding: {e}"),
        }
    }
}

#[tokio::test]
async fn the_tool_reports_its_version() {
    let out = std::process::Command::new(tool_binary())
        .arg("--version")
        .output()
        .expect("run");
    assert!(out.status.success());
    assert_eq!(
        String::from_utf8_lossy(&out.stdout).trim(),
        format!("cp-mod-migrator {}", env!("CARGO_PKG_VERSION"))
    );
}
