//! What both demos do with `ferry run`: start it on a manifest, follow its status file to the
//! incremental phase and to zero lag, and stop it with SIGTERM.

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use ferry::api::{SyncJobPhase, SyncJobStatus};

pub type Error = Box<dyn std::error::Error + Send + Sync>;

/// Prints a step of the demo.
pub fn say(text: &str) {
    println!("\x1b[1m==> {text}\x1b[0m");
}

fn ferry_binary() -> PathBuf {
    std::env::var_os("FERRY_BIN")
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("target/release/ferry"))
}

fn read_status(path: &Path) -> Option<SyncJobStatus> {
    serde_json::from_slice(&std::fs::read(path).ok()?).ok()
}

/// Runs a CompareTask (content, every row) over the job of `manifest` with `ferry run`, its
/// results on the terminal; fails unless source and target are consistent.
pub fn compare(manifest: &Path, job: &str) -> Result<(), Error> {
    let text = std::fs::read_to_string(manifest)?;
    let task = format!(
        "---\napiVersion: ferry.dev/v1alpha1\nkind: CompareTask\nmetadata: {{name: {job}-check}}\n\
         spec: {{syncJobRef: {{name: {job}}}, type: content}}\n"
    );
    let path = manifest.with_file_name("compare.yaml");
    std::fs::write(&path, format!("{text}{task}"))?;
    say(&format!("ferry run -f {}   (a CompareTask: every row, both sides)", path.display()));
    let code = Command::new(ferry_binary()).args(["run", "-f"]).arg(&path).stdin(Stdio::null()).status()?;
    match code.code() {
        Some(0) => Ok(()),
        Some(1) => Err("the CompareTask found differences".into()),
        _ => Err(format!("the CompareTask failed ({code})").into()),
    }
}

/// A running `ferry run --release -f MANIFEST --status-file FILE`.
pub struct FerryRun {
    child: Child,
    status_file: PathBuf,
}

impl FerryRun {
    /// Starts it; its output goes to the terminal.
    pub fn start(manifest: &Path, status_file: &Path) -> Result<FerryRun, Error> {
        say(&format!("ferry run -f {} --release", manifest.display()));
        let child = Command::new(ferry_binary())
            .args(["run", "--release", "-f"])
            .arg(manifest)
            .arg("--status-file")
            .arg(status_file)
            .stdin(Stdio::null())
            .spawn()
            .map_err(|e| {
                format!("starting {}: {e} (build it first: cargo build --release)", ferry_binary().display())
            })?;
        Ok(FerryRun { child, status_file: status_file.to_owned() })
    }

    /// Waits for `INCRE_TRANSFER_STARTED` (at most 5 minutes).
    pub async fn until_streaming(&mut self) -> Result<(), Error> {
        let deadline = Instant::now() + Duration::from_secs(300);
        loop {
            if let Some(code) = self.child.try_wait()? {
                return Err(format!("ferry run ended early ({code})").into());
            }
            if read_status(&self.status_file).and_then(|s| s.phase) == Some(SyncJobPhase::IncreTransferStarted) {
                return Ok(());
            }
            if Instant::now() > deadline {
                return Err("the job did not reach INCRE_TRANSFER_STARTED in 5 minutes".into());
            }
            tokio::time::sleep(Duration::from_millis(200)).await;
        }
    }

    /// Waits (at most 30 s) for the status to report zero lag.
    pub async fn until_caught_up(&self) {
        let deadline = Instant::now() + Duration::from_secs(30);
        while read_status(&self.status_file).and_then(|s| s.progress).and_then(|p| p.lag_seconds) != Some(0)
            && Instant::now() < deadline
        {
            tokio::time::sleep(Duration::from_millis(200)).await;
        }
    }

    /// SIGTERM: the job stops at a checkpoint and releases what it holds; fails unless it exits 0.
    pub fn stop(mut self) -> Result<(), Error> {
        // SAFETY: plain kill(2) on our own child's pid.
        unsafe { libc::kill(self.child.id() as i32, libc::SIGTERM) };
        let code = self.child.wait()?;
        if !code.success() {
            return Err(format!("ferry run exited with {code}").into());
        }
        Ok(())
    }
}
