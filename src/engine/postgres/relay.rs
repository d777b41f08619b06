//! TLS for the PostgreSQL replication connection.
//!
//! The replication client (`pg_walstream`) has a TLS mode of its own, but it cannot present a
//! client certificate, checks names differently from our SQL sessions and reads CAs only from
//! files. So the replication connection takes the same TLS path as every other connection:
//! the client connects in plain text to a relay on this machine's loopback interface, and the
//! relay opens the connection to the server with our rustls configuration (the PostgreSQL
//! `SSLRequest`, then the handshake) and forwards the bytes.
//!
//! Only our own client may use the relay: it must open with a startup message whose `database`
//! starts with a random token that exists only in this process's memory (the one parameter the
//! replication client passes through untouched that no authentication method hashes); the
//! relay strips the token, and anything without it is dropped before a byte reaches the server. The relay listens as long as its
//! [`Relay`] lives (the client may reconnect) and stops when it is dropped.

use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use rustls::ClientConfig;
use rustls::pki_types::ServerName;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio::task::JoinHandle;

use crate::api::{Endpoint, TlsConfig};
use crate::engine::Login;
use crate::engine::error::{EngineError, Result, Side};
use crate::engine::tls::{self, TlsFailure};

/// The protocol code of PostgreSQL's `SSLRequest`.
const SSL_REQUEST: u32 = 80_877_103;
/// The protocol code of `GSSENCRequest`.
const GSSENC_REQUEST: u32 = 80_877_104;
/// Protocol 3.0.
const PROTOCOL_3: u32 = 196_608;
/// The longest startup message accepted (libpq's limit is 10,000 bytes).
const MAX_STARTUP: usize = 10_000;
/// Starts the token the client puts before the database name.
const TOKEN_PREFIX: &str = "ferry-relay-";
/// What the relay names the session to the server.
const APPLICATION: &str = "ferry";

/// A running relay. Dropping it stops it and every connection it carries.
pub struct Relay {
    addr: SocketAddr,
    token: String,
    failure: Arc<Mutex<Option<EngineError>>>,
    task: JoinHandle<()>,
}

impl Relay {
    /// Starts a relay to `endpoint` if its TLS mode is not `disable`.
    pub async fn start(endpoint: &Endpoint, login: Login<'_>) -> Result<Option<Relay>> {
        let side = Side::Source;
        let Some(config) = tls::client_config(TlsConfig::mode_of(endpoint.tls.as_ref()), login.tls, side)? else {
            return Ok(None);
        };
        let name = tls::server_name(&endpoint.host, side)?;
        let listener = TcpListener::bind(("127.0.0.1", 0))
            .await
            .map_err(|e| EngineError::Connect { side, message: format!("starting the replication TLS relay: {e}") })?;
        let addr = listener
            .local_addr()
            .map_err(|e| EngineError::Connect { side, message: format!("starting the replication TLS relay: {e}") })?;
        let token = random_token()?;
        let failure = Arc::new(Mutex::new(None));
        let server = Server {
            host: endpoint.host.clone(),
            port: endpoint.port,
            config,
            name,
            expect: format!("{TOKEN_PREFIX}{token}/"),
            failure: Arc::clone(&failure),
        };
        let task = tokio::spawn(server.accept_loop(listener));
        Ok(Some(Relay { addr, token, failure, task }))
    }

    /// The address the replication client connects to instead of the server.
    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    /// The database name the replication client must send for `database`: the token, then
    /// the name.
    pub fn database(&self, database: &str) -> String {
        format!("{TOKEN_PREFIX}{}/{database}", self.token)
    }

    /// The last failure reaching the server, if any: why the client's connection was closed.
    pub fn failure(&self) -> Option<EngineError> {
        self.failure.lock().ok().and_then(|mut f| f.take())
    }
}

impl Drop for Relay {
    fn drop(&mut self) {
        self.task.abort();
    }
}

fn random_token() -> Result<String> {
    let mut bytes = [0u8; 16];
    rustls::crypto::aws_lc_rs::default_provider().secure_random.fill(&mut bytes).map_err(|_| EngineError::Connect {
        side: Side::Source,
        message: "no random numbers for the replication relay".into(),
    })?;
    Ok(bytes.iter().map(|b| format!("{b:02x}")).collect())
}

struct Server {
    host: String,
    port: u16,
    config: Arc<ClientConfig>,
    name: ServerName<'static>,
    expect: String,
    failure: Arc<Mutex<Option<EngineError>>>,
}

impl Server {
    async fn accept_loop(self, listener: TcpListener) {
        let server = Arc::new(self);
        let mut carried = Vec::new();
        loop {
            let local = match listener.accept().await {
                Ok((local, _)) => local,
                Err(e) => {
                    // Out of file descriptors and the like: wait rather than spin.
                    tracing::debug!(error = %e, "replication relay could not accept");
                    tokio::time::sleep(Duration::from_millis(100)).await;
                    continue;
                }
            };
            let server = Arc::clone(&server);
            // Connections end with the relay: aborting this loop drops their handles.
            carried.retain(|h: &AbortOnDrop| !h.0.is_finished());
            carried.push(AbortOnDrop(tokio::spawn(async move {
                if let Err(e) = server.carry(local).await {
                    tracing::debug!(error = %e, "replication relay connection ended");
                    if let Ok(mut slot) = server.failure.lock() {
                        *slot = Some(e);
                    }
                }
            })));
        }
    }

    /// Checks the client's startup message, opens TLS to the server and forwards both ways.
    async fn carry(&self, mut local: TcpStream) -> Result<()> {
        let io = |what: &str, e: std::io::Error| EngineError::Connect {
            side: Side::Source,
            message: format!("replication TLS relay: {what}: {e}"),
        };
        let startup = tokio::time::timeout(Duration::from_secs(10), read_startup(&mut local))
            .await
            .map_err(|_| io("reading the client's startup message", std::io::ErrorKind::TimedOut.into()))?
            .map_err(|e| io("reading the client's startup message", e))?;
        let Some(startup) = rewrite_startup(&startup, &self.expect) else {
            // Not our client: drop it without a word to the server.
            return Ok(());
        };
        let connect = TcpStream::connect((self.host.as_str(), self.port));
        let mut remote = tokio::time::timeout(crate::engine::net::timeout(), connect)
            .await
            .map_err(|_| io("connecting to the server", std::io::ErrorKind::TimedOut.into()))?
            .map_err(|e| io("connecting to the server", e))?;
        let _ = remote.set_nodelay(true);
        crate::engine::net::tune_socket(&remote);
        let mut request = Vec::with_capacity(8);
        request.extend_from_slice(&8u32.to_be_bytes());
        request.extend_from_slice(&SSL_REQUEST.to_be_bytes());
        remote.write_all(&request).await.map_err(|e| io("asking the server for TLS", e))?;
        let answer = remote.read_u8().await.map_err(|e| io("reading the server's TLS answer", e))?;
        if answer != b'S' {
            return Err(self.tls_error(TlsFailure::NotOffered));
        }
        let mut tls = tokio_rustls::TlsConnector::from(Arc::clone(&self.config))
            .connect(self.name.clone(), remote)
            .await
            .map_err(|e| match TlsFailure::find(&e) {
                Some(f) => self.tls_error(f),
                None => io("TLS handshake", e),
            })?;
        tls.write_all(&startup).await.map_err(|e| self.handshake_or(e, "sending the startup message"))?;
        tls.flush().await.map_err(|e| self.handshake_or(e, "sending the startup message"))?;
        let _ = local.set_nodelay(true);
        tokio::io::copy_bidirectional(&mut local, &mut tls)
            .await
            .map(drop)
            .map_err(|e| self.handshake_or(e, "forwarding"))
    }

    fn tls_error(&self, failure: TlsFailure) -> EngineError {
        EngineError::Tls { side: Side::Source, host: self.host.clone(), port: self.port, failure }
    }

    /// A server that refuses the client certificate says so at the first read or write after
    /// the handshake (TLS 1.3): classify that too.
    fn handshake_or(&self, e: std::io::Error, what: &str) -> EngineError {
        match TlsFailure::find(&e) {
            Some(f) => self.tls_error(f),
            None => EngineError::Connect { side: Side::Source, message: format!("replication TLS relay: {what}: {e}") },
        }
    }
}

struct AbortOnDrop(JoinHandle<()>);

impl Drop for AbortOnDrop {
    fn drop(&mut self) {
        self.0.abort();
    }
}

/// Reads the client's startup message, answering "no" to TLS and GSS encryption requests
/// (the client side of the relay is plain text by design).
async fn read_startup(local: &mut TcpStream) -> std::io::Result<Vec<u8>> {
    loop {
        let len = local.read_u32().await? as usize;
        if !(8..=MAX_STARTUP).contains(&len) {
            return Err(std::io::Error::new(std::io::ErrorKind::InvalidData, "bad startup message length"));
        }
        let mut body = vec![0u8; len - 4];
        local.read_exact(&mut body).await?;
        let code = u32::from_be_bytes([body[0], body[1], body[2], body[3]]);
        if code == SSL_REQUEST || code == GSSENC_REQUEST {
            local.write_all(b"N").await?;
            continue;
        }
        return Ok(body);
    }
}

/// The startup message to send to the server (length included), if `body` is protocol 3.0
/// with a `database` that starts with `expect`: the token is stripped, and the session is
/// named `ferry`.
fn rewrite_startup(body: &[u8], expect: &str) -> Option<Vec<u8>> {
    let code = u32::from_be_bytes(body.get(..4)?.try_into().ok()?);
    if code != PROTOCOL_3 {
        return None;
    }
    let mut fields: Vec<&[u8]> = body[4..].split(|b| *b == 0).collect();
    // The list ends with an empty name, then the split leaves one more empty piece.
    while fields.last().is_some_and(|f| f.is_empty()) {
        fields.pop();
    }
    if !fields.len().is_multiple_of(2) {
        return None;
    }
    let mut out = Vec::with_capacity(body.len() + 16);
    out.extend_from_slice(&[0; 4]);
    out.extend_from_slice(&PROTOCOL_3.to_be_bytes());
    let mut seen = false;
    for pair in fields.chunks(2) {
        let (name, mut value) = (pair[0], pair[1]);
        match name {
            b"database" => {
                if seen {
                    return None;
                }
                value = value.strip_prefix(expect.as_bytes())?;
                seen = true;
            }
            // Named by the relay below.
            b"application_name" => continue,
            _ => {}
        }
        out.extend_from_slice(name);
        out.push(0);
        out.extend_from_slice(value);
        out.push(0);
    }
    if !seen {
        return None;
    }
    out.extend_from_slice(b"application_name\0");
    out.extend_from_slice(APPLICATION.as_bytes());
    out.extend_from_slice(b"\0\0");
    let len = u32::try_from(out.len()).ok()?;
    out[..4].copy_from_slice(&len.to_be_bytes());
    Some(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn startup(pairs: &[(&str, &str)]) -> Vec<u8> {
        let mut body = PROTOCOL_3.to_be_bytes().to_vec();
        for (k, v) in pairs {
            body.extend_from_slice(k.as_bytes());
            body.push(0);
            body.extend_from_slice(v.as_bytes());
            body.push(0);
        }
        body.push(0);
        body
    }

    #[test]
    fn only_a_startup_with_the_token_passes_and_it_goes_on_without_it() {
        let ok = startup(&[("user", "u"), ("database", "ferry-relay-abc/shop"), ("replication", "database")]);
        let out = rewrite_startup(&ok, "ferry-relay-abc/").unwrap();
        assert_eq!(u32::from_be_bytes(out[..4].try_into().unwrap()) as usize, out.len());
        let expected =
            startup(&[("user", "u"), ("database", "shop"), ("replication", "database"), ("application_name", "ferry")]);
        assert_eq!(&out[4..], &expected[..]);
        let wrong = startup(&[("user", "u"), ("database", "ferry-relay-xyz/shop")]);
        assert!(rewrite_startup(&wrong, "ferry-relay-abc/").is_none());
        assert!(rewrite_startup(&startup(&[("user", "u")]), "ferry-relay-abc/").is_none());
        let twice = startup(&[("database", "ferry-relay-abc/a"), ("database", "ferry-relay-abc/b")]);
        assert!(rewrite_startup(&twice, "ferry-relay-abc/").is_none());
        let mut cancel = 80_877_102u32.to_be_bytes().to_vec();
        cancel.extend_from_slice(&[0; 8]);
        assert!(rewrite_startup(&cancel, "ferry-relay-abc/").is_none());
    }
}
