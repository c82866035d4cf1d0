//! The container images as `make images` builds them (scripts/images: a static binary, one
//! FROM-scratch image per step), loaded from their OCI archives into the test's own podman: the
//! artifact that is shipped is the one that runs.

use std::process::{Command, Output};

use serde_json::Value;

use super::podman::{self, Podman};
use super::repo_root;

/// An image of `scripts/images list`, loaded into the test's runtime from its OCI archive.
pub struct Image {
    pub name: String,
    /// The reference it is built under (`registry/name:tag`).
    pub reference: String,
    /// The id in the test's runtime.
    pub id: String,
    /// The step its entrypoint runs.
    pub step: String,
    /// Its configuration as the runtime inspects it (`Config`: user, entrypoint, ...).
    pub config: Value,
    /// How many layers it has.
    pub layers: Option<usize>,
}

/// `scripts/images build`, as `make images` runs it; its output.
pub fn build() -> Output {
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
    podman::run_ok(&mut build)
}

/// Every image of `scripts/images list`, in its order, loaded into `podman` from its archive.
pub fn load(podman: &Podman) -> Vec<Image> {
    let list = podman::run_ok(Command::new(repo_root().join("scripts/images")).arg("list"));
    String::from_utf8_lossy(&list.stdout)
        .lines()
        .map(|l| {
            let f: Vec<&str> = l.split('\t').collect();
            let archive = repo_root().join(format!("target/images/{}.tar", f[0]));
            let id = podman.load(&archive);
            let inspect = podman::run_ok(podman.command().args(["image", "inspect", &id]));
            let meta: Value = serde_json::from_slice(&inspect.stdout).expect("inspect JSON");
            Image {
                name: f[0].into(),
                reference: f[1].into(),
                id,
                step: f[2].into(),
                config: meta[0]["Config"].clone(),
                layers: meta[0]["RootFS"]["Layers"].as_array().map(Vec::len),
            }
        })
        .collect()
}
