//! The BatchJob controller: observe the batch and its child SyncJobs, let
//! [`lifecycle::batch::plan`] decide, create, update and delete children, and apply the batch's
//! status. Children are owned by the batch (controller reference, `blockOwnerDeletion`), so
//! deleting the batch lets the garbage collector delete them; each child's own finalizer still
//! releases its source resources.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;

use kube::api::{Api, DeleteParams, ListParams, ObjectMeta, Patch, PatchParams, PostParams};
use kube::runtime::controller::Action as Requeue;
use kube::{Resource, ResourceExt};
use serde_json::json;

use super::api_err;
use super::pods::{LABEL_MANAGED_BY, MANAGER, label_value};
use super::{Context, Error};
use crate::api::batch::merge_diff;
use crate::api::{BatchJob, SyncJob};
use crate::lifecycle::batch::{self as plan, BatchAction, BatchObserved, Child, LABEL_BATCH, LABEL_ITEM};

/// One reconcile of a BatchJob.
pub async fn reconcile(batch: Arc<BatchJob>, ctx: Arc<Context>) -> Result<Requeue, Error> {
    let name = batch.metadata.name.clone().ok_or(Error::Malformed("metadata.name"))?;
    let ns = batch.metadata.namespace.clone().ok_or(Error::Malformed("metadata.namespace"))?;
    let uid = batch.metadata.uid.clone().ok_or(Error::Malformed("metadata.uid"))?;
    let batches: Api<BatchJob> = Api::namespaced(ctx.client.clone(), &ns);
    let jobs: Api<SyncJob> = Api::namespaced(ctx.client.clone(), &ns);

    let listed = jobs
        .list(&ListParams::default().labels(&format!("{LABEL_BATCH}={}", label_value(&name))))
        .await
        .map_err(api_err("listing the batch's SyncJobs"))?
        .items;
    // Only children this batch owns: a label alone can be copied onto anything.
    let owned: BTreeMap<String, SyncJob> = listed
        .into_iter()
        .filter(|j| j.owner_references().iter().any(|o| o.uid == uid))
        .filter_map(|j| j.labels().get(LABEL_ITEM).cloned().map(|item| (item, j)))
        .collect();
    let observed = BatchObserved {
        name: name.clone(),
        generation: batch.metadata.generation.unwrap_or(0),
        deleting: batch.metadata.deletion_timestamp.is_some(),
        children: owned
            .iter()
            .map(|(item, j)| Child {
                item: item.clone(),
                spec: j.spec.clone(),
                status: j.status.clone(),
                deleting: j.metadata.deletion_timestamp.is_some(),
            })
            .collect(),
    };
    let old = batch.status.clone().unwrap_or_default();
    let now = jiff::Timestamp::now();
    let mut decided = plan::plan(&batch.spec, &old, &observed, now);
    // Items whose merged spec asks more of its worker pods than the operator allows: no child
    // is created or updated for them.
    let refused: BTreeMap<String, String> = batch
        .spec
        .jobs
        .iter()
        .filter_map(|item| {
            let spec = plan::desired_spec(&batch.spec, item).ok()?;
            let errors = ctx.policy.check(spec.worker.as_ref(), "worker");
            (!errors.is_empty()).then(|| (item.name.clone(), crate::api::validate::describe(&errors)))
        })
        .collect();

    let reference = batch.object_ref(&());
    let mut owner = batch.controller_owner_ref(&()).ok_or(Error::Malformed("metadata.uid"))?;
    // Foreground deletion of the batch waits for its children (and their release).
    owner.block_owner_deletion = Some(true);
    let mut taken = Vec::new();
    for action in &decided.actions {
        match action {
            BatchAction::Create { item, .. } | BatchAction::Update { item, .. } if refused.contains_key(item) => {}
            BatchAction::Event { reason: "ChildCreated" | "ChildUpdated", message, .. }
                if refused.keys().any(|item| {
                    let child = plan::child_name(&name, item);
                    *message == format!("SyncJob {child} created") || message.starts_with(&format!("SyncJob {child}:"))
                }) => {}
            BatchAction::Create { item, spec } => {
                let child_name = plan::child_name(&name, item);
                let mut child = SyncJob::new(&child_name, (**spec).clone());
                child.metadata = ObjectMeta {
                    name: Some(child_name.clone()),
                    namespace: Some(ns.clone()),
                    labels: Some(
                        [
                            (LABEL_BATCH.to_owned(), label_value(&name)),
                            (LABEL_ITEM.to_owned(), item.clone()),
                            (LABEL_MANAGED_BY.to_owned(), MANAGER.to_owned()),
                        ]
                        .into(),
                    ),
                    owner_references: Some(vec![owner.clone()]),
                    ..Default::default()
                };
                let params = PostParams { field_manager: Some(MANAGER.into()), ..Default::default() };
                match jobs.create(&params, &child).await {
                    Ok(_) => {}
                    // Not in the owned list, so someone else's SyncJob holds the name.
                    Err(kube::Error::Api(s)) if s.code == 409 => taken.push((item.clone(), child_name)),
                    Err(e) => return Err(Error::Api { what: format!("creating SyncJob {child_name}"), source: e }),
                }
            }
            BatchAction::Update { item, spec } => {
                let Some(existing) = owned.get(item) else { continue };
                let from = serde_json::to_value(&existing.spec).unwrap_or_default();
                let to = serde_json::to_value(spec).unwrap_or_default();
                // The resourceVersion makes the patch conditional: a concurrent edit is a 409
                // and the reconcile runs again on fresh data.
                let patch = json!({
                    "metadata": {"resourceVersion": existing.resource_version()},
                    "spec": merge_diff(&from, &to),
                });
                jobs.patch(&existing.name_any(), &PatchParams::default(), &Patch::Merge(&patch))
                    .await
                    .map_err(api_err(format!("updating SyncJob {}", existing.name_any())))?;
            }
            BatchAction::Delete { item } => {
                let Some(existing) = owned.get(item) else { continue };
                match jobs.delete(&existing.name_any(), &DeleteParams::background()).await {
                    Ok(_) => {}
                    Err(kube::Error::Api(s)) if s.code == 404 => {}
                    Err(e) => {
                        return Err(Error::Api {
                            what: format!("deleting SyncJob {}", existing.name_any()),
                            source: e,
                        });
                    }
                }
            }
            BatchAction::Event { warning, reason, message } => {
                super::publish_event(&ctx.recorder, &reference, *warning, reason, message).await;
            }
        }
    }
    for (item, child_name) in &taken {
        let said = |st: &crate::api::batch::BatchJobStatus| {
            st.jobs.iter().find(|r| &r.name == item).and_then(|r| r.message.clone())
        };
        let before = said(&old);
        plan::mark_name_taken(&mut decided.status, item, child_name, now);
        if said(&decided.status) != before {
            let message = format!(
                "item {item:?}: SyncJob {ns}/{child_name} exists and does not belong to BatchJob {name}; Ferry does \
                 not take over objects it did not create: delete or rename that SyncJob, or rename the item"
            );
            super::publish_event(&ctx.recorder, &reference, true, super::REASON_NAME_TAKEN, &message).await;
        }
    }
    for (item, reason) in &refused {
        let has_child = owned.contains_key(item);
        let said = |st: &crate::api::batch::BatchJobStatus| {
            st.jobs.iter().find(|r| &r.name == item).and_then(|r| r.message.clone())
        };
        let before = said(&old);
        plan::mark_refused(&mut decided.status, item, reason, has_child, now);
        if said(&decided.status) != before {
            let message = format!("item {item:?} is refused by the operator: {reason}");
            super::publish_event(&ctx.recorder, &reference, true, "ItemRefused", &message).await;
        }
    }

    let new = serde_json::to_value(&decided.status).unwrap_or_default();
    if new != serde_json::to_value(&old).unwrap_or_default() {
        let patch = json!({"apiVersion": BatchJob::api_version(&()), "kind": BatchJob::kind(&()), "status": new});
        batches
            .patch_status(&name, &PatchParams::apply(MANAGER).force(), &Patch::Apply(&patch))
            .await
            .map_err(api_err("applying the status"))?;
    }
    // Child changes wake the batch through `owns`; look again now and then regardless.
    Ok(Requeue::requeue(Duration::from_secs(300)))
}
