//! `ferry run` as a child process, for the kill-and-resume tests of every engine.

#![allow(dead_code)]

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

/// A `ferry run` process on a manifest, with its output in a log file.
pub struct Runner {
    child: Child,
    log: PathBuf,
}

impl Runner {
    /// Starts `ferry run -f manifest --status-file dir/status.json`, logging to
    /// `dir/run-<attempt>.log`.
    pub fn start(dir: &Path, manifest: &Path, attempt: u32) -> Runner {
        Runner::start_with(dir, manifest, attempt, &[])
    }

    /// [`Runner::start`] with more arguments.
    pub fn start_with(dir: &Path, manifest: &Path, attempt: u32, extra: &[&str]) -> Runner {
        let log = dir.join(format!("run-{attempt}.log"));
        let out = std::fs::File::create(&log).unwrap();
        let child = Command::new(env!("CARGO_BIN_EXE_ferry"))
            .args(["run", "-f"])
            .arg(manifest)
            .arg("--status-file")
            .arg(dir.join("status.json"))
            .args(extra)
            .stdout(out.try_clone().unwrap())
            .stderr(out)
            .stdin(Stdio::null())
            .spawn()
            .unwrap();
        Runner { child, log }
    }

    /// Kills the process.
    pub fn kill(mut self) {
        // SIGKILL: no chance to reach a checkpoint.
        self.child.kill().unwrap();
        self.child.wait().unwrap();
    }

    /// What the process printed.
    pub fn log(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }

    /// SIGTERM, then the exit status must be 0 (a clean stop at a checkpoint).
    pub fn stop_cleanly(mut self) {
        unsafe { libc::kill(self.child.id() as i32, libc::SIGTERM) };
        let deadline = Instant::now() + Duration::from_secs(30);
        loop {
            if let Some(status) = self.child.try_wait().unwrap() {
                assert!(status.success(), "ferry run exited with {status}:\n{}", self.log());
                return;
            }
            assert!(Instant::now() < deadline, "ferry run did not stop:\n{}", self.log());
            std::thread::sleep(Duration::from_millis(100));
        }
    }

    /// Fails the test with the log if the process has exited.
    pub fn assert_running(&mut self) {
        if let Some(status) = self.child.try_wait().unwrap() {
            panic!("ferry run exited early with {status}:\n{}", self.log());
        }
    }

    /// Whether the process has exited; fails the test with the log if it exited with an error.
    pub fn exited_successfully(&mut self) -> bool {
        match self.child.try_wait().unwrap() {
            Some(status) if status.success() => true,
            Some(status) => panic!("ferry run exited with {status}:\n{}", self.log()),
            None => false,
        }
    }
}
