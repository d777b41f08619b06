//! The type mapping of MySQL/MariaDB → PostgreSQL, and each value's conversion into
//! PostgreSQL's `COPY` text form. docs/mysql-to-postgresql.md is the reviewable table of what
//! this module decides; the two must say the same.
//!
//! Values arrive as the binary protocol gives them (the reading session's `time_zone` is
//! `+00:00`; text columns in a character set other than UTF-8 are converted to `utf8mb4` by the
//! select list), so every conversion is a function of the value alone.

use mysql_async::Value;

use crate::api::ZeroDatePolicy;
use crate::engine::mysql::catalog::MyTable;

/// How a source column's values are written to its PostgreSQL column.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Conv {
    /// Integers of every width and signedness, in decimal.
    Integer,
    /// `DECIMAL` text, as it is.
    Decimal,
    /// `FLOAT` (single precision), in the shortest form that reads back to the same value.
    Real,
    /// `DOUBLE`, in the shortest form that reads back to the same value.
    Double,
    /// `BIT(1)` as a boolean.
    Bool,
    /// `BIT(n)` as a bit string of n digits.
    Bits(u32),
    /// `YEAR` as a number (`0` for the zero year).
    Year,
    /// `DATE`.
    Date,
    /// `DATETIME` as a timestamp without time zone.
    DateTime,
    /// `TIMESTAMP` (UTC on the source session) as a timestamp with time zone, written with an
    /// explicit `+00`.
    Timestamp,
    /// `TIME` as an interval of hours, minutes and seconds (it spans ±838 hours).
    Time,
    /// Character data (CHAR, VARCHAR, TEXT, ENUM, SET, JSON): UTF-8 text.
    Text,
    /// Binary data (BINARY, VARBINARY, BLOB): `bytea`.
    Bytes,
    /// MariaDB's `UUID`: text when read, 16 bytes from the binary log.
    Uuid,
    /// MariaDB's `INET6` and `INET4`: text when read, 16 or 4 bytes from the binary log.
    Inet,
}

/// A source column's PostgreSQL type and how its values get there.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Mapping {
    /// The PostgreSQL type, as written in `CREATE TABLE`.
    pub pg_type: String,
    /// How values are converted.
    pub conv: Conv,
    /// The values an `ENUM` column allows (its labels; `''`, MySQL's error value, is always
    /// allowed too): the column gets a `CHECK` of them.
    pub enum_labels: Option<Vec<String>>,
    /// The members a `SET` column allows: the column gets a `CHECK` that each listed member is
    /// one of them.
    pub set_members: Option<Vec<String>>,
}

impl Mapping {
    fn plain(pg_type: impl Into<String>, conv: Conv) -> Mapping {
        Mapping { pg_type: pg_type.into(), conv, enum_labels: None, set_members: None }
    }
}

/// The spatial types, which have no PostgreSQL counterpart without PostGIS: refused.
const SPATIAL: &[&str] = &[
    "geometry",
    "point",
    "linestring",
    "polygon",
    "multipoint",
    "multilinestring",
    "multipolygon",
    "geometrycollection",
    "geomcollection",
];

/// The numbers in parentheses after the type name of a `COLUMN_TYPE` (`decimal(10,2)` → 10, 2).
fn type_args(column_type: &str) -> Vec<u32> {
    let Some(open) = column_type.find('(') else { return Vec::new() };
    let Some(close) = column_type[open..].find(')') else { return Vec::new() };
    column_type[open + 1..open + close].split(',').filter_map(|p| p.trim().parse().ok()).collect()
}

/// The quoted labels of an `enum('a','b''c')` or `set(...)` `COLUMN_TYPE`.
pub fn labels(column_type: &str) -> Option<Vec<String>> {
    let open = column_type.find('(')?;
    let inner = column_type[open + 1..].strip_suffix(')')?;
    let mut out = Vec::new();
    let mut chars = inner.chars().peekable();
    loop {
        match chars.next() {
            None => return Some(out),
            Some('\'') => {}
            Some(',' | ' ') => continue,
            Some(_) => return None,
        }
        let mut label = String::new();
        loop {
            match chars.next()? {
                '\'' if chars.peek() == Some(&'\'') => {
                    chars.next();
                    label.push('\'');
                }
                '\'' => break,
                c => label.push(c),
            }
        }
        out.push(label);
    }
}

/// Why a column type is not carried: the reason, for an error or a precheck item.
pub fn map_type(data_type: &str, column_type: &str, json: bool) -> Result<Mapping, String> {
    let column_type = column_type.to_ascii_lowercase();
    let unsigned = column_type.contains("unsigned");
    let args = type_args(&column_type);
    let precision = args.first().copied().filter(|p| *p > 0);
    let with_precision = |name: &str| match precision {
        Some(p) => format!("{name}({})", p.min(6)),
        None => format!("{name}(0)"),
    };
    Ok(match data_type {
        "tinyint" => Mapping::plain("smallint", Conv::Integer),
        "smallint" if unsigned => Mapping::plain("integer", Conv::Integer),
        "smallint" => Mapping::plain("smallint", Conv::Integer),
        "mediumint" => Mapping::plain("integer", Conv::Integer),
        "int" | "integer" if unsigned => Mapping::plain("bigint", Conv::Integer),
        "int" | "integer" => Mapping::plain("integer", Conv::Integer),
        "bigint" if unsigned => Mapping::plain("numeric(20,0)", Conv::Integer),
        "bigint" => Mapping::plain("bigint", Conv::Integer),
        "decimal" | "numeric" | "fixed" | "dec" => {
            let p = args.first().copied().unwrap_or(10);
            let s = args.get(1).copied().unwrap_or(0);
            Mapping::plain(format!("numeric({p},{s})"), Conv::Decimal)
        }
        "float" => Mapping::plain("real", Conv::Real),
        "double" | "real" | "double precision" => Mapping::plain("double precision", Conv::Double),
        "bit" => match args.first().copied().unwrap_or(1) {
            1 => Mapping::plain("boolean", Conv::Bool),
            n => Mapping::plain(format!("bit({n})"), Conv::Bits(n)),
        },
        "year" => Mapping::plain("smallint", Conv::Year),
        "date" => Mapping::plain("date", Conv::Date),
        "datetime" => Mapping::plain(with_precision("timestamp"), Conv::DateTime),
        "timestamp" => Mapping::plain(with_precision("timestamptz"), Conv::Timestamp),
        "time" => Mapping::plain("interval", Conv::Time),
        "char" | "varchar" => match args.first() {
            Some(n) if *n > 0 => Mapping::plain(format!("varchar({n})"), Conv::Text),
            _ => Mapping::plain("text", Conv::Text),
        },
        "tinytext" | "text" | "mediumtext" | "longtext" if json => Mapping::plain("jsonb", Conv::Text),
        "tinytext" | "text" | "mediumtext" | "longtext" => Mapping::plain("text", Conv::Text),
        "json" => Mapping::plain("jsonb", Conv::Text),
        "enum" => Mapping {
            enum_labels: Some(labels(&column_type).ok_or_else(|| format!("unreadable ENUM type {column_type}"))?),
            ..Mapping::plain("text", Conv::Text)
        },
        "set" => Mapping {
            set_members: Some(labels(&column_type).ok_or_else(|| format!("unreadable SET type {column_type}"))?),
            ..Mapping::plain("text", Conv::Text)
        },
        "binary" | "varbinary" | "tinyblob" | "blob" | "mediumblob" | "longblob" => {
            Mapping::plain("bytea", Conv::Bytes)
        }
        "uuid" => Mapping::plain("uuid", Conv::Uuid),
        "inet6" | "inet4" => Mapping::plain("inet", Conv::Inet),
        t if SPATIAL.contains(&t) => {
            return Err(format!(
                "the spatial type {t} has no PostgreSQL counterpart (PostGIS is not used); exclude the column"
            ));
        }
        t => return Err(format!("the type {t} is not mapped to PostgreSQL; exclude the column")),
    })
}

/// The mapping of a column whose PostgreSQL type the job's spec overrides
/// (`columns.targetTypes`): that type in `CREATE TABLE` and in the applier's casts, values
/// still written in the mapped type's text form for PostgreSQL to convert on input — except a
/// `DATETIME` into a type with a time zone, written with `+00` so its wall-clock value is read
/// as UTC whatever the target session's `TimeZone`.
pub fn with_target_type(mapping: Mapping, target_type: &str) -> Mapping {
    let pg_type = target_type.trim().to_owned();
    let zoned = {
        let t = pg_type.to_ascii_lowercase();
        t.starts_with("timestamptz") || t.contains("with time zone")
    };
    let conv = if mapping.conv == Conv::DateTime && zoned { Conv::Timestamp } else { mapping.conv };
    Mapping { pg_type, conv, ..mapping }
}

/// Whether a PostgreSQL type (as written in `columns.targetTypes`) holds text, so an `ENUM`'s or
/// `SET`'s `CHECK` of labels still applies to it.
pub fn is_text_type(pg_type: &str) -> bool {
    let t = pg_type.trim().to_ascii_lowercase();
    let base = t.split(['(', ' ']).next().unwrap_or("");
    let base = base.rsplit('.').next().unwrap_or(base);
    !t.ends_with(']') && matches!(base, "text" | "varchar" | "character" | "char" | "citext" | "bpchar")
}

/// Whether a PostgreSQL type (as written in `columns.targetTypes`) can be an identity column.
pub fn is_identity_type(pg_type: &str) -> bool {
    matches!(
        pg_type.trim().to_ascii_lowercase().as_str(),
        "smallint" | "integer" | "bigint" | "int" | "int2" | "int4" | "int8"
    )
}

/// Whether column `name` of `t` is MariaDB's JSON: a LONGTEXT with the column check
/// `json_valid(name)` the server adds to it.
pub fn is_mariadb_json(t: &MyTable, name: &str) -> bool {
    t.checks.iter().any(|c| {
        c.column.as_deref() == Some(name) && {
            let compact: String = c.clause.chars().filter(|c| !c.is_whitespace()).collect();
            compact.eq_ignore_ascii_case(&format!("json_valid({})", crate::engine::sql::my_ident(name)))
        }
    })
}

/// Why one value cannot be written.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum ValueProblem {
    /// A zero date (or a date with a zero month or day), as MySQL prints it, that the job's
    /// `policy.zeroDates` does not let through: `null` in a NOT NULL column, or `stop`.
    ZeroDate(String, ZeroDatePolicy),
    /// A NUL character in text, which PostgreSQL text cannot hold.
    NulInText,
    /// The protocol gave a value of an unexpected shape.
    Unexpected(String),
}

impl std::fmt::Display for ValueProblem {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            ValueProblem::ZeroDate(v, ZeroDatePolicy::Stop) => write!(
                f,
                "holds the zero date {v}, which PostgreSQL has no value for, and spec.policy.zeroDates is stop; \
                 fix: update the row on the source to a real date, or set spec.policy.zeroDates to null (NULL in \
                 nullable columns) or sentinel (-infinity)"
            ),
            ValueProblem::ZeroDate(v, _) => write!(
                f,
                "holds the zero date {v}, which PostgreSQL has no value for, and is NOT NULL (a nullable column \
                 gets NULL); fix: update the row on the source to a real date, make the column nullable, or set \
                 spec.policy.zeroDates to sentinel (-infinity)"
            ),
            ValueProblem::NulInText => {
                f.write_str("holds a NUL character, which PostgreSQL text cannot store; fix: remove it on the source")
            }
            ValueProblem::Unexpected(v) => write!(f, "has a value of an unexpected form ({v})"),
        }
    }
}

/// What `policy.zeroDates` writes in a sentinel column: PostgreSQL's `date` and `timestamp`
/// (with or without time zone) take it, and it sorts before every date.
pub const ZERO_DATE_SENTINEL: &str = "-infinity";

/// What a zero date (`shown` as MySQL prints it) becomes in a column under `policy`:
/// `Ok(None)` NULL, `Ok(Some(text))` the sentinel, `Err` when the job must stop.
pub fn zero_date_value(
    policy: ZeroDatePolicy,
    nullable: bool,
    shown: impl FnOnce() -> String,
) -> Result<Option<&'static str>, ValueProblem> {
    match policy {
        ZeroDatePolicy::Null if nullable => Ok(None),
        ZeroDatePolicy::Sentinel => Ok(Some(ZERO_DATE_SENTINEL)),
        ZeroDatePolicy::Null | ZeroDatePolicy::Stop => Err(ValueProblem::ZeroDate(shown(), policy)),
    }
}

/// Appends `field` with the characters `COPY`'s text format reserves escaped. NUL is refused
/// (PostgreSQL text cannot hold it).
pub fn push_copy_text(buf: &mut Vec<u8>, field: &[u8]) -> Result<(), ValueProblem> {
    let mut start = 0;
    for (i, &b) in field.iter().enumerate() {
        let esc: &[u8] = match b {
            b'\\' => b"\\\\",
            b'\t' => b"\\t",
            b'\n' => b"\\n",
            b'\r' => b"\\r",
            0 => return Err(ValueProblem::NulInText),
            _ => continue,
        };
        buf.extend_from_slice(&field[start..i]);
        buf.extend_from_slice(esc);
        start = i + 1;
    }
    buf.extend_from_slice(&field[start..]);
    Ok(())
}

/// Appends bytes as a `bytea` in `COPY` text: `\\x` and hex digits.
pub fn push_bytea(buf: &mut Vec<u8>, bytes: &[u8]) {
    const HEX: &[u8; 16] = b"0123456789abcdef";
    buf.reserve(3 + 2 * bytes.len());
    buf.extend_from_slice(b"\\\\x");
    for b in bytes {
        buf.push(HEX[usize::from(b >> 4)]);
        buf.push(HEX[usize::from(b & 15)]);
    }
}

/// Appends a date, or says it is a zero date (PostgreSQL has neither year 0 nor month or day 0).
fn push_date(buf: &mut Vec<u8>, y: u16, mo: u8, d: u8) -> Result<(), ()> {
    use std::io::Write;
    if y == 0 || mo == 0 || d == 0 {
        return Err(());
    }
    // Writing into a Vec cannot fail.
    let _ = write!(buf, "{y:04}-{mo:02}-{d:02}");
    Ok(())
}

/// Appends one value in `COPY` text form. `Ok(false)`: a zero date, of which nothing is
/// written; the caller writes what `policy.zeroDates` makes of it ([`zero_date_value`]).
pub fn push_value(buf: &mut Vec<u8>, conv: Conv, value: &Value) -> Result<bool, ValueProblem> {
    use std::io::Write;
    let unexpected = || ValueProblem::Unexpected(format!("{conv:?} from {}", value_kind(value)));
    // Writing into a Vec cannot fail.
    match (conv, value) {
        (_, Value::NULL) => buf.extend_from_slice(b"\\N"),
        (Conv::Integer | Conv::Year, Value::Int(i)) => {
            let _ = write!(buf, "{i}");
        }
        (Conv::Integer | Conv::Year, Value::UInt(u)) => {
            let _ = write!(buf, "{u}");
        }
        (Conv::Integer | Conv::Decimal, Value::Bytes(b)) if b.iter().all(|c| c.is_ascii_graphic()) => {
            buf.extend_from_slice(b)
        }
        (Conv::Real, Value::Float(f)) => {
            let _ = write!(buf, "{f:e}");
        }
        (Conv::Real, Value::Double(d)) => {
            // FLOAT read as a double: its value, rounded back to single precision.
            let _ = write!(buf, "{:e}", *d as f32);
        }
        (Conv::Double, Value::Double(d)) => {
            let _ = write!(buf, "{d:e}");
        }
        (Conv::Double, Value::Float(f)) => {
            let _ = write!(buf, "{:e}", f64::from(*f));
        }
        (Conv::Bool, Value::Bytes(b)) => buf.push(if b.iter().any(|x| *x != 0) { b't' } else { b'f' }),
        (Conv::Bool, Value::Int(i)) => buf.push(if *i != 0 { b't' } else { b'f' }),
        (Conv::Bool, Value::UInt(u)) => buf.push(if *u != 0 { b't' } else { b'f' }),
        (Conv::Bits(n), Value::Bytes(b)) => {
            let v = b.iter().fold(0u64, |v, x| (v << 8) | u64::from(*x));
            let _ = write!(buf, "{v:0width$b}", width = n as usize);
        }
        (Conv::Bits(n), Value::UInt(v)) => {
            let _ = write!(buf, "{v:0width$b}", width = n as usize);
        }
        (Conv::Date, Value::Date(y, mo, d, ..)) => {
            if push_date(buf, *y, *mo, *d).is_err() {
                return Ok(false);
            }
        }
        (Conv::DateTime | Conv::Timestamp, Value::Date(y, mo, d, h, mi, s, us)) => {
            if push_date(buf, *y, *mo, *d).is_err() {
                return Ok(false);
            }
            let _ = write!(buf, " {h:02}:{mi:02}:{s:02}");
            if *us != 0 {
                let _ = write!(buf, ".{us:06}");
            }
            if conv == Conv::Timestamp {
                buf.extend_from_slice(b"+00");
            }
        }
        (Conv::Time, Value::Time(negative, days, h, m, s, us)) => {
            let hours = u64::from(*days) * 24 + u64::from(*h);
            let _ = write!(buf, "{}{hours:02}:{m:02}:{s:02}", if *negative { "-" } else { "" });
            if *us != 0 {
                let _ = write!(buf, ".{us:06}");
            }
        }
        (Conv::Text, Value::Bytes(b)) => push_copy_text(buf, b)?,
        (Conv::Bytes, Value::Bytes(b)) => push_bytea(buf, b),
        // Read, MariaDB prints them (`0011…-…`, `::ffff:1.2.3.4`, `10.0.0.1`).
        (Conv::Uuid | Conv::Inet, Value::Bytes(b)) if b.iter().all(|c| c.is_ascii_graphic()) => {
            buf.extend_from_slice(b)
        }
        _ => return Err(unexpected()),
    }
    Ok(true)
}

/// A value's protocol kind, for a message that must not show the value itself.
fn value_kind(value: &Value) -> &'static str {
    match value {
        Value::NULL => "NULL",
        Value::Bytes(_) => "bytes",
        Value::Int(_) => "a signed integer",
        Value::UInt(_) => "an unsigned integer",
        Value::Float(_) => "a float",
        Value::Double(_) => "a double",
        Value::Date(..) => "a date",
        Value::Time(..) => "a time",
    }
}

/// A zero date as MySQL prints it, for messages: a `DATE` as a date, a `DATETIME` or
/// `TIMESTAMP` with its time.
pub fn zero_date_text(conv: Conv, value: &Value) -> String {
    match value {
        Value::Date(y, mo, d, ..) if conv == Conv::Date => format!("'{y:04}-{mo:02}-{d:02}'"),
        Value::Date(y, mo, d, h, mi, s, _) => format!("'{y:04}-{mo:02}-{d:02} {h:02}:{mi:02}:{s:02}'"),
        _ => "(a zero date)".into(),
    }
}

/// A string literal for PostgreSQL DDL, where parameters cannot be bound: quotes doubled, and
/// an `E'...'` literal with backslashes doubled when there are backslashes, so it reads the same
/// whatever `standard_conforming_strings` says.
pub fn pg_literal(s: &str) -> String {
    if s.contains('\\') {
        format!("E'{}'", s.replace('\\', "\\\\").replace('\'', "''"))
    } else {
        format!("'{}'", s.replace('\'', "''"))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn text(conv: Conv, value: Value) -> String {
        let mut buf = Vec::new();
        assert!(push_value(&mut buf, conv, &value).unwrap(), "{value:?} was a zero date");
        String::from_utf8(buf).unwrap()
    }

    fn ty(data_type: &str, column_type: &str) -> String {
        map_type(data_type, column_type, false).unwrap().pg_type
    }

    #[test]
    fn integers_are_widened_so_unsigned_values_fit() {
        assert_eq!(ty("tinyint", "tinyint(4)"), "smallint");
        assert_eq!(ty("tinyint", "tinyint(3) unsigned"), "smallint");
        assert_eq!(ty("tinyint", "tinyint(1)"), "smallint");
        assert_eq!(ty("smallint", "smallint(6)"), "smallint");
        assert_eq!(ty("smallint", "smallint(5) unsigned"), "integer");
        assert_eq!(ty("mediumint", "mediumint(8) unsigned"), "integer");
        assert_eq!(ty("int", "int(11)"), "integer");
        assert_eq!(ty("int", "int(10) unsigned"), "bigint");
        assert_eq!(ty("bigint", "bigint(20)"), "bigint");
        assert_eq!(ty("bigint", "bigint(20) unsigned"), "numeric(20,0)");
    }

    #[test]
    fn every_other_type_has_its_counterpart() {
        assert_eq!(ty("decimal", "decimal(65,30)"), "numeric(65,30)");
        assert_eq!(ty("decimal", "decimal(10,0) unsigned"), "numeric(10,0)");
        assert_eq!(ty("float", "float"), "real");
        assert_eq!(ty("double", "double"), "double precision");
        assert_eq!(ty("bit", "bit(1)"), "boolean");
        assert_eq!(ty("bit", "bit(64)"), "bit(64)");
        assert_eq!(ty("year", "year(4)"), "smallint");
        assert_eq!(ty("date", "date"), "date");
        assert_eq!(ty("datetime", "datetime"), "timestamp(0)");
        assert_eq!(ty("datetime", "datetime(6)"), "timestamp(6)");
        assert_eq!(ty("timestamp", "timestamp(3)"), "timestamptz(3)");
        assert_eq!(ty("time", "time(6)"), "interval");
        assert_eq!(ty("char", "char(10)"), "varchar(10)");
        assert_eq!(ty("char", "char(0)"), "text");
        assert_eq!(ty("varchar", "varchar(255)"), "varchar(255)");
        assert_eq!(ty("longtext", "longtext"), "text");
        assert_eq!(map_type("longtext", "longtext", true).unwrap().pg_type, "jsonb");
        assert_eq!(ty("json", "json"), "jsonb");
        assert_eq!(ty("varbinary", "varbinary(16)"), "bytea");
        assert_eq!(ty("longblob", "longblob"), "bytea");
        let e = map_type("enum", "enum('a','it''s','')", false).unwrap();
        assert_eq!((e.pg_type.as_str(), e.enum_labels), ("text", Some(vec!["a".into(), "it's".into(), "".into()])));
        let s = map_type("set", "set('x','y')", false).unwrap();
        assert_eq!(s.set_members, Some(vec!["x".into(), "y".into()]));
        assert!(map_type("point", "point", false).unwrap_err().contains("spatial type point"));
        assert!(map_type("geometry", "geometry", false).unwrap_err().contains("spatial"));
        assert_eq!(map_type("uuid", "uuid", false).unwrap(), Mapping::plain("uuid", Conv::Uuid));
        assert_eq!(map_type("inet6", "inet6", false).unwrap(), Mapping::plain("inet", Conv::Inet));
        assert_eq!(map_type("inet4", "inet4", false).unwrap(), Mapping::plain("inet", Conv::Inet));
        assert!(map_type("xml", "xml", false).unwrap_err().contains("not mapped"));
    }

    #[test]
    fn an_override_replaces_the_type_and_keeps_the_conversion() {
        let flag = with_target_type(map_type("tinyint", "tinyint(1)", false).unwrap(), " boolean ");
        assert_eq!((flag.pg_type.as_str(), flag.conv), ("boolean", Conv::Integer));
        for zoned in ["timestamptz", "timestamptz(3)", "timestamp(3) with time zone"] {
            assert_eq!(with_target_type(map_type("datetime", "datetime", false).unwrap(), zoned).conv, Conv::Timestamp);
        }
        assert_eq!(with_target_type(map_type("datetime", "datetime", false).unwrap(), "text").conv, Conv::DateTime);
        let e = with_target_type(map_type("enum", "enum('a')", false).unwrap(), "citext");
        assert_eq!(e.enum_labels, Some(vec!["a".to_owned()]));
        assert!(is_text_type("public.citext") && is_text_type("varchar(10)") && is_text_type("character varying(3)"));
        assert!(!is_text_type("text[]") && !is_text_type("integer") && !is_text_type("mood"));
        assert!(is_identity_type("int8") && is_identity_type("BIGINT") && !is_identity_type("numeric(20,0)"));
    }

    #[test]
    fn labels_read_quotes_and_commas_inside_them() {
        assert_eq!(labels("enum('a,b','c''d',' e ')").unwrap(), vec!["a,b", "c'd", " e "]);
        assert_eq!(labels("set()").unwrap(), Vec::<String>::new());
        assert_eq!(labels("enum('unterminated)"), None);
    }

    #[test]
    fn integers_keep_their_limits() {
        assert_eq!(text(Conv::Integer, Value::Int(i64::MIN)), "-9223372036854775808");
        assert_eq!(text(Conv::Integer, Value::UInt(u64::MAX)), "18446744073709551615");
        assert_eq!(text(Conv::Integer, Value::Int(-128)), "-128");
        assert_eq!(text(Conv::Year, Value::Int(0)), "0");
        assert_eq!(text(Conv::Year, Value::Int(2155)), "2155");
    }

    #[test]
    fn decimals_pass_as_text_and_floats_read_back_exactly() {
        let big = "-99999999999999999999999999999999999.999999999999999999999999999999";
        assert_eq!(text(Conv::Decimal, Value::Bytes(big.into())), big);
        for f in [f32::MAX, f32::MIN_POSITIVE, -1.175_494_4e-38, 1.1, 16_777_217.0, -0.0] {
            let t = text(Conv::Real, Value::Float(f));
            assert_eq!(t.parse::<f32>().unwrap().to_bits(), f.to_bits(), "{t}");
        }
        for d in [f64::MAX, f64::MIN_POSITIVE, 5e-324, 0.1 + 0.2, -0.0] {
            let t = text(Conv::Double, Value::Double(d));
            assert_eq!(t.parse::<f64>().unwrap().to_bits(), d.to_bits(), "{t}");
        }
    }

    #[test]
    fn bits_become_booleans_or_bit_strings_of_their_width() {
        assert_eq!(text(Conv::Bool, Value::Bytes(vec![1])), "t");
        assert_eq!(text(Conv::Bool, Value::Bytes(vec![0])), "f");
        assert_eq!(text(Conv::Bits(10), Value::Bytes(vec![0x02, 0xaa])), "1010101010");
        assert_eq!(text(Conv::Bits(64), Value::Bytes(vec![0xff; 8])), "1".repeat(64));
        assert_eq!(text(Conv::Bits(3), Value::Bytes(vec![0])), "000");
    }

    #[test]
    fn dates_and_times_carry_their_fraction_and_time_zone() {
        assert_eq!(text(Conv::Date, Value::Date(2024, 2, 29, 0, 0, 0, 0)), "2024-02-29");
        assert_eq!(text(Conv::DateTime, Value::Date(9999, 12, 31, 23, 59, 59, 999_999)), "9999-12-31 23:59:59.999999");
        assert_eq!(text(Conv::DateTime, Value::Date(1000, 1, 1, 0, 0, 0, 0)), "1000-01-01 00:00:00");
        assert_eq!(text(Conv::Timestamp, Value::Date(2038, 1, 19, 3, 14, 7, 500)), "2038-01-19 03:14:07.000500+00");
        assert_eq!(text(Conv::Time, Value::Time(false, 34, 22, 59, 59, 0)), "838:59:59");
        assert_eq!(text(Conv::Time, Value::Time(true, 34, 22, 59, 59, 0)), "-838:59:59");
        assert_eq!(text(Conv::Time, Value::Time(true, 0, 0, 0, 1, 500_000)), "-00:00:01.500000");
        assert_eq!(text(Conv::Time, Value::Time(false, 0, 0, 0, 0, 0)), "00:00:00");
    }

    #[test]
    fn zero_dates_are_reported_to_the_caller() {
        let mut buf = Vec::new();
        for v in [
            Value::Date(0, 0, 0, 0, 0, 0, 0),
            Value::Date(2024, 0, 15, 0, 0, 0, 0),
            Value::Date(2024, 3, 0, 1, 2, 3, 0),
        ] {
            for conv in [Conv::Date, Conv::DateTime, Conv::Timestamp] {
                assert_eq!(push_value(&mut buf, conv, &v), Ok(false), "{conv:?} {v:?}");
            }
        }
        assert!(buf.is_empty(), "a zero date wrote {buf:?}");
        assert_eq!(zero_date_text(Conv::Date, &Value::Date(0, 0, 0, 0, 0, 0, 0)), "'0000-00-00'");
        assert_eq!(zero_date_text(Conv::DateTime, &Value::Date(0, 0, 0, 0, 0, 0, 0)), "'0000-00-00 00:00:00'");
        assert_eq!(zero_date_text(Conv::Timestamp, &Value::Date(2024, 0, 1, 1, 0, 0, 0)), "'2024-00-01 01:00:00'");
    }

    #[test]
    fn the_zero_date_policy_decides_per_column() {
        let shown = || "'0000-00-00'".to_owned();
        assert_eq!(zero_date_value(ZeroDatePolicy::Null, true, shown), Ok(None));
        let e = zero_date_value(ZeroDatePolicy::Null, false, shown).unwrap_err();
        assert!(e.to_string().contains("'0000-00-00'") && e.to_string().contains("is NOT NULL"), "{e}");
        for nullable in [true, false] {
            assert_eq!(zero_date_value(ZeroDatePolicy::Sentinel, nullable, shown), Ok(Some("-infinity")));
            let e = zero_date_value(ZeroDatePolicy::Stop, nullable, shown).unwrap_err().to_string();
            assert!(e.contains("spec.policy.zeroDates is stop"), "{e}");
        }
    }

    #[test]
    fn text_escapes_what_copy_reserves_and_refuses_nul() {
        assert_eq!(text(Conv::Text, Value::Bytes(b"a\tb\nc\\d\re".to_vec())), "a\\tb\\nc\\\\d\\re");
        assert_eq!(text(Conv::Text, Value::Bytes("😀 é \\N".as_bytes().to_vec())), "😀 é \\\\N");
        assert_eq!(text(Conv::Text, Value::NULL), "\\N");
        assert_eq!(
            push_value(&mut Vec::new(), Conv::Text, &Value::Bytes(b"a\0b".to_vec())),
            Err(ValueProblem::NulInText)
        );
    }

    #[test]
    fn binary_values_become_hex_bytea() {
        assert_eq!(text(Conv::Bytes, Value::Bytes(vec![0, 0xff, b'\\', b'\t'])), "\\\\x00ff5c09");
        assert_eq!(text(Conv::Bytes, Value::Bytes(Vec::new())), "\\\\x");
    }

    #[test]
    fn unexpected_value_shapes_are_errors_without_the_value() {
        let e = push_value(&mut Vec::new(), Conv::Date, &Value::Bytes(b"secret".to_vec())).unwrap_err();
        assert!(!e.to_string().contains("secret"), "{e}");
    }

    #[test]
    fn ddl_literals_cannot_end_early() {
        assert_eq!(pg_literal("it's"), "'it''s'");
        assert_eq!(pg_literal("a\\'b"), "E'a\\\\''b'");
    }
}
