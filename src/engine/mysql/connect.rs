//! Connections to MySQL and MariaDB through `mysql_async`, over TLS when the endpoint asks for
//! it.
//!
//! mysql_async builds its own rustls configuration from [`SslOpts`]; it is given the same CA,
//! client certificate and verification as every other connection Ferry makes. One difference
//! needs work here: its "skip the name check" switch does not work with this rustls version, so
//! `verify-ca` first looks at the server's certificate with our own verifier (chain checked
//! against the CA, names read) and then has mysql_async verify the chain for a name the
//! certificate carries.

use std::borrow::Cow;
use std::collections::HashMap;
use std::sync::{Mutex, OnceLock};
use std::time::Duration;

use mysql_async::prelude::Queryable;
use mysql_async::{ClientIdentity, Conn, OptsBuilder, SslOpts};
use rustls::pki_types::ServerName;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

use crate::api::{Endpoint, TlsConfig, TlsMode};
use crate::engine::Login;
use crate::engine::error::{Describe, EngineError, OUT_OF_SPACE, Result, Side};
use crate::engine::redact::{self, ServerMessage};
use crate::engine::tls::{self, TlsFailure};

/// The client-side authentication plugins the client speaks.
pub const SUPPORTED_PLUGINS: &str =
    "mysql_native_password, caching_sha2_password, client_ed25519 (MariaDB ed25519), parsec and mysql_clear_password";

/// `CLIENT_SSL` in the capability flags of the server greeting.
const CLIENT_SSL: u32 = 0x0800;

/// The SQL mode of every session, whatever the server's global one: row filters are rendered
/// for it (no ANSI_QUOTES: `"..."` is a string; no NO_BACKSLASH_ESCAPES: `\\` escapes in string
/// literals; no PIPES_AS_CONCAT or HIGH_NOT_PRECEDENCE: `||` and `NOT` as the filter parser reads
/// them; no PAD_CHAR_TO_FULL_LENGTH: CHAR values read as the binary log carries them). Strict,
/// with the zero-date checks off, so that DDL copies what the source accepted; the writing
/// sessions set their own mode on top (`target::prepare_session`). Valid on MySQL 5.7, 8 and
/// MariaDB alike.
pub const SESSION_SQL_MODE: &str = "STRICT_TRANS_TABLES,ERROR_FOR_DIVISION_BY_ZERO,NO_ENGINE_SUBSTITUTION";

/// Opens a session to `endpoint` over TCP, in [`SESSION_SQL_MODE`].
pub async fn connect(endpoint: &Endpoint, login: Login<'_>, side: Side) -> Result<Conn> {
    crate::engine::net::connecting(side, open(endpoint, login, side)).await
}

async fn open(endpoint: &Endpoint, login: Login<'_>, side: Side) -> Result<Conn> {
    let mut opts = OptsBuilder::default()
        .ip_or_hostname(endpoint.host.clone())
        .tcp_port(endpoint.port)
        .user(endpoint.user.clone())
        .pass(login.password.map(str::to_owned))
        .db_name(endpoint.database.clone())
        // Never switch to a local unix socket: the endpoint is what the user named.
        .prefer_socket(false)
        // An UPDATE that matches a row counts it even when nothing changes (conflict detection).
        .client_found_rows(true)
        // One statement per query: text built from a source catalog or a binary log statement
        // can never run as a second statement (no session of Ferry's needs more than one).
        .multi_statements(false)
        // The applier prepares a few statements per table and batch size.
        .stmt_cache_size(512)
        // Probes from a third of tuning.networkTimeoutSeconds on (the client sets only the
        // idle time; the watchdogs cover the rest).
        .tcp_keepalive(Some(crate::engine::net::keepalive_idle()));
    if let Some(ssl) = ssl_opts(endpoint, login, side).await? {
        opts = opts.ssl_opts(ssl);
    }
    let mut conn = login_with_retry(opts).await.map_err(|e| connect_error(endpoint, login, side, &e))?;
    conn.query_drop("SET NAMES utf8mb4").await.map_err(|e| EngineError::query(side, "setting up the session", e))?;
    conn.query_drop(format!("SET SESSION sql_mode = '{SESSION_SQL_MODE}'"))
        .await
        .map_err(|e| EngineError::query(side, "setting up the session", e))?;
    Ok(conn)
}

/// How many times a refused login is tried before the refusal is reported.
const LOGIN_ATTEMPTS: usize = 3;

/// `ER_ACCESS_DENIED_ERROR`.
const ACCESS_DENIED: u16 = 1045;

/// Logs in, trying again at once when the server refuses the login.
///
/// The client drops a trailing zero byte from the nonce of an authentication switch, so a
/// MariaDB `ed25519` login signs the wrong message whenever the server's random 32-byte nonce
/// ends in zero: one login in 256 is refused though the password is right. Each attempt gets a
/// fresh nonce, so three attempts make that one in 16 million; a wrong password is refused three
/// times and reported as before.
async fn login_with_retry(opts: OptsBuilder) -> std::result::Result<Conn, mysql_async::Error> {
    let mut attempt = 1;
    loop {
        match Conn::new(opts.clone()).await {
            Err(mysql_async::Error::Server(e)) if e.code == ACCESS_DENIED && attempt < LOGIN_ATTEMPTS => {
                attempt += 1;
            }
            other => return other,
        }
    }
}

/// The largest piece of a statement or of `LOAD DATA` input to send the server in one packet:
/// well below its `max_allowed_packet` (16 MiB by default on MariaDB, 64 MiB on MySQL 8, as
/// low as 1 KiB by configuration), and at most 4 MiB.
pub async fn packet_budget(conn: &mut Conn) -> usize {
    let max: Option<u64> = conn.query_first("SELECT @@max_allowed_packet").await.ok().flatten();
    budget_for(max.unwrap_or(4 << 20))
}

fn budget_for(max_allowed_packet: u64) -> usize {
    // Leave room for the statement text and the packet headers.
    let half = usize::try_from(max_allowed_packet / 2).unwrap_or(usize::MAX);
    half.clamp(512, 4 << 20)
}

/// A connection error: TLS failures told apart; a refused login over TLS without a client
/// certificate also says that the user may require one.
fn connect_error(endpoint: &Endpoint, login: Login<'_>, side: Side, e: &mysql_async::Error) -> EngineError {
    let failure = TlsFailure::find(e).or_else(|| {
        matches!(e, mysql_async::Error::Driver(mysql_async::DriverError::NoClientSslFlagFromServer))
            .then_some(TlsFailure::NotOffered)
    });
    if let Some(failure) = failure {
        return EngineError::Tls { side, host: endpoint.host.clone(), port: endpoint.port, failure };
    }
    let unsupported = match e {
        mysql_async::Error::Driver(mysql_async::DriverError::UnknownAuthPlugin { name }) => Some(name.as_str()),
        // Refused on purpose: the pre-4.1 hash is broken.
        mysql_async::Error::Driver(mysql_async::DriverError::MysqlOldPasswordDisabled) => Some("mysql_old_password"),
        _ => None,
    };
    if let Some(name) = unsupported {
        return EngineError::Connect {
            side,
            message: format!(
                "the server asks for the authentication plugin {name:?}, which Ferry's client does not support \
                 (it logs in with {SUPPORTED_PLUGINS})"
            ),
        };
    }
    let mut message = e.to_string();
    if let mysql_async::Error::Server(s) = e
        && s.code == ACCESS_DENIED
        && TlsConfig::mode_of(endpoint.tls.as_ref()) != TlsMode::Disable
        && login.tls.client_cert_pem.is_none()
    {
        message.push_str(&format!(
            " (a user created with REQUIRE X509 or REQUIRE SUBJECT also needs a client certificate: \
             spec.{side}.tls.clientCertSecretRef)"
        ));
    }
    EngineError::Connect { side, message }
}

/// mysql_async's TLS settings for the endpoint's mode, CA and client certificate.
async fn ssl_opts(endpoint: &Endpoint, login: Login<'_>, side: Side) -> Result<Option<SslOpts>> {
    let mode = TlsConfig::mode_of(endpoint.tls.as_ref());
    if mode == TlsMode::Disable {
        return Ok(None);
    }
    // Parse here, so bad material is reported as such rather than as a handshake failure.
    let cas = login.tls.ca_certificates(side)?;
    let identity = login.tls.client_identity(side)?;
    let mut ssl = SslOpts::default();
    if !cas.is_empty()
        && let Some(pem) = &login.tls.ca_pem
    {
        ssl = ssl.with_root_certs(vec![pem.clone().into()]).with_disable_built_in_roots(true);
    }
    if identity.is_some()
        && let (Some(cert), Some(key)) = (&login.tls.client_cert_pem, &login.tls.client_key_pem)
    {
        ssl = ssl.with_client_identity(Some(ClientIdentity::new(cert.clone().into(), key.clone().into())));
    }
    match mode {
        TlsMode::Require => ssl = ssl.with_danger_accept_invalid_certs(true),
        TlsMode::VerifyCa => {
            let name = certificate_name(endpoint, login, side).await?;
            ssl = ssl.with_danger_tls_hostname_override(Some(Cow::Owned(name)));
        }
        TlsMode::VerifyFull | TlsMode::Disable => {}
    }
    Ok(Some(ssl))
}

/// A name the server's certificate carries, its chain checked against the CA: what `verify-ca`
/// has mysql_async verify. Remembered per endpoint for the life of the process.
async fn certificate_name(endpoint: &Endpoint, login: Login<'_>, side: Side) -> Result<String> {
    static NAMES: OnceLock<Mutex<HashMap<(String, u16), String>>> = OnceLock::new();
    let key = (endpoint.host.clone(), endpoint.port);
    let names = NAMES.get_or_init(Default::default);
    if let Some(name) = names.lock().ok().and_then(|n| n.get(&key).cloned()) {
        return Ok(name);
    }
    let tls_error = |failure| EngineError::Tls { side, host: endpoint.host.clone(), port: endpoint.port, failure };
    let io = |what: &str, e: std::io::Error| EngineError::Connect {
        side,
        message: format!("{}:{}: {what}: {e}", endpoint.host, endpoint.port),
    };
    let mut stream =
        tokio::time::timeout(Duration::from_secs(10), TcpStream::connect((endpoint.host.as_str(), endpoint.port)))
            .await
            .map_err(|_| io("connecting", std::io::ErrorKind::TimedOut.into()))?
            .map_err(|e| io("connecting", e))?;
    let greeting = read_packet(&mut stream).await.map_err(|e| io("reading the server greeting", e))?;
    if !offers_tls(&greeting) {
        return Err(tls_error(TlsFailure::NotOffered));
    }
    // SSLRequest: capabilities (protocol 4.1, secure connection, SSL), max packet, utf8mb4,
    // 23 bytes of filler; sequence 1.
    let mut request = vec![32, 0, 0, 1];
    request.extend_from_slice(&(0x0200u32 | 0x8000 | CLIENT_SSL).to_le_bytes());
    request.extend_from_slice(&(16u32 << 20).to_le_bytes());
    request.push(45);
    request.extend_from_slice(&[0; 23]);
    stream.write_all(&request).await.map_err(|e| io("asking for TLS", e))?;
    let presented = tls::probe_names(stream, login.tls, &endpoint.host, endpoint.port, side).await?;
    let name = match presented {
        None => endpoint.host.clone(),
        Some(names) => match tls::checkable_name(&names) {
            Some(ServerName::DnsName(d)) => d.as_ref().to_owned(),
            Some(ServerName::IpAddress(ip)) => std::net::IpAddr::from(ip).to_string(),
            _ => {
                return Err(tls_error(TlsFailure::Handshake(
                    "verify-ca: the certificate is signed by the CA but carries no DNS or IP subject \
                     alternative name, which this client needs to check it; use require, or reissue the \
                     certificate with one"
                        .into(),
                )));
            }
        },
    };
    if let Ok(mut n) = names.lock() {
        n.insert(key, name.clone());
    }
    Ok(name)
}

/// One MySQL protocol packet's payload.
async fn read_packet(stream: &mut TcpStream) -> std::io::Result<Vec<u8>> {
    let mut header = [0u8; 4];
    stream.read_exact(&mut header).await?;
    let len = usize::from(header[0]) | usize::from(header[1]) << 8 | usize::from(header[2]) << 16;
    let mut payload = vec![0u8; len];
    stream.read_exact(&mut payload).await?;
    Ok(payload)
}

/// Whether a protocol-10 greeting advertises `CLIENT_SSL`.
fn offers_tls(greeting: &[u8]) -> bool {
    // protocol version, server version (NUL-terminated), thread id (4), scramble part 1 (8),
    // filler (1), capability flags (lower 2 bytes).
    if greeting.first() != Some(&10) {
        return false;
    }
    let Some(nul) = greeting[1..].iter().position(|b| *b == 0) else { return false };
    let at = 1 + nul + 1 + 4 + 8 + 1;
    greeting.get(at..at + 2).is_some_and(|c| u32::from(u16::from_le_bytes([c[0], c[1]])) & CLIENT_SSL != 0)
}

/// Server errors of a full disk: the table is full (InnoDB could not extend its file), disk full.
const DISK_FULL: [u16; 2] = [1114, 1021];

impl Describe for mysql_async::Error {
    /// The client's message, without the row values a server error quotes
    /// ([`redact::mysql`]); for a full disk, with what that means for the job. (The server
    /// says only "The table 'orders' is full"; its log has the operating system's error.)
    fn describe(&self) -> ServerMessage {
        match self {
            mysql_async::Error::Server(s) => {
                let message = redact::mysql(s.code, &s.state, &s.message);
                if DISK_FULL.contains(&s.code) || s.message.contains("No space left on device") {
                    message.suffixed(&format!(" ({OUT_OF_SPACE})"))
                } else {
                    message
                }
            }
            // Anything a library below wrapped: it may quote what it could not convert.
            mysql_async::Error::Other(_) => {
                let full = self.to_string();
                ServerMessage::new(redact::mask_quoted(&full), full)
            }
            _ => ServerMessage::plain(self.to_string()),
        }
    }
}

impl From<mysql_async::Error> for ServerMessage {
    fn from(e: mysql_async::Error) -> ServerMessage {
        e.describe()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_full_disk_says_what_to_do_and_other_errors_read_as_the_server_wrote_them() {
        let server = |code: u16, message: &str| {
            mysql_async::Error::Server(mysql_async::ServerError {
                code,
                message: message.to_owned(),
                state: "HY000".to_owned(),
            })
        };
        let full = server(1114, "The table 'orders' is full").describe().to_string();
        assert!(full.contains("The table 'orders' is full") && full.contains("out of disk space"), "{full}");
        let errno = server(3, "Error writing file './shop/t.ibd' (Errcode: 28 \"No space left on device\")")
            .describe()
            .to_string();
        assert!(errno.contains("out of disk space"), "{errno}");
        let other = server(1146, "Table 'shop.orders' doesn't exist").describe();
        assert_eq!(
            other.to_string(),
            "Server error: `ERROR 1146 (HY000): Table 'shop.orders' doesn't exist' [ER_NO_SUCH_TABLE]"
        );
    }

    #[test]
    fn the_packet_budget_stays_below_the_server_limit() {
        assert_eq!(budget_for(16 << 20), 4 << 20);
        assert_eq!(budget_for(1 << 20), 512 << 10);
        assert_eq!(budget_for(1024), 512);
    }

    #[test]
    fn the_greeting_tells_whether_tls_is_offered() {
        let mut g = vec![10];
        g.extend_from_slice(b"10.11.6-MariaDB\0");
        g.extend_from_slice(&[1, 0, 0, 0]);
        g.extend_from_slice(&[0; 8]);
        g.push(0);
        let with = [g.clone(), (0xffffu16).to_le_bytes().to_vec()].concat();
        let without = [g, (!0x0800u16).to_le_bytes().to_vec()].concat();
        assert!(offers_tls(&with));
        assert!(!offers_tls(&without));
        assert!(!offers_tls(&[0xff, 1, 2]));
    }
}
