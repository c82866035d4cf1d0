//! The emulated operator held against the real one: the same scenario on two clusters, one
//! reconciled by each, and what each made compared field by field: which objects carry the
//! operator's label (kinds and names), their labels, annotations, selectors and ports, the
//! ServiceMapping CRD's spec, and the sequence of the CR's `status.state`.

use std::collections::BTreeMap;

use serde_json::{Value, json};

use super::TestCluster;
use super::contract;
use super::snapshot::{discover, snap};

/// What an operator made, by object key (`group/Kind namespace/name`), each as compared.
pub type Made = BTreeMap<String, Value>;

/// Every object that carries the operator's label, as compared: its labels and annotations
/// (without the bookkeeping of the controllers, which run on both clusters alike), a
/// workload's or Service's selector, a Service's type, ClusterIP form and ports, a CRD's spec.
pub async fn made(c: &TestCluster) -> Made {
    snap(&c.client, &discover(&c.client).await)
        .await
        .into_iter()
        .filter(|(_, o)| {
            o.value["metadata"]["labels"][contract::adoption::LABEL]
                == json!(contract::adoption::LABEL_VALUE)
        })
        // The EndpointSlice controller copies a Service's labels to its slices (named at random).
        .filter(|(_, o)| !["EndpointSlice", "Endpoints"].contains(&o.ar.kind.as_str()))
        .map(|(key, o)| {
            let kind = o.ar.kind.clone();
            (key, compared(&kind, &o.value))
        })
        .collect()
}

fn compared(kind: &str, o: &Value) -> Value {
    let meta = &o["metadata"];
    let mut out = json!({
        "labels": meta["labels"],
        "annotations": without_bookkeeping(&meta["annotations"]),
    });
    let spec = &o["spec"];
    match kind {
        "Service" => {
            out["selector"] = spec["selector"].clone();
            out["type"] = spec["type"].clone();
            out["headless"] = json!(spec["clusterIP"] == "None");
            out["ports"] = json!(
                spec["ports"]
                    .as_array()
                    .into_iter()
                    .flatten()
                    .map(|p| json!({"name": p["name"], "port": p["port"],
                        "targetPort": p["targetPort"], "protocol": p["protocol"]}))
                    .collect::<Vec<_>>()
            );
        }
        "StatefulSet" | "Deployment" => {
            out["selector"] = spec["selector"].clone();
            out["podLabels"] = spec["template"]["metadata"]["labels"].clone();
            if kind == "StatefulSet" {
                out["serviceName"] = spec["serviceName"].clone();
                out["podManagementPolicy"] = spec["podManagementPolicy"].clone();
            }
        }
        "CustomResourceDefinition" => out["spec"] = spec.clone(),
        _ => {}
    }
    out
}

/// Annotations without those the controllers write on both clusters alike.
fn without_bookkeeping(annotations: &Value) -> Value {
    let Some(map) = annotations.as_object() else {
        return annotations.clone();
    };
    Value::Object(
        map.iter()
            .filter(|(k, _)| k.as_str() != "deployment.kubernetes.io/revision")
            .map(|(k, v)| (k.clone(), v.clone()))
            .collect(),
    )
}

/// Every difference between what the real operator made and what the emulation made, one
/// line each, naming the object and the field.
pub fn differences(real: &Made, emulated: &Made) -> Vec<String> {
    let mut out = Vec::new();
    for key in real.keys().filter(|k| !emulated.contains_key(*k)) {
        out.push(format!("only the real operator made {key}"));
    }
    for key in emulated.keys().filter(|k| !real.contains_key(*k)) {
        out.push(format!("only the emulation made {key}"));
    }
    for (key, r) in real {
        let Some(e) = emulated.get(key) else {
            continue;
        };
        for field in r
            .as_object()
            .into_iter()
            .flat_map(|m| m.keys())
            .chain(e.as_object().into_iter().flat_map(|m| m.keys()))
            .collect::<std::collections::BTreeSet<_>>()
        {
            if r[field] != e[field] {
                out.push(format!(
                    "{key} {field}: real {} emulated {}",
                    r[field], e[field]
                ));
            }
        }
    }
    out
}

/// An object as its maker made it: without the metadata the server sets on every write, its
/// status, and the addresses it allocates to a Service.
pub fn as_made(kind: &str, object: &Value) -> Value {
    let mut o = object.clone();
    super::drop_server_owned(&mut o);
    if let Some(map) = o.as_object_mut() {
        map.remove("status");
    }
    if kind == "Service"
        && let Some(spec) = o.get_mut("spec").and_then(Value::as_object_mut)
    {
        spec.remove("clusterIP");
        spec.remove("clusterIPs");
    }
    o
}
