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
    /// Row filter, if any: SQL of the source's engine rendered by the catalog from the parsed
    /// spec filter ([`crate::engine::filter::for_table`]), never the spec's text.
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
    /// The columns of a source table changed (PostgreSQL: the stream's Relation message for the
    /// table differs from what the job knows). `columns` is the table's new column list, in
    /// source order, with each column's target name and whether the job transfers it; the rows
    /// of the changes that follow have this layout. `changes` says what changed, for the
    /// applier to replay on the target or to stop on, as `policy.ddl` says.
    /// `key` is the key's columns by their positions in `columns` (a dropped column before a
    /// key column moves it). `layout` is the engine's own record of the new layout, which the
    /// target keeps with the checkpoint so that a restarted job reads the stream with the
    /// layout it has reached.
    Reshape { table: usize, columns: Vec<ColumnDef>, key: Vec<usize>, changes: Vec<ColumnChange>, layout: String },
}

/// One change to a source table's columns, by source column name.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum ColumnChange {
    /// A column was added (position in the new column list).
    Added {
        /// Position in [`Change::Reshape`]'s `columns`.
        column: usize,
        /// The value the rows the table held when the column was added have in it, as a quoted
        /// SQL literal; `None` when they hold NULL.
        existing: Option<String>,
        /// The column's default for new rows, as the source writes it, if any.
        default: Option<String>,
        /// Whether the column is NOT NULL.
        not_null: bool,
        /// Set when the rows the table held got values the change stream does not carry (a
        /// default computed row by row, such as a serial or `random()`): the column cannot be
        /// replayed on the target as it is on the source.
        unreplayable: Option<String>,
    },
    /// A column was dropped (its position in the old column list, and its names).
    Dropped {
        /// Source name.
        name: String,
        /// Target name.
        target_name: String,
        /// Whether the job transferred it.
        selected: bool,
    },
    /// A column's type changed.
    Retyped {
        /// Position in the new column list.
        column: usize,
        /// The type it had.
        was: String,
    },
    /// A column was renamed on the source.
    Renamed {
        /// Position in the new column list.
        column: usize,
        /// Its source name before.
        from: String,
    },
}

impl ColumnChange {
    /// How the change reads in a message: `column b added`, `column a renamed to c`, ….
    pub fn describe(&self, columns: &[ColumnDef]) -> String {
        let name = |i: &usize| columns.get(*i).map_or("?", |c| c.name.as_str()).to_owned();
        match self {
            ColumnChange::Added { column, .. } => {
                let ty = columns.get(*column).map_or("?", |c| c.type_sql.as_str());
                format!("column {} {ty} added", name(column))
            }
            ColumnChange::Dropped { name, .. } => format!("column {name} dropped"),
            ColumnChange::Retyped { column, was } => {
                let ty = columns.get(*column).map_or("?", |c| c.type_sql.as_str());
                format!("column {} changed from {was} to {ty}", name(column))
            }
            ColumnChange::Renamed { column, from } => format!("column {from} renamed to {}", name(column)),
        }
    }
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
    /// Set on a piece of a large source transaction that more pieces follow: the target keeps
    /// its transaction open, and `end` is where the transaction's commit starts (no checkpoint
    /// yet). The last piece has it unset and the real end.
    pub partial: bool,
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

    /// Whether the batch ends in the middle of a source transaction: the target applies it
    /// without committing, and the next batch continues the same target transaction.
    pub fn open(&self) -> bool {
        self.transactions.last().is_some_and(|t| t.partial)
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
