//! The container's termination message: a failed step leaves its reason in the file the kubelet
//! reads when the container ends, so `kubectl describe pod` and `status` show why it failed.

use std::ffi::OsString;
use std::fs::OpenOptions;
use std::io::Write;
use std::path::{Path, PathBuf};

use crate::names;

/// Names another file than [`names::TERMINATION_LOG`] (tests, or a Pod whose
/// `terminationMessagePath` differs).
pub const PATH_ENV: &str = "CP_MIGRATOR_TERMINATION_LOG";
/// The kubelet keeps at most this many bytes of a container's termination message.
pub const MAX_BYTES: usize = 4096;

/// The file of [`PATH_ENV`], else [`names::TERMINATION_LOG`].
pub fn path() -> PathBuf {
    path_from(std::env::var_os(PATH_ENV))
}

fn path_from(var: Option<OsString>) -> PathBuf {
    var.filter(|v| !v.is_empty())
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from(names::TERMINATION_LOG))
}

/// Writes `reason` as the termination message when the file exists. The kubelet provides the
/// file; outside a Pod there is none, and on a read-only root filesystem none can be created:
/// then nothing is written, and the command's own outcome never depends on it.
pub fn write(reason: &str) {
    let path = path();
    if let Err(e) = write_to(&path, reason) {
        tracing::debug!(path = %path.display(), error = %e, "no termination message written");
    }
}

fn write_to(path: &Path, reason: &str) -> std::io::Result<()> {
    // Never `create`: only a file that is already there is the kubelet's.
    let mut file = OpenOptions::new().write(true).truncate(true).open(path)?;
    file.write_all(message(reason).as_bytes())
}

/// One line of at most [`MAX_BYTES`]; a longer reason is cut at a character boundary and ends
/// with `…`, so the kubelet does not cut it in the middle of a character.
fn message(reason: &str) -> String {
    // Line breaks only: the spaces inside a quoted value are part of the value.
    let line = reason.trim().replace(['\r', '\n'], " ");
    if line.len() <= MAX_BYTES {
        return line;
    }
    let ellipsis = '…';
    let mut end = MAX_BYTES - ellipsis.len_utf8();
    while !line.is_char_boundary(end) {
        end -= 1;
    }
    format!("{}{ellipsis}", &line[..end])
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_message_is_one_line() {
        assert_eq!(
            message("ConfigMap kyma-system/x:\nvalue \"  80\" is not a port\n"),
            "ConfigMap kyma-system/x: value \"  80\" is not a port"
        );
    }

    #[test]
    fn a_long_message_is_cut_within_the_kubelets_limit_at_a_character_boundary() {
        for filler in ["a", "ä", "€", "𝄞"] {
            let reason = filler.repeat(5000);
            let m = message(&reason);
            assert!(m.len() <= MAX_BYTES, "{filler}: {} bytes", m.len());
            assert!(
                m.len() > MAX_BYTES - 4 - '…'.len_utf8(),
                "{filler}: {}",
                m.len()
            );
            assert!(m.ends_with('…'));
            assert!(reason.starts_with(m.trim_end_matches('…')));
        }
        let exact = "a".repeat(MAX_BYTES);
        assert_eq!(message(&exact), exact);
    }

    #[test]
    fn the_file_is_written_only_where_it_exists() {
        let dir = tempfile::tempdir().expect("tempdir");
        let absent = dir.path().join("termination-log");
        assert!(write_to(&absent, "failed").is_err());
        assert!(!absent.exists(), "never created");

        std::fs::write(&absent, "an earlier, longer message").expect("write");
        write_to(&absent, "failed").expect("written");
        assert_eq!(std::fs::read_to_string(&absent).expect("read"), "failed");
    }

    #[test]
    fn the_path_is_the_kubelets_unless_named() {
        assert_eq!(path_from(None), Path::new("/dev/termination-log"));
        assert_eq!(
            path_from(Some("".into())),
            Path::new("/dev/termination-log")
        );
        assert_eq!(path_from(Some("/tmp/t".into())), Path::new("/tmp/t"));
    }
}
