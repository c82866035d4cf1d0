//! Secret data must never leave its Secret: every output of the tool in a test is recorded, and
//! searched, together with the Events of the cluster, for the values of the fixture's Secrets.

use std::sync::Mutex;

use k8s_openapi::api::core::v1::{Event, Secret};
use kube::Client;
use kube::api::{Api, ListParams};

use super::{LEGACY, RunResult, TestCluster, fixture_dir, yaml_documents};

/// Shorter values could occur in any text by chance; the fixture's are all longer.
const MEANINGFUL_LEN: usize = 8;

/// Every value of the legacy fixture's Secrets, as stored (base64) and decoded, where it is
/// long enough to be meaningful.
pub fn fixture_secret_values() -> Vec<String> {
    let text = std::fs::read_to_string(fixture_dir(LEGACY).join("40-secrets.yaml"))
        .expect("read the fixture's Secrets");
    let mut out = Vec::new();
    for value in yaml_documents(&text) {
        if value.is_null() {
            continue;
        }
        for encoded in value["data"]
            .as_object()
            .into_iter()
            .flat_map(|d| d.values())
        {
            out.push(encoded.as_str().expect("base64 string").to_string());
        }
        let secret: Secret = serde_json::from_value(value).expect("Secret");
        for decoded in secret.data.into_iter().flat_map(|d| d.into_values()) {
            out.push(String::from_utf8(decoded.0).expect("the fixture's values are text"));
        }
    }
    out.retain(|v| v.len() >= MEANINGFUL_LEN);
    out.sort();
    out.dedup();
    assert!(out.len() >= 6, "the fixture's Secret values: {out:?}");
    out
}

/// What the tool printed in a test, command by command.
#[derive(Default)]
pub struct Transcript(Mutex<Vec<(String, String)>>);

impl Transcript {
    /// Keeps stdout and stderr of one run of the tool with `args`.
    pub fn record(&self, args: &[&str], r: &RunResult) {
        let mut texts = self.0.lock().expect("transcript");
        let command = args.join(" ");
        texts.push((format!("stdout of `{command}`"), r.stdout.clone()));
        texts.push((format!("stderr of `{command}`"), r.stderr.clone()));
    }

    /// Runs the tool against `c` (see [`TestCluster::run`]) and records its output.
    pub fn run(&self, c: &TestCluster, args: &[&str]) -> RunResult {
        let r = c.run(args);
        self.record(args, &r);
        r
    }

    /// How many commands were recorded.
    pub fn commands(&self) -> usize {
        self.0.lock().expect("transcript").len() / 2
    }

    /// Fails naming each place where a value of the fixture's Secrets, or one of `also`,
    /// appears: the recorded output, or an Event of the cluster (any namespace).
    pub async fn assert_free_of_secret_data(&self, client: &Client, also: &[String]) {
        let mut texts = self.0.lock().expect("transcript").clone();
        let events: Api<Event> = Api::all(client.clone());
        for e in events
            .list(&ListParams::default())
            .await
            .expect("list Events")
            .items
        {
            let name = format!(
                "{}/{}",
                e.metadata.namespace.clone().unwrap_or_default(),
                e.metadata.name.clone().unwrap_or_default()
            );
            texts.push((
                format!("Event {name}"),
                serde_json::to_string(&e).expect("json"),
            ));
        }
        let mut values = fixture_secret_values();
        values.extend(also.iter().filter(|v| v.len() >= MEANINGFUL_LEN).cloned());
        let found: Vec<String> = texts
            .iter()
            .flat_map(|(where_, text)| {
                values
                    .iter()
                    .filter(|v| text.contains(v.as_str()))
                    .map(move |v| format!("{v:?} in {where_}"))
            })
            .collect();
        assert!(found.is_empty(), "Secret data found:\n{}", found.join("\n"));
    }
}
