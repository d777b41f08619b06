//! BatchJob controller scenarios against a mocked Kubernetes API: each test runs one reconcile
//! and asserts the exact API calls it makes, in order, answering each as the API server would.

mod mock_api;

use std::sync::Arc;

use ferry::api::batch::BatchJobStatus;
use ferry::api::{BatchJob, BatchJobSpec, BatchPhase, SyncJob, SyncJobPhase, SyncJobSpec, SyncJobStatus};
use ferry::controller::batch::reconcile;
use ferry::lifecycle::batch::{LABEL_BATCH, LABEL_ITEM, desired_spec, plan};
use ferry::lifecycle::conditions::{self, Status, types};
use http::Method;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::Time;
use kube::Resource;
use mock_api::{ApiServer, call, context, echo, refused};
use serde_json::{Value, json};

const JOBS: &str = "/apis/ferry.dev/v1alpha1/namespaces/shop/syncjobs";
const BATCH_STATUS: &str = "/apis/ferry.dev/v1alpha1/namespaces/shop/batchjobs/tenants/status";

fn spec(items: &[&str], max: Option<u32>) -> BatchJobSpec {
    BatchJobSpec::test(items, max)
}

fn batch(spec: BatchJobSpec, status: Option<BatchJobStatus>) -> BatchJob {
    let mut b = BatchJob::new("tenants", spec);
    b.metadata.namespace = Some("shop".into());
    b.metadata.uid = Some("batch-uid".into());
    b.metadata.generation = Some(1);
    b.status = status;
    b
}

/// The child of `item` as the API server holds it, with a status of `phase`.
fn child(b: &BatchJob, item: &str, phase: Option<SyncJobPhase>) -> SyncJob {
    let it = b.spec.jobs.iter().find(|i| i.name == item).unwrap();
    let mut j = SyncJob::new(&format!("tenants-{item}"), desired_spec(&b.spec, it).unwrap());
    j.metadata.namespace = Some("shop".into());
    j.metadata.resource_version = Some(format!("rv-{item}"));
    j.metadata.labels = Some([(LABEL_BATCH.into(), "tenants".into()), (LABEL_ITEM.into(), item.into())].into());
    j.metadata.owner_references = Some(vec![b.controller_owner_ref(&()).unwrap()]);
    j.status = phase.map(|p| {
        let mut st = SyncJobStatus { phase: Some(p), ..Default::default() };
        if p == SyncJobPhase::IncreTransferStarted {
            st.incr_start_time = Some(Time(jiff::Timestamp::now()));
            conditions::set(
                &mut st.conditions,
                types::READY,
                Status::True,
                "Streaming",
                "ok",
                1,
                jiff::Timestamp::now(),
            );
        }
        st
    });
    j
}

fn list(children: &[SyncJob]) -> Value {
    json!({"apiVersion": "ferry.dev/v1alpha1", "kind": "SyncJobList", "metadata": {}, "items": children})
}

fn status_of(body: &Value) -> BatchJobStatus {
    serde_json::from_value(body["status"].clone()).unwrap()
}

fn reasons(events: &[Value]) -> Vec<String> {
    events.iter().map(|e| e["reason"].as_str().unwrap_or("").to_owned()).collect()
}

/// Expects the list of children, checking it selects by the batch label.
async fn expect_list(api: &mut ApiServer, children: &[SyncJob]) {
    let (query, _) = api.expect(call(Method::GET, JOBS, list(children))).await;
    assert!(query.contains("labelSelector=ferry.dev%2Fbatch%3Dtenants"), "{query}");
}

#[tokio::test]
async fn a_new_batch_creates_owned_children_up_to_max_concurrent() {
    let (ctx, mut api) = context();
    let b = batch(spec(&["acme", "globex", "initech"], Some(2)), None);
    let bv = serde_json::to_value(&b).unwrap();
    let run = tokio::spawn(reconcile(Arc::new(b.clone()), ctx));
    expect_list(&mut api, &[]).await;
    for item in ["acme", "globex"] {
        let (_, created) = api.expect(echo(Method::POST, JOBS)).await;
        assert_eq!(created["metadata"]["name"], format!("tenants-{item}"));
        assert_eq!(created["metadata"]["labels"][LABEL_ITEM], item);
        let owner = &created["metadata"]["ownerReferences"][0];
        assert_eq!((owner["kind"].as_str(), owner["uid"].as_str()), (Some("BatchJob"), Some("batch-uid")));
        assert_eq!((owner["controller"].as_bool(), owner["blockOwnerDeletion"].as_bool()), (Some(true), Some(true)));
        let spec: SyncJobSpec = serde_json::from_value(created["spec"].clone()).unwrap();
        assert_eq!(spec.objects.databases[0].tables[0].name, item, "overrides merged onto the template");
        assert_eq!(spec.source.host, SyncJobSpec::test().source.host);
    }
    let (query, status) = api.expect(call(Method::PATCH, BATCH_STATUS, bv)).await;
    assert!(query.contains("fieldManager=ferry-operator") && query.contains("force=true"), "{query}");
    let st = status_of(&status);
    assert_eq!(st.phase, Some(BatchPhase::RollingOut));
    assert_eq!(st.total, 3);
    assert_eq!(st.jobs[2].sync_job, None);
    assert!(st.jobs[2].message.as_deref().unwrap().contains("maxConcurrent 2"));
    run.await.unwrap().unwrap();
    let events = reasons(&api.done().await);
    assert_eq!(events.iter().filter(|r| *r == "ChildCreated").count(), 2, "{events:?}");
}

#[tokio::test]
async fn a_streaming_child_frees_its_slot_and_an_added_item_is_created() {
    let (ctx, mut api) = context();
    // Scale up: a fourth item joins; acme streams (slot free), globex still copies.
    let b = batch(spec(&["acme", "globex", "initech", "umbrella"], Some(2)), None);
    let kids = [
        child(&b, "acme", Some(SyncJobPhase::IncreTransferStarted)),
        child(&b, "globex", Some(SyncJobPhase::FullTransferStarted)),
    ];
    let bv = serde_json::to_value(&b).unwrap();
    let run = tokio::spawn(reconcile(Arc::new(b.clone()), ctx));
    expect_list(&mut api, &kids).await;
    let (_, created) = api.expect(echo(Method::POST, JOBS)).await;
    assert_eq!(created["metadata"]["name"], "tenants-initech", "the next item in list order");
    let (_, status) = api.expect(call(Method::PATCH, BATCH_STATUS, bv)).await;
    let st = status_of(&status);
    assert_eq!(st.counts.get("WAITING"), Some(&1));
    assert_eq!(st.running, 2);
    run.await.unwrap().unwrap();
}

#[tokio::test]
async fn removing_an_item_deletes_its_child() {
    let (ctx, mut api) = context();
    let old = batch(spec(&["acme", "globex"], None), None);
    let kids = [
        child(&old, "acme", Some(SyncJobPhase::IncreTransferStarted)),
        child(&old, "globex", Some(SyncJobPhase::IncreTransferStarted)),
    ];
    let b = batch(spec(&["acme"], None), None);
    let bv = serde_json::to_value(&b).unwrap();
    let run = tokio::spawn(reconcile(Arc::new(b), ctx));
    expect_list(&mut api, &kids).await;
    let gone = serde_json::to_value(&kids[1]).unwrap();
    api.expect(call(Method::DELETE, &format!("{JOBS}/tenants-globex"), gone)).await;
    let (_, status) = api.expect(call(Method::PATCH, BATCH_STATUS, bv)).await;
    let st = status_of(&status);
    assert_eq!((st.total, st.phase), (1, Some(BatchPhase::Running)));
    run.await.unwrap().unwrap();
    assert!(reasons(&api.done().await).contains(&"ChildDeleted".to_owned()));
}

#[tokio::test]
async fn pausing_the_batch_pauses_every_child_with_a_conditional_patch() {
    let (ctx, mut api) = context();
    let running = batch(spec(&["acme", "globex", "initech"], Some(2)), None);
    let kids = [
        child(&running, "acme", Some(SyncJobPhase::IncreTransferStarted)),
        child(&running, "globex", Some(SyncJobPhase::FullTransferStarted)),
    ];
    let mut paused = spec(&["acme", "globex", "initech"], Some(2));
    paused.paused = true;
    let b = batch(paused, None);
    let bv = serde_json::to_value(&b).unwrap();
    let run = tokio::spawn(reconcile(Arc::new(b), ctx));
    expect_list(&mut api, &kids).await;
    for item in ["acme", "globex"] {
        let answer =
            serde_json::to_value(kids.iter().find(|k| k.metadata.name.as_deref().unwrap().ends_with(item))).unwrap();
        let (_, patch) = api.expect(call(Method::PATCH, &format!("{JOBS}/tenants-{item}"), answer)).await;
        assert_eq!(patch, json!({"metadata": {"resourceVersion": format!("rv-{item}")}, "spec": {"paused": true}}));
    }
    let (_, status) = api.expect(call(Method::PATCH, BATCH_STATUS, bv)).await;
    let st = status_of(&status);
    assert_eq!(st.phase, Some(BatchPhase::Paused));
    assert_eq!(st.jobs[2].message.as_deref(), Some("waiting: the batch is paused"));
    run.await.unwrap().unwrap();
}

#[tokio::test]
async fn editing_an_item_patches_only_its_child_with_the_difference() {
    let (ctx, mut api) = context();
    let mut s = spec(&["acme", "globex"], None);
    let before = batch(s.clone(), None);
    let kids = [
        child(&before, "acme", Some(SyncJobPhase::IncreTransferStarted)),
        child(&before, "globex", Some(SyncJobPhase::IncreTransferStarted)),
    ];
    let overrides = s.jobs[1].overrides.as_mut().unwrap();
    overrides["nodeType"] = json!("medium");
    overrides["objects"]["databases"][0]["tables"] = json!([{"name": "globex"}, {"name": "globex_audit"}]);
    let b = batch(s, None);
    let bv = serde_json::to_value(&b).unwrap();
    let run = tokio::spawn(reconcile(Arc::new(b), ctx));
    expect_list(&mut api, &kids).await;
    let answer = serde_json::to_value(&kids[1]).unwrap();
    let (_, patch) = api.expect(call(Method::PATCH, &format!("{JOBS}/tenants-globex"), answer)).await;
    assert_eq!(patch["spec"]["nodeType"], "medium");
    assert_eq!(patch["spec"]["objects"]["databases"][0]["tables"][1]["name"], "globex_audit");
    assert!(patch["spec"].get("source").is_none(), "only what changed: {patch}");
    api.expect(call(Method::PATCH, BATCH_STATUS, bv)).await;
    run.await.unwrap().unwrap();
    assert!(reasons(&api.done().await).contains(&"ChildUpdated".to_owned()));
}

#[tokio::test]
async fn an_invalid_item_gets_its_own_row_and_the_others_are_created() {
    let (ctx, mut api) = context();
    let mut s = spec(&["acme", "globex"], None);
    s.jobs[0].overrides.as_mut().unwrap()["source"] = json!({"port": 0});
    let b = batch(s, None);
    let bv = serde_json::to_value(&b).unwrap();
    let run = tokio::spawn(reconcile(Arc::new(b), ctx));
    expect_list(&mut api, &[]).await;
    let (_, created) = api.expect(echo(Method::POST, JOBS)).await;
    assert_eq!(created["metadata"]["name"], "tenants-globex");
    let (_, status) = api.expect(call(Method::PATCH, BATCH_STATUS, bv)).await;
    let st = status_of(&status);
    let row = &st.jobs[0];
    assert!(row.message.as_deref().unwrap().contains("spec.source.port"), "{row:?}");
    assert_eq!(st.failed, 1);
    assert_eq!(st.phase, Some(BatchPhase::Failed));
    let stalled = conditions::get(&st.conditions, types::STALLED).unwrap();
    assert_eq!(stalled.status, "True");
    assert!(stalled.message.contains("acme"));
    run.await.unwrap().unwrap();
    assert!(reasons(&api.done().await).contains(&"ItemInvalid".to_owned()));
}

#[tokio::test]
async fn a_child_name_taken_by_another_syncjob_is_reported_not_overwritten() {
    let (ctx, mut api) = context();
    let b = batch(spec(&["acme"], None), None);
    let bv = serde_json::to_value(&b).unwrap();
    let run = tokio::spawn(reconcile(Arc::new(b), ctx));
    expect_list(&mut api, &[]).await;
    api.expect(refused(Method::POST, JOBS, 409, "AlreadyExists")).await;
    let (_, status) = api.expect(call(Method::PATCH, BATCH_STATUS, bv)).await;
    let st = status_of(&status);
    assert!(st.jobs[0].message.as_deref().unwrap().contains("already exists"), "{:?}", st.jobs[0]);
    assert_eq!(st.phase, Some(BatchPhase::Failed));
    run.await.unwrap().unwrap();
}

#[tokio::test]
async fn a_batch_being_deleted_leaves_its_children_to_the_garbage_collector() {
    let (ctx, mut api) = context();
    let mut b = batch(spec(&["acme", "globex"], None), None);
    let kids = [child(&b, "acme", Some(SyncJobPhase::IncreTransferStarted))];
    b.metadata.deletion_timestamp = Some(Time(jiff::Timestamp::now()));
    b.spec.jobs.remove(0);
    let bv = serde_json::to_value(&b).unwrap();
    let run = tokio::spawn(reconcile(Arc::new(b), ctx));
    expect_list(&mut api, &kids).await;
    // No create for globex and no delete for acme: the children go with their owner.
    let (_, status) = api.expect(call(Method::PATCH, BATCH_STATUS, bv)).await;
    assert!(status_of(&status).jobs[0].message.as_deref().unwrap().contains("being deleted"));
    run.await.unwrap().unwrap();
    api.done().await;
}

#[tokio::test]
async fn an_unchanged_status_is_not_applied_and_foreign_syncjobs_are_ignored() {
    let (ctx, mut api) = context();
    let b = batch(spec(&["acme"], None), None);
    let kids = [child(&b, "acme", Some(SyncJobPhase::IncreTransferStarted))];
    let observed = ferry::lifecycle::batch::BatchObserved {
        name: "tenants".into(),
        generation: 1,
        deleting: false,
        children: vec![ferry::lifecycle::batch::Child {
            item: "acme".into(),
            spec: kids[0].spec.clone(),
            status: kids[0].status.clone(),
            deleting: false,
        }],
    };
    let settled = plan(&b.spec, &BatchJobStatus::default(), &observed, jiff::Timestamp::now()).status;
    let b = batch(b.spec.clone(), Some(settled));
    // A SyncJob carrying the label but owned by nothing: not a child, never touched.
    let mut stray = child(&b, "acme", None);
    stray.metadata.name = Some("copied-label".into());
    stray.metadata.owner_references = None;
    stray.metadata.labels.as_mut().unwrap().insert(LABEL_ITEM.into(), "other".into());
    let run = tokio::spawn(reconcile(Arc::new(b), ctx));
    expect_list(&mut api, &[kids[0].clone(), stray]).await;
    run.await.unwrap().unwrap();
    assert!(api.done().await.is_empty());
}
