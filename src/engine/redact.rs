//! Row values out of database error messages.
//!
//! A server quotes the values that broke a statement: PostgreSQL in an error's detail
//! (`Key (email)=(ann@example.com) already exists.`, `Failing row contains (…)`) and in some
//! messages (`invalid input syntax for type integer: "abc"`), MariaDB and MySQL in the message
//! itself (`Duplicate entry 'ann@example.com' for key 'email'`). Those messages end up in a job's
//! status, conditions, Events, termination message and logs, which more people can read than the
//! tables. This module turns a server's error into a [`ServerMessage`]: by default the error
//! class (SQLSTATE, or the MariaDB/MySQL error number and name) and the objects it names (table,
//! column, constraint, key), with every value replaced by [`HIDDEN`]; and the full text, shown
//! only for a job that opts in (`spec.debug.rowValuesInErrors`).
//!
//! It owns the rewriting only; the engines build the messages (`postgres::connect`,
//! `mysql::connect`), and the worker and `ferry run` choose which text to show.

use std::fmt;

/// What stands in for a hidden value.
pub const HIDDEN: &str = "<redacted>";

/// Appended to a message that had values hidden: how to see them.
pub const HOW_TO_SHOW: &str = "row values hidden; spec.debug.rowValuesInErrors shows them";

/// A database server's error message, as shown by default (without the row values it quoted)
/// and in full (for a job that opts in). Displays as the redacted text.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct ServerMessage {
    shown: String,
    /// The full text, when it differs from `shown`.
    full: Option<String>,
}

impl ServerMessage {
    /// A message that quotes no values (Ferry's own words, a network error).
    pub fn plain(text: impl Into<String>) -> ServerMessage {
        ServerMessage { shown: text.into(), full: None }
    }

    /// A message shown as `redacted` by default and as `full` to a job that opts in.
    pub fn new(redacted: String, full: String) -> ServerMessage {
        let full = (full != redacted).then_some(full);
        ServerMessage { shown: redacted, full }
    }

    /// The text without row values.
    pub fn redacted(&self) -> &str {
        &self.shown
    }

    /// The text with the row values the server quoted.
    pub fn with_values(&self) -> &str {
        self.full.as_deref().unwrap_or(&self.shown)
    }

    /// The text with row values when `row_values`, else without.
    pub fn text(&self, row_values: bool) -> &str {
        if row_values { self.with_values() } else { self.redacted() }
    }

    /// Whether the redacted text left anything out.
    pub fn hides_values(&self) -> bool {
        self.full.is_some()
    }

    /// This message with `prefix` before both texts.
    pub fn prefixed(self, prefix: &str) -> ServerMessage {
        ServerMessage { shown: format!("{prefix}{}", self.shown), full: self.full.map(|f| format!("{prefix}{f}")) }
    }

    /// This message with `suffix` after both texts.
    pub fn suffixed(self, suffix: &str) -> ServerMessage {
        ServerMessage { shown: format!("{}{suffix}", self.shown), full: self.full.map(|f| format!("{f}{suffix}")) }
    }
}

impl fmt::Display for ServerMessage {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.shown)
    }
}

impl From<String> for ServerMessage {
    fn from(text: String) -> ServerMessage {
        ServerMessage::plain(text)
    }
}

impl From<&str> for ServerMessage {
    fn from(text: &str) -> ServerMessage {
        ServerMessage::plain(text)
    }
}

impl From<&String> for ServerMessage {
    fn from(text: &String) -> ServerMessage {
        ServerMessage::plain(text.as_str())
    }
}

/// The fields of a PostgreSQL error report this module reads (the server's `ErrorResponse`).
#[derive(Clone, Copy, Debug, Default)]
pub struct PgReport<'a> {
    /// SQLSTATE, five characters.
    pub code: &'a str,
    /// The primary message.
    pub message: &'a str,
    /// DETAIL: where the server quotes row values.
    pub detail: Option<&'a str>,
    /// HINT.
    pub hint: Option<&'a str>,
    /// Schema of the object the error concerns.
    pub schema: Option<&'a str>,
    /// Table the error concerns.
    pub table: Option<&'a str>,
    /// Column the error concerns.
    pub column: Option<&'a str>,
    /// Data type the error concerns.
    pub datatype: Option<&'a str>,
    /// Constraint the error concerns.
    pub constraint: Option<&'a str>,
}

/// The names of SQLSTATEs a data path meets most, for the class shown with an error.
fn sqlstate_name(code: &str) -> Option<&'static str> {
    Some(match code {
        "22001" => "string_data_right_truncation",
        "22003" => "numeric_value_out_of_range",
        "22004" => "null_value_not_allowed",
        "22007" => "invalid_datetime_format",
        "22008" => "datetime_field_overflow",
        "22012" => "division_by_zero",
        "22021" => "character_not_in_repertoire",
        "22023" => "invalid_parameter_value",
        "22P02" => "invalid_text_representation",
        "22P04" => "bad_copy_file_format",
        "22P05" => "untranslatable_character",
        "23000" => "integrity_constraint_violation",
        "23001" => "restrict_violation",
        "23502" => "not_null_violation",
        "23503" => "foreign_key_violation",
        "23505" => "unique_violation",
        "23514" => "check_violation",
        "23P01" => "exclusion_violation",
        "25006" => "read_only_sql_transaction",
        "40001" => "serialization_failure",
        "40P01" => "deadlock_detected",
        "42501" => "insufficient_privilege",
        "42703" => "undefined_column",
        "42P01" => "undefined_table",
        "53100" => "disk_full",
        "55P03" => "lock_not_available",
        "57014" => "query_canceled",
        "P0001" => "raise_exception",
        _ => return None,
    })
}

/// A PostgreSQL error as a [`ServerMessage`]. The redacted text keeps the message with the
/// identifiers the report names, and the columns of a key (`key (email)`), and leaves out the
/// detail; both texts end with the SQLSTATE, its name and the table, column and constraint
/// from the report's own fields. `extra` (what the error means for the job) ends both.
pub fn postgres(r: &PgReport<'_>, extra: Option<&str>) -> ServerMessage {
    let class = &r.code[..r.code.len().min(2)];
    let names: Vec<&str> = [r.schema, r.table, r.column, r.datatype, r.constraint].into_iter().flatten().collect();
    let message = match class {
        // Data exceptions, integrity and check-option violations quote the value that broke them.
        "22" | "23" | "44" => mask_pg_literals(r.message, &names),
        // A RAISE in a trigger or function on the target: its text is the function's, and may
        // hold anything.
        "P0" => HIDDEN.to_owned(),
        _ => r.message.to_owned(),
    };
    let mut full = r.message.to_owned();
    let mut shown = message;
    if let Some(detail) = r.detail {
        full.push_str(&format!(" ({detail})"));
        if let Some(columns) = key_columns(detail) {
            shown.push_str(&format!(" (key ({columns}))"));
        } else if !VALUE_CLASSES.contains(&class) && !detail.contains("Failing row contains") {
            // Other classes' details name objects, sessions and settings.
            shown.push_str(&format!(" ({detail})"));
        }
    }
    let mut tail = String::new();
    if let Some(extra) = extra {
        tail = format!("; {extra}");
    } else if let Some(hint) = r.hint {
        // A hint names what to do, not what the row held.
        tail = format!("; hint: {hint}");
    }
    let mut class_text = format!("SQLSTATE {}", r.code);
    if let Some(name) = sqlstate_name(r.code) {
        class_text.push_str(&format!(" {name}"));
    }
    match (r.schema, r.table) {
        (Some(s), Some(t)) => class_text.push_str(&format!(", table {s}.{t}")),
        (None, Some(t)) => class_text.push_str(&format!(", table {t}")),
        _ => {}
    }
    if let Some(c) = r.column {
        class_text.push_str(&format!(", column {c}"));
    }
    if let Some(c) = r.constraint {
        class_text.push_str(&format!(", constraint {c}"));
    }
    let full = format!("{full}{tail} [{class_text}]");
    let shown = if shown == full_message(r) {
        format!("{shown}{tail} [{class_text}]")
    } else {
        format!("{shown}{tail} [{class_text}; {HOW_TO_SHOW}]")
    };
    ServerMessage::new(shown, full)
}

/// SQLSTATE classes whose messages and details quote row values: data exceptions, integrity
/// constraint violations, check-option violations, and PL/pgSQL's RAISE.
const VALUE_CLASSES: [&str; 4] = ["22", "23", "44", "P0"];

/// A report's message with its detail, as the full text has them.
fn full_message(r: &PgReport<'_>) -> String {
    match r.detail {
        Some(d) => format!("{} ({d})", r.message),
        None => r.message.to_owned(),
    }
}

/// The columns of `Key (a, b)=(…) …` in a detail.
fn key_columns(detail: &str) -> Option<&str> {
    let rest = detail.strip_prefix("Key (")?;
    // The first `)=(` ends the column list: columns come before values, so whatever a value
    // holds is never taken for a column.
    let end = rest.find(")=(")?;
    Some(&rest[..end])
}

/// `message` with every double-quoted literal that is not one of `names` (the objects the
/// report names) hidden, and hexadecimal byte sequences (`0xe2 0x82`) hidden.
fn mask_pg_literals(message: &str, names: &[&str]) -> String {
    let mut out = String::with_capacity(message.len());
    let mut rest = message;
    while let Some(open) = rest.find('"') {
        out.push_str(&mask_hex(&rest[..open]));
        let after = &rest[open + 1..];
        // PostgreSQL doubles a quote inside a quoted identifier; a value is printed as it is,
        // so a value holding `"` may end early here: what follows is masked as one more
        // literal or is plain text the value cannot reach past the message's end.
        let Some(close) = after.find('"') else {
            out.push('"');
            out.push_str(HIDDEN);
            return out;
        };
        let quoted = &after[..close];
        let encoding = out.ends_with("encoding ");
        if names.contains(&quoted) || encoding {
            out.push('"');
            out.push_str(quoted);
            out.push('"');
        } else {
            out.push('"');
            out.push_str(HIDDEN);
            out.push('"');
        }
        rest = &after[close + 1..];
    }
    out.push_str(&mask_hex(rest));
    out
}

/// `text` with byte sequences written `0x…` hidden.
fn mask_hex(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    // What followed the last hidden sequence (a space, a comma), written once the run ends.
    let mut after_hidden: Option<&str> = None;
    for word in text.split_inclusive(' ') {
        let bare = word.trim_end_matches([' ', ',', ':', ';']);
        let is_hex = bare.len() > 2
            && (bare.starts_with("0x") || bare.starts_with("0X"))
            && bare[2..].chars().all(|c| c.is_ascii_hexdigit());
        if is_hex {
            if after_hidden.is_none() {
                out.push_str(HIDDEN);
            }
            after_hidden = Some(&word[bare.len()..]);
        } else {
            out.push_str(after_hidden.take().unwrap_or_default());
            out.push_str(word);
        }
    }
    out.push_str(after_hidden.unwrap_or_default());
    out
}

/// MariaDB/MySQL error numbers whose messages name objects only (tables, columns, keys,
/// constraints, users, files), never a row's values: shown as the server wrote them.
const MYSQL_NO_VALUES: &[u16] = &[
    3, 1005, 1017, 1018, 1030, 1007, 1008, 1016, 1021, 1022, 1036, 1040, 1044, 1045, 1046, 1048, 1049, 1050, 1051,
    1053, 1054, 1060, 1061, 1064, 1068, 1091, 1114, 1142, 1143, 1146, 1152, 1153, 1156, 1158, 1159, 1160, 1161, 1205,
    1213, 1215, 1216, 1217, 1227, 1236, 1264, 1265, 1290, 1364, 1406, 1451, 1452, 1792, 1859, 3819, 4025,
];

/// A MariaDB/MySQL error number's name, where it is one a data path meets.
fn mysql_name(code: u16) -> Option<&'static str> {
    Some(match code {
        1022 => "ER_DUP_KEY",
        1048 => "ER_BAD_NULL_ERROR",
        1062 => "ER_DUP_ENTRY",
        1114 => "ER_RECORD_FILE_FULL",
        1146 => "ER_NO_SUCH_TABLE",
        1054 => "ER_BAD_FIELD_ERROR",
        1205 => "ER_LOCK_WAIT_TIMEOUT",
        1213 => "ER_LOCK_DEADLOCK",
        1216 => "ER_NO_REFERENCED_ROW",
        1217 => "ER_ROW_IS_REFERENCED",
        1264 => "ER_WARN_DATA_OUT_OF_RANGE",
        1265 => "WARN_DATA_TRUNCATED",
        1292 => "ER_TRUNCATED_WRONG_VALUE",
        1300 => "ER_INVALID_CHARACTER_STRING",
        1364 => "ER_NO_DEFAULT_FOR_FIELD",
        1366 => "ER_TRUNCATED_WRONG_VALUE_FOR_FIELD",
        1367 => "ER_ILLEGAL_VALUE_FOR_TYPE",
        1406 => "ER_DATA_TOO_LONG",
        1411 => "ER_WRONG_VALUE_FOR_TYPE",
        1451 => "ER_ROW_IS_REFERENCED_2",
        1452 => "ER_NO_REFERENCED_ROW_2",
        1525 => "ER_WRONG_VALUE",
        1586 => "ER_DUP_ENTRY_WITH_KEY_NAME",
        1690 => "ER_DATA_OUT_OF_RANGE",
        3819 => "ER_CHECK_CONSTRAINT_VIOLATED",
        4025 => "ER_CONSTRAINT_FAILED",
        _ => return None,
    })
}

/// A MariaDB/MySQL server error as a [`ServerMessage`], in the client's words
/// (``Server error: `ERROR 1062 (23000): …'``) followed by the error's name where known. The
/// redacted text rewrites the messages known to quote values by error number (a duplicate key's
/// entry, an incorrect value), keeps those known to name objects only, and hides every quoted
/// literal of any other (identifiers in backquotes stay).
pub fn mysql(code: u16, state: &str, message: &str) -> ServerMessage {
    let name = mysql_name(code).map(|n| format!(" [{n}]")).unwrap_or_default();
    let line = |m: &str| format!("Server error: `ERROR {code} ({state}): {m}'{name}");
    with_note(line(&mysql_message(code, message)), line(message))
}

/// The message of MariaDB/MySQL error `code` alone, followed by the error's number and name:
/// as [`mysql`], for a message that says on its own what it is (a duplicate key).
pub fn mysql_short(code: u16, message: &str) -> ServerMessage {
    let class = match mysql_name(code) {
        Some(n) => format!(" [ERROR {code} {n}]"),
        None => format!(" [ERROR {code}]"),
    };
    with_note(format!("{}{class}", mysql_message(code, message)), format!("{message}{class}"))
}

/// `redacted`, saying how to see the values when it hides any, and `full`.
fn with_note(redacted: String, full: String) -> ServerMessage {
    if redacted == full {
        return ServerMessage::plain(full);
    }
    ServerMessage::new(format!("{redacted} ({HOW_TO_SHOW})"), full)
}

/// The message of MariaDB/MySQL error `code` without the values it quotes.
pub fn mysql_message(code: u16, message: &str) -> String {
    let masked = match code {
        1062 | 1586 => mask_span(message, "entry '", &["' for key "]),
        1292 | 1366 | 1411 | 1525 => mask_span(message, "value: '", &["' for column ", "' for function ", "'"]),
        1300 => mask_span(message, "string: '", &["'"]),
        1367 => mask_span(message, " '", &["' value found"]),
        c if MYSQL_NO_VALUES.contains(&c) => return message.to_owned(),
        _ => None,
    };
    masked.unwrap_or_else(|| mask_quoted(message))
}

/// `message` with the value between `start` and the last of `ends` (the first of `ends` found
/// after it) hidden; `None` when `start` is not there.
fn mask_span(message: &str, start: &str, ends: &[&str]) -> Option<String> {
    let from = message.find(start)? + start.len();
    let rest = &message[from..];
    let to = ends.iter().find_map(|e| rest.rfind(e)).unwrap_or(rest.len());
    Some(format!("{}{HIDDEN}{}", &message[..from], &rest[to..]))
}

/// `text` with every `'…'` and `"…"` literal hidden; `` `…` `` identifiers stay. An unclosed
/// quote hides the rest.
pub fn mask_quoted(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    let mut chars = text.chars();
    while let Some(c) = chars.next() {
        match c {
            '`' => {
                out.push(c);
                for d in chars.by_ref() {
                    out.push(d);
                    if d == '`' {
                        break;
                    }
                }
            }
            '\'' | '"' => {
                out.push(c);
                out.push_str(HIDDEN);
                let mut closed = false;
                for d in chars.by_ref() {
                    if d == c {
                        closed = true;
                        break;
                    }
                }
                if closed {
                    out.push(c);
                }
            }
            _ => out.push(c),
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn pg<'a>(code: &'a str, message: &'a str, detail: Option<&'a str>) -> PgReport<'a> {
        PgReport { code, message, detail, schema: Some("public"), table: Some("users"), ..Default::default() }
    }

    #[test]
    fn a_postgres_unique_violation_keeps_class_table_constraint_and_key_columns_but_not_the_value() {
        let r = PgReport {
            constraint: Some("users_email_key"),
            ..pg(
                "23505",
                "duplicate key value violates unique constraint \"users_email_key\"",
                Some("Key (email)=(ann@example.com) already exists."),
            )
        };
        let m = postgres(&r, None);
        assert_eq!(
            m.redacted(),
            "duplicate key value violates unique constraint \"users_email_key\" (key (email)) \
             [SQLSTATE 23505 unique_violation, table public.users, constraint users_email_key; \
             row values hidden; spec.debug.rowValuesInErrors shows them]"
        );
        assert!(m.with_values().contains("Key (email)=(ann@example.com) already exists."), "{}", m.with_values());
        assert!(!m.to_string().contains("ann@"), "{m}");
    }

    #[test]
    fn a_failing_row_is_never_shown_and_the_objects_named_in_the_message_are() {
        let r = PgReport {
            constraint: Some("users_age_check"),
            ..pg(
                "23514",
                "new row for relation \"users\" violates check constraint \"users_age_check\"",
                Some("Failing row contains (7, ann@example.com, -1)."),
            )
        };
        let m = postgres(&r, None);
        assert!(
            m.redacted().starts_with("new row for relation \"users\" violates check constraint \"users_age_check\" [")
        );
        assert!(!m.redacted().contains("ann@"), "{m}");
        let nn = PgReport {
            column: Some("email"),
            ..pg(
                "23502",
                "null value in column \"email\" of relation \"users\" violates not-null constraint",
                Some("Failing row contains (7, null)."),
            )
        };
        let m = postgres(&nn, None);
        assert!(m.redacted().starts_with("null value in column \"email\" of relation \"users\" violates"), "{m}");
        assert!(m.redacted().contains("column email"), "{m}");
        assert!(!m.redacted().contains("Failing row"), "{m}");
    }

    #[test]
    fn values_quoted_in_a_postgres_message_are_hidden() {
        let cases = [
            (
                "22P02",
                "invalid input syntax for type integer: \"abc\"",
                "invalid input syntax for type integer: \"<redacted>\"",
            ),
            (
                "22003",
                "value \"99999999999\" is out of range for type integer",
                "value \"<redacted>\" is out of range for type integer",
            ),
            (
                "22008",
                "date/time field value out of range: \"2024-13-45\"",
                "date/time field value out of range: \"<redacted>\"",
            ),
            (
                "22021",
                "invalid byte sequence for encoding \"UTF8\": 0xe2 0x28",
                "invalid byte sequence for encoding \"UTF8\": <redacted>",
            ),
            ("22001", "value too long for type character varying(5)", "value too long for type character varying(5)"),
            ("P0001", "email ann@example.com is banned", "<redacted>"),
        ];
        for (code, message, want) in cases {
            let m = postgres(&PgReport { code, message, ..Default::default() }, None);
            assert!(m.redacted().starts_with(&format!("{want} [SQLSTATE {code}")), "{code}: {m}");
            assert!(m.with_values().starts_with(message), "{code}: {}", m.with_values());
        }
    }

    #[test]
    fn a_postgres_error_of_another_class_reads_as_the_server_wrote_it() {
        let m = postgres(
            &PgReport {
                code: "42P01",
                message: "relation \"public.orders\" does not exist",
                hint: Some("Create it."),
                ..Default::default()
            },
            None,
        );
        assert_eq!(
            m.redacted(),
            "relation \"public.orders\" does not exist; hint: Create it. [SQLSTATE 42P01 undefined_table]"
        );
        assert!(!m.hides_values());
    }

    #[test]
    fn a_key_list_never_reaches_into_the_values() {
        assert_eq!(key_columns("Key (a, b)=(1, x)=(y) already exists."), Some("a, b"));
        assert_eq!(key_columns("Key (email)=(a)=(b)"), Some("email"));
        assert_eq!(key_columns("Failing row contains (1)."), None);
    }

    #[test]
    fn mysql_messages_that_quote_values_are_rewritten_by_error_number() {
        let cases = [
            (
                1062,
                "Duplicate entry 'ann@example.com' for key 'users.email'",
                "Duplicate entry '<redacted>' for key 'users.email'",
            ),
            (1062, "Duplicate entry 'it' for key 'x' for key 'email'", "Duplicate entry '<redacted>' for key 'email'"),
            (1586, "Duplicate entry 'a-1' for key 'k'", "Duplicate entry '<redacted>' for key 'k'"),
            (
                1366,
                "Incorrect integer value: 'abc' for column `shop`.`t`.`n` at row 1",
                "Incorrect integer value: '<redacted>' for column `shop`.`t`.`n` at row 1",
            ),
            (
                1292,
                "Incorrect datetime value: '2024-13-01' for column 'd' at row 1",
                "Incorrect datetime value: '<redacted>' for column 'd' at row 1",
            ),
            (1292, "Truncated incorrect DOUBLE value: 'x1'", "Truncated incorrect DOUBLE value: '<redacted>'"),
            (1300, "Invalid utf8mb4 character string: 'F09F'", "Invalid utf8mb4 character string: '<redacted>'"),
            (1406, "Data too long for column 'name' at row 1", "Data too long for column 'name' at row 1"),
            (
                1452,
                "Cannot add or update a child row: a foreign key constraint fails (`shop`.`c`, CONSTRAINT `fk` FOREIGN KEY (`pid`) REFERENCES `p` (`id`))",
                "Cannot add or update a child row: a foreign key constraint fails (`shop`.`c`, CONSTRAINT `fk` FOREIGN KEY (`pid`) REFERENCES `p` (`id`))",
            ),
            (1146, "Table 'shop.orders' doesn't exist", "Table 'shop.orders' doesn't exist"),
            (
                1690,
                "BIGINT UNSIGNED value is out of range in '(`shop`.`t`.`n` - 5)'",
                "BIGINT UNSIGNED value is out of range in '<redacted>'",
            ),
            (
                9999,
                "Something about 'secret' and \"other\" in `t`",
                "Something about '<redacted>' and \"<redacted>\" in `t`",
            ),
        ];
        for (code, message, want) in cases {
            assert_eq!(mysql_message(code, message), want, "{code}");
        }
    }

    #[test]
    fn a_mysql_error_keeps_number_state_and_name_and_says_how_to_see_the_value() {
        let m = mysql(1062, "23000", "Duplicate entry 'ann@example.com' for key 'email'");
        assert_eq!(
            m.redacted(),
            "Server error: `ERROR 1062 (23000): Duplicate entry '<redacted>' for key 'email'' [ER_DUP_ENTRY] \
             (row values hidden; spec.debug.rowValuesInErrors shows them)"
        );
        assert_eq!(
            m.with_values(),
            "Server error: `ERROR 1062 (23000): Duplicate entry 'ann@example.com' for key 'email'' [ER_DUP_ENTRY]"
        );
        let plain = mysql(1146, "42S02", "Table 'shop.orders' doesn't exist");
        assert!(!plain.hides_values());
    }

    #[test]
    fn quoted_literals_are_hidden_and_identifiers_kept_even_when_unbalanced() {
        assert_eq!(mask_quoted("a 'x' `id` \"y\""), "a '<redacted>' `id` \"<redacted>\"");
        assert_eq!(mask_quoted("open 'rest of it"), "open '<redacted>");
        assert_eq!(mask_quoted("`a'b` 'c'"), "`a'b` '<redacted>'");
    }

    #[test]
    fn a_message_chooses_its_text_by_the_opt_in() {
        let m = ServerMessage::new("a <redacted>".into(), "a secret".into());
        assert_eq!(m.text(false), "a <redacted>");
        assert_eq!(m.text(true), "a secret");
        assert_eq!(m.prefixed("x: ").text(true), "x: a secret");
        assert_eq!(ServerMessage::from("plain").text(true), "plain");
    }
}
