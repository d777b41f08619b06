//! A `ferry run` worker killed with SIGKILL at any moment and started again converges to a
//! target equal to the source, with no row lost or doubled. Each test kills it at a different
//! point while the source keeps changing.
//! Once the job has stopped at a checkpoint, the compare library (what a CompareTask runs) finds
//! every row the same.

mod runner;
mod support;

use std::collections::{HashMap, HashSet};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use ferry::api::{CompareResult, SpeedLimit, SyncJobSpec, TaskType, Tuning};
use ferry::compare::{self, Options};
use runner::Runner;
use support::{Pair, rows, try_wait_equal};
use tokio_postgres::Client;

/// The keys of `accounts` the writer's transaction `n` updates, deletes and moves (to
/// `2_000_000 + n`); it also inserts `1_000_000 + n`.
fn touched(n: i64) -> [i64; 3] {
    [1 + (n * 7) % 30_000, 2 + (n * 13) % 30_000, 3 + (n * 17) % 30_000]
}

/// Changes the source without pause until stopped: inserts, updates (some moving keys), deletes,
/// and inserts into the keyless table. Returns how many transactions it committed.
fn writer(pair: &Pair, running: Arc<AtomicBool>) -> tokio::task::JoinHandle<u64> {
    let port = pair.source.port();
    let config = pair.source.config("shop");
    let _ = port;
    tokio::spawn(async move {
        let (client, conn) = config.connect(tokio_postgres::NoTls).await.unwrap();
        tokio::spawn(conn);
        let mut i: u64 = 0;
        while running.load(Ordering::SeqCst) {
            let n = i as i64;
            let [upd, del, moved] = touched(n);
            client
                .batch_execute(&format!(
                    "BEGIN;
                     INSERT INTO accounts VALUES ({new}, {n}, 'new');
                     UPDATE accounts SET balance = balance + 1, note = 'upd {n}' WHERE id = {upd};
                     DELETE FROM accounts WHERE id = {del};
                     UPDATE accounts SET id = {moved_to} WHERE id = {moved};
                     INSERT INTO events VALUES ({n}, 'e{n}');
                     COMMIT;",
                    new = 1_000_000 + n,
                    moved_to = 2_000_000 + n,
                ))
                .await
                .unwrap();
            i += 1;
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
        i
    })
}

/// Creates the tables, `events` (no key) with `events` rows of which every 50th is an exact
/// duplicate of the one before, and writes the job's manifest; returns it with the job's spec.
async fn setup(pair: &Pair, dir: &Path, events: i64) -> (PathBuf, SyncJobSpec) {
    let src = pair.source().await;
    src.batch_execute(&format!(
        "CREATE TABLE accounts (id bigint PRIMARY KEY, balance numeric(14,2) NOT NULL, note text);
         INSERT INTO accounts SELECT g, g / 3.0, 'row ' || g FROM generate_series(1, 30000) g;
         CREATE TABLE events (n bigint, label text);
         ALTER TABLE events REPLICA IDENTITY FULL;
         INSERT INTO events SELECT CASE WHEN g % 50 = 0 THEN 1 - g ELSE -g END, 'old'
           FROM generate_series(1, {events}) g;
         ANALYZE;"
    ))
    .await
    .unwrap();
    let mut spec = pair.spec(TaskType::FullIncrTrans, &["accounts", "events"]);
    spec.tuning = Some(Tuning {
        batch_rows: Some(3000),
        read_parallelism: Some(2),
        apply_batch_transactions: Some(20),
        ..Default::default()
    });
    // Slow the full transfer down so the kills land inside it.
    spec.speed_limits = vec![SpeedLimit { begin: "00:00".into(), end: "23:59".into(), mb_per_second: 1 }];
    let manifest = dir.join("job.yaml");
    std::fs::write(&manifest, pair.manifest("resume", &spec)).unwrap();
    (manifest, spec)
}

async fn until(what: &str, runner: &mut Runner, tgt: &Client, sql: &str) {
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        runner.assert_running();
        let ok = match tgt.query_opt(sql, &[]).await {
            Ok(Some(row)) => row.get::<_, bool>(0),
            _ => false,
        };
        if ok {
            return;
        }
        assert!(Instant::now() < deadline, "timed out waiting for {what}:\n{}", runner.log());
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
}

/// What the target held when the first run was killed: the finished chunks in the ledger and
/// the row versions (`xmin`) of every row they copied.
struct Copied {
    /// Table, chunk, rows and read position of each finished chunk.
    ledger: Vec<(String, i32, Option<i64>, Option<String>)>,
    /// `accounts` key → `xmin`.
    accounts: HashMap<i64, String>,
    /// `events` rows (`n`, all negative: the writer adds only positive ones) → `xmin`.
    events: HashMap<i64, String>,
}

const LEDGER: &str = "SELECT table_name, chunk, rows, read_lsn::text FROM _ferry.chunks WHERE done ORDER BY 1, 2";

async fn versions(tgt: &Client, sql: &str) -> HashMap<i64, String> {
    tgt.query(sql, &[]).await.unwrap().iter().map(|r| (r.get(0), r.get(1))).collect()
}

impl Copied {
    async fn read(tgt: &Client) -> Copied {
        let ledger =
            tgt.query(LEDGER, &[]).await.unwrap().iter().map(|r| (r.get(0), r.get(1), r.get(2), r.get(3))).collect();
        Copied {
            ledger,
            accounts: versions(tgt, "SELECT id, xmin::text FROM accounts").await,
            events: versions(tgt, "SELECT n, xmin::text FROM events").await,
        }
    }

    /// The second run copied none of it again: the finished chunks keep their ledger entries,
    /// and every copied row the writer's `writes` transactions did not touch keeps the version
    /// its chunk's copy gave it (a chunk copied again would give all its rows a new one).
    async fn check_not_copied_again(&self, tgt: &Client, writes: u64) {
        let pending: i64 =
            tgt.query_one("SELECT count(*) FROM _ferry.chunks WHERE NOT done", &[]).await.unwrap().get(0);
        assert_eq!(pending, 0, "the second run copied the rest");
        let ledger: Vec<(String, i32, Option<i64>, Option<String>)> =
            tgt.query(LEDGER, &[]).await.unwrap().iter().map(|r| (r.get(0), r.get(1), r.get(2), r.get(3))).collect();
        for chunk in &self.ledger {
            assert!(ledger.contains(chunk), "finished chunk {chunk:?} was copied again: {ledger:?}");
        }
        assert!(ledger.len() > self.ledger.len(), "the second run copied chunks of its own");
        let touched: HashSet<i64> = (0..writes as i64).flat_map(touched).collect();
        let accounts = versions(tgt, "SELECT id, xmin::text FROM accounts").await;
        let mut kept = 0;
        for (id, xmin) in &self.accounts {
            if touched.contains(id) {
                continue;
            }
            assert_eq!(accounts.get(id), Some(xmin), "accounts row {id}, copied before the kill, was written again");
            kept += 1;
        }
        assert!(kept > 0, "no copied row to check");
        eprintln!(
            "{kept} accounts rows and {} events rows copied before the kill keep their version",
            self.events.len()
        );
        let events = versions(tgt, "SELECT n, xmin::text FROM events WHERE n < 0").await;
        for (n, xmin) in &self.events {
            assert_eq!(events.get(n), Some(xmin), "events row {n}, copied before the kill, was written again");
        }
    }
}

/// Starts the job, kills it when `kill_when` holds on the target, starts it again, and checks
/// the target converges while writes go on; with `not_again`, also that nothing the first run
/// copied is copied again.
async fn kill_and_resume(kill_when: &str, not_again: bool) {
    kill_and_resume_with(kill_when, not_again, 2000).await;
}

/// [`kill_and_resume`] with `events` rows in the keyless table.
async fn kill_and_resume_with(kill_when: &str, not_again: bool, events: i64) -> Pair {
    let pair = Pair::start();
    let dir = tempfile::tempdir().unwrap();
    let (manifest, spec) = setup(&pair, dir.path(), events).await;
    let running = Arc::new(AtomicBool::new(true));
    let writes = writer(&pair, Arc::clone(&running));
    let tgt = pair.target().await;

    let t0 = Instant::now();
    let mut first = Runner::start(dir.path(), &manifest, 1);
    until(kill_when, &mut first, &tgt, kill_when).await;
    first.kill();
    eprintln!("{:?} killed", t0.elapsed());
    let copied = if not_again { Some(Copied::read(&tgt).await) } else { None };

    let mut second = Runner::start(dir.path(), &manifest, 2);
    until("the incremental phase", &mut second, &tgt, "SELECT checkpoint_lsn IS NOT NULL FROM _ferry.jobs").await;
    eprintln!("{:?} second run streaming", t0.elapsed());
    tokio::time::sleep(Duration::from_millis(500)).await;
    running.store(false, Ordering::SeqCst);
    let n = writes.await.unwrap();
    assert!(n > 0);
    for table in ["accounts", "events"] {
        if let Err(e) = try_wait_equal(&pair, table, table, Duration::from_secs(60)).await {
            panic!(
                "{e}\n--- first run:\n{}\n--- second run:\n{}",
                std::fs::read_to_string(dir.path().join("run-1.log")).unwrap_or_default(),
                second.log()
            );
        }
    }
    eprintln!("{:?} equal", t0.elapsed());
    if let Some(copied) = &copied {
        copied.check_not_copied_again(&tgt, n).await;
    }
    // The status file holds the CR status shape: the incremental phase, and (rewritten every
    // second) the checkpoint.
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let status: ferry::api::SyncJobStatus =
            serde_json::from_slice(&std::fs::read(dir.path().join("status.json")).unwrap()).expect("a SyncJob status");
        assert_eq!(status.phase, Some(ferry::api::SyncJobPhase::IncreTransferStarted));
        if status.checkpoint.and_then(|c| c.position).is_some() {
            break;
        }
        assert!(Instant::now() < deadline, "no checkpoint in the status file:\n{}", second.log());
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    second.stop_cleanly();
    // What a CompareTask runs finds every row the same.
    let report = compare::run(&spec.source, &spec.target, &spec.objects, &pair.credentials(), Options::content(100))
        .await
        .unwrap();
    assert_eq!(report.result(), CompareResult::Consistent, "{report:#?}");
    assert!(report.differences.is_empty() && report.tables.len() == 2, "{report:#?}");
    let src = pair.source().await;
    assert_eq!(rows(&src, "events").await, rows(&tgt, "events").await, "no doubled rows in the keyless table");
    pair
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn killed_while_the_first_chunks_are_copied_it_resumes() {
    kill_and_resume("SELECT EXISTS (SELECT 1 FROM _ferry.jobs)", false).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn killed_halfway_through_the_full_transfer_it_copies_only_the_rest() {
    // Chunks of an integer key are cut by min and max, and the writer's keys lie far above the
    // first ones: most chunks are nearly empty, so wait for finished chunks that hold rows.
    kill_and_resume(
        "SELECT count(*) FILTER (WHERE done) >= 4 AND sum(rows) FILTER (WHERE done) > 0 AND bool_or(NOT done) \
         FROM _ferry.chunks",
        true,
    )
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn killed_between_the_full_and_the_incremental_transfer_it_resumes() {
    kill_and_resume("SELECT full_done FROM _ferry.jobs", false).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn killed_while_applying_changes_it_applies_each_exactly_once() {
    kill_and_resume(
        "SELECT checkpoint_lsn IS NOT NULL AND updated_at > now() - interval '1 second' FROM _ferry.jobs",
        false,
    )
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn killed_while_a_keyless_table_is_copied_in_page_ranges_it_copies_it_again_whole() {
    // 40,000 rows in chunks of 3,000: the keyless table is split into ranges of heap pages.
    let pair = kill_and_resume_with(
        "SELECT count(*) FILTER (WHERE done) >= 1 AND bool_or(NOT done) FROM _ferry.chunks \
         WHERE table_name = 'public.events'",
        false,
        40_000,
    )
    .await;
    let tgt = pair.target().await;
    let chunks: i64 = tgt
        .query_one("SELECT count(*) FROM _ferry.chunks WHERE table_name = 'public.events'", &[])
        .await
        .unwrap()
        .get(0);
    assert_eq!(chunks, 1, "the second run copied the keyless table in one chunk of its own snapshot");
}

/// A job whose replication slot is gone (dropped by hand while the worker was down) cannot bring
/// what the target holds up to date: the next run empties the target tables and starts over
/// with a new slot, and the target converges without a doubled row in the keyless table.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_job_whose_slot_was_dropped_starts_over_and_converges() {
    let pair = Pair::start();
    let dir = tempfile::tempdir().unwrap();
    let (manifest, spec) = setup(&pair, dir.path(), 2000).await;
    let running = Arc::new(AtomicBool::new(true));
    let writes = writer(&pair, Arc::clone(&running));
    let tgt = pair.target().await;
    let src = pair.source().await;

    let mut first = Runner::start(dir.path(), &manifest, 1);
    until("the incremental phase", &mut first, &tgt, "SELECT checkpoint_lsn IS NOT NULL FROM _ferry.jobs").await;
    first.kill();
    let row = tgt.query_one("SELECT slot, start_lsn::text FROM _ferry.jobs", &[]).await.unwrap();
    let (slot, first_start): (String, String) = (row.get(0), row.get(1));
    // The killed worker's session may take a moment to let go of the slot.
    let deadline = Instant::now() + Duration::from_secs(30);
    while let Err(e) = src.execute("SELECT pg_drop_replication_slot($1)", &[&slot]).await {
        assert!(Instant::now() < deadline, "could not drop slot {slot}: {e}");
        tokio::time::sleep(Duration::from_millis(200)).await;
    }

    let mut second = Runner::start(dir.path(), &manifest, 2);
    let started_over = format!(
        "SELECT start_lsn::text <> '{first_start}' AND checkpoint_lsn IS NOT NULL AND full_done FROM _ferry.jobs"
    );
    until("a new start, streaming", &mut second, &tgt, &started_over).await;
    assert!(second.log().contains("starting the transfer over"), "{}", second.log());
    tokio::time::sleep(Duration::from_millis(500)).await;
    running.store(false, Ordering::SeqCst);
    assert!(writes.await.unwrap() > 0);
    for table in ["accounts", "events"] {
        try_wait_equal(&pair, table, table, Duration::from_secs(60))
            .await
            .unwrap_or_else(|e| panic!("{e}\n--- second run:\n{}", second.log()));
    }
    second.stop_cleanly();
    let report = compare::run(&spec.source, &spec.target, &spec.objects, &pair.credentials(), Options::content(100))
        .await
        .unwrap();
    assert_eq!(report.result(), CompareResult::Consistent, "{report:#?}");
    assert_eq!(rows(&src, "events").await, rows(&tgt, "events").await, "no doubled rows in the keyless table");
}
