//! Content comparison throughput, side by side with what a user would run by hand on the same
//! data in one run: an md5-per-chunk SQL aggregate on PostgreSQL and `CHECKSUM TABLE` on
//! MariaDB. The peers only say whether a table (or chunk) differs; Ferry also lists the rows.
//! Not a test: figures are printed, nothing is asserted on time.
//!
//! `cargo run --release --example bench_compare -- [ROWS]` (default 1,000,000).

use std::time::Instant;

use ferry::api::{CompareResult, TaskType};
use ferry::compare::{self, Options};
use mysql_async::prelude::Queryable;

#[path = "../tests/support/mod.rs"]
mod support;

#[path = "../tests/my_support/mod.rs"]
mod my_support;

type Error = Box<dyn std::error::Error + Send + Sync>;

const OPTS: Options = Options::content(100);

fn line(what: &str, secs: f64, rows: u64) {
    println!("{what:<58} {secs:>7.2} s  {:>10.0} rows/s per side", rows as f64 / secs);
}

async fn postgres(rows: u64) -> Result<(), Error> {
    let pair = support::Pair::start();
    let load = format!(
        "CREATE TABLE bench (id bigint PRIMARY KEY, customer_id int NOT NULL, sku text NOT NULL, price numeric(12,2),
                             placed_at timestamptz NOT NULL, note text);
         INSERT INTO bench SELECT g, g % 5000, 'SKU-' || g % 997, (g % 100000) / 7.0,
                                  '2024-01-01'::timestamptz + g * interval '1 second', CASE WHEN g % 3 = 0 THEN 'n' || g END
           FROM generate_series(1, {rows}) g;
         ANALYZE bench;"
    );
    let (src, tgt) = (pair.source().await, pair.target().await);
    src.batch_execute(&load).await?;
    tgt.batch_execute(&load).await?;
    let spec = pair.spec(TaskType::FullTrans, &["bench"]);
    let creds = pair.credentials();

    println!("PostgreSQL 15, {rows} rows of 6 columns on each side");
    let t = Instant::now();
    let report = compare::run(&spec.source, &spec.target, &spec.objects, &creds, OPTS).await?;
    line("ferry content compare (server-side chunk hashes)", t.elapsed().as_secs_f64(), rows);
    assert_eq!(report.result(), CompareResult::Consistent);

    // The hand-written peer: md5 of each 10,000-row chunk's rows, both sides, compared.
    let t = Instant::now();
    let sql =
        "SELECT id / 10000 AS chunk, md5(string_agg(md5(b::text), '' ORDER BY id)) FROM bench b GROUP BY 1 ORDER BY 1";
    let (a, b) = tokio::join!(src.query(sql, &[]), tgt.query(sql, &[]));
    let same = a?.iter().map(|r| r.get::<_, String>(1)).eq(b?.iter().map(|r| r.get::<_, String>(1)));
    line("md5-per-chunk aggregate on both sides (no row detail)", t.elapsed().as_secs_f64(), rows);
    assert!(same);

    tgt.batch_execute("UPDATE bench SET price = price + 1 WHERE id IN (17, 500000 % (SELECT max(id) FROM bench) + 1)")
        .await?;
    let t = Instant::now();
    let report = compare::run(&spec.source, &spec.target, &spec.objects, &creds, OPTS).await?;
    line("ferry content compare, 2 rows differ (listed)", t.elapsed().as_secs_f64(), rows);
    println!(
        "  found: {:?}",
        report.differences.iter().map(|d| d.source_key_value.clone().unwrap_or_default()).collect::<Vec<_>>()
    );
    Ok(())
}

async fn mariadb(rows: u64) -> Result<(), Error> {
    let pair = my_support::MyPair::start();
    let load = format!(
        "CREATE DATABASE shop; USE shop;
         CREATE TABLE bench (id bigint PRIMARY KEY, customer_id int NOT NULL, sku varchar(20) NOT NULL, price decimal(12,2),
                             placed_at datetime(6) NOT NULL, note varchar(40));
         INSERT INTO bench SELECT seq, seq % 5000, concat('SKU-', seq % 997), (seq % 100000) / 7,
                                  '2024-01-01' + INTERVAL seq SECOND, IF(seq % 3 = 0, concat('n', seq), NULL)
           FROM seq_1_to_{rows};
         ANALYZE TABLE bench;"
    );
    let (mut src, mut tgt) = (pair.source().await, pair.target().await);
    src.query_drop(&load).await?;
    tgt.query_drop(&load).await?;
    let spec = pair.spec(TaskType::FullTrans, &["bench"]);
    let creds = pair.credentials();

    println!("MariaDB 10.11, {rows} rows of 6 columns on each side");
    let t = Instant::now();
    let report = compare::run(&spec.source, &spec.target, &spec.objects, &creds, OPTS).await?;
    line("ferry content compare (server-side chunk hashes)", t.elapsed().as_secs_f64(), rows);
    assert_eq!(report.result(), CompareResult::Consistent);

    let t = Instant::now();
    let (a, b) = tokio::join!(
        src.query_first::<(String, Option<u64>), _>("CHECKSUM TABLE shop.bench"),
        tgt.query_first::<(String, Option<u64>), _>("CHECKSUM TABLE shop.bench")
    );
    line("CHECKSUM TABLE on both sides (one number per table)", t.elapsed().as_secs_f64(), rows);
    assert_eq!(a?.map(|r| r.1), b?.map(|r| r.1));
    Ok(())
}

#[tokio::main(flavor = "multi_thread", worker_threads = 2)]
async fn main() -> Result<(), Error> {
    let rows: u64 = std::env::args().nth(1).and_then(|a| a.parse().ok()).unwrap_or(1_000_000);
    postgres(rows).await?;
    println!();
    mariadb(rows).await?;
    Ok(())
}
