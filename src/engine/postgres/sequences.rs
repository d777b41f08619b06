//! The sequences of the selected tables, carried from the source to the target.
//!
//! Which: the sequences selected columns own (`serial`/`bigserial`: `pg_depend` type `a`;
//! identity columns: type `i`) and those the defaults of selected columns call
//! (`nextval('x'::regclass)`: the default's `pg_depend` entry on a sequence). A sequence goes to
//! the schema its table's schema maps to; one only a default names goes to the schema its own
//! schema maps to (or keeps its schema).
//!
//! When: standalone and column-owned sequences are created on the target before the tables
//! (their defaults call them), `OWNED BY` is set once the tables exist; an identity column's
//! sequence is the one the target's identity column brings (found with
//! `pg_get_serial_sequence`). `nextval` is not logically decoded, so values are polled: copied
//! at the end of the full transfer, kept moving while the job streams (never backwards), and at
//! every stop at a checkpoint set to the source's value plus `spec.policy.sequences.margin` —
//! the cut-over step.
//!
//! This module reads the source catalog and writes sequences only; table structure is
//! `target.rs`'s, the change stream `stream.rs`'s.

use std::collections::{BTreeMap, HashMap};
use std::sync::Arc;
use std::time::Duration;

use jiff::Timestamp;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::Time;
use tokio::sync::watch;
use tokio_postgres::Client;

use super::catalog::PgTable;
use super::connect::{self, describe_pg_error};
use crate::api::{Endpoint, PrecheckItem, PrecheckResult, SequenceStep, SequenceValue, SequencesStatus, SyncJobSpec};
use crate::engine::error::{Context, EngineError, Result, Side};
use crate::engine::sql::{pg_ident, pg_qualified};
use crate::engine::{Credentials, Job, Tracker};

/// How often a streaming job moves the target's sequences to the source's values.
pub const SYNC_EVERY: Duration = Duration::from_secs(5);

/// Sequences read or set in one statement at most.
const PER_STATEMENT: usize = 200;

/// A sequence's options, as `pg_sequence` holds them.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct SeqOptions {
    /// Data type (`bigint`, `integer`, `smallint`).
    pub type_sql: String,
    /// `START`.
    pub start: i64,
    /// `INCREMENT`; negative for a descending sequence.
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

impl SeqOptions {
    /// `CREATE SEQUENCE IF NOT EXISTS name AS … [NO] CYCLE` for `qualified` (quoted already).
    fn create_sql(&self, qualified: &str) -> String {
        // The type comes from format_type() of a sequence's own type: one of three names.
        let type_sql = match self.type_sql.as_str() {
            t @ ("smallint" | "integer" | "bigint") => t,
            _ => "bigint",
        };
        format!(
            "CREATE SEQUENCE IF NOT EXISTS {qualified} AS {type_sql} INCREMENT BY {} MINVALUE {} MAXVALUE {} \
             START WITH {} CACHE {} {}CYCLE",
            self.increment,
            self.min,
            self.max,
            self.start,
            self.cache.max(1),
            if self.cycle { "" } else { "NO " }
        )
    }
}

/// The column a sequence belongs to, on the target.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Owner {
    /// Target schema of the table.
    pub schema: String,
    /// Target table.
    pub table: String,
    /// Target column.
    pub column: String,
}

/// How a sequence reaches the target.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Role {
    /// Only defaults name it: created before the tables, as is.
    Standalone,
    /// A selected column owns it (`serial`): created before the tables, `OWNED BY` after.
    Owned(Owner),
    /// An identity column's: the target column's identity sequence carries its value; without
    /// one (a target column that is no identity column) it is created after the tables and
    /// owned by the column.
    Identity(Owner),
}

/// What the source user may do with a sequence: read it (`SELECT`), only use it (`USAGE`:
/// `pg_sequence_last_value`), or neither.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Access {
    /// `SELECT last_value, is_called FROM seq`.
    Select,
    /// `pg_sequence_last_value(seq)`: the value once the sequence has handed one out.
    Usage,
    /// Not readable: the sequence is not carried (precheck item `source.sequencePrivilege`).
    None,
}

/// A source sequence the job carries.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Sequence {
    /// Its OID on the source.
    pub oid: u32,
    /// Source schema.
    pub schema: String,
    /// Source name.
    pub name: String,
    /// Target schema (for an identity sequence: unless the target column has its own).
    pub target_schema: String,
    /// Target name (likewise).
    pub target_name: String,
    /// Options on the source.
    pub options: SeqOptions,
    /// How it reaches the target.
    pub role: Role,
    /// Whether the source user can read its value.
    pub access: Access,
}

impl Sequence {
    /// `schema.name` on the source.
    pub fn display_name(&self) -> String {
        format!("{}.{}", self.schema, self.name)
    }

    fn target(&self) -> String {
        pg_qualified(&self.target_schema, &self.target_name)
    }
}

/// The sequences of a job's tables, by target name.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Sequences(pub Vec<Sequence>);

/// The selected tables' schemas and names, as arrays for `unnest`.
fn table_arrays(tables: &[PgTable]) -> (Vec<String>, Vec<String>) {
    tables.iter().map(|t| (t.def.schema.clone(), t.def.name.clone())).unzip()
}

/// Reads which sequences the selected tables use, with their options and whether the source
/// user can read them.
pub async fn resolve(src: &Client, tables: &[PgTable]) -> Result<Sequences> {
    let what = || "reading the sequences of the selected tables".to_owned();
    let (schemas, names) = table_arrays(tables);
    // (sequence oid, sequence schema, sequence name, table schema, table name, column, how).
    let rows = src
        .query(
            "SELECT * FROM (SELECT s.oid, sn.nspname, s.relname, tn.nspname, t.relname, a.attname, d.deptype::text \
             FROM pg_depend d JOIN pg_class s ON s.oid = d.objid AND s.relkind = 'S' \
             JOIN pg_namespace sn ON sn.oid = s.relnamespace \
             JOIN pg_class t ON t.oid = d.refobjid JOIN pg_namespace tn ON tn.oid = t.relnamespace \
             JOIN pg_attribute a ON a.attrelid = t.oid AND a.attnum = d.refobjsubid \
             WHERE d.classid = 'pg_class'::regclass AND d.refclassid = 'pg_class'::regclass AND d.deptype IN ('a', 'i') \
               AND (tn.nspname, t.relname) IN (SELECT x.s, x.t FROM unnest($1::text[], $2::text[]) AS x(s, t)) \
             UNION ALL \
             SELECT s.oid, sn.nspname, s.relname, tn.nspname, t.relname, a.attname, 'd' \
             FROM pg_attrdef ad JOIN pg_depend d ON d.classid = 'pg_attrdef'::regclass AND d.objid = ad.oid \
               AND d.refclassid = 'pg_class'::regclass \
             JOIN pg_class s ON s.oid = d.refobjid AND s.relkind = 'S' JOIN pg_namespace sn ON sn.oid = s.relnamespace \
             JOIN pg_class t ON t.oid = ad.adrelid JOIN pg_namespace tn ON tn.oid = t.relnamespace \
             JOIN pg_attribute a ON a.attrelid = ad.adrelid AND a.attnum = ad.adnum \
             WHERE (tn.nspname, t.relname) IN (SELECT x.s, x.t FROM unnest($1::text[], $2::text[]) AS x(s, t))) \
             AS u(seq, seq_schema, seq_name, table_schema, table_name, col, how) ORDER BY how = 'd', seq",
            &[&schemas, &names],
        )
        .await
        .ctx(Side::Source, what)?;
    // The schema each selected schema maps to; the first table of a schema decides.
    let mut schema_map: HashMap<&str, &str> = HashMap::new();
    for t in tables {
        schema_map.entry(t.def.schema.as_str()).or_insert(t.def.target_schema.as_str());
    }
    let mut found: BTreeMap<u32, (String, String, Role)> = BTreeMap::new();
    // Owners ('a', 'i') sort before defaults ('d'): a serial's default then finds it owned.
    for r in &rows {
        let (oid, schema, name): (u32, String, String) = (r.get(0), r.get(1), r.get(2));
        let (table_schema, table, column, how): (String, String, String, String) =
            (r.get(3), r.get(4), r.get(5), r.get(6));
        let Some(t) = tables.iter().find(|t| t.def.schema == table_schema && t.def.name == table) else { continue };
        let Some(col) = t.def.columns.iter().find(|c| c.name == column && c.selected) else { continue };
        if found.contains_key(&oid) {
            continue;
        }
        let owner = || Owner {
            schema: t.def.target_schema.clone(),
            table: t.def.target_name.clone(),
            column: col.target_name.clone(),
        };
        let role = match how.as_str() {
            "a" => Role::Owned(owner()),
            "i" => Role::Identity(owner()),
            _ => Role::Standalone,
        };
        found.insert(oid, (schema, name, role));
    }
    if found.is_empty() {
        return Ok(Sequences::default());
    }
    let oids: Vec<u32> = found.keys().copied().collect();
    let options = src
        .query(
            "SELECT seqrelid, format_type(seqtypid, NULL), seqstart, seqincrement, seqmin, seqmax, seqcache, seqcycle, \
                    has_sequence_privilege(seqrelid, 'SELECT'), has_sequence_privilege(seqrelid, 'USAGE') \
             FROM pg_sequence WHERE seqrelid = ANY($1::oid[])",
            &[&oids],
        )
        .await
        .ctx(Side::Source, what)?;
    let mut out = Vec::with_capacity(found.len());
    for r in &options {
        let oid: u32 = r.get(0);
        let Some((schema, name, role)) = found.remove(&oid) else { continue };
        let options = SeqOptions {
            type_sql: r.get(1),
            start: r.get(2),
            increment: r.get(3),
            min: r.get(4),
            max: r.get(5),
            cache: r.get(6),
            cycle: r.get(7),
        };
        let access = match (r.get::<_, bool>(8), r.get::<_, bool>(9)) {
            (true, _) => Access::Select,
            (false, true) => Access::Usage,
            (false, false) => Access::None,
        };
        // A column's sequence goes where its table goes (PostgreSQL keeps them in one schema).
        let target_schema = match &role {
            Role::Owned(o) | Role::Identity(o) => o.schema.clone(),
            Role::Standalone => schema_map.get(schema.as_str()).map_or_else(|| schema.clone(), |s| (*s).to_owned()),
        };
        out.push(Sequence { oid, target_schema, target_name: name.clone(), schema, name, options, role, access });
    }
    out.sort_by(|a, b| (&a.target_schema, &a.target_name).cmp(&(&b.target_schema, &b.target_name)));
    Ok(Sequences(out))
}

impl Sequences {
    /// Creates the standalone and column-owned sequences that are missing on the target, with
    /// the source's options, before the tables whose defaults call them.
    pub async fn create_before_tables(&self, tgt: &Client) -> Result<()> {
        let mut schemas: Vec<&str> =
            self.0.iter().filter(|s| !matches!(s.role, Role::Identity(_))).map(|s| s.target_schema.as_str()).collect();
        schemas.sort_unstable();
        schemas.dedup();
        for s in schemas {
            tgt.batch_execute(&format!("CREATE SCHEMA IF NOT EXISTS {}", pg_ident(s)))
                .await
                .ctx(Side::Target, || format!("creating schema {s}"))?;
        }
        for s in self.0.iter().filter(|s| !matches!(s.role, Role::Identity(_))) {
            tgt.batch_execute(&s.options.create_sql(&s.target()))
                .await
                .ctx(Side::Target, || format!("creating sequence {}.{}", s.target_schema, s.target_name))?;
        }
        Ok(())
    }

    /// Once the tables exist: `OWNED BY` for column-owned sequences. A sequence that cannot be
    /// owned (a target table of another owner) is carried all the same, with a warning: the
    /// ownership only ties its life to the column's.
    pub async fn own_after_tables(&self, tgt: &Client) -> Result<()> {
        for s in &self.0 {
            let Role::Owned(owner) = &s.role else { continue };
            let sql = format!(
                "ALTER SEQUENCE {} OWNED BY {}.{}",
                s.target(),
                pg_qualified(&owner.schema, &owner.table),
                pg_ident(&owner.column)
            );
            if let Err(e) = tgt.batch_execute(&sql).await {
                if tgt.is_closed() {
                    return Err(EngineError::query(
                        Side::Target,
                        "setting OWNED BY of sequences",
                        describe_pg_error(&e),
                    ));
                }
                tracing::warn!(
                    sequence = %format!("{}.{}", s.target_schema, s.target_name),
                    column = %format!("{}.{}.{}", owner.schema, owner.table, owner.column),
                    error = %describe_pg_error(&e),
                    "cannot make the sequence owned by its column on the target; its value is carried all the same"
                );
            }
        }
        Ok(())
    }
}

/// One sequence as the job carries it: where its value is read, and where it goes.
#[derive(Clone, Debug)]
struct Carried {
    /// The source sequence, quoted.
    source: String,
    /// Its OID on the source.
    oid: u32,
    /// How its value is read.
    access: Access,
    /// Its options on the source.
    options: SeqOptions,
    /// The target sequence, quoted, unless an identity column's own sequence takes its place.
    target: String,
    /// For an identity column: the target column, whose own sequence (if it has one) carries
    /// the value; looked up at each step, as the structure may give the column its identity
    /// after the load.
    identity: Option<Owner>,
}

/// A carried sequence's counterpart on the target, as a step finds it.
#[derive(Clone, Debug)]
struct Target {
    /// Quoted, qualified.
    quoted: String,
    /// `schema.name`.
    name: String,
    /// Its increment and bounds.
    increment: i64,
    min: i64,
    max: i64,
}

/// A sequence's state: `last_value` and `is_called`.
type State = (i64, bool);

/// The value the next `nextval` returns, in `i128` so no increment overflows.
fn next_of((value, called): State, increment: i64) -> i128 {
    if called { i128::from(value) + i128::from(increment) } else { i128::from(value) }
}

impl Target {
    /// Whether the source's state is ahead of the target's in the sequence's direction.
    fn ahead(&self, source: State, target: State) -> bool {
        let (s, t) = (next_of(source, self.increment), next_of(target, self.increment));
        if self.increment >= 0 { s > t } else { s < t }
    }

    /// The state the cut-over step sets: the source's value moved `margin` in the sequence's
    /// direction, within its bounds.
    fn with_margin(&self, (value, called): State, margin: u64) -> State {
        let moved = if self.increment >= 0 {
            i128::from(value) + i128::from(margin)
        } else {
            i128::from(value) - i128::from(margin)
        };
        (self.clamp(moved), called)
    }

    fn clamp(&self, value: i128) -> i64 {
        let bounded = value.clamp(i128::from(self.min), i128::from(self.max));
        if bounded != value {
            tracing::warn!(sequence = %self.name, "value beyond the target sequence's bounds: set to its bound");
        }
        i64::try_from(bounded).unwrap_or(if value < 0 { i64::MIN } else { i64::MAX })
    }
}

struct Inner {
    source: Endpoint,
    target: Endpoint,
    credentials: Credentials,
    margin: u64,
    carried: Vec<Carried>,
}

/// The job's sequences, ready to copy values: each step opens its own sessions (a job streams
/// for days; the run's own sessions may be long gone by its stop) and finds the target
/// sequences anew.
#[derive(Clone)]
pub struct Carrier(Arc<Inner>);

impl Carrier {
    /// The carrier of `sequences` for `job`. A sequence the source user cannot read is left out
    /// with a warning.
    pub fn new(job: &Job<'_>, sequences: &Sequences) -> Carrier {
        let mut carried = Vec::with_capacity(sequences.0.len());
        for s in &sequences.0 {
            if s.access == Access::None {
                tracing::warn!(
                    sequence = %s.display_name(),
                    "the source user may not read this sequence (precheck item source.sequencePrivilege): not carried"
                );
                continue;
            }
            carried.push(Carried {
                source: pg_qualified(&s.schema, &s.name),
                oid: s.oid,
                access: s.access,
                options: s.options.clone(),
                target: s.target(),
                identity: match &s.role {
                    Role::Identity(o) => Some(o.clone()),
                    _ => None,
                },
            });
        }
        let margin = job.spec.policy.sequences.margin;
        let (source, target) = (job.spec.source.clone(), job.spec.target.clone());
        Carrier(Arc::new(Inner { source, target, credentials: job.credentials.clone(), margin, carried }))
    }

    /// Whether the job carries no sequence.
    pub fn is_empty(&self) -> bool {
        self.0.carried.is_empty()
    }

    async fn sessions(&self) -> Result<(Client, Client)> {
        let i = &self.0;
        let src = connect::connect(&i.source, i.credentials.login(Side::Source), Side::Source).await?;
        let tgt = connect::connect(&i.target, i.credentials.login(Side::Target), Side::Target).await?;
        Ok((src, tgt))
    }

    /// Each carried sequence's counterpart on the target: an identity column's own sequence,
    /// else the sequence of the source's name in the mapped schema — which, for an identity
    /// column that is none on the target, is created (without `OWNED BY`, which would make
    /// the column's sequence ambiguous once the column becomes an identity column).
    async fn targets(&self, tgt: &Client) -> Result<Vec<Option<Target>>> {
        let carried = &self.0.carried;
        let found = find_targets(tgt, carried).await?;
        let mut created = false;
        for (c, f) in carried.iter().zip(&found) {
            if f.is_none() && c.identity.is_some() {
                tracing::info!(
                    sequence = %c.target,
                    "the target column is no identity column: its value goes to a sequence of the source's name"
                );
                tgt.batch_execute(&c.options.create_sql(&c.target))
                    .await
                    .ctx(Side::Target, || format!("creating sequence {}", c.target))?;
                created = true;
            }
        }
        if created { find_targets(tgt, carried).await } else { Ok(found) }
    }

    /// Moves every target sequence the source is ahead of to the source's value (never
    /// backwards), e.g. at the end of the full transfer.
    pub async fn sync(&self, tracker: &Tracker) -> Result<()> {
        if self.is_empty() {
            return Ok(());
        }
        let (src, tgt) = self.sessions().await?;
        let mut last = None;
        self.sync_on(&src, &tgt, tracker, &mut last).await
    }

    /// One forward-only pass on the given sessions; reports when the values differ from `last`.
    async fn sync_on(
        &self,
        src: &Client,
        tgt: &Client,
        tracker: &Tracker,
        last: &mut Option<Vec<SequenceValue>>,
    ) -> Result<()> {
        let targets = self.targets(tgt).await?;
        let sources = read_source(src, &self.0.carried).await?;
        let current = read_target(tgt, &targets).await?;
        let mut set = Vec::new();
        let mut now = current.clone();
        for (i, t) in targets.iter().enumerate() {
            let (Some(t), Some(s), Some(c)) = (t, sources[i], current[i]) else { continue };
            if t.ahead(s, c) {
                let state = (t.clamp(i128::from(s.0)), s.1);
                set.push((i, state));
                now[i] = Some(state);
            }
        }
        set_values(tgt, &targets, &set).await?;
        let values = status_items(&targets, &now);
        if last.as_ref() != Some(&values) {
            tracker.sequences(&status(self.0.carried.len(), SequenceStep::Sync, values.clone()));
            *last = Some(values);
        }
        Ok(())
    }

    /// The cut-over step: sets every target sequence to the source's value plus the margin
    /// (backwards too, when the target was ahead), and reports the values.
    pub async fn cut_over(&self, tracker: &Tracker) -> Result<()> {
        if self.is_empty() {
            return Ok(());
        }
        let (src, tgt) = self.sessions().await?;
        let targets = self.targets(&tgt).await?;
        let sources = read_source(&src, &self.0.carried).await?;
        let mut set = Vec::new();
        let mut now = vec![None; targets.len()];
        let mut missed = Vec::new();
        for (i, (t, s)) in targets.iter().zip(&sources).enumerate() {
            match (t, s) {
                (Some(t), Some(s)) => {
                    let state = t.with_margin(*s, self.0.margin);
                    set.push((i, state));
                    now[i] = Some(state);
                }
                _ => missed.push(self.0.carried[i].source.as_str()),
            }
        }
        set_values(&tgt, &targets, &set).await?;
        if !missed.is_empty() {
            tracing::warn!(sequences = %missed.join(", "), "cut-over: not set, missing or unreadable");
        }
        tracing::info!(sequences = set.len(), margin = self.0.margin, "cut-over: sequences set on the target");
        tracker.sequences(&status(self.0.carried.len(), SequenceStep::CutOver, status_items(&targets, &now)));
        Ok(())
    }

    /// Starts moving the target's sequences to the source's values every [`SYNC_EVERY`] (at
    /// once first), on sessions of its own, until [`SequenceWatch::stop`] or drop.
    pub fn watch(&self, tracker: &Tracker) -> SequenceWatch {
        let (stop_tx, mut stop) = watch::channel(false);
        if self.is_empty() {
            return SequenceWatch { stop: stop_tx, task: None };
        }
        let (carrier, tracker) = (self.clone(), tracker.clone());
        let task = tokio::spawn(async move {
            let mut last = None;
            let mut sessions: Option<(Client, Client)> = None;
            let mut warned = false;
            while !*stop.borrow() {
                if sessions.as_ref().is_none_or(|(s, t)| s.is_closed() || t.is_closed()) {
                    sessions = match carrier.sessions().await {
                        Ok(s) => Some(s),
                        Err(e) => {
                            tracing::warn!(error = %e, "no sessions to move the target's sequences");
                            None
                        }
                    };
                }
                if let Some((src, tgt)) = &sessions {
                    match carrier.sync_on(src, tgt, &tracker, &mut last).await {
                        Ok(()) => warned = false,
                        Err(e) if !std::mem::replace(&mut warned, true) => {
                            tracing::warn!(error = %e, "cannot move the target's sequences; trying again");
                        }
                        Err(_) => {}
                    }
                }
                tokio::select! {
                    _ = tokio::time::sleep(SYNC_EVERY) => {}
                    _ = stop.changed() => {}
                }
            }
        });
        SequenceWatch { stop: stop_tx, task: Some(task) }
    }
}

/// Looks up each carried sequence's counterpart on the target (see [`Carrier::targets`]).
async fn find_targets(tgt: &Client, carried: &[Carried]) -> Result<Vec<Option<Target>>> {
    let index: Vec<i32> = (0..carried.len()).map(|i| i32::try_from(i).unwrap_or(i32::MAX)).collect();
    let fixed: Vec<&str> = carried.iter().map(|c| c.target.as_str()).collect();
    let tables: Vec<Option<String>> =
        carried.iter().map(|c| c.identity.as_ref().map(|o| pg_qualified(&o.schema, &o.table))).collect();
    let columns: Vec<Option<&str>> = carried.iter().map(|c| c.identity.as_ref().map(|o| o.column.as_str())).collect();
    let rows = tgt
        .query(
            "SELECT x.i, n.nspname, c.relname, s.seqincrement, s.seqmin, s.seqmax \
             FROM unnest($1::int4[], $2::text[], $3::text[], $4::text[]) AS x(i, fixed, tbl, col) \
             JOIN pg_class c ON c.oid = coalesce(CASE WHEN x.tbl IS NOT NULL \
                 THEN pg_get_serial_sequence(x.tbl, x.col)::regclass END, to_regclass(x.fixed)) \
             JOIN pg_namespace n ON n.oid = c.relnamespace JOIN pg_sequence s ON s.seqrelid = c.oid",
            &[&index, &fixed, &tables, &columns],
        )
        .await
        .ctx(Side::Target, || "looking up the job's sequences".into())?;
    let mut out = vec![None; carried.len()];
    for r in rows {
        let (schema, name): (String, String) = (r.get(1), r.get(2));
        if let Some(slot) = usize::try_from(r.get::<_, i32>(0)).ok().and_then(|i| out.get_mut(i)) {
            *slot = Some(Target {
                quoted: pg_qualified(&schema, &name),
                name: format!("{schema}.{name}"),
                increment: r.get(3),
                min: r.get(4),
                max: r.get(5),
            });
        }
    }
    Ok(out)
}

/// The task that keeps the target's sequences moving while the job streams.
pub struct SequenceWatch {
    stop: watch::Sender<bool>,
    task: Option<tokio::task::JoinHandle<()>>,
}

impl SequenceWatch {
    /// Stops the task after its pass in progress, so that nothing it sets lands after a
    /// cut-over that follows.
    pub async fn stop(mut self) {
        let _ = self.stop.send(true);
        if let Some(task) = self.task.take() {
            let abort = task.abort_handle();
            if tokio::time::timeout(Duration::from_secs(30), task).await.is_err() {
                abort.abort();
            }
        }
    }
}

impl Drop for SequenceWatch {
    fn drop(&mut self) {
        if let Some(task) = &self.task {
            task.abort();
        }
    }
}

fn status(count: usize, step: SequenceStep, items: Vec<SequenceValue>) -> SequencesStatus {
    SequencesStatus {
        count: u32::try_from(count).unwrap_or(u32::MAX),
        step,
        set_at: Some(Time(Timestamp::now())),
        items,
    }
}

/// The first [`SequencesStatus::MAX_ITEMS`] target sequences (by name) whose value is known.
fn status_items(targets: &[Option<Target>], values: &[Option<State>]) -> Vec<SequenceValue> {
    let mut items: Vec<SequenceValue> = targets
        .iter()
        .zip(values)
        .filter_map(|(t, v)| Some(SequenceValue { name: t.as_ref()?.name.clone(), value: (*v)?.0 }))
        .collect();
    items.sort_by(|a, b| a.name.cmp(&b.name));
    items.truncate(SequencesStatus::MAX_ITEMS);
    items
}

/// Reads the states of `parts` (SQL selecting `(index, last_value, is_called)`), many in one
/// statement; when one fails, each alone, leaving out those that fail.
async fn read_states(client: &Client, side: Side, parts: &[(usize, String)], n: usize) -> Result<Vec<Option<State>>> {
    let mut out = vec![None; n];
    for chunk in parts.chunks(PER_STATEMENT) {
        let sql = chunk.iter().map(|(_, p)| p.as_str()).collect::<Vec<_>>().join(" UNION ALL ");
        let rows = match client.query(&sql, &[]).await {
            Ok(rows) => rows,
            Err(e) if client.is_closed() => {
                return Err(EngineError::query(side, "reading sequence values", describe_pg_error(&e)));
            }
            Err(_) => {
                let mut rows = Vec::new();
                for (i, part) in chunk {
                    match client.query(part.as_str(), &[]).await {
                        Ok(r) => rows.extend(r),
                        Err(e) => {
                            tracing::warn!(index = i, side = %side, error = %describe_pg_error(&e), "cannot read a sequence")
                        }
                    }
                }
                rows
            }
        };
        for r in rows {
            if let Some(slot) = usize::try_from(r.get::<_, i32>(0)).ok().and_then(|i| out.get_mut(i)) {
                *slot = Some((r.get(1), r.get(2)));
            }
        }
    }
    Ok(out)
}

/// The source's states. With `USAGE` only the value is `pg_sequence_last_value`, which is
/// known once the sequence has handed out a number; before, it stands at its start.
async fn read_source(src: &Client, carried: &[Carried]) -> Result<Vec<Option<State>>> {
    let parts: Vec<(usize, String)> = carried
        .iter()
        .enumerate()
        .map(|(i, c)| {
            let sql = match c.access {
                Access::Usage => format!(
                    "SELECT {i}::int4, coalesce(v, {start}::int8), v IS NOT NULL \
                     FROM pg_sequence_last_value({oid}::oid::regclass) AS v",
                    start = c.options.start,
                    oid = c.oid
                ),
                _ => format!("SELECT {i}::int4, last_value, is_called FROM {}", c.source),
            };
            (i, sql)
        })
        .collect();
    read_states(src, Side::Source, &parts, carried.len()).await
}

async fn read_target(tgt: &Client, targets: &[Option<Target>]) -> Result<Vec<Option<State>>> {
    let parts: Vec<(usize, String)> = targets
        .iter()
        .enumerate()
        .filter_map(|(i, t)| Some((i, format!("SELECT {i}::int4, last_value, is_called FROM {}", t.as_ref()?.quoted))))
        .collect();
    read_states(tgt, Side::Target, &parts, targets.len()).await
}

/// `setval` of each `(index, state)` on the target, in one statement per [`PER_STATEMENT`].
async fn set_values(tgt: &Client, targets: &[Option<Target>], set: &[(usize, State)]) -> Result<()> {
    let set: Vec<(&Target, State)> = set.iter().filter_map(|(i, s)| Some((targets.get(*i)?.as_ref()?, *s))).collect();
    for chunk in set.chunks(PER_STATEMENT) {
        let names: Vec<&str> = chunk.iter().map(|(t, _)| t.quoted.as_str()).collect();
        let values: Vec<i64> = chunk.iter().map(|(_, (v, _))| *v).collect();
        let called: Vec<bool> = chunk.iter().map(|(_, (_, c))| *c).collect();
        tgt.execute(
            "SELECT setval(x.name::regclass, x.value, x.called) \
             FROM unnest($1::text[], $2::int8[], $3::bool[]) AS x(name, value, called)",
            &[&names, &values, &called],
        )
        .await
        .ctx(Side::Target, || {
            let shown: Vec<&str> = chunk.iter().take(5).map(|(t, _)| t.name.as_str()).collect();
            format!("setting sequences ({}{})", shown.join(", "), if chunk.len() > 5 { ", …" } else { "" })
        })?;
    }
    Ok(())
}

/// `source.sequencePrivilege`: the source user must be able to read the value of every sequence
/// the job carries (`SELECT` on it, or `USAGE`), or that sequence's value stays behind and the
/// first insert on the target after the switch collides with a copied row.
pub async fn privilege_item(items: &mut Vec<PrecheckItem>, src: &Client, spec: &SyncJobSpec, tables: &[PgTable]) {
    const NAME: &str = "source.sequencePrivilege";
    if tables.is_empty() {
        return;
    }
    let sequences = match resolve(src, tables).await {
        Ok(s) => s,
        Err(e) => {
            tracing::warn!(error = %e, "cannot list the sequences of the selected tables");
            return;
        }
    };
    let unreadable: Vec<&Sequence> = sequences.0.iter().filter(|s| s.access == Access::None).collect();
    if unreadable.is_empty() {
        items.push(PrecheckItem {
            item: NAME.into(),
            result: PrecheckResult::Passed,
            reason: None,
            fix: None,
            skippable: false,
            skipped: false,
        });
        return;
    }
    let user = spec.source.user.clone().unwrap_or_default();
    let names: Vec<String> = unreadable.iter().map(|s| s.display_name()).collect();
    let quoted: Vec<String> = unreadable.iter().map(|s| pg_qualified(&s.schema, &s.name)).collect();
    items.push(PrecheckItem {
        item: NAME.into(),
        result: PrecheckResult::Failed,
        reason: Some(format!(
            "user {user:?} may not read sequences the selected tables use: {}; their values cannot be carried to the \
             target, where the first insert that draws a number from one would collide with a copied row",
            names.join(", ")
        )),
        fix: Some(format!(
            "GRANT SELECT ON SEQUENCE {} TO {}; or skip this item and set these sequences on the target by hand",
            quoted.join(", "),
            pg_ident(&user)
        )),
        skippable: true,
        skipped: false,
    });
}

#[cfg(test)]
mod tests {
    use super::*;

    fn target(increment: i64, min: i64, max: i64) -> Target {
        Target { quoted: "\"public\".\"s\"".into(), name: "public.s".into(), increment, min, max }
    }

    #[test]
    fn a_source_ahead_is_one_whose_next_number_comes_later_in_the_sequences_direction() {
        let up = target(1, 1, i64::MAX);
        assert!(up.ahead((5, true), (5, false)), "5 handed out is ahead of 5 next");
        assert!(!up.ahead((5, false), (5, false)));
        assert!(!up.ahead((4, true), (5, false)), "both hand out 5 next");
        assert!(!up.ahead((3, true), (10, true)), "never backwards");
        let down = target(-1, i64::MIN, -1);
        assert!(down.ahead((-10, true), (-3, true)));
        assert!(!down.ahead((-3, true), (-10, true)));
        let big = target(i64::MAX, 1, i64::MAX);
        assert!(big.ahead((i64::MAX, true), (i64::MAX, false)), "no overflow");
    }

    #[test]
    fn the_margin_moves_a_value_in_its_sequences_direction_within_its_bounds() {
        let up = target(1, 1, 1000);
        assert_eq!(up.with_margin((42, true), 0), (42, true));
        assert_eq!(up.with_margin((42, true), 100), (142, true));
        assert_eq!(up.with_margin((1, false), 100), (101, false), "a sequence never used starts past the margin");
        assert_eq!(up.with_margin((990, true), 100), (1000, true), "kept within MAXVALUE");
        let down = target(-1, -1000, -1);
        assert_eq!(down.with_margin((-42, true), 100), (-142, true));
        assert_eq!(down.with_margin((-990, true), u64::MAX), (-1000, true));
    }

    #[test]
    fn create_sql_carries_every_option() {
        let o = SeqOptions {
            type_sql: "integer".into(),
            start: 10,
            increment: -2,
            min: -100,
            max: 10,
            cache: 5,
            cycle: true,
        };
        assert_eq!(
            o.create_sql("\"s\".\"n\""),
            "CREATE SEQUENCE IF NOT EXISTS \"s\".\"n\" AS integer INCREMENT BY -2 MINVALUE -100 MAXVALUE 10 \
             START WITH 10 CACHE 5 CYCLE"
        );
        let o = SeqOptions { type_sql: "weird".into(), cycle: false, ..o };
        assert!(o.create_sql("x").contains(" AS bigint ") && o.create_sql("x").ends_with(" NO CYCLE"));
    }

    #[test]
    fn the_status_lists_at_most_a_hundred_sequences_with_a_known_value() {
        let many: Vec<Option<Target>> = (0..150).map(|_| Some(target(1, 1, 10))).collect();
        let mut values = vec![Some((3, true)); 150];
        values[0] = None;
        let items = status_items(&many, &values);
        assert_eq!(items.len(), SequencesStatus::MAX_ITEMS);
        assert_eq!(items[0].value, 3);
    }
}
