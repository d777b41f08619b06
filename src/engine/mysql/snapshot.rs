//! A consistent read of a MariaDB source without a global lock: `START TRANSACTION WITH
//! CONSISTENT SNAPSHOT` makes InnoDB's snapshot and the binary log position agree, and MariaDB
//! reports that position (`binlog_snapshot_file` / `binlog_snapshot_position`) and maps it to a
//! GTID position (`BINLOG_GTID_POS`). The change stream starts there.
//!
//! MySQL 8 reports no snapshot position: there a brief `FLUSH TABLES WITH READ LOCK` around
//! starting the snapshot and reading `SHOW MASTER STATUS` is needed (not built yet).

use mysql_async::Conn;
use mysql_async::prelude::Queryable;

use super::gtid::GtidPos;
use crate::engine::error::{EngineError, Result, Side};

/// Where a consistent snapshot stands in the binary log.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct SnapshotPosition {
    /// Binary log file.
    pub file: String,
    /// Offset in the file.
    pub position: u64,
    /// The same point as a GTID position (empty before the first GTID).
    pub gtid: GtidPos,
}

/// Starts a consistent-snapshot transaction on `conn` and returns its binary log position. The
/// session's reads see exactly the transactions before that position until it commits.
pub async fn start(conn: &mut Conn) -> Result<SnapshotPosition> {
    let err = |e: mysql_async::Error| EngineError::query(Side::Source, "starting a consistent snapshot", e);
    conn.query_drop("SET SESSION TRANSACTION ISOLATION LEVEL REPEATABLE READ").await.map_err(err)?;
    conn.query_drop("START TRANSACTION WITH CONSISTENT SNAPSHOT, READ ONLY").await.map_err(err)?;
    let status: Vec<(String, String)> = conn.query("SHOW STATUS LIKE 'binlog_snapshot_%'").await.map_err(err)?;
    let get = |name: &str| status.iter().find(|(n, _)| n.eq_ignore_ascii_case(name)).map(|(_, v)| v.clone());
    let (Some(file), Some(position)) = (get("binlog_snapshot_file"), get("binlog_snapshot_position")) else {
        return Err(EngineError::SourceUnfit(
            "the server reports no binlog_snapshot_file/position (MySQL, or log_bin off)".into(),
        ));
    };
    let position: u64 =
        position.parse().map_err(|_| EngineError::SourceUnfit(format!("binlog_snapshot_position {position:?}")))?;
    let gtid: Option<String> =
        conn.exec_first("SELECT BINLOG_GTID_POS(?, ?)", (&file, position)).await.map_err(err)?.flatten();
    let gtid = gtid
        .unwrap_or_default()
        .parse()
        .map_err(|e| EngineError::SourceUnfit(format!("BINLOG_GTID_POS gave an unreadable position: {e}")))?;
    Ok(SnapshotPosition { file, position, gtid })
}
