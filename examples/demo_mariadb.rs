//! `make demo-mariadb`: the demo with MariaDB. Two throwaway MariaDB servers, sample data, a
//! FULL_INCR_TRANS SyncJob run by `ferry run` while writes go on, its phases and progress on
//! screen, and a row-by-row comparison of source and target at the end.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::Duration;

use ferry::api::{SpeedLimit, TaskType, Tuning};
use mysql_async::Conn;
use mysql_async::prelude::Queryable;

#[path = "../tests/my_support/mod.rs"]
mod support;

#[path = "demo_flow/mod.rs"]
mod demo_flow;

use demo_flow::{Error, FerryRun, say};

#[tokio::main(flavor = "multi_thread", worker_threads = 2)]
async fn main() -> Result<(), Error> {
    say("starting a throwaway source and target MariaDB");
    let pair = support::MyPair::start();
    println!("    source 127.0.0.1:{}   target 127.0.0.1:{}", pair.source.port(), pair.target.port());

    say("loading sample data into the source: shop.customers and shop.orders");
    let mut src = pair.source().await;
    src.query_drop(
        "CREATE DATABASE shop CHARACTER SET utf8mb4; USE shop;
         CREATE TABLE customers (id int PRIMARY KEY, name varchar(100) NOT NULL, country char(2), since date);
         INSERT INTO customers SELECT seq, concat('customer ', seq), elt(1 + seq % 5, 'DE', 'FR', 'CN', 'US', 'BR'),
           '2020-01-01' + INTERVAL seq % 1500 DAY FROM seq_1_to_20000;
         CREATE TABLE orders (id bigint PRIMARY KEY, customer_id int NOT NULL, amount decimal(12,2) NOT NULL,
                              status varchar(20) NOT NULL, placed_at datetime(6) NOT NULL, items json,
                              KEY orders_customer (customer_id));
         INSERT INTO orders SELECT seq, 1 + seq % 20000, (seq % 10000) / 3.0, 'placed', now(6) - INTERVAL seq MINUTE,
                                   json_object('sku', concat('SKU-', seq % 500), 'qty', 1 + seq % 4)
           FROM seq_1_to_300000;
         ANALYZE TABLE customers, orders;",
    )
    .await?;

    let mut spec = pair.spec(TaskType::FullIncrTrans, &["customers", "orders"]);
    spec.tuning = Some(Tuning { read_parallelism: Some(2), batch_rows: Some(25_000), ..Default::default() });
    // A read cap for the whole day, so the full transfer lasts long enough to watch.
    spec.speed_limits = vec![SpeedLimit { begin: "00:00".into(), end: "23:59".into(), mb_per_second: 8 }];
    let dir = tempfile::tempdir()?;
    let manifest = dir.path().join("orders-mariadb.yaml");
    std::fs::write(&manifest, pair.manifest("orders-mariadb", &spec))?;
    let status_file = dir.path().join("status.json");

    say("writes keep coming on the source while the job runs");
    let writing = Arc::new(AtomicBool::new(true));
    let written = Arc::new(AtomicU64::new(0));
    let writer = tokio::spawn({
        let (writing, written) = (Arc::clone(&writing), Arc::clone(&written));
        let opts = pair.source.opts(Some("shop"));
        async move {
            let mut c = Conn::new(opts).await?;
            let mut n: i64 = 0;
            while writing.load(Ordering::SeqCst) {
                c.query_drop(format!(
                    "INSERT INTO orders VALUES ({id}, {cust}, 42.00, 'placed', now(6), '{{\"sku\": \"NEW\"}}');
                     UPDATE orders SET status = 'shipped' WHERE id = {ship};
                     DELETE FROM orders WHERE id = {gone};",
                    id = 1_000_000 + n,
                    cust = 1 + n % 20000,
                    ship = 1 + (n * 31) % 300_000,
                    gone = 2 + (n * 97) % 300_000
                ))
                .await?;
                n += 1;
                written.fetch_add(3, Ordering::Relaxed);
                tokio::time::sleep(Duration::from_millis(5)).await;
            }
            Ok::<_, Error>(())
        }
    });

    let mut run = FerryRun::start(&manifest, &status_file)?;
    // Until the incremental phase, then a few more seconds of writes.
    run.until_streaming().await?;
    tokio::time::sleep(Duration::from_secs(5)).await;
    writing.store(false, Ordering::SeqCst);
    writer.await??;
    println!();
    say(&format!(
        "writes stopped after {} changed rows; waiting for lag to reach zero",
        written.load(Ordering::Relaxed)
    ));
    for table in ["shop.customers", "shop.orders"] {
        support::wait_equal(&pair, table, table, Duration::from_secs(120)).await;
    }
    run.until_caught_up().await;

    say("stopping the job (SIGTERM): it stops at a checkpoint and forgets its bookkeeping");
    run.stop()?;

    println!();
    say("comparing source and target, row by row");
    demo_flow::compare(&manifest, "orders-mariadb")?;
    say("done: source and target are identical; the throwaway servers are removed");
    Ok(())
}
