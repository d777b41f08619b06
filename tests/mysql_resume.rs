//! A `ferry run` worker of a MariaDB → MariaDB job killed with SIGKILL at any moment and started
//! again converges to a target equal to the source, with no row lost or doubled. Each test kills
//! it at a different point while the source keeps changing.
//! Once the job has stopped at a checkpoint, the compare library (what a CompareTask runs) finds
//! every row the same.

mod my_support;
mod runner;

use std::collections::HashSet;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use ferry::api::{CompareResult, SpeedLimit, SyncJobSpec, TaskType, Tuning};
use ferry::compare::{self, Options};
use my_support::{MyPair, exec, rows, try_wait_equal};
use mysql_async::Conn;
use mysql_async::prelude::Queryable;
use runner::Runner;

/// Changes the source without pause until stopped: inserts, updates (some moving keys), deletes,
/// inserts into the keyless table, and in the split keyless table rows moved between its ranges,
/// duplicates added and one of them deleted. Returns how many transactions it committed.
fn writer(pair: &MyPair, running: Arc<AtomicBool>) -> tokio::task::JoinHandle<u64> {
    let opts = pair.source.opts(Some("shop"));
    tokio::spawn(async move {
        let mut conn = Conn::new(opts).await.unwrap();
        let mut i: u64 = 0;
        while running.load(Ordering::SeqCst) {
            let n = i as i64;
            conn.query_drop(format!(
                "BEGIN;
                 INSERT INTO accounts VALUES ({new}, {n}, 'new');
                 UPDATE accounts SET balance = balance + 1, note = 'upd {n}' WHERE id = {upd};
                 DELETE FROM accounts WHERE id = {del};
                 UPDATE accounts SET id = {moved_to} WHERE id = {moved};
                 INSERT INTO events VALUES ({n}, 'e{n}');
                 UPDATE notes SET k = k + 10000 WHERE k = {low} LIMIT 1;
                 INSERT INTO notes VALUES ({dup}, 'dup'), ({dup}, 'dup'), (NULL, 'null {n}');
                 DELETE FROM notes WHERE k = {dup} AND label = 'dup' LIMIT 1;
                 COMMIT;",
                new = 1_000_000 + n,
                upd = 1 + (n * 7) % 30_000,
                del = 2 + (n * 13) % 30_000,
                moved = 3 + (n * 17) % 30_000,
                moved_to = 2_000_000 + n,
                low = 1 + (n * 7) % 12000,
                dup = n % 16000,
            ))
            .await
            .unwrap();
            i += 1;
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
        i
    })
}

/// Creates the tables and writes the job's manifest; returns it with the job's spec.
async fn setup(pair: &MyPair, dir: &Path) -> (PathBuf, SyncJobSpec) {
    exec(
        &mut pair.source().await,
        "CREATE DATABASE shop; USE shop;
         CREATE TABLE accounts (id bigint PRIMARY KEY, balance decimal(14,2) NOT NULL, note text);
         INSERT INTO accounts SELECT seq, seq / 3.0, concat('row ', seq) FROM seq_1_to_30000;
         CREATE TABLE events (n bigint, label text);
         INSERT INTO events SELECT -seq, 'old' FROM seq_1_to_2000;
         CREATE TABLE notes (k int NULL, label varchar(200) NOT NULL, KEY by_k (k)) ENGINE=InnoDB;
         INSERT INTO notes SELECT IF(seq % 7 = 0, NULL, seq DIV 3), concat('note ', seq DIV 2)
             FROM seq_1_to_50000;
         ANALYZE TABLE accounts, events, notes;",
    )
    .await;
    let mut spec = pair.spec(TaskType::FullIncrTrans, &["accounts", "events", "notes"]);
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

async fn until(what: &str, runner: &mut Runner, tgt: &mut Conn, sql: &str) {
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        runner.assert_running();
        if let Ok(Some(Some(true))) = tgt.query_first::<Option<bool>, _>(sql).await {
            return;
        }
        assert!(Instant::now() < deadline, "timed out waiting for {what}:\n{}", runner.log());
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
}

/// What the target held when the first run was killed: the finished chunks in the ledger and
/// the keys of the rows they copied (`notes`, a split keyless table, is copied again whole when
/// its copy was not finished: it is left out).
struct Copied {
    /// Table, chunk, rows and read position of each finished chunk.
    ledger: Vec<(String, i32, Option<u64>, Option<u64>)>,
    /// `accounts` keys.
    accounts: HashSet<i64>,
    /// `events` rows (`n`, all negative: the writer adds only positive ones).
    events: HashSet<i64>,
}

const LEDGER: &str = "SELECT table_name, chunk, `rows`, read_pos FROM _ferry.chunks \
    WHERE done AND table_name <> 'shop.notes' ORDER BY 1, 2";

/// Whether the ledger holds the split keyless table in several chunks not all copied.
const NOTES_UNFINISHED: &str =
    "SELECT count(*) > 1 AND sum(NOT done) > 0 FROM _ferry.chunks WHERE table_name = 'shop.notes'";

impl Copied {
    /// Reads what the first run copied, and from now on records on the target every row the
    /// full transfer loads (InnoDB keeps no row versions to compare; a trigger sees each row
    /// `LOAD DATA` writes, and records it only while `_ferry.jobs` says the full transfer is not
    /// done, which is before the stream applies anything).
    async fn read_and_watch(tgt: &mut Conn) -> Copied {
        let ledger = tgt.query(LEDGER).await.unwrap();
        let accounts = tgt.query("SELECT id FROM shop.accounts").await.unwrap().into_iter().collect();
        let events = tgt.query("SELECT n FROM shop.events").await.unwrap().into_iter().collect();
        exec(tgt, "CREATE DATABASE probe; CREATE TABLE probe.loaded (tbl varchar(16) NOT NULL, k bigint NOT NULL)")
            .await;
        for (table, key) in [("accounts", "id"), ("events", "n")] {
            exec(
                tgt,
                &format!(
                    "CREATE TRIGGER shop.{table}_loaded BEFORE INSERT ON shop.{table} FOR EACH ROW \
                     IF (SELECT NOT full_done FROM _ferry.jobs LIMIT 1) THEN \
                       INSERT INTO probe.loaded VALUES ('{table}', NEW.{key}); \
                     END IF"
                ),
            )
            .await;
        }
        Copied { ledger, accounts, events }
    }

    /// The second run copied none of it again: the finished chunks keep their ledger entries,
    /// and the rows its full transfer loaded are all outside them.
    async fn check_not_copied_again(&self, tgt: &mut Conn) {
        let pending: Option<u64> = tgt.query_first("SELECT count(*) FROM _ferry.chunks WHERE NOT done").await.unwrap();
        assert_eq!(pending, Some(0), "the second run copied the rest");
        let ledger: Vec<(String, i32, Option<u64>, Option<u64>)> = tgt.query(LEDGER).await.unwrap();
        for chunk in &self.ledger {
            assert!(ledger.contains(chunk), "finished chunk {chunk:?} was copied again: {ledger:?}");
        }
        let loaded: Vec<(String, i64)> = tgt.query("SELECT tbl, k FROM probe.loaded").await.unwrap();
        assert!(!loaded.is_empty(), "the second run loaded the rest");
        for (table, key) in &loaded {
            let copied = if table == "accounts" { &self.accounts } else { &self.events };
            assert!(!copied.contains(key), "{table} row {key}, copied before the kill, was loaded again");
        }
        eprintln!(
            "{} rows loaded by the second run, none of the {} copied before",
            loaded.len(),
            self.accounts.len() + self.events.len()
        );
    }
}

/// Starts the job, kills it when `kill_when` holds on the target, starts it again, and checks
/// the target converges while writes go on; with `not_again`, also that nothing the first run
/// copied is copied again.
async fn kill_and_resume(kill_when: &str, not_again: bool) {
    let pair = MyPair::start();
    let dir = tempfile::tempdir().unwrap();
    let (manifest, spec) = setup(&pair, dir.path()).await;
    let running = Arc::new(AtomicBool::new(true));
    let writes = writer(&pair, Arc::clone(&running));
    let mut tgt = pair.target().await;

    let t0 = Instant::now();
    let mut first = Runner::start(dir.path(), &manifest, 1);
    until(kill_when, &mut first, &mut tgt, kill_when).await;
    first.kill();
    eprintln!("{:?} killed", t0.elapsed());
    let notes_unfinished: Option<bool> = tgt.query_first(NOTES_UNFINISHED).await.unwrap().flatten();
    eprintln!("split keyless table unfinished when killed: {notes_unfinished:?}");
    let copied = if not_again { Some(Copied::read_and_watch(&mut tgt).await) } else { None };

    let mut second = Runner::start(dir.path(), &manifest, 2);
    let streaming = "SELECT checkpoint_pos IS NOT NULL FROM _ferry.jobs";
    until("the incremental phase", &mut second, &mut tgt, streaming).await;
    eprintln!("{:?} second run streaming", t0.elapsed());
    tokio::time::sleep(Duration::from_millis(500)).await;
    running.store(false, Ordering::SeqCst);
    let n = writes.await.unwrap();
    assert!(n > 0);
    for table in ["shop.accounts", "shop.events", "shop.notes"] {
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
        copied.check_not_copied_again(&mut tgt).await;
    }
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
    assert!(report.differences.is_empty() && report.tables.len() == 3, "{report:#?}");
    let mut src = pair.source().await;
    for table in ["shop.events", "shop.notes"] {
        assert_eq!(rows(&mut src, table).await, rows(&mut tgt, table).await, "no doubled rows in {table}");
    }
    let notes: Vec<(i32, bool)> =
        tgt.query("SELECT chunk, done FROM _ferry.chunks WHERE table_name = 'shop.notes'").await.unwrap();
    if notes_unfinished == Some(true) {
        assert_eq!(notes, vec![(0, true)], "the unfinished split keyless table was copied again in one chunk");
    } else {
        assert!(notes.len() > 1 && notes.iter().all(|(_, done)| *done), "notes copied in ranges: {notes:?}");
    }
    let index: Option<String> = tgt
        .query_first(
            "SELECT INDEX_NAME FROM information_schema.STATISTICS WHERE TABLE_SCHEMA = 'shop' AND TABLE_NAME = 'notes'",
        )
        .await
        .unwrap();
    assert_eq!(index.as_deref(), Some("by_k"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn killed_while_the_first_chunks_are_copied_it_resumes() {
    kill_and_resume("SELECT EXISTS (SELECT 1 FROM _ferry.jobs)", false).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn killed_halfway_through_the_full_transfer_it_copies_only_the_rest() {
    kill_and_resume("SELECT sum(done) >= 4 AND sum(NOT done) > 0 FROM _ferry.chunks", true).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn killed_while_a_split_keyless_table_is_copied_it_copies_that_table_again_whole() {
    kill_and_resume(
        "SELECT sum(done) >= 1 AND sum(NOT done) > 0 FROM _ferry.chunks WHERE table_name = 'shop.notes'",
        false,
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
        "SELECT checkpoint_pos IS NOT NULL AND updated_at > now(6) - INTERVAL 1 SECOND FROM _ferry.jobs",
        false,
    )
    .await;
}
