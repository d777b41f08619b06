//! A MariaDB → PostgreSQL `FULL_INCR_TRANS` job whose `ferry run` worker is SIGKILLed at four
//! points of its pipeline while a writer changes every table on the source, then restarted each
//! time: mid-copy, between the end of the copy and the stream's first checkpoint, during the
//! catch-up to the newest chunk's snapshot, and while streaming. At the end every row is compared
//! by the compare library (what a CompareTask runs) and must be the same, the keyless table's
//! duplicates each as many times as on the source. Each kill point is asserted from the target's
//! `_ferry` ledger, as it stood when the worker died.

mod my_pg_support;
mod runner;

use std::path::Path;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use ferry::api::{CompareResult, SpeedLimit, TaskType, Tuning};
use ferry::compare::{self, Options};
use my_pg_support::{Servers, exec, until};
use mysql_async::Conn;
use mysql_async::prelude::Queryable;
use runner::Runner;
use tokio_postgres::Client;

/// Three tables: an integer key with a secondary and a unique index, a composite key with a
/// text column in it, and no key at all with each row there ten or twelve times.
const SOURCE: &str = "
    CREATE DATABASE shop; USE shop;
    CREATE TABLE accounts (id bigint PRIMARY KEY, ref varchar(20) NOT NULL, balance decimal(14,2) NOT NULL,
        note varchar(100), UNIQUE KEY by_ref (ref), KEY by_balance (balance));
    INSERT INTO accounts SELECT seq, concat('r', seq), seq / 3.0, concat('row ', seq, repeat('x', 40))
        FROM seq_1_to_40000;
    CREATE TABLE order_lines (ord int NOT NULL, code varchar(20) NOT NULL, qty int NOT NULL, note text,
        PRIMARY KEY (ord, code));
    INSERT INTO order_lines SELECT seq DIV 5, concat('c', seq % 5), seq, concat('line ', seq) FROM seq_1_to_12000;
    CREATE TABLE events (n int, label varchar(40));
    INSERT INTO events SELECT seq % 500, 'dup' FROM seq_1_to_6000;
    ANALYZE TABLE accounts, order_lines, events;";

/// Writes without pause until `running` is cleared, on all three tables: inserts, updates
/// (moving integer and text keys among them), deletes, and duplicate rows in the keyless table
/// updated and deleted one at a time. Returns how many transactions it committed.
fn writer(servers: &Servers, running: Arc<AtomicBool>) -> tokio::task::JoinHandle<u64> {
    let opts = servers.source.opts(Some("shop"));
    tokio::spawn(async move {
        let mut conn = Conn::new(opts).await.unwrap();
        let mut i: u64 = 0;
        while running.load(Ordering::SeqCst) {
            conn.query_drop(format!(
                "BEGIN;
                 INSERT INTO accounts VALUES ({new}, 'n{i}', {i}, 'new');
                 UPDATE accounts SET balance = balance + 1, note = 'upd {i}' WHERE id = {upd};
                 DELETE FROM accounts WHERE id = {del};
                 UPDATE accounts SET id = {moved_to} WHERE id = {moved};
                 INSERT INTO order_lines VALUES ({new}, 'new', {i}, NULL);
                 UPDATE order_lines SET qty = qty + 1, note = NULL WHERE ord = {line} AND code = 'c0';
                 UPDATE order_lines SET code = 'k{i}' WHERE ord = {line_moved} AND code = 'c1';
                 UPDATE order_lines SET ord = {moved_to} WHERE ord = {line_moved} AND code = 'c2';
                 DELETE FROM order_lines WHERE ord = {line_del} AND code IN ('c3', 'c4');
                 INSERT INTO events VALUES ({dup}, 'dup'), ({dup}, 'new');
                 UPDATE events SET label = 'upd' WHERE n = {dup_upd} AND label = 'dup' LIMIT 1;
                 DELETE FROM events WHERE n = {dup_del} LIMIT 1;
                 COMMIT;",
                new = 1_000_000 + i,
                upd = 1 + (i * 7) % 40_000,
                del = 2 + (i * 13) % 40_000,
                moved = 3 + (i * 17) % 40_000,
                moved_to = 2_000_000 + i,
                line = (i * 7) % 2_400,
                line_moved = (i * 11) % 2_400,
                line_del = (i * 13) % 2_400,
                dup = i % 500,
                dup_upd = (i * 3) % 500,
                dup_del = (i * 7) % 500,
            ))
            .await
            .unwrap();
            i += 1;
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
        i
    })
}

/// The job's ledger on the target: chunks done and planned (every table, and the biggest
/// alone), whether the full transfer is marked done, and whether the checkpoint is set, before
/// the end of the catch-up (`safe_end`), and after the start.
#[derive(Debug)]
struct LedgerState {
    done: i64,
    chunks: i64,
    accounts_done: i64,
    accounts_chunks: i64,
    full_done: bool,
    checkpoint: Option<String>,
    before_safe_end: Option<bool>,
    safe_end_after_start: Option<bool>,
}

async fn ledger_state(pg: &Client) -> LedgerState {
    let r = pg
        .query_one(
            "SELECT (SELECT count(*) FILTER (WHERE done) FROM _ferry.chunks),
                    (SELECT count(*) FROM _ferry.chunks),
                    (SELECT count(*) FILTER (WHERE done) FROM _ferry.chunks WHERE table_name = 'shop.accounts'),
                    (SELECT count(*) FROM _ferry.chunks WHERE table_name = 'shop.accounts'),
                    full_done, checkpoint_lsn::text, checkpoint_lsn < safe_end_lsn, safe_end_lsn > start_lsn
             FROM _ferry.jobs",
            &[],
        )
        .await
        .unwrap();
    LedgerState {
        done: r.get(0),
        chunks: r.get(1),
        accounts_done: r.get(2),
        accounts_chunks: r.get(3),
        full_done: r.get(4),
        checkpoint: r.get(5),
        before_safe_end: r.get(6),
        safe_end_after_start: r.get(7),
    }
}

/// What the target is doing on other sessions: a key or index being built, if any.
async fn building(pg: &Client) -> Option<String> {
    pg.query_opt(
        "SELECT query FROM pg_stat_activity WHERE pid <> pg_backend_pid() AND state = 'active'
           AND (query ILIKE 'CREATE%INDEX%' OR query ILIKE 'ALTER TABLE%ADD PRIMARY KEY%') LIMIT 1",
        &[],
    )
    .await
    .unwrap()
    .map(|r| r.get(0))
}

/// Every row of the keyless table, sorted: its multiset.
async fn events(src: &mut Conn, pg: &Client) -> (Vec<(i64, String)>, Vec<(i64, String)>) {
    let mut mine: Vec<(i64, String)> = src.query("SELECT n, label FROM shop.events").await.unwrap();
    let mut theirs: Vec<(i64, String)> = pg
        .query("SELECT n::int8, label FROM shop.events", &[])
        .await
        .unwrap()
        .iter()
        .map(|r| (r.get(0), r.get(1)))
        .collect();
    mine.sort();
    theirs.sort();
    (mine, theirs)
}

fn logs(dir: &Path) -> String {
    (1..=5)
        .map(|n| {
            format!("--- run {n}:\n{}", std::fs::read_to_string(dir.join(format!("run-{n}.log"))).unwrap_or_default())
        })
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_worker_killed_at_four_points_under_writes_ends_with_every_row_the_same() {
    let servers = Servers::start();
    exec(&mut servers.source().await, SOURCE).await;
    let mut spec = servers.spec(&["accounts", "order_lines", "events"]);
    spec.task_type = TaskType::FullIncrTrans;
    spec.tuning = Some(Tuning {
        batch_rows: Some(2000),
        read_parallelism: Some(2),
        apply_batch_transactions: Some(5),
        ..Default::default()
    });
    // Slow enough that the copy takes a few seconds and the first kill lands inside it.
    spec.speed_limits = vec![SpeedLimit { begin: "00:00".into(), end: "23:59".into(), mb_per_second: 1 }];
    let dir = tempfile::tempdir().unwrap();
    let manifest = dir.path().join("job.yaml");
    std::fs::write(&manifest, servers.manifest("kills", &spec)).unwrap();
    let pg = servers.target().await;
    let running = Arc::new(AtomicBool::new(true));
    let writes = writer(&servers, Arc::clone(&running));
    let t0 = Instant::now();

    // 1. Mid-copy: some of the biggest table's chunks done, not all.
    let mut run = Runner::start(dir.path(), &manifest, 1);
    until(
        &mut run,
        &pg,
        "SELECT count(*) FILTER (WHERE done) >= 4 AND bool_or(NOT done) FROM _ferry.chunks
         WHERE table_name = 'shop.accounts'",
    )
    .await;
    run.kill();
    let at = ledger_state(&pg).await;
    eprintln!("{:?} killed mid-copy: {at:?}", t0.elapsed());
    assert!(at.accounts_done > 0 && at.accounts_done < at.accounts_chunks && !at.full_done, "{at:?}");

    // 2. After the copy, before the stream's first checkpoint: during the keys and indexes built
    // after the copy, or (the build may take a few milliseconds only) once the full transfer is
    // marked done and the catch-up has not committed anything yet.
    let mut run = Runner::start(dir.path(), &manifest, 2);
    until(
        &mut run,
        &pg,
        "SELECT (SELECT bool_and(done) FROM _ferry.chunks) AND checkpoint_lsn IS NULL FROM _ferry.jobs",
    )
    .await;
    let build = building(&pg).await;
    run.kill();
    let at = ledger_state(&pg).await;
    eprintln!("{:?} killed after the copy (building: {build:?}): {at:?}", t0.elapsed());
    assert!(at.done == at.chunks && at.checkpoint.is_none(), "{at:?}");

    // 3. During the catch-up: the chunks read after the start (in the first run's snapshots
    // and, after the restart, in newer ones) put `safe_end` past the start; changes up to it
    // are applied idempotently, batch by batch, each with its checkpoint.
    let mut run = Runner::start(dir.path(), &manifest, 3);
    until(
        &mut run,
        &pg,
        "SELECT full_done AND checkpoint_lsn IS NOT NULL AND checkpoint_lsn < safe_end_lsn FROM _ferry.jobs",
    )
    .await;
    run.kill();
    let at = ledger_state(&pg).await;
    eprintln!("{:?} killed during the catch-up: {at:?}", t0.elapsed());
    assert!(at.full_done && at.before_safe_end == Some(true) && at.safe_end_after_start == Some(true), "{at:?}");

    // 4. Streaming under the writer's load: past `safe_end`, the checkpoint moving.
    let mut run = Runner::start(dir.path(), &manifest, 4);
    until(&mut run, &pg, "SELECT full_done AND checkpoint_lsn >= safe_end_lsn FROM _ferry.jobs").await;
    let streaming = ledger_state(&pg).await.checkpoint.unwrap();
    let moved = format!("SELECT checkpoint_lsn > '{streaming}'::pg_lsn FROM _ferry.jobs");
    until(&mut run, &pg, &moved).await;
    run.kill();
    let at = ledger_state(&pg).await;
    eprintln!("{:?} killed while streaming: {at:?}", t0.elapsed());
    assert!(at.full_done && at.before_safe_end == Some(false), "{at:?}");
    let killed_at = at.checkpoint.unwrap();

    // The last run streams on under the writer for a while, then everything written reaches
    // the target (the marker is the source's last transaction) and the job stops at a
    // checkpoint.
    let mut run = Runner::start(dir.path(), &manifest, 5);
    let resumed = format!("SELECT checkpoint_lsn > '{killed_at}'::pg_lsn FROM _ferry.jobs");
    until(&mut run, &pg, &resumed).await;
    tokio::time::sleep(Duration::from_millis(1000)).await;
    running.store(false, Ordering::SeqCst);
    let written = writes.await.unwrap();
    let mut src = servers.source().await;
    exec(&mut src, "INSERT INTO shop.accounts VALUES (9000000, 'marker', 0, 'the last write')").await;
    until(&mut run, &pg, "SELECT EXISTS (SELECT FROM shop.accounts WHERE id = 9000000)").await;
    run.stop_cleanly();
    eprintln!("{:?} stopped after {written} source transactions", t0.elapsed());

    let report = compare::run(&spec.source, &spec.target, &spec.objects, &servers.credentials(), Options::content(100))
        .await
        .unwrap();
    assert_eq!(report.result(), CompareResult::Consistent, "{report:#?}\n{}", logs(dir.path()));
    assert!(report.differences.is_empty(), "{report:#?}");
    assert_eq!(report.tables.len(), 3, "{report:#?}");
    for table in &report.tables {
        assert!(table.source_rows.is_some() && table.source_rows == table.target_rows, "{table:#?}");
    }
    let (mine, theirs) = events(&mut src, &pg).await;
    assert_eq!(mine.len(), theirs.len(), "rows of the keyless table");
    assert!(mine == theirs, "the keyless table's rows differ from the source's");
    // The keys and indexes all built, the unique one once the copy was consistent.
    let indexes: Vec<String> = pg
        .query("SELECT indexname::text FROM pg_indexes WHERE schemaname = 'shop' ORDER BY 1", &[])
        .await
        .unwrap()
        .iter()
        .map(|r| r.get(0))
        .collect();
    assert_eq!(indexes, ["accounts_by_balance", "accounts_by_ref", "accounts_pkey", "order_lines_pkey"]);
    eprintln!("{:?} compared", t0.elapsed());
}
