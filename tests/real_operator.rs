//! The module's real operator, built from its public source and run as the module runs it (its
//! own ServiceAccount and ClusterRole, a token kubeconfig), on the real controllers with the node
//! agent: what the migration hands it is what it accepts. The plain road and the way back, the
//! hand-over, what the proxy will read, the module enabled too early, and `auto-provision`
//! without the shoot's domain.
//!
//! One operator runs on the machine at a time (its liveness port): these cases wait for each
//! other, and the rest of the suite goes on beside them.

mod support;

use std::time::Duration;

use k8s_openapi::api::core::v1::ConfigMap;
use kube::Client;
use kube::api::Api;
use serde_json::{Value, json};

use support::contract::{self, KYMA_SYSTEM, USER_CONFIG, USER_CONFIG_KEY};
use support::node_agent::NodeAgent;
use support::operator::{self as emulated, STATE_ERROR, STATE_READY};
use support::operator_diff::{differences, made};
use support::outage::{self, Operator};
use support::real_operator::{self, RealOperator, SHOOT_INFO, SHOOT_INFO_NAMESPACE, States};
use support::snapshot::{discover, snap};
use support::values::{dotted, leaves};
use support::way_back::{as_before_the_migration, without_the_controllers_work};
use support::workloads::TIMING;
use support::*;

/// Long enough for the JVM, its informers and the controllers on a loaded 2-core machine.
const LIMIT: Duration = Duration::from_secs(180);

/// The module never reported `Error`; else fails with the states and the operator's log.
#[track_caller]
fn never_error(states: &States, op: &RealOperator) {
    assert!(
        !states.seen().iter().any(|s| s == STATE_ERROR),
        "never Error: {:?}\n{}",
        states.seen(),
        tail(&op.log(), 40)
    );
}

/// A cluster with the controllers and the node agent, the legacy installation (`fixtures`) and
/// the module's CRD and default CR, as a Gardener shoot has it (`kube-system/shoot-info`).
async fn legacy_shoot(fixtures: &[&str]) -> (TestCluster, NodeAgent) {
    let c = TestCluster::with_controllers().await;
    let agent = NodeAgent::start(&c.client, "node-a", TIMING).await;
    for f in fixtures {
        c.apply_dir(&fixture_dir(f)).await;
    }
    real_operator::give_shoot_info(&c).await;
    (c, agent)
}

/// `status -o json`, parsed.
fn status(c: &TestCluster) -> Value {
    let r = c.run(&["status", "-o", "json"]);
    serde_json::from_str(&r.stdout).unwrap_or_else(|e| panic!("status JSON ({e}):\n{}", r.stdout))
}

async fn pristine(c: &TestCluster) -> support::snapshot::Snap {
    without_the_controllers_work(&snap(&c.client, &discover(&c.client).await).await)
}

/// The way back as the runbook has it: `rollback --prepare`, the module disabled the real way
/// (its CR deleted, the operator's cleanup, then the operator and the CR's CRD gone), then
/// `rollback`: everything as before the migration.
async fn the_way_back_is_exact(
    c: &TestCluster,
    op: RealOperator,
    before: &support::snapshot::Snap,
) {
    c.run(&["rollback", "--prepare"]).assert_ok();
    real_operator::uninstall(c, op).await;
    c.run(&["rollback"]).assert_ok();
    as_before_the_migration(before, &pristine(c).await, &[]);
}

/// contract.md: the init containers migrate, back up and clean in this order, then the operator
/// starts; it reaches `Ready` and `status` says `done`. The way back is exact: every legacy
/// object, every ServiceMapping and their CRD as before the migration.
#[tokio::test]
async fn after_the_init_containers_the_real_operator_is_ready_and_the_way_back_is_exact() {
    let (c, _agent) = legacy_shoot(Tenant::Dedicated.fixtures()).await;
    let before = pristine(&c).await;
    let states = States::watch(&c.client);
    for step in ["migrate", "backup", "clean"] {
        c.run(&[step]).assert_ok();
    }
    let op = RealOperator::start(&c).await;
    states.wait_for(STATE_READY, LIMIT).await;
    never_error(&states, &op);
    let s = status(&c);
    assert_eq!(s["phase"], json!("done"), "{s:#}");

    the_way_back_is_exact(&c, op, &before).await;
}

/// contract.md, clean --hand-over: with two replicas the module reaches `Ready` without ever reporting
/// `Error`, the proxy and its ServiceMapping validation Service never lack a ready endpoint, and
/// the proxy's Service keeps its ClusterIP. finish then leaves no legacy Pod, status says
/// `done`, and the way back is exact.
#[tokio::test]
async fn a_hand_over_with_two_replicas_is_ready_without_error_or_outage_and_the_way_back_is_exact()
{
    let model = outage::Model {
        replicas: 2,
        operator_start: Duration::ZERO,
        pods: TIMING,
    };
    let mut m = outage::migrated_with(&["run", "--hand-over"], model, Operator::Real).await;
    let c = &m.c;
    let op = m.operator.as_ref().expect("the real operator");
    never_error(&m.states, op);
    assert_eq!(m.seen.outages, Vec::<Duration>::new(), "{:?}", m.seen);
    assert_eq!(m.smv.outages(), Vec::<Duration>::new(), "the smv Service");
    assert_eq!(m.seen.cluster_ips.len(), 1, "{:?}", m.seen);

    // finish waits for the roll: the StatefulSet controller replaces the adopted Pods one by
    // one, which takes longer than the default deadline on a loaded machine.
    let finishing = spawn_tool(&c.kubeconfig, &["--deadline", "240s"], &["finish"]);
    let finished = support::finish(finishing, RUN_LIMIT * 3).await;
    finished.assert_ok();
    let s = status(c);
    assert_eq!(
        s["phase"],
        json!("done"),
        "{s:#}\nstates: {:?}\nfinish: {}\noperator: {}",
        m.states.seen(),
        finished.stderr,
        tail(&op.log(), 60)
    );
    let left: Vec<String> = outage::all_pods(&c.client)
        .await
        .into_iter()
        .filter(|p| {
            m.legacy_pods
                .contains(p.metadata.uid.as_ref().expect("uid"))
        })
        .filter_map(|p| p.metadata.name)
        .collect();
    assert_eq!(left, Vec::<String>::new(), "legacy Pods after finish");

    let op = m.operator.take().expect("the real operator");
    the_way_back_is_exact(&m.c, op, &m.pristine).await;
}

/// contract.md, clean --hand-over, one replica: the proxy is without a ready endpoint no longer than
/// its one Pod's replacement (a grace period and a start: the node agent's) and no outage of
/// the ServiceMapping validation Service; judged by which Pods served, not by the clock: no
/// interval without an endpoint began before the legacy Pod was deleted.
#[tokio::test]
async fn a_hand_over_with_one_replica_is_without_an_endpoint_only_while_its_pod_is_replaced() {
    let model = outage::Model {
        replicas: 1,
        operator_start: Duration::ZERO,
        pods: TIMING,
    };
    let m = outage::migrated_with(&["run", "--hand-over"], model, Operator::Real).await;
    never_error(&m.states, m.operator.as_ref().expect("the real operator"));
    assert!(m.seen.outages.len() <= 1, "{:?}", m.seen);
    assert_eq!(m.seen.cluster_ips.len(), 1, "{:?}", m.seen);
}

/// What the proxy will read: once the operator has reconciled the migrated CR, its rendered
/// `connectivity-proxy-config.yml` (ConfigMap kyma-system/connectivity-proxy) holds every key of
/// the legacy configuration with its legacy value, and the three ports of the legacy info
/// ConfigMap: "without losing any user configuration", end to end.
#[tokio::test]
async fn the_proxy_reads_every_legacy_key_and_port_from_what_the_operator_renders() {
    for case in config_cases() {
        let c = TestCluster::with(case.fixtures).await;
        real_operator::give_shoot_info(&c).await;
        if let Some(text) = case.document {
            support::config_maps::set_legacy_config(&c, text).await;
        }
        for (key, value) in case.ports {
            support::config_maps::set_port(&c.client, key, value).await;
        }
        let legacy = legacy_document(&c.client).await;
        let ports = legacy_ports(&c.client).await;
        c.run(&["run"]).assert_ok();
        let op = RealOperator::start(&c).await;
        let rendered = rendered_config(&c.client, &op).await;
        for (path, value) in leaves(&legacy) {
            assert_eq!(
                support::values::at(&rendered, &path),
                Some(&value),
                "{}: {} in the legacy configuration, in what the proxy reads:\n{}",
                case.name,
                dotted(&path),
                serde_json::to_string_pretty(&rendered).unwrap_or_default()
            );
        }
        for (path, port) in PORTS.iter().zip(ports) {
            assert_eq!(
                support::values::at(&rendered, path),
                Some(&json!(port)),
                "{}: {}",
                case.name,
                dotted(path)
            );
        }
    }
}

/// contract.md, migrate step 5: where each port of `connectivity-proxy-info` is written, in the order
/// `onpremise_proxy_http_port`, `onpremise_proxy_ldap_port`, `onpremise_socks5_proxy_port`.
const PORTS: [[&str; 4]; 3] = [
    ["servers", "proxy", "http", "port"],
    ["servers", "proxy", "rfcAndLdap", "port"],
    ["servers", "proxy", "socks5", "port"],
];
const PORT_KEYS: [&str; 3] = [
    "onpremise_proxy_http_port",
    "onpremise_proxy_ldap_port",
    "onpremise_socks5_proxy_port",
];

struct ConfigCase {
    name: &'static str,
    fixtures: &'static [&'static str],
    document: Option<&'static str>,
    ports: Vec<(&'static str, &'static str)>,
}

fn config_cases() -> Vec<ConfigCase> {
    vec![
        ConfigCase {
            name: "the dedicated tenant",
            fixtures: Tenant::Dedicated.fixtures(),
            document: None,
            ports: vec![],
        },
        ConfigCase {
            name: "the shared tenant",
            fixtures: Tenant::Shared.fixtures(),
            document: None,
            ports: vec![],
        },
        ConfigCase {
            name: "custom ports",
            fixtures: Tenant::Dedicated.fixtures(),
            document: None,
            ports: vec![
                (PORT_KEYS[0], "30003"),
                (PORT_KEYS[1], "30001"),
                (PORT_KEYS[2], "30004"),
            ],
        },
        ConfigCase {
            name: "every optional block",
            fixtures: Tenant::Dedicated.fixtures(),
            document: Some(EVERY_OPTIONAL_BLOCK),
            ports: vec![(PORT_KEYS[0], "20013")],
        },
    ]
}

/// Every field the module's CRD knows under `spec.config`, each away from its default.
const EVERY_OPTIONAL_BLOCK: &str = r#"
highAvailabilityMode: path
integration:
  auditlog:
    mode: service
    serviceCredentialsKey: auditlog_key
  connectivityService:
    serviceCredentialsKey: connectivity_key
multiRegionMode:
  enabled: true
  configMapName: region-configurations
servers:
  businessDataTunnel:
    externalHost: cc.example.com
    externalPort: 8443
  proxy:
    authorization:
      oauth:
        allowedClientId: sb-client-id!b123
    http:
      allowRemoteConnections: true
      enableProxyAuthorization: true
      enabled: true
    rfcAndLdap:
      allowRemoteConnections: true
      enableProxyAuthorization: true
      enabled: false
    socks5:
      allowRemoteConnections: false
      enableProxyAuthorization: true
      enabled: true
serviceChannels:
  enabled: true
subaccountId: 11111111-2222-3333-4444-555555555555
subaccountSubdomain: my-subdomain
tenantMode: dedicated
"#;

async fn legacy_document(client: &Client) -> Value {
    let text = support::config_maps::user_config_value(client, USER_CONFIG[0], USER_CONFIG_KEY)
        .await
        .expect("the legacy configuration");
    from_yaml(&text)
}

async fn legacy_ports(client: &Client) -> Vec<u16> {
    let cms: Api<ConfigMap> = Api::namespaced(client.clone(), KYMA_SYSTEM);
    let info = cms
        .get(USER_CONFIG[1])
        .await
        .expect("connectivity-proxy-info");
    let data = info.data.expect("data");
    PORT_KEYS
        .iter()
        .map(|k| data[*k].parse().expect("a port"))
        .collect()
}

/// The operator's `connectivity-proxy-config.yml`, once the ConfigMap is its own.
async fn rendered_config(client: &Client, op: &RealOperator) -> Value {
    let cms: Api<ConfigMap> = Api::namespaced(client.clone(), KYMA_SYSTEM);
    let started = std::time::Instant::now();
    loop {
        if let Some(cm) = cms.get_opt(USER_CONFIG[0]).await.expect("get ConfigMap")
            && contract::is_the_operators(&cm.metadata)
            && let Some(text) = cm.data.as_ref().and_then(|d| d.get(USER_CONFIG_KEY))
        {
            return from_yaml(text);
        }
        assert!(
            started.elapsed() < LIMIT,
            "the operator rendered no configuration:\n{}",
            tail(&op.log(), 40)
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

/// operator.md: with the legacy installation still there, the operator's first create at a
/// legacy name fails with 409 and the module stays in `Error`; `status` names that object (the
/// first unowned object at its names, in its order) instead of pointing at the operator's log.
#[tokio::test]
async fn with_the_legacy_installation_still_there_it_errors_and_status_names_where_it_stops() {
    let (c, _agent) = legacy_shoot(Tenant::Dedicated.fixtures()).await;
    let states = States::watch(&c.client);
    let _op = RealOperator::start(&c).await;
    states.wait_for(STATE_ERROR, LIMIT).await;
    let s = status(&c);
    let reason = s["phase_reason"].as_str().unwrap_or_default();
    assert!(
        reason.contains("ServiceAccount kyma-system/connectivity-proxy-restart-watcher"),
        "status names where the operator stops: {s:#}"
    );
    assert!(!reason.contains("log says why"), "{s:#}");
}

/// contract.md, clean step 2: with `externalHost: auto-provision` kept, the operator reads
/// `kube-system/shoot-info`; without it `check` is not ready and clean refuses before it
/// archives, both naming the ConfigMap. Given it, the module reaches `Ready`.
#[tokio::test]
async fn auto_provision_without_the_shoot_info_is_named_and_with_it_the_module_is_ready() {
    let c = TestCluster::with_controllers().await;
    let _agent = NodeAgent::start(&c.client, "node-a", TIMING).await;
    for f in Tenant::Dedicated.fixtures() {
        c.apply_dir(&fixture_dir(f)).await;
    }
    // A cluster that is not a Gardener shoot: the fixture's shoot-info taken away.
    Api::<ConfigMap>::namespaced(c.client.clone(), SHOOT_INFO_NAMESPACE)
        .delete(SHOOT_INFO, &Default::default())
        .await
        .expect("delete kube-system/shoot-info");
    support::config_maps::set_legacy_config(
        &c,
        "tenantMode: dedicated\nservers:\n  businessDataTunnel:\n    externalHost: auto-provision\n    externalPort: 443\n",
    )
    .await;
    let check = c.run(&["check", "-o", "json"]);
    assert!(!check.success(), "{}", check.stdout);
    assert!(
        check.stdout.contains("kube-system/shoot-info"),
        "{}",
        check.stdout
    );
    c.run(&["migrate"]).assert_ok();
    c.run(&["backup"]).assert_ok();
    let before = c.snapshot().await;
    c.run(&["clean"])
        .assert_failed_with(&["ConfigMap kube-system/shoot-info"]);
    support::unchanged::assert_unchanged(&before, &c.snapshot().await, "clean refused");

    real_operator::give_shoot_info(&c).await;
    c.run(&["clean"]).assert_ok();
    let states = States::watch(&c.client);
    let op = RealOperator::start(&c).await;
    states.wait_for(STATE_READY, LIMIT).await;
    // What the proxy reads: the tunnel's host from the shoot's domain.
    let rendered = rendered_config(&c.client, &op).await;
    assert_eq!(
        rendered["servers"]["businessDataTunnel"]["externalHost"],
        json!(format!("cp.{}", real_operator::SHOOT_DOMAIN)),
        "{rendered:#}"
    );
}

// ---------------------------------------------------------------------------------------------
// The emulation held against the real operator

/// A cluster that never had the legacy installation, with the module enabled: its namespaces,
/// the CRDs the operator needs to start (Istio's, Gardener's, the BTP operator's; not the
/// ServiceMapping CRD, which the operator makes), the module's CRD and default CR.
async fn never_legacy(c: &TestCluster) {
    for file in [
        "00-namespaces.yaml",
        "10-crds.yaml",
        "11-btp-operator-crds.yaml",
    ] {
        let text = std::fs::read_to_string(fixture_dir(LEGACY).join(file)).expect("fixture");
        for doc in yaml_documents(&text)
            .into_iter()
            .filter(|d| d["metadata"]["name"] != emulated::SERVICE_MAPPING_CRD)
        {
            c.apply(&serde_json::from_value(doc).expect("object")).await;
        }
    }
    c.apply_dir(&fixture_dir(MODULE)).await;
}

/// What a scenario does before the operator reconciles.
#[derive(Debug, Clone, Copy)]
enum Road {
    /// No legacy installation: the module enabled with its default CR.
    DefaultCr,
    /// The legacy installation, then `run`.
    Plain,
    /// The legacy installation, then `run --hand-over`.
    HandOver,
}

/// A scenario's cluster once its operator (real or emulated) reported `Ready`.
struct Reconciled {
    c: TestCluster,
    states: States,
    real: Option<RealOperator>,
    _agent: NodeAgent,
}

async fn reconciled(road: Road, which: Operator) -> Reconciled {
    let c = TestCluster::with_controllers().await;
    let agent = NodeAgent::start(&c.client, "node-a", TIMING).await;
    match road {
        Road::DefaultCr => never_legacy(&c).await,
        Road::Plain | Road::HandOver => {
            for f in Tenant::Dedicated.fixtures() {
                c.apply_dir(&fixture_dir(f)).await;
            }
        }
    }
    real_operator::give_shoot_info(&c).await;
    let states = States::watch(&c.client);
    match road {
        Road::DefaultCr => {}
        Road::Plain => {
            c.run(&["run"]).assert_ok();
        }
        Road::HandOver => {
            c.run(&["run", "--hand-over"]).assert_ok();
        }
    }
    // Until the module's workloads have replaced every legacy Pod and it reports Ready: what it
    // reported on the way is compared too.
    let real = match which {
        Operator::Real => {
            let op = RealOperator::start(&c).await;
            let started = std::time::Instant::now();
            while !(emulated::workloads_rolled(&c).await && states.last_is_ready()) {
                assert!(
                    started.elapsed() < LIMIT,
                    "{road:?}: not rolled: {:?}",
                    states.seen()
                );
                tokio::time::sleep(Duration::from_millis(200)).await;
            }
            Some(op)
        }
        Operator::Emulated => {
            let outcome =
                emulated::reconcile_until_rolled(&c, Duration::from_millis(500), LIMIT).await;
            assert_eq!(outcome, emulated::Outcome::Ready, "{road:?}");
            None
        }
    };
    states.wait_for(STATE_READY, LIMIT).await;
    Reconciled {
        c,
        states,
        real,
        _agent: agent,
    }
}

/// The states a watch saw, each once, in the order first seen. The real operator reconciles on
/// every event of its workloads and the emulation every half second, so how often a state
/// comes back while Pods roll is timing, not behaviour.
fn states_in_order(states: &States) -> Vec<String> {
    let mut out: Vec<String> = Vec::new();
    for s in states.seen() {
        if !out.contains(&s) {
            out.push(s);
        }
    }
    out
}

/// The emulation follows the real operator: on the default CR, after a plain `run` and after a
/// hand-over, each makes the same objects (kinds, names, labels, annotations, selectors, ports,
/// the ServiceMapping CRD's spec) and goes through the same `status.state`s; disabling the
/// module leaves the same behind.
#[tokio::test]
async fn the_emulated_operator_makes_what_the_real_one_makes() {
    let mut wrong = Vec::new();
    for road in [Road::DefaultCr, Road::Plain, Road::HandOver] {
        let (real, emulation) = futures::join!(
            reconciled(road, Operator::Real),
            reconciled(road, Operator::Emulated)
        );
        for d in differences(&made(&real.c).await, &made(&emulation.c).await) {
            wrong.push(format!("{road:?}: {d}"));
        }
        let (r, e) = (
            states_in_order(&real.states),
            states_in_order(&emulation.states),
        );
        if r != e {
            wrong.push(format!("{road:?}: states real {r:?} emulated {e:?}"));
        }
        if let Road::Plain = road {
            let op = real.real.expect("the real operator");
            real_operator::uninstall(&real.c, op).await;
            emulated::uninstall(&emulation.c).await;
            for d in differences(&left(&real.c).await, &left(&emulation.c).await) {
                wrong.push(format!("{road:?}, uninstalled: {d}"));
            }
        }
    }
    assert!(
        wrong.is_empty(),
        "the emulation differs:\n{}",
        wrong.join("\n")
    );
}

/// What is left after the module was disabled: every object of the kinds it made (its own
/// label or not) in its namespace and cluster-wide, by key, without what the controllers make.
async fn left(c: &TestCluster) -> support::operator_diff::Made {
    without_the_controllers_work(&snap(&c.client, &discover(&c.client).await).await)
        .into_iter()
        .filter(|(k, _)| k.contains(" kyma-system/") || k.contains(" /"))
        .map(|(k, _)| (k, Value::Null))
        .collect()
}

// ---------------------------------------------------------------------------------------------
// Nothing of the legacy chart left after a hand-over

/// contract.md, clean --hand-over: whatever the legacy objects hold (a port the operator does not
/// declare, named on one Service and unnamed on another, labels and annotations of the legacy
/// chart and of users on every handed-over kind), the operator's first apply leaves exactly what
/// it declares; a ConfigMap its apply could not change (`immutable: true`) is deleted instead.
/// The module reaches `Ready` without ever reporting `Error`, and every object at a handed-over
/// name equals what the operator makes on a cluster that never had the legacy installation
/// (server-allocated fields aside).
#[tokio::test]
async fn a_hand_over_leaves_nothing_of_the_legacy_objects_whatever_they_hold() {
    let (c, _agent) = legacy_shoot(Tenant::Dedicated.fixtures()).await;
    add_what_the_operator_does_not_declare(&c).await;
    let states = States::watch(&c.client);
    c.run(&["run", "--hand-over"]).assert_ok();
    let op = RealOperator::start(&c).await;
    states.wait_for(STATE_READY, LIMIT).await;
    never_error(&states, &op);
    let handed_over = handed_over_objects(&c).await;
    let spec = c.cr().await.data["spec"].clone();
    drop(op);

    let fresh = TestCluster::start().await;
    never_legacy(&fresh).await;
    real_operator::give_shoot_info(&fresh).await;
    real_operator::patch_cr(&fresh, json!({ "spec": spec })).await;
    let op = RealOperator::start(&fresh).await;
    let started = std::time::Instant::now();
    let made_fresh = loop {
        let made = handed_over_objects(&fresh).await;
        if made.len() == contract::hand_over::HANDED_OVER.len() {
            break made;
        }
        assert!(
            started.elapsed() < LIMIT,
            "the operator made {:?}\n{}",
            made.keys(),
            tail(&op.log(), 40)
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    };
    let expected: std::collections::BTreeSet<String> = contract::hand_over::HANDED_OVER
        .iter()
        .map(|k| k.to_string())
        .collect();
    assert_eq!(
        handed_over
            .keys()
            .cloned()
            .collect::<std::collections::BTreeSet<_>>(),
        expected,
        "every object handed over"
    );
    let mut differ = Vec::new();
    for (key, legacy) in &handed_over {
        if made_fresh.get(key) != Some(legacy) {
            differ.push(format!(
                "{key}:\n  handed over: {legacy}\n  made fresh:  {}",
                made_fresh.get(key).cloned().unwrap_or_default()
            ));
        }
    }
    assert!(differ.is_empty(), "{}", differ.join("\n"));
}

/// A label and an annotation of the legacy chart's kind and of a user's on every object clean
/// hands over, a named port the operator does not declare on `connectivity-proxy` and an unnamed
/// one on `connectivity-proxy-smv` (its only port); `connectivity-proxy-info` made immutable.
async fn add_what_the_operator_does_not_declare(c: &TestCluster) {
    for key in contract::hand_over::HANDED_OVER {
        let (kind, at) = key.split_once(' ').expect("Kind ns/name");
        let (namespace, name) = at.split_once('/').expect("ns/name");
        let mut patch = json!({"metadata": {
            "labels": {"example.com/legacy-only": "yes", "chart": "connectivity-proxy-2.9.3"},
            "annotations": {"example.com/note": "set by hand",
                "kubectl.kubernetes.io/last-applied-configuration": "{}"},
        }});
        match name {
            "connectivity-proxy" if kind == "Service" => {
                patch["spec"] = json!({"ports": [
                    {"name": "http", "port": 20003, "targetPort": 20003, "protocol": "TCP"},
                    {"name": "rfc-and-ldap", "port": 20001, "targetPort": 20001, "protocol": "TCP"},
                    {"name": "socks5", "port": 20004, "targetPort": 20004, "protocol": "TCP"},
                    {"name": "legacy-metrics", "port": 9090, "targetPort": 9090, "protocol": "TCP"},
                ]});
            }
            "connectivity-proxy-smv" => {
                patch["spec"] =
                    json!({"ports": [{"port": 9443, "targetPort": 8443, "protocol": "TCP"}]});
            }
            "connectivity-proxy-info" => patch["immutable"] = json!(true),
            _ => {}
        }
        c.merge_patch(kind, namespace, name, &patch).await;
    }
}

/// The objects clean hands over, each as made (server-owned metadata, status and allocated
/// Service addresses aside), by `Kind namespace/name`; those that carry the operator's label.
async fn handed_over_objects(c: &TestCluster) -> std::collections::BTreeMap<String, Value> {
    snap(&c.client, &discover(&c.client).await)
        .await
        .into_iter()
        .filter_map(|(key, o)| {
            let short = key.split_once('/').map(|(_, rest)| rest.to_string())?;
            let own = o.value["metadata"]["labels"][contract::adoption::LABEL]
                == json!(contract::adoption::LABEL_VALUE);
            (own && contract::hand_over::HANDED_OVER.contains(&short.as_str()))
                .then(|| (short, support::operator_diff::as_made(&o.ar.kind, &o.value)))
        })
        .collect()
}
