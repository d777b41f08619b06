//! The checks made before a MySQL/MariaDB → PostgreSQL job starts, each a precheck item with
//! its result, the reason and the fix.

use mysql_async::Conn;
use mysql_async::prelude::Queryable;
use tokio_postgres::Client;

use super::structure;
use super::{source, target};
use crate::api::{PrecheckItem, PrecheckResult, SyncJobSpec};
use crate::engine::Credentials;
use crate::engine::mysql::catalog::MyTable;
use crate::engine::mysql::{self as my, catalog};
use crate::engine::postgres::connect::describe_pg_error;
use crate::engine::sql::my_ident;

fn item(name: &str, result: PrecheckResult, reason: Option<String>, fix: Option<&str>) -> PrecheckItem {
    PrecheckItem {
        item: name.to_owned(),
        result,
        reason,
        fix: fix.map(str::to_owned),
        skippable: false,
        skipped: false,
    }
}

/// Checks made before a MySQL/MariaDB → PostgreSQL job starts: both logins, the binary log and
/// replication privileges (with a change stream, as for MySQL → MySQL), the selected tables,
/// column types without a PostgreSQL counterpart (spatial types among them), target names
/// that would collide, the spec's target types (`columns.targetTypes`: columns that exist, types
/// the target knows), primary and unique keys that compare text differently on the two sides
/// (`target.caseSensitiveKeys`), and what the target structure leaves out (prefix, FULLTEXT and
/// SPATIAL indexes, expression defaults, `ON UPDATE`, generated columns, CHECK constraints).
pub async fn precheck(spec: &SyncJobSpec, credentials: &Credentials) -> Vec<PrecheckItem> {
    let mut items = Vec::new();
    let tgt = match target(spec, credentials).await {
        Ok(c) => {
            items.push(item("target.connection", PrecheckResult::Passed, None, None));
            Some(c)
        }
        Err(e) => {
            items.push(item(
                "target.connection",
                PrecheckResult::Failed,
                Some(e.to_string()),
                Some("check spec.target's host, port, database, user and password"),
            ));
            None
        }
    };
    let mut src = match source(spec, credentials).await {
        Ok(c) => {
            items.push(item("source.connection", PrecheckResult::Passed, None, None));
            c
        }
        Err(e) => {
            items.push(item(
                "source.connection",
                PrecheckResult::Failed,
                Some(e.to_string()),
                Some("check spec.source's host, port, user and password"),
            ));
            return items;
        }
    };
    if spec.task_type.has_incremental() {
        my::precheck::binlog_checks(&mut items, &mut src).await;
        my::precheck::privilege_checks(&mut items, &mut src).await;
    }
    let tables = match catalog::resolve(&mut src, &spec.objects).await {
        Ok(t) => {
            items.push(item("source.tablesExist", PrecheckResult::Passed, None, None));
            t
        }
        Err(e) => {
            items.push(item(
                "source.tablesExist",
                PrecheckResult::Failed,
                Some(e.to_string()),
                Some("check the names under spec.objects"),
            ));
            return items;
        }
    };
    let unmapped = structure::unmapped(&tables);
    items.push(if unmapped.is_empty() {
        item("source.types", PrecheckResult::Passed, None, None)
    } else {
        item(
            "source.types",
            PrecheckResult::Failed,
            Some(unmapped.join("; ")),
            Some("exclude these columns (objects[].tables[].columns.exclude)"),
        )
    });
    let collisions = structure::collisions(&tables);
    items.push(if collisions.is_empty() {
        item("target.names", PrecheckResult::Passed, None, None)
    } else {
        item(
            "target.names",
            PrecheckResult::Failed,
            Some(collisions.join("; ")),
            Some("map the tables or columns to distinct names (mappedName, columns.rename)"),
        )
    });
    let opts = structure::Options::of(spec);
    if let Some(tgt) = &tgt {
        items.push(target_types(tgt, &tables, &opts).await);
    }
    items.push(case_sensitive_keys(&mut src, &tables, &opts).await);
    if unmapped.is_empty() && collisions.is_empty() {
        let left_out: Vec<String> = structure::plan(&tables, &opts)
            .unwrap_or_default()
            .iter()
            .flat_map(|p| p.left_out.iter().map(|(object, reason)| format!("{object}: {reason}")))
            .collect();
        items.push(if left_out.is_empty() {
            item("target.leftOut", PrecheckResult::Passed, None, None)
        } else {
            PrecheckItem {
                skippable: true,
                ..item(
                    "target.leftOut",
                    PrecheckResult::Alarm,
                    Some(format!("not carried to PostgreSQL: {}", left_out.join("; "))),
                    Some("recreate what the target needs of these by hand after the transfer (see docs/mysql-to-postgresql.md)"),
                )
            }
        });
    }
    let _ = src.disconnect().await;
    items
}

/// `target.types`: every `columns.targetTypes` entry names a column the job writes, and a type
/// the target server knows (the name parsed by the server, bound as a parameter:
/// `$1::text::regtype`).
async fn target_types(tgt: &Client, tables: &[MyTable], opts: &structure::Options) -> PrecheckItem {
    const NAME: &str = "target.types";
    let mut problems = structure::unknown_target_columns(tables, opts);
    for t in tables {
        for (column, ty) in opts.types_of(t).into_iter().flatten() {
            if let Err(e) = tgt.query_one("SELECT $1::text::regtype::text", &[ty]).await {
                // Ferry's sessions resolve names in pg_catalog only.
                let qualify = if ty.contains('.') { "" } else { "; a type outside pg_catalog needs its schema" };
                problems.push(format!(
                    "column {column} of {}: the target server does not know the type {ty:?} ({}){qualify}",
                    t.def.display_name(),
                    describe_pg_error(&e).redacted()
                ));
            }
        }
    }
    if problems.is_empty() {
        item(NAME, PrecheckResult::Passed, None, None)
    } else {
        item(
            NAME,
            PrecheckResult::Failed,
            Some(problems.join("; ")),
            Some(
                "correct objects[].tables[].columns.targetTypes (a type from an extension or a schema other than \
                 pg_catalog with its schema: public.citext), or create the type on the target first (citext: \
                 CREATE EXTENSION citext in the target database)",
            ),
        )
    }
}

/// Most colliding groups counted per key: enough to say how many, without reading a whole
/// table's worth of them.
const COLLISION_LIMIT: u64 = 1000;

/// Whether a MySQL collation treats letters that differ in case (or accent) as equal.
fn insensitive(collation: &str) -> bool {
    let c = collation.to_ascii_lowercase();
    c.ends_with("_ci") || c.contains("_ai_") || c.ends_with("_ai")
}

/// `target.caseSensitiveKeys`: a primary or unique key with a text column whose collation
/// ignores case or accents on the source is an alarm (PostgreSQL compares text exactly, so values
/// the source holds equal become distinct keys). A key with a column made `citext` by
/// `columns.targetTypes` compares case-insensitively on the target: the source's data is checked
/// for values that collide under `LOWER()` (which a `_bin` or `_cs` collation, or an accent
/// difference, lets the source hold), a failure naming the key and how many values collide —
/// never the values.
async fn case_sensitive_keys(src: &mut Conn, tables: &[MyTable], opts: &structure::Options) -> PrecheckItem {
    const NAME: &str = "target.caseSensitiveKeys";
    let mut alarms = Vec::new();
    let mut failures = Vec::new();
    for t in tables {
        let d = &t.def;
        let written: Vec<(&str, Option<&str>, bool)> = t
            .written()
            .map(|(_, c, m)| {
                let text = matches!(
                    super::types::map_type(&m.data_type, &c.type_sql, false).map(|m| m.conv),
                    Ok(super::types::Conv::Text)
                );
                (c.name.as_str(), m.collation.as_deref().filter(|_| text), text)
            })
            .collect();
        let citext = |column: &str| {
            opts.types_of(t).and_then(|types| types.get(column)).is_some_and(|ty| {
                let base = ty.trim().to_ascii_lowercase();
                base.rsplit('.').next() == Some("citext")
            })
        };
        let mut keys: Vec<(String, Vec<String>)> = Vec::new();
        if !d.key.is_empty() {
            keys.push(("primary key".into(), d.key_columns().map(|c| c.name.clone()).collect()));
        }
        for ix in t.indexes.iter().filter(|ix| ix.unique && ix.columns.iter().all(|(_, p)| p.is_none())) {
            keys.push((format!("unique key {}", ix.name), ix.columns.iter().map(|(c, _)| c.clone()).collect()));
        }
        for (key, columns) in keys {
            let Some(cols) =
                columns.iter().map(|c| written.iter().find(|w| w.0 == c.as_str())).collect::<Option<Vec<_>>>()
            else {
                continue;
            };
            let what = format!("{key} ({}) of {}", columns.join(", "), d.display_name());
            if cols.iter().any(|(name, _, text)| *text && citext(name)) {
                // The target compares these case-insensitively: do the source's values collide?
                let groups: Vec<String> = cols
                    .iter()
                    .map(
                        |(name, _, text)| {
                            if *text && citext(name) { format!("LOWER({})", my_ident(name)) } else { my_ident(name) }
                        },
                    )
                    .collect();
                let sql = format!(
                    "SELECT COUNT(*) FROM (SELECT 1 FROM {}.{} GROUP BY {} HAVING COUNT(*) > 1 LIMIT ?) AS collisions",
                    my_ident(&d.schema),
                    my_ident(&d.name),
                    groups.join(", ")
                );
                match src.exec_first::<u64, _, _>(sql, (COLLISION_LIMIT,)).await {
                    Ok(Some(0)) | Ok(None) => {}
                    Ok(Some(n)) => failures.push(format!(
                        "{what}: {}{n} value(s) of the source differ only in case, which the target's citext \
                         holds equal: the key cannot be built there",
                        if n >= COLLISION_LIMIT { "at least " } else { "" }
                    )),
                    Err(e) => failures.push(format!(
                        "{what}: the source's values could not be checked for case collisions ({})",
                        crate::engine::error::Describe::describe(&e).redacted()
                    )),
                }
                continue;
            }
            let loose: Vec<String> = cols
                .iter()
                .filter_map(|(name, collation, _)| {
                    collation.filter(|c| insensitive(c)).map(|c| format!("{name} ({c})"))
                })
                .collect();
            if !loose.is_empty() {
                alarms.push(format!("{what}: {}", loose.join(", ")));
            }
        }
    }
    if !failures.is_empty() {
        return item(
            NAME,
            PrecheckResult::Failed,
            Some(failures.join("; ")),
            Some(
                "make the values distinct on the source (they differ only in case), or keep the column's mapped \
                 type (remove it from columns.targetTypes)",
            ),
        );
    }
    if alarms.is_empty() {
        return item(NAME, PrecheckResult::Passed, None, None);
    }
    PrecheckItem {
        skippable: true,
        ..item(
            NAME,
            PrecheckResult::Alarm,
            Some(format!(
                "keys whose text columns the source compares ignoring case (or accents), PostgreSQL exactly: values \
                 the source treats as equal ('a' and 'A') become distinct keys on the target: {}",
                alarms.join("; ")
            )),
            Some(
                "if applications rely on keys ignoring case, make the columns public.citext \
                 (objects[].tables[].columns.targetTypes) or add a unique index on lower(column) on the target",
            ),
        )
    }
}

#[cfg(test)]
mod tests {
    use super::insensitive;

    #[test]
    fn collations_that_ignore_case_or_accents_are_told_apart() {
        for c in [
            "utf8mb4_general_ci",
            "utf8mb4_0900_ai_ci",
            "latin1_swedish_ci",
            "utf8mb4_0900_as_ci",
            "utf8mb4_uca1400_ai_ci",
        ] {
            assert!(insensitive(c), "{c}");
        }
        for c in ["utf8mb4_bin", "utf8mb4_0900_as_cs", "latin1_general_cs", "binary"] {
            assert!(!insensitive(c), "{c}");
        }
    }
}
