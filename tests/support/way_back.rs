//! The way back compared: a cluster after rollback against the same cluster before the
//! migration, field by field (server-owned metadata and allocated Service addresses aside), with
//! the module gone and the backup namespace kept.

use super::contract::{self, BACKUP_NAMESPACE, KYMA_SYSTEM, legacy_keys, service_mapping};
use super::snapshot::{Snap, State, state_across_recreation, state_diff};

/// Without what the controllers make and remove of themselves (a workload's Pods and revisions,
/// a Service's endpoints, each namespace's `default` ServiceAccount) and what they write (a
/// workload's status): not the migration's.
pub fn without_the_controllers_work(s: &Snap) -> Snap {
    const KINDS: [&str; 5] = [
        "Pod",
        "ReplicaSet",
        "ControllerRevision",
        "EndpointSlice",
        "Endpoints",
    ];
    s.iter()
        .filter(|(k, o)| !KINDS.contains(&o.ar.kind.as_str()) && !k.ends_with("/default"))
        .map(|(k, o)| {
            let mut o = o.clone();
            if ["StatefulSet", "Deployment"].contains(&o.ar.kind.as_str())
                && let Some(object) = o.value.as_object_mut()
            {
                object.remove("status");
            }
            (k.clone(), o)
        })
        .collect()
}

/// The module's CRD and CR: gone after it was disabled.
fn is_module(key: &str) -> bool {
    key == format!(
        "{}/{} {}/{}",
        contract::cr::GROUP,
        contract::cr::KIND,
        KYMA_SYSTEM,
        contract::cr::NAME
    ) || key
        == format!(
            "apiextensions.k8s.io/CustomResourceDefinition /{}",
            contract::cr::CRD
        )
}

/// The backup namespace and what it holds (the copies, the archive): kept after a rollback.
fn is_backup(key: &str) -> bool {
    key == format!("/Namespace /{}", BACKUP_NAMESPACE)
        || key.contains(&format!(" {}/", BACKUP_NAMESPACE))
}

/// Everything as before the migration, field by field (server-owned metadata and allocated
/// Service addresses aside): the legacy installation, every ServiceMapping and their CRD, and
/// everything else; only the module is gone and the backup namespace is there. `except` is
/// compared by the caller.
pub fn as_before_the_migration(pristine: &Snap, after: &Snap, except: &[&str]) {
    let keep = |k: &String| !except.contains(&k.as_str());
    let expected: State = state_across_recreation(pristine)
        .into_iter()
        .filter(|(k, _)| !is_module(k) && keep(k))
        .collect();
    let actual: State = state_across_recreation(after)
        .into_iter()
        .filter(|(k, _)| !is_backup(k) && keep(k))
        .collect();
    for key in legacy_keys() {
        assert!(
            except.contains(&key.as_str()) || actual.contains_key(&key),
            "{key} is back"
        );
    }
    let mappings = actual
        .keys()
        .filter(|k| k.contains(&format!("/{} ", service_mapping::KIND)))
        .count();
    assert_eq!(
        mappings,
        pristine
            .values()
            .filter(|o| o.ar.kind == service_mapping::KIND)
            .count()
    );
    let diff = state_diff(&expected, &actual);
    assert!(
        diff.is_empty(),
        "not as before the migration:\n{}",
        diff.join("\n")
    );
}
