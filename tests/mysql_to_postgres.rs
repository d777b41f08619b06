//! MariaDB → PostgreSQL full transfers against real servers: every mapped type's edge values
//! arrive as the mapping says, several tables (one without a key, with duplicate rows) arrive
//! whole with their keys, indexes and identity sequences, a worker killed mid-copy resumes
//! without a row twice, and what cannot carry over stops the job before anything is created.

mod my_pg_support;
mod runner;

use std::path::Path;
use std::time::{Duration, Instant};

use ferry::api::{PrecheckResult, SpeedLimit, TaskType, Tuning};
use ferry::engine::{self, Outcome};
use my_pg_support::{Servers, column_types, exec, until, wait_for};
use mysql_async::Conn;
use mysql_async::prelude::Queryable;
use runner::Runner;
use tokio_postgres::Client;

/// One column of a table as PostgreSQL prints it (`::text`), ordered by `id`.
async fn column(client: &Client, table: &str, column: &str) -> Vec<Option<String>> {
    let sql = format!("SELECT {column}::text FROM {table} ORDER BY id");
    client.query(&sql, &[]).await.unwrap_or_else(|e| panic!("{sql}: {e:?}")).iter().map(|r| r.get(0)).collect()
}

/// A column of every type, with the edge values of each: minimums and empty values (id 1),
/// maximums and unusual values (id 2), NULLs (id 3) and small values (id 4).
const TYPES: &str = r#"
    SET SESSION sql_mode = '', time_zone = '+00:00';
    CREATE DATABASE shop; USE shop;
    CREATE TABLE types (
        id int PRIMARY KEY,
        ti tinyint, tiu tinyint unsigned, b1 tinyint(1), si smallint, siu smallint unsigned,
        mi mediumint, miu mediumint unsigned, i int, iu int unsigned, bi bigint, biu bigint unsigned,
        d decimal(65,30), du decimal(5,2) unsigned, f float, db double,
        bit1 bit(1), bit64 bit(64), y year, dt date, zd date NULL, zdt datetime NULL, zts timestamp NULL,
        tm time, tm6 time(6), dtm datetime(6), ts timestamp(6) NULL,
        e enum('a','b c','it''s'), s set('x','y','z'), j json,
        u varchar(40), l varchar(40) CHARACTER SET latin1, c char(5), tx text,
        bn binary(4), vb varbinary(10), bl blob
    ) DEFAULT CHARSET = utf8mb4;
    INSERT INTO types VALUES
    (1, -128, 0, -128, -32768, 0, -8388608, 0, -2147483648, 0, -9223372036854775808, 0,
     -99999999999999999999999999999999999.999999999999999999999999999999, 0, -3.40282e38,
     -1.7976931348623157e308, b'0', b'0', 1901, '1000-01-01', '0000-00-00', '0000-00-00 00:00:00',
     '0000-00-00 00:00:00', '-838:59:59', '-00:00:01.5', '1000-01-01 00:00:00', '1970-01-01 00:00:01',
     '', '', '[]', '', '', '', '', 0x00000000, '', ''),
    (2, 127, 255, 127, 32767, 65535, 8388607, 16777215, 2147483647, 4294967295, 9223372036854775807,
     18446744073709551615, 99999999999999999999999999999999999.999999999999999999999999999999, 999.99,
     3.40282e38, 1.7976931348623157e308, b'1', 0xFFFFFFFFFFFFFFFF, 2155, '9999-12-31', '2024-00-15',
     '2024-02-00 10:00:00', NULL, '838:59:59', '838:59:59.999999', '9999-12-31 23:59:59.999999',
     '2038-01-19 03:14:07.999999', 'it''s', 'x,z', '{"a": [1, [2, {"b": "ü😀"}]], "c": null}',
     'emoji 😀 ✓', 'café naïve', 'abc', 'tab\tnl\nbs\\ end', 0x00FF0001, 0x00, 0x000102FF00),
    (3, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL,
     NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL,
     NULL, NULL),
    (4, 0, 1, 1, 0, 1, 0, 1, 0, 1, 0, 1, 0.000000000000000000000000000001, 0.01, 1.1, 0.1, b'1', b'101',
     0, '2024-02-29', '2024-02-29', '2024-02-29 12:00:00', '2024-02-29 12:00:00', '00:00:00',
     '24:00:00.000001', '2024-02-29 12:34:56.000001', '2024-02-29 12:34:56.5', 'b c', 'x,y,z',
     '{"k": "tab\\tquote\\" slash\\\\"}', '  spaces  ', 'ÀÉÎõü', 'x', '', 'ab', 'a\\b', 'NULL');
"#;

#[tokio::test]
async fn every_mapped_type_arrives_with_its_edge_values() {
    let servers = Servers::start();
    exec(&mut servers.source().await, TYPES).await;
    let outcome = servers.run("types", &servers.spec(&["types"])).await.unwrap();
    assert_eq!(outcome, Outcome::Completed);
    let pg = servers.target().await;
    let t = "shop.types";
    let s = |v: &str| Some(v.to_owned());
    let n = None;
    let cases: Vec<(&str, Vec<Option<String>>)> = vec![
        ("ti", vec![s("-128"), s("127"), n.clone(), s("0")]),
        ("tiu", vec![s("0"), s("255"), n.clone(), s("1")]),
        ("b1", vec![s("-128"), s("127"), n.clone(), s("1")]),
        ("si", vec![s("-32768"), s("32767"), n.clone(), s("0")]),
        ("siu", vec![s("0"), s("65535"), n.clone(), s("1")]),
        ("mi", vec![s("-8388608"), s("8388607"), n.clone(), s("0")]),
        ("miu", vec![s("0"), s("16777215"), n.clone(), s("1")]),
        ("i", vec![s("-2147483648"), s("2147483647"), n.clone(), s("0")]),
        ("iu", vec![s("0"), s("4294967295"), n.clone(), s("1")]),
        ("bi", vec![s("-9223372036854775808"), s("9223372036854775807"), n.clone(), s("0")]),
        ("biu", vec![s("0"), s("18446744073709551615"), n.clone(), s("1")]),
        (
            "d",
            vec![
                s("-99999999999999999999999999999999999.999999999999999999999999999999"),
                s("99999999999999999999999999999999999.999999999999999999999999999999"),
                n.clone(),
                s("0.000000000000000000000000000001"),
            ],
        ),
        ("du", vec![s("0.00"), s("999.99"), n.clone(), s("0.01")]),
        ("f", vec![s("-3.40282e+38"), s("3.40282e+38"), n.clone(), s("1.1")]),
        ("db", vec![s("-1.7976931348623157e+308"), s("1.7976931348623157e+308"), n.clone(), s("0.1")]),
        ("bit1", vec![s("false"), s("true"), n.clone(), s("true")]),
        ("bit64", vec![s(&"0".repeat(64)), s(&"1".repeat(64)), n.clone(), s(&format!("{:0>64}", "101"))]),
        ("y", vec![s("1901"), s("2155"), n.clone(), s("0")]),
        ("dt", vec![s("1000-01-01"), s("9999-12-31"), n.clone(), s("2024-02-29")]),
        // Zero dates in nullable columns become NULL.
        ("zd", vec![n.clone(), n.clone(), n.clone(), s("2024-02-29")]),
        ("zdt", vec![n.clone(), n.clone(), n.clone(), s("2024-02-29 12:00:00")]),
        ("zts", vec![n.clone(), n.clone(), n.clone(), s("2024-02-29 12:00:00+00")]),
        ("tm", vec![s("-838:59:59"), s("838:59:59"), n.clone(), s("00:00:00")]),
        ("tm6", vec![s("-00:00:01.5"), s("838:59:59.999999"), n.clone(), s("24:00:00.000001")]),
        (
            "dtm",
            vec![s("1000-01-01 00:00:00"), s("9999-12-31 23:59:59.999999"), n.clone(), s("2024-02-29 12:34:56.000001")],
        ),
        (
            "ts",
            vec![
                s("1970-01-01 00:00:01+00"),
                s("2038-01-19 03:14:07.999999+00"),
                n.clone(),
                s("2024-02-29 12:34:56.5+00"),
            ],
        ),
        ("e", vec![s(""), s("it's"), n.clone(), s("b c")]),
        ("s", vec![s(""), s("x,z"), n.clone(), s("x,y,z")]),
        (
            "j",
            vec![
                s("[]"),
                s(r#"{"a": [1, [2, {"b": "ü😀"}]], "c": null}"#),
                n.clone(),
                s(r#"{"k": "tab\tquote\" slash\\"}"#),
            ],
        ),
        ("u", vec![s(""), s("emoji 😀 ✓"), n.clone(), s("  spaces  ")]),
        ("l", vec![s(""), s("café naïve"), n.clone(), s("ÀÉÎõü")]),
        ("c", vec![s(""), s("abc"), n.clone(), s("x")]),
        ("tx", vec![s(""), s("tab\tnl\nbs\\ end"), n.clone(), s("")]),
        ("bn", vec![s("\\x00000000"), s("\\x00ff0001"), n.clone(), s("\\x61620000")]),
        ("vb", vec![s("\\x"), s("\\x00"), n.clone(), s("\\x615c62")]),
        ("bl", vec![s("\\x"), s("\\x000102ff00"), n.clone(), s("\\x4e554c4c")]),
    ];
    let mut wrong = Vec::new();
    for (name, want) in &cases {
        let have = column(&pg, t, name).await;
        if &have != want {
            wrong.push(format!("{name}: have {have:?}, want {want:?}"));
        }
    }
    assert!(wrong.is_empty(), "{}", wrong.join("\n"));
    // Exactly the source's values: FLOAT and DOUBLE compared bit for bit.
    let mut src = servers.source().await;
    let floats: Vec<(Option<f32>, Option<f64>)> = src.query("SELECT f, db FROM shop.types ORDER BY id").await.unwrap();
    let copied: Vec<(Option<f32>, Option<f64>)> = pg
        .query("SELECT f, db FROM shop.types ORDER BY id", &[])
        .await
        .unwrap()
        .iter()
        .map(|r| (r.get(0), r.get(1)))
        .collect();
    assert_eq!(floats, copied);
    // The types themselves, as the mapping documents them.
    let types = column_types(&pg, "shop.types").await;
    let type_of = |c: &str| types.iter().find(|(n, _)| n == c).map(|(_, t)| t.as_str()).unwrap();
    for (c, want) in [
        ("tiu", "smallint"),
        ("siu", "integer"),
        ("miu", "integer"),
        ("iu", "bigint"),
        ("biu", "numeric(20,0)"),
        ("d", "numeric(65,30)"),
        ("f", "real"),
        ("db", "double precision"),
        ("bit1", "boolean"),
        ("bit64", "bit(64)"),
        ("y", "smallint"),
        ("dtm", "timestamp(6) without time zone"),
        ("ts", "timestamp(6) with time zone"),
        ("tm", "interval"),
        ("j", "jsonb"),
        ("u", "character varying(40)"),
        ("bl", "bytea"),
    ] {
        assert_eq!(type_of(c), want, "column {c}");
    }
    // The ENUM's CHECK holds its labels (and MySQL's error value '').
    let refused = pg.execute("INSERT INTO shop.types (id, e) VALUES (5, 'nope')", &[]).await;
    assert!(refused.is_err(), "an ENUM label the source does not have was taken");
    pg.execute("INSERT INTO shop.types (id, e, s) VALUES (5, 'a', 'y,z')", &[]).await.unwrap();
}

#[tokio::test]
async fn tables_arrive_whole_with_keys_indexes_and_identity() {
    let servers = Servers::start();
    exec(
        &mut servers.source().await,
        "CREATE DATABASE shop; USE shop;
         CREATE TABLE accounts (id bigint AUTO_INCREMENT PRIMARY KEY, owner varchar(40) NOT NULL,
             balance decimal(14,2) NOT NULL DEFAULT 0.00, made datetime DEFAULT CURRENT_TIMESTAMP,
             note text, UNIQUE KEY by_owner (owner), KEY by_note (note(20)), FULLTEXT KEY words (note));
         INSERT INTO accounts (owner, balance, note) SELECT concat('owner ', seq), seq / 3, concat('row ', seq)
             FROM seq_1_to_20000;
         DELETE FROM accounts WHERE id > 19990;
         CREATE TABLE events (n int, label varchar(20));
         INSERT INTO events SELECT seq % 100, 'dup' FROM seq_1_to_3000;
         CREATE TABLE order_lines (ord int, line int, qty int NOT NULL, PRIMARY KEY (ord, line), KEY by_qty (qty));
         INSERT INTO order_lines SELECT seq DIV 10, seq % 10, seq FROM seq_1_to_12000;
         ANALYZE TABLE accounts, events, order_lines;",
    )
    .await;
    let mut spec = servers.spec(&["accounts", "events", "order_lines"]);
    spec.tuning = Some(Tuning { batch_rows: Some(3000), read_parallelism: Some(2), ..Default::default() });
    // The precheck names what will not carry over.
    let items = engine::precheck(&spec, &servers.credentials()).await;
    let left = items.iter().find(|i| i.item == "target.leftOut").unwrap();
    assert_eq!(left.result, PrecheckResult::Alarm);
    let reason = left.reason.as_deref().unwrap();
    assert!(reason.contains("index by_note of shop.accounts: a prefix index"), "{reason}");
    assert!(reason.contains("index words of shop.accounts: PostgreSQL has no FULLTEXT index"), "{reason}");
    assert_eq!(servers.run("tables", &spec).await.unwrap(), Outcome::Completed);
    let pg = servers.target().await;
    let mut src = servers.source().await;
    for table in ["accounts", "events", "order_lines"] {
        let want: Option<i64> = src.query_first(format!("SELECT count(*) FROM shop.{table}")).await.unwrap();
        let have: i64 = pg.query_one(&format!("SELECT count(*) FROM shop.{table}"), &[]).await.unwrap().get(0);
        assert_eq!(Some(have), want, "rows of {table}");
    }
    // The keyless table's duplicates are all there, each as many times.
    let dups: Vec<(i32, i64)> = pg
        .query("SELECT n, count(*) FROM shop.events GROUP BY n ORDER BY n", &[])
        .await
        .unwrap()
        .iter()
        .map(|r| (r.get(0), r.get(1)))
        .collect();
    assert_eq!(dups.len(), 100);
    assert!(dups.iter().all(|(_, c)| *c == 30), "{dups:?}");
    // Keys and whole-value indexes built; the prefix and FULLTEXT ones left out.
    let indexes: Vec<String> = pg
        .query("SELECT indexdef FROM pg_indexes WHERE schemaname = 'shop' ORDER BY indexname", &[])
        .await
        .unwrap()
        .iter()
        .map(|r| r.get(0))
        .collect();
    let has = |needle: &str| indexes.iter().any(|i| i.contains(needle));
    assert!(has("UNIQUE INDEX accounts_by_owner ON shop.accounts USING btree (owner)"), "{indexes:?}");
    assert!(has("UNIQUE INDEX accounts_pkey ON shop.accounts USING btree (id)"), "{indexes:?}");
    assert!(has("UNIQUE INDEX order_lines_pkey ON shop.order_lines USING btree (ord, line)"), "{indexes:?}");
    assert!(has("INDEX order_lines_by_qty ON shop.order_lines USING btree (qty)"), "{indexes:?}");
    assert_eq!(indexes.len(), 4, "{indexes:?}");
    // The identity continues after the source's AUTO_INCREMENT, not after the largest id copied;
    // the defaults came along.
    let next: Option<i64> = src
        .query_first("SELECT AUTO_INCREMENT FROM information_schema.TABLES WHERE TABLE_SCHEMA = 'shop' AND TABLE_NAME = 'accounts'")
        .await
        .unwrap();
    let row = pg
        .query_one(
            "INSERT INTO shop.accounts (owner) VALUES ('new') RETURNING id, balance::text, made IS NOT NULL",
            &[],
        )
        .await
        .unwrap();
    assert_eq!(Some(row.get::<_, i64>(0)), next);
    // (InnoDB reserves values in batches for INSERT … SELECT: its counter is past 20,000.)
    assert!(next.is_some_and(|n| n > 20_000), "{next:?}");
    assert_eq!((row.get::<_, String>(1), row.get::<_, bool>(2)), ("0.00".to_owned(), true));
    // A second run of the finished job does nothing.
    assert_eq!(servers.run("tables", &spec).await.unwrap(), Outcome::Completed);
    let have: i64 = pg.query_one("SELECT count(*) FROM shop.accounts", &[]).await.unwrap().get(0);
    assert_eq!(have, 19991);
    // Releasing the job forgets its bookkeeping on the target, and may be repeated.
    for _ in 0..2 {
        engine::release("tables", &spec, &servers.credentials()).await.unwrap();
    }
    let jobs: i64 = pg.query_one("SELECT count(*) FROM _ferry.jobs", &[]).await.unwrap().get(0);
    let chunks: i64 = pg.query_one("SELECT count(*) FROM _ferry.chunks", &[]).await.unwrap().get(0);
    assert_eq!((jobs, chunks), (0, 0));
}

#[tokio::test]
async fn a_worker_killed_mid_copy_resumes_without_duplicates() {
    let servers = Servers::start();
    exec(
        &mut servers.source().await,
        "CREATE DATABASE shop; USE shop;
         CREATE TABLE accounts (id bigint PRIMARY KEY, balance decimal(14,2) NOT NULL, note text);
         INSERT INTO accounts SELECT seq, seq / 3.0, concat('row ', seq, repeat('x', 40)) FROM seq_1_to_40000;
         CREATE TABLE events (n bigint, label text);
         INSERT INTO events SELECT seq % 500, 'dup' FROM seq_1_to_5000;
         ANALYZE TABLE accounts, events;",
    )
    .await;
    let mut spec = servers.spec(&["accounts", "events"]);
    spec.tuning = Some(Tuning { batch_rows: Some(2000), read_parallelism: Some(2), ..Default::default() });
    // Slow enough that the kill lands inside the copy.
    spec.speed_limits = vec![SpeedLimit { begin: "00:00".into(), end: "23:59".into(), mb_per_second: 1 }];
    let dir = tempfile::tempdir().unwrap();
    let manifest = dir.path().join("job.yaml");
    std::fs::write(&manifest, servers.manifest("resume", &spec)).unwrap();
    let pg = servers.target().await;

    let mut first = Runner::start(dir.path(), &manifest, 1);
    until(&mut first, &pg, "SELECT count(*) FILTER (WHERE done) >= 3 AND bool_or(NOT done) FROM _ferry.chunks").await;
    first.kill();
    let before: Vec<(String, i32, Option<i64>)> = ledger(&pg).await;
    let pending: i64 = pg.query_one("SELECT count(*) FROM _ferry.chunks WHERE NOT done", &[]).await.unwrap().get(0);
    assert!(pending > 0, "killed after the copy ended");
    // What the killed run left: exactly its finished chunks' rows, nothing of the one in flight.
    let copied: i64 = pg.query_one("SELECT count(*) FROM shop.accounts", &[]).await.unwrap().get(0);
    let ledgered: i64 = before.iter().filter(|(t, ..)| t == "shop.accounts").filter_map(|(_, _, r)| *r).sum();
    assert_eq!(copied, ledgered, "rows on the target outside the finished chunks");

    finish(dir.path(), &manifest).await;
    let after = ledger(&pg).await;
    for chunk in &before {
        assert!(after.contains(chunk), "finished chunk {chunk:?} was copied again: {after:?}");
    }
    let want = [("accounts", 40_000i64), ("events", 5_000)];
    for (table, rows) in want {
        let have: i64 = pg.query_one(&format!("SELECT count(*) FROM shop.{table}"), &[]).await.unwrap().get(0);
        assert_eq!(have, rows, "rows of {table}");
    }
    // The primary key could be built: no key twice.
    let distinct: i64 = pg.query_one("SELECT count(DISTINCT id) FROM shop.accounts", &[]).await.unwrap().get(0);
    assert_eq!(distinct, 40_000);
    let dups: i64 = pg
        .query_one("SELECT count(*) FROM (SELECT n FROM shop.events GROUP BY n HAVING count(*) <> 10) x", &[])
        .await
        .unwrap()
        .get(0);
    assert_eq!(dups, 0, "the keyless table's duplicates are not each there 10 times");
}

/// The finished chunks of the ledger: table, chunk, rows.
async fn ledger(pg: &Client) -> Vec<(String, i32, Option<i64>)> {
    pg.query("SELECT table_name, chunk, rows FROM _ferry.chunks WHERE done ORDER BY 1, 2", &[])
        .await
        .unwrap()
        .iter()
        .map(|r| (r.get(0), r.get(1), r.get(2)))
        .collect()
}

/// Runs `ferry run` on `manifest` again until it exits, which it must do successfully.
async fn finish(dir: &Path, manifest: &Path) {
    let mut second = Runner::start(dir, manifest, 2);
    let deadline = Instant::now() + Duration::from_secs(180);
    while !second.exited_successfully() {
        assert!(Instant::now() < deadline, "the second run did not finish:\n{}", second.log());
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

#[tokio::test]
async fn spatial_columns_and_case_collisions_stop_the_job_before_anything_is_created() {
    let servers = Servers::start();
    exec(
        &mut servers.source().await,
        "CREATE DATABASE shop; USE shop;
         CREATE TABLE places (id int PRIMARY KEY, at point NOT NULL);
         CREATE TABLE Users (id int PRIMARY KEY);
         CREATE TABLE users (id int PRIMARY KEY);
         CREATE TABLE zero (id int PRIMARY KEY, d date NOT NULL);
         SET SESSION sql_mode = '';
         INSERT INTO zero VALUES (1, '2024-01-01'), (2, '0000-00-00');",
    )
    .await;
    let pg = servers.target().await;
    let spec = servers.spec(&["places"]);
    let items = engine::precheck(&spec, &servers.credentials()).await;
    let types = items.iter().find(|i| i.item == "source.types").unwrap();
    assert_eq!(types.result, PrecheckResult::Failed);
    assert!(types.reason.as_deref().unwrap().contains("column at of shop.places: the spatial type point"), "{types:?}");
    let e = servers.run("spatial", &spec).await.unwrap_err().to_string();
    assert!(e.contains("column at of shop.places: the spatial type point"), "{e}");

    let spec = servers.spec(&["Users", "users"]);
    let items = engine::precheck(&spec, &servers.credentials()).await;
    let names = items.iter().find(|i| i.item == "target.names").unwrap();
    assert_eq!(names.result, PrecheckResult::Failed);
    assert!(names.reason.as_deref().unwrap().contains("shop.Users and shop.users"), "{names:?}");
    let e = servers.run("case", &spec).await.unwrap_err().to_string();
    assert!(e.contains("shop.Users and shop.users"), "{e}");
    let created: i64 = pg
        .query_one(
            "SELECT count(*) FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace WHERE n.nspname = 'shop'",
            &[],
        )
        .await
        .unwrap()
        .get(0);
    assert_eq!(created, 0, "tables were created before the job stopped");

    // A zero date in a NOT NULL column stops the copy naming the table, column and key column,
    // without the key's value (the job does not let row values into errors).
    let e = servers.run("zero", &servers.spec(&["zero"])).await.unwrap_err().to_string();
    assert!(e.contains("column d of shop.zero holds the zero date '0000-00-00'"), "{e}");
    assert!(e.contains("the row with key (id)"), "{e}");
    assert!(!e.contains("= (2)"), "{e}");
    let rows: i64 = pg.query_one("SELECT count(*) FROM shop.zero", &[]).await.unwrap().get(0);
    assert_eq!(rows, 0, "the failed chunk left rows behind");
}

#[tokio::test]
async fn the_stream_writes_every_type_as_the_full_transfer_does() {
    let servers = Servers::start();
    exec(&mut servers.source().await, TYPES).await;
    exec(
        &mut servers.source().await,
        "USE shop; CREATE TABLE events (n int, label varchar(20) CHARACTER SET latin1);
         INSERT INTO events SELECT seq % 10, 'dup' FROM seq_1_to_100;",
    )
    .await;
    let mut spec = servers.spec(&["types", "events"]);
    spec.task_type = TaskType::FullIncrTrans;
    spec.policy.ddl.enabled = true;
    // A job with a stream is prechecked for the binary log as MySQL → MySQL is.
    let items = engine::precheck(&spec, &servers.credentials()).await;
    assert!(items.iter().all(|i| i.result != PrecheckResult::Failed), "{items:?}");
    assert!(items.iter().any(|i| i.item == "source.binlogFormat"), "{items:?}");
    let (_stop_tx, mut job) = servers.spawn("stream", &spec);
    let pg = servers.target().await;
    wait_for(&pg, "SELECT full_done FROM _ferry.jobs", &mut job).await;
    // Every row again, through the stream, with ids 10 higher; then updates and deletes.
    exec(
        &mut servers.source().await,
        "SET SESSION sql_mode = '', time_zone = '+00:00'; USE shop;
         INSERT INTO types SELECT id + 10, ti, tiu, b1, si, siu, mi, miu, i, iu, bi, biu, d, du, f, db, bit1, bit64,
             y, dt, zd, zdt, zts, tm, tm6, dtm, ts, e, s, j, u, l, c, tx, bn, vb, bl FROM types;
         UPDATE types t JOIN types o ON o.id = 2 SET t.u = o.u, t.l = o.l, t.e = o.e, t.s = o.s, t.bit64 = o.bit64,
             t.ts = o.ts, t.tm = o.tm, t.bl = o.bl WHERE t.id = 11;
         DELETE FROM types WHERE id = 13;
         INSERT INTO events VALUES (1, 'naïve'), (1, 'naïve');
         DELETE FROM events WHERE n = 3 LIMIT 1;
         UPDATE events SET label = 'été' WHERE n = 5 LIMIT 1;",
    )
    .await;
    wait_for(
        &pg,
        "SELECT NOT EXISTS (SELECT FROM shop.types WHERE id = 13) AND EXISTS (SELECT FROM shop.types WHERE id = 14)",
        &mut job,
    )
    .await;
    wait_for(&pg, "SELECT count(*) = 101 FROM shop.events", &mut job).await;
    // The columns the update leaves alone.
    let row = |id: i32| {
        let pg = &pg;
        async move {
            pg.query_one(
                "SELECT (to_jsonb(t) - 'id' - 'u' - 'l' - 'e' - 's' - 'bit64' - 'ts' - 'tm' - 'bl')::text \
                 FROM shop.types t WHERE id = $1",
                &[&id],
            )
            .await
            .unwrap()
            .get::<_, String>(0)
        }
    };
    for id in [1, 2, 4] {
        assert_eq!(row(id + 10).await, row(id).await, "row {id} streamed differs from its copy");
    }
    let whole = "SELECT (to_jsonb(t) - 'id')::text FROM shop.types t WHERE id = $1";
    let (two, twelve) = (pg.query_one(whole, &[&2]).await.unwrap(), pg.query_one(whole, &[&12]).await.unwrap());
    assert_eq!(two.get::<_, String>(0), twelve.get::<_, String>(0));
    let updated = pg
        .query_one(
            "SELECT u, l, e, s, bit64::text, ts::text, tm::text, bl::text, ti FROM shop.types WHERE id = 11",
            &[],
        )
        .await
        .unwrap();
    assert_eq!(updated.get::<_, String>(0), "emoji 😀 ✓");
    assert_eq!(updated.get::<_, String>(1), "café naïve");
    assert_eq!(updated.get::<_, String>(2), "it's");
    assert_eq!(updated.get::<_, String>(3), "x,z");
    assert_eq!(updated.get::<_, String>(4), "1".repeat(64));
    assert_eq!(updated.get::<_, String>(5), "2038-01-19 03:14:07.999999+00");
    assert_eq!(updated.get::<_, String>(6), "838:59:59");
    assert_eq!(updated.get::<_, String>(7), "\\x000102ff00");
    assert_eq!(updated.get::<_, Option<i16>>(8), Some(-128));
    let labels: Vec<(i32, String, i64)> = pg
        .query("SELECT n, label, count(*) FROM shop.events WHERE label <> 'dup' GROUP BY 1, 2 ORDER BY 1, 2", &[])
        .await
        .unwrap()
        .iter()
        .map(|r| (r.get(0), r.get(1), r.get(2)))
        .collect();
    assert_eq!(labels, vec![(1, "naïve".to_owned(), 2), (5, "été".to_owned(), 1)]);
    let threes: i64 = pg.query_one("SELECT count(*) FROM shop.events WHERE n = 3", &[]).await.unwrap().get(0);
    assert_eq!(threes, 9);
    // DDL that cannot be translated stops the job, naming the statement (the rest:
    // tests/mysql_to_postgres_ddl.rs).
    exec(&mut servers.source().await, "ALTER TABLE shop.events ADD FULLTEXT INDEX ft (label)").await;
    let e = tokio::time::timeout(Duration::from_secs(60), job).await.unwrap().unwrap().unwrap_err().to_string();
    assert!(e.contains("cannot be translated to PostgreSQL") && e.contains("ADD FULLTEXT INDEX ft"), "{e}");
}

/// Every row of `shop.accounts` and `shop.events` on each side, in one text form, ordered.
async fn both_sides(src: &mut Conn, pg: &Client) -> (Vec<String>, Vec<String>) {
    let mut mine: Vec<String> = src
        .query::<(i64, String, Option<String>), _>("SELECT id, CAST(balance AS CHAR), note FROM shop.accounts")
        .await
        .unwrap()
        .into_iter()
        .map(|(id, b, n)| format!("a {id} {b} {n:?}"))
        .collect();
    mine.extend(
        src.query::<(i64, String), _>("SELECT n, label FROM shop.events")
            .await
            .unwrap()
            .into_iter()
            .map(|(n, l)| format!("e {n} {l}")),
    );
    let mut theirs: Vec<String> = pg
        .query("SELECT id, balance::text, note FROM shop.accounts", &[])
        .await
        .unwrap()
        .iter()
        .map(|r| format!("a {} {} {:?}", r.get::<_, i64>(0), r.get::<_, String>(1), r.get::<_, Option<String>>(2)))
        .collect();
    theirs.extend(
        pg.query("SELECT n, label FROM shop.events", &[])
            .await
            .unwrap()
            .iter()
            .map(|r| format!("e {} {}", r.get::<_, i64>(0), r.get::<_, String>(1))),
    );
    mine.sort();
    theirs.sort();
    (mine, theirs)
}

#[tokio::test]
async fn a_worker_killed_while_streaming_resumes_exactly_once() {
    use std::sync::Arc;
    use std::sync::atomic::{AtomicBool, Ordering};
    let servers = Servers::start();
    exec(
        &mut servers.source().await,
        "CREATE DATABASE shop; USE shop;
         CREATE TABLE accounts (id bigint AUTO_INCREMENT PRIMARY KEY, balance decimal(14,2) NOT NULL, note text);
         INSERT INTO accounts SELECT seq, seq / 3.0, concat('row ', seq) FROM seq_1_to_20000;
         CREATE TABLE events (n bigint NOT NULL, label varchar(40) NOT NULL);
         INSERT INTO events SELECT -seq, 'old' FROM seq_1_to_1000;",
    )
    .await;
    let mut spec = servers.spec(&["accounts", "events"]);
    spec.task_type = TaskType::FullIncrTrans;
    spec.tuning = Some(Tuning { batch_rows: Some(3000), apply_batch_transactions: Some(5), ..Default::default() });
    let dir = tempfile::tempdir().unwrap();
    let manifest = dir.path().join("job.yaml");
    std::fs::write(&manifest, servers.manifest("stream-kill", &spec)).unwrap();
    let pg = servers.target().await;

    // Writes without pause until told to stop: inserts, updates (some moving keys), deletes,
    // and duplicate rows in the keyless table.
    let running = Arc::new(AtomicBool::new(true));
    let opts = servers.source.opts(Some("shop"));
    let writer = {
        let running = Arc::clone(&running);
        tokio::spawn(async move {
            let mut conn = Conn::new(opts).await.unwrap();
            let mut i: i64 = 0;
            while running.load(Ordering::SeqCst) {
                conn.query_drop(format!(
                    "BEGIN;
                     INSERT INTO accounts VALUES ({new}, {i}, 'new');
                     UPDATE accounts SET balance = balance + 1, note = 'upd {i}' WHERE id = {upd};
                     DELETE FROM accounts WHERE id = {del};
                     UPDATE accounts SET id = {moved_to} WHERE id = {moved};
                     INSERT INTO events VALUES ({dup}, 'dup'), ({dup}, 'dup');
                     DELETE FROM events WHERE n = {dup} LIMIT 1;
                     COMMIT;",
                    new = 1_000_000 + i,
                    upd = 1 + (i * 7) % 20_000,
                    del = 2 + (i * 13) % 20_000,
                    moved = 3 + (i * 17) % 20_000,
                    moved_to = 2_000_000 + i,
                    dup = i % 50,
                ))
                .await
                .unwrap();
                i += 1;
                tokio::time::sleep(Duration::from_millis(5)).await;
            }
            i
        })
    };

    let mut first = Runner::start(dir.path(), &manifest, 1);
    until(&mut first, &pg, "SELECT checkpoint_lsn IS NOT NULL FROM _ferry.jobs").await;
    tokio::time::sleep(Duration::from_millis(700)).await;
    first.kill();
    let mut second = Runner::start(dir.path(), &manifest, 2);
    tokio::time::sleep(Duration::from_millis(1500)).await;
    running.store(false, Ordering::SeqCst);
    let written = writer.await.unwrap();
    assert!(written > 0);
    let mut src = servers.source().await;
    let deadline = Instant::now() + Duration::from_secs(90);
    loop {
        second.assert_running();
        let (mine, theirs) = both_sides(&mut src, &pg).await;
        if mine == theirs {
            break;
        }
        if Instant::now() > deadline {
            let missing: Vec<_> = mine.iter().filter(|r| !theirs.contains(r)).take(5).collect();
            let extra: Vec<_> = theirs.iter().filter(|r| !mine.contains(r)).take(5).collect();
            panic!("{} rows vs {}; missing {missing:?}; extra {extra:?}\n{}", theirs.len(), mine.len(), second.log());
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    second.stop_cleanly();
    // The stop set the identity past everything the stream inserted.
    let next: Option<i64> = src
        .query_first("SELECT AUTO_INCREMENT FROM information_schema.TABLES WHERE TABLE_SCHEMA = 'shop' AND TABLE_NAME = 'accounts'")
        .await
        .unwrap();
    let id: i64 =
        pg.query_one("INSERT INTO shop.accounts (balance) VALUES (0) RETURNING id", &[]).await.unwrap().get(0);
    assert!(next.is_some_and(|n| id >= n && n > 1_000_000), "{id} {next:?}");
}

#[tokio::test]
async fn an_incremental_job_streams_only_what_changes_after_it_starts_with_its_key() {
    let servers = Servers::start();
    exec(
        &mut servers.source().await,
        "CREATE DATABASE shop; USE shop;
         CREATE TABLE accounts (id bigint AUTO_INCREMENT PRIMARY KEY, owner varchar(40) NOT NULL,
             UNIQUE KEY by_owner (owner));
         INSERT INTO accounts (owner) SELECT concat('old ', seq) FROM seq_1_to_100;",
    )
    .await;
    let mut spec = servers.spec(&["accounts"]);
    spec.task_type = TaskType::IncrTrans;
    // Secondary indexes off: the primary key is built all the same.
    spec.policy.indexes = false;
    let (stop_tx, mut job) = servers.spawn("incr", &spec);
    let pg = servers.target().await;
    wait_for(&pg, "SELECT full_done FROM _ferry.jobs", &mut job).await;
    exec(
        &mut servers.source().await,
        "USE shop; INSERT INTO accounts (owner) VALUES ('new 1'), ('new 2');
         UPDATE accounts SET owner = 'new 3' WHERE owner = 'new 1';
         DELETE FROM accounts WHERE id = 1;",
    )
    .await;
    wait_for(&pg, "SELECT count(*) = 2 FROM shop.accounts", &mut job).await;
    let owners: Vec<String> =
        pg.query("SELECT owner FROM shop.accounts ORDER BY id", &[]).await.unwrap().iter().map(|r| r.get(0)).collect();
    assert_eq!(owners, ["new 3", "new 2"]);
    // The key exists from the start (the applier upserts by key); the unique index is not built.
    let indexes: Vec<String> = pg
        .query("SELECT indexname::text FROM pg_indexes WHERE schemaname = 'shop' AND tablename = 'accounts'", &[])
        .await
        .unwrap()
        .iter()
        .map(|r| r.get(0))
        .collect();
    assert_eq!(indexes, ["accounts_pkey"]);
    stop_tx.send(true).unwrap();
    assert_eq!(job.await.unwrap().unwrap(), Outcome::Stopped);
}

#[tokio::test]
async fn an_incremental_job_started_at_a_gtid_position_applies_what_follows_it() {
    let servers = Servers::start();
    let mut src = servers.source().await;
    exec(
        &mut src,
        "CREATE DATABASE shop; USE shop;
         CREATE TABLE events (id int PRIMARY KEY, what varchar(20) NOT NULL);
         INSERT INTO events VALUES (1, 'before'), (2, 'before'), (3, 'before');",
    )
    .await;
    // The target was loaded by other means up to here; the job takes over from this position.
    let gtid: String = src.query_first("SELECT @@gtid_binlog_pos").await.unwrap().unwrap();
    exec(
        &mut src,
        "USE shop; INSERT INTO events VALUES (4, 'after'), (5, 'after'), (6, 'after');
         DELETE FROM events WHERE id = 5;",
    )
    .await;
    let mut spec = servers.spec(&["events"]);
    spec.task_type = TaskType::IncrTrans;
    spec.start_position = Some(gtid.clone());
    assert!(ferry::api::Validate::validate(&spec).is_empty(), "a GTID start position is valid for the pair");
    let (stop_tx, mut job) = servers.spawn("gtid", &spec);
    let pg = servers.target().await;
    wait_for(&pg, "SELECT count(*) = 2 FROM shop.events", &mut job).await;
    exec(&mut src, "USE shop; INSERT INTO events VALUES (7, 'later')").await;
    wait_for(&pg, "SELECT count(*) = 3 FROM shop.events", &mut job).await;
    let rows: Vec<(i32, String)> = pg
        .query("SELECT id, what FROM shop.events ORDER BY id", &[])
        .await
        .unwrap()
        .iter()
        .map(|r| (r.get(0), r.get(1)))
        .collect();
    assert_eq!(rows, [(4, "after".to_owned()), (6, "after".to_owned()), (7, "later".to_owned())]);
    // From its first checkpoint on, the job resumes by file and offset.
    let (start, checkpoint): (String, Option<String>) = {
        let r = pg.query_one("SELECT publication, checkpoint_lsn::text FROM _ferry.jobs", &[]).await.unwrap();
        (r.get(0), r.get(1))
    };
    assert_eq!(start, gtid);
    assert!(checkpoint.is_some_and(|c| c != "0/0"), "no checkpoint recorded");
    stop_tx.send(true).unwrap();
    assert_eq!(job.await.unwrap().unwrap(), Outcome::Stopped);
}

/// Every differing row's key and kind, ordered by key.
fn differences(report: &ferry::compare::Report) -> Vec<(String, ferry::api::compare::DifferenceKind)> {
    let mut v: Vec<_> = report
        .differences
        .iter()
        .map(|d| (d.source_key_value.clone().or(d.target_key_value.clone()).unwrap_or_default(), d.kind))
        .collect();
    v.sort_by(|a, b| a.0.cmp(&b.0));
    v
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_content_comparison_after_the_transfer_finds_no_false_difference_and_every_real_one() {
    use ferry::api::compare::DifferenceKind;
    use ferry::api::{CompareResult, ObjectCompareResult};
    use ferry::compare::{self, Options};
    let servers = Servers::start();
    exec(&mut servers.source().await, TYPES).await;
    exec(
        &mut servers.source().await,
        "USE shop; CREATE TABLE events (n int, label varchar(20) CHARACTER SET latin1, at datetime NULL);
         INSERT INTO events SELECT seq % 10, 'dup é', NULL FROM seq_1_to_100;
         INSERT INTO events VALUES (1, 'dup é', NULL), (1, 'zero', '0000-00-00 00:00:00');",
    )
    .await;
    let spec = servers.spec(&["types", "events"]);
    assert_eq!(servers.run("cmp", &spec).await.unwrap(), Outcome::Completed);
    let creds = servers.credentials();
    let opts = Options::content(100);
    let report = compare::run(&spec.source, &spec.target, &spec.objects, &creds, opts).await.unwrap();
    assert_eq!(report.result(), CompareResult::Consistent, "{report:#?}");
    assert!(report.differences.is_empty(), "{report:#?}");
    assert_eq!((report.tables[0].source_rows, report.tables[0].target_rows), (Some(4), Some(4)));
    assert_eq!((report.tables[1].source_rows, report.tables[1].target_rows), (Some(102), Some(102)));

    // One value changed on the target in each of several types, each on its own row, a row only
    // on the target, and one of the keyless table's duplicates changed.
    let pg = servers.target().await;
    pg.batch_execute(
        "INSERT INTO shop.types (id, ti, tiu, b1, si, siu, mi, miu, i, iu, bi, biu, d, du, f, db, bit1, bit64, y, dt,
                                 zd, zdt, zts, tm, tm6, dtm, ts, e, s, j, u, l, c, tx, bn, vb, bl)
             SELECT 5, ti, tiu, b1, si, siu, mi, miu, i, iu, bi, biu, d, du, f, db, bit1, bit64, y, dt, zd, zdt, zts,
                    tm, tm6, dtm, ts, e, s, j, u, l, c, tx, bn, vb, bl FROM shop.types WHERE id = 3;
         UPDATE shop.types SET tm6 = '-00:00:01.499999' WHERE id = 1;
         UPDATE shop.types SET j = '{\"a\": [1, [2, {\"b\": \"ü😀\"}]], \"c\": 0}' WHERE id = 2;
         UPDATE shop.types SET ts = '2024-01-01 00:00:00+00' WHERE id = 3;
         UPDATE shop.types SET bit64 = B'0000000000000000000000000000000000000000000000000000000000000100' WHERE id = 4;
         UPDATE shop.events SET label = 'dup e' WHERE ctid = (SELECT ctid FROM shop.events WHERE label = 'dup é' LIMIT 1);",
    )
    .await
    .unwrap();
    let report = compare::run(&spec.source, &spec.target, &spec.objects, &creds, opts).await.unwrap();
    assert_eq!(report.result(), CompareResult::Inconsistent);
    assert_eq!(
        differences(&report),
        vec![
            ("1".into(), DifferenceKind::ValuesDiffer),
            ("2".into(), DifferenceKind::ValuesDiffer),
            ("3".into(), DifferenceKind::ValuesDiffer),
            ("4".into(), DifferenceKind::ValuesDiffer),
            ("5".into(), DifferenceKind::OnlyInTarget),
        ],
        "{report:#?}"
    );
    assert_eq!(report.tables[0].different_rows, Some(5));
    assert_eq!(report.tables[1].content_result, Some(ObjectCompareResult::Inconsistent), "{report:#?}");

    // Each other type alone, changed on row 2 and put back: every one is seen.
    pg.batch_execute(
        "DELETE FROM shop.types WHERE id = 5; UPDATE shop.events SET label = 'dup é' WHERE label = 'dup e';
         UPDATE shop.types SET tm6 = '-00:00:01.5' WHERE id = 1;
         UPDATE shop.types SET j = '{\"c\": null, \"a\": [1, [2, {\"b\": \"ü😀\"}]]}' WHERE id = 2;
         UPDATE shop.types SET ts = NULL WHERE id = 3;
         UPDATE shop.types SET bit64 = lpad('101', 64, '0')::bit(64) WHERE id = 4;",
    )
    .await
    .unwrap();
    let report = compare::run(&spec.source, &spec.target, &spec.objects, &creds, opts).await.unwrap();
    assert_eq!(report.result(), CompareResult::Consistent, "put back: {report:#?}");
    let changes = [
        ("ti", "126"),
        ("tiu", "254"),
        ("b1", "126"),
        ("siu", "65534"),
        ("iu", "4294967294"),
        ("biu", "18446744073709551614"),
        ("d", "99999999999999999999999999999999999.999999999999999999999999999998"),
        ("f", "3.40281e38"),
        ("db", "1.7976931348623155e308"),
        ("bit1", "false"),
        ("y", "2154"),
        ("dt", "'9999-12-30'"),
        ("zd", "'2024-01-15'"),
        ("tm", "'838:59:58'"),
        ("dtm", "'9999-12-31 23:59:59.999998'"),
        ("ts", "'2038-01-19 03:14:07.999998+00'"),
        ("e", "'b c'"),
        ("s", "'x'"),
        ("u", "'emoji 😀 ✔'"),
        ("l", "'cafe naïve'"),
        ("tx", "'tab\tnl\nbs\\ end '"),
        ("bn", "'\\x00ff0002'"),
        ("bl", "'\\x000102ff'"),
    ];
    let mut missed = Vec::new();
    for (column, value) in changes {
        let original: Option<String> =
            pg.query_one(&format!("SELECT {column}::text FROM shop.types WHERE id = 2"), &[]).await.unwrap().get(0);
        pg.execute(&format!("UPDATE shop.types SET {column} = {value} WHERE id = 2"), &[]).await.unwrap();
        let report = compare::run(&spec.source, &spec.target, &spec.objects, &creds, opts).await.unwrap();
        if differences(&report) != vec![("2".into(), DifferenceKind::ValuesDiffer)] {
            missed.push(format!("{column}: {:?}", differences(&report)));
        }
        let restore = format!("UPDATE shop.types SET {column} = $1::text::{} WHERE id = 2", type_of(&pg, column).await);
        pg.execute(&restore, &[&original]).await.unwrap();
    }
    assert!(missed.is_empty(), "{}", missed.join("\n"));
    let report = compare::run(&spec.source, &spec.target, &spec.objects, &creds, opts).await.unwrap();
    assert_eq!(report.result(), CompareResult::Consistent, "{report:#?}");
}

/// A column's type on the target, as `format_type` writes it.
async fn type_of(pg: &Client, column: &str) -> String {
    pg.query_one(
        "SELECT format_type(atttypid, atttypmod) FROM pg_attribute WHERE attrelid = 'shop.types'::regclass AND attname = $1",
        &[&column],
    )
    .await
    .unwrap()
    .get(0)
}

/// Waits until the job's checkpoint on the target covers source commits after `read_at` (the
/// applier records the source commit time of its checkpoint in `_ferry.jobs`).
struct Checkpoint {
    target: Client,
}

impl ferry::compare::CatchUp for Checkpoint {
    async fn wait_past(&self, read_at: jiff::Timestamp) -> bool {
        let deadline = Instant::now() + Duration::from_secs(30);
        let at = read_at.as_microsecond() as f64 / 1e6;
        while Instant::now() < deadline {
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
async fn an_online_comparison_while_the_stream_applies_writes_is_consistent_and_finds_a_real_difference() {
    use ferry::api::CompareResult;
    use ferry::api::compare::DifferenceKind;
    use ferry::compare::{self, Options};
    use std::sync::Arc;
    use std::sync::atomic::{AtomicBool, Ordering};
    let servers = Servers::start();
    exec(
        &mut servers.source().await,
        "SET SESSION time_zone = '+00:00'; CREATE DATABASE shop; USE shop;
         CREATE TABLE accounts (id bigint unsigned PRIMARY KEY, balance decimal(14,2) NOT NULL, ratio float,
             flags bit(5), at timestamp(6) NULL, took time(6), doc json, note varchar(40) CHARACTER SET latin1,
             raw varbinary(8));
         INSERT INTO accounts SELECT seq, seq / 3.0, seq / 7, seq % 32, '2024-01-01' + INTERVAL seq SECOND,
             SEC_TO_TIME(CAST(seq AS SIGNED) - 5000), json_object('z', seq, 'a', json_array(seq, 'é')), concat('café ', seq),
             unhex(hex(seq)) FROM seq_1_to_12000;",
    )
    .await;
    let mut spec = servers.spec(&["accounts"]);
    spec.task_type = TaskType::FullIncrTrans;
    let (stop_tx, mut job) = servers.spawn("online", &spec);
    let pg = servers.target().await;
    wait_for(&pg, "SELECT full_done FROM _ferry.jobs", &mut job).await;

    // Writes all over the table (never to ids above 11000) while the comparison runs.
    let running = Arc::new(AtomicBool::new(true));
    let writer = {
        let running = Arc::clone(&running);
        let opts = servers.source.opts(Some("shop"));
        tokio::spawn(async move {
            let mut conn = Conn::new(opts).await.unwrap();
            let mut i: u64 = 0;
            while running.load(Ordering::SeqCst) {
                conn.query_drop(format!(
                    "BEGIN;
                     UPDATE accounts SET balance = balance + 1, ratio = ratio * 1.5, flags = flags ^ 1,
                         at = at + INTERVAL 1 MICROSECOND, took = ADDTIME(took, '00:00:01.5'),
                         doc = json_set(doc, '$.n', {i}), note = concat('ü ', {i}), raw = unhex('00ff{i:02x}')
                         WHERE id = {upd};
                     DELETE FROM accounts WHERE id = {del};
                     INSERT INTO accounts VALUES ({new}, {i}, 0.5, b'101', '2030-01-01 00:00:00.5', '-838:59:59',
                         '{{\"b\": [1, 2.50], \"a\": {{}}}}', 'naïve', 0x00);
                     COMMIT;",
                    upd = 1 + (i * 7919) % 11_000,
                    del = 1 + (i * 104_729) % 11_000,
                    new = 100_000 + i,
                ))
                .await
                .unwrap();
                i += 1;
                tokio::time::sleep(Duration::from_millis(3)).await;
            }
            i
        })
    };
    wait_for(&pg, "SELECT checkpoint_time IS NOT NULL FROM _ferry.jobs", &mut job).await;
    let creds = servers.credentials();
    let online = Options { rechecks: 5, ..Options::content(100) };
    let catch_up = Checkpoint { target: servers.target().await };
    let report =
        compare::run_online(&spec.source, &spec.target, &spec.objects, &creds, online, &catch_up).await.unwrap();
    assert_eq!(report.result(), CompareResult::Consistent, "{report:#?}");

    // A difference written straight into the target persists and is reported, alone.
    pg.batch_execute("UPDATE shop.accounts SET doc = '{\"a\": [11999, \"é\"], \"z\": 11998}' WHERE id = 11999")
        .await
        .unwrap();
    let report =
        compare::run_online(&spec.source, &spec.target, &spec.objects, &creds, online, &catch_up).await.unwrap();
    assert_eq!(differences(&report), vec![("11999".into(), DifferenceKind::ValuesDiffer)], "{report:#?}");
    running.store(false, Ordering::SeqCst);
    assert!(writer.await.unwrap() > 0);

    // At rest, once the stream has applied everything: the same one row, then none once it is
    // put back.
    exec(&mut servers.source().await, "INSERT INTO shop.accounts (id, balance) VALUES (200000, 0)").await;
    wait_for(&pg, "SELECT EXISTS (SELECT FROM shop.accounts WHERE id = 200000)", &mut job).await;
    let opts = Options::content(100);
    let report = compare::run(&spec.source, &spec.target, &spec.objects, &creds, opts).await.unwrap();
    assert_eq!(differences(&report), vec![("11999".into(), DifferenceKind::ValuesDiffer)], "{report:#?}");
    pg.batch_execute("UPDATE shop.accounts SET doc = '{\"z\": 11999, \"a\": [11999, \"é\"]}' WHERE id = 11999")
        .await
        .unwrap();
    let report = compare::run(&spec.source, &spec.target, &spec.objects, &creds, opts).await.unwrap();
    assert_eq!(report.result(), CompareResult::Consistent, "{report:#?}");
    stop_tx.send(true).unwrap();
    assert_eq!(job.await.unwrap().unwrap(), Outcome::Stopped);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_content_comparison_of_text_keys_that_sort_differently_on_each_side_finds_no_false_difference() {
    use ferry::api::CompareResult;
    use ferry::compare::{self, Options};
    let servers = Servers::start();
    // Case-insensitive on MariaDB, byte order or the locale's on PostgreSQL: the compare's chunk
    // bounds (planned on the source) hold other rows on the target.
    exec(
        &mut servers.source().await,
        "CREATE DATABASE shop; USE shop; CREATE TABLE words (w varchar(20) PRIMARY KEY, n int) CHARACTER SET utf8mb4;
         INSERT INTO words SELECT concat(elt(seq % 5 + 1, 'K', 'k', 'é', 'E', '_'), lpad(seq, 6, '0')), seq
         FROM seq_1_to_45000;",
    )
    .await;
    let spec = servers.spec(&["words"]);
    assert_eq!(servers.run("words", &spec).await.unwrap(), Outcome::Completed);
    let creds = servers.credentials();
    let report = compare::run(&spec.source, &spec.target, &spec.objects, &creds, Options::content(20)).await.unwrap();
    assert_eq!(report.result(), CompareResult::Consistent, "{report:#?}");
    assert_eq!((report.tables[0].source_rows, report.tables[0].target_rows), (Some(45000), Some(45000)));
    // Real differences are still found, each once: a changed value, a row missing on the
    // target, rows only on the target (one sorting first on each side, one last).
    let pg = servers.target().await;
    pg.batch_execute(
        "UPDATE shop.words SET n = -1 WHERE w = 'k000001'; DELETE FROM shop.words WHERE w = 'E030003';
         INSERT INTO shop.words VALUES ('zz', 1), ('A', 2), ('_000000', 3);",
    )
    .await
    .unwrap();
    let report = compare::run(&spec.source, &spec.target, &spec.objects, &creds, Options::content(20)).await.unwrap();
    use ferry::api::compare::DifferenceKind::{OnlyInSource, OnlyInTarget, ValuesDiffer};
    assert_eq!(
        differences(&report),
        vec![
            ("A".into(), OnlyInTarget),
            ("E030003".into(), OnlyInSource),
            ("_000000".into(), OnlyInTarget),
            ("k000001".into(), ValuesDiffer),
            ("zz".into(), OnlyInTarget),
        ],
        "{report:#?}"
    );
    assert_eq!((report.tables[0].source_rows, report.tables[0].target_rows), (Some(45000), Some(45002)));
    assert_eq!(report.tables[0].different_rows, Some(5));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn mariadb_uuid_and_address_columns_arrive_as_uuid_and_inet_through_the_copy_and_the_stream() {
    use ferry::api::CompareResult;
    use ferry::compare::{self, Options};
    const ROWS: &str = "('00112233-4455-1677-8899-aabbccdd0000', '2001:db8::', '10.0.0.0', 1),
        ('00000000-0000-0000-0000-000000000000', '::', '0.0.0.0', 2),
        ('ffffffff-ffff-7fff-bfff-ffffffffffff', '::ffff:1.2.3.4', '255.255.255.255', 3),
        ('01234567-89ab-4def-8123-456789abcdef', NULL, NULL, 4)";
    let servers = Servers::start();
    exec(
        &mut servers.source().await,
        &format!(
            "CREATE DATABASE shop; USE shop; CREATE TABLE addr (u uuid PRIMARY KEY, a6 inet6, a4 inet4, n int);
             INSERT INTO addr VALUES {ROWS};"
        ),
    )
    .await;
    let mut spec = servers.spec(&["addr"]);
    spec.task_type = TaskType::FullIncrTrans;
    let (_stop_tx, mut job) = servers.spawn("addr", &spec);
    let pg = servers.target().await;
    wait_for(&pg, "SELECT full_done FROM _ferry.jobs", &mut job).await;
    let types: Vec<String> = pg
        .query(
            "SELECT format_type(atttypid, atttypmod) FROM pg_attribute
             WHERE attrelid = 'shop.addr'::regclass AND attnum > 0 ORDER BY attnum",
            &[],
        )
        .await
        .unwrap()
        .iter()
        .map(|r| r.get(0))
        .collect();
    assert_eq!(types, ["uuid", "inet", "inet", "integer"]);
    // The same values again through the stream (16 and 4 bytes in the binary log, trailing
    // zero bytes left out), then an update and a delete found by the UUID key.
    exec(
        &mut servers.source().await,
        &format!(
            "USE shop; DELETE FROM addr; INSERT INTO addr VALUES {ROWS};
             UPDATE addr SET a4 = '192.168.0.0', a6 = '::1' WHERE u = '00112233-4455-1677-8899-aabbccdd0000';
             DELETE FROM addr WHERE n = 2;"
        ),
    )
    .await;
    let want = vec![
        "00112233-4455-1677-8899-aabbccdd0000 ::1 192.168.0.0".to_owned(),
        "01234567-89ab-4def-8123-456789abcdef NULL NULL".to_owned(),
        "ffffffff-ffff-7fff-bfff-ffffffffffff ::ffff:1.2.3.4 255.255.255.255".to_owned(),
    ];
    let deadline = std::time::Instant::now() + Duration::from_secs(60);
    loop {
        let have: Vec<String> = pg
            .query(
                "SELECT u::text || ' ' || coalesce(host(a6), 'NULL') || ' ' || coalesce(host(a4), 'NULL')
                 FROM shop.addr ORDER BY u",
                &[],
            )
            .await
            .unwrap()
            .iter()
            .map(|r| r.get(0))
            .collect();
        if have == want {
            break;
        }
        assert!(!job.is_finished(), "the job stopped: {:?}", job.await);
        assert!(std::time::Instant::now() < deadline, "{have:?}");
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    let report =
        compare::run(&spec.source, &spec.target, &spec.objects, &servers.credentials(), Options::content(20)).await;
    let report = report.unwrap();
    assert_eq!(report.result(), CompareResult::Consistent, "{report:#?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_date_postgresql_cannot_hold_stops_the_job_naming_table_and_column() {
    let servers = Servers::start();
    exec(
        &mut servers.source().await,
        "CREATE DATABASE shop; USE shop; CREATE TABLE days (id int PRIMARY KEY, d date);
         SET SESSION sql_mode = 'ALLOW_INVALID_DATES'; INSERT INTO days VALUES (1, '2024-02-30');",
    )
    .await;
    let spec = servers.spec(&["days"]);
    let e = servers.run("days", &spec).await.unwrap_err().to_string();
    // PostgreSQL refuses it; the error names the table, the column and the reason, not the value.
    assert!(e.contains("shop.days") && e.contains("column d") && e.contains("out of range"), "{e}");
    assert!(!e.contains("2024-02-30"), "{e}");
}
