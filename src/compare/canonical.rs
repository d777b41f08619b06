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
    /// Integers.
    Int,
    /// Bit strings (MySQL's `BIT(n)`, PostgreSQL's `bit(n)`), as binary digits without leading
    /// zeros.
    Bits,
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
    /// Times of day and durations (MySQL's `TIME` spans ±838 hours; PostgreSQL's `interval`
    /// of days, hours, minutes and seconds), as signed hours, minutes and seconds.
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
            "interval" => ValueClass::Time,
            _ if t.starts_with("bit") => ValueClass::Bits,
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
            "bit" if t.starts_with("bit(1)") => ValueClass::Bool,
            "bit" => ValueClass::Bits,
            "tinyint" | "smallint" | "mediumint" | "int" | "integer" | "bigint" | "year" => ValueClass::Int,
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
            // An integer column made numeric on the target (`columns.targetTypes`): `5` = `5.00`.
            (ValueClass::Decimal, ValueClass::Int) | (ValueClass::Int, ValueClass::Decimal) => ValueClass::Decimal,
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

/// Whether a date (or the date part of a timestamp) is one of MySQL's zero dates (year, month
/// or day 0), which PostgreSQL has no value for: the MySQL side of a comparison with PostgreSQL
/// gives what the job's `policy.zeroDates` writes in their place.
pub fn zero_date(s: &str) -> bool {
    let date = s.trim().split([' ', 'T']).next().unwrap_or("");
    let parts: Vec<&str> = date.split('-').collect();
    parts.len() == 3 && parts.iter().any(|p| p.bytes().all(|b| b == b'0'))
}

/// A duration in microseconds from `[-]H:MM:SS[.f]` (MySQL's TIME) or PostgreSQL's interval
/// text (`[-]N day[s] [-]HH:MM:SS[.f]`); `None` for anything else (months and years have no
/// fixed length, so such an interval stays as text).
fn micros(s: &str) -> Option<i128> {
    let mut total: i128 = 0;
    let mut words = s.split_whitespace().peekable();
    while let Some(w) = words.next() {
        if w.contains(':') {
            let (neg, hms) = match w.strip_prefix('-') {
                Some(r) => (true, r),
                None => (false, w.strip_prefix('+').unwrap_or(w)),
            };
            let mut parts = hms.split(':');
            let h: i128 = parts.next()?.parse().ok()?;
            let m: i128 = parts.next()?.parse().ok()?;
            let sec = parts.next().unwrap_or("0");
            if parts.next().is_some() {
                return None;
            }
            let (whole, frac) = sec.split_once('.').unwrap_or((sec, ""));
            let frac = format!("{:0<6}", &frac[..frac.len().min(6)]);
            let v = ((h * 60 + m) * 60 + whole.parse::<i128>().ok()?) * 1_000_000 + frac.parse::<i128>().ok()?;
            total += if neg { -v } else { v };
        } else {
            let n: i128 = w.parse().ok()?;
            match words.next()? {
                "day" | "days" => total += n * 86_400_000_000,
                _ => return None,
            }
        }
    }
    Some(total)
}

fn time(s: &str) -> String {
    let Some(us) = micros(s) else { return s.trim().to_owned() };
    let (sign, us) = if us < 0 { ("-", -us) } else { ("", us) };
    let (secs, frac) = (us / 1_000_000, us % 1_000_000);
    format!("{sign}{:02}:{:02}:{:02}.{frac:06}", secs / 3600, secs / 60 % 60, secs % 60)
}

fn bits(s: &str) -> String {
    let t = s.trim();
    if t.is_empty() || !t.bytes().all(|b| b == b'0' || b == b'1') {
        return t.to_owned();
    }
    let t = t.trim_start_matches('0');
    if t.is_empty() { "0".into() } else { t.to_owned() }
}

/// A JSON number in one form whatever its spelling (`100`, `1e2`, `100.0` → `1e2`): exact, as
/// digits and a power of ten (PostgreSQL's jsonb keeps numbers as `numeric`, MySQL as text or
/// double).
fn json_number(n: &str) -> String {
    let (neg, body) = match n.strip_prefix('-') {
        Some(b) => (true, b),
        None => (false, n),
    };
    let (mantissa, exp) = match body.split_once(['e', 'E']) {
        Some((m, e)) => (m, e.strip_prefix('+').unwrap_or(e).parse::<i64>().unwrap_or(0)),
        None => (body, 0),
    };
    let (int, frac) = mantissa.split_once('.').unwrap_or((mantissa, ""));
    let digits = format!("{int}{frac}");
    // The value is digits × 10^(exp - len(frac)).
    let mut exp = exp - frac.len() as i64;
    let lead = digits.trim_start_matches('0');
    let trimmed = lead.trim_end_matches('0');
    if trimmed.is_empty() {
        return "0".into();
    }
    exp += (lead.len() - trimmed.len()) as i64;
    // As d.ddd × 10^e.
    let e = exp + trimmed.len() as i64 - 1;
    let (first, rest) = trimmed.split_at(1);
    let sign = if neg { "-" } else { "" };
    if rest.is_empty() { format!("{sign}{first}e{e}") } else { format!("{sign}{first}.{rest}e{e}") }
}

/// A small JSON reader writing the canonical form: object keys sorted (the last of duplicate
/// keys kept, as jsonb does), no whitespace, strings re-escaped one way, numbers by
/// [`json_number`].
struct Json<'a> {
    s: &'a [u8],
    at: usize,
}

impl Json<'_> {
    fn ws(&mut self) {
        while self.s.get(self.at).is_some_and(|b| b.is_ascii_whitespace()) {
            self.at += 1;
        }
    }

    fn string(&mut self) -> Option<String> {
        // The string's text as JSON, read by serde_json from its quotes to its end.
        let start = self.at;
        self.at += 1;
        loop {
            match self.s.get(self.at)? {
                b'\\' => self.at += 2,
                b'"' => {
                    self.at += 1;
                    break;
                }
                _ => self.at += 1,
            }
        }
        let raw = std::str::from_utf8(self.s.get(start..self.at)?).ok()?;
        serde_json::from_str::<String>(raw).ok()
    }

    fn value(&mut self, out: &mut String) -> Option<()> {
        self.ws();
        match *self.s.get(self.at)? {
            b'{' => {
                self.at += 1;
                let mut members = std::collections::BTreeMap::new();
                self.ws();
                if self.s.get(self.at) == Some(&b'}') {
                    self.at += 1;
                } else {
                    loop {
                        self.ws();
                        if self.s.get(self.at) != Some(&b'"') {
                            return None;
                        }
                        let key = self.string()?;
                        self.ws();
                        if self.s.get(self.at) != Some(&b':') {
                            return None;
                        }
                        self.at += 1;
                        let mut v = String::new();
                        self.value(&mut v)?;
                        members.insert(key, v);
                        self.ws();
                        match self.s.get(self.at)? {
                            b',' => self.at += 1,
                            b'}' => {
                                self.at += 1;
                                break;
                            }
                            _ => return None,
                        }
                    }
                }
                out.push('{');
                for (i, (k, v)) in members.iter().enumerate() {
                    if i > 0 {
                        out.push(',');
                    }
                    out.push_str(&serde_json::to_string(k).ok()?);
                    out.push(':');
                    out.push_str(v);
                }
                out.push('}');
            }
            b'[' => {
                self.at += 1;
                out.push('[');
                self.ws();
                if self.s.get(self.at) == Some(&b']') {
                    self.at += 1;
                } else {
                    let mut first = true;
                    loop {
                        if !first {
                            out.push(',');
                        }
                        first = false;
                        self.value(out)?;
                        self.ws();
                        match self.s.get(self.at)? {
                            b',' => self.at += 1,
                            b']' => {
                                self.at += 1;
                                break;
                            }
                            _ => return None,
                        }
                    }
                }
                out.push(']');
            }
            b'"' => out.push_str(&serde_json::to_string(&self.string()?).ok()?),
            b't' | b'f' | b'n' => {
                let word =
                    ["true", "false", "null"].into_iter().find(|w| self.s[self.at..].starts_with(w.as_bytes()))?;
                self.at += word.len();
                out.push_str(word);
            }
            _ => {
                let start = self.at;
                while self.s.get(self.at).is_some_and(|b| b.is_ascii_digit() || b"+-.eE".contains(b)) {
                    self.at += 1;
                }
                let n = std::str::from_utf8(&self.s[start..self.at]).ok()?;
                if n.is_empty() || n.parse::<f64>().is_err() {
                    return None;
                }
                out.push_str(&json_number(n));
            }
        }
        Some(())
    }
}

fn json(s: &str) -> String {
    let mut reader = Json { s: s.as_bytes(), at: 0 };
    let mut out = String::new();
    match reader.value(&mut out) {
        Some(()) => {
            reader.ws();
            if reader.at == s.len() { out } else { s.to_owned() }
        }
        None => s.to_owned(),
    }
}

/// The canonical form of a value printed by a server (`None` is SQL NULL).
pub fn canonical(class: ValueClass, raw: Option<&[u8]>) -> Option<String> {
    let raw = raw?;
    let text = || String::from_utf8_lossy(raw).into_owned();
    Some(match class {
        ValueClass::Text => text(),
        ValueClass::Date => text().trim().to_owned(),
        ValueClass::Int => {
            let t = text();
            t.trim().parse::<i128>().map(|v| v.to_string()).unwrap_or(t)
        }
        ValueClass::Bits => bits(&text()),
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
        ValueClass::Json => json(&text()),
        // PostgreSQL prints bytea as `\x` and hex digits, MySQL as HEX() gives them.
        ValueClass::Bytes => String::from_utf8_lossy(raw.strip_prefix(b"\\x").unwrap_or(raw)).to_ascii_lowercase(),
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
        assert_eq!(c(ValueClass::Bytes, "\\x0aff"), c(ValueClass::Bytes, "0AFF"));
        assert_eq!(c(ValueClass::Time, "12:00:01"), c(ValueClass::Time, "12:00:01.000000"));
    }

    #[test]
    fn mysql_values_meet_their_postgresql_mapping_in_one_form() {
        // TIME as interval, in hours or in days.
        assert_eq!(c(ValueClass::Time, "-838:59:59"), "-838:59:59.000000");
        assert_eq!(c(ValueClass::Time, "-00:00:01.5"), c(ValueClass::Time, "-00:00:01.500000"));
        assert_eq!(c(ValueClass::Time, "1 day 01:00:00"), c(ValueClass::Time, "25:00:00"));
        assert_eq!(c(ValueClass::Time, "-1 days +23:00:00"), c(ValueClass::Time, "-01:00:00"));
        assert_ne!(c(ValueClass::Time, "24:00:00.000001"), c(ValueClass::Time, "24:00:00"));
        // BIT(n) as a number's binary digits and as a bit string.
        assert_eq!(c(ValueClass::Bits, "101"), c(ValueClass::Bits, "0000000101"));
        assert_eq!(c(ValueClass::Bits, "0"), c(ValueClass::Bits, "000"));
        assert_ne!(c(ValueClass::Bits, "101"), c(ValueClass::Bits, "1010"));
        // Zero dates are recognised (the MySQL side replaces them as the job's policy writes
        // them); the sentinel compares as itself.
        for zero in ["0000-00-00", "2024-00-15", "2024-02-00 10:00:00", "0000-00-00 00:00:00.000000"] {
            assert!(zero_date(zero), "{zero}");
        }
        assert!(!zero_date("2024-02-29 00:00:00") && !zero_date("-infinity"));
        assert_eq!(c(ValueClass::Date, "-infinity"), "-infinity");
        assert_eq!(c(ValueClass::Timestamp, "-infinity"), "-infinity");
        assert_eq!(c(ValueClass::Date, "2024-02-29"), "2024-02-29");
        // jsonb's key order, spacing and number spelling.
        assert_eq!(
            c(ValueClass::Json, r#"{"c": null, "a": [1, [2, {"b": "\u00fc😀"}]]}"#),
            c(ValueClass::Json, r#"{"a":[1,[2,{"b":"ü😀"}]],"c":null}"#)
        );
        assert_eq!(c(ValueClass::Json, "[1e2, 100.0, 0.50, -0]"), c(ValueClass::Json, "[100, 100, 0.5, 0]"));
        assert_eq!(
            c(ValueClass::Json, "123456789012345678901234567890"),
            "1.2345678901234567890123456789e29",
            "exact, not through a double"
        );
        assert_ne!(c(ValueClass::Json, r#"{"a": 1}"#), c(ValueClass::Json, r#"{"a": 2}"#));
        assert_ne!(c(ValueClass::Json, r#"["a", "b"]"#), c(ValueClass::Json, r#"["b", "a"]"#));
        assert_eq!(c(ValueClass::Json, r#"{"a": 1, "a": 2}"#), c(ValueClass::Json, r#"{"a": 2}"#));
        assert_eq!(c(ValueClass::Json, "not json"), "not json");
        assert_eq!(
            c(ValueClass::Json, r#""tab\tquote\" slash\\""#),
            c(ValueClass::Json, r#""tab\u0009quote\" slash\\""#)
        );
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
        assert_eq!(ValueClass::of_mysql("bit(1)"), ValueClass::Bool);
        assert_eq!(ValueClass::of_mysql("bit(64)"), ValueClass::Bits);
        assert_eq!(ValueClass::of_postgres("bit(64)"), ValueClass::Bits);
        assert_eq!(ValueClass::of_postgres("interval"), ValueClass::Time);
        assert_eq!(ValueClass::Text.merge(ValueClass::Json), ValueClass::Json);
        assert_eq!(ValueClass::Int.merge(ValueClass::Bool), ValueClass::Bool);
        assert_eq!(ValueClass::Int.merge(ValueClass::Decimal), ValueClass::Decimal);
        assert_eq!(c(ValueClass::Decimal, "5"), c(ValueClass::Decimal, "5.00"));
    }

    #[test]
    fn the_row_hash_does_not_depend_on_order() {
        let (a, b) = (b"x".as_slice(), b"y".as_slice());
        assert_eq!(sum_hash([a, b].into_iter()), sum_hash([b, a].into_iter()));
        assert_ne!(sum_hash([a].into_iter()), sum_hash([b].into_iter()));
    }
}
