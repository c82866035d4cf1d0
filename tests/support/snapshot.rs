//! Snapshots of a whole cluster: every stored object of every listable kind, compared field by
//! field, and written back to put a cluster into an earlier state.

use std::collections::BTreeMap;
use std::time::{Duration, Instant};

use futures::StreamExt;
use k8s_openapi::api::core::v1::Namespace;
use k8s_openapi::apiextensions_apiserver::pkg::apis::apiextensions::v1::CustomResourceDefinition;
use kube::api::{Api, DeleteParams, DynamicObject, ListParams, PostParams};
use kube::core::ApiResource;
use kube::{Client, ResourceExt};
use serde_json::{Value, json};

use cp_mod_migrator::names::{archive, backup};

use super::archive::{archive_key, decoded_archive};
use super::contract::KYMA_SYSTEM;
use super::operator::wait_undiscoverable;
use super::{drop_server_owned, listable_kinds, object_key};

/// Every listable kind of the cluster except the ones the server itself keeps writing.
#[derive(Clone)]
pub struct Kinds(pub Vec<(ApiResource, bool)>);

pub async fn discover(client: &Client) -> Kinds {
    Kinds(listable_kinds(client).await)
}

/// An object as listed, and where it is served.
#[derive(Clone)]
pub struct Obj {
    pub ar: ApiResource,
    pub namespaced: bool,
    pub value: Value,
}

/// Every object of a cluster, keyed `group/Kind namespace/name` (see [`object_key`]).
pub type Snap = BTreeMap<String, Obj>;

/// Every object of `kinds`, as stored (managedFields aside: they change only with the
/// resourceVersion). A kind that is not served (its CRD deleted since, or not yet made again)
/// has no objects.
pub async fn snap(client: &Client, kinds: &Kinds) -> Snap {
    let lists: Vec<Vec<(String, Obj)>> = futures::stream::iter(kinds.0.clone())
        .map(|(ar, namespaced)| {
            let client = client.clone();
            async move {
                let api: Api<DynamicObject> = Api::all_with(client, &ar);
                let items = match api.list(&ListParams::default()).await {
                    Ok(list) => list.items,
                    Err(kube::Error::Api(s)) if s.code == 404 => Vec::new(),
                    Err(e) => panic!("list {}: {e}", ar.plural),
                };
                items
                    .into_iter()
                    .map(|mut o| {
                        o.metadata.managed_fields = None;
                        let key = object_key(&ar, &o);
                        let value = serde_json::to_value(&o).expect("json");
                        (
                            key,
                            Obj {
                                ar: ar.clone(),
                                namespaced,
                                value,
                            },
                        )
                    })
                    .collect::<Vec<_>>()
            }
        })
        .buffer_unordered(8)
        .collect()
        .await;
    lists.into_iter().flatten().collect()
}

/// A compared state: object key to object.
pub type State = BTreeMap<String, Value>;

/// Every object exactly as listed (resourceVersion included: "unchanged" means "not written").
pub fn values(s: &Snap) -> State {
    s.iter()
        .map(|(k, o)| (k.clone(), o.value.clone()))
        .collect()
}

/// Metadata the server owns, and the backup's bookkeeping of when and from which version.
pub fn normalize(v: &Value) -> Value {
    let mut v = v.clone();
    drop_server_owned(&mut v);
    if let Some(a) = v
        .pointer_mut("/metadata/annotations")
        .and_then(Value::as_object_mut)
    {
        for k in [
            backup::TIME_ANNOTATION,
            backup::SOURCE_UID_ANNOTATION,
            backup::SOURCE_RV_ANNOTATION,
        ] {
            a.remove(k);
        }
    }
    v
}

/// The compared state: every object but the cluster IPs' IPAddresses, which the API server
/// derives from Services and releases on its own time.
pub fn state_of(s: &Snap) -> State {
    s.iter()
        .filter(|(_, o)| o.ar.kind != "IPAddress")
        .map(|(k, o)| (k.clone(), normalize(&o.value)))
        .collect()
}

/// [`state_of`], without what differs when an object is created again from a copy: a
/// Service's addresses that the API server allocated (clusterIP and clusterIPs unless headless,
/// node ports, the health check node port), and when the conditions in a status last changed
/// (a recreated CRD's, and the APIService that the API server makes again for its group).
pub fn state_across_recreation(s: &Snap) -> State {
    let mut state = state_of(s);
    for (k, o) in s {
        let Some(v) = state.get_mut(k) else { continue };
        if o.ar.kind == "Service" && o.ar.group.is_empty() {
            drop_allocated_addresses(v);
        }
        drop_condition_times(v);
    }
    state
}

/// See [`state_across_recreation`]: the server sets a condition's `lastTransitionTime`.
pub fn drop_condition_times(object: &mut Value) {
    for condition in object
        .pointer_mut("/status/conditions")
        .and_then(Value::as_array_mut)
        .into_iter()
        .flatten()
    {
        if let Some(c) = condition.as_object_mut() {
            c.remove("lastTransitionTime");
        }
    }
}

/// See [`state_across_recreation`].
pub fn drop_allocated_addresses(service: &mut Value) {
    let Some(spec) = service.get_mut("spec").and_then(Value::as_object_mut) else {
        return;
    };
    if spec.get("clusterIP").and_then(Value::as_str) != Some("None") {
        spec.remove("clusterIP");
        spec.remove("clusterIPs");
    }
    spec.remove("healthCheckNodePort");
    for port in spec
        .get_mut("ports")
        .and_then(Value::as_array_mut)
        .into_iter()
        .flatten()
    {
        if let Some(p) = port.as_object_mut() {
            p.remove("nodePort");
        }
    }
}

/// A snapshot without what differs between two clusters doing the same thing: identities,
/// versions, times, and what the API server writes about itself (its CA, its port).
pub fn comparable_across_clusters(snapshot: State) -> State {
    fn strip(v: &mut Value) {
        match v {
            Value::Object(m) => {
                for k in [
                    "uid",
                    "resourceVersion",
                    "creationTimestamp",
                    "lastTransitionTime",
                ] {
                    m.remove(k);
                }
                if let Some(Value::Object(a)) = m.get_mut("annotations") {
                    for k in [
                        backup::SOURCE_UID_ANNOTATION,
                        backup::SOURCE_RV_ANNOTATION,
                        backup::TIME_ANNOTATION,
                    ] {
                        a.remove(k);
                    }
                }
                m.values_mut().for_each(strip);
            }
            Value::Array(a) => a.iter_mut().for_each(strip),
            _ => {}
        }
    }
    snapshot
        .into_iter()
        .filter(|(k, _)| {
            !k.ends_with("/kube-root-ca.crt")
                && !k.ends_with(" kube-system/extension-apiserver-authentication")
                && k != "/Service default/kubernetes"
        })
        .map(|(k, mut v)| {
            // The archive holds the CR's uid: compare what it holds, without it.
            if k == archive_key() {
                let mut archive = serde_json::to_value(decoded_archive(&v)).expect("archive");
                archive["crUid"] = Value::Null;
                v["data"] = archive;
                v["metadata"]["annotations"][archive::CR_UID_ANNOTATION] = Value::Null;
            }
            strip(&mut v);
            (k, v)
        })
        .collect()
}

/// Field-level differences, for messages.
pub fn value_diff(path: &str, a: &Value, b: &Value, out: &mut Vec<String>) {
    match (a, b) {
        (Value::Object(x), Value::Object(y)) => {
            for (k, va) in x {
                match y.get(k) {
                    Some(vb) => value_diff(&format!("{path}.{k}"), va, vb, out),
                    None => out.push(format!("{path}.{k}: {va} -> (absent)")),
                }
            }
            for (k, vb) in y {
                if !x.contains_key(k) {
                    out.push(format!("{path}.{k}: (absent) -> {vb}"));
                }
            }
        }
        _ if a != b => out.push(format!("{path}: {a} -> {b}")),
        _ => {}
    }
}

/// Every difference between two states: objects missing, unexpected, or changed (with the
/// changed fields). Empty when they are equal.
pub fn state_diff(expected: &State, actual: &State) -> Vec<String> {
    let mut out = Vec::new();
    for (k, v) in expected {
        match actual.get(k) {
            None => out.push(format!("missing: {k}")),
            Some(a) if a != v => {
                let mut d = Vec::new();
                value_diff("", v, a, &mut d);
                out.push(format!("changed: {k}: {}", d.join("; ")));
            }
            _ => {}
        }
    }
    for k in actual.keys() {
        if !expected.contains_key(k) {
            out.push(format!("unexpected: {k}"));
        }
    }
    out
}

pub fn api_for(client: &Client, o: &Obj) -> Api<DynamicObject> {
    let ns = o.value["metadata"]["namespace"].as_str();
    match (o.namespaced, ns) {
        (true, Some(ns)) => Api::namespaced_with(client.clone(), ns, &o.ar),
        _ => Api::all_with(client.clone(), &o.ar),
    }
}

/// The object as it can be written: type set, server-owned metadata dropped.
pub fn writable(o: &Obj, resource_version: Option<String>) -> DynamicObject {
    let mut v = o.value.clone();
    v["apiVersion"] = json!(o.ar.api_version);
    v["kind"] = json!(o.ar.kind);
    drop_server_owned(&mut v);
    let mut obj: DynamicObject = serde_json::from_value(v).expect("object");
    obj.metadata.resource_version = resource_version;
    obj
}

/// Puts the cluster back into `pristine`: deletes what is new, creates what is gone, replaces
/// what changed (a namespace is finalized by hand: this cluster runs no controllers; a new CRD
/// goes after its objects, and is waited for until it is gone and no longer discovered). Then
/// deletes the Events of kyma-system, so that a case can count its own.
pub async fn restore(client: &Client, kinds: &Kinds, pristine: &Snap, current: Option<Snap>) {
    let current = match current {
        Some(c) => c,
        None => snap(client, kinds).await,
    };
    let pp = &PostParams::default();
    // A Service's IPAddress comes and goes with the Service.
    let derived = |o: &&Obj| o.ar.kind == "IPAddress";
    let mut extra: Vec<&Obj> = current
        .iter()
        .filter(|(k, _)| !pristine.contains_key(*k))
        .map(|(_, o)| o)
        .filter(|o| !derived(o))
        .collect();
    // Contents before their CRD or namespace.
    extra.sort_by_key(|o| match o.ar.kind.as_str() {
        "CustomResourceDefinition" => 1,
        "Namespace" => 2,
        _ => 0,
    });
    for o in extra {
        let api = api_for(client, o);
        let name = o.value["metadata"]["name"].as_str().expect("name");
        match api.delete(name, &DeleteParams::default()).await {
            Ok(_) => {}
            Err(kube::Error::Api(s)) if s.code == 404 => {}
            Err(e) => panic!("restore: delete {} {name}: {e}", o.ar.kind),
        }
        match o.ar.kind.as_str() {
            "Namespace" => finalize_namespace(client, name).await,
            "CustomResourceDefinition" => wait_crd_gone(client, &o.value).await,
            _ => {}
        }
    }
    let mut missing: Vec<&Obj> = pristine
        .iter()
        .filter(|(k, _)| !current.contains_key(*k))
        .map(|(_, o)| o)
        .filter(|o| !derived(o))
        .collect();
    missing.sort_by_key(|o| o.ar.kind != "Namespace");
    futures::stream::iter(missing)
        .map(|o| async move {
            let mut attempts = 0;
            loop {
                match api_for(client, o).create(pp, &writable(o, None)).await {
                    Ok(_) => break,
                    // The API server releases a deleted Service's cluster IP by deleting its
                    // IPAddress, and ignores a failure to do so (a controller repairs that in a
                    // real cluster, this one runs none): release a leftover by hand.
                    Err(kube::Error::Api(s))
                        if s.message.contains("already allocated") && attempts < 20 =>
                    {
                        attempts += 1;
                        release_orphaned_ips(client).await;
                        tokio::time::sleep(Duration::from_millis(50)).await;
                    }
                    Err(e) => panic!("restore: create {} {}: {e}", o.ar.kind, o.value),
                }
            }
        })
        .buffer_unordered(8)
        .collect::<Vec<()>>()
        .await;
    for (k, o) in pristine {
        let Some(now) = current.get(k) else { continue };
        if normalize(&now.value) == normalize(&o.value) {
            continue;
        }
        let rv = now.value["metadata"]["resourceVersion"]
            .as_str()
            .map(String::from);
        let name = o.value["metadata"]["name"].as_str().expect("name");
        api_for(client, o)
            .replace(name, pp, &writable(o, rv))
            .await
            .unwrap_or_else(|e| panic!("restore: replace {k}: {e}"));
    }
    // Events are not part of the state, but counting them per case needs a clean slate.
    let events: Api<k8s_openapi::api::core::v1::Event> =
        Api::namespaced(client.clone(), KYMA_SYSTEM);
    events
        .delete_collection(&DeleteParams::default(), &ListParams::default())
        .await
        .expect("delete events");
}

pub fn ip_addresses() -> ApiResource {
    ApiResource::from_gvk_with_plural(
        &kube::core::GroupVersionKind::gvk("networking.k8s.io", "v1", "IPAddress"),
        "ipaddresses",
    )
}

/// Deletes IPAddresses whose Service no longer exists.
pub async fn release_orphaned_ips(client: &Client) {
    let ips: Api<DynamicObject> = Api::all_with(client.clone(), &ip_addresses());
    for ip in ips
        .list(&ListParams::default())
        .await
        .expect("list IPAddresses")
        .items
    {
        let parent = &ip.data["spec"]["parentRef"];
        if parent["resource"] != "services" {
            continue;
        }
        let (Some(ns), Some(name)) = (parent["namespace"].as_str(), parent["name"].as_str()) else {
            continue;
        };
        let services: Api<k8s_openapi::api::core::v1::Service> =
            Api::namespaced(client.clone(), ns);
        if services.get_opt(name).await.expect("get Service").is_none() {
            let _ = ips.delete(&ip.name_any(), &DeleteParams::default()).await;
        }
    }
}

/// Waits until a deleted CRD (its objects deleted with it) is gone and none of its versions is
/// discovered any more, so that a discovery or a run right after meets no trace of it.
pub async fn wait_crd_gone(client: &Client, crd: &Value) {
    let name = crd["metadata"]["name"].as_str().expect("CRD name");
    let crds: Api<CustomResourceDefinition> = Api::all(client.clone());
    let started = Instant::now();
    while crds.get_opt(name).await.expect("get CRD").is_some() {
        assert!(
            started.elapsed() < Duration::from_secs(60),
            "CRD {name} not gone after 60 s"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let group = crd["spec"]["group"].as_str().expect("CRD group");
    let plural = crd["spec"]["names"]["plural"].as_str().expect("CRD plural");
    for version in crd["spec"]["versions"].as_array().into_iter().flatten() {
        let version = version["name"].as_str().expect("CRD version");
        wait_undiscoverable(client, &format!("{group}/{version}"), plural).await;
    }
}

/// Deletes a namespace and finalizes it by hand (no namespace controller runs here).
pub async fn finalize_namespace(client: &Client, name: &str) {
    let api: Api<Namespace> = Api::all(client.clone());
    for _ in 0..100 {
        let Some(mut ns) = api.get_opt(name).await.expect("get namespace") else {
            return;
        };
        if ns
            .spec
            .as_ref()
            .and_then(|s| s.finalizers.as_ref())
            .is_some_and(|f| !f.is_empty())
        {
            ns.spec = Some(Default::default());
            ns.metadata.managed_fields = None;
            api.replace_subresource("finalize", name, &PostParams::default(), &ns)
                .await
                .expect("finalize namespace");
        } else {
            let _ = api.delete(name, &DeleteParams::default()).await;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    panic!("namespace {name} could not be removed");
}
