//! A Pod of the example Deployment (deploy/operator-deployment-example.yaml) without a kubelet:
//! each container spec run under podman as a kubelet would run it, with the Pod's
//! ServiceAccount token, its securityContext and resource limits, and a termination message
//! file.

use std::path::PathBuf;

use serde_json::Value;

use super::contract::TERMINATION_LOG;
use super::images::Image;
use super::podman::Podman;
use super::rbac::SA_NAMESPACE;
use super::values::str_of;
use super::{RunResult, TestCluster, from_yaml, repo_root};

/// The Pod's environment for an init container: its ServiceAccount token and CA where a Pod
/// has them (the tool's in-cluster configuration), the API server's address, and the env of
/// the container spec with the downward API resolved.
pub struct Pod {
    pub name: String,
    secrets_dir: PathBuf,
    port: String,
}

/// What a run of one container left: its output, and its termination message.
pub struct ContainerRun {
    pub result: RunResult,
    pub termination_message: String,
}

impl Pod {
    pub async fn new(c: &TestCluster, service_account: &str, name: &str) -> Pod {
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
    pub fn run(&self, podman: &Podman, container: &Value, images: &[Image]) -> ContainerRun {
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
                TERMINATION_LOG
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
            result: RunResult::of(output),
            termination_message: std::fs::read_to_string(&termination_log)
                .expect("termination log"),
        }
    }
}

/// The runtime's flags for a container's securityContext. The seccomp profile `RuntimeDefault`
/// is the runtime's own default profile: no flag.
pub fn security_context_flags(sc: &Value) -> Vec<String> {
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
pub fn resource_limit_flags(limits: &Value) -> Vec<String> {
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

pub fn image_of<'a>(container: &Value, images: &'a [Image]) -> &'a Image {
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
pub fn example_deployment() -> (Value, Value) {
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
