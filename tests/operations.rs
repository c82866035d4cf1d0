//! Operating the tool: the RBAC manifests (deploy/rbac.yaml, and deploy/rbac-rollback.yaml for a
//! rollback only) proven sufficient and minimal on the RBAC-enforcing test API server, the restore
//! drill, and the container images with the example Deployment's init containers run against a
//! test cluster.

mod support;

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use k8s_openapi::api::authorization::v1::ResourceAttributes;
use k8s_openapi::api::core::v1::ConfigMap;
use k8s_openapi::api::events::v1::Event;
use kube::api::{
    Api, DeleteParams, DynamicObject, ListParams, Patch, PatchParams, PostParams,
    ValidationDirective,
};
use serde_json::{Value, json};
use support::podman::{self, Podman};
use support::rbac::{SA_NAME, SA_NAMESPACE};
use support::requests::{Request, requests_in, run_logged};
use support::snapshot::state_diff;
use support::*;

use cp_mod_migrator::names::{self, backup, config_maps, markers};
use cp_mod_migrator::{cr, legacy, termination};

// ---------------------------------------------------------------------------------------------
// The manifest and its rules

/// The everyday permissions: the init containers and the hand-run commands.
const EVERYDAY: &str = "deploy/rbac.yaml";
/// What only `rollback` needs: applied for a rollback and deleted after it.
const ROLLBACK: &str = "deploy/rbac-rollback.yaml";

/// Both manifests as one list of objects, each with the file it comes from.
#[derive(Clone)]
struct Manifest {
    docs: Vec<Value>,
    files: Vec<&'static str>,
}

/// A rule: (document index, index in its `rules`).
type RuleId = (usize, usize);

impl Manifest {
    fn load() -> Manifest {
        let mut m = Manifest {
            docs: Vec::new(),
            files: Vec::new(),
        };
        for file in [EVERYDAY, ROLLBACK] {
            let text = std::fs::read_to_string(repo_root().join(file)).expect(file);
            for doc in yaml_documents(&text) {
                m.docs.push(doc);
                m.files.push(file);
            }
        }
        m
    }

    /// The documents of one file.
    fn of(&self, file: &str) -> impl Iterator<Item = &Value> {
        self.docs
            .iter()
            .zip(&self.files)
            .filter(move |(_, f)| **f == file)
            .map(|(d, _)| d)
    }

    fn file_of(&self, (d, _): RuleId) -> &'static str {
        self.files[d]
    }

    fn rules(&self) -> Vec<RuleId> {
        let mut out = Vec::new();
        for (d, doc) in self.docs.iter().enumerate() {
            if let Some(rules) = doc["rules"].as_array() {
                out.extend((0..rules.len()).map(|r| (d, r)));
            }
        }
        out
    }

    fn rule(&self, (d, r): RuleId) -> &Value {
        &self.docs[d]["rules"][r]
    }

    fn without(&self, (d, r): RuleId) -> Manifest {
        let mut m = self.clone();
        m.docs[d]["rules"].as_array_mut().expect("rules").remove(r);
        m
    }

    /// "deploy/rbac.yaml Role kyma-system/cp-mod-migrator: get,delete apps/statefulsets
    /// [connectivity-proxy]".
    fn describe(&self, id: RuleId) -> String {
        let doc = &self.docs[id.0];
        let rule = self.rule(id);
        let list = |v: &Value| {
            v.as_array()
                .map(|a| {
                    a.iter()
                        .filter_map(|x| x.as_str())
                        .collect::<Vec<_>>()
                        .join(",")
                })
                .unwrap_or_default()
        };
        let names = list(&rule["resourceNames"]);
        format!(
            "{} {} {}{}: {} {}/{}{}",
            self.file_of(id),
            str_of(&doc["kind"]),
            doc["metadata"]["namespace"]
                .as_str()
                .map(|n| format!("{n}/"))
                .unwrap_or_default(),
            str_of(&doc["metadata"]["name"]),
            list(&rule["verbs"]),
            list(&rule["apiGroups"]),
            list(&rule["resources"]),
            if names.is_empty() {
                String::new()
            } else {
                format!(" [{names}]")
            }
        )
    }

    /// Applies the objects of one file, in order.
    async fn apply(&self, c: &TestCluster, file: &str) {
        for doc in self.of(file) {
            let obj: DynamicObject = serde_json::from_value(doc.clone()).expect("object");
            c.apply(&obj).await;
        }
    }

    /// Whether a binding of the manifest gives the Role or ClusterRole `doc` to `user`.
    fn bound_to(&self, doc: &Value, user: &str) -> bool {
        let binding = if str_of(&doc["kind"]) == "Role" {
            "RoleBinding"
        } else {
            "ClusterRoleBinding"
        };
        self.docs.iter().any(|b| {
            str_of(&b["kind"]) == binding
                && b["metadata"]["namespace"] == doc["metadata"]["namespace"]
                && b["roleRef"]["name"] == doc["metadata"]["name"]
                && b["subjects"].as_array().is_some_and(|s| {
                    s.iter().any(|s| {
                        sa_user(str_of(&s["name"])) == user && s["namespace"] == SA_NAMESPACE
                    })
                })
        })
    }

    /// Waits until the API server's authorizer sees every Role and ClusterRole of the manifest
    /// that is bound to `user`, with its binding (RBAC reaches the authorizer through informers,
    /// a moment after the write). Without this, a missing permission could be mere lag.
    async fn wait_effective(&self, c: &TestCluster, user: &str, file: &str) {
        for doc in self.of(file).filter(|d| self.bound_to(d, user)) {
            support::rbac::wait_until_in_effect(c, user, doc).await;
        }
    }
}

fn str_of(v: &Value) -> &str {
    v.as_str().unwrap_or_default()
}

fn sa_user(name: &str) -> String {
    format!("system:serviceaccount:{SA_NAMESPACE}:{name}")
}

/// A cluster with the legacy installation, the module and the everyday manifest, and a
/// kubeconfig that authenticates as the manifest's ServiceAccount (a TokenRequest token).
async fn cluster_as_sa(manifest: &Manifest) -> (TestCluster, PathBuf) {
    let c = TestCluster::legacy_and_module().await;
    manifest.apply(&c, EVERYDAY).await;
    let token = c.token_for(SA_NAMESPACE, SA_NAME).await;
    manifest
        .wait_effective(&c, &sa_user(SA_NAME), EVERYDAY)
        .await;
    let kubeconfig = c.kubeconfig_with_token(&token, "sa.kubeconfig");
    (c, kubeconfig)
}

/// The rules of the manifest that allow `req` (ClusterRoles are bound cluster-wide, Roles in
/// their namespace).
fn rules_allowing(m: &Manifest, req: &Request) -> Vec<RuleId> {
    let has = |v: &Value, s: &str| v.as_array().is_some_and(|a| a.iter().any(|x| x == s));
    m.rules()
        .into_iter()
        .filter(|&id| {
            let doc = &m.docs[id.0];
            let scope_ok = match str_of(&doc["kind"]) {
                "ClusterRole" => true,
                _ => doc["metadata"]["namespace"].as_str() == req.namespace.as_deref(),
            };
            let rule = m.rule(id);
            let names = rule["resourceNames"].as_array();
            scope_ok
                && has(&rule["apiGroups"], &req.group)
                && has(&rule["resources"], &req.resource)
                && has(&rule["verbs"], &req.verb)
                && match names {
                    None => true,
                    Some(n) if n.is_empty() => true,
                    Some(_) => req
                        .name
                        .as_deref()
                        .is_some_and(|name| has(&rule["resourceNames"], name)),
                }
        })
        .collect()
}

// ---------------------------------------------------------------------------------------------
// The scenario every RBAC test runs: the migration and each hand-run command, as the SA

/// Where a scenario stopped, and the log line or check that says why.
#[derive(Debug)]
struct Stop {
    step: String,
    evidence: String,
}

impl Stop {
    /// The API server refused a request.
    fn forbidden(&self) -> bool {
        self.evidence.contains("forbidden")
    }

    /// `rollback` refused before writing anything, for want of exactly `permissions`
    /// ("create apps/deployments in kyma-system"), naming the manifest that grants them.
    fn rollback_refused_for(&self, permissions: &[String]) -> bool {
        self.step == "rollback"
            && self
                .evidence
                .contains(&format!("rollback needs the permissions of {ROLLBACK}"))
            && self.evidence.contains("nothing was written")
            && permissions
                .iter()
                .all(|p| self.evidence.contains(p.as_str()))
    }
}

/// What a user ConfigMap holds that must survive migration and restore.
type Content = (
    BTreeMap<String, String>,
    BTreeMap<String, k8s_openapi::ByteString>,
    BTreeMap<String, String>,
    BTreeMap<String, String>,
);

fn content(cm: &ConfigMap) -> Content {
    (
        cm.data.clone().unwrap_or_default(),
        cm.binary_data.clone().unwrap_or_default(),
        cm.metadata.labels.clone().unwrap_or_default(),
        cm.metadata.annotations.clone().unwrap_or_default(),
    )
}

async fn user_config(c: &TestCluster, namespace: &str) -> Vec<Option<Content>> {
    let api: Api<ConfigMap> = Api::namespaced(c.client.clone(), namespace);
    let mut out = Vec::new();
    for name in config_maps::USER_CONFIG {
        out.push(api.get_opt(name).await.expect("get").map(|cm| content(&cm)));
    }
    out
}

/// The Events the tool recorded in kyma-system.
async fn our_events(c: &TestCluster) -> Vec<Event> {
    let events: Api<Event> = Api::namespaced(c.client.clone(), names::KYMA_SYSTEM);
    events
        .list(&ListParams::default())
        .await
        .expect("events")
        .items
        .into_iter()
        .filter(|e| e.reporting_controller.as_deref() == Some(names::FIELD_MANAGER))
        .collect()
}

async fn event_reasons(c: &TestCluster) -> BTreeSet<String> {
    our_events(c)
        .await
        .into_iter()
        .filter_map(|e| e.reason)
        .collect()
}

/// Removes step markers from the CR, as the admin.
async fn unmark(c: &TestCluster, keys: &[&str]) {
    let unmark: serde_json::Map<String, Value> =
        keys.iter().map(|k| (k.to_string(), Value::Null)).collect();
    cr::api(&c.client)
        .patch(
            names::cr::NAME,
            &PatchParams::default(),
            &Patch::Merge(json!({"metadata": {"annotations": unmark}})),
        )
        .await
        .expect("unmark");
}

/// The legacy PriorityClass back, with a label of its own (as the control plane might bring
/// it back), as the admin.
async fn reinstall_changed_priority_class(c: &TestCluster) {
    let text = std::fs::read_to_string(fixture_dir(LEGACY).join("20-priorityclass.yaml"))
        .expect("fixture");
    let mut pc: Value = from_yaml(&text);
    pc["metadata"]["labels"]["changed"] = json!("by-the-control-plane");
    c.apply(&serde_json::from_value(pc).expect("object")).await;
}

struct Scenario<'a> {
    c: &'a TestCluster,
    kubeconfig: &'a Path,
    /// Applied with its deploy/rbac-rollback.yaml part only for the rollback.
    manifest: &'a Manifest,
    /// Each command's arguments and result.
    runs: Vec<(String, RunResult)>,
}

impl Scenario<'_> {
    /// Runs a command as the SA; a non-zero exit, or a refusal in its log (an Event the server
    /// refused is only a warning), stops the scenario.
    fn cmd(&mut self, args: &[&str]) -> Result<&RunResult, Stop> {
        let r = run_logged(self.kubeconfig, args);
        let step = args.join(" ");
        let problems: Vec<String> = r
            .stderr
            .lines()
            .filter_map(|l| serde_json::from_str::<Value>(l).ok())
            .filter(|v| v["level"] == "WARN" || v["level"] == "ERROR")
            .map(|v| v.to_string())
            .collect();
        let refusal = problems.iter().find(|p| p.contains("forbidden")).cloned();
        let failed = !r.success() || refusal.is_some();
        self.runs.push((step.clone(), r));
        if failed {
            return Err(Stop {
                step,
                evidence: refusal
                    .or_else(|| problems.last().cloned())
                    .unwrap_or_else(|| "exit code non-zero".into()),
            });
        }
        Ok(&self.runs.last().expect("just pushed").1)
    }

    /// Runs `rollback` (with `extra` arguments) as the SA without deploy/rbac-rollback.yaml: it
    /// must refuse, naming that manifest, and write nothing.
    async fn rollback_refused(&mut self, extra: &[&str]) -> Result<(), Stop> {
        let mut args = vec!["rollback"];
        args.extend_from_slice(extra);
        let step = format!("{} without {ROLLBACK}", args.join(" "));
        let before = self.c.snapshot().await;
        let r = run_logged(self.kubeconfig, &args);
        let reason = r.reason();
        let refused = !r.success()
            && reason.contains(&format!("rollback needs the permissions of {ROLLBACK}"))
            && reason.contains("nothing was written");
        self.runs.push((step.clone(), r));
        Self::check(&step, refused, || reason.clone())?;
        let diff = state_diff(&before, &self.c.snapshot().await);
        Self::check(&step, diff.is_empty(), || format!("it wrote: {diff:?}"))
    }

    fn check(step: &str, ok: bool, what: impl FnOnce() -> String) -> Result<(), Stop> {
        if ok {
            Ok(())
        } else {
            Err(Stop {
                step: step.into(),
                evidence: what(),
            })
        }
    }

    /// The migration (`run`), then the operator Deployment and `status` (which lists its Pods),
    /// `restore` (create, then over a changed ConfigMap), `mark-done`, and `status` once the
    /// module is disabled. Each result is checked; with
    /// `reference`, the state after `run` must equal it.
    async fn play(&mut self, reference: Option<&BTreeMap<String, Value>>) -> Result<(), Stop> {
        let c = self.c;
        let originals = user_config(c, names::KYMA_SYSTEM).await;

        let r = self.cmd(&["run"])?;
        let reason = r.reason();
        Self::check(
            "run",
            reason == "migrate: done; backup: done; clean: done",
            || reason.clone(),
        )?;
        if let Some(reference) = reference {
            let got = normalized(c.snapshot().await);
            let diff = state_diff(reference, &got);
            Self::check("run: end state", diff.is_empty(), || {
                format!("differs from the admin run: {diff:?}")
            })?;
        }
        let reasons = event_reasons(c).await;
        Self::check(
            "run: Events",
            ["Migrated", "BackedUp", "Cleaned"]
                .iter()
                .all(|r| reasons.contains(*r)),
            || format!("Events recorded: {reasons:?}"),
        )?;

        // The operator Deployment as the module installs it: status reads its Pods (none here:
        // no controller runs), by its selector; the module reports Ready.
        support::module::install_operator(c).await;
        support::module::report_state(c, "Ready").await;
        let r = self.cmd(&["status", "-o", "json"])?;
        let status: Value = serde_json::from_str(&r.stdout).expect("status JSON");
        Self::check(
            "status",
            status["phase"] == "done"
                && status["failing"].is_null()
                && status["legacy_installation"].is_null()
                && status["markers"]
                    .as_object()
                    .is_some_and(|m| m.len() == 3 && m.values().all(|k| k.as_str().is_some()))
                && status["backup"]
                    .as_array()
                    .is_some_and(|b| b.iter().all(|c| c["copy_exists"] == true))
                && status["legacy_objects_remaining"] == json!([])
                && status["service_mappings"]
                    == json!({"total": 3, "adopted": 3, "crd_adopted": true,
                              "refused_by_module_schema": 0})
                && status["operator"]["replicas"] == 1,
            || status.to_string(),
        )?;

        // clean again for the same CR (its marker removed, one legacy object back with a change
        // of its own), with the archive split into four parts: the archive gains the changed
        // object and the index switches to the new set of parts in one update.
        let bytes = status["archive"]["bytes"].as_u64().expect("archive size") as usize;
        reinstall_changed_priority_class(c).await;
        unmark(c, &[markers::CLEANED]).await;
        let part_bytes = (bytes.div_ceil(4) + 8).to_string();
        let r = self.cmd(&["--archive-part-bytes", &part_bytes, "clean"])?;
        let reason = r.reason();
        Self::check(
            "clean again, archive in parts",
            reason.starts_with("archive of 35 objects and 3 ServiceMappings verified"),
            || reason.clone(),
        )?;
        let r = self.cmd(&["status", "-o", "json"])?;
        let archive: Value =
            serde_json::from_str::<Value>(&r.stdout).expect("status JSON")["archive"].clone();
        Self::check(
            "status: the archive in four parts",
            archive["parts"] == 4
                && archive["objects"] == 35
                && archive["belongs_to_current_cr"] == true,
            || archive.to_string(),
        )?;

        let r = self.cmd(&["restore"])?;
        let reason = r.reason();
        Self::check("restore", reason.starts_with("restored"), || reason.clone())?;
        let restored = user_config(c, names::KYMA_SYSTEM).await;
        Self::check("restore: content", restored == originals, || {
            format!("{restored:?} != {originals:?}")
        })?;
        // As if the control plane had brought the ConfigMap back with other content: restore
        // replaces it.
        let cms: Api<ConfigMap> = Api::namespaced(c.client.clone(), names::KYMA_SYSTEM);
        cms.patch(
            config_maps::INFO,
            &PatchParams::default(),
            &Patch::Merge(json!({"metadata": {"labels": {"extra": "x"}},
                "data": {"onpremise_proxy_http_port": "1"}})),
        )
        .await
        .expect("patch");
        self.cmd(&["restore"])?;
        let restored = user_config(c, names::KYMA_SYSTEM).await;
        Self::check(
            "restore over a changed ConfigMap",
            restored == originals,
            || format!("{restored:?} != {originals:?}"),
        )?;

        unmark(
            c,
            &[markers::MIGRATED, markers::BACKED_UP, markers::CLEANED],
        )
        .await;
        let r = self.cmd(&["mark-done"])?;
        let reason = r.reason();
        let cr_now = c.cr().await;
        Self::check(
            "mark-done",
            reason.starts_with("set ")
                && [markers::MIGRATED, markers::BACKED_UP, markers::CLEANED]
                    .iter()
                    .all(|k| {
                        cr_now
                            .metadata
                            .annotations
                            .as_ref()
                            .and_then(|a| a.get(*k))
                            .is_some_and(|v| v == "true")
                    })
                && event_reasons(c).await.contains("MarkedDone"),
            || reason.clone(),
        )?;

        // The runbook's first step, with the module still there: the mappings into the archive.
        let r = self.cmd(&["rollback", "--prepare"])?;
        let reason = r.reason();
        Self::check(
            "rollback --prepare",
            reason.starts_with("recorded 3 ServiceMappings (0 new since the archive was written"),
            || reason.clone(),
        )?;

        // Without the CR, the commands ask for the CRD to tell which of the two is missing. The
        // module disabled: its operator Deployment goes first.
        Api::<k8s_openapi::api::apps::v1::Deployment>::namespaced(
            c.client.clone(),
            names::KYMA_SYSTEM,
        )
        .delete(names::OPERATOR_DEPLOYMENT, &DeleteParams::default())
        .await
        .expect("delete the operator Deployment");
        cr::api(&c.client)
            .delete(names::cr::NAME, &DeleteParams::default())
            .await
            .expect("delete CR");
        let r = self.cmd(&["status", "-o", "json"])?;
        let status: Value = serde_json::from_str(&r.stdout).expect("status JSON");
        Self::check(
            "status without the CR",
            status["cr_exists"] == false && status["crd_installed"] == true,
            || status.to_string(),
        )?;

        // The module disabled (its operator's cleanup deletes the ServiceMapping CRD that clean
        // adopted, and every mapping with it): rollback brings the legacy installation and the
        // mappings back from the archive, once deploy/rbac-rollback.yaml is applied; without
        // it, it refuses and writes nothing.
        operator::uninstall(c).await;
        self.rollback_refused(&[]).await?;
        self.manifest.apply(c, ROLLBACK).await;
        self.manifest
            .wait_effective(c, &sa_user(SA_NAME), ROLLBACK)
            .await;
        let r = self.cmd(&["rollback"])?;
        let reason = r.reason();
        Self::check(
            "rollback",
            reason.starts_with("recreated 33 legacy objects; 0 left as they were")
                && reason.contains(
                    "un-adopted 0 ServiceMappings, recreated 3 ServiceMappings and their CRD",
                ),
            || reason.clone(),
        )?;
        Self::check(
            "rollback: the legacy installation is back",
            legacy::detect(&c.client).await.expect("detect").is_some(),
            || "no legacy StatefulSet".into(),
        )?;
        Ok(())
    }

    /// Each request, with the command that made it.
    fn requests(&self) -> Vec<(&str, Request)> {
        self.runs
            .iter()
            .flat_map(|(step, r)| {
                requests_in(&r.stderr)
                    .into_iter()
                    .map(move |q| (step.as_str(), q))
            })
            .collect()
    }
}

/// A snapshot without what differs between two clusters doing the same thing: identities,
/// versions, times, and what the API server writes about itself (its CA, its port).
fn normalized(snapshot: BTreeMap<String, Value>) -> BTreeMap<String, Value> {
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
            if k == format!(
                "/Secret {}/{}",
                names::BACKUP_NAMESPACE,
                names::archive::SECRET
            ) {
                let mut archive = serde_json::to_value(decoded_archive(&v)).expect("archive");
                archive["crUid"] = Value::Null;
                v["data"] = archive;
                v["metadata"]["annotations"][names::archive::CR_UID_ANNOTATION] = Value::Null;
            }
            strip(&mut v);
            (k, v)
        })
        .collect()
}

// ---------------------------------------------------------------------------------------------
// RBAC: sufficient

/// The whole migration and every hand-run command succeed as the ServiceAccount, and the state
/// after `run` equals that of the same run with cluster-admin rights. Every request the tool
/// made is allowed by exactly one rule, and every verb and every resource name of every rule
/// was used by some request: so no rule, verb or name is redundant (the next test proves each
/// rule necessary by removing it).
#[tokio::test]
async fn the_rbac_manifest_suffices_for_every_command() {
    let manifest = Manifest::load();
    let (reference, (c, kubeconfig)) = tokio::join!(
        async {
            let a = TestCluster::legacy_and_module().await;
            manifest.apply(&a, EVERYDAY).await;
            a.run(&["run"]).assert_ok();
            normalized(a.snapshot().await)
        },
        cluster_as_sa(&manifest)
    );
    let mut scenario = Scenario {
        c: &c,
        kubeconfig: &kubeconfig,
        manifest: &manifest,
        runs: Vec::new(),
    };
    if let Err(stop) = scenario.play(Some(&reference)).await {
        let last = scenario.runs.last().map(|(_, r)| r.stderr.clone());
        panic!(
            "as {SA_NAME}: {} failed: {}\n{}",
            stop.step,
            stop.evidence,
            last.unwrap_or_default()
        );
    }

    let mut used: BTreeSet<(RuleId, String, Option<String>)> = BTreeSet::new();
    // The rules that a command other than `rollback` used.
    let mut used_everyday: BTreeSet<RuleId> = BTreeSet::new();
    let requests = scenario.requests();
    assert!(
        requests.len() > 100,
        "request log: {} requests",
        requests.len()
    );
    for (step, req) in &requests {
        let allowing = rules_allowing(&manifest, req);
        assert_eq!(
            allowing.len(),
            1,
            "{req:?} is allowed by {:?}: every request needs exactly one rule",
            allowing
                .iter()
                .map(|id| manifest.describe(*id))
                .collect::<Vec<_>>()
        );
        let id = allowing[0];
        if !step.starts_with("rollback") {
            used_everyday.insert(id);
        }
        let named = manifest.rule(id)["resourceNames"]
            .as_array()
            .is_some_and(|n| !n.is_empty());
        used.insert((
            id,
            req.verb.clone(),
            if named { req.name.clone() } else { None },
        ));
    }
    // `escalate` and `bind` are checked by the API server inside a create, not requested: a
    // ClusterRole's create used `escalate`, a ClusterRoleBinding's create `bind` on its roleRef.
    let created = |resource: &str| {
        requests
            .iter()
            .any(|(_, r)| r.verb == "create" && r.resource == resource)
    };
    let implicit = |verb: &str, name: Option<String>| {
        let req = Request {
            verb: verb.into(),
            group: "rbac.authorization.k8s.io".into(),
            resource: "clusterroles".into(),
            namespace: None,
            name: name.clone(),
        };
        let allowing = rules_allowing(&manifest, &req);
        assert_eq!(allowing.len(), 1, "{req:?}");
        (allowing[0], verb.to_string(), name)
    };
    if created("clusterroles") {
        used.insert(implicit("escalate", None));
    }
    if created("clusterrolebindings") {
        let bindings: Api<k8s_openapi::api::rbac::v1::ClusterRoleBinding> =
            Api::all(c.client.clone());
        for name in legacy_names("ClusterRoleBinding") {
            if let Some(b) = bindings.get_opt(name).await.expect("get binding") {
                used.insert(implicit("bind", Some(b.role_ref.name)));
            }
        }
    }
    // An archive in parts is rewritten into the set the index does not point at: set b on the
    // second write in parts, and a part is updated in place only from the third one on
    // (tests/rollback.rs writes them all); the scenario writes set a once.
    let set_b: Vec<String> = (1..=names::archive::MAX_PARTS)
        .map(|i| names::archive::part_name(names::archive::SLOTS[1], i))
        .collect();
    let is_part = |name: &str| {
        names::archive::SLOTS.iter().any(|slot| {
            (1..=names::archive::MAX_PARTS).any(|i| names::archive::part_name(slot, i) == name)
        })
    };
    let mut unused = Vec::new();
    for id in manifest.rules() {
        let rule = manifest.rule(id);
        let names: Vec<Option<String>> = match rule["resourceNames"].as_array() {
            Some(n) if !n.is_empty() => n.iter().map(|x| Some(str_of(x).to_string())).collect(),
            _ => vec![None],
        };
        for verb in rule["verbs"].as_array().expect("verbs") {
            for name in &names {
                let rewrite_only = name
                    .as_ref()
                    .is_some_and(|n| set_b.contains(n) || (str_of(verb) == "update" && is_part(n)));
                if !used.contains(&(id, str_of(verb).to_string(), name.clone())) && !rewrite_only {
                    unused.push(format!(
                        "{}: {} {}",
                        manifest.describe(id),
                        str_of(verb),
                        name.as_deref().unwrap_or("(any name)")
                    ));
                }
            }
        }
    }
    assert!(
        unused.is_empty(),
        "granted but never used:\n{}",
        unused.join("\n")
    );
    // The everyday manifest holds nothing that only rollback uses (the everyday commands ran
    // before deploy/rbac-rollback.yaml was applied, so they need nothing of it).
    let rollback_only: Vec<String> = manifest
        .rules()
        .into_iter()
        .filter(|&id| manifest.file_of(id) == EVERYDAY && !used_everyday.contains(&id))
        .map(|id| manifest.describe(id))
        .collect();
    assert!(
        rollback_only.is_empty(),
        "used by rollback alone, so it belongs in {ROLLBACK}:\n{}",
        rollback_only.join("\n")
    );
    // Every Role and ClusterRole is bound to the ServiceAccount, by a binding of its scope in
    // its own file; the rollback's only to it, never to the operator's ServiceAccount.
    for (doc, file) in manifest.docs.iter().zip(&manifest.files) {
        let kind = str_of(&doc["kind"]);
        if *file == ROLLBACK && doc["subjects"].is_array() {
            assert_eq!(
                doc["subjects"],
                json!([{"kind": "ServiceAccount", "name": SA_NAME, "namespace": SA_NAMESPACE}]),
                "{ROLLBACK}: {kind} {}",
                str_of(&doc["metadata"]["name"])
            );
        }
        if kind != "Role" && kind != "ClusterRole" {
            continue;
        }
        let binding = if kind == "Role" {
            "RoleBinding"
        } else {
            "ClusterRoleBinding"
        };
        assert!(
            manifest.of(file).any(|b| str_of(&b["kind"]) == binding
                && b["metadata"]["namespace"] == doc["metadata"]["namespace"]
                && b["roleRef"]["kind"] == kind
                && b["roleRef"]["name"] == doc["metadata"]["name"]
                && b["subjects"].as_array().is_some_and(|s| s.iter().any(|s| {
                    s["kind"] == "ServiceAccount"
                        && s["name"] == SA_NAME
                        && s["namespace"] == SA_NAMESPACE
                }))),
            "{kind} {} has no {binding} to {SA_NAME}",
            str_of(&doc["metadata"]["name"])
        );
    }
}

/// No wildcards anywhere, and a rule without `resourceNames` only where names cannot be given:
/// `create` and `list` (the name is not in the request path), and the users' own ServiceMappings.
#[test]
fn the_rbac_manifest_has_no_wildcards_and_names_what_it_can() {
    let manifest = Manifest::load();
    for id in manifest.rules() {
        let rule = manifest.rule(id);
        let what = manifest.describe(id);
        for key in ["apiGroups", "resources", "verbs", "resourceNames"] {
            assert!(
                rule[key]
                    .as_array()
                    .is_none_or(|a| a.iter().all(|x| !str_of(x).contains('*'))),
                "{what}: wildcard in {key}"
            );
        }
        assert!(rule.get("nonResourceURLs").is_none(), "{what}");
        if rule["resourceNames"].as_array().is_none_or(Vec::is_empty) {
            let user_named = rule["resources"] == json!(["servicemappings"]);
            // `escalate` is checked on a ClusterRole's create, before the name is known.
            let on_create = rule["resources"] == json!(["clusterroles"])
                && rule["verbs"]
                    .as_array()
                    .is_some_and(|v| v.contains(&json!("create")));
            for verb in rule["verbs"].as_array().expect("verbs") {
                assert!(
                    ["create", "list"].contains(&str_of(verb))
                        || (str_of(verb) == "escalate" && on_create)
                        || user_named,
                    "{what}: `{}` could be limited by resourceNames",
                    str_of(verb)
                );
            }
        }
    }
}

/// The ServiceAccount cannot make itself cluster-admin. On a cluster that clean has cleaned (the
/// normal state after a migration), as that ServiceAccount:
/// - with deploy/rbac.yaml alone, the four creates that together would make it cluster-admin
///   are refused: the legacy ClusterRole `connectivity-proxy-restart-watcher` with `*` on
///   everything, its binding to the legacy ServiceAccount of that name, that ServiceAccount,
///   and a Deployment of any name running as it; `rollback`, also with `--dry-run`, refuses
///   before writing anything and names deploy/rbac-rollback.yaml;
/// - the admission policy refuses the creates that RBAC cannot limit by name at other names:
///   Secrets only at the legacy names and the archive's (never a ServiceAccount token),
///   ConfigMaps and the namespace only at the legacy and backup names;
/// - with deploy/rbac-rollback.yaml too, the admission policy still refuses a Deployment at a
///   name that is not legacy, a legacy workload running as a ServiceAccount that is not legacy,
///   a ClusterRole at a name that is not legacy, and a legacy ClusterRoleBinding to a
///   ServiceAccount that is not legacy (itself); and `rollback --dry-run` goes through.
///
/// The operator's own ServiceAccount, bound to the same everyday roles, is not held to the
/// policy.
#[tokio::test]
async fn the_service_account_cannot_make_itself_cluster_admin() {
    let manifest = Manifest::load();
    let (c, kubeconfig) = cluster_as_sa(&manifest).await;
    c.run(&["run"]).assert_ok();
    let as_sa = client_for(&kubeconfig).await;
    let legacy_sa = "connectivity-proxy-restart-watcher";

    // With deploy/rbac.yaml alone: RBAC refuses each create.
    let escalation = [
        (
            "ClusterRole",
            json!({"apiVersion": "rbac.authorization.k8s.io/v1", "kind": "ClusterRole",
                "metadata": {"name": "connectivity-proxy-restart-watcher"},
                "rules": [{"apiGroups": ["*"], "resources": ["*"], "verbs": ["*"]}]}),
        ),
        (
            "ClusterRoleBinding",
            cluster_role_binding("connectivity-proxy-restart-watcher", legacy_sa),
        ),
        (
            "ServiceAccount",
            json!({"apiVersion": "v1", "kind": "ServiceAccount",
                "metadata": {"name": legacy_sa, "namespace": names::KYMA_SYSTEM}}),
        ),
        (
            "Deployment",
            workload("Deployment", "anything-i-like", Some(legacy_sa)),
        ),
    ];
    for (kind, object) in &escalation {
        let e = refused_create(&c, &as_sa, object).await;
        assert!(
            e.code == 403 && e.message.contains("cannot create resource"),
            "{kind}: {}",
            e.message
        );
    }
    // `kubectl auth can-i '*' '*' --as=system:serviceaccount:kyma-system:LEGACY_SA`
    let everything = ResourceAttributes {
        verb: Some("*".into()),
        group: Some("*".into()),
        resource: Some("*".into()),
        ..Default::default()
    };
    assert!(
        !support::rbac::allows(&c, &sa_user(legacy_sa), &everything).await,
        "{legacy_sa} holds everything"
    );
    for args in [&["rollback"][..], &["rollback", "--dry-run"]] {
        let before = c.snapshot().await;
        let r = run_tool(&kubeconfig, args);
        assert!(!r.success(), "{args:?} without {ROLLBACK}");
        let reason = r.reason();
        assert!(
            reason.contains(&format!("rollback needs the permissions of {ROLLBACK}"))
                && reason.contains("create apps/deployments in kyma-system")
                && reason.contains("escalate rbac.authorization.k8s.io/clusterroles")
                && reason.contains(&format!("kubectl apply -f {ROLLBACK}"))
                && reason.contains("nothing was written"),
            "{args:?}: {reason}"
        );
        let diff = state_diff(&before, &c.snapshot().await);
        assert!(diff.is_empty(), "{args:?} wrote: {diff:?}");
    }

    // Secrets: the policy reaches the admission chain through an informer; wait until it
    // refuses.
    let secret = |namespace: &str, name: &str, type_: &str| {
        json!({"apiVersion": "v1", "kind": "Secret",
            "metadata": {"name": name, "namespace": namespace,
                "annotations": {"kubernetes.io/service-account.name": SA_NAME}},
            "type": type_})
    };
    let started = Instant::now();
    while create(&as_sa, &secret(names::KYMA_SYSTEM, "probe", "Opaque"), true)
        .await
        .is_ok()
    {
        assert!(
            started.elapsed() < Duration::from_secs(30),
            "the admission policy is not in force after 30s"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let only_legacy =
        "may write only the objects of the legacy installation, its backup and its archive";
    let token = "kubernetes.io/service-account-token";
    let refused = [
        (
            secret(names::KYMA_SYSTEM, "not-a-legacy-secret", "Opaque"),
            only_legacy,
        ),
        (secret("default", "anything", "Opaque"), only_legacy),
        (
            secret(
                names::BACKUP_NAMESPACE,
                "connectivity-proxy-legacy-archive-b4",
                token,
            ),
            token,
        ),
        (
            secret(
                names::KYMA_SYSTEM,
                "connectivity-sm-operator-secrets-tls",
                token,
            ),
            token,
        ),
        // The other creates RBAC cannot limit by name: a ConfigMap that a cluster's DNS reads,
        // a namespace of any name.
        (
            json!({"apiVersion": "v1", "kind": "ConfigMap",
                "metadata": {"name": "coredns-custom", "namespace": "kube-system"}}),
            only_legacy,
        ),
        (
            json!({"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": "anything"}}),
            only_legacy,
        ),
    ];
    for (object, why) in &refused {
        let e = refused_create(&c, &as_sa, object).await;
        assert!(
            e.code == 403 && e.message.contains(why) && e.message.contains("denied"),
            "{} {}/{}: {}",
            object["kind"],
            object["metadata"]["namespace"],
            object["metadata"]["name"],
            e.message
        );
    }
    // What the tool writes is allowed.
    create(
        &as_sa,
        &secret(
            names::BACKUP_NAMESPACE,
            "connectivity-proxy-legacy-archive-b4",
            "Opaque",
        ),
        true,
    )
    .await
    .expect("a part of the archive");

    // With deploy/rbac-rollback.yaml too: the policy refuses what is not the legacy
    // installation.
    manifest.apply(&c, ROLLBACK).await;
    manifest
        .wait_effective(&c, &sa_user(SA_NAME), ROLLBACK)
        .await;
    let as_workload = "may run a workload only as a legacy ServiceAccount";
    let refused = [
        (
            workload("Deployment", "anything-i-like", Some(legacy_sa)),
            only_legacy,
        ),
        (
            workload(
                "Deployment",
                "connectivity-proxy-restart-watcher",
                Some("connectivity-proxy-operator"),
            ),
            as_workload,
        ),
        (
            workload("StatefulSet", "connectivity-proxy", Some(SA_NAME)),
            as_workload,
        ),
        (
            json!({"apiVersion": "rbac.authorization.k8s.io/v1", "kind": "ClusterRole",
                "metadata": {"name": "not-a-legacy-role"}, "rules": []}),
            only_legacy,
        ),
        (
            cluster_role_binding("connectivity-proxy-restart-watcher", SA_NAME),
            "may bind only the legacy ClusterRoles to the legacy ServiceAccounts of kyma-system",
        ),
    ];
    for (object, why) in &refused {
        let e = refused_create(&c, &as_sa, object).await;
        assert!(
            e.code == 403 && e.message.contains(why) && e.message.contains("denied"),
            "{} {}: {} {}",
            object["kind"],
            object["metadata"]["name"],
            e.code,
            e.message
        );
    }
    let r = run_tool(&kubeconfig, &["rollback", "--dry-run"]);
    assert!(
        r.success() && r.reason().starts_with("would recreate 33 legacy objects"),
        "rollback --dry-run with {ROLLBACK}: {}",
        r.stderr
    );

    // The operator's own ServiceAccount is bound to the same ClusterRole, not to the policy.
    let token = c
        .token_for(SA_NAMESPACE, "connectivity-proxy-operator")
        .await;
    let as_operator = client_for(&c.kubeconfig_with_token(&token, "operator.kubeconfig")).await;
    create(
        &as_operator,
        &secret(names::KYMA_SYSTEM, "operators-own", "Opaque"),
        false,
    )
    .await
    .expect("the operator's ServiceAccount creates a Secret of its own");
}

/// A ClusterRoleBinding `name` of the ClusterRole of the same name to ServiceAccount
/// kyma-system/`service_account`.
fn cluster_role_binding(name: &str, service_account: &str) -> Value {
    json!({"apiVersion": "rbac.authorization.k8s.io/v1", "kind": "ClusterRoleBinding",
        "metadata": {"name": name},
        "roleRef": {"apiGroup": "rbac.authorization.k8s.io", "kind": "ClusterRole", "name": name},
        "subjects": [{"kind": "ServiceAccount", "name": service_account,
            "namespace": names::KYMA_SYSTEM}]})
}

/// A StatefulSet or Deployment in kyma-system whose Pods run any image as `service_account`.
fn workload(kind: &str, name: &str, service_account: Option<&str>) -> Value {
    let mut spec = json!({
        "selector": {"matchLabels": {"app": name}},
        "template": {
            "metadata": {"labels": {"app": name}},
            "spec": {"containers": [{"name": "any", "image": "registry.example/anything:latest"}]},
        },
    });
    if let Some(sa) = service_account {
        spec["template"]["spec"]["serviceAccountName"] = json!(sa);
    }
    if kind == "StatefulSet" {
        spec["serviceName"] = json!(name);
    }
    json!({"apiVersion": "apps/v1", "kind": kind,
        "metadata": {"name": name, "namespace": names::KYMA_SYSTEM}, "spec": spec})
}

/// Where `object`'s kind is served, for `client`.
async fn api_of(client: &kube::Client, object: &Value) -> Api<DynamicObject> {
    let (group, version) = match str_of(&object["apiVersion"]).split_once('/') {
        Some((g, v)) => (g, v),
        None => ("", str_of(&object["apiVersion"])),
    };
    let gvk = kube::core::GroupVersionKind::gvk(group, version, str_of(&object["kind"]));
    let (ar, caps) = kube::discovery::pinned_kind(client, &gvk)
        .await
        .expect("discovery");
    match (caps.scope, object["metadata"]["namespace"].as_str()) {
        (kube::discovery::Scope::Namespaced, Some(ns)) => {
            Api::namespaced_with(client.clone(), ns, &ar)
        }
        _ => Api::all_with(client.clone(), &ar),
    }
}

async fn create(
    client: &kube::Client,
    object: &Value,
    dry_run: bool,
) -> kube::Result<DynamicObject> {
    let pp = PostParams {
        dry_run,
        ..Default::default()
    };
    let api = api_of(client, object).await;
    api.create(
        &pp,
        &serde_json::from_value(object.clone()).expect("object"),
    )
    .await
}

/// Creates `object` as `client`, which must be refused; the admin then finds it as it was
/// before (absent, or unchanged). Returns the refusal.
async fn refused_create(
    c: &TestCluster,
    client: &kube::Client,
    object: &Value,
) -> Box<kube::core::Status> {
    let admin = api_of(&c.client, object).await;
    let name = str_of(&object["metadata"]["name"]);
    let version = |o: Option<DynamicObject>| o.and_then(|o| o.metadata.resource_version);
    let before = version(admin.get_opt(name).await.expect("get"));
    let refusal = match create(client, object, false).await {
        Err(kube::Error::Api(e)) => e,
        other => panic!(
            "{} {name}: expected a refusal, got {other:?}",
            object["kind"]
        ),
    };
    assert_eq!(
        version(admin.get_opt(name).await.expect("get")),
        before,
        "{} {name} unchanged",
        object["kind"]
    );
    refusal
}

// ---------------------------------------------------------------------------------------------
// RBAC: necessary

/// Clusters run in parallel, each in a thread of its own; the API servers take most of the time.
const WORKERS: usize = 3;

/// What a rule grants, as rollback names a permission it lacks: "create apps/deployments in
/// kyma-system", "bind rbac.authorization.k8s.io/clusterroles NAME".
fn permissions_of(m: &Manifest, id: RuleId) -> Vec<String> {
    let rule = m.rule(id);
    let list = |k: &str| {
        rule[k]
            .as_array()
            .map(|a| a.iter().map(|x| str_of(x).to_string()).collect::<Vec<_>>())
            .unwrap_or_default()
    };
    let names = match list("resourceNames") {
        n if n.is_empty() => vec![String::new()],
        n => n.into_iter().map(|n| format!(" {n}")).collect(),
    };
    let namespace = m.docs[id.0]["metadata"]["namespace"]
        .as_str()
        .map(|n| format!(" in {n}"))
        .unwrap_or_default();
    let mut out = Vec::new();
    for verb in list("verbs") {
        for group in list("apiGroups") {
            for resource in list("resources") {
                let group = if group.is_empty() {
                    String::new()
                } else {
                    format!("{group}/")
                };
                for name in &names {
                    out.push(format!("{verb} {group}{resource}{name}{namespace}"));
                }
            }
        }
    }
    out
}

/// For every rule of both manifests: the same scenario, on a fresh cluster whose RBAC lacks only
/// that rule, is refused somewhere: by the API server ("forbidden"), or, for a rule of
/// deploy/rbac-rollback.yaml, by rollback itself before it writes anything, naming exactly what
/// the rule grants. So no rule is there without need.
#[test]
fn every_rbac_rule_is_necessary() {
    let manifest = Manifest::load();
    let rules = manifest.rules();
    assert!(!rules.is_empty());
    let queue = Arc::new(Mutex::new(rules.clone()));
    type Outcome = (RuleId, Result<Stop, String>, Duration, Duration);
    let results: Arc<Mutex<Vec<Outcome>>> = Arc::default();
    let started = Instant::now();
    let workers: Vec<_> = (0..WORKERS)
        .map(|_| {
            let (queue, results, manifest) = (queue.clone(), results.clone(), manifest.clone());
            std::thread::spawn(move || {
                let rt = tokio::runtime::Builder::new_current_thread()
                    .enable_all()
                    .build()
                    .expect("runtime");
                loop {
                    let Some(id) = queue.lock().expect("queue").pop() else {
                        break;
                    };
                    let t = Instant::now();
                    let mut setup = Duration::ZERO;
                    let outcome = rt.block_on(async {
                        let reduced = manifest.without(id);
                        let (c, kubeconfig) = cluster_as_sa(&reduced).await;
                        setup = t.elapsed();
                        let mut scenario = Scenario {
                            c: &c,
                            kubeconfig: &kubeconfig,
                            manifest: &reduced,
                            runs: Vec::new(),
                        };
                        match scenario.play(None).await {
                            Ok(()) => Err("the whole scenario succeeded".to_string()),
                            Err(stop) => Ok(stop),
                        }
                    });
                    results
                        .lock()
                        .expect("results")
                        .push((id, outcome, setup, t.elapsed()));
                }
            })
        })
        .collect();
    for w in workers {
        w.join().expect("worker");
    }
    let mut results = std::mem::take(&mut *results.lock().expect("results"));
    results.sort_by_key(|r| r.0);
    let mut report = String::new();
    let mut wrong = Vec::new();
    for (id, outcome, setup, took) in &results {
        let in_rollback = manifest.file_of(*id) == ROLLBACK;
        let line = match outcome {
            Ok(stop)
                if in_rollback && stop.rollback_refused_for(&permissions_of(&manifest, *id)) =>
            {
                "rollback refused, naming it, before writing anything".to_string()
            }
            Ok(stop) if !in_rollback && stop.forbidden() => format!("refused in `{}`", stop.step),
            Ok(stop) => {
                wrong.push(id);
                format!(
                    "stopped in `{}` but not {}: {}",
                    stop.step,
                    if in_rollback {
                        "by rollback's check of its permissions"
                    } else {
                        "by RBAC"
                    },
                    stop.evidence
                )
            }
            Err(e) => {
                wrong.push(id);
                e.clone()
            }
        };
        report.push_str(&format!(
            "{:>5.1}s (cluster {:>4.1}s)  without {}: {line}\n",
            took.as_secs_f64(),
            setup.as_secs_f64(),
            manifest.describe(*id)
        ));
    }
    eprintln!(
        "{} rules, each removed on a cluster of its own, {WORKERS} in parallel: {:.1}s\n{report}",
        results.len(),
        started.elapsed().as_secs_f64()
    );
    assert_eq!(results.len(), rules.len());
    assert!(
        wrong.is_empty(),
        "rules the scenario does not need:\n{report}"
    );
}

// ---------------------------------------------------------------------------------------------
// Restore drill

/// Migrate, back up and clean; the legacy installation comes back without its two ConfigMaps
/// (as the control plane brings it back after the module is disabled); `restore` puts both back
/// exactly as they were before the migration: data, binaryData, labels and annotations.
#[tokio::test]
async fn restore_drill_brings_back_the_user_configuration() {
    let c = TestCluster::legacy_and_module().await;
    // Binary data, a label and an annotation of the user's own, so that every part is checked.
    let cms: Api<ConfigMap> = Api::namespaced(c.client.clone(), names::KYMA_SYSTEM);
    for name in config_maps::USER_CONFIG {
        cms.patch(
            name,
            &PatchParams::default(),
            &Patch::Merge(json!({
                "metadata": {"labels": {"team": "integration"},
                             "annotations": {"owner": "ops@example.com"}},
                "binaryData": {"blob": "AP8BAg=="},
            })),
        )
        .await
        .expect("patch");
    }
    let originals = user_config(&c, names::KYMA_SYSTEM).await;
    assert!(originals.iter().all(|o| {
        o.as_ref()
            .is_some_and(|(_, b, l, a)| !b.is_empty() && !l.is_empty() && !a.is_empty())
    }));

    for step in ["migrate", "backup", "clean"] {
        c.run(&[step]).assert_ok();
        assert_eq!(c.run(&[step]).outcome(), "skipped", "{step} again");
    }
    assert_eq!(
        user_config(&c, names::KYMA_SYSTEM).await,
        vec![None, None],
        "clean removed the user configuration from kyma-system"
    );

    // The legacy installation is back, without the two ConfigMaps.
    let dir = tempfile::tempdir().expect("tempdir");
    for entry in std::fs::read_dir(fixture_dir(LEGACY)).expect("fixtures") {
        let path = entry.expect("entry").path();
        let file = path
            .file_name()
            .and_then(|f| f.to_str())
            .unwrap_or_default();
        if !file.starts_with("30-configmap-") && !file.starts_with("31-configmap-") {
            std::fs::copy(&path, dir.path().join(file)).expect("copy");
        }
    }
    c.apply_dir(dir.path()).await;
    assert!(legacy::detect(&c.client).await.expect("detect").is_some());

    let before = c.snapshot().await;
    let dry = c.run(&["restore", "--dry-run"]);
    dry.assert_ok();
    for name in config_maps::USER_CONFIG {
        assert!(
            dry.stdout
                .contains(&format!("would write ConfigMap kyma-system/{name}")),
            "{}",
            dry.stdout
        );
    }
    assert_eq!(
        state_diff(&before, &c.snapshot().await),
        Vec::<String>::new()
    );

    let r = c.run(&["restore"]);
    r.assert_ok();
    assert_eq!(
        r.reason(),
        "restored kyma-system/connectivity-proxy, kyma-system/connectivity-proxy-info"
    );
    assert_eq!(user_config(&c, names::KYMA_SYSTEM).await, originals);

    // A copy that is missing is skipped with a warning; the other is still restored.
    Api::<ConfigMap>::namespaced(c.client.clone(), names::BACKUP_NAMESPACE)
        .delete(config_maps::INFO, &DeleteParams::default())
        .await
        .expect("delete copy");
    cms.delete(config_maps::CONFIG, &DeleteParams::default())
        .await
        .expect("delete");
    let r = c.run(&["restore"]);
    r.assert_ok();
    assert!(r.stderr.contains("no backup copy; skipped"), "{}", r.stderr);
    assert_eq!(r.reason(), "restored kyma-system/connectivity-proxy");
    assert_eq!(user_config(&c, names::KYMA_SYSTEM).await, originals);
}

// ---------------------------------------------------------------------------------------------
// Images and the example Deployment

/// An image of `scripts/images list`, loaded into the test's runtime from its OCI archive.
struct Image {
    name: String,
    /// The id in the test's runtime.
    id: String,
    step: String,
}

/// The Pod's environment for an init container: its ServiceAccount token and CA where a Pod
/// has them (the tool's in-cluster configuration), the API server's address, and the env of
/// the container spec with the downward API resolved.
struct Pod {
    name: String,
    secrets_dir: PathBuf,
    port: String,
}

/// What a run of one container left: its output, and its termination message.
struct ContainerRun {
    result: RunResult,
    termination_message: String,
}

impl Pod {
    async fn new(c: &TestCluster, service_account: &str, name: &str) -> Pod {
        let token = c.token_for(SA_NAMESPACE, service_account).await;
        let dir = c.dir().join(format!("{name}-serviceaccount"));
        std::fs::create_dir_all(&dir).expect("mkdir");
        std::fs::write(dir.join("token"), token).expect("token");
        std::fs::copy(c.dir().join("ca.crt"), dir.join("ca.crt")).expect("ca.crt");
        std::fs::write(dir.join("namespace"), SA_NAMESPACE).expect("namespace");
        // Readable by UID 1337, as the kubelet makes them.
        use std::os::unix::fs::PermissionsExt;
        for f in ["", "token", "ca.crt", "namespace"] {
            let mode = if f.is_empty() { 0o755 } else { 0o644 };
            std::fs::set_permissions(dir.join(f), std::fs::Permissions::from_mode(mode))
                .expect("chmod");
        }
        let kubeconfig = std::fs::read_to_string(&c.kubeconfig).expect("kubeconfig");
        let port = kubeconfig
            .lines()
            .find_map(|l| l.trim().strip_prefix("server: https://127.0.0.1:"))
            .expect("server line")
            .to_string();
        Pod {
            name: name.into(),
            secrets_dir: dir,
            port,
        }
    }

    /// Runs `container` (a container of the example Deployment) under a real OCI runtime the
    /// way a kubelet would: its image, its command (else the image's entrypoint) and args, its
    /// env, its securityContext and resource limits, the Pod's ServiceAccount token, and a fresh
    /// writable `/dev/termination-log`. Host network: the API server listens on 127.0.0.1.
    fn run(&self, podman: &Podman, container: &Value, images: &[Image]) -> ContainerRun {
        let image = image_of(container, images);
        let name = str_of(&container["name"]);
        let termination_log = self
            .secrets_dir
            .with_file_name(format!("{name}-termination-log"));
        std::fs::write(&termination_log, "").expect("termination log");
        // Writable by the container's user, as the kubelet makes it.
        std::fs::set_permissions(
            &termination_log,
            std::os::unix::fs::PermissionsExt::from_mode(0o666),
        )
        .expect("chmod");
        let mut cmd = podman.command();
        cmd.args(["run", "--rm", "--network", "host"])
            .args(security_context_flags(&container["securityContext"]))
            .args(resource_limit_flags(&container["resources"]["limits"]))
            .arg("--volume")
            .arg(format!(
                "{}:/var/run/secrets/kubernetes.io/serviceaccount:ro",
                self.secrets_dir.display()
            ))
            .arg("--volume")
            .arg(format!(
                "{}:{}:rw",
                termination_log.display(),
                names::TERMINATION_LOG
            ))
            .args(["--env", "KUBERNETES_SERVICE_HOST=127.0.0.1"])
            .args(["--env", &format!("KUBERNETES_SERVICE_PORT={}", self.port)]);
        for env in container["env"].as_array().into_iter().flatten() {
            let value = match (&env["value"], &env["valueFrom"]["fieldRef"]["fieldPath"]) {
                (Value::String(v), _) => v.clone(),
                (_, Value::String(p)) if p == "metadata.name" => self.name.clone(),
                _ => panic!("env {env} is neither a value nor the Pod's name"),
            };
            cmd.args(["--env", &format!("{}={value}", str_of(&env["name"]))]);
        }
        // A container's `command` replaces the image's entrypoint, its `args` follow.
        if let Some(command) = container["command"].as_array() {
            cmd.arg("--entrypoint")
                .arg(Value::Array(command.clone()).to_string());
        }
        cmd.arg(&image.id);
        for arg in container["args"].as_array().into_iter().flatten() {
            cmd.arg(str_of(arg));
        }
        let output = cmd.output().expect("podman run");
        ContainerRun {
            result: RunResult {
                stdout: String::from_utf8_lossy(&output.stdout).into_owned(),
                stderr: String::from_utf8_lossy(&output.stderr).into_owned(),
                output,
            },
            termination_message: std::fs::read_to_string(&termination_log)
                .expect("termination log"),
        }
    }
}

/// The runtime's flags for a container's securityContext. The seccomp profile `RuntimeDefault`
/// is the runtime's own default profile: no flag.
fn security_context_flags(sc: &Value) -> Vec<String> {
    let mut flags = vec![format!("--user={}:{}", sc["runAsUser"], sc["runAsGroup"])];
    if sc["readOnlyRootFilesystem"] == true {
        // Without the tmpfs podman would add on /tmp, /run and /var/tmp: a Pod has none.
        flags.extend(["--read-only".into(), "--read-only-tmpfs=false".into()]);
    }
    if sc["allowPrivilegeEscalation"] == false {
        flags.extend(["--security-opt".into(), "no-new-privileges".into()]);
    }
    for cap in sc["capabilities"]["drop"].as_array().into_iter().flatten() {
        flags.push(format!("--cap-drop={}", str_of(cap).to_lowercase()));
    }
    assert_eq!(sc["seccompProfile"]["type"], "RuntimeDefault");
    flags
}

/// The runtime's flags for a container's resource limits (`64Mi`, `200m`).
fn resource_limit_flags(limits: &Value) -> Vec<String> {
    let memory = str_of(&limits["memory"]);
    let mib = memory.strip_suffix("Mi").expect("memory in Mi");
    let cpu = str_of(&limits["cpu"]);
    let millis: u32 = cpu
        .strip_suffix('m')
        .expect("cpu in m")
        .parse()
        .expect("cpu");
    vec![
        format!("--memory={mib}m"),
        format!("--cpus={}", f64::from(millis) / 1000.0),
    ]
}

fn image_of<'a>(container: &Value, images: &'a [Image]) -> &'a Image {
    let spec = str_of(&container["image"]);
    let (repo, tag) = spec.rsplit_once(':').expect("image with a tag");
    let name = repo.rsplit('/').next().unwrap_or(repo);
    assert_eq!(
        tag,
        env!("CARGO_PKG_VERSION"),
        "{spec}: the example names the release this repository builds"
    );
    images
        .iter()
        .find(|i| i.name == name)
        .unwrap_or_else(|| panic!("{spec}: no image {name} is built"))
}

/// The example Deployment, and the single-container alternative that it has in a comment.
fn example_deployment() -> (Value, Value) {
    let text = std::fs::read_to_string(repo_root().join("deploy/operator-deployment-example.yaml"))
        .expect("example");
    let deployment: Value = from_yaml(&text);
    let commented: Vec<&str> = text
        .lines()
        .skip_while(|l| !l.trim_start().starts_with("# - name: init-migration"))
        .take_while(|l| l.trim_start().starts_with('#'))
        .map(|l| {
            let l = l.trim_start().trim_start_matches('#');
            l.strip_prefix(' ').unwrap_or(l)
        })
        .collect();
    assert!(!commented.is_empty(), "the commented `run` alternative");
    let alternative: Value = from_yaml(&commented.join("\n"));
    (deployment, alternative[0].clone())
}

/// `make images` builds a static binary and one FROM-scratch image per step; the example
/// Deployment's init containers, run from those images (their OCI archives) under a real OCI
/// runtime as a kubelet runs them (read-only root filesystem, UID 1337, no capabilities, no new
/// privileges, the Pod's ServiceAccount token, a termination message file), migrate the cluster
/// in order, and do nothing when the Pod restarts; a failing step leaves its reason as the
/// termination message. The commented single `run` container does the same.
#[tokio::test]
async fn images_run_the_example_deployment_init_containers() {
    let t = Instant::now();
    let mut build = Command::new(repo_root().join("scripts/images"));
    build.arg("build");
    // What cargo sets for a test process: build scripts (ring's) watch some of it, so with it the
    // nested build would not reuse what `make images` compiled, and the other way round.
    for (key, _) in std::env::vars() {
        if key.starts_with("CARGO_PKG_")
            || key.starts_with("CARGO_BIN_EXE_")
            || [
                "CARGO_MANIFEST_DIR",
                "CARGO_MANIFEST_PATH",
                "CARGO_MANIFEST_LINKS",
                "CARGO_CRATE_NAME",
                "CARGO_PRIMARY_PACKAGE",
                "CARGO_TARGET_TMPDIR",
                "OUT_DIR",
            ]
            .contains(&key.as_str())
        {
            build.env_remove(key);
        }
    }
    let build = podman::run_ok(&mut build);
    eprintln!(
        "scripts/images build: {:.1}s\n{}",
        t.elapsed().as_secs_f64(),
        String::from_utf8_lossy(&build.stderr)
    );

    let t = Instant::now();
    let runtime_dir = tempfile::tempdir().expect("tempdir");
    let podman = Podman::new(runtime_dir.path());
    let list = podman::run_ok(Command::new(repo_root().join("scripts/images")).arg("list"));
    let images: Vec<Image> = String::from_utf8_lossy(&list.stdout)
        .lines()
        .map(|l| {
            let f: Vec<&str> = l.split('\t').collect();
            let archive = repo_root().join(format!("target/images/{}.tar", f[0]));
            let id = podman.load(&archive);
            let inspect = podman::run_ok(podman.command().args(["image", "inspect", &id]));
            let meta: Value = serde_json::from_slice(&inspect.stdout).expect("inspect JSON");
            let config = &meta[0]["Config"];
            assert_eq!(config["User"], "1337:1337", "{}", f[1]);
            assert_eq!(
                config["Entrypoint"],
                json!(["/cp-mod-migrator", f[2]]),
                "{}",
                f[1]
            );
            let layers = meta[0]["RootFS"]["Layers"].as_array().map(Vec::len);
            assert_eq!(layers, Some(1), "{}: FROM scratch plus the binary", f[1]);
            Image {
                name: f[0].into(),
                id,
                step: f[2].into(),
            }
        })
        .collect();
    let names: Vec<&str> = images.iter().map(|i| i.name.as_str()).collect();
    assert_eq!(
        names,
        ["cp-mod-migrator", "cp-mod-backup", "cp-mod-cleaner"]
    );
    eprintln!(
        "podman and runc ready, the three archives loaded: {:.1}s",
        t.elapsed().as_secs_f64()
    );

    let (deployment, alternative) = example_deployment();
    let pod_spec = &deployment["spec"]["template"]["spec"];
    let init: Vec<Value> = pod_spec["initContainers"]
        .as_array()
        .expect("initContainers")
        .clone();
    let order: Vec<&str> = init.iter().map(|c| str_of(&c["name"])).collect();
    assert_eq!(order, ["init-migrator", "init-backup", "init-cleaner"]);
    for (container, expected) in init.iter().zip(&images) {
        assert_eq!(image_of(container, &images).name, expected.name);
    }
    assert_eq!(str_of(&alternative["command"][1]), "run");
    for container in init.iter().chain([&alternative]) {
        let sc = &container["securityContext"];
        let name = str_of(&container["name"]);
        assert_eq!(sc["runAsUser"], 1337, "{name}");
        assert_eq!(sc["runAsGroup"], 1337, "{name}");
        assert_eq!(sc["runAsNonRoot"], true, "{name}");
        assert_eq!(sc["readOnlyRootFilesystem"], true, "{name}");
        assert_eq!(sc["allowPrivilegeEscalation"], false, "{name}");
        assert_eq!(sc["capabilities"]["drop"], json!(["ALL"]), "{name}");
        assert_eq!(sc["seccompProfile"]["type"], "RuntimeDefault", "{name}");
        for kind in ["requests", "limits"] {
            for r in ["cpu", "memory"] {
                assert!(
                    container["resources"][kind][r].is_string(),
                    "{name}: resources.{kind}.{r}"
                );
            }
        }
        assert!(
            container["env"]
                .as_array()
                .is_some_and(|e| e.iter().any(|e| e["name"] == "POD_NAME"
                    && e["valueFrom"]["fieldRef"]["fieldPath"] == "metadata.name")),
            "{name}: POD_NAME from the downward API"
        );
        // The termination message, or else the log's tail, when a step fails.
        assert_eq!(
            container["terminationMessagePolicy"], "FallbackToLogsOnError",
            "{name}"
        );
        assert!(container["terminationMessagePath"].is_null(), "{name}");
    }
    let service_account = str_of(&pod_spec["serviceAccountName"]).to_string();

    let manifest = Manifest::load();
    let (three, single) = tokio::join!(
        TestCluster::legacy_and_module(),
        TestCluster::legacy_and_module()
    );

    // The API server accepts the Deployment, and the variant with the single container, as
    // they are (strict field validation, server-side dry run).
    let deployments: Api<DynamicObject> = Api::namespaced_with(
        three.client.clone(),
        names::KYMA_SYSTEM,
        &kube::core::ApiResource::erase::<k8s_openapi::api::apps::v1::Deployment>(&()),
    );
    let strict = PatchParams {
        dry_run: true,
        field_validation: Some(ValidationDirective::Strict),
        ..PatchParams::apply("example-check")
    };
    let mut variant = deployment.clone();
    variant["spec"]["template"]["spec"]["initContainers"] = json!([alternative.clone()]);
    for d in [&deployment, &variant] {
        deployments
            .patch(names::OPERATOR_DEPLOYMENT, &strict, &Patch::Apply(d))
            .await
            .unwrap_or_else(|e| panic!("the API server rejects the example Deployment: {e}"));
    }

    // The init containers run as the Pod's ServiceAccount, which the manifest binds.
    let mut pods = Vec::new();
    for c in [&three, &single] {
        manifest.apply(c, EVERYDAY).await;
        pods.push(
            Pod::new(
                c,
                &service_account,
                "connectivity-proxy-operator-5f7d9-x2k4q",
            )
            .await,
        );
        manifest
            .wait_effective(c, &sa_user(&service_account), EVERYDAY)
            .await;
    }

    // Not root: a file only root may read is out of reach for the image's user. Read-only: the
    // failed command's termination message, sent to the image's only file, is refused by the
    // kernel (EROFS), and the command ends as it would anyway.
    let secret = three.dir().join("root-only");
    std::fs::write(&secret, "apiVersion: v1\nkind: Config\n").expect("write");
    std::fs::set_permissions(&secret, std::os::unix::fs::PermissionsExt::from_mode(0o600))
        .expect("chmod");
    {
        let out = podman
            .command()
            .args(["run", "--rm", "--network", "none"])
            .args(security_context_flags(&init[0]["securityContext"]))
            .arg("--volume")
            .arg(format!("{}:/probe/kubeconfig:ro", secret.display()))
            .args(["--env", "CP_MIGRATOR_LOG=info,cp_mod_migrator=debug"])
            .args([
                "--env",
                &format!("{}=/cp-mod-migrator", termination::PATH_ENV),
            ])
            .arg(&images[0].id)
            .args(["--kubeconfig", "/probe/kubeconfig"])
            .output()
            .expect("podman run");
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert!(
            !out.status.success() && stderr.contains("Permission denied"),
            "as the image's user, a root-only file must be unreadable:\n{stderr}"
        );
        assert!(
            stderr.contains("no termination message written")
                && stderr.contains("Read-only file system"),
            "the root filesystem must be read-only:\n{stderr}"
        );
    }

    // A step that fails leaves its reason as the termination message; the kubelet then starts
    // the same container again, not the next one.
    let info: Api<ConfigMap> = Api::namespaced(three.client.clone(), names::KYMA_SYSTEM);
    let socks5 = |port: &str| Patch::Merge(json!({"data": {"onpremise_socks5_proxy_port": port}}));
    let good = info
        .get(config_maps::INFO)
        .await
        .expect("get")
        .data
        .expect("data")["onpremise_socks5_proxy_port"]
        .clone();
    info.patch(config_maps::INFO, &PatchParams::default(), &socks5("0"))
        .await
        .expect("a bad port");
    let failed = pods[0].run(&podman, &init[0], &images);
    failed.result.assert_failed_with(&[
        "connectivity-proxy-info",
        "onpremise_socks5_proxy_port",
        "value \"0\"",
    ]);
    assert_eq!(
        failed.termination_message,
        failed.result.reason(),
        "{}",
        failed.result.stderr
    );
    info.patch(config_maps::INFO, &PatchParams::default(), &socks5(&good))
        .await
        .expect("the port as it was");

    let t = Instant::now();
    for round in ["first start", "restart"] {
        for (container, image) in init.iter().zip(&images) {
            let r = pods[0].run(&podman, container, &images);
            r.result.assert_ok();
            assert_eq!(
                r.termination_message, "",
                "a step that succeeds writes none"
            );
            let line = r.result.last_line();
            assert_eq!(line["step"], image.step.as_str(), "{round}");
            let expected = if round == "first start" {
                "done"
            } else {
                "skipped"
            };
            assert_eq!(
                line["outcome"], expected,
                "{round} {}: {}",
                image.step, r.result.stderr
            );
        }
    }
    eprintln!(
        "three init containers, started twice: {:.1}s",
        t.elapsed().as_secs_f64()
    );
    let cr_now = three.cr().await;
    for m in cp_mod_migrator::step::Step::IN_ORDER {
        assert_eq!(cr::marked(&cr_now, m), Some(m.marker_key()));
    }
    assert!(
        legacy::detect(&three.client)
            .await
            .expect("detect")
            .is_none()
    );
    let ours = our_events(&three).await;
    assert_eq!(ours.len(), 3);
    assert!(
        ours.iter()
            .all(|e| e.reporting_instance.as_deref() == Some(pods[0].name.as_str())),
        "Events name the Pod"
    );

    let r = pods[1].run(&podman, &alternative, &images);
    r.result.assert_ok();
    assert_eq!(
        r.result.reason(),
        "migrate: done; backup: done; clean: done",
        "{}",
        r.result.stderr
    );
    assert_eq!(r.termination_message, "");
    assert!(
        legacy::detect(&single.client)
            .await
            .expect("detect")
            .is_none()
    );
}
