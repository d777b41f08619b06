//! MySQL / MariaDB → PostgreSQL, built from the two engines' halves: the MySQL family's catalog,
//! chunk planning, consistent-snapshot reads and binary-log stream on the source; the
//! PostgreSQL target's `_ferry` ledger, `COPY` load and exactly-once applier on the target. What
//! is this pair's own is the type mapping ([`types`], documented in
//! docs/mysql-to-postgresql.md), the structure it implies ([`structure`]), the row format of the
//! copy ([`copy`]) and the conversion of the stream's cells ([`stream`]).
//!
//! The order of things, and why a killed worker resumes without losing or doubling a row:
//! 1. The source's binary log position is taken, the target tables are created (without keys)
//!    and the chunk plan is recorded in `_ferry` on the target, the position in the ledger's
//!    position columns (a binary log position encoded as file sequence and offset, as the MySQL
//!    engine does; the binary log's base name where the PostgreSQL engine keeps its slot name).
//! 2. Each chunk is read in its own consistent snapshot, converted to `COPY` text and loaded
//!    and marked done in one PostgreSQL transaction. A restarted worker copies only the chunks
//!    not marked done.
//! 3. Primary keys and secondary indexes are built (unique ones, with a stream, once it has
//!    caught up with the newest chunk's snapshot), identity sequences set to continue after the
//!    source's `AUTO_INCREMENT`, and the transfer marked done.
//! 4. With a stream: the binary log from the start position, applied idempotently up to the
//!    newest chunk's snapshot, each batch committed with its checkpoint; identity sequences set
//!    again at a stop.

pub mod copy;
pub mod ddl;
pub mod precheck;
pub mod stream;
pub mod structure;
pub mod types;

pub use precheck::precheck;

use std::sync::Arc;

use mysql_async::Conn;
use mysql_async::prelude::Queryable;
use tokio_postgres::Client;

use super::apply::{self, ApplyOptions};
use super::error::{Context, EngineError, Result, Side};
use super::mysql::catalog::{self, MyTable};
use super::mysql::stream::{BinlogNames, MyChanges, StartAt, StreamOptions};
use super::mysql::{self as my, snapshot, source};
use super::postgres::catalog::PgTable;
use super::postgres::{self as pg, target as pg_target};
use super::snapshot as copy_loop;
use super::throttle::Throttle;
use super::{Credentials, Job, Outcome};
use crate::api::{SyncJobSpec, TableState, TransferStage};
use crate::engine::sql::{pg_ident, pg_qualified};
use structure::{Indexes, TablePlan};

/// Why a GTID `startPosition` is refused for this pair, for validation and the engine alike.
pub const FILE_POSITION_ONLY: &str = "a MySQL/MariaDB → PostgreSQL INCR_TRANS job starts at a binary log file and \
     offset (`mysql-bin.000042:1234`) or now; a GTID position is not supported for this pair yet";

/// The binary log naming and encoded position of a `file:offset` `startPosition`.
fn start_position(p: &str) -> Result<(BinlogNames, u64)> {
    let Some((file, offset)) = p.rsplit_once(':') else {
        return Err(EngineError::Unsupported(FILE_POSITION_ONLY.into()));
    };
    let offset = offset
        .parse()
        .map_err(|_| EngineError::Unsupported(format!("spec.startPosition {p:?}: the offset is not a number")))?;
    let names = BinlogNames::of(file)?;
    let start = names.encode(file, offset)?;
    Ok((names, start))
}

async fn source(spec: &SyncJobSpec, credentials: &Credentials) -> Result<Conn> {
    my::connect::connect(&spec.source, credentials.login(Side::Source), Side::Source).await
}

async fn target(spec: &SyncJobSpec, credentials: &Credentials) -> Result<Client> {
    pg::connect::connect(&spec.target, credentials.login(Side::Target), Side::Target).await
}

/// Runs the job until its full transfer completes, it is stopped, or it fails.
pub async fn run(job: Job<'_>) -> Result<Outcome> {
    let spec = job.spec;
    let mut src = source(spec, job.credentials).await?;
    let mut tgt = target(spec, job.credentials).await?;
    pg_target::ensure_bookkeeping(&tgt).await?;
    let tables = catalog::resolve(&mut src, &spec.objects).await?;
    let plans = structure::plan(&tables, &structure::Options::of(spec))?;
    for (object, reason) in plans.iter().flat_map(|p| p.left_out.iter()) {
        tracing::warn!(object = %object, reason = %reason, "left out of the target structure");
        job.tracker.skipped(object, reason);
    }
    job.tracker.tables(&tables.iter().map(|t| (t.def.display_name(), t.def.estimated_rows)).collect::<Vec<_>>());
    job.tracker.stage(TransferStage::Starting);

    let mut planned = false;
    let state = match pg_target::job_state(&tgt, job.id).await? {
        Some(s) => s,
        None => {
            planned = true;
            let at = snapshot::start(&mut src, false).await?;
            src.query_drop("COMMIT").await.map_err(|e| EngineError::query(Side::Source, "ending a snapshot", e))?;
            let (names, start) = match spec.start_position.as_deref().filter(|_| !spec.task_type.has_full()) {
                None => {
                    let names = BinlogNames::of(&at.file)?;
                    let start = names.encode(&at.file, at.position)?;
                    (names, start)
                }
                Some(p) => start_position(p)?,
            };
            structure::create_tables(&tgt, &tables, &plans).await?;
            let rows_per_chunk = u64::from(spec.tuning.as_ref().and_then(|t| t.batch_rows).unwrap_or(50_000));
            let readers = copy_loop::parallelism(spec) as u64;
            let total: u64 = tables.iter().map(|t| t.def.estimated_rows).sum();
            let mut plan = Vec::new();
            for t in tables.iter().filter(|_| spec.task_type.has_full()) {
                // As the MySQL engine splits a keyless table: only when one reader alone would
                // take longer on it than the readers' share of everything.
                let rows = t.def.estimated_rows;
                let split = rows == 0 || rows.saturating_mul(readers) > total;
                plan.push((t.def.display_name(), source::plan_chunks(&mut src, t, rows_per_chunk, split).await?));
            }
            pg_target::record_job(&mut tgt, job.id, &names.base, "", start, &plan, &[]).await?;
            tracing::info!(job = job.id, position = %names.display(start), "structure and chunk plan ready");
            pg_target::job_state(&tgt, job.id)
                .await?
                .ok_or_else(|| EngineError::query(Side::Target, "reading the job back", "row missing after insert"))?
        }
    };
    let names = BinlogNames { base: state.slot.clone(), width: 6 };
    let pg_tables: Vec<_> = tables.iter().zip(&plans).map(|(t, p)| copy::pg_table(t, p)).collect();
    let incremental = spec.task_type.has_incremental();
    if !spec.task_type.has_full() && !state.full_done {
        // Nothing to copy: the keys and indexes (the applier's upserts need the keys) at once.
        let which = if spec.policy.indexes { Indexes::All } else { Indexes::None };
        structure::build_keys_and_indexes(&tgt, &tables, &plans, which).await?;
        pg_target::finish_full(&tgt, job.id).await?;
    } else if !state.full_done {
        job.tracker.stage(TransferStage::Full);
        let started = std::time::Instant::now();
        full_transfer(&job, &mut tgt, &tables, &plans, &pg_tables, &names, planned).await?;
        tracing::info!(job = job.id, seconds = started.elapsed().as_secs_f64(), "chunks copied");
        if *job.stop.borrow() {
            return Ok(Outcome::Stopped);
        }
        for t in 0..tables.len() {
            job.tracker.table_state(t, TableState::Indexing);
        }
        // With a stream to catch up, unique indexes wait for a consistent copy. Primary keys
        // are built whatever `policy.indexes` says: they are part of the table (and the
        // applier's upserts need them).
        let which = match (spec.policy.indexes, incremental) {
            (false, _) => Indexes::None,
            (true, true) => Indexes::NonUnique,
            (true, false) => Indexes::All,
        };
        structure::build_keys_and_indexes(&tgt, &tables, &plans, which).await?;
        if !incremental {
            set_identities(&mut src, &tgt, &tables, &plans, &job).await?;
        }
        pg_target::finish_full(&tgt, job.id).await?;
        for t in 0..tables.len() {
            job.tracker.table_state(t, TableState::Copied);
        }
        job.tracker.stage(TransferStage::FullComplete);
    }
    if !incremental {
        return Ok(Outcome::Completed);
    }
    let state = pg_target::job_state(&tgt, job.id)
        .await?
        .ok_or_else(|| EngineError::query(Side::Target, "reading the job back", "row missing"))?;
    let safe_end = state.safe_end_lsn.unwrap_or(state.start_lsn);
    let from = state.checkpoint_lsn.unwrap_or(state.start_lsn);
    if from < safe_end {
        // Chunks were read in snapshots after the start: replay up to the newest so the copy is
        // consistent as of that moment.
        apply_stream(&job, &tables, &plans, &pg_tables, &names, from, safe_end, Some(safe_end)).await?;
        if *job.stop.borrow() {
            return Ok(Outcome::Stopped);
        }
    }
    if spec.policy.indexes {
        structure::build_keys_and_indexes(&tgt, &tables, &plans, Indexes::Unique).await?;
    }
    set_identities(&mut src, &tgt, &tables, &plans, &job).await?;
    let state = pg_target::job_state(&tgt, job.id)
        .await?
        .ok_or_else(|| EngineError::query(Side::Target, "reading the job back", "row missing"))?;
    let from = state.checkpoint_lsn.unwrap_or(state.start_lsn);
    for t in 0..tables.len() {
        job.tracker.table_state(t, TableState::Streaming);
    }
    job.tracker.stage(TransferStage::Incremental);
    apply_stream(&job, &tables, &plans, &pg_tables, &names, from, safe_end, None).await?;
    // Stopped at a checkpoint: the identity sequences continue after what the stream inserted
    // (the cut-over), on fresh sessions (the first ones sat idle through the stream).
    let cut_over = async {
        let mut src = source(spec, job.credentials).await?;
        let tgt = target(spec, job.credentials).await?;
        set_identities(&mut src, &tgt, &tables, &plans, &job).await
    };
    if let Err(e) = cut_over.await {
        tracing::warn!(code = e.code(), error = %e, "identity sequences not set at the stop");
    }
    Ok(Outcome::Stopped)
}

/// Applies the binary-log stream from `from` through the PostgreSQL applier until stopped, or
/// (with `until`) until that position is applied or the log ends: idempotently up to
/// `safe_end`, skipping a keyless table's changes up to the snapshot its copy was read in.
#[allow(clippy::too_many_arguments)]
async fn apply_stream(
    job: &Job<'_>,
    tables: &[MyTable],
    plans: &[TablePlan],
    pg_tables: &[PgTable],
    names: &BinlogNames,
    from: u64,
    safe_end: u64,
    until: Option<u64>,
) -> Result<()> {
    let spec = job.spec;
    let tgt = target(spec, job.credentials).await?;
    let read = pg_target::table_read_lsns(&tgt, job.id).await?;
    let (file, offset) = names.decode(from);
    let opts = StreamOptions {
        start: StartAt::File(file, offset),
        until_end_of_log: until.is_some(),
        server_id: my::stream::server_id_for(job.id),
        tables: tables.to_vec(),
        selection: spec.objects.clone(),
        ddl: spec.policy.ddl.clone(),
        dml: spec.policy.dml_types.clone(),
        names: names.clone(),
    };
    let changes = MyChanges::open(&spec.source, job.credentials.login(Side::Source), opts).await?;
    let changes = stream::PgChanges::new(changes, tables, plans, pg_tables)?;
    let apply_opts =
        ApplyOptions::for_job(spec, tables.iter().map(|t| &t.def), &read, safe_end, until).with_heartbeats(true);
    let mut applier =
        pg_target::Applier::open(tgt, job.id, pg_tables.to_vec(), &spec.policy).await?.counting(job.tracker.clone());
    apply::run(changes, &mut applier, &apply_opts, &job.tracker, job.stop.clone()).await
}

/// Copies every pending chunk with `readParallelism` readers (the MySQL family's reader writing
/// `COPY` text, each chunk loaded with its ledger entry in one PostgreSQL transaction).
async fn full_transfer(
    job: &Job<'_>,
    tgt: &mut Client,
    tables: &[MyTable],
    plans: &[TablePlan],
    pg_tables: &[PgTable],
    names: &BinlogNames,
    planned: bool,
) -> Result<()> {
    if !planned {
        // The ranges of a split keyless table must all be read in one snapshot: one not finished
        // in an earlier run is copied again whole.
        for t in pg_tables.iter().filter(|t| t.def.key.is_empty()) {
            if pg_target::restart_split_table(tgt, job.id, t).await? {
                tracing::info!(job = job.id, table = %t.def.display_name(), "keyless table copied again in one chunk");
            }
        }
    }
    let done = pg_target::copied_rows(tgt, job.id).await?;
    let table_names: Vec<String> = tables.iter().map(|t| t.def.display_name()).collect();
    let mut pending =
        copy_loop::resume(&table_names, &done, pg_target::pending_chunks(tgt, job.id).await?, &job.tracker);
    pending.sort_by_key(|c| std::cmp::Reverse(tables[c.table].def.estimated_rows));
    let parallel = copy_loop::parallelism(job.spec);
    let throttle = Throttle::new(&job.spec.speed_limits);
    let shared_chunks = pending.iter().filter(|c| source::SharedSnapshot::takes(&tables[c.table], c)).count();
    let shared = source::SharedSnapshot::new(
        &job.spec.source,
        job.credentials.login(Side::Source),
        names.clone(),
        parallel.min(shared_chunks),
        shared_chunks,
    );
    let format: Arc<dyn source::RowFormat> = Arc::new(copy::CopyText::new(tables, plans));
    let open_source = || async {
        let mut conn = source(job.spec, job.credentials).await?;
        source::MyChunkSource::prepare(&mut conn).await?;
        Ok(source::MyChunkSource::new(conn, tables, names.clone(), &shared).with_format(Arc::clone(&format)))
    };
    let open_target = || async {
        let client = target(job.spec, job.credentials).await?;
        Ok(copy::PgLoad { client, job: job.id, tables: pg_tables })
    };
    copy_loop::copy(&pending, parallel, open_source, open_target, &throttle, &job.tracker, &job.stop).await
}

/// Sets each identity column's sequence to continue after the source's `AUTO_INCREMENT` (or
/// after the largest value copied, if that is higher). A value the column's type cannot take is
/// reported and left.
async fn set_identities(
    src: &mut Conn,
    tgt: &Client,
    tables: &[MyTable],
    plans: &[TablePlan],
    job: &Job<'_>,
) -> Result<()> {
    // MySQL 8 caches information_schema's table statistics, AUTO_INCREMENT among them.
    let _ = src.query_drop("SET SESSION information_schema_stats_expiry = 0").await;
    for (t, p) in tables.iter().zip(plans) {
        let Some((_, target_column)) = &p.identity else { continue };
        let d = &t.def;
        let next: Option<Option<u64>> = src
            .exec_first(
                "SELECT AUTO_INCREMENT FROM information_schema.TABLES WHERE TABLE_SCHEMA = ? AND TABLE_NAME = ?",
                (&d.schema, &d.name),
            )
            .await
            .map_err(|e| {
                EngineError::query(Side::Source, format!("reading the AUTO_INCREMENT of {}", d.display_name()), e)
            })?;
        let next = i64::try_from(next.flatten().unwrap_or(1)).unwrap_or(i64::MAX);
        let table = pg_qualified(&d.target_schema, &d.target_name);
        let sql = format!(
            "SELECT setval(pg_get_serial_sequence($1, $2), \
               greatest($3::int8, (SELECT coalesce(max({col}), 0)::int8 + 1 FROM {table})), false)",
            col = pg_ident(target_column)
        );
        if let Err(e) = tgt.query_one(&sql, &[&table, target_column, &next]).await {
            let object = format!("identity of column {target_column} of {}", d.display_target());
            let reason = format!(
                "the sequence could not be set to the source's next value {next}: {}",
                pg::connect::describe_pg_error(&e).redacted()
            );
            tracing::warn!(object = %object, reason = %reason, "left out");
            job.tracker.skipped(&object, &reason);
        }
    }
    Ok(())
}

/// Removes the job's bookkeeping from the target (nothing is held on the source). Safe to
/// repeat.
pub async fn release(id: &str, spec: &SyncJobSpec, credentials: &Credentials) -> Result<()> {
    let tgt = target(spec, credentials).await?;
    let has = tgt
        .query_opt("SELECT 1 FROM pg_namespace WHERE nspname = '_ferry'", &[])
        .await
        .ctx(Side::Target, || "looking up _ferry".into())?
        .is_some();
    if has {
        pg_target::forget_job(&tgt, id).await?;
    }
    Ok(())
}
