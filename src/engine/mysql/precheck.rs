//! Checks made before a MySQL or MariaDB job starts, each with its reason and its fix.

use mysql_async::Conn;
use mysql_async::prelude::Queryable;

use super::{catalog, connect};
use crate::api::{ConflictPolicy, PrecheckItem, PrecheckResult, SyncJobSpec};
use crate::engine::Credentials;
use crate::engine::error::{EngineError, Side};
use crate::engine::model::TableDef;
use crate::engine::sql::my_ident;

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

/// Shortest binary log retention that lets a stopped or failed worker resume.
const MIN_RETENTION_SECONDS: u64 = 86_400;

/// Runs every check; a check that cannot run because an earlier one failed is not listed.
pub async fn run(spec: &SyncJobSpec, credentials: &Credentials) -> Vec<PrecheckItem> {
    let mut items = Vec::new();
    let src = connect_item(&mut items, spec, credentials, Side::Source).await;
    let tgt = connect_item(&mut items, spec, credentials, Side::Target).await;
    if let Some(mut src) = src {
        if spec.task_type.has_incremental() {
            binlog_checks(&mut items, &mut src).await;
            privilege_checks(&mut items, &mut src).await;
        }
        let tables = tables_item(&mut items, &mut src, spec).await;
        if let Some(mut tgt) = tgt {
            target_checks(&mut items, &mut tgt, spec, &tables).await;
            items.push(versions(&mut src, &mut tgt).await);
            let _ = tgt.disconnect().await;
        }
        let _ = src.disconnect().await;
    }
    items
}

async fn connect_item(
    items: &mut Vec<PrecheckItem>,
    spec: &SyncJobSpec,
    creds: &Credentials,
    side: Side,
) -> Option<Conn> {
    let (ep, pw) = match side {
        Side::Source => (&spec.source, creds.login(Side::Source)),
        Side::Target => (&spec.target, creds.login(Side::Target)),
    };
    let name = format!("{side}.connection");
    match connect::connect(ep, pw, side).await {
        Ok(c) => {
            items.push(passed(&name));
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
            let unsupported_plugin = message.contains("authentication plugin");
            let fix = if message.contains("Access denied") {
                format!(
                    "check spec.{side}.user and the password in the Secret spec.{side}.passwordSecretRef names, and that the user may log in from the worker's host"
                )
            } else if unsupported_plugin {
                format!(
                    "give spec.{side}.user a password plugin the client supports, e.g. ALTER USER ... IDENTIFIED VIA \
                     ed25519 USING PASSWORD('...') on MariaDB, or IDENTIFIED WITH caching_sha2_password BY '...' on MySQL"
                )
            } else {
                format!("check spec.{side}.host and port, and that the server accepts connections from the worker")
            };
            items.push(PrecheckItem {
                item: if unsupported_plugin { format!("{side}.authentication") } else { name },
                result: PrecheckResult::Failed,
                reason: Some(format!("cannot connect to {}:{}: {message}", ep.host, ep.port)),
                fix: Some(fix),
                skippable: false,
                skipped: false,
            });
            None
        }
    }
}

async fn variable(conn: &mut Conn, name: &str) -> Option<String> {
    conn.exec_first::<(String, String), _, _>("SHOW GLOBAL VARIABLES WHERE Variable_name = ?", (name,))
        .await
        .ok()
        .flatten()
        .map(|(_, v)| v)
}

/// The binary log items (`source.binlog…`) of a job with a change stream, whatever its target.
pub async fn binlog_checks(items: &mut Vec<PrecheckItem>, src: &mut Conn) {
    let log_bin = variable(src, "log_bin").await.unwrap_or_default();
    items.push(if log_bin.eq_ignore_ascii_case("ON") || log_bin == "1" {
        passed("source.logBin")
    } else {
        item(
            "source.logBin",
            PrecheckResult::Failed,
            Some(format!("log_bin is {log_bin:?}: the server writes no binary log to stream changes from")),
            Some("start the server with log_bin (e.g. log-bin=mysql-bin in my.cnf) and restart it"),
            false,
        )
    });
    let format = variable(src, "binlog_format").await.unwrap_or_default();
    items.push(if format.eq_ignore_ascii_case("ROW") {
        passed("source.binlogFormat")
    } else {
        item(
            "source.binlogFormat",
            PrecheckResult::Failed,
            Some(format!("binlog_format is {format:?}; row changes need ROW")),
            Some("SET GLOBAL binlog_format = 'ROW' and binlog_format=ROW in my.cnf (sessions already open keep the old format)"),
            false,
        )
    });
    let image = variable(src, "binlog_row_image").await.unwrap_or_default();
    items.push(if image.eq_ignore_ascii_case("FULL") {
        passed("source.binlogRowImage")
    } else {
        item(
            "source.binlogRowImage",
            PrecheckResult::Failed,
            Some(format!("binlog_row_image is {image:?}; updates need the full before and after image")),
            Some("SET GLOBAL binlog_row_image = 'FULL' and binlog_row_image=FULL in my.cnf"),
            false,
        )
    });
    // MariaDB 10.2+: compressed events cannot be decoded, and the stream stops at the first.
    let compress = variable(src, "log_bin_compress").await.unwrap_or_default();
    items.push(if compress.eq_ignore_ascii_case("ON") || compress == "1" {
        item(
            "source.binlogCompression",
            PrecheckResult::Failed,
            Some("log_bin_compress is ON: the server compresses binary log events, which Ferry cannot read".into()),
            Some("SET GLOBAL log_bin_compress = OFF and log_bin_compress=OFF in my.cnf"),
            false,
        )
    } else {
        passed("source.binlogCompression")
    });
    let seconds = match variable(src, "binlog_expire_logs_seconds").await.and_then(|v| v.parse::<u64>().ok()) {
        Some(s) if s > 0 => s,
        _ => variable(src, "expire_logs_days")
            .await
            .and_then(|v| v.parse::<f64>().ok())
            .map_or(0, |d| (d * 86_400.0) as u64),
    };
    items.push(if seconds == 0 || seconds >= MIN_RETENTION_SECONDS {
        passed("source.binlogRetention")
    } else {
        item(
            "source.binlogRetention",
            PrecheckResult::Alarm,
            Some(format!("binary logs are kept {seconds} s: a worker stopped longer than that cannot resume")),
            Some("keep binary logs at least a day (binlog_expire_logs_seconds = 86400 or more)"),
            true,
        )
    });
    let server_id = variable(src, "server_id").await.and_then(|v| v.parse::<u64>().ok()).unwrap_or(0);
    items.push(if server_id > 0 {
        passed("source.serverId")
    } else {
        item(
            "source.serverId",
            PrecheckResult::Failed,
            Some("server_id is 0: the server refuses binary log clients".into()),
            Some("set server_id to a unique non-zero value in my.cnf and restart"),
            false,
        )
    });
}

/// The replication privilege item of a job with a change stream, whatever its target.
pub async fn privilege_checks(items: &mut Vec<PrecheckItem>, src: &mut Conn) {
    let grants: Vec<String> = src.query("SHOW GRANTS").await.unwrap_or_default();
    let all = grants.iter().any(|g| g.contains("ALL PRIVILEGES ON *.*"));
    let has = |p: &str| all || grants.iter().any(|g| g.contains(p) && g.contains("ON *.*"));
    // MariaDB 10.5 renamed REPLICATION CLIENT to BINLOG MONITOR.
    let missing: Vec<&str> = [
        ("REPLICATION SLAVE", has("REPLICATION SLAVE")),
        ("REPLICATION CLIENT", has("REPLICATION CLIENT") || has("BINLOG MONITOR")),
    ]
    .into_iter()
    .filter(|(_, ok)| !ok)
    .map(|(p, _)| p)
    .collect();
    items.push(if missing.is_empty() {
        passed("source.replicationPrivileges")
    } else {
        item(
            "source.replicationPrivileges",
            PrecheckResult::Failed,
            Some(format!("the user lacks {}", missing.join(" and "))),
            Some("GRANT REPLICATION SLAVE, REPLICATION CLIENT ON *.* TO the user (BINLOG MONITOR on MariaDB 10.5+), and SELECT on the selected tables"),
            false,
        )
    });
}

async fn tables_item(items: &mut Vec<PrecheckItem>, src: &mut Conn, spec: &SyncJobSpec) -> Vec<TableDef> {
    match catalog::resolve(src, &spec.objects).await {
        Ok(tables) => {
            items.push(passed("source.tablesExist"));
            items.push(defaults_item(&tables));
            let tables: Vec<TableDef> = tables.into_iter().map(|t| t.def).collect();
            let keyless: Vec<String> = tables.iter().filter(|t| t.key.is_empty()).map(TableDef::display_name).collect();
            if spec.task_type.has_incremental() {
                let unfit: Vec<String> = tables
                    .iter()
                    .filter_map(|t| {
                        let f = t.filter.as_deref()?;
                        let e = crate::engine::filter::RowFilter::parse(f).err()?;
                        Some(format!("{}: {e}", t.display_name()))
                    })
                    .collect();
                items.push(if unfit.is_empty() {
                    passed("source.filters")
                } else {
                    item(
                        "source.filters",
                        PrecheckResult::Failed,
                        Some(format!(
                            "row filters too complex to evaluate on binary log rows: {}",
                            unfit.join("; ")
                        )),
                        Some("write the filter with column comparisons, IN, BETWEEN, LIKE, IS NULL, AND/OR/NOT and literals only (no functions or arithmetic)"),
                        false,
                    )
                });
                items.push(if keyless.is_empty() {
                    passed("source.primaryKeys")
                } else {
                    item(
                        "source.primaryKeys",
                        PrecheckResult::Alarm,
                        Some(format!(
                            "tables without a primary key: {}; incremental updates and deletes match rows on every column, slowly, and cannot tell identical rows apart",
                            keyless.join(", ")
                        )),
                        Some("add a primary key to these tables"),
                        true,
                    )
                });
            }
            tables
        }
        Err(e) if e.to_string().starts_with(crate::engine::filter::REFUSED) => {
            items.push(item(
                "source.filters",
                PrecheckResult::Failed,
                Some(e.to_string()),
                Some(crate::engine::filter::FIX),
                false,
            ));
            // The target checks still need the tables: resolve them without the filters.
            match catalog::resolve(src, &crate::engine::filter::without_filters(&spec.objects)).await {
                Ok(tables) => {
                    items.push(passed("source.tablesExist"));
                    tables.into_iter().map(|t| t.def).collect()
                }
                Err(_) => Vec::new(),
            }
        }
        Err(e) => {
            items.push(item(
                "source.tablesExist",
                PrecheckResult::Failed,
                Some(e.to_string()),
                Some("check the names under spec.objects, or create the table on the source"),
                false,
            ));
            Vec::new()
        }
    }
}

async fn target_checks(items: &mut Vec<PrecheckItem>, tgt: &mut Conn, spec: &SyncJobSpec, tables: &[TableDef]) {
    let read_only = variable(tgt, "read_only").await.unwrap_or_default();
    items.push(if read_only.eq_ignore_ascii_case("OFF") || read_only == "0" {
        passed("target.writable")
    } else {
        item(
            "target.writable",
            PrecheckResult::Failed,
            Some("the target server is read_only (a replica?)".into()),
            Some("point spec.target at a primary, or SET GLOBAL read_only = OFF"),
            false,
        )
    });
    if !spec.task_type.has_full() || tables.is_empty() {
        return;
    }
    let local_infile = variable(tgt, "local_infile").await.unwrap_or_default();
    items.push(if local_infile.eq_ignore_ascii_case("ON") || local_infile == "1" {
        passed("target.localInfile")
    } else {
        item(
            "target.localInfile",
            PrecheckResult::Failed,
            Some("the target refuses LOAD DATA LOCAL INFILE (local_infile is OFF), which the full transfer loads chunks with".into()),
            Some("SET GLOBAL local_infile = ON on the target (MySQL 8 ships with it off)"),
            false,
        )
    });
    let mut full = Vec::new();
    for t in tables {
        let exists: Option<u8> = tgt
            .exec_first(
                "SELECT 1 FROM information_schema.TABLES WHERE TABLE_SCHEMA = ? AND TABLE_NAME = ?",
                (&t.target_schema, &t.target_name),
            )
            .await
            .unwrap_or(None);
        if exists.is_some() {
            let sql = format!("SELECT 1 FROM {}.{} LIMIT 1", my_ident(&t.target_schema), my_ident(&t.target_name));
            if tgt.query_first::<u8, _>(sql).await.ok().flatten().is_some() {
                full.push(t.display_target());
            }
        }
    }
    items.push(if full.is_empty() {
        passed("target.empty")
    } else {
        let allowed = spec.policy.conflict != ConflictPolicy::Stop;
        item(
            "target.empty",
            if allowed { PrecheckResult::Alarm } else { PrecheckResult::Failed },
            Some(format!("target tables already hold rows: {}", full.join(", "))),
            Some("empty the target tables, or accept merging into them (policy.conflict overwrite or ignore; skip this item)"),
            true,
        )
    });
}

/// Column defaults, `ON UPDATE` clauses, generated columns and `CHECK` constraints the target
/// does not get because they cannot be rendered safely as SQL (see [`super::defaults`]) or use
/// columns that are not transferred.
fn defaults_item(tables: &[catalog::MyTable]) -> PrecheckItem {
    let left_out: Vec<String> = tables
        .iter()
        .flat_map(catalog::MyTable::left_out)
        .map(|(object, reason)| format!("{object}: {reason}"))
        .collect();
    if left_out.is_empty() {
        return passed("source.defaults");
    }
    item(
        "source.defaults",
        PrecheckResult::Alarm,
        Some(format!("the target does not get: {}", left_out.join("; "))),
        Some(
            "set these defaults (or create these columns and constraints) on the target by hand after the structure \
             is created; the job reports them in status.progress.skippedObjects",
        ),
        true,
    )
}

async fn versions(src: &mut Conn, tgt: &mut Conn) -> PrecheckItem {
    let version = |c: &mut Conn| {
        let (major, minor, _) = c.server_version();
        (major, minor)
    };
    let (s, t) = (version(src), version(tgt));
    let s_maria = variable(src, "version").await.unwrap_or_default().contains("MariaDB");
    let t_maria = variable(tgt, "version").await.unwrap_or_default().contains("MariaDB");
    if s_maria != t_maria {
        item(
            "versions",
            PrecheckResult::Alarm,
            Some(format!(
                "source is {} {}.{}, target {} {}.{}: types and defaults may differ",
                if s_maria { "MariaDB" } else { "MySQL" },
                s.0,
                s.1,
                if t_maria { "MariaDB" } else { "MySQL" },
                t.0,
                t.1
            )),
            Some("compare the result with a CompareTask"),
            true,
        )
    } else if t < s {
        item(
            "versions",
            PrecheckResult::Alarm,
            Some(format!("target {}.{} is older than source {}.{}", t.0, t.1, s.0, s.1)),
            Some("prefer a target at least as new as the source"),
            true,
        )
    } else {
        passed("versions")
    }
}
