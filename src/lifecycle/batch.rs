//! The BatchJob plan: from the batch's spec and the child SyncJobs that exist, decide which
//! children to create, update and delete, and aggregate the children into the batch's status.
//! Pure, like the SyncJob's: every rule is a unit test.
//!
//! - Each item's child is the template with the item's overrides merged in (JSON merge patch),
//!   named `<batch>-<item>`; `spec.paused` of the batch pauses every child on top of its own.
//! - **Rollout.** A child holds one of `maxConcurrent` slots from its creation until its full
//!   transfer is done or its incremental transfer has started, or until it is released. Failed
//!   children keep their slot, so a batch whose children fail stops rolling out (`Stalled`)
//!   instead of starting every item against a source that is in trouble. Items without a child
//!   are created in list order while slots are free; nothing new is created while paused.
//! - An item whose merged spec is invalid gets its own row and no child (an existing child keeps
//!   its last valid spec); the others proceed.
//! - A child whose item left the list is deleted; its finalizer releases its source resources.

use std::collections::{BTreeMap, BTreeSet};

use jiff::Timestamp;

use super::conditions::{self, Status, types};
use crate::api::batch::{BatchChildStatus, BatchItem, BatchJobSpec, BatchJobStatus};
use crate::api::validate::{FieldError, describe};
use crate::api::{BatchPhase, SyncJobPhase, SyncJobSpec, SyncJobStatus};

/// Label on every child: the batch's name.
pub const LABEL_BATCH: &str = "ferry.dev/batch";
/// Label on every child: its item's name.
pub const LABEL_ITEM: &str = "ferry.dev/batch-item";

/// Key of `status.counts` for items waiting for a slot (or for the batch to resume).
pub const COUNT_WAITING: &str = "WAITING";
/// Key of `status.counts` for items whose merged spec is invalid or whose child name is taken.
pub const COUNT_INVALID: &str = "INVALID";

/// Name of an item's child SyncJob.
pub fn child_name(batch: &str, item: &str) -> String {
    format!("{batch}-{item}")
}

/// A child SyncJob as the controller observed it.
#[derive(Clone, Debug, PartialEq)]
pub struct Child {
    /// The item it belongs to (its `ferry.dev/batch-item` label).
    pub item: String,
    /// Its spec.
    pub spec: SyncJobSpec,
    /// Its status, once its controller wrote one.
    pub status: Option<SyncJobStatus>,
    /// Whether it is being deleted.
    pub deleting: bool,
}

impl Child {
    /// Whether the child occupies a rollout slot: created, not being deleted, and neither past
    /// its full transfer nor streaming nor released.
    pub fn holds_slot(&self) -> bool {
        if self.deleting {
            return false;
        }
        let Some(st) = &self.status else { return true };
        if st.full_complete_time.is_some() || st.incr_start_time.is_some() {
            return false;
        }
        !matches!(
            st.phase,
            Some(SyncJobPhase::IncreTransferStarted | SyncJobPhase::ReleaseResourceStarted)
                | Some(SyncJobPhase::ReleaseResourceComplete)
        )
    }

    fn phase(&self) -> Option<SyncJobPhase> {
        self.status.as_ref().and_then(|s| s.phase)
    }

    fn condition_true(&self, type_: &str) -> bool {
        self.status.as_ref().is_some_and(|s| conditions::is_true(&s.conditions, type_))
    }

    /// Whether the child failed or cannot progress without a change.
    fn failed(&self) -> bool {
        self.phase().is_some_and(|p| p.is_failed() || p == SyncJobPhase::ReleaseResourceFailed)
            || self.condition_true(types::STALLED)
    }

    /// Whether the child has done all it will do.
    fn complete(&self) -> bool {
        match self.phase() {
            Some(SyncJobPhase::ReleaseResourceComplete) => true,
            Some(SyncJobPhase::FullTransferComplete) => !self.spec.task_type.has_incremental(),
            _ => false,
        }
    }

    fn row(&self, item: &str, name: String) -> BatchChildStatus {
        let st = self.status.as_ref();
        let error = st.and_then(|s| s.last_error.as_ref()).filter(|_| self.failed());
        let stalled = st
            .and_then(|s| conditions::get(&s.conditions, types::STALLED))
            .filter(|c| c.status == "True")
            .map(|c| c.message.clone());
        BatchChildStatus {
            name: item.to_owned(),
            sync_job: Some(name),
            phase: self.phase(),
            message: stalled.or_else(|| error.map(|e| e.message.clone())),
            error_code: error.map(|e| e.code.clone()),
        }
    }
}

/// What the controller observed.
#[derive(Clone, Debug, PartialEq)]
pub struct BatchObserved {
    /// `metadata.name` of the batch.
    pub name: String,
    /// `metadata.generation` of the batch.
    pub generation: i64,
    /// Whether the batch is being deleted (its children go with it).
    pub deleting: bool,
    /// The batch's children, by item.
    pub children: Vec<Child>,
}

/// Something to do.
#[derive(Clone, Debug, PartialEq)]
pub enum BatchAction {
    /// Create the child of `item` with this spec.
    Create { item: String, spec: Box<SyncJobSpec> },
    /// Give the existing child of `item` this spec.
    Update { item: String, spec: Box<SyncJobSpec> },
    /// Delete the child of `item` (its item left the list).
    Delete { item: String },
    /// Record an Event on the batch.
    Event { warning: bool, reason: &'static str, message: String },
}

/// The outcome of [`plan`].
#[derive(Clone, Debug, PartialEq)]
pub struct BatchPlan {
    /// The new status.
    pub status: BatchJobStatus,
    /// What to do, in order.
    pub actions: Vec<BatchAction>,
}

/// The batch-level and per-item violations of a batch spec.
fn split_errors(spec: &BatchJobSpec, batch: &str) -> (Vec<FieldError>, BTreeMap<usize, Vec<String>>) {
    let mut batch_level = Vec::new();
    let mut per_item: BTreeMap<usize, Vec<String>> = BTreeMap::new();
    for e in spec.validate_named(batch) {
        let index = e
            .path
            .strip_prefix("spec.jobs[")
            .and_then(|rest| rest.split_once(']'))
            .and_then(|(i, _)| i.parse::<usize>().ok());
        match index {
            Some(i) => {
                let prefix = format!("spec.jobs[{i}]");
                let field = e.path.strip_prefix(&prefix).unwrap_or("").trim_start_matches('.');
                per_item.entry(i).or_default().push(if field.is_empty() {
                    e.message
                } else {
                    format!("{field}: {}", e.message)
                });
            }
            None => batch_level.push(e),
        }
    }
    (batch_level, per_item)
}

/// The spec an item's child should have: the merged spec, paused when the batch is.
pub fn desired_spec(spec: &BatchJobSpec, item: &BatchItem) -> Result<SyncJobSpec, String> {
    let mut child = spec.child_spec(item)?;
    child.paused |= spec.paused;
    Ok(child)
}

/// Decides the children and the status of a batch.
pub fn plan(spec: &BatchJobSpec, old: &BatchJobStatus, obs: &BatchObserved, now: Timestamp) -> BatchPlan {
    let mut actions = Vec::new();
    let mut rows = Vec::with_capacity(spec.jobs.len());
    let (batch_errors, item_errors) = split_errors(spec, &obs.name);
    let children: BTreeMap<&str, &Child> = obs.children.iter().map(|c| (c.item.as_str(), c)).collect();
    let listed: BTreeSet<&str> = spec.jobs.iter().map(|i| i.name.as_str()).collect();
    let acting = batch_errors.is_empty() && !obs.deleting;

    if acting {
        for c in obs.children.iter().filter(|c| !listed.contains(c.item.as_str()) && !c.deleting) {
            actions.push(BatchAction::Delete { item: c.item.clone() });
            actions.push(event(
                false,
                "ChildDeleted",
                format!("item {:?} left spec.jobs: deleting its SyncJob", c.item),
            ));
        }
    }

    let mut in_use = obs.children.iter().filter(|c| listed.contains(c.item.as_str()) && c.holds_slot()).count();
    let limit = spec.max_concurrent.map_or(usize::MAX, |m| m as usize);
    let mut counts: BTreeMap<String, u32> = BTreeMap::new();
    let (mut waiting, mut invalid, mut failed_names) = (0u32, 0u32, Vec::new());
    for (i, item) in spec.jobs.iter().enumerate() {
        let name = child_name(&obs.name, &item.name);
        let child = children.get(item.name.as_str()).copied();
        let mut row = match child {
            Some(c) => c.row(&item.name, name.clone()),
            None => BatchChildStatus {
                name: item.name.clone(),
                sync_job: None,
                phase: None,
                message: None,
                error_code: None,
            },
        };
        if let Some(errs) = item_errors.get(&i) {
            invalid += 1;
            let kept = if child.is_some() { " (its SyncJob keeps its last valid spec)" } else { "" };
            let message = format!("invalid: {}{kept}", errs.join("; "));
            let known = old.jobs.iter().any(|r| r.name == item.name && r.message.as_deref() == Some(&message));
            if !known {
                actions.push(event(true, "ItemInvalid", format!("item {:?}: {message}", item.name)));
            }
            failed_names.push(item.name.clone());
            row.message = Some(message);
            rows.push(row);
            continue;
        }
        let desired = match desired_spec(spec, item) {
            Ok(d) => d,
            // Unreachable after validation; kept as a row rather than a panic.
            Err(e) => {
                invalid += 1;
                failed_names.push(item.name.clone());
                row.message = Some(format!("invalid: {e}"));
                rows.push(row);
                continue;
            }
        };
        match child {
            Some(c) if c.deleting => {
                row.message = Some("waiting for the previous SyncJob of this item to be deleted".into());
                waiting += 1;
            }
            Some(c) => {
                if acting && c.spec != desired {
                    actions.push(BatchAction::Update { item: item.name.clone(), spec: Box::new(desired) });
                    actions.push(event(false, "ChildUpdated", format!("SyncJob {name}: spec updated from the batch")));
                }
                if let Some(p) = c.phase() {
                    *counts.entry(p.as_str().to_owned()).or_default() += 1;
                }
                if c.failed() {
                    failed_names.push(item.name.clone());
                }
            }
            None if !acting => {
                row.message = Some(if obs.deleting {
                    "not created: the batch is being deleted".into()
                } else {
                    "not created: the batch spec is invalid".into()
                });
                waiting += 1;
            }
            None if spec.paused => {
                row.message = Some("waiting: the batch is paused".into());
                waiting += 1;
            }
            None if in_use < limit => {
                in_use += 1;
                actions.push(BatchAction::Create { item: item.name.clone(), spec: Box::new(desired) });
                actions.push(event(false, "ChildCreated", format!("SyncJob {name} created")));
                row.sync_job = Some(name);
                row.message = Some("created".into());
            }
            None => {
                row.message = Some(format!(
                    "waiting for a rollout slot: {in_use} of maxConcurrent {limit} in use, in list order"
                ));
                waiting += 1;
            }
        }
        rows.push(row);
    }
    if waiting > 0 {
        counts.insert(COUNT_WAITING.into(), waiting);
    }
    if invalid > 0 {
        counts.insert(COUNT_INVALID.into(), invalid);
    }

    let mut st = old.clone();
    st.total = u32::try_from(spec.jobs.len()).unwrap_or(u32::MAX);
    st.running = spec
        .jobs
        .iter()
        .filter_map(|i| children.get(i.name.as_str()))
        .filter(|c| c.phase().is_some_and(|p| p.is_running()))
        .count() as u32;
    st.failed = failed_names.len() as u32;
    st.counts = counts;
    st.jobs = rows;
    st.observed_generation = Some(obs.generation);

    let present: Vec<&Child> = spec.jobs.iter().filter_map(|i| children.get(i.name.as_str()).copied()).collect();
    let every_item_has_child = present.len() == spec.jobs.len() && present.iter().all(|c| !c.deleting);
    let phase = if !batch_errors.is_empty() || !failed_names.is_empty() {
        BatchPhase::Failed
    } else if spec.paused {
        BatchPhase::Paused
    } else if every_item_has_child && present.iter().all(|c| c.complete()) {
        BatchPhase::Complete
    } else if waiting > 0 {
        BatchPhase::RollingOut
    } else if present.len() < spec.jobs.len()
        || present.iter().any(|c| {
            matches!(
                c.phase(),
                None | Some(
                    SyncJobPhase::Creating
                        | SyncJobPhase::CreateFailed
                        | SyncJobPhase::Configuration
                        | SyncJobPhase::WaitingForStart
                )
            )
        })
    {
        BatchPhase::Creating
    } else {
        BatchPhase::Running
    };
    if old.phase != Some(phase) {
        let warning = phase == BatchPhase::Failed;
        actions.push(event(warning, "PhaseChanged", format!("phase {phase}")));
    }
    st.phase = Some(phase);

    let ready_count = present.iter().filter(|c| c.condition_true(types::READY) && !c.deleting).count();
    let ready = batch_errors.is_empty() && failed_names.is_empty() && ready_count == spec.jobs.len();
    let stalled_message = if !batch_errors.is_empty() {
        Some(format!("the batch spec is invalid: {}", describe(&batch_errors)))
    } else if !failed_names.is_empty() {
        let shown: Vec<&str> = failed_names.iter().take(10).map(String::as_str).collect();
        let more = failed_names.len().saturating_sub(shown.len());
        let more = if more > 0 { format!(" and {more} more") } else { String::new() };
        Some(format!(
            "failed or invalid: {}{more}; fix them in spec.jobs (their rows say why) or remove them",
            shown.join(", ")
        ))
    } else {
        None
    };
    let progressing = !spec.paused
        && acting
        && (waiting > 0
            || present.iter().any(|c| !c.condition_true(types::READY) && !c.failed())
            || actions.iter().any(|a| !matches!(a, BatchAction::Event { .. })));
    let reason = phase_reason(phase);
    let summary = format!("{ready_count} of {} children ready", spec.jobs.len());
    let g = obs.generation;
    let conds = &mut st.conditions;
    conditions::set(conds, types::READY, Status::from_bool(ready), reason, summary.clone(), g, now);
    conditions::set(
        conds,
        types::STALLED,
        Status::from_bool(stalled_message.is_some()),
        reason,
        stalled_message.unwrap_or_else(|| summary.clone()),
        g,
        now,
    );
    conditions::set(conds, types::RECONCILING, Status::from_bool(!ready && progressing), reason, summary, g, now);
    BatchPlan { status: st, actions }
}

/// Marks an item whose child name is taken by a SyncJob outside the batch (the create was
/// refused): its row says so and it counts as failed.
pub fn mark_name_taken(status: &mut BatchJobStatus, item: &str, child: &str, now: Timestamp) {
    let Some(row) = status.jobs.iter_mut().find(|r| r.name == item) else { return };
    row.sync_job = None;
    row.message = Some(format!(
        "a SyncJob named {child} already exists and does not belong to this batch: rename the item or that SyncJob"
    ));
    status.failed += 1;
    *status.counts.entry(COUNT_INVALID.into()).or_default() += 1;
    status.phase = Some(BatchPhase::Failed);
    let generation = status.observed_generation.unwrap_or(0);
    let message = format!("item {item:?}: the name {child} is taken by a SyncJob outside this batch");
    let conds = &mut status.conditions;
    conditions::set(conds, types::STALLED, Status::True, "Failed", message.clone(), generation, now);
    conditions::set(conds, types::READY, Status::False, "Failed", message.clone(), generation, now);
    conditions::set(conds, types::RECONCILING, Status::False, "Failed", message, generation, now);
}

/// Marks the row of `item` refused by the operator's policy (`spec.worker` asks for an image,
/// tolerations or node labels the operator does not allow): no child is created for it and an
/// existing child keeps its last spec; the batch is `Failed` with the reason.
pub fn mark_refused(status: &mut BatchJobStatus, item: &str, reason: &str, has_child: bool, now: Timestamp) {
    let Some(row) = status.jobs.iter_mut().find(|r| r.name == item) else { return };
    let kept = if has_child { " (its SyncJob keeps its last spec)" } else { "" };
    let message = format!("refused by the operator: {reason}{kept}");
    if !has_child {
        let was_waiting =
            row.message.as_deref().is_some_and(|m| m.starts_with("waiting") || m.starts_with("not created"));
        row.sync_job = None;
        *status.counts.entry(COUNT_INVALID.into()).or_default() += 1;
        if was_waiting && let Some(n) = status.counts.get_mut(COUNT_WAITING) {
            *n = n.saturating_sub(1);
        }
        status.counts.retain(|_, n| *n > 0);
    }
    row.message = Some(message);
    status.failed += 1;
    status.phase = Some(BatchPhase::Failed);
    let generation = status.observed_generation.unwrap_or(0);
    let message = format!("item {item:?} is refused by the operator: {reason}");
    let conds = &mut status.conditions;
    conditions::set(conds, types::STALLED, Status::True, "Failed", message.clone(), generation, now);
    conditions::set(conds, types::READY, Status::False, "Failed", message.clone(), generation, now);
    conditions::set(conds, types::RECONCILING, Status::False, "Failed", message, generation, now);
}

fn event(warning: bool, reason: &'static str, message: String) -> BatchAction {
    BatchAction::Event { warning, reason, message }
}

fn phase_reason(phase: BatchPhase) -> &'static str {
    match phase {
        BatchPhase::Creating => "Creating",
        BatchPhase::RollingOut => "RollingOut",
        BatchPhase::Running => "Running",
        BatchPhase::Paused => "Paused",
        BatchPhase::Complete => "Complete",
        BatchPhase::Failed => "Failed",
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::api::LastError;
    use crate::api::batch::merge_patch;
    use serde_json::json;

    fn now() -> Timestamp {
        Timestamp::from_second(1_800_000_000).unwrap()
    }

    fn batch(items: &[&str], max: Option<u32>) -> BatchJobSpec {
        BatchJobSpec::test(items, max)
    }

    #[test]
    fn an_item_refused_by_the_operator_counts_as_invalid_not_waiting_and_fails_the_batch() {
        let spec = BatchJobSpec::test(&["a", "b"], Some(1));
        let p = plan(&spec, &BatchJobStatus::default(), &observed(vec![]), Timestamp::now());
        let mut st = p.status;
        assert_eq!(st.counts.get(COUNT_WAITING), Some(&1), "b waits for a slot");
        mark_refused(&mut st, "b", "worker.image: not allowed", false, Timestamp::now());
        assert_eq!(st.counts.get(COUNT_WAITING), None);
        assert_eq!(st.counts.get(COUNT_INVALID), Some(&1));
        assert_eq!(st.phase, Some(BatchPhase::Failed));
        assert_eq!(st.jobs[1].message.as_deref(), Some("refused by the operator: worker.image: not allowed"));
    }

    fn observed(children: Vec<Child>) -> BatchObserved {
        BatchObserved { name: "b".into(), generation: 1, deleting: false, children }
    }

    fn child(spec: &BatchJobSpec, name: &str, phase: Option<SyncJobPhase>) -> Child {
        let item = spec.jobs.iter().find(|i| i.name == name).unwrap();
        Child {
            item: name.into(),
            spec: desired_spec(spec, item).unwrap(),
            status: phase.map(|p| SyncJobStatus { phase: Some(p), ..Default::default() }),
            deleting: false,
        }
    }

    fn streaming(spec: &BatchJobSpec, name: &str) -> Child {
        let mut c = child(spec, name, Some(SyncJobPhase::IncreTransferStarted));
        let st = c.status.as_mut().unwrap();
        st.incr_start_time = Some(k8s_openapi::apimachinery::pkg::apis::meta::v1::Time(now()));
        conditions::set(&mut st.conditions, types::READY, Status::True, "Streaming", "ok", 1, now());
        c
    }

    fn created(p: &BatchPlan) -> Vec<&str> {
        p.actions
            .iter()
            .filter_map(|a| if let BatchAction::Create { item, .. } = a { Some(item.as_str()) } else { None })
            .collect()
    }

    fn cond<'a>(st: &'a BatchJobStatus, t: &str) -> &'a k8s_openapi::apimachinery::pkg::apis::meta::v1::Condition {
        conditions::get(&st.conditions, t).unwrap()
    }

    #[test]
    fn merge_patch_follows_rfc_7386() {
        let mut t = json!({"a": {"b": 1, "c": 2}, "l": [1, 2], "k": "v"});
        merge_patch(&mut t, &json!({"a": {"b": null, "d": 3}, "l": [3], "k": null, "n": {"x": 1}}));
        assert_eq!(t, json!({"a": {"c": 2, "d": 3}, "l": [3], "n": {"x": 1}}));
        let mut s = json!("scalar");
        merge_patch(&mut s, &json!({"a": 1}));
        assert_eq!(s, json!({"a": 1}));
    }

    #[test]
    fn an_items_overrides_replace_lists_and_merge_objects_onto_the_template() {
        let mut spec = batch(&["a"], None);
        spec.jobs[0].overrides = Some(json!({
            "source": {"port": 6543},
            "objects": {"scope": "table", "databases": [{"name": "shop", "tables": [{"name": "x"}]}]},
            "alarm": null
        }));
        let child = desired_spec(&spec, &spec.jobs[0]).unwrap();
        assert_eq!(child.source.port, 6543);
        assert_eq!(child.source.host, SyncJobSpec::test().source.host, "sibling fields are kept");
        assert_eq!(child.objects.databases[0].tables[0].name, "x");
        assert_eq!(child_name("tenants", "acme"), "tenants-acme");
    }

    #[test]
    fn a_new_batch_creates_children_up_to_max_concurrent_in_list_order() {
        let spec = batch(&["a", "b", "c"], Some(2));
        let p = plan(&spec, &BatchJobStatus::default(), &observed(vec![]), now());
        assert_eq!(created(&p), ["a", "b"]);
        assert_eq!(p.status.phase, Some(BatchPhase::RollingOut));
        assert_eq!(p.status.counts.get(COUNT_WAITING), Some(&1));
        assert!(p.status.jobs[2].message.as_deref().unwrap().contains("maxConcurrent 2"));
        assert_eq!(p.status.jobs[0].sync_job.as_deref(), Some("b-a"));
        assert!(conditions::is_true(&p.status.conditions, types::RECONCILING));
        assert!(!conditions::is_true(&p.status.conditions, types::READY));
        let unlimited = plan(&batch(&["a", "b", "c"], None), &BatchJobStatus::default(), &observed(vec![]), now());
        assert_eq!(created(&unlimited), ["a", "b", "c"]);
    }

    #[test]
    fn a_slot_frees_once_a_child_streams_or_finishes_its_full_transfer() {
        let spec = batch(&["a", "b", "c", "d"], Some(2));
        // a streams, b still copies: one slot free, so c (not d) starts.
        let kids = vec![streaming(&spec, "a"), child(&spec, "b", Some(SyncJobPhase::FullTransferStarted))];
        let p = plan(&spec, &BatchJobStatus::default(), &observed(kids), now());
        assert_eq!(created(&p), ["c"]);
        let mut full_done = child(&spec, "b", Some(SyncJobPhase::FullTransferComplete));
        full_done.status.as_mut().unwrap().full_complete_time =
            Some(k8s_openapi::apimachinery::pkg::apis::meta::v1::Time(now()));
        assert!(!full_done.holds_slot());
        assert!(child(&spec, "b", None).holds_slot(), "a child without status yet holds its slot");
        assert!(child(&spec, "b", Some(SyncJobPhase::Configuration)).holds_slot());
    }

    #[test]
    fn failed_children_keep_their_slot_and_stall_the_rollout() {
        let spec = batch(&["a", "b", "c"], Some(2));
        let mut bad = child(&spec, "a", Some(SyncJobPhase::FullTransferFailed));
        bad.status.as_mut().unwrap().last_error =
            Some(LastError { code: "TARGET_WRITE".into(), message: "disk full".into(), time: None });
        let kids = vec![bad, child(&spec, "b", Some(SyncJobPhase::FullTransferStarted))];
        let p = plan(&spec, &BatchJobStatus::default(), &observed(kids), now());
        assert!(created(&p).is_empty());
        assert_eq!(p.status.phase, Some(BatchPhase::Failed));
        assert_eq!(p.status.failed, 1);
        assert_eq!(p.status.jobs[0].error_code.as_deref(), Some("TARGET_WRITE"));
        assert_eq!(p.status.jobs[0].message.as_deref(), Some("disk full"));
        let stalled = cond(&p.status, types::STALLED);
        assert_eq!(stalled.status, "True");
        assert!(stalled.message.contains("failed or invalid: a"), "{}", stalled.message);
        assert!(
            p.actions.iter().any(|a| matches!(a, BatchAction::Event { warning: true, reason: "PhaseChanged", .. }))
        );
    }

    #[test]
    fn an_invalid_item_gets_its_own_row_and_the_others_proceed() {
        let mut spec = batch(&["a", "b"], None);
        merge_patch(spec.jobs[0].overrides.as_mut().unwrap(), &json!({"source": {"port": 0}}));
        let p = plan(&spec, &BatchJobStatus::default(), &observed(vec![]), now());
        assert_eq!(created(&p), ["b"]);
        let row = &p.status.jobs[0];
        assert!(row.sync_job.is_none());
        let msg = row.message.as_deref().unwrap();
        assert!(msg.starts_with("invalid: ") && msg.contains("spec.source.port"), "{msg}");
        assert_eq!(p.status.counts.get(COUNT_INVALID), Some(&1));
        assert_eq!(p.status.phase, Some(BatchPhase::Failed));
        assert!(p.actions.iter().any(|a| matches!(a, BatchAction::Event { reason: "ItemInvalid", .. })));
        // The same invalid row again: no second Event.
        let again = plan(&spec, &p.status, &observed(vec![]), now());
        assert!(!again.actions.iter().any(|a| matches!(a, BatchAction::Event { reason: "ItemInvalid", .. })));
        // A broken merge (not a SyncJob spec) is a row too.
        spec.jobs[0].overrides = Some(json!({"taskType": "NOPE"}));
        let p = plan(&spec, &BatchJobStatus::default(), &observed(vec![]), now());
        assert!(p.status.jobs[0].message.as_deref().unwrap().contains("not a valid SyncJob spec"));
    }

    #[test]
    fn an_item_turned_invalid_keeps_its_child_untouched() {
        let mut spec = batch(&["a"], None);
        let kid = streaming(&spec, "a");
        merge_patch(spec.jobs[0].overrides.as_mut().unwrap(), &json!({"source": {"port": 0}}));
        let p = plan(&spec, &BatchJobStatus::default(), &observed(vec![kid]), now());
        assert!(p.actions.iter().all(|a| matches!(a, BatchAction::Event { .. })), "{:?}", p.actions);
        assert!(p.status.jobs[0].message.as_deref().unwrap().contains("keeps its last valid spec"));
        assert_eq!(p.status.jobs[0].sync_job.as_deref(), Some("b-a"));
    }

    #[test]
    fn editing_the_template_or_an_item_updates_only_the_changed_children() {
        let mut spec = batch(&["a", "b"], None);
        let kids = vec![streaming(&spec, "a"), streaming(&spec, "b")];
        let same = plan(&spec, &BatchJobStatus::default(), &observed(kids.clone()), now());
        assert!(same.actions.iter().all(|a| matches!(a, BatchAction::Event { .. })));
        assert_eq!(same.status.phase, Some(BatchPhase::Running));
        assert!(conditions::is_true(&same.status.conditions, types::READY));
        assert!(!conditions::is_true(&same.status.conditions, types::RECONCILING));

        merge_patch(spec.jobs[1].overrides.as_mut().unwrap(), &json!({"nodeType": "high"}));
        let p = plan(&spec, &same.status, &observed(kids.clone()), now());
        let updated: Vec<_> = p
            .actions
            .iter()
            .filter_map(|a| if let BatchAction::Update { item, spec } = a { Some((item.as_str(), spec)) } else { None })
            .collect();
        assert_eq!(updated.len(), 1);
        assert_eq!(updated[0].0, "b");
        assert_eq!(updated[0].1.node_type, crate::api::NodeType::High);

        merge_patch(&mut spec.template, &json!({"tuning": {"batchRows": 5000}}));
        let p = plan(&spec, &same.status, &observed(kids), now());
        assert_eq!(p.actions.iter().filter(|a| matches!(a, BatchAction::Update { .. })).count(), 2);
    }

    #[test]
    fn removing_an_item_deletes_its_child_and_adding_one_creates_it() {
        let spec = batch(&["a", "b"], None);
        let kids = vec![streaming(&spec, "a"), streaming(&spec, "b")];
        let fewer = batch(&["a", "c"], None);
        let p = plan(&fewer, &BatchJobStatus::default(), &observed(kids), now());
        assert!(p.actions.contains(&BatchAction::Delete { item: "b".into() }));
        assert_eq!(created(&p), ["c"]);
        assert_eq!(p.status.total, 2);
        assert_eq!(p.status.jobs.iter().map(|r| r.name.as_str()).collect::<Vec<_>>(), ["a", "c"]);
        // A child already being deleted is not deleted again, and does not hold a slot.
        let mut going = streaming(&spec, "b");
        going.deleting = true;
        let p = plan(&fewer, &BatchJobStatus::default(), &observed(vec![going]), now());
        assert!(!p.actions.iter().any(|a| matches!(a, BatchAction::Delete { .. })));
    }

    #[test]
    fn pausing_the_batch_pauses_every_child_and_starts_nothing_new() {
        let mut spec = batch(&["a", "b", "c"], Some(2));
        let kids = vec![streaming(&spec, "a"), child(&spec, "b", Some(SyncJobPhase::FullTransferStarted))];
        spec.paused = true;
        let p = plan(&spec, &BatchJobStatus::default(), &observed(kids.clone()), now());
        let paused: Vec<_> = p
            .actions
            .iter()
            .filter_map(|a| {
                if let BatchAction::Update { item, spec } = a { Some((item.clone(), spec.paused)) } else { None }
            })
            .collect();
        assert_eq!(paused, [("a".to_owned(), true), ("b".to_owned(), true)]);
        assert!(created(&p).is_empty());
        assert_eq!(p.status.phase, Some(BatchPhase::Paused));
        assert_eq!(p.status.jobs[2].message.as_deref(), Some("waiting: the batch is paused"));
        assert!(!conditions::is_true(&p.status.conditions, types::RECONCILING));
        // An item paused by its own overrides stays paused when the batch resumes.
        spec.paused = false;
        spec.jobs[0].overrides.as_mut().unwrap()["paused"] = json!(true);
        assert!(desired_spec(&spec, &spec.jobs[0]).unwrap().paused);
        assert!(!desired_spec(&spec, &spec.jobs[1]).unwrap().paused);
    }

    #[test]
    fn status_aggregates_the_children() {
        let spec = batch(&["a", "b", "c", "d"], None);
        let mut stalled = streaming(&spec, "c");
        conditions::set(
            &mut stalled.status.as_mut().unwrap().conditions,
            types::STALLED,
            Status::True,
            "CheckpointStalled",
            "the checkpoint has not moved for 600 s",
            1,
            now(),
        );
        let kids = vec![
            streaming(&spec, "a"),
            streaming(&spec, "b"),
            stalled,
            child(&spec, "d", Some(SyncJobPhase::FullTransferStarted)),
        ];
        let p = plan(&spec, &BatchJobStatus::default(), &observed(kids), now());
        let st = &p.status;
        assert_eq!((st.total, st.running, st.failed), (4, 4, 1));
        assert_eq!(st.counts.get("INCRE_TRANSFER_STARTED"), Some(&3));
        assert_eq!(st.counts.get("FULL_TRANSFER_STARTED"), Some(&1));
        assert_eq!(st.jobs[2].message.as_deref(), Some("the checkpoint has not moved for 600 s"));
        assert_eq!(st.observed_generation, Some(1));
        assert!(cond(st, types::READY).message.contains("3 of 4"));
        assert_eq!(st.phase, Some(BatchPhase::Failed));
    }

    #[test]
    fn phases_follow_the_children() {
        let spec = batch(&["a", "b"], None);
        let phase = |kids: Vec<Child>| plan(&spec, &BatchJobStatus::default(), &observed(kids), now()).status.phase;
        assert_eq!(phase(vec![]), Some(BatchPhase::Creating));
        assert_eq!(
            phase(vec![streaming(&spec, "a"), child(&spec, "b", Some(SyncJobPhase::Configuration))]),
            Some(BatchPhase::Creating)
        );
        assert_eq!(
            phase(vec![streaming(&spec, "a"), child(&spec, "b", Some(SyncJobPhase::FullTransferStarted))]),
            Some(BatchPhase::Running)
        );
        let done = |n: &str| child(&spec, n, Some(SyncJobPhase::ReleaseResourceComplete));
        assert_eq!(phase(vec![done("a"), done("b")]), Some(BatchPhase::Complete));
        let mut full = batch(&["a"], None);
        full.template["taskType"] = json!("FULL_TRANS");
        let c = child(&full, "a", Some(SyncJobPhase::FullTransferComplete));
        let p = plan(&full, &BatchJobStatus::default(), &observed(vec![c]), now());
        assert_eq!(p.status.phase, Some(BatchPhase::Complete));
    }

    #[test]
    fn an_invalid_batch_does_nothing_and_says_why() {
        let mut spec = batch(&["a"], Some(1));
        spec.template = json!("not an object");
        let p = plan(&spec, &BatchJobStatus::default(), &observed(vec![]), now());
        assert!(created(&p).is_empty());
        assert_eq!(p.status.phase, Some(BatchPhase::Failed));
        assert!(cond(&p.status, types::STALLED).message.contains("spec.template"));
    }

    #[test]
    fn a_batch_being_deleted_creates_and_deletes_nothing() {
        let spec = batch(&["a", "b"], None);
        let mut obs = observed(vec![streaming(&batch(&["a", "x"], None), "x")]);
        obs.deleting = true;
        let p = plan(&spec, &BatchJobStatus::default(), &obs, now());
        assert!(p.actions.iter().all(|a| matches!(a, BatchAction::Event { .. })), "{:?}", p.actions);
    }

    #[test]
    fn a_taken_child_name_is_marked_on_its_row() {
        let spec = batch(&["a"], None);
        let mut p = plan(&spec, &BatchJobStatus::default(), &observed(vec![]), now());
        mark_name_taken(&mut p.status, "a", "b-a", now());
        assert!(p.status.jobs[0].message.as_deref().unwrap().contains("already exists"));
        assert_eq!(p.status.phase, Some(BatchPhase::Failed));
        assert_eq!(p.status.failed, 1);
        assert!(conditions::is_true(&p.status.conditions, types::STALLED));
        assert!(!conditions::is_true(&p.status.conditions, types::READY));
    }
}
