//! MySQL and MariaDB: connections, the catalog of selected tables and the precheck. The
//! transfer itself (consistent snapshot, binlog stream, apply) is still to come; until then
//! [`crate::engine::run`] answers MySQL-family jobs with a clear "not implemented yet".

pub mod catalog;
pub mod connect;
pub mod gtid;
pub mod precheck;
pub mod snapshot;
