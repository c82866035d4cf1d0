//! The Events the tool records on the CR (docs/contract.md: migrate, backup, clean and mark-done each record
//! one), as the cluster keeps them.

use k8s_openapi::api::events::v1::Event;
use kube::api::{Api, ListParams};

use super::TestCluster;
use super::contract::{KYMA_SYSTEM, cr};

/// The controller name the tool reports its Events under.
const REPORTING_CONTROLLER: &str = "cp-mod-migrator";

/// The Events that the tool recorded on the CR (the server itself, or another controller, may
/// report on other objects).
pub async fn tool_events(c: &TestCluster) -> Vec<Event> {
    let events: Api<Event> = Api::namespaced(c.client.clone(), KYMA_SYSTEM);
    events
        .list(&ListParams::default())
        .await
        .expect("list Events")
        .items
        .into_iter()
        .filter(|e| e.reporting_controller.as_deref() == Some(REPORTING_CONTROLLER))
        .filter(|e| {
            e.regarding.as_ref().is_some_and(|r| {
                r.kind.as_deref() == Some(cr::KIND) && r.name.as_deref() == Some(cr::NAME)
            })
        })
        .collect()
}

/// The reasons of [`tool_events`], sorted (one per Event: a reason recorded twice is there
/// twice).
pub async fn event_reasons(c: &TestCluster) -> Vec<String> {
    let mut reasons: Vec<String> = tool_events(c)
        .await
        .into_iter()
        .filter_map(|e| e.reason)
        .collect();
    reasons.sort();
    reasons
}
