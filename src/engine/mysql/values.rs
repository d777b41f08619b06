//! Values between the wire and the target, exact for every type the MySQL family stores: the
//! binary-protocol values of the full transfer become `LOAD DATA` fields, and the binary log's
//! row values become [`Cell`]s the applier binds.
//!
//! Sessions that read or write data run with `time_zone = '+00:00'`, so TIMESTAMP values travel
//! as UTC and land unchanged.

use mysql_async::Value;
use mysql_async::binlog::value::BinlogValue;

use super::catalog::ColumnKind;
use crate::engine::model::Cell;

/// Appends `v` in decimal, zero-padded to at least `width` digits.
fn push_padded(out: &mut String, v: u64, width: usize) {
    let mut digits = [0u8; 20];
    let mut n = v;
    let mut len = 0;
    while n > 0 || len < width.max(1) {
        digits[len] = b'0' + (n % 10) as u8;
        n /= 10;
        len += 1;
    }
    out.extend(digits[..len].iter().rev().map(|&d| char::from(d)));
}

/// `YYYY-MM-DD` or `YYYY-MM-DD HH:MM:SS.ffffff` (zero dates included), as the column's type wants.
fn date_text(kind: ColumnKind, (y, mo, d, h, mi, s, us): (u16, u8, u8, u8, u8, u8, u32)) -> String {
    let mut out = String::with_capacity(26);
    push_padded(&mut out, u64::from(y), 4);
    out.push('-');
    push_padded(&mut out, u64::from(mo), 2);
    out.push('-');
    push_padded(&mut out, u64::from(d), 2);
    if kind != ColumnKind::Date {
        out.push(' ');
        push_clock(&mut out, u64::from(h), mi, s, us);
    }
    out
}

/// Appends `HH:MM:SS.ffffff` (more hour digits when there are more).
fn push_clock(out: &mut String, hours: u64, m: u8, s: u8, us: u32) {
    push_padded(out, hours, 2);
    out.push(':');
    push_padded(out, u64::from(m), 2);
    out.push(':');
    push_padded(out, u64::from(s), 2);
    out.push('.');
    push_padded(out, u64::from(us), 6);
}

/// `[-]HHH:MM:SS.ffffff`, hours counting the days (TIME spans ±838 hours).
fn time_text(negative: bool, days: u32, h: u8, m: u8, s: u8, us: u32) -> String {
    let hours = u64::from(days) * 24 + u64::from(h);
    let mut out = String::with_capacity(17);
    if negative {
        out.push('-');
    }
    push_clock(&mut out, hours, m, s, us);
    out
}

/// A float in a form that parses back to exactly the same value. FLOAT goes through its exact
/// double so a parse as double followed by a rounding to float cannot land elsewhere.
fn float_text(v: f64) -> String {
    format!("{v:e}")
}

/// Big-endian bytes of a BIT value as a number.
fn bits(bytes: &[u8]) -> u64 {
    bytes.iter().fold(0u64, |n, b| (n << 8) | u64::from(*b))
}

/// An integer the binary log wrote without its signedness, read back as the column declares.
fn integer(kind: ColumnKind, v: i64) -> String {
    match kind {
        ColumnKind::Integer { bits, unsigned: true } if v < 0 => {
            let mask = if bits >= 64 { u64::MAX } else { (1u64 << bits) - 1 };
            ((v as u64) & mask).to_string()
        }
        // The decoder reads a MEDIUMINT's three bytes without extending the sign.
        ColumnKind::Integer { bits: 24, unsigned: false } if v >= 0x80_0000 => (v - 0x100_0000).to_string(),
        _ => v.to_string(),
    }
}

/// An integer of the binary log as a cell: a number when it is not negative (as the column
/// declares it, see [`integer`]), text otherwise.
fn integer_cell(kind: ColumnKind, v: i64) -> Cell {
    match kind {
        ColumnKind::Integer { bits, unsigned: true } if v < 0 => {
            let mask = if bits >= 64 { u64::MAX } else { (1u64 << bits) - 1 };
            Cell::UInt((v as u64) & mask)
        }
        ColumnKind::Integer { bits: 24, unsigned: false } if v >= 0x80_0000 => Cell::Text((v - 0x100_0000).to_string()),
        ColumnKind::Integer { .. } if v >= 0 => Cell::UInt(v as u64),
        _ => Cell::Text(integer(kind, v)),
    }
}

/// Appends a full-transfer value to a `LOAD DATA` buffer as one field (tab-separated, backslash
/// escapes, `\N` for NULL), without an allocation per value.
pub fn push_value(buf: &mut Vec<u8>, kind: ColumnKind, value: &Value) {
    use std::io::Write;
    // Writing into a Vec cannot fail.
    let _ = match value {
        Value::NULL => {
            buf.extend_from_slice(b"\\N");
            Ok(())
        }
        Value::Bytes(b) if kind == ColumnKind::Bit => write!(buf, "{}", bits(b)),
        Value::Bytes(b) => {
            push_escaped(buf, b);
            Ok(())
        }
        Value::Int(i) if kind == ColumnKind::Year => write!(buf, "{i:04}"),
        Value::Int(i) => match kind {
            ColumnKind::Integer { unsigned: true, .. } | ColumnKind::Integer { bits: 24, .. } => {
                write!(buf, "{}", integer(kind, *i))
            }
            _ => write!(buf, "{i}"),
        },
        Value::UInt(u) => write!(buf, "{u}"),
        Value::Float(f) => write!(buf, "{:e}", f64::from(*f)),
        Value::Double(d) => write!(buf, "{d:e}"),
        Value::Date(y, mo, d, h, mi, s, us) => {
            if kind == ColumnKind::Date {
                write!(buf, "{y:04}-{mo:02}-{d:02}")
            } else {
                write!(buf, "{y:04}-{mo:02}-{d:02} {h:02}:{mi:02}:{s:02}.{us:06}")
            }
        }
        Value::Time(neg, days, h, m, s, us) => {
            let hours = u64::from(*days) * 24 + u64::from(*h);
            write!(buf, "{}{hours:02}:{m:02}:{s:02}.{us:06}", if *neg { "-" } else { "" })
        }
    };
}

/// Appends bytes with the characters the `LOAD DATA` format reserves escaped.
fn push_escaped(buf: &mut Vec<u8>, field: &[u8]) {
    let mut start = 0;
    for (i, &b) in field.iter().enumerate() {
        let esc: &[u8] = match b {
            b'\\' => b"\\\\",
            b'\t' => b"\\t",
            b'\n' => b"\\n",
            0 => b"\\0",
            _ => continue,
        };
        buf.extend_from_slice(&field[start..i]);
        buf.extend_from_slice(esc);
        start = i + 1;
    }
    buf.extend_from_slice(&field[start..]);
}

/// Why a binary-log value could not be turned into a cell.
#[derive(Debug, thiserror::Error)]
#[error("column {column}: {message}")]
pub struct ValueError {
    /// Column name.
    pub column: String,
    /// What was wrong.
    pub message: String,
}

/// UTC seconds (with an optional `.ffffff`) of a binary-log TIMESTAMP as a datetime.
fn timestamp_text(raw: &[u8]) -> Option<String> {
    let text = std::str::from_utf8(raw).ok()?;
    let (secs, frac) = text.split_once('.').unwrap_or((text, "0"));
    let secs: i64 = secs.parse().ok()?;
    // The first six digits of the fraction, padded with zeros.
    let mut us = 0u32;
    for i in 0..6 {
        let digit = match frac.as_bytes().get(i) {
            Some(b) if b.is_ascii_digit() => u32::from(b - b'0'),
            Some(_) => return None,
            None => 0,
        };
        us = us * 10 + digit;
    }
    if secs == 0 && us == 0 {
        // TIMESTAMP's zero value; 1970-01-01 00:00:00 UTC itself is out of its range.
        return Some("0000-00-00 00:00:00.000000".to_owned());
    }
    let t = jiff::tz::Offset::UTC.to_datetime(jiff::Timestamp::from_second(secs).ok()?);
    let part = |v: i8| u8::try_from(v).ok();
    let parts = (u16::try_from(t.year()).ok()?, part(t.month())?, part(t.day())?, part(t.hour())?, part(t.minute())?);
    Some(date_text(ColumnKind::Other, (parts.0, parts.1, parts.2, parts.3, parts.4, part(t.second())?, us)))
}

/// A binary-log row value as the cell the applier binds for a column of `kind`.
pub fn binlog_cell(kind: ColumnKind, column: &str, value: BinlogValue<'_>) -> Result<Cell, ValueError> {
    let bad = |message: String| ValueError { column: column.to_owned(), message };
    let value = match value {
        BinlogValue::Value(v) => v,
        BinlogValue::Jsonb(j) => {
            // MySQL's binary JSON: written back as JSON text.
            let json: serde_json::Value =
                j.try_into().map_err(|e| bad(format!("undecodable binary JSON value: {e:?}")))?;
            return Ok(Cell::Bytes(json.to_string().into_bytes()));
        }
        BinlogValue::JsonDiff(_) => {
            return Err(bad("partial JSON updates (binlog_row_value_options=PARTIAL_JSON) are not supported; \
                 set binlog_row_value_options to ''"
                .into()));
        }
    };
    Ok(match (kind, value) {
        (_, Value::NULL) => Cell::Null,
        (ColumnKind::Bit, Value::Bytes(b)) => Cell::UInt(bits(&b)),
        (ColumnKind::Set, Value::Bytes(b)) => {
            // The member bitmask, little-endian.
            Cell::UInt(b.iter().rev().fold(0u64, |n, x| (n << 8) | u64::from(*x)))
        }
        (ColumnKind::Enum, Value::Int(i)) => Cell::UInt(i as u64),
        (ColumnKind::Year, Value::Bytes(b)) => {
            // Stored as years since 1900, with 0 for the zero year 0000.
            Cell::Text(if b == b"1900" { "0000".to_owned() } else { String::from_utf8_lossy(&b).into_owned() })
        }
        (ColumnKind::Timestamp, Value::Bytes(b)) => {
            Cell::Text(timestamp_text(&b).ok_or_else(|| bad("unreadable TIMESTAMP".into()))?)
        }
        (ColumnKind::Other, Value::Bytes(b)) if b.is_ascii() => {
            // DECIMAL text, or binary strings that happen to be ASCII: bytes either way.
            Cell::Bytes(b)
        }
        (_, Value::Bytes(b)) => Cell::Bytes(b),
        (_, Value::Int(i)) => integer_cell(kind, i),
        // An integer bound as a number: no text to format here or to parse on the target.
        (ColumnKind::Integer { .. }, Value::UInt(u)) => Cell::UInt(u),
        (_, Value::UInt(u)) => Cell::Text(u.to_string()),
        (_, Value::Float(f)) => Cell::Text(float_text(f64::from(f))),
        (_, Value::Double(d)) => Cell::Text(float_text(d)),
        (kind, Value::Date(y, mo, d, h, mi, s, us)) => Cell::Text(date_text(kind, (y, mo, d, h, mi, s, us))),
        (_, Value::Time(neg, days, h, m, s, us)) => Cell::Text(time_text(neg, days, h, m, s, us)),
    })
}

/// A TIME(1) or TIME(2) value from the binary log as it should have been decoded.
///
/// `mysql_common` 0.37 reads a negative TIME(1)/TIME(2) value with a fraction of a second
/// wrongly: it takes 256 off the fraction byte as an unsigned number, which wraps in a release
/// build (and panics in a debug one) and adds exactly 625 hours (2^32 × 10,000 in its packed
/// form) to the value. The result is either out of range (more than 999,999 microseconds, for a
/// value above -625 hours) or negative with a fraction (below it), which a correct reading of
/// such a column never gives (a negative value with a fraction is exactly what goes wrong): so
/// the wrapped value is recognised and the 625 hours taken off again. Any other value is
/// returned as it is.
pub fn time2_fraction_fix(value: Value) -> Value {
    let Value::Time(negative, days, h, m, s, us) = value else { return value };
    if !((negative && us != 0) || us > 999_999) {
        return value;
    }
    let hours = i64::from(days) * 24 + i64::from(h);
    let magnitude = (((hours << 12) | (i64::from(m) << 6) | i64::from(s)) << 24) | i64::from(us);
    let packed = if negative { -magnitude } else { magnitude } - (625 << 36);
    let magnitude = packed.unsigned_abs();
    let hms = magnitude >> 24;
    let hours = (hms >> 12) % 1024;
    Value::Time(
        packed < 0,
        (hours / 24) as u32,
        (hours % 24) as u8,
        ((hms >> 6) % 64) as u8,
        (hms % 64) as u8,
        (magnitude % (1 << 24)) as u32,
    )
}

/// A cell as a statement parameter.
pub fn param(cell: &Cell) -> Value {
    match cell {
        Cell::Null | Cell::Unchanged => Value::NULL,
        Cell::Text(s) => Value::Bytes(s.clone().into_bytes()),
        Cell::Bytes(b) => Value::Bytes(b.clone()),
        Cell::UInt(u) => Value::UInt(*u),
    }
}

/// A cell as the row filter sees it (`None` for NULL or a value without a text form).
pub fn filter_text(cell: &Cell) -> Option<std::borrow::Cow<'_, str>> {
    match cell {
        Cell::Text(s) => Some(std::borrow::Cow::Borrowed(s)),
        Cell::Bytes(b) => Some(String::from_utf8_lossy(b)),
        Cell::UInt(u) => Some(std::borrow::Cow::Owned(u.to_string())),
        Cell::Null | Cell::Unchanged => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn unsigned_integers_the_log_wrote_as_negative_come_back_whole() {
        assert_eq!(integer(ColumnKind::Integer { bits: 64, unsigned: true }, -1), "18446744073709551615");
        assert_eq!(integer(ColumnKind::Integer { bits: 8, unsigned: true }, -1), "255");
        assert_eq!(integer(ColumnKind::Integer { bits: 24, unsigned: true }, -1), "16777215");
        assert_eq!(integer(ColumnKind::Integer { bits: 32, unsigned: false }, -5), "-5");
        assert_eq!(integer(ColumnKind::Integer { bits: 24, unsigned: false }, 0x80_0000), "-8388608");
        assert_eq!(integer(ColumnKind::Integer { bits: 24, unsigned: false }, 0x7f_ffff), "8388607");
    }

    #[test]
    fn floats_print_in_a_form_that_parses_back_exactly() {
        for v in [1.2345678f32, f32::MAX, f32::MIN_POSITIVE, 16777217.0] {
            let text = float_text(f64::from(v));
            assert_eq!(text.parse::<f64>().unwrap() as f32, v, "{text}");
        }
        for v in [0.1 + 0.2, f64::MAX, 5e-324, -0.0] {
            assert_eq!(float_text(v).parse::<f64>().unwrap().to_bits(), v.to_bits());
        }
    }

    #[test]
    fn load_fields_escape_what_the_format_reserves() {
        let mut buf = Vec::new();
        push_value(&mut buf, ColumnKind::Text, &Value::Bytes(b"a\tb\nc\\d\0e".to_vec()));
        buf.push(b'\t');
        push_value(&mut buf, ColumnKind::Text, &Value::NULL);
        buf.push(b'\t');
        push_value(&mut buf, ColumnKind::Year, &Value::Int(0));
        buf.push(b'\t');
        push_value(&mut buf, ColumnKind::Bit, &Value::Bytes(vec![0x02, 0xaa]));
        assert_eq!(buf, b"a\\tb\\nc\\\\d\\0e\t\\N\t0000\t682");
    }

    #[test]
    fn temporal_values_print_with_zero_dates_and_negative_times() {
        assert_eq!(date_text(ColumnKind::Other, (0, 0, 0, 0, 0, 0, 0)), "0000-00-00 00:00:00.000000");
        assert_eq!(date_text(ColumnKind::Date, (2024, 2, 29, 0, 0, 0, 0)), "2024-02-29");
        assert_eq!(time_text(true, 34, 22, 59, 59, 0), "-838:59:59.000000");
        assert_eq!(timestamp_text(b"1700000000.5").unwrap(), "2023-11-14 22:13:20.500000");
        assert_eq!(timestamp_text(b"0").unwrap(), "0000-00-00 00:00:00.000000");
    }

    #[test]
    fn negative_fractional_times_that_mysql_common_wraps_come_back_right() {
        // What mysql_common 0.37 makes of -00:00:01.50 and -838:59:59.99 in a TIME(2) column.
        assert_eq!(
            time2_fraction_fix(Value::Time(false, 26, 0, 63, 62, 16_277_216)),
            Value::Time(true, 0, 0, 0, 1, 500_000)
        );
        assert_eq!(
            time2_fraction_fix(Value::Time(true, 8, 21, 59, 59, 990_000)),
            Value::Time(true, 34, 22, 59, 59, 990_000)
        );
        assert_eq!(
            time2_fraction_fix(Value::Time(false, 25, 12, 33, 63, 16_677_216)),
            Value::Time(true, 0, 12, 30, 0, 100_000)
        );
        // Values it reads right stay as they are.
        for v in [Value::Time(true, 1, 2, 3, 4, 0), Value::Time(false, 34, 22, 59, 59, 990_000), Value::NULL] {
            assert_eq!(time2_fraction_fix(v.clone()), v);
        }
    }

    #[test]
    fn bits_and_sets_become_numbers() {
        assert_eq!(bits(&[0x02, 0xaa]), 682);
        let cell = binlog_cell(ColumnKind::Set, "s", BinlogValue::Value(Value::Bytes(vec![5, 0]))).unwrap();
        assert_eq!(cell, Cell::UInt(5));
    }
}
