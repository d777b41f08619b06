//! MariaDB → PostgreSQL: DDL in the binary log translated for PostgreSQL while the job streams.
//! Each translated statement runs between rows written before and after it, and the target's
//! columns, indexes and every row are checked; a statement that cannot be translated stops the
//! job naming it; a worker killed right after a DDL resumes without running it again or losing
//! a row.

mod my_pg_support;
mod runner;

use std::time::{Duration, Instant};

use ferry::api::TaskType;
use ferry::engine::{self, EngineError, Job, Outcome, Tracker, progress::NoProgress};
use my_pg_support::{Servers, exec, until, wait_for};
use mysql_async::Conn;
use mysql_async::prelude::Queryable;
use runner::Runner;
use tokio_postgres::Client;

/// Starts a FULL_INCR_TRANS job with DDL replay in this process.
fn spawn(
    servers: &Servers,
    id: &'static str,
    tables: &[&str],
) -> tokio::task::JoinHandle<Result<Outcome, EngineError>> {
    let mut spec = servers.spec(tables);
    spec.task_type = TaskType::FullIncrTrans;
    spec.policy.ddl.enabled = true;
    let credentials = servers.credentials();
    tokio::spawn(async move {
        let (_stop_tx, stop) = tokio::sync::watch::channel(false);
        let tracker = Tracker::new(std::sync::Arc::new(NoProgress));
        engine::run(Job { id, spec: &spec, credentials: &credentials, tracker, stop }).await
    })
}

/// The target table's columns: `name type nullable default`, in order.
async fn columns(pg: &Client, table: &str) -> Vec<String> {
    pg.query(
        "SELECT concat_ws(' ', column_name, data_type, is_nullable, column_default) FROM information_schema.columns \
         WHERE table_schema = 'shop' AND table_name = $1 ORDER BY ordinal_position",
        &[&table],
    )
    .await
    .unwrap()
    .iter()
    .map(|r| r.get(0))
    .collect()
}

/// The target table's index definitions, by name.
async fn indexes(pg: &Client, table: &str) -> Vec<String> {
    pg.query(
        "SELECT indexdef FROM pg_indexes WHERE schemaname = 'shop' AND tablename = $1 ORDER BY indexname",
        &[&table],
    )
    .await
    .unwrap()
    .iter()
    .map(|r| r.get(0))
    .collect()
}

/// Every row of `items` on each side as text (`id|title|price`), ordered by id.
async fn items(src: &mut Conn, pg: &Client) -> (Vec<String>, Vec<String>) {
    let mine: Vec<String> =
        src.query("SELECT concat_ws('|', id, title, CAST(price AS CHAR)) FROM shop.items ORDER BY id").await.unwrap();
    let theirs: Vec<String> = pg
        .query("SELECT concat_ws('|', id, title, price::text) FROM shop.items ORDER BY id", &[])
        .await
        .unwrap()
        .iter()
        .map(|r| r.get(0))
        .collect();
    (mine, theirs)
}

#[tokio::test]
async fn translated_ddl_runs_between_the_rows_written_before_and_after_it() {
    let servers = Servers::start();
    let mut src = servers.source().await;
    exec(
        &mut src,
        "CREATE DATABASE shop; USE shop;
         CREATE TABLE items (id bigint PRIMARY KEY, name varchar(20) NOT NULL, qty int);
         INSERT INTO items SELECT seq, concat('item ', seq), seq FROM seq_1_to_100;
         CREATE TABLE logs (id int PRIMARY KEY, v text);
         INSERT INTO logs SELECT seq, 'old' FROM seq_1_to_10;",
    )
    .await;
    let mut job = spawn(&servers, "ddl", &["items", "logs"]);
    let pg = servers.target().await;
    wait_for(&pg, "SELECT full_done FROM _ferry.jobs", &mut job).await;
    let has = |id: i64| format!("SELECT EXISTS (SELECT FROM shop.items WHERE id = {id})");

    // ADD COLUMN, NOT NULL with a literal default: the rows there get it, new rows their own.
    exec(
        &mut src,
        "USE shop; INSERT INTO items VALUES (101, 'before add', 1);
         ALTER TABLE items ADD COLUMN price decimal(10,2) NOT NULL DEFAULT 1.50;
         INSERT INTO items VALUES (102, 'after add', 2, 9.99);
         UPDATE items SET price = 3.25 WHERE id = 1;",
    )
    .await;
    wait_for(&pg, &has(102), &mut job).await;
    assert_eq!(
        columns(&pg, "items").await,
        ["id bigint NO", "name character varying NO", "qty integer YES", "price numeric NO 1.50"]
    );

    // MODIFY: type, nullability and default.
    exec(
        &mut src,
        "USE shop; INSERT INTO items VALUES (103, 'before modify', 3000000, 1);
         ALTER TABLE items MODIFY qty bigint NOT NULL DEFAULT 7;
         INSERT INTO items (id, name, price) VALUES (104, 'after modify', 2);
         UPDATE items SET qty = 9000000000 WHERE id = 2;",
    )
    .await;
    wait_for(&pg, &has(104), &mut job).await;
    assert_eq!(columns(&pg, "items").await[2], "qty bigint NO 7");
    let qty: Vec<i64> = pg
        .query("SELECT qty FROM shop.items WHERE id IN (2, 104) ORDER BY id", &[])
        .await
        .unwrap()
        .iter()
        .map(|r| r.get(0))
        .collect();
    assert_eq!(qty, [9_000_000_000, 7]);

    // CHANGE: renamed and widened.
    exec(
        &mut src,
        "USE shop; INSERT INTO items VALUES (105, 'before change', 5, 5);
         ALTER TABLE items CHANGE name title varchar(50) NOT NULL;
         INSERT INTO items VALUES (106, 'after change, longer than twenty', 6, 6);",
    )
    .await;
    wait_for(&pg, &has(106), &mut job).await;
    assert_eq!(columns(&pg, "items").await[1], "title character varying NO");

    // Indexes: CREATE INDEX, ADD UNIQUE, DROP INDEX.
    exec(
        &mut src,
        "USE shop; INSERT INTO items VALUES (107, 'before index', 7, 7);
         CREATE INDEX by_title ON items (title DESC);
         ALTER TABLE items ADD UNIQUE KEY by_price (price, id);
         INSERT INTO items VALUES (108, 'after index', 8, 8);",
    )
    .await;
    wait_for(&pg, &has(108), &mut job).await;
    let ix = indexes(&pg, "items").await;
    assert!(
        ix.iter().any(|d| d.contains("UNIQUE INDEX items_by_price ON shop.items USING btree (price, id)")),
        "{ix:?}"
    );
    assert!(ix.iter().any(|d| d.contains("INDEX items_by_title ON shop.items USING btree (title DESC)")), "{ix:?}");
    exec(&mut src, "USE shop; DROP INDEX by_title ON items; INSERT INTO items VALUES (109, 'after drop index', 9, 9);")
        .await;
    wait_for(&pg, &has(109), &mut job).await;
    assert!(!indexes(&pg, "items").await.iter().any(|d| d.contains("by_title")));

    // DROP COLUMN and RENAME COLUMN.
    exec(
        &mut src,
        "USE shop; INSERT INTO items VALUES (110, 'before drop', 10, 10);
         ALTER TABLE items DROP COLUMN qty;
         INSERT INTO items VALUES (111, 'after drop', 11);
         ALTER TABLE items RENAME COLUMN title TO label;
         ALTER TABLE items RENAME COLUMN label TO title;
         UPDATE items SET title = 'renamed twice' WHERE id = 3;
         INSERT INTO items VALUES (112, 'after rename', 12);",
    )
    .await;
    wait_for(&pg, &has(112), &mut job).await;
    assert_eq!(columns(&pg, "items").await, ["id bigint NO", "title character varying NO", "price numeric NO 1.50"]);

    // TRUNCATE.
    exec(&mut src, "USE shop; TRUNCATE TABLE logs; INSERT INTO logs VALUES (1, 'after truncate');").await;
    wait_for(&pg, "SELECT count(*) = 1 AND min(v) = 'after truncate' FROM shop.logs", &mut job).await;

    // ADD COLUMN of an ENUM: text with the CHECK the full transfer gives one.
    exec(
        &mut src,
        "USE shop; ALTER TABLE logs ADD COLUMN level ENUM('info', 'warn') NOT NULL DEFAULT 'info';
         INSERT INTO logs VALUES (2, 'with level', 'warn');",
    )
    .await;
    wait_for(&pg, "SELECT count(*) = 2 FROM shop.logs", &mut job).await;
    let levels: Vec<String> =
        pg.query("SELECT level FROM shop.logs ORDER BY id", &[]).await.unwrap().iter().map(|r| r.get(0)).collect();
    assert_eq!(levels, ["info", "warn"]);
    let refused = pg.execute("INSERT INTO shop.logs VALUES (3, 'bad', 'debug')", &[]).await.unwrap_err();
    assert_eq!(refused.code(), Some(&tokio_postgres::error::SqlState::CHECK_VIOLATION), "{refused:?}");

    let (mine, theirs) = items(&mut src, &pg).await;
    assert_eq!(mine.len(), 112);
    assert_eq!(theirs, mine);
    assert!(!job.is_finished());
    job.abort();
}

#[tokio::test]
async fn a_table_renamed_within_a_selected_database_keeps_streaming_under_its_new_name() {
    let servers = Servers::start();
    let mut src = servers.source().await;
    exec(
        &mut src,
        "CREATE DATABASE shop; USE shop;
         CREATE TABLE old_name (id int PRIMARY KEY, v varchar(10));
         INSERT INTO old_name VALUES (1, 'copied');",
    )
    .await;
    let mut spec = servers.spec(&[]);
    spec.objects.databases[0].all = true;
    spec.task_type = TaskType::FullIncrTrans;
    spec.policy.ddl.enabled = true;
    let credentials = servers.credentials();
    let mut job = tokio::spawn(async move {
        let (_stop_tx, stop) = tokio::sync::watch::channel(false);
        let tracker = Tracker::new(std::sync::Arc::new(NoProgress));
        engine::run(Job { id: "rename", spec: &spec, credentials: &credentials, tracker, stop }).await
    });
    let pg = servers.target().await;
    wait_for(&pg, "SELECT full_done FROM _ferry.jobs", &mut job).await;
    exec(
        &mut src,
        "USE shop; INSERT INTO old_name VALUES (2, 'before');
         RENAME TABLE old_name TO new_name;
         INSERT INTO new_name VALUES (3, 'after'); UPDATE new_name SET v = 'updated' WHERE id = 1;",
    )
    .await;
    wait_for(
        &pg,
        "SELECT EXISTS (SELECT FROM pg_tables WHERE schemaname = 'shop' AND tablename = 'new_name')",
        &mut job,
    )
    .await;
    wait_for(&pg, "SELECT count(*) = 3 FROM shop.new_name", &mut job).await;
    let rows: Vec<String> = pg
        .query("SELECT concat_ws('|', id, v) FROM shop.new_name ORDER BY id", &[])
        .await
        .unwrap()
        .iter()
        .map(|r| r.get(0))
        .collect();
    assert_eq!(rows, ["1|updated", "2|before", "3|after"]);
    job.abort();
}

#[tokio::test]
async fn statements_that_cannot_be_translated_stop_the_job_naming_them() {
    let servers = Servers::start();
    let mut src = servers.source().await;
    exec(
        &mut src,
        "CREATE DATABASE shop; USE shop;
         CREATE TABLE t1 (id int PRIMARY KEY, a varchar(20));
         CREATE TABLE t2 (id int PRIMARY KEY, a int);
         CREATE TABLE t3 (id int PRIMARY KEY, a int);
         INSERT INTO t1 VALUES (1, 'x'); INSERT INTO t2 VALUES (1, 1); INSERT INTO t3 VALUES (1, 1);",
    )
    .await;
    let pg = servers.target().await;
    let cases: [(&'static str, &str, &str, &str); 3] = [
        ("stop1", "t1", "ALTER TABLE t1 ADD FULLTEXT INDEX ft (a)", "ADD FULLTEXT INDEX ft"),
        ("stop2", "t2", "ALTER TABLE t2 ADD COLUMN g int GENERATED ALWAYS AS (a * 2) VIRTUAL", "GENERATED ALWAYS"),
        ("stop3", "t3", "ALTER TABLE t3 PARTITION BY HASH (id) PARTITIONS 2", "PARTITION BY HASH"),
    ];
    for (id, table, statement, shown) in cases {
        let mut job = spawn(&servers, id, &[table]);
        wait_for(&pg, &format!("SELECT full_done FROM _ferry.jobs WHERE job = '{id}'"), &mut job).await;
        exec(&mut src, &format!("USE shop; {statement}")).await;
        let e = tokio::time::timeout(Duration::from_secs(60), job).await.unwrap().unwrap().unwrap_err();
        let text = e.to_string();
        assert!(text.contains("cannot be translated to PostgreSQL") && text.contains(shown), "{statement}: {text}");
    }
}

#[tokio::test]
async fn a_worker_killed_right_after_a_ddl_does_not_run_it_again() {
    let servers = Servers::start();
    let mut src = servers.source().await;
    exec(
        &mut src,
        "CREATE DATABASE shop; USE shop;
         CREATE TABLE items (id bigint PRIMARY KEY, title varchar(40) NOT NULL, price decimal(10,2));
         INSERT INTO items SELECT seq, concat('item ', seq), seq FROM seq_1_to_100;",
    )
    .await;
    let mut spec = servers.spec(&["items"]);
    spec.task_type = TaskType::FullIncrTrans;
    spec.policy.ddl.enabled = true;
    let dir = tempfile::tempdir().unwrap();
    let manifest = dir.path().join("job.yaml");
    std::fs::write(&manifest, servers.manifest("ddl-kill", &spec)).unwrap();
    let pg = servers.target().await;

    let mut first = Runner::start(dir.path(), &manifest, 1);
    until(&mut first, &pg, "SELECT full_done FROM _ferry.jobs").await;
    // A CREATE INDEX run twice would fail: the index exists.
    exec(
        &mut src,
        "USE shop; INSERT INTO items VALUES (101, 'before', 1);
         CREATE INDEX by_title ON items (title);
         INSERT INTO items VALUES (102, 'after', 2);",
    )
    .await;
    until(&mut first, &pg, "SELECT EXISTS (SELECT FROM shop.items WHERE id = 102)").await;
    first.kill();
    let ix = indexes(&pg, "items").await;
    assert_eq!(ix.iter().filter(|d| d.contains("items_by_title")).count(), 1, "{ix:?}");
    exec(
        &mut src,
        "USE shop; INSERT INTO items VALUES (103, 'while down', 3); UPDATE items SET price = 0 WHERE id = 1;",
    )
    .await;
    let mut second = Runner::start(dir.path(), &manifest, 2);
    let deadline = Instant::now() + Duration::from_secs(90);
    loop {
        second.assert_running();
        let (mine, theirs) = items(&mut src, &pg).await;
        if mine == theirs {
            break;
        }
        assert!(Instant::now() < deadline, "{theirs:?} vs {mine:?}\n{}", second.log());
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    exec(&mut src, "USE shop; INSERT INTO items VALUES (104, 'later', 4);").await;
    until(&mut second, &pg, "SELECT EXISTS (SELECT FROM shop.items WHERE id = 104)").await;
    let ix = indexes(&pg, "items").await;
    assert_eq!(ix.iter().filter(|d| d.contains("items_by_title")).count(), 1, "{ix:?}");
    second.stop_cleanly();
}
