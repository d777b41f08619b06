//! The data path: reading a consistent copy of the selected tables, streaming changes, writing
//! both to the target with exactly-once checkpoints.
//!
//! This module knows nothing of Kubernetes. It takes a job spec, the passwords and a progress
//! sink; the worker wires it to the API, `ferry run` to the terminal. Every engine pair runs the
//! one job [`pipeline`] (resolve, record, copy, build, catch up, stream, cut over) over a
//! [`pipeline::Source`], a [`pipeline::Target`] and the pair's [`pipeline::Mapping`] between
//! them, with the shared copy loop ([`snapshot`]) and apply loop ([`apply`]); [`pairs`] lists the
//! pairs and what runs each. A new pair of existing engines is a new mapping and a line in
//! [`pairs::PAIRS`].

pub mod apply;
pub mod drift;
pub mod error;
pub mod filter;
pub mod metrics;
pub mod model;
pub mod my_to_pg;
pub mod mysql;
pub mod net;
pub mod pairs;
pub mod pipeline;
pub mod postgres;
pub mod progress;
pub mod queue;
pub mod redact;
pub mod snapshot;
pub mod sql;
pub mod throttle;
pub mod tls;

pub use error::{EngineError, Side};
pub use model::{Cell, Change, ChangeBatch, ColumnDef, KeyRange, TableDef, Transaction};
pub use progress::{ProgressSink, Tracker};

/// Passwords and TLS material of the two endpoints, read from the referenced Secrets and
/// ConfigMaps by whoever runs the engine.
#[derive(Clone, Default)]
pub struct Credentials {
    /// Source password, if the source needs one.
    pub source_password: Option<String>,
    /// Target password, if the target needs one.
    pub target_password: Option<String>,
    /// Source CA bundle and client certificate, as `spec.source.tls` names them.
    pub source_tls: tls::TlsMaterial,
    /// Target CA bundle and client certificate, as `spec.target.tls` names them.
    pub target_tls: tls::TlsMaterial,
}

impl std::fmt::Debug for Credentials {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        // Never print a password, not even in a debug dump.
        f.debug_struct("Credentials")
            .field("source_password", &self.source_password.as_ref().map(|_| "<redacted>"))
            .field("target_password", &self.target_password.as_ref().map(|_| "<redacted>"))
            .field("source_tls", &self.source_tls)
            .field("target_tls", &self.target_tls)
            .finish()
    }
}

impl Credentials {
    /// What logging in to `side` takes.
    pub fn login(&self, side: Side) -> Login<'_> {
        match side {
            Side::Source => Login { password: self.source_password.as_deref(), tls: &self.source_tls },
            Side::Target => Login { password: self.target_password.as_deref(), tls: &self.target_tls },
        }
    }
}

/// What logging in to one endpoint takes: its password and its TLS material.
#[derive(Clone, Copy, Debug)]
pub struct Login<'a> {
    /// The password, if the endpoint needs one.
    pub password: Option<&'a str>,
    /// CA bundle and client certificate.
    pub tls: &'a tls::TlsMaterial,
}

use tokio::sync::watch;

use crate::api::{DebugOptions, PrecheckItem, PrecheckResult, SyncJobSpec};

/// How a transfer run ended without error.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Outcome {
    /// A `FULL_TRANS` job copied everything and released what it held on the source.
    Completed,
    /// A stop was requested and the job stopped at a checkpoint.
    Stopped,
}

/// Everything one run of a job needs: its identity (`namespace/name`), spec, passwords,
/// progress and stop signal.
pub struct Job<'a> {
    /// Identity of the job (`namespace/name`), which keys its bookkeeping and names its slot.
    pub id: &'a str,
    /// The spec.
    pub spec: &'a SyncJobSpec,
    /// Passwords.
    pub credentials: &'a Credentials,
    /// Progress sink.
    pub tracker: Tracker,
    /// Turns true when the job must stop at the next checkpoint.
    pub stop: watch::Receiver<bool>,
}

impl Job<'_> {
    /// Whether the job must stop at the next checkpoint.
    pub fn stopping(&self) -> bool {
        *self.stop.borrow()
    }
}

/// Starts in a row from the checkpoint, without progress in between, after which a transient
/// failure goes to the operator (which retries by `spec.retry`) instead.
pub const RECONNECT_ATTEMPTS: u32 = 8;

/// Runs a job with the engine its endpoints call for. Once the job has started (both databases
/// reached, the tables resolved), a lost connection, a server restart or a connection gone
/// silent does not end the run: the job starts again from its checkpoint (the chunk ledger, the
/// stream position) after a backoff, each time reported to the tracker, until
/// [`RECONNECT_ATTEMPTS`] starts in a row make no progress.
pub async fn run(job: Job<'_>) -> Result<Outcome, EngineError> {
    net::set_timeout(job.spec);
    let mut failures = 0u32;
    loop {
        let started = job.tracker.snapshot().0.rows_transferred;
        let checkpoint = job.tracker.snapshot().1.and_then(|c| c.position);
        let attempt = Job {
            id: job.id,
            spec: job.spec,
            credentials: job.credentials,
            tracker: job.tracker.clone(),
            stop: job.stop.clone(),
        };
        let e = match run_once(attempt).await {
            // A database unreachable from the very start goes to the operator at once (its
            // precheck and retries say more); one lost later is reconnected to here.
            Err(e) if e.is_transient() && !*job.stop.borrow() && job.tracker.snapshot().0.stage.is_some() => e,
            other => return other,
        };
        let (progress, now) = job.tracker.snapshot();
        let moved = progress.rows_transferred > started || now.and_then(|c| c.position) != checkpoint;
        failures = if moved { 1 } else { failures + 1 };
        if failures > RECONNECT_ATTEMPTS {
            return Err(e);
        }
        let wait = net::backoff(failures);
        tracing::warn!(code = e.code(), error = %e, wait_s = wait.as_secs(), "starting again from the checkpoint");
        // An Event, readable by more than the tables: row values only for a job that opts in.
        job.tracker.reconnecting(e.code(), &e.text(DebugOptions::row_values(job.spec.debug.as_ref())));
        let mut stop = job.stop.clone();
        tokio::select! {
            _ = tokio::time::sleep(wait) => {}
            Ok(_) = stop.wait_for(|s| *s) => break,
        }
    }
    // Stopped while waiting to start again: one more run, which sees the stop at once and does
    // what a stop at a checkpoint does (the sequences' cut-over among it), if the databases
    // answer again.
    match run_once(job).await {
        Err(e) if e.is_transient() => {
            tracing::warn!(code = e.code(), error = %e, "stopped without the steps of a stop (sequence cut-over): a database does not answer");
            Ok(Outcome::Stopped)
        }
        other => other,
    }
}

/// One run of a job, from its checkpoint to completion, a stop or an error.
async fn run_once(job: Job<'_>) -> Result<Outcome, EngineError> {
    let spec = job.spec;
    let pair = pairs::find(spec.source.engine, spec.target.engine, Some(spec.task_type))
        .map_err(|e| EngineError::Unsupported(e.to_string()))?;
    (pair.runs.run)(job).await
}

/// Runs the precheck for a job's endpoints.
pub async fn precheck(spec: &SyncJobSpec, credentials: &Credentials) -> Vec<PrecheckItem> {
    let mut items = match pairs::find(spec.source.engine, spec.target.engine, Some(spec.task_type)) {
        Err(e) => vec![engines_item(&e)],
        Ok(pair) => (pair.runs.precheck)(spec, credentials).await,
    };
    // A side whose TLS failed already has its `<side>.tls` item.
    let plaintext: Vec<_> =
        plaintext_items(spec).into_iter().filter(|p| !items.iter().any(|i| i.item == p.item)).collect();
    items.extend(plaintext);
    items
}

/// The `engines` precheck item: FAILED, for a transfer that is not one of [`pairs::PAIRS`].
fn engines_item(why: &pairs::Unsupported) -> PrecheckItem {
    PrecheckItem {
        item: "engines".into(),
        result: PrecheckResult::Failed,
        reason: Some(why.to_string()),
        fix: Some(why.fix.clone()),
        skippable: false,
        skipped: false,
    }
}

/// Whether `host` is this machine: traffic to it never crosses a network.
fn is_loopback(host: &str) -> bool {
    let host = host.trim_start_matches('[').trim_end_matches(']');
    host.eq_ignore_ascii_case("localhost") || host.parse::<std::net::IpAddr>().is_ok_and(|ip| ip.is_loopback())
}

/// `source.tls` and `target.tls`: an ALARM for a side that reaches a host across the network
/// without TLS (its password and every row travel in the clear), PASSED otherwise.
pub fn plaintext_items(spec: &SyncJobSpec) -> Vec<PrecheckItem> {
    [(Side::Source, &spec.source), (Side::Target, &spec.target)]
        .into_iter()
        .map(|(side, endpoint)| {
            let mode = endpoint.tls.as_ref().map_or(crate::api::TlsMode::Disable, |t| t.mode);
            let plaintext = mode == crate::api::TlsMode::Disable && !is_loopback(&endpoint.host);
            PrecheckItem {
                item: format!("{side}.tls"),
                result: if plaintext { PrecheckResult::Alarm } else { PrecheckResult::Passed },
                reason: plaintext.then(|| {
                    format!(
                        "spec.{side}.tls.mode is disable and {} is not this machine: the password and every row \
                         cross the network unencrypted",
                        endpoint.host
                    )
                }),
                fix: plaintext.then(|| format!("set spec.{side}.tls.mode to verify-full (or require)")),
                skippable: true,
                skipped: false,
            }
        })
        .collect()
}

/// Releases what a job holds on its source (replication slot, publication) and its bookkeeping
/// on the target. Safe to repeat.
pub async fn release(id: &str, spec: &SyncJobSpec, credentials: &Credentials) -> Result<(), EngineError> {
    // A job whose pair does not exist never ran (validation keeps it in CREATE_FAILED), so there
    // is nothing of it to find; which engine's release to use is not known either.
    let pair = pairs::find(spec.source.engine, spec.target.engine, None)
        .map_err(|e| EngineError::Unsupported(format!("releasing: {e}")))?;
    (pair.runs.release)(id, spec, credentials).await
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::api::{Engine, TlsConfig, TlsMode};

    fn results(spec: &SyncJobSpec) -> Vec<(String, PrecheckResult)> {
        plaintext_items(spec).into_iter().map(|i| (i.item, i.result)).collect()
    }

    #[tokio::test]
    async fn a_pair_that_does_not_exist_fails_the_engines_item_without_connecting() {
        let mut spec = SyncJobSpec::test();
        spec.target.engine = Engine::Mysql;
        let items = precheck(&spec, &Credentials::default()).await;
        let engines = items.iter().find(|i| i.item == "engines").unwrap();
        assert_eq!(engines.result, PrecheckResult::Failed);
        assert_eq!(
            engines.reason.as_deref(),
            Some(
                format!(
                    "spec.target.engine: postgresql → mysql transfers do not exist; Ferry transfers {}",
                    pairs::describe()
                )
                .as_str()
            )
        );
        assert_eq!(engines.fix.as_deref(), Some("for a postgresql source, set spec.target.engine to postgresql"));
        assert!(!engines.skippable);
    }

    #[test]
    fn plaintext_across_a_network_is_an_alarm_and_loopback_or_tls_is_not() {
        let mut spec = SyncJobSpec::test();
        spec.source.host = "127.0.0.1".into();
        spec.target.host = "localhost".into();
        assert_eq!(
            results(&spec),
            [("source.tls".to_owned(), PrecheckResult::Passed), ("target.tls".to_owned(), PrecheckResult::Passed)]
        );
        spec.source.host = "orders-db.prod.svc".into();
        spec.target.host = "[::1]".into();
        let items = plaintext_items(&spec);
        assert_eq!(items[0].result, PrecheckResult::Alarm);
        assert!(items[0].reason.as_deref().unwrap().contains("orders-db.prod.svc"), "{:?}", items[0]);
        assert!(items[0].fix.as_deref().unwrap().contains("spec.source.tls.mode"), "{:?}", items[0]);
        assert_eq!(items[1].result, PrecheckResult::Passed);
        spec.source.tls = Some(TlsConfig { mode: TlsMode::VerifyFull, ..Default::default() });
        assert_eq!(results(&spec)[0].1, PrecheckResult::Passed);
    }
}
