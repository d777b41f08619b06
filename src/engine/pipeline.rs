//! The one job pipeline every engine pair runs: resolve → record → copy (building each table's
//! keys and indexes as its copy completes) → build → finish → catch up → build what needs a
//! consistent copy → stream → cut over. The order of the steps, the stages and table states
//! reported, where a stop is honoured and when a copy counts as consistent are decided here,
//! once.
//!
//! A job is run from three parts that compose: a [`Source`] (the source engine's catalog, start
//! position, chunk plan and what it holds for the job), a [`Target`] (the target engine's ledger:
//! the job's position, chunk plan and what is copied), and a [`Mapping`] between the two (the
//! structure the target gets, the rows of the copy and the changes of the stream in the
//! target's terms). A source engine and a target engine are written once; a new pair of them
//! is a new [`Mapping`].
//!
//! Why a killed worker loses and doubles nothing, whatever the pair:
//! 1. The start position is taken before anything is read, so the stream starts at or before
//!    every snapshot a chunk is read in; it is recorded on the target with the chunk plan.
//! 2. Each chunk is loaded and marked done (with the position its snapshot was at) in one
//!    target transaction; a restarted worker copies only the chunks not marked done.
//! 3. Up to the newest position a chunk was read at (`safe_end`), changes are applied
//!    idempotently: the target may hold their effect already. Only after that catch-up is the
//!    copy consistent, so what needs a consistent copy (unique indexes, foreign keys) is built
//!    then, and a `FULL_TRANS` job completes only then.
//! 4. Each batch of changes commits with its checkpoint on the target.

use std::collections::HashMap;
use std::future::Future;
use std::time::Instant;

use tokio::sync::mpsc::UnboundedSender;

use super::error::{EngineError, Result, Side};
use super::model::{KeyRange, TableDef};
use super::snapshot::{Chunk, PendingChunk};
use super::{Job, Outcome};
use crate::api::{TableState, TransferStage};

/// A position in the source's change history, in the source's own terms (a WAL LSN, a binary
/// log file and offset). The target's ledger stores it as a number ([`Position::to_ledger`]),
/// in an order the number keeps.
pub trait Position: Copy + Ord + Send + Sync + std::fmt::Debug {
    /// The number the ledger stores.
    fn to_ledger(self) -> u64;
    /// The position a stored number stands for.
    fn from_ledger(stored: u64) -> Self;
}

/// What the source needs besides a position to find its change history again (a replication
/// slot and publication; a binary log's base name and a GTID position). The target stores it
/// with the job and hands it back as it was, without reading it.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Origin {
    /// The first name (a slot, a binary log's base name).
    pub name: String,
    /// The second (a publication, a GTID position; empty when the source has none).
    pub detail: String,
}

/// What the target's ledger records of a job.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Ledger<P> {
    /// Where the stream starts: at or before every chunk's snapshot.
    pub start: P,
    /// The newest position a chunk was read at, once one was read after `start`.
    pub safe_end: Option<P>,
    /// The last position whose changes are committed on the target.
    pub checkpoint: Option<P>,
    /// Whether the full transfer (or, without one, the structure) is finished.
    pub full_done: bool,
    /// What the source recorded with the start.
    pub origin: Origin,
}

impl Ledger<u64> {
    /// The ledger with its stored numbers read as the source's positions.
    pub fn positioned<P: Position>(self) -> Ledger<P> {
        Ledger {
            start: P::from_ledger(self.start),
            safe_end: self.safe_end.map(P::from_ledger),
            checkpoint: self.checkpoint.map(P::from_ledger),
            full_done: self.full_done,
            origin: self.origin,
        }
    }
}

impl<P: Position> Ledger<P> {
    /// Where the stream continues.
    pub fn from(&self) -> P {
        self.checkpoint.unwrap_or(self.start)
    }

    /// Up to where changes are applied idempotently.
    pub fn safe_end(&self) -> P {
        self.safe_end.unwrap_or(self.start)
    }
}

/// The chunk plan of a job's full transfer: each table's display name and key ranges.
pub type Plan = Vec<(String, Vec<KeyRange>)>;

/// What a [`Mapping::build`] step builds.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Build {
    /// After the copy: the keys and indexes that do not need a consistent copy, for the tables
    /// whose build did not overlap the copy.
    AfterCopy,
    /// A job without a full transfer: everything at once (nothing to load, nothing to catch up).
    WithoutCopy,
    /// Once the copy is consistent: what needs that (unique indexes, foreign keys, identity
    /// values that follow the data).
    Consistent,
}

/// The source half of a job: one source engine, whatever the target. Holds the source session
/// and the selected tables as the source's catalog describes them.
pub trait Source: Send + Sync {
    /// The source's position type.
    type Position: Position;

    /// The selected tables, in the job's order: display name and estimated rows.
    fn tables(&self) -> Vec<(String, u64)>;

    /// A job the target has a ledger of starts again: whether what the source holds for it
    /// (its change history from `ledger`'s checkpoint on) is still there. `false` starts the
    /// job over; an error when it can never be read again.
    fn resume(
        &mut self,
        _job: &Job<'_>,
        _ledger: &Ledger<Self::Position>,
    ) -> impl Future<Output = Result<bool>> + Send {
        async { Ok(true) }
    }

    /// First start: takes the start position (from `spec.startPosition` for a stream-only job
    /// that sets it) and whatever the source holds for the job from there.
    fn start(&mut self, job: &Job<'_>) -> impl Future<Output = Result<(Self::Position, Origin)>> + Send;

    /// First start of a job with a full transfer: the chunk plan, once the start is taken.
    fn plan(&mut self, job: &Job<'_>) -> impl Future<Output = Result<Plan>> + Send;

    /// What the source reads its change stream with and needs back after a restart, per table
    /// (a PostgreSQL table's column layout): the target keeps it with the job. None by default.
    fn layouts(&self) -> Vec<(String, String)> {
        Vec::new()
    }

    /// Every start, once the job is recorded: what keeps running on the source beside the
    /// steps (a slot's watch).
    fn prepare(&mut self, _job: &Job<'_>) -> impl Future<Output = Result<()>> + Send {
        async { Ok(()) }
    }

    /// Whether the chunks still to copy are read in other snapshots than those an earlier run
    /// copied in (`planned`: the plan was recorded in this run). A table without a key split
    /// into ranges must then be copied again whole: its rows have no key to tell one range's
    /// copy from another's.
    fn snapshots_differ(&self, planned: bool) -> bool;

    /// A `FULL_TRANS` job is done: releases what the source holds for it.
    fn complete(&mut self, _job: &Job<'_>) -> impl Future<Output = Result<()>> + Send {
        async { Ok(()) }
    }
}

/// The target half of a job: one target engine's ledger, whatever the source. Holds the target
/// session and the target tables.
pub trait Target: Send + Sync {
    /// The job's ledger, `None` before its first start.
    fn ledger(&mut self, job: &Job<'_>) -> impl Future<Output = Result<Option<Ledger<u64>>>> + Send;

    /// Records a job starting (again) at `start`, with what the source recorded with it, its
    /// chunk plan and the source's layouts, in one transaction.
    fn record(
        &mut self,
        job: &Job<'_>,
        start: u64,
        origin: &Origin,
        plan: &Plan,
        layouts: &[(String, String)],
    ) -> impl Future<Output = Result<()>> + Send;

    /// The target tables (source and target names, keys), in the job's order.
    fn tables(&self) -> &[TableDef];

    /// When the ledger splits `table` into several chunks not all copied, empties the target
    /// table and replaces its chunks with one for the whole table, in one transaction; returns
    /// whether it did.
    fn restart_split_table(&mut self, job: &Job<'_>, table: &TableDef) -> impl Future<Output = Result<bool>> + Send;

    /// Rows copied so far, by table (display name).
    fn copied_rows(&mut self, job: &Job<'_>) -> impl Future<Output = Result<HashMap<String, u64>>> + Send;

    /// The chunks the ledger lists as not yet copied.
    fn pending_chunks(&mut self, job: &Job<'_>) -> impl Future<Output = Result<Vec<PendingChunk>>> + Send;

    /// Records the full transfer (or the structure of a job without one) as finished.
    fn finish_full(&mut self, job: &Job<'_>) -> impl Future<Output = Result<()>> + Send;

    /// Empties the job's target tables, for a job that starts over.
    fn empty(&mut self) -> impl Future<Output = Result<()>> + Send;
}

/// What one pair of engines brings between its [`Source`] and its [`Target`]: the target
/// structure, the copy's rows and the stream's changes in the target's terms. Each method is one
/// step of [`run`]; `job` is the job being run.
pub trait Mapping<S: Source, T: Target>: Send + Sync {
    /// A job the target has a ledger of starts again (and the source can resume it).
    fn resumed(&mut self, _job: &Job<'_>, _src: &mut S, _tgt: &mut T) -> impl Future<Output = Result<()>> + Send {
        async { Ok(()) }
    }

    /// First start, once the start position is taken: creates the target structure.
    fn create(&mut self, job: &Job<'_>, src: &mut S, tgt: &mut T) -> impl Future<Output = Result<()>> + Send;

    /// Every start, once the job is recorded: what keeps running beside the steps (sequence
    /// followers) and what is checked again.
    fn prepare(&mut self, _job: &Job<'_>, _src: &mut S, _tgt: &mut T) -> impl Future<Output = Result<()>> + Send {
        async { Ok(()) }
    }

    /// Whether [`Mapping::build_table`] has anything to build for `table`.
    fn builds_during_copy(&self, job: &Job<'_>, src: &S, table: usize) -> bool;

    /// Copies `pending` in that order (with `readParallelism` readers), sending on `copied` each
    /// table whose last chunk is written while chunks are still waiting.
    fn copy(
        &self,
        job: &Job<'_>,
        src: &S,
        tgt: &T,
        pending: &[Chunk],
        copied: UnboundedSender<usize>,
    ) -> impl Future<Output = Result<()>> + Send;

    /// Builds `table`'s keys and indexes that do not need a consistent copy, on a target
    /// session of its own, while other tables copy.
    fn build_table(&self, job: &Job<'_>, src: &S, table: usize) -> impl Future<Output = Result<()>> + Send;

    /// One build step.
    fn build(
        &mut self,
        job: &Job<'_>,
        src: &mut S,
        tgt: &mut T,
        step: Build,
    ) -> impl Future<Output = Result<()>> + Send;

    /// Applies the change stream from `ledger`'s checkpoint (its start at first) until the job
    /// stops, or (with `until`) until that position is applied or the source's log ends:
    /// idempotently up to `ledger`'s `safe_end`.
    fn stream(
        &mut self,
        job: &Job<'_>,
        src: &mut S,
        tgt: &mut T,
        ledger: &Ledger<S::Position>,
        until: Option<S::Position>,
    ) -> impl Future<Output = Result<()>> + Send;

    /// At every stop at a checkpoint: what the target's applications need to take over
    /// (sequences set past the source's values).
    fn cut_over(&mut self, _job: &Job<'_>, _src: &mut S, _tgt: &mut T) -> impl Future<Output = Result<()>> + Send {
        async { Ok(()) }
    }
}

fn missing() -> EngineError {
    EngineError::query(Side::Target, "reading the job back", "row missing")
}

/// The job's ledger, in the source's positions; an error when the target has none.
async fn read_ledger<S: Source, T: Target>(job: &Job<'_>, tgt: &mut T) -> Result<Ledger<S::Position>> {
    Ok(tgt.ledger(job).await?.ok_or_else(missing)?.positioned())
}

/// First start (or a start over): the start position, the target structure, the chunk plan,
/// all recorded on the target.
async fn begin<S: Source, T: Target, M: Mapping<S, T>>(
    job: &Job<'_>,
    src: &mut S,
    tgt: &mut T,
    map: &mut M,
) -> Result<()> {
    let started = Instant::now();
    let (start, origin) = src.start(job).await?;
    map.create(job, src, tgt).await?;
    let plan = if job.spec.task_type.has_full() { src.plan(job).await? } else { Plan::new() };
    tgt.record(job, start.to_ledger(), &origin, &plan, &src.layouts()).await?;
    tracing::info!(
        job = job.id,
        start = ?start,
        origin = %origin.name,
        seconds = started.elapsed().as_secs_f64(),
        "start position, structure and chunk plan recorded"
    );
    Ok(())
}

/// Runs a job from `src` to `tgt` through `map` until it completes (`FULL_TRANS`), is
/// stopped, or fails.
pub async fn run<S: Source, T: Target, M: Mapping<S, T>>(
    job: &Job<'_>,
    mut src: S,
    mut tgt: T,
    mut map: M,
) -> Result<Outcome> {
    let spec = job.spec;
    let tables = src.tables();
    job.tracker.tables(&tables);
    job.tracker.stage(TransferStage::Starting);
    let all = || 0..tables.len();

    let recorded = tgt.ledger(job).await?.map(Ledger::positioned::<S::Position>);
    let planned = match recorded {
        Some(l) if src.resume(job, &l).await? => {
            map.resumed(job, &mut src, &mut tgt).await?;
            false
        }
        Some(_) => {
            tracing::warn!(job = job.id, "what the source held for the job is gone: starting the transfer over");
            tgt.empty().await?;
            begin(job, &mut src, &mut tgt, &mut map).await?;
            true
        }
        None => {
            begin(job, &mut src, &mut tgt, &mut map).await?;
            true
        }
    };
    src.prepare(job).await?;
    map.prepare(job, &mut src, &mut tgt).await?;
    let ledger = read_ledger::<S, T>(job, &mut tgt).await?;

    if spec.task_type.has_full() && !ledger.full_done {
        job.tracker.stage(TransferStage::Full);
        let started = Instant::now();
        copy(job, &src, &mut tgt, &map, planned).await?;
        tracing::info!(job = job.id, seconds = started.elapsed().as_secs_f64(), "chunks copied");
        if job.stopping() {
            map.cut_over(job, &mut src, &mut tgt).await?;
            return Ok(Outcome::Stopped);
        }
        all().for_each(|t| job.tracker.table_state(t, TableState::Indexing));
        let started = Instant::now();
        map.build(job, &mut src, &mut tgt, Build::AfterCopy).await?;
        tracing::info!(job = job.id, seconds = started.elapsed().as_secs_f64(), "keys and indexes built");
        tgt.finish_full(job).await?;
        all().for_each(|t| job.tracker.table_state(t, TableState::Copied));
        job.tracker.stage(TransferStage::FullComplete);
    } else if !ledger.full_done {
        map.build(job, &mut src, &mut tgt, Build::WithoutCopy).await?;
        tgt.finish_full(job).await?;
    }

    let ledger = read_ledger::<S, T>(job, &mut tgt).await?;
    if spec.task_type.has_full() && ledger.from() < ledger.safe_end() {
        // Chunks were read in snapshots after the start: replay up to the newest so the copy is
        // consistent as of that moment.
        let safe_end = ledger.safe_end();
        map.stream(job, &mut src, &mut tgt, &ledger, Some(safe_end)).await?;
        if job.stopping() {
            map.cut_over(job, &mut src, &mut tgt).await?;
            return Ok(Outcome::Stopped);
        }
    }
    let started = Instant::now();
    map.build(job, &mut src, &mut tgt, Build::Consistent).await?;
    tracing::debug!(job = job.id, seconds = started.elapsed().as_secs_f64(), "built what needs a consistent copy");

    if !spec.task_type.has_incremental() {
        map.cut_over(job, &mut src, &mut tgt).await?;
        src.complete(job).await?;
        return Ok(Outcome::Completed);
    }
    let ledger = read_ledger::<S, T>(job, &mut tgt).await?;
    all().for_each(|t| job.tracker.table_state(t, TableState::Streaming));
    job.tracker.stage(TransferStage::Incremental);
    map.stream(job, &mut src, &mut tgt, &ledger, None).await?;
    map.cut_over(job, &mut src, &mut tgt).await?;
    Ok(Outcome::Stopped)
}

/// The chunks still to copy, each table credited on the job's tracker with the rows copied
/// already. `restart_split`: chunks may have been read in another run's snapshot, so a table
/// without a key split into ranges and not finished is copied again whole, in one chunk (its
/// rows have no key to tell one range's copy from another's, nor its changes from the copy's).
async fn pending<T: Target>(job: &Job<'_>, tgt: &mut T, restart_split: bool) -> Result<Vec<Chunk>> {
    if restart_split {
        let keyless: Vec<TableDef> = tgt.tables().iter().filter(|t| t.key.is_empty()).cloned().collect();
        for t in &keyless {
            if tgt.restart_split_table(job, t).await? {
                tracing::info!(job = job.id, table = %t.display_name(), "keyless table copied again in one chunk");
            }
        }
    }
    let done = tgt.copied_rows(job).await?;
    let names: Vec<String> = tgt.tables().iter().map(TableDef::display_name).collect();
    let pending = tgt.pending_chunks(job).await?;
    Ok(super::snapshot::resume(&names, &done, pending, &job.tracker))
}

/// The copy step: the pending chunks in one order for every pair — tables with something to
/// build during the copy first, the biggest first, so their builds overlap the copy of the
/// others and what is left to build after it is as small as it can be — and each table's build
/// as soon as its copy is complete, one table at a time.
async fn copy<S: Source, T: Target, M: Mapping<S, T>>(
    job: &Job<'_>,
    src: &S,
    tgt: &mut T,
    map: &M,
    planned: bool,
) -> Result<()> {
    let mut pending = pending(job, tgt, src.snapshots_differ(planned)).await?;
    let rows: Vec<u64> = src.tables().into_iter().map(|(_, rows)| rows).collect();
    pending.sort_by_key(|c| {
        (!map.builds_during_copy(job, src, c.table), std::cmp::Reverse(rows.get(c.table).copied().unwrap_or(0)))
    });
    let tgt = &*tgt;
    let (copied_tx, mut copied) = tokio::sync::mpsc::unbounded_channel();
    let chunks = map.copy(job, src, tgt, &pending, copied_tx);
    let builds = async {
        while let Some(t) = copied.recv().await {
            if !map.builds_during_copy(job, src, t) {
                continue;
            }
            job.tracker.table_state(t, TableState::Indexing);
            let started = Instant::now();
            map.build_table(job, src, t).await?;
            tracing::debug!(
                job = job.id,
                table = t + 1,
                seconds = started.elapsed().as_secs_f64(),
                "keys and indexes built during the copy"
            );
        }
        Ok(())
    };
    futures::future::try_join(chunks, builds).await?;
    Ok(())
}
