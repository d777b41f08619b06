//! PostgreSQL's reading of a row filter, for sources before 15 whose publications cannot
//! filter: the change stream carries every row and the decoder asks the filter.
//!
//! PostgreSQL types its expressions, so the subset is checked against the table's column types
//! when the filter is compiled, and every comparison is made the way the column's type makes
//! it. A literal takes the type of the column it is compared with, as an untyped literal does in
//! PostgreSQL (`amount > '10'` compares numbers, `day >= '2024-01-01'` dates).
//!
//! # Subset (beyond the shared one: comparisons, IN, BETWEEN, LIKE, IS [NOT] NULL/TRUE/FALSE/
//! UNKNOWN, AND/OR/NOT, parentheses, literals)
//!
//! - Names: unquoted ones fold to lower case, `"Quoted"` ones are taken as written; a name the
//!   table does not have is refused.
//! - Strings are standard-conforming (`'it''s'`; a backslash is a backslash); `ILIKE`;
//!   `IS [NOT] DISTINCT FROM`; `NOTNULL`; `--` and `/* */` comments (nested as PostgreSQL nests them).
//! - Column types and what may be done with them:
//!   - `smallint`, `integer`, `bigint`, `numeric`: compared exactly as decimals (NaN and
//!     ±Infinity ordered as PostgreSQL orders them);
//!   - `real`, `double precision`: compared as the binary floats they are (a `real` rounded to
//!     single precision first), NaN above everything;
//!   - `boolean`: as a condition or compared with `true`/`false`/`'t'`/`'yes'`…;
//!   - `text`, `character varying`, `name`: `=`, `<>`, `IN`, `LIKE`, `ILIKE`, case-sensitive;
//!     `character(n)` alike without trailing blanks, and without LIKE;
//!   - `date`, `timestamp` (without time zone): every comparison, against ISO literals
//!     (`'2024-01-31'`, `'2024-01-31 12:00:00.5'`), `'infinity'` and BC dates included;
//!   - `uuid`: every comparison, in any of its spellings;
//!   - any other type: only `IS [NOT] NULL`.
//!
//! Refused, beyond the shared refusals: `::` casts, `||`, `XOR`, `<=>`, `!`, pattern
//! operators (`~`, `SIMILAR TO`), chained comparisons, adjacent literals, dollar quoting,
//! ordering text (`<`, `>`, BETWEEN: the collation decides it), comparing unlike types, and
//! anything PostgreSQL itself would reject (`text_col = 5`, `flag = 1`, `'abc' > 1`).

use std::cmp::Ordering;
use std::fmt;

use super::{CmpOp, Expr, Number, Value, like_match, parse_number};

/// How a column's values compare.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(super) enum Class {
    /// smallint, integer, bigint, numeric.
    Exact,
    /// real.
    Float4,
    /// double precision.
    Float8,
    /// boolean.
    Bool,
    /// text, character varying, name.
    Text,
    /// character(n): trailing blanks do not count.
    Char,
    /// date.
    Date,
    /// timestamp without time zone.
    Timestamp,
    /// uuid.
    Uuid,
    /// Anything else, by its type name: only `IS [NOT] NULL`.
    Other(String),
}

impl Class {
    /// The class of a type as `format_type` writes it (`numeric(12,2)`, `integer[]`, …).
    pub(super) fn of(type_sql: &str) -> Class {
        if type_sql.ends_with(']') {
            return Class::Other(type_sql.to_owned());
        }
        // Without the modifier: `timestamp(3) without time zone` is a timestamp.
        let base: String = match (type_sql.find('('), type_sql.find(')')) {
            (Some(open), Some(close)) if open < close => format!("{}{}", &type_sql[..open], &type_sql[close + 1..]),
            _ => type_sql.to_owned(),
        };
        match base.trim() {
            "smallint" | "integer" | "bigint" | "numeric" => Class::Exact,
            "real" => Class::Float4,
            "double precision" => Class::Float8,
            "boolean" => Class::Bool,
            "text" | "character varying" | "name" => Class::Text,
            "character" | "bpchar" => Class::Char,
            "date" => Class::Date,
            "timestamp without time zone" => Class::Timestamp,
            "uuid" => Class::Uuid,
            _ => Class::Other(type_sql.to_owned()),
        }
    }

    fn numeric(&self) -> bool {
        matches!(self, Class::Exact | Class::Float4 | Class::Float8)
    }

    /// Whether `<`, `>` and BETWEEN are evaluated as PostgreSQL would.
    fn ordered(&self) -> bool {
        !matches!(self, Class::Text | Class::Char | Class::Other(_))
    }
}

impl fmt::Display for Class {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Class::Exact => "an integer or numeric",
            Class::Float4 => "real",
            Class::Float8 => "double precision",
            Class::Bool => "boolean",
            Class::Text => "text",
            Class::Char => "character(n)",
            Class::Date => "date",
            Class::Timestamp => "timestamp",
            Class::Uuid => "uuid",
            Class::Other(name) => name,
        })
    }
}

/// What a comparison asks of its operands.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Comparing {
    /// `=`, `<>`, `IN`, `IS [NOT] DISTINCT FROM`.
    Equality,
    /// `<`, `<=`, `>`, `>=`, `BETWEEN`.
    Order,
}

/// An operand as the checks see it.
enum Kind<'e> {
    Null,
    /// A condition, or TRUE/FALSE.
    Bool,
    Number(&'e str),
    Quoted(&'e str),
    Column(&'e str, &'e Class),
}

fn kind<'e>(e: &'e Expr, columns: &'e [String], classes: &'e [Class]) -> Kind<'e> {
    match e {
        Expr::Column(i) => match (columns.get(*i), classes.get(*i)) {
            (Some(name), Some(class)) => Kind::Column(name, class),
            _ => Kind::Null,
        },
        Expr::Null => Kind::Null,
        Expr::Number(n) => Kind::Number(n),
        Expr::Text(t) => Kind::Quoted(t),
        _ => Kind::Bool,
    }
}

/// Refuses what is not a boolean where one is needed (`WHERE amount` is an error in PostgreSQL).
pub(super) fn check_condition(e: &Expr, columns: &[String], classes: &[Class]) -> Result<(), String> {
    match kind(e, columns, classes) {
        Kind::Null | Kind::Bool | Kind::Column(_, Class::Bool) => Ok(()),
        Kind::Quoted(t) if parse_bool(t).is_some() => Ok(()),
        Kind::Quoted(t) => Err(format!("'{t}' is not a boolean; a condition is needed here")),
        Kind::Number(n) => Err(format!("the number {n} is not a condition")),
        Kind::Column(name, class) => Err(format!("column `{name}` is {class}, not boolean; compare it with something")),
    }
}

/// Refuses comparisons PostgreSQL would reject or that the stream cannot make as it would.
pub(super) fn check_comparison(
    op: Comparing,
    left: &Expr,
    right: &Expr,
    columns: &[String],
    classes: &[Class],
) -> Result<(), String> {
    let (l, r) = (kind(left, columns, classes), kind(right, columns, classes));
    let class = match (&l, &r) {
        (Kind::Column(a, ca), Kind::Column(b, cb)) => {
            if ca == cb || (ca.numeric() && cb.numeric()) {
                (*ca).clone()
            } else {
                return Err(format!("columns `{a}` ({ca}) and `{b}` ({cb}) cannot be compared"));
            }
        }
        (Kind::Column(name, class), other) | (other, Kind::Column(name, class)) => {
            coerce(other, name, class)?;
            (*class).clone()
        }
        (Kind::Null, _) | (_, Kind::Null) => return Ok(()),
        (Kind::Bool, Kind::Bool) => Class::Bool,
        (Kind::Bool, Kind::Quoted(t)) | (Kind::Quoted(t), Kind::Bool) => {
            parse_bool(t).ok_or_else(|| format!("'{t}' is not a boolean"))?;
            Class::Bool
        }
        (Kind::Bool, Kind::Number(_)) | (Kind::Number(_), Kind::Bool) => {
            return Err("a condition cannot be compared with a number".to_owned());
        }
        (Kind::Number(_), Kind::Number(_)) => Class::Exact,
        (Kind::Number(_), Kind::Quoted(t)) | (Kind::Quoted(t), Kind::Number(_)) => {
            pg_number(t).ok_or_else(|| format!("'{t}' is not a number"))?;
            Class::Exact
        }
        (Kind::Quoted(_), Kind::Quoted(_)) => Class::Text,
    };
    if let Class::Other(name) = &class {
        return Err(format!("values of type {name} cannot be compared in the stream; only IS [NOT] NULL"));
    }
    if op == Comparing::Order && !class.ordered() {
        return Err(format!(
            "ordering {class} (`<`, `>`, BETWEEN) depends on the collation, which the stream does not follow; use =, IN or LIKE"
        ));
    }
    Ok(())
}

/// Whether the literal (or condition) `value` can stand for a value of column `name`.
fn coerce(value: &Kind<'_>, name: &str, class: &Class) -> Result<(), String> {
    let refuse = |what: &str| Err(format!("column `{name}` is {class} and cannot be compared with {what}"));
    match (value, class) {
        (Kind::Null, _) => Ok(()),
        (_, Class::Other(type_name)) => {
            Err(format!("column `{name}` has type {type_name}, which the stream cannot compare; only IS [NOT] NULL"))
        }
        (Kind::Column(..), _) => Ok(()),
        (Kind::Bool, Class::Bool) => Ok(()),
        (Kind::Bool, _) => refuse("a condition or boolean"),
        (Kind::Number(_), c) if c.numeric() => Ok(()),
        (Kind::Number(n), _) => refuse(&format!("the number {n} (quote it if it is meant as {class})")),
        (Kind::Quoted(t), c) => {
            let ok = match c {
                Class::Exact | Class::Float4 | Class::Float8 => pg_number(t).is_some(),
                Class::Bool => parse_bool(t).is_some(),
                Class::Text | Class::Char => true,
                Class::Date => parse_datetime(t, true).is_some(),
                Class::Timestamp => parse_datetime(t, false).is_some(),
                Class::Uuid => uuid_key(t).is_some(),
                Class::Other(_) => false,
            };
            if ok {
                return Ok(());
            }
            let hint = match c {
                Class::Date => " (write dates as 'YYYY-MM-DD')",
                Class::Timestamp => " (write 'YYYY-MM-DD HH:MM:SS', without a time zone)",
                _ => "",
            };
            Err(format!("'{t}' is not a valid {class} for column `{name}`{hint}"))
        }
    }
}

/// LIKE and ILIKE take text.
pub(super) fn check_like(subject: &Expr, columns: &[String], classes: &[Class]) -> Result<(), String> {
    match kind(subject, columns, classes) {
        Kind::Null | Kind::Quoted(_) | Kind::Column(_, Class::Text) => Ok(()),
        Kind::Column(name, class) => {
            Err(format!("LIKE on column `{name}` ({class}) is not supported; only on text and character varying"))
        }
        Kind::Number(_) | Kind::Bool => Err("LIKE needs text on its left".to_owned()),
    }
}

// ---------------------------------------------------------------------------------------------
// Evaluation

/// An operand's value.
#[derive(Clone, Copy)]
enum PgVal<'v> {
    Null,
    Bool(bool),
    Number(&'v str),
    Quoted(&'v str),
    Column(&'v str, &'v Class),
}

impl PgVal<'_> {
    fn text(&self) -> Option<&str> {
        match self {
            PgVal::Null => None,
            PgVal::Bool(b) => Some(if *b { "true" } else { "false" }),
            PgVal::Number(t) | PgVal::Quoted(t) | PgVal::Column(t, _) => Some(t),
        }
    }
}

impl Expr {
    fn pg_value<'v>(&'v self, row: &[Value<'v>], classes: &'v [Class]) -> Result<PgVal<'v>, String> {
        Ok(match self {
            Expr::Column(i) => match (row.get(*i), classes.get(*i)) {
                (Some(Value::Text(t)), Some(class)) => PgVal::Column(t, class),
                _ => PgVal::Null,
            },
            Expr::Null => PgVal::Null,
            Expr::Bool(b) => PgVal::Bool(*b),
            Expr::Number(n) => PgVal::Number(n),
            Expr::Text(t) => PgVal::Quoted(t),
            _ => self.pg_truth(row, classes)?.map_or(PgVal::Null, PgVal::Bool),
        })
    }

    /// SQL three-valued truth, as PostgreSQL evaluates the (checked) filter; an error names a
    /// value the stream could not read as its column's type.
    pub(super) fn pg_truth<'v>(&'v self, row: &[Value<'v>], classes: &'v [Class]) -> Result<Option<bool>, String> {
        Ok(match self {
            Expr::Column(_) | Expr::Null | Expr::Bool(_) | Expr::Number(_) | Expr::Text(_) => {
                match self.pg_value(row, classes)? {
                    PgVal::Null => None,
                    PgVal::Bool(b) => Some(b),
                    other => {
                        let text = other.text().unwrap_or_default();
                        Some(parse_bool(text).ok_or_else(|| format!("{text:?} is not a boolean"))?)
                    }
                }
            }
            Expr::Not(e) => e.pg_truth(row, classes)?.map(|b| !b),
            Expr::And(items) => {
                let mut unknown = false;
                for e in items {
                    match e.pg_truth(row, classes)? {
                        Some(false) => return Ok(Some(false)),
                        None => unknown = true,
                        Some(true) => {}
                    }
                }
                if unknown { None } else { Some(true) }
            }
            Expr::Or(items) => {
                let mut unknown = false;
                for e in items {
                    match e.pg_truth(row, classes)? {
                        Some(true) => return Ok(Some(true)),
                        None => unknown = true,
                        Some(false) => {}
                    }
                }
                if unknown { None } else { Some(false) }
            }
            // Not PostgreSQL syntax; never parsed in this dialect.
            Expr::Xor(_) => return Err("XOR is not PostgreSQL".to_owned()),
            Expr::Compare(op, l, r) => {
                let (l, r) = (l.pg_value(row, classes)?, r.pg_value(row, classes)?);
                if *op == CmpOp::NullSafeEq {
                    return Ok(Some(match (l, r) {
                        (PgVal::Null, PgVal::Null) => true,
                        (PgVal::Null, _) | (_, PgVal::Null) => false,
                        _ => compare(l, r)? == Some(Ordering::Equal),
                    }));
                }
                compare(l, r)?.map(|ord| op.holds(ord))
            }
            Expr::IsNull { subject, negated } => {
                Some(matches!(subject.pg_value(row, classes)?, PgVal::Null) != *negated)
            }
            Expr::IsTruth { subject, want, negated } => Some((subject.pg_truth(row, classes)? == *want) != *negated),
            Expr::In { subject, list, negated } => {
                let s = subject.pg_value(row, classes)?;
                if matches!(s, PgVal::Null) {
                    return Ok(None);
                }
                let mut unknown = false;
                for item in list {
                    match compare(s, item.pg_value(row, classes)?)? {
                        Some(Ordering::Equal) => return Ok(Some(!*negated)),
                        None => unknown = true,
                        Some(_) => {}
                    }
                }
                if unknown { None } else { Some(*negated) }
            }
            Expr::Between { subject, low, high, negated } => {
                let s = subject.pg_value(row, classes)?;
                let above = compare(s, low.pg_value(row, classes)?)?.map(|o| o != Ordering::Less);
                let below = compare(s, high.pg_value(row, classes)?)?.map(|o| o != Ordering::Greater);
                let within = match (above, below) {
                    (Some(false), _) | (_, Some(false)) => Some(false),
                    (Some(true), Some(true)) => Some(true),
                    _ => None,
                };
                within.map(|b| b != *negated)
            }
            Expr::Like { subject, pattern, negated, fold, .. } => {
                let value = subject.pg_value(row, classes)?;
                match (value.text(), pattern) {
                    (Some(text), Some(pattern)) => Some(like_match(text, pattern, *fold) != *negated),
                    _ => None,
                }
            }
        })
    }
}

/// Compares two values as the class of the comparison decides; `None` when either is NULL.
fn compare(l: PgVal<'_>, r: PgVal<'_>) -> Result<Option<Ordering>, String> {
    let (Some(lt), Some(rt)) = (l.text(), r.text()) else { return Ok(None) };
    let class = match (l, r) {
        (PgVal::Column(_, a), PgVal::Column(_, b)) if a != b => {
            if matches!(a, Class::Float4 | Class::Float8) || matches!(b, Class::Float4 | Class::Float8) {
                Class::Float8
            } else {
                Class::Exact
            }
        }
        (PgVal::Column(_, c), _) | (_, PgVal::Column(_, c)) => c.clone(),
        (PgVal::Bool(_), _) | (_, PgVal::Bool(_)) => Class::Bool,
        (PgVal::Number(_), _) | (_, PgVal::Number(_)) => Class::Exact,
        _ => Class::Text,
    };
    let bad = |text: &str| format!("{text:?} is not a valid {class}");
    let ord = match &class {
        Class::Exact => {
            let a = pg_number(lt).ok_or_else(|| bad(lt))?;
            let b = pg_number(rt).ok_or_else(|| bad(rt))?;
            a.cmp(&b)
        }
        Class::Float4 | Class::Float8 => {
            let a = float(l).ok_or_else(|| bad(lt))?;
            let b = float(r).ok_or_else(|| bad(rt))?;
            float_cmp(a, b)
        }
        Class::Bool => {
            let a = parse_bool(lt).ok_or_else(|| bad(lt))?;
            let b = parse_bool(rt).ok_or_else(|| bad(rt))?;
            a.cmp(&b)
        }
        Class::Text => lt.cmp(rt),
        Class::Char => lt.trim_end_matches(' ').cmp(rt.trim_end_matches(' ')),
        Class::Date | Class::Timestamp => {
            let a = parse_datetime(lt, false).ok_or_else(|| bad(lt))?;
            let b = parse_datetime(rt, false).ok_or_else(|| bad(rt))?;
            a.cmp(&b)
        }
        Class::Uuid => {
            let a = uuid_key(lt).ok_or_else(|| bad(lt))?;
            let b = uuid_key(rt).ok_or_else(|| bad(rt))?;
            a.cmp(&b)
        }
        Class::Other(name) => return Err(format!("values of type {name} cannot be compared")),
    };
    Ok(Some(ord))
}

/// PostgreSQL's boolean input: `t`/`true`/`yes`/`on`/`1` and their negations, prefixes of the
/// words, any case, surrounding blanks ignored.
fn parse_bool(text: &str) -> Option<bool> {
    let v = text.trim().to_ascii_lowercase();
    let prefix_of = |word: &str| !v.is_empty() && word.starts_with(v.as_str());
    if prefix_of("true") || prefix_of("yes") || v == "on" || v == "1" {
        Some(true)
    } else if prefix_of("false") || prefix_of("no") || v == "of" || v == "off" || v == "0" {
        Some(false)
    } else {
        None
    }
}

/// A numeric value in PostgreSQL's order: -Infinity, the numbers, Infinity, NaN.
#[derive(Debug, Clone, Copy)]
enum PgNumber<'t> {
    NegInfinity,
    Finite(Number<'t>),
    Infinity,
    NaN,
}

impl PgNumber<'_> {
    fn rank(&self) -> u8 {
        match self {
            PgNumber::NegInfinity => 0,
            PgNumber::Finite(_) => 1,
            PgNumber::Infinity => 2,
            PgNumber::NaN => 3,
        }
    }

    fn cmp(&self, other: &PgNumber<'_>) -> Ordering {
        match (self, other) {
            (PgNumber::Finite(a), PgNumber::Finite(b)) => a.compare(b),
            _ => self.rank().cmp(&other.rank()),
        }
    }
}

fn pg_number(text: &str) -> Option<PgNumber<'_>> {
    let t = text.trim();
    let lower = t.to_ascii_lowercase();
    Some(match lower.as_str() {
        "nan" => PgNumber::NaN,
        "infinity" | "+infinity" | "inf" | "+inf" => PgNumber::Infinity,
        "-infinity" | "-inf" => PgNumber::NegInfinity,
        _ => PgNumber::Finite(parse_number(t)?),
    })
}

/// A float operand: a `real` column's value at single precision, everything else at double,
/// as PostgreSQL compares `real` with a numeric literal (both as double precision).
fn float(v: PgVal<'_>) -> Option<f64> {
    let text = v.text()?.trim();
    let lower = text.to_ascii_lowercase();
    let special = match lower.as_str() {
        "nan" => Some(f64::NAN),
        "infinity" | "+infinity" | "inf" | "+inf" => Some(f64::INFINITY),
        "-infinity" | "-inf" => Some(f64::NEG_INFINITY),
        _ => None,
    };
    if let Some(f) = special {
        return Some(f);
    }
    parse_number(text)?;
    match v {
        PgVal::Column(_, Class::Float4) => text.parse::<f32>().ok().map(f64::from),
        _ => text.parse::<f64>().ok(),
    }
}

/// Floats as PostgreSQL orders them: NaN equals NaN and is above everything.
fn float_cmp(a: f64, b: f64) -> Ordering {
    match (a.is_nan(), b.is_nan()) {
        (true, true) => Ordering::Equal,
        (true, false) => Ordering::Greater,
        (false, true) => Ordering::Less,
        (false, false) => a.partial_cmp(&b).unwrap_or(Ordering::Equal),
    }
}

/// A date or timestamp in order.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
enum Moment {
    NegInfinity,
    /// Astronomical year (1 BC is 0), month, day, microseconds into the day.
    At(i64, u8, u8, u64),
    Infinity,
}

/// Reads ISO dates and timestamps as PostgreSQL prints them with `DateStyle` ISO
/// (`2024-01-31`, `2024-01-31 12:00:00.5`, `0044-03-15 BC`, `infinity`), and literals in the
/// same form (a `T` may separate date and time; seconds are optional). `date_only` refuses a
/// time. No time zones.
fn parse_datetime(text: &str, date_only: bool) -> Option<Moment> {
    let t = text.trim();
    match t.to_ascii_lowercase().as_str() {
        "infinity" | "+infinity" => return Some(Moment::Infinity),
        "-infinity" => return Some(Moment::NegInfinity),
        _ => {}
    }
    let (t, bc) = match t.len().checked_sub(3).and_then(|at| t.get(at..)) {
        Some(end) if end.eq_ignore_ascii_case(" bc") => (&t[..t.len() - 3], true),
        _ => (t, false),
    };
    let (date, time) = match t.find([' ', 'T']) {
        Some(at) => (&t[..at], Some(&t[at + 1..])),
        None => (t, None),
    };
    if date_only && time.is_some() {
        return None;
    }
    let digits = |s: &str, max: usize| -> Option<u64> {
        (!s.is_empty() && s.len() <= max && s.bytes().all(|b| b.is_ascii_digit())).then(|| s.parse().ok()).flatten()
    };
    let mut parts = date.split('-');
    let year = digits(parts.next()?, 7)?;
    let month = digits(parts.next()?, 2)?;
    let day = digits(parts.next()?, 2)?;
    if parts.next().is_some() || year == 0 || !(1..=12).contains(&month) || !(1..=31).contains(&day) {
        return None;
    }
    let mut micros = 0u64;
    if let Some(time) = time {
        let (hms, fraction) = match time.split_once('.') {
            Some((hms, fraction)) => (hms, Some(fraction)),
            None => (time, None),
        };
        let mut parts = hms.split(':');
        let hour = digits(parts.next()?, 2)?;
        let minute = digits(parts.next()?, 2)?;
        let second = match parts.next() {
            Some(s) => digits(s, 2)?,
            None if fraction.is_none() => 0,
            None => return None,
        };
        if parts.next().is_some() || hour > 23 || minute > 59 || second > 59 {
            return None;
        }
        let fraction = match fraction {
            Some(f) => digits(f, 6)? * 10u64.pow(6 - f.len() as u32),
            None => 0,
        };
        micros = ((hour * 60 + minute) * 60 + second) * 1_000_000 + fraction;
    }
    let year = i64::try_from(year).ok()?;
    let year = if bc { 1 - year } else { year };
    Some(Moment::At(year, month as u8, day as u8, micros))
}

/// A UUID as its 32 lower-case hex digits, however it is spelt (braces, hyphens, case).
fn uuid_key(text: &str) -> Option<String> {
    let t = text.trim();
    let t = t.strip_prefix('{').and_then(|t| t.strip_suffix('}')).unwrap_or(t);
    let hex: String = t.chars().filter(|c| *c != '-').map(|c| c.to_ascii_lowercase()).collect();
    (hex.len() == 32 && hex.bytes().all(|b| b.is_ascii_hexdigit())).then_some(hex)
}

#[cfg(test)]
mod tests {
    use super::super::{RowFilter, UnsupportedFilter};

    const TABLE: &[(&str, &str)] = &[
        ("id", "bigint"),
        ("qty", "integer"),
        ("amount", "numeric(12,2)"),
        ("ratio", "double precision"),
        ("f4", "real"),
        ("paid", "boolean"),
        ("region", "text"),
        ("code", "character varying(10)"),
        ("tag", "character(5)"),
        ("day", "date"),
        ("at", "timestamp(3) without time zone"),
        ("at_tz", "timestamp with time zone"),
        ("ref", "uuid"),
        ("doc", "jsonb"),
        ("Mixed", "text"),
    ];

    fn filter(sql: &str) -> RowFilter {
        RowFilter::parse_postgres(sql, TABLE).unwrap_or_else(|e| panic!("{sql:?} should parse: {e}"))
    }

    fn keeps(sql: &str, row: &[(&str, Option<&str>)]) -> bool {
        let f = filter(sql);
        f.eval_postgres(|name| {
            let value = row.iter().find(|(n, _)| *n == name).map(|(_, v)| *v).unwrap_or(None);
            Some(value.map_or(super::Value::Null, super::Value::Text))
        })
        .unwrap_or_else(|e| panic!("{sql:?}: {e}"))
    }

    fn refused(sql: &str) -> UnsupportedFilter {
        match RowFilter::parse_postgres(sql, TABLE) {
            Ok(f) => panic!("{sql:?} should be refused, parsed as {f:?}"),
            Err(e) => e,
        }
    }

    fn assert_refused(sql: &str, reason_part: &str) {
        let e = refused(sql);
        assert!(e.reason().to_lowercase().contains(&reason_part.to_lowercase()), "{sql:?}: {e} lacks {reason_part:?}");
    }

    #[test]
    fn numbers_compare_exactly_whatever_the_literal_looks_like() {
        let row = [("amount", Some("100.00")), ("qty", Some("7"))];
        assert!(keeps("amount >= 100", &row));
        assert!(keeps("amount = '100'", &row), "a quoted literal takes the column's type");
        assert!(!keeps("amount > 100.001", &row));
        assert!(keeps("qty BETWEEN 1 AND 7 AND qty IN (3, 7)", &row));
        assert!(keeps("amount < 'Infinity'", &row));
        assert!(keeps("amount > 1", &[("amount", Some("NaN"))]), "NaN is above every number");
        assert!(keeps("amount = 'NaN'", &[("amount", Some("NaN"))]));
        assert!(!keeps("amount > 1", &[("amount", Some("-Infinity"))]));
    }

    #[test]
    fn floats_compare_as_binary_floats() {
        // real '0.1' is 0.100000001490116… as a double, above the double 0.1.
        assert!(keeps("f4 > 0.1", &[("f4", Some("0.1"))]));
        assert!(!keeps("f4 = 0.1", &[("f4", Some("0.1"))]));
        assert!(keeps("ratio = 0.1", &[("ratio", Some("0.1"))]));
        assert!(keeps("ratio > 1e20", &[("ratio", Some("1e+21"))]));
        assert!(keeps("ratio > 5", &[("ratio", Some("NaN"))]));
    }

    #[test]
    fn text_compares_with_case_and_blanks_except_character_n_trailing_blanks() {
        let row = [("region", Some("EU ")), ("tag", Some("ab   "))];
        assert!(!keeps("region = 'EU'", &row), "text keeps its trailing blank");
        assert!(keeps("region = 'EU '", &row));
        assert!(!keeps("region = 'eu '", &row), "case-sensitive");
        assert!(keeps("tag = 'ab'", &row), "character(n) ignores trailing blanks");
        assert!(keeps("region LIKE 'E%' AND region ILIKE 'eu%' AND region NOT LIKE 'e%'", &row));
        assert!(keeps(r"region LIKE 'EU\ '", &row), "backslash is LIKE's escape");
        assert!(keeps("region IN ('US', 'EU ')", &row));
    }

    #[test]
    fn strings_are_standard_conforming() {
        assert!(keeps(r"region = 'a\b'", &[("region", Some(r"a\b"))]));
        assert!(keeps("region = 'it''s'", &[("region", Some("it's"))]));
    }

    #[test]
    fn booleans_read_every_spelling() {
        assert!(keeps("paid", &[("paid", Some("t"))]));
        assert!(!keeps("paid", &[("paid", Some("f"))]));
        assert!(keeps("NOT paid AND paid = 'no' AND paid IS FALSE", &[("paid", Some("f"))]));
        assert!(keeps("paid = 'yes' AND paid = TRUE AND paid = 'on'", &[("paid", Some("t"))]));
        assert!(!keeps("paid", &[("paid", None)]));
    }

    #[test]
    fn dates_and_timestamps_compare_as_moments() {
        let row = [("day", Some("2024-02-29")), ("at", Some("2024-01-01 00:00:00.5"))];
        assert!(keeps("day >= '2024-01-01' AND day < '2024-03-01'", &row));
        assert!(keeps("at > '2024-01-01' AND at < '2024-01-01 00:00:01'", &row));
        assert!(keeps("at = '2024-01-01T00:00:00.500'", &row));
        assert!(keeps("day > '0044-03-15 BC'", &[("day", Some("0001-01-01"))]));
        assert!(!keeps("day > '0044-03-15'", &[("day", Some("0100-01-01 BC"))]));
        assert!(keeps("day > '9999-12-31'", &[("day", Some("infinity"))]));
        assert!(keeps("at BETWEEN '2023-12-31' AND '2024-01-02'", &row));
    }

    #[test]
    fn uuids_compare_in_any_spelling() {
        let row = [("ref", Some("a0eebc99-9c0b-4ef8-bb6d-6bb9bd380a11"))];
        assert!(keeps("ref = '{A0EEBC99-9C0B-4EF8-BB6D-6BB9BD380A11}'", &row));
        assert!(keeps("ref = 'a0eebc999c0b4ef8bb6d6bb9bd380a11'", &row));
    }

    #[test]
    fn null_handling_follows_sql() {
        let row = [("region", None), ("qty", Some("1"))];
        assert!(!keeps("region = 'x'", &row));
        assert!(!keeps("region <> 'x'", &row));
        assert!(keeps("region IS NULL AND qty NOTNULL", &row));
        assert_refused("region ISNULL", "found `ISNULL`");
        assert!(keeps("region IS DISTINCT FROM 'x'", &row));
        assert!(keeps("region IS NOT DISTINCT FROM NULL", &row));
        assert!(keeps("qty IN (1, NULL)", &row));
        assert!(!keeps("qty NOT IN (2, NULL)", &row), "unknown, so not kept");
        assert!(keeps("doc IS NULL", &[("doc", None)]), "any type may be tested for NULL");
    }

    #[test]
    fn names_fold_to_lower_case_unless_quoted() {
        assert!(keeps("QTY = 1 AND \"Mixed\" = 'm'", &[("qty", Some("1")), ("Mixed", Some("m"))]));
        assert_refused("t.qty = 1", "qualified name `t.qty`");
        assert_refused("mixed = 'm'", "column `mixed` does not exist");
        assert_refused("\"QTY\" = 1", "column `QTY` does not exist");
    }

    #[test]
    fn comments_are_skipped() {
        assert!(keeps("qty = 1 -- the first\n AND /* really */ qty > 0", &[("qty", Some("1"))]));
        assert!(keeps("qty = 1 --no space needed", &[("qty", Some("1"))]));
    }

    #[test]
    fn what_postgresql_would_reject_is_refused() {
        assert_refused("region = 5", "cannot be compared with the number 5");
        assert_refused("qty = 'abc'", "'abc' is not a valid");
        assert_refused("paid = 1", "cannot be compared with the number 1");
        assert_refused("qty", "not boolean");
        assert_refused("qty = 1 AND amount", "not boolean");
        assert_refused("region = code AND qty = region", "cannot be compared");
        assert_refused("day = '2024-01-01 10:00'", "not a valid date");
        assert_refused("at > '2024-01-01 10:00+02'", "without a time zone");
        assert_refused("qty LIKE '1%'", "LIKE on column `qty`");
        assert_refused("1 = 1 = 1", "do not chain");
    }

    #[test]
    fn what_the_stream_cannot_follow_is_refused() {
        assert_refused("region > 'm'", "collation");
        assert_refused("region BETWEEN 'a' AND 'm'", "collation");
        assert_refused("at_tz > '2024-01-01'", "timestamp with time zone");
        assert_refused("doc = '{}'", "jsonb");
        assert_refused("tag LIKE 'a%'", "LIKE on column `tag`");
    }

    #[test]
    fn mysql_and_other_syntax_is_refused() {
        assert_refused("qty::text = '1'", "type cast");
        assert_refused("region || 'x' = 'y'", "string concatenation");
        assert_refused("qty = 1 XOR qty = 2", "comparisons do not chain");
        assert_refused("qty <=> 1", "IS NOT DISTINCT FROM");
        assert_refused("`qty` = 1", "expected: an expression, found: `");
        assert_refused("qty = 1 # comment", "operator `#`");
        assert_refused("region ~ 'x'", "operator `~`");
        assert_refused("region SIMILAR TO 'x'", "SIMILAR TO");
        assert_refused("region = $$x$$", "dollar-quoted string");
        assert_refused("region = 'a' 'b'", "found `'b'`");
        assert_refused("region = E'a'", "escape string literal");
        assert_refused("qty = 1 AND user = 'x'", "function `user`");
        assert_refused("lower(region) = 'x'", "function call");
        assert_refused("qty BETWEEN SYMMETRIC 1 AND 2", "expected: AND, found: 1");
        assert!(
            keeps("qty = 1 /* a /* nested */ comment */", &[("qty", Some("1"))]),
            "nested as PostgreSQL nests them"
        );
    }

    #[test]
    fn the_error_points_at_the_offending_construct() {
        let e = refused("qty = 1 AND region > 'm'");
        assert_eq!(e.position(), 13, "the comparison starts at `region`: {e}");
    }
}
