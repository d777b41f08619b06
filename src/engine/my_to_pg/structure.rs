//! The PostgreSQL structure of MySQL/MariaDB tables: `CREATE TABLE` with the mapped types
//! ([`super::types`]), names kept exactly as they are (quoted), the primary key and secondary
//! indexes after the copy, `AUTO_INCREMENT` as an identity column whose sequence continues where
//! the source's counter stands, and defaults translated where they mean the same.
//!
//! What does not carry over is left out and reported (prefix, FULLTEXT and SPATIAL indexes,
//! expression defaults, `ON UPDATE`, generated columns, CHECK constraints); what cannot be
//! written at all (a type without a counterpart, names that collide) stops the job before
//! anything is created.

use std::collections::{BTreeMap, HashMap};

use tokio_postgres::Client;

use super::types::{
    Conv, Mapping, ZERO_DATE_SENTINEL, is_identity_type, is_mariadb_json, is_text_type, map_type, pg_literal,
    with_target_type,
};
use crate::api::{SyncJobSpec, ZeroDatePolicy};
use crate::engine::error::{Context, EngineError, Result, Side};
use crate::engine::mysql::catalog::{MyColumn, MyTable};
use crate::engine::sql::{my_ident, pg_ident, pg_qualified};

const T: Side = Side::Target;

/// The longest identifier PostgreSQL keeps whole (`NAMEDATALEN - 1` bytes).
const MAX_IDENT: usize = 63;

/// A written column of a table on the target.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ColumnPlan {
    /// Target name.
    pub name: String,
    /// How values are converted.
    pub conv: Conv,
    /// The PostgreSQL type.
    pub pg_type: String,
    /// Whether the target column takes NULL (a zero date becomes NULL there).
    pub nullable: bool,
    /// Source character set of a text column, when it is not UTF-8 (the reader converts it).
    pub convert_from: Option<String>,
    /// Whether `pg_type` is the spec's (`columns.targetTypes`) rather than the mapping's.
    pub overridden: bool,
}

/// A table's structure on the target, worked out from the source catalog alone.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct TablePlan {
    /// The written columns (the table's [`MyTable::written`] ones), in order.
    pub columns: Vec<ColumnPlan>,
    /// `CREATE TABLE IF NOT EXISTS`, without keys.
    pub create_sql: String,
    /// The primary key's columns (target names), empty without one.
    pub key: Vec<String>,
    /// Secondary indexes: (target index name, `CREATE INDEX IF NOT EXISTS` statement, whether
    /// it is unique).
    pub indexes: Vec<(String, String, bool)>,
    /// The `AUTO_INCREMENT` column made an identity: (source name, target name).
    pub identity: Option<(String, String)>,
    /// What the target does not get, as (object, reason).
    pub left_out: Vec<(String, String)>,
    /// What a zero date becomes in the table's columns (the job's `policy.zeroDates`).
    pub zero_dates: ZeroDatePolicy,
}

/// What the job's spec decides of the target structure beyond the source catalog.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Options {
    /// `policy.zeroDates`: what a zero date becomes (and a zero-date default).
    pub zero_dates: ZeroDatePolicy,
    /// `columns.targetTypes`: by source (database, table), source column → PostgreSQL type.
    pub target_types: HashMap<(String, String), BTreeMap<String, String>>,
}

impl Options {
    /// The options `spec` gives.
    pub fn of(spec: &SyncJobSpec) -> Options {
        let target_types = spec
            .objects
            .tables(spec.source.engine)
            .into_iter()
            .filter_map(|t| {
                let types = &t.table.columns.as_ref()?.target_types;
                (!types.is_empty()).then(|| ((t.database.to_owned(), t.table.name.clone()), types.clone()))
            })
            .collect();
        Options { zero_dates: spec.policy.zero_dates.unwrap_or_default(), target_types }
    }

    /// The overridden types of table `t`'s columns, by source column name.
    pub fn types_of(&self, t: &MyTable) -> Option<&BTreeMap<String, String>> {
        self.target_types.get(&(t.def.schema.clone(), t.def.name.clone()))
    }
}

/// Every `columns.targetTypes` entry that names a column the job does not write (the table has
/// no such column, or it is generated), as a message.
pub fn unknown_target_columns(tables: &[MyTable], opts: &Options) -> Vec<String> {
    let mut out = Vec::new();
    for t in tables {
        for column in opts.types_of(t).into_iter().flat_map(|types| types.keys()) {
            if !t.written().any(|(_, c, _)| &c.name == column) {
                out.push(format!(
                    "columns.targetTypes of {} names column {column}, which the table does not have (or which is \
                     generated, and not transferred)",
                    t.def.display_name()
                ));
            }
        }
    }
    out
}

/// Character sets whose bytes are UTF-8 already.
fn is_utf8(charset: &str) -> bool {
    matches!(charset.to_ascii_lowercase().as_str(), "utf8mb4" | "utf8mb3" | "utf8" | "ascii" | "binary")
}

/// The select-list expression that reads a written column as its conversion needs it: text in
/// another character set converted to UTF-8 by the server.
pub fn select_expr(name: &str, m: &MyColumn) -> String {
    match m.charset.as_deref() {
        Some(cs) if !is_utf8(cs) => format!("CONVERT({} USING utf8mb4)", my_ident(name)),
        _ => my_ident(name),
    }
}

/// Every column whose type has no PostgreSQL counterpart, as `db.table.column: reason`.
pub fn unmapped(tables: &[MyTable]) -> Vec<String> {
    let mut out = Vec::new();
    for t in tables {
        for (_, c, m) in t.written() {
            if let Err(e) = map_type(&m.data_type, &c.type_sql, is_mariadb_json(t, &c.name)) {
                out.push(format!("column {} of {}: {e}", c.name, t.def.display_name()));
            }
        }
    }
    out
}

/// Target names that collide: two tables into one schema whose names differ only in case (or
/// not at all), two columns of a table likewise, and names PostgreSQL would cut short.
pub fn collisions(tables: &[MyTable]) -> Vec<String> {
    let mut out = Vec::new();
    let mut seen: HashMap<(String, String), &MyTable> = HashMap::new();
    for t in tables {
        let d = &t.def;
        let folded = (d.target_schema.clone(), d.target_name.to_lowercase());
        if let Some(other) = seen.insert(folded, t) {
            out.push(format!(
                "{} and {} would both become tables of schema {} named {:?} and {:?}, which differ only in case: \
                 rename one with objects[].tables[].mappedName",
                other.def.display_name(),
                d.display_name(),
                d.target_schema,
                other.def.target_name,
                d.target_name
            ));
        }
        for name in [&d.target_schema, &d.target_name] {
            if name.len() > MAX_IDENT {
                out.push(format!(
                    "the target name {name:?} of {} is longer than PostgreSQL's {MAX_IDENT} bytes: map it to a \
                     shorter name",
                    d.display_name()
                ));
            }
        }
        let mut columns: HashMap<String, &str> = HashMap::new();
        for (_, c, _) in t.written() {
            if let Some(other) = columns.insert(c.target_name.to_lowercase(), &c.target_name) {
                out.push(format!(
                    "columns {other:?} and {:?} of {} differ only in case on the target: rename one",
                    c.target_name,
                    d.display_name()
                ));
            }
            if c.target_name.len() > MAX_IDENT {
                out.push(format!(
                    "column {} of {} is longer than PostgreSQL's {MAX_IDENT} bytes: rename it",
                    c.target_name,
                    d.display_name()
                ));
            }
        }
    }
    out
}

/// The name of a secondary index on the target: index names are per schema in PostgreSQL and per
/// table in MySQL, so the table's name comes first; a name too long is cut and given a hash of
/// the whole so two cut names do not meet.
pub fn index_name(table: &str, index: &str) -> String {
    let full = format!("{table}_{index}");
    if full.len() <= MAX_IDENT {
        return full;
    }
    // FNV-1a: stable across builds, unlike the standard library's hasher.
    let hash = full.bytes().fold(0xcbf2_9ce4_8422_2325u64, |h, b| (h ^ u64::from(b)).wrapping_mul(0x100_0000_01b3));
    let mut cut = MAX_IDENT - 9;
    while !full.is_char_boundary(cut) {
        cut -= 1;
    }
    format!("{}_{:08x}", &full[..cut], hash as u32)
}

/// The value of a literal `render_default` wrote (`'it''s'`, backslashes doubled, NUL as `\0`).
fn unliteral(sql: &str) -> Option<String> {
    let inner = sql.strip_prefix('\'')?.strip_suffix('\'')?;
    let mut out = String::with_capacity(inner.len());
    let mut chars = inner.chars();
    while let Some(c) = chars.next() {
        match c {
            '\'' => {
                chars.next().filter(|n| *n == '\'')?;
                out.push('\'');
            }
            '\\' => match chars.next()? {
                '0' => out.push('\0'),
                n => out.push(n),
            },
            c => out.push(c),
        }
    }
    Some(out)
}

/// Whether `text` is a plain decimal number.
fn is_number(text: &str) -> bool {
    let t = text.strip_prefix(['-', '+']).unwrap_or(text);
    !t.is_empty()
        && t.bytes().all(|b| b.is_ascii_digit() || b == b'.' || b == b'e' || b == b'E' || b == b'-' || b == b'+')
        && t.bytes().next().is_some_and(|b| b.is_ascii_digit() || b == b'.')
}

/// A column's default for PostgreSQL: `Ok(None)` without one, `Err` with why it is left out. A
/// zero-date default becomes the sentinel under `policy.zeroDates: sentinel`.
pub fn default_sql(
    m: &MyColumn,
    mapping: &Mapping,
    zero_dates: ZeroDatePolicy,
) -> std::result::Result<Option<String>, String> {
    let Some(rendered) = m.default_sql()? else { return Ok(None) };
    if rendered.eq_ignore_ascii_case("NULL") {
        return Ok(None);
    }
    let conv = mapping.conv;
    if rendered.to_ascii_uppercase().starts_with("CURRENT_TIMESTAMP") {
        return match conv {
            Conv::DateTime | Conv::Timestamp | Conv::Date => Ok(Some("now()".into())),
            _ => Err("its default CURRENT_TIMESTAMP has no meaning for the column's type".into()),
        };
    }
    let zero_date = |v: &str| v.starts_with("0000") || v.get(4..8) == Some("-00-") || v.get(7..10) == Some("-00");
    if let Some(value) = unliteral(&rendered) {
        return match conv {
            _ if value.contains('\0') => Err("its default holds a NUL character".into()),
            Conv::Text | Conv::Time => Ok(Some(pg_literal(&value))),
            Conv::Integer | Conv::Decimal | Conv::Real | Conv::Double | Conv::Year if is_number(value.trim()) => {
                Ok(Some(pg_literal(value.trim())))
            }
            Conv::Date | Conv::DateTime | Conv::Timestamp if zero_date(&value) => match zero_dates {
                ZeroDatePolicy::Sentinel => Ok(Some(pg_literal(ZERO_DATE_SENTINEL))),
                ZeroDatePolicy::Null => Err("its default is a zero date, which PostgreSQL has no value for (rows \
                     the job copies with one get NULL, or stop the job in a NOT NULL column; \
                     policy.zeroDates: sentinel writes and defaults to -infinity)"
                    .into()),
                ZeroDatePolicy::Stop => Err("its default is a zero date, which PostgreSQL has no value for (and \
                     policy.zeroDates is stop)"
                    .into()),
            },
            Conv::Date | Conv::DateTime => Ok(Some(pg_literal(&value))),
            _ => Err(format!("its default {rendered} is not translated for {}", mapping.pg_type)),
        };
    }
    if is_number(&rendered) && matches!(conv, Conv::Integer | Conv::Decimal | Conv::Real | Conv::Double | Conv::Year) {
        return Ok(Some(pg_literal(&rendered)));
    }
    // b'101' of a BIT column.
    if let Some(bits) = rendered.strip_prefix("b'").and_then(|b| b.strip_suffix('\''))
        && bits.bytes().all(|b| b == b'0' || b == b'1')
    {
        match conv {
            Conv::Bool => return Ok(Some(if bits.contains('1') { "true" } else { "false" }.into())),
            Conv::Bits(n) if bits.len() <= n as usize => {
                return Ok(Some(format!("B'{bits:0>width$}'", width = n as usize)));
            }
            _ => {}
        }
    }
    Err(format!("its default {rendered} is not translated to PostgreSQL; the target column gets none"))
}

/// Works out each table's target structure; an error names every column without a counterpart
/// and every name collision.
pub fn plan(tables: &[MyTable], opts: &Options) -> Result<Vec<TablePlan>> {
    let mut problems = unmapped(tables);
    problems.extend(collisions(tables));
    problems.extend(unknown_target_columns(tables, opts));
    if !problems.is_empty() {
        return Err(EngineError::Unsupported(format!(
            "the tables cannot be created on PostgreSQL: {}",
            problems.join("; ")
        )));
    }
    tables.iter().map(|t| plan_table(t, opts)).collect()
}

fn plan_table(t: &MyTable, opts: &Options) -> Result<TablePlan> {
    let d = &t.def;
    let table = d.display_name();
    let mut left_out = Vec::new();
    let mut columns = Vec::new();
    let mut column_sql = Vec::new();
    let mut identity = None;
    let target_types = opts.types_of(t);
    for (i, c, m) in t.written() {
        let json = is_mariadb_json(t, &c.name);
        let mapping = map_type(&m.data_type, &c.type_sql, json).map_err(EngineError::Unsupported)?;
        let target_type = target_types.and_then(|types| types.get(&c.name));
        let mapping = match target_type {
            Some(ty) => with_target_type(mapping, ty),
            None => mapping,
        };
        let object = || format!("column {} of {table}", c.name);
        let name = pg_ident(&c.target_name);
        let mut sql = format!("{name} {}", mapping.pg_type);
        let auto = m.extra.to_ascii_lowercase().contains("auto_increment");
        let key = d.key.contains(&i);
        if auto && is_identity_type(&mapping.pg_type) {
            sql.push_str(" GENERATED BY DEFAULT AS IDENTITY");
            identity = Some((c.name.clone(), c.target_name.clone()));
        } else if auto {
            left_out.push((
                object(),
                format!("AUTO_INCREMENT on a column mapped to {}, which cannot be an identity", mapping.pg_type),
            ));
        }
        if !c.nullable || key {
            sql.push_str(" NOT NULL");
        }
        if !auto {
            match default_sql(m, &mapping, opts.zero_dates) {
                Ok(Some(default)) => sql.push_str(&format!(" DEFAULT {default}")),
                Ok(None) => {}
                Err(reason) => left_out.push((object(), format!("{reason}; the target column gets no default"))),
            }
        }
        if m.extra.to_ascii_lowercase().contains("on update") {
            left_out.push((object(), "ON UPDATE CURRENT_TIMESTAMP has no PostgreSQL counterpart".into()));
        }
        // The labels' CHECK holds on text; on another type the override decides what it takes.
        let labels_checked = target_type.is_none_or(|ty| is_text_type(ty));
        if !labels_checked && (mapping.enum_labels.is_some() || mapping.set_members.is_some()) {
            left_out.push((
                object(),
                format!(
                    "the CHECK of its ENUM or SET labels, as columns.targetTypes makes it {}, which is not text",
                    mapping.pg_type
                ),
            ));
        }
        let check = check_sql(&name, mapping.enum_labels.as_deref(), mapping.set_members.as_deref());
        if let Some(check) = check.filter(|_| labels_checked) {
            sql.push(' ');
            sql.push_str(&check);
        }
        column_sql.push(sql);
        let convert_from = m.charset.clone().filter(|cs| !is_utf8(cs));
        columns.push(ColumnPlan {
            name: c.target_name.clone(),
            conv: mapping.conv,
            pg_type: mapping.pg_type.clone(),
            nullable: c.nullable && !key,
            convert_from,
            overridden: target_type.is_some(),
        });
    }
    for (c, _) in d.columns.iter().zip(&t.columns).filter(|(c, m)| c.selected && m.generated()) {
        left_out.push((
            format!("column {} of {table}", c.name),
            "a generated column: its expression is not translated, and the target does not get the column".into(),
        ));
    }
    for check in &t.checks {
        let json_check = check.column.as_deref().is_some_and(|c| is_mariadb_json(t, c));
        if !json_check {
            left_out.push((
                format!("check constraint {} of {table}", check.name),
                "CHECK conditions are not translated to PostgreSQL; the target does not get it".into(),
            ));
        }
    }
    let target = pg_qualified(&d.target_schema, &d.target_name);
    let written: HashMap<&str, &str> = t.written().map(|(_, c, _)| (c.name.as_str(), c.target_name.as_str())).collect();
    let mut indexes = Vec::new();
    for ix in &t.indexes {
        let object = || format!("index {} of {table}", ix.name);
        if ix.kind.eq_ignore_ascii_case("FULLTEXT") || ix.kind.eq_ignore_ascii_case("SPATIAL") {
            left_out.push((object(), format!("PostgreSQL has no {} index of the same meaning", ix.kind)));
            continue;
        }
        if ix.columns.iter().any(|(_, prefix)| prefix.is_some()) {
            left_out.push((object(), "a prefix index: PostgreSQL indexes whole values".into()));
            continue;
        }
        let Some(cols) =
            ix.columns.iter().map(|(c, _)| written.get(c.as_str()).map(|n| pg_ident(n))).collect::<Option<Vec<_>>>()
        else {
            left_out.push((object(), "it uses a column that is not transferred".into()));
            continue;
        };
        let name = index_name(&d.target_name, &ix.name);
        let sql = format!(
            "CREATE {}INDEX IF NOT EXISTS {} ON {target} ({})",
            if ix.unique { "UNIQUE " } else { "" },
            pg_ident(&name),
            cols.join(", ")
        );
        indexes.push((name, sql, ix.unique));
    }
    let key = d.key_columns().map(|c| c.target_name.clone()).collect();
    let create_sql = format!("CREATE TABLE IF NOT EXISTS {target} ({})", column_sql.join(", "));
    Ok(TablePlan { columns, create_sql, key, indexes, identity, left_out, zero_dates: opts.zero_dates })
}

/// Creates the target schemas and tables that are missing (without keys or indexes).
pub async fn create_tables(client: &Client, tables: &[MyTable], plans: &[TablePlan]) -> Result<()> {
    let mut schemas: Vec<&str> = tables.iter().map(|t| t.def.target_schema.as_str()).collect();
    schemas.sort();
    schemas.dedup();
    for s in schemas {
        client
            .batch_execute(&format!("CREATE SCHEMA IF NOT EXISTS {}", pg_ident(s)))
            .await
            .ctx(T, || format!("creating schema {s}"))?;
    }
    for (t, p) in tables.iter().zip(plans) {
        crate::engine::postgres::connect::execute_one(client, &p.create_sql)
            .await
            .ctx(T, || format!("creating table {}", t.def.display_target()))?;
    }
    Ok(())
}

/// Which secondary indexes a build creates.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Indexes {
    /// Every one.
    All,
    /// The non-unique ones: a copy made of chunks read in different snapshots may break a
    /// unique index until the stream has caught up (a primary key it cannot: chunks are ranges of
    /// it).
    NonUnique,
    /// The unique ones, once the copy is consistent.
    Unique,
    /// None (`policy.indexes: false`): the primary keys only.
    None,
}

/// The `CHECK` that keeps a column (`name`, quoted) holding an `ENUM`'s labels or a `SET`'s
/// members to the values the source allows; `None` for other columns.
pub fn check_sql(name: &str, enum_labels: Option<&[String]>, set_members: Option<&[String]>) -> Option<String> {
    if let Some(labels) = enum_labels {
        let mut allowed: Vec<String> = labels.iter().map(|l| pg_literal(l)).collect();
        // '' is MySQL's error value, which any ENUM column may hold.
        if !labels.iter().any(String::is_empty) {
            allowed.push("''".into());
        }
        return Some(format!("CHECK ({name} IN ({}))", allowed.join(", ")));
    }
    let members = set_members?;
    let allowed: Vec<String> = members.iter().map(|l| pg_literal(l)).collect();
    Some(format!("CHECK ({name} = '' OR string_to_array({name}, ',') <@ ARRAY[{}]::text[])", allowed.join(", ")))
}

/// Adds the primary keys and the secondary indexes (those `which` says) the tables do not
/// have yet.
pub async fn build_keys_and_indexes(
    client: &Client,
    tables: &[MyTable],
    plans: &[TablePlan],
    which: Indexes,
) -> Result<()> {
    for (t, p) in tables.iter().zip(plans) {
        let d = &t.def;
        let target = pg_qualified(&d.target_schema, &d.target_name);
        if !p.key.is_empty() {
            let has_key = client
                .query_opt(
                    "SELECT 1 FROM pg_index i JOIN pg_class c ON c.oid = i.indrelid \
                     JOIN pg_namespace n ON n.oid = c.relnamespace \
                     WHERE n.nspname = $1 AND c.relname = $2 AND i.indisprimary",
                    &[&d.target_schema, &d.target_name],
                )
                .await
                .ctx(T, || format!("looking up the primary key of {}", d.display_target()))?
                .is_some();
            if !has_key {
                let cols: Vec<String> = p.key.iter().map(|c| pg_ident(c)).collect();
                let sql = format!("ALTER TABLE {target} ADD PRIMARY KEY ({})", cols.join(", "));
                crate::engine::postgres::connect::execute_one(client, &sql)
                    .await
                    .ctx(T, || format!("adding the primary key of {}", d.display_target()))?;
            }
        }
        let wanted = |unique: bool| match which {
            Indexes::All => true,
            Indexes::NonUnique => !unique,
            Indexes::Unique => unique,
            Indexes::None => false,
        };
        for (name, sql, _) in p.indexes.iter().filter(|(_, _, unique)| wanted(*unique)) {
            crate::engine::postgres::connect::execute_one(client, sql)
                .await
                .ctx(T, || format!("creating index {name} of {}", d.display_target()))?;
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::engine::model::{ColumnDef, TableDef};
    use crate::engine::mysql::catalog::{CheckDef, ColumnKind, IndexDef};
    use crate::engine::mysql::defaults::DefaultStyle;

    fn column(data_type: &str, default: Option<&str>, extra: &str) -> MyColumn {
        MyColumn {
            kind: ColumnKind::Other,
            data_type: data_type.into(),
            charset: None,
            collation: None,
            default: default.map(str::to_owned),
            default_style: DefaultStyle::Sql,
            extra: extra.into(),
            generation: None,
            comment: String::new(),
        }
    }

    fn table(name: &str, cols: &[(&str, &str, MyColumn)]) -> MyTable {
        MyTable {
            def: TableDef {
                schema: "shop".into(),
                name: name.into(),
                target_schema: "shop".into(),
                target_name: name.into(),
                columns: cols
                    .iter()
                    .map(|(n, ty, _)| ColumnDef {
                        name: (*n).into(),
                        target_name: (*n).into(),
                        type_sql: (*ty).into(),
                        nullable: true,
                        selected: true,
                    })
                    .collect(),
                key: vec![0],
                filter: None,
                estimated_rows: 0,
            },
            columns: cols.iter().map(|(_, _, m)| m.clone()).collect(),
            engine: Some("InnoDB".into()),
            collation: None,
            indexes: Vec::new(),
            checks: Vec::new(),
        }
    }

    #[test]
    fn tables_get_mapped_types_identity_defaults_and_checks() {
        let mut t = table(
            "Orders",
            &[
                ("id", "int(10) unsigned", column("int", None, "auto_increment")),
                ("state", "enum('new','it''s')", column("enum", Some("'new'"), "")),
                ("tags", "set('a','b')", column("set", None, "")),
                (
                    "at",
                    "timestamp(6)",
                    column("timestamp", Some("current_timestamp(6)"), "on update current_timestamp(6)"),
                ),
                ("doc", "longtext", column("longtext", None, "")),
                ("n", "decimal(5,2)", column("decimal", Some("1.50"), "")),
                ("flag", "bit(1)", column("bit", Some("b'1'"), "")),
                ("made", "date", column("date", Some("'0000-00-00'"), "")),
                ("calc", "int(11)", column("int", Some("(1 + 2)"), "")),
            ],
        );
        t.checks.push(CheckDef { name: "doc".into(), column: Some("doc".into()), clause: "json_valid(`doc`)".into() });
        t.indexes.push(IndexDef {
            name: "by_state".into(),
            unique: false,
            kind: "BTREE".into(),
            columns: vec![("state".into(), None)],
        });
        t.indexes.push(IndexDef {
            name: "by_doc".into(),
            unique: false,
            kind: "BTREE".into(),
            columns: vec![("doc".into(), Some(10))],
        });
        t.indexes.push(IndexDef {
            name: "ft".into(),
            unique: false,
            kind: "FULLTEXT".into(),
            columns: vec![("doc".into(), None)],
        });
        let p = plan(std::slice::from_ref(&t), &Options::default()).unwrap().remove(0);
        assert_eq!(
            p.create_sql,
            "CREATE TABLE IF NOT EXISTS \"shop\".\"Orders\" (\"id\" bigint GENERATED BY DEFAULT AS IDENTITY NOT NULL, \
             \"state\" text DEFAULT 'new' CHECK (\"state\" IN ('new', 'it''s', '')), \
             \"tags\" text CHECK (\"tags\" = '' OR string_to_array(\"tags\", ',') <@ ARRAY['a', 'b']::text[]), \
             \"at\" timestamptz(6) DEFAULT now(), \"doc\" jsonb, \"n\" numeric(5,2) DEFAULT '1.50', \
             \"flag\" boolean DEFAULT true, \"made\" date, \"calc\" integer)"
        );
        assert_eq!(p.identity, Some(("id".into(), "id".into())));
        assert_eq!(p.key, vec!["id".to_owned()]);
        assert_eq!(
            p.indexes,
            vec![(
                "Orders_by_state".to_owned(),
                "CREATE INDEX IF NOT EXISTS \"Orders_by_state\" ON \"shop\".\"Orders\" (\"state\")".to_owned(),
                false
            )]
        );
        let left: Vec<String> = p.left_out.iter().map(|(o, r)| format!("{o}: {r}")).collect();
        assert_eq!(left.len(), 5, "{left:?}");
        assert!(left.iter().any(|l| l.starts_with("column at of shop.Orders: ON UPDATE")), "{left:?}");
        assert!(
            left.iter().any(|l| l.starts_with("column made of shop.Orders: its default is a zero date")),
            "{left:?}"
        );
        assert!(left.iter().any(|l| l.starts_with("column calc of shop.Orders: its default")), "{left:?}");
        assert!(left.iter().any(|l| l.starts_with("index by_doc of shop.Orders: a prefix index")), "{left:?}");
        assert!(left.iter().any(|l| l.starts_with("index ft of shop.Orders: PostgreSQL has no FULLTEXT")), "{left:?}");
    }

    #[test]
    fn a_zero_date_default_becomes_the_sentinel_under_that_policy_only() {
        let t = table(
            "t",
            &[
                ("id", "int(11)", column("int", None, "")),
                ("d", "date", column("date", Some("'0000-00-00'"), "")),
                ("dt", "datetime", column("datetime", Some("'2024-00-01 00:00:00'"), "")),
            ],
        );
        let sentinel = Options { zero_dates: ZeroDatePolicy::Sentinel, ..Options::default() };
        let p = plan(std::slice::from_ref(&t), &sentinel).unwrap().remove(0);
        assert!(p.create_sql.contains("\"d\" date DEFAULT '-infinity'"), "{}", p.create_sql);
        assert!(p.create_sql.contains("\"dt\" timestamp(0) DEFAULT '-infinity'"), "{}", p.create_sql);
        assert!(p.left_out.is_empty(), "{:?}", p.left_out);
        for zero_dates in [ZeroDatePolicy::Null, ZeroDatePolicy::Stop] {
            let p = plan(std::slice::from_ref(&t), &Options { zero_dates, ..Options::default() }).unwrap().remove(0);
            assert!(!p.create_sql.contains("DEFAULT"), "{}", p.create_sql);
            assert_eq!(p.left_out.len(), 2, "{:?}", p.left_out);
        }
    }

    #[test]
    fn target_types_replace_the_mapped_types() {
        let t = table(
            "t",
            &[
                ("id", "int(11)", column("int", None, "auto_increment")),
                ("flag", "tinyint(1)", column("tinyint", Some("0"), "")),
                ("at", "datetime", column("datetime", None, "")),
                ("st", "enum('a','b')", column("enum", None, "")),
                ("mood", "enum('x')", column("enum", None, "")),
            ],
        );
        let mut opts = Options::default();
        opts.target_types.insert(
            ("shop".into(), "t".into()),
            [("id", "int8"), ("flag", "boolean"), ("at", "timestamptz"), ("st", "citext"), ("mood", "mood")]
                .into_iter()
                .map(|(c, ty)| (c.to_owned(), ty.to_owned()))
                .collect(),
        );
        let p = plan(std::slice::from_ref(&t), &opts).unwrap().remove(0);
        assert_eq!(
            p.create_sql,
            "CREATE TABLE IF NOT EXISTS \"shop\".\"t\" (\"id\" int8 GENERATED BY DEFAULT AS IDENTITY NOT NULL, \
             \"flag\" boolean DEFAULT '0', \"at\" timestamptz, \"st\" citext CHECK (\"st\" IN ('a', 'b', '')), \
             \"mood\" mood)"
        );
        let convs: Vec<(Conv, bool)> = p.columns.iter().map(|c| (c.conv, c.overridden)).collect();
        assert_eq!(convs[1], (Conv::Integer, true));
        assert_eq!(convs[2], (Conv::Timestamp, true), "a DATETIME into timestamptz is written as UTC");
        assert!(
            p.left_out.iter().any(|(o, r)| o == "column mood of shop.t" && r.contains("labels")),
            "{:?}",
            p.left_out
        );
        // A column the table does not have stops the plan, named.
        opts.target_types.insert(("shop".into(), "t".into()), [("nope".to_owned(), "text".to_owned())].into());
        let e = plan(std::slice::from_ref(&t), &opts).unwrap_err().to_string();
        assert!(e.contains("columns.targetTypes of shop.t names column nope"), "{e}");
    }

    #[test]
    fn names_that_differ_only_in_case_are_refused_by_name() {
        let a = table("Users", &[("id", "int(11)", column("int", None, ""))]);
        let b = table("users", &[("id", "int(11)", column("int", None, ""))]);
        let e = plan(&[a.clone(), b], &Options::default()).unwrap_err().to_string();
        assert!(e.contains("shop.Users and shop.users"), "{e}");
        let mut other_schema = a.clone();
        other_schema.def.target_schema = "elsewhere".into();
        assert!(plan(&[a, other_schema], &Options::default()).is_ok());
    }

    #[test]
    fn spatial_columns_are_refused_by_name() {
        let t =
            table("places", &[("id", "int(11)", column("int", None, "")), ("at", "point", column("point", None, ""))]);
        let e = plan(&[t], &Options::default()).unwrap_err().to_string();
        assert!(e.contains("column at of shop.places: the spatial type point"), "{e}");
    }

    #[test]
    fn long_index_names_are_cut_with_a_hash() {
        assert_eq!(index_name("t", "by_x"), "t_by_x");
        let long = index_name(&"a".repeat(40), &"b".repeat(40));
        assert_eq!(long.len(), 63);
        assert_ne!(long, index_name(&"a".repeat(40), &format!("{}c", "b".repeat(39))));
    }

    #[test]
    fn literals_written_for_mysql_read_back() {
        assert_eq!(unliteral("'it''s \\\\ \\0'").as_deref(), Some("it's \\ \0"));
        assert_eq!(unliteral("'a'b'"), None);
        assert_eq!(unliteral("5"), None);
    }
}
