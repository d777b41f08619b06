//! MySQL / MariaDB → MySQL / MariaDB: parallel primary-key chunks read in consistent snapshots
//! and loaded with `LOAD DATA LOCAL INFILE`; the binary log streamed as a replica and applied on
//! the target with the checkpoint in the same transaction.
//!
//! The order of things, and why it is safe to kill the worker anywhere:
//! 1. A consistent snapshot's binary log position is taken before anything is read: the stream
//!    starts there, at or before every chunk's snapshot. The position, the structure and the
//!    chunk plan are recorded in `_ferry` on the target.
//! 2. Each chunk is read in its own consistent snapshot, and loaded and marked done (with the
//!    position its snapshot was at) in one target transaction. A restarted worker copies only
//!    the chunks not marked done.
//! 3. The stream is applied from the checkpoint (the start position at first). Up to the newest
//!    position a chunk was read at, changes are applied idempotently (upsert, delete if
//!    present): the target may already hold their effect.
//! 4. Each batch of changes commits with its checkpoint; nothing is held on the source, so a
//!    crash replays from the checkpoint what the target has not committed.
//!
//! MariaDB reports a snapshot's position without a lock (`binlog_snapshot_file`/`_position`);
//! MySQL 8 does not, and would need a brief `FLUSH TABLES WITH READ LOCK` around the snapshot
//! start — not built yet, so MySQL sources get a clear error at that step. MySQL's GTIDs
//! (`uuid:1-42`, `COM_BINLOG_DUMP_GTID`) are not used: the stream resumes by file and position,
//! which both servers accept.

pub mod applier;
pub mod catalog;
pub mod connect;
pub mod ddl;
pub mod defaults;
pub mod gtid;
pub mod precheck;
mod rows;
pub mod snapshot;
pub mod source;
pub mod stream;
pub mod target;
pub mod values;

use mysql_async::Conn;
use mysql_async::prelude::Queryable;

use self::catalog::MyTable;
use self::stream::{BinlogNames, MyChanges, StartAt, StreamOptions};
use super::Credentials;
use super::Job;
use super::apply::{self, ApplyOptions};
use super::error::{EngineError, Result, Side};
use super::snapshot as copy;
use super::throttle::Throttle;
use crate::api::{SyncJobSpec, TableState, TransferStage};
use crate::engine::Outcome;

impl Job<'_> {
    async fn my_source(&self) -> Result<Conn> {
        connect::connect(&self.spec.source, self.credentials.login(Side::Source), Side::Source).await
    }

    async fn my_target(&self) -> Result<Conn> {
        let mut conn = connect::connect(&self.spec.target, self.credentials.login(Side::Target), Side::Target).await?;
        target::prepare_session(&mut conn).await?;
        Ok(conn)
    }
}

/// The source's current binary log position: at or before every snapshot taken after it.
async fn current_position(src: &mut Conn) -> Result<snapshot::SnapshotPosition> {
    let at = snapshot::start(src, false).await?;
    src.query_drop("COMMIT").await.map_err(|e| EngineError::query(Side::Source, "ending a snapshot", e))?;
    Ok(at)
}

/// Runs the job until it completes (`FULL_TRANS`), is stopped, or fails.
pub async fn run(job: Job<'_>) -> Result<Outcome> {
    let spec = job.spec;
    let mut src = job.my_source().await?;
    let mut tgt = job.my_target().await?;
    target::ensure_bookkeeping(&mut tgt).await?;
    let tables = catalog::resolve(&mut src, &spec.objects).await?;
    if spec.task_type.has_incremental() {
        for t in &tables {
            // Fail before copying anything if a filter cannot follow the stream.
            if let Some(f) = &t.def.filter {
                crate::engine::filter::RowFilter::parse(f).map_err(|e| {
                    EngineError::Unsupported(format!(
                        "the row filter of {} cannot be evaluated on binary log rows: {e}",
                        t.def.display_name()
                    ))
                })?;
            }
        }
    }
    for (object, reason) in tables.iter().flat_map(MyTable::left_out) {
        tracing::warn!(object = %object, reason = %reason, "left out of the target structure");
        job.tracker.skipped(&object, &reason);
    }
    job.tracker.tables(&tables.iter().map(|t| (t.def.display_name(), t.def.estimated_rows)).collect::<Vec<_>>());
    job.tracker.stage(TransferStage::Starting);

    // Whether this run recorded the chunk plan: a later run finds chunks of split keyless tables
    // read in another run's snapshot.
    let mut planned = false;
    let state = match target::job_state(&mut tgt, job.id).await? {
        Some(s) => s,
        None => {
            planned = true;
            let at = current_position(&mut src).await?;
            let names = BinlogNames::of(&at.file)?;
            let (start, start_gtid) = match spec.start_position.as_deref().filter(|_| !spec.task_type.has_full()) {
                None => (names.encode(&at.file, at.position)?, at.gtid.to_string()),
                Some(p) => match p.rsplit_once(':') {
                    Some((file, offset)) => {
                        let offset = offset.parse().map_err(|_| {
                            EngineError::Unsupported(format!("spec.startPosition {p:?}: the offset is not a number"))
                        })?;
                        (names.encode(file, offset)?, String::new())
                    }
                    // A GTID position: the stream finds the file; positions are learnt from it.
                    None => (0, p.to_owned()),
                },
            };
            let dbs: Vec<String> = tables.iter().map(|t| t.def.schema.clone()).collect();
            let databases = catalog::database_charsets(&mut src, &dbs).await?;
            target::create_structure(&mut tgt, &tables, &databases, !spec.task_type.has_full() && spec.policy.indexes)
                .await?;
            let rows_per_chunk = copy::rows_per_chunk(spec);
            let mut plan = Vec::new();
            if spec.task_type.has_full() {
                let readers = copy::parallelism(spec) as u64;
                let total: u64 = tables.iter().map(|t| t.def.estimated_rows).sum();
                for t in &tables {
                    // A keyless table is split only when one reader alone would take longer on it
                    // than the readers' share of everything (or its size is unknown): otherwise the
                    // other tables keep every reader busy, and one scan costs the source less than
                    // reads of index ranges.
                    let rows = t.def.estimated_rows;
                    let split = rows == 0 || rows.saturating_mul(readers) > total;
                    plan.push((t.def.display_name(), source::plan_chunks(&mut src, t, rows_per_chunk, split).await?));
                }
            }
            target::record_job(&mut tgt, job.id, &names.base, start, &start_gtid, &plan).await?;
            tracing::info!(job = job.id, position = %names.display(start), gtid = %start_gtid, "structure and chunk plan ready");
            target::job_state(&mut tgt, job.id)
                .await?
                .ok_or_else(|| EngineError::query(Side::Target, "reading the job back", "row missing after insert"))?
        }
    };
    let names = BinlogNames { base: state.binlog_base.clone(), width: 6 };

    if spec.task_type.has_full() && !state.full_done {
        job.tracker.stage(TransferStage::Full);
        let started = std::time::Instant::now();
        full_transfer(&job, &mut tgt, &tables, &names, planned).await?;
        tracing::info!(job = job.id, seconds = started.elapsed().as_secs_f64(), "chunks copied");
        if *job.stop.borrow() {
            return Ok(Outcome::Stopped);
        }
        if spec.policy.indexes {
            for t in 0..tables.len() {
                job.tracker.table_state(t, TableState::Indexing);
            }
            let started = std::time::Instant::now();
            for s in target::create_indexes(&mut tgt, &tables, false).await? {
                tracing::warn!(index = %s, "index uses columns that are not transferred; not created");
            }
            tracing::info!(job = job.id, seconds = started.elapsed().as_secs_f64(), "indexes built");
        }
        target::finish_full(&mut tgt, job.id).await?;
        for t in 0..tables.len() {
            job.tracker.table_state(t, TableState::Copied);
        }
        job.tracker.stage(TransferStage::FullComplete);
    } else if !state.full_done {
        target::finish_full(&mut tgt, job.id).await?;
    }
    let state = target::job_state(&mut tgt, job.id)
        .await?
        .ok_or_else(|| EngineError::query(Side::Target, "reading the job back", "row missing"))?;
    let safe_end = state.safe_end.unwrap_or(state.start);
    let from = state.checkpoint.unwrap_or(state.start);
    if spec.task_type.has_full() && from < safe_end {
        // Chunks were read in snapshots after the start: replay up to the newest so the copy is
        // consistent as of that moment.
        let at = From::Position(from);
        apply_stream(&job, &mut tgt, &tables, &names, at, safe_end, Some(safe_end), state.ddl_attempted).await?;
        if *job.stop.borrow() {
            return Ok(Outcome::Stopped);
        }
    }
    if spec.task_type.has_full() && spec.policy.indexes {
        // Only a consistent copy can take unique indexes.
        target::create_indexes(&mut tgt, &tables, true).await?;
    }
    if !spec.task_type.has_incremental() {
        return Ok(Outcome::Completed);
    }
    let state = target::job_state(&mut tgt, job.id)
        .await?
        .ok_or_else(|| EngineError::query(Side::Target, "reading the job back", "row missing"))?;
    let from = state.checkpoint.unwrap_or(state.start);
    for t in 0..tables.len() {
        job.tracker.table_state(t, TableState::Streaming);
    }
    job.tracker.stage(TransferStage::Incremental);
    // A job told to start at a GTID position starts there until it has a checkpoint.
    let from = match state.checkpoint {
        None if state.start == 0 => From::Gtid(state.start_gtid.clone()),
        _ => From::Position(from),
    };
    apply_stream(&job, &mut tgt, &tables, &names, from, safe_end, None, state.ddl_attempted).await?;
    Ok(Outcome::Stopped)
}

/// Copies every pending chunk with `readParallelism` readers, each with its own source and
/// target sessions; the ranges of split keyless tables are read in one shared snapshot. A table
/// whose chunks are all copied gets its secondary indexes (not the unique ones, which wait for a
/// consistent copy) on one more target session while the other tables copy. `planned`: the plan
/// was recorded by this run, so no chunk was read in an earlier snapshot.
async fn full_transfer(
    job: &Job<'_>,
    tgt: &mut Conn,
    tables: &[MyTable],
    names: &BinlogNames,
    planned: bool,
) -> Result<()> {
    if !planned {
        for t in tables.iter().filter(|t| t.def.key.is_empty()) {
            if target::restart_split_table(tgt, job.id, t).await? {
                tracing::info!(job = job.id, table = %t.def.display_name(), "keyless table copied again in one chunk");
            }
        }
    }
    let done = target::copied_rows(tgt, job.id).await?;
    let table_names: Vec<String> = tables.iter().map(|t| t.def.display_name()).collect();
    let mut pending = copy::resume(&table_names, &done, target::pending_chunks(tgt, job.id).await?, &job.tracker);
    let build = job.spec.policy.indexes;
    // Tables with indexes to build first, the biggest first: their indexes are built while the
    // others copy, and what is left to build after the copy is as small as it can be.
    let has_indexes = |t: usize| build && tables[t].indexes.iter().any(|ix| !ix.unique);
    pending.sort_by_key(|c| (!has_indexes(c.table), std::cmp::Reverse(tables[c.table].def.estimated_rows)));
    let parallel = copy::parallelism(job.spec);
    let throttle = Throttle::new(&job.spec.speed_limits);
    let shared_chunks = pending.iter().filter(|c| source::SharedSnapshot::takes(&tables[c.table], c)).count();
    let shared = source::SharedSnapshot::new(
        &job.spec.source,
        job.credentials.login(Side::Source),
        names.clone(),
        parallel.min(shared_chunks),
        shared_chunks,
    );
    let open_source = || async {
        let mut conn = job.my_source().await?;
        source::MyChunkSource::prepare(&mut conn).await?;
        Ok(source::MyChunkSource::new(conn, tables, names.clone(), &shared))
    };
    let open_target = || async {
        let mut conn = job.my_target().await?;
        let packet = connect::packet_budget(&mut conn).await;
        Ok(target::MyChunkTarget { conn, packet, job: job.id, tables })
    };
    let (copied_tx, mut copied) = tokio::sync::mpsc::unbounded_channel();
    let copy = copy::copy_reporting(
        &pending,
        parallel,
        open_source,
        open_target,
        &throttle,
        &job.tracker,
        &job.stop,
        copied_tx,
    );
    let indexes = async {
        let mut session = None;
        while let Some(t) = copied.recv().await {
            if !build {
                continue;
            }
            let conn = match &mut session {
                Some(conn) => conn,
                None => session.insert(job.my_target().await?),
            };
            job.tracker.table_state(t, TableState::Indexing);
            let started = std::time::Instant::now();
            // Indexes left out are reported by the build after the copy.
            target::create_indexes(conn, std::slice::from_ref(&tables[t]), false).await?;
            tracing::debug!(job = job.id, table = %tables[t].def.display_name(), seconds = started.elapsed().as_secs_f64(), "indexes built during the copy");
        }
        Ok(())
    };
    futures::future::try_join(copy, indexes).await?;
    Ok(())
}

/// Where a stream starts.
enum From {
    /// A position of ours (file and offset).
    Position(u64),
    /// A MariaDB GTID position.
    Gtid(String),
}

/// Applies the change stream from `from` until stopped, or (with `until`) until that position
/// is applied or the log ends.
#[allow(clippy::too_many_arguments)]
async fn apply_stream(
    job: &Job<'_>,
    tgt: &mut Conn,
    tables: &[MyTable],
    names: &BinlogNames,
    from: From,
    safe_end: u64,
    until: Option<u64>,
    ddl_attempted: Option<u64>,
) -> Result<()> {
    let spec = job.spec;
    let read = target::table_read_positions(tgt, job.id).await?;
    let start = match from {
        From::Position(p) => {
            let (file, offset) = names.decode(p);
            StartAt::File(file, offset)
        }
        From::Gtid(g) => StartAt::Gtid(g),
    };
    let opts = StreamOptions {
        start,
        until_end_of_log: until.is_some(),
        server_id: stream::server_id_for(job.id),
        tables: tables.to_vec(),
        selection: spec.objects.clone(),
        ddl: spec.policy.ddl.clone(),
        dml: spec.policy.dml_types.clone(),
        names: names.clone(),
    };
    let changes = MyChanges::open(&spec.source, job.credentials.login(Side::Source), opts).await?;
    let apply_opts =
        ApplyOptions::for_job(spec, tables.iter().map(|t| &t.def), &read, safe_end, until).with_heartbeats(true);
    let mut applier =
        applier::Applier::open(job.my_target().await?, job.id, tables, spec.policy.conflict, ddl_attempted).await?;
    apply::run(changes, &mut applier, &apply_opts, &job.tracker, job.stop.clone()).await
}

/// Forgets the job's bookkeeping on the target; the source holds nothing of it. Safe to repeat.
pub async fn release(id: &str, spec: &SyncJobSpec, credentials: &Credentials) -> Result<()> {
    let mut tgt = connect::connect(&spec.target, credentials.login(Side::Target), Side::Target).await?;
    let has: Option<String> = tgt
        .query_first("SELECT SCHEMA_NAME FROM information_schema.SCHEMATA WHERE SCHEMA_NAME = '_ferry'")
        .await
        .map_err(|e| EngineError::query(Side::Target, "looking up _ferry", e))?;
    if has.is_some() {
        target::forget_job(&mut tgt, id).await?;
    }
    Ok(())
}
