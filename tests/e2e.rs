//! End to end against a real cluster: the operator (in this process) walks a PostgreSQL job
//! from `kubectl apply` to `INCRE_TRANSFER_STARTED` and back out through deletion, and a
//! BatchJob of three jobs rolled out two at a time until all three stream, with worker pods
//! running in the cluster.
//!
//! Runs only when `FERRY_E2E_KUBECONFIG` names a kubeconfig; otherwise it says it was skipped.
//! The cluster must hold the CRDs (`ferry crd | kubectl apply -f -`), pull `FERRY_E2E_IMAGE`
//! (Ferry's image, for the worker pods; default `ghcr.io/ferry-dev/ferry:<version>`) and
//! `FERRY_E2E_POSTGRES_IMAGE` (default `postgres:15`), and grant the test's credentials what
//! deploy/rbac.yaml grants the operator plus namespaces, services, configmaps and secrets (it
//! creates a namespace of its own and deletes it at the end).

use std::time::{Duration, Instant};

use ferry::api::{BatchJob, BatchPhase, SyncJob, SyncJobPhase};
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

/// The e2e tests share one cluster: they run one at a time, each with its own operator.
static ONE_AT_A_TIME: tokio::sync::Mutex<()> = tokio::sync::Mutex::const_new(());

/// Says the test was skipped, straight to stderr past the harness's capture, so every run says
/// so.
fn skipped() -> bool {
    let Some(reason) = skip_reason() else { return false };
    use std::io::Write;
    let _ = writeln!(std::io::stderr(), "e2e test SKIPPED: {reason} (set it to a kubeconfig to run it)");
    true
}

/// A namespace of its own with the worker's ServiceAccount and RoleBinding, a source database
/// seeded from `init`, an empty target, the password Secret `creds`, and the operator running in
/// this process. Returns the namespace and the operator's task.
async fn setup(
    client: &Client,
    init: &str,
) -> (String, tokio::task::JoinHandle<Result<(), ferry::operator::OperatorError>>) {
    let ns = format!("ferry-e2e-{}-{}", std::process::id(), jiff::Timestamp::now().as_millisecond() % 100_000);
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
    postgres(client, &ns, "source", init).await;
    postgres(client, &ns, "target", "SELECT 1;").await;
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
    (ns, operator)
}

fn endpoint(host: &str) -> serde_json::Value {
    json!({"engine": "postgresql", "host": host, "port": 5432, "database": "shop", "user": "postgres",
           "passwordSecretRef": {"name": "creds", "key": "password"}})
}

fn tables(names: &[&str]) -> serde_json::Value {
    let tables: Vec<_> = names.iter().map(|n| json!({"name": n})).collect();
    json!({"scope": "table", "databases": [{"name": "shop", "schemas": [{"name": "public", "tables": tables}]}]})
}

/// Whether the job is streaming; a failed phase fails the test with the job's error.
fn streaming(job: Option<&SyncJob>) -> bool {
    let phase = job.and_then(|j| j.status.as_ref()).and_then(|s| s.phase);
    if let Some(p) = phase {
        let error = job.and_then(|j| j.status.as_ref()).and_then(|s| s.last_error.as_ref());
        assert!(!p.is_failed(), "{:?} failed: {error:?}", job.and_then(|j| j.metadata.name.as_deref()));
    }
    phase == Some(SyncJobPhase::IncreTransferStarted)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_postgres_job_goes_from_apply_to_streaming_and_out_through_deletion() {
    if skipped() {
        return;
    }
    let _one = ONE_AT_A_TIME.lock().await;
    let client = client().await;
    let (ns, operator) = setup(
        &client,
        "CREATE TABLE orders (id int PRIMARY KEY, note text); INSERT INTO orders SELECT g, 'n' || g FROM generate_series(1, 1000) g;",
    )
    .await;
    let jobs: Api<SyncJob> = Api::namespaced(client.clone(), &ns);
    create(
        &jobs,
        json!({"apiVersion": "ferry.dev/v1alpha1", "kind": "SyncJob", "metadata": {"name": "orders"},
               "spec": {"taskType": "FULL_INCR_TRANS", "source": endpoint("source"), "target": endpoint("target"),
                        "objects": tables(&["orders"])}}),
    )
    .await;
    wait_for("INCRE_TRANSFER_STARTED", Duration::from_secs(600), async || {
        streaming(jobs.get("orders").await.ok().as_ref())
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

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_batch_of_three_rolls_out_two_at_a_time_until_all_stream() {
    if skipped() {
        return;
    }
    let _one = ONE_AT_A_TIME.lock().await;
    let client = client().await;
    let init = ["acme", "globex", "initech"]
        .iter()
        .map(|t| format!("CREATE TABLE {t} (id int PRIMARY KEY, note text); INSERT INTO {t} SELECT g, 'n' || g FROM generate_series(1, 20000) g;"))
        .collect::<String>();
    let (ns, operator) = setup(&client, &init).await;
    let batches: Api<BatchJob> = Api::namespaced(client.clone(), &ns);
    let jobs: Api<SyncJob> = Api::namespaced(client.clone(), &ns);
    let items: Vec<_> = ["acme", "globex", "initech"]
        .iter()
        .map(|t| json!({"name": t, "overrides": {"objects": tables(&[t])}}))
        .collect();
    create(
        &batches,
        json!({"apiVersion": "ferry.dev/v1alpha1", "kind": "BatchJob", "metadata": {"name": "tenants"},
               "spec": {"maxConcurrent": 2, "jobs": items,
                        "template": {"taskType": "FULL_INCR_TRANS", "source": endpoint("source"),
                                     "target": endpoint("target")}}}),
    )
    .await;
    let mut most_in_flight = 0;
    wait_for("every child at INCRE_TRANSFER_STARTED", Duration::from_secs(900), async || {
        let children = jobs.list(&Default::default()).await.map(|l| l.items).unwrap_or_default();
        // A child holds a slot until its full transfer is done or its stream has started.
        let holds_slot = |j: &&SyncJob| {
            j.status.as_ref().is_none_or(|s| s.full_complete_time.is_none() && s.incr_start_time.is_none())
        };
        let in_flight = children.iter().filter(holds_slot).count();
        most_in_flight = most_in_flight.max(in_flight);
        children.len() == 3 && children.iter().all(|j| streaming(Some(j)))
    })
    .await;
    assert!(most_in_flight <= 2, "at most maxConcurrent children in their full transfer, saw {most_in_flight}");
    let batch = batches.get("tenants").await.expect("the batch");
    let status = batch.status.expect("a batch status");
    assert_eq!(status.phase, Some(BatchPhase::Running), "{status:?}");
    assert_eq!(status.counts.get("INCRE_TRANSFER_STARTED"), Some(&3));

    batches.delete("tenants", &DeleteParams::foreground()).await.expect("deleted");
    wait_for("the children's release", Duration::from_secs(300), async || {
        jobs.list(&Default::default()).await.is_ok_and(|l| l.items.is_empty())
    })
    .await;
    operator.abort();
    let _ = Api::<Namespace>::all(client).delete(&ns, &DeleteParams::default()).await;
}
