//! DDL statements from the binary log: what kind, which tables, and the statement rewritten for
//! the target's names.
//!
//! A QUERY event carries the statement text exactly as the client (or the server, for generated
//! statements) wrote it, plus the session's default database. The change stream needs to know
//! whether such a statement touches a replicated table and, when DDL replay is on, to run it on
//! the target with the tables renamed. A full SQL grammar is not needed for that: the statements
//! that matter have their table names in fixed places, so a small tokenizer and a keyword-driven
//! reader are enough, and everything the reader does not recognise is reported as
//! [`StatementKind::Other`] rather than guessed at.
//!
//! The rewrite replaces only the byte spans of table references, so comments, spacing and
//! literals survive untouched and the target sees the statement the source saw.

use std::ops::Range;

use crate::api::DdlKind;

/// What a statement does, as far as replicating tables is concerned.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum StatementKind {
    /// A DDL statement on a (non-temporary) table or one of its indexes.
    Ddl(DdlKind),
    /// `CREATE DATABASE` or `CREATE SCHEMA`.
    CreateDatabase,
    /// `DROP DATABASE` or `DROP SCHEMA`.
    DropDatabase,
    /// `ALTER DATABASE` or `ALTER SCHEMA`.
    AlterDatabase,
    /// Anything else: DML, transaction control, grants, views, routines, temporary tables, and
    /// whatever this reader does not recognise.
    Other,
}

/// A table named by a statement.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub struct TableRef {
    /// The database the reference names, `None` when it is unqualified (the session's default
    /// database applies).
    pub database: Option<String>,
    /// The table name, without quotes and with doubled quote characters undone.
    pub name: String,
    /// Byte range of the whole reference in the statement text, qualifier and quotes included.
    pub span: Range<usize>,
}

/// What [`parse`] found in one statement.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Statement {
    /// The kind of statement.
    pub kind: StatementKind,
    /// Every table the statement names, in order of appearance: e.g. `RENAME TABLE a TO b, c TO d`
    /// gives a, b, c, d; `DROP TABLE a, b` gives a, b; `ALTER TABLE a RENAME TO b` gives a, b;
    /// `CREATE TABLE a LIKE b` gives a, b; `CREATE INDEX i ON t` gives t. Tables named by
    /// `REFERENCES` (foreign keys), by `EXCHANGE PARTITION ... WITH TABLE` and by the `FROM`/`JOIN`
    /// of a `CREATE TABLE ... SELECT` are included too. Empty for [`StatementKind::Other`].
    pub tables: Vec<TableRef>,
    /// For `CREATE`/`DROP`/`ALTER DATABASE`: the database name; `None` for an `ALTER DATABASE`
    /// that names none (it applies to the session's default database).
    pub database: Option<String>,
    /// True when the statement changes a table's columns: `ALTER TABLE` with anything other than
    /// pure index, partition or option changes (an unrecognised clause counts as a change), or
    /// `CREATE TABLE ... SELECT`.
    pub changes_columns: bool,
    /// For `ALTER TABLE ... RENAME [TO|AS] x` and `RENAME TABLE`: pairs (from, to) of indexes into
    /// `tables`.
    pub renames: Vec<(usize, usize)>,
}

impl Statement {
    fn other() -> Self {
        Statement::of(StatementKind::Other)
    }

    fn of(kind: StatementKind) -> Self {
        Statement { kind, tables: Vec::new(), database: None, changes_columns: false, renames: Vec::new() }
    }

    fn ddl(kind: DdlKind) -> Self {
        Statement::of(StatementKind::Ddl(kind))
    }
}

/// Classifies one statement and finds the tables it names.
///
/// Never fails: text that cannot be read as one of the recognised forms is
/// [`StatementKind::Other`], and a recognised form whose table name cannot be read keeps its kind
/// with fewer tables. Only the first statement is read when the text holds several.
pub fn parse(sql: &str) -> Statement {
    Parser::new(sql).statement()
}

/// Rewrites every table reference of `stmt` (as [`parse`] returned it for `sql`) with
/// `map(db_or_default, name) -> Option<(target_db, target_name)>`, where `db_or_default` is the
/// reference's database, or `default_db` when it is unqualified.
///
/// References mapped to `None`, and unqualified references when there is no default database
/// (`None` or empty, as a QUERY event without one reports it), are left exactly as written.
/// Mapped references are written fully qualified and backtick-quoted, with backticks inside names
/// doubled. Everything else in the text (comments, spacing, literals) is kept byte for byte.
pub fn rewrite(
    sql: &str,
    stmt: &Statement,
    default_db: Option<&str>,
    map: impl Fn(&str, &str) -> Option<(String, String)>,
) -> String {
    let default_db = default_db.filter(|d| !d.is_empty());
    let mut refs: Vec<&TableRef> = stmt.tables.iter().collect();
    refs.sort_by_key(|t| t.span.start);
    let mut out = String::with_capacity(sql.len() + 32);
    let mut pos = 0;
    for t in refs {
        // A statement parsed from other text would give spans that do not fit; skipping them
        // keeps the text intact instead of panicking.
        let (Some(before), true) = (sql.get(pos..t.span.start), sql.get(t.span.clone()).is_some()) else {
            continue;
        };
        let Some(db) = t.database.as_deref().or(default_db) else { continue };
        let Some((target_db, target_name)) = map(db, &t.name) else { continue };
        out.push_str(before);
        out.push_str(&quote(&target_db));
        out.push('.');
        out.push_str(&quote(&target_name));
        // A back-quote right after the name (`FROM t`alias``) would read as a doubled one,
        // inside the quoted name.
        if sql.as_bytes().get(t.span.end) == Some(&b'`') {
            out.push(' ');
        }
        pos = t.span.end;
    }
    out.push_str(sql.get(pos..).unwrap_or_default());
    out
}

/// The statement to run on the target for `stmt` (as [`parse`] returned it for `sql`): every
/// table reference mapped with `map` as [`rewrite`] does, and only the part of the statement
/// that concerns mapped tables.
///
/// - `DROP TABLE a, b`: the tables `map` does not know are left out of the list.
/// - `RENAME TABLE a TO b, c TO d`: pairs of two unknown tables are left out; a pair that moves
///   a table into or out of what `map` knows cannot be carried: `Err`.
/// - Any other statement is about its first table: when `map` does not know it, there is
///   nothing to run (`Ok(None)`); when it does, every other table the statement names
///   (`REFERENCES`, `LIKE`, `EXCHANGE PARTITION … WITH TABLE`, `RENAME TO`) must be known too,
///   or `Err` names the one that is not.
///
/// `Ok(None)` when nothing remains to run. A text holding more than one statement is refused.
pub fn for_target(
    sql: &str,
    stmt: &Statement,
    default_db: Option<&str>,
    map: impl Fn(&str, &str) -> Option<(String, String)>,
) -> std::result::Result<Option<String>, String> {
    let toks = tokenize(sql);
    if let Some(semi) = toks.iter().position(|t| t.tok == Tok::Semi)
        && toks[semi + 1..].iter().any(|t| t.tok != Tok::Semi)
    {
        return Err("the text holds more than one statement".into());
    }
    let default_db = default_db.filter(|d| !d.is_empty());
    let shown = |t: &TableRef| match t.database.as_deref().or(default_db) {
        Some(db) => format!("{db}.{}", t.name),
        None => t.name.clone(),
    };
    let mapped = |t: &TableRef| -> Option<(String, String)> { map(t.database.as_deref().or(default_db)?, &t.name) };
    let target: Vec<Option<(String, String)>> = stmt.tables.iter().map(mapped).collect();
    if stmt.tables.is_empty() || target.iter().all(Option::is_some) {
        return Ok(Some(rewrite(sql, stmt, default_db, map)));
    }
    let written = |(db, name): &(String, String)| format!("{}.{}", quote(db), quote(name));
    // The text before the first table and after the last, kept as written.
    let (Some(first), Some(last)) = (stmt.tables.first(), stmt.tables.last()) else { return Ok(None) };
    let (Some(head), Some(tail)) = (sql.get(..first.span.start), sql.get(last.span.end..)) else {
        return Err("the statement's table names could not be located".into());
    };
    match stmt.kind {
        StatementKind::Ddl(DdlKind::DropTable) => {
            let kept: Vec<String> = target.iter().flatten().map(written).collect();
            if kept.is_empty() {
                return Ok(None);
            }
            Ok(Some(format!("{head}{}{tail}", kept.join(", "))))
        }
        StatementKind::Ddl(DdlKind::RenameTable) => {
            let mut kept = Vec::new();
            let mut paired = vec![false; stmt.tables.len()];
            for &(from, to) in &stmt.renames {
                paired[from] = true;
                paired[to] = true;
                match (&target[from], &target[to]) {
                    (Some(f), Some(t)) => kept.push(format!("{} TO {}", written(f), written(t))),
                    (None, None) => {}
                    (Some(_), None) => {
                        return Err(format!(
                            "it renames {} to {}, which the job does not select",
                            shown(&stmt.tables[from]),
                            shown(&stmt.tables[to])
                        ));
                    }
                    (None, Some(_)) => {
                        return Err(format!(
                            "it renames {}, which the job does not select, to {}, which it does",
                            shown(&stmt.tables[from]),
                            shown(&stmt.tables[to])
                        ));
                    }
                }
            }
            if let Some(i) = paired.iter().position(|p| !p) {
                return Err(format!("it names {} outside a pair this reader understands", shown(&stmt.tables[i])));
            }
            if kept.is_empty() {
                return Ok(None);
            }
            Ok(Some(format!("{head}{}{tail}", kept.join(", "))))
        }
        _ => {
            if target[0].is_none() {
                return Ok(None);
            }
            let i = target.iter().position(Option::is_none).unwrap_or_default();
            Err(format!(
                "besides {} it names {}, which the job does not select",
                shown(&stmt.tables[0]),
                shown(&stmt.tables[i])
            ))
        }
    }
}

fn quote(name: &str) -> String {
    format!("`{}`", name.replace('`', "``"))
}

#[derive(Clone, Debug, PartialEq, Eq)]
enum Tok {
    /// An unquoted identifier, keyword or number.
    Word,
    /// A backtick-quoted identifier, unescaped.
    Ident(String),
    /// A quoted string; double-quoted ones may be identifiers under `ANSI_QUOTES`.
    Str {
        double: bool,
        closed: bool,
    },
    Dot,
    Comma,
    Open,
    Close,
    Semi,
    Punct,
}

#[derive(Clone, Debug)]
struct Token {
    tok: Tok,
    span: Range<usize>,
}

fn is_word_byte(c: u8) -> bool {
    // Bytes of multi-byte UTF-8 characters count as word bytes, so every token boundary falls on
    // an ASCII byte and therefore on a char boundary.
    c.is_ascii_alphanumeric() || c == b'_' || c == b'$' || c >= 0x80
}

/// Scans a quoted token starting at `start` (the opening quote): its end and whether it closed.
fn scan_quoted(b: &[u8], start: usize, quote: u8, backslash: bool) -> (usize, bool) {
    let mut i = start + 1;
    while i < b.len() {
        let c = b[i];
        if backslash && c == b'\\' {
            i += 2;
        } else if c == quote {
            if b.get(i + 1) == Some(&quote) {
                i += 2;
            } else {
                return (i + 1, true);
            }
        } else {
            i += 1;
        }
    }
    (b.len(), false)
}

fn tokenize(sql: &str) -> Vec<Token> {
    let b = sql.as_bytes();
    let mut toks = Vec::new();
    let mut i = 0;
    // Inside `/*! ... */` or `/*M! ... */`: the server ran the content (it is newer than any
    // version gate mysqldump or the server itself writes), so it is read as code.
    let mut executable = false;
    while i < b.len() {
        let c = b[i];
        if c.is_ascii_whitespace() {
            i += 1;
            continue;
        }
        if executable && c == b'*' && b.get(i + 1) == Some(&b'/') {
            executable = false;
            i += 2;
            continue;
        }
        if c == b'/' && b.get(i + 1) == Some(&b'*') {
            let rest = &b[i + 2..];
            let marker = if rest.starts_with(b"!") {
                1
            } else if rest.starts_with(b"M!") {
                2
            } else {
                0
            };
            if marker > 0 && !executable {
                executable = true;
                i += 2 + marker;
                let digits = b[i..].iter().take(6).take_while(|d| d.is_ascii_digit()).count();
                i += digits;
            } else {
                i = match find(b, i + 2, b"*/") {
                    Some(end) => end + 2,
                    None => b.len(),
                };
            }
            continue;
        }
        let dash_comment = c == b'-'
            && b.get(i + 1) == Some(&b'-')
            && b.get(i + 2).is_none_or(|x| x.is_ascii_whitespace() || x.is_ascii_control());
        if c == b'#' || dash_comment {
            i = match find(b, i, b"\n") {
                Some(end) => end + 1,
                None => b.len(),
            };
            continue;
        }
        let start = i;
        let tok = match c {
            b'`' => {
                let (end, closed) = scan_quoted(b, i, b'`', false);
                i = end;
                let inner = sql.get(start + 1..if closed { end - 1 } else { end }).unwrap_or_default();
                Tok::Ident(inner.replace("``", "`"))
            }
            b'\'' | b'"' => {
                let (end, closed) = scan_quoted(b, i, c, true);
                i = end;
                Tok::Str { double: c == b'"', closed }
            }
            b'.' => {
                i += 1;
                Tok::Dot
            }
            b',' => {
                i += 1;
                Tok::Comma
            }
            b'(' => {
                i += 1;
                Tok::Open
            }
            b')' => {
                i += 1;
                Tok::Close
            }
            b';' => {
                i += 1;
                Tok::Semi
            }
            _ if is_word_byte(c) => {
                while i < b.len() && is_word_byte(b[i]) {
                    i += 1;
                }
                Tok::Word
            }
            _ => {
                i += 1;
                Tok::Punct
            }
        };
        toks.push(Token { tok, span: start..i });
    }
    toks
}

fn find(haystack: &[u8], from: usize, needle: &[u8]) -> Option<usize> {
    haystack.get(from..)?.windows(needle.len()).position(|w| w == needle).map(|p| p + from)
}

/// First words of `ALTER TABLE` clauses that change table options only.
const TABLE_OPTIONS: &[&str] = &[
    "ALGORITHM",
    "AUTOEXTEND_SIZE",
    "AUTO_INCREMENT",
    "AVG_ROW_LENGTH",
    "CHARACTER",
    "CHARSET",
    "CHECKSUM",
    "COLLATE",
    "COMMENT",
    "COMPRESSION",
    "CONNECTION",
    "DATA",
    "DEFAULT",
    "DELAY_KEY_WRITE",
    "DISABLE",
    "ENABLE",
    "ENCRYPTED",
    "ENCRYPTION",
    "ENCRYPTION_KEY_ID",
    "ENGINE",
    "ENGINE_ATTRIBUTE",
    "FORCE",
    "IETF_QUOTES",
    "INDEX",
    "INSERT_METHOD",
    "KEY_BLOCK_SIZE",
    "LOCK",
    "MAX_ROWS",
    "MIN_ROWS",
    "PACK_KEYS",
    "PAGE_CHECKSUM",
    "PAGE_COMPRESSED",
    "PAGE_COMPRESSION_LEVEL",
    "PARTITION",
    "PASSWORD",
    "ROW_FORMAT",
    "SECONDARY_ENGINE",
    "SECONDARY_ENGINE_ATTRIBUTE",
    "SECONDARY_LOAD",
    "SECONDARY_UNLOAD",
    "STATS_AUTO_RECALC",
    "STATS_PERSISTENT",
    "STATS_SAMPLE_PAGES",
    "STORAGE",
    "TABLESPACE",
    "TABLE_CHECKSUM",
    "TRANSACTIONAL",
    "UNION",
    "UPGRADE",
    "WITH",
    "WITHOUT",
];

/// First words of `ALTER TABLE` clauses that take a list of partition names (or, for `ORDER BY`,
/// column names): the comma-separated items that follow belong to them, not to new clauses.
const LIST_CLAUSES: &[&str] = &[
    "ANALYZE",
    "CHECK",
    "COALESCE",
    "DISCARD",
    "EXCHANGE",
    "IMPORT",
    "OPTIMIZE",
    "ORDER",
    "REBUILD",
    "REMOVE",
    "REORGANIZE",
    "REPAIR",
    "TRUNCATE",
];

/// Words after `ADD` or `DROP` that make the clause about an index or constraint, not a column.
const INDEX_WORDS: &[&str] =
    &["CHECK", "CONSTRAINT", "FOREIGN", "FULLTEXT", "INDEX", "KEY", "PRIMARY", "SPATIAL", "UNIQUE"];

/// Words that end the table list of a `FROM` clause.
const AFTER_FROM: &[&str] =
    &["EXCEPT", "GROUP", "HAVING", "INTERSECT", "INTO", "LIMIT", "ORDER", "PROCEDURE", "UNION", "WHERE", "WINDOW"];

/// Per parenthesis level while looking for the tables of a `SELECT`.
#[derive(Clone, Copy, Default)]
struct Frame {
    select: bool,
    from: bool,
    expect_table: bool,
}

struct Parser<'a> {
    sql: &'a str,
    toks: Vec<Token>,
}

impl<'a> Parser<'a> {
    fn new(sql: &'a str) -> Self {
        let mut toks = tokenize(sql);
        // A QUERY event holds one statement; a second one after `;` is none of this one's business.
        if let Some(cut) = toks.iter().position(|t| t.tok == Tok::Semi) {
            toks.truncate(cut);
        }
        Parser { sql, toks }
    }

    fn text(&self, i: usize) -> &'a str {
        self.toks.get(i).and_then(|t| self.sql.get(t.span.clone())).unwrap_or_default()
    }

    fn is(&self, i: usize, tok: &Tok) -> bool {
        self.toks.get(i).is_some_and(|t| &t.tok == tok)
    }

    fn kw(&self, i: usize, keyword: &str) -> bool {
        self.is(i, &Tok::Word) && self.text(i).eq_ignore_ascii_case(keyword)
    }

    fn kw_any(&self, i: usize, keywords: &[&str]) -> bool {
        keywords.iter().any(|k| self.kw(i, k))
    }

    fn skip_if_exists(&self, i: usize) -> usize {
        if self.kw(i, "IF") && self.kw(i + 1, "EXISTS") { i + 2 } else { i }
    }

    fn skip_if_not_exists(&self, i: usize) -> usize {
        if self.kw(i, "IF") && self.kw(i + 1, "NOT") && self.kw(i + 2, "EXISTS") { i + 3 } else { i }
    }

    /// MariaDB's lock wait clause (`WAIT n` or `NOWAIT`).
    fn skip_wait(&self, i: usize) -> usize {
        if self.kw(i, "WAIT") {
            i + 2
        } else if self.kw(i, "NOWAIT") {
            i + 1
        } else {
            i
        }
    }

    fn ident(&self, i: usize) -> Option<String> {
        let t = self.toks.get(i)?;
        match &t.tok {
            Tok::Word => Some(self.text(i).to_owned()),
            Tok::Ident(name) => Some(name.clone()),
            // A string literal is never valid where a name is expected, so a double-quoted token
            // there is an identifier written under ANSI_QUOTES.
            Tok::Str { double: true, closed } => {
                let end = if *closed { t.span.end - 1 } else { t.span.end };
                Some(self.sql.get(t.span.start + 1..end)?.replace("\"\"", "\""))
            }
            _ => None,
        }
    }

    /// A possibly qualified table name at `i`, and the index after it.
    fn table_ref(&self, i: usize) -> Option<(TableRef, usize)> {
        let first = self.ident(i)?;
        let start = self.toks.get(i)?.span.start;
        if self.is(i + 1, &Tok::Dot)
            && let Some(name) = self.ident(i + 2)
        {
            let end = self.toks.get(i + 2)?.span.end;
            return Some((TableRef { database: Some(first), name, span: start..end }, i + 3));
        }
        let end = self.toks.get(i)?.span.end;
        Some((TableRef { database: None, name: first, span: start..end }, i + 1))
    }

    fn statement(&self) -> Statement {
        let mut i = 0;
        if self.kw(0, "SET") && self.kw(1, "STATEMENT") {
            // MariaDB's per-statement variables wrap the real statement: SET STATEMENT v=1 FOR ...
            match (2..self.toks.len()).find(|&j| self.kw(j, "FOR")) {
                Some(j) => i = j + 1,
                None => return Statement::other(),
            }
        }
        let rest = i + 1;
        if self.kw(i, "CREATE") {
            self.create(rest)
        } else if self.kw(i, "ALTER") {
            self.alter(rest)
        } else if self.kw(i, "DROP") {
            self.drop(rest)
        } else if self.kw(i, "RENAME") {
            self.rename(rest)
        } else if self.kw(i, "TRUNCATE") {
            self.truncate(rest)
        } else {
            Statement::other()
        }
    }

    fn create(&self, mut i: usize) -> Statement {
        if self.kw(i, "OR") && self.kw(i + 1, "REPLACE") {
            i += 2;
        }
        if self.kw(i, "TABLE") {
            return self.create_table(i + 1);
        }
        if self.kw_any(i, &["DATABASE", "SCHEMA"]) {
            return self.database(StatementKind::CreateDatabase, self.skip_if_not_exists(i + 1));
        }
        if self.kw_any(i, &["ONLINE", "OFFLINE"]) {
            i += 1;
        }
        if self.kw_any(i, &["UNIQUE", "FULLTEXT", "SPATIAL"]) {
            i += 1;
        }
        if self.kw(i, "INDEX") {
            return self.index_on(DdlKind::CreateIndex, self.skip_if_not_exists(i + 1));
        }
        // Includes CREATE TEMPORARY TABLE: temporary tables live in one session and are never
        // replicated as tables.
        Statement::other()
    }

    fn create_table(&self, i: usize) -> Statement {
        let mut st = Statement::ddl(DdlKind::CreateTable);
        let Some((table, next)) = self.table_ref(self.skip_if_not_exists(i)) else { return st };
        st.tables.push(table);
        let like = if self.kw(next, "LIKE") {
            Some(next + 1)
        } else if self.is(next, &Tok::Open) && self.kw(next + 1, "LIKE") {
            Some(next + 2)
        } else {
            None
        };
        if let Some(j) = like {
            st.tables.extend(self.table_ref(j).map(|(t, _)| t));
            return st;
        }
        st.tables.extend(self.scan_refs(next, self.toks.len()));
        // Column definitions cannot hold a subquery, so any SELECT is the statement's own.
        st.changes_columns = (next..self.toks.len()).any(|j| self.kw(j, "SELECT"));
        st
    }

    /// `CREATE INDEX` and `DROP INDEX`, from the index name on.
    fn index_on(&self, kind: DdlKind, i: usize) -> Statement {
        let mut st = Statement::ddl(kind);
        // `USING BTREE` may stand between the index name and ON.
        if let Some(on) = (i + 1..self.toks.len()).find(|&j| self.kw(j, "ON")) {
            st.tables.extend(self.table_ref(on + 1).map(|(t, _)| t));
        }
        st
    }

    fn alter(&self, mut i: usize) -> Statement {
        while self.kw_any(i, &["ONLINE", "OFFLINE", "IGNORE"]) {
            i += 1;
        }
        if self.kw(i, "TABLE") {
            self.alter_table(i + 1)
        } else if self.kw_any(i, &["DATABASE", "SCHEMA"]) {
            self.alter_database(i + 1)
        } else {
            Statement::other()
        }
    }

    fn alter_table(&self, i: usize) -> Statement {
        let mut st = Statement::ddl(DdlKind::AlterTable);
        let Some((table, next)) = self.table_ref(self.skip_if_exists(i)) else {
            st.changes_columns = true;
            return st;
        };
        st.tables.push(table);
        // Tables after the altered one, each marked when it is the target of a rename.
        let mut found: Vec<(TableRef, bool)> = Vec::new();
        let mut in_list = false;
        for (start, end) in self.clauses(self.skip_wait(next)) {
            let j = self.skip_wait(start);
            if j < end {
                let (changes, list) = self.alter_clause(j, &mut found, in_list);
                st.changes_columns |= changes;
                in_list = list;
            }
            found.extend(self.scan_refs(start, end).into_iter().map(|t| (t, false)));
        }
        found.sort_by_key(|(t, _)| t.span.start);
        found.dedup_by_key(|(t, _)| t.span.start);
        for (t, renamed) in found {
            if renamed {
                st.renames.push((0, st.tables.len()));
            }
            st.tables.push(t);
        }
        st
    }

    /// Token ranges of the comma-separated clauses from `i` to the end.
    fn clauses(&self, i: usize) -> Vec<(usize, usize)> {
        let mut out = Vec::new();
        let mut depth = 0usize;
        let mut start = i;
        for j in i..self.toks.len() {
            match self.toks[j].tok {
                Tok::Open => depth += 1,
                Tok::Close => depth = depth.saturating_sub(1),
                Tok::Comma if depth == 0 => {
                    out.push((start, j));
                    start = j + 1;
                }
                _ => {}
            }
        }
        if start < self.toks.len() {
            out.push((start, self.toks.len()));
        }
        out
    }

    /// One `ALTER TABLE` clause starting at `j`: whether it changes columns, and whether the
    /// clauses after it may be items of its list. A rename target is added to `found`.
    fn alter_clause(&self, j: usize, found: &mut Vec<(TableRef, bool)>, in_list: bool) -> (bool, bool) {
        let unknown = (!in_list, in_list);
        if !self.is(j, &Tok::Word) {
            return unknown;
        }
        let word = self.text(j).to_ascii_uppercase();
        match word.as_str() {
            "ADD" => {
                let k = self.skip_if_not_exists(j + 1);
                if self.kw(k, "PARTITION") { (false, true) } else { (!self.kw_any(k, INDEX_WORDS), false) }
            }
            "DROP" => {
                if self.kw(j + 1, "PARTITION") {
                    (false, true)
                } else {
                    (!self.kw_any(j + 1, INDEX_WORDS), false)
                }
            }
            "MODIFY" | "CHANGE" | "CONVERT" => (true, false),
            "ALTER" => (!self.kw_any(j + 1, &["INDEX", "KEY", "CHECK", "CONSTRAINT"]), false),
            "RENAME" => {
                if self.kw(j + 1, "COLUMN") {
                    return (true, false);
                }
                if self.kw_any(j + 1, &["INDEX", "KEY"]) {
                    return (false, false);
                }
                let k = if self.kw_any(j + 1, &["TO", "AS"]) { j + 2 } else { j + 1 };
                if let Some((t, _)) = self.table_ref(k) {
                    found.push((t, true));
                }
                (false, false)
            }
            w if LIST_CLAUSES.contains(&w) => (false, true),
            w if TABLE_OPTIONS.contains(&w) => (false, false),
            _ => unknown,
        }
    }

    fn alter_database(&self, i: usize) -> Statement {
        // The name is optional (the statement then applies to the default database), and some
        // option words are not reserved, so `charset` may be a name or the start of an option.
        const RESERVED: &[&str] = &["DEFAULT", "CHARACTER", "COLLATE", "READ"];
        const OPTIONS: &[&str] =
            &["DEFAULT", "CHARACTER", "COLLATE", "READ", "CHARSET", "ENCRYPTION", "COMMENT", "UPGRADE"];
        let named = if self.kw_any(i, RESERVED) {
            false
        } else if self.kw_any(i, OPTIONS) {
            i + 1 >= self.toks.len() || self.kw_any(i + 1, OPTIONS)
        } else {
            true
        };
        if named { self.database(StatementKind::AlterDatabase, i) } else { Statement::of(StatementKind::AlterDatabase) }
    }

    fn database(&self, kind: StatementKind, i: usize) -> Statement {
        Statement { database: self.ident(i), ..Statement::of(kind) }
    }

    fn drop(&self, i: usize) -> Statement {
        if self.kw_any(i, &["TABLE", "TABLES"]) {
            return self.drop_table(i + 1);
        }
        if self.kw_any(i, &["DATABASE", "SCHEMA"]) {
            return self.database(StatementKind::DropDatabase, self.skip_if_exists(i + 1));
        }
        let i = if self.kw_any(i, &["ONLINE", "OFFLINE"]) { i + 1 } else { i };
        if self.kw(i, "INDEX") {
            return self.index_on(DdlKind::DropIndex, self.skip_if_exists(i + 1));
        }
        // Includes DROP TEMPORARY TABLE.
        Statement::other()
    }

    fn drop_table(&self, i: usize) -> Statement {
        let mut st = Statement::ddl(DdlKind::DropTable);
        let mut i = self.skip_if_exists(i);
        while let Some((t, next)) = self.table_ref(i) {
            st.tables.push(t);
            if !self.is(next, &Tok::Comma) {
                break;
            }
            i = next + 1;
        }
        st
    }

    fn rename(&self, i: usize) -> Statement {
        if !self.kw_any(i, &["TABLE", "TABLES"]) {
            return Statement::other();
        }
        let mut st = Statement::ddl(DdlKind::RenameTable);
        let mut i = self.skip_if_exists(i + 1);
        while let Some((from, next)) = self.table_ref(i) {
            let to_kw = self.skip_wait(next);
            let target = if self.kw(to_kw, "TO") { self.table_ref(to_kw + 1) } else { None };
            st.tables.push(from);
            let Some((to, after)) = target else { break };
            st.renames.push((st.tables.len() - 1, st.tables.len()));
            st.tables.push(to);
            if !self.is(after, &Tok::Comma) {
                break;
            }
            i = after + 1;
        }
        st
    }

    fn truncate(&self, i: usize) -> Statement {
        let mut st = Statement::ddl(DdlKind::TruncateTable);
        let i = if self.kw(i, "TABLE") { i + 1 } else { i };
        st.tables.extend(self.table_ref(i).map(|(t, _)| t));
        st
    }

    /// Tables named inside a `CREATE TABLE` or `ALTER TABLE` body between tokens `from` and `to`:
    /// foreign key parents, an exchanged partition's table, and the sources of a `SELECT`.
    ///
    /// The `SELECT` sources are found without a full grammar: a `FROM` counts only at a
    /// parenthesis level that has its own `SELECT` (so `EXTRACT(YEAR FROM d)` does not), and its
    /// list runs until a clause keyword; a name followed by `(` is a table function, not a table.
    fn scan_refs(&self, from: usize, to: usize) -> Vec<TableRef> {
        let mut out = Vec::new();
        let mut stack = vec![Frame::default()];
        let mut i = from;
        while i < to {
            let Some(top) = stack.last_mut() else { break };
            match self.toks[i].tok {
                Tok::Open => {
                    // A parenthesis where a table is expected holds a join or a derived table,
                    // whose own SELECT (if any) resets the state.
                    let inner = top.expect_table;
                    top.expect_table = false;
                    stack.push(Frame { select: inner, from: inner, expect_table: inner });
                    i += 1;
                    continue;
                }
                Tok::Close => {
                    if stack.len() > 1 {
                        stack.pop();
                    }
                    i += 1;
                    continue;
                }
                Tok::Comma => {
                    top.expect_table = top.from;
                    i += 1;
                    continue;
                }
                _ => {}
            }
            let named_at = if self.kw(i, "REFERENCES") {
                Some(i + 1)
            } else if self.kw(i, "WITH") && self.kw(i + 1, "TABLE") {
                Some(i + 2)
            } else {
                None
            };
            if let Some(j) = named_at
                && let Some((t, next)) = self.table_ref(j)
            {
                out.push(t);
                i = next;
                continue;
            }
            if self.kw(i, "SELECT") {
                *top = Frame { select: true, from: false, expect_table: false };
            } else if self.kw(i, "FROM") && top.select {
                top.from = true;
                top.expect_table = true;
            } else if self.kw_any(i, &["JOIN", "STRAIGHT_JOIN"]) && top.from {
                top.expect_table = true;
            } else if self.kw_any(i, AFTER_FROM) || (self.kw(i, "FOR") && self.kw_any(i + 1, &["UPDATE", "SHARE"])) {
                top.from = false;
                top.expect_table = false;
            } else if self.kw(i, "LATERAL") {
                // The derived table follows.
            } else if top.expect_table {
                top.expect_table = false;
                if !self.kw(i, "DUAL")
                    && let Some((t, next)) = self.table_ref(i)
                {
                    if !self.is(next, &Tok::Open) {
                        out.push(t);
                    }
                    i = next;
                    continue;
                }
            }
            i += 1;
        }
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn names(st: &Statement) -> Vec<String> {
        st.tables
            .iter()
            .map(|t| match &t.database {
                Some(db) => format!("{db}.{}", t.name),
                None => t.name.clone(),
            })
            .collect()
    }

    fn span_text<'a>(sql: &'a str, t: &TableRef) -> &'a str {
        &sql[t.span.clone()]
    }

    fn prefix_all(db: &str, name: &str) -> Option<(String, String)> {
        Some((format!("tgt_{db}"), format!("{name}_x")))
    }

    #[test]
    fn create_table_names_the_table() {
        let st = parse("CREATE TABLE t (id INT PRIMARY KEY, name VARCHAR(10))");
        assert_eq!(st.kind, StatementKind::Ddl(DdlKind::CreateTable));
        assert_eq!(names(&st), ["t"]);
        assert!(!st.changes_columns);
        assert!(st.renames.is_empty());
        assert_eq!(st.database, None);
    }

    #[test]
    fn create_table_accepts_or_replace_and_if_not_exists() {
        let st = parse("create or replace table if not exists `shop`.`orders` (id int)");
        assert_eq!(st.kind, StatementKind::Ddl(DdlKind::CreateTable));
        assert_eq!(names(&st), ["shop.orders"]);
        let st = parse("CREATE TABLE IF NOT EXISTS orders (id int)");
        assert_eq!(names(&st), ["orders"]);
    }

    #[test]
    fn create_table_like_names_both_tables() {
        let st = parse("CREATE TABLE a LIKE db.b");
        assert_eq!(st.kind, StatementKind::Ddl(DdlKind::CreateTable));
        assert_eq!(names(&st), ["a", "db.b"]);
        assert!(!st.changes_columns);
        assert_eq!(names(&parse("CREATE TABLE a (LIKE `b`)")), ["a", "b"]);
    }

    #[test]
    fn create_table_select_changes_columns_and_names_its_sources() {
        let st = parse("CREATE TABLE a (extra INT) SELECT x.id FROM b AS x JOIN other.c ON x.id = c.id, d WHERE 1");
        assert!(st.changes_columns);
        assert_eq!(names(&st), ["a", "b", "other.c", "d"]);
        let st = parse("CREATE TABLE a AS SELECT EXTRACT(YEAR FROM created) y FROM (SELECT * FROM src) s");
        assert!(st.changes_columns);
        assert_eq!(names(&st), ["a", "src"]);
        let st = parse("CREATE TABLE a SELECT 1 FROM DUAL");
        assert!(st.changes_columns);
        assert_eq!(names(&st), ["a"]);
    }

    #[test]
    fn create_table_names_foreign_key_parents() {
        let st = parse(
            "CREATE TABLE child (id INT, pid INT REFERENCES parent(id), \
             CONSTRAINT fk FOREIGN KEY (pid) REFERENCES `db`.`parent2` (id) ON DELETE CASCADE)",
        );
        assert_eq!(names(&st), ["child", "parent", "db.parent2"]);
        assert!(!st.changes_columns);
    }

    #[test]
    fn temporary_tables_are_other() {
        for sql in [
            "CREATE TEMPORARY TABLE t (id INT)",
            "CREATE OR REPLACE TEMPORARY TABLE t (id INT)",
            "CREATE TEMPORARY TABLE IF NOT EXISTS t LIKE u",
            "DROP TEMPORARY TABLE IF EXISTS `t`",
            "CREATE /*!32302 TEMPORARY */ TABLE t (id INT)",
        ] {
            let st = parse(sql);
            assert_eq!(st.kind, StatementKind::Other, "{sql}");
            assert!(st.tables.is_empty(), "{sql}");
        }
    }

    #[test]
    fn alter_table_adding_a_column_changes_columns() {
        for sql in [
            "ALTER TABLE t ADD COLUMN c INT",
            "ALTER TABLE t ADD c INT AFTER b",
            "ALTER TABLE t ADD (c INT, d INT)",
            "ALTER TABLE t ADD COLUMN IF NOT EXISTS c INT",
            "ALTER TABLE t ENGINE=InnoDB, ADD COLUMN c INT",
            "ALTER TABLE t ADD INDEX i (a), ADD COLUMN c INT",
        ] {
            let st = parse(sql);
            assert_eq!(st.kind, StatementKind::Ddl(DdlKind::AlterTable), "{sql}");
            assert_eq!(names(&st), ["t"], "{sql}");
            assert!(st.changes_columns, "{sql}");
        }
    }

    #[test]
    fn alter_table_column_clauses_change_columns() {
        for sql in [
            "ALTER TABLE t DROP COLUMN c",
            "ALTER TABLE t DROP c",
            "ALTER TABLE t MODIFY c BIGINT",
            "ALTER TABLE t CHANGE c d INT",
            "ALTER TABLE t RENAME COLUMN c TO d",
            "ALTER TABLE t ALTER COLUMN c SET DEFAULT 1",
            "ALTER TABLE t ALTER c DROP DEFAULT",
            "ALTER TABLE t CONVERT TO CHARACTER SET utf8mb4",
        ] {
            assert!(parse(sql).changes_columns, "{sql}");
        }
    }

    #[test]
    fn alter_table_index_and_option_changes_keep_columns() {
        for sql in [
            "ALTER TABLE t ADD INDEX i (a)",
            "ALTER TABLE t ADD UNIQUE KEY u (a, b), DROP INDEX old",
            "ALTER TABLE t ADD PRIMARY KEY (id)",
            "ALTER TABLE t ADD CONSTRAINT c CHECK (a > 0)",
            "ALTER TABLE t DROP PRIMARY KEY, DROP FOREIGN KEY fk",
            "ALTER TABLE t RENAME INDEX a TO b",
            "ALTER TABLE t ALTER INDEX i INVISIBLE",
            "ALTER TABLE t ENGINE=InnoDB ROW_FORMAT=DYNAMIC",
            "ALTER TABLE t COMMENT 'x', AUTO_INCREMENT = 10, ALGORITHM=INPLACE, LOCK=NONE",
            "ALTER TABLE t DEFAULT CHARSET utf8mb4",
            "ALTER TABLE t FORCE",
            "/*!40000 ALTER TABLE `t` DISABLE KEYS */",
            "ALTER TABLE t DROP PARTITION p0, p1",
            "ALTER TABLE t TRUNCATE PARTITION p0, p1",
            "ALTER TABLE t ADD PARTITION (PARTITION p3 VALUES LESS THAN (30))",
            "ALTER TABLE t PARTITION BY HASH(id) PARTITIONS 4",
            "ALTER TABLE t ORDER BY a, b",
            "ALTER TABLE t",
        ] {
            let st = parse(sql);
            assert_eq!(st.kind, StatementKind::Ddl(DdlKind::AlterTable), "{sql}");
            assert!(!st.changes_columns, "{sql}");
        }
    }

    #[test]
    fn alter_table_counts_an_unrecognised_clause_as_a_column_change() {
        assert!(parse("ALTER TABLE t ADD SYSTEM VERSIONING").changes_columns);
        assert!(parse("ALTER TABLE t FROBNICATE").changes_columns);
    }

    #[test]
    fn alter_table_rename_records_the_pair() {
        for sql in ["ALTER TABLE a RENAME TO b", "ALTER TABLE a RENAME AS b", "ALTER TABLE a RENAME b"] {
            let st = parse(sql);
            assert_eq!(names(&st), ["a", "b"], "{sql}");
            assert_eq!(st.renames, [(0, 1)], "{sql}");
            assert!(!st.changes_columns, "{sql}");
        }
        let st = parse("ALTER TABLE db.a ADD COLUMN c INT, RENAME TO db2.b");
        assert_eq!(names(&st), ["db.a", "db2.b"]);
        assert_eq!(st.renames, [(0, 1)]);
        assert!(st.changes_columns);
    }

    #[test]
    fn alter_table_names_referenced_and_exchanged_tables() {
        let st = parse("ALTER TABLE c ADD CONSTRAINT fk FOREIGN KEY (pid) REFERENCES p (id)");
        assert_eq!(names(&st), ["c", "p"]);
        assert!(!st.changes_columns);
        let st = parse("ALTER TABLE t EXCHANGE PARTITION p0 WITH TABLE u WITHOUT VALIDATION");
        assert_eq!(names(&st), ["t", "u"]);
        assert!(!st.changes_columns);
        let st = parse("ALTER TABLE a RENAME TO b, ADD FOREIGN KEY (x) REFERENCES c (id)");
        assert_eq!(names(&st), ["a", "b", "c"]);
        assert_eq!(st.renames, [(0, 1)]);
    }

    #[test]
    fn alter_accepts_online_ignore_and_if_exists() {
        for sql in [
            "ALTER ONLINE TABLE t ADD c INT",
            "ALTER IGNORE TABLE t ADD c INT",
            "ALTER ONLINE IGNORE TABLE t ADD c INT",
            "ALTER TABLE IF EXISTS t ADD c INT",
            "ALTER TABLE t WAIT 10 ADD c INT",
            "ALTER TABLE t NOWAIT ADD c INT",
        ] {
            let st = parse(sql);
            assert_eq!(st.kind, StatementKind::Ddl(DdlKind::AlterTable), "{sql}");
            assert_eq!(names(&st), ["t"], "{sql}");
            assert!(st.changes_columns, "{sql}");
        }
    }

    #[test]
    fn drop_table_lists_every_table() {
        let st = parse("DROP TABLE IF EXISTS a, `db`.`b`, c.d RESTRICT");
        assert_eq!(st.kind, StatementKind::Ddl(DdlKind::DropTable));
        assert_eq!(names(&st), ["a", "db.b", "c.d"]);
        assert_eq!(names(&parse("DROP TABLES a, b CASCADE")), ["a", "b"]);
    }

    #[test]
    fn drop_table_generated_by_the_server_keeps_its_comment_out_of_the_names() {
        let sql = "DROP TABLE `t` /* generated by server */";
        let st = parse(sql);
        assert_eq!(st.kind, StatementKind::Ddl(DdlKind::DropTable));
        assert_eq!(names(&st), ["t"]);
        assert_eq!(span_text(sql, &st.tables[0]), "`t`");
        let st = parse("DROP TABLE IF EXISTS `a`,`b` /* generated by server */");
        assert_eq!(names(&st), ["a", "b"]);
    }

    #[test]
    fn rename_table_lists_every_pair() {
        let st = parse("RENAME TABLE a TO b, db.c TO `db2`.`d`");
        assert_eq!(st.kind, StatementKind::Ddl(DdlKind::RenameTable));
        assert_eq!(names(&st), ["a", "b", "db.c", "db2.d"]);
        assert_eq!(st.renames, [(0, 1), (2, 3)]);
    }

    #[test]
    fn rename_table_accepts_mariadb_if_exists_and_wait() {
        let st = parse("RENAME TABLE IF EXISTS a WAIT 5 TO b, c NOWAIT TO d");
        assert_eq!(names(&st), ["a", "b", "c", "d"]);
        assert_eq!(st.renames, [(0, 1), (2, 3)]);
        assert_eq!(parse("RENAME USER a TO b").kind, StatementKind::Other);
    }

    #[test]
    fn truncate_with_and_without_the_table_keyword() {
        for sql in ["TRUNCATE TABLE db.t", "truncate db.t", "TRUNCATE `db`.t"] {
            let st = parse(sql);
            assert_eq!(st.kind, StatementKind::Ddl(DdlKind::TruncateTable), "{sql}");
            assert_eq!(names(&st), ["db.t"], "{sql}");
        }
    }

    #[test]
    fn create_index_names_its_table() {
        for sql in [
            "CREATE INDEX i ON t (a)",
            "CREATE UNIQUE INDEX i ON t (a, b)",
            "CREATE FULLTEXT INDEX i ON t (body)",
            "CREATE SPATIAL INDEX i ON t (g)",
            "CREATE OR REPLACE INDEX IF NOT EXISTS i ON t (a)",
            "CREATE INDEX i USING BTREE ON t (a) ALGORITHM=INPLACE",
            "CREATE INDEX `on` ON t ((a + 1))",
        ] {
            let st = parse(sql);
            assert_eq!(st.kind, StatementKind::Ddl(DdlKind::CreateIndex), "{sql}");
            assert_eq!(names(&st), ["t"], "{sql}");
            assert!(!st.changes_columns, "{sql}");
        }
    }

    #[test]
    fn drop_index_names_its_table() {
        for sql in ["DROP INDEX i ON db.t", "DROP INDEX IF EXISTS `i` ON db.t ALGORITHM=INPLACE"] {
            let st = parse(sql);
            assert_eq!(st.kind, StatementKind::Ddl(DdlKind::DropIndex), "{sql}");
            assert_eq!(names(&st), ["db.t"], "{sql}");
        }
    }

    #[test]
    fn database_statements_give_the_database_name() {
        let cases = [
            ("CREATE DATABASE shop", StatementKind::CreateDatabase),
            ("CREATE SCHEMA IF NOT EXISTS `shop` DEFAULT CHARACTER SET utf8mb4", StatementKind::CreateDatabase),
            ("CREATE OR REPLACE DATABASE shop", StatementKind::CreateDatabase),
            ("DROP DATABASE shop", StatementKind::DropDatabase),
            ("drop schema if exists `shop`", StatementKind::DropDatabase),
            ("ALTER DATABASE shop CHARACTER SET utf8mb4", StatementKind::AlterDatabase),
            ("ALTER SCHEMA `shop` COLLATE utf8mb4_bin", StatementKind::AlterDatabase),
        ];
        for (sql, kind) in cases {
            let st = parse(sql);
            assert_eq!(st.kind, kind, "{sql}");
            assert_eq!(st.database.as_deref(), Some("shop"), "{sql}");
            assert!(st.tables.is_empty(), "{sql}");
        }
    }

    #[test]
    fn alter_database_without_a_name_applies_to_the_default() {
        for sql in [
            "ALTER DATABASE CHARACTER SET utf8mb4",
            "ALTER DATABASE charset = utf8mb4",
            "ALTER SCHEMA DEFAULT COLLATE x",
        ] {
            let st = parse(sql);
            assert_eq!(st.kind, StatementKind::AlterDatabase, "{sql}");
            assert_eq!(st.database, None, "{sql}");
        }
        assert_eq!(parse("ALTER DATABASE charset CHARSET utf8mb4").database.as_deref(), Some("charset"));
    }

    #[test]
    fn other_statements_name_no_tables() {
        for sql in [
            "",
            "   ",
            "/* only a comment */",
            "BEGIN",
            "COMMIT",
            "INSERT INTO t VALUES (1)",
            "UPDATE t SET a = 1",
            "GRANT SELECT ON db.t TO 'u'@'%'",
            "CREATE VIEW v AS SELECT * FROM t",
            "CREATE DEFINER=`root`@`%` TRIGGER tr BEFORE INSERT ON t FOR EACH ROW SET @x = 1",
            "CREATE TABLESPACE ts ADD DATAFILE 'ts.ibd'",
            "ALTER USER u IDENTIFIED BY 'x'",
            "DROP VIEW v",
            "/*!40101 SET NAMES utf8mb4 */",
            "SAVEPOINT s",
        ] {
            let st = parse(sql);
            assert_eq!(st.kind, StatementKind::Other, "{sql}");
            assert!(st.tables.is_empty(), "{sql}");
            assert!(!st.changes_columns && st.renames.is_empty() && st.database.is_none(), "{sql}");
        }
    }

    #[test]
    fn leading_and_inner_comments_are_skipped() {
        for sql in [
            "/* a */ DROP TABLE t",
            "-- a line\nDROP TABLE t",
            "# a line\n  DROP TABLE t",
            "/*+ hint */DROP /* x */ TABLE /* y */ t",
            "\n\t DROP TABLE t -- trailing",
        ] {
            let st = parse(sql);
            assert_eq!(st.kind, StatementKind::Ddl(DdlKind::DropTable), "{sql}");
            assert_eq!(names(&st), ["t"], "{sql}");
        }
        assert_eq!(names(&parse("DROP TABLE a -- , b\n, c")), ["a", "c"]);
        assert_eq!(names(&parse("DROP TABLE a # , b\n, c")), ["a", "c"]);
    }

    #[test]
    fn double_dash_without_a_space_is_not_a_comment() {
        // `--x` is two minus signs, so the `, b` that follows is still part of the statement.
        let st = parse("ALTER TABLE t COMMENT = 1--1, ADD c INT");
        assert!(st.changes_columns);
    }

    #[test]
    fn executable_comments_are_read_as_code() {
        let st = parse("/*!40000 ALTER TABLE `t` DISABLE KEYS */");
        assert_eq!(st.kind, StatementKind::Ddl(DdlKind::AlterTable));
        assert_eq!(names(&st), ["t"]);
        let st = parse("/*M!100100 DROP TABLE a */");
        assert_eq!(names(&st), ["a"]);
        let st = parse("DROP TABLE a /*!50000 , b */");
        assert_eq!(names(&st), ["a", "b"]);
        let st = parse("CREATE TABLE t (id INT) /*!50100 PARTITION BY HASH (id) */");
        assert_eq!(names(&st), ["t"]);
    }

    #[test]
    fn backticks_inside_quoted_names_are_unescaped() {
        let sql = "CREATE TABLE `we``ird`.`t``x` (a INT)";
        let st = parse(sql);
        assert_eq!(st.tables[0].database.as_deref(), Some("we`ird"));
        assert_eq!(st.tables[0].name, "t`x");
        assert_eq!(span_text(sql, &st.tables[0]), "`we``ird`.`t``x`");
    }

    #[test]
    fn qualified_names_span_the_whole_reference() {
        let sql = "DROP TABLE `db`.`t1`, db.t2, `db`.t3, db.`t4`, t5, `select`";
        let st = parse(sql);
        assert_eq!(names(&st), ["db.t1", "db.t2", "db.t3", "db.t4", "t5", "select"]);
        let spans: Vec<&str> = st.tables.iter().map(|t| span_text(sql, t)).collect();
        assert_eq!(spans, ["`db`.`t1`", "db.t2", "`db`.t3", "db.`t4`", "t5", "`select`"]);
    }

    #[test]
    fn keywords_are_case_insensitive() {
        let st = parse("rEnAmE tAbLe a To b");
        assert_eq!(st.kind, StatementKind::Ddl(DdlKind::RenameTable));
        assert_eq!(st.renames, [(0, 1)]);
    }

    #[test]
    fn string_literals_do_not_leak_into_the_statement() {
        let st = parse(r"ALTER TABLE t COMMENT 'it''s \' ; , ADD COLUMN x INT', ENGINE = InnoDB");
        assert_eq!(names(&st), ["t"]);
        assert!(!st.changes_columns);
        let st = parse(r#"ALTER TABLE t COMMENT "say \"hi\"; DROP"" , ADD c INT""#);
        assert!(!st.changes_columns);
        let st = parse("CREATE TABLE t (a VARCHAR(9) DEFAULT 'SELECT * FROM u') ");
        assert_eq!(names(&st), ["t"]);
        assert!(!st.changes_columns);
    }

    #[test]
    fn double_quoted_names_are_read_as_ansi_quotes_identifiers() {
        let st = parse(r#"DROP TABLE "db"."my ""t""""#);
        assert_eq!(st.tables[0].database.as_deref(), Some("db"));
        assert_eq!(st.tables[0].name, r#"my "t""#);
    }

    #[test]
    fn only_the_first_statement_is_read() {
        let st = parse("DROP TABLE a; DROP TABLE b");
        assert_eq!(names(&st), ["a"]);
        assert_eq!(names(&parse("TRUNCATE t;")), ["t"]);
    }

    #[test]
    fn mariadb_set_statement_prefix_is_skipped() {
        let st = parse("SET STATEMENT max_statement_time=60, lock_wait_timeout=5 FOR ALTER TABLE t ADD c INT");
        assert_eq!(st.kind, StatementKind::Ddl(DdlKind::AlterTable));
        assert_eq!(names(&st), ["t"]);
        assert!(st.changes_columns);
        assert_eq!(parse("SET STATEMENT x=1").kind, StatementKind::Other);
        assert_eq!(parse("SET @a = 1").kind, StatementKind::Other);
    }

    #[test]
    fn truncated_or_odd_text_never_panics() {
        let texts = [
            "CREATE TABLE `a``b`.c (x VARCHAR(3) DEFAULT 'é\\'') SELECT * FROM (SELECT 1 FROM d JOIN e",
            "RENAME TABLE a TO b, c TO \"d\"",
            "ALTER TABLE t /*!50000 RENAME TO u */ -- ü\n",
            "DROP INDEX i ON `tä`.`ß`",
        ];
        for text in texts {
            for (end, _) in text.char_indices().chain([(text.len(), ' ')]) {
                let sql = &text[..end];
                let st = parse(sql);
                let _ = rewrite(sql, &st, Some("d"), prefix_all);
                // A statement from other text must not make the rewrite panic either.
                let _ = rewrite("x", &st, Some("d"), prefix_all);
            }
        }
    }

    #[test]
    fn rewrite_without_a_mapping_keeps_the_text_byte_for_byte() {
        for sql in [
            "/* c */ ALTER TABLE db.t  ADD   COLUMN c INT COMMENT 't' -- done",
            "RENAME TABLE a TO b, `c` TO `d`",
            "DROP TABLE IF EXISTS `t` /* generated by server */",
            "INSERT INTO t VALUES (1)",
        ] {
            let st = parse(sql);
            assert_eq!(rewrite(sql, &st, Some("db"), |_, _| None), sql);
        }
    }

    #[test]
    fn rewrite_keeps_a_quoted_alias_right_after_a_name_apart_from_it() {
        // Found by fuzzing: `t2`x`` rewritten to `` `d`.`t2``x` `` named table "t2`x".
        let sql = "CREATE TABLE t1 SELECT * FROM t2`x`";
        let st = parse(sql);
        let out = rewrite(sql, &st, Some("d"), |d, n| Some((d.to_owned(), n.to_owned())));
        assert_eq!(out, "CREATE TABLE `d`.`t1` SELECT * FROM `d`.`t2` `x`");
        let names = |s: &Statement| s.tables.iter().map(|t| t.name.clone()).collect::<Vec<_>>();
        assert_eq!(names(&parse(&out)), names(&st));
    }

    #[test]
    fn rewrite_qualifies_and_quotes_mapped_names() {
        let sql = "ALTER TABLE  t /* keep */ ADD COLUMN c INT DEFAULT 0";
        let st = parse(sql);
        let out = rewrite(sql, &st, Some("src"), prefix_all);
        assert_eq!(out, "ALTER TABLE  `tgt_src`.`t_x` /* keep */ ADD COLUMN c INT DEFAULT 0");
    }

    #[test]
    fn rewrite_maps_only_the_references_the_map_knows() {
        let sql = "RENAME TABLE shop.a TO shop.b, other.c TO `other`.d";
        let st = parse(sql);
        let out = rewrite(sql, &st, None, |db, name| (db == "shop").then(|| ("tgt".to_owned(), name.to_uppercase())));
        assert_eq!(out, "RENAME TABLE `tgt`.`A` TO `tgt`.`B`, other.c TO `other`.d");
    }

    #[test]
    fn rewrite_uses_the_default_database_for_unqualified_names() {
        let sql = "DROP TABLE a, x.b";
        let st = parse(sql);
        let seen = std::cell::RefCell::new(Vec::new());
        let out = rewrite(sql, &st, Some("dflt"), |db, name| {
            seen.borrow_mut().push(format!("{db}.{name}"));
            Some((db.to_owned(), name.to_owned()))
        });
        assert_eq!(out, "DROP TABLE `dflt`.`a`, `x`.`b`");
        assert_eq!(seen.into_inner(), ["dflt.a", "x.b"]);
    }

    #[test]
    fn rewrite_without_a_default_database_leaves_unqualified_names() {
        let sql = "DROP TABLE a, x.b";
        let st = parse(sql);
        assert_eq!(rewrite(sql, &st, None, prefix_all), "DROP TABLE a, `tgt_x`.`b_x`");
        assert_eq!(rewrite(sql, &st, Some(""), prefix_all), "DROP TABLE a, `tgt_x`.`b_x`");
    }

    #[test]
    fn rewrite_quotes_names_that_are_keywords() {
        let sql = "ALTER TABLE `order` RENAME TO `select`";
        let st = parse(sql);
        let out = rewrite(sql, &st, Some("db"), |db, name| Some((db.to_owned(), name.to_owned())));
        assert_eq!(out, "ALTER TABLE `db`.`order` RENAME TO `db`.`select`");
    }

    #[test]
    fn rewrite_doubles_backticks_in_target_names() {
        let sql = "TRUNCATE t";
        let st = parse(sql);
        let out = rewrite(sql, &st, Some("d"), |_, _| Some(("a`b".to_owned(), "c``d".to_owned())));
        assert_eq!(out, "TRUNCATE `a``b`.`c````d`");
    }

    #[test]
    fn rewrite_leaves_string_literals_alone() {
        let sql = "CREATE TABLE t (a VARCHAR(5) DEFAULT 't', b INT COMMENT \"t\") COMMENT='db.t'";
        let st = parse(sql);
        let out = rewrite(sql, &st, Some("db"), prefix_all);
        assert_eq!(out, "CREATE TABLE `tgt_db`.`t_x` (a VARCHAR(5) DEFAULT 't', b INT COMMENT \"t\") COMMENT='db.t'");
    }

    fn only_shop(db: &str, name: &str) -> Option<(String, String)> {
        (db == "shop" && name.starts_with("sel")).then(|| ("tgt".to_owned(), name.to_owned()))
    }

    fn target_of(sql: &str) -> Result<Option<String>, String> {
        for_target(sql, &parse(sql), Some("shop"), only_shop)
    }

    #[test]
    fn drop_table_keeps_only_the_selected_tables() {
        assert_eq!(target_of("DROP TABLE sel1, other").unwrap().as_deref(), Some("DROP TABLE `tgt`.`sel1`"));
        assert_eq!(
            target_of("DROP TABLE IF EXISTS other, `sel1`, x.sel2, sel3 /* generated by server */").unwrap().as_deref(),
            Some("DROP TABLE IF EXISTS `tgt`.`sel1`, `tgt`.`sel3` /* generated by server */")
        );
        assert_eq!(target_of("DROP TABLE other, x.sel1").unwrap(), None);
        assert_eq!(
            target_of("DROP TABLE sel1, sel2").unwrap().as_deref(),
            Some("DROP TABLE `tgt`.`sel1`, `tgt`.`sel2`")
        );
    }

    #[test]
    fn rename_table_keeps_the_pairs_of_selected_tables_and_refuses_a_move_across() {
        assert_eq!(
            target_of("RENAME TABLE sel1 TO sel2, other TO other2").unwrap().as_deref(),
            Some("RENAME TABLE `tgt`.`sel1` TO `tgt`.`sel2`")
        );
        assert_eq!(target_of("RENAME TABLE other TO other2").unwrap(), None);
        let out = target_of("RENAME TABLE sel1 TO other").unwrap_err();
        assert!(out.contains("shop.sel1") && out.contains("shop.other"), "{out}");
        assert!(target_of("RENAME TABLE other TO sel1, sel2 TO sel3").is_err());
    }

    #[test]
    fn a_statement_about_a_selected_table_must_name_only_selected_tables() {
        assert_eq!(
            target_of("ALTER TABLE sel1 ADD COLUMN c INT, ADD FOREIGN KEY (c) REFERENCES sel2 (id)")
                .unwrap()
                .as_deref(),
            Some("ALTER TABLE `tgt`.`sel1` ADD COLUMN c INT, ADD FOREIGN KEY (c) REFERENCES `tgt`.`sel2` (id)")
        );
        for sql in [
            "ALTER TABLE sel1 ADD FOREIGN KEY (c) REFERENCES other (id)",
            "ALTER TABLE sel1 EXCHANGE PARTITION p0 WITH TABLE other",
            "ALTER TABLE sel1 RENAME TO other",
            "CREATE TABLE sel9 LIKE other",
        ] {
            let e = target_of(sql).unwrap_err();
            assert!(e.contains("shop.other"), "{sql}: {e}");
        }
        // A statement about a table the job does not select runs nowhere, whatever it names.
        assert_eq!(target_of("ALTER TABLE other ADD FOREIGN KEY (c) REFERENCES sel1 (id)").unwrap(), None);
        assert_eq!(target_of("CREATE TABLE other LIKE sel1").unwrap(), None);
        assert_eq!(target_of("TRUNCATE TABLE sel1").unwrap().as_deref(), Some("TRUNCATE TABLE `tgt`.`sel1`"));
    }

    #[test]
    fn a_text_with_a_second_statement_is_refused() {
        assert!(target_of("DROP TABLE sel1; DROP TABLE other").is_err());
        assert!(target_of("TRUNCATE sel1;").is_ok());
    }

    #[test]
    fn rewrite_covers_every_table_of_the_statement() {
        let cases = [
            ("CREATE TABLE a LIKE b", "CREATE TABLE `tgt_d`.`a_x` LIKE `tgt_d`.`b_x`"),
            ("CREATE INDEX i ON t (a)", "CREATE INDEX i ON `tgt_d`.`t_x` (a)"),
            ("DROP INDEX i ON s.t", "DROP INDEX i ON `tgt_s`.`t_x`"),
            (
                "ALTER TABLE c ADD FOREIGN KEY (p) REFERENCES p (id)",
                "ALTER TABLE `tgt_d`.`c_x` ADD FOREIGN KEY (p) REFERENCES `tgt_d`.`p_x` (id)",
            ),
            ("/*!40000 ALTER TABLE `t` ENABLE KEYS */", "/*!40000 ALTER TABLE `tgt_d`.`t_x` ENABLE KEYS */"),
            ("CREATE TABLE tä SELECT 'ü' FROM ö", "CREATE TABLE `tgt_d`.`tä_x` SELECT 'ü' FROM `tgt_d`.`ö_x`"),
        ];
        for (sql, want) in cases {
            let st = parse(sql);
            assert_eq!(rewrite(sql, &st, Some("d"), prefix_all), want, "{sql}");
        }
    }
}
