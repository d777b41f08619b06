//! `ferry worker` against a mocked Kubernetes API and real PostgreSQL servers: it reads its
//! SyncJob, runs the engine, and writes only its own status fields, with its field manager, and
//! never a password.

mod support;

use ferry::api::{PrecheckStatus, Progress, SlotStatus, SyncJob, SyncJobStatus, TaskType, TransferStage};
use ferry::worker::{self, Task};
use http::{Method, Request, Response};
use kube::Client;
use kube::client::Body;
use serde_json::Value;
use support::Pair;
use tokio::sync::watch;

type Handle = tower_test::mock::Handle<Request<Body>, Response<Body>>;

const JOB: &str = "/apis/ferry.dev/v1alpha1/namespaces/shop/syncjobs/orders";

/// Runs `task` with a mocked API that serves `job` and records every status the worker applies.
async fn run_worker(pair: &Pair, job: &SyncJob, task: Task) -> (Result<(), worker::WorkerError>, Vec<Value>) {
    run_worker_on(pair.credentials(), serde_json::to_value(job).unwrap(), task).await
}

/// [`run_worker`] with the job as the API would send it, and the given credentials.
async fn run_worker_on(
    credentials: ferry::engine::Credentials,
    job: Value,
    task: Task,
) -> (Result<(), worker::WorkerError>, Vec<Value>) {
    let (service, mut handle): (_, Handle) = tower_test::mock::pair::<Request<Body>, Response<Body>>();
    let client = Client::new(service, "default");
    let (_stop_tx, stop) = watch::channel(false);
    let mut run = tokio::spawn(async move { worker::run(client, task, "shop/orders", credentials, stop).await });
    let job_json = serde_json::to_vec(&job).unwrap();
    let mut patches = Vec::new();
    loop {
        tokio::select! {
            biased;
            result = &mut run => return (result.unwrap(), patches),
            next = handle.next_request() => {
                // The worker ended and dropped its client.
                let Some((request, send)) = next else { return (run.await.unwrap(), patches) };
                let (method, path, query) =
                    (request.method().clone(), request.uri().path().to_owned(), request.uri().query().unwrap_or("").to_owned());
                let bytes = request.into_body().collect_bytes().await.unwrap();
                match method {
                    Method::GET => assert_eq!(path, JOB),
                    Method::PATCH => {
                        assert_eq!(path, format!("{JOB}/status"));
                        let manager = if task == Task::Precheck { "ferry-worker-precheck" } else { "ferry-worker" };
                        assert!(query.contains(&format!("fieldManager={manager}&")) || query.ends_with(&format!("fieldManager={manager}")), "{query}");
                        patches.push(serde_json::from_slice::<Value>(&bytes).unwrap());
                    }
                    m => panic!("unexpected {m} {path}"),
                }
                send.send_response(Response::builder().body(Body::from(job_json.clone())).unwrap());
            }
        }
    }
}

fn job(pair: &Pair, task: TaskType) -> SyncJob {
    let mut j = SyncJob::new("orders", pair.spec(task, &["orders"]));
    j.metadata.namespace = Some("shop".into());
    j.metadata.generation = Some(4);
    j
}

fn no_password(pair: &Pair, patches: &[Value]) {
    let text = serde_json::to_string(patches).unwrap();
    assert!(!text.contains(pair.source.password()) && !text.contains(pair.target.password()));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_precheck_worker_writes_its_results_for_the_jobs_generation() {
    let pair = Pair::start();
    pair.source().await.batch_execute("CREATE TABLE orders (id int PRIMARY KEY, v text)").await.unwrap();
    let (result, patches) = run_worker(&pair, &job(&pair, TaskType::FullIncrTrans), Task::Precheck).await;
    result.unwrap();
    assert_eq!(patches.len(), 1);
    let status = &patches[0]["status"];
    assert!(status.get("phase").is_none(), "the worker writes only its own fields: {status}");
    let precheck: PrecheckStatus = serde_json::from_value(status["precheck"].clone()).unwrap();
    assert_eq!(precheck.observed_generation, Some(4));
    assert_eq!(precheck.passed, Some(true), "{precheck:#?}");
    assert!(precheck.items.iter().any(|i| i.item == "source.walLevel"));
    no_password(&pair, &patches);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_sync_worker_reports_progress_and_completes_a_full_transfer() {
    let pair = Pair::start();
    pair.source()
        .await
        .batch_execute("CREATE TABLE orders (id int PRIMARY KEY, v text); INSERT INTO orders SELECT g, 'v' || g FROM generate_series(1, 5000) g")
        .await
        .unwrap();
    // A previous attempt measured the slot, and the operator has tracked it since.
    let mut j = job(&pair, TaskType::FullTrans);
    let at = k8s_openapi::apimachinery::pkg::apis::meta::v1::Time(jiff::Timestamp::now());
    j.status = Some(SyncJobStatus {
        slot: Some(SlotStatus {
            inactive_since: Some(at.clone()),
            ..SlotStatus::measured("ferry_shop_orders_previous", 4096, at)
        }),
        ..Default::default()
    });
    let (result, patches) = run_worker(&pair, &j, Task::Sync).await;
    result.unwrap();
    assert!(!patches.is_empty());
    // The previous measurement stands until this worker measures; the operator's field is not
    // the worker's to write.
    let first = &patches[0]["status"]["slot"];
    assert_eq!(first["name"], "ferry_shop_orders_previous", "{first}");
    assert!(patches.iter().all(|p| p["status"]["slot"].get("inactiveSince").is_none()), "{patches:?}");
    // A FULL_TRANS job drops its slot when it completes: the last status no longer has one.
    let last = &patches.last().unwrap()["status"];
    assert!(last.get("slot").is_none(), "{last}");
    let last: Progress = serde_json::from_value(last["progress"].clone()).unwrap();
    assert_eq!(last.stage, Some(TransferStage::FullComplete), "{last:#?}");
    assert_eq!(last.tables.iter().map(|t| t.rows).sum::<u64>(), 5000);
    let n: i64 = pair.target().await.query_one("SELECT count(*) FROM orders", &[]).await.unwrap().get(0);
    assert_eq!(n, 5000);
    no_password(&pair, &patches);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_failing_worker_returns_the_code_the_operator_reads() {
    let pair = Pair::start();
    let mut j = job(&pair, TaskType::FullTrans);
    j.spec.source.port = 1;
    let (result, _) = run_worker(&pair, &j, Task::Sync).await;
    let e = result.unwrap_err();
    assert_eq!(e.code, "SOURCE_CONNECT", "{}", e.line());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_worker_refuses_a_spec_field_it_does_not_know_naming_every_one() {
    // The API server prunes unknown fields, so this is a CRD newer than the worker (version skew).
    let mut j = SyncJob::new("orders", ferry::api::SyncJobSpec::test());
    j.metadata.namespace = Some("shop".into());
    let mut raw = serde_json::to_value(&j).unwrap();
    raw["spec"]["policy"]["ddl"] = serde_json::json!({"replay": true});
    raw["spec"]["objects"]["databases"][0]["schemas"][0]["tables"][0]["colums"] = serde_json::json!({});
    for task in [Task::Precheck, Task::Sync, Task::Release] {
        let (result, patches) = run_worker_on(Default::default(), raw.clone(), task).await;
        let e = result.unwrap_err();
        assert_eq!(e.code, "SPEC_UNKNOWN_FIELD", "{}", e.line());
        for part in [
            "SyncJob shop/orders ",
            "spec.policy.ddl.replay: unknown field; did you mean enabled?",
            "spec.objects.databases[0].schemas[0].tables[0].colums: unknown field; did you mean columns?",
        ] {
            assert!(e.message.contains(part), "{part} not in {}", e.line());
        }
        assert!(patches.is_empty(), "nothing is written: {patches:?}");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_compare_worker_writes_its_result_and_the_full_report() {
    let pair = Pair::start();
    pair.source()
        .await
        .batch_execute("CREATE TABLE orders (id int PRIMARY KEY, v text); INSERT INTO orders SELECT g, 'v' || g FROM generate_series(1, 500) g")
        .await
        .unwrap();
    pair.target()
        .await
        .batch_execute("CREATE TABLE orders (id int PRIMARY KEY, v text); INSERT INTO orders SELECT g, 'v' || g FROM generate_series(1, 499) g")
        .await
        .unwrap();
    let sync_job = job(&pair, TaskType::FullTrans);
    let spec: ferry::api::compare::CompareTaskSpec =
        serde_json::from_value(serde_json::json!({"syncJobRef": {"name": "orders"}})).unwrap();
    let mut task = ferry::api::compare::CompareTask::new("check", spec);
    task.metadata.namespace = Some("shop".into());
    task.metadata.uid = Some("uid-3".into());

    let (service, mut handle): (_, Handle) = tower_test::mock::pair::<Request<Body>, Response<Body>>();
    let client = Client::new(service, "default");
    let (_stop_tx, stop) = watch::channel(false);
    let credentials = pair.credentials();
    let mut run =
        tokio::spawn(async move { worker::run(client, Task::Compare, "shop/check", credentials, stop).await });
    let (task_json, job_json) = (serde_json::to_vec(&task).unwrap(), serde_json::to_vec(&sync_job).unwrap());
    let empty_report = serde_json::to_vec(&serde_json::json!({"apiVersion": "v1", "kind": "ConfigMap",
        "metadata": {"name": "check-report", "namespace": "shop", "resourceVersion": "7",
                     "ownerReferences": [{"apiVersion": "ferry.dev/v1alpha1", "kind": "CompareTask", "name": "check", "uid": "uid-3"}]}}))
    .unwrap();
    let (mut report, mut status) = (Value::Null, Value::Null);
    loop {
        tokio::select! {
            biased;
            result = &mut run => { result.unwrap().unwrap(); break; }
            next = handle.next_request() => {
                let Some((request, send)) = next else { run.await.unwrap().unwrap(); break };
                let (method, path) = (request.method().clone(), request.uri().path().to_owned());
                let body: Value = serde_json::from_slice(&request.into_body().collect_bytes().await.unwrap()).unwrap_or(Value::Null);
                let (code, answer) = match (method, path.as_str()) {
                    (Method::GET, "/apis/ferry.dev/v1alpha1/namespaces/shop/comparetasks/check") => (200, task_json.clone()),
                    (Method::GET, JOB) => (200, job_json.clone()),
                    // The operator created the report ConfigMap, owned by the task; the worker checks
                    // that before and again right before it writes.
                    (Method::GET, "/api/v1/namespaces/shop/configmaps/check-report") => (200, empty_report.clone()),
                    // It replaces it at the resourceVersion it read: never a ConfigMap swapped in meanwhile.
                    (Method::PUT, "/api/v1/namespaces/shop/configmaps/check-report") => { report = body.clone(); (200, serde_json::to_vec(&body).unwrap()) }
                    (Method::PATCH, "/apis/ferry.dev/v1alpha1/namespaces/shop/comparetasks/check/status") => { status = body; (200, task_json.clone()) }
                    (m, p) => panic!("unexpected {m} {p}"),
                };
                send.send_response(Response::builder().status(code).body(Body::from(answer)).unwrap());
            }
        }
    }
    assert_eq!(status["status"]["result"], "INCONSISTENT");
    assert_eq!(status["status"]["reportRef"]["name"], "check-report");
    assert_eq!(status["status"]["differences"][0]["kind"], "onlyInSource");
    assert_eq!(status["status"]["differences"][0]["sourceKeyValue"], "500");
    let full: Value = serde_json::from_str(report["data"]["report.json"].as_str().unwrap()).unwrap();
    assert_eq!(full["tables"][0]["differentRows"], 1);
    assert_eq!(report["metadata"]["ownerReferences"][0]["kind"], "CompareTask");
    assert_eq!(report["metadata"]["resourceVersion"], "7", "a conditional update");
}

#[tokio::test]
async fn the_compare_worker_never_writes_over_a_report_configmap_it_does_not_own() {
    let spec: ferry::api::compare::CompareTaskSpec =
        serde_json::from_value(serde_json::json!({"syncJobRef": {"name": "orders"}})).unwrap();
    let mut task = ferry::api::compare::CompareTask::new("check", spec);
    task.metadata.namespace = Some("shop".into());
    task.metadata.uid = Some("uid-3".into());
    let users = serde_json::json!({"apiVersion": "v1", "kind": "ConfigMap",
        "metadata": {"name": "check-report", "namespace": "shop", "uid": "someone-else"}, "data": {"mine": "yes"}});

    let (service, mut handle): (_, Handle) = tower_test::mock::pair::<Request<Body>, Response<Body>>();
    let client = Client::new(service, "default");
    let (_stop_tx, stop) = watch::channel(false);
    let run =
        tokio::spawn(async move { worker::run(client, Task::Compare, "shop/check", Default::default(), stop).await });
    for (path, answer) in [
        ("/apis/ferry.dev/v1alpha1/namespaces/shop/comparetasks/check", serde_json::to_vec(&task).unwrap()),
        ("/api/v1/namespaces/shop/configmaps/check-report", serde_json::to_vec(&users).unwrap()),
    ] {
        let (request, send) = handle.next_request().await.expect("a request");
        assert_eq!((request.method(), request.uri().path()), (&Method::GET, path));
        send.send_response(Response::builder().body(Body::from(answer)).unwrap());
    }
    let error = run.await.unwrap().unwrap_err();
    assert_eq!(error.code, "REPORT_NAME_TAKEN", "{}", error.line());
    assert!(error.message.contains("check-report"), "{}", error.line());
}

#[tokio::test]
async fn the_compare_worker_refuses_a_task_field_it_does_not_know() {
    let task = serde_json::json!({"apiVersion": "ferry.dev/v1alpha1", "kind": "CompareTask",
        "metadata": {"name": "check", "namespace": "shop"},
        "spec": {"syncJobRef": {"name": "orders"}, "type": "content", "mode": {"kind": "sample", "precent": 5}}});
    let (service, mut handle): (_, Handle) = tower_test::mock::pair::<Request<Body>, Response<Body>>();
    let client = Client::new(service, "default");
    let (_stop_tx, stop) = watch::channel(false);
    let run =
        tokio::spawn(async move { worker::run(client, Task::Compare, "shop/check", Default::default(), stop).await });
    let (request, send) = handle.next_request().await.expect("a request");
    assert_eq!(request.uri().path(), "/apis/ferry.dev/v1alpha1/namespaces/shop/comparetasks/check");
    send.send_response(Response::builder().body(Body::from(serde_json::to_vec(&task).unwrap())).unwrap());
    let error = run.await.unwrap().unwrap_err();
    assert_eq!(error.code, "SPEC_UNKNOWN_FIELD", "{}", error.line());
    assert!(
        error.message.starts_with("CompareTask shop/check spec.mode.precent: unknown field; did you mean percent?"),
        "{}",
        error.line()
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_sync_worker_writes_the_sequences_its_cut_over_set() {
    let pair = Pair::start();
    pair.source()
        .await
        .batch_execute("CREATE TABLE orders (id serial PRIMARY KEY, v text); INSERT INTO orders (v) SELECT 'v' FROM generate_series(1, 42)")
        .await
        .unwrap();
    let (result, patches) = run_worker(&pair, &job(&pair, TaskType::FullTrans), Task::Sync).await;
    result.unwrap();
    let last = &patches.last().unwrap()["status"]["sequences"];
    let sequences: ferry::api::SequencesStatus = serde_json::from_value(last.clone()).unwrap();
    assert_eq!(sequences.step, ferry::api::SequenceStep::CutOver, "{last}");
    assert_eq!(sequences.count, 1);
    assert_eq!(
        sequences.items,
        [ferry::api::SequenceValue { name: "public.orders_id_seq".into(), value: 42 }],
        "{last}"
    );
    assert!(sequences.set_at.is_some());
}
