//! `ferry run -f compare.yaml`: a CompareTask run locally. The file holds the CompareTask, the
//! Secrets, and the SyncJob its `syncJobRef` names (or the task's own `source` and `target`).
//! Prints a table of results; the caller exits 0 when consistent, 1 when not, 2 on a failure,
//! as diff(1) does.

use super::{Referenced, RunError, credentials_for};
use crate::api::compare::{CompareModeKind, CompareTask, CompareType};
use crate::api::manifest::Manifest;
use crate::api::{CompareResult, DebugOptions, ObjectCompareResult, SyncJob};
use crate::compare::{self, Options, Report};

/// Whether the manifests hold a CompareTask (then `ferry run` compares).
pub fn holds_compare_task(docs: &[Manifest]) -> bool {
    docs.iter().any(|d| matches!(d, Manifest::CompareTask(_)))
}

/// Most differing rows printed.
const SHOWN: usize = 20;

fn result_text(r: Option<ObjectCompareResult>) -> &'static str {
    r.map_or("-", |r| r.as_str())
}

/// Prints the report as a table.
pub fn print(report: &Report, compare_type: CompareType) {
    let width = report.tables.iter().map(|t| t.source.len() + t.target.len() + 3).max().unwrap_or(5).max(5);
    match compare_type {
        CompareType::Object => {
            println!("{:<width$}  RESULT", "TABLE");
            for t in &report.tables {
                println!("{:<width$}  {}", format!("{} → {}", t.source, t.target), result_text(t.object_result));
                if let Some(m) = &t.message {
                    println!("{:<width$}    {m}", "");
                }
            }
        }
        _ => {
            println!("{:<width$}  {:>12} {:>12} {:>10}  RESULT", "TABLE", "SOURCE ROWS", "TARGET ROWS", "DIFFERENT");
            for t in &report.tables {
                let n = |v: Option<u64>| v.map_or("-".to_owned(), |v| v.to_string());
                let result = t.content_result.or(t.rows_result);
                println!(
                    "{:<width$}  {:>12} {:>12} {:>10}  {}",
                    format!("{} → {}", t.source, t.target),
                    n(t.source_rows),
                    n(t.target_rows),
                    n(t.different_rows),
                    result_text(result)
                );
                if let Some(m) = &t.message {
                    println!("{:<width$}    {m}", "");
                }
            }
        }
    }
    if !report.differences.is_empty() {
        println!();
        println!("differing rows (first {}):", report.differences.len().min(SHOWN));
        for d in report.differences.iter().take(SHOWN) {
            let key = d.source_key_value.clone().or(d.target_key_value.clone()).unwrap_or_default();
            println!("  {}  {:?}  key ({key})", d.table, d.kind);
            if let Some(s) = &d.source_select_sql {
                println!("      source: {s}");
            }
            if let Some(s) = &d.target_select_sql {
                println!("      target: {s}");
            }
        }
    }
    println!();
    println!("{}", report.result().as_str());
}

/// Runs the CompareTask of `text` and prints its results.
pub async fn run(docs: Vec<Manifest>) -> Result<CompareResult, RunError> {
    let mut refs = Referenced::default();
    let mut jobs: Vec<SyncJob> = Vec::new();
    let mut tasks: Vec<CompareTask> = Vec::new();
    for doc in docs {
        match doc {
            Manifest::Secret(s) => refs.add_secret(*s),
            Manifest::ConfigMap(m) => refs.add_config_map(*m),
            Manifest::SyncJob(j) => jobs.push(*j),
            Manifest::CompareTask(t) => tasks.push(*t),
            Manifest::BatchJob(_) => return Err(RunError::new("MANIFEST_INVALID", "a BatchJob cannot run locally")),
        }
    }
    let task = match tasks.len() {
        1 => tasks.remove(0),
        n => return Err(RunError::new("MANIFEST_INVALID", format!("expected one CompareTask, found {n}"))),
    };
    let spec = &task.spec;
    let (source, target, objects, zero_dates) = match &spec.sync_job_ref {
        Some(r) => {
            let job = jobs.iter().find(|j| j.metadata.name.as_deref() == Some(r.name.as_str())).ok_or_else(|| {
                RunError::new("MANIFEST_INVALID", format!("spec.syncJobRef: SyncJob {:?} is not in the file", r.name))
            })?;
            let objects = spec.objects.clone().unwrap_or_else(|| job.spec.objects.clone());
            let zero_dates = job.spec.policy.zero_dates.unwrap_or_default();
            (job.spec.source.clone(), job.spec.target.clone(), objects, zero_dates)
        }
        None => match (&spec.source, &spec.target, &spec.objects) {
            (Some(s), Some(t), Some(o)) => (s.clone(), t.clone(), o.clone(), Default::default()),
            _ => {
                return Err(RunError::new(
                    "SPEC_INVALID",
                    "spec: either syncJobRef, or source, target and objects together",
                ));
            }
        },
    };
    let credentials = credentials_for(&refs, &source, &target)?;
    let sample = spec.mode.as_ref().filter(|m| m.kind == CompareModeKind::Sample);
    let opts = Options {
        objects: spec.compare_type == CompareType::Object,
        content: spec.compare_type == CompareType::Content,
        max_differences: 1000,
        sample_percent: sample.map(|m| m.percent.unwrap_or(10)),
        rows_per_second: spec.throttle.as_ref().and_then(|t| t.rows_per_second),
        rechecks: 0,
        canonical: false,
        zero_dates,
    };
    let report = compare::run(&source, &target, &objects, &credentials, opts)
        .await
        .map_err(|e| RunError::new(e.code(), e.text(DebugOptions::row_values(spec.debug.as_ref()))))?;
    print(&report, spec.compare_type);
    Ok(report.result())
}
