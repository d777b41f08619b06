//! The operator with 1,000 SyncJobs: the controller's store holding them (as the watch would
//! fill it), every job reconciled against a mocked API server that answers like a real one, and
//! the process's memory. Not a test: figures are printed, nothing is asserted on time.
//!
//! `cargo run --release --example bench_operator -- [JOBS] [ROUNDS]` (defaults 1000 and 5).

use std::sync::Arc;
use std::time::Instant;

use ferry::api::{PrecheckItem, PrecheckResult, PrecheckStatus, SyncJob, SyncJobPhase, SyncJobSpec, SyncJobStatus};
use ferry::controller::Context;
use ferry::controller::syncjob::{FINALIZER, reconcile};
use futures::StreamExt;
use http::{Request, Response};
use kube::Client;
use kube::client::Body;
use kube::runtime::events::{Recorder, Reporter};
use kube::runtime::reflector::{self, ObjectRef};
use kube::runtime::watcher;
use serde_json::{Value, json};

type Error = Box<dyn std::error::Error + Send + Sync>;

/// Resident memory of this process, in MiB (Linux).
fn rss_mib() -> f64 {
    let status = std::fs::read_to_string("/proc/self/status").unwrap_or_default();
    status
        .lines()
        .find(|l| l.starts_with("VmRSS:"))
        .and_then(|l| l.split_whitespace().nth(1))
        .and_then(|kb| kb.parse::<f64>().ok())
        .map_or(0.0, |kb| kb / 1024.0)
}

/// A job in one of the phases a busy cluster holds, with a realistic status.
fn job(i: usize) -> SyncJob {
    let mut j = SyncJob::new(&format!("job-{i:04}"), SyncJobSpec::test());
    j.metadata.namespace = Some(format!("team-{}", i % 20));
    j.metadata.uid = Some(format!("uid-{i}"));
    j.metadata.generation = Some(1);
    j.metadata.resource_version = Some(i.to_string());
    j.metadata.finalizers = Some(vec![FINALIZER.into()]);
    let phase =
        [SyncJobPhase::Configuration, SyncJobPhase::IncreTransferStarted, SyncJobPhase::FullTransferStarted][i % 3];
    j.status = Some(SyncJobStatus {
        phase: Some(phase),
        precheck: Some(PrecheckStatus {
            observed_generation: Some(1),
            passed: Some(true),
            items: (0..12)
                .map(|k| PrecheckItem {
                    item: format!("source.item{k}"),
                    result: PrecheckResult::Passed,
                    reason: None,
                    fix: None,
                    skippable: false,
                    skipped: false,
                })
                .collect(),
            ..Default::default()
        }),
        ..Default::default()
    });
    j
}

/// Answers every request as the API server would: empty pod lists, echoed creations and patches.
async fn api_server(
    mut handle: tower_test::mock::Handle<Request<Body>, Response<Body>>,
    calls: Arc<std::sync::atomic::AtomicU64>,
) {
    while let Some((request, send)) = handle.next_request().await {
        calls.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        let path = request.uri().path().to_owned();
        let method = request.method().clone();
        let body = request.into_body().collect_bytes().await.unwrap_or_default();
        let identity = ["/serviceaccounts/", "/roles/", "/rolebindings/"].iter().any(|k| path.contains(k));
        if method == http::Method::GET && identity {
            // Each job's worker identity does not exist yet: the reconcile creates it.
            let missing = json!({"apiVersion": "v1", "kind": "Status", "status": "Failure", "code": 404,
                                 "reason": "NotFound", "metadata": {}});
            let bytes = serde_json::to_vec(&missing).unwrap_or_default();
            let response = Response::builder().status(404).body(Body::from(bytes));
            send.send_response(response.unwrap_or_else(|_| Response::new(Body::empty())));
            continue;
        }
        let answer: Value = if method == http::Method::GET && path.ends_with("/pods") {
            json!({"apiVersion": "v1", "kind": "PodList", "metadata": {}, "items": []})
        } else if path.contains("/syncjobs/") {
            // A patched job: the server returns the whole object.
            let index = path.split("/syncjobs/job-").nth(1).and_then(|r| r.get(..4)).and_then(|n| n.parse().ok());
            serde_json::to_value(job(index.unwrap_or(0))).unwrap_or_default()
        } else {
            serde_json::from_slice(&body).unwrap_or_else(|_| json!({}))
        };
        let bytes = serde_json::to_vec(&answer).unwrap_or_default();
        send.send_response(
            Response::builder().body(Body::from(bytes)).unwrap_or_else(|_| Response::new(Body::empty())),
        );
    }
}

#[tokio::main(flavor = "multi_thread", worker_threads = 2)]
async fn main() -> Result<(), Error> {
    let args: Vec<String> = std::env::args().collect();
    let jobs: usize = args.get(1).and_then(|a| a.parse().ok()).unwrap_or(1000);
    let rounds: usize = args.get(2).and_then(|a| a.parse().ok()).unwrap_or(5);
    let before = rss_mib();

    // The controller's store, filled as the watcher fills it.
    let (reader, mut writer) = reflector::store::<SyncJob>();
    writer.apply_watcher_event(&watcher::Event::Init);
    for i in 0..jobs {
        writer.apply_watcher_event(&watcher::Event::InitApply(job(i)));
    }
    writer.apply_watcher_event(&watcher::Event::InitDone);
    let with_store = rss_mib();

    let (service, handle) = tower_test::mock::pair::<Request<Body>, Response<Body>>();
    let calls = Arc::new(std::sync::atomic::AtomicU64::new(0));
    tokio::spawn(api_server(handle, Arc::clone(&calls)));
    let client = Client::new(service, "default");
    let recorder = Recorder::new(client.clone(), Reporter { controller: "ferry-operator".into(), instance: None });
    let ctx =
        Arc::new(Context { client, policy: ferry::controller::policy::WorkerPolicy::new("ferry:bench"), recorder });

    println!("{jobs} SyncJobs in the controller's store; {rounds} rounds of reconciling every one");
    let mut rates = Vec::new();
    let mut peak = with_store;
    for round in 0..rounds {
        let started = Instant::now();
        let keys: Vec<ObjectRef<SyncJob>> = reader.state().iter().map(|j| ObjectRef::from_obj(j.as_ref())).collect();
        // As the controller does: several reconciles in flight at once.
        let results: Vec<_> = futures::stream::iter(keys)
            .map(|key| {
                let ctx = Arc::clone(&ctx);
                let job = reader.get(&key);
                async move {
                    match job {
                        Some(job) => reconcile(job, ctx).await.map(|_| ()).map_err(|e| e.to_string()),
                        None => Err("missing from the store".to_owned()),
                    }
                }
            })
            .buffer_unordered(64)
            .collect()
            .await;
        let failed = results.iter().filter(|r| r.is_err()).count();
        if let Some(Err(e)) = results.iter().find(|r| r.is_err()) {
            println!("first failure: {e}");
        }
        let secs = started.elapsed().as_secs_f64();
        rates.push(jobs as f64 / secs);
        peak = peak.max(rss_mib());
        println!(
            "round {}: {jobs} reconciles in {secs:.2} s = {:.0}/s, {failed} failed",
            round + 1,
            jobs as f64 / secs
        );
    }
    rates.sort_by(f64::total_cmp);
    println!();
    println!("memory: {before:.1} MiB at start, {with_store:.1} MiB with the store, peak {peak:.1} MiB RSS");
    println!("reconciles per second: median {:.0} (mocked API, 2 worker threads)", rates[rates.len() / 2]);
    println!("API calls answered: {}", calls.load(std::sync::atomic::Ordering::Relaxed));
    Ok(())
}
