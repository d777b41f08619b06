//! The full transfer's copy loop every engine shares: chunks still to copy are handed out to
//! `readParallelism` workers, each with a reader on the source and a writer on the target; a
//! chunk is written and recorded as done in one target transaction by the writer.
//!
//! An engine brings a [`ChunkSource`] and a [`ChunkTarget`] and the factories that open them;
//! this module owns the hand-out, stopping and per-table progress.

use std::future::Future;
use std::sync::atomic::{AtomicUsize, Ordering};

use tokio::sync::watch;

use super::error::{Result, Side};
use super::model::KeyRange;
use super::net::watched;
use super::progress::Tracker;
use super::throttle::Throttle;
use crate::api::TableState;

/// A chunk still to copy: the table (by index in the job's list), its number and key range.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Chunk {
    /// Index of the table in the job's table list.
    pub table: usize,
    /// Chunk number within the table.
    pub number: i32,
    /// Primary key range.
    pub range: KeyRange,
}

/// A chunk the target's ledger lists as not yet copied, by table name.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct PendingChunk {
    /// Source table (`schema.name`, `db.name`).
    pub table: String,
    /// Chunk number within the table.
    pub chunk: i32,
    /// Key range.
    pub range: KeyRange,
}

/// Picks a copy up where the ledger says it stands: credits each table with the rows already
/// copied (`done`, by table name) and turns the pending entries into chunks of the job's tables
/// (`tables`: display names, in the job's order).
pub fn resume(
    tables: &[String],
    done: &std::collections::HashMap<String, u64>,
    pending: Vec<PendingChunk>,
    tracker: &Tracker,
) -> Vec<Chunk> {
    for (i, name) in tables.iter().enumerate() {
        if let Some(rows) = done.get(name) {
            tracker.add(Some(i), *rows, 0);
        }
    }
    pending
        .into_iter()
        .filter_map(|p| {
            let table = tables.iter().position(|t| *t == p.table)?;
            Some(Chunk { table, number: p.chunk, range: p.range })
        })
        .collect()
}

/// Rows per chunk of the full transfer when `tuning.batchRows` is not set (the field's
/// documentation in the CRD states it).
pub const DEFAULT_BATCH_ROWS: u32 = 50_000;

/// Rows per chunk of a job's full transfer (`tuning.batchRows`, default [`DEFAULT_BATCH_ROWS`]).
pub fn rows_per_chunk(spec: &crate::api::SyncJobSpec) -> u64 {
    u64::from(spec.tuning.as_ref().and_then(|t| t.batch_rows).unwrap_or(DEFAULT_BATCH_ROWS))
}

/// Readers of a job's full transfer (`tuning.readParallelism`, default 2).
pub fn parallelism(spec: &crate::api::SyncJobSpec) -> usize {
    spec.tuning.as_ref().and_then(|t| t.read_parallelism).unwrap_or(2) as usize
}

/// Reads chunks from the source, each in a consistent snapshot.
pub trait ChunkSource: Send {
    /// A chunk's rows as the matching [`ChunkTarget`] takes them.
    type Data: Send;

    /// Starts reading `chunk`; returns the source position its snapshot is at (changes up to
    /// there are in the data) and the data.
    fn read(&mut self, chunk: &Chunk) -> impl Future<Output = Result<(u64, Self::Data)>> + Send;

    /// Ends the read of the chunk last started, once its data is written.
    fn finish(&mut self) -> impl Future<Output = Result<()>> + Send;
}

/// Writes chunks to the target.
pub trait ChunkTarget<D>: Send {
    /// Writes a chunk's data and records the chunk as done with the position it was read at, in
    /// one target transaction. Reads are accounted to `throttle` and `tracker` as they pass.
    /// Returns the rows written.
    fn write(
        &mut self,
        chunk: &Chunk,
        read_position: u64,
        data: D,
        throttle: &Throttle,
        tracker: &Tracker,
    ) -> impl Future<Output = Result<u64>> + Send;
}

/// Copies `pending` with `parallel` workers until done or stopped.
pub async fn copy<S, T, OS, OT, FS, FT>(
    pending: &[Chunk],
    parallel: usize,
    open_source: OS,
    open_target: OT,
    throttle: &Throttle,
    tracker: &Tracker,
    stop: &watch::Receiver<bool>,
) -> Result<()>
where
    S: ChunkSource,
    T: ChunkTarget<S::Data>,
    OS: Fn() -> FS,
    OT: Fn() -> FT,
    FS: Future<Output = Result<S>>,
    FT: Future<Output = Result<T>>,
{
    let (copied, _) = tokio::sync::mpsc::unbounded_channel();
    copy_reporting(pending, parallel, open_source, open_target, throttle, tracker, stop, copied).await
}

/// As [`copy`], and sends on `copied` each table (by index) whose last pending chunk is
/// written while chunks are still waiting to be handed out: its indexes can be built while
/// other tables copy. The channel closes when the copy ends.
#[allow(clippy::too_many_arguments)]
pub async fn copy_reporting<S, T, OS, OT, FS, FT>(
    pending: &[Chunk],
    parallel: usize,
    open_source: OS,
    open_target: OT,
    throttle: &Throttle,
    tracker: &Tracker,
    stop: &watch::Receiver<bool>,
    copied: tokio::sync::mpsc::UnboundedSender<usize>,
) -> Result<()>
where
    S: ChunkSource,
    T: ChunkTarget<S::Data>,
    OS: Fn() -> FS,
    OT: Fn() -> FT,
    FS: Future<Output = Result<S>>,
    FT: Future<Output = Result<T>>,
{
    let tables = pending.iter().map(|c| c.table + 1).max().unwrap_or(0);
    let left: Vec<AtomicUsize> = (0..tables).map(|_| AtomicUsize::new(0)).collect();
    for c in pending {
        left[c.table].fetch_add(1, Ordering::SeqCst);
    }
    let next = AtomicUsize::new(0);
    super::metrics::metrics().chunks_planned(pending.len());
    // A chunk whose rows stop moving for this long is given up (the job starts again from the
    // ledger): a connection that hangs without closing would otherwise hold the copy forever.
    let limit = super::net::timeout();
    let workers = (0..parallel.clamp(1, pending.len().max(1))).map(|_| async {
        let mut source = open_source().await?;
        let mut target = open_target().await?;
        loop {
            if *stop.borrow() {
                return Ok(());
            }
            let Some(chunk) = pending.get(next.fetch_add(1, Ordering::SeqCst)) else { return Ok(()) };
            tracker.table_state(chunk.table, TableState::Copying);
            let what = format!("reading chunk {} of table {}", chunk.number, chunk.table + 1);
            let started = std::time::Instant::now();
            let (position, data) = watched(tracker, limit, Side::Source, &what, source.read(chunk)).await?;
            let read = started.elapsed();
            let what = format!("copying chunk {} of table {} (no row moved)", chunk.number, chunk.table + 1);
            let rows =
                watched(tracker, limit, Side::Target, &what, target.write(chunk, position, data, throttle, tracker))
                    .await?;
            tracing::debug!(
                table = chunk.table + 1,
                chunk = chunk.number,
                rows,
                read_seconds = read.as_secs_f64(),
                write_seconds = (started.elapsed() - read).as_secs_f64(),
                "chunk copied"
            );
            source.finish().await?;
            // Row filters apply in the source query: every row read is written.
            super::metrics::metrics().read(super::metrics::Stage::Full, rows);
            super::metrics::metrics().chunk_done();
            tracker.add(Some(chunk.table), rows, 0);
            // A table finished after the last chunk was handed out is left to the build after
            // the copy, which has every target session to itself.
            if left[chunk.table].fetch_sub(1, Ordering::SeqCst) == 1 && next.load(Ordering::SeqCst) < pending.len() {
                // Nobody listening is no reason to stop copying.
                let _ = copied.send(chunk.table);
            }
        }
    });
    futures::future::try_join_all(workers).await?;
    Ok(())
}
