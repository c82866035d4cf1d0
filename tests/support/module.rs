//! The Connectivity Proxy module as the cluster sees it: enabled (its CRD, its default CR and
//! the operator Deployment), and disabled again.

use std::time::{Duration, Instant};

use k8s_openapi::api::apps::v1::Deployment;
use k8s_openapi::apiextensions_apiserver::pkg::apis::apiextensions::v1::CustomResourceDefinition;
use kube::api::{Api, DeleteParams};

use cp_mod_migrator::names;

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

/// What disabling the module leaves: no operator Deployment, no CR, no CRD. Returns when they
/// are gone.
pub async fn disable(c: &TestCluster) {
    let deployments: Api<Deployment> = Api::namespaced(c.client.clone(), names::KYMA_SYSTEM);
    delete_if_present(&deployments, names::OPERATOR_DEPLOYMENT).await;
    delete_if_present(&cp_mod_migrator::cr::api(&c.client), names::cr::NAME).await;
    let crds: Api<CustomResourceDefinition> = Api::all(c.client.clone());
    delete_if_present(&crds, names::cr::CRD_NAME).await;
    // The CRD goes once the API server has removed its objects.
    let started = Instant::now();
    while crds
        .get_opt(names::cr::CRD_NAME)
        .await
        .expect("get CRD")
        .is_some()
    {
        assert!(
            started.elapsed() < Duration::from_secs(60),
            "CRD {} not deleted after 60 s",
            names::cr::CRD_NAME
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

async fn delete_if_present<K>(api: &Api<K>, name: &str)
where
    K: Clone + serde::de::DeserializeOwned + std::fmt::Debug,
{
    match api.delete(name, &DeleteParams::default()).await {
        Ok(_) => {}
        Err(kube::Error::Api(s)) if s.code == 404 => {}
        Err(e) => panic!("delete {name}: {e}"),
    }
}
