//! Row filters evaluated on change rows.
//!
//! A table's row filter is a SQL boolean expression. The full transfer hands it to the source
//! verbatim as a `WHERE` clause, but MySQL/MariaDB binary log rows arrive as plain row images,
//! so the incremental phase has to decide "would this row have matched?" itself. This module
//! parses a documented subset of MySQL expression syntax and evaluates it with SQL three-valued
//! logic. PostgreSQL sources before 15 cannot filter their publication either: for them
//! [`RowFilter::parse_postgres`] reads a PostgreSQL subset, typed by the table's columns (see
//! the `postgres` submodule). Whatever lies outside the subset is refused at parse time with the construct and its
//! position, so the precheck can tell the user before any row is moved, instead of the stream
//! silently keeping or dropping rows the source would have treated differently.
//!
//! # Subset
//!
//! - Columns: bare (`amount`) or back-quoted (`` `order` ``, with ``` `` ``` for a back-quote),
//!   optionally qualified (`t.c`, `` `db`.`t`.`c` ``): only the last part names the column.
//! - Literals: integers, decimals (`1.5`, `.5`, `5.`), exponent floats (`1e3`, `2.5E-4`),
//!   `'single'` and `"double"` quoted strings with backslash escapes (`\n`, `\t`, `\0`, `\b`,
//!   `\r`, `\Z`, `\\`, `\'`, `\"`; `\%` and `\_` keep their backslash for `LIKE`, as in MySQL)
//!   and doubled quotes (`'it''s'`); adjacent strings concatenate (`'a' 'b'` is `'ab'`);
//!   `NULL`, `TRUE`, `FALSE`; unary `-` and `+` on numeric literals.
//! - Comparisons: `=`, `<=>`, `<>`, `!=`, `<`, `<=`, `>`, `>=`; `IS [NOT] NULL`,
//!   `IS [NOT] TRUE | FALSE | UNKNOWN`; `[NOT] IN (literal, ...)`;
//!   `[NOT] BETWEEN x AND y`; `[NOT] LIKE 'pattern' [ESCAPE 'c']` with `%`, `_` and (by default)
//!   backslash as escape.
//! - Logic: `AND`/`&&`, `OR`/`||`, `XOR`, `NOT`, `!`, parentheses, with MySQL's precedence
//!   (`!` binds tighter than a comparison, `NOT` looser: `!a = 1` is `(!a) = 1`).
//! - Comments: `# ...`, `-- ...` and `/* ... */` are skipped.
//! - Keywords are case-insensitive.
//!
//! Refused: function calls (`lower(x)`, also niladic ones like `CURRENT_DATE`), arithmetic and
//! bit operators, subqueries, `REGEXP`/`RLIKE`, `CASE`, `INTERVAL`, `COLLATE`, `BINARY`,
//! typed literals and introducers (`DATE '...'`, `_utf8mb4'x'`, `X'0F'`), hexadecimal and bit
//! literals, variables, placeholders, row constructors, JSON operators, executable comments
//! (`/*! ... */`) and nesting deeper than a fixed limit.
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
//! - The default SQL mode is assumed: `||` is OR (not `PIPES_AS_CONCAT`), `"..."` is a string
//!   (not `ANSI_QUOTES`), backslash escapes are on (not `NO_BACKSLASH_ESCAPES`), `!` binds
//!   tighter than `NOT` (not `HIGH_NOT_PRECEDENCE`).

use std::cmp::Ordering;

/// How deep parentheses, `NOT`/`!`/unary signs and comparison chains may nest. Parsing and
/// evaluation recurse, so an adversarial filter must not be able to exhaust the stack.
const MAX_DEPTH: usize = 100;

mod postgres;

/// A row filter compiled for evaluation on change rows.
#[derive(Debug, Clone)]
pub struct RowFilter {
    root: Expr,
    columns: Vec<String>,
    /// PostgreSQL: the type class of each of `columns`; empty for MySQL.
    classes: Vec<postgres::Class>,
}

/// Whose expression syntax and semantics a filter has.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Dialect {
    MySql,
    Postgres,
}

/// Why a filter cannot be evaluated on change rows (message names the construct and its position).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{reason} (at character {position})")]
pub struct UnsupportedFilter {
    reason: String,
    position: usize,
}

impl UnsupportedFilter {
    /// What is unsupported or malformed, without the position.
    pub fn reason(&self) -> &str {
        &self.reason
    }

    /// Where it starts in the filter text: a 1-based character (not byte) position; one past
    /// the last character when the filter ends too early.
    pub fn position(&self) -> usize {
        self.position
    }
}

/// One column value as the evaluator sees it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Value<'a> {
    /// SQL NULL.
    Null,
    /// The value's text form; numbers, dates etc. arrive as their text form too.
    Text(&'a str),
}

impl RowFilter {
    /// Compiles `sql`, or says which construct keeps it from being evaluated on change rows.
    pub fn parse(sql: &str) -> Result<RowFilter, UnsupportedFilter> {
        Parser::new(sql, Dialect::MySql, &[]).filter()
    }

    /// Compiles `sql` as PostgreSQL reads it, for a table whose columns are `(name, type)`
    /// (the type as `format_type` writes it), or says why it cannot be evaluated on change rows.
    pub fn parse_postgres(sql: &str, columns: &[(&str, &str)]) -> Result<RowFilter, UnsupportedFilter> {
        Parser::new(sql, Dialect::Postgres, columns).filter()
    }

    /// Column names the filter refers to (unquoted), each once, in first-use order.
    pub fn columns(&self) -> Vec<String> {
        self.columns.clone()
    }

    /// SQL three-valued result: Some(true)/Some(false), None for UNKNOWN (NULL). A row is kept only on Some(true).
    /// `lookup` maps a column name (case-insensitive match, as MySQL column names are) to its value; a column the lookup does not know makes the result None.
    pub fn eval<'a>(&self, lookup: impl Fn(&str) -> Option<Value<'a>>) -> Option<bool> {
        // An unknown column means the filter was compiled against a different table shape;
        // treating it as NULL could turn `x IS NULL` true, so the whole answer is unknown.
        let row = self.columns.iter().map(|c| lookup(c)).collect::<Option<Vec<_>>>()?;
        self.root.truth(&row)
    }

    /// The result of a filter compiled by [`parse_postgres`](Self::parse_postgres): whether the
    /// row is kept (the filter is TRUE; FALSE and NULL drop it), or the column value the filter
    /// could not read as its type.
    pub fn eval_postgres<'a>(&self, lookup: impl Fn(&str) -> Option<Value<'a>>) -> Result<bool, String> {
        let Some(row) = self.columns.iter().map(|c| lookup(c)).collect::<Option<Vec<_>>>() else {
            return Err("a column of the filter is missing from the row".to_owned());
        };
        Ok(self.root.pg_truth(&row, &self.classes)? == Some(true))
    }

    /// Keep the row? (eval == Some(true))
    pub fn keeps<'a>(&self, lookup: impl Fn(&str) -> Option<Value<'a>>) -> bool {
        self.eval(lookup) == Some(true)
    }
}

// ---------------------------------------------------------------------------------------------
// Lexer

#[derive(Debug, Clone, PartialEq)]
enum TokKind {
    Ident {
        name: String,
        quoted: bool,
    },
    Number(String),
    Str(String),
    LParen,
    RParen,
    Comma,
    Dot,
    Eq,
    NullSafeEq,
    Ne,
    Lt,
    Le,
    Gt,
    Ge,
    AndAnd,
    OrOr,
    Bang,
    Minus,
    Plus,
    /// Something never valid in the subset. Lexing stops here; the parser reports it only if
    /// it gets this far, so the leftmost problem is the one named.
    Reject(String),
    Eof,
}

#[derive(Debug, Clone)]
struct Tok {
    kind: TokKind,
    /// Byte offset into the filter text.
    at: usize,
}

fn is_ident_char(c: char) -> bool {
    c.is_ascii_alphanumeric() || c == '_' || c == '$' || !c.is_ascii()
}

fn lex(src: &str, dialect: Dialect) -> Vec<Tok> {
    let pg = dialect == Dialect::Postgres;
    let b = src.as_bytes();
    let mut toks: Vec<Tok> = Vec::new();
    let mut i = 0;
    while i < b.len() {
        let next = b.get(i + 1).copied();
        let (kind, end) = match b[i] {
            b' ' | b'\t' | b'\n' | b'\r' | 0x0b | 0x0c => {
                i += 1;
                continue;
            }
            b'#' if pg => (TokKind::Reject("operator `#` is not supported".into()), i),
            b'#' => {
                i = line_end(b, i);
                continue;
            }
            // MySQL needs whitespace after `--` for a comment; `--5` is minus minus five.
            b'-' if next == Some(b'-') && (pg || b.get(i + 2).is_none_or(|c| c.is_ascii_whitespace())) => {
                i = line_end(b, i);
                continue;
            }
            b'/' if next == Some(b'*') => {
                let body = src[i + 2..].find("*/").map(|len| &src[i + 2..i + 2 + len]);
                if !pg && (matches!(b.get(i + 2), Some(b'!' | b'+')) || b[i..].starts_with(b"/*M!")) {
                    (TokKind::Reject("executable comment or optimizer hint `/*!...*/` is not supported".into()), i)
                } else if pg && body.is_some_and(|body| body.contains("/*")) {
                    // PostgreSQL nests comments, MySQL does not: refuse rather than guess.
                    (TokKind::Reject("nested comment `/* /* */ */` is not supported".into()), i)
                } else if let Some(body) = body {
                    i += 2 + body.len() + 2;
                    continue;
                } else {
                    (TokKind::Reject("unterminated comment `/*`".into()), i)
                }
            }
            b'\'' if pg => match lex_standard_string(src, i) {
                Some((text, end)) => (TokKind::Str(text), end),
                None => (TokKind::Reject("unterminated string literal".into()), i),
            },
            b'"' if pg => match lex_quoted(src, i, '"') {
                Some((name, _)) if name.is_empty() => (TokKind::Reject("empty identifier \"\"".into()), i),
                Some((name, end)) => (TokKind::Ident { name, quoted: true }, end),
                None => (TokKind::Reject("unterminated quoted identifier".into()), i),
            },
            b'`' if pg => (TokKind::Reject("back-quoted identifier (MySQL); quote names with \"...\"".into()), i),
            q @ (b'\'' | b'"') => match lex_string(src, i, q as char) {
                Some((text, end)) => (TokKind::Str(text), end),
                None => (TokKind::Reject("unterminated string literal".into()), i),
            },
            b'`' => match lex_quoted(src, i, '`') {
                Some((name, _)) if name.is_empty() => (TokKind::Reject("empty identifier ``".into()), i),
                Some((name, end)) => (TokKind::Ident { name, quoted: true }, end),
                None => (TokKind::Reject("unterminated back-quoted identifier".into()), i),
            },
            b'0'..=b'9' => lex_number(src, i),
            // After a name, `.5` is a qualifier dot, not the number 0.5.
            b'.' if next.is_some_and(|c| c.is_ascii_digit())
                && !matches!(toks.last(), Some(Tok { kind: TokKind::Ident { .. }, .. })) =>
            {
                lex_number(src, i)
            }
            _ => {
                let (kind, len) = if pg { lex_pg_symbol(src, i) } else { lex_symbol(src, i) };
                (kind, i + len)
            }
        };
        let stop = matches!(kind, TokKind::Reject(_));
        toks.push(Tok { kind, at: i });
        if stop {
            return toks;
        }
        i = end;
    }
    toks.push(Tok { kind: TokKind::Eof, at: src.len() });
    toks
}

fn line_end(b: &[u8], from: usize) -> usize {
    b[from..].iter().position(|&c| c == b'\n').map_or(b.len(), |p| from + p)
}

/// A quoted string starting at the quote at `start`: its decoded text and the offset after it.
fn lex_string(src: &str, start: usize, quote: char) -> Option<(String, usize)> {
    let mut out = String::new();
    let mut chars = src[start + 1..].char_indices().peekable();
    while let Some((off, c)) = chars.next() {
        if c == '\\' {
            let (_, e) = chars.next()?;
            match e {
                '0' => out.push('\0'),
                'b' => out.push('\u{8}'),
                'n' => out.push('\n'),
                'r' => out.push('\r'),
                't' => out.push('\t'),
                'Z' => out.push('\u{1a}'),
                // MySQL keeps these two escaped so that LIKE still sees a literal wildcard.
                '%' | '_' => {
                    out.push('\\');
                    out.push(e);
                }
                other => out.push(other),
            }
        } else if c == quote {
            if chars.peek().is_some_and(|&(_, n)| n == quote) {
                chars.next();
                out.push(quote);
            } else {
                return Some((out, start + 1 + off + c.len_utf8()));
            }
        } else {
            out.push(c);
        }
    }
    None
}

/// Text between `quote`s, a doubled one standing for itself: MySQL's back-quoted names,
/// PostgreSQL's double-quoted names.
fn lex_quoted(src: &str, start: usize, quote: char) -> Option<(String, usize)> {
    let mut out = String::new();
    let mut chars = src[start + 1..].char_indices().peekable();
    while let Some((off, c)) = chars.next() {
        if c == quote {
            if chars.peek().is_some_and(|&(_, n)| n == quote) {
                chars.next();
                out.push(quote);
            } else {
                return Some((out, start + 1 + off + c.len_utf8()));
            }
        } else {
            out.push(c);
        }
    }
    None
}

/// A standard-conforming string (PostgreSQL): no backslash escapes, `''` for a quote.
fn lex_standard_string(src: &str, start: usize) -> Option<(String, usize)> {
    lex_quoted(src, start, '\'')
}

/// PostgreSQL's operators and punctuation at `i`: those MySQL's lexer reads alike, and the
/// ones that mean something else here refused.
fn lex_pg_symbol(src: &str, i: usize) -> (TokKind, usize) {
    let rest = &src[i..];
    let reject = |what: &str, len: usize| (TokKind::Reject(format!("{what} `{}` is not supported", &rest[..len])), len);
    if rest.starts_with("::") {
        return reject("type cast", 2);
    }
    if rest.starts_with("<=>") {
        return (TokKind::Reject("`<=>` is MySQL's; write IS NOT DISTINCT FROM".into()), 3);
    }
    if rest.starts_with("||") {
        return reject("string concatenation", 2);
    }
    if rest.starts_with("&&") {
        return reject("operator", 2);
    }
    if rest.starts_with('!') && !rest.starts_with("!=") {
        return reject("operator", 1);
    }
    if rest.starts_with('~') {
        return reject("pattern match operator", 1);
    }
    if rest.starts_with('$') {
        return reject("dollar quoting or parameter", 1);
    }
    lex_symbol(src, i)
}

/// A number starting at `start`, and the offset after it.
fn lex_number(src: &str, start: usize) -> (TokKind, usize) {
    let b = src.as_bytes();
    let digits = |mut j: usize| {
        while b.get(j).is_some_and(|c| c.is_ascii_digit()) {
            j += 1;
        }
        j
    };
    let mut j = digits(start);
    if b.get(j) == Some(&b'.') {
        j = digits(j + 1);
    }
    if matches!(b.get(j), Some(b'e' | b'E')) {
        let mut k = j + 1;
        if matches!(b.get(k), Some(b'+' | b'-')) {
            k += 1;
        }
        if b.get(k).is_some_and(|c| c.is_ascii_digit()) {
            j = digits(k);
        }
    }
    if src[j..].chars().next().is_some_and(is_ident_char) {
        let end = src[j..].find(|c: char| !is_ident_char(c)).map_or(src.len(), |p| j + p);
        let what = format!("hexadecimal/bit literal or identifier starting with a digit `{}`", &src[start..end]);
        return (TokKind::Reject(format!("{what} is not supported")), start);
    }
    (TokKind::Number(src[start..j].to_string()), j)
}

/// Operators, punctuation and bare words at `i`, with their length in bytes.
fn lex_symbol(src: &str, i: usize) -> (TokKind, usize) {
    let rest = &src[i..];
    let two = |s: &str| rest.starts_with(s);
    let reject = |what: &str, len: usize| (TokKind::Reject(format!("{what} `{}` is not supported", &rest[..len])), len);
    match rest.as_bytes()[0] {
        b'(' => (TokKind::LParen, 1),
        b')' => (TokKind::RParen, 1),
        b',' => (TokKind::Comma, 1),
        b'.' => (TokKind::Dot, 1),
        b'=' => (TokKind::Eq, 1),
        b'<' if two("<=>") => (TokKind::NullSafeEq, 3),
        b'<' if two("<=") => (TokKind::Le, 2),
        b'<' if two("<>") => (TokKind::Ne, 2),
        b'<' if two("<<") => reject("bit shift operator", 2),
        b'<' => (TokKind::Lt, 1),
        b'>' if two(">=") => (TokKind::Ge, 2),
        b'>' if two(">>") => reject("bit shift operator", 2),
        b'>' => (TokKind::Gt, 1),
        b'!' if two("!=") => (TokKind::Ne, 2),
        b'!' => (TokKind::Bang, 1),
        b'&' if two("&&") => (TokKind::AndAnd, 2),
        b'|' if two("||") => (TokKind::OrOr, 2),
        b'&' | b'|' | b'^' | b'~' => reject("bit operator", 1),
        b'-' if two("->>") => reject("JSON operator", 3),
        b'-' if two("->") => reject("JSON operator", 2),
        b'-' => (TokKind::Minus, 1),
        b'+' => (TokKind::Plus, 1),
        b'*' | b'/' | b'%' => reject("arithmetic operator", 1),
        b':' if two(":=") => reject("assignment", 2),
        b'@' => reject("variable", 1),
        b'?' => reject("parameter placeholder", 1),
        b';' => reject("statement separator", 1),
        b'{' => reject("ODBC escape", 1),
        _ => match rest.chars().next() {
            Some(c) if is_ident_char(c) => {
                let len = rest.find(|c: char| !is_ident_char(c)).unwrap_or(rest.len());
                (TokKind::Ident { name: rest[..len].to_string(), quoted: false }, len)
            }
            Some(c) => (TokKind::Reject(format!("unexpected character `{c}`")), c.len_utf8()),
            // Unreachable (the caller never passes the end), but a zero-length token would
            // make the lexer spin, so it is a rejection like any other.
            None => (TokKind::Reject("unexpected end of the filter".into()), 0),
        },
    }
}

// ---------------------------------------------------------------------------------------------
// Syntax tree and parser

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum CmpOp {
    Eq,
    NullSafeEq,
    Ne,
    Lt,
    Le,
    Gt,
    Ge,
}

impl CmpOp {
    fn holds(self, ord: Ordering) -> bool {
        match self {
            CmpOp::Eq | CmpOp::NullSafeEq => ord == Ordering::Equal,
            CmpOp::Ne => ord != Ordering::Equal,
            CmpOp::Lt => ord == Ordering::Less,
            CmpOp::Le => ord != Ordering::Greater,
            CmpOp::Gt => ord == Ordering::Greater,
            CmpOp::Ge => ord != Ordering::Less,
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum PatTok {
    /// A character, already case-folded.
    Char(char),
    /// `_`
    One,
    /// `%`
    Any,
}

#[derive(Debug, Clone)]
enum Expr {
    /// Index into `RowFilter::columns`.
    Column(usize),
    Null,
    Bool(bool),
    /// Validated numeric literal text, sign included.
    Number(String),
    /// Decoded string literal.
    Text(String),
    Not(Box<Expr>),
    /// AND/OR/XOR chains are kept flat so long chains cost no recursion depth.
    And(Vec<Expr>),
    Or(Vec<Expr>),
    Xor(Vec<Expr>),
    Compare(CmpOp, Box<Expr>, Box<Expr>),
    IsNull {
        subject: Box<Expr>,
        negated: bool,
    },
    /// `IS [NOT] TRUE | FALSE | UNKNOWN` (UNKNOWN is `None`).
    IsTruth {
        subject: Box<Expr>,
        want: Option<bool>,
        negated: bool,
    },
    In {
        subject: Box<Expr>,
        list: Vec<Expr>,
        negated: bool,
    },
    Between {
        subject: Box<Expr>,
        low: Box<Expr>,
        high: Box<Expr>,
        negated: bool,
    },
    /// A NULL pattern is `None`: the result is always unknown. `fold`: case-insensitive (MySQL's
    /// `_ci` collations, PostgreSQL's ILIKE).
    Like {
        subject: Box<Expr>,
        pattern: Option<Vec<PatTok>>,
        negated: bool,
        fold: bool,
    },
}

impl Expr {
    fn is_literal(&self) -> bool {
        matches!(self, Expr::Null | Expr::Bool(_) | Expr::Number(_) | Expr::Text(_))
    }
}

/// Bare words that look like column names but are not: MySQL evaluates them as functions.
const NILADIC_FUNCTIONS: &[&str] = &[
    "CURRENT_DATE",
    "CURRENT_TIME",
    "CURRENT_TIMESTAMP",
    "CURRENT_USER",
    "CURRENT_ROLE",
    "LOCALTIME",
    "LOCALTIMESTAMP",
    "UTC_DATE",
    "UTC_TIME",
    "UTC_TIMESTAMP",
];

/// PostgreSQL's bare words that are functions, beside [`NILADIC_FUNCTIONS`].
const PG_NILADIC_FUNCTIONS: &[&str] = &["USER", "SESSION_USER", "CURRENT_SCHEMA", "CURRENT_CATALOG", "SYSTEM_USER"];

/// Words that can never be a bare column name: the filter's own operators and the clauses of
/// the statement a filter is spliced into.
const RESERVED: &[&str] = &[
    "AND", "OR", "XOR", "IS", "IN", "BETWEEN", "LIKE", "REGEXP", "RLIKE", "DIV", "MOD", "COLLATE", "FROM", "WHERE",
    "GROUP", "HAVING", "ORDER", "LIMIT", "UNION", "ON", "USING", "JOIN",
];

type Parsed<T> = Result<T, UnsupportedFilter>;

struct Parser<'s> {
    src: &'s str,
    toks: Vec<Tok>,
    pos: usize,
    depth: usize,
    columns: Vec<String>,
    dialect: Dialect,
    /// PostgreSQL: the table's columns and their types; `classes` follows `columns`.
    table: &'s [(&'s str, &'s str)],
    classes: Vec<postgres::Class>,
}

impl<'s> Parser<'s> {
    fn new(src: &'s str, dialect: Dialect, table: &'s [(&'s str, &'s str)]) -> Parser<'s> {
        let toks = lex(src, dialect);
        Parser { src, toks, pos: 0, depth: 0, columns: Vec::new(), dialect, table, classes: Vec::new() }
    }

    fn pg(&self) -> bool {
        self.dialect == Dialect::Postgres
    }

    /// The whole filter.
    fn filter(mut self) -> Parsed<RowFilter> {
        if matches!(self.peek(), TokKind::Eof) {
            return Err(self.error(self.at(), "the filter is empty"));
        }
        let at = self.at();
        let root = self.expr()?;
        if !matches!(self.peek(), TokKind::Eof) {
            let expected =
                if self.pg() { "AND, OR or the end of the filter" } else { "AND, OR, XOR or the end of the filter" };
            return self.unexpected(expected);
        }
        self.condition(at, &root)?;
        Ok(RowFilter { root, columns: self.columns, classes: self.classes })
    }
    fn tok(&self, ahead: usize) -> Option<&Tok> {
        self.toks.get(self.pos + ahead)
    }

    fn peek(&self) -> &TokKind {
        self.tok(0).map_or(&TokKind::Eof, |t| &t.kind)
    }

    fn peek_nth(&self, ahead: usize) -> &TokKind {
        self.tok(ahead).map_or(&TokKind::Eof, |t| &t.kind)
    }

    fn at(&self) -> usize {
        self.tok(0).map_or(self.src.len(), |t| t.at)
    }

    fn advance(&mut self) {
        if self.pos < self.toks.len() {
            self.pos += 1;
        }
    }

    fn eat(&mut self, kind: &TokKind) -> bool {
        if self.peek() == kind {
            self.advance();
            true
        } else {
            false
        }
    }

    fn kw_at(&self, ahead: usize, kw: &str) -> bool {
        matches!(self.peek_nth(ahead), TokKind::Ident { name, quoted: false } if name.eq_ignore_ascii_case(kw))
    }

    fn eat_kw(&mut self, kw: &str) -> bool {
        if self.kw_at(0, kw) {
            self.advance();
            true
        } else {
            false
        }
    }

    fn error(&self, at: usize, reason: impl Into<String>) -> UnsupportedFilter {
        let position = self.src.get(..at).map_or(at, |s| s.chars().count()) + 1;
        UnsupportedFilter { reason: reason.into(), position }
    }

    fn fail<T>(&self, at: usize, reason: impl Into<String>) -> Parsed<T> {
        Err(self.error(at, reason))
    }

    fn unexpected<T>(&self, expected: &str) -> Parsed<T> {
        let found = match self.peek() {
            TokKind::Reject(reason) => return self.fail(self.at(), reason.clone()),
            TokKind::Ident { name, quoted: false } => format!("`{name}`"),
            TokKind::Ident { name, quoted: true } => format!("identifier `{name}`"),
            TokKind::Number(n) => format!("number {n}"),
            TokKind::Str(_) => "a string literal".to_string(),
            TokKind::Eof => "the end of the filter".to_string(),
            other => format!("`{}`", symbol(other)),
        };
        self.fail(self.at(), format!("expected {expected}, found {found}"))
    }

    /// Counts one more level of nesting for the construct at `at`, refusing filters nested
    /// beyond `MAX_DEPTH`. Callers that loop restore `depth` themselves when done.
    fn deeper(&mut self, at: usize) -> Parsed<()> {
        if self.depth >= MAX_DEPTH {
            return self.fail(at, format!("nesting deeper than {MAX_DEPTH} levels"));
        }
        self.depth += 1;
        Ok(())
    }

    /// Runs `f` one nesting level deeper (see `deeper`).
    fn nested<T>(&mut self, at: usize, f: impl FnOnce(&mut Self) -> Parsed<T>) -> Parsed<T> {
        self.deeper(at)?;
        let result = f(self);
        self.depth -= 1;
        result
    }

    fn column(&mut self, at: usize, name: String) -> Parsed<usize> {
        let same = |c: &String| if self.pg() { *c == name } else { same_name(c, &name) };
        if let Some(i) = self.columns.iter().position(same) {
            return Ok(i);
        }
        if self.pg() {
            let Some((_, type_sql)) = self.table.iter().find(|(c, _)| *c == name) else {
                return self.fail(at, format!("column `{name}` does not exist in the table"));
            };
            self.classes.push(postgres::Class::of(type_sql));
        }
        self.columns.push(name);
        Ok(self.columns.len() - 1)
    }

    /// `expr := xor ((OR | "||") xor)*`
    fn expr(&mut self) -> Parsed<Expr> {
        let at = self.at();
        let first = self.xor()?;
        if !(self.kw_at(0, "OR") || self.peek() == &TokKind::OrOr) {
            return Ok(first);
        }
        self.condition(at, &first)?;
        let mut items = vec![first];
        while self.eat_kw("OR") || self.eat(&TokKind::OrOr) {
            let at = self.at();
            let item = self.xor()?;
            self.condition(at, &item)?;
            items.push(item);
        }
        Ok(Expr::Or(items))
    }

    /// `xor := and (XOR and)*`
    fn xor(&mut self) -> Parsed<Expr> {
        let first = self.and()?;
        if self.pg() || !self.kw_at(0, "XOR") {
            return Ok(first);
        }
        let mut items = vec![first];
        while self.eat_kw("XOR") {
            items.push(self.and()?);
        }
        Ok(Expr::Xor(items))
    }

    /// `and := not ((AND | "&&") not)*`
    fn and(&mut self) -> Parsed<Expr> {
        let at = self.at();
        let first = self.not()?;
        if !(self.kw_at(0, "AND") || self.peek() == &TokKind::AndAnd) {
            return Ok(first);
        }
        self.condition(at, &first)?;
        let mut items = vec![first];
        while self.eat_kw("AND") || self.eat(&TokKind::AndAnd) {
            let at = self.at();
            let item = self.not()?;
            self.condition(at, &item)?;
            items.push(item);
        }
        Ok(Expr::And(items))
    }

    /// `not := NOT not | is`
    fn not(&mut self) -> Parsed<Expr> {
        let at = self.at();
        if self.eat_kw("NOT") {
            return self.nested(at, |p| {
                let inner_at = p.at();
                let inner = p.not()?;
                p.condition(inner_at, &inner)?;
                Ok(Expr::Not(Box::new(inner)))
            });
        }
        self.is()
    }

    /// PostgreSQL: `expr`, starting at `at`, must be a boolean.
    fn condition(&self, at: usize, expr: &Expr) -> Parsed<()> {
        if !self.pg() {
            return Ok(());
        }
        postgres::check_condition(expr, &self.columns, &self.classes).map_err(|reason| self.error(at, reason))
    }

    /// PostgreSQL: `left op right` (`at` the operator) must compare like with like.
    fn comparison(&self, at: usize, op: postgres::Comparing, left: &Expr, right: &Expr) -> Parsed<()> {
        if !self.pg() {
            return Ok(());
        }
        postgres::check_comparison(op, left, right, &self.columns, &self.classes)
            .map_err(|reason| self.error(at, reason))
    }

    /// `is := bool_pri (IS [NOT] (TRUE|FALSE|UNKNOWN|NULL))*`
    fn is(&mut self) -> Parsed<Expr> {
        enum Test {
            Null,
            Truth(Option<bool>),
        }
        let mut subject = self.bool_pri()?;
        let depth = self.depth;
        while self.kw_at(0, "IS") {
            let at = self.at();
            self.advance();
            let negated = self.eat_kw("NOT");
            let test = if self.eat_kw("TRUE") {
                Test::Truth(Some(true))
            } else if self.eat_kw("FALSE") {
                Test::Truth(Some(false))
            } else if self.eat_kw("UNKNOWN") {
                Test::Truth(None)
            } else if self.eat_kw("NULL") {
                Test::Null
            } else {
                return self.unexpected("NULL, TRUE, FALSE or UNKNOWN after IS");
            };
            // Each test wraps the tree once more, so a long `IS TRUE IS TRUE ...` chain is
            // as deep as nested parentheses.
            self.deeper(at)?;
            if matches!(test, Test::Truth(_)) {
                self.condition(at, &subject)?;
            }
            let boxed = Box::new(subject);
            subject = match test {
                Test::Null => Expr::IsNull { subject: boxed, negated },
                Test::Truth(want) => Expr::IsTruth { subject: boxed, want, negated },
            };
        }
        self.depth = depth;
        Ok(subject)
    }

    /// `bool_pri := predicate (comparison predicate | IS [NOT] NULL)*`
    fn bool_pri(&mut self) -> Parsed<Expr> {
        let mut left = self.predicate()?;
        let depth = self.depth;
        let mut compared = false;
        loop {
            let at = self.at();
            if self.pg() && (self.kw_at(0, "ISNULL") || self.kw_at(0, "NOTNULL")) {
                let negated = self.kw_at(0, "NOTNULL");
                self.deeper(at)?;
                self.advance();
                left = Expr::IsNull { subject: Box::new(left), negated };
                continue;
            }
            if self.kw_at(0, "IS") {
                // Only IS [NOT] NULL sits at this level; IS TRUE and friends bind looser.
                let null_at = if self.kw_at(1, "NOT") { 2 } else { 1 };
                if self.pg() && self.kw_at(null_at, "DISTINCT") {
                    // IS [NOT] DISTINCT FROM: the null-safe (in)equality.
                    self.deeper(at)?;
                    self.pos += null_at + 1;
                    if !self.eat_kw("FROM") {
                        return self.unexpected("FROM after IS DISTINCT");
                    }
                    let right = self.predicate()?;
                    self.comparison(at, postgres::Comparing::Equality, &left, &right)?;
                    let same = Expr::Compare(CmpOp::NullSafeEq, Box::new(left), Box::new(right));
                    left = if null_at == 2 { same } else { Expr::Not(Box::new(same)) };
                    continue;
                }
                if !self.kw_at(null_at, "NULL") {
                    break;
                }
                self.deeper(at)?;
                self.pos += null_at + 1;
                left = Expr::IsNull { subject: Box::new(left), negated: null_at == 2 };
                continue;
            }
            let op = match self.peek() {
                TokKind::Eq => CmpOp::Eq,
                TokKind::NullSafeEq => CmpOp::NullSafeEq,
                TokKind::Ne => CmpOp::Ne,
                TokKind::Lt => CmpOp::Lt,
                TokKind::Le => CmpOp::Le,
                TokKind::Gt => CmpOp::Gt,
                TokKind::Ge => CmpOp::Ge,
                _ => break,
            };
            self.advance();
            if self.kw_at(0, "ANY") || self.kw_at(0, "ALL") || self.kw_at(0, "SOME") {
                return self.fail(self.at(), "subquery comparison (ANY/ALL/SOME) is not supported");
            }
            if self.pg() && compared {
                return self.fail(at, "comparisons do not chain in PostgreSQL (`a = b = c`); join them with AND");
            }
            compared = true;
            // `a = b = c` is `(a = b) = c`: every link of a chain nests the tree one level.
            self.deeper(at)?;
            let right = self.predicate()?;
            let comparing = match op {
                CmpOp::Eq | CmpOp::NullSafeEq | CmpOp::Ne => postgres::Comparing::Equality,
                _ => postgres::Comparing::Order,
            };
            self.comparison(at, comparing, &left, &right)?;
            left = Expr::Compare(op, Box::new(left), Box::new(right));
        }
        self.depth = depth;
        Ok(left)
    }

    /// `predicate := operand [NOT] IN (...) | operand [NOT] BETWEEN operand AND operand
    ///             | operand [NOT] LIKE literal [ESCAPE 'c'] | operand`
    fn predicate(&mut self) -> Parsed<Expr> {
        let subject = self.operand()?;
        for word in ["REGEXP", "RLIKE"] {
            if self.kw_at(0, word) || (self.kw_at(0, "NOT") && self.kw_at(1, word)) {
                return self.fail(self.at(), format!("{word} is not supported"));
            }
        }
        if self.kw_at(0, "SOUNDS") {
            return self.fail(self.at(), "SOUNDS LIKE is not supported");
        }
        if self.kw_at(0, "MEMBER") {
            return self.fail(self.at(), "MEMBER OF is not supported");
        }
        if self.pg() && (self.kw_at(0, "SIMILAR") || (self.kw_at(0, "NOT") && self.kw_at(1, "SIMILAR"))) {
            return self.fail(self.at(), "SIMILAR TO is not supported");
        }
        let words: &[&str] = if self.pg() { &["IN", "BETWEEN", "LIKE", "ILIKE"] } else { &["IN", "BETWEEN", "LIKE"] };
        let negated = self.kw_at(0, "NOT") && words.iter().any(|kw| self.kw_at(1, kw));
        if negated {
            self.advance();
        }
        let at = self.at();
        if self.eat_kw("IN") {
            let list = self.in_list()?;
            for item in &list {
                self.comparison(at, postgres::Comparing::Equality, &subject, item)?;
            }
            Ok(Expr::In { subject: Box::new(subject), list, negated })
        } else if self.eat_kw("BETWEEN") {
            if self.pg() && self.kw_at(0, "SYMMETRIC") {
                return self.fail(self.at(), "BETWEEN SYMMETRIC is not supported");
            }
            if self.pg() {
                self.eat_kw("ASYMMETRIC");
            }
            let low = self.operand()?;
            if !self.eat_kw("AND") {
                return self.unexpected("AND after BETWEEN's lower bound");
            }
            let high = self.operand()?;
            self.comparison(at, postgres::Comparing::Order, &subject, &low)?;
            self.comparison(at, postgres::Comparing::Order, &subject, &high)?;
            Ok(Expr::Between { subject: Box::new(subject), low: Box::new(low), high: Box::new(high), negated })
        } else if self.kw_at(0, "LIKE") || (self.pg() && self.kw_at(0, "ILIKE")) {
            // MySQL's usual collations ignore case; PostgreSQL's LIKE does not, its ILIKE does.
            let fold = !self.pg() || self.kw_at(0, "ILIKE");
            self.advance();
            let pattern = self.like_pattern(fold)?;
            if self.pg() {
                postgres::check_like(&subject, &self.columns, &self.classes).map_err(|r| self.error(at, r))?;
            }
            Ok(Expr::Like { subject: Box::new(subject), pattern, negated, fold })
        } else {
            Ok(subject)
        }
    }

    fn in_list(&mut self) -> Parsed<Vec<Expr>> {
        if !self.eat(&TokKind::LParen) {
            return self.unexpected("`(` after IN");
        }
        if self.starts_subquery() {
            return self.fail(self.at(), "subquery is not supported");
        }
        if self.peek() == &TokKind::RParen {
            return self.fail(self.at(), "empty IN list");
        }
        let mut list = Vec::new();
        loop {
            let at = self.at();
            let item = self.operand()?;
            if !item.is_literal() {
                return self.fail(at, "IN list items must be literals; columns and expressions are not supported");
            }
            list.push(item);
            if self.eat(&TokKind::RParen) {
                return Ok(list);
            }
            if !self.eat(&TokKind::Comma) {
                return self.unexpected("`,` or `)` in the IN list");
            }
        }
    }

    fn like_pattern(&mut self, fold: bool) -> Parsed<Option<Vec<PatTok>>> {
        let at = self.at();
        let pattern = match self.operand()? {
            Expr::Text(s) => s,
            Expr::Number(_) | Expr::Bool(_) if self.pg() => {
                return self.fail(at, "LIKE pattern must be a string literal");
            }
            Expr::Number(s) => s,
            Expr::Bool(b) => String::from(if b { "1" } else { "0" }),
            Expr::Null => return Ok(None),
            _ => return self.fail(at, "LIKE pattern must be a literal; columns and expressions are not supported"),
        };
        let mut escape = Some('\\');
        if self.eat_kw("ESCAPE") {
            let at = self.at();
            escape = match self.operand()? {
                Expr::Text(s) if s.chars().count() <= 1 => s.chars().next(),
                _ => return self.fail(at, "ESCAPE must be a string literal of at most one character"),
            };
        }
        Ok(Some(compile_like(&pattern, escape, fold)))
    }

    fn starts_subquery(&self) -> bool {
        ["SELECT", "WITH", "VALUES", "TABLE"].iter().any(|kw| self.kw_at(0, kw))
    }

    /// `operand := simple`, refusing the binary operators that would extend it into arithmetic.
    fn operand(&mut self) -> Parsed<Expr> {
        let operand = self.simple()?;
        match self.peek() {
            TokKind::Plus | TokKind::Minus => {
                let op = if self.peek() == &TokKind::Plus { '+' } else { '-' };
                self.fail(self.at(), format!("arithmetic operator `{op}` is not supported"))
            }
            _ if self.kw_at(0, "DIV") || self.kw_at(0, "MOD") => {
                self.fail(self.at(), "arithmetic operator (DIV/MOD) is not supported")
            }
            _ if self.kw_at(0, "COLLATE") => self.fail(self.at(), "COLLATE is not supported"),
            _ => Ok(operand),
        }
    }

    /// `simple := literal | column | "!" simple | ("-" | "+") simple | "(" expr ")"`
    fn simple(&mut self) -> Parsed<Expr> {
        let at = self.at();
        let tok = self.peek().clone();
        match tok {
            TokKind::Number(n) => {
                self.advance();
                Ok(Expr::Number(n))
            }
            TokKind::Str(mut s) => {
                self.advance();
                if self.pg() && matches!(self.peek(), TokKind::Str(_)) {
                    return self.fail(self.at(), "adjacent string literals are not supported; write one literal");
                }
                while let TokKind::Str(more) = self.peek() {
                    s.push_str(more);
                    self.advance();
                }
                Ok(Expr::Text(s))
            }
            TokKind::Ident { name, quoted } => self.name(at, name, quoted),
            TokKind::Bang => {
                self.advance();
                self.nested(at, |p| Ok(Expr::Not(Box::new(p.simple()?))))
            }
            TokKind::Minus | TokKind::Plus => {
                self.advance();
                let inner = self.nested(at, |p| p.simple())?;
                match inner {
                    Expr::Number(n) if tok == TokKind::Plus => Ok(Expr::Number(n)),
                    Expr::Number(n) => Ok(Expr::Number(match n.strip_prefix('-') {
                        Some(positive) => positive.to_string(),
                        None => format!("-{n}"),
                    })),
                    _ => self.fail(at, "unary minus/plus is supported on numeric literals only"),
                }
            }
            TokKind::LParen => {
                self.advance();
                if self.starts_subquery() {
                    return self.fail(self.at(), "subquery is not supported");
                }
                let inner = self.nested(at, |p| p.expr())?;
                if self.peek() == &TokKind::Comma {
                    return self.fail(at, "row constructor `(a, b, ...)` is not supported");
                }
                if !self.eat(&TokKind::RParen) {
                    return self.unexpected("`)`");
                }
                Ok(inner)
            }
            _ => self.unexpected("a column or a literal"),
        }
    }

    fn name(&mut self, at: usize, name: String, quoted: bool) -> Parsed<Expr> {
        self.advance();
        if !quoted && self.pg() && PG_NILADIC_FUNCTIONS.contains(&name.to_ascii_uppercase().as_str()) {
            return self.fail(at, format!("function `{name}` is not supported"));
        }
        if !quoted {
            let upper = name.to_ascii_uppercase();
            match upper.as_str() {
                "NULL" => return Ok(Expr::Null),
                "TRUE" => return Ok(Expr::Bool(true)),
                "FALSE" => return Ok(Expr::Bool(false)),
                "SELECT" | "WITH" | "VALUES" | "TABLE" | "EXISTS" => {
                    return self.fail(at, "subquery is not supported");
                }
                // Reserved words MySQL would never take as a bare column name: reading one as a
                // column would turn a typo like `a = 1 AND OR b` into a filter that matches nothing.
                _ if RESERVED.contains(&upper.as_str()) => {
                    return self.fail(
                        at,
                        format!("expected a column or a literal, found `{name}` (back-quote it if it is a column)"),
                    );
                }
                "CASE" => return self.fail(at, "CASE expression is not supported"),
                "INTERVAL" => return self.fail(at, "INTERVAL expression is not supported"),
                "BINARY" => return self.fail(at, "BINARY operator is not supported"),
                "NOT" => {
                    return self
                        .fail(at, "NOT cannot appear inside a comparison; put the negated condition in parentheses");
                }
                _ if NILADIC_FUNCTIONS.contains(&upper.as_str()) => {
                    return self.fail(at, format!("function `{name}` is not supported"));
                }
                _ => {}
            }
        }
        match self.peek() {
            TokKind::LParen => return self.fail(at, format!("function call `{name}(...)` is not supported")),
            TokKind::Str(_) if !quoted => {
                return self
                    .fail(at, format!("typed literal or character set introducer `{name}'...'` is not supported"));
            }
            _ => {}
        }
        // A qualified name (`db.t.c`) names the column by its last part.
        let (mut name, mut quoted) = (name, quoted);
        while self.peek() == &TokKind::Dot {
            self.advance();
            match self.peek().clone() {
                TokKind::Ident { name: part, quoted: part_quoted } => {
                    self.advance();
                    (name, quoted) = (part, part_quoted);
                }
                _ => return self.unexpected("a column name after `.`"),
            }
        }
        if self.peek() == &TokKind::LParen {
            return self.fail(at, format!("function call `{name}(...)` is not supported"));
        }
        // PostgreSQL folds unquoted names to lower case (ASCII letters only, as in UTF-8).
        if self.pg() && !quoted {
            name = name.to_ascii_lowercase();
        }
        Ok(Expr::Column(self.column(at, name)?))
    }
}

fn symbol(kind: &TokKind) -> &'static str {
    match kind {
        TokKind::LParen => "(",
        TokKind::RParen => ")",
        TokKind::Comma => ",",
        TokKind::Dot => ".",
        TokKind::Eq => "=",
        TokKind::NullSafeEq => "<=>",
        TokKind::Ne => "<>",
        TokKind::Lt => "<",
        TokKind::Le => "<=",
        TokKind::Gt => ">",
        TokKind::Ge => ">=",
        TokKind::AndAnd => "&&",
        TokKind::OrOr => "||",
        TokKind::Bang => "!",
        TokKind::Minus => "-",
        TokKind::Plus => "+",
        _ => "?",
    }
}

fn compile_like(pattern: &str, escape: Option<char>, fold_case: bool) -> Vec<PatTok> {
    let fold = |c: char| if fold_case { fold(c) } else { c };
    let mut out = Vec::new();
    let mut chars = pattern.chars();
    while let Some(c) = chars.next() {
        let tok = if Some(c) == escape {
            // A trailing escape character stands for itself, as in MySQL.
            PatTok::Char(fold(chars.next().unwrap_or(c)))
        } else if c == '%' {
            // Runs of `%` match the same as one and would only slow matching down.
            if out.last() == Some(&PatTok::Any) {
                continue;
            }
            PatTok::Any
        } else if c == '_' {
            PatTok::One
        } else {
            PatTok::Char(fold(c))
        };
        out.push(tok);
    }
    out
}

// ---------------------------------------------------------------------------------------------
// Evaluation

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

    fn truth<'v>(&'v self, row: &[Value<'v>]) -> Option<bool> {
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
            Expr::Like { subject, pattern, negated, fold } => {
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

/// Simple (one-to-one) lowercase: `to_lowercase` may expand a character (`İ`), whose simple
/// mapping is the first character of that expansion.
fn fold(c: char) -> char {
    if c.is_ascii() { c.to_ascii_lowercase() } else { c.to_lowercase().next().unwrap_or(c) }
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

/// Column names match case-insensitively in MySQL, so `ID` and `id` are one column.
fn same_name(a: &str, b: &str) -> bool {
    a.chars().map(fold).eq(b.chars().map(fold))
}

/// `LIKE`: case-insensitive, but unlike `=` trailing spaces count, as in MySQL.
fn like_match(text: &str, pattern: &[PatTok], fold_case: bool) -> bool {
    let text: Vec<char> = if fold_case { text.chars().map(fold).collect() } else { text.chars().collect() };
    let (mut t, mut p) = (0, 0);
    // Where the last `%` was and how much text it has swallowed so far; on a mismatch the `%`
    // takes one more character. Only the last `%` needs retrying, which keeps this O(n·m).
    let mut star: Option<(usize, usize)> = None;
    while t < text.len() {
        match pattern.get(p) {
            Some(PatTok::Any) => {
                star = Some((p + 1, t));
                p += 1;
                continue;
            }
            Some(PatTok::One) => {
                t += 1;
                p += 1;
                continue;
            }
            Some(PatTok::Char(c)) if *c == text[t] => {
                t += 1;
                p += 1;
                continue;
            }
            _ => {}
        }
        match star {
            Some((after, swallowed)) => {
                p = after;
                t = swallowed + 1;
                star = Some((after, swallowed + 1));
            }
            None => return false,
        }
    }
    pattern[p..].iter().all(|tok| *tok == PatTok::Any)
}

/// A number read from text: exact for plain decimals, `f64` once an exponent is involved.
#[derive(Debug, Clone, Copy)]
enum Number<'t> {
    /// `int` has no leading and `frac` no trailing zeros, so equal values have equal digits.
    Exact {
        negative: bool,
        int: &'t str,
        frac: &'t str,
        text: &'t str,
    },
    Approx(f64),
}

/// Reads `[+-]digits[.digits][e[+-]digits]` (at least one mantissa digit), ignoring
/// surrounding whitespace as MySQL's string-to-number conversion does.
fn parse_number(text: &str) -> Option<Number<'_>> {
    let text = text.trim_matches(|c: char| c.is_ascii_whitespace());
    let (negative, unsigned) = match text.as_bytes().first()? {
        b'-' => (true, &text[1..]),
        b'+' => (false, &text[1..]),
        _ => (false, text),
    };
    let (mantissa, exponent) = match unsigned.find(['e', 'E']) {
        Some(e) => (&unsigned[..e], Some(&unsigned[e + 1..])),
        None => (unsigned, None),
    };
    let (int, frac) = mantissa.split_once('.').unwrap_or((mantissa, ""));
    let all_digits = |s: &str| s.bytes().all(|c| c.is_ascii_digit());
    if int.len() + frac.len() == 0 || !all_digits(int) || !all_digits(frac) {
        return None;
    }
    if let Some(exp) = exponent {
        let digits = exp.strip_prefix(['+', '-']).unwrap_or(exp);
        if digits.is_empty() || !all_digits(digits) {
            return None;
        }
        return text.parse::<f64>().ok().map(Number::Approx);
    }
    Some(Number::Exact { negative, int: int.trim_start_matches('0'), frac: frac.trim_end_matches('0'), text })
}

impl Number<'_> {
    fn is_zero(&self) -> bool {
        match *self {
            Number::Exact { int, frac, .. } => int.is_empty() && frac.is_empty(),
            Number::Approx(f) => f == 0.0,
        }
    }

    fn to_f64(self) -> f64 {
        match self {
            // The text was validated as a decimal, which `f64::from_str` always accepts.
            Number::Exact { text, .. } => text.parse().unwrap_or(f64::NAN),
            Number::Approx(f) => f,
        }
    }

    fn compare(&self, other: &Number<'_>) -> Ordering {
        match (*self, *other) {
            (
                Number::Exact { negative: an, int: ai, frac: af, .. },
                Number::Exact { negative: bn, int: bi, frac: bf, .. },
            ) => {
                // -1, 0 or 1, so that `-0` equals `0`.
                let sign = |negative: bool, zero: bool| {
                    if zero {
                        0
                    } else if negative {
                        -1
                    } else {
                        1
                    }
                };
                let (sa, sb) = (sign(an, self.is_zero()), sign(bn, other.is_zero()));
                if sa != sb || sa == 0 {
                    return sa.cmp(&sb);
                }
                // Without leading zeros a longer integer part is larger; fractions without
                // trailing zeros compare digit by digit, a prefix being the smaller.
                let magnitude = ai.len().cmp(&bi.len()).then_with(|| ai.cmp(bi)).then_with(|| af.cmp(bf));
                if sa < 0 { magnitude.reverse() } else { magnitude }
            }
            (a, b) => a.to_f64().partial_cmp(&b.to_f64()).unwrap_or(Ordering::Equal),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    type Row<'a> = &'a [(&'a str, Option<&'a str>)];

    fn lookup<'a>(row: Row<'a>) -> impl Fn(&str) -> Option<Value<'a>> {
        move |name| {
            row.iter().find(|(n, _)| n.eq_ignore_ascii_case(name)).map(|(_, v)| v.map_or(Value::Null, Value::Text))
        }
    }

    fn filter(sql: &str) -> RowFilter {
        RowFilter::parse(sql).unwrap_or_else(|e| panic!("{sql:?} should parse: {e}"))
    }

    fn eval(sql: &str, row: Row<'_>) -> Option<bool> {
        filter(sql).eval(lookup(row))
    }

    /// Evaluates a filter without columns.
    fn lit(sql: &str) -> Option<bool> {
        eval(sql, &[])
    }

    fn rejected(sql: &str) -> UnsupportedFilter {
        match RowFilter::parse(sql) {
            Ok(f) => panic!("{sql:?} should be rejected, parsed as {f:?}"),
            Err(e) => e,
        }
    }

    fn assert_rejected(sql: &str, reason_part: &str, position: usize) {
        let e = rejected(sql);
        assert!(e.reason().contains(reason_part), "{sql:?}: {e} lacks {reason_part:?}");
        assert_eq!(e.position(), position, "{sql:?}: {e}");
    }

    #[test]
    fn documented_examples_keep_the_rows_they_describe() {
        let f = filter("region = 'eu' AND amount >= 100");
        assert!(f.keeps(lookup(&[("region", Some("EU")), ("amount", Some("100.00"))])));
        assert!(!f.keeps(lookup(&[("region", Some("us")), ("amount", Some("500"))])));
        assert!(!f.keeps(lookup(&[("region", Some("eu")), ("amount", Some("99.99"))])));
        let f = filter("status IN ('paid','shipped') OR id < 1000");
        assert!(f.keeps(lookup(&[("status", Some("shipped")), ("id", Some("5000"))])));
        assert!(f.keeps(lookup(&[("status", Some("new")), ("id", Some("999"))])));
        assert!(!f.keeps(lookup(&[("status", Some("new")), ("id", Some("1000"))])));
        assert!(!f.keeps(lookup(&[("status", None), ("id", Some("1000"))])));
    }

    #[test]
    fn equality_and_inequality_operators() {
        let row: Row = &[("a", Some("5"))];
        assert_eq!(eval("a = 5", row), Some(true));
        assert_eq!(eval("a = 6", row), Some(false));
        assert_eq!(eval("a <> 6", row), Some(true));
        assert_eq!(eval("a != 5", row), Some(false));
        assert_eq!(eval("a<>5", row), Some(false));
    }

    #[test]
    fn ordering_operators_compare_numbers_numerically() {
        let row: Row = &[("a", Some("9"))];
        assert_eq!(eval("a < 10", row), Some(true), "text order would say '9' > '10'");
        assert_eq!(eval("a <= 9", row), Some(true));
        assert_eq!(eval("a > 10", row), Some(false));
        assert_eq!(eval("a >= 9.0", row), Some(true));
        assert_eq!(eval("a >= 9.01", row), Some(false));
        assert_eq!(eval("10 > a", row), Some(true));
    }

    #[test]
    fn null_safe_equality_is_never_unknown() {
        let row: Row = &[("a", None), ("b", Some("1"))];
        assert_eq!(eval("a <=> NULL", row), Some(true));
        assert_eq!(eval("a <=> 1", row), Some(false));
        assert_eq!(eval("b <=> 1", row), Some(true));
        assert_eq!(eval("b <=> NULL", row), Some(false));
        assert_eq!(eval("NOT a <=> b", row), Some(true));
    }

    #[test]
    fn comparison_with_null_is_unknown() {
        assert_eq!(lit("NULL = 1"), None);
        assert_eq!(lit("NULL = NULL"), None);
        assert_eq!(lit("NULL <> 1"), None);
        assert_eq!(eval("a < 3", &[("a", None)]), None);
        assert!(!filter("a = 1").keeps(lookup(&[("a", None)])));
    }

    #[test]
    fn not_of_unknown_is_unknown() {
        assert_eq!(lit("NOT NULL = 1"), None);
        assert_eq!(lit("NOT (NULL = 1)"), None);
        assert_eq!(lit("!(NULL = 1)"), None);
        assert!(!filter("NOT a = 1").keeps(lookup(&[("a", None)])), "neither a = 1 nor its negation keeps NULL");
    }

    #[test]
    fn three_valued_and_or_follow_sql() {
        assert_eq!(lit("NULL = 1 OR 1 = 1"), Some(true), "unknown OR true");
        assert_eq!(lit("NULL = 1 OR 1 = 0"), None, "unknown OR false");
        assert_eq!(lit("NULL = 1 AND 1 = 0"), Some(false), "unknown AND false");
        assert_eq!(lit("NULL = 1 AND 1 = 1"), None, "unknown AND true");
        assert_eq!(lit("1 = 0 OR NULL = 1"), None);
        assert_eq!(lit("1 = 0 AND NULL = 1"), Some(false));
        assert_eq!(lit("NULL OR TRUE"), Some(true));
        assert_eq!(lit("NULL AND FALSE"), Some(false));
    }

    #[test]
    fn xor_is_true_when_exactly_one_side_is_true() {
        assert_eq!(lit("TRUE XOR FALSE"), Some(true));
        assert_eq!(lit("TRUE XOR TRUE"), Some(false));
        assert_eq!(lit("TRUE XOR TRUE XOR TRUE"), Some(true));
        assert_eq!(lit("TRUE XOR NULL"), None);
        assert_eq!(lit("FALSE xor null"), None);
    }

    #[test]
    fn symbolic_operators_match_their_keywords() {
        let row: Row = &[("a", Some("1")), ("b", Some("0"))];
        assert_eq!(eval("a = 1 && b = 0", row), Some(true));
        assert_eq!(eval("a = 2 || b = 0", row), Some(true));
        assert_eq!(eval("!(a = 1)", row), Some(false));
        assert_eq!(eval("!b", row), Some(true));
    }

    #[test]
    fn and_binds_tighter_than_xor_and_xor_tighter_than_or() {
        assert_eq!(lit("TRUE OR TRUE AND FALSE"), Some(true));
        assert_eq!(lit("(TRUE OR TRUE) AND FALSE"), Some(false));
        assert_eq!(lit("TRUE XOR TRUE AND FALSE"), Some(true));
        assert_eq!(lit("TRUE XOR TRUE OR TRUE"), Some(true), "(TRUE XOR TRUE) OR TRUE");
        assert_eq!(lit("NOT FALSE AND FALSE"), Some(false), "NOT binds tighter than AND");
    }

    #[test]
    fn bang_binds_tighter_than_a_comparison_but_not_does_not() {
        let row: Row = &[("a", Some("2"))];
        assert_eq!(eval("!a = 1", row), Some(false), "(!2) = 1 is 0 = 1");
        assert_eq!(eval("NOT a = 1", row), Some(true), "NOT (2 = 1)");
        assert_eq!(eval("!a = 0", row), Some(true));
    }

    #[test]
    fn is_null_and_is_not_null() {
        let row: Row = &[("a", None), ("b", Some(""))];
        assert_eq!(eval("a IS NULL", row), Some(true));
        assert_eq!(eval("a IS NOT NULL", row), Some(false));
        assert_eq!(eval("b IS NULL", row), Some(false), "an empty string is not NULL");
        assert_eq!(eval("b is not null", row), Some(true));
        assert_eq!(eval("(a = 1) IS NULL", row), Some(true));
        assert_eq!(eval("a = 1 IS NULL", row), Some(true), "left to right, as in MySQL: (a = 1) IS NULL");
        assert_eq!(eval("b IS NULL IS NULL", row), Some(false));
    }

    #[test]
    fn is_true_false_unknown_never_return_unknown() {
        let row: Row = &[("a", None), ("b", Some("3"))];
        assert_eq!(eval("a = 1 IS UNKNOWN", row), Some(true));
        assert_eq!(eval("a = 1 IS TRUE", row), Some(false));
        assert_eq!(eval("a = 1 IS NOT TRUE", row), Some(true));
        assert_eq!(eval("a = 1 IS FALSE", row), Some(false));
        assert_eq!(eval("a = 1 IS NOT FALSE", row), Some(true));
        assert_eq!(eval("b IS TRUE", row), Some(true));
        assert_eq!(eval("b = 4 IS FALSE", row), Some(true));
        assert_eq!(eval("NOT b IS TRUE", row), Some(false));
    }

    #[test]
    fn in_list_matches_any_literal() {
        let row: Row = &[("s", Some("Paid")), ("n", Some("2.0"))];
        assert_eq!(eval("s IN ('paid', 'shipped')", row), Some(true));
        assert_eq!(eval("s NOT IN ('paid', 'shipped')", row), Some(false));
        assert_eq!(eval("n IN (1, 2, 3)", row), Some(true));
        assert_eq!(eval("n in (-1, (2))", row), Some(true));
        assert_eq!(eval("n IN (4)", row), Some(false));
    }

    #[test]
    fn in_list_with_null_is_unknown_unless_matched() {
        let row: Row = &[("n", Some("2")), ("z", None)];
        assert_eq!(eval("n IN (1, NULL)", row), None);
        assert_eq!(eval("n NOT IN (1, NULL)", row), None);
        assert_eq!(eval("n IN (2, NULL)", row), Some(true));
        assert_eq!(eval("n NOT IN (2, NULL)", row), Some(false));
        assert_eq!(eval("z IN (1, 2)", row), None);
        assert_eq!(eval("z NOT IN (1, 2)", row), None);
    }

    #[test]
    fn between_is_inclusive_and_not_between_negates() {
        let row: Row = &[("a", Some("10")), ("d", Some("2024-03-01 12:00:00"))];
        assert_eq!(eval("a BETWEEN 1 AND 10", row), Some(true));
        assert_eq!(eval("a BETWEEN 10 AND 20", row), Some(true));
        assert_eq!(eval("a BETWEEN 11 AND 20", row), Some(false));
        assert_eq!(eval("a NOT BETWEEN 11 AND 20", row), Some(true));
        assert_eq!(eval("a BETWEEN 20 AND 1", row), Some(false));
        assert_eq!(eval("a BETWEEN 1 AND 10 AND a = 10", row), Some(true), "the second AND is logical");
        assert_eq!(eval("d BETWEEN '2024-03-01' AND '2024-04-01'", row), Some(true));
    }

    #[test]
    fn between_with_a_null_bound_is_false_when_the_other_bound_fails() {
        let row: Row = &[("a", Some("10"))];
        assert_eq!(eval("a BETWEEN NULL AND 5", row), Some(false));
        assert_eq!(eval("a BETWEEN NULL AND 50", row), None);
        assert_eq!(eval("a NOT BETWEEN NULL AND 5", row), Some(true));
        assert_eq!(eval("NULL BETWEEN 1 AND 2", row), None);
    }

    #[test]
    fn like_wildcards_percent_and_underscore() {
        let row: Row = &[("s", Some("order-2024-17"))];
        assert_eq!(eval("s LIKE 'order-%'", row), Some(true));
        assert_eq!(eval("s LIKE '%-17'", row), Some(true));
        assert_eq!(eval("s LIKE 'order-____-17'", row), Some(true));
        assert_eq!(eval("s LIKE 'order-___-17'", row), Some(false));
        assert_eq!(eval("s LIKE '%2024%'", row), Some(true));
        assert_eq!(eval("s LIKE '%%%'", row), Some(true));
        assert_eq!(eval("s LIKE 'order'", row), Some(false));
        assert_eq!(eval("s NOT LIKE 'x%'", row), Some(true));
        assert_eq!(eval("s LIKE '%-%-1_'", row), Some(true), "needs backtracking past the first '-'");
        assert_eq!(lit("'' LIKE '%'"), Some(true));
        assert_eq!(lit("'' LIKE '_'"), Some(false));
        assert_eq!(eval("s LIKE NULL", row), None);
        assert_eq!(eval("z LIKE 'a%'", &[("z", None)]), None);
        assert_eq!(lit("123 LIKE '12%'"), Some(true), "numbers match by their text");
    }

    #[test]
    fn like_backslash_escapes_wildcards() {
        let row: Row = &[("s", Some("a_b")), ("p", Some("50%")), ("q", Some("axb")), ("w", Some("c:\\dir"))];
        assert_eq!(eval(r"s LIKE 'a\_b'", row), Some(true));
        assert_eq!(eval(r"q LIKE 'a\_b'", row), Some(false), "escaped _ is literal");
        assert_eq!(eval(r"q LIKE 'a_b'", row), Some(true));
        assert_eq!(eval(r"p LIKE '50\%'", row), Some(true));
        assert_eq!(eval(r"p LIKE '5\%'", row), Some(false));
        assert_eq!(eval(r"s LIKE 'a\\_b'", row), Some(true), "'\\\\' in the literal is one backslash: an escape");
        assert_eq!(eval(r"w LIKE 'c:\\\\%'", row), Some(true), "four backslashes: one literal backslash");
        assert_eq!(eval("q LIKE 'a|_b' ESCAPE '|'", row), Some(false));
        assert_eq!(eval("s LIKE 'a|_b' ESCAPE '|'", row), Some(true));
        assert_eq!(eval(r"w LIKE 'c:\%' ESCAPE ''", row), Some(true), "no escape: backslash is literal");
    }

    #[test]
    fn like_is_case_insensitive_and_trailing_spaces_count() {
        let row: Row = &[("s", Some("Straße ")), ("t", Some("ÉCOLE"))];
        assert_eq!(eval("s LIKE 'STRASSE%'", row), Some(false), "no expansion of ß");
        assert_eq!(eval("s LIKE 'STRAẞE%'", row), Some(true), "capital sharp s folds to ß");
        assert_eq!(eval("s LIKE 'straße'", row), Some(false), "LIKE is not PAD SPACE");
        assert_eq!(eval("s = 'straße'", row), Some(true), "= is PAD SPACE");
        assert_eq!(eval("t LIKE 'éc%'", row), Some(true));
    }

    #[test]
    fn big_unsigned_integers_compare_exactly() {
        let row: Row = &[("u", Some("18446744073709551615"))];
        assert_eq!(eval("u > 18446744073709551614", row), Some(true));
        assert_eq!(eval("u = 18446744073709551614", row), Some(false));
        assert_eq!(eval("u = 18446744073709551615", row), Some(true));
        assert_eq!(eval("u < 18446744073709551616", row), Some(true));
        assert_eq!(lit("99999999999999999999999999999999999999 > 99999999999999999999999999999999999998"), Some(true));
        assert_eq!(lit("-9223372036854775808 < -9223372036854775807"), Some(true));
    }

    #[test]
    fn decimals_compare_by_value_not_by_text() {
        assert_eq!(eval("a = 1.5", &[("a", Some("1.50"))]), Some(true));
        assert_eq!(eval("a = 10", &[("a", Some("0010.000"))]), Some(true));
        assert_eq!(eval("a = 0", &[("a", Some("-0.00"))]), Some(true));
        assert_eq!(eval("a > 0", &[("a", Some("0.000000000000000000000000000001"))]), Some(true));
        let big = "99999999999999999999999999999999999.999999999999999999999999999999";
        assert_eq!(eval(&format!("a = {big}"), &[("a", Some(big))]), Some(true));
        assert_eq!(
            eval(
                "a < 99999999999999999999999999999999999.999999999999999999999999999999",
                &[("a", Some("99999999999999999999999999999999999.999999999999999999999999999998"))]
            ),
            Some(true)
        );
        assert_eq!(lit("0.5 < 0.51"), Some(true));
        assert_eq!(lit(".5 = 0.5"), Some(true));
        assert_eq!(lit("5. = 5"), Some(true));
        assert_eq!(lit("2 > 10"), Some(false));
    }

    #[test]
    fn negative_numbers_compare_correctly() {
        assert_eq!(eval("a < -9", &[("a", Some("-10"))]), Some(true));
        assert_eq!(lit("-1.5 < -1.25"), Some(true));
        assert_eq!(lit("-1 < 0"), Some(true));
        assert_eq!(lit("- -5 = 5"), Some(true));
        assert_eq!(lit("--5 = 5"), Some(true), "`--` without a space is not a comment");
        assert_eq!(lit("+5 = 5"), Some(true));
        assert_eq!(eval("a > -1.5", &[("a", Some("-1.25"))]), Some(true));
    }

    #[test]
    fn exponent_forms_compare_as_doubles() {
        assert_eq!(eval("a = 1e3", &[("a", Some("1000"))]), Some(true));
        assert_eq!(eval("a = 1.5E-3", &[("a", Some("0.0015"))]), Some(true));
        assert_eq!(eval("a < 1e20", &[("a", Some("18446744073709551615"))]), Some(true));
        assert_eq!(eval("a > 100", &[("a", Some("1.5e2"))]), Some(true));
        assert_eq!(eval("a > -2.5e-1", &[("a", Some("0"))]), Some(true));
    }

    #[test]
    fn strings_compare_case_insensitively_with_trailing_spaces_ignored() {
        let row: Row = &[("r", Some("EU  "))];
        assert_eq!(eval("r = 'eu'", row), Some(true));
        assert_eq!(eval("r = 'Eu '", row), Some(true));
        assert_eq!(eval("r = ' eu'", row), Some(false), "leading spaces count");
        assert_eq!(eval("r < 'f'", row), Some(true));
        assert_eq!(eval("r > 'EA'", row), Some(true));
        assert_eq!(lit("'a\t' < 'a'"), Some(true), "PAD SPACE: 'a' compares as 'a '");
        assert_eq!(lit("'ÄBC' = 'äbc'"), Some(true));
        assert_eq!(lit("'abc' < 'abd'"), Some(true));
        assert_eq!(lit("'ab' < 'abc'"), Some(true));
    }

    #[test]
    fn quoted_literals_against_columns_compare_as_text() {
        assert_eq!(eval("a = '100'", &[("a", Some("100.00"))]), Some(false));
        assert_eq!(eval("a = '100'", &[("a", Some("100"))]), Some(true));
        assert_eq!(eval("a < '9'", &[("a", Some("10"))]), Some(true), "text order");
        assert_eq!(lit("5 = '5.0'"), Some(true), "a number against a numeric string compares as numbers");
        assert_eq!(lit("'5' = '5.0'"), Some(false));
    }

    #[test]
    fn two_numeric_columns_compare_as_numbers() {
        assert_eq!(eval("a < b", &[("a", Some("9")), ("b", Some("10"))]), Some(true));
        assert_eq!(eval("a = b", &[("a", Some("1.0")), ("b", Some("1"))]), Some(true));
        assert_eq!(eval("a = b", &[("a", Some("X")), ("b", Some("x "))]), Some(true));
        assert_eq!(eval("a = b", &[("a", Some("1")), ("b", None)]), None);
    }

    #[test]
    fn non_numeric_text_against_a_number_compares_as_text() {
        assert_eq!(eval("a = 0", &[("a", Some("abc"))]), Some(false));
        assert_eq!(eval("a > 5", &[("a", Some("abc"))]), Some(true), "'abc' > '5' as text");
        assert_eq!(eval("a = 0", &[("a", Some(""))]), Some(false));
    }

    #[test]
    fn bare_values_as_conditions_are_true_when_numeric_non_zero() {
        assert_eq!(eval("flag", &[("flag", Some("1"))]), Some(true));
        assert_eq!(eval("flag", &[("flag", Some("0"))]), Some(false));
        assert_eq!(eval("flag", &[("flag", Some("0.000"))]), Some(false));
        assert_eq!(eval("flag", &[("flag", Some("-2.5"))]), Some(true));
        assert_eq!(eval("flag", &[("flag", Some("abc"))]), Some(false));
        assert_eq!(eval("flag", &[("flag", None)]), None);
        assert_eq!(eval("flag AND other", &[("flag", Some("1")), ("other", Some("7"))]), Some(true));
        assert_eq!(lit("1"), Some(true));
        assert_eq!(lit("0"), Some(false));
        assert_eq!(lit("'1'"), Some(true));
        assert_eq!(lit("NULL"), None);
        assert_eq!(lit("TRUE = 1"), Some(true));
        assert_eq!(lit("(1 < 2) = 1"), Some(true));
    }

    #[test]
    fn string_literals_handle_escapes_doubled_quotes_and_concatenation() {
        assert_eq!(eval("s = 'it''s'", &[("s", Some("it's"))]), Some(true));
        assert_eq!(eval(r"s = 'it\'s'", &[("s", Some("it's"))]), Some(true));
        assert_eq!(eval(r#"s = "say ""hi""""#, &[("s", Some("say \"hi\""))]), Some(true));
        assert_eq!(eval(r#"s = "it's""#, &[("s", Some("it's"))]), Some(true));
        assert_eq!(eval(r"s = 'a\nb\tc\\d\0'", &[("s", Some("a\nb\tc\\d\0"))]), Some(true));
        assert_eq!(eval(r"s = '\q'", &[("s", Some("q"))]), Some(true), "unknown escapes drop the backslash");
        assert_eq!(eval(r"s = '\%'", &[("s", Some("\\%"))]), Some(true), "\\% keeps its backslash");
        assert_eq!(eval("s = 'ab' 'cd' \"ef\"", &[("s", Some("abcdef"))]), Some(true));
        assert_eq!(eval("s = ''", &[("s", Some(""))]), Some(true));
        assert_eq!(eval("s = 'AND OR ) ('", &[("s", Some("and or ) ("))]), Some(true));
        assert_eq!(eval("s = '€ ünï'", &[("s", Some("€ ÜNÏ"))]), Some(true));
    }

    #[test]
    fn identifiers_may_be_backquoted_and_qualified() {
        let row: Row = &[("order", Some("1")), ("we`ird", Some("2")), ("c", Some("3")), ("my col", Some("4"))];
        assert_eq!(eval("`order` = 1", row), Some(true));
        assert_eq!(eval("`we``ird` = 2", row), Some(true));
        assert_eq!(eval("t.c = 3", row), Some(true));
        assert_eq!(eval("`db`.`t`.`c` = 3", row), Some(true));
        assert_eq!(eval("`t` . c = 3", row), Some(true));
        assert_eq!(eval("`my col` = 4", row), Some(true));
        assert_eq!(eval("`null` = 5", &[("null", Some("5"))]), Some(true), "a back-quoted keyword is a column");
        assert_eq!(filter("t.c = 1 AND `x`.`C` = 2").columns(), vec!["c".to_string()]);
        assert_eq!(filter("`we``ird` = 1").columns(), vec!["we`ird".to_string()]);
    }

    #[test]
    fn keywords_are_case_insensitive() {
        let row: Row = &[("a", Some("1")), ("b", None)];
        assert_eq!(eval("a in (1) and b is null Or not a between 0 aNd 2", row), Some(true));
        assert_eq!(eval("a NoT LiKe 'x' xOr b IS NOT nUlL", row), Some(true));
        assert_eq!(eval("a is true AND b Is Unknown", row), Some(true));
        assert_eq!(lit("True AND NOT false"), Some(true));
    }

    #[test]
    fn comments_are_skipped_but_executable_comments_are_rejected() {
        assert_eq!(lit("1 = 1 /* always */ AND 2 = 2 -- trailing\n"), Some(true));
        assert_eq!(lit("1 = 1 # hash comment"), Some(true));
        assert_rejected("1 = 1 /*!50700 AND 0 */", "executable comment", 7);
        assert_rejected("1 = 1 /* open", "unterminated comment", 7);
    }

    #[test]
    fn columns_are_listed_once_in_first_use_order() {
        let f = filter("b = 1 OR a = 2 OR B = 3 OR `c` IS NULL OR A IN (1)");
        assert_eq!(f.columns(), vec!["b".to_string(), "a".to_string(), "c".to_string()]);
        assert!(filter("1 = 1").columns().is_empty());
    }

    #[test]
    fn lookup_names_are_matched_by_the_caller_and_asked_once_each() {
        let asked = std::cell::RefCell::new(Vec::new());
        let f = filter("Region = 'eu' OR region = 'us'");
        let kept = f.keeps(|name: &str| {
            asked.borrow_mut().push(name.to_string());
            name.eq_ignore_ascii_case("REGION").then_some(Value::Text("US"))
        });
        assert!(kept);
        assert_eq!(*asked.borrow(), vec!["Region".to_string()]);
    }

    #[test]
    fn an_unknown_column_makes_the_result_unknown() {
        assert_eq!(eval("x IS NULL", &[("y", Some("1"))]), None);
        assert_eq!(eval("y = 1 OR x = 1", &[("y", Some("1"))]), None);
        assert!(!filter("x IS NULL").keeps(lookup(&[])));
    }

    #[test]
    fn keeps_only_rows_that_evaluate_true() {
        let f = filter("a > 1");
        assert!(f.keeps(lookup(&[("a", Some("2"))])));
        assert!(!f.keeps(lookup(&[("a", Some("1"))])));
        assert!(!f.keeps(lookup(&[("a", None)])));
    }

    #[test]
    fn function_calls_are_rejected() {
        assert_rejected("lower(name) = 'x'", "function call `lower(...)`", 1);
        assert_rejected("a = 1 AND COALESCE (b, 0) > 1", "function call `COALESCE(...)`", 11);
        assert_rejected("`f`(a) = 1", "function call `f(...)`", 1);
        assert_rejected("created_at > CURRENT_DATE", "function `CURRENT_DATE`", 14);
        assert_rejected("created_at > current_timestamp", "function `current_timestamp`", 14);
    }

    #[test]
    fn arithmetic_is_rejected() {
        assert_rejected("a + b > 3", "arithmetic operator `+`", 3);
        assert_rejected("a - 1 = 0", "arithmetic operator `-`", 3);
        assert_rejected("a = b-1", "arithmetic operator `-`", 6);
        assert_rejected("a * 2 = 4", "arithmetic operator `*`", 3);
        assert_rejected("a / 2 = 4", "arithmetic operator `/`", 3);
        assert_rejected("a % 2 = 0", "arithmetic operator `%`", 3);
        assert_rejected("a DIV 2 = 0", "DIV/MOD", 3);
        assert_rejected("a mod 2 = 0", "DIV/MOD", 3);
        assert_rejected("-a > 0", "numeric literals only", 1);
        assert_rejected("a & 1", "bit operator `&`", 3);
        assert_rejected("a | 1", "bit operator `|`", 3);
        assert_rejected("a << 1", "bit shift operator", 3);
    }

    #[test]
    fn subqueries_are_rejected() {
        assert_rejected("id IN (SELECT id FROM t)", "subquery", 8);
        assert_rejected("id = (select max(id) from t)", "subquery", 7);
        assert_rejected("EXISTS (SELECT 1)", "subquery", 1);
        assert_rejected("id = ANY (SELECT id FROM t)", "ANY/ALL/SOME", 6);
        assert_rejected("id IN ((SELECT 1))", "subquery", 9);
    }

    #[test]
    fn other_constructs_outside_the_subset_are_rejected() {
        assert_rejected("name REGEXP '^a'", "REGEXP", 6);
        assert_rejected("name NOT RLIKE '^a'", "RLIKE", 6);
        assert_rejected("CASE WHEN a THEN 1 END", "CASE", 1);
        assert_rejected("d > NOW() - INTERVAL 1 DAY", "function call `NOW(...)`", 5);
        assert_rejected("d > INTERVAL 1 DAY", "INTERVAL", 5);
        assert_rejected("BINARY name = 'x'", "BINARY", 1);
        assert_rejected("name = 'x' COLLATE utf8mb4_bin", "COLLATE", 12);
        assert_rejected("d = DATE '2024-01-01'", "typed literal", 5);
        assert_rejected("s = _utf8mb4'x'", "introducer", 5);
        assert_rejected("b = X'0F'", "typed literal", 5);
        assert_rejected("b = 0x0F", "hexadecimal", 5);
        assert_rejected("a = @v", "variable", 5);
        assert_rejected("a = ?", "placeholder", 5);
        assert_rejected("a = 1; DROP TABLE t", "statement separator", 6);
        assert_rejected("(a, b) = (1, 2)", "row constructor", 1);
        assert_rejected("a IN (b, 1)", "must be literals", 7);
        assert_rejected("a LIKE b", "LIKE pattern must be a literal", 8);
        assert_rejected("a LIKE 'x' ESCAPE 'ab'", "ESCAPE", 19);
        assert_rejected("doc->'$.a' = 1", "JSON operator `->`", 4);
        assert_rejected("doc->>'$.a' = 1", "JSON operator `->>`", 4);
        assert_rejected("a SOUNDS LIKE 'x'", "SOUNDS LIKE", 3);
        assert_rejected("a = NOT b", "NOT cannot appear", 5);
        assert_rejected("a := 1", "assignment", 3);
        assert_rejected("~a = 1", "bit operator `~`", 1);
    }

    #[test]
    fn malformed_filters_are_rejected_with_the_offending_position() {
        assert_rejected("", "empty", 1);
        assert_rejected("  -- nothing\n", "empty", 14);
        assert_rejected("a = 'eu", "unterminated string", 5);
        assert_rejected(r"a = 'eu\'", "unterminated string", 5);
        assert_rejected("`a = 1", "unterminated back-quoted", 1);
        assert_rejected("(a = 1", "expected `)`, found the end of the filter", 7);
        assert_rejected("a = 1)", "found `)`", 6);
        assert_rejected("a = 1 AND", "expected a column or a literal, found the end", 10);
        assert_rejected("a =", "found the end of the filter", 4);
        assert_rejected("a IN ()", "empty IN list", 7);
        assert_rejected("a IN 1", "`(` after IN", 6);
        assert_rejected("a BETWEEN 1 OR 2", "AND after BETWEEN", 13);
        assert_rejected("a IS 5", "NULL, TRUE, FALSE or UNKNOWN", 6);
        assert_rejected("a b", "found `b`", 3);
        assert_rejected("a == 1", "found `=`", 4);
        assert_rejected("``", "empty identifier", 1);
        assert_rejected("a = 1 AND OR b = 2", "found `OR` (back-quote it", 11);
        assert_rejected("a = 1 LIMIT 5", "found `LIMIT`", 7);
    }

    #[test]
    fn error_messages_name_the_construct_and_count_characters_not_bytes() {
        let e = rejected("ünïcode = 'é' AND lower(x) = 'y'");
        assert_eq!(e.to_string(), "function call `lower(...)` is not supported (at character 19)");
        assert_eq!(e.position(), 19);
        assert_eq!(e.reason(), "function call `lower(...)` is not supported");
    }

    #[test]
    fn deep_nesting_is_rejected_without_overflowing_the_stack() {
        let deep = format!("{}1{}", "(".repeat(10_000), ")".repeat(10_000));
        assert_rejected(&deep, "nesting deeper than", MAX_DEPTH + 1);
        assert_rejected(&"NOT ".repeat(10_000), "nesting deeper than", 4 * MAX_DEPTH + 1);
        assert_rejected(&format!("{}a", "!".repeat(10_000)), "nesting deeper than", MAX_DEPTH + 1);
        let chain = format!("a{}", " = 1".repeat(10_000));
        assert_eq!(rejected(&chain).reason(), format!("nesting deeper than {MAX_DEPTH} levels"));
        let ok = format!("{}a = 1{}", "(".repeat(50), ")".repeat(50));
        assert_eq!(eval(&ok, &[("a", Some("1"))]), Some(true));
    }

    #[test]
    fn long_flat_chains_are_fine() {
        let sql = (0..10_000).map(|i| format!("a = {i}")).collect::<Vec<_>>().join(" OR ");
        assert_eq!(eval(&sql, &[("a", Some("9999"))]), Some(true));
        let list = (0..10_000).map(|i| i.to_string()).collect::<Vec<_>>().join(",");
        assert_eq!(eval(&format!("a NOT IN ({list})"), &[("a", Some("10000"))]), Some(true));
    }
}
