//! End to end against a real cluster: the operator (in this process) walks a PostgreSQL job
//! from `kubectl apply` to `INCRE_TRANSFER_STARTED` and back out through deletion, with worker
//! pods running in the cluster.
//!
//! Runs only when `FERRY_E2E_KUBECONFIG` names a kubeconfig; otherwise it says it was skipped.
//! The cluster must hold the CRDs (`ferry crd | kubectl apply -f -`), pull `FERRY_E2E_IMAGE`
//! (Ferry's image, for the worker pods; default `ghcr.io/ferry-dev/ferry:<version>`) and
//! `FERRY_E2E_POSTGRES_IMAGE` (default `postgres:15`), and grant the test's credentials what
//! deploy/rbac.yaml grants the operator plus namespaces, services, configmaps and secrets (it
//! creates a namespace of its own and deletes it at the end).

use std::time::{Duration, Instant};

use ferry::api::{SyncJob, SyncJobPhase};
use k8s_openapi::api::core::v1::{ConfigMap, Namespace, Pod, Secret, Service, ServiceAccount};
use k8s_openapi::api::rbac::v1::RoleBinding;
use kube::api::{Api, DeleteParams, PostParams};
use kube::{Client, Config};
use serde_json::json;

fn skip_reason() -> Option<&'static str> {
    std::env::var_os("FERRY_E2E_KUBECONFIG").is_none().then_some("FERRY_E2E_KUBECONFIG is not set")
}

async fn client() -> Client {
    let path = std::env::var("FERRY_E2E_KUBECONFIG").unwrap();
    let kubeconfig = kube::config::Kubeconfig::read_from(&path).expect("a readable kubeconfig");
    let config = Config::from_custom_kubeconfig(kubeconfig, &Default::default()).await.expect("a usable kubeconfig");
    Client::try_from(config).expect("a client")
}

async fn create<K>(api: &Api<K>, value: serde_json::Value)
where
    K: kube::Resource + Clone + serde::de::DeserializeOwned + serde::Serialize + std::fmt::Debug,
{
    let object: K = serde_json::from_value(value).expect("a valid object");
    api.create(&PostParams::default(), &object).await.expect("created");
}

/// A PostgreSQL pod and service `name`, logical decoding on, seeded from `init` SQL.
async fn postgres(client: &Client, ns: &str, name: &str, init: &str) {
    let image = std::env::var("FERRY_E2E_POSTGRES_IMAGE").unwrap_or_else(|_| "postgres:15".into());
    create(
        &Api::<ConfigMap>::namespaced(client.clone(), ns),
        json!({"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": format!("{name}-init")},
               "data": {"init.sql": init}}),
    )
    .await;
    create(
        &Api::<Pod>::namespaced(client.clone(), ns),
        json!({"apiVersion": "v1", "kind": "Pod", "metadata": {"name": name, "labels": {"e2e": name}},
               "spec": {"containers": [{"name": "postgres", "image": image,
                   "args": ["-c", "wal_level=logical"],
                   "env": [{"name": "POSTGRES_PASSWORD", "value": "e2e-only"}, {"name": "POSTGRES_DB", "value": "shop"}],
                   "ports": [{"containerPort": 5432}],
                   "readinessProbe": {"exec": {"command": ["pg_isready", "-U", "postgres", "-d", "shop"]}},
                   "volumeMounts": [{"name": "init", "mountPath": "/docker-entrypoint-initdb.d"}]}],
                   "volumes": [{"name": "init", "configMap": {"name": format!("{name}-init")}}]}}),
    )
    .await;
    create(
        &Api::<Service>::namespaced(client.clone(), ns),
        json!({"apiVersion": "v1", "kind": "Service", "metadata": {"name": name},
               "spec": {"selector": {"e2e": name}, "ports": [{"port": 5432}]}}),
    )
    .await;
}

async fn wait_for(what: &str, within: Duration, mut check: impl AsyncFnMut() -> bool) {
    let deadline = Instant::now() + within;
    while !check().await {
        assert!(Instant::now() < deadline, "timed out waiting for {what}");
        tokio::time::sleep(Duration::from_secs(2)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_postgres_job_goes_from_apply_to_streaming_and_out_through_deletion() {
    if let Some(reason) = skip_reason() {
        // Straight to stderr, past the test harness's capture, so every run says so.
        use std::io::Write;
        let _ = writeln!(std::io::stderr(), "e2e test SKIPPED: {reason} (set it to a kubeconfig to run it)");
        return;
    }
    let client = client().await;
    let ns = format!("ferry-e2e-{}", std::process::id());
    create(
        &Api::<Namespace>::all(client.clone()),
        json!({"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": ns}}),
    )
    .await;
    create(
        &Api::<ServiceAccount>::namespaced(client.clone(), &ns),
        json!({"apiVersion": "v1", "kind": "ServiceAccount", "metadata": {"name": "ferry-worker"}}),
    )
    .await;
    create(
        &Api::<RoleBinding>::namespaced(client.clone(), &ns),
        json!({"apiVersion": "rbac.authorization.k8s.io/v1", "kind": "RoleBinding", "metadata": {"name": "ferry-worker"},
               "roleRef": {"apiGroup": "rbac.authorization.k8s.io", "kind": "ClusterRole", "name": "ferry-worker"},
               "subjects": [{"kind": "ServiceAccount", "name": "ferry-worker", "namespace": ns}]}),
    )
    .await;
    postgres(&client, &ns, "source", "CREATE TABLE orders (id int PRIMARY KEY, note text); INSERT INTO orders SELECT g, 'n' || g FROM generate_series(1, 1000) g;").await;
    postgres(&client, &ns, "target", "SELECT 1;").await;
    create(
        &Api::<Secret>::namespaced(client.clone(), &ns),
        json!({"apiVersion": "v1", "kind": "Secret", "metadata": {"name": "creds"}, "stringData": {"password": "e2e-only"}}),
    )
    .await;
    let pods: Api<Pod> = Api::namespaced(client.clone(), &ns);
    wait_for("the databases", Duration::from_secs(300), async || {
        let ready = |p: &Pod| {
            p.status
                .as_ref()
                .and_then(|s| s.conditions.as_ref())
                .is_some_and(|c| c.iter().any(|c| c.type_ == "Ready" && c.status == "True"))
        };
        matches!((pods.get("source").await, pods.get("target").await), (Ok(a), Ok(b)) if ready(&a) && ready(&b))
    })
    .await;

    // The operator, in this process, with the cluster's worker image.
    // SAFETY: set before the operator's runtime threads read the environment.
    unsafe { std::env::set_var("KUBECONFIG", std::env::var("FERRY_E2E_KUBECONFIG").unwrap()) };
    let image = std::env::var("FERRY_E2E_IMAGE")
        .unwrap_or_else(|_| concat!("ghcr.io/ferry-dev/ferry:", env!("CARGO_PKG_VERSION")).to_owned());
    let operator = tokio::spawn(ferry::operator::run(ferry::operator::Options {
        listen: "127.0.0.1:0".parse().unwrap(),
        leader_election: false,
        namespace: ns.clone(),
        identity: "e2e".into(),
        image,
    }));

    let endpoint = |host: &str| {
        json!({"engine": "postgresql", "host": host, "port": 5432, "database": "shop", "user": "postgres",
               "passwordSecretRef": {"name": "creds", "key": "password"}})
    };
    let jobs: Api<SyncJob> = Api::namespaced(client.clone(), &ns);
    create(
        &jobs,
        json!({"apiVersion": "ferry.dev/v1alpha1", "kind": "SyncJob", "metadata": {"name": "orders"},
               "spec": {"taskType": "FULL_INCR_TRANS", "source": endpoint("source"), "target": endpoint("target"),
                        "objects": {"scope": "table", "databases": [{"name": "shop",
                            "schemas": [{"name": "public", "tables": [{"name": "orders"}]}]}]}}}),
    )
    .await;
    wait_for("INCRE_TRANSFER_STARTED", Duration::from_secs(600), async || {
        let job = jobs.get("orders").await.ok();
        let phase = job.as_ref().and_then(|j| j.status.as_ref()).and_then(|s| s.phase);
        if let Some(p) = phase {
            assert!(!p.is_failed(), "the job failed: {:?}", job.and_then(|j| j.status).and_then(|s| s.last_error));
        }
        phase == Some(SyncJobPhase::IncreTransferStarted)
    })
    .await;

    jobs.delete("orders", &DeleteParams::default()).await.expect("deleted");
    wait_for("the release and the finalizer", Duration::from_secs(300), async || {
        matches!(jobs.get_opt("orders").await, Ok(None))
    })
    .await;
    operator.abort();
    let _ = Api::<Namespace>::all(client).delete(&ns, &DeleteParams::default()).await;
}
