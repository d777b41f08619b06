//! The change stream of sources older than PostgreSQL 14, read over an ordinary SQL session.
//!
//! `pg_walstream` refuses replication connections to servers before 14. The slot's changes are
//! the same `pgoutput` messages through the SQL interface to logical decoding:
//! `pg_logical_slot_peek_binary_changes` reads them without consuming them, the same decoder as
//! the replication stream turns them into transactions, and `pg_replication_slot_advance` lets
//! the slot go of what the target has committed, so a crash replays at most the uncommitted
//! rest, as with the stream. What differs:
//!
//! - the slot is created by `pg_create_logical_replication_slot`, which exports no snapshot, so
//!   the full transfer reads each chunk in a fresh snapshot and the stream is applied
//!   idempotently up to the newest of them (the path a restarted job takes anyway);
//! - every peek decodes again from the slot's confirmed position: what is handed out but not yet
//!   acknowledged is decoded again and skipped, and a source transaction is returned whole;
//! - changes arrive by polling, at most [`IDLE`] after their commit when the stream is idle.

use std::panic::AssertUnwindSafe;
use std::sync::Arc;
use std::time::Duration;

use futures::FutureExt;
use pg_walstream::{CancellationToken, Lsn, PgOutputDecoder, SharedLsnFeedback};
use tokio_postgres::Client;

use super::connect::{self, describe_pg_error};
use super::stream::{self, Assembler, Changes, Decoder};
use super::target::fmt_lsn;
use crate::api::Endpoint;
use crate::engine::Login;
use crate::engine::error::{Context, EngineError, Result, Side};
use crate::engine::net::Heard;
use crate::engine::queue::{Sender, queue};

/// The first PostgreSQL version (`server_version_num`) whose replication connection the
/// stream client accepts; older sources are polled.
pub const STREAMING_SINCE: u32 = 140_000;

/// How long the reader waits after a peek that brought nothing new.
const IDLE: Duration = Duration::from_millis(200);

/// Changes per peek, about: decoding stops at the first transaction end past it.
const PEEK_CHANGES: i32 = 20_000;

/// Creates the job's logical replication slot (which must not exist) for `pgoutput`.
pub async fn create_slot(client: &Client, slot: &str) -> Result<()> {
    client
        .query_one("SELECT lsn::text FROM pg_create_logical_replication_slot($1, 'pgoutput')", &[&slot])
        .await
        .ctx(Side::Source, || format!("creating slot {slot}"))
        .map(drop)
}

/// Reads the slot on a session of its own and hands out transactions that end after `from`.
pub async fn open(
    endpoint: &Endpoint,
    login: Login<'_>,
    slot: &str,
    publication: &str,
    decoder: Decoder,
    from: u64,
) -> Result<Changes> {
    let client = connect::connect(endpoint, login, Side::Source).await?;
    let feedback = SharedLsnFeedback::new_shared();
    // The target holds everything up to `from`: the slot need not decode it again.
    feedback.update_applied_lsn(from);
    let cancel = CancellationToken::new();
    let (tx, rx) = queue(stream::QUEUE);
    let reader = Reader {
        client,
        slot: slot.to_owned(),
        // The plugin reads the option as a list of identifiers.
        publications: format!("\"{}\"", publication.replace('"', "\"\"")),
        feedback: Arc::clone(&feedback),
        advanced: 0,
    };
    let heard = Heard::default();
    let task = tokio::spawn(reader.run(decoder, Assembler::new(from), tx, cancel.clone(), heard.clone()));
    Ok(Changes::from_task(rx, feedback, cancel, task, heard))
}

struct Reader {
    client: Client,
    slot: String,
    publications: String,
    feedback: Arc<SharedLsnFeedback>,
    /// Where the slot was last moved to.
    advanced: u64,
}

impl Reader {
    async fn run(
        mut self,
        mut decoder: Decoder,
        mut assembler: Assembler,
        tx: Sender,
        cancel: CancellationToken,
        heard: Heard,
    ) {
        // One decoder for the whole run: each peek starts with the relations again, and the
        // decoder keeps quiet about ones it knows.
        let mut pgoutput = PgOutputDecoder::with_protocol_version(1);
        while !cancel.is_cancelled() {
            // A panic while decoding (in pg_walstream or here) stops the job with an error
            // rather than end the stream silently.
            let polled = AssertUnwindSafe(self.poll(&mut pgoutput, &mut decoder, &mut assembler, &tx, &heard))
                .catch_unwind()
                .await
                .unwrap_or_else(|_| Err(stream::undecodable()));
            match polled {
                Ok(Some(true)) => {}
                Ok(Some(false)) => {
                    tokio::select! {
                        () = cancel.cancelled() => return,
                        () = tokio::time::sleep(IDLE) => {}
                    }
                }
                // The applier has gone.
                Ok(None) => return,
                Err(e) => {
                    let _ = tx.send(Err(e)).await;
                    return;
                }
            }
        }
    }

    /// Moves the slot to what the target has committed, then peeks and queues the transactions
    /// not handed out before, as the rows arrive (a large transaction in pieces). Whether it
    /// brought anything; `None` when the applier has gone.
    async fn poll(
        &mut self,
        pgoutput: &mut PgOutputDecoder,
        decoder: &mut Decoder,
        assembler: &mut Assembler,
        tx: &Sender,
        heard: &Heard,
    ) -> Result<Option<bool>> {
        let applied = self.feedback.get_applied_lsn();
        if applied > self.advanced {
            // Only forward: advancing to a position behind the slot's is an error.
            self.client
                .query(
                    "SELECT pg_replication_slot_advance(slot_name, $2::text::pg_lsn) FROM pg_replication_slots \
                     WHERE slot_name = $1 AND confirmed_flush_lsn < $2::text::pg_lsn",
                    &[&self.slot, &fmt_lsn(applied)],
                )
                .await
                .ctx(Side::Source, || format!("advancing slot {}", self.slot))?;
            self.advanced = applied;
        }
        let reading = |e: tokio_postgres::Error| {
            EngineError::Stream(format!("reading slot {}: {}", self.slot, describe_pg_error(&e)))
        };
        let params: [&(dyn tokio_postgres::types::ToSql + Sync); 3] = [&self.slot, &PEEK_CHANGES, &self.publications];
        let rows = self
            .client
            .query_raw(
                "SELECT lsn::text, data FROM pg_logical_slot_peek_binary_changes($1, NULL, $2, \
                 'proto_version', '1', 'publication_names', $3)",
                params,
            )
            .await
            .map_err(reading)?;
        futures::pin_mut!(rows);
        // Every answered poll is a sign of life, whether it brought changes or not.
        heard.now();
        let mut fresh = false;
        while let Some(row) = futures::TryStreamExt::try_next(&mut rows).await.map_err(reading)? {
            heard.now();
            let lsn = super::target::parse_lsn(row.get(0)).unwrap_or(0);
            let data: Vec<u8> = row.get(1);
            let event = pgoutput
                .decode_message(data, Lsn(lsn))
                .map_err(|e| EngineError::Stream(format!("decoding slot {}: {e}", self.slot)))?;
            let Some(event) = event else { continue };
            if let Some(t) = assembler.push(decoder, &event.event_type).await? {
                fresh = true;
                if !tx.send(Ok(t)).await {
                    return Ok(None);
                }
            }
        }
        Ok(Some(fresh))
    }
}
