//! The queue between a change stream's reader and the applier, bounded by row changes: a
//! reader hands a large source transaction over in pieces of [`PIECE`] changes
//! ([`Transaction::partial`]), and waits before queueing while [`BUDGET`] changes are queued
//! already, so a worker's memory does not grow with the size of a transaction or with how far
//! the applier is behind.
//!
//! The engines' readers own what they do while they wait (keeping the source's connection
//! alive); this module owns only the queue and its budget.

use std::sync::Arc;

use tokio::sync::{Semaphore, mpsc};

use super::error::Result;
use super::model::Transaction;

/// Changes of one source transaction handed to the applier at once: a larger transaction goes
/// in pieces, which the target applies in one transaction of its own (see
/// [`Transaction::partial`]), so the worker never holds a whole large transaction.
pub const PIECE: usize = 5_000;

/// Row changes that may wait between the reader and the applier, over every queued
/// transaction: with [`PIECE`], what bounds the worker's memory whatever the source's
/// transactions.
pub const BUDGET: usize = 50_000;

/// The reader's end of the queue: a transaction waits for room in the change budget before it
/// is queued.
#[derive(Clone)]
pub struct Sender {
    tx: mpsc::Sender<Result<Transaction>>,
    budget: Arc<Semaphore>,
}

/// The applier's end of the queue.
pub struct Receiver {
    rx: mpsc::Receiver<Result<Transaction>>,
    budget: Arc<Semaphore>,
}

/// A queue of at most `items` transactions (or pieces) and [`BUDGET`] row changes.
pub fn queue(items: usize) -> (Sender, Receiver) {
    let (tx, rx) = mpsc::channel(items.max(1));
    let budget = Arc::new(Semaphore::new(BUDGET));
    (Sender { tx, budget: Arc::clone(&budget) }, Receiver { rx, budget })
}

/// What a queued item costs of the budget: its changes, at least one (an empty transaction
/// and an error are queued too), at most the whole budget, so that any item fits once the
/// queue is empty.
fn cost(item: &Result<Transaction>) -> u32 {
    let n = item.as_ref().map_or(1, |t| t.changes.len().clamp(1, BUDGET));
    u32::try_from(n).unwrap_or(u32::MAX)
}

impl Sender {
    /// Queues `item` once the budget has room; false when the applier has gone.
    pub async fn send(&self, item: Result<Transaction>) -> bool {
        let Ok(permit) = self.budget.acquire_many(cost(&item)).await else { return false };
        // Given back by the receiver when it takes the item.
        permit.forget();
        self.tx.send(item).await.is_ok()
    }
}

impl Receiver {
    /// The next item, once one is queued; `None` when the reader has gone and the queue is
    /// empty. Cancel-safe: an item is either returned or left queued.
    pub async fn recv(&mut self) -> Option<Result<Transaction>> {
        let item = self.rx.recv().await?;
        self.budget.add_permits(cost(&item) as usize);
        Some(item)
    }
}

impl Drop for Receiver {
    fn drop(&mut self) {
        // A reader waiting for room gives up: the applier has gone.
        self.budget.close();
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::engine::model::{Cell, Change};

    fn piece(changes: usize) -> Result<Transaction> {
        let change = Change::Insert { table: 0, row: vec![Cell::Null] };
        Ok(Transaction { changes: vec![change; changes], end: 1, commit_time_us: 0, partial: true })
    }

    #[tokio::test]
    async fn a_reader_waits_while_the_budget_is_spent_and_goes_on_as_the_applier_takes() {
        let (tx, mut rx) = queue(256);
        for _ in 0..BUDGET / PIECE {
            assert!(tx.send(piece(PIECE)).await);
        }
        let mut blocked = Box::pin(tx.send(piece(PIECE)));
        assert!(futures::poll!(&mut blocked).is_pending(), "the budget is spent");
        assert_eq!(rx.recv().await.unwrap().unwrap().changes.len(), PIECE);
        assert!(blocked.await, "room for one more piece");
    }

    #[tokio::test]
    async fn a_transaction_beyond_the_budget_goes_alone() {
        let (tx, mut rx) = queue(256);
        assert!(tx.send(piece(BUDGET + 1)).await);
        let mut blocked = Box::pin(tx.send(piece(1)));
        assert!(futures::poll!(&mut blocked).is_pending());
        assert_eq!(rx.recv().await.unwrap().unwrap().changes.len(), BUDGET + 1);
        assert!(blocked.await);
    }

    #[tokio::test]
    async fn a_reader_waiting_for_room_gives_up_when_the_applier_goes() {
        let (tx, rx) = queue(256);
        assert!(tx.send(piece(BUDGET)).await);
        let blocked = tokio::spawn({
            let tx = tx.clone();
            async move { tx.send(piece(1)).await }
        });
        drop(rx);
        assert!(!blocked.await.unwrap());
    }
}
