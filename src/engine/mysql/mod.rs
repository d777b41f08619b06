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
use super::pipeline::{self, Build, Ledger, Origin};
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
    let src = MySource::open(&job).await?;
    let mut conn = job.my_target().await?;
    target::ensure_bookkeeping(&mut conn).await?;
    let tgt = target::MyTarget { conn, tables: src.tables.iter().map(|t| t.def.clone()).collect() };
    for (object, reason) in src.tables.iter().flat_map(MyTable::left_out) {
        tracing::warn!(object = %object, reason = %reason, "left out of the target structure");
        job.tracker.skipped(&object, &reason);
    }
    pipeline::run(&job, src, tgt, MyToMy).await
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

/// The MySQL-family source half of a job ([`pipeline::Source`]): chunks read in consistent
/// snapshots, the binary log read as a replica. Nothing is held on the source.
pub struct MySource {
    conn: Conn,
    /// The selected tables.
    pub tables: Vec<MyTable>,
    /// How the job's positions name binary log files (learnt at its start).
    pub names: BinlogNames,
    /// The start as a GTID position, for a job told to start at one; empty otherwise.
    start_gtid: String,
}

impl MySource {
    /// Connects to the source and resolves the selected tables, refusing a row filter the
    /// stream could not evaluate before anything is copied.
    pub async fn open(job: &Job<'_>) -> Result<MySource> {
        let spec = job.spec;
        let mut conn = job.my_source().await?;
        let tables = catalog::resolve(&mut conn, &spec.objects).await?;
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
        Ok(MySource { conn, tables, names: BinlogNames { base: String::new(), width: 6 }, start_gtid: String::new() })
    }

    /// The job's binary log stream from `ledger`'s checkpoint (from its GTID start for a job
    /// told to start at one, until it has a checkpoint), to the end of the log with `until`.
    pub async fn changes(
        &self,
        job: &Job<'_>,
        ledger: &Ledger<BinlogPosition>,
        until: Option<BinlogPosition>,
    ) -> Result<MyChanges> {
        let spec = job.spec;
        let from = ledger.from();
        let start = if from.0 == 0 && ledger.checkpoint.is_none() && !self.start_gtid.is_empty() {
            StartAt::Gtid(self.start_gtid.clone())
        } else {
            let (file, offset) = self.names.decode(from.0);
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
            names: self.names.clone(),
        };
        MyChanges::open(&spec.source, job.credentials.login(Side::Source), opts).await
    }

    /// Copies `pending` with `readParallelism` readers, each with its own source session and a
    /// writer `open_target` opens; the ranges of split keyless tables are read in one shared
    /// snapshot. The readers write their rows in `format` (the MySQL target's `LOAD DATA` input
    /// when `None`); each table whose last chunk is written while chunks are still waiting is
    /// sent on `copied`.
    pub async fn copy<T, OT, FT>(
        &self,
        job: &Job<'_>,
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
        let (tables, names) = (&self.tables, &self.names);
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
        copy::copy_reporting(pending, parallel, open_source, open_target, &throttle, &job.tracker, &job.stop, copied)
            .await
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

impl pipeline::Source for MySource {
    type Position = BinlogPosition;

    fn tables(&self) -> Vec<(String, u64)> {
        self.tables.iter().map(|t| (t.def.display_name(), t.def.estimated_rows)).collect()
    }

    async fn resume(&mut self, _job: &Job<'_>, ledger: &Ledger<BinlogPosition>) -> Result<bool> {
        self.names = BinlogNames { base: ledger.origin.name.clone(), width: 6 };
        self.start_gtid = ledger.origin.detail.clone();
        Ok(true)
    }

    async fn start(&mut self, job: &Job<'_>) -> Result<(BinlogPosition, Origin)> {
        let (names, start, gtid) = start_position(&mut self.conn, job.spec).await?;
        tracing::info!(job = job.id, position = %names.display(start.0), gtid = %gtid, "start position taken");
        self.names = names;
        self.start_gtid = gtid;
        Ok((start, Origin { name: self.names.base.clone(), detail: self.start_gtid.clone() }))
    }

    /// A keyless table is split only when one reader alone would take longer on it than the
    /// readers' share of everything (or its size is unknown): otherwise the other tables keep
    /// every reader busy, and one scan costs the source less than reads of index ranges.
    async fn plan(&mut self, job: &Job<'_>) -> Result<pipeline::Plan> {
        let spec = job.spec;
        let rows_per_chunk = copy::rows_per_chunk(spec);
        let readers = copy::parallelism(spec) as u64;
        let total: u64 = self.tables.iter().map(|t| t.def.estimated_rows).sum();
        let mut plan = Vec::new();
        for t in &self.tables {
            let rows = t.def.estimated_rows;
            let split = rows == 0 || rows.saturating_mul(readers) > total;
            plan.push((t.def.display_name(), source::plan_chunks(&mut self.conn, t, rows_per_chunk, split).await?));
        }
        Ok(plan)
    }

    fn snapshots_differ(&self, planned: bool) -> bool {
        // Every chunk is read in a snapshot of its own, the ranges of a split keyless table in
        // one they share within a run.
        !planned
    }
}

/// The MySQL/MariaDB → MySQL/MariaDB [`pipeline::Mapping`]: the tables as the source defines
/// them, rows loaded with `LOAD DATA`, the binary log's changes applied as they are.
struct MyToMy;

impl pipeline::Mapping<MySource, target::MyTarget> for MyToMy {
    async fn create(&mut self, job: &Job<'_>, src: &mut MySource, tgt: &mut target::MyTarget) -> Result<()> {
        let spec = job.spec;
        let dbs: Vec<String> = src.tables.iter().map(|t| t.def.schema.clone()).collect();
        let databases = catalog::database_charsets(&mut src.conn, &dbs).await?;
        let with_indexes = !spec.task_type.has_full() && spec.policy.indexes;
        target::create_structure(&mut tgt.conn, &src.tables, &databases, with_indexes).await
    }

    fn builds_during_copy(&self, job: &Job<'_>, src: &MySource, table: usize) -> bool {
        // The unique indexes wait for a consistent copy.
        job.spec.policy.indexes && src.tables.get(table).is_some_and(|t| t.indexes.iter().any(|ix| !ix.unique))
    }

    /// Every pending chunk loaded with `LOAD DATA`.
    async fn copy(
        &self,
        job: &Job<'_>,
        src: &MySource,
        _tgt: &target::MyTarget,
        pending: &[Chunk],
        copied: UnboundedSender<usize>,
    ) -> Result<()> {
        let tables = &src.tables;
        let open_target = || async {
            let mut conn = job.my_target().await?;
            let packet = connect::packet_budget(&mut conn).await;
            Ok(target::MyChunkTarget { conn, packet, job: job.id, tables })
        };
        src.copy(job, None, pending, copied, open_target).await
    }

    async fn build_table(&self, job: &Job<'_>, src: &MySource, table: usize) -> Result<()> {
        let mut conn = job.my_target().await?;
        // Indexes left out are reported by the build after the copy.
        target::create_indexes(&mut conn, std::slice::from_ref(&src.tables[table]), false).await?;
        Ok(())
    }

    async fn build(
        &mut self,
        job: &Job<'_>,
        src: &mut MySource,
        tgt: &mut target::MyTarget,
        step: Build,
    ) -> Result<()> {
        if !job.spec.policy.indexes {
            return Ok(());
        }
        match step {
            Build::AfterCopy => {
                for s in target::create_indexes(&mut tgt.conn, &src.tables, false).await? {
                    tracing::warn!(index = %s, "index uses columns that are not transferred; not created");
                }
            }
            // The tables were created with their indexes (create).
            Build::WithoutCopy => {}
            // Only a consistent copy can take unique indexes.
            Build::Consistent if job.spec.task_type.has_full() => {
                target::create_indexes(&mut tgt.conn, &src.tables, true).await?;
            }
            Build::Consistent => {}
        }
        Ok(())
    }

    async fn stream(
        &mut self,
        job: &Job<'_>,
        src: &mut MySource,
        tgt: &mut target::MyTarget,
        ledger: &Ledger<BinlogPosition>,
        until: Option<BinlogPosition>,
    ) -> Result<()> {
        let spec = job.spec;
        let state = target::job_state(&mut tgt.conn, job.id)
            .await?
            .ok_or_else(|| EngineError::query(Side::Target, "reading the job back", "row missing"))?;
        let read = target::table_read_positions(&mut tgt.conn, job.id).await?;
        let changes = src.changes(job, ledger, until).await?;
        let safe_end = ledger.safe_end().0;
        let apply_opts =
            ApplyOptions::for_job(spec, src.tables.iter().map(|t| &t.def), &read, safe_end, until.map(|u| u.0))
                .with_heartbeats(true);
        let conn = job.my_target().await?;
        let mut applier =
            applier::Applier::open(conn, job.id, &src.tables, spec.policy.conflict, state.ddl_attempted).await?;
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
