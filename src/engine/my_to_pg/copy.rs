//! The full transfer's two ends for MySQL/MariaDB → PostgreSQL: the MySQL chunk reader writing
//! rows as PostgreSQL `COPY` text ([`CopyText`]), and a writer loading them with
//! `COPY … FROM STDIN` and marking the chunk done in the same PostgreSQL transaction
//! ([`PgLoad`]), through the PostgreSQL target's own [`write_chunk`].

use mysql_async::Value;
use tokio_postgres::Client;

use super::structure::{TablePlan, select_expr};
use super::types::{Conv, push_value, zero_date_text, zero_date_value};
use crate::api::ZeroDatePolicy;
use crate::engine::error::{EngineError, Result, Side};
use crate::engine::model::ColumnDef;
use crate::engine::mysql::catalog::MyTable;
use crate::engine::mysql::source::RowFormat;
use crate::engine::mysql::target::{ChunkData, Piece};
use crate::engine::postgres::catalog::{PgColumn, PgTable};
use crate::engine::postgres::target::write_chunk;
use crate::engine::progress::Tracker;
use crate::engine::redact::ServerMessage;
use crate::engine::snapshot::{Chunk, ChunkTarget};
use crate::engine::throttle::Throttle;

/// Per job table: its written columns' conversions and nullability, where its key columns
/// are among them (for messages naming a row), and what a zero date becomes.
struct TableFormat {
    name: String,
    columns: Vec<(String, Conv, bool)>,
    key: Vec<usize>,
    zero_dates: ZeroDatePolicy,
}

/// Rows of the job's tables as PostgreSQL `COPY` text.
pub struct CopyText {
    tables: Vec<TableFormat>,
}

impl CopyText {
    /// The format of `tables` as `plans` map them.
    pub fn new(tables: &[MyTable], plans: &[TablePlan]) -> CopyText {
        let tables = tables
            .iter()
            .zip(plans)
            .map(|(t, p)| {
                let written: Vec<usize> = t.written().map(|(i, _, _)| i).collect();
                TableFormat {
                    name: t.def.display_name(),
                    columns: t
                        .written()
                        .zip(&p.columns)
                        .map(|((_, c, _), cp)| (c.name.clone(), cp.conv, cp.nullable))
                        .collect(),
                    key: t.def.key.iter().filter_map(|k| written.iter().position(|w| w == k)).collect(),
                    zero_dates: p.zero_dates,
                }
            })
            .collect();
        CopyText { tables }
    }

    /// The error for a value that cannot be written: the table, column and the row's key
    /// columns; the key's values only where the job lets row values into errors.
    fn refuse(&self, t: &TableFormat, column: usize, problem: &str, row: &[Value]) -> EngineError {
        let key_names: Vec<&str> = t.key.iter().map(|&k| t.columns[k].0.as_str()).collect();
        let key_values: Vec<String> = t.key.iter().map(|&k| row[k].as_sql(false)).collect();
        let (column, _, _) = &t.columns[column];
        let row_of = if key_names.is_empty() {
            "a row (the table has no primary key)".to_owned()
        } else {
            format!("the row with key ({})", key_names.join(", "))
        };
        let redacted = format!("column {column} of {} {problem}: {row_of}", t.name);
        let full =
            if key_names.is_empty() { redacted.clone() } else { format!("{redacted} = ({})", key_values.join(", ")) };
        EngineError::query(
            Side::Source,
            format!("converting a row of {} for PostgreSQL", t.name),
            ServerMessage::new(redacted, full),
        )
    }
}

impl RowFormat for CopyText {
    fn select_sql(&self, t: &MyTable) -> String {
        t.written().map(|(_, c, m)| select_expr(&c.name, m)).collect::<Vec<_>>().join(", ")
    }

    fn push_row(&self, table: usize, buf: &mut Vec<u8>, row: &[Value]) -> Result<()> {
        let t = &self.tables[table];
        for (i, (value, (_, conv, nullable))) in row.iter().zip(&t.columns).enumerate() {
            if i > 0 {
                buf.push(b'\t');
            }
            match push_value(buf, *conv, value) {
                Ok(true) => {}
                Ok(false) => match zero_date_value(t.zero_dates, *nullable, || zero_date_text(*conv, value)) {
                    Ok(None) => buf.extend_from_slice(b"\\N"),
                    Ok(Some(sentinel)) => buf.extend_from_slice(sentinel.as_bytes()),
                    Err(problem) => return Err(self.refuse(t, i, &problem.to_string(), row)),
                },
                Err(problem) => return Err(self.refuse(t, i, &problem.to_string(), row)),
            }
        }
        buf.push(b'\n');
        Ok(())
    }
}

/// The table as the PostgreSQL target's chunk writer, ledger and applier know tables: the
/// written columns selected, with their PostgreSQL types (the applier casts its text values to
/// them); text `COPY`.
pub fn pg_table(t: &MyTable, plan: &TablePlan) -> PgTable {
    let mut def = t.def.clone();
    let written: Vec<usize> = t.written().map(|(i, _, _)| i).collect();
    def.columns = def
        .columns
        .into_iter()
        .enumerate()
        .map(|(i, c)| match written.iter().position(|w| *w == i) {
            Some(at) => ColumnDef { selected: true, type_sql: plan.columns[at].pg_type.clone(), ..c },
            None => ColumnDef { selected: false, ..c },
        })
        .collect();
    let count = def.columns.len();
    PgTable {
        def,
        binary: false,
        indexes: Vec::new(),
        replica_identity_full: false,
        partitioned: false,
        extras: Default::default(),
        oid: 0,
        pg_columns: vec![PgColumn::default(); count],
        column_selection: None,
    }
}

/// Loads chunks read by the MySQL reader into PostgreSQL, each with its ledger entry in one
/// transaction.
pub struct PgLoad<'a> {
    /// The target session.
    pub client: Client,
    /// Identity of the job, keying its chunk ledger.
    pub job: &'a str,
    /// The job's tables as [`pg_table`] gives them.
    pub tables: &'a [PgTable],
}

impl ChunkTarget<ChunkData> for PgLoad<'_> {
    async fn write(
        &mut self,
        chunk: &Chunk,
        read_position: u64,
        data: ChunkData,
        throttle: &Throttle,
        tracker: &Tracker,
    ) -> Result<u64> {
        // The pieces as a stream of COPY data that ends with the read, or fails with it: a failed
        // or cut-short read rolls the chunk back.
        let rows = futures::stream::unfold((data.pieces, false), |(mut pieces, ended)| async move {
            if ended {
                return None;
            }
            match pieces.recv().await {
                Some(Ok(Piece::Rows(body))) => Some((Ok(body), (pieces, false))),
                Some(Ok(Piece::End(_))) => None,
                Some(Err(e)) => Some((Err(e), (pieces, true))),
                None => Some((
                    Err(EngineError::query(Side::Source, "reading a chunk", "the read ended early")),
                    (pieces, true),
                )),
            }
        });
        let table = &self.tables[chunk.table];
        write_chunk(&mut self.client, self.job, table, chunk.number, read_position, None, rows, throttle, tracker).await
    }
}
