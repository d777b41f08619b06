//! Builders for specs and resources in tests and examples: `SyncJobSpec::test().paused()`.
//!
//! They build valid values; each method changes one thing, so a test reads as the behaviour it
//! pins.

use k8s_openapi::apimachinery::pkg::apis::meta::v1::Time;

use super::batch::{BatchItem, BatchJobSpec};
use super::common::{
    DatabaseSelection, Endpoint, Engine, ObjectScope, ObjectSelection, SchemaSelection, SecretKeyRef, TableSelection,
};
use super::syncjob::{Alarm, SyncJobSpec, TaskType};

impl Endpoint {
    /// A PostgreSQL endpoint on loopback with a password Secret reference.
    pub fn test_postgres(port: u16) -> Endpoint {
        Endpoint {
            engine: Engine::Postgresql,
            host: "127.0.0.1".into(),
            port,
            database: Some("shop".into()),
            user: Some("ferry".into()),
            password_secret_ref: Some(SecretKeyRef { name: "creds".into(), key: format!("password-{port}") }),
            tls: None,
        }
    }
}

impl ObjectSelection {
    /// `shop.public.orders`, selected by table.
    pub fn test_orders() -> ObjectSelection {
        ObjectSelection {
            scope: ObjectScope::Table,
            target_database: None,
            databases: vec![DatabaseSelection {
                name: "shop".into(),
                schemas: vec![SchemaSelection {
                    name: "public".into(),
                    tables: vec![TableSelection { name: "orders".into(), ..Default::default() }],
                    ..Default::default()
                }],
                ..Default::default()
            }],
        }
    }
}

impl SyncJobSpec {
    /// A valid PostgreSQL → PostgreSQL `FULL_INCR_TRANS` job of one table.
    pub fn test() -> SyncJobSpec {
        SyncJobSpec {
            job_type: Default::default(),
            task_type: TaskType::FullIncrTrans,
            description: None,
            source: Endpoint::test_postgres(5432),
            target: Endpoint::test_postgres(5433),
            objects: ObjectSelection::test_orders(),
            policy: Default::default(),
            speed_limits: Vec::new(),
            alarm: None,
            expired_days: 14,
            slot_retention_minutes: super::syncjob::DEFAULT_SLOT_RETENTION_MINUTES,
            node_type: Default::default(),
            worker: None,
            tuning: None,
            retry: Default::default(),
            paused: false,
            stopped: false,
            start_time: None,
            start_position: None,
            precheck: None,
            debug: None,
        }
    }

    /// With another task type.
    pub fn task(mut self, task_type: TaskType) -> Self {
        self.task_type = task_type;
        self
    }

    /// Paused.
    pub fn paused(mut self) -> Self {
        self.paused = true;
        self
    }

    /// Stopped.
    pub fn stopped(mut self) -> Self {
        self.stopped = true;
        self
    }

    /// Scheduled to start at `at`.
    pub fn starting_at(mut self, at: jiff::Timestamp) -> Self {
        self.start_time = Some(Time(at));
        self
    }

    /// With this many automatic retries.
    pub fn retries(mut self, limit: u32) -> Self {
        self.retry.limit = limit;
        self
    }

    /// With a lag alarm threshold.
    pub fn lag_alarm(mut self, seconds: u32) -> Self {
        self.alarm = Some(Alarm { delay_seconds: Some(seconds), ..Default::default() });
        self
    }

    /// With `slotRetentionMinutes`.
    pub fn slot_retention_minutes(mut self, minutes: u32) -> Self {
        self.slot_retention_minutes = minutes;
        self
    }

    /// With `expiredDays`.
    pub fn expires_after_days(mut self, days: u32) -> Self {
        self.expired_days = days;
        self
    }
}

impl BatchJobSpec {
    /// A batch of [`SyncJobSpec::test`] jobs without their `objects`: each item's overrides
    /// select the table `public.<item>` of database `shop`.
    pub fn test(items: &[&str], max_concurrent: Option<u32>) -> BatchJobSpec {
        let mut template = serde_json::to_value(SyncJobSpec::test()).unwrap_or_default();
        if let Some(t) = template.as_object_mut() {
            t.remove("objects");
        }
        BatchJobSpec {
            template,
            jobs: items
                .iter()
                .map(|n| BatchItem {
                    name: (*n).into(),
                    overrides: Some(serde_json::json!({"objects": {"scope": "table", "databases": [
                        {"name": "shop", "tables": [{"name": n}]}
                    ]}})),
                })
                .collect(),
            max_concurrent,
            paused: false,
        }
    }
}
