//! Connections to PostgreSQL: ordinary SQL sessions through tokio-postgres.

use tokio_postgres::{Client, Config, NoTls};

use crate::api::{Endpoint, TlsMode};
use crate::engine::error::{EngineError, Result, Side};

/// The connection settings for an endpoint and its password.
pub fn config(endpoint: &Endpoint, password: Option<&str>, application: &str) -> Result<Config> {
    let mut c = Config::new();
    c.host(&endpoint.host).port(endpoint.port).application_name(application);
    if let Some(db) = &endpoint.database {
        c.dbname(db);
    }
    if let Some(user) = &endpoint.user {
        c.user(user);
    }
    if let Some(p) = password {
        c.password(p);
    }
    c.connect_timeout(std::time::Duration::from_secs(10));
    Ok(c)
}

/// Opens a session to `endpoint`. The connection task runs in the background and ends with the
/// client.
pub async fn connect(endpoint: &Endpoint, password: Option<&str>, side: Side) -> Result<Client> {
    let mode = endpoint.tls.as_ref().map_or(TlsMode::Disable, |t| t.mode);
    if mode != TlsMode::Disable {
        return Err(EngineError::Unsupported(format!(
            "spec.{side}.tls.mode {mode:?}: TLS connections to PostgreSQL are not supported yet; use disable"
        )));
    }
    let cfg = config(endpoint, password, "ferry")?;
    let (client, connection) =
        cfg.connect(NoTls).await.map_err(|e| EngineError::Connect { side, message: describe_pg_error(&e) })?;
    tokio::spawn(async move {
        if let Err(e) = connection.await {
            tracing::debug!(error = %e, "postgres connection closed");
        }
    });
    client
        .batch_execute("SET search_path = pg_catalog; SET standard_conforming_strings = on; SET extra_float_digits = 3")
        .await
        .map_err(|e| EngineError::query(side, "setting up the session", describe_pg_error(&e)))?;
    Ok(client)
}

/// The server's own message for a database error (which names the failing object), or the
/// client's description otherwise. Neither ever holds the password.
pub fn describe_pg_error(e: &tokio_postgres::Error) -> String {
    match e.as_db_error() {
        Some(db) => match db.detail() {
            Some(detail) => format!("{} ({detail})", db.message()),
            None => db.message().to_owned(),
        },
        None => {
            let mut msg = e.to_string();
            let mut source = std::error::Error::source(e);
            while let Some(s) = source {
                msg.push_str(": ");
                msg.push_str(&s.to_string());
                source = s.source();
            }
            msg
        }
    }
}
