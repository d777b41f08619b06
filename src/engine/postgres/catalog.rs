//! Reading the source catalog: which tables the selection means, their columns, types, keys,
//! indexes and the user-defined types they need.

use tokio_postgres::Client;

use crate::api::{ColumnSelection, ObjectScope, ObjectSelection, TableSelection};
use crate::engine::error::{Context, EngineError, Result, Side};
use crate::engine::filter;
use crate::engine::model::{ColumnDef, TableDef};
use crate::engine::postgres::structure::{self, Extras};

/// A selected PostgreSQL table with what the PostgreSQL engine needs beyond [`TableDef`].
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct PgTable {
    /// The engine-neutral definition.
    pub def: TableDef,
    /// Whether every selected column has a built-in type, so binary COPY carries it between
    /// databases (user-defined types have database-specific OIDs in the binary format).
    pub binary: bool,
    /// `CREATE INDEX` statements of the secondary indexes, for the target after the load (not
    /// those of UNIQUE and EXCLUDE constraints: [`Extras::constraints`] carries those).
    pub indexes: Vec<IndexDef>,
    /// Whether `REPLICA IDENTITY FULL` is set (needed for tables without a key).
    pub replica_identity_full: bool,
    /// Whether it is a partitioned table (its rows live in its partitions).
    pub partitioned: bool,
    /// Defaults, identity and generated columns, constraints, foreign keys and comments.
    pub extras: Extras,
    /// The table's OID on the source: what tells it from a table dropped and created again
    /// under its name.
    pub oid: u32,
    /// What the source catalog says of each column of `def.columns`, in the same order.
    pub pg_columns: Vec<PgColumn>,
    /// The job's column selection for the table, which also decides whether a column added on
    /// the source later is transferred.
    pub column_selection: Option<ColumnSelection>,
}

/// A source column as the PostgreSQL catalog identifies it: what tells a renamed column from a
/// dropped one and a new one, and its type as the change stream names it.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct PgColumn {
    /// `pg_attribute.attnum`: stays with the column through a rename, never reused.
    pub attnum: i16,
    /// The type's OID.
    pub type_oid: u32,
    /// The type modifier (`atttypmod`).
    pub typmod: i32,
}

/// Whether a source column named `column` is transferred, and its target name, as `selection`
/// says.
pub fn column_choice(selection: Option<&ColumnSelection>, column: &str) -> (bool, String) {
    let selected = match selection {
        Some(c) if !c.include.is_empty() => c.include.iter().any(|i| i == column),
        Some(c) => !c.exclude.iter().any(|e| e == column),
        None => true,
    };
    let target = selection.and_then(|c| c.rename.get(column)).cloned().unwrap_or_else(|| column.to_owned());
    (selected, target)
}

/// A table's recorded layout (see [`PgTable::layout`]).
#[derive(serde::Serialize, serde::Deserialize)]
struct Layout {
    oid: u32,
    columns: Vec<LayoutColumn>,
}

/// One column of a table's recorded layout.
#[derive(serde::Serialize, serde::Deserialize)]
struct LayoutColumn {
    name: String,
    target: String,
    #[serde(rename = "type")]
    type_sql: String,
    nullable: bool,
    selected: bool,
    #[serde(flatten)]
    pg: PgColumn,
}

impl PgTable {
    /// Whether every selected column has a built-in type (binary COPY carries those).
    pub fn builtin_types(&self) -> bool {
        self.def.columns.iter().zip(&self.pg_columns).all(|(c, p)| !c.selected || p.type_oid < 16_384)
    }

    /// The table's columns as a record the target keeps (JSON): what the job knows of them at
    /// its checkpoint.
    pub fn layout(&self) -> String {
        let columns: Vec<LayoutColumn> = self
            .def
            .columns
            .iter()
            .zip(&self.pg_columns)
            .map(|(c, p)| LayoutColumn {
                name: c.name.clone(),
                target: c.target_name.clone(),
                type_sql: c.type_sql.clone(),
                nullable: c.nullable,
                selected: c.selected,
                pg: *p,
            })
            .collect();
        serde_json::to_string(&Layout { oid: self.oid, columns }).unwrap_or_default()
    }

    /// The OID a recorded `layout` names, if it can be read.
    pub fn recorded_oid(layout: &str) -> Option<u32> {
        serde_json::from_str::<Layout>(layout).ok().map(|l| l.oid)
    }

    /// The table with the columns of a recorded `layout` (the key follows its columns by
    /// attribute number); the table as it is when the record cannot be read or lost a key column.
    pub fn with_layout(mut self, layout: &str) -> PgTable {
        let Ok(Layout { oid, columns }) = serde_json::from_str::<Layout>(layout) else { return self };
        let key_attnums: Vec<i16> =
            self.def.key.iter().filter_map(|&k| self.pg_columns.get(k)).map(|p| p.attnum).collect();
        let Some(key) =
            key_attnums.iter().map(|a| columns.iter().position(|c| c.pg.attnum == *a)).collect::<Option<Vec<usize>>>()
        else {
            return self;
        };
        self.oid = oid;
        self.pg_columns = columns.iter().map(|c| c.pg).collect();
        self.def.columns = columns
            .into_iter()
            .map(|c| ColumnDef {
                name: c.name,
                target_name: c.target,
                type_sql: c.type_sql,
                nullable: c.nullable,
                selected: c.selected,
            })
            .collect();
        self.def.key = key;
        self.binary = self.builtin_types();
        self
    }

    /// Whether the publication names the table's columns (sources 15 and later): only for an
    /// `include` list. Excluded columns are left out by the decoder instead, so that a column
    /// added on the source later reaches the job, which then takes it on.
    pub fn publishes_column_list(&self) -> bool {
        self.column_selection.as_ref().is_some_and(|c| !c.include.is_empty())
    }
}

/// A secondary index of a source table.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct IndexDef {
    /// Index name.
    pub name: String,
    /// Whether it is UNIQUE.
    pub unique: bool,
    /// What follows `USING` in the index definition: method, columns, INCLUDE, WHERE.
    pub using: String,
}

/// A user-defined enum type some selected column uses.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct EnumType {
    /// Schema of the type.
    pub schema: String,
    /// Type name.
    pub name: String,
    /// Labels in sort order.
    pub labels: Vec<String>,
}

/// The server's version as `server_version_num` (150004 for 15.4).
pub async fn server_version(client: &Client, side: Side) -> Result<u32> {
    let row = client
        .query_one("SELECT current_setting('server_version_num')::int4", &[])
        .await
        .ctx(side, || "reading the server version".into())?;
    Ok(u32::try_from(row.get::<_, i32>(0)).unwrap_or(0))
}

/// Resolves the selection into tables: explicit ones in manifest order, then those of
/// databases and schemas selected with `all`. The source session is the one of
/// `spec.source.database`; tables of other databases are not reachable from it.
pub async fn resolve(client: &Client, selection: &ObjectSelection, source_db: &str) -> Result<Vec<PgTable>> {
    let mut wanted: Vec<(String, String, String, String, Option<&TableSelection>)> = Vec::new();
    if selection.scope == ObjectScope::All {
        for (schema, table) in list_tables(client, None).await? {
            wanted.push((schema.clone(), table.clone(), schema, table, None));
        }
    }
    for db in &selection.databases {
        if db.name != source_db {
            return Err(EngineError::Unsupported(format!(
                "spec.objects: database {:?} is not spec.source.database {source_db:?}; a PostgreSQL job reads one database",
                db.name
            )));
        }
        if db.all || selection.scope == ObjectScope::Database {
            for (schema, table) in list_tables(client, None).await? {
                let explicit = db.schemas.iter().find(|s| s.name == schema);
                let target_schema = explicit.and_then(|s| s.mapped_name.clone()).unwrap_or(schema.clone());
                let sel = explicit.and_then(|s| s.tables.iter().find(|t| t.name == table));
                let target = sel.and_then(|t| t.mapped_name.clone()).unwrap_or(table.clone());
                wanted.push((schema, table, target_schema, target, sel));
            }
            continue;
        }
        for t in &db.tables {
            wanted.push((
                "public".into(),
                t.name.clone(),
                "public".into(),
                t.mapped_name.clone().unwrap_or(t.name.clone()),
                Some(t),
            ));
        }
        for s in &db.schemas {
            let target_schema = s.mapped_name.clone().unwrap_or(s.name.clone());
            if s.all {
                for (schema, table) in list_tables(client, Some(&s.name)).await? {
                    let sel = s.tables.iter().find(|t| t.name == table);
                    let target = sel.and_then(|t| t.mapped_name.clone()).unwrap_or(table.clone());
                    wanted.push((schema, table, target_schema.clone(), target, sel));
                }
            } else {
                for t in &s.tables {
                    let target = t.mapped_name.clone().unwrap_or(t.name.clone());
                    wanted.push((s.name.clone(), t.name.clone(), target_schema.clone(), target, Some(t)));
                }
            }
        }
    }
    // The schemas the job maps to other names: expressions naming their sequences follow.
    let mut schema_map: Vec<(String, String)> =
        wanted.iter().filter(|w| w.0 != w.2).map(|w| (w.0.clone(), w.2.clone())).collect();
    schema_map.sort();
    schema_map.dedup_by(|a, b| a.0 == b.0);
    let mut out = Vec::with_capacity(wanted.len());
    for (schema, name, target_schema, target_name, sel) in wanted {
        out.push(describe(client, &schema, &name, target_schema, target_name, sel, &schema_map).await?);
    }
    Ok(out)
}

/// User tables of one schema, or of every user schema.
async fn list_tables(client: &Client, only: Option<&str>) -> Result<Vec<(String, String)>> {
    let rows = client
        .query(
            "SELECT n.nspname, c.relname FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace \
             WHERE c.relkind IN ('r', 'p') AND NOT c.relispartition \
               AND n.nspname NOT IN ('pg_catalog', 'information_schema', '_ferry') AND n.nspname NOT LIKE 'pg\\_%' \
               AND ($1::text IS NULL OR n.nspname = $1) ORDER BY 1, 2",
            &[&only],
        )
        .await
        .ctx(Side::Source, || "listing tables".into())?;
    Ok(rows.into_iter().map(|r| (r.get(0), r.get(1))).collect())
}

/// Reads one table's columns, key, indexes, statistics and [`Extras`].
async fn describe(
    client: &Client,
    schema: &str,
    name: &str,
    target_schema: String,
    target_name: String,
    sel: Option<&TableSelection>,
    schema_map: &[(String, String)],
) -> Result<PgTable> {
    let what = || format!("describing {schema}.{name}");
    let rel = client
        .query_opt(
            "SELECT c.oid, greatest(c.reltuples, 0)::int8, c.relreplident::text, c.relkind = 'p' FROM pg_class c \
             JOIN pg_namespace n ON n.oid = c.relnamespace WHERE n.nspname = $1 AND c.relname = $2 AND c.relkind IN ('r', 'p')",
            &[&schema, &name],
        )
        .await
        .ctx(Side::Source, what)?
        .ok_or_else(|| EngineError::MissingTable(format!("{schema}.{name}")))?;
    let oid: u32 = rel.get(0);
    let estimated: i64 = rel.get(1);
    let ident: String = rel.get(2);
    let partitioned: bool = rel.get(3);
    let cols = client
        .query(
            "SELECT a.attname, format_type(a.atttypid, a.atttypmod), NOT a.attnotnull, \
                    (a.atttypid < 16384 AND coalesce(nullif(t.typelem, 0), 0) < 16384), \
                    a.attnum, a.atttypid, a.atttypmod \
             FROM pg_attribute a JOIN pg_type t ON t.oid = a.atttypid \
             WHERE a.attrelid = $1 AND a.attnum > 0 AND NOT a.attisdropped AND a.attgenerated = '' ORDER BY a.attnum",
            &[&oid],
        )
        .await
        .ctx(Side::Source, what)?;
    let columns_sel = sel.and_then(|s| s.columns.as_ref());
    let mut columns = Vec::with_capacity(cols.len());
    let mut pg_columns = Vec::with_capacity(cols.len());
    let mut binary = true;
    for r in &cols {
        let col: String = r.get(0);
        let (selected, target) = column_choice(columns_sel, &col);
        if selected && !r.get::<_, bool>(3) {
            binary = false;
        }
        columns.push(ColumnDef { name: col, target_name: target, type_sql: r.get(1), nullable: r.get(2), selected });
        pg_columns.push(PgColumn { attnum: r.get(4), type_oid: r.get(5), typmod: r.get(6) });
    }
    let key_rows = client
        .query(
            "SELECT a.attname FROM pg_index i CROSS JOIN LATERAL unnest(i.indkey) WITH ORDINALITY AS k(attnum, ord) \
             JOIN pg_attribute a ON a.attrelid = i.indrelid AND a.attnum = k.attnum \
             WHERE i.indrelid = $1 AND i.indisprimary ORDER BY k.ord",
            &[&oid],
        )
        .await
        .ctx(Side::Source, what)?;
    let mut key = Vec::new();
    for r in &key_rows {
        let k: String = r.get(0);
        let Some(pos) = columns.iter().position(|c| c.name == k) else { continue };
        if !columns[pos].selected {
            return Err(EngineError::Unsupported(format!(
                "{schema}.{name}: primary key column {k:?} must be selected (spec.objects … columns)"
            )));
        }
        key.push(pos);
    }
    let idx_rows = client
        .query(
            "SELECT ci.relname, i.indisunique, pg_get_indexdef(i.indexrelid) FROM pg_index i \
             JOIN pg_class ci ON ci.oid = i.indexrelid WHERE i.indrelid = $1 AND NOT i.indisprimary \
               AND NOT EXISTS (SELECT 1 FROM pg_constraint k WHERE k.conindid = i.indexrelid \
                               AND k.conrelid = i.indrelid AND k.contype IN ('p', 'u', 'x')) ORDER BY 1",
            &[&oid],
        )
        .await
        .ctx(Side::Source, what)?;
    let indexes = idx_rows
        .iter()
        .filter_map(|r| {
            let def: String = r.get(2);
            let using = def.split_once(" USING ")?.1.to_owned();
            Some(IndexDef { name: r.get(0), unique: r.get(1), using })
        })
        .collect();
    let extras = structure::describe(client, oid, schema_map, columns_sel, Side::Source).await?;
    let filter = match sel.and_then(|s| s.filter.as_deref()) {
        None => None,
        Some(f) => {
            let names: Vec<&str> = columns.iter().map(|c| c.name.as_str()).collect();
            let rendered = filter::for_table(filter::Dialect::Postgres, f, &names);
            Some(rendered.map_err(|e| filter::refused(schema, name, &e))?)
        }
    };
    Ok(PgTable {
        def: TableDef {
            schema: schema.to_owned(),
            name: name.to_owned(),
            target_schema,
            target_name,
            columns,
            key,
            filter,
            estimated_rows: estimated.max(0) as u64,
        },
        binary,
        indexes,
        replica_identity_full: ident == "f",
        partitioned,
        extras,
        oid,
        pg_columns,
        column_selection: columns_sel.cloned(),
    })
}

/// The enum types the selected columns use (directly or as array elements).
pub async fn enum_types(client: &Client, tables: &[PgTable]) -> Result<Vec<EnumType>> {
    let rows = client
        .query(
            "SELECT DISTINCT n.nspname, t.typname, e.enumsortorder, e.enumlabel \
             FROM pg_attribute a JOIN pg_class c ON c.oid = a.attrelid JOIN pg_namespace cn ON cn.oid = c.relnamespace \
             JOIN pg_type at ON at.oid = a.atttypid \
             JOIN pg_type t ON t.oid = CASE WHEN at.typelem <> 0 THEN at.typelem ELSE at.oid END \
             JOIN pg_namespace n ON n.oid = t.typnamespace JOIN pg_enum e ON e.enumtypid = t.oid \
             WHERE a.attnum > 0 AND NOT a.attisdropped AND (cn.nspname, c.relname) IN \
                   (SELECT x.s, x.t FROM unnest($1::text[], $2::text[]) AS x(s, t)) \
             ORDER BY 1, 2, 3",
            &[
                &tables.iter().map(|t| t.def.schema.clone()).collect::<Vec<_>>(),
                &tables.iter().map(|t| t.def.name.clone()).collect::<Vec<_>>(),
            ],
        )
        .await
        .ctx(Side::Source, || "reading enum types".into())?;
    let mut out: Vec<EnumType> = Vec::new();
    for r in rows {
        let (schema, name, label): (String, String, String) = (r.get(0), r.get(1), r.get(3));
        match out.last_mut() {
            Some(e) if e.schema == schema && e.name == name => e.labels.push(label),
            _ => out.push(EnumType { schema, name, labels: vec![label] }),
        }
    }
    Ok(out)
}
