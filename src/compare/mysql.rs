//! MySQL / MariaDB as a side of a comparison: each row as one binary string (a NULL map, then
//! the values joined by 0x1F, FLOAT widened to DOUBLE and BIT as a number so no precision is
//! lost in printing), in a UTC session; chunk hashes as the sum of each row's CRC32, computed
//! by the server (a chunk holds at most 10,000 rows: a changed row goes unnoticed only if its
//! CRC32 stays the same, one chance in 2^32).

use mysql_async::prelude::Queryable;
use mysql_async::{Conn, Params, Value};

use super::canonical::{self, ValueClass};
use super::{CHUNK_ROWS, RawRow, Row, Shape, Side, source_view, target_view};
use crate::api::ZeroDatePolicy;
use crate::api::{Endpoint, ObjectSelection};
use crate::engine::error::{EngineError, Result, Side as Which};
use crate::engine::filter;
use crate::engine::model::{KeyRange, TableDef};
use crate::engine::my_to_pg::types::ZERO_DATE_SENTINEL;
use crate::engine::mysql::catalog::{self, ColumnKind, MyTable};
use crate::engine::mysql::{connect, source};
use crate::engine::sql::my_ident;
use crate::engine::{Credentials, Login};

/// One MySQL or MariaDB server of a comparison.
pub struct MySide {
    conn: Conn,
    which: Which,
    defs: Vec<TableDef>,
    /// The tables as the chunk planner and range predicates take them (this side's names).
    tables: Vec<MyTable>,
    planner: bool,
    /// Per table, each compared column's class as the job's type mapping to PostgreSQL says
    /// (a source compared with a PostgreSQL target); otherwise classes come from this side's
    /// own types.
    mapped: Option<Vec<Vec<ValueClass>>>,
    /// A source compared with a PostgreSQL target: per table, whether each compared column is a
    /// `DATE`, `DATETIME` or `TIMESTAMP` (empty otherwise), and what the job writes for a zero
    /// date in one.
    dated: Vec<Vec<bool>>,
    zero_dates: ZeroDatePolicy,
}

/// Whether each selected column of `t` is a `DATE`, `DATETIME` or `TIMESTAMP`, where zero
/// dates live.
fn dated_columns(t: &MyTable) -> Vec<bool> {
    t.def
        .columns
        .iter()
        .zip(&t.columns)
        .filter(|(c, _)| c.selected)
        .map(|(_, m)| matches!(m.data_type.as_str(), "date" | "datetime" | "timestamp"))
        .collect()
}

/// A source value as the MySQL → PostgreSQL transfer writes it under `policy`: a zero date
/// becomes NULL (`null`; a NOT NULL column stops the job, so no target row has it either),
/// `-infinity` (`sentinel`), or stays itself (`stop`: no target value is equal to it).
fn as_written(value: Option<Vec<u8>>, policy: ZeroDatePolicy) -> Option<Vec<u8>> {
    match value {
        Some(v) if canonical::zero_date(&String::from_utf8_lossy(&v)) => match policy {
            ZeroDatePolicy::Null => None,
            ZeroDatePolicy::Sentinel => Some(ZERO_DATE_SENTINEL.as_bytes().to_vec()),
            ZeroDatePolicy::Stop => Some(v),
        },
        other => other,
    }
}

/// Each selected column's class as the MySQL → PostgreSQL mapping carries it: the class of the
/// PostgreSQL type the column gets (a column the mapping refuses, by its own type).
fn mapped_classes(t: &MyTable) -> Vec<ValueClass> {
    t.def
        .columns
        .iter()
        .zip(&t.columns)
        .filter(|(c, _)| c.selected)
        .map(|(c, m)| {
            match crate::engine::my_to_pg::types::map_type(
                &m.data_type,
                &c.type_sql,
                crate::engine::my_to_pg::types::is_mariadb_json(t, &c.name),
            ) {
                Ok(mapping) => ValueClass::of_postgres(&mapping.pg_type),
                Err(_) => ValueClass::of_mysql(&c.type_sql),
            }
        })
        .collect()
}

fn view(t: &MyTable, def: TableDef) -> MyTable {
    let columns = t.def.columns.iter().zip(&t.columns).filter(|(c, _)| c.selected).map(|(_, m)| m.clone()).collect();
    MyTable {
        def,
        columns,
        engine: t.engine.clone(),
        collation: t.collation.clone(),
        indexes: Vec::new(),
        checks: Vec::new(),
    }
}

/// A comparison session: every transaction read-only on both sides (the target's credentials
/// can write, the comparison never needs to), in UTC.
pub async fn session(endpoint: &Endpoint, login: Login<'_>, which: Which) -> Result<Conn> {
    let mut conn = connect::connect(endpoint, login, which).await?;
    for setting in ["SET SESSION TRANSACTION READ ONLY", "SET SESSION time_zone = '+00:00'"] {
        conn.query_drop(setting)
            .await
            .map_err(|e| EngineError::query(which, "setting up the comparison session", e))?;
    }
    Ok(conn)
}

impl MySide {
    /// Both sides of a comparison of `objects`.
    pub async fn pair(
        source: &Endpoint,
        target: &Endpoint,
        objects: &ObjectSelection,
        credentials: &Credentials,
    ) -> Result<(MySide, MySide)> {
        let mut s = session(source, credentials.login(Which::Source), Which::Source).await?;
        let t = session(target, credentials.login(Which::Target), Which::Target).await?;
        let tables = catalog::resolve(&mut s, objects).await?;
        let src: Vec<MyTable> = tables.iter().map(|t| view(t, source_view(&t.def))).collect();
        let tgt: Vec<MyTable> = tables.iter().map(|t| view(t, target_view(&t.def))).collect();
        Ok((
            MySide {
                conn: s,
                which: Which::Source,
                defs: src.iter().map(|t| t.def.clone()).collect(),
                tables: src,
                planner: true,
                mapped: None,
                dated: Vec::new(),
                zero_dates: ZeroDatePolicy::Null,
            },
            MySide {
                conn: t,
                which: Which::Target,
                defs: tgt.iter().map(|t| t.def.clone()).collect(),
                tables: tgt,
                planner: false,
                mapped: None,
                dated: Vec::new(),
                zero_dates: ZeroDatePolicy::Null,
            },
        ))
    }

    /// The source side alone, with the target's view of each table, for a comparison with a
    /// PostgreSQL target: values are compared as the job's type mapping carries them, zero
    /// dates as `zero_dates` writes them.
    pub async fn source(
        source: &Endpoint,
        objects: &ObjectSelection,
        credentials: &Credentials,
        zero_dates: ZeroDatePolicy,
    ) -> Result<(MySide, Vec<TableDef>)> {
        let mut s = session(source, credentials.login(Which::Source), Which::Source).await?;
        let tables = catalog::resolve(&mut s, objects).await?;
        let tgt = tables.iter().map(|t| target_view(&t.def)).collect();
        let src: Vec<MyTable> = tables.iter().map(|t| view(t, source_view(&t.def))).collect();
        let defs = src.iter().map(|t| t.def.clone()).collect();
        let mapped = Some(tables.iter().map(mapped_classes).collect());
        let dated = tables.iter().map(dated_columns).collect();
        Ok((MySide { conn: s, which: Which::Source, defs, tables: src, planner: true, mapped, dated, zero_dates }, tgt))
    }

    /// A MySQL-family target for tables `defs` (target names), with its own column types.
    pub async fn target_for(endpoint: &Endpoint, login: Login<'_>, defs: Vec<TableDef>) -> Result<MySide> {
        let mut conn = session(endpoint, login, Which::Target).await?;
        let mut tables = Vec::with_capacity(defs.len());
        for d in &defs {
            let here = catalog::describe(&mut conn, &d.schema, &d.name, d.schema.clone(), d.name.clone(), None).await;
            let mut def = d.clone();
            // The source's filter, rendered anew for this engine.
            if let Some(f) = &d.filter {
                let f = filter::translate(f, filter::Dialect::Postgres, filter::Dialect::MySql)
                    .map_err(|e| EngineError::Unsupported(format!("the row filter of {}: {e}", d.display_name())))?;
                def.filter = Some(f);
            }
            let columns = match here {
                Ok(t) => def
                    .columns
                    .iter_mut()
                    .map(|c| {
                        let found = t.def.columns.iter().position(|x| x.name == c.name);
                        if let Some(i) = found {
                            c.type_sql = t.def.columns[i].type_sql.clone();
                        }
                        found.map_or_else(placeholder_column, |i| t.columns[i].clone())
                    })
                    .collect(),
                // Missing on the target: `exists` says so before anything is read.
                Err(_) => def.columns.iter().map(|_| placeholder_column()).collect(),
            };
            tables.push(MyTable {
                def,
                columns,
                engine: None,
                collation: None,
                indexes: Vec::new(),
                checks: Vec::new(),
            });
        }
        let defs = tables.iter().map(|t| t.def.clone()).collect();
        Ok(MySide {
            conn,
            which: Which::Target,
            defs,
            tables,
            planner: false,
            mapped: None,
            dated: Vec::new(),
            zero_dates: ZeroDatePolicy::Null,
        })
    }

    /// The row as one binary string: which values are NULL, then the values.
    fn row_sql(&self, t: usize) -> String {
        let table = &self.tables[t];
        let mut nulls = Vec::new();
        let mut values = Vec::new();
        for (c, m) in table.def.columns.iter().zip(&table.columns) {
            let id = my_ident(&c.name);
            nulls.push(format!("ISNULL({id})"));
            values.push(match m.kind {
                ColumnKind::Float => format!("CAST(CAST({id} AS DOUBLE) AS BINARY)"),
                ColumnKind::Bit => format!("CAST(CAST({id} AS UNSIGNED) AS BINARY)"),
                _ => format!("CAST({id} AS BINARY)"),
            });
        }
        format!("CONCAT(CONCAT({}), 0x1e, CONCAT_WS(0x1f, {}))", nulls.join(", "), values.join(", "))
    }

    /// The hash aggregate of a chunk: the sum of each row's CRC32 over its values, and apart the
    /// sum of each row's NULL map (cheaper than folding the map into the hashed string).
    fn hash_sql(&self, t: usize) -> String {
        let table = &self.tables[t];
        let mut mask = Vec::new();
        let mut values = Vec::new();
        for (i, (c, m)) in table.def.columns.iter().zip(&table.columns).enumerate() {
            let id = my_ident(&c.name);
            mask.push(format!("(ISNULL({id}) << {})", i % 60));
            values.push(match m.kind {
                ColumnKind::Float => format!("CAST({id} AS DOUBLE)"),
                ColumnKind::Bit => format!("CAST({id} AS UNSIGNED)"),
                // Text of any character set as its bytes, so columns of different sets mix.
                ColumnKind::Text | ColumnKind::Enum | ColumnKind::Set => format!("CAST({id} AS BINARY)"),
                _ => id,
            });
        }
        format!(
            "CONCAT(coalesce(sum(CRC32(CONCAT_WS(0x1f, {}))), 0), '/', coalesce(sum({}), 0))",
            values.join(", "),
            mask.join(" | ")
        )
    }

    fn fail(&self, what: String) -> impl FnOnce(mysql_async::Error) -> EngineError {
        let which = self.which;
        move |e| EngineError::query(which, what, e)
    }
}

fn placeholder_column() -> catalog::MyColumn {
    catalog::MyColumn {
        kind: ColumnKind::Other,
        data_type: String::new(),
        charset: None,
        collation: None,
        default: None,
        default_style: Default::default(),
        extra: String::new(),
        generation: None,
        comment: String::new(),
    }
}

fn params(p: Vec<Value>) -> Params {
    if p.is_empty() { Params::Empty } else { Params::Positional(p) }
}

impl Side for MySide {
    fn tables(&self) -> &[TableDef] {
        &self.defs
    }

    async fn exists(&mut self, t: usize) -> Result<bool> {
        let d = &self.defs[t];
        let what = format!("looking up {}", d.display_name());
        let found: Option<u8> = self
            .conn
            .exec_first(
                "SELECT 1 FROM information_schema.TABLES WHERE TABLE_SCHEMA = ? AND TABLE_NAME = ?",
                (&d.schema, &d.name),
            )
            .await
            .map_err(self.fail(what))?;
        Ok(found.is_some())
    }

    async fn chunks(&mut self, t: usize) -> Result<Vec<KeyRange>> {
        if !self.planner {
            return Ok(vec![KeyRange::default()]);
        }
        source::plan_chunks(&mut self.conn, &self.tables[t], CHUNK_ROWS, false).await
    }

    async fn hash(&mut self, t: usize, range: &KeyRange) -> Result<(u64, String)> {
        let table = &self.tables[t];
        let (cond, p) = source::chunk_where(table, range);
        let sql = format!(
            "SELECT count(*), CAST({} AS CHAR) FROM {}.{} WHERE {cond}",
            self.hash_sql(t),
            my_ident(&table.def.schema),
            my_ident(&table.def.name)
        );
        let what = format!("hashing {}", table.def.display_name());
        let row: Option<(u64, String)> = self.conn.exec_first(sql, params(p)).await.map_err(self.fail(what))?;
        Ok(row.unwrap_or((0, "0".into())))
    }

    async fn rows_for_keys(&mut self, t: usize, keys: &[Vec<String>]) -> Result<Vec<Row>> {
        let mut out = Vec::new();
        for group in keys.chunks(200) {
            let table = &self.tables[t];
            let names: Vec<String> = table.def.key_columns().map(|c| my_ident(&c.name)).collect();
            let one = format!("({})", names.iter().map(|k| format!("{k} = ?")).collect::<Vec<_>>().join(" AND "));
            let cond = vec![one; group.len()].join(" OR ");
            let p: Vec<Value> = group.iter().flatten().map(|v| Value::Bytes(v.clone().into_bytes())).collect();
            out.extend(self.select_rows(t, &cond, p).await?);
        }
        Ok(out)
    }

    async fn rows(&mut self, t: usize, range: &KeyRange) -> Result<Vec<Row>> {
        let (cond, p) = source::chunk_where(&self.tables[t], range);
        self.select_rows(t, &cond, p).await
    }

    fn classes(&self, t: usize) -> Vec<ValueClass> {
        match &self.mapped {
            Some(classes) => classes[t].clone(),
            None => self.tables[t].def.columns.iter().map(|c| ValueClass::of_mysql(&c.type_sql)).collect(),
        }
    }

    async fn raw_rows(&mut self, t: usize, range: &KeyRange) -> Result<Vec<RawRow>> {
        let (cond, p) = source::chunk_where(&self.tables[t], range);
        self.raw_select(t, &cond, p).await
    }

    async fn raw_rows_for_keys(&mut self, t: usize, keys: &[Vec<String>]) -> Result<Vec<RawRow>> {
        let classes = self.classes(t);
        let mut out = Vec::new();
        for group in keys.chunks(200) {
            let d = &self.tables[t].def;
            // Keys come in canonical form: bytes as hex digits.
            let one: Vec<String> = d
                .key
                .iter()
                .map(|&k| match classes[k] {
                    ValueClass::Bytes => format!("{} = UNHEX(?)", my_ident(&d.columns[k].name)),
                    _ => format!("{} = ?", my_ident(&d.columns[k].name)),
                })
                .collect();
            let cond = vec![format!("({})", one.join(" AND ")); group.len()].join(" OR ");
            let p: Vec<Value> = group.iter().flatten().map(|v| Value::Bytes(v.clone().into_bytes())).collect();
            out.extend(self.raw_select(t, &cond, p).await?);
        }
        Ok(out)
    }

    fn select_sql(&self, t: usize, key: &[String]) -> String {
        let d = &self.defs[t];
        let conds: Vec<String> = d
            .key_columns()
            .zip(key)
            .map(|(c, v)| format!("{} = '{}'", my_ident(&c.name), v.replace('\\', "\\\\").replace('\'', "''")))
            .collect();
        format!("SELECT * FROM {}.{} WHERE {}", my_ident(&d.schema), my_ident(&d.name), conds.join(" AND "))
    }

    async fn shape(&mut self, t: usize) -> Result<Shape> {
        let d = &self.defs[t];
        let what = format!("describing {}", d.display_name());
        let columns: Vec<(String, String)> = self
            .conn
            .exec(
                "SELECT COLUMN_NAME, COLUMN_TYPE FROM information_schema.COLUMNS \
                 WHERE TABLE_SCHEMA = ? AND TABLE_NAME = ? ORDER BY ORDINAL_POSITION",
                (&d.schema, &d.name),
            )
            .await
            .map_err(self.fail(what.clone()))?;
        let stats: Vec<(String, i64, String)> = self
            .conn
            .exec(
                "SELECT INDEX_NAME, NON_UNIQUE, COLUMN_NAME FROM information_schema.STATISTICS \
                 WHERE TABLE_SCHEMA = ? AND TABLE_NAME = ? ORDER BY INDEX_NAME, SEQ_IN_INDEX",
                (&d.schema, &d.name),
            )
            .await
            .map_err(self.fail(what))?;
        let mut shape = Shape { columns, ..Default::default() };
        let mut by_index: std::collections::BTreeMap<String, (bool, Vec<String>)> = Default::default();
        for (index, non_unique, col) in stats {
            by_index.entry(index).or_insert((non_unique == 0, Vec::new())).1.push(col);
        }
        for (index, (unique, cols)) in by_index {
            if index == "PRIMARY" {
                shape.key = cols;
            } else {
                shape.indexes.insert(format!("{}({})", if unique { "UNIQUE " } else { "" }, cols.join(", ")));
            }
        }
        Ok(shape)
    }
}

impl MySide {
    /// The rows of table `t` matching `cond`, in key order, each value as the server prints it:
    /// FLOAT widened to DOUBLE, BIT as binary digits, binary strings as hex digits.
    async fn raw_select(&mut self, t: usize, cond: &str, p: Vec<Value>) -> Result<Vec<RawRow>> {
        let classes = self.classes(t);
        let table = &self.tables[t];
        let keys: Vec<String> = table.def.key_columns().map(|c| my_ident(&c.name)).collect();
        let mut select: Vec<String> = table
            .def
            .key
            .iter()
            .map(|&k| match classes[k] {
                ValueClass::Bytes => format!("HEX({})", my_ident(&table.def.columns[k].name)),
                _ => format!("CAST({} AS CHAR)", my_ident(&table.def.columns[k].name)),
            })
            .collect();
        for ((c, m), class) in table.def.columns.iter().zip(&table.columns).zip(&classes) {
            let id = my_ident(&c.name);
            select.push(match (m.kind, class) {
                (ColumnKind::Float, _) => format!("CAST(CAST({id} AS DOUBLE) AS CHAR)"),
                (ColumnKind::Bit, _) => format!("BIN({id})"),
                (_, ValueClass::Bytes) => format!("HEX({id})"),
                _ => format!("CAST({id} AS CHAR)"),
            });
        }
        let order = if keys.is_empty() { String::new() } else { format!(" ORDER BY {}", keys.join(", ")) };
        let sql = format!(
            "SELECT {} FROM {}.{} WHERE {cond}{order}",
            select.join(", "),
            my_ident(&table.def.schema),
            my_ident(&table.def.name)
        );
        let what = format!("reading rows of {}", table.def.display_name());
        let rows: Vec<mysql_async::Row> = self.conn.exec(sql, params(p)).await.map_err(self.fail(what))?;
        let n = keys.len();
        Ok(rows
            .into_iter()
            .map(|r| {
                let mut values: Vec<Option<Vec<u8>>> = r
                    .unwrap()
                    .into_iter()
                    .map(|v| match v {
                        Value::NULL => None,
                        Value::Bytes(b) => Some(b),
                        other => Some(other.as_sql(true).into_bytes()),
                    })
                    .collect();
                let mut rest = values.split_off(n);
                if let Some(dated) = self.dated.get(t) {
                    for (v, _) in rest.iter_mut().zip(dated).filter(|(_, d)| **d) {
                        *v = as_written(v.take(), self.zero_dates);
                    }
                }
                let key = values
                    .into_iter()
                    .map(|k| k.map(|b| String::from_utf8_lossy(&b).into_owned()).unwrap_or_default())
                    .collect();
                (key, rest)
            })
            .collect())
    }

    /// The rows of table `t` matching `cond`, in key order.
    async fn select_rows(&mut self, t: usize, cond: &str, p: Vec<Value>) -> Result<Vec<Row>> {
        let table = &self.tables[t];
        let keys: Vec<String> = table.def.key_columns().map(|c| my_ident(&c.name)).collect();
        let key_text: Vec<String> = keys.iter().map(|k| format!("CAST({k} AS CHAR)")).collect();
        let sql = format!(
            "SELECT {}, {} FROM {}.{} WHERE {cond} ORDER BY {}",
            key_text.join(", "),
            self.row_sql(t),
            my_ident(&table.def.schema),
            my_ident(&table.def.name),
            keys.join(", ")
        );
        let what = format!("reading rows of {}", table.def.display_name());
        let rows: Vec<mysql_async::Row> = self.conn.exec(sql, params(p)).await.map_err(self.fail(what))?;
        let n = keys.len();
        Ok(rows
            .into_iter()
            .map(|r| {
                let mut v = r.unwrap();
                let values = match v.pop() {
                    Some(Value::Bytes(b)) => b,
                    _ => Vec::new(),
                };
                let key = v
                    .into_iter()
                    .take(n)
                    .map(|k| match k {
                        Value::Bytes(b) => String::from_utf8_lossy(&b).into_owned(),
                        Value::NULL => String::new(),
                        other => other.as_sql(true),
                    })
                    .collect();
                Row { key, values }
            })
            .collect())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_zero_date_compares_as_the_policy_writes_it() {
        let zero = || Some(b"0000-00-00 00:00:00".to_vec());
        assert_eq!(as_written(zero(), ZeroDatePolicy::Null), None);
        assert_eq!(as_written(zero(), ZeroDatePolicy::Sentinel).as_deref(), Some(&b"-infinity"[..]));
        assert_eq!(as_written(zero(), ZeroDatePolicy::Stop), zero());
        let date = Some(b"2024-02-29".to_vec());
        assert_eq!(as_written(date.clone(), ZeroDatePolicy::Sentinel), date);
        assert_eq!(as_written(None, ZeroDatePolicy::Sentinel), None);
    }
}
