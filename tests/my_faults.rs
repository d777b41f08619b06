//! Faults beyond a killed worker, MariaDB → MariaDB: the network to the source or the
//! target hangs (a proxy stops forwarding without closing anything) or is cut (every
//! connection reset), and the servers restart (fast and immediate shutdown), during the full
//! transfer and during the stream, while the source takes writes. The job notices on its own
//! (keepalive, watchdogs with `tuning.networkTimeoutSeconds: 5`), starts again from its
//! checkpoint, and the target ends equal to the source, row for row, the keyless table without
//! a row doubled.

mod my_support;

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::{Duration, Instant};

use ferry::api::{SpeedLimit, SyncJobSpec, TaskType, Tuning};
use ferry::engine::progress::NoProgress;
use ferry::engine::{self, Job, Tracker};
use ferry::testkit::{FaultProxy, Shutdown};
use my_support::{MyPair as Pair, exec, rows, try_wait_equal};
use mysql_async::Conn;
use mysql_async::prelude::Queryable;

/// The job's `tuning.networkTimeoutSeconds` in these tests.
const TIMEOUT_S: u32 = 5;

#[derive(Clone, Copy, Debug)]
enum Fault {
    /// The network to a side stops passing anything for twice the timeout.
    Hang(Side),
    /// Every connection to a side is reset.
    Cut(Side),
    /// A side's server shuts down and starts again.
    Restart(Side, Shutdown),
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Side {
    Source,
    Target,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Phase {
    /// Some chunks are copied, some are not.
    Full,
    /// The full transfer is done and changes stream.
    Stream,
}

/// Writes to the source without pause until stopped, over a connection of its own that it
/// opens again when the server restarts: inserts, updates, deletes, key moves, keyless inserts.
fn writer(pair: &Pair, running: Arc<AtomicBool>) -> tokio::task::JoinHandle<u64> {
    let opts = pair.source.opts(Some("shop"));
    tokio::spawn(async move {
        let done = AtomicU64::new(0);
        let mut i: i64 = 0;
        while running.load(Ordering::SeqCst) {
            let Ok(mut conn) = Conn::new(opts.clone()).await else {
                tokio::time::sleep(Duration::from_millis(100)).await;
                continue;
            };
            while running.load(Ordering::SeqCst) {
                let sql = format!(
                    "BEGIN;
                     INSERT INTO accounts VALUES ({new}, {i}, 'new');
                     UPDATE accounts SET balance = balance + 1, note = 'upd {i}' WHERE id = {upd};
                     DELETE FROM accounts WHERE id = {del};
                     UPDATE accounts SET id = {moved_to} WHERE id = {moved};
                     INSERT INTO events VALUES ({i}, 'e{i}');
                     COMMIT;",
                    new = 1_000_000 + i,
                    upd = 1 + (i * 7) % 30_000,
                    del = 2 + (i * 13) % 30_000,
                    moved = 3 + (i * 17) % 30_000,
                    moved_to = 2_000_000 + i,
                );
                i += 1;
                if conn.query_drop(sql).await.is_err() {
                    break;
                }
                done.fetch_add(1, Ordering::Relaxed);
                tokio::time::sleep(Duration::from_millis(10)).await;
            }
        }
        done.load(Ordering::Relaxed)
    })
}

async fn setup(pair: &Pair) {
    exec(
        &mut pair.source().await,
        "CREATE DATABASE shop; USE shop;
         CREATE TABLE accounts (id bigint PRIMARY KEY, balance decimal(14,2) NOT NULL, note text);
         INSERT INTO accounts SELECT seq, seq / 3.0, concat('row ', seq) FROM seq_1_to_30000;
         CREATE TABLE events (n bigint, label text);
         INSERT INTO events SELECT -seq, 'old' FROM seq_1_to_2000;",
    )
    .await;
}

fn spec(pair: &Pair, source: &FaultProxy, target: &FaultProxy, phase: Phase) -> SyncJobSpec {
    let mut spec = pair.spec(TaskType::FullIncrTrans, &["accounts", "events"]);
    spec.source.port = source.port();
    spec.target.port = target.port();
    spec.tuning = Some(Tuning {
        batch_rows: Some(3000),
        read_parallelism: Some(2),
        apply_batch_transactions: Some(20),
        network_timeout_seconds: Some(TIMEOUT_S),
        ..Default::default()
    });
    if phase == Phase::Full {
        // Slow the full transfer down so the fault lands inside it.
        spec.speed_limits = vec![SpeedLimit { begin: "00:00".into(), end: "23:59".into(), mb_per_second: 1 }];
    }
    spec
}

/// Waits until `sql` (on the target server, not through the proxy) returns true.
async fn until(tgt: &mut Conn, sql: &str, job: &tokio::task::JoinHandle<Result<engine::Outcome, engine::EngineError>>) {
    let deadline = Instant::now() + Duration::from_secs(90);
    loop {
        assert!(!job.is_finished(), "the job ended while waiting for {sql}");
        if let Ok(Some(Some(true))) = tgt.query_first::<Option<bool>, _>(sql).await {
            return;
        }
        assert!(Instant::now() < deadline, "timed out waiting for {sql}");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

async fn inject(fault: Fault, pair: &Arc<Pair>, source: &FaultProxy, target: &FaultProxy) {
    let proxy = |side| if side == Side::Source { source } else { target };
    match fault {
        Fault::Hang(side) => {
            proxy(side).pause();
            tokio::time::sleep(Duration::from_secs(u64::from(TIMEOUT_S) * 2)).await;
            proxy(side).restore();
        }
        Fault::Cut(side) => proxy(side).cut(),
        Fault::Restart(side, how) => {
            let pair = Arc::clone(pair);
            tokio::task::spawn_blocking(move || {
                let server = if side == Side::Source { &pair.source } else { &pair.target };
                server.restart(how).unwrap();
            })
            .await
            .unwrap();
        }
    }
}

/// Runs the job through `fault` at `phase` and checks it started again on its own and
/// converged.
async fn survives(fault: Fault, phase: Phase) {
    let pair = Arc::new(Pair::start());
    setup(&pair).await;
    let source = FaultProxy::start(pair.source.port()).unwrap();
    let target = FaultProxy::start(pair.target.port()).unwrap();
    let spec = spec(&pair, &source, &target, phase);
    let running = Arc::new(AtomicBool::new(true));
    let writes = writer(&pair, Arc::clone(&running));

    let tracker = Tracker::new(Arc::new(NoProgress));
    let (stop_tx, stop) = tokio::sync::watch::channel(false);
    let credentials = pair.credentials();
    let job_tracker = tracker.clone();
    let job = tokio::spawn(async move {
        engine::run(Job { id: "test/my-faults", spec: &spec, credentials: &credentials, tracker: job_tracker, stop })
            .await
    });
    let t0 = Instant::now();
    let mut tgt = pair.target().await;
    match phase {
        Phase::Full => until(&mut tgt, "SELECT sum(done) >= 2 AND sum(NOT done) > 0 FROM _ferry.chunks", &job).await,
        Phase::Stream => {
            until(&mut tgt, "SELECT full_done AND checkpoint_pos IS NOT NULL FROM _ferry.jobs", &job).await;
            tokio::time::sleep(Duration::from_millis(500)).await;
        }
    }
    drop(tgt);
    eprintln!("{:?} injecting {fault:?} during {phase:?}", t0.elapsed());
    inject(fault, &pair, &source, &target).await;

    // A hang is only noticed by the watchdogs, which start the job again. A reset or a restart
    // may also be ridden out by the stream client's own reconnect.
    if matches!(fault, Fault::Hang(_)) {
        let deadline = Instant::now() + Duration::from_secs(60);
        while tracker.snapshot().0.reconnects == 0 {
            assert!(!job.is_finished(), "the job ended instead of starting again: {:?}", job.await.unwrap());
            assert!(Instant::now() < deadline, "the job did not notice {fault:?}");
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        eprintln!("{:?} started again from the checkpoint", t0.elapsed());
    }
    let mut tgt = pair.target().await;
    until(&mut tgt, "SELECT full_done AND checkpoint_pos IS NOT NULL FROM _ferry.jobs", &job).await;
    tokio::time::sleep(Duration::from_secs(1)).await;
    running.store(false, Ordering::SeqCst);
    assert!(writes.await.unwrap() > 0);
    for table in ["shop.accounts", "shop.events"] {
        if let Err(e) = try_wait_equal(&pair, table, table, Duration::from_secs(90)).await {
            panic!("after {fault:?} during {phase:?}: {e}");
        }
    }
    let mut src = pair.source().await;
    assert_eq!(
        rows(&mut src, "shop.events").await,
        rows(&mut tgt, "shop.events").await,
        "no doubled rows in the keyless table"
    );
    eprintln!("{:?} equal after {} reconnects", t0.elapsed(), tracker.snapshot().0.reconnects);
    let _ = stop_tx.send(true);
    let outcome = job.await.unwrap();
    assert!(matches!(outcome, Ok(engine::Outcome::Stopped)), "{outcome:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_source_network_hangs_while_streaming() {
    survives(Fault::Hang(Side::Source), Phase::Stream).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_target_network_hangs_during_the_full_transfer() {
    survives(Fault::Hang(Side::Target), Phase::Full).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_source_connections_are_reset_during_the_full_transfer() {
    survives(Fault::Cut(Side::Source), Phase::Full).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_target_connections_are_reset_while_streaming() {
    survives(Fault::Cut(Side::Target), Phase::Stream).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_source_restarts_immediately_while_streaming() {
    survives(Fault::Restart(Side::Source, Shutdown::Immediate), Phase::Stream).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_source_restarts_fast_during_the_full_transfer() {
    survives(Fault::Restart(Side::Source, Shutdown::Fast), Phase::Full).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_target_restarts_fast_while_streaming() {
    survives(Fault::Restart(Side::Target, Shutdown::Fast), Phase::Stream).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_target_restarts_immediately_during_the_full_transfer() {
    survives(Fault::Restart(Side::Target, Shutdown::Immediate), Phase::Full).await;
}
