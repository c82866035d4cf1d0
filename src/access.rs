//! What this identity may do, asked of the API server before a command writes anything: one
//! SelfSubjectAccessReview per permission, all at once (a SelfSubjectRulesReview is documented
//! as unfit for authorization decisions).

use k8s_openapi::api::authorization::v1::{
    ResourceAttributes, SelfSubjectAccessReview, SelfSubjectAccessReviewSpec,
};
use kube::Client;
use kube::api::{Api, PostParams};

use crate::error::{Context, Error, Result};
use crate::names::rbac::Permission;

/// The permissions of `needs` that this identity lacks, each as [`describe`] says it.
pub async fn missing(client: &Client, needs: &[Permission]) -> Result<Vec<String>> {
    let reviews: Api<SelfSubjectAccessReview> = Api::all(client.clone());
    let allowed = futures::future::try_join_all(needs.iter().map(|p| {
        let reviews = &reviews;
        async move {
            let review = reviews
                .create(&PostParams::default(), &access_review(p))
                .await
                .context(|| format!("asking whether this identity may {}", describe(p)))?;
            Ok::<_, Error>(review.status.is_some_and(|s| s.allowed))
        }
    }))
    .await?;
    Ok(needs
        .iter()
        .zip(allowed)
        .filter(|(_, allowed)| !allowed)
        .map(|(p, _)| describe(p))
        .collect())
}

fn access_review(p: &Permission) -> SelfSubjectAccessReview {
    SelfSubjectAccessReview {
        spec: SelfSubjectAccessReviewSpec {
            resource_attributes: Some(ResourceAttributes {
                verb: Some(p.verb.into()),
                group: Some(p.group.into()),
                resource: Some(p.resource.into()),
                namespace: p.namespace.map(Into::into),
                name: p.name.map(Into::into),
                ..Default::default()
            }),
            ..Default::default()
        },
        ..Default::default()
    }
}

/// `create apps/deployments in kyma-system`, `bind rbac.authorization.k8s.io/clusterroles NAME`.
pub fn describe(p: &Permission) -> String {
    let group = if p.group.is_empty() {
        String::new()
    } else {
        format!("{}/", p.group)
    };
    let name = p.name.map(|n| format!(" {n}")).unwrap_or_default();
    let namespace = p.namespace.map(|n| format!(" in {n}")).unwrap_or_default();
    format!("{} {group}{}{name}{namespace}", p.verb, p.resource)
}
