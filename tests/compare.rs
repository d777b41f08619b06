//! Content comparison against real servers: equal data with tricky values is CONSISTENT, and
//! injected differences are found exactly — no more, no fewer rows reported.

mod my_support;
mod support;

use std::time::Duration;

use ferry::api::compare::DifferenceKind;
use ferry::api::{CompareResult, ObjectCompareResult, TaskType, Tuning};
use ferry::compare::{self, Options};
use mysql_async::prelude::Queryable;

const OPTS: Options = Options::content(100);
const OBJECTS: Options = Options { objects: true, content: false, ..OPTS };

fn kinds(report: &compare::Report) -> Vec<(String, DifferenceKind)> {
    let mut v: Vec<(String, DifferenceKind)> = report
        .differences
        .iter()
        .map(|d| (d.source_key_value.clone().or(d.target_key_value.clone()).unwrap_or_default(), d.kind))
        .collect();
    v.sort_by(|a, b| a.0.cmp(&b.0));
    v
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn postgres_pairs_compare_equal_with_tricky_values_and_find_each_injected_difference() {
    let pair = support::Pair::start();
    pair.source()
        .await
        .batch_execute(
            "CREATE TABLE orders (id int PRIMARY KEY, amount numeric(12,2), ratio double precision, at timestamptz,
                                  doc jsonb, note text, big text);
             INSERT INTO orders SELECT g, g / 3.0, g * 0.1, '2024-01-01 00:00:00+02'::timestamptz + g * interval '1 minute',
                                       jsonb_build_object('b', g, 'a', 'x'), 'note ' || g || ' 🦀', CASE WHEN g = 7 THEN repeat('toast', 50000) END
               FROM generate_series(1, 25000) g;
             INSERT INTO orders VALUES (-1, 1.50, 'NaN', 'infinity', '{\"z\": 1, \"a\": [1, 2]}', '', NULL);
             CREATE TABLE audit (line text);
             INSERT INTO audit SELECT 'l' || g FROM generate_series(1, 100) g;
             ANALYZE;",
        )
        .await
        .unwrap();
    let mut spec = pair.spec(TaskType::FullTrans, &["orders", "audit"]);
    spec.tuning = Some(Tuning { batch_rows: Some(5000), ..Default::default() });
    let (tx, stop) = tokio::sync::watch::channel(false);
    let tracker = ferry::engine::Tracker::new(std::sync::Arc::new(ferry::engine::progress::NoProgress));
    let creds = pair.credentials();
    ferry::engine::run(ferry::engine::Job { id: "t/cmp", spec: &spec, credentials: &creds, tracker, stop })
        .await
        .unwrap();
    drop(tx);

    let report = compare::run(&spec.source, &spec.target, &spec.objects, &creds, OPTS).await.unwrap();
    assert_eq!(report.result(), CompareResult::Consistent, "{report:#?}");
    assert_eq!(report.tables[0].source_rows, Some(25001));

    pair.target()
        .await
        .batch_execute(
            "DELETE FROM orders WHERE id = 100;
             INSERT INTO orders (id, note) VALUES (99999, 'extra');
             UPDATE orders SET amount = amount + 0.01 WHERE id = 2000;
             UPDATE orders SET note = NULL WHERE id = -1;
             UPDATE orders SET doc = '{\"b\": 5, \"a\": \"y\"}' WHERE id = 5;
             UPDATE audit SET line = 'changed' WHERE line = 'l5';",
        )
        .await
        .unwrap();
    let report = compare::run(&spec.source, &spec.target, &spec.objects, &creds, OPTS).await.unwrap();
    assert_eq!(report.result(), CompareResult::Inconsistent);
    assert_eq!(
        kinds(&report),
        vec![
            ("-1".into(), DifferenceKind::ValuesDiffer),
            ("100".into(), DifferenceKind::OnlyInSource),
            ("2000".into(), DifferenceKind::ValuesDiffer),
            ("5".into(), DifferenceKind::ValuesDiffer),
            ("99999".into(), DifferenceKind::OnlyInTarget),
        ]
    );
    let orders = &report.tables[0];
    assert_eq!((orders.source_rows, orders.target_rows, orders.different_rows), (Some(25001), Some(25001), Some(5)));
    let d = report.differences.iter().find(|d| d.kind == DifferenceKind::OnlyInSource).unwrap();
    assert_eq!(d.source_select_sql.as_deref(), Some("SELECT * FROM \"public\".\"orders\" WHERE \"id\" = '100'"));
    let audit = &report.tables[1];
    assert_eq!(audit.content_result, Some(ObjectCompareResult::Inconsistent), "the keyless table's hash differs");
    assert!(audit.message.as_deref().unwrap().contains("no primary key"));

    let structure = compare::run(&spec.source, &spec.target, &spec.objects, &creds, OBJECTS).await.unwrap();
    assert_eq!(structure.result(), CompareResult::Consistent, "{structure:#?}");
    pair.target()
        .await
        .batch_execute("ALTER TABLE orders ALTER COLUMN ratio TYPE real, ADD COLUMN extra int; CREATE INDEX by_note ON orders (note)")
        .await
        .unwrap();
    pair.source().await.batch_execute("CREATE UNIQUE INDEX by_at ON orders (at, id)").await.unwrap();
    let structure = compare::run(&spec.source, &spec.target, &spec.objects, &creds, OBJECTS).await.unwrap();
    assert_eq!(structure.tables[0].object_result, Some(ObjectCompareResult::Inconsistent));
    let message = structure.tables[0].message.clone().unwrap();
    for says in [
        "column ratio is real on the target, double precision on the source",
        "column extra only on the target",
        "index UNIQUE (at, id) missing on the target",
        "index (note) only on the target",
    ] {
        assert!(message.contains(says), "{says:?} in {message}");
    }
    assert_eq!(structure.tables[1].object_result, Some(ObjectCompareResult::Consistent));

    pair.target().await.batch_execute("DROP TABLE audit").await.unwrap();
    let report = compare::run(&spec.source, &spec.target, &spec.objects, &creds, OPTS).await.unwrap();
    assert_eq!(report.tables[1].rows_result, Some(ObjectCompareResult::TargetDbNotExist));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn mariadb_pairs_compare_equal_and_find_each_injected_difference() {
    let pair = my_support::MyPair::start();
    let mut src = pair.source().await;
    my_support::exec(
        &mut src,
        "CREATE DATABASE shop CHARACTER SET utf8mb4; USE shop;
         CREATE TABLE orders (id int PRIMARY KEY, f float, d decimal(10,3), note varchar(50), at datetime(6), b bit(5), j json);
         INSERT INTO orders SELECT seq, seq / 7, seq / 3, concat('n', seq, ' 🦀'), '2024-01-01' + INTERVAL seq SECOND, seq % 32,
                                   json_object('a', seq) FROM seq_1_to_22000;
         INSERT INTO orders VALUES (0, 1.2345678, 1.5, '', '0000-00-00 00:00:00', 0, NULL);",
    )
    .await;
    let spec = pair.spec(TaskType::FullTrans, &["orders"]);
    let creds = pair.credentials();
    pair.run("t/cmp", spec.clone()).await.unwrap();
    let report = compare::run(&spec.source, &spec.target, &spec.objects, &creds, OPTS).await.unwrap();
    assert_eq!(report.result(), CompareResult::Consistent, "{report:#?}");

    let mut tgt = pair.target().await;
    tgt.query_drop(
        "SET SESSION sql_mode = '';
         DELETE FROM shop.orders WHERE id = 10;
         INSERT INTO shop.orders (id) VALUES (50000);
         UPDATE shop.orders SET f = 1.2345679 WHERE id = 0;
         UPDATE shop.orders SET note = NULL WHERE id = 20;
         UPDATE shop.orders SET b = 3 WHERE id = 21001;",
    )
    .await
    .unwrap();
    let report = compare::run(&spec.source, &spec.target, &spec.objects, &creds, OPTS).await.unwrap();
    assert_eq!(
        kinds(&report),
        vec![
            ("0".into(), DifferenceKind::ValuesDiffer),
            ("10".into(), DifferenceKind::OnlyInSource),
            ("20".into(), DifferenceKind::ValuesDiffer),
            ("21001".into(), DifferenceKind::ValuesDiffer),
            ("50000".into(), DifferenceKind::OnlyInTarget),
        ],
        "{report:#?}"
    );
    let _ = Duration::from_secs(0);
}

/// Waits until the PostgreSQL job's checkpoint on the target covers source commits after
/// `read_at` (the job writes the source commit time of its checkpoint into `_ferry.jobs`).
struct PgCheckpoint {
    target: tokio_postgres::Client,
}

impl compare::CatchUp for PgCheckpoint {
    async fn wait_past(&self, read_at: jiff::Timestamp) -> bool {
        let deadline = std::time::Instant::now() + Duration::from_secs(20);
        let at = read_at.as_microsecond() as f64 / 1e6;
        while std::time::Instant::now() < deadline {
            let sql = "SELECT coalesce(extract(epoch FROM max(checkpoint_time))::float8 > $1, false) FROM _ferry.jobs";
            if let Ok(row) = self.target.query_one(sql, &[&at]).await
                && row.get::<_, bool>(0)
            {
                return true;
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        false
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_online_comparison_during_streaming_is_consistent_and_still_finds_a_real_difference() {
    use std::sync::Arc;
    use std::sync::atomic::{AtomicBool, Ordering};
    let pair = support::Pair::start();
    pair.source()
        .await
        .batch_execute(
            "CREATE TABLE accounts (id int PRIMARY KEY, balance int NOT NULL);
             INSERT INTO accounts SELECT g, 0 FROM generate_series(1, 30000) g; ANALYZE;",
        )
        .await
        .unwrap();
    let spec = pair.spec(TaskType::FullIncrTrans, &["accounts"]);
    let creds = pair.credentials();
    let (stop_tx, stop) = tokio::sync::watch::channel(false);
    let job = {
        let (spec, creds) = (spec.clone(), creds.clone());
        tokio::spawn(async move {
            let tracker = ferry::engine::Tracker::new(Arc::new(ferry::engine::progress::NoProgress));
            ferry::engine::run(ferry::engine::Job { id: "t/online", spec: &spec, credentials: &creds, tracker, stop })
                .await
        })
    };
    // Writes all over the table while the job streams and the comparison runs.
    let running = Arc::new(AtomicBool::new(true));
    let writer = {
        let running = Arc::clone(&running);
        let src = pair.source().await;
        tokio::spawn(async move {
            let mut n = 0i32;
            while running.load(Ordering::SeqCst) {
                let id = 1 + (n * 7919) % 30000;
                src.execute("UPDATE accounts SET balance = balance + 1 WHERE id = $1", &[&id]).await.unwrap();
                // Rows come and go too, so that the row counts of a read differ in flight.
                src.execute("INSERT INTO accounts VALUES ($1, 0)", &[&(30001 + n)]).await.unwrap();
                if n >= 50 {
                    src.execute("DELETE FROM accounts WHERE id = $1", &[&(30001 + n - 50)]).await.unwrap();
                }
                n += 1;
                tokio::time::sleep(Duration::from_millis(2)).await;
            }
        })
    };
    let target = pair.target().await;
    let deadline = std::time::Instant::now() + Duration::from_secs(60);
    while target
        .query_opt("SELECT 1 FROM _ferry.jobs WHERE checkpoint_time IS NOT NULL", &[])
        .await
        .ok()
        .flatten()
        .is_none()
    {
        assert!(std::time::Instant::now() < deadline, "the job did not stream");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let online = Options { rechecks: 5, ..OPTS };
    let catch_up = PgCheckpoint { target: pair.target().await };
    let report =
        compare::run_online(&spec.source, &spec.target, &spec.objects, &creds, online, &catch_up).await.unwrap();
    assert_eq!(report.result(), CompareResult::Consistent, "{report:#?}");

    // A difference written straight into the target persists and is reported.
    target.batch_execute("UPDATE accounts SET balance = -999 WHERE id = 29999").await.unwrap();
    let report =
        compare::run_online(&spec.source, &spec.target, &spec.objects, &creds, online, &catch_up).await.unwrap();
    assert_eq!(kinds(&report), vec![("29999".into(), DifferenceKind::ValuesDiffer)], "{report:#?}");
    running.store(false, Ordering::SeqCst);
    writer.await.unwrap();
    stop_tx.send(true).unwrap();
    job.await.unwrap().unwrap();
}

#[test]
fn sampling_picks_about_the_asked_share_of_chunks() {
    let picked = (0..2000).filter(|&i| compare::sampled_for_tests("shop.orders", i, 10)).count();
    assert!((120..=280).contains(&picked), "{picked} of 2000 at 10%");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn mariadb_and_postgres_holding_the_same_logical_data_compare_equal_through_canonical_forms() {
    let maria = ferry::testkit::MariaDbServer::start().unwrap();
    let pg = ferry::testkit::PostgresServer::start().unwrap();
    pg.create_database("shop").unwrap();
    let mut m = mysql_async::Conn::new(maria.opts(None)).await.unwrap();
    m.query_drop(
        "CREATE DATABASE shop CHARACTER SET utf8mb4; USE shop;
         CREATE TABLE orders (id int PRIMARY KEY, amount decimal(10,2), ratio double, f float, flag tinyint(1),
                              at datetime(6), doc json, note varchar(50), data varbinary(10));
         INSERT INTO orders VALUES
           (1, 1.50, 0.1, 1.2345678, 1, '2024-01-01 10:00:00.5', '{\"b\": 1, \"a\": [1, 2]}', 'café 🦀', 0x00FF),
           (2, -0.00, 1e300, -3.5, 0, '1999-12-31 23:59:59', NULL, '', ''),
           (3, NULL, NULL, NULL, NULL, NULL, '[]', NULL, NULL);",
    )
    .await
    .unwrap();
    let (c, conn) = pg.config("shop").connect(tokio_postgres::NoTls).await.unwrap();
    tokio::spawn(conn);
    c.batch_execute(
        "CREATE SCHEMA shop;
         CREATE TABLE shop.orders (id int PRIMARY KEY, amount numeric(10,2), ratio double precision, f real, flag boolean,
                                   at timestamp(6), doc jsonb, note varchar(50), data bytea);
         INSERT INTO shop.orders VALUES
           (1, 1.5, 0.1, 1.2345678, true, '2024-01-01 10:00:00.5', '{\"a\": [1, 2], \"b\": 1}', 'café 🦀', '\\x00ff'),
           (2, 0, 1e300, -3.5, false, '1999-12-31 23:59:59', NULL, '', ''),
           (3, NULL, NULL, NULL, NULL, NULL, '[]', NULL, NULL);",
    )
    .await
    .unwrap();
    let source = my_support::endpoint(&maria);
    let mut target = support::endpoint(&pg);
    target.database = Some("shop".into());
    let objects = ferry::api::ObjectSelection {
        scope: ferry::api::ObjectScope::Table,
        target_database: None,
        databases: vec![ferry::api::DatabaseSelection {
            name: "shop".into(),
            tables: vec![ferry::api::TableSelection { name: "orders".into(), ..Default::default() }],
            ..Default::default()
        }],
    };
    let creds = ferry::engine::Credentials {
        source_password: Some(maria.password().into()),
        target_password: Some(pg.password().into()),
        ..Default::default()
    };
    let report = compare::run(&source, &target, &objects, &creds, OPTS).await.unwrap();
    assert_eq!(report.result(), CompareResult::Consistent, "{report:#?}");

    c.batch_execute("UPDATE shop.orders SET note = NULL WHERE id = 2; UPDATE shop.orders SET f = 1.2345679 WHERE id = 1; DELETE FROM shop.orders WHERE id = 3")
        .await
        .unwrap();
    let report = compare::run(&source, &target, &objects, &creds, OPTS).await.unwrap();
    assert_eq!(
        kinds(&report),
        vec![
            ("1".into(), DifferenceKind::ValuesDiffer),
            ("2".into(), DifferenceKind::ValuesDiffer),
            ("3".into(), DifferenceKind::OnlyInSource),
        ],
        "{report:#?}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_changed_value_of_each_type_class_is_found_on_its_own_row() {
    let pair = support::Pair::start();
    let columns = [
        ("i", "bigint", "1", "2"),
        ("n", "numeric(20,5)", "1.5", "1.50001"),
        ("f", "double precision", "0.1", "0.1000000000000001"),
        ("b", "boolean", "true", "false"),
        ("d", "date", "'2024-02-29'", "'2024-03-01'"),
        ("ts", "timestamptz", "'2024-01-01 00:00:00+00'", "'2024-01-01 00:00:00.000001+00'"),
        ("t", "time", "'12:00'", "'12:00:01'"),
        ("by", "bytea", "'\\x00ff'", "'\\x00fe'"),
        ("j", "jsonb", "'{\"a\": 1}'", "'{\"a\": 2}'"),
        ("s", "text", "'x'", "'X'"),
        ("u", "uuid", "'00000000-0000-0000-0000-000000000001'", "'00000000-0000-0000-0000-000000000002'"),
        ("iv", "interval", "'1 day'", "'24 hours'"),
    ];
    let defs: Vec<String> = columns.iter().map(|(c, t, _, _)| format!("{c} {t}")).collect();
    let values: Vec<&str> = columns.iter().map(|(_, _, v, _)| *v).collect();
    let mut sql = format!("CREATE TABLE kinds (id int PRIMARY KEY, {});", defs.join(", "));
    for id in 1..=columns.len() {
        sql.push_str(&format!("INSERT INTO kinds VALUES ({id}, {});", values.join(", ")));
    }
    sql.push_str("ANALYZE;");
    pair.source().await.batch_execute(&sql).await.unwrap();
    let spec = pair.spec(TaskType::FullTrans, &["kinds"]);
    let creds = pair.credentials();
    let (_tx, stop) = tokio::sync::watch::channel(false);
    let tracker = ferry::engine::Tracker::new(std::sync::Arc::new(ferry::engine::progress::NoProgress));
    ferry::engine::run(ferry::engine::Job { id: "t/kinds", spec: &spec, credentials: &creds, tracker, stop })
        .await
        .unwrap();
    let report = compare::run(&spec.source, &spec.target, &spec.objects, &creds, OPTS).await.unwrap();
    assert_eq!(report.result(), CompareResult::Consistent, "{report:#?}");
    // Row k gets column k changed.
    let updates: String = columns
        .iter()
        .enumerate()
        .map(|(k, (c, _, _, changed))| format!("UPDATE kinds SET {c} = {changed} WHERE id = {};", k + 1))
        .collect();
    pair.target().await.batch_execute(&updates).await.unwrap();
    let report = compare::run(&spec.source, &spec.target, &spec.objects, &creds, OPTS).await.unwrap();
    let mut found: Vec<u32> =
        report.differences.iter().map(|d| d.source_key_value.clone().unwrap().parse().unwrap()).collect();
    found.sort();
    assert_eq!(found, (1..=columns.len() as u32).collect::<Vec<_>>(), "{report:#?}");
    assert!(report.differences.iter().all(|d| d.kind == DifferenceKind::ValuesDiffer));
}
