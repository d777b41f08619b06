//! A large MariaDB source transaction streamed in bounded memory: the reader hands it to the
//! applier in pieces and holds a bounded number of row changes however large the transaction,
//! and a worker killed halfway through applying it leaves nothing on the target; started again,
//! it applies every row exactly once (the table has no key, so a row applied twice would show).

mod my_support;

use std::time::{Duration, Instant};

use ferry::api::{DdlPolicy, DmlType, TaskType};
use ferry::engine::Side;
use ferry::engine::apply::ChangeSource;
use ferry::engine::mysql::catalog;
use ferry::engine::mysql::stream::{BUDGET, BinlogNames, MyChanges, PIECE, StartAt, StreamOptions};
use my_support::{MyPair, exec, wait_equal, wait_for, wait_streaming};
use mysql_async::prelude::Queryable;

const ROWS: u64 = 200_000;

/// The most rows one binary-log rows event carries for these tables, with room to spare: a
/// piece may exceed [`PIECE`] by one event's rows.
const EVENT_ROWS: usize = 1_000;

const EVENTS: &str = "CREATE DATABASE shop; CREATE TABLE shop.events (id bigint, kind varchar(20), payload text)";

/// One transaction inserting `ROWS` rows of about 250 bytes into `shop.events`.
fn large_insert(from: u64) -> String {
    format!(
        "INSERT INTO shop.events SELECT seq, concat('kind', seq % 7), repeat(md5(seq), 7) FROM shop.seq_{}_to_{}",
        from,
        from + ROWS - 1
    )
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_large_transaction_reaches_the_applier_in_pieces_with_the_reader_holding_a_bounded_number_of_changes() {
    let pair = MyPair::start();
    let mut src = pair.source().await;
    exec(&mut src, EVENTS).await;
    let (file, position): (String, u64) = {
        let row: mysql_async::Row = src.query_first("SHOW MASTER STATUS").await.unwrap().unwrap();
        (row.get(0).unwrap(), row.get(1).unwrap())
    };
    exec(&mut src, &large_insert(1)).await;
    exec(&mut src, "INSERT INTO shop.events VALUES (0, 'after', 'small')").await;

    let table = catalog::describe(&mut src, "shop", "events", "shop".into(), "events".into(), None).await.unwrap();
    let spec = pair.spec(TaskType::IncrTrans, &["events"]);
    let opts = StreamOptions {
        start: StartAt::File(file.clone(), position),
        until_end_of_log: true,
        server_id: 0xF000_0001,
        tables: vec![table],
        selection: spec.objects.clone(),
        ddl: DdlPolicy::default(),
        dml: vec![DmlType::Insert, DmlType::Update, DmlType::Delete],
        names: BinlogNames::of(&file).unwrap(),
    };
    let credentials = pair.credentials();
    let mut changes = MyChanges::open(&spec.source, credentials.login(Side::Source), opts).await.unwrap();
    let held = changes.held();
    let bound = BUDGET + PIECE + EVENT_ROWS;

    // Nothing taken yet: the reader fills its budget and waits.
    let deadline = Instant::now() + Duration::from_secs(60);
    while held.now() < BUDGET {
        assert!(Instant::now() < deadline, "the reader did not fill its budget ({} changes)", held.now());
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert!(held.peak() <= bound, "the reader held {} changes at once", held.peak());

    let (mut rows, mut pieces) = (0usize, 0usize);
    let mut last = None;
    while let Some(item) = changes.next_within(Duration::from_secs(30)).await.expect("the stream stalled") {
        let t = item.unwrap();
        assert!(t.changes.len() <= PIECE + EVENT_ROWS, "a piece of {} changes", t.changes.len());
        if t.partial {
            pieces += 1;
        }
        rows += t.changes.len();
        if !t.changes.is_empty() {
            last = Some(t);
        }
    }
    changes.close().await;
    assert_eq!(rows as u64, ROWS + 1, "every change is handed out once");
    assert!(pieces >= ROWS as usize / (PIECE + EVENT_ROWS), "the transaction came in {pieces} pieces");
    let last = last.unwrap();
    assert!(!last.partial && last.changes.len() == 1, "the small transaction after it comes whole");
    assert!(held.peak() <= bound, "the reader held {} changes at once (bound {bound})", held.peak());
    assert_eq!(held.now(), 0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_worker_killed_in_the_middle_of_a_large_transaction_applies_it_exactly_once_when_started_again() {
    let pair = MyPair::start();
    let mut src = pair.source().await;
    exec(&mut src, EVENTS).await;
    exec(&mut src, "INSERT INTO shop.events VALUES (0, 'before', 'small')").await;
    let spec = pair.spec(TaskType::FullIncrTrans, &["events"]);
    let (_stop, mut job) = pair.spawn("t/large", spec.clone());
    let mut tgt = pair.target().await;
    wait_streaming(&mut tgt, &mut job).await;
    exec(&mut src, &large_insert(1)).await;

    // Pieces of it applied in the open target transaction, not committed.
    wait_for(
        &mut tgt,
        &format!("SELECT count(*) > 0 FROM information_schema.INNODB_TRX WHERE trx_rows_modified >= {PIECE}"),
        Duration::from_secs(120),
    )
    .await;
    job.abort();
    let _ = job.await;
    let seen: u64 = tgt.query_first("SELECT count(*) FROM shop.events").await.unwrap().unwrap();
    assert_eq!(seen, 1, "no piece of the transaction is visible before its commit");

    let (_stop, job) = pair.spawn("t/large", spec);
    let deadline = Instant::now() + Duration::from_secs(300);
    loop {
        let n: u64 = tgt.query_first("SELECT count(*) FROM shop.events").await.unwrap().unwrap();
        assert!(n <= ROWS + 1, "rows applied twice: {n}");
        if n == ROWS + 1 {
            break;
        }
        if job.is_finished() {
            panic!("the job ended: {:?}", job.await);
        }
        assert!(Instant::now() < deadline, "the transaction was not applied ({n} rows)");
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    exec(&mut src, "INSERT INTO shop.events VALUES (-1, 'after', 'small')").await;
    wait_equal(&pair, "shop.events", "shop.events", Duration::from_secs(60)).await;
    job.abort();
}
