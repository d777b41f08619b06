//! The PostgreSQL change stream: a logical replication slot with `pgoutput`, read through
//! `pg_walstream` and turned into [`Transaction`]s of [`Change`]s.
//!
//! `pg_walstream` stays behind this module: the rest of the engine sees transactions, a start
//! position and an acknowledgement call, nothing of the replication protocol.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

use pg_walstream::{
    CancellationToken, ColumnValue, EventType, LogicalReplicationStream, ReplicationSlotOptions,
    ReplicationStreamConfig, RetryConfig, RowData, SharedLsnFeedback, StreamingMode,
};
use tokio::sync::mpsc;
use tokio::task::JoinHandle;

use super::catalog::PgTable;
use crate::api::Endpoint;
use crate::engine::error::{EngineError, Result, Side};
use crate::engine::model::{Cell, Change, Transaction};

/// How many decoded transactions may wait for the applier before the reader pauses.
pub(super) const QUEUE: usize = 256;

/// The replication connection string for an endpoint. Values are quoted for libpq's key=value
/// syntax; the string is never logged.
fn replication_dsn(endpoint: &Endpoint, password: Option<&str>) -> String {
    let q = |v: &str| format!("'{}'", v.replace('\\', "\\\\").replace('\'', "\\'"));
    let mut parts = vec![
        format!("host={}", q(&endpoint.host)),
        format!("port={}", endpoint.port),
        "replication=database".to_owned(),
        "sslmode=disable".to_owned(),
        "application_name=ferry".to_owned(),
    ];
    if let Some(db) = &endpoint.database {
        parts.push(format!("dbname={}", q(db)));
    }
    if let Some(u) = &endpoint.user {
        parts.push(format!("user={}", q(u)));
    }
    if let Some(p) = password {
        parts.push(format!("password={}", q(p)));
    }
    parts.join(" ")
}

fn stream_error(e: impl std::fmt::Display) -> EngineError {
    EngineError::Stream(e.to_string())
}

fn config(slot: &str, publication: &str, export: bool) -> ReplicationStreamConfig {
    let mut cfg = ReplicationStreamConfig::builder(slot, publication)
        .with_protocol_version(1)
        .with_streaming_mode(StreamingMode::Off)
        .with_feedback_interval(Duration::from_secs(1))
        .with_connection_timeout(Duration::from_secs(10))
        .with_retry_config(RetryConfig {
            max_attempts: 1,
            max_duration: Duration::from_secs(10),
            ..RetryConfig::default()
        });
    if export {
        cfg = cfg.with_slot_options(ReplicationSlotOptions { snapshot: Some("export".into()), ..Default::default() });
    }
    cfg
}

/// A replication connection that has created the job's slot and holds its exported snapshot.
/// The snapshot lives until [`SlotSnapshot::into_changes`] starts streaming or the value is
/// dropped: every chunk reader must have imported it by then.
pub struct SlotSnapshot {
    stream: LogicalReplicationStream,
    snapshot: String,
}

impl SlotSnapshot {
    /// Creates the slot (which must not exist) with an exported snapshot.
    pub async fn create(
        endpoint: &Endpoint,
        password: Option<&str>,
        slot: &str,
        publication: &str,
    ) -> Result<SlotSnapshot> {
        let dsn = replication_dsn(endpoint, password);
        let mut stream = LogicalReplicationStream::new(&dsn, config(slot, publication, true)).await.map_err(|e| {
            EngineError::Connect { side: Side::Source, message: format!("replication connection: {e}") }
        })?;
        stream
            .ensure_replication_slot()
            .await
            .map_err(|e| EngineError::Stream(format!("creating slot {slot}: {e}")))?;
        let snapshot = stream
            .exported_snapshot_name()
            .ok_or_else(|| EngineError::Stream(format!("slot {slot} was created without an exported snapshot")))?
            .to_owned();
        Ok(SlotSnapshot { stream, snapshot })
    }

    /// The exported snapshot's name, for `SET TRANSACTION SNAPSHOT`.
    pub fn name(&self) -> &str {
        &self.snapshot
    }

    /// Starts streaming from `from` on the same connection (which ends the snapshot).
    pub async fn into_changes(self, tables: &[PgTable], from: u64) -> Result<Changes> {
        Changes::start(self.stream, tables, from).await
    }
}

/// Changes from the slot, as whole source transactions in commit order.
pub struct Changes {
    rx: mpsc::Receiver<Result<Transaction>>,
    feedback: Arc<SharedLsnFeedback>,
    cancel: CancellationToken,
    task: Option<JoinHandle<()>>,
}

impl Changes {
    /// Opens the slot (which must exist: check first, since starting a missing slot creates it
    /// at the current position) and streams transactions that end after `from`.
    pub async fn open(
        endpoint: &Endpoint,
        password: Option<&str>,
        slot: &str,
        publication: &str,
        tables: &[PgTable],
        from: u64,
    ) -> Result<Changes> {
        let dsn = replication_dsn(endpoint, password);
        let stream = LogicalReplicationStream::new(&dsn, config(slot, publication, false)).await.map_err(|e| {
            EngineError::Connect { side: Side::Source, message: format!("replication connection: {e}") }
        })?;
        Changes::start(stream, tables, from).await
    }

    /// Changes a task of the caller's reads into `rx`; it learns through `feedback` what the
    /// target has committed and stops on `cancel`.
    pub(super) fn from_task(
        rx: mpsc::Receiver<Result<Transaction>>,
        feedback: Arc<SharedLsnFeedback>,
        cancel: CancellationToken,
        task: JoinHandle<()>,
    ) -> Changes {
        Changes { rx, feedback, cancel, task: Some(task) }
    }

    async fn start(mut stream: LogicalReplicationStream, tables: &[PgTable], from: u64) -> Result<Changes> {
        stream.start(Some(from)).await.map_err(|e| EngineError::Stream(format!("starting replication: {e}")))?;
        let feedback = Arc::clone(&stream.shared_lsn_feedback);
        let cancel = CancellationToken::new();
        let (tx, rx) = mpsc::channel(QUEUE);
        let decoder = Decoder::new(tables);
        let events = stream.into_stream(cancel.clone());
        let task = tokio::spawn(read_loop(events, decoder, tx, from));
        Ok(Changes { rx, feedback, cancel, task: Some(task) })
    }

    /// The next transaction; `None` once the stream has ended.
    pub async fn next(&mut self) -> Option<Result<Transaction>> {
        self.rx.recv().await
    }

    /// The next transaction if one arrives within `wait`.
    pub async fn next_within(&mut self, wait: Duration) -> Option<Option<Result<Transaction>>> {
        tokio::time::timeout(wait, self.rx.recv()).await.ok()
    }

    /// Tells the source that everything up to `lsn` is committed on the target, so the slot may
    /// release the WAL before it. Call only after the target commit.
    pub fn acknowledge(&self, lsn: u64) {
        self.feedback.update_applied_lsn(lsn);
    }

    /// Stops reading and closes the replication connection.
    pub async fn close(mut self) {
        self.cancel.cancel();
        if let Some(task) = self.task.take() {
            let _ = task.await;
        }
    }
}

impl crate::engine::apply::ChangeSource for Changes {
    async fn next_within(&mut self, wait: Duration) -> Option<Option<Result<Transaction>>> {
        Changes::next_within(self, wait).await
    }

    fn acknowledge(&self, end: u64) {
        Changes::acknowledge(self, end);
    }

    fn display_position(&self, end: u64) -> String {
        super::target::fmt_lsn(end)
    }

    async fn close(self) {
        Changes::close(self).await;
    }
}

impl Drop for Changes {
    fn drop(&mut self) {
        self.cancel.cancel();
    }
}

async fn read_loop(
    mut events: pg_walstream::EventStream,
    mut decoder: Decoder,
    tx: mpsc::Sender<Result<Transaction>>,
    from: u64,
) {
    let mut assembler = Assembler::new(from);
    loop {
        let event = match events.next_event().await {
            Ok(e) => e,
            Err(pg_walstream::ReplicationError::Cancelled(_)) => break,
            Err(e) => {
                let _ = tx.send(Err(stream_error(e))).await;
                break;
            }
        };
        if let Some(t) = assembler.push(&mut decoder, &event.event_type)
            && tx.send(Ok(t)).await.is_err()
        {
            break;
        }
    }
    let _ = events.shutdown().await;
}

/// Groups decoded changes into source transactions, skipping those that end at or before a
/// position.
pub(super) struct Assembler {
    current: Option<Transaction>,
    /// Transactions ending at or before this are not handed out (again).
    done: u64,
}

impl Assembler {
    /// An assembler that hands out transactions ending after `from`.
    pub(super) fn new(from: u64) -> Assembler {
        Assembler { current: None, done: from }
    }

    /// Takes one event; returns the transaction it completes, if any.
    pub(super) fn push(&mut self, decoder: &mut Decoder, event: &EventType) -> Option<Transaction> {
        match event {
            EventType::Begin { commit_timestamp, .. } => {
                self.current = Some(Transaction {
                    changes: Vec::new(),
                    end: 0,
                    commit_time_us: commit_timestamp.timestamp_micros(),
                });
                None
            }
            EventType::Commit { end_lsn, commit_timestamp, .. } => {
                let mut t = self.current.take()?;
                t.end = end_lsn.value();
                t.commit_time_us = commit_timestamp.timestamp_micros();
                // The server skips what the slot confirmed; this also skips what the target has
                // beyond that (a checkpoint committed but not yet acknowledged), and what a
                // polled slot sends again until it is acknowledged.
                if t.end <= self.done {
                    return None;
                }
                self.done = t.end;
                Some(t)
            }
            other => {
                if let Some(t) = self.current.as_mut() {
                    t.changes.extend(decoder.decode(other));
                }
                None
            }
        }
    }
}

/// A job table as the decoder needs it: index in the job's list, column names in order, key
/// positions.
type DecodedTable = (usize, Vec<String>, Vec<usize>);

/// Maps pgoutput events onto the job's tables.
pub(super) struct Decoder {
    /// `(schema, table)` → the job's table.
    tables: HashMap<(String, String), DecodedTable>,
}

impl Decoder {
    pub(super) fn new(tables: &[PgTable]) -> Decoder {
        let map = tables
            .iter()
            .enumerate()
            .map(|(i, t)| {
                let names = t.def.columns.iter().map(|c| c.name.clone()).collect();
                ((t.def.schema.clone(), t.def.name.clone()), (i, names, t.def.key.clone()))
            })
            .collect();
        Decoder { tables: map }
    }

    fn lookup(&self, schema: &str, table: &str) -> Option<&DecodedTable> {
        self.tables.get(&(schema.to_owned(), table.to_owned()))
    }

    /// A row with every column of the table: a column the event does not carry is `Unchanged`
    /// (an unchanged TOASTed value, or one outside the publication's column list).
    fn row(names: &[String], data: &RowData) -> Vec<Cell> {
        names
            .iter()
            .map(|n| match data.get(n) {
                None => Cell::Unchanged,
                Some(ColumnValue::Null) => Cell::Null,
                Some(ColumnValue::Text(b)) | Some(ColumnValue::Binary(b)) => {
                    Cell::Text(String::from_utf8_lossy(b).into_owned())
                }
            })
            .collect()
    }

    fn decode(&mut self, event: &EventType) -> Option<Change> {
        match event {
            EventType::Insert { schema, table, data, .. } => {
                let (i, names, _) = self.lookup(schema, table)?;
                Some(Change::Insert { table: *i, row: Self::row(names, data) })
            }
            EventType::Update { schema, table, old_data, new_data, .. } => {
                let (i, names, key) = self.lookup(schema, table)?;
                let row = Self::row(names, new_data);
                let old_key = old_data.as_ref().map(|old| Self::row(names, old)).filter(|old| {
                    // An old tuple is sent when the key changed or the identity is FULL; only a
                    // changed key needs the old values to find the row.
                    key.is_empty() || key.iter().any(|&k| old.get(k) != row.get(k))
                });
                Some(Change::Update { table: *i, old_key, row })
            }
            EventType::Delete { schema, table, old_data, .. } => {
                let (i, names, _) = self.lookup(schema, table)?;
                Some(Change::Delete { table: *i, old: Self::row(names, old_data) })
            }
            EventType::Truncate { tables, .. } => {
                let idx: Vec<usize> = tables
                    .iter()
                    .filter_map(|qualified| {
                        let (s, t) = qualified.split_once('.')?;
                        self.lookup(s, t).map(|e| e.0)
                    })
                    .collect();
                (!idx.is_empty()).then_some(Change::Truncate { tables: idx })
            }
            _ => None,
        }
    }
}
