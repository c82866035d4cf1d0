//! The launcher of the bench: every measured run of the tool is started by this same binary,
//! re-executed, so that the kernel's peak RSS of the tool is the tool's own (a process forked
//! from the large bench would inherit its memory into the figure), with the wall and CPU time
//! that wait4 reports for exactly that child.

use std::path::Path;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use serde_json::Value;

/// Set on the bench's own re-execution as a launcher (see [`measure`]).
pub const LAUNCHER_ENV: &str = "CP_BENCH_LAUNCHER";
/// Where the launcher writes the tool's stdout (default: nowhere).
pub const STDOUT_ENV: &str = "CP_BENCH_STDOUT";

/// One measured process of the tool.
pub struct Measured {
    pub wall: Duration,
    /// User + system CPU time of the tool itself.
    pub cpu: Duration,
    pub max_rss_kib: u64,
    pub success: bool,
    pub last: Value,
    pub stderr: String,
}

impl Measured {
    pub fn requests(&self) -> u64 {
        self.last["api_requests"].as_u64().unwrap_or(0)
    }

    #[track_caller]
    pub fn expect_done(&self, what: &str) {
        assert!(
            self.success && self.last["outcome"] == "done",
            "{what} did not finish:\n{}",
            self.stderr
        );
    }
}

/// Runs the tool from process start to exit, with its peak RSS and CPU time.
///
/// The kernel's peak RSS of a process includes the memory of the process it was forked from,
/// as it was at the fork. So the tool is not forked from this (large) process but from a small
/// launcher: this same binary, re-executed, which starts the tool, waits for it with wait4 and
/// prints what the kernel reports for exactly that child.
pub async fn measure(tool: &Path, kubeconfig: &Path, args: &[&str]) -> Measured {
    let mut cmd = Command::new(std::env::current_exe().expect("bench executable"));
    cmd.env(LAUNCHER_ENV, "1")
        .arg(tool)
        .arg("--kubeconfig")
        .arg(kubeconfig)
        .args(["--log-format", "json", "--deadline", "300s"])
        .args(args)
        .env_remove("KUBECONFIG")
        .env_remove("CP_MIGRATOR_LOG")
        .stdin(Stdio::null());
    launched(cmd).await
}

/// Runs the launcher `cmd` (see [`measure`]) and reads what it reports of the tool.
pub async fn launched(mut cmd: Command) -> Measured {
    let out = tokio::task::spawn_blocking(move || cmd.output())
        .await
        .expect("launcher thread")
        .expect("run the launcher");
    let report = String::from_utf8_lossy(&out.stdout);
    let stderr = String::from_utf8_lossy(&out.stderr).into_owned();
    let fields: Vec<u64> = report
        .split_whitespace()
        .map(|f| f.parse().unwrap_or(0))
        .collect();
    let [status, wall_us, cpu_us, max_rss_kib] = fields[..] else {
        panic!("launcher failed ({}): {report}\n{stderr}", out.status);
    };
    let last = stderr
        .lines()
        .rev()
        .find(|l| !l.trim().is_empty())
        .and_then(|l| serde_json::from_str(l).ok())
        .unwrap_or(Value::Null);
    Measured {
        wall: Duration::from_micros(wall_us),
        cpu: Duration::from_micros(cpu_us),
        max_rss_kib,
        success: status == 0,
        last,
        stderr,
    }
}

/// The launcher: runs argv[1..] with the inherited stderr, then prints
/// `exit-code wall-µs cpu-µs peak-rss-KiB` on stdout.
// wait4 reaps the child (std's wait() cannot report its resource usage).
#[allow(clippy::zombie_processes)]
pub fn launcher() {
    let mut args = std::env::args_os().skip(1);
    let program = args.next().expect("launcher: program");
    let started = Instant::now();
    // The tool's stdout, when a section wants it, goes to a file (this one's is the report).
    let stdout = match std::env::var_os(STDOUT_ENV) {
        Some(path) => Stdio::from(std::fs::File::create(&path).expect("the tool's stdout file")),
        None => Stdio::null(),
    };
    let child = Command::new(&program)
        .args(args)
        .env_remove(LAUNCHER_ENV)
        .env_remove(STDOUT_ENV)
        .stdout(stdout)
        .spawn()
        .unwrap_or_else(|e| panic!("start {}: {e}", program.to_string_lossy()));
    let pid = libc::pid_t::try_from(child.id()).expect("pid");
    let mut status: libc::c_int = 0;
    // SAFETY: rusage is plain old data; wait4 fills it in.
    let mut usage: libc::rusage = unsafe { std::mem::zeroed() };
    loop {
        // SAFETY: valid pointers to locals; pid is our own unreaped child.
        let r = unsafe { libc::wait4(pid, &mut status, 0, &mut usage) };
        if r == pid {
            break;
        }
        let err = std::io::Error::last_os_error();
        assert_eq!(
            err.kind(),
            std::io::ErrorKind::Interrupted,
            "wait4 failed: {err}"
        );
    }
    let wall = started.elapsed();
    let code = if libc::WIFEXITED(status) {
        libc::WEXITSTATUS(status)
    } else {
        128 + libc::WTERMSIG(status)
    };
    let micros = |t: libc::timeval| {
        u64::try_from(t.tv_sec).unwrap_or(0) * 1_000_000 + u64::try_from(t.tv_usec).unwrap_or(0)
    };
    // Linux reports ru_maxrss in KiB.
    println!(
        "{code} {} {} {}",
        wall.as_micros(),
        micros(usage.ru_utime) + micros(usage.ru_stime),
        usage.ru_maxrss
    );
}
