//! The change-apply loop every engine shares: take source transactions as they come, group
//! them into batches, apply each batch with its checkpoint in one target transaction, and only
//! then acknowledge the source position.
//!
//! An engine brings a [`ChangeSource`] (its change stream) and a [`ChangeTarget`] (its writer);
//! this module owns the batching, the idempotent window after a full transfer, the skipping of
//! changes a keyless table's copy already holds, stopping, and progress.

use super::metrics::{Stage, metrics};
use std::future::Future;
use std::time::Duration;

use tokio::sync::watch;

use super::error::{EngineError, Result};
use super::model::{Change, ChangeBatch, Transaction};
use super::progress::Tracker;

/// A stream of source transactions in commit order.
pub trait ChangeSource: Send {
    /// The next transaction if one arrives within `wait`: `None` when none did, `Some(None)`
    /// when the stream has ended.
    fn next_within(&mut self, wait: Duration) -> impl Future<Output = Option<Option<Result<Transaction>>>> + Send;

    /// Everything up to `end` is committed on the target: the source may let go of it.
    fn acknowledge(&self, end: u64);

    /// The position `end` as the source writes it (an LSN, a binlog position), for status.
    fn display_position(&self, end: u64) -> String;

    /// Stops reading and closes the stream.
    fn close(self) -> impl Future<Output = ()> + Send;

    /// How long since the stream last heard from the source (any event, heartbeats included),
    /// when it hears more than the transactions it delivers; `None` otherwise.
    fn silent_for(&self) -> Option<Duration> {
        None
    }
}

/// Writes batches of changes to the target.
pub trait ChangeTarget: Send {
    /// Applies `batch` and moves the checkpoint to its end, in one target transaction. A batch
    /// that ends in the middle of a source transaction ([`ChangeBatch::open`]) is applied in a
    /// target transaction left open: the next batch continues it, and the one that completes
    /// the source transaction commits it with the checkpoint.
    fn apply(&mut self, batch: &ChangeBatch, commit_time_us: Option<i64>) -> impl Future<Output = Result<()>> + Send;
}

/// How the loop groups and treats changes.
#[derive(Clone, Debug)]
pub struct ApplyOptions {
    /// Most source transactions per target transaction while the applier keeps up.
    pub max_transactions: usize,
    /// Most source transactions per target transaction while the applier is behind (each batch
    /// it takes finds more waiting): the limit doubles from `max_transactions` up to this.
    pub max_transactions_behind: usize,
    /// Most row changes per target transaction (a batch may exceed it by one transaction).
    pub max_changes: usize,
    /// Transactions ending at or before this position are applied idempotently: the full
    /// transfer may already hold their effect.
    pub idempotent_until: u64,
    /// Per table (by index): changes ending at or before this position are already in the
    /// table's copy and are skipped. Set for tables without a key, which cannot be upserted.
    pub skip_until: Vec<Option<u64>>,
    /// Return once a transaction ending at or past this position is applied, or the stream
    /// ends.
    pub until: Option<u64>,
    /// Set when the source sends something at least every few seconds while healthy (a
    /// heartbeat): a stream silent for this long is given up with [`EngineError::Silent`].
    pub silence_limit: Option<Duration>,
    /// A target batch of up to [`BATCH_TIME_UNIT`] changes that takes longer than this is given
    /// up with [`EngineError::Silent`]; larger batches get as much more time as they are larger.
    pub write_limit: Duration,
}

/// Source transactions per target transaction by default while the applier keeps up.
pub const DEFAULT_BATCH_TRANSACTIONS: usize = 100;

/// Source transactions per target transaction by default while the applier is behind.
pub const DEFAULT_BACKLOG_TRANSACTIONS: usize = 800;

/// The changes a target batch may take [`ApplyOptions::write_limit`] for.
pub const BATCH_TIME_UNIT: usize = 10_000;

impl ApplyOptions {
    /// The options of a job's stream: batches as `tuning.applyBatchTransactions` says (default
    /// [`DEFAULT_BATCH_TRANSACTIONS`], growing to [`DEFAULT_BACKLOG_TRANSACTIONS`] while
    /// behind), idempotent up to `safe_end`, and for each table without a key (`tables`, in the
    /// job's order) its changes up to the position its single chunk was read at (`read`, by
    /// table name) skipped: such a table cannot be upserted, and its copy holds them already.
    pub fn for_job<'a>(
        spec: &crate::api::SyncJobSpec,
        tables: impl Iterator<Item = &'a super::model::TableDef>,
        read: &std::collections::HashMap<String, u64>,
        safe_end: u64,
        until: Option<u64>,
    ) -> ApplyOptions {
        let set = spec.tuning.as_ref().and_then(|t| t.apply_batch_transactions).map(|n| n as usize);
        ApplyOptions {
            max_transactions: set.unwrap_or(DEFAULT_BATCH_TRANSACTIONS),
            // A limit the spec sets holds; the default grows while behind.
            max_transactions_behind: set.unwrap_or(DEFAULT_BACKLOG_TRANSACTIONS),
            max_changes: 10_000,
            idempotent_until: safe_end,
            skip_until: tables
                .map(|t| if t.key.is_empty() { read.get(&t.display_name()).copied() } else { None })
                .collect(),
            until,
            silence_limit: None,
            write_limit: super::net::timeout_of(spec),
        }
    }

    /// Gives up a stream that is silent for `tuning.networkTimeoutSeconds` when `heartbeats`
    /// says the source sends something every few seconds.
    pub fn with_heartbeats(mut self, heartbeats: bool) -> ApplyOptions {
        self.silence_limit = heartbeats.then_some(self.write_limit);
        self
    }
}

/// Drops the changes a table's copy already holds.
fn skip_copied(t: &mut Transaction, skip_until: &[Option<u64>]) {
    let end = t.end;
    let keep = |i: usize| skip_until.get(i).copied().flatten().is_none_or(|copied| end > copied);
    t.changes.retain_mut(|c| match c {
        Change::Truncate { tables } => {
            tables.retain(|&i| keep(i));
            !tables.is_empty()
        }
        Change::Insert { table, .. } | Change::Update { table, .. } | Change::Delete { table, .. } => keep(*table),
        Change::Ddl { .. } | Change::Reshape { .. } => true,
    });
}

/// Applies changes until stopped (or, with `until`, until that position is applied).
pub async fn run<S: ChangeSource, T: ChangeTarget>(
    mut source: S,
    target: &mut T,
    opts: &ApplyOptions,
    tracker: &Tracker,
    mut stop: watch::Receiver<bool>,
) -> Result<()> {
    let mut heard = tokio::time::Instant::now();
    let mut most_transactions = opts.max_transactions.max(1);
    let result = loop {
        if *stop.borrow() {
            break Ok(());
        }
        let first = tokio::select! {
            t = source.next_within(Duration::from_secs(1)) => t,
            _ = stop.changed() => continue,
        };
        if first.is_some() {
            heard = tokio::time::Instant::now();
        }
        let first = match first {
            None => {
                let silent = source.silent_for().map_or(heard.elapsed(), |s| s.min(heard.elapsed()));
                if let Some(limit) = opts.silence_limit
                    && silent >= limit
                {
                    break Err(EngineError::Silent {
                        side: super::error::Side::Source,
                        seconds: limit.as_secs(),
                        what: "streaming changes (no heartbeat arrived either)".into(),
                    });
                }
                // Nothing arrived for a second: the target is caught up.
                tracker.lag(0);
                continue;
            }
            // A stream that ends at the end of the log is done once drained.
            Some(None) if opts.until.is_some() => break Ok(()),
            Some(None) => break Err(EngineError::Stream("the source closed the change stream".into())),
            Some(Some(Err(e))) => break Err(e),
            Some(Some(Ok(t))) => t,
        };
        let mut batch = ChangeBatch { transactions: vec![first], idempotent: false };
        // Take what is already waiting, without waiting for more.
        let mut drained = false;
        while batch.transactions.len() < most_transactions && batch.len() < opts.max_changes.max(1) {
            match source.next_within(Duration::from_millis(2)).await {
                Some(Some(Ok(t))) => batch.transactions.push(t),
                Some(Some(Err(e))) => return Err(e),
                Some(None) | None => {
                    drained = true;
                    break;
                }
            }
        }
        // Behind the source, more small transactions are grouped per target transaction (up to
        // the change limit): a commit and its checkpoint cost about the same for any size, and
        // set statements write more rows each.
        most_transactions = if drained {
            opts.max_transactions.max(1)
        } else {
            (most_transactions * 2).min(opts.max_transactions_behind.max(opts.max_transactions).max(1))
        };
        batch.idempotent = batch.transactions.first().is_some_and(|t| t.end <= opts.idempotent_until);
        for t in &mut batch.transactions {
            skip_copied(t, &opts.skip_until);
        }
        let Some(end) = batch.end() else { continue };
        let open = batch.open();
        let commit_time = batch.transactions.last().map(|t| t.commit_time_us);
        if let Some(t) = commit_time {
            tracker.received(t);
        }
        let started = std::time::Instant::now();
        metrics().read(Stage::Incremental, batch.len() as u64);
        let units = u32::try_from(batch.len().div_ceil(BATCH_TIME_UNIT).max(1)).unwrap_or(u32::MAX);
        let limit = opts.write_limit.saturating_mul(units);
        match tokio::time::timeout(limit, target.apply(&batch, commit_time)).await {
            Ok(Ok(())) => {}
            Ok(Err(e)) => break Err(e),
            Err(_) => {
                break Err(EngineError::Silent {
                    side: super::error::Side::Target,
                    seconds: limit.as_secs(),
                    what: format!("applying a batch of {} changes", batch.len()),
                });
            }
        }
        metrics().batch_applied(started.elapsed());
        tracing::debug!(
            transactions = batch.transactions.len(),
            changes = batch.len(),
            open,
            ms = started.elapsed().as_millis() as u64,
            "applied a batch"
        );
        tracker.add(None, batch.len() as u64, 0);
        if open {
            // A piece of a large source transaction: applied, not committed; the rest follows.
            continue;
        }
        // Only now, with the batch and its checkpoint committed, may the source let go.
        source.acknowledge(end);
        tracker.checkpoint(source.display_position(end), commit_time);
        if opts.until.is_some_and(|u| end >= u) {
            break Ok(());
        }
    };
    source.close().await;
    result
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::engine::model::Cell;

    fn tx(end: u64, changes: Vec<Change>) -> Transaction {
        Transaction { changes, end, commit_time_us: 0, partial: false }
    }

    #[test]
    fn changes_a_keyless_copy_already_holds_are_skipped() {
        let ins = |table| Change::Insert { table, row: vec![Cell::Text("1".into())] };
        let skip = vec![None, Some(100)];
        let mut early = tx(100, vec![ins(0), ins(1), Change::Truncate { tables: vec![0, 1] }]);
        skip_copied(&mut early, &skip);
        assert_eq!(early.changes, vec![ins(0), Change::Truncate { tables: vec![0] }]);
        let mut late = tx(101, vec![ins(0), ins(1)]);
        skip_copied(&mut late, &skip);
        assert_eq!(late.changes.len(), 2);
    }
}
