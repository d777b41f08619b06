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
use super::snapshot;
use super::throttle::Throttle;
use super::{Job, Outcome};
use crate::api::{SyncJobSpec, TableState, TransferStage};
use crate::engine::sql::{pg_ident, pg_qualified};

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
    fn stopping(&self) -> bool {
        *self.stop.borrow()
    }

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
    let spec = job.spec;
    let names = SourceNames::for_job(job.id);
    let src = job.source().await?;
    let mut tgt = job.target().await?;
    target::ensure_bookkeeping(&tgt).await?;
    let tables = catalog::resolve(&src, &spec.objects, job.source_db()).await?;
    let version = catalog::server_version(&src, Side::Source).await?;
    check_publishable(&tables, version)?;
    if version < PUBLICATION_FILTERS_SINCE && (spec.task_type.has_incremental() || version < poll::STREAMING_SINCE) {
        // The stream applies the filters: fail before copying anything if one cannot follow it.
        Decoder::new(&tables).filtering(&tables)?;
    }
    let sequences = sequences::resolve(&src, &tables).await?;
    job.tracker.tables(&tables.iter().map(|t| (t.def.display_name(), t.def.estimated_rows)).collect::<Vec<_>>());
    job.tracker.stage(TransferStage::Starting);
    // What the target gets beyond the columns' types and keys.
    let mut design = structure::plan(&tables, spec);

    let mut state = target::job_state(&tgt, job.id).await?;
    if let Some(s) = &state
        && slot_position(&src, &s.slot).await?.is_none()
    {
        // The slot is gone (dropped by hand, or a release): what the target holds can no longer
        // be brought up to date, so start over.
        tracing::warn!(job = job.id, slot = %s.slot, "replication slot missing: starting the transfer over");
        truncate_targets(&tgt, &tables).await?;
        state = None;
    }
    if let Some(s) = &state
        && version >= 130_000
    {
        slot_usable(&src, &s.slot).await?;
    }
    // A job that has started reads its stream with the columns it has reached there.
    let tables = if state.is_some() { target::with_recorded_layouts(&tgt, job.id, tables).await? } else { tables };
    let mut held_snapshot = None;
    let state = match state {
        Some(s) => s,
        None => {
            drop_source_objects(&src, &names).await?;
            src.batch_execute(&publication_sql(&names.publication, &tables, version))
                .await
                .ctx(Side::Source, || format!("creating publication {}", names.publication))?;
            let started = std::time::Instant::now();
            let slot = if version >= poll::STREAMING_SINCE {
                let login = job.credentials.login(Side::Source);
                Some(SlotSnapshot::create(&spec.source, login, &names.slot, &names.publication).await?)
            } else {
                // No exported snapshot: the chunks are read in fresh snapshots.
                poll::create_slot(&src, &names.slot).await?;
                None
            };
            let start = slot_position(&src, &names.slot)
                .await?
                .ok_or_else(|| EngineError::Stream(format!("slot {} vanished after creation", names.slot)))?;
            let enums = catalog::enum_types(&src, &tables).await?;
            sequences.create_before_tables(&tgt).await?;
            // The sequences that defaults name are on the target by now.
            design.check_target(&tgt).await?;
            target::create_structure(&tgt, &tables, &enums, &design, !spec.task_type.has_full()).await?;
            sequences.own_after_tables(&tgt).await?;
            if !spec.task_type.has_full() {
                // Nothing to load: the constraints and indexes come at once.
                structure::build(|| job.target(), &tables, &design, structure::parallelism(spec), true).await?;
            }
            let rows_per_chunk = snapshot::rows_per_chunk(spec);
            let mut plan = Vec::new();
            if spec.task_type.has_full() {
                // Every chunk of this first pass is read in the slot's exported snapshot.
                let one_snapshot = slot.is_some();
                for t in &tables {
                    plan.push((
                        t.def.display_name(),
                        source::plan_chunks(&src, t, rows_per_chunk, one_snapshot).await?,
                    ));
                }
            }
            target::record_job(&mut tgt, job.id, &names.slot, &names.publication, start, &plan, &tables).await?;
            tracing::info!(
                job = job.id,
                seconds = started.elapsed().as_secs_f64(),
                "slot, structure and chunk plan ready"
            );
            held_snapshot = slot;
            target::job_state(&tgt, job.id)
                .await?
                .ok_or_else(|| EngineError::query(Side::Target, "reading the job back", "row missing after insert"))?
        }
    };

    // Every start: what the target lacks for the structure is known, and defaults and comments
    // left out for want of it earlier are set once it is there.
    design.check_target(&tgt).await?;
    structure::settle(&tgt, &tables, &design).await?;
    design.report(&job.tracker);

    // The slot holds WAL from here on: watch how much, for the alert on a growing backlog.
    let heartbeat = version >= poll::STREAMING_SINCE && may_write_heartbeats(&src).await;
    // Sources before 14 are polled: every answered poll says the source is there.
    let polled = version < poll::STREAMING_SINCE;
    let slot_watch =
        SlotWatch::start(&spec.source, job.credentials.clone(), names.slot.clone(), heartbeat, job.tracker.clone());
    // nextval() is not decoded: the sequences' values are polled (copied, followed, cut over).
    let carrier = sequences::Carrier::new(&job, &sequences);

    if spec.task_type.has_full() && !state.full_done {
        let snapshot = match &held_snapshot {
            Some(s) => Snapshot::Exported(s.name().to_owned()),
            None => Snapshot::Fresh,
        };
        job.tracker.stage(TransferStage::Full);
        let started = std::time::Instant::now();
        full_transfer(&job, &mut tgt, &tables, &design, snapshot, state.start_lsn).await?;
        tracing::info!(job = job.id, seconds = started.elapsed().as_secs_f64(), "chunks copied");
        if job.stopping() {
            carrier.cut_over(&job.tracker).await?;
            return Ok(Outcome::Stopped);
        }
        for t in 0..tables.len() {
            job.tracker.table_state(t, TableState::Indexing);
        }
        let started = std::time::Instant::now();
        structure::build(|| job.target(), &tables, &design, structure::parallelism(spec), false).await?;
        tracing::info!(job = job.id, seconds = started.elapsed().as_secs_f64(), "keys, constraints and indexes built");
        target::finish_full(&tgt, job.id).await?;
        carrier.sync(&job.tracker).await?;
        for t in 0..tables.len() {
            job.tracker.table_state(t, TableState::Copied);
        }
        job.tracker.stage(TransferStage::FullComplete);
    } else if !spec.task_type.has_full() && !state.full_done {
        target::finish_full(&tgt, job.id).await?;
    }
    let state = target::job_state(&tgt, job.id)
        .await?
        .ok_or_else(|| EngineError::query(Side::Target, "reading the job back", "row missing"))?;
    let safe_end = state.safe_end_lsn.unwrap_or(state.start_lsn);
    let from = state.checkpoint_lsn.unwrap_or(state.start_lsn);

    if !spec.task_type.has_incremental() {
        if safe_end > from {
            // Chunks were read in newer snapshots after a restart: replay up to the newest one
            // so the copy is consistent as of that moment.
            let changes = open_changes(&job, held_snapshot, &names, &tables, from, version).await?;
            apply_stream(&job, changes, &tables, safe_end, Some(safe_end), heartbeat || polled).await?;
        } else {
            drop(held_snapshot);
        }
        if !job.stopping() {
            // The target now holds the source as of one moment: the foreign keys hold there.
            foreign_keys(&job, &tables, &design).await?;
        }
        carrier.cut_over(&job.tracker).await?;
        drop(slot_watch);
        drop_source_objects(&src, &names).await?;
        job.tracker.slot(None);
        return Ok(Outcome::Completed);
    }

    for t in 0..tables.len() {
        job.tracker.table_state(t, TableState::Streaming);
    }
    job.tracker.stage(TransferStage::Incremental);
    let changes = open_changes(&job, held_snapshot, &names, &tables, from, version).await?;
    let sequence_watch = carrier.watch(&job.tracker);
    let stream = apply_stream(&job, changes, &tables, safe_end, None, heartbeat || polled);
    let keys = foreign_keys_once_consistent(&job, &tables, &design, safe_end);
    tokio::pin!(stream, keys);
    let mut keys_done = false;
    let streamed = loop {
        tokio::select! {
            done = &mut stream => break done,
            built = &mut keys, if !keys_done => {
                built?;
                keys_done = true;
            }
        }
    };
    streamed?;
    sequence_watch.stop().await;
    carrier.cut_over(&job.tracker).await?;
    Ok(Outcome::Stopped)
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

/// Adds the foreign keys once the target is consistent, while the stream applies changes:
/// until the checkpoint has passed `safe_end`, changes are replayed over tables copied in
/// different snapshots, and a row may refer to one its table's copy does not hold yet. Returns
/// without adding them when the job stops first (the next start adds them).
async fn foreign_keys_once_consistent(
    job: &Job<'_>,
    tables: &[PgTable],
    plan: &structure::Plan,
    safe_end: u64,
) -> Result<()> {
    if plan.tables.iter().all(|t| t.foreign_keys.is_empty()) {
        return Ok(());
    }
    let tgt = job.target().await?;
    loop {
        let state = target::job_state(&tgt, job.id)
            .await?
            .ok_or_else(|| EngineError::query(Side::Target, "reading the job back", "row missing"))?;
        if state.checkpoint_lsn.unwrap_or(state.start_lsn) >= safe_end {
            break;
        }
        if job.stopping() {
            return Ok(());
        }
        tokio::time::sleep(Duration::from_secs(1)).await;
    }
    drop(tgt);
    foreign_keys(job, tables, plan).await
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

async fn truncate_targets(tgt: &Client, tables: &[PgTable]) -> Result<()> {
    for t in tables {
        let sql = format!("TRUNCATE {}", pg_qualified(&t.def.target_schema, &t.def.target_name));
        if let Err(e) = tgt.batch_execute(&sql).await
            && e.code() != Some(&tokio_postgres::error::SqlState::UNDEFINED_TABLE)
        {
            return Err(EngineError::query(
                Side::Target,
                format!("emptying {}", t.def.display_target()),
                connect::describe_pg_error(&e),
            ));
        }
    }
    Ok(())
}

/// Copies every pending chunk with `readParallelism` readers, each with its own source and
/// target sessions. A table whose chunks are all copied gets its keys, constraints and indexes
/// on one more target session while the other tables copy: building overlaps the load instead
/// of following all of it (one session at a time, as the target's writers are busy too).
async fn full_transfer(
    job: &Job<'_>,
    tgt: &mut Client,
    tables: &[PgTable],
    design: &structure::Plan,
    snapshot: Snapshot,
    start_lsn: u64,
) -> Result<()> {
    if matches!(snapshot, Snapshot::Fresh) {
        // Pages of a keyless table copied in the exported snapshot and the rest in fresh ones
        // would hold an updated row twice or not at all, and its changes could not be matched
        // against one snapshot: such a table is copied again, whole, in one chunk.
        for t in tables.iter().filter(|t| t.def.key.is_empty()) {
            if target::restart_split_table(tgt, job.id, t).await? {
                tracing::info!(job = job.id, table = %t.def.display_name(), "keyless table copied again in one chunk");
            }
        }
    }
    let done = target::copied_rows(tgt, job.id).await?;
    let table_names: Vec<String> = tables.iter().map(|t| t.def.display_name()).collect();
    let mut pending = snapshot::resume(&table_names, &done, target::pending_chunks(tgt, job.id).await?, &job.tracker);
    // The biggest tables first: their keys and indexes are then built while smaller ones copy,
    // and the build left after the copy is a small table's.
    pending.sort_by_key(|c| std::cmp::Reverse(tables[c.table].def.estimated_rows));
    let parallel = snapshot::parallelism(job.spec);
    let throttle = Throttle::new(&job.spec.speed_limits);
    let open_source = || async {
        let client = job.source().await?;
        Ok(source::PgChunkSource { client, tables, snapshot: snapshot.clone(), start_lsn })
    };
    let open_target = || async { Ok(target::PgChunkTarget { client: job.target().await?, job: job.id, tables }) };
    let (copied_tx, mut copied) = tokio::sync::mpsc::unbounded_channel();
    let copy = snapshot::copy_reporting(
        &pending,
        parallel,
        open_source,
        open_target,
        &throttle,
        &job.tracker,
        &job.stop,
        copied_tx,
    );
    let build = async {
        while let Some(t) = copied.recv().await {
            job.tracker.table_state(t, TableState::Indexing);
            let started = std::time::Instant::now();
            structure::build_tables(|| job.target(), tables, design, 1, false, vec![t]).await?;
            tracing::debug!(job = job.id, table = %tables[t].def.display_name(), seconds = started.elapsed().as_secs_f64(), "keys and indexes built during the copy");
        }
        Ok(())
    };
    futures::future::try_join(copy, build).await?;
    Ok(())
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
