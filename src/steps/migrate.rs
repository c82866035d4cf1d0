//! Step 1: the user configuration from the legacy ConfigMaps into the ConnectivityProxy CR.

use kube::api::DynamicObject;
use kube::{Client, ResourceExt};
use serde_json::Value;

use super::{Ctx, Outcome};
use crate::configmaps;
use crate::cr::{self, Marker};
use crate::error::{Error, Result, Source};
use crate::names::{self, config_maps};
use crate::error::Violation;
use crate::{diff, legacy, translate};

pub async fn run(ctx: &Ctx) -> Result<Outcome> {
    // The legacy input is read once per run; after a conflict only the CR is read again, which
    // keeps the read-to-write window short against a busy concurrent writer.
    let mut input = None;
    let mut attempt = 0u32;
    loop {
        attempt += 1;
        match attempt_once(ctx, &mut input).await? {
            Attempt::Finished(outcome) => return Ok(outcome),
            Attempt::Conflict(message) => {
                tracing::info!(attempt, conflict = %message, "the CR changed since it was read; reading it again");
                // Conflicts are retried for as long as the run may take: a busy writer delays
                // the migration, it does not fail it.
                let pause = conflict_pause(attempt);
                if tokio::time::Instant::now() + pause > ctx.deadline {
                    return Err(Error::TooManyConflicts {
                        object: cr::display(),
                        attempts: attempt,
                    });
                }
                tokio::time::sleep(pause).await;
            }
        }
    }
}

/// A short, growing, jittered pause, so that a writer on a fixed rhythm does not win every time.
fn conflict_pause(attempt: u32) -> std::time::Duration {
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.subsec_nanos())
        .unwrap_or(0);
    std::time::Duration::from_millis(u64::from(attempt.min(20)) * 10 + u64::from(nanos % 50))
}

enum Attempt {
    Finished(Outcome),
    /// The server's message about the conflict.
    Conflict(String),
}

/// The user configuration of the legacy installation, read and validated: what migrate (and
/// check, which must say the same about the same input) reads.
pub(crate) struct LegacyInput {
    pub document: translate::Document,
    pub ports: [u16; 3],
}

async fn attempt_once(ctx: &Ctx, input: &mut Option<LegacyInput>) -> Result<Attempt> {
    let client = &ctx.client;
    // The first attempt reads the CR and the legacy installation together: they are
    // independent reads. The CR's answer is judged first, so a CR that is missing or marked
    // migrated still decides the outcome; the legacy reads are then merely unused.
    let (lookup, legacy_read) = if input.is_some() {
        (cr::lookup(client).await, None)
    } else {
        let (lookup, legacy_read) = futures::join!(cr::lookup(client), read_legacy_input(client));
        (lookup, Some(legacy_read))
    };
    let current = lookup?.required()?;
    if let Some(key) = cr::marked(&current, Marker::Migrated) {
        return Ok(Attempt::Finished(Outcome::Skipped(format!(
            "already migrated ({key}=true on the CR)"
        ))));
    }
    let read = match legacy_read {
        Some(legacy_read) => {
            let Some((install, read)) = legacy_read? else {
                return Ok(Attempt::Finished(
                    Outcome::Skipped(no_legacy_installation()),
                ));
            };
            warn_on_version(&install);
            input.insert(read)
        }
        // A later attempt: the legacy input was read by the first.
        None => match input {
            Some(read) => read,
            None => {
                return Ok(Attempt::Finished(
                    Outcome::Skipped(no_legacy_installation()),
                ));
            }
        },
    };
    let ports = read.ports;
    let (plan, desired) = desired(&current, read)?;

    // Ask the server what it would store, and refuse if it would drop or change anything.
    let stored = match write(client, &desired, true).await? {
        Ok(stored) => stored,
        Err(conflict) => return Ok(Attempt::Conflict(conflict)),
    };
    let (refused, accepted) = judge_losses(
        &plan,
        stored.data.get("spec").unwrap_or(&Value::Null),
        &ctx.allow_field_loss,
    );
    if !refused.is_empty() {
        return Err(field_loss(&refused));
    }
    let accepted: Vec<String> = accepted.iter().map(|l| l.to_string()).collect();
    for line in &accepted {
        tracing::warn!(field = %line, "accepted loss of a migrated field (--allow-field-loss)");
    }

    let summary = summary(&plan, ports, &accepted);
    if ctx.dry_run {
        ctx.plan(
            "migrate",
            &format!(
                "{summary}\n{} spec.config would change as follows:\n{}",
                cr::display(),
                diff::diff(
                    "config",
                    current.data.pointer("/spec/config").unwrap_or(&Value::Null),
                    &plan.config
                )
            ),
        );
        ctx.assume(Marker::Migrated);
        return Ok(Attempt::Finished(Outcome::Done(format!(
            "would migrate: {summary}"
        ))));
    }
    let written = match write(client, &desired, false).await? {
        Ok(written) => written,
        Err(conflict) => return Ok(Attempt::Conflict(conflict)),
    };
    ctx.hand_on(&written);
    ctx.event(
        &written,
        false,
        "Migrated",
        "Migrate",
        format!("Migrated the legacy Connectivity Proxy configuration: {summary}"),
    );
    Ok(Attempt::Finished(Outcome::Done(summary)))
}

/// Why migrate (and check) have nothing to do without a legacy installation.
pub(crate) fn no_legacy_installation() -> String {
    format!(
        "no legacy installation: StatefulSet {}/{} is absent or not managed by the reconciler",
        names::KYMA_SYSTEM,
        names::legacy_marker::STATEFULSET
    )
}

/// The CR as migrate writes it: `current` with the plan applied and the migrated marker set.
pub(crate) fn desired(
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
pub(crate) fn judge_losses(
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
pub(crate) fn field_loss(refused: &[translate::Lost]) -> Error {
    let lines: Vec<String> = refused.iter().map(|l| l.to_string()).collect();
    Error::FieldLoss {
        object: cr::display(),
        fields: first_of(&lines, MAX_FIELDS_NAMED),
    }
}

pub(crate) fn warn_on_version(install: &legacy::LegacyInstall) {
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

/// Reads and validates the two legacy ConfigMaps.
/// The legacy installation and its configuration, read together; `None` when there is no
/// legacy installation (then whatever the ConfigMaps hold does not matter).
async fn read_legacy_input(
    client: &Client,
) -> Result<Option<(legacy::LegacyInstall, LegacyInput)>> {
    let (install, configuration) =
        futures::join!(legacy::detect(client), read_legacy_configuration(client));
    let Some(install) = install? else {
        return Ok(None);
    };
    Ok(Some((install, configuration?)))
}

pub(crate) async fn read_legacy_configuration(client: &Client) -> Result<LegacyInput> {
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

/// Replaces the CR, guarded by the resourceVersion it was read with; `Err(message)` on a conflict.
pub(crate) async fn write(
    client: &Client,
    desired: &DynamicObject,
    dry_run: bool,
) -> Result<std::result::Result<DynamicObject, String>> {
    let pp = crate::client::post_params(dry_run);
    match cr::api(client).replace(names::cr::NAME, &pp, desired).await {
        Ok(stored) => Ok(Ok(stored)),
        Err(kube::Error::Api(s)) if s.code == 409 && s.reason == "Conflict" => {
            Ok(Err(s.message.clone()))
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

pub(crate) fn summary(plan: &translate::Plan, ports: [u16; 3], accepted: &[String]) -> String {
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
