//! Certificates for throwaway TLS servers: a test CA, a server certificate for `localhost`
//! signed by it, a client certificate for mutual TLS, and an unrelated CA that trusts nothing
//! the servers present.

use rcgen::{BasicConstraints, CertificateParams, DnType, ExtendedKeyUsagePurpose, IsCa, Issuer, KeyPair};

use super::TestkitError;
use crate::engine::tls::TlsMaterial;

/// The name the server certificates carry. Connecting to `127.0.0.1` instead gives a name
/// mismatch.
pub const TLS_HOST: &str = "localhost";

/// What a server needs to offer TLS.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ServerTls {
    /// The server certificate (PEM), for [`TLS_HOST`].
    pub cert_pem: String,
    /// Its private key (PEM).
    pub key_pem: String,
    /// The CA that signs client certificates (PEM): set, the server asks clients for one.
    pub client_ca_pem: Option<String>,
    /// Whether a login must present a client certificate the CA signed (PostgreSQL
    /// `clientcert=verify-full`; MariaDB `REQUIRE X509` on the test user).
    pub require_client_cert: bool,
    /// Whether plain-text logins over TCP are refused (PostgreSQL `hostssl` only; MariaDB
    /// `REQUIRE SSL`).
    pub require_tls: bool,
}

/// A test CA and what it signs.
pub struct TestPki {
    /// The CA certificate (PEM).
    pub ca_pem: String,
    /// Another CA, which signed nothing the servers present (PEM).
    pub other_ca_pem: String,
    /// The server certificate and key.
    pub server_cert_pem: String,
    /// The server key.
    pub server_key_pem: String,
    /// A client certificate for the user `client_user` (PEM).
    pub client_cert_pem: String,
    /// Its key.
    pub client_key_pem: String,
    /// A client certificate from the other CA, which the servers refuse.
    pub foreign_client_cert_pem: String,
    /// Its key.
    pub foreign_client_key_pem: String,
}

fn err(e: rcgen::Error) -> TestkitError {
    TestkitError::Io {
        server: "PKI",
        context: format!("generating certificates: {e}"),
        source: std::io::Error::other(e),
    }
}

fn ca(name: &str) -> Result<(String, Issuer<'static, KeyPair>), TestkitError> {
    let key = KeyPair::generate().map_err(err)?;
    let mut params = CertificateParams::new(Vec::<String>::new()).map_err(err)?;
    params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
    params.distinguished_name.push(DnType::CommonName, name);
    let cert = params.self_signed(&key).map_err(err)?;
    Ok((cert.pem(), Issuer::new(params, key)))
}

fn leaf(
    issuer: &Issuer<'_, KeyPair>,
    names: Vec<String>,
    common_name: &str,
    usage: ExtendedKeyUsagePurpose,
) -> Result<(String, String), TestkitError> {
    let key = KeyPair::generate().map_err(err)?;
    let mut params = CertificateParams::new(names).map_err(err)?;
    params.distinguished_name.push(DnType::CommonName, common_name);
    params.extended_key_usages = vec![usage];
    let cert = params.signed_by(&key, issuer).map_err(err)?;
    Ok((cert.pem(), key.serialize_pem()))
}

impl TestPki {
    /// A fresh CA with a server certificate for [`TLS_HOST`] and a client certificate whose
    /// common name is `client_user` (PostgreSQL maps it to the login user).
    pub fn new(client_user: &str) -> Result<TestPki, TestkitError> {
        let (ca_pem, issuer) = ca("Ferry test CA")?;
        let (other_ca_pem, other) = ca("Unrelated test CA")?;
        let (server_cert_pem, server_key_pem) =
            leaf(&issuer, vec![TLS_HOST.to_owned()], TLS_HOST, ExtendedKeyUsagePurpose::ServerAuth)?;
        let (client_cert_pem, client_key_pem) =
            leaf(&issuer, Vec::new(), client_user, ExtendedKeyUsagePurpose::ClientAuth)?;
        let (foreign_client_cert_pem, foreign_client_key_pem) =
            leaf(&other, Vec::new(), client_user, ExtendedKeyUsagePurpose::ClientAuth)?;
        Ok(TestPki {
            ca_pem,
            other_ca_pem,
            server_cert_pem,
            server_key_pem,
            client_cert_pem,
            client_key_pem,
            foreign_client_cert_pem,
            foreign_client_key_pem,
        })
    }

    /// A server that offers TLS with this PKI's certificate, clients not asked for theirs.
    pub fn server(&self) -> ServerTls {
        ServerTls {
            cert_pem: self.server_cert_pem.clone(),
            key_pem: self.server_key_pem.clone(),
            client_ca_pem: None,
            require_client_cert: false,
            require_tls: false,
        }
    }

    /// A server that requires TLS and a client certificate this PKI's CA signed.
    pub fn server_requiring_client_certs(&self) -> ServerTls {
        ServerTls {
            client_ca_pem: Some(self.ca_pem.clone()),
            require_client_cert: true,
            require_tls: true,
            ..self.server()
        }
    }

    /// What a job needs to trust the servers: the CA only.
    pub fn trust(&self) -> TlsMaterial {
        TlsMaterial { ca_pem: Some(self.ca_pem.clone().into_bytes()), ..Default::default() }
    }

    /// The CA and the client certificate.
    pub fn trust_with_client_cert(&self) -> TlsMaterial {
        TlsMaterial {
            client_cert_pem: Some(self.client_cert_pem.clone().into_bytes()),
            client_key_pem: Some(self.client_key_pem.clone().into_bytes()),
            ..self.trust()
        }
    }
}
