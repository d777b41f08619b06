//! Connections to MySQL and MariaDB through `mysql_async`.

use mysql_async::prelude::Queryable;
use mysql_async::{Conn, OptsBuilder};

use crate::api::{Endpoint, TlsMode};
use crate::engine::error::{EngineError, Result, Side};

/// Opens a session to `endpoint` over TCP.
pub async fn connect(endpoint: &Endpoint, password: Option<&str>, side: Side) -> Result<Conn> {
    let mode = endpoint.tls.as_ref().map_or(TlsMode::Disable, |t| t.mode);
    if mode != TlsMode::Disable {
        return Err(EngineError::Unsupported(format!(
            "spec.{side}.tls.mode {mode:?}: TLS connections to MySQL/MariaDB are not supported yet; use disable"
        )));
    }
    let opts = OptsBuilder::default()
        .ip_or_hostname(endpoint.host.clone())
        .tcp_port(endpoint.port)
        .user(endpoint.user.clone())
        .pass(password.map(str::to_owned))
        .db_name(endpoint.database.clone())
        // Never switch to a local unix socket: the endpoint is what the user named.
        .prefer_socket(false)
        // An UPDATE that matches a row counts it even when nothing changes (conflict detection).
        .client_found_rows(true)
        // The applier prepares a few statements per table and batch size.
        .stmt_cache_size(512);
    let mut conn = Conn::new(opts).await.map_err(|e| EngineError::Connect { side, message: e.to_string() })?;
    conn.query_drop("SET NAMES utf8mb4").await.map_err(|e| EngineError::query(side, "setting up the session", e))?;
    Ok(conn)
}
