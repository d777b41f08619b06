//! The Helm chart (charts/ferry), deploy/install.yaml and the Dockerfile, checked offline.
//!
//! The chart is rendered with `helm template` (the pinned `.tools/bin/helm`, else `helm` on PATH)
//! with its defaults and with every optional object on. Every rendered object of a Kubernetes
//! kind is deserialized into its k8s-openapi type and serialized back: any unknown, misspelt or
//! mistyped field shows up as a difference. The monitoring.coreos.com objects go through small
//! types that deny unknown fields. The RBAC equals deploy/rbac.yaml, the chart's CRDs equal
//! crds/, deploy/install.yaml equals a fresh render, the alerts pass `promtool check rules` and
//! the unit tests of charts/ferry/tests/alerts-test.yaml, and every metric the alerts and the
//! dashboard use is documented in docs/metrics.md.

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};
use std::process::{Command, Output};
use std::sync::OnceLock;

use ferry::api::manifest::{self, Manifest};
use ferry::controller::pods::{self, Role as PodRole};
use k8s_openapi::api::apps::v1::Deployment;
use k8s_openapi::api::core::v1::{ConfigMap, Namespace, Service, ServiceAccount};
use k8s_openapi::api::policy::v1::PodDisruptionBudget;
use k8s_openapi::api::rbac::v1::{ClusterRole, ClusterRoleBinding, PolicyRule, Role, RoleBinding};
use k8s_openapi::apiextensions_apiserver::pkg::apis::apiextensions::v1::CustomResourceDefinition;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::LabelSelector;
use k8s_openapi::apimachinery::pkg::util::intstr::IntOrString;
use serde::de::DeserializeOwned;
use serde::{Deserialize, Serialize};
use serde_json::{Value, json};

const ROOT: &str = env!("CARGO_MANIFEST_DIR");
const NAMESPACE: &str = "ferry-system";
const CHART: &str = "charts/ferry";

/// Values that turn every optional object on and set every placement and pull option.
const EVERYTHING: &str = r#"
image: {tag: 0.1.0-rc.1}
imagePullSecrets: [{name: ferry-pull}]
logLevel: ferry=debug,info
logJson: true
podAnnotations: {example.com/owner: data-platform}
podLabels: {example.com/team: data}
nodeSelector: {kubernetes.io/os: linux}
tolerations: [{key: dedicated, operator: Equal, value: ferry, effect: NoSchedule}]
affinity:
  podAntiAffinity:
    preferredDuringSchedulingIgnoredDuringExecution:
      - weight: 100
        podAffinityTerm:
          topologyKey: kubernetes.io/hostname
          labelSelector: {matchLabels: {app.kubernetes.io/component: operator}}
priorityClassName: ferry-critical
service: {annotations: {example.com/scrape: "yes"}}
workers:
  allowedImages: ["registry.example.com/ferry:*"]
  allowedTolerationKeys: [dedicated]
  allowedNodeSelectorKeys: [pool]
  imagePullSecrets: [{name: ferry-pull}, {name: ferry-pull-2}]
serviceMonitor: {enabled: true, labels: {release: prometheus}}
podMonitor: {enabled: true}
prometheusRule: {enabled: true}
dashboard: {enabled: true}
"#;

// ---------------------------------------------------------------------------------------------
// Tools and rendering

fn path(rel: &str) -> PathBuf {
    Path::new(ROOT).join(rel)
}

fn read(rel: &str) -> String {
    std::fs::read_to_string(path(rel)).unwrap_or_else(|e| panic!("{rel}: {e}"))
}

fn works(program: &Path, arg: &str) -> bool {
    Command::new(program).arg(arg).output().is_ok_and(|o| o.status.success())
}

/// The pinned helm in .tools/bin, else `helm` on PATH.
fn helm() -> &'static Path {
    static HELM: OnceLock<PathBuf> = OnceLock::new();
    HELM.get_or_init(|| {
        let pinned = path(".tools/bin/helm");
        if works(&pinned, "version") {
            return pinned;
        }
        if works(Path::new("helm"), "version") {
            return PathBuf::from("helm");
        }
        panic!(
            "helm not found: neither {} nor `helm` on PATH; run scripts/install-deps.sh (it installs the pinned \
             helm into .tools/bin)",
            pinned.display()
        )
    })
}

fn promtool() -> &'static Path {
    static PROMTOOL: OnceLock<PathBuf> = OnceLock::new();
    PROMTOOL.get_or_init(|| {
        assert!(
            works(Path::new("promtool"), "--version"),
            "promtool not found on PATH: run scripts/install-deps.sh (it installs the Debian package prometheus; CI \
             does the same)"
        );
        PathBuf::from("promtool")
    })
}

/// Runs helm in the repository, offline: no kubeconfig to reach a cluster through.
fn run_helm(args: &[&str]) -> Output {
    let home = tempfile::tempdir().unwrap();
    Command::new(helm())
        .current_dir(ROOT)
        .args(args)
        .env("KUBECONFIG", home.path().join("no-kubeconfig"))
        .env("HELM_CACHE_HOME", home.path().join("cache"))
        .env("HELM_CONFIG_HOME", home.path().join("config"))
        .env("HELM_DATA_HOME", home.path().join("data"))
        .output()
        .unwrap()
}

/// `helm template ferry charts/ferry --namespace ferry-system <extra>`: stdout, or stderr on failure.
fn template(extra: &[&str]) -> Result<String, String> {
    let mut args = vec!["template", "ferry", CHART, "--namespace", NAMESPACE];
    args.extend_from_slice(extra);
    let out = run_helm(&args);
    if out.status.success() {
        Ok(String::from_utf8(out.stdout).unwrap())
    } else {
        Err(String::from_utf8_lossy(&out.stderr).into_owned())
    }
}

fn documents(text: &str) -> Vec<Value> {
    serde_yaml::Deserializer::from_str(text).map(|d| Value::deserialize(d).unwrap()).filter(|d| !d.is_null()).collect()
}

fn render(extra: &[&str]) -> Vec<Value> {
    documents(&template(extra).unwrap_or_else(|e| panic!("helm template {extra:?} failed:\n{e}")))
}

/// A file holding EVERYTHING, for `--values`.
fn everything_values() -> &'static Path {
    static FILE: OnceLock<tempfile::TempPath> = OnceLock::new();
    FILE.get_or_init(|| {
        let mut file = tempfile::Builder::new().suffix(".yaml").tempfile().unwrap();
        std::io::Write::write_all(&mut file, EVERYTHING.as_bytes()).unwrap();
        file.into_temp_path()
    })
}

/// The defaults, with the CRDs.
fn defaults() -> &'static [Value] {
    static DOCS: OnceLock<Vec<Value>> = OnceLock::new();
    DOCS.get_or_init(|| render(&["--include-crds"]))
}

/// Every optional object on, with the CRDs.
fn everything() -> &'static [Value] {
    static DOCS: OnceLock<Vec<Value>> = OnceLock::new();
    DOCS.get_or_init(|| render(&["--include-crds", "--values", everything_values().to_str().unwrap()]))
}

fn describe(doc: &Value) -> String {
    format!("{} {}/{}", doc["kind"], doc["metadata"]["namespace"], doc["metadata"]["name"])
}

fn find<'a>(docs: &'a [Value], kind: &str, name: &str) -> &'a Value {
    let found: Vec<&Value> = docs.iter().filter(|d| d["kind"] == kind && d["metadata"]["name"] == name).collect();
    assert_eq!(found.len(), 1, "expected one {kind} {name}, found {}", found.len());
    found[0]
}

fn of_kind<'a>(docs: &'a [Value], kind: &str) -> Vec<&'a Value> {
    docs.iter().filter(|d| d["kind"] == kind).collect()
}

// ---------------------------------------------------------------------------------------------
// Object validation

/// The first place two JSON values differ.
fn difference(a: &Value, b: &Value, at: &str) -> Option<String> {
    match (a, b) {
        (Value::Object(x), Value::Object(y)) => {
            for key in x.keys().chain(y.keys()).collect::<BTreeSet<_>>() {
                match (x.get(key), y.get(key)) {
                    (Some(u), Some(v)) => {
                        if let Some(d) = difference(u, v, &format!("{at}.{key}")) {
                            return Some(d);
                        }
                    }
                    (u, v) => return Some(format!("{at}.{key}: {u:?} vs {v:?}")),
                }
            }
            None
        }
        (Value::Array(x), Value::Array(y)) if x.len() == y.len() => {
            x.iter().zip(y).enumerate().find_map(|(i, (u, v))| difference(u, v, &format!("{at}[{i}]")))
        }
        _ => (a != b).then(|| format!("{at}: {a} vs {b}")),
    }
}

/// Deserializes into the typed object and back: a field the type does not know is lost, a
/// mistyped one fails, either way the object is rejected.
fn typed<T: DeserializeOwned + Serialize>(doc: &Value) -> T {
    let t: T = serde_json::from_value(doc.clone()).unwrap_or_else(|e| panic!("{}: {e}", describe(doc)));
    let back = serde_json::to_value(&t).unwrap();
    if let Some(d) = difference(doc, &back, "") {
        panic!("unknown, misspelt or mistyped field in {} (rendered vs typed): {d}", describe(doc));
    }
    t
}

/// The parts of the Prometheus Operator's resources (monitoring.coreos.com/v1) the chart uses;
/// anything else is an error.
mod monitoring {
    use std::collections::BTreeMap;

    use k8s_openapi::apimachinery::pkg::apis::meta::v1::{LabelSelector, ObjectMeta};
    use serde::{Deserialize, Serialize};

    #[derive(Debug, Deserialize, Serialize)]
    #[serde(deny_unknown_fields, rename_all = "camelCase")]
    pub struct Object<S> {
        pub api_version: String,
        pub kind: String,
        pub metadata: ObjectMeta,
        pub spec: S,
    }

    #[derive(Debug, Deserialize, Serialize)]
    #[serde(deny_unknown_fields, rename_all = "camelCase")]
    pub struct ServiceMonitorSpec {
        pub selector: LabelSelector,
        pub namespace_selector: NamespaceSelector,
        pub endpoints: Vec<Endpoint>,
    }

    #[derive(Debug, Deserialize, Serialize)]
    #[serde(deny_unknown_fields, rename_all = "camelCase")]
    pub struct PodMonitorSpec {
        pub selector: LabelSelector,
        pub namespace_selector: NamespaceSelector,
        pub pod_metrics_endpoints: Vec<Endpoint>,
    }

    #[derive(Debug, Deserialize, Serialize)]
    #[serde(deny_unknown_fields, rename_all = "camelCase")]
    pub struct NamespaceSelector {
        #[serde(default, skip_serializing_if = "Option::is_none")]
        pub any: Option<bool>,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        pub match_names: Option<Vec<String>>,
    }

    /// A ServiceMonitor endpoint or a PodMonitor podMetricsEndpoint.
    #[derive(Debug, Deserialize, Serialize)]
    #[serde(deny_unknown_fields, rename_all = "camelCase")]
    pub struct Endpoint {
        pub port: String,
        pub path: String,
        pub interval: String,
        pub scrape_timeout: String,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        pub honor_labels: Option<bool>,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        pub relabelings: Option<Vec<Relabeling>>,
    }

    #[derive(Debug, Deserialize, Serialize)]
    #[serde(deny_unknown_fields, rename_all = "camelCase")]
    pub struct Relabeling {
        pub source_labels: Vec<String>,
        pub target_label: String,
    }

    #[derive(Debug, Deserialize, Serialize)]
    #[serde(deny_unknown_fields)]
    pub struct PrometheusRuleSpec {
        pub groups: Vec<RuleGroup>,
    }

    #[derive(Debug, Deserialize, Serialize)]
    #[serde(deny_unknown_fields)]
    pub struct RuleGroup {
        pub name: String,
        pub rules: Vec<Rule>,
    }

    #[derive(Debug, Deserialize, Serialize)]
    #[serde(deny_unknown_fields)]
    pub struct Rule {
        pub alert: String,
        pub expr: String,
        #[serde(default, rename = "for", skip_serializing_if = "Option::is_none")]
        pub for_: Option<String>,
        pub labels: BTreeMap<String, String>,
        pub annotations: BTreeMap<String, String>,
    }
}

type ServiceMonitor = monitoring::Object<monitoring::ServiceMonitorSpec>;
type PodMonitor = monitoring::Object<monitoring::PodMonitorSpec>;
type PrometheusRule = monitoring::Object<monitoring::PrometheusRuleSpec>;

/// Checks one rendered object against its type; panics on an unexpected kind.
fn check_object(doc: &Value) {
    let kind = doc["kind"].as_str().unwrap_or_else(|| panic!("no kind: {doc}"));
    let api_version = doc["apiVersion"].as_str().unwrap();
    match kind {
        "Deployment" => drop(typed::<Deployment>(doc)),
        "Service" => drop(typed::<Service>(doc)),
        "ServiceAccount" => drop(typed::<ServiceAccount>(doc)),
        "ClusterRole" => drop(typed::<ClusterRole>(doc)),
        "ClusterRoleBinding" => drop(typed::<ClusterRoleBinding>(doc)),
        "Role" => drop(typed::<Role>(doc)),
        "RoleBinding" => drop(typed::<RoleBinding>(doc)),
        "ConfigMap" => drop(typed::<ConfigMap>(doc)),
        "PodDisruptionBudget" => drop(typed::<PodDisruptionBudget>(doc)),
        "Namespace" => drop(typed::<Namespace>(doc)),
        "CustomResourceDefinition" => drop(typed::<CustomResourceDefinition>(doc)),
        "ServiceMonitor" => check_service_monitor(&typed(doc)),
        "PodMonitor" => check_pod_monitor(&typed(doc)),
        "PrometheusRule" => drop(typed::<PrometheusRule>(doc)),
        k => panic!("unexpected kind {k} ({api_version})"),
    }
    if ["ServiceMonitor", "PodMonitor", "PrometheusRule"].contains(&kind) {
        assert_eq!(api_version, "monitoring.coreos.com/v1", "{}", describe(doc));
    }
    let cluster_scoped = ["ClusterRole", "ClusterRoleBinding", "CustomResourceDefinition", "Namespace"];
    let namespace = doc["metadata"]["namespace"].as_str();
    if cluster_scoped.contains(&kind) {
        assert!(namespace.is_none(), "{} is cluster-scoped", describe(doc));
    } else {
        // Set explicitly, so that `kubectl apply -f deploy/install.yaml` needs no -n.
        assert!(namespace.is_some_and(|n| !n.is_empty()), "{} has no namespace", describe(doc));
    }
    if kind != "CustomResourceDefinition" {
        let labels = &doc["metadata"]["labels"];
        assert_eq!(labels["app.kubernetes.io/name"], "ferry", "{}", describe(doc));
        assert_eq!(labels["app.kubernetes.io/instance"], "ferry", "{}", describe(doc));
        assert_eq!(labels["app.kubernetes.io/managed-by"], "Helm", "{}", describe(doc));
    }
}

/// Prometheus durations as the Prometheus Operator's schema accepts them (`1h30m`, `30s`, `0`),
/// in seconds.
fn duration_seconds(text: &str) -> Option<f64> {
    if text == "0" {
        return Some(0.0);
    }
    let units = [
        ("y", 31_536_000.0),
        ("w", 604_800.0),
        ("d", 86_400.0),
        ("h", 3_600.0),
        ("m", 60.0),
        ("s", 1.0),
        ("ms", 0.001),
    ];
    let (mut rest, mut next, mut total) = (text, 0, 0.0);
    while !rest.is_empty() {
        let digits = rest.bytes().take_while(u8::is_ascii_digit).count();
        let number: f64 = rest[..digits].parse().ok()?;
        let after = &rest[digits..];
        let (i, (unit, scale)) = units
            .iter()
            .enumerate()
            .skip(next)
            .find(|(_, (u, _))| after.starts_with(u) && !(*u == "m" && after.starts_with("ms")))?;
        total += number * scale;
        next = i + 1;
        rest = &after[unit.len()..];
    }
    (next > 0).then_some(total)
}

fn check_endpoint(e: &monitoring::Endpoint) {
    let interval = duration_seconds(&e.interval).unwrap_or_else(|| panic!("interval {:?}", e.interval));
    let timeout = duration_seconds(&e.scrape_timeout).unwrap_or_else(|| panic!("scrapeTimeout {:?}", e.scrape_timeout));
    assert!(timeout <= interval, "scrapeTimeout {} above interval {}", e.scrape_timeout, e.interval);
    assert_eq!(e.path, "/metrics");
}

fn check_service_monitor(m: &ServiceMonitor) {
    assert_eq!(m.kind, "ServiceMonitor");
    m.spec.endpoints.iter().for_each(check_endpoint);
}

fn check_pod_monitor(m: &PodMonitor) {
    assert_eq!(m.kind, "PodMonitor");
    m.spec.pod_metrics_endpoints.iter().for_each(check_endpoint);
}

fn selects(selector: &LabelSelector, labels: &BTreeMap<String, String>) -> bool {
    assert!(selector.match_expressions.is_none(), "only matchLabels are used");
    let wanted = selector.match_labels.as_ref().expect("matchLabels");
    !wanted.is_empty() && wanted.iter().all(|(k, v)| labels.get(k) == Some(v))
}

// ---------------------------------------------------------------------------------------------
// Rendered objects

#[test]
fn the_defaults_render_valid_objects_and_no_optional_ones() {
    let docs = defaults();
    docs.iter().for_each(check_object);
    let count = |kind: &str| of_kind(docs, kind).len();
    assert_eq!(count("CustomResourceDefinition"), 3);
    assert_eq!(count("Deployment"), 1);
    assert_eq!(count("Service"), 1);
    assert_eq!(count("ServiceAccount"), 1, "ferry-operator; each job's worker gets its own from the operator");
    assert_eq!(count("ClusterRole"), 1);
    assert_eq!(count("ClusterRoleBinding"), 1);
    assert_eq!(count("Role"), 1);
    assert_eq!(count("RoleBinding"), 1);
    assert_eq!(count("PodDisruptionBudget"), 1, "two replicas by default");
    for kind in ["ServiceMonitor", "PodMonitor", "PrometheusRule", "ConfigMap", "Namespace"] {
        assert_eq!(count(kind), 0, "{kind} is off by default");
    }
    assert_eq!(docs.len(), 11);
}

#[test]
fn every_optional_object_renders_valid() {
    let docs = everything();
    docs.iter().for_each(check_object);
    for kind in ["ServiceMonitor", "PodMonitor", "PrometheusRule", "ConfigMap"] {
        assert_eq!(of_kind(docs, kind).len(), 1, "{kind}");
    }
    // What jobs may ask of their worker pods reaches the operator.
    let deployment: Deployment = typed(find(docs, "Deployment", "ferry-operator"));
    let env = deployment.spec.unwrap().template.spec.unwrap().containers[0].env.clone().unwrap();
    let value = |name: &str| env.iter().find(|e| e.name == name).and_then(|e| e.value.clone());
    assert_eq!(value("FERRY_ALLOWED_WORKER_IMAGES").as_deref(), Some("registry.example.com/ferry:*"));
    assert_eq!(value("FERRY_ALLOWED_TOLERATION_KEYS").as_deref(), Some("dedicated"));
    assert_eq!(value("FERRY_ALLOWED_NODE_SELECTOR_KEYS").as_deref(), Some("pool"));
    assert_eq!(value("FERRY_WORKER_IMAGE_PULL_SECRETS").as_deref(), Some("ferry-pull,ferry-pull-2"));
    assert_eq!(docs.len(), 15);
}

#[test]
fn by_default_workers_may_run_the_operators_image_only_without_tolerations() {
    let deployment: Deployment = typed(find(defaults(), "Deployment", "ferry-operator"));
    let env = deployment.spec.unwrap().template.spec.unwrap().containers[0].env.clone().unwrap();
    let value = |name: &str| env.iter().find(|e| e.name == name).and_then(|e| e.value.clone());
    assert_eq!(value("FERRY_ALLOWED_WORKER_IMAGES").as_deref(), Some(""), "only FERRY_IMAGE");
    assert_eq!(value("FERRY_ALLOWED_TOLERATION_KEYS").as_deref(), Some(""));
    let keys = value("FERRY_ALLOWED_NODE_SELECTOR_KEYS").unwrap();
    assert_eq!(keys.split(',').collect::<Vec<_>>(), ferry::controller::policy::DEFAULT_NODE_SELECTOR_KEYS);
    assert!(value("FERRY_WORKER_IMAGE_PULL_SECRETS").is_none());
}

#[test]
fn the_rbac_is_exactly_deploy_rbac_yaml() {
    let text = read("deploy/rbac.yaml");
    let reference = documents(&text);
    let rules = |docs: &[Value], kind: &str, name: &str| -> Vec<PolicyRule> {
        let doc = find(docs, kind, name);
        match kind {
            "ClusterRole" => typed::<ClusterRole>(doc).rules.unwrap(),
            _ => typed::<Role>(doc).rules.unwrap(),
        }
    };
    for docs in [defaults(), everything()] {
        for (kind, name) in [("ClusterRole", "ferry-operator"), ("Role", "ferry-operator-leader-election")] {
            assert_eq!(rules(docs, kind, name), rules(&reference, kind, name), "{kind} {name}");
        }
        let binding: ClusterRoleBinding = typed(find(docs, "ClusterRoleBinding", "ferry-operator"));
        assert_eq!((binding.role_ref.kind.as_str(), binding.role_ref.name.as_str()), ("ClusterRole", "ferry-operator"));
        let subjects = binding.subjects.unwrap();
        assert_eq!(subjects.len(), 1);
        assert_eq!(
            (subjects[0].kind.as_str(), subjects[0].name.as_str(), subjects[0].namespace.as_deref()),
            ("ServiceAccount", "ferry-operator", Some(NAMESPACE))
        );
        let leader: RoleBinding = typed(find(docs, "RoleBinding", "ferry-operator-leader-election"));
        assert_eq!(leader.metadata.namespace.as_deref(), Some(NAMESPACE));
        assert_eq!(
            (leader.role_ref.kind.as_str(), leader.role_ref.name.as_str()),
            ("Role", "ferry-operator-leader-election")
        );
        assert_eq!(leader.subjects.unwrap()[0].name, "ferry-operator");
        assert!(!docs.iter().any(|d| d["metadata"]["name"] == "ferry-worker"), "no worker RBAC shared by jobs");
    }
}

#[test]
fn the_operator_runs_restricted_with_two_replicas_and_leader_election() {
    let deployment: Deployment = typed(find(defaults(), "Deployment", "ferry-operator"));
    let spec = deployment.spec.unwrap();
    assert_eq!(spec.replicas, Some(2));
    let template_labels = spec.template.metadata.as_ref().unwrap().labels.clone().unwrap();
    assert!(selects(&spec.selector, &template_labels));
    let pod = spec.template.spec.unwrap();
    assert_eq!(pod.service_account_name.as_deref(), Some("ferry-operator"));
    let psc = pod.security_context.unwrap();
    assert_eq!((psc.run_as_non_root, psc.run_as_user), (Some(true), Some(65532)));
    assert_eq!(psc.seccomp_profile.unwrap().type_, "RuntimeDefault");
    assert_eq!(pod.containers.len(), 1);
    let c = &pod.containers[0];
    assert_eq!(c.args.as_deref().unwrap(), ["operator", "--listen", "0.0.0.0:8080"]);
    let image = format!("ghcr.io/ferry-dev/ferry:{}", env!("CARGO_PKG_VERSION"));
    assert_eq!(c.image.as_deref(), Some(image.as_str()), "the image tag defaults to appVersion, the crate version");
    let env: BTreeMap<&str, &k8s_openapi::api::core::v1::EnvVar> =
        c.env.as_ref().unwrap().iter().map(|e| (e.name.as_str(), e)).collect();
    let field = |name: &str| env[name].value_from.as_ref().unwrap().field_ref.as_ref().unwrap().field_path.clone();
    assert_eq!(field("POD_NAME"), "metadata.name");
    assert_eq!(field("POD_NAMESPACE"), "metadata.namespace", "the Lease lives in the pod's namespace");
    assert_eq!(env["FERRY_IMAGE"].value.as_deref(), Some(image.as_str()), "workers run the operator's image");
    assert_eq!(env["RUST_LOG"].value.as_deref(), Some("info"));
    assert!(!env.contains_key("FERRY_LOG_JSON"));
    let port = &c.ports.as_ref().unwrap()[0];
    assert_eq!((port.name.as_deref(), port.container_port), (Some("http"), 8080));
    for (probe, path) in [(&c.liveness_probe, "/healthz"), (&c.readiness_probe, "/readyz")] {
        let get = probe.as_ref().unwrap().http_get.as_ref().unwrap();
        assert_eq!((get.path.as_deref(), &get.port), (Some(path), &IntOrString::String("http".into())));
    }
    let resources = c.resources.as_ref().unwrap();
    assert!(resources.requests.as_ref().is_some_and(|r| r.contains_key("cpu") && r.contains_key("memory")));
    assert!(resources.limits.as_ref().is_some_and(|r| r.contains_key("memory")));
    let sc = c.security_context.as_ref().unwrap();
    assert_eq!(sc.run_as_non_root, Some(true));
    assert_eq!(sc.run_as_user, Some(65532));
    assert_eq!(sc.read_only_root_filesystem, Some(true));
    assert_eq!(sc.allow_privilege_escalation, Some(false));
    assert_eq!(sc.capabilities.as_ref().unwrap().drop.as_deref().unwrap(), ["ALL"]);
    assert_eq!(sc.seccomp_profile.as_ref().unwrap().type_, "RuntimeDefault");
    // The operator's pods are never taken for workers.
    let worker = pods::labels("orders", PodRole::Worker, 1);
    assert_ne!(template_labels.get(pods::LABEL_MANAGED_BY), worker.get(pods::LABEL_MANAGED_BY));

    let pdb: PodDisruptionBudget = typed(find(defaults(), "PodDisruptionBudget", "ferry-operator"));
    let pdb = pdb.spec.unwrap();
    assert_eq!(pdb.min_available, Some(IntOrString::Int(1)));
    assert!(selects(pdb.selector.as_ref().unwrap(), &template_labels));

    let single = render(&["--set", "replicaCount=1"]);
    assert!(of_kind(&single, "PodDisruptionBudget").is_empty(), "no PodDisruptionBudget for one replica");
    assert_eq!(find(&single, "Deployment", "ferry-operator")["spec"]["replicas"], 1);
}

#[test]
fn placement_pull_and_log_values_reach_the_operator_pod() {
    let deployment: Deployment = typed(find(everything(), "Deployment", "ferry-operator"));
    let template = deployment.spec.unwrap().template;
    let meta = template.metadata.unwrap();
    assert_eq!(meta.annotations.unwrap()["example.com/owner"], "data-platform");
    assert_eq!(meta.labels.unwrap()["example.com/team"], "data");
    let pod = template.spec.unwrap();
    assert_eq!(pod.image_pull_secrets.unwrap()[0].name, "ferry-pull");
    assert_eq!(pod.node_selector.unwrap()["kubernetes.io/os"], "linux");
    assert_eq!(pod.tolerations.unwrap()[0].key.as_deref(), Some("dedicated"));
    assert!(pod.affinity.unwrap().pod_anti_affinity.is_some());
    assert_eq!(pod.priority_class_name.as_deref(), Some("ferry-critical"));
    let c = &pod.containers[0];
    assert_eq!(c.image.as_deref(), Some("ghcr.io/ferry-dev/ferry:0.1.0-rc.1"));
    let env = c.env.as_ref().unwrap();
    let value = |name: &str| env.iter().find(|e| e.name == name).and_then(|e| e.value.clone());
    assert_eq!(value("FERRY_IMAGE").as_deref(), Some("ghcr.io/ferry-dev/ferry:0.1.0-rc.1"));
    assert_eq!(value("RUST_LOG").as_deref(), Some("ferry=debug,info"));
    assert_eq!(value("FERRY_LOG_JSON").as_deref(), Some("1"));
}

#[test]
fn the_service_and_the_service_monitor_reach_the_operators_metrics() {
    let docs = everything();
    let deployment: Deployment = typed(find(docs, "Deployment", "ferry-operator"));
    let pod_labels = deployment.spec.unwrap().template.metadata.unwrap().labels.unwrap();
    let service: Service = typed(find(docs, "Service", "ferry-operator"));
    let annotations = service.metadata.annotations.clone().unwrap();
    assert_eq!(annotations["prometheus.io/scrape"], "true");
    assert_eq!(annotations["prometheus.io/port"], "8080");
    assert_eq!(annotations["example.com/scrape"], "yes");
    let spec = service.spec.unwrap();
    let selector = spec.selector.unwrap();
    assert!(selector.iter().all(|(k, v)| pod_labels.get(k) == Some(v)), "the Service selects the operator's pods");
    let port = &spec.ports.unwrap()[0];
    assert_eq!((port.name.as_deref(), port.port), (Some("http"), 8080));
    assert_eq!(port.target_port, Some(IntOrString::String("http".into())));

    let monitor: ServiceMonitor = typed(find(docs, "ServiceMonitor", "ferry-operator"));
    assert_eq!(monitor.metadata.labels.as_ref().unwrap()["release"], "prometheus");
    assert!(selects(&monitor.spec.selector, service.metadata.labels.as_ref().unwrap()));
    assert_eq!(monitor.spec.namespace_selector.match_names.as_deref(), Some(&[NAMESPACE.to_owned()][..]));
    let endpoint = &monitor.spec.endpoints[0];
    assert_eq!(endpoint.port, "http");
    assert_eq!(endpoint.honor_labels, Some(true), "per-job series keep their own `namespace` label");
}

#[test]
fn the_pod_monitor_scrapes_every_worker_pod_in_every_namespace() {
    let monitor: PodMonitor = typed(find(everything(), "PodMonitor", "ferry-workers"));
    assert_eq!(monitor.spec.namespace_selector.any, Some(true));
    for role in [PodRole::Precheck, PodRole::Worker, PodRole::Release, PodRole::Compare] {
        assert!(selects(&monitor.spec.selector, &pods::labels("orders", role, 1)), "{role:?} pods");
    }
    let selector = monitor.spec.selector.match_labels.as_ref().unwrap();
    assert_eq!(selector.get(pods::LABEL_MANAGED_BY).map(String::as_str), Some(pods::MANAGER));
    let operator: Deployment = typed(find(everything(), "Deployment", "ferry-operator"));
    let operator_labels = operator.spec.unwrap().template.metadata.unwrap().labels.unwrap();
    assert!(!selects(&monitor.spec.selector, &operator_labels), "the operator's pods are not workers");
    let endpoint = &monitor.spec.pod_metrics_endpoints[0];
    assert_eq!(endpoint.port, "metrics");
    // A worker pod as the operator builds it, for the example job: selected, and its port named.
    let mut job = manifest::parse(&read("deploy/examples/postgres-sync.yaml"))
        .unwrap()
        .into_iter()
        .find_map(|m| match m {
            Manifest::SyncJob(j) => Some(j),
            _ => None,
        })
        .unwrap();
    job.metadata.namespace = Some("shop".into());
    job.metadata.uid = Some("0d6ad2c4-1f1b-4d8e-9d3c-5b8f6c2a7e10".into());
    let pod = pods::build(&job, PodRole::Worker, 1, "ghcr.io/ferry-dev/ferry:test").unwrap();
    assert!(selects(&monitor.spec.selector, pod.metadata.labels.as_ref().unwrap()));
    let ports = pod.spec.unwrap().containers[0].ports.clone().unwrap_or_default();
    assert!(
        ports.iter().any(|p| p.name.as_deref() == Some(endpoint.port.as_str()) && p.container_port == 9464),
        "worker pods expose the port {} (9464): {ports:?}",
        endpoint.port
    );
    let docs = read("docs/metrics.md");
    assert!(docs.contains("container port named `metrics`") && docs.contains("9464"));
    // The job's name becomes `name`, as on the operator's per-job series (the alerts use it).
    let name = endpoint.relabelings.as_ref().unwrap().iter().find(|r| r.target_label == "name").unwrap();
    let sanitized: String = pods::LABEL_JOB.chars().map(|c| if c.is_ascii_alphanumeric() { c } else { '_' }).collect();
    assert_eq!(name.source_labels, [format!("__meta_kubernetes_pod_label_{sanitized}")]);
}

// ---------------------------------------------------------------------------------------------
// Metrics, alerts and the dashboard

/// The metrics of docs/metrics.md: name → type.
fn documented_metrics() -> BTreeMap<String, String> {
    read("docs/metrics.md")
        .lines()
        .filter(|l| l.starts_with("| `ferry_"))
        .map(|l| {
            let cells: Vec<&str> = l.trim_matches('|').split('|').map(str::trim).collect();
            (cells[0].trim_matches('`').to_owned(), cells[1].to_owned())
        })
        .collect()
}

/// The alerts table of docs/metrics.md: name, metric names, `for`, severity.
fn documented_alerts() -> Vec<(String, BTreeSet<String>, Option<String>, String)> {
    let text = read("docs/metrics.md");
    let section = text.split("## Alerts").nth(1).expect("an Alerts section in docs/metrics.md");
    section
        .lines()
        .filter(|l| l.starts_with("| `Ferry"))
        .map(|l| {
            let cells: Vec<&str> = l.trim_matches('|').split('|').map(str::trim).collect();
            let (name, severity) = (cells[0].trim_matches('`'), cells[cells.len() - 1]);
            let expr = cells[1..cells.len() - 1].join("|");
            let tail = &expr[expr.rfind('`').unwrap() + 1..];
            let for_ = tail.trim().strip_prefix("for ").map(str::to_owned);
            (name.to_owned(), metric_names(&expr), for_, severity.to_owned())
        })
        .collect()
}

/// The `ferry_*` names in a PromQL expression.
fn metric_names(expr: &str) -> BTreeSet<String> {
    let mut names = BTreeSet::new();
    let bytes = expr.as_bytes();
    let mut i = 0;
    while let Some(at) = expr[i..].find("ferry_") {
        let start = i + at;
        let end = start + expr[start..].bytes().take_while(|b| b.is_ascii_alphanumeric() || *b == b'_').count();
        let word_start = start == 0 || !(bytes[start - 1].is_ascii_alphanumeric() || bytes[start - 1] == b'_');
        if word_start {
            names.insert(expr[start..end].to_owned());
        }
        i = end;
    }
    names
}

/// A name used in a query is documented: a metric of docs/metrics.md, or the `_bucket`, `_sum` or
/// `_count` series of a documented histogram.
fn assert_documented(name: &str, documented: &BTreeMap<String, String>, used_in: &str) {
    let histogram = ["_bucket", "_sum", "_count"]
        .iter()
        .filter_map(|suffix| name.strip_suffix(suffix))
        .any(|base| documented.get(base).is_some_and(|t| t == "histogram"));
    assert!(
        documented.contains_key(name) || histogram,
        "{used_in} uses {name}, which docs/metrics.md does not document"
    );
}

fn prometheus_rule() -> PrometheusRule {
    typed(find(everything(), "PrometheusRule", "ferry"))
}

fn rules() -> Vec<monitoring::Rule> {
    prometheus_rule().spec.groups.into_iter().flat_map(|g| g.rules).collect()
}

#[test]
fn the_alerts_are_the_documented_ones() {
    let documented = documented_metrics();
    let alerts = documented_alerts();
    let rules = rules();
    let names: Vec<&str> = rules.iter().map(|r| r.alert.as_str()).collect();
    let expected: Vec<&str> = alerts.iter().map(|a| a.0.as_str()).collect();
    assert_eq!(names, expected, "the PrometheusRule holds the alerts of docs/metrics.md, in order");
    for (rule, (name, metrics, for_, severity)) in rules.iter().zip(&alerts) {
        let used = metric_names(&rule.expr);
        for metric in &used {
            assert_documented(metric, &documented, name);
        }
        assert_eq!(&used, metrics, "{name} uses the metrics docs/metrics.md names");
        assert_eq!(&rule.for_, for_, "{name}: for");
        if let Some(f) = &rule.for_ {
            assert!(duration_seconds(f).is_some(), "{name}: for {f}");
        }
        assert_eq!(&rule.labels["severity"], severity, "{name}: severity");
        for key in ["summary", "description"] {
            let text = rule.annotations.get(key).unwrap_or_else(|| panic!("{name} has no {key}"));
            assert!(text.contains("{{ $labels.namespace }}"), "{name}'s {key} names the namespace");
            let subject = if name == "FerryOperatorReconcileErrors" { "controller" } else { "name" };
            assert!(text.contains(&format!("{{{{ $labels.{subject} }}}}")), "{name}'s {key} names the {subject}");
        }
    }
}

#[test]
fn the_alerts_pass_promtool_check_and_unit_tests() {
    let dir = tempfile::tempdir().unwrap();
    let groups = serde_json::to_value(&prometheus_rule().spec.groups).unwrap();
    let rules_file = dir.path().join("ferry-rules.yaml");
    std::fs::write(&rules_file, serde_yaml::to_string(&json!({ "groups": groups })).unwrap()).unwrap();
    let out = Command::new(promtool()).args(["check", "rules"]).arg(&rules_file).output().unwrap();
    assert!(
        out.status.success(),
        "promtool check rules:\n{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );

    // Every alert is shown firing and not firing.
    let tests_text = read("charts/ferry/tests/alerts-test.yaml");
    let tests: Value = serde_yaml::from_str(&tests_text).unwrap();
    assert_eq!(tests["rule_files"], json!(["ferry-rules.yaml"]));
    for rule in rules() {
        let cases: Vec<&Value> = tests["tests"]
            .as_array()
            .unwrap()
            .iter()
            .flat_map(|t| t["alert_rule_test"].as_array().unwrap())
            .filter(|c| c["alertname"] == rule.alert.as_str())
            .collect();
        let firing = |c: &&Value| c["exp_alerts"].as_array().is_some_and(|a| !a.is_empty());
        assert!(cases.iter().any(firing), "no test where {} fires", rule.alert);
        assert!(cases.iter().any(|c| !firing(c)), "no test where {} does not fire", rule.alert);
    }
    let test_file = dir.path().join("alerts-test.yaml");
    std::fs::write(&test_file, tests_text).unwrap();
    let out =
        Command::new(promtool()).args(["test", "rules"]).arg(&test_file).current_dir(dir.path()).output().unwrap();
    assert!(
        out.status.success(),
        "promtool test rules:\n{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
}

/// The dashboard's queries: (panel title, expression), Grafana variables left in.
fn dashboard_queries(dashboard: &Value) -> Vec<(String, String)> {
    let mut queries = Vec::new();
    for panel in dashboard["panels"].as_array().unwrap() {
        for target in panel["targets"].as_array().into_iter().flatten() {
            queries.push((panel["title"].as_str().unwrap().to_owned(), target["expr"].as_str().unwrap().to_owned()));
        }
    }
    queries
}

#[test]
fn the_dashboard_config_map_carries_a_dashboard_of_documented_metrics() {
    let file = read("charts/ferry/dashboards/ferry.json");
    let config_map: ConfigMap = typed(find(everything(), "ConfigMap", "ferry-dashboard"));
    assert_eq!(config_map.metadata.namespace.as_deref(), Some(NAMESPACE));
    assert_eq!(config_map.metadata.labels.as_ref().unwrap()["grafana_dashboard"], "1");
    let data = config_map.data.unwrap();
    assert_eq!(data.keys().collect::<Vec<_>>(), ["ferry.json"]);
    assert_eq!(data["ferry.json"], file.trim_end(), "the ConfigMap holds dashboards/ferry.json as is");

    let dashboard: Value = serde_json::from_str(&file).unwrap();
    assert_eq!(dashboard["uid"], "ferry-overview");
    let variables: Vec<&str> =
        dashboard["templating"]["list"].as_array().unwrap().iter().map(|v| v["name"].as_str().unwrap()).collect();
    assert_eq!(variables, ["datasource", "namespace", "job"]);
    let mut ids = BTreeSet::new();
    for panel in dashboard["panels"].as_array().unwrap() {
        assert!(ids.insert(panel["id"].as_u64().unwrap()), "panel ids are unique");
        let grid = &panel["gridPos"];
        assert!(grid["x"].as_u64().unwrap() + grid["w"].as_u64().unwrap() <= 24, "{}", panel["title"]);
        if panel["type"] != "row" {
            assert_eq!(panel["datasource"]["uid"], "${datasource}", "{}", panel["title"]);
            assert!(panel["targets"].as_array().is_some_and(|t| !t.is_empty()), "{}", panel["title"]);
        }
    }

    let documented = documented_metrics();
    let mut used = BTreeSet::new();
    let mut texts: Vec<(String, String)> = dashboard_queries(&dashboard);
    for v in dashboard["templating"]["list"].as_array().unwrap() {
        if let Some(q) = v["definition"].as_str() {
            texts.push((format!("variable {}", v["name"]), q.to_owned()));
        }
    }
    for (title, expr) in &texts {
        for name in metric_names(expr) {
            assert_documented(&name, &documented, &format!("dashboard panel {title:?}"));
            let base = ["_bucket", "_sum", "_count"].iter().find_map(|s| name.strip_suffix(s)).unwrap_or(&name);
            used.insert(base.to_owned());
        }
    }
    for wanted in [
        "ferry_syncjobs",
        "ferry_syncjob_lag_seconds",
        "ferry_syncjob_lag_threshold_seconds",
        "ferry_syncjob_progress_ratio",
        "ferry_syncjob_rows_transferred",
        "ferry_syncjob_bytes_transferred",
        "ferry_syncjob_checkpoint_age_seconds",
        "ferry_reconcile_runs_total",
        "ferry_reconcile_failures_total",
        "ferry_reconcile_duration_seconds",
        "ferry_worker_apply_batch_seconds",
        "ferry_worker_slot_retained_wal_bytes",
        "ferry_syncjob_slot_retained_wal_bytes",
        "ferry_syncjob_slot_inactive_seconds",
        "ferry_syncjob_slot_retention_seconds",
        "ferry_comparetask_consistent",
    ] {
        assert!(used.contains(wanted), "the dashboard shows {wanted}");
    }
}

#[test]
fn the_dashboard_queries_are_valid_promql() {
    // Each query becomes a recording rule, with Grafana's variables replaced, for promtool.
    let dashboard: Value = serde_json::from_str(&read("charts/ferry/dashboards/ferry.json")).unwrap();
    let rules: Vec<Value> = dashboard_queries(&dashboard)
        .into_iter()
        .enumerate()
        .map(|(i, (_, expr))| {
            let expr = expr.replace("$__rate_interval", "2m").replace("$namespace", ".*").replace("$job", ".*");
            json!({"record": format!("ferry_dashboard:query_{i}"), "expr": expr})
        })
        .collect();
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("dashboard-queries.yaml");
    let groups = json!({"groups": [{"name": "dashboard", "rules": rules}]});
    std::fs::write(&file, serde_yaml::to_string(&groups).unwrap()).unwrap();
    let out = Command::new(promtool()).args(["check", "rules"]).arg(&file).output().unwrap();
    assert!(
        out.status.success(),
        "dashboard queries:\n{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
}

// ---------------------------------------------------------------------------------------------
// Generated files, values, chart metadata, image

#[test]
fn the_charts_crds_are_the_generated_ones() {
    let list = |dir: &str| -> BTreeMap<String, String> {
        std::fs::read_dir(path(dir))
            .unwrap()
            .map(|e| e.unwrap().path())
            .filter(|p| p.extension().is_some_and(|x| x == "yaml"))
            .map(|p| (p.file_name().unwrap().to_string_lossy().into_owned(), std::fs::read_to_string(&p).unwrap()))
            .collect()
    };
    let generated = list("crds");
    let chart = list("charts/ferry/crds");
    assert_eq!(
        chart.keys().collect::<Vec<_>>(),
        generated.keys().collect::<Vec<_>>(),
        "charts/ferry/crds holds the files of crds/: run `make chart`"
    );
    for (file, text) in &generated {
        assert!(chart[file] == *text, "charts/ferry/crds/{file} differs from crds/{file}: run `make chart`");
    }
}

#[test]
fn deploy_install_yaml_is_a_fresh_render() {
    let text = read("deploy/install.yaml");
    let split = text.find("\n---\n").expect("the Namespace, then the chart's objects") + 1;
    let (head, rest) = text.split_at(split);
    let namespace = documents(head);
    assert_eq!(namespace.len(), 1);
    let namespace: Namespace = typed(&namespace[0]);
    assert_eq!(namespace.metadata.name.as_deref(), Some(NAMESPACE));
    let labels = namespace.metadata.labels.unwrap();
    assert_eq!(labels["pod-security.kubernetes.io/enforce"], "restricted", "the operator's pods are restricted");
    let fresh = template(&["--include-crds"]).unwrap();
    assert!(rest == fresh, "deploy/install.yaml is stale: run `make chart`");
    documents(rest).iter().for_each(check_object);

    let kustomization: Value = serde_yaml::from_str(&read("deploy/kustomization.yaml")).unwrap();
    assert_eq!(kustomization["kind"], "Kustomization");
    assert_eq!(kustomization["resources"], json!(["install.yaml"]));
    assert!(kustomization.get("namespace").is_none(), "the operator's namespace is ferry-system throughout");
}

/// Every key of values.yaml has a schema, and objects with fixed keys reject others.
fn check_schema(values: &Value, schema: &Value, at: &str) {
    let Some(values) = values.as_object() else { return };
    let properties = schema["properties"].as_object();
    // A map of free keys (labels, annotations) or a Kubernetes object passed through (affinity).
    let free_map = schema["additionalProperties"].is_object() || properties.is_none();
    if properties.is_some() {
        assert_eq!(schema["additionalProperties"], false, "{at}: unknown keys must be rejected");
    }
    for (key, value) in values {
        match properties.and_then(|p| p.get(key)) {
            Some(s) => check_schema(value, s, &format!("{at}.{key}")),
            None => assert!(free_map, "values.schema.json does not describe {at}.{key}"),
        }
    }
}

#[test]
fn the_values_schema_covers_every_value_and_rejects_unknown_ones() {
    let values: Value = serde_yaml::from_str(&read("charts/ferry/values.yaml")).unwrap();
    let schema: Value = serde_json::from_str(&read("charts/ferry/values.schema.json")).unwrap();
    assert_eq!(schema["$schema"], "http://json-schema.org/draft-07/schema#");
    check_schema(&values, &schema, "");
    let everything: Value = serde_yaml::from_str(EVERYTHING).unwrap();
    check_schema(&everything, &schema, "");

    for (set, complaint) in [
        ("replicaCont=3", "replicaCont"),
        ("serviceMonitor.interval=soon", "interval"),
        ("image.pullPolicy=Sometimes", "pullPolicy"),
        ("workers.namespaces={shop}", "namespaces"),
    ] {
        let err = template(&["--set", set]).expect_err(set);
        assert!(err.contains(complaint), "--set {set}: {err}");
    }
    for extra in [&[][..], &["--values", everything_values().to_str().unwrap()][..]] {
        let mut args = vec!["lint", "--strict", CHART];
        args.extend_from_slice(extra);
        let out = run_helm(&args);
        assert!(out.status.success(), "helm lint {extra:?}:\n{}", String::from_utf8_lossy(&out.stdout));
    }
}

#[test]
fn the_chart_version_matches_the_crate_and_notes_explain_a_first_job() {
    let chart: Value = serde_yaml::from_str(&read("charts/ferry/Chart.yaml")).unwrap();
    assert_eq!(chart["apiVersion"], "v2");
    assert_eq!(chart["name"], "ferry");
    assert_eq!(chart["version"], "0.1.0");
    assert_eq!(chart["appVersion"], env!("CARGO_PKG_VERSION"), "the image tag is the crate's version");

    let out = run_helm(&["install", "ferry", CHART, "--namespace", NAMESPACE, "--dry-run=client"]);
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let text = String::from_utf8(out.stdout).unwrap();
    let notes = &text[text.find("NOTES:").expect("NOTES")..];
    for wanted in [
        "create secret generic pg-creds",
        "deploy/examples/postgres-sync.yaml",
        "get syncjobs -w",
        "kubectl apply -f charts/ferry/crds/",
    ] {
        assert!(notes.contains(wanted), "NOTES lack {wanted:?}:\n{notes}");
    }
    assert!(path("deploy/examples/postgres-sync.yaml").is_file());
}

#[test]
fn the_dockerfile_builds_ferry_onto_distroless_as_nonroot() {
    let text = read("Dockerfile");
    // Instructions, comments dropped and continuation lines joined.
    let mut instructions: Vec<String> = Vec::new();
    let mut pending = String::new();
    for line in text.lines().map(str::trim).filter(|l| !l.starts_with('#') && !l.is_empty()) {
        match line.strip_suffix('\\') {
            Some(part) => pending.push_str(part),
            None => {
                pending.push_str(line);
                instructions.push(std::mem::take(&mut pending));
            }
        }
    }
    let froms: Vec<usize> = (0..instructions.len()).filter(|&i| instructions[i].starts_with("FROM ")).collect();
    assert_eq!(froms.len(), 2, "a builder and a runtime stage");
    assert_eq!(instructions[froms[0]], "FROM rust:1-bookworm AS builder");
    assert_eq!(instructions[froms[1]], "FROM gcr.io/distroless/cc-debian12:nonroot");
    let (builder, runtime) = (&instructions[froms[0]..froms[1]], &instructions[froms[1]..]);

    let position = |stage: &[String], f: &dyn Fn(&str) -> bool| stage.iter().position(|i| f(i));
    let manifest = position(builder, &|i| i.starts_with("COPY Cargo.toml Cargo.lock")).expect("the manifest first");
    let sources = position(builder, &|i| i.starts_with("COPY src")).expect("then the sources");
    let builds: Vec<usize> =
        (0..builder.len()).filter(|&i| builder[i].contains("cargo build --release --locked --bin ferry")).collect();
    assert!(
        builds.len() == 2 && manifest < builds[0] && builds[0] < sources && sources < builds[1],
        "a dependency layer built before the sources are copied"
    );

    let copies: Vec<&String> = runtime.iter().filter(|i| i.starts_with("COPY ")).collect();
    assert_eq!(copies.len(), 1, "only the binary");
    assert!(copies[0].starts_with("COPY --from=builder ") && copies[0].ends_with(" /usr/local/bin/ferry"));
    assert!(runtime.iter().any(|i| i == "USER 65532:65532"));
    let entrypoint = runtime.iter().find_map(|i| i.strip_prefix("ENTRYPOINT ")).expect("an ENTRYPOINT");
    let entrypoint: Vec<String> = serde_json::from_str(entrypoint).expect("exec form");
    assert_eq!(entrypoint, ["/usr/local/bin/ferry"]);
    assert!(!runtime.iter().any(|i| i.starts_with("RUN ")), "distroless has no shell");
    let label = runtime.iter().find(|i| i.starts_with("LABEL ")).expect("OCI labels");
    for key in ["title", "description", "version", "licenses"] {
        assert!(label.contains(&format!("org.opencontainers.image.{key}=")), "label {key}");
    }

    let dockerignore = read(".dockerignore");
    let ignored: BTreeSet<&str> =
        dockerignore.lines().map(str::trim).filter(|l| !l.is_empty() && !l.starts_with('#')).collect();
    for entry in ["target", ".git", ".tools"] {
        assert!(ignored.contains(entry), ".dockerignore lacks {entry}");
    }
    for needed in ["src", "Cargo.toml", "Cargo.lock"] {
        assert!(!ignored.contains(needed), ".dockerignore must keep {needed}");
    }
}
