//! Kubeconfigs of several clusters, for the tests and the benchmark of status and check of many
//! clusters at once: entries of test clusters under names of one's choosing, contexts at a
//! closed port, and the tool run with `KUBECONFIG` (several files joined by `:`).

use std::ffi::OsString;
use std::path::{Path, PathBuf};
use std::process::Command;

use serde_json::{Value, json};

use super::{RunResult, TestCluster, from_yaml, to_yaml, tool_base};

/// A kubeconfig built entry by entry, in the order given.
#[derive(Debug, Default, Clone)]
pub struct Kubeconfig {
    clusters: Vec<Value>,
    users: Vec<Value>,
    contexts: Vec<Value>,
    current: Option<String>,
}

impl Kubeconfig {
    pub fn new() -> Kubeconfig {
        Kubeconfig::default()
    }

    /// A cluster at `server`; with `ca_data` (base64 PEM) for https, else plain.
    pub fn cluster(mut self, name: &str, server: &str, ca_data: Option<&str>) -> Kubeconfig {
        let mut cluster = json!({"server": server});
        match ca_data {
            Some(ca) => cluster["certificate-authority-data"] = json!(ca),
            None if server.starts_with("https:") => {
                cluster["insecure-skip-tls-verify"] = json!(true)
            }
            None => {}
        }
        self.clusters
            .push(json!({"name": name, "cluster": cluster}));
        self
    }

    /// A user with these credentials (`{"token": …}`, `{}`, …).
    pub fn user(mut self, name: &str, user: Value) -> Kubeconfig {
        self.users.push(json!({"name": name, "user": user}));
        self
    }

    pub fn context(mut self, name: &str, cluster: &str, user: &str) -> Kubeconfig {
        self.contexts
            .push(json!({"name": name, "context": {"cluster": cluster, "user": user}}));
        self
    }

    pub fn current(mut self, name: &str) -> Kubeconfig {
        self.current = Some(name.into());
        self
    }

    /// A test cluster as cluster `name`, its admin as user `name-admin`, and context `name`.
    pub fn admin_of(self, c: &TestCluster, name: &str) -> Kubeconfig {
        let (server, ca, user) = admin_entries(c);
        self.cluster(name, &server, Some(&ca))
            .user(&format!("{name}-admin"), user)
            .context(name, name, &format!("{name}-admin"))
    }

    pub fn to_yaml(&self) -> String {
        let mut doc = json!({
            "apiVersion": "v1",
            "kind": "Config",
            "clusters": self.clusters,
            "users": self.users,
            "contexts": self.contexts,
        });
        if let Some(c) = &self.current {
            doc["current-context"] = json!(c);
        }
        to_yaml(&doc)
    }

    pub fn write(&self, path: &Path) -> PathBuf {
        std::fs::write(path, self.to_yaml())
            .unwrap_or_else(|e| panic!("write {}: {e}", path.display()));
        path.to_path_buf()
    }
}

/// The server, the CA (base64) and the admin user of a test cluster's kubeconfig.
pub fn admin_entries(c: &TestCluster) -> (String, String, Value) {
    let admin: Value = from_yaml(&std::fs::read_to_string(&c.kubeconfig).expect("kubeconfig"));
    let cluster = &admin["clusters"][0]["cluster"];
    (
        cluster["server"].as_str().expect("server").to_string(),
        cluster["certificate-authority-data"]
            .as_str()
            .expect("ca")
            .to_string(),
        admin["users"][0]["user"].clone(),
    )
}

/// A port on 127.0.0.1 where nothing listens (bound once, then closed).
pub fn closed_port() -> u16 {
    let listener = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
    listener.local_addr().expect("addr").port()
}

/// `KUBECONFIG` for these files, joined as kubectl joins them.
pub fn joined(files: &[PathBuf]) -> OsString {
    std::env::join_paths(files).expect("paths without ':'")
}

/// The tool with `KUBECONFIG` set (no `--kubeconfig`), JSON logs, no stdin.
pub fn tool_with_kubeconfig_env(kubeconfig: &OsString) -> Command {
    let mut cmd = tool_base();
    cmd.env("KUBECONFIG", kubeconfig)
        .env_remove("CP_MIGRATOR_DEADLINE");
    cmd
}

/// Runs the tool with `KUBECONFIG` and `args` to the end.
pub fn run_with_kubeconfig_env(kubeconfig: &OsString, args: &[&str]) -> RunResult {
    let output = tool_with_kubeconfig_env(kubeconfig)
        .args(args)
        .output()
        .expect("run cp-mod-migrator");
    RunResult::of(output)
}
