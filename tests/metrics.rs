//! The metrics endpoints, scraped while work happens: a `ferry run` worker copying and
//! streaming a real PostgreSQL job, and the operator after a scenario reconcile against a
//! mocked API. Every series docs/metrics.md documents is served, with sane values, and the
//! exposition passes `promtool check metrics`.

mod mock_api;
mod runner;
mod support;

use std::collections::BTreeSet;
use std::sync::Arc;
use std::sync::atomic::AtomicBool;
use std::time::{Duration, Instant};

use ferry::api::{
    PrecheckItem, PrecheckResult, PrecheckStatus, SlotStatus, SyncJob, SyncJobPhase, SyncJobSpec, SyncJobStatus,
    TaskType,
};
use ferry::operator::http::{Health, serve};
use ferry::operator::metrics::Metrics;
use ferry::operator::resources::Snapshot;
use http::Method;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::Time;
use mock_api::{call, context};
use runner::Runner;
use serde_json::json;
use support::Pair;
use tokio::io::{AsyncReadExt, AsyncWriteExt};

/// The names docs/metrics.md documents, by table (`Operator`, `Worker`).
fn documented(section: &str) -> BTreeSet<String> {
    let doc = std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/docs/metrics.md")).unwrap();
    let start = doc.find(&format!("## {section}\n")).unwrap();
    let rest = &doc[start + 4..];
    let end = rest.find("\n## ").unwrap_or(rest.len());
    rest[..end]
        .lines()
        .filter_map(|l| l.strip_prefix("| `ferry_"))
        .filter_map(|l| l.split('`').next())
        .map(|n| format!("ferry_{n}"))
        .collect()
}

/// Whether `text` has a sample of `name` (with the suffixes of its type).
fn served(text: &str, name: &str) -> bool {
    text.lines().filter(|l| !l.starts_with('#')).any(|l| {
        let metric = l.split(['{', ' ']).next().unwrap_or("");
        metric == name || metric == format!("{name}_bucket") || metric == format!("{name}_count")
    })
}

/// The value of the sample `series` (name and labels, exactly as printed).
fn value(text: &str, series: &str) -> Option<f64> {
    text.lines().find_map(|l| l.strip_prefix(series)?.strip_prefix(' ')?.parse().ok())
}

async fn scrape(addr: std::net::SocketAddr) -> String {
    let mut s = tokio::net::TcpStream::connect(addr).await.unwrap();
    s.write_all(b"GET /metrics HTTP/1.1\r\nhost: test\r\n\r\n").await.unwrap();
    let mut out = String::new();
    s.read_to_string(&mut out).await.unwrap();
    assert!(out.starts_with("HTTP/1.1 200"), "{out}");
    assert!(out.contains("content-type: text/plain; version=0.0.4"), "{out}");
    out.split_once("\r\n\r\n").unwrap().1.to_owned()
}

/// `promtool check metrics` on the exposition: format and naming rules.
fn promtool_check(text: &str) {
    let promtool = which("promtool")
        .unwrap_or_else(|| panic!("promtool is missing: run scripts/install-deps.sh (Debian package prometheus)"));
    let mut child = std::process::Command::new(promtool)
        .args(["check", "metrics"])
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    use std::io::Write;
    child.stdin.take().unwrap().write_all(text.as_bytes()).unwrap();
    let out = child.wait_with_output().unwrap();
    let said = format!("{}{}", String::from_utf8_lossy(&out.stdout), String::from_utf8_lossy(&out.stderr));
    assert!(out.status.success() && said.trim().is_empty(), "promtool check metrics:\n{said}\non\n{text}");
}

fn which(tool: &str) -> Option<std::path::PathBuf> {
    std::env::var_os("PATH")?.to_str()?.split(':').map(|d| std::path::Path::new(d).join(tool)).find(|p| p.is_file())
}

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_running_worker_serves_every_worker_series_with_sane_values() {
    let pair = Pair::start();
    let src = pair.source().await;
    src.batch_execute(
        "CREATE TABLE items (id bigint PRIMARY KEY, note text);
         INSERT INTO items SELECT g, 'item ' || g FROM generate_series(1, 50000) g;
         ANALYZE items;",
    )
    .await
    .unwrap();
    let dir = tempfile::tempdir().unwrap();
    let mut spec = pair.spec(TaskType::FullIncrTrans, &["items"]);
    spec.tuning = Some(ferry::api::Tuning { batch_rows: Some(10_000), ..Default::default() });
    let manifest = dir.path().join("job.yaml");
    std::fs::write(&manifest, pair.manifest("items", &spec)).unwrap();
    let addr: std::net::SocketAddr = format!("127.0.0.1:{}", free_port()).parse().unwrap();
    let mut run = Runner::start_with(dir.path(), &manifest, 1, &["--metrics-listen", &addr.to_string()]);

    // Changes once the copy is done, so the stream applies batches.
    let deadline = Instant::now() + Duration::from_secs(120);
    let mut wrote = false;
    let text = loop {
        run.assert_running();
        assert!(Instant::now() < deadline, "the worker metrics never showed the stream:\n{}", run.log());
        tokio::time::sleep(Duration::from_millis(300)).await;
        let Ok(Ok(text)) = tokio::time::timeout(Duration::from_secs(5), async {
            Ok::<_, ()>(match tokio::net::TcpStream::connect(addr).await {
                Ok(_) => scrape(addr).await,
                Err(_) => String::new(),
            })
        })
        .await
        else {
            continue;
        };
        let full = value(&text, "ferry_worker_rows_written_total{stage=\"full\"}").unwrap_or(0.0);
        if full >= 50_000.0 && !wrote {
            src.batch_execute("INSERT INTO items SELECT g, 'late ' || g FROM generate_series(50001, 50100) g;")
                .await
                .unwrap();
            wrote = true;
        }
        let incremental = value(&text, "ferry_worker_rows_written_total{stage=\"incremental\"}").unwrap_or(0.0);
        if wrote && incremental >= 100.0 && served(&text, "ferry_worker_slot_retained_wal_bytes") {
            break text;
        }
    };
    // The same measurement reaches the job's status (`status.slot`), where the operator keeps
    // reporting it while no worker runs.
    let status_file = dir.path().join("status.json");
    let deadline = Instant::now() + Duration::from_secs(30);
    let slot = loop {
        let status: serde_json::Value =
            std::fs::read_to_string(&status_file).ok().and_then(|t| serde_json::from_str(&t).ok()).unwrap_or_default();
        if status["slot"]["retainedWalBytes"].is_u64() {
            break status["slot"].clone();
        }
        assert!(Instant::now() < deadline, "no slot in the status file: {status}");
        tokio::time::sleep(Duration::from_millis(200)).await;
    };
    assert!(slot["name"].as_str().is_some_and(|n| n.starts_with("ferry_")), "{slot}");
    assert!(slot["measuredAt"].is_string(), "{slot}");
    assert!(slot.get("inactiveSince").is_none(), "a running worker's slot is not idle: {slot}");
    run.stop_cleanly();

    for name in documented("Worker") {
        assert!(served(&text, &name), "{name} not served:\n{text}");
    }
    assert_eq!(value(&text, "ferry_worker_rows_read_total{stage=\"full\"}"), Some(50_000.0));
    assert_eq!(
        value(&text, "ferry_worker_chunks{state=\"total\"}"),
        value(&text, "ferry_worker_chunks{state=\"done\"}")
    );
    assert!(value(&text, "ferry_worker_chunks{state=\"done\"}").unwrap() >= 5.0, "{text}");
    assert!(value(&text, "ferry_worker_rows_read_total{stage=\"incremental\"}").unwrap() >= 100.0);
    assert!(value(&text, "ferry_worker_apply_batch_seconds_count").unwrap() >= 1.0);
    assert!(value(&text, "ferry_worker_bytes_written_total{stage=\"full\"}").unwrap() > 50_000.0 * 5.0);
    let wal = value(&text, "ferry_worker_slot_retained_wal_bytes").unwrap();
    assert!((0.0..1e10).contains(&wal), "{wal}");
    assert!(value(&text, "ferry_worker_lag_seconds").unwrap() < 3600.0);
    promtool_check(&text);
}

fn job_with(status: SyncJobStatus) -> SyncJob {
    let mut j = SyncJob::new("orders", SyncJobSpec::test());
    j.metadata.namespace = Some("shop".into());
    j.metadata.uid = Some("uid-1".into());
    j.metadata.generation = Some(1);
    j.metadata.finalizers = Some(vec![ferry::controller::syncjob::FINALIZER.into()]);
    j.spec.alarm = Some(ferry::api::Alarm { delay_seconds: Some(30), ..Default::default() });
    j.status = Some(status);
    j
}

#[tokio::test]
async fn the_operator_serves_reconcile_and_per_job_series_after_a_scenario() {
    let metrics = Arc::new(Metrics::default());
    let status = SyncJobStatus {
        phase: Some(SyncJobPhase::Configuration),
        precheck: Some(PrecheckStatus {
            passed: Some(false),
            observed_generation: Some(1),
            progress: Some(100),
            passed_rate: Some(50.0),
            items: vec![
                PrecheckItem {
                    item: "source.connect".into(),
                    result: PrecheckResult::Passed,
                    reason: None,
                    fix: None,
                    skippable: false,
                    skipped: false,
                },
                PrecheckItem {
                    item: "source.walLevel".into(),
                    result: PrecheckResult::Failed,
                    reason: Some("wal_level is replica".into()),
                    fix: Some("set wal_level = logical and restart".into()),
                    skippable: false,
                    skipped: false,
                },
            ],
        }),
        ..Default::default()
    };
    let job = job_with(status);

    // One reconcile as the operator runs it: timed and counted.
    let (ctx, mut api) = context();
    let guard = metrics.reconcile("syncjob");
    let jv = serde_json::to_value(&job).unwrap();
    let run = tokio::spawn(ferry::controller::syncjob::reconcile(Arc::new(job.clone()), ctx));
    let pods = json!({"apiVersion": "v1", "kind": "PodList", "metadata": {}, "items": []});
    api.expect(call(Method::GET, "/api/v1/namespaces/shop/pods", pods)).await;
    let (_, applied) =
        api.expect(call(Method::PATCH, "/apis/ferry.dev/v1alpha1/namespaces/shop/syncjobs/orders/status", jv)).await;
    run.await.unwrap().unwrap();
    drop(guard);
    metrics.failed("syncjob", "conflict");

    // The cache now holds the job with the status the reconcile applied.
    let mut cached = job.clone();
    let mut status: SyncJobStatus = serde_json::from_value(applied["status"].clone()).unwrap();
    status.precheck = job.status.as_ref().unwrap().precheck.clone();
    status.progress = Some(ferry::api::Progress { percent: Some(0.0), ..Default::default() });
    cached.status = Some(status);
    let mut task = ferry::api::compare::CompareTask::new(
        "check",
        serde_json::from_value(json!({"type": "content", "syncJobRef": {"name": "orders"}})).unwrap(),
    );
    task.metadata.namespace = Some("shop".into());
    task.status = Some(
        serde_json::from_value(json!({"phase": "SUCCESSFUL", "result": "CONSISTENT",
            "tables": [{"source": "public.orders", "target": "public.orders", "differentRows": 0}]}))
        .unwrap(),
    );
    let mut batch = ferry::api::BatchJob::new(
        "tenants",
        serde_json::from_value(json!({"template": {}, "jobs": [{"name": "a"}]})).unwrap(),
    );
    batch.metadata.namespace = Some("shop".into());
    batch.status = Some(serde_json::from_value(json!({"total": 1, "counts": {"CONFIGURATION": 1}})).unwrap());
    // A paused job that has held its slot for an hour without a worker.
    let an_hour_ago = jiff::Timestamp::now() - jiff::SignedDuration::from_secs(3600);
    let mut paused = job_with(SyncJobStatus {
        phase: Some(SyncJobPhase::Pausing),
        slot: Some(SlotStatus {
            inactive_since: Some(Time(an_hour_ago)),
            ..SlotStatus::measured("ferry_shop_invoices_1", 5 << 30, Time(an_hour_ago))
        }),
        ..Default::default()
    });
    paused.metadata.name = Some("invoices".into());
    paused.spec.slot_retention_minutes = 120;
    let snapshot = Snapshot {
        jobs: vec![Arc::new(cached), Arc::new(paused)],
        tasks: vec![Arc::new(task)],
        batches: vec![Arc::new(batch)],
    };
    metrics.resources.watch(move || snapshot.clone());

    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let exposed = Arc::clone(&metrics);
    let health = Health { metrics: Box::new(move || exposed.encode()), ready: AtomicBool::new(true) };
    tokio::spawn(serve(listener, Arc::new(health)));
    let text = scrape(addr).await;

    for name in documented("Operator") {
        // Per-job series of a kind the snapshot has no value for are left out, never zeroed.
        let optional =
            ["ferry_syncjob_lag_seconds", "ferry_syncjob_checkpoint_age_seconds", "ferry_syncjob_progress_ratio"];
        if optional.contains(&name.as_str()) {
            continue;
        }
        assert!(served(&text, &name), "{name} not served:\n{text}");
    }
    let o = "{namespace=\"shop\",name=\"orders\"}";
    assert_eq!(value(&text, "ferry_reconcile_runs_total{controller=\"syncjob\"}"), Some(1.0));
    assert_eq!(value(&text, "ferry_reconcile_duration_seconds_count{controller=\"syncjob\"}"), Some(1.0));
    assert_eq!(value(&text, "ferry_reconcile_failures_total{controller=\"syncjob\",category=\"conflict\"}"), Some(1.0));
    assert_eq!(value(&text, "ferry_syncjobs{phase=\"CONFIGURATION\"}"), Some(1.0));
    assert_eq!(
        value(&text, "ferry_syncjob_phase{namespace=\"shop\",name=\"orders\",phase=\"CONFIGURATION\"}"),
        Some(1.0)
    );
    assert_eq!(value(&text, &format!("ferry_syncjob_precheck_failures{o}")), Some(1.0));
    assert_eq!(value(&text, &format!("ferry_syncjob_ready{o}")), Some(0.0));
    assert_eq!(value(&text, &format!("ferry_syncjob_failed{o}")), Some(0.0));
    assert_eq!(value(&text, &format!("ferry_syncjob_lag_threshold_seconds{o}")), Some(30.0));
    let held = "{namespace=\"shop\",name=\"invoices\"}";
    assert_eq!(
        value(&text, &format!("ferry_syncjob_slot_retained_wal_bytes{held}")),
        Some(5.0 * 1024.0 * 1024.0 * 1024.0)
    );
    let idle = value(&text, &format!("ferry_syncjob_slot_inactive_seconds{held}")).unwrap();
    assert!((3600.0..3700.0).contains(&idle), "{idle}");
    assert_eq!(value(&text, &format!("ferry_syncjob_slot_retention_seconds{held}")), Some(7200.0));
    assert_eq!(value(&text, &format!("ferry_syncjob_slot_retention_seconds{o}")), Some(86_400.0));
    assert_eq!(value(&text, &format!("ferry_syncjob_slot_inactive_seconds{o}")), None, "no slot reported");
    assert_eq!(value(&text, "ferry_comparetask_consistent{namespace=\"shop\",name=\"check\"}"), Some(1.0));
    assert_eq!(
        value(&text, "ferry_batchjob_children{namespace=\"shop\",name=\"tenants\",phase=\"CONFIGURATION\"}"),
        Some(1.0)
    );
    promtool_check(&text);
}
