//! MySQL / MariaDB → PostgreSQL: the type mapping ([`types`], documented in
//! docs/mysql-to-postgresql.md) and the structure it implies ([`structure`]).

pub mod structure;
pub mod types;
