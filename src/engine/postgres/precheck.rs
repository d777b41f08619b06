//! Checks made before a PostgreSQL job starts, each with its reason and its fix.

use tokio_postgres::Client;

use std::collections::BTreeSet;

use super::catalog::{self, PgTable};
use super::structure::{self, Need, SkipKind};
use super::target;
use super::{PARTITIONED_SINCE, PUBLICATION_FILTERS_SINCE, connect, poll, stream};
use crate::api::{ConflictPolicy, PrecheckItem, PrecheckResult, SyncJobSpec};
use crate::engine::Credentials;
use crate::engine::error::{EngineError, Side};
use crate::engine::sql::{pg_ident, pg_qualified};

fn item(
    name: &str,
    result: PrecheckResult,
    reason: Option<String>,
    fix: Option<&str>,
    skippable: bool,
) -> PrecheckItem {
    PrecheckItem { item: name.to_owned(), result, reason, fix: fix.map(str::to_owned), skippable, skipped: false }
}

fn passed(name: &str) -> PrecheckItem {
    item(name, PrecheckResult::Passed, None, None, false)
}

/// Runs every check; a check that cannot run because an earlier one failed is not listed.
pub async fn run(spec: &SyncJobSpec, credentials: &Credentials) -> Vec<PrecheckItem> {
    let mut items = Vec::new();
    let src = connect_item(&mut items, "source.connection", spec, credentials, Side::Source).await;
    let tgt = connect_item(&mut items, "target.connection", spec, credentials, Side::Target).await;
    let mut tables = Vec::new();
    if let Some(src) = &src {
        let version = catalog::server_version(src, Side::Source).await.unwrap_or(0);
        // Before 14 the changes are read over SQL sessions, which the connection item covers.
        if version >= super::poll::STREAMING_SINCE {
            replication_item(&mut items, spec, credentials).await;
        }
        source_checks(&mut items, src, spec).await;
        tables = tables_item(&mut items, src, spec, version).await;
        slot_wal_item(&mut items, src, spec, &tables, version).await;
        heartbeat_item(&mut items, src, spec, version).await;
        super::sequences::privilege_item(&mut items, src, spec, &tables).await;
    }
    if let Some(tgt) = &tgt {
        target_checks(&mut items, tgt, spec, &tables).await;
        structure_items(&mut items, tgt, spec, &tables).await;
    }
    if let (Some(src), Some(tgt)) = (&src, &tgt) {
        items.push(versions(src, tgt).await);
    }
    items
}

async fn connect_item(
    items: &mut Vec<PrecheckItem>,
    name: &str,
    spec: &SyncJobSpec,
    creds: &Credentials,
    side: Side,
) -> Option<Client> {
    let ep = match side {
        Side::Source => &spec.source,
        Side::Target => &spec.target,
    };
    match connect::connect(ep, creds.login(side), side).await {
        Ok(c) => {
            items.push(passed(name));
            Some(c)
        }
        Err(EngineError::Tls { failure, .. }) => {
            items.push(failure.item(side, "SQL connection", &ep.host, ep.port));
            None
        }
        Err(e) => {
            let message = match &e {
                EngineError::Connect { message, .. } => message.clone(),
                other => other.to_string(),
            };
            let fix = if message.contains("password authentication failed") || message.contains("authentication") {
                "check spec.SIDE.user and the password in the Secret spec.SIDE.passwordSecretRef names"
            } else if message.contains("does not exist") {
                "check spec.SIDE.database: the database must exist"
            } else {
                "check spec.SIDE.host and port, and that the database accepts connections from the worker (pg_hba.conf, firewalls)"
            };
            let side_name = side.to_string();
            items.push(PrecheckItem {
                item: name.to_owned(),
                result: PrecheckResult::Failed,
                reason: Some(format!("cannot connect to {}:{}: {message}", ep.host, ep.port)),
                fix: Some(fix.replace("SIDE", &side_name)),
                skippable: false,
                skipped: false,
            });
            None
        }
    }
}

/// `source.replicationConnection`: the replication protocol reaches the server (pg_hba.conf has a
/// `replication` line for the user, TLS works on this connection too).
async fn replication_item(items: &mut Vec<PrecheckItem>, spec: &SyncJobSpec, creds: &Credentials) {
    let ep = &spec.source;
    match super::stream::check_connection(ep, creds.login(Side::Source)).await {
        Ok(()) => items.push(passed("source.replicationConnection")),
        Err(EngineError::Tls { failure, .. }) => {
            items.push(failure.item(Side::Source, "replication connection", &ep.host, ep.port))
        }
        Err(e) => items.push(item(
            "source.replicationConnection",
            PrecheckResult::Failed,
            Some(e.to_string()),
            Some(
                "allow replication connections for spec.source.user in pg_hba.conf (a line with database \
                 \"replication\", or on PostgreSQL 16+ the database itself) and reload PostgreSQL",
            ),
            false,
        )),
    }
}

async fn setting(client: &Client, name: &str) -> Option<String> {
    client.query_one("SELECT current_setting($1)", &[&name]).await.ok().map(|r| r.get(0))
}

async fn source_checks(items: &mut Vec<PrecheckItem>, src: &Client, spec: &SyncJobSpec) {
    let wal = setting(src, "wal_level").await.unwrap_or_default();
    items.push(if wal == "logical" {
        passed("source.walLevel")
    } else {
        item(
            "source.walLevel",
            PrecheckResult::Failed,
            Some(format!("wal_level is {wal:?}; logical replication needs \"logical\"")),
            Some("set wal_level = logical in postgresql.conf (ALTER SYSTEM SET wal_level = logical) and restart PostgreSQL"),
            false,
        )
    });
    let free = src
        .query_one(
            "SELECT current_setting('max_replication_slots')::int - (SELECT count(*) FROM pg_replication_slots)::int, \
                    current_setting('max_wal_senders')::int - (SELECT count(*) FROM pg_stat_replication)::int",
            &[],
        )
        .await
        .ok()
        .map(|r| (r.get::<_, i32>(0), r.get::<_, i32>(1)));
    if let Some((slots, senders)) = free {
        items.push(if slots > 0 {
            passed("source.replicationSlots")
        } else {
            item(
                "source.replicationSlots",
                PrecheckResult::Failed,
                Some("every replication slot is in use (max_replication_slots)".into()),
                Some("raise max_replication_slots and restart, or drop unused slots (SELECT pg_drop_replication_slot(…))"),
                false,
            )
        });
        items.push(if senders > 0 {
            passed("source.walSenders")
        } else {
            item(
                "source.walSenders",
                PrecheckResult::Failed,
                Some("every WAL sender is in use (max_wal_senders)".into()),
                Some("raise max_wal_senders and restart PostgreSQL"),
                false,
            )
        });
    }
    let privilege = src
        .query_one("SELECT rolreplication OR rolsuper FROM pg_roles WHERE rolname = current_user", &[])
        .await
        .ok()
        .map(|r| r.get::<_, bool>(0))
        .unwrap_or(false);
    let user = spec.source.user.clone().unwrap_or_default();
    items.push(if privilege {
        passed("source.replicationPrivilege")
    } else {
        item(
            "source.replicationPrivilege",
            PrecheckResult::Failed,
            Some(format!("user {user:?} has neither REPLICATION nor SUPERUSER")),
            Some("ALTER ROLE <user> REPLICATION, and GRANT SELECT on the selected tables"),
            false,
        )
    });
}

/// The speed of a full transfer [`slot_wal_item`] assumes, in MB (10^6 bytes) of the selected
/// tables' size on the source (indexes and TOAST included) per second: about a fifth of what
/// Ferry copies on two cores beside both servers (docs/benchmarks.md), for slower networks,
/// disks and busier servers. A lower `spec.speedLimits` rate takes its place.
pub const ASSUMED_COPY_MB_PER_SECOND: u64 = 10;

/// The first source version with `max_slot_wal_keep_size`.
const SLOT_WAL_KEEP_SINCE: u32 = 130_000;

/// `12.3 MB` (PostgreSQL's MB: 2^20 bytes).
fn mb(bytes: f64) -> String {
    format!("{:.1} MB", bytes / f64::from(1u32 << 20))
}

/// `45 s`, `12 min`, `3.5 h`.
fn duration(seconds: f64) -> String {
    if seconds < 120.0 {
        format!("{seconds:.0} s")
    } else if seconds < 7200.0 {
        format!("{:.0} min", seconds / 60.0)
    } else {
        format!("{:.1} h", seconds / 3600.0)
    }
}

/// The WAL the source writes per second: the larger of a sample over about a second and, from
/// PostgreSQL 14, the average since `pg_stat_wal` was last reset. `None` when neither can be read.
async fn wal_rate(src: &Client, version: u32) -> Option<f64> {
    let lsn = "SELECT (CASE WHEN pg_is_in_recovery() THEN pg_last_wal_receive_lsn() ELSE pg_current_wal_lsn() END \
               - '0/0'::pg_lsn)::float8";
    let first: f64 = src.query_one(lsn, &[]).await.ok()?.get(0);
    let started = std::time::Instant::now();
    tokio::time::sleep(std::time::Duration::from_secs(1)).await;
    let second: f64 = src.query_one(lsn, &[]).await.ok()?.get(0);
    let sampled = (second - first).max(0.0) / started.elapsed().as_secs_f64();
    let average = if version >= 140_000 {
        src.query_opt(
            "SELECT wal_bytes::float8 / extract(epoch FROM now() - stats_reset)::float8 FROM pg_stat_wal \
             WHERE stats_reset < now()",
            &[],
        )
        .await
        .ok()
        .flatten()
        .and_then(|r| r.get::<_, Option<f64>>(0))
    } else {
        None
    };
    Some(average.map_or(sampled, |a| a.max(sampled)))
}

/// `source.slotWalKeepSize`: the slot keeps every byte of WAL the source writes while the full
/// transfer runs (the stream is read only after it), and the source invalidates a slot that
/// keeps more than `max_slot_wal_keep_size` — the job then fails with `SLOT_LOST` once its copy
/// is done. The WAL the slot will keep is estimated as the source's WAL rate now
/// ([`wal_rate`]) times the full transfer's duration: the selected tables' size at
/// [`ASSUMED_COPY_MB_PER_SECOND`] (or the job's lowest speed limit). Not listed when the source
/// has no such setting (before 13), the job copies nothing, or the estimate cannot be made.
async fn slot_wal_item(
    items: &mut Vec<PrecheckItem>,
    src: &Client,
    spec: &SyncJobSpec,
    tables: &[PgTable],
    version: u32,
) {
    const NAME: &str = "source.slotWalKeepSize";
    if version < SLOT_WAL_KEEP_SINCE || !spec.task_type.has_full() || tables.is_empty() {
        return;
    }
    let Some(keep) = src
        .query_opt(
            "SELECT setting::int8, current_setting(name) FROM pg_settings WHERE name = 'max_slot_wal_keep_size'",
            &[],
        )
        .await
        .ok()
        .flatten()
        .map(|r| (r.get::<_, i64>(0), r.get::<_, String>(1)))
    else {
        return;
    };
    if keep.0 < 0 {
        items.push(passed(NAME));
        return;
    }
    let names: Vec<String> = tables.iter().map(|t| pg_qualified(&t.def.schema, &t.def.name)).collect();
    // A partitioned table's own size is nothing: its partitions hold the rows.
    let size = src
        .query_one(
            "SELECT coalesce(sum(CASE WHEN c.relkind = 'p' \
               THEN (SELECT sum(pg_total_relation_size(p.relid)) FROM pg_partition_tree(c.oid) AS p) \
               ELSE pg_total_relation_size(c.oid) END), 0)::float8 \
             FROM unnest($1::text[]) AS t(name) JOIN pg_class c ON c.oid = t.name::regclass",
            &[&names],
        )
        .await
        .ok()
        .map(|r| r.get::<_, f64>(0));
    let (Some(size), Some(rate)) = (size, wal_rate(src, version).await) else { return };
    let limit = spec.speed_limits.iter().map(|l| u64::from(l.mb_per_second)).min();
    let (copy_mb, basis) = match limit {
        Some(l) if l < ASSUMED_COPY_MB_PER_SECOND => (l.max(1), "the job's lowest speed limit"),
        _ => (ASSUMED_COPY_MB_PER_SECOND, "a conservative rate Ferry assumes"),
    };
    let seconds = size / (copy_mb as f64 * 1e6);
    let needed = rate * seconds;
    let keep_bytes = keep.0 as f64 * f64::from(1u32 << 20);
    if keep_bytes >= needed {
        items.push(passed(NAME));
        return;
    }
    // Twice the estimate, in whole MB.
    let advice = (2.0 * needed / f64::from(1u32 << 20)).ceil().max(1.0) as u64;
    items.push(item(
        NAME,
        PrecheckResult::Alarm,
        Some(format!(
            "max_slot_wal_keep_size is {}, but the job's slot may have to keep about {}: it keeps all WAL the source \
             writes until the full transfer ends; the selected tables take {} on the source, about {} of copying at \
             {copy_mb} MB/s ({basis}), and the source writes about {}/s of WAL now. Beyond max_slot_wal_keep_size the \
             source invalidates the slot, and the job fails with SLOT_LOST after its copy",
            keep.1,
            mb(needed),
            mb(size),
            duration(seconds),
            mb(rate)
        )),
        Some(&format!(
            "raise max_slot_wal_keep_size to at least {advice}MB (ALTER SYSTEM SET max_slot_wal_keep_size = \
             '{advice}MB'; SELECT pg_reload_conf()), or to -1 while the full transfer runs; the estimate is the WAL \
             rate measured now times the copy's duration at {copy_mb} MB/s: skip this item if the source writes less \
             while the job copies"
        )),
        true,
    ));
}

/// `source.heartbeatPrivilege`: a streaming job writes a heartbeat message every few seconds
/// with `pg_logical_emit_message` (see [`super::HEARTBEAT_EVERY`]), so that its slot confirms its
/// position while the selected tables are quiet. PUBLIC may execute the function unless an
/// administrator revoked it. Sources before 14 (read by polling) write no heartbeats.
async fn heartbeat_item(items: &mut Vec<PrecheckItem>, src: &Client, spec: &SyncJobSpec, version: u32) {
    const NAME: &str = "source.heartbeatPrivilege";
    if version < poll::STREAMING_SINCE || !spec.task_type.has_incremental() {
        return;
    }
    let Ok(Some((function, allowed))) = super::heartbeat_function(src).await else { return };
    if allowed {
        items.push(passed(NAME));
        return;
    }
    let user = spec.source.user.clone().unwrap_or_default();
    let function = if function.contains('.') { function } else { format!("pg_catalog.{function}") };
    items.push(item(
        NAME,
        PrecheckResult::Alarm,
        Some(format!(
            "user {user:?} may not execute {function}: Ferry writes a heartbeat message with it every {} s so that the \
             job's slot confirms its position while the selected tables are quiet; without it the slot keeps all WAL \
             the source writes (for other tables too) until a selected table changes",
            super::HEARTBEAT_EVERY.as_secs()
        )),
        Some(&format!("GRANT EXECUTE ON FUNCTION {function} TO {}", pg_ident(&user))),
        true,
    ));
}

async fn tables_item(items: &mut Vec<PrecheckItem>, src: &Client, spec: &SyncJobSpec, version: u32) -> Vec<PgTable> {
    let db = spec.source.database.as_deref().unwrap_or("postgres");
    match catalog::resolve(src, &spec.objects, db).await {
        Ok(tables) => {
            items.push(passed("source.tablesExist"));
            let keyless: Vec<String> = tables
                .iter()
                .filter(|t| t.def.key.is_empty() && !t.replica_identity_full)
                .map(|t| t.def.display_name())
                .collect();
            if spec.task_type.has_incremental() {
                items.push(if keyless.is_empty() {
                    passed("source.primaryKeys")
                } else {
                    item(
                        "source.primaryKeys",
                        PrecheckResult::Alarm,
                        Some(format!(
                            "tables without a primary key: {}; their updates and deletes cannot be replicated (nor run on the source, once published) without REPLICA IDENTITY FULL",
                            keyless.join(", ")
                        )),
                        Some("add a primary key, or ALTER TABLE … REPLICA IDENTITY FULL"),
                        true,
                    )
                });
            }
            if version < PUBLICATION_FILTERS_SINCE {
                stream_filters_items(items, spec, &tables, version);
            } else {
                let risky: Vec<String> = tables
                    .iter()
                    .filter(|t| {
                        let key_only = t.def.columns.iter().any(|c| !c.selected);
                        (t.def.filter.is_some() || key_only) && !t.replica_identity_full
                    })
                    .map(|t| t.def.display_name())
                    .collect();
                if spec.task_type.has_incremental() && !risky.is_empty() {
                    items.push(item(
                        "source.filterIdentity",
                        PrecheckResult::Failed,
                        Some(format!(
                            "tables with a row filter or column selection: {}; PostgreSQL rejects UPDATE and DELETE on a published \
                             table whose filter or column list leaves out replica identity columns",
                            risky.join(", ")
                        )),
                        Some("ALTER TABLE … REPLICA IDENTITY FULL, or skip this item when the filters use only primary key columns and every primary key column is selected"),
                        true,
                    ));
                }
            }
            let partitioned: Vec<String> =
                tables.iter().filter(|t| t.partitioned).map(|t| t.def.display_name()).collect();
            if version < PARTITIONED_SINCE && !partitioned.is_empty() {
                items.push(item(
                    "source.partitionedTables",
                    PrecheckResult::Failed,
                    Some(format!(
                        "partitioned tables {}: PostgreSQL {} cannot publish a partitioned table (13 and later can)",
                        partitioned.join(", "),
                        version / 10_000
                    )),
                    Some("select the partitions instead of the partitioned table, or upgrade the source to PostgreSQL 13 or later"),
                    false,
                ));
            }
            tables
        }
        Err(e) if e.to_string().starts_with(crate::engine::filter::REFUSED) => {
            let message = Some(e.to_string());
            items.push(item(
                "source.filters",
                PrecheckResult::Failed,
                message,
                Some(crate::engine::filter::FIX),
                false,
            ));
            // The target checks still need the tables: resolve them without the filters.
            match catalog::resolve(src, &crate::engine::filter::without_filters(&spec.objects), db).await {
                Ok(tables) => {
                    items.push(passed("source.tablesExist"));
                    tables
                }
                Err(_) => Vec::new(),
            }
        }
        Err(e) => {
            let fix = match &e {
                EngineError::MissingTable(_) => "check the names under spec.objects, or create the table on the source",
                _ => "check spec.objects and the user's SELECT privileges",
            };
            items.push(item("source.tablesExist", PrecheckResult::Failed, Some(e.to_string()), Some(fix), false));
            Vec::new()
        }
    }
}

/// Sources before 15 publish whole rows: the stream applies the row filters itself, which it
/// can for filters within the PostgreSQL subset of [`crate::engine::filter`], and it needs the
/// old row (REPLICA IDENTITY FULL) to tell whether an updated or deleted row was in the filter
/// when the filter reads more than the key.
fn stream_filters_items(items: &mut Vec<PrecheckItem>, spec: &SyncJobSpec, tables: &[PgTable], version: u32) {
    let filtered: Vec<&PgTable> = tables.iter().filter(|t| t.def.filter.is_some()).collect();
    // The stream is read for an incremental job, and before 14 to catch up after the copy.
    if filtered.is_empty() || !(spec.task_type.has_incremental() || version < poll::STREAMING_SINCE) {
        return;
    }
    let mut unfit = Vec::new();
    let mut need_full = Vec::new();
    for t in &filtered {
        match stream::stream_filter(t) {
            Ok(Some(f)) => {
                let key: Vec<&str> = t.def.key_columns().map(|c| c.name.as_str()).collect();
                if !t.replica_identity_full && f.columns().iter().any(|c| !key.contains(&c.as_str())) {
                    need_full.push(t.def.display_name());
                }
            }
            Ok(None) => {}
            Err(e) => unfit.push(e.to_string()),
        }
    }
    let major = version / 10_000;
    items.push(if unfit.is_empty() {
        passed("source.filters")
    } else {
        item(
            "source.filters",
            PrecheckResult::Failed,
            Some(format!(
                "PostgreSQL {major} publishes whole rows, so the change stream applies the row filters itself, and it \
                 cannot evaluate these as PostgreSQL would: {}",
                unfit.join("; ")
            )),
            Some("write the filter with comparisons of columns and literals, IN, BETWEEN, LIKE, IS NULL and AND/OR/NOT on \
                  number, boolean, text, date, timestamp or uuid columns (no functions, casts or ordering of text), or \
                  upgrade the source to PostgreSQL 15, whose publications filter rows themselves"),
            false,
        )
    });
    if !need_full.is_empty() && spec.task_type.has_incremental() {
        items.push(item(
            "source.filterIdentity",
            PrecheckResult::Failed,
            Some(format!(
                "tables whose row filter reads columns outside the primary key: {}; PostgreSQL {major} sends the old row of \
                 an UPDATE or DELETE only with REPLICA IDENTITY FULL, and without it the stream cannot tell whether the \
                 row was in the filter before",
                need_full.join(", ")
            )),
            Some("ALTER TABLE … REPLICA IDENTITY FULL; skipped, an update that moves a row into the filter becomes an update of a row the target may not have"),
            true,
        ));
    }
}

async fn target_checks(items: &mut Vec<PrecheckItem>, tgt: &Client, spec: &SyncJobSpec, tables: &[PgTable]) {
    let writable = tgt
        .batch_execute(
            "BEGIN; CREATE TEMP TABLE ferry_precheck (x int); INSERT INTO ferry_precheck VALUES (1); ROLLBACK",
        )
        .await;
    let read_only = setting(tgt, "transaction_read_only").await.as_deref() == Some("on");
    items.push(match writable {
        Ok(()) if !read_only => passed("target.writable"),
        Ok(()) => item(
            "target.writable",
            PrecheckResult::Failed,
            Some("the target session is read-only (a standby, or default_transaction_read_only)".into()),
            Some("point spec.target at a primary that accepts writes"),
            false,
        ),
        Err(e) => item(
            "target.writable",
            PrecheckResult::Failed,
            Some(format!("cannot write on the target: {}", connect::describe_pg_error(&e))),
            Some("grant the user CREATE on the database and TEMP, or point spec.target at a primary"),
            false,
        ),
    });
    let create = tgt.query_one("SELECT has_database_privilege(current_user, current_database(), 'CREATE')", &[]).await;
    if let Ok(row) = create
        && !row.get::<_, bool>(0)
    {
        items.push(item(
            "target.createPrivilege",
            PrecheckResult::Failed,
            Some("the user cannot create schemas in the target database".into()),
            Some("GRANT CREATE ON DATABASE <db> TO <user>"),
            false,
        ));
    }
    if spec.task_type.has_full() && !tables.is_empty() {
        match target::non_empty_tables(tgt, tables).await {
            Ok(full) if full.is_empty() => items.push(passed("target.empty")),
            Ok(full) => {
                let allowed = spec.policy.conflict != ConflictPolicy::Stop;
                items.push(item(
                    "target.empty",
                    if allowed { PrecheckResult::Alarm } else { PrecheckResult::Failed },
                    Some(format!("target tables already hold rows: {}", full.join(", "))),
                    Some("empty the target tables, or accept merging into them (policy.conflict overwrite or ignore; skip this item)"),
                    true,
                ))
            }
            Err(e) => items.push(item("target.empty", PrecheckResult::Alarm, Some(e.to_string()), None, true)),
        }
    }
}

/// `target.expressions` and `target.structure`: what of the source tables' structure the target
/// cannot get. FAILED (skippable) for defaults, generated columns and CHECK constraints whose
/// expression refers to a function or other object in a schema the job maps to another name
/// (only a sequence named as `'schema.name'::regclass` is renamed), or calls a function the
/// target does not have; ALARM for foreign keys to tables the job does not copy, and constraints,
/// indexes and generated columns on columns it renames or leaves out. Sequences are not looked up:
/// the job creates them.
async fn structure_items(items: &mut Vec<PrecheckItem>, tgt: &Client, spec: &SyncJobSpec, tables: &[PgTable]) {
    if tables.is_empty() {
        return;
    }
    let mut plan = structure::plan(tables, spec);
    let functions: BTreeSet<Need> = plan.needs().into_iter().filter(|n| matches!(n, Need::Function(_))).collect();
    let names: Vec<String> = functions
        .iter()
        .filter_map(|n| match n {
            Need::Function(f) => Some(f.clone()),
            Need::Relation(_) => None,
        })
        .collect();
    let missing: BTreeSet<Need> =
        match tgt.query("SELECT x FROM unnest($1::text[]) AS x WHERE to_regprocedure(x) IS NULL", &[&names]).await {
            Ok(rows) => rows.iter().map(|r| Need::Function(r.get(0))).collect(),
            Err(e) => {
                items.push(item(
                    "target.expressions",
                    PrecheckResult::Alarm,
                    Some(format!("cannot look up functions on the target: {}", connect::describe_pg_error(&e))),
                    None,
                    true,
                ));
                return;
            }
        };
    plan.leave_out(&missing);
    let list = |kinds: &[SkipKind]| -> Vec<String> {
        plan.skipped.iter().filter(|s| kinds.contains(&s.kind)).map(|s| format!("{}: {}", s.object, s.reason)).collect()
    };
    let refused = list(&[SkipKind::Refused, SkipKind::Missing]);
    items.push(if refused.is_empty() {
        passed("target.expressions")
    } else {
        item(
            "target.expressions",
            PrecheckResult::Failed,
            Some(format!("the target cannot get these as the source has them: {}", refused.join("; "))),
            Some(
                "create the functions the expressions call on the target under the names the source uses, or map no \
                 schema whose functions they call (spec.objects … mappedName); skipped, the job leaves these objects \
                 out and lists them in status.progress.skippedObjects",
            ),
            true,
        )
    });
    let mut said = Vec::new();
    let left_out = list(&[SkipKind::Unreferenced, SkipKind::Columns]);
    if !left_out.is_empty() {
        said.push(format!("the target will not get: {}", left_out.join("; ")));
    }
    // A source DELETE that cascades arrives as the parent's delete and then each child's: on
    // the target the parent's cascades too, and the children's deletes find no row.
    let cascading: Vec<&str> = plan
        .tables
        .iter()
        .flat_map(|t| &t.foreign_keys)
        .filter(|fk| fk.sql.contains(" ON DELETE CASCADE"))
        .map(|fk| fk.object.as_str())
        .collect();
    if spec.policy.conflict == ConflictPolicy::Stop && spec.task_type.has_incremental() && !cascading.is_empty() {
        said.push(format!(
            "with policy.conflict stop, a delete that cascades on the source stops the job: the target's foreign \
             key cascades it too, and the children's own deletes then find no row ({})",
            cascading.join(", ")
        ));
    }
    if !said.is_empty() {
        items.push(item(
            "target.structure",
            PrecheckResult::Alarm,
            Some(said.join("; ")),
            Some(
                "select the referenced tables too, and keep the columns these objects involve selected and named as on \
                 the source (or create the objects on the target yourself after the full transfer); with cascading \
                 foreign keys, use policy.conflict overwrite or ignore, or policy.foreignKeys skip",
            ),
            true,
        ));
    }
}

async fn version_num(client: &Client) -> u32 {
    setting(client, "server_version_num").await.and_then(|v| v.parse().ok()).unwrap_or(0)
}

/// The oldest version Ferry is tested with, on either side.
const OLDEST_TESTED: u32 = 120_000;

async fn versions(src: &Client, tgt: &Client) -> PrecheckItem {
    let (s, t) = (version_num(src).await, version_num(tgt).await);
    if s < 100_000 {
        item(
            "versions",
            PrecheckResult::Failed,
            Some(format!("source PostgreSQL {} is older than 10, which has no logical replication", s / 10_000)),
            Some("upgrade the source to PostgreSQL 12 or later"),
            false,
        )
    } else if s < OLDEST_TESTED || t < OLDEST_TESTED {
        let (side, v) = if s < OLDEST_TESTED { ("source", s) } else { ("target", t) };
        item(
            "versions",
            PrecheckResult::Alarm,
            Some(format!("{side} PostgreSQL {} is older than 12, the oldest Ferry is tested with", v / 10_000)),
            Some("upgrade it to PostgreSQL 12 or later, or skip this item to try"),
            true,
        )
    } else if t / 10_000 < s / 10_000 {
        item(
            "versions",
            PrecheckResult::Alarm,
            Some(format!("target PostgreSQL {} is older than source {}", t / 10_000, s / 10_000)),
            Some("types or syntax new in the source version may not load; prefer a target at least as new"),
            true,
        )
    } else {
        passed("versions")
    }
}
