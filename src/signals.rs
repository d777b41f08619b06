//! SIGTERM and SIGINT, for every long-running role: `ferry run` (stop at a checkpoint, abort on
//! a second signal), `ferry worker` (the kubelet's SIGTERM stops the job at a checkpoint) and
//! `ferry operator` (a graceful shutdown).

use tokio::signal::unix::{Signal, SignalKind, signal};
use tokio::sync::watch;

/// The two stop signals, received as often as they come.
pub struct Signals {
    term: Signal,
    int: Signal,
}

impl Signals {
    /// Installs the handlers.
    pub fn new() -> std::io::Result<Signals> {
        Ok(Signals { term: signal(SignalKind::terminate())?, int: signal(SignalKind::interrupt())? })
    }

    /// The next SIGTERM or SIGINT.
    pub async fn recv(&mut self) {
        tokio::select! {
            _ = self.term.recv() => {}
            _ = self.int.recv() => {}
        }
    }
}

/// Resolves on the first SIGTERM or SIGINT (at once when the handlers cannot be installed:
/// running on without a way to be stopped cleanly would be worse).
pub async fn first() {
    match Signals::new() {
        Ok(mut s) => s.recv().await,
        Err(e) => tracing::error!(error = %e, "cannot install signal handlers"),
    }
}

/// A flag that turns true on the first SIGTERM or SIGINT.
pub fn stop_flag() -> watch::Receiver<bool> {
    let (tx, rx) = watch::channel(false);
    tokio::spawn(async move {
        first().await;
        tracing::info!("asked to stop: stopping at the next checkpoint");
        let _ = tx.send(true);
    });
    rx
}
