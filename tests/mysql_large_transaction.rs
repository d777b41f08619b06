//! A large MariaDB source transaction streamed in bounded memory: the reader hands it to the
//! applier in pieces and holds a bounded number of row changes however large the transaction,
//! and a worker killed halfway through applying it leaves nothing on the target; started again,
//! it applies every row exactly once (the table has no key, so a row applied twice would show).
//! A target that stalls with the first pieces applied holds the reader at its budget for as long
//! as it stalls, and the stream goes on where it stopped.
//!
//! The tests see the open target transaction through a session reading uncommitted rows.
//! `information_schema.INNODB_TRX` would not do: MariaDB refills that table only after 0.1 s
//! without a read of it, so a session polling it faster sees one snapshot for ever.

mod my_support;

use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use ferry::api::{Checkpoint, DdlPolicy, DmlType, Progress, SyncJobSpec, TaskType};
use ferry::engine::apply::ChangeSource;
use ferry::engine::mysql::catalog;
use ferry::engine::mysql::stream::{BinlogNames, MyChanges, StartAt, StreamOptions};
use ferry::engine::queue::{BUDGET, PIECE};
use ferry::engine::{self, EngineError, Job, ProgressSink, Side, Tracker};
use my_support::{MyPair, exec, wait_equal, wait_streaming};
use mysql_async::Conn;
use mysql_async::prelude::Queryable;
use tokio::sync::watch;

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

/// A target session that reads uncommitted rows: what an open target transaction holds.
async fn dirty_reader(pair: &MyPair) -> Conn {
    let mut conn = pair.target().await;
    exec(&mut conn, "SET SESSION TRANSACTION ISOLATION LEVEL READ UNCOMMITTED").await;
    conn
}

/// Rows of `shop.events` on the target as `conn` sees them.
async fn count(conn: &mut Conn) -> u64 {
    conn.query_first("SELECT count(*) FROM shop.events").await.unwrap().unwrap()
}

/// Waits until an open target transaction holds more than `rows` rows of `shop.events` beyond
/// the `committed` ones.
async fn wait_uncommitted(
    dirty: &mut Conn,
    committed: u64,
    rows: u64,
    job: &tokio::task::JoinHandle<Result<engine::Outcome, EngineError>>,
) {
    let deadline = Instant::now() + Duration::from_secs(120);
    loop {
        let n = count(dirty).await;
        assert!(n < committed + ROWS, "the transaction was committed before the test saw it open");
        if n >= committed + rows {
            return;
        }
        assert!(!job.is_finished(), "the job ended");
        assert!(Instant::now() < deadline, "no piece applied ({n} rows)");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

/// Waits until the target holds `rows` committed rows of `shop.events`, never more.
async fn wait_committed(
    tgt: &mut Conn,
    rows: u64,
    job: &mut tokio::task::JoinHandle<Result<engine::Outcome, EngineError>>,
) {
    let deadline = Instant::now() + Duration::from_secs(300);
    loop {
        let n = count(tgt).await;
        assert!(n <= rows, "rows applied twice: {n}");
        if n == rows {
            return;
        }
        if job.is_finished() {
            panic!("the job ended: {:?}", job.await);
        }
        assert!(Instant::now() < deadline, "the transaction was not applied ({n} rows)");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

/// Keeps the errors a job started again from its checkpoint after.
#[derive(Default)]
struct Restarts(Mutex<Vec<String>>);

impl ProgressSink for Restarts {
    fn report(&self, _: &Progress, _: Option<&Checkpoint>) {}

    fn reconnecting(&self, _reconnects: u32, code: &str, message: &str) {
        self.0.lock().unwrap().push(format!("{code}: {message}"));
    }
}

/// Runs a job in the background reporting to `sink`.
fn spawn_reporting(
    pair: &MyPair,
    id: &str,
    spec: SyncJobSpec,
    sink: Arc<dyn ProgressSink>,
) -> (watch::Sender<bool>, tokio::task::JoinHandle<Result<engine::Outcome, EngineError>>) {
    let (stop_tx, stop) = watch::channel(false);
    let credentials = pair.credentials();
    let id = id.to_owned();
    let handle = tokio::spawn(async move {
        let tracker = Tracker::new(sink);
        engine::run(Job { id: &id, spec: &spec, credentials: &credentials, tracker, stop }).await
    });
    (stop_tx, handle)
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

    // Pieces of it applied in the open target transaction; a global read lock keeps the job
    // from committing it before it is killed.
    let mut dirty = dirty_reader(&pair).await;
    wait_uncommitted(&mut dirty, 1, PIECE as u64, &job).await;
    let mut lock = pair.target().await;
    exec(&mut lock, "FLUSH TABLES WITH READ LOCK").await;
    job.abort();
    let _ = job.await;
    exec(&mut lock, "UNLOCK TABLES").await;
    assert_eq!(count(&mut tgt).await, 1, "no piece of the transaction is visible before its commit");

    let (_stop, mut job) = pair.spawn("t/large", spec);
    wait_committed(&mut tgt, ROWS + 1, &mut job).await;
    exec(&mut src, "INSERT INTO shop.events VALUES (-1, 'after', 'small')").await;
    wait_equal(&pair, "shop.events", "shop.events", Duration::from_secs(60)).await;
    job.abort();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_target_stalling_in_the_middle_of_a_large_transaction_holds_the_reader_at_its_budget_and_the_stream_goes_on()
{
    let pair = MyPair::start();
    let mut src = pair.source().await;
    exec(&mut src, EVENTS).await;
    exec(&mut src, "INSERT INTO shop.events VALUES (0, 'before', 'small')").await;
    // The source cuts a replica connection it cannot write to for this long (60 s by default):
    // the reader stops reading while its budget is full.
    exec(&mut src, "SET GLOBAL net_write_timeout = 2").await;
    let spec = pair.spec(TaskType::FullIncrTrans, &["events"]);
    let restarts = Arc::new(Restarts::default());
    let (_stop, mut job) = spawn_reporting(&pair, "t/stall", spec, restarts.clone());
    let mut tgt = pair.target().await;
    wait_streaming(&mut tgt, &mut job).await;
    exec(&mut src, &large_insert(1)).await;

    // The applier's next statement waits for the lock with the first pieces applied in its open
    // transaction; meanwhile the reader fills the budget and waits, many times the source's
    // write timeout.
    let mut dirty = dirty_reader(&pair).await;
    wait_uncommitted(&mut dirty, 1, PIECE as u64, &job).await;
    let mut lock = pair.target().await;
    exec(&mut lock, "FLUSH TABLES WITH READ LOCK").await;
    tokio::time::sleep(Duration::from_secs(10)).await;
    assert_eq!(count(&mut tgt).await, 1, "nothing of the transaction is committed while the target stalls");
    exec(&mut lock, "UNLOCK TABLES").await;

    wait_committed(&mut tgt, ROWS + 1, &mut job).await;
    exec(&mut src, "INSERT INTO shop.events VALUES (-1, 'after', 'small')").await;
    wait_equal(&pair, "shop.events", "shop.events", Duration::from_secs(60)).await;
    let restarts = restarts.0.lock().unwrap().clone();
    assert!(restarts.is_empty(), "the job started again: {restarts:?}");
    job.abort();
}
