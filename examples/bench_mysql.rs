//! MariaDB → MariaDB benchmark: Ferry's full transfer side by side with the tools a user would
//! pick instead (`mysqldump | mysql`, `mydumper` + `myloader`), on the same generated data in one
//! run, and the change stream under a sustained write load (`sysbench oltp_write_only`, or a
//! built-in writer when sysbench is missing). Not a test: figures are printed, nothing is asserted
//! on time.
//!
//! `cargo run --release --example bench_mysql -- [ROWS] [STREAM_RATE] [STREAM_SECONDS]`
//! (defaults: 1,000,000 rows; 10,000 changed rows per second for 20 s). `scripts/bench-mysql.sh`
//! installs the peers and runs it. Environment: `BENCH_ROUNDS` (default 3), `FERRY_READERS`
//! (default 2), `BENCH_WRITER=builtin` to use the built-in writer even when sysbench is there.
//!
//! Until Ferry's MySQL-family engine lands, `engine::run` answers these jobs with an
//! "unsupported" error: the benchmark prints it in Ferry's place and runs the peers anyway.

use std::fmt::Write as _;
use std::path::Path;
use std::process::{Command, Stdio};
use std::sync::Arc;
use std::time::{Duration, Instant};

use ferry::api::{SyncJobSpec, TaskType, TransferStage, Tuning, Validate};
use ferry::engine::{self, Credentials, Job, Tracker, progress::NoProgress};
use ferry::testkit::{MariaDbOptions, MariaDbServer};
use mysql_async::Conn;
use mysql_async::prelude::Queryable;
use tokio::sync::watch;

#[path = "../tests/my_support/mod.rs"]
mod support;

type Error = Box<dyn std::error::Error + Send + Sync>;

/// Server settings on top of the testkit's: room for the data in memory and no flush at every
/// commit, as the PostgreSQL benchmark's servers run with `fsync=off, synchronous_commit=off`.
/// The same for every tool.
const SERVER_ARGS: [&str; 4] = [
    "--innodb-buffer-pool-size=512M",
    "--innodb-log-file-size=256M",
    "--innodb-flush-log-at-trx-commit=0",
    "--innodb-doublewrite=0",
];

const TABLE: &str = "CREATE TABLE shop.bench (
    id bigint NOT NULL PRIMARY KEY, customer_id int NOT NULL, sku varchar(32) NOT NULL, qty smallint NOT NULL,
    price decimal(12,2) NOT NULL, discount double, placed_at datetime(6) NOT NULL, shipped tinyint(1) NOT NULL,
    note text, KEY bench_customer (customer_id)) ENGINE=InnoDB";

/// Rows per `INSERT … SELECT` when generating the data.
const LOAD_BATCH: u64 = 100_000;
/// sysbench tables for the change stream, and rows in each.
const SB_TABLES: u32 = 4;
const SB_TABLE_SIZE: u32 = 50_000;
/// Rows changed by one `oltp_write_only` transaction: an index update, a non-index update, a
/// delete and an insert.
const SB_ROWS_PER_TX: u64 = 4;
/// How long Ferry may take to copy the stream tables before the load starts, and to catch up after.
const READY_WITHIN: Duration = Duration::from_secs(600);
const CATCH_UP_WITHIN: Duration = Duration::from_secs(300);

async fn connect(server: &MariaDbServer) -> Result<Conn, Error> {
    Ok(Conn::new(server.opts(None)).await?)
}

/// An empty `shop` on the target, without Ferry's bookkeeping or an old binary log.
async fn reset_target(target: &MariaDbServer) -> Result<(), Error> {
    let mut c = connect(target).await?;
    c.query_drop("DROP DATABASE IF EXISTS shop; DROP DATABASE IF EXISTS _ferry; RESET MASTER; CREATE DATABASE shop")
        .await?;
    c.disconnect().await?;
    Ok(())
}

async fn count(server: &MariaDbServer, table: &str) -> Result<i64, Error> {
    let mut c = connect(server).await?;
    let n = c.query_first::<i64, _>(format!("SELECT COUNT(*) FROM shop.{table}")).await?.unwrap_or(0);
    c.disconnect().await?;
    Ok(n)
}

async fn check_count(what: &str, target: &MariaDbServer, rows: u64) -> Result<(), Error> {
    let n = count(target, "bench").await?;
    if u64::try_from(n).ok() != Some(rows) {
        return Err(format!("{what}: the target holds {n} rows of shop.bench, not {rows}").into());
    }
    Ok(())
}

/// Row count and a checksum of `columns` of `table`: equal fingerprints mean equal contents.
async fn fingerprint(conn: &mut Conn, table: &str, columns: &str) -> Result<String, Error> {
    let sql =
        format!("SELECT CONCAT(COUNT(*), ':', COALESCE(SUM(CRC32(CONCAT_WS('|', {columns}))), 0)) FROM shop.{table}");
    Ok(conn.query_first::<String, _>(sql).await?.unwrap_or_default())
}

/// Rows written, updated and deleted in non-temporary tables since the server started.
async fn rows_changed(conn: &mut Conn) -> Result<i64, Error> {
    let sql = "SELECT CAST(SUM(VARIABLE_VALUE) AS SIGNED) FROM information_schema.GLOBAL_STATUS \
               WHERE VARIABLE_NAME IN ('HANDLER_WRITE', 'HANDLER_UPDATE', 'HANDLER_DELETE')";
    Ok(conn.query_first::<i64, _>(sql).await?.unwrap_or(0))
}

fn installed(program: &str) -> bool {
    Command::new(program).arg("--version").stdout(Stdio::null()).stderr(Stdio::null()).status().is_ok()
}

fn first_installed<'a>(names: &[&'a str]) -> Option<&'a str> {
    names.iter().copied().find(|n| installed(n))
}

/// Runs `script` with bash, the two passwords in `$SRC_PWD` and `$TGT_PWD` (never in the script
/// text, so never on a command line), and returns how long it took.
fn shell(what: &str, script: &str, source: &MariaDbServer, target: &MariaDbServer) -> Result<Duration, Error> {
    let t = Instant::now();
    let out = Command::new("bash")
        .arg("-c")
        .arg(format!("set -euo pipefail; {script}"))
        .env("SRC_PWD", source.password())
        .env("TGT_PWD", target.password())
        .output()?;
    if !out.status.success() {
        return Err(format!(
            "{what} failed: {}{}",
            String::from_utf8_lossy(&out.stderr),
            String::from_utf8_lossy(&out.stdout)
        )
        .into());
    }
    Ok(t.elapsed())
}

/// Client options of the MariaDB command-line tools for `server`; the password comes from
/// `MYSQL_PWD`.
fn client_args(server: &MariaDbServer) -> String {
    format!("--no-defaults --protocol=TCP --host={} --port={} --user={}", server.host(), server.port(), server.user())
}

/// Connection options of mydumper and myloader for `server`; the password comes from
/// `MYSQL_PWD`, which their client library reads.
fn tool_args(server: &MariaDbServer) -> String {
    format!("--host={} --port={} --user={}", server.host(), server.port(), server.user())
}

/// Writes a file only the current user can read (for a password).
fn private_file(path: &Path, text: &str) -> Result<(), Error> {
    use std::io::Write;
    use std::os::unix::fs::OpenOptionsExt;
    let mut f = std::fs::OpenOptions::new().write(true).create(true).truncate(true).mode(0o600).open(path)?;
    f.write_all(text.as_bytes())?;
    Ok(())
}

/// A MariaDB → MariaDB job over `tables` of database `shop`, same names on the target.
fn spec(
    source: &MariaDbServer,
    target: &MariaDbServer,
    task: TaskType,
    tables: &[String],
    tuning: Tuning,
) -> Result<SyncJobSpec, Error> {
    let names: Vec<&str> = tables.iter().map(String::as_str).collect();
    let mut spec = support::job_spec(source, target, task, &names);
    spec.tuning = Some(tuning);
    let errors = spec.validate();
    if !errors.is_empty() {
        let list: Vec<String> = errors.iter().map(ToString::to_string).collect();
        return Err(format!("the benchmark's job spec is invalid: {}", list.join("; ")).into());
    }
    Ok(spec)
}

fn arg<T: std::str::FromStr>(args: &[String], i: usize, name: &str, default: T) -> Result<T, Error> {
    match args.get(i) {
        None => Ok(default),
        Some(a) => a.parse().map_err(|_| format!("{name} must be a number, not {a:?}").into()),
    }
}

fn env_or<T: std::str::FromStr>(name: &str, default: T) -> T {
    std::env::var(name).ok().and_then(|v| v.parse().ok()).unwrap_or(default)
}

fn median(mut t: Vec<Duration>) -> Option<Duration> {
    t.sort();
    t.get(t.len() / 2).copied()
}

/// The age of the source commit Ferry's committed checkpoint covers, as the tracker reports it,
/// counted from no earlier than `since` (a checkpoint older than the load only says that
/// nothing of the load is applied yet). With whether that commit time is in whole seconds.
fn lag(tracker: &Tracker, since: jiff::Timestamp) -> Option<(f64, bool)> {
    let source_time = tracker.snapshot().1?.source_time?.0;
    let age = jiff::Timestamp::now().duration_since(source_time.max(since)).as_secs_f64();
    Some((age, source_time.subsec_nanosecond() == 0))
}

/// The `transactions: N (X per sec.)` line of a sysbench report.
fn sysbench_transactions(report: &str) -> Option<(u64, f64)> {
    let line = report.lines().find(|l| l.trim_start().starts_with("transactions:"))?;
    let rest = line.trim_start().strip_prefix("transactions:")?.trim_start();
    let (n, rest) = rest.split_once(char::is_whitespace)?;
    let per_sec = rest.trim_start().strip_prefix('(')?.split_whitespace().next()?;
    Some((n.parse().ok()?, per_sec.parse().ok()?))
}

#[tokio::main(flavor = "multi_thread", worker_threads = 2)]
async fn main() -> Result<(), Error> {
    let filter = tracing_subscriber::EnvFilter::try_from_default_env().unwrap_or_else(|_| "warn".into());
    tracing_subscriber::fmt().with_env_filter(filter).with_writer(std::io::stderr).init();
    let args: Vec<String> = std::env::args().collect();
    let rows: u64 = arg(&args, 1, "ROWS", 1_000_000)?;
    let rate: u64 = arg(&args, 2, "STREAM_RATE", 10_000)?;
    let seconds: u64 = arg(&args, 3, "STREAM_SECONDS", 20)?;
    if rows == 0 || rate == 0 || seconds == 0 {
        return Err("ROWS, STREAM_RATE and STREAM_SECONDS must be positive".into());
    }
    let rounds: usize = env_or("BENCH_ROUNDS", 3_usize).max(1);
    let readers: u32 = env_or("FERRY_READERS", 2);

    let options =
        || MariaDbOptions { extra_args: SERVER_ARGS.iter().map(|a| (*a).to_owned()).collect(), ..Default::default() };
    let source = MariaDbServer::start_with(options())?;
    let target = MariaDbServer::start_with(options())?;
    let (source, target) = (&source, &target);
    println!("MariaDB {} → {}; {rows} rows of 9 mixed columns", source.version(), target.version());
    println!("servers: {}", SERVER_ARGS.join(" "));

    let mut src = connect(source).await?;
    src.query_drop("CREATE DATABASE shop").await?;
    src.query_drop(TABLE).await?;
    let t = Instant::now();
    let mut lo = 1;
    while lo <= rows {
        let hi = (lo + LOAD_BATCH - 1).min(rows);
        src.query_drop(format!(
            "INSERT INTO shop.bench
             SELECT seq, (seq * 7919) % 100000, CONCAT('SKU-', seq % 5000), seq % 20, ROUND((seq % 10000) / 7, 2),
                    IF(seq % 3 = 0, NULL, (seq % 100) / 100),
                    TIMESTAMP'2025-01-01 00:00:00' + INTERVAL seq * 37 SECOND + INTERVAL seq % 1000000 MICROSECOND,
                    seq % 2 = 0, IF(seq % 5 = 0, REPEAT('note ', 8), NULL)
             FROM shop.seq_{lo}_to_{hi}"
        ))
        .await?;
        lo = hi + 1;
    }
    src.query_drop("ANALYZE TABLE shop.bench").await?;
    let (data, index): (i64, i64) = src
        .query_first(
            "SELECT CAST(DATA_LENGTH AS SIGNED), CAST(INDEX_LENGTH AS SIGNED) FROM information_schema.TABLES \
             WHERE TABLE_SCHEMA = 'shop' AND TABLE_NAME = 'bench'",
        )
        .await?
        .ok_or("shop.bench is missing from information_schema")?;
    println!(
        "generated in {:.1} s; table size on the source: {:.0} MB ({:.0} MB data, {:.0} MB secondary index)\n",
        t.elapsed().as_secs_f64(),
        (data + index) as f64 / 1e6,
        data as f64 / 1e6,
        index as f64 / 1e6
    );

    let dump = first_installed(&["mariadb-dump", "mysqldump"]);
    let client = first_installed(&["mariadb", "mysql"]);
    let has_mysqldump = dump.is_some() && client.is_some();
    if !has_mysqldump {
        println!("mysqldump/mysql are not installed (apt-get install mariadb-client); left out");
    }
    let has_mydumper = installed("mydumper") && installed("myloader");
    if !has_mydumper {
        println!("mydumper is not installed (apt-get install -y -qq mydumper); left out");
    }
    let tmp = tempfile::tempdir()?;
    let dir = tmp.path().display().to_string();

    let names = [
        format!("ferry (FULL_TRANS, {readers} readers)"),
        "mysqldump --single-transaction | mysql".to_owned(),
        "mydumper -t 2 -r 100000 + myloader -t 2".to_owned(),
    ];
    let mut times: Vec<Vec<Duration>> = vec![Vec::new(); names.len()];
    let (mut mydumper_times, mut myloader_times) = (Vec::new(), Vec::new());
    let mut ferry_error: Option<String> = None;
    let creds = Credentials {
        source_password: Some(source.password().to_owned()),
        target_password: Some(target.password().to_owned()),
        ..Default::default()
    };
    let full_spec = spec(
        source,
        target,
        TaskType::FullTrans,
        &["bench".to_owned()],
        Tuning { read_parallelism: Some(readers), batch_rows: Some(100_000), ..Default::default() },
    )?;
    for round in 0..rounds {
        // The same order every round; the median of the rounds is reported.
        if ferry_error.is_none() {
            reset_target(target).await?;
            let (_tx, stop) = watch::channel(false);
            let id = format!("bench/full-{round}");
            let t = Instant::now();
            let run = engine::run(Job {
                id: &id,
                spec: &full_spec,
                credentials: &creds,
                tracker: Tracker::new(Arc::new(NoProgress)),
                stop,
            })
            .await;
            let elapsed = t.elapsed();
            match run {
                Ok(_) => match check_count("ferry", target, rows).await {
                    Ok(()) => times[0].push(elapsed),
                    Err(e) => ferry_error = Some(e.to_string()),
                },
                Err(e) => ferry_error = Some(format!("{e} ({})", e.code())),
            }
        }

        if let (Some(dump), Some(client)) = (dump, client) {
            reset_target(target).await?;
            times[1].push(shell(
                "mysqldump | mysql",
                &format!(
                    "MYSQL_PWD=\"$SRC_PWD\" {dump} {} --single-transaction --quick shop bench \
                     | MYSQL_PWD=\"$TGT_PWD\" {client} {} shop",
                    client_args(source),
                    client_args(target)
                ),
                source,
                target,
            )?);
            check_count("mysqldump | mysql", target, rows).await?;
        }

        if has_mydumper {
            reset_target(target).await?;
            let _ = std::fs::remove_dir_all(format!("{dir}/dump"));
            let dumped = shell(
                "mydumper",
                &format!(
                    "MYSQL_PWD=\"$SRC_PWD\" mydumper {} -t 2 -r 100000 -v 1 -B shop -T bench -o '{dir}/dump'",
                    tool_args(source)
                ),
                source,
                target,
            )?;
            let loaded = shell(
                "myloader",
                &format!("MYSQL_PWD=\"$TGT_PWD\" myloader {} -t 2 -v 1 -B shop -d '{dir}/dump'", tool_args(target)),
                source,
                target,
            )?;
            check_count("mydumper + myloader", target, rows).await?;
            mydumper_times.push(dumped);
            myloader_times.push(loaded);
            times[2].push(dumped + loaded);
        }
    }

    println!("median of {rounds} rounds");
    let ferry = median(times[0].clone()).map(|d| d.as_secs_f64());
    println!("{:<42} {:>9} {:>12} {:>14}", "full transfer", "seconds", "rows/s", "ferry speedup");
    for (name, t) in names.iter().zip(times) {
        let Some(d) = median(t) else {
            if name.starts_with("ferry") {
                let e = ferry_error.as_deref().unwrap_or("did not run");
                println!("{name:<42} {:>9} {:>12} {:>14}   {e}", "—", "—", "—");
            }
            continue;
        };
        let s = d.as_secs_f64();
        let speedup = ferry.map_or_else(|| "—".to_owned(), |f| format!("{:.2}x", s / f));
        println!("{name:<42} {s:>9.2} {:>12.0} {speedup:>14}", rows as f64 / s);
    }
    if let (Some(_), Some(e)) = (ferry, &ferry_error) {
        println!("ferry failed in a later round, which is left out: {e}");
    }
    if let (Some(d), Some(l)) = (median(mydumper_times), median(myloader_times)) {
        println!(
            "{:<42} {:>9.2} s dump + {:.2} s load",
            "  of which mydumper / myloader",
            d.as_secs_f64(),
            l.as_secs_f64()
        );
    }

    // Change stream: FULL_INCR_TRANS of the write-load tables, then a sustained load.
    let sysbench = installed("sysbench") && std::env::var("BENCH_WRITER").as_deref() != Ok("builtin");
    let sb_rate = rate.div_ceil(SB_ROWS_PER_TX);
    let sb_cnf = tmp.path().join("sysbench.cnf");
    let sb_args = |tx_rate: u64, threads: u32| -> Vec<String> {
        vec![
            "oltp_write_only".into(),
            format!("--config-file={}", sb_cnf.display()),
            "--db-driver=mysql".into(),
            format!("--mysql-host={}", source.host()),
            format!("--mysql-port={}", source.port()),
            format!("--mysql-user={}", source.user()),
            "--mysql-db=shop".into(),
            format!("--tables={SB_TABLES}"),
            format!("--table-size={SB_TABLE_SIZE}"),
            "--rand-type=uniform".into(),
            format!("--threads={threads}"),
            format!("--rate={tx_rate}"),
            format!("--time={seconds}"),
            "--report-interval=0".into(),
        ]
    };
    let (tables, columns): (Vec<String>, &str) = if sysbench {
        println!(
            "\nchange stream: sysbench oltp_write_only on {SB_TABLES} tables of {SB_TABLE_SIZE} rows, \
             {sb_rate} transactions/s × {SB_ROWS_PER_TX} changed rows ≈ {rate} changed rows/s for {seconds} s"
        );
        // The password in a private options file rather than on sysbench's command line.
        private_file(&sb_cnf, &format!("mysql-password={}\n", source.password()))?;
        let out = Command::new("sysbench").args(sb_args(0, SB_TABLES)).arg("prepare").output()?;
        if !out.status.success() {
            return Err(format!("sysbench prepare failed: {}", String::from_utf8_lossy(&out.stderr)).into());
        }
        ((1..=SB_TABLES).map(|i| format!("sbtest{i}")).collect(), "id, k, c, pad")
    } else {
        println!(
            "\nchange stream: built-in writer (sysbench is not installed or BENCH_WRITER=builtin), \
             {rate} changed rows/s for {seconds} s"
        );
        src.query_drop("CREATE TABLE shop.stream (id bigint PRIMARY KEY, v int NOT NULL, payload varchar(64))").await?;
        (vec!["stream".to_owned()], "id, v, payload")
    };
    reset_target(target).await?;
    let stream_spec = spec(
        source,
        target,
        TaskType::FullIncrTrans,
        &tables,
        Tuning { apply_batch_transactions: Some(200), ..Default::default() },
    )?;
    let tracker = Tracker::new(Arc::new(NoProgress));
    let (stop_tx, stop) = watch::channel(false);
    let mut runner = Some(tokio::spawn({
        let (spec, creds, tracker) = (stream_spec.clone(), creds.clone(), tracker.clone());
        async move { engine::run(Job { id: "bench/stream", spec: &spec, credentials: &creds, tracker, stop }).await }
    }));
    let mut stream_error: Option<String> = None;
    let waiting = Instant::now();
    let mut ready = Duration::ZERO;
    loop {
        if runner.as_ref().is_some_and(|r| r.is_finished()) {
            let result = match runner.take() {
                Some(r) => r.await,
                None => break,
            };
            stream_error = Some(match result {
                Ok(Ok(outcome)) => format!("the job ended before streaming: {outcome:?}"),
                Ok(Err(e)) => format!("{e} ({})", e.code()),
                Err(e) => format!("the job's task failed: {e}"),
            });
            break;
        }
        if tracker.snapshot().0.stage == Some(TransferStage::Incremental) {
            ready = waiting.elapsed();
            tokio::time::sleep(Duration::from_secs(1)).await;
            break;
        }
        if waiting.elapsed() > READY_WITHIN {
            stream_error = Some(format!("not streaming after {} s", READY_WITHIN.as_secs()));
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    if let Some(e) = &stream_error {
        println!("ferry: {e}; the load runs without it");
    } else {
        println!("ferry copied the tables in {:.2} s and streams", ready.as_secs_f64());
    }

    let mut lags = Vec::new();
    let changed_before = rows_changed(&mut src).await?;
    let load_start = Instant::now();
    let load_start_wall = jiff::Timestamp::now();
    let sample = |lags: &mut Vec<(f64, bool)>| {
        if stream_error.is_none()
            && let Some(l) = lag(&tracker, load_start_wall)
        {
            lags.push(l);
        }
    };
    let offered: u64;
    let mut sysbench_tps = None;
    if sysbench {
        let log = tmp.path().join("sysbench.log");
        let mut child = tokio::process::Command::new("sysbench")
            .args(sb_args(sb_rate, 8))
            .arg("run")
            .stdout(std::fs::File::create(&log)?)
            .stderr(Stdio::piped())
            .spawn()?;
        let mut tick = tokio::time::interval(Duration::from_millis(100));
        while child.try_wait()?.is_none() {
            tick.tick().await;
            sample(&mut lags);
        }
        let out = child.wait_with_output().await?;
        let report = std::fs::read_to_string(&log).unwrap_or_default();
        if !out.status.success() {
            return Err(format!("sysbench run failed: {}{report}", String::from_utf8_lossy(&out.stderr)).into());
        }
        let (transactions, tps) = sysbench_transactions(&report)
            .ok_or_else(|| format!("no transaction count in sysbench's report:\n{report}"))?;
        sysbench_tps = Some(tps);
        offered = transactions * SB_ROWS_PER_TX;
    } else {
        // 100 transactions a second, each inserting rate/250 rows, updating as many and deleting
        // half as many, as in the PostgreSQL benchmark.
        let mut writer = connect(source).await?;
        let per_tx = (rate / 250).max(2) as i64;
        let mut next_id: i64 = 1;
        let mut changed = 0;
        let mut tick = tokio::time::interval(Duration::from_millis(10));
        while load_start.elapsed() < Duration::from_secs(seconds) {
            tick.tick().await;
            let (last, del) = (next_id + per_tx - 1, next_id - 4 * per_tx);
            writer
                .query_drop(format!(
                    "START TRANSACTION;
                     INSERT INTO shop.stream SELECT seq, 0, CONCAT('payload ', seq) FROM shop.seq_{next_id}_to_{last};
                     DELETE FROM shop.stream WHERE id BETWEEN {del} AND {};
                     UPDATE shop.stream SET v = v + 1 WHERE id BETWEEN {} AND {};
                     COMMIT",
                    del + per_tx / 2 - 1,
                    next_id - per_tx,
                    next_id - 1
                ))
                .await?;
            next_id += per_tx;
            changed += (2 * per_tx + per_tx / 2) as u64;
            if (next_id - 1) % (per_tx * 10) == 0 {
                sample(&mut lags);
            }
        }
        writer.disconnect().await?;
        offered = changed;
    }
    let load_seconds = load_start.elapsed().as_secs_f64();
    let counted = rows_changed(&mut src).await? - changed_before;
    let mut line = format!("achieved load         {:>10.0} changed rows/s", offered as f64 / load_seconds);
    if let Some(tps) = sysbench_tps {
        let _ = write!(line, " ({tps:.0} transactions/s × {SB_ROWS_PER_TX})");
    }
    let _ = write!(line, "; the source counted {:.0} rows/s", counted as f64 / load_seconds);
    println!("{line}");

    if stream_error.is_none() {
        let drained = Instant::now();
        let mut tgt = connect(target).await?;
        let caught_up = loop {
            let mut equal = true;
            for t in &tables {
                if fingerprint(&mut src, t, columns).await?
                    != fingerprint(&mut tgt, t, columns).await.unwrap_or_default()
                {
                    equal = false;
                    break;
                }
            }
            if equal {
                break Some(drained.elapsed());
            }
            if drained.elapsed() > CATCH_UP_WITHIN || runner.as_ref().is_none_or(|r| r.is_finished()) {
                break None;
            }
            tokio::time::sleep(Duration::from_millis(200)).await;
        };
        tgt.disconnect().await?;
        let whole_seconds = !lags.is_empty() && lags.iter().all(|l| l.1);
        let mut lags: Vec<f64> = lags.iter().map(|l| l.0).collect();
        lags.sort_by(f64::total_cmp);
        let pct = |p: f64| lags.get(((lags.len() as f64 - 1.0) * p) as usize).copied().unwrap_or(f64::NAN);
        println!(
            "lag p50 / p99 / max   {:>6.2} s / {:.2} s / {:.2} s ({} samples)",
            pct(0.5),
            pct(0.99),
            pct(1.0),
            lags.len()
        );
        if whole_seconds {
            // Binlog event headers carry whole seconds.
            println!("{:22}(source commit times are in whole seconds: a sample reads up to 1 s high)", "");
        }
        match caught_up {
            Some(d) => println!("caught up {:.2} s after the load stopped", d.as_secs_f64()),
            None => println!("the target did not catch up within {} s", CATCH_UP_WITHIN.as_secs()),
        }
        let _ = stop_tx.send(true);
        if let Some(r) = runner.take() {
            match tokio::time::timeout(Duration::from_secs(60), r).await {
                Ok(Ok(Ok(_))) => {}
                Ok(Ok(Err(e))) => println!("ferry's stream ended with an error: {e}"),
                Ok(Err(e)) => println!("ferry's stream task failed: {e}"),
                Err(_) => println!("ferry's stream did not stop within 60 s"),
            }
        }
        if let Err(e) = engine::release("bench/stream", &stream_spec, &creds).await {
            println!("releasing the stream job: {e}");
        }
    } else {
        let _ = stop_tx.send(true);
        println!("lag                   n/a: ferry is not streaming");
    }
    src.disconnect().await?;
    Ok(())
}
