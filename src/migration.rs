//! What migrate writes and check judges, from the same reads: the legacy user configuration
//! read and validated, the CR it becomes, the guarded write, and the migrated fields the API
//! server would drop or change. Neither command calls into the other; both use this.

use kube::api::DynamicObject;
use kube::{Client, ResourceExt};
use serde_json::Value;

use crate::configmaps;
use crate::cr;
use crate::error::{Error, Result, Source, Violation};
use crate::names::{self, config_maps};
use crate::step::Marker;
use crate::{legacy, translate};

/// The user configuration of the legacy installation, read and validated: what migrate (and
/// check, which must say the same about the same input) reads.
pub struct LegacyInput {
    pub document: translate::Document,
    pub ports: [u16; 3],
}

/// Why migrate (and check) have nothing to do without a legacy installation.
pub fn no_legacy_installation() -> String {
    format!(
        "no legacy installation: StatefulSet {}/{} is absent or not managed by the reconciler",
        names::KYMA_SYSTEM,
        names::legacy_marker::STATEFULSET
    )
}

/// The CR as migrate writes it: `current` with the plan applied and the migrated marker set.
pub fn desired(
    current: &DynamicObject,
    input: &LegacyInput,
) -> Result<(translate::Plan, DynamicObject)> {
    let plan = translate::plan(
        current.data.pointer("/spec/config"),
        &input.document,
        input.ports,
    )?;
    let mut desired = current.clone();
    let spec = desired
        .data
        .as_object_mut()
        .map(|o| o.entry("spec").or_insert(Value::Null));
    let Some(spec) = spec else {
        return Err(Error::Rejected {
            object: cr::display(),
            message: "the CR is not a JSON object".into(),
            violations: Vec::new(),
        });
    };
    translate::apply_to_spec(spec, &plan).map_err(|field| Error::Rejected {
        object: cr::display(),
        message: format!("spec field {field} is not a mapping"),
        violations: Vec::new(),
    })?;
    desired
        .annotations_mut()
        .insert(Marker::Migrated.key().into(), names::markers::TRUE.into());
    Ok((plan, desired))
}

/// The migrated fields that `stored_spec` (what the server would store) lacks or changes: those
/// migrate refuses to lose, and those the user accepted with --allow-field-loss.
pub fn judge_losses(
    plan: &translate::Plan,
    stored_spec: &Value,
    allow_field_loss: &[String],
) -> (Vec<translate::Lost>, Vec<translate::Lost>) {
    translate::lost(&plan.expected_spec, stored_spec)
        .into_iter()
        .partition(|lost| !loss_allowed(allow_field_loss, &lost.field()))
}

/// A lost field is accepted when it, or a field above it, was named with --allow-field-loss.
fn loss_allowed(allow_field_loss: &[String], field: &str) -> bool {
    allow_field_loss.iter().any(|allowed| {
        field == allowed
            || field
                .strip_prefix(allowed.as_str())
                .is_some_and(|rest| rest.starts_with('.') || rest.starts_with('['))
    })
}

/// Migrate's error for fields the server would drop or change.
pub fn field_loss(refused: &[translate::Lost]) -> Error {
    let lines: Vec<String> = refused.iter().map(|l| l.to_string()).collect();
    Error::FieldLoss {
        object: cr::display(),
        fields: first_of(&lines, MAX_FIELDS_NAMED),
    }
}

pub fn warn_on_version(install: &legacy::LegacyInstall) {
    match &install.chart {
        Some(chart) if install.is_expected_version() => {
            tracing::info!(%chart, "legacy Connectivity Proxy found")
        }
        chart => tracing::warn!(
            chart = chart.as_deref().unwrap_or("(no chart label)"),
            expected = names::legacy_marker::EXPECTED_CHART,
            "legacy Connectivity Proxy of another version found; migrating it the same way"
        ),
    }
}

/// The legacy installation and its configuration, read together; `None` when there is no
/// legacy installation (then whatever the ConfigMaps hold does not matter).
pub async fn read_legacy_input(
    client: &Client,
) -> Result<Option<(legacy::LegacyInstall, LegacyInput)>> {
    let (install, configuration) =
        futures::join!(legacy::detect(client), read_legacy_configuration(client));
    let Some(install) = install? else {
        return Ok(None);
    };
    Ok(Some((install, configuration?)))
}

/// Reads and validates the two legacy ConfigMaps.
pub async fn read_legacy_configuration(client: &Client) -> Result<LegacyInput> {
    let missing = |name: &str| Error::ConfigMapMissing {
        namespace: names::KYMA_SYSTEM.into(),
        name: name.into(),
    };
    // Both ConfigMaps in one round trip; the configuration document is judged first.
    let (config, info) = futures::join!(
        configmaps::get(client, names::KYMA_SYSTEM, config_maps::CONFIG),
        configmaps::get(client, names::KYMA_SYSTEM, config_maps::INFO)
    );
    let config = config?.ok_or_else(|| missing(config_maps::CONFIG))?;
    let source = Source {
        namespace: names::KYMA_SYSTEM.into(),
        name: config_maps::CONFIG.into(),
        key: Some(config_maps::CONFIG_KEY.into()),
    };
    let text = match config
        .data
        .as_ref()
        .and_then(|d| d.get(config_maps::CONFIG_KEY))
    {
        Some(text) => text,
        None => {
            // Say where the document is instead, if it is in binaryData.
            let binary = config
                .binary_data
                .as_ref()
                .and_then(|b| b.get(config_maps::CONFIG_KEY));
            return Err(match binary {
                Some(bytes) => Error::InvalidConfig {
                    input: source,
                    message: describe_binary(&bytes.0),
                },
                None => Error::KeyMissing { input: source },
            });
        }
    };
    let document = translate::parse_legacy_document(&source, text)?;

    let info = info?.ok_or_else(|| missing(config_maps::INFO))?;
    let ports = translate::parse_ports(
        names::KYMA_SYSTEM,
        config_maps::INFO,
        &info.data.unwrap_or_default(),
    )?;
    Ok(LegacyInput { document, ports })
}

/// Lost fields named in one error at most; a hostile document can have tens of thousands.
const MAX_FIELDS_NAMED: usize = 20;

/// The first `n` lines, and how many more there are.
fn first_of(lines: &[String], n: usize) -> String {
    if lines.len() <= n {
        return lines.join("; ");
    }
    format!(
        "{}; and {} more fields",
        lines[..n].join("; "),
        lines.len() - n
    )
}

/// The configuration document found under binaryData instead of data.
fn describe_binary(bytes: &[u8]) -> String {
    let what = match std::str::from_utf8(bytes) {
        Ok(_) => "UTF-8 text".to_string(),
        Err(e) => format!(
            "bytes that are not UTF-8: byte {:#04x} at offset {}",
            bytes[e.valid_up_to()],
            e.valid_up_to()
        ),
    };
    format!(
        "the document is under binaryData ({} {what}); it must be YAML text under data",
        bytes.len()
    )
}

/// How a replace of the CR guarded by its resourceVersion ended, when the server took it or
/// answered with a conflict (every other answer is an error).
pub enum Replaced {
    /// What the server stored (or, in a dry run, would store).
    Stored(Box<DynamicObject>),
    /// The CR changed since it was read: the server's message.
    Conflict(String),
}

/// Replaces the CR, guarded by the resourceVersion it was read with.
pub async fn write(client: &Client, desired: &DynamicObject, dry_run: bool) -> Result<Replaced> {
    let pp = crate::client::post_params(dry_run);
    match cr::api(client).replace(names::cr::NAME, &pp, desired).await {
        Ok(stored) => Ok(Replaced::Stored(Box::new(stored))),
        Err(kube::Error::Api(s)) if s.code == 409 && s.reason == "Conflict" => {
            Ok(Replaced::Conflict(s.message.clone()))
        }
        Err(kube::Error::Api(s)) if s.code == 422 || s.code == 400 => Err(Error::Rejected {
            object: cr::display(),
            message: s.message.clone(),
            violations: violations(&s),
        }),
        Err(e) => Err(Error::Kube {
            action: format!("writing {}", cr::display()),
            source: e,
        }),
    }
}

/// The causes of a rejected write, as the server names them.
fn violations(status: &kube::core::Status) -> Vec<Violation> {
    let mut out: Vec<Violation> = status
        .details
        .iter()
        .flat_map(|d| &d.causes)
        .map(|c| Violation {
            field: c.field.clone(),
            reason: c.reason.clone(),
            message: c.message.clone(),
        })
        .collect();
    out.sort();
    out
}

pub fn summary(plan: &translate::Plan, ports: [u16; 3], accepted: &[String]) -> String {
    let leaves = count_leaves(plan.expected_spec.get("config").unwrap_or(&Value::Null));
    let mut s = format!(
        "{leaves} fields into spec.config (ports: http {}, rfcAndLdap {}, socks5 {}), tenant mode {}",
        ports[0],
        ports[1],
        ports[2],
        if plan.shared_tenant {
            "shared: secretName set to the shared-tenant secret"
        } else {
            "dedicated"
        }
    );
    if !accepted.is_empty() {
        s.push_str(&format!(
            "; fields dropped as allowed: {}",
            accepted.join("; ")
        ));
    }
    s
}

fn count_leaves(v: &Value) -> usize {
    match v {
        Value::Object(m) if !m.is_empty() => m.values().map(count_leaves).sum(),
        _ => 1,
    }
}
