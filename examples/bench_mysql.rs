//! MariaDB → MariaDB benchmark: Ferry beside the tools a user would run instead, in one process,
//! on one machine (both servers, the load and the tools share its cores). Not a test: figures
//! are printed, nothing is asserted on time; a copy whose rows differ from the source's is a
//! failed run and makes the process exit with an error.
//!
//! 1. **Full transfer** of three tables of ROWS rows each, generated on the source: `orders`
//!    (bigint key, 12 mixed columns with NULLs in six, a secondary index), `order_items`
//!    (composite key, two lines per order), `order_events` (no primary key, a plain index, every
//!    50th row a duplicate of the one before). Into an empty target database, in turn: Ferry
//!    `FULL_TRANS` (in this process), `mydumper` + `myloader`, `mysqldump --single-transaction |
//!    mysql`. After each, every row of every table is compared with the source (count and sum of
//!    the rows' MD5s: a multiset comparison, so the keyless table's duplicates count too) and the
//!    indexes must match.
//! 2. **Highest sustainable change rate** of Ferry `FULL_INCR_TRANS` (in this process) and of
//!    MariaDB's own replication (the target as a replica of the source, GTID, `START SLAVE`): a
//!    sysbench load (custom Lua script below: transactions of 10–50 rows on one 12-column table,
//!    60 % of the rows inserted, 30 % updated, 10 % deleted by primary key) offered at a rate
//!    stepped up until the lag fails (p99 above the limit, or growing within the step).
//!    Lag is read the same way for both: a heartbeat row `shop.hb` updated on the source every
//!    100 ms with `ts = NOW(6)`, and every 100 ms on the target `NOW(6) − ts`.
//! 3. **As fast as the clients go**: the same load without a rate, for both: offered and applied
//!    rows/s, lag, catch-up after the load, then every row compared.
//! 4. **Peak memory** of this process while Ferry streams one source transaction of
//!    BENCH_BIG_TX_ROWS rows (`VmHWM`, reset through `/proc/self/clear_refs` before it).
//!
//! 5. **MariaDB → PostgreSQL** (parts `pg-full` and `pg-stream`, not run by default; see
//!    `bench_mysql_pg/mod.rs`): the full-transfer tables by Ferry and by `pgloader` into a
//!    throwaway PostgreSQL server, and Ferry's change stream into it under the load of part 3.
//!
//! `cargo run --release --example bench_mysql -- [ROWS]` or `scripts/bench-mysql.sh [ROWS]`
//! (which installs the peers first; `scripts/bench-mysql-pg.sh` runs part 5). Settings, from the
//! environment:
//!
//! | variable | default | meaning |
//! |---|---|---|
//! | `BENCH_ROWS` (or the first argument) | 1000000 | rows of each full-transfer table |
//! | `BENCH_PARTS` | `full,stream,rss` | parts to run (`stream` is parts 2 and 3; `pg-full`, `pg-stream` part 5) |
//! | `BENCH_ROUNDS` | 1 | full-transfer rounds; the median is reported |
//! | `FERRY_READERS` | 2 | Ferry's `tuning.readParallelism` |
//! | `FERRY_BATCH_ROWS` | 100000 | Ferry's `tuning.batchRows` (chunk size) |
//! | `FERRY_APPLY_BATCH` | Ferry's default | Ferry's `tuning.applyBatchTransactions` |
//! | `BENCH_STREAM_TOOLS` | `ferry,native` | change-stream contenders |
//! | `BENCH_STREAM_ROWS` | 200000 | rows in the change table before the load |
//! | `BENCH_CLIENTS` | 2 | sysbench threads (client connections) |
//! | `BENCH_TX_ROWS` | `10-50` | rows changed per transaction (uniform) |
//! | `BENCH_RATE_START` / `BENCH_RATE_STEP` | 10000 / 10000 | first offered rate and increment, changed rows/s |
//! | `BENCH_RATE_MAX` | 1000000 | highest rate tried |
//! | `BENCH_STEP_SECONDS` | 15 | length of each step |
//! | `BENCH_MAX_LAG` | 2 | a step fails when the lag's p99 exceeds this many seconds |
//! | `BENCH_LAG_GROWTH` | 0.5 | … or when the median lag of its last third exceeds its first third's by more (s) |
//! | `BENCH_FREE_SECONDS` | 30 | length of the unlimited load |
//! | `BENCH_CATCHUP_SECONDS` | 600 | how long a tool may take to catch up before it counts as failed |
//! | `BENCH_NATIVE_THREADS` | 0 | `slave_parallel_threads` of the native replica (0: one SQL thread, the default) |
//! | `BENCH_REPLICA_BINLOG` | 1 | 1: both servers run `--log-slave-updates`, so a native replica writes its binary log as Ferry's target does |
//! | `BENCH_BIG_TX_ROWS` | ROWS | rows of part 4's single source transaction |
//! | `PGLOADER_WORKERS` / `PGLOADER_CONCURRENCY` | 2 / 2 | pgloader's `workers` and `concurrency` (part `pg-full`) |
//! | `PGLOADER_ROWS_PER_RANGE` | 100000 | pgloader's `rows per range` (with `multiple readers per thread`) |

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, AtomicI64, Ordering};
use std::sync::{Arc, Mutex, PoisonError};
use std::time::{Duration, Instant};

use ferry::api::{SyncJobSpec, TaskType, TransferStage, Tuning, Validate};
use ferry::engine::{self, Credentials, EngineError, Job, Outcome, Tracker, progress::NoProgress};
use ferry::testkit::{MariaDbOptions, MariaDbServer};
use mysql_async::prelude::Queryable;
use mysql_async::{Conn, Opts, Row};
use tokio::sync::watch;
use tokio::task::JoinHandle;

#[path = "../tests/my_support/mod.rs"]
mod support;
/// Parts `pg-full` and `pg-stream`: the same source into PostgreSQL, beside pgloader.
#[path = "bench_mysql_pg/mod.rs"]
mod to_pg;

type Error = Box<dyn std::error::Error + Send + Sync>;
type Result<T, E = Error> = std::result::Result<T, E>;

/// Server settings on top of the testkit's, the same for both servers and every tool: room for
/// the data in memory and no flush at every commit (the PostgreSQL benchmark's `fsync=off`).
const SERVER_ARGS: [&str; 4] = [
    "--innodb-buffer-pool-size=512M",
    "--innodb-log-file-size=256M",
    "--innodb-flush-log-at-trx-commit=0",
    "--innodb-doublewrite=0",
];

/// Rows per `INSERT … SELECT` when generating the full-transfer tables.
const LOAD_BATCH: u64 = 100_000;
/// The full-transfer tables, in the order they are generated and compared.
const FULL_TABLES: [&str; 3] = ["orders", "order_items", "order_events"];
/// A bigint key and 12 mixed columns, NULLs in six; `attrs` is MariaDB's JSON (a longtext with
/// a `json_valid` check).
const ORDERS: &str = "CREATE TABLE shop.orders (
    id bigint NOT NULL PRIMARY KEY, customer_id int NOT NULL, amount decimal(12,2) NOT NULL, note varchar(250),
    created_at datetime(6) NOT NULL, ship_date date, paid tinyint(1) NOT NULL, attrs json,
    quantity smallint NOT NULL, weight double, status varchar(16) NOT NULL, coupon varchar(32),
    updated_at timestamp(6) NULL, KEY orders_customer (customer_id, created_at)) ENGINE=InnoDB";
const ORDER_ITEMS: &str = "CREATE TABLE shop.order_items (
    order_id bigint NOT NULL, line smallint NOT NULL, sku varchar(32) NOT NULL, qty int NOT NULL,
    unit_price decimal(10,2) NOT NULL, PRIMARY KEY (order_id, line)) ENGINE=InnoDB";
const ORDER_EVENTS: &str = "CREATE TABLE shop.order_events (
    order_id bigint NOT NULL, kind varchar(16) NOT NULL, happened_at datetime(6) NOT NULL, detail varchar(100),
    KEY order_events_order (order_id)) ENGINE=InnoDB";

/// Keys of sysbench thread `t` start above `t · KEY_SPAN` (the Lua script's `SPAN`).
const KEY_SPAN: u64 = 1 << 40;
/// The heartbeat the lag of both tools is read from.
const HEARTBEAT: &str = "CREATE TABLE shop.hb (id int PRIMARY KEY, ts datetime(6))";
/// How often the heartbeat is written on the source and the lag read on the target.
const PROBE_INTERVAL: Duration = Duration::from_millis(100);
/// A step whose source took less than this share of the offered rate measures the writer, not
/// the tool: the ladder stops there.
const WRITER_BOUND: f64 = 0.9;

/// The change load: one sysbench event is one transaction.
const LOAD_SCRIPT: &str = r##"-- Change load of Ferry's MariaDB benchmark (examples/bench_mysql.rs writes and runs it).
-- One event is one transaction changing min_rows..max_rows rows of `stream` (12 columns): 60 % of
-- them inserted by one multi-row INSERT, 10 % deleted by primary key in one DELETE, 30 % updated
-- by primary key in one UPDATE (keys drawn at random among the thread's live rows; a key drawn
-- twice is one row changed). Thread t owns the keys t * 2^40 + 1 .. (t + 1) * 2^40: it
-- inserts above its highest key and deletes its lowest, so its live keys stay contiguous and
-- every UPDATE and DELETE hits a row that exists.
sysbench.cmdline.options = {
   min_rows = {"Fewest rows a transaction changes", 10},
   max_rows = {"Most rows a transaction changes", 50},
}

local SPAN = 1099511627776
local STATUS = {"new", "paid", "packed", "shipped", "delivered"}
local REGION = {"DE", "FR", "US", "JP", "BR", "IN", "GB", "ES"}
local NOTE = string.rep("@", 24) .. " " .. string.rep("#", 12) .. " " .. string.rep("@", 60)
local lo, hi

function thread_init()
   drv = sysbench.sql.driver()
   con = drv:connect()
   local base = sysbench.tid * SPAN
   local first, last = con:query_row(string.format(
      "SELECT MIN(id), MAX(id) FROM stream WHERE id > %d AND id <= %d", base, base + SPAN))
   lo = tonumber(first) or base + 1
   hi = tonumber(last) or base
end

function thread_done()
   con:disconnect()
end

-- sysbench.rand.uniform takes 32-bit bounds: keys are drawn as an offset from lo.
local function key()
   return lo + sysbench.rand.uniform(0, hi - lo)
end

local function weight(n)
   if n % 5 == 0 then return "NULL" end
   return string.format("%.4f", n / 7)
end

local function row(id)
   local n = sysbench.rand.uniform(1, 1000000)
   return string.format("(%d,%d,%d.%02d,%d,'%s','%s',NOW(6),%s,%d,%s,%s,'%s')",
      id, n % 50000 + 1, n % 100000, n % 100, n % 20 + 1, STATUS[n % 5 + 1],
      sysbench.rand.string(NOTE), n % 3 == 0 and "NULL" or "NOW(6)", n % 2, weight(n),
      n % 4 == 0 and "NULL" or string.format("'2025-%02d-%02d'", n % 12 + 1, n % 28 + 1),
      REGION[n % 8 + 1])
end

function event()
   local n = sysbench.rand.uniform(sysbench.opt.min_rows, sysbench.opt.max_rows)
   local inserts = math.floor(n * 0.6 + 0.5)
   local updates = math.floor(n * 0.3 + 0.5)
   local deletes = n - inserts - updates
   if hi - lo + 1 <= deletes then deletes = 0 end
   con:query("BEGIN")
   local values = {}
   for i = 1, inserts do
      hi = hi + 1
      values[i] = row(hi)
   end
   con:query("INSERT INTO stream VALUES " .. table.concat(values, ","))
   if deletes > 0 then
      local ids = {}
      for i = 1, deletes do ids[i] = string.format("%d", lo + i - 1) end
      con:query("DELETE FROM stream WHERE id IN (" .. table.concat(ids, ",") .. ")")
      lo = lo + deletes
   end
   if updates > 0 and hi >= lo then
      local ids = {}
      for i = 1, updates do ids[i] = string.format("%d", key()) end
      local m = sysbench.rand.uniform(1, 1000000)
      con:query(string.format("UPDATE stream SET qty = qty %% 30000 + 1, amount = amount + 0.25, " ..
         "status = '%s', updated_at = NOW(6), weight = %s WHERE id IN (%s)", STATUS[m % 5 + 1], weight(m),
         table.concat(ids, ",")))
   end
   con:query("COMMIT")
end
"##;

// ---------------------------------------------------------------------------------------------
// Settings

/// What the environment asks for (see the table at the top).
struct Config {
    rows: u64,
    rounds: usize,
    full: bool,
    stream: bool,
    rss: bool,
    pg_full: bool,
    pg_stream: bool,
    pgloader_workers: u32,
    pgloader_concurrency: u32,
    pgloader_rows_per_range: u64,
    readers: u32,
    chunk_rows: u32,
    apply_batch: Option<u32>,
    stream_ferry: bool,
    stream_native: bool,
    stream_rows: u64,
    clients: u32,
    tx_rows: (u32, u32),
    rate_start: u64,
    rate_step: u64,
    rate_max: u64,
    step_seconds: u64,
    max_lag: f64,
    lag_growth: f64,
    free_seconds: u64,
    catch_up_limit: Duration,
    native_threads: u32,
    replica_binlog: bool,
    big_tx_rows: u64,
}

fn env_num<T: std::str::FromStr>(name: &str, default: T) -> Result<T> {
    match std::env::var(name) {
        Err(_) => Ok(default),
        Ok(v) => v.trim().parse().map_err(|_| format!("{name} must be a number, not {v:?}").into()),
    }
}

/// A comma-separated list from `name`, each item one of `allowed`.
fn env_set(name: &str, default: &str, allowed: &[&str]) -> Result<BTreeSet<String>> {
    let text = std::env::var(name).unwrap_or_else(|_| default.to_owned());
    let set: BTreeSet<String> = text.split(',').map(|s| s.trim().to_owned()).filter(|s| !s.is_empty()).collect();
    if let Some(bad) = set.iter().find(|s| !allowed.contains(&s.as_str())) {
        return Err(format!("{name}: {bad:?} is not one of {}", allowed.join(", ")).into());
    }
    Ok(set)
}

impl Config {
    fn from_env() -> Result<Config> {
        let rows: u64 = match std::env::args().nth(1) {
            Some(a) => a.parse().map_err(|_| format!("ROWS must be a number, not {a:?}"))?,
            None => env_num("BENCH_ROWS", 1_000_000)?,
        };
        let parts = env_set("BENCH_PARTS", "full,stream,rss", &["full", "stream", "rss", "pg-full", "pg-stream"])?;
        let tools = env_set("BENCH_STREAM_TOOLS", "ferry,native", &["ferry", "native"])?;
        let tx_rows = std::env::var("BENCH_TX_ROWS").unwrap_or_else(|_| "10-50".to_owned());
        let tx_rows = tx_rows
            .split_once('-')
            .and_then(|(a, b)| Some((a.trim().parse().ok()?, b.trim().parse().ok()?)))
            .filter(|(a, b): &(u32, u32)| *a >= 2 && a <= b)
            .ok_or_else(|| format!("BENCH_TX_ROWS must read MIN-MAX with 2 <= MIN <= MAX, not {tx_rows:?}"))?;
        let apply_batch = match std::env::var("FERRY_APPLY_BATCH") {
            Err(_) => None,
            Ok(_) => Some(env_num("FERRY_APPLY_BATCH", 100)?),
        };
        let cfg = Config {
            rows,
            rounds: env_num("BENCH_ROUNDS", 1_usize)?,
            full: parts.contains("full"),
            stream: parts.contains("stream"),
            rss: parts.contains("rss"),
            pg_full: parts.contains("pg-full"),
            pg_stream: parts.contains("pg-stream"),
            pgloader_workers: env_num("PGLOADER_WORKERS", 2)?,
            pgloader_concurrency: env_num("PGLOADER_CONCURRENCY", 2)?,
            pgloader_rows_per_range: env_num("PGLOADER_ROWS_PER_RANGE", 100_000)?,
            readers: env_num("FERRY_READERS", 2)?,
            chunk_rows: env_num("FERRY_BATCH_ROWS", 100_000)?,
            apply_batch,
            stream_ferry: tools.contains("ferry"),
            stream_native: tools.contains("native"),
            stream_rows: env_num("BENCH_STREAM_ROWS", 200_000)?,
            clients: env_num("BENCH_CLIENTS", 2)?,
            tx_rows,
            rate_start: env_num("BENCH_RATE_START", 10_000)?,
            rate_step: env_num("BENCH_RATE_STEP", 10_000)?,
            rate_max: env_num("BENCH_RATE_MAX", 1_000_000)?,
            step_seconds: env_num("BENCH_STEP_SECONDS", 15)?,
            max_lag: env_num("BENCH_MAX_LAG", 2.0)?,
            lag_growth: env_num("BENCH_LAG_GROWTH", 0.5)?,
            free_seconds: env_num("BENCH_FREE_SECONDS", 30)?,
            catch_up_limit: Duration::from_secs(env_num("BENCH_CATCHUP_SECONDS", 600)?),
            native_threads: env_num("BENCH_NATIVE_THREADS", 0)?,
            replica_binlog: env_num::<u8>("BENCH_REPLICA_BINLOG", 1)? != 0,
            big_tx_rows: env_num("BENCH_BIG_TX_ROWS", rows)?,
        };
        let positive = [
            ("ROWS", cfg.rows),
            ("BENCH_ROUNDS", cfg.rounds as u64),
            ("FERRY_READERS", u64::from(cfg.readers)),
            ("FERRY_BATCH_ROWS", u64::from(cfg.chunk_rows)),
            ("BENCH_CLIENTS", u64::from(cfg.clients)),
            ("BENCH_STREAM_ROWS", cfg.stream_rows),
            ("BENCH_RATE_START", cfg.rate_start),
            ("BENCH_RATE_STEP", cfg.rate_step),
            ("BENCH_STEP_SECONDS", cfg.step_seconds),
            ("BENCH_FREE_SECONDS", cfg.free_seconds),
            ("BENCH_BIG_TX_ROWS", cfg.big_tx_rows),
            ("PGLOADER_WORKERS", u64::from(cfg.pgloader_workers)),
            ("PGLOADER_CONCURRENCY", u64::from(cfg.pgloader_concurrency)),
            ("PGLOADER_ROWS_PER_RANGE", cfg.pgloader_rows_per_range),
        ];
        if let Some((name, _)) = positive.iter().find(|(_, v)| *v == 0) {
            return Err(format!("{name} must be positive").into());
        }
        Ok(cfg)
    }

    fn server_args(&self) -> Vec<String> {
        let mut args: Vec<String> = SERVER_ARGS.iter().map(|a| (*a).to_owned()).collect();
        if self.replica_binlog {
            args.push("--log-slave-updates=ON".to_owned());
        }
        args
    }

    /// Mean rows changed by one load transaction.
    fn mean_tx_rows(&self) -> f64 {
        f64::from(self.tx_rows.0 + self.tx_rows.1) / 2.0
    }

    fn native_name(&self) -> String {
        match self.native_threads {
            0 => "native replication (1 SQL thread)".to_owned(),
            n => format!("native replication (slave_parallel_threads={n})"),
        }
    }
}

// ---------------------------------------------------------------------------------------------
// Sessions, processes, CPU time

/// A session in UTC, so that `TIMESTAMP` values and `UNIX_TIMESTAMP()` read the same on both
/// servers.
async fn connect(server: &MariaDbServer) -> Result<Conn> {
    connect_opts(server.opts(None)).await
}

async fn connect_opts(opts: Opts) -> Result<Conn> {
    let mut c = Conn::new(opts).await?;
    c.query_drop("SET time_zone = '+00:00'").await?;
    Ok(c)
}

/// Runs statements one by one, each error naming its statement.
async fn run_all(conn: &mut Conn, statements: &[&str]) -> Result<()> {
    for sql in statements {
        conn.query_drop(*sql).await.map_err(|e| format!("{sql}: {e}"))?;
    }
    Ok(())
}

/// An empty `shop` on the target, without a replica configuration, Ferry's bookkeeping or an
/// old binary log.
async fn reset_target(target: &MariaDbServer) -> Result<()> {
    let mut c = connect(target).await?;
    run_all(
        &mut c,
        &[
            "STOP ALL SLAVES",
            "RESET SLAVE ALL",
            "SET GLOBAL gtid_slave_pos = ''",
            "SET GLOBAL slave_parallel_threads = 0",
            "DROP DATABASE IF EXISTS shop",
            "DROP DATABASE IF EXISTS _ferry",
            "RESET MASTER",
            "CREATE DATABASE shop CHARACTER SET utf8mb4",
        ],
    )
    .await?;
    c.disconnect().await?;
    Ok(())
}

fn quote_ident(name: &str) -> String {
    format!("`{}`", name.replace('`', "``"))
}

/// A string literal, for the statements that take no parameters (`CHANGE MASTER`).
fn quote_str(text: &str) -> String {
    format!("'{}'", text.replace('\\', "\\\\").replace('\'', "''"))
}

fn installed(program: &str) -> bool {
    std::process::Command::new(program)
        .arg("--version")
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .status()
        .is_ok()
}

fn first_installed<'a>(names: &[&'a str]) -> Option<&'a str> {
    names.iter().copied().find(|n| installed(n))
}

/// Client options of the MariaDB command-line tools for `server`; the password comes from
/// `MYSQL_PWD`.
fn client_args(server: &MariaDbServer) -> String {
    format!("--no-defaults --protocol=TCP --host={} --port={} --user={}", server.host(), server.port(), server.user())
}

/// Connection options of mydumper and myloader; the password comes from `MYSQL_PWD`.
fn tool_args(server: &MariaDbServer) -> String {
    format!("--host={} --port={} --user={}", server.host(), server.port(), server.user())
}

/// Runs `script` with bash, the two passwords in `$SRC_PWD` and `$TGT_PWD` (never in the script
/// text, so never on a command line), and returns how long it took.
async fn shell(what: &str, script: &str, source: &MariaDbServer, target: &MariaDbServer) -> Result<Duration, String> {
    let t = Instant::now();
    let out = tokio::process::Command::new("bash")
        .arg("-c")
        .arg(format!("set -euo pipefail; {script}"))
        .env("SRC_PWD", source.password())
        .env("TGT_PWD", target.password())
        .output()
        .await
        .map_err(|e| format!("{what}: {e}"))?;
    if !out.status.success() {
        return Err(format!(
            "{what} failed: {}{}",
            String::from_utf8_lossy(&out.stderr).trim(),
            String::from_utf8_lossy(&out.stdout).trim()
        ));
    }
    Ok(t.elapsed())
}

/// Writes a file only the current user can read (it may hold a password).
fn private_file(path: &Path, text: &str) -> Result<()> {
    use std::io::Write;
    use std::os::unix::fs::OpenOptionsExt;
    let mut f = std::fs::OpenOptions::new().write(true).create(true).truncate(true).mode(0o600).open(path)?;
    f.write_all(text.as_bytes())?;
    Ok(())
}

/// CPU seconds (user + system) spent so far: by this process (Ferry runs in it), by its waited-for
/// children (sysbench, the peers' pipelines), and by each server.
#[derive(Clone, Copy, Debug, Default)]
struct Cpu {
    own: f64,
    children: f64,
    source: f64,
    target: f64,
}

impl std::ops::Sub for Cpu {
    type Output = Cpu;
    fn sub(self, o: Cpu) -> Cpu {
        Cpu {
            own: self.own - o.own,
            children: self.children - o.children,
            source: self.source - o.source,
            target: self.target - o.target,
        }
    }
}

struct CpuMeter {
    servers: [Option<u32>; 2],
    tick: f64,
}

impl CpuMeter {
    fn new(source: &MariaDbServer, target: &MariaDbServer) -> CpuMeter {
        let pid = |s: &MariaDbServer| -> Option<u32> {
            std::fs::read_to_string(s.dir().join("mariadbd.pid")).ok()?.trim().parse().ok()
        };
        // SAFETY: sysconf has no preconditions.
        let tick = unsafe { libc::sysconf(libc::_SC_CLK_TCK) };
        CpuMeter { servers: [pid(source), pid(target)], tick: if tick > 0 { tick as f64 } else { 100.0 } }
    }

    fn read(&self) -> Cpu {
        let server = |pid: Option<u32>| pid.and_then(|p| proc_cpu(p, self.tick)).unwrap_or(f64::NAN);
        Cpu {
            own: rusage(libc::RUSAGE_SELF),
            children: rusage(libc::RUSAGE_CHILDREN),
            source: server(self.servers[0]),
            target: server(self.servers[1]),
        }
    }
}

fn rusage(who: libc::c_int) -> f64 {
    // SAFETY: an all-zero rusage is a valid value; getrusage only writes into it.
    let mut usage: libc::rusage = unsafe { std::mem::zeroed() };
    // SAFETY: the pointer is to a live, writable rusage.
    if unsafe { libc::getrusage(who, &mut usage) } != 0 {
        return f64::NAN;
    }
    let secs = |t: libc::timeval| t.tv_sec as f64 + t.tv_usec as f64 / 1e6;
    secs(usage.ru_utime) + secs(usage.ru_stime)
}

/// utime + stime of a process from `/proc/PID/stat` (fields 14 and 15, after the command name).
fn proc_cpu(pid: u32, tick: f64) -> Option<f64> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    let fields: Vec<&str> = stat.get(stat.rfind(')')? + 1..)?.split_whitespace().collect();
    let utime: f64 = fields.get(11)?.parse().ok()?;
    let stime: f64 = fields.get(12)?.parse().ok()?;
    Some((utime + stime) / tick)
}

/// A `/proc/self/status` figure in KiB (`VmRSS`, `VmHWM`).
fn proc_status_kib(field: &str) -> Result<u64> {
    let status = std::fs::read_to_string("/proc/self/status")?;
    status
        .lines()
        .find_map(|l| l.strip_prefix(field)?.strip_prefix(':')?.trim().strip_suffix("kB")?.trim().parse().ok())
        .ok_or_else(|| format!("no {field} in /proc/self/status").into())
}

fn now_us() -> i64 {
    jiff::Timestamp::now().as_microsecond()
}

fn median(mut values: Vec<f64>) -> Option<f64> {
    values.sort_by(f64::total_cmp);
    values.get(values.len() / 2).copied()
}

/// Nearest-rank percentile of sorted `values`.
fn percentile(sorted: &[f64], p: f64) -> f64 {
    if sorted.is_empty() {
        return f64::NAN;
    }
    let rank = (p * sorted.len() as f64).ceil() as usize;
    sorted[rank.clamp(1, sorted.len()) - 1]
}

/// `1234567` as `1,234,567`.
fn thousands(n: f64) -> String {
    if !n.is_finite() {
        return "—".to_owned();
    }
    let digits = format!("{:.0}", n.abs());
    let mut out = String::new();
    for (i, c) in digits.chars().enumerate() {
        if i > 0 && (digits.len() - i) % 3 == 0 {
            out.push(',');
        }
        out.push(c);
    }
    if n < 0.0 { format!("-{out}") } else { out }
}

// ---------------------------------------------------------------------------------------------
// Ferry jobs

/// A MariaDB → MariaDB job over `tables` of database `shop`, same names on the target.
fn spec(
    source: &MariaDbServer,
    target: &MariaDbServer,
    task: TaskType,
    tables: &[&str],
    tuning: Tuning,
) -> Result<SyncJobSpec> {
    let mut spec = support::job_spec(source, target, task, tables);
    spec.tuning = Some(tuning);
    let errors = spec.validate();
    if !errors.is_empty() {
        let list: Vec<String> = errors.iter().map(ToString::to_string).collect();
        return Err(format!("the benchmark's job spec is invalid: {}", list.join("; ")).into());
    }
    Ok(spec)
}

fn engine_error(e: &EngineError) -> String {
    format!("{e} ({})", e.code())
}

/// A `FULL_INCR_TRANS` job running in this process.
struct FerryStream {
    id: String,
    spec: SyncJobSpec,
    credentials: Credentials,
    stop: watch::Sender<bool>,
    task: Option<JoinHandle<Result<Outcome, EngineError>>>,
    failed: Option<String>,
}

impl FerryStream {
    /// Starts the job and waits until it streams (its full transfer and catch-up are done).
    async fn start(cfg: &Config, pair: &Pair, id: &str, tables: &[&str]) -> Result<FerryStream, String> {
        let tuning = Tuning {
            read_parallelism: Some(cfg.readers),
            apply_batch_transactions: cfg.apply_batch,
            ..Default::default()
        };
        let spec =
            spec(&pair.source, &pair.target, TaskType::FullIncrTrans, tables, tuning).map_err(|e| e.to_string())?;
        let credentials = support::credentials(&pair.source, &pair.target);
        FerryStream::start_spec(cfg, id, spec, credentials).await
    }

    /// Starts the job `spec` describes and waits until it streams.
    async fn start_spec(
        cfg: &Config,
        id: &str,
        spec: SyncJobSpec,
        credentials: Credentials,
    ) -> Result<FerryStream, String> {
        let tracker = Tracker::new(Arc::new(NoProgress));
        let (stop, stop_rx) = watch::channel(false);
        let task = tokio::spawn({
            let (id, spec, credentials, tracker) = (id.to_owned(), spec.clone(), credentials.clone(), tracker.clone());
            async move { engine::run(Job { id: &id, spec: &spec, credentials: &credentials, tracker, stop: stop_rx }).await }
        });
        let mut ferry = FerryStream { id: id.to_owned(), spec, credentials, stop, task: Some(task), failed: None };
        let deadline = Instant::now() + cfg.catch_up_limit;
        while tracker.snapshot().0.stage != Some(TransferStage::Incremental) {
            if let Some(e) = ferry.failure().await {
                return Err(e);
            }
            if Instant::now() > deadline {
                ferry.stop().await;
                return Err(format!("not streaming after {} s", cfg.catch_up_limit.as_secs()));
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        Ok(ferry)
    }

    /// Why the job is no longer running, if it is not.
    async fn failure(&mut self) -> Option<String> {
        if self.task.as_ref().is_some_and(JoinHandle::is_finished)
            && let Some(task) = self.task.take()
        {
            self.failed = Some(match task.await {
                Ok(Ok(outcome)) => format!("the job ended: {outcome:?}"),
                Ok(Err(e)) => engine_error(&e),
                Err(e) => format!("the job's task failed: {e}"),
            });
        }
        self.failed.clone()
    }

    /// Stops the job at a checkpoint and forgets it on the target; returns what went wrong.
    async fn stop(mut self) -> Option<String> {
        let _ = self.stop.send(true);
        let mut problem = None;
        if let Some(task) = self.task.take() {
            problem = match tokio::time::timeout(Duration::from_secs(60), task).await {
                Ok(Ok(Ok(_))) => None,
                Ok(Ok(Err(e))) => Some(format!("the stream ended with an error: {}", engine_error(&e))),
                Ok(Err(e)) => Some(format!("the stream's task failed: {e}")),
                Err(_) => Some("the stream did not stop within 60 s".to_owned()),
            };
        }
        if let Err(e) = engine::release(&self.id, &self.spec, &self.credentials).await {
            problem.get_or_insert(format!("releasing the job: {}", engine_error(&e)));
        }
        problem
    }
}

/// The two servers and the passwords of their `ferry` users.
struct Pair {
    source: MariaDbServer,
    target: MariaDbServer,
    meter: CpuMeter,
}

// ---------------------------------------------------------------------------------------------
// Comparing contents

/// A query giving a table's row count and the sum of its rows' MD5s, over `columns` in order:
/// equal results mean equal multisets of rows (duplicates included). `QUOTE` keeps NULL apart
/// from the text 'NULL' and commas inside values apart from the separators.
fn digest_sql(table: &str, columns: &[String]) -> String {
    let row: Vec<String> = columns.iter().map(|c| format!("QUOTE({})", quote_ident(c))).collect();
    format!(
        "SELECT CONCAT(COUNT(*), ' rows, md5 sum ', COALESCE(SUM(CAST(CONV(LEFT(h, 16), 16, 10) AS UNSIGNED)), 0), \
         '/', COALESCE(SUM(CAST(CONV(RIGHT(h, 16), 16, 10) AS UNSIGNED)), 0)) \
         FROM (SELECT MD5(CONCAT_WS(',', {})) AS h FROM shop.{}) AS d",
        row.join(", "),
        quote_ident(table)
    )
}

/// The digest query of `table`, its columns read from the source.
async fn digest_query(src: &mut Conn, table: &str) -> Result<String> {
    let columns: Vec<String> = src
        .exec(
            "SELECT COLUMN_NAME FROM information_schema.COLUMNS WHERE TABLE_SCHEMA = 'shop' AND TABLE_NAME = ? \
             ORDER BY ORDINAL_POSITION",
            (table,),
        )
        .await?;
    if columns.is_empty() {
        return Err(format!("shop.{table} does not exist on the source").into());
    }
    Ok(digest_sql(table, &columns))
}

async fn digest(conn: &mut Conn, sql: &str) -> Result<String> {
    Ok(conn.query_first::<String, _>(sql).await?.unwrap_or_default())
}

/// Source and target digests of `tables`, computed on both servers at once; the differing
/// tables as `table: source … vs target …`.
async fn compare_rows(pair: &Pair, tables: &[&str]) -> Result<Vec<String>> {
    let (mut src, mut tgt) = (connect(&pair.source).await?, connect(&pair.target).await?);
    let mut differences = Vec::new();
    for table in tables {
        let sql = digest_query(&mut src, table).await?;
        let (a, b) = tokio::join!(digest(&mut src, &sql), digest(&mut tgt, &sql));
        let (a, b) = (a?, b.unwrap_or_else(|e| format!("error: {e}")));
        if a != b {
            differences.push(format!("{table}: source {a} vs target {b}"));
        }
    }
    src.disconnect().await?;
    tgt.disconnect().await?;
    Ok(differences)
}

/// Indexes, columns and check constraints of `tables`, one line each, comparable across servers.
struct Structure {
    indexes: BTreeSet<String>,
    columns: BTreeSet<String>,
    checks: BTreeSet<String>,
}

async fn structure(conn: &mut Conn, tables: &[&str]) -> Result<Structure> {
    let names: Vec<String> = tables.iter().map(|t| (*t).to_owned()).collect();
    let marks = vec!["?"; tables.len()].join(", ");
    let indexes: Vec<String> = conn
        .exec(
            format!(
                "SELECT CONCAT(TABLE_NAME, '.', INDEX_NAME, IF(NON_UNIQUE = 0, ' unique (', ' ('), \
                 GROUP_CONCAT(COLUMN_NAME ORDER BY SEQ_IN_INDEX SEPARATOR ', '), ')') \
                 FROM information_schema.STATISTICS WHERE TABLE_SCHEMA = 'shop' AND TABLE_NAME IN ({marks}) \
                 GROUP BY TABLE_NAME, INDEX_NAME, NON_UNIQUE"
            ),
            names.clone(),
        )
        .await?;
    let columns: Vec<String> = conn
        .exec(
            format!(
                "SELECT CONCAT_WS(' ', CONCAT(TABLE_NAME, '.', COLUMN_NAME), COLUMN_TYPE, \
                 IF(IS_NULLABLE = 'YES', 'NULL', 'NOT NULL'), CONCAT('DEFAULT ', COLUMN_DEFAULT), COLLATION_NAME, \
                 NULLIF(EXTRA, '')) FROM information_schema.COLUMNS WHERE TABLE_SCHEMA = 'shop' \
                 AND TABLE_NAME IN ({marks})"
            ),
            names.clone(),
        )
        .await?;
    let checks: Vec<String> = conn
        .exec(
            format!(
                "SELECT CONCAT(TABLE_NAME, ' CHECK ', CHECK_CLAUSE) FROM information_schema.CHECK_CONSTRAINTS \
                 WHERE CONSTRAINT_SCHEMA = 'shop' AND TABLE_NAME IN ({marks})"
            ),
            names,
        )
        .await?;
    Ok(Structure {
        indexes: indexes.into_iter().collect(),
        columns: columns.into_iter().collect(),
        checks: checks.into_iter().collect(),
    })
}

/// `what` differs: what only the source has, what only the target has.
fn set_difference(what: &str, source: &BTreeSet<String>, target: &BTreeSet<String>) -> Option<String> {
    let missing: Vec<&String> = source.difference(target).collect();
    let extra: Vec<&String> = target.difference(source).collect();
    if missing.is_empty() && extra.is_empty() {
        return None;
    }
    Some(format!("{what} differ: the source's {missing:?} became {extra:?}"))
}

// ---------------------------------------------------------------------------------------------
// Part 1: full transfer

/// `INSERT … SELECT` of rows `lo..=hi` of `table` from the Sequence engine.
fn generate_sql(table: &str, lo: u64, hi: u64) -> String {
    match table {
        "orders" => format!(
            "INSERT INTO shop.orders
             SELECT seq, (seq * 7919) % 200003 + 1, ROUND((seq % 1000003) / 97, 2),
                    IF(seq % 11 = 0, NULL, RPAD(CONCAT('Order ', seq, ' — ', ELT(seq % 3 + 1, 'express', 'standard',
                       'économique'), ' delivery; '), 200, 'leave it at the door, ring twice. ')),
                    TIMESTAMP'2024-01-01 00:00:00' + INTERVAL seq * 29 SECOND + INTERVAL (seq * 7919) % 1000000 MICROSECOND,
                    IF(seq % 4 = 0, NULL, DATE'2024-01-02' + INTERVAL seq DIV 3000 DAY),
                    seq % 3 <> 0,
                    IF(seq % 5 = 0, NULL, JSON_OBJECT('channel', ELT(seq % 3 + 1, 'web', 'app', 'store'),
                       'items', seq % 9 + 1, 'gift', seq % 2 = 0)),
                    seq % 100 + 1,
                    IF(seq % 6 = 0, NULL, (seq % 9973) / 7e0),
                    ELT(seq % 4 + 1, 'new', 'paid', 'shipped', 'delivered'),
                    IF(seq % 8 = 0, CONCAT('PROMO-', seq % 977), NULL),
                    IF(seq % 3 = 0, NULL, TIMESTAMP'2024-06-01 00:00:00' + INTERVAL seq SECOND
                       + INTERVAL seq % 999999 MICROSECOND)
             FROM shop.seq_{lo}_to_{hi}"
        ),
        "order_items" => format!(
            "INSERT INTO shop.order_items
             SELECT (seq + 1) DIV 2, 2 - seq % 2, CONCAT('SKU-', LPAD((seq * 31) % 50000, 6, '0')), seq % 5 + 1,
                    ROUND((seq % 20000) / 3, 2)
             FROM shop.seq_{lo}_to_{hi}"
        ),
        // Row 50k repeats row 50k − 1 exactly.
        _ => format!(
            "INSERT INTO shop.order_events
             SELECT b DIV 3 + 1, ELT(b % 5 + 1, 'created', 'paid', 'packed', 'shipped', 'delivered'),
                    TIMESTAMP'2024-01-01 00:00:00' + INTERVAL b * 13 SECOND + INTERVAL b % 1000 MICROSECOND,
                    IF(b % 7 = 0, NULL, CONCAT('event ', b, ' recorded by the warehouse system'))
             FROM (SELECT IF(seq % 50 = 0, seq - 1, seq) AS b FROM shop.seq_{lo}_to_{hi}) AS s"
        ),
    }
}

/// One full-transfer contender.
#[derive(Clone, Copy, PartialEq, Eq)]
enum FullTool {
    Ferry,
    Mydumper,
    Mysqldump,
}

/// What one contender did over the rounds.
struct FullResult {
    tool: FullTool,
    name: String,
    times: Vec<f64>,
    cpu: Vec<Cpu>,
    /// For mydumper: dump and load seconds of each round.
    split: Vec<(f64, f64)>,
    failure: Option<String>,
    skipped: Option<String>,
    notes: BTreeSet<String>,
}

struct FullReport {
    rows: u64,
    megabytes: f64,
    results: Vec<FullResult>,
}

/// Generates the full-transfer tables, ROWS rows each, on the source; their size in MB.
async fn generate_full(cfg: &Config, src: &mut Conn) -> Result<f64> {
    run_all(
        src,
        &["DROP TABLE IF EXISTS shop.orders, shop.order_items, shop.order_events", ORDERS, ORDER_ITEMS, ORDER_EVENTS],
    )
    .await?;
    let t = Instant::now();
    for table in FULL_TABLES {
        let mut lo = 1;
        while lo <= cfg.rows {
            let hi = (lo + LOAD_BATCH - 1).min(cfg.rows);
            src.query_drop(generate_sql(table, lo, hi)).await.map_err(|e| format!("generating {table}: {e}"))?;
            lo = hi + 1;
        }
        src.query_drop(format!("ANALYZE TABLE shop.{table}")).await?;
    }
    let sizes: Vec<(String, i64, i64)> = src
        .query(
            "SELECT TABLE_NAME, CAST(DATA_LENGTH AS SIGNED), CAST(INDEX_LENGTH AS SIGNED) FROM information_schema.TABLES \
             WHERE TABLE_SCHEMA = 'shop' AND TABLE_NAME IN ('orders', 'order_items', 'order_events') ORDER BY TABLE_NAME",
        )
        .await?;
    let megabytes = sizes.iter().map(|(_, d, i)| (d + i) as f64).sum::<f64>() / 1e6;
    let listing: Vec<String> =
        sizes.iter().map(|(n, d, i)| format!("{n} {:.0} + {:.0} MB", *d as f64 / 1e6, *i as f64 / 1e6)).collect();
    println!(
        "generated in {:.1} s; on the source (data + indexes): {} = {megabytes:.0} MB",
        t.elapsed().as_secs_f64(),
        listing.join(", ")
    );
    Ok(megabytes)
}

async fn part_full(cfg: &Config, pair: &Pair) -> Result<FullReport> {
    println!("\n== 1. full transfer: {} rows in each of {} ==", thousands(cfg.rows as f64), FULL_TABLES.join(", "));
    let mut src = connect(&pair.source).await?;
    let megabytes = generate_full(cfg, &mut src).await?;
    let source_structure = structure(&mut src, &FULL_TABLES).await?;
    src.disconnect().await?;

    let dump = first_installed(&["mariadb-dump", "mysqldump"]);
    let client = first_installed(&["mariadb", "mysql"]);
    let mydumper = installed("mydumper") && installed("myloader");
    let mut results = vec![
        FullResult::new(
            FullTool::Ferry,
            format!("Ferry FULL_TRANS ({} readers, {}-row chunks)", cfg.readers, cfg.chunk_rows),
        ),
        FullResult::new(FullTool::Mydumper, "mydumper -t 2 -r 100000 + myloader -t 2".to_owned()),
        FullResult::new(FullTool::Mysqldump, "mysqldump --single-transaction | mysql".to_owned()),
    ];
    if !mydumper {
        results[1].skipped = Some("mydumper/myloader not installed (apt-get install mydumper)".to_owned());
    }
    if dump.is_none() || client.is_none() {
        results[2].skipped = Some("mariadb-dump/mariadb not installed (apt-get install mariadb-client)".to_owned());
    }
    let tmp = tempfile::tempdir()?;
    let dir = tmp.path().display().to_string();
    for round in 1..=cfg.rounds {
        println!("round {round} of {}", cfg.rounds);
        for result in results.iter_mut().filter(|r| r.failure.is_none() && r.skipped.is_none()) {
            reset_target(&pair.target).await?;
            let before = pair.meter.read();
            let run = match result.tool {
                FullTool::Ferry => ferry_full(cfg, pair, round).await.map(|d| (d, None)),
                FullTool::Mydumper => {
                    let _ = std::fs::remove_dir_all(format!("{dir}/dump"));
                    let dumped = shell(
                        "mydumper",
                        &format!(
                            "MYSQL_PWD=\"$SRC_PWD\" mydumper {} -t 2 -r 100000 -v 1 -B shop \
                             -T orders,order_items,order_events -o '{dir}/dump'",
                            tool_args(&pair.source)
                        ),
                        &pair.source,
                        &pair.target,
                    )
                    .await;
                    match dumped {
                        Ok(dumped) => shell(
                            "myloader",
                            &format!(
                                "MYSQL_PWD=\"$TGT_PWD\" myloader {} -t 2 -v 1 -B shop -d '{dir}/dump'",
                                tool_args(&pair.target)
                            ),
                            &pair.source,
                            &pair.target,
                        )
                        .await
                        .map(|loaded| (dumped + loaded, Some((dumped.as_secs_f64(), loaded.as_secs_f64())))),
                        Err(e) => Err(e),
                    }
                }
                FullTool::Mysqldump => {
                    let (dump, client) = (dump.unwrap_or("mysqldump"), client.unwrap_or("mysql"));
                    shell(
                        "mysqldump | mysql",
                        &format!(
                            "MYSQL_PWD=\"$SRC_PWD\" {dump} {} --single-transaction --quick shop \
                             orders order_items order_events | MYSQL_PWD=\"$TGT_PWD\" {client} {} shop",
                            client_args(&pair.source),
                            client_args(&pair.target)
                        ),
                        &pair.source,
                        &pair.target,
                    )
                    .await
                    .map(|d| (d, None))
                }
            };
            let cpu = pair.meter.read() - before;
            let (elapsed, split) = match run {
                Ok(done) => done,
                Err(e) => {
                    println!("  {:<48} FAILED: {e}", result.name);
                    result.failure = Some(e);
                    continue;
                }
            };
            let checked = check_full(pair, &source_structure).await?;
            let secs = elapsed.as_secs_f64();
            match checked {
                Ok(notes) => {
                    println!(
                        "  {:<48} {secs:>7.2} s  cpu s: tool {:.1}, source {:.1}, target {:.1}; every row equal",
                        result.name,
                        cpu.own + cpu.children,
                        cpu.source,
                        cpu.target
                    );
                    for note in &notes {
                        println!("  {:<48} note: {note}", "");
                    }
                    result.times.push(secs);
                    result.cpu.push(cpu);
                    result.split.extend(split);
                    result.notes.extend(notes);
                }
                Err(e) => {
                    println!("  {:<48} {secs:>7.2} s  FAILED: {e}", result.name);
                    result.failure = Some(e);
                }
            }
        }
    }
    Ok(FullReport { rows: 3 * cfg.rows, megabytes, results })
}

impl FullResult {
    fn new(tool: FullTool, name: String) -> FullResult {
        FullResult {
            tool,
            name,
            times: Vec::new(),
            cpu: Vec::new(),
            split: Vec::new(),
            failure: None,
            skipped: None,
            notes: BTreeSet::new(),
        }
    }

    /// Median seconds of the successful rounds, when every round succeeded.
    fn seconds(&self) -> Option<f64> {
        if self.failure.is_some() { None } else { median(self.times.clone()) }
    }

    /// The CPU of the round whose time is the median.
    fn median_cpu(&self) -> Option<Cpu> {
        let m = self.seconds()?;
        let i = self.times.iter().position(|t| *t == m)?;
        self.cpu.get(i).copied()
    }
}

async fn ferry_full(cfg: &Config, pair: &Pair, round: usize) -> Result<Duration, String> {
    let tuning = Tuning { read_parallelism: Some(cfg.readers), batch_rows: Some(cfg.chunk_rows), ..Default::default() };
    let spec =
        spec(&pair.source, &pair.target, TaskType::FullTrans, &FULL_TABLES, tuning).map_err(|e| e.to_string())?;
    let credentials = support::credentials(&pair.source, &pair.target);
    let (_stop, stop) = watch::channel(false);
    let id = format!("bench/full-{round}");
    let t = Instant::now();
    let tracker = Tracker::new(Arc::new(NoProgress));
    match engine::run(Job { id: &id, spec: &spec, credentials: &credentials, tracker, stop }).await {
        Ok(_) => Ok(t.elapsed()),
        Err(e) => Err(engine_error(&e)),
    }
}

/// Every row of every full-transfer table equal and the same indexes: `Ok(notes)` on other
/// structural differences, `Err` on a failed run.
async fn check_full(pair: &Pair, source: &Structure) -> Result<Result<Vec<String>, String>> {
    let differences = compare_rows(pair, &FULL_TABLES).await?;
    if !differences.is_empty() {
        return Ok(Err(format!("rows differ: {}", differences.join("; "))));
    }
    let mut tgt = connect(&pair.target).await?;
    let target = structure(&mut tgt, &FULL_TABLES).await?;
    tgt.disconnect().await?;
    if let Some(d) = set_difference("indexes", &source.indexes, &target.indexes) {
        return Ok(Err(d));
    }
    Ok(Ok([
        set_difference("columns", &source.columns, &target.columns),
        set_difference("check constraints", &source.checks, &target.checks),
    ]
    .into_iter()
    .flatten()
    .collect()))
}

// ---------------------------------------------------------------------------------------------
// Parts 2 and 3: change stream

/// The 12-column table of the change load (and of part 4's large transaction).
fn change_table(name: &str) -> String {
    format!(
        "CREATE TABLE shop.{name} (
            id bigint NOT NULL PRIMARY KEY, customer_id int NOT NULL, amount decimal(12,2) NOT NULL,
            qty smallint NOT NULL, status varchar(16) NOT NULL, note varchar(120), created_at datetime(6) NOT NULL,
            updated_at datetime(6), paid tinyint(1) NOT NULL, weight double, ship_date date, region char(2) NOT NULL,
            KEY {name}_customer (customer_id)) ENGINE=InnoDB"
    )
}

/// `INSERT … SELECT` of `rows` rows of the change table, keys `base + 1 ..= base + rows`.
fn change_rows_sql(table: &str, base: u64, rows: u64) -> String {
    format!(
        "INSERT INTO shop.{table}
         SELECT {base} + seq, (seq * 7919) % 50000 + 1, ROUND((seq % 100000) / 7, 2), seq % 20 + 1,
                ELT(seq % 5 + 1, 'new', 'paid', 'packed', 'shipped', 'delivered'),
                RPAD(CONCAT('row ', seq, ' '), 100, 'abcdefghij'),
                TIMESTAMP'2025-01-01 00:00:00' + INTERVAL seq SECOND,
                IF(seq % 3 = 0, NULL, TIMESTAMP'2025-02-01 00:00:00' + INTERVAL seq SECOND), seq % 2,
                IF(seq % 5 = 0, NULL, seq / 7e0), IF(seq % 4 = 0, NULL, DATE'2025-03-01' + INTERVAL seq % 300 DAY),
                ELT(seq % 8 + 1, 'DE', 'FR', 'US', 'JP', 'BR', 'IN', 'GB', 'ES')
         FROM shop.seq_1_to_{rows}"
    )
}

/// The source, for one contender: a fresh binary log, the change table with its first rows (split
/// among the sysbench threads' key ranges) and the heartbeat row.
async fn prepare_change_source(cfg: &Config, pair: &Pair) -> Result<()> {
    let mut src = connect(&pair.source).await?;
    let table = change_table("stream");
    run_all(
        &mut src,
        &[
            "RESET MASTER",
            "DROP TABLE IF EXISTS shop.stream, shop.hb, shop.big",
            &table,
            HEARTBEAT,
            "INSERT INTO shop.hb VALUES (1, NOW(6))",
        ],
    )
    .await?;
    let per_client = cfg.stream_rows.div_ceil(u64::from(cfg.clients));
    for c in 0..u64::from(cfg.clients) {
        src.query_drop(change_rows_sql("stream", c * KEY_SPAN, per_client)).await?;
    }
    src.disconnect().await?;
    Ok(())
}

/// sysbench with the load script, against the source.
struct Sysbench {
    script: PathBuf,
    config: PathBuf,
    _dir: tempfile::TempDir,
}

impl Sysbench {
    fn new(source: &MariaDbServer) -> Result<Sysbench> {
        let dir = tempfile::tempdir()?;
        let script = dir.path().join("bench_mysql_load.lua");
        std::fs::write(&script, LOAD_SCRIPT)?;
        // The password in a private options file rather than on the command line.
        let config = dir.path().join("sysbench.cnf");
        private_file(
            &config,
            &format!(
                "mysql-host={}\nmysql-port={}\nmysql-user={}\nmysql-password={}\nmysql-db=shop\n",
                source.host(),
                source.port(),
                source.user(),
                source.password()
            ),
        )?;
        Ok(Sysbench { script, config, _dir: dir })
    }

    /// Runs the load for `seconds` at `tx_rate` transactions/s (0: as fast as the clients go).
    async fn run(&self, cfg: &Config, tx_rate: u64, seconds: u64) -> Result<(), String> {
        let out = tokio::process::Command::new("sysbench")
            .arg(&self.script)
            .arg(format!("--config-file={}", self.config.display()))
            .args(["--db-driver=mysql", "--report-interval=0"])
            .arg(format!("--threads={}", cfg.clients))
            .arg(format!("--rate={tx_rate}"))
            .arg(format!("--time={seconds}"))
            .arg(format!("--min-rows={}", cfg.tx_rows.0))
            .arg(format!("--max-rows={}", cfg.tx_rows.1))
            .arg("run")
            .output()
            .await
            .map_err(|e| format!("sysbench: {e}"))?;
        if !out.status.success() {
            return Err(format!(
                "sysbench failed: {}{}",
                String::from_utf8_lossy(&out.stderr).trim(),
                String::from_utf8_lossy(&out.stdout).trim()
            ));
        }
        Ok(())
    }
}

/// One lag reading on the target: when (µs since the epoch), the lag (µs) and the source time
/// of the heartbeat the target holds (µs).
#[derive(Clone, Copy)]
struct LagSample {
    at: i64,
    lag: i64,
    heartbeat: i64,
}

/// What the probe has seen: the source's changed-row counter over time (µs, rows without the
/// heartbeat's own updates) and the lag readings.
#[derive(Default)]
struct Seen {
    counters: Mutex<Vec<(i64, i64)>>,
    lags: Mutex<Vec<LagSample>>,
    source_heartbeat: AtomicI64,
}

/// The heartbeat writer and the lag reader, on a thread and runtime of their own so that Ferry's
/// work in this process does not delay their readings.
struct Probe {
    stop: Arc<AtomicBool>,
    thread: Option<std::thread::JoinHandle<Result<i64>>>,
    seen: Arc<Seen>,
}

/// On the source, after each heartbeat: the time, the heartbeat, and the rows written, updated
/// and deleted since the server started.
const SOURCE_PROBE: &str = "SELECT CAST(UNIX_TIMESTAMP(NOW(6)) * 1000000 AS SIGNED), \
    (SELECT CAST(UNIX_TIMESTAMP(ts) * 1000000 AS SIGNED) FROM shop.hb WHERE id = 1), \
    (SELECT CAST(SUM(VARIABLE_VALUE) AS SIGNED) FROM information_schema.GLOBAL_STATUS \
     WHERE VARIABLE_NAME IN ('HANDLER_WRITE', 'HANDLER_UPDATE', 'HANDLER_DELETE'))";
const TARGET_PROBE: &str = "SELECT CAST(UNIX_TIMESTAMP(NOW(6)) * 1000000 AS SIGNED), \
    TIMESTAMPDIFF(MICROSECOND, ts, NOW(6)), CAST(UNIX_TIMESTAMP(ts) * 1000000 AS SIGNED) FROM shop.hb WHERE id = 1";
/// The heartbeat the target holds, µs since the epoch.
const TARGET_HEARTBEAT: &str = "SELECT CAST(UNIX_TIMESTAMP(ts) * 1000000 AS SIGNED) FROM shop.hb WHERE id = 1";

impl Probe {
    fn start(pair: &Pair) -> Result<Probe> {
        Probe::start_with(pair.source.opts(None), LagTarget::MariaDb(pair.target.opts(None)))
    }

    /// The heartbeat on `source`, the lag read on `target`.
    fn start_with(source: Opts, target: LagTarget) -> Result<Probe> {
        let stop = Arc::new(AtomicBool::new(false));
        let seen = Arc::new(Seen::default());
        let thread = std::thread::Builder::new().name("probe".to_owned()).spawn({
            let (stop, seen) = (stop.clone(), seen.clone());
            move || -> Result<i64> {
                let runtime = tokio::runtime::Builder::new_current_thread().enable_all().build()?;
                runtime.block_on(async {
                    let (beat, lag) = tokio::join!(heartbeat(source, &seen, &stop), read_lag(target, &seen, &stop));
                    lag?;
                    beat
                })
            }
        })?;
        Ok(Probe { stop, thread: Some(thread), seen })
    }

    fn counters(&self) -> Vec<(i64, i64)> {
        self.seen.counters.lock().unwrap_or_else(PoisonError::into_inner).clone()
    }

    fn lags(&self) -> Vec<LagSample> {
        self.seen.lags.lock().unwrap_or_else(PoisonError::into_inner).clone()
    }

    /// The newest heartbeat written on the source, µs.
    fn source_heartbeat(&self) -> i64 {
        self.seen.source_heartbeat.load(Ordering::SeqCst)
    }

    /// Whether the probe stopped on an error.
    fn failed(&self) -> bool {
        self.thread.as_ref().is_some_and(std::thread::JoinHandle::is_finished)
    }

    /// Writes a last heartbeat and stops; returns that heartbeat (µs).
    async fn stop(&mut self) -> Result<i64> {
        self.stop.store(true, Ordering::SeqCst);
        let Some(thread) = self.thread.take() else {
            return Ok(self.source_heartbeat());
        };
        match tokio::task::spawn_blocking(move || thread.join()).await? {
            Ok(last) => last,
            Err(_) => Err("the probe thread panicked".into()),
        }
    }
}

impl Drop for Probe {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::SeqCst);
    }
}

async fn heartbeat(opts: Opts, seen: &Seen, stop: &AtomicBool) -> Result<i64> {
    let mut conn = connect_opts(opts).await?;
    let mut beats = 0;
    let mut tick = tokio::time::interval(PROBE_INTERVAL);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tick.tick().await;
        let last = stop.load(Ordering::SeqCst);
        conn.query_drop("UPDATE shop.hb SET ts = NOW(6) WHERE id = 1").await?;
        beats += 1;
        let row: Option<(Option<i64>, Option<i64>, Option<i64>)> = conn.query_first(SOURCE_PROBE).await?;
        let Some((Some(at), Some(beat), Some(rows))) = row else {
            return Err(format!("the source probe read {row:?}").into());
        };
        // Each heartbeat is one updated row of its own.
        seen.counters.lock().unwrap_or_else(PoisonError::into_inner).push((at, rows - beats));
        seen.source_heartbeat.store(beat, Ordering::SeqCst);
        if last {
            conn.disconnect().await?;
            return Ok(beat);
        }
    }
}

/// Where the lag is read: a MariaDB target, or a PostgreSQL one (the `pg-stream` part).
enum LagTarget {
    MariaDb(Opts),
    Postgres(Box<tokio_postgres::Config>),
}

async fn read_lag(target: LagTarget, seen: &Seen, stop: &AtomicBool) -> Result<()> {
    let opts = match target {
        LagTarget::MariaDb(opts) => opts,
        LagTarget::Postgres(config) => return to_pg::read_lag(*config, seen, stop).await,
    };
    let mut conn = connect_opts(opts.clone()).await?;
    let mut tick = tokio::time::interval(PROBE_INTERVAL);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    while !stop.load(Ordering::SeqCst) {
        tick.tick().await;
        match conn.query_first::<(Option<i64>, Option<i64>, Option<i64>), _>(TARGET_PROBE).await {
            Ok(Some((Some(at), Some(lag), Some(heartbeat)))) => {
                seen.lags.lock().unwrap_or_else(PoisonError::into_inner).push(LagSample { at, lag, heartbeat })
            }
            Ok(_) => {}
            // A session lost under load: one more try with a new one.
            Err(_) => conn = connect_opts(opts.clone()).await?,
        }
    }
    conn.disconnect().await?;
    Ok(())
}

/// The changed-row counter at `t` (µs), interpolated between the probe's readings.
fn counter_at(counters: &[(i64, i64)], t: i64) -> Option<f64> {
    let i = counters.partition_point(|(at, _)| *at <= t);
    match (i.checked_sub(1).and_then(|j| counters.get(j)), counters.get(i)) {
        (Some(&(t0, c0)), Some(&(t1, c1))) if t1 > t0 => {
            Some(c0 as f64 + (c1 - c0) as f64 * (t - t0) as f64 / (t1 - t0) as f64)
        }
        (Some(&(_, c)), _) | (None, Some(&(_, c))) => Some(c as f64),
        (None, None) => None,
    }
}

/// Rates and lag over one load window.
#[derive(Clone, Copy)]
struct Measure {
    /// Rows the source changed in the window.
    rows: f64,
    offered: f64,
    applied: f64,
    p50: f64,
    p99: f64,
    max: f64,
    first_third: f64,
    last_third: f64,
    samples: usize,
}

/// Offered rows/s: the source's counter over `[t0, t1]`. Applied rows/s: the source rows the
/// target's heartbeat covers, from the first to the last lag reading of the window (the target
/// holding heartbeat `h` means it holds every source transaction committed before `h`).
fn measure(counters: &[(i64, i64)], lags: &[LagSample], t0: i64, t1: i64) -> Measure {
    let seconds = (t1 - t0) as f64 / 1e6;
    let rows = match (counter_at(counters, t0), counter_at(counters, t1)) {
        (Some(a), Some(b)) => b - a,
        _ => f64::NAN,
    };
    let offered = if seconds > 0.0 { rows / seconds } else { f64::NAN };
    let window: Vec<LagSample> = lags.iter().copied().filter(|s| s.at >= t0 && s.at <= t1).collect();
    let applied = match (window.first(), window.last()) {
        (Some(a), Some(b)) if b.at > a.at => {
            match (counter_at(counters, a.heartbeat), counter_at(counters, b.heartbeat)) {
                (Some(x), Some(y)) => (y - x) / ((b.at - a.at) as f64 / 1e6),
                _ => f64::NAN,
            }
        }
        _ => f64::NAN,
    };
    let secs: Vec<f64> = window.iter().map(|s| s.lag as f64 / 1e6).collect();
    let third = secs.len() / 3;
    let first_third = median(secs[..third].to_vec()).unwrap_or(f64::NAN);
    let last_third = median(secs[secs.len() - third..].to_vec()).unwrap_or(f64::NAN);
    let mut sorted = secs.clone();
    sorted.sort_by(f64::total_cmp);
    Measure {
        rows,
        offered,
        applied,
        p50: percentile(&sorted, 0.5),
        p99: percentile(&sorted, 0.99),
        max: sorted.last().copied().unwrap_or(f64::NAN),
        first_third,
        last_third,
        samples: sorted.len(),
    }
}

/// A change-stream contender, running.
enum Replicator {
    Ferry(Box<FerryStream>),
    Native { failed: Option<String> },
}

impl Replicator {
    /// Why the contender no longer applies changes, if it does not.
    async fn failure(&mut self, target: &mut Conn) -> Option<String> {
        match self {
            Replicator::Ferry(f) => f.failure().await,
            Replicator::Native { failed } => {
                if failed.is_none() {
                    *failed = replica_failure(target).await;
                }
                failed.clone()
            }
        }
    }

    /// Stops it and clears the target's replica settings; returns what went wrong.
    async fn stop(self, target: &MariaDbServer) -> Option<String> {
        match self {
            Replicator::Ferry(f) => f.stop().await,
            Replicator::Native { .. } => {
                let stopped = async {
                    let mut c = connect(target).await?;
                    run_all(
                        &mut c,
                        &[
                            "STOP SLAVE",
                            "RESET SLAVE ALL",
                            "SET GLOBAL gtid_slave_pos = ''",
                            "SET GLOBAL slave_parallel_threads = 0",
                        ],
                    )
                    .await?;
                    c.disconnect().await?;
                    Ok::<_, Error>(())
                };
                stopped.await.err().map(|e| format!("stopping the replica: {e}"))
            }
        }
    }
}

/// The replica threads' error, if one is not running.
async fn replica_failure(target: &mut Conn) -> Option<String> {
    let row: Row = match target.query_first("SHOW SLAVE STATUS").await {
        Ok(Some(row)) => row,
        Ok(None) => return Some("the target is not a replica".to_owned()),
        Err(e) => return Some(format!("SHOW SLAVE STATUS: {e}")),
    };
    let field = |name: &str| row.get::<Option<String>, _>(name).flatten().unwrap_or_default();
    if field("Slave_IO_Running") == "Yes" && field("Slave_SQL_Running") == "Yes" {
        return None;
    }
    Some(format!(
        "replica stopped: IO {} ({}), SQL {} ({})",
        field("Slave_IO_Running"),
        field("Last_IO_Error"),
        field("Slave_SQL_Running"),
        field("Last_SQL_Error")
    ))
}

/// Makes the target a replica of the source: the tables copied at a quiet moment whose GTID
/// position the replica starts from, `CHANGE MASTER … MASTER_USE_GTID = slave_pos`, `START SLAVE`.
async fn start_native(cfg: &Config, pair: &Pair) -> Result<Replicator, String> {
    let inner = async {
        let mut src = connect(&pair.source).await?;
        let position: String = src.query_first("SELECT @@gtid_binlog_pos").await?.unwrap_or_default();
        src.disconnect().await?;
        let dump = first_installed(&["mariadb-dump", "mysqldump"]).ok_or("mariadb-dump is not installed")?;
        let client = first_installed(&["mariadb", "mysql"]).ok_or("the mariadb client is not installed")?;
        shell(
            "copying the tables for the replica",
            &format!(
                "MYSQL_PWD=\"$SRC_PWD\" {dump} {} --single-transaction shop stream hb \
                 | MYSQL_PWD=\"$TGT_PWD\" {client} {} shop",
                client_args(&pair.source),
                client_args(&pair.target)
            ),
            &pair.source,
            &pair.target,
        )
        .await?;
        let mut tgt = connect(&pair.target).await?;
        tgt.exec_drop("SET GLOBAL gtid_slave_pos = ?", (position,)).await?;
        tgt.query_drop(format!("SET GLOBAL slave_parallel_threads = {}", cfg.native_threads)).await?;
        tgt.query_drop(format!(
            "CHANGE MASTER TO MASTER_HOST = {}, MASTER_PORT = {}, MASTER_USER = {}, MASTER_PASSWORD = {}, \
             MASTER_USE_GTID = slave_pos",
            quote_str(pair.source.host()),
            pair.source.port(),
            quote_str(pair.source.user()),
            quote_str(pair.source.password())
        ))
        .await?;
        tgt.query_drop("START SLAVE").await?;
        let deadline = Instant::now() + Duration::from_secs(30);
        while let Some(e) = replica_failure(&mut tgt).await {
            if Instant::now() > deadline {
                return Err(e.into());
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        tgt.disconnect().await?;
        Ok::<_, Error>(())
    };
    inner.await.map_err(|e| e.to_string())?;
    Ok(Replicator::Native { failed: None })
}

/// Waits until the target holds the source heartbeat `want` (µs) or a later one; the time it
/// took, or why it did not.
async fn wait_heartbeat(
    target: &mut Conn,
    want: i64,
    limit: Duration,
    replicator: &mut Replicator,
) -> Result<Duration, String> {
    let t = Instant::now();
    let mut checked = Instant::now();
    loop {
        if let Ok(Some(Some(have))) = target.query_first::<Option<i64>, _>(TARGET_HEARTBEAT).await
            && have >= want
        {
            return Ok(t.elapsed());
        }
        if checked.elapsed() > Duration::from_secs(1) {
            checked = Instant::now();
            if let Some(e) = replicator.failure(target).await {
                return Err(e);
            }
        }
        if t.elapsed() > limit {
            return Err(format!("not caught up after {} s", limit.as_secs()));
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

/// One step of the ladder, or the unlimited load.
struct Step {
    /// Offered changed rows/s asked of sysbench; `None`: as fast as it goes.
    rate: Option<u64>,
    m: Measure,
    cpu: Cpu,
    /// Seconds from the end of the load until the target held the source's last heartbeat.
    catch_up: Option<f64>,
    pass: bool,
    why: String,
}

/// What one contender achieved.
struct StreamReport {
    name: String,
    steps: Vec<Step>,
    free: Option<Step>,
    /// Every row equal after the unlimited load, or the difference.
    equal: Option<Result<(), String>>,
    failure: Option<String>,
    /// Highest passing asked rate.
    sustainable: Option<u64>,
    /// When the writer rather than the tool stopped the ladder: the rate the source took in the
    /// last passing step, a lower bound of the tool's sustainable rate.
    writer_bound: Option<f64>,
}

impl StreamReport {
    fn new(name: String) -> StreamReport {
        StreamReport {
            name,
            steps: Vec::new(),
            free: None,
            equal: None,
            failure: None,
            sustainable: None,
            writer_bound: None,
        }
    }
}

#[derive(Clone, Copy, PartialEq, Eq)]
enum Contender {
    Ferry,
    Native,
}

async fn part_stream(cfg: &Config, pair: &Pair) -> Result<Vec<StreamReport>> {
    println!(
        "\n== 2–3. change stream: sysbench, {} clients, transactions of {}–{} rows on one 12-column table \
         (60 % inserted, 30 % updated, 10 % deleted by key), {} rows to start ==",
        cfg.clients,
        cfg.tx_rows.0,
        cfg.tx_rows.1,
        thousands(cfg.stream_rows as f64)
    );
    println!(
        "ladder: from {} changed rows/s, +{} per {} s step, while lag p99 ≤ {} s and the last third's median lag \
         stays within {} s of the first third's",
        thousands(cfg.rate_start as f64),
        thousands(cfg.rate_step as f64),
        cfg.step_seconds,
        cfg.max_lag,
        cfg.lag_growth
    );
    println!(
        "columns: asked, offered (the source's row counters) and applied (rows the target's heartbeat covers) \
         changed rows/s; lag p50, p99, medians of the first → last third; catch-up after the load; CPU seconds \
         over the step and its catch-up of this process (b: Ferry runs in it), the source and the target"
    );
    if !installed("sysbench") {
        println!("sysbench is not installed (apt-get install sysbench); parts 2 and 3 left out");
        return Ok(Vec::new());
    }
    let sysbench = Sysbench::new(&pair.source)?;
    let mut reports = Vec::new();
    let contenders = [(Contender::Ferry, cfg.stream_ferry), (Contender::Native, cfg.stream_native)];
    for (contender, _) in contenders.into_iter().filter(|(_, on)| *on) {
        let name = match contender {
            Contender::Ferry => format!(
                "Ferry FULL_INCR_TRANS (applyBatchTransactions {})",
                match cfg.apply_batch {
                    Some(n) => n.to_string(),
                    None => "default".to_owned(),
                }
            ),
            Contender::Native => cfg.native_name(),
        };
        println!("\n{name}");
        let mut report = StreamReport::new(name);
        if let Err(e) = stream_contender(cfg, pair, &sysbench, contender, &mut report).await {
            report.failure.get_or_insert(e.to_string());
        }
        if let Some(e) = &report.failure {
            println!("  FAILED: {e}");
        }
        reports.push(report);
    }
    Ok(reports)
}

fn print_step(s: &Step) {
    let rate = s.rate.map_or_else(|| "unlimited".to_owned(), |r| thousands(r as f64));
    println!(
        "  {rate:>10} {:>9} {:>9} {:>6.2} {:>6.2} {:>6.2}→{:<6.2} {:>7} {:>5.1} {:>5.1} {:>5.1}  {}",
        thousands(s.m.offered),
        thousands(s.m.applied),
        s.m.p50,
        s.m.p99,
        s.m.first_third,
        s.m.last_third,
        s.catch_up.map_or_else(|| "—".to_owned(), |c| format!("{c:.2}")),
        s.cpu.own,
        s.cpu.source,
        s.cpu.target,
        match (s.pass, s.rate) {
            (true, Some(_)) => "pass".to_owned(),
            (false, Some(_)) => format!("FAIL: {}", s.why),
            (true, None) => String::new(),
            (false, None) => s.why.clone(),
        }
    );
}

fn print_step_header() {
    println!(
        "  {:>10} {:>9} {:>9} {:>6} {:>6} {:>13} {:>7} {:>5} {:>5} {:>5}",
        "asked r/s", "offered", "applied", "p50 s", "p99 s", "thirds s", "catchup", "cpu:b", "src", "tgt"
    );
}

async fn stream_contender(
    cfg: &Config,
    pair: &Pair,
    sysbench: &Sysbench,
    contender: Contender,
    report: &mut StreamReport,
) -> Result<()> {
    prepare_change_source(cfg, pair).await?;
    reset_target(&pair.target).await?;
    let setup = Instant::now();
    let started = match contender {
        Contender::Ferry => FerryStream::start(cfg, pair, "bench/stream", &["stream", "hb"])
            .await
            .map(|f| Replicator::Ferry(Box::new(f))),
        Contender::Native => start_native(cfg, pair).await,
    };
    let mut replicator = match started {
        Ok(r) => r,
        Err(e) => {
            report.failure = Some(format!("setting up: {e}"));
            return Ok(());
        }
    };
    println!("  streaming after {:.1} s of setup", setup.elapsed().as_secs_f64());
    let mut probe = Probe::start(pair)?;
    let outcome = ladder_and_free_load(cfg, pair, sysbench, &mut replicator, &mut probe, report).await;
    if let Err(e) = probe.stop().await
        && outcome.is_ok()
    {
        report.failure.get_or_insert(format!("the probe: {e}"));
    }
    if let Some(e) = replicator.stop(&pair.target).await {
        report.failure.get_or_insert(e);
    }
    outcome
}

async fn ladder_and_free_load(
    cfg: &Config,
    pair: &Pair,
    sysbench: &Sysbench,
    replicator: &mut Replicator,
    probe: &mut Probe,
    report: &mut StreamReport,
) -> Result<()> {
    let mut tgt = connect(&pair.target).await?;
    // The first heartbeats through before the load starts.
    tokio::time::sleep(PROBE_INTERVAL * 3).await;
    if let Err(e) = wait_heartbeat(&mut tgt, probe.source_heartbeat(), cfg.catch_up_limit, replicator).await {
        report.failure = Some(e);
        return Ok(());
    }
    print_step_header();
    let mut rate = cfg.rate_start;
    while rate <= cfg.rate_max {
        let step = match run_step(cfg, pair, sysbench, &mut tgt, replicator, probe, Some(rate)).await? {
            Ok(step) => step,
            Err(e) => {
                report.failure = Some(e);
                return Ok(());
            }
        };
        print_step(&step);
        let (pass, offered) = (step.pass, step.m.offered);
        report.steps.push(step);
        if !pass {
            break;
        }
        report.sustainable = Some(rate);
        if offered < WRITER_BOUND * rate as f64 {
            report.writer_bound = Some(offered);
            println!(
                "  the source took less than {:.0} % of the asked rate: the writer, not the tool, is the limit",
                WRITER_BOUND * 100.0
            );
            break;
        }
        rate += cfg.rate_step;
    }

    // Part 3: the same load as fast as the clients go.
    let free = match run_step(cfg, pair, sysbench, &mut tgt, replicator, probe, None).await? {
        Ok(step) => step,
        Err(e) => {
            report.failure = Some(e);
            return Ok(());
        }
    };
    print_step(&free);
    let caught_up = free.catch_up.is_some();
    report.free = Some(free);
    if !caught_up {
        return Ok(());
    }
    let differences = compare_rows_until(pair, &["stream", "hb"], Duration::from_secs(10)).await?;
    report.equal = Some(if differences.is_empty() { Ok(()) } else { Err(differences.join("; ")) });
    match report.equal.as_ref() {
        Some(Ok(())) => println!("  after the load: every row of stream and hb equal"),
        Some(Err(e)) => println!("  after the load: ROWS DIFFER: {e}"),
        None => {}
    }
    tgt.disconnect().await?;
    Ok(())
}

/// One load window: `rate` changed rows/s for the step length, or (`None`) as fast as the
/// clients go for the unlimited load's length, after which the heartbeat stops so that the
/// catch-up is the time until the target holds its last beat. `Err` inside: the contender
/// failed.
async fn run_step(
    cfg: &Config,
    pair: &Pair,
    sysbench: &Sysbench,
    tgt: &mut Conn,
    replicator: &mut Replicator,
    probe: &mut Probe,
    rate: Option<u64>,
) -> Result<Result<Step, String>> {
    let (tx_rate, seconds) = match rate {
        Some(r) => (((r as f64 / cfg.mean_tx_rows()).round() as u64).max(1), cfg.step_seconds),
        None => (0, cfg.free_seconds),
    };
    let cpu0 = pair.meter.read();
    let t0 = now_us();
    sysbench.run(cfg, tx_rate, seconds).await?;
    let t1 = now_us();
    let ended = Instant::now();
    if probe.failed() {
        return Err(format!("the probe stopped: {:?}", probe.stop().await.err()).into());
    }
    let last = if rate.is_some() { probe.source_heartbeat() } else { probe.stop().await? };
    let caught = wait_heartbeat(tgt, last, cfg.catch_up_limit, replicator).await;
    let catch_up = caught.as_ref().ok().map(|_| ended.elapsed().as_secs_f64());
    let cpu = pair.meter.read() - cpu0;
    let m = measure(&probe.counters(), &probe.lags(), t0, t1);
    let why = if m.samples < 3 {
        format!("only {} lag readings", m.samples)
    } else if m.p99 > cfg.max_lag {
        format!("p99 lag {:.2} s > {} s", m.p99, cfg.max_lag)
    } else if m.last_third - m.first_third > cfg.lag_growth {
        format!("lag grows ({:.2} s → {:.2} s)", m.first_third, m.last_third)
    } else {
        String::new()
    };
    if let Err(e) = caught {
        // Stopped, or behind for good: this contender is done.
        return Ok(Err(e));
    }
    Ok(Ok(Step { rate, m, cpu, catch_up, pass: why.is_empty(), why }))
}

/// [`compare_rows`] until it finds no difference or `within` has passed.
async fn compare_rows_until(pair: &Pair, tables: &[&str], within: Duration) -> Result<Vec<String>> {
    let deadline = Instant::now() + within;
    loop {
        let differences = compare_rows(pair, tables).await?;
        if differences.is_empty() || Instant::now() > deadline {
            return Ok(differences);
        }
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
}

// ---------------------------------------------------------------------------------------------
// Part 4: memory during one large source transaction

struct RssReport {
    rows: u64,
    rss_before_kib: u64,
    baseline_kib: u64,
    peak_kib: u64,
    binlog_bytes: Option<u64>,
    insert_seconds: f64,
    applied_after: Option<f64>,
    failure: Option<String>,
}

/// The source's binary log file and position.
async fn master_status(conn: &mut Conn) -> Result<(String, u64)> {
    let row: Row = conn.query_first("SHOW MASTER STATUS").await?.ok_or("SHOW MASTER STATUS: no binary log")?;
    let file = row.get::<String, _>("File").ok_or("SHOW MASTER STATUS: no File")?;
    let position = row.get::<u64, _>("Position").ok_or("SHOW MASTER STATUS: no Position")?;
    Ok((file, position))
}

async fn part_rss(cfg: &Config, pair: &Pair) -> Result<RssReport> {
    println!(
        "\n== 4. memory: Ferry streams one source transaction of {} rows (INSERT … SELECT into a 12-column table) ==",
        thousands(cfg.big_tx_rows as f64)
    );
    let mut report = RssReport {
        rows: cfg.big_tx_rows,
        rss_before_kib: 0,
        baseline_kib: 0,
        peak_kib: 0,
        binlog_bytes: None,
        insert_seconds: f64::NAN,
        applied_after: None,
        failure: None,
    };
    let mut src = connect(&pair.source).await?;
    let table = change_table("big");
    run_all(&mut src, &["RESET MASTER", "DROP TABLE IF EXISTS shop.stream, shop.hb, shop.big", &table]).await?;
    reset_target(&pair.target).await?;
    let mut ferry = match FerryStream::start(cfg, pair, "bench/big", &["big"]).await {
        Ok(f) => f,
        Err(e) => {
            report.failure = Some(format!("setting up: {e}"));
            return Ok(report);
        }
    };
    tokio::time::sleep(Duration::from_secs(1)).await;
    report.rss_before_kib = proc_status_kib("VmRSS")?;
    // 5 resets the peak resident set size (VmHWM) to the current one.
    std::fs::write("/proc/self/clear_refs", "5")?;
    report.baseline_kib = proc_status_kib("VmHWM")?;
    let (file0, pos0) = master_status(&mut src).await?;
    let t = Instant::now();
    src.query_drop(change_rows_sql("big", 0, cfg.big_tx_rows)).await?;
    report.insert_seconds = t.elapsed().as_secs_f64();
    let committed = Instant::now();
    let (file1, pos1) = master_status(&mut src).await?;
    report.binlog_bytes = (file0 == file1).then(|| pos1.saturating_sub(pos0));
    src.disconnect().await?;
    let mut tgt = connect(&pair.target).await?;
    // The transaction's last row: a point read that does not compete with the apply, and the
    // whole transaction is there once it is.
    let last = cfg.big_tx_rows;
    loop {
        let there: Option<u64> = tgt.exec_first("SELECT id FROM shop.big WHERE id = ?", (last,)).await?;
        if there.is_some() {
            report.applied_after = Some(committed.elapsed().as_secs_f64());
            break;
        }
        if let Some(e) = ferry.failure().await {
            report.failure = Some(e);
            break;
        }
        if committed.elapsed() > cfg.catch_up_limit {
            report.failure = Some(format!("not on the target {} s after its commit", cfg.catch_up_limit.as_secs()));
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    report.peak_kib = proc_status_kib("VmHWM")?;
    tgt.disconnect().await?;
    if report.failure.is_none() {
        let differences = compare_rows(pair, &["big"]).await?;
        if !differences.is_empty() {
            report.failure = Some(format!("rows differ: {}", differences.join("; ")));
        }
    }
    if let Some(e) = ferry.stop().await {
        report.failure.get_or_insert(e);
    }
    println!(
        "  RSS before {:.0} MiB; VmHWM reset to {:.0} MiB, peak {:.0} MiB (+{:.0} MiB); the transaction: {:.1} s on \
         the source, {} of row events; on the target {} after its commit{}",
        report.rss_before_kib as f64 / 1024.0,
        report.baseline_kib as f64 / 1024.0,
        report.peak_kib as f64 / 1024.0,
        report.peak_kib.saturating_sub(report.baseline_kib) as f64 / 1024.0,
        report.insert_seconds,
        report.binlog_bytes.map_or_else(|| "?".to_owned(), |b| format!("{:.0} MB", b as f64 / 1e6)),
        report.applied_after.map_or_else(|| "—".to_owned(), |s| format!("{s:.1} s")),
        report.failure.as_ref().map_or_else(String::new, |e| format!("; FAILED: {e}"))
    );
    Ok(report)
}

// ---------------------------------------------------------------------------------------------
// Summary

fn print_summary(
    cfg: &Config,
    full: &Option<Result<FullReport>>,
    stream: &Option<Result<Vec<StreamReport>>>,
    rss: &Option<Result<RssReport>>,
) -> usize {
    let mut failures = 0;
    println!("\n======================================== summary ========================================");
    if let Some(full) = full {
        match full {
            Err(e) => {
                failures += 1;
                println!("1. full transfer did not run: {e}");
            }
            Ok(r) => {
                println!(
                    "1. full transfer: {} rows in 3 tables, {:.0} MB on the source; {} of {} round(s), rows compared after each",
                    thousands(r.rows as f64),
                    r.megabytes,
                    if cfg.rounds > 1 { "median" } else { "one" },
                    cfg.rounds
                );
                println!(
                    "   {:<48} {:>8} {:>10} {:>11} {:>22}",
                    "", "seconds", "rows/s", "peer/Ferry", "cpu s: tool/src/tgt"
                );
                let ferry = r.results.iter().find(|x| x.tool == FullTool::Ferry).and_then(FullResult::seconds);
                for x in &r.results {
                    if let Some(s) = &x.skipped {
                        println!("   {:<48} left out: {s}", x.name);
                        continue;
                    }
                    if let Some(e) = &x.failure {
                        failures += 1;
                        println!("   {:<48} FAILED: {e}", x.name);
                        continue;
                    }
                    let Some(secs) = x.seconds() else { continue };
                    let ratio = ferry.map_or_else(|| "—".to_owned(), |f| format!("{:.2}×", secs / f));
                    let cpu = x.median_cpu().unwrap_or_default();
                    println!(
                        "   {:<48} {secs:>8.2} {:>10} {ratio:>11} {:>22}",
                        x.name,
                        thousands(r.rows as f64 / secs),
                        format!("{:.1}/{:.1}/{:.1}", cpu.own + cpu.children, cpu.source, cpu.target)
                    );
                    if let Some((d, l)) =
                        median(x.split.iter().map(|s| s.0).collect()).zip(median(x.split.iter().map(|s| s.1).collect()))
                    {
                        println!("   {:<48} ({d:.2} s dump + {l:.2} s load)", "");
                    }
                    for note in &x.notes {
                        println!("   {:<48} note: {note}", "");
                    }
                }
            }
        }
    }
    if let Some(stream) = stream {
        match stream {
            Err(e) => {
                failures += 1;
                println!("2–3. change stream did not run: {e}");
            }
            Ok(reports) => {
                println!(
                    "2. sustainable change rate ({} clients, {} s steps from {} rows/s by {}; pass: lag p99 ≤ {} s, no growth > {} s)",
                    cfg.clients,
                    cfg.step_seconds,
                    thousands(cfg.rate_start as f64),
                    thousands(cfg.rate_step as f64),
                    cfg.max_lag,
                    cfg.lag_growth
                );
                for r in reports {
                    let rate = match (r.sustainable, r.writer_bound) {
                        (Some(s), None) => format!("{} rows/s", thousands(s as f64)),
                        (Some(s), Some(o)) => {
                            format!("≥ {} rows/s (writer-bound: asked {})", thousands(o), thousands(s as f64))
                        }
                        (None, _) => "below the first step".to_owned(),
                    };
                    let failed = r.steps.iter().find(|s| !s.pass).map_or_else(String::new, |s| {
                        format!("; failed at {} rows/s: {}", thousands(s.rate.map_or(f64::NAN, |x| x as f64)), s.why)
                    });
                    println!("   {:<56} {rate}{failed}", r.name);
                }
                // A writer-bound rate is a lower bound: the ratio is then one too, or an upper one.
                let of = |c: &str| {
                    let r = reports.iter().find(|r| r.name.starts_with(c))?;
                    Some((r.writer_bound.or(r.sustainable.map(|s| s as f64))?, r.writer_bound.is_some()))
                };
                let ratio = match (of("Ferry"), of("native")) {
                    (Some((f, f_bound)), Some((n, n_bound))) => {
                        let qualifier = match (f_bound, n_bound) {
                            (false, false) => "",
                            (true, false) => "≥ ",
                            (false, true) => "≤ ",
                            (true, true) => "both writer-bound: ",
                        };
                        Some(format!("{qualifier}{:.2}", f / n))
                    }
                    // Ferry failed the first step.
                    (None, Some((n, _))) if cfg.stream_ferry => {
                        Some(format!("< {:.2} (below the first step)", cfg.rate_start as f64 / n))
                    }
                    _ => None,
                };
                if let Some(ratio) = ratio {
                    println!("   {:<56} {ratio}", "Ferry / native");
                }
                println!(
                    "3. unlimited load ({} clients, {} s){:>20} {:>9} {:>7} {:>7} {:>7} {:>9} {:>6}",
                    cfg.clients, cfg.free_seconds, "offered", "applied", "p50 s", "p99 s", "max s", "catch-up", "rows"
                );
                for r in reports {
                    if let Some(f) = &r.free {
                        let rows = match &r.equal {
                            Some(Ok(())) => "equal".to_owned(),
                            Some(Err(_)) => "DIFFER".to_owned(),
                            None => "—".to_owned(),
                        };
                        println!(
                            "   {:<46} {:>9} {:>9} {:>7.2} {:>7.2} {:>7.2} {:>9} {:>6}",
                            r.name,
                            thousands(f.m.offered),
                            thousands(f.m.applied),
                            f.m.p50,
                            f.m.p99,
                            f.m.max,
                            f.catch_up.map_or_else(|| "—".to_owned(), |c| format!("{c:.2} s")),
                            rows
                        );
                        println!(
                            "   {:<46} cpu s during load + catch-up: bench process {:.1}, sysbench {:.1}, source {:.1}, \
                             target {:.1}; applying cost {:.1} cpu µs per changed row (bench process + target)",
                            "",
                            f.cpu.own,
                            f.cpu.children,
                            f.cpu.source,
                            f.cpu.target,
                            (f.cpu.own + f.cpu.target) / f.m.rows * 1e6
                        );
                    }
                    if let Some(Err(e)) = &r.equal {
                        failures += 1;
                        println!("   {:<46} rows differ: {e}", r.name);
                    }
                    if let Some(e) = &r.failure {
                        failures += 1;
                        println!("   {:<46} FAILED: {e}", r.name);
                    }
                }
            }
        }
    }
    if let Some(rss) = rss {
        match rss {
            Err(e) => {
                failures += 1;
                println!("4. memory did not run: {e}");
            }
            Ok(r) => {
                println!(
                    "4. one {}-row source transaction streamed by Ferry: this process's peak RSS {:.0} MiB over a baseline of {:.0} MiB (+{:.0} MiB){}",
                    thousands(r.rows as f64),
                    r.peak_kib as f64 / 1024.0,
                    r.baseline_kib as f64 / 1024.0,
                    r.peak_kib.saturating_sub(r.baseline_kib) as f64 / 1024.0,
                    match (&r.failure, r.applied_after) {
                        (Some(e), _) => format!("; FAILED: {e}"),
                        (None, Some(s)) => format!("; on the target {s:.1} s after its commit"),
                        (None, None) => String::new(),
                    }
                );
                if r.failure.is_some() {
                    failures += 1;
                }
            }
        }
    }
    failures
}

#[tokio::main(flavor = "multi_thread", worker_threads = 2)]
async fn main() -> Result<()> {
    let filter = tracing_subscriber::EnvFilter::try_from_default_env().unwrap_or_else(|_| "warn".into());
    tracing_subscriber::fmt().with_env_filter(filter).with_writer(std::io::stderr).init();
    let cfg = Config::from_env()?;
    let options = || MariaDbOptions { extra_args: cfg.server_args(), ..Default::default() };
    let source = MariaDbServer::start_with(options())?;
    let target = MariaDbServer::start_with(options())?;
    let meter = CpuMeter::new(&source, &target);
    let pair = Pair { source, target, meter };
    let cores = std::thread::available_parallelism().map_or(0, std::num::NonZero::get);
    println!(
        "MariaDB {} → {} on {cores} cores (both servers, the load and the tools)",
        pair.source.version(),
        pair.target.version()
    );
    println!("servers (both): {}", cfg.server_args().join(" "));
    let mut src = connect(&pair.source).await?;
    src.query_drop("CREATE DATABASE shop CHARACTER SET utf8mb4").await?;
    src.disconnect().await?;

    let pg_target = if cfg.pg_full || cfg.pg_stream { Some(to_pg::start_target()?) } else { None };
    if let Some(pg) = &pg_target {
        println!(
            "PostgreSQL {} target for the pg- parts (the testkit's: fsync=off, synchronous_commit=off)",
            pg.version()
        );
    }
    let full = if cfg.full { Some(part_full(&cfg, &pair).await) } else { None };
    if let Some(Err(e)) = &full {
        println!("full transfer: {e}");
    }
    let pg_full = match &pg_target {
        Some(pg) if cfg.pg_full => Some(to_pg::part_full(&cfg, &pair, pg).await),
        _ => None,
    };
    if let Some(Err(e)) = &pg_full {
        println!("MariaDB → PostgreSQL full transfer: {e}");
    }
    if cfg.full || cfg.pg_full {
        // The next parts start from a small source.
        let mut src = connect(&pair.source).await?;
        run_all(&mut src, &["DROP TABLE IF EXISTS shop.orders, shop.order_items, shop.order_events", "RESET MASTER"])
            .await?;
        src.disconnect().await?;
    }
    let stream = if cfg.stream { Some(part_stream(&cfg, &pair).await) } else { None };
    if let Some(Err(e)) = &stream {
        println!("change stream: {e}");
    }
    let pg_stream = match &pg_target {
        Some(pg) if cfg.pg_stream => Some(to_pg::part_stream(&cfg, &pair, pg).await),
        _ => None,
    };
    if let Some(Err(e)) = &pg_stream {
        println!("MariaDB → PostgreSQL change stream: {e}");
    }
    let rss = if cfg.rss { Some(part_rss(&cfg, &pair).await) } else { None };
    if let Some(Err(e)) = &rss {
        println!("memory: {e}");
    }
    let mut failures = print_summary(&cfg, &full, &stream, &rss);
    failures += to_pg::print_summary(&cfg, &pg_full, &pg_stream, &stream);
    if failures > 0 {
        return Err(format!("{failures} failure(s); see above").into());
    }
    Ok(())
}
