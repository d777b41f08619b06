//! Quoting identifiers for each engine. Values are never spliced into SQL: they are bound as
//! parameters.

/// A PostgreSQL identifier, double-quoted (`"Order ""Lines"""`).
pub fn pg_ident(name: &str) -> String {
    format!("\"{}\"", name.replace('"', "\"\""))
}

/// A schema-qualified PostgreSQL name.
pub fn pg_qualified(schema: &str, name: &str) -> String {
    format!("{}.{}", pg_ident(schema), pg_ident(name))
}

/// A MySQL/MariaDB identifier, back-quoted.
pub fn my_ident(name: &str) -> String {
    format!("`{}`", name.replace('`', "``"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn identifiers_are_quoted_with_embedded_quotes_doubled() {
        assert_eq!(pg_ident("orders"), "\"orders\"");
        assert_eq!(pg_ident("a\"b"), "\"a\"\"b\"");
        assert_eq!(pg_qualified("public", "Order Lines"), "\"public\".\"Order Lines\"");
        assert_eq!(my_ident("we`ird"), "`we``ird`");
    }
}
