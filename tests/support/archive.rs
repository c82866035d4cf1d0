//! clean's archive (docs/contract.md, clean step 3) as the tests read it: its Secrets in the backup
//! namespace, what they hold decoded, and an object in the form the archive keeps it.

use k8s_openapi::api::core::v1::Secret;
use kube::api::{Api, DeleteParams, ListParams};
use kube::{Client, ResourceExt};
use serde_json::{Value, json};

use cp_mod_migrator::archive::Archive;
use cp_mod_migrator::names;

use super::contract::{ARCHIVE, BACKUP_NAMESPACE};
use super::snapshot::{State, drop_allocated_addresses, normalize};

/// The archive that an inline archive Secret (as JSON, e.g. from a snapshot) holds.
pub fn decoded_archive(secret: &Value) -> Archive {
    let bytes: k8s_openapi::ByteString =
        serde_json::from_value(secret["data"][names::archive::DATA_KEY].clone())
            .expect("archive data");
    Archive::decode(&bytes.0).expect("archive decodes")
}

/// Snapshot key of the archive's Secret (it holds the archive inline at this size).
pub fn archive_key() -> String {
    format!("/Secret {}/{}", BACKUP_NAMESPACE, ARCHIVE)
}

/// `state` with the inline archive's data as the archive it decodes to.
pub fn with_archive_decoded(mut state: State) -> State {
    if let Some(secret) = state.get_mut(&archive_key())
        && secret["data"].get(names::archive::DATA_KEY).is_some()
    {
        let archive = serde_json::to_value(decoded_archive(secret)).expect("archive as JSON");
        secret["data"] = json!({ "(decoded)": archive });
    }
    state
}

/// The snapshot key of an object that carries its apiVersion and kind.
pub fn key_of(o: &Value) -> String {
    let api_version = o["apiVersion"].as_str().expect("apiVersion");
    let group = api_version.rsplit_once('/').map_or("", |(g, _)| g);
    format!(
        "{group}/{} {}/{}",
        o["kind"].as_str().expect("kind"),
        o["metadata"]["namespace"].as_str().unwrap_or_default(),
        o["metadata"]["name"].as_str().expect("name")
    )
}

/// An object as the archive keeps it: no server-owned metadata, no status, no allocated
/// Service addresses; its version aside (the archive may read a kind at another one).
pub fn archived_form(o: &Value) -> Value {
    let mut v = normalize(o);
    if let Some(m) = v.as_object_mut() {
        m.remove("status");
        m.remove("apiVersion");
    }
    if o["kind"] == "Service" {
        drop_allocated_addresses(&mut v);
    }
    v
}

pub fn is_archive(s: &Secret) -> bool {
    s.name_any().starts_with(ARCHIVE)
}

/// The archive's Secrets as stored.
pub async fn archive_secrets(client: &Client) -> Vec<Secret> {
    let secrets: Api<Secret> = Api::namespaced(client.clone(), BACKUP_NAMESPACE);
    let listed = secrets
        .list(&ListParams::default())
        .await
        .expect("list Secrets");
    listed.items.into_iter().filter(is_archive).collect()
}

/// The stored data of the archive's Secrets (base64, as an API response carries it).
pub async fn archive_data(client: &Client) -> Vec<String> {
    let mut out = Vec::new();
    for s in archive_secrets(client).await {
        let v = serde_json::to_value(&s).expect("json");
        for d in v["data"].as_object().into_iter().flat_map(|d| d.values()) {
            out.push(d.as_str().expect("base64").to_string());
        }
    }
    assert!(!out.is_empty(), "the archive has data");
    out
}

/// What a cluster cleaned by an older tool lacks.
pub async fn delete_archive(client: &Client) {
    let secrets: Api<Secret> = Api::namespaced(client.clone(), BACKUP_NAMESPACE);
    for s in archive_secrets(client).await {
        secrets
            .delete(&s.name_any(), &DeleteParams::default())
            .await
            .expect("delete the archive");
    }
    assert!(
        cp_mod_migrator::archive::read(client)
            .await
            .expect("read the archive")
            .is_none()
    );
}
