//! Reading the source catalog of a MySQL or MariaDB server: which tables the selection means,
//! their columns, types and keys.

use mysql_async::Conn;
use mysql_async::prelude::Queryable;

use crate::api::{ObjectScope, ObjectSelection, TableSelection};
use crate::engine::error::{EngineError, Result, Side};
use crate::engine::filter::{self, Dialect};
use crate::engine::model::{ColumnDef, TableDef};

use super::defaults::{self, DefaultStyle};

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

/// Whether the selection takes table `db.name` (one a CREATE TABLE adds), and where it goes:
/// target database, target table and its selection entry.
pub fn selects(selection: &ObjectSelection, db: &str, name: &str) -> Option<(String, String, Option<TableSelection>)> {
    if SYSTEM.contains(&db) || db == "_ferry" {
        return None;
    }
    for d in selection.databases.iter().filter(|d| d.name == db) {
        let target_db = selection.target_database.clone().or(d.mapped_name.clone()).unwrap_or(d.name.clone());
        if let Some(t) = d.tables.iter().find(|t| t.name == name) {
            return Some((target_db, t.mapped_name.clone().unwrap_or(name.to_owned()), Some(t.clone())));
        }
        if d.all || selection.scope == ObjectScope::Database {
            return Some((target_db, name.to_owned(), None));
        }
    }
    (selection.scope == ObjectScope::All)
        .then(|| (selection.target_database.clone().unwrap_or(db.to_owned()), name.to_owned(), None))
}

/// Default character set and collation of each source database.
pub async fn database_charsets(
    conn: &mut Conn,
    databases: &[String],
) -> Result<std::collections::HashMap<String, (String, String)>> {
    let mut out = std::collections::HashMap::new();
    for db in databases {
        let db = db.as_str();
        let row: Option<(String, String)> = conn
            .exec_first(
                "SELECT DEFAULT_CHARACTER_SET_NAME, DEFAULT_COLLATION_NAME FROM information_schema.SCHEMATA \
                 WHERE SCHEMA_NAME = ?",
                (db,),
            )
            .await
            .map_err(|e| EngineError::query(Side::Source, format!("reading database {db}"), e))?;
        if let Some(r) = row {
            out.insert(db.to_owned(), r);
        }
    }
    Ok(out)
}

/// Resolves the selection into tables: explicit ones in manifest order, whole databases listed.
pub async fn resolve(conn: &mut Conn, selection: &ObjectSelection) -> Result<Vec<MyTable>> {
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

/// What the engine must know of a column's type to read, decode and write it exactly.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ColumnKind {
    /// TINYINT…BIGINT: width in bits and signedness (the binary log does not say which).
    Integer { bits: u32, unsigned: bool },
    /// FLOAT: read as DOUBLE, since the server prints FLOAT with 6 digits.
    Float,
    /// DOUBLE.
    Double,
    /// BIT(n): read and written as an unsigned number.
    Bit,
    /// ENUM: written by member index from the binary log.
    Enum,
    /// SET: written by bitmask from the binary log.
    Set,
    /// YEAR.
    Year,
    /// TIMESTAMP: UTC seconds in the binary log.
    Timestamp,
    /// DATE.
    Date,
    /// CHAR, VARCHAR, TEXT and JSON (MariaDB's JSON is LONGTEXT): bytes in `charset`.
    Text,
    /// Everything else, written from its text form or bytes as they are (DECIMAL, DATE,
    /// DATETIME, TIME, BINARY, BLOB, GEOMETRY…).
    Other,
}

impl ColumnKind {
    fn of(data_type: &str, column_type: &str) -> ColumnKind {
        let unsigned = column_type.contains("unsigned");
        match data_type {
            "tinyint" => ColumnKind::Integer { bits: 8, unsigned },
            "smallint" => ColumnKind::Integer { bits: 16, unsigned },
            "mediumint" => ColumnKind::Integer { bits: 24, unsigned },
            "int" | "integer" => ColumnKind::Integer { bits: 32, unsigned },
            "bigint" => ColumnKind::Integer { bits: 64, unsigned },
            "float" => ColumnKind::Float,
            "double" | "real" => ColumnKind::Double,
            "bit" => ColumnKind::Bit,
            "enum" => ColumnKind::Enum,
            "set" => ColumnKind::Set,
            "year" => ColumnKind::Year,
            "timestamp" => ColumnKind::Timestamp,
            "date" => ColumnKind::Date,
            "char" | "varchar" | "tinytext" | "text" | "mediumtext" | "longtext" | "json" => ColumnKind::Text,
            _ => ColumnKind::Other,
        }
    }
}

/// A column as the MySQL engine needs it beyond [`ColumnDef`].
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct MyColumn {
    /// How values are read, decoded and written.
    pub kind: ColumnKind,
    /// Character set of a text column.
    pub charset: Option<String>,
    /// Collation of a text column.
    pub collation: Option<String>,
    /// `DATA_TYPE` in lower case (`varchar`, `bit`, `varbinary`).
    pub data_type: String,
    /// `COLUMN_DEFAULT` as the server reports it: as SQL on MariaDB (`NULL`, `'abc'`,
    /// `current_timestamp()`), as the bare value on MySQL (`abc`). Never written as it is:
    /// [`MyColumn::default_sql`] renders it.
    pub default: Option<String>,
    /// How the server writes `default`.
    pub default_style: DefaultStyle,
    /// `EXTRA` (`auto_increment`, `on update current_timestamp()`, `STORED GENERATED`…).
    pub extra: String,
    /// Expression of a generated column.
    pub generation: Option<String>,
    /// Column comment.
    pub comment: String,
}

impl MyColumn {
    /// Whether the server computes the column; it is never written.
    pub fn generated(&self) -> bool {
        self.generation.as_deref().is_some_and(|g| !g.is_empty())
    }

    /// The value of the column's `DEFAULT` clause for the target, if it has one; `Err` says why
    /// it cannot be carried safely.
    pub fn default_sql(&self) -> std::result::Result<Option<String>, String> {
        defaults::render_default(self.default_style, &self.data_type, self.default.as_deref(), &self.extra)
    }

    /// The column's `ON UPDATE` clause, if it has one; `Err` says why it cannot be carried.
    pub fn on_update_sql(&self) -> std::result::Result<Option<String>, String> {
        defaults::render_on_update(&self.extra)
    }

    /// The generation expression, checked to be one plain expression; `Err` says why not.
    pub fn generation_sql(&self) -> std::result::Result<Option<&str>, String> {
        match self.generation.as_deref().filter(|g| !g.is_empty()) {
            None => Ok(None),
            Some(g) => defaults::check_expression(g)
                .map(|()| Some(g))
                .map_err(|e| format!("its generation expression cannot be carried safely ({e})")),
        }
    }
}

/// A secondary index of a source table (the primary key is part of the table).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct IndexDef {
    /// Index name.
    pub name: String,
    /// UNIQUE.
    pub unique: bool,
    /// `BTREE`, `HASH`, `FULLTEXT` or `SPATIAL`.
    pub kind: String,
    /// Columns (source names) with their prefix length, in index order.
    pub columns: Vec<(String, Option<u64>)>,
}

/// A `CHECK` constraint of a source table.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct CheckDef {
    /// Constraint name (on MariaDB a column-level check is named after its column).
    pub name: String,
    /// Written with a column (MariaDB `LEVEL = 'Column'`, as the check a `JSON` column gets)
    /// rather than as a table constraint.
    pub column: Option<String>,
    /// The condition as the server prints it, in source column names.
    pub clause: String,
}

/// A selected table with what the MySQL engine needs to copy and stream it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct MyTable {
    /// The engine-neutral definition.
    pub def: TableDef,
    /// Per column, in the order of `def.columns`.
    pub columns: Vec<MyColumn>,
    /// Storage engine.
    pub engine: Option<String>,
    /// Table default collation.
    pub collation: Option<String>,
    /// Secondary indexes.
    pub indexes: Vec<IndexDef>,
    /// `CHECK` constraints.
    pub checks: Vec<CheckDef>,
}

impl MyTable {
    /// What of the table's selected columns the target does not get, as
    /// (`column c of db.t`, reason): defaults, `ON UPDATE` clauses and generated columns that
    /// cannot be rendered safely (see [`defaults`]). The column itself is still created (a
    /// generated one is not).
    pub fn left_out(&self) -> Vec<(String, String)> {
        let mut out = Vec::new();
        for (c, m) in self.def.columns.iter().zip(&self.columns).filter(|(c, _)| c.selected) {
            let object = || format!("column {} of {}", c.name, self.def.display_name());
            let generated = m.generation_sql();
            let mut reasons: Vec<String> = Vec::new();
            if let Err(e) = &generated {
                reasons.push(format!("{e}; the target does not get the column"));
            }
            if matches!(generated, Ok(None)) {
                if let Err(e) = m.default_sql() {
                    reasons.push(format!("{e}; the target column gets no default"));
                }
                if let Err(e) = m.on_update_sql() {
                    reasons.push(format!("{e}; the target column gets none"));
                }
            }
            if !reasons.is_empty() {
                out.push((object(), reasons.join("; ")));
            }
        }
        for check in &self.checks {
            if let Err(reason) = self.check_sql(check) {
                out.push((
                    format!("check constraint {} of {}", check.name, self.def.display_name()),
                    format!("{reason}; the target does not get it"),
                ));
            }
        }
        out
    }

    /// A check constraint's condition in target column names; `Err` says why it cannot be
    /// carried: its text is not one plain expression (see [`defaults::check_expression`]), or it
    /// uses a column the target does not get (not selected, or generated by an expression that
    /// cannot be carried). Renamed columns are renamed in the condition.
    pub fn check_sql(&self, check: &CheckDef) -> std::result::Result<String, String> {
        defaults::check_expression(&check.clause)
            .map_err(|e| format!("its condition cannot be carried safely ({e})"))?;
        let mut missing = None;
        let sql = defaults::rename_names(&check.clause, |name| {
            let (c, m) = self.def.columns.iter().zip(&self.columns).find(|(c, _)| c.name.eq_ignore_ascii_case(name))?;
            if !c.selected || m.generation_sql().is_err() {
                missing.get_or_insert_with(|| c.name.clone());
                return None;
            }
            (c.target_name != c.name).then(|| crate::engine::sql::my_ident(&c.target_name))
        });
        match missing {
            Some(column) => Err(format!("it uses column {column}, which is not transferred")),
            None => Ok(sql),
        }
    }

    /// The selected columns the engine writes (generated ones excluded), with their positions.
    pub fn written(&self) -> impl Iterator<Item = (usize, &ColumnDef, &MyColumn)> {
        self.def
            .columns
            .iter()
            .zip(&self.columns)
            .enumerate()
            .filter(|(_, (c, m))| c.selected && !m.generated())
            .map(|(i, (c, m))| (i, c, m))
    }
}

type ColumnRow = (String, String, String, String, Option<String>, Option<String>, Option<String>, String);

/// Describes one table of the source, with its target names and selection.
pub async fn describe(
    conn: &mut Conn,
    db: &str,
    name: &str,
    target_schema: String,
    target_name: String,
    sel: Option<&TableSelection>,
) -> Result<MyTable> {
    let what = |e: mysql_async::Error| EngineError::query(Side::Source, format!("describing {db}.{name}"), e);
    let table: Option<(Option<u64>, Option<String>, Option<String>)> = conn
        .exec_first(
            "SELECT TABLE_ROWS, ENGINE, TABLE_COLLATION FROM information_schema.TABLES \
             WHERE TABLE_SCHEMA = ? AND TABLE_NAME = ?",
            (db, name),
        )
        .await
        .map_err(what)?;
    let Some((estimated, engine, collation)) = table else {
        return Err(EngineError::MissingTable(format!("{db}.{name}")));
    };
    let cols: Vec<ColumnRow> = conn
        .exec(
            "SELECT COLUMN_NAME, COLUMN_TYPE, DATA_TYPE, IS_NULLABLE, CHARACTER_SET_NAME, COLLATION_NAME, \
             COLUMN_DEFAULT, EXTRA FROM information_schema.COLUMNS \
             WHERE TABLE_SCHEMA = ? AND TABLE_NAME = ? ORDER BY ORDINAL_POSITION",
            (db, name),
        )
        .await
        .map_err(what)?;
    let extras: Vec<(Option<String>, String)> = conn
        .exec(
            "SELECT GENERATION_EXPRESSION, COLUMN_COMMENT FROM information_schema.COLUMNS \
             WHERE TABLE_SCHEMA = ? AND TABLE_NAME = ? ORDER BY ORDINAL_POSITION",
            (db, name),
        )
        .await
        .map_err(what)?;
    let stats: Vec<(String, i64, String, String, Option<u64>)> = conn
        .exec(
            "SELECT INDEX_NAME, NON_UNIQUE, INDEX_TYPE, COLUMN_NAME, SUB_PART FROM information_schema.STATISTICS \
             WHERE TABLE_SCHEMA = ? AND TABLE_NAME = ? ORDER BY INDEX_NAME = 'PRIMARY' DESC, INDEX_NAME, SEQ_IN_INDEX",
            (db, name),
        )
        .await
        .map_err(what)?;
    let checks = check_constraints(conn, db, name).await.map_err(what)?;
    let version: Option<String> = conn.query_first("SELECT VERSION()").await.map_err(what)?;
    let default_style = DefaultStyle::of(version.as_deref().unwrap_or_default());
    let columns_sel = sel.and_then(|s| s.columns.as_ref());
    let mut columns = Vec::with_capacity(cols.len());
    let mut my = Vec::with_capacity(cols.len());
    for ((col, type_sql, data_type, nullable, charset, coll, default, extra), (generation, comment)) in
        cols.into_iter().zip(extras)
    {
        let selected = match columns_sel {
            Some(c) if !c.include.is_empty() => c.include.contains(&col),
            Some(c) => !c.exclude.contains(&col),
            None => true,
        };
        let target = columns_sel.and_then(|c| c.rename.get(&col)).cloned().unwrap_or(col.clone());
        let data_type = data_type.to_ascii_lowercase();
        my.push(MyColumn {
            kind: ColumnKind::of(&data_type, &type_sql.to_ascii_lowercase()),
            data_type,
            charset,
            collation: coll,
            default,
            default_style,
            extra,
            generation,
            comment,
        });
        columns.push(ColumnDef { name: col, target_name: target, type_sql, nullable: nullable == "YES", selected });
    }
    let mut key = Vec::new();
    let mut indexes: Vec<IndexDef> = Vec::new();
    for (index, non_unique, kind, col, sub_part) in stats {
        if index == "PRIMARY" {
            key.extend(columns.iter().position(|c| c.name == col));
            continue;
        }
        match indexes.last_mut() {
            Some(last) if last.name == index => last.columns.push((col, sub_part)),
            _ => indexes.push(IndexDef { name: index, unique: non_unique == 0, kind, columns: vec![(col, sub_part)] }),
        }
    }
    let filter = match sel.and_then(|s| s.filter.as_deref()) {
        None => None,
        Some(f) => {
            let names: Vec<&str> = columns.iter().map(|c| c.name.as_str()).collect();
            Some(filter::for_table(Dialect::MySql, f, &names).map_err(|e| filter::refused(db, name, &e))?)
        }
    };
    Ok(MyTable {
        def: TableDef {
            schema: db.to_owned(),
            name: name.to_owned(),
            target_schema,
            target_name,
            columns,
            key,
            filter,
            estimated_rows: estimated.unwrap_or(0),
        },
        columns: my,
        engine,
        collation,
        indexes,
        checks,
    })
}

/// The enforced `CHECK` constraints of a table: MariaDB lists them with their table and level;
/// MySQL 8.0.16+ through `TABLE_CONSTRAINTS`; servers without either table have none.
async fn check_constraints(
    conn: &mut Conn,
    db: &str,
    table: &str,
) -> std::result::Result<Vec<CheckDef>, mysql_async::Error> {
    /// Unknown column, unknown table in `information_schema`.
    const NOT_THERE: [u16; 2] = [1054, 1109];
    let not_there = |e: &mysql_async::Error| matches!(e, mysql_async::Error::Server(s) if NOT_THERE.contains(&s.code));
    let maria: std::result::Result<Vec<(String, String, String)>, _> = conn
        .exec(
            "SELECT CONSTRAINT_NAME, LEVEL, CHECK_CLAUSE FROM information_schema.CHECK_CONSTRAINTS \
             WHERE CONSTRAINT_SCHEMA = ? AND TABLE_NAME = ? ORDER BY LEVEL, CONSTRAINT_NAME",
            (db, table),
        )
        .await;
    let rows = match maria {
        Ok(rows) => rows,
        Err(e) if not_there(&e) => {
            let mysql = conn
                .exec(
                    "SELECT cc.CONSTRAINT_NAME, 'Table', cc.CHECK_CLAUSE FROM information_schema.TABLE_CONSTRAINTS tc \
                     JOIN information_schema.CHECK_CONSTRAINTS cc \
                     ON cc.CONSTRAINT_SCHEMA = tc.CONSTRAINT_SCHEMA AND cc.CONSTRAINT_NAME = tc.CONSTRAINT_NAME \
                     WHERE tc.TABLE_SCHEMA = ? AND tc.TABLE_NAME = ? AND tc.CONSTRAINT_TYPE = 'CHECK' \
                     AND tc.ENFORCED = 'YES' ORDER BY cc.CONSTRAINT_NAME",
                    (db, table),
                )
                .await;
            match mysql {
                Ok(rows) => rows,
                Err(e) if not_there(&e) => Vec::new(),
                Err(e) => return Err(e),
            }
        }
        Err(e) => return Err(e),
    };
    Ok(rows
        .into_iter()
        .map(|(name, level, clause)| CheckDef {
            column: level.eq_ignore_ascii_case("column").then(|| name.clone()),
            name,
            clause,
        })
        .collect())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn column(data_type: &str, default: Option<&str>, extra: &str, generation: Option<&str>) -> MyColumn {
        MyColumn {
            kind: ColumnKind::Other,
            data_type: data_type.into(),
            charset: None,
            collation: None,
            default: default.map(str::to_owned),
            default_style: DefaultStyle::Value,
            extra: extra.into(),
            generation: generation.map(str::to_owned),
            comment: String::new(),
        }
    }

    #[test]
    fn what_cannot_be_rendered_safely_is_named_with_its_reason() {
        let cols = [
            ("plain", column("varchar", Some("x'); DROP TABLE t; --"), "", None)),
            ("expr", column("varchar", Some(r"concat(_utf8mb4\'a\')"), "DEFAULT_GENERATED", None)),
            ("gen", column("int", None, "STORED GENERATED", Some("1); DROP TABLE t; (1"))),
            ("upd", column("timestamp", None, "on update now(); DROP", None)),
        ];
        let t = MyTable {
            def: TableDef {
                schema: "shop".into(),
                name: "t".into(),
                target_schema: "shop".into(),
                target_name: "t".into(),
                columns: cols
                    .iter()
                    .map(|(n, m)| ColumnDef {
                        name: (*n).into(),
                        target_name: (*n).into(),
                        type_sql: m.data_type.clone(),
                        nullable: true,
                        selected: true,
                    })
                    .collect(),
                key: Vec::new(),
                filter: None,
                estimated_rows: 0,
            },
            columns: cols.iter().map(|(_, m)| m.clone()).collect(),
            engine: None,
            collation: None,
            indexes: Vec::new(),
            checks: Vec::new(),
        };
        let left: Vec<String> = t.left_out().into_iter().map(|(o, r)| format!("{o}: {r}")).collect();
        assert_eq!(left.len(), 3, "{left:?}");
        assert!(left[0].starts_with("column expr of shop.t: its default expression"), "{left:?}");
        assert!(left[1].starts_with("column gen of shop.t: its generation expression"), "{left:?}");
        assert!(left[2].starts_with("column upd of shop.t: its ON UPDATE clause"), "{left:?}");
        let sql = crate::engine::mysql::target::create_table_sql(&t, false).unwrap();
        assert!(sql.contains("`plain` varchar NULL DEFAULT 'x''); DROP TABLE t; --'"), "{sql}");
        assert!(!sql.contains("`gen`") && !sql.contains("ON UPDATE") && !sql.contains("_utf8mb4"), "{sql}");
    }
}
