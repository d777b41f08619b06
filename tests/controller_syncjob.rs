//! SyncJob and CompareTask controller scenarios against a mocked Kubernetes API (as kube-rs's reference
//! controller tests): each test runs one reconcile and asserts the exact API calls it makes, in
//! order, answering each as the API server would.

mod mock_api;

use std::sync::Arc;

use ferry::api::{
    PrecheckItem, PrecheckResult, PrecheckStatus, SlotStatus, SyncJob, SyncJobPhase, SyncJobSpec, SyncJobStatus,
    TransferStage, WorkerStatus,
};
use ferry::controller::pods::{self, Role};
use ferry::controller::syncjob::{FINALIZER, reconcile};
use http::Method;
use k8s_openapi::api::core::v1::{Pod, PodStatus};
use mock_api::{call, context, echo, refused_with};
use serde_json::{Value, json};

const JOBS: &str = "/apis/ferry.dev/v1alpha1/namespaces/shop/syncjobs";
const PODS: &str = "/api/v1/namespaces/shop/pods";

fn job(status: Option<SyncJobStatus>) -> SyncJob {
    let mut j = SyncJob::new("orders", SyncJobSpec::test());
    j.metadata.namespace = Some("shop".into());
    j.metadata.uid = Some("uid-1".into());
    j.metadata.generation = Some(1);
    j.metadata.finalizers = Some(vec![FINALIZER.into()]);
    j.status = status;
    j
}

fn pod_list(pods: Vec<Pod>) -> Value {
    json!({"apiVersion": "v1", "kind": "PodList", "metadata": {}, "items": pods})
}

fn running(job: &SyncJob, role: Role, n: i64, phase: &str) -> Pod {
    let mut p = pods::build(job, role, n, "ferry:test").unwrap();
    p.status = Some(PodStatus { phase: Some(phase.into()), ..Default::default() });
    p
}

fn status_of(body: &Value) -> SyncJobStatus {
    serde_json::from_value(body["status"].clone()).unwrap()
}

fn reasons(events: &[Value]) -> Vec<String> {
    events.iter().map(|e| e["reason"].as_str().unwrap_or("").to_owned()).collect()
}

#[tokio::test]
async fn a_new_job_gets_its_finalizer_and_a_precheck_pod() {
    let (ctx, mut api) = context();
    let mut j = job(None);
    j.metadata.finalizers = None;
    let jv = serde_json::to_value(&j).unwrap();
    let run = tokio::spawn(reconcile(Arc::new(j), ctx));
    let (query, patch) = api.expect(call(Method::PATCH, &format!("{JOBS}/orders"), jv.clone())).await;
    // A JSON patch that tests the (absent) list it read, never a merge patch of the whole list.
    assert_eq!(
        patch,
        json!([{"op": "test", "path": "/metadata/finalizers", "value": null},
               {"op": "add", "path": "/metadata/finalizers", "value": [FINALIZER]}]),
        "{query}"
    );
    let (query, _) = api.expect(call(Method::GET, PODS, pod_list(vec![]))).await;
    assert!(query.contains("labelSelector"), "{query}");
    let (_, pod) = api.expect(call(Method::POST, PODS, json!({}))).await;
    assert_eq!(pod["metadata"]["name"], "orders-precheck-1");
    assert_eq!(pod["spec"]["containers"][0]["args"], json!(["worker", "precheck", "--job", "shop/orders"]));
    let (query, status) = api.expect(call(Method::PATCH, &format!("{JOBS}/orders/status"), jv)).await;
    assert!(query.contains("fieldManager=ferry-operator") && query.contains("force=true"), "{query}");
    assert_eq!(status_of(&status).phase, Some(SyncJobPhase::Configuration));
    assert!(status["status"].get("progress").is_none(), "worker-owned fields are not applied");
    run.await.unwrap().unwrap();
    assert!(reasons(&api.done().await).contains(&"PhaseChanged".to_owned()));
}

#[tokio::test]
async fn an_invalid_spec_sets_create_failed_and_creates_no_pod() {
    let (ctx, mut api) = context();
    let mut j = job(None);
    j.spec.expired_days = 3;
    let jv = serde_json::to_value(&j).unwrap();
    let run = tokio::spawn(reconcile(Arc::new(j), ctx));
    api.expect(call(Method::GET, PODS, pod_list(vec![]))).await;
    let (_, status) = api.expect(call(Method::PATCH, &format!("{JOBS}/orders/status"), jv)).await;
    let status = status_of(&status);
    assert_eq!(status.phase, Some(SyncJobPhase::CreateFailed));
    let stalled = status.conditions.iter().find(|c| c.type_ == "Stalled").unwrap();
    assert!(stalled.message.contains("spec.expiredDays"), "{stalled:?}");
    run.await.unwrap().unwrap();
    assert!(reasons(&api.done().await).contains(&"SpecInvalid".to_owned()));
}

#[tokio::test]
async fn an_engine_pair_that_does_not_exist_sets_create_failed_naming_the_target_engine() {
    let (ctx, mut api) = context();
    let mut j = job(None);
    j.spec.target.engine = ferry::api::Engine::Mariadb;
    let jv = serde_json::to_value(&j).unwrap();
    let run = tokio::spawn(reconcile(Arc::new(j), ctx));
    api.expect(call(Method::GET, PODS, pod_list(vec![]))).await;
    let (_, status) = api.expect(call(Method::PATCH, &format!("{JOBS}/orders/status"), jv)).await;
    let status = status_of(&status);
    assert_eq!(status.phase, Some(SyncJobPhase::CreateFailed));
    let stalled = status.conditions.iter().find(|c| c.type_ == "Stalled").unwrap();
    let why = format!(
        "spec.target.engine: postgresql → mariadb transfers do not exist; Ferry transfers {}",
        ferry::engine::pairs::describe()
    );
    assert!(stalled.message.contains(&why), "{stalled:?}");
    assert_eq!(status.last_error.as_ref().map(|e| e.code.as_str()), Some("SPEC_INVALID"));
    run.await.unwrap().unwrap();
    assert!(reasons(&api.done().await).contains(&"SpecInvalid".to_owned()));
}

#[tokio::test]
async fn a_filter_smuggling_sql_sets_create_failed_with_the_field_and_the_construct() {
    let (ctx, mut api) = context();
    let mut j = job(None);
    j.spec.objects.databases[0].schemas[0].tables[0].filter =
        Some("1) UNION ALL SELECT user, authentication_string FROM mysql.user WHERE (1".into());
    let jv = serde_json::to_value(&j).unwrap();
    let run = tokio::spawn(reconcile(Arc::new(j), ctx));
    api.expect(call(Method::GET, PODS, pod_list(vec![]))).await;
    let (_, status) = api.expect(call(Method::PATCH, &format!("{JOBS}/orders/status"), jv)).await;
    let status = status_of(&status);
    assert_eq!(status.phase, Some(SyncJobPhase::CreateFailed));
    let stalled = status.conditions.iter().find(|c| c.type_ == "Stalled").unwrap();
    assert!(
        stalled.message.contains("spec.objects.databases[0].schemas[0].tables[0].filter")
            && stalled.message.contains("found `)`"),
        "{stalled:?}"
    );
    run.await.unwrap().unwrap();
    assert!(reasons(&api.done().await).contains(&"SpecInvalid".to_owned()));
}

fn precheck(result: PrecheckResult) -> Option<PrecheckStatus> {
    Some(PrecheckStatus {
        observed_generation: Some(1),
        items: vec![PrecheckItem {
            item: "source.walLevel".into(),
            result,
            reason: Some("wal_level is replica".into()),
            fix: Some("ALTER SYSTEM SET wal_level = logical".into()),
            skippable: false,
            skipped: false,
        }],
        ..Default::default()
    })
}

#[tokio::test]
async fn a_passed_precheck_starts_the_worker_pod() {
    let (ctx, mut api) = context();
    let j = job(Some(SyncJobStatus {
        phase: Some(SyncJobPhase::Configuration),
        precheck: precheck(PrecheckResult::Passed),
        ..Default::default()
    }));
    let jv = serde_json::to_value(&j).unwrap();
    let done = running(&j, Role::Precheck, 1, "Succeeded");
    let run = tokio::spawn(reconcile(Arc::new(j), ctx));
    api.expect(call(Method::GET, PODS, pod_list(vec![done]))).await;
    let (_, pod) = api.expect(call(Method::POST, PODS, json!({}))).await;
    assert_eq!(pod["metadata"]["name"], "orders-sync-1");
    let (_, status) = api.expect(call(Method::PATCH, &format!("{JOBS}/orders/status"), jv)).await;
    let status = status_of(&status);
    assert_eq!(status.phase, Some(SyncJobPhase::StartJobing));
    assert_eq!(status.worker.as_ref().map(|w| w.attempt), Some(1));
    assert_eq!(status.worker.and_then(|w| w.pod).as_deref(), Some("orders-sync-1"));
    run.await.unwrap().unwrap();
    api.done().await;
}

#[tokio::test]
async fn a_failed_precheck_starts_no_worker_and_says_why() {
    let (ctx, mut api) = context();
    let j = job(Some(SyncJobStatus {
        phase: Some(SyncJobPhase::Configuration),
        precheck: precheck(PrecheckResult::Failed),
        ..Default::default()
    }));
    let jv = serde_json::to_value(&j).unwrap();
    let run = tokio::spawn(reconcile(Arc::new(j), ctx));
    api.expect(call(Method::GET, PODS, pod_list(vec![]))).await;
    let (_, status) = api.expect(call(Method::PATCH, &format!("{JOBS}/orders/status"), jv)).await;
    let status = status_of(&status);
    assert_eq!(status.phase, Some(SyncJobPhase::Configuration));
    let c = status.conditions.iter().find(|c| c.type_ == "PrecheckPassed").unwrap();
    assert_eq!(c.status, "False");
    assert!(c.message.contains("source.walLevel"), "{c:?}");
    run.await.unwrap().unwrap();
    api.done().await;
}

#[tokio::test]
async fn worker_progress_moves_the_phase_and_an_unchanged_status_is_not_applied() {
    let (ctx, mut api) = context();
    let mut status = SyncJobStatus {
        phase: Some(SyncJobPhase::StartJobing),
        precheck: precheck(PrecheckResult::Passed),
        worker: Some(WorkerStatus { attempt: 1, pod: Some("orders-sync-1".into()), restarts: 0 }),
        progress: Some(ferry::api::Progress { stage: Some(TransferStage::Full), ..Default::default() }),
        ..Default::default()
    };
    let j = job(Some(status.clone()));
    let jv = serde_json::to_value(&j).unwrap();
    let worker = running(&j, Role::Worker, 1, "Running");
    let run = tokio::spawn(reconcile(Arc::new(j), Arc::clone(&ctx)));
    api.expect(call(Method::GET, PODS, pod_list(vec![worker.clone()]))).await;
    let (_, applied) = api.expect(call(Method::PATCH, &format!("{JOBS}/orders/status"), jv)).await;
    let applied = status_of(&applied);
    assert_eq!(applied.phase, Some(SyncJobPhase::FullTransferStarted));
    let condition = |t: &str| applied.conditions.iter().find(|c| c.type_ == t).map(|c| c.status.clone());
    assert_eq!(condition("Reconciling").as_deref(), Some("True"));
    assert_eq!(condition("Ready").as_deref(), Some("False"));
    assert_eq!(condition("FullTransferComplete").as_deref(), Some("False"));
    assert!(applied.conditions.iter().all(|c| c.observed_generation == Some(1)));
    run.await.unwrap().unwrap();
    api.done().await;

    // The next reconcile with that status and nothing new: the pods are listed, nothing else.
    let (ctx, mut api) = context();
    status.phase = applied.phase;
    status.conditions = applied.conditions;
    status.phase_since = applied.phase_since;
    status.full_start_time = applied.full_start_time;
    status.observed_generation = applied.observed_generation;
    let run = tokio::spawn(reconcile(Arc::new(job(Some(status))), ctx));
    api.expect(call(Method::GET, PODS, pod_list(vec![worker]))).await;
    run.await.unwrap().unwrap();
    assert!(api.done().await.is_empty());
}

fn streaming(attempt: u32) -> SyncJobStatus {
    SyncJobStatus {
        phase: Some(SyncJobPhase::IncreTransferStarted),
        observed_generation: Some(1),
        precheck: precheck(PrecheckResult::Passed),
        worker: Some(WorkerStatus { attempt, pod: None, restarts: 0 }),
        progress: Some(ferry::api::Progress { stage: Some(TransferStage::Incremental), ..Default::default() }),
        ..Default::default()
    }
}

#[tokio::test]
async fn pausing_deletes_the_worker_pod_and_resuming_starts_the_next_attempt() {
    let (ctx, mut api) = context();
    let mut j = job(Some(streaming(1)));
    j.spec.paused = true;
    let jv = serde_json::to_value(&j).unwrap();
    let worker = running(&j, Role::Worker, 1, "Running");
    let run = tokio::spawn(reconcile(Arc::new(j.clone()), ctx));
    api.expect(call(Method::GET, PODS, pod_list(vec![worker]))).await;
    api.expect(call(Method::DELETE, &format!("{PODS}/orders-sync-1"), json!({}))).await;
    let (_, status) = api.expect(call(Method::PATCH, &format!("{JOBS}/orders/status"), jv.clone())).await;
    assert_eq!(status_of(&status).phase, Some(SyncJobPhase::Pausing));
    run.await.unwrap().unwrap();
    assert!(reasons(&api.done().await).contains(&"Paused".to_owned()));

    // Resumed: the worker comes back as attempt 2, from the checkpoint.
    let (ctx, mut api) = context();
    j.spec.paused = false;
    let mut st = streaming(1);
    st.phase = Some(SyncJobPhase::Pausing);
    j.status = Some(st);
    let run = tokio::spawn(reconcile(Arc::new(j), ctx));
    api.expect(call(Method::GET, PODS, pod_list(vec![]))).await;
    let (_, pod) = api.expect(call(Method::POST, PODS, json!({}))).await;
    assert_eq!(pod["metadata"]["name"], "orders-sync-2");
    let (_, status) = api.expect(call(Method::PATCH, &format!("{JOBS}/orders/status"), jv)).await;
    assert_eq!(status_of(&status).phase, Some(SyncJobPhase::StartJobing));
    run.await.unwrap().unwrap();
    assert!(reasons(&api.done().await).contains(&"Resumed".to_owned()));
}

#[tokio::test]
async fn a_spec_edit_while_running_restarts_the_worker_with_the_new_spec() {
    let (ctx, mut api) = context();
    let mut j = job(Some(streaming(1)));
    j.metadata.generation = Some(2);
    j.spec.tuning = Some(ferry::api::Tuning { apply_batch_transactions: Some(500), ..Default::default() });
    let jv = serde_json::to_value(&j).unwrap();
    let worker = running(&j, Role::Worker, 1, "Running");
    let run = tokio::spawn(reconcile(Arc::new(j), ctx));
    api.expect(call(Method::GET, PODS, pod_list(vec![worker]))).await;
    api.expect(call(Method::DELETE, &format!("{PODS}/orders-sync-1"), json!({}))).await;
    let (_, pod) = api.expect(call(Method::POST, PODS, json!({}))).await;
    assert_eq!(pod["metadata"]["name"], "orders-sync-2");
    let (_, status) = api.expect(call(Method::PATCH, &format!("{JOBS}/orders/status"), jv)).await;
    let status = status_of(&status);
    assert_eq!(status.phase, Some(SyncJobPhase::ChangeJobStarted));
    assert_eq!(status.observed_generation, Some(2));
    run.await.unwrap().unwrap();
    assert!(reasons(&api.done().await).contains(&"SpecChanged".to_owned()));
}

#[tokio::test]
async fn a_failed_worker_fails_the_phase_with_its_error_and_is_retried_after_the_backoff() {
    let (ctx, mut api) = context();
    let mut j = job(Some(streaming(1)));
    j.spec.retry = ferry::api::RetryPolicy { limit: 3, backoff_seconds: 30 };
    let jv = serde_json::to_value(&j).unwrap();
    let mut worker = running(&j, Role::Worker, 1, "Failed");
    worker.status.as_mut().unwrap().container_statuses = Some(vec![k8s_openapi::api::core::v1::ContainerStatus {
        state: Some(k8s_openapi::api::core::v1::ContainerState {
            terminated: Some(k8s_openapi::api::core::v1::ContainerStateTerminated {
                exit_code: 2,
                message: Some("SOURCE_CONNECT: cannot connect to the source database: refused".into()),
                ..Default::default()
            }),
            ..Default::default()
        }),
        ..Default::default()
    }]);
    let run = tokio::spawn(reconcile(Arc::new(j.clone()), ctx));
    api.expect(call(Method::GET, PODS, pod_list(vec![worker.clone()]))).await;
    let (_, status) = api.expect(call(Method::PATCH, &format!("{JOBS}/orders/status"), jv.clone())).await;
    let failed = status_of(&status);
    assert_eq!(failed.phase, Some(SyncJobPhase::IncreTransferFailed));
    assert_eq!(failed.last_error.as_ref().map(|e| e.code.as_str()), Some("SOURCE_CONNECT"));
    let requeue = format!("{:?}", run.await.unwrap().unwrap());
    assert!(requeue.contains("30s"), "retried after the backoff: {requeue}");
    assert!(reasons(&api.done().await).contains(&"WorkerFailed".to_owned()));

    // Once the backoff has passed: attempt 2, the failed pod removed.
    let (ctx, mut api) = context();
    let mut st = streaming(1);
    st.phase = failed.phase;
    st.last_error = failed.last_error.map(|mut e| {
        e.time = Some(k8s_openapi::apimachinery::pkg::apis::meta::v1::Time(
            jiff::Timestamp::now() - jiff::SignedDuration::from_secs(60),
        ));
        e
    });
    st.failed_since = failed.failed_since;
    j.status = Some(st);
    let run = tokio::spawn(reconcile(Arc::new(j), ctx));
    api.expect(call(Method::GET, PODS, pod_list(vec![worker]))).await;
    api.expect(call(Method::DELETE, &format!("{PODS}/orders-sync-1"), json!({}))).await;
    let (_, pod) = api.expect(call(Method::POST, PODS, json!({}))).await;
    assert_eq!(pod["metadata"]["name"], "orders-sync-2");
    let (_, status) = api.expect(call(Method::PATCH, &format!("{JOBS}/orders/status"), jv)).await;
    assert_eq!(status_of(&status).retries, 1);
    run.await.unwrap().unwrap();
    api.done().await;
}

#[tokio::test]
async fn deletion_runs_a_release_pod_and_then_lets_the_finalizer_go() {
    let (ctx, mut api) = context();
    let mut j = job(Some(streaming(1)));
    j.metadata.deletion_timestamp = Some(k8s_openapi::apimachinery::pkg::apis::meta::v1::Time(jiff::Timestamp::now()));
    let jv = serde_json::to_value(&j).unwrap();
    let worker = running(&j, Role::Worker, 1, "Running");
    let run = tokio::spawn(reconcile(Arc::new(j.clone()), ctx));
    api.expect(call(Method::GET, PODS, pod_list(vec![worker]))).await;
    api.expect(call(Method::DELETE, &format!("{PODS}/orders-sync-1"), json!({}))).await;
    let (_, pod) = api.expect(call(Method::POST, PODS, json!({}))).await;
    assert_eq!(pod["metadata"]["name"], "orders-release-0");
    assert_eq!(pod["spec"]["containers"][0]["args"], json!(["worker", "release", "--job", "shop/orders"]));
    let (_, status) = api.expect(call(Method::PATCH, &format!("{JOBS}/orders/status"), jv.clone())).await;
    assert_eq!(status_of(&status).phase, Some(SyncJobPhase::ReleaseResourceStarted));
    run.await.unwrap().unwrap();
    api.done().await;

    // The release pod succeeded: the finalizer is removed, and nothing else is written.
    let (ctx, mut api) = context();
    let mut st = streaming(1);
    st.phase = Some(SyncJobPhase::ReleaseResourceStarted);
    j.status = Some(st);
    let released = running(&j, Role::Release, 0, "Succeeded");
    let run = tokio::spawn(reconcile(Arc::new(j), ctx));
    api.expect(call(Method::GET, PODS, pod_list(vec![released]))).await;
    let (_, patch) = api.expect(call(Method::PATCH, &format!("{JOBS}/orders"), jv)).await;
    assert_eq!(
        patch,
        json!([{"op": "test", "path": "/metadata/finalizers/0", "value": FINALIZER},
               {"op": "remove", "path": "/metadata/finalizers/0"}])
    );
    run.await.unwrap().unwrap();
    assert!(reasons(&api.done().await).contains(&"Released".to_owned()));
}

#[tokio::test]
async fn a_job_deleted_in_the_foreground_gets_its_release_pod_once_its_dependents_are_gone() {
    // Deleting a BatchJob in the foreground deletes its children so: the garbage collector first
    // deletes each child's pods, ServiceAccount and Role. A release pod created meanwhile could
    // lose its ServiceAccount under it, so none is created until the collector is done.
    let (ctx, mut api) = context();
    let mut j = job(Some(streaming(1)));
    j.metadata.deletion_timestamp = Some(k8s_openapi::apimachinery::pkg::apis::meta::v1::Time(jiff::Timestamp::now()));
    j.metadata.finalizers = Some(vec![FINALIZER.into(), "foregroundDeletion".into()]);
    let jv = serde_json::to_value(&j).unwrap();
    let run = tokio::spawn(reconcile(Arc::new(j.clone()), ctx));
    api.expect(call(Method::GET, PODS, pod_list(vec![]))).await;
    let (_, status) = api.expect(call(Method::PATCH, &format!("{JOBS}/orders/status"), jv)).await;
    assert_eq!(status_of(&status).phase, Some(SyncJobPhase::ReleaseResourceStarted));
    let requeue = run.await.unwrap().unwrap();
    assert_eq!(requeue, kube::runtime::controller::Action::requeue(std::time::Duration::from_secs(2)));
    assert!(api.identity.is_empty(), "no ServiceAccount for the collector to take away");
    api.done().await;

    // The collector is done: the identity is created again, then the release pod.
    let (ctx, mut api) = context();
    j.metadata.finalizers = Some(vec![FINALIZER.into()]);
    let mut st = streaming(1);
    st.phase = Some(SyncJobPhase::ReleaseResourceStarted);
    j.status = Some(st);
    let jv = serde_json::to_value(&j).unwrap();
    let run = tokio::spawn(reconcile(Arc::new(j), ctx));
    api.expect(call(Method::GET, PODS, pod_list(vec![]))).await;
    let (_, pod) = api.expect(call(Method::POST, PODS, json!({}))).await;
    assert_eq!(pod["metadata"]["name"], "orders-release-0");
    api.expect(call(Method::PATCH, &format!("{JOBS}/orders/status"), jv)).await;
    run.await.unwrap().unwrap();
    assert_eq!(api.identity.len(), 3, "ServiceAccount, Role and RoleBinding");
    api.done().await;
}

const ACCOUNTS: &str = "/api/v1/namespaces/shop/serviceaccounts";
const ROLES: &str = "/apis/rbac.authorization.k8s.io/v1/namespaces/shop/roles";
const BINDINGS: &str = "/apis/rbac.authorization.k8s.io/v1/namespaces/shop/rolebindings";

/// A job being deleted (not in the foreground, or no longer) whose release pod was created and
/// has not started.
fn releasing_with_a_waiting_pod() -> (SyncJob, Pod) {
    let mut st = streaming(1);
    st.phase = Some(SyncJobPhase::ReleaseResourceStarted);
    let mut j = job(Some(st));
    j.metadata.deletion_timestamp = Some(k8s_openapi::apimachinery::pkg::apis::meta::v1::Time(jiff::Timestamp::now()));
    let mut release = running(&j, Role::Release, 0, "Pending");
    release.status = None;
    (j, release)
}

#[tokio::test]
async fn a_release_pod_whose_identity_the_garbage_collector_deleted_gets_it_again() {
    // The release pod was created as the collector deleted the job's dependents (its BatchJob
    // deleted in the foreground): it lost its ServiceAccount, Role and RoleBinding, and cannot
    // start without them. The collector is done; the identity is created again for that pod —
    // the Role once more when it goes again before its binding is created.
    let (ctx, mut api) = context();
    api.explicit_identity();
    let (j, release) = releasing_with_a_waiting_pod();
    let jv = serde_json::to_value(&j).unwrap();
    let run = tokio::spawn(reconcile(Arc::new(j), ctx));
    api.expect(call(Method::GET, PODS, pod_list(vec![release]))).await;
    let name = "orders-ferry-worker";
    let mut created = Vec::new();
    for path in [ACCOUNTS, ROLES, BINDINGS] {
        api.expect(refused_with(Method::GET, &format!("{path}/{name}"), 404, "NotFound", "not found")).await;
        if path != BINDINGS {
            created.push(api.expect(echo(Method::POST, path)).await.1);
        }
    }
    // RBAC's escalation check reads the binding's Role, which the collector took meanwhile.
    let gone = format!("roles.rbac.authorization.k8s.io \"{name}\" not found");
    api.expect(refused_with(Method::POST, BINDINGS, 404, "NotFound", &gone)).await;
    let account = created[0].clone();
    api.expect(call(Method::GET, &format!("{ACCOUNTS}/{name}"), account)).await;
    api.expect(refused_with(Method::GET, &format!("{ROLES}/{name}"), 404, "NotFound", "not found")).await;
    created.push(api.expect(echo(Method::POST, ROLES)).await.1);
    api.expect(refused_with(Method::GET, &format!("{BINDINGS}/{name}"), 404, "NotFound", "not found")).await;
    created.push(api.expect(echo(Method::POST, BINDINGS)).await.1);
    // No pod is created or deleted: the one waiting starts now.
    let (_, status) = api.expect(call(Method::PATCH, &format!("{JOBS}/orders/status"), jv)).await;
    assert_eq!(status_of(&status).phase, Some(SyncJobPhase::ReleaseResourceStarted));
    run.await.unwrap().unwrap();
    api.done().await;
    let kinds: Vec<_> = created.iter().map(|o| o["kind"].as_str().unwrap_or("").to_owned()).collect();
    assert_eq!(kinds, ["ServiceAccount", "Role", "Role", "RoleBinding"]);
    for object in &created {
        assert_eq!(object["metadata"]["name"], name, "{object}");
        assert_eq!(object["metadata"]["ownerReferences"][0]["uid"], "uid-1", "{object}");
    }
}

#[tokio::test]
async fn a_waiting_release_pod_is_left_to_the_collector_while_it_deletes_the_jobs_dependents() {
    let (ctx, mut api) = context();
    api.explicit_identity();
    let (mut j, release) = releasing_with_a_waiting_pod();
    j.metadata.finalizers = Some(vec![FINALIZER.into(), "foregroundDeletion".into()]);
    let jv = serde_json::to_value(&j).unwrap();
    let run = tokio::spawn(reconcile(Arc::new(j), ctx));
    api.expect(call(Method::GET, PODS, pod_list(vec![release]))).await;
    api.expect(call(Method::PATCH, &format!("{JOBS}/orders/status"), jv)).await;
    let requeue = run.await.unwrap().unwrap();
    // Looked at again soon: the collector's removal of its finalizer wakes it too.
    assert_eq!(requeue, kube::runtime::controller::Action::requeue(std::time::Duration::from_secs(2)));
    // No ServiceAccount for the collector to take away: done() fails on any identity call.
    api.done().await;
}

/// A paused job whose worker reported its replication slot, held without a worker since
/// `idle_for_secs` ago (or not yet tracked).
fn paused_holding_slot(idle_for_secs: Option<i64>) -> SyncJob {
    let now = jiff::Timestamp::now();
    let ago =
        |secs: i64| k8s_openapi::apimachinery::pkg::apis::meta::v1::Time(now - jiff::SignedDuration::from_secs(secs));
    let mut st = streaming(1);
    st.phase = Some(SyncJobPhase::Pausing);
    st.slot = Some(SlotStatus {
        inactive_since: idle_for_secs.map(ago),
        ..SlotStatus::measured("ferry_shop_orders_5f3c0a1e", 3 << 30, ago(idle_for_secs.unwrap_or(0) + 20))
    });
    let mut j = job(Some(st));
    j.spec.paused = true;
    j
}

#[tokio::test]
async fn a_paused_job_holding_its_slot_records_since_when_and_looks_again_when_the_retention_passes() {
    let (ctx, mut api) = context();
    let j = paused_holding_slot(None);
    let jv = serde_json::to_value(&j).unwrap();
    let run = tokio::spawn(reconcile(Arc::new(j), ctx));
    api.expect(call(Method::GET, PODS, pod_list(vec![]))).await;
    let (_, status) = api.expect(call(Method::PATCH, &format!("{JOBS}/orders/status"), jv)).await;
    // Of the slot, only what the operator tracks: the measurement stays the worker's.
    let slot = status["status"]["slot"].as_object().expect("status.slot").clone();
    assert_eq!(slot.keys().collect::<Vec<_>>(), ["inactiveSince"], "{slot:?}");
    assert_eq!(status_of(&status).phase, Some(SyncJobPhase::Pausing));
    let requeue = format!("{:?}", run.await.unwrap().unwrap());
    assert!(requeue.contains("86400s"), "looks again when a day has passed: {requeue}");
    api.done().await;
}

#[tokio::test]
async fn a_paused_job_past_its_slot_retention_gets_a_release_pod_and_says_it_needs_a_new_full_transfer() {
    let (ctx, mut api) = context();
    let j = paused_holding_slot(Some(25 * 3600));
    let jv = serde_json::to_value(&j).unwrap();
    let run = tokio::spawn(reconcile(Arc::new(j), ctx));
    api.expect(call(Method::GET, PODS, pod_list(vec![]))).await;
    let (_, pod) = api.expect(call(Method::POST, PODS, json!({}))).await;
    assert_eq!(pod["metadata"]["name"], "orders-release-0");
    assert_eq!(pod["spec"]["containers"][0]["args"], json!(["worker", "release", "--job", "shop/orders"]));
    let (_, applied) = api.expect(call(Method::PATCH, &format!("{JOBS}/orders/status"), jv)).await;
    let slot = applied["status"]["slot"].as_object().expect("status.slot").clone();
    assert!(slot.contains_key("expiredAt") && slot.contains_key("inactiveSince"), "{slot:?}");
    assert!(!slot.contains_key("retainedWalBytes") && !slot.contains_key("name"), "the worker's fields: {slot:?}");
    let status = status_of(&applied);
    assert_eq!(status.phase, Some(SyncJobPhase::ReleaseResourceStarted));
    let error = status.last_error.expect("lastError");
    assert_eq!(error.code, "SLOT_RETENTION_EXPIRED");
    assert!(error.message.contains("spec.slotRetentionMinutes (1440 minutes)"), "{}", error.message);
    assert!(error.message.contains("new full transfer"), "{}", error.message);
    run.await.unwrap().unwrap();
    let events = api.done().await;
    let warning = events.iter().find(|e| e["reason"] == "SlotRetentionExpired").expect("a SlotRetentionExpired Event");
    assert_eq!(warning["type"], "Warning");
    assert!(warning["note"].as_str().unwrap().contains("ferry_shop_orders_5f3c0a1e"), "{warning}");
}

// CompareTask scenarios.

const TASKS: &str = "/apis/ferry.dev/v1alpha1/namespaces/shop/comparetasks";

/// The report ConfigMap does not exist yet.
fn no_report() -> mock_api::Call {
    mock_api::refused(Method::GET, "/api/v1/namespaces/shop/configmaps/check-report", 404, "NotFound")
}

fn compare_task(status: Option<ferry::api::compare::CompareTaskStatus>) -> ferry::api::compare::CompareTask {
    let spec: ferry::api::compare::CompareTaskSpec =
        serde_json::from_value(json!({"syncJobRef": {"name": "orders"}, "type": "content"})).unwrap();
    let mut t = ferry::api::compare::CompareTask::new("check", spec);
    t.metadata.namespace = Some("shop".into());
    t.metadata.uid = Some("uid-2".into());
    t.metadata.generation = Some(1);
    t.status = status;
    t
}

fn compare_pod(task: &ferry::api::compare::CompareTask, run: i64, phase: &str) -> Pod {
    let mut p = pods::build_for(pods::PodParams {
        owner: kube::Resource::controller_owner_ref(task, &()).unwrap(),
        name: "check",
        namespace: "shop",
        role: Role::Compare,
        n: run,
        args: vec![],
        source: None,
        target: None,
        source_tls: None,
        target_tls: None,
        node_type: ferry::api::NodeType::Small,
        overrides: Default::default(),
        default_image: "ferry:test",
        service_account: "check-ferry-compare".into(),
    });
    p.status = Some(PodStatus { phase: Some(phase.into()), ..Default::default() });
    p
}

#[tokio::test]
async fn a_new_compare_task_runs_a_compare_pod_with_the_jobs_secrets() {
    let (ctx, mut api) = context();
    let task = compare_task(None);
    let tv = serde_json::to_value(&task).unwrap();
    let jv = serde_json::to_value(job(None)).unwrap();
    let run = tokio::spawn(ferry::controller::compare::reconcile(Arc::new(task), ctx));
    api.expect(call(Method::GET, &format!("{JOBS}/orders"), jv)).await;
    api.expect(no_report()).await;
    api.expect(call(Method::GET, PODS, pod_list(vec![]))).await;
    // The operator creates the report ConfigMap, owned by the task, before the pod.
    let (_, report) = api.expect(mock_api::echo(Method::POST, "/api/v1/namespaces/shop/configmaps")).await;
    assert_eq!(report["metadata"]["name"], "check-report");
    assert_eq!(report["metadata"]["ownerReferences"][0]["uid"], "uid-2");
    let (_, pod) = api.expect(call(Method::POST, PODS, json!({}))).await;
    assert_eq!(pod["metadata"]["name"], "check-compare-1");
    assert_eq!(pod["spec"]["serviceAccountName"], "check-ferry-compare", "the task's own account");
    assert_eq!(pod["metadata"]["ownerReferences"][0]["kind"], "CompareTask");
    assert_eq!(pod["spec"]["containers"][0]["args"], json!(["worker", "compare", "--job", "shop/check"]));
    let env = &pod["spec"]["containers"][0]["env"];
    assert!(env.to_string().contains("secretKeyRef"), "{env}");
    let (_, status) = api.expect(call(Method::PATCH, &format!("{TASKS}/check/status"), tv)).await;
    assert_eq!(status["status"]["phase"], "WAITING_FOR_RUNNING");
    assert_eq!(status["status"]["runs"], 1);
    assert!(status["status"].get("result").is_none(), "the worker's fields are not applied");
    run.await.unwrap().unwrap();
    let kinds: Vec<_> = api.identity.iter().map(|o| o["kind"].as_str().unwrap_or("").to_owned()).collect();
    assert_eq!(kinds, ["ServiceAccount", "Role", "RoleBinding"]);
    let role = &api.identity[1];
    let names: Vec<&str> = role["rules"]
        .as_array()
        .unwrap()
        .iter()
        .flat_map(|r| r["resourceNames"].as_array().unwrap())
        .map(|n| n.as_str().unwrap())
        .collect();
    assert_eq!(names, ["check", "check", "check-report", "orders"]);
    api.done().await;
}

#[tokio::test]
async fn a_finished_compare_pod_ends_the_run_and_cancel_stops_a_running_one() {
    use ferry::api::ComparePhase;
    use ferry::api::compare::CompareTaskStatus;
    let running = CompareTaskStatus {
        phase: Some(ComparePhase::Running),
        runs: 1,
        observed_generation: Some(1),
        start_time: Some(k8s_openapi::apimachinery::pkg::apis::meta::v1::Time(jiff::Timestamp::now())),
        ..Default::default()
    };
    let (ctx, mut api) = context();
    let task = compare_task(Some(running.clone()));
    let (tv, jv) = (serde_json::to_value(&task).unwrap(), serde_json::to_value(job(None)).unwrap());
    let done = compare_pod(&task, 1, "Succeeded");
    let run = tokio::spawn(ferry::controller::compare::reconcile(Arc::new(task), ctx));
    api.expect(call(Method::GET, &format!("{JOBS}/orders"), jv.clone())).await;
    api.expect(no_report()).await;
    api.expect(call(Method::GET, PODS, pod_list(vec![done]))).await;
    let (_, status) = api.expect(call(Method::PATCH, &format!("{TASKS}/check/status"), tv.clone())).await;
    assert_eq!(status["status"]["phase"], "SUCCESSFUL");
    run.await.unwrap().unwrap();
    api.done().await;

    let (ctx, mut api) = context();
    let mut task = compare_task(Some(running));
    task.spec.cancel = true;
    let pod = compare_pod(&task, 1, "Running");
    let run = tokio::spawn(ferry::controller::compare::reconcile(Arc::new(task), ctx));
    api.expect(call(Method::GET, &format!("{JOBS}/orders"), jv)).await;
    api.expect(no_report()).await;
    api.expect(call(Method::GET, PODS, pod_list(vec![pod]))).await;
    api.expect(call(Method::DELETE, &format!("{PODS}/check-compare-1"), json!({}))).await;
    let (_, status) = api.expect(call(Method::PATCH, &format!("{TASKS}/check/status"), tv)).await;
    assert_eq!(status["status"]["phase"], "CANCELLED");
    run.await.unwrap().unwrap();
    api.done().await;
}
