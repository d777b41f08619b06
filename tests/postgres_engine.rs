//! The PostgreSQL → PostgreSQL engine against real servers: full transfer, change stream,
//! types, mapping, filters, and what is left on the source afterwards.

mod support;

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use ferry::api::TaskType;
use ferry::engine::{self, Job, Outcome, Tracker, progress::NoProgress};
use support::{Pair, rows, wait_equal};
use tokio::sync::watch;

fn tracker() -> Tracker {
    Tracker::new(Arc::new(NoProgress))
}

type Running = (watch::Sender<bool>, tokio::task::JoinHandle<Result<Outcome, engine::EngineError>>);

/// Runs the job on a task until stopped through the returned sender.
fn spawn_job(pair: &Pair, spec: &ferry::api::SyncJobSpec, id: &'static str) -> Running {
    let (stop_tx, stop) = watch::channel(false);
    let (spec, creds) = (spec.clone(), pair.credentials());
    let runner = tokio::spawn(async move {
        engine::run(Job { id, spec: &spec, credentials: &creds, tracker: tracker(), stop }).await
    });
    (stop_tx, runner)
}

/// Waits until the job has finished its full transfer and streams.
async fn wait_streaming(pair: &Pair) {
    let tgt = pair.target().await;
    let deadline = std::time::Instant::now() + Duration::from_secs(30);
    while tgt.query_opt("SELECT 1 FROM _ferry.jobs WHERE full_done", &[]).await.ok().flatten().is_none() {
        assert!(std::time::Instant::now() < deadline, "the job did not start streaming");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_full_trans_job_copies_every_row_and_leaves_no_slot_behind() {
    let pair = Pair::start();
    let src = pair.source().await;
    src.batch_execute(
        "CREATE TABLE orders (id bigint PRIMARY KEY, customer text NOT NULL, amount numeric(12,2), placed timestamptz);
         CREATE INDEX orders_customer ON orders (customer);
         INSERT INTO orders SELECT g, 'c' || (g % 97), g * 1.25, '2026-01-01'::timestamptz + g * interval '1 minute'
           FROM generate_series(1, 25000) g;
         ANALYZE orders;",
    )
    .await
    .unwrap();
    let mut spec = pair.spec(TaskType::FullTrans, &["orders"]);
    spec.tuning = Some(ferry::api::Tuning { batch_rows: Some(4000), read_parallelism: Some(3), ..Default::default() });
    let (_stop_tx, stop) = watch::channel(false);
    let creds = pair.credentials();
    let out =
        engine::run(Job { id: "test/full", spec: &spec, credentials: &creds, tracker: tracker(), stop }).await.unwrap();
    assert_eq!(out, Outcome::Completed);
    let tgt = pair.target().await;
    assert_eq!(rows(&src, "orders").await, rows(&tgt, "orders").await);
    let chunks: i64 = tgt.query_one("SELECT count(*) FROM _ferry.chunks", &[]).await.unwrap().get(0);
    assert!(chunks >= 6, "the table was split into chunks ({chunks})");
    let idx: i64 =
        tgt.query_one("SELECT count(*) FROM pg_indexes WHERE indexname = 'orders_customer'", &[]).await.unwrap().get(0);
    assert_eq!(idx, 1, "secondary index created after the load");
    assert!(support::slots(&src).await.is_empty(), "no replication slot left");
    assert!(support::publications(&src).await.is_empty(), "no publication left");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_keyless_table_is_copied_in_page_ranges_each_row_once_and_its_changes_once() {
    let pair = Pair::start();
    let src = pair.source().await;
    // Every 50th row an exact duplicate of the one before.
    src.batch_execute(
        "CREATE TABLE events (n bigint, label text);
         ALTER TABLE events REPLICA IDENTITY FULL;
         INSERT INTO events SELECT CASE WHEN g % 50 = 0 THEN g - 1 ELSE g END, 'e' || (CASE WHEN g % 50 = 0 THEN g - 1 ELSE g END)
           FROM generate_series(1, 30000) g;
         ANALYZE events;",
    )
    .await
    .unwrap();
    let mut spec = pair.spec(TaskType::FullIncrTrans, &["events"]);
    spec.tuning = Some(ferry::api::Tuning { batch_rows: Some(4000), read_parallelism: Some(3), ..Default::default() });
    let (stop_tx, runner) = spawn_job(&pair, &spec, "test/keyless-pages");
    wait_streaming(&pair).await;
    let tgt = pair.target().await;
    assert_eq!(rows(&src, "events").await, rows(&tgt, "events").await, "each row once, duplicates twice");
    let chunks: i64 = tgt.query_one("SELECT count(*) FROM _ferry.chunks", &[]).await.unwrap().get(0);
    assert!(chunks >= 5, "the keyless table was split into page ranges ({chunks})");
    // Changes after the copy, to duplicated rows too, apply once each.
    src.batch_execute(
        "INSERT INTO events VALUES (49, 'e49'), (7, 'new');
         DELETE FROM events WHERE n = 99 AND ctid = (SELECT min(ctid) FROM events WHERE n = 99);
         UPDATE events SET label = 'changed' WHERE n = 1000;",
    )
    .await
    .unwrap();
    wait_equal(&pair, "events", "events", Duration::from_secs(30)).await;
    stop_tx.send(true).unwrap();
    assert_eq!(runner.await.unwrap().unwrap(), Outcome::Stopped);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_full_incr_job_follows_inserts_updates_deletes_and_truncate() {
    let pair = Pair::start();
    let src = pair.source().await;
    src.batch_execute(
        "CREATE TABLE items (id int PRIMARY KEY, name text, qty int, note text);
         INSERT INTO items SELECT g, 'item ' || g, g, NULL FROM generate_series(1, 2000) g;
         CREATE TABLE logs (id bigserial PRIMARY KEY, line text);
         INSERT INTO logs (line) SELECT 'boot ' || g FROM generate_series(1, 100) g;",
    )
    .await
    .unwrap();
    let spec = pair.spec(TaskType::FullIncrTrans, &["items", "logs"]);
    let (stop_tx, runner) = spawn_job(&pair, &spec, "test/incr");
    // Changes while the job runs: some land during the full transfer, some in the stream.
    for i in 0..20 {
        src.batch_execute(&format!(
            "INSERT INTO items VALUES ({id}, 'new {i}', {i}, repeat('x', 10000));
             UPDATE items SET qty = qty + 1000, name = NULL WHERE id % 50 = {i};
             DELETE FROM items WHERE id = {del};
             UPDATE items SET id = id + 100000 WHERE id = {moved};
             INSERT INTO logs (line) VALUES ('tick {i}');",
            id = 5000 + i,
            del = 1000 + i,
            moved = 1500 + i
        ))
        .await
        .unwrap();
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    // An update that leaves the TOASTed note unchanged must keep it on the target.
    src.batch_execute("UPDATE items SET qty = -1 WHERE id >= 5000").await.unwrap();
    src.batch_execute("TRUNCATE logs; INSERT INTO logs (line) VALUES ('after truncate')").await.unwrap();
    wait_equal(&pair, "items", "items", Duration::from_secs(60)).await;
    wait_equal(&pair, "logs", "logs", Duration::from_secs(30)).await;
    stop_tx.send(true).unwrap();
    let out = runner.await.unwrap().unwrap();
    assert_eq!(out, Outcome::Stopped);
    let tgt = pair.target().await;
    let note: i64 = tgt.query_one("SELECT count(*) FROM items WHERE length(note) = 10000", &[]).await.unwrap().get(0);
    assert_eq!(note, 20, "unchanged TOASTed values kept");
    assert_eq!(support::slots(&src).await.len(), 1, "the slot stays while the job lives");
    engine::release("test/incr", &spec, &pair.credentials()).await.unwrap();
    assert!(support::slots(&src).await.is_empty(), "released");
    assert!(support::publications(&src).await.is_empty(), "released");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_common_type_round_trips_exactly_in_both_phases() {
    let pair = Pair::start();
    let src = pair.source().await;
    src.batch_execute(support::TYPES).await.unwrap();
    src.batch_execute(support::TYPE_ROWS).await.unwrap();
    let spec = pair.spec(TaskType::FullIncrTrans, &["types"]);
    let (stop_tx, runner) = spawn_job(&pair, &spec, "test/types");
    wait_equal(&pair, "types", "types", Duration::from_secs(30)).await;
    // The same values again, through the change stream this time.
    src.batch_execute("INSERT INTO types SELECT id + 10, i2, i4, i8, num, num_big, f4, f8, b, t, vc, c, by, u, j, jb, d, tm, tmtz, ts, tstz, iv, ip, net, mac, arr, tarr, m, marr, big FROM types")
        .await
        .unwrap();
    src.batch_execute("UPDATE types SET f8 = 'Infinity', marr = '{happy}' WHERE id = 11").await.unwrap();
    wait_equal(&pair, "types", "types", Duration::from_secs(30)).await;
    stop_tx.send(true).unwrap();
    runner.await.unwrap().unwrap();
    let tgt = pair.target().await;
    let big: i32 = tgt.query_one("SELECT length(big) FROM types WHERE id = 11", &[]).await.unwrap().get(0);
    assert_eq!(big, 120_000, "the TOASTed value survived an update that left it unchanged");
    engine::release("test/types", &spec, &pair.credentials()).await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn schemas_tables_and_columns_are_renamed_and_rows_filtered_in_both_phases() {
    use ferry::api::{ColumnSelection, SchemaSelection, TableSelection};
    let pair = Pair::start();
    let src = pair.source().await;
    src.batch_execute(
        "CREATE SCHEMA sales;
         CREATE TABLE sales.orders (id int PRIMARY KEY, region text, amount numeric(10,2), secret text);
         INSERT INTO sales.orders SELECT g, CASE WHEN g % 2 = 0 THEN 'eu' ELSE 'us' END, g, 'hidden' FROM generate_series(1, 1000) g;",
    )
    .await
    .unwrap();
    let mut spec = pair.spec(TaskType::FullIncrTrans, &[]);
    spec.objects.databases[0].schemas = vec![SchemaSelection {
        name: "sales".into(),
        mapped_name: Some("archive".into()),
        all: false,
        tables: vec![TableSelection {
            name: "orders".into(),
            mapped_name: Some("orders_kept".into()),
            // Only key columns in the filter: PostgreSQL then still accepts UPDATE and DELETE on the
            // published table without REPLICA IDENTITY FULL.
            filter: Some("id <= 500".into()),
            columns: Some(ColumnSelection {
                include: vec![],
                exclude: vec!["secret".into()],
                rename: [("amount".to_string(), "total".to_string())].into(),
                ..Default::default()
            }),
        }],
    }];
    let (stop_tx, runner) = spawn_job(&pair, &spec, "test/map");
    let tgt = pair.target().await;
    let expected = "SELECT (id, region, amount)::text FROM sales.orders WHERE id <= 500 ORDER BY id";
    let actual = "SELECT (id, region, total)::text FROM archive.orders_kept ORDER BY id";
    let same = || async {
        let a: Vec<String> = src.query(expected, &[]).await.unwrap().iter().map(|r| r.get(0)).collect();
        let b: Vec<String> = match tgt.query(actual, &[]).await {
            Ok(rows) => rows.iter().map(|r| r.get(0)).collect(),
            Err(_) => vec![],
        };
        a == b
    };
    let wait_same = |what: &'static str| {
        let same = &same;
        async move {
            let deadline = std::time::Instant::now() + Duration::from_secs(30);
            while !same().await {
                assert!(
                    std::time::Instant::now() < deadline,
                    "{what}: target differs from the filtered, renamed source"
                );
                tokio::time::sleep(Duration::from_millis(200)).await;
            }
        }
    };
    wait_same("full transfer").await;
    src.batch_execute(
        "INSERT INTO sales.orders VALUES (0, 'eu', 0.5, 'x'), (2000, 'eu', 9, 'x');
         UPDATE sales.orders SET amount = amount * 2 WHERE id BETWEEN 100 AND 120 OR id = 800;
         DELETE FROM sales.orders WHERE id IN (5, 6, 700);",
    )
    .await
    .unwrap();
    wait_same("change stream").await;
    let cols: Vec<String> = tgt
        .query("SELECT column_name::text FROM information_schema.columns WHERE table_schema = 'archive' AND table_name = 'orders_kept' ORDER BY ordinal_position", &[])
        .await
        .unwrap()
        .iter()
        .map(|r| r.get(0))
        .collect();
    assert_eq!(cols, ["id", "region", "total"], "secret left out, amount renamed");
    stop_tx.send(true).unwrap();
    runner.await.unwrap().unwrap();
    engine::release("test/map", &spec, &pair.credentials()).await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_incr_trans_job_applies_only_changes_made_after_it_started() {
    let pair = Pair::start();
    let (src, tgt) = (pair.source().await, pair.target().await);
    let ddl = "CREATE TABLE accounts (id int PRIMARY KEY, balance int NOT NULL)";
    src.batch_execute(ddl).await.unwrap();
    tgt.batch_execute(ddl).await.unwrap();
    src.batch_execute("INSERT INTO accounts SELECT g, 100 FROM generate_series(1, 10) g").await.unwrap();
    tgt.batch_execute("INSERT INTO accounts SELECT g, 100 FROM generate_series(1, 10) g").await.unwrap();
    // Made before the job: an INCR_TRANS job must not bring it over.
    src.batch_execute("INSERT INTO accounts VALUES (99, 1)").await.unwrap();
    let spec = pair.spec(TaskType::IncrTrans, &["accounts"]);
    let (stop_tx, runner) = spawn_job(&pair, &spec, "test/incr-only");
    wait_streaming(&pair).await;
    src.batch_execute("UPDATE accounts SET balance = balance - 10 WHERE id <= 5; INSERT INTO accounts VALUES (11, 7); DELETE FROM accounts WHERE id = 10")
        .await
        .unwrap();
    let expected: Vec<String> =
        (1..=9).map(|i| format!("({i},{})", if i <= 5 { 90 } else { 100 })).chain(["(11,7)".to_string()]).collect();
    let deadline = std::time::Instant::now() + Duration::from_secs(30);
    loop {
        let got: Vec<String> = tgt
            .query("SELECT t::text FROM accounts t ORDER BY id", &[])
            .await
            .unwrap()
            .iter()
            .map(|r| r.get(0))
            .collect();
        if got == expected {
            break;
        }
        assert!(std::time::Instant::now() < deadline, "got {got:?}");
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    stop_tx.send(true).unwrap();
    runner.await.unwrap().unwrap();
    engine::release("test/incr-only", &spec, &pair.credentials()).await.unwrap();
}

/// Starts a FULL_INCR_TRANS job over `t (id int PRIMARY KEY, v text)` holding ids 1..=10 and
/// waits until it streams.
async fn streaming_job(pair: &Pair, conflict: ferry::api::ConflictPolicy, id: &'static str) -> Running {
    let src = pair.source().await;
    src.batch_execute(
        "CREATE TABLE t (id int PRIMARY KEY, v text); INSERT INTO t SELECT g, 'v' || g FROM generate_series(1, 10) g",
    )
    .await
    .unwrap();
    let mut spec = pair.spec(TaskType::FullIncrTrans, &["t"]);
    spec.policy.conflict = conflict;
    let running = spawn_job(pair, &spec, id);
    wait_streaming(pair).await;
    running
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn conflict_policy_stop_fails_the_job_on_a_row_missing_from_the_target() {
    let pair = Pair::start();
    let (_stop, runner) = streaming_job(&pair, ferry::api::ConflictPolicy::Stop, "test/stop").await;
    pair.target().await.batch_execute("DELETE FROM t WHERE id = 3").await.unwrap();
    pair.source().await.batch_execute("UPDATE t SET v = 'changed' WHERE id = 3").await.unwrap();
    let err = tokio::time::timeout(Duration::from_secs(30), runner).await.expect("the job stops").unwrap().unwrap_err();
    assert_eq!(err.code(), "CONFLICT", "{err}");
    assert!(err.to_string().contains("public.t"), "{err}");
    let src = pair.source().await;
    let spec = pair.spec(TaskType::FullIncrTrans, &["t"]);
    engine::release("test/stop", &spec, &pair.credentials()).await.unwrap();
    assert!(support::slots(&src).await.is_empty());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn conflict_policy_ignore_keeps_target_rows_and_skips_missing_ones() {
    let pair = Pair::start();
    let (stop, runner) = streaming_job(&pair, ferry::api::ConflictPolicy::Ignore, "test/ignore").await;
    let tgt = pair.target().await;
    tgt.batch_execute("DELETE FROM t WHERE id = 3; INSERT INTO t VALUES (11, 'target own')").await.unwrap();
    pair.source()
        .await
        .batch_execute(
            "UPDATE t SET v = 'changed' WHERE id IN (3, 4); INSERT INTO t VALUES (11, 'source'), (12, 'new')",
        )
        .await
        .unwrap();
    let expected = [
        "(1,v1)",
        "(2,v2)",
        "(4,changed)",
        "(5,v5)",
        "(6,v6)",
        "(7,v7)",
        "(8,v8)",
        "(9,v9)",
        "(10,v10)",
        "(11,\"target own\")",
        "(12,new)",
    ];
    let deadline = std::time::Instant::now() + Duration::from_secs(30);
    loop {
        let got: Vec<String> =
            tgt.query("SELECT r::text FROM t r ORDER BY id", &[]).await.unwrap().iter().map(|r| r.get(0)).collect();
        if got == expected {
            break;
        }
        assert!(std::time::Instant::now() < deadline, "got {got:?}");
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    stop.send(true).unwrap();
    assert_eq!(runner.await.unwrap().unwrap(), Outcome::Stopped);
    engine::release("test/ignore", &pair.spec(TaskType::FullIncrTrans, &["t"]), &pair.credentials()).await.unwrap();
}

/// The selected table is quiet while another table of the same database takes heavy writes:
/// the job's heartbeats keep its slot moving, so the WAL it retains stays bounded (without them
/// PostgreSQL 15+ sends the job nothing and the slot keeps everything), and the target is right
/// when the quiet table wakes up.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_quiet_job_keeps_its_slot_moving_while_other_tables_are_busy() {
    let pair = Pair::start();
    let src = pair.source().await;
    src.batch_execute(
        "CREATE TABLE quiet (id int PRIMARY KEY, note text); INSERT INTO quiet VALUES (1, 'a'); \
         CREATE TABLE busy (id bigserial PRIMARY KEY, pad text);",
    )
    .await
    .unwrap();
    let spec = pair.spec(TaskType::FullIncrTrans, &["quiet"]);
    let (stop_tx, runner) = spawn_job(&pair, &spec, "test/quiet");
    wait_streaming(&pair).await;
    let lsn = |sql: &'static str| {
        let src = &src;
        async move { src.query_one(sql, &[]).await.unwrap().get::<_, i64>(0) }
    };
    let start = lsn("SELECT (pg_current_wal_lsn() - '0/0')::int8").await;
    // About 8 MB of WAL per round, for 36 s.
    for _ in 0..12 {
        src.batch_execute("INSERT INTO busy (pad) SELECT repeat('x', 100) FROM generate_series(1, 50000)")
            .await
            .unwrap();
        tokio::time::sleep(Duration::from_secs(3)).await;
    }
    let written = lsn("SELECT (pg_current_wal_lsn() - '0/0')::int8").await - start;
    let behind = lsn("SELECT (pg_current_wal_lsn() - confirmed_flush_lsn)::int8 FROM pg_replication_slots \
         WHERE slot_name LIKE 'ferry_test_quiet%'")
    .await;
    eprintln!("written {written} B, confirmed {behind} B behind");
    // A heartbeat every 5 s: the slot confirms within that much of the writes, plus the time
    // the server takes to decode them (without heartbeats it confirms nothing at all).
    assert!(written > 80 << 20, "the load wrote {written} bytes");
    assert!(behind < written / 2, "confirmed_flush_lsn is {behind} bytes behind after {written} written");
    // restart_lsn (what the slot keeps on disk) follows the confirmed position at the server's
    // next running-transactions record, which a checkpoint writes (one every few seconds here,
    // as the server's own come every 15 s and a busy machine may miss the first).
    let deadline = std::time::Instant::now() + Duration::from_secs(90);
    for round in 0u32.. {
        if round.is_multiple_of(5) {
            src.batch_execute("CHECKPOINT").await.unwrap();
        }
        let retained = lsn("SELECT (pg_current_wal_lsn() - restart_lsn)::int8 FROM pg_replication_slots \
             WHERE slot_name LIKE 'ferry_test_quiet%'")
        .await;
        if retained < 16 << 20 {
            break;
        }
        assert!(std::time::Instant::now() < deadline, "the slot still retains {retained} of {written} bytes");
        tokio::time::sleep(Duration::from_secs(1)).await;
    }

    src.batch_execute("INSERT INTO quiet VALUES (2, 'b'); UPDATE quiet SET note = 'woke' WHERE id = 1").await.unwrap();
    wait_equal(&pair, "quiet", "quiet", Duration::from_secs(30)).await;
    let _ = stop_tx.send(true);
    assert!(matches!(runner.await.unwrap(), Ok(Outcome::Stopped)));
}

/// The source invalidates a stopped job's slot (max_slot_wal_keep_size): the restarted job
/// fails at once with SLOT_LOST and says to start over, instead of retrying a slot that can
/// never stream again.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_invalidated_slot_fails_the_job_at_once_saying_so() {
    let pair = Pair::start();
    let src = pair.source().await;
    src.batch_execute("ALTER SYSTEM SET max_slot_wal_keep_size = '1MB'").await.unwrap();
    src.batch_execute(
        "SELECT pg_reload_conf(); \
         CREATE TABLE t (id int PRIMARY KEY, note text); INSERT INTO t VALUES (1, 'a'); \
         CREATE TABLE other (id bigserial PRIMARY KEY, pad text);",
    )
    .await
    .unwrap();
    let spec = pair.spec(TaskType::FullIncrTrans, &["t"]);
    let (stop_tx, runner) = spawn_job(&pair, &spec, "test/lost");
    wait_streaming(&pair).await;
    let _ = stop_tx.send(true);
    assert!(matches!(runner.await.unwrap(), Ok(Outcome::Stopped)));
    // While the job is stopped, far more WAL than the slot may keep, then checkpoints.
    for _ in 0..4 {
        src.batch_execute("INSERT INTO other (pad) SELECT repeat('x', 200) FROM generate_series(1, 20000)")
            .await
            .unwrap();
        src.batch_execute("SELECT pg_switch_wal()").await.unwrap();
        src.batch_execute("CHECKPOINT").await.unwrap();
    }
    let status: Option<String> = src
        .query_one("SELECT wal_status FROM pg_replication_slots WHERE slot_name LIKE 'ferry_test_lost%'", &[])
        .await
        .unwrap()
        .get(0);
    assert_eq!(status.as_deref(), Some("lost"), "the source invalidated the slot");
    let (_stop, runner) = spawn_job(&pair, &spec, "test/lost");
    let err = tokio::time::timeout(Duration::from_secs(30), runner).await.expect("fails at once").unwrap().unwrap_err();
    assert_eq!(err.code(), "SLOT_LOST", "{err}");
    assert!(
        err.to_string().contains("max_slot_wal_keep_size") && err.to_string().contains("new full transfer"),
        "{err}"
    );
}

/// Changes `accounts` on the source until `running` is cleared: inserts, updates of every
/// column, deletes. Returns how many transactions it wrote.
fn account_writer(pair: &Pair, running: Arc<AtomicBool>) -> tokio::task::JoinHandle<u64> {
    let config = pair.source.config("shop");
    tokio::spawn(async move {
        let (client, conn) = config.connect(tokio_postgres::NoTls).await.unwrap();
        tokio::spawn(conn);
        let mut n: i64 = 0;
        while running.load(Ordering::SeqCst) {
            client
                .batch_execute(&format!(
                    "BEGIN;
                     INSERT INTO accounts VALUES ({new}, {n} + 0.25, 'new {n}');
                     UPDATE accounts SET balance = balance + 1.5, note = 'upd {n}' WHERE id = {upd};
                     DELETE FROM accounts WHERE id = {del};
                     COMMIT;",
                    new = 100_000 + n,
                    upd = 1 + (n * 7) % 2000,
                    del = 2 + (n * 13) % 2000,
                ))
                .await
                .unwrap();
            n += 1;
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
        n as u64
    })
}

/// While a job streams changes of `accounts` under concurrent writes, `change` is made to the
/// target table by hand (after saving what it loses): the job stops with `code` and a message
/// naming what `words` say, instead of writing on (or being retried). `undo` puts the table back
/// as it was; the job then resumes from its checkpoint and the target converges to the source,
/// so no change was skipped or committed changed.
async fn a_hand_made_change_stops_the_job(id: &'static str, change: &str, undo: &str, code: &str, words: &[&str]) {
    let pair = Pair::start();
    pair.source()
        .await
        .batch_execute(
            "CREATE TABLE accounts (id bigint PRIMARY KEY, balance numeric(14,2) NOT NULL, note text);
             INSERT INTO accounts SELECT g, g / 3.0, 'row ' || g FROM generate_series(1, 2000) g;",
        )
        .await
        .unwrap();
    let spec = pair.spec(TaskType::FullIncrTrans, &["accounts"]);
    let (_stop, runner) = spawn_job(&pair, &spec, id);
    wait_streaming(&pair).await;
    let running = Arc::new(AtomicBool::new(true));
    let writes = account_writer(&pair, Arc::clone(&running));
    let tgt = pair.target().await;
    let deadline = std::time::Instant::now() + Duration::from_secs(30);
    while tgt.query_opt("SELECT 1 FROM accounts WHERE id >= 100000 LIMIT 1", &[]).await.unwrap().is_none() {
        assert!(std::time::Instant::now() < deadline, "the job applies no change");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    tgt.batch_execute(change).await.unwrap();
    let err = tokio::time::timeout(Duration::from_secs(60), runner).await.expect("the job stops").unwrap().unwrap_err();
    assert_eq!(err.code(), code, "{err}");
    assert!(ferry::engine::error::is_unrecoverable(err.code()), "not retried");
    let message = err.to_string();
    eprintln!("{code}: {message}");
    for w in words {
        assert!(message.contains(w), "{w:?} not in {message}");
    }
    running.store(false, Ordering::SeqCst);
    assert!(writes.await.unwrap() > 0);

    tgt.batch_execute(undo).await.unwrap();
    let (stop, runner) = spawn_job(&pair, &spec, id);
    wait_equal(&pair, "accounts", "accounts", Duration::from_secs(60)).await;
    stop.send(true).unwrap();
    assert_eq!(runner.await.unwrap().unwrap(), Outcome::Stopped);
    engine::release(id, &spec, &pair.credentials()).await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_target_table_dropped_while_streaming_stops_the_job_naming_it_and_skips_nothing() {
    a_hand_made_change_stops_the_job(
        "test/table-dropped",
        "BEGIN; LOCK TABLE accounts IN ACCESS EXCLUSIVE MODE;
         CREATE TABLE kept AS SELECT * FROM accounts; DROP TABLE accounts; COMMIT;",
        "ALTER TABLE kept RENAME TO accounts; ALTER TABLE accounts ADD PRIMARY KEY (id);",
        "TARGET_TABLE_MISSING",
        &["target table public.accounts is missing", "new full transfer", "42P01"],
    )
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_target_column_dropped_while_streaming_stops_the_job_naming_it_and_skips_nothing() {
    a_hand_made_change_stops_the_job(
        "test/column-dropped",
        "BEGIN; LOCK TABLE accounts IN ACCESS EXCLUSIVE MODE;
         CREATE TABLE kept AS SELECT id, note FROM accounts; ALTER TABLE accounts DROP COLUMN note; COMMIT;",
        "ALTER TABLE accounts ADD COLUMN note text; UPDATE accounts a SET note = k.note FROM kept k WHERE k.id = a.id;",
        "TARGET_TABLE_CHANGED",
        &["target table public.accounts has no column note"],
    )
    .await;
}

/// numeric into integer is an assignment cast: PostgreSQL would round every value from then on
/// without an error. The applier's check in each batch's transaction catches it.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_target_column_retyped_while_streaming_stops_the_job_before_a_value_is_converted() {
    a_hand_made_change_stops_the_job(
        "test/column-retyped",
        "BEGIN; LOCK TABLE accounts IN ACCESS EXCLUSIVE MODE;
         CREATE TABLE kept AS SELECT id, balance FROM accounts;
         ALTER TABLE accounts ALTER COLUMN balance TYPE integer; COMMIT;",
        "ALTER TABLE accounts ALTER COLUMN balance TYPE numeric(14,2);
         UPDATE accounts a SET balance = k.balance FROM kept k WHERE k.id = a.id;",
        "TARGET_TABLE_CHANGED",
        &["column balance of target table public.accounts is now of type integer", "numeric(14,2)"],
    )
    .await;
}
