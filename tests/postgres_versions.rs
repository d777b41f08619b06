//! PostgreSQL major versions as source and target: FULL_INCR_TRANS jobs between servers of
//! different versions while writes go on during the full transfer and the change stream, then
//! every row compared (12 and 13 sources are read by polling the slot over SQL, 14 and later
//! through the replication protocol; partitioned tables from 13); row filters and column lists
//! on sources too old to publish them, applied by the stream, checked against PostgreSQL's own
//! evaluation; and what such sources cannot do, refused by the precheck and the job.
//!
//! Versions other than Debian's come from the test kit's cache (see DEVELOPERS.md).

mod support;

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use ferry::api::{ColumnSelection, PrecheckResult, TaskType, Tuning};
use ferry::compare::{self, Options};
use ferry::engine::filter::{RowFilter, Value};
use ferry::engine::{self, Job, Outcome, Tracker, progress::NoProgress};
use ferry::testkit::{PostgresOptions, PostgresServer};
use support::{Pair, rows, wait_equal};
use tokio::sync::watch;
use tokio_postgres::Client;

/// The tables of every pair; [`PARTITIONED`] too from 13, which publishes partitioned tables.
const TABLES: [&str; 3] = ["items", "types", "events"];

/// A table partitioned by range, with two partitions.
const PARTITIONED: &str = "
    CREATE TABLE measures (id int, day date, v int, PRIMARY KEY (id, day)) PARTITION BY RANGE (day);
    CREATE TABLE measures_2025 PARTITION OF measures FOR VALUES FROM ('2025-01-01') TO ('2026-01-01');
    CREATE TABLE measures_2026 PARTITION OF measures FOR VALUES FROM ('2026-01-01') TO ('2027-01-01');
    INSERT INTO measures SELECT g, '2025-01-01'::date + g % 700, g FROM generate_series(1, 1000) g;";

/// `items` (TOASTed notes on some rows), the every-type table `types`, and `events` without a
/// key (REPLICA IDENTITY FULL).
const SCHEMA: &str = "
    CREATE TABLE items (id bigint PRIMARY KEY, name text NOT NULL, qty int, price numeric(12,2),
                        placed timestamptz, note text);
    CREATE INDEX items_name ON items (name);
    INSERT INTO items SELECT g, 'item ' || g, g % 1000, g * 1.25, '2026-01-01 00:00:00+00'::timestamptz + g * interval '1 minute',
                             CASE WHEN g % 1000 = 0 THEN repeat('note ', 3000) END
      FROM generate_series(1, 20000) g;
    CREATE TABLE events (id int, payload text);
    ALTER TABLE events REPLICA IDENTITY FULL;
    INSERT INTO events SELECT g, 'e' || g FROM generate_series(1, 50) g;
    ANALYZE;";

/// The columns of `types` after `id`.
const TYPE_COLUMNS: &str = "i2, i4, i8, num, num_big, f4, f8, b, t, vc, c, by, u, j, jb, d, tm, tmtz, ts, tstz, iv, ip, net, mac, arr, tarr, m, marr, big";

/// One transaction of the write load, the `n`th: inserts, updates (some leaving a TOASTed value
/// unchanged, some changing the key), deletes, on every table (`partitioned`: and on `measures`,
/// some moving a row to the other partition).
fn writes(n: u64, partitioned: bool) -> String {
    let measures = if partitioned {
        format!(
            "INSERT INTO measures VALUES ({new}, '2026-06-01', {n});
             UPDATE measures SET v = v + 1 WHERE id = {n} % 1000 + 1;
             UPDATE measures SET day = day + 365 WHERE id = ({n} * 7) % 1000 + 1 AND day < '2026-01-01';
             DELETE FROM measures WHERE id = ({n} * 13) % 1000 + 1;",
            new = 100_000 + n
        )
    } else {
        String::new()
    };
    format!(
        "BEGIN;
         {measures}
         INSERT INTO items VALUES ({new}, 'new {n}', {n}, {n}.5, now(), CASE WHEN {n} % 4 = 0 THEN repeat('t', 9000) END);
         UPDATE items SET qty = qty + 1, name = name || '+' WHERE id % 211 = {n} % 211;
         DELETE FROM items WHERE id = {deleted};
         UPDATE items SET id = id + 1000000 WHERE id = {moved};
         INSERT INTO types (id, {TYPE_COLUMNS}) SELECT id + {types_base}, {TYPE_COLUMNS} FROM types WHERE id <= 3;
         UPDATE types SET t = t || '!' WHERE id = {types_base} - 99;
         INSERT INTO events VALUES ({event}, 'new {n}');
         UPDATE events SET payload = payload || '+' WHERE id = {event} - 3;
         DELETE FROM events WHERE id = {event} - 40;
         COMMIT;",
        new = 100_000 + n,
        deleted = (n * 37) % 20_000 + 1,
        moved = (n * 53) % 20_000 + 2,
        types_base = 100 * (n + 1),
        event = 100 + n,
    )
}

/// Writes [`writes`] transactions one after the other until `stop`, counting them.
fn write_load(
    client: Client,
    partitioned: bool,
    done: Arc<AtomicU64>,
    stop: watch::Receiver<bool>,
) -> tokio::task::JoinHandle<()> {
    tokio::spawn(async move {
        let mut n = 0;
        while !*stop.borrow() {
            client.batch_execute(&writes(n, partitioned)).await.unwrap_or_else(|e| panic!("write {n}: {e:?}"));
            n += 1;
            done.store(n, Ordering::SeqCst);
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
    })
}

fn tracker() -> Tracker {
    Tracker::new(Arc::new(NoProgress))
}

type Runner = tokio::task::JoinHandle<Result<Outcome, engine::EngineError>>;

/// Waits until the job has finished its full transfer; a job that ends before is a failure.
async fn wait_full_done(pair: &Pair, runner: &mut Runner) {
    let tgt = pair.target().await;
    let deadline = Instant::now() + Duration::from_secs(60);
    while tgt.query_opt("SELECT 1 FROM _ferry.jobs WHERE full_done", &[]).await.ok().flatten().is_none() {
        if runner.is_finished() {
            panic!("the job ended during its full transfer: {:?}", runner.await.unwrap());
        }
        assert!(Instant::now() < deadline, "the job did not finish its full transfer");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// A FULL_INCR_TRANS job from PostgreSQL `source` to `target` with writes during both phases;
/// then the target equals the source row for row, by the test's reading and by Ferry's
/// comparison, and releasing the job leaves nothing on the source.
async fn full_incr_trans_with_concurrent_writes(source: u32, target: u32) {
    let pair = Pair::start_versions(source, target);
    assert_eq!((pair.source.major(), pair.target.major()), (source, target));
    let src = pair.source().await;
    src.batch_execute(support::TYPES).await.unwrap();
    src.batch_execute(support::TYPE_ROWS).await.unwrap();
    src.batch_execute(SCHEMA).await.unwrap();
    let partitioned = source >= 13;
    let mut tables = TABLES.to_vec();
    if partitioned {
        src.batch_execute(PARTITIONED).await.unwrap();
        tables.push("measures");
    }

    let mut spec = pair.spec(TaskType::FullIncrTrans, &tables);
    spec.tuning = Some(Tuning { batch_rows: Some(2000), read_parallelism: Some(2), ..Default::default() });
    let creds = pair.credentials();
    let items = engine::precheck(&spec, &creds).await;
    let failed: Vec<_> = items.iter().filter(|i| i.result == PrecheckResult::Failed).collect();
    assert!(failed.is_empty(), "{source} → {target}: {failed:#?}");

    let writing = Arc::new(AtomicU64::new(0));
    let (stop_writes, writes_stop) = watch::channel(false);
    let writer = write_load(pair.source().await, partitioned, Arc::clone(&writing), writes_stop);
    while writing.load(Ordering::SeqCst) < 3 {
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    let (stop_job, stop) = watch::channel(false);
    let id = format!("versions/pg{source}-pg{target}");
    let mut runner: Runner = {
        let (spec, creds, id) = (spec.clone(), creds.clone(), id.clone());
        tokio::spawn(async move {
            engine::run(Job { id: &id, spec: &spec, credentials: &creds, tracker: tracker(), stop }).await
        })
    };
    let at_start = writing.load(Ordering::SeqCst);
    wait_full_done(&pair, &mut runner).await;
    let at_full_done = writing.load(Ordering::SeqCst);
    assert!(at_full_done > at_start, "{source} → {target}: no write landed during the full transfer");
    // The change stream under the same load for a while.
    tokio::time::sleep(Duration::from_millis(1500)).await;
    stop_writes.send(true).unwrap();
    writer.await.unwrap();
    assert!(writing.load(Ordering::SeqCst) > at_full_done + 10, "{source} → {target}: too few writes while streaming");

    for table in &tables {
        wait_equal(&pair, table, table, Duration::from_secs(60)).await;
    }
    let tgt = pair.target().await;
    assert!(rows(&tgt, "items").await.len() > 20_000);
    stop_job.send(true).unwrap();
    let outcome = runner.await.unwrap().unwrap_or_else(|e| panic!("{source} → {target}: {e}"));
    assert_eq!(outcome, Outcome::Stopped);

    let report = compare::run(&spec.source, &spec.target, &spec.objects, &creds, Options::content(100)).await.unwrap();
    assert_eq!(report.result(), ferry::api::CompareResult::Consistent, "{source} → {target}: {report:#?}");
    let indexes: i64 =
        tgt.query_one("SELECT count(*) FROM pg_indexes WHERE indexname = 'items_name'", &[]).await.unwrap().get(0);
    assert_eq!(indexes, 1, "the secondary index was created on {target}");

    engine::release(&id, &spec, &creds).await.unwrap();
    assert!(support::slots(&src).await.is_empty(), "{source}: no replication slot left");
    assert!(support::publications(&src).await.is_empty(), "{source}: no publication left");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn postgres_12_to_18_the_oldest_to_the_newest() {
    full_incr_trans_with_concurrent_writes(12, 18).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn postgres_13_to_16() {
    full_incr_trans_with_concurrent_writes(13, 16).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn postgres_16_to_13_a_newer_source_to_an_older_target() {
    full_incr_trans_with_concurrent_writes(16, 13).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn postgres_15_to_15() {
    full_incr_trans_with_concurrent_writes(15, 15).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn postgres_18_to_18() {
    full_incr_trans_with_concurrent_writes(18, 18).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn postgres_14_to_17() {
    full_incr_trans_with_concurrent_writes(14, 17).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn postgres_17_to_12_the_newest_but_one_to_the_oldest() {
    full_incr_trans_with_concurrent_writes(17, 12).await;
}

/// `orders` on a source before 15, filtered to EU orders of at least 10 without its `secret`
/// column, REPLICA IDENTITY FULL so that the stream sees the old row of an update.
const ORDERS: &str = "
    CREATE TABLE orders (id int PRIMARY KEY, region text NOT NULL, amount numeric(10,2), secret text, placed date);
    ALTER TABLE orders REPLICA IDENTITY FULL;
    INSERT INTO orders SELECT g, CASE WHEN g % 3 = 0 THEN 'us' ELSE 'eu' END, g % 50, 'hidden ' || g,
                              '2026-01-01'::date + g FROM generate_series(1, 3000) g;";

const ORDERS_FILTER: &str = "region = 'eu' AND amount >= 10 AND placed < '2036-01-01'";

fn filtered_orders_spec(pair: &Pair, filter: &str) -> ferry::api::SyncJobSpec {
    let mut spec = pair.spec(TaskType::FullIncrTrans, &["orders"]);
    let table = &mut spec.objects.databases[0].schemas[0].tables[0];
    table.filter = Some(filter.to_owned());
    table.columns = Some(ColumnSelection {
        include: vec![],
        exclude: vec!["secret".into()],
        rename: [("amount".to_string(), "total".to_string())].into(),
        ..Default::default()
    });
    spec
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_postgres_13_source_has_its_row_filter_and_column_list_applied_by_the_polled_stream() {
    filtered_by_the_stream(13, 16).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_postgres_14_source_has_its_row_filter_and_column_list_applied_by_the_replication_stream() {
    filtered_by_the_stream(14, 18).await;
}

/// A FULL_INCR_TRANS job of [`ORDERS`] with its filter and column list from PostgreSQL
/// `source` (before 15) to `target`: inserts, updates into, within and out of the filter, key
/// changes and deletes arrive as the filter says.
async fn filtered_by_the_stream(source: u32, target: u32) {
    let pair = Pair::start_versions(source, target);
    let src = pair.source().await;
    src.batch_execute(ORDERS).await.unwrap();
    let spec = filtered_orders_spec(&pair, ORDERS_FILTER);
    let creds = pair.credentials();
    let items = engine::precheck(&spec, &creds).await;
    let filters = items.iter().find(|i| i.item == "source.filters").expect("a source.filters item");
    assert_eq!(filters.result, PrecheckResult::Passed, "{items:#?}");
    assert!(items.iter().all(|i| i.result != PrecheckResult::Failed), "{items:#?}");

    let (stop_job, stop) = watch::channel(false);
    let mut runner: Runner = {
        let (spec, creds) = (spec.clone(), creds.clone());
        tokio::spawn(async move {
            engine::run(Job { id: "versions/filter", spec: &spec, credentials: &creds, tracker: tracker(), stop }).await
        })
    };
    wait_full_done(&pair, &mut runner).await;
    // Each kind of change, in and out of the filter.
    src.batch_execute(
        "INSERT INTO orders VALUES (5001, 'eu', 20, 's', '2026-02-01'), (5002, 'us', 20, 's', '2026-02-01'),
                                   (5003, 'eu', 5, 's', '2026-02-01'), (5004, 'eu', 20, 's', '2040-01-01');
         UPDATE orders SET region = 'eu' WHERE id IN (3, 30, 33);        -- into the filter (3 stays out: its amount is 3)
         UPDATE orders SET region = 'us' WHERE id IN (11, 13);           -- out of it
         UPDATE orders SET amount = amount + 1 WHERE id BETWEEN 100 AND 120;
         UPDATE orders SET secret = 'changed' WHERE id = 14;             -- a column the target does not have
         UPDATE orders SET amount = 1 WHERE id = 22;                     -- out by another column
         UPDATE orders SET id = id + 10000 WHERE id IN (25, 27);         -- a key change, in the filter
         DELETE FROM orders WHERE id IN (16, 17, 18);                    -- 18 is a US order",
    )
    .await
    .unwrap();
    let tgt = pair.target().await;
    let expected = format!("SELECT (id, region, amount, placed)::text FROM orders WHERE {ORDERS_FILTER} ORDER BY id");
    let actual = "SELECT (id, region, total, placed)::text FROM orders ORDER BY id";
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let want: Vec<String> = src.query(&expected, &[]).await.unwrap().iter().map(|r| r.get(0)).collect();
        let got: Vec<String> = tgt.query(actual, &[]).await.unwrap().iter().map(|r| r.get(0)).collect();
        if want == got {
            assert!(got.len() > 1000, "{} rows", got.len());
            break;
        }
        assert!(!runner.is_finished(), "the job ended: {:?}", runner.await);
        let missing: Vec<_> = want.iter().filter(|r| !got.contains(r)).take(5).collect();
        let extra: Vec<_> = got.iter().filter(|r| !want.contains(r)).take(5).collect();
        assert!(Instant::now() < deadline, "target differs: missing {missing:?}, extra {extra:?}");
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    let columns: Vec<String> = tgt
        .query(
            "SELECT attname::text FROM pg_attribute WHERE attrelid = 'orders'::regclass AND attnum > 0 ORDER BY attnum",
            &[],
        )
        .await
        .unwrap()
        .iter()
        .map(|r| r.get(0))
        .collect();
    assert_eq!(columns, ["id", "region", "total", "placed"], "secret left out, amount renamed");
    stop_job.send(true).unwrap();
    assert_eq!(runner.await.unwrap().unwrap(), Outcome::Stopped);
    engine::release("versions/filter", &spec, &creds).await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_filter_the_stream_cannot_evaluate_fails_the_precheck_and_the_job_before_any_copy() {
    let pair = Pair::start_versions(13, 13);
    let src = pair.source().await;
    src.batch_execute(ORDERS).await.unwrap();
    src.batch_execute("ALTER TABLE orders REPLICA IDENTITY DEFAULT").await.unwrap();
    let creds = pair.credentials();

    // Within the subset every source takes, but not one the stream can evaluate.
    let spec = filtered_orders_spec(&pair, "region > 'm'");
    let items = engine::precheck(&spec, &creds).await;
    let filters = items.iter().find(|i| i.item == "source.filters").expect("a source.filters item");
    assert_eq!(filters.result, PrecheckResult::Failed, "{items:#?}");
    let reason = filters.reason.as_deref().unwrap();
    assert!(reason.contains("PostgreSQL 13") && reason.contains("ordering text"), "{reason}");
    assert!(filters.fix.as_deref().unwrap().contains("PostgreSQL 15"), "{filters:?}");
    let (_stop_job, stop) = watch::channel(false);
    let err = engine::run(Job { id: "versions/unfit", spec: &spec, credentials: &creds, tracker: tracker(), stop })
        .await
        .unwrap_err();
    assert_eq!(err.code(), "UNSUPPORTED", "{err}");
    assert!(
        pair.target().await.query_opt("SELECT 1 FROM pg_class WHERE relname = 'orders'", &[]).await.unwrap().is_none()
    );
    assert!(support::slots(&src).await.is_empty(), "nothing created on the source");

    // Within the subset, but reading a column outside the key without REPLICA IDENTITY FULL.
    let items = engine::precheck(&filtered_orders_spec(&pair, ORDERS_FILTER), &creds).await;
    let identity = items.iter().find(|i| i.item == "source.filterIdentity").expect("a source.filterIdentity item");
    assert_eq!(identity.result, PrecheckResult::Failed, "{items:#?}");
    assert!(identity.skippable);
    assert!(identity.reason.as_deref().unwrap().contains("public.orders"), "{identity:?}");
    // A filter on the key alone needs no old row.
    let items = engine::precheck(&filtered_orders_spec(&pair, "id <= 100"), &creds).await;
    assert!(items.iter().all(|i| i.result != PrecheckResult::Failed), "{items:#?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_stream_filter_keeps_exactly_the_rows_postgresql_keeps() {
    let server = PostgresServer::start_with(PostgresOptions::version(13)).unwrap();
    server.create_database("shop").unwrap();
    let client = support::connect(&server).await;
    client
        .batch_execute(
            "CREATE TABLE probe (id int, qty int, amount numeric(12,2), ratio float8, f4 real, paid bool, region text,
                                 tag char(5), day date, at timestamp, ref uuid);
             INSERT INTO probe VALUES
               (1, 7, 100.00, 0.1, 0.1, true, 'EU', 'ab', '2024-02-29', '2024-01-01 00:00:00.5', 'a0eebc99-9c0b-4ef8-bb6d-6bb9bd380a11'),
               (2, -3, 'NaN', 'NaN', '-Infinity', false, 'eu ', 'ab   ', '0044-03-15 BC', 'infinity', '00000000-0000-0000-0000-000000000000'),
               (3, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL),
               (4, 0, -0.50, 1e21, 3.4e38, true, 'it''s \\ ok', '', '9999-12-31', '1999-12-31 23:59:59.999999', NULL),
               (5, 2147483647, 9999999999.99, -0, 0, false, 'US', 'US', '-infinity', '2024-01-01', 'ffffffff-ffff-ffff-ffff-ffffffffffff');",
        )
        .await
        .unwrap();
    let filters = [
        "qty > 0 AND amount >= 100",
        "amount = '100' OR amount < 0",
        "amount > 1000000 OR amount IS NULL",
        "ratio > 0.1 OR f4 > 0.1",
        "f4 = 0.1 OR ratio = 0.1",
        "ratio >= 1e20 OR f4 < -1e30",
        "paid",
        "NOT paid OR paid IS UNKNOWN",
        "paid = 'yes' AND qty IN (7, 2147483647)",
        "region = 'EU' OR region = 'eu '",
        "region IN ('US', 'it''s \\ ok')",
        "region LIKE 'E%' OR region ILIKE 'us'",
        "region NOT LIKE '%s%'",
        "tag = 'ab' OR tag IN ('US')",
        "day >= '2024-01-01' AND day < '2025-01-01'",
        "day < '0001-01-01' OR day > '9999-01-01'",
        "at BETWEEN '2024-01-01' AND '2024-01-01 00:00:01'",
        "at > '2000-01-01' AND at IS NOT NULL",
        "ref = 'A0EEBC99-9C0B-4EF8-BB6D-6BB9BD380A11' OR ref > 'ffffffff-0000-0000-0000-000000000000'",
        "ref IS DISTINCT FROM '00000000-0000-0000-0000-000000000000'",
        "qty NOT IN (0, NULL) OR qty BETWEEN -5 AND 5",
        "(qty = 7) = true AND (amount > 1 OR region IS NULL)",
    ];
    let columns: Vec<(String, String)> = client
        .query(
            "SELECT attname::text, format_type(atttypid, atttypmod) FROM pg_attribute \
             WHERE attrelid = 'probe'::regclass AND attnum > 0 ORDER BY attnum",
            &[],
        )
        .await
        .unwrap()
        .iter()
        .map(|r| (r.get(0), r.get(1)))
        .collect();
    let typed: Vec<(&str, &str)> = columns.iter().map(|(n, t)| (n.as_str(), t.as_str())).collect();
    let names: Vec<&str> = typed.iter().map(|(n, _)| *n).collect();
    // Every value as its type's text form, which is what the change stream carries.
    let select = names.iter().map(|n| format!("{n}::text")).collect::<Vec<_>>().join(", ");
    let rows = client.query(&format!("SELECT {select} FROM probe ORDER BY id"), &[]).await.unwrap();
    for filter in filters {
        let compiled = RowFilter::parse_postgres(filter, &typed).unwrap_or_else(|e| panic!("{filter:?}: {e}"));
        let kept: Vec<i32> = client
            .query(&format!("SELECT id FROM probe WHERE {filter} ORDER BY id"), &[])
            .await
            .unwrap_or_else(|e| panic!("{filter:?}: {e:?}"))
            .iter()
            .map(|r| r.get(0))
            .collect();
        let ours: Vec<i32> = rows
            .iter()
            .filter(|row| {
                compiled
                    .eval_postgres(|name| {
                        let i = names.iter().position(|n| *n == name)?;
                        Some(row.get::<_, Option<&str>>(i).map_or(Value::Null, Value::Text))
                    })
                    .unwrap_or_else(|e| panic!("{filter:?}: {e}"))
            })
            .map(|row| row.get::<_, &str>(0).parse().unwrap())
            .collect();
        assert_eq!(ours, kept, "{filter}");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_partitioned_table_on_postgres_12_fails_the_precheck_and_the_job() {
    let pair = Pair::start_versions(12, 15);
    let src = pair.source().await;
    src.batch_execute(PARTITIONED).await.unwrap();
    let spec = pair.spec(TaskType::FullIncrTrans, &["measures"]);
    let creds = pair.credentials();
    let items = engine::precheck(&spec, &creds).await;
    let item = items.iter().find(|i| i.item == "source.partitionedTables").expect("a source.partitionedTables item");
    assert_eq!(item.result, PrecheckResult::Failed, "{items:#?}");
    assert!(item.reason.as_deref().unwrap().contains("public.measures"), "{item:?}");
    assert!(item.fix.as_deref().unwrap().contains("partitions"), "{item:?}");
    let (_stop_job, stop) = watch::channel(false);
    let err =
        engine::run(Job { id: "versions/partitioned", spec: &spec, credentials: &creds, tracker: tracker(), stop })
            .await
            .unwrap_err();
    assert_eq!(err.code(), "UNSUPPORTED", "{err}");
    assert!(support::slots(&src).await.is_empty() && support::publications(&src).await.is_empty());
}
