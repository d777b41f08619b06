//! The MariaDB → MariaDB engine against real servers started by the tests: full transfer,
//! full + incremental under concurrent writes, keyless tables split in one snapshot, type
//! round-trip, mapping and filters, DDL.

mod my_support;

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use ferry::api::{ConflictPolicy, TaskType, Tuning};
use ferry::engine::Outcome;
use my_support::{MyPair, exec, rows, wait_equal, wait_streaming};
use mysql_async::prelude::Queryable;

const SHOP: &str = "CREATE DATABASE shop CHARACTER SET utf8mb4 COLLATE utf8mb4_unicode_ci; USE shop;
    CREATE TABLE shop.orders (id bigint PRIMARY KEY, customer int NOT NULL, note varchar(100),
        total decimal(12,2) NOT NULL DEFAULT 0, KEY by_customer (customer), UNIQUE KEY uniq_note (note));
    INSERT INTO shop.orders SELECT seq, seq % 97, concat('order ', seq), seq / 7 FROM seq_1_to_5000;
    CREATE TABLE shop.lines (order_id bigint, line int, sku varchar(20) COLLATE utf8mb4_bin, PRIMARY KEY (order_id, line));
    INSERT INTO shop.lines SELECT seq DIV 3, seq % 3, concat('sku', seq) FROM seq_1_to_3000;
    CREATE TABLE shop.audit (msg text);
    INSERT INTO shop.audit SELECT concat('m', seq) FROM seq_1_to_100;";

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_full_transfer_copies_tables_keys_indexes_and_collations() {
    let pair = MyPair::start();
    exec(&mut pair.source().await, SHOP).await;
    let mut spec = pair.spec(TaskType::FullTrans, &["orders", "lines", "audit"]);
    spec.tuning = Some(Tuning { batch_rows: Some(700), read_parallelism: Some(3), ..Default::default() });
    assert_eq!(pair.run("t/full", spec).await.unwrap(), Outcome::Completed);
    for t in ["shop.orders", "shop.lines", "shop.audit"] {
        wait_equal(&pair, t, t, Duration::from_secs(1)).await;
    }
    let mut tgt = pair.target().await;
    let chunks: u64 =
        tgt.query_first("SELECT count(*) FROM _ferry.chunks WHERE table_name = 'shop.orders'").await.unwrap().unwrap();
    assert!(chunks >= 5, "orders copied in {chunks} chunks");
    let indexes: Vec<(String, i64)> = tgt
        .query("SELECT DISTINCT INDEX_NAME, NON_UNIQUE FROM information_schema.STATISTICS WHERE TABLE_SCHEMA = 'shop' AND TABLE_NAME = 'orders' ORDER BY 1")
        .await
        .unwrap();
    assert_eq!(indexes, vec![("by_customer".into(), 1), ("PRIMARY".into(), 0), ("uniq_note".into(), 0)]);
    let collations: Vec<(String, String)> = tgt
        .query("SELECT COLUMN_NAME, COLLATION_NAME FROM information_schema.COLUMNS WHERE TABLE_SCHEMA = 'shop' AND COLLATION_NAME IS NOT NULL ORDER BY TABLE_NAME, COLUMN_NAME")
        .await
        .unwrap();
    assert_eq!(
        collations,
        vec![
            ("msg".into(), "utf8mb4_unicode_ci".into()),
            ("sku".into(), "utf8mb4_bin".into()),
            ("note".into(), "utf8mb4_unicode_ci".into())
        ]
    );
    let default: Option<String> = tgt
        .query_first("SELECT COLUMN_DEFAULT FROM information_schema.COLUMNS WHERE TABLE_SCHEMA = 'shop' AND TABLE_NAME = 'orders' AND COLUMN_NAME = 'total'")
        .await
        .unwrap()
        .flatten();
    assert_eq!(default.as_deref(), Some("0.00"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn full_and_incremental_under_concurrent_writes_converge_without_duplicates() {
    let pair = MyPair::start();
    exec(&mut pair.source().await, SHOP).await;
    let mut spec = pair.spec(TaskType::FullIncrTrans, &["orders", "lines", "audit"]);
    spec.tuning = Some(Tuning { batch_rows: Some(500), read_parallelism: Some(2), ..Default::default() });
    let running = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(true));
    let flag = running.clone();
    let mut w = pair.source().await;
    let writer = tokio::spawn(async move {
        let mut n = 0u64;
        while flag.load(std::sync::atomic::Ordering::SeqCst) {
            let sql = format!(
                "BEGIN;
                 INSERT INTO shop.orders VALUES ({new}, 1, NULL, 1.5);
                 UPDATE shop.orders SET total = total + 1, note = concat('upd ', {n}) WHERE id = {upd};
                 DELETE FROM shop.orders WHERE id = {del};
                 UPDATE shop.orders SET id = {moved_to} WHERE id = {moved};
                 UPDATE shop.lines SET sku = concat(sku, 'x') WHERE order_id = {upd} % 1000;
                 INSERT INTO shop.audit VALUES (concat('w', {n}));
                 COMMIT;",
                new = 100_000 + n,
                upd = 1 + (n * 7) % 5000,
                del = 2 + (n * 13) % 5000,
                moved = 3 + (n * 17) % 5000,
                moved_to = 200_000 + n,
            );
            w.query_drop(sql).await.unwrap();
            n += 1;
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
        n
    });
    let (stop, mut job) = pair.spawn("t/incr", spec);
    let mut tgt = pair.target().await;
    wait_streaming(&mut tgt, &mut job).await;
    tokio::time::sleep(Duration::from_millis(500)).await;
    running.store(false, std::sync::atomic::Ordering::SeqCst);
    assert!(writer.await.unwrap() > 0);
    for t in ["shop.orders", "shop.lines", "shop.audit"] {
        wait_equal(&pair, t, t, Duration::from_secs(30)).await;
    }
    stop.send(true).unwrap();
    assert_eq!(job.await.unwrap().unwrap(), Outcome::Stopped);
    let mut src = pair.source().await;
    assert_eq!(rows(&mut src, "shop.audit").await.len(), rows(&mut tgt, "shop.audit").await.len());
}

/// A keyless table with an index, NULLs in the indexed column and exact duplicate rows.
const KEYLESS: &str = "CREATE DATABASE shop; USE shop;
    CREATE TABLE shop.notes (k int NULL, label varchar(200) NOT NULL, KEY by_k (k)) ENGINE=InnoDB;
    INSERT INTO shop.notes SELECT IF(seq % 7 = 0, NULL, seq DIV 3), rpad(concat('note ', seq DIV 2), 150, '.')
        FROM seq_1_to_6000;";

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_keyless_table_is_split_on_an_index_and_each_row_copied_once() {
    let pair = MyPair::start();
    exec(&mut pair.source().await, KEYLESS).await;
    let mut spec = pair.spec(TaskType::FullTrans, &["notes"]);
    spec.tuning = Some(Tuning { batch_rows: Some(500), read_parallelism: Some(2), ..Default::default() });
    assert_eq!(pair.run("t/keyless", spec).await.unwrap(), Outcome::Completed);
    // Equal as multisets: every duplicate and every NULL row copied once.
    wait_equal(&pair, "shop.notes", "shop.notes", Duration::from_secs(1)).await;
    let mut tgt = pair.target().await;
    let (chunks, positions): (u64, u64) = tgt
        .query_first("SELECT count(*), count(DISTINCT read_pos) FROM _ferry.chunks WHERE table_name = 'shop.notes'")
        .await
        .unwrap()
        .unwrap();
    assert!(chunks >= 5, "notes copied in {chunks} chunks");
    assert_eq!(positions, 1, "every range read in one snapshot");
    let indexes: Vec<String> = tgt
        .query("SELECT DISTINCT INDEX_NAME FROM information_schema.STATISTICS WHERE TABLE_SCHEMA = 'shop' AND TABLE_NAME = 'notes'")
        .await
        .unwrap();
    assert_eq!(indexes, vec!["by_k".to_owned()]);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_split_keyless_table_changing_during_its_copy_converges_without_duplicates() {
    let pair = MyPair::start();
    exec(&mut pair.source().await, KEYLESS).await;
    let mut spec = pair.spec(TaskType::FullIncrTrans, &["notes"]);
    spec.tuning = Some(Tuning { batch_rows: Some(500), read_parallelism: Some(2), ..Default::default() });
    // Slow the copy down so that rows move between ranges while they are read.
    spec.speed_limits = vec![ferry::api::SpeedLimit { begin: "00:00".into(), end: "23:59".into(), mb_per_second: 1 }];
    let running = Arc::new(AtomicBool::new(true));
    let flag = running.clone();
    let mut w = pair.source().await;
    let writer = tokio::spawn(async move {
        let mut n = 0u64;
        while flag.load(Ordering::SeqCst) {
            // Moves a row from the first ranges to the last and back, adds a duplicate and a
            // NULL row, deletes one of a pair of duplicates.
            let sql = format!(
                "BEGIN;
                 UPDATE shop.notes SET k = k + 5000 WHERE k = {low} LIMIT 1;
                 UPDATE shop.notes SET k = k - 5000 WHERE k = {high} LIMIT 1;
                 INSERT INTO shop.notes VALUES ({dup}, 'dup'), ({dup}, 'dup'), (NULL, concat('null ', {n}));
                 DELETE FROM shop.notes WHERE k = {dup} AND label = 'dup' LIMIT 1;
                 COMMIT;",
                low = 1 + (n * 7) % 900,
                high = 5001 + (n * 11) % 1900,
                dup = n % 2000,
            );
            w.query_drop(sql).await.unwrap();
            n += 1;
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
        n
    });
    let (stop, mut job) = pair.spawn("t/keyless-incr", spec);
    let mut tgt = pair.target().await;
    wait_streaming(&mut tgt, &mut job).await;
    tokio::time::sleep(Duration::from_millis(500)).await;
    running.store(false, Ordering::SeqCst);
    assert!(writer.await.unwrap() > 0);
    wait_equal(&pair, "shop.notes", "shop.notes", Duration::from_secs(30)).await;
    stop.send(true).unwrap();
    assert_eq!(job.await.unwrap().unwrap(), Outcome::Stopped);
    let positions: u64 = tgt
        .query_first("SELECT count(DISTINCT read_pos) FROM _ferry.chunks WHERE table_name = 'shop.notes'")
        .await
        .unwrap()
        .unwrap();
    assert_eq!(positions, 1, "every range read in one snapshot");
}

/// An id and the hex forms of five text columns.
type HexRow = (i32, Option<String>, Option<String>, Option<String>, Option<String>, Option<String>);

const TYPES: &str = "CREATE TABLE shop.types (
    id int PRIMARY KEY,
    ti tinyint, tu tinyint unsigned, si smallint, su smallint unsigned, mi mediumint, mu mediumint unsigned,
    i int, iu int unsigned, bi bigint, bu bigint unsigned,
    d decimal(65,30), f float, dbl double, b bit(10), b64 bit(64),
    c char(5) CHARACTER SET utf8mb4, vc varchar(50) CHARACTER SET utf8mb4, tx text CHARACTER SET utf8mb4, bin binary(4), vb varbinary(10), bl blob, lat varchar(10) CHARACTER SET latin1,
    dt date, dtm datetime(6), ts timestamp(6) NULL DEFAULT NULL, tm time(6), y year,
    e enum('small','medium','large'), st set('a','b','c','d'), j json)";

/// Rows with the edge values of every type, ids from `base`.
fn type_rows(base: i32) -> String {
    format!(
        "INSERT INTO shop.types VALUES
        ({a}, -128, 255, -32768, 65535, -8388608, 16777215, -2147483648, 4294967295, -9223372036854775808, 18446744073709551615,
         '-12345678901234567890123456789012345.123456789012345678901234567890', 1.2345678, 0.1e0 + 0.2e0, b'1010101010', b'1111111111111111111111111111111111111111111111111111111111111111',
         'ab', 'emoji 🦀 ü', repeat('long text ', 500), 0x00FF10AB, 0x0009000A5C, 0x00010203FFFE, 'café ü',
         '0000-00-00', '0000-00-00 00:00:00', '1970-01-01 00:00:01.000001', '-838:59:59.000000', 0,
         'large', 'a,d', '{{\"b\": [1, 2.5, null], \"a\": \"x\"}}'),
        ({b}, 127, 0, 32767, 0, 8388607, 0, 2147483647, 0, 9223372036854775807, 0,
         '0.000000000000000000000000000001', 3.40282e38, 1.7976931348623157e308, b'0', b'0',
         '', '', '', 0x00000000, '', '', '',
         '9999-12-31', '9999-12-31 23:59:59.999999', '2038-01-19 03:14:07.999999', '838:59:59.000000', 2155,
         'small', '', '[]'),
        ({c}, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL,
         NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL),
        ({d}, 0, 1, 0, 1, 0, 1, 0, 1, 0, 1, '-0.5', -1.17549e-38, 5e-324, b'1', b'1',
         'x\\ty', 'tab\\tnew\\nline\\\\back', 'nul\\0byte', 0x5C4E0000, 0x5C4E, 0x0A0D09, 'x',
         '2024-02-29', '2024-02-29 12:34:56.5', '2024-02-29 12:34:56.5', '-00:00:01.5', 1901,
         'medium', 'a,b,c,d', 'null')",
        a = base, b = base + 1, c = base + 2, d = base + 3
    )
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_type_round_trips_exactly_through_the_copy_and_the_stream() {
    let pair = MyPair::start();
    let mut src = pair.source().await;
    exec(&mut src, "SET SESSION sql_mode = ''; SET time_zone = '+03:00'; CREATE DATABASE shop").await;
    exec(&mut src, TYPES).await;
    exec(&mut src, &type_rows(1)).await;
    let spec = pair.spec(TaskType::FullIncrTrans, &["types"]);
    let (stop, mut job) = pair.spawn("t/types", spec);
    let mut tgt = pair.target().await;
    my_support::wait_streaming(&mut tgt, &mut job).await;
    // The same values through the binary log: inserted, updated into each other, deleted.
    exec(&mut src, &type_rows(11)).await;
    exec(&mut src, &type_rows(21)).await;
    exec(&mut src, "UPDATE shop.types t JOIN shop.types s ON s.id = t.id - 20 SET t.ti = s.ti, t.tu = s.tu, t.bu = s.bu, t.d = s.d, t.f = s.f, t.dbl = s.dbl, t.b64 = s.b64, t.vc = s.vc, t.bin = s.bin, t.lat = s.lat, t.dtm = s.dtm, t.ts = s.ts, t.tm = s.tm, t.y = s.y, t.e = s.e, t.st = s.st, t.j = s.j WHERE t.id BETWEEN 21 AND 24").await;
    exec(&mut src, "UPDATE shop.types SET id = id + 100 WHERE id = 22; DELETE FROM shop.types WHERE id = 23").await;
    wait_equal(&pair, "shop.types", "shop.types", Duration::from_secs(20)).await;
    // Same bytes, not just equal under a collation: compare hex forms of the text columns.
    let hex = "SELECT id, hex(vc), hex(lat), hex(c), hex(tx), hex(j) FROM shop.types ORDER BY id";
    let a: Vec<HexRow> = src.query(hex).await.unwrap();
    let b: Vec<HexRow> = tgt.query(hex).await.unwrap();
    assert_eq!(a, b);
    stop.send(true).unwrap();
    assert_eq!(job.await.unwrap().unwrap(), Outcome::Stopped);
}

/// MariaDB's UUID, INET6 and INET4, keyed on the UUID, with values ending in zero bytes (which
/// the binary log leaves out, as for BINARY(n)).
const ADDRESS_ROWS: &str = "('00112233-4455-1677-8899-aabbccdd0000', '2001:db8::', '10.0.0.0'),
    ('00000000-0000-0000-0000-000000000000', '::', '0.0.0.0'),
    ('ffffffff-ffff-7fff-bfff-ffffffffffff', '::ffff:1.2.3.4', '255.255.255.255'),
    ('01234567-89ab-4def-8123-456789abcdef', NULL, NULL)";

/// The tables of the address test: keyed on the UUID (changes reduced to final row states), with
/// a second unique index (written change by change), and without a key (rows matched by value).
const ADDRESS_TABLES: [(&str, &str); 3] = [
    ("addr", "u uuid PRIMARY KEY, a6 inet6, a4 inet4, n int"),
    ("addr_unique", "u uuid PRIMARY KEY, a6 inet6, a4 inet4, n int, UNIQUE (n)"),
    ("addr_keyless", "u uuid, a6 inet6, a4 inet4, n int"),
];

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn mariadb_uuid_and_address_types_round_trip_through_the_copy_and_the_stream() {
    let pair = MyPair::start();
    let mut src = pair.source().await;
    exec(&mut src, "CREATE DATABASE shop").await;
    for (table, columns) in ADDRESS_TABLES {
        exec(&mut src, &format!("CREATE TABLE shop.{table} ({columns})")).await;
        exec(&mut src, &format!("INSERT INTO shop.{table} (u, a6, a4) VALUES {ADDRESS_ROWS}")).await;
    }
    let spec = pair.spec(TaskType::FullIncrTrans, &ADDRESS_TABLES.map(|(t, _)| t));
    let (stop, mut job) = pair.spawn("t/addr", spec);
    let mut tgt = pair.target().await;
    my_support::wait_streaming(&mut tgt, &mut job).await;
    for (table, _) in ADDRESS_TABLES {
        let name = format!("shop.{table}");
        wait_equal(&pair, &name, &name, Duration::from_secs(20)).await;
    }
    for (table, _) in ADDRESS_TABLES {
        exec(&mut src, &format!("DELETE FROM shop.{table}")).await;
        exec(&mut src, &format!("INSERT INTO shop.{table} (u, a6, a4) VALUES {ADDRESS_ROWS}")).await;
        exec(
            &mut src,
            &format!(
                "UPDATE shop.{table} SET n = 1, a4 = '192.168.0.0' WHERE u = '00112233-4455-1677-8899-aabbccdd0000';
                 UPDATE shop.{table} SET a6 = '::1', u = '00112233-4455-1677-8899-aabbccdd0100' WHERE n IS NULL AND a4 = '0.0.0.0'"
            ),
        )
        .await;
        exec(&mut src, &format!("DELETE FROM shop.{table} WHERE a6 = '::ffff:1.2.3.4'")).await;
    }
    for (table, _) in ADDRESS_TABLES {
        let name = format!("shop.{table}");
        if let Err(e) = my_support::try_wait_equal(&pair, &name, &name, Duration::from_secs(20)).await {
            panic!("{e}; the job: {:?}", if job.is_finished() { Some(job.await) } else { None });
        }
    }
    stop.send(true).unwrap();
    assert_eq!(job.await.unwrap().unwrap(), Outcome::Stopped);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn dates_a_lenient_source_stored_arrive_as_stored_through_the_copy_and_the_stream() {
    let pair = MyPair::start();
    let mut src = pair.source().await;
    exec(&mut src, "CREATE DATABASE shop; CREATE TABLE shop.days (id int PRIMARY KEY, d date, dt datetime)").await;
    let rows = |base: i32| {
        format!(
            "SET SESSION sql_mode = 'ALLOW_INVALID_DATES'; INSERT INTO shop.days VALUES
             ({base}, '2024-02-30', '2023-04-31 10:00:00'), ({}, '2024-00-00', '2024-06-00 00:00:00')",
            base + 1
        )
    };
    exec(&mut src, &rows(1)).await;
    let spec = pair.spec(TaskType::FullIncrTrans, &["days"]);
    let (stop, mut job) = pair.spawn("t/days", spec);
    let mut tgt = pair.target().await;
    my_support::wait_streaming(&mut tgt, &mut job).await;
    exec(&mut src, &rows(11)).await;
    exec(&mut src, "SET SESSION sql_mode = 'ALLOW_INVALID_DATES'; UPDATE shop.days SET d = '2025-02-31' WHERE id = 2")
        .await;
    wait_equal(&pair, "shop.days", "shop.days", Duration::from_secs(20)).await;
    let text = "SELECT id, CAST(d AS CHAR), CAST(dt AS CHAR) FROM shop.days ORDER BY id";
    let a: Vec<(i32, String, String)> = src.query(text).await.unwrap();
    let b: Vec<(i32, String, String)> = tgt.query(text).await.unwrap();
    assert_eq!(a, b);
    stop.send(true).unwrap();
    assert_eq!(job.await.unwrap().unwrap(), Outcome::Stopped);
}

/// Every type through each way the applier writes a table: reduced to final row states (a key
/// and no other unique index), change by change (a second unique index), by a two-column key,
/// and without a key; under each conflict policy. Inserts, updates, a key move and deletes of
/// several rows by one statement, in one source transaction and in several, so that rows go in
/// multi-row statements and in single-row ones, with NULLs, NUL bytes, binary and latin1 text.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_type_streams_exactly_into_every_table_shape_under_every_conflict_policy() {
    const SHAPES: &str = "CREATE TABLE shop.types LIKE shop.vals;
        CREATE TABLE shop.types_uk LIKE shop.vals; ALTER TABLE shop.types_uk ADD UNIQUE KEY uk (id, ti);
        CREATE TABLE shop.types_ck LIKE shop.vals;
        ALTER TABLE shop.types_ck ADD COLUMN k2 int NOT NULL DEFAULT 7, DROP PRIMARY KEY, ADD PRIMARY KEY (id, k2);
        CREATE TABLE shop.types_nokey LIKE shop.vals; ALTER TABLE shop.types_nokey DROP PRIMARY KEY";
    let tables = ["types", "types_uk", "types_ck", "types_nokey"];
    // The rows with ids `lo..=hi` of the staging table (which the job does not select) into `t`.
    let fill = |t: &str, lo: i32, hi: i32| {
        let columns = match t {
            "types_ck" => "*, 7",
            _ => "*",
        };
        format!("INSERT INTO shop.{t} SELECT {columns} FROM shop.vals WHERE id BETWEEN {lo} AND {hi}")
    };
    for conflict in [ConflictPolicy::Overwrite, ConflictPolicy::Ignore, ConflictPolicy::Stop] {
        let pair = MyPair::start();
        let mut src = pair.source().await;
        exec(&mut src, "SET SESSION sql_mode = ''; CREATE DATABASE shop").await;
        exec(&mut src, &TYPES.replace("shop.types", "shop.vals")).await;
        for base in [1, 11, 21, 31] {
            exec(&mut src, &type_rows(base).replace("shop.types", "shop.vals")).await;
        }
        exec(&mut src, SHAPES).await;
        for t in tables {
            exec(&mut src, &fill(t, 1, 4)).await;
        }
        let mut spec = pair.spec(TaskType::FullIncrTrans, &tables);
        spec.policy.conflict = conflict;
        let (stop, mut job) = pair.spawn("t/shapes", spec);
        let mut tgt = pair.target().await;
        wait_streaming(&mut tgt, &mut job).await;
        for t in tables {
            exec(&mut src, &fill(t, 11, 14)).await;
            let update = format!(
                "UPDATE shop.{t} t JOIN shop.vals s ON s.id = t.id - 20 SET t.ti = s.ti, t.tu = s.tu, t.bu = s.bu, \
                 t.d = s.d, t.f = s.f, t.dbl = s.dbl, t.b64 = s.b64, t.vc = s.vc, t.bin = s.bin, t.lat = s.lat, \
                 t.dtm = s.dtm, t.ts = s.ts, t.tm = s.tm, t.y = s.y, t.e = s.e, t.st = s.st, t.j = s.j \
                 WHERE t.id BETWEEN 21 AND 24"
            );
            exec(
                &mut src,
                &format!(
                    "BEGIN; {}; {update}; UPDATE shop.{t} SET id = id + 100 WHERE id = 22; \
                     DELETE FROM shop.{t} WHERE id IN (11, 12, 13); DELETE FROM shop.{t} WHERE id = 24; {}; \
                     DELETE FROM shop.{t} WHERE id IN (31, 33); COMMIT",
                    fill(t, 21, 24),
                    fill(t, 31, 34)
                ),
            )
            .await;
            exec(&mut src, &format!("DELETE FROM shop.{t} WHERE id IN (1, 2, 3)")).await;
            exec(&mut src, &format!("UPDATE shop.{t} SET vc = concat(vc, 'x'), tx = NULL WHERE id IN (4, 14)")).await;
        }
        for t in tables {
            let t = format!("shop.{t}");
            wait_equal(&pair, &t, &t, Duration::from_secs(30)).await;
            // Same bytes, not just equal under a collation.
            let hex = format!("SELECT id, hex(vc), hex(lat), hex(c), hex(tx), hex(j) FROM {t} ORDER BY id");
            let a: Vec<HexRow> = src.query(&hex).await.unwrap();
            let b: Vec<HexRow> = tgt.query(&hex).await.unwrap();
            assert_eq!(a, b, "{t} under {conflict:?}");
        }
        stop.send(true).unwrap();
        assert_eq!(job.await.unwrap().unwrap(), Outcome::Stopped, "under {conflict:?}");
    }
}

/// mysql_common 0.37 misreads these through the binary log (found by fuzzing): -838:59:59.99 came
/// out as -213:59:59.99, -00:00:01.5 as an out-of-range 624:63:62.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn negative_times_with_a_fraction_of_a_second_stream_exactly() {
    let pair = MyPair::start();
    let mut src = pair.source().await;
    exec(
        &mut src,
        "CREATE DATABASE shop; CREATE TABLE shop.times (id int PRIMARY KEY, t1 time(1), t2 time(2), t3 time(3))",
    )
    .await;
    let spec = pair.spec(TaskType::FullIncrTrans, &["times"]);
    let (stop, mut job) = pair.spawn("t/times", spec);
    let mut tgt = pair.target().await;
    wait_streaming(&mut tgt, &mut job).await;
    exec(
        &mut src,
        "INSERT INTO shop.times VALUES (1, '-838:59:59.9', '-838:59:59.99', '-838:59:59.999'), \
         (2, '-00:00:01.5', '-00:00:01.5', '-00:00:01.5'), (3, '-624:59:59.1', '-625:00:00.01', '-12:30:00.25'), \
         (4, '838:59:59.9', '00:00:00.01', '-00:00:00.001'), (5, '-01:00:00', '-01:00:00', NULL)",
    )
    .await;
    exec(&mut src, "UPDATE shop.times SET t2 = '-100:00:00.5' WHERE id = 5").await;
    wait_equal(&pair, "shop.times", "shop.times", Duration::from_secs(20)).await;
    stop.send(true).unwrap();
    assert_eq!(job.await.unwrap().unwrap(), Outcome::Stopped);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn mapping_and_row_filters_apply_in_the_copy_and_in_the_stream() {
    use ferry::api::{ColumnSelection, TableSelection};
    let pair = MyPair::start();
    let mut src = pair.source().await;
    exec(&mut src, SHOP).await;
    let mut spec = pair.spec(TaskType::FullIncrTrans, &[]);
    spec.objects.databases[0].mapped_name = Some("shop_copy".into());
    spec.objects.databases[0].tables = vec![TableSelection {
        name: "orders".into(),
        mapped_name: Some("orders_copy".into()),
        filter: Some("total >= 100 AND note LIKE 'order%'".into()),
        columns: Some(ColumnSelection {
            exclude: vec!["customer".into()],
            rename: [("note".to_owned(), "remark".to_owned())].into(),
            ..Default::default()
        }),
    }];
    let (stop, mut job) = pair.spawn("t/map", spec);
    let mut tgt = pair.target().await;
    my_support::wait_streaming(&mut tgt, &mut job).await;
    exec(
        &mut src,
        "INSERT INTO shop.orders VALUES (9001, 1, 'order in', 500), (9002, 1, 'order out', 5), (9003, 1, 'other', 900);
         UPDATE shop.orders SET total = 1 WHERE id = 1400;      -- moves out of the filter
         UPDATE shop.orders SET total = 1000 WHERE id = 50;     -- moves into it
         UPDATE shop.orders SET note = 'order renamed' WHERE id = 2000;
         UPDATE shop.orders SET customer = 5 WHERE id = 2001;   -- only an excluded column changes
         DELETE FROM shop.orders WHERE id IN (3000, 3001);",
    )
    .await;
    let want = "SELECT id, note, total FROM shop.orders WHERE total >= 100 AND note LIKE 'order%' ORDER BY id";
    let have = "SELECT id, remark, total FROM shop_copy.orders_copy ORDER BY id";
    let deadline = std::time::Instant::now() + Duration::from_secs(20);
    loop {
        let a: Vec<(i64, String, String)> = src.query(want).await.unwrap();
        let b: Vec<(i64, String, String)> = tgt.query(have).await.unwrap_or_default();
        if a == b {
            assert!(a.iter().any(|r| r.0 == 9001) && a.iter().any(|r| r.0 == 50) && !a.iter().any(|r| r.0 == 1400));
            break;
        }
        assert!(std::time::Instant::now() < deadline, "{} rows on the target, {} wanted", b.len(), a.len());
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let columns: Vec<String> = tgt
        .query("SELECT COLUMN_NAME FROM information_schema.COLUMNS WHERE TABLE_SCHEMA = 'shop_copy' AND TABLE_NAME = 'orders_copy' ORDER BY ORDINAL_POSITION")
        .await
        .unwrap();
    assert_eq!(columns, ["id", "remark", "total"]);
    stop.send(true).unwrap();
    assert_eq!(job.await.unwrap().unwrap(), Outcome::Stopped);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn ddl_on_selected_tables_is_replayed_with_the_mapping_when_enabled() {
    let pair = MyPair::start();
    let mut src = pair.source().await;
    exec(&mut src, SHOP).await;
    let mut spec = pair.spec(TaskType::FullIncrTrans, &[]);
    spec.objects.databases[0].all = true;
    spec.objects.databases[0].mapped_name = Some("shop2".into());
    spec.policy.ddl.enabled = true;
    let (stop, mut job) = pair.spawn("t/ddl", spec);
    let mut tgt = pair.target().await;
    my_support::wait_streaming(&mut tgt, &mut job).await;
    exec(
        &mut src,
        "USE shop;
         ALTER TABLE orders ADD COLUMN status varchar(10) NOT NULL DEFAULT 'new' AFTER customer, ADD INDEX by_status (status);
         UPDATE orders SET status = 'paid' WHERE id < 10;
         INSERT INTO orders VALUES (9100, 1, 'shipped', 'ddl row', 10);
         CREATE TABLE shop.refunds (id int PRIMARY KEY, amount decimal(8,2));
         INSERT INTO refunds VALUES (1, 9.99), (2, 19.99);
         RENAME TABLE `lines` TO order_lines;
         INSERT INTO order_lines VALUES (9999, 1, 'after rename');
         TRUNCATE TABLE audit;
         INSERT INTO audit VALUES ('fresh');",
    )
    .await;
    // A replayed DDL takes the table's new structure from the source as it is then: let the
    // stream reach the first ALTER before the second one changes the table again.
    my_support::wait_for(
        &mut tgt,
        "SELECT count(*) = 1 FROM information_schema.COLUMNS WHERE TABLE_SCHEMA = 'shop2' AND TABLE_NAME = 'orders' \
         AND COLUMN_NAME = 'status'",
        Duration::from_secs(30),
    )
    .await;
    exec(
        &mut src,
        "USE shop; ALTER TABLE orders DROP COLUMN status; INSERT INTO orders VALUES (9101, 2, 'after drop', 11);",
    )
    .await;
    for (s, t) in [
        ("shop.orders", "shop2.orders"),
        ("shop.refunds", "shop2.refunds"),
        ("shop.order_lines", "shop2.order_lines"),
        ("shop.audit", "shop2.audit"),
    ] {
        if let Err(e) = my_support::try_wait_equal(&pair, s, t, Duration::from_secs(20)).await {
            let ended = if job.is_finished() { format!("{:?}", job.await.unwrap()) } else { "running".into() };
            panic!("{e}; job: {ended}");
        }
    }
    stop.send(true).unwrap();
    assert_eq!(job.await.unwrap().unwrap(), Outcome::Stopped);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn ddl_is_ignored_when_disabled_and_a_changed_table_stops_the_job_clearly() {
    let pair = MyPair::start();
    let mut src = pair.source().await;
    exec(&mut src, SHOP).await;
    let spec = pair.spec(TaskType::FullIncrTrans, &["orders", "lines"]);
    let (_stop, mut job) = pair.spawn("t/noddl", spec);
    let mut tgt = pair.target().await;
    my_support::wait_streaming(&mut tgt, &mut job).await;
    // Index changes are ignored and rows keep flowing.
    exec(&mut src, "CREATE INDEX by_sku ON shop.lines (sku); INSERT INTO shop.lines VALUES (7777, 1, 'still here')")
        .await;
    wait_equal(&pair, "shop.lines", "shop.lines", Duration::from_secs(20)).await;
    let indexes: u64 = tgt
        .query_first(
            "SELECT count(*) FROM information_schema.STATISTICS WHERE TABLE_NAME = 'lines' AND INDEX_NAME = 'by_sku'",
        )
        .await
        .unwrap()
        .unwrap();
    assert_eq!(indexes, 0, "the index was not replayed");
    // A new column the target does not have: the job stops and says why.
    exec(&mut src, "ALTER TABLE shop.orders ADD COLUMN extra int; INSERT INTO shop.orders VALUES (9200, 1, 'x', 1, 5)")
        .await;
    let err =
        tokio::time::timeout(Duration::from_secs(30), &mut job).await.expect("the job stops").unwrap().unwrap_err();
    let msg = err.to_string();
    assert!(msg.contains("shop.orders") && msg.contains("policy.ddl"), "{msg}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_incremental_job_starts_at_a_given_gtid_position() {
    let pair = MyPair::start();
    let mut src = pair.source().await;
    exec(&mut src, SHOP).await;
    // The target was loaded by other means up to this GTID position.
    let at: String = src.query_first("SELECT @@gtid_binlog_pos").await.unwrap().unwrap();
    let mut tgt = pair.target().await;
    exec(&mut tgt, "CREATE DATABASE shop; CREATE TABLE shop.lines (order_id bigint, line int, sku varchar(20), PRIMARY KEY (order_id, line))").await;
    let mut dump: Vec<(i64, i32, String)> = src.query("SELECT * FROM shop.lines").await.unwrap();
    // Later changes: only these must be streamed.
    exec(&mut src, "INSERT INTO shop.lines VALUES (5000, 1, 'new'); UPDATE shop.lines SET sku = 'changed' WHERE order_id = 1; DELETE FROM shop.lines WHERE order_id = 2").await;
    tgt.exec_batch("INSERT INTO shop.lines VALUES (?, ?, ?)", dump.drain(..)).await.unwrap();
    let mut spec = pair.spec(TaskType::IncrTrans, &["lines"]);
    spec.start_position = Some(at);
    let (stop, mut job) = pair.spawn("t/gtid", spec);
    tokio::select! {
        r = &mut job => panic!("the job ended: {r:?}"),
        _ = wait_equal(&pair, "shop.lines", "shop.lines", Duration::from_secs(60)) => {}
    }
    stop.send(true).unwrap();
    assert_eq!(job.await.unwrap().unwrap(), Outcome::Stopped);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_row_change_logged_as_a_statement_stops_the_job_instead_of_being_lost() {
    let pair = MyPair::start();
    let mut src = pair.source().await;
    exec(&mut src, SHOP).await;
    let spec = pair.spec(TaskType::FullIncrTrans, &["orders"]);
    let (_stop, mut job) = pair.spawn("t/stmt", spec);
    let mut tgt = pair.target().await;
    my_support::wait_streaming(&mut tgt, &mut job).await;
    exec(&mut src, "SET SESSION binlog_format = 'STATEMENT'; INSERT INTO shop.orders VALUES (9300, 1, 'stmt', 1)")
        .await;
    let err =
        tokio::time::timeout(Duration::from_secs(30), &mut job).await.expect("the job stops").unwrap().unwrap_err();
    assert!(err.to_string().contains("binlog_format=ROW"), "{err}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn generated_columns_are_recreated_and_never_written() {
    let pair = MyPair::start();
    let mut src = pair.source().await;
    exec(
        &mut src,
        "CREATE DATABASE shop; CREATE TABLE shop.items (id int PRIMARY KEY, price decimal(8,2), qty int,
             total decimal(10,2) AS (price * qty) STORED, label varchar(40) AS (concat('item ', id)) VIRTUAL);
         INSERT INTO shop.items (id, price, qty) VALUES (1, 2.50, 4), (2, 10, 1);",
    )
    .await;
    let spec = pair.spec(TaskType::FullIncrTrans, &["items"]);
    let (stop, mut job) = pair.spawn("t/gen", spec);
    let mut tgt = pair.target().await;
    my_support::wait_streaming(&mut tgt, &mut job).await;
    exec(&mut src, "INSERT INTO shop.items (id, price, qty) VALUES (3, 1, 7); UPDATE shop.items SET qty = 9 WHERE id = 1; DELETE FROM shop.items WHERE id = 2").await;
    wait_equal(&pair, "shop.items", "shop.items", Duration::from_secs(20)).await;
    stop.send(true).unwrap();
    assert_eq!(job.await.unwrap().unwrap(), Outcome::Stopped);
}

/// A server at its default `max_allowed_packet` (16 MiB on MariaDB): a chunk of ordinary rows
/// larger than that loads (LOAD DATA input goes in pieces below the limit), and a streamed
/// transaction of wide rows applies (multi-row statements are cut to fit).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn chunks_and_batches_larger_than_max_allowed_packet_load_in_pieces() {
    let pair = MyPair::start();
    let mut src = pair.source().await;
    let limit: u64 = src.query_first("SELECT @@max_allowed_packet").await.unwrap().unwrap();
    assert_eq!(limit, 16 << 20, "the server keeps its default");
    // 45,000 rows of ~450 bytes: one chunk of ~20 MB (the default chunk is 50,000 rows).
    exec(
        &mut src,
        "CREATE DATABASE shop; \
         CREATE TABLE shop.orders (id int PRIMARY KEY, note varchar(500)); \
         CREATE TABLE shop.wide (id int PRIMARY KEY, body longtext); \
         INSERT INTO shop.orders SELECT seq, REPEAT(CHAR(97 + seq % 26), 450) FROM shop.seq_1_to_45000;",
    )
    .await;
    let (stop, mut job) = pair.spawn("test/packet", pair.spec(TaskType::FullIncrTrans, &["orders", "wide"]));
    let mut tgt = pair.target().await;
    wait_streaming(&mut tgt, &mut job).await;
    // One transaction of 200 rows of 200 KB each: 40 MB of changes to apply.
    exec(
        &mut src,
        "INSERT INTO shop.orders SELECT 100000 + seq, REPEAT('w', 500) FROM shop.seq_1_to_10; \
         INSERT INTO shop.wide SELECT seq, REPEAT(CHAR(65 + seq % 26), 200000) FROM shop.seq_1_to_200;",
    )
    .await;
    wait_equal(&pair, "shop.orders", "shop.orders", Duration::from_secs(120)).await;
    wait_equal(&pair, "shop.wide", "shop.wide", Duration::from_secs(120)).await;
    let _ = stop.send(true);
    assert!(matches!(job.await.unwrap(), Ok(Outcome::Stopped)));
}

/// The binary log at a stopped job's checkpoint is purged: the restarted job fails at once with
/// BINLOG_PURGED, the file names and the fix, instead of retrying.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_checkpoint_in_a_purged_binary_log_fails_at_once_saying_so() {
    let pair = MyPair::start();
    let mut src = pair.source().await;
    exec(
        &mut src,
        "CREATE DATABASE shop; CREATE TABLE shop.orders (id int PRIMARY KEY, note text); \
                    INSERT INTO shop.orders SELECT seq, 'n' FROM shop.seq_1_to_1000;",
    )
    .await;
    let spec = pair.spec(TaskType::FullIncrTrans, &["orders"]);
    let (stop, mut job) = pair.spawn("test/purged", spec.clone());
    let mut tgt = pair.target().await;
    wait_streaming(&mut tgt, &mut job).await;
    exec(&mut src, "INSERT INTO shop.orders VALUES (5000, 'x')").await;
    wait_equal(&pair, "shop.orders", "shop.orders", Duration::from_secs(30)).await;
    let _ = stop.send(true);
    assert!(matches!(job.await.unwrap(), Ok(Outcome::Stopped)));
    // While the job is stopped: changes, then the logs holding them are purged.
    exec(&mut src, "INSERT INTO shop.orders VALUES (5001, 'lost'); FLUSH BINARY LOGS; FLUSH BINARY LOGS").await;
    let logs: Vec<String> =
        src.query_map("SHOW BINARY LOGS", |row: mysql_async::Row| row.get::<String, usize>(0).unwrap()).await.unwrap();
    let last = logs.last().unwrap().clone();
    // A dump thread still reading a file keeps it from being purged: end any left over.
    let dumps: Vec<u64> =
        src.query("SELECT ID FROM information_schema.PROCESSLIST WHERE COMMAND = 'Binlog Dump'").await.unwrap();
    for id in dumps {
        let _ = src.query_drop(format!("KILL {id}")).await;
    }
    // The server keeps a log until its binlog checkpoint (crash recovery) has passed it.
    let deadline = std::time::Instant::now() + Duration::from_secs(30);
    loop {
        exec(&mut src, &format!("PURGE BINARY LOGS TO '{last}'")).await;
        let first: String = src.query_first("SHOW BINARY LOGS").await.unwrap().map(|(f, _): (String, u64)| f).unwrap();
        if first == last {
            break;
        }
        assert!(std::time::Instant::now() < deadline, "the older logs are never purged ({first} remains)");
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
    let started = std::time::Instant::now();
    let err = tokio::time::timeout(Duration::from_secs(60), pair.run("test/purged", spec))
        .await
        .expect("the job fails instead of streaming")
        .unwrap_err();
    assert_eq!(err.code(), "BINLOG_PURGED", "{err}");
    let message = err.to_string();
    assert!(
        message.contains(&format!("{last} is the oldest it has")) && message.contains("new full transfer"),
        "{message}"
    );
    assert!(started.elapsed() < Duration::from_secs(20), "fails at once");
}

/// Changes `shop.accounts` on the source until `running` is cleared: inserts, updates of every
/// column, deletes. Returns how many transactions it wrote.
fn account_writer(pair: &MyPair, running: Arc<AtomicBool>) -> tokio::task::JoinHandle<u64> {
    let opts = pair.source.opts(Some("shop"));
    tokio::spawn(async move {
        let mut conn = mysql_async::Conn::new(opts).await.unwrap();
        let mut n: u64 = 0;
        while running.load(Ordering::SeqCst) {
            conn.query_drop(format!(
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
        n
    })
}

/// While a job streams changes of `shop.accounts` under concurrent writes, `change` is made to
/// the target table by hand (after saving what it loses in database `keep`): the job stops with
/// `code` and a message saying what `words` say, instead of writing on (or being retried).
/// `undo` puts the table back as it was; the job then resumes from its checkpoint and the target
/// converges to the source, so no change was skipped or committed cut.
async fn a_hand_made_change_stops_the_job(id: &'static str, change: &str, undo: &str, code: &str, words: &[&str]) {
    let pair = MyPair::start();
    exec(
        &mut pair.source().await,
        "CREATE DATABASE shop; CREATE TABLE shop.accounts (id bigint PRIMARY KEY, balance decimal(14,2) NOT NULL, note text);
         INSERT INTO shop.accounts SELECT seq, seq / 3.0, concat('row ', seq) FROM shop.seq_1_to_2000;",
    )
    .await;
    let spec = pair.spec(TaskType::FullIncrTrans, &["accounts"]);
    let (_stop, mut job) = pair.spawn(id, spec.clone());
    let mut tgt = pair.target().await;
    wait_streaming(&mut tgt, &mut job).await;
    let running = Arc::new(AtomicBool::new(true));
    let writes = account_writer(&pair, Arc::clone(&running));
    my_support::wait_for(
        &mut tgt,
        "SELECT EXISTS (SELECT 1 FROM shop.accounts WHERE id >= 100000)",
        Duration::from_secs(30),
    )
    .await;
    exec(&mut tgt, change).await;
    let err = tokio::time::timeout(Duration::from_secs(60), job).await.expect("the job stops").unwrap().unwrap_err();
    assert_eq!(err.code(), code, "{err}");
    assert!(ferry::engine::error::is_unrecoverable(err.code()), "not retried");
    let message = err.to_string();
    eprintln!("{code}: {message}");
    for w in words {
        assert!(message.contains(w), "{w:?} not in {message}");
    }
    running.store(false, Ordering::SeqCst);
    assert!(writes.await.unwrap() > 0);

    exec(&mut tgt, undo).await;
    let (stop, job) = pair.spawn(id, spec);
    wait_equal(&pair, "shop.accounts", "shop.accounts", Duration::from_secs(60)).await;
    stop.send(true).unwrap();
    assert_eq!(job.await.unwrap().unwrap(), Outcome::Stopped);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_target_table_dropped_while_streaming_stops_the_job_naming_it_and_skips_nothing() {
    a_hand_made_change_stops_the_job(
        "test/table-dropped",
        "CREATE DATABASE keep; CREATE TABLE keep.accounts LIKE shop.accounts;
         LOCK TABLES shop.accounts WRITE, keep.accounts WRITE;
         INSERT INTO keep.accounts SELECT * FROM shop.accounts; DROP TABLE shop.accounts; UNLOCK TABLES;",
        "RENAME TABLE keep.accounts TO shop.accounts",
        "TARGET_TABLE_MISSING",
        &["target table shop.accounts is missing", "new full transfer", "error 1146"],
    )
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_target_column_dropped_while_streaming_stops_the_job_naming_it_and_skips_nothing() {
    a_hand_made_change_stops_the_job(
        "test/column-dropped",
        "CREATE DATABASE keep; CREATE TABLE keep.notes (id bigint PRIMARY KEY, note text);
         LOCK TABLES shop.accounts WRITE, keep.notes WRITE;
         INSERT INTO keep.notes SELECT id, note FROM shop.accounts; ALTER TABLE shop.accounts DROP COLUMN note;
         UNLOCK TABLES;",
        "ALTER TABLE shop.accounts ADD COLUMN note text;
         UPDATE shop.accounts a JOIN keep.notes k ON k.id = a.id SET a.note = k.note;",
        "TARGET_TABLE_CHANGED",
        &["target table shop.accounts has no column note", "error 1054"],
    )
    .await;
}

/// The writing sessions are not strict: a column narrowed by hand would take cut values with a
/// warning only. The applier reads the warning and stops before the batch commits.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_value_the_target_does_not_store_as_sent_stops_the_job_naming_the_column() {
    let pair = MyPair::start();
    let mut src = pair.source().await;
    exec(&mut src, "CREATE DATABASE shop; CREATE TABLE shop.notes (id int PRIMARY KEY, note varchar(20))").await;
    // The target's table was made by hand, narrower than the source's, before the job started:
    // it is as the job found it, and the writing session (not strict) would cut the value.
    let mut tgt = pair.target().await;
    exec(&mut tgt, "CREATE DATABASE shop; CREATE TABLE shop.notes (id int PRIMARY KEY, note varchar(3))").await;
    let at: String = src.query_first("SELECT @@gtid_binlog_pos").await.unwrap().unwrap();
    let mut spec = pair.spec(TaskType::IncrTrans, &["notes"]);
    spec.start_position = Some(at);
    let (_stop, job) = pair.spawn("t/not-stored", spec.clone());
    exec(&mut src, "INSERT INTO shop.notes VALUES (1, 'abc'), (2, 'a secret too long')").await;
    let err = tokio::time::timeout(Duration::from_secs(60), job).await.expect("the job stops").unwrap().unwrap_err();
    assert_eq!(err.code(), "VALUE_NOT_STORED", "{err}");
    assert!(ferry::engine::error::is_unrecoverable(err.code()), "not retried");
    let message = err.to_string();
    assert!(message.contains("in column note of `shop`.`notes`") && message.contains("warning 1265"), "{message}");
    assert!(!message.contains("secret"), "{message}");
    let rows: Vec<i32> = tgt.query("SELECT id FROM shop.notes").await.unwrap();
    assert!(rows.is_empty(), "nothing of the transaction committed: {rows:?}");
    // Widened, the job resumes from its checkpoint and stores the value whole.
    exec(&mut tgt, "ALTER TABLE shop.notes MODIFY note varchar(20)").await;
    let (stop, job) = pair.spawn("t/not-stored", spec);
    wait_equal(&pair, "shop.notes", "shop.notes", Duration::from_secs(60)).await;
    stop.send(true).unwrap();
    assert_eq!(job.await.unwrap().unwrap(), Outcome::Stopped);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_target_column_narrowed_while_streaming_stops_the_job_before_a_value_is_cut() {
    a_hand_made_change_stops_the_job(
        "test/column-narrowed",
        "SET SESSION sql_mode = ''; CREATE DATABASE keep; CREATE TABLE keep.notes (id bigint PRIMARY KEY, note text);
         LOCK TABLES shop.accounts WRITE, keep.notes WRITE;
         INSERT INTO keep.notes SELECT id, note FROM shop.accounts; ALTER TABLE shop.accounts MODIFY note varchar(3);
         UNLOCK TABLES;",
        "ALTER TABLE shop.accounts MODIFY note text;
         UPDATE shop.accounts a JOIN keep.notes k ON k.id = a.id SET a.note = k.note;",
        "TARGET_TABLE_CHANGED",
        &["column note of target table shop.accounts is now of type varchar(3); it was text", "warning 1265"],
    )
    .await;
}
