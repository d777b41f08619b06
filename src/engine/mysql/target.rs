//! The MySQL/MariaDB target: structure, bookkeeping in the `_ferry` database, chunks loaded with
//! `LOAD DATA LOCAL INFILE`, and changes applied with their checkpoint in one transaction.

use std::collections::{BTreeSet, HashMap};

use bytes::Bytes;
use mysql_async::prelude::Queryable;
use mysql_async::{Conn, Params, Value};

use super::catalog::{ColumnKind, MyTable};
use crate::engine::error::{Describe, EngineError, Result, Side};
use crate::engine::model::{KeyRange, TableDef};
use crate::engine::pipeline::{self, Ledger, Origin};
use crate::engine::progress::Tracker;
use crate::engine::snapshot::PendingChunk;
use crate::engine::snapshot::{Chunk, ChunkTarget};
use crate::engine::sql::my_ident;
use crate::engine::throttle::Throttle;

const T: Side = Side::Target;

/// The bookkeeping database on the target.
pub const DATABASE: &str = "_ferry";

fn err(context: impl Into<String>) -> impl FnOnce(mysql_async::Error) -> EngineError {
    let context = context.into();
    move |e| EngineError::query(T, context, e.describe())
}

/// `db`.`table`, quoted.
pub fn qualified(db: &str, table: &str) -> String {
    format!("{}.{}", my_ident(db), my_ident(table))
}

use super::defaults::{is_plain_name, literal};

/// Session settings of every session that writes data: values as the source stores them (no
/// time zone shift, zero in AUTO_INCREMENT columns kept, zero dates and the dates a lenient
/// source session stored, such as `2024-02-30`, accepted), and rows loaded in any table order.
pub async fn prepare_session(conn: &mut Conn) -> Result<()> {
    conn.query_drop(
        "SET SESSION time_zone = '+00:00', sql_mode = 'NO_AUTO_VALUE_ON_ZERO,ALLOW_INVALID_DATES', \
         foreign_key_checks = 0, unique_checks = 1",
    )
    .await
    .map_err(err("setting up the writing session"))
}

/// Creates the `_ferry` database and its tables if missing (one statement each: sessions run
/// without multi-statements).
pub async fn ensure_bookkeeping(conn: &mut Conn) -> Result<()> {
    for sql in [
        "CREATE DATABASE IF NOT EXISTS `_ferry`",
        "CREATE TABLE IF NOT EXISTS `_ferry`.`jobs` (
             job VARCHAR(255) NOT NULL PRIMARY KEY,
             binlog_base VARCHAR(255) NOT NULL,
             start_pos BIGINT UNSIGNED NOT NULL,
             start_gtid TEXT NOT NULL,
             full_done BOOLEAN NOT NULL DEFAULT FALSE,
             safe_end BIGINT UNSIGNED NULL,
             checkpoint_pos BIGINT UNSIGNED NULL,
             checkpoint_time DATETIME(6) NULL,
             ddl_attempted BIGINT UNSIGNED NULL,
             updated_at TIMESTAMP(6) NOT NULL DEFAULT CURRENT_TIMESTAMP(6) ON UPDATE CURRENT_TIMESTAMP(6)
         ) ENGINE=InnoDB DEFAULT CHARSET=utf8mb4",
        "CREATE TABLE IF NOT EXISTS `_ferry`.`chunks` (
             job VARCHAR(255) NOT NULL,
             table_name VARCHAR(400) NOT NULL,
             chunk INT NOT NULL,
             lo TEXT NULL,
             hi TEXT NULL,
             done BOOLEAN NOT NULL DEFAULT FALSE,
             `rows` BIGINT UNSIGNED NULL,
             read_pos BIGINT UNSIGNED NULL,
             PRIMARY KEY (job, table_name, chunk)
         ) ENGINE=InnoDB DEFAULT CHARSET=utf8mb4",
    ] {
        conn.query_drop(sql).await.map_err(err("creating the _ferry bookkeeping database"))?;
    }
    Ok(())
}

/// What the target remembers of a job.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct JobState {
    /// Binary log base name (`mariadb-bin`), to turn positions back into file names.
    pub binlog_base: String,
    /// Where the stream starts: the position before every chunk's snapshot.
    pub start: u64,
    /// The same point as a GTID position.
    pub start_gtid: String,
    /// Whether the full transfer is done.
    pub full_done: bool,
    /// Newest position any chunk was read at.
    pub safe_end: Option<u64>,
    /// Position of the last applied change.
    pub checkpoint: Option<u64>,
    /// End of a DDL that was sent to the target but whose checkpoint may not have been.
    pub ddl_attempted: Option<u64>,
}

/// Reads the job's row, if any.
pub async fn job_state(conn: &mut Conn, job: &str) -> Result<Option<JobState>> {
    type Row = (String, u64, String, bool, Option<u64>, Option<u64>, Option<u64>);
    let row: Option<Row> = conn
        .exec_first(
            "SELECT binlog_base, start_pos, start_gtid, full_done, \
             (SELECT max(read_pos) FROM `_ferry`.`chunks` c WHERE c.job = j.job), checkpoint_pos, ddl_attempted \
             FROM `_ferry`.`jobs` j WHERE job = ?",
            (job,),
        )
        .await
        .map_err(err("reading the job's bookkeeping"))?;
    Ok(row.map(|(binlog_base, start, start_gtid, full_done, read, checkpoint, ddl_attempted)| JobState {
        binlog_base,
        start,
        start_gtid,
        full_done,
        safe_end: read.max(Some(start)),
        checkpoint,
        ddl_attempted,
    }))
}

/// Records a new job with its start position and chunk plan, in one transaction.
pub async fn record_job(
    conn: &mut Conn,
    job: &str,
    binlog_base: &str,
    start: u64,
    start_gtid: &str,
    plan: &[(String, Vec<KeyRange>)],
) -> Result<()> {
    let mut tx = conn.start_transaction(Default::default()).await.map_err(err("recording the job"))?;
    // A job that starts over replaces what was recorded of it.
    tx.exec_drop("DELETE FROM `_ferry`.`chunks` WHERE job = ?", (job,)).await.map_err(err("clearing old chunks"))?;
    tx.exec_drop("DELETE FROM `_ferry`.`jobs` WHERE job = ?", (job,)).await.map_err(err("recording the job"))?;
    tx.exec_drop(
        "INSERT INTO `_ferry`.`jobs` (job, binlog_base, start_pos, start_gtid) VALUES (?, ?, ?, ?)",
        (job, binlog_base, start, start_gtid),
    )
    .await
    .map_err(err("recording the job"))?;
    let json = |v: &Option<Vec<String>>| v.as_ref().and_then(|v| serde_json::to_string(v).ok());
    let mut rows = Vec::new();
    for (table, ranges) in plan {
        for (i, r) in ranges.iter().enumerate() {
            rows.push((job.to_owned(), table.clone(), i as i32, json(&r.lo), json(&r.hi)));
        }
    }
    tx.exec_batch("INSERT INTO `_ferry`.`chunks` (job, table_name, chunk, lo, hi) VALUES (?, ?, ?, ?, ?)", rows)
        .await
        .map_err(err("recording the chunk plan"))?;
    tx.commit().await.map_err(err("recording the job"))
}

/// The chunks not yet copied, in order.
pub async fn pending_chunks(conn: &mut Conn, job: &str) -> Result<Vec<PendingChunk>> {
    let rows: Vec<(String, i32, Option<String>, Option<String>)> = conn
        .exec(
            "SELECT table_name, chunk, lo, hi FROM `_ferry`.`chunks` WHERE job = ? AND NOT done \
             ORDER BY table_name, chunk",
            (job,),
        )
        .await
        .map_err(err("reading the chunk plan"))?;
    let parse = |s: Option<String>| s.and_then(|s| serde_json::from_str::<Vec<String>>(&s).ok());
    Ok(rows
        .into_iter()
        .map(|(table, chunk, lo, hi)| PendingChunk { table, chunk, range: KeyRange { lo: parse(lo), hi: parse(hi) } })
        .collect())
}

/// When the ledger splits `table` (one without a key) into several chunks not all copied,
/// empties the target table and replaces its chunks with one for the whole table, in one
/// transaction; returns whether it did. Its ranges must all be read in one snapshot, and the
/// chunks a previous run copied were read in another: the table is copied again, whole.
pub async fn restart_split_table(conn: &mut Conn, job: &str, table: &TableDef) -> Result<bool> {
    let name = table.display_name();
    let what = format!("copying {name} again in one chunk");
    let mut tx = conn.start_transaction(Default::default()).await.map_err(err(what.clone()))?;
    let counts: Option<(i64, Option<i64>)> = tx
        .exec_first(
            "SELECT count(*), CAST(sum(done) AS SIGNED) FROM `_ferry`.`chunks` WHERE job = ? AND table_name = ? \
             FOR UPDATE",
            (job, &name),
        )
        .await
        .map_err(err(what.clone()))?;
    let (chunks, done) = counts.map_or((0, 0), |(c, d)| (c, d.unwrap_or(0)));
    if chunks <= 1 || done == chunks {
        tx.rollback().await.map_err(err(what))?;
        return Ok(false);
    }
    // DELETE, not TRUNCATE: TRUNCATE would commit on its own, apart from the ledger.
    tx.query_drop(format!("DELETE FROM {}", qualified(&table.target_schema, &table.target_name)))
        .await
        .map_err(err(what.clone()))?;
    tx.exec_drop("DELETE FROM `_ferry`.`chunks` WHERE job = ? AND table_name = ?", (job, &name))
        .await
        .map_err(err(what.clone()))?;
    tx.exec_drop("INSERT INTO `_ferry`.`chunks` (job, table_name, chunk) VALUES (?, ?, 0)", (job, &name))
        .await
        .map_err(err(what.clone()))?;
    tx.commit().await.map_err(err(what))?;
    Ok(true)
}

/// Rows copied so far per table.
pub async fn copied_rows(conn: &mut Conn, job: &str) -> Result<HashMap<String, u64>> {
    let rows: Vec<(String, Option<u64>)> = conn
        .exec(
            "SELECT table_name, CAST(sum(`rows`) AS UNSIGNED) FROM `_ferry`.`chunks` WHERE job = ? AND done \
             GROUP BY table_name",
            (job,),
        )
        .await
        .map_err(err("reading copied rows"))?;
    Ok(rows.into_iter().map(|(t, n)| (t, n.unwrap_or(0))).collect())
}

/// The newest position each table's chunks were read at.
pub async fn table_read_positions(conn: &mut Conn, job: &str) -> Result<HashMap<String, u64>> {
    let rows: Vec<(String, Option<u64>)> = conn
        .exec(
            "SELECT table_name, max(read_pos) FROM `_ferry`.`chunks` WHERE job = ? AND done GROUP BY table_name",
            (job,),
        )
        .await
        .map_err(err("reading chunk positions"))?;
    Ok(rows.into_iter().filter_map(|(t, p)| Some((t, p?))).collect())
}

/// Marks the full transfer done.
pub async fn finish_full(conn: &mut Conn, job: &str) -> Result<()> {
    conn.exec_drop("UPDATE `_ferry`.`jobs` SET full_done = TRUE WHERE job = ?", (job,))
        .await
        .map_err(err("marking the full transfer done"))
}

/// The MySQL-family target half of a job ([`pipeline::Target`]): the `_ferry` ledger, read and
/// written on one target session, and the job's target tables.
pub struct MyTarget {
    /// The session the ledger is read and written on.
    pub conn: Conn,
    /// The target tables (source and target names, keys), in the job's order.
    pub tables: Vec<TableDef>,
}

impl pipeline::Target for MyTarget {
    async fn ledger(&mut self, job: &crate::engine::Job<'_>) -> Result<Option<Ledger<u64>>> {
        Ok(job_state(&mut self.conn, job.id).await?.map(|s| Ledger {
            start: s.start,
            safe_end: s.safe_end,
            checkpoint: s.checkpoint,
            full_done: s.full_done,
            origin: Origin { name: s.binlog_base, detail: s.start_gtid },
        }))
    }

    async fn record(
        &mut self,
        job: &crate::engine::Job<'_>,
        start: u64,
        origin: &Origin,
        plan: &pipeline::Plan,
        layouts: &[(String, String)],
    ) -> Result<()> {
        if !layouts.is_empty() {
            return Err(EngineError::Unsupported(
                "this source needs its table layouts kept on the target, which a MySQL-family target does not do"
                    .into(),
            ));
        }
        record_job(&mut self.conn, job.id, &origin.name, start, &origin.detail, plan).await
    }

    fn tables(&self) -> &[TableDef] {
        &self.tables
    }

    async fn restart_split_table(&mut self, job: &crate::engine::Job<'_>, table: &TableDef) -> Result<bool> {
        restart_split_table(&mut self.conn, job.id, table).await
    }

    async fn copied_rows(&mut self, job: &crate::engine::Job<'_>) -> Result<HashMap<String, u64>> {
        copied_rows(&mut self.conn, job.id).await
    }

    async fn pending_chunks(&mut self, job: &crate::engine::Job<'_>) -> Result<Vec<PendingChunk>> {
        pending_chunks(&mut self.conn, job.id).await
    }

    async fn finish_full(&mut self, job: &crate::engine::Job<'_>) -> Result<()> {
        finish_full(&mut self.conn, job.id).await
    }

    async fn empty(&mut self) -> Result<()> {
        for t in &self.tables {
            let sql = format!("TRUNCATE TABLE {}", qualified(&t.target_schema, &t.target_name));
            match self.conn.query_drop(sql).await {
                // ER_NO_SUCH_TABLE: nothing to empty.
                Err(mysql_async::Error::Server(e)) if e.code == 1146 => {}
                r => r.map_err(err(format!("emptying {}", t.display_target())))?,
            }
        }
        Ok(())
    }
}

/// Forgets the job's bookkeeping.
pub async fn forget_job(conn: &mut Conn, job: &str) -> Result<()> {
    conn.exec_drop("DELETE FROM `_ferry`.`chunks` WHERE job = ?", (job,)).await.map_err(err("forgetting chunks"))?;
    conn.exec_drop("DELETE FROM `_ferry`.`jobs` WHERE job = ?", (job,)).await.map_err(err("forgetting the job"))
}

/// One column's definition in the target's CREATE TABLE, `None` for a generated column whose
/// expression cannot be carried. Defaults, `ON UPDATE` clauses and generation expressions are
/// rendered from the catalog ([`super::defaults`]); what cannot be rendered safely is left out
/// (and reported by [`MyTable::left_out`]). Character set and collation names are written only
/// when they are plain names, as every server's are.
fn column_sql(c: &crate::engine::model::ColumnDef, m: &super::catalog::MyColumn) -> Option<String> {
    let mut s = format!("{} {}", my_ident(&c.target_name), c.type_sql);
    if let (Some(cs), Some(coll)) = (&m.charset, &m.collation)
        && is_plain_name(cs)
        && is_plain_name(coll)
    {
        s.push_str(&format!(" CHARACTER SET {cs} COLLATE {coll}"));
    }
    let extra = m.extra.to_ascii_lowercase();
    match m.generation_sql() {
        Err(_) => return None,
        Ok(Some(expr)) => {
            let stored = if extra.contains("stored") || extra.contains("persistent") { "STORED" } else { "VIRTUAL" };
            s.push_str(&format!(" GENERATED ALWAYS AS ({expr}) {stored}"));
        }
        Ok(None) => {
            s.push_str(if c.nullable { " NULL" } else { " NOT NULL" });
            if let Ok(Some(d)) = m.default_sql() {
                s.push_str(&format!(" DEFAULT {d}"));
            }
            if extra.contains("auto_increment") {
                s.push_str(" AUTO_INCREMENT");
            }
            if let Ok(Some(on_update)) = m.on_update_sql() {
                s.push(' ');
                s.push_str(&on_update);
            }
        }
    }
    if !m.comment.is_empty() {
        s.push_str(&format!(" COMMENT {}", literal(&m.comment)));
    }
    Some(s)
}

/// The secondary index definitions of a table in target names; indexes on columns that are not
/// transferred are left out (and named).
fn index_sql(t: &MyTable) -> (Vec<(String, String)>, Vec<String>) {
    let mut out = Vec::new();
    let mut skipped = Vec::new();
    for ix in &t.indexes {
        let cols: Option<Vec<String>> = ix
            .columns
            .iter()
            .map(|(name, prefix)| {
                let c = t.def.columns.iter().find(|c| &c.name == name && c.selected)?;
                Some(match prefix {
                    Some(n) => format!("{}({n})", my_ident(&c.target_name)),
                    None => my_ident(&c.target_name),
                })
            })
            .collect();
        let Some(cols) = cols else {
            skipped.push(format!("{}.{}", t.def.display_target(), ix.name));
            continue;
        };
        let kind = match (ix.kind.as_str(), ix.unique) {
            ("FULLTEXT", _) => "FULLTEXT INDEX",
            ("SPATIAL", _) => "SPATIAL INDEX",
            (_, true) => "UNIQUE INDEX",
            _ => "INDEX",
        };
        out.push((ix.name.clone(), format!("ADD {kind} {} ({})", my_ident(&ix.name), cols.join(", "))));
    }
    (out, skipped)
}

/// `CREATE TABLE` for a table in target names, with its primary key and, when asked, its
/// secondary indexes. Fails when a column's type is not a plain type expression (no server
/// writes one otherwise).
pub fn create_table_sql(t: &MyTable, with_indexes: bool) -> Result<String> {
    for c in t.def.columns.iter().filter(|c| c.selected) {
        super::defaults::check_expression(&c.type_sql).map_err(|e| {
            EngineError::Unsupported(format!(
                "the type of column {} of {} as the source reports it cannot be carried safely ({e})",
                c.name,
                t.def.display_name()
            ))
        })?;
    }
    let checks: Vec<(&super::catalog::CheckDef, String)> =
        t.checks.iter().filter_map(|check| Some((check, t.check_sql(check).ok()?))).collect();
    let mut parts: Vec<String> = t
        .def
        .columns
        .iter()
        .zip(&t.columns)
        .filter(|(c, _)| c.selected)
        .filter_map(|(c, m)| {
            let mut sql = column_sql(c, m)?;
            for (_, condition) in checks.iter().filter(|(check, _)| check.column.as_deref() == Some(c.name.as_str())) {
                sql.push_str(&format!(" CHECK ({condition})"));
            }
            Some(sql)
        })
        .collect();
    if !t.def.key.is_empty() && t.def.key_columns().all(|c| c.selected) {
        let key: Vec<String> = t.def.key_columns().map(|c| my_ident(&c.target_name)).collect();
        parts.push(format!("PRIMARY KEY ({})", key.join(", ")));
    }
    for (check, condition) in checks.iter().filter(|(check, _)| check.column.is_none()) {
        parts.push(format!("CONSTRAINT {} CHECK ({condition})", my_ident(&check.name)));
    }
    if with_indexes {
        for (_, ix) in index_sql(t).0 {
            parts.push(ix.trim_start_matches("ADD ").to_owned());
        }
    }
    let mut sql = format!(
        "CREATE TABLE IF NOT EXISTS {} (\n  {}\n)",
        qualified(&t.def.target_schema, &t.def.target_name),
        parts.join(",\n  ")
    );
    if let Some(engine) = t.engine.as_deref().filter(|e| is_plain_name(e)) {
        sql.push_str(&format!(" ENGINE={engine}"));
    }
    if let Some(coll) = t.collation.as_deref().filter(|c| is_plain_name(c)) {
        sql.push_str(&format!(" DEFAULT COLLATE={coll}"));
    }
    Ok(sql)
}

/// Creates the target databases and tables (primary keys included; secondary indexes too when
/// `with_indexes`, for jobs without a full transfer).
pub async fn create_structure(
    conn: &mut Conn,
    tables: &[MyTable],
    databases: &HashMap<String, (String, String)>,
    with_indexes: bool,
) -> Result<()> {
    let mut created = BTreeSet::new();
    for t in tables {
        let db = &t.def.target_schema;
        if created.insert(db.clone()) {
            let mut sql = format!("CREATE DATABASE IF NOT EXISTS {}", my_ident(db));
            if let Some((charset, collation)) = databases.get(&t.def.schema)
                && is_plain_name(charset)
                && is_plain_name(collation)
            {
                sql.push_str(&format!(" CHARACTER SET {charset} COLLATE {collation}"));
            }
            conn.query_drop(sql).await.map_err(err(format!("creating database {db}")))?;
        }
        conn.query_drop(create_table_sql(t, with_indexes)?)
            .await
            .map_err(err(format!("creating table {}", t.def.display_target())))?;
    }
    Ok(())
}

/// Adds the secondary indexes the target tables do not have yet, one `ALTER TABLE` per table;
/// unique ones only when `unique` (chunks read in different snapshots may hold a unique value
/// twice until the stream has caught up). Returns the indexes left out because they use columns
/// that are not transferred.
pub async fn create_indexes(conn: &mut Conn, tables: &[MyTable], unique: bool) -> Result<Vec<String>> {
    let mut skipped = Vec::new();
    for t in tables {
        let (wanted, left_out) = index_sql(t);
        let wanted: Vec<(String, String)> = wanted
            .into_iter()
            .filter(|(name, _)| unique || !t.indexes.iter().any(|ix| &ix.name == name && ix.unique))
            .collect();
        skipped.extend(left_out);
        let have: Vec<String> = conn
            .exec(
                "SELECT DISTINCT INDEX_NAME FROM information_schema.STATISTICS WHERE TABLE_SCHEMA = ? AND TABLE_NAME = ?",
                (&t.def.target_schema, &t.def.target_name),
            )
            .await
            .map_err(err("listing target indexes"))?;
        let add: Vec<String> = wanted.into_iter().filter(|(name, _)| !have.contains(name)).map(|(_, s)| s).collect();
        if add.is_empty() {
            continue;
        }
        let sql = format!("ALTER TABLE {} {}", qualified(&t.def.target_schema, &t.def.target_name), add.join(", "));
        conn.query_drop(sql).await.map_err(err(format!("creating indexes on {}", t.def.display_target())))?;
    }
    Ok(skipped)
}

/// Target tables that already hold rows.
pub async fn non_empty_tables(conn: &mut Conn, tables: &[MyTable]) -> Result<Vec<String>> {
    let mut out = Vec::new();
    for t in tables {
        let sql = format!("SELECT 1 FROM {} LIMIT 1", qualified(&t.def.target_schema, &t.def.target_name));
        if let Ok(Some(1u8)) = conn.query_first::<u8, _>(sql).await {
            out.push(t.def.display_target());
        }
    }
    Ok(out)
}

/// `LOAD DATA` for a table's written columns; BIT goes through a variable, as the statement
/// cannot take a bit value as text.
pub fn load_sql(t: &MyTable) -> String {
    let mut cols = Vec::new();
    let mut sets = Vec::new();
    for (i, c, m) in t.written() {
        if m.kind == ColumnKind::Bit {
            cols.push(format!("@v{i}"));
            sets.push(format!("{} = CAST(@v{i} AS UNSIGNED)", my_ident(&c.target_name)));
        } else if matches!(m.data_type.as_str(), "uuid" | "inet6" | "inet4") {
            // Read as MariaDB prints them: text, which a binary string of that length is not.
            cols.push(format!("@v{i}"));
            sets.push(format!("{} = CONVERT(@v{i} USING ascii)", my_ident(&c.target_name)));
        } else {
            cols.push(my_ident(&c.target_name));
        }
    }
    let mut sql = format!(
        "LOAD DATA LOCAL INFILE 'ferry-chunk' REPLACE INTO TABLE {} CHARACTER SET binary \
         FIELDS TERMINATED BY '\\t' ESCAPED BY '\\\\' LINES TERMINATED BY '\\n' ({})",
        qualified(&t.def.target_schema, &t.def.target_name),
        cols.join(", ")
    );
    if !sets.is_empty() {
        sql.push_str(&format!(" SET {}", sets.join(", ")));
    }
    sql
}

/// A piece of a chunk as its reader sends it.
pub enum Piece {
    /// Whole rows in `LOAD DATA` form.
    Rows(Bytes),
    /// The chunk is complete: it held this many rows.
    End(u64),
}

/// A chunk being read from the source: its rows in `LOAD DATA` form, in pieces as they are read
/// (loading starts with the first). The last piece says how many rows there were; an error says
/// why the read failed, and a channel closed before the last piece is a failed read too.
pub struct ChunkData {
    /// The pieces.
    pub pieces: tokio::sync::mpsc::Receiver<Result<Piece>>,
}

/// Writes chunks with `LOAD DATA LOCAL INFILE`, each with its ledger entry in one transaction.
pub struct MyChunkTarget<'a> {
    /// Target session.
    pub conn: Conn,
    /// The largest piece of `LOAD DATA` input sent in one packet
    /// ([`super::connect::packet_budget`]).
    pub packet: usize,
    /// Job identity.
    pub job: &'a str,
    /// The job's tables.
    pub tables: &'a [MyTable],
}

/// Passes a chunk's pieces to the `LOAD DATA` input as they come, in packets of at most
/// `packet` bytes, accounting them to `throttle` and `tracker`. Returns the chunk's rows, or the
/// read's error (`None` when the load stopped taking input: its own error says why).
async fn forward(
    mut pieces: tokio::sync::mpsc::Receiver<Result<Piece>>,
    input: tokio::sync::mpsc::Sender<std::io::Result<Bytes>>,
    packet: usize,
    table: usize,
    throttle: &Throttle,
    tracker: &Tracker,
) -> std::result::Result<u64, Option<EngineError>> {
    let failed = |e: EngineError| async {
        // Cut the input short: the load ends with an error, and the transaction is rolled back.
        let _ = input.send(Err(std::io::Error::other("the source read failed"))).await;
        Err(Some(e))
    };
    loop {
        match pieces.recv().await {
            Some(Ok(Piece::Rows(body))) => {
                let bytes = body.len() as u64;
                throttle.take(bytes).await;
                tracker.add(Some(table), 0, bytes);
                // One packet per piece: the server refuses a packet above its max_allowed_packet,
                // and reads LOAD DATA input as one stream, whatever the packets' boundaries.
                for at in (0..body.len()).step_by(packet) {
                    if input.send(Ok(body.slice(at..(at + packet).min(body.len())))).await.is_err() {
                        return Err(None);
                    }
                }
            }
            Some(Ok(Piece::End(rows))) => return Ok(rows),
            Some(Err(e)) => return failed(e).await,
            None => return failed(EngineError::query(Side::Source, "reading a chunk", "the read ended early")).await,
        }
    }
}

impl ChunkTarget<ChunkData> for MyChunkTarget<'_> {
    async fn write(
        &mut self,
        chunk: &Chunk,
        read_position: u64,
        data: ChunkData,
        throttle: &Throttle,
        tracker: &Tracker,
    ) -> Result<u64> {
        use futures::future::Either;
        let t = &self.tables[chunk.table];
        let what = format!("loading chunk {} of {}", chunk.number, t.def.display_name());
        let conn = &mut self.conn;
        conn.query_drop("START TRANSACTION").await.map_err(err(what.clone()))?;
        let (input, receiver) = tokio::sync::mpsc::channel::<std::io::Result<Bytes>>(2);
        let stream = futures::stream::unfold(receiver, |mut r| async move { r.recv().await.map(|item| (item, r)) });
        conn.set_infile_handler(async move { Ok(Box::pin(stream) as mysql_async::InfileData) });
        let (loaded, read) = {
            let load = std::pin::pin!(conn.query_drop(load_sql(t)));
            let pass = std::pin::pin!(forward(data.pieces, input, self.packet.max(1), chunk.table, throttle, tracker));
            // The load ends after its input does, unless it fails; then the input is not awaited.
            match futures::future::select(load, pass).await {
                Either::Left((loaded, pass)) if loaded.is_ok() => (loaded, pass.await),
                Either::Left((loaded, _)) => (loaded, Err(None)),
                Either::Right((read, load)) => (load.await, read),
            }
        };
        let failed = match (loaded, read) {
            (Ok(()), Ok(rows)) => Ok(rows),
            (_, Err(Some(e))) => Err(e),
            (Err(e), _) => Err(err(what.clone())(e)),
            (Ok(()), Err(None)) => Err(EngineError::query(T, what.clone(), "the load ended before its input")),
        };
        // A value the load did not store as read (truncated, changed to a zero date, …).
        let failed = match failed {
            Ok(rows) => match value_changed(&mut self.conn).await {
                Ok(None) => Ok(rows),
                Ok(Some(warning)) => Err(not_stored(&t.def.display_name(), &warning, &what)),
                Err(e) => Err(e),
            },
            Err(e) => Err(e),
        };
        let rows = match failed {
            Ok(rows) => rows,
            Err(e) => {
                // Nothing of the chunk stays; the session may be reused.
                let _ = self.conn.query_drop("ROLLBACK").await;
                return Err(e);
            }
        };
        let conn = &mut self.conn;
        conn.exec_drop(
            "UPDATE `_ferry`.`chunks` SET done = TRUE, `rows` = ?, read_pos = ? \
             WHERE job = ? AND table_name = ? AND chunk = ?",
            (rows, read_position, self.job, t.def.display_name(), chunk.number),
        )
        .await
        .map_err(err(what.clone()))?;
        conn.query_drop("COMMIT").await.map_err(err(what))?;
        Ok(rows)
    }
}

/// Warnings of a non-strict session that a value was not stored as sent: column cannot be null,
/// NULL into NOT NULL, out of range, data truncated, truncated wrong value, incorrect value for
/// the column, data too long.
const VALUE_CHANGED: [u32; 7] = [1048, 1263, 1264, 1265, 1292, 1366, 1406];

/// The error code of a value a MariaDB/MySQL target did not store as sent, its table unchanged.
pub const VALUE_NOT_STORED: &str = "VALUE_NOT_STORED";

/// A warning that a value was not stored as sent: its code and the column it names.
pub(crate) struct ValueWarning {
    /// The server's warning code.
    pub code: u32,
    /// The column, when the message names it.
    pub column: Option<String>,
}

/// The column a warning's message names (`… for column 'c' at row 1`, ``… for column `db`.`t`.`c` …``,
/// `Column 'c' cannot be null`), without the value it may quote before.
fn warned_column(message: &str) -> Option<String> {
    let name = match message.rsplit_once(" for column ") {
        // A quoted name follows (not the tail of a quoted value).
        Some((_, rest)) if rest.starts_with(['\'', '`']) => rest.split(" at row").next()?.to_owned(),
        Some(_) => return None,
        None => message.strip_prefix("Column '")?.split_once("' ")?.0.to_owned(),
    };
    let last = name.rsplit('.').next().unwrap_or(&name);
    Some(last.trim_matches(|c| c == '\'' || c == '`').to_owned()).filter(|n| !n.is_empty())
}

/// After a statement that left warnings: the first that says a value was not stored as sent.
pub(crate) async fn value_changed(conn: &mut Conn) -> Result<Option<ValueWarning>> {
    if conn.get_warnings() == 0 {
        return Ok(None);
    }
    let warnings: Vec<(String, u32, String)> =
        conn.query("SHOW WARNINGS").await.map_err(err("reading the target's warnings"))?;
    Ok(warnings
        .iter()
        .find(|w| VALUE_CHANGED.contains(&w.1))
        .map(|w| ValueWarning { code: w.1, column: warned_column(&w.2) }))
}

/// The error that stops a job whose target did not store a value of `table` as sent while
/// `doing` (a change of the table is reported as such before): retrying would write the same
/// value again. Names the column, never the value.
pub(crate) fn not_stored(table: &str, warning: &ValueWarning, doing: &str) -> EngineError {
    let column = warning.column.as_ref().map(|c| format!(" in column {c}")).unwrap_or_default();
    EngineError::Unrecoverable {
        code: VALUE_NOT_STORED,
        message: format!(
            "the target did not store a value{column} of {table} as the source holds it while {doing} \
             (MariaDB/MySQL warning {}); nothing of it was committed. \
             Fix: make the target column and the target server's settings hold the source's values (compare the \
             column's definition on both sides), then resume the job (spec.paused: true, then false)",
            warning.code
        ),
    }
}

/// Executes `sql` with `params` and returns the rows it affected.
pub async fn exec_affected(conn: &mut Conn, sql: &str, params: Vec<Value>) -> Result<u64, mysql_async::Error> {
    let params = if params.is_empty() { Params::Empty } else { Params::Positional(params) };
    conn.exec_drop(sql, params).await?;
    Ok(conn.affected_rows())
}

#[cfg(test)]
mod tests {
    use super::warned_column;

    #[test]
    fn a_warning_names_its_column_and_not_the_value_it_quotes() {
        assert_eq!(warned_column("Data truncated for column 'note' at row 1").as_deref(), Some("note"));
        assert_eq!(warned_column("Out of range value for column 'n' at row 3").as_deref(), Some("n"));
        assert_eq!(warned_column("Column 'id' cannot be null").as_deref(), Some("id"));
        assert_eq!(
            warned_column("Incorrect uuid value: 'x for column y' for column `shop`.`addr`.`u` at row 1").as_deref(),
            Some("u")
        );
        assert_eq!(warned_column("Truncated incorrect uuid value: 'secret'"), None);
        assert_eq!(warned_column("Truncated incorrect DOUBLE value: 'a for column b'"), None);
    }
}
