//! MySQL / MariaDB → PostgreSQL, composed of the two engines' halves: the MySQL family's
//! [`MySource`] (catalog, chunk planning, consistent-snapshot reads, binary-log stream) and the
//! PostgreSQL [`PgTarget`] (`_ferry` ledger), with the PostgreSQL `COPY` load and exactly-once
//! applier. What is this pair's own ([`MyToPg`], its [`Mapping`]) is the type mapping ([`types`], documented in
//! docs/mysql-to-postgresql.md), the structure it implies ([`structure`]), the row format of the
//! copy ([`copy`]) and the conversion of the stream's cells ([`stream`]).
//!
//! The order of things, and why a killed worker resumes without losing or doubling a row:
//! 1. The source's binary log position is taken, the target tables are created (without keys)
//!    and the chunk plan is recorded in `_ferry` on the target, the position in the ledger's
//!    position columns (a binary log position encoded as file sequence and offset, as the MySQL
//!    engine does; the binary log's base name and GTID start where a PostgreSQL source's slot and
//!    publication are kept).
//! 2. Each chunk is read in its own consistent snapshot, converted to `COPY` text and loaded
//!    and marked done in one PostgreSQL transaction. A restarted worker copies only the chunks
//!    not marked done.
//! 3. Primary keys and secondary indexes are built (unique ones, with a stream, once it has
//!    caught up with the newest chunk's snapshot), identity sequences set to continue after the
//!    source's `AUTO_INCREMENT`, and the transfer marked done.
//! 4. With a stream: the binary log from the start position, applied idempotently up to the
//!    newest chunk's snapshot, each batch committed with its checkpoint; identity sequences set
//!    again at a stop.

pub mod copy;
pub mod ddl;
pub mod precheck;
pub mod stream;
pub mod structure;
pub mod types;

pub use precheck::precheck;

use std::sync::Arc;

use mysql_async::Conn;
use mysql_async::prelude::Queryable;
use tokio_postgres::Client;

use super::apply::{self, ApplyOptions};
use super::error::{Context, EngineError, Result, Side};
use super::mysql::catalog::MyTable;
use super::mysql::{self as my, BinlogPosition, MySource};
use super::pipeline::{self, Build, Ledger, Mapping};
use super::postgres::catalog::PgTable;
use super::postgres::target::PgTarget;
use super::postgres::{self as pg, target as pg_target};
use super::snapshot::Chunk;
use super::{Credentials, Job, Outcome};
use crate::api::SyncJobSpec;
use crate::engine::sql::{pg_ident, pg_qualified};
use structure::{Indexes, TablePlan};
use tokio::sync::mpsc::UnboundedSender;

async fn source(spec: &SyncJobSpec, credentials: &Credentials) -> Result<Conn> {
    my::connect::connect(&spec.source, credentials.login(Side::Source), Side::Source).await
}

async fn target(spec: &SyncJobSpec, credentials: &Credentials) -> Result<Client> {
    pg::connect::connect(&spec.target, credentials.login(Side::Target), Side::Target).await
}

/// Runs the job until its full transfer completes, it is stopped, or it fails.
pub async fn run(job: Job<'_>) -> Result<Outcome> {
    let src = MySource::open(&job).await?;
    let map = MyToPg::new(&job, &src)?;
    let client = target(job.spec, job.credentials).await?;
    pg_target::ensure_bookkeeping(&client).await?;
    let tgt = PgTarget { client, tables: map.pg_tables.iter().map(|t| t.def.clone()).collect() };
    pipeline::run(&job, src, tgt, map).await
}

/// The MySQL/MariaDB → PostgreSQL [`pipeline::Mapping`]: the type mapping, the structure it
/// implies, the copy's rows as `COPY` text and the stream's cells converted.
pub struct MyToPg {
    plans: Vec<TablePlan>,
    /// The target tables as the PostgreSQL ledger, load and applier take them.
    pg_tables: Vec<PgTable>,
}

impl MyToPg {
    /// Maps the source's tables, reporting what the target structure leaves out.
    fn new(job: &Job<'_>, src: &MySource) -> Result<MyToPg> {
        let plans = structure::plan(&src.tables, &structure::Options::of(job.spec))?;
        for (object, reason) in plans.iter().flat_map(|p| p.left_out.iter()) {
            tracing::warn!(object = %object, reason = %reason, "left out of the target structure");
            job.tracker.skipped(object, reason);
        }
        let pg_tables = src.tables.iter().zip(&plans).map(|(t, p)| copy::pg_table(t, p)).collect();
        Ok(MyToPg { plans, pg_tables })
    }

    /// Which secondary indexes a build step of this job adds: unique ones only once the copy is
    /// consistent, none with `policy.indexes: false` (the primary keys always: they are part of
    /// the table, and the applier's upserts need them).
    fn indexes(job: &Job<'_>, consistent: bool) -> Indexes {
        match (job.spec.policy.indexes, consistent) {
            (false, _) => Indexes::None,
            (true, false) => Indexes::NonUnique,
            (true, true) => Indexes::Unique,
        }
    }
}

impl Mapping<MySource, PgTarget> for MyToPg {
    async fn create(&mut self, _job: &Job<'_>, src: &mut MySource, tgt: &mut PgTarget) -> Result<()> {
        structure::create_tables(&tgt.client, &src.tables, &self.plans).await
    }

    fn builds_during_copy(&self, _job: &Job<'_>, _src: &MySource, _table: usize) -> bool {
        // A primary key at least, or nothing to lose by asking.
        true
    }

    /// Every pending chunk with `readParallelism` readers: the MySQL family's reader writing
    /// `COPY` text, each chunk loaded with its ledger entry in one PostgreSQL transaction.
    async fn copy(
        &self,
        job: &Job<'_>,
        src: &MySource,
        _tgt: &PgTarget,
        pending: &[Chunk],
        copied: UnboundedSender<usize>,
    ) -> Result<()> {
        let format: Arc<dyn my::source::RowFormat> = Arc::new(copy::CopyText::new(&src.tables, &self.plans));
        let open_target = || async {
            let client = target(job.spec, job.credentials).await?;
            Ok(copy::PgLoad { client, job: job.id, tables: &self.pg_tables })
        };
        src.copy(job, Some(format), pending, copied, open_target).await
    }

    async fn build_table(&self, job: &Job<'_>, src: &MySource, table: usize) -> Result<()> {
        let client = target(job.spec, job.credentials).await?;
        let which = MyToPg::indexes(job, false);
        let (t, p) = (std::slice::from_ref(&src.tables[table]), std::slice::from_ref(&self.plans[table]));
        structure::build_keys_and_indexes(&client, t, p, which).await
    }

    async fn build(&mut self, job: &Job<'_>, src: &mut MySource, tgt: &mut PgTarget, step: Build) -> Result<()> {
        let which = match step {
            Build::AfterCopy => MyToPg::indexes(job, false),
            // Nothing to copy, nothing to catch up: everything at once.
            Build::WithoutCopy if job.spec.policy.indexes => Indexes::All,
            Build::WithoutCopy => Indexes::None,
            Build::Consistent if job.spec.policy.indexes && job.spec.task_type.has_full() => Indexes::Unique,
            Build::Consistent => return Ok(()),
        };
        structure::build_keys_and_indexes(&tgt.client, &src.tables, &self.plans, which).await
    }

    /// The binary-log stream through the PostgreSQL applier, each row's cells converted by the
    /// pair's mapping; a keyless table's changes up to the snapshot its copy was read in skipped.
    async fn stream(
        &mut self,
        job: &Job<'_>,
        src: &mut MySource,
        tgt: &mut PgTarget,
        ledger: &Ledger<BinlogPosition>,
        until: Option<BinlogPosition>,
    ) -> Result<()> {
        let spec = job.spec;
        let read = pg_target::table_read_lsns(&tgt.client, job.id).await?;
        let changes = src.changes(job, ledger, until).await?;
        let changes = stream::PgChanges::new(changes, &src.tables, &self.plans, &self.pg_tables)?;
        let safe_end = ledger.safe_end().0;
        let apply_opts =
            ApplyOptions::for_job(spec, src.tables.iter().map(|t| &t.def), &read, safe_end, until.map(|u| u.0))
                .with_heartbeats(true);
        let client = target(spec, job.credentials).await?;
        let mut applier = pg_target::Applier::open(client, job.id, self.pg_tables.clone(), &spec.policy)
            .await?
            .counting(job.tracker.clone());
        apply::run(changes, &mut applier, &apply_opts, &job.tracker, job.stop.clone()).await
    }

    /// The identity sequences continue after what the source handed out (and what the stream
    /// inserted), on fresh sessions (the first ones may have sat idle through the stream). A
    /// failure is reported, not fatal: the rows are in place.
    async fn cut_over(&mut self, job: &Job<'_>, src: &mut MySource, _tgt: &mut PgTarget) -> Result<()> {
        let cut_over = async {
            let mut conn = source(job.spec, job.credentials).await?;
            let client = target(job.spec, job.credentials).await?;
            set_identities(&mut conn, &client, &src.tables, &self.plans, job).await
        };
        if let Err(e) = cut_over.await {
            tracing::warn!(code = e.code(), error = %e, "identity sequences not set at the stop");
        }
        Ok(())
    }
}

/// Sets each identity column's sequence to continue after the source's `AUTO_INCREMENT` (or
/// after the largest value copied, if that is higher). A value the column's type cannot take is
/// reported and left.
async fn set_identities(
    src: &mut Conn,
    tgt: &Client,
    tables: &[MyTable],
    plans: &[TablePlan],
    job: &Job<'_>,
) -> Result<()> {
    // MySQL 8 caches information_schema's table statistics, AUTO_INCREMENT among them.
    let _ = src.query_drop("SET SESSION information_schema_stats_expiry = 0").await;
    for (t, p) in tables.iter().zip(plans) {
        let Some((_, target_column)) = &p.identity else { continue };
        let d = &t.def;
        let next: Option<Option<u64>> = src
            .exec_first(
                "SELECT AUTO_INCREMENT FROM information_schema.TABLES WHERE TABLE_SCHEMA = ? AND TABLE_NAME = ?",
                (&d.schema, &d.name),
            )
            .await
            .map_err(|e| {
                EngineError::query(Side::Source, format!("reading the AUTO_INCREMENT of {}", d.display_name()), e)
            })?;
        let next = i64::try_from(next.flatten().unwrap_or(1)).unwrap_or(i64::MAX);
        let table = pg_qualified(&d.target_schema, &d.target_name);
        let sql = format!(
            "SELECT setval(pg_get_serial_sequence($1, $2), \
               greatest($3::int8, (SELECT coalesce(max({col}), 0)::int8 + 1 FROM {table})), false)",
            col = pg_ident(target_column)
        );
        if let Err(e) = tgt.query_one(&sql, &[&table, target_column, &next]).await {
            let object = format!("identity of column {target_column} of {}", d.display_target());
            let reason = format!(
                "the sequence could not be set to the source's next value {next}: {}",
                pg::connect::describe_pg_error(&e).redacted()
            );
            tracing::warn!(object = %object, reason = %reason, "left out");
            job.tracker.skipped(&object, &reason);
        }
    }
    Ok(())
}

/// Removes the job's bookkeeping from the target (nothing is held on the source). Safe to
/// repeat.
pub async fn release(id: &str, spec: &SyncJobSpec, credentials: &Credentials) -> Result<()> {
    let tgt = target(spec, credentials).await?;
    let has = tgt
        .query_opt("SELECT 1 FROM pg_namespace WHERE nspname = '_ferry'", &[])
        .await
        .ctx(Side::Target, || "looking up _ferry".into())?
        .is_some();
    if has {
        pg_target::forget_job(&tgt, id).await?;
    }
    Ok(())
}
