//! PostgreSQL → PostgreSQL: a publication and a logical replication slot with an exported
//! snapshot on the source; parallel binary COPY of primary-key chunks; pgoutput changes applied
//! on the target with the checkpoint in the same transaction.
//!
//! The order of things, and why it is safe to kill the worker anywhere:
//! 1. The slot is created before anything is read, so its stream starts at or before every
//!    snapshot the chunks are read in. The slot, its start position and the chunk plan are
//!    recorded in `_ferry` on the target in one transaction.
//! 2. Each chunk is loaded and marked done in one target transaction. A restarted worker copies
//!    only the chunks not marked done, in fresh snapshots (the exported one is gone), and records
//!    the position each was read at.
//! 3. The stream is applied from the checkpoint (the slot's start at first). Up to the newest
//!    position a chunk was read at, changes are applied idempotently (insert → upsert, delete →
//!    delete if present): the target may already hold their effect.
//! 4. Each batch of changes commits with its checkpoint; the slot is acknowledged only after
//!    that commit, so a crash replays at most what the target has not committed.

pub mod catalog;
pub mod connect;
pub mod poll;
pub mod precheck;
pub mod relay;
pub mod sequences;
pub mod source;
pub mod stream;
pub mod structure;
pub mod target;

use std::collections::HashMap;
use std::time::Duration;

use tokio_postgres::Client;

use self::catalog::PgTable;
use self::source::{Snapshot, VisibleXids};
use self::stream::{Changes, Decoder, SlotSnapshot};
use self::target::Applier;
use super::Credentials;
use super::apply::{self, ApplyOptions};
use super::error::{Context, EngineError, Result, Side};
use super::pipeline::{self, Build, Ledger, Origin};
use super::snapshot;
use super::snapshot::Chunk;
use super::throttle::Throttle;
use super::{Job, Outcome};
use crate::api::SyncJobSpec;
use crate::engine::sql::{pg_ident, pg_qualified};
use tokio::sync::mpsc::UnboundedSender;

/// Names of what a job holds on the source, derived from the job's identity.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct SourceNames {
    /// Replication slot.
    pub slot: String,
    /// Publication.
    pub publication: String,
}

impl SourceNames {
    /// `ferry_<job>_<hash>`: readable, unique per job, at most 63 bytes, only `[a-z0-9_]`.
    pub fn for_job(job: &str) -> SourceNames {
        let hash = job.bytes().fold(0xcbf2_9ce4_8422_2325u64, |h, b| (h ^ u64::from(b)).wrapping_mul(0x0100_0000_01b3));
        let readable: String = job
            .chars()
            .map(|c| if c.is_ascii_alphanumeric() { c.to_ascii_lowercase() } else { '_' })
            .take(40)
            .collect();
        let slot = format!("ferry_{readable}_{:08x}", hash as u32);
        SourceNames { publication: slot.clone(), slot }
    }
}

impl Job<'_> {
    // PostgreSQL sessions of the job's endpoints.
    async fn source(&self) -> Result<Client> {
        connect::connect(&self.spec.source, self.credentials.login(Side::Source), Side::Source).await
    }

    async fn target(&self) -> Result<Client> {
        connect::connect(&self.spec.target, self.credentials.login(Side::Target), Side::Target).await
    }

    fn source_db(&self) -> &str {
        self.spec.source.database.as_deref().unwrap_or("postgres")
    }
}

/// How often a running job writes a heartbeat on the source (see
/// [`stream::HEARTBEAT_PREFIX`]): the slot of a job whose tables are quiet then retains about
/// the WAL the source writes in this time, whatever other tables do.
pub const HEARTBEAT_EVERY: Duration = Duration::from_secs(5);

/// On a connection of its own, until dropped: reads the WAL the job's replication slot retains
/// into the worker metrics and the job's progress (at once, then every 15 s: `status.slot`,
/// which the operator keeps reporting while no worker runs), and with `heartbeat` writes a
/// heartbeat message every [`HEARTBEAT_EVERY`].
struct SlotWatch(tokio::task::JoinHandle<()>);

impl SlotWatch {
    fn start(
        endpoint: &crate::api::Endpoint,
        credentials: Credentials,
        slot: String,
        heartbeat: bool,
        tracker: super::Tracker,
    ) -> SlotWatch {
        let endpoint = endpoint.clone();
        SlotWatch(tokio::spawn(async move {
            let sql = "SELECT (CASE WHEN pg_is_in_recovery() THEN pg_last_wal_receive_lsn() \
                       ELSE pg_current_wal_lsn() END - restart_lsn)::int8 \
                       FROM pg_replication_slots WHERE slot_name = $1";
            let mut warned = false;
            let mut tick = 0u32;
            loop {
                // A lost connection is opened again: the job's stream relies on the heartbeats.
                let client = match connect::connect(&endpoint, credentials.login(Side::Source), Side::Source).await {
                    Ok(c) => c,
                    Err(e) => {
                        tracing::warn!(error = %e, "no connection to watch the slot's retained WAL and write heartbeats");
                        tokio::time::sleep(HEARTBEAT_EVERY).await;
                        continue;
                    }
                };
                while !client.is_closed() {
                    if tick.is_multiple_of(3)
                        && let Ok(Some(row)) = client.query_opt(sql, &[&slot]).await
                        && let Ok(Some(bytes)) = row.try_get::<_, Option<i64>>(0)
                    {
                        let bytes = u64::try_from(bytes).unwrap_or(0);
                        super::metrics::metrics().slot_retained_wal(bytes);
                        let at = k8s_openapi::apimachinery::pkg::apis::meta::v1::Time(jiff::Timestamp::now());
                        tracker.slot(Some(&crate::api::SlotStatus::measured(&slot, bytes, at)));
                    }
                    if heartbeat
                        && let Err(e) = client
                            .execute("SELECT pg_logical_emit_message(false, $1, '')", &[&stream::HEARTBEAT_PREFIX])
                            .await
                        && !std::mem::replace(&mut warned, true)
                    {
                        // Without heartbeats a quiet job's slot moves only with its own tables.
                        tracing::warn!(
                            error = %connect::describe_pg_error(&e),
                            "cannot write heartbeats on the source (pg_logical_emit_message; precheck item \
                             source.heartbeatPrivilege): while the selected tables are quiet, the slot keeps the WAL \
                             other tables write"
                        );
                    }
                    tick = tick.wrapping_add(1);
                    tokio::time::sleep(HEARTBEAT_EVERY).await;
                }
            }
        }))
    }
}

impl Drop for SlotWatch {
    fn drop(&mut self) {
        self.0.abort();
    }
}

/// Ends the server session of an earlier stream of the job that still holds its slot (after a
/// network cut the server notices the lost client only at `wal_sender_timeout`), so the new
/// stream can start. The job's own user may end its own sessions.
async fn take_over_slot(client: &Client, slot: &str) -> Result<()> {
    let sql = "SELECT pg_terminate_backend(active_pid) FROM pg_replication_slots \
               WHERE slot_name = $1 AND active_pid IS NOT NULL AND active_pid <> pg_backend_pid()";
    let ended =
        client.query(sql, &[&slot]).await.ctx(Side::Source, || format!("taking over replication slot {slot}"))?;
    if ended.is_empty() {
        return Ok(());
    }
    tracing::info!(slot, "ended an earlier session that still held the slot");
    // A session busy decoding a large transaction may take a while to notice.
    let deadline = tokio::time::Instant::now() + crate::engine::net::timeout();
    while tokio::time::Instant::now() < deadline {
        let active: bool = client
            .query_one("SELECT active FROM pg_replication_slots WHERE slot_name = $1", &[&slot])
            .await
            .ctx(Side::Source, || format!("looking up replication slot {slot}"))?
            .get(0);
        if !active {
            break;
        }
        tokio::time::sleep(std::time::Duration::from_millis(100)).await;
    }
    Ok(())
}

/// The `pg_logical_emit_message` the heartbeats call (the variant with text content) by its
/// signature on this server, and whether the current user may execute it; `None` when the
/// server has none. The signature is looked up, not written out: 17 added a `flush` argument,
/// so `pg_logical_emit_message(boolean, text, text)` names no function there.
pub(crate) async fn heartbeat_function(
    client: &Client,
) -> std::result::Result<Option<(String, bool)>, tokio_postgres::Error> {
    let row = client
        .query_opt(
            "SELECT p.oid::regprocedure::text, has_function_privilege(p.oid, 'EXECUTE') FROM pg_proc p \
             WHERE p.proname = 'pg_logical_emit_message' AND p.pronamespace = 'pg_catalog'::regnamespace \
             AND p.proargtypes[2] = 'text'::regtype",
            &[],
        )
        .await?;
    Ok(row.map(|r| (r.get(0), r.get(1))))
}

/// Whether the source user may write the heartbeat messages (`pg_logical_emit_message`) that
/// keep a quiet job's slot moving and tell a silent stream from a quiet one.
async fn may_write_heartbeats(client: &Client) -> bool {
    match heartbeat_function(client).await {
        Ok(found) => found.is_some_and(|(_, allowed)| allowed),
        Err(e) => {
            tracing::warn!(error = %connect::describe_pg_error(&e), "cannot tell whether heartbeats may be written");
            false
        }
    }
}

/// Fails with `SLOT_LOST` when the slot exists but the source removed WAL it still needed
/// (`wal_status = 'lost'`, PostgreSQL 13+: `max_slot_wal_keep_size` or a timeout invalidated it).
async fn slot_usable(client: &Client, slot: &str) -> Result<()> {
    let row = client
        .query_opt(
            "SELECT wal_status, current_setting('max_slot_wal_keep_size') FROM pg_replication_slots \
             WHERE slot_name = $1",
            &[&slot],
        )
        .await
        .ctx(Side::Source, || format!("looking up replication slot {slot}"))?;
    let Some(row) = row else { return Ok(()) };
    let (status, keep): (Option<String>, String) = (row.get(0), row.get(1));
    if status.as_deref() != Some("lost") {
        return Ok(());
    }
    Err(EngineError::Unrecoverable {
        code: "SLOT_LOST",
        message: format!(
            "the source invalidated the job's replication slot {slot}: it removed WAL the slot still needed \
             (wal_status lost; max_slot_wal_keep_size = {keep}), so the changes since the checkpoint cannot be \
             read any more. Restart with a new full transfer (delete the SyncJob and apply it again), and give the \
             slot room while a job is stopped or slow (raise max_slot_wal_keep_size, or keep the job streaming)"
        ),
    })
}

/// The slot's position, if the slot exists.
pub async fn slot_position(client: &Client, slot: &str) -> Result<Option<u64>> {
    let row = client
        .query_opt(
            "SELECT coalesce(confirmed_flush_lsn, restart_lsn)::text FROM pg_replication_slots WHERE slot_name = $1",
            &[&slot],
        )
        .await
        .ctx(Side::Source, || format!("looking up replication slot {slot}"))?;
    Ok(row.and_then(|r| r.get::<_, Option<String>>(0)).as_deref().and_then(target::parse_lsn))
}

/// Drops the slot (waiting for a previous worker's connection to let go) and the publication.
pub async fn drop_source_objects(client: &Client, names: &SourceNames) -> Result<()> {
    for attempt in 0..30 {
        let res = client
            .query(
                "SELECT pg_drop_replication_slot(slot_name) FROM pg_replication_slots WHERE slot_name = $1",
                &[&names.slot],
            )
            .await;
        match res {
            Ok(_) => break,
            Err(e) if e.code() == Some(&tokio_postgres::error::SqlState::OBJECT_IN_USE) && attempt < 29 => {
                tokio::time::sleep(Duration::from_millis(500)).await;
            }
            Err(e) => {
                return Err(EngineError::query(
                    Side::Source,
                    format!("dropping slot {}", names.slot),
                    connect::describe_pg_error(&e),
                ));
            }
        }
    }
    client
        .batch_execute(&format!("DROP PUBLICATION IF EXISTS {}", pg_ident(&names.publication)))
        .await
        .ctx(Side::Source, || format!("dropping publication {}", names.publication))
}

/// The first source version (`server_version_num`) that publishes row filters and column
/// lists; before it the publication carries whole rows and the decoder filters them.
pub const PUBLICATION_FILTERS_SINCE: u32 = 150_000;

/// The first source version that publishes a partitioned table (as itself, with
/// `publish_via_partition_root`).
pub const PARTITIONED_SINCE: u32 = 130_000;

/// `CREATE PUBLICATION` for the selected tables on a source of `version`: with their column
/// lists and row filters from 15 on, and changes of partitions published as their partitioned
/// table (whose name the job knows).
fn publication_sql(name: &str, tables: &[PgTable], version: u32) -> String {
    let parts: Vec<String> = tables
        .iter()
        .map(|t| {
            let d = &t.def;
            let mut s = pg_qualified(&d.schema, &d.name);
            if version >= PUBLICATION_FILTERS_SINCE {
                if t.publishes_column_list() {
                    let cols: Vec<String> = d.selected().map(|c| pg_ident(&c.name)).collect();
                    s.push_str(&format!(" ({})", cols.join(", ")));
                }
                if let Some(f) = &d.filter {
                    s.push_str(&format!(" WHERE ({f})"));
                }
            }
            s
        })
        .collect();
    let mut sql = format!("CREATE PUBLICATION {} FOR TABLE {}", pg_ident(name), parts.join(", "));
    if version >= PARTITIONED_SINCE && tables.iter().any(|t| t.partitioned) {
        sql.push_str(" WITH (publish_via_partition_root = true)");
    }
    sql
}

/// Refuses what a source of `version` cannot publish.
fn check_publishable(tables: &[PgTable], version: u32) -> Result<()> {
    let partitioned: Vec<String> = tables.iter().filter(|t| t.partitioned).map(|t| t.def.display_name()).collect();
    if version < PARTITIONED_SINCE && !partitioned.is_empty() {
        return Err(EngineError::Unsupported(format!(
            "partitioned tables {}: PostgreSQL {} cannot publish a partitioned table (13 and later can); \
             select its partitions instead",
            partitioned.join(", "),
            version / 10_000
        )));
    }
    Ok(())
}

/// Runs the job until it completes (`FULL_TRANS`), is stopped, or fails.
pub async fn run(job: Job<'_>) -> Result<Outcome> {
    let src = PgSource::open(&job).await?;
    let tgt = job.target().await?;
    target::ensure_bookkeeping(&tgt).await?;
    let tgt = target::PgTarget { client: tgt, tables: src.tables.iter().map(|t| t.def.clone()).collect() };
    let map = PgToPg::new(&job, &src).await?;
    pipeline::run(&job, src, tgt, map).await
}

/// The PostgreSQL source half of a job ([`pipeline::Source`]): the publication and logical
/// replication slot the job holds, the slot's exported snapshot while this run holds it, and the
/// selected tables.
pub struct PgSource {
    client: Client,
    /// The selected tables, with the columns the stream has reached once the job has started.
    pub tables: Vec<PgTable>,
    version: u32,
    names: SourceNames,
    /// Where the job's stream starts.
    start: Lsn,
    /// The slot created in this run, with its exported snapshot, until its stream is opened.
    held: Option<SlotSnapshot>,
    /// Whether the stream hears from the source every few seconds (heartbeats, or polls).
    hears_regularly: bool,
    slot_watch: Option<SlotWatch>,
}

impl PgSource {
    /// Connects to the source and resolves the selected tables, refusing what the source cannot
    /// publish or the stream could not filter before anything is copied.
    pub async fn open(job: &Job<'_>) -> Result<PgSource> {
        let spec = job.spec;
        let client = job.source().await?;
        let tables = catalog::resolve(&client, &spec.objects, job.source_db()).await?;
        let version = catalog::server_version(&client, Side::Source).await?;
        check_publishable(&tables, version)?;
        if version < PUBLICATION_FILTERS_SINCE && (spec.task_type.has_incremental() || version < poll::STREAMING_SINCE)
        {
            // The stream applies the filters: fail before copying anything if one cannot follow it.
            Decoder::new(&tables).filtering(&tables)?;
        }
        Ok(PgSource {
            client,
            tables,
            version,
            names: SourceNames::for_job(job.id),
            start: Lsn(0),
            held: None,
            hears_regularly: false,
            slot_watch: None,
        })
    }
}

/// A WAL position.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub struct Lsn(pub u64);

impl pipeline::Position for Lsn {
    fn to_ledger(self) -> u64 {
        self.0
    }
    fn from_ledger(stored: u64) -> Lsn {
        Lsn(stored)
    }
}

impl pipeline::Source for PgSource {
    type Position = Lsn;

    fn tables(&self) -> Vec<(String, u64)> {
        self.tables.iter().map(|t| (t.def.display_name(), t.def.estimated_rows)).collect()
    }

    async fn resume(&mut self, job: &Job<'_>, ledger: &Ledger<Lsn>) -> Result<bool> {
        let slot = &ledger.origin.name;
        if slot_position(&self.client, slot).await?.is_none() {
            // Dropped by hand, or a release: what the target holds can no longer be brought up
            // to date.
            tracing::warn!(job = job.id, slot = %slot, "replication slot missing");
            return Ok(false);
        }
        if self.version >= 130_000 {
            slot_usable(&self.client, slot).await?;
        }
        self.start = ledger.start;
        Ok(true)
    }

    async fn start(&mut self, job: &Job<'_>) -> Result<(Lsn, Origin)> {
        let (client, names) = (&self.client, &self.names);
        drop_source_objects(client, names).await?;
        client
            .batch_execute(&publication_sql(&names.publication, &self.tables, self.version))
            .await
            .ctx(Side::Source, || format!("creating publication {}", names.publication))?;
        self.held = if self.version >= poll::STREAMING_SINCE {
            let login = job.credentials.login(Side::Source);
            Some(SlotSnapshot::create(&job.spec.source, login, &names.slot, &names.publication).await?)
        } else {
            // No exported snapshot: the chunks are read in fresh snapshots.
            poll::create_slot(client, &names.slot).await?;
            None
        };
        let start = slot_position(client, &names.slot)
            .await?
            .ok_or_else(|| EngineError::Stream(format!("slot {} vanished after creation", names.slot)))?;
        self.start = Lsn(start);
        Ok((self.start, Origin { name: names.slot.clone(), detail: names.publication.clone() }))
    }

    async fn plan(&mut self, job: &Job<'_>) -> Result<pipeline::Plan> {
        let rows_per_chunk = snapshot::rows_per_chunk(job.spec);
        // Every chunk of this first pass is read in the slot's exported snapshot.
        let one_snapshot = self.held.is_some();
        let mut plan = Vec::new();
        for t in &self.tables {
            plan.push((
                t.def.display_name(),
                source::plan_chunks(&self.client, t, rows_per_chunk, one_snapshot).await?,
            ));
        }
        Ok(plan)
    }

    fn layouts(&self) -> Vec<(String, String)> {
        self.tables.iter().map(|t| (t.def.display_name(), t.layout())).collect()
    }

    async fn prepare(&mut self, job: &Job<'_>) -> Result<()> {
        // The slot holds WAL from here on: watch how much, for the alert on a growing backlog.
        let heartbeat = self.version >= poll::STREAMING_SINCE && may_write_heartbeats(&self.client).await;
        // Sources before 14 are polled: every answered poll says the source is there.
        self.hears_regularly = heartbeat || self.version < poll::STREAMING_SINCE;
        self.slot_watch = Some(SlotWatch::start(
            &job.spec.source,
            job.credentials.clone(),
            self.names.slot.clone(),
            heartbeat,
            job.tracker.clone(),
        ));
        Ok(())
    }

    fn snapshots_differ(&self, _planned: bool) -> bool {
        // Pages of a keyless table copied in the exported snapshot and the rest in fresh ones
        // would hold an updated row twice or not at all.
        self.held.is_none()
    }

    async fn complete(&mut self, job: &Job<'_>) -> Result<()> {
        self.slot_watch = None;
        self.held = None;
        drop_source_objects(&self.client, &self.names).await?;
        job.tracker.slot(None);
        Ok(())
    }
}

/// The PostgreSQL → PostgreSQL [`pipeline::Mapping`]: the structure the target gets beyond the
/// columns' types and keys (constraints, defaults, comments, foreign keys), the sequences that
/// follow the source, binary `COPY` chunks and pgoutput changes as they are.
struct PgToPg {
    sequences: sequences::Sequences,
    /// What the target gets beyond the columns' types and keys.
    design: structure::Plan,
    carrier: Option<sequences::Carrier>,
}

impl PgToPg {
    async fn new(job: &Job<'_>, src: &PgSource) -> Result<PgToPg> {
        let sequences = sequences::resolve(&src.client, &src.tables).await?;
        let design = structure::plan(&src.tables, job.spec);
        Ok(PgToPg { sequences, design, carrier: None })
    }

    fn carrier(&self) -> Result<&sequences::Carrier> {
        self.carrier.as_ref().ok_or_else(|| EngineError::Stream("sequences not prepared".into()))
    }
}

impl pipeline::Mapping<PgSource, target::PgTarget> for PgToPg {
    async fn resumed(&mut self, job: &Job<'_>, src: &mut PgSource, tgt: &mut target::PgTarget) -> Result<()> {
        // A job that has started reads its stream with the columns it has reached there.
        src.tables = target::with_recorded_layouts(&tgt.client, job.id, std::mem::take(&mut src.tables)).await?;
        Ok(())
    }

    async fn create(&mut self, job: &Job<'_>, src: &mut PgSource, tgt: &mut target::PgTarget) -> Result<()> {
        let spec = job.spec;
        let (tables, tgt) = (&src.tables, &tgt.client);
        let enums = catalog::enum_types(&src.client, tables).await?;
        self.sequences.create_before_tables(tgt).await?;
        // The sequences that defaults name are on the target by now.
        self.design.check_target(tgt).await?;
        target::create_structure(tgt, tables, &enums, &self.design, !spec.task_type.has_full()).await?;
        self.sequences.own_after_tables(tgt).await?;
        if !spec.task_type.has_full() {
            // Nothing to load: the constraints and indexes come at once.
            structure::build(|| job.target(), tables, &self.design, structure::parallelism(spec), true).await?;
        }
        Ok(())
    }

    async fn prepare(&mut self, job: &Job<'_>, src: &mut PgSource, tgt: &mut target::PgTarget) -> Result<()> {
        // Every start: what the target lacks for the structure is known, and defaults and
        // comments left out for want of it earlier are set once it is there.
        self.design.check_target(&tgt.client).await?;
        structure::settle(&tgt.client, &src.tables, &self.design).await?;
        self.design.report(&job.tracker);
        // nextval() is not decoded: the sequences' values are polled (copied, followed, cut over).
        self.carrier = Some(sequences::Carrier::new(job, &self.sequences));
        Ok(())
    }

    fn builds_during_copy(&self, _job: &Job<'_>, _src: &PgSource, _table: usize) -> bool {
        // Every table has its key, constraints or indexes, or nothing to lose by asking.
        true
    }

    /// Every pending chunk with `readParallelism` readers, each with its own source and target
    /// sessions, in the slot's exported snapshot while this run holds it.
    async fn copy(
        &self,
        job: &Job<'_>,
        src: &PgSource,
        _tgt: &target::PgTarget,
        pending: &[Chunk],
        copied: UnboundedSender<usize>,
    ) -> Result<()> {
        let snapshot = match &src.held {
            Some(s) => Snapshot::Exported(s.name().to_owned()),
            None => Snapshot::Fresh,
        };
        let start_lsn = src.start.0;
        let tables = &src.tables;
        let throttle = Throttle::new(&job.spec.speed_limits);
        let open_source = || async {
            let client = job.source().await?;
            Ok(source::PgChunkSource { client, tables, snapshot: snapshot.clone(), start_lsn })
        };
        let open_target = || async { Ok(target::PgChunkTarget { client: job.target().await?, job: job.id, tables }) };
        let parallel = snapshot::parallelism(job.spec);
        snapshot::copy_reporting(
            pending,
            parallel,
            open_source,
            open_target,
            &throttle,
            &job.tracker,
            &job.stop,
            copied,
        )
        .await
    }

    async fn build_table(&self, job: &Job<'_>, src: &PgSource, table: usize) -> Result<()> {
        structure::build_tables(|| job.target(), &src.tables, &self.design, 1, false, vec![table]).await
    }

    async fn build(
        &mut self,
        job: &Job<'_>,
        src: &mut PgSource,
        _tgt: &mut target::PgTarget,
        step: Build,
    ) -> Result<()> {
        match step {
            Build::AfterCopy => {
                let parallel = structure::parallelism(job.spec);
                structure::build(|| job.target(), &src.tables, &self.design, parallel, false).await?;
                // The sequences as of the copy, before the transfer counts as finished.
                self.carrier()?.sync(&job.tracker).await
            }
            // The structure was built with the tables (create).
            Build::WithoutCopy => Ok(()),
            Build::Consistent => {
                if !job.spec.task_type.has_incremental() {
                    // No stream to open from the exported snapshot.
                    src.held = None;
                }
                if self.design.tables.iter().all(|t| t.foreign_keys.is_empty()) {
                    return Ok(());
                }
                // The target now holds the source as of one moment: the foreign keys hold there.
                foreign_keys(job, &src.tables, &self.design).await
            }
        }
    }

    async fn stream(
        &mut self,
        job: &Job<'_>,
        src: &mut PgSource,
        _tgt: &mut target::PgTarget,
        ledger: &Ledger<Lsn>,
        until: Option<Lsn>,
    ) -> Result<()> {
        let changes = open_changes(job, src.held.take(), &src.names, &src.tables, ledger.from().0, src.version).await?;
        // While the stream runs for good, the sequences follow the source.
        let watch = match until {
            None => Some(self.carrier()?.watch(&job.tracker)),
            Some(_) => None,
        };
        let safe_end = ledger.safe_end().0;
        apply_stream(job, changes, &src.tables, safe_end, until.map(|u| u.0), src.hears_regularly).await?;
        if let Some(watch) = watch {
            watch.stop().await;
        }
        Ok(())
    }

    async fn cut_over(&mut self, job: &Job<'_>, _src: &mut PgSource, _tgt: &mut target::PgTarget) -> Result<()> {
        self.carrier()?.cut_over(&job.tracker).await
    }
}

/// Adds the foreign keys and reports those that could not be validated.
async fn foreign_keys(job: &Job<'_>, tables: &[PgTable], plan: &structure::Plan) -> Result<()> {
    let started = std::time::Instant::now();
    let invalid =
        structure::build_foreign_keys(|| job.target(), tables, plan, structure::parallelism(job.spec)).await?;
    for (object, reason) in &invalid {
        tracing::warn!(job = job.id, object, reason, "foreign key not validated");
        job.tracker.skipped(object, reason);
    }
    tracing::info!(job = job.id, seconds = started.elapsed().as_secs_f64(), "foreign keys built");
    Ok(())
}

async fn open_changes(
    job: &Job<'_>,
    held: Option<SlotSnapshot>,
    names: &SourceNames,
    tables: &[PgTable],
    from: u64,
    version: u32,
) -> Result<Changes> {
    let login = job.credentials.login(Side::Source);
    let decoder = decoder(job, tables, version).await?;
    match held {
        Some(slot) => slot.into_changes(decoder, from).await,
        None if version >= poll::STREAMING_SINCE => {
            take_over_slot(&job.source().await?, &names.slot).await?;
            Changes::open(&job.spec.source, login, &names.slot, &names.publication, decoder, from).await
        }
        None => poll::open(&job.spec.source, login, &names.slot, &names.publication, decoder, from).await,
    }
}

/// The decoder of the job's changes: it drops what tables copied in one chunk in a fresh
/// snapshot hold already, and before 15 it applies the row filters the publication cannot.
async fn decoder(job: &Job<'_>, tables: &[PgTable], version: u32) -> Result<Decoder> {
    let copied = copied_snapshots(&job.target().await?, job.id).await?;
    let decoder = Decoder::new(tables).skipping_copied(&copied).with_catalog(job.source().await?);
    if version < PUBLICATION_FILTERS_SINCE { decoder.filtering(tables) } else { Ok(decoder) }
}

/// The tables copied in one chunk read in a fresh snapshot, with the transactions it saw.
async fn copied_snapshots(tgt: &Client, job: &str) -> Result<HashMap<String, VisibleXids>> {
    let copied = target::single_chunk_snapshots(tgt, job).await?;
    Ok(copied.into_iter().filter_map(|(table, snapshot)| Some((table, VisibleXids::parse(&snapshot)?))).collect())
}

/// Applies the change stream until stopped, or (with `until`) until a transaction ending at or
/// past that position is applied.
async fn apply_stream(
    job: &Job<'_>,
    changes: Changes,
    tables: &[PgTable],
    safe_end: u64,
    until: Option<u64>,
    hears_regularly: bool,
) -> Result<()> {
    let spec = job.spec;
    let client = job.target().await?;
    let mut read_lsns = target::table_read_lsns(&client, job.id).await?;
    // The decoder skips by transaction what these tables' copies hold.
    for table in copied_snapshots(&client, job.id).await?.keys() {
        read_lsns.remove(table);
    }
    let opts = ApplyOptions::for_job(spec, tables.iter().map(|t| &t.def), &read_lsns, safe_end, until)
        .with_heartbeats(hears_regularly);
    let mut applier = Applier::open(client, job.id, tables.to_vec(), &spec.policy).await?.counting(job.tracker.clone());
    apply::run(changes, &mut applier, &opts, &job.tracker, job.stop.clone()).await
}

/// Releases what the job holds: the slot and publication on the source, its bookkeeping on the
/// target. Safe to repeat.
pub async fn release(id: &str, spec: &SyncJobSpec, credentials: &Credentials) -> Result<()> {
    let names = SourceNames::for_job(id);
    let src = connect::connect(&spec.source, credentials.login(Side::Source), Side::Source).await?;
    drop_source_objects(&src, &names).await?;
    if let Ok(tgt) = connect::connect(&spec.target, credentials.login(Side::Target), Side::Target).await {
        let has = tgt
            .query_opt("SELECT 1 FROM pg_namespace WHERE nspname = '_ferry'", &[])
            .await
            .ctx(Side::Target, || "looking up _ferry".into())?
            .is_some();
        if has {
            target::forget_job(&tgt, id).await?;
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn source_names_are_valid_identifiers_and_differ_per_job() {
        let a = SourceNames::for_job("default/orders-pg");
        let b = SourceNames::for_job("other/orders-pg");
        assert!(a.slot.starts_with("ferry_default_orders_pg_"), "{}", a.slot);
        assert_ne!(a.slot, b.slot);
        let long = SourceNames::for_job(&"x".repeat(300));
        assert!(long.slot.len() <= 63);
        assert!(a.slot.chars().all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '_'));
    }
}
