//! Running the tool as the ServiceAccount of deploy/rbac.yaml, on the RBAC-enforcing test server.

use std::path::PathBuf;
use std::time::{Duration, Instant};

use k8s_openapi::api::authorization::v1::{
    ResourceAttributes, SubjectAccessReview, SubjectAccessReviewSpec,
};
use kube::api::{Api, PostParams};
use serde_json::Value;

use super::{TestCluster, repo_root, yaml_documents};

pub const SA_NAMESPACE: &str = "kyma-system";
/// The ServiceAccount that deploy/rbac.yaml creates, for the hand-run commands.
pub const SA_NAME: &str = "cp-mod-migrator";

/// Applies deploy/rbac.yaml unchanged, waits until the authorizer sees each of its Roles and
/// ClusterRoles, and returns a kubeconfig that authenticates as its ServiceAccount.
pub async fn as_migrator_service_account(c: &TestCluster) -> PathBuf {
    let text = std::fs::read_to_string(repo_root().join("deploy/rbac.yaml")).expect("rbac.yaml");
    c.apply_yaml(&text).await;
    let token = c.token_for(SA_NAMESPACE, SA_NAME).await;
    let user = format!("system:serviceaccount:{SA_NAMESPACE}:{SA_NAME}");
    for doc in yaml_documents(&text) {
        wait_until_in_effect(c, &user, &doc).await;
    }
    c.kubeconfig_with_token(&token, "sa.kubeconfig")
}

/// Waits until the authorizer allows `user` the first rule of `doc`, when `doc` is a Role or
/// ClusterRole (anything else is not waited for). RBAC reaches the authorizer through
/// informers, a moment after the write: without this, a refusal could be mere lag.
pub async fn wait_until_in_effect(c: &TestCluster, user: &str, doc: &Value) {
    let kind = doc["kind"].as_str().unwrap_or_default();
    if kind != "Role" && kind != "ClusterRole" {
        return;
    }
    let Some(rule) = doc["rules"].as_array().and_then(|r| r.first()) else {
        return;
    };
    let first = |k: &str| rule[k][0].as_str().map(str::to_string);
    let attributes = ResourceAttributes {
        namespace: doc["metadata"]["namespace"].as_str().map(str::to_string),
        verb: first("verbs"),
        group: first("apiGroups"),
        resource: first("resources"),
        name: first("resourceNames"),
        ..Default::default()
    };
    let started = Instant::now();
    while !allows(c, user, &attributes).await {
        assert!(
            started.elapsed() < Duration::from_secs(30),
            "{kind} {} not in effect for {user} after 30s",
            doc["metadata"]["name"]
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// Whether the authorizer lets `user`, a ServiceAccount of kyma-system, make a request of
/// these attributes (as `kubectl auth can-i --as` asks it).
pub async fn allows(c: &TestCluster, user: &str, attributes: &ResourceAttributes) -> bool {
    let review = SubjectAccessReview {
        spec: SubjectAccessReviewSpec {
            user: Some(user.into()),
            groups: Some(vec![
                "system:serviceaccounts".into(),
                format!("system:serviceaccounts:{SA_NAMESPACE}"),
                "system:authenticated".into(),
            ]),
            resource_attributes: Some(attributes.clone()),
            ..Default::default()
        },
        ..Default::default()
    };
    let reviews: Api<SubjectAccessReview> = Api::all(c.client.clone());
    reviews
        .create(&PostParams::default(), &review)
        .await
        .expect("SubjectAccessReview")
        .status
        .is_some_and(|s| s.allowed)
}
