//! Comparing a target with its source, table by table: row counts, and contents chunk by chunk.
//! Each side hashes a chunk where the data lives (an aggregate of per-row hashes computed by the
//! database server, the same expression on both sides of a same-engine pair); only a chunk whose
//! counts or hashes differ is read row by row on both sides, and every differing row is reported
//! with its key and the SELECT that shows it on each side.
//!
//! Tables without a primary key are compared by count and a whole-table multiset hash (the sum
//! of per-row hashes does not depend on order); the report says row-level detail is not
//! possible there.
//!
//! Engines implement [`Side`]; this module owns the walk, the row diff and the report. A
//! same-engine pair hashes on the servers; a pair of different engines (MySQL family ↔
//! PostgreSQL) reads rows on both sides and compares their canonical forms ([`canonical`]),
//! with each column's class taken, for MySQL → PostgreSQL, from the job's type mapping. There a
//! text key sorts differently on each side, so the target's rows of a chunk are looked up by the
//! source's keys and rows only on the target found after the walk.

pub mod canonical;
pub mod mysql;
pub mod postgres;

use std::collections::BTreeMap;
use std::future::Future;

use crate::api::compare::{DifferenceKind, RowDifference, TableCompareStatus};
use crate::api::{CompareResult, Endpoint, Engine, ObjectCompareResult, ObjectSelection, ZeroDatePolicy};
use crate::engine::Credentials;
use crate::engine::error::{EngineError, Result};
use crate::engine::model::{KeyRange, TableDef};

/// Rows a chunk holds at most when planned (a mismatched chunk is read whole on both sides).
pub const CHUNK_ROWS: u64 = 10_000;

/// One row as the diff sees it: key values (text) and the row's values in the engine's canonical
/// text form.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Row {
    /// Key values, in key order.
    pub key: Vec<String>,
    /// Every compared value, as one comparable string.
    pub values: Vec<u8>,
}

/// A table's structure as compared: columns with their types, primary key, secondary indexes
/// (`UNIQUE (a, b)` or `(a)`), all in this side's names; and where the engine reports them
/// ([`Shape::detailed`]), defaults, identity and generated columns, constraints, foreign keys
/// and comments.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Shape {
    /// Columns in order, with the type as the engine prints it.
    pub columns: Vec<(String, String)>,
    /// Primary key columns.
    pub key: Vec<String>,
    /// Secondary indexes.
    pub indexes: std::collections::BTreeSet<String>,
    /// Whether the parts below are reported; compared only when both sides report them.
    pub detailed: bool,
    /// Column defaults by column.
    pub defaults: BTreeMap<String, String>,
    /// Identity columns, with their kind and options (`GENERATED ALWAYS AS IDENTITY (…)`).
    pub identities: BTreeMap<String, String>,
    /// Generated columns with their expression, by the column's name on the target (a source
    /// side names them as the job does, and leaves out those the job does not carry).
    pub generated: BTreeMap<String, String>,
    /// CHECK, UNIQUE and EXCLUDE constraints: the columns each involves, and its definition.
    pub constraints: Vec<(Vec<String>, String)>,
    /// Foreign keys.
    pub foreign_keys: Vec<ForeignKeyShape>,
    /// Comments: the table's under `""`, a column's under its name (a generated column's under
    /// its name on the target).
    pub comments: BTreeMap<String, String>,
}

/// A foreign key as compared, in one side's names.
#[derive(Clone, Debug, Default, PartialEq, Eq, PartialOrd, Ord)]
pub struct ForeignKeyShape {
    /// Referencing columns.
    pub columns: Vec<String>,
    /// Referenced table's schema and name.
    pub table: (String, String),
    /// Referenced columns.
    pub ref_columns: Vec<String>,
    /// `MATCH`, `ON UPDATE`, `ON DELETE`, `DEFERRABLE` and `NOT VALID` clauses.
    pub clauses: String,
}

impl std::fmt::Display for ForeignKeyShape {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "FOREIGN KEY ({}) REFERENCES {}.{} ({}){}",
            self.columns.join(", "),
            self.table.0,
            self.table.1,
            self.ref_columns.join(", "),
            self.clauses
        )
    }
}

/// Per source table (`schema`, `name`): its target schema and name, and its column renames
/// (source name → target name, selected columns only).
type TableMap = BTreeMap<(String, String), (String, String, BTreeMap<String, String>)>;

/// One database of the pair, with the job's tables (index `i` names the same table on both
/// sides: source names on the source, target names on the target).
pub trait Side: Send {
    /// The tables, in the job's order.
    fn tables(&self) -> &[TableDef];

    /// Whether table `t` exists on this side.
    fn exists(&mut self, t: usize) -> impl Future<Output = Result<bool>> + Send;

    /// Key ranges of about [`CHUNK_ROWS`] rows covering table `t` (planned on the source).
    fn chunks(&mut self, t: usize) -> impl Future<Output = Result<Vec<KeyRange>>> + Send;

    /// Row count and aggregate hash of the rows of table `t` in `range` (row filter applied).
    fn hash(&mut self, t: usize, range: &KeyRange) -> impl Future<Output = Result<(u64, String)>> + Send;

    /// The rows of table `t` in `range`, in key order.
    fn rows(&mut self, t: usize, range: &KeyRange) -> impl Future<Output = Result<Vec<Row>>> + Send;

    /// The rows of table `t` with these keys (those that exist).
    fn rows_for_keys(&mut self, t: usize, keys: &[Vec<String>]) -> impl Future<Output = Result<Vec<Row>>> + Send;

    /// A SELECT a person can run on this side to see the row with `key` of table `t`.
    fn select_sql(&self, t: usize, key: &[String]) -> String;

    /// The structure of table `t` as it stands on this side.
    fn shape(&mut self, t: usize) -> impl Future<Output = Result<Shape>> + Send;

    /// The value class of each compared column of table `t`, from this side's types.
    fn classes(&self, t: usize) -> Vec<canonical::ValueClass>;

    /// The rows of table `t` in `range`, in key order, each value as the server prints it
    /// (`None` for NULL): for comparing across engines through canonical forms.
    fn raw_rows(&mut self, t: usize, range: &KeyRange) -> impl Future<Output = Result<Vec<RawRow>>> + Send;

    /// The rows of table `t` with these keys (those that exist), as [`Side::raw_rows`] prints
    /// them; keys are in canonical form (see [`canonical::canonical`]).
    fn raw_rows_for_keys(&mut self, t: usize, keys: &[Vec<String>])
    -> impl Future<Output = Result<Vec<RawRow>>> + Send;
}

/// A row as printed by its server: key values and every compared value (`None` for NULL).
pub type RawRow = (Vec<String>, Vec<Option<Vec<u8>>>);

/// What to compare.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Options {
    /// Compare structures (columns, types, keys, indexes) instead of rows.
    pub objects: bool,
    /// Compare contents (otherwise row counts only).
    pub content: bool,
    /// Most differing rows listed (the counts stay exact).
    pub max_differences: usize,
    /// Compare only this percent of each table's chunks (sampling); `None` compares all.
    pub sample_percent: Option<u32>,
    /// Rows read per second from each side, at most.
    pub rows_per_second: Option<u64>,
    /// Online comparison: how many times a mismatched chunk is checked again, each time once
    /// the job's checkpoint has passed the moment of the previous read.
    pub rechecks: u32,
    /// Compare canonical forms computed here rather than server-side hashes: for pairs of
    /// different engines (set by [`run`]).
    pub canonical: bool,
    /// MySQL/MariaDB → PostgreSQL: the job's `policy.zeroDates`, so that a source zero date
    /// compares as what the job writes for it (NULL, `-infinity`, or itself under `stop`, which
    /// no target value equals).
    pub zero_dates: ZeroDatePolicy,
}

impl Options {
    /// Every row's content, at rest, listing up to `max_differences` differing rows.
    pub const fn content(max_differences: usize) -> Options {
        Options {
            objects: false,
            content: true,
            max_differences,
            sample_percent: None,
            rows_per_second: None,
            rechecks: 0,
            canonical: false,
            zero_dates: ZeroDatePolicy::Null,
        }
    }
}

/// Online comparison: waits until the job's checkpoint covers source changes up to `read_at`
/// (returns false when it will not, e.g. the job is not streaming).
pub trait CatchUp: Sync {
    /// Waits for the checkpoint to pass `read_at`.
    fn wait_past(&self, read_at: jiff::Timestamp) -> impl Future<Output = bool> + Send;
}

/// No job to wait for: a comparison at rest.
pub struct AtRest;

impl CatchUp for AtRest {
    async fn wait_past(&self, _read_at: jiff::Timestamp) -> bool {
        false
    }
}

/// [`sampled`], for tests.
#[doc(hidden)]
pub fn sampled_for_tests(table: &str, i: usize, percent: u32) -> bool {
    sampled(table, i, percent)
}

/// Whether chunk `i` of `table` is in a `percent` sample: a hash, so a rerun samples the same
/// chunks.
fn sampled(table: &str, i: usize, percent: u32) -> bool {
    let h = table
        .bytes()
        .chain(i.to_le_bytes())
        .fold(0xcbf2_9ce4_8422_2325u64, |h, b| (h ^ u64::from(b)).wrapping_mul(0x0100_0000_01b3));
    h % 100 < u64::from(percent.min(100))
}

/// The outcome of a comparison.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct Report {
    /// One entry per table.
    pub tables: Vec<TableCompareStatus>,
    /// Differing rows, at most `max_differences`.
    pub differences: Vec<RowDifference>,
}

impl Report {
    /// `CONSISTENT` when every table is.
    pub fn result(&self) -> CompareResult {
        let consistent = self.tables.iter().all(|t| {
            t.object_result.is_none_or(|r| r == ObjectCompareResult::Consistent)
                && t.rows_result.is_none_or(|r| r == ObjectCompareResult::Consistent)
                && t.content_result
                    .is_none_or(|r| r == ObjectCompareResult::Consistent || r == ObjectCompareResult::CanNotCompare)
                && t.different_rows.unwrap_or(0) == 0
        });
        if consistent { CompareResult::Consistent } else { CompareResult::Inconsistent }
    }
}

fn result_of(equal: bool) -> ObjectCompareResult {
    if equal { ObjectCompareResult::Consistent } else { ObjectCompareResult::Inconsistent }
}

/// A row's values on the source and on the target, where present.
type Pair = (Option<Vec<u8>>, Option<Vec<u8>>);

/// Diffs two key-ordered row lists of table `t`.
fn diff_rows<S: Side, T: Side>(
    source: &S,
    target: &T,
    t: usize,
    a: Vec<Row>,
    b: Vec<Row>,
) -> Vec<(Vec<String>, RowDifference)> {
    let table = source.tables()[t].display_name();
    let mut by_key: BTreeMap<Vec<String>, Pair> = BTreeMap::new();
    for r in a {
        by_key.entry(r.key).or_default().0 = Some(r.values);
    }
    for r in b {
        by_key.entry(r.key).or_default().1 = Some(r.values);
    }
    let mut out = Vec::new();
    for (key, (s, tv)) in by_key {
        let kind = match (&s, &tv) {
            (Some(x), Some(y)) if x == y => continue,
            (Some(_), Some(_)) => DifferenceKind::ValuesDiffer,
            (Some(_), None) => DifferenceKind::OnlyInSource,
            (None, _) => DifferenceKind::OnlyInTarget,
        };
        let shown = key.join(", ");
        let d = RowDifference {
            table: table.clone(),
            kind,
            source_key_value: s.is_some().then(|| shown.clone()),
            target_key_value: tv.is_some().then(|| shown.clone()),
            source_select_sql: Some(source.select_sql(t, &key)),
            target_select_sql: Some(target.select_sql(t, &key)),
        };
        out.push((key, d));
    }
    out
}

/// Brings rows printed by their servers to canonical forms (comparing across engines).
type Canon<'a> = dyn Fn(Vec<RawRow>) -> Vec<Row> + Sync + 'a;

/// Online: checks rows that differ (`diffs`) again by key (through `canon` across engines), up
/// to `rechecks` times, each once the job's checkpoint has passed the previous read (`read_at`);
/// a row in flight agrees then. The counts (`source rows`, `target rows`) follow each rechecked
/// row's latest reading. Returns the differences that persist.
#[allow(clippy::too_many_arguments)]
async fn settle<S: Side, T: Side, C: CatchUp>(
    source: &mut S,
    target: &mut T,
    t: usize,
    canon: Option<&Canon<'_>>,
    mut diffs: Vec<(Vec<String>, RowDifference)>,
    rechecks: u32,
    catch_up: &C,
    mut read_at: jiff::Timestamp,
    (src_rows, tgt_rows): (&mut u64, &mut u64),
) -> Result<Vec<(Vec<String>, RowDifference)>> {
    for _ in 0..rechecks {
        if diffs.is_empty() || !catch_up.wait_past(read_at).await {
            break;
        }
        read_at = jiff::Timestamp::now();
        let keys: Vec<Vec<String>> = diffs.iter().map(|(k, _)| k.clone()).collect();
        let (ra, rb) = match canon {
            Some(canon) => {
                let (ra, rb) = futures::join!(source.raw_rows_for_keys(t, &keys), target.raw_rows_for_keys(t, &keys));
                (canon(ra?), canon(rb?))
            }
            None => {
                let (ra, rb) = futures::join!(source.rows_for_keys(t, &keys), target.rows_for_keys(t, &keys));
                (ra?, rb?)
            }
        };
        for (key, d) in &diffs {
            let was = (d.source_key_value.is_some(), d.target_key_value.is_some());
            let now = (ra.iter().any(|r| &r.key == key), rb.iter().any(|r| &r.key == key));
            *src_rows = (*src_rows + u64::from(now.0)).saturating_sub(u64::from(was.0));
            *tgt_rows = (*tgt_rows + u64::from(now.1)).saturating_sub(u64::from(was.1));
        }
        diffs = diff_rows(source, target, t, ra, rb);
    }
    Ok(diffs)
}

/// For a table whose chunks were looked up on the target by the source's keys: the rows the
/// target holds beyond the `found` ones (their number, and up to `room` of them as
/// differences). Only when the target's count says there are any is the target read over the
/// source's chunk bounds (which cover every key in any order, some more than once), each key
/// looked up on the source.
#[allow(clippy::too_many_arguments)]
async fn only_in_target<S: Side, T: Side, C: CatchUp>(
    source: &mut S,
    target: &mut T,
    t: usize,
    canon: &Canon<'_>,
    chunks: &[KeyRange],
    found: u64,
    room: usize,
    rechecks: u32,
    catch_up: &C,
) -> Result<(u64, Vec<RowDifference>)> {
    let (total, _) = target.hash(t, &KeyRange::default()).await?;
    let extra = total.saturating_sub(found);
    if extra == 0 {
        return Ok((0, Vec::new()));
    }
    let mut listed = Vec::new();
    let mut only_keys = std::collections::BTreeSet::new();
    let read_at = jiff::Timestamp::now();
    for range in chunks {
        let rows = canon(target.raw_rows(t, range).await?);
        if rows.is_empty() {
            continue;
        }
        let keys: Vec<Vec<String>> = rows.iter().map(|r| r.key.clone()).collect();
        let there: std::collections::BTreeSet<Vec<String>> =
            canon(source.raw_rows_for_keys(t, &keys).await?).into_iter().map(|r| r.key).collect();
        // A key in several of the ranges (as the target sorts them) is listed once.
        let only: Vec<Row> =
            rows.into_iter().filter(|r| !there.contains(&r.key) && only_keys.insert(r.key.clone())).collect();
        listed.extend(diff_rows(source, target, t, Vec::new(), only));
        if listed.len() as u64 >= extra {
            break;
        }
    }
    let (mut s, mut tg) = (0u64, listed.len() as u64);
    let listed = settle(source, target, t, Some(canon), listed, rechecks, catch_up, read_at, (&mut s, &mut tg)).await?;
    // The rows found, not the count: online, rows in flight settle (the job caught up).
    Ok((listed.len() as u64, listed.into_iter().map(|(_, d)| d).take(room).collect()))
}

/// The source structure in target names: unselected columns, and indexes, constraints and
/// foreign keys on them, left out (the job does not carry them), as are foreign keys to tables
/// outside the comparison.
fn mapped(shape: &Shape, renames: &BTreeMap<String, String>, tables: &TableMap) -> Shape {
    let name = |c: &str| renames.get(c).cloned();
    let column = |c: &str| name(c).or_else(|| shape.generated.contains_key(c).then(|| c.to_owned()));
    let indexes = shape
        .indexes
        .iter()
        .filter_map(|ix| {
            let (prefix, cols) = ix.split_once('(')?;
            let cols = cols.strip_suffix(')').unwrap_or(cols);
            // An expression (not a column of the table) stays as it is.
            let is_column = |c: &str| shape.columns.iter().any(|(n, _)| n == c);
            let mapped: Option<Vec<String>> =
                cols.split(", ").map(|c| name(c).or_else(|| (!is_column(c)).then(|| c.to_owned()))).collect();
            Some(format!("{prefix}({})", mapped?.join(", ")))
        })
        .collect();
    let by_column = |m: &BTreeMap<String, String>| -> BTreeMap<String, String> {
        m.iter().filter_map(|(c, v)| Some((if c.is_empty() { c.clone() } else { column(c)? }, v.clone()))).collect()
    };
    let foreign_keys = shape
        .foreign_keys
        .iter()
        .filter_map(|fk| {
            let (schema, table, parent) = tables.get(&fk.table)?;
            Some(ForeignKeyShape {
                columns: fk.columns.iter().map(|c| name(c)).collect::<Option<_>>()?,
                table: (schema.clone(), table.clone()),
                ref_columns: fk.ref_columns.iter().map(|c| parent.get(c).cloned()).collect::<Option<_>>()?,
                clauses: fk.clauses.clone(),
            })
        })
        .collect();
    Shape {
        columns: shape.columns.iter().filter_map(|(c, ty)| Some((column(c)?, ty.clone()))).collect(),
        key: shape.key.iter().filter_map(|c| name(c)).collect(),
        indexes,
        detailed: shape.detailed,
        defaults: by_column(&shape.defaults),
        identities: by_column(&shape.identities),
        generated: shape.generated.clone(),
        // Definitions name source columns: kept as they are, so that one on a renamed column
        // shows as differing.
        constraints: shape
            .constraints
            .iter()
            .filter(|(cols, _)| cols.iter().all(|c| column(c).is_some()))
            .cloned()
            .collect(),
        foreign_keys,
        comments: by_column(&shape.comments),
    }
}

/// What differs between two maps by column (`what` names the kind: `default`, `identity`).
fn map_differences(
    out: &mut Vec<String>,
    what: &str,
    want: &BTreeMap<String, String>,
    have: &BTreeMap<String, String>,
) {
    for (c, w) in want {
        let on = if c.is_empty() { "the table".to_owned() } else { format!("column {c}") };
        match have.get(c) {
            None => out.push(format!("{what} of {on} missing on the target ({w})")),
            Some(h) if h != w => out.push(format!("{what} of {on} is {h} on the target, {w} on the source")),
            Some(_) => {}
        }
    }
    for (c, h) in have {
        if !want.contains_key(c) {
            let on = if c.is_empty() { "the table".to_owned() } else { format!("column {c}") };
            out.push(format!("{what} of {on} only on the target ({h})"));
        }
    }
}

/// What differs between the expected and the actual structure, in words.
fn shape_differences(want: &Shape, have: &Shape) -> Vec<String> {
    let mut out = Vec::new();
    for (c, ty) in &want.columns {
        match have.columns.iter().find(|(h, _)| h == c) {
            None => out.push(format!("column {c} missing on the target")),
            Some((_, t)) if t != ty => out.push(format!("column {c} is {t} on the target, {ty} on the source")),
            Some(_) => {}
        }
    }
    for (c, _) in &have.columns {
        if !want.columns.iter().any(|(w, _)| w == c) {
            out.push(format!("column {c} only on the target"));
        }
    }
    if want.key != have.key {
        out.push(format!(
            "primary key ({}) on the source, ({}) on the target",
            want.key.join(", "),
            have.key.join(", ")
        ));
    }
    for ix in want.indexes.difference(&have.indexes) {
        out.push(format!("index {ix} missing on the target"));
    }
    for ix in have.indexes.difference(&want.indexes) {
        out.push(format!("index {ix} only on the target"));
    }
    if want.detailed && have.detailed {
        map_differences(&mut out, "default", &want.defaults, &have.defaults);
        map_differences(&mut out, "identity", &want.identities, &have.identities);
        map_differences(&mut out, "generation expression", &want.generated, &have.generated);
        map_differences(&mut out, "comment", &want.comments, &have.comments);
        let defs = |s: &Shape| s.constraints.iter().map(|(_, d)| d.clone()).collect::<std::collections::BTreeSet<_>>();
        let (w, h) = (defs(want), defs(have));
        for c in w.difference(&h) {
            out.push(format!("constraint {c} missing on the target"));
        }
        for c in h.difference(&w) {
            out.push(format!("constraint {c} only on the target"));
        }
        let fks = |s: &Shape| s.foreign_keys.iter().map(ToString::to_string).collect::<std::collections::BTreeSet<_>>();
        let (w, h) = (fks(want), fks(have));
        for k in w.difference(&h) {
            out.push(format!("{k} missing on the target"));
        }
        for k in h.difference(&w) {
            out.push(format!("{k} only on the target"));
        }
    }
    out
}

/// Rows as printed by a server, in canonical form: key values and the joined values.
fn canonical_rows(classes: &[canonical::ValueClass], keys: &[usize], rows: Vec<RawRow>) -> Vec<Row> {
    rows.into_iter()
        .map(|(key, values)| Row {
            key: key
                .iter()
                .zip(keys)
                .map(|(k, &i)| canonical::canonical(classes[i], Some(k.as_bytes())).unwrap_or_default())
                .collect(),
            values: canonical::row(classes, &values),
        })
        .collect()
}

/// Compares every table of the pair at rest.
pub async fn compare<S: Side, T: Side>(source: &mut S, target: &mut T, opts: Options) -> Result<Report> {
    compare_online(source, target, opts, &AtRest).await
}

/// Compares every table of the pair while a job may still be applying changes: a mismatched
/// chunk is checked again (`opts.rechecks` times) once `catch_up` says the job's checkpoint has
/// passed the previous read, so only differences that persist are reported.
pub async fn compare_online<S: Side, T: Side, C: CatchUp>(
    source: &mut S,
    target: &mut T,
    opts: Options,
    catch_up: &C,
) -> Result<Report> {
    let mut report = Report::default();
    let started = std::time::Instant::now();
    let mut rows_read = 0u64;
    let tables: TableMap = source
        .tables()
        .iter()
        .zip(target.tables())
        .map(|(s, t)| {
            let renames = s.columns.iter().zip(&t.columns).map(|(a, b)| (a.name.clone(), b.name.clone())).collect();
            ((s.schema.clone(), s.name.clone()), (t.schema.clone(), t.name.clone(), renames))
        })
        .collect();
    for t in 0..source.tables().len() {
        let (sname, tname) = (source.tables()[t].display_name(), target.tables()[t].display_name());
        let mut status = TableCompareStatus {
            source: sname.clone(),
            target: tname.clone(),
            source_rows: None,
            target_rows: None,
            different_rows: None,
            object_result: None,
            rows_result: None,
            content_result: None,
            message: None,
        };
        if !target.exists(t).await? {
            if opts.objects {
                status.object_result = Some(ObjectCompareResult::TargetDbNotExist);
            } else {
                status.rows_result = Some(ObjectCompareResult::TargetDbNotExist);
                status.content_result = opts.content.then_some(ObjectCompareResult::TargetDbNotExist);
            }
            status.message = Some(format!("{tname} does not exist on the target"));
            report.tables.push(status);
            continue;
        }
        if opts.objects {
            let renames: BTreeMap<String, String> = source.tables()[t]
                .columns
                .iter()
                .zip(&target.tables()[t].columns)
                .map(|(s, t)| (s.name.clone(), t.name.clone()))
                .collect();
            let want = mapped(&source.shape(t).await?, &renames, &tables);
            let have = target.shape(t).await?;
            let problems = shape_differences(&want, &have);
            status.object_result = Some(result_of(problems.is_empty()));
            if !problems.is_empty() {
                status.message = Some(problems.join("; "));
            }
            report.tables.push(status);
            continue;
        }
        let keyed = !source.tables()[t].key.is_empty();
        let chunks = if opts.content && keyed { source.chunks(t).await? } else { vec![KeyRange::default()] };
        let (mut src_rows, mut tgt_rows, mut differing) = (0u64, 0u64, 0u64);
        let mut hashes_equal = true;
        let table_name = source.tables()[t].display_name();
        let mut compared = 0usize;
        for (i, range) in chunks.iter().enumerate() {
            if let Some(p) = opts.sample_percent
                && chunks.len() > 1
                && !sampled(&table_name, i, p)
            {
                continue;
            }
            compared += 1;
            if opts.canonical {
                let classes: Vec<_> =
                    source.classes(t).into_iter().zip(target.classes(t)).map(|(a, b)| a.merge(b)).collect();
                let keys: Vec<usize> = source.tables()[t].key.clone();
                let canon = |rows: Vec<RawRow>| -> Vec<Row> { canonical_rows(&classes, &keys, rows) };
                let chunk_rechecks = if keyed && opts.content { 0 } else { opts.rechecks };
                // A text key sorts by each engine's collation: the source's chunk bounds hold
                // other rows on the target. The target's rows of a chunk are then looked up by
                // the source's keys, and rows only on the target found after the walk.
                let by_keys = keyed
                    && opts.content
                    && chunks.len() > 1
                    && keys.iter().any(|&k| classes.get(k) == Some(&canonical::ValueClass::Text));
                let (mut a, mut b) = (Vec::new(), Vec::new());
                let mut read_at = jiff::Timestamp::now();
                for attempt in 0..=chunk_rechecks {
                    read_at = jiff::Timestamp::now();
                    if by_keys {
                        a = canon(source.raw_rows(t, range).await?);
                        let wanted: Vec<Vec<String>> = a.iter().map(|r| r.key.clone()).collect();
                        b = canon(target.raw_rows_for_keys(t, &wanted).await?);
                    } else {
                        let (ra, rb) = futures::join!(source.raw_rows(t, range), target.raw_rows(t, range));
                        (a, b) = (canon(ra?), canon(rb?));
                    }
                    let same = keyed && opts.content
                        || canonical::sum_hash(a.iter().map(|r| r.values.as_slice()))
                            == canonical::sum_hash(b.iter().map(|r| r.values.as_slice()));
                    if same || attempt == chunk_rechecks || !catch_up.wait_past(read_at).await {
                        break;
                    }
                }
                src_rows += a.len() as u64;
                tgt_rows += b.len() as u64;
                if keyed && opts.content {
                    let diffs = diff_rows(source, target, t, a, b);
                    let counts = (&mut src_rows, &mut tgt_rows);
                    let diffs =
                        settle(source, target, t, Some(&canon), diffs, opts.rechecks, catch_up, read_at, counts)
                            .await?;
                    differing += diffs.len() as u64;
                    let room = opts.max_differences.saturating_sub(report.differences.len());
                    report.differences.extend(diffs.into_iter().map(|(_, d)| d).take(room));
                    if by_keys && i + 1 == chunks.len() && opts.sample_percent.is_none() {
                        // Every chunk looked up: the rows the target holds beyond them (a sample
                        // covers only its chunks).
                        let room = opts.max_differences.saturating_sub(report.differences.len());
                        let (extra, listed) =
                            only_in_target(source, target, t, &canon, &chunks, tgt_rows, room, opts.rechecks, catch_up)
                                .await?;
                        tgt_rows += extra;
                        differing += extra;
                        report.differences.extend(listed);
                    }
                } else if canonical::sum_hash(a.iter().map(|r| r.values.as_slice()))
                    != canonical::sum_hash(b.iter().map(|r| r.values.as_slice()))
                {
                    hashes_equal = false;
                }
                continue;
            }
            // A keyless table can only be checked again as a whole; a keyed one row by row below.
            let chunk_rechecks = if keyed && opts.content { 0 } else { opts.rechecks };
            let (mut sc, mut tc, mut same) = (0, 0, false);
            let mut read_at = jiff::Timestamp::now();
            for attempt in 0..=chunk_rechecks {
                read_at = jiff::Timestamp::now();
                // Both servers hash at once.
                let (s, tg) = futures::join!(source.hash(t, range), target.hash(t, range));
                let ((a, sh), (b, th)) = (s?, tg?);
                (sc, tc, same) = (a, b, a == b && sh == th);
                if same || attempt == chunk_rechecks || !catch_up.wait_past(read_at).await {
                    break;
                }
            }
            src_rows += sc;
            tgt_rows += tc;
            rows_read += sc.max(tc);
            if let Some(limit) = opts.rows_per_second.filter(|l| *l > 0) {
                // Stay under the read rate: sleep until the rows read so far fit in the time spent.
                let due = std::time::Duration::from_secs_f64(rows_read as f64 / limit as f64);
                if let Some(wait) = due.checked_sub(started.elapsed()) {
                    tokio::time::sleep(wait).await;
                }
            }
            if same {
                continue;
            }
            if !(opts.content && keyed) {
                hashes_equal = false;
            }
            if opts.content && keyed {
                let (a, b) = futures::join!(source.rows(t, range), target.rows(t, range));
                let (a, b) = (a?, b?);
                // The chunk's counts are those of this read, which the rechecks follow.
                src_rows = src_rows - sc + a.len() as u64;
                tgt_rows = tgt_rows - tc + b.len() as u64;
                let diffs = diff_rows(source, target, t, a, b);
                // Online: a row that differs only because the job has not applied its latest
                // change yet agrees once the checkpoint has passed the read.
                let counts = (&mut src_rows, &mut tgt_rows);
                let diffs = settle(source, target, t, None, diffs, opts.rechecks, catch_up, read_at, counts).await?;
                if !diffs.is_empty() {
                    hashes_equal = false;
                }
                differing += diffs.len() as u64;
                let room = opts.max_differences.saturating_sub(report.differences.len());
                report.differences.extend(diffs.into_iter().map(|(_, d)| d).take(room));
            }
        }
        if let Some(p) = opts.sample_percent.filter(|_| chunks.len() > 1) {
            status.message = Some(format!(
                "sampled {compared} of {} chunks ({p}%): row counts and differences cover those chunks",
                chunks.len()
            ));
        }
        status.source_rows = Some(src_rows);
        status.target_rows = Some(tgt_rows);
        status.rows_result = Some(result_of(src_rows == tgt_rows));
        if opts.content {
            if keyed {
                status.different_rows = Some(differing);
                status.content_result = Some(result_of(differing == 0));
            } else {
                status.content_result = Some(result_of(hashes_equal));
                status.message = Some(
                    "no primary key: compared by row count and a whole-table hash; differing rows cannot be listed"
                        .into(),
                );
            }
        }
        report.tables.push(status);
    }
    Ok(report)
}

/// Compares `objects` of `source` and `target` with the engines their endpoints name.
pub async fn run(
    source: &Endpoint,
    target: &Endpoint,
    objects: &ObjectSelection,
    credentials: &Credentials,
    opts: Options,
) -> Result<Report> {
    run_online(source, target, objects, credentials, opts, &AtRest).await
}

/// [`run`] while a job may still be applying changes (see [`compare_online`]).
pub async fn run_online<C: CatchUp>(
    source: &Endpoint,
    target: &Endpoint,
    objects: &ObjectSelection,
    credentials: &Credentials,
    opts: Options,
    catch_up: &C,
) -> Result<Report> {
    match (source.engine, target.engine) {
        (Engine::Postgresql, Engine::Postgresql) => {
            let (mut s, mut t) = postgres::PgSide::pair(source, target, objects, credentials).await?;
            compare_online(&mut s, &mut t, opts, catch_up).await
        }
        (a, b) if a.is_mysql_family() && b.is_mysql_family() => {
            let (mut s, mut t) = mysql::MySide::pair(source, target, objects, credentials).await?;
            compare_online(&mut s, &mut t, opts, catch_up).await
        }
        (Engine::Postgresql, b) if b.is_mysql_family() => {
            let (mut s, defs) = postgres::PgSide::source(source, objects, credentials).await?;
            let mut t = mysql::MySide::target_for(target, credentials.login(crate::engine::Side::Target), defs).await?;
            compare_online(&mut s, &mut t, Options { canonical: true, ..opts }, catch_up).await
        }
        (a, Engine::Postgresql) if a.is_mysql_family() => {
            let (mut s, defs) = mysql::MySide::source(source, objects, credentials, opts.zero_dates).await?;
            let mut t =
                postgres::PgSide::target_for(target, credentials.login(crate::engine::Side::Target), defs).await?;
            compare_online(&mut s, &mut t, Options { canonical: true, ..opts }, catch_up).await
        }
        (a, b) => Err(EngineError::Unsupported(format!("comparing {a} with {b} is not supported yet"))),
    }
}

/// The definition of a source table as it is named on the target: the target's database,
/// table and column names, the selected columns only.
pub fn target_view(def: &TableDef) -> TableDef {
    let columns: Vec<_> = def
        .columns
        .iter()
        .filter(|c| c.selected)
        .map(|c| crate::engine::model::ColumnDef { name: c.target_name.clone(), ..c.clone() })
        .collect();
    let key =
        def.key.iter().filter_map(|&k| columns.iter().position(|c| c.name == def.columns[k].target_name)).collect();
    let renamed = def.columns.iter().any(|c| c.selected && c.name != c.target_name);
    TableDef {
        schema: def.target_schema.clone(),
        name: def.target_name.clone(),
        target_schema: def.target_schema.clone(),
        target_name: def.target_name.clone(),
        columns,
        key,
        // A filter names source columns: on the target it holds only without renames.
        filter: if renamed { None } else { def.filter.clone() },
        estimated_rows: def.estimated_rows,
    }
}

/// The source definition with only its selected columns (the ones compared).
pub fn source_view(def: &TableDef) -> TableDef {
    let columns: Vec<_> = def.columns.iter().filter(|c| c.selected).cloned().collect();
    let key = def.key.iter().filter_map(|&k| columns.iter().position(|c| c.name == def.columns[k].name)).collect();
    TableDef { columns, key, ..def.clone() }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::engine::model::ColumnDef;

    fn def() -> TableDef {
        let col = |n: &str, t: &str, sel: bool| ColumnDef {
            name: n.into(),
            target_name: t.into(),
            type_sql: "int".into(),
            nullable: true,
            selected: sel,
        };
        TableDef {
            schema: "shop".into(),
            name: "orders".into(),
            target_schema: "copy".into(),
            target_name: "orders2".into(),
            columns: vec![col("id", "id", true), col("secret", "secret", false), col("note", "remark", true)],
            key: vec![0],
            filter: Some("id > 1".into()),
            estimated_rows: 5,
        }
    }

    #[test]
    fn the_target_view_names_what_the_target_holds() {
        let t = target_view(&def());
        assert_eq!(t.display_name(), "copy.orders2");
        assert_eq!(t.columns.iter().map(|c| c.name.as_str()).collect::<Vec<_>>(), ["id", "remark"]);
        assert_eq!(t.key, vec![0]);
        assert_eq!(t.filter, None, "a filter on renamed columns is not applied on the target");
        let s = source_view(&def());
        assert_eq!(s.columns.len(), 2);
        assert_eq!(s.filter.as_deref(), Some("id > 1"));
    }
}
