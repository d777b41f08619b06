//! The binary-log change stream of a MySQL/MariaDB source: a replica connection (MariaDB GTID
//! resume through `@slave_connect_state`, or file and position), row events decoded into
//! [`Change`]s with typed values, transactions cut at their commit, and DDL on selected tables
//! turned into statements for the target per `policy.ddl`.
//!
//! Positions are one number: the binary log file's sequence number in the high 32 bits and the
//! offset in the low 32 (files never reach 4 GiB), so they order as the log does. They are
//! valid on the server that wrote them; a checkpoint also maps to a GTID position through
//! `BINLOG_GTID_POS` on MariaDB.

use std::panic::AssertUnwindSafe;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use futures::{FutureExt, StreamExt};
use mysql_async::binlog::events::{EventData, RowsEventData, TableMapEvent};
use mysql_async::consts::ColumnType;
use mysql_async::prelude::Queryable;
use mysql_async::{BinlogStreamRequest, Conn};

use super::catalog::{self, MyTable};
use super::connect;
use super::ddl::{self, StatementKind};
use super::gtid::{self, GtidPos};
use super::values::filter_text;
use crate::api::{DdlKind, DdlPolicy, DmlType, Endpoint, ObjectSelection};
use crate::engine::Login;
use crate::engine::apply::{BATCH_TIME_UNIT, ChangeSource};
use crate::engine::error::{EngineError, Result, Side};
use crate::engine::filter::{self, RowFilter};
use crate::engine::model::{Cell, Change, Transaction};
use crate::engine::net::Heard;
use crate::engine::queue::{BUDGET, PIECE, Receiver, queue};

/// Names of a server's binary log files: `base.000042`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct BinlogNames {
    /// The base name (`mariadb-bin`).
    pub base: String,
    /// Digits of the sequence number.
    pub width: usize,
}

impl BinlogNames {
    /// The naming of `file` (`mariadb-bin.000003`).
    pub fn of(file: &str) -> Result<BinlogNames> {
        let (base, seq) = file
            .rsplit_once('.')
            .filter(|(_, s)| !s.is_empty() && s.bytes().all(|b| b.is_ascii_digit()))
            .ok_or_else(|| EngineError::Stream(format!("binary log file name {file:?} has no sequence number")))?;
        Ok(BinlogNames { base: base.to_owned(), width: seq.len() })
    }

    /// `file` and `offset` as one position.
    pub fn encode(&self, file: &str, offset: u64) -> Result<u64> {
        let seq: u64 = file
            .rsplit_once('.')
            .and_then(|(_, s)| s.parse().ok())
            .ok_or_else(|| EngineError::Stream(format!("binary log file name {file:?} has no sequence number")))?;
        Ok((seq << 32) | (offset & 0xffff_ffff))
    }

    /// The file and offset of a position.
    pub fn decode(&self, position: u64) -> (String, u64) {
        (format!("{}.{:0width$}", self.base, position >> 32, width = self.width), position & 0xffff_ffff)
    }

    /// `file:offset`, as status shows it.
    pub fn display(&self, position: u64) -> String {
        let (file, offset) = self.decode(position);
        format!("{file}:{offset}")
    }
}

/// Where a stream starts.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum StartAt {
    /// After the transactions of a MariaDB GTID position (`0-1-42`).
    Gtid(String),
    /// At a file and offset.
    File(String, u64),
}

/// What a stream needs beyond the source endpoint.
#[derive(Clone, Debug)]
pub struct StreamOptions {
    /// Where it starts.
    pub start: StartAt,
    /// End at the current end of the log instead of waiting for more.
    pub until_end_of_log: bool,
    /// The replica id the stream presents.
    pub server_id: u32,
    /// Selected tables, in the job's order.
    pub tables: Vec<MyTable>,
    /// The selection, to take on tables a CREATE TABLE adds.
    pub selection: ObjectSelection,
    /// DDL policy.
    pub ddl: DdlPolicy,
    /// Row change kinds replayed.
    pub dml: Vec<DmlType>,
    /// Binary log naming.
    pub names: BinlogNames,
}

/// A replica id for a job in a range real replicas are unlikely to use, stable per job so a
/// second worker of the same job displaces the first instead of streaming beside it.
pub fn server_id_for(job: &str) -> u32 {
    let hash = job.bytes().fold(0x811c_9dc5u32, |h, b| (h ^ u32::from(b)).wrapping_mul(0x0100_0193));
    0xF000_0000 | (hash & 0x0FFF_FFFF)
}

/// How many decoded transactions (or pieces) may wait for the applier, besides the queue's
/// budget of row changes: many, since they are few when transactions are large.
const QUEUE: usize = 4096;

/// How many decoded row changes the reader holds (in the transaction being read and in the
/// queue to the applier), and the most it held at once.
#[derive(Clone, Debug, Default)]
pub struct Held(Arc<(AtomicUsize, AtomicUsize)>);

impl Held {
    fn add(&self, n: usize) {
        let now = self.0.0.fetch_add(n, Ordering::Relaxed) + n;
        self.0.1.fetch_max(now, Ordering::Relaxed);
    }

    fn sub(&self, n: usize) {
        self.0.0.fetch_sub(n, Ordering::Relaxed);
    }

    /// Row changes held now.
    pub fn now(&self) -> usize {
        self.0.0.load(Ordering::Relaxed)
    }

    /// The most row changes held at once so far.
    pub fn peak(&self) -> usize {
        self.0.1.load(Ordering::Relaxed)
    }
}

/// Transactions from the binary log, read by a background task.
pub struct MyChanges {
    rx: Receiver,
    held: Held,
    task: tokio::task::JoinHandle<()>,
    names: BinlogNames,
    /// When the reading task last heard from the server (heartbeats included).
    heard: Heard,
}

impl MyChanges {
    /// Opens the stream and starts reading.
    pub async fn open(endpoint: &Endpoint, login: Login<'_>, opts: StreamOptions) -> Result<MyChanges> {
        let mut conn = connect::connect(endpoint, login, Side::Source).await?;
        let catalog_conn = connect::connect(endpoint, login, Side::Source).await?;
        let fail = |e: mysql_async::Error| EngineError::Stream(format!("opening the binary log stream: {e}"));
        // A MariaDB replica that understands GTID events; a heartbeat every second keeps an idle
        // stream alive.
        conn.query_drop("SET @mariadb_slave_capability = 4, @master_heartbeat_period = 1000000000")
            .await
            .map_err(fail)?;
        let names = opts.names.clone();
        // The log files the source still has: a checkpoint in a purged one cannot be resumed,
        // and no retry changes that.
        let logs: Vec<String> = conn
            .query_map("SHOW BINARY LOGS", |row: mysql_async::Row| row.get::<String, usize>(0).unwrap_or_default())
            .await
            .map_err(fail)?;
        if let StartAt::File(file, offset) = &opts.start
            && !logs.iter().any(|l| l == file)
        {
            return Err(purged(&format!("{file}:{offset}"), logs.first().map(String::as_str), None));
        }
        // A GTID position the oldest log begins after: MariaDB (gtid_strict_mode off) would
        // start the stream there anyway, silently without the purged transactions.
        if let (StartAt::Gtid(pos), Some(oldest)) = (&opts.start, logs.first()) {
            let at_oldest: Option<String> =
                conn.exec_first("SELECT BINLOG_GTID_POS(?, 4)", (oldest,)).await.map_err(fail)?.flatten();
            let requested: Option<GtidPos> = pos.parse().ok();
            let oldest_pos: Option<GtidPos> = at_oldest.as_deref().and_then(|s| s.parse().ok());
            if let (Some(r), Some(o)) = (&requested, &oldest_pos)
                && !r.is_empty()
                && r.is_before(o)
            {
                let start = format!("GTID {pos}; {oldest} begins after {o}");
                return Err(purged(&start, Some(oldest), None));
            }
        }
        let start = match &opts.start {
            StartAt::File(file, offset) => format!("{file}:{offset}"),
            StartAt::Gtid(gtid) => format!("GTID {gtid}"),
        };
        let oldest = logs.first().cloned();
        let request = match &opts.start {
            StartAt::Gtid(pos) => {
                conn.exec_drop("SET @slave_connect_state = ?", (pos,)).await.map_err(fail)?;
                BinlogStreamRequest::new(opts.server_id).with_filename(b"")
            }
            StartAt::File(file, offset) => {
                BinlogStreamRequest::new(opts.server_id).with_filename(file.as_bytes()).with_pos(*offset)
            }
        };
        // A heartbeat event from the server whenever the log is quiet for a quarter of
        // tuning.networkTimeoutSeconds, so a silent stream can be told from a quiet one.
        let period = crate::engine::net::heartbeat_period();
        conn.exec_drop("SET @master_heartbeat_period = ?", (u64::try_from(period.as_nanos()).unwrap_or(u64::MAX),))
            .await
            .map_err(fail)?;
        // The reader stops reading while the queue to the applier is full: the source must not
        // take that for a dead replica.
        conn.exec_drop("SET SESSION net_write_timeout = ?", (source_write_timeout(),)).await.map_err(fail)?;
        let request = if opts.until_end_of_log { request.with_non_blocking() } else { request };
        let stream = conn.get_binlog_stream(request).await.map_err(|e| {
            EngineError::Stream(format!(
                "the source refused the binary log stream ({e}); if the log at the checkpoint was purged, the job \
                 cannot continue: release it, raise binlog retention and start a new one"
            ))
        })?;
        let (tx, rx) = queue(QUEUE);
        let held = Held::default();
        let mut decoder = Decoder::new(opts, catalog_conn, held.clone())?;
        let heard = Heard::default();
        let stamp = heard.clone();
        let task = tokio::spawn(async move {
            let mut stream = stream;
            // `mysql_common` panics on some malformed events (an event size beyond its packet,
            // an event shorter than its checksum). Uncaught, the panic would end this task
            // silently and the applier would take the closed channel for the end of the log; it
            // stops the job with an error instead.
            while let Some(event) = AssertUnwindSafe(stream.next()).catch_unwind().await.unwrap_or_else(|_| {
                Some(Err(mysql_async::Error::Other("a malformed event made the reader fail".into())))
            }) {
                let out = match event {
                    Ok(event) => {
                        stamp.now();
                        AssertUnwindSafe(decoder.event(&stream, &event))
                            .catch_unwind()
                            .await
                            .unwrap_or_else(|_| Err(undecodable(&event)))
                    }
                    // 1236: the server cannot serve the position (its log is purged).
                    Err(mysql_async::Error::Server(s)) if s.code == 1236 => {
                        Err(purged(&start, oldest.as_deref(), Some(&s.message)))
                    }
                    Err(e) => Err(EngineError::Stream(format!("reading the binary log: {e}"))),
                };
                match out {
                    Ok(Some(t)) => {
                        if !tx.send(Ok(t)).await {
                            return;
                        }
                    }
                    Ok(None) => {}
                    Err(e) => {
                        let _ = tx.send(Err(e)).await;
                        return;
                    }
                }
            }
        });
        Ok(MyChanges { rx, held, task, names, heard })
    }
}

/// How long the source may be unable to write to the reader before it drops the connection
/// (`net_write_timeout`, 60 s by default), in seconds. The reader stops reading while the queue
/// to the applier is full, until the applier takes from it; the applier gives a batch its write
/// limit (`tuning.networkTimeoutSeconds`) per [`BATCH_TIME_UNIT`] changes, a batch may pass its
/// units by one transaction, and a full queue is about `BUDGET / BATCH_TIME_UNIT` units: twice
/// one more than that many write limits covers the wait. A stalled applier ends the job by its
/// own limits first, and a dead reader's connection goes when the job connects again (the same
/// replica id displaces it).
fn source_write_timeout() -> u64 {
    const MARIADB_MAX: u64 = 31_536_000;
    let units = 2 * (BUDGET.div_ceil(BATCH_TIME_UNIT) as u64 + 1);
    crate::engine::net::timeout().as_secs().max(1).saturating_mul(units).min(MARIADB_MAX)
}

/// The failure of a job on an event whose decoding panicked (in `mysql_common` or here).
fn undecodable(event: &mysql_async::binlog::events::Event) -> EngineError {
    let header = event.header();
    EngineError::Stream(format!(
        "undecodable binary log event (type {}, ending at offset {}): the job stops rather than skip it",
        header.event_type_raw(),
        header.log_pos()
    ))
}

/// MariaDB's compressed query and row events (`log_bin_compress`): QUERY_COMPRESSED_EVENT and
/// the WRITE/UPDATE/DELETE_ROWS_COMPRESSED events in both versions.
const MARIADB_COMPRESSED_EVENTS: std::ops::RangeInclusive<u8> = 165..=171;

/// The failure of a job on a compressed MariaDB event, which the client cannot decode: the job
/// stops at it rather than pass over the changes it holds.
fn compressed(raw: u8, end: u32) -> EngineError {
    EngineError::Unrecoverable {
        code: "BINLOG_COMPRESSED",
        message: format!(
            "the source wrote a compressed binary log event (type {raw}, ending at offset {end}; log_bin_compress is \
             on), which Ferry cannot read: the job stops rather than skip its changes. Set log_bin_compress = OFF on \
             the source (SET GLOBAL and my.cnf), then restart the job with a new full transfer (delete the SyncJob \
             and apply it again), since the events already written stay compressed"
        ),
    }
}

/// The failure of a job whose checkpoint lies in binary log the source has purged.
fn purged(start: &str, oldest: Option<&str>, server: Option<&str>) -> EngineError {
    let oldest = oldest.map_or_else(|| "none".to_owned(), |o| format!("{o} is the oldest it has"));
    let server = server.map(|m| format!(" (the server says: {m})")).unwrap_or_default();
    EngineError::Unrecoverable {
        code: "BINLOG_PURGED",
        message: format!(
            "the source purged the binary log the job's checkpoint is in ({start}; {oldest}){server}: the changes \
             since cannot be read any more. Restart with a new full transfer (delete the SyncJob and apply it \
             again), and keep binary logs longer than a job may stop (binlog_expire_logs_seconds / \
             expire_logs_days)"
        ),
    }
}

impl MyChanges {
    /// The row changes the reader holds, to check that memory stays bounded.
    pub fn held(&self) -> Held {
        self.held.clone()
    }
}

impl ChangeSource for MyChanges {
    async fn next_within(&mut self, wait: Duration) -> Option<Option<Result<Transaction>>> {
        let item = tokio::time::timeout(wait, self.rx.recv()).await.ok()?;
        if let Some(Ok(t)) = &item {
            self.held.sub(t.changes.len());
        }
        Some(item)
    }

    fn acknowledge(&self, _end: u64) {
        // The server keeps no replica state: the checkpoint on the target is the position.
    }

    fn display_position(&self, end: u64) -> String {
        self.names.display(end)
    }

    async fn close(self) {
        self.task.abort();
    }

    fn silent_for(&self) -> Option<Duration> {
        Some(self.heard.silent_for())
    }
}

/// A transaction being read.
#[derive(Default)]
struct Pending {
    changes: Vec<Change>,
    /// A DDL's GTID event: the next statement is the whole transaction.
    standalone: bool,
    /// Pieces of it were handed out already.
    pieces: bool,
}

/// Turns binary-log events into transactions.
struct Decoder {
    opts: StreamOptions,
    filters: Vec<Option<RowFilter>>,
    dropped: Vec<bool>,
    catalog: Conn,
    file: String,
    current: Option<Pending>,
    held: Held,
}

const QUERY_EVENT: u8 = 2;
const ROTATE_EVENT: u8 = 4;
const XID_EVENT: u8 = 16;

impl Decoder {
    fn new(opts: StreamOptions, catalog: Conn, held: Held) -> Result<Decoder> {
        let filters = opts.tables.iter().map(compile_filter).collect::<Result<Vec<_>>>()?;
        let dropped = vec![false; opts.tables.len()];
        Ok(Decoder { opts, filters, dropped, catalog, file: String::new(), current: None, held })
    }

    /// Starts a transaction, dropping what is left of one that never ended.
    fn begin(&mut self, standalone: bool) {
        if let Some(old) = self.current.replace(Pending { standalone, ..Pending::default() }) {
            self.held.sub(old.changes.len());
        }
    }

    fn index_of(&self, db: &str, name: &str) -> Option<usize> {
        self.opts
            .tables
            .iter()
            .enumerate()
            .position(|(i, t)| !self.dropped[i] && t.def.schema == db && t.def.name == name)
    }

    fn end_of(&self, header: &mysql_async::binlog::events::BinlogEventHeader) -> Result<u64> {
        self.opts.names.encode(&self.file, u64::from(header.log_pos()))
    }

    async fn event(
        &mut self,
        stream: &mysql_async::BinlogStream,
        event: &mysql_async::binlog::events::Event,
    ) -> Result<Option<Transaction>> {
        let header = event.header();
        let commit_time_us = i64::from(header.timestamp()) * 1_000_000;
        let bad = |e: std::io::Error| EngineError::Stream(format!("undecodable binary log event: {e}"));
        match header.event_type_raw() {
            gtid::GTID_EVENT => {
                let g = gtid::decode_gtid(event.data(), header.server_id())
                    .map_err(|e| EngineError::Stream(e.to_string()))?;
                self.begin(g.flags & 1 != 0);
                Ok(None)
            }
            ROTATE_EVENT => {
                if let Some(EventData::RotateEvent(r)) = event.read_data().map_err(bad)? {
                    self.file = file_name(r.name_raw(), &self.opts.names);
                }
                Ok(None)
            }
            XID_EVENT => self.commit(header, commit_time_us),
            QUERY_EVENT => {
                let Some(EventData::QueryEvent(q)) = event.read_data().map_err(bad)? else { return Ok(None) };
                let sql = q.query().into_owned();
                let schema = q.schema().into_owned();
                let word = sql.split_whitespace().next().unwrap_or("").to_ascii_uppercase();
                match word.as_str() {
                    "BEGIN" => {
                        if self.current.is_none() {
                            self.begin(false);
                        }
                        Ok(None)
                    }
                    "COMMIT" => self.commit(header, commit_time_us),
                    // Only changes to non-transactional tables are logged in a transaction that
                    // rolls back. Once pieces of it are applied (in a target transaction still
                    // open), the rest follows and commits with them rather than leave the target
                    // transaction half done.
                    "ROLLBACK" if self.current.as_ref().is_some_and(|p| p.pieces) => {
                        tracing::warn!(
                            "a large source transaction ended in ROLLBACK after part of it was applied: its logged \
                             changes (to non-transactional tables) are committed"
                        );
                        self.commit(header, commit_time_us)
                    }
                    "ROLLBACK" => {
                        if let Some(old) = self.current.take() {
                            self.held.sub(old.changes.len());
                        }
                        Ok(None)
                    }
                    _ => {
                        let changes = self.statement(&schema, &sql).await?;
                        let standalone = self.current.as_ref().is_none_or(|p| p.standalone);
                        if !changes.is_empty() && self.current.as_ref().is_some_and(|p| p.pieces) {
                            // MariaDB commits before a DDL, so no server writes one there.
                            return Err(EngineError::Stream(
                                "a DDL statement in the middle of a large transaction whose first part is \
                                 already applied: the job cannot cut the target transaction there"
                                    .into(),
                            ));
                        }
                        if self.current.is_none() {
                            self.begin(standalone);
                        }
                        self.held.add(changes.len());
                        if let Some(pending) = self.current.as_mut() {
                            pending.changes.extend(changes);
                        }
                        if standalone { self.commit(header, commit_time_us) } else { Ok(None) }
                    }
                }
            }
            // Only row events are read: mysql_common's reading of others trusts their counts
            // (a PREVIOUS_GTIDS event's sizes a vector), and Ferry has no use for them.
            raw if is_rows_event(raw) => {
                if let Some(EventData::RowsEvent(rows)) = event.read_data().map_err(bad)? {
                    self.rows(stream, &rows)?;
                }
                self.piece(header, commit_time_us)
            }
            raw if MARIADB_COMPRESSED_EVENTS.contains(&raw) => Err(compressed(raw, header.log_pos())),
            _ => Ok(None),
        }
    }

    fn commit(
        &mut self,
        header: mysql_async::binlog::events::BinlogEventHeader,
        commit_time_us: i64,
    ) -> Result<Option<Transaction>> {
        let changes = self.current.take().map(|p| p.changes).unwrap_or_default();
        let end = self.end_of(&header)?;
        Ok(Some(Transaction { changes, end, commit_time_us, partial: false }))
    }

    /// The changes read so far of a transaction that reached [`PIECE`] of them, handed out as a
    /// piece. Its `end` is the end of the last event read: inside the transaction, so it
    /// compares with a position between transactions (a chunk's snapshot) as the transaction's
    /// end does.
    fn piece(
        &mut self,
        header: mysql_async::binlog::events::BinlogEventHeader,
        commit_time_us: i64,
    ) -> Result<Option<Transaction>> {
        let Some(pending) = self.current.as_mut().filter(|p| p.changes.len() >= PIECE) else { return Ok(None) };
        pending.pieces = true;
        let changes = std::mem::take(&mut pending.changes);
        let end = self.end_of(&header)?;
        Ok(Some(Transaction { changes, end, commit_time_us, partial: true }))
    }

    /// Decodes a rows event of a selected table into changes.
    fn rows(&mut self, stream: &mysql_async::BinlogStream, rows: &RowsEventData<'_>) -> Result<()> {
        let Some(tme) = stream.get_tme(rows.table_id()) else { return Ok(()) };
        let Some(index) = self.index_of(&tme.database_name(), &tme.table_name()) else { return Ok(()) };
        let out =
            row_changes(&self.opts.tables[index], index, self.filters[index].as_ref(), &self.opts.dml, tme, rows)?;
        self.held.add(out.len());
        let pending = self.current.get_or_insert_with(Pending::default);
        pending.changes.extend(out);
        Ok(())
    }

    /// Where a table of the source goes, if the selection takes it.
    fn target_of(&self, db: &str, name: &str) -> Option<(String, String)> {
        if let Some(i) = self.index_of(db, name) {
            let t = &self.opts.tables[i].def;
            return Some((t.target_schema.clone(), t.target_name.clone()));
        }
        catalog::selects(&self.opts.selection, db, name).map(|(d, t, _)| (d, t))
    }

    /// A DDL statement on the source: what it means for the job.
    async fn statement(&mut self, schema: &str, sql: &str) -> Result<Vec<Change>> {
        let stmt = ddl::parse(sql);
        let kind = match stmt.kind {
            StatementKind::Ddl(kind) => kind,
            StatementKind::DropDatabase => {
                if stmt.database.as_deref().is_some_and(|d| self.opts.tables.iter().any(|t| t.def.schema == d)) {
                    tracing::warn!(database = ?stmt.database, "DROP DATABASE of a selected database on the source: not replayed");
                }
                return Ok(Vec::new());
            }
            StatementKind::Other => {
                // A row change logged as a statement (binlog_format changed at runtime, or a
                // session that set it): it cannot be applied, and skipping it would lose it.
                let word = sql.split_whitespace().next().unwrap_or("").to_ascii_uppercase();
                let dml = ["INSERT", "UPDATE", "DELETE", "REPLACE", "LOAD"].contains(&word.as_str());
                let ours = self.opts.tables.iter().any(|t| t.def.schema == schema || sql.contains(&t.def.schema));
                if dml && ours {
                    return Err(EngineError::SourceUnfit(format!(
                        "a row change on a selected database was logged as a statement ({word} …), not as rows: the \
                         source must run with binlog_format=ROW for every session; the job cannot apply it"
                    )));
                }
                return Ok(Vec::new());
            }
            _ => return Ok(Vec::new()),
        };
        let default_db = if schema.is_empty() { None } else { Some(schema) };
        let refs: Vec<(String, String)> = stmt
            .tables
            .iter()
            .filter_map(|r| Some((r.database.clone().or(default_db.map(str::to_owned))?, r.name.clone())))
            .collect();
        let touched: Vec<usize> = refs.iter().filter_map(|(d, n)| self.index_of(d, n)).collect();
        let created = kind == DdlKind::CreateTable
            && refs.first().is_some_and(|(d, n)| {
                self.index_of(d, n).is_none() && catalog::selects(&self.opts.selection, d, n).is_some()
            });
        if touched.is_empty() && !created {
            return Ok(Vec::new());
        }
        let policy = &self.opts.ddl;
        if !policy.enabled || !(policy.kinds.is_empty() || policy.kinds.contains(&kind)) {
            tracing::info!(kind = ?kind, "DDL on a selected table not replayed (policy.ddl)");
            return Ok(Vec::new());
        }
        for &i in &touched {
            let t = &self.opts.tables[i];
            let mapped_columns = t.def.columns.iter().any(|c| !c.selected || c.name != c.target_name);
            if mapped_columns && stmt.changes_columns {
                return Err(EngineError::Unsupported(format!(
                    "a DDL changes the columns of {}, whose columns are selected or renamed by the job; it cannot be \
                     replayed with that mapping, so the job stops: apply it to the target by hand and restart",
                    t.def.display_name()
                )));
            }
        }
        // Only the selected tables' part of the statement runs on the target; what cannot be
        // cut to that part stops the job rather than touch a table the job does not own.
        let statement = match ddl::for_target(sql, &stmt, default_db, |d, n| self.target_of(d, n)) {
            Ok(Some(statement)) => statement,
            Ok(None) => return Ok(Vec::new()),
            Err(why) => return Err(unreplayable(kind, sql, &why)),
        };
        let mut redefined = Vec::new();
        match kind {
            DdlKind::CreateTable if created => {
                let (d, n) = refs[0].clone();
                let (td, tn, sel) = catalog::selects(&self.opts.selection, &d, &n)
                    .ok_or_else(|| EngineError::Stream("selection changed".into()))?;
                let t = catalog::describe(&mut self.catalog, &d, &n, td.clone(), tn.clone(), sel.as_ref()).await?;
                self.filters.push(compile_filter(&t)?);
                self.opts.tables.push(t);
                self.dropped.push(false);
                redefined.push((self.opts.tables.len() - 1, td, tn));
            }
            DdlKind::DropTable => {
                for &i in &touched {
                    self.dropped[i] = true;
                }
            }
            DdlKind::RenameTable | DdlKind::AlterTable => {
                // Follow renames first: the table keeps its place in the job under its new name.
                for &(from, to) in &stmt.renames {
                    let (Some((fd, fn_)), Some((td, tn))) = (refs.get(from), refs.get(to)) else { continue };
                    if let Some(i) = self.index_of(fd, fn_) {
                        let target = self.target_of(td, tn);
                        let def = &mut self.opts.tables[i].def;
                        def.schema = td.clone();
                        def.name = tn.clone();
                        if let Some((d, n)) = target {
                            def.target_schema = d;
                            def.target_name = n;
                        }
                    }
                }
                for &i in &touched {
                    if self.dropped[i] {
                        continue;
                    }
                    let old = self.opts.tables[i].clone();
                    let sel = catalog::selects(&self.opts.selection, &old.def.schema, &old.def.name).and_then(|s| s.2);
                    let mut t = catalog::describe(
                        &mut self.catalog,
                        &old.def.schema,
                        &old.def.name,
                        old.def.target_schema.clone(),
                        old.def.target_name.clone(),
                        sel.as_ref(),
                    )
                    .await?;
                    t.def.filter = old.def.filter.clone();
                    redefined.push((i, t.def.target_schema.clone(), t.def.target_name.clone()));
                    self.opts.tables[i] = t;
                }
            }
            _ => {}
        }
        Ok(vec![Change::Ddl { statement, tables: redefined }])
    }
}

/// The failure of a DDL on selected tables whose replay would reach beyond them.
fn unreplayable(kind: DdlKind, sql: &str, why: &str) -> EngineError {
    const SHOWN: usize = 200;
    let mut shown: String = sql.split_whitespace().collect::<Vec<_>>().join(" ");
    if let Some((cut, _)) = shown.char_indices().nth(SHOWN) {
        shown.truncate(cut);
        shown.push('…');
    }
    let kind = serde_json::to_string(&kind).unwrap_or_default();
    EngineError::Unsupported(format!(
        "a DDL statement on the source cannot be replayed for the selected tables alone ({why}): {shown:?}. The job \
         stops rather than run it on tables it does not own. Apply what the selected tables need to the target by \
         hand, then let the job pass the statement with policy.ddl.kinds listing the other kinds but not {kind} (or \
         policy.ddl.enabled false), and restore the policy afterwards"
    ))
}

/// Whether events of type `raw` carry row changes (the three kinds, in both versions, and
/// MySQL's partial JSON update).
pub(crate) fn is_rows_event(raw: u8) -> bool {
    use mysql_async::binlog::EventType as E;
    [
        E::WRITE_ROWS_EVENT_V1,
        E::UPDATE_ROWS_EVENT_V1,
        E::DELETE_ROWS_EVENT_V1,
        E::WRITE_ROWS_EVENT,
        E::UPDATE_ROWS_EVENT,
        E::DELETE_ROWS_EVENT,
        E::PARTIAL_UPDATE_ROWS_EVENT,
    ]
    .iter()
    .any(|e| *e as u8 == raw)
}

/// The changes a rows event (with the table map event of its table) makes to job table
/// `table` (at `index` in the job), kept or dropped by its row filter; none when its kind of
/// change is not among `dml`.
pub(crate) fn row_changes(
    table: &MyTable,
    index: usize,
    filter: Option<&RowFilter>,
    dml: &[DmlType],
    tme: &TableMapEvent<'_>,
    rows: &RowsEventData<'_>,
) -> Result<Vec<Change>> {
    if tme.columns_count() as usize != table.columns.len() {
        return Err(EngineError::Stream(format!(
            "rows of {} have {} columns in the binary log but {} in the table Ferry copied: its structure \
             changed through a DDL that was not replayed (policy.ddl), or changed again on the source before \
             the stream reached the first change (a replayed DDL takes the table's structure from the source as \
             it is now); the job cannot continue — bring the target table to the structure the source had at \
             the checkpoint by hand and restart, or enable policy.ddl",
            table.def.display_name(),
            tme.columns_count(),
            table.columns.len()
        )));
    }
    let kind = match rows {
        RowsEventData::WriteRowsEventV1(_) | RowsEventData::WriteRowsEvent(_) => DmlType::Insert,
        RowsEventData::UpdateRowsEventV1(_)
        | RowsEventData::UpdateRowsEvent(_)
        | RowsEventData::PartialUpdateRowsEvent(_) => DmlType::Update,
        RowsEventData::DeleteRowsEventV1(_) | RowsEventData::DeleteRowsEvent(_) => DmlType::Delete,
    };
    if !dml.contains(&kind) {
        return Ok(Vec::new());
    }
    check_table_map(table, tme)?;
    let keeps = |row: &[Cell]| filter.is_none_or(|f| keeps(f, table, row));
    let mut out = Vec::new();
    for pair in super::rows::Rows::new(table, tme, rows)? {
        match pair? {
            (None, Some(row)) if keeps(&row) => out.push(Change::Insert { table: index, row }),
            (Some(old), None) if keeps(&old) => out.push(Change::Delete { table: index, old }),
            (Some(old), Some(row)) => match (keeps(&old), keeps(&row)) {
                (true, true) => out.push(Change::Update { table: index, old_key: Some(old), row }),
                (false, true) => out.push(Change::Insert { table: index, row }),
                (true, false) => out.push(Change::Delete { table: index, old }),
                (false, false) => {}
            },
            _ => {}
        }
    }
    Ok(out)
}

/// Refuses a table map whose column metadata `mysql_common` would decode rows with unchecked:
/// a column whose type or metadata it cannot read gets empty metadata, which its value
/// decoding indexes (a panic); and it sizes a DECIMAL's buffer from the precision and scale, so
/// a scale above the precision wraps to a size no allocation can take, which aborts the process
/// (not a panic the reader could catch). A server writes DECIMAL precision 1 to 65 and scale 0
/// to 30, at most the precision.
fn check_table_map(table: &MyTable, tme: &TableMapEvent<'_>) -> Result<()> {
    for i in 0..tme.columns_count() as usize {
        let meta = tme.get_column_metadata(i);
        let fits = match tme.get_column_type(i) {
            Ok(Some(ColumnType::MYSQL_TYPE_NEWDECIMAL)) => {
                matches!(meta, Some(&[p, s, ..]) if (1..=65).contains(&p) && s <= 30 && s <= p)
            }
            // Decoded with two metadata bytes its table map reading does not give them (no
            // server writes either in a table map).
            Ok(Some(ColumnType::MYSQL_TYPE_VAR_STRING | ColumnType::MYSQL_TYPE_TYPED_ARRAY)) => false,
            Ok(Some(_)) => meta.is_some(),
            _ => false,
        };
        if !fits {
            return Err(EngineError::Stream(format!(
                "the binary log's table map of {} describes column {} with a type or metadata no server writes; \
                 the job stops rather than decode its rows",
                table.def.display_name(),
                i + 1
            )));
        }
    }
    Ok(())
}

/// The binary log file a ROTATE event names. The first (artificial) rotate arrives before the
/// format description announces checksums, so its name may carry the 4 checksum bytes, which
/// can be anything, dots and digits included: the name is the known base, a dot and the
/// sequence number's digits.
pub(crate) fn file_name(raw: &[u8], names: &BinlogNames) -> String {
    let prefix = format!("{}.", names.base);
    let end = prefix.len() + names.width;
    if raw.starts_with(prefix.as_bytes()) && raw.len() >= end && raw[prefix.len()..end].iter().all(u8::is_ascii_digit) {
        return String::from_utf8_lossy(&raw[..end]).into_owned();
    }
    // Another base name (the server's log was renamed): up to the digits after the first dot
    // that is followed by a digit.
    let name = String::from_utf8_lossy(raw);
    match name.find('.').map(|i| name.split_at(i + 1)) {
        Some((base, rest)) => format!("{base}{}", rest.chars().take_while(char::is_ascii_digit).collect::<String>()),
        None => name.into_owned(),
    }
}

fn compile_filter(t: &MyTable) -> Result<Option<RowFilter>> {
    t.def
        .filter
        .as_deref()
        .map(|f| {
            RowFilter::parse(f).map_err(|e| {
                EngineError::Unsupported(format!(
                    "the row filter of {} cannot be evaluated on binary log rows: {e}",
                    t.def.display_name()
                ))
            })
        })
        .transpose()
}

fn keeps(f: &RowFilter, t: &MyTable, row: &[Cell]) -> bool {
    let texts: Vec<Option<std::borrow::Cow<'_, str>>> = row.iter().map(filter_text).collect();
    f.keeps(|name| {
        let i = t.def.columns.iter().position(|c| c.name.eq_ignore_ascii_case(name))?;
        Some(match texts.get(i)? {
            Some(s) => filter::Value::Text(s),
            None => filter::Value::Null,
        })
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn positions_order_as_the_log_and_print_as_file_and_offset() {
        let names = BinlogNames::of("mariadb-bin.000003").unwrap();
        let a = names.encode("mariadb-bin.000003", 4000).unwrap();
        let b = names.encode("mariadb-bin.000004", 4).unwrap();
        assert!(a < b);
        assert_eq!(names.display(a), "mariadb-bin.000003:4000");
        assert_eq!(names.decode(b), ("mariadb-bin.000004".to_owned(), 4));
        assert!(BinlogNames::of("nonumber").is_err());
    }

    #[test]
    fn a_rotate_name_with_checksum_bytes_that_look_like_digits_or_dots_still_names_the_file() {
        let names = BinlogNames::of("mariadb-bin.000001").unwrap();
        for tail in [&b"\x12\x34\x56\x78"[..], b"7.9a", b"1234", b""] {
            let raw = [b"mariadb-bin.000003".as_slice(), tail].concat();
            assert_eq!(file_name(&raw, &names), "mariadb-bin.000003", "{tail:?}");
        }
        assert_eq!(file_name(b"other.000042\x01\x02\x03\x04", &names), "other.000042");
    }

    #[test]
    fn mysql_common_panics_on_an_event_longer_than_its_packet_which_is_why_the_reader_catches_panics() {
        use mysql_async::binlog::BinlogVersion;
        use mysql_async::binlog::events::{Event, FormatDescriptionEvent};
        let fde = FormatDescriptionEvent::new(BinlogVersion::Version4);
        // A QUERY event header that declares 200 bytes, in a packet of 19.
        let mut packet = [0u8; 19];
        packet[4] = QUERY_EVENT;
        packet[9..13].copy_from_slice(&200u32.to_le_bytes());
        let read = std::panic::catch_unwind(|| Event::read(&fde, &packet[..]).map(|_| ()));
        assert!(
            read.is_err(),
            "mysql_common no longer panics here; the reader still catches panics as a defence, update this test"
        );
    }

    #[test]
    fn replica_ids_stay_in_their_range_and_differ_per_job() {
        let a = server_id_for("default/orders");
        assert!(a >= 0xF000_0000);
        assert_ne!(a, server_id_for("default/orders2"));
    }
}
