//! The one job pipeline every engine pair runs: resolve → record → copy (building each table's
//! keys and indexes as its copy completes) → build → finish → catch up → build what needs a
//! consistent copy → stream → cut over. The order of the steps, the stages and table states
//! reported, where a stop is honoured and when a copy counts as consistent are decided here,
//! once; an engine pair brings the steps themselves as a [`Transfer`].
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

use std::future::Future;
use std::time::Instant;

use tokio::sync::mpsc::UnboundedSender;

use super::error::{EngineError, Result, Side};
use super::snapshot::Chunk;
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

/// What the target's ledger records of a job.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Ledger<P> {
    /// Where the stream starts: at or before every chunk's snapshot.
    pub start: P,
    /// The newest position a chunk was read at, once one was read after `start`.
    pub safe_end: Option<P>,
    /// The last position whose changes are committed on the target.
    pub checkpoint: Option<P>,
    /// Whether the full transfer (or, without one, the structure) is finished.
    pub full_done: bool,
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

/// What a [`Transfer::build`] step builds.
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

/// One engine pair's steps of the [`run`] pipeline. Each method is one step; `job` is the job
/// being run. An implementation holds what its steps share (sessions, tables, plans).
pub trait Transfer: Send + Sync {
    /// The source's position type.
    type Position: Position;

    /// The selected tables, in the job's order: display name and estimated rows.
    fn tables(&self) -> Vec<(String, u64)>;

    /// The job's ledger at the start of a run: `None` before its first start, or when what the
    /// source held for it is gone and it must start over (the target tables emptied).
    fn resume(&mut self, job: &Job<'_>) -> impl Future<Output = Result<Option<Ledger<Self::Position>>>> + Send;

    /// The job's ledger now.
    fn ledger(&mut self, job: &Job<'_>) -> impl Future<Output = Result<Option<Ledger<Self::Position>>>> + Send;

    /// First start: takes the start position (from `spec.startPosition` for a stream-only job
    /// that sets it), creates the target structure, plans the chunks, records it all.
    fn begin(&mut self, job: &Job<'_>) -> impl Future<Output = Result<()>> + Send;

    /// Every start, once the job is recorded: what keeps running beside the steps (a slot's
    /// watch, sequence followers) and what is checked again.
    fn prepare(&mut self, _job: &Job<'_>) -> impl Future<Output = Result<()>> + Send {
        async { Ok(()) }
    }

    /// The chunks still to copy. `planned`: the plan was recorded in this run, so no chunk was
    /// read in an earlier run's snapshot.
    fn pending(&mut self, job: &Job<'_>, planned: bool) -> impl Future<Output = Result<Vec<Chunk>>> + Send;

    /// Whether [`Transfer::build_table`] has anything to build for `table`.
    fn builds_during_copy(&self, job: &Job<'_>, table: usize) -> bool;

    /// Copies `pending` in that order (with `readParallelism` readers), sending on `copied` each
    /// table whose last chunk is written while chunks are still waiting.
    fn copy(
        &self,
        job: &Job<'_>,
        pending: &[Chunk],
        copied: UnboundedSender<usize>,
    ) -> impl Future<Output = Result<()>> + Send;

    /// Builds `table`'s keys and indexes that do not need a consistent copy, on a target
    /// session of its own, while other tables copy.
    fn build_table(&self, job: &Job<'_>, table: usize) -> impl Future<Output = Result<()>> + Send;

    /// One build step.
    fn build(&mut self, job: &Job<'_>, step: Build) -> impl Future<Output = Result<()>> + Send;

    /// Records the full transfer (or the structure of a job without one) as finished.
    fn finish_full(&mut self, job: &Job<'_>) -> impl Future<Output = Result<()>> + Send;

    /// Applies the change stream from `from` until the job stops, or (with `until`) until that
    /// position is applied or the source's log ends: idempotently up to `safe_end`.
    fn stream(
        &mut self,
        job: &Job<'_>,
        from: Self::Position,
        safe_end: Self::Position,
        until: Option<Self::Position>,
    ) -> impl Future<Output = Result<()>> + Send;

    /// At every stop at a checkpoint: what the target's applications need to take over
    /// (sequences set past the source's values).
    fn cut_over(&mut self, _job: &Job<'_>) -> impl Future<Output = Result<()>> + Send {
        async { Ok(()) }
    }

    /// A `FULL_TRANS` job is done: releases what it holds on the source.
    fn complete(&mut self, _job: &Job<'_>) -> impl Future<Output = Result<()>> + Send {
        async { Ok(()) }
    }
}

fn missing() -> EngineError {
    EngineError::query(Side::Target, "reading the job back", "row missing")
}

/// Runs a job through `transfer`'s steps until it completes (`FULL_TRANS`), is stopped, or
/// fails.
pub async fn run<T: Transfer>(job: &Job<'_>, mut transfer: T) -> Result<Outcome> {
    let spec = job.spec;
    let tables = transfer.tables();
    job.tracker.tables(&tables);
    job.tracker.stage(TransferStage::Starting);
    let all = || 0..tables.len();

    let planned = match transfer.resume(job).await? {
        Some(_) => false,
        None => {
            transfer.begin(job).await?;
            true
        }
    };
    transfer.prepare(job).await?;
    let ledger = transfer.ledger(job).await?.ok_or_else(missing)?;

    if spec.task_type.has_full() && !ledger.full_done {
        job.tracker.stage(TransferStage::Full);
        let started = Instant::now();
        copy(job, &mut transfer, planned).await?;
        tracing::info!(job = job.id, seconds = started.elapsed().as_secs_f64(), "chunks copied");
        if job.stopping() {
            transfer.cut_over(job).await?;
            return Ok(Outcome::Stopped);
        }
        all().for_each(|t| job.tracker.table_state(t, TableState::Indexing));
        let started = Instant::now();
        transfer.build(job, Build::AfterCopy).await?;
        tracing::info!(job = job.id, seconds = started.elapsed().as_secs_f64(), "keys and indexes built");
        transfer.finish_full(job).await?;
        all().for_each(|t| job.tracker.table_state(t, TableState::Copied));
        job.tracker.stage(TransferStage::FullComplete);
    } else if !ledger.full_done {
        transfer.build(job, Build::WithoutCopy).await?;
        transfer.finish_full(job).await?;
    }

    let ledger = transfer.ledger(job).await?.ok_or_else(missing)?;
    let safe_end = ledger.safe_end();
    if spec.task_type.has_full() && ledger.from() < safe_end {
        // Chunks were read in snapshots after the start: replay up to the newest so the copy is
        // consistent as of that moment.
        transfer.stream(job, ledger.from(), safe_end, Some(safe_end)).await?;
        if job.stopping() {
            transfer.cut_over(job).await?;
            return Ok(Outcome::Stopped);
        }
    }
    let started = Instant::now();
    transfer.build(job, Build::Consistent).await?;
    tracing::debug!(job = job.id, seconds = started.elapsed().as_secs_f64(), "built what needs a consistent copy");

    if !spec.task_type.has_incremental() {
        transfer.cut_over(job).await?;
        transfer.complete(job).await?;
        return Ok(Outcome::Completed);
    }
    let ledger = transfer.ledger(job).await?.ok_or_else(missing)?;
    all().for_each(|t| job.tracker.table_state(t, TableState::Streaming));
    job.tracker.stage(TransferStage::Incremental);
    transfer.stream(job, ledger.from(), safe_end, None).await?;
    transfer.cut_over(job).await?;
    Ok(Outcome::Stopped)
}

/// The copy step: the pending chunks in one order for every pair — tables with something to
/// build during the copy first, the biggest first, so their builds overlap the copy of the
/// others and what is left to build after it is as small as it can be — and each table's build
/// as soon as its copy is complete, one table at a time.
async fn copy<T: Transfer>(job: &Job<'_>, transfer: &mut T, planned: bool) -> Result<()> {
    let mut pending = transfer.pending(job, planned).await?;
    let rows: Vec<u64> = transfer.tables().into_iter().map(|(_, rows)| rows).collect();
    let transfer = &*transfer;
    pending.sort_by_key(|c| {
        (!transfer.builds_during_copy(job, c.table), std::cmp::Reverse(rows.get(c.table).copied().unwrap_or(0)))
    });
    let (copied_tx, mut copied) = tokio::sync::mpsc::unbounded_channel();
    let chunks = transfer.copy(job, &pending, copied_tx);
    let builds = async {
        while let Some(t) = copied.recv().await {
            if !transfer.builds_during_copy(job, t) {
                continue;
            }
            job.tracker.table_state(t, TableState::Indexing);
            let started = Instant::now();
            transfer.build_table(job, t).await?;
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
