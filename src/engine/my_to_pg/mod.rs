//! MySQL / MariaDB → PostgreSQL: the type mapping ([`types`], documented in
//! docs/mysql-to-postgresql.md).

pub mod types;
