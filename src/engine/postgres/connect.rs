//! Connections to PostgreSQL: ordinary SQL sessions through tokio-postgres, over TLS when the
//! endpoint asks for it (rustls, configured by [`crate::engine::tls`]).

use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};

use rustls::ClientConfig;
use rustls::pki_types::ServerName;
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio_postgres::config::SslMode;
use tokio_postgres::error::SqlState;
use tokio_postgres::tls::{ChannelBinding, MakeTlsConnect, TlsConnect};
use tokio_postgres::{Client, Config, NoTls, Socket};

use crate::api::{Endpoint, TlsConfig};
use crate::engine::Login;
use crate::engine::error::{Describe, EngineError, OUT_OF_SPACE, Result, Side};
use crate::engine::redact::{self, ServerMessage};
use crate::engine::tls::{self, TlsFailure};

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
    c.connect_timeout(crate::engine::net::timeout());
    c.keepalives(true)
        .keepalives_idle(crate::engine::net::keepalive_idle())
        .keepalives_interval(crate::engine::net::keepalive_interval())
        .keepalives_retries(crate::engine::net::KEEPALIVE_PROBES)
        .tcp_user_timeout(crate::engine::net::timeout());
    Ok(c)
}

/// Opens a session to `endpoint`. The connection task runs in the background and ends with the
/// client.
pub async fn connect(endpoint: &Endpoint, login: Login<'_>, side: Side) -> Result<Client> {
    crate::engine::net::connecting(side, open(endpoint, login, side)).await
}

async fn open(endpoint: &Endpoint, login: Login<'_>, side: Side) -> Result<Client> {
    let mut cfg = config(endpoint, login.password, "ferry")?;
    let tls_config = tls::client_config(TlsConfig::mode_of(endpoint.tls.as_ref()), login.tls, side)?;
    let client = match tls_config {
        None => {
            cfg.ssl_mode(SslMode::Disable);
            let (client, connection) = cfg.connect(NoTls).await.map_err(|e| connect_error(endpoint, side, &e))?;
            tokio::spawn(async move {
                if let Err(e) = connection.await {
                    tracing::debug!(error = %e, "postgres connection closed");
                }
            });
            client
        }
        Some(config) => {
            // Require: a server that answers the TLS request with "no" is an error, never a
            // fallback to plain text.
            cfg.ssl_mode(SslMode::Require);
            let connector = PgTls { config, name: tls::server_name(&endpoint.host, side)? };
            let (client, connection) = cfg.connect(connector).await.map_err(|e| connect_error(endpoint, side, &e))?;
            tokio::spawn(async move {
                if let Err(e) = connection.await {
                    tracing::debug!(error = %e, "postgres connection closed");
                }
            });
            client
        }
    };
    client
        .batch_execute("SET search_path = pg_catalog; SET standard_conforming_strings = on; SET extra_float_digits = 3")
        .await
        .map_err(|e| EngineError::query(side, "setting up the session", describe_pg_error(&e)))?;
    Ok(client)
}

/// Runs one DDL statement whose text holds catalog output (type names, default, CHECK, index
/// and generation expressions from `format_type`, `pg_get_expr`, `pg_get_constraintdef`,
/// `pg_get_indexdef`) through the extended protocol, where the server parses exactly one
/// statement: text that would carry a second one is refused by the server instead of run, as
/// `batch_execute` (the simple-query protocol) would.
pub async fn execute_one(client: &Client, sql: &str) -> std::result::Result<(), tokio_postgres::Error> {
    client.execute(sql, &[]).await.map(|_| ())
}

/// A connection error: a TLS failure told apart, anything else as the server or client says.
fn connect_error(endpoint: &Endpoint, side: Side, e: &tokio_postgres::Error) -> EngineError {
    let message = describe_pg_error(e).to_string();
    let failure = TlsFailure::find(e).or_else(|| {
        // tokio-postgres says this when the server answers the TLS request with "N".
        if message.contains("server does not support TLS") {
            Some(TlsFailure::NotOffered)
        } else {
            tls::refused_client_certificate(&message).then(|| TlsFailure::ClientCertificateRefused(message.clone()))
        }
    });
    match failure {
        Some(failure) => EngineError::Tls { side, host: endpoint.host.clone(), port: endpoint.port, failure },
        None => EngineError::Connect { side, message },
    }
}

/// tokio-postgres's TLS hook, on rustls.
#[derive(Clone)]
struct PgTls {
    config: Arc<ClientConfig>,
    name: ServerName<'static>,
}

impl MakeTlsConnect<Socket> for PgTls {
    type Stream = PgTlsStream;
    type TlsConnect = PgTls;
    type Error = std::io::Error;

    fn make_tls_connect(&mut self, _domain: &str) -> std::io::Result<PgTls> {
        // The name was fixed from the endpoint's host when the connector was made.
        Ok(self.clone())
    }
}

impl TlsConnect<Socket> for PgTls {
    type Stream = PgTlsStream;
    type Error = std::io::Error;
    type Future = Pin<Box<dyn Future<Output = std::io::Result<PgTlsStream>> + Send>>;

    fn connect(self, stream: Socket) -> Self::Future {
        Box::pin(async move {
            let stream = tokio_rustls::TlsConnector::from(self.config).connect(self.name, stream).await?;
            Ok(PgTlsStream(Box::new(stream)))
        })
    }
}

/// A TLS session to the server.
struct PgTlsStream(Box<tokio_rustls::client::TlsStream<Socket>>);

impl tokio_postgres::tls::TlsStream for PgTlsStream {
    fn channel_binding(&self) -> ChannelBinding {
        // SCRAM works without channel binding; servers cannot demand it.
        ChannelBinding::none()
    }
}

impl AsyncRead for PgTlsStream {
    fn poll_read(mut self: Pin<&mut Self>, cx: &mut Context<'_>, buf: &mut ReadBuf<'_>) -> Poll<std::io::Result<()>> {
        Pin::new(&mut *self.0).poll_read(cx, buf)
    }
}

impl AsyncWrite for PgTlsStream {
    fn poll_write(mut self: Pin<&mut Self>, cx: &mut Context<'_>, buf: &[u8]) -> Poll<std::io::Result<usize>> {
        Pin::new(&mut *self.0).poll_write(cx, buf)
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        Pin::new(&mut *self.0).poll_flush(cx)
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        Pin::new(&mut *self.0).poll_shutdown(cx)
    }
}

/// The column a `COPY … FROM STDIN` error's context names (`COPY items, line 2, column flag:
/// "7"` → `flag`): the server does not set the error's column field for a value it cannot read
/// in a COPY.
fn copy_column(context: &str) -> Option<&str> {
    let first = context.lines().next()?;
    let rest = first.strip_prefix("COPY ")?;
    let (_, after) = rest.split_once(", column ")?;
    after.split_once(": ").map(|(column, _)| column)
}

/// The server's own message for a database error (which names the failing object), with its
/// detail and hint, its SQLSTATE and the objects it concerns, or the client's description
/// otherwise. Neither ever holds the password; the row values a server quotes (in the detail,
/// and in the message of a data exception) are kept apart ([`redact::postgres`]).
pub fn describe_pg_error(e: &tokio_postgres::Error) -> ServerMessage {
    match e.as_db_error() {
        Some(db) => {
            // `could not extend file "…": No space left on device`, hinting "Check free disk
            // space.": say what that means for the job instead.
            let extra = (*db.code() == SqlState::DISK_FULL).then_some(OUT_OF_SPACE);
            let report = redact::PgReport {
                code: db.code().code(),
                message: db.message(),
                detail: db.detail(),
                hint: db.hint(),
                schema: db.schema(),
                table: db.table(),
                column: db.column().or_else(|| db.where_().and_then(copy_column)),
                datatype: db.datatype(),
                constraint: db.constraint(),
            };
            redact::postgres(&report, extra)
        }
        None => {
            let mut msg = e.to_string();
            let mut source = std::error::Error::source(e);
            while let Some(s) = source {
                msg.push_str(": ");
                msg.push_str(&s.to_string());
                source = s.source();
            }
            ServerMessage::plain(msg)
        }
    }
}

impl Describe for tokio_postgres::Error {
    fn describe(&self) -> ServerMessage {
        describe_pg_error(self)
    }
}

impl From<tokio_postgres::Error> for ServerMessage {
    fn from(e: tokio_postgres::Error) -> ServerMessage {
        describe_pg_error(&e)
    }
}

#[cfg(test)]
mod tests {
    use super::copy_column;

    #[test]
    fn a_copy_error_s_context_names_its_column() {
        assert_eq!(copy_column("COPY items, line 2, column flag: \"7\""), Some("flag"));
        assert_eq!(copy_column("COPY items, line 1, column at: null input\nSQL statement"), Some("at"));
        assert_eq!(copy_column("COPY items, line 3"), None);
        assert_eq!(copy_column("PL/pgSQL function f() line 3"), None);
    }
}
