//! The row images of a binary-log rows event, read straight into [`Cell`]s.
//!
//! `mysql_common`'s own row reader builds a full column description for every column of every
//! row (schema, table and column names copied, an allocation each) and walks the table map's
//! metadata from the first column for each value; the stream needs only the values. This reader
//! works out each column's type, metadata and signedness once per event and decodes each value
//! with `mysql_common`'s value decoder, so a value reads exactly as it did through the crate's
//! reader; the row framing around the values (null bitmap, shared image of a partial update)
//! is read as the crate reads it.

use std::io;

use mysql_async::binlog::events::{OptionalMetaExtractor, RowsEventData, TableMapEvent};
use mysql_async::binlog::value::BinlogValue;
use mysql_async::consts::ColumnType;
use mysql_common::io::ParseBuf;

use super::catalog::MyTable;
use super::values::{binlog_cell, time2_fraction_fix};
use crate::engine::error::{EngineError, Result};
use crate::engine::model::Cell;

/// How one column's values are read.
struct Column<'a> {
    ty: ColumnType,
    meta: &'a [u8],
    unsigned: bool,
    /// Its place among the table's JSON columns, for a JSON column.
    json: Option<usize>,
    /// A TIME(1) or TIME(2) column, whose negative values `mysql_common` misreads (see
    /// [`time2_fraction_fix`]).
    time2: bool,
    /// A `BINARY(n)` column's length (or a MariaDB `UUID`'s, `INET6`'s, `INET4`'s): the binary
    /// log drops a value's trailing zero bytes, which the column stores (and a row without a key
    /// is matched by).
    pad: Option<usize>,
}

/// The stored length of a fixed-length binary column: `n` of a `binary(n)` column type, and
/// 16 or 4 bytes for MariaDB's `UUID`, `INET6` and `INET4` (which the binary log carries as
/// `BINARY(n)`, trailing zero bytes dropped alike).
fn binary_length(data_type: &str, type_sql: &str) -> Option<usize> {
    match data_type {
        "uuid" | "inet6" => Some(16),
        "inet4" => Some(4),
        "binary" => {
            let inner = type_sql.trim().strip_prefix("binary(")?.strip_suffix(')')?;
            inner.trim().parse().ok()
        }
        _ => None,
    }
}

/// The rows of one rows event: `(before image, after image)` per row, as the event kind has
/// them.
pub(crate) struct Rows<'a> {
    table: &'a MyTable,
    columns: Vec<Column<'a>>,
    json_columns: usize,
    before: Option<usize>,
    after: Option<usize>,
    /// The after image starts with a shared image (MySQL's partial JSON update).
    shared: bool,
    data: ParseBuf<'a>,
    failed: bool,
}

impl<'a> Rows<'a> {
    /// The reader of `rows`, whose table map is `tme`, for job table `table`; the table map
    /// must have passed the stream's checks (a type and metadata for every column).
    pub(crate) fn new(table: &'a MyTable, tme: &'a TableMapEvent<'a>, rows: &'a RowsEventData<'a>) -> Result<Self> {
        let bad =
            |what: String| EngineError::Stream(format!("undecodable row of {}: {what}", table.def.display_name()));
        let count = tme.columns_count() as usize;
        let optional = OptionalMetaExtractor::new(tme.iter_optional_meta()).map_err(|e| bad(e.to_string()))?;
        let mut signedness = optional.iter_signedness();
        let mut columns = Vec::with_capacity(count);
        for i in 0..count {
            let ty = match tme.get_column_type(i) {
                Ok(Some(ty)) => ty,
                Ok(None) => return Err(bad("no column type".into())),
                Err(e) => return Err(bad(e.to_string())),
            };
            let meta = tme.get_column_metadata(i).unwrap_or(&[]);
            // The crate takes one signedness flag per numeric column, in order.
            let unsigned = ty.is_numeric_type() && signedness.next().unwrap_or_default();
            let time2 = ty == ColumnType::MYSQL_TYPE_TIME2 && matches!(meta, [1 | 2, ..]);
            let json = (ty == ColumnType::MYSQL_TYPE_JSON)
                .then(|| columns.iter().filter(|c: &&Column<'_>| c.json.is_some()).count());
            let pad = table
                .def
                .columns
                .get(i)
                .zip(table.columns.get(i))
                .and_then(|(def, m)| binary_length(&m.data_type, &def.type_sql.to_ascii_lowercase()));
            columns.push(Column { ty, meta, unsigned, json, time2, pad });
        }
        Ok(Rows {
            table,
            columns,
            json_columns: tme.json_column_count(),
            before: rows.columns_before_image().map(|c| c.count_ones()),
            after: rows.columns_after_image().map(|c| c.count_ones()),
            shared: matches!(rows, RowsEventData::PartialUpdateRowsEvent(_)),
            data: ParseBuf(rows.rows_data()),
            failed: false,
        })
    }

    /// One row image of `present` columns.
    fn image(&mut self, present: usize, shared: bool) -> Result<Vec<Cell>> {
        let name = || self.table.def.display_name();
        let undecodable = |e: io::Error| EngineError::Stream(format!("undecodable row of {}: {e}", name()));
        let short =
            || undecodable(io::Error::new(io::ErrorKind::UnexpectedEof, "can't parse: buf doesn't have enough data"));
        let mut partial: Option<&[u8]> = None;
        if shared {
            let options = self.data.checked_eat_lenenc_int().ok_or_else(short)?;
            // PARTIAL_JSON_UPDATES: a bit per JSON column says whether it holds a diff.
            if options & 1 != 0 {
                partial = Some(self.data.checked_eat(self.json_columns.div_ceil(8)).ok_or_else(short)?);
            }
        }
        let nulls = self.data.checked_eat(present.div_ceil(8)).ok_or_else(short)?;
        if present != self.columns.len() {
            return Err(EngineError::Stream(format!(
                "a row image of {} carries {} of its {} columns: the source must run with binlog_row_image=FULL",
                name(),
                present,
                self.columns.len()
            )));
        }
        let mut row = Vec::with_capacity(self.columns.len());
        let described = self.table.def.columns.iter().zip(&self.table.columns);
        for (i, (c, (def, m))) in self.columns.iter().zip(described).enumerate() {
            let is_partial =
                c.json.zip(partial).is_some_and(|(j, bits)| j < 8 * bits.len() && (bits[j / 8] >> (j % 8)) & 1 == 1);
            if (nulls[i / 8] >> (i % 8)) & 1 == 1 {
                row.push(Cell::Null);
                continue;
            }
            let value: BinlogValue<'_> =
                self.data.parse((c.ty, c.meta, c.unsigned, is_partial)).map_err(undecodable)?;
            let value = match value {
                BinlogValue::Value(v) if c.time2 => BinlogValue::Value(time2_fraction_fix(v)),
                v => v,
            };
            let mut cell =
                binlog_cell(m.kind, &def.name, value).map_err(|e| EngineError::Stream(format!("{}: {e}", name())))?;
            if let (Some(n), Cell::Bytes(b)) = (c.pad, &mut cell)
                && b.len() < n
            {
                b.resize(n, 0);
            }
            row.push(cell);
        }
        Ok(row)
    }
}

impl Iterator for Rows<'_> {
    type Item = Result<(Option<Vec<Cell>>, Option<Vec<Cell>>)>;

    fn next(&mut self) -> Option<Self::Item> {
        if self.failed || self.data.is_empty() {
            return None;
        }
        let mut read = || -> Result<_> {
            let before = self.before.map(|n| self.image(n, false)).transpose()?;
            let after = self.after.map(|n| self.image(n, self.shared)).transpose()?;
            Ok((before, after))
        };
        let row = read();
        self.failed = row.is_err();
        Some(row)
    }
}

#[cfg(test)]
mod tests {
    use super::binary_length;

    #[test]
    fn only_fixed_length_binary_columns_are_padded_to_their_length() {
        assert_eq!(binary_length("binary", "binary(16)"), Some(16));
        assert_eq!(binary_length("binary", "binary( 4 )"), Some(4));
        assert_eq!(binary_length("varbinary", "varbinary(16)"), None);
        assert_eq!(binary_length("char", "char(4)"), None);
        assert_eq!(binary_length("binary", "binary"), None);
        assert_eq!(binary_length("uuid", "uuid"), Some(16));
        assert_eq!(binary_length("inet6", "inet6"), Some(16));
        assert_eq!(binary_length("inet4", "inet4"), Some(4));
    }
}
