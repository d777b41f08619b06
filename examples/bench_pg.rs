//! PostgreSQL → PostgreSQL benchmark: Ferry side by side with the tools a user would pick
//! instead, in one run, on the same data, everything on this machine (both servers, the load and
//! the tools share its cores). Not a test: figures are printed, nothing is asserted on time. A
//! tool whose target rows differ from the source's is a failed run: it is reported as such and
//! the process exits non-zero once everything has been printed.
//!
//! `cargo run --release --example bench_pg -- [ROWS]` (`scripts/bench-pg.sh [ROWS]`, `make bench`).
//! Four parts, each independent of the others' outcome:
//!
//! 1. **full** — full transfer of three tables of ROWS rows each, generated on the source
//!    (`orders`: bigint key, 12 mixed columns, NULLs in six, a secondary index; `order_items`:
//!    composite key, two lines per order; `order_events`: no key, a plain index, every 50th row
//!    a duplicate of the one before). Each tool creates tables, rows and indexes in an empty
//!    target database: Ferry `FULL_TRANS` (in this process), `pg_dump | psql`, `pg_dump -Fc |
//!    pg_restore`, `pg_dump -Fd -j 2` + `pg_restore -j 2`, `pgcopydb clone` (when installed).
//!    After each, every row of every table and every index definition is compared with the
//!    source. Reported: seconds, rows/s, each peer's time over Ferry's (median of the rounds).
//! 2. **rate** — the highest sustainable change rate of Ferry (`FULL_INCR_TRANS`, in this process)
//!    and of PostgreSQL's own logical replication (publication + subscription with
//!    `copy_data = false` over the same initial rows). pgbench offers a stepped rate of small
//!    transactions (18 inserted rows in one statement, 9 rows updated and 3 deleted by primary
//!    key: 30 changed rows, 60/30/10 %, sent as one compound query) on one 12-column table; a
//!    step passes when the p99 lag is within the limit, the lag does not grow during the step
//!    (median of its last third not above the median of its first third by more than the
//!    growth limit) and the tool catches up afterwards. A failing step, or one where pgbench
//!    offered less than 90 % of the asked rate, is run once more (the machine may be busy with
//!    something else for a moment) before the ramp stops. The
//!    sustainable rate is the source's measured change rate in the highest step that passed;
//!    when the ramp ends without a failing step (the load generator cannot offer more) it is a
//!    lower bound. Each tool starts from a newly made load table and an empty target database.
//! 3. **fixed** — the same pgbench script as fast as its clients go, for both tools: offered and
//!    applied rows/s, lag, catch-up after the load stops, then every row compared.
//! 4. **rss** — Ferry's peak resident memory (this process's VmHWM, reset before) while it
//!    streams one source transaction that inserts BENCH_BIG_ROWS rows of 12 columns.
//!
//! Lag is measured the same way for both tools: the benchmark sets `hb.ts = clock_timestamp()`
//! on the source every 100 ms; every 100 ms, half-way between two writes, the target is asked
//! `clock_timestamp() - ts` of its copy of `hb` (both servers share this machine's clock), so a
//! sample reads the stream's delay plus 50 ms, to within the heartbeat's 100 ms. Offered rows come from the source's
//! own counters (`pg_stat_user_tables`: inserted + updated + deleted rows of the load table),
//! applied rows from the newest key the target holds (inserts take increasing keys; 30 changed
//! rows per 18 inserted). The load and the heartbeat commit with `synchronous_commit = on`
//! (the servers run with it off, which would hold every commit back until the WAL writer's next
//! round, up to 200 ms, and hand the stream bursts of commits): `BENCH_SYNC_COMMIT=off` to
//! compare.
//!
//! Settings (environment; ROWS also as the first argument):
//!
//! | variable | default | meaning |
//! |---|---|---|
//! | `BENCH_ROWS` | 1000000 | rows of each full-transfer table |
//! | `BENCH_ROUNDS` | 1 | full-transfer rounds; the median is reported |
//! | `BENCH_PARTS` | `full,rate,fixed,rss` | the parts to run |
//! | `BENCH_TOOLS` | `ferry,native` | the change-stream tools to run |
//! | `FERRY_READERS` | 2 | Ferry's `readParallelism` |
//! | `FERRY_BATCH_ROWS` | 100000 | Ferry's `batchRows` (rows per chunk) |
//! | `FERRY_APPLY_BATCH` | Ferry's default | Ferry's `applyBatchTransactions` |
//! | `BENCH_STREAM_ROWS` | 100000 | rows in the load table before the load (updated keys lie among them) |
//! | `BENCH_RATE_START` | 10000 | first step, changed rows/s |
//! | `BENCH_RATE_STEP` | 10000 | added at each step |
//! | `BENCH_RATE_MAX` | 1000000 | no step above this |
//! | `BENCH_STEP_SECONDS` | 15 | length of a step |
//! | `BENCH_STEP_RETRIES` | 1 | runs of a failing step before the ramp stops, beyond the first |
//! | `BENCH_LAG_LIMIT` | 2 | p99 lag a step may reach, seconds |
//! | `BENCH_LAG_GROWTH` | 0.5 | growth of the median lag (last third − first third) a step may show, seconds |
//! | `BENCH_CATCH_UP_SECONDS` | 120 | how long a tool may take to catch up after a step |
//! | `BENCH_PAUSE_SECONDS` | 2 | idle time between steps |
//! | `BENCH_CLIENTS` | 2 | pgbench clients (and threads) |
//! | `BENCH_FIXED_SECONDS` | 30 | length of the unthrottled load |
//! | `BENCH_BIG_ROWS` | 1000000 | rows of the one large transaction |
//! | `BENCH_SYNC_COMMIT` | `on` | `synchronous_commit` of the load's and the heartbeat's sessions |

use std::fmt::Write as _;
use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::str::FromStr;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, PoisonError};
use std::time::{Duration, Instant};

use ferry::api::{SyncJobSpec, TaskType, TransferStage, Tuning};
use ferry::engine::{self, Credentials, EngineError, Job, Outcome, Tracker, progress::NoProgress};
use ferry::testkit::PostgresServer;
use tokio::runtime::Handle;
use tokio::sync::watch;
use tokio::task::JoinHandle;
use tokio::time::MissedTickBehavior;
use tokio_postgres::{Client, NoTls};

#[path = "../tests/support/mod.rs"]
mod support;

type Error = Box<dyn std::error::Error + Send + Sync>;

/// The text of an error and of every error under it: tokio-postgres says only "db error" at the
/// top, the server's message is its source.
fn chain(e: &(dyn std::error::Error + 'static)) -> String {
    let mut text = e.to_string();
    let mut source = e.source();
    while let Some(s) = source {
        let _ = write!(text, ": {s}");
        source = s.source();
    }
    text
}

/// The database of the full transfer, on both servers.
const FULL_DB: &str = "shop";
/// The database of the change-stream parts, on both servers.
const LIVE_DB: &str = "live";

const FULL_TABLES: [&str; 3] = ["orders", "order_items", "order_events"];

/// The full-transfer tables; `$1` is the row count of each.
const FULL_SCHEMA: &str = "
    CREATE TABLE orders (
        id bigint PRIMARY KEY, customer_id integer NOT NULL, amount numeric(12,2), note text NOT NULL,
        placed_at timestamptz NOT NULL, ship_date date, paid boolean, attrs jsonb, qty smallint NOT NULL,
        weight double precision, status text NOT NULL, coupon text);
    CREATE TABLE order_items (
        order_id bigint NOT NULL, line smallint NOT NULL, sku text NOT NULL, qty integer NOT NULL,
        unit_price numeric(10,2) NOT NULL, discount numeric(4,2), added_at timestamptz NOT NULL,
        PRIMARY KEY (order_id, line));
    CREATE TABLE order_events (
        order_id bigint NOT NULL, kind text NOT NULL, at timestamptz NOT NULL, payload jsonb, actor text);";

/// `orders`: a ~200-byte note, NULLs in amount, ship_date, paid, attrs, weight and coupon.
const FULL_ORDERS: &str = "
    INSERT INTO orders
    SELECT g, (g * 7919) % 200000, CASE WHEN g % 11 = 0 THEN NULL ELSE ((g * 37) % 1000000) / 100.0 END,
           repeat(md5(g::text), 6) || ' #' || g,
           timestamptz '2024-01-01 00:00:00+00' + g * interval '1.7 seconds',
           CASE WHEN g % 4 = 0 THEN NULL ELSE date '2024-01-01' + (g % 500)::int END,
           CASE WHEN g % 13 = 0 THEN NULL ELSE g % 2 = 0 END,
           CASE WHEN g % 3 = 0 THEN NULL
                ELSE jsonb_build_object('channel', 'web' || (g % 5), 'items', g % 9, 'gift', g % 7 = 0) END,
           (g % 50)::smallint, CASE WHEN g % 5 = 0 THEN NULL ELSE (g % 10000) / 3.0 END,
           (ARRAY['new', 'paid', 'shipped', 'done'])[1 + g % 4], CASE WHEN g % 10 = 0 THEN 'C' || (g % 977) END
    FROM generate_series(1, $1::bigint) g";

/// `order_items`: lines 1 and 2 of orders 1 … $1/2.
const FULL_ITEMS: &str = "
    INSERT INTO order_items
    SELECT (g + 1) / 2, (2 - g % 2)::smallint, 'SKU-' || lpad(((g * 31) % 50000)::text, 6, '0'), 1 + g % 5,
           ((g * 13) % 100000) / 100.0, CASE WHEN g % 6 = 0 THEN 0.15 END,
           timestamptz '2024-01-01 00:00:00+00' + g * interval '0.85 seconds'
    FROM generate_series(1, $1::bigint) g";

/// `order_events`: row g is made from e = g − 1 when g is a multiple of 50, so it repeats the
/// row before exactly.
const FULL_EVENTS: &str = "
    INSERT INTO order_events
    SELECT (e + 2) / 3, (ARRAY['created', 'paid', 'shipped'])[1 + e % 3],
           timestamptz '2024-01-01 00:00:00+00' + e * interval '0.5 seconds',
           CASE WHEN e % 2 = 0 THEN jsonb_build_object('n', e, 'ok', e % 3 = 0) END,
           CASE WHEN e % 4 = 0 THEN NULL ELSE 'user' || (e % 1000) END
    FROM (SELECT g - (g % 50 = 0)::int AS e FROM generate_series(1, $1::bigint) g) s";

const FULL_INDEXES: &str = "
    CREATE INDEX orders_customer ON orders (customer_id, placed_at);
    CREATE INDEX order_events_order ON order_events (order_id);";

/// The load table of the change-stream parts (12 columns) and the rows it starts with.
const LOAD_TABLE: &str = "stream";
const LOAD_COLUMNS: &str = "(
    id bigint PRIMARY KEY, account integer NOT NULL, amount numeric(12,2), note text, created_at timestamptz NOT NULL,
    due date, paid boolean, attrs jsonb, qty smallint NOT NULL, score double precision, status text NOT NULL,
    ref bigint)";
/// One row of the load table made from its key `g` (NULLs in five columns).
const LOAD_ROW: &str = "g, (g * 7919 % 100000)::int, CASE WHEN g % 7 = 0 THEN NULL ELSE round((g % 100000) / 7.0, 2) END, \
    'note ' || md5(g::text), clock_timestamp(), CASE WHEN g % 5 = 0 THEN NULL ELSE date '2025-01-01' + (g % 365)::int END, \
    CASE WHEN g % 11 = 0 THEN NULL ELSE g % 3 = 0 END, \
    CASE WHEN g % 4 = 0 THEN NULL ELSE jsonb_build_object('k', g % 10, 'tag', 't' || (g % 13)) END, \
    (g % 100)::smallint, CASE WHEN g % 6 = 0 THEN NULL ELSE g / 3.0 END, 'new', g % 1000";
/// Rows one load transaction inserts (one statement), updates and deletes (by primary key).
const TX_INSERTS: u64 = 18;
const TX_UPDATES: u64 = 9;
const TX_DELETES: u64 = 3;
const TX_ROWS: u64 = TX_INSERTS + TX_UPDATES + TX_DELETES;

/// `synchronous_commit` of the benchmark's sessions and of pgbench's (`BENCH_SYNC_COMMIT`, on by
/// default). The test servers run with it off, under which a commit reaches the WAL (and so the
/// change stream) only at the WAL writer's next round, up to 200 ms later, and the stream gets
/// the commits in bursts. On, the load and the heartbeat commit as on a production source;
/// `fsync` stays off, so it costs a write to the page cache per commit.
static SYNC_COMMIT: AtomicBool = AtomicBool::new(true);

fn synchronous_commit() -> &'static str {
    if SYNC_COMMIT.load(Ordering::Relaxed) { "synchronous_commit=on" } else { "synchronous_commit=off" }
}

/// How often the heartbeat is written on the source and the lag sampled on the target.
const HEARTBEAT: Duration = Duration::from_millis(100);
/// How long a tool may take to be streaming (Ferry copies the load table first).
const READY_WITHIN: Duration = Duration::from_secs(600);
/// How long the large transaction may take to reach the target.
const BIG_WITHIN: Duration = Duration::from_secs(1800);

/// A step whose measured offered rate falls below this share of the asked rate shows the load
/// generator's limit, not the tool's.
const LOAD_REACHED: f64 = 0.9;

/// The parts of the benchmark to run.
#[derive(Clone, Copy, Debug)]
struct Parts {
    full: bool,
    rate: bool,
    fixed: bool,
    rss: bool,
}

/// Everything one run measures, from the command line and the environment (see the module
/// documentation).
#[derive(Clone, Debug)]
struct Config {
    rows: i64,
    rounds: usize,
    parts: Parts,
    readers: u32,
    batch_rows: u32,
    apply_batch: Option<u32>,
    stream_rows: i64,
    rate_start: u64,
    rate_step: u64,
    rate_max: u64,
    step_seconds: u64,
    lag_limit: f64,
    lag_growth: f64,
    catch_up: Duration,
    pause: Duration,
    clients: u32,
    fixed_seconds: u64,
    big_rows: i64,
    sync_commit: bool,
    tools: Vec<StreamTool>,
    step_retries: u32,
}

fn env_or<T: FromStr>(name: &str, default: T) -> Result<T, Error> {
    match std::env::var(name) {
        Err(_) => Ok(default),
        Ok(v) if v.trim().is_empty() => Ok(default),
        Ok(v) => v.trim().parse().map_err(|_| format!("{name} must be a number, not {v:?}").into()),
    }
}

impl Config {
    fn read() -> Result<Config, Error> {
        let rows = match std::env::args().nth(1) {
            Some(a) => a.parse().map_err(|_| format!("ROWS must be a number, not {a:?}"))?,
            None => env_or("BENCH_ROWS", 1_000_000)?,
        };
        let parts = std::env::var("BENCH_PARTS").unwrap_or_else(|_| "full,rate,fixed,rss".to_owned());
        let names: Vec<&str> = parts.split(',').map(str::trim).filter(|p| !p.is_empty()).collect();
        if let Some(bad) = names.iter().find(|p| !["full", "rate", "fixed", "rss"].contains(p)) {
            return Err(format!("BENCH_PARTS: unknown part {bad:?} (full, rate, fixed, rss)").into());
        }
        let apply_batch = match std::env::var("FERRY_APPLY_BATCH") {
            Ok(v) if !v.trim().is_empty() => {
                Some(v.trim().parse().map_err(|_| format!("FERRY_APPLY_BATCH must be a number, not {v:?}"))?)
            }
            _ => None,
        };
        let config = Config {
            rows,
            rounds: env_or("BENCH_ROUNDS", 1)?,
            parts: Parts {
                full: names.contains(&"full"),
                rate: names.contains(&"rate"),
                fixed: names.contains(&"fixed"),
                rss: names.contains(&"rss"),
            },
            readers: env_or("FERRY_READERS", 2)?,
            batch_rows: env_or("FERRY_BATCH_ROWS", 100_000)?,
            apply_batch,
            stream_rows: env_or("BENCH_STREAM_ROWS", 100_000)?,
            rate_start: env_or("BENCH_RATE_START", 10_000)?,
            rate_step: env_or("BENCH_RATE_STEP", 10_000)?,
            rate_max: env_or("BENCH_RATE_MAX", 1_000_000)?,
            step_seconds: env_or("BENCH_STEP_SECONDS", 15)?,
            lag_limit: env_or("BENCH_LAG_LIMIT", 2.0)?,
            lag_growth: env_or("BENCH_LAG_GROWTH", 0.5)?,
            catch_up: Duration::from_secs(env_or("BENCH_CATCH_UP_SECONDS", 120)?),
            pause: Duration::from_secs(env_or("BENCH_PAUSE_SECONDS", 2)?),
            clients: env_or("BENCH_CLIENTS", 2)?,
            fixed_seconds: env_or("BENCH_FIXED_SECONDS", 30)?,
            big_rows: env_or("BENCH_BIG_ROWS", 1_000_000)?,
            sync_commit: match std::env::var("BENCH_SYNC_COMMIT").as_deref().map(str::trim) {
                Err(_) | Ok("" | "on") => true,
                Ok("off") => false,
                Ok(other) => return Err(format!("BENCH_SYNC_COMMIT must be on or off, not {other:?}").into()),
            },
            tools: {
                let list = std::env::var("BENCH_TOOLS").unwrap_or_else(|_| "ferry,native".to_owned());
                let mut tools = Vec::new();
                for t in list.split(',').map(str::trim).filter(|t| !t.is_empty()) {
                    tools.push(match t {
                        "ferry" => StreamTool::Ferry,
                        "native" => StreamTool::Native,
                        other => return Err(format!("BENCH_TOOLS: unknown tool {other:?} (ferry, native)").into()),
                    });
                }
                tools
            },
            step_retries: env_or("BENCH_STEP_RETRIES", 1)?,
        };
        if config.rows < 2
            || config.rounds == 0
            || config.readers == 0
            || config.stream_rows < 1
            || config.rate_start == 0
            || config.step_seconds == 0
            || config.clients == 0
            || config.fixed_seconds == 0
            || config.big_rows < 1
        {
            return Err(
                "ROWS must be at least 2; rounds, readers, stream rows, rates, seconds and clients positive".into()
            );
        }
        Ok(config)
    }
}

fn quote_ident(name: &str) -> String {
    format!("\"{}\"", name.replace('"', "\"\""))
}

/// A session to `db`, in UTC so that the text of a timestamp reads alike on both servers, with
/// [`synchronous_commit`].
async fn connect(server: &PostgresServer, db: &str) -> Result<Client, Error> {
    connect_with(server.config(db)).await
}

async fn connect_with(config: tokio_postgres::Config) -> Result<Client, Error> {
    let (client, connection) = config.connect(NoTls).await?;
    tokio::spawn(async move {
        if let Err(e) = connection.await {
            tracing::debug!(error = %e, "benchmark session closed");
        }
    });
    client.batch_execute(&format!("SET TimeZone = 'UTC'; SET {}", synchronous_commit())).await?;
    Ok(client)
}

/// An empty database `db` on `server` (sessions still in it are ended).
async fn reset_database(server: &PostgresServer, db: &str) -> Result<(), Error> {
    let c = connect(server, "postgres").await?;
    // Two statements apart: neither may run in the implicit transaction of a multi-statement query.
    c.batch_execute(&format!("DROP DATABASE IF EXISTS {} WITH (FORCE)", quote_ident(db))).await?;
    c.batch_execute(&format!("CREATE DATABASE {}", quote_ident(db))).await?;
    Ok(())
}

async fn checkpoint(servers: &[&PostgresServer]) -> Result<(), Error> {
    for s in servers {
        connect(s, "postgres").await?.batch_execute("CHECKPOINT").await?;
    }
    Ok(())
}

/// A binary of the newest PostgreSQL installed, or `name` from the PATH.
fn pg_bin(name: &str) -> String {
    let mut versions: Vec<(u32, PathBuf)> = std::fs::read_dir("/usr/lib/postgresql")
        .map(|d| {
            d.filter_map(|e| e.ok())
                .filter_map(|e| Some((e.file_name().to_str()?.parse().ok()?, e.path().join("bin").join(name))))
                .filter(|(_, p): &(u32, PathBuf)| p.is_file())
                .collect()
        })
        .unwrap_or_default();
    versions.sort();
    versions.pop().map_or_else(|| name.to_owned(), |(_, p)| p.display().to_string())
}

fn installed(program: &str) -> bool {
    std::process::Command::new(program)
        .arg("--version")
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status()
        .is_ok_and(|s| s.success())
}

/// libpq connection settings without the password (it comes from the private password file,
/// never from a command line).
fn conninfo(server: &PostgresServer, db: &str) -> String {
    format!("host={} port={} user={} dbname={db}", server.host(), server.port(), server.user())
}

/// A libpq password file for both servers, readable by this user only.
fn write_passfile(path: &Path, servers: &[&PostgresServer]) -> Result<(), Error> {
    use std::io::Write;
    use std::os::unix::fs::OpenOptionsExt;
    let escape = |s: &str| s.replace('\\', "\\\\").replace(':', "\\:");
    let mut text = String::new();
    for s in servers {
        let _ = writeln!(text, "{}:{}:*:{}:{}", s.host(), s.port(), escape(s.user()), escape(s.password()));
    }
    let mut f = std::fs::OpenOptions::new().write(true).create(true).truncate(true).mode(0o600).open(path)?;
    f.write_all(text.as_bytes())?;
    Ok(())
}

/// Runs `script` with bash (`pipefail`: a failure anywhere in a pipe fails it), the password
/// file in `PGPASSFILE`, and returns how long it took.
async fn shell(what: &str, script: &str, passfile: &Path) -> Result<Duration, Error> {
    let t = Instant::now();
    let out = tokio::process::Command::new("bash")
        .arg("-c")
        .arg(format!("set -euo pipefail; {script}"))
        .env("PGPASSFILE", passfile)
        .stdin(Stdio::null())
        .output()
        .await?;
    let elapsed = t.elapsed();
    if !out.status.success() {
        let stderr = String::from_utf8_lossy(&out.stderr);
        let tail: Vec<&str> = stderr.lines().rev().take(20).collect();
        let tail: Vec<&str> = tail.into_iter().rev().collect();
        return Err(format!("{what} failed ({}): {}", out.status, tail.join("\n")).into());
    }
    Ok(elapsed)
}

/// Row count and an order-independent checksum of every row's text: equal fingerprints mean
/// the same multiset of rows (duplicates counted).
async fn fingerprint(c: &Client, table: &str) -> Result<String, Error> {
    let sql = format!(
        "SELECT count(*)::text || ' rows, sum ' \
                || coalesce(sum(('x' || substr(h, 1, 15))::bit(60)::bigint), 0)::text || '/' \
                || coalesce(sum(('x' || substr(h, 16, 15))::bit(60)::bigint), 0)::text \
         FROM (SELECT md5(t::text) AS h FROM public.{} AS t) AS s",
        quote_ident(table)
    );
    Ok(c.query_one(&sql, &[]).await?.get(0))
}

/// The table's index definitions without their names, and whether it has a primary key.
async fn structure(c: &Client, table: &str) -> Result<String, Error> {
    let row = c
        .query_one(
            "SELECT coalesce(string_agg(def, '; ' ORDER BY def), '')
                    || ' | primary key: ' || EXISTS (SELECT 1 FROM pg_constraint WHERE conrelid = $1::text::regclass AND contype = 'p')
             FROM (SELECT regexp_replace(pg_get_indexdef(indexrelid), '^(CREATE (UNIQUE )?INDEX )\\S+ ', '\\1') AS def
                   FROM pg_index WHERE indrelid = $1::text::regclass) AS i",
            &[&format!("public.{}", quote_ident(table))],
        )
        .await?;
    Ok(row.get(0))
}

/// The fingerprint of each of `tables` (and its index definitions when `with_structure`); an
/// error in place of what cannot be read.
async fn describe(c: &Client, tables: &[&str], with_structure: bool) -> Vec<String> {
    let mut out = Vec::new();
    for t in tables {
        let rows = fingerprint(c, t).await.unwrap_or_else(|e| format!("error: {e}"));
        if with_structure {
            let indexes = structure(c, t).await.unwrap_or_else(|e| format!("error: {e}"));
            out.push(format!("{t}: {rows}; indexes {indexes}"));
        } else {
            out.push(format!("{t}: {rows}"));
        }
    }
    out
}

/// What differs between a source's description and a target's, or `None`.
fn differences(source: &[String], target: &[String]) -> Option<String> {
    let diffs: Vec<String> =
        source.iter().zip(target).filter(|(a, b)| a != b).map(|(a, b)| format!("source {a} / target {b}")).collect();
    (!diffs.is_empty()).then(|| diffs.join("; "))
}

/// What differs between the source's and the target's `tables`, or `None`.
async fn compare(source: &Client, target: &Client, tables: &[&str]) -> Option<String> {
    differences(&describe(source, tables, false).await, &describe(target, tables, false).await)
}

fn median(mut t: Vec<Duration>) -> Option<Duration> {
    t.sort();
    t.get(t.len() / 2).copied()
}

/// `1234567.8` as `1,234,568`.
fn thousands(x: f64) -> String {
    if !x.is_finite() {
        return "—".to_owned();
    }
    let digits = format!("{:.0}", x.abs());
    let mut out = String::new();
    for (i, c) in digits.chars().enumerate() {
        if i > 0 && (digits.len() - i) % 3 == 0 {
            out.push(',');
        }
        out.push(c);
    }
    if x < -0.5 { format!("-{out}") } else { out }
}

// ---------------------------------------------------------------------------------------------
// CPU and memory accounting from /proc.

fn clock_ticks() -> f64 {
    // SAFETY: sysconf has no preconditions.
    let ticks = unsafe { libc::sysconf(libc::_SC_CLK_TCK) };
    if ticks > 0 { ticks as f64 } else { 100.0 }
}

/// Fields of /proc/PID/stat after the command name: (ppid, utime + stime, cutime + cstime) in
/// clock ticks.
fn proc_stat(pid: &str) -> Option<(u32, u64, u64)> {
    let text = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    let rest = &text[text.rfind(')')? + 1..];
    let f: Vec<&str> = rest.split_whitespace().collect();
    let n = |i: usize| f.get(i).and_then(|v| v.parse::<u64>().ok());
    Some((f.get(1)?.parse().ok()?, n(11)? + n(12)?, n(13)? + n(14)?))
}

/// CPU seconds used so far by a PostgreSQL server: its postmaster, its live processes and the
/// ones that have exited.
fn server_cpu(postmaster: u32) -> f64 {
    let mut ticks = 0;
    if let Ok(dir) = std::fs::read_dir("/proc") {
        for entry in dir.flatten() {
            let name = entry.file_name();
            let Some(pid) = name.to_str().filter(|n| n.bytes().all(|b| b.is_ascii_digit())) else { continue };
            let Some((ppid, own, children)) = proc_stat(pid) else { continue };
            if pid.parse() == Ok(postmaster) {
                ticks += own + children;
            } else if ppid == postmaster {
                ticks += own;
            }
        }
    }
    ticks as f64 / clock_ticks()
}

/// The postmaster's process id: the parent of this session's backend.
async fn postmaster_pid(c: &Client) -> Result<u32, Error> {
    let backend: i32 = c.query_one("SELECT pg_backend_pid()", &[]).await?.get(0);
    Ok(proc_stat(&backend.to_string()).ok_or("cannot read the backend's /proc entry")?.0)
}

/// CPU seconds so far: both servers, this process (Ferry runs in it) and its waited-for children
/// (pgbench).
#[derive(Clone, Copy, Debug, Default)]
struct Cpu {
    source: f64,
    target: f64,
    bench: f64,
    children: f64,
}

impl Cpu {
    fn take(servers: (u32, u32)) -> Cpu {
        let (own, children) = proc_stat("self").map_or((0, 0), |(_, o, c)| (o, c));
        Cpu {
            source: server_cpu(servers.0),
            target: server_cpu(servers.1),
            bench: own as f64 / clock_ticks(),
            children: children as f64 / clock_ticks(),
        }
    }

    fn since(self, before: Cpu) -> Cpu {
        Cpu {
            source: self.source - before.source,
            target: self.target - before.target,
            bench: self.bench - before.bench,
            children: self.children - before.children,
        }
    }

    fn scaled(self, by: f64) -> Cpu {
        Cpu { source: self.source * by, target: self.target * by, bench: self.bench * by, children: self.children * by }
    }
}

/// A line of /proc/self/status in kB (`VmRSS`, `VmHWM`).
fn status_kb(field: &str) -> Option<u64> {
    let text = std::fs::read_to_string("/proc/self/status").ok()?;
    let line = text.lines().find(|l| l.starts_with(field) && l[field.len()..].starts_with(':'))?;
    line[field.len() + 1..].split_whitespace().next()?.parse().ok()
}

/// Resets this process's peak resident size (VmHWM) to its current size.
fn reset_peak_rss() -> Result<(), Error> {
    std::fs::write("/proc/self/clear_refs", "5").map_err(|e| format!("resetting VmHWM: {e}").into())
}

fn mb(kb: u64) -> String {
    format!("{:.0} MB", kb as f64 / 1024.0)
}

// ---------------------------------------------------------------------------------------------
// Part 1: full transfer.

#[derive(Clone, Copy, PartialEq, Eq)]
enum FullTool {
    Ferry,
    DumpPsql,
    DumpCustom,
    DumpDirectory,
    Pgcopydb,
}

impl FullTool {
    fn name(self, config: &Config) -> String {
        match self {
            FullTool::Ferry => format!("Ferry FULL_TRANS, readParallelism {}", config.readers),
            FullTool::DumpPsql => "pg_dump | psql".to_owned(),
            FullTool::DumpCustom => "pg_dump -Fc | pg_restore".to_owned(),
            FullTool::DumpDirectory => "pg_dump -Fd -j 2 + pg_restore -j 2".to_owned(),
            FullTool::Pgcopydb => "pgcopydb clone (2 table jobs, 2 index jobs)".to_owned(),
        }
    }
}

/// One tool's full-transfer result: its median time, or why it failed.
struct FullResult {
    name: String,
    seconds: Option<f64>,
    failure: Option<String>,
}

struct FullReport {
    rows: i64,
    source_mb: f64,
    rounds: usize,
    generated: f64,
    results: Vec<FullResult>,
}

struct Bench<'a> {
    config: &'a Config,
    pair: &'a support::Pair,
    creds: Credentials,
    passfile: PathBuf,
    dir: PathBuf,
    servers: (u32, u32),
    meter: Handle,
}

impl Bench<'_> {
    fn spec(&self, db: &str, task: TaskType, tables: &[&str], tuning: Tuning) -> SyncJobSpec {
        let mut spec = self.pair.spec_in(db, task, tables);
        spec.tuning = Some(tuning);
        spec
    }

    async fn run_full_tool(&self, tool: FullTool, round: usize) -> Result<Duration, Error> {
        let (source, target) = (&self.pair.source, &self.pair.target);
        let (src, tgt) = (conninfo(source, FULL_DB), conninfo(target, FULL_DB));
        let (dump, restore, psql) = (pg_bin("pg_dump"), pg_bin("pg_restore"), pg_bin("psql"));
        let dir = self.dir.display().to_string();
        let pass = &self.passfile;
        match tool {
            FullTool::Ferry => {
                let tuning = Tuning {
                    read_parallelism: Some(self.config.readers),
                    batch_rows: Some(self.config.batch_rows),
                    ..Default::default()
                };
                let spec = self.spec(FULL_DB, TaskType::FullTrans, &FULL_TABLES, tuning);
                let id = format!("bench/full-{round}");
                let (_stop_tx, stop) = watch::channel(false);
                let t = Instant::now();
                let run = engine::run(Job {
                    id: &id,
                    spec: &spec,
                    credentials: &self.creds,
                    tracker: Tracker::new(Arc::new(NoProgress)),
                    stop,
                })
                .await;
                let elapsed = t.elapsed();
                let released = engine::release(&id, &spec, &self.creds).await;
                match run {
                    Ok(Outcome::Completed) => {}
                    Ok(other) => return Err(format!("Ferry ended with {other:?} instead of completing").into()),
                    Err(e) => return Err(format!("Ferry failed: {e} ({})", e.code()).into()),
                }
                released.map_err(|e| format!("releasing Ferry's job: {e}"))?;
                Ok(elapsed)
            }
            FullTool::DumpPsql => {
                shell(
                    "pg_dump | psql",
                    &format!("'{dump}' -d '{src}' | '{psql}' -X -q -v ON_ERROR_STOP=1 -d '{tgt}' > /dev/null"),
                    pass,
                )
                .await
            }
            FullTool::DumpCustom => {
                shell("pg_dump -Fc | pg_restore", &format!("'{dump}' -Fc -d '{src}' | '{restore}' -d '{tgt}'"), pass)
                    .await
            }
            FullTool::DumpDirectory => {
                let out = format!("{dir}/dump");
                let _ = std::fs::remove_dir_all(&out);
                let t = shell(
                    "pg_dump -Fd -j 2 + pg_restore -j 2",
                    &format!("'{dump}' -Fd -j 2 -f '{out}' -d '{src}' && '{restore}' -j 2 -d '{tgt}' '{out}'"),
                    pass,
                )
                .await;
                let _ = std::fs::remove_dir_all(&out);
                t
            }
            FullTool::Pgcopydb => {
                let work = format!("{dir}/pgcopydb");
                let _ = std::fs::remove_dir_all(&work);
                let t = shell(
                    "pgcopydb clone",
                    &format!(
                        "pgcopydb clone --source '{src}' --target '{tgt}' --table-jobs 2 --index-jobs 2 --dir '{work}' \
                         --no-owner --no-acl --skip-extensions > '{dir}/pgcopydb.log' 2>&1 \
                         || {{ tail -n 20 '{dir}/pgcopydb.log' >&2; exit 1; }}"
                    ),
                    pass,
                )
                .await;
                let _ = std::fs::remove_dir_all(&work);
                t
            }
        }
    }

    async fn full_transfer(&self) -> Result<FullReport, Error> {
        let config = self.config;
        let (source, target) = (&self.pair.source, &self.pair.target);
        let src = connect(source, FULL_DB).await?;
        println!("== 1. full transfer: 3 tables × {} rows ==", thousands(config.rows as f64));
        let t = Instant::now();
        src.batch_execute(FULL_SCHEMA).await?;
        for insert in [FULL_ORDERS, FULL_ITEMS, FULL_EVENTS] {
            src.execute(insert, &[&config.rows]).await?;
        }
        src.batch_execute(FULL_INDEXES).await?;
        src.batch_execute("VACUUM ANALYZE").await?;
        let generated = t.elapsed().as_secs_f64();
        let mut source_bytes = 0;
        for table in FULL_TABLES {
            let row = src
                .query_one(
                    "SELECT pg_table_size($1::text::regclass), pg_indexes_size($1::text::regclass)",
                    &[&format!("public.{}", quote_ident(table))],
                )
                .await?;
            let (data, index): (i64, i64) = (row.get(0), row.get(1));
            println!("{table:<13} {:>7.0} MB data {:>6.0} MB indexes", data as f64 / 1e6, index as f64 / 1e6);
            source_bytes += data + index;
        }
        println!("generated in {generated:.1} s; {:.0} MB on the source", source_bytes as f64 / 1e6);
        let expected = describe(&src, &FULL_TABLES, true).await;
        if let Some(e) = expected.iter().find(|d| d.contains("error: ")) {
            return Err(format!("reading the source: {e}").into());
        }

        let mut tools = vec![FullTool::Ferry, FullTool::DumpPsql, FullTool::DumpCustom, FullTool::DumpDirectory];
        if installed("pgcopydb") {
            tools.push(FullTool::Pgcopydb);
        } else {
            println!("pgcopydb is not installed (apt-get install pgcopydb); left out");
        }
        let mut times: Vec<Vec<Duration>> = vec![Vec::new(); tools.len()];
        let mut failures: Vec<Option<String>> = vec![None; tools.len()];
        for round in 0..config.rounds {
            for (i, tool) in tools.iter().enumerate() {
                if failures[i].is_some() {
                    continue;
                }
                let name = tool.name(config);
                reset_database(target, FULL_DB).await?;
                checkpoint(&[source, target]).await?;
                let result = match self.run_full_tool(*tool, round).await {
                    Ok(d) => {
                        let tgt = connect(target, FULL_DB).await?;
                        match differences(&expected, &describe(&tgt, &FULL_TABLES, true).await) {
                            None => Ok(d),
                            Some(diff) => Err(format!("target differs from the source: {diff}")),
                        }
                    }
                    Err(e) => Err(chain(e.as_ref())),
                };
                match result {
                    Ok(d) => {
                        println!(
                            "round {}: {name:<45} {:>7.2} s, every row and index equal",
                            round + 1,
                            d.as_secs_f64()
                        );
                        times[i].push(d);
                    }
                    Err(e) => {
                        println!("round {}: {name:<45} FAILED: {e}", round + 1);
                        failures[i] = Some(e);
                    }
                }
            }
        }
        reset_database(target, FULL_DB).await?;
        let results = tools
            .iter()
            .zip(times)
            .zip(failures)
            .map(|((tool, t), failure)| FullResult {
                name: tool.name(config),
                seconds: if failure.is_some() { None } else { median(t).map(|d| d.as_secs_f64()) },
                failure,
            })
            .collect();
        Ok(FullReport {
            rows: config.rows * FULL_TABLES.len() as i64,
            source_mb: source_bytes as f64 / 1e6,
            rounds: config.rounds,
            generated,
            results,
        })
    }
}

// ---------------------------------------------------------------------------------------------
// Parts 2 and 3: change stream.

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum StreamTool {
    Ferry,
    Native,
}

impl StreamTool {
    fn name(self) -> &'static str {
        match self {
            StreamTool::Ferry => "Ferry FULL_INCR_TRANS",
            StreamTool::Native => "PostgreSQL logical replication",
        }
    }
}

/// One lag sample on the target.
#[derive(Clone, Copy, Debug)]
struct Sample {
    at: Instant,
    /// Seconds between the target's clock and the newest heartbeat it holds.
    lag: f64,
    /// The newest key of the load table the target holds.
    max_id: i64,
}

/// The heartbeat writer (source) and the lag sampler (target), on their own runtime so that
/// a busy Ferry does not delay them.
struct Meters {
    samples: Arc<Mutex<Vec<Sample>>>,
    beating: Arc<AtomicBool>,
    stop: Arc<AtomicBool>,
    error: Arc<Mutex<Option<String>>>,
    tasks: Vec<JoinHandle<()>>,
}

const SAMPLE: &str = "SELECT extract(epoch FROM clock_timestamp() - h.ts)::float8, \
                      (SELECT coalesce(max(id), 0) FROM public.stream) FROM public.hb AS h WHERE h.id = 1";

impl Meters {
    fn start(meter: &Handle, source: tokio_postgres::Config, target: tokio_postgres::Config) -> Meters {
        let samples = Arc::new(Mutex::new(Vec::new()));
        let beating = Arc::new(AtomicBool::new(true));
        let stop = Arc::new(AtomicBool::new(false));
        let error: Arc<Mutex<Option<String>>> = Arc::new(Mutex::new(None));
        let note = |error: &Arc<Mutex<Option<String>>>, e: String| {
            *error.lock().unwrap_or_else(PoisonError::into_inner) = Some(e);
        };
        // The sampler reads half a heartbeat after each write: a sample's lag is the stream's
        // delay plus 50 ms when the stream keeps within 50 ms, read to the heartbeat's 100 ms
        // otherwise; in every window alike.
        let first = tokio::time::Instant::now() + HEARTBEAT;
        let heart = meter.spawn({
            let (beating, stop, error) = (beating.clone(), stop.clone(), error.clone());
            async move {
                let client = match connect_with(source).await {
                    Ok(c) => c,
                    Err(e) => return note(&error, format!("heartbeat: {e}")),
                };
                let mut tick = tokio::time::interval_at(first, HEARTBEAT);
                tick.set_missed_tick_behavior(MissedTickBehavior::Skip);
                while !stop.load(Ordering::Relaxed) {
                    tick.tick().await;
                    if beating.load(Ordering::Relaxed)
                        && let Err(e) =
                            client.execute("UPDATE public.hb SET ts = clock_timestamp() WHERE id = 1", &[]).await
                    {
                        note(&error, format!("heartbeat: {e}"));
                    }
                }
            }
        });
        let sampler = meter.spawn({
            let (samples, stop, error) = (samples.clone(), stop.clone(), error.clone());
            async move {
                let client = match connect_with(target).await {
                    Ok(c) => c,
                    Err(e) => return note(&error, format!("lag sampler: {e}")),
                };
                let mut tick = tokio::time::interval_at(first + HEARTBEAT / 2, HEARTBEAT);
                tick.set_missed_tick_behavior(MissedTickBehavior::Skip);
                while !stop.load(Ordering::Relaxed) {
                    tick.tick().await;
                    match client.query_one(SAMPLE, &[]).await {
                        Ok(row) => {
                            let s = Sample { at: Instant::now(), lag: row.get(0), max_id: row.get(1) };
                            samples.lock().unwrap_or_else(PoisonError::into_inner).push(s);
                        }
                        Err(e) => note(&error, format!("lag sampler: {e}")),
                    }
                }
            }
        });
        Meters { samples, beating, stop, error, tasks: vec![heart, sampler] }
    }

    /// Starts the heartbeat again and waits until the target holds a fresh one, so that the
    /// first samples of a window do not read the time the heartbeat was stopped as lag.
    async fn resume(&self, running: &Running) {
        self.beating.store(true, Ordering::Relaxed);
        let since = Instant::now();
        while since.elapsed() < Duration::from_secs(30) && !running.ended() {
            tokio::time::sleep(HEARTBEAT).await;
            // A heartbeat younger than the time since the restart was written after it.
            let fresh = self
                .samples
                .lock()
                .unwrap_or_else(PoisonError::into_inner)
                .last()
                .is_some_and(|s| s.at > since && s.lag < (s.at - since).as_secs_f64());
            if fresh {
                return;
            }
        }
    }

    fn between(&self, from: Instant, to: Instant) -> Vec<Sample> {
        let samples = self.samples.lock().unwrap_or_else(PoisonError::into_inner);
        samples.iter().filter(|s| s.at >= from && s.at <= to).copied().collect()
    }

    /// The newest key the target held at `at` (the last sample before it).
    fn max_id_at(&self, at: Instant) -> Option<i64> {
        let samples = self.samples.lock().unwrap_or_else(PoisonError::into_inner);
        samples.iter().rev().find(|s| s.at <= at).or_else(|| samples.iter().find(|s| s.at > at)).map(|s| s.max_id)
    }

    fn last_error(&self) -> Option<String> {
        self.error.lock().unwrap_or_else(PoisonError::into_inner).clone()
    }

    async fn stop(self) {
        self.stop.store(true, Ordering::Relaxed);
        for t in self.tasks {
            let _ = t.await;
        }
    }
}

/// Lag over a load window.
#[derive(Clone, Copy, Debug)]
struct Lag {
    p50: f64,
    p99: f64,
    max: f64,
    /// Medians of the window's first and last thirds.
    first: f64,
    last: f64,
}

fn percentile(sorted: &[f64], p: f64) -> f64 {
    if sorted.is_empty() {
        return f64::NAN;
    }
    let rank = (p * sorted.len() as f64).ceil() as usize;
    sorted[rank.clamp(1, sorted.len()) - 1]
}

impl Lag {
    fn of(samples: &[Sample]) -> Option<Lag> {
        if samples.is_empty() {
            return None;
        }
        let mut all: Vec<f64> = samples.iter().map(|s| s.lag).collect();
        let third = (samples.len() / 3).max(1);
        let mut first: Vec<f64> = all[..third].to_vec();
        let mut last: Vec<f64> = all[all.len() - third..].to_vec();
        for v in [&mut all, &mut first, &mut last] {
            v.sort_by(f64::total_cmp);
        }
        Some(Lag {
            p50: percentile(&all, 0.5),
            p99: percentile(&all, 0.99),
            max: percentile(&all, 1.0),
            first: percentile(&first, 0.5),
            last: percentile(&last, 0.5),
        })
    }
}

#[derive(Clone, Debug, PartialEq)]
enum Verdict {
    Pass,
    /// Passed, but the load generator could not offer the asked rate: no higher step is tried.
    LoadLimited,
    Fail(String),
}

/// One load window: pgbench at a rate (or unthrottled), then the catch-up.
#[derive(Clone, Debug)]
struct LoadRun {
    asked: Option<u64>,
    /// Changed rows per second the source counted.
    offered: f64,
    /// Changed rows per second pgbench's committed transactions account for.
    pgbench: f64,
    failed_transactions: u64,
    /// Changed rows per second that reached the target during the window.
    applied: f64,
    lag: Option<Lag>,
    /// From the end of the load until the target held the last heartbeat.
    catch_up: Option<f64>,
    /// CPU during the load, as a share of one core.
    cpu_load: Cpu,
    /// CPU seconds per 100,000 changed rows, load and catch-up together.
    cpu_per_100k: Option<Cpu>,
    verdict: Verdict,
}

struct FixedReport {
    run: LoadRun,
    rows_equal: Result<(), String>,
}

struct StreamReport {
    tool: StreamTool,
    steps: Vec<LoadRun>,
    stopped: String,
    fixed: Option<FixedReport>,
    /// Failures of the tool itself (an error, rows that differ).
    errors: Vec<String>,
    /// This process's peak RSS during the parts (Ferry runs in it), kB.
    peak_rss: Option<u64>,
}

impl StreamReport {
    /// The highest passing step's offered rate, and whether the ramp ended without a failing
    /// step (at the load generator's limit or BENCH_RATE_MAX: the tool's own limit lies higher).
    fn sustainable(&self) -> Option<(f64, bool)> {
        let passed = self.steps.iter().filter(|s| matches!(s.verdict, Verdict::Pass | Verdict::LoadLimited));
        let top = passed.max_by(|a, b| a.offered.total_cmp(&b.offered))?;
        let limited = self.steps.last().is_some_and(|s| !matches!(s.verdict, Verdict::Fail(_)));
        Some((top.offered, limited))
    }
}

/// A tool streaming the load table and `hb` from the source's `live` to the target's.
enum Running {
    Ferry {
        id: String,
        spec: Box<SyncJobSpec>,
        stop: watch::Sender<bool>,
        runner: JoinHandle<Result<Outcome, EngineError>>,
    },
    Native,
}

impl Running {
    fn ended(&self) -> bool {
        match self {
            Running::Ferry { runner, .. } => runner.is_finished(),
            Running::Native => false,
        }
    }
}

/// The change-stream side of the benchmark: sessions to `live` on both servers.
struct Live<'a> {
    bench: &'a Bench<'a>,
    src: Client,
    tgt: Client,
    script: PathBuf,
}

impl Bench<'_> {
    /// The load table with `stream_rows` rows, the sequences the load takes keys from (inserts
    /// above the first rows, deletes of the oldest inserted rows: an update, drawn among the
    /// first rows, always finds its row) and the heartbeat table, all anew.
    ///
    /// On a session of its own, ended before this returns: a session's row counters reach the
    /// statistics when it ends, and the load's counters must not take in the first rows.
    async fn prepare_source(&self) -> Result<(), Error> {
        let src = connect(&self.pair.source, LIVE_DB).await?;
        let n = self.config.stream_rows;
        src.batch_execute(&format!(
            "DROP TABLE IF EXISTS stream, hb, big; DROP SEQUENCE IF EXISTS stream_ins, stream_del;
             CREATE TABLE stream {LOAD_COLUMNS};
             CREATE SEQUENCE stream_ins START {start}; CREATE SEQUENCE stream_del START {start};
             CREATE TABLE hb (id int PRIMARY KEY, ts timestamptz NOT NULL);
             INSERT INTO hb VALUES (1, clock_timestamp());",
            start = n + 1
        ))
        .await?;
        src.execute(&format!("INSERT INTO stream SELECT {LOAD_ROW} FROM generate_series(1, $1::bigint) AS g"), &[&n])
            .await?;
        src.batch_execute("VACUUM ANALYZE stream, hb").await?;
        Ok(())
    }

    /// The pgbench script: one transaction of TX_INSERTS inserted rows (one statement),
    /// TX_UPDATES rows updated and TX_DELETES deleted by primary key, sent as one compound query
    /// (`\;`): one round trip per transaction, so that two clients can offer more than the
    /// tools take.
    fn write_script(&self) -> Result<PathBuf, Error> {
        let n = self.config.stream_rows;
        let mut s = String::new();
        for i in 1..=TX_UPDATES {
            let _ = writeln!(s, "\\set u{i} random(1, {n})");
        }
        let keys: Vec<String> = (1..=TX_UPDATES).map(|i| format!(":u{i}")).collect();
        let _ = writeln!(s, "BEGIN \\;");
        let _ = writeln!(
            s,
            "INSERT INTO stream SELECT {LOAD_ROW} FROM (SELECT nextval('stream_ins') AS g FROM generate_series(1, {TX_INSERTS})) AS s \\;"
        );
        let _ = writeln!(
            s,
            "UPDATE stream SET amount = coalesce(amount, 0) + 1, qty = (qty + 1) % 30000, score = random(), status = 'updated', \
             attrs = coalesce(attrs, '{{}}'::jsonb) || jsonb_build_object('u', :u1) WHERE id IN ({}) \\;",
            keys.join(", ")
        );
        let _ = writeln!(
            s,
            "DELETE FROM stream WHERE id = ANY (ARRAY(SELECT nextval('stream_del') FROM generate_series(1, {TX_DELETES}))) \\;"
        );
        let _ = writeln!(s, "COMMIT;");
        let path = self.dir.join("load.sql");
        std::fs::write(&path, s)?;
        Ok(path)
    }

    async fn start_tool(&self, tool: StreamTool, live: &Live<'_>) -> Result<Running, Error> {
        let (source, target) = (&self.pair.source, &self.pair.target);
        match tool {
            StreamTool::Ferry => {
                let tuning = Tuning { apply_batch_transactions: self.config.apply_batch, ..Default::default() };
                let spec = self.spec(LIVE_DB, TaskType::FullIncrTrans, &[LOAD_TABLE, "hb"], tuning);
                let id = "bench/stream".to_owned();
                let tracker = Tracker::new(Arc::new(NoProgress));
                let (stop, stop_rx) = watch::channel(false);
                let runner = tokio::spawn({
                    let (spec, creds, tracker, id) = (spec.clone(), self.creds.clone(), tracker.clone(), id.clone());
                    async move {
                        engine::run(Job { id: &id, spec: &spec, credentials: &creds, tracker, stop: stop_rx }).await
                    }
                });
                let running = Running::Ferry { id, spec: Box::new(spec), stop, runner };
                let waiting = Instant::now();
                while tracker.snapshot().0.stage != Some(TransferStage::Incremental) {
                    if running.ended() || waiting.elapsed() > READY_WITHIN {
                        return Ok(running);
                    }
                    tokio::time::sleep(Duration::from_millis(100)).await;
                }
                Ok(running)
            }
            StreamTool::Native => {
                shell(
                    "pg_dump | psql (the initial rows of the subscription)",
                    &format!(
                        "'{}' -d '{}' -t public.stream -t public.hb | '{}' -X -q -v ON_ERROR_STOP=1 -d '{}' > /dev/null",
                        pg_bin("pg_dump"),
                        conninfo(source, LIVE_DB),
                        pg_bin("psql"),
                        conninfo(target, LIVE_DB)
                    ),
                    &self.passfile,
                )
                .await?;
                live.src.batch_execute("CREATE PUBLICATION bench_pub FOR TABLE stream, hb").await?;
                // The subscription keeps its connection string in the target's catalog, password
                // included (superusers only read it); these servers are thrown away at the end.
                let connection = format!(
                    "{} password={}",
                    conninfo(source, LIVE_DB),
                    source.password().replace('\\', "\\\\").replace('\'', "\\'")
                );
                live.tgt
                    .batch_execute(&format!(
                        "CREATE SUBSCRIPTION bench_sub CONNECTION '{}' PUBLICATION bench_pub WITH (copy_data = false)",
                        connection.replace('\'', "''")
                    ))
                    .await?;
                Ok(Running::Native)
            }
        }
    }

    async fn stop_tool(&self, running: Running, live: &Live<'_>) -> Result<(), Error> {
        match running {
            Running::Ferry { id, spec, stop, runner } => {
                let _ = stop.send(true);
                let ended = match tokio::time::timeout(Duration::from_secs(120), runner).await {
                    Ok(Ok(Ok(_))) => Ok(()),
                    Ok(Ok(Err(e))) => Err(format!("Ferry's stream failed: {e} ({})", e.code())),
                    Ok(Err(e)) => Err(format!("Ferry's stream task failed: {e}")),
                    Err(_) => Err("Ferry's stream did not stop within 120 s".to_owned()),
                };
                engine::release(&id, &spec, &self.creds).await.map_err(|e| format!("releasing Ferry's job: {e}"))?;
                ended.map_err(Into::into)
            }
            Running::Native => {
                live.tgt.batch_execute("DROP SUBSCRIPTION IF EXISTS bench_sub").await?;
                live.src.batch_execute("DROP PUBLICATION IF EXISTS bench_pub").await?;
                Ok(())
            }
        }
    }
}

impl Live<'_> {
    /// Changed rows of the load table the source has counted so far (its counters reach the
    /// statistics when a session ends or at most a second after a transaction: read them until
    /// they stop moving).
    async fn changed_rows(&self) -> Result<i64, Error> {
        let sql = "SELECT coalesce(sum(n_tup_ins + n_tup_upd + n_tup_del), 0)::bigint FROM pg_stat_user_tables \
                   WHERE relid = 'public.stream'::regclass";
        let mut last: i64 = self.src.query_one(sql, &[]).await?.get(0);
        for _ in 0..20 {
            tokio::time::sleep(Duration::from_millis(250)).await;
            let now: i64 = self.src.query_one(sql, &[]).await?.get(0);
            if now == last {
                break;
            }
            last = now;
        }
        Ok(last)
    }

    /// Stops the heartbeat, writes a last one and waits until the target holds it: the time
    /// from `since` until then, or `None` after `within` or when the tool ended. The heartbeat
    /// stays stopped (the caller may compare the tables).
    async fn catch_up(
        &self,
        meters: &Meters,
        running: &Running,
        since: Instant,
        within: Duration,
    ) -> Result<Option<f64>, Error> {
        meters.beating.store(false, Ordering::Relaxed);
        let last: i64 = self
            .src
            .query_one(
                "UPDATE public.hb SET ts = clock_timestamp() WHERE id = 1 RETURNING (extract(epoch FROM ts) * 1000000)::bigint",
                &[],
            )
            .await?
            .get(0);
        loop {
            let held: Option<i64> = self
                .tgt
                .query_opt("SELECT (extract(epoch FROM ts) * 1000000)::bigint FROM public.hb WHERE id = 1", &[])
                .await
                .ok()
                .flatten()
                .map(|r| r.get(0));
            if held.is_some_and(|h| h >= last) {
                return Ok(Some(since.elapsed().as_secs_f64()));
            }
            if running.ended() || since.elapsed() > within {
                return Ok(None);
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }

    /// pgbench for `seconds` at `rate` changed rows/s (unthrottled when `None`), then the
    /// catch-up.
    async fn load(
        &self,
        meters: &Meters,
        running: &Running,
        rate: Option<u64>,
        seconds: u64,
        catch_up_within: Duration,
    ) -> Result<LoadRun, Error> {
        let config = self.bench.config;
        let source = &self.bench.pair.source;
        let before = self.changed_rows().await?;
        meters.resume(running).await;
        let clients = config.clients.to_string();
        let mut args: Vec<String> = vec![
            "-n".into(),
            "-f".into(),
            self.script.display().to_string(),
            "-c".into(),
            clients.clone(),
            "-j".into(),
            clients,
            "-T".into(),
            seconds.to_string(),
            "-h".into(),
            source.host().into(),
            "-p".into(),
            source.port().to_string(),
            "-U".into(),
            source.user().into(),
        ];
        if let Some(r) = rate {
            args.push("--rate".into());
            args.push(format!("{:.3}", r as f64 / TX_ROWS as f64));
        }
        args.push(LIVE_DB.into());
        let cpu0 = Cpu::take(self.bench.servers);
        let t0 = Instant::now();
        let out = tokio::process::Command::new(pg_bin("pgbench"))
            .args(&args)
            .env("PGPASSFILE", &self.bench.passfile)
            .env("PGOPTIONS", format!("-c {}", synchronous_commit()))
            .stdin(Stdio::null())
            .output()
            .await?;
        let t1 = Instant::now();
        let cpu1 = Cpu::take(self.bench.servers);
        let report = String::from_utf8_lossy(&out.stdout);
        if !out.status.success() {
            return Err(format!("pgbench failed: {}{report}", String::from_utf8_lossy(&out.stderr)).into());
        }
        let number = |prefix: &str| -> Option<u64> {
            let line = report.lines().find(|l| l.starts_with(prefix))?;
            line[prefix.len()..].split_whitespace().next()?.parse().ok()
        };
        let transactions = number("number of transactions actually processed:")
            .ok_or_else(|| format!("no transaction count in pgbench's report:\n{report}"))?;
        let failed_transactions = number("number of failed transactions:").unwrap_or(0);
        let catch_up = self.catch_up(meters, running, t1, catch_up_within).await?;
        let cpu2 = Cpu::take(self.bench.servers);
        let changed = (self.changed_rows().await? - before) as f64;
        let window = (t1 - t0).as_secs_f64();
        let samples = meters.between(t0, t1);
        let lag = Lag::of(&samples);
        let applied = match (meters.max_id_at(t0), meters.max_id_at(t1)) {
            (Some(a), Some(b)) => (b - a) as f64 * TX_ROWS as f64 / TX_INSERTS as f64 / window,
            _ => f64::NAN,
        };
        let offered = changed / window;
        let verdict = if running.ended() {
            Verdict::Fail("the tool stopped".into())
        } else if catch_up.is_none() {
            Verdict::Fail(format!("not caught up within {} s", catch_up_within.as_secs()))
        } else if let Some(lag) = lag {
            if lag.p99 > config.lag_limit {
                Verdict::Fail(format!("p99 lag {:.2} s > {} s", lag.p99, config.lag_limit))
            } else if lag.last - lag.first > config.lag_growth {
                Verdict::Fail(format!("lag grew from {:.2} s to {:.2} s", lag.first, lag.last))
            } else if rate.is_some_and(|r| offered < LOAD_REACHED * r as f64) {
                Verdict::LoadLimited
            } else {
                Verdict::Pass
            }
        } else {
            Verdict::Fail(format!(
                "no lag samples ({})",
                meters.last_error().unwrap_or_else(|| "the sampler read nothing".into())
            ))
        };
        Ok(LoadRun {
            asked: rate,
            offered,
            pgbench: (transactions * TX_ROWS) as f64 / window,
            failed_transactions,
            applied,
            lag,
            catch_up,
            cpu_load: cpu1.since(cpu0).scaled(100.0 / window),
            cpu_per_100k: (changed > 0.0).then(|| cpu2.since(cpu0).scaled(100_000.0 / changed)),
            verdict,
        })
    }
}

fn step_header() {
    println!(
        "{:>9} {:>10} {:>10} {:>10} {:>7} {:>7} {:>7} {:>8}  {:>19}  verdict",
        "asked/s", "offered/s", "pgbench/s", "applied/s", "lag p50", "p99", "max", "catch-up", "cpu % src/tgt/proc/pgb"
    );
}

fn step_line(run: &LoadRun) {
    let secs = |v: Option<f64>| v.map_or_else(|| "—".to_owned(), |v| format!("{v:.2}"));
    let verdict = match &run.verdict {
        Verdict::Pass => "pass".to_owned(),
        Verdict::LoadLimited => "pass (load generator limit)".to_owned(),
        Verdict::Fail(why) => format!("FAIL: {why}"),
    };
    let c = run.cpu_load;
    let mut line = format!(
        "{:>9} {:>10} {:>10} {:>10} {:>7} {:>7} {:>7} {:>8}  {:>19}  {verdict}",
        run.asked.map_or_else(|| "max".to_owned(), |r| thousands(r as f64)),
        thousands(run.offered),
        thousands(run.pgbench),
        thousands(run.applied),
        secs(run.lag.map(|l| l.p50)),
        secs(run.lag.map(|l| l.p99)),
        secs(run.lag.map(|l| l.max)),
        secs(run.catch_up),
        format!("{:.0}/{:.0}/{:.0}/{:.0}", c.source, c.target, c.bench, c.children),
    );
    if run.failed_transactions > 0 {
        let _ = write!(line, " ({} pgbench transactions failed)", run.failed_transactions);
    }
    println!("{line}");
}

impl Bench<'_> {
    async fn stream_tool(&self, tool: StreamTool) -> Result<StreamReport, Error> {
        let config = self.config;
        let (source, target) = (&self.pair.source, &self.pair.target);
        println!("\n-- {} --", tool.name());
        let mut report = StreamReport {
            tool,
            steps: Vec::new(),
            stopped: String::new(),
            fixed: None,
            errors: Vec::new(),
            peak_rss: None,
        };
        let src = connect(source, LIVE_DB).await?;
        self.prepare_source().await?;
        reset_database(target, LIVE_DB).await?;
        checkpoint(&[source, target]).await?;
        let live = Live { bench: self, src, tgt: connect(target, LIVE_DB).await?, script: self.write_script()? };
        reset_peak_rss()?;
        let started = Instant::now();
        let running = self.start_tool(tool, &live).await?;
        let meters = Meters::start(&self.meter, source.config(LIVE_DB), target.config(LIVE_DB));
        let ready = live.catch_up(&meters, &running, started, READY_WITHIN).await?;
        match ready {
            Some(s) => {
                println!("streaming {s:.2} s after the start ({} initial rows)", thousands(config.stream_rows as f64));
            }
            None => report.errors.push("never streamed".into()),
        }

        if ready.is_some() && config.parts.rate {
            println!(
                "highest sustainable rate: steps of {} s from {} by {} changed rows/s until p99 lag > {} s or the lag grows by > {} s",
                config.step_seconds,
                thousands(config.rate_start as f64),
                thousands(config.rate_step as f64),
                config.lag_limit,
                config.lag_growth
            );
            step_header();
            let mut rate = config.rate_start;
            let mut retries = config.step_retries;
            loop {
                if rate > config.rate_max {
                    report.stopped = format!("BENCH_RATE_MAX ({}) reached", thousands(config.rate_max as f64));
                    break;
                }
                let run = live.load(&meters, &running, Some(rate), config.step_seconds, config.catch_up).await?;
                step_line(&run);
                let verdict = run.verdict.clone();
                report.steps.push(run);
                match verdict {
                    Verdict::Pass => retries = config.step_retries,
                    Verdict::Fail(_) | Verdict::LoadLimited if retries > 0 && !running.ended() => {
                        // Once more at the same rate: the machine is shared, a step (the tool's
                        // or the load generator's) may meet someone else's burst.
                        retries -= 1;
                        tokio::time::sleep(config.pause).await;
                        continue;
                    }
                    Verdict::LoadLimited => {
                        report.stopped = "the load generator reached its limit".into();
                        break;
                    }
                    Verdict::Fail(why) => {
                        report.stopped = why;
                        break;
                    }
                }
                if config.rate_step == 0 {
                    report.stopped = "BENCH_RATE_STEP is 0".into();
                    break;
                }
                tokio::time::sleep(config.pause).await;
                rate += config.rate_step;
            }
            if report.steps.last().is_some_and(|s| s.catch_up.is_none()) && !running.ended() {
                let since = Instant::now();
                match live.catch_up(&meters, &running, since, READY_WITHIN).await? {
                    Some(s) => println!("caught up after another {s:.1} s"),
                    None => report.errors.push(format!("not caught up {} s after the ramp", READY_WITHIN.as_secs())),
                }
            }
        }

        let caught_up = report.errors.is_empty() && !running.ended();
        if caught_up && config.parts.fixed {
            tokio::time::sleep(config.pause).await;
            println!(
                "unthrottled load: {} clients for {} s, then the catch-up and every row compared",
                config.clients, config.fixed_seconds
            );
            step_header();
            let run = live.load(&meters, &running, None, config.fixed_seconds, READY_WITHIN).await?;
            step_line(&run);
            if let Some(c) = run.cpu_per_100k {
                println!(
                    "CPU seconds per 100,000 changed rows (load and catch-up): source server {:.2}, target server {:.2}, \
                     this process {:.2}, pgbench {:.2}",
                    c.source, c.target, c.bench, c.children
                );
            }
            let rows_equal = match run.catch_up {
                None => Err("not caught up".to_owned()),
                Some(_) => match compare(&live.src, &live.tgt, &[LOAD_TABLE, "hb"]).await {
                    None => Ok(()),
                    Some(diff) => Err(diff),
                },
            };
            match &rows_equal {
                Ok(()) => println!("every row of stream and hb equal on both sides"),
                Err(e) => {
                    println!("ROWS DIFFER: {e}");
                    report.errors.push(format!("rows differ after the unthrottled load: {e}"));
                }
            }
            report.fixed = Some(FixedReport { run, rows_equal });
        } else if caught_up && !report.steps.is_empty() {
            // Without the unthrottled part, the rows are compared after the ramp.
            let since = Instant::now();
            if live.catch_up(&meters, &running, since, READY_WITHIN).await?.is_some()
                && let Some(diff) = compare(&live.src, &live.tgt, &[LOAD_TABLE, "hb"]).await
            {
                println!("ROWS DIFFER: {diff}");
                report.errors.push(format!("rows differ after the ramp: {diff}"));
            }
        }
        report.peak_rss = status_kb("VmHWM");
        if let Some(e) = meters.last_error() {
            tracing::info!(error = %e, "last error of the heartbeat or the sampler");
        }
        meters.stop().await;
        if let Err(e) = self.stop_tool(running, &live).await {
            println!("{e}");
            report.errors.push(chain(e.as_ref()));
        }
        Ok(report)
    }
}

// ---------------------------------------------------------------------------------------------
// Part 4: one large transaction.

struct RssReport {
    rows: i64,
    baseline_kb: u64,
    peak_kb: u64,
    insert_seconds: f64,
    applied_after: f64,
    rows_equal: Result<(), String>,
}

impl Bench<'_> {
    async fn big_transaction(&self) -> Result<RssReport, Error> {
        let config = self.config;
        let (source, target) = (&self.pair.source, &self.pair.target);
        println!(
            "\n== 4. Ferry's memory while it streams one transaction of {} rows ==",
            thousands(config.big_rows as f64)
        );
        let src = connect(source, LIVE_DB).await?;
        self.prepare_source().await?;
        src.batch_execute(&format!("CREATE TABLE big {LOAD_COLUMNS}")).await?;
        reset_database(target, LIVE_DB).await?;
        let live = Live { bench: self, src, tgt: connect(target, LIVE_DB).await?, script: PathBuf::new() };
        let tuning = Tuning { apply_batch_transactions: config.apply_batch, ..Default::default() };
        let spec = self.spec(LIVE_DB, TaskType::FullIncrTrans, &["big", "hb"], tuning);
        let id = "bench/big".to_owned();
        let tracker = Tracker::new(Arc::new(NoProgress));
        let (stop, stop_rx) = watch::channel(false);
        let runner = tokio::spawn({
            let (spec, creds, tracker, id) = (spec.clone(), self.creds.clone(), tracker.clone(), id.clone());
            async move { engine::run(Job { id: &id, spec: &spec, credentials: &creds, tracker, stop: stop_rx }).await }
        });
        let running = Running::Ferry { id, spec: Box::new(spec), stop, runner };
        let waiting = Instant::now();
        while tracker.snapshot().0.stage != Some(TransferStage::Incremental) {
            if running.ended() || waiting.elapsed() > READY_WITHIN {
                break;
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        // The sampler is not needed; the heartbeat is written by catch_up alone.
        let meters = Meters {
            samples: Arc::default(),
            beating: Arc::new(AtomicBool::new(false)),
            stop: Arc::default(),
            error: Arc::default(),
            tasks: Vec::new(),
        };
        if live.catch_up(&meters, &running, Instant::now(), READY_WITHIN).await?.is_none() {
            let e = self
                .stop_tool(running, &live)
                .await
                .err()
                .map_or_else(|| "never streamed".to_owned(), |e| chain(e.as_ref()));
            return Err(format!("Ferry: {e}").into());
        }
        // Freed heap goes back to the system first, so the baseline is what the process holds.
        // SAFETY: malloc_trim only releases free memory of the allocator.
        unsafe { libc::malloc_trim(0) };
        let baseline_kb = status_kb("VmRSS").ok_or("no VmRSS in /proc/self/status")?;
        reset_peak_rss()?;
        let t = Instant::now();
        live.src
            .execute(
                &format!("INSERT INTO big SELECT {LOAD_ROW} FROM generate_series(1, $1::bigint) AS g"),
                &[&config.big_rows],
            )
            .await?;
        let insert_seconds = t.elapsed().as_secs_f64();
        let committed = Instant::now();
        let applied = live.catch_up(&meters, &running, committed, BIG_WITHIN).await?;
        let peak_kb = status_kb("VmHWM").ok_or("no VmHWM in /proc/self/status")?;
        let rows_equal = match applied {
            None => Err(format!("the target did not get the rows within {} s", BIG_WITHIN.as_secs())),
            Some(_) => match compare(&live.src, &live.tgt, &["big"]).await {
                None => Ok(()),
                Some(diff) => Err(diff),
            },
        };
        let stopped = self.stop_tool(running, &live).await;
        let report = RssReport {
            rows: config.big_rows,
            baseline_kb,
            peak_kb,
            insert_seconds,
            applied_after: applied.unwrap_or(f64::NAN),
            rows_equal: match (rows_equal, stopped) {
                (Ok(()), Err(e)) => Err(chain(e.as_ref())),
                (other, _) => other,
            },
        };
        println!(
            "RSS before {} (baseline), peak {} (+{}); the source committed the insert in {:.1} s, the target had it {:.1} s later; {}",
            mb(report.baseline_kb),
            mb(report.peak_kb),
            mb(report.peak_kb.saturating_sub(report.baseline_kb)),
            report.insert_seconds,
            report.applied_after,
            match &report.rows_equal {
                Ok(()) => "every row equal".to_owned(),
                Err(e) => format!("FAILED: {e}"),
            }
        );
        Ok(report)
    }
}

// ---------------------------------------------------------------------------------------------
// Summary.

/// `text` as a Markdown table cell.
fn cell(text: &str) -> String {
    text.replace('|', "\\|").replace('\n', " ")
}

fn print_summary(
    config: &Config,
    versions: &str,
    full: &Option<Result<FullReport, String>>,
    streams: &[Result<StreamReport, String>],
    rss: &Option<Result<RssReport, String>>,
) {
    println!("\n================ summary ================");
    println!(
        "{versions}; {} cores shared by both servers, the load and the tools",
        std::thread::available_parallelism().map_or(0, |n| n.get())
    );
    if let Some(full) = full {
        match full {
            Err(e) => println!("\nfull transfer: FAILED to run: {e}"),
            Ok(f) => {
                println!(
                    "\nFull transfer: orders, order_items, order_events × {} rows = {} rows, {:.0} MB on the source \
                     (generated in {:.1} s); median of {} round(s)\n",
                    thousands(config.rows as f64),
                    thousands(f.rows as f64),
                    f.source_mb,
                    f.generated,
                    f.rounds
                );
                println!("| tool | seconds | rows/s | peer time / Ferry time |");
                println!("|---|---:|---:|---:|");
                let ferry = f.results.first().and_then(|r| r.seconds);
                for r in &f.results {
                    match (r.seconds, &r.failure) {
                        (Some(s), _) => {
                            let ratio = ferry.map_or_else(|| "—".to_owned(), |fs| format!("{:.2}×", s / fs));
                            println!("| {} | {s:.2} | {} | {ratio} |", cell(&r.name), thousands(f.rows as f64 / s));
                        }
                        (None, Some(e)) => println!("| {} | FAILED: {} | — | — |", cell(&r.name), cell(e)),
                        (None, None) => println!("| {} | — | — | — |", cell(&r.name)),
                    }
                }
            }
        }
    }
    if config.parts.rate || config.parts.fixed {
        println!(
            "\nChange stream: pgbench, {} clients, transactions of {TX_ROWS} changed rows ({TX_INSERTS} inserted in one statement, \
             {TX_UPDATES} updated, {TX_DELETES} deleted by key) on a 12-column table of {} initial rows",
            config.clients,
            thousands(config.stream_rows as f64)
        );
    }
    let ok: Vec<&StreamReport> = streams.iter().filter_map(|s| s.as_ref().ok()).collect();
    for s in streams {
        if let Err(e) = s {
            println!("a change-stream run FAILED to run: {e}");
        }
    }
    if config.parts.rate && !ok.is_empty() {
        println!(
            "\nHighest sustainable rate (steps of {} s from {} by {} changed rows/s; a step passes with p99 lag ≤ {} s, \
             no lag growth > {} s, caught up after)\n",
            config.step_seconds,
            thousands(config.rate_start as f64),
            thousands(config.rate_step as f64),
            config.lag_limit,
            config.lag_growth
        );
        println!(
            "| tool | sustainable changed rows/s | lag p50 / p99 there | the step that failed | why the ramp stopped |"
        );
        println!("|---|---:|---:|---|---|");
        for r in &ok {
            let best = r
                .steps
                .iter()
                .filter(|s| matches!(s.verdict, Verdict::Pass | Verdict::LoadLimited))
                .max_by(|a, b| a.offered.total_cmp(&b.offered));
            let fail = r.steps.last().filter(|s| matches!(s.verdict, Verdict::Fail(_)));
            println!(
                "| {} | {} | {} | {} | {} |",
                r.tool.name(),
                match r.sustainable() {
                    Some((rate, true)) => format!("≥ {}", thousands(rate)),
                    Some((rate, false)) => thousands(rate),
                    None => format!("< {}", thousands(config.rate_start as f64)),
                },
                best.and_then(|b| b.lag).map_or_else(|| "—".to_owned(), |l| format!("{:.2} s / {:.2} s", l.p50, l.p99)),
                fail.map_or_else(
                    || "—".to_owned(),
                    |f| format!("{} asked, {} offered", thousands(f.asked.unwrap_or(0) as f64), thousands(f.offered))
                ),
                if r.stopped.is_empty() { "—".to_owned() } else { cell(&r.stopped) }
            );
        }
        let rate = |tool| ok.iter().find(|r| r.tool == tool).and_then(|r| r.sustainable());
        if let (Some((f, fl)), Some((n, nl))) = (rate(StreamTool::Ferry), rate(StreamTool::Native)) {
            let bound = if fl || nl { " (a ramp ended without a failing step: a bound, not a ratio)" } else { "" };
            println!("\nFerry / native sustainable rate: {:.2}×{bound}", f / n);
        }
    }
    if config.parts.fixed && !ok.is_empty() {
        println!("\nUnthrottled load ({} clients, {} s)\n", config.clients, config.fixed_seconds);
        println!(
            "| tool | offered changed rows/s | applied during the load | lag p50 / p99 / max | caught up after | rows equal | CPU s per 100k rows: source / target / Ferry process |"
        );
        println!("|---|---:|---:|---:|---:|---|---:|");
        for r in &ok {
            let Some(f) = &r.fixed else {
                println!("| {} | — | — | — | — | not run | — |", r.tool.name());
                continue;
            };
            let run = &f.run;
            println!(
                "| {} | {} | {} | {} | {} | {} | {} |",
                r.tool.name(),
                thousands(run.offered),
                thousands(run.applied),
                run.lag.map_or_else(|| "—".to_owned(), |l| format!("{:.2} / {:.2} / {:.2} s", l.p50, l.p99, l.max)),
                run.catch_up.map_or_else(|| "never".to_owned(), |c| format!("{c:.2} s")),
                match &f.rows_equal {
                    Ok(()) => "yes".to_owned(),
                    Err(e) => format!("NO: {}", cell(e)),
                },
                run.cpu_per_100k
                    .map_or_else(|| "—".to_owned(), |c| format!("{:.2} / {:.2} / {:.2}", c.source, c.target, c.bench)),
            );
        }
    }
    for r in &ok {
        if r.tool == StreamTool::Ferry
            && let Some(kb) = r.peak_rss
        {
            println!("\nFerry's process peak RSS during the change-stream parts: {}", mb(kb));
        }
        for e in &r.errors {
            println!("{}: FAILED: {e}", r.tool.name());
        }
    }
    if let Some(rss) = rss {
        match rss {
            Err(e) => println!("\nlarge transaction: FAILED to run: {e}"),
            Ok(r) => println!(
                "\nOne source transaction inserting {} rows (12 columns), streamed by Ferry: RSS {} before, peak {} \
                 (+{}); applied {:.1} s after the commit (the insert took {:.1} s); {}",
                thousands(r.rows as f64),
                mb(r.baseline_kb),
                mb(r.peak_kb),
                mb(r.peak_kb.saturating_sub(r.baseline_kb)),
                r.applied_after,
                r.insert_seconds,
                match &r.rows_equal {
                    Ok(()) => "every row equal".to_owned(),
                    Err(e) => format!("FAILED: {e}"),
                }
            ),
        }
    }
}

async fn bench(config: &Config, pair: &support::Pair, meter: Handle) -> Result<usize, Error> {
    let (source, target) = (&pair.source, &pair.target);
    let tmp = tempfile::tempdir()?;
    let passfile = tmp.path().join("pgpass");
    write_passfile(&passfile, &[source, target])?;
    let servers = (
        postmaster_pid(&connect(source, "postgres").await?).await?,
        postmaster_pid(&connect(target, "postgres").await?).await?,
    );
    let bench = Bench { config, pair, creds: pair.credentials(), passfile, dir: tmp.path().to_owned(), servers, meter };
    let versions = format!("PostgreSQL {} → {}", source.version(), target.version());
    println!("{versions}; settings: {config:?}\n");

    let full = if config.parts.full { Some(bench.full_transfer().await.map_err(|e| chain(e.as_ref()))) } else { None };

    let mut streams = Vec::new();
    if config.parts.rate || config.parts.fixed {
        println!("\n== 2./3. change stream ==");
        source.create_database(LIVE_DB)?;
        for &tool in &config.tools {
            let report = bench.stream_tool(tool).await.map_err(|e| chain(e.as_ref()));
            if let Err(e) = &report {
                println!("{}: FAILED to run: {e}", tool.name());
            }
            streams.push(report);
        }
    }

    let rss = if config.parts.rss {
        if !(config.parts.rate || config.parts.fixed) {
            source.create_database(LIVE_DB)?;
        }
        Some(bench.big_transaction().await.map_err(|e| chain(e.as_ref())))
    } else {
        None
    };

    print_summary(config, &versions, &full, &streams, &rss);
    let mut failures = 0;
    if let Some(full) = &full {
        failures += match full {
            Ok(f) => f.results.iter().filter(|r| r.failure.is_some()).count(),
            Err(_) => 1,
        };
    }
    failures += streams.iter().map(|s| s.as_ref().map_or(1, |r| r.errors.len())).sum::<usize>();
    if let Some(rss) = &rss {
        failures += usize::from(!rss.as_ref().is_ok_and(|r| r.rows_equal.is_ok()));
    }
    Ok(failures)
}

fn main() -> Result<(), Error> {
    let filter = tracing_subscriber::EnvFilter::try_from_default_env().unwrap_or_else(|_| "warn".into());
    tracing_subscriber::fmt().with_env_filter(filter).with_writer(std::io::stderr).init();
    let config = Config::read()?;
    SYNC_COMMIT.store(config.sync_commit, Ordering::Relaxed);
    let pair = support::Pair::start();
    // The heartbeat and the lag sampler on a runtime of their own; Ferry gets two workers, as
    // many as the machine has cores.
    let meter = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(1)
        .thread_name("bench-meter")
        .enable_all()
        .build()?;
    let runtime = tokio::runtime::Builder::new_multi_thread().worker_threads(2).enable_all().build()?;
    let failures = runtime.block_on(bench(&config, &pair, meter.handle().clone()));
    runtime.shutdown_timeout(Duration::from_secs(10));
    meter.shutdown_timeout(Duration::from_secs(10));
    match failures.map_err(|e| chain(e.as_ref()))? {
        0 => Ok(()),
        n => Err(format!("{n} failure(s); see above").into()),
    }
}
