//! Applying binary-log changes to a MySQL/MariaDB target: each batch of source transactions in
//! one target transaction with its checkpoint.
//!
//! Under `overwrite` (and always in the idempotent window after a full transfer) the changes of
//! a batch to a table with a primary key and no other unique index are reduced to each row's
//! final state and written as multi-row deletes and upserts: rows with different keys commute,
//! and the last image of a row is the row. Tables with other unique indexes, tables without a
//! key, and the `ignore`/`stop` policies apply change by change in source order, since there the
//! order or each single outcome matters; but consecutive inserts into one such table go as one
//! multi-row statement, which the server applies row by row in the same order with the same
//! outcome for each row (a duplicate fails the statement as it would fail its row), and so do
//! consecutive deletes by key, which commute (under `stop`, fewer rows deleted than keys is the
//! conflict a single delete finding no row would be).
//!
//! Each statement shape (table, kind, rows) is prepared once on the target and then executed by
//! id, so no statement text is sent, parsed or looked up per execution.
//!
//! A large source transaction arrives in pieces ([`ChangeBatch::open`]): each is applied in the
//! target transaction left open by the one before, and only the piece that ends the source
//! transaction commits, with its checkpoint. A worker that stops in between leaves nothing: the
//! target rolls the open transaction back, and the stream reads the source transaction again
//! from its start.
//!
//! DDL commits implicitly in MySQL, so a batch is cut around it: the changes before are
//! committed with their checkpoint, the statement runs, and its own checkpoint follows. The
//! DDL's end is recorded before it runs; a restart that replays it tolerates the errors of a
//! statement that already took effect.
//!
//! A target table dropped or altered by hand stops the job before the batch that meets it
//! commits ([`crate::engine::drift`]): on an error of a statement, and on a warning that a value
//! was cut or converted (the writing sessions are not strict, so a column narrowed by hand would
//! otherwise take cut values without an error), the applier compares the table with how it was
//! when the applier started. A DDL it replays itself becomes the new description.

use std::collections::HashMap;

use mysql_async::prelude::Queryable;
use mysql_async::{Conn, Params, Statement, Value};

use super::catalog::{self, ColumnKind, MyTable};
use super::target::{exec_affected, not_stored, qualified, value_changed};
use super::values::param;
use crate::api::ConflictPolicy;
use crate::engine::apply::ChangeTarget;
use crate::engine::drift::{self, Shape};
use crate::engine::error::{Describe, EngineError, Result, Side};
use crate::engine::model::{Cell, Change, ChangeBatch};
use crate::engine::redact::{self, ServerMessage};
use crate::engine::sql::my_ident;

const T: Side = Side::Target;

/// Most rows in one multi-row statement.
const MAX_ROWS: usize = 256;

/// Most parameters of one multi-row statement: the parameter list of a statement is freed when
/// it has run, and glibc's allocator sweeps all its small free chunks at every free of 64 KiB
/// or more (`malloc_consolidate`), at 32 bytes a parameter.
const MANY_PARAMS: usize = 2_000;

/// Server errors a replayed DDL meets when it already took effect: table exists, unknown table,
/// duplicate column, duplicate key name, cannot drop column or key, no such table, unknown column.
const ALREADY_DONE: [u16; 7] = [1050, 1051, 1060, 1061, 1091, 1146, 1054];

/// A target table's columns as `information_schema` lists them; `None` when it does not exist.
async fn shape(conn: &mut Conn, db: &str, table: &str) -> std::result::Result<Option<Shape>, mysql_async::Error> {
    let columns: Vec<(String, String)> = conn
        .exec(
            "SELECT COLUMN_NAME, COLUMN_TYPE FROM information_schema.COLUMNS WHERE TABLE_SCHEMA = ? AND TABLE_NAME = ? \
             ORDER BY ORDINAL_POSITION",
            (db, table),
        )
        .await?;
    Ok((!columns.is_empty()).then_some(Shape { identity: None, columns }))
}

/// A written column: where its value is in the source row, its target name, and how its value
/// is bound.
#[derive(Clone, Debug)]
struct Col {
    /// Position in the source row.
    at: usize,
    /// Target name, unquoted.
    name: String,
    /// The placeholder expression.
    placeholder: String,
    /// Bytes in the column's own character set: sent as hex for `UNHEX`.
    hex: bool,
}

impl Col {
    /// The column's value in `row` as its parameter.
    fn bind(&self, row: &[Cell]) -> Value {
        bind(self.hex, row.get(self.at))
    }
}

/// What the applier needs of a table, in target names.
#[derive(Clone, Debug)]
struct Table {
    name: String,
    /// Target database and table, unquoted.
    db: String,
    table: String,
    /// Written columns.
    columns: Vec<Col>,
    /// Key columns, in key order.
    key: Vec<Col>,
    /// Changes may be reduced to final row states.
    compactable: bool,
}

impl Table {
    fn new(t: &MyTable) -> Table {
        let columns: Vec<Col> = t
            .written()
            .map(|(i, c, m)| {
                let utf8 =
                    m.charset.as_deref().is_none_or(|cs| cs.starts_with("utf8") || cs == "ascii" || cs == "binary");
                // Bytes in the column's own character set: sent as hex, since the server would
                // read a string parameter in the session's character set. So are the binary
                // log's 16 or 4 bytes of a MariaDB UUID, INET6 or INET4, which as text would be
                // a malformed value (stored wrong, or matching no row).
                let address = matches!(m.data_type.as_str(), "uuid" | "inet6" | "inet4");
                let hex = (m.kind == ColumnKind::Text && !utf8) || address;
                let placeholder = if address {
                    "UNHEX(?)".to_owned()
                } else if hex {
                    format!("CONVERT(UNHEX(?) USING {})", m.charset.as_deref().unwrap_or("binary"))
                } else {
                    "?".to_owned()
                };
                Col { at: i, name: c.target_name.clone(), placeholder, hex }
            })
            .collect();
        let key = if t.def.key_columns().all(|c| c.selected) {
            t.def
                .key
                .iter()
                .map(|&k| {
                    columns.iter().find(|c| c.at == k).cloned().unwrap_or_else(|| Col {
                        at: k,
                        name: t.def.columns[k].target_name.clone(),
                        placeholder: "?".to_owned(),
                        hex: false,
                    })
                })
                .collect()
        } else {
            Vec::new()
        };
        let compactable = !key.is_empty() && !t.indexes.iter().any(|ix| ix.unique);
        Table {
            name: qualified(&t.def.target_schema, &t.def.target_name),
            db: t.def.target_schema.clone(),
            table: t.def.target_name.clone(),
            columns,
            key,
            compactable,
        }
    }

    fn key_ref<'a>(&self, row: &'a [Cell]) -> Vec<&'a Cell> {
        self.key.iter().map(|c| row.get(c.at).unwrap_or(&NULL)).collect()
    }

    /// Appends the parameters of `row`'s written columns.
    fn push_values(&self, row: &[Cell], out: &mut Vec<Value>) {
        out.extend(self.columns.iter().map(|c| c.bind(row)));
    }

    /// Appends the parameters that match `row`: its key, or every written column without one.
    fn push_match(&self, row: &[Cell], out: &mut Vec<Value>) {
        let columns = if self.key.is_empty() { &self.columns } else { &self.key };
        out.extend(columns.iter().map(|c| c.bind(row)));
    }

    /// About how many bytes `row`'s parameters take in a statement packet.
    fn row_size(&self, row: &[Cell]) -> usize {
        self.columns
            .iter()
            .map(|c| match row.get(c.at) {
                Some(Cell::Bytes(b)) => 2 * b.len() + 9,
                Some(Cell::Text(t)) => t.len() + 9,
                _ => 16,
            })
            .sum()
    }

    /// The text of a statement of `kind` for `rows` rows.
    fn sql(&self, kind: Kind, rows: usize) -> String {
        match kind {
            Kind::Upsert => self.insert_sql("INSERT", rows, true),
            Kind::Insert => self.insert_sql("INSERT", rows, false),
            Kind::InsertIgnore => self.insert_sql("INSERT IGNORE", rows, false),
            Kind::Delete => self.delete_sql(rows),
            Kind::Update => self.update_sql(),
        }
    }

    fn insert_sql(&self, verb: &str, rows: usize, upsert: bool) -> String {
        let cols: Vec<String> = self.columns.iter().map(|c| my_ident(&c.name)).collect();
        let one = format!("({})", self.columns.iter().map(|c| c.placeholder.as_str()).collect::<Vec<_>>().join(", "));
        let mut sql = format!("{verb} INTO {} ({}) VALUES {}", self.name, cols.join(", "), vec![one; rows].join(", "));
        if upsert {
            let set: Vec<String> = cols.iter().map(|c| format!("{c} = VALUES({c})")).collect();
            sql.push_str(&format!(" ON DUPLICATE KEY UPDATE {}", set.join(", ")));
        }
        sql
    }

    /// `WHERE` matching one row: by key, or by every written column (`<=>`, NULL-safe).
    fn match_sql(&self) -> String {
        if self.key.is_empty() {
            let parts: Vec<String> =
                self.columns.iter().map(|c| format!("{} <=> {}", my_ident(&c.name), c.placeholder)).collect();
            format!("{} LIMIT 1", parts.join(" AND "))
        } else {
            let parts: Vec<String> =
                self.key.iter().map(|c| format!("{} = {}", my_ident(&c.name), c.placeholder)).collect();
            parts.join(" AND ")
        }
    }

    fn update_sql(&self) -> String {
        let set: Vec<String> =
            self.columns.iter().map(|c| format!("{} = {}", my_ident(&c.name), c.placeholder)).collect();
        format!("UPDATE {} SET {} WHERE {}", self.name, set.join(", "), self.match_sql())
    }

    /// Deletes `rows` rows: by key (a list of keys for a one-column key), or one row matched by
    /// every column when there is no key.
    fn delete_sql(&self, rows: usize) -> String {
        if rows == 1 || self.key.is_empty() {
            return format!("DELETE FROM {} WHERE {}", self.name, self.match_sql());
        }
        if let [k] = self.key.as_slice() {
            let list = vec![k.placeholder.as_str(); rows].join(", ");
            return format!("DELETE FROM {} WHERE {} IN ({list})", self.name, my_ident(&k.name));
        }
        let one = format!("({})", self.match_sql());
        format!("DELETE FROM {} WHERE {}", self.name, vec![one; rows].join(" OR "))
    }
}

/// The final state of each row a batch touched, per compactable table: by key, the row's last
/// image (`None`: deleted), borrowed from the batch.
type Net<'a> = HashMap<usize, HashMap<Vec<&'a Cell>, Option<&'a [Cell]>>>;

/// Consecutive inserts, or consecutive deletes by key, of one table that cannot be reduced,
/// written together: the server applies a multi-row statement's rows in order with the outcome
/// each would have alone, and deletes by key commute.
struct Run<'a> {
    table: usize,
    delete: bool,
    rows: Vec<&'a [Cell]>,
}

/// The value of a column missing from a row image.
static NULL: Cell = Cell::Null;

/// Which statement a prepared statement is.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
enum Kind {
    Upsert,
    Insert,
    InsertIgnore,
    Delete,
    Update,
}

/// Most statements the applier keeps prepared; past it they are closed and prepared again as
/// needed. Below the connection's statement cache (`connect`), which would otherwise close the
/// least recently prepared of them behind the applier's back.
const MAX_PREPARED: usize = 256;

/// Applies batches of changes to a MySQL/MariaDB target.
pub struct Applier {
    conn: Conn,
    job: String,
    tables: Vec<Table>,
    conflict: ConflictPolicy,
    ddl_attempted: Option<u64>,
    in_transaction: bool,
    /// The largest statement to send, read from the server at the first flush.
    packet: Option<usize>,
    /// Each table as the target described it when the applier started or replayed a DDL on it
    /// (`None`: it did not exist then).
    shapes: Vec<Option<Shape>>,
    /// Statements prepared on the target, by table, kind and rows: executed by id, without
    /// their text being sent, parsed or looked up again.
    statements: HashMap<(usize, Kind, usize), Statement>,
    /// The open target transaction holds the first pieces of a source transaction.
    continuing: bool,
}

impl Applier {
    /// An applier writing `tables` on `conn` for `job`; `ddl_attempted` is the end of a DDL that
    /// may already have run (from the bookkeeping). It describes the target tables as they are
    /// now; one still missing may come with a DDL the stream replays.
    pub async fn open(
        mut conn: Conn,
        job: &str,
        tables: &[MyTable],
        conflict: ConflictPolicy,
        ddl_attempted: Option<u64>,
    ) -> Result<Self> {
        let tables: Vec<Table> = tables.iter().map(Table::new).collect();
        let mut shapes = Vec::with_capacity(tables.len());
        for t in &tables {
            let found = shape(&mut conn, &t.db, &t.table).await.map_err(|e| {
                EngineError::query(T, format!("describing target table {}.{}", t.db, t.table), e.describe())
            })?;
            shapes.push(found);
        }
        Ok(Applier {
            conn,
            job: job.to_owned(),
            tables,
            conflict,
            ddl_attempted,
            in_transaction: false,
            packet: None,
            shapes,
            statements: HashMap::new(),
            continuing: false,
        })
    }

    /// After `cause` met `table`: the error that names a hand-made change to it, if the target
    /// shows one.
    async fn diagnose(&mut self, table: usize, cause: &str) -> Option<EngineError> {
        let t = &self.tables[table];
        let now = shape(&mut self.conn, &t.db, &t.table).await.ok()?;
        let written: Vec<&str> = t.columns.iter().map(|c| c.name.as_str()).collect();
        let before = self.shapes.get(table).and_then(Option::as_ref);
        let display = format!("{}.{}", t.db, t.table);
        drift::compare(&written, before, now.as_ref(), true).map(|d| d.error(&display, Some(cause)))
    }

    /// Ends the open transaction without committing it.
    async fn rollback(&mut self) {
        if self.in_transaction {
            let _ = self.conn.query_drop("ROLLBACK").await;
            self.in_transaction = false;
        }
    }

    /// After a statement on `table` left warnings: stops the job if a value was not stored as
    /// sent — naming the change of the table that caused it, or, when the table is as the job
    /// found it, the warning (codes only: the messages may quote values).
    async fn check_warnings(&mut self, table: usize) -> Result<()> {
        let Some(warning) = value_changed(&mut self.conn).await? else { return Ok(()) };
        let drift = self.diagnose(table, &format!("MariaDB/MySQL warning {}", warning.code)).await;
        self.rollback().await;
        Err(drift.unwrap_or_else(|| not_stored(&self.tables[table].name, &warning, "applying a change")))
    }

    fn fail(&self, what: impl Into<String>) -> impl FnOnce(mysql_async::Error) -> EngineError {
        let what = what.into();
        move |e| EngineError::query(T, what, e.describe())
    }

    async fn begin(&mut self) -> Result<()> {
        if !self.in_transaction {
            self.conn.query_drop("START TRANSACTION").await.map_err(self.fail("starting a transaction"))?;
            self.in_transaction = true;
        }
        Ok(())
    }

    async fn commit_at(&mut self, end: u64) -> Result<()> {
        self.begin().await?;
        self.conn
            .exec_drop(
                "UPDATE `_ferry`.`jobs` SET checkpoint_pos = ?, ddl_attempted = NULL WHERE job = ?",
                (end, &self.job),
            )
            .await
            .map_err(self.fail("moving the checkpoint"))?;
        self.conn.query_drop("COMMIT").await.map_err(self.fail("committing a batch"))?;
        self.in_transaction = false;
        Ok(())
    }

    /// Runs a statement text that writes `table`.
    async fn exec(&mut self, table: usize, sql: &str, params: Vec<Value>) -> Result<u64> {
        let result = exec_affected(&mut self.conn, sql, params).await;
        self.outcome(table, result).await
    }

    /// Runs the statement of `kind` for `rows` rows of `table`, prepared once.
    async fn run(&mut self, table: usize, kind: Kind, rows: usize, params: Vec<Value>) -> Result<u64> {
        let result = match self.prepared(table, kind, rows).await {
            Ok(statement) => {
                let params = if params.is_empty() { Params::Empty } else { Params::Positional(params) };
                self.conn.exec_drop(&statement, params).await.map(|()| self.conn.affected_rows())
            }
            Err(e) => Err(e),
        };
        self.outcome(table, result).await
    }

    /// The statement of `kind` for `rows` rows of `table`, prepared on first use.
    async fn prepared(
        &mut self,
        table: usize,
        kind: Kind,
        rows: usize,
    ) -> std::result::Result<Statement, mysql_async::Error> {
        if let Some(statement) = self.statements.get(&(table, kind, rows)) {
            return Ok(statement.clone());
        }
        if self.statements.len() >= MAX_PREPARED {
            self.close_statements(|_| true).await;
        }
        let statement = self.conn.prep(self.tables[table].sql(kind, rows)).await?;
        self.statements.insert((table, kind, rows), statement.clone());
        Ok(statement)
    }

    /// Closes the prepared statements of the tables `which` picks.
    async fn close_statements(&mut self, which: impl Fn(usize) -> bool) {
        let keys: Vec<(usize, Kind, usize)> = self.statements.keys().filter(|k| which(k.0)).copied().collect();
        for key in keys {
            if let Some(statement) = self.statements.remove(&key) {
                // A failure here is a broken connection, which the next statement reports.
                let _ = self.conn.close(statement).await;
            }
        }
    }

    /// What a statement on `table` came to: its affected rows, or the error that names a
    /// conflict or a hand-made change to the table.
    async fn outcome(&mut self, table: usize, result: std::result::Result<u64, mysql_async::Error>) -> Result<u64> {
        match result {
            Ok(n) => {
                if self.conn.get_warnings() > 0 {
                    self.check_warnings(table).await?;
                }
                Ok(n)
            }
            Err(mysql_async::Error::Server(s)) if s.code == 1062 => Err(EngineError::Conflict {
                table: self.tables[table].name.clone(),
                message: redact::mysql_short(s.code, &s.message),
            }),
            Err(e) => {
                if let mysql_async::Error::Server(s) = &e
                    && let Some(drift) = self.diagnose(table, &format!("MariaDB/MySQL error {}", s.code)).await
                {
                    self.rollback().await;
                    return Err(drift);
                }
                Err(EngineError::query(T, "applying a change", e.describe()))
            }
        }
    }

    fn conflict(&self, table: usize, what: &str) -> EngineError {
        EngineError::Conflict { table: self.tables[table].name.clone(), message: what.into() }
    }

    /// The statement inserts run as: plain where a duplicate is an error (no key, or `stop`),
    /// otherwise an upsert (`overwrite`) or an insert that skips duplicates (`ignore`).
    fn insert_kind(&self, table: usize, overwrite: bool) -> Kind {
        let stop = !overwrite && self.conflict == ConflictPolicy::Stop;
        if self.tables[table].key.is_empty() || stop {
            Kind::Insert
        } else if overwrite {
            Kind::Upsert
        } else {
            Kind::InsertIgnore
        }
    }

    /// Applies one change in order (tables that cannot be compacted, `ignore` and `stop`).
    async fn apply_one(&mut self, change: &Change, overwrite: bool) -> Result<()> {
        let stop = !overwrite && self.conflict == ConflictPolicy::Stop;
        match change {
            Change::Insert { table, row } => {
                let kind = self.insert_kind(*table, overwrite);
                let t = &self.tables[*table];
                let mut params = Vec::with_capacity(t.columns.len());
                t.push_values(row, &mut params);
                self.run(*table, kind, 1, params).await?;
            }
            Change::Update { table, old_key, row } => {
                let t = &self.tables[*table];
                let old = old_key.as_deref().unwrap_or(row);
                if overwrite && !t.key.is_empty() {
                    if t.key_ref(old) != t.key_ref(row) {
                        let mut params = Vec::with_capacity(t.key.len());
                        t.push_match(old, &mut params);
                        self.run(*table, Kind::Delete, 1, params).await?;
                    }
                    let t = &self.tables[*table];
                    let mut params = Vec::with_capacity(t.columns.len());
                    t.push_values(row, &mut params);
                    self.run(*table, Kind::Upsert, 1, params).await?;
                } else {
                    let mut params = Vec::with_capacity(2 * t.columns.len());
                    t.push_values(row, &mut params);
                    t.push_match(old, &mut params);
                    let n = self.run(*table, Kind::Update, 1, params).await?;
                    if n == 0 && stop {
                        return Err(self.conflict(*table, "an update found no row to change"));
                    }
                }
            }
            Change::Delete { table, old } => {
                let t = &self.tables[*table];
                let mut params = Vec::with_capacity(t.columns.len());
                t.push_match(old, &mut params);
                let n = self.run(*table, Kind::Delete, 1, params).await?;
                if n == 0 && stop {
                    return Err(self.conflict(*table, "a delete found no row to remove"));
                }
            }
            Change::Truncate { tables } => {
                for &i in tables {
                    let sql = format!("DELETE FROM {}", self.tables[i].name);
                    self.exec(i, &sql, Vec::new()).await?;
                }
            }
            // The MySQL family's stream carries column changes as DDL statements.
            Change::Ddl { .. } | Change::Reshape { .. } => {}
        }
        Ok(())
    }

    /// Records a change in the net state of its table.
    fn reduce<'a>(&self, net: &mut Net<'a>, change: &'a Change) {
        match change {
            Change::Insert { table, row } => {
                net.entry(*table).or_default().insert(self.tables[*table].key_ref(row), Some(row));
            }
            Change::Update { table, old_key, row } => {
                let t = &self.tables[*table];
                let rows = net.entry(*table).or_default();
                let key = t.key_ref(row);
                if let Some(old) = old_key {
                    let old = t.key_ref(old);
                    if old != key {
                        rows.insert(old, None);
                    }
                }
                rows.insert(key, Some(row));
            }
            Change::Delete { table, old } => {
                net.entry(*table).or_default().insert(self.tables[*table].key_ref(old), None);
            }
            Change::Truncate { .. } | Change::Ddl { .. } | Change::Reshape { .. } => {}
        }
    }

    /// The largest statement to send.
    async fn budget(&mut self) -> usize {
        match self.packet {
            Some(p) => p,
            None => *self.packet.insert(super::connect::packet_budget(&mut self.conn).await),
        }
    }

    /// Writes `rows` of `table` with multi-row statements of `kind`, in order: runs that fit a
    /// packet, each in few statement sizes.
    async fn write_rows(&mut self, table: usize, kind: Kind, rows: &[&[Cell]]) -> Result<()> {
        let budget = self.budget().await;
        let mut rest = rows;
        while !rest.is_empty() {
            let t = &self.tables[table];
            let most = rows_per_statement(t.columns.len());
            let run = fitting(rest.iter().take(most).map(|r| t.row_size(r)), budget);
            let (now, later) = rest.split_at(run);
            rest = later;
            let mut now = now;
            for group in sized_groups(run, most) {
                let (these, others) = now.split_at(group);
                now = others;
                let t = &self.tables[table];
                let mut params = Vec::with_capacity(group * t.columns.len());
                for row in these {
                    t.push_values(row, &mut params);
                }
                self.run(table, kind, group, params).await?;
            }
        }
        Ok(())
    }

    /// Deletes the rows of `table` with these keys (each in key order) in multi-row statements;
    /// returns how many rows were there to delete.
    async fn delete_keys(&mut self, table: usize, keys: &[Vec<&Cell>]) -> Result<u64> {
        let mut deleted = 0;
        let mut rest = keys;
        let most = rows_per_statement(self.tables[table].key.len());
        for group in sized_groups(keys.len(), most) {
            let (these, others) = rest.split_at(group);
            rest = others;
            let t = &self.tables[table];
            let mut params = Vec::with_capacity(group * t.key.len());
            for key in these {
                params.extend(t.key.iter().zip(key).map(|(c, &cell)| bind(c.hex, Some(cell))));
            }
            deleted += self.run(table, Kind::Delete, group, params).await?;
        }
        Ok(deleted)
    }

    /// Writes the inserts or deletes gathered in `run`.
    async fn flush_run(&mut self, run: &mut Option<Run<'_>>, overwrite: bool) -> Result<()> {
        let Some(Run { table, delete, rows }) = run.take() else { return Ok(()) };
        if delete {
            let t = &self.tables[table];
            let keys: Vec<Vec<&Cell>> = rows.iter().map(|r| t.key_ref(r)).collect();
            let deleted = self.delete_keys(table, &keys).await?;
            // Fewer rows deleted than deletes: one of them found no row (or a key came twice,
            // where the second delete would have found none).
            if deleted < keys.len() as u64 && !overwrite && self.conflict == ConflictPolicy::Stop {
                return Err(self.conflict(table, "a delete found no row to remove"));
            }
            return Ok(());
        }
        let kind = self.insert_kind(table, overwrite);
        self.write_rows(table, kind, &rows).await
    }

    /// Writes the net state: deletes first (a key may move to where a deleted row was), then
    /// upserts, in multi-row statements of power-of-two sizes so few statements are prepared.
    async fn flush(&mut self, net: &mut Net<'_>) -> Result<()> {
        for (table, rows) in net.drain() {
            let (mut gone, mut present) = (Vec::new(), Vec::new());
            for (key, row) in rows {
                match row {
                    Some(row) => present.push(row),
                    None => gone.push(key),
                }
            }
            self.delete_keys(table, &gone).await?;
            self.write_rows(table, Kind::Upsert, &present).await?;
        }
        Ok(())
    }

    /// Runs a DDL statement and takes on the tables it (re)defines.
    async fn ddl(&mut self, statement: &str, tables: &[(usize, String, String)], end: u64) -> Result<()> {
        let replay = self.ddl_attempted.is_some_and(|a| end <= a);
        self.conn
            .exec_drop("UPDATE `_ferry`.`jobs` SET ddl_attempted = ? WHERE job = ?", (end, &self.job))
            .await
            .map_err(self.fail("recording a DDL"))?;
        match self.conn.query_drop(statement).await {
            Ok(()) => {}
            Err(mysql_async::Error::Server(s)) if replay && ALREADY_DONE.contains(&s.code) => {
                tracing::info!(code = s.code, "replayed DDL had already taken effect");
            }
            Err(e) => return Err(EngineError::query(T, "replaying a DDL statement", e.describe())),
        }
        for (index, db, name) in tables {
            let def =
                catalog::describe(&mut self.conn, db, name, db.clone(), name.clone(), None).await.map_err(|e| {
                    let message = ServerMessage::new(e.text(false), e.text(true));
                    EngineError::query(T, format!("describing {db}.{name} after a DDL"), message)
                })?;
            let table = Table::new(&def);
            self.close_statements(|t| t == *index).await;
            match self.tables.get_mut(*index) {
                Some(slot) => *slot = table,
                None => self.tables.push(table),
            }
            let now = shape(&mut self.conn, db, name)
                .await
                .map_err(|e| EngineError::query(T, format!("describing {db}.{name} after a DDL"), e.describe()))?;
            match self.shapes.get_mut(*index) {
                Some(slot) => *slot = now,
                None => self.shapes.push(now),
            }
        }
        Ok(())
    }

    /// Applies `batch` and moves the checkpoint to its end; a batch that ends in the middle of a
    /// source transaction is applied in a target transaction left open for the next batch.
    pub async fn apply_batch(&mut self, batch: &ChangeBatch) -> Result<()> {
        let overwrite = batch.idempotent || self.conflict == ConflictPolicy::Overwrite;
        let mut net = Net::new();
        let mut run: Option<Run<'_>> = None;
        let mut last_end = None;
        for t in &batch.transactions {
            for change in &t.changes {
                if let Change::Ddl { statement, tables } = change {
                    if self.continuing {
                        self.rollback().await;
                        return Err(EngineError::Stream(
                            "a DDL statement in the middle of a large transaction whose first part is already \
                             applied: the job cannot cut the target transaction there"
                                .into(),
                        ));
                    }
                    self.flush_run(&mut run, overwrite).await?;
                    self.flush(&mut net).await?;
                    if let Some(end) = last_end {
                        self.commit_at(end).await?;
                    } else if self.in_transaction {
                        self.conn.query_drop("COMMIT").await.map_err(self.fail("committing a batch"))?;
                        self.in_transaction = false;
                    }
                    self.ddl(statement, tables, t.end).await?;
                    continue;
                }
                self.begin().await?;
                // A change that joins the run of its table and kind, if it can: inserts, and
                // deletes by key.
                let joins = match change {
                    Change::Insert { table, row } => Some((*table, false, row)),
                    Change::Delete { table, old } if self.tables.get(*table).is_some_and(|t| !t.key.is_empty()) => {
                        Some((*table, true, old))
                    }
                    _ => None,
                };
                let table = match change {
                    Change::Insert { table, .. } | Change::Update { table, .. } | Change::Delete { table, .. } => {
                        Some(*table)
                    }
                    _ => None,
                };
                match (table, joins) {
                    (Some(i), _) if overwrite && self.tables.get(i).is_some_and(|t| t.compactable) => {
                        self.reduce(&mut net, change)
                    }
                    (_, Some((i, delete, row))) if i < self.tables.len() => match &mut run {
                        Some(r) if r.table == i && r.delete == delete => r.rows.push(row),
                        _ => {
                            self.flush_run(&mut run, overwrite).await?;
                            run = Some(Run { table: i, delete, rows: vec![row] });
                        }
                    },
                    _ => {
                        self.flush_run(&mut run, overwrite).await?;
                        self.apply_one(change, overwrite).await?
                    }
                }
            }
            self.continuing = t.partial;
            if !t.partial {
                last_end = Some(t.end);
            }
        }
        self.flush_run(&mut run, overwrite).await?;
        self.flush(&mut net).await?;
        if batch.open() {
            // The rest of the source transaction follows in the next batch.
            return Ok(());
        }
        if let Some(end) = batch.end() {
            self.commit_at(end).await?;
        }
        Ok(())
    }
}

impl ChangeTarget for Applier {
    async fn apply(&mut self, batch: &ChangeBatch, _commit_time_us: Option<i64>) -> Result<()> {
        self.apply_batch(batch).await
    }
}

/// A cell as a parameter; `as_hex` for the `UNHEX` of a non-UTF-8 text column.
fn bind(as_hex: bool, cell: Option<&Cell>) -> Value {
    match cell {
        Some(Cell::Bytes(b)) if as_hex => Value::Bytes(hex(b)),
        Some(c) => param(c),
        None => Value::NULL,
    }
}

/// `bytes` as upper-case hexadecimal digits, two per byte (what `UNHEX` reads back).
fn hex(bytes: &[u8]) -> Vec<u8> {
    const DIGITS: &[u8; 16] = b"0123456789ABCDEF";
    let mut out = Vec::with_capacity(bytes.len() * 2);
    for b in bytes {
        out.push(DIGITS[usize::from(b >> 4)]);
        out.push(DIGITS[usize::from(b & 0x0f)]);
    }
    out
}

/// How many of the rows whose sizes `sizes` gives, taken in order, fit `budget` bytes together;
/// at least one, since a row larger than the budget goes alone.
fn fitting(sizes: impl Iterator<Item = usize>, budget: usize) -> usize {
    let mut bytes = 0;
    let mut n = 0;
    for size in sizes {
        bytes += size;
        if n > 0 && bytes > budget {
            break;
        }
        n += 1;
    }
    n
}

/// The most rows of `columns` parameters each one statement takes: a power of two, at most
/// [`MAX_ROWS`], within [`MANY_PARAMS`] parameters when a row allows it (and so always within
/// the protocol's 65,535, a table having at most 4,096 columns).
fn rows_per_statement(columns: usize) -> usize {
    let most = (MANY_PARAMS / columns.max(1)).clamp(1, MAX_ROWS);
    1 << most.ilog2()
}

/// Splits `n` rows into statement sizes: as many of `most` (a power of two) as fit, then
/// smaller powers of two.
fn sized_groups(n: usize, most: usize) -> Vec<usize> {
    let mut out = vec![most; n / most];
    let rest = n % most;
    let mut bit = most;
    while bit > 0 {
        if rest & bit != 0 {
            out.push(bit);
        }
        bit >>= 1;
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn hex_writes_two_upper_case_digits_per_byte() {
        assert_eq!(hex(&[0x00, 0x0f, 0xa5, 0xff]), b"000FA5FF".to_vec());
        assert!(hex(&[]).is_empty());
    }

    #[test]
    fn rows_are_cut_into_runs_that_fit_a_packet() {
        assert_eq!(fitting([125, 125, 1025, 35].into_iter(), 300), 2);
        assert_eq!(fitting([1025, 35].into_iter(), 300), 1);
        assert_eq!(fitting([10, 10, 10].into_iter(), 10_000), 3);
        assert_eq!(fitting(std::iter::empty(), 300), 0);
    }

    #[test]
    fn rows_split_into_few_statement_sizes() {
        assert_eq!(sized_groups(0, 256), Vec::<usize>::new());
        assert_eq!(sized_groups(1, 256), vec![1]);
        assert_eq!(sized_groups(600, 256), vec![256, 256, 64, 16, 8]);
        assert_eq!(sized_groups(600, 128), vec![128, 128, 128, 128, 64, 16, 8]);
        assert_eq!(sized_groups(600, 128).iter().sum::<usize>(), 600);
    }

    #[test]
    fn statements_keep_their_parameter_lists_small() {
        assert_eq!(rows_per_statement(1), 256);
        assert_eq!(rows_per_statement(12), 128);
        assert_eq!(rows_per_statement(100), 16);
        assert_eq!(rows_per_statement(3_000), 1);
        assert_eq!(rows_per_statement(0), 256);
    }
}
