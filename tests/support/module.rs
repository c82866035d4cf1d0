//! The Connectivity Proxy module as the cluster sees it: enabled (its CRD, its default CR and
//! the operator Deployment, and a Pod of it with the status a kubelet would write). Its
//! operator's reconcile and the module's uninstall are in [`super::operator`].

use k8s_openapi::api::apps::v1::Deployment;
use k8s_openapi::api::core::v1::{Pod, PodStatus, ServiceAccount};
use kube::api::{Api, DynamicObject, Patch, PatchParams, PostParams};
use serde_json::json;

use super::contract::{KYMA_SYSTEM, OPERATOR_DEPLOYMENT, cr};
use super::{MODULE, TestCluster, fixture_dir, repo_root};

/// The operator Deployment, as the project's example gives it (the migrator's init containers
/// included). No controller runs on a test cluster, so it never gets a Pod.
pub async fn install_operator(c: &TestCluster) {
    let text = std::fs::read_to_string(repo_root().join("deploy/operator-deployment-example.yaml"))
        .expect("the example operator Deployment");
    c.apply_yaml(&text).await;
}

/// The module's CRD and a fresh default CR (a new uid if there was one before).
pub async fn enable(c: &TestCluster) {
    c.apply_dir(&fixture_dir(MODULE)).await;
}

/// A Pod of the operator Deployment as its ReplicaSet would make it: the Deployment's template
/// (its labels, its init containers) under `name`, not created yet (see [`create_pod`]). No
/// controller runs on a test cluster to make it, and no kubelet to run it.
pub async fn operator_pod(c: &TestCluster, name: &str) -> Pod {
    let deployments: Api<Deployment> = Api::namespaced(c.client.clone(), KYMA_SYSTEM);
    let d = deployments
        .get(OPERATOR_DEPLOYMENT)
        .await
        .expect("the operator Deployment (install_operator first)");
    let template = d.spec.expect("spec").template;
    // The ServiceAccount admission plugin refuses a Pod whose ServiceAccount does not exist.
    let spec = template.spec.expect("template spec");
    if let Some(sa) = &spec.service_account_name {
        let sas: Api<ServiceAccount> = Api::namespaced(c.client.clone(), KYMA_SYSTEM);
        let mut account = ServiceAccount::default();
        account.metadata.name = Some(sa.clone());
        match sas.create(&PostParams::default(), &account).await {
            Ok(_) => {}
            Err(kube::Error::Api(s)) if s.code == 409 => {}
            Err(e) => panic!("create ServiceAccount {sa}: {e}"),
        }
    }
    let mut pod = Pod {
        metadata: template.metadata.unwrap_or_default(),
        spec: Some(spec),
        status: None,
    };
    pod.metadata.name = Some(name.into());
    pod.metadata.namespace = Some(KYMA_SYSTEM.into());
    pod
}

/// Creates `pod` in kyma-system.
pub async fn create_pod(c: &TestCluster, pod: &Pod) -> Pod {
    Api::<Pod>::namespaced(c.client.clone(), KYMA_SYSTEM)
        .create(&PostParams::default(), pod)
        .await
        .unwrap_or_else(|e| panic!("create Pod {:?}: {e}", pod.metadata.name))
}

/// Writes a Pod's status through its `/status` subresource, as the kubelet would.
pub async fn write_pod_status(c: &TestCluster, name: &str, status: PodStatus) -> Pod {
    let pods: Api<Pod> = Api::namespaced(c.client.clone(), KYMA_SYSTEM);
    let mut pod = pods.get(name).await.expect("get Pod");
    pod.status = Some(status);
    pods.replace_status(name, &PostParams::default(), &pod)
        .await
        .unwrap_or_else(|e| panic!("write the status of Pod {name}: {e}"))
}

/// Writes the CR's status as the module's operator reports it (docs/operator.md, "Its status"),
/// through the CR's `/status` subresource: `state`, for the CR's current generation.
pub async fn report_state(c: &TestCluster, state: &str) -> DynamicObject {
    let generation = c
        .cr()
        .await
        .metadata
        .generation
        .expect("the CR's generation");
    report_state_for(c, state, generation).await
}

/// [`report_state`] for generation `observed` of the CR (an older one: the operator has not
/// caught up yet).
pub async fn report_state_for(c: &TestCluster, state: &str, observed: i64) -> DynamicObject {
    super::cr::api(&c.client)
        .patch_status(
            cr::NAME,
            &PatchParams::default(),
            &Patch::Merge(json!({"status": {"state": state, "observedGeneration": observed}})),
        )
        .await
        .unwrap_or_else(|e| panic!("write the CR's status {state}: {e}"))
}
