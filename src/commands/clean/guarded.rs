//! The writes of clean and finish on legacy objects: each only while the object is in the
//! state that the verified archive (or, for a user ConfigMap, the backup check) holds.

use kube::api::{
    DeleteParams, DynamicObject, Patch, PatchParams, Preconditions, PropagationPolicy,
};
use kube::core::ObjectMeta;
use serde_json::Value;

use crate::archive;
use crate::client::patch_params;
use crate::conflicts::Conflicts;
use crate::error::{Context, Error, Result, is_conflict, is_not_found};
use crate::hand_over;
use crate::legacy;
use crate::names;

/// What is done to a legacy object.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum How {
    Delete,
    /// Deleted, its dependents (a workload's Pods or ReplicaSets) left running without an owner.
    Orphan,
    /// The operator's label and both annotations added.
    HandOver,
}

/// What became of it.
pub enum Written {
    Done(String),
    Absent,
    /// It carries the operator's label: kept.
    Protected(String),
}

/// The state of a legacy object that the write is checked against.
pub enum Against<'a> {
    /// As the survey read it, and its entry in the verified archive.
    Archived {
        read: Option<Box<DynamicObject>>,
        entry: Option<&'a Value>,
    },
    /// A user ConfigMap as the backup check saw it (`None`: it did not exist then).
    BackupCheck(Option<Box<ObjectMeta>>),
}

/// Writes one legacy object unless it is the new operator's.
pub async fn write_one(
    object: legacy::LegacyObject,
    against: Against<'_>,
    how: How,
    dry_run: bool,
    deadline: tokio::time::Instant,
) -> Result<Written> {
    let (mut current, entry) = match against {
        Against::BackupCheck(verified) => {
            return write_backed_up(object, verified, how, dry_run).await;
        }
        Against::Archived { read, entry } => (read, entry),
    };
    let legacy::LegacyObject {
        api,
        name,
        display: what,
        ..
    } = object;
    // The uid and resourceVersion guards make sure that what is written is the object as read,
    // unchanged: if it was replaced, or labelled as the operator's, in between, the write
    // conflicts and the object is checked again.
    let mut conflicts = Conflicts::until(deadline);
    loop {
        let Some(read) = current.take() else {
            return Ok(Written::Absent);
        };
        if legacy::has_operator_label(&read.metadata) {
            tracing::info!(object = %what, "carries the new operator's label; kept");
            return Ok(Written::Protected(what));
        }
        // Being deleted already (an orphaning delete waits for the garbage collector): an
        // earlier run's write, or another's; nothing is left to do to it.
        if read.metadata.deletion_timestamp.is_some() {
            tracing::info!(object = %what, "being deleted already");
            return Ok(Written::Absent);
        }
        // Only a state the archive holds may go: a status update changes nothing archived.
        if entry != Some(&archive::archival(&read)?) {
            return Err(Error::ChangedSinceArchive { object: what });
        }
        let object = serde_json::to_value(&*read).ok();
        match write(&api, name, &read.metadata, object.as_ref(), how, dry_run).await {
            Ok(()) => return Ok(done(what, how, dry_run)),
            Err(e) if is_not_found(&e) => return Ok(Written::Absent),
            Err(e) if is_conflict(&e) => {
                conflicts.pause(|| what.clone()).await?;
                current = api
                    .get_opt(name)
                    .await
                    .context(|| format!("reading {what}"))?
                    .map(Box::new);
            }
            Err(e) => return Err(e).context(|| format!("{} {what}", doing(how))),
        }
    }
}

/// Writes a user ConfigMap only in the state whose copy the backup check verified. Any other
/// state has no verified copy: it is kept and the step fails; the next run checks again.
async fn write_backed_up(
    object: legacy::LegacyObject,
    verified: Option<Box<ObjectMeta>>,
    how: How,
    dry_run: bool,
) -> Result<Written> {
    let legacy::LegacyObject {
        api,
        name,
        display: what,
        ..
    } = object;
    let Some(meta) = verified else {
        return match api
            .get_metadata_opt(name)
            .await
            .context(|| format!("reading {what}"))?
        {
            None => Ok(Written::Absent),
            Some(_) => Err(Error::ChangedSinceBackupCheck {
                object: what,
                change: "was created",
            }),
        };
    };
    if legacy::has_operator_label(&meta) {
        tracing::info!(object = %what, "carries the new operator's label; kept");
        return Ok(Written::Protected(what));
    }
    match write(&api, name, &meta, None, how, dry_run).await {
        Ok(()) => Ok(done(what, how, dry_run)),
        Err(e) if is_not_found(&e) => Ok(Written::Absent),
        Err(e) if is_conflict(&e) => Err(Error::ChangedSinceBackupCheck {
            object: what,
            change: "changed",
        }),
        Err(e) => Err(e).context(|| format!("{} {what}", doing(how))),
    }
}

/// The write itself, guarded by the uid and resourceVersion of `meta` (`object`: as read,
/// for what a hand-over changes beyond the label and annotations).
async fn write(
    api: &kube::Api<DynamicObject>,
    name: &str,
    meta: &ObjectMeta,
    object: Option<&Value>,
    how: How,
    dry_run: bool,
) -> std::result::Result<(), kube::Error> {
    match how {
        How::Delete | How::Orphan => {
            let mut params = unchanged(meta, dry_run);
            if how == How::Orphan {
                params.propagation_policy = Some(PropagationPolicy::Orphan);
            }
            api.delete(name, &params).await.map(|_| ())
        }
        How::HandOver => {
            let owned = operators_fields(api, name, object).await?;
            let mut patch = hand_over::hand_over_patch(
                meta.uid.as_deref(),
                meta.resource_version.as_deref(),
                object,
            );
            // Every field the object has now becomes the operator's alone: server-side apply
            // removes what its manager owns and no longer declares, so the operator's first
            // forced apply leaves exactly what it declares. The label and annotations are the
            // commit point, in the same guarded write: before it, a rerun starts over.
            if let Some(owned) = owned {
                patch["metadata"]["managedFields"] = serde_json::json!([owned]);
            }
            api.patch(name, &patch_params(dry_run), &Patch::Merge(&patch))
                .await
                .map(|_| ())
        }
    }
}

/// The `managedFields` entry that gives the operator's field manager every field of the object
/// as it is now (server-owned metadata, status and allocated Service addresses aside): what the
/// server computes for a forced apply of that content by that manager, asked as a dry run.
/// `object` is the object as read; without it (a user ConfigMap checked by its metadata) it is
/// read now, and the guarded write after this finds any change.
async fn operators_fields(
    api: &kube::Api<DynamicObject>,
    name: &str,
    object: Option<&Value>,
) -> std::result::Result<Option<Value>, kube::Error> {
    let current: DynamicObject = match object {
        Some(o) => serde_json::from_value(o.clone()).map_err(kube::Error::SerdeError)?,
        None => api.get(name).await?,
    };
    let content = archive::archival(&current)
        .map_err(|e| kube::Error::SerdeError(serde::de::Error::custom(e.to_string())))?;
    let params = PatchParams {
        dry_run: true,
        force: true,
        field_manager: Some(names::operator::FIELD_MANAGER.into()),
        ..Default::default()
    };
    let would = api.patch(name, &params, &Patch::Apply(&content)).await?;
    let entry = would
        .metadata
        .managed_fields
        .into_iter()
        .flatten()
        .find(|f| {
            f.manager.as_deref() == Some(names::operator::FIELD_MANAGER)
                && f.operation.as_deref() == Some("Apply")
        })
        .map(|mut f| {
            f.time = None;
            f
        });
    entry
        .map(|e| serde_json::to_value(e).map_err(kube::Error::SerdeError))
        .transpose()
}

/// A delete that succeeds only while the object is exactly as `meta` describes it.
pub fn unchanged(meta: &ObjectMeta, dry_run: bool) -> DeleteParams {
    DeleteParams {
        dry_run,
        preconditions: Some(Preconditions {
            uid: meta.uid.clone(),
            resource_version: meta.resource_version.clone(),
        }),
        ..Default::default()
    }
}

fn doing(how: How) -> &'static str {
    match how {
        How::Delete => "deleting",
        How::Orphan => "deleting (its Pods orphaned)",
        How::HandOver => "handing over",
    }
}

fn done(what: String, how: How, dry_run: bool) -> Written {
    if !dry_run {
        let did = match how {
            How::Delete => "deleted",
            How::Orphan => "deleted, its Pods orphaned",
            How::HandOver => "handed over to the module's operator",
        };
        tracing::info!(object = %what, "{did}");
    }
    Written::Done(what)
}
