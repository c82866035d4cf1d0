//! The API requests a run of the tool made, read from its client's debug log.

use std::path::Path;

use serde_json::Value;

use super::values::str_of;
use super::{RunResult, run_tool_with_env};

/// Runs the tool with the client's request log (kube_client at debug) in its JSON log lines.
pub fn run_logged(kubeconfig: &Path, args: &[&str]) -> RunResult {
    run_tool_with_env(
        kubeconfig,
        args,
        &[("CP_MIGRATOR_LOG", "info,kube_client=debug")],
    )
}

/// One API request as the RBAC authorizer sees it.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord)]
pub struct Request {
    pub verb: String,
    pub group: String,
    pub resource: String,
    pub namespace: Option<String>,
    pub name: Option<String>,
}

/// The requests in the tool's debug log; discovery (/api, /apis) and SelfSubjectAccessReviews
/// are left out: they are open to every authenticated user.
pub fn requests_in(stderr: &str) -> Vec<Request> {
    stderr
        .lines()
        .filter_map(|l| serde_json::from_str::<Value>(l).ok())
        .filter(|v| v["message"] == "requesting")
        .filter_map(|v| {
            let span = &v["spans"][0];
            parse_request(str_of(&span["http.method"]), str_of(&span["http.url"]))
        })
        .filter(|r| !is_self_review(r))
        .collect()
}

/// A question about one's own permissions (system:basic-user grants it to everyone).
pub fn is_self_review(r: &Request) -> bool {
    r.group == "authorization.k8s.io" && r.resource == "selfsubjectaccessreviews"
}

pub fn parse_request(method: &str, url: &str) -> Option<Request> {
    let path = url
        .split_once("://")
        .map_or(url, |(_, rest)| rest.find('/').map_or("/", |i| &rest[i..]));
    let path = path.split('?').next().unwrap_or(path);
    let segs: Vec<&str> = path.split('/').filter(|s| !s.is_empty()).collect();
    let (group, rest) = match segs.as_slice() {
        ["api", _version, rest @ ..] if !rest.is_empty() => ("", rest),
        ["apis", group, _version, rest @ ..] if !rest.is_empty() => (*group, rest),
        _ => return None,
    };
    let (namespace, rest) = match rest {
        ["namespaces", ns, r @ ..] if !r.is_empty() => (Some(ns.to_string()), r),
        r => (None, r),
    };
    assert!(
        rest.len() <= 2,
        "subresource request {path}: extend this parser"
    );
    let name = rest.get(1).map(|n| n.to_string());
    let verb = match (method, &name) {
        ("GET", Some(_)) => "get",
        ("GET", None) => "list",
        ("POST", _) => "create",
        ("PUT", _) => "update",
        ("PATCH", _) => "patch",
        ("DELETE", Some(_)) => "delete",
        _ => panic!("unexpected request {method} {path}"),
    };
    Some(Request {
        verb: verb.into(),
        group: group.into(),
        resource: rest[0].into(),
        namespace,
        name,
    })
}
