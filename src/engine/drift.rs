//! Target tables changed by hand while a job writes to them: a table dropped or renamed, a
//! column dropped or given another type, a table dropped and created again.
//!
//! The appliers of both engines describe a table as its catalog shows it when they start and
//! again when a change meets an error (PostgreSQL: also with every batch), compare the two here,
//! and stop the job with a code no retry can help — [`TARGET_TABLE_MISSING`] or
//! [`TARGET_TABLE_CHANGED`] — naming the table, what changed and the fix. They do it before the
//! change that met the difference commits, so the checkpoint stays before that change and the
//! job, once the table is put right, resumes without skipping anything.

use super::error::EngineError;

/// A target table is gone (dropped or renamed) while the job writes to it.
pub const TARGET_TABLE_MISSING: &str = "TARGET_TABLE_MISSING";

/// A source table's columns changed in a way the job does not replay on the target
/// (`policy.ddl`), or cannot replay without losing values.
pub const SOURCE_SCHEMA_CHANGED: &str = "SOURCE_SCHEMA_CHANGED";

/// A target table lost a column the job writes, a column changed its type, or the table was
/// dropped and created again while the job writes to it.
pub const TARGET_TABLE_CHANGED: &str = "TARGET_TABLE_CHANGED";

/// A target table as its catalog describes it.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Shape {
    /// What tells this table from one created again under its name (PostgreSQL: its OID);
    /// `None` where the engine cannot tell.
    pub identity: Option<String>,
    /// Columns in order: name, and type as the catalog spells it.
    pub columns: Vec<(String, String)>,
}

impl Shape {
    fn column(&self, name: &str, case_insensitive: bool) -> Option<&(String, String)> {
        self.columns.iter().find(|(n, _)| if case_insensitive { n.eq_ignore_ascii_case(name) } else { n == name })
    }
}

/// What changed in a target table.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Drift {
    /// The table is gone.
    Missing,
    /// A table of that name exists, but not the one the job started writing to.
    Recreated,
    /// A column the job writes is gone.
    ColumnMissing {
        /// The column's target name.
        column: String,
    },
    /// A column the job writes has another type than when the job started.
    Retyped {
        /// The column's target name.
        column: String,
        /// Its type when the job started writing.
        was: String,
        /// Its type now.
        now: String,
    },
}

/// Compares a target table as it is `now` (`None`: missing) with what the job writes into it
/// (`written`: target column names) and with how it was when the job started writing
/// (`before`, when known). Column names compare exactly, or ignoring ASCII case where the
/// engine does (`case_insensitive`). The first difference found, or `None`.
pub fn compare(written: &[&str], before: Option<&Shape>, now: Option<&Shape>, case_insensitive: bool) -> Option<Drift> {
    let Some(now) = now else { return Some(Drift::Missing) };
    if let (Some(was), Some(is)) = (before.and_then(|b| b.identity.as_ref()), now.identity.as_ref())
        && was != is
    {
        return Some(Drift::Recreated);
    }
    for &column in written {
        let Some((_, now_type)) = now.column(column, case_insensitive) else {
            return Some(Drift::ColumnMissing { column: column.to_owned() });
        };
        if let Some((_, was_type)) = before.and_then(|b| b.column(column, case_insensitive))
            && was_type != now_type
        {
            return Some(Drift::Retyped { column: column.to_owned(), was: was_type.clone(), now: now_type.clone() });
        }
    }
    None
}

/// How a job continues from its checkpoint once the table is put right.
const RESUME: &str = "resume the job from its checkpoint (set spec.paused to true, then false; with `ferry run`, \
                      run the same file again)";
/// How a job starts over.
const START_OVER: &str = "start over with a new full transfer (delete the SyncJob and apply it again)";
/// What the job did about it, the same for every difference.
const STOPPED: &str = "The job stopped before committing the change that met it: its checkpoint stays before that \
                       change, so nothing is skipped";

impl Drift {
    /// The error that stops the job, for target table `table` (`schema.name`); `cause` is what
    /// the target reported (an error or warning code, never a message, which may quote row
    /// values).
    pub fn error(&self, table: &str, cause: Option<&str>) -> EngineError {
        let cause = cause.map(|c| format!(" ({c})")).unwrap_or_default();
        let (code, message) = match self {
            Drift::Missing => (
                TARGET_TABLE_MISSING,
                format!(
                    "target table {table} is missing: it was dropped or renamed on the target while the job wrote to \
                     it{cause}. {STOPPED}. Fix: {START_OVER}; or put the table back with the rows it held (rename it \
                     back, or restore it) and {RESUME}"
                ),
            ),
            Drift::Recreated => (
                TARGET_TABLE_CHANGED,
                format!(
                    "target table {table} was dropped and created again while the job wrote to it{cause}: the rows it \
                     held are gone from it. {STOPPED}. Fix: {START_OVER}"
                ),
            ),
            Drift::ColumnMissing { column } => (
                TARGET_TABLE_CHANGED,
                format!(
                    "target table {table} has no column {column}, which the job writes: it was dropped or renamed on \
                     the target{cause}. {STOPPED}. Fix: add the column back as it was and {RESUME}; the values it \
                     held are gone from the target, so for an exact copy {START_OVER}"
                ),
            ),
            Drift::Retyped { column, was, now } => (
                TARGET_TABLE_CHANGED,
                format!(
                    "column {column} of target table {table} is now of type {now}; it was {was} when the job started \
                     writing to it, and the job's values would be converted or cut{cause}. {STOPPED}. Fix: change the \
                     column back to {was} and {RESUME}; values the change of type converted stay so, and for an exact \
                     copy of those {START_OVER}. If the new type holds every value of the old one (a wider type), \
                     just resume: a restarted job takes the table as it finds it"
                ),
            ),
        };
        EngineError::Unrecoverable { code, message }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn shape(identity: Option<&str>, columns: &[(&str, &str)]) -> Shape {
        Shape {
            identity: identity.map(str::to_owned),
            columns: columns.iter().map(|(n, t)| ((*n).to_owned(), (*t).to_owned())).collect(),
        }
    }

    #[test]
    fn differences_are_found_in_order_of_weight() {
        let before = shape(Some("1"), &[("id", "bigint"), ("note", "text"), ("spare", "int")]);
        let written = ["id", "note"];
        assert_eq!(compare(&written, Some(&before), Some(&before), false), None);
        assert_eq!(compare(&written, Some(&before), None, false), Some(Drift::Missing));
        let recreated = shape(Some("2"), &[("id", "bigint")]);
        assert_eq!(compare(&written, Some(&before), Some(&recreated), false), Some(Drift::Recreated));
        let dropped = shape(Some("1"), &[("id", "bigint"), ("spare", "int")]);
        let missing = Some(Drift::ColumnMissing { column: "note".into() });
        assert_eq!(compare(&written, Some(&before), Some(&dropped), false), missing);
        let retyped = shape(Some("1"), &[("id", "integer"), ("note", "text")]);
        assert_eq!(
            compare(&written, Some(&before), Some(&retyped), false),
            Some(Drift::Retyped { column: "id".into(), was: "bigint".into(), now: "integer".into() })
        );
        // A column the job does not write may change; one it writes may be renamed in case only
        // where names ignore case.
        let other = shape(Some("1"), &[("ID", "bigint"), ("note", "text"), ("spare", "text")]);
        assert_eq!(compare(&written, Some(&before), Some(&other), true), None);
        assert_eq!(
            compare(&written, Some(&before), Some(&other), false),
            Some(Drift::ColumnMissing { column: "id".into() })
        );
        // Without a description from the start, only what is missing counts.
        assert_eq!(compare(&written, None, Some(&retyped), false), None);
    }

    #[test]
    fn the_error_names_the_table_the_change_and_the_fix_and_is_unrecoverable() {
        let e = Drift::Missing.error("public.t", Some("PostgreSQL error 42P01"));
        assert_eq!(e.code(), TARGET_TABLE_MISSING);
        let text = e.to_string();
        assert!(text.contains("public.t") && text.contains("42P01") && text.contains("new full transfer"), "{text}");
        assert!(crate::engine::error::is_unrecoverable(e.code()));
        let e = Drift::ColumnMissing { column: "note".into() }.error("public.t", None);
        assert_eq!(e.code(), TARGET_TABLE_CHANGED);
        assert!(e.to_string().contains("no column note"), "{e}");
        assert!(crate::engine::error::is_unrecoverable(e.code()));
    }
}
