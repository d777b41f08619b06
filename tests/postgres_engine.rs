//! The PostgreSQL → PostgreSQL engine against real servers: full transfer, change stream,
//! types, mapping, filters, and what is left on the source afterwards.

mod support;

use std::sync::Arc;
use std::time::Duration;

use ferry::api::TaskType;
use ferry::engine::{self, Job, Outcome, Tracker, progress::NoProgress};
use support::{Pair, rows, wait_equal};
use tokio::sync::watch;

fn tracker() -> Tracker {
    Tracker::new(Arc::new(NoProgress))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_full_trans_job_copies_every_row_and_leaves_no_slot_behind() {
    let pair = Pair::start();
    let src = pair.source().await;
    src.batch_execute(
        "CREATE TABLE orders (id bigint PRIMARY KEY, customer text NOT NULL, amount numeric(12,2), placed timestamptz);
         CREATE INDEX orders_customer ON orders (customer);
         INSERT INTO orders SELECT g, 'c' || (g % 97), g * 1.25, '2026-01-01'::timestamptz + g * interval '1 minute'
           FROM generate_series(1, 25000) g;
         ANALYZE orders;",
    )
    .await
    .unwrap();
    let mut spec = pair.spec(TaskType::FullTrans, &["orders"]);
    spec.tuning = Some(ferry::api::Tuning { batch_rows: Some(4000), read_parallelism: Some(3), ..Default::default() });
    let (_stop_tx, stop) = watch::channel(false);
    let creds = pair.credentials();
    let out =
        engine::run(Job { id: "test/full", spec: &spec, credentials: &creds, tracker: tracker(), stop }).await.unwrap();
    assert_eq!(out, Outcome::Completed);
    let tgt = pair.target().await;
    assert_eq!(rows(&src, "orders").await, rows(&tgt, "orders").await);
    let chunks: i64 = tgt.query_one("SELECT count(*) FROM _ferry.chunks", &[]).await.unwrap().get(0);
    assert!(chunks >= 6, "the table was split into chunks ({chunks})");
    let idx: i64 =
        tgt.query_one("SELECT count(*) FROM pg_indexes WHERE indexname = 'orders_customer'", &[]).await.unwrap().get(0);
    assert_eq!(idx, 1, "secondary index created after the load");
    assert!(support::slots(&src).await.is_empty(), "no replication slot left");
    assert!(support::publications(&src).await.is_empty(), "no publication left");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_full_incr_job_follows_inserts_updates_deletes_and_truncate() {
    let pair = Pair::start();
    let src = pair.source().await;
    src.batch_execute(
        "CREATE TABLE items (id int PRIMARY KEY, name text, qty int, note text);
         INSERT INTO items SELECT g, 'item ' || g, g, NULL FROM generate_series(1, 2000) g;
         CREATE TABLE logs (id bigserial PRIMARY KEY, line text);
         INSERT INTO logs (line) SELECT 'boot ' || g FROM generate_series(1, 100) g;",
    )
    .await
    .unwrap();
    let spec = pair.spec(TaskType::FullIncrTrans, &["items", "logs"]);
    let (stop_tx, stop) = watch::channel(false);
    let creds = pair.credentials();
    let runner = tokio::spawn({
        let spec = spec.clone();
        async move { engine::run(Job { id: "test/incr", spec: &spec, credentials: &creds, tracker: tracker(), stop }).await }
    });
    // Changes while the job runs: some land during the full transfer, some in the stream.
    for i in 0..20 {
        src.batch_execute(&format!(
            "INSERT INTO items VALUES ({id}, 'new {i}', {i}, repeat('x', 10000));
             UPDATE items SET qty = qty + 1000, name = NULL WHERE id % 50 = {i};
             DELETE FROM items WHERE id = {del};
             UPDATE items SET id = id + 100000 WHERE id = {moved};
             INSERT INTO logs (line) VALUES ('tick {i}');",
            id = 5000 + i,
            del = 1000 + i,
            moved = 1500 + i
        ))
        .await
        .unwrap();
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    // An update that leaves the TOASTed note unchanged must keep it on the target.
    src.batch_execute("UPDATE items SET qty = -1 WHERE id >= 5000").await.unwrap();
    src.batch_execute("TRUNCATE logs; INSERT INTO logs (line) VALUES ('after truncate')").await.unwrap();
    wait_equal(&pair, "items", "items", Duration::from_secs(60)).await;
    wait_equal(&pair, "logs", "logs", Duration::from_secs(30)).await;
    stop_tx.send(true).unwrap();
    let out = runner.await.unwrap().unwrap();
    assert_eq!(out, Outcome::Stopped);
    let tgt = pair.target().await;
    let note: i64 = tgt.query_one("SELECT count(*) FROM items WHERE length(note) = 10000", &[]).await.unwrap().get(0);
    assert_eq!(note, 20, "unchanged TOASTed values kept");
    assert_eq!(support::slots(&src).await.len(), 1, "the slot stays while the job lives");
    engine::release("test/incr", &spec, &pair.credentials()).await.unwrap();
    assert!(support::slots(&src).await.is_empty(), "released");
    assert!(support::publications(&src).await.is_empty(), "released");
}
