//! The PostgreSQL source's table reads: chunk planning over the primary key and COPY of one
//! chunk inside a consistent snapshot.

use futures::{Stream, StreamExt};
use tokio_postgres::Client;
use tokio_postgres::types::ToSql;

use super::catalog::PgTable;
use super::connect::describe_pg_error;
use super::target::parse_lsn;
use crate::engine::error::{Context, EngineError, Result, Side};
use crate::engine::model::KeyRange;
use crate::engine::sql::{pg_ident, pg_qualified};

const S: Side = Side::Source;

/// Splits a table into primary-key ranges of about `rows_per_chunk` rows; small tables are one
/// chunk. The boundaries need not come from the snapshot: the ranges cover the whole key space
/// whatever they are.
///
/// A table without a key is split into ranges of heap pages ([`plan_page_chunks`]) only when
/// `one_snapshot`: every chunk is then read in the same snapshot, in which each row version has
/// exactly one place. Otherwise it is one chunk, whose fresh snapshot the change stream is
/// matched against by transaction ([`VisibleXids`]).
pub async fn plan_chunks(
    client: &Client,
    table: &PgTable,
    rows_per_chunk: u64,
    one_snapshot: bool,
) -> Result<Vec<KeyRange>> {
    let d = &table.def;
    if d.estimated_rows <= rows_per_chunk {
        return Ok(vec![KeyRange::default()]);
    }
    if d.key.is_empty() {
        if one_snapshot && !table.partitioned {
            return plan_page_chunks(client, table, rows_per_chunk).await;
        }
        return Ok(vec![KeyRange::default()]);
    }
    let integer = ["smallint", "integer", "bigint"];
    if d.key.len() == 1 && d.key_columns().all(|c| integer.contains(&c.type_sql.as_str())) {
        return plan_integer_chunks(client, table, rows_per_chunk).await;
    }
    let keys: Vec<String> = d.key_columns().map(|c| pg_ident(&c.name)).collect();
    let keys = keys.join(", ");
    let texts: Vec<String> = (1..=d.key.len()).map(|i| format!("k{i}")).collect();
    let inner: Vec<String> =
        d.key_columns().enumerate().map(|(i, c)| format!("{}::text AS k{}", pg_ident(&c.name), i + 1)).collect();
    let sql = format!(
        "SELECT {} FROM (SELECT {}, row_number() OVER (ORDER BY {keys}) AS rn FROM {}) s WHERE rn % $1 = 0 ORDER BY rn",
        texts.join(", "),
        inner.join(", "),
        pg_qualified(&d.schema, &d.name),
    );
    let every = rows_per_chunk as i64;
    let rows = client.query(&sql, &[&every]).await.ctx(S, || format!("planning chunks of {}", d.display_name()))?;
    let bounds: Vec<Vec<String>> =
        rows.iter().map(|r| (0..d.key.len()).map(|i| r.get::<_, String>(i)).collect()).collect();
    Ok(KeyRange::between(bounds))
}

/// Splits a table without a key into ranges of heap pages of about `rows_per_chunk` rows, bounds
/// written as tuple ids (`(page,0)`): read with `ctid >= lo AND ctid < hi`, a TID range scan
/// (PostgreSQL 14+) reads just those pages. The last range is open, so rows on pages added
/// since the plan are read too.
async fn plan_page_chunks(client: &Client, table: &PgTable, rows_per_chunk: u64) -> Result<Vec<KeyRange>> {
    let d = &table.def;
    let row = client
        .query_one(
            "SELECT pg_relation_size($1::text::regclass) / current_setting('block_size')::int8",
            &[&pg_qualified(&d.schema, &d.name)],
        )
        .await
        .ctx(S, || format!("planning chunks of {}", d.display_name()))?;
    let pages = u64::try_from(row.get::<_, i64>(0)).unwrap_or(0);
    let chunks = d.estimated_rows.div_ceil(rows_per_chunk.max(1)).clamp(1, 10_000);
    let step = pages.div_ceil(chunks).max(1);
    let bounds: Vec<Vec<String>> = (1..chunks).map(|i| i * step).filter(|&p| p < pages).map(|p| vec![tid(p)]).collect();
    Ok(KeyRange::between(bounds))
}

/// The first tuple id of heap page `page`.
fn tid(page: u64) -> String {
    format!("({page},0)")
}

/// Splits an integer key's range into equal slices: two index lookups instead of a scan.
async fn plan_integer_chunks(client: &Client, table: &PgTable, rows_per_chunk: u64) -> Result<Vec<KeyRange>> {
    let d = &table.def;
    let key = d.key_columns().next().map(|c| pg_ident(&c.name)).unwrap_or_default();
    let sql = format!("SELECT min({key})::int8, max({key})::int8 FROM {}", pg_qualified(&d.schema, &d.name));
    let row = client.query_one(&sql, &[]).await.ctx(S, || format!("planning chunks of {}", d.display_name()))?;
    let (Some(min), Some(max)) = (row.get::<_, Option<i64>>(0), row.get::<_, Option<i64>>(1)) else {
        return Ok(vec![KeyRange::default()]);
    };
    let chunks = d.estimated_rows.div_ceil(rows_per_chunk.max(1)).clamp(1, 100_000) as i128;
    let span = i128::from(max) - i128::from(min) + 1;
    let step = (span / chunks).max(1);
    let mut ranges = Vec::new();
    let mut lo: Option<Vec<String>> = None;
    let mut bound = i128::from(min) + step;
    while bound <= i128::from(max) {
        let b = vec![bound.to_string()];
        ranges.push(KeyRange { lo: lo.take(), hi: Some(b.clone()) });
        lo = Some(b);
        bound += step;
    }
    ranges.push(KeyRange { lo, hi: None });
    Ok(ranges)
}

/// The query that selects a chunk's rows. Bounds are read from session settings the reader sets
/// through bound parameters, since COPY itself takes none.
pub fn chunk_query(table: &PgTable, range: &KeyRange) -> String {
    let d = &table.def;
    let cols: Vec<String> = d.selected().map(|c| pg_ident(&c.name)).collect();
    let mut conds = Vec::new();
    if d.key.is_empty() {
        // A table without a key is split by heap pages (see plan_page_chunks).
        for (prefix, op, bound) in [("lo", ">=", &range.lo), ("hi", "<", &range.hi)] {
            if bound.is_some() {
                conds.push(format!("ctid {op} current_setting('ferry.{prefix}0')::tid"));
            }
        }
    }
    let key_tuple = |prefix: &str| -> (String, String) {
        let names: Vec<String> = d.key_columns().map(|c| pg_ident(&c.name)).collect();
        let vals: Vec<String> = d
            .key_columns()
            .enumerate()
            .map(|(i, c)| format!("current_setting('ferry.{prefix}{i}')::{}", c.type_sql))
            .collect();
        (format!("({})", names.join(", ")), format!("({})", vals.join(", ")))
    };
    if range.lo.is_some() && !d.key.is_empty() {
        let (k, v) = key_tuple("lo");
        conds.push(format!("{k} >= {v}"));
    }
    if range.hi.is_some() && !d.key.is_empty() {
        let (k, v) = key_tuple("hi");
        conds.push(format!("{k} < {v}"));
    }
    if let Some(f) = &d.filter {
        conds.push(format!("({f})"));
    }
    let mut sql = format!("SELECT {} FROM {}", cols.join(", "), pg_qualified(&d.schema, &d.name));
    if !conds.is_empty() {
        sql.push_str(" WHERE ");
        sql.push_str(&conds.join(" AND "));
    }
    sql
}

/// The transactions a snapshot sees, from `txid_current_snapshot()` (`xmin:xmax:xip,…`, with
/// 64-bit transaction ids): every committed one before `xmax` not listed as in progress.
///
/// A chunk read in a fresh snapshot is at a position (`pg_current_wal_insert_lsn()`) that every
/// transaction it sees commits before, but not only those: a transaction writes its commit
/// record before it becomes visible, so one committing at that moment is before the position
/// and not in the snapshot. Which changes the copy holds is therefore told by the transaction,
/// not by the position.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct VisibleXids {
    xmin: u64,
    xmax: u64,
    in_progress: Vec<u64>,
}

impl VisibleXids {
    /// Reads `txid_current_snapshot()`'s text form.
    pub fn parse(text: &str) -> Option<VisibleXids> {
        let mut parts = text.split(':');
        let xmin = parts.next()?.parse().ok()?;
        let xmax = parts.next()?.parse().ok()?;
        let in_progress = match parts.next()? {
            "" => Vec::new(),
            list => list.split(',').map(|x| x.parse().ok()).collect::<Option<Vec<u64>>>()?,
        };
        (parts.next().is_none() && xmin <= xmax).then_some(VisibleXids { xmin, xmax, in_progress })
    }

    /// Whether the snapshot sees the (committed) transaction `xid`, a 32-bit id as the change
    /// stream gives it. The stream's transactions are within 2^31 of the snapshot, as the
    /// server keeps every live transaction id.
    pub fn sees(&self, xid: u32) -> bool {
        // The 64-bit id nearest to xmax with these low 32 bits.
        const EPOCH: i128 = 1 << 32;
        let xmax = i128::from(self.xmax);
        let mut full = (xmax & !(EPOCH - 1)) | i128::from(xid);
        if full - xmax > EPOCH / 2 {
            full -= EPOCH;
        } else if xmax - full > EPOCH / 2 {
            full += EPOCH;
        }
        let Ok(full) = u64::try_from(full) else { return true };
        full < self.xmin || (full < self.xmax && !self.in_progress.contains(&full))
    }
}

/// How a chunk reader sees the source.
#[derive(Clone, Debug)]
pub enum Snapshot {
    /// The slot's exported snapshot (first pass: every chunk sees the slot's start position).
    Exported(String),
    /// A fresh snapshot per chunk (after a restart, when the exported one is gone).
    Fresh,
}

/// One chunk as read: the COPY data, and for a fresh snapshot the text form of the
/// transactions it sees ([`VisibleXids`]).
pub struct ChunkData {
    /// The COPY data.
    pub rows: std::pin::Pin<Box<dyn Stream<Item = Result<bytes::Bytes>> + Send>>,
    /// `txid_current_snapshot()` of a fresh snapshot; `None` for the exported one, which is
    /// exactly at the slot's start.
    pub snapshot: Option<String>,
}

/// Opens a read-only repeatable-read transaction on `client` in `snapshot`, sets the chunk's
/// bounds, and returns the source position the snapshot is at (an upper bound for a fresh one)
/// with the chunk's data. The transaction ends when the stream is dropped and the session is
/// reused or closed.
pub async fn read_chunk(
    client: &Client,
    table: &PgTable,
    range: &KeyRange,
    snapshot: &Snapshot,
    start_lsn: u64,
) -> Result<(u64, ChunkData)> {
    let what = || format!("reading {}", table.def.display_name());
    client.batch_execute("BEGIN ISOLATION LEVEL REPEATABLE READ READ ONLY").await.ctx(S, what)?;
    let (read_lsn, visible) = match snapshot {
        Snapshot::Exported(name) => {
            // The name is the server's own snapshot identifier, not user input.
            client
                .batch_execute(&format!("SET TRANSACTION SNAPSHOT '{}'", name.replace('\'', "''")))
                .await
                .ctx(S, what)?;
            (start_lsn, None)
        }
        Snapshot::Fresh => {
            // The insert position, not the write position: a transaction visible in this
            // snapshot has its commit record before it even with synchronous_commit off. This
            // first query takes the snapshot, which it reports too.
            let row = client
                .query_one("SELECT pg_current_wal_insert_lsn()::text, txid_current_snapshot()::text", &[])
                .await
                .ctx(S, what)?;
            (parse_lsn(row.get(0)).unwrap_or(start_lsn), Some(row.get::<_, String>(1)))
        }
    };
    for (prefix, bound) in [("lo", &range.lo), ("hi", &range.hi)] {
        if let Some(values) = bound {
            for (i, v) in values.iter().enumerate() {
                let name = format!("ferry.{prefix}{i}");
                let params: [&(dyn ToSql + Sync); 2] = [&name, v];
                client.execute("SELECT set_config($1, $2, true)", &params).await.ctx(S, what)?;
            }
        }
    }
    let format = if table.binary { " (FORMAT binary)" } else { "" };
    let sql = format!("COPY ({}) TO STDOUT{format}", chunk_query(table, range));
    let stream = client.copy_out(&sql).await.map_err(|e| EngineError::query(S, what(), describe_pg_error(&e)))?;
    let name = table.def.display_name();
    let stream =
        stream.map(move |r| r.map_err(|e| EngineError::query(S, format!("reading {name}"), describe_pg_error(&e))));
    Ok((read_lsn, ChunkData { rows: Box::pin(stream), snapshot: visible }))
}

/// Ends the chunk's read transaction.
pub async fn end_read(client: &Client) -> Result<()> {
    client.batch_execute("COMMIT").await.ctx(S, || "ending a snapshot read".into())
}

/// Reads chunks of the job's tables on one source session.
pub struct PgChunkSource<'a> {
    /// The session; one read transaction at a time.
    pub client: Client,
    /// The job's tables, indexed as in [`crate::engine::snapshot::Chunk::table`].
    pub tables: &'a [PgTable],
    /// Which snapshot reads see.
    pub snapshot: Snapshot,
    /// The slot's start position (the exported snapshot's).
    pub start_lsn: u64,
}

impl crate::engine::snapshot::ChunkSource for PgChunkSource<'_> {
    type Data = ChunkData;

    async fn read(&mut self, chunk: &crate::engine::snapshot::Chunk) -> Result<(u64, Self::Data)> {
        let table = &self.tables[chunk.table];
        read_chunk(&self.client, table, &chunk.range, &self.snapshot, self.start_lsn).await
    }

    async fn finish(&mut self) -> Result<()> {
        end_read(&self.client).await
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_snapshot_sees_what_committed_before_it_and_not_what_was_in_progress() {
        let s = VisibleXids::parse("100:105:101,103").unwrap();
        assert!(s.sees(99) && s.sees(100) && s.sees(102) && s.sees(104));
        assert!(!s.sees(101) && !s.sees(103), "in progress when the snapshot was taken");
        assert!(!s.sees(105) && !s.sees(2000), "started after the snapshot");
        assert!(VisibleXids::parse("7:7:").unwrap().sees(6));
        assert!(!VisibleXids::parse("7:7:").unwrap().sees(7));
    }

    #[test]
    fn thirty_two_bit_ids_are_placed_in_the_snapshot_epoch() {
        // xmax just past a wraparound: 2^32 + 10.
        let s = VisibleXids::parse("4294967290:4294967306:4294967300").unwrap();
        assert!(s.sees(u32::MAX - 2), "before the wraparound, after xmin");
        assert!(!s.sees(4), "in progress (2^32 + 4)");
        assert!(s.sees(5), "2^32 + 5 committed");
        assert!(!s.sees(10) && !s.sees(11) && !s.sees(20), "after the snapshot");
        assert!(s.sees(u32::MAX - 100), "long before");
        // xmax just before a wraparound: ids past it belong to the next epoch.
        let s = VisibleXids::parse("4294967200:4294967290:").unwrap();
        assert!(!s.sees(3) && !s.sees(u32::MAX - 1), "after the snapshot");
        assert!(s.sees(u32::MAX - 100));
    }

    #[test]
    fn malformed_snapshots_are_refused() {
        for text in ["", "1", "1:2", "x:2:", "5:3:", "1:2:3:4", "1:9:3,x"] {
            assert_eq!(VisibleXids::parse(text), None, "{text:?}");
        }
    }
}
