//! The MySQL family's binary-log stream as a change source for the PostgreSQL applier: each
//! row's cells, as the MySQL stream decodes them (numbers, ENUM indexes, SET bitmasks, BIT
//! values, text in its column's character set), are converted into the PostgreSQL text form the
//! applier binds (`$n::text::type`), by the same mapping as the full transfer ([`super::types`]).
//!
//! Source DDL on a selected table that `policy.ddl` lets through is translated for PostgreSQL
//! ([`super::ddl`]), and the conversions follow the table's new columns; a statement that
//! cannot be translated stops the job, naming it.

use std::time::Duration;

use crate::engine::apply::ChangeSource;
use crate::engine::error::{EngineError, Result};
use crate::engine::model::{Cell, Change, ColumnDef, Transaction};
use crate::engine::mysql::catalog::MyTable;
use crate::engine::mysql::stream::MyChanges;
use crate::engine::postgres::catalog::PgTable;

use super::ddl;
use super::structure::TablePlan;
use super::types::{Conv, ValueProblem, map_type, zero_date_value};
use crate::api::ZeroDatePolicy;

/// How one source column's stream cells become PostgreSQL text.
#[derive(Clone, Debug)]
pub struct ColumnConv {
    /// Source name.
    pub name: String,
    /// The conversion.
    pub conv: Conv,
    /// Whether the target column takes NULL (under `policy.zeroDates: null` a zero date becomes
    /// NULL there).
    pub nullable: bool,
    /// An `ENUM`'s labels (its cells are label numbers).
    pub enum_labels: Option<Vec<String>>,
    /// A `SET`'s members (its cells are bitmasks).
    pub set_members: Option<Vec<String>>,
    /// The text's character set when it is not UTF-8.
    pub encoding: Option<&'static encoding_rs::Encoding>,
    /// Whether the target column has the spec's type (`columns.targetTypes`), which the
    /// stream's DDL translation does not redefine.
    pub overridden: bool,
}

/// The encoding of a MySQL character set other than UTF-8, if it is one Ferry can decode.
pub fn encoding_of(charset: &str) -> Option<&'static encoding_rs::Encoding> {
    let label = match charset.to_ascii_lowercase().as_str() {
        // MySQL's latin1 is Windows-1252.
        "latin1" => "windows-1252",
        "latin2" => "iso-8859-2",
        "latin5" => "iso-8859-9",
        "latin7" => "iso-8859-13",
        "greek" => "iso-8859-7",
        "hebrew" => "iso-8859-8",
        "cp1250" => "windows-1250",
        "cp1251" => "windows-1251",
        "cp1256" => "windows-1256",
        "cp1257" => "windows-1257",
        "cp866" => "ibm866",
        "koi8r" => "koi8-r",
        "koi8u" => "koi8-u",
        "sjis" | "cp932" => "shift_jis",
        "ujis" | "eucjpms" => "euc-jp",
        "gbk" | "gb2312" => "gbk",
        "gb18030" => "gb18030",
        "big5" => "big5",
        "euckr" => "euc-kr",
        "ucs2" | "utf16" => "utf-16be",
        "utf16le" => "utf-16le",
        _ => return None,
    };
    encoding_rs::Encoding::for_label(label.as_bytes())
}

/// Whether a MySQL date text (`YYYY-MM-DD…`) is a zero date or has a zero part.
fn zero_date(text: &str) -> bool {
    text.get(0..4) == Some("0000") || text.get(5..7) == Some("00") || text.get(8..10) == Some("00")
}

impl ColumnConv {
    /// The cell's text: numbers and text as they come.
    fn text(cell: Cell) -> String {
        match cell {
            Cell::Text(s) => s,
            Cell::Bytes(b) => String::from_utf8_lossy(&b).into_owned(),
            Cell::UInt(u) => u.to_string(),
            Cell::Null | Cell::Unchanged => String::new(),
        }
    }

    fn convert(&self, cell: Cell, zero_dates: ZeroDatePolicy) -> std::result::Result<Cell, ValueProblem> {
        if matches!(cell, Cell::Null | Cell::Unchanged) {
            return Ok(cell);
        }
        let unexpected = |cell: &Cell| {
            ValueProblem::Unexpected(format!(
                "{:?} from {}",
                self.conv,
                match cell {
                    Cell::Text(_) => "text",
                    Cell::Bytes(_) => "bytes",
                    _ => "a number",
                }
            ))
        };
        let text = match (self.conv, cell) {
            (Conv::Bool, Cell::UInt(u)) => (if u != 0 { "t" } else { "f" }).to_owned(),
            (Conv::Bits(n), Cell::UInt(u)) => format!("{u:0width$b}", width = n as usize),
            (Conv::Year, cell) => {
                let t = Self::text(cell);
                t.trim_start_matches('0').parse::<u32>().unwrap_or(0).to_string()
            }
            (Conv::Date | Conv::DateTime | Conv::Timestamp, cell) => {
                let t = Self::text(cell);
                if zero_date(&t) {
                    return match zero_date_value(zero_dates, self.nullable, || format!("'{t}'"))? {
                        None => Ok(Cell::Null),
                        Some(sentinel) => Ok(Cell::Text(sentinel.to_owned())),
                    };
                }
                if self.conv == Conv::Timestamp { format!("{t}+00") } else { t }
            }
            (Conv::Text, Cell::UInt(u)) if self.enum_labels.is_some() => {
                let labels = self.enum_labels.as_deref().unwrap_or_default();
                // Index 0 is MySQL's error value ''.
                match usize::try_from(u).ok().and_then(|i| i.checked_sub(1)) {
                    None => String::new(),
                    Some(i) => labels.get(i).cloned().ok_or_else(|| unexpected(&Cell::UInt(u)))?,
                }
            }
            (Conv::Text, Cell::UInt(mask)) if self.set_members.is_some() => {
                let members = self.set_members.as_deref().unwrap_or_default();
                let chosen: Vec<&str> = members
                    .iter()
                    .enumerate()
                    .filter(|(i, _)| *i < 64 && mask & (1u64 << i) != 0)
                    .map(|(_, m)| m.as_str())
                    .collect();
                chosen.join(",")
            }
            (Conv::Text, Cell::Bytes(b)) => {
                let text = match self.encoding {
                    Some(enc) => enc.decode_without_bom_handling(&b).0.into_owned(),
                    None => {
                        String::from_utf8(b).map_err(|_| ValueProblem::Unexpected("text that is not UTF-8".into()))?
                    }
                };
                if text.contains('\0') {
                    return Err(ValueProblem::NulInText);
                }
                text
            }
            (Conv::Text, Cell::Text(t)) => {
                if t.contains('\0') {
                    return Err(ValueProblem::NulInText);
                }
                t
            }
            (Conv::Bytes, Cell::Bytes(b)) => {
                let mut out = String::with_capacity(2 + 2 * b.len());
                out.push_str("\\x");
                for x in b {
                    out.push_str(&format!("{x:02x}"));
                }
                out
            }
            (Conv::Uuid, Cell::Bytes(b)) if b.len() == 16 => {
                let h: String = b.iter().map(|x| format!("{x:02x}")).collect();
                format!("{}-{}-{}-{}-{}", &h[..8], &h[8..12], &h[12..16], &h[16..20], &h[20..])
            }
            (Conv::Inet, Cell::Bytes(b)) => match <[u8; 16]>::try_from(b.as_slice()) {
                Ok(v6) => std::net::Ipv6Addr::from(v6).to_string(),
                Err(_) => match <[u8; 4]>::try_from(b.as_slice()) {
                    Ok(v4) => std::net::Ipv4Addr::from(v4).to_string(),
                    Err(_) => return Err(unexpected(&Cell::Bytes(b))),
                },
            },
            (Conv::Integer | Conv::Decimal | Conv::Real | Conv::Double | Conv::Time, cell) => Self::text(cell),
            (_, cell) => return Err(unexpected(&cell)),
        };
        Ok(Cell::Text(text))
    }
}

/// What the stream knows of one job table: per source column its conversion (`None` for a
/// column not written) and its target column as the applier writes it, kept in step with the
/// DDL the stream translates.
#[derive(Clone, Debug)]
pub struct TableConv {
    /// `db.table` on the source, for messages.
    pub name: String,
    /// Target schema.
    pub target_schema: String,
    /// Target table name.
    pub target_name: String,
    /// Per source column, in order.
    pub columns: Vec<Option<ColumnConv>>,
    /// Per source column, in order: the applier's column (target name, PostgreSQL type).
    pub defs: Vec<ColumnDef>,
    /// Positions of the primary key columns.
    pub key: Vec<usize>,
    /// The table's default character set (that of columns added without one).
    pub charset: Option<String>,
    /// What a zero date becomes (the job's `policy.zeroDates`).
    pub zero_dates: ZeroDatePolicy,
}

/// The binary-log stream of the job's tables with cells in PostgreSQL text form.
pub struct PgChanges {
    inner: MyChanges,
    tables: Vec<TableConv>,
}

impl PgChanges {
    /// Converts the rows of `inner` for `tables` as `plans` map them (`pg_tables`: the tables
    /// as the applier writes them).
    pub fn new(inner: MyChanges, tables: &[MyTable], plans: &[TablePlan], pg_tables: &[PgTable]) -> Result<PgChanges> {
        let mut out = Vec::with_capacity(tables.len());
        for ((t, p), pt) in tables.iter().zip(plans).zip(pg_tables) {
            let mut columns: Vec<Option<ColumnConv>> = vec![None; t.def.columns.len()];
            for ((i, c, m), cp) in t.written().zip(&p.columns) {
                let mapping = map_type(&m.data_type, &c.type_sql, super::types::is_mariadb_json(t, &c.name))
                    .map_err(EngineError::Unsupported)?;
                let encoding = match &cp.convert_from {
                    None => None,
                    Some(cs) => Some(encoding_of(cs).ok_or_else(|| {
                        EngineError::Unsupported(format!(
                            "column {} of {} is in character set {cs}, which the change stream cannot convert \
                             to UTF-8 yet",
                            c.name,
                            t.def.display_name()
                        ))
                    })?),
                };
                columns[i] = Some(ColumnConv {
                    name: c.name.clone(),
                    conv: cp.conv,
                    nullable: cp.nullable,
                    enum_labels: mapping.enum_labels,
                    set_members: mapping.set_members,
                    encoding,
                    overridden: cp.overridden,
                });
            }
            out.push(TableConv {
                name: t.def.display_name(),
                target_schema: t.def.target_schema.clone(),
                target_name: t.def.target_name.clone(),
                columns,
                defs: pt.def.columns.clone(),
                key: t.def.key.clone(),
                charset: t.collation.as_deref().and_then(|c| c.split('_').next()).map(str::to_owned),
                zero_dates: p.zero_dates,
            });
        }
        Ok(PgChanges { inner, tables: out })
    }

    fn row(&self, table: usize, row: Vec<Cell>) -> Result<Vec<Cell>> {
        let t = &self.tables[table];
        if row.len() != t.columns.len() {
            return Err(EngineError::Stream(format!(
                "rows of {} have {} columns in the binary log but {} as the job knows the table: its structure \
                 changed on the source in a way the stream did not follow; bring the target table to the source's \
                 structure by hand and start over, or release the job",
                t.name,
                row.len(),
                t.columns.len()
            )));
        }
        let key: Vec<&str> =
            t.key.iter().filter_map(|&k| t.columns.get(k).and_then(|c| c.as_ref()).map(|c| c.name.as_str())).collect();
        row.into_iter()
            .zip(&t.columns)
            .map(|(cell, conv)| match conv {
                None => Ok(cell),
                Some(c) => c.convert(cell, t.zero_dates).map_err(|problem| {
                    let row_of = if key.is_empty() {
                        "a row (the table has no primary key)".to_owned()
                    } else {
                        format!("a row of key ({})", key.join(", "))
                    };
                    EngineError::Stream(format!("column {} of {} {problem}: {row_of}", c.name, t.name))
                }),
            })
            .collect()
    }

    fn transaction(&mut self, mut t: Transaction) -> Result<Transaction> {
        let changes = std::mem::take(&mut t.changes);
        let mut out = Vec::with_capacity(changes.len());
        for c in changes {
            out.push(match c {
                Change::Insert { table, row } => Change::Insert { table, row: self.row(table, row)? },
                Change::Update { table, old_key, row } => Change::Update {
                    table,
                    old_key: old_key.map(|k| self.row(table, k)).transpose()?,
                    row: self.row(table, row)?,
                },
                Change::Delete { table, old } => Change::Delete { table, old: self.row(table, old)? },
                Change::Truncate { tables } => Change::Truncate { tables },
                Change::Ddl { statement, .. } => {
                    // Translated on a copy: a refused statement leaves what the stream knows
                    // as it was.
                    let mut tables = self.tables.clone();
                    let translated =
                        ddl::translate(&statement, &mut tables).map_err(|why| untranslatable(&statement, &why))?;
                    tracing::info!(statement = %statement, "source DDL translated for PostgreSQL");
                    self.tables = tables;
                    out.extend(translated);
                    continue;
                }
                Change::Reshape { table, .. } => {
                    return Err(EngineError::Unsupported(format!(
                        "the columns of {} changed on the source, which is not translated to PostgreSQL yet",
                        self.tables.get(table).map_or("a table", |t| t.name.as_str())
                    )));
                }
            });
        }
        t.changes = out;
        Ok(t)
    }
}

/// The error that stops the job on a DDL statement that cannot be translated.
fn untranslatable(statement: &str, why: &str) -> EngineError {
    const SHOWN: usize = 300;
    let mut shown: String = statement.split_whitespace().collect::<Vec<_>>().join(" ");
    if let Some((cut, _)) = shown.char_indices().nth(SHOWN) {
        shown.truncate(cut);
        shown.push('…');
    }
    EngineError::Unsupported(format!(
        "the source ran DDL on a selected table that cannot be translated to PostgreSQL ({why}): {shown:?}. The job \
         stopped before it; its checkpoint stays before the statement. Make the change on the target by hand and \
         start the stream again past it (see docs/mysql-to-postgresql.md, \"Schema changes in the stream\")"
    ))
}

impl ChangeSource for PgChanges {
    async fn next_within(&mut self, wait: Duration) -> Option<Option<Result<Transaction>>> {
        let item = self.inner.next_within(wait).await?;
        Some(item.map(|t| t.and_then(|t| self.transaction(t))))
    }

    fn acknowledge(&self, end: u64) {
        self.inner.acknowledge(end);
    }

    fn display_position(&self, end: u64) -> String {
        self.inner.display_position(end)
    }

    async fn close(self) {
        self.inner.close().await;
    }

    fn silent_for(&self) -> Option<Duration> {
        self.inner.silent_for()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn conv(conv: Conv) -> ColumnConv {
        ColumnConv {
            name: "c".into(),
            conv,
            nullable: true,
            enum_labels: None,
            set_members: None,
            encoding: None,
            overridden: false,
        }
    }

    fn text(c: &ColumnConv, cell: Cell) -> String {
        match c.convert(cell, ZeroDatePolicy::Null).unwrap() {
            Cell::Text(t) => t,
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn stream_cells_become_the_text_the_full_transfer_writes() {
        assert_eq!(text(&conv(Conv::Integer), Cell::UInt(u64::MAX)), "18446744073709551615");
        assert_eq!(text(&conv(Conv::Integer), Cell::Text("-128".into())), "-128");
        assert_eq!(text(&conv(Conv::Bool), Cell::UInt(1)), "t");
        assert_eq!(text(&conv(Conv::Bits(5)), Cell::UInt(5)), "00101");
        assert_eq!(text(&conv(Conv::Year), Cell::Text("0000".into())), "0");
        assert_eq!(text(&conv(Conv::Year), Cell::Text("2155".into())), "2155");
        assert_eq!(
            text(&conv(Conv::Timestamp), Cell::Text("2038-01-19 03:14:07.000000".into())),
            "2038-01-19 03:14:07.000000+00"
        );
        assert_eq!(text(&conv(Conv::Time), Cell::Text("-838:59:59.000000".into())), "-838:59:59.000000");
        assert_eq!(text(&conv(Conv::Bytes), Cell::Bytes(vec![0, 255])), "\\x00ff");
        let uuid: Vec<u8> = (0..16).map(|i| i * 17).collect();
        assert_eq!(text(&conv(Conv::Uuid), Cell::Bytes(uuid)), "00112233-4455-6677-8899-aabbccddeeff");
        let mapped = [0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 255, 255, 1, 2, 3, 4];
        assert_eq!(text(&conv(Conv::Inet), Cell::Bytes(mapped.to_vec())), "::ffff:1.2.3.4");
        assert_eq!(text(&conv(Conv::Inet), Cell::Bytes(vec![10, 0, 0, 0])), "10.0.0.0");
        assert!(conv(Conv::Inet).convert(Cell::Bytes(vec![1, 2, 3]), ZeroDatePolicy::Null).is_err());
        let e = ColumnConv { enum_labels: Some(vec!["a".into(), "b".into()]), ..conv(Conv::Text) };
        assert_eq!(text(&e, Cell::UInt(2)), "b");
        assert_eq!(text(&e, Cell::UInt(0)), "");
        let s = ColumnConv { set_members: Some(vec!["x".into(), "y".into(), "z".into()]), ..conv(Conv::Text) };
        assert_eq!(text(&s, Cell::UInt(0b101)), "x,z");
        assert_eq!(text(&s, Cell::UInt(0)), "");
        let latin1 = ColumnConv { encoding: encoding_of("latin1"), ..conv(Conv::Text) };
        assert_eq!(text(&latin1, Cell::Bytes(vec![b'c', b'a', b'f', 0xe9, 0x80])), "café€");
        assert_eq!(text(&conv(Conv::Text), Cell::Bytes("😀".as_bytes().to_vec())), "😀");
    }

    #[test]
    fn zero_dates_follow_the_policy_and_the_column_and_nul_is_refused() {
        use ZeroDatePolicy::{Null, Sentinel, Stop};
        assert_eq!(conv(Conv::Date).convert(Cell::Text("0000-00-00".into()), Null), Ok(Cell::Null));
        assert_eq!(conv(Conv::DateTime).convert(Cell::Text("2024-02-00 10:00:00.000000".into()), Null), Ok(Cell::Null));
        let not_null = ColumnConv { nullable: false, ..conv(Conv::Date) };
        assert!(matches!(not_null.convert(Cell::Text("0000-00-00".into()), Null), Err(ValueProblem::ZeroDate(..))));
        for c in [conv(Conv::Date), not_null.clone(), conv(Conv::Timestamp)] {
            assert_eq!(c.convert(Cell::Text("0000-00-00".into()), Sentinel), Ok(Cell::Text("-infinity".into())));
            assert_eq!(
                c.convert(Cell::Text("0000-00-00".into()), Stop),
                Err(ValueProblem::ZeroDate("'0000-00-00'".into(), Stop))
            );
            assert_eq!(c.convert(Cell::Text("2024-01-02".into()), Stop).map(|_| ()), Ok(()));
        }
        assert_eq!(conv(Conv::Text).convert(Cell::Bytes(b"a\0".to_vec()), Null), Err(ValueProblem::NulInText));
        assert_eq!(conv(Conv::Date).convert(Cell::Null, Stop), Ok(Cell::Null));
        assert_eq!(conv(Conv::Date).convert(Cell::Unchanged, Stop), Ok(Cell::Unchanged));
    }
}
