//! A consistent read of a MariaDB source without a global lock: `START TRANSACTION WITH
//! CONSISTENT SNAPSHOT` makes InnoDB's snapshot and the binary log position agree, and MariaDB
//! reports that position (`binlog_snapshot_file` / `binlog_snapshot_position`) and maps it to a
//! GTID position (`BINLOG_GTID_POS`). The change stream starts there.
//!
//! MySQL 8 reports no snapshot position. There the log position read right after the snapshot
//! starts is an upper bound of the snapshot's, which is all a chunk of a table with a primary key
//! needs (its changes are replayed idempotently up to it); an exact position — for a table
//! without a key, whose changes up to the snapshot are skipped — takes a brief `FLUSH TABLES WITH
//! READ LOCK` around starting the snapshot (privilege RELOAD). Not exercised by the tests, which
//! run MariaDB.

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
/// session's reads see exactly the transactions before that position until it commits. On MySQL
/// the position is exact only when `exact` (a brief global read lock); otherwise it may be a
/// little past the snapshot.
pub async fn start(conn: &mut Conn, exact: bool) -> Result<SnapshotPosition> {
    let err = |e: mysql_async::Error| EngineError::query(Side::Source, "starting a consistent snapshot", e);
    conn.query_drop("SET SESSION TRANSACTION ISOLATION LEVEL REPEATABLE READ").await.map_err(err)?;
    conn.query_drop("START TRANSACTION WITH CONSISTENT SNAPSHOT, READ ONLY").await.map_err(err)?;
    let status: Vec<(String, String)> = conn.query("SHOW STATUS LIKE 'binlog_snapshot_%'").await.map_err(err)?;
    let get = |name: &str| status.iter().find(|(n, _)| n.eq_ignore_ascii_case(name)).map(|(_, v)| v.clone());
    let (Some(file), Some(position)) = (get("binlog_snapshot_file"), get("binlog_snapshot_position")) else {
        return start_mysql(conn, exact).await;
    };
    let position: u64 =
        position.parse().map_err(|_| EngineError::SourceUnfit(format!("binlog_snapshot_position {position:?}")))?;
    if file.is_empty() {
        return Err(EngineError::SourceUnfit("the server reports no binary log position: log_bin is off".into()));
    }
    let gtid: Option<String> =
        conn.exec_first("SELECT BINLOG_GTID_POS(?, ?)", (&file, position)).await.map_err(err)?.flatten();
    let gtid = gtid
        .unwrap_or_default()
        .parse()
        .map_err(|e| EngineError::SourceUnfit(format!("BINLOG_GTID_POS gave an unreadable position: {e}")))?;
    Ok(SnapshotPosition { file, position, gtid })
}

/// The binary log's current end (`SHOW BINARY LOG STATUS` on MySQL 8.4+, `SHOW MASTER STATUS`
/// before).
pub async fn log_end(conn: &mut Conn) -> Result<(String, u64)> {
    let err = |e: mysql_async::Error| EngineError::query(Side::Source, "reading the binary log position", e);
    let row: Option<mysql_async::Row> = match conn.query_first("SHOW BINARY LOG STATUS").await {
        Ok(r) => r,
        Err(_) => conn.query_first("SHOW MASTER STATUS").await.map_err(err)?,
    };
    let row = row.ok_or_else(|| EngineError::SourceUnfit("the server reports no binary log: log_bin is off".into()))?;
    let file: Option<String> = row.get(0);
    let position: Option<u64> = row.get(1);
    match (file, position) {
        (Some(f), Some(p)) => Ok((f, p)),
        _ => Err(EngineError::SourceUnfit("unreadable binary log status".into())),
    }
}

/// MySQL: the snapshot was started; read the position after it, or restart it under a global
/// read lock for an exact one.
async fn start_mysql(conn: &mut Conn, exact: bool) -> Result<SnapshotPosition> {
    let err = |e: mysql_async::Error| EngineError::query(Side::Source, "starting a consistent snapshot", e);
    if exact {
        conn.query_drop("COMMIT").await.map_err(err)?;
        conn.query_drop("FLUSH TABLES WITH READ LOCK").await.map_err(err)?;
        let started = conn.query_drop("START TRANSACTION WITH CONSISTENT SNAPSHOT, READ ONLY").await.map_err(err);
        let end = log_end(conn).await;
        // Never leave the lock behind, whatever failed.
        conn.query_drop("UNLOCK TABLES").await.map_err(err)?;
        started?;
        let (file, position) = end?;
        return Ok(SnapshotPosition { file, position, gtid: GtidPos::default() });
    }
    let (file, position) = log_end(conn).await?;
    Ok(SnapshotPosition { file, position, gtid: GtidPos::default() })
}
