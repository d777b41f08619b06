//! The engine-neutral shapes of what moves: tables with their mapping, key ranges, and changes
//! grouped into source transactions.

/// One column of a selected table, with its name on the target.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ColumnDef {
    /// Name on the source.
    pub name: String,
    /// Name on the target (after `columns.rename`).
    pub target_name: String,
    /// The type as the engine writes it in DDL (`numeric(12,2)`, `"public"."mood"`, `int unsigned`).
    pub type_sql: String,
    /// Whether NULL is allowed.
    pub nullable: bool,
    /// Whether the column is transferred (column selection).
    pub selected: bool,
}

/// A selected table: where it is, where it goes, its columns and key.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct TableDef {
    /// Source schema (PostgreSQL) or database (MySQL).
    pub schema: String,
    /// Source table name.
    pub name: String,
    /// Target schema or database.
    pub target_schema: String,
    /// Target table name.
    pub target_name: String,
    /// Every column of the source table, in order, selected or not.
    pub columns: Vec<ColumnDef>,
    /// Positions (in `columns`) of the primary key columns, in key order; empty without a key.
    pub key: Vec<usize>,
    /// Row filter (SQL boolean expression), if any.
    pub filter: Option<String>,
    /// Rows the source statistics estimate.
    pub estimated_rows: u64,
}

impl TableDef {
    /// `schema.name` on the source, for messages and progress.
    pub fn display_name(&self) -> String {
        format!("{}.{}", self.schema, self.name)
    }

    /// `schema.name` on the target.
    pub fn display_target(&self) -> String {
        format!("{}.{}", self.target_schema, self.target_name)
    }

    /// The selected columns, in order.
    pub fn selected(&self) -> impl Iterator<Item = &ColumnDef> {
        self.columns.iter().filter(|c| c.selected)
    }

    /// The key columns, in key order.
    pub fn key_columns(&self) -> impl Iterator<Item = &ColumnDef> {
        self.key.iter().map(|&i| &self.columns[i])
    }
}

/// A half-open range of primary key values `[lo, hi)`; `None` is unbounded. Values are the
/// engine's text form of each key column.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct KeyRange {
    /// Inclusive lower bound.
    pub lo: Option<Vec<String>>,
    /// Exclusive upper bound.
    pub hi: Option<Vec<String>>,
}

impl KeyRange {
    /// The ranges between ascending split points: `[.., b0)`, `[b0, b1)`, …, `[bn, ..)`.
    pub fn between(bounds: Vec<Vec<String>>) -> Vec<KeyRange> {
        let mut ranges = Vec::with_capacity(bounds.len() + 1);
        let mut lo = None;
        for b in bounds {
            ranges.push(KeyRange { lo: lo.take(), hi: Some(b.clone()) });
            lo = Some(b);
        }
        ranges.push(KeyRange { lo, hi: None });
        ranges
    }
}

/// One column value in a change: its text form, raw bytes, an integer, SQL NULL, or
/// (PostgreSQL) a TOASTed value the change left as it was and did not send.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub enum Cell {
    /// SQL NULL.
    Null,
    /// The value in the engine's text form.
    Text(String),
    /// A string or binary value as the column stores it, byte for byte (MySQL family: the
    /// column's own character set, or none for binary columns).
    Bytes(Vec<u8>),
    /// A value that must reach the target as a number, not as text (MySQL family: BIT, and the
    /// member index of an ENUM or bitmask of a SET, which a string would name instead).
    UInt(u64),
    /// Unchanged and not sent; the target keeps what it has.
    Unchanged,
}

/// One row change, on the table at `table` in the job's table list. Rows hold every source
/// column, in order.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Change {
    /// A new row.
    Insert { table: usize, row: Vec<Cell> },
    /// A changed row; `old_key` is set when the key itself changed (the old key values).
    Update { table: usize, old_key: Option<Vec<Cell>>, row: Vec<Cell> },
    /// A removed row, by key (or every column for tables without a key).
    Delete { table: usize, old: Vec<Cell> },
    /// Every row of these tables removed.
    Truncate { tables: Vec<usize> },
    /// A schema change replayed on the target (MySQL family), already written with the
    /// target's names. `tables` are the selected tables it creates or redefines, by index (one
    /// equal to the length of the list so far is a table the statement creates), each with its
    /// target database and name once the statement has run.
    Ddl { statement: String, tables: Vec<(usize, String, String)> },
}

/// The changes of one source transaction, with where it ends in the source's stream.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Transaction {
    /// The changes, in source order.
    pub changes: Vec<Change>,
    /// The position just past the transaction's commit; the checkpoint once it is applied.
    pub end: u64,
    /// Source commit time, microseconds since the Unix epoch.
    pub commit_time_us: i64,
}

/// Transactions applied together in one target transaction, with the checkpoint they reach.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct ChangeBatch {
    /// The transactions, in commit order.
    pub transactions: Vec<Transaction>,
    /// Apply changes idempotently (insert → upsert, delete → delete if present): set while the
    /// stream replays changes the full transfer may already hold.
    pub idempotent: bool,
}

impl ChangeBatch {
    /// The checkpoint the batch reaches: the end of its last transaction.
    pub fn end(&self) -> Option<u64> {
        self.transactions.last().map(|t| t.end)
    }

    /// Number of row changes in the batch.
    pub fn len(&self) -> usize {
        self.transactions.iter().map(|t| t.changes.len()).sum()
    }

    /// Whether the batch holds no change.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}
