//! Which engine pairs Ferry transfers, and with which task types: the one table that spec
//! validation, the precheck, the engine dispatch, `ferry convert` and the documentation (through
//! the tests that hold it to [`describe`]) take their answer from.
//!
//! Adding a pair of existing engines is a module with its [`super::pipeline::Mapping`] between the
//! source's [`super::pipeline::Source`] and the target's [`super::pipeline::Target`], its precheck
//! and release, and a line in [`PAIRS`] naming them; a pair that runs only some task types lists just
//! those.

use std::fmt;

use futures::future::BoxFuture;

use super::error::EngineError;
use super::{Credentials, Job, Outcome};
use crate::api::{Engine, PrecheckItem, SyncJobSpec, TaskType};

/// What runs one pair's jobs: the engine's entry points, which [`super::run`],
/// [`super::precheck`] and [`super::release`] dispatch to.
pub struct Runs {
    /// Runs a job until it completes, stops or fails.
    pub run: for<'a> fn(Job<'a>) -> BoxFuture<'a, Result<Outcome, EngineError>>,
    /// The precheck items of a job's endpoints.
    pub precheck: for<'a> fn(&'a SyncJobSpec, &'a Credentials) -> BoxFuture<'a, Vec<PrecheckItem>>,
    /// Releases what a job holds on its source and its bookkeeping on the target.
    pub release: for<'a> fn(&'a str, &'a SyncJobSpec, &'a Credentials) -> BoxFuture<'a, Result<(), EngineError>>,
}

impl fmt::Debug for Runs {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("Runs")
    }
}

/// One kind of transfer Ferry runs: from any of `sources` to any of `targets`, for `tasks`.
#[derive(Clone, Copy, Debug)]
pub struct Pair {
    /// Source engines.
    pub sources: &'static [Engine],
    /// Target engines, each reachable from every source.
    pub targets: &'static [Engine],
    /// Task types the pair runs.
    pub tasks: &'static [TaskType],
    /// The engine code that runs it.
    pub runs: &'static Runs,
}

/// PostgreSQL → PostgreSQL.
const POSTGRES: Runs = Runs {
    run: |job| Box::pin(super::postgres::run(job)),
    precheck: |spec, credentials| Box::pin(super::postgres::precheck::run(spec, credentials)),
    release: |id, spec, credentials| Box::pin(super::postgres::release(id, spec, credentials)),
};

/// Within the MySQL family.
const MYSQL: Runs = Runs {
    run: |job| Box::pin(super::mysql::run(job)),
    precheck: |spec, credentials| Box::pin(super::mysql::precheck::run(spec, credentials)),
    release: |id, spec, credentials| Box::pin(super::mysql::release(id, spec, credentials)),
};

/// MySQL family → PostgreSQL.
const MYSQL_TO_POSTGRES: Runs = Runs {
    run: |job| Box::pin(super::my_to_pg::run(job)),
    precheck: |spec, credentials| Box::pin(super::my_to_pg::precheck(spec, credentials)),
    release: |id, spec, credentials| Box::pin(super::my_to_pg::release(id, spec, credentials)),
};

const POSTGRESQL: &[Engine] = &[Engine::Postgresql];
const MYSQL_FAMILY: &[Engine] = &[Engine::Mysql, Engine::Mariadb];
const EVERY_TASK: &[TaskType] = &[TaskType::FullTrans, TaskType::FullIncrTrans, TaskType::IncrTrans];

/// The transfers Ferry runs.
pub const PAIRS: &[Pair] = &[
    Pair { sources: POSTGRESQL, targets: POSTGRESQL, tasks: EVERY_TASK, runs: &POSTGRES },
    Pair { sources: MYSQL_FAMILY, targets: MYSQL_FAMILY, tasks: EVERY_TASK, runs: &MYSQL },
    Pair { sources: MYSQL_FAMILY, targets: POSTGRESQL, tasks: EVERY_TASK, runs: &MYSQL_TO_POSTGRES },
];

/// The spec field that keeps a transfer out of [`PAIRS`].
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Field {
    /// No pair reads from the source engine.
    SourceEngine,
    /// No pair goes from the source engine to the target engine.
    TargetEngine,
    /// The pair exists, but not for the task type.
    TaskType,
}

impl Field {
    /// Path of the field in a SyncJob.
    pub fn path(self) -> &'static str {
        match self {
            Field::SourceEngine => "spec.source.engine",
            Field::TargetEngine => "spec.target.engine",
            Field::TaskType => "spec.taskType",
        }
    }
}

/// Why a transfer is not one Ferry runs, and what to change.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Unsupported {
    /// The field at fault.
    pub field: Field,
    /// Why, naming what is not supported and what is (without the field's path).
    pub reason: String,
    /// What to set instead.
    pub fix: String,
}

impl fmt::Display for Unsupported {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}: {}", self.field.path(), self.reason)
    }
}

/// Whether Ferry transfers from `source` to `target` with `task`; if not, which field is at
/// fault and why.
pub fn supported(source: Engine, target: Engine, task: TaskType) -> Result<(), Unsupported> {
    check(PAIRS, source, target, Some(task))
}

/// Whether Ferry transfers from `source` to `target` with some task type.
pub fn engines_supported(source: Engine, target: Engine) -> Result<(), Unsupported> {
    check(PAIRS, source, target, None)
}

/// The pair that transfers from `source` to `target` (with `task`, when given), or why none does.
pub fn find(source: Engine, target: Engine, task: Option<TaskType>) -> Result<&'static Pair, Unsupported> {
    check(PAIRS, source, target, task)?;
    PAIRS
        .iter()
        .find(|p| {
            p.sources.contains(&source) && p.targets.contains(&target) && task.is_none_or(|t| p.tasks.contains(&t))
        })
        .ok_or_else(|| Unsupported {
            field: Field::TargetEngine,
            reason: format!("{source} → {target}: no pair in the table"),
            fix: format!("use a pair Ferry transfers: {}", describe()),
        })
}

/// The pairs Ferry transfers, as manifests name the engines: `postgresql → postgresql and
/// mysql/mariadb → mysql/mariadb`; a pair limited to some task types says which.
pub fn describe() -> String {
    describe_in(PAIRS)
}

fn check(table: &[Pair], source: Engine, target: Engine, task: Option<TaskType>) -> Result<(), Unsupported> {
    let from: Vec<&Pair> = table.iter().filter(|p| p.sources.contains(&source)).collect();
    if from.is_empty() {
        return Err(Unsupported {
            field: Field::SourceEngine,
            reason: format!("no transfer reads from {source}; Ferry transfers {}", describe_in(table)),
            fix: format!("use a source engine Ferry transfers from: {}", describe_in(table)),
        });
    }
    let pairs: Vec<&Pair> = from.into_iter().filter(|p| p.targets.contains(&target)).collect();
    if pairs.is_empty() {
        let mut targets: Vec<Engine> =
            table.iter().filter(|p| p.sources.contains(&source)).flat_map(|p| p.targets.iter().copied()).collect();
        targets.sort();
        targets.dedup();
        return Err(Unsupported {
            field: Field::TargetEngine,
            reason: format!("{source} → {target} transfers do not exist; Ferry transfers {}", describe_in(table)),
            fix: format!(
                "for a {source} source, set spec.target.engine to {}",
                join(&targets.iter().map(|e| e.as_str()).collect::<Vec<_>>(), "or")
            ),
        });
    }
    let Some(task) = task.filter(|t| !pairs.iter().any(|p| p.tasks.contains(t))) else {
        return Ok(());
    };
    let tasks: Vec<&str> =
        EVERY_TASK.iter().filter(|t| pairs.iter().any(|p| p.tasks.contains(t))).map(|t| t.as_str()).collect();
    Err(Unsupported {
        field: Field::TaskType,
        reason: format!("{source} → {target} transfers run {} only, not {}", join(&tasks, "and"), task.as_str()),
        fix: format!("set spec.taskType to {}", join(&tasks, "or")),
    })
}

fn describe_in(table: &[Pair]) -> String {
    let side = |engines: &[Engine]| engines.iter().map(|e| e.as_str()).collect::<Vec<_>>().join("/");
    let pairs: Vec<String> = table
        .iter()
        .map(|p| {
            let mut text = format!("{} → {}", side(p.sources), side(p.targets));
            if !EVERY_TASK.iter().all(|t| p.tasks.contains(t)) {
                let tasks: Vec<&str> = p.tasks.iter().map(|t| t.as_str()).collect();
                text.push_str(&format!(" ({} only)", tasks.join(", ")));
            }
            text
        })
        .collect();
    join(&pairs.iter().map(String::as_str).collect::<Vec<_>>(), "and")
}

/// `a`, `a and b`, `a, b and c`.
fn join(items: &[&str], word: &str) -> String {
    match items {
        [] => String::new(),
        [one] => (*one).to_owned(),
        [rest @ .., last] => format!("{} {word} {last}", rest.join(", ")),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use Engine::*;
    use TaskType::*;

    #[test]
    fn postgresql_to_postgresql_within_the_mysql_family_and_mysql_to_postgresql_run_every_task_type() {
        for task in [FullTrans, FullIncrTrans, IncrTrans] {
            assert_eq!(supported(Postgresql, Postgresql, task), Ok(()));
            for (s, t) in [
                (Mysql, Mysql),
                (Mysql, Mariadb),
                (Mariadb, Mysql),
                (Mariadb, Mariadb),
                (Mysql, Postgresql),
                (Mariadb, Postgresql),
            ] {
                assert_eq!(supported(s, t, task), Ok(()), "{s} → {t} {task:?}");
            }
        }
        assert_eq!(describe(), "postgresql → postgresql, mysql/mariadb → mysql/mariadb and mysql/mariadb → postgresql");
    }

    #[test]
    fn a_pair_that_does_not_exist_names_the_target_engine_and_what_exists() {
        let e = supported(Postgresql, Mariadb, FullTrans).unwrap_err();
        assert_eq!(e.field, Field::TargetEngine);
        assert_eq!(
            e.to_string(),
            "spec.target.engine: postgresql → mariadb transfers do not exist; Ferry transfers postgresql → \
             postgresql, mysql/mariadb → mysql/mariadb and mysql/mariadb → postgresql"
        );
        assert_eq!(e.fix, "for a postgresql source, set spec.target.engine to postgresql");
        assert_eq!(supported(Mariadb, Postgresql, IncrTrans), Ok(()));
        assert_eq!(
            supported(Postgresql, Mysql, FullTrans).unwrap_err().fix,
            "for a postgresql source, set spec.target.engine to postgresql"
        );
    }

    /// A table with a pair limited to some task types and an engine that is no source.
    const LIMITED: &[Pair] = &[
        Pair { sources: MYSQL_FAMILY, targets: MYSQL_FAMILY, tasks: EVERY_TASK, runs: &MYSQL },
        Pair {
            sources: MYSQL_FAMILY,
            targets: POSTGRESQL,
            tasks: &[FullTrans, FullIncrTrans],
            runs: &MYSQL_TO_POSTGRES,
        },
    ];

    #[test]
    fn a_pair_limited_to_some_task_types_refuses_the_others_at_the_task_type() {
        assert_eq!(check(LIMITED, Mariadb, Postgresql, Some(FullTrans)), Ok(()));
        let e = check(LIMITED, Mariadb, Postgresql, Some(IncrTrans)).unwrap_err();
        assert_eq!(
            e.to_string(),
            "spec.taskType: mariadb → postgresql transfers run FULL_TRANS and FULL_INCR_TRANS only, not INCR_TRANS"
        );
        assert_eq!(e.fix, "set spec.taskType to FULL_TRANS or FULL_INCR_TRANS");
        assert_eq!(check(LIMITED, Mariadb, Postgresql, None), Ok(()), "the engines alone are a pair");
        assert_eq!(
            describe_in(LIMITED),
            "mysql/mariadb → mysql/mariadb and mysql/mariadb → postgresql (FULL_TRANS, FULL_INCR_TRANS only)"
        );
    }

    #[test]
    fn an_engine_no_pair_reads_from_is_refused_at_the_source_engine() {
        let e = check(LIMITED, Postgresql, Postgresql, Some(FullTrans)).unwrap_err();
        assert_eq!(e.field, Field::SourceEngine);
        assert!(e.to_string().starts_with("spec.source.engine: no transfer reads from postgresql; Ferry transfers"));
    }
}
