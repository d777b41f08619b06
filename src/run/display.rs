//! What `ferry run` shows: a line per phase change, precheck results, and progress — a live
//! line on a terminal, a plain line every few seconds otherwise — plus the optional status file.

use std::io::{IsTerminal, Write};
use std::path::PathBuf;
use std::sync::Mutex;
use std::time::{Duration, Instant};

use crate::api::{PrecheckItem, PrecheckResult, SequencesStatus, SyncJobStatus, TransferStage};

/// How often a plain (non-terminal) progress line is printed.
const PLAIN_EVERY: Duration = Duration::from_secs(5);
/// How often the status file is rewritten at most, phase changes aside.
const STATUS_EVERY: Duration = Duration::from_secs(1);

struct State {
    last_plain: Option<Instant>,
    last_file: Option<Instant>,
    live_line: bool,
}

/// The terminal and status-file output of one run.
pub struct Display {
    job: String,
    tty: bool,
    status_file: Option<PathBuf>,
    state: Mutex<State>,
}

fn clock() -> String {
    let now = jiff::Timestamp::now();
    let secs = now.as_second().rem_euclid(86_400);
    format!("{:02}:{:02}:{:02}", secs / 3600, secs / 60 % 60, secs % 60)
}

fn thousands(n: u64) -> String {
    let s = n.to_string();
    let mut out = String::new();
    for (i, c) in s.chars().enumerate() {
        if i > 0 && (s.len() - i).is_multiple_of(3) {
            out.push(',');
        }
        out.push(c);
    }
    out
}

/// Sequences named at most in the cut-over line.
const CUT_OVER_NAMED: usize = 5;

/// `sequences: 3 set on the target (public.orders_id_seq = 1042, …)`: what the cut-over step did.
pub fn cut_over_line(s: &SequencesStatus) -> String {
    let named: Vec<String> = s.items.iter().take(CUT_OVER_NAMED).map(|i| format!("{} = {}", i.name, i.value)).collect();
    let more = if s.count as usize > named.len() { ", …" } else { "" };
    format!("sequences: {} set on the target ({}{more})", s.count, named.join(", "))
}

impl Display {
    /// Output for job `job`.
    pub fn new(job: &str, status_file: Option<PathBuf>) -> Display {
        Display {
            job: job.to_owned(),
            tty: std::io::stdout().is_terminal(),
            status_file,
            state: Mutex::new(State { last_plain: None, last_file: None, live_line: false }),
        }
    }

    fn line(&self, text: &str) {
        let mut st = self.state.lock().unwrap_or_else(|p| p.into_inner());
        let mut out = std::io::stdout().lock();
        if st.live_line {
            let _ = write!(out, "\r\x1b[K");
            st.live_line = false;
        }
        let _ = writeln!(out, "{} {text}", clock());
        let _ = out.flush();
    }

    /// A phase change.
    pub fn phase(&self, status: &SyncJobStatus) {
        let phase = status.phase.map(|p| p.as_str()).unwrap_or("CREATING");
        self.line(&format!("{} {phase}", self.job));
        self.write_status(status, true);
    }

    /// A remark.
    pub fn note(&self, text: &str) {
        self.line(&format!("  {text}"));
    }

    /// The end of the run.
    pub fn done(&self, text: &str) {
        self.line(&format!("{} done: {text}", self.job));
    }

    /// The precheck results, failures with reason and fix.
    pub fn precheck(&self, items: &[PrecheckItem]) {
        for i in items {
            let mark = match (i.result, i.skipped) {
                (PrecheckResult::Passed, _) => "PASSED",
                (PrecheckResult::Alarm, _) => "ALARM ",
                (PrecheckResult::Failed, true) => "SKIPPED",
                (PrecheckResult::Failed, false) => "FAILED",
            };
            self.line(&format!("  precheck {mark} {}", i.item));
            if i.result != PrecheckResult::Passed {
                if let Some(r) = &i.reason {
                    self.line(&format!("    reason: {r}"));
                }
                if let Some(f) = &i.fix {
                    self.line(&format!("    fix:    {f}"));
                }
            }
        }
    }

    /// Progress, as often as it changes; throttled here.
    pub fn status(&self, status: &SyncJobStatus) {
        self.write_status(status, false);
        let Some(p) = &status.progress else { return };
        let Some(stage) = p.stage else { return };
        let mut text = match stage {
            TransferStage::Full => format!(
                "full transfer {:>5}  {} rows",
                p.percent.map_or("-".into(), |v| format!("{v:.1}%")),
                thousands(p.rows_transferred)
            ),
            TransferStage::Incremental => format!(
                "incremental  lag {}  {} rows",
                p.lag_seconds.map_or("-".into(), |l| format!("{l}s")),
                thousands(p.rows_transferred)
            ),
            _ => return,
        };
        if let Some(r) = p.rows_per_second {
            text.push_str(&format!("  {} rows/s", thousands(r as u64)));
        }
        if stage == TransferStage::Full
            && let Some(rem) = p.remaining_seconds
        {
            text.push_str(&format!("  ~{rem}s left"));
        }
        if let Some(pos) = status.checkpoint.as_ref().and_then(|c| c.position.as_ref()) {
            text.push_str(&format!("  checkpoint {pos}"));
        }
        let mut st = self.state.lock().unwrap_or_else(|p| p.into_inner());
        if self.tty {
            let mut out = std::io::stdout().lock();
            let _ = write!(out, "\r\x1b[K  {text}");
            let _ = out.flush();
            st.live_line = true;
        } else if st.last_plain.is_none_or(|t| t.elapsed() >= PLAIN_EVERY) {
            st.last_plain = Some(Instant::now());
            drop(st);
            self.line(&format!("  {text}"));
        }
    }

    fn write_status(&self, status: &SyncJobStatus, force: bool) {
        let Some(path) = &self.status_file else { return };
        {
            let mut st = self.state.lock().unwrap_or_else(|p| p.into_inner());
            if !force && st.last_file.is_some_and(|t| t.elapsed() < STATUS_EVERY) {
                return;
            }
            st.last_file = Some(Instant::now());
        }
        let Ok(json) = serde_json::to_vec_pretty(status) else { return };
        // Write then rename, so a reader never sees half a file.
        let tmp = path.with_extension("tmp");
        if std::fs::write(&tmp, json).and_then(|()| std::fs::rename(&tmp, path)).is_err() {
            tracing::warn!(path = %path.display(), "cannot write the status file");
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::api::{SequenceStep, SequenceValue};

    #[test]
    fn the_cut_over_line_names_the_first_sequences_and_counts_all() {
        let value = |name: &str, value| SequenceValue { name: name.into(), value };
        let mut s = SequencesStatus {
            count: 2,
            step: SequenceStep::CutOver,
            set_at: None,
            items: vec![value("public.orders_id_seq", 1042), value("sales.ids", 7)],
        };
        assert_eq!(cut_over_line(&s), "sequences: 2 set on the target (public.orders_id_seq = 1042, sales.ids = 7)");
        s.count = 9;
        s.items = (0..9).map(|i| value(&format!("public.s{i}"), i)).collect();
        assert_eq!(
            cut_over_line(&s),
            "sequences: 9 set on the target (public.s0 = 0, public.s1 = 1, public.s2 = 2, public.s3 = 3, public.s4 = 4, …)"
        );
    }
}
