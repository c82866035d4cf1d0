//! clean's archive of the legacy installation: every legacy object as clean read it and the
//! ServiceMappings it adopted, so that `rollback` can undo clean without the Kyma Control Plane.
//!
//! Stored as gzip-compressed JSON in Secret(s) of the backup namespace (it holds the legacy
//! Secrets). When it fits one Secret, the index Secret holds it inline and every change is one
//! atomic write. A larger archive is split into parts; a new set of parts is written beside the
//! current one and the index switches to it in one write, so a crash never leaves a half-written
//! archive behind.

use std::collections::BTreeMap;
use std::io::{Read, Write};

use futures::{StreamExt, TryStreamExt, stream};
use k8s_openapi::ByteString;
use k8s_openapi::api::core::v1::Secret;
use k8s_openapi::apiextensions_apiserver::pkg::apis::apiextensions::v1::CustomResourceDefinition;
use kube::api::{Api, ApiResource, DynamicObject, ObjectMeta};
use kube::{Client, ResourceExt};
use serde::{Deserialize, Serialize};
use serde_json::Value;
use tokio::time::Instant;

use crate::conflicts;
use crate::error::{Context, Error, Result, is_already_exists, is_conflict};
use crate::names::{self, LEGACY_OBJECTS, archive as names_archive, backup};
use crate::service_mappings;

/// The archive's format. Format 1 held the ServiceMappings' names only (rollback can un-adopt
/// those, not recreate them): it is still read, and rewritten as format 2 by the next write.
pub const FORMAT: u32 = 2;
const READABLE: [u32; 2] = [1, FORMAT];

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Archive {
    pub format: u32,
    /// uid of the ConnectivityProxy CR whose clean wrote it.
    pub cr_uid: String,
    /// Legacy objects as clean read them, without server-owned metadata, `status` and a
    /// Service's allocated addresses; in the order of the contract's table.
    pub objects: Vec<Value>,
    pub service_mappings: MappingsArchive,
}

/// The ServiceMappings and their CRD, in full: the module's operator deletes the CRD it adopted,
/// and with it every ServiceMapping, when the module is disabled.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct MappingsArchive {
    /// What the CRD carried of the adoption's keys before clean adopted it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub crd: Option<Prior>,
    /// The CRD as read before clean adopted it, without server-owned metadata, `status` and the
    /// adoption's keys (`crd` holds those). Format 1 did not hold it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub crd_object: Option<Value>,
    pub items: Vec<MappingEntry>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct MappingEntry {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub namespace: Option<String>,
    pub name: String,
    /// What the mapping carried of the adoption's keys before clean adopted it: the keys it
    /// lacks (or holds with another value) are the ones clean added.
    #[serde(default, skip_serializing_if = "Prior::is_empty")]
    pub prior: Prior,
    /// The mapping as read, without server-owned metadata, `status` and the adoption's keys
    /// (`prior` holds those): with `prior`, exactly the mapping before clean. Format 1 did not
    /// hold it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub object: Option<Compact>,
}

/// An archived object as compact JSON text, parsed only where it is used: parsed, 10 000
/// ServiceMappings held several times the memory (clean's peak RSS 73 MiB against 50).
///
/// Two are equal when their texts are: every one is written from a parsed value (keys in
/// order, numbers as serde_json writes them) and read back as that same text.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(transparent)]
pub struct Compact(Box<serde_json::value::RawValue>);

impl Compact {
    pub fn of(value: &Value) -> Result<Compact> {
        serde_json::value::to_raw_value(value)
            .map(Compact)
            .map_err(|e| Error::Archive {
                reason: format!("encoding an archived object: {e}"),
            })
    }

    /// The object, parsed.
    pub fn value(&self) -> Result<Value> {
        serde_json::from_str(self.0.get()).map_err(|e| Error::Archive {
            reason: format!("an archived object is not valid JSON: {e}"),
        })
    }

    /// Whether `value` is this object.
    pub fn holds(&self, value: &Value) -> bool {
        serde_json::to_string(value).is_ok_and(|text| text == self.0.get())
    }
}

impl PartialEq for Compact {
    fn eq(&self, other: &Compact) -> bool {
        self.0.get() == other.0.get()
    }
}

impl Eq for Compact {}

impl MappingEntry {
    /// The entry of a mapping as read now: its content, and what it carries of the adoption.
    pub fn of(object: &DynamicObject, namespaced: bool) -> Result<MappingEntry> {
        Ok(MappingEntry {
            namespace: if namespaced { object.namespace() } else { None },
            name: object.name_any(),
            prior: Prior::of(&object.metadata),
            object: Some(Compact::of(&without_adoption(archival(object)?))?),
        })
    }

    /// The mapping as it was before clean (its content with the adoption's keys it had then);
    /// `None` when the archive holds its name only (format 1).
    pub fn restored(&self) -> Result<Option<Value>> {
        self.object
            .as_ref()
            .map(|o| o.value().map(|v| self.prior.applied_to(v)))
            .transpose()
    }

    /// `ServiceMapping ns/name`, for messages.
    pub fn display(&self) -> String {
        format!(
            "{} {}{}",
            names::service_mappings::KIND,
            self.namespace
                .as_ref()
                .map(|n| format!("{n}/"))
                .unwrap_or_default(),
            self.name
        )
    }

    fn key(&self) -> (Option<String>, String) {
        (self.namespace.clone(), self.name.clone())
    }
}

/// The values that an object had, before clean adopted it, of the keys adoption sets (only
/// those it had: usually none). Rollback puts these back and removes the others.
#[derive(Debug, Clone, Default, PartialEq, Eq, PartialOrd, Ord, Serialize, Deserialize)]
pub struct Prior {
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub annotations: BTreeMap<String, String>,
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub labels: BTreeMap<String, String>,
}

impl Prior {
    pub fn is_empty(&self) -> bool {
        self.annotations.is_empty() && self.labels.is_empty()
    }

    /// What `meta` carries of the adoption's annotations and label.
    pub fn of(meta: &ObjectMeta) -> Prior {
        let pick = |map: &Option<BTreeMap<String, String>>, keys: &[&str]| {
            map.iter()
                .flatten()
                .filter(|(k, _)| keys.contains(&k.as_str()))
                .map(|(k, v)| (k.clone(), v.clone()))
                .collect()
        };
        Prior {
            annotations: pick(&meta.annotations, &ADOPTION_ANNOTATIONS),
            labels: pick(&meta.labels, &[names::OPERATOR_LABEL]),
        }
    }

    /// A merge patch that puts back exactly this state of the adoption's keys.
    pub fn restoring_patch(&self) -> Value {
        let values = |keys: &[&str], prior: &BTreeMap<String, String>| {
            keys.iter()
                .map(|k| {
                    (
                        k.to_string(),
                        prior.get(*k).map_or(Value::Null, |v| v.clone().into()),
                    )
                })
                .collect::<serde_json::Map<_, _>>()
        };
        serde_json::json!({
            "metadata": {
                "annotations": values(&ADOPTION_ANNOTATIONS, &self.annotations),
                "labels": values(&[names::OPERATOR_LABEL], &self.labels),
            }
        })
    }

    /// Whether `meta` carries exactly this state of the adoption's keys.
    pub fn matches(&self, meta: &ObjectMeta) -> bool {
        Prior::of(meta) == *self
    }

    /// Whether this is the adoption itself: the object was adopted already when it was read.
    pub fn is_adoption(&self) -> bool {
        service_mappings::is_adopted(&ObjectMeta {
            annotations: Some(self.annotations.clone()),
            labels: Some(self.labels.clone()),
            ..Default::default()
        })
    }

    /// `object` (an archived object without the adoption's keys) with this state of them.
    pub fn applied_to(&self, mut object: Value) -> Value {
        for (field, values) in [("annotations", &self.annotations), ("labels", &self.labels)] {
            if values.is_empty() {
                continue;
            }
            let meta = &mut object["metadata"];
            if !meta[field].is_object() {
                meta[field] = Value::Object(Default::default());
            }
            if let Some(map) = meta[field].as_object_mut() {
                map.extend(values.iter().map(|(k, v)| (k.clone(), v.clone().into())));
            }
        }
        object
    }
}

/// An archived object without the adoption's keys (and without maps they leave empty): what
/// is compared to tell whether a ServiceMapping changed since the archive.
pub fn without_adoption(mut object: Value) -> Value {
    for (field, keys) in [
        ("annotations", &ADOPTION_ANNOTATIONS[..]),
        ("labels", &[names::OPERATOR_LABEL][..]),
    ] {
        let Some(meta) = object.get_mut("metadata").and_then(Value::as_object_mut) else {
            break;
        };
        if let Some(map) = meta.get_mut(field).and_then(Value::as_object_mut) {
            for k in keys {
                map.remove(*k);
            }
            if map.is_empty() {
                meta.remove(field);
            }
        }
    }
    object
}

/// The annotations that adoption sets (its label is [`names::OPERATOR_LABEL`]).
pub const ADOPTION_ANNOTATIONS: [&str; 2] = [
    names::service_mappings::PRIMARY_NAME_ANNOTATION,
    names::service_mappings::PRIMARY_NAMESPACE_ANNOTATION,
];

/// Metadata the API server owns: dropped from every archived object.
const SERVER_OWNED: [&str; 9] = [
    "uid",
    "resourceVersion",
    "creationTimestamp",
    "generation",
    "managedFields",
    "ownerReferences",
    "selfLink",
    "deletionTimestamp",
    "deletionGracePeriodSeconds",
];

/// An object as the archive keeps it: as read, without server-owned metadata and `status`;
/// a Service also without the addresses the server allocated (a headless Service keeps `None`).
pub fn archival(object: &DynamicObject) -> Result<Value> {
    let mut v = serde_json::to_value(object).map_err(|e| Error::Archive {
        reason: format!("encoding {} {}: {e}", kind_of(object), object.name_any()),
    })?;
    if let Some(o) = v.as_object_mut() {
        o.remove("status");
    }
    if let Some(meta) = v.get_mut("metadata").and_then(Value::as_object_mut) {
        for field in SERVER_OWNED {
            meta.remove(field);
        }
    }
    if kind_of(object) == "Service"
        && let Some(spec) = v.get_mut("spec").and_then(Value::as_object_mut)
    {
        let headless = spec.get("clusterIP").and_then(Value::as_str) == Some("None");
        if !headless {
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
    Ok(v)
}

/// A digest of an archived object's content, the same whatever the order of its keys: status
/// compares thousands of ServiceMappings with the archive without keeping them.
pub fn digest(object: &Value) -> u64 {
    use std::hash::{Hash, Hasher};
    fn feed(v: &Value, h: &mut std::collections::hash_map::DefaultHasher) {
        match v {
            Value::Object(map) => {
                let mut keys: Vec<&String> = map.keys().collect();
                keys.sort();
                ("{", keys.len()).hash(h);
                for k in keys {
                    k.hash(h);
                    feed(&map[k], h);
                }
            }
            Value::Array(items) => {
                ("[", items.len()).hash(h);
                for i in items {
                    feed(i, h);
                }
            }
            other => other.to_string().hash(h),
        }
    }
    let mut h = std::collections::hash_map::DefaultHasher::new();
    feed(object, &mut h);
    h.finish()
}

/// The ServiceMapping CRD as the archive keeps it: as read, without server-owned metadata,
/// `status` and the adoption's keys.
pub fn crd_archival(crd: &CustomResourceDefinition) -> Result<Value> {
    let object: DynamicObject = serde_json::to_value(crd)
        .and_then(serde_json::from_value)
        .map_err(|e| Error::Archive {
            reason: format!("encoding CustomResourceDefinition {}: {e}", crd.name_any()),
        })?;
    Ok(without_adoption(archival(&object)?))
}

fn kind_of(object: &DynamicObject) -> &str {
    object.types.as_ref().map_or("", |t| t.kind.as_str())
}

/// Which object an archived one is: what the contract's table names it by.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord)]
pub struct ObjectKey {
    pub group: String,
    pub kind: String,
    /// Empty for a cluster-scoped object.
    pub namespace: String,
    pub name: String,
}

impl ObjectKey {
    /// The key of the object `name` of a legacy table's `row`.
    pub fn of_row(row: &names::LegacyObjects, name: &str) -> ObjectKey {
        ObjectKey {
            group: row.group.to_string(),
            kind: row.kind.to_string(),
            namespace: row.namespace.unwrap_or("").to_string(),
            name: name.to_string(),
        }
    }
}

pub fn key_of(object: &Value) -> ObjectKey {
    let s = |p: &str| {
        object
            .pointer(p)
            .and_then(Value::as_str)
            .unwrap_or("")
            .to_string()
    };
    let api_version = s("/apiVersion");
    let group = api_version
        .rsplit_once('/')
        .map_or(String::new(), |(g, _)| g.to_string());
    ObjectKey {
        group,
        kind: s("/kind"),
        namespace: s("/metadata/namespace"),
        name: s("/metadata/name"),
    }
}

/// `Kind namespace/name` of an archived object, for messages.
pub fn display(object: &Value) -> String {
    let ObjectKey {
        kind,
        namespace,
        name,
        ..
    } = key_of(object);
    if namespace.is_empty() {
        format!("{kind} {name}")
    } else {
        format!("{kind} {namespace}/{name}")
    }
}

/// Position of an object in the contract's table, so that an archive has one order.
fn table_position(object: &Value) -> (usize, usize) {
    let ObjectKey {
        group,
        kind,
        namespace,
        name,
    } = key_of(object);
    LEGACY_OBJECTS
        .iter()
        .enumerate()
        .find_map(|(row, r)| {
            (r.group == group && r.kind == kind && r.namespace.unwrap_or("") == namespace)
                .then(|| r.names.iter().position(|n| *n == name).map(|i| (row, i)))
                .flatten()
        })
        .unwrap_or((usize::MAX, usize::MAX))
}

impl Archive {
    pub fn new(cr_uid: String, objects: Vec<Value>, service_mappings: MappingsArchive) -> Archive {
        let mut a = Archive {
            format: FORMAT,
            cr_uid,
            objects,
            service_mappings,
        };
        a.normalize();
        a
    }

    fn normalize(&mut self) {
        self.objects.sort_by_key(table_position);
        self.objects.dedup_by(|a, b| key_of(a) == key_of(b));
        self.service_mappings.items.sort_by_key(MappingEntry::key);
        self.service_mappings
            .items
            .dedup_by(|a, b| a.namespace == b.namespace && a.name == b.name);
    }

    /// This archive with what a later read for the same CR found (clean run again, or
    /// `rollback --prepare`): an entry whose object is gone by now is kept, a fresh read replaces
    /// an older one. A mapping read adopted already keeps the older entry's record of what it
    /// carried before clean: the adoption it carries now is clean's own.
    pub fn merged_with(self, fresh: Archive) -> Archive {
        let mut objects: BTreeMap<ObjectKey, Value> =
            self.objects.into_iter().map(|o| (key_of(&o), o)).collect();
        objects.extend(fresh.objects.into_iter().map(|o| (key_of(&o), o)));
        let (old, new) = (self.service_mappings, fresh.service_mappings);
        let mut items: BTreeMap<(Option<String>, String), MappingEntry> =
            old.items.into_iter().map(|m| (m.key(), m)).collect();
        for mut entry in new.items {
            if let Some(older) = items.get(&entry.key()) {
                if entry.prior.is_adoption() {
                    entry.prior = older.prior.clone();
                }
                if entry.object.is_none() {
                    entry.object = older.object.clone();
                }
            }
            items.insert(entry.key(), entry);
        }
        Archive::new(
            self.cr_uid,
            objects.into_values().collect(),
            MappingsArchive {
                // Once the CRD is adopted a later read sees no change to make: the first record holds.
                crd: old.crd.or(new.crd),
                crd_object: old.crd_object.or(new.crd_object),
                items: items.into_values().collect(),
            },
        )
    }

    pub fn encode(&self) -> Result<Vec<u8>> {
        let json = serde_json::to_vec(self).map_err(|e| Error::Archive {
            reason: format!("encoding the archive: {e}"),
        })?;
        let mut gz = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::best());
        gz.write_all(&json)
            .and_then(|_| gz.finish())
            .map_err(|e| Error::Archive {
                reason: format!("compressing the archive: {e}"),
            })
    }

    pub fn decode(bytes: &[u8]) -> Result<Archive> {
        let mut json = Vec::new();
        flate2::read::GzDecoder::new(bytes)
            .read_to_end(&mut json)
            .map_err(|e| Error::Archive {
                reason: format!("decompressing {}: {e}", location()),
            })?;
        let archive: Archive = serde_json::from_slice(&json).map_err(|e| Error::Archive {
            reason: format!("decoding {}: {e}", location()),
        })?;
        if !READABLE.contains(&archive.format) {
            return Err(Error::Archive {
                reason: format!(
                    "{} has format {}, this tool reads formats {READABLE:?}",
                    location(),
                    archive.format
                ),
            });
        }
        // The next write stores what this tool holds, in its own format.
        Ok(Archive {
            format: FORMAT,
            ..archive
        })
    }
}

/// `Secret connectivity-proxy-backup/connectivity-proxy-legacy-archive`, for messages.
pub fn location() -> String {
    format!(
        "Secret {}/{}",
        names::BACKUP_NAMESPACE,
        names_archive::SECRET
    )
}

fn secrets(client: &Client) -> Api<Secret> {
    Api::namespaced(client.clone(), names::BACKUP_NAMESPACE)
}

/// The archive as stored, and the index that points at it.
#[derive(Debug, Clone)]
pub struct Stored {
    pub archive: Archive,
    /// The index Secret's metadata: its resourceVersion guards the next write.
    index: ObjectMeta,
    /// The part set the index points at (`None`: the archive is inline).
    slot: Option<String>,
    /// Size of the compressed archive.
    pub bytes: usize,
    pub parts: usize,
}

/// The archive, read and decoded in full (so it is checked), or `None` when there is none.
pub async fn read(client: &Client) -> Result<Option<Archive>> {
    Ok(read_stored(client).await?.map(|s| s.archive))
}

/// The archive as the index (and its parts) hold it, checked whole; `None` without an index.
pub async fn read_stored(client: &Client) -> Result<Option<Stored>> {
    let api = secrets(client);
    let Some(index) = api
        .get_opt(names_archive::SECRET)
        .await
        .context(|| format!("reading {}", location()))?
    else {
        return Ok(None);
    };
    let parts = parts_of(&index)?;
    let (bytes, slot) = if parts == 0 {
        (data_of(&index, names_archive::SECRET)?, None)
    } else {
        let slot = slot_of(&index, parts)?;
        let uid = index.annotations().get(names_archive::CR_UID_ANNOTATION);
        let chunks: Vec<Vec<u8>> = stream::iter(1..=parts)
            .map(|i| read_part(&api, &slot, i, uid))
            .buffered(names_archive::MAX_PARTS)
            .try_collect()
            .await?;
        (chunks.concat(), Some(slot))
    };
    let archive = Archive::decode(&bytes)?;
    Ok(Some(Stored {
        archive,
        index: index.metadata,
        slot,
        bytes: bytes.len(),
        parts,
    }))
}

/// How many parts the index names (0: it holds the archive itself).
fn parts_of(index: &Secret) -> Result<usize> {
    match index.annotations().get(names_archive::PARTS_ANNOTATION) {
        None => Ok(0),
        Some(p) => p.parse().map_err(|_| Error::Archive {
            reason: format!(
                "{} annotation {} is {p:?}, not a number of parts",
                location(),
                names_archive::PARTS_ANNOTATION
            ),
        }),
    }
}

/// The set of parts the index points at: a or b, and no more parts than a set holds.
fn slot_of(index: &Secret, parts: usize) -> Result<String> {
    let slot = index.annotations().get(names_archive::SLOT_ANNOTATION);
    slot.filter(|s| names_archive::SLOTS.contains(&s.as_str()) && parts <= names_archive::MAX_PARTS)
        .cloned()
        .ok_or_else(|| Error::Archive {
            reason: format!(
                "{} names {parts} parts in set {:?}; expected at most {} parts in set a or b",
                location(),
                slot.cloned().unwrap_or_default(),
                names_archive::MAX_PARTS
            ),
        })
}

/// Part `i` of set `slot`, which must be there and belong to the same CR as the index.
async fn read_part(
    api: &Api<Secret>,
    slot: &str,
    i: usize,
    uid: Option<&String>,
) -> Result<Vec<u8>> {
    let name = names_archive::part_name(slot, i);
    let display = format!("Secret {}/{name}", names::BACKUP_NAMESPACE);
    let part = api
        .get_opt(&name)
        .await
        .context(|| format!("reading {display}"))?;
    let part = part.ok_or_else(|| Error::Archive {
        reason: format!("part {i} of {} ({display}) is missing", location()),
    })?;
    if part.annotations().get(names_archive::CR_UID_ANNOTATION) != uid {
        return Err(Error::Archive {
            reason: format!(
                "part {i} of {} ({display}) belongs to another CR",
                location()
            ),
        });
    }
    data_of(&part, &name)
}

fn data_of(secret: &Secret, name: &str) -> Result<Vec<u8>> {
    secret
        .data
        .as_ref()
        .and_then(|d| d.get(names_archive::DATA_KEY))
        .map(|b| b.0.clone())
        .ok_or_else(|| Error::Archive {
            reason: format!(
                "Secret {}/{name} has no key {}",
                names::BACKUP_NAMESPACE,
                names_archive::DATA_KEY
            ),
        })
}

/// A Secret of the archive: labelled like the backup copies, tied to the CR's uid.
fn secret(
    name: String,
    cr_uid: &str,
    chunk: Option<&[u8]>,
    parts: usize,
    slot: Option<&str>,
) -> Secret {
    let mut annotations = BTreeMap::from([
        (
            names_archive::CR_UID_ANNOTATION.to_string(),
            cr_uid.to_string(),
        ),
        (
            backup::TIME_ANNOTATION.to_string(),
            jiff::Timestamp::now().to_string(),
        ),
    ]);
    if chunk.is_none() || slot.is_some() {
        annotations.insert(names_archive::PARTS_ANNOTATION.into(), parts.to_string());
    }
    if let Some(slot) = slot {
        annotations.insert(names_archive::SLOT_ANNOTATION.into(), slot.to_string());
    }
    Secret {
        metadata: ObjectMeta {
            name: Some(name),
            namespace: Some(names::BACKUP_NAMESPACE.into()),
            labels: Some(BTreeMap::from([(
                backup::LABEL.to_string(),
                "true".to_string(),
            )])),
            annotations: Some(annotations),
            ..Default::default()
        },
        type_: Some(names::SECRET_TYPE_OPAQUE.into()),
        data: chunk.map(|c| {
            BTreeMap::from([(names_archive::DATA_KEY.to_string(), ByteString(c.to_vec()))])
        }),
        ..Default::default()
    }
}

/// Why a write of the archive did not happen.
pub enum WriteOutcome {
    Written {
        bytes: usize,
        parts: usize,
    },
    /// Someone else wrote the index since it was read: read again and merge again.
    Conflict,
}

/// Writes `archive` in place of `previous` (guarded by its resourceVersion), or creates it.
pub async fn write(
    client: &Client,
    archive: &Archive,
    previous: Option<&Stored>,
    dry_run: bool,
    part_bytes: usize,
    deadline: Instant,
) -> Result<WriteOutcome> {
    let api = secrets(client);
    let blob = archive.encode()?;
    let pp = crate::client::post_params(dry_run);
    let index = if blob.len() <= part_bytes {
        secret(
            names_archive::SECRET.into(),
            &archive.cr_uid,
            Some(&blob),
            0,
            None,
        )
    } else {
        let slot = previous.and_then(|p| p.slot.as_deref());
        let parts = Parts {
            api: &api,
            pp: &pp,
            deadline,
        };
        parts
            .write(&archive.cr_uid, &blob, slot, part_bytes)
            .await?
    };
    let parts = index
        .annotations()
        .get(names_archive::PARTS_ANNOTATION)
        .and_then(|p| p.parse().ok())
        .unwrap_or(0);
    let written = match previous {
        Some(p) => {
            let mut index = index;
            index.metadata.resource_version = p.index.resource_version.clone();
            api.replace(names_archive::SECRET, &pp, &index).await
        }
        None => api.create(&pp, &index).await,
    };
    match written {
        Ok(_) => Ok(WriteOutcome::Written {
            bytes: blob.len(),
            parts,
        }),
        Err(e) if is_conflict(&e) || is_already_exists(&e) => Ok(WriteOutcome::Conflict),
        Err(e) => Err(e).context(|| format!("writing {}", location())),
    }
}

/// Where the parts of an archive too large for one Secret are written.
struct Parts<'a> {
    api: &'a Api<Secret>,
    pp: &'a kube::api::PostParams,
    deadline: Instant,
}

impl Parts<'_> {
    /// Writes `blob` in parts into the set the index does not point at (`previous` is the set
    /// it points at now, which stays whole until the switch), and returns the index that
    /// points at them.
    async fn write(
        &self,
        cr_uid: &str,
        blob: &[u8],
        previous: Option<&str>,
        part_bytes: usize,
    ) -> Result<Secret> {
        let chunks: Vec<&[u8]> = blob.chunks(part_bytes.max(1)).collect();
        if chunks.len() > names_archive::MAX_PARTS {
            return Err(Error::Archive {
                reason: format!(
                    "the archive takes {} bytes compressed, more than {} parts of {part_bytes} bytes; \
                     nothing was deleted",
                    blob.len(),
                    names_archive::MAX_PARTS
                ),
            });
        }
        let slot = match previous {
            Some(s) if s == names_archive::SLOTS[0] => names_archive::SLOTS[1],
            _ => names_archive::SLOTS[0],
        };
        let count = chunks.len();
        stream::iter(chunks.into_iter().enumerate())
            .map(|(i, chunk)| {
                let name = names_archive::part_name(slot, i + 1);
                let part = secret(name, cr_uid, Some(chunk), count, Some(slot));
                async move { put(self.api, &part, self.pp, self.deadline).await }
            })
            .buffer_unordered(names_archive::MAX_PARTS)
            .try_collect::<Vec<()>>()
            .await?;
        let index = names_archive::SECRET.into();
        Ok(secret(index, cr_uid, None, count, Some(slot)))
    }
}

/// Creates a part, or replaces the one of that name (a part set is rewritten whole). The
/// archive never makes a part immutable; one that is fails like any other refused write.
async fn put(
    api: &Api<Secret>,
    part: &Secret,
    pp: &kube::api::PostParams,
    deadline: Instant,
) -> Result<()> {
    let display = format!("Secret {}/{}", names::BACKUP_NAMESPACE, part.name_any());
    conflicts::create_or_replace(api, part, pp, deadline, |_| false, &display).await?;
    Ok(())
}

/// Every ServiceMapping as the archive keeps it (see [`MappingEntry::of`]).
pub async fn list_mappings(
    client: &Client,
    ar: &ApiResource,
    namespaced: bool,
) -> Result<Vec<MappingEntry>> {
    let mut listed = Vec::new();
    let mut failed = None;
    service_mappings::list(client, ar, |page| match page {
        service_mappings::Listed::Restart => listed.clear(),
        service_mappings::Listed::Page(page) => {
            for m in &page {
                match MappingEntry::of(m, namespaced) {
                    Ok(entry) => listed.push(entry),
                    Err(e) if failed.is_none() => failed = Some(e),
                    Err(_) => {}
                }
            }
        }
    })
    .await?;
    match failed {
        Some(e) => Err(e),
        None => Ok(listed),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn object(kind: &str, api_version: &str, ns: Option<&str>, name: &str, extra: Value) -> Value {
        let mut v = json!({"apiVersion": api_version, "kind": kind, "metadata": {"name": name}});
        if let Some(ns) = ns {
            v["metadata"]["namespace"] = json!(ns);
        }
        if let (Some(o), Some(e)) = (v.as_object_mut(), extra.as_object()) {
            o.extend(e.clone());
        }
        v
    }

    fn mapping(name: &str) -> MappingEntry {
        MappingEntry {
            namespace: None,
            name: name.into(),
            prior: Prior::default(),
            object: None,
        }
    }

    #[test]
    fn archival_drops_server_metadata_status_and_allocated_addresses() {
        let svc: DynamicObject = serde_json::from_value(json!({
            "apiVersion": "v1", "kind": "Service",
            "metadata": {"name": "s", "namespace": "kyma-system", "uid": "u", "resourceVersion": "7",
                "creationTimestamp": "2024-01-01T00:00:00Z", "managedFields": [], "labels": {"a": "b"},
                "ownerReferences": [{"apiVersion": "v1", "kind": "X", "name": "x", "uid": "y"}]},
            "spec": {"clusterIP": "10.0.0.1", "clusterIPs": ["10.0.0.1"], "type": "NodePort",
                "healthCheckNodePort": 30001,
                "ports": [{"port": 80, "nodePort": 30080, "protocol": "TCP"}]},
            "status": {"loadBalancer": {}}
        }))
        .unwrap();
        let a = archival(&svc).unwrap();
        assert_eq!(
            a,
            json!({"apiVersion": "v1", "kind": "Service",
                "metadata": {"name": "s", "namespace": "kyma-system", "labels": {"a": "b"}},
                "spec": {"type": "NodePort", "ports": [{"port": 80, "protocol": "TCP"}]}})
        );
        let headless: DynamicObject = serde_json::from_value(json!({
            "apiVersion": "v1", "kind": "Service", "metadata": {"name": "h"},
            "spec": {"clusterIP": "None", "clusterIPs": ["None"]}
        }))
        .unwrap();
        assert_eq!(archival(&headless).unwrap()["spec"]["clusterIP"], "None");
    }

    #[test]
    fn merge_keeps_entries_of_objects_gone_since_and_takes_fresh_reads() {
        let old = Archive::new(
            "cr".into(),
            vec![
                object(
                    "StatefulSet",
                    "apps/v1",
                    Some("kyma-system"),
                    "connectivity-proxy",
                    json!({"spec": 1}),
                ),
                object(
                    "PriorityClass",
                    "scheduling.k8s.io/v1",
                    None,
                    "connectivity-proxy-priority-class",
                    json!({"value": 1}),
                ),
            ],
            MappingsArchive {
                crd: Some(Prior::default()),
                crd_object: None,
                items: vec![mapping("a"), mapping("b")],
            },
        );
        let fresh = Archive::new(
            "cr".into(),
            vec![object(
                "PriorityClass",
                "scheduling.k8s.io/v1",
                None,
                "connectivity-proxy-priority-class",
                json!({"value": 2}),
            )],
            MappingsArchive {
                crd: None,
                crd_object: None,
                items: vec![mapping("c")],
            },
        );
        let merged = old.merged_with(fresh);
        assert_eq!(merged.objects.len(), 2);
        assert_eq!(merged.objects[0]["kind"], "StatefulSet", "table order");
        assert_eq!(merged.objects[1]["value"], 2, "the fresh read wins");
        let names: Vec<&str> = merged
            .service_mappings
            .items
            .iter()
            .map(|m| m.name.as_str())
            .collect();
        assert_eq!(names, ["a", "b", "c"]);
        assert_eq!(merged.service_mappings.crd, Some(Prior::default()));
    }

    #[test]
    fn encode_decode_round_trip_and_a_corrupt_archive_is_named() {
        let a = Archive::new(
            "uid-1".into(),
            vec![object(
                "ConfigMap",
                "v1",
                Some("kyma-system"),
                "connectivity-proxy",
                json!({"data": {"k": "v"}}),
            )],
            MappingsArchive::default(),
        );
        let bytes = a.encode().unwrap();
        assert_eq!(Archive::decode(&bytes).unwrap(), a);
        let err = Archive::decode(&bytes[..bytes.len() / 2])
            .unwrap_err()
            .to_string();
        assert!(err.contains("connectivity-proxy-legacy-archive"), "{err}");
    }

    #[test]
    fn prior_state_is_restored_exactly() {
        let meta = ObjectMeta {
            labels: Some(BTreeMap::from([
                (
                    names::OPERATOR_LABEL.to_string(),
                    "someone-else".to_string(),
                ),
                ("other".to_string(), "x".to_string()),
            ])),
            ..Default::default()
        };
        let prior = Prior::of(&meta);
        assert_eq!(prior.labels.len(), 1);
        assert!(prior.annotations.is_empty());
        let patch = prior.restoring_patch();
        assert_eq!(
            patch["metadata"]["labels"][names::OPERATOR_LABEL],
            "someone-else"
        );
        for a in ADOPTION_ANNOTATIONS {
            assert_eq!(patch["metadata"]["annotations"][a], Value::Null);
        }
        assert!(prior.matches(&meta));
    }

    fn adoption() -> Prior {
        Prior {
            annotations: ADOPTION_ANNOTATIONS
                .iter()
                .zip([names::cr::NAME, names::KYMA_SYSTEM])
                .map(|(k, v)| (k.to_string(), v.to_string()))
                .collect(),
            labels: BTreeMap::from([(
                names::OPERATOR_LABEL.to_string(),
                names::OPERATOR_LABEL_VALUE.to_string(),
            )]),
        }
    }

    fn full(name: &str, prior: Prior, spec: Value) -> MappingEntry {
        MappingEntry {
            namespace: None,
            name: name.into(),
            prior,
            object: Some(
                Compact::of(
                    &json!({"apiVersion": "connectivityproxy.sap.com/v1", "kind": "ServiceMapping",
                "metadata": {"name": name, "labels": {"team": "a"}}, "spec": spec}),
                )
                .unwrap(),
            ),
        }
    }

    #[test]
    fn a_mapping_read_adopted_keeps_the_record_of_what_it_carried_before_clean() {
        let before = Prior {
            labels: BTreeMap::from([(names::OPERATOR_LABEL.to_string(), "x".to_string())]),
            ..Default::default()
        };
        let first = Archive::new(
            "cr".into(),
            vec![],
            MappingsArchive {
                items: vec![full("m", before.clone(), json!({"port": 1}))],
                ..Default::default()
            },
        );
        // Read again once clean adopted it, with a changed spec (rollback --prepare).
        let again = Archive::new(
            "cr".into(),
            vec![],
            MappingsArchive {
                items: vec![full("m", adoption(), json!({"port": 2}))],
                ..Default::default()
            },
        );
        let merged = first.merged_with(again);
        let m = &merged.service_mappings.items[0];
        assert_eq!(
            m.prior, before,
            "clean's adoption is not what it carried before"
        );
        assert_eq!(
            m.object.as_ref().unwrap().value().unwrap()["spec"]["port"],
            2,
            "the content is the newest"
        );
        let restored = m.restored().unwrap().unwrap();
        assert_eq!(
            restored["metadata"]["labels"],
            json!({"team": "a", (names::OPERATOR_LABEL): "x"})
        );
        assert!(restored["metadata"].get("annotations").is_none());
    }

    #[test]
    fn the_adoptions_keys_are_kept_apart_from_the_content() {
        let read: DynamicObject = serde_json::from_value(json!({
            "apiVersion": "connectivityproxy.sap.com/v1", "kind": "ServiceMapping",
            "metadata": {"name": "m", "uid": "u", "resourceVersion": "9",
                "labels": {(names::OPERATOR_LABEL): names::OPERATOR_LABEL_VALUE},
                "annotations": {(ADOPTION_ANNOTATIONS[0]): names::cr::NAME, "note": "kept"}},
            "spec": {"type": "TCP"}, "status": {"x": 1}
        }))
        .unwrap();
        let entry = MappingEntry::of(&read, false).unwrap();
        assert_eq!(
            entry.object.as_ref().map(|o| o.value().unwrap()),
            Some(
                json!({"apiVersion": "connectivityproxy.sap.com/v1", "kind": "ServiceMapping",
                "metadata": {"name": "m", "annotations": {"note": "kept"}}, "spec": {"type": "TCP"}})
            )
        );
        assert_eq!(entry.prior.labels.len(), 1);
        assert_eq!(entry.prior.annotations.len(), 1);
        assert!(!entry.prior.is_adoption(), "one annotation is missing");
        let restored = entry.restored().unwrap().unwrap();
        assert_eq!(restored["metadata"]["labels"], read_labels(&read));
        assert_eq!(restored["metadata"]["annotations"]["note"], "kept");
    }

    fn read_labels(o: &DynamicObject) -> Value {
        serde_json::to_value(o.metadata.labels.clone().unwrap()).unwrap()
    }

    #[test]
    fn a_digest_does_not_depend_on_the_order_of_keys() {
        let a: Value =
            serde_json::from_str(r#"{"a": 1, "b": {"c": [1, "x"], "d": null}}"#).unwrap();
        let b: Value =
            serde_json::from_str(r#"{"b": {"d": null, "c": [1, "x"]}, "a": 1}"#).unwrap();
        let c: Value =
            serde_json::from_str(r#"{"b": {"d": null, "c": ["x", 1]}, "a": 1}"#).unwrap();
        assert_eq!(digest(&a), digest(&b));
        assert_ne!(digest(&a), digest(&c));
    }

    #[test]
    fn an_archive_of_format_1_is_read_and_holds_names_only() {
        let v1 = json!({"format": 1, "crUid": "u", "objects": [],
            "serviceMappings": {"crd": {}, "items": [{"name": "m"}]}});
        let mut gz = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::fast());
        gz.write_all(v1.to_string().as_bytes()).unwrap();
        let a = Archive::decode(&gz.finish().unwrap()).unwrap();
        assert_eq!(a.format, FORMAT, "rewritten in this tool's format");
        assert_eq!(a.service_mappings.items[0].restored().unwrap(), None);
        assert_eq!(a.service_mappings.crd, Some(Prior::default()));
    }
}
