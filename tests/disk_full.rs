//! A target whose disk fills up: the job fails with `TARGET_WRITE` saying the disk is full, the
//! chunk or batch that failed is not half-committed, and once there is room again a new run (as
//! the operator's retry starts one) converges to a target equal to the source, with no row lost
//! or doubled. For PostgreSQL and MariaDB targets, during the full transfer and while changes
//! stream, always with writes on the source.
//!
//! The target's tables live on a small tmpfs of their own (PostgreSQL: a tablespace, the target
//! database's default; MariaDB: the database's directory), so only they run out of room, as on a
//! data volume that fills. Mounting needs root: without it each test says so and passes.

mod my_support;
mod support;

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use ferry::api::{TaskType, Tuning};
use ferry::engine::{self, EngineError, Job, Outcome, Tracker, progress::NoProgress};
use ferry::testkit::{FilesystemOwner, SmallFilesystem};
use mysql_async::prelude::Queryable;
use tokio::sync::watch;

const MIB: u64 = 1 << 20;
/// The target's room: less than the source's data.
const SMALL: u64 = 16 * MIB;
/// The target's room in the MariaDB streaming test: InnoDB grows a table's file by several MiB
/// at a time (its copy of `accounts` takes 9 MiB), and some batches should commit before the
/// disk is full.
const MARIADB_STREAM_ROOM: u64 = 32 * MIB;
/// The room after an administrator made space.
const LARGE: u64 = 256 * MIB;
/// The longest a run may take to fail or to catch up; a full disk must never hang a job.
const DEADLINE: Duration = Duration::from_secs(60);
/// Rows of a bulk transaction in the streaming tests, about 1 KiB each.
const BULK_ROWS: i64 = 500;
/// The most bulk transactions written while waiting for a run to fail: about 150 MiB, far more
/// than the target's room.
const MAX_BULK_TRANSACTIONS: i64 = 300;

type Running = (watch::Sender<bool>, tokio::task::JoinHandle<Result<Outcome, EngineError>>);

/// Runs a job on a task until stopped through the returned sender.
fn spawn_job(spec: &ferry::api::SyncJobSpec, credentials: engine::Credentials, id: &'static str) -> Running {
    let (stop_tx, stop) = watch::channel(false);
    let spec = spec.clone();
    let runner = tokio::spawn(async move {
        let tracker = Tracker::new(Arc::new(NoProgress));
        engine::run(Job { id, spec: &spec, credentials: &credentials, tracker, stop }).await
    });
    (stop_tx, runner)
}

/// Waits for a run to fail, and checks it failed as a full target disk should: `TARGET_WRITE`,
/// the server's words for the `cause`, the `table`, and what to do.
async fn expect_disk_full(run: Running, cause: &str, table: &str) {
    let (_stop, runner) = run;
    let outcome = tokio::time::timeout(DEADLINE, runner).await.expect("the run neither failed nor finished").unwrap();
    let err = outcome.expect_err("the run fails once the target's disk is full");
    eprintln!("failed as expected: {err}");
    assert_eq!(err.code(), "TARGET_WRITE", "{err}");
    let message = err.to_string();
    assert!(message.contains(cause), "the message names the cause: {message}");
    assert!(message.contains(table), "the message names the table: {message}");
    assert!(message.contains("out of disk space: make room"), "the message says what to do: {message}");
}

/// Waits until `sql` on a PostgreSQL target returns true, failing if the run ends first.
async fn pg_until(
    tgt: &tokio_postgres::Client,
    runner: &tokio::task::JoinHandle<Result<Outcome, EngineError>>,
    sql: &str,
) {
    let deadline = Instant::now() + DEADLINE;
    loop {
        assert!(!runner.is_finished(), "the run ended while waiting for {sql}");
        if let Ok(Some(row)) = tgt.query_opt(sql, &[]).await
            && row.get::<_, Option<bool>>(0) == Some(true)
        {
            return;
        }
        assert!(Instant::now() < deadline, "timed out waiting for {sql}");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

// ---------------------------------------------------------------------------------------------
// PostgreSQL

/// A source and a target whose database `shop` keeps its tables on `fs` (a tablespace, the
/// database's default): the tables Ferry creates, its `_ferry` ledger too, land there.
async fn pg_pair_on(fs: &SmallFilesystem) -> support::Pair {
    let pair = support::Pair::start();
    let location = fs.path().to_str().expect("a UTF-8 temporary path").replace('\'', "''");
    let tgt = pair.target().await;
    // One statement each: CREATE TABLESPACE cannot run in the transaction a multi-statement
    // query is.
    tgt.batch_execute(&format!("CREATE TABLESPACE small LOCATION '{location}'")).await.unwrap();
    tgt.batch_execute("ALTER DATABASE shop SET default_tablespace = small").await.unwrap();
    pair
}

/// Changes `accounts` and the keyless `events` without pause until stopped (inserts, updates,
/// deletes, keys moved). New keys follow the `rows` there were, so the chunks planned while it
/// writes stay even.
fn pg_writer(pair: &support::Pair, running: Arc<AtomicBool>, rows: i64) -> tokio::task::JoinHandle<u64> {
    let config = pair.source.config("shop");
    tokio::spawn(async move {
        let (client, conn) = config.connect(tokio_postgres::NoTls).await.unwrap();
        tokio::spawn(conn);
        let mut i: u64 = 0;
        while running.load(Ordering::SeqCst) {
            let n = i as i64;
            client
                .batch_execute(&format!(
                    "BEGIN;
                     INSERT INTO accounts VALUES ({new}, {n}, 'new', 'p');
                     UPDATE accounts SET balance = balance + 1, note = 'upd {n}' WHERE id = {upd};
                     DELETE FROM accounts WHERE id = {del};
                     UPDATE accounts SET id = {moved_to} WHERE id = {moved};
                     INSERT INTO events VALUES ({n}, 'e{n}');
                     COMMIT;",
                    new = rows + 1 + 2 * n,
                    upd = 1 + (n * 7) % rows,
                    del = 2 + (n * 13) % rows,
                    moved = 3 + (n * 17) % rows,
                    moved_to = rows + 2 + 2 * n,
                ))
                .await
                .unwrap();
            i += 1;
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
        i
    })
}

/// `accounts` with `rows` rows of about 600 bytes, the keyless `events`, and the empty `bulk`.
async fn pg_source_tables(pair: &support::Pair, rows: i64) {
    pair.source()
        .await
        .batch_execute(&format!(
            "CREATE TABLE accounts (id bigint PRIMARY KEY, balance numeric(14,2) NOT NULL, note text, pad text);
             INSERT INTO accounts SELECT g, g / 3.0, 'row ' || g, repeat(md5(g::text), 16) FROM generate_series(1, {rows}) g;
             CREATE TABLE events (n bigint, label text);
             ALTER TABLE events REPLICA IDENTITY FULL;
             INSERT INTO events SELECT -g, 'old' FROM generate_series(1, 2000) g;
             CREATE TABLE bulk (id bigint PRIMARY KEY, tag int NOT NULL, pad text);
             ANALYZE;"
        ))
        .await
        .unwrap();
}

fn pg_spec(pair: &support::Pair) -> ferry::api::SyncJobSpec {
    let mut spec = pair.spec(TaskType::FullIncrTrans, &["accounts", "events", "bulk"]);
    spec.tuning = Some(Tuning {
        batch_rows: Some(4000),
        read_parallelism: Some(2),
        apply_batch_transactions: Some(10),
        ..Default::default()
    });
    spec
}

/// Stops the writer, waits for every table to be equal on both sides, and stops the run.
async fn pg_converge(pair: &support::Pair, running: &AtomicBool, writes: tokio::task::JoinHandle<u64>, run: Running) {
    running.store(false, Ordering::SeqCst);
    assert!(writes.await.unwrap() > 0, "the source changed during the test");
    for table in ["accounts", "events", "bulk"] {
        support::wait_equal(pair, table, table, DEADLINE).await;
    }
    let (stop, runner) = run;
    let _ = stop.send(true);
    assert!(matches!(runner.await.unwrap(), Ok(Outcome::Stopped)));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn postgres_a_full_disk_fails_the_full_transfer_without_a_half_chunk_and_a_retry_converges() {
    let Some(mut fs) = SmallFilesystem::mount(SMALL, FilesystemOwner::Postgres).unwrap() else { return };
    let pair = pg_pair_on(&fs).await;
    // About 24 MiB of rows for 16 MiB of room.
    let rows = 40_000;
    pg_source_tables(&pair, rows).await;
    let spec = pg_spec(&pair);
    let running = Arc::new(AtomicBool::new(true));
    let writes = pg_writer(&pair, Arc::clone(&running), rows);

    let run = spawn_job(&spec, pair.credentials(), "test/disk-full");
    expect_disk_full(run, "No space left on device", "public.accounts").await;

    // The chunks the ledger lists as done are on the target, whole; the others not at all.
    let tgt = pair.target().await;
    let row = tgt
        .query_one(
            "SELECT (SELECT count(*) FROM accounts), \
                    (SELECT coalesce(sum(rows), 0)::int8 FROM _ferry.chunks WHERE table_name = 'public.accounts' AND done), \
                    (SELECT count(*) FROM _ferry.chunks WHERE table_name = 'public.accounts' AND done), \
                    (SELECT count(*) FROM _ferry.chunks WHERE table_name = 'public.accounts' AND NOT done), \
                    (SELECT count(*) FROM accounts a JOIN _ferry.chunks c ON c.table_name = 'public.accounts' \
                       AND NOT c.done AND (c.lo IS NULL OR a.id >= c.lo[1]::int8) AND (c.hi IS NULL OR a.id < c.hi[1]::int8))",
            &[],
        )
        .await
        .unwrap();
    let (on_target, in_done_chunks, done, pending, in_pending_chunks): (i64, i64, i64, i64, i64) =
        (row.get(0), row.get(1), row.get(2), row.get(3), row.get(4));
    eprintln!("{done} chunks done with {in_done_chunks} rows, {pending} pending; {on_target} rows on the target");
    assert!(done > 0 && pending > 0, "the disk filled during the full transfer");
    assert_eq!(on_target, in_done_chunks, "only whole chunks are on the target");
    assert_eq!(in_pending_chunks, 0, "no row of a chunk that is not done is on the target");

    fs.resize(LARGE).unwrap();
    let run = spawn_job(&spec, pair.credentials(), "test/disk-full");
    pg_until(&tgt, &run.1, "SELECT full_done FROM _ferry.jobs").await;
    pg_converge(&pair, &running, writes, run).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn postgres_a_full_disk_fails_the_stream_without_moving_the_checkpoint_past_the_batch_and_a_retry_converges() {
    let Some(mut fs) = SmallFilesystem::mount(SMALL, FilesystemOwner::Postgres).unwrap() else { return };
    let pair = pg_pair_on(&fs).await;
    let rows = 2000;
    pg_source_tables(&pair, rows).await;
    let spec = pg_spec(&pair);
    let running = Arc::new(AtomicBool::new(true));
    let writes = pg_writer(&pair, Arc::clone(&running), rows);
    let tgt = pair.target().await;

    let run = spawn_job(&spec, pair.credentials(), "test/disk-full-stream");
    pg_until(&tgt, &run.1, "SELECT checkpoint_lsn IS NOT NULL FROM _ferry.jobs").await;
    // Transactions of 500 rows each, tagged in commit order, until the target is full.
    let src = pair.source().await;
    let mut written = 0;
    while written < MAX_BULK_TRANSACTIONS && !run.1.is_finished() {
        src.batch_execute(&format!(
            "INSERT INTO bulk SELECT {written} * 1000 + g, {written}, repeat(md5(g::text), 32) \
             FROM generate_series(1, {BULK_ROWS}) g"
        ))
        .await
        .unwrap();
        written += 1;
    }
    expect_disk_full(run, "No space left on device", "public.bulk").await;

    // Whole source transactions only, in commit order: the target stopped at its checkpoint.
    let tags: Vec<(i32, i64)> = tgt
        .query("SELECT tag, count(*) FROM bulk GROUP BY tag ORDER BY tag", &[])
        .await
        .unwrap()
        .iter()
        .map(|r| (r.get(0), r.get(1)))
        .collect();
    eprintln!("{} of {written} bulk transactions on the target", tags.len());
    assert!(!tags.is_empty() && tags.len() < written as usize, "the disk filled while the bulk transactions streamed");
    for (i, (tag, count)) in tags.iter().enumerate() {
        assert_eq!((*tag, *count), (i as i32, BULK_ROWS), "transaction {i} is on the target whole, or none after it");
    }
    // The source was told only of what the target committed.
    let checkpoint: String = tgt.query_one("SELECT checkpoint_lsn::text FROM _ferry.jobs", &[]).await.unwrap().get(0);
    let acknowledged: bool = src
        .query_one(
            "SELECT confirmed_flush_lsn <= $1::text::pg_lsn FROM pg_replication_slots WHERE slot_name LIKE 'ferry_test_disk_full_stream%'",
            &[&checkpoint],
        )
        .await
        .unwrap()
        .get(0);
    assert!(acknowledged, "the slot is not confirmed past the target's checkpoint {checkpoint}");

    fs.resize(LARGE).unwrap();
    let run = spawn_job(&spec, pair.credentials(), "test/disk-full-stream");
    support::wait_equal(&pair, "bulk", "bulk", DEADLINE).await;
    pg_converge(&pair, &running, writes, run).await;
}

// ---------------------------------------------------------------------------------------------
// MariaDB

/// A source and a target whose database `shop` is a directory on `fs` (a symbolic link in the
/// data directory): the tables Ferry creates there land on it; `_ferry` does not.
fn my_pair_on(fs: &SmallFilesystem) -> my_support::MyPair {
    let pair = my_support::MyPair::start();
    std::os::unix::fs::symlink(fs.path(), pair.target.dir().join("data").join("shop")).unwrap();
    pair
}

/// Changes `accounts` and the keyless `events` without pause until stopped.
fn my_writer(pair: &my_support::MyPair, running: Arc<AtomicBool>, rows: i64) -> tokio::task::JoinHandle<u64> {
    let opts = pair.source.opts(Some("shop"));
    tokio::spawn(async move {
        let mut conn = mysql_async::Conn::new(opts).await.unwrap();
        let mut i: u64 = 0;
        while running.load(Ordering::SeqCst) {
            let n = i as i64;
            conn.query_drop(format!(
                "BEGIN;
                 INSERT INTO accounts VALUES ({new}, {n}, 'new', 'p');
                 UPDATE accounts SET balance = balance + 1, note = 'upd {n}' WHERE id = {upd};
                 DELETE FROM accounts WHERE id = {del};
                 UPDATE accounts SET id = {moved_to} WHERE id = {moved};
                 INSERT INTO events VALUES ({n}, 'e{n}');
                 COMMIT;",
                new = rows + 1 + 2 * n,
                upd = 1 + (n * 7) % rows,
                del = 2 + (n * 13) % rows,
                moved = 3 + (n * 17) % rows,
                moved_to = rows + 2 + 2 * n,
            ))
            .await
            .unwrap();
            i += 1;
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
        i
    })
}

async fn my_source_tables(pair: &my_support::MyPair, rows: i64) {
    my_support::exec(
        &mut pair.source().await,
        &format!(
            "CREATE DATABASE shop; USE shop;
             CREATE TABLE accounts (id bigint PRIMARY KEY, balance decimal(14,2) NOT NULL, note text, pad text);
             INSERT INTO accounts SELECT seq, seq / 3.0, concat('row ', seq), repeat(md5(seq), 16) FROM seq_1_to_{rows};
             CREATE TABLE events (n bigint, label text);
             INSERT INTO events SELECT -seq, 'old' FROM seq_1_to_2000;
             CREATE TABLE bulk (id bigint PRIMARY KEY, tag int NOT NULL, pad text);"
        ),
    )
    .await;
}

fn my_spec(pair: &my_support::MyPair) -> ferry::api::SyncJobSpec {
    let mut spec = pair.spec(TaskType::FullIncrTrans, &["accounts", "events", "bulk"]);
    spec.tuning = Some(Tuning {
        batch_rows: Some(4000),
        read_parallelism: Some(2),
        apply_batch_transactions: Some(10),
        ..Default::default()
    });
    spec
}

/// Waits until `sql` on a MariaDB target returns true, failing if the run ends first.
async fn my_until(
    tgt: &mut mysql_async::Conn,
    runner: &tokio::task::JoinHandle<Result<Outcome, EngineError>>,
    sql: &str,
) {
    let deadline = Instant::now() + DEADLINE;
    loop {
        assert!(!runner.is_finished(), "the run ended while waiting for {sql}");
        if let Ok(Some(Some(true))) = tgt.query_first::<Option<bool>, _>(sql).await {
            return;
        }
        assert!(Instant::now() < deadline, "timed out waiting for {sql}");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

async fn my_converge(
    pair: &my_support::MyPair,
    running: &AtomicBool,
    writes: tokio::task::JoinHandle<u64>,
    run: Running,
) {
    running.store(false, Ordering::SeqCst);
    assert!(writes.await.unwrap() > 0, "the source changed during the test");
    for table in ["shop.accounts", "shop.events", "shop.bulk"] {
        my_support::wait_equal(pair, table, table, DEADLINE).await;
    }
    let (stop, runner) = run;
    let _ = stop.send(true);
    assert!(matches!(runner.await.unwrap(), Ok(Outcome::Stopped)));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn mariadb_a_full_disk_fails_the_full_transfer_without_a_half_chunk_and_a_retry_converges() {
    let Some(mut fs) = SmallFilesystem::mount(SMALL, FilesystemOwner::Mysql).unwrap() else { return };
    let pair = my_pair_on(&fs);
    let rows = 40_000;
    my_source_tables(&pair, rows).await;
    let spec = my_spec(&pair);
    let running = Arc::new(AtomicBool::new(true));
    let writes = my_writer(&pair, Arc::clone(&running), rows);

    let run = spawn_job(&spec, pair.credentials(), "test/disk-full");
    expect_disk_full(run, "The table 'accounts' is full", "accounts").await;

    let mut tgt = pair.target().await;
    let (on_target, in_done_chunks, done, pending, in_pending_chunks): (i64, i64, i64, i64, i64) = tgt
        .query_first(
            "SELECT (SELECT count(*) FROM shop.accounts), \
                    (SELECT coalesce(sum(`rows`), 0) FROM _ferry.chunks WHERE table_name = 'shop.accounts' AND done), \
                    (SELECT count(*) FROM _ferry.chunks WHERE table_name = 'shop.accounts' AND done), \
                    (SELECT count(*) FROM _ferry.chunks WHERE table_name = 'shop.accounts' AND NOT done), \
                    (SELECT count(*) FROM shop.accounts a JOIN _ferry.chunks c ON c.table_name = 'shop.accounts' \
                       AND NOT c.done AND (c.lo IS NULL OR a.id >= CAST(JSON_VALUE(c.lo, '$[0]') AS SIGNED)) \
                       AND (c.hi IS NULL OR a.id < CAST(JSON_VALUE(c.hi, '$[0]') AS SIGNED)))",
        )
        .await
        .unwrap()
        .unwrap();
    eprintln!("{done} chunks done with {in_done_chunks} rows, {pending} pending; {on_target} rows on the target");
    assert!(done > 0 && pending > 0, "the disk filled during the full transfer");
    assert_eq!(on_target, in_done_chunks, "only whole chunks are on the target");
    assert_eq!(in_pending_chunks, 0, "no row of a chunk that is not done is on the target");

    fs.resize(LARGE).unwrap();
    let run = spawn_job(&spec, pair.credentials(), "test/disk-full");
    my_until(&mut tgt, &run.1, "SELECT full_done FROM _ferry.jobs").await;
    my_converge(&pair, &running, writes, run).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn mariadb_a_full_disk_fails_the_stream_without_moving_the_checkpoint_past_the_batch_and_a_retry_converges() {
    let Some(mut fs) = SmallFilesystem::mount(MARIADB_STREAM_ROOM, FilesystemOwner::Mysql).unwrap() else { return };
    let pair = my_pair_on(&fs);
    let rows = 2000;
    my_source_tables(&pair, rows).await;
    let spec = my_spec(&pair);
    let running = Arc::new(AtomicBool::new(true));
    let writes = my_writer(&pair, Arc::clone(&running), rows);
    let mut tgt = pair.target().await;

    let run = spawn_job(&spec, pair.credentials(), "test/disk-full-stream");
    my_until(&mut tgt, &run.1, "SELECT checkpoint_pos IS NOT NULL FROM _ferry.jobs").await;
    // The seq_ tables need a current database.
    let mut src = mysql_async::Conn::new(pair.source.opts(Some("shop"))).await.unwrap();
    let mut written = 0;
    while written < MAX_BULK_TRANSACTIONS && !run.1.is_finished() {
        my_support::exec(
            &mut src,
            &format!(
                "INSERT INTO bulk SELECT {written} * 1000 + seq, {written}, repeat(md5(seq), 32) FROM seq_1_to_{BULK_ROWS}"
            ),
        )
        .await;
        written += 1;
    }
    expect_disk_full(run, "The table 'bulk' is full", "bulk").await;

    let tags: Vec<(i32, i64)> =
        tgt.query("SELECT tag, count(*) FROM shop.bulk GROUP BY tag ORDER BY tag").await.unwrap();
    eprintln!("{} of {written} bulk transactions on the target", tags.len());
    assert!(!tags.is_empty() && tags.len() < written as usize, "the disk filled while the bulk transactions streamed");
    for (i, (tag, count)) in tags.iter().enumerate() {
        assert_eq!((*tag, *count), (i as i32, BULK_ROWS), "transaction {i} is on the target whole, or none after it");
    }

    fs.resize(LARGE).unwrap();
    let run = spawn_job(&spec, pair.credentials(), "test/disk-full-stream");
    my_support::wait_equal(&pair, "shop.bulk", "shop.bulk", DEADLINE).await;
    my_converge(&pair, &running, writes, run).await;
}
