//! The PostgreSQL change stream: a logical replication slot with `pgoutput`, read through
//! `pg_walstream` and turned into [`Transaction`]s of [`Change`]s.
//!
//! `pg_walstream` stays behind this module: the rest of the engine sees transactions, a start
//! position and an acknowledgement call, nothing of the replication protocol.

use std::collections::HashMap;
use std::panic::AssertUnwindSafe;
use std::sync::Arc;
use std::time::Duration;

use futures::FutureExt;
use pg_walstream::{
    CancellationToken, ColumnValue, EventType, LogicalReplicationStream, ReplicationSlotOptions,
    ReplicationStreamConfig, RetryConfig, RowData, SharedLsnFeedback, StreamingMode,
};
use tokio::task::JoinHandle;

use super::catalog::{PgColumn, PgTable};
use super::relay::Relay;
use super::source::VisibleXids;
use crate::api::Endpoint;
use crate::engine::Login;
use crate::engine::error::{EngineError, Result, Side};
use crate::engine::filter::{self, RowFilter};
use crate::engine::model::{Cell, Change, ColumnChange, ColumnDef, Transaction};
use crate::engine::net::Heard;
use crate::engine::queue::{PIECE, Receiver, Sender, queue};

/// The prefix of the non-transactional logical decoding messages Ferry writes on the source
/// while a job runs. When the selected tables are quiet and other tables are busy, PostgreSQL
/// 15+ sends nothing for the job (empty transactions are skipped), so nothing would move the
/// slot and it would retain WAL without bound. A heartbeat arrives in WAL order between whole
/// transactions; the stream hands it out as an empty transaction ending there, which the
/// applier checkpoints and acknowledges like any other.
pub const HEARTBEAT_PREFIX: &str = "ferry_heartbeat";

/// How many decoded transactions may wait for the applier before the reader pauses (besides
/// the queue's budget of row changes).
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

/// The failure of a job on a message whose decoding panicked.
pub(super) fn undecodable() -> EngineError {
    EngineError::Stream("undecodable logical replication message: the job stops rather than skip it".into())
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
    rx: Receiver,
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
        rx: Receiver,
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
        let (tx, rx) = queue(QUEUE);
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

async fn read_loop(mut events: pg_walstream::EventStream, mut decoder: Decoder, tx: Sender, from: u64, heard: Heard) {
    let mut assembler = Assembler::new(from);
    loop {
        // A panic while decoding (in pg_walstream or here) would end this task silently and
        // the applier would take the closed queue for the end of the stream; it stops the job
        // with an error instead.
        let event = match AssertUnwindSafe(events.next_event()).catch_unwind().await {
            Ok(Ok(e)) => {
                heard.now();
                e
            }
            Ok(Err(pg_walstream::ReplicationError::Cancelled(_))) => break,
            Ok(Err(e)) => {
                let _ = tx.send(Err(stream_error(e))).await;
                break;
            }
            Err(_) => {
                let _ = tx.send(Err(undecodable())).await;
                break;
            }
        };
        let pushed = AssertUnwindSafe(assembler.push(&mut decoder, &event.event_type)).catch_unwind().await;
        match pushed.unwrap_or_else(|_| Err(undecodable())) {
            Ok(None) => {}
            Ok(Some(t)) => {
                if !send_keeping_alive(&tx, t, &mut events).await {
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

/// How often a reader waiting for room in the queue tells the walsender it is alive.
const STATUS_EVERY: Duration = Duration::from_secs(1);

/// Queues `t` for the applier; while the queue is full, sends the walsender a standby status
/// update every [`STATUS_EVERY`]: a reader that stopped reading would otherwise answer none of
/// its keepalives, and the walsender drops a connection silent for `wal_sender_timeout`. The
/// update reports as flushed and applied only what the applier acknowledged (committed on the
/// target). False when the applier has gone.
async fn send_keeping_alive(tx: &Sender, t: Transaction, events: &mut pg_walstream::EventStream) -> bool {
    let send = tx.send(Ok(t));
    tokio::pin!(send);
    let mut status = tokio::time::interval_at(tokio::time::Instant::now() + STATUS_EVERY, STATUS_EVERY);
    status.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tokio::select! {
            sent = &mut send => return sent,
            _ = status.tick() => {
                // `next_event` returned before this wait, so the stream is in hand.
                if let Err(e) = events.inner_mut().send_feedback().await {
                    tracing::warn!(error = %e, "could not send a standby status update while the applier catches up");
                }
            }
        }
    }
}

/// Groups decoded changes into source transactions, skipping those that end at or before a
/// position, and hands out a large one in pieces of [`PIECE`] changes.
pub(crate) struct Assembler {
    current: Option<Transaction>,
    /// The transaction `current` belongs to.
    xid: u32,
    /// Transactions ending at or before this are not handed out (again).
    done: u64,
    /// Set while the events of a transaction that is not handed out go by.
    skipping: bool,
}

impl Assembler {
    /// An assembler that hands out transactions ending after `from`.
    pub(crate) fn new(from: u64) -> Assembler {
        Assembler { current: None, xid: 0, done: from, skipping: false }
    }

    /// Takes one event; returns the transaction (or piece of one) it completes, if any.
    pub(crate) async fn push(&mut self, decoder: &mut Decoder, event: &EventType) -> Result<Option<Transaction>> {
        Ok(match event {
            EventType::Begin { commit_timestamp, transaction_id, final_lsn } => {
                self.xid = *transaction_id;
                // The server skips what the slot confirmed; this also skips what the target has
                // beyond that (a checkpoint committed but not yet acknowledged), and what a
                // polled slot sends again until it is acknowledged. A transaction whose commit
                // starts before `done` ends at or before it (records do not overlap). Its events,
                // Relation messages included, are not looked at: the job is past them.
                self.skipping = final_lsn.value() < self.done;
                self.current = (!self.skipping).then(|| Transaction {
                    changes: Vec::new(),
                    // Until the commit: where it starts, for pieces handed out before it.
                    end: final_lsn.value(),
                    commit_time_us: commit_timestamp.timestamp_micros(),
                    partial: false,
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
                    partial: false,
                })
            }
            EventType::Commit { end_lsn, commit_timestamp, .. } => {
                let skipped = std::mem::replace(&mut self.skipping, false);
                let Some(mut t) = self.current.take() else { return Ok(None) };
                t.end = end_lsn.value();
                t.commit_time_us = commit_timestamp.timestamp_micros();
                if skipped || t.end <= self.done {
                    return Ok(None);
                }
                self.done = t.end;
                Some(t)
            }
            other => {
                if self.skipping {
                    return Ok(None);
                }
                let Some(t) = self.current.as_mut() else { return Ok(None) };
                t.changes.extend(decoder.decode(other, self.xid).await?);
                if t.changes.len() < PIECE {
                    return Ok(None);
                }
                let piece = Transaction {
                    changes: std::mem::take(&mut t.changes),
                    end: t.end,
                    commit_time_us: t.commit_time_us,
                    partial: true,
                };
                Some(piece)
            }
        })
    }
}

/// What the decoder knows of one job table.
struct DecodedTable {
    /// Index in the job's list.
    index: usize,
    /// The table as the job knows it at this point of the stream: its columns (all of them, in
    /// source order), their catalog identities, the key, the column selection.
    table: PgTable,
    /// Column names, in order (the table's, kept at hand for decoding rows).
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

impl DecodedTable {
    fn new(index: usize, table: &PgTable) -> DecodedTable {
        let d = &table.def;
        DecodedTable {
            index,
            names: d.columns.iter().map(|c| c.name.clone()).collect(),
            key: d.key.clone(),
            selected: d.columns.iter().map(|c| c.selected).collect(),
            table: table.clone(),
            copied: None,
            filter: None,
        }
    }

    /// Takes on `table` as the table's new layout.
    fn reshaped(&mut self, table: PgTable) -> Result<()> {
        let d = &table.def;
        self.names = d.columns.iter().map(|c| c.name.clone()).collect();
        self.key = d.key.clone();
        self.selected = d.columns.iter().map(|c| c.selected).collect();
        if let Some((filter, positions)) = &mut self.filter {
            *positions = filter
                .columns()
                .iter()
                .map(|c| self.names.iter().position(|n| n == c))
                .collect::<Option<Vec<usize>>>()
                .ok_or_else(|| {
                    schema_changed(format!(
                        "the row filter of {} names a column that was renamed or dropped on the source. Fix: write \
                         the filter with the table's new column names (spec.objects … filter) and start over with \
                         a new full transfer",
                        d.display_name()
                    ))
                })?;
        }
        self.table = table;
        Ok(())
    }
}

/// The error that stops a job on a change of a source table it cannot follow.
fn schema_changed(message: String) -> EngineError {
    EngineError::Unrecoverable { code: crate::engine::drift::SOURCE_SCHEMA_CHANGED, message }
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

/// A column of a source table as its catalog shows it now.
struct LiveColumn {
    attnum: i16,
    name: String,
    not_null: bool,
    has_missing: bool,
    /// The value rows that predate the column hold, quoted as a literal.
    missing: Option<String>,
    default: Option<String>,
}

/// Maps pgoutput events onto the job's tables.
pub struct Decoder {
    /// `(schema, table)` → the job's table.
    tables: HashMap<(String, String), DecodedTable>,
    /// The job's tables by the name the source gives them now, where a table was renamed while
    /// the job streams (its changes go on to its target table).
    renamed: HashMap<(String, String), (String, String)>,
    /// The job's tables by OID, as their Relation messages name them.
    oids: HashMap<u32, (String, String)>,
    /// A source session for reading the catalog when a table's columns change.
    catalog: Option<tokio_postgres::Client>,
}

impl Decoder {
    /// A decoder for the job's tables that passes every change of them on.
    pub fn new(tables: &[PgTable]) -> Decoder {
        let map = tables
            .iter()
            .enumerate()
            .map(|(index, t)| ((t.def.schema.clone(), t.def.name.clone()), DecodedTable::new(index, t)))
            .collect();
        let oids = tables.iter().map(|t| (t.oid, (t.def.schema.clone(), t.def.name.clone()))).collect();
        Decoder { tables: map, renamed: HashMap::new(), oids, catalog: None }
    }

    /// Reads the source catalog through `client` when a table's columns change (to tell a
    /// renamed column from a dropped one and a new one, and to learn a new column's type and
    /// default). Without it, a change of columns stops the job.
    pub fn with_catalog(mut self, client: tokio_postgres::Client) -> Decoder {
        self.catalog = Some(client);
        self
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

    /// The key in `tables` of the table the source now calls `schema.table`.
    fn key(&self, schema: &str, table: &str) -> (String, String) {
        let named = (schema.to_owned(), table.to_owned());
        self.renamed.get(&named).cloned().unwrap_or(named)
    }

    fn lookup(&self, schema: &str, table: &str) -> Option<&DecodedTable> {
        self.tables.get(&self.key(schema, table))
    }

    /// The job's table a TRUNCATE names as `schema.table` (either part may itself hold a dot).
    fn truncated(&self, qualified: &str) -> Option<usize> {
        let named = |s: &str, t: &str| qualified.strip_prefix(s).and_then(|rest| rest.strip_prefix('.')) == Some(t);
        if let Some((_, key)) = self.renamed.iter().find(|((s, t), _)| named(s, t)) {
            return self.tables.get(key).map(|e| e.index);
        }
        self.tables.iter().find(|((s, t), _)| named(s, t)).map(|(_, e)| e.index)
    }

    /// A row with every column of the table: a column the event does not carry is `Unchanged`
    /// (an unchanged TOASTed value, or one outside the publication's column list).
    fn row(names: &[String], data: &RowData) -> Vec<Cell> {
        // The event carries its columns in the table's order: each name is first looked for
        // right after the one found before it, and searched for only when it is not there.
        let mut columns = data.iter().peekable();
        names
            .iter()
            .map(|n| match columns.peek() {
                Some((k, _)) if k.as_ref() == n.as_str() => columns.next().map(|(_, v)| v),
                _ => data.get(n),
            })
            .map(|value| match value {
                None => Cell::Unchanged,
                Some(ColumnValue::Null) => Cell::Null,
                Some(ColumnValue::Text(b)) | Some(ColumnValue::Binary(b)) => {
                    Cell::Text(String::from_utf8_lossy(b).into_owned())
                }
            })
            .collect()
    }

    /// The changes `event` (of transaction `xid`) makes to the job's tables.
    async fn decode(&mut self, event: &EventType, xid: u32) -> Result<Option<Change>> {
        let (schema, table) = match event {
            EventType::Insert { schema, table, .. }
            | EventType::Update { schema, table, .. }
            | EventType::Delete { schema, table, .. } => (schema, table),
            EventType::Truncate { tables, .. } => {
                let idx: Vec<usize> = tables.iter().filter_map(|qualified| self.truncated(qualified)).collect();
                return Ok((!idx.is_empty()).then_some(Change::Truncate { tables: idx }));
            }
            EventType::Relation { relation_id, namespace, relation_name, columns, .. } => {
                return self.relation(*relation_id, namespace, relation_name, columns, xid).await;
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

    /// A Relation message: the table's columns as the rows that follow have them. When they
    /// differ from what the job knows, the change of columns, worked out with the source
    /// catalog: a column keeps its attribute number through a rename and a dropped column's is
    /// never reused, so the number tells a renamed column from a dropped one and a new one.
    async fn relation(
        &mut self,
        relation_id: u32,
        schema: &str,
        table: &str,
        columns: &[pg_walstream::RelationColumn],
        xid: u32,
    ) -> Result<Option<Change>> {
        let key = match self.oids.get(&relation_id) {
            Some(key) => key.clone(),
            None => {
                let key = self.key(schema, table);
                let Some(t) = self.tables.get(&key) else { return Ok(None) };
                if t.table.oid != 0 {
                    return Err(schema_changed(format!(
                        "source table {} was dropped and created again while the job streamed: the rows it held \
                         are gone from the source but not from the target. Fix: start over with a new full transfer",
                        t.table.def.display_name()
                    )));
                }
                self.oids.insert(relation_id, key.clone());
                key
            }
        };
        let now = (schema.to_owned(), table.to_owned());
        if now != key && self.renamed.get(&now) != Some(&key) {
            // Renamed on the source: its changes keep coming under the new name.
            tracing::warn!(
                table = %format!("{}.{}", key.0, key.1),
                now = %format!("{schema}.{table}"),
                "a source table was renamed; its changes go on to the same target table"
            );
            self.renamed.retain(|_, v| *v != key);
            self.renamed.insert(now, key.clone());
        }
        let Some(t) = self.tables.get(&key) else { return Ok(None) };
        let d = &t.table.def;
        // With a publication column list the message carries only the selected columns.
        let listed = t.table.publishes_column_list();
        let known: Vec<usize> = (0..d.columns.len()).filter(|&i| !listed || d.columns[i].selected).collect();
        let same = known.len() == columns.len()
            && known.iter().zip(columns).all(|(&i, c)| {
                let pg = t.table.pg_columns.get(i).copied().unwrap_or_default();
                d.columns[i].name == *c.name && pg.type_oid == c.type_id && pg.typmod == c.type_modifier
            });
        if same {
            return Ok(None);
        }
        let name = d.display_name();
        let Some(catalog) = &self.catalog else {
            return Err(schema_changed(format!(
                "the columns of source table {name} changed, and the stream has no source session to read what \
                 changed. Fix: start over with a new full transfer"
            )));
        };
        let what = || format!("reading the changed columns of {name}");
        wait_until_visible(catalog, xid, &name).await?;
        let live = read_live_columns(catalog, relation_id)
            .await
            .map_err(|e| EngineError::query(Side::Source, what(), super::connect::describe_pg_error(&e)))?;
        let oids: Vec<u32> = columns.iter().map(|c| c.type_id).collect();
        let mods: Vec<i32> = columns.iter().map(|c| c.type_modifier).collect();
        let types: Vec<String> = catalog
            .query(
                "SELECT format_type(x.o, x.m) FROM unnest($1::oid[], $2::int4[]) WITH ORDINALITY AS x(o, m, i) \
                 ORDER BY x.i",
                &[&oids, &mods],
            )
            .await
            .map_err(|e| EngineError::query(Side::Source, what(), super::connect::describe_pg_error(&e)))?
            .iter()
            .map(|r| r.get::<_, Option<String>>(0).unwrap_or_default())
            .collect();
        let (reshaped, changes) = reshape(&t.table, columns, &types, &live)?;
        let index = t.index;
        let columns = reshaped.def.columns.clone();
        let table_key = reshaped.def.key.clone();
        let layout = reshaped.layout();
        if let Some(t) = self.tables.get_mut(&key) {
            t.reshaped(reshaped)?;
        }
        Ok(Some(Change::Reshape { table: index, columns, key: table_key, changes, layout }))
    }
}

/// How long the stream waits for a transaction that changed a table's columns to become
/// visible to the catalog session: below the walsender's default `wal_sender_timeout` (60 s), as
/// the stream answers no keepalive meanwhile.
const VISIBLE_WITHIN: Duration = Duration::from_secs(30);

/// Waits until source transaction `xid` (which changed the columns of table `name`) is visible
/// to `catalog`'s new snapshots. The walsender sends a transaction once its commit record is
/// flushed, which is before the transaction leaves the server's running set: the gap is short,
/// unless a synchronous standby holds the commit. Past [`VISIBLE_WITHIN`], a change-stream error:
/// the stream starts again from its checkpoint and reads the transaction again.
async fn wait_until_visible(catalog: &tokio_postgres::Client, xid: u32, name: &str) -> Result<()> {
    if xid == 0 {
        return Ok(());
    }
    let started = std::time::Instant::now();
    let mut pause = Duration::from_millis(10);
    loop {
        let snapshot: String = catalog
            .query_one("SELECT txid_current_snapshot()::text", &[])
            .await
            .map_err(|e| {
                EngineError::query(
                    Side::Source,
                    format!("reading which transactions the source shows, for the changed columns of {name}"),
                    super::connect::describe_pg_error(&e),
                )
            })?
            .get(0);
        if VisibleXids::parse(&snapshot).is_none_or(|s| s.sees(xid)) {
            return Ok(());
        }
        if started.elapsed() >= VISIBLE_WITHIN {
            return Err(EngineError::Stream(format!(
                "source transaction {xid} changed the columns of {name}, and {} s after the stream received it its \
                 commit is still not visible to other sessions (a synchronous standby holding commits?); the stream \
                 reads it again from the checkpoint",
                VISIBLE_WITHIN.as_secs()
            )));
        }
        tokio::time::sleep(pause).await;
        pause = (pause * 2).min(Duration::from_millis(500));
    }
}

/// The columns of the source table `relation_id` as the catalog shows them now.
async fn read_live_columns(
    catalog: &tokio_postgres::Client,
    relation_id: u32,
) -> std::result::Result<Vec<LiveColumn>, tokio_postgres::Error> {
    let rows = catalog
        .query(
            "SELECT a.attnum, a.attname::text, a.attnotnull, a.atthasmissing, \
                    quote_literal((a.attmissingval::text::text[])[1]), pg_get_expr(d.adbin, d.adrelid) \
             FROM pg_attribute a LEFT JOIN pg_attrdef d ON d.adrelid = a.attrelid AND d.adnum = a.attnum \
             WHERE a.attrelid = $1 AND a.attnum > 0 AND NOT a.attisdropped ORDER BY a.attnum",
            &[&relation_id],
        )
        .await?;
    Ok(rows
        .iter()
        .map(|r| LiveColumn {
            attnum: r.get(0),
            name: r.get(1),
            not_null: r.get(2),
            has_missing: r.get(3),
            missing: r.get(4),
            default: r.get(5),
        })
        .collect())
}

/// Works out how `old` became the columns a Relation message lists (`columns`, with their
/// types spelled out in `types`), with the source catalog as it is now (`live`): the table's
/// new layout and what changed. Fails when the catalog has moved on so far that it cannot tell.
fn reshape(
    old: &PgTable,
    columns: &[pg_walstream::RelationColumn],
    types: &[String],
    live: &[LiveColumn],
) -> Result<(PgTable, Vec<ColumnChange>)> {
    let d = &old.def;
    let name = d.display_name();
    let listed = old.publishes_column_list();
    let mut used = vec![false; d.columns.len()];
    // Each listed column's position in the old layout, if it was there.
    let mut matched: Vec<Option<usize>> = vec![None; columns.len()];
    for (j, c) in columns.iter().enumerate() {
        if let Some(l) = live.iter().find(|l| *l.name == *c.name) {
            matched[j] = old.pg_columns.iter().position(|p| p.attnum == l.attnum);
        } else if let Some(i) = d.columns.iter().position(|o| *o.name == *c.name) {
            // Renamed or dropped again since: the same name, the same column.
            matched[j] = Some(i);
        } else {
            return Err(schema_changed(format!(
                "the columns of source table {name} changed (column {} appeared), and the source catalog has changed \
                 again since, so Ferry cannot tell whether it is a new column or a renamed one. Fix: start over with \
                 a new full transfer",
                c.name
            )));
        }
        if let Some(i) = matched[j] {
            if used[i] {
                matched[j] = None;
            } else {
                used[i] = true;
            }
        }
    }
    let mut new_columns = Vec::with_capacity(columns.len());
    let mut new_pg = Vec::with_capacity(columns.len());
    let mut changes = Vec::new();
    for (j, c) in columns.iter().enumerate() {
        let ty = types.get(j).cloned().unwrap_or_default();
        let l = live.iter().find(|l| *l.name == *c.name);
        match matched[j] {
            Some(i) => {
                let was = &d.columns[i];
                let mut col = was.clone();
                if *was.name != *c.name {
                    // A renamed column keeps a mapped target name; otherwise the target's follows.
                    if was.target_name == was.name {
                        col.target_name = c.name.to_string();
                    }
                    col.name = c.name.to_string();
                    changes.push(ColumnChange::Renamed { column: j, from: was.name.clone() });
                }
                let pg = old.pg_columns.get(i).copied().unwrap_or_default();
                if pg.type_oid != c.type_id || pg.typmod != c.type_modifier {
                    col.type_sql = ty;
                    changes.push(ColumnChange::Retyped { column: j, was: was.type_sql.clone() });
                }
                new_columns.push(col);
                new_pg.push(PgColumn { attnum: pg.attnum, type_oid: c.type_id, typmod: c.type_modifier });
            }
            None => {
                let (selected, target_name) = super::catalog::column_choice(old.column_selection.as_ref(), &c.name);
                let not_null = l.is_some_and(|l| l.not_null);
                new_columns.push(ColumnDef {
                    name: c.name.to_string(),
                    target_name,
                    type_sql: ty,
                    nullable: !not_null,
                    selected,
                });
                new_pg.push(PgColumn {
                    attnum: l.map_or(0, |l| l.attnum),
                    type_oid: c.type_id,
                    typmod: c.type_modifier,
                });
                let default = l.and_then(|l| l.default.clone());
                let has_missing = l.is_some_and(|l| l.has_missing);
                let unreplayable = (default.is_some() && !has_missing).then(|| {
                    format!(
                        "its default ({}) gave the rows the table already held values the change stream does not \
                         carry (a default computed row by row, such as a serial or random(), or one set after the \
                         column was added)",
                        default.as_deref().unwrap_or_default()
                    )
                });
                changes.push(ColumnChange::Added {
                    column: j,
                    existing: l.filter(|l| l.has_missing).and_then(|l| l.missing.clone()),
                    default,
                    not_null,
                    unreplayable,
                });
            }
        }
    }
    for (i, was) in d.columns.iter().enumerate() {
        if used[i] {
            continue;
        }
        if listed && !was.selected {
            // Outside the publication's column list: never in the message.
            new_columns.push(was.clone());
            new_pg.push(old.pg_columns.get(i).copied().unwrap_or_default());
            continue;
        }
        changes.push(ColumnChange::Dropped {
            name: was.name.clone(),
            target_name: was.target_name.clone(),
            selected: was.selected,
        });
    }
    // The key: its columns by their new positions; it must not lose a column.
    let mut key = Vec::with_capacity(d.key.len());
    for &k in &d.key {
        let pos = matched.iter().position(|m| *m == Some(k));
        match pos {
            Some(p) => key.push(p),
            None => {
                return Err(schema_changed(format!(
                    "primary key column {} of source table {name} was dropped: the job finds rows on the target by \
                     their key. Fix: start over with a new full transfer",
                    d.columns[k].name
                )));
            }
        }
    }
    if !d.key.is_empty() && !old.replica_identity_full {
        let now: Vec<usize> = (0..columns.len()).filter(|&j| columns[j].is_key).collect();
        let mut want = key.clone();
        want.sort_unstable();
        if now != want {
            return Err(schema_changed(format!(
                "the primary key (replica identity) of source table {name} changed: the job finds rows on the target \
                 by the key it started with. Fix: start over with a new full transfer"
            )));
        }
    }
    let mut table = old.clone();
    table.def.columns = new_columns;
    table.def.key = key;
    table.pg_columns = new_pg;
    table.binary = table.builtin_types();
    Ok((table, changes))
}

/// [`reshape`] with a source catalog that lists exactly `columns` (a column named as one the
/// table had keeps its attribute number, the others get new ones; no defaults), for the fuzz
/// targets and property tests, which have no source session.
#[cfg(any(test, feature = "fuzzing"))]
pub(crate) fn reshape_listed(
    old: &PgTable,
    columns: &[pg_walstream::RelationColumn],
) -> Result<(PgTable, Vec<ColumnChange>)> {
    let mut next = old.pg_columns.iter().map(|p| p.attnum).max().unwrap_or(0);
    let live: Vec<LiveColumn> = columns
        .iter()
        .map(|c| {
            let known = old.def.columns.iter().position(|o| *o.name == *c.name);
            let attnum = match known.and_then(|i| old.pg_columns.get(i)) {
                Some(p) => p.attnum,
                None => {
                    next = next.saturating_add(1);
                    next
                }
            };
            LiveColumn {
                attnum,
                name: c.name.to_string(),
                not_null: c.is_key,
                has_missing: false,
                missing: None,
                default: None,
            }
        })
        .collect();
    let types: Vec<String> = columns.iter().map(|c| format!("t{}", c.type_id)).collect();
    reshape(old, columns, &types, &live)
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
            Change::Truncate { .. } | Change::Ddl { .. } | Change::Reshape { .. } => {}
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
