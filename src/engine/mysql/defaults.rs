//! Column defaults, `ON UPDATE` clauses, generation expressions and column types of a source
//! table, rendered as SQL for the target's `CREATE TABLE` from what `information_schema`
//! reports — never pasted in as they come.
//!
//! The servers report defaults differently. MariaDB (10.2.7 on) writes `COLUMN_DEFAULT` as SQL:
//! `NULL`, quoted literals (`'it''s'`), numbers, and expressions (`current_timestamp()`,
//! `1 + 2`). MySQL writes the bare value (`it's`, `0`), marks expression defaults with `EXTRA`
//! `DEFAULT_GENERATED` and writes their text without the parentheses they were created with.
//! Literals are decoded and written again as quoted literals; `CURRENT_TIMESTAMP` (and its
//! synonyms) as the one function both servers take without parentheses; any other expression
//! only in parentheses, and only after [`check_expression`] found it to be one plain expression.
//! What cannot be rendered safely is left out and reported, never sent.
//!
//! Literals are escaped for the target's session, whose `sql_mode` has neither
//! `NO_BACKSLASH_ESCAPES` nor `ANSI_QUOTES`: backslashes and quotes are both escaped, so a
//! literal can never end early whichever way backslashes are read.

/// How a server writes `COLUMN_DEFAULT`.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum DefaultStyle {
    /// As SQL: MariaDB 10.2.7 and later.
    #[default]
    Sql,
    /// As the bare value, with `EXTRA` `DEFAULT_GENERATED` marking expressions: MySQL, and
    /// MariaDB before 10.2.7.
    Value,
}

impl DefaultStyle {
    /// The style of a server from its `VERSION()` (`10.11.6-MariaDB-log`, `8.0.36`).
    pub fn of(version: &str) -> DefaultStyle {
        if !version.contains("MariaDB") {
            return DefaultStyle::Value;
        }
        // A replication-era prefix `5.5.5-` comes before the real version on old clients.
        let real = version.strip_prefix("5.5.5-").unwrap_or(version);
        let mut parts = real.split(|c: char| !c.is_ascii_digit()).map(|p| p.parse::<u32>().unwrap_or(0));
        let v = (parts.next().unwrap_or(0), parts.next().unwrap_or(0), parts.next().unwrap_or(0));
        if v >= (10, 2, 7) { DefaultStyle::Sql } else { DefaultStyle::Value }
    }
}

/// A string literal for DDL, where parameters cannot be bound: quotes doubled, backslashes
/// doubled, NUL written as `\0`.
pub fn literal(s: &str) -> String {
    let mut out = String::with_capacity(s.len() + 2);
    out.push('\'');
    for c in s.chars() {
        match c {
            '\'' => out.push_str("''"),
            '\\' => out.push_str("\\\\"),
            '\0' => out.push_str("\\0"),
            c => out.push(c),
        }
    }
    out.push('\'');
    out
}

/// Data types whose default MySQL reports as a hexadecimal literal (`0x616263`).
const BINARY_TYPES: &[&str] = &["binary", "varbinary", "tinyblob", "blob", "mediumblob", "longblob"];

/// The `DEFAULT` clause's value for a column (`'abc'`, `0`, `NULL`, `CURRENT_TIMESTAMP(6)`,
/// `(1 + 2)`), `None` when the column has no default; `Err` says why it cannot be carried.
///
/// `data_type` is `DATA_TYPE` (lower case), `default` `COLUMN_DEFAULT` and `extra` `EXTRA`.
pub fn render_default(
    style: DefaultStyle,
    data_type: &str,
    default: Option<&str>,
    extra: &str,
) -> std::result::Result<Option<String>, String> {
    let Some(raw) = default else { return Ok(None) };
    let text = raw.trim();
    let generated = extra.to_ascii_lowercase().split_whitespace().any(|w| w == "default_generated");
    // MySQL writes a text column's default 'CURRENT_TIMESTAMP' as the bare word too: only a
    // temporal column's (or a marked expression) is the function.
    let temporal = ["timestamp", "datetime"].contains(&data_type);
    if (style == DefaultStyle::Sql || generated || temporal)
        && let Some(ts) = current_timestamp(text)
    {
        return Ok(Some(ts));
    }
    let rendered = match style {
        DefaultStyle::Sql => {
            if text.eq_ignore_ascii_case("NULL") {
                "NULL".to_owned()
            } else if let Some(value) = quoted_literal(text) {
                literal(&value)
            } else if is_number(text) || is_bit_literal(text) || is_hex_literal(text) {
                text.to_owned()
            } else {
                expression(text)?
            }
        }
        DefaultStyle::Value if generated => expression(text)?,
        DefaultStyle::Value => {
            if (data_type == "bit" && is_bit_literal(text))
                || (BINARY_TYPES.contains(&data_type) && is_hex_literal(text))
                || (is_numeric_type(data_type) && is_number(text))
            {
                text.to_owned()
            } else {
                // The value itself, as it is, spaces included.
                literal(raw)
            }
        }
    };
    Ok(Some(rendered))
}

/// The `ON UPDATE` clause of `EXTRA` (`on update current_timestamp(6)`), if any: only
/// `CURRENT_TIMESTAMP` and its synonyms exist there.
pub fn render_on_update(extra: &str) -> std::result::Result<Option<String>, String> {
    let lower = extra.to_ascii_lowercase();
    let Some(at) = lower.find("on update ") else { return Ok(None) };
    let rest = extra.get(at + "on update ".len()..).unwrap_or_default();
    let word = rest.split_whitespace().next().unwrap_or_default();
    current_timestamp(word)
        .map(|ts| Some(format!("ON UPDATE {ts}")))
        .ok_or_else(|| "its ON UPDATE clause is not CURRENT_TIMESTAMP".to_owned())
}

/// An expression in parentheses, once [`check_expression`] passed it.
fn expression(text: &str) -> std::result::Result<String, String> {
    check_expression(text).map_err(|e| format!("its default expression cannot be carried safely ({e})"))?;
    Ok(format!("({text})"))
}

/// `CURRENT_TIMESTAMP`, `CURRENT_TIMESTAMP(n)`, `NOW(n)`, `LOCALTIME`, `LOCALTIMESTAMP` (any
/// case, with or without empty parentheses), written the one way both servers take as a
/// default and in `ON UPDATE`: `CURRENT_TIMESTAMP` or `CURRENT_TIMESTAMP(n)`.
fn current_timestamp(text: &str) -> Option<String> {
    let compact: String = text.chars().filter(|c| !c.is_whitespace()).collect::<String>().to_ascii_lowercase();
    let (name, args) = match compact.find('(') {
        Some(open) => {
            let inner = compact[open..].strip_prefix('(')?.strip_suffix(')')?;
            (&compact[..open], Some(inner))
        }
        None => (compact.as_str(), None),
    };
    let known = ["current_timestamp", "now", "localtime", "localtimestamp"];
    if !known.contains(&name) || (name == "now" && args.is_none()) {
        return None;
    }
    match args {
        None | Some("") => Some("CURRENT_TIMESTAMP".to_owned()),
        Some(n) if n.len() == 1 && n.bytes().all(|b| (b'0'..=b'6').contains(&b)) => {
            Some(format!("CURRENT_TIMESTAMP({n})"))
        }
        Some(_) => None,
    }
}

/// The value of a text that is exactly one single-quoted literal (`'it''s'`, `'a\nb'`), with
/// its escapes undone as the server reads them.
fn quoted_literal(text: &str) -> Option<String> {
    let inner = text.strip_prefix('\'')?.strip_suffix('\'')?;
    let mut out = String::with_capacity(inner.len());
    let mut chars = inner.chars();
    while let Some(c) = chars.next() {
        match c {
            '\\' => match chars.next()? {
                '0' => out.push('\0'),
                'b' => out.push('\u{8}'),
                'n' => out.push('\n'),
                'r' => out.push('\r'),
                't' => out.push('\t'),
                'Z' => out.push('\u{1a}'),
                // The server keeps the backslash of these (LIKE wildcards).
                e @ ('%' | '_') => {
                    out.push('\\');
                    out.push(e);
                }
                e => out.push(e),
            },
            '\'' => {
                // Inside the literal a quote is only ever doubled; a lone one ends it early.
                if chars.next()? != '\'' {
                    return None;
                }
                out.push('\'');
            }
            c => out.push(c),
        }
    }
    Some(out)
}

fn is_numeric_type(data_type: &str) -> bool {
    [
        "tinyint",
        "smallint",
        "mediumint",
        "int",
        "integer",
        "bigint",
        "decimal",
        "numeric",
        "float",
        "double",
        "real",
        "year",
    ]
    .contains(&data_type)
}

/// `-12`, `3.5`, `.5`, `1e-3`.
fn is_number(text: &str) -> bool {
    let t = text.strip_prefix(['-', '+']).unwrap_or(text);
    let (mantissa, exponent) = match t.find(['e', 'E']) {
        Some(i) => (&t[..i], Some(&t[i + 1..])),
        None => (t, None),
    };
    let (int, frac) = mantissa.split_once('.').unwrap_or((mantissa, ""));
    let digits = |s: &str| s.bytes().all(|b| b.is_ascii_digit());
    let mantissa_ok = digits(int) && digits(frac) && !(int.is_empty() && frac.is_empty());
    let exponent_ok = exponent.is_none_or(|e| {
        let e = e.strip_prefix(['-', '+']).unwrap_or(e);
        !e.is_empty() && digits(e)
    });
    mantissa_ok && exponent_ok
}

/// `b'101'`.
fn is_bit_literal(text: &str) -> bool {
    let lower = text.to_ascii_lowercase();
    lower
        .strip_prefix("b'")
        .and_then(|r| r.strip_suffix('\''))
        .is_some_and(|bits| bits.bytes().all(|b| b == b'0' || b == b'1'))
}

/// `0x616263` or `x'616263'`.
fn is_hex_literal(text: &str) -> bool {
    let lower = text.to_ascii_lowercase();
    let digits = lower.strip_prefix("0x").or_else(|| lower.strip_prefix("x'").and_then(|r| r.strip_suffix('\'')));
    digits.is_some_and(|d| !d.is_empty() && d.bytes().all(|b| b.is_ascii_hexdigit()))
}

/// Checks that `text` is one plain SQL expression (or column type): names and numbers,
/// single-quoted strings that close, backtick-quoted names that close, the operators
/// `+ - * / % = < > ! & | ^ ~ , .` and parentheses that balance and never close more than
/// they opened. Refused: comments, `;`, variables (`@`), placeholders, double quotes (read
/// differently under `ANSI_QUOTES`), `:=`, `{…}` escapes, a backslash outside a string, and
/// subqueries (`SELECT`). Read as the target's session reads it (backslash escapes on), so text
/// that passes cannot reach past the parentheses it is written in.
pub fn check_expression(text: &str) -> std::result::Result<(), String> {
    let b = text.as_bytes();
    let mut depth = 0usize;
    let mut i = 0;
    if text.trim().is_empty() {
        return Err("it is empty".into());
    }
    while i < b.len() {
        let c = b[i];
        match c {
            b'\'' => {
                i += 1;
                loop {
                    match b.get(i) {
                        None => return Err("a string literal does not end".into()),
                        Some(b'\\') => i += 2,
                        Some(b'\'') if b.get(i + 1) == Some(&b'\'') => i += 2,
                        Some(b'\'') => {
                            i += 1;
                            break;
                        }
                        Some(_) => i += 1,
                    }
                }
                continue;
            }
            b'`' => {
                i += 1;
                loop {
                    match b.get(i) {
                        None => return Err("a quoted name does not end".into()),
                        Some(b'`') if b.get(i + 1) == Some(&b'`') => i += 2,
                        Some(b'`') => {
                            i += 1;
                            break;
                        }
                        Some(_) => i += 1,
                    }
                }
                continue;
            }
            b'(' => depth += 1,
            b')' => {
                depth = depth.checked_sub(1).ok_or("a parenthesis closes that was not opened")?;
            }
            b'-' if b.get(i + 1) == Some(&b'-') => return Err("it holds a comment".into()),
            b'/' if b.get(i + 1) == Some(&b'*') => return Err("it holds a comment".into()),
            b'*' if b.get(i + 1) == Some(&b'/') => return Err("it holds a comment".into()),
            b'#' => return Err("it holds a comment".into()),
            b';' => return Err("it holds a statement separator".into()),
            b'+' | b'-' | b'*' | b'/' | b'%' | b'=' | b'<' | b'>' | b'!' | b'&' | b'|' | b'^' | b'~' | b',' | b'.' => {}
            c if c.is_ascii_whitespace() => {}
            c if c.is_ascii_alphanumeric() || c == b'_' || c == b'$' || c >= 0x80 => {
                let start = i;
                while i < b.len() && (b[i].is_ascii_alphanumeric() || b[i] == b'_' || b[i] == b'$' || b[i] >= 0x80) {
                    i += 1;
                }
                if text[start..i].eq_ignore_ascii_case("SELECT") {
                    return Err("it holds a subquery".into());
                }
                continue;
            }
            c => return Err(format!("it holds the character {:?}", char::from(c))),
        }
        i += 1;
    }
    if depth != 0 {
        return Err("a parenthesis is not closed".into());
    }
    Ok(())
}

/// `text`, an expression [`check_expression`] accepts, with each column name in it (a quoted
/// name, or a bare word that is not a function call) replaced by what `rename` returns for it;
/// names it returns `None` for, string literals and everything else are kept as they are.
pub fn rename_names(text: &str, mut rename: impl FnMut(&str) -> Option<String>) -> String {
    let b = text.as_bytes();
    let mut out = String::with_capacity(text.len());
    let mut i = 0;
    while i < b.len() {
        let start = i;
        match b[i] {
            b'\'' => {
                i += 1;
                while i < b.len() {
                    match b[i] {
                        b'\\' => i += 2,
                        b'\'' if b.get(i + 1) == Some(&b'\'') => i += 2,
                        b'\'' => {
                            i += 1;
                            break;
                        }
                        _ => i += 1,
                    }
                }
                out.push_str(&text[start..i.min(b.len())]);
            }
            b'`' => {
                i += 1;
                let mut name = String::new();
                while i < b.len() {
                    if b[i] == b'`' {
                        if b.get(i + 1) == Some(&b'`') {
                            name.push('`');
                            i += 2;
                            continue;
                        }
                        i += 1;
                        break;
                    }
                    let next = text[i..].chars().next().map_or(1, char::len_utf8);
                    name.push_str(&text[i..i + next]);
                    i += next;
                }
                match rename(&name) {
                    Some(new) => out.push_str(&new),
                    None => out.push_str(&text[start..i.min(b.len())]),
                }
            }
            c if c.is_ascii_alphabetic() || c == b'_' || c == b'$' || c >= 0x80 => {
                while i < b.len() && (b[i].is_ascii_alphanumeric() || b[i] == b'_' || b[i] == b'$' || b[i] >= 0x80) {
                    i += 1;
                }
                let word = &text[start..i];
                let call = text[i..].trim_start().starts_with('(');
                match (!call).then(|| rename(word)).flatten() {
                    Some(new) => out.push_str(&new),
                    None => out.push_str(word),
                }
            }
            c if c.is_ascii_digit() => {
                while i < b.len() && (b[i].is_ascii_alphanumeric() || b[i] == b'_' || b[i] == b'.') {
                    i += 1;
                }
                out.push_str(&text[start..i]);
            }
            _ => {
                let next = text[i..].chars().next().map_or(1, char::len_utf8);
                i += next;
                out.push_str(&text[start..i]);
            }
        }
    }
    out
}

/// Whether `name` is a plain name (`utf8mb4`, `utf8mb4_unicode_ci`, `InnoDB`): what character
/// set, collation and engine names are, and all that is written for them unquoted.
pub fn is_plain_name(name: &str) -> bool {
    !name.is_empty() && name.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'_')
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn column_names_are_renamed_outside_strings_and_function_names() {
        let rename = |n: &str| match n.to_ascii_lowercase().as_str() {
            "qty" => Some("`amount`".to_owned()),
            "json_valid" => Some("`wrong`".to_owned()),
            "it`s" => Some("`its`".to_owned()),
            _ => None,
        };
        assert_eq!(rename_names("`qty` > 0 and qty < 10", rename), "`amount` > 0 and `amount` < 10");
        assert_eq!(rename_names("json_valid(`doc`)", rename), "json_valid(`doc`)");
        assert_eq!(rename_names("`note` <> 'qty' AND `it``s` = 1e5", rename), "`note` <> 'qty' AND `its` = 1e5");
        assert_eq!(rename_names("`c` = 'it''s \\' qty'", rename), "`c` = 'it''s \\' qty'");
        assert_eq!(rename_names("`ünï` >= 2.5", |_| None), "`ünï` >= 2.5");
    }

    fn maria(default: &str) -> Result<Option<String>, String> {
        render_default(DefaultStyle::Sql, "varchar", Some(default), "")
    }

    fn mysql(data_type: &str, default: &str, extra: &str) -> Result<Option<String>, String> {
        render_default(DefaultStyle::Value, data_type, Some(default), extra)
    }

    #[test]
    fn the_style_follows_the_server() {
        assert_eq!(DefaultStyle::of("10.11.6-MariaDB-log"), DefaultStyle::Sql);
        assert_eq!(DefaultStyle::of("5.5.5-10.4.32-MariaDB"), DefaultStyle::Sql);
        assert_eq!(DefaultStyle::of("10.2.6-MariaDB"), DefaultStyle::Value);
        assert_eq!(DefaultStyle::of("8.0.36"), DefaultStyle::Value);
        assert_eq!(DefaultStyle::of("8.4.0-commercial"), DefaultStyle::Value);
    }

    #[test]
    fn mariadb_literals_are_decoded_and_quoted_again() {
        assert_eq!(maria("'abc'").unwrap().as_deref(), Some("'abc'"));
        assert_eq!(maria("'it''s'").unwrap().as_deref(), Some("'it''s'"));
        assert_eq!(maria(r"'a\\b'").unwrap().as_deref(), Some(r"'a\\b'"));
        assert_eq!(maria(r"'a\'b'").unwrap().as_deref(), Some("'a''b'"));
        assert_eq!(maria(r"'line\nbreak'").unwrap().as_deref(), Some("'line\nbreak'"));
        assert_eq!(maria("NULL").unwrap().as_deref(), Some("NULL"));
        assert_eq!(maria("0").unwrap().as_deref(), Some("0"));
        assert_eq!(maria("-1.5e3").unwrap().as_deref(), Some("-1.5e3"));
        assert_eq!(maria("b'101'").unwrap().as_deref(), Some("b'101'"));
        assert_eq!(render_default(DefaultStyle::Sql, "int", None, "").unwrap(), None);
    }

    #[test]
    fn a_crafted_mariadb_default_stays_one_literal() {
        // What MariaDB reports for DEFAULT 'x''); DROP TABLE t; --'.
        let out = maria("'x''); DROP TABLE t; --'").unwrap().unwrap();
        assert_eq!(out, "'x''); DROP TABLE t; --'");
        assert_eq!(quoted_literal(&out).as_deref(), Some("x'); DROP TABLE t; --"));
        // A quote that is not doubled ends the literal: refused, not passed on.
        assert!(maria("'x'); DROP TABLE t; --'").is_err());
        // A trailing backslash would escape the closing quote.
        assert!(maria(r"'x\'").is_err());
    }

    #[test]
    fn current_timestamp_and_its_synonyms_are_written_one_way() {
        for (text, want) in [
            ("current_timestamp()", "CURRENT_TIMESTAMP"),
            ("CURRENT_TIMESTAMP", "CURRENT_TIMESTAMP"),
            ("current_timestamp(6)", "CURRENT_TIMESTAMP(6)"),
            ("now()", "CURRENT_TIMESTAMP"),
            ("NOW(3)", "CURRENT_TIMESTAMP(3)"),
            ("localtimestamp", "CURRENT_TIMESTAMP"),
        ] {
            assert_eq!(maria(text).unwrap().as_deref(), Some(want), "{text}");
            assert_eq!(mysql("timestamp", text, "DEFAULT_GENERATED").unwrap().as_deref(), Some(want), "{text}");
        }
        assert_eq!(mysql("datetime", "CURRENT_TIMESTAMP", "").unwrap().as_deref(), Some("CURRENT_TIMESTAMP"));
        assert!(current_timestamp("current_timestamp(7)").is_none());
        assert!(current_timestamp("now").is_none());
    }

    #[test]
    fn other_expressions_go_in_parentheses_after_the_check() {
        assert_eq!(maria("1 + 2").unwrap().as_deref(), Some("(1 + 2)"));
        assert_eq!(maria("curdate()").unwrap().as_deref(), Some("(curdate())"));
        assert_eq!(maria("concat('a',`b`)").unwrap().as_deref(), Some("(concat('a',`b`))"));
        assert_eq!(mysql("double", "rand()", "DEFAULT_GENERATED").unwrap().as_deref(), Some("(rand())"));
        for bad in [
            "1) ; DROP TABLE t; (1",
            "1), c2 INT DEFAULT (2",
            "(SELECT 1)",
            "1 -- x",
            "1 /* x */",
            "@x",
            "\"a\"",
            "a := 1",
            "concat('a)",
        ] {
            assert!(maria(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn mysql_values_are_quoted_unless_they_are_numbers_bits_or_hex() {
        assert_eq!(mysql("varchar", "abc", "").unwrap().as_deref(), Some("'abc'"));
        assert_eq!(mysql("varchar", "it's", "").unwrap().as_deref(), Some("'it''s'"));
        assert_eq!(mysql("varchar", r"a\b", "").unwrap().as_deref(), Some(r"'a\\b'"));
        assert_eq!(mysql("varchar", " padded ", "").unwrap().as_deref(), Some("' padded '"));
        assert_eq!(mysql("date", "2024-01-31", "").unwrap().as_deref(), Some("'2024-01-31'"));
        assert_eq!(mysql("datetime", "2024-01-31 10:00:00", "").unwrap().as_deref(), Some("'2024-01-31 10:00:00'"));
        assert_eq!(mysql("enum", "small", "").unwrap().as_deref(), Some("'small'"));
        assert_eq!(mysql("int", "42", "").unwrap().as_deref(), Some("42"));
        assert_eq!(mysql("decimal", "-0.50", "").unwrap().as_deref(), Some("-0.50"));
        assert_eq!(mysql("bit", "b'101'", "").unwrap().as_deref(), Some("b'101'"));
        assert_eq!(mysql("varbinary", "0x616263", "").unwrap().as_deref(), Some("0x616263"));
        // A text column whose default merely looks like a number or a function stays text.
        assert_eq!(mysql("varchar", "42", "").unwrap().as_deref(), Some("'42'"));
        assert_eq!(mysql("varchar", "NULL", "").unwrap().as_deref(), Some("'NULL'"));
        assert_eq!(mysql("varchar", "0x41", "").unwrap().as_deref(), Some("'0x41'"));
        assert_eq!(mysql("varchar", "CURRENT_TIMESTAMP", "").unwrap().as_deref(), Some("'CURRENT_TIMESTAMP'"));
    }

    #[test]
    fn a_crafted_mysql_value_stays_one_literal() {
        let out = mysql("varchar", "x'); DROP TABLE t; -- \\", "").unwrap().unwrap();
        assert_eq!(out, r"'x''); DROP TABLE t; -- \\'");
        assert_eq!(quoted_literal(&out).as_deref(), Some("x'); DROP TABLE t; -- \\"));
        // MySQL writes strings inside expression defaults with backslashed quotes: refused.
        assert!(mysql("varchar", r"concat(_utf8mb4\'a\')", "DEFAULT_GENERATED").is_err());
    }

    #[test]
    fn on_update_takes_only_current_timestamp() {
        assert_eq!(
            render_on_update("on update current_timestamp()").unwrap().as_deref(),
            Some("ON UPDATE CURRENT_TIMESTAMP")
        );
        assert_eq!(
            render_on_update("DEFAULT_GENERATED on update CURRENT_TIMESTAMP(6)").unwrap().as_deref(),
            Some("ON UPDATE CURRENT_TIMESTAMP(6)")
        );
        assert_eq!(render_on_update("auto_increment").unwrap(), None);
        assert!(render_on_update("on update 1; DROP TABLE t").is_err());
    }

    #[test]
    fn literals_escape_quotes_backslashes_and_nul() {
        assert_eq!(literal("a'b\\c\0"), r"'a''b\\c\0'");
    }

    #[test]
    fn column_types_and_names_pass_only_in_plain_form() {
        assert!(check_expression("enum('a','it''s','c\\'d')").is_ok());
        assert!(check_expression("decimal(10,2) unsigned zerofill").is_ok());
        assert!(check_expression("int) ; DROP TABLE t; --").is_err());
        assert!(is_plain_name("utf8mb4_unicode_ci"));
        assert!(!is_plain_name("utf8mb4 COLLATE x; DROP"));
    }
}
