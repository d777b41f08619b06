//! TLS to databases: one rustls client configuration per endpoint, built from the job's TLS mode,
//! its CA bundle and its optional client certificate, and the failures a handshake can end in,
//! told apart with their reason and fix.
//!
//! Every connection Ferry makes to a database goes through this module's configuration: the
//! PostgreSQL SQL sessions (tokio-postgres), the PostgreSQL replication stream (through
//! [`crate::engine::postgres::relay`]), and the MySQL/MariaDB sessions and binlog stream
//! (mysql_async, given the same CA, certificate and verification).

use std::sync::Arc;

use rustls::client::WebPkiServerVerifier;
use rustls::client::danger::{HandshakeSignatureValid, ServerCertVerified, ServerCertVerifier};
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer, ServerName, UnixTime};
use rustls::{CertificateError, ClientConfig, DigitallySignedStruct, RootCertStore, SignatureScheme};

use crate::api::{PrecheckItem, PrecheckResult, TlsMode};
use crate::engine::error::{EngineError, Result, Side};

/// The certificate material of one endpoint, read from the Secrets and ConfigMaps its
/// `tls` settings name. PEM bytes, as stored.
#[derive(Clone, Default, PartialEq, Eq)]
pub struct TlsMaterial {
    /// CA certificate(s) that sign the server certificate. None: the public roots.
    pub ca_pem: Option<Vec<u8>>,
    /// Client certificate chain, for mutual TLS.
    pub client_cert_pem: Option<Vec<u8>>,
    /// The client certificate's private key.
    pub client_key_pem: Option<Vec<u8>>,
}

impl std::fmt::Debug for TlsMaterial {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        // Certificates are public; the key is never printed.
        f.debug_struct("TlsMaterial")
            .field("ca_pem", &self.ca_pem.as_ref().map(Vec::len))
            .field("client_cert_pem", &self.client_cert_pem.as_ref().map(Vec::len))
            .field("client_key_pem", &self.client_key_pem.as_ref().map(|_| "<redacted>"))
            .finish()
    }
}

impl TlsMaterial {
    /// The CA certificates, parsed.
    pub fn ca_certificates(&self, side: Side) -> Result<Vec<CertificateDer<'static>>> {
        let Some(pem) = &self.ca_pem else { return Ok(Vec::new()) };
        let certs = CertificateDer::pem_slice_iter(pem)
            .collect::<std::result::Result<Vec<_>, _>>()
            .map_err(|e| bad_material(side, "the CA bundle", e))?;
        if certs.is_empty() {
            return Err(bad_material(side, "the CA bundle", "no PEM CERTIFICATE block"));
        }
        Ok(certs)
    }

    /// The client certificate chain and key, parsed, when both are given.
    pub fn client_identity(
        &self,
        side: Side,
    ) -> Result<Option<(Vec<CertificateDer<'static>>, PrivateKeyDer<'static>)>> {
        let (cert, key) = match (&self.client_cert_pem, &self.client_key_pem) {
            (Some(c), Some(k)) => (c, k),
            (None, None) => return Ok(None),
            _ => return Err(bad_material(side, "the client certificate", "the certificate and the key go together")),
        };
        let chain = CertificateDer::pem_slice_iter(cert)
            .collect::<std::result::Result<Vec<_>, _>>()
            .map_err(|e| bad_material(side, "the client certificate", e))?;
        if chain.is_empty() {
            return Err(bad_material(side, "the client certificate", "no PEM CERTIFICATE block"));
        }
        // The parse error could quote the key: say only that it is not one.
        let key = PrivateKeyDer::from_pem_slice(key)
            .map_err(|_| bad_material(side, "the client key", "not a PEM private key (PKCS#8, PKCS#1 or SEC1)"))?;
        Ok(Some((chain, key)))
    }
}

fn bad_material(side: Side, what: &str, e: impl std::fmt::Display) -> EngineError {
    EngineError::Connect { side, message: format!("spec.{side}.tls: {what} cannot be read: {e}") }
}

/// The rustls client configuration for an endpoint: `mode`'s verification, the given CA (or
/// the public roots), the client certificate when given. `None` for `disable`.
pub fn client_config(mode: TlsMode, material: &TlsMaterial, side: Side) -> Result<Option<Arc<ClientConfig>>> {
    if mode == TlsMode::Disable {
        return Ok(None);
    }
    let provider = Arc::new(rustls::crypto::aws_lc_rs::default_provider());
    let webpki = WebPkiServerVerifier::builder_with_provider(Arc::new(roots(material, side)?), Arc::clone(&provider))
        .build()
        .map_err(|e| bad_material(side, "the CA bundle", e))?;
    let verifier: Arc<dyn ServerCertVerifier> = match mode {
        TlsMode::VerifyFull => webpki,
        TlsMode::VerifyCa => Arc::new(IgnoreName { inner: webpki, seen: None }),
        TlsMode::Require | TlsMode::Disable => Arc::new(Unverified(provider.clone())),
    };
    let builder = ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .map_err(|e| bad_material(side, "the TLS versions", e))?
        .dangerous()
        .with_custom_certificate_verifier(verifier);
    let config = match material.client_identity(side)? {
        Some((chain, key)) => {
            builder.with_client_auth_cert(chain, key).map_err(|e| bad_material(side, "the client certificate", e))?
        }
        None => builder.with_no_client_auth(),
    };
    Ok(Some(Arc::new(config)))
}

/// Completes a TLS handshake on `stream` (already asked for TLS in the server's protocol) with
/// the CA's chain check, and reports the names of the server certificate when they do not
/// include `host`: `None` when the certificate is valid for `host`.
pub async fn probe_names<S>(
    stream: S,
    material: &TlsMaterial,
    host: &str,
    port: u16,
    side: Side,
) -> Result<Option<Vec<String>>>
where
    S: tokio::io::AsyncRead + tokio::io::AsyncWrite + Unpin,
{
    let Some(full) = client_config(TlsMode::VerifyFull, material, side)? else { return Ok(None) };
    let seen = Arc::new(std::sync::Mutex::new(None));
    let mut config = (*full).clone();
    let inner = WebPkiServerVerifier::builder_with_provider(
        Arc::new(roots(material, side)?),
        Arc::new(rustls::crypto::aws_lc_rs::default_provider()),
    )
    .build()
    .map_err(|e| bad_material(side, "the CA bundle", e))?;
    config.dangerous().set_certificate_verifier(Arc::new(IgnoreName { inner, seen: Some(Arc::clone(&seen)) }));
    let tls_error = |failure| EngineError::Tls { side, host: host.to_owned(), port, failure };
    tokio_rustls::TlsConnector::from(Arc::new(config)).connect(server_name(host, side)?, stream).await.map_err(
        |e| match TlsFailure::find(&e) {
            Some(f) => tls_error(f),
            None => EngineError::Connect { side, message: format!("TLS handshake with {host}: {e}") },
        },
    )?;
    Ok(seen.lock().ok().and_then(|mut s| s.take()))
}

fn roots(material: &TlsMaterial, side: Side) -> Result<RootCertStore> {
    let mut roots = RootCertStore::empty();
    let given = material.ca_certificates(side)?;
    if given.is_empty() {
        roots.extend(webpki_roots::TLS_SERVER_ROOTS.iter().cloned());
    } else {
        for cert in given {
            roots.add(cert).map_err(|e| bad_material(side, "the CA bundle", e))?;
        }
    }
    Ok(roots)
}

/// `verify-ca`: the chain must lead to a trusted CA; the names in the certificate are not
/// checked. With `seen`, the names of a certificate that does not name the host are recorded.
#[derive(Debug)]
struct IgnoreName {
    inner: Arc<WebPkiServerVerifier>,
    seen: Option<Arc<std::sync::Mutex<Option<Vec<String>>>>>,
}

impl ServerCertVerifier for IgnoreName {
    fn verify_server_cert(
        &self,
        end_entity: &CertificateDer<'_>,
        intermediates: &[CertificateDer<'_>],
        server_name: &ServerName<'_>,
        ocsp_response: &[u8],
        now: UnixTime,
    ) -> std::result::Result<ServerCertVerified, rustls::Error> {
        match self.inner.verify_server_cert(end_entity, intermediates, server_name, ocsp_response, now) {
            Err(rustls::Error::InvalidCertificate(
                e @ (CertificateError::NotValidForNameContext { .. } | CertificateError::NotValidForName),
            )) => {
                let names = match e {
                    CertificateError::NotValidForNameContext { presented, .. } => {
                        presented.iter().filter_map(|p| presented_name(p)).collect()
                    }
                    _ => Vec::new(),
                };
                if let Some(Ok(mut seen)) = self.seen.as_ref().map(|s| s.lock()) {
                    *seen = Some(names);
                }
                Ok(ServerCertVerified::assertion())
            }
            other => other,
        }
    }

    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> std::result::Result<HandshakeSignatureValid, rustls::Error> {
        self.inner.verify_tls12_signature(message, cert, dss)
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> std::result::Result<HandshakeSignatureValid, rustls::Error> {
        self.inner.verify_tls13_signature(message, cert, dss)
    }

    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        self.inner.supported_verify_schemes()
    }
}

/// The name the server certificate must carry: the host as written (an IP address or a DNS
/// name).
pub fn server_name(host: &str, side: Side) -> Result<ServerName<'static>> {
    let host = host.trim_start_matches('[').trim_end_matches(']');
    ServerName::try_from(host.to_owned()).map_err(|e| EngineError::Connect {
        side,
        message: format!("spec.{side}.host {host:?} is not a DNS name or IP address TLS can check: {e}"),
    })
}

/// `require`: any certificate is accepted; the handshake's signatures are still checked, so
/// the connection is encrypted to whoever holds the certificate's key.
#[derive(Debug)]
struct Unverified(Arc<rustls::crypto::CryptoProvider>);

impl ServerCertVerifier for Unverified {
    fn verify_server_cert(
        &self,
        _end_entity: &CertificateDer<'_>,
        _intermediates: &[CertificateDer<'_>],
        _server_name: &ServerName<'_>,
        _ocsp_response: &[u8],
        _now: UnixTime,
    ) -> std::result::Result<ServerCertVerified, rustls::Error> {
        Ok(ServerCertVerified::assertion())
    }

    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> std::result::Result<HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls12_signature(message, cert, dss, &self.0.signature_verification_algorithms)
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> std::result::Result<HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls13_signature(message, cert, dss, &self.0.signature_verification_algorithms)
    }

    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        self.0.signature_verification_algorithms.supported_schemes()
    }
}

/// Why a TLS connection failed, in the terms a user can act on.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum TlsFailure {
    /// The server answered the TLS request with "no": TLS is off there.
    NotOffered,
    /// The server certificate does not lead to a trusted CA (wrong or missing CA bundle).
    UntrustedCertificate(String),
    /// The certificate is signed by a trusted CA but does not name the host.
    NameMismatch {
        /// The host Ferry connected to.
        expected: String,
        /// The names the certificate carries.
        presented: Vec<String>,
    },
    /// The server refused the client certificate, or wanted one and got none.
    ClientCertificateRefused(String),
    /// Another handshake failure (protocol versions, ciphers, an expired certificate, …).
    Handshake(String),
}

impl TlsFailure {
    /// Finds the TLS failure in an error's chain, looking into I/O errors that wrap one.
    pub fn find(err: &(dyn std::error::Error + 'static)) -> Option<TlsFailure> {
        let mut next = Some(err);
        while let Some(e) = next {
            if let Some(r) = e.downcast_ref::<rustls::Error>() {
                return Some(TlsFailure::from_rustls(r));
            }
            // An io::Error's `source()` skips the error it wraps; look at it directly.
            if let Some(inner) = e.downcast_ref::<std::io::Error>().and_then(|io| io.get_ref())
                && let Some(found) = TlsFailure::find(inner)
            {
                return Some(found);
            }
            next = e.source();
        }
        None
    }

    /// Classifies a rustls error.
    pub fn from_rustls(e: &rustls::Error) -> TlsFailure {
        use rustls::AlertDescription as A;
        match e {
            rustls::Error::InvalidCertificate(
                CertificateError::NotValidForName | CertificateError::NotValidForNameContext { .. },
            ) => {
                let (expected, presented) = match e {
                    rustls::Error::InvalidCertificate(CertificateError::NotValidForNameContext {
                        expected,
                        presented,
                    }) => (server_name_text(expected), presented.iter().filter_map(|p| presented_name(p)).collect()),
                    _ => (String::new(), Vec::new()),
                };
                TlsFailure::NameMismatch { expected, presented }
            }
            rustls::Error::InvalidCertificate(
                CertificateError::UnknownIssuer | CertificateError::BadSignature | CertificateError::BadEncoding,
            ) => TlsFailure::UntrustedCertificate(e.to_string()),
            rustls::Error::AlertReceived(
                A::CertificateRequired
                | A::BadCertificate
                | A::UnknownCA
                | A::CertificateUnknown
                | A::UnsupportedCertificate
                | A::CertificateRevoked
                | A::CertificateExpired
                | A::AccessDenied,
            ) => TlsFailure::ClientCertificateRefused(e.to_string()),
            other => TlsFailure::Handshake(other.to_string()),
        }
    }

    /// One sentence on what happened, naming the host.
    pub fn reason(&self, host: &str, port: u16) -> String {
        match self {
            TlsFailure::NotOffered => format!("{host}:{port} does not offer TLS: the server has TLS turned off"),
            TlsFailure::UntrustedCertificate(e) => {
                format!("the certificate of {host}:{port} is not signed by a trusted CA ({e})")
            }
            TlsFailure::NameMismatch { presented, .. } if presented.is_empty() => format!(
                "the certificate of {host}:{port} is signed by the CA but names no host (no subject alternative name)"
            ),
            TlsFailure::NameMismatch { presented, .. } => format!(
                "the certificate of {host}:{port} is signed by the CA but is for {}, not {host}",
                presented.join(", ")
            ),
            TlsFailure::ClientCertificateRefused(e) => {
                format!("{host}:{port} refused the TLS client certificate, or wanted one and got none ({e})")
            }
            TlsFailure::Handshake(e) => format!("the TLS handshake with {host}:{port} failed: {e}"),
        }
    }

    /// What the user can do about it.
    pub fn fix(&self, side: Side) -> String {
        match self {
            TlsFailure::NotOffered => format!(
                "turn TLS on in the server (PostgreSQL: ssl = on; MySQL/MariaDB: ssl_cert and ssl_key), or set \
                 spec.{side}.tls.mode to disable if the network is trusted"
            ),
            TlsFailure::UntrustedCertificate(_) => format!(
                "put the CA that signed the server certificate in the Secret or ConfigMap spec.{side}.tls.caSecretRef \
                 (or caConfigMapRef) names; the cloud provider publishes it for managed databases"
            ),
            TlsFailure::NameMismatch { .. } => format!(
                "set spec.{side}.host to a name the certificate carries, reissue the certificate with this host as a \
                 subject alternative name, or set spec.{side}.tls.mode to verify-ca"
            ),
            TlsFailure::ClientCertificateRefused(_) => format!(
                "set spec.{side}.tls.clientCertSecretRef to a Secret with a client certificate the server's CA \
                 signed, for the user the job logs in as"
            ),
            TlsFailure::Handshake(_) => {
                format!("check the server's TLS settings and the certificates spec.{side}.tls names")
            }
        }
    }

    /// A stable short name, for tests and metrics.
    pub fn kind(&self) -> &'static str {
        match self {
            TlsFailure::NotOffered => "not-offered",
            TlsFailure::UntrustedCertificate(_) => "untrusted-certificate",
            TlsFailure::NameMismatch { .. } => "name-mismatch",
            TlsFailure::ClientCertificateRefused(_) => "client-certificate-refused",
            TlsFailure::Handshake(_) => "handshake",
        }
    }

    /// The precheck item `<side>.tls` for this failure, with the connection it happened on.
    pub fn item(&self, side: Side, connection: &str, host: &str, port: u16) -> PrecheckItem {
        PrecheckItem {
            item: format!("{side}.tls"),
            result: PrecheckResult::Failed,
            reason: Some(format!("{connection}: {}", self.reason(host, port))),
            fix: Some(self.fix(side)),
            skippable: false,
            skipped: false,
        }
    }
}

/// Whether a login error is the server saying the client certificate is missing or not the
/// user's (PostgreSQL refuses these at login, after the handshake).
pub fn refused_client_certificate(message: &str) -> bool {
    message.contains("requires a valid client certificate") || message.contains("certificate authentication failed")
}

fn server_name_text(name: &ServerName<'_>) -> String {
    match name {
        ServerName::DnsName(d) => d.as_ref().to_owned(),
        ServerName::IpAddress(ip) => std::net::IpAddr::from(*ip).to_string(),
        other => format!("{other:?}"),
    }
}

/// A presented name as rustls reports it (`DnsName("db.example")`, `IpAddress(10.0.0.1)`),
/// reduced to the name; other kinds of names (directory names, URIs) are not host names.
fn presented_name(p: &str) -> Option<String> {
    let inner = p.strip_prefix("DnsName(").or_else(|| p.strip_prefix("IpAddress("))?.strip_suffix(')')?;
    Some(inner.trim_matches('"').to_owned())
}

/// A name the certificate presents that TLS can check against, from a name-mismatch failure:
/// how `verify-ca` is done where the client verifies names itself.
pub fn checkable_name(presented: &[String]) -> Option<ServerName<'static>> {
    presented.iter().find_map(|p| ServerName::try_from(p.clone()).ok().filter(|_| !p.contains('*')))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn presented_names_are_reduced_to_the_name() {
        assert_eq!(presented_name("DnsName(\"db.example\")").as_deref(), Some("db.example"));
        assert_eq!(presented_name("IpAddress(10.0.0.1)").as_deref(), Some("10.0.0.1"));
        assert_eq!(presented_name("DirectoryName"), None);
        let names = ["*.example".to_owned(), "db.example".to_owned()];
        assert_eq!(checkable_name(&names).map(|n| server_name_text(&n)), Some("db.example".to_owned()));
    }

    #[test]
    fn failures_are_told_apart_through_io_errors() {
        let wrapped = std::io::Error::new(
            std::io::ErrorKind::InvalidData,
            rustls::Error::InvalidCertificate(CertificateError::UnknownIssuer),
        );
        assert_eq!(TlsFailure::find(&wrapped).map(|f| f.kind()), Some("untrusted-certificate"));
        let alert = rustls::Error::AlertReceived(rustls::AlertDescription::CertificateRequired);
        assert_eq!(TlsFailure::from_rustls(&alert).kind(), "client-certificate-refused");
        let plain = std::io::Error::other("connection reset");
        assert_eq!(TlsFailure::find(&plain), None);
    }

    #[test]
    fn the_client_key_never_shows_in_debug_output() {
        let m =
            TlsMaterial { client_key_pem: Some(b"-----BEGIN PRIVATE KEY-----secret".to_vec()), ..Default::default() };
        assert!(!format!("{m:?}").contains("secret"));
        let bad = m.client_identity(Side::Source).unwrap_err().to_string();
        assert!(bad.contains("go together"), "{bad}");
        let m = TlsMaterial {
            client_cert_pem: Some(b"nope".to_vec()),
            client_key_pem: Some(b"secret-key-bytes".to_vec()),
            ..Default::default()
        };
        let bad = m.client_identity(Side::Target).unwrap_err().to_string();
        assert!(!bad.contains("secret-key-bytes"), "{bad}");
    }
}
