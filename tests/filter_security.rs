//! Row filters cannot carry SQL: filters reaching beyond the table's own columns are refused
//! with the construct named (precheck item `source.filters`), a filter means the same whatever
//! SQL mode the server runs in, and compare sessions cannot write. Against throwaway MariaDB and
//! PostgreSQL servers.

mod my_support;
mod support;

use std::time::Duration;

use ferry::api::{CompareResult, PrecheckItem, PrecheckResult, TaskType};
use ferry::compare::{self, Options};
use ferry::engine::error::Side;
use ferry::engine::{self, Outcome};
use ferry::testkit::{MariaDbOptions, MariaDbServer};
use my_support::{MyPair, exec};
use mysql_async::prelude::Queryable;

/// Filters that try to read or call beyond the table, and what the refusal names.
const ATTACKS: &[(&str, &str)] = &[
    ("1) UNION ALL SELECT user, authentication_string FROM mysql.user WHERE (1", "found `)`"),
    ("id IN (SELECT id FROM shop.secrets)", "subquery"),
    ("pg_read_file('/etc/passwd') IS NOT NULL", "function call `pg_read_file(...)`"),
    ("other_table.col = 1", "qualified name `other_table.col`"),
    ("nope = 1", "column `nope` does not exist"),
];

fn find<'a>(items: &'a [PrecheckItem], name: &str) -> &'a PrecheckItem {
    items.iter().find(|i| i.item == name).unwrap_or_else(|| panic!("no item {name} in {items:#?}"))
}

/// A source whose global SQL mode changes what quotes and backslashes mean.
fn hostile_mode_server() -> MariaDbServer {
    MariaDbServer::start_with(MariaDbOptions {
        extra_args: vec!["--sql-mode=ANSI_QUOTES,NO_BACKSLASH_ESCAPES,PIPES_AS_CONCAT".into()],
        ..Default::default()
    })
    .unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn mysql_filters_reaching_beyond_the_table_fail_the_precheck_with_the_construct_named() {
    let pair = MyPair::start();
    exec(
        &mut pair.source().await,
        "CREATE DATABASE shop; CREATE TABLE shop.orders (id int PRIMARY KEY, note text);
         CREATE TABLE shop.secrets (id int PRIMARY KEY)",
    )
    .await;
    for (filter, says) in ATTACKS {
        let mut spec = pair.spec(TaskType::FullIncrTrans, &["orders"]);
        spec.objects.databases[0].tables[0].filter = Some((*filter).into());
        let items = engine::precheck(&spec, &pair.credentials()).await;
        let item = find(&items, "source.filters");
        assert_eq!(item.result, PrecheckResult::Failed, "{filter}: {item:?}");
        let reason = item.reason.as_deref().unwrap_or_default();
        assert!(reason.contains("shop.orders") && reason.contains(says), "{filter}: {reason}");
        // The job itself refuses to start on it, before anything is read.
        let err = pair.run("t/attack", spec).await.unwrap_err();
        assert!(err.to_string().contains(says), "{filter}: {err}");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn postgres_filters_reaching_beyond_the_table_fail_the_precheck_with_the_construct_named() {
    let pair = support::Pair::start();
    pair.source()
        .await
        .batch_execute("CREATE TABLE orders (id int PRIMARY KEY, note text); CREATE TABLE secrets (id int PRIMARY KEY)")
        .await
        .unwrap();
    for (filter, says) in ATTACKS {
        let mut spec = pair.spec(TaskType::FullIncrTrans, &["orders"]);
        spec.objects.databases[0].schemas[0].tables[0].filter = Some((*filter).into());
        let items = engine::precheck(&spec, &pair.credentials()).await;
        let item = find(&items, "source.filters");
        assert_eq!(item.result, PrecheckResult::Failed, "{filter}: {item:?}");
        let reason = item.reason.as_deref().unwrap_or_default();
        assert!(reason.contains("public.orders") && reason.contains(says), "{filter}: {reason}");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_filter_keeps_its_meaning_on_a_server_with_ansi_quotes_and_no_backslash_escapes() {
    let pair = MyPair { source: hostile_mode_server(), target: hostile_mode_server() };
    let mut src = pair.source().await;
    // The server's own mode reads this text: a backslash is a backslash, '' is a quote.
    exec(
        &mut src,
        r#"CREATE DATABASE shop; CREATE TABLE shop.notes (id int PRIMARY KEY, note varchar(20));
          INSERT INTO shop.notes VALUES (1, 'a\b'), (2, 'it''s'), (3, 'ab'), (4, 'a\\b'), (5, 'say "x"')"#,
    )
    .await;
    // The filter is MySQL's default syntax: '\\' is one backslash, "..." a string.
    let filter = r#"note = 'a\\b' OR note = "it's" OR note = 'say "x"'"#;
    let mut spec = pair.spec(TaskType::FullIncrTrans, &["notes"]);
    spec.objects.databases[0].tables[0].filter = Some(filter.into());
    let (stop, mut job) = pair.spawn("t/modes", spec.clone());
    let mut tgt = pair.target().await;
    my_support::wait_streaming(&mut tgt, &mut job).await;
    let ids = "SELECT id FROM shop.notes ORDER BY id";
    assert_eq!(tgt.query::<i64, _>(ids).await.unwrap(), [1, 2, 5], "the snapshot");
    exec(
        &mut src,
        r"INSERT INTO shop.notes VALUES (11, 'a\b'), (12, 'it''s'), (13, 'a\\b'), (14, 'its');
          UPDATE shop.notes SET note = 'a\b' WHERE id = 3",
    )
    .await;
    my_support::wait_for(&mut tgt, "SELECT count(*) = 6 FROM shop.notes", Duration::from_secs(30)).await;
    tokio::time::sleep(Duration::from_millis(500)).await;
    assert_eq!(tgt.query::<i64, _>(ids).await.unwrap(), [1, 2, 3, 5, 11, 12], "the stream");
    stop.send(true).unwrap();
    assert_eq!(job.await.unwrap().unwrap(), Outcome::Stopped);
    // The compare applies the same filter on both sides.
    let report = compare::run(&spec.source, &spec.target, &spec.objects, &pair.credentials(), Options::content(100))
        .await
        .unwrap();
    assert_eq!(report.result(), CompareResult::Consistent, "{report:#?}");
    assert_eq!(report.tables[0].source_rows, Some(6));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_postgres_filter_with_quotes_and_backslashes_selects_the_same_rows_in_snapshot_and_stream() {
    let pair = support::Pair::start();
    let src = pair.source().await;
    src.batch_execute(
        r"CREATE TABLE notes (id int PRIMARY KEY, note text);
          INSERT INTO notes VALUES (1, 'a\b'), (2, 'it''s'), (3, 'ab'), (4, 'a\\b')",
    )
    .await
    .unwrap();
    let mut spec = pair.spec(TaskType::FullIncrTrans, &["notes"]);
    spec.objects.databases[0].schemas[0].tables[0].filter = Some(r"note = 'a\b' OR note = 'it''s'".into());
    let (tx, stop) = tokio::sync::watch::channel(false);
    let creds = pair.credentials();
    let job = {
        let (spec, creds) = (spec.clone(), creds.clone());
        tokio::spawn(async move {
            let tracker = engine::Tracker::new(std::sync::Arc::new(engine::progress::NoProgress));
            engine::run(engine::Job { id: "t/pgq", spec: &spec, credentials: &creds, tracker, stop }).await
        })
    };
    let tgt = pair.target().await;
    let ids = |rows: Vec<tokio_postgres::Row>| rows.iter().map(|r| r.get::<_, i32>(0)).collect::<Vec<_>>();
    let deadline = std::time::Instant::now() + Duration::from_secs(60);
    loop {
        if let Ok(rows) = tgt.query("SELECT id FROM notes ORDER BY id", &[]).await
            && ids(rows.clone()) == [1, 2]
        {
            break;
        }
        assert!(std::time::Instant::now() < deadline && !job.is_finished(), "the snapshot never arrived");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    src.batch_execute(r"INSERT INTO notes VALUES (11, 'a\b'), (12, 'it''s'), (13, 'a\\b'), (14, 'its')").await.unwrap();
    loop {
        let rows = tgt.query("SELECT id FROM notes ORDER BY id", &[]).await.unwrap();
        if ids(rows.clone()).len() >= 4 {
            tokio::time::sleep(Duration::from_millis(500)).await;
            let rows = tgt.query("SELECT id FROM notes ORDER BY id", &[]).await.unwrap();
            assert_eq!(ids(rows), [1, 2, 11, 12]);
            break;
        }
        assert!(std::time::Instant::now() < deadline, "the stream never delivered");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    tx.send(true).unwrap();
    assert_eq!(job.await.unwrap().unwrap(), Outcome::Stopped);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn compare_sessions_are_read_only_and_mysql_sessions_pin_the_sql_mode() {
    let pair = MyPair { source: MariaDbServer::start().unwrap(), target: hostile_mode_server() };
    exec(&mut pair.target().await, "CREATE DATABASE shop; CREATE TABLE shop.t (id int PRIMARY KEY)").await;
    let spec = pair.spec(TaskType::FullTrans, &["t"]);
    let creds = pair.credentials();
    let mut conn = compare::mysql::session(&spec.target, creds.login(Side::Target), Side::Target).await.unwrap();
    let err = conn.query_drop("INSERT INTO shop.t VALUES (1)").await.unwrap_err();
    assert!(err.to_string().contains("READ ONLY"), "{err}");
    let mode: String = conn.query_first("SELECT @@SESSION.sql_mode").await.unwrap().unwrap();
    assert_eq!(mode, ferry::engine::mysql::connect::SESSION_SQL_MODE);

    let pg = support::Pair::start();
    pg.target().await.batch_execute("CREATE TABLE t (id int PRIMARY KEY)").await.unwrap();
    let spec = pg.spec(TaskType::FullTrans, &["t"]);
    let client =
        compare::postgres::session(&spec.target, pg.credentials().login(Side::Target), Side::Target).await.unwrap();
    let err = client.batch_execute("INSERT INTO public.t VALUES (1)").await.unwrap_err();
    assert!(format!("{err:?}").contains("read-only transaction"), "{err:?}");
}
