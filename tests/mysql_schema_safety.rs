//! Source schema text never runs as SQL of its own on the target: crafted column defaults reach
//! the target as the same values, sessions refuse a second statement, and a replayed DDL that
//! names tables the job does not select touches only the selected ones (or stops the job).

mod my_support;

use std::time::Duration;

use ferry::api::TaskType;
use ferry::engine::Outcome;
use ferry::engine::error::Side;
use my_support::{MyPair, exec, wait_equal};
use mysql_async::prelude::Queryable;

/// Defaults as MariaDB reports them in information_schema.COLUMNS, per column of `db.t`.
async fn defaults(conn: &mut mysql_async::Conn, db: &str, t: &str) -> Vec<(String, Option<String>, String)> {
    conn.exec(
        "SELECT COLUMN_NAME, COLUMN_DEFAULT, EXTRA FROM information_schema.COLUMNS \
         WHERE TABLE_SCHEMA = ? AND TABLE_NAME = ? ORDER BY ORDINAL_POSITION",
        (db, t),
    )
    .await
    .unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn crafted_defaults_reach_the_target_as_the_same_values_and_nothing_else_runs() {
    let pair = MyPair::start();
    let mut src = pair.source().await;
    let mut tgt = pair.target().await;
    exec(
        &mut tgt,
        "CREATE DATABASE keep; CREATE TABLE keep.victim (id int PRIMARY KEY); INSERT INTO keep.victim VALUES (1)",
    )
    .await;
    exec(
        &mut src,
        r"CREATE DATABASE shop; CREATE DATABASE keep; CREATE TABLE keep.victim (id int);
          CREATE TABLE shop.t (
            id int PRIMARY KEY,
            inject varchar(100) NOT NULL DEFAULT 'x''); DROP TABLE keep.victim; --',
            slashes varchar(100) DEFAULT 'a\\b\'c\\',
            tail_slash varchar(100) DEFAULT 'ends in a backslash \\',
            newline varchar(100) DEFAULT 'two\nlines',
            word varchar(100) DEFAULT 'CURRENT_TIMESTAMP',
            empty varchar(10) DEFAULT '',
            nothing varchar(10) DEFAULT NULL,
            num decimal(8,2) NOT NULL DEFAULT -1.50,
            bits bit(4) DEFAULT b'1010',
            ts timestamp(6) NOT NULL DEFAULT current_timestamp(6) ON UPDATE current_timestamp(6),
            day date DEFAULT (curdate()),
            sum int DEFAULT (1 + 2),
            joined varchar(20) DEFAULT (concat('a'';', 'b'))
          )",
    )
    .await;
    let spec = pair.spec(TaskType::FullTrans, &["t"]);
    assert_eq!(pair.run("t/defaults", spec).await.unwrap(), Outcome::Completed);

    let want = defaults(&mut src, "shop", "t").await;
    assert_eq!(defaults(&mut tgt, "shop", "t").await, want);
    let victims: u64 = tgt.query_first("SELECT count(*) FROM keep.victim").await.unwrap().unwrap();
    assert_eq!(victims, 1, "nothing but the CREATE TABLE ran on the target");
    // The values a row gets from the defaults are the same on both sides.
    for conn in [&mut src, &mut tgt] {
        exec(conn, "INSERT INTO shop.t (id) VALUES (1)").await;
    }
    let row =
        "SELECT inject, slashes, tail_slash, newline, word, empty, nothing, num, bits + 0, sum, joined FROM shop.t";
    type Row = (String, String, String, String, String, String, Option<String>, String, u8, i32, String);
    let s: Row = src.query_first(row).await.unwrap().unwrap();
    let t: Row = tgt.query_first(row).await.unwrap().unwrap();
    assert_eq!(s, t);
    assert_eq!(t.0, "x'); DROP TABLE keep.victim; --");
    assert_eq!(t.1, r"a\b'c\");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_session_refuses_a_second_statement_in_one_query() {
    let pair = MyPair::start();
    let creds = pair.credentials();
    let endpoint = my_support::endpoint(&pair.target);
    let mut conn =
        ferry::engine::mysql::connect::connect(&endpoint, creds.login(Side::Target), Side::Target).await.unwrap();
    let one: Option<u8> = conn.query_first("SELECT 1").await.unwrap();
    assert_eq!(one, Some(1));
    let err = conn.query_drop("SELECT 1; SELECT 2").await.unwrap_err();
    assert!(err.to_string().contains("1064") || err.to_string().contains("syntax"), "{err}");
    // The session is still usable after the refusal.
    let two: Option<u8> = conn.query_first("SELECT 2").await.unwrap();
    assert_eq!(two, Some(2));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_replayed_drop_of_several_tables_drops_only_the_selected_ones_and_a_rename_out_stops_the_job() {
    let pair = MyPair::start();
    let mut src = pair.source().await;
    let mut tgt = pair.target().await;
    let tables = "CREATE DATABASE shop; USE shop;
        CREATE TABLE orders (id int PRIMARY KEY); INSERT INTO orders VALUES (1), (2);
        CREATE TABLE items (id int PRIMARY KEY); INSERT INTO items VALUES (1);
        CREATE TABLE other (id int PRIMARY KEY); INSERT INTO other VALUES (7);";
    exec(&mut src, tables).await;
    // The target has a table of the same name the job does not select, with data of its own.
    exec(
        &mut tgt,
        "CREATE DATABASE shop; CREATE TABLE shop.other (id int PRIMARY KEY); INSERT INTO shop.other VALUES (42)",
    )
    .await;
    let mut spec = pair.spec(TaskType::FullIncrTrans, &["orders", "items"]);
    spec.policy.ddl.enabled = true;
    let (_stop, mut job) = pair.spawn("t/multi", spec);
    my_support::wait_streaming(&mut tgt, &mut job).await;
    wait_equal(&pair, "shop.orders", "shop.orders", Duration::from_secs(20)).await;

    exec(&mut src, "DROP TABLE shop.orders, shop.other").await;
    my_support::wait_for(
        &mut tgt,
        "SELECT count(*) = 0 FROM information_schema.TABLES WHERE TABLE_SCHEMA = 'shop' AND TABLE_NAME = 'orders'",
        Duration::from_secs(30),
    )
    .await;
    let kept: Vec<u32> = tgt.query("SELECT id FROM shop.other").await.unwrap();
    assert_eq!(kept, vec![42], "the unselected target table survives");

    // Renaming a selected table to a name the job does not select cannot be replayed: the job
    // stops and names the statement.
    exec(&mut src, "RENAME TABLE shop.items TO shop.gone").await;
    let err =
        tokio::time::timeout(Duration::from_secs(30), &mut job).await.expect("the job stops").unwrap().unwrap_err();
    let msg = err.to_string();
    assert!(msg.contains("RENAME TABLE shop.items TO shop.gone") && msg.contains("shop.gone"), "{msg}");
    assert!(msg.contains("policy.ddl"), "{msg}");
    let items: u64 = tgt
        .query_first(
            "SELECT count(*) FROM information_schema.TABLES WHERE TABLE_SCHEMA = 'shop' AND TABLE_NAME = 'items'",
        )
        .await
        .unwrap()
        .unwrap();
    assert_eq!(items, 1, "the target table keeps its name");
}

/// CHECK constraints reach the target: a JSON column's own check, a column-level and a
/// table-level one (with a renamed column renamed in its condition); one on a column the job
/// does not transfer is left out and reported by the precheck.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn check_constraints_reach_the_target_in_target_names() {
    let pair = MyPair::start();
    let mut src = pair.source().await;
    let mut tgt = pair.target().await;
    exec(
        &mut src,
        "CREATE DATABASE shop; CREATE TABLE shop.c (
            id int PRIMARY KEY,
            doc json,
            qty int CHECK (qty >= 0),
            price decimal(8,2),
            secret int,
            CONSTRAINT positive_price CHECK (price > 0 AND qty < 1000000),
            CONSTRAINT uses_secret CHECK (secret IS NULL OR secret > 0)
          );
          INSERT INTO shop.c VALUES (1, '{\"a\": [1, 2]}', 3, 9.50, 7), (2, NULL, 0, 1, NULL)",
    )
    .await;
    let mut spec = pair.spec(TaskType::FullTrans, &["c"]);
    spec.objects.databases[0].tables[0].columns = Some(ferry::api::ColumnSelection {
        exclude: vec!["secret".into()],
        rename: [("price".to_owned(), "cost".to_owned())].into(),
        ..Default::default()
    });
    let items = ferry::engine::precheck(&spec, &pair.credentials()).await;
    let item = items.iter().find(|i| i.item == "source.defaults").expect("source.defaults");
    assert_eq!(item.result, ferry::api::PrecheckResult::Alarm, "{item:?}");
    let reason = item.reason.as_deref().unwrap();
    assert!(reason.contains("check constraint uses_secret of shop.c: it uses column secret"), "{reason}");
    assert!(!reason.contains("positive_price"), "{reason}");

    assert_eq!(pair.run("t/checks", spec).await.unwrap(), Outcome::Completed);
    let checks: Vec<(String, String, String)> = tgt
        .query(
            "SELECT CONSTRAINT_NAME, LEVEL, CHECK_CLAUSE FROM information_schema.CHECK_CONSTRAINTS \
             WHERE CONSTRAINT_SCHEMA = 'shop' AND TABLE_NAME = 'c' ORDER BY CONSTRAINT_NAME",
        )
        .await
        .unwrap();
    let want = [
        ("doc", "Column", "json_valid(`doc`)"),
        ("positive_price", "Table", "`cost` > 0 and `qty` < 1000000"),
        ("qty", "Column", "`qty` >= 0"),
    ];
    let got: Vec<(&str, &str, &str)> = checks.iter().map(|(a, b, c)| (a.as_str(), b.as_str(), c.as_str())).collect();
    assert_eq!(got, want);
    for bad in [
        "INSERT INTO shop.c (id, doc) VALUES (10, 'not json')",
        "INSERT INTO shop.c (id, qty) VALUES (11, -1)",
        "INSERT INTO shop.c (id, cost) VALUES (12, 0)",
    ] {
        let refused = tgt.query_drop(bad).await.expect_err(bad);
        assert!(refused.to_string().contains("CONSTRAINT"), "{bad}: {refused}");
    }
    let rows: u64 = tgt.query_first("SELECT count(*) FROM shop.c").await.unwrap().unwrap();
    assert_eq!(rows, 2);
}
