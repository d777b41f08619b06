//! Checks of a spec that the OpenAPI schema cannot express (or that must also hold when no API
//! server is in the loop, as with `ferry run`). Every violation is reported, each with the path
//! of the field at fault, so a user fixes them all in one edit.

use std::collections::{BTreeMap, BTreeSet};
use std::fmt;

use super::batch::{BatchJobSpec, merge_patch};
use super::common::{
    ColumnSelection, Endpoint, Engine, ObjectScope, ObjectSelection, SecretKeyRef, TableSelection, TlsConfig, TlsMode,
};
use super::compare::{CompareModeKind, CompareTaskSpec};
use super::syncjob::{MAX_SLOT_RETENTION_MINUTES, SpeedLimit, SyncJobSpec, TaskType};
use crate::engine::filter::{Dialect, RowFilter};
use crate::engine::pairs;

/// One violation: which field and why.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct FieldError {
    /// Path of the field, e.g. `spec.objects.databases[0].tables[1].filter`.
    pub path: String,
    /// Why the value is not accepted.
    pub message: String,
}

impl fmt::Display for FieldError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}: {}", self.path, self.message)
    }
}

/// Joins violations into one line for a condition message or an error.
pub fn describe(errors: &[FieldError]) -> String {
    errors.iter().map(ToString::to_string).collect::<Vec<_>>().join("; ")
}

/// A spec that can check itself.
pub trait Validate {
    /// Every violation in the spec; empty when it is valid.
    fn validate(&self) -> Vec<FieldError>;
}

/// Collects violations under a path prefix.
#[derive(Default)]
struct Errors(Vec<FieldError>);

impl Errors {
    fn push(&mut self, path: impl Into<String>, message: impl Into<String>) {
        self.0.push(FieldError { path: path.into(), message: message.into() });
    }
}

/// Longest identifier each engine accepts (PostgreSQL's NAMEDATALEN - 1; MySQL's 64).
fn max_identifier(engine: Engine) -> usize {
    match engine {
        Engine::Postgresql => 63,
        Engine::Mysql | Engine::Mariadb => 64,
    }
}

fn check_name(errs: &mut Errors, path: &str, name: &str, engine: Engine) {
    if name.trim().is_empty() {
        errs.push(path, "must not be empty");
    } else if name.len() > max_identifier(engine) {
        errs.push(path, format!("{} allows at most {} bytes in a name", engine, max_identifier(engine)));
    } else if name.contains('\0') {
        errs.push(path, "must not contain a NUL character");
    }
}

fn check_secret_ref(errs: &mut Errors, path: &str, r: &SecretKeyRef) {
    if r.name.trim().is_empty() {
        errs.push(format!("{path}.name"), "must name a Secret in the same namespace");
    }
    if r.key.trim().is_empty() {
        errs.push(format!("{path}.key"), "must name a key of the Secret");
    }
}

fn check_endpoint(errs: &mut Errors, path: &str, ep: &Endpoint) {
    if ep.host.trim().is_empty() {
        errs.push(format!("{path}.host"), "must not be empty");
    }
    if ep.port == 0 {
        errs.push(format!("{path}.port"), "must be between 1 and 65535");
    }
    match ep.engine {
        Engine::Postgresql => {
            if ep.database.as_deref().is_none_or(|d| d.trim().is_empty()) {
                errs.push(format!("{path}.database"), "PostgreSQL needs the database to connect to");
            }
        }
        Engine::Mysql | Engine::Mariadb => {
            if ep.database.as_deref().is_some_and(|d| d.trim().is_empty()) {
                errs.push(format!("{path}.database"), "must not be empty when set");
            }
        }
    }
    if ep.user.as_deref().is_none_or(|u| u.trim().is_empty()) {
        errs.push(format!("{path}.user"), format!("{} needs a user to log in as", ep.engine));
    }
    if let Some(r) = &ep.password_secret_ref {
        check_secret_ref(errs, &format!("{path}.passwordSecretRef"), r);
    }
    if let Some(tls) = &ep.tls {
        check_tls(errs, &format!("{path}.tls"), tls);
    }
}

fn check_tls(errs: &mut Errors, path: &str, tls: &TlsConfig) {
    if let Some(r) = &tls.ca_secret_ref {
        check_secret_ref(errs, &format!("{path}.caSecretRef"), r);
    }
    if let Some(r) = &tls.ca_config_map_ref {
        if r.name.trim().is_empty() {
            errs.push(format!("{path}.caConfigMapRef.name"), "must name a ConfigMap in the same namespace");
        }
        if r.key.trim().is_empty() {
            errs.push(format!("{path}.caConfigMapRef.key"), "must name a key of the ConfigMap");
        }
    }
    let has_ca = tls.ca_secret_ref.is_some() || tls.ca_config_map_ref.is_some();
    if tls.ca_secret_ref.is_some() && tls.ca_config_map_ref.is_some() {
        errs.push(format!("{path}.caConfigMapRef"), "set either caSecretRef or caConfigMapRef, not both");
    }
    if has_ca && !tls.mode.verifies() {
        errs.push(
            format!("{path}.mode"),
            format!(
                "a CA is given but mode {} never checks the server certificate against it: use verify-full \
                 (or verify-ca), or drop the CA",
                tls.mode
            ),
        );
    }
    if let Some(c) = &tls.client_cert_secret_ref {
        let p = format!("{path}.clientCertSecretRef");
        if c.name.trim().is_empty() {
            errs.push(format!("{p}.name"), "must name a Secret in the same namespace");
        }
        if c.cert_key.trim().is_empty() || c.key_key.trim().is_empty() {
            errs.push(p.clone(), "certKey and keyKey must name keys of the Secret");
        } else if c.cert_key == c.key_key {
            errs.push(p.clone(), "certKey and keyKey must be different keys");
        }
        if tls.mode == TlsMode::Disable {
            errs.push(format!("{path}.mode"), "a client certificate needs TLS: set mode to verify-full (or require)");
        }
    }
}

fn check_columns(errs: &mut Errors, path: &str, cols: &ColumnSelection, engine: Engine) {
    if !cols.include.is_empty() && !cols.exclude.is_empty() {
        errs.push(path, "set either include or exclude, not both");
    }
    for (kind, list) in [("include", &cols.include), ("exclude", &cols.exclude)] {
        let mut seen = BTreeSet::new();
        for (i, c) in list.iter().enumerate() {
            check_name(errs, &format!("{path}.{kind}[{i}]"), c, engine);
            if !seen.insert(c) {
                errs.push(format!("{path}.{kind}[{i}]"), format!("column {c:?} is listed twice"));
            }
        }
    }
    let mut targets = BTreeMap::new();
    for (from, to) in &cols.rename {
        let p = format!("{path}.rename.{from}");
        check_name(errs, &p, to, engine);
        if cols.exclude.contains(from) {
            errs.push(&p, format!("column {from:?} is excluded, so it cannot be renamed"));
        }
        if !cols.include.is_empty() && !cols.include.contains(from) {
            errs.push(&p, format!("column {from:?} is not in include, so it cannot be renamed"));
        }
        if let Some(other) = targets.insert(to, from) {
            errs.push(&p, format!("columns {other:?} and {from:?} are both renamed to {to:?}"));
        }
    }
}

/// Words a PostgreSQL type name may have after its first: those of `double precision`,
/// `character varying`, `bit varying`, `timestamp with time zone`, `time without time zone`.
/// Any other word could be a column option (`DEFAULT`, `NOT NULL`, `REFERENCES`, `COLLATE`…) in
/// the DDL the name goes into.
const TYPE_WORDS: [&str; 6] = ["precision", "varying", "with", "without", "time", "zone"];

/// Checks a PostgreSQL type name given in `columns.targetTypes`: words of letters, digits and
/// underscores (the first starting with a letter or underscore, optionally after its schema and
/// a dot; further words only [`TYPE_WORDS`]), an optional `(n)` or `(p,s)` modifier, optional
/// further words, an optional `[]`. Nothing else — no quotes, semicolons, dots, comments or other parentheses — because the
/// name is written into DDL and casts as it is.
pub fn check_pg_type(text: &str) -> Result<(), String> {
    const MAX: usize = 100;
    let t = text.trim();
    if t.is_empty() {
        return Err("must name a PostgreSQL type".into());
    }
    if t.len() > MAX {
        return Err(format!("a type name of at most {MAX} characters"));
    }
    let refuse = |why: &str| {
        Err(format!(
            "{text:?} is not a type name Ferry accepts ({why}): letters, digits, underscores and spaces, an optional \
             schema and dot, an optional (n) or (p,s) and an optional [], e.g. boolean, text, public.citext, \
             numeric(12,2), timestamptz, varchar(64), text[]"
        ))
    };
    let body = t.strip_suffix("[]").map_or(t, str::trim_end);
    let (head, modifier, tail) = match body.split_once('(') {
        None => (body, None, ""),
        Some((head, rest)) => match rest.split_once(')') {
            Some((m, tail)) => (head, Some(m), tail),
            None => return refuse("an unclosed parenthesis"),
        },
    };
    if let Some(m) = modifier {
        let parts: Vec<&str> = m.split(',').map(str::trim).collect();
        if parts.len() > 2
            || parts.iter().any(|p| p.is_empty() || p.len() > 8 || !p.bytes().all(|b| b.is_ascii_digit()))
        {
            return refuse("a modifier is one or two numbers, (n) or (p,s)");
        }
    }
    let words: Vec<&str> = head.split_whitespace().chain(tail.split_whitespace()).collect();
    let head_words = head.split_whitespace().count();
    if head_words == 0 {
        return refuse("no type name before the modifier");
    }
    let word = |w: &str| w.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'_');
    let starts = |w: &str| w.bytes().next().is_some_and(|b| b.is_ascii_alphabetic() || b == b'_');
    // The first word may name its schema: `public.citext`.
    let (schema, name) = words[0].split_once('.').map_or((None, words[0]), |(s, n)| (Some(s), n));
    if schema.is_some_and(|s| !word(s) || !starts(s)) || !word(name) || !words[1..].iter().all(|w| word(w)) {
        return refuse("only letters, digits, underscores and spaces outside one modifier, and one schema dot");
    }
    if !starts(name) {
        return refuse("a type name starts with a letter or an underscore");
    }
    if let Some(w) = words.iter().skip(1).find(|w| !TYPE_WORDS.contains(&w.to_ascii_lowercase().as_str())) {
        return refuse(&format!("{w:?} is not a word of a type name"));
    }
    Ok(())
}

/// Checks `columns.targetTypes` of every selected table: a MySQL/MariaDB → PostgreSQL field,
/// each type name by [`check_pg_type`], each column one the selection transfers.
/// Every table selection of `o` with its path under `spec.objects`.
fn selected_tables(o: &ObjectSelection) -> Vec<(String, &TableSelection)> {
    let mut tables = Vec::new();
    for (i, db) in o.databases.iter().enumerate() {
        for (j, t) in db.tables.iter().enumerate() {
            tables.push((format!("spec.objects.databases[{i}].tables[{j}]"), t));
        }
        for (k, s) in db.schemas.iter().enumerate() {
            for (j, t) in s.tables.iter().enumerate() {
                tables.push((format!("spec.objects.databases[{i}].schemas[{k}].tables[{j}]"), t));
            }
        }
    }
    tables
}

/// Refuses `columns.targetTypes` in a CompareTask's own selection: the comparison reads the
/// target's columns with the types they have.
fn refuse_target_types(errs: &mut Errors, o: &ObjectSelection) {
    for (path, t) in selected_tables(o) {
        if t.columns.as_ref().is_some_and(|c| !c.target_types.is_empty()) {
            errs.push(
                format!("{path}.columns.targetTypes"),
                "a SyncJob field: a CompareTask compares the target's columns with the types they have; remove it",
            );
        }
    }
}

fn check_target_types(errs: &mut Errors, o: &ObjectSelection, source: Engine, target: Engine) {
    let my_to_pg = source.is_mysql_family() && target == Engine::Postgresql;
    let tables = selected_tables(o);
    for (tp, t) in tables {
        let Some(cols) = t.columns.as_ref().filter(|c| !c.target_types.is_empty()) else { continue };
        let path = format!("{tp}.columns.targetTypes");
        if !my_to_pg {
            errs.push(
                path,
                format!(
                    "per-column target types apply to MySQL/MariaDB → PostgreSQL jobs only; remove them from this \
                     {source} → {target} job"
                ),
            );
            continue;
        }
        for (column, ty) in &cols.target_types {
            let p = format!("{path}.{column}");
            check_name(errs, &p, column, source);
            if let Err(e) = check_pg_type(ty) {
                errs.push(&p, e);
            }
            if cols.exclude.contains(column) {
                errs.push(&p, format!("column {column:?} is excluded, so it has no target type"));
            }
            if !cols.include.is_empty() && !cols.include.contains(column) {
                errs.push(&p, format!("column {column:?} is not in include, so it has no target type"));
            }
        }
    }
}

fn check_table(errs: &mut Errors, path: &str, t: &TableSelection, engine: Engine, parent_all: bool) {
    check_name(errs, &format!("{path}.name"), &t.name, engine);
    if let Some(m) = &t.mapped_name {
        check_name(errs, &format!("{path}.mappedName"), m, engine);
    }
    if let Some(f) = &t.filter {
        if parent_all {
            errs.push(
                format!("{path}.filter"),
                "a row filter cannot be set on a table of a database or schema selected with all: true; \
                 set all: false and list the tables",
            );
        } else if f.trim().is_empty() {
            errs.push(format!("{path}.filter"), "must not be empty when set");
        } else if let Err(e) = RowFilter::parse_in(Dialect::of(engine), f) {
            errs.push(
                format!("{path}.filter"),
                format!(
                    "not a row filter Ferry accepts for {engine}: {e}; write a boolean expression over the table's \
                     own columns with comparisons, IN, BETWEEN, LIKE, IS [NOT] NULL, AND/OR/NOT and literals"
                ),
            );
        }
    }
    if let Some(c) = &t.columns {
        if parent_all {
            errs.push(
                format!("{path}.columns"),
                "a column selection cannot be set on a table of a database or schema selected with all: true",
            );
        }
        check_columns(errs, &format!("{path}.columns"), c, engine);
    }
}

/// Checks the object selection of a job whose source is `engine`.
fn check_objects(errs: &mut Errors, path: &str, o: &ObjectSelection, engine: Engine) {
    if let Some(t) = &o.target_database {
        check_name(errs, &format!("{path}.targetDatabase"), t, engine);
    }
    match o.scope {
        ObjectScope::All if !o.databases.is_empty() => errs.push(
            format!("{path}.databases"),
            "scope all selects every database; leave databases empty or use scope database",
        ),
        ObjectScope::Database | ObjectScope::Table if o.databases.is_empty() => {
            errs.push(format!("{path}.databases"), "list at least one database")
        }
        _ => {}
    }
    let mut seen_db = BTreeSet::new();
    // Target coordinates (database, schema, table) already claimed, with the path that claimed them.
    let mut targets: BTreeMap<(String, String, String), String> = BTreeMap::new();
    let mut db_targets: BTreeMap<String, String> = BTreeMap::new();
    for (i, db) in o.databases.iter().enumerate() {
        let dp = format!("{path}.databases[{i}]");
        check_name(errs, &format!("{dp}.name"), &db.name, engine);
        if let Some(m) = &db.mapped_name {
            check_name(errs, &format!("{dp}.mappedName"), m, engine);
            if o.target_database.is_some() {
                errs.push(
                    format!("{dp}.mappedName"),
                    "cannot be combined with objects.targetDatabase, which already names the target database",
                );
            }
        }
        if !seen_db.insert(&db.name) {
            errs.push(format!("{dp}.name"), format!("database {:?} is listed twice", db.name));
        }
        let target_db = o.target_database.clone().or(db.mapped_name.clone()).unwrap_or(db.name.clone());
        if o.target_database.is_none()
            && let Some(other) = db_targets.insert(target_db.clone(), dp.clone())
        {
            errs.push(
                format!("{dp}.mappedName"),
                format!("{other} is already mapped onto target database {target_db:?}"),
            );
        }
        if o.scope == ObjectScope::Database && (!db.tables.is_empty() || !db.schemas.is_empty()) {
            errs.push(&dp, "scope database takes whole databases; use scope table to pick schemas or tables");
        }
        if o.scope == ObjectScope::Table && !db.all && db.tables.is_empty() && db.schemas.is_empty() {
            errs.push(&dp, "select tables (tables or schemas) or set all: true");
        }
        if !engine.has_schemas() && !db.schemas.is_empty() {
            errs.push(
                format!("{dp}.schemas"),
                format!("{engine} has no schemas; list tables directly under the database"),
            );
        }
        let mut claim = |errs: &mut Errors, tp: String, schema: &str, table: &TableSelection, target_schema: &str| {
            let target = table.mapped_name.clone().unwrap_or(table.name.clone());
            let key = (target_db.clone(), target_schema.to_owned(), target.clone());
            if let Some(other) = targets.insert(key, tp.clone()) {
                let qualified = if engine.has_schemas() {
                    format!("{target_db}.{target_schema}.{target}")
                } else {
                    format!("{target_db}.{target}")
                };
                errs.push(
                    format!("{tp}.mappedName"),
                    format!("{other} is already mapped onto target table {qualified:?}"),
                );
            }
            let _ = schema;
        };
        let default_schema = if engine.has_schemas() { "public" } else { "" };
        let mut seen_tables = BTreeSet::new();
        for (j, t) in db.tables.iter().enumerate() {
            let tp = format!("{dp}.tables[{j}]");
            check_table(errs, &tp, t, engine, db.all);
            if !seen_tables.insert((default_schema, t.name.as_str())) {
                errs.push(format!("{tp}.name"), format!("table {:?} is listed twice", t.name));
            }
            claim(errs, tp, default_schema, t, default_schema);
        }
        let mut seen_schemas = BTreeSet::new();
        let mut schema_targets: BTreeMap<String, String> = BTreeMap::new();
        for (k, s) in db.schemas.iter().enumerate() {
            let sp = format!("{dp}.schemas[{k}]");
            check_name(errs, &format!("{sp}.name"), &s.name, engine);
            if let Some(m) = &s.mapped_name {
                check_name(errs, &format!("{sp}.mappedName"), m, engine);
            }
            if !seen_schemas.insert(&s.name) {
                errs.push(format!("{sp}.name"), format!("schema {:?} is listed twice", s.name));
            }
            let target_schema = s.mapped_name.clone().unwrap_or(s.name.clone());
            if let Some(other) = schema_targets.insert(target_schema.clone(), sp.clone()) {
                errs.push(
                    format!("{sp}.mappedName"),
                    format!("{other} is already mapped onto target schema {target_schema:?}"),
                );
            }
            if o.scope == ObjectScope::Table && !s.all && s.tables.is_empty() {
                errs.push(&sp, "select tables or set all: true");
            }
            for (j, t) in s.tables.iter().enumerate() {
                let tp = format!("{sp}.tables[{j}]");
                check_table(errs, &tp, t, engine, db.all || s.all);
                if !seen_tables.insert((s.name.as_str(), t.name.as_str())) {
                    errs.push(
                        format!("{tp}.name"),
                        format!("table {:?} is listed twice in schema {:?}", t.name, s.name),
                    );
                }
                claim(errs, tp, &s.name, t, &target_schema);
            }
        }
    }
}

/// Parses `hh:mm` into the hour, checking the minutes are `want_minutes`.
fn parse_hour(text: &str, want_minutes: &str) -> Option<u32> {
    let (h, m) = text.split_once(':')?;
    let hour: u32 = h.parse().ok()?;
    (h.len() == 2 && hour < 24 && m == want_minutes).then_some(hour)
}

/// The set of UTC hours a window covers (wrapping past midnight when end < begin).
fn window_hours(begin: u32, end: u32) -> BTreeSet<u32> {
    if begin <= end { (begin..=end).collect() } else { (begin..24).chain(0..=end).collect() }
}

fn check_speed_limits(errs: &mut Errors, path: &str, limits: &[SpeedLimit]) {
    if limits.len() > 3 {
        errs.push(path, format!("at most 3 windows, got {}", limits.len()));
    }
    let mut covered: Vec<(usize, BTreeSet<u32>)> = Vec::new();
    for (i, l) in limits.iter().enumerate() {
        let p = format!("{path}[{i}]");
        let begin = parse_hour(&l.begin, "00");
        let end = parse_hour(&l.end, "59");
        if begin.is_none() {
            errs.push(format!("{p}.begin"), format!("{:?} is not a UTC time on the hour (hh:00)", l.begin));
        }
        if end.is_none() {
            errs.push(format!("{p}.end"), format!("{:?} is not a UTC time ending an hour (hh:59)", l.end));
        }
        if !(1..=9999).contains(&l.mb_per_second) {
            errs.push(format!("{p}.mbPerSecond"), "must be between 1 and 9999 MB/s");
        }
        if let (Some(b), Some(e)) = (begin, end) {
            let hours = window_hours(b, e);
            for (j, other) in &covered {
                if !hours.is_disjoint(other) {
                    errs.push(&p, format!("overlaps {path}[{j}]"));
                }
            }
            covered.push((i, hours));
        }
    }
}

impl Validate for SyncJobSpec {
    fn validate(&self) -> Vec<FieldError> {
        let mut errs = Errors::default();
        check_endpoint(&mut errs, "spec.source", &self.source);
        check_endpoint(&mut errs, "spec.target", &self.target);
        if let Err(e) = pairs::supported(self.source.engine, self.target.engine, self.task_type) {
            errs.push(e.field.path(), e.reason);
        }
        let my_to_pg = self.source.engine.is_mysql_family() && self.target.engine == Engine::Postgresql;
        if let Some(p) = self.policy.zero_dates
            && !my_to_pg
        {
            errs.push(
                "spec.policy.zeroDates",
                format!(
                    "zeroDates: {} applies to MySQL/MariaDB → PostgreSQL jobs only (PostgreSQL has no value for a \
                     MySQL zero date); remove it from this {} → {} job",
                    p.as_str(),
                    self.source.engine,
                    self.target.engine
                ),
            );
        }
        if self.source.host == self.target.host
            && self.source.port == self.target.port
            && self.source.database == self.target.database
            && self.objects.target_database.is_none()
        {
            errs.push("spec.target", "source and target are the same database; a job would write onto what it reads");
        }
        check_objects(&mut errs, "spec.objects", &self.objects, self.source.engine);
        check_target_types(&mut errs, &self.objects, self.source.engine, self.target.engine);
        if let Some(d) = &self.description
            && d.chars().count() > 256
        {
            errs.push("spec.description", "at most 256 characters");
        }
        if !(14..=100).contains(&self.expired_days) {
            errs.push("spec.expiredDays", format!("must be between 14 and 100 days, got {}", self.expired_days));
        }
        if !(1..=MAX_SLOT_RETENTION_MINUTES).contains(&self.slot_retention_minutes) {
            errs.push(
                "spec.slotRetentionMinutes",
                format!(
                    "must be between 1 and {MAX_SLOT_RETENTION_MINUTES} minutes (100 days), got {}",
                    self.slot_retention_minutes
                ),
            );
        }
        check_speed_limits(&mut errs, "spec.speedLimits", &self.speed_limits);
        let dml = &self.policy.dml_types;
        if dml.is_empty() {
            errs.push("spec.policy.dmlTypes", "list at least one of insert, update, delete");
        }
        if dml.iter().collect::<BTreeSet<_>>().len() != dml.len() {
            errs.push("spec.policy.dmlTypes", "a change kind is listed twice");
        }
        if let Some(a) = &self.alarm {
            for (name, v) in
                [("delaySeconds", a.delay_seconds), ("rpoSeconds", a.rpo_seconds), ("rtoSeconds", a.rto_seconds)]
            {
                if let Some(v) = v
                    && !(1..=86400).contains(&v)
                {
                    errs.push(format!("spec.alarm.{name}"), "must be between 1 and 86400 seconds");
                }
            }
        }
        if let Some(t) = &self.tuning {
            for (name, v, lo, hi) in [
                ("readParallelism", t.read_parallelism, 1, 64),
                ("writeParallelism", t.write_parallelism, 1, 64),
                ("batchRows", t.batch_rows, 100, 10_000_000),
                ("applyBatchTransactions", t.apply_batch_transactions, 1, 100_000),
            ] {
                if let Some(v) = v
                    && !(lo..=hi).contains(&v)
                {
                    errs.push(format!("spec.tuning.{name}"), format!("must be between {lo} and {hi}"));
                }
            }
        }
        if self.retry.limit > 100 {
            errs.push("spec.retry.limit", "must be between 0 and 100");
        }
        if !(1..=3600).contains(&self.retry.backoff_seconds) {
            errs.push("spec.retry.backoffSeconds", "must be between 1 and 3600");
        }
        if let Some(p) = &self.precheck {
            for (i, item) in p.skip_items.iter().enumerate() {
                if item.trim().is_empty() {
                    errs.push(format!("spec.precheck.skipItems[{i}]"), "must name a precheck item");
                }
            }
        }
        if let Some(p) = &self.start_position {
            if self.task_type != TaskType::IncrTrans {
                errs.push("spec.startPosition", "only an INCR_TRANS job starts from a given position");
            } else if !self.source.engine.is_mysql_family() {
                errs.push("spec.startPosition", "only MySQL and MariaDB sources can start from a given position");
            } else if let Err(e) = check_start_position(p) {
                errs.push("spec.startPosition", e);
            }
        }
        if let Some(w) = &self.worker
            && w.image.as_deref().is_some_and(|i| i.trim().is_empty())
        {
            errs.push("spec.worker.image", "must not be empty when set");
        }
        errs.0
    }
}

/// Checks a start position: `file:offset` or a MariaDB GTID position (`0-1-42,1-2-7`).
pub fn check_start_position(p: &str) -> Result<(), String> {
    if let Some((file, offset)) = p.rsplit_once(':') {
        let seq = file.rsplit_once('.').map(|(_, s)| s).unwrap_or("");
        if seq.is_empty() || !seq.bytes().all(|b| b.is_ascii_digit()) || offset.parse::<u32>().is_err() {
            return Err(format!("{p:?} is not a binary log file:offset such as mariadb-bin.000003:1234"));
        }
        return Ok(());
    }
    let gtid = |part: &str| {
        let nums: Vec<&str> = part.trim().split('-').collect();
        nums.len() == 3 && nums.iter().all(|n| !n.is_empty() && n.bytes().all(|b| b.is_ascii_digit()))
    };
    if p.trim().is_empty() || !p.split(',').all(gtid) {
        return Err(format!("{p:?} is neither a GTID position such as 0-1-42 nor a file:offset"));
    }
    Ok(())
}

/// Checks a five-field cron expression: minute, hour, day of month, month, day of week.
pub fn check_cron(expr: &str) -> Result<(), String> {
    super::schedule::Schedule::parse(expr).map(|_| ())
}

impl Validate for CompareTaskSpec {
    fn validate(&self) -> Vec<FieldError> {
        let mut errs = Errors::default();
        match (&self.sync_job_ref, &self.source, &self.target) {
            (Some(r), src, tgt) => {
                if r.name.trim().is_empty() {
                    errs.push("spec.syncJobRef.name", "must name a SyncJob");
                }
                if src.is_some() || tgt.is_some() {
                    errs.push("spec.syncJobRef", "give either syncJobRef or source and target, not both");
                }
            }
            (None, Some(src), Some(tgt)) => {
                check_endpoint(&mut errs, "spec.source", src);
                check_endpoint(&mut errs, "spec.target", tgt);
                match &self.objects {
                    None => errs.push("spec.objects", "required when no syncJobRef is given"),
                    Some(o) => {
                        check_objects(&mut errs, "spec.objects", o, src.engine);
                        refuse_target_types(&mut errs, o);
                    }
                }
            }
            (None, _, _) => errs.push("spec.syncJobRef", "give a syncJobRef, or both source and target"),
        }
        if let (Some(r), Some(o)) = (&self.sync_job_ref, &self.objects)
            && !r.name.is_empty()
            && o.databases.is_empty()
            && o.scope != ObjectScope::All
        {
            errs.push(
                "spec.objects.databases",
                "list the databases to compare, or leave objects unset to compare all of the job's",
            );
        }
        if let Some(m) = &self.mode {
            match (m.kind, m.percent) {
                (CompareModeKind::Sample, None) => {
                    errs.push("spec.mode.percent", "sample mode needs the percent of chunks to compare")
                }
                (CompareModeKind::Sample, Some(p)) if !(1..=100).contains(&p) => {
                    errs.push("spec.mode.percent", "must be between 1 and 100")
                }
                (CompareModeKind::Full, Some(_)) => errs.push("spec.mode.percent", "only applies to sample mode"),
                _ => {}
            }
        }
        if let Some(s) = &self.schedule
            && let Err(e) = check_cron(s)
        {
            errs.push("spec.schedule", e);
        }
        if let Some(t) = &self.throttle {
            if t.rows_per_second == Some(0) {
                errs.push("spec.throttle.rowsPerSecond", "must be at least 1");
            }
            if let Some(p) = t.parallelism
                && !(1..=64).contains(&p)
            {
                errs.push("spec.throttle.parallelism", "must be between 1 and 64");
            }
        }
        errs.0
    }
}

/// Whether `name` is a DNS-1123 label (what Kubernetes accepts as part of a resource name).
pub fn is_dns_label(name: &str) -> bool {
    let bytes = name.as_bytes();
    !bytes.is_empty()
        && bytes.len() <= 63
        && bytes.iter().all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || *b == b'-')
        && bytes[0] != b'-'
        && bytes[bytes.len() - 1] != b'-'
}

impl BatchJobSpec {
    /// Checks the batch and every item's merged spec, naming child violations under the item
    /// (`spec.jobs[2]: spec.source.port: …`). `batch_name` bounds the child names' length.
    pub fn validate_named(&self, batch_name: &str) -> Vec<FieldError> {
        let mut errs = Errors::default();
        if !self.template.is_object() {
            errs.push("spec.template", "must be an object holding (part of) a SyncJob spec");
        }
        if self.jobs.is_empty() {
            errs.push("spec.jobs", "list at least one job");
        }
        if self.max_concurrent == Some(0) {
            errs.push("spec.maxConcurrent", "must be at least 1");
        }
        let mut seen = BTreeSet::new();
        for (i, item) in self.jobs.iter().enumerate() {
            let p = format!("spec.jobs[{i}]");
            if !is_dns_label(&item.name) {
                errs.push(format!("{p}.name"), "must be lowercase letters, digits and '-', at most 63 characters");
            } else if !batch_name.is_empty() && !is_dns_label(&format!("{batch_name}-{}", item.name)) {
                errs.push(
                    format!("{p}.name"),
                    format!("child name {batch_name}-{} is longer than 63 characters", item.name),
                );
            }
            if !seen.insert(&item.name) {
                errs.push(format!("{p}.name"), format!("item {:?} is listed twice", item.name));
            }
            match self.child_spec(item) {
                Ok(spec) => {
                    for e in spec.validate() {
                        errs.push(&p, e.to_string());
                    }
                }
                Err(e) => errs.push(&p, e),
            }
        }
        errs.0
    }
}

impl Validate for BatchJobSpec {
    fn validate(&self) -> Vec<FieldError> {
        self.validate_named("")
    }
}

impl BatchJobSpec {
    /// The SyncJob spec of one item: the template with the item's overrides merged in.
    pub fn child_spec(&self, item: &super::batch::BatchItem) -> Result<SyncJobSpec, String> {
        let mut merged = self.template.clone();
        if let Some(o) = &item.overrides {
            merge_patch(&mut merged, o);
        }
        serde_json::from_value(merged)
            .map_err(|e| format!("template merged with overrides is not a valid SyncJob spec: {e}"))
    }
}

#[cfg(test)]
mod tests {
    use super::check_pg_type;

    #[test]
    fn type_names_are_taken_only_in_their_plain_form() {
        for ok in [
            "boolean",
            "text",
            "citext",
            "numeric(12,2)",
            "numeric(12, 2)",
            "varchar (64)",
            "double precision",
            "character varying(10)",
            "timestamp(3) with time zone",
            "timestamptz",
            "text[]",
            "int4 []",
            "_int4",
            "my_enum",
            "public.citext",
            "app.mood[]",
        ] {
            assert_eq!(check_pg_type(ok), Ok(()), "{ok}");
        }
        for bad in [
            "",
            "  ",
            "text; DROP TABLE x",
            "int) --",
            "text -- comment",
            "text DEFAULT now",
            "text NOT NULL",
            "integer REFERENCES x",
            "text COLLATE C",
            "\"text\"",
            "'text'",
            "a.b.c",
            ".citext",
            "public.",
            "public . citext",
            "1x.citext",
            "numeric(12,2,3)",
            "numeric(a)",
            "numeric(12",
            "numeric(12)(2)",
            "numeric((12))",
            "(12)",
            "1text",
            "text[][]",
            "text/**/",
            "int\u{0}",
            "varchar(64) varying x",
        ] {
            assert!(check_pg_type(bad).is_err(), "{bad:?} was taken");
        }
        assert!(check_pg_type(&"a".repeat(101)).is_err());
    }
}
