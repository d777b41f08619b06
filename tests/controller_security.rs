//! What a job's author cannot gain through the operator, against a mocked Kubernetes API: a
//! worker image, tolerations or node labels the operator does not allow (SyncJob, CompareTask,
//! BatchJob item), and objects of the names a job derives — pods, its worker ServiceAccount and
//! Role, the report ConfigMap — that someone else holds, which are refused and never adopted.

mod mock_api;

use std::sync::Arc;

use ferry::api::compare::{CompareTask, CompareTaskSpec};
use ferry::api::{
    BatchJob, BatchJobSpec, PrecheckItem, PrecheckResult, PrecheckStatus, SyncJob, SyncJobPhase, SyncJobSpec,
    SyncJobStatus, WorkerOverrides,
};
use ferry::controller::pods::{self, Role};
use ferry::controller::syncjob::{FINALIZER, reconcile};
use http::Method;
use k8s_openapi::api::core::v1::{Pod, Toleration};
use mock_api::{call, context, echo, refused};
use serde_json::{Value, json};

const JOBS: &str = "/apis/ferry.dev/v1alpha1/namespaces/shop/syncjobs";
const PODS: &str = "/api/v1/namespaces/shop/pods";
const TASKS: &str = "/apis/ferry.dev/v1alpha1/namespaces/shop/comparetasks";
const CONFIGMAPS: &str = "/api/v1/namespaces/shop/configmaps";
const ACCOUNTS: &str = "/api/v1/namespaces/shop/serviceaccounts";

/// What an author who may create jobs but not pods would ask for: their own image with the
/// job's Secrets, on a control plane node.
fn hostile() -> WorkerOverrides {
    WorkerOverrides {
        image: Some("evil.example.com/miner:latest".into()),
        tolerations: vec![Toleration { operator: Some("Exists".into()), ..Default::default() }],
        node_selector: [("node-role.kubernetes.io/control-plane".to_owned(), String::new())].into(),
        ..Default::default()
    }
}

fn job(status: Option<SyncJobStatus>) -> SyncJob {
    let mut j = SyncJob::new("orders", SyncJobSpec::test());
    j.metadata.namespace = Some("shop".into());
    j.metadata.uid = Some("uid-1".into());
    j.metadata.generation = Some(1);
    j.metadata.finalizers = Some(vec![FINALIZER.into()]);
    j.status = status;
    j
}

fn passed() -> SyncJobStatus {
    SyncJobStatus {
        phase: Some(SyncJobPhase::Configuration),
        precheck: Some(PrecheckStatus {
            observed_generation: Some(1),
            items: vec![PrecheckItem {
                item: "source.walLevel".into(),
                result: PrecheckResult::Passed,
                reason: None,
                fix: None,
                skippable: false,
                skipped: false,
            }],
            ..Default::default()
        }),
        ..Default::default()
    }
}

fn pod_list(pods: Vec<Pod>) -> Value {
    json!({"apiVersion": "v1", "kind": "PodList", "metadata": {}, "items": pods})
}

fn reasons(events: &[Value]) -> Vec<String> {
    events.iter().map(|e| e["reason"].as_str().unwrap_or("").to_owned()).collect()
}

fn condition<'a>(status: &'a Value, type_: &str) -> &'a Value {
    status["status"]["conditions"]
        .as_array()
        .and_then(|c| c.iter().find(|c| c["type"] == type_))
        .unwrap_or_else(|| panic!("no {type_} condition in {status}"))
}

fn compare_task() -> CompareTask {
    let spec: CompareTaskSpec =
        serde_json::from_value(json!({"syncJobRef": {"name": "orders"}, "type": "content"})).unwrap();
    let mut t = CompareTask::new("check", spec);
    t.metadata.namespace = Some("shop".into());
    t.metadata.uid = Some("task-uid".into());
    t.metadata.generation = Some(1);
    t
}

/// A pod of the job's derived name and labels that the job does not own.
fn foreign_pod(j: &SyncJob, role: Role, n: i64) -> Pod {
    let mut p = pods::build(j, role, n, "someone/else:1").unwrap();
    p.metadata.owner_references = None;
    p.metadata.uid = Some("foreign-pod".into());
    p
}

// Point 1: what a job may ask of its worker pods.

#[tokio::test]
async fn a_worker_image_toleration_or_node_label_the_operator_does_not_allow_is_create_failed_without_a_pod() {
    let (ctx, mut api) = context();
    let mut j = job(None);
    j.spec.worker = Some(hostile());
    let jv = serde_json::to_value(&j).unwrap();
    let run = tokio::spawn(reconcile(Arc::new(j), ctx));
    api.expect(call(Method::GET, PODS, pod_list(vec![]))).await;
    let (_, status) = api.expect(call(Method::PATCH, &format!("{JOBS}/orders/status"), jv)).await;
    assert_eq!(status["status"]["phase"], "CREATE_FAILED");
    assert_eq!(status["status"]["lastError"]["code"], "SPEC_INVALID");
    let message = condition(&status, "Stalled")["message"].as_str().unwrap().to_owned();
    for wanted in [
        "spec.worker.image: image \"evil.example.com/miner:latest\" is not allowed by the operator",
        "--allowed-worker-images",
        "spec.worker.tolerations[0]: a toleration without a key (it tolerates every taint) is not allowed",
        "spec.worker.nodeSelector: node label \"node-role.kubernetes.io/control-plane\" is not allowed",
    ] {
        assert!(message.contains(wanted), "{wanted:?} missing from {message}");
    }
    run.await.unwrap().unwrap();
    assert!(api.identity.is_empty(), "no ServiceAccount or Role for a refused job");
    assert!(reasons(&api.done().await).contains(&"SpecInvalid".to_owned()));
}

#[tokio::test]
async fn an_image_the_operator_allows_by_pattern_runs() {
    let (ctx, mut api) = context();
    let mut ctx = Arc::try_unwrap(ctx).ok().unwrap();
    ctx.policy.allowed_images = vec!["registry.example.com/ferry:*".into()];
    let mut j = job(Some(passed()));
    j.spec.worker =
        Some(WorkerOverrides { image: Some("registry.example.com/ferry:dev".into()), ..Default::default() });
    let jv = serde_json::to_value(&j).unwrap();
    let run = tokio::spawn(reconcile(Arc::new(j), Arc::new(ctx)));
    api.expect(call(Method::GET, PODS, pod_list(vec![]))).await;
    let (_, pod) = api.expect(call(Method::POST, PODS, json!({}))).await;
    assert_eq!(pod["spec"]["containers"][0]["image"], "registry.example.com/ferry:dev");
    api.expect(call(Method::PATCH, &format!("{JOBS}/orders/status"), jv)).await;
    run.await.unwrap().unwrap();
    api.done().await;
}

#[tokio::test]
async fn a_compare_task_of_a_job_with_a_refused_image_fails_without_a_pod() {
    let (ctx, mut api) = context();
    let task = compare_task();
    let tv = serde_json::to_value(&task).unwrap();
    let mut j = job(None);
    j.spec.worker = Some(WorkerOverrides { image: Some("evil.example.com/miner:latest".into()), ..Default::default() });
    let run = tokio::spawn(ferry::controller::compare::reconcile(Arc::new(task), ctx));
    api.expect(call(Method::GET, &format!("{JOBS}/orders"), serde_json::to_value(&j).unwrap())).await;
    api.expect(call(Method::GET, PODS, pod_list(vec![]))).await;
    let (_, status) = api.expect(call(Method::PATCH, &format!("{TASKS}/check/status"), tv)).await;
    assert_eq!(status["status"]["phase"], "FAILED");
    let message = status["status"]["message"].as_str().unwrap();
    assert!(
        message
            .contains("spec.syncJobRef (SyncJob orders: spec.worker).image: image \"evil.example.com/miner:latest\""),
        "{message}"
    );
    run.await.unwrap().unwrap();
    assert!(!api.done().await.is_empty(), "a Warning Event says why");
}

#[tokio::test]
async fn a_batch_item_asking_for_a_refused_image_gets_no_child_and_says_why() {
    let (ctx, mut api) = context();
    let mut spec = BatchJobSpec::test(&["acme", "globex"], None);
    spec.jobs[1].overrides.as_mut().unwrap()["worker"] = json!({"image": "evil.example.com/miner:latest"});
    let mut b = BatchJob::new("tenants", spec);
    b.metadata.namespace = Some("shop".into());
    b.metadata.uid = Some("batch-uid".into());
    b.metadata.generation = Some(1);
    let bv = serde_json::to_value(&b).unwrap();
    let run = tokio::spawn(ferry::controller::batch::reconcile(Arc::new(b), ctx));
    api.expect(call(
        Method::GET,
        JOBS,
        json!({"apiVersion": "ferry.dev/v1alpha1", "kind": "SyncJobList", "metadata": {}, "items": []}),
    ))
    .await;
    // Only the allowed item's child is created.
    let (_, child) = api.expect(echo(Method::POST, JOBS)).await;
    assert_eq!(child["metadata"]["name"], "tenants-acme");
    let (_, status) = api
        .expect(call(Method::PATCH, "/apis/ferry.dev/v1alpha1/namespaces/shop/batchjobs/tenants/status", bv.clone()))
        .await;
    assert_eq!(status["status"]["phase"], "FAILED");
    let row = &status["status"]["jobs"][1];
    assert!(row.get("syncJob").is_none(), "{row}");
    let message = row["message"].as_str().unwrap();
    assert!(message.starts_with("refused by the operator: worker.image: image \"evil.example.com/miner"), "{message}");
    run.await.unwrap().unwrap();
    let events = api.done().await;
    assert!(reasons(&events).contains(&"ItemRefused".to_owned()), "{events:?}");
    assert!(!events.iter().any(|e| e["note"].as_str().unwrap_or("").contains("tenants-globex created")));

    // The next reconcile says nothing new: no second ItemRefused Event.
    let (ctx, mut api) = context();
    let mut b: BatchJob = serde_json::from_value(bv).unwrap();
    b.status = Some(serde_json::from_value(status["status"].clone()).unwrap());
    let mut acme: SyncJob = serde_json::from_value(child).unwrap();
    acme.metadata.uid = Some("acme-uid".into());
    let bv = serde_json::to_value(&b).unwrap();
    let run = tokio::spawn(ferry::controller::batch::reconcile(Arc::new(b), ctx));
    api.expect(call(
        Method::GET,
        JOBS,
        json!({"apiVersion": "ferry.dev/v1alpha1", "kind": "SyncJobList", "metadata": {}, "items": [acme]}),
    ))
    .await;
    // The status may be re-applied (conditions' times); nothing else is written.
    let (_, again) =
        api.expect(call(Method::PATCH, "/apis/ferry.dev/v1alpha1/namespaces/shop/batchjobs/tenants/status", bv)).await;
    assert!(again["status"]["jobs"][1]["message"].as_str().unwrap().starts_with("refused by the operator"));
    run.await.unwrap().unwrap();
    assert!(!reasons(&api.done().await).contains(&"ItemRefused".to_owned()));
}

// Point 5: objects of derived names are never taken over.

#[tokio::test]
async fn a_pod_of_the_workers_name_that_the_job_does_not_own_is_neither_adopted_nor_deleted() {
    let (ctx, mut api) = context();
    let j = job(Some(passed()));
    let jv = serde_json::to_value(&j).unwrap();
    // Someone's pod with the name and labels of the job's first worker.
    let theirs = foreign_pod(&j, Role::Worker, 1);
    let run = tokio::spawn(reconcile(Arc::new(j), ctx));
    api.expect(call(Method::GET, PODS, pod_list(vec![theirs.clone()]))).await;
    api.expect(refused(Method::POST, PODS, 409, "AlreadyExists")).await;
    api.expect(call(Method::GET, &format!("{PODS}/orders-sync-1"), serde_json::to_value(&theirs).unwrap())).await;
    let (_, status) = api.expect(call(Method::PATCH, &format!("{JOBS}/orders/status"), jv)).await;
    let stalled = condition(&status, "Stalled");
    assert_eq!((stalled["status"].as_str(), stalled["reason"].as_str()), (Some("True"), Some("NameTaken")));
    let message = stalled["message"].as_str().unwrap();
    assert!(message.contains("Pod shop/orders-sync-1 exists and does not belong to SyncJob orders"), "{message}");
    run.await.unwrap().unwrap();
    // No DELETE of their pod: done() fails on any call but Events.
    let events = api.done().await;
    assert!(reasons(&events).contains(&"NameTaken".to_owned()));
}

#[tokio::test]
async fn a_service_account_of_the_jobs_name_that_it_does_not_own_stops_the_job_before_any_grant() {
    let (ctx, mut api) = context();
    api.explicit_identity();
    let j = job(None);
    let jv = serde_json::to_value(&j).unwrap();
    let run = tokio::spawn(reconcile(Arc::new(j), ctx));
    api.expect(call(Method::GET, PODS, pod_list(vec![]))).await;
    let theirs = json!({"apiVersion": "v1", "kind": "ServiceAccount",
                        "metadata": {"name": "orders-ferry-worker", "namespace": "shop", "uid": "sa-uid"}});
    api.expect(call(Method::GET, &format!("{ACCOUNTS}/orders-ferry-worker"), theirs)).await;
    // No Role, no RoleBinding, no pod.
    let (_, status) = api.expect(call(Method::PATCH, &format!("{JOBS}/orders/status"), jv)).await;
    let stalled = condition(&status, "Stalled");
    assert_eq!(stalled["reason"], "NameTaken");
    let message = stalled["message"].as_str().unwrap();
    assert!(
        message.contains("ServiceAccount shop/orders-ferry-worker exists and does not belong to SyncJob orders"),
        "{message}"
    );
    run.await.unwrap().unwrap();
    assert!(reasons(&api.done().await).contains(&"NameTaken".to_owned()));
}

#[tokio::test]
async fn the_jobs_own_worker_identity_is_created_with_rules_naming_only_its_objects() {
    let (ctx, mut api) = context();
    api.explicit_identity();
    let j = job(None);
    let jv = serde_json::to_value(&j).unwrap();
    let run = tokio::spawn(reconcile(Arc::new(j), ctx));
    api.expect(call(Method::GET, PODS, pod_list(vec![]))).await;
    let mut created = Vec::new();
    for path in [ACCOUNTS, "/apis/rbac.authorization.k8s.io/v1/namespaces/shop/roles"] {
        api.expect(refused(Method::GET, &format!("{path}/orders-ferry-worker"), 404, "NotFound")).await;
        created.push(api.expect(echo(Method::POST, path)).await.1);
    }
    let bindings = "/apis/rbac.authorization.k8s.io/v1/namespaces/shop/rolebindings";
    api.expect(refused(Method::GET, &format!("{bindings}/orders-ferry-worker"), 404, "NotFound")).await;
    created.push(api.expect(echo(Method::POST, bindings)).await.1);
    let (_, pod) = api.expect(call(Method::POST, PODS, json!({}))).await;
    assert_eq!(pod["spec"]["serviceAccountName"], "orders-ferry-worker");
    api.expect(call(Method::PATCH, &format!("{JOBS}/orders/status"), jv)).await;
    run.await.unwrap().unwrap();
    api.done().await;
    for object in &created {
        assert_eq!(object["metadata"]["ownerReferences"][0]["uid"], "uid-1", "{object}");
    }
    let rules = created[1]["rules"].as_array().unwrap();
    for rule in rules.iter().filter(|r| r["apiGroups"] != json!(["events.k8s.io"])) {
        assert_eq!(rule["resourceNames"], json!(["orders"]), "{rule}");
    }
    assert!(!rules.iter().any(|r| r["resources"].to_string().contains("configmaps")), "a sync worker writes none");
    assert_eq!(created[2]["subjects"][0]["name"], "orders-ferry-worker");
    assert_eq!(
        created[2]["roleRef"],
        json!({"apiGroup": "rbac.authorization.k8s.io", "kind": "Role", "name": "orders-ferry-worker"})
    );
}

#[tokio::test]
async fn a_report_configmap_created_by_someone_else_meanwhile_is_not_adopted() {
    let (ctx, mut api) = context();
    let task = compare_task();
    let tv = serde_json::to_value(&task).unwrap();
    let jv = serde_json::to_value(job(None)).unwrap();
    let run = tokio::spawn(ferry::controller::compare::reconcile(Arc::new(task), ctx));
    api.expect(call(Method::GET, &format!("{JOBS}/orders"), jv)).await;
    api.expect(refused(Method::GET, &format!("{CONFIGMAPS}/check-report"), 404, "NotFound")).await;
    api.expect(call(Method::GET, PODS, pod_list(vec![]))).await;
    // Between our look and our create, a user's ConfigMap took the name.
    api.expect(refused(Method::POST, CONFIGMAPS, 409, "AlreadyExists")).await;
    let users = json!({"apiVersion": "v1", "kind": "ConfigMap",
                       "metadata": {"name": "check-report", "namespace": "shop", "uid": "someone-else"}});
    api.expect(call(Method::GET, &format!("{CONFIGMAPS}/check-report"), users)).await;
    let (_, status) = api.expect(call(Method::PATCH, &format!("{TASKS}/check/status"), tv)).await;
    let stalled = condition(&status, "Stalled");
    assert_eq!(stalled["reason"], "NameTaken");
    assert!(
        stalled["message"].as_str().unwrap().contains("ConfigMap shop/check-report exists and does not belong"),
        "{stalled}"
    );
    run.await.unwrap().unwrap();
    assert!(api.identity.is_empty(), "no worker identity, no pod");
    assert!(reasons(&api.done().await).contains(&"NameTaken".to_owned()));
}

#[tokio::test]
async fn a_sync_job_of_a_batch_childs_name_that_the_batch_does_not_own_is_left_alone() {
    let (ctx, mut api) = context();
    let mut b = BatchJob::new("tenants", BatchJobSpec::test(&["acme"], None));
    b.metadata.namespace = Some("shop".into());
    b.metadata.uid = Some("batch-uid".into());
    b.metadata.generation = Some(1);
    let bv = serde_json::to_value(&b).unwrap();
    let run = tokio::spawn(ferry::controller::batch::reconcile(Arc::new(b), ctx));
    // A SyncJob tenants-acme exists without the batch's ownerReference (the list shows only
    // labelled ones; this one may not even carry the label): the create is refused.
    api.expect(call(
        Method::GET,
        JOBS,
        json!({"apiVersion": "ferry.dev/v1alpha1", "kind": "SyncJobList", "metadata": {}, "items": []}),
    ))
    .await;
    api.expect(refused(Method::POST, JOBS, 409, "AlreadyExists")).await;
    let (_, status) =
        api.expect(call(Method::PATCH, "/apis/ferry.dev/v1alpha1/namespaces/shop/batchjobs/tenants/status", bv)).await;
    let row = &status["status"]["jobs"][0];
    assert!(row["message"].as_str().unwrap().contains("does not belong to this batch"), "{row}");
    assert_eq!(condition(&status, "Stalled")["status"], "True");
    run.await.unwrap().unwrap();
    // No update, no delete of their SyncJob; an Event names it.
    let events = api.done().await;
    let taken = events.iter().find(|e| e["reason"] == "NameTaken").expect("a NameTaken Event");
    assert!(
        taken["note"].as_str().unwrap().contains("SyncJob shop/tenants-acme exists and does not belong"),
        "{taken}"
    );
}
