//! A source transaction of a million rows streamed to the target in bounded memory: the
//! worker hands it to the applier in pieces, which the target applies in one transaction of its
//! own and commits with the checkpoint. Killed halfway, the job starts again and the target ends
//! up with every row exactly once (the table has no key, so a row applied twice would show).
//!
//! This file holds one test so that the process's peak memory is the job's alone.

mod support;

use std::sync::Arc;
use std::time::{Duration, Instant};

use ferry::api::TaskType;
use ferry::engine::{self, Job, Tracker, progress::NoProgress};
use support::Pair;
use tokio::sync::watch;

/// The process's peak resident memory so far, in MiB (`VmHWM`).
fn peak_rss_mib() -> u64 {
    let status = std::fs::read_to_string("/proc/self/status").unwrap_or_default();
    status
        .lines()
        .find_map(|l| l.strip_prefix("VmHWM:"))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse::<u64>().ok())
        .map_or(0, |kb| kb / 1024)
}

const ROWS: i64 = 1_000_000;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_million_row_transaction_streams_in_bounded_memory_and_survives_a_kill() {
    let _ = tracing_subscriber::fmt().with_env_filter(tracing_subscriber::EnvFilter::from_default_env()).try_init();
    let pair = Pair::start();
    let src = pair.source().await;
    src.batch_execute(
        "CREATE TABLE events (id bigint, kind text, payload text);
         ALTER TABLE events REPLICA IDENTITY FULL;",
    )
    .await
    .unwrap();
    let spec = pair.spec(TaskType::FullIncrTrans, &["events"]);
    let creds = pair.credentials();
    let start = |stop| {
        let (spec, creds) = (spec.clone(), creds.clone());
        tokio::spawn(async move {
            let tracker = Tracker::new(Arc::new(NoProgress));
            engine::run(Job { id: "test/large", spec: &spec, credentials: &creds, tracker, stop }).await
        })
    };
    let (_stop_tx, stop) = watch::channel(false);
    let job = start(stop.clone());
    let tgt = pair.target().await;
    let deadline = Instant::now() + Duration::from_secs(60);
    while tgt.query_opt("SELECT 1 FROM _ferry.jobs WHERE full_done", &[]).await.ok().flatten().is_none() {
        assert!(Instant::now() < deadline, "the job did not start streaming");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let before = peak_rss_mib();
    // One transaction: a million rows of about 250 bytes.
    src.batch_execute(&format!(
        "INSERT INTO events SELECT g, 'kind' || (g % 7), repeat(md5(g::text), 7) FROM generate_series(1, {ROWS}) g"
    ))
    .await
    .unwrap();

    // Halfway through applying it, the worker dies: the target transaction is rolled back.
    let applying = Instant::now() + Duration::from_secs(120);
    loop {
        let active: i64 = tgt
            .query_one(
                "SELECT count(*) FROM pg_stat_activity WHERE datname = 'shop' AND state <> 'idle' \
                 AND query ILIKE 'INSERT INTO%events%'",
                &[],
            )
            .await
            .unwrap()
            .get(0);
        if active > 0 {
            break;
        }
        assert!(Instant::now() < applying, "the transaction never reached the target");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    tokio::time::sleep(Duration::from_secs(2)).await;
    job.abort();
    let _ = job.await;
    let partial: i64 = tgt.query_one("SELECT count(*) FROM events", &[]).await.unwrap().get(0);
    assert_eq!(partial, 0, "no piece of the transaction is visible before its commit");

    let job = start(stop);
    let deadline = Instant::now() + Duration::from_secs(600);
    loop {
        let n: i64 = tgt.query_one("SELECT count(*) FROM events", &[]).await.unwrap().get(0);
        if n == ROWS {
            break;
        }
        assert!(n < ROWS, "rows applied twice: {n}");
        if job.is_finished() {
            panic!("the job ended: {:?}", job.await);
        }
        assert!(Instant::now() < deadline, "the transaction was not applied ({n} rows)");
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
    // Read before the comparison below, which holds both tables' rows in this process.
    let peak = peak_rss_mib();
    let (rows_src, rows_tgt) = (support::rows(&src, "events").await, support::rows(&tgt, "events").await);
    assert!(rows_src == rows_tgt, "the target holds the source's rows, each once");
    println!("peak RSS: {before} MiB before the transaction, {peak} MiB after applying {ROWS} rows in one transaction");
    // Held whole, the decoded rows alone would take well over 400 MiB.
    assert!(peak < before + 250, "memory grew with the transaction: {before} MiB → {peak} MiB");
    job.abort();
}
