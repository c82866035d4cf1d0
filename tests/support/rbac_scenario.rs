//! The scenario that every RBAC test plays as the ServiceAccount: the migration (`run`) and each
//! hand-run command (`status`, clean again with its archive in parts, `restore`, `mark-done`,
//! `rollback --prepare`, and `rollback` once the module is disabled), each result checked; where
//! it stops, and why.

use std::collections::BTreeMap;
use std::path::Path;

use k8s_openapi::api::core::v1::ConfigMap;
use kube::api::{Api, DeleteParams, Patch, PatchParams};
use serde_json::{Value, json};

use super::config_maps::user_config;
use super::contract::{self, KYMA_SYSTEM, OPERATOR_DEPLOYMENT, USER_CONFIG, markers};
use super::events::event_reasons;
use super::fixtures::legacy_priority_class_back;
use super::rbac::{Manifest, ROLLBACK, SA_NAME, sa_user};
use super::requests::{Request, requests_in, run_logged};
use super::snapshot::{comparable_across_clusters, state_diff};
use super::{RunResult, TestCluster, cr, module, operator, real_operator};

/// Where a scenario stopped, and the log line or check that says why.
#[derive(Debug)]
pub struct Stop {
    pub step: String,
    pub evidence: String,
}

impl Stop {
    /// The API server refused a request.
    pub fn forbidden(&self) -> bool {
        self.evidence.contains("forbidden")
    }

    /// `rollback` refused before writing anything, for want of exactly `permissions`
    /// ("create apps/deployments in kyma-system"), naming the manifest that grants them.
    pub fn rollback_refused_for(&self, permissions: &[String]) -> bool {
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

/// The scenario on cluster `c`, as the ServiceAccount of `kubeconfig`.
pub struct Scenario<'a> {
    pub c: &'a TestCluster,
    pub kubeconfig: &'a Path,
    /// Applied with its deploy/rbac-rollback.yaml part only for the rollback.
    pub manifest: &'a Manifest,
    /// Each command's arguments and result.
    pub runs: Vec<(String, RunResult)>,
}

impl<'a> Scenario<'a> {
    /// The whole scenario played on `c` as the ServiceAccount of `kubeconfig`; the test fails
    /// at its first step that does not go as the contract says, with the evidence.
    pub async fn played(
        c: &'a TestCluster,
        kubeconfig: &'a Path,
        manifest: &'a Manifest,
        reference: Option<&BTreeMap<String, Value>>,
    ) -> Scenario<'a> {
        let mut scenario = Scenario {
            c,
            kubeconfig,
            manifest,
            runs: Vec::new(),
        };
        if let Err(stop) = scenario.play(reference).await {
            let last = scenario.runs.last().map(|(_, r)| r.stderr.clone());
            panic!(
                "as {SA_NAME}: {} failed: {}\n{}",
                stop.step,
                stop.evidence,
                last.unwrap_or_default()
            );
        }
        scenario
    }
}

impl Scenario<'_> {
    /// Runs a command as the SA; a non-zero exit, or a refusal in its log (an Event the server
    /// refused is only a warning), stops the scenario.
    pub fn cmd(&mut self, args: &[&str]) -> Result<&RunResult, Stop> {
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
    pub async fn rollback_refused(&mut self, extra: &[&str]) -> Result<(), Stop> {
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

    pub fn check(step: &str, ok: bool, what: impl FnOnce() -> String) -> Result<(), Stop> {
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
    pub async fn play(&mut self, reference: Option<&BTreeMap<String, Value>>) -> Result<(), Stop> {
        let c = self.c;
        let originals = user_config(c, KYMA_SYSTEM).await;

        let r = self.cmd(&["run"])?;
        let reason = r.reason();
        Self::check(
            "run",
            reason == "migrate: done; backup: done; clean: done",
            || reason.clone(),
        )?;
        if let Some(reference) = reference {
            let got = comparable_across_clusters(c.snapshot().await);
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
                .all(|r| reasons.iter().any(|x| x == r)),
            || format!("Events recorded: {reasons:?}"),
        )?;

        // The operator Deployment as the module installs it: status reads its Pods (none here:
        // no controller runs), by its selector; the module reports Ready.
        module::install_operator(c).await;
        module::report_state(c, "Ready").await;
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
        // object and the index switches to the new set of parts in one update. The CR now asks
        // the operator to provision the tunnel's host, so clean reads the shoot's ConfigMap.
        let bytes = status["archive"]["bytes"].as_u64().expect("archive size") as usize;
        legacy_priority_class_back(c, "by-the-control-plane").await;
        cr::remove_annotations(c, &[markers::CLEANED]).await;
        real_operator::give_shoot_info(c).await;
        real_operator::patch_cr(
            c,
            json!({"spec": {"config": {"servers": {"businessDataTunnel":
                {"externalHost": operator::AUTO_PROVISION}}}}}),
        )
        .await;
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
        let restored = user_config(c, KYMA_SYSTEM).await;
        Self::check("restore: content", restored == originals, || {
            format!("{restored:?} != {originals:?}")
        })?;
        // As if the control plane had brought the ConfigMap back with other content: restore
        // replaces it.
        let cms: Api<ConfigMap> = Api::namespaced(c.client.clone(), KYMA_SYSTEM);
        cms.patch(
            USER_CONFIG[1],
            &PatchParams::default(),
            &Patch::Merge(json!({"metadata": {"labels": {"extra": "x"}},
                "data": {"onpremise_proxy_http_port": "1"}})),
        )
        .await
        .expect("patch");
        self.cmd(&["restore"])?;
        let restored = user_config(c, KYMA_SYSTEM).await;
        Self::check(
            "restore over a changed ConfigMap",
            restored == originals,
            || format!("{restored:?} != {originals:?}"),
        )?;

        cr::remove_annotations(c, &markers::ALL).await;
        let r = self.cmd(&["mark-done"])?;
        let reason = r.reason();
        let cr_now = c.cr().await;
        Self::check(
            "mark-done",
            reason.starts_with("set ")
                && markers::ALL.iter().all(|k| {
                    cr_now
                        .metadata
                        .annotations
                        .as_ref()
                        .and_then(|a| a.get(*k))
                        .is_some_and(|v| v == "true")
                })
                && event_reasons(c).await.iter().any(|r| r == "MarkedDone"),
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
        Api::<k8s_openapi::api::apps::v1::Deployment>::namespaced(c.client.clone(), KYMA_SYSTEM)
            .delete(OPERATOR_DEPLOYMENT, &DeleteParams::default())
            .await
            .expect("delete the operator Deployment");
        cr::api(&c.client)
            .delete(contract::cr::NAME, &DeleteParams::default())
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
            contract::legacy_installed(&c.client).await,
            || "no legacy StatefulSet".into(),
        )?;
        Ok(())
    }

    /// Each request, with the command that made it.
    pub fn requests(&self) -> Vec<(&str, Request)> {
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
