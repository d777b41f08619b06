//! MySQL's reading of a row filter on binary log row images, which arrive as plain text without
//! types: whether a change row would have matched, with SQL three-valued logic.
//!
//! # Semantics and deviations from MySQL
//!
//! The row image carries no types: every value is its text form. Comparisons therefore decide
//! per pair of operands:
//!
//! - Numbers are compared as numbers when both sides are numeric: a numeric literal, `TRUE`/
//!   `FALSE` or a condition's 1/0 against anything whose text parses as a number, or two
//!   columns whose texts both parse as numbers. Plain decimal text is compared exactly, digit by
//!   digit (any length, sign and scale: `'1.50' = 1.5`, BIGINT UNSIGNED maximum and
//!   DECIMAL(65,30) exact); when either side has an exponent both become `f64`, as MySQL
//!   compares a DOUBLE.
//! - Everything else is compared as strings the way the common `_ci` collations do:
//!   case-insensitively (Unicode simple lowercase) with trailing spaces ignored (PAD SPACE).
//!
//! Deviations, all on the side of documented, predictable behaviour:
//!
//! - Binary strings and `_bin`/`_cs` collations are treated as `_ci`; accent-insensitivity
//!   (`_ai`: `'é' = 'e'`) is not modelled; `<`/`>` on text orders by the code points of the
//!   lowercased characters, not by collation weights (equality is unaffected).
//! - A quoted literal against a column is always a string comparison, even when the column is
//!   numeric (`amount = '100'` does not match `100.00`): write numbers unquoted. Likewise a
//!   DATETIME column equals only a literal in its canonical text form (`'2024-01-05 00:00:00'`,
//!   not `'2024-01-05'`), although ordering against `'2024-01-05'` works.
//! - Two columns whose texts both look like numbers compare as numbers, even if they are
//!   VARCHAR (`'007' = '7'`).
//! - Non-numeric text against a number compares as strings, where MySQL would convert the text
//!   to its numeric prefix (`'abc' = 0` is false here, true in MySQL). For the same reason a
//!   bare value used as a condition is true only when its whole text is a non-zero number.
//! - The SQL mode Ferry pins on its sessions is assumed, whatever the server's global one:
//!   `"..."` is a string (not `ANSI_QUOTES`), backslash escapes are on (not
//!   `NO_BACKSLASH_ESCAPES`), `NOT` binds as usual (not `HIGH_NOT_PRECEDENCE`).

use std::cmp::Ordering;

use super::{CmpOp, Expr, Value, fold, like_match, parse_number};

/// An operand's value. Where it came from decides how a comparison treats it.
#[derive(Debug, Clone, Copy)]
enum Val<'v> {
    Null,
    /// `TRUE`/`FALSE` or a condition's result: the numbers 1 and 0.
    Bool(bool),
    /// A numeric literal.
    Number(&'v str),
    /// A quoted literal: always a string.
    Quoted(&'v str),
    /// A column's text: a number if it parses as one and the other side is not a string.
    Column(&'v str),
}

impl<'v> Val<'v> {
    fn from_truth(truth: Option<bool>) -> Val<'v> {
        truth.map_or(Val::Null, Val::Bool)
    }

    fn text(self) -> Option<&'v str> {
        match self {
            Val::Null => None,
            Val::Bool(true) => Some("1"),
            Val::Bool(false) => Some("0"),
            Val::Number(t) | Val::Quoted(t) | Val::Column(t) => Some(t),
        }
    }

    fn truth(self) -> Option<bool> {
        match self {
            Val::Null => None,
            Val::Bool(b) => Some(b),
            Val::Number(t) | Val::Quoted(t) | Val::Column(t) => Some(parse_number(t).is_some_and(|n| !n.is_zero())),
        }
    }
}

impl Expr {
    fn value<'v>(&'v self, row: &[Value<'v>]) -> Val<'v> {
        match self {
            Expr::Column(i) => match row.get(*i) {
                Some(Value::Text(t)) => Val::Column(t),
                _ => Val::Null,
            },
            Expr::Null => Val::Null,
            Expr::Bool(b) => Val::Bool(*b),
            Expr::Number(n) => Val::Number(n),
            Expr::Text(s) => Val::Quoted(s),
            _ => Val::from_truth(self.truth(row)),
        }
    }

    pub(super) fn truth<'v>(&'v self, row: &[Value<'v>]) -> Option<bool> {
        match self {
            Expr::Column(_) | Expr::Null | Expr::Bool(_) | Expr::Number(_) | Expr::Text(_) => self.value(row).truth(),
            Expr::Not(e) => e.truth(row).map(|b| !b),
            Expr::And(items) => {
                let mut unknown = false;
                for e in items {
                    match e.truth(row) {
                        Some(false) => return Some(false),
                        None => unknown = true,
                        Some(true) => {}
                    }
                }
                if unknown { None } else { Some(true) }
            }
            Expr::Or(items) => {
                let mut unknown = false;
                for e in items {
                    match e.truth(row) {
                        Some(true) => return Some(true),
                        None => unknown = true,
                        Some(false) => {}
                    }
                }
                if unknown { None } else { Some(false) }
            }
            Expr::Xor(items) => {
                let mut acc = false;
                for e in items {
                    acc ^= e.truth(row)?;
                }
                Some(acc)
            }
            Expr::Compare(op, l, r) => {
                let (l, r) = (l.value(row), r.value(row));
                if *op == CmpOp::NullSafeEq {
                    return Some(match (l, r) {
                        (Val::Null, Val::Null) => true,
                        (Val::Null, _) | (_, Val::Null) => false,
                        _ => compare(l, r) == Some(Ordering::Equal),
                    });
                }
                compare(l, r).map(|ord| op.holds(ord))
            }
            Expr::IsNull { subject, negated } => Some(matches!(subject.value(row), Val::Null) != *negated),
            Expr::IsTruth { subject, want, negated } => Some((subject.truth(row) == *want) != *negated),
            Expr::In { subject, list, negated } => {
                let s = subject.value(row);
                if matches!(s, Val::Null) {
                    return None;
                }
                let mut unknown = false;
                for item in list {
                    match compare(s, item.value(row)) {
                        Some(Ordering::Equal) => return Some(!*negated),
                        None => unknown = true,
                        Some(_) => {}
                    }
                }
                if unknown { None } else { Some(*negated) }
            }
            Expr::Between { subject, low, high, negated } => {
                let s = subject.value(row);
                let above = compare(s, low.value(row)).map(|o| o != Ordering::Less);
                let below = compare(s, high.value(row)).map(|o| o != Ordering::Greater);
                let within = match (above, below) {
                    (Some(false), _) | (_, Some(false)) => Some(false),
                    (Some(true), Some(true)) => Some(true),
                    _ => None,
                };
                within.map(|b| b != *negated)
            }
            Expr::Like { subject, pattern, negated, fold, .. } => {
                let text = subject.value(row).text()?;
                let pattern = pattern.as_ref()?;
                Some(like_match(text, pattern, *fold) != *negated)
            }
        }
    }
}

/// Compares two values with the rules in the module documentation; `None` when either is NULL.
fn compare(l: Val<'_>, r: Val<'_>) -> Option<Ordering> {
    let (lt, rt) = (l.text()?, r.text()?);
    let string_only =
        matches!((l, r), (Val::Quoted(_), Val::Quoted(_) | Val::Column(_)) | (Val::Column(_), Val::Quoted(_)));
    if !string_only && let (Some(a), Some(b)) = (parse_number(lt), parse_number(rt)) {
        return Some(a.compare(&b));
    }
    Some(compare_text(lt, rt))
}

/// Case-insensitive, PAD SPACE: the shorter string is compared as if padded with spaces, so
/// trailing spaces do not matter but `'a\t'` still sorts before `'a'`.
fn compare_text(a: &str, b: &str) -> Ordering {
    let (mut x, mut y) = (a.chars().map(fold), b.chars().map(fold));
    loop {
        let (p, q) = match (x.next(), y.next()) {
            (None, None) => return Ordering::Equal,
            (p, q) => (p.unwrap_or(' '), q.unwrap_or(' ')),
        };
        match p.cmp(&q) {
            Ordering::Equal => {}
            other => return other,
        }
    }
}
