//! Reading the source catalog of a MySQL or MariaDB server: which tables the selection means,
//! their columns, types and keys.

use mysql_async::Conn;
use mysql_async::prelude::Queryable;

use crate::api::{ObjectScope, ObjectSelection, TableSelection};
use crate::engine::error::{EngineError, Result, Side};
use crate::engine::model::{ColumnDef, TableDef};

const SYSTEM: [&str; 4] = ["mysql", "information_schema", "performance_schema", "sys"];

async fn tables_of(conn: &mut Conn, database: Option<&str>) -> Result<Vec<(String, String)>> {
    let rows: Vec<(String, String)> = conn
        .exec(
            "SELECT TABLE_SCHEMA, TABLE_NAME FROM information_schema.TABLES \
             WHERE TABLE_TYPE = 'BASE TABLE' AND (? IS NULL OR TABLE_SCHEMA = ?) ORDER BY 1, 2",
            (database, database),
        )
        .await
        .map_err(|e| EngineError::query(Side::Source, "listing tables", e))?;
    Ok(rows.into_iter().filter(|(db, _)| !SYSTEM.contains(&db.as_str()) && db != "_ferry").collect())
}

/// Resolves the selection into tables: explicit ones in manifest order, whole databases listed.
pub async fn resolve(conn: &mut Conn, selection: &ObjectSelection) -> Result<Vec<TableDef>> {
    let mut wanted: Vec<(String, String, String, String, Option<&TableSelection>)> = Vec::new();
    let target_db = |db: &crate::api::DatabaseSelection| {
        selection.target_database.clone().or(db.mapped_name.clone()).unwrap_or(db.name.clone())
    };
    if selection.scope == ObjectScope::All {
        for (db, t) in tables_of(conn, None).await? {
            let target = selection.target_database.clone().unwrap_or(db.clone());
            wanted.push((db, t.clone(), target, t, None));
        }
    }
    for db in &selection.databases {
        if db.all || selection.scope == ObjectScope::Database {
            for (_, t) in tables_of(conn, Some(&db.name)).await? {
                let sel = db.tables.iter().find(|x| x.name == t);
                let mapped = sel.and_then(|x| x.mapped_name.clone()).unwrap_or(t.clone());
                wanted.push((db.name.clone(), t, target_db(db), mapped, sel));
            }
        } else {
            for t in &db.tables {
                let mapped = t.mapped_name.clone().unwrap_or(t.name.clone());
                wanted.push((db.name.clone(), t.name.clone(), target_db(db), mapped, Some(t)));
            }
        }
    }
    let mut out = Vec::with_capacity(wanted.len());
    for (db, name, target_schema, target_name, sel) in wanted {
        out.push(describe(conn, &db, &name, target_schema, target_name, sel).await?);
    }
    Ok(out)
}

async fn describe(
    conn: &mut Conn,
    db: &str,
    name: &str,
    target_schema: String,
    target_name: String,
    sel: Option<&TableSelection>,
) -> Result<TableDef> {
    let what = |e: mysql_async::Error| EngineError::query(Side::Source, format!("describing {db}.{name}"), e);
    let estimated: Option<Option<u64>> = conn
        .exec_first(
            "SELECT TABLE_ROWS FROM information_schema.TABLES WHERE TABLE_SCHEMA = ? AND TABLE_NAME = ?",
            (db, name),
        )
        .await
        .map_err(what)?;
    let Some(estimated) = estimated else { return Err(EngineError::MissingTable(format!("{db}.{name}"))) };
    let cols: Vec<(String, String, String, String)> = conn
        .exec(
            "SELECT COLUMN_NAME, COLUMN_TYPE, IS_NULLABLE, COLUMN_KEY FROM information_schema.COLUMNS \
             WHERE TABLE_SCHEMA = ? AND TABLE_NAME = ? ORDER BY ORDINAL_POSITION",
            (db, name),
        )
        .await
        .map_err(what)?;
    let key_cols: Vec<String> = conn
        .exec(
            "SELECT COLUMN_NAME FROM information_schema.STATISTICS \
             WHERE TABLE_SCHEMA = ? AND TABLE_NAME = ? AND INDEX_NAME = 'PRIMARY' ORDER BY SEQ_IN_INDEX",
            (db, name),
        )
        .await
        .map_err(what)?;
    let columns_sel = sel.and_then(|s| s.columns.as_ref());
    let columns: Vec<ColumnDef> = cols
        .into_iter()
        .map(|(col, type_sql, nullable, _)| {
            let selected = match columns_sel {
                Some(c) if !c.include.is_empty() => c.include.contains(&col),
                Some(c) => !c.exclude.contains(&col),
                None => true,
            };
            let target = columns_sel.and_then(|c| c.rename.get(&col)).cloned().unwrap_or(col.clone());
            ColumnDef { name: col, target_name: target, type_sql, nullable: nullable == "YES", selected }
        })
        .collect();
    let key = key_cols.iter().filter_map(|k| columns.iter().position(|c| &c.name == k)).collect();
    Ok(TableDef {
        schema: db.to_owned(),
        name: name.to_owned(),
        target_schema,
        target_name,
        columns,
        key,
        filter: sel.and_then(|s| s.filter.clone()),
        estimated_rows: estimated.unwrap_or(0),
    })
}
