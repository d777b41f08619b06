//! Reading a MySQL/MariaDB source for the full transfer: primary-key range chunks, each read in
//! its own consistent snapshot whose binary log position is recorded with the chunk.
//!
//! Readers do not share one snapshot (the server cannot export one); instead the change stream
//! starts before every chunk's snapshot and is applied idempotently up to the newest of them,
//! which converges each row to its source state.
//!
//! A table without a primary key cannot be replayed idempotently: its copy must be one snapshot
//! of it, whose changes up to that snapshot the stream skips. Such a table (InnoDB, with an index
//! on an integer or date column) is split into ranges of that column, NULLs in the first, and
//! every range is read by a [`SharedSnapshot`]: sessions whose snapshots all stand at the same
//! binary log position, which on MariaDB means they see the same committed transactions. In one
//! snapshot each row has one value of the column, so it lies in exactly one range.

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};

use futures::TryStreamExt;
use mysql_async::prelude::Queryable;
use mysql_async::{Conn, Params, Value};

use super::catalog::{ColumnKind, MyTable};
use super::snapshot;
use super::stream::BinlogNames;
use super::target::{ChunkData, Piece, qualified};
use super::values::push_value;
use crate::api::Endpoint;
use crate::engine::Login;
use crate::engine::error::{EngineError, Result, Side};
use crate::engine::model::KeyRange;
use crate::engine::snapshot::{Chunk, ChunkSource};
use crate::engine::sql::my_ident;

const S: Side = Side::Source;

/// Key columns whose values can bound a chunk: numbers, dates and text keys (compared in the
/// column's collation, as the server orders them). Binary keys are read in one chunk.
fn chunkable(t: &MyTable) -> bool {
    !t.def.key.is_empty()
        && t.def.key.iter().all(|&k| {
            let m = &t.columns[k];
            matches!(m.kind, ColumnKind::Integer { .. } | ColumnKind::Text | ColumnKind::Date | ColumnKind::Year)
                || (m.kind == ColumnKind::Other
                    && m.charset.is_none()
                    && !t.def.columns[k].type_sql.contains("binary")
                    && !t.def.columns[k].type_sql.contains("blob"))
        })
}

/// `(k1 > ?) OR (k1 = ? AND k2 >= ?)`-style comparison of the key with a bound, in key order:
/// a row-value comparison the range optimizer can use on every server version.
fn bound_sql(keys: &[String], inclusive: bool, upper: bool) -> String {
    let op_last = match (upper, inclusive) {
        (false, true) => ">=",
        (false, false) => ">",
        (true, true) => "<=",
        (true, false) => "<",
    };
    let op_strict = if upper { "<" } else { ">" };
    let mut ors = Vec::new();
    for i in 0..keys.len() {
        let mut ands: Vec<String> = keys[..i].iter().map(|k| format!("{k} = ?")).collect();
        let op = if i + 1 == keys.len() { op_last } else { op_strict };
        ands.push(format!("{} {op} ?", keys[i]));
        ors.push(format!("({})", ands.join(" AND ")));
    }
    format!("({})", ors.join(" OR "))
}

/// Parameters for [`bound_sql`]: for bound position i, the first i values then value i.
fn bound_params(values: &[String]) -> Vec<Value> {
    let mut out = Vec::new();
    for i in 0..values.len() {
        out.extend(values[..=i].iter().map(|v| Value::Bytes(v.clone().into_bytes())));
    }
    out
}

/// The `WHERE` clause and parameters of a chunk (key range and row filter).
pub fn chunk_where(t: &MyTable, range: &KeyRange) -> (String, Vec<Value>) {
    let keys: Vec<String> = t.def.key_columns().map(|c| my_ident(&c.name)).collect();
    let mut parts = Vec::new();
    let mut params = Vec::new();
    if let Some(lo) = &range.lo {
        parts.push(bound_sql(&keys, true, false));
        params.extend(bound_params(lo));
    }
    if let Some(hi) = &range.hi {
        parts.push(bound_sql(&keys, false, true));
        params.extend(bound_params(hi));
    }
    if let Some(f) = &t.def.filter {
        parts.push(format!("({f})"));
    }
    if parts.is_empty() { ("TRUE".to_owned(), params) } else { (parts.join(" AND "), params) }
}

/// Splits a table into key ranges of about `rows_per_chunk` rows by walking its key: each
/// boundary is the key `rows_per_chunk` rows past the previous one. A table without a key is
/// split on its [`split_column`] when `split_keyless` (its ranges must then all be read in one
/// [`SharedSnapshot`]), else read in one chunk.
pub async fn plan_chunks(
    conn: &mut Conn,
    t: &MyTable,
    rows_per_chunk: u64,
    split_keyless: bool,
) -> Result<Vec<KeyRange>> {
    let small = t.def.estimated_rows < rows_per_chunk * 2 && t.def.estimated_rows > 0;
    if t.def.key.is_empty()
        && split_keyless
        && !small
        && let Some((column, _)) = split_column(t)
    {
        return plan_on_column(conn, t, column, rows_per_chunk).await;
    }
    if !chunkable(t) || small {
        return Ok(vec![KeyRange::default()]);
    }
    let keys: Vec<String> = t.def.key_columns().map(|c| my_ident(&c.name)).collect();
    let select: Vec<String> = keys.iter().map(|k| format!("CAST({k} AS CHAR)")).collect();
    let table = qualified(&t.def.schema, &t.def.name);
    let mut bounds: Vec<Vec<String>> = Vec::new();
    loop {
        let (cond, params) = match bounds.last() {
            Some(b) => (bound_sql(&keys, true, false), bound_params(b)),
            None => ("TRUE".to_owned(), Vec::new()),
        };
        let sql = format!(
            "SELECT {} FROM {table} WHERE {cond} ORDER BY {} LIMIT 1 OFFSET {rows_per_chunk}",
            select.join(", "),
            keys.join(", ")
        );
        let params = if params.is_empty() { Params::Empty } else { Params::Positional(params) };
        let row: Option<mysql_async::Row> = conn
            .exec_first(sql, params)
            .await
            .map_err(|e| EngineError::query(S, format!("planning chunks of {}", t.def.display_name()), e))?;
        let Some(row) = row else { break };
        let values: Option<Vec<String>> = row
            .unwrap()
            .into_iter()
            .map(|v| if let Value::Bytes(b) = v { String::from_utf8(b).ok() } else { None })
            .collect();
        match values {
            Some(v) => bounds.push(v),
            // A key that is NULL or not text: stop splitting here.
            None => break,
        }
    }
    Ok(KeyRange::between(bounds))
}

/// The column a table without a primary key is split on, with the index that leads with it: the
/// first column of one of its B-tree indexes, whole (no prefix), of a type whose values compare
/// the same way in every session (integers, dates, datetimes, years). Only InnoDB tables, whose
/// snapshots are consistent with the binary log.
pub fn split_column(t: &MyTable) -> Option<(usize, &str)> {
    if !t.def.key.is_empty() || !t.engine.as_deref().is_some_and(|e| e.eq_ignore_ascii_case("InnoDB")) {
        return None;
    }
    t.indexes.iter().filter(|ix| ix.kind.eq_ignore_ascii_case("BTREE")).find_map(|ix| {
        let (name, prefix) = ix.columns.first()?;
        let at = t.def.columns.iter().position(|c| &c.name == name)?;
        let m = &t.columns[at];
        let fit = matches!(m.kind, ColumnKind::Integer { .. } | ColumnKind::Date | ColumnKind::Year)
            || m.data_type == "datetime";
        (prefix.is_none() && fit && !m.generated()).then_some((at, ix.name.as_str()))
    })
}

/// Splits a keyless table on `column` into ranges of about `rows_per_chunk` rows: each boundary
/// is the value `rows_per_chunk` rows past the previous boundary's last row, so boundaries
/// strictly increase even when a value repeats.
async fn plan_on_column(conn: &mut Conn, t: &MyTable, column: usize, rows_per_chunk: u64) -> Result<Vec<KeyRange>> {
    let col = my_ident(&t.def.columns[column].name);
    let table = qualified(&t.def.schema, &t.def.name);
    let step = rows_per_chunk.max(1);
    let mut bounds: Vec<Vec<String>> = Vec::new();
    loop {
        let (sql, params) = match bounds.last() {
            None => (
                format!(
                    "SELECT CAST({col} AS CHAR) FROM {table} WHERE {col} IS NOT NULL ORDER BY {col} LIMIT 1 OFFSET {step}"
                ),
                Params::Empty,
            ),
            Some(b) => (
                format!(
                    "SELECT CAST({col} AS CHAR) FROM {table} WHERE {col} > ? ORDER BY {col} LIMIT 1 OFFSET {}",
                    step - 1
                ),
                Params::Positional(b.iter().map(|v| Value::Bytes(v.clone().into_bytes())).collect()),
            ),
        };
        let row: Option<Option<Vec<u8>>> = conn
            .exec_first(sql, params)
            .await
            .map_err(|e| EngineError::query(S, format!("planning chunks of {}", t.def.display_name()), e))?;
        match row.flatten().map(String::from_utf8) {
            Some(Ok(v)) => bounds.push(vec![v]),
            _ => break,
        }
    }
    Ok(KeyRange::between(bounds))
}

/// The `WHERE` clause and parameters of a chunk of the full transfer: a key range, a range of a
/// keyless table's [`split_column`] (NULLs in the first), or the whole table; and the row filter.
pub fn copy_where(t: &MyTable, range: &KeyRange) -> Result<(String, Vec<Value>)> {
    if !t.def.key.is_empty() || *range == KeyRange::default() {
        return Ok(chunk_where(t, range));
    }
    let Some((column, _)) = split_column(t) else {
        return Err(EngineError::Unsupported(format!(
            "{} was split on an index it no longer has; the job must be started again",
            t.def.display_name()
        )));
    };
    let col = my_ident(&t.def.columns[column].name);
    let mut parts = Vec::new();
    let mut params = Vec::new();
    let value =
        |v: &Option<Vec<String>>| v.as_ref().and_then(|v| v.first()).map(|v| Value::Bytes(v.clone().into_bytes()));
    if let Some(lo) = value(&range.lo) {
        parts.push(format!("{col} >= ?"));
        params.push(lo);
    }
    if let Some(hi) = value(&range.hi) {
        if range.lo.is_none() && t.def.columns[column].nullable {
            parts.push(format!("({col} < ? OR {col} IS NULL)"));
        } else {
            parts.push(format!("{col} < ?"));
        }
        params.push(hi);
    }
    if let Some(f) = &t.def.filter {
        parts.push(format!("({f})"));
    }
    Ok((parts.join(" AND "), params))
}

/// `FROM` of a chunk read: a split keyless table is read through the index of its split column
/// (each chunk a range of it, not a scan of the whole table).
fn copy_from(t: &MyTable, range: &KeyRange) -> String {
    let table = qualified(&t.def.schema, &t.def.name);
    match split_column(t) {
        Some((_, index)) if *range != KeyRange::default() => format!("{table} FORCE INDEX ({})", my_ident(index)),
        _ => table,
    }
}

/// The select list of a chunk read: the written columns, as they are.
fn select_sql(t: &MyTable) -> String {
    t.written().map(|(_, c, _)| my_ident(&c.name)).collect::<Vec<_>>().join(", ")
}

/// Bytes of `LOAD DATA` input a reader gathers before passing them on.
const PIECE: usize = 1 << 19;
/// Pieces a reader may be ahead of the load.
const PIECES_AHEAD: usize = 4;

/// A reading session: a reader's own, or one of a [`SharedSnapshot`]'s while it reads.
enum Session {
    Own(Conn),
    Shared(tokio::sync::OwnedMutexGuard<Conn>),
}

impl Session {
    fn conn(&mut self) -> &mut Conn {
        match self {
            Session::Own(conn) => conn,
            Session::Shared(guard) => guard,
        }
    }
}

/// How a reader writes rows for a target other than the MySQL family's `LOAD DATA`: the select
/// list of a table, and each row it returns in the target's load format.
pub trait RowFormat: Send + Sync {
    /// The select list of a chunk read of `t` (one expression per written column, in order).
    fn select_sql(&self, t: &MyTable) -> String;

    /// Appends one row of job table `table` (its values in select-list order) to `buf`.
    fn push_row(&self, table: usize, buf: &mut Vec<u8>, row: &[Value]) -> Result<()>;
}

/// What a chunk read needs, owned: the read runs in a task of its own, while the load takes its
/// rows.
struct ReadPlan {
    sql: String,
    params: Params,
    kinds: Vec<ColumnKind>,
    what: String,
    /// The target's row format and the job table's index, when it is not `LOAD DATA`.
    format: Option<(Arc<dyn RowFormat>, usize)>,
}

impl ReadPlan {
    fn of(t: &MyTable, chunk: &Chunk, format: Option<&Arc<dyn RowFormat>>) -> Result<ReadPlan> {
        let (cond, params) = copy_where(t, &chunk.range)?;
        let select = format.map_or_else(|| select_sql(t), |f| f.select_sql(t));
        Ok(ReadPlan {
            sql: format!("SELECT {select} FROM {} WHERE {cond}", copy_from(t, &chunk.range)),
            params: if params.is_empty() { Params::Empty } else { Params::Positional(params) },
            kinds: t.written().map(|(_, _, m)| m.kind).collect(),
            what: format!("reading chunk {} of {}", chunk.number, t.def.display_name()),
            format: format.map(|f| (Arc::clone(f), chunk.table)),
        })
    }

    /// Starts reading on `session`, in the snapshot it is in; the rows come in the returned
    /// [`ChunkData`] and the session back from the task once they are all sent.
    fn spawn(self, mut session: Session) -> (tokio::task::JoinHandle<Session>, ChunkData) {
        let (sender, pieces) = tokio::sync::mpsc::channel(PIECES_AHEAD);
        let task = tokio::spawn(async move {
            let outcome = self.read(session.conn(), &sender).await;
            // Nobody listening: the load failed, and says why.
            let _ = sender.send(outcome.map(Piece::End)).await;
            session
        });
        (task, ChunkData { pieces })
    }

    /// Reads the rows into pieces of [`PIECE`] bytes; returns how many rows there were.
    async fn read(self, conn: &mut Conn, sender: &tokio::sync::mpsc::Sender<Result<Piece>>) -> Result<u64> {
        let what = &self.what;
        let mut result = conn.exec_iter(self.sql, self.params).await.map_err(|e| EngineError::query(S, what, e))?;
        let mut body = Vec::with_capacity(PIECE + (PIECE >> 2));
        let mut rows = 0u64;
        let mut stream = result.stream::<mysql_async::Row>().await.map_err(|e| EngineError::query(S, what, e))?;
        let stopped = || EngineError::query(S, what, "the load stopped taking rows");
        if let Some(stream) = stream.as_mut() {
            while let Some(row) = stream.try_next().await.map_err(|e| EngineError::query(S, what, e))? {
                if let Some((format, table)) = &self.format {
                    format.push_row(*table, &mut body, &row.unwrap())?;
                } else {
                    for (i, value) in row.unwrap().iter().enumerate() {
                        if i > 0 {
                            body.push(b'\t');
                        }
                        push_value(&mut body, self.kinds[i], value);
                    }
                    body.push(b'\n');
                }
                rows += 1;
                if body.len() >= PIECE {
                    let full = std::mem::replace(&mut body, Vec::with_capacity(PIECE + (PIECE >> 2)));
                    sender.send(Ok(Piece::Rows(full.into()))).await.map_err(|_| stopped())?;
                }
            }
        }
        if !body.is_empty() {
            sender.send(Ok(Piece::Rows(body.into()))).await.map_err(|_| stopped())?;
        }
        Ok(rows)
    }
}

/// Source sessions whose consistent snapshots all stand at one binary log position, opened when
/// the first chunk of a split keyless table is read and closed when the last one is. On MariaDB
/// a snapshot's position is exactly the transactions it sees (InnoDB and the binary log commit in
/// one order), so sessions at the same position see the same rows: together they read one
/// snapshot in parallel. Attempts to start them at one position while the source commits may
/// fail; the largest set that agrees is kept (one session always does).
pub struct SharedSnapshot<'a> {
    endpoint: &'a Endpoint,
    login: Login<'a>,
    names: BinlogNames,
    /// Sessions wanted (the copy's readers).
    sessions: usize,
    /// Chunks still to read in the snapshot; the sessions end with the last.
    left: AtomicUsize,
    /// Round-robin choice of a session.
    next: AtomicUsize,
    group: tokio::sync::OnceCell<Group>,
    closed: tokio::sync::Mutex<bool>,
}

/// The sessions of a [`SharedSnapshot`] and their position.
struct Group {
    position: u64,
    sessions: Vec<Arc<tokio::sync::Mutex<Conn>>>,
}

/// Attempts at starting every session of a [`SharedSnapshot`] at one position.
const SHARED_SNAPSHOT_ATTEMPTS: usize = 10;

impl<'a> SharedSnapshot<'a> {
    /// A shared snapshot of up to `sessions` sessions for `chunks` chunks; nothing is opened yet.
    pub fn new(endpoint: &'a Endpoint, login: Login<'a>, names: BinlogNames, sessions: usize, chunks: usize) -> Self {
        SharedSnapshot {
            endpoint,
            login,
            names,
            sessions: sessions.max(1),
            left: AtomicUsize::new(chunks),
            next: AtomicUsize::new(0),
            group: tokio::sync::OnceCell::new(),
            closed: tokio::sync::Mutex::new(false),
        }
    }

    /// Whether `chunk` is read in the shared snapshot: a range of a split keyless table.
    pub fn takes(t: &MyTable, chunk: &Chunk) -> bool {
        t.def.key.is_empty() && chunk.range != KeyRange::default()
    }

    async fn open(&self) -> Result<Group> {
        let mut conns = Vec::with_capacity(self.sessions);
        for _ in 0..self.sessions {
            let mut conn = super::connect::connect(self.endpoint, self.login, S).await?;
            MyChunkSource::prepare(&mut conn).await?;
            conns.push(conn);
        }
        for attempt in 1..=SHARED_SNAPSHOT_ATTEMPTS {
            let started = futures::future::join_all(conns.iter_mut().map(|c| snapshot::start(c, true))).await;
            let positions = started.into_iter().collect::<Result<Vec<_>>>()?;
            let agreeing = |p: &snapshot::SnapshotPosition| positions.iter().filter(|q| *q == p).count();
            let best = positions.iter().max_by_key(|p| agreeing(p)).cloned();
            let Some(best) = best else { break };
            if agreeing(&best) == conns.len() || attempt == SHARED_SNAPSHOT_ATTEMPTS {
                let mut kept = Vec::new();
                for (conn, p) in conns.into_iter().zip(&positions) {
                    if *p == best {
                        kept.push(Arc::new(tokio::sync::Mutex::new(conn)));
                    } else {
                        let _ = conn.disconnect().await;
                    }
                }
                if kept.len() < self.sessions {
                    tracing::info!(
                        sessions = kept.len(),
                        "the source kept committing: fewer sessions share the snapshot"
                    );
                }
                let position = self.names.encode(&best.file, best.position)?;
                return Ok(Group { position, sessions: kept });
            }
            for conn in &mut conns {
                conn.query_drop("COMMIT").await.map_err(|e| EngineError::query(S, "ending a snapshot", e))?;
            }
        }
        Err(EngineError::query(S, "starting a shared snapshot", "no session"))
    }

    /// A session of the shared snapshot to read one chunk on, and the snapshot's position.
    async fn session(&self) -> Result<(u64, tokio::sync::OwnedMutexGuard<Conn>)> {
        let group = self.group.get_or_try_init(|| self.open()).await?;
        let at = self.next.fetch_add(1, Ordering::SeqCst) % group.sessions.len();
        Ok((group.position, Arc::clone(&group.sessions[at]).lock_owned().await))
    }

    /// Counts a chunk read; after the last, ends the snapshot: the source need not keep its row
    /// versions any longer.
    async fn done(&self) {
        if self.left.fetch_sub(1, Ordering::SeqCst) != 1 {
            return;
        }
        let mut closed = self.closed.lock().await;
        if let (false, Some(group)) = (*closed, self.group.get()) {
            for conn in &group.sessions {
                if let Err(e) = conn.lock().await.query_drop("COMMIT").await {
                    tracing::debug!(error = %e, "ending a shared snapshot");
                }
            }
            *closed = true;
        }
    }
}

/// Reads chunks, each in a fresh consistent snapshot, and the ranges of split keyless tables in
/// the shared one. A chunk's rows are read in a task of their own while the target loads them.
pub struct MyChunkSource<'a> {
    /// Source session (time zone UTC, results in the columns' own bytes); away while a chunk
    /// is read on it.
    conn: Option<Conn>,
    /// The job's tables.
    tables: &'a [MyTable],
    /// Binary log naming, to encode snapshot positions.
    names: BinlogNames,
    /// Where the ranges of split keyless tables are read.
    shared: &'a SharedSnapshot<'a>,
    /// The task reading the chunk last started, which hands its session back.
    reading: Option<tokio::task::JoinHandle<Session>>,
    /// The target's row format; `LOAD DATA` input when unset.
    format: Option<Arc<dyn RowFormat>>,
}

impl<'a> MyChunkSource<'a> {
    /// A reader on `conn`, set up with [`MyChunkSource::prepare`].
    pub fn new(conn: Conn, tables: &'a [MyTable], names: BinlogNames, shared: &'a SharedSnapshot<'a>) -> Self {
        MyChunkSource { conn: Some(conn), tables, names, shared, reading: None, format: None }
    }

    /// The reader with rows written in `format` instead of `LOAD DATA` input.
    pub fn with_format(mut self, format: Arc<dyn RowFormat>) -> Self {
        self.format = Some(format);
        self
    }

    /// Sets up a reading session.
    pub async fn prepare(conn: &mut Conn) -> Result<()> {
        conn.query_drop("SET SESSION time_zone = '+00:00', character_set_results = binary")
            .await
            .map_err(|e| EngineError::query(S, "setting up the reading session", e))
    }
}

impl ChunkSource for MyChunkSource<'_> {
    type Data = ChunkData;

    async fn read(&mut self, chunk: &Chunk) -> Result<(u64, ChunkData)> {
        let t = &self.tables[chunk.table];
        let plan = ReadPlan::of(t, chunk, self.format.as_ref())?;
        if SharedSnapshot::takes(t, chunk) {
            let (position, session) = self.shared.session().await?;
            let (task, data) = plan.spawn(Session::Shared(session));
            self.reading = Some(task);
            return Ok((position, data));
        }
        let mut conn =
            self.conn.take().ok_or_else(|| EngineError::query(S, &plan.what, "the reading session was lost"))?;
        // A keyless table's changes up to the snapshot are skipped: that needs its exact position.
        let at = snapshot::start(&mut conn, t.def.key.is_empty()).await?;
        let position = self.names.encode(&at.file, at.position)?;
        let (task, data) = plan.spawn(Session::Own(conn));
        self.reading = Some(task);
        Ok((position, data))
    }

    async fn finish(&mut self) -> Result<()> {
        let Some(reading) = self.reading.take() else { return Ok(()) };
        let session = reading.await.map_err(|e| EngineError::query(S, "reading a chunk", e.to_string()))?;
        match session {
            Session::Own(mut conn) => {
                conn.query_drop("COMMIT").await.map_err(|e| EngineError::query(S, "ending a chunk's snapshot", e))?;
                self.conn = Some(conn);
            }
            Session::Shared(session) => {
                drop(session);
                self.shared.done().await;
            }
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn composite_key_bounds_compare_in_key_order() {
        let keys = vec!["`a`".to_owned(), "`b`".to_owned()];
        assert_eq!(bound_sql(&keys, true, false), "((`a` > ?) OR (`a` = ? AND `b` >= ?))");
        assert_eq!(bound_sql(&keys[..1], false, true), "((`a` < ?))");
        assert_eq!(bound_params(&["1".into(), "x".into()]).len(), 3);
    }
}
