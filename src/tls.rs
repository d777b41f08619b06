//! The process's TLS crypto provider.
//!
//! rustls needs one process-level crypto provider. It picks one by itself only when exactly one
//! is compiled in; with two (`ring` and `aws-lc-rs` both reachable through the dependency graph)
//! the first TLS client it builds panics. The Kubernetes client is the first, so the operator and
//! every worker pod died before their first request to a real API server. The binary therefore
//! compiles in one provider, aws-lc-rs (the one the PostgreSQL replication client's TLS needs),
//! and installs it explicitly at start-up, so a dependency that later enables another provider
//! cannot bring the panic back.

/// Installs aws-lc-rs as the process-wide rustls provider. Idempotent: a provider already
/// installed (by an earlier call) is kept.
pub fn install_crypto_provider() {
    // Err only when a provider is already installed, which is what we want.
    let _ = rustls::crypto::aws_lc_rs::default_provider().install_default();
}
