//! Canonical text forms, so equal data compares equal across engines: a value of each class is
//! brought to one spelling whatever server printed it — numeric scale dropped, floats in their
//! shortest exact form at their own width, timestamps in UTC with six fraction digits, JSON
//! with sorted keys, bytes in lowercase hex, booleans as 1/0 — and NULL stays distinct from
//! the empty string.

/// What kind of value a column holds, for its canonical form.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub enum ValueClass {
    /// Anything else: compared as text.
    Text,
    /// Integers (and BIT, as numbers).
    Int,
    /// Exact decimals.
    Decimal,
    /// 32-bit floats.
    Float32,
    /// 64-bit floats.
    Float64,
    /// Booleans (MySQL's `tinyint(1)` meets PostgreSQL's `boolean` as 1/0).
    Bool,
    /// Dates.
    Date,
    /// Times of day.
    Time,
    /// Timestamps, with or without time zone.
    Timestamp,
    /// JSON documents.
    Json,
    /// Binary strings.
    Bytes,
}

impl ValueClass {
    /// The class of a PostgreSQL type as `format_type` writes it.
    pub fn of_postgres(type_sql: &str) -> ValueClass {
        let t = type_sql.to_ascii_lowercase();
        match t.as_str() {
            "smallint" | "integer" | "bigint" => ValueClass::Int,
            "real" => ValueClass::Float32,
            "double precision" => ValueClass::Float64,
            "boolean" => ValueClass::Bool,
            "date" => ValueClass::Date,
            "json" | "jsonb" => ValueClass::Json,
            "bytea" => ValueClass::Bytes,
            _ if t.starts_with("numeric") => ValueClass::Decimal,
            _ if t.starts_with("timestamp") => ValueClass::Timestamp,
            _ if t.starts_with("time") => ValueClass::Time,
            _ => ValueClass::Text,
        }
    }

    /// The class of a MySQL/MariaDB column type (`COLUMN_TYPE`).
    pub fn of_mysql(column_type: &str) -> ValueClass {
        let t = column_type.to_ascii_lowercase();
        let base = t.split(['(', ' ']).next().unwrap_or("");
        match base {
            "tinyint" if t.starts_with("tinyint(1)") => ValueClass::Bool,
            "tinyint" | "smallint" | "mediumint" | "int" | "integer" | "bigint" | "bit" | "year" => ValueClass::Int,
            "decimal" | "numeric" => ValueClass::Decimal,
            "float" => ValueClass::Float32,
            "double" | "real" => ValueClass::Float64,
            "date" => ValueClass::Date,
            "time" => ValueClass::Time,
            "datetime" | "timestamp" => ValueClass::Timestamp,
            "json" => ValueClass::Json,
            "binary" | "varbinary" | "tinyblob" | "blob" | "mediumblob" | "longblob" => ValueClass::Bytes,
            _ => ValueClass::Text,
        }
    }

    /// The class two sides agree on: the more specific one (MariaDB's JSON reads as text).
    pub fn merge(self, other: ValueClass) -> ValueClass {
        match (self, other) {
            (ValueClass::Text, x) | (x, ValueClass::Text) => x,
            (ValueClass::Bool, ValueClass::Int) | (ValueClass::Int, ValueClass::Bool) => ValueClass::Bool,
            (a, _) => a,
        }
    }
}

fn decimal(s: &str) -> String {
    let s = s.trim();
    let (neg, digits) = match s.strip_prefix('-') {
        Some(d) => (true, d),
        None => (false, s.strip_prefix('+').unwrap_or(s)),
    };
    if digits.contains(['e', 'E']) || !digits.bytes().all(|b| b.is_ascii_digit() || b == b'.') {
        return s.to_owned();
    }
    let (int, frac) = digits.split_once('.').unwrap_or((digits, ""));
    let int = int.trim_start_matches('0');
    let frac = frac.trim_end_matches('0');
    let int = if int.is_empty() { "0" } else { int };
    let body = if frac.is_empty() { int.to_owned() } else { format!("{int}.{frac}") };
    if neg && body != "0" { format!("-{body}") } else { body }
}

fn float(s: &str, width32: bool) -> String {
    let t = s.trim();
    let v: f64 = match t.to_ascii_lowercase().as_str() {
        "nan" => f64::NAN,
        "infinity" | "inf" => f64::INFINITY,
        "-infinity" | "-inf" => f64::NEG_INFINITY,
        other => match other.parse() {
            Ok(v) => v,
            Err(_) => return t.to_owned(),
        },
    };
    if v.is_nan() {
        return "NaN".into();
    }
    if width32 { format!("{:e}", v as f32) } else { format!("{v:e}") }
}

fn timestamp(s: &str) -> String {
    let t = s.trim().trim_end_matches('Z');
    // Sessions run in UTC: drop a `+00` / `+00:00` offset.
    let t = t.strip_suffix("+00:00").or_else(|| t.strip_suffix("+00")).unwrap_or(t);
    let t = t.replacen('T', " ", 1);
    match t.split_once('.') {
        Some((whole, frac)) => format!("{whole}.{:0<6}", &frac[..frac.len().min(6)]),
        None if t.len() >= 19 => format!("{t}.000000"),
        None => t,
    }
}

fn time(s: &str) -> String {
    let t = s.trim();
    match t.split_once('.') {
        Some((whole, frac)) => format!("{whole}.{:0<6}", &frac[..frac.len().min(6)]),
        None => format!("{t}.000000"),
    }
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

/// The canonical form of a value printed by a server (`None` is SQL NULL).
pub fn canonical(class: ValueClass, raw: Option<&[u8]>) -> Option<String> {
    let raw = raw?;
    let text = || String::from_utf8_lossy(raw).into_owned();
    Some(match class {
        ValueClass::Text | ValueClass::Date => text(),
        ValueClass::Int => {
            let t = text();
            t.trim().parse::<i128>().map(|v| v.to_string()).unwrap_or(t)
        }
        ValueClass::Decimal => decimal(&text()),
        ValueClass::Float32 => float(&text(), true),
        ValueClass::Float64 => float(&text(), false),
        ValueClass::Bool => match text().trim().to_ascii_lowercase().as_str() {
            "t" | "true" | "1" | "y" | "yes" | "on" => "1".into(),
            "f" | "false" | "0" | "n" | "no" | "off" => "0".into(),
            other => other.to_owned(),
        },
        ValueClass::Timestamp => timestamp(&text()),
        ValueClass::Time => time(&text()),
        ValueClass::Json => {
            let t = text();
            serde_json::from_str::<serde_json::Value>(&t).map(|v| v.to_string()).unwrap_or(t)
        }
        ValueClass::Bytes => match raw.strip_prefix(b"\\x") {
            // PostgreSQL prints bytea as `\x` and hex.
            Some(h) => String::from_utf8_lossy(h).to_ascii_lowercase(),
            None => hex(raw),
        },
    })
}

/// A row's canonical values joined into one comparable byte string (NULL marked apart from '').
pub fn row(classes: &[ValueClass], values: &[Option<Vec<u8>>]) -> Vec<u8> {
    let mut out = Vec::new();
    for (class, v) in classes.iter().zip(values) {
        match canonical(*class, v.as_deref()) {
            None => out.extend_from_slice(b"\x00N"),
            Some(s) => {
                out.push(b'\x01');
                out.extend_from_slice(s.as_bytes());
            }
        }
        out.push(0x1f);
    }
    out
}

/// Order-independent hash of canonical rows: the sum of each row's 64-bit FNV-1a.
pub fn sum_hash<'a>(rows: impl Iterator<Item = &'a [u8]>) -> String {
    let sum = rows.fold(0u128, |acc, r| {
        let h = r.iter().fold(0xcbf2_9ce4_8422_2325u64, |h, b| (h ^ u64::from(*b)).wrapping_mul(0x0100_0000_01b3));
        acc.wrapping_add(u128::from(h))
    });
    sum.to_string()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn c(class: ValueClass, s: &str) -> String {
        canonical(class, Some(s.as_bytes())).unwrap()
    }

    #[test]
    fn equal_values_printed_differently_by_each_engine_become_one_form() {
        assert_eq!(c(ValueClass::Decimal, "1.50"), c(ValueClass::Decimal, "1.5"));
        assert_eq!(c(ValueClass::Decimal, "-0.00"), "0");
        assert_eq!(c(ValueClass::Decimal, "007.10"), "7.1");
        assert_eq!(c(ValueClass::Float32, "1.2345678"), c(ValueClass::Float32, "1.2345677614212036"));
        assert_eq!(c(ValueClass::Float64, "0.30000000000000004"), c(ValueClass::Float64, "3.0000000000000004e-1"));
        assert_eq!(c(ValueClass::Float64, "NaN"), "NaN");
        assert_eq!(c(ValueClass::Bool, "t"), c(ValueClass::Bool, "1"));
        assert_eq!(
            c(ValueClass::Timestamp, "2024-01-01 10:00:00+00"),
            c(ValueClass::Timestamp, "2024-01-01 10:00:00.000000")
        );
        assert_eq!(c(ValueClass::Timestamp, "2024-01-01 10:00:00.5+00"), "2024-01-01 10:00:00.500000");
        assert_eq!(c(ValueClass::Json, r#"{"b": 1, "a": [1, 2]}"#), c(ValueClass::Json, r#"{"a":[1,2],"b":1}"#));
        assert_eq!(
            canonical(ValueClass::Bytes, Some(b"\\x0AFF")).unwrap(),
            canonical(ValueClass::Bytes, Some(&[10, 255])).unwrap()
        );
        assert_eq!(c(ValueClass::Time, "12:00:01"), c(ValueClass::Time, "12:00:01.000000"));
    }

    #[test]
    fn null_and_the_empty_string_stay_apart() {
        let classes = [ValueClass::Text];
        assert_ne!(row(&classes, &[None]), row(&classes, &[Some(Vec::new())]));
    }

    #[test]
    fn types_map_to_classes_on_both_engines_and_merge_to_the_specific_one() {
        assert_eq!(ValueClass::of_postgres("numeric(12,2)"), ValueClass::Decimal);
        assert_eq!(ValueClass::of_postgres("timestamp with time zone"), ValueClass::Timestamp);
        assert_eq!(ValueClass::of_mysql("decimal(12,2)"), ValueClass::Decimal);
        assert_eq!(ValueClass::of_mysql("tinyint(1)"), ValueClass::Bool);
        assert_eq!(ValueClass::of_mysql("int(11) unsigned"), ValueClass::Int);
        assert_eq!(ValueClass::Text.merge(ValueClass::Json), ValueClass::Json);
        assert_eq!(ValueClass::Int.merge(ValueClass::Bool), ValueClass::Bool);
    }

    #[test]
    fn the_row_hash_does_not_depend_on_order() {
        let (a, b) = (b"x".as_slice(), b"y".as_slice());
        assert_eq!(sum_hash([a, b].into_iter()), sum_hash([b, a].into_iter()));
        assert_ne!(sum_hash([a].into_iter()), sum_hash([b].into_iter()));
    }
}
