//! A real OCI runtime for the images: podman with runc, configured and stored under a directory
//! of the test's own, so that it shares no state with buildah's storage (where the images are
//! built) or with any other podman on the machine. Images come in as the OCI archives that
//! `scripts/images build` exports: the artifact that is shipped is the one that runs.

use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};

use super::repo_root;

pub struct Podman {
    dir: PathBuf,
}

impl Podman {
    /// Installs podman and runc when missing (`scripts/images runtime-deps`, as `make test`
    /// does), and writes the runtime's configuration under `dir`.
    pub fn new(dir: &Path) -> Podman {
        run_ok(Command::new(repo_root().join("scripts/images")).arg("runtime-deps"));
        std::fs::create_dir_all(dir).expect("podman dir");
        // runc: Debian 12's crun refuses a hybrid cgroup (v1 + v2) layout. No default ulimits:
        // podman's would raise RLIMIT_NOFILE, which a container of a container may not (runc:
        // "error setting rlimit type 7: operation not permitted"); a kubelet sets none either.
        // cgroupfs and a file for events: no systemd or journald needed.
        std::fs::write(
            dir.join("containers.conf"),
            "[containers]\ndefault_ulimits = []\n\n\
             [engine]\nruntime = \"runc\"\ncgroup_manager = \"cgroupfs\"\nevents_logger = \"file\"\n",
        )
        .expect("containers.conf");
        Podman { dir: dir.into() }
    }

    /// `podman` with this configuration and storage; the caller adds the subcommand.
    pub fn command(&self) -> Command {
        let mut cmd = Command::new("podman");
        cmd.env("CONTAINERS_CONF", self.dir.join("containers.conf"))
            // vfs: a one-layer image needs no overlay, and vfs works on any filesystem.
            .args(["--storage-driver", "vfs", "--root"])
            .arg(self.dir.join("root"))
            .arg("--runroot")
            .arg(self.dir.join("runroot"))
            .arg("--tmpdir")
            .arg(self.dir.join("tmp"))
            .stdin(Stdio::null());
        cmd
    }

    /// Loads an OCI archive; returns the image's id.
    pub fn load(&self, archive: &Path) -> String {
        let out = run_ok(
            self.command()
                .args(["pull", "--quiet"])
                .arg(format!("oci-archive:{}", archive.display())),
        );
        String::from_utf8_lossy(&out.stdout).trim().to_string()
    }
}

/// Runs `cmd`; panics with its output unless it succeeds.
pub fn run_ok(cmd: &mut Command) -> Output {
    let out = cmd
        .stdin(Stdio::null())
        .output()
        .unwrap_or_else(|e| panic!("{cmd:?}: {e}"));
    assert!(
        out.status.success(),
        "{cmd:?} failed:\n{}\n{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    out
}
