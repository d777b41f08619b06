//! The checks made before a MySQL/MariaDB → PostgreSQL job starts, each a precheck item with
//! its result, the reason and the fix.

use tokio_postgres::Client;

use super::structure;
use super::{source, target};
use crate::api::{PrecheckItem, PrecheckResult, SyncJobSpec};
use crate::engine::Credentials;
use crate::engine::mysql::catalog::MyTable;
use crate::engine::mysql::{self as my, catalog};
use crate::engine::postgres::connect::describe_pg_error;

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
/// the target knows), and what the target structure leaves out (prefix, FULLTEXT and SPATIAL
/// indexes, expression defaults, `ON UPDATE`, generated columns, CHECK constraints).
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
