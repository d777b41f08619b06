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
use super::pipeline::{self, Build, Ledger, Transfer};
use super::snapshot as copy;
use super::snapshot::{Chunk, ChunkTarget};
use super::throttle::Throttle;
use crate::api::SyncJobSpec;
use crate::engine::Outcome;
use std::future::Future;
use std::sync::Arc;
use tokio::sync::mpsc::UnboundedSender;

impl Job<'_> {
    pub(crate) async fn my_source(&self) -> Result<Conn> {
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
    let transfer = MyTransfer::open(&job).await?;
    pipeline::run(&job, transfer).await
}

/// A binary log position: the file's sequence number and the offset in it, as one number
/// (`sequence << 32 | offset`) whose order is the log's. The file's base name is the job's
/// ([`BinlogNames`]); 0 stands for "at a GTID position" before the stream has learnt a file.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub struct BinlogPosition(pub u64);

impl pipeline::Position for BinlogPosition {
    fn to_ledger(self) -> u64 {
        self.0
    }
    fn from_ledger(stored: u64) -> BinlogPosition {
        BinlogPosition(stored)
    }
}

/// The MySQL/MariaDB → MySQL/MariaDB steps of the job [`pipeline`].
struct MyTransfer {
    src: Conn,
    tgt: Conn,
    tables: Vec<MyTable>,
    /// The ledger as last read.
    state: Option<target::JobState>,
}

impl MyTransfer {
    /// Connects both sides and resolves the selected tables, refusing a row filter the stream
    /// could not evaluate before anything is copied.
    async fn open(job: &Job<'_>) -> Result<MyTransfer> {
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
        Ok(MyTransfer { src, tgt, tables, state: None })
    }

    fn names(&self) -> BinlogNames {
        BinlogNames { base: self.state.as_ref().map_or_else(String::new, |s| s.binlog_base.clone()), width: 6 }
    }
}

/// The ledger's view of a MySQL-family job state.
fn ledger(s: &target::JobState) -> Ledger<BinlogPosition> {
    Ledger {
        start: BinlogPosition(s.start),
        safe_end: s.safe_end.map(BinlogPosition),
        checkpoint: s.checkpoint.map(BinlogPosition),
        full_done: s.full_done,
    }
}

/// The start of a job's stream: the current position, or (for a stream-only job)
/// `spec.startPosition` as `file:offset` or a GTID position. Returns the binary log naming,
/// the position (0 for a GTID position: the stream finds the file) and its GTID form (empty
/// when not known).
pub async fn start_position(src: &mut Conn, spec: &SyncJobSpec) -> Result<(BinlogNames, BinlogPosition, String)> {
    let at = current_position(src).await?;
    let names = BinlogNames::of(&at.file)?;
    let Some(p) = spec.start_position.as_deref().filter(|_| !spec.task_type.has_full()) else {
        let start = names.encode(&at.file, at.position)?;
        return Ok((names, BinlogPosition(start), at.gtid.to_string()));
    };
    match p.rsplit_once(':') {
        Some((file, offset)) => {
            let offset = offset.parse().map_err(|_| {
                EngineError::Unsupported(format!("spec.startPosition {p:?}: the offset is not a number"))
            })?;
            let names = BinlogNames::of(file)?;
            let start = names.encode(file, offset)?;
            Ok((names, BinlogPosition(start), String::new()))
        }
        // A GTID position: the stream finds the file; positions are learnt from it.
        None => Ok((names, BinlogPosition(0), p.to_owned())),
    }
}

/// The chunk plan of `tables`. A keyless table is split only when one reader alone would take
/// longer on it than the readers' share of everything (or its size is unknown): otherwise the
/// other tables keep every reader busy, and one scan costs the source less than reads of index
/// ranges.
pub async fn plan_chunks(
    src: &mut Conn,
    tables: &[MyTable],
    spec: &SyncJobSpec,
) -> Result<Vec<(String, Vec<crate::engine::KeyRange>)>> {
    let rows_per_chunk = copy::rows_per_chunk(spec);
    let readers = copy::parallelism(spec) as u64;
    let total: u64 = tables.iter().map(|t| t.def.estimated_rows).sum();
    let mut plan = Vec::new();
    for t in tables.iter().filter(|_| spec.task_type.has_full()) {
        let rows = t.def.estimated_rows;
        let split = rows == 0 || rows.saturating_mul(readers) > total;
        plan.push((t.def.display_name(), source::plan_chunks(src, t, rows_per_chunk, split).await?));
    }
    Ok(plan)
}

/// Copies `pending` with `readParallelism` readers of the MySQL family, each with its own
/// source session and a writer `open_target` opens; the ranges of split keyless tables are read
/// in one shared snapshot. The readers write their rows in `format` (the MySQL target's
/// `LOAD DATA` input when `None`); each table whose last chunk is written while chunks are still
/// waiting is sent on `copied`.
pub async fn copy_chunks<T, OT, FT>(
    job: &Job<'_>,
    tables: &[MyTable],
    names: &BinlogNames,
    format: Option<Arc<dyn source::RowFormat>>,
    pending: &[Chunk],
    copied: UnboundedSender<usize>,
    open_target: OT,
) -> Result<()>
where
    T: ChunkTarget<target::ChunkData>,
    OT: Fn() -> FT,
    FT: Future<Output = Result<T>>,
{
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
        let reader = source::MyChunkSource::new(conn, tables, names.clone(), &shared);
        Ok(match &format {
            Some(f) => reader.with_format(Arc::clone(f)),
            None => reader,
        })
    };
    copy::copy_reporting(pending, parallel, open_source, open_target, &throttle, &job.tracker, &job.stop, copied).await
}

impl Transfer for MyTransfer {
    type Position = BinlogPosition;

    fn tables(&self) -> Vec<(String, u64)> {
        self.tables.iter().map(|t| (t.def.display_name(), t.def.estimated_rows)).collect()
    }

    async fn resume(&mut self, job: &Job<'_>) -> Result<Option<Ledger<BinlogPosition>>> {
        self.ledger(job).await
    }

    async fn ledger(&mut self, job: &Job<'_>) -> Result<Option<Ledger<BinlogPosition>>> {
        self.state = target::job_state(&mut self.tgt, job.id).await?;
        Ok(self.state.as_ref().map(ledger))
    }

    async fn begin(&mut self, job: &Job<'_>) -> Result<()> {
        let spec = job.spec;
        let (names, start, start_gtid) = start_position(&mut self.src, spec).await?;
        let dbs: Vec<String> = self.tables.iter().map(|t| t.def.schema.clone()).collect();
        let databases = catalog::database_charsets(&mut self.src, &dbs).await?;
        let with_indexes = !spec.task_type.has_full() && spec.policy.indexes;
        target::create_structure(&mut self.tgt, &self.tables, &databases, with_indexes).await?;
        let plan = plan_chunks(&mut self.src, &self.tables, spec).await?;
        target::record_job(&mut self.tgt, job.id, &names.base, start.0, &start_gtid, &plan).await?;
        tracing::info!(job = job.id, position = %names.display(start.0), gtid = %start_gtid, "structure and chunk plan ready");
        Ok(())
    }

    async fn pending(&mut self, job: &Job<'_>, planned: bool) -> Result<Vec<Chunk>> {
        if !planned {
            for t in self.tables.iter().filter(|t| t.def.key.is_empty()) {
                if target::restart_split_table(&mut self.tgt, job.id, t).await? {
                    tracing::info!(job = job.id, table = %t.def.display_name(), "keyless table copied again in one chunk");
                }
            }
        }
        let done = target::copied_rows(&mut self.tgt, job.id).await?;
        let names: Vec<String> = self.tables.iter().map(|t| t.def.display_name()).collect();
        Ok(copy::resume(&names, &done, target::pending_chunks(&mut self.tgt, job.id).await?, &job.tracker))
    }

    fn builds_during_copy(&self, job: &Job<'_>, table: usize) -> bool {
        // The unique indexes wait for a consistent copy.
        job.spec.policy.indexes && self.tables.get(table).is_some_and(|t| t.indexes.iter().any(|ix| !ix.unique))
    }

    /// Every pending chunk loaded with `LOAD DATA`.
    async fn copy(&self, job: &Job<'_>, pending: &[Chunk], copied: UnboundedSender<usize>) -> Result<()> {
        let tables = &self.tables;
        let open_target = || async {
            let mut conn = job.my_target().await?;
            let packet = connect::packet_budget(&mut conn).await;
            Ok(target::MyChunkTarget { conn, packet, job: job.id, tables })
        };
        copy_chunks(job, tables, &self.names(), None, pending, copied, open_target).await
    }

    async fn build_table(&self, job: &Job<'_>, table: usize) -> Result<()> {
        let mut conn = job.my_target().await?;
        // Indexes left out are reported by the build after the copy.
        target::create_indexes(&mut conn, std::slice::from_ref(&self.tables[table]), false).await?;
        Ok(())
    }

    async fn build(&mut self, job: &Job<'_>, step: Build) -> Result<()> {
        if !job.spec.policy.indexes {
            return Ok(());
        }
        match step {
            Build::AfterCopy => {
                for s in target::create_indexes(&mut self.tgt, &self.tables, false).await? {
                    tracing::warn!(index = %s, "index uses columns that are not transferred; not created");
                }
            }
            // The tables were created with their indexes (begin).
            Build::WithoutCopy => {}
            // Only a consistent copy can take unique indexes.
            Build::Consistent if job.spec.task_type.has_full() => {
                target::create_indexes(&mut self.tgt, &self.tables, true).await?;
            }
            Build::Consistent => {}
        }
        Ok(())
    }

    async fn finish_full(&mut self, job: &Job<'_>) -> Result<()> {
        target::finish_full(&mut self.tgt, job.id).await
    }

    async fn stream(
        &mut self,
        job: &Job<'_>,
        from: BinlogPosition,
        safe_end: BinlogPosition,
        until: Option<BinlogPosition>,
    ) -> Result<()> {
        let spec = job.spec;
        let state = target::job_state(&mut self.tgt, job.id)
            .await?
            .ok_or_else(|| EngineError::query(Side::Target, "reading the job back", "row missing"))?;
        let names = BinlogNames { base: state.binlog_base.clone(), width: 6 };
        let read = target::table_read_positions(&mut self.tgt, job.id).await?;
        // A job told to start at a GTID position starts there until it has a checkpoint.
        let start = if from.0 == 0 && state.checkpoint.is_none() && !state.start_gtid.is_empty() {
            StartAt::Gtid(state.start_gtid.clone())
        } else {
            let (file, offset) = names.decode(from.0);
            StartAt::File(file, offset)
        };
        let opts = StreamOptions {
            start,
            until_end_of_log: until.is_some(),
            server_id: stream::server_id_for(job.id),
            tables: self.tables.clone(),
            selection: spec.objects.clone(),
            ddl: spec.policy.ddl.clone(),
            dml: spec.policy.dml_types.clone(),
            names,
        };
        let changes = MyChanges::open(&spec.source, job.credentials.login(Side::Source), opts).await?;
        let apply_opts =
            ApplyOptions::for_job(spec, self.tables.iter().map(|t| &t.def), &read, safe_end.0, until.map(|u| u.0))
                .with_heartbeats(true);
        let target = job.my_target().await?;
        let mut applier =
            applier::Applier::open(target, job.id, &self.tables, spec.policy.conflict, state.ddl_attempted).await?;
        apply::run(changes, &mut applier, &apply_opts, &job.tracker, job.stop.clone()).await
    }
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
