//! The project's RBAC manifests (deploy/rbac.yaml for every day, deploy/rbac-rollback.yaml for a
//! rollback only, deploy/rbac-hand-over.yaml while the hand-over is used) as a model of their rules, and the tool run as their ServiceAccount on the
//! RBAC-enforcing test server: what the authorizer allows, and creates that it must refuse.

use std::collections::BTreeSet;
use std::path::PathBuf;
use std::time::{Duration, Instant};

use k8s_openapi::api::authorization::v1::{
    ResourceAttributes, SubjectAccessReview, SubjectAccessReviewSpec,
};
use k8s_openapi::api::rbac::v1::ClusterRoleBinding;
use kube::api::{Api, DynamicObject, PostParams};
use serde_json::{Value, json};

use super::contract;
use super::requests::Request;
use super::values::str_of;
use super::{TestCluster, repo_root, yaml_documents};

pub const SA_NAMESPACE: &str = "kyma-system";
/// The ServiceAccount that deploy/rbac.yaml creates, for the hand-run commands.
pub const SA_NAME: &str = "cp-mod-migrator";

/// Applies deploy/rbac.yaml unchanged, waits until the authorizer sees each of its Roles and
/// ClusterRoles, and returns a kubeconfig that authenticates as its ServiceAccount.
pub async fn as_migrator_service_account(c: &TestCluster) -> PathBuf {
    Manifest::load().as_service_account(c).await
}

/// Waits until the authorizer allows `user` the first rule of `doc`, when `doc` is a Role or
/// ClusterRole (anything else is not waited for). RBAC reaches the authorizer through
/// informers, a moment after the write: without this, a refusal could be mere lag.
pub async fn wait_until_in_effect(c: &TestCluster, user: &str, doc: &Value) {
    let kind = doc["kind"].as_str().unwrap_or_default();
    if kind != "Role" && kind != "ClusterRole" {
        return;
    }
    let Some(rule) = doc["rules"].as_array().and_then(|r| r.first()) else {
        return;
    };
    let first = |k: &str| rule[k][0].as_str().map(str::to_string);
    let attributes = ResourceAttributes {
        namespace: doc["metadata"]["namespace"].as_str().map(str::to_string),
        verb: first("verbs"),
        group: first("apiGroups"),
        resource: first("resources"),
        name: first("resourceNames"),
        ..Default::default()
    };
    let started = Instant::now();
    while !allows(c, user, &attributes).await {
        assert!(
            started.elapsed() < Duration::from_secs(30),
            "{kind} {} not in effect for {user} after 30s",
            doc["metadata"]["name"]
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// Whether the authorizer lets `user`, a ServiceAccount of kyma-system, make a request of
/// these attributes (as `kubectl auth can-i --as` asks it).
pub async fn allows(c: &TestCluster, user: &str, attributes: &ResourceAttributes) -> bool {
    let review = SubjectAccessReview {
        spec: SubjectAccessReviewSpec {
            user: Some(user.into()),
            groups: Some(vec![
                "system:serviceaccounts".into(),
                format!("system:serviceaccounts:{SA_NAMESPACE}"),
                "system:authenticated".into(),
            ]),
            resource_attributes: Some(attributes.clone()),
            ..Default::default()
        },
        ..Default::default()
    };
    let reviews: Api<SubjectAccessReview> = Api::all(c.client.clone());
    reviews
        .create(&PostParams::default(), &review)
        .await
        .expect("SubjectAccessReview")
        .status
        .is_some_and(|s| s.allowed)
}

/// The everyday permissions: the init containers and the hand-run commands.
pub const EVERYDAY: &str = "deploy/rbac.yaml";
/// What only `rollback` needs: applied for a rollback and deleted after it.
pub const ROLLBACK: &str = "deploy/rbac-rollback.yaml";
/// What only `clean --hand-over` and `finish` need: applied beside the everyday one while the
/// hand-over is used.
pub const HAND_OVER: &str = "deploy/rbac-hand-over.yaml";

/// Both manifests as one list of objects, each with the file it comes from.
#[derive(Clone)]
pub struct Manifest {
    pub docs: Vec<Value>,
    pub files: Vec<&'static str>,
}

/// A rule: (document index, index in its `rules`).
pub type RuleId = (usize, usize);

impl Manifest {
    /// The everyday manifest and the rollback's.
    pub fn load() -> Manifest {
        Manifest::load_files(&[EVERYDAY, ROLLBACK])
    }

    /// The everyday manifest and the hand-over's.
    pub fn hand_over() -> Manifest {
        Manifest::load_files(&[EVERYDAY, HAND_OVER])
    }

    fn load_files(files: &[&'static str]) -> Manifest {
        let mut m = Manifest {
            docs: Vec::new(),
            files: Vec::new(),
        };
        for &file in files {
            let text = std::fs::read_to_string(repo_root().join(file)).expect(file);
            for doc in yaml_documents(&text) {
                m.docs.push(doc);
                m.files.push(file);
            }
        }
        m
    }

    /// The documents of one file.
    pub fn of(&self, file: &str) -> impl Iterator<Item = &Value> {
        self.docs
            .iter()
            .zip(&self.files)
            .filter(move |(_, f)| **f == file)
            .map(|(d, _)| d)
    }

    pub fn file_of(&self, (d, _): RuleId) -> &'static str {
        self.files[d]
    }

    pub fn rules(&self) -> Vec<RuleId> {
        let mut out = Vec::new();
        for (d, doc) in self.docs.iter().enumerate() {
            if let Some(rules) = doc["rules"].as_array() {
                out.extend((0..rules.len()).map(|r| (d, r)));
            }
        }
        out
    }

    pub fn rule(&self, (d, r): RuleId) -> &Value {
        &self.docs[d]["rules"][r]
    }

    pub fn without(&self, (d, r): RuleId) -> Manifest {
        let mut m = self.clone();
        m.docs[d]["rules"].as_array_mut().expect("rules").remove(r);
        m
    }

    /// "deploy/rbac.yaml Role kyma-system/cp-mod-migrator: get,delete apps/statefulsets
    /// [connectivity-proxy]".
    pub fn describe(&self, id: RuleId) -> String {
        let doc = &self.docs[id.0];
        let rule = self.rule(id);
        let list = |v: &Value| {
            v.as_array()
                .map(|a| {
                    a.iter()
                        .filter_map(|x| x.as_str())
                        .collect::<Vec<_>>()
                        .join(",")
                })
                .unwrap_or_default()
        };
        let names = list(&rule["resourceNames"]);
        format!(
            "{} {} {}{}: {} {}/{}{}",
            self.file_of(id),
            str_of(&doc["kind"]),
            doc["metadata"]["namespace"]
                .as_str()
                .map(|n| format!("{n}/"))
                .unwrap_or_default(),
            str_of(&doc["metadata"]["name"]),
            list(&rule["verbs"]),
            list(&rule["apiGroups"]),
            list(&rule["resources"]),
            if names.is_empty() {
                String::new()
            } else {
                format!(" [{names}]")
            }
        )
    }

    /// Applies the objects of one file, in order.
    pub async fn apply(&self, c: &TestCluster, file: &str) {
        for doc in self.of(file) {
            let obj: DynamicObject = serde_json::from_value(doc.clone()).expect("object");
            c.apply(&obj).await;
        }
    }

    /// Applies the everyday part of the manifest, waits until the authorizer sees each of its
    /// roles bound to the ServiceAccount, and returns a kubeconfig that authenticates as it.
    pub async fn as_service_account(&self, c: &TestCluster) -> PathBuf {
        self.apply(c, EVERYDAY).await;
        let token = c.token_for(SA_NAMESPACE, SA_NAME).await;
        self.wait_effective(c, &sa_user(SA_NAME), EVERYDAY).await;
        c.kubeconfig_with_token(&token, "sa.kubeconfig")
    }

    /// Whether a binding of the manifest gives the Role or ClusterRole `doc` to `user`.
    pub fn bound_to(&self, doc: &Value, user: &str) -> bool {
        let binding = if str_of(&doc["kind"]) == "Role" {
            "RoleBinding"
        } else {
            "ClusterRoleBinding"
        };
        self.docs.iter().any(|b| {
            str_of(&b["kind"]) == binding
                && b["metadata"]["namespace"] == doc["metadata"]["namespace"]
                && b["roleRef"]["name"] == doc["metadata"]["name"]
                && b["subjects"].as_array().is_some_and(|s| {
                    s.iter().any(|s| {
                        sa_user(str_of(&s["name"])) == user && s["namespace"] == SA_NAMESPACE
                    })
                })
        })
    }

    /// Waits until the API server's authorizer sees every Role and ClusterRole of the manifest
    /// that is bound to `user`, with its binding (RBAC reaches the authorizer through informers,
    /// a moment after the write). Without this, a missing permission could be mere lag.
    pub async fn wait_effective(&self, c: &TestCluster, user: &str, file: &str) {
        for doc in self.of(file).filter(|d| self.bound_to(d, user)) {
            wait_until_in_effect(c, user, doc).await;
        }
    }
}

pub fn sa_user(name: &str) -> String {
    format!("system:serviceaccount:{SA_NAMESPACE}:{name}")
}

/// A cluster with the legacy installation, the module and the everyday part of `manifest`, and a
/// kubeconfig that authenticates as the manifest's ServiceAccount (a TokenRequest token).
pub async fn cluster_as_sa(manifest: &Manifest) -> (TestCluster, PathBuf) {
    let c = TestCluster::legacy_and_module().await;
    let kubeconfig = manifest.as_service_account(&c).await;
    (c, kubeconfig)
}

/// The rules of the manifest that allow `req` (ClusterRoles are bound cluster-wide, Roles in
/// their namespace).
pub fn rules_allowing(m: &Manifest, req: &Request) -> Vec<RuleId> {
    let has = |v: &Value, s: &str| v.as_array().is_some_and(|a| a.iter().any(|x| x == s));
    m.rules()
        .into_iter()
        .filter(|&id| {
            let doc = &m.docs[id.0];
            let scope_ok = match str_of(&doc["kind"]) {
                "ClusterRole" => true,
                _ => doc["metadata"]["namespace"].as_str() == req.namespace.as_deref(),
            };
            let rule = m.rule(id);
            let names = rule["resourceNames"].as_array();
            scope_ok
                && has(&rule["apiGroups"], &req.group)
                && has(&rule["resources"], &req.resource)
                && has(&rule["verbs"], &req.verb)
                && match names {
                    None => true,
                    Some(n) if n.is_empty() => true,
                    Some(_) => req
                        .name
                        .as_deref()
                        .is_some_and(|name| has(&rule["resourceNames"], name)),
                }
        })
        .collect()
}

/// What a rule grants, as rollback names a permission it lacks: "create apps/deployments in
/// kyma-system", "bind rbac.authorization.k8s.io/clusterroles NAME".
pub fn permissions_of(m: &Manifest, id: RuleId) -> Vec<String> {
    let rule = m.rule(id);
    let list = |k: &str| {
        rule[k]
            .as_array()
            .map(|a| a.iter().map(|x| str_of(x).to_string()).collect::<Vec<_>>())
            .unwrap_or_default()
    };
    let names = match list("resourceNames") {
        n if n.is_empty() => vec![String::new()],
        n => n.into_iter().map(|n| format!(" {n}")).collect(),
    };
    let namespace = m.docs[id.0]["metadata"]["namespace"]
        .as_str()
        .map(|n| format!(" in {n}"))
        .unwrap_or_default();
    let mut out = Vec::new();
    for verb in list("verbs") {
        for group in list("apiGroups") {
            for resource in list("resources") {
                let group = if group.is_empty() {
                    String::new()
                } else {
                    format!("{group}/")
                };
                for name in &names {
                    out.push(format!("{verb} {group}{resource}{name}{namespace}"));
                }
            }
        }
    }
    out
}

/// Where `object`'s kind is served, for `client`.
pub async fn api_of(client: &kube::Client, object: &Value) -> Api<DynamicObject> {
    let (group, version) = match str_of(&object["apiVersion"]).split_once('/') {
        Some((g, v)) => (g, v),
        None => ("", str_of(&object["apiVersion"])),
    };
    let gvk = kube::core::GroupVersionKind::gvk(group, version, str_of(&object["kind"]));
    let (ar, caps) = kube::discovery::pinned_kind(client, &gvk)
        .await
        .expect("discovery");
    match (caps.scope, object["metadata"]["namespace"].as_str()) {
        (kube::discovery::Scope::Namespaced, Some(ns)) => {
            Api::namespaced_with(client.clone(), ns, &ar)
        }
        _ => Api::all_with(client.clone(), &ar),
    }
}

pub async fn create(
    client: &kube::Client,
    object: &Value,
    dry_run: bool,
) -> kube::Result<DynamicObject> {
    let pp = PostParams {
        dry_run,
        ..Default::default()
    };
    let api = api_of(client, object).await;
    api.create(
        &pp,
        &serde_json::from_value(object.clone()).expect("object"),
    )
    .await
}

/// Creates `object` as `client`, which must be refused; the admin then finds it as it was
/// before (absent, or unchanged). Returns the refusal.
pub async fn refused_create(
    c: &TestCluster,
    client: &kube::Client,
    object: &Value,
) -> Box<kube::core::Status> {
    let admin = api_of(&c.client, object).await;
    let name = str_of(&object["metadata"]["name"]);
    let version = |o: Option<DynamicObject>| o.and_then(|o| o.metadata.resource_version);
    let before = version(admin.get_opt(name).await.expect("get"));
    let refusal = match create(client, object, false).await {
        Err(kube::Error::Api(e)) => e,
        other => panic!(
            "{} {name}: expected a refusal, got {other:?}",
            object["kind"]
        ),
    };
    assert_eq!(
        version(admin.get_opt(name).await.expect("get")),
        before,
        "{} {name} unchanged",
        object["kind"]
    );
    refusal
}

// ---------------------------------------------------------------------------------------------
// What the tool's requests used of a manifest

/// Which rule allowed each request of a scenario, with which verb and (for a rule that names
/// its objects) which name.
pub struct Usage {
    used: BTreeSet<(RuleId, String, Option<String>)>,
    /// The rules that a command other than `rollback` used.
    everyday: BTreeSet<RuleId>,
}

impl Usage {
    /// The rule of each request, which must be exactly one; and `escalate` and `bind`, which
    /// the API server checks inside a create rather than as a request of their own: a
    /// ClusterRole's create used `escalate`, a ClusterRoleBinding's create `bind` on the role
    /// it names (as `c` holds the binding now).
    pub async fn of(m: &Manifest, requests: &[(&str, Request)], c: &TestCluster) -> Usage {
        let mut usage = Usage {
            used: BTreeSet::new(),
            everyday: BTreeSet::new(),
        };
        for (step, req) in requests {
            let id = only_rule_allowing(m, req);
            if !step.starts_with("rollback") {
                usage.everyday.insert(id);
            }
            let named = m.rule(id)["resourceNames"]
                .as_array()
                .is_some_and(|n| !n.is_empty());
            let name = if named { req.name.clone() } else { None };
            usage.used.insert((id, req.verb.clone(), name));
        }
        let created = |resource: &str| {
            requests
                .iter()
                .any(|(_, r)| r.verb == "create" && r.resource == resource)
        };
        if created("clusterroles") {
            usage.implicit(m, "escalate", None);
        }
        if created("clusterrolebindings") {
            let bindings: Api<ClusterRoleBinding> = Api::all(c.client.clone());
            for name in contract::legacy_names("ClusterRoleBinding") {
                if let Some(b) = bindings.get_opt(name).await.expect("get binding") {
                    usage.implicit(m, "bind", Some(b.role_ref.name));
                }
            }
        }
        usage
    }

    fn implicit(&mut self, m: &Manifest, verb: &str, name: Option<String>) {
        let req = Request {
            verb: verb.into(),
            group: "rbac.authorization.k8s.io".into(),
            resource: "clusterroles".into(),
            namespace: None,
            name: name.clone(),
        };
        self.used
            .insert((only_rule_allowing(m, &req), verb.to_string(), name));
    }

    /// Each verb, and name, of each rule that no request used; except the archive's parts that
    /// only a rewrite uses: an archive in parts is rewritten into the set the index does not
    /// point at (set b on the second write in parts), and a part is updated in place only from
    /// the third write on (tests/rollback.rs writes them all); a scenario writes set a once.
    pub fn unused(&self, m: &Manifest) -> Vec<String> {
        let mut unused = Vec::new();
        for id in m.rules() {
            let rule = m.rule(id);
            let names: Vec<Option<String>> = match rule["resourceNames"].as_array() {
                Some(n) if !n.is_empty() => n.iter().map(|x| Some(str_of(x).to_string())).collect(),
                _ => vec![None],
            };
            for verb in rule["verbs"].as_array().expect("verbs") {
                let verb = str_of(verb);
                for name in &names {
                    let used = self.used.contains(&(id, verb.to_string(), name.clone()));
                    if !used && !name.as_deref().is_some_and(|n| rewrite_only(verb, n)) {
                        let name = name.as_deref().unwrap_or("(any name)");
                        unused.push(format!("{}: {verb} {name}", m.describe(id)));
                    }
                }
            }
        }
        unused
    }

    /// The rules of the everyday manifest that only rollback used.
    pub fn rollback_only(&self, m: &Manifest) -> Vec<String> {
        m.rules()
            .into_iter()
            .filter(|&id| m.file_of(id) == EVERYDAY && !self.everyday.contains(&id))
            .map(|id| m.describe(id))
            .collect()
    }
}

/// The one rule that allows `req`.
fn only_rule_allowing(m: &Manifest, req: &Request) -> RuleId {
    let allowing = rules_allowing(m, req);
    let described: Vec<String> = allowing.iter().map(|id| m.describe(*id)).collect();
    assert_eq!(
        allowing.len(),
        1,
        "{req:?} is allowed by {described:?}: every request needs exactly one rule"
    );
    allowing[0]
}

/// A part of the archive's second set, or an update of any part: used by rewrites only.
fn rewrite_only(verb: &str, name: &str) -> bool {
    use cp_mod_migrator::names::archive::{MAX_PARTS, SLOTS, part_name};
    let in_set = |slot: &str| (1..=MAX_PARTS).any(|i| part_name(slot, i) == name);
    in_set(SLOTS[1]) || (verb == "update" && SLOTS.iter().any(|slot| in_set(slot)))
}

impl Manifest {
    /// Each Role and ClusterRole that no binding of its scope, in its own file, gives to the
    /// ServiceAccount; and each binding of the rollback's manifest to anyone but it.
    pub fn unbound_roles(&self) -> Vec<String> {
        let mut wrong = Vec::new();
        let only_the_sa =
            json!([{"kind": "ServiceAccount", "name": SA_NAME, "namespace": SA_NAMESPACE}]);
        for (doc, file) in self.docs.iter().zip(&self.files) {
            let kind = str_of(&doc["kind"]);
            let name = str_of(&doc["metadata"]["name"]);
            if *file == ROLLBACK && doc["subjects"].is_array() && doc["subjects"] != only_the_sa {
                wrong.push(format!(
                    "{ROLLBACK}: {kind} {name} binds others than {SA_NAME}"
                ));
            }
            if (kind == "Role" || kind == "ClusterRole") && !self.binds_in_file(doc, file) {
                wrong.push(format!(
                    "{kind} {name} has no binding to {SA_NAME} in {file}"
                ));
            }
        }
        wrong
    }

    fn binds_in_file(&self, role: &Value, file: &str) -> bool {
        let kind = str_of(&role["kind"]);
        let binding = if kind == "Role" {
            "RoleBinding"
        } else {
            "ClusterRoleBinding"
        };
        self.of(file).any(|b| {
            str_of(&b["kind"]) == binding
                && b["metadata"]["namespace"] == role["metadata"]["namespace"]
                && b["roleRef"]["kind"] == kind
                && b["roleRef"]["name"] == role["metadata"]["name"]
                && b["subjects"].as_array().is_some_and(|s| {
                    s.iter().any(|s| {
                        s["kind"] == "ServiceAccount"
                            && s["name"] == SA_NAME
                            && s["namespace"] == SA_NAMESPACE
                    })
                })
        })
    }
}
