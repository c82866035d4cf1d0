//! The operator Pods' init containers: which one keeps failing, in which step, and why.
//!
//! The Pods are those of the operator Deployment's selector. An init container keeps failing
//! when the kubelet holds it back in CrashLoopBackOff, or when it has been started again after
//! a non-zero exit and has not finished since. Which step it runs is told by its command and
//! arguments (a subcommand among them: `run` for the single-container alternative), else by its
//! image (the three images each run one step).

use k8s_openapi::api::apps::v1::Deployment;
use k8s_openapi::api::core::v1::{Container, ContainerStatus, Pod};
use kube::api::{Api, ListParams};
use kube::core::Selector;
use kube::{Client, ResourceExt};
use serde::Serialize;

use crate::error::{Context, Result};
use crate::names;
use crate::step::Step;

/// What an init container of the operator Pod runs: one step, or `run` (all three in one).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum InitCommand {
    Step(Step),
    Run,
}

impl InitCommand {
    /// The subcommand it runs.
    pub fn name(self) -> &'static str {
        match self {
            InitCommand::Step(step) => step.name(),
            InitCommand::Run => "run",
        }
    }

    fn named(word: &str) -> Option<InitCommand> {
        match word {
            "run" => Some(InitCommand::Run),
            _ => Step::named(word).map(InitCommand::Step),
        }
    }

    fn from_image(image: &str) -> Option<InitCommand> {
        Step::with_image(image_name(image)).map(InitCommand::Step)
    }
}

/// In a report, the subcommand's name.
impl Serialize for InitCommand {
    fn serialize<S: serde::Serializer>(&self, s: S) -> std::result::Result<S::Ok, S::Error> {
        s.serialize_str(self.name())
    }
}

/// An init container of an operator Pod that keeps failing.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Failing {
    pub pod: String,
    pub container: String,
    /// `None` when neither its command, its arguments nor its image tell.
    pub step: Option<InitCommand>,
    pub restarts: i32,
    /// Its last termination message (`lastState.terminated.message`): the step's own closing
    /// reason. Nothing else of the Pod is shown.
    pub message: Option<String>,
}

/// The operator Pods (by the Deployment's selector) and the init container among them that
/// keeps failing (the one with the most restarts), if any.
pub async fn failing(client: &Client, deployment: &Deployment) -> Result<Option<Failing>> {
    let Some(selector) = deployment
        .spec
        .as_ref()
        .and_then(|s| Selector::try_from(s.selector.clone()).ok())
        .filter(|s| !s.selects_all())
    else {
        // The API server does not let a Deployment select every Pod; nothing sensible to list.
        return Ok(None);
    };
    let pods: Api<Pod> = Api::namespaced(client.clone(), names::KYMA_SYSTEM);
    let list = pods
        .list(&ListParams::default().labels_from(&selector))
        .await
        .context(|| {
            format!(
                "listing the Pods of Deployment {}/{} ({selector})",
                names::KYMA_SYSTEM,
                names::OPERATOR_DEPLOYMENT
            )
        })?;
    Ok(worst(list.items.iter().filter_map(failing_in)))
}

/// The one with the most restarts; of equals, the first Pod by name.
fn worst(found: impl Iterator<Item = Failing>) -> Option<Failing> {
    found.min_by(|a, b| b.restarts.cmp(&a.restarts).then_with(|| a.pod.cmp(&b.pod)))
}

/// The init container of `pod` that keeps failing. Init containers run one after the other, so
/// at most one of them can; the first such status is taken.
pub fn failing_in(pod: &Pod) -> Option<Failing> {
    let statuses = pod.status.as_ref()?.init_container_statuses.as_ref()?;
    let specs = pod
        .spec
        .as_ref()
        .and_then(|s| s.init_containers.as_deref())
        .unwrap_or_default();
    statuses.iter().find(|s| keeps_failing(s)).map(|s| {
        let spec = specs.iter().find(|c| c.name == s.name);
        Failing {
            pod: pod.name_any(),
            container: s.name.clone(),
            step: spec
                .and_then(step_of)
                .or_else(|| InitCommand::from_image(&s.image)),
            restarts: s.restart_count,
            message: s
                .last_state
                .as_ref()
                .and_then(|l| l.terminated.as_ref())
                .and_then(|t| t.message.clone()),
        }
    })
}

fn keeps_failing(s: &ContainerStatus) -> bool {
    let state = s.state.as_ref();
    let crash_loop = state
        .and_then(|st| st.waiting.as_ref())
        .and_then(|w| w.reason.as_deref())
        == Some(names::CRASH_LOOP_BACK_OFF);
    let failed_before = s
        .last_state
        .as_ref()
        .and_then(|l| l.terminated.as_ref())
        .is_some_and(|t| t.exit_code != 0);
    // Started again after a failure, and not finished since.
    let finished = state
        .and_then(|st| st.terminated.as_ref())
        .is_some_and(|t| t.exit_code == 0);
    crash_loop || (s.restart_count > 0 && failed_before && !finished)
}

/// The step a container runs: a subcommand in its command or arguments, else its image.
pub fn step_of(c: &Container) -> Option<InitCommand> {
    c.command
        .iter()
        .flatten()
        .chain(c.args.iter().flatten())
        .find_map(|word| InitCommand::named(word))
        .or_else(|| c.image.as_deref().and_then(InitCommand::from_image))
}

/// `registry/path/cp-mod-cleaner:0.1.0@sha256:…` → `cp-mod-cleaner`.
fn image_name(image: &str) -> &str {
    let without_digest = image.split('@').next().unwrap_or(image);
    let last = without_digest.rsplit('/').next().unwrap_or(without_digest);
    last.split(':').next().unwrap_or(last)
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn container(v: serde_json::Value) -> Container {
        serde_json::from_value(v).unwrap()
    }

    fn pod(name: &str, statuses: serde_json::Value) -> Pod {
        serde_json::from_value(json!({
            "metadata": {"name": name, "namespace": "kyma-system"},
            "spec": {
                "containers": [{"name": "manager", "image": "operator:1"}],
                "initContainers": [
                    {"name": "init-migrator", "image": "r.example/p/cp-mod-migrator:0.1.0"},
                    {"name": "init-backup", "image": "r.example/p/cp-mod-backup:0.1.0"},
                    {"name": "init-cleaner", "image": "r.example/p/cp-mod-cleaner:0.1.0"},
                ],
            },
            "status": {"initContainerStatuses": statuses},
        }))
        .unwrap()
    }

    fn status(
        name: &str,
        restarts: i32,
        state: serde_json::Value,
        last: serde_json::Value,
    ) -> serde_json::Value {
        json!({"name": name, "image": "x", "imageID": "", "ready": false,
               "restartCount": restarts, "state": state, "lastState": last})
    }

    fn done(name: &str) -> serde_json::Value {
        status(name, 0, json!({"terminated": {"exitCode": 0}}), json!({}))
    }

    #[test]
    fn the_step_comes_from_the_command_or_the_arguments_before_the_image() {
        let by_image = |image: &str| step_of(&container(json!({"name": "c", "image": image})));
        assert_eq!(
            by_image("reg.example/a/cp-mod-migrator:0.1.0"),
            Some(InitCommand::Step(Step::Migrate))
        );
        assert_eq!(
            by_image("cp-mod-backup"),
            Some(InitCommand::Step(Step::Backup))
        );
        assert_eq!(
            by_image("reg.example:5000/cp-mod-cleaner:1@sha256:0123"),
            Some(InitCommand::Step(Step::Clean))
        );
        assert_eq!(by_image("reg.example/other:1"), None);
        // The single-container alternative: the migrator image, running `run`.
        let run = container(json!({"name": "c", "image": "x/cp-mod-migrator:0.1.0",
            "command": ["/cp-mod-migrator", "run"]}));
        assert_eq!(step_of(&run), Some(InitCommand::Run));
        let args = container(json!({"name": "c", "image": "x/cp-mod-migrator:0.1.0",
            "args": ["--deadline", "60s", "clean"]}));
        assert_eq!(step_of(&args), Some(InitCommand::Step(Step::Clean)));
    }

    #[test]
    fn an_init_container_in_crash_loop_back_off_is_failing_with_its_message() {
        let p = pod(
            "op-1",
            json!([
                done("init-migrator"),
                done("init-backup"),
                status(
                    "init-cleaner",
                    4,
                    json!({"waiting": {"reason": "CrashLoopBackOff", "message": "back-off 40s"}}),
                    json!({"terminated": {"exitCode": 1, "message": "clean failed: no"}}),
                ),
            ]),
        );
        assert_eq!(
            failing_in(&p),
            Some(Failing {
                pod: "op-1".into(),
                container: "init-cleaner".into(),
                step: Some(InitCommand::Step(Step::Clean)),
                restarts: 4,
                message: Some("clean failed: no".into()),
            })
        );
    }

    #[test]
    fn a_restarted_init_container_that_last_exited_non_zero_is_failing_until_it_finishes() {
        let failed = json!({"terminated": {"exitCode": 2}});
        let running = status("init-migrator", 1, json!({"running": {}}), failed.clone());
        assert_eq!(
            failing_in(&pod("p", json!([running]))).map(|f| (f.step, f.restarts, f.message)),
            Some((Some(InitCommand::Step(Step::Migrate)), 1, None))
        );
        let finished = status(
            "init-migrator",
            1,
            json!({"terminated": {"exitCode": 0}}),
            failed,
        );
        assert_eq!(failing_in(&pod("p", json!([finished]))), None);
        // Restarted after a success (the Pod restarted): not failing.
        let ok_before = status(
            "init-migrator",
            3,
            json!({"running": {}}),
            json!({"terminated": {"exitCode": 0}}),
        );
        assert_eq!(failing_in(&pod("p", json!([ok_before]))), None);
        // Still waiting for its first start: not failing.
        let initializing = status(
            "init-migrator",
            0,
            json!({"waiting": {"reason": "PodInitializing"}}),
            json!({}),
        );
        assert_eq!(failing_in(&pod("p", json!([initializing]))), None);
        let p = Pod::default();
        assert_eq!(failing_in(&p), None, "a Pod without status");
    }

    #[test]
    fn of_several_pods_the_one_with_the_most_restarts_is_shown() {
        let crash = |restarts| {
            status(
                "init-backup",
                restarts,
                json!({"waiting": {"reason": "CrashLoopBackOff"}}),
                json!({"terminated": {"exitCode": 1}}),
            )
        };
        let pods = [
            pod("b", json!([done("init-migrator"), crash(2)])),
            pod("a", json!([done("init-migrator"), crash(5)])),
            pod("c", json!([done("init-migrator"), crash(5)])),
            pod("d", json!([done("init-migrator")])),
        ];
        let w = worst(pods.iter().filter_map(failing_in)).unwrap();
        assert_eq!(
            (w.pod.as_str(), w.restarts, w.step),
            ("a", 5, Some(InitCommand::Step(Step::Backup)))
        );
        assert_eq!(worst(std::iter::empty()), None);
    }
}
