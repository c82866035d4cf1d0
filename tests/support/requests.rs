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

/// One retry that the tool logged ("transient API failure, retrying").
#[derive(Debug, Clone)]
pub struct Retry {
    /// "METHOD path".
    pub request: String,
    /// Which retry of the request (from 1).
    pub attempt: u64,
    /// How long the tool waited before it.
    pub delay_ms: u64,
    /// The cluster's context, when the tool asked several.
    pub context: Option<String>,
}

/// Every retry in the tool's JSON log, in order.
pub fn retries_in(stderr: &str) -> Vec<Retry> {
    stderr
        .lines()
        .filter_map(|l| serde_json::from_str::<Value>(l).ok())
        .filter(|v| v["message"] == "transient API failure, retrying")
        .map(|v| Retry {
            request: format!("{} {}", str_of(&v["method"]), str_of(&v["path"])),
            attempt: v["attempt"].as_u64().expect("attempt"),
            delay_ms: v["delay_ms"].as_u64().expect("delay_ms"),
            context: v["spans"]
                .as_array()
                .into_iter()
                .flatten()
                .find_map(|s| s["context"].as_str().map(str::to_string)),
        })
        .collect()
}

/// The retries of each request, grouped: a request's retries from its first retry on (a
/// request made again later starts a group of its own).
pub fn retry_chains(retries: &[Retry]) -> Vec<Vec<Retry>> {
    let mut chains: Vec<Vec<Retry>> = Vec::new();
    for r in retries {
        let open = chains
            .iter_mut()
            .rev()
            .find(|c| c[0].request == r.request && c[0].context == r.context && r.attempt > 1);
        match open {
            Some(chain) => chain.push(r.clone()),
            None => chains.push(vec![r.clone()]),
        }
    }
    chains
}
