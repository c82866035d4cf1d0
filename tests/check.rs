//! `check` on the real API server, against the contract's **check** section: it changes nothing; it
//! says what migrate would say, word for word; and its offline judgement of the CRD's schema
//! (on a cluster without the module) equals the API server's (a server-side dry run of
//! migrate's write with the module installed) for every configuration the suites have.

mod support;

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::time::Instant;

use k8s_openapi::api::apps::v1::StatefulSet;
use k8s_openapi::api::core::v1::ConfigMap;
use k8s_openapi::apiextensions_apiserver::pkg::apis::apiextensions::v1::CustomResourceDefinition;
use kube::Client;
use kube::api::{Api, DeleteParams, Patch, PatchParams};
use serde_json::{Value, json};

use cp_mod_migrator::commands::check::{CheckReport, Method, Reason};
use support::config_maps::{cm_api, put_configmap, set_port};
use support::contract::{self, legacy_marker, markers};
use support::fixtures::legacy_configmap;
use support::generators::{document, sample, schema_shaped_document};
use support::legacy_cases::*;
use support::rbac::as_migrator_service_account;
use support::unchanged::assert_writes_nothing_as;
use support::*;

/// Cases drawn from each generator, unless CP_CHECK_GENERATED says otherwise.
const GENERATED_PER_GENERATOR: usize = 150;

/// Cases drawn from each generator (CP_CHECK_GENERATED changes it, for a longer run; .ci/run
/// refuses to run with it).
fn generated_per_generator() -> usize {
    std::env::var("CP_CHECK_GENERATED")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(GENERATED_PER_GENERATOR)
}

/// What the summary and every failure add when CP_CHECK_GENERATED was in effect.
fn generated_note() -> String {
    match std::env::var("CP_CHECK_GENERATED") {
        Ok(v) => format!(
            " (CP_CHECK_GENERATED={v} was in effect: {} cases per generator instead of {GENERATED_PER_GENERATOR})",
            generated_per_generator()
        ),
        Err(_) => String::new(),
    }
}

/// Configurations of my own that reach every rule of the CRD's schema.
fn schema_cases() -> Vec<(&'static str, String)> {
    let port = |v: &str| format!("servers:\n  businessDataTunnel:\n    externalPort: {v}\n");
    vec![
        // Unknown fields, at several depths.
        ("unknown field at the top", "colour: blue\n".into()),
        ("unknown field at depth 2", "servers:\n  colour: blue\n".into()),
        (
            "unknown field at depth 4",
            "servers:\n  proxy:\n    http:\n      colour: blue\n".into(),
        ),
        (
            "unknown field at depth 5",
            "servers:\n  proxy:\n    authorization:\n      oauth:\n        allowedClientId: a\n        colour: blue\n"
                .into(),
        ),
        (
            "unknown fields beside known ones, and a list of them",
            "subaccountId: abc\nextras: [{a: 1}, {b: 2}]\nintegration:\n  auditlog:\n    mode: service\n    sink: x\n"
                .into(),
        ),
        (
            "a mapping where a string belongs",
            "highAvailabilityMode:\n  mode: off\n".into(),
        ),
        // Patterns.
        ("pattern: highAvailabilityMode on", "highAvailabilityMode: \"on\"\n".into()),
        ("pattern: subaccountId with _", "subaccountId: a_b\n".into()),
        ("pattern: empty subaccountId", "subaccountId: \"\"\n".into()),
        ("pattern: subaccountId non-ASCII", "subaccountId: ü\n".into()),
        (
            "pattern: a trailing newline is no match",
            "highAvailabilityMode: \"off\\n\"\n".into(),
        ),
        (
            "pattern: auditlog mode",
            "integration:\n  auditlog:\n    mode: file\n".into(),
        ),
        // Ranges and number forms.
        ("range: port 0", port("0")),
        ("range: port 65536", port("65536")),
        ("range: port -1", port("-1")),
        ("range: port beyond uint64", port("99999999999999999999999")),
        ("range: port uint64 max", port("18446744073709551615")),
        ("number: port 443.0", port("443.0")),
        ("number: port 1.5", port("1.5")),
        ("number: port 4.43e2", port("4.43e2")),
        // Types.
        ("type: port as a string", port("\"443\"")),
        ("type: boolean as a string", "serviceChannels:\n  enabled: \"yes\"\n".into()),
        ("type: boolean as a number", "multiRegionMode:\n  enabled: 1\n".into()),
        ("type: string as a number", "subaccountSubdomain: 5\n".into()),
        ("type: mapping as a string", "integration: x\n".into()),
        (
            "type: mapping as a list",
            "servers:\n  businessDataTunnel: [a]\n".into(),
        ),
        // Required fields, nulls and defaults.
        (
            "required: externalHost null is pruned",
            "servers:\n  businessDataTunnel:\n    externalHost: null\n".into(),
        ),
        (
            "required: authorization without oauth",
            "servers:\n  proxy:\n    authorization: {}\n".into(),
        ),
        (
            "required: oauth without allowedClientId",
            "servers:\n  proxy:\n    authorization:\n      oauth: {}\n".into(),
        ),
        (
            "null with a default becomes the default",
            "integration:\n  auditlog:\n    mode: null\n".into(),
        ),
        ("null mapping with a default", "multiRegionMode: null\n".into()),
        ("null without a default is dropped", "subaccountSubdomain: ~\n".into()),
        ("an empty mapping is defaulted", "multiRegionMode: {}\n".into()),
        (
            "the CR's fields fill in what legacy leaves out",
            "servers:\n  businessDataTunnel:\n    externalPort: 8443\n".into(),
        ),
        (
            "several violations at once",
            "highAvailabilityMode: on\nsubaccountId: a_b\nserviceChannels:\n  enabled: maybe\nservers:\n  businessDataTunnel:\n    externalPort: 0\n"
                .into(),
        ),
        (
            "shared tenant",
            "tenantMode: shared\nsubaccountId: abc\n".into(),
        ),
    ]
}

/// The documents of the two legacy fixtures.
fn fixture_cases() -> Vec<(&'static str, String)> {
    [
        ("fixture: dedicated tenant", LEGACY),
        ("fixture: shared tenant", LEGACY_SHARED),
    ]
    .into_iter()
    .map(|(name, dir)| {
        let cm = legacy_configmap(dir);
        (name, cm.data.expect("data")[KEY].clone())
    })
    .collect()
}

/// Every configuration the suites have, and mine.
fn agreement_cases() -> Vec<Case> {
    let mut cases = Vec::new();
    let as_case = |name: String, text: String| Case {
        name: Box::leak(name.into_boxed_str()),
        setup: Setup::Document(text),
        expect: Vec::new(),
    };
    for (name, text) in fixture_cases().into_iter().chain(schema_cases()) {
        cases.push(as_case(format!("schema: {name}"), text));
    }
    cases.extend(hostile_cases());
    let n = generated_per_generator();
    for (i, doc) in sample(document(), n).into_iter().enumerate() {
        let text = to_yaml(&doc);
        cases.push(as_case(format!("property generator #{i}"), text));
    }
    for (i, doc) in sample(schema_shaped_document(), n).into_iter().enumerate() {
        let text = to_yaml(&doc);
        cases.push(as_case(format!("schema-shaped generator #{i}"), text));
    }
    cases
}

/// One cluster whose legacy ConfigMaps are rewritten per case, with their originals.
struct Rig {
    cluster: TestCluster,
    originals: BTreeMap<String, ConfigMap>,
}

impl Rig {
    async fn new(fixtures: &[&str]) -> Rig {
        let cluster = TestCluster::with(fixtures).await;
        let mut originals = BTreeMap::new();
        for name in [CONFIG, INFO] {
            let cm = cm_api(&cluster.client)
                .get(name)
                .await
                .expect("legacy ConfigMap");
            originals.insert(name.to_string(), cm);
        }
        Rig { cluster, originals }
    }

    async fn set(&self, setup: &Setup) {
        apply_setup(&self.cluster.client, &self.originals, setup).await;
    }

    async fn reset(&self) {
        for cm in self.originals.values() {
            put_configmap(&self.cluster.client, cm).await;
        }
    }
}

/// Runs the tool in a blocking thread, so that several runs overlap.
async fn run_async(kubeconfig: &Path, args: &[&str]) -> RunResult {
    let kubeconfig = kubeconfig.to_path_buf();
    let args: Vec<String> = args.iter().map(|s| s.to_string()).collect();
    tokio::task::spawn_blocking(move || {
        let args: Vec<&str> = args.iter().map(String::as_str).collect();
        run_tool(&kubeconfig, &args)
    })
    .await
    .expect("join")
}

/// The JSON report of a `check -o json` run, after checking that its exit code and closing log
/// line agree with its verdict.
fn report_of(r: &RunResult) -> Result<CheckReport, String> {
    let report: CheckReport = serde_json::from_str(&r.stdout)
        .map_err(|e| format!("no JSON report ({e}): {}\n{}", r.stdout, r.stderr))?;
    let (code, outcome) = if report.ready {
        (0, "done")
    } else {
        (1, "failed")
    };
    if r.output.status.code() != Some(code) || r.outcome() != outcome {
        return Err(format!(
            "ready={} but exit {:?} and outcome {:?}: {}",
            report.ready,
            r.output.status.code(),
            r.outcome(),
            r.reason()
        ));
    }
    Ok(report)
}

/// (key, value, message) of each reason, in order: what the two judgements must agree on.
fn named(reasons: &[Reason]) -> Vec<(Option<String>, Option<Value>, String)> {
    let mut v: Vec<_> = reasons
        .iter()
        .map(|r| (r.key.clone(), r.value.clone(), r.message.clone()))
        .collect();
    v.sort_by_key(|x| format!("{x:?}"));
    v
}

/// A verdict with the API server's causes in sorted order: the server lists them in the order
/// of a Go map walk, which differs from one request to the next.
fn canonical(verdict: &str) -> String {
    let Some((head, causes)) = verdict.split_once(" is invalid: [") else {
        return verdict.to_string();
    };
    let Some(causes) = causes.strip_suffix(']') else {
        return verdict.to_string();
    };
    let mut list: Vec<&str> = Vec::new();
    let mut start = 0;
    for (i, _) in causes.match_indices(", ") {
        let next = &causes[i + 2..];
        if next.starts_with("spec.") || next.starts_with("<nil>") {
            list.push(&causes[start..i]);
            start = i + 2;
        }
    }
    list.push(&causes[start..]);
    list.sort_unstable();
    format!("{head} is invalid: [{}]", list.join(", "))
}

/// What one case showed; `problems` is empty when offline, online and migrate agree.
struct Finding {
    name: &'static str,
    kind: &'static str,
    problems: Vec<String>,
}

async fn judge_case(online: &Rig, offline: &Rig, case: &Case) -> Finding {
    tokio::join!(online.set(&case.setup), offline.set(&case.setup));
    let (on, off, migrate) = tokio::join!(
        run_async(&online.cluster.kubeconfig, &["check", "-o", "json"]),
        run_async(&offline.cluster.kubeconfig, &["check", "-o", "json"]),
        run_async(&online.cluster.kubeconfig, &["--dry-run", "migrate"]),
    );
    tokio::join!(online.reset(), offline.reset());

    let mut problems = Vec::new();
    let (on, off) = match (report_of(&on), report_of(&off)) {
        (Ok(on), Ok(off)) => (on, off),
        (a, b) => {
            for e in [a.err(), b.err()].into_iter().flatten() {
                problems.push(e);
            }
            return Finding {
                name: case.name,
                kind: "broken",
                problems,
            };
        }
    };
    let validated = |r: &CheckReport, method: Method, crd: &str| {
        r.validation
            .as_ref()
            .is_none_or(|v| v.method == method && v.crd == crd)
    };
    if !validated(&on, Method::ServerDryRun, "cluster")
        || !validated(&off, Method::Offline, "built-in")
    {
        problems.push(format!(
            "judged by {:?} (online) and {:?} (offline)",
            on.validation, off.validation
        ));
    }
    if on.ready != migrate.success() || off.ready != on.ready {
        problems.push(format!(
            "verdicts differ: server dry run of migrate {} ({}), check online ready={}, offline ready={} ({})",
            migrate.success(),
            migrate.reason(),
            on.ready,
            off.ready,
            off.verdict
        ));
    }
    // Online, check says what migrate says, word for word.
    let migrate_says = migrate.reason();
    let check_says = if on.ready {
        on.would_write
            .as_ref()
            .map(|w| format!("would migrate: {}", w.summary))
            .unwrap_or_default()
    } else {
        on.verdict.clone()
    };
    if canonical(&check_says) != canonical(&migrate_says) {
        problems.push(format!(
            "online check says {check_says:?}, migrate says {migrate_says:?}"
        ));
    }
    // Offline, it says the same as online: verdict, and each reason's field, value and message.
    if canonical(&off.verdict) != canonical(&on.verdict) {
        problems.push(format!(
            "verdict offline {:?} != online {:?}",
            off.verdict, on.verdict
        ));
    }
    if named(&off.reasons) != named(&on.reasons) {
        problems.push(format!(
            "reasons offline {:?} != online {:?}",
            named(&off.reasons),
            named(&on.reasons)
        ));
    }
    if off.would_write != on.would_write {
        problems.push("what migrate would write differs offline and online".into());
    }
    for needle in &case.expect {
        if !on.verdict.contains(needle.as_str()) || !off.verdict.contains(needle.as_str()) {
            problems.push(format!("the verdict does not name {needle:?}"));
        }
    }
    let kind = match (on.ready, on.reasons.first()) {
        (true, _) => "ready",
        (false, Some(r)) if r.object.starts_with("ConfigMap") => "not ready: legacy input",
        (false, _) if on.verdict.contains("would drop or change") => "not ready: fields lost",
        (false, _) => "not ready: rejected by the schema",
    };
    Finding {
        name: case.name,
        kind,
        problems,
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn offline_check_names_what_the_server_names_for_every_configuration() {
    let started = Instant::now();
    // The module (CRD and default CR) is on one cluster only: there check asks the server; on
    // the other it judges offline with the CRD it was built with.
    let (online, offline) = tokio::join!(Rig::new(&[LEGACY, MODULE]), Rig::new(&[LEGACY]));
    let ready_at = started.elapsed();
    let cases = agreement_cases();
    let mut findings = Vec::new();
    for case in &cases {
        findings.push(judge_case(&online, &offline, case).await);
    }
    let mut kinds: BTreeMap<&str, usize> = BTreeMap::new();
    let mut failures = Vec::new();
    for f in &findings {
        *kinds.entry(f.kind).or_default() += 1;
        if !f.problems.is_empty() {
            failures.push(format!("{}:\n    {}", f.name, f.problems.join("\n    ")));
        }
    }
    let note = generated_note();
    eprintln!(
        "check agreement: {} cases ({kinds:?}), {} disagree; clusters ready in {:.1}s, cases took {:.1}s ({:.0} ms a case){note}",
        findings.len(),
        failures.len(),
        ready_at.as_secs_f64(),
        (started.elapsed() - ready_at).as_secs_f64(),
        (started.elapsed() - ready_at).as_secs_f64() * 1000.0 / findings.len() as f64
    );
    for kind in [
        "ready",
        "not ready: legacy input",
        "not ready: fields lost",
        "not ready: rejected by the schema",
    ] {
        assert!(
            kinds.contains_key(kind),
            "no case was {kind:?}: {kinds:?}{note}"
        );
    }
    assert!(failures.is_empty(), "\n{}{note}", failures.join("\n"));
}

// ---------------------------------------------------------------------------------------------
// One cluster, the tool as the ServiceAccount of deploy/rbac.yaml.

async fn set_document(client: &Client, text: &str) {
    cm_api(client)
        .patch(
            CONFIG,
            &PatchParams::default(),
            &Patch::Merge(json!({"data": {KEY: text}})),
        )
        .await
        .expect("patch ConfigMap");
}

/// Runs `check` with `args` as the ServiceAccount of `kubeconfig`, which it may not be refused:
/// it writes nothing at all.
async fn check_unchanged(c: &TestCluster, kubeconfig: &Path, args: &[&str]) -> RunResult {
    let mut all = vec!["check"];
    all.extend_from_slice(args);
    let r = assert_writes_nothing_as(c, kubeconfig, &all).await;
    assert!(
        !r.stderr.contains("forbidden"),
        "check {args:?} was refused:\n{}",
        r.stderr
    );
    r
}

fn json_report(r: &RunResult) -> Value {
    serde_json::from_str(&r.stdout)
        .unwrap_or_else(|e| panic!("no JSON report ({e}):\n{}\n{}", r.stdout, r.stderr))
}

/// The module's CRD with one more field, `colour`, under `servers.proxy.http`.
fn crd_with_colour(dir: &Path) -> PathBuf {
    let text = std::fs::read_to_string(fixture_dir(MODULE).join("connectivityproxy-crd.yaml"))
        .expect("CRD");
    let mut crd: Value = from_yaml(&text);
    crd["spec"]["versions"][0]["schema"]["openAPIV3Schema"]["properties"]["spec"]["properties"]["config"]
        ["properties"]["servers"]["properties"]["proxy"]["properties"]["http"]["properties"]["colour"] =
        json!({"type": "string"});
    let path = dir.join("crd-with-colour.yaml");
    std::fs::write(&path, to_yaml(&crd)).expect("write CRD");
    path
}

#[tokio::test]
async fn check_changes_nothing_and_answers_as_the_service_account() {
    let c = TestCluster::legacy_and_module().await;
    let sa = as_migrator_service_account(&c).await;
    let built_in_crd = fixture_dir(MODULE).join("connectivityproxy-crd.yaml");
    let built_in_crd = built_in_crd.to_str().expect("path");
    ready_saying_what_migrate_would_write(&c, &sa).await;
    a_bad_port_is_not_ready_as_migrate_says(&c, &sa).await;
    a_field_the_crd_does_not_know_is_named_unless_accepted(&c, &sa, built_in_crd).await;
    marked_migrated_is_ready_with_nothing_to_do(&c, &sa).await;
    without_the_cr_it_judges_the_default_cr_offline(&c, &sa).await;
    without_the_module_it_judges_with_the_built_in_crd(&c, &sa).await;
    without_the_legacy_installation_there_is_nothing_to_migrate(&c, &sa).await;
}

/// Ready: the server's dry run of migrate's write; what migrate would write.
async fn ready_saying_what_migrate_would_write(c: &TestCluster, sa: &Path) {
    let r = check_unchanged(c, sa, &["-o", "json"]).await;
    r.assert_ok();
    let report = json_report(&r);
    assert_eq!(report["ready"], true, "{report}");
    assert_eq!(
        report["legacy_installation"],
        json!({"chart": "connectivity-proxy-2.9.3", "expected_version": true})
    );
    assert_eq!(
        report["validation"],
        json!({"method": "server-dry-run", "crd": "cluster"})
    );
    assert_eq!(report["reasons"], json!([]));
    assert!(
        report["verdict"].as_str().is_some_and(|v| v
            .starts_with("migrate would write ConnectivityProxy kyma-system/connectivity-proxy: ")),
        "{report}"
    );
    let would = &report["would_write"];
    assert_eq!(
        would["spec_config"]["servers"]["proxy"]["http"]["port"],
        20003
    );
    assert_eq!(
        would["spec_config"]["servers"]["businessDataTunnel"]["externalHost"],
        "test.me.plz"
    );
    assert_eq!(would["secret_name"], Value::Null);
    let last = r.last_line();
    assert_eq!(
        (&last["step"], &last["outcome"]),
        (&json!("check"), &json!("done"))
    );
    assert!(
        r.reason().starts_with("ready: migrate would write"),
        "{}",
        r.reason()
    );

    let r = check_unchanged(c, sa, &[]).await;
    r.assert_ok();
    for line in [
        "legacy installation   present (connectivity-proxy-2.9.3)",
        "verdict               ready",
        "spec.config would change as follows:",
        "  changed config.servers.businessDataTunnel.externalHost: \"auto-provision\" -> \"test.me.plz\"",
    ] {
        assert!(r.stdout.contains(line), "{line:?} in:\n{}", r.stdout);
    }
}

/// A bad port: not ready, naming the object, the key and the value, exactly as migrate does.
async fn a_bad_port_is_not_ready_as_migrate_says(c: &TestCluster, sa: &Path) {
    set_port(&c.client, "onpremise_proxy_http_port", "80a").await;
    let migrate_says = c.run(&["--dry-run", "migrate"]);
    let r = check_unchanged(c, sa, &["-o", "json"]).await;
    assert_eq!(r.output.status.code(), Some(1), "{}", r.stderr);
    let report = json_report(&r);
    assert_eq!(report["ready"], false);
    assert_eq!(
        report["reasons"],
        json!([{
            "object": "ConfigMap kyma-system/connectivity-proxy-info",
            "key": "onpremise_proxy_http_port",
            "value": "80a",
            "message": "ConfigMap kyma-system/connectivity-proxy-info key \"onpremise_proxy_http_port\": value \"80a\" is not a port (an integer from 1 to 65535)",
            "origin": null
        }])
    );
    assert_eq!(
        report["verdict"].as_str(),
        Some(migrate_says.reason().as_str())
    );
    r.assert_failed_with(&[
        "not ready: ConfigMap kyma-system/connectivity-proxy-info key \"onpremise_proxy_http_port\": value \"80a\"",
    ]);
    let r = check_unchanged(c, sa, &[]).await;
    assert!(
        r.stdout.contains(
            "ConfigMap kyma-system/connectivity-proxy-info onpremise_proxy_http_port = \"80a\""
        ),
        "{}",
        r.stdout
    );
    set_port(&c.client, "onpremise_proxy_http_port", "20003").await;
}

/// A field the CRD does not know: the server would drop it. With a CRD that knows it
/// (--crd), the offline check is ready; with the built-in CRD, it names the same field.
async fn a_field_the_crd_does_not_know_is_named_unless_accepted(
    c: &TestCluster,
    sa: &Path,
    built_in_crd: &str,
) {
    set_document(
        &c.client,
        "tenantMode: dedicated\nservers:\n  proxy:\n    http:\n      colour: blue\n",
    )
    .await;
    let online = json_report(&check_unchanged(c, sa, &["-o", "json"]).await);
    assert_eq!(online["ready"], false);
    assert_eq!(
        online["reasons"][0]["key"], "config.servers.proxy.http.colour",
        "{online}"
    );
    assert_eq!(online["reasons"][0]["message"], "dropped");
    assert_eq!(
        online["reasons"][0]["origin"],
        json!({"object": "ConfigMap kyma-system/connectivity-proxy", "key": "connectivity-proxy-config.yml", "field": "servers.proxy.http.colour"})
    );
    let offline =
        json_report(&check_unchanged(c, sa, &["-o", "json", "--crd", built_in_crd]).await);
    assert_eq!(
        offline["validation"],
        json!({"method": "offline", "crd": built_in_crd})
    );
    assert_eq!(offline["reasons"], online["reasons"]);
    assert_eq!(offline["verdict"], online["verdict"]);
    let dir = tempfile::tempdir().expect("tempdir");
    let with_colour = crd_with_colour(dir.path());
    let r = check_unchanged(
        c,
        sa,
        &["-o", "json", "--crd", with_colour.to_str().expect("path")],
    )
    .await;
    r.assert_ok();
    assert_eq!(
        json_report(&r)["would_write"]["spec_config"]["servers"]["proxy"]["http"]["colour"],
        "blue"
    );
    // Accepting the loss, as migrate's --allow-field-loss does.
    let r = check_unchanged(
        c,
        sa,
        &[
            "-o",
            "json",
            "--allow-field-loss",
            "config.servers.proxy.http.colour",
        ],
    )
    .await;
    r.assert_ok();
    assert_eq!(
        json_report(&r)["accepted_losses"][0]["key"],
        "config.servers.proxy.http.colour"
    );
    let r = check_unchanged(c, sa, &["--crd", "/nonexistent/crd.yaml"]).await;
    r.assert_failed_with(&["CustomResourceDefinition from /nonexistent/crd.yaml cannot be used"]);
    let original = fixture_cases()[0].1.clone();
    set_document(&c.client, &original).await;
}

/// Marked migrated: nothing to do.
async fn marked_migrated_is_ready_with_nothing_to_do(c: &TestCluster, sa: &Path) {
    cr::annotate(c, &[(markers::MIGRATED, "true")]).await;
    let r = check_unchanged(c, sa, &[]).await;
    r.assert_ok();
    assert!(
        r.reason()
            .starts_with("ready: nothing to migrate: already migrated"),
        "{}",
        r.reason()
    );
}

/// The CR is not there yet: judged offline with the cluster's CRD, from the default CR.
async fn without_the_cr_it_judges_the_default_cr_offline(c: &TestCluster, sa: &Path) {
    cr::api(&c.client)
        .delete(contract::cr::NAME, &DeleteParams::default())
        .await
        .expect("delete CR");
    let report = json_report(&check_unchanged(c, sa, &["-o", "json"]).await);
    assert_eq!(report["ready"], true, "{report}");
    assert_eq!(
        report["validation"],
        json!({"method": "offline", "crd": "cluster"})
    );
    assert!(
        report["notes"][0]
            .as_str()
            .is_some_and(|n| n.contains("does not exist yet")),
        "{report}"
    );
}

/// The module is not installed: the CRD the tool was built with.
async fn without_the_module_it_judges_with_the_built_in_crd(c: &TestCluster, sa: &Path) {
    operator::uninstall(c).await;
    let report = json_report(&check_unchanged(c, sa, &["-o", "json"]).await);
    assert_eq!(report["ready"], true, "{report}");
    assert_eq!(
        report["validation"],
        json!({"method": "offline", "crd": "built-in"})
    );
}

/// No legacy installation: nothing to migrate, ready.
async fn without_the_legacy_installation_there_is_nothing_to_migrate(c: &TestCluster, sa: &Path) {
    let sts: Api<StatefulSet> = Api::namespaced(c.client.clone(), contract::KYMA_SYSTEM);
    sts.delete(legacy_marker::STATEFULSET, &DeleteParams::default())
        .await
        .expect("delete StatefulSet");
    let r = check_unchanged(c, sa, &["-o", "json"]).await;
    r.assert_ok();
    let report = json_report(&r);
    assert_eq!(report["legacy_installation"], Value::Null);
    assert_eq!(report["validation"], Value::Null);
    assert!(
        report["verdict"]
            .as_str()
            .is_some_and(|v| v.starts_with("nothing to migrate: no legacy installation")),
        "{report}"
    );
}

// ---------------------------------------------------------------------------------------------
// The module's operator

/// Metadata that makes an object the module operator's own (docs/operator.md): its label and both
/// annotations pointing at the CR.
fn operators_own() -> Value {
    json!({"metadata": {
        "labels": {"app.kubernetes.io/managed-by": "sap.connectivity.proxy.operator"},
        "annotations": {
            "io.javaoperatorsdk/primary-name": "connectivity-proxy",
            "io.javaoperatorsdk/primary-namespace": "kyma-system",
        },
    }})
}

/// An object at one of the operator's names (docs/operator.md's table) that clean leaves, without
/// the operator's label and both annotations, stops the operator with 409 Conflict: check is
/// not ready and names each, the first in the operator's order in the verdict. The legacy
/// installation's own objects at those names are clean's to remove and block nothing; an
/// object with the label and both annotations is the operator's to adopt.
#[tokio::test]
async fn check_is_not_ready_while_an_object_at_an_operator_name_would_stop_the_operator() {
    let c = TestCluster::legacy_and_module().await;
    let r = check_unchanged(&c, &c.kubeconfig, &["-o", "json"]).await;
    r.assert_ok();
    assert_eq!(json_report(&r)["reasons"], json!([]));

    // Two of the operator's names: a Role (reconciled late) and a ConfigMap (early).
    c.apply_yaml(
        "apiVersion: rbac.authorization.k8s.io/v1\nkind: Role\nmetadata:\n  name: connectivity-proxy-startup\n  namespace: kyma-system\nrules: []\n",
    )
    .await;
    c.apply_yaml(
        "apiVersion: v1\nkind: ConfigMap\nmetadata:\n  name: connectivity-proxy-region-configurations\n  namespace: kyma-system\ndata:\n  regions: eu10\n",
    )
    .await;
    let r = check_unchanged(&c, &c.kubeconfig, &["-o", "json"]).await;
    assert_eq!(r.output.status.code(), Some(1), "{}", r.stderr);
    let report = json_report(&r);
    assert_eq!(report["ready"], false, "{report:#}");
    let verdict = report["verdict"].as_str().expect("verdict");
    assert!(
        verdict.starts_with(
            "the module's operator would stop at ConfigMap \
             kyma-system/connectivity-proxy-region-configurations (1 more object likewise): "
        ),
        "{verdict}"
    );
    let reasons = report["reasons"].as_array().expect("reasons");
    let objects: Vec<&Value> = reasons.iter().map(|r| &r["object"]).collect();
    assert_eq!(
        objects,
        [
            "ConfigMap kyma-system/connectivity-proxy-region-configurations",
            "Role kyma-system/connectivity-proxy-startup"
        ]
    );
    for reason in reasons {
        let message = reason["message"].as_str().expect("message");
        for needle in [
            "app.kubernetes.io/managed-by=sap.connectivity.proxy.operator",
            "io.javaoperatorsdk/primary-name=connectivity-proxy",
            "io.javaoperatorsdk/primary-namespace=kyma-system",
            "409 Conflict",
        ] {
            assert!(message.contains(needle), "{message} lacks {needle}");
        }
        assert_eq!(
            (&reason["key"], &reason["value"]),
            (&Value::Null, &Value::Null)
        );
    }
    // What migrate would write is still said.
    assert!(report["would_write"].is_object(), "{report:#}");
    r.assert_failed_with(&[
        "not ready: the module's operator would stop at ConfigMap kyma-system/connectivity-proxy-region-configurations",
    ]);
    let text = check_unchanged(&c, &c.kubeconfig, &[]).await;
    assert!(
        text.stdout
            .contains("  - Role kyma-system/connectivity-proxy-startup: exists without"),
        "{}",
        text.stdout
    );

    // The operator's own: adopted, not in the way.
    for (kind, name) in [
        ("Role", "connectivity-proxy-startup"),
        ("ConfigMap", "connectivity-proxy-region-configurations"),
    ] {
        let api_version = if kind == "Role" {
            "rbac.authorization.k8s.io/v1"
        } else {
            "v1"
        };
        let mut object = operators_own();
        object["apiVersion"] = json!(api_version);
        object["kind"] = json!(kind);
        object["metadata"]["name"] = json!(name);
        object["metadata"]["namespace"] = json!("kyma-system");
        c.apply(&serde_json::from_value(object).expect("object"))
            .await;
    }
    let r = check_unchanged(&c, &c.kubeconfig, &["-o", "json"]).await;
    r.assert_ok();
    assert_eq!(json_report(&r)["reasons"], json!([]));
}

/// The ServiceMapping schema the module's operator applies over the CRD it adopted, as
/// docs/operator.md gives it (and the operator's source, `ServiceMappingCustomResourceDefinition`):
/// `type` one of RFC, JDBC, TCP; `internalAddress` `host:port`; `type`, `serviceId` and
/// `internalAddress` required, and `subaccountId` too in the shared tenant mode.
fn modules_mapping_schema(shared: bool) -> Value {
    let mut required = vec!["type", "serviceId", "internalAddress"];
    if shared {
        required.push("subaccountId");
    }
    json!({
        "type": "object",
        "required": ["spec"],
        "properties": {
            "spec": {
                "type": "object",
                "required": required,
                "properties": {
                    "type": {"type": "string", "enum": ["RFC", "JDBC", "TCP"]},
                    "subaccountId": {"type": "string"},
                    "serviceId": {"type": "string"},
                    "tenantId": {"type": "string"},
                    "internalAddress": {
                        "type": "string",
                        "pattern": "[^\\:]+:([1-9][0-9]{0,3}|[1-5][0-9]{4}|6[0-4][0-9]{3}|65[0-4][0-9]{2}|655[0-2][0-9]|6553[0-5])$",
                    },
                    "locationIds": {"type": "array", "items": {"type": "string"}},
                },
            },
            "status": {
                "type": "object",
                "required": ["endpoint"],
                "properties": {"endpoint": {"type": "string"}},
            },
        },
    })
}

/// Puts the module's ServiceMapping schema on the cluster's CRD, as the operator does once it
/// has adopted the CRD.
async fn apply_modules_mapping_schema(c: &TestCluster, shared: bool) {
    let crds: Api<CustomResourceDefinition> = Api::all(c.client.clone());
    crds.patch(
        "servicemappings.connectivityproxy.sap.com",
        &PatchParams::default(),
        &Patch::Json::<()>(
            serde_json::from_value(json!([{
                "op": "replace",
                "path": "/spec/versions/0/schema/openAPIV3Schema",
                "value": modules_mapping_schema(shared),
            }]))
            .expect("JSON patch"),
        ),
    )
    .await
    .expect("the module's schema on the CRD");
}

/// (object, field, message) of each field the API server refuses when each ServiceMapping is
/// written anew under the module's schema: a dry-run create of a copy of it (a create is judged
/// whole; an update may be spared an unchanged invalid field by validation ratcheting).
async fn refused_by_the_server(
    c: &TestCluster,
    mappings: &[&str],
) -> Vec<(String, String, String)> {
    let api = support::service_mappings::api(&c.client);
    let dry_run = kube::api::PostParams {
        dry_run: true,
        ..Default::default()
    };
    let mut out = Vec::new();
    for name in mappings {
        let original = api.get(name).await.expect("the ServiceMapping");
        let mut copy = json!({
            "apiVersion": "connectivityproxy.sap.com/v1",
            "kind": "ServiceMapping",
            "metadata": {"name": format!("{name}-written-anew")},
        });
        if let Some(spec) = original.data.get("spec") {
            copy["spec"] = spec.clone();
        }
        let copy: kube::api::DynamicObject = serde_json::from_value(copy).expect("copy");
        match api.create(&dry_run, &copy).await {
            Ok(_) => {}
            Err(kube::Error::Api(s)) if s.code == 422 => {
                for cause in s.details.iter().flat_map(|d| &d.causes) {
                    out.push((
                        format!("ServiceMapping {name}"),
                        cause.field.clone(),
                        cause.message.clone(),
                    ));
                }
            }
            Err(e) => panic!("dry run of {name}: {e}"),
        }
    }
    out.sort();
    out
}

/// (object, key, message) of each warning of a check report.
fn warned(report: &Value) -> Vec<(String, String, String)> {
    let mut out: Vec<(String, String, String)> = report["warnings"]
        .as_array()
        .expect("warnings")
        .iter()
        .map(|w| {
            (
                w["object"].as_str().expect("object").to_string(),
                w["key"].as_str().expect("key").to_string(),
                w["message"].as_str().expect("message").to_string(),
            )
        })
        .collect();
    out.sort();
    out
}

/// ServiceMappings that the module's schema would refuse do not stop the migration: check
/// stays ready and names, as warnings, each refused field of each with its value, in the tenant
/// mode the CR will have. The API server, given the module's schema, refuses exactly these
/// fields of exactly these mappings, with the same messages.
#[tokio::test]
async fn check_warns_of_each_service_mapping_the_modules_schema_refuses_as_the_server_does() {
    let c = TestCluster::legacy_and_module().await;
    let specs = [
        (
            "sm-http",
            json!({"type": "HTTP", "serviceId": "s", "subaccountId": "a",
                   "internalAddress": "erp.onprem.example:3300"}),
        ),
        (
            "sm-no-port",
            json!({"type": "RFC", "serviceId": "s", "subaccountId": "a",
                   "internalAddress": "erp.onprem.example"}),
        ),
        (
            "sm-port-0",
            json!({"type": "JDBC", "serviceId": "s", "subaccountId": "a",
                   "internalAddress": "db.onprem.example:0"}),
        ),
        (
            "sm-no-subaccount",
            json!({"type": "TCP", "serviceId": "s", "internalAddress": "hana.onprem.example:30015"}),
        ),
        ("sm-no-spec", Value::Null),
    ];
    for (name, spec) in &specs {
        let mut mapping = json!({
            "apiVersion": "connectivityproxy.sap.com/v1",
            "kind": "ServiceMapping",
            "metadata": {"name": name},
        });
        if !spec.is_null() {
            mapping["spec"] = spec.clone();
        }
        c.apply(&serde_json::from_value(mapping).expect("mapping"))
            .await;
    }
    let mut all: Vec<&str> = vec!["sm-erp", "sm-crm", "sm-hana"];
    all.extend(specs.iter().map(|(n, _)| *n));

    // Dedicated (the legacy fixture's tenant mode).
    let r = check_unchanged(&c, &c.kubeconfig, &["-o", "json"]).await;
    r.assert_ok();
    let report = json_report(&r);
    let objects_and_fields = |report: &Value| -> Vec<(String, String, Value)> {
        let mut v: Vec<(String, String, Value)> = report["warnings"]
            .as_array()
            .expect("warnings")
            .iter()
            .map(|w| {
                (
                    w["object"].as_str().expect("object").to_string(),
                    w["key"].as_str().expect("key").to_string(),
                    w["value"].clone(),
                )
            })
            .collect();
        v.sort_by_key(|x| format!("{x:?}"));
        v
    };
    let dedicated = vec![
        (
            "ServiceMapping sm-http".to_string(),
            "spec.type".to_string(),
            json!("HTTP"),
        ),
        (
            "ServiceMapping sm-no-port".into(),
            "spec.internalAddress".into(),
            json!("erp.onprem.example"),
        ),
        (
            "ServiceMapping sm-no-spec".into(),
            "spec".into(),
            Value::Null,
        ),
        (
            "ServiceMapping sm-port-0".into(),
            "spec.internalAddress".into(),
            json!("db.onprem.example:0"),
        ),
    ];
    assert_eq!(objects_and_fields(&report), dedicated, "{report:#}");
    assert!(
        report["notes"]
            .as_array()
            .expect("notes")
            .iter()
            .any(|n| n.as_str().is_some_and(|n| n.starts_with(
                "4 of 8 ServiceMappings would be refused by the module's ServiceMapping schema \
                 (tenant mode dedicated)"
            ))),
        "{report:#}"
    );
    let text = check_unchanged(&c, &c.kubeconfig, &[]).await;
    assert!(
        text.stdout
            .contains("  - ServiceMapping sm-http spec.type = \"HTTP\": Unsupported value: "),
        "{}",
        text.stdout
    );
    apply_modules_mapping_schema(&c, false).await;
    assert_eq!(refused_by_the_server(&c, &all).await, warned(&report));

    // Shared: the legacy configuration says so, and migrate carries it into the CR.
    c.apply_dir(&fixture_dir(LEGACY_SHARED)).await;
    let r = check_unchanged(&c, &c.kubeconfig, &["-o", "json"]).await;
    r.assert_ok();
    let report = json_report(&r);
    let mut shared = dedicated.clone();
    shared.push((
        "ServiceMapping sm-no-subaccount".into(),
        "spec.subaccountId".into(),
        Value::Null,
    ));
    shared.sort_by_key(|x| format!("{x:?}"));
    assert_eq!(objects_and_fields(&report), shared, "{report:#}");
    apply_modules_mapping_schema(&c, true).await;
    assert_eq!(refused_by_the_server(&c, &all).await, warned(&report));
}
