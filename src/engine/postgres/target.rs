//! The PostgreSQL target: structure, bookkeeping in the `_ferry` schema, bulk load of chunks,
//! and changes applied with their checkpoint in one transaction.

use std::borrow::Cow;
use std::collections::HashMap;

use futures::{SinkExt, TryStreamExt, future::try_join_all};
use tokio_postgres::error::SqlState;
use tokio_postgres::types::{ToSql, Type};
use tokio_postgres::{Client, Statement};

use super::catalog::{EnumType, PgTable};
use super::connect::describe_pg_error;
use super::source::ChunkData;
use super::structure::Plan;
use crate::api::{ConflictPolicy, DdlPolicy};
use crate::engine::drift::{self, Shape};
use crate::engine::error::{Context, EngineError, Result, Side};
use crate::engine::model::{Cell, Change, ChangeBatch, ColumnChange, ColumnDef, KeyRange, TableDef};
use crate::engine::pipeline::{self, Ledger, Origin};
use crate::engine::progress::Tracker;
use crate::engine::snapshot::PendingChunk;
use crate::engine::sql::{pg_ident, pg_qualified};
use crate::engine::throttle::Throttle;

const T: Side = Side::Target;

/// The bookkeeping schema on the target.
pub const SCHEMA: &str = "_ferry";

/// Creates the `_ferry` schema and its tables if missing.
pub async fn ensure_bookkeeping(client: &Client) -> Result<()> {
    client
        .batch_execute(
            "CREATE SCHEMA IF NOT EXISTS _ferry;
             CREATE TABLE IF NOT EXISTS _ferry.jobs (
                 job text PRIMARY KEY,
                 slot text NOT NULL,
                 publication text NOT NULL,
                 start_lsn pg_lsn NOT NULL,
                 full_done boolean NOT NULL DEFAULT false,
                 safe_end_lsn pg_lsn,
                 checkpoint_lsn pg_lsn,
                 checkpoint_time timestamptz,
                 updated_at timestamptz NOT NULL DEFAULT now());
             CREATE TABLE IF NOT EXISTS _ferry.chunks (
                 job text NOT NULL,
                 table_name text NOT NULL,
                 chunk integer NOT NULL,
                 lo text[],
                 hi text[],
                 done boolean NOT NULL DEFAULT false,
                 rows bigint,
                 read_lsn pg_lsn,
                 PRIMARY KEY (job, table_name, chunk));
             ALTER TABLE _ferry.chunks ADD COLUMN IF NOT EXISTS read_snapshot text;
             CREATE TABLE IF NOT EXISTS _ferry.layouts (
                 job text NOT NULL,
                 table_name text NOT NULL,
                 layout text NOT NULL,
                 PRIMARY KEY (job, table_name));",
        )
        .await
        .ctx(T, || "creating the _ferry bookkeeping schema".into())
}

/// What the target remembers of a job.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct JobState {
    /// Replication slot on the source.
    pub slot: String,
    /// Publication on the source.
    pub publication: String,
    /// Where the slot's stream starts (the snapshot's position).
    pub start_lsn: u64,
    /// Whether every chunk is copied and the indexes exist.
    pub full_done: bool,
    /// The stream must be applied idempotently up to here (the newest snapshot a chunk was read in).
    pub safe_end_lsn: Option<u64>,
    /// The last source position whose changes are committed here.
    pub checkpoint_lsn: Option<u64>,
}

/// Formats an LSN as PostgreSQL writes it (`16/B374D848`).
pub fn fmt_lsn(lsn: u64) -> String {
    format!("{:X}/{:X}", lsn >> 32, lsn & 0xFFFF_FFFF)
}

/// Parses `16/B374D848`.
pub fn parse_lsn(text: &str) -> Option<u64> {
    let (hi, lo) = text.split_once('/')?;
    Some((u64::from_str_radix(hi, 16).ok()? << 32) | u64::from_str_radix(lo, 16).ok()?)
}

/// Reads the job's state, if the target has seen the job before.
pub async fn job_state(client: &Client, job: &str) -> Result<Option<JobState>> {
    let row = client
        .query_opt(
            "SELECT slot, publication, start_lsn::text, full_done, safe_end_lsn::text, checkpoint_lsn::text \
             FROM _ferry.jobs WHERE job = $1",
            &[&job],
        )
        .await
        .ctx(T, || "reading the job's checkpoint".into())?;
    Ok(row.map(|r| JobState {
        slot: r.get(0),
        publication: r.get(1),
        start_lsn: parse_lsn(r.get(2)).unwrap_or(0),
        full_done: r.get(3),
        safe_end_lsn: r.get::<_, Option<String>>(4).as_deref().and_then(parse_lsn),
        checkpoint_lsn: r.get::<_, Option<String>>(5).as_deref().and_then(parse_lsn),
    }))
}

/// Records a new job with its start position and what the source recorded with it (a slot and
/// publication; a binary log's base name and GTID position), its chunk plan and the source's
/// table layouts, in one transaction.
pub async fn record_job(
    client: &mut Client,
    job: &str,
    slot: &str,
    publication: &str,
    start_lsn: u64,
    chunks: &[(String, Vec<KeyRange>)],
    layouts: &[(String, String)],
) -> Result<()> {
    let tx = client.transaction().await.ctx(T, || "starting a transaction".into())?;
    tx.execute("DELETE FROM _ferry.chunks WHERE job = $1", &[&job]).await.ctx(T, || "clearing old chunks".into())?;
    tx.execute("DELETE FROM _ferry.layouts WHERE job = $1", &[&job]).await.ctx(T, || "clearing old layouts".into())?;
    for (table, layout) in layouts {
        tx.execute("INSERT INTO _ferry.layouts (job, table_name, layout) VALUES ($1, $2, $3)", &[&job, table, layout])
            .await
            .ctx(T, || "recording the tables' columns".into())?;
    }
    tx.execute(
        "INSERT INTO _ferry.jobs (job, slot, publication, start_lsn) VALUES ($1, $2, $3, $4::text::pg_lsn) \
         ON CONFLICT (job) DO UPDATE SET slot = $2, publication = $3, start_lsn = $4::text::pg_lsn, full_done = false, \
           safe_end_lsn = NULL, checkpoint_lsn = NULL, checkpoint_time = NULL, updated_at = now()",
        &[&job, &slot, &publication, &fmt_lsn(start_lsn)],
    )
    .await
    .ctx(T, || "recording the job".into())?;
    let insert = tx
        .prepare("INSERT INTO _ferry.chunks (job, table_name, chunk, lo, hi) VALUES ($1, $2, $3, $4, $5)")
        .await
        .ctx(T, || "recording the chunk plan".into())?;
    for (table, ranges) in chunks {
        for (i, r) in ranges.iter().enumerate() {
            let n = i as i32;
            tx.execute(&insert, &[&job, table, &n, &r.lo, &r.hi]).await.ctx(T, || "recording the chunk plan".into())?;
        }
    }
    tx.commit().await.ctx(T, || "recording the job".into())
}

/// The tables with the columns the job has reached in the stream (recorded with the
/// checkpoint; the source catalog may be ahead of the stream), where a record exists.
pub async fn with_recorded_layouts(client: &Client, job: &str, tables: Vec<PgTable>) -> Result<Vec<PgTable>> {
    let rows = client
        .query("SELECT table_name, layout FROM _ferry.layouts WHERE job = $1", &[&job])
        .await
        .ctx(T, || "reading the tables' recorded columns".into())?;
    let recorded: HashMap<String, String> = rows.iter().map(|r| (r.get(0), r.get(1))).collect();
    tables
        .into_iter()
        .map(|t| match recorded.get(&t.def.display_name()) {
            Some(layout) => {
                if PgTable::recorded_oid(layout).is_some_and(|oid| oid != t.oid) {
                    // The publication named the old table: nothing of the new one was streamed.
                    return Err(EngineError::Unrecoverable {
                        code: drift::SOURCE_SCHEMA_CHANGED,
                        message: format!(
                            "source table {} was dropped and created again since the job started: the publication \
                             named the old table, so the new one's rows never reached the target. Fix: start over \
                             with a new full transfer",
                            t.def.display_name()
                        ),
                    });
                }
                Ok(t.with_layout(layout))
            }
            None => Ok(t),
        })
        .collect()
}

/// The chunks not yet copied, in plan order.
pub async fn pending_chunks(client: &Client, job: &str) -> Result<Vec<PendingChunk>> {
    let rows = client
        .query("SELECT table_name, chunk, lo, hi FROM _ferry.chunks WHERE job = $1 AND NOT done ORDER BY table_name, chunk", &[&job])
        .await
        .ctx(T, || "reading the chunk ledger".into())?;
    Ok(rows
        .iter()
        .map(|r| PendingChunk { table: r.get(0), chunk: r.get(1), range: KeyRange { lo: r.get(2), hi: r.get(3) } })
        .collect())
}

/// When the ledger splits `table` into several chunks not all copied, empties the target table
/// and replaces its chunks with one for the whole table, in one transaction; returns whether it
/// did. For a table without a key, whose split chunks must all be read in one snapshot.
pub async fn restart_split_table(client: &mut Client, job: &str, table: &TableDef) -> Result<bool> {
    let name = table.display_name();
    let what = || format!("copying {name} again in one chunk");
    let tx = client.transaction().await.ctx(T, what)?;
    let row = tx
        .query_one(
            "SELECT count(*), count(*) FILTER (WHERE done) FROM _ferry.chunks WHERE job = $1 AND table_name = $2",
            &[&job, &name],
        )
        .await
        .ctx(T, what)?;
    let (chunks, done): (i64, i64) = (row.get(0), row.get(1));
    if chunks <= 1 || done == chunks {
        return Ok(false);
    }
    let d = table;
    tx.batch_execute(&format!("TRUNCATE {}", pg_qualified(&d.target_schema, &d.target_name))).await.ctx(T, what)?;
    tx.execute("DELETE FROM _ferry.chunks WHERE job = $1 AND table_name = $2", &[&job, &name]).await.ctx(T, what)?;
    tx.execute("INSERT INTO _ferry.chunks (job, table_name, chunk) VALUES ($1, $2, 0)", &[&job, &name])
        .await
        .ctx(T, what)?;
    tx.commit().await.ctx(T, what)?;
    Ok(true)
}

/// Rows already copied per table (for progress after a restart).
pub async fn copied_rows(client: &Client, job: &str) -> Result<HashMap<String, u64>> {
    let rows = client
        .query(
            "SELECT table_name, coalesce(sum(rows), 0)::int8 FROM _ferry.chunks WHERE job = $1 AND done GROUP BY 1",
            &[&job],
        )
        .await
        .ctx(T, || "reading the chunk ledger".into())?;
    Ok(rows.iter().map(|r| (r.get::<_, String>(0), r.get::<_, i64>(1).max(0) as u64)).collect())
}

/// The newest position any chunk of each table was read at, by `schema.table`.
pub async fn table_read_lsns(client: &Client, job: &str) -> Result<HashMap<String, u64>> {
    // Not max(read_lsn): PostgreSQL 12 has no max(pg_lsn), but it orders pg_lsn.
    let rows = client
        .query(
            "SELECT DISTINCT ON (table_name) table_name, read_lsn::text FROM _ferry.chunks \
             WHERE job = $1 AND done AND read_lsn IS NOT NULL ORDER BY table_name, read_lsn DESC",
            &[&job],
        )
        .await
        .ctx(T, || "reading the chunk ledger".into())?;
    Ok(rows.iter().filter_map(|r| Some((r.get::<_, String>(0), parse_lsn(r.get::<_, Option<&str>>(1)?)?))).collect())
}

/// Per table copied in one chunk (every table without a key) read in a fresh snapshot: the
/// transactions that snapshot saw (`txid_current_snapshot()`), by table name.
pub async fn single_chunk_snapshots(client: &Client, job: &str) -> Result<HashMap<String, String>> {
    let rows = client
        .query(
            "SELECT table_name, min(read_snapshot) FROM _ferry.chunks WHERE job = $1 AND done \
             GROUP BY 1 HAVING count(*) = 1 AND min(read_snapshot) IS NOT NULL",
            &[&job],
        )
        .await
        .ctx(T, || "reading the chunk ledger".into())?;
    Ok(rows.iter().map(|r| (r.get(0), r.get(1))).collect())
}

/// Marks the full transfer done and sets the end of the idempotent window: the newest position a
/// chunk was read at.
pub async fn finish_full(client: &Client, job: &str) -> Result<u64> {
    let row = client
        .query_one(
            "UPDATE _ferry.jobs j SET full_done = true, updated_at = now(), \
               safe_end_lsn = greatest(j.start_lsn, (SELECT c.read_lsn FROM _ferry.chunks c \
                 WHERE c.job = j.job AND c.read_lsn IS NOT NULL ORDER BY c.read_lsn DESC LIMIT 1)) \
             WHERE job = $1 RETURNING safe_end_lsn::text",
            &[&job],
        )
        .await
        .ctx(T, || "marking the full transfer complete".into())?;
    Ok(parse_lsn(row.get(0)).unwrap_or(0))
}

/// Removes the job's bookkeeping (after a release).
pub async fn forget_job(client: &Client, job: &str) -> Result<()> {
    client.execute("DELETE FROM _ferry.chunks WHERE job = $1", &[&job]).await.ctx(T, || "forgetting the job".into())?;
    client.execute("DELETE FROM _ferry.jobs WHERE job = $1", &[&job]).await.ctx(T, || "forgetting the job".into())?;
    client
        .execute("DELETE FROM _ferry.layouts WHERE job = $1", &[&job])
        .await
        .ctx(T, || "forgetting the job".into())?;
    Ok(())
}

/// The PostgreSQL target half of a job ([`pipeline::Target`]): the `_ferry` ledger, read and
/// written on one target session, and the job's target tables.
pub struct PgTarget {
    /// The session the ledger is read and written on.
    pub client: Client,
    /// The target tables (source and target names, keys), in the job's order.
    pub tables: Vec<TableDef>,
}

impl pipeline::Target for PgTarget {
    async fn ledger(&mut self, job: &crate::engine::Job<'_>) -> Result<Option<Ledger<u64>>> {
        Ok(job_state(&self.client, job.id).await?.map(|s| Ledger {
            start: s.start_lsn,
            safe_end: s.safe_end_lsn,
            checkpoint: s.checkpoint_lsn,
            full_done: s.full_done,
            origin: Origin { name: s.slot, detail: s.publication },
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
        record_job(&mut self.client, job.id, &origin.name, &origin.detail, start, plan, layouts).await
    }

    fn tables(&self) -> &[TableDef] {
        &self.tables
    }

    async fn restart_split_table(&mut self, job: &crate::engine::Job<'_>, table: &TableDef) -> Result<bool> {
        restart_split_table(&mut self.client, job.id, table).await
    }

    async fn copied_rows(&mut self, job: &crate::engine::Job<'_>) -> Result<HashMap<String, u64>> {
        copied_rows(&self.client, job.id).await
    }

    async fn pending_chunks(&mut self, job: &crate::engine::Job<'_>) -> Result<Vec<PendingChunk>> {
        pending_chunks(&self.client, job.id).await
    }

    async fn finish_full(&mut self, job: &crate::engine::Job<'_>) -> Result<()> {
        finish_full(&self.client, job.id).await?;
        Ok(())
    }

    async fn empty(&mut self) -> Result<()> {
        for t in &self.tables {
            let sql = format!("TRUNCATE {}", pg_qualified(&t.target_schema, &t.target_name));
            if let Err(e) = self.client.batch_execute(&sql).await
                && e.code() != Some(&SqlState::UNDEFINED_TABLE)
            {
                return Err(EngineError::query(
                    Side::Target,
                    format!("emptying {}", t.display_target()),
                    describe_pg_error(&e),
                ));
            }
        }
        Ok(())
    }
}

/// Creates the enum types, schemas and tables that are missing: columns with their types, NOT
/// NULL, identity and generated columns as `plan` says. The primary key is created with the
/// table when `with_keys` (nothing to load), otherwise after the load with the constraints and
/// secondary indexes ([`build`](super::structure::build)): building an index once is much cheaper than
/// maintaining it row by row during COPY. Defaults and comments follow ([`settle`](super::structure::settle)).
pub async fn create_structure(
    client: &Client,
    tables: &[PgTable],
    enums: &[EnumType],
    plan: &Plan,
    with_keys: bool,
) -> Result<()> {
    let mut schemas: Vec<&str> = tables.iter().map(|t| t.def.target_schema.as_str()).collect();
    schemas.extend(enums.iter().map(|e| e.schema.as_str()));
    schemas.sort();
    schemas.dedup();
    for s in schemas {
        client
            .batch_execute(&format!("CREATE SCHEMA IF NOT EXISTS {}", pg_ident(s)))
            .await
            .ctx(T, || format!("creating schema {s}"))?;
    }
    for e in enums {
        let exists = client
            .query_opt(
                "SELECT 1 FROM pg_type t JOIN pg_namespace n ON n.oid = t.typnamespace WHERE n.nspname = $1 AND t.typname = $2",
                &[&e.schema, &e.name],
            )
            .await
            .ctx(T, || format!("looking up type {}.{}", e.schema, e.name))?
            .is_some();
        if exists {
            continue;
        }
        // DDL takes no parameters: the server itself quotes the labels, bound as values.
        let ddl: String = client
            .query_one(
                "SELECT format('CREATE TYPE %s AS ENUM (%s)', $1::text, \
                   (SELECT string_agg(quote_literal(l), ', ' ORDER BY o) FROM unnest($2::text[]) WITH ORDINALITY AS x(l, o)))",
                &[&pg_qualified(&e.schema, &e.name), &e.labels],
            )
            .await
            .ctx(T, || format!("preparing type {}.{}", e.schema, e.name))?
            .get(0);
        super::connect::execute_one(client, &ddl).await.ctx(T, || format!("creating type {}.{}", e.schema, e.name))?;
    }
    for (t, tp) in tables.iter().zip(&plan.tables) {
        let d = &t.def;
        let mut cols: Vec<String> = tp.columns.iter().map(|c| c.sql.clone()).collect();
        if with_keys && !d.key.is_empty() {
            let key: Vec<String> = d.key_columns().map(|c| pg_ident(&c.target_name)).collect();
            cols.push(format!("PRIMARY KEY ({})", key.join(", ")));
        }
        let ddl = format!(
            "CREATE TABLE IF NOT EXISTS {} ({})",
            pg_qualified(&d.target_schema, &d.target_name),
            cols.join(", ")
        );
        super::connect::execute_one(client, &ddl).await.ctx(T, || format!("creating table {}", d.display_target()))?;
    }
    Ok(())
}

/// Whether the target tables hold rows already (precheck; not an error for `overwrite`).
pub async fn non_empty_tables(client: &Client, tables: &[PgTable]) -> Result<Vec<String>> {
    let mut out = Vec::new();
    for t in tables {
        let d = &t.def;
        let exists = client
            .query_opt(
                "SELECT 1 FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace WHERE n.nspname = $1 AND c.relname = $2",
                &[&d.target_schema, &d.target_name],
            )
            .await
            .ctx(T, || format!("looking up {}", d.display_target()))?
            .is_some();
        if exists {
            let sql = format!("SELECT EXISTS (SELECT 1 FROM {})", pg_qualified(&d.target_schema, &d.target_name));
            let any: bool =
                client.query_one(&sql, &[]).await.ctx(T, || format!("reading {}", d.display_target()))?.get(0);
            if any {
                out.push(d.display_target());
            }
        }
    }
    Ok(out)
}

/// The COPY statement that loads a table's selected columns.
pub fn copy_in_sql(t: &PgTable) -> String {
    let cols: Vec<String> = t.def.selected().map(|c| pg_ident(&c.target_name)).collect();
    format!(
        "COPY {} ({}) FROM STDIN{}",
        pg_qualified(&t.def.target_schema, &t.def.target_name),
        cols.join(", "),
        if t.binary { " (FORMAT binary)" } else { "" }
    )
}

/// Bytes read between two speed-limit and progress updates.
const ACCOUNT_EVERY: u64 = 256 * 1024;

/// Loads one chunk's COPY data and marks the chunk done, in one target transaction: a chunk is
/// either entirely on the target and in the ledger, or neither.
#[allow(clippy::too_many_arguments)]
pub async fn write_chunk<S>(
    client: &mut Client,
    job: &str,
    table: &PgTable,
    chunk: i32,
    read_lsn: u64,
    read_snapshot: Option<&str>,
    data: S,
    throttle: &Throttle,
    tracker: &Tracker,
) -> Result<u64>
where
    S: futures::Stream<Item = Result<bytes::Bytes>> + Send,
{
    let name = table.def.display_name();
    let what = || format!("loading {name} chunk {chunk}");
    let tx = client.transaction().await.ctx(T, what)?;
    let sink = tx
        .copy_in::<_, bytes::Bytes>(&copy_in_sql(table))
        .await
        .map_err(|e| EngineError::query(T, what(), describe_pg_error(&e)))?;
    futures::pin_mut!(sink);
    futures::pin_mut!(data);
    // Rows arrive one COPY message each: account for them in slices, not one by one.
    let mut unaccounted = 0u64;
    while let Some(buf) = data.try_next().await? {
        unaccounted += buf.len() as u64;
        sink.feed(buf).await.map_err(|e| EngineError::query(T, what(), describe_pg_error(&e)))?;
        if unaccounted >= ACCOUNT_EVERY {
            throttle.take(unaccounted).await;
            tracker.add(None, 0, unaccounted);
            unaccounted = 0;
        }
    }
    throttle.take(unaccounted).await;
    tracker.add(None, 0, unaccounted);
    let rows = sink.as_mut().finish().await.map_err(|e| EngineError::query(T, what(), describe_pg_error(&e)))?;
    let rows_i = rows as i64;
    tx.execute(
        "UPDATE _ferry.chunks SET done = true, rows = $1, read_lsn = $2::text::pg_lsn, read_snapshot = $3 \
         WHERE job = $4 AND table_name = $5 AND chunk = $6",
        &[&rows_i, &fmt_lsn(read_lsn), &read_snapshot, &job, &name, &chunk],
    )
    .await
    .ctx(T, what)?;
    tx.commit().await.ctx(T, what)?;
    Ok(rows)
}

/// Writes chunks of the job's tables on one target session.
pub struct PgChunkTarget<'a> {
    /// The session.
    pub client: Client,
    /// Identity of the job, keying its chunk ledger.
    pub job: &'a str,
    /// The job's tables, indexed as in [`crate::engine::snapshot::Chunk::table`].
    pub tables: &'a [PgTable],
}

impl crate::engine::snapshot::ChunkTarget<ChunkData> for PgChunkTarget<'_> {
    async fn write(
        &mut self,
        chunk: &crate::engine::snapshot::Chunk,
        read_position: u64,
        data: ChunkData,
        throttle: &Throttle,
        tracker: &Tracker,
    ) -> Result<u64> {
        let table = &self.tables[chunk.table];
        let snapshot = data.snapshot.as_deref();
        let client = &mut self.client;
        write_chunk(client, self.job, table, chunk.number, read_position, snapshot, data.rows, throttle, tracker).await
    }
}

/// Applies batches of changes with their checkpoint, caching the statements it prepares.
///
/// It describes its tables when it opens and checks, with every batch and in the batch's
/// transaction, that the tables the batch wrote are still those (same table, the columns it
/// writes with the same types): PostgreSQL converts a value into a column whose type was changed
/// by hand without a word where an assignment cast exists (numeric to integer rounds), and a
/// table dropped and created again takes upserts as if nothing happened. A difference stops the
/// job before the batch commits ([`crate::engine::drift`]).
pub struct Applier {
    client: Client,
    job: String,
    tables: Vec<PgTable>,
    conflict: ConflictPolicy,
    statements: HashMap<StatementKey, Statement>,
    /// Each table as the target described it when the applier opened.
    shapes: Vec<Shape>,
    /// [`SHAPES_SQL`], prepared.
    describe: Statement,
    /// [`CHECKPOINT_SQL`], prepared: sent with the `COMMIT` behind it in one round trip, it must
    /// need no round trip of its own before it runs.
    checkpoint: Statement,
    /// Replay of source tables' column changes.
    ddl: DdlPolicy,
    /// Whether a target transaction is open (a batch ended inside a source transaction).
    in_transaction: bool,
    /// Updates skipped since the last commit (see [`crate::api::Progress::skipped_updates`]).
    missed: u64,
    /// Where skipped updates are counted.
    tracker: Option<Tracker>,
    /// Per table: whether its changes may be reduced to final row states and written set by
    /// set (see [`Applier::compactable`]).
    compactable: Vec<bool>,
    /// The last run failed on a constraint (foreign key, unique, exclusion) while it wrote set
    /// statements: written change by change, in source order, it may not.
    set_refused: bool,
}

/// Target tables (by `schema.name`, quoted) with a unique index or an exclusion constraint
/// besides the primary key, by position (1-based) in the list given.
const OTHER_UNIQUE_SQL: &str = "SELECT n.i FROM unnest($1::text[]) WITH ORDINALITY AS n(name, i) \
     WHERE EXISTS (SELECT 1 FROM pg_index x WHERE x.indrelid = to_regclass(n.name) \
       AND ((x.indisunique AND NOT x.indisprimary) OR x.indisexclusion))";

/// The row changes of a run reduced to each row's final state, per table in the order the run
/// first changed it: by key, the row as it ends (`None`: deleted).
#[derive(Default)]
struct Net<'a> {
    tables: Vec<(usize, NetRows<'a>)>,
}

/// One table's rows in a [`Net`]: by key, the row as it ends (`None`: deleted).
type NetRows<'a> = HashMap<Vec<&'a Cell>, Option<Cow<'a, [Cell]>>>;

impl<'a> Net<'a> {
    /// The rows of `table`, empty at first.
    fn rows(&mut self, table: usize) -> &mut NetRows<'a> {
        let at = match self.tables.iter().position(|(t, _)| *t == table) {
            Some(at) => at,
            None => {
                self.tables.push((table, HashMap::new()));
                self.tables.len() - 1
            }
        };
        &mut self.tables[at].1
    }
}

/// Records a batch's end as the job's checkpoint, in the batch's transaction.
const CHECKPOINT_SQL: &str = "UPDATE _ferry.jobs SET checkpoint_lsn = $1::text::pg_lsn, \
     checkpoint_time = to_timestamp($2), updated_at = now() WHERE job = $3";

/// Describes target tables by `schema.name` (quoted), in the order given: their OID and each
/// live column's name and type; a missing table gives one row without an OID.
const SHAPES_SQL: &str = "SELECT n.i, c.oid::int8, a.attname::text, format_type(a.atttypid, a.atttypmod) \
     FROM unnest($1::text[]) WITH ORDINALITY AS n(name, i) \
     LEFT JOIN pg_class c ON c.oid = to_regclass(n.name) \
     LEFT JOIN pg_attribute a ON a.attrelid = c.oid AND a.attnum > 0 AND NOT a.attisdropped \
     ORDER BY n.i, a.attnum";

/// The shapes [`SHAPES_SQL`] returned for `count` tables, in order (`None`: missing).
fn shapes_of(rows: &[tokio_postgres::Row], count: usize) -> Vec<Option<Shape>> {
    let mut out: Vec<Option<Shape>> = vec![None; count];
    for r in rows {
        let i = usize::try_from(r.get::<_, i64>(0) - 1).unwrap_or(usize::MAX);
        let (Some(slot), Some(oid)) = (out.get_mut(i), r.get::<_, Option<i64>>(1)) else { continue };
        let shape = slot.get_or_insert_with(|| Shape { identity: Some(oid.to_string()), columns: Vec::new() });
        if let (Some(name), Some(ty)) = (r.get::<_, Option<String>>(2), r.get::<_, Option<String>>(3)) {
            shape.columns.push((name, ty));
        }
    }
    out
}

/// The first table of `tables` (indexes into `defs`) whose shape now (`now`, in the same order)
/// differs from `before`, as the error that stops the job.
fn drifted(
    defs: &[PgTable],
    before: &[Shape],
    tables: &[usize],
    now: &[Option<Shape>],
    cause: Option<&str>,
) -> Option<EngineError> {
    tables.iter().zip(now).find_map(|(&t, now)| {
        let d = &defs[t].def;
        let written: Vec<&str> = d.selected().map(|c| c.target_name.as_str()).collect();
        drift::compare(&written, before.get(t), now.as_ref(), false).map(|x| x.error(&d.display_target(), cause))
    })
}

/// The tables a statement writes.
fn written_by(key: &StatementKey) -> Vec<usize> {
    match key {
        StatementKey::Upsert { table, .. }
        | StatementKey::Insert { table }
        | StatementKey::Update { table, .. }
        | StatementKey::Delete { table }
        | StatementKey::SetDelete { table }
        | StatementKey::SetUpsert { table } => vec![*table],
        StatementKey::Truncate { tables } => tables.clone(),
    }
}

#[derive(Clone, Debug, PartialEq, Eq, Hash)]
enum StatementKey {
    Upsert {
        table: usize,
        ignore: bool,
    },
    Insert {
        table: usize,
    },
    /// Update of the columns marked present, matched on the key.
    Update {
        table: usize,
        present: Vec<bool>,
    },
    Delete {
        table: usize,
    },
    Truncate {
        tables: Vec<usize>,
    },
    /// Deletes of many rows by key, the keys bound as one text array per key column.
    SetDelete {
        table: usize,
    },
    /// Upserts of many rows, bound as one text array per selected column.
    SetUpsert {
        table: usize,
    },
}

/// The parameters of a statement: a text value per placeholder, or a text array per
/// placeholder (set statements).
enum Params<'a> {
    Values(Vec<Option<String>>),
    Arrays(Vec<Vec<Option<Cow<'a, str>>>>),
}

impl Params<'_> {
    fn as_sql(&self) -> Vec<&(dyn ToSql + Sync)> {
        match self {
            Params::Values(v) => v.iter().map(|p| p as &(dyn ToSql + Sync)).collect(),
            Params::Arrays(a) => a.iter().map(|p| p as &(dyn ToSql + Sync)).collect(),
        }
    }
}

/// How one change (or a set of rows) is executed: statement and parameters, and what zero
/// affected rows means.
struct Step<'a> {
    key: StatementKey,
    params: Params<'a>,
    table: usize,
    must_affect: bool,
    /// Zero rows affected is an update skipped (see [`crate::api::Progress::skipped_updates`]).
    counts_missing: bool,
}

impl Applier {
    /// An applier writing through `client` (a session of its own). Fails with
    /// `TARGET_TABLE_MISSING` or `TARGET_TABLE_CHANGED` when a table or a column the job writes
    /// is not on the target.
    pub async fn open(client: Client, job: &str, tables: Vec<PgTable>, policy: &crate::api::Policy) -> Result<Applier> {
        let conflict = policy.conflict;
        let describe = client.prepare(SHAPES_SQL).await.ctx(T, || "preparing the target tables' description".into())?;
        let checkpoint = client.prepare(CHECKPOINT_SQL).await.ctx(T, || "preparing the checkpoint".into())?;
        let names: Vec<String> =
            tables.iter().map(|t| pg_qualified(&t.def.target_schema, &t.def.target_name)).collect();
        let rows = client.query(&describe, &[&names]).await.ctx(T, || "describing the target tables".into())?;
        let found = shapes_of(&rows, tables.len());
        let all: Vec<usize> = (0..tables.len()).collect();
        if let Some(e) = drifted(&tables, &[], &all, &found, None) {
            return Err(e);
        }
        let shapes = found.into_iter().map(Option::unwrap_or_default).collect();
        let other_unique: Vec<i64> = client
            .query(OTHER_UNIQUE_SQL, &[&names])
            .await
            .ctx(T, || "reading the target tables' unique indexes".into())?
            .iter()
            .map(|r| r.get(0))
            .collect();
        let compactable = tables
            .iter()
            .enumerate()
            .map(|(i, t)| {
                let d = &t.def;
                !d.key.is_empty() && d.key_columns().all(|c| c.selected) && !other_unique.contains(&(i as i64 + 1))
            })
            .collect();
        Ok(Applier {
            client,
            job: job.to_owned(),
            tables,
            conflict,
            statements: HashMap::new(),
            shapes,
            describe,
            checkpoint,
            ddl: policy.ddl.clone(),
            in_transaction: false,
            missed: 0,
            tracker: None,
            compactable,
            set_refused: false,
        })
    }

    /// Counts the updates it cannot apply in `tracker`'s progress.
    pub fn counting(mut self, tracker: Tracker) -> Applier {
        self.tracker = Some(tracker);
        self
    }

    /// After `err` met `tables`: the error that names a hand-made change to one of them, if the
    /// target shows one.
    async fn diagnose(&self, tables: &[usize], err: &tokio_postgres::Error) -> Option<EngineError> {
        let names: Vec<String> = tables
            .iter()
            .map(|&t| pg_qualified(&self.tables[t].def.target_schema, &self.tables[t].def.target_name))
            .collect();
        let rows = self.client.query(&self.describe, &[&names]).await.ok()?;
        let cause = err.code().map(|c| format!("PostgreSQL error {}", c.code()));
        drifted(&self.tables, &self.shapes, tables, &shapes_of(&rows, tables.len()), cause.as_deref())
    }

    fn cast(&self, table: usize, col: usize, n: usize) -> String {
        format!("${n}::text::{}", self.tables[table].def.columns[col].type_sql)
    }

    /// `(k1, k2) = ($n::t1, $n+1::t2)`-style key match, or all-column match for keyless tables.
    fn match_clause(&self, table: usize, first: usize) -> (String, Vec<usize>) {
        let d = &self.tables[table].def;
        let cols: Vec<usize> = if d.key.is_empty() {
            (0..d.columns.len()).filter(|&i| d.columns[i].selected).collect()
        } else {
            d.key.clone()
        };
        // Key columns are never NULL and `=` uses the primary key index; without a key every
        // column is compared, NULLs included.
        let op = if d.key.is_empty() { "IS NOT DISTINCT FROM" } else { "=" };
        let parts: Vec<String> = cols
            .iter()
            .enumerate()
            .map(|(i, &c)| format!("{} {op} {}", pg_ident(&d.columns[c].target_name), self.cast(table, c, first + i)))
            .collect();
        (parts.join(" AND "), cols)
    }

    fn sql(&self, key: &StatementKey) -> String {
        match key {
            StatementKey::Insert { table } | StatementKey::Upsert { table, .. } => {
                let d = &self.tables[*table].def;
                let sel: Vec<usize> = (0..d.columns.len()).filter(|&i| d.columns[i].selected).collect();
                let names: Vec<String> = sel.iter().map(|&c| pg_ident(&d.columns[c].target_name)).collect();
                let values: Vec<String> = sel.iter().enumerate().map(|(i, &c)| self.cast(*table, c, i + 1)).collect();
                // The source's values of GENERATED ALWAYS identity columns are kept, as COPY keeps them.
                let t = &self.tables[*table];
                let overriding = if t.writes_always_identity() { " OVERRIDING SYSTEM VALUE" } else { "" };
                let mut sql = format!(
                    "INSERT INTO {} ({}){overriding} VALUES ({})",
                    pg_qualified(&d.target_schema, &d.target_name),
                    names.join(", "),
                    values.join(", ")
                );
                if let StatementKey::Upsert { ignore, .. } = key
                    && !d.key.is_empty()
                {
                    let keys: Vec<String> = d.key_columns().map(|c| pg_ident(&c.target_name)).collect();
                    // An UPDATE cannot set a GENERATED ALWAYS identity column.
                    let sets: Vec<String> = sel
                        .iter()
                        .filter(|&&c| !d.key.contains(&c) && !t.always_identity(c))
                        .map(|&c| format!("{0} = EXCLUDED.{0}", pg_ident(&d.columns[c].target_name)))
                        .collect();
                    if *ignore || sets.is_empty() {
                        sql.push_str(&format!(" ON CONFLICT ({}) DO NOTHING", keys.join(", ")));
                    } else {
                        sql.push_str(&format!(" ON CONFLICT ({}) DO UPDATE SET {}", keys.join(", "), sets.join(", ")));
                    }
                }
                sql
            }
            StatementKey::Update { table, present } => {
                let d = &self.tables[*table].def;
                let set_cols: Vec<usize> =
                    (0..d.columns.len()).filter(|&i| d.columns[i].selected && present[i]).collect();
                // An UPDATE cannot set a GENERATED ALWAYS identity column (the source can only have
                // set it to DEFAULT): its value stays bound, and unused.
                let (mut sets, mut unset) = (Vec::new(), String::new());
                for (i, &c) in set_cols.iter().enumerate() {
                    let value = self.cast(*table, c, i + 1);
                    if self.tables[*table].always_identity(c) {
                        unset.push_str(&format!(" AND ({value} IS NULL OR TRUE)"));
                    } else {
                        sets.push(format!("{} = {value}", pg_ident(&d.columns[c].target_name)));
                    }
                }
                let (mut clause, _) = self.match_clause(*table, set_cols.len() + 1);
                clause.push_str(&unset);
                let target = pg_qualified(&d.target_schema, &d.target_name);
                if sets.is_empty() {
                    // Nothing the target can take: whether the row is there is all it can say.
                    format!("SELECT 1 FROM {target} WHERE {clause}")
                } else if d.key.is_empty() {
                    format!(
                        "UPDATE {target} SET {} WHERE ctid = (SELECT ctid FROM {target} WHERE {clause} LIMIT 1)",
                        sets.join(", ")
                    )
                } else {
                    format!("UPDATE {target} SET {} WHERE {clause}", sets.join(", "))
                }
            }
            StatementKey::Delete { table } => {
                let d = &self.tables[*table].def;
                let (clause, _) = self.match_clause(*table, 1);
                let target = pg_qualified(&d.target_schema, &d.target_name);
                if d.key.is_empty() {
                    format!("DELETE FROM {target} WHERE ctid = (SELECT ctid FROM {target} WHERE {clause} LIMIT 1)")
                } else {
                    format!("DELETE FROM {target} WHERE {clause}")
                }
            }
            StatementKey::SetDelete { table } => {
                let d = &self.tables[*table].def;
                let target = pg_qualified(&d.target_schema, &d.target_name);
                let (args, values) = self.unnest(*table, &d.key);
                if let [k] = d.key[..] {
                    // `= ANY` of an array the subquery builds: an index scan per key.
                    format!(
                        "DELETE FROM {target} WHERE {} = ANY(ARRAY(SELECT {values} FROM {args}))",
                        pg_ident(&d.columns[k].target_name)
                    )
                } else {
                    let keys: Vec<String> = d.key_columns().map(|c| pg_ident(&c.target_name)).collect();
                    format!("DELETE FROM {target} WHERE ({}) IN (SELECT {values} FROM {args})", keys.join(", "))
                }
            }
            StatementKey::SetUpsert { table } => {
                let t = &self.tables[*table];
                let d = &t.def;
                let sel: Vec<usize> = (0..d.columns.len()).filter(|&i| d.columns[i].selected).collect();
                let names: Vec<String> = sel.iter().map(|&c| pg_ident(&d.columns[c].target_name)).collect();
                let (args, values) = self.unnest(*table, &sel);
                let overriding = if t.writes_always_identity() { " OVERRIDING SYSTEM VALUE" } else { "" };
                let keys: Vec<String> = d.key_columns().map(|c| pg_ident(&c.target_name)).collect();
                let sets: Vec<String> = sel
                    .iter()
                    .filter(|&&c| !d.key.contains(&c) && !t.always_identity(c))
                    .map(|&c| format!("{0} = EXCLUDED.{0}", pg_ident(&d.columns[c].target_name)))
                    .collect();
                let action =
                    if sets.is_empty() { "NOTHING".to_owned() } else { format!("UPDATE SET {}", sets.join(", ")) };
                format!(
                    "INSERT INTO {} ({}){overriding} SELECT {values} FROM {args} ON CONFLICT ({}) DO {action}",
                    pg_qualified(&d.target_schema, &d.target_name),
                    names.join(", "),
                    keys.join(", ")
                )
            }
            StatementKey::Truncate { tables } => {
                let names: Vec<String> = tables
                    .iter()
                    .map(|&t| pg_qualified(&self.tables[t].def.target_schema, &self.tables[t].def.target_name))
                    .collect();
                format!("TRUNCATE {}", names.join(", "))
            }
        }
    }

    /// `unnest($1::text[], …) AS x(v1, …)` over one text array per column of `cols`, and the
    /// select list casting each to its column's type: the same conversion from the text form as
    /// `$n::text::type` of the statements that write one row.
    fn unnest(&self, table: usize, cols: &[usize]) -> (String, String) {
        let d = &self.tables[table].def;
        let args: Vec<String> = (1..=cols.len()).map(|i| format!("${i}::text[]")).collect();
        let names: Vec<String> = (1..=cols.len()).map(|i| format!("v{i}")).collect();
        let values: Vec<String> =
            cols.iter().enumerate().map(|(i, &c)| format!("x.v{}::{}", i + 1, d.columns[c].type_sql)).collect();
        (format!("unnest({}) AS x({})", args.join(", "), names.join(", ")), values.join(", "))
    }

    /// The text form of a cell, borrowed where it can be.
    fn text_ref(cell: &Cell) -> Option<Cow<'_, str>> {
        match cell {
            Cell::Text(s) => Some(Cow::Borrowed(s)),
            Cell::Bytes(b) => Some(String::from_utf8_lossy(b)),
            Cell::UInt(n) => Some(Cow::Owned(n.to_string())),
            Cell::Null | Cell::Unchanged => None,
        }
    }

    /// Whether changes to `table` may be reduced to each row's final state and written as set
    /// statements: it has a key, written whole, and no other unique index or exclusion
    /// constraint on the target, where the order of the changes could decide whether one
    /// fails.
    fn compactable(&self, table: usize) -> bool {
        self.compactable.get(table).copied().unwrap_or(false)
    }

    /// The key cells of `row` in `table`; `None` when one was not sent.
    fn key_of<'a>(&self, table: usize, row: &'a [Cell]) -> Option<Vec<&'a Cell>> {
        self.tables[table].def.key.iter().map(|&k| row.get(k).filter(|c| **c != Cell::Unchanged)).collect()
    }

    /// Records `change` in the net state of its table (`overwrite` semantics), when it can be:
    /// false when it must run as its own statements, in order, after what the net holds for
    /// its tables.
    fn reduce<'a>(&self, net: &mut Net<'a>, change: &'a Change) -> bool {
        let d = |table: usize| &self.tables[table].def;
        let whole = |table: usize, row: &[Cell]| {
            !row.iter().zip(&d(table).columns).any(|(c, col)| col.selected && *c == Cell::Unchanged)
        };
        match change {
            Change::Insert { table, row } => {
                if !self.compactable(*table) || !whole(*table, row) {
                    return false;
                }
                let Some(key) = self.key_of(*table, row) else { return false };
                net.rows(*table).insert(key, Some(Cow::Borrowed(row)));
                true
            }
            Change::Update { table, old_key, row } => {
                if !self.compactable(*table) {
                    return false;
                }
                let Some(key) = self.key_of(*table, row) else { return false };
                let old = match old_key {
                    Some(old) => match self.key_of(*table, old) {
                        Some(old) => Some(old),
                        None => return false,
                    },
                    None => None,
                };
                let rows = net.rows(*table);
                let image: Cow<'a, [Cell]> = if whole(*table, row) {
                    Cow::Borrowed(row)
                } else {
                    // A TOASTed value left unchanged was not sent: the row's earlier full image
                    // in this run holds it.
                    let Some(Some(before)) = rows.get(old.as_ref().unwrap_or(&key)) else { return false };
                    Cow::Owned(
                        row.iter()
                            .zip(before.iter())
                            .map(|(new, was)| if *new == Cell::Unchanged { was.clone() } else { new.clone() })
                            .collect(),
                    )
                };
                if let Some(old) = old
                    && old != key
                {
                    rows.insert(old, None);
                }
                rows.insert(key, Some(image));
                true
            }
            Change::Delete { table, old } => {
                if !self.compactable(*table) {
                    return false;
                }
                let Some(key) = self.key_of(*table, old) else { return false };
                net.rows(*table).insert(key, None);
                true
            }
            Change::Truncate { .. } | Change::Ddl { .. } | Change::Reshape { .. } => false,
        }
    }

    /// The set statements that write what `net` holds for `tables` (all when `None`), taking it
    /// out: table by table, its deletes first (a key may move to where a deleted row was), then
    /// its upserts.
    fn drain_net<'a>(&self, net: &mut Net<'a>, tables: Option<&[usize]>) -> Vec<Step<'a>> {
        // In the order the run first changed each table: a parent's rows are often written
        // before its children's, as a foreign key on the target wants.
        let (which, kept): (Vec<_>, Vec<_>) =
            std::mem::take(&mut net.tables).into_iter().partition(|(t, _)| tables.is_none_or(|ts| ts.contains(t)));
        net.tables = kept;
        let mut steps = Vec::new();
        for (table, rows) in which {
            let d = &self.tables[table].def;
            let sel: Vec<usize> = (0..d.columns.len()).filter(|&i| d.columns[i].selected).collect();
            let mut gone: Vec<Vec<Option<Cow<'a, str>>>> = vec![Vec::new(); d.key.len()];
            let mut present: Vec<Vec<Option<Cow<'a, str>>>> = vec![Vec::new(); sel.len()];
            for (key, row) in rows {
                match row {
                    None => {
                        for (array, cell) in gone.iter_mut().zip(key) {
                            array.push(Self::text_ref(cell));
                        }
                    }
                    Some(Cow::Borrowed(row)) => {
                        for (array, &c) in present.iter_mut().zip(&sel) {
                            array.push(row.get(c).and_then(Self::text_ref));
                        }
                    }
                    Some(Cow::Owned(row)) => {
                        for (array, &c) in present.iter_mut().zip(&sel) {
                            array.push(row.get(c).and_then(Self::text).map(Cow::Owned));
                        }
                    }
                }
            }
            let step = |key: StatementKey, arrays| Step {
                key,
                params: Params::Arrays(arrays),
                table,
                must_affect: false,
                counts_missing: false,
            };
            if gone.first().is_some_and(|a| !a.is_empty()) {
                steps.push(step(StatementKey::SetDelete { table }, gone));
            }
            if present.first().is_some_and(|a| !a.is_empty()) {
                steps.push(step(StatementKey::SetUpsert { table }, present));
            }
        }
        steps
    }

    fn text(cell: &Cell) -> Option<String> {
        match cell {
            Cell::Text(s) => Some(s.clone()),
            Cell::Bytes(b) => Some(String::from_utf8_lossy(b).into_owned()),
            Cell::UInt(n) => Some(n.to_string()),
            Cell::Null | Cell::Unchanged => None,
        }
    }

    /// Turns one change into the statements that apply it.
    fn steps(&self, change: &Change, idempotent: bool) -> Vec<Step<'static>> {
        let overwrite = idempotent || self.conflict == ConflictPolicy::Overwrite;
        let stop = !idempotent && self.conflict == ConflictPolicy::Stop;
        let selected = |table: usize, row: &[Cell]| -> Vec<Option<String>> {
            let d = &self.tables[table].def;
            row.iter().zip(&d.columns).filter(|(_, c)| c.selected).map(|(v, _)| Self::text(v)).collect()
        };
        let match_params = |table: usize, row: &[Cell]| -> Vec<Option<String>> {
            let d = &self.tables[table].def;
            if d.key.is_empty() {
                row.iter().zip(&d.columns).filter(|(_, c)| c.selected).map(|(v, _)| Self::text(v)).collect()
            } else {
                d.key.iter().map(|&k| row.get(k).and_then(Self::text)).collect()
            }
        };
        match change {
            Change::Insert { table, row } => {
                let key = if stop || self.tables[*table].def.key.is_empty() {
                    StatementKey::Insert { table: *table }
                } else {
                    StatementKey::Upsert { table: *table, ignore: !overwrite }
                };
                vec![Step {
                    key,
                    params: Params::Values(selected(*table, row)),
                    table: *table,
                    must_affect: false,
                    counts_missing: false,
                }]
            }
            Change::Update { table, old_key, row } => {
                let d = &self.tables[*table].def;
                // Whether every value the target takes is there (unselected columns never are).
                let complete = !row.iter().zip(&d.columns).any(|(c, col)| col.selected && *c == Cell::Unchanged);
                let mut steps = Vec::new();
                let mut key_source: &[Cell] = row;
                if let Some(old) = old_key {
                    if complete && overwrite && !d.key.is_empty() {
                        steps.push(Step {
                            key: StatementKey::Delete { table: *table },
                            params: Params::Values(match_params(*table, old)),
                            table: *table,
                            must_affect: false,
                            counts_missing: false,
                        });
                    } else {
                        key_source = old;
                    }
                }
                if complete && overwrite && !d.key.is_empty() {
                    steps.push(Step {
                        key: StatementKey::Upsert { table: *table, ignore: false },
                        params: Params::Values(selected(*table, row)),
                        table: *table,
                        must_affect: false,
                        counts_missing: false,
                    });
                } else {
                    let present: Vec<bool> = row.iter().map(|c| *c != Cell::Unchanged).collect();
                    let mut params: Vec<Option<String>> = row
                        .iter()
                        .zip(&d.columns)
                        .filter(|(c, col)| col.selected && **c != Cell::Unchanged)
                        .map(|(v, _)| Self::text(v))
                        .collect();
                    params.extend(match_params(*table, key_source));
                    steps.push(Step {
                        key: StatementKey::Update { table: *table, present },
                        params: Params::Values(params),
                        table: *table,
                        must_affect: stop,
                        counts_missing: overwrite && !idempotent,
                    });
                }
                steps
            }
            Change::Delete { table, old } => {
                vec![Step {
                    key: StatementKey::Delete { table: *table },
                    params: Params::Values(match_params(*table, old)),
                    table: *table,
                    must_affect: stop,
                    counts_missing: false,
                }]
            }
            Change::Truncate { tables } => {
                vec![Step {
                    key: StatementKey::Truncate { tables: tables.clone() },
                    params: Params::Values(Vec::new()),
                    table: tables.first().copied().unwrap_or(0),
                    must_affect: false,
                    counts_missing: false,
                }]
            }
            // The PostgreSQL stream carries no DDL statements; column changes are applied
            // between runs of row changes (`apply_in_transaction`).
            Change::Ddl { .. } | Change::Reshape { .. } => Vec::new(),
        }
    }

    async fn statement(&mut self, key: &StatementKey) -> Result<Statement> {
        if let Some(s) = self.statements.get(key) {
            return Ok(s.clone());
        }
        let sql = self.sql(key);
        let types = match key {
            StatementKey::SetDelete { table } => vec![Type::TEXT_ARRAY; self.tables[*table].def.key.len()],
            StatementKey::SetUpsert { table } => vec![Type::TEXT_ARRAY; self.tables[*table].def.selected().count()],
            _ => vec![Type::TEXT; sql.matches("::text::").count()],
        };
        let stmt = match self.client.prepare_typed(&sql, &types).await {
            Ok(stmt) => stmt,
            Err(e) => {
                return Err(match self.diagnose(&written_by(key), &e).await {
                    Some(drift) => drift,
                    None => EngineError::query(T, format!("preparing {sql}"), describe_pg_error(&e)),
                });
            }
        };
        self.statements.insert(key.clone(), stmt.clone());
        Ok(stmt)
    }

    /// Applies a batch and moves the checkpoint to its end, in one target transaction. Statements
    /// are pipelined on the connection and run in source order, followed by the description of
    /// the tables they wrote: each statement's lock on its table keeps it as described until the
    /// commit, so a difference from the applier's start stops the batch before it commits. A
    /// change of a source table's columns is replayed (or stops the job) in the same
    /// transaction, between the changes before and after it. A batch that ends in the middle of
    /// a source transaction leaves the target transaction open for the next batch.
    pub async fn apply(&mut self, batch: &ChangeBatch, commit_time_us: Option<i64>) -> Result<()> {
        let Some(end) = batch.end() else { return Ok(()) };
        // Set statements only in a target transaction this batch begins: should they fail on a
        // constraint the order of the source's changes would have kept (a foreign key between
        // two tables, or within one), the batch is written again change by change from its
        // BEGIN. A batch continuing an open transaction could not be, and goes change by change.
        let began = !self.in_transaction;
        if began {
            self.client.batch_execute("BEGIN").await.ctx(T, || "starting an apply transaction".into())?;
            self.in_transaction = true;
        }
        self.set_refused = false;
        if let Err(e) = self.apply_in_transaction(batch, began).await {
            self.in_transaction = false;
            let _ = self.client.batch_execute("ROLLBACK").await;
            let reshapes = batch
                .transactions
                .iter()
                .flat_map(|t| &t.changes)
                .any(|c| matches!(c, Change::Reshape { .. } | Change::Ddl { .. }));
            // A column change replayed in the failed attempt has changed what the applier
            // knows of its table: such a batch is not tried again here.
            if !(began && std::mem::take(&mut self.set_refused) && !reshapes) {
                return Err(e);
            }
            tracing::debug!(error = %e, "set statements refused by a constraint: the batch is written change by change");
            self.client.batch_execute("BEGIN").await.ctx(T, || "starting an apply transaction".into())?;
            self.in_transaction = true;
            if let Err(e) = self.apply_in_transaction(batch, false).await {
                self.in_transaction = false;
                let _ = self.client.batch_execute("ROLLBACK").await;
                return Err(e);
            }
        }
        if batch.open() {
            return Ok(());
        }
        let time = commit_time_us.map(|us| us as f64 / 1e6);
        let lsn = fmt_lsn(end);
        let params: [&(dyn ToSql + Sync); 3] = [&lsn, &time, &self.job];
        // The checkpoint and the COMMIT go in one round trip: a failed checkpoint aborts the
        // transaction, and the COMMIT behind it then only ends it. The statement is prepared:
        // one given as text would be parsed in a round trip of its own, with the COMMIT sent
        // meanwhile, and would then run after it, outside the transaction.
        let checkpoint = self.client.execute(&self.checkpoint, &params);
        let commit = self.client.batch_execute("COMMIT");
        let committed = match futures::future::join(checkpoint, commit).await {
            (Err(e), _) => Err(e).ctx(T, || "writing the checkpoint".into()),
            (Ok(_), Err(e)) => Err(e).ctx(T, || "committing changes".into()),
            (Ok(_), Ok(())) => Ok(()),
        };
        self.in_transaction = false;
        if committed.is_err() {
            let _ = self.client.batch_execute("ROLLBACK").await;
        }
        committed?;
        if self.missed > 0 {
            let missed = std::mem::take(&mut self.missed);
            self.tracker.as_ref().inspect(|t| t.missed_updates(missed));
        }
        Ok(())
    }

    /// The batch's changes, in the open transaction: runs of row changes pipelined, column
    /// changes of source tables in between; `sets`: whether row changes may be written as set
    /// statements.
    async fn apply_in_transaction(&mut self, batch: &ChangeBatch, sets: bool) -> Result<()> {
        let mut run: Vec<&Change> = Vec::with_capacity(batch.len());
        for t in &batch.transactions {
            for c in &t.changes {
                if let Change::Reshape { table, columns, key, changes, layout } = c {
                    self.apply_run(&run, batch.idempotent, sets).await?;
                    run.clear();
                    self.reshape(*table, columns, key, changes, layout).await?;
                } else if let Change::Ddl { statement, tables } = c {
                    self.apply_run(&run, batch.idempotent, sets).await?;
                    run.clear();
                    self.ddl(statement, tables).await?;
                } else {
                    run.push(c);
                }
            }
        }
        self.apply_run(&run, batch.idempotent, sets).await
    }

    /// Row changes, pipelined in the open transaction, with the check that the tables they
    /// wrote are as the applier knows them; `sets`: whether changes may be written as set
    /// statements.
    async fn apply_run(&mut self, changes: &[&Change], idempotent: bool, sets: bool) -> Result<()> {
        if changes.is_empty() {
            return Ok(());
        }
        // Under `overwrite` (and in the idempotent window) the changes of tables that allow it
        // are reduced to each row's final state: rows with different keys commute, and the last
        // image of a row is the row. The rest run change by change, in source order, after what
        // the net holds for their tables.
        let overwrite = sets && (idempotent || self.conflict == ConflictPolicy::Overwrite);
        let mut net = Net::default();
        let mut steps = Vec::with_capacity(changes.len());
        for &c in changes {
            if overwrite && self.reduce(&mut net, c) {
                continue;
            }
            if !net.tables.is_empty() {
                let tables = match c {
                    Change::Insert { table, .. } | Change::Update { table, .. } | Change::Delete { table, .. } => {
                        vec![*table]
                    }
                    Change::Truncate { tables } => tables.clone(),
                    Change::Ddl { .. } | Change::Reshape { .. } => Vec::new(),
                };
                steps.extend(self.drain_net(&mut net, Some(&tables)));
            }
            steps.extend(self.steps(c, idempotent));
        }
        steps.extend(self.drain_net(&mut net, None));
        let mut planned = Vec::with_capacity(steps.len());
        let mut touched = Vec::new();
        for step in steps {
            let stmt = self.statement(&step.key).await?;
            touched.extend(written_by(&step.key));
            planned.push((stmt, step));
        }
        touched.sort_unstable();
        touched.dedup();
        let names: Vec<String> = touched
            .iter()
            .map(|&t| pg_qualified(&self.tables[t].def.target_schema, &self.tables[t].def.target_name))
            .collect();
        let client = &self.client;
        let writes = try_join_all(planned.iter().enumerate().map(|(i, (stmt, step))| {
            let params = step.params.as_sql();
            async move { client.execute(stmt, &params).await.map_err(|e| (Some(i), e)) }
        }));
        let describe = async {
            if names.is_empty() {
                return Ok(Vec::new());
            }
            client.query(&self.describe, &[&names]).await.map_err(|e| (None, e))
        };
        let (counts, rows) = match futures::future::try_join(writes, describe).await {
            Ok(done) => done,
            Err((at, e)) => {
                // The transaction is aborted: end it before asking the catalog anything.
                self.in_transaction = false;
                let _ = self.client.batch_execute("ROLLBACK").await;
                let tables = at.map_or_else(|| touched.clone(), |i| written_by(&planned[i].1.key));
                if let Some(drift) = self.diagnose(&tables, &e).await {
                    return Err(drift);
                }
                let constraint =
                    [SqlState::FOREIGN_KEY_VIOLATION, SqlState::UNIQUE_VIOLATION, SqlState::EXCLUSION_VIOLATION];
                self.set_refused = e.code().is_some_and(|c| constraint.contains(c))
                    && planned
                        .iter()
                        .any(|(_, s)| matches!(s.key, StatementKey::SetDelete { .. } | StatementKey::SetUpsert { .. }));
                let msg = describe_pg_error(&e);
                let table = tables.first().map(|&t| &self.tables[t].def);
                return Err(if e.code() == Some(&SqlState::UNIQUE_VIOLATION) {
                    EngineError::Conflict {
                        table: table.map_or_else(|| "target".into(), |d| d.display_name()),
                        message: msg,
                    }
                } else {
                    // The server's message names a file, not the table, when the disk is full.
                    let table = table.map_or_else(|| "target".into(), |d| d.display_target());
                    EngineError::query(T, format!("applying changes to {table}"), msg)
                });
            }
        };
        if let Some(drift) = drifted(&self.tables, &self.shapes, &touched, &shapes_of(&rows, touched.len()), None) {
            return Err(drift);
        }
        for ((_, step), n) in planned.iter().zip(&counts) {
            if step.must_affect && *n == 0 {
                return Err(EngineError::Conflict {
                    table: self.tables[step.table].def.display_name(),
                    message: "the row a change refers to is missing on the target".into(),
                });
            }
            if step.counts_missing && *n == 0 {
                self.missed += 1;
                tracing::warn!(
                    table = %self.tables[step.table].def.display_target(),
                    "an update found no row on the target and did not carry the whole row (a TOASTed value it left \
                     unchanged is not sent), so the row could not be written: skipped"
                );
            }
        }
        Ok(())
    }

    /// A change of source table `table`'s columns: replayed on the target when `policy.ddl`
    /// says so, accepted when the target already has it (made by hand), otherwise the error
    /// that stops the job. The table's new layout is recorded with the checkpoint.
    async fn reshape(
        &mut self,
        table: usize,
        columns: &[ColumnDef],
        key: &[usize],
        changes: &[ColumnChange],
        layout: &str,
    ) -> Result<()> {
        let (source_name, target) = {
            let d = &self.tables[table].def;
            (d.display_name(), pg_qualified(&d.target_schema, &d.target_name))
        };
        let shape = self.describe_one(&target).await?;
        let has = |name: &str| shape.columns.iter().find(|(n, _)| n == name).map(|(_, ty)| ty.clone());
        let replay = self.ddl.enabled
            && (self.ddl.kinds.is_empty() || self.ddl.kinds.contains(&crate::api::DdlKind::AlterTable));
        let old = &self.tables[table].def.columns;
        let mut statements = Vec::new();
        for change in changes {
            let text = change.describe(columns);
            let (needed, done) = match change {
                ColumnChange::Added { column, existing, default, not_null, unreplayable } => {
                    let Some(c) = columns.get(*column).filter(|c| c.selected) else { continue };
                    if has(&c.target_name).is_some() {
                        continue;
                    }
                    if let Some(why) = unreplayable {
                        return Err(self.schema_stop(&source_name, &target, &text, Some(why), None));
                    }
                    let col = pg_ident(&c.target_name);
                    let mut sql = vec![format!(
                        "ALTER TABLE {target} ADD COLUMN {col} {}{}",
                        c.type_sql,
                        existing.as_ref().map(|v| format!(" DEFAULT {v}")).unwrap_or_default()
                    )];
                    match (existing.is_some(), default) {
                        (_, Some(d)) => sql.push(format!("ALTER TABLE {target} ALTER COLUMN {col} SET DEFAULT {d}")),
                        (true, None) => sql.push(format!("ALTER TABLE {target} ALTER COLUMN {col} DROP DEFAULT")),
                        (false, None) => {}
                    }
                    if *not_null {
                        sql.push(format!("ALTER TABLE {target} ALTER COLUMN {col} SET NOT NULL"));
                    }
                    (sql, false)
                }
                ColumnChange::Dropped { target_name, selected, .. } => {
                    if !selected || has(target_name).is_none() {
                        continue;
                    }
                    (vec![format!("ALTER TABLE {target} DROP COLUMN {}", pg_ident(target_name))], false)
                }
                ColumnChange::Retyped { column, .. } => {
                    let Some(c) = columns.get(*column).filter(|c| c.selected) else { continue };
                    let now = has(&c.target_name);
                    let col = pg_ident(&c.target_name);
                    let sql = format!("ALTER TABLE {target} ALTER COLUMN {col} TYPE {0} USING {col}::{0}", c.type_sql);
                    (vec![sql], now.as_deref() == Some(c.type_sql.as_str()))
                }
                ColumnChange::Renamed { column, from } => {
                    let Some(c) = columns.get(*column).filter(|c| c.selected) else { continue };
                    let Some(was) = old.iter().find(|o| o.name == *from).map(|o| o.target_name.clone()) else {
                        continue;
                    };
                    if was == c.target_name || (has(&c.target_name).is_some() && has(&was).is_none()) {
                        continue;
                    }
                    let sql = format!(
                        "ALTER TABLE {target} RENAME COLUMN {} TO {}",
                        pg_ident(&was),
                        pg_ident(&c.target_name)
                    );
                    (vec![sql], false)
                }
            };
            if done {
                continue;
            }
            if !replay {
                // Made by hand, a dropped or renamed column would leave the changes before it
                // (which still write the old column) nowhere to go.
                let by_hand = matches!(change, ColumnChange::Added { .. } | ColumnChange::Retyped { .. });
                return Err(self.schema_stop(&source_name, &target, &text, None, by_hand.then_some(&needed[..])));
            }
            tracing::info!(table = %source_name, change = %text, "replaying a change of columns on the target");
            statements.extend(needed);
        }
        for sql in &statements {
            if let Err(e) = super::connect::execute_one(&self.client, sql).await {
                self.in_transaction = false;
                let _ = self.client.batch_execute("ROLLBACK").await;
                return Err(EngineError::query(
                    T,
                    format!("replaying a change of source table {source_name} on the target ({sql})"),
                    describe_pg_error(&e),
                ));
            }
        }
        self.tables[table].def.columns = columns.to_vec();
        self.tables[table].def.key = key.to_vec();
        self.statements.retain(|k, _| !written_by(k).contains(&table));
        self.shapes[table] = self.describe_one(&target).await?;
        self.client
            .execute(
                "INSERT INTO _ferry.layouts (job, table_name, layout) VALUES ($1, $2, $3) \
                 ON CONFLICT (job, table_name) DO UPDATE SET layout = EXCLUDED.layout",
                &[&self.job, &source_name, &layout],
            )
            .await
            .ctx(T, || format!("recording the new columns of {source_name}"))?;
        Ok(())
    }

    /// A schema change already written for PostgreSQL (a source of another engine translated
    /// it, as `policy.ddl` allows): run in the open transaction, so it commits with the
    /// checkpoint that passes it and a restarted job never runs it twice. `tables` are the
    /// job's tables it redefines, with their target schema and name once it has run.
    async fn ddl(&mut self, statement: &str, tables: &[(usize, String, String)]) -> Result<()> {
        tracing::info!(statement = %statement, "replaying a schema change on the target");
        if let Err(e) = super::connect::execute_one(&self.client, statement).await {
            self.in_transaction = false;
            let _ = self.client.batch_execute("ROLLBACK").await;
            return Err(EngineError::query(
                T,
                format!("replaying a schema change of the source on the target ({statement})"),
                describe_pg_error(&e),
            ));
        }
        for (table, schema, name) in tables {
            let Some(t) = self.tables.get_mut(*table) else { continue };
            t.def.target_schema.clone_from(schema);
            t.def.target_name.clone_from(name);
            let target = pg_qualified(schema, name);
            self.statements.retain(|k, _| !written_by(k).contains(table));
            self.shapes[*table] = self.describe_one(&target).await?;
            // A unique index it may have added would refuse rows written set by set.
            if let Some(c) = self.compactable.get_mut(*table) {
                *c = false;
            }
        }
        Ok(())
    }

    /// One target table as the catalog describes it now (empty when missing).
    async fn describe_one(&self, target: &str) -> Result<Shape> {
        let rows = self
            .client
            .query(&self.describe, &[&vec![target.to_owned()]])
            .await
            .ctx(T, || format!("describing {target}"))?;
        Ok(shapes_of(&rows, 1).into_iter().next().flatten().unwrap_or_default())
    }

    /// The error that stops the job on a change of columns it does not replay.
    fn schema_stop(
        &self,
        source: &str,
        target: &str,
        change: &str,
        why: Option<&str>,
        statements: Option<&[String]>,
    ) -> EngineError {
        let message = match (why, statements) {
            (Some(why), _) => format!(
                "source table {source} changed ({change}): {why}. The job stopped before applying it; its \
                 checkpoint stays before the change. Fix: start over with a new full transfer (delete the SyncJob \
                 and apply it again); or, if the rows the table held have NULL in it, add the column on the target \
                 by hand and resume the job"
            ),
            (None, statements) => format!(
                "source table {source} changed ({change}), and spec.policy.ddl does not replay column changes \
                 (enabled: false, or alterTable not among its kinds): the target table {target} cannot take the \
                 table's changes without losing values. The job stopped before applying it; its checkpoint stays \
                 before the change. Fix: set spec.policy.ddl.enabled to true (kinds empty or with alterTable) and \
                 resume the job, and Ferry replays it;{} or start over with a new full transfer",
                statements
                    .map(|s| format!(" or make the same change on the target by hand ({}) and resume;", s.join("; ")))
                    .unwrap_or_default()
            ),
        };
        EngineError::Unrecoverable { code: drift::SOURCE_SCHEMA_CHANGED, message }
    }

    /// The session the applier writes through.
    pub fn client(&self) -> &Client {
        &self.client
    }
}

impl crate::engine::apply::ChangeTarget for Applier {
    async fn apply(&mut self, batch: &ChangeBatch, commit_time_us: Option<i64>) -> Result<()> {
        Applier::apply(self, batch, commit_time_us).await
    }
}
