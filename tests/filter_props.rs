//! Property tests of the row filter parser and renderer (bounded case counts, part of
//! `make test`): what Ferry renders parses back to the same tree in both dialects, and no input
//! makes a parser panic.

use ferry::engine::filter::{Dialect, RowFilter};
use proptest::prelude::*;

/// Cases per property: enough to reach every construct, few enough for every `make test`;
/// `PROPTEST_CASES` raises it for a longer run.
fn cases() -> u32 {
    std::env::var("PROPTEST_CASES").ok().and_then(|c| c.parse().ok()).unwrap_or(256)
}

/// A MySQL string literal for `s` as a user would write it (backslash escapes on).
fn my_string(s: &str) -> String {
    format!("'{}'", s.replace('\\', "\\\\").replace('\'', "''"))
}

/// A PostgreSQL string literal for `s` (standard-conforming).
fn pg_string(s: &str) -> String {
    format!("'{}'", s.replace('\'', "''"))
}

fn column(dialect: Dialect) -> impl Strategy<Value = String> {
    let names = prop::sample::select(vec!["a", "b", "Amount", "order", "we`ird", "my col", "x\"y", "ünï", "select"]);
    names.prop_map(move |n| match dialect {
        Dialect::MySql => format!("`{}`", n.replace('`', "``")),
        Dialect::Postgres => format!("\"{}\"", n.replace('"', "\"\"")),
    })
}

fn text() -> impl Strategy<Value = String> {
    prop::collection::vec(
        prop::sample::select(vec![
            'a', 'Z', ' ', '\'', '"', '\\', '%', '_', '\n', 'é', '€', '`', ';', ')', '-', '#', '*',
        ]),
        0..8,
    )
    .prop_map(|chars| chars.into_iter().collect())
}

fn literal(dialect: Dialect) -> impl Strategy<Value = String> {
    prop_oneof![
        (-1_000_000i64..1_000_000).prop_map(|n| n.to_string()),
        (0u32..10_000, 0u32..1000).prop_map(|(i, f)| format!("{i}.{f}")),
        (1u32..100, -5i32..5).prop_map(|(m, e)| format!("{m}e{e}")),
        text().prop_map(move |s| match dialect {
            Dialect::MySql => my_string(&s),
            Dialect::Postgres => pg_string(&s),
        }),
        Just("NULL".to_owned()),
        Just("TRUE".to_owned()),
        Just("FALSE".to_owned()),
    ]
}

fn operand(dialect: Dialect) -> impl Strategy<Value = String> {
    prop_oneof![column(dialect), literal(dialect)]
}

/// A filter in `dialect`'s syntax, within the subset.
fn filter(dialect: Dialect) -> impl Strategy<Value = String> {
    let pg = dialect == Dialect::Postgres;
    let cmp = prop::sample::select(if pg {
        vec!["=", "<>", "!=", "<", "<=", ">", ">=", "IS DISTINCT FROM", "IS NOT DISTINCT FROM"]
    } else {
        vec!["=", "<>", "!=", "<", "<=", ">", ">=", "<=>"]
    });
    let leaf =
        prop_oneof![
            (operand(dialect), cmp, operand(dialect)).prop_map(|(l, op, r)| format!("{l} {op} {r}")),
            (operand(dialect), any::<bool>()).prop_map(|(o, n)| format!("{o} IS {}NULL", if n { "NOT " } else { "" })),
            (operand(dialect), any::<bool>(), prop::collection::vec(literal(dialect), 1..4))
                .prop_map(|(o, n, l)| format!("{o} {}IN ({})", if n { "NOT " } else { "" }, l.join(", "))),
            (operand(dialect), any::<bool>(), literal(dialect), literal(dialect))
                .prop_map(|(o, n, lo, hi)| format!("{o} {}BETWEEN {lo} AND {hi}", if n { "NOT " } else { "" })),
            (column(dialect), any::<bool>(), text(), prop::option::of(prop::sample::select(vec!["|", "!", "", "\\"])))
                .prop_map(move |(c, n, p, e)| {
                    let lit = |s: &str| if pg { pg_string(s) } else { my_string(s) };
                    let escape = e.map(|e| format!(" ESCAPE {}", lit(e))).unwrap_or_default();
                    let like = if pg && p.len() % 2 == 1 { "ILIKE" } else { "LIKE" };
                    format!("{c} {}{like} {}{escape}", if n { "NOT " } else { "" }, lit(&p))
                }),
            column(dialect),
        ];
    let logic: Vec<&'static str> = if pg { vec!["AND", "OR"] } else { vec!["AND", "OR", "XOR", "&&"] };
    leaf.prop_recursive(4, 24, 3, move |inner| {
        prop_oneof![
            (inner.clone(), prop::sample::select(logic.clone()), inner.clone())
                .prop_map(|(l, op, r)| format!("({l}) {op} ({r})")),
            inner.clone().prop_map(|e| format!("NOT ({e})")),
            (inner.clone(), prop::sample::select(vec!["TRUE", "FALSE", "UNKNOWN"]), any::<bool>())
                .prop_map(|(e, t, n)| format!("({e}) IS {}{t}", if n { "NOT " } else { "" })),
            inner.prop_map(|e| format!("(({e}))")),
        ]
    })
}

/// SQL-ish token soup: likelier than random text to get deep into the parsers.
fn soup() -> impl Strategy<Value = String> {
    let tokens = prop::sample::select(vec![
        "a", "`b`", "\"c\"", "t.a", "1", "-", "+", "1.5e3", "'x'", "'\\''", "''", "(", ")", ",", "=", "<=>", "<", "!",
        "||", "&&", "AND", "OR", "XOR", "NOT", "IS", "NULL", "TRUE", "IN", "BETWEEN", "LIKE", "ESCAPE", "SELECT",
        "FROM", "UNION", "lower", "@v", "?", "$1", "::", ";", "/*", "*/", "/*!", "--", "#", "\n", "E'", "X'0F'", "0x1",
        "ILIKE", "DISTINCT", "CASE", "WHEN", "EXISTS", "ANY", "COLLATE", "\\",
    ]);
    prop::collection::vec(tokens, 0..24).prop_map(|t| t.join(" "))
}

/// Renders `f` in its own dialect and parses that again: the tree must not change.
fn round_trip(f: &RowFilter, dialect: Dialect) -> Result<(), TestCaseError> {
    let sql = f.render(dialect);
    let again = RowFilter::parse_in(dialect, &sql).map_err(|e| TestCaseError::fail(format!("{sql:?}: {e}")))?;
    prop_assert!(f.same_tree(&again), "{sql:?} parses to another tree: {f:?} vs {again:?}");
    Ok(())
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(cases()))]

    #[test]
    fn mysql_filters_render_to_sql_that_parses_to_the_same_tree(sql in filter(Dialect::MySql)) {
        let f = RowFilter::parse(&sql).map_err(|e| TestCaseError::fail(format!("{sql:?}: {e}")))?;
        round_trip(&f, Dialect::MySql)?;
        // Rendered for a PostgreSQL compare target, it is PostgreSQL that parses.
        let pg = f.render(Dialect::Postgres);
        prop_assert!(RowFilter::parse_in(Dialect::Postgres, &pg).is_ok(), "{pg:?}");
    }

    #[test]
    fn postgres_filters_render_to_sql_that_parses_to_the_same_tree(sql in filter(Dialect::Postgres)) {
        let f = RowFilter::parse_in(Dialect::Postgres, &sql).map_err(|e| TestCaseError::fail(format!("{sql:?}: {e}")))?;
        round_trip(&f, Dialect::Postgres)?;
        let my = f.render(Dialect::MySql);
        prop_assert!(RowFilter::parse(&my).is_ok(), "{my:?}");
    }

    #[test]
    fn arbitrary_text_never_panics_and_whatever_parses_round_trips(sql in prop_oneof![any::<String>(), soup()]) {
        if let Ok(f) = RowFilter::parse(&sql) {
            round_trip(&f, Dialect::MySql)?;
        }
        if let Ok(f) = RowFilter::parse_in(Dialect::Postgres, &sql) {
            round_trip(&f, Dialect::Postgres)?;
        }
        let _ = RowFilter::parse_postgres(&sql, &[("a", "integer"), ("b", "text"), ("c", "boolean")]);
    }
}
