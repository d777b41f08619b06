//! Source DDL in the binary log, translated to PostgreSQL.
//!
//! The MySQL family's stream hands a DDL statement on a selected table over (as `policy.ddl`
//! allows its kind) already rewritten with the tables' target names, and decodes the rows that
//! follow with the table's new columns. Here the statement is parsed with `sqlparser`'s MySQL
//! dialect and turned into what the PostgreSQL applier runs, in the target transaction that
//! carries the checkpoint past it (so a restart never runs it twice):
//!
//! - `ADD COLUMN` (at the end, a literal or no `DEFAULT`), `DROP COLUMN` (not a key column nor
//!   one before a key column), `RENAME COLUMN`, and `MODIFY`/`CHANGE COLUMN` (type, name,
//!   nullability, literal default) become [`Change::Reshape`]s, which the applier replays and
//!   then writes the rows with, followed by a [`Change::Ddl`] for nullability and default;
//! - `CREATE INDEX`, `ALTER TABLE … ADD INDEX|UNIQUE`, `DROP INDEX` and `RENAME TABLE` (or
//!   `ALTER TABLE … RENAME`) become PostgreSQL statements ([`Change::Ddl`]), with the index
//!   named as the full transfer names it ([`super::structure::index_name`]);
//! - `TRUNCATE` becomes a [`Change::Truncate`].
//!
//! Anything else — and a statement the parser cannot read — is refused with the reason, and the
//! stream stops the job naming the statement.

use sqlparser::ast::{
    AlterTableOperation, ColumnOption, CreateIndex, DataType, Expr, IndexColumn, ObjectName, ObjectType, OrderBySort,
    RenameTableNameKind, Statement, TableConstraint, UnaryOperator, Value,
};
use sqlparser::dialect::MySqlDialect;
use sqlparser::parser::Parser;

use crate::engine::model::{Change, ColumnChange, ColumnDef};
use crate::engine::sql::{pg_ident, pg_qualified};

use super::stream::{ColumnConv, TableConv, encoding_of};
use super::structure::index_name;
use super::types::{Conv, ZERO_DATE_SENTINEL, map_type, pg_literal};
use crate::api::ZeroDatePolicy;

/// Why a statement cannot be translated.
type Refusal = String;

/// Translates `sql` (a DDL statement on selected tables, with their target names) into the
/// changes the PostgreSQL applier runs, and brings `tables` (what the stream knows of the job's
/// tables) in step with it.
pub fn translate(sql: &str, tables: &mut [TableConv]) -> Result<Vec<Change>, Refusal> {
    let statements =
        Parser::parse_sql(&MySqlDialect {}, sql).map_err(|e| format!("the statement cannot be read ({e})"))?;
    let [statement] = &statements[..] else {
        return Err("the text does not hold exactly one statement".into());
    };
    let mut out = Vec::new();
    match statement {
        Statement::AlterTable(alter) => {
            let t = find(tables, &alter.name)?;
            for op in &alter.operations {
                alter_op(tables, t, op, &mut out)?;
            }
        }
        Statement::CreateIndex(ix) => {
            let t = find(tables, &ix.table_name)?;
            out.push(create_index(&tables[t], t, ix)?);
        }
        Statement::Drop { object_type: ObjectType::Index, names, table: Some(table), .. } => {
            let t = find(tables, table)?;
            for name in names {
                let index = last(name)?;
                out.push(drop_index(&tables[t], t, &index)?);
            }
        }
        Statement::RenameTable(pairs) => {
            for pair in pairs {
                let t = find(tables, &pair.old_name)?;
                out.push(rename_table(tables, t, &pair.new_name)?);
            }
        }
        Statement::Truncate(tr) if tr.partitions.is_none() => {
            let mut which = Vec::new();
            for target in &tr.table_names {
                which.push(find(tables, &target.name)?);
            }
            out.push(Change::Truncate { tables: which });
        }
        _ => return Err("only ALTER TABLE, CREATE/DROP INDEX, RENAME TABLE and TRUNCATE are translated".into()),
    }
    Ok(out)
}

/// The identifiers of a name, unquoted.
fn parts(name: &ObjectName) -> Result<Vec<String>, Refusal> {
    name.0
        .iter()
        .map(|p| p.as_ident().map(|i| i.value.clone()).ok_or_else(|| format!("the name {name} is not plain")))
        .collect()
}

fn last(name: &ObjectName) -> Result<String, Refusal> {
    parts(name)?.pop().ok_or_else(|| "an empty name".to_owned())
}

/// The job table a (target-named, qualified) name refers to.
fn find(tables: &[TableConv], name: &ObjectName) -> Result<usize, Refusal> {
    let p = parts(name)?;
    let [schema, table] = &p[..] else { return Err(format!("the table name {name} is not qualified")) };
    tables
        .iter()
        .position(|t| t.target_schema == *schema && t.target_name == *table)
        .ok_or_else(|| format!("it names {schema}.{table}, which is not a table of the job"))
}

fn target(t: &TableConv) -> String {
    pg_qualified(&t.target_schema, &t.target_name)
}

fn ddl(t: usize, table: &TableConv, statement: String) -> Change {
    Change::Ddl { statement, tables: vec![(t, table.target_schema.clone(), table.target_name.clone())] }
}

fn reshape(tables: &[TableConv], t: usize, change: ColumnChange) -> Change {
    Change::Reshape {
        table: t,
        columns: tables[t].defs.clone(),
        key: tables[t].key.clone(),
        changes: vec![change],
        layout: String::new(),
    }
}

/// The position of a written column by source name.
fn column(t: &TableConv, name: &str) -> Result<usize, Refusal> {
    let i = t
        .defs
        .iter()
        .position(|c| c.name.eq_ignore_ascii_case(name))
        .ok_or_else(|| format!("{} has no column {name}", t.name))?;
    if t.columns[i].is_none() {
        return Err(format!("column {name} of {} is not transferred (unselected or generated)", t.name));
    }
    Ok(i)
}

/// A column as a definition declares it.
struct Declared {
    conv: ColumnConv,
    def: ColumnDef,
    /// The PostgreSQL default (a literal), if any.
    default: Option<String>,
    /// What the rows the table holds get in a column added NOT NULL without a default.
    implicit: Option<String>,
}

fn declare(t: &TableConv, name: &str, data_type: &DataType, options: &[ColumnOption]) -> Result<Declared, Refusal> {
    let type_text = data_type.to_string().to_ascii_lowercase();
    let word: String = type_text.chars().take_while(|c| c.is_ascii_alphanumeric() || *c == '_').collect();
    let (data, column_type) = match word.as_str() {
        "bool" | "boolean" => ("tinyint".to_owned(), "tinyint(1)".to_owned()),
        "integer" => ("int".to_owned(), type_text.clone()),
        "double" => ("double".to_owned(), type_text.clone()),
        _ => (word.clone(), type_text.clone()),
    };
    let mapping = map_type(&data, &column_type, false)?;
    let mut nullable = true;
    let mut default_expr = None;
    let mut charset = t.charset.clone();
    for option in options {
        match option {
            ColumnOption::Null => nullable = true,
            ColumnOption::NotNull => nullable = false,
            ColumnOption::Default(e) => default_expr = Some(e),
            ColumnOption::Comment(_) => {}
            ColumnOption::CharacterSet(cs) => charset = Some(cs.to_string()),
            ColumnOption::Collation(c) => {
                charset = c.to_string().split('_').next().map(str::to_owned);
            }
            other => return Err(format!("column {name}: the clause {other} is not translated")),
        }
    }
    let default = match default_expr {
        Some(e) if is_zero_date(e, mapping.conv) => zero_date_default(e, t.zero_dates, nullable)?,
        Some(e) => literal(e, mapping.conv)?,
        None => None,
    };
    let text = mapping.conv == Conv::Text && mapping.enum_labels.is_none() && mapping.set_members.is_none();
    let encoding = match charset.as_deref() {
        Some(cs) if text && !matches!(cs.to_ascii_lowercase().as_str(), "utf8mb4" | "utf8mb3" | "utf8" | "ascii") => {
            Some(encoding_of(cs).ok_or_else(|| format!("column {name}: character set {cs} is not converted"))?)
        }
        _ => None,
    };
    let implicit = match mapping.conv {
        Conv::Integer | Conv::Decimal | Conv::Real | Conv::Double => Some("0".to_owned()),
        Conv::Text if text => Some("''".to_owned()),
        _ => None,
    };
    Ok(Declared {
        conv: ColumnConv {
            name: name.to_owned(),
            conv: mapping.conv,
            nullable,
            enum_labels: mapping.enum_labels,
            set_members: mapping.set_members,
            encoding,
            overridden: false,
        },
        def: ColumnDef {
            name: name.to_owned(),
            target_name: name.to_owned(),
            type_sql: mapping.pg_type,
            nullable,
            selected: true,
        },
        default,
        implicit,
    })
}

/// Whether `e` is a zero date (`'0000-00-00'`, a zero month or day) given to a date column.
fn is_zero_date(e: &Expr, conv: Conv) -> bool {
    let Expr::Value(v) = e else { return false };
    let (Value::SingleQuotedString(s) | Value::DoubleQuotedString(s)) = &v.value else { return false };
    matches!(conv, Conv::Date | Conv::DateTime | Conv::Timestamp)
        && (s.starts_with("0000") || s.get(4..8) == Some("-00-") || s.get(7..10) == Some("-00"))
}

/// The default of a column added with a zero date as its default, by `policy.zeroDates`, as the
/// full transfer writes the zero dates the rows hold: `-infinity` with `sentinel`; NULL with
/// `null` where the column takes it; otherwise refused.
fn zero_date_default(e: &Expr, policy: ZeroDatePolicy, nullable: bool) -> Result<Option<String>, Refusal> {
    match policy {
        ZeroDatePolicy::Sentinel => Ok(Some(pg_literal(ZERO_DATE_SENTINEL))),
        ZeroDatePolicy::Null if nullable => Ok(None),
        ZeroDatePolicy::Null => Err(format!(
            "the default {e} is a zero date in a NOT NULL column: the rows the table holds get it, and \
             policy.zeroDates null has no value for it there (sentinel writes -infinity)"
        )),
        ZeroDatePolicy::Stop => Err(format!("the default {e} is a zero date and policy.zeroDates is stop")),
    }
}

/// A literal default for a column of conversion `conv`, as PostgreSQL SQL (`None`: NULL).
fn literal(e: &Expr, conv: Conv) -> Result<Option<String>, Refusal> {
    let numeric = matches!(conv, Conv::Integer | Conv::Decimal | Conv::Real | Conv::Double);
    let number = |n: &str| n.parse::<f64>().is_ok_and(f64::is_finite);
    let refused = || format!("the default {e} is not a literal the column's PostgreSQL type takes as it is");
    match e {
        Expr::Value(v) => match &v.value {
            Value::Null => Ok(None),
            Value::Number(n, _) if numeric => Ok(Some(n.clone())),
            Value::SingleQuotedString(s) | Value::DoubleQuotedString(s) => match conv {
                _ if s.contains('\0') => Err(refused()),
                _ if numeric && number(s.trim()) => Ok(Some(pg_literal(s.trim()))),
                Conv::Text => Ok(Some(pg_literal(s))),
                Conv::Date | Conv::DateTime if !s.starts_with("0000") && !s.contains("-00") => Ok(Some(pg_literal(s))),
                _ => Err(refused()),
            },
            _ => Err(refused()),
        },
        Expr::UnaryOp { op: UnaryOperator::Minus, expr } if numeric => match expr.as_ref() {
            Expr::Value(v) => match &v.value {
                Value::Number(n, _) => Ok(Some(format!("-{n}"))),
                _ => Err(refused()),
            },
            _ => Err(refused()),
        },
        _ => Err(refused()),
    }
}

fn alter_op(
    tables: &mut [TableConv],
    t: usize,
    op: &AlterTableOperation,
    out: &mut Vec<Change>,
) -> Result<(), Refusal> {
    match op {
        AlterTableOperation::AddColumn { column_def, column_position: None, .. } => {
            let table = &tables[t];
            let name = column_def.name.value.clone();
            if table.defs.iter().any(|c| c.name.eq_ignore_ascii_case(&name)) {
                return Err(format!("{} has a column {name} already", table.name));
            }
            let options: Vec<ColumnOption> = column_def.options.iter().map(|o| o.option.clone()).collect();
            let d = declare(table, &name, &column_def.data_type, &options)?;
            let existing = match (&d.default, d.def.nullable) {
                (Some(v), _) => Some(v.clone()),
                (None, true) => None,
                (None, false) => Some(d.implicit.clone().ok_or_else(|| {
                    format!(
                        "column {name} is added NOT NULL without a default: the rows the table holds get a value \
                         the stream does not carry"
                    )
                })?),
            };
            let check = super::structure::check_sql(
                &pg_ident(&name),
                d.conv.enum_labels.as_deref(),
                d.conv.set_members.as_deref(),
            );
            let table = &mut tables[t];
            table.defs.push(d.def);
            table.columns.push(Some(d.conv));
            let change = ColumnChange::Added {
                column: table.defs.len() - 1,
                existing,
                default: d.default,
                not_null: !table.defs[table.defs.len() - 1].nullable,
                unreplayable: None,
            };
            out.push(reshape(tables, t, change));
            if let Some(check) = check {
                // An ENUM or SET column keeps to its values on the target, as the copy's does.
                out.push(ddl(t, &tables[t], format!("ALTER TABLE {} ADD {check}", target(&tables[t]))));
            }
        }
        AlterTableOperation::AddColumn { .. } => {
            return Err("a column added FIRST or AFTER another is not translated (only at the end)".into());
        }
        AlterTableOperation::DropColumn { column_names, .. } => {
            for name in column_names {
                let table = &tables[t];
                let i = column(table, &name.value)?;
                if table.key.iter().any(|&k| k >= i) {
                    return Err(format!(
                        "column {} is part of the primary key of {} or comes before a key column",
                        name.value, table.name
                    ));
                }
                let table = &mut tables[t];
                let def = table.defs.remove(i);
                table.columns.remove(i);
                let change = ColumnChange::Dropped { name: def.name, target_name: def.target_name, selected: true };
                out.push(reshape(tables, t, change));
            }
        }
        AlterTableOperation::RenameColumn { old_column_name, new_column_name } => {
            rename_column(tables, t, &old_column_name.value, &new_column_name.value, out)?;
        }
        AlterTableOperation::ModifyColumn { col_name, data_type, options, column_position: None } => {
            modify_column(tables, t, &col_name.value, &col_name.value, data_type, options, out)?;
        }
        AlterTableOperation::ChangeColumn { old_name, new_name, data_type, options, column_position: None } => {
            modify_column(tables, t, &old_name.value, &new_name.value, data_type, options, out)?;
        }
        AlterTableOperation::ModifyColumn { .. } | AlterTableOperation::ChangeColumn { .. } => {
            return Err("a column moved FIRST or AFTER another is not translated".into());
        }
        AlterTableOperation::AddConstraint { constraint, .. } => {
            let table = &tables[t];
            let (name, columns, unique) = match constraint {
                TableConstraint::Index(ix) => (ix.name.as_ref().map(|n| n.value.clone()), &ix.columns, false),
                TableConstraint::Unique(u) => {
                    (u.index_name.as_ref().or(u.name.as_ref()).map(|n| n.value.clone()), &u.columns, true)
                }
                other => return Err(format!("adding {other} is not translated")),
            };
            out.push(index(table, t, name, columns, unique)?);
        }
        AlterTableOperation::DropIndex { name } => {
            let change = drop_index(&tables[t], t, &name.value)?;
            out.push(change);
        }
        AlterTableOperation::RenameTable { table_name } => {
            let (RenameTableNameKind::To(name) | RenameTableNameKind::As(name)) = table_name;
            out.push(rename_table(tables, t, name)?);
        }
        // How the source builds the change: nothing for the target.
        AlterTableOperation::Algorithm { .. } | AlterTableOperation::Lock { .. } => {}
        other => return Err(format!("the clause {other} is not translated")),
    }
    Ok(())
}

fn rename_column(
    tables: &mut [TableConv],
    t: usize,
    from: &str,
    to: &str,
    out: &mut Vec<Change>,
) -> Result<(), Refusal> {
    let table = &tables[t];
    let i = column(table, from)?;
    if from == to {
        return Ok(());
    }
    if table.defs.iter().any(|c| c.name.eq_ignore_ascii_case(to)) && !from.eq_ignore_ascii_case(to) {
        return Err(format!("{} has a column {to} already", table.name));
    }
    let table = &mut tables[t];
    let was = table.defs[i].name.clone();
    table.defs[i].name = to.to_owned();
    table.defs[i].target_name = to.to_owned();
    if let Some(c) = table.columns[i].as_mut() {
        c.name = to.to_owned();
    }
    out.push(reshape(tables, t, ColumnChange::Renamed { column: i, from: was }));
    Ok(())
}

/// `MODIFY` (`from` = `to`) or `CHANGE`: the column's whole definition replaced.
fn modify_column(
    tables: &mut [TableConv],
    t: usize,
    from: &str,
    to: &str,
    data_type: &DataType,
    options: &[ColumnOption],
    out: &mut Vec<Change>,
) -> Result<(), Refusal> {
    let i = column(&tables[t], from)?;
    if tables[t].columns[i].as_ref().is_some_and(|c| c.overridden) {
        return Err(format!(
            "column {from} has its target type from columns.targetTypes ({}), which the stream does not redefine",
            tables[t].defs[i].type_sql
        ));
    }
    if tables[t].columns[i].as_ref().is_some_and(|c| c.enum_labels.is_some() || c.set_members.is_some()) {
        return Err(format!("column {from} is an ENUM or SET, whose target CHECK is not redefined by the stream"));
    }
    let d = declare(&tables[t], to, data_type, options)?;
    if d.conv.enum_labels.is_some() || d.conv.set_members.is_some() {
        return Err(format!("column {from} becomes an ENUM or SET, whose target CHECK the stream does not write"));
    }
    rename_column(tables, t, from, to, out)?;
    let table = &mut tables[t];
    let was = table.defs[i].clone();
    table.defs[i] = ColumnDef { name: was.name.clone(), target_name: was.target_name.clone(), ..d.def };
    table.columns[i] = Some(ColumnConv { name: was.name.clone(), ..d.conv });
    if was.type_sql != table.defs[i].type_sql {
        out.push(reshape(tables, t, ColumnChange::Retyped { column: i, was: was.type_sql.clone() }));
    }
    let table = &tables[t];
    let col = pg_ident(&table.defs[i].target_name);
    let mut clauses = Vec::new();
    if was.nullable != table.defs[i].nullable {
        clauses.push(format!("ALTER COLUMN {col} {} NOT NULL", if table.defs[i].nullable { "DROP" } else { "SET" }));
    }
    // MySQL's MODIFY replaces the default with the one it gives, or none.
    clauses.push(match &d.default {
        Some(v) => format!("ALTER COLUMN {col} SET DEFAULT {v}"),
        None => format!("ALTER COLUMN {col} DROP DEFAULT"),
    });
    out.push(ddl(t, table, format!("ALTER TABLE {} {}", target(table), clauses.join(", "))));
    Ok(())
}

fn index(
    table: &TableConv,
    t: usize,
    name: Option<String>,
    columns: &[IndexColumn],
    unique: bool,
) -> Result<Change, Refusal> {
    let mut cols = Vec::new();
    for c in columns {
        let Expr::Identifier(ident) = &c.column.expr else {
            return Err(format!(
                "the index part {} is not a plain column (prefix and functional indexes are not translated)",
                c.column.expr
            ));
        };
        if c.operator_class.is_some() {
            return Err("an index with an operator class is not translated".into());
        }
        let i = column(table, &ident.value)?;
        let desc = matches!(c.column.options.sort, Some(OrderBySort::Desc));
        cols.push(format!("{}{}", pg_ident(&table.defs[i].target_name), if desc { " DESC" } else { "" }));
    }
    // MySQL names an index without a name after its first column.
    let name = match name {
        Some(n) => n,
        None => columns.first().map(|c| c.column.expr.to_string()).ok_or("an index without columns")?,
    };
    let ix = index_name(&table.target_name, &name);
    Ok(ddl(
        t,
        table,
        format!(
            "CREATE {}INDEX {} ON {} ({})",
            if unique { "UNIQUE " } else { "" },
            pg_ident(&ix),
            target(table),
            cols.join(", ")
        ),
    ))
}

fn create_index(table: &TableConv, t: usize, ix: &CreateIndex) -> Result<Change, Refusal> {
    if ix.predicate.is_some() || !ix.include.is_empty() || !ix.with.is_empty() || ix.nulls_distinct.is_some() {
        return Err("the index has clauses that are not translated".into());
    }
    let name = ix.name.as_ref().map(last).transpose()?;
    index(table, t, name, &ix.columns, ix.unique)
}

fn drop_index(table: &TableConv, t: usize, name: &str) -> Result<Change, Refusal> {
    if name.eq_ignore_ascii_case("primary") {
        return Err("dropping the primary key is not translated".into());
    }
    let ix = index_name(&table.target_name, name);
    Ok(ddl(t, table, format!("DROP INDEX {}", pg_qualified(&table.target_schema, &ix))))
}

fn rename_table(tables: &mut [TableConv], t: usize, new: &ObjectName) -> Result<Change, Refusal> {
    let p = parts(new)?;
    let [schema, name] = &p[..] else { return Err(format!("the table name {new} is not qualified")) };
    let table = &mut tables[t];
    if *schema != table.target_schema {
        return Err(format!("{} moves to another database ({schema})", table.name));
    }
    let statement = format!("ALTER TABLE {} RENAME TO {}", target(table), pg_ident(name));
    name.clone_into(&mut table.target_name);
    Ok(ddl(t, table, statement))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn conv(name: &str, conv: Conv) -> Option<ColumnConv> {
        Some(ColumnConv {
            name: name.into(),
            conv,
            nullable: true,
            enum_labels: None,
            set_members: None,
            encoding: None,
            overridden: false,
        })
    }

    fn def(name: &str, ty: &str, nullable: bool) -> ColumnDef {
        ColumnDef { name: name.into(), target_name: name.into(), type_sql: ty.into(), nullable, selected: true }
    }

    /// `shop.items` → `tgt.items` (id bigint key, name varchar(20), qty integer).
    fn tables() -> Vec<TableConv> {
        vec![TableConv {
            name: "shop.items".into(),
            target_schema: "tgt".into(),
            target_name: "items".into(),
            columns: vec![conv("id", Conv::Integer), conv("name", Conv::Text), conv("qty", Conv::Integer)],
            defs: vec![def("id", "bigint", false), def("name", "varchar(20)", true), def("qty", "integer", true)],
            key: vec![0],
            charset: None,
            zero_dates: crate::api::ZeroDatePolicy::Null,
        }]
    }

    /// The SQL the applier runs for each change (a reshape as its column changes described).
    fn sql(statement: &str) -> Vec<String> {
        let mut t = tables();
        translate(statement, &mut t)
            .unwrap()
            .into_iter()
            .map(|c| match c {
                Change::Ddl { statement, .. } => statement,
                Change::Truncate { tables } => format!("TRUNCATE {tables:?}"),
                Change::Reshape { columns, changes, .. } => {
                    changes.iter().map(|c| c.describe(&columns)).collect::<Vec<_>>().join("; ")
                }
                other => format!("{other:?}"),
            })
            .collect()
    }

    fn refused(statement: &str) -> String {
        translate(statement, &mut tables()).unwrap_err()
    }

    #[test]
    fn added_columns_take_the_pair_s_type_mapping() {
        assert_eq!(
            sql("ALTER TABLE `tgt`.`items` ADD COLUMN price DECIMAL(10,2) NULL"),
            ["column price numeric(10,2) added"]
        );
        let mut t = tables();
        let out = translate("ALTER TABLE `tgt`.`items` ADD note varchar(9) NOT NULL DEFAULT 'n''a'", &mut t).unwrap();
        let Change::Reshape { columns, changes, .. } = &out[0] else { panic!("{out:?}") };
        assert_eq!(columns[3], def("note", "varchar(9)", false));
        assert_eq!(
            changes[0],
            ColumnChange::Added {
                column: 3,
                existing: Some("'n''a'".into()),
                default: Some("'n''a'".into()),
                not_null: true,
                unreplayable: None
            }
        );
        assert_eq!(t[0].columns.len(), 4);
        let out = translate("ALTER TABLE tgt.items ADD COLUMN u INT UNSIGNED NOT NULL", &mut tables()).unwrap();
        let Change::Reshape { columns, changes, .. } = &out[0] else { panic!("{out:?}") };
        assert_eq!(columns[3].type_sql, "bigint");
        assert!(matches!(&changes[0], ColumnChange::Added { existing: Some(z), default: None, .. } if z == "0"));
        let mut t = tables();
        let out = translate("ALTER TABLE tgt.items ADD COLUMN e ENUM('a', 'b,c') NULL", &mut t).unwrap();
        let Change::Ddl { statement, .. } = &out[1] else { panic!("{out:?}") };
        assert_eq!(statement, "ALTER TABLE \"tgt\".\"items\" ADD CHECK (\"e\" IN ('a', 'b,c', ''))");
        let out =
            translate("ALTER TABLE tgt.items ADD COLUMN s SET('x', 'y') NOT NULL DEFAULT ''", &mut tables()).unwrap();
        let Change::Ddl { statement, .. } = &out[1] else { panic!("{out:?}") };
        assert_eq!(
            statement,
            "ALTER TABLE \"tgt\".\"items\" ADD CHECK (\"s\" = '' OR string_to_array(\"s\", ',') <@ ARRAY['x', 'y']::text[])"
        );
        let e = t[0].columns[3].as_ref().unwrap();
        assert_eq!(e.enum_labels.as_deref(), Some(&["a".to_owned(), "b,c".to_owned()][..]));
        let mut t = tables();
        translate("ALTER TABLE tgt.items ADD COLUMN l varchar(5) CHARACTER SET latin1", &mut t).unwrap();
        assert!(t[0].columns[3].as_ref().unwrap().encoding.is_some());
    }

    #[test]
    fn a_column_with_an_overridden_type_is_not_redefined() {
        let mut t = tables();
        t[0].defs[2].type_sql = "numeric(12,2)".into();
        if let Some(c) = t[0].columns[2].as_mut() {
            c.overridden = true;
        }
        for statement in ["ALTER TABLE tgt.items MODIFY qty BIGINT", "ALTER TABLE tgt.items CHANGE qty amount INT"] {
            let e = translate(statement, &mut t.clone()).unwrap_err();
            assert!(e.contains("column qty has its target type from columns.targetTypes (numeric(12,2))"), "{e}");
        }
        assert!(translate("ALTER TABLE tgt.items RENAME COLUMN qty TO amount", &mut t).is_ok());
    }

    #[test]
    fn a_column_added_with_a_zero_date_default_follows_the_zero_date_policy() {
        let added = |policy: ZeroDatePolicy, sql: &str| {
            let mut t = tables();
            t[0].zero_dates = policy;
            translate(sql, &mut t).map(|out| match &out[0] {
                Change::Reshape { changes, .. } => match &changes[0] {
                    ColumnChange::Added { existing, default, .. } => (existing.clone(), default.clone()),
                    other => panic!("{other:?}"),
                },
                other => panic!("{other:?}"),
            })
        };
        let nullable = "ALTER TABLE tgt.items ADD COLUMN d DATE NULL DEFAULT '0000-00-00'";
        let not_null = "ALTER TABLE tgt.items ADD COLUMN d DATETIME NOT NULL DEFAULT '0000-00-00 00:00:00'";
        // The rows the table holds get what the full transfer writes for their zero dates.
        assert_eq!(added(ZeroDatePolicy::Null, nullable), Ok((None, None)));
        assert!(added(ZeroDatePolicy::Null, not_null).unwrap_err().contains("zero date in a NOT NULL column"));
        let infinity = Some("'-infinity'".to_owned());
        assert_eq!(added(ZeroDatePolicy::Sentinel, not_null), Ok((infinity.clone(), infinity)));
        assert!(added(ZeroDatePolicy::Stop, nullable).unwrap_err().contains("policy.zeroDates is stop"));
        // A real date is a default like any other.
        let dated = "ALTER TABLE tgt.items ADD COLUMN d DATE NOT NULL DEFAULT '2024-01-31'";
        let day = Some("'2024-01-31'".to_owned());
        assert_eq!(added(ZeroDatePolicy::Stop, dated), Ok((day.clone(), day)));
    }

    #[test]
    fn dropped_renamed_and_modified_columns() {
        assert_eq!(sql("ALTER TABLE tgt.items DROP COLUMN qty"), ["column qty dropped"]);
        assert_eq!(sql("ALTER TABLE tgt.items RENAME COLUMN qty TO amount"), ["column qty renamed to amount"]);
        assert_eq!(
            sql("ALTER TABLE tgt.items MODIFY qty BIGINT NOT NULL DEFAULT 1"),
            [
                "column qty changed from integer to bigint",
                "ALTER TABLE \"tgt\".\"items\" ALTER COLUMN \"qty\" SET NOT NULL, ALTER COLUMN \"qty\" SET DEFAULT 1"
            ]
        );
        assert_eq!(
            sql("ALTER TABLE tgt.items CHANGE COLUMN name title VARCHAR(50)"),
            [
                "column name renamed to title",
                "column title changed from varchar(20) to varchar(50)",
                "ALTER TABLE \"tgt\".\"items\" ALTER COLUMN \"title\" DROP DEFAULT"
            ]
        );
    }

    #[test]
    fn indexes_renames_and_truncate() {
        assert_eq!(
            sql("CREATE INDEX by_name ON `tgt`.`items` (name, qty DESC)"),
            ["CREATE INDEX \"items_by_name\" ON \"tgt\".\"items\" (\"name\", \"qty\" DESC)"]
        );
        assert_eq!(
            sql("ALTER TABLE tgt.items ADD UNIQUE KEY uq (name)"),
            ["CREATE UNIQUE INDEX \"items_uq\" ON \"tgt\".\"items\" (\"name\")"]
        );
        assert_eq!(
            sql("ALTER TABLE tgt.items ADD INDEX (qty)"),
            ["CREATE INDEX \"items_qty\" ON \"tgt\".\"items\" (\"qty\")"]
        );
        assert_eq!(sql("DROP INDEX by_name ON tgt.items"), ["DROP INDEX \"tgt\".\"items_by_name\""]);
        assert_eq!(sql("ALTER TABLE tgt.items DROP INDEX by_name"), ["DROP INDEX \"tgt\".\"items_by_name\""]);
        assert_eq!(sql("RENAME TABLE tgt.items TO tgt.goods"), ["ALTER TABLE \"tgt\".\"items\" RENAME TO \"goods\""]);
        assert_eq!(
            sql("ALTER TABLE tgt.items RENAME TO tgt.goods"),
            ["ALTER TABLE \"tgt\".\"items\" RENAME TO \"goods\""]
        );
        assert_eq!(sql("TRUNCATE TABLE tgt.items"), ["TRUNCATE [0]"]);
        let mut t = tables();
        translate("RENAME TABLE tgt.items TO tgt.goods", &mut t).unwrap();
        assert_eq!(t[0].target_name, "goods");
    }

    #[test]
    fn what_cannot_be_translated_is_refused_with_the_reason() {
        for statement in [
            "ALTER TABLE tgt.items ADD FULLTEXT INDEX ft (name)",
            "CREATE FULLTEXT INDEX ft ON tgt.items (name)",
            "CREATE INDEX p ON tgt.items (name(5))",
            "ALTER TABLE tgt.items ADD COLUMN g INT GENERATED ALWAYS AS (qty * 2) STORED",
            "ALTER TABLE tgt.items ADD COLUMN x INT AFTER id",
            "ALTER TABLE tgt.items ADD COLUMN d DATETIME NOT NULL",
            "ALTER TABLE tgt.items ADD COLUMN n INT DEFAULT (qty + 1)",
            "ALTER TABLE tgt.items DROP COLUMN id",
            "ALTER TABLE tgt.items DROP PRIMARY KEY",
            "ALTER TABLE tgt.items PARTITION BY HASH (id) PARTITIONS 4",
            "ALTER TABLE tgt.items ENGINE = MyISAM",
            "CREATE TABLE tgt.other (id INT)",
            "DROP TABLE tgt.items",
            "RENAME TABLE tgt.items TO other.items",
            "ALTER TABLE tgt.items ADD COLUMN s GEOMETRY",
            "this is not SQL",
        ] {
            let why = refused(statement);
            assert!(!why.contains("not a table of the job"), "{statement}: {why}");
        }
    }
}
