//! Where a real API server differs from a forgiving mock: scenarios against the mocked API that
//! pin what the controllers do about other controllers' finalizers, leases judged across skewed
//! clocks and hanging calls, pods the API server refuses, names longer than a label value, and a
//! report ConfigMap that belongs to someone else.

mod mock_api;

use std::sync::Arc;
use std::time::Duration;

use ferry::api::compare::{CompareTask, CompareTaskSpec};
use ferry::api::{BatchJob, BatchJobSpec, SyncJob, SyncJobPhase, SyncJobSpec, SyncJobStatus};
use ferry::controller::pods::{self, LABEL_JOB, Role, label_value};
use ferry::controller::syncjob::{FINALIZER, reconcile};
use ferry::operator::leader::{Elector, LEASE_DURATION, LeaseError, RENEW_DEADLINE};
use http::Method;
use k8s_openapi::api::coordination::v1::Lease;
use k8s_openapi::api::core::v1::{Pod, PodStatus};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{MicroTime, Time};
use kube::Api;
use mock_api::{call, context, echo, refused, refused_with};
use serde_json::{Value, json};

const JOBS: &str = "/apis/ferry.dev/v1alpha1/namespaces/shop/syncjobs";
const PODS: &str = "/api/v1/namespaces/shop/pods";
const TASKS: &str = "/apis/ferry.dev/v1alpha1/namespaces/shop/comparetasks";
const CONFIGMAPS: &str = "/api/v1/namespaces/shop/configmaps";

fn job(name: &str, finalizers: &[&str], status: Option<SyncJobStatus>) -> SyncJob {
    let mut j = SyncJob::new(name, SyncJobSpec::test());
    j.metadata.namespace = Some("shop".into());
    j.metadata.uid = Some("uid-1".into());
    j.metadata.generation = Some(1);
    j.metadata.finalizers = (!finalizers.is_empty()).then(|| finalizers.iter().map(|f| f.to_string()).collect());
    j.status = status;
    j
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

// Finalizers.

#[tokio::test]
async fn another_controllers_finalizer_survives_ours_being_added_and_removed() {
    let (ctx, mut api) = context();
    let j = job("orders", &["backup.example.com/keep"], None);
    let jv = serde_json::to_value(&j).unwrap();
    let run = tokio::spawn(reconcile(Arc::new(j), ctx));
    let (_, patch) = api.expect(call(Method::PATCH, &format!("{JOBS}/orders"), jv.clone())).await;
    assert_eq!(
        patch,
        json!([{"op": "test", "path": "/metadata/finalizers", "value": ["backup.example.com/keep"]},
               {"op": "add", "path": "/metadata/finalizers/-", "value": FINALIZER}])
    );
    api.expect(call(Method::GET, PODS, pod_list(vec![]))).await;
    api.expect(call(Method::POST, PODS, json!({}))).await;
    api.expect(call(Method::PATCH, &format!("{JOBS}/orders/status"), jv)).await;
    run.await.unwrap().unwrap();
    api.done().await;

    // Released: only our entry goes, by its index, tested first.
    let (ctx, mut api) = context();
    let mut j = job(
        "orders",
        &["backup.example.com/keep", FINALIZER],
        Some(SyncJobStatus { phase: Some(SyncJobPhase::ReleaseResourceStarted), ..Default::default() }),
    );
    j.metadata.deletion_timestamp = Some(Time(jiff::Timestamp::now()));
    let mut released = pods::build(&j, Role::Release, 0, "ferry:test").unwrap();
    released.status = Some(PodStatus { phase: Some("Succeeded".into()), ..Default::default() });
    let jv = serde_json::to_value(&j).unwrap();
    let run = tokio::spawn(reconcile(Arc::new(j), ctx));
    api.expect(call(Method::GET, PODS, pod_list(vec![released]))).await;
    let (_, patch) = api.expect(call(Method::PATCH, &format!("{JOBS}/orders"), jv)).await;
    assert_eq!(
        patch,
        json!([{"op": "test", "path": "/metadata/finalizers/1", "value": FINALIZER},
               {"op": "remove", "path": "/metadata/finalizers/1"}])
    );
    run.await.unwrap().unwrap();
    api.done().await;
}

#[tokio::test]
async fn a_finalizer_list_changed_meanwhile_is_a_conflict_retried_on_fresh_data() {
    let (ctx, mut api) = context();
    let j = job("orders", &[], None);
    let run = tokio::spawn(reconcile(Arc::new(j), ctx));
    // What the API server answers when a JSON patch's `test` fails.
    api.expect(refused_with(
        Method::PATCH,
        &format!("{JOBS}/orders"),
        422,
        "Invalid",
        "the server rejected our request due to an error in our request",
    ))
    .await;
    let error = run.await.unwrap().unwrap_err();
    assert_eq!(error.category(), "conflict", "{error}");
    api.done().await;
}

// Pods the API server refuses.

async fn refused_pod(message: &str) -> (Value, Vec<Value>) {
    let (ctx, mut api) = context();
    let j = job("orders", &[FINALIZER], None);
    let jv = serde_json::to_value(&j).unwrap();
    let run = tokio::spawn(reconcile(Arc::new(j), ctx));
    api.expect(call(Method::GET, PODS, pod_list(vec![]))).await;
    api.expect(refused_with(Method::POST, PODS, 403, "Forbidden", message)).await;
    let (_, status) = api.expect(call(Method::PATCH, &format!("{JOBS}/orders/status"), jv)).await;
    let requeue = run.await.unwrap().unwrap();
    assert_eq!(requeue, kube::runtime::controller::Action::requeue(Duration::from_secs(30)));
    (status, api.done().await)
}

#[tokio::test]
async fn a_missing_worker_service_account_is_a_condition_and_an_event_saying_how_to_fix_it() {
    let (status, events) = refused_pod(
        "pods \"orders-precheck-1\" is forbidden: error looking up service account shop/orders-ferry-worker: \
         serviceaccount \"orders-ferry-worker\" not found",
    )
    .await;
    let stalled = condition(&status, "Stalled");
    assert_eq!((stalled["status"].as_str(), stalled["reason"].as_str()), (Some("True"), Some("PodRejected")));
    let message = stalled["message"].as_str().unwrap();
    assert!(message.contains("the job's ServiceAccount is missing in namespace shop"), "{message}");
    assert!(message.contains("created again on the next try"), "{message}");
    assert_eq!(condition(&status, "Ready")["status"], "False");
    let event = events.iter().find(|e| e["reason"] == "PodRejected").expect("a PodRejected Event");
    assert_eq!(event["type"], "Warning");
    assert!(event["note"].as_str().unwrap().contains("orders-ferry-worker"), "{event}");
}

#[tokio::test]
async fn a_quota_or_pod_security_rejection_says_which_and_what_to_change() {
    let (status, events) = refused_pod(
        "pods \"orders-precheck-1\" is forbidden: exceeded quota: compute, requested: limits.memory=1Gi, \
         used: limits.memory=3Gi, limited: limits.memory=3Gi",
    )
    .await;
    let message = condition(&status, "Stalled")["message"].as_str().unwrap().to_owned();
    assert!(message.contains("ResourceQuota") && message.contains("spec.nodeType"), "{message}");
    assert!(reasons(&events).contains(&"PodRejected".to_owned()));

    let (status, _) = refused_pod(
        "pods \"orders-precheck-1\" is forbidden: violates PodSecurity \"restricted:latest\": \
         allowPrivilegeEscalation != false",
    )
    .await;
    let message = condition(&status, "Stalled")["message"].as_str().unwrap().to_owned();
    assert!(message.contains("Pod Security admission") && message.contains("pod-security.kubernetes.io"), "{message}");
}

// Names longer than a label value.

/// A valid resource name of 100 characters.
fn long_name() -> String {
    let mut n = "orders-of-the-eastern-region-".repeat(4);
    n.truncate(99);
    n.push('x');
    n
}

fn selector_value(query: &str, key: &str) -> String {
    let query = query.replace("%2F", "/").replace("%3D", "=").replace("%2C", ",");
    let selector = query.split('&').find_map(|p| p.strip_prefix("labelSelector=")).unwrap_or("").to_owned();
    selector
        .split(',')
        .find_map(|kv| kv.strip_prefix(&format!("{key}=")).map(str::to_owned))
        .unwrap_or_else(|| panic!("no {key} in {selector}"))
}

#[tokio::test]
async fn a_sync_job_with_a_name_longer_than_a_label_value_still_gets_its_pods_and_status() {
    let name = long_name();
    let (ctx, mut api) = context();
    let j = job(&name, &[FINALIZER], None);
    let jv = serde_json::to_value(&j).unwrap();
    let run = tokio::spawn(reconcile(Arc::new(j), ctx));
    let (query, _) = api.expect(call(Method::GET, PODS, pod_list(vec![]))).await;
    let value = selector_value(&query, LABEL_JOB);
    assert!(value.len() <= 63 && value == label_value(&name), "{value}");
    let (_, pod) = api.expect(call(Method::POST, PODS, json!({}))).await;
    assert_eq!(pod["metadata"]["labels"][LABEL_JOB], value.as_str());
    assert!(pod["metadata"]["name"].as_str().unwrap().len() <= 63);
    for (k, v) in pod["metadata"]["labels"].as_object().unwrap() {
        assert!(v.as_str().unwrap().len() <= 63, "{k}={v}");
    }
    let (_, status) = api.expect(call(Method::PATCH, &format!("{JOBS}/{name}/status"), jv)).await;
    assert_eq!(status["status"]["phase"], "CONFIGURATION");
    run.await.unwrap().unwrap();
    api.done().await;
    // Two long names that share their first 63 characters still get different label values.
    let mut other = name.clone();
    other.pop();
    other.push('y');
    assert_ne!(label_value(&name), label_value(&other));
}

fn compare_task(name: &str) -> CompareTask {
    let spec: CompareTaskSpec =
        serde_json::from_value(json!({"syncJobRef": {"name": "orders"}, "type": "rows"})).unwrap();
    let mut t = CompareTask::new(name, spec);
    t.metadata.namespace = Some("shop".into());
    t.metadata.uid = Some("task-uid".into());
    t.metadata.generation = Some(1);
    t
}

#[tokio::test]
async fn a_compare_task_with_a_long_name_runs_its_pod_under_a_hashed_label() {
    let name = long_name();
    let (ctx, mut api) = context();
    let task = compare_task(&name);
    let tv = serde_json::to_value(&task).unwrap();
    let jv = serde_json::to_value(job("orders", &[FINALIZER], None)).unwrap();
    let run = tokio::spawn(ferry::controller::compare::reconcile(Arc::new(task), ctx));
    api.expect(call(Method::GET, &format!("{JOBS}/orders"), jv)).await;
    api.expect(refused(Method::GET, &format!("{CONFIGMAPS}/{name}-report"), 404, "NotFound")).await;
    let (query, _) = api.expect(call(Method::GET, PODS, pod_list(vec![]))).await;
    assert_eq!(selector_value(&query, LABEL_JOB), label_value(&name));
    api.expect(echo(Method::POST, CONFIGMAPS)).await;
    let (_, pod) = api.expect(call(Method::POST, PODS, json!({}))).await;
    assert_eq!(pod["metadata"]["labels"][LABEL_JOB], label_value(&name).as_str());
    let (_, status) = api.expect(call(Method::PATCH, &format!("{TASKS}/{name}/status"), tv)).await;
    assert_eq!(status["status"]["phase"], "WAITING_FOR_RUNNING");
    run.await.unwrap().unwrap();
    api.done().await;
}

#[tokio::test]
async fn a_batch_with_a_long_name_lists_its_children_under_a_hashed_label() {
    let name = long_name();
    let (ctx, mut api) = context();
    let mut batch = BatchJob::new(&name, BatchJobSpec::test(&["acme"], None));
    batch.metadata.namespace = Some("shop".into());
    batch.metadata.uid = Some("batch-uid".into());
    batch.metadata.generation = Some(1);
    let bv = serde_json::to_value(&batch).unwrap();
    let run = tokio::spawn(ferry::controller::batch::reconcile(Arc::new(batch), ctx));
    let (query, _) = api
        .expect(call(
            Method::GET,
            JOBS,
            json!({"apiVersion": "ferry.dev/v1alpha1", "kind": "SyncJobList", "metadata": {}, "items": []}),
        ))
        .await;
    assert_eq!(selector_value(&query, ferry::lifecycle::batch::LABEL_BATCH), label_value(&name));
    // The child's name would be longer than 63 characters: the item says so, nothing is created.
    let (_, status) = api
        .expect(call(Method::PATCH, &format!("/apis/ferry.dev/v1alpha1/namespaces/shop/batchjobs/{name}/status"), bv))
        .await;
    let row = &status["status"]["jobs"][0];
    assert!(row["message"].as_str().unwrap().contains("longer than 63"), "{row}");
    run.await.unwrap().unwrap();
    api.done().await;
}

// The report ConfigMap.

#[tokio::test]
async fn a_report_configmap_the_task_does_not_own_is_never_taken_over() {
    let (ctx, mut api) = context();
    let task = compare_task("check");
    let tv = serde_json::to_value(&task).unwrap();
    let jv = serde_json::to_value(job("orders", &[FINALIZER], None)).unwrap();
    let users = json!({"apiVersion": "v1", "kind": "ConfigMap",
                       "metadata": {"name": "check-report", "namespace": "shop", "uid": "someone-else"},
                       "data": {"settings": "mine"}});
    let run = tokio::spawn(ferry::controller::compare::reconcile(Arc::new(task), ctx));
    api.expect(call(Method::GET, &format!("{JOBS}/orders"), jv)).await;
    api.expect(call(Method::GET, &format!("{CONFIGMAPS}/check-report"), users)).await;
    api.expect(call(Method::GET, PODS, pod_list(vec![]))).await;
    // No pod is created and nothing is written to the ConfigMap.
    let (_, status) = api.expect(call(Method::PATCH, &format!("{TASKS}/check/status"), tv)).await;
    assert_eq!(status["status"]["phase"], "FAILED");
    let message = status["status"]["message"].as_str().unwrap();
    assert!(message.contains("check-report") && message.contains("does not belong"), "{message}");
    let stalled = condition(&status, "Stalled");
    assert_eq!(stalled["status"], "True");
    run.await.unwrap().unwrap();
    let events = api.done().await;
    assert!(!events.is_empty(), "an Event says why");
}

// Leader election.

fn lease(holder: &str, renewed: jiff::Timestamp, version: &str) -> Value {
    serde_json::to_value(Lease {
        metadata: kube::api::ObjectMeta {
            name: Some("ferry-operator".into()),
            namespace: Some("ferry-system".into()),
            resource_version: Some(version.into()),
            ..Default::default()
        },
        spec: Some(k8s_openapi::api::coordination::v1::LeaseSpec {
            holder_identity: Some(holder.into()),
            lease_duration_seconds: Some(15),
            renew_time: Some(MicroTime(renewed)),
            ..Default::default()
        }),
    })
    .unwrap()
}

const LEASE: &str = "/apis/coordination.k8s.io/v1/namespaces/ferry-system/leases/ferry-operator";
const LEASES: &str = "/apis/coordination.k8s.io/v1/namespaces/ferry-system/leases";

fn elector(client: kube::Client) -> Elector {
    Elector::new(Api::namespaced(client, "ferry-system"), "ferry-system", "ferry-operator", "me")
}

#[tokio::test(start_paused = true)]
async fn expiry_is_judged_by_this_replicas_clock_not_the_holders_renew_time() {
    let (ctx, mut api) = context();
    let elector = Arc::new(elector(ctx.client.clone()));
    // The holder's clock is an hour behind ours: its renewTime reads an hour old.
    let skewed = jiff::Timestamp::now() - jiff::SignedDuration::from_secs(3600);
    let held = lease("other", skewed, "7");

    let e = Arc::clone(&elector);
    let first = tokio::spawn(async move { e.try_hold().await });
    api.expect(call(Method::GET, LEASE, held.clone())).await;
    assert!(!first.await.unwrap().unwrap(), "a lease just seen changing is held");

    // Renewed by its holder (the record changed): still held, whatever its renewTime says.
    tokio::time::advance(Duration::from_secs(10)).await;
    let renewed = lease("other", skewed + jiff::SignedDuration::from_secs(10), "8");
    let e = Arc::clone(&elector);
    let second = tokio::spawn(async move { e.try_hold().await });
    api.expect(call(Method::GET, LEASE, renewed.clone())).await;
    assert!(!second.await.unwrap().unwrap());

    // Unchanged for the lease's duration on our clock: taken over.
    tokio::time::advance(LEASE_DURATION).await;
    let e = Arc::clone(&elector);
    let third = tokio::spawn(async move { e.try_hold().await });
    api.expect(call(Method::GET, LEASE, renewed)).await;
    let (_, written) = api.expect(echo(Method::PUT, LEASE)).await;
    assert_eq!(written["spec"]["holderIdentity"], "me");
    assert_eq!(written["metadata"]["resourceVersion"], "8", "a compare-and-swap on what was read");
    assert!(third.await.unwrap().unwrap());
    api.done().await;
}

#[tokio::test(start_paused = true)]
async fn a_leader_whose_renewal_hangs_steps_down_before_the_lease_could_expire() {
    let (ctx, mut api) = context();
    let elector = Arc::new(elector(ctx.client.clone()));
    let e = Arc::clone(&elector);
    let acquired = tokio::spawn(async move { e.acquire().await });
    api.expect(refused(Method::GET, LEASE, 404, "NotFound")).await;
    api.expect(echo(Method::POST, LEASES)).await;
    acquired.await.unwrap().unwrap();
    let held_at = tokio::time::Instant::now();

    let e = Arc::clone(&elector);
    let kept = tokio::spawn(async move { e.keep().await });
    // The renewal's GET never comes back.
    assert_eq!(api.hang().await, (Method::GET, LEASE.to_owned()));
    tokio::time::timeout(LEASE_DURATION, kept).await.expect("stepped down in time").unwrap();
    let led_for = held_at.elapsed();
    assert!(led_for >= RENEW_DEADLINE && led_for < LEASE_DURATION, "stepped down after {led_for:?}");
}

#[tokio::test]
async fn a_missing_lease_namespace_ends_the_wait_with_what_to_do() {
    let (ctx, mut api) = context();
    let elector = elector(ctx.client.clone());
    let acquired = tokio::spawn(async move { elector.acquire().await });
    api.expect(refused(Method::GET, LEASE, 404, "NotFound")).await;
    api.expect(refused_with(Method::POST, LEASES, 404, "NotFound", "namespaces \"ferry-system\" not found")).await;
    let error = acquired.await.unwrap().unwrap_err();
    assert!(matches!(error, LeaseError::NamespaceMissing(_)), "{error}");
    assert!(error.to_string().contains("--namespace"), "{error}");
    api.done().await;
}
