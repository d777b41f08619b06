//! What a PostgreSQL target table gets beyond its columns' names and types, NOT NULL, primary
//! key and secondary indexes: column defaults, identity and generated columns, CHECK, UNIQUE
//! and EXCLUDE constraints, foreign keys between the job's tables, and comments. Read from the
//! source catalog ([`describe`]), planned in the target's names ([`plan`]), and built on the
//! target: generated and identity columns with the table, the rest after the load ([`build`],
//! [`build_foreign_keys`], [`settle`]).
//!
//! Expressions (defaults, generated columns, CHECK constraints) are read with `search_path` set
//! to `pg_catalog` alone, so that every object they name outside it comes schema-qualified, and
//! with what they refer to (`pg_depend`): a sequence in a schema the job maps to another name is
//! renamed where the expression names it as `'schema.name'::regclass`; anything else in a
//! mapped schema (a function, say) cannot be renamed safely, and the object is refused
//! (precheck item `target.expressions`) and left out.
//!
//! This module owns no data path: the copy and the change stream never write generated columns
//! (the catalog leaves them out of [`TableDef::columns`](crate::engine::model::TableDef)).

use std::collections::{BTreeMap, BTreeSet, VecDeque};
use std::future::Future;
use std::sync::Mutex;
use std::time::Duration;

use tokio_postgres::Client;
use tokio_postgres::error::SqlState;

use super::catalog::{PgTable, column_choice};
use super::connect::{describe_pg_error, execute_one};
use crate::api::{ColumnSelection, ForeignKeyPolicy, SyncJobSpec};
use crate::engine::error::{Context, EngineError, Result, Side};
use crate::engine::sql::{pg_ident, pg_qualified};

const T: Side = Side::Target;

/// What a table has beyond [`TableDef`](crate::engine::model::TableDef): read by [`describe`].
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Extras {
    /// Every column that is not generated, in order, with its default, identity and comment.
    pub columns: Vec<ColumnExtra>,
    /// The stored generated columns.
    pub generated: Vec<GeneratedColumn>,
    /// CHECK, UNIQUE and EXCLUDE constraints.
    pub constraints: Vec<ConstraintDef>,
    /// Foreign keys the table holds (it is the referencing side).
    pub foreign_keys: Vec<ForeignKeyDef>,
    /// The table's comment.
    pub comment: Option<String>,
}

/// A regular column's default, identity and comment.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ColumnExtra {
    /// Name on the source.
    pub name: String,
    /// Position in the table (`attnum`).
    pub attnum: i16,
    /// `DEFAULT` expression.
    pub default: Option<Expr>,
    /// Identity, with its sequence's options.
    pub identity: Option<Identity>,
    /// Comment.
    pub comment: Option<String>,
}

/// An identity column: `GENERATED {ALWAYS|BY DEFAULT} AS IDENTITY` with the options of its
/// sequence. Its current value is not part of the structure.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Identity {
    /// `ALWAYS` (writes need `OVERRIDING SYSTEM VALUE`), else `BY DEFAULT`.
    pub always: bool,
    /// `START WITH`.
    pub start: i64,
    /// `INCREMENT BY`.
    pub increment: i64,
    /// `MINVALUE`.
    pub min: i64,
    /// `MAXVALUE`.
    pub max: i64,
    /// `CACHE`.
    pub cache: i64,
    /// `CYCLE`.
    pub cycle: bool,
}

impl Identity {
    /// The column clause: `GENERATED ALWAYS AS IDENTITY (START WITH 1 INCREMENT BY 1 …)`.
    pub fn sql(&self) -> String {
        format!(
            "GENERATED {} AS IDENTITY (START WITH {} INCREMENT BY {} MINVALUE {} MAXVALUE {} CACHE {} {})",
            if self.always { "ALWAYS" } else { "BY DEFAULT" },
            self.start,
            self.increment,
            self.min,
            self.max,
            self.cache,
            if self.cycle { "CYCLE" } else { "NO CYCLE" }
        )
    }
}

/// A generated column (`GENERATED ALWAYS AS (…) STORED`, or from PostgreSQL 18 `VIRTUAL`):
/// created on the target, which computes it; never written by the copy or the stream.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct GeneratedColumn {
    /// Name on the source.
    pub name: String,
    /// Name on the target (`columns.rename`).
    pub target_name: String,
    /// Whether the job's column selection includes it.
    pub selected: bool,
    /// Position in the table (`attnum`).
    pub attnum: i16,
    /// Type, as `format_type` prints it.
    pub type_sql: String,
    /// Whether it is NOT NULL.
    pub not_null: bool,
    /// Whether it is `VIRTUAL` (computed when read) rather than `STORED`.
    pub is_virtual: bool,
    /// The generation expression.
    pub expression: Expr,
    /// The table's columns the expression reads (source names).
    pub uses: Vec<String>,
    /// Comment.
    pub comment: Option<String>,
}

/// Which kind of table constraint.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ConstraintKind {
    /// `CHECK (…)`.
    Check,
    /// `UNIQUE (…)`: created as a constraint, not only as its index.
    Unique,
    /// `EXCLUDE USING …`.
    Exclude,
}

/// A CHECK, UNIQUE or EXCLUDE constraint.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ConstraintDef {
    /// Constraint name.
    pub name: String,
    /// Kind.
    pub kind: ConstraintKind,
    /// What `pg_get_constraintdef` prints (`CHECK ((qty > 0))`, `UNIQUE (a, b)`, with `NOT VALID`
    /// when the source never validated it).
    pub definition: Expr,
    /// The table's columns it involves (source names).
    pub columns: Vec<String>,
}

/// A foreign key, as the referencing table holds it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ForeignKeyDef {
    /// Constraint name.
    pub name: String,
    /// Referencing columns (source names), in order.
    pub columns: Vec<String>,
    /// Schema of the referenced table.
    pub ref_schema: String,
    /// Referenced table.
    pub ref_table: String,
    /// Referenced columns (source names), in order.
    pub ref_columns: Vec<String>,
    /// `MATCH`, `ON UPDATE`, `ON DELETE` and `DEFERRABLE` clauses, each with a leading space;
    /// empty for the defaults.
    pub actions: String,
    /// Whether the source has validated it (a `NOT VALID` one stays so on the target).
    pub validated: bool,
}

/// An SQL expression as the source prints it, with the objects outside `pg_catalog` it refers
/// to.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Expr {
    /// The text.
    pub text: String,
    /// What it refers to.
    pub refs: Vec<ExprRef>,
}

/// The kind of object an expression refers to.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum RefKind {
    /// A sequence (`nextval('s'::regclass)`).
    Sequence,
    /// A function.
    Function,
    /// A type (an enum value's cast, say).
    Type,
    /// Another relation.
    Relation,
}

/// One object an expression refers to. A sequence a column owns follows its table's schema
/// mapping, any other object its own schema's (as the job carries sequences).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ExprRef {
    /// Kind.
    pub kind: RefKind,
    /// Its schema on the source.
    pub schema: String,
    /// How the source names it: `app.t_id_seq`, `app.f(integer)`, `app.mood`.
    pub name: String,
    /// The schema's name on the target when the job maps it to another one.
    pub mapped_to: Option<String>,
    /// How the target names it: a sequence under its schema's mapped name, anything else as
    /// on the source.
    pub target_name: String,
}

/// Something on the target an object needs before it can be created.
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub enum Need {
    /// A relation (a sequence), qualified as the expression names it on the target.
    Relation(String),
    /// A function, as `schema.name(argument types)`.
    Function(String),
}

impl std::fmt::Display for Need {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Need::Relation(r) => write!(f, "sequence {r}"),
            Need::Function(p) => write!(f, "function {p}"),
        }
    }
}

impl Expr {
    /// The expression in the target's names: `'schema.seq'::regclass` of a sequence whose schema
    /// the job maps, renamed. `Err` says why it cannot be carried: it refers to something else
    /// in a mapped schema, or names a mapped sequence in another way.
    pub fn for_target(&self) -> std::result::Result<String, String> {
        let mut text = self.text.clone();
        for r in &self.refs {
            let Some(to) = &r.mapped_to else { continue };
            match r.kind {
                // Ferry creates enum types under their source schema's name, mapped or not,
                // as the columns' types name them.
                RefKind::Type => {}
                RefKind::Sequence => {
                    let from = format!("'{}'::regclass", r.name.replace('\'', "''"));
                    if !text.contains(&from) {
                        return Err(format!(
                            "it names sequence {} (schema {:?} is mapped to {to:?}) other than as {from}, which Ferry \
                             cannot rename safely",
                            r.name, r.schema
                        ));
                    }
                    text = text.replace(&from, &format!("'{}'::regclass", r.target_name.replace('\'', "''")));
                }
                RefKind::Function | RefKind::Relation => {
                    let what = if r.kind == RefKind::Function { "function" } else { "relation" };
                    return Err(format!(
                        "it refers to {what} {} in schema {:?}, which the job maps to {to:?}; Ferry creates no \
                         functions and cannot tell under which name the target has it",
                        r.name, r.schema
                    ));
                }
            }
        }
        Ok(text)
    }

    /// What the target must have before the expression can be used there.
    pub fn needs(&self) -> Vec<Need> {
        self.refs
            .iter()
            .filter_map(|r| match r.kind {
                RefKind::Sequence => Some(Need::Relation(r.target_name.clone())),
                RefKind::Function => Some(Need::Function(r.target_name.clone())),
                RefKind::Type | RefKind::Relation => None,
            })
            .collect()
    }
}

/// `MATCH`, `ON UPDATE`, `ON DELETE` and `DEFERRABLE` clauses from `pg_constraint`'s codes.
pub fn fk_actions(on_update: &str, on_delete: &str, matching: &str, deferrable: bool, deferred: bool) -> String {
    let action = |code: &str| match code {
        "r" => Some("RESTRICT"),
        "c" => Some("CASCADE"),
        "n" => Some("SET NULL"),
        "d" => Some("SET DEFAULT"),
        _ => None,
    };
    let mut out = String::new();
    match matching {
        "f" => out.push_str(" MATCH FULL"),
        "p" => out.push_str(" MATCH PARTIAL"),
        _ => {}
    }
    if let Some(a) = action(on_update) {
        out.push_str(&format!(" ON UPDATE {a}"));
    }
    if let Some(a) = action(on_delete) {
        out.push_str(&format!(" ON DELETE {a}"));
    }
    if deferrable {
        out.push_str(if deferred { " DEFERRABLE INITIALLY DEFERRED" } else { " DEFERRABLE" });
    }
    out
}

/// Reads table `oid`'s extras. `schema_map` pairs each schema the job maps with its target
/// name; `columns` is the job's column selection of the table.
pub async fn describe(
    client: &Client,
    oid: u32,
    schema_map: &[(String, String)],
    columns: Option<&ColumnSelection>,
    side: Side,
) -> Result<Extras> {
    // Every name printed outside pg_catalog comes qualified; SET LOCAL ends with the
    // transaction, whatever happens in between.
    client
        .batch_execute("BEGIN READ ONLY; SET LOCAL search_path = pg_catalog")
        .await
        .ctx(side, || "preparing to read the table's structure".into())?;
    let read = read_extras(client, oid, schema_map, columns, side).await;
    let end = if read.is_ok() { "COMMIT" } else { "ROLLBACK" };
    client.batch_execute(end).await.ctx(side, || "reading the table's structure".into())?;
    read
}

async fn read_extras(
    client: &Client,
    oid: u32,
    schema_map: &[(String, String)],
    sel: Option<&ColumnSelection>,
    side: Side,
) -> Result<Extras> {
    let what = || format!("reading the structure of table {oid}");
    let cols = client
        .query(
            "SELECT a.attnum, a.attname::text, format_type(a.atttypid, a.atttypmod), a.attnotnull, \
                    a.attidentity::text, a.attgenerated::text, ad.oid, pg_get_expr(ad.adbin, ad.adrelid), \
                    col_description(a.attrelid, a.attnum), \
                    s.seqstart, s.seqincrement, s.seqmin, s.seqmax, s.seqcache, s.seqcycle \
             FROM pg_attribute a \
             LEFT JOIN pg_attrdef ad ON ad.adrelid = a.attrelid AND ad.adnum = a.attnum \
             LEFT JOIN LATERAL (SELECT q.* FROM pg_depend d JOIN pg_sequence q ON q.seqrelid = d.objid \
                  WHERE d.classid = 'pg_class'::regclass AND d.refclassid = 'pg_class'::regclass \
                    AND d.refobjid = a.attrelid AND d.refobjsubid = a.attnum AND d.deptype = 'i' LIMIT 1) s \
               ON a.attidentity <> '' \
             WHERE a.attrelid = $1 AND a.attnum > 0 AND NOT a.attisdropped ORDER BY a.attnum",
            &[&oid],
        )
        .await
        .ctx(side, what)?;
    let (sources, targets): (Vec<&str>, Vec<&str>) = schema_map.iter().map(|(s, t)| (s.as_str(), t.as_str())).unzip();
    let ref_rows = client
        .query(
            "SELECT d.classid = 'pg_attrdef'::regclass, d.objid, \
                    CASE WHEN d.refclassid = 'pg_proc'::regclass THEN 'f' WHEN d.refclassid = 'pg_type'::regclass THEN 't' \
                         WHEN c.relkind = 'S' THEN 's' ELSE 'r' END, \
                    n.nspname::text, \
                    CASE WHEN d.refclassid = 'pg_proc'::regclass THEN d.refobjid::regprocedure::text \
                         WHEN d.refclassid = 'pg_type'::regclass THEN d.refobjid::regtype::text \
                         ELSE d.refobjid::regclass::text END, \
                    m.target, \
                    CASE WHEN c.relkind = 'S' THEN quote_ident(coalesce(m.target, n.nspname)) || '.' || quote_ident(c.relname) END \
             FROM pg_depend d \
             LEFT JOIN pg_class c ON d.refclassid = 'pg_class'::regclass AND c.oid = d.refobjid \
             LEFT JOIN pg_proc p ON d.refclassid = 'pg_proc'::regclass AND p.oid = d.refobjid \
             LEFT JOIN pg_type t ON d.refclassid = 'pg_type'::regclass AND t.oid = d.refobjid \
             JOIN pg_namespace n ON n.oid = coalesce(c.relnamespace, p.pronamespace, t.typnamespace) \
             LEFT JOIN LATERAL (SELECT wn.nspname FROM pg_depend w JOIN pg_class wc ON wc.oid = w.refobjid \
                  JOIN pg_namespace wn ON wn.oid = wc.relnamespace \
                  WHERE c.relkind = 'S' AND w.classid = 'pg_class'::regclass AND w.objid = c.oid \
                    AND w.refclassid = 'pg_class'::regclass AND w.deptype IN ('a', 'i') LIMIT 1) owner ON true \
             LEFT JOIN unnest($2::text[], $3::text[]) AS m(source, target) \
               ON m.source = coalesce(owner.nspname, n.nspname) \
             WHERE d.deptype = 'n' AND d.refobjsubid = 0 AND d.refobjid <> $1 \
               AND n.nspname NOT IN ('pg_catalog', 'information_schema') \
               AND ((d.classid = 'pg_attrdef'::regclass AND d.objid IN (SELECT oid FROM pg_attrdef WHERE adrelid = $1)) \
                 OR (d.classid = 'pg_constraint'::regclass \
                     AND d.objid IN (SELECT oid FROM pg_constraint WHERE conrelid = $1 AND contype IN ('c', 'u', 'x')))) \
             ORDER BY 1, 2, 5",
            &[&oid, &sources, &targets],
        )
        .await
        .ctx(side, what)?;
    let mut refs: BTreeMap<(bool, u32), Vec<ExprRef>> = BTreeMap::new();
    for r in &ref_rows {
        let kind = match r.get::<_, &str>(2) {
            "f" => RefKind::Function,
            "t" => RefKind::Type,
            "s" => RefKind::Sequence,
            _ => RefKind::Relation,
        };
        let name: String = r.get(4);
        let target_name = r.get::<_, Option<String>>(6).unwrap_or_else(|| name.clone());
        refs.entry((r.get(0), r.get(1))).or_default().push(ExprRef {
            kind,
            schema: r.get(3),
            name,
            mapped_to: r.get(5),
            target_name,
        });
    }
    let uses_rows = client
        .query(
            "SELECT d.objid, a.attname::text FROM pg_depend d \
             JOIN pg_attribute a ON a.attrelid = d.refobjid AND a.attnum = d.refobjsubid \
             WHERE d.classid = 'pg_attrdef'::regclass AND d.refclassid = 'pg_class'::regclass \
               AND d.refobjid = $1 AND d.refobjsubid > 0 AND d.deptype = 'n' ORDER BY 1, a.attnum",
            &[&oid],
        )
        .await
        .ctx(side, what)?;
    let mut uses: BTreeMap<u32, Vec<String>> = BTreeMap::new();
    for r in &uses_rows {
        uses.entry(r.get(0)).or_default().push(r.get(1));
    }
    let mut extras = Extras::default();
    for r in &cols {
        let (attnum, name): (i16, String) = (r.get(0), r.get(1));
        let def_oid: Option<u32> = r.get(6);
        let expression = r
            .get::<_, Option<String>>(7)
            .map(|text| Expr { text, refs: def_oid.and_then(|o| refs.get(&(true, o))).cloned().unwrap_or_default() });
        let comment: Option<String> = r.get(8);
        let generated: &str = r.get(5);
        if generated == "s" || generated == "v" {
            let (selected, target_name) = column_choice(sel, &name);
            extras.generated.push(GeneratedColumn {
                uses: def_oid.and_then(|o| uses.get(&o)).cloned().unwrap_or_default(),
                name,
                target_name,
                selected,
                attnum,
                type_sql: r.get(2),
                not_null: r.get(3),
                is_virtual: generated == "v",
                expression: expression.unwrap_or_default(),
                comment,
            });
            continue;
        }
        let identity = match (r.get::<_, &str>(4), r.get::<_, Option<i64>>(9)) {
            ("a" | "d", Some(start)) => Some(Identity {
                always: r.get::<_, &str>(4) == "a",
                start,
                increment: r.get(10),
                min: r.get(11),
                max: r.get(12),
                cache: r.get(13),
                cycle: r.get(14),
            }),
            _ => None,
        };
        extras.columns.push(ColumnExtra { name, attnum, default: expression, identity, comment });
    }
    // A foreign key that references a partitioned table also has one row per partition of it,
    // under the same table: those are the key's own parts, not keys of their own.
    let cons = client
        .query(
            "SELECT c.oid, c.conname::text, c.contype::text, pg_get_constraintdef(c.oid), c.convalidated, \
                    ARRAY(SELECT a.attname::text FROM unnest(c.conkey) WITH ORDINALITY k(n, o) \
                          JOIN pg_attribute a ON a.attrelid = c.conrelid AND a.attnum = k.n ORDER BY k.o), \
                    ARRAY(SELECT a.attname::text FROM pg_index i CROSS JOIN LATERAL unnest(i.indkey) k(n) \
                          JOIN pg_attribute a ON a.attrelid = i.indrelid AND a.attnum = k.n \
                          WHERE i.indexrelid = c.conindid AND c.contype IN ('u', 'x')), \
                    rn.nspname::text, r.relname::text, \
                    ARRAY(SELECT a.attname::text FROM unnest(c.confkey) WITH ORDINALITY k(n, o) \
                          JOIN pg_attribute a ON a.attrelid = c.confrelid AND a.attnum = k.n ORDER BY k.o), \
                    c.confupdtype::text, c.confdeltype::text, c.confmatchtype::text, c.condeferrable, c.condeferred \
             FROM pg_constraint c \
             LEFT JOIN pg_class r ON r.oid = c.confrelid LEFT JOIN pg_namespace rn ON rn.oid = r.relnamespace \
             WHERE c.conrelid = $1 AND c.contype IN ('c', 'u', 'x', 'f') \
               AND NOT EXISTS (SELECT 1 FROM pg_constraint p WHERE p.oid = c.conparentid AND p.conrelid = c.conrelid) \
             ORDER BY c.conname",
            &[&oid],
        )
        .await
        .ctx(side, what)?;
    for r in &cons {
        let (con_oid, name, kind): (u32, String, &str) = (r.get(0), r.get(1), r.get(2));
        let mut columns: Vec<String> = r.get(5);
        if kind == "f" {
            extras.foreign_keys.push(ForeignKeyDef {
                name,
                columns,
                ref_schema: r.get::<_, Option<String>>(7).unwrap_or_default(),
                ref_table: r.get::<_, Option<String>>(8).unwrap_or_default(),
                ref_columns: r.get(9),
                actions: fk_actions(r.get(10), r.get(11), r.get(12), r.get(13), r.get(14)),
                validated: r.get(4),
            });
            continue;
        }
        for c in r.get::<_, Vec<String>>(6) {
            if !columns.contains(&c) {
                columns.push(c);
            }
        }
        let kind = match kind {
            "c" => ConstraintKind::Check,
            "u" => ConstraintKind::Unique,
            _ => ConstraintKind::Exclude,
        };
        let definition = Expr { text: r.get(3), refs: refs.get(&(false, con_oid)).cloned().unwrap_or_default() };
        extras.constraints.push(ConstraintDef { name, kind, definition, columns });
    }
    extras.comment = client.query_one("SELECT obj_description($1, 'pg_class')", &[&oid]).await.ctx(side, what)?.get(0);
    Ok(extras)
}

impl PgTable {
    /// Whether column `col` (of [`TableDef::columns`](crate::engine::model::TableDef)) is
    /// `GENERATED ALWAYS AS IDENTITY`: an INSERT that gives it a value needs `OVERRIDING SYSTEM
    /// VALUE`, and an UPDATE cannot set it.
    pub fn always_identity(&self, col: usize) -> bool {
        let Some(c) = self.def.columns.get(col) else { return false };
        self.extras.columns.iter().any(|e| e.name == c.name && e.identity.as_ref().is_some_and(|i| i.always))
    }

    /// Whether a selected column is `GENERATED ALWAYS AS IDENTITY`.
    pub fn writes_always_identity(&self) -> bool {
        (0..self.def.columns.len()).any(|i| self.def.columns[i].selected && self.always_identity(i))
    }
}

/// How a virtual generated column ends its definition; a target before PostgreSQL 18, which has
/// no virtual columns, gets it `STORED` (the same values, kept on disk).
const VIRTUAL: &str = "VIRTUAL";

/// The first target version (`server_version_num`) with virtual generated columns.
const VIRTUAL_SINCE: i32 = 180_000;

/// One column of `CREATE TABLE` on the target.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ColumnPlan {
    /// Position on the source, which orders the columns.
    pub attnum: i16,
    /// `"name" type [NOT NULL] [GENERATED …]`.
    pub sql: String,
    /// Generated columns: what the expression needs on the target.
    pub needs: Vec<Need>,
    /// For messages: `generated column g of s.t`.
    pub object: String,
}

/// One statement of the structure, with what it needs on the target.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Item {
    /// For messages: `constraint c of s.t`, `default of column c of s.t`.
    pub object: String,
    /// What it is named on the target table: a constraint's name, a column's, an index's.
    pub name: String,
    /// The statement.
    pub sql: String,
    /// What it needs on the target.
    pub needs: Vec<Need>,
    /// Foreign keys: whether to validate it once added (`NOT VALID` first).
    pub validate: bool,
}

/// A comment to set: `COMMENT ON <on> IS <text>`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct CommentPlan {
    /// `TABLE "s"."t"` or `COLUMN "s"."t"."c"`.
    pub on: String,
    /// The column's target name; `None` for the table's own comment.
    pub column: Option<String>,
    /// The comment.
    pub text: String,
}

/// What one table gets on the target, in its names.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct TablePlan {
    /// Columns of `CREATE TABLE`, in source order.
    pub columns: Vec<ColumnPlan>,
    /// `ALTER TABLE … ALTER COLUMN … SET DEFAULT …`, named by column.
    pub defaults: Vec<Item>,
    /// `ALTER TABLE … ADD CONSTRAINT …` of UNIQUE, EXCLUDE and CHECK constraints, in that order.
    pub constraints: Vec<Item>,
    /// `CREATE [UNIQUE] INDEX IF NOT EXISTS …` of the secondary indexes.
    pub indexes: Vec<Item>,
    /// `ALTER TABLE … ADD CONSTRAINT … FOREIGN KEY … NOT VALID`.
    pub foreign_keys: Vec<Item>,
    /// Comments.
    pub comments: Vec<CommentPlan>,
}

/// Why an object is left out.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum SkipKind {
    /// An expression that refers to something in a mapped schema other than a sequence.
    Refused,
    /// It involves columns the job renames or does not copy.
    Columns,
    /// A foreign key to a table the job does not copy.
    Unreferenced,
    /// `spec.policy.foreignKeys`, or a job without a full transfer.
    Policy,
    /// It needs a sequence or function the target does not have.
    Missing,
}

/// An object the target does not get.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Skipped {
    /// What it is on the source: `foreign key fk of s.t`.
    pub object: String,
    /// Why, and what to do.
    pub reason: String,
    /// The kind of reason.
    pub kind: SkipKind,
}

/// The structure of every table of a job on the target, and what the target does not get.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Plan {
    /// Per table, in the job's order.
    pub tables: Vec<TablePlan>,
    /// What is left out.
    pub skipped: Vec<Skipped>,
    /// Whether [`Plan::check_target`] has run.
    checked: bool,
}

/// Why a job does not create a foreign key although both tables are selected, if it does not.
fn fk_policy_reason(spec: &SyncJobSpec) -> Option<&'static str> {
    if spec.policy.foreign_keys == ForeignKeyPolicy::Skip {
        return Some("spec.policy.foreignKeys is skip");
    }
    if !spec.task_type.has_full() {
        return Some(
            "an INCR_TRANS job does not copy the rows that exist when it starts, so the target may miss rows \
             that changes refer to; add the foreign key once the target is complete",
        );
    }
    None
}

/// Plans every table's structure on the target for `spec`.
pub fn plan(tables: &[PgTable], spec: &SyncJobSpec) -> Plan {
    let mut plan = Plan::default();
    let fk_reason = fk_policy_reason(spec);
    for t in tables {
        let tp = plan_table(t, tables, spec.policy.indexes, fk_reason, &mut plan.skipped);
        plan.tables.push(tp);
    }
    plan
}

fn plan_table(
    t: &PgTable,
    all: &[PgTable],
    indexes: bool,
    fk_reason: Option<&str>,
    skipped: &mut Vec<Skipped>,
) -> TablePlan {
    let mut skip = |object: String, reason: String, kind: SkipKind| skipped.push(Skipped { object, reason, kind });
    let d = &t.def;
    let shown = d.display_name();
    let target = pg_qualified(&d.target_schema, &d.target_name);
    let mut tp = TablePlan::default();
    let extra = |name: &str| t.extras.columns.iter().find(|e| e.name == name);
    // Why the job cannot carry an object on these columns (source names), if it cannot.
    let unfit = |cols: &[String]| -> Option<String> {
        for c in cols {
            match d.columns.iter().find(|x| &x.name == c) {
                Some(x) if !x.selected => return Some(format!("it involves column {c}, which the job does not copy")),
                Some(x) if x.name != x.target_name => {
                    return Some(format!("it involves column {c}, which the job renames to {}", x.target_name));
                }
                Some(_) => {}
                None => match t.extras.generated.iter().find(|g| &g.name == c) {
                    Some(g) if !g.selected || !g.created(t) => {
                        return Some(format!("it involves generated column {c}, which the target does not get"));
                    }
                    Some(g) if g.name != g.target_name => {
                        return Some(format!("it involves column {c}, which the job renames to {}", g.target_name));
                    }
                    _ => {}
                },
            }
        }
        None
    };
    for (i, c) in d.columns.iter().enumerate().filter(|(_, c)| c.selected) {
        let e = extra(&c.name);
        let mut sql = format!("{} {}", pg_ident(&c.target_name), c.type_sql);
        if !c.nullable {
            sql.push_str(" NOT NULL");
        }
        if let Some(id) = e.and_then(|e| e.identity.as_ref()) {
            sql.push(' ');
            sql.push_str(&id.sql());
        }
        let attnum = e.map_or_else(|| i16::try_from(i + 1).unwrap_or(i16::MAX), |e| e.attnum);
        tp.columns.push(ColumnPlan { attnum, sql, needs: Vec::new(), object: format!("column {} of {shown}", c.name) });
        if let Some(def) = e.and_then(|e| e.default.as_ref()) {
            let object = format!("default of column {} of {shown}", c.name);
            match def.for_target() {
                Ok(expr) => tp.defaults.push(Item {
                    object,
                    name: c.target_name.clone(),
                    sql: format!("ALTER TABLE {target} ALTER COLUMN {} SET DEFAULT {expr}", pg_ident(&c.target_name)),
                    needs: def.needs(),
                    validate: false,
                }),
                Err(reason) => skip(object, reason, SkipKind::Refused),
            }
        }
        if let Some(text) = e.and_then(|e| e.comment.clone()) {
            tp.comments.push(CommentPlan {
                on: format!("COLUMN {target}.{}", pg_ident(&c.target_name)),
                column: Some(c.target_name.clone()),
                text,
            });
        }
    }
    for g in t.extras.generated.iter().filter(|g| g.selected) {
        let object = format!("generated column {} of {shown}", g.name);
        let carried = match unfit(&g.uses) {
            Some(reason) => Err((reason, SkipKind::Columns)),
            None => g.expression.for_target().map_err(|r| (r, SkipKind::Refused)),
        };
        match carried {
            Ok(expr) => {
                let not_null = if g.not_null { " NOT NULL" } else { "" };
                tp.columns.push(ColumnPlan {
                    attnum: g.attnum,
                    sql: format!(
                        "{} {}{not_null} GENERATED ALWAYS AS ({expr}) {}",
                        pg_ident(&g.target_name),
                        g.type_sql,
                        if g.is_virtual { VIRTUAL } else { "STORED" }
                    ),
                    needs: g.expression.needs(),
                    object,
                });
                if let Some(text) = &g.comment {
                    tp.comments.push(CommentPlan {
                        on: format!("COLUMN {target}.{}", pg_ident(&g.target_name)),
                        column: Some(g.target_name.clone()),
                        text: text.clone(),
                    });
                }
            }
            Err((reason, kind)) => skip(object, reason, kind),
        }
    }
    tp.columns.sort_by_key(|c| c.attnum);
    let renamed = d.target_name != d.name;
    let mut constraints: Vec<&ConstraintDef> = t.extras.constraints.iter().collect();
    // UNIQUE and EXCLUDE first: a later CHECK never needs them, but they are what foreign keys
    // and the stream's upserts lean on.
    constraints.sort_by_key(|c| c.kind == ConstraintKind::Check);
    for c in constraints {
        let object = format!("constraint {} of {shown}", c.name);
        let carried = match unfit(&c.columns) {
            Some(reason) => Err((reason, SkipKind::Columns)),
            None => c.definition.for_target().map_err(|r| (r, SkipKind::Refused)),
        };
        match carried {
            Ok(def) => {
                // A UNIQUE or EXCLUDE constraint's index is named after it, in the schema's
                // namespace: prefixed like the table's other indexes when the table is renamed.
                let name = if renamed && c.kind != ConstraintKind::Check {
                    format!("{}_{}", d.target_name, c.name)
                } else {
                    c.name.clone()
                };
                tp.constraints.push(Item {
                    object,
                    sql: format!("ALTER TABLE {target} ADD CONSTRAINT {} {def}", pg_ident(&name)),
                    name,
                    needs: c.definition.needs(),
                    validate: false,
                });
            }
            Err((reason, kind)) => skip(object, reason, kind),
        }
    }
    if indexes {
        let odd = d.columns.iter().any(|c| !c.selected || c.name != c.target_name);
        for idx in &t.indexes {
            if odd && d.columns.iter().any(|c| (!c.selected || c.name != c.target_name) && idx.using.contains(&c.name))
            {
                skip(
                    format!("index {} of {shown}", idx.name),
                    "it refers to columns the job renames or does not copy".into(),
                    SkipKind::Columns,
                );
                continue;
            }
            let name = if renamed { format!("{}_{}", d.target_name, idx.name) } else { idx.name.clone() };
            tp.indexes.push(Item {
                object: format!("index {} of {shown}", idx.name),
                sql: format!(
                    "CREATE {}INDEX IF NOT EXISTS {} ON {target} USING {}",
                    if idx.unique { "UNIQUE " } else { "" },
                    pg_ident(&name),
                    idx.using
                ),
                name,
                needs: Vec::new(),
                validate: false,
            });
        }
    }
    for fk in &t.extras.foreign_keys {
        let object = format!("foreign key {} of {shown}", fk.name);
        if let Some(reason) = fk_reason {
            skip(object, reason.to_owned(), SkipKind::Policy);
            continue;
        }
        let Some(parent) = all.iter().find(|p| p.def.schema == fk.ref_schema && p.def.name == fk.ref_table) else {
            skip(
                object,
                format!("it references {}.{}, which the job does not copy", fk.ref_schema, fk.ref_table),
                SkipKind::Unreferenced,
            );
            continue;
        };
        let target_of = |table: &PgTable, c: &str| {
            table.def.columns.iter().find(|x| x.name == c && x.selected).map(|x| pg_ident(&x.target_name))
        };
        let cols: Option<Vec<String>> = fk.columns.iter().map(|c| target_of(t, c)).collect();
        let ref_cols: Option<Vec<String>> = fk.ref_columns.iter().map(|c| target_of(parent, c)).collect();
        let (Some(cols), Some(ref_cols)) = (cols, ref_cols) else {
            skip(object, "it involves columns the job does not copy".into(), SkipKind::Columns);
            continue;
        };
        tp.foreign_keys.push(Item {
            object,
            sql: format!(
                "ALTER TABLE {target} ADD CONSTRAINT {} FOREIGN KEY ({}) REFERENCES {} ({}){} NOT VALID",
                pg_ident(&fk.name),
                cols.join(", "),
                pg_qualified(&parent.def.target_schema, &parent.def.target_name),
                ref_cols.join(", "),
                fk.actions
            ),
            name: fk.name.clone(),
            needs: Vec::new(),
            validate: fk.validated,
        });
    }
    if let Some(text) = &t.extras.comment {
        tp.comments.push(CommentPlan { on: format!("TABLE {target}"), column: None, text: text.clone() });
    }
    tp
}

impl GeneratedColumn {
    /// Whether the plan creates it (selected, and reading only what the job carries as is).
    fn created(&self, t: &PgTable) -> bool {
        self.selected
            && self
                .uses
                .iter()
                .all(|u| t.def.columns.iter().any(|c| &c.name == u && c.selected && c.name == c.target_name))
            && self.expression.for_target().is_ok()
    }
}

impl Plan {
    /// Every need of the plan.
    pub fn needs(&self) -> BTreeSet<Need> {
        let mut out = BTreeSet::new();
        for t in &self.tables {
            out.extend(t.columns.iter().flat_map(|c| c.needs.iter().cloned()));
            for i in t.defaults.iter().chain(&t.constraints) {
                out.extend(i.needs.iter().cloned());
            }
        }
        out
    }

    /// Leaves out what needs something the target does not have (a sequence or a function),
    /// each with the reason. Looked up once per plan, before the tables are created.
    pub async fn check_target(&mut self, client: &Client) -> Result<()> {
        if self.checked {
            return Ok(());
        }
        let (relations, functions): (Vec<String>, Vec<String>) =
            self.needs().into_iter().fold((Vec::new(), Vec::new()), |(mut r, mut f), n| {
                match n {
                    Need::Relation(x) => r.push(x),
                    Need::Function(x) => f.push(x),
                }
                (r, f)
            });
        let rows = client
            .query(
                "SELECT 'r', x FROM unnest($1::text[]) AS x WHERE to_regclass(x) IS NULL \
                 UNION ALL SELECT 'f', x FROM unnest($2::text[]) AS x WHERE to_regprocedure(x) IS NULL",
                &[&relations, &functions],
            )
            .await
            .ctx(T, || "looking up what the structure's expressions need on the target".into())?;
        let missing: BTreeSet<Need> = rows
            .iter()
            .map(|r| {
                let x: String = r.get(1);
                if r.get::<_, &str>(0) == "r" { Need::Relation(x) } else { Need::Function(x) }
            })
            .collect();
        self.leave_out(&missing);
        let version: i32 = client
            .query_one("SELECT current_setting('server_version_num')::int4", &[])
            .await
            .ctx(T, || "reading the target's version".into())?
            .get(0);
        if version < VIRTUAL_SINCE {
            let virtual_end = format!(" {VIRTUAL}");
            for c in self.tables.iter_mut().flat_map(|t| &mut t.columns) {
                if let Some(stored) = c.sql.strip_suffix(&virtual_end) {
                    c.sql = format!("{stored} STORED");
                }
            }
        }
        self.checked = true;
        Ok(())
    }

    /// Moves what needs one of `missing` to [`Plan::skipped`].
    pub fn leave_out(&mut self, missing: &BTreeSet<Need>) {
        if missing.is_empty() {
            return;
        }
        let reason = |needs: &[Need], then: &str| -> Option<String> {
            let lacking: Vec<String> = needs.iter().filter(|n| missing.contains(n)).map(Need::to_string).collect();
            (!lacking.is_empty())
                .then(|| format!("it needs {}, which the target does not have; {then}", lacking.join(" and ")))
        };
        let skipped = &mut self.skipped;
        let mut keep = |object: &str, needs: &[Need], then: &str| match reason(needs, then) {
            Some(reason) => {
                skipped.push(Skipped { object: object.to_owned(), reason, kind: SkipKind::Missing });
                false
            }
            None => true,
        };
        for t in &mut self.tables {
            t.columns.retain(|c| keep(&c.object, &c.needs, "create it there, then add the column by hand"));
            t.defaults.retain(|i| keep(&i.object, &i.needs, "create it there: the job's next start sets the default"));
            t.constraints.retain(|i| keep(&i.object, &i.needs, "create it there, then add the constraint by hand"));
        }
    }

    /// Reports what the target does not get to the job's progress (`skippedObjects`).
    pub fn report(&self, tracker: &crate::engine::Tracker) {
        for s in &self.skipped {
            tracker.skipped(&s.object, &s.reason);
        }
    }
}

/// Sets the planned column defaults and comments the target tables lack (a default or comment
/// the target has already, set by hand say, stays): on every start, so a default left out for
/// want of a sequence is set once the sequence is there.
pub async fn settle(client: &Client, tables: &[PgTable], plan: &Plan) -> Result<()> {
    for (t, tp) in tables.iter().zip(&plan.tables) {
        if tp.defaults.is_empty() && tp.comments.is_empty() {
            continue;
        }
        let d = &t.def;
        let target = pg_qualified(&d.target_schema, &d.target_name);
        let what = || format!("reading the defaults and comments of {}", d.display_target());
        let rows = client
            .query(
                "SELECT a.attname::text, a.atthasdef, col_description(a.attrelid, a.attnum) IS NOT NULL \
                 FROM pg_attribute a WHERE a.attrelid = to_regclass($1) AND a.attnum > 0 AND NOT a.attisdropped",
                &[&target],
            )
            .await
            .ctx(T, what)?;
        let has = |col: &str, i: usize| rows.iter().any(|r| r.get::<_, &str>(0) == col && r.get::<_, bool>(i));
        for item in &tp.defaults {
            if !has(&item.name, 1) {
                execute_one(client, &item.sql).await.ctx(T, || format!("setting the {}", item.object))?;
            }
        }
        let table_comment: bool = client
            .query_one("SELECT obj_description(to_regclass($1), 'pg_class') IS NOT NULL", &[&target])
            .await
            .ctx(T, what)?
            .get(0);
        for c in &tp.comments {
            let present = match &c.column {
                Some(col) => has(col, 2),
                None => table_comment,
            };
            if present {
                continue;
            }
            // DDL takes no parameters: the server quotes the text, bound as a value.
            let ddl: String = client
                .query_one("SELECT format('COMMENT ON %s IS %L', $1::text, $2::text)", &[&c.on, &c.text])
                .await
                .ctx(T, || format!("preparing the comment on {}", c.on))?
                .get(0);
            execute_one(client, &ddl).await.ctx(T, || format!("setting the comment on {}", c.on))?;
        }
    }
    Ok(())
}

/// Target sessions building the structure after the load: `tuning.writeParallelism`, default 2.
pub fn parallelism(spec: &SyncJobSpec) -> usize {
    spec.tuning.as_ref().and_then(|t| t.write_parallelism).unwrap_or(2).max(1) as usize
}

/// One unit of [`build`]'s work.
enum Work {
    /// A table's primary key, then its constraints, one after the other.
    Constraints(usize),
    /// One secondary index.
    Index(usize, usize),
}

/// Builds, after the load, each table's primary key (unless `keys_exist`), UNIQUE, EXCLUDE and
/// CHECK constraints and secondary indexes, on up to `parallelism` target sessions that `open`
/// gives: a table's key and constraints one after the other on one session (each takes the
/// table's exclusive lock), its indexes each on its own, in parallel with other tables' work and
/// with each other. What exists already is left as it is.
pub async fn build<F, Fut>(open: F, tables: &[PgTable], plan: &Plan, parallelism: usize, keys_exist: bool) -> Result<()>
where
    F: Fn() -> Fut,
    Fut: Future<Output = Result<Client>>,
{
    build_tables(open, tables, plan, parallelism, keys_exist, (0..tables.len()).collect()).await
}

/// As [`build`], for the tables `which` (indexes into `tables`) only: a table whose copy is done
/// gets its keys and indexes while the next tables copy.
pub async fn build_tables<F, Fut>(
    open: F,
    tables: &[PgTable],
    plan: &Plan,
    parallelism: usize,
    keys_exist: bool,
    which: Vec<usize>,
) -> Result<()>
where
    F: Fn() -> Fut,
    Fut: Future<Output = Result<Client>>,
{
    let mut order = which;
    // The biggest tables first, so that they do not start last.
    order.sort_by_key(|&t| std::cmp::Reverse(tables[t].def.estimated_rows));
    let mut queue = VecDeque::new();
    for t in order {
        let tp = &plan.tables[t];
        if (!keys_exist && !tables[t].def.key.is_empty()) || !tp.constraints.is_empty() {
            queue.push_back(Work::Constraints(t));
        }
        queue.extend((0..tp.indexes.len()).map(|i| Work::Index(t, i)));
    }
    let sessions = parallelism.clamp(1, queue.len().max(1));
    let queue = Mutex::new(queue);
    let next = || queue.lock().unwrap_or_else(|p| p.into_inner()).pop_front();
    let worker = || async {
        let client = open().await?;
        while let Some(work) = next() {
            match work {
                Work::Constraints(t) => {
                    if !keys_exist {
                        add_key(&client, &tables[t]).await?;
                    }
                    for item in &plan.tables[t].constraints {
                        add_constraint(&client, &tables[t], item).await?;
                    }
                }
                Work::Index(t, i) => {
                    let item = &plan.tables[t].indexes[i];
                    execute_one(&client, &item.sql).await.ctx(T, || format!("creating the {}", item.object))?;
                }
            }
        }
        Ok::<(), EngineError>(())
    };
    futures::future::try_join_all((0..sessions).map(|_| worker())).await?;
    Ok(())
}

/// Adds the table's primary key unless the target table has one.
async fn add_key(client: &Client, t: &PgTable) -> Result<()> {
    let d = &t.def;
    if d.key.is_empty() {
        return Ok(());
    }
    let target = pg_qualified(&d.target_schema, &d.target_name);
    let has = client
        .query_opt("SELECT 1 FROM pg_index WHERE indrelid = to_regclass($1) AND indisprimary", &[&target])
        .await
        .ctx(T, || format!("looking up the primary key of {}", d.display_target()))?
        .is_some();
    if !has {
        let key: Vec<String> = d.key_columns().map(|c| pg_ident(&c.target_name)).collect();
        let ddl = format!("ALTER TABLE {target} ADD PRIMARY KEY ({})", key.join(", "));
        client.batch_execute(&ddl).await.ctx(T, || format!("adding the primary key of {}", d.display_target()))?;
    }
    Ok(())
}

/// Whether the target table has a constraint of that name.
async fn has_constraint(client: &Client, t: &PgTable, name: &str) -> Result<Option<bool>> {
    let d = &t.def;
    let row = client
        .query_opt(
            "SELECT convalidated FROM pg_constraint WHERE conrelid = to_regclass($1) AND conname = $2",
            &[&pg_qualified(&d.target_schema, &d.target_name), &name],
        )
        .await
        .ctx(T, || format!("looking up constraint {name} of {}", d.display_target()))?;
    Ok(row.map(|r| r.get(0)))
}

async fn add_constraint(client: &Client, t: &PgTable, item: &Item) -> Result<()> {
    if has_constraint(client, t, &item.name).await?.is_none() {
        execute_one(client, &item.sql).await.ctx(T, || format!("adding the {}", item.object))?;
    }
    Ok(())
}

/// How long adding a foreign key waits for its two tables' locks before it tries again: less
/// than PostgreSQL's default `deadlock_timeout` (1 s), so that when the change stream's
/// transaction and the foreign key wait for each other, the foreign key gives way.
const FK_LOCK_TIMEOUT: &str = "500ms";

/// How many times adding a foreign key tries to take its tables' locks.
const FK_LOCK_ATTEMPTS: u32 = 600;

/// Adds the planned foreign keys the target lacks, `NOT VALID`, one after the other on one
/// session (each locks two tables: one at a time, no two of them can deadlock), then validates
/// those the source has validated on up to `parallelism` sessions (validation blocks no writes).
/// A change stream may apply changes meanwhile. Returns `(object, reason)` of the keys that
/// could not be validated: they stay `NOT VALID` (still enforced on new rows).
pub async fn build_foreign_keys<F, Fut>(
    open: F,
    tables: &[PgTable],
    plan: &Plan,
    parallelism: usize,
) -> Result<Vec<(String, String)>>
where
    F: Fn() -> Fut,
    Fut: Future<Output = Result<Client>>,
{
    let planned: Vec<(usize, &Item)> =
        plan.tables.iter().enumerate().flat_map(|(t, tp)| tp.foreign_keys.iter().map(move |i| (t, i))).collect();
    if planned.is_empty() {
        return Ok(Vec::new());
    }
    let client = open().await?;
    client
        .batch_execute(&format!("SET lock_timeout = '{FK_LOCK_TIMEOUT}'"))
        .await
        .ctx(T, || "preparing to add foreign keys".into())?;
    let mut to_validate = VecDeque::new();
    for &(t, item) in &planned {
        let validated = match has_constraint(&client, &tables[t], &item.name).await? {
            Some(v) => v,
            None => {
                add_waiting_for_locks(&client, item).await?;
                false
            }
        };
        if item.validate && !validated {
            to_validate.push_back((t, item));
        }
    }
    drop(client);
    let sessions = parallelism.clamp(1, to_validate.len().max(1));
    let queue = Mutex::new(to_validate);
    let failed = Mutex::new(Vec::new());
    let next = || queue.lock().unwrap_or_else(|p| p.into_inner()).pop_front();
    let worker = || async {
        let client = open().await?;
        while let Some((t, item)) = next() {
            let d = &tables[t].def;
            let sql = format!(
                "ALTER TABLE {} VALIDATE CONSTRAINT {}",
                pg_qualified(&d.target_schema, &d.target_name),
                pg_ident(&item.name)
            );
            match client.batch_execute(&sql).await {
                Ok(()) => {}
                Err(e) if e.code() == Some(&SqlState::FOREIGN_KEY_VIOLATION) => {
                    failed.lock().unwrap_or_else(|p| p.into_inner()).push((
                        item.object.clone(),
                        format!(
                            "created NOT VALID: rows on the target violate it ({}); it holds for new rows",
                            describe_pg_error(&e)
                        ),
                    ));
                }
                Err(e) => {
                    return Err(EngineError::query(
                        T,
                        format!("validating the {}", item.object),
                        describe_pg_error(&e),
                    ));
                }
            }
        }
        Ok::<(), EngineError>(())
    };
    futures::future::try_join_all((0..sessions).map(|_| worker())).await?;
    Ok(failed.into_inner().unwrap_or_else(|p| p.into_inner()))
}

async fn add_waiting_for_locks(client: &Client, item: &Item) -> Result<()> {
    let mut attempt = 0;
    loop {
        match execute_one(client, &item.sql).await {
            Ok(()) => return Ok(()),
            Err(e)
                if attempt + 1 < FK_LOCK_ATTEMPTS
                    && matches!(e.code(), Some(c) if *c == SqlState::LOCK_NOT_AVAILABLE || *c == SqlState::T_R_DEADLOCK_DETECTED) =>
            {
                attempt += 1;
                tokio::time::sleep(Duration::from_millis(500)).await;
            }
            Err(e) => return Err(EngineError::query(T, format!("adding the {}", item.object), describe_pg_error(&e))),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::engine::model::{ColumnDef, TableDef};

    fn seq_ref(mapped: Option<&str>) -> ExprRef {
        ExprRef {
            kind: RefKind::Sequence,
            schema: "app".into(),
            name: "app.t_id_seq".into(),
            mapped_to: mapped.map(str::to_owned),
            target_name: format!("{}.t_id_seq", mapped.unwrap_or("app")),
        }
    }

    #[test]
    fn a_sequence_in_a_mapped_schema_is_renamed_where_named_as_a_regclass() {
        let e = Expr { text: "nextval('app.t_id_seq'::regclass)".into(), refs: vec![seq_ref(Some("app2"))] };
        assert_eq!(e.for_target().unwrap(), "nextval('app2.t_id_seq'::regclass)");
        assert_eq!(e.needs(), vec![Need::Relation("app2.t_id_seq".into())]);
        let same = Expr { refs: vec![seq_ref(None)], ..e.clone() };
        assert_eq!(same.for_target().unwrap(), "nextval('app.t_id_seq'::regclass)");
        let odd = Expr { text: "nextval('app.t_id_seq')".into(), ..e };
        assert!(odd.for_target().unwrap_err().contains("cannot rename"));
    }

    #[test]
    fn a_function_in_a_mapped_schema_is_refused_and_an_enum_type_is_kept() {
        let f = ExprRef {
            kind: RefKind::Function,
            schema: "app".into(),
            name: "app.f(integer)".into(),
            mapped_to: Some("app2".into()),
            target_name: "app.f(integer)".into(),
        };
        let e = Expr { text: "app.f(1)".into(), refs: vec![f.clone()] };
        let why = e.for_target().unwrap_err();
        assert!(why.contains("function app.f(integer)") && why.contains("app2"), "{why}");
        let unmapped = Expr { text: "app.f(1)".into(), refs: vec![ExprRef { mapped_to: None, ..f }] };
        assert_eq!(unmapped.for_target().unwrap(), "app.f(1)");
        assert_eq!(unmapped.needs(), vec![Need::Function("app.f(integer)".into())]);
        let ty = ExprRef {
            kind: RefKind::Type,
            schema: "app".into(),
            name: "app.mood".into(),
            mapped_to: Some("app2".into()),
            target_name: "app.mood".into(),
        };
        let e = Expr { text: "'ok'::app.mood".into(), refs: vec![ty] };
        assert_eq!(e.for_target().unwrap(), "'ok'::app.mood");
        assert!(e.needs().is_empty());
    }

    #[test]
    fn foreign_key_clauses_follow_the_catalog_codes() {
        assert_eq!(fk_actions("a", "a", "s", false, false), "");
        assert_eq!(
            fk_actions("c", "n", "f", true, true),
            " MATCH FULL ON UPDATE CASCADE ON DELETE SET NULL DEFERRABLE INITIALLY DEFERRED"
        );
        assert_eq!(fk_actions("r", "d", "s", true, false), " ON UPDATE RESTRICT ON DELETE SET DEFAULT DEFERRABLE");
    }

    #[test]
    fn identity_options_are_spelled_out() {
        let id = Identity { always: true, start: 5, increment: 2, min: 1, max: 100, cache: 1, cycle: false };
        assert_eq!(
            id.sql(),
            "GENERATED ALWAYS AS IDENTITY (START WITH 5 INCREMENT BY 2 MINVALUE 1 MAXVALUE 100 CACHE 1 NO CYCLE)"
        );
    }

    fn col(name: &str, target: &str, selected: bool) -> ColumnDef {
        ColumnDef {
            name: name.into(),
            target_name: target.into(),
            type_sql: "integer".into(),
            nullable: false,
            selected,
        }
    }

    fn table(name: &str, columns: Vec<ColumnDef>, extras: Extras) -> PgTable {
        PgTable {
            def: TableDef {
                schema: "public".into(),
                name: name.into(),
                target_schema: "public".into(),
                target_name: name.into(),
                columns,
                key: vec![0],
                filter: None,
                estimated_rows: 0,
            },
            binary: true,
            indexes: Vec::new(),
            replica_identity_full: false,
            partitioned: false,
            oid: 0,
            pg_columns: Vec::new(),
            column_selection: None,
            extras,
        }
    }

    fn fk(name: &str, column: &str, parent: &str) -> ForeignKeyDef {
        ForeignKeyDef {
            name: name.into(),
            columns: vec![column.into()],
            ref_schema: "public".into(),
            ref_table: parent.into(),
            ref_columns: vec!["id".into()],
            actions: " ON DELETE CASCADE".into(),
            validated: true,
        }
    }

    fn spec() -> SyncJobSpec {
        SyncJobSpec::test()
    }

    #[test]
    fn foreign_keys_between_selected_tables_are_planned_in_target_names_and_others_skipped() {
        let parent = PgTable {
            def: TableDef {
                target_schema: "copy".into(),
                target_name: "parents".into(),
                ..table("parent", vec![col("id", "pid", true)], Extras::default()).def
            },
            ..table("parent", vec![], Extras::default())
        };
        let child = table(
            "child",
            vec![col("id", "id", true), col("parent_id", "parent_id", true), col("customer", "customer", true)],
            Extras {
                foreign_keys: vec![fk("to_parent", "parent_id", "parent"), fk("to_customer", "customer", "customers")],
                ..Default::default()
            },
        );
        let plan = plan(&[parent, child], &spec());
        let fks = &plan.tables[1].foreign_keys;
        assert_eq!(fks.len(), 1);
        assert_eq!(
            fks[0].sql,
            "ALTER TABLE \"public\".\"child\" ADD CONSTRAINT \"to_parent\" FOREIGN KEY (\"parent_id\") \
             REFERENCES \"copy\".\"parents\" (\"pid\") ON DELETE CASCADE NOT VALID"
        );
        assert!(fks[0].validate);
        assert_eq!(
            plan.skipped,
            vec![Skipped {
                object: "foreign key to_customer of public.child".into(),
                reason: "it references public.customers, which the job does not copy".into(),
                kind: SkipKind::Unreferenced,
            }]
        );
    }

    #[test]
    fn the_foreign_key_policy_skip_and_incremental_jobs_create_no_foreign_key_and_say_why() {
        let parent = table("parent", vec![col("id", "id", true)], Extras::default());
        let child = table(
            "child",
            vec![col("id", "id", true), col("parent_id", "parent_id", true)],
            Extras { foreign_keys: vec![fk("to_parent", "parent_id", "parent")], ..Default::default() },
        );
        let tables = [parent, child];
        let mut skip = spec();
        skip.policy.foreign_keys = ForeignKeyPolicy::Skip;
        let p = plan(&tables, &skip);
        assert!(p.tables[1].foreign_keys.is_empty());
        assert!(p.skipped[0].reason.contains("policy.foreignKeys"), "{:?}", p.skipped);
        let incr = spec().task(crate::api::TaskType::IncrTrans);
        let p = plan(&tables, &incr);
        assert!(p.skipped[0].reason.contains("INCR_TRANS"), "{:?}", p.skipped);
    }

    #[test]
    fn generated_columns_and_constraints_on_renamed_or_unselected_columns_are_skipped() {
        let expr = |text: &str| Expr { text: text.into(), refs: vec![] };
        let extras = Extras {
            generated: vec![
                GeneratedColumn {
                    name: "twice".into(),
                    target_name: "twice".into(),
                    selected: true,
                    attnum: 4,
                    type_sql: "integer".into(),
                    not_null: false,
                    is_virtual: false,
                    expression: expr("(qty * 2)"),
                    uses: vec!["qty".into()],
                    comment: Some("qty twice".into()),
                },
                GeneratedColumn {
                    name: "secretish".into(),
                    target_name: "secretish".into(),
                    selected: true,
                    attnum: 5,
                    type_sql: "text".into(),
                    not_null: false,
                    is_virtual: false,
                    expression: expr("upper(secret)"),
                    uses: vec!["secret".into()],
                    comment: None,
                },
            ],
            constraints: vec![
                ConstraintDef {
                    name: "qty_positive".into(),
                    kind: ConstraintKind::Check,
                    definition: expr("CHECK ((qty > 0))"),
                    columns: vec!["qty".into()],
                },
                ConstraintDef {
                    name: "amount_positive".into(),
                    kind: ConstraintKind::Check,
                    definition: expr("CHECK ((amount > 0))"),
                    columns: vec!["amount".into()],
                },
                ConstraintDef {
                    name: "one_qty".into(),
                    kind: ConstraintKind::Unique,
                    definition: expr("UNIQUE (qty)"),
                    columns: vec!["qty".into()],
                },
            ],
            ..Default::default()
        };
        let t = table(
            "orders",
            vec![
                col("id", "id", true),
                col("qty", "qty", true),
                col("amount", "total", true),
                col("secret", "secret", false),
            ],
            extras,
        );
        let p = plan(&[t], &spec());
        let tp = &p.tables[0];
        let columns: Vec<&str> = tp.columns.iter().map(|c| c.sql.as_str()).collect();
        assert_eq!(
            columns,
            [
                "\"id\" integer NOT NULL",
                "\"qty\" integer NOT NULL",
                "\"total\" integer NOT NULL",
                "\"twice\" integer GENERATED ALWAYS AS ((qty * 2)) STORED"
            ]
        );
        let constraints: Vec<&str> = tp.constraints.iter().map(|c| c.name.as_str()).collect();
        assert_eq!(constraints, ["one_qty", "qty_positive"], "UNIQUE before CHECK");
        let skipped: Vec<&str> = p.skipped.iter().map(|s| s.object.as_str()).collect();
        assert_eq!(
            skipped,
            ["generated column secretish of public.orders", "constraint amount_positive of public.orders"]
        );
        assert!(p.skipped[1].reason.contains("renames to total"));
        assert!(p.skipped.iter().all(|s| s.kind == SkipKind::Columns));
        assert_eq!(tp.comments[0].on, "COLUMN \"public\".\"orders\".\"twice\"");
    }

    #[test]
    fn what_needs_a_missing_sequence_or_function_is_left_out_with_the_reason() {
        let mut extras = Extras::default();
        extras.columns.push(ColumnExtra {
            name: "id".into(),
            attnum: 1,
            default: Some(Expr { text: "nextval('app.t_id_seq'::regclass)".into(), refs: vec![seq_ref(None)] }),
            identity: None,
            comment: None,
        });
        let t = table("t", vec![col("id", "id", true)], extras);
        let mut p = plan(&[t], &spec());
        assert_eq!(p.tables[0].defaults.len(), 1);
        p.leave_out(&[Need::Relation("app.t_id_seq".into())].into());
        assert!(p.tables[0].defaults.is_empty());
        assert_eq!(p.skipped[0].object, "default of column id of public.t");
        assert!(p.skipped[0].reason.contains("sequence app.t_id_seq"), "{}", p.skipped[0].reason);
    }
}
