//! `clean --hand-over`: what becomes of each legacy object when the module's operator takes the
//! installation over instead of finding it torn down (docs/contract.md, "clean --hand-over and finish").
//! Pure: judged from the object as clean read it and the CR's values.

use serde_json::Value;

use crate::names::hand_over::{self as ho, Fits, Labels};
use crate::names::{LegacyObjects, OPERATOR_OBJECTS};

/// What clean does with one legacy object when it hands over.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Disposition {
    /// The operator's label and both annotations added: it adopts the object in place.
    HandOver,
    /// A workload whose immutable fields refuse the operator's: deleted with its Pods orphaned,
    /// which keep serving until the operator's workload of the same name adopts them.
    Orphan(String),
    /// A name of its own that carries traffic: kept until `finish`.
    LeaveForFinish,
    /// Deleted as by a plain clean (why, where the object is at an operator name).
    Delete(Option<String>),
}

/// The names the operator derives from the CR's values, where a legacy object would stop it:
/// (kind, namespace, name).
#[derive(Debug, Default, Clone)]
pub struct Derived(Vec<(String, String, String)>);

impl Derived {
    /// From the CR's `spec`: the CA Secret of the TLS Secret it names (unless the operator
    /// provisions that Secret itself, under a name of its own).
    pub fn of(spec: Option<&Value>) -> Derived {
        let text = |path: &[&str]| {
            path.iter()
                .try_fold(spec?, |v, key| v.get(*key))
                .and_then(Value::as_str)
                .filter(|s| !s.is_empty())
        };
        let mut derived = Vec::new();
        if let Some(secret) = text(&ho::TLS_SECRET_NAME).filter(|s| *s != ho::AUTO_PROVISION) {
            let namespace = text(&ho::ISTIO_NAMESPACE).unwrap_or(ho::DEFAULT_ISTIO_NAMESPACE);
            derived.push((
                "Secret".to_string(),
                namespace.to_string(),
                format!("{secret}{}", ho::CA_SECRET_SUFFIX),
            ));
        }
        Derived(derived)
    }

    fn holds(&self, kind: &str, namespace: &str, name: &str) -> bool {
        self.0
            .iter()
            .any(|(k, ns, n)| k == kind && ns == namespace && n == name)
    }
}

/// What becomes of the legacy object `name` of `row`, read as `object` (JSON).
pub fn disposition(
    row: &LegacyObjects,
    name: &str,
    object: &Value,
    derived: &Derived,
) -> Disposition {
    let namespace = row.namespace.unwrap_or("");
    if at_operator_name(row, name) {
        let fits = ho::OPERATOR_FIELDS
            .iter()
            .find(|(kind, n, _)| *kind == row.kind && *n == name)
            .map(|(_, _, fits)| *fits);
        let misfit = match fits {
            Some(Fits::Never(why)) => return Disposition::Delete(Some(why.to_string())),
            Some(fits) => misfit(fits, object),
            None => frozen(row.kind, object),
        };
        return match misfit {
            None => Disposition::HandOver,
            Some(why) if matches!(row.kind, "StatefulSet" | "Deployment") => {
                Disposition::Orphan(why)
            }
            Some(why) => Disposition::Delete(Some(why)),
        };
    }
    let left = left_for_finish(row, name);
    if left && derived.holds(row.kind, namespace, name) {
        return Disposition::Delete(Some(
            "the operator makes its own object at this name (the CR's spec.ingress.tls.secretName)"
                .into(),
        ));
    }
    if left {
        Disposition::LeaveForFinish
    } else {
        Disposition::Delete(None)
    }
}

/// Whether the operator's table has an object of the row's kind at this name and namespace.
pub fn at_operator_name(row: &LegacyObjects, name: &str) -> bool {
    crate::legacy::in_table(OPERATOR_OBJECTS, row, name)
}

/// Whether the object `name` of `row` is one that a hand-over leaves for finish (unless the
/// operator derives its own name from the CR there: [`disposition`] says).
pub fn left_for_finish(row: &LegacyObjects, name: &str) -> bool {
    ho::LEFT_FOR_FINISH
        .iter()
        .any(|(kind, ns, n)| *kind == row.kind && Some(*ns) == row.namespace && *n == name)
}

/// Why `object` cannot take the operator's state (`None`: it can).
fn misfit(fits: Fits, object: &Value) -> Option<String> {
    let spec = &object["spec"];
    let mut why = Vec::new();
    match fits {
        Fits::StatefulSet {
            selector,
            pod_management_policy,
            service_name,
        } => {
            why.extend(selector_misfit(spec, selector));
            let policy = spec["podManagementPolicy"]
                .as_str()
                .unwrap_or("OrderedReady");
            if policy != pod_management_policy {
                why.push(format!(
                    "spec.podManagementPolicy is {policy}, the operator's {pod_management_policy}"
                ));
            }
            let service = spec["serviceName"].as_str().unwrap_or("");
            if service != service_name {
                why.push(format!(
                    "spec.serviceName is {service:?}, the operator's {service_name:?}"
                ));
            }
        }
        Fits::Deployment { selector } => why.extend(selector_misfit(spec, selector)),
        Fits::Service { headless, selector } => {
            let have = spec["selector"].as_object();
            let kept = selector
                .iter()
                .all(|(k, v)| have.and_then(|m| m.get(*k)).and_then(Value::as_str) == Some(*v));
            if !kept {
                why.push(format!(
                    "spec.selector {} lacks the operator's {}: it would select other Pods",
                    serde_json::to_string(&spec["selector"]).unwrap_or_default(),
                    labels(selector)
                ));
            }
            let is_headless = spec["clusterIP"].as_str() == Some("None");
            if is_headless != headless {
                why.push(format!(
                    "it is {}headless, the operator's is {}",
                    if is_headless { "" } else { "not " },
                    if headless { "headless" } else { "not" }
                ));
            }
            let kind = spec["type"].as_str().unwrap_or("ClusterIP");
            if kind != "ClusterIP" {
                why.push(format!("spec.type is {kind}, the operator's ClusterIP"));
            }
        }
        Fits::Never(why) => return Some(why.to_string()),
    }
    (!why.is_empty()).then(|| why.join("; "))
}

/// Why an object without a row in the operator's table cannot take its state: a ConfigMap or
/// Secret marked immutable, whose data and flag the API server never lets the operator's forced
/// apply change (`None`: it can).
fn frozen(kind: &str, object: &Value) -> Option<String> {
    (matches!(kind, "ConfigMap" | "Secret") && object[ho::IMMUTABLE] == Value::Bool(true)).then(
        || {
            format!(
                "{}: true, and the API server refuses the operator's apply of its own data \
                 over it: the module would stay in Error",
                ho::IMMUTABLE
            )
        },
    )
}

fn selector_misfit(spec: &Value, wanted: Labels) -> Option<String> {
    let selector = &spec["selector"];
    let have = selector["matchLabels"].as_object();
    let same = selector["matchExpressions"]
        .as_array()
        .is_none_or(Vec::is_empty)
        && have.is_some_and(|m| {
            m.len() == wanted.len()
                && wanted
                    .iter()
                    .all(|(k, v)| m.get(*k).and_then(Value::as_str) == Some(*v))
        });
    (!same).then(|| {
        format!(
            "spec.selector is {}, the operator's {}",
            serde_json::to_string(selector).unwrap_or_default(),
            labels(wanted)
        )
    })
}

fn labels(labels: Labels) -> String {
    let inner: Vec<String> = labels.iter().map(|(k, v)| format!("{k}: {v}")).collect();
    format!("{{matchLabels: {{{}}}}}", inner.join(", "))
}

/// The label and both annotations that make the operator adopt an object, guarded by the
/// object's uid and resourceVersion (the merge patch conflicts when it changed since read),
/// and for a Service the legacy selector's keys that the operator's lacks removed: its forced
/// apply would leave them, and the Service would not select the operator's Pods.
pub fn hand_over_patch(
    uid: Option<&str>,
    resource_version: Option<&str>,
    object: Option<&Value>,
) -> Value {
    let mut patch = crate::service_mappings::adoption_patch();
    patch["metadata"]["uid"] = serde_json::json!(uid);
    patch["metadata"]["resourceVersion"] = serde_json::json!(resource_version);
    if let Some(object) = object {
        let name = object["metadata"]["name"].as_str().unwrap_or("");
        let wanted = ho::OPERATOR_FIELDS
            .iter()
            .find_map(|(kind, n, fits)| match fits {
                Fits::Service { selector, .. } if object["kind"] == *kind && *n == name => {
                    Some(*selector)
                }
                _ => None,
            });
        if let (Some(wanted), Some(have)) = (wanted, object["spec"]["selector"].as_object()) {
            let extra: serde_json::Map<String, Value> = have
                .keys()
                .filter(|k| !wanted.iter().any(|(w, _)| w == k))
                .map(|k| (k.clone(), Value::Null))
                .collect();
            if !extra.is_empty() {
                patch["spec"] = serde_json::json!({ "selector": extra });
            }
        }
    }
    patch
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::names;
    use serde_json::json;

    fn row(kind: &str) -> &'static LegacyObjects {
        names::LEGACY_OBJECTS
            .iter()
            .find(|r| r.kind == kind)
            .expect("a legacy row of this kind")
    }

    #[test]
    fn the_legacy_stateful_set_is_orphaned_with_the_fields_that_refuse() {
        let sts = json!({"spec": {"selector": {"matchLabels": {"app": "connectivity-proxy", "release": "connectivity-proxy"}},
            "podManagementPolicy": "Parallel", "serviceName": "connectivity-proxy-tunnel"}});
        let Disposition::Orphan(why) = disposition(
            row("StatefulSet"),
            "connectivity-proxy",
            &sts,
            &Derived::default(),
        ) else {
            panic!("not orphaned")
        };
        assert!(why.contains("release") && why.contains("Parallel"), "{why}");
    }

    #[test]
    fn a_stateful_set_of_the_operators_shape_is_handed_over() {
        let sts = json!({"spec": {"selector": {"matchLabels": {"app": "connectivity-proxy"}},
            "serviceName": "connectivity-proxy-tunnel"}});
        assert_eq!(
            disposition(
                row("StatefulSet"),
                "connectivity-proxy",
                &sts,
                &Derived::default()
            ),
            Disposition::HandOver
        );
    }

    #[test]
    fn an_immutable_config_map_is_deleted_not_handed_over() {
        let mut cm = json!({"data": {"k": "v"}});
        let mutable = disposition(
            row("ConfigMap"),
            "connectivity-proxy-info",
            &cm,
            &Derived::default(),
        );
        assert_eq!(mutable, Disposition::HandOver);
        cm["immutable"] = json!(true);
        let d = disposition(
            row("ConfigMap"),
            "connectivity-proxy-info",
            &cm,
            &Derived::default(),
        );
        let Disposition::Delete(Some(why)) = d else {
            panic!("not deleted: {d:?}")
        };
        assert!(why.starts_with("immutable: true"), "{why}");
    }

    #[test]
    fn a_headless_service_where_the_operator_allocates_an_ip_is_deleted() {
        let svc = json!({"spec": {"clusterIP": "None", "selector": {"app": "connectivity-proxy", "release": "connectivity-proxy",
            "statefulset.kubernetes.io/pod-name": "connectivity-proxy-0"}}});
        let d = disposition(
            row("Service"),
            "connectivity-proxy-tunnel-0",
            &svc,
            &Derived::default(),
        );
        assert!(matches!(d, Disposition::Delete(Some(_))), "{d:?}");
        assert_eq!(
            disposition(
                row("Service"),
                "connectivity-proxy-tunnel",
                &svc,
                &Derived::default()
            ),
            Disposition::HandOver
        );
    }

    #[test]
    fn a_service_handed_over_loses_the_selector_keys_the_operator_would_leave() {
        let svc = json!({"kind": "Service", "metadata": {"name": "connectivity-proxy"},
            "spec": {"selector": {"app": "connectivity-proxy", "release": "connectivity-proxy"}}});
        let patch = hand_over_patch(Some("u"), Some("7"), Some(&svc));
        assert_eq!(patch["spec"], json!({"selector": {"release": null}}));
        assert_eq!(patch["metadata"]["resourceVersion"], json!("7"));
        let other = json!({"spec": {"selector": {"app": "something-else"}}});
        assert!(matches!(
            disposition(
                row("Service"),
                "connectivity-proxy",
                &other,
                &Derived::default()
            ),
            Disposition::Delete(Some(_))
        ));
    }

    #[test]
    fn a_secret_left_for_finish_at_the_operators_derived_name_is_deleted() {
        let secrets = names::LEGACY_OBJECTS
            .iter()
            .find(|r| r.kind == "Secret" && r.namespace == Some("istio-system"))
            .expect("istio-system Secrets");
        let none = Derived::of(Some(
            &json!({"ingress": {"tls": {"secretName": "auto-provision"}}}),
        ));
        assert_eq!(
            disposition(secrets, "cc-certs-cacert", &json!({}), &none),
            Disposition::LeaveForFinish
        );
        let named = Derived::of(Some(
            &json!({"ingress": {"tls": {"secretName": "cc-certs"}}}),
        ));
        assert!(matches!(
            disposition(secrets, "cc-certs-cacert", &json!({}), &named),
            Disposition::Delete(Some(_))
        ));
        assert_eq!(
            disposition(secrets, "cc-certs", &json!({}), &named),
            Disposition::LeaveForFinish
        );
    }
}
