//! End to end against a real API server: `ferry operator` (the binary, as its own
//! ServiceAccount with deploy/rbac.yaml) drives SyncJobs on PostgreSQL and MariaDB, a
//! CompareTask and a BatchJob, while the harness plays the node for Ferry's pods (tests/e2e/
//! runner.rs) and the databases are throwaway servers the tests start.
//!
//! The cluster may be a control-plane-only one (kube-apiserver + etcd, as envtest runs; with
//! kube-controller-manager the garbage collector and namespace deletion work too) or a full
//! one: the jobs' pods carry a node selector no node has, so they wait for the runner either
//! way.
//!
//! Ignored unless asked for: `FERRY_E2E_KUBECONFIG=/path/to/admin.kubeconfig make e2e`.

mod harness;
mod runner;

use std::time::Duration;

use ferry::api::compare::CompareTask;
use ferry::api::{BatchJob, SyncJob, SyncJobPhase};
use ferry::engine::{Credentials, Side};
use ferry::testkit::{MariaDbServer, PostgresOptions, PostgresServer, ServerTls, TLS_HOST, TestPki};
use harness::{RUNNER_SELECTOR, admin, cleanup, harness, namespace, wait_for};
use k8s_openapi::api::core::v1::{ConfigMap, Pod};
use kube::api::{Api, DeleteParams, ListParams, Patch, PatchParams, PostParams};
use kube::{Client, ResourceExt};
use serde_json::{Value, json};

/// The e2e tests share the harness and the machine's two cores: one at a time.
static ONE_AT_A_TIME: tokio::sync::Mutex<()> = tokio::sync::Mutex::const_new(());

fn minutes(m: u64) -> Duration {
    Duration::from_secs(60 * m)
}

async fn create<K>(api: &Api<K>, value: Value) -> K
where
    K: kube::Resource + Clone + serde::de::DeserializeOwned + serde::Serialize + std::fmt::Debug,
{
    let object: K = serde_json::from_value(value).expect("a valid object");
    api.create(&PostParams::default(), &object).await.expect("created")
}

async fn merge<K>(api: &Api<K>, name: &str, patch: Value)
where
    K: kube::Resource + Clone + serde::de::DeserializeOwned + std::fmt::Debug,
{
    api.patch(name, &PatchParams::default(), &Patch::Merge(&patch)).await.expect("patched");
}

/// A job's spec, with its pods left to the runner.
fn job_spec(task: &str, source: Value, target: Value, objects: Value) -> Value {
    json!({"taskType": task, "source": source, "target": target, "objects": objects,
           "retry": {"limit": 5, "backoffSeconds": 2},
           "worker": {"nodeSelector": {RUNNER_SELECTOR.0: RUNNER_SELECTOR.1}}})
}

fn pg_endpoint(server: &PostgresServer, key: &str) -> Value {
    json!({"engine": "postgresql", "host": server.host(), "port": server.port(), "database": "shop",
           "user": server.user(), "passwordSecretRef": {"name": "creds", "key": key}})
}

fn pg_tables(names: &[&str]) -> Value {
    let tables: Vec<_> = names.iter().map(|n| json!({"name": n})).collect();
    json!({"scope": "table", "databases": [{"name": "shop", "schemas": [{"name": "public", "tables": tables}]}]})
}

async fn pg(server: &PostgresServer) -> tokio_postgres::Client {
    let (client, conn) = server.config("shop").connect(tokio_postgres::NoTls).await.expect("connect");
    tokio::spawn(async move {
        let _ = conn.await;
    });
    client
}

/// Every row of a PostgreSQL table as text, ordered: equal lists are equal tables, duplicates
/// counted.
async fn pg_rows(client: &tokio_postgres::Client, table: &str) -> Vec<String> {
    let sql = format!("SELECT t::text FROM \"{table}\" t ORDER BY 1");
    match client.query(&sql, &[]).await {
        Ok(rows) => rows.iter().map(|r| r.get::<_, String>(0)).collect(),
        Err(_) => Vec::new(),
    }
}

async fn pg_equal(source: &tokio_postgres::Client, target: &tokio_postgres::Client, table: &str) {
    let deadline = std::time::Instant::now() + minutes(3);
    loop {
        let (s, t) = (pg_rows(source, table).await, pg_rows(target, table).await);
        if s == t && !s.is_empty() {
            return;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "{table}: source and target differ ({} and {} rows)",
            s.len(),
            t.len()
        );
        tokio::time::sleep(Duration::from_secs(1)).await;
    }
}

fn phase(job: &SyncJob) -> Option<SyncJobPhase> {
    job.status.as_ref().and_then(|s| s.phase)
}

fn attempt(job: &SyncJob) -> u32 {
    job.status.as_ref().and_then(|s| s.worker.as_ref()).map_or(0, |w| w.attempt)
}

/// Waits for the job to reach `want`; a failed phase with no retry coming fails the test with
/// the job's error.
async fn reach(jobs: &Api<SyncJob>, name: &str, want: SyncJobPhase, within: Duration) -> SyncJob {
    let mut seen = None;
    wait_for(&format!("{name} to reach {want:?}"), within, async || {
        let Ok(job) = jobs.get(name).await else { return false };
        let p = phase(&job);
        if p != seen {
            eprintln!("e2e: {name}: {p:?}");
            seen = p;
        }
        let st = job.status.clone().unwrap_or_default();
        if let Some(p) = p
            && p.is_failed()
            && st.retries >= job.spec.retry.limit
        {
            panic!("{name} failed: {:?} (logs in {})", st.last_error, harness().logs.display());
        }
        p == Some(want)
    })
    .await;
    jobs.get(name).await.expect("the job")
}

async fn runner_pid(ns: &str, pod: &str) -> Option<u32> {
    harness().pids.lock().unwrap().get(&format!("{ns}/{pod}")).copied()
}

/// Applies the SyncJob `orders` with `spec`.
async fn apply_job(jobs: &Api<SyncJob>, spec: Value) {
    create(
        jobs,
        json!({"apiVersion": "ferry.dev/v1alpha1", "kind": "SyncJob", "metadata": {"name": "orders"}, "spec": spec}),
    )
    .await;
}

/// Two PostgreSQL servers, each with a database `shop`.
fn pg_pair() -> (PostgresServer, PostgresServer) {
    let source = PostgresServer::start().expect("source PostgreSQL");
    let target = PostgresServer::start().expect("target PostgreSQL");
    source.create_database("shop").unwrap();
    target.create_database("shop").unwrap();
    (source, target)
}

/// Pauses the streaming job `orders` and waits until its worker pod is gone; returns the attempt
/// it paused.
async fn pause(jobs: &Api<SyncJob>, pods: &Api<Pod>) -> u32 {
    let before = attempt(&jobs.get("orders").await.unwrap());
    merge(jobs, "orders", json!({"spec": {"paused": true}})).await;
    reach(jobs, "orders", SyncJobPhase::Pausing, minutes(2)).await;
    wait_for("the worker pod gone", minutes(1), async || {
        pods.list(&ListParams::default().labels("app.kubernetes.io/component=sync"))
            .await
            .is_ok_and(|l| l.items.iter().all(|p| p.metadata.deletion_timestamp.is_some()))
    })
    .await;
    before
}

/// Resumes the job paused at attempt `before`: it streams again on a new attempt.
async fn resume(jobs: &Api<SyncJob>, before: u32) {
    merge(jobs, "orders", json!({"spec": {"paused": false}})).await;
    let job = reach(jobs, "orders", SyncJobPhase::IncreTransferStarted, minutes(3)).await;
    assert!(attempt(&job) > before, "resuming starts a new attempt");
}

/// Edits the streaming job's spec and waits until a new attempt streams on it.
async fn edit(jobs: &Api<SyncJob>) {
    let before = attempt(&jobs.get("orders").await.unwrap());
    merge(jobs, "orders", json!({"spec": {"alarm": {"delaySeconds": 120}}})).await;
    wait_for("the edit taken on", minutes(3), async || {
        jobs.get("orders").await.is_ok_and(|j| {
            j.status.as_ref().and_then(|s| s.observed_generation) == j.metadata.generation
                && attempt(&j) > before
                && phase(&j) == Some(SyncJobPhase::IncreTransferStarted)
        })
    })
    .await;
}

/// SIGKILLs the worker's process, as a node would lose it; returns the attempt killed.
async fn kill_worker(jobs: &Api<SyncJob>, ns: &str) -> u32 {
    let job = jobs.get("orders").await.unwrap();
    let pod = job.status.as_ref().and_then(|s| s.worker.as_ref()).and_then(|w| w.pod.clone()).expect("a worker pod");
    let pid = runner_pid(ns, &pod).await.expect("the worker runs");
    // SAFETY: a process the runner started.
    unsafe { libc::kill(pid as i32, libc::SIGKILL) };
    attempt(&job)
}

/// Waits for the retry of a worker killed at attempt `before` to stream again.
async fn retried(jobs: &Api<SyncJob>, before: u32) {
    wait_for("a retry", minutes(3), async || jobs.get("orders").await.is_ok_and(|j| attempt(&j) > before)).await;
    reach(jobs, "orders", SyncJobPhase::IncreTransferStarted, minutes(3)).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "needs a cluster: FERRY_E2E_KUBECONFIG=... make e2e"]
async fn a_postgres_job_streams_pauses_resumes_takes_an_edit_survives_a_killed_worker_and_releases_its_slot() {
    let _one = ONE_AT_A_TIME.lock().await;
    harness();
    let client = admin().await;
    let (source, target) = pg_pair();
    let (src, dst) = (pg(&source).await, pg(&target).await);
    src.batch_execute(
        "CREATE TABLE orders (id int PRIMARY KEY, note text); \
         INSERT INTO orders SELECT g, 'n' || g FROM generate_series(1, 5000) g; \
         CREATE TABLE events (at int, what text); INSERT INTO events SELECT g, 'e' FROM generate_series(1, 500) g;",
    )
    .await
    .unwrap();
    let ns = namespace(&client, "pg", &[("source", source.password()), ("target", target.password())]).await;
    let jobs: Api<SyncJob> = Api::namespaced(client.clone(), &ns);
    let spec = job_spec(
        "FULL_INCR_TRANS",
        pg_endpoint(&source, "source"),
        pg_endpoint(&target, "target"),
        pg_tables(&["orders", "events"]),
    );
    apply_job(&jobs, spec).await;
    let job = reach(&jobs, "orders", SyncJobPhase::IncreTransferStarted, minutes(5)).await;
    assert!(job.finalizers().iter().any(|f| f == "ferry.dev/release"));
    let pc = job.status.as_ref().and_then(|s| s.precheck.as_ref()).expect("precheck results written by the worker");
    assert!(!pc.items.is_empty());
    src.batch_execute("INSERT INTO orders SELECT g, 'live' FROM generate_series(5001, 5100) g; UPDATE orders SET note = 'u' WHERE id <= 10; DELETE FROM orders WHERE id BETWEEN 20 AND 29; INSERT INTO events VALUES (9999, 'live')").await.unwrap();
    pg_equal(&src, &dst, "orders").await;
    pg_equal(&src, &dst, "events").await;

    // Pause: the worker stops at a checkpoint; changes wait on the slot.
    let pods: Api<Pod> = Api::namespaced(client.clone(), &ns);
    let before = pause(&jobs, &pods).await;
    src.batch_execute("INSERT INTO orders SELECT g, 'paused' FROM generate_series(6001, 6050) g").await.unwrap();
    resume(&jobs, before).await;
    pg_equal(&src, &dst, "orders").await;

    // A spec edit while streaming: the worker restarts on the new spec.
    edit(&jobs).await;
    src.batch_execute("UPDATE orders SET note = 'edited' WHERE id BETWEEN 100 AND 150").await.unwrap();
    pg_equal(&src, &dst, "orders").await;

    // The worker's process dies: retried from the checkpoint, nothing lost or doubled.
    src.batch_execute("INSERT INTO orders SELECT g, 'before-kill' FROM generate_series(7001, 7500) g").await.unwrap();
    let before = kill_worker(&jobs, &ns).await;
    src.batch_execute("INSERT INTO orders SELECT g, 'after-kill' FROM generate_series(7501, 8000) g; INSERT INTO events VALUES (10000, 'after')").await.unwrap();
    retried(&jobs, before).await;
    pg_equal(&src, &dst, "orders").await;
    pg_equal(&src, &dst, "events").await;

    // Deletion: the release pod drops the slot and publication, then the finalizer goes.
    jobs.delete("orders", &DeleteParams::default()).await.unwrap();
    wait_for("the job gone", minutes(3), async || matches!(jobs.get_opt("orders").await, Ok(None))).await;
    let slots = src.query("SELECT slot_name FROM pg_replication_slots", &[]).await.unwrap();
    assert!(slots.is_empty(), "the slot is released");
    let publications = src.query("SELECT pubname FROM pg_publication", &[]).await.unwrap();
    assert!(publications.is_empty(), "the publication is released");
    cleanup(&client, &ns).await;
}

/// The operator's `/metrics`.
async fn operator_metrics() -> String {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let Ok(mut s) = tokio::net::TcpStream::connect(harness().operator_metrics).await else { return String::new() };
    let mut out = String::new();
    if s.write_all(b"GET /metrics HTTP/1.1\r\nhost: e2e\r\nconnection: close\r\n\r\n").await.is_err()
        || s.read_to_string(&mut out).await.is_err()
    {
        return String::new();
    }
    out
}

/// The value of the operator's series `name` for the job `orders` in `ns`.
fn job_series(text: &str, name: &str, ns: &str) -> Option<f64> {
    let series = format!("{name}{{namespace=\"{ns}\",name=\"orders\"}} ");
    text.lines().find_map(|l| l.strip_prefix(&series)?.parse().ok())
}

/// The case: a paused job keeps its replication slot, and the source's WAL, only for
/// `spec.slotRetentionMinutes`. While it is paused the operator reports the slot (from the
/// worker's last measurement) in status and metrics; then it releases the slot and the
/// publication and says the job needs a new full transfer.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "needs a cluster: FERRY_E2E_KUBECONFIG=... make e2e"]
async fn a_paused_postgres_job_loses_its_slot_after_its_retention_and_says_it_needs_a_new_full_transfer() {
    let _one = ONE_AT_A_TIME.lock().await;
    harness();
    let client = admin().await;
    let (source, target) = pg_pair();
    let (src, dst) = (pg(&source).await, pg(&target).await);
    src.batch_execute(
        "CREATE TABLE orders (id int PRIMARY KEY, note text); \
         INSERT INTO orders SELECT g, 'n' || g FROM generate_series(1, 2000) g;",
    )
    .await
    .unwrap();
    let ns = namespace(&client, "slot", &[("source", source.password()), ("target", target.password())]).await;
    let jobs: Api<SyncJob> = Api::namespaced(client.clone(), &ns);
    let mut spec = job_spec(
        "FULL_INCR_TRANS",
        pg_endpoint(&source, "source"),
        pg_endpoint(&target, "target"),
        pg_tables(&["orders"]),
    );
    spec["slotRetentionMinutes"] = json!(1);
    apply_job(&jobs, spec).await;
    reach(&jobs, "orders", SyncJobPhase::IncreTransferStarted, minutes(5)).await;
    src.batch_execute("INSERT INTO orders SELECT g, 'live' FROM generate_series(2001, 2100) g").await.unwrap();
    pg_equal(&src, &dst, "orders").await;

    // The worker measures its slot into status.
    let mut slot_name = String::new();
    wait_for("the slot measured in status", minutes(1), async || {
        let Ok(job) = jobs.get("orders").await else { return false };
        let Some(slot) = job.status.and_then(|s| s.slot) else { return false };
        slot_name = slot.name.clone().unwrap_or_default();
        slot.retained_wal_bytes.is_some() && slot.measured_at.is_some() && slot.inactive_since.is_none()
    })
    .await;
    let on_source = src.query("SELECT 1 FROM pg_replication_slots WHERE slot_name = $1", &[&slot_name]).await.unwrap();
    assert_eq!(on_source.len(), 1, "status names the job's slot {slot_name}");

    // Paused: no worker reads the slot. The operator counts, and reports the slot meanwhile.
    let pods: Api<Pod> = Api::namespaced(client.clone(), &ns);
    pause(&jobs, &pods).await;
    wait_for("the operator's slot series of the paused job", minutes(1), async || {
        let text = operator_metrics().await;
        let paused = jobs.get("orders").await.is_ok_and(|j| {
            j.status.and_then(|s| s.slot).is_some_and(|s| s.inactive_since.is_some() && s.retained_wal_bytes.is_some())
        });
        paused
            && job_series(&text, "ferry_syncjob_slot_inactive_seconds", &ns).is_some()
            && job_series(&text, "ferry_syncjob_slot_retained_wal_bytes", &ns).is_some()
            && job_series(&text, "ferry_syncjob_slot_retention_seconds", &ns) == Some(60.0)
    })
    .await;

    // The minute passes: the slot and the publication are released, and the job says what to do.
    let job = reach(&jobs, "orders", SyncJobPhase::ReleaseResourceComplete, minutes(4)).await;
    let st = job.status.clone().expect("a status");
    let error = st.last_error.clone().expect("lastError");
    assert_eq!(error.code, "SLOT_RETENTION_EXPIRED", "{error:?}");
    assert!(error.message.contains(&slot_name) && error.message.contains("new full transfer"), "{}", error.message);
    assert!(st.slot.as_ref().is_some_and(|s| s.expired_at.is_some()), "{:?}", st.slot);
    let stalled = st.conditions.iter().find(|c| c.type_ == "Stalled").expect("a Stalled condition");
    assert_eq!((stalled.status.as_str(), stalled.reason.as_str()), ("True", "SlotRetentionExpired"));
    let slots = src.query("SELECT slot_name FROM pg_replication_slots", &[]).await.unwrap();
    assert!(slots.is_empty(), "the slot is released");
    let publications = src.query("SELECT pubname FROM pg_publication", &[]).await.unwrap();
    assert!(publications.is_empty(), "the publication is released");
    let events = Api::<k8s_openapi::api::events::v1::Event>::namespaced(client.clone(), &ns)
        .list(&Default::default())
        .await
        .unwrap();
    assert!(
        events.items.iter().any(|e| e.reason.as_deref() == Some("SlotRetentionExpired")),
        "a SlotRetentionExpired Event"
    );
    wait_for("the slot series gone", minutes(1), async || {
        let text = operator_metrics().await;
        text.contains("ferry_syncjob_phase") && job_series(&text, "ferry_syncjob_slot_inactive_seconds", &ns).is_none()
    })
    .await;

    jobs.delete("orders", &DeleteParams::default()).await.unwrap();
    wait_for("the job gone", minutes(2), async || matches!(jobs.get_opt("orders").await, Ok(None))).await;
    cleanup(&client, &ns).await;
}

/// A job whose endpoints use verify-full, the CA from a ConfigMap and a client certificate from
/// a `kubernetes.io/tls` Secret: the worker pods mount them (a projected volume the API server
/// and restricted Pod Security accept), and the job streams over TLS on both connections.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "needs a cluster: FERRY_E2E_KUBECONFIG=... make e2e"]
async fn a_postgres_job_over_verify_full_gets_its_ca_and_client_certificate_mounted() {
    let _one = ONE_AT_A_TIME.lock().await;
    harness();
    let client = admin().await;
    let pki = TestPki::new("ferry").unwrap();
    let start = |tls| {
        let server = PostgresServer::start_with(PostgresOptions { tls: Some(tls), ..Default::default() }).unwrap();
        server.create_database("shop").unwrap();
        server
    };
    let source = start(pki.server_requiring_client_certs());
    let target = start(ServerTls { require_tls: true, ..pki.server() });
    let ns = namespace(&client, "tls", &[("source", source.password()), ("target", target.password())]).await;
    let maps: Api<ConfigMap> = Api::namespaced(client.clone(), &ns);
    create(&maps, json!({"metadata": {"name": "db-ca"}, "data": {"ca.crt": pki.ca_pem}})).await;
    let secrets: Api<k8s_openapi::api::core::v1::Secret> = Api::namespaced(client.clone(), &ns);
    create(
        &secrets,
        json!({"metadata": {"name": "client"}, "type": "kubernetes.io/tls",
               "stringData": {"tls.crt": pki.client_cert_pem, "tls.key": pki.client_key_pem}}),
    )
    .await;
    let endpoint = |server: &PostgresServer, key: &str, client_cert: bool| {
        let mut e = pg_endpoint(server, key);
        e["host"] = json!(TLS_HOST);
        e["tls"] = json!({"mode": "verify-full", "caConfigMapRef": {"name": "db-ca", "key": "ca.crt"}});
        if client_cert {
            e["tls"]["clientCertSecretRef"] = json!({"name": "client"});
        }
        e
    };
    let (source_ep, target_ep) = (endpoint(&source, "source", true), endpoint(&target, "target", false));
    let creds = Credentials {
        source_password: Some(source.password().into()),
        target_password: Some(target.password().into()),
        source_tls: pki.trust_with_client_cert(),
        target_tls: pki.trust(),
    };
    let connect = async |ep: &Value, side| {
        let ep: ferry::api::Endpoint = serde_json::from_value(ep.clone()).unwrap();
        ferry::engine::postgres::connect::connect(&ep, creds.login(side), side).await.unwrap()
    };
    let src = connect(&source_ep, Side::Source).await;
    let dst = connect(&target_ep, Side::Target).await;
    src.batch_execute(
        "CREATE TABLE public.orders (id int PRIMARY KEY, note text); \
         INSERT INTO public.orders SELECT g, 'n' || g FROM generate_series(1, 3000) g;",
    )
    .await
    .unwrap();
    src.batch_execute("SET search_path = public").await.unwrap();
    dst.batch_execute("SET search_path = public").await.unwrap();
    let jobs: Api<SyncJob> = Api::namespaced(client.clone(), &ns);
    apply_job(&jobs, job_spec("FULL_INCR_TRANS", source_ep, target_ep, pg_tables(&["orders"]))).await;
    let job = reach(&jobs, "orders", SyncJobPhase::IncreTransferStarted, minutes(5)).await;
    let items = &job.status.as_ref().and_then(|s| s.precheck.as_ref()).expect("precheck results").items;
    for name in ["source.tls", "target.tls", "source.replicationConnection"] {
        let item = items.iter().find(|i| i.item == name).unwrap_or_else(|| panic!("{name} in {items:?}"));
        assert_eq!(item.result, ferry::api::PrecheckResult::Passed, "{item:?}");
    }
    let pods: Api<Pod> = Api::namespaced(client.clone(), &ns);
    let worker =
        pods.list(&ListParams::default()).await.unwrap().items.into_iter().find(|p| p.name_any().contains("-sync-"));
    let volumes = worker.and_then(|p| p.spec).and_then(|s| s.volumes).unwrap_or_default();
    assert!(volumes.iter().any(|v| v.name == "tls-source" && v.projected.is_some()), "{volumes:?}");
    src.batch_execute("INSERT INTO orders SELECT g, 'live' FROM generate_series(5001, 5100) g; UPDATE orders SET note = 'u' WHERE id <= 10").await.unwrap();
    pg_equal(&src, &dst, "orders").await;
    jobs.delete("orders", &DeleteParams::default()).await.unwrap();
    wait_for("the job gone", minutes(3), async || matches!(jobs.get_opt("orders").await, Ok(None))).await;
    let slots = src.query("SELECT slot_name FROM pg_replication_slots", &[]).await.unwrap();
    assert!(slots.is_empty(), "the release pod reached the source over TLS too");
    cleanup(&client, &ns).await;
}

fn my_endpoint(server: &MariaDbServer, key: &str) -> Value {
    json!({"engine": "mariadb", "host": server.host(), "port": server.port(), "user": server.user(),
           "passwordSecretRef": {"name": "creds", "key": key}})
}

/// Every row of a MariaDB table (two columns) as text, ordered: duplicates counted.
async fn my_rows(conn: &mut mysql_async::Conn, table: &str, columns: (&str, &str)) -> Vec<String> {
    use mysql_async::prelude::Queryable;
    let (a, b) = columns;
    let sql = format!("SELECT CONCAT_WS('|', `{a}`, `{b}`) FROM shop.`{table}` ORDER BY 1");
    conn.query::<String, _>(sql).await.unwrap_or_default()
}

/// Waits until both tables of the MariaDB job hold the same rows on both sides.
async fn my_equal(src: &mut mysql_async::Conn, dst: &mut mysql_async::Conn) {
    for (table, columns) in [("orders", ("id", "note")), ("events", ("at", "what"))] {
        wait_for(&format!("{table} equal on both sides"), minutes(3), async || {
            let s = my_rows(src, table, columns).await;
            !s.is_empty() && s == my_rows(dst, table, columns).await
        })
        .await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "needs a cluster: FERRY_E2E_KUBECONFIG=... make e2e"]
async fn a_mariadb_job_streams_pauses_resumes_takes_an_edit_survives_a_killed_worker_and_is_deleted() {
    use mysql_async::prelude::Queryable;
    let _one = ONE_AT_A_TIME.lock().await;
    harness();
    let client = admin().await;
    let source = MariaDbServer::start().expect("source MariaDB");
    let target = MariaDbServer::start().expect("target MariaDB");
    let mut src = mysql_async::Conn::new(source.opts(None)).await.unwrap();
    let mut dst = mysql_async::Conn::new(target.opts(None)).await.unwrap();
    src.query_drop(
        "CREATE DATABASE shop; CREATE TABLE shop.orders (id int PRIMARY KEY, note varchar(40)); \
         INSERT INTO shop.orders SELECT seq, CONCAT('n', seq) FROM shop.seq_1_to_5000; \
         CREATE TABLE shop.events (at int, what varchar(20)); INSERT INTO shop.events SELECT seq, 'e' FROM shop.seq_1_to_500",
    )
    .await
    .unwrap();
    let ns = namespace(&client, "mariadb", &[("source", source.password()), ("target", target.password())]).await;
    let jobs: Api<SyncJob> = Api::namespaced(client.clone(), &ns);
    let objects =
        json!({"scope": "table", "databases": [{"name": "shop", "tables": [{"name": "orders"}, {"name": "events"}]}]});
    let spec = job_spec("FULL_INCR_TRANS", my_endpoint(&source, "source"), my_endpoint(&target, "target"), objects);
    apply_job(&jobs, spec).await;
    reach(&jobs, "orders", SyncJobPhase::IncreTransferStarted, minutes(5)).await;
    src.query_drop(
        "INSERT INTO shop.orders SELECT seq, 'live' FROM shop.seq_5001_to_5100; \
         UPDATE shop.orders SET note = 'u' WHERE id <= 10; DELETE FROM shop.orders WHERE id BETWEEN 20 AND 29; \
         INSERT INTO shop.events VALUES (9999, 'live')",
    )
    .await
    .unwrap();
    my_equal(&mut src, &mut dst).await;

    // Pause and resume: changes made while paused arrive after.
    let before = pause(&jobs, &Api::namespaced(client.clone(), &ns)).await;
    src.query_drop("INSERT INTO shop.orders SELECT seq, 'paused' FROM shop.seq_6001_to_6050").await.unwrap();
    resume(&jobs, before).await;
    my_equal(&mut src, &mut dst).await;

    // A spec edit restarts the worker on the new spec.
    edit(&jobs).await;

    // The worker killed while changes arrive: retried from its checkpoint, nothing lost, and the
    // keyless table has no duplicates.
    src.query_drop("INSERT INTO shop.events SELECT seq, 'before-kill' FROM shop.seq_10001_to_10500").await.unwrap();
    let before = kill_worker(&jobs, &ns).await;
    src.query_drop("INSERT INTO shop.events SELECT seq, 'after-kill' FROM shop.seq_10501_to_11000").await.unwrap();
    retried(&jobs, before).await;
    my_equal(&mut src, &mut dst).await;

    jobs.delete("orders", &DeleteParams::default()).await.unwrap();
    wait_for("the job gone", minutes(3), async || matches!(jobs.get_opt("orders").await, Ok(None))).await;
    cleanup(&client, &ns).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "needs a cluster: FERRY_E2E_KUBECONFIG=... make e2e"]
async fn a_compare_task_runs_writes_its_report_and_runs_again_on_its_schedule() {
    let _one = ONE_AT_A_TIME.lock().await;
    harness();
    let client = admin().await;
    let (source, target) = pg_pair();
    pg(&source)
        .await
        .batch_execute("CREATE TABLE orders (id int PRIMARY KEY, note text); INSERT INTO orders SELECT g, 'n' || g FROM generate_series(1, 2000) g;")
        .await
        .unwrap();
    let ns = namespace(&client, "compare", &[("source", source.password()), ("target", target.password())]).await;
    let jobs: Api<SyncJob> = Api::namespaced(client.clone(), &ns);
    let spec =
        job_spec("FULL_TRANS", pg_endpoint(&source, "source"), pg_endpoint(&target, "target"), pg_tables(&["orders"]));
    apply_job(&jobs, spec).await;
    reach(&jobs, "orders", SyncJobPhase::FullTransferComplete, minutes(5)).await;

    let tasks: Api<CompareTask> = Api::namespaced(client.clone(), &ns);
    create(
        &tasks,
        json!({"apiVersion": "ferry.dev/v1alpha1", "kind": "CompareTask", "metadata": {"name": "check"},
               "spec": {"type": "content", "syncJobRef": {"name": "orders"}, "schedule": "* * * * *"}}),
    )
    .await;
    let mut runs_done = 0;
    wait_for("a consistent run", minutes(3), async || {
        let Ok(t) = tasks.get("check").await else { return false };
        let st = t.status.unwrap_or_default();
        runs_done = st.runs;
        st.phase.map(|p| p.as_str()) == Some("SUCCESSFUL") && st.result.map(|r| r.as_str()) == Some("CONSISTENT")
    })
    .await;
    let task = tasks.get("check").await.unwrap();
    let report_name =
        task.status.as_ref().and_then(|s| s.report_ref.as_ref()).map(|r| r.name.clone()).expect("reportRef");
    let report =
        Api::<ConfigMap>::namespaced(client.clone(), &ns).get(&report_name).await.expect("the report ConfigMap");
    assert!(report.owner_references().iter().any(|o| Some(&o.uid) == task.metadata.uid.as_ref()), "owned by the task");
    assert!(report.data.as_ref().is_some_and(|d| d["report.json"].contains("CONSISTENT")));
    // The schedule fires every minute: a second run follows.
    wait_for("a scheduled second run", minutes(3), async || {
        tasks.get("check").await.is_ok_and(|t| t.status.is_some_and(|s| s.runs > runs_done))
    })
    .await;
    tasks.delete("check", &DeleteParams::default()).await.unwrap();
    jobs.delete("orders", &DeleteParams::default()).await.unwrap();
    wait_for("the job gone", minutes(3), async || matches!(jobs.get_opt("orders").await, Ok(None))).await;
    cleanup(&client, &ns).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "needs a cluster: FERRY_E2E_KUBECONFIG=... make e2e"]
async fn a_batch_rolls_out_under_max_concurrent_takes_an_item_edit_and_a_removal() {
    let _one = ONE_AT_A_TIME.lock().await;
    harness();
    let client = admin().await;
    let (source, target) = pg_pair();
    let tenants = ["acme", "globex", "initech"];
    let init: String = tenants
        .iter()
        .map(|t| format!("CREATE TABLE {t} (id int PRIMARY KEY, note text); INSERT INTO {t} SELECT g, 'n' || g FROM generate_series(1, 20000) g;"))
        .collect();
    pg(&source).await.batch_execute(&init).await.unwrap();
    let ns = namespace(&client, "batch", &[("source", source.password()), ("target", target.password())]).await;
    let batches: Api<BatchJob> = Api::namespaced(client.clone(), &ns);
    let jobs: Api<SyncJob> = Api::namespaced(client.clone(), &ns);
    let items: Vec<_> = tenants.iter().map(|t| json!({"name": t, "overrides": {"objects": pg_tables(&[t])}})).collect();
    let template = job_spec(
        "FULL_INCR_TRANS",
        pg_endpoint(&source, "source"),
        pg_endpoint(&target, "target"),
        pg_tables(&["acme"]),
    );
    create(
        &batches,
        json!({"apiVersion": "ferry.dev/v1alpha1", "kind": "BatchJob", "metadata": {"name": "tenants"},
               "spec": {"maxConcurrent": 2, "jobs": items.clone(), "template": template}}),
    )
    .await;
    let mut most_in_flight = 0;
    wait_for("every child streaming", minutes(8), async || {
        let children = jobs.list(&Default::default()).await.map(|l| l.items).unwrap_or_default();
        let holds_slot = |j: &&SyncJob| {
            j.status.as_ref().is_none_or(|s| s.full_complete_time.is_none() && s.incr_start_time.is_none())
        };
        most_in_flight = most_in_flight.max(children.iter().filter(holds_slot).count());
        for j in &children {
            if let Some(p) = phase(j) {
                assert!(
                    !p.is_failed() || j.status.as_ref().is_some_and(|s| s.retries < 5),
                    "{}: {:?}",
                    j.name_any(),
                    j.status
                );
            }
        }
        children.len() == 3 && children.iter().all(|j| phase(j) == Some(SyncJobPhase::IncreTransferStarted))
    })
    .await;
    assert!(most_in_flight <= 2, "at most maxConcurrent children in their full transfer, saw {most_in_flight}");
    let status = batches.get("tenants").await.unwrap().status.expect("a batch status");
    assert_eq!(status.counts.get("INCRE_TRANSFER_STARTED"), Some(&3), "{status:?}");

    // An item edit reaches only its child.
    let mut edited = items.clone();
    edited[1] =
        json!({"name": "globex", "overrides": {"objects": pg_tables(&["globex"]), "alarm": {"delaySeconds": 90}}});
    merge(&batches, "tenants", json!({"spec": {"jobs": edited}})).await;
    wait_for("the edit on tenants-globex", minutes(2), async || {
        jobs.get("tenants-globex").await.is_ok_and(|j| j.spec.alarm.as_ref().and_then(|a| a.delay_seconds) == Some(90))
    })
    .await;
    let acme = jobs.get("tenants-acme").await.unwrap();
    assert_ne!(acme.spec.alarm.as_ref().and_then(|a| a.delay_seconds), Some(90));

    // Removing an item deletes (and releases) its child.
    merge(&batches, "tenants", json!({"spec": {"jobs": [edited[0].clone(), edited[1].clone()]}})).await;
    wait_for("tenants-initech gone", minutes(3), async || matches!(jobs.get_opt("tenants-initech").await, Ok(None)))
        .await;
    let status = batches.get("tenants").await.unwrap().status.expect("a batch status");
    assert_eq!(status.jobs.len(), 2, "{status:?}");

    batches.delete("tenants", &DeleteParams::foreground()).await.unwrap();
    for child in ["tenants-acme", "tenants-globex"] {
        // Without a garbage collector (no kube-controller-manager) the test deletes the children.
        let _ = jobs.delete(child, &DeleteParams::default()).await;
    }
    wait_for("the children released", minutes(3), async || {
        jobs.list(&Default::default()).await.is_ok_and(|l| l.items.is_empty())
    })
    .await;
    let slots = pg(&source).await.query("SELECT slot_name FROM pg_replication_slots", &[]).await.unwrap();
    assert!(slots.is_empty(), "every child's slot is released");
    cleanup(&client, &ns).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "needs a cluster: FERRY_E2E_KUBECONFIG=... make e2e"]
async fn a_service_account_of_the_jobs_name_held_by_someone_else_is_never_taken_over() {
    let _one = ONE_AT_A_TIME.lock().await;
    harness();
    let client = admin().await;
    let ns = namespace(&client, "taken", &[("source", "x"), ("target", "y")]).await;
    let accounts = Api::<k8s_openapi::api::core::v1::ServiceAccount>::namespaced(client.clone(), &ns);
    create(
        &accounts,
        json!({"apiVersion": "v1", "kind": "ServiceAccount", "metadata": {"name": "orders-ferry-worker"}}),
    )
    .await;
    let jobs: Api<SyncJob> = Api::namespaced(client.clone(), &ns);
    let endpoint = json!({"engine": "postgresql", "host": "127.0.0.1", "port": 1, "database": "shop", "user": "u",
                          "passwordSecretRef": {"name": "creds", "key": "source"}});
    let mut target = endpoint.clone();
    target["port"] = json!(2);
    let spec = job_spec("FULL_TRANS", endpoint, target, pg_tables(&["orders"]));
    apply_job(&jobs, spec).await;
    wait_for("the NameTaken condition", minutes(1), async || {
        jobs.get("orders").await.is_ok_and(|j| {
            j.status.is_some_and(|s| {
                s.conditions
                    .iter()
                    .any(|c| c.type_ == "Stalled" && c.reason == "NameTaken" && c.message.contains("ServiceAccount"))
            })
        })
    })
    .await;
    let events = Api::<k8s_openapi::api::events::v1::Event>::namespaced(client.clone(), &ns)
        .list(&Default::default())
        .await
        .unwrap();
    assert!(events.items.iter().any(|e| e.reason.as_deref() == Some("NameTaken")), "a NameTaken Event");
    let kept = accounts.get("orders-ferry-worker").await.unwrap();
    assert!(kept.metadata.owner_references.is_none_or(|o| o.is_empty()), "never adopted");
    let roles = Api::<k8s_openapi::api::rbac::v1::Role>::namespaced(client.clone(), &ns);
    assert!(roles.get_opt("orders-ferry-worker").await.unwrap().is_none(), "nothing granted to their account");
    assert!(Api::<Pod>::namespaced(client.clone(), &ns).list(&Default::default()).await.unwrap().items.is_empty());
    // Deleting it needs no pod: nothing was created on the source.
    let _ = jobs
        .patch(
            "orders",
            &PatchParams::default(),
            &Patch::Merge(&json!({"metadata": {"annotations": {"ferry.dev/skip-release": "true"}}})),
        )
        .await;
    jobs.delete("orders", &DeleteParams::default()).await.unwrap();
    wait_for("the job gone", minutes(2), async || matches!(jobs.get_opt("orders").await, Ok(None))).await;
    assert!(accounts.get_opt("orders-ferry-worker").await.unwrap().is_some(), "not deleted with the job");
    cleanup(&client, &ns).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "needs a cluster: FERRY_E2E_KUBECONFIG=... make e2e"]
async fn a_jobs_worker_can_write_its_own_status_but_not_another_jobs_nor_any_configmap() {
    let _one = ONE_AT_A_TIME.lock().await;
    harness();
    let client = admin().await;
    let ns = namespace(&client, "rbac", &[("source", "x"), ("target", "y")]).await;
    let jobs: Api<SyncJob> = Api::namespaced(client.clone(), &ns);
    // Nothing listens on ports 1 and 2: each job's precheck runs (as its own account) and fails.
    let endpoint = |port: u16| {
        json!({"engine": "postgresql", "host": "127.0.0.1", "port": port, "database": "shop", "user": "u",
               "passwordSecretRef": {"name": "creds", "key": "source"}})
    };
    for name in ["alpha", "beta"] {
        let spec = job_spec("FULL_TRANS", endpoint(1), endpoint(2), pg_tables(&["orders"]));
        create(
            &jobs,
            json!({"apiVersion": "ferry.dev/v1alpha1", "kind": "SyncJob", "metadata": {"name": name}, "spec": spec}),
        )
        .await;
    }
    for name in ["alpha", "beta"] {
        wait_for(&format!("{name}'s precheck results, written by its worker"), minutes(2), async || {
            jobs.get(name)
                .await
                .is_ok_and(|j| j.status.is_some_and(|s| s.precheck.is_some_and(|p| !p.items.is_empty())))
        })
        .await;
    }
    // What alpha's worker pods hold: a token of alpha's own account.
    let token = harness::token(&client, &ns, "alpha-ferry-worker").await.expect("a token of alpha's account");
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("kubeconfig");
    harness::access().write_kubeconfig(&path, &token);
    let kubeconfig = kube::config::Kubeconfig::read_from(&path).unwrap();
    let config = kube::Config::from_custom_kubeconfig(kubeconfig, &Default::default()).await.unwrap();
    let worker = Client::try_from(config).unwrap();
    let as_worker: Api<SyncJob> = Api::namespaced(worker.clone(), &ns);
    let forbidden = |r: Result<SyncJob, kube::Error>| matches!(r, Err(kube::Error::Api(s)) if s.code == 403);

    let probe = |name: &str| {
        json!({"apiVersion": "ferry.dev/v1alpha1", "kind": "SyncJob", "metadata": {"name": name},
               "status": {"progress": {"rowsTransferred": 0, "bytesTransferred": 0}}})
    };
    let apply = PatchParams::apply("ferry-worker").force();
    as_worker.get("alpha").await.expect("alpha's worker reads alpha");
    as_worker.patch_status("alpha", &apply, &Patch::Apply(probe("alpha"))).await.expect("and writes its status");
    assert!(forbidden(as_worker.get("beta").await), "alpha's worker cannot read beta");
    assert!(
        forbidden(as_worker.patch_status("beta", &apply, &Patch::Apply(probe("beta"))).await),
        "alpha's worker cannot write beta's status"
    );
    assert!(
        forbidden(
            as_worker.patch("alpha", &PatchParams::default(), &Patch::Merge(json!({"spec": {"paused": true}}))).await
        ),
        "nor edit its own spec"
    );
    assert!(matches!(as_worker.list(&Default::default()).await, Err(kube::Error::Api(s)) if s.code == 403));
    let maps: Api<ConfigMap> = Api::namespaced(worker, &ns);
    let map = json!({"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": "alpha-report"}});
    let created = maps.create(&Default::default(), &serde_json::from_value(map).unwrap()).await;
    assert!(matches!(created, Err(kube::Error::Api(s)) if s.code == 403), "nor create a ConfigMap");

    for name in ["alpha", "beta"] {
        let _ = jobs
            .patch(
                name,
                &PatchParams::default(),
                &Patch::Merge(&json!({"metadata": {"annotations": {"ferry.dev/skip-release": "true"}}})),
            )
            .await;
        jobs.delete(name, &DeleteParams::default()).await.unwrap();
    }
    cleanup(&client, &ns).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "needs a cluster: FERRY_E2E_KUBECONFIG=... make e2e"]
async fn a_long_named_job_gets_its_pods_and_status_and_a_users_configmap_is_left_alone() {
    let _one = ONE_AT_A_TIME.lock().await;
    harness();
    let client = admin().await;
    let ns = namespace(&client, "names", &[("source", "x"), ("target", "y")]).await;
    let jobs: Api<SyncJob> = Api::namespaced(client.clone(), &ns);
    // Nothing listens on ports 1 and 2: the precheck runs, fails, and says so.
    let endpoint = |port: u16| {
        json!({"engine": "postgresql", "host": "127.0.0.1", "port": port, "database": "shop", "user": "u",
               "passwordSecretRef": {"name": "creds", "key": "source"}})
    };
    let name = format!("{}-end", "orders-of-the-eastern-region".repeat(4));
    assert!(name.len() > 63);
    let spec = job_spec("FULL_TRANS", endpoint(1), endpoint(2), pg_tables(&["orders"]));
    create(
        &jobs,
        json!({"apiVersion": "ferry.dev/v1alpha1", "kind": "SyncJob", "metadata": {"name": name}, "spec": spec}),
    )
    .await;
    wait_for("the precheck's results", minutes(2), async || {
        jobs.get(&name).await.is_ok_and(|j| j.status.is_some_and(|s| s.precheck.is_some_and(|p| !p.items.is_empty())))
    })
    .await;
    let pods = Api::<Pod>::namespaced(client.clone(), &ns).list(&Default::default()).await.unwrap();
    let label = ferry::controller::pods::label_value(&name);
    assert!(pods.items.iter().any(|p| p.labels().get("ferry.dev/job") == Some(&label)), "pods carry the hashed name");

    // A ConfigMap of the report's name that belongs to a user.
    let maps: Api<ConfigMap> = Api::namespaced(client.clone(), &ns);
    create(
        &maps,
        json!({"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": "check-report"}, "data": {"mine": "yes"}}),
    )
    .await;
    let tasks: Api<CompareTask> = Api::namespaced(client.clone(), &ns);
    create(
        &tasks,
        json!({"apiVersion": "ferry.dev/v1alpha1", "kind": "CompareTask", "metadata": {"name": "check"},
               "spec": {"type": "rows", "syncJobRef": {"name": name}}}),
    )
    .await;
    wait_for("the task refusing the name", minutes(1), async || {
        tasks.get("check").await.is_ok_and(|t| {
            t.status.is_some_and(|s| {
                s.phase.map(|p| p.as_str()) == Some("FAILED") && s.message.is_some_and(|m| m.contains("check-report"))
            })
        })
    })
    .await;
    let kept = maps.get("check-report").await.unwrap();
    assert_eq!(kept.data.unwrap()["mine"], "yes");
    assert!(kept.metadata.owner_references.is_none_or(|o| o.is_empty()), "never adopted");

    let _ = jobs
        .patch(
            &name,
            &PatchParams::default(),
            &Patch::Merge(&json!({"metadata": {"annotations": {"ferry.dev/skip-release": "true"}}})),
        )
        .await;
    jobs.delete(&name, &DeleteParams::default()).await.unwrap();
    wait_for("the job gone", minutes(2), async || matches!(jobs.get_opt(&name).await, Ok(None))).await;
    cleanup(&client, &ns).await;
}

/// The harness needs a kubeconfig; asked to run without one, say so at once.
#[test]
#[ignore = "needs a cluster: FERRY_E2E_KUBECONFIG=... make e2e"]
fn the_cluster_is_reachable_with_the_given_kubeconfig() {
    let runtime = tokio::runtime::Runtime::new().unwrap();
    runtime.block_on(async {
        let client: Client = admin().await;
        let version = client.apiserver_version().await.expect("the API server answers");
        eprintln!("e2e: API server {}.{} ({})", version.major, version.minor, version.git_version);
    });
}
