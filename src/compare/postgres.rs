//! PostgreSQL as a side of a comparison: rows as their `ROW(...)::text` form in a session fixed
//! to UTC and ISO dates (so equal values print alike on both servers), chunk hashes as the sum
//! of `hashtextextended` over those forms, computed by the server.

use tokio_postgres::Client;
use tokio_postgres::types::ToSql;

use super::canonical::ValueClass;
use super::{CHUNK_ROWS, ForeignKeyShape, RawRow, Row, Shape, Side, source_view, target_view};
use crate::api::{Endpoint, ObjectSelection};
use crate::engine::error::{Context, EngineError, Result, Side as Which};
use crate::engine::filter;
use crate::engine::model::{KeyRange, TableDef};
use crate::engine::postgres::catalog::{self, PgTable};
use crate::engine::postgres::structure::{self, Extras};
use crate::engine::postgres::{connect, source};
use crate::engine::sql::{pg_ident, pg_qualified};
use crate::engine::{Credentials, Login};

/// One PostgreSQL database of a comparison.
pub struct PgSide {
    client: Client,
    which: Which,
    tables: Vec<TableDef>,
    /// The source's catalog entries, for chunk planning (source side only).
    planned: Vec<PgTable>,
}

/// A comparison session: read-only on both sides (the target's credentials can write, the
/// comparison never needs to), in UTC with fixed output styles.
pub async fn session(endpoint: &Endpoint, login: Login<'_>, which: Which) -> Result<Client> {
    let client = connect::connect(endpoint, login, which).await?;
    client
        .batch_execute(
            "SET default_transaction_read_only = on; SET TimeZone = 'UTC'; SET DateStyle = 'ISO, YMD'; \
             SET IntervalStyle = 'postgres'; SET extra_float_digits = 1; SET bytea_output = 'hex'",
        )
        .await
        .ctx(which, || "setting up the comparison session".into())?;
    Ok(client)
}

impl PgSide {
    /// Both sides of a comparison of `objects`.
    pub async fn pair(
        source: &Endpoint,
        target: &Endpoint,
        objects: &ObjectSelection,
        credentials: &Credentials,
    ) -> Result<(PgSide, PgSide)> {
        let s = session(source, credentials.login(Which::Source), Which::Source).await?;
        let t = session(target, credentials.login(Which::Target), Which::Target).await?;
        let tables = catalog::resolve(&s, objects, source.database.as_deref().unwrap_or("postgres")).await?;
        let src = tables.iter().map(|t| source_view(&t.def)).collect();
        let tgt = tables.iter().map(|t| target_view(&t.def)).collect();
        Ok((
            PgSide { client: s, which: Which::Source, tables: src, planned: tables },
            PgSide { client: t, which: Which::Target, tables: tgt, planned: Vec::new() },
        ))
    }

    /// The source side alone, with the target's view of each table (for a cross-engine pair).
    pub async fn source(
        source: &Endpoint,
        objects: &ObjectSelection,
        credentials: &Credentials,
    ) -> Result<(PgSide, Vec<TableDef>)> {
        let s = session(source, credentials.login(Which::Source), Which::Source).await?;
        let tables = catalog::resolve(&s, objects, source.database.as_deref().unwrap_or("postgres")).await?;
        let tgt = tables.iter().map(|t| target_view(&t.def)).collect();
        let src = tables.iter().map(|t| source_view(&t.def)).collect();
        Ok((PgSide { client: s, which: Which::Source, tables: src, planned: tables }, tgt))
    }

    /// A PostgreSQL target for tables `defs` (target names), with its own column types.
    pub async fn target_for(endpoint: &Endpoint, login: Login<'_>, mut defs: Vec<TableDef>) -> Result<PgSide> {
        let client = session(endpoint, login, Which::Target).await?;
        for d in &mut defs {
            // The source's filter, rendered anew for this engine.
            if let Some(f) = &d.filter {
                let f = filter::translate(f, filter::Dialect::MySql, filter::Dialect::Postgres)
                    .map_err(|e| EngineError::Unsupported(format!("the row filter of {}: {e}", d.display_name())))?;
                d.filter = Some(f);
            }
            let (table, shown) = (pg_qualified(&d.schema, &d.name), d.display_name());
            for c in &mut d.columns {
                let row = client
                    .query_opt(
                        "SELECT format_type(a.atttypid, a.atttypmod) FROM pg_attribute a \
                         WHERE a.attrelid = to_regclass($1) AND a.attname = $2 AND NOT a.attisdropped",
                        &[&table, &c.name],
                    )
                    .await
                    .ctx(Which::Target, || format!("describing {shown}"))?;
                if let Some(r) = row {
                    c.type_sql = r.get(0);
                }
            }
        }
        Ok(PgSide { client, which: Which::Target, tables: defs, planned: Vec::new() })
    }

    /// `WHERE` clause of a chunk of table `t` and its parameters (key bounds as text).
    fn range_sql(&self, t: usize, range: &KeyRange) -> (String, Vec<String>) {
        let d = &self.tables[t];
        let keys: Vec<String> = d.key_columns().map(|c| pg_ident(&c.name)).collect();
        let mut params: Vec<String> = Vec::new();
        let mut conds = Vec::new();
        let bound = |values: &[String], op: &str, params: &mut Vec<String>| {
            let vals: Vec<String> = d
                .key_columns()
                .zip(values)
                .map(|(c, v)| {
                    params.push(v.clone());
                    format!("${}::text::{}", params.len(), c.type_sql)
                })
                .collect();
            format!("ROW({}) {op} ROW({})", keys.join(", "), vals.join(", "))
        };
        if let Some(lo) = &range.lo {
            conds.push(bound(lo, ">=", &mut params));
        }
        if let Some(hi) = &range.hi {
            conds.push(bound(hi, "<", &mut params));
        }
        if let Some(f) = &d.filter {
            conds.push(format!("({f})"));
        }
        (if conds.is_empty() { "TRUE".into() } else { conds.join(" AND ") }, params)
    }

    /// The rows of table `t` matching `cond`, in key order, each value as the server prints it.
    async fn raw_select(&self, t: usize, cond: &str, params: &[String]) -> Result<Vec<RawRow>> {
        let d = &self.tables[t];
        let keys: Vec<String> = d.key_columns().map(|c| pg_ident(&c.name)).collect();
        let mut select: Vec<String> = keys.iter().map(|k| format!("{k}::text")).collect();
        select.extend(d.columns.iter().map(printed));
        let order = if keys.is_empty() { String::new() } else { format!(" ORDER BY {}", keys.join(", ")) };
        let sql = format!("SELECT {} FROM {} WHERE {cond}{order}", select.join(", "), pg_qualified(&d.schema, &d.name));
        let rows = self
            .client
            .query(&sql, &refs(params))
            .await
            .ctx(self.which, || format!("reading rows of {}", d.display_name()))?;
        let (n, m) = (keys.len(), d.columns.len());
        Ok(rows
            .iter()
            .map(|r| {
                let key = (0..n).map(|i| r.get::<_, Option<String>>(i).unwrap_or_default()).collect();
                let values = (n..n + m).map(|i| r.get::<_, Option<String>>(i).map(String::into_bytes)).collect();
                (key, values)
            })
            .collect())
    }

    fn row_sql(&self, t: usize) -> String {
        let cols: Vec<String> = self.tables[t].columns.iter().map(|c| pg_ident(&c.name)).collect();
        format!("ROW({})::text", cols.join(", "))
    }
}

/// Adds the defaults, identity and generated columns, constraints, foreign keys and comments of
/// `extras` to `shape`: generated columns under their name on the target (those the job's
/// selection leaves out, left out), expressions in the target's names where the job renames
/// what they refer to.
fn add_extras(shape: &mut Shape, extras: &Extras) {
    shape.detailed = true;
    let expr = |e: &structure::Expr| e.for_target().unwrap_or_else(|_| e.text.clone());
    for c in &extras.columns {
        if let Some(d) = &c.default {
            shape.defaults.insert(c.name.clone(), expr(d));
        }
        if let Some(id) = &c.identity {
            shape.identities.insert(c.name.clone(), id.sql());
        }
        if let Some(text) = &c.comment {
            shape.comments.insert(c.name.clone(), text.clone());
        }
    }
    for g in &extras.generated {
        let at = shape.columns.iter().position(|(c, _)| *c == g.name);
        if !g.selected {
            if let Some(i) = at {
                shape.columns.remove(i);
            }
            continue;
        }
        if let Some(i) = at {
            shape.columns[i].0 = g.target_name.clone();
        }
        shape.generated.insert(g.target_name.clone(), expr(&g.expression));
        if let Some(text) = &g.comment {
            shape.comments.insert(g.target_name.clone(), text.clone());
        }
    }
    shape.constraints = extras.constraints.iter().map(|c| (c.columns.clone(), expr(&c.definition))).collect();
    shape.foreign_keys = extras
        .foreign_keys
        .iter()
        .map(|fk| ForeignKeyShape {
            columns: fk.columns.clone(),
            table: (fk.ref_schema.clone(), fk.ref_table.clone()),
            ref_columns: fk.ref_columns.clone(),
            clauses: format!("{}{}", fk.actions, if fk.validated { "" } else { " NOT VALID" }),
        })
        .collect();
    if let Some(text) = &extras.comment {
        shape.comments.insert(String::new(), text.clone());
    }
}

fn refs(params: &[String]) -> Vec<&(dyn ToSql + Sync)> {
    params.iter().map(|p| p as &(dyn ToSql + Sync)).collect()
}

impl Side for PgSide {
    fn tables(&self) -> &[TableDef] {
        &self.tables
    }

    async fn exists(&mut self, t: usize) -> Result<bool> {
        let d = &self.tables[t];
        let name = pg_qualified(&d.schema, &d.name);
        let row = self
            .client
            .query_one("SELECT to_regclass($1) IS NOT NULL", &[&name])
            .await
            .ctx(self.which, || format!("looking up {}", d.display_name()))?;
        Ok(row.get(0))
    }

    async fn chunks(&mut self, t: usize) -> Result<Vec<KeyRange>> {
        match self.planned.get(t) {
            Some(table) => source::plan_chunks(&self.client, table, CHUNK_ROWS, false).await,
            None => Ok(vec![KeyRange::default()]),
        }
    }

    async fn hash(&mut self, t: usize, range: &KeyRange) -> Result<(u64, String)> {
        let d = &self.tables[t];
        let (cond, params) = self.range_sql(t, range);
        let sql = format!(
            "SELECT count(*), coalesce(sum(hashtextextended({}, 0)), 0)::text FROM {} WHERE {cond}",
            self.row_sql(t),
            pg_qualified(&d.schema, &d.name)
        );
        let row = self
            .client
            .query_one(&sql, &refs(&params))
            .await
            .ctx(self.which, || format!("hashing {}", d.display_name()))?;
        Ok((row.get::<_, i64>(0) as u64, row.get(1)))
    }

    async fn rows_for_keys(&mut self, t: usize, keys: &[Vec<String>]) -> Result<Vec<Row>> {
        let mut out = Vec::new();
        for group in keys.chunks(200) {
            let d = &self.tables[t];
            let names: Vec<String> = d.key_columns().map(|c| pg_ident(&c.name)).collect();
            let (tuples, params) = key_tuples(d, group, false);
            let key_text: Vec<String> = names.iter().map(|k| format!("{k}::text")).collect();
            let sql = format!(
                "SELECT {}, {} FROM {} WHERE ROW({}) IN ({}) ORDER BY {}",
                key_text.join(", "),
                self.row_sql(t),
                pg_qualified(&d.schema, &d.name),
                names.join(", "),
                tuples.join(", "),
                names.join(", ")
            );
            let rows = self
                .client
                .query(&sql, &refs(&params))
                .await
                .ctx(self.which, || format!("reading rows of {}", d.display_name()))?;
            let n = names.len();
            out.extend(rows.iter().map(|r| Row {
                key: (0..n).map(|i| r.get::<_, Option<String>>(i).unwrap_or_default()).collect(),
                values: r.get::<_, Option<String>>(n).unwrap_or_default().into_bytes(),
            }));
        }
        Ok(out)
    }

    async fn rows(&mut self, t: usize, range: &KeyRange) -> Result<Vec<Row>> {
        let d = &self.tables[t];
        let keys: Vec<String> = d.key_columns().map(|c| pg_ident(&c.name)).collect();
        let key_text: Vec<String> = keys.iter().map(|k| format!("{k}::text")).collect();
        let (cond, params) = self.range_sql(t, range);
        let sql = format!(
            "SELECT {}, {} FROM {} WHERE {cond} ORDER BY {}",
            key_text.join(", "),
            self.row_sql(t),
            pg_qualified(&d.schema, &d.name),
            keys.join(", ")
        );
        let rows = self
            .client
            .query(&sql, &refs(&params))
            .await
            .ctx(self.which, || format!("reading rows of {}", d.display_name()))?;
        let n = keys.len();
        Ok(rows
            .iter()
            .map(|r| Row {
                key: (0..n).map(|i| r.get::<_, Option<String>>(i).unwrap_or_default()).collect(),
                values: r.get::<_, Option<String>>(n).unwrap_or_default().into_bytes(),
            })
            .collect())
    }

    async fn shape(&mut self, t: usize) -> Result<Shape> {
        let d = &self.tables[t];
        let name = pg_qualified(&d.schema, &d.name);
        let what = || format!("describing {}", d.display_name());
        let columns = self
            .client
            .query(
                "SELECT a.attname::text, format_type(a.atttypid, a.atttypmod) FROM pg_attribute a \
                 WHERE a.attrelid = $1::text::regclass AND a.attnum > 0 AND NOT a.attisdropped ORDER BY a.attnum",
                &[&name],
            )
            .await
            .ctx(self.which, what)?
            .iter()
            .map(|r| (r.get(0), r.get(1)))
            .collect();
        let indexes = self
            .client
            .query(
                "SELECT i.indisprimary, i.indisunique, \
                   (SELECT string_agg(coalesce(a.attname::text, pg_get_indexdef(i.indexrelid, x.n::int, true)), ', ' \
                                      ORDER BY x.n) \
                   FROM unnest(i.indkey) WITH ORDINALITY x(attnum, n) \
                   LEFT JOIN pg_attribute a ON a.attrelid = i.indrelid AND a.attnum = x.attnum) \
                 FROM pg_index i WHERE i.indrelid = $1::text::regclass",
                &[&name],
            )
            .await
            .ctx(self.which, what)?;
        let mut shape = Shape { columns, ..Default::default() };
        for r in indexes {
            let cols: String = r.get::<_, Option<String>>(2).unwrap_or_default();
            if r.get::<_, bool>(0) {
                shape.key = cols.split(", ").map(str::to_owned).collect();
            } else {
                shape.indexes.insert(format!("{}({cols})", if r.get::<_, bool>(1) { "UNIQUE " } else { "" }));
            }
        }
        let extras = match self.planned.get(t) {
            // The source's, read with the tables, in the job's names where the job renames
            // what expressions refer to.
            Some(table) => table.extras.clone(),
            None => {
                let oid: u32 = self
                    .client
                    .query_one("SELECT $1::text::regclass::oid", &[&name])
                    .await
                    .ctx(self.which, what)?
                    .get(0);
                structure::describe(&self.client, oid, &[], None, self.which).await?
            }
        };
        add_extras(&mut shape, &extras);
        Ok(shape)
    }

    fn classes(&self, t: usize) -> Vec<ValueClass> {
        self.tables[t].columns.iter().map(|c| ValueClass::of_postgres(&c.type_sql)).collect()
    }

    async fn raw_rows(&mut self, t: usize, range: &KeyRange) -> Result<Vec<RawRow>> {
        let (cond, params) = self.range_sql(t, range);
        self.raw_select(t, &cond, &params).await
    }

    async fn raw_rows_for_keys(&mut self, t: usize, keys: &[Vec<String>]) -> Result<Vec<RawRow>> {
        let mut out = Vec::new();
        for group in keys.chunks(200) {
            let d = &self.tables[t];
            let names: Vec<String> = d.key_columns().map(|c| pg_ident(&c.name)).collect();
            // Keys come in canonical form: bytes as hex digits.
            let (tuples, params) = key_tuples(d, group, true);
            let cond = format!("ROW({}) IN ({})", names.join(", "), tuples.join(", "));
            out.extend(self.raw_select(t, &cond, &params).await?);
        }
        Ok(out)
    }

    fn select_sql(&self, t: usize, key: &[String]) -> String {
        let d = &self.tables[t];
        let conds: Vec<String> = d
            .key_columns()
            .zip(key)
            .map(|(c, v)| format!("{} = '{}'", pg_ident(&c.name), v.replace('\'', "''")))
            .collect();
        format!("SELECT * FROM {} WHERE {}", pg_qualified(&d.schema, &d.name), conds.join(" AND "))
    }
}

/// `ROW($1::text::type, …)` for each key of `keys` (in `d`'s key columns), with the values they
/// bind. `hex_bytes`: a `bytea` key column's values are hex digits (the canonical form), decoded.
fn key_tuples(d: &TableDef, keys: &[Vec<String>], hex_bytes: bool) -> (Vec<String>, Vec<String>) {
    let mut params: Vec<String> = Vec::new();
    let tuples = keys
        .iter()
        .map(|key| {
            let vals: Vec<String> = d
                .key_columns()
                .zip(key)
                .map(|(c, v)| {
                    params.push(v.clone());
                    match ValueClass::of_postgres(&c.type_sql) {
                        ValueClass::Bytes if hex_bytes => format!("decode(${}, 'hex')", params.len()),
                        _ => format!("${}::text::{}", params.len(), c.type_sql),
                    }
                })
                .collect();
            format!("ROW({})", vals.join(", "))
        })
        .collect();
    (tuples, params)
}

/// A column's value as its type's output function prints it: an `inet`'s cast to text would add
/// the mask of a host address (`::1/128`), which the output (and MariaDB's `INET6`) leave out.
fn printed(c: &crate::engine::model::ColumnDef) -> String {
    let col = pg_ident(&c.name);
    match c.type_sql.as_str() {
        "inet" => format!("CASE WHEN {col} IS NOT NULL THEN format('%s', {col}) END"),
        _ => format!("{col}::text"),
    }
}
