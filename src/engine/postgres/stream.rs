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
use super::relay::Relay;
use super::source::VisibleXids;
use crate::api::Endpoint;
use crate::engine::Login;
use crate::engine::error::{EngineError, Result, Side};
use crate::engine::filter::{self, RowFilter};
use crate::engine::model::{Cell, Change, Transaction};
use crate::engine::net::Heard;

/// The prefix of the non-transactional logical decoding messages Ferry writes on the source
/// while a job runs. When the selected tables are quiet and other tables are busy, PostgreSQL
/// 15+ sends nothing for the job (empty transactions are skipped), so nothing would move the
/// slot and it would retain WAL without bound. A heartbeat arrives in WAL order between whole
/// transactions; the stream hands it out as an empty transaction ending there, which the
/// applier checkpoints and acknowledges like any other.
pub const HEARTBEAT_PREFIX: &str = "ferry_heartbeat";

/// How many decoded transactions may wait for the applier before the reader pauses.
pub(super) const QUEUE: usize = 256;

/// The replication connection string for an endpoint, or for the TLS relay in front of it.
/// Values are quoted for libpq's key=value syntax; the string is never logged.
fn replication_dsn(endpoint: &Endpoint, password: Option<&str>, relay: Option<&Relay>) -> String {
    let q = |v: &str| format!("'{}'", v.replace('\\', "\\\\").replace('\'', "\\'"));
    let database = endpoint.database.clone().unwrap_or_default();
    let (host, port, database) = match relay {
        Some(r) => (r.addr().ip().to_string(), r.addr().port(), r.database(&database)),
        None => (endpoint.host.clone(), endpoint.port, database),
    };
    let mut parts = vec![
        format!("host={}", q(&host)),
        format!("port={port}"),
        "replication=database".to_owned(),
        // Plain text only to the relay on this machine (or with TLS disabled by the spec);
        // the relay speaks TLS to the server.
        "sslmode=disable".to_owned(),
        "application_name=ferry".to_owned(),
        format!("connect_timeout={}", crate::engine::net::timeout().as_secs().max(1)),
        "keepalives=1".to_owned(),
        format!("keepalives_idle={}", crate::engine::net::keepalive_idle().as_secs()),
        format!("keepalives_interval={}", crate::engine::net::keepalive_interval().as_secs()),
        format!("keepalives_count={}", crate::engine::net::KEEPALIVE_PROBES),
        format!("tcp_user_timeout={}", crate::engine::net::timeout().as_millis()),
    ];
    if !database.is_empty() {
        parts.push(format!("dbname={}", q(&database)));
    }
    if let Some(u) = &endpoint.user {
        parts.push(format!("user={}", q(u)));
    }
    if let Some(p) = password {
        parts.push(format!("password={}", q(p)));
    }
    parts.join(" ")
}

/// Opens the replication connection, through a TLS relay when the endpoint asks for TLS. A
/// failure reaching the server through the relay is reported as the relay saw it.
async fn connect_stream(
    endpoint: &Endpoint,
    login: Login<'_>,
    config: ReplicationStreamConfig,
) -> Result<(LogicalReplicationStream, Option<Relay>)> {
    let relay = Relay::start(endpoint, login).await?;
    let dsn = replication_dsn(endpoint, login.password, relay.as_ref());
    match LogicalReplicationStream::new(&dsn, config).await {
        Ok(stream) => Ok((stream, relay)),
        Err(e) => {
            if let Some(failure) = relay.as_ref().and_then(Relay::failure) {
                return Err(failure);
            }
            let message = format!("replication connection: {e}");
            Err(if relay.is_some() && crate::engine::tls::refused_client_certificate(&message) {
                EngineError::Tls {
                    side: Side::Source,
                    host: endpoint.host.clone(),
                    port: endpoint.port,
                    failure: crate::engine::tls::TlsFailure::ClientCertificateRefused(message),
                }
            } else {
                EngineError::Connect { side: Side::Source, message }
            })
        }
    }
}

fn stream_error(e: impl std::fmt::Display) -> EngineError {
    let message = e.to_string();
    // The server invalidated the slot while the job streamed (max_slot_wal_keep_size).
    if message.contains("has been invalidated") || message.contains("can no longer get changes from replication slot") {
        return EngineError::Unrecoverable {
            code: "SLOT_LOST",
            message: format!(
                "the source invalidated the job's replication slot ({message}): restart with a new full transfer \
                 (delete the SyncJob and apply it again), and raise max_slot_wal_keep_size"
            ),
        };
    }
    EngineError::Stream(message)
}

fn config(slot: &str, publication: &str, export: bool) -> ReplicationStreamConfig {
    let mut cfg = ReplicationStreamConfig::builder(slot, publication)
        .with_protocol_version(1)
        .with_streaming_mode(StreamingMode::Off)
        // Heartbeat messages (see HEARTBEAT_PREFIX) let a quiet job move its slot.
        .with_messages(true)
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

/// Opens a replication connection (IDENTIFY_SYSTEM) and closes it: the precheck's proof that
/// the server takes replication connections from this user, over TLS when asked.
pub async fn check_connection(endpoint: &Endpoint, login: Login<'_>) -> Result<()> {
    let (stream, relay) = connect_stream(endpoint, login, config("ferry_precheck", "ferry_precheck", false)).await?;
    drop(stream);
    drop(relay);
    Ok(())
}

/// A replication connection that has created the job's slot and holds its exported snapshot.
/// The snapshot lives until [`SlotSnapshot::into_changes`] starts streaming or the value is
/// dropped: every chunk reader must have imported it by then.
pub struct SlotSnapshot {
    stream: LogicalReplicationStream,
    relay: Option<Relay>,
    snapshot: String,
}

impl SlotSnapshot {
    /// Creates the slot (which must not exist) with an exported snapshot.
    pub async fn create(endpoint: &Endpoint, login: Login<'_>, slot: &str, publication: &str) -> Result<SlotSnapshot> {
        let (mut stream, relay) = connect_stream(endpoint, login, config(slot, publication, true)).await?;
        stream
            .ensure_replication_slot()
            .await
            .map_err(|e| EngineError::Stream(format!("creating slot {slot}: {e}")))?;
        let snapshot = stream
            .exported_snapshot_name()
            .ok_or_else(|| EngineError::Stream(format!("slot {slot} was created without an exported snapshot")))?
            .to_owned();
        Ok(SlotSnapshot { stream, relay, snapshot })
    }

    /// The exported snapshot's name, for `SET TRANSACTION SNAPSHOT`.
    pub fn name(&self) -> &str {
        &self.snapshot
    }

    /// Starts streaming from `from` on the same connection (which ends the snapshot).
    pub async fn into_changes(self, decoder: Decoder, from: u64) -> Result<Changes> {
        Changes::start(self.stream, self.relay, decoder, from).await
    }
}

/// Changes from the slot, as whole source transactions in commit order.
pub struct Changes {
    rx: mpsc::Receiver<Result<Transaction>>,
    feedback: Arc<SharedLsnFeedback>,
    cancel: CancellationToken,
    task: Option<JoinHandle<()>>,
    /// When the reading task last heard from the server.
    heard: Heard,
    // Carries the replication connection while TLS is on; dropped after the reading task.
    _relay: Option<Relay>,
}

impl Changes {
    /// Opens the slot (which must exist: check first, since starting a missing slot creates it
    /// at the current position) and streams transactions that end after `from`.
    pub async fn open(
        endpoint: &Endpoint,
        login: Login<'_>,
        slot: &str,
        publication: &str,
        decoder: Decoder,
        from: u64,
    ) -> Result<Changes> {
        let (stream, relay) = connect_stream(endpoint, login, config(slot, publication, false)).await?;
        Changes::start(stream, relay, decoder, from).await
    }

    /// Changes a task of the caller's reads into `rx`; it learns through `feedback` what the
    /// target has committed and stops on `cancel`.
    pub(super) fn from_task(
        rx: mpsc::Receiver<Result<Transaction>>,
        feedback: Arc<SharedLsnFeedback>,
        cancel: CancellationToken,
        task: JoinHandle<()>,
        heard: Heard,
    ) -> Changes {
        Changes { rx, feedback, cancel, task: Some(task), heard, _relay: None }
    }

    async fn start(
        mut stream: LogicalReplicationStream,
        relay: Option<Relay>,
        decoder: Decoder,
        from: u64,
    ) -> Result<Changes> {
        stream.start(Some(from)).await.map_err(|e| EngineError::Stream(format!("starting replication: {e}")))?;
        let feedback = Arc::clone(&stream.shared_lsn_feedback);
        let cancel = CancellationToken::new();
        let (tx, rx) = mpsc::channel(QUEUE);
        let events = stream.into_stream(cancel.clone());
        let heard = Heard::default();
        let task = tokio::spawn(read_loop(events, decoder, tx, from, heard.clone()));
        Ok(Changes { rx, feedback, cancel, task: Some(task), heard, _relay: relay })
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

    fn silent_for(&self) -> Option<Duration> {
        Some(self.heard.silent_for())
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
    heard: Heard,
) {
    let mut assembler = Assembler::new(from);
    loop {
        let event = match events.next_event().await {
            Ok(e) => {
                heard.now();
                e
            }
            Err(pg_walstream::ReplicationError::Cancelled(_)) => break,
            Err(e) => {
                let _ = tx.send(Err(stream_error(e))).await;
                break;
            }
        };
        match assembler.push(&mut decoder, &event.event_type) {
            Ok(None) => {}
            Ok(Some(t)) => {
                if tx.send(Ok(t)).await.is_err() {
                    break;
                }
            }
            Err(e) => {
                let _ = tx.send(Err(e)).await;
                break;
            }
        }
    }
    let _ = events.shutdown().await;
}

/// Groups decoded changes into source transactions, skipping those that end at or before a
/// position.
pub(super) struct Assembler {
    current: Option<Transaction>,
    /// The transaction `current` belongs to.
    xid: u32,
    /// Transactions ending at or before this are not handed out (again).
    done: u64,
}

impl Assembler {
    /// An assembler that hands out transactions ending after `from`.
    pub(super) fn new(from: u64) -> Assembler {
        Assembler { current: None, xid: 0, done: from }
    }

    /// Takes one event; returns the transaction it completes, if any.
    pub(super) fn push(&mut self, decoder: &mut Decoder, event: &EventType) -> Result<Option<Transaction>> {
        Ok(match event {
            EventType::Begin { commit_timestamp, transaction_id, .. } => {
                self.xid = *transaction_id;
                self.current = Some(Transaction {
                    changes: Vec::new(),
                    end: 0,
                    commit_time_us: commit_timestamp.timestamp_micros(),
                });
                None
            }
            // A heartbeat outside any transaction: everything before it has been handed out.
            EventType::Message { flags, message_lsn, prefix, .. }
                if flags & 1 == 0 && &**prefix == HEARTBEAT_PREFIX && self.current.is_none() =>
            {
                let end = message_lsn.value();
                if end <= self.done {
                    return Ok(None);
                }
                self.done = end;
                let now = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap_or_default();
                Some(Transaction {
                    changes: Vec::new(),
                    end,
                    commit_time_us: i64::try_from(now.as_micros()).unwrap_or(i64::MAX),
                })
            }
            EventType::Commit { end_lsn, commit_timestamp, .. } => {
                let Some(mut t) = self.current.take() else { return Ok(None) };
                t.end = end_lsn.value();
                t.commit_time_us = commit_timestamp.timestamp_micros();
                // The server skips what the slot confirmed; this also skips what the target has
                // beyond that (a checkpoint committed but not yet acknowledged), and what a
                // polled slot sends again until it is acknowledged.
                if t.end <= self.done {
                    return Ok(None);
                }
                self.done = t.end;
                Some(t)
            }
            other => {
                if let Some(t) = self.current.as_mut() {
                    t.changes.extend(decoder.decode(other, self.xid)?);
                }
                None
            }
        })
    }
}

/// What the decoder knows of one job table.
struct DecodedTable {
    /// Index in the job's list.
    index: usize,
    /// Column names, in order.
    names: Vec<String>,
    /// Key positions.
    key: Vec<usize>,
    /// Which columns the job transfers.
    selected: Vec<bool>,
    /// The transactions the table's copy holds, when it is one chunk read in a fresh snapshot:
    /// their changes are dropped.
    copied: Option<VisibleXids>,
    /// The row filter, when the decoder applies it (the publication cannot, before 15), with
    /// the positions of the columns it reads.
    filter: Option<(RowFilter, Vec<usize>)>,
}

/// Whether a row passes the table's row filter.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Verdict {
    Keep,
    Drop,
    /// The filter reads a column the change did not carry (an unchanged TOASTed value, or a
    /// column outside the replica identity in an old row).
    Unknown,
}

/// Maps pgoutput events onto the job's tables.
pub struct Decoder {
    /// `(schema, table)` → the job's table.
    tables: HashMap<(String, String), DecodedTable>,
}

impl Decoder {
    /// A decoder for the job's tables that passes every change of them on.
    pub fn new(tables: &[PgTable]) -> Decoder {
        let map = tables
            .iter()
            .enumerate()
            .map(|(index, t)| {
                let d = &t.def;
                let table = DecodedTable {
                    index,
                    names: d.columns.iter().map(|c| c.name.clone()).collect(),
                    key: d.key.clone(),
                    selected: d.columns.iter().map(|c| c.selected).collect(),
                    copied: None,
                    filter: None,
                };
                ((d.schema.clone(), d.name.clone()), table)
            })
            .collect();
        Decoder { tables: map }
    }

    /// Drops the changes of transactions a table's copy holds already: `copied` maps a table
    /// (`schema.name`) to the snapshot its single chunk was read in.
    pub fn skipping_copied(mut self, copied: &HashMap<String, VisibleXids>) -> Decoder {
        for ((schema, name), t) in &mut self.tables {
            t.copied = copied.get(&format!("{schema}.{name}")).cloned();
        }
        self
    }

    /// Applies the row filters of `tables` (the job's) to the changes, as a source of 15 and
    /// later does in its publication, and leaves out unselected columns' values.
    pub fn filtering(mut self, tables: &[PgTable]) -> Result<Decoder> {
        for t in self.tables.values_mut() {
            let Some(table) = tables.get(t.index) else { continue };
            let Some(filter) = stream_filter(table)? else { continue };
            let positions = filter
                .columns()
                .iter()
                .map(|c| t.names.iter().position(|n| n == c))
                .collect::<Option<Vec<usize>>>()
                .ok_or_else(|| {
                    EngineError::Unsupported(format!(
                        "the row filter of {} names a column the table does not have",
                        table.def.display_name()
                    ))
                })?;
            t.filter = Some((filter, positions));
        }
        Ok(self)
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

    /// The changes `event` (of transaction `xid`) makes to the job's tables.
    fn decode(&mut self, event: &EventType, xid: u32) -> Result<Option<Change>> {
        let (schema, table) = match event {
            EventType::Insert { schema, table, .. }
            | EventType::Update { schema, table, .. }
            | EventType::Delete { schema, table, .. } => (schema, table),
            EventType::Truncate { tables, .. } => {
                let idx: Vec<usize> = tables
                    .iter()
                    .filter_map(|qualified| {
                        let (s, t) = qualified.split_once('.')?;
                        self.lookup(s, t).map(|e| e.index)
                    })
                    .collect();
                return Ok((!idx.is_empty()).then_some(Change::Truncate { tables: idx }));
            }
            _ => return Ok(None),
        };
        let Some(t) = self.lookup(schema, table) else { return Ok(None) };
        if t.copied.as_ref().is_some_and(|seen| seen.sees(xid)) {
            return Ok(None);
        }
        let change = match event {
            EventType::Insert { data, .. } => {
                let row = Self::row(&t.names, data);
                match t.verdict(&row)? {
                    Verdict::Keep | Verdict::Unknown => Some(Change::Insert { table: t.index, row }),
                    Verdict::Drop => None,
                }
            }
            EventType::Update { old_data, new_data, .. } => {
                let row = Self::row(&t.names, new_data);
                // Sent when the key changed or the identity is FULL.
                let old = old_data.as_ref().map(|old| Self::row(&t.names, old));
                t.update(old, row)?
            }
            EventType::Delete { old_data, .. } => {
                let old = Self::row(&t.names, old_data);
                match t.verdict(&old)? {
                    // Without the filter's columns (no REPLICA IDENTITY FULL), delete it if present.
                    Verdict::Keep | Verdict::Unknown => Some(Change::Delete { table: t.index, old }),
                    Verdict::Drop => None,
                }
            }
            _ => None,
        };
        Ok(change.map(|c| t.without_unselected(c)))
    }
}

impl DecodedTable {
    fn verdict(&self, row: &[Cell]) -> Result<Verdict> {
        let Some((filter, positions)) = &self.filter else { return Ok(Verdict::Keep) };
        if positions.iter().any(|&p| row.get(p).is_none_or(|c| *c == Cell::Unchanged)) {
            return Ok(Verdict::Unknown);
        }
        let kept = filter
            .eval_postgres(|name| {
                let i = self.names.iter().position(|n| n == name)?;
                Some(match row.get(i)? {
                    Cell::Text(s) => filter::Value::Text(s),
                    _ => filter::Value::Null,
                })
            })
            .map_err(|e| EngineError::Stream(format!("evaluating the row filter: {e}")))?;
        Ok(if kept { Verdict::Keep } else { Verdict::Drop })
    }

    /// An update as the filter sees it: a row that enters the filter is inserted, one that
    /// leaves it deleted, as PostgreSQL 15 publishes them.
    fn update(&self, old: Option<Vec<Cell>>, row: Vec<Cell>) -> Result<Option<Change>> {
        let key_changed = |old: &[Cell]| self.key.iter().any(|&k| old.get(k) != row.get(k));
        let old_key = |old: Option<Vec<Cell>>| {
            // Only a changed key (or no key) needs the old values to find the row.
            old.filter(|old| self.key.is_empty() || key_changed(old))
        };
        if self.filter.is_none() {
            return Ok(Some(Change::Update { table: self.index, old_key: old_key(old), row }));
        }
        // Unchanged TOASTed values are the old row's, when it was sent whole.
        let complete: Vec<Cell> = match &old {
            Some(old) => row
                .iter()
                .zip(old)
                .map(|(new, old)| if *new == Cell::Unchanged { old.clone() } else { new.clone() })
                .collect(),
            None => row.clone(),
        };
        let now = self.verdict(&complete)?;
        let before = match &old {
            Some(old) => self.verdict(old)?,
            // The key did not change; the filter is known before only if it reads nothing else.
            None => {
                let key_only: Vec<Cell> = (0..row.len())
                    .map(|i| if self.key.contains(&i) { row[i].clone() } else { Cell::Unchanged })
                    .collect();
                self.verdict(&key_only)?
            }
        };
        let table = self.index;
        Ok(match (before, now) {
            (Verdict::Drop, Verdict::Drop) => None,
            (Verdict::Drop, Verdict::Keep) => Some(Change::Insert { table, row: complete }),
            (Verdict::Keep | Verdict::Unknown, Verdict::Drop) => {
                let old = old.unwrap_or(complete);
                Some(Change::Delete { table, old })
            }
            // Not known to have left the filter: the row as it is now.
            (Verdict::Drop, Verdict::Unknown) => None,
            (_, Verdict::Keep | Verdict::Unknown) => Some(Change::Update { table, old_key: old_key(old), row }),
        })
    }

    /// The change with unselected columns' values left out (they never reach the target).
    fn without_unselected(&self, mut change: Change) -> Change {
        if self.selected.iter().all(|s| *s) {
            return change;
        }
        let blank = |row: &mut Vec<Cell>| {
            for (cell, selected) in row.iter_mut().zip(&self.selected) {
                if !selected {
                    *cell = Cell::Unchanged;
                }
            }
        };
        match &mut change {
            Change::Insert { row, .. } => blank(row),
            Change::Update { old_key, row, .. } => {
                blank(row);
                if let Some(old) = old_key {
                    blank(old);
                }
            }
            Change::Delete { old, .. } => blank(old),
            Change::Truncate { .. } | Change::Ddl { .. } => {}
        }
        change
    }
}

/// The filter of `table` compiled for change rows, if it has one.
pub fn stream_filter(table: &PgTable) -> Result<Option<RowFilter>> {
    let Some(sql) = &table.def.filter else { return Ok(None) };
    let columns: Vec<(&str, &str)> = table.def.columns.iter().map(|c| (c.name.as_str(), c.type_sql.as_str())).collect();
    RowFilter::parse_postgres(sql, &columns).map(Some).map_err(|e| {
        EngineError::Unsupported(format!(
            "the row filter of {} cannot be evaluated on change rows: {e}",
            table.def.display_name()
        ))
    })
}
