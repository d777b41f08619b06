//! The cluster side of the end-to-end tests, set up once per test process: the CRDs, the RBAC of
//! deploy/rbac.yaml, `ferry operator` running as its own ServiceAccount (with leader election,
//! over TLS with a bound token — never as cluster admin), and the pod runner that plays the node
//! for Ferry's pods.
//!
//! The operator and the runner live on a thread of their own with its own runtime, so they
//! outlive each test's runtime; the operator process dies with the test process.

use std::collections::HashMap;
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, OnceLock};
use std::time::{Duration, Instant};

use k8s_openapi::api::authentication::v1::{TokenRequest, TokenRequestSpec};
use k8s_openapi::api::core::v1::{Namespace, Secret, ServiceAccount};
use k8s_openapi::api::rbac::v1::{ClusterRole, ClusterRoleBinding, Role, RoleBinding};
use k8s_openapi::apiextensions_apiserver::pkg::apis::apiextensions::v1::CustomResourceDefinition;
use kube::api::{Api, DeleteParams, Patch, PatchParams, PostParams};
use kube::config::{KubeConfigOptions, Kubeconfig};
use kube::{Client, Config, Resource};
use serde::Deserialize;
use serde_json::json;

/// Field manager of what the harness applies.
const MANAGER: &str = "ferry-e2e";
/// The operator's namespace (its ServiceAccount and lease live there).
pub const OPERATOR_NAMESPACE: &str = "ferry-system";
/// Node selector every test job's pods carry: no node of a full cluster has it, so the pods stay
/// unscheduled and the pod runner runs them, on a control-plane-only cluster and a full one alike.
pub const RUNNER_SELECTOR: (&str, &str) = ("ferry.dev/e2e", "pod-runner");

/// Why the e2e tests are ignored by default.
pub const NEEDS_CLUSTER: &str = "needs a cluster: FERRY_E2E_KUBECONFIG=... make e2e";

/// The API server as the harness reaches it: address and trust, for the kubeconfigs it writes
/// for the operator and the pods.
#[derive(Clone, Debug)]
pub struct ClusterAccess {
    /// `https://host:port`.
    pub server: String,
    /// Base64 PEM of the cluster CA (`certificate-authority-data`).
    pub ca_data: String,
}

impl ClusterAccess {
    /// A kubeconfig for `token`, written to `path`.
    pub fn write_kubeconfig(&self, path: &Path, token: &str) {
        let text = format!(
            "apiVersion: v1\nkind: Config\nclusters:\n- name: e2e\n  cluster:\n    server: {}\n    \
             certificate-authority-data: {}\nusers:\n- name: sa\n  user:\n    token: {token}\ncontexts:\n- name: e2e\n  \
             context: {{cluster: e2e, user: sa}}\ncurrent-context: e2e\n",
            self.server, self.ca_data
        );
        std::fs::write(path, text).expect("writing a kubeconfig");
        let _ = std::fs::set_permissions(path, std::os::unix::fs::PermissionsExt::from_mode(0o600));
    }
}

/// Processes the runner started, by `namespace/pod`: the tests kill them as a node would lose a
/// container.
pub type Pids = Arc<Mutex<HashMap<String, u32>>>;

/// What the test process shares across tests.
pub struct Harness {
    /// Where the operator's and the pods' logs go.
    pub logs: PathBuf,
    /// The runner's processes.
    pub pids: Pids,
    /// Where the operator serves `/metrics`.
    pub operator_metrics: std::net::SocketAddr,
}

/// The kubeconfig the tests were given.
pub fn kubeconfig_path() -> String {
    std::env::var("FERRY_E2E_KUBECONFIG")
        .unwrap_or_else(|_| panic!("FERRY_E2E_KUBECONFIG is not set ({NEEDS_CLUSTER})"))
}

/// An admin client for this test's runtime.
pub async fn admin() -> Client {
    let kubeconfig = Kubeconfig::read_from(kubeconfig_path()).expect("a readable kubeconfig");
    let config =
        Config::from_custom_kubeconfig(kubeconfig, &KubeConfigOptions::default()).await.expect("a usable kubeconfig");
    Client::try_from(config).expect("a client")
}

/// How the tests' kubeconfig reaches the API server.
pub fn access() -> ClusterAccess {
    let kubeconfig = Kubeconfig::read_from(kubeconfig_path()).expect("a readable kubeconfig");
    let context_name = kubeconfig.current_context.clone().unwrap_or_default();
    let cluster_name = kubeconfig
        .contexts
        .iter()
        .find(|c| c.name == context_name)
        .and_then(|c| c.context.as_ref())
        .map(|c| c.cluster.clone())
        .unwrap_or_default();
    let cluster = kubeconfig
        .clusters
        .iter()
        .find(|c| c.name == cluster_name)
        .or(kubeconfig.clusters.first())
        .and_then(|c| c.cluster.clone())
        .expect("a cluster in the kubeconfig");
    let ca_data = match (cluster.certificate_authority_data, cluster.certificate_authority) {
        (Some(data), _) => data,
        (None, Some(file)) => base64(&std::fs::read(file).expect("the cluster CA file")),
        (None, None) => panic!("the kubeconfig's cluster has no certificate authority"),
    };
    ClusterAccess { server: cluster.server.expect("a server"), ca_data }
}

/// Base64, as k8s-openapi serializes bytes (and kubeconfigs carry `*-data`).
pub fn base64(bytes: &[u8]) -> String {
    let value = serde_json::to_value(k8s_openapi::ByteString(bytes.to_vec())).expect("bytes serialize");
    value.as_str().unwrap_or_default().to_owned()
}

/// A bound token of the ServiceAccount `namespace/name`, as the kubelet mounts into a pod.
pub async fn token(client: &Client, namespace: &str, name: &str) -> Result<String, kube::Error> {
    let api: Api<ServiceAccount> = Api::namespaced(client.clone(), namespace);
    let request = TokenRequest {
        spec: TokenRequestSpec { audiences: vec![], expiration_seconds: Some(6 * 3600), ..Default::default() },
        ..Default::default()
    };
    let answered: TokenRequest = api.create_subresource("token", name, &PostParams::default(), &request).await?;
    Ok(answered.status.map(|s| s.token).unwrap_or_default())
}

async fn apply<K>(api: &Api<K>, object: &K)
where
    K: Resource + Clone + serde::Serialize + serde::de::DeserializeOwned + std::fmt::Debug,
{
    let name = object.meta().name.clone().expect("a name");
    let mut value = serde_json::to_value(object).expect("serializable");
    value["metadata"].as_object_mut().map(|m| m.remove("resourceVersion"));
    api.patch(&name, &PatchParams::apply(MANAGER).force(), &Patch::Apply(&value))
        .await
        .unwrap_or_else(|e| panic!("applying {name}: {e}"));
}

/// CRDs, the operator's namespace and RBAC (deploy/rbac.yaml as it ships), its token. Applying
/// it as cluster admin is the admin's step; the operator's own creation of workers' Roles then
/// passes the API server's escalation check only with what that file grants.
async fn cluster_wide(client: &Client) -> String {
    let crds: Api<CustomResourceDefinition> = Api::all(client.clone());
    for (_, crd) in ferry::api::crd::all() {
        apply(&crds, &crd).await;
    }
    for (_, crd) in ferry::api::crd::all() {
        let name = crd.metadata.name.clone().unwrap_or_default();
        wait_for(&format!("CRD {name} established"), Duration::from_secs(60), async || {
            crds.get(&name)
                .await
                .ok()
                .and_then(|c| c.status)
                .and_then(|s| s.conditions)
                .is_some_and(|c| c.iter().any(|c| c.type_ == "Established" && c.status == "True"))
        })
        .await;
    }
    let namespaces: Api<Namespace> = Api::all(client.clone());
    let ns: Namespace = serde_json::from_value(json!({"metadata": {"name": OPERATOR_NAMESPACE}})).unwrap();
    apply(&namespaces, &ns).await;

    let text = std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/deploy/rbac.yaml")).unwrap();
    for doc in serde_yaml::Deserializer::from_str(&text) {
        let doc = serde_json::Value::deserialize(doc).unwrap();
        let namespace = doc["metadata"]["namespace"].as_str().unwrap_or("");
        assert!(namespace.is_empty() || namespace == OPERATOR_NAMESPACE, "deploy/rbac.yaml is the operator's only");
        match doc["kind"].as_str().unwrap_or("") {
            "ServiceAccount" => {
                apply(
                    &Api::namespaced(client.clone(), namespace),
                    &serde_json::from_value::<ServiceAccount>(doc).unwrap(),
                )
                .await
            }
            "ClusterRole" => {
                apply(&Api::all(client.clone()), &serde_json::from_value::<ClusterRole>(doc).unwrap()).await
            }
            "ClusterRoleBinding" => {
                apply(&Api::all(client.clone()), &serde_json::from_value::<ClusterRoleBinding>(doc).unwrap()).await
            }
            "Role" => {
                apply(&Api::namespaced(client.clone(), namespace), &serde_json::from_value::<Role>(doc).unwrap()).await
            }
            "RoleBinding" => {
                apply(&Api::namespaced(client.clone(), namespace), &serde_json::from_value::<RoleBinding>(doc).unwrap())
                    .await
            }
            kind => panic!("deploy/rbac.yaml holds an unexpected {kind}"),
        }
    }
    token(client, OPERATOR_NAMESPACE, "ferry-operator").await.expect("a token of the operator's ServiceAccount")
}

/// Starts `command` so that it dies with the test process (the thread that starts it lives as
/// long as the process).
pub fn dies_with_us(command: &mut std::process::Command) -> &mut std::process::Command {
    // SAFETY: prctl is async-signal-safe; nothing else runs between fork and exec.
    unsafe {
        command.pre_exec(|| {
            libc::prctl(libc::PR_SET_PDEATHSIG, libc::SIGKILL);
            Ok(())
        })
    }
}

/// The harness, set up on first use: cluster-wide objects, the operator, the pod runner.
pub fn harness() -> &'static Harness {
    static HARNESS: OnceLock<Harness> = OnceLock::new();
    HARNESS.get_or_init(|| {
        let logs = std::env::var_os("FERRY_E2E_LOGS")
            .map(PathBuf::from)
            .unwrap_or_else(|| std::env::temp_dir().join(format!("ferry-e2e-{}", std::process::id())));
        std::fs::create_dir_all(&logs).expect("a log directory");
        eprintln!("e2e: logs in {}", logs.display());
        let pids: Pids = Arc::default();
        let access = access();
        let operator_metrics = std::net::TcpListener::bind("127.0.0.1:0")
            .and_then(|l| l.local_addr())
            .expect("a free port for the operator's metrics");
        let (ready_tx, ready_rx) = std::sync::mpsc::channel();
        let (thread_logs, thread_pids, thread_access) = (logs.clone(), Arc::clone(&pids), access);
        std::thread::spawn(move || {
            let runtime = tokio::runtime::Builder::new_multi_thread()
                .worker_threads(2)
                .enable_all()
                .build()
                .expect("the harness runtime");
            runtime.block_on(async move {
                let client = admin().await;
                let token = cluster_wide(&client).await;
                let config = thread_logs.join("operator.kubeconfig");
                thread_access.write_kubeconfig(&config, &token);
                let log = std::fs::File::create(thread_logs.join("operator.log")).expect("the operator's log");
                let mut operator = std::process::Command::new(env!("CARGO_BIN_EXE_ferry"));
                operator
                    .args(["operator", "--listen", &operator_metrics.to_string(), "--namespace", OPERATOR_NAMESPACE])
                    .args(["--identity", &format!("e2e-{}", std::process::id()), "--image", "ferry:e2e"])
                    // The test jobs' pods select the runner's node label; nothing else is allowed.
                    .args(["--allowed-node-selector-keys", RUNNER_SELECTOR.0])
                    .env("KUBECONFIG", &config)
                    .env_remove("KUBERNETES_SERVICE_HOST")
                    .env("RUST_LOG", "info,kube=warn")
                    .stdout(log.try_clone().expect("log"))
                    .stderr(log);
                let child = dies_with_us(&mut operator).spawn().expect("ferry operator starts");
                eprintln!(
                    "e2e: ferry operator (pid {}) runs as ServiceAccount {OPERATOR_NAMESPACE}/ferry-operator",
                    child.id()
                );
                let _ = ready_tx.send(());
                super::runner::run(client, thread_access, thread_logs, thread_pids).await;
                drop(child);
            });
        });
        ready_rx.recv_timeout(Duration::from_secs(180)).expect("the harness came up");
        Harness { logs, pids, operator_metrics }
    })
}

/// Polls `check` every second until it holds; fails the test after `within`.
pub async fn wait_for(what: &str, within: Duration, mut check: impl AsyncFnMut() -> bool) {
    let deadline = Instant::now() + within;
    while !check().await {
        assert!(Instant::now() < deadline, "timed out waiting for {what}");
        tokio::time::sleep(Duration::from_secs(1)).await;
    }
}

/// A namespace of the test's own (Pod Security `restricted` enforced) with the Secret `creds`
/// holding `passwords`. Nothing else: the operator creates each job's worker ServiceAccount and
/// Role.
pub async fn namespace(client: &Client, test: &str, passwords: &[(&str, &str)]) -> String {
    let ns = format!("e2e-{test}-{}", std::process::id());
    let namespaces: Api<Namespace> = Api::all(client.clone());
    let _ = namespaces.delete(&ns, &DeleteParams::default()).await;
    wait_for(&format!("namespace {ns} gone"), Duration::from_secs(120), async || {
        matches!(namespaces.get_opt(&ns).await, Ok(None))
    })
    .await;
    // Enforced restricted Pod Security: Ferry's pods must pass it, as in the namespace the chart
    // creates for the operator.
    let object: Namespace = serde_json::from_value(json!({"metadata": {"name": ns,
        "labels": {"pod-security.kubernetes.io/enforce": "restricted"}}}))
    .unwrap();
    apply(&namespaces, &object).await;
    let data: serde_json::Map<String, serde_json::Value> =
        passwords.iter().map(|(k, v)| ((*k).to_owned(), json!(v))).collect();
    let secret: Secret =
        serde_json::from_value(json!({"metadata": {"name": "creds", "namespace": ns}, "stringData": data})).unwrap();
    apply(&Api::namespaced(client.clone(), &ns), &secret).await;
    ns
}

/// Deletes the test's namespace (the garbage collector and the namespace controller, where the
/// cluster runs them, take the rest).
pub async fn cleanup(client: &Client, ns: &str) {
    let _ = Api::<Namespace>::all(client.clone()).delete(ns, &DeleteParams::default()).await;
}
