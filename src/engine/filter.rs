//! Row filters: parsed, checked, rendered as SQL, and evaluated on change rows.
//!
//! A table's row filter is a SQL boolean expression written in the source engine's dialect. It
//! is never passed to a server as the spec wrote it: `sqlparser` reads it (MySQL dialect for
//! MySQL and MariaDB sources, PostgreSQL dialect for PostgreSQL), the tree is converted into the
//! small [`Expr`] language below, refusing every construct outside the documented subset with
//! the construct named and its position, and [`RowFilter::render`] writes it anew: columns
//! quoted as identifiers, string literals escaped for the session settings Ferry pins (MySQL's
//! `sql_mode`, PostgreSQL's `standard_conforming_strings`), every operand parenthesised. That
//! rendered text is what the snapshot `SELECT`, `CREATE PUBLICATION … WHERE`, the compare
//! queries on both sides and the precheck use; the catalog also refuses a filter naming a
//! column the table does not have.
//!
//! MySQL/MariaDB binary log rows arrive as plain row images, so the incremental phase has to
//! decide "would this row have matched?" itself: the `mysql` submodule evaluates the tree with
//! SQL three-valued logic. PostgreSQL sources before 15 cannot filter their publication either: for
//! them [`RowFilter::parse_postgres`] checks the PostgreSQL subset against the table's column
//! types (see the `postgres` submodule).
//!
//! # Subset
//!
//! - Columns of the table itself, by their bare name (`amount`) or quoted (MySQL
//!   `` `order` `` with ``` `` ``` for a back-quote; PostgreSQL `"Order"` with `""`). Qualified
//!   names (`t.c`, `other_table.c`) are refused: a filter cannot reach another table.
//! - Literals: integers, decimals (`1.5`, `.5`, `5.`), exponent floats (`1e3`, `2.5E-4`),
//!   strings, `NULL`, `TRUE`, `FALSE`; unary `-` and `+` on numeric literals. MySQL strings are
//!   `'single'` or `"double"` quoted with MySQL's backslash escapes (`\n`, `\t`, `\\`, `\'`, …;
//!   `\%` and `\_` keep their backslash for `LIKE`) and doubled quotes (`'it''s'`); adjacent
//!   strings concatenate (`'a' 'b'` is `'ab'`). PostgreSQL strings are standard-conforming
//!   (`'it''s'`, a backslash is a backslash).
//! - Comparisons: `=`, `<>`, `!=`, `<`, `<=`, `>`, `>=`, MySQL's `<=>`, PostgreSQL's
//!   `IS [NOT] DISTINCT FROM`; `IS [NOT] NULL`, `IS [NOT] TRUE | FALSE | UNKNOWN`;
//!   `[NOT] IN (literal, ...)`; `[NOT] BETWEEN x AND y`; `[NOT] LIKE 'pattern' [ESCAPE 'c']`
//!   with `%`, `_` and (by default) backslash as escape; PostgreSQL's `ILIKE`.
//! - Logic: `AND` (MySQL also `&&`), `OR`, MySQL's `XOR`, `NOT`, parentheses.
//! - Comments: `-- ...`, `/* ... */`, MySQL's `# ...`. MySQL's executable comments
//!   (`/*! ... */`) are read as their content, whatever version they name; the rendered filter
//!   carries no comments.
//! - Keywords are case-insensitive.
//!
//! Refused: function calls (`lower(x)`, `pg_read_file(...)`, also niladic ones like
//! `CURRENT_DATE` or `USER`), arithmetic and bit operators, subqueries (`IN (SELECT …)`,
//! `EXISTS`, `ANY`/`ALL`), `UNION` or any text after the expression, `;`, qualified names,
//! `REGEXP`/`RLIKE`/`SIMILAR TO`/`~`, `CASE`, `INTERVAL`, `COLLATE`, `BINARY`, casts (`::`,
//! `CAST`), typed literals and introducers (`DATE '...'`, `_utf8mb4'x'`, `X'0F'`, `E'...'`,
//! `N'...'`, `$$...$$`), hexadecimal and bit literals, variables (`@v`), placeholders, row
//! constructors, JSON operators, and nesting deeper than a fixed limit.
//!
//! Dropped when the parser moved to `sqlparser` (refused now, each with its own message):
//! MySQL's `||` as OR (write `OR`; sqlparser reads `||` as concatenation, so it is refused
//! rather than misread), MySQL's `!` as NOT (write `NOT`), qualified column names, and
//! PostgreSQL's postfix `ISNULL` (write `IS NULL`; `NOTNULL` is still read as `IS NOT NULL`).
//! PostgreSQL's nested comments (`/* /* */ */`) are now read as PostgreSQL reads them.
//! MySQL's `XOR` is taken only where sqlparser (which ranks it with `^`) and MySQL (between AND
//! and OR) read it alike: at the top, inside parentheses or as an operand of OR, with each side an
//! atom or parenthesised; elsewhere the filter is refused with a request for parentheses.
//! `==` is read as `=`, and MySQL's `a = NOT b` as `a = (NOT b)`.
//!
//! # Evaluation
//!
//! MySQL/MariaDB row images are evaluated by the `mysql` submodule (its documentation gives the
//! semantics and the deviations from MySQL), PostgreSQL's by the `postgres` submodule.

use std::cmp::Ordering;

use sqlparser::ast::{self as sql, BinaryOperator, Spanned, UnaryOperator};
use sqlparser::dialect::{MySqlDialect, PostgreSqlDialect};
use sqlparser::parser::{Parser, ParserError};
use sqlparser::tokenizer::{Location, Token};

use crate::engine::sql::{my_ident, pg_ident};

/// How deep parentheses, `NOT`, unary signs and comparison chains may nest. Parsing, checking
/// and evaluation recurse, so an adversarial filter must not be able to exhaust the stack.
const MAX_DEPTH: usize = 100;

/// The recursion limit handed to `sqlparser`, which counts a level for each parenthesis and
/// each operand it descends into; our own limit, `MAX_DEPTH`, is the one users meet.
const PARSER_DEPTH: usize = 2 * MAX_DEPTH + 20;

mod mysql;
mod postgres;

/// A row filter compiled for evaluation on change rows.
#[derive(Debug, Clone)]
pub struct RowFilter {
    root: Expr,
    columns: Vec<String>,
    /// PostgreSQL, typed by the table: the type class of each of `columns`; empty otherwise.
    classes: Vec<postgres::Class>,
    dialect: Dialect,
}

/// Whose expression syntax and semantics a filter has, and whose SQL it is rendered as.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Dialect {
    /// MySQL and MariaDB, in the SQL mode Ferry pins on its sessions
    /// ([`crate::engine::mysql::connect::SESSION_SQL_MODE`]).
    MySql,
    /// PostgreSQL, with `standard_conforming_strings` on (as Ferry's sessions set it).
    Postgres,
}

impl Dialect {
    /// The dialect of an engine's filters.
    pub fn of(engine: crate::api::Engine) -> Dialect {
        match engine {
            crate::api::Engine::Postgresql => Dialect::Postgres,
            crate::api::Engine::Mysql | crate::api::Engine::Mariadb => Dialect::MySql,
        }
    }
}

/// Why a filter is refused (message names the construct and its position).
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
    /// Compiles `sql` as MySQL reads it, or says which construct keeps it out of the subset.
    pub fn parse(sql: &str) -> Result<RowFilter, UnsupportedFilter> {
        compile(sql, Dialect::MySql, None)
    }

    /// Compiles `sql` as PostgreSQL reads it, for a table whose columns are `(name, type)`
    /// (the type as `format_type` writes it), or says why it cannot be evaluated on change rows.
    pub fn parse_postgres(sql: &str, columns: &[(&str, &str)]) -> Result<RowFilter, UnsupportedFilter> {
        compile(sql, Dialect::Postgres, Some(columns))
    }

    /// Compiles `sql` in `dialect` without a table: the syntax and the subset are checked, the
    /// column names and (PostgreSQL) the types are not. What [`render`](Self::render) needs.
    pub fn parse_in(dialect: Dialect, sql: &str) -> Result<RowFilter, UnsupportedFilter> {
        compile(sql, dialect, None)
    }

    /// Whose syntax the filter was written in.
    pub fn dialect(&self) -> Dialect {
        self.dialect
    }

    /// Column names the filter refers to (unquoted), each once, in first-use order.
    pub fn columns(&self) -> Vec<String> {
        self.columns.clone()
    }

    /// The filter as SQL for `dialect`, rebuilt from the parsed tree: every column quoted as an
    /// identifier, every string literal escaped for the session settings Ferry pins, every
    /// operand parenthesised. This, never the spec's text, is what reaches a server.
    pub fn render(&self, dialect: Dialect) -> String {
        let mut out = String::new();
        Render { columns: &self.columns, from: self.dialect, to: dialect }.expr(&self.root, &mut out);
        out
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

    /// Whether two filters are the same tree (the same meaning, however they were spelled).
    pub fn same_tree(&self, other: &RowFilter) -> bool {
        self.root == other.root && self.columns == other.columns
    }
}

/// The spec's filter `sql`, written in `dialect`, for a table whose columns are `table_columns`:
/// parsed, checked to name only those columns, and rendered anew in the same dialect. The error
/// says why the filter is refused.
pub fn for_table(dialect: Dialect, sql: &str, table_columns: &[&str]) -> Result<String, String> {
    let f = RowFilter::parse_in(dialect, sql).map_err(|e| e.to_string())?;
    for c in &f.columns {
        let exists = table_columns.iter().any(|t| match dialect {
            Dialect::MySql => same_name(t, c),
            Dialect::Postgres => t == c,
        });
        if !exists {
            return Err(format!("column `{c}` does not exist in the table"));
        }
    }
    Ok(f.render(dialect))
}

/// `objects` without any row filter: what the precheck resolves to go on checking the tables
/// once it has reported a refused filter.
pub fn without_filters(objects: &crate::api::ObjectSelection) -> crate::api::ObjectSelection {
    let mut bare = objects.clone();
    for db in &mut bare.databases {
        let schemas = db.schemas.iter_mut().flat_map(|s| s.tables.iter_mut());
        for t in db.tables.iter_mut().chain(schemas) {
            t.filter = None;
        }
    }
    bare
}

/// How the error of a refused row filter begins (the precheck reports it as `source.filters`).
pub const REFUSED: &str = "row filter refused on";

/// What the precheck tells a user whose filter is refused.
pub const FIX: &str = "write the filter as a boolean expression over the table's own columns (unqualified): comparisons, \
     IN and BETWEEN with literals, LIKE, IS [NOT] NULL, AND/OR/NOT and literals; no functions, subqueries or \
     arithmetic (see the row filter documentation)";

/// The error of table `schema.name`'s row filter, refused for `reason` (see [`for_table`]).
pub fn refused(schema: &str, name: &str, reason: &str) -> crate::engine::error::EngineError {
    crate::engine::error::EngineError::Unsupported(format!("{REFUSED} {schema}.{name}: {reason}"))
}

/// A filter Ferry rendered in `from` (see [`for_table`]), rendered for a server speaking `to`:
/// the compare query on a target of the other engine.
pub fn translate(sql: &str, from: Dialect, to: Dialect) -> Result<String, UnsupportedFilter> {
    Ok(RowFilter::parse_in(from, sql)?.render(to))
}

// ---------------------------------------------------------------------------------------------
// Syntax tree

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

    fn symbol(self) -> &'static str {
        match self {
            CmpOp::Eq => "=",
            CmpOp::NullSafeEq => "<=>",
            CmpOp::Ne => "<>",
            CmpOp::Lt => "<",
            CmpOp::Le => "<=",
            CmpOp::Gt => ">",
            CmpOp::Ge => ">=",
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

#[derive(Debug, Clone, PartialEq)]
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
    /// `literal` is the pattern as written (a literal, for rendering), `escape` the ESCAPE
    /// clause (`Some(None)`: `ESCAPE ''`), `pattern` the compiled pattern, `None` for a NULL
    /// pattern (the result is always unknown). `fold`: case-insensitive (MySQL's `_ci`
    /// collations, PostgreSQL's ILIKE).
    Like {
        subject: Box<Expr>,
        literal: Box<Expr>,
        escape: Option<Option<char>>,
        pattern: Option<Vec<PatTok>>,
        negated: bool,
        fold: bool,
    },
}

impl Expr {
    fn is_literal(&self) -> bool {
        matches!(self, Expr::Null | Expr::Bool(_) | Expr::Number(_) | Expr::Text(_))
    }

    fn is_atom(&self) -> bool {
        self.is_literal() || matches!(self, Expr::Column(_))
    }
}

/// Bare words that look like column names but are not: the servers evaluate them as functions.
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
    "AND", "OR", "XOR", "NOT", "IS", "IN", "BETWEEN", "LIKE", "ILIKE", "REGEXP", "RLIKE", "DIV", "MOD", "COLLATE",
    "SELECT", "FROM", "WHERE", "GROUP", "HAVING", "ORDER", "LIMIT", "UNION", "ON", "USING", "JOIN", "EXISTS", "CASE",
    "INTERVAL", "BINARY", "NULL", "TRUE", "FALSE",
];

type Parsed<T> = Result<T, UnsupportedFilter>;

// ---------------------------------------------------------------------------------------------
// Parsing: sqlparser reads the text in the engine's dialect; its tree is converted into `Expr`,
// refusing every node outside the subset.

fn compile(src: &str, dialect: Dialect, table: Option<&[(&str, &str)]>) -> Parsed<RowFilter> {
    let ast = parse_ast(src, dialect)?;
    let mut c = Compiler { src, dialect, table, columns: Vec::new(), classes: Vec::new() };
    let at = start(&ast);
    let root = c.expr_in(ast, 0, true)?;
    c.condition(at, &root)?;
    Ok(RowFilter { root, columns: c.columns, classes: c.classes, dialect })
}

/// 1-based character position of `loc` in `src` (sqlparser counts lines and characters).
fn position(src: &str, loc: Location) -> usize {
    let end = src.chars().count() + 1;
    if loc.line == 0 {
        return end;
    }
    let mut before = 0;
    for (i, line) in src.split('\n').enumerate() {
        if i + 1 == loc.line as usize {
            return (before + loc.column as usize).min(end);
        }
        before += line.chars().count() + 1;
    }
    end
}

/// sqlparser's message without its `at Line: l, Column: c` suffix, and that position.
fn parser_error(src: &str, e: ParserError) -> UnsupportedFilter {
    let message = match e {
        ParserError::RecursionLimitExceeded => {
            return UnsupportedFilter { reason: format!("nesting deeper than {MAX_DEPTH} levels"), position: 1 };
        }
        ParserError::TokenizerError(m) | ParserError::ParserError(m) => m,
    };
    let located = message.rsplit_once(" at Line: ").and_then(|(reason, at)| {
        let (line, column) = at.split_once(", Column: ")?;
        let loc = Location { line: line.trim().parse().ok()?, column: column.trim().parse().ok()? };
        Some((reason.to_owned(), position(src, loc)))
    });
    match located {
        Some((reason, position)) => UnsupportedFilter { reason, position },
        None => UnsupportedFilter { reason: message, position: 1 },
    }
}

fn parse_ast(src: &str, dialect: Dialect) -> Parsed<sql::Expr> {
    let (my, pg) = (MySqlDialect {}, PostgreSqlDialect {});
    let d: &dyn sqlparser::dialect::Dialect = match dialect {
        Dialect::MySql => &my,
        Dialect::Postgres => &pg,
    };
    let mut parser =
        Parser::new(d).with_recursion_limit(PARSER_DEPTH).try_with_sql(src).map_err(|e| parser_error(src, e))?;
    let first = parser.peek_token();
    if first.token == Token::EOF {
        return Err(UnsupportedFilter {
            reason: "the filter is empty".into(),
            position: position(src, first.span.start),
        });
    }
    let expr = parser.parse_expr().map_err(|e| parser_error(src, e))?;
    let next = parser.peek_token();
    if next.token == Token::EOF {
        return Ok(expr);
    }
    dismantle(expr);
    let expected = match dialect {
        Dialect::MySql => "AND, OR, XOR or the end of the filter",
        Dialect::Postgres => "AND, OR or the end of the filter",
    };
    let reason = match &next.token {
        Token::SemiColon => "statement separator `;` is not supported".to_owned(),
        other => format!("expected {expected}, found `{other}`"),
    };
    Err(UnsupportedFilter { reason, position: position(src, next.span.start) })
}

/// Drops a tree without recursing along its spines: an operator chain the parser built in a
/// loop can be far deeper than the stack allows a recursive drop.
fn dismantle(e: sql::Expr) {
    let mut stack = vec![e];
    while let Some(e) = stack.pop() {
        match e {
            sql::Expr::BinaryOp { left, right, .. }
            | sql::Expr::IsDistinctFrom(left, right)
            | sql::Expr::IsNotDistinctFrom(left, right) => {
                stack.push(*left);
                stack.push(*right);
            }
            sql::Expr::Like { expr, pattern, .. } | sql::Expr::ILike { expr, pattern, .. } => {
                stack.push(*expr);
                stack.push(*pattern);
            }
            sql::Expr::Between { expr, low, high, .. } => {
                stack.push(*expr);
                stack.push(*low);
                stack.push(*high);
            }
            sql::Expr::In { expr, .. } => stack.push(*expr),
            sql::Expr::UnaryOp { expr, .. }
            | sql::Expr::Nested(expr)
            | sql::Expr::IsNull(expr)
            | sql::Expr::IsNotNull(expr)
            | sql::Expr::IsTrue(expr)
            | sql::Expr::IsNotTrue(expr)
            | sql::Expr::IsFalse(expr)
            | sql::Expr::IsNotFalse(expr)
            | sql::Expr::IsUnknown(expr)
            | sql::Expr::IsNotUnknown(expr)
            | sql::Expr::Collate { expr, .. }
            | sql::Expr::Cast { expr, .. } => stack.push(*expr),
            other => drop(other),
        }
    }
}

/// Where an expression starts, found without recursing (see [`dismantle`]).
fn start(e: &sql::Expr) -> Location {
    let mut e = e;
    loop {
        e = match e {
            sql::Expr::BinaryOp { left, .. }
            | sql::Expr::IsDistinctFrom(left, _)
            | sql::Expr::IsNotDistinctFrom(left, _) => left,
            sql::Expr::Like { expr, .. }
            | sql::Expr::ILike { expr, .. }
            | sql::Expr::SimilarTo { expr, .. }
            | sql::Expr::RLike { expr, .. }
            | sql::Expr::Between { expr, .. }
            | sql::Expr::In { expr, .. }
            | sql::Expr::Nested(expr)
            | sql::Expr::IsNull(expr)
            | sql::Expr::IsNotNull(expr)
            | sql::Expr::IsTrue(expr)
            | sql::Expr::IsNotTrue(expr)
            | sql::Expr::IsFalse(expr)
            | sql::Expr::IsNotFalse(expr)
            | sql::Expr::IsUnknown(expr)
            | sql::Expr::IsNotUnknown(expr)
            | sql::Expr::Collate { expr, .. } => expr,
            sql::Expr::Identifier(id) => return id.span.start,
            sql::Expr::CompoundIdentifier(ids) => {
                return ids.first().map_or(Location { line: 0, column: 0 }, |i| i.span.start);
            }
            sql::Expr::Value(v) => return v.span.start,
            sql::Expr::Function(f) => return f.name.span().start,
            other => return other.span().start,
        };
    }
}

struct Compiler<'s> {
    src: &'s str,
    dialect: Dialect,
    /// PostgreSQL, typed: the table's columns and their types; `classes` follows `columns`.
    table: Option<&'s [(&'s str, &'s str)]>,
    columns: Vec<String>,
    classes: Vec<postgres::Class>,
}

impl Compiler<'_> {
    fn pg(&self) -> bool {
        self.dialect == Dialect::Postgres
    }

    fn fail<T>(&self, at: Location, reason: impl Into<String>) -> Parsed<T> {
        Err(UnsupportedFilter { reason: reason.into(), position: position(self.src, at) })
    }

    /// Refuses `e` (at `at`) as outside the subset, dropping it without deep recursion.
    fn refuse<T>(&self, at: Location, e: sql::Expr, reason: impl Into<String>) -> Parsed<T> {
        dismantle(e);
        self.fail(at, reason)
    }

    fn column(&mut self, at: Location, name: String) -> Parsed<Expr> {
        let same = |c: &String| if self.pg() { *c == name } else { same_name(c, &name) };
        if let Some(i) = self.columns.iter().position(same) {
            return Ok(Expr::Column(i));
        }
        if let Some(table) = self.table {
            let Some((_, type_sql)) = table.iter().find(|(c, _)| *c == name) else {
                return self.fail(at, format!("column `{name}` does not exist in the table"));
            };
            self.classes.push(postgres::Class::of(type_sql));
        }
        self.columns.push(name);
        Ok(Expr::Column(self.columns.len() - 1))
    }

    /// PostgreSQL, typed: `expr`, starting at `at`, must be a boolean.
    fn condition(&self, at: Location, expr: &Expr) -> Parsed<()> {
        if self.table.is_none() {
            return Ok(());
        }
        postgres::check_condition(expr, &self.columns, &self.classes)
            .map_err(|reason| UnsupportedFilter { reason, position: position(self.src, at) })
    }

    /// PostgreSQL, typed: `left op right` (`at` the expression) must compare like with like.
    fn comparison(&self, at: Location, op: postgres::Comparing, left: &Expr, right: &Expr) -> Parsed<()> {
        if self.table.is_none() {
            return Ok(());
        }
        postgres::check_comparison(op, left, right, &self.columns, &self.classes)
            .map_err(|reason| UnsupportedFilter { reason, position: position(self.src, at) })
    }

    /// A condition operand of AND/OR/XOR/NOT.
    fn cond(&mut self, e: sql::Expr, depth: usize) -> Parsed<Expr> {
        let at = start(&e);
        let out = self.expr(e, depth)?;
        self.condition(at, &out)?;
        Ok(out)
    }

    fn expr(&mut self, e: sql::Expr, depth: usize) -> Parsed<Expr> {
        self.expr_in(e, depth, false)
    }

    /// Converts `e`; `xor_ok`: `e` stands where MySQL and sqlparser read a XOR alike (the whole
    /// filter, inside parentheses, an operand of OR or XOR). sqlparser gives XOR the precedence
    /// of the bit operator `^`, MySQL a place between AND and OR: elsewhere the two readings of
    /// `a = 1 XOR b` or `a AND b XOR c` differ, so there the filter must say it with parentheses.
    #[recursive::recursive]
    fn expr_in(&mut self, e: sql::Expr, depth: usize, xor_ok: bool) -> Parsed<Expr> {
        if depth > MAX_DEPTH {
            return self.refuse(Location { line: 1, column: 1 }, e, format!("nesting deeper than {MAX_DEPTH} levels"));
        }
        let at = start(&e);
        let next = depth + 1;
        use sql::Expr as E;
        match e {
            E::Identifier(id) => self.identifier(id),
            E::CompoundIdentifier(ids) => {
                let name = ids.iter().map(|i| i.to_string()).collect::<Vec<_>>().join(".");
                self.fail(at, format!("qualified name `{name}` is not supported: name the table's own columns alone"))
            }
            E::Value(v) => self.value(v),
            E::Nested(inner) => self.expr_in(*inner, next, true),
            E::UnaryOp { op: UnaryOperator::Not, expr } => Ok(Expr::Not(Box::new(self.cond(*expr, next)?))),
            E::UnaryOp { op: op @ (UnaryOperator::Minus | UnaryOperator::Plus), expr } => {
                match self.expr(*expr, next)? {
                    Expr::Number(n) if op == UnaryOperator::Plus => Ok(Expr::Number(n)),
                    Expr::Number(n) => Ok(Expr::Number(match n.strip_prefix('-') {
                        Some(positive) => positive.to_owned(),
                        None => format!("-{n}"),
                    })),
                    _ => self.fail(at, "unary minus/plus is supported on numeric literals only"),
                }
            }
            E::UnaryOp { op, expr } => self.refuse(at, *expr, format!("operator `{op}` is not supported")),
            E::BinaryOp { left, op: BinaryOperator::Xor, right } if !self.pg() && !xor_ok => {
                dismantle(*left);
                dismantle(*right);
                self.fail(at, "XOR needs parentheses here: write `(a = 1) XOR (b = 2)`, inside parentheses or as an operand of OR")
            }
            E::BinaryOp { left, op, right } => self.binary(at, *left, op, *right, depth),
            E::IsNull(x) => Ok(Expr::IsNull { subject: Box::new(self.expr(*x, next)?), negated: false }),
            E::IsNotNull(x) => Ok(Expr::IsNull { subject: Box::new(self.expr(*x, next)?), negated: true }),
            E::IsTrue(x) => self.truth(*x, Some(true), false, next),
            E::IsNotTrue(x) => self.truth(*x, Some(true), true, next),
            E::IsFalse(x) => self.truth(*x, Some(false), false, next),
            E::IsNotFalse(x) => self.truth(*x, Some(false), true, next),
            E::IsUnknown(x) => self.truth(*x, None, false, next),
            E::IsNotUnknown(x) => self.truth(*x, None, true, next),
            E::IsDistinctFrom(l, r) | E::IsNotDistinctFrom(l, r) if !self.pg() => {
                dismantle(*l);
                dismantle(*r);
                self.fail(at, "IS [NOT] DISTINCT FROM is not supported; write <=>")
            }
            E::IsDistinctFrom(l, r) => Ok(Expr::Not(Box::new(self.distinct(at, *l, *r, next)?))),
            E::IsNotDistinctFrom(l, r) => self.distinct(at, *l, *r, next),
            E::In { expr, target: sql::InTarget::List(list), negated, .. } => {
                self.in_list(at, *expr, list, negated, next)
            }
            E::In { expr, .. } => self.refuse(at, *expr, "subquery is not supported"),
            E::Between { expr, negated, low, high } => {
                let subject = self.expr(*expr, next)?;
                let low = self.expr(*low, next)?;
                let high = self.expr(*high, next)?;
                self.comparison(at, postgres::Comparing::Order, &subject, &low)?;
                self.comparison(at, postgres::Comparing::Order, &subject, &high)?;
                Ok(Expr::Between { subject: Box::new(subject), low: Box::new(low), high: Box::new(high), negated })
            }
            E::Like { negated, any: false, expr, pattern, escape_char } => {
                self.like(at, *expr, *pattern, escape_char, negated, !self.pg(), next)
            }
            E::ILike { negated, any: false, expr, pattern, escape_char } if self.pg() => {
                self.like(at, *expr, *pattern, escape_char, negated, true, next)
            }
            E::Like { expr, .. } | E::ILike { expr, .. } => self.refuse(at, *expr, "LIKE ANY / ILIKE is not supported"),
            E::RLike { expr, regexp, .. } => {
                let what = if regexp { "REGEXP" } else { "RLIKE" };
                self.refuse(at, *expr, format!("{what} is not supported"))
            }
            E::SimilarTo { expr, .. } => self.refuse(at, *expr, "SIMILAR TO is not supported"),
            E::AnyOp { left, .. } | E::AllOp { left, .. } => {
                self.refuse(at, *left, "subquery comparison (ANY/ALL/SOME) is not supported")
            }
            E::Function(f) => {
                let reason = match f.args {
                    sql::FunctionArguments::None => format!("function `{}` is not supported", f.name),
                    _ => format!("function call `{}(...)` is not supported", f.name),
                };
                self.fail(at, reason)
            }
            E::Subquery(_) | E::Exists { .. } => self.fail(at, "subquery is not supported"),
            E::Case { .. } => self.fail(at, "CASE expression is not supported"),
            E::Interval(_) => self.fail(at, "INTERVAL expression is not supported"),
            E::Collate { expr, .. } => self.refuse(at, *expr, "COLLATE is not supported"),
            E::Cast { kind: sql::CastKind::DoubleColon, expr, .. } => {
                self.refuse(at, *expr, "type cast `::` is not supported")
            }
            E::Cast { expr, .. } => self.refuse(at, *expr, "CAST, CONVERT and BINARY are not supported"),
            E::Convert { .. } => self.fail(at, "CONVERT is not supported"),
            E::TypedString(_) => self.fail(at, "typed literal (`DATE '...'`, `X'...'`) is not supported"),
            E::Prefixed { .. } => self.fail(at, "character set introducer (`_utf8mb4'...'`) is not supported"),
            E::Tuple(_) => self.fail(at, "row constructor `(a, b, ...)` is not supported"),
            E::JsonAccess { .. } | E::CompoundFieldAccess { .. } => {
                self.fail(at, "JSON or field access is not supported")
            }
            E::MemberOf(_) => self.fail(at, "MEMBER OF is not supported"),
            E::MatchAgainst { .. } => self.fail(at, "MATCH ... AGAINST is not supported"),
            E::Wildcard(_) | E::QualifiedWildcard(..) => self.fail(at, "`*` is not supported"),
            other => {
                let mut text = other.to_string();
                if text.chars().count() > 40 {
                    text = format!("{}…", text.chars().take(40).collect::<String>());
                }
                self.fail(at, format!("`{text}` is not supported"))
            }
        }
    }

    fn identifier(&mut self, id: sql::Ident) -> Parsed<Expr> {
        let at = id.span.start;
        let quote = match self.dialect {
            Dialect::MySql => '`',
            Dialect::Postgres => '"',
        };
        match id.quote_style {
            Some(q) if q == quote => {
                if id.value.is_empty() {
                    return self.fail(at, format!("empty identifier {q}{q}"));
                }
                self.column(at, id.value)
            }
            Some(q) => self.fail(at, format!("identifier quoted with {q} is not supported; quote names with {quote}")),
            None => {
                let name = id.value;
                let upper = name.to_ascii_uppercase();
                if name.starts_with('@') {
                    return self.fail(at, format!("variable `{name}` is not supported"));
                }
                if !name.chars().all(|c| c.is_alphanumeric() || c == '_' || c == '$') {
                    return self.fail(at, format!("`{name}` is not a column name"));
                }
                if NILADIC_FUNCTIONS.contains(&upper.as_str())
                    || (self.pg() && PG_NILADIC_FUNCTIONS.contains(&upper.as_str()))
                {
                    return self.fail(at, format!("function `{name}` is not supported"));
                }
                if RESERVED.contains(&upper.as_str()) {
                    let q = quote;
                    return self.fail(
                        at,
                        format!("expected a column or a literal, found `{name}` (quote it with {q} if it is a column)"),
                    );
                }
                // PostgreSQL folds unquoted names to lower case (ASCII letters only, as in UTF-8).
                let name = if self.pg() { name.to_ascii_lowercase() } else { name };
                self.column(at, name)
            }
        }
    }

    fn value(&mut self, v: sql::ValueWithSpan) -> Parsed<Expr> {
        let at = v.span.start;
        use sql::Value as V;
        match v.value {
            V::Number(n, false) if parse_number(&n).is_some() => Ok(Expr::Number(n)),
            V::Number(n, _) => self.fail(at, format!("number `{n}` is not supported")),
            V::SingleQuotedString(s) if self.pg() && s.contains('\0') => {
                self.fail(at, "a string literal cannot hold a NUL character")
            }
            V::SingleQuotedString(s) => Ok(Expr::Text(s)),
            V::DoubleQuotedString(s) if !self.pg() => Ok(Expr::Text(s)),
            V::Boolean(b) => Ok(Expr::Bool(b)),
            V::Null => Ok(Expr::Null),
            V::HexStringLiteral(_) => self.fail(at, "hexadecimal literal is not supported"),
            V::Placeholder(p) => self.fail(at, format!("parameter placeholder `{p}` is not supported")),
            V::DollarQuotedString(_) => self.fail(at, "dollar-quoted string is not supported"),
            V::EscapedStringLiteral(_) => self.fail(at, "escape string literal E'...' is not supported"),
            V::NationalStringLiteral(_) => self.fail(at, "national string literal N'...' is not supported"),
            V::UnicodeStringLiteral(_) => self.fail(at, "Unicode string literal U&'...' is not supported"),
            V::SingleQuotedByteStringLiteral(_) | V::DoubleQuotedByteStringLiteral(_) => {
                self.fail(at, "bit or byte string literal is not supported")
            }
            other => {
                let kind = format!("{other:?}");
                let kind = kind.split('(').next().unwrap_or("literal");
                self.fail(at, format!("literal of kind {kind} is not supported"))
            }
        }
    }

    fn truth(&mut self, subject: sql::Expr, want: Option<bool>, negated: bool, depth: usize) -> Parsed<Expr> {
        let subject = self.cond(subject, depth)?;
        Ok(Expr::IsTruth { subject: Box::new(subject), want, negated })
    }

    fn distinct(&mut self, at: Location, l: sql::Expr, r: sql::Expr, depth: usize) -> Parsed<Expr> {
        let l = self.expr(l, depth)?;
        let r = self.expr(r, depth)?;
        self.comparison(at, postgres::Comparing::Equality, &l, &r)?;
        Ok(Expr::Compare(CmpOp::NullSafeEq, Box::new(l), Box::new(r)))
    }

    /// A chain of one operator, left to right, collected without recursion.
    fn chain(e: sql::Expr, op: &BinaryOperator) -> Vec<sql::Expr> {
        let mut items = Vec::new();
        let mut current = e;
        loop {
            match current {
                sql::Expr::BinaryOp { left, op: o, right } if o == *op => {
                    items.push(*right);
                    current = *left;
                }
                other => {
                    items.push(other);
                    break;
                }
            }
        }
        items.reverse();
        items
    }

    fn binary(
        &mut self,
        at: Location,
        left: sql::Expr,
        op: BinaryOperator,
        right: sql::Expr,
        depth: usize,
    ) -> Parsed<Expr> {
        use BinaryOperator as B;
        let next = depth + 1;
        let logic = match op {
            B::And => Some(Expr::And as fn(Vec<Expr>) -> Expr),
            B::Or => Some(Expr::Or as fn(Vec<Expr>) -> Expr),
            B::Xor if !self.pg() => Some(Expr::Xor as fn(Vec<Expr>) -> Expr),
            _ => None,
        };
        if let Some(make) = logic {
            let mut items = Self::chain(left, &op);
            items.push(right);
            let mut out = Vec::with_capacity(items.len());
            let xor_ok = op == B::Or;
            if op == B::Xor
                && let Some(bare) = items.iter().find(|i| {
                    !matches!(
                        i,
                        sql::Expr::Identifier(_)
                            | sql::Expr::Value(_)
                            | sql::Expr::Nested(_)
                            | sql::Expr::UnaryOp { op: UnaryOperator::Minus | UnaryOperator::Plus, .. }
                    )
                })
            {
                let at = start(bare);
                items.into_iter().for_each(dismantle);
                return self.fail(at, "XOR needs parentheses around each side: write `(a = 1) XOR (b = 2)`");
            }
            let mut rest = items.into_iter();
            while let Some(item) = rest.next() {
                let at = start(&item);
                let converted = self.expr_in(item, next, xor_ok).and_then(|e| self.condition(at, &e).map(|()| e));
                match converted {
                    Ok(e) => out.push(e),
                    Err(e) => {
                        rest.for_each(dismantle);
                        return Err(e);
                    }
                }
            }
            return Ok(make(out));
        }
        let cmp = match op {
            B::Eq => Some(CmpOp::Eq),
            B::NotEq => Some(CmpOp::Ne),
            B::Lt => Some(CmpOp::Lt),
            B::LtEq => Some(CmpOp::Le),
            B::Gt => Some(CmpOp::Gt),
            B::GtEq => Some(CmpOp::Ge),
            B::Spaceship if !self.pg() => Some(CmpOp::NullSafeEq),
            _ => None,
        };
        let Some(cmp) = cmp else {
            dismantle(left);
            dismantle(right);
            let reason = match op {
                B::StringConcat if !self.pg() => "operator `||` is not supported; write OR".to_owned(),
                B::StringConcat => "string concatenation `||` is not supported".to_owned(),
                B::Spaceship => "`<=>` is MySQL's; write IS NOT DISTINCT FROM".to_owned(),
                B::Xor => "XOR is not supported".to_owned(),
                B::Plus
                | B::Minus
                | B::Multiply
                | B::Divide
                | B::Modulo
                | B::MyIntegerDivide
                | B::DuckIntegerDivide => {
                    format!("arithmetic operator `{op}` is not supported")
                }
                B::BitwiseAnd | B::BitwiseOr | B::BitwiseXor | B::PGBitwiseShiftLeft | B::PGBitwiseShiftRight => {
                    format!("bit operator `{op}` is not supported")
                }
                _ => format!("operator `{op}` is not supported"),
            };
            return self.fail(at, reason);
        };
        let chained = |e: &sql::Expr| {
            matches!(e, sql::Expr::BinaryOp { op: B::Eq | B::NotEq | B::Lt | B::LtEq | B::Gt | B::GtEq, .. })
        };
        if self.pg() && (chained(&left) || chained(&right)) {
            dismantle(left);
            dismantle(right);
            return self.fail(at, "comparisons do not chain in PostgreSQL (`a = b = c`); join them with AND");
        }
        let l = self.expr(left, next)?;
        let r = self.expr(right, next)?;
        let comparing = match cmp {
            CmpOp::Eq | CmpOp::NullSafeEq | CmpOp::Ne => postgres::Comparing::Equality,
            _ => postgres::Comparing::Order,
        };
        self.comparison(at, comparing, &l, &r)?;
        Ok(Expr::Compare(cmp, Box::new(l), Box::new(r)))
    }

    fn in_list(
        &mut self,
        at: Location,
        subject: sql::Expr,
        list: Vec<sql::Expr>,
        negated: bool,
        depth: usize,
    ) -> Parsed<Expr> {
        let subject = self.expr(subject, depth)?;
        if list.is_empty() {
            return self.fail(at, "empty IN list");
        }
        let mut items = Vec::with_capacity(list.len());
        for item in list {
            let item_at = start(&item);
            let item = self.expr(item, depth)?;
            if !item.is_literal() {
                return self.fail(item_at, "IN list items must be literals; columns and expressions are not supported");
            }
            self.comparison(at, postgres::Comparing::Equality, &subject, &item)?;
            items.push(item);
        }
        Ok(Expr::In { subject: Box::new(subject), list: items, negated })
    }

    #[allow(clippy::too_many_arguments)]
    fn like(
        &mut self,
        at: Location,
        subject: sql::Expr,
        pattern: sql::Expr,
        escape: Option<Box<sql::Expr>>,
        negated: bool,
        fold: bool,
        depth: usize,
    ) -> Parsed<Expr> {
        let subject = self.expr(subject, depth)?;
        let pattern_at = start(&pattern);
        let literal = self.expr(pattern, depth)?;
        let text = match &literal {
            Expr::Text(s) => Some(s.clone()),
            Expr::Number(_) | Expr::Bool(_) if self.pg() => {
                return self.fail(pattern_at, "LIKE pattern must be a string literal");
            }
            Expr::Number(s) => Some(s.clone()),
            Expr::Bool(b) => Some(String::from(if *b { "1" } else { "0" })),
            Expr::Null => None,
            _ => {
                return self
                    .fail(pattern_at, "LIKE pattern must be a literal; columns and expressions are not supported");
            }
        };
        let escape = match escape {
            None => None,
            Some(e) => {
                let escape_at = start(&e);
                match self.expr(*e, depth)? {
                    Expr::Text(s) if s.chars().count() <= 1 => Some(s.chars().next()),
                    _ => return self.fail(escape_at, "ESCAPE must be a string literal of at most one character"),
                }
            }
        };
        if self.table.is_some() {
            postgres::check_like(&subject, &self.columns, &self.classes)
                .map_err(|reason| UnsupportedFilter { reason, position: position(self.src, at) })?;
        }
        let pattern = text.map(|t| compile_like(&t, escape.unwrap_or(Some('\\')), fold));
        Ok(Expr::Like { subject: Box::new(subject), literal: Box::new(literal), escape, pattern, negated, fold })
    }
}

// ---------------------------------------------------------------------------------------------
// Rendering

struct Render<'f> {
    columns: &'f [String],
    /// Whose tree it is (decides LIKE versus ILIKE).
    from: Dialect,
    to: Dialect,
}

impl Render<'_> {
    fn operand(&self, e: &Expr, out: &mut String) {
        if e.is_atom() {
            self.expr(e, out);
        } else {
            out.push('(');
            self.expr(e, out);
            out.push(')');
        }
    }

    fn join(&self, items: &[Expr], sep: &str, out: &mut String) {
        for (i, e) in items.iter().enumerate() {
            if i > 0 {
                out.push_str(sep);
            }
            self.operand(e, out);
        }
    }

    fn text(&self, s: &str, out: &mut String) {
        out.push('\'');
        for c in s.chars() {
            match (self.to, c) {
                (_, '\'') => out.push_str("''"),
                // Backslash escapes are on in the SQL mode the MySQL sessions pin.
                (Dialect::MySql, '\\') => out.push_str("\\\\"),
                (Dialect::MySql, '\0') => out.push_str("\\0"),
                _ => out.push(c),
            }
        }
        out.push('\'');
    }

    fn expr(&self, e: &Expr, out: &mut String) {
        let not = |negated: bool| if negated { "NOT " } else { "" };
        match e {
            Expr::Column(i) => {
                let name = self.columns.get(*i).map_or("", String::as_str);
                out.push_str(&match self.to {
                    Dialect::MySql => my_ident(name),
                    Dialect::Postgres => pg_ident(name),
                });
            }
            Expr::Null => out.push_str("NULL"),
            Expr::Bool(b) => out.push_str(if *b { "TRUE" } else { "FALSE" }),
            Expr::Number(n) => out.push_str(n),
            Expr::Text(s) => self.text(s, out),
            Expr::Not(x) => {
                out.push_str("NOT ");
                self.operand(x, out);
            }
            Expr::And(items) => self.join(items, " AND ", out),
            Expr::Or(items) => self.join(items, " OR ", out),
            Expr::Xor(items) if self.to == Dialect::MySql => self.join(items, " XOR ", out),
            Expr::Xor(items) => {
                // PostgreSQL has no XOR: on booleans it is `<>`, NULL in, NULL out.
                let Some((first, rest)) = items.split_first() else { return };
                out.push_str(&"(".repeat(rest.len()));
                self.operand(first, out);
                for e in rest {
                    out.push_str(" <> ");
                    self.operand(e, out);
                    out.push(')');
                }
            }
            Expr::Compare(CmpOp::NullSafeEq, l, r) if self.to == Dialect::Postgres => {
                self.operand(l, out);
                out.push_str(" IS NOT DISTINCT FROM ");
                self.operand(r, out);
            }
            Expr::Compare(op, l, r) => {
                self.operand(l, out);
                out.push(' ');
                out.push_str(op.symbol());
                out.push(' ');
                self.operand(r, out);
            }
            Expr::IsNull { subject, negated } => {
                self.operand(subject, out);
                out.push_str(if *negated { " IS NOT NULL" } else { " IS NULL" });
            }
            Expr::IsTruth { subject, want, negated } => {
                self.operand(subject, out);
                out.push_str(" IS ");
                out.push_str(not(*negated));
                out.push_str(match want {
                    Some(true) => "TRUE",
                    Some(false) => "FALSE",
                    None => "UNKNOWN",
                });
            }
            Expr::In { subject, list, negated } => {
                self.operand(subject, out);
                out.push(' ');
                out.push_str(not(*negated));
                out.push_str("IN (");
                self.join(list, ", ", out);
                out.push(')');
            }
            Expr::Between { subject, low, high, negated } => {
                self.operand(subject, out);
                out.push(' ');
                out.push_str(not(*negated));
                out.push_str("BETWEEN ");
                self.operand(low, out);
                out.push_str(" AND ");
                self.operand(high, out);
            }
            Expr::Like { subject, literal, escape, negated, fold, .. } => {
                self.operand(subject, out);
                out.push(' ');
                out.push_str(not(*negated));
                let ilike = *fold && self.from == Dialect::Postgres && self.to == Dialect::Postgres;
                out.push_str(if ilike { "ILIKE " } else { "LIKE " });
                self.operand(literal, out);
                if let Some(escape) = escape {
                    out.push_str(" ESCAPE ");
                    self.text(&escape.map(String::from).unwrap_or_default(), out);
                }
            }
        }
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

/// Simple (one-to-one) lowercase: `to_lowercase` may expand a character (`İ`), whose simple
/// mapping is the first character of that expansion.
fn fold(c: char) -> char {
    if c.is_ascii() { c.to_ascii_lowercase() } else { c.to_lowercase().next().unwrap_or(c) }
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

    fn assert_rejected(sql: &str, reason_part: &str) {
        let e = rejected(sql);
        let shown: String = sql.chars().take(60).collect();
        assert!(
            e.reason().to_lowercase().contains(&reason_part.to_lowercase()),
            "{shown:?}: {} lacks {reason_part:?}",
            e.reason().chars().take(200).collect::<String>()
        );
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
    fn filters_are_rendered_from_the_tree_with_quoted_names_and_escaped_strings() {
        let f = filter(r#"region = 'eu' AND `order` > -5 AND note = "it's \\ here""#);
        assert_eq!(f.render(Dialect::MySql), r"(`region` = 'eu') AND (`order` > -5) AND (`note` = 'it''s \\ here')");
        assert_eq!(
            f.render(Dialect::Postgres),
            r#"("region" = 'eu') AND ("order" > -5) AND ("note" = 'it''s \ here')"#
        );
        let f = filter(r"a <=> NULL OR (b = 1) XOR (c IS NOT TRUE) OR d NOT LIKE 'x\_%' ESCAPE '|'");
        assert_eq!(
            f.render(Dialect::MySql),
            r"(`a` <=> NULL) OR ((`b` = 1) XOR (`c` IS NOT TRUE)) OR (`d` NOT LIKE 'x\\_%' ESCAPE '|')"
        );
        assert_eq!(
            f.render(Dialect::Postgres),
            r#"("a" IS NOT DISTINCT FROM NULL) OR ((("b" = 1) <> ("c" IS NOT TRUE))) OR ("d" NOT LIKE 'x\_%' ESCAPE '|')"#
        );
        let f = filter("`we``ird` IN (1, 'x') AND NOT (b BETWEEN 1 AND 2) AND c IS NULL");
        assert_eq!(
            f.render(Dialect::MySql),
            "(`we``ird` IN (1, 'x')) AND (NOT (`b` BETWEEN 1 AND 2)) AND (`c` IS NULL)"
        );
    }

    #[test]
    fn a_rendered_filter_cannot_be_broken_out_of() {
        // Quotes and backslashes in a literal stay inside the rendered literal.
        for text in ["') OR 1=1 -- ", "\\'); DROP TABLE t; -- ", "\"` OR `x", "\0\n"] {
            let sql = format!("s = '{}'", text.replace('\'', "''"));
            let Ok(f) = RowFilter::parse(&sql) else { continue };
            let rendered = f.render(Dialect::MySql);
            let again = filter(&rendered);
            assert!(f.same_tree(&again), "{sql:?} rendered as {rendered:?}");
            assert_eq!(again.columns(), vec!["s".to_owned()]);
            if rendered.contains("\\0") {
                continue; // PostgreSQL text cannot hold NUL: a compare on such a target refuses it.
            }
            let pg = f.render(Dialect::Postgres);
            let again = RowFilter::parse_in(Dialect::Postgres, &pg).unwrap_or_else(|e| panic!("{pg:?}: {e}"));
            assert_eq!(again.columns(), vec!["s".to_owned()]);
        }
        assert_eq!(filter(r"s = 'a\\0b'").render(Dialect::MySql), r"`s` = 'a\\0b'", "backslash, zero");
        assert_eq!(filter(r"s = 'a\0b'").render(Dialect::MySql), r"`s` = 'a\0b'", "NUL");
        assert_eq!(filter("s = 'a\0b'").render(Dialect::MySql), "`s` = 'a\\0b'");
    }

    #[test]
    fn for_table_refuses_columns_the_table_does_not_have() {
        assert_eq!(for_table(Dialect::MySql, "ID > 1", &["id", "note"]).as_deref(), Ok("`ID` > 1"));
        let e = for_table(Dialect::MySql, "nope = 1", &["id"]).unwrap_err();
        assert!(e.contains("column `nope` does not exist"), "{e}");
        assert!(for_table(Dialect::Postgres, "\"ID\" > 1", &["id"]).is_err(), "PostgreSQL names are case-sensitive");
        assert_eq!(for_table(Dialect::Postgres, "ID > 1", &["id"]).as_deref(), Ok("\"id\" > 1"));
        assert_eq!(
            translate("`a` <=> 1", Dialect::MySql, Dialect::Postgres).as_deref(),
            Ok("\"a\" IS NOT DISTINCT FROM 1")
        );
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
    fn symbolic_and_matches_its_keyword() {
        let row: Row = &[("a", Some("1")), ("b", Some("0"))];
        assert_eq!(eval("a = 1 && b = 0", row), Some(true));
        assert_eq!(eval("a = 1 && b = 1", row), Some(false));
    }

    #[test]
    fn and_binds_tighter_than_xor_and_xor_tighter_than_or() {
        assert_eq!(lit("TRUE OR TRUE AND FALSE"), Some(true));
        assert_eq!(lit("(TRUE OR TRUE) AND FALSE"), Some(false));
        assert_eq!(lit("TRUE XOR (TRUE AND FALSE)"), Some(true));
        assert_eq!(lit("TRUE XOR TRUE OR TRUE"), Some(true), "(TRUE XOR TRUE) OR TRUE");
        assert_eq!(lit("FALSE OR TRUE XOR TRUE"), Some(false), "FALSE OR (TRUE XOR TRUE)");
        assert_eq!(lit("NOT FALSE AND FALSE"), Some(false), "NOT binds tighter than AND");
    }

    #[test]
    fn xor_where_sqlparser_would_read_it_unlike_mysql_needs_parentheses() {
        // sqlparser gives XOR the precedence of `^`; MySQL puts it between AND and OR.
        assert_rejected("TRUE XOR TRUE AND FALSE", "XOR needs parentheses");
        assert_rejected("a = 1 XOR b = 2", "XOR needs parentheses");
        assert_rejected("NOT a XOR b", "XOR needs parentheses");
        assert_rejected("(a) XOR (b) = 1", "XOR needs parentheses");
        assert_eq!(eval("(a = 1) XOR (b = 2)", &[("a", Some("1")), ("b", Some("1"))]), Some(true));
    }

    #[test]
    fn bang_and_pipes_are_refused_rather_than_misread() {
        // MySQL reads `!` as NOT and `||` as OR (without PIPES_AS_CONCAT); sqlparser does not.
        assert_rejected("!a = 1", "expected: an expression, found: !");
        assert_rejected("a = 2 || b = 0", "`||` is not supported; write OR");
        assert_eq!(eval("NOT a = 1", &[("a", Some("2"))]), Some(true), "NOT (2 = 1)");
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
    fn identifiers_may_be_backquoted_but_not_qualified() {
        let row: Row = &[("order", Some("1")), ("we`ird", Some("2")), ("c", Some("3")), ("my col", Some("4"))];
        assert_eq!(eval("`order` = 1", row), Some(true));
        assert_eq!(eval("`we``ird` = 2", row), Some(true));
        assert_rejected("t.c = 3", "qualified name `t.c` is not supported");
        assert_rejected("`db`.`t`.`c` = 3", "qualified name");
        assert_rejected("other_table.col = 1", "qualified name `other_table.col`");
        assert_eq!(eval("`my col` = 4", row), Some(true));
        assert_eq!(eval("`null` = 5", &[("null", Some("5"))]), Some(true), "a back-quoted keyword is a column");
        assert_eq!(filter("c = 1 AND `C` = 2").columns(), vec!["c".to_string()]);
        assert_eq!(filter("`we``ird` = 1").columns(), vec!["we`ird".to_string()]);
    }

    #[test]
    fn keywords_are_case_insensitive() {
        let row: Row = &[("a", Some("1")), ("b", None)];
        assert_eq!(eval("a in (1) and b is null Or not a between 0 aNd 2", row), Some(true));
        assert_eq!(eval("(a NoT LiKe 'x') xOr (b IS NOT nUlL)", row), Some(true));
        assert_eq!(eval("a is true AND b Is Unknown", row), Some(true));
        assert_eq!(lit("True AND NOT false"), Some(true));
    }

    #[test]
    fn comments_are_skipped_and_executable_comments_read_as_their_content() {
        assert_eq!(lit("1 = 1 /* always */ AND 2 = 2 -- trailing\n"), Some(true));
        assert_eq!(lit("1 = 1 # hash comment"), Some(true));
        // MySQL's executable comments are read as their content, as MySQL reads them.
        assert_eq!(lit("1 = 1 /*!50700 AND 0 */"), Some(false));
        assert_rejected("1 = 1 /* open", "EOF while in a multi-line comment");
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
        assert_rejected("lower(name) = 'x'", "function call `lower(...)`");
        assert_rejected("a = 1 AND COALESCE (b, 0) > 1", "function call `COALESCE(...)`");
        assert_rejected("`f`(a) = 1", "function call `");
        assert_rejected("created_at > CURRENT_DATE", "function `CURRENT_DATE`");
        assert_rejected("created_at > current_timestamp", "function `current_timestamp`");
    }

    #[test]
    fn arithmetic_is_rejected() {
        assert_rejected("a + b > 3", "arithmetic operator `+`");
        assert_rejected("a - 1 = 0", "arithmetic operator `-`");
        assert_rejected("a = b-1", "arithmetic operator `-`");
        assert_rejected("a * 2 = 4", "arithmetic operator `*`");
        assert_rejected("a / 2 = 4", "arithmetic operator `/`");
        assert_rejected("a % 2 = 0", "arithmetic operator `%`");
        assert_rejected("a DIV 2 = 0", "arithmetic operator `DIV`");
        assert_rejected("a mod 2 = 0", "found `mod`");
        assert_rejected("-a > 0", "numeric literals only");
        assert_rejected("a & 1", "bit operator `&`");
        assert_rejected("a | 1", "bit operator `|`");
        assert_rejected("a << 1", "bit operator `<<`");
    }

    #[test]
    fn subqueries_are_rejected() {
        assert_rejected("id IN (SELECT id FROM t)", "subquery");
        assert_rejected("id = (select max(id) from t)", "subquery");
        assert_rejected("EXISTS (SELECT 1)", "subquery");
        assert_rejected("id = ANY (SELECT id FROM t)", "ANY/ALL/SOME");
        assert_rejected("id IN ((SELECT 1))", "subquery");
    }

    #[test]
    fn other_constructs_outside_the_subset_are_rejected() {
        assert_rejected("name REGEXP '^a'", "REGEXP");
        assert_rejected("name NOT RLIKE '^a'", "RLIKE");
        assert_rejected("CASE WHEN a THEN 1 END", "CASE");
        assert_rejected("d > NOW() - INTERVAL 1 DAY", "arithmetic operator `-`");
        assert_rejected("d > NOW()", "function call `NOW(...)`");
        assert_rejected("d > INTERVAL 1 DAY", "INTERVAL");
        assert_rejected("BINARY name = 'x'", "BINARY");
        assert_rejected("name = 'x' COLLATE utf8mb4_bin", "COLLATE");
        assert_rejected("d = DATE '2024-01-01'", "typed literal");
        assert_rejected("s = _utf8mb4'x'", "introducer");
        assert_rejected("b = X'0F'", "hexadecimal literal");
        assert_rejected("b = 0x0F", "hexadecimal");
        assert_rejected("a = @v", "variable");
        assert_rejected("a = ?", "placeholder");
        assert_rejected("a = 1; DROP TABLE t", "statement separator");
        assert_rejected("(a, b) = (1, 2)", "row constructor");
        assert_rejected("a IN (b, 1)", "must be literals");
        assert_rejected("a LIKE b", "LIKE pattern must be a literal");
        assert_rejected("a LIKE 'x' ESCAPE 'ab'", "ESCAPE");
        assert_rejected("doc->'$.a' = 1", "operator `->` is not supported");
        assert_rejected("doc->>'$.a' = 1", "operator `->>` is not supported");
        assert_rejected("a SOUNDS LIKE 'x'", "found `SOUNDS`");
        assert_rejected("a := 1", "operator `:=`");
        assert_rejected("~a = 1", "operator `~`");
    }

    #[test]
    fn malformed_filters_are_rejected_with_the_offending_position() {
        assert_rejected("", "empty");
        assert_rejected("  -- nothing\n", "empty");
        assert_rejected("a = 'eu", "unterminated string");
        assert_rejected(r"a = 'eu\'", "unterminated string");
        assert_rejected("`a = 1", "close delimiter");
        assert_rejected("(a = 1", "expected: ), found: EOF");
        assert_rejected("a = 1)", "found `)`");
        assert_rejected("a = 1 AND", "expected: an expression, found: EOF");
        assert_rejected("a =", "found: EOF");
        assert_rejected("a IN ()", "expected: an expression, found: )");
        assert_rejected("a IN 1", "expected: (, found: 1");
        assert_rejected("a BETWEEN 1 OR 2", "expected: AND, found: OR");
        assert_rejected("a IS 5", "after IS, found: 5");
        assert_rejected("a b", "found `b`");
        assert_rejected("``", "empty identifier");
        assert_rejected("a = 1 AND OR b = 2", "found `b`");
        assert_rejected("a = 1 AND OR", "found `OR` (quote it with ` if it is a column)");
        assert_rejected("a = 1 LIMIT 5", "found `LIMIT`");
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
        assert_rejected(&deep, "nesting deeper than");
        assert!(RowFilter::parse(&"NOT ".repeat(10_000)).is_err());
        assert!(RowFilter::parse(&format!("{}a", "- ".repeat(10_000))).is_err());
        assert_rejected(&format!("a{}", " = 1".repeat(10_000)), &format!("nesting deeper than {MAX_DEPTH} levels"));
        assert_rejected(&format!("a{}", " IS NULL".repeat(10_000)), "nesting deeper than");
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
