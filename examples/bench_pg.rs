//! PostgreSQL → PostgreSQL benchmark: Ferry's full transfer side by side with the tools a user
//! would pick instead, on the same generated data in one run, and the change stream under a
//! sustained write load. Not a test: figures are printed, nothing is asserted on time.
//!
//! `cargo run --release --example bench_pg -- [ROWS] [STREAM_RATE] [STREAM_SECONDS]`
//! (defaults: 1,000,000 rows; 10,000 changed rows per second for 20 s). `scripts/bench-pg.sh`
//! installs the peers and runs it.

use std::process::Command;
use std::sync::Arc;
use std::time::{Duration, Instant};

use ferry::api::{TaskType, Tuning};
use ferry::engine::{self, Credentials, Job, Tracker, progress::NoProgress};
use ferry::testkit::PostgresServer;
use tokio::sync::watch;
use tokio_postgres::{Client, NoTls};

#[path = "../tests/support/mod.rs"]
mod support;

type Error = Box<dyn std::error::Error + Send + Sync>;

const TABLE: &str = "CREATE TABLE bench (
    id bigint PRIMARY KEY, customer_id integer NOT NULL, sku text NOT NULL, qty smallint NOT NULL,
    price numeric(12,2) NOT NULL, discount double precision, placed_at timestamptz NOT NULL,
    shipped boolean NOT NULL, note text, tags text[])";

async fn client(server: &PostgresServer, db: &str) -> Result<Client, Error> {
    let (c, conn) = server.config(db).connect(NoTls).await?;
    tokio::spawn(conn);
    Ok(c)
}

fn pg_bin(name: &str) -> String {
    let mut versions: Vec<_> = std::fs::read_dir("/usr/lib/postgresql")
        .map(|d| d.filter_map(|e| e.ok()).map(|e| e.path()).collect())
        .unwrap_or_default();
    versions.sort();
    versions.last().map(|v| v.join("bin").join(name).display().to_string()).unwrap_or_else(|| name.to_owned())
}

fn url(server: &PostgresServer, db: &str) -> String {
    format!("postgresql://{}:{}@{}:{}/{db}", server.user(), server.password(), server.host(), server.port())
}

async fn reset_target(target: &PostgresServer) -> Result<(), Error> {
    let c = client(target, "postgres").await?;
    c.batch_execute("DROP DATABASE IF EXISTS shop WITH (FORCE)").await?;
    c.batch_execute("CREATE DATABASE shop").await?;
    Ok(())
}

async fn count(server: &PostgresServer) -> Result<i64, Error> {
    Ok(client(server, "shop").await?.query_one("SELECT count(*) FROM public.bench", &[]).await?.get(0))
}

fn shell(what: &str, script: &str) -> Result<Duration, Error> {
    let t = Instant::now();
    let out = Command::new("bash").arg("-c").arg(script).output()?;
    if !out.status.success() {
        return Err(format!("{what} failed: {}", String::from_utf8_lossy(&out.stderr)).into());
    }
    Ok(t.elapsed())
}

#[tokio::main(flavor = "multi_thread", worker_threads = 2)]
async fn main() -> Result<(), Error> {
    let filter = tracing_subscriber::EnvFilter::try_from_default_env().unwrap_or_else(|_| "warn".into());
    tracing_subscriber::fmt().with_env_filter(filter).with_writer(std::io::stderr).init();
    let args: Vec<String> = std::env::args().collect();
    let rows: i64 = args.get(1).and_then(|a| a.parse().ok()).unwrap_or(1_000_000);
    let rate: u64 = args.get(2).and_then(|a| a.parse().ok()).unwrap_or(10_000);
    let seconds: u64 = args.get(3).and_then(|a| a.parse().ok()).unwrap_or(20);

    let pair = support::Pair::start();
    let (source, target) = (&pair.source, &pair.target);
    println!("PostgreSQL {} → {}; {rows} rows of 10 mixed columns", source.version(), target.version());
    let src = client(source, "shop").await?;
    src.batch_execute(TABLE).await?;
    src.execute(
        "INSERT INTO bench SELECT g, (g * 7919) % 100000, 'SKU-' || (g % 5000), (g % 20)::smallint, (g % 10000) / 7.0,
                CASE WHEN g % 3 = 0 THEN NULL ELSE (g % 100) / 100.0 END,
                '2025-01-01'::timestamptz + g * interval '37 seconds', g % 2 = 0,
                CASE WHEN g % 5 = 0 THEN repeat('note ', 8) END, ARRAY['a' || (g % 10), 'b' || (g % 7)]
         FROM generate_series(1, $1::bigint) g",
        &[&rows],
    )
    .await?;
    src.batch_execute("VACUUM ANALYZE bench").await?;
    let size: i64 = src.query_one("SELECT pg_total_relation_size('bench')", &[]).await?.get(0);
    println!("table size on the source: {:.0} MB\n", size as f64 / 1e6);

    let dump = pg_bin("pg_dump");
    let restore = pg_bin("pg_restore");
    let tmp = tempfile::tempdir()?;
    let dir = tmp.path().display().to_string();
    let has_pgcopydb = Command::new("pgcopydb").arg("--version").output().is_ok();
    if !has_pgcopydb {
        println!("pgcopydb is not installed (apt-get install pgcopydb); left out");
    }
    let rounds: usize = std::env::var("BENCH_ROUNDS").ok().and_then(|v| v.parse().ok()).unwrap_or(3);
    let readers = std::env::var("FERRY_READERS").ok().and_then(|v| v.parse().ok()).unwrap_or(2);
    let names = [
        format!("ferry (FULL_TRANS, {readers} readers)"),
        "pg_dump -Fc | pg_restore".to_owned(),
        "pg_dump -j 2 -Fd + pg_restore -j 2".to_owned(),
        "pgcopydb clone (2 table jobs)".to_owned(),
    ];
    let mut times: Vec<Vec<Duration>> = vec![Vec::new(); names.len()];
    let creds: Credentials = pair.credentials();
    for round in 0..rounds {
        // The same order every round; the median of the rounds is reported.
        reset_target(target).await?;
        let mut spec = pair.spec(TaskType::FullTrans, &["bench"]);
        spec.tuning = Some(Tuning { read_parallelism: Some(readers), batch_rows: Some(100_000), ..Default::default() });
        let (_tx, stop) = watch::channel(false);
        let t = Instant::now();
        let id = format!("bench/full-{round}");
        engine::run(Job {
            id: &id,
            spec: &spec,
            credentials: &creds,
            tracker: Tracker::new(Arc::new(NoProgress)),
            stop,
        })
        .await?;
        times[0].push(t.elapsed());
        assert_eq!(count(target).await?, rows, "ferry copied every row");

        reset_target(target).await?;
        times[1].push(shell(
            "pg_dump | pg_restore",
            &format!(
                "'{dump}' -Fc -t public.bench '{}' | '{restore}' -d '{}'",
                url(source, "shop"),
                url(target, "shop")
            ),
        )?);
        assert_eq!(count(target).await?, rows);

        reset_target(target).await?;
        let _ = std::fs::remove_dir_all(format!("{dir}/dump"));
        times[2].push(shell(
            "pg_dump -j 2 -Fd / pg_restore -j 2",
            &format!(
                "'{dump}' -Fd -j 2 -t public.bench -f '{dir}/dump' '{}' && '{restore}' -j 2 -d '{}' '{dir}/dump'",
                url(source, "shop"),
                url(target, "shop")
            ),
        )?);
        assert_eq!(count(target).await?, rows);

        if has_pgcopydb {
            reset_target(target).await?;
            let _ = std::fs::remove_dir_all(format!("{dir}/pgcopydb"));
            times[3].push(shell(
                "pgcopydb clone",
                &format!(
                    "pgcopydb clone --source '{}' --target '{}' --table-jobs 2 --index-jobs 2 --dir '{dir}/pgcopydb' --no-owner --no-acl --skip-extensions > '{dir}/pgcopydb.log' 2>&1",
                    url(source, "shop"),
                    url(target, "shop")
                ),
            )?);
            assert_eq!(count(target).await?, rows);
        }
    }
    let results: Vec<(String, Duration)> = names
        .iter()
        .zip(times)
        .filter(|(_, t)| !t.is_empty())
        .map(|(n, mut t)| {
            t.sort();
            (n.clone(), t[t.len() / 2])
        })
        .collect();
    println!("median of {rounds} rounds");
    let ferry = results[0].1.as_secs_f64();
    println!("{:<40} {:>9} {:>12} {:>14}", "full transfer", "seconds", "rows/s", "ferry speedup");
    for (name, d) in &results {
        let s = d.as_secs_f64();
        println!("{name:<40} {s:>9.2} {:>12.0} {:>13.2}x", rows as f64 / s, s / ferry);
    }

    // Change stream: FULL_INCR_TRANS on an empty table, then a sustained insert/update load.
    println!("\nchange stream: {rate} changed rows/s for {seconds} s");
    reset_target(target).await?;
    src.batch_execute("CREATE TABLE stream (id bigint PRIMARY KEY, v integer NOT NULL, payload text)").await?;
    let mut spec = pair.spec(TaskType::FullIncrTrans, &["stream"]);
    spec.tuning = Some(Tuning { apply_batch_transactions: Some(200), ..Default::default() });
    let (stop_tx, stop) = watch::channel(false);
    let runner = tokio::spawn({
        let creds = creds.clone();
        async move {
            engine::run(Job {
                id: "bench/stream",
                spec: &spec,
                credentials: &creds,
                tracker: Tracker::new(Arc::new(NoProgress)),
                stop,
            })
            .await
        }
    });
    let tgt = client(target, "shop").await?;
    loop {
        let ready = tgt.query_opt("SELECT 1 FROM _ferry.jobs WHERE full_done", &[]).await.ok().flatten().is_some();
        if ready {
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    tokio::time::sleep(Duration::from_secs(1)).await;
    // 100 transactions a second, each inserting rate/250 rows, updating as many and deleting half
    // as many.
    let per_tx = (rate / 250).max(2) as i64;
    let load_start = Instant::now();
    let mut next_id: i64 = 0;
    let mut lags = Vec::new();
    let mut tick = tokio::time::interval(Duration::from_millis(10));
    let mut changed: u64 = 0;
    while load_start.elapsed() < Duration::from_secs(seconds) {
        tick.tick().await;
        src.execute(
            "WITH ins AS (INSERT INTO stream SELECT g, 0, 'payload ' || g FROM generate_series($1::bigint, $2::bigint) g RETURNING 1),
                  del AS (DELETE FROM stream WHERE id BETWEEN $1 - 4 * $3::bigint AND $1 - 4 * $3::bigint + $3::bigint / 2 - 1 RETURNING 1)
             UPDATE stream SET v = v + 1 WHERE id BETWEEN $1 - $3 AND $1 - 1",
            &[&next_id, &(next_id + per_tx - 1), &per_tx],
        )
        .await?;
        next_id += per_tx;
        changed += (2 * per_tx + per_tx / 2) as u64;
        if next_id % (per_tx * 10) == 0 {
            let lag: Option<f64> = tgt
                .query_one("SELECT extract(epoch FROM clock_timestamp() - checkpoint_time)::float8 FROM _ferry.jobs WHERE job = 'bench/stream'", &[])
                .await?
                .get(0);
            if let Some(l) = lag {
                lags.push(l);
            }
        }
    }
    let offered = changed as f64 / load_start.elapsed().as_secs_f64();
    let drained = Instant::now();
    support::wait_equal(&pair, "stream", "stream", Duration::from_secs(300)).await;
    let catch_up = drained.elapsed();
    stop_tx.send(true)?;
    runner.await??;
    lags.sort_by(f64::total_cmp);
    let pct = |p: f64| lags.get(((lags.len() as f64 - 1.0) * p) as usize).copied().unwrap_or(f64::NAN);
    println!("offered load          {offered:>10.0} changed rows/s ({changed} rows)");
    println!("lag p50 / p99 / max   {:>6.2} s / {:.2} s / {:.2} s", pct(0.5), pct(0.99), pct(1.0));
    println!("caught up {:.2} s after the load stopped", catch_up.as_secs_f64());
    engine::release("bench/stream", &pair.spec(TaskType::FullIncrTrans, &["stream"]), &creds).await?;
    Ok(())
}
