//! Reading a MySQL/MariaDB source for the full transfer: primary-key range chunks, each read in
//! its own consistent snapshot whose binary log position is recorded with the chunk.
//!
//! Readers do not share one snapshot (the server cannot export one); instead the change stream
//! starts before every chunk's snapshot and is applied idempotently up to the newest of them,
//! which converges each row to its source state.

use futures::TryStreamExt;
use mysql_async::prelude::Queryable;
use mysql_async::{Conn, Params, Value};

use super::catalog::{ColumnKind, MyTable};
use super::snapshot;
use super::stream::BinlogNames;
use super::target::{ChunkData, qualified};
use super::values::push_value;
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
/// boundary is the key `rows_per_chunk` rows past the previous one.
pub async fn plan_chunks(conn: &mut Conn, t: &MyTable, rows_per_chunk: u64) -> Result<Vec<KeyRange>> {
    if !chunkable(t) || t.def.estimated_rows < rows_per_chunk * 2 && t.def.estimated_rows > 0 {
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

/// The select list of a chunk read: the written columns, as they are.
fn select_sql(t: &MyTable) -> String {
    t.written().map(|(_, c, _)| my_ident(&c.name)).collect::<Vec<_>>().join(", ")
}

/// Reads chunks, each in a fresh consistent snapshot.
pub struct MyChunkSource<'a> {
    /// Source session (time zone UTC, results in the columns' own bytes).
    pub conn: Conn,
    /// The job's tables.
    pub tables: &'a [MyTable],
    /// Binary log naming, to encode snapshot positions.
    pub names: BinlogNames,
}

impl MyChunkSource<'_> {
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
        // A keyless table's changes up to the snapshot are skipped: that needs its exact position.
        let at = snapshot::start(&mut self.conn, t.def.key.is_empty()).await?;
        let position = self.names.encode(&at.file, at.position)?;
        let (cond, params) = chunk_where(t, &chunk.range);
        let sql = format!("SELECT {} FROM {} WHERE {cond}", select_sql(t), qualified(&t.def.schema, &t.def.name));
        let kinds: Vec<ColumnKind> = t.written().map(|(_, _, m)| m.kind).collect();
        let what = || format!("reading chunk {} of {}", chunk.number, t.def.display_name());
        let params = if params.is_empty() { Params::Empty } else { Params::Positional(params) };
        let mut result = self.conn.exec_iter(sql, params).await.map_err(|e| EngineError::query(S, what(), e))?;
        let mut body = Vec::with_capacity(1 << 20);
        let mut rows = 0u64;
        let mut stream = result.stream::<mysql_async::Row>().await.map_err(|e| EngineError::query(S, what(), e))?;
        if let Some(stream) = stream.as_mut() {
            while let Some(row) = stream.try_next().await.map_err(|e| EngineError::query(S, what(), e))? {
                for (i, value) in row.unwrap().iter().enumerate() {
                    if i > 0 {
                        body.push(b'\t');
                    }
                    push_value(&mut body, kinds[i], value);
                }
                body.push(b'\n');
                rows += 1;
            }
        }
        drop(stream);
        drop(result);
        Ok((position, ChunkData { body, rows }))
    }

    async fn finish(&mut self) -> Result<()> {
        self.conn.query_drop("COMMIT").await.map_err(|e| EngineError::query(S, "ending a chunk's snapshot", e))
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
