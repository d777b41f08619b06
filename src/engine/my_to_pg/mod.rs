//! MySQL / MariaDB → PostgreSQL, built from the two engines' halves: the MySQL family's catalog,
//! chunk planning, consistent-snapshot reads and binary-log stream on the source; the
//! PostgreSQL target's `_ferry` ledger, `COPY` load and exactly-once applier on the target. What
//! is this pair's own is the type mapping ([`types`], documented in
//! docs/mysql-to-postgresql.md), the structure it implies ([`structure`]), the row format of the
//! copy ([`copy`]) and the conversion of the stream's cells ([`stream`]).
//!
//! The order of things, and why a killed worker resumes without losing or doubling a row:
//! 1. The source's binary log position is taken, the target tables are created (without keys)
//!    and the chunk plan is recorded in `_ferry` on the target, the position in the ledger's
//!    position columns (a binary log position encoded as file sequence and offset, as the MySQL
//!    engine does; the binary log's base name where the PostgreSQL engine keeps its slot name).
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
use super::mysql::catalog::{self, MyTable};
use super::mysql::stream::{BinlogNames, MyChanges, StartAt, StreamOptions};
use super::mysql::{self as my, BinlogPosition, source};
use super::pipeline::{self, Build, Ledger, Transfer};
use super::postgres::catalog::PgTable;
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
    let transfer = MyToPg::open(&job).await?;
    pipeline::run(&job, transfer).await
}

/// The MySQL/MariaDB → PostgreSQL steps of the job [`pipeline`]: the MySQL family's source
/// steps, the PostgreSQL target's ledger, load and applier, and this pair's mapping between
/// them.
struct MyToPg {
    src: Conn,
    tgt: Client,
    tables: Vec<MyTable>,
    plans: Vec<TablePlan>,
    /// The target tables as the PostgreSQL ledger, load and applier take them.
    pg_tables: Vec<PgTable>,
    /// The ledger as last read.
    state: Option<pg_target::JobState>,
}

impl MyToPg {
    /// Connects both sides, resolves the selected tables and maps them, reporting what the
    /// target structure leaves out.
    async fn open(job: &Job<'_>) -> Result<MyToPg> {
        let spec = job.spec;
        let mut src = source(spec, job.credentials).await?;
        let tgt = target(spec, job.credentials).await?;
        pg_target::ensure_bookkeeping(&tgt).await?;
        let tables = catalog::resolve(&mut src, &spec.objects).await?;
        let plans = structure::plan(&tables, &structure::Options::of(spec))?;
        for (object, reason) in plans.iter().flat_map(|p| p.left_out.iter()) {
            tracing::warn!(object = %object, reason = %reason, "left out of the target structure");
            job.tracker.skipped(object, reason);
        }
        let pg_tables = tables.iter().zip(&plans).map(|(t, p)| copy::pg_table(t, p)).collect();
        Ok(MyToPg { src, tgt, tables, plans, pg_tables, state: None })
    }

    /// The binary log naming the ledger records (in the PostgreSQL ledger's slot column).
    fn names(&self) -> BinlogNames {
        BinlogNames { base: self.state.as_ref().map_or_else(String::new, |s| s.slot.clone()), width: 6 }
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

impl Transfer for MyToPg {
    type Position = BinlogPosition;

    fn tables(&self) -> Vec<(String, u64)> {
        self.tables.iter().map(|t| (t.def.display_name(), t.def.estimated_rows)).collect()
    }

    async fn resume(&mut self, job: &Job<'_>) -> Result<Option<Ledger<BinlogPosition>>> {
        self.ledger(job).await
    }

    async fn ledger(&mut self, job: &Job<'_>) -> Result<Option<Ledger<BinlogPosition>>> {
        self.state = pg_target::job_state(&self.tgt, job.id).await?;
        Ok(self.state.as_ref().map(|s| Ledger {
            start: BinlogPosition(s.start_lsn),
            safe_end: s.safe_end_lsn.map(BinlogPosition),
            checkpoint: s.checkpoint_lsn.map(BinlogPosition),
            full_done: s.full_done,
        }))
    }

    async fn begin(&mut self, job: &Job<'_>) -> Result<()> {
        let spec = job.spec;
        let (names, start, gtid) = my::start_position(&mut self.src, spec).await?;
        structure::create_tables(&self.tgt, &self.tables, &self.plans).await?;
        let plan = my::plan_chunks(&mut self.src, &self.tables, spec).await?;
        // The PostgreSQL ledger's slot column holds the binary log's base name, its publication
        // column the start as a GTID position (the start of a job told to start at one).
        pg_target::record_job(&mut self.tgt, job.id, &names.base, &gtid, start.0, &plan, &[]).await?;
        tracing::info!(job = job.id, position = %names.display(start.0), gtid = %gtid, "structure and chunk plan ready");
        Ok(())
    }

    async fn pending(&mut self, job: &Job<'_>, planned: bool) -> Result<Vec<Chunk>> {
        // The ranges of a split keyless table must all be read in one snapshot.
        pg_target::pending(&mut self.tgt, job.id, &self.pg_tables, !planned, &job.tracker).await
    }

    fn builds_during_copy(&self, _job: &Job<'_>, _table: usize) -> bool {
        // A primary key at least, or nothing to lose by asking.
        true
    }

    /// Every pending chunk with `readParallelism` readers: the MySQL family's reader writing
    /// `COPY` text, each chunk loaded with its ledger entry in one PostgreSQL transaction.
    async fn copy(&self, job: &Job<'_>, pending: &[Chunk], copied: UnboundedSender<usize>) -> Result<()> {
        let format: Arc<dyn source::RowFormat> = Arc::new(copy::CopyText::new(&self.tables, &self.plans));
        let open_target = || async {
            let client = target(job.spec, job.credentials).await?;
            Ok(copy::PgLoad { client, job: job.id, tables: &self.pg_tables })
        };
        my::copy_chunks(job, &self.tables, &self.names(), Some(format), pending, copied, open_target).await
    }

    async fn build_table(&self, job: &Job<'_>, table: usize) -> Result<()> {
        let client = target(job.spec, job.credentials).await?;
        let which = MyToPg::indexes(job, false);
        let (t, p) = (std::slice::from_ref(&self.tables[table]), std::slice::from_ref(&self.plans[table]));
        structure::build_keys_and_indexes(&client, t, p, which).await
    }

    async fn build(&mut self, job: &Job<'_>, step: Build) -> Result<()> {
        let which = match step {
            Build::AfterCopy => MyToPg::indexes(job, false),
            // Nothing to copy, nothing to catch up: everything at once.
            Build::WithoutCopy if job.spec.policy.indexes => Indexes::All,
            Build::WithoutCopy => Indexes::None,
            Build::Consistent if job.spec.policy.indexes && job.spec.task_type.has_full() => Indexes::Unique,
            Build::Consistent => return Ok(()),
        };
        structure::build_keys_and_indexes(&self.tgt, &self.tables, &self.plans, which).await
    }

    async fn finish_full(&mut self, job: &Job<'_>) -> Result<()> {
        pg_target::finish_full(&self.tgt, job.id).await?;
        Ok(())
    }

    /// The binary-log stream through the PostgreSQL applier, each row's cells converted by the
    /// pair's mapping; a keyless table's changes up to the snapshot its copy was read in skipped.
    async fn stream(
        &mut self,
        job: &Job<'_>,
        from: BinlogPosition,
        safe_end: BinlogPosition,
        until: Option<BinlogPosition>,
    ) -> Result<()> {
        let spec = job.spec;
        let tgt = target(spec, job.credentials).await?;
        let read = pg_target::table_read_lsns(&tgt, job.id).await?;
        let names = self.names();
        let state = self.state.as_ref();
        // A job told to start at a GTID position starts there until it has a checkpoint.
        let start = match state.map(|s| (s.checkpoint_lsn, s.publication.as_str())) {
            Some((None, gtid)) if from.0 == 0 && !gtid.is_empty() => StartAt::Gtid(gtid.to_owned()),
            _ => {
                let (file, offset) = names.decode(from.0);
                StartAt::File(file, offset)
            }
        };
        let opts = StreamOptions {
            start,
            until_end_of_log: until.is_some(),
            server_id: my::stream::server_id_for(job.id),
            tables: self.tables.clone(),
            selection: spec.objects.clone(),
            ddl: spec.policy.ddl.clone(),
            dml: spec.policy.dml_types.clone(),
            names,
        };
        let changes = MyChanges::open(&spec.source, job.credentials.login(Side::Source), opts).await?;
        let changes = stream::PgChanges::new(changes, &self.tables, &self.plans, &self.pg_tables)?;
        let apply_opts =
            ApplyOptions::for_job(spec, self.tables.iter().map(|t| &t.def), &read, safe_end.0, until.map(|u| u.0))
                .with_heartbeats(true);
        let mut applier = pg_target::Applier::open(tgt, job.id, self.pg_tables.clone(), &spec.policy)
            .await?
            .counting(job.tracker.clone());
        apply::run(changes, &mut applier, &apply_opts, &job.tracker, job.stop.clone()).await
    }

    /// The identity sequences continue after what the source handed out (and what the stream
    /// inserted), on fresh sessions (the first ones may have sat idle through the stream). A
    /// failure is reported, not fatal: the rows are in place.
    async fn cut_over(&mut self, job: &Job<'_>) -> Result<()> {
        let cut_over = async {
            let mut src = source(job.spec, job.credentials).await?;
            let tgt = target(job.spec, job.credentials).await?;
            set_identities(&mut src, &tgt, &self.tables, &self.plans, job).await
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
