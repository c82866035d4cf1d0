//! "Writes nothing": the whole cluster exactly as before a command, every object with its
//! resourceVersion (an object written with the same content counts as written).

use std::path::Path;

use super::snapshot::{State, state_diff};
use super::{RunResult, TestCluster, run_tool};

/// Fails, naming each difference, unless `after` is `before` exactly: no object written,
/// created or deleted by `what`.
#[track_caller]
pub fn assert_unchanged(before: &State, after: &State, what: &str) {
    let diff = state_diff(before, after);
    assert!(diff.is_empty(), "{what} wrote:\n{}", diff.join("\n"));
}

/// Runs the tool with `args` as the admin and fails unless it wrote nothing at all.
pub async fn assert_writes_nothing(c: &TestCluster, args: &[&str]) -> RunResult {
    assert_writes_nothing_as(c, &c.kubeconfig, args).await
}

/// [`assert_writes_nothing`] with the credentials of `kubeconfig`.
pub async fn assert_writes_nothing_as(
    c: &TestCluster,
    kubeconfig: &Path,
    args: &[&str],
) -> RunResult {
    let before = c.snapshot().await;
    let out = run_tool(kubeconfig, args);
    let after = c.snapshot().await;
    let diff = state_diff(&before, &after);
    assert!(
        diff.is_empty(),
        "{args:?} changed the cluster:\n{}\n{}",
        diff.join("\n"),
        out.stderr
    );
    out
}
