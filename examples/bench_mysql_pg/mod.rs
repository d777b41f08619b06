//! Parts `pg-full` and `pg-stream` of the MariaDB benchmark: the same source, a throwaway
//! PostgreSQL target (the testkit's: `fsync=off`, `synchronous_commit=off`).
//!
//! - **pg-full**: the three full-transfer tables (generated as for part 1, or kept from it), each
//!   tool into an empty database of its own: Ferry `FULL_TRANS` MariaDB → PostgreSQL (in this
//!   process), then `pgloader` (a load file: `include drop, create tables, create indexes,
//!   reset sequences, foreign keys, workers = PGLOADER_WORKERS, concurrency =
//!   PGLOADER_CONCURRENCY, multiple readers per thread, rows per range =
//!   PGLOADER_ROWS_PER_RANGE`). Both create schema `shop` with the tables, keys and indexes.
//!   After each, every table is compared with the source on the PostgreSQL side: the row count
//!   and the sum of an MD5 of the columns whose text form both engines and both tools' type
//!   mappings agree on (keys, integers, decimals, text, dates) — a multiset comparison, so the
//!   keyless table's duplicates count — and the key and indexes must be there.
//! - **pg-stream**: Ferry `FULL_INCR_TRANS` MariaDB → PostgreSQL of part 3's change table under
//!   the same sysbench load as fast as the clients go for BENCH_FREE_SECONDS: offered and
//!   applied rows/s, lag through the heartbeat (`shop.hb` on the source, read on PostgreSQL),
//!   catch-up, then every row compared (all columns but the `double`, timestamps as epoch µs).

use super::*;
use ferry::api::{DatabaseSelection, Endpoint, ObjectScope, ObjectSelection, TableSelection};
use ferry::testkit::{PostgresOptions, PostgresServer};
use tokio_postgres::{Client, NoTls};

/// How a column enters the comparison digest.
#[derive(Clone, Copy)]
enum Form {
    /// Its text form, the same on both engines (integers, decimals, text, dates).
    Text,
    /// A `DATETIME`: microseconds since the epoch, read as UTC on both.
    EpochUs,
}

/// The columns compared per table: those both tools map to types whose values print alike.
/// Left out: `DOUBLE` (MariaDB and PostgreSQL print different digits), JSON (`jsonb`
/// normalises), `TINYINT(1)` (pgloader makes it `boolean`), and in the full transfer the
/// timestamps (pgloader makes `DATETIME` a `timestamptz`).
fn digest_columns(table: &str) -> &'static [(&'static str, Form)] {
    match table {
        "orders" => &[
            ("id", Form::Text),
            ("customer_id", Form::Text),
            ("amount", Form::Text),
            ("note", Form::Text),
            ("ship_date", Form::Text),
            ("quantity", Form::Text),
            ("status", Form::Text),
            ("coupon", Form::Text),
        ],
        "order_items" => &[
            ("order_id", Form::Text),
            ("line", Form::Text),
            ("sku", Form::Text),
            ("qty", Form::Text),
            ("unit_price", Form::Text),
        ],
        "order_events" => &[("order_id", Form::Text), ("kind", Form::Text), ("detail", Form::Text)],
        "stream" => &[
            ("id", Form::Text),
            ("customer_id", Form::Text),
            ("amount", Form::Text),
            ("qty", Form::Text),
            ("status", Form::Text),
            ("note", Form::Text),
            ("created_at", Form::EpochUs),
            ("updated_at", Form::EpochUs),
            ("paid", Form::Text),
            ("ship_date", Form::Text),
            ("region", Form::Text),
        ],
        _ => &[("id", Form::Text), ("ts", Form::EpochUs)],
    }
}

/// Count and MD5 sum of `table` on the MariaDB source.
fn my_digest_sql(table: &str) -> String {
    let cols: Vec<String> = digest_columns(table)
        .iter()
        .map(|(c, form)| match form {
            Form::Text => format!("COALESCE(CAST({} AS CHAR), '~')", quote_ident(c)),
            Form::EpochUs => {
                format!("COALESCE(CAST(CAST(UNIX_TIMESTAMP({}) * 1000000 AS SIGNED) AS CHAR), '~')", quote_ident(c))
            }
        })
        .collect();
    format!(
        "SELECT CONCAT(COUNT(*), ' rows, md5 sum ', COALESCE(SUM(CAST(CONV(LEFT(h, 15), 16, 10) AS UNSIGNED)), 0)) \
         FROM (SELECT MD5(CONCAT_WS('|', {})) AS h FROM shop.{}) AS d",
        cols.join(", "),
        quote_ident(table)
    )
}

/// The same digest of `shop.table` on PostgreSQL.
fn pg_digest_sql(table: &str) -> String {
    let cols: Vec<String> = digest_columns(table)
        .iter()
        .map(|(c, form)| match form {
            Form::Text => format!("coalesce({}::text, '~')", pg_ident(c)),
            Form::EpochUs => {
                format!("coalesce(round(extract(epoch FROM {}) * 1000000)::bigint::text, '~')", pg_ident(c))
            }
        })
        .collect();
    format!(
        "SELECT count(*) || ' rows, md5 sum ' || coalesce(sum(('x' || left(h, 15))::bit(60)::bigint), 0) \
         FROM (SELECT md5(concat_ws('|', {})) AS h FROM shop.{}) AS d",
        cols.join(", "),
        pg_ident(table)
    )
}

fn pg_ident(name: &str) -> String {
    format!("\"{}\"", name.replace('"', "\"\""))
}

/// The PostgreSQL target. md5 password authentication, which pgloader's client speaks on every
/// version (Ferry speaks SCRAM as well).
pub(super) fn start_target() -> Result<PostgresServer> {
    Ok(PostgresServer::start_with(PostgresOptions { password_auth: "md5".to_owned(), ..Default::default() })?)
}

async fn pg_connect(server: &PostgresServer, database: &str) -> Result<Client> {
    let (client, conn) = server.config(database).connect(NoTls).await?;
    tokio::spawn(async move {
        let _ = conn.await;
    });
    client.batch_execute("SET TimeZone = 'UTC'").await?;
    Ok(client)
}

/// An empty database `name` on the target (dropped first if there).
async fn fresh_database(server: &PostgresServer, name: &str) -> Result<()> {
    let admin = pg_connect(server, server.database()).await?;
    admin.batch_execute(&format!("DROP DATABASE IF EXISTS {} WITH (FORCE)", pg_ident(name))).await?;
    admin.batch_execute(&format!("CREATE DATABASE {}", pg_ident(name))).await?;
    Ok(())
}

/// A MariaDB → PostgreSQL job over `tables` of `shop`, into schema `shop` of `database`.
fn pg_spec(
    source: &MariaDbServer,
    target: &PostgresServer,
    database: &str,
    task: TaskType,
    tables: &[&str],
    tuning: Tuning,
) -> Result<SyncJobSpec> {
    let mut spec = SyncJobSpec::test().task(task);
    spec.source = support::endpoint(source);
    spec.target = Endpoint {
        host: target.host().into(),
        user: Some(target.user().into()),
        database: Some(database.into()),
        ..Endpoint::test_postgres(target.port())
    };
    spec.objects = ObjectSelection {
        scope: ObjectScope::Table,
        target_database: None,
        databases: vec![DatabaseSelection {
            name: "shop".into(),
            tables: tables.iter().map(|t| TableSelection { name: (*t).into(), ..Default::default() }).collect(),
            ..Default::default()
        }],
    };
    spec.tuning = Some(tuning);
    let errors = spec.validate();
    if !errors.is_empty() {
        let list: Vec<String> = errors.iter().map(ToString::to_string).collect();
        return Err(format!("the benchmark's job spec is invalid: {}", list.join("; ")).into());
    }
    Ok(spec)
}

fn pg_credentials(source: &MariaDbServer, target: &PostgresServer) -> Credentials {
    Credentials {
        source_password: Some(source.password().to_owned()),
        target_password: Some(target.password().to_owned()),
        ..Default::default()
    }
}

/// Tables of `tables` whose PostgreSQL digest in `database` differs from the source's.
async fn compare_pg(
    source: &MariaDbServer,
    target: &PostgresServer,
    database: &str,
    tables: &[&str],
) -> Result<Vec<String>> {
    let mut src = connect(source).await?;
    let tgt = pg_connect(target, database).await?;
    let mut differences = Vec::new();
    for table in tables {
        let (mine, theirs) = (my_digest_sql(table), pg_digest_sql(table));
        let (a, b) = tokio::join!(digest(&mut src, &mine), tgt.query_one(theirs.as_str(), &[]));
        let a = a?;
        let b = b.map_or_else(|e| format!("error: {e}"), |row| row.get::<_, String>(0));
        if a != b {
            differences.push(format!("{table}: source {a} vs target {b}"));
        }
    }
    src.disconnect().await?;
    Ok(differences)
}

/// The key and index count of each full-transfer table on PostgreSQL: `Err` when a table has no
/// primary key where the source has one, or fewer indexes than the source.
async fn check_pg_structure(target: &PostgresServer, database: &str) -> Result<Result<String, String>> {
    let tgt = pg_connect(target, database).await?;
    let mut seen = Vec::new();
    // Indexes on the source: orders a primary key and one secondary, order_items a primary key,
    // order_events one secondary.
    for (table, want_pk, want_indexes) in
        [("orders", true, 2_i64), ("order_items", true, 1), ("order_events", false, 1)]
    {
        let row = tgt
            .query_one(
                "SELECT count(*), count(*) FILTER (WHERE i.indisprimary) FROM pg_index i \
                 JOIN pg_class c ON c.oid = i.indrelid JOIN pg_namespace n ON n.oid = c.relnamespace \
                 WHERE n.nspname = 'shop' AND c.relname = $1",
                &[&table],
            )
            .await?;
        let (indexes, primary): (i64, i64) = (row.get(0), row.get(1));
        if indexes < want_indexes || (want_pk && primary != 1) {
            return Ok(Err(format!(
                "{table}: {indexes} index(es), {primary} primary key(s) on the target; the source has {want_indexes}, {}",
                u8::from(want_pk)
            )));
        }
        seen.push(format!("{table} {indexes}"));
    }
    Ok(Ok(format!("indexes: {}", seen.join(", "))))
}

/// The outcome of one full-transfer tool.
pub(super) struct PgFull {
    name: String,
    seconds: Option<f64>,
    cpu: Cpu,
    failure: Option<String>,
    skipped: Option<String>,
}

pub(super) struct PgFullReport {
    rows: u64,
    results: Vec<PgFull>,
}

/// A `%`-encoded URL component (user, password).
fn url_part(text: &str) -> String {
    text.bytes()
        .map(|b| match b {
            b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'.' | b'_' | b'~' => (b as char).to_string(),
            _ => format!("%{b:02X}"),
        })
        .collect()
}

/// The pgloader command file (it holds both passwords: written mode 0600).
fn pgloader_command(cfg: &Config, source: &MariaDbServer, target: &PostgresServer, database: &str) -> String {
    format!(
        "LOAD DATABASE\n  FROM mysql://{}:{}@{}:{}/shop\n  INTO postgresql://{}:{}@{}:{}/{}?sslmode=disable\n\
         WITH include drop, create tables, create indexes, reset sequences, foreign keys,\n\
         \x20    workers = {}, concurrency = {}, multiple readers per thread, rows per range = {}\n\
         INCLUDING ONLY TABLE NAMES MATCHING 'orders', 'order_items', 'order_events'\n;\n",
        url_part(source.user()),
        url_part(source.password()),
        source.host(),
        source.port(),
        url_part(target.user()),
        url_part(target.password()),
        target.host(),
        target.port(),
        database,
        cfg.pgloader_workers,
        cfg.pgloader_concurrency,
        cfg.pgloader_rows_per_range
    )
}

async fn run_pgloader(
    cfg: &Config,
    source: &MariaDbServer,
    target: &PostgresServer,
    database: &str,
) -> Result<Duration, String> {
    let dir = tempfile::tempdir().map_err(|e| format!("pgloader: {e}"))?;
    let command = dir.path().join("bench.load");
    private_file(&command, &pgloader_command(cfg, source, target, database)).map_err(|e| format!("pgloader: {e}"))?;
    let t = Instant::now();
    let out = tokio::process::Command::new("pgloader")
        .arg("--root-dir")
        .arg(dir.path().join("work"))
        .arg("--logfile")
        .arg(dir.path().join("pgloader.log"))
        .arg("--on-error-stop")
        .arg(&command)
        .output()
        .await
        .map_err(|e| format!("pgloader: {e}"))?;
    let elapsed = t.elapsed();
    let text = format!("{}{}", String::from_utf8_lossy(&out.stderr), String::from_utf8_lossy(&out.stdout));
    if !out.status.success() {
        // Its messages may quote the connection URLs.
        let text = text.replace(source.password(), "***").replace(target.password(), "***");
        return Err(format!("pgloader failed ({}): {}", out.status, text.trim()));
    }
    Ok(elapsed)
}

/// Part `pg-full`.
pub(super) async fn part_full(cfg: &Config, pair: &Pair, target: &PostgresServer) -> Result<PgFullReport> {
    println!(
        "\n== pg-full. MariaDB → PostgreSQL full transfer: {} rows in each of {} ==",
        thousands(cfg.rows as f64),
        FULL_TABLES.join(", ")
    );
    let mut src = connect(&pair.source).await?;
    let have: Option<u64> = src.query_first("SELECT COUNT(*) FROM shop.order_events").await.ok().flatten();
    if have != Some(cfg.rows) {
        generate_full(cfg, &mut src).await?;
    }
    src.disconnect().await?;
    let mut results = vec![
        PgFull {
            name: format!("Ferry FULL_TRANS ({} readers, {}-row chunks)", cfg.readers, cfg.chunk_rows),
            seconds: None,
            cpu: Cpu::default(),
            failure: None,
            skipped: None,
        },
        PgFull {
            name: format!(
                "pgloader (workers {}, concurrency {}, {}-row ranges)",
                cfg.pgloader_workers, cfg.pgloader_concurrency, cfg.pgloader_rows_per_range
            ),
            seconds: None,
            cpu: Cpu::default(),
            failure: None,
            skipped: (!installed("pgloader")).then(|| "pgloader not installed (apt-get install pgloader)".to_owned()),
        },
    ];
    for (i, result) in results.iter_mut().enumerate() {
        if result.skipped.is_some() {
            println!("  {:<52} left out: {}", result.name, result.skipped.as_deref().unwrap_or_default());
            continue;
        }
        let database = if i == 0 { "ferry_full" } else { "pgloader_full" };
        fresh_database(target, database).await?;
        let before = pair.meter.read();
        let run = if i == 0 {
            let tuning =
                Tuning { read_parallelism: Some(cfg.readers), batch_rows: Some(cfg.chunk_rows), ..Default::default() };
            let spec = pg_spec(&pair.source, target, database, TaskType::FullTrans, &FULL_TABLES, tuning)?;
            let credentials = pg_credentials(&pair.source, target);
            let (_stop, stop) = watch::channel(false);
            let tracker = Tracker::new(Arc::new(NoProgress));
            let t = Instant::now();
            match engine::run(Job { id: "bench/pg-full", spec: &spec, credentials: &credentials, tracker, stop }).await
            {
                Ok(_) => Ok(t.elapsed()),
                Err(e) => Err(engine_error(&e)),
            }
        } else {
            run_pgloader(cfg, &pair.source, target, database).await
        };
        result.cpu = pair.meter.read() - before;
        let elapsed = match run {
            Ok(d) => d.as_secs_f64(),
            Err(e) => {
                println!("  {:<52} FAILED: {e}", result.name);
                result.failure = Some(e);
                continue;
            }
        };
        let differences = compare_pg(&pair.source, target, database, &FULL_TABLES).await?;
        let checked = if differences.is_empty() {
            check_pg_structure(target, database).await?
        } else {
            Err(format!("rows differ: {}", differences.join("; ")))
        };
        match checked {
            Ok(indexes) => {
                println!(
                    "  {:<52} {elapsed:>7.2} s  cpu s: tool {:.1}, source {:.1}; every row equal, {indexes}",
                    result.name,
                    result.cpu.own + result.cpu.children,
                    result.cpu.source
                );
                result.seconds = Some(elapsed);
            }
            Err(e) => {
                println!("  {:<52} {elapsed:>7.2} s  FAILED: {e}", result.name);
                result.failure = Some(e);
            }
        }
    }
    Ok(PgFullReport { rows: 3 * cfg.rows, results })
}

/// The lag reader of the `pg-stream` part: every probe interval, the target's clock minus the
/// heartbeat it holds (a `timestamp` holding the source's UTC wall clock).
pub(super) async fn read_lag(config: tokio_postgres::Config, seen: &Seen, stop: &AtomicBool) -> Result<()> {
    const PROBE: &str = "SELECT (extract(epoch FROM clock_timestamp()) * 1000000)::bigint, \
        (extract(epoch FROM (clock_timestamp() AT TIME ZONE 'UTC') - ts) * 1000000)::bigint, \
        (extract(epoch FROM ts) * 1000000)::bigint FROM shop.hb WHERE id = 1";
    let connect = || async {
        let (client, conn) = config.connect(NoTls).await?;
        tokio::spawn(async move {
            let _ = conn.await;
        });
        Ok::<_, Error>(client)
    };
    let mut client = connect().await?;
    let mut tick = tokio::time::interval(PROBE_INTERVAL);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    while !stop.load(Ordering::SeqCst) {
        tick.tick().await;
        match client.query_opt(PROBE, &[]).await {
            Ok(Some(row)) => {
                let (at, lag, heartbeat): (i64, i64, i64) = (row.get(0), row.get(1), row.get(2));
                seen.lags.lock().unwrap_or_else(PoisonError::into_inner).push(LagSample { at, lag, heartbeat });
            }
            Ok(None) => {}
            // A session lost under load: one more try with a new one.
            Err(_) => client = connect().await?,
        }
    }
    Ok(())
}

/// Waits until PostgreSQL holds the source heartbeat `want` (µs) or a later one.
async fn wait_heartbeat_pg(
    target: &Client,
    want: i64,
    limit: Duration,
    ferry: &mut FerryStream,
) -> Result<Duration, String> {
    let t = Instant::now();
    loop {
        if let Ok(Some(row)) =
            target.query_opt("SELECT (extract(epoch FROM ts) * 1000000)::bigint FROM shop.hb WHERE id = 1", &[]).await
            && row.get::<_, i64>(0) >= want
        {
            return Ok(t.elapsed());
        }
        if let Some(e) = ferry.failure().await {
            return Err(e);
        }
        if t.elapsed() > limit {
            return Err(format!("not caught up after {} s", limit.as_secs()));
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

/// What the `pg-stream` part measured.
pub(super) struct PgStreamReport {
    name: String,
    setup_seconds: f64,
    free: Option<Step>,
    equal: Option<Result<(), String>>,
    failure: Option<String>,
}

/// Part `pg-stream`.
pub(super) async fn part_stream(cfg: &Config, pair: &Pair, target: &PostgresServer) -> Result<PgStreamReport> {
    println!(
        "\n== pg-stream. MariaDB → PostgreSQL change stream: sysbench, {} clients, transactions of {}–{} rows, as fast \
         as the clients go for {} s, {} rows to start ==",
        cfg.clients,
        cfg.tx_rows.0,
        cfg.tx_rows.1,
        cfg.free_seconds,
        thousands(cfg.stream_rows as f64)
    );
    let mut report = PgStreamReport {
        name: format!(
            "Ferry FULL_INCR_TRANS → PostgreSQL (applyBatchTransactions {})",
            cfg.apply_batch.map_or_else(|| "default".to_owned(), |n| n.to_string())
        ),
        setup_seconds: f64::NAN,
        free: None,
        equal: None,
        failure: None,
    };
    if !installed("sysbench") {
        report.failure = Some("sysbench is not installed (apt-get install sysbench)".to_owned());
        return Ok(report);
    }
    let sysbench = Sysbench::new(&pair.source)?;
    prepare_change_source(cfg, pair).await?;
    let database = "ferry_stream";
    fresh_database(target, database).await?;
    let tuning =
        Tuning { read_parallelism: Some(cfg.readers), apply_batch_transactions: cfg.apply_batch, ..Default::default() };
    let spec = pg_spec(&pair.source, target, database, TaskType::FullIncrTrans, &["stream", "hb"], tuning)?;
    let setup = Instant::now();
    let mut ferry =
        match FerryStream::start_spec(cfg, "bench/pg-stream", spec, pg_credentials(&pair.source, target)).await {
            Ok(f) => f,
            Err(e) => {
                report.failure = Some(format!("setting up: {e}"));
                return Ok(report);
            }
        };
    report.setup_seconds = setup.elapsed().as_secs_f64();
    println!("  streaming after {:.1} s of setup", report.setup_seconds);
    let mut probe = Probe::start_with(pair.source.opts(None), LagTarget::Postgres(Box::new(target.config(database))))?;
    let outcome = free_load(cfg, pair, target, database, &sysbench, &mut ferry, &mut probe, &mut report).await;
    if let Err(e) = probe.stop().await
        && outcome.is_ok()
    {
        report.failure.get_or_insert(format!("the probe: {e}"));
    }
    if let Some(e) = ferry.stop().await {
        report.failure.get_or_insert(e);
    }
    if let Err(e) = outcome {
        report.failure.get_or_insert(e.to_string());
    }
    if let Some(e) = &report.failure {
        println!("  FAILED: {e}");
    }
    Ok(report)
}

#[allow(clippy::too_many_arguments)]
async fn free_load(
    cfg: &Config,
    pair: &Pair,
    target: &PostgresServer,
    database: &str,
    sysbench: &Sysbench,
    ferry: &mut FerryStream,
    probe: &mut Probe,
    report: &mut PgStreamReport,
) -> Result<()> {
    let tgt = pg_connect(target, database).await?;
    tokio::time::sleep(PROBE_INTERVAL * 3).await;
    if let Err(e) = wait_heartbeat_pg(&tgt, probe.source_heartbeat(), cfg.catch_up_limit, ferry).await {
        report.failure = Some(e);
        return Ok(());
    }
    print_step_header();
    let cpu0 = pair.meter.read();
    let t0 = now_us();
    sysbench.run(cfg, 0, cfg.free_seconds).await?;
    let t1 = now_us();
    let ended = Instant::now();
    if probe.failed() {
        return Err(format!("the probe stopped: {:?}", probe.stop().await.err()).into());
    }
    let last = probe.stop().await?;
    let caught = wait_heartbeat_pg(&tgt, last, cfg.catch_up_limit, ferry).await;
    let catch_up = caught.as_ref().ok().map(|_| ended.elapsed().as_secs_f64());
    let cpu = pair.meter.read() - cpu0;
    let m = measure(&probe.counters(), &probe.lags(), t0, t1);
    let why = if m.samples < 3 { format!("only {} lag readings", m.samples) } else { String::new() };
    let step = Step { rate: None, m, cpu, catch_up, pass: why.is_empty(), why };
    print_step(&step);
    report.free = Some(step);
    if let Err(e) = caught {
        report.failure = Some(e);
        return Ok(());
    }
    let deadline = Instant::now() + Duration::from_secs(10);
    let differences = loop {
        let d = compare_pg(&pair.source, target, database, &["stream", "hb"]).await?;
        if d.is_empty() || Instant::now() > deadline {
            break d;
        }
        tokio::time::sleep(Duration::from_millis(500)).await;
    };
    report.equal = Some(if differences.is_empty() { Ok(()) } else { Err(differences.join("; ")) });
    match report.equal.as_ref() {
        Some(Ok(())) => println!("  after the load: every row of stream and hb equal"),
        Some(Err(e)) => println!("  after the load: ROWS DIFFER: {e}"),
        None => {}
    }
    Ok(())
}

/// The summary lines of the two parts; the number of failures.
pub(super) fn print_summary(
    cfg: &Config,
    full: &Option<Result<PgFullReport>>,
    stream: &Option<Result<PgStreamReport>>,
    mariadb_stream: &Option<Result<Vec<StreamReport>>>,
) -> usize {
    let mut failures = 0;
    if let Some(full) = full {
        match full {
            Err(e) => {
                failures += 1;
                println!("pg-full. MariaDB → PostgreSQL full transfer did not run: {e}");
            }
            Ok(r) => {
                println!(
                    "pg-full. MariaDB → PostgreSQL full transfer: {} rows in 3 tables, each tool into an empty database, \
                     rows compared after each",
                    thousands(r.rows as f64)
                );
                println!(
                    "   {:<56} {:>8} {:>10} {:>14} {:>13}",
                    "", "seconds", "rows/s", "tool/Ferry", "cpu s: tool/src"
                );
                let ferry = r.results.first().and_then(|x| x.seconds);
                for x in &r.results {
                    if let Some(s) = &x.skipped {
                        println!("   {:<56} left out: {s}", x.name);
                        continue;
                    }
                    if let Some(e) = &x.failure {
                        failures += 1;
                        println!("   {:<56} FAILED: {e}", x.name);
                        continue;
                    }
                    let Some(secs) = x.seconds else { continue };
                    let ratio = ferry.map_or_else(|| "—".to_owned(), |f| format!("{:.2}×", secs / f));
                    println!(
                        "   {:<56} {secs:>8.2} {:>10} {ratio:>14} {:>13}",
                        x.name,
                        thousands(r.rows as f64 / secs),
                        format!("{:.1}/{:.1}", x.cpu.own + x.cpu.children, x.cpu.source)
                    );
                }
            }
        }
    }
    if let Some(stream) = stream {
        match stream {
            Err(e) => {
                failures += 1;
                println!("pg-stream. MariaDB → PostgreSQL change stream did not run: {e}");
            }
            Ok(r) => {
                println!(
                    "pg-stream. unlimited load ({} clients, {} s){:>13} {:>9} {:>7} {:>7} {:>7} {:>9} {:>6}",
                    cfg.clients, cfg.free_seconds, "offered", "applied", "p50 s", "p99 s", "max s", "catch-up", "rows"
                );
                let line = |name: &str, f: &Step, equal: &Option<Result<(), String>>| {
                    let rows = match equal {
                        Some(Ok(())) => "equal",
                        Some(Err(_)) => "DIFFER",
                        None => "—",
                    };
                    println!(
                        "   {:<56} {:>9} {:>9} {:>7.2} {:>7.2} {:>7.2} {:>9} {:>6}",
                        name,
                        thousands(f.m.offered),
                        thousands(f.m.applied),
                        f.m.p50,
                        f.m.p99,
                        f.m.max,
                        f.catch_up.map_or_else(|| "—".to_owned(), |c| format!("{c:.2} s")),
                        rows
                    );
                };
                if let Some(f) = &r.free {
                    line(&r.name, f, &r.equal);
                }
                // The MariaDB → MariaDB figures of the same run, when part 3 ran.
                if let Some(Ok(reports)) = mariadb_stream {
                    for m in reports {
                        if let Some(f) = &m.free {
                            line(&format!("(MariaDB → MariaDB) {}", m.name), f, &m.equal);
                        }
                    }
                }
                if let Some(Err(e)) = &r.equal {
                    failures += 1;
                    println!("   {:<56} rows differ: {e}", r.name);
                }
                if let Some(e) = &r.failure {
                    failures += 1;
                    println!("   {:<56} FAILED: {e}", r.name);
                }
            }
        }
    }
    failures
}
