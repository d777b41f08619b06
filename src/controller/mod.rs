//! The Kubernetes controllers. Each reconcile observes (the resource, its pods), decides through
//! the pure lifecycle, acts through the API, and reports in status; nothing else decides.

pub mod batch;
pub mod compare;
pub mod identity;
pub mod observe;
pub mod pods;
pub mod policy;
pub mod syncjob;

use k8s_openapi::api::core::v1::Pod;
use kube::api::{Api, Patch, PatchParams, PostParams};
use kube::runtime::events::Recorder;
use kube::{Client, Resource, ResourceExt};
use serde_json::json;

/// What the controllers share between reconciles.
pub struct Context {
    /// API client.
    pub client: Client,
    /// What jobs may ask of their worker pods (image, tolerations, node selector), and the
    /// operator's own image that they run by default.
    pub policy: policy::WorkerPolicy,
    /// Publishes Events.
    pub recorder: Recorder,
}

/// Why a reconcile failed.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// An API call failed.
    #[error("{what}: {source}")]
    Api {
        /// What was being done.
        what: String,
        /// The error.
        source: kube::Error,
    },
    /// The object changed between our read and our write (a failed precondition).
    #[error("{0}: the object changed meanwhile")]
    Conflict(String),
    /// An object the call refers to was deleted meanwhile (a RoleBinding's Role, taken by the
    /// garbage collector): like a conflict, tried again soon on fresh data.
    #[error("{0}: an object it refers to was deleted meanwhile")]
    Vanished(String),
    /// The object lacks a field every stored object has.
    #[error("the resource has no {0}")]
    Malformed(&'static str),
}

impl Error {
    /// A stable label for metrics and logs.
    pub fn category(&self) -> &'static str {
        match self {
            Error::Api { source: kube::Error::Api(s), .. } if s.code == 409 => "conflict",
            Error::Conflict(_) | Error::Vanished(_) => "conflict",
            Error::Api { .. } => "api",
            Error::Malformed(_) => "malformed",
        }
    }
}

/// An API error with what was being done.
pub(crate) fn api_err(what: impl Into<String>) -> impl FnOnce(kube::Error) -> Error {
    let what = what.into();
    move |source| Error::Api { what, source }
}

/// Adds `finalizer` to `object` with a JSON patch that first tests the list it read, so a
/// finalizer another controller added meanwhile is never dropped (a merge patch of the whole
/// list would drop it). A changed list fails the test: [`Error::Conflict`], and the reconcile
/// runs again on fresh data.
pub async fn add_finalizer<K>(api: &Api<K>, object: &K, finalizer: &str) -> Result<(), Error>
where
    K: Resource + Clone + serde::de::DeserializeOwned + std::fmt::Debug,
{
    let patch = match object.meta().finalizers.as_ref() {
        None => json!([
            {"op": "test", "path": "/metadata/finalizers", "value": null},
            {"op": "add", "path": "/metadata/finalizers", "value": [finalizer]},
        ]),
        Some(current) => json!([
            {"op": "test", "path": "/metadata/finalizers", "value": current},
            {"op": "add", "path": "/metadata/finalizers/-", "value": finalizer},
        ]),
    };
    json_patch(api, object, patch, "adding the finalizer").await
}

/// Removes `finalizer` from `object` by its index, testing first that the index still holds it;
/// the other finalizers stay as they are. Nothing to do when it is not there.
pub async fn remove_finalizer<K>(api: &Api<K>, object: &K, finalizer: &str) -> Result<(), Error>
where
    K: Resource + Clone + serde::de::DeserializeOwned + std::fmt::Debug,
{
    let Some(index) = object.finalizers().iter().position(|f| f == finalizer) else { return Ok(()) };
    let path = format!("/metadata/finalizers/{index}");
    let patch = json!([
        {"op": "test", "path": path, "value": finalizer},
        {"op": "remove", "path": path},
    ]);
    json_patch(api, object, patch, "removing the finalizer").await
}

async fn json_patch<K>(api: &Api<K>, object: &K, patch: serde_json::Value, what: &str) -> Result<(), Error>
where
    K: Resource + Clone + serde::de::DeserializeOwned + std::fmt::Debug,
{
    let patch: json_patch::Patch = serde_json::from_value(patch).map_err(|_| Error::Malformed("finalizers"))?;
    match api.patch(&object.name_any(), &PatchParams::default(), &Patch::<()>::Json(patch)).await {
        Ok(_) => Ok(()),
        // A failed `test` operation is refused as invalid (422); a 409 is a conflict too.
        Err(kube::Error::Api(s)) if s.code == 422 || s.code == 409 => Err(Error::Conflict(what.to_owned())),
        Err(source) => Err(Error::Api { what: what.to_owned(), source }),
    }
}

/// What became of a pod the operator asked for.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum PodCreation {
    /// Created, or it existed already as the owner's (names are per job and attempt, so
    /// creating is idempotent).
    Created,
    /// The API server refused it for a reason the user must fix (a ResourceQuota, Pod Security
    /// admission, an admission webhook): what and how to fix it.
    Rejected(String),
    /// An object of the pod's name, or of its worker identity's, exists and does not belong to
    /// the owner: it is left alone and no pod starts.
    Taken(String),
}

impl PodCreation {
    /// The condition reason and message of a pod that could not be created.
    pub fn refusal(self) -> Option<(&'static str, String)> {
        match self {
            PodCreation::Created => None,
            PodCreation::Rejected(message) => Some((REASON_POD_REJECTED, message)),
            PodCreation::Taken(message) => Some((REASON_NAME_TAKEN, message)),
        }
    }
}

/// Creates `pod` unless it exists; a refusal the user must act on is [`PodCreation::Rejected`],
/// not an error to retry blindly. A pod of that name that the owner does not own is
/// [`PodCreation::Taken`]: never counted as the owner's.
pub async fn create_pod(pods: &Api<Pod>, pod: Pod) -> Result<PodCreation, Error> {
    let name = pod.name_any();
    let namespace = pod.namespace().unwrap_or_default();
    let owner = pod.owner_references().first().cloned();
    match pods.create(&PostParams { field_manager: Some(pods::MANAGER.into()), ..Default::default() }, &pod).await {
        Ok(_) => Ok(PodCreation::Created),
        Err(kube::Error::Api(s)) if s.code == 409 => {
            let existing = pods.get_opt(&name).await.map_err(api_err(format!("reading pod {name}")))?;
            let uid = owner.as_ref().map_or("", |o| o.uid.as_str());
            Ok(match existing {
                // Gone meanwhile: the next reconcile creates it.
                None => PodCreation::Created,
                Some(p) if identity::owned_by(&p, uid) => PodCreation::Created,
                Some(_) => {
                    let (kind, owner) = owner.map(|o| (o.kind, o.name)).unwrap_or_default();
                    PodCreation::Taken(identity::taken_message("Pod", &name, &namespace, &kind, &owner))
                }
            })
        }
        Err(kube::Error::Api(s)) if matches!(s.code, 400 | 403 | 422) => {
            Ok(PodCreation::Rejected(pod_rejection(&name, &namespace, &s.message)))
        }
        Err(e) => Err(Error::Api { what: format!("creating pod {name}"), source: e }),
    }
}

/// Makes sure the worker identity of `grant` exists (owned by the pod's owner), then creates
/// the pod as the operator's policy allows it ([`policy::WorkerPolicy::enforce`]).
pub async fn start_pod(ctx: &Context, grant: &identity::Grant, mut pod: Pod) -> Result<PodCreation, Error> {
    let namespace = pod.namespace().ok_or(Error::Malformed("metadata.namespace"))?;
    let owner = pod.owner_references().first().cloned().ok_or(Error::Malformed("metadata.uid"))?;
    if let Some(taken) = identity::ensure(&ctx.client, &namespace, grant, &owner).await? {
        return Ok(PodCreation::Taken(taken));
    }
    ctx.policy.enforce(&mut pod);
    create_pod(&Api::namespaced(ctx.client.clone(), &namespace), pod).await
}

/// Whether `pod` waits to start: not yet running (its containers need the worker identity's
/// token first) and not being deleted.
pub fn waits_to_start(pod: &Pod) -> bool {
    pod.metadata.deletion_timestamp.is_none()
        && matches!(pod.status.as_ref().and_then(|s| s.phase.as_deref()), None | Some("Pending"))
}

/// Makes sure the worker identity of `grant` exists again while one of the owner's pods waits to
/// start. A pod created around the moment its identity was deleted — by the garbage collector
/// working through the owner's dependents, or by hand — would otherwise wait for its token
/// forever, and nothing else creates the identity while the pod exists. The caller skips this
/// while the collector still deletes the owner's dependents (it would delete them again).
/// Three reads when all is there; a name someone else holds is the refusal [`start_pod`] gives.
pub async fn restore_identity(
    ctx: &Context,
    grant: &identity::Grant,
    owner: &k8s_openapi::apimachinery::pkg::apis::meta::v1::OwnerReference,
    namespace: &str,
) -> Result<Option<(&'static str, String)>, Error> {
    Ok(identity::ensure(&ctx.client, namespace, grant, owner).await?.map(|taken| (REASON_NAME_TAKEN, taken)))
}

/// Condition reason (and Event reason) of a refused pod.
pub const REASON_POD_REJECTED: &str = "PodRejected";
/// Condition reason (and Event reason) of a derived name held by an object the owner does not
/// own.
pub const REASON_NAME_TAKEN: &str = "NameTaken";

/// Reports a pod that could not be created on its owner: `Stalled` (and not `Ready`) with the
/// reason and the fix, and a Warning Event. The pod cannot exist until the user fixes
/// something, and the fix (a quota, a deleted object) wakes nothing here: the caller looks
/// again after [`POD_REJECTED_RETRY`].
pub(crate) async fn report_rejection(
    ctx: &Context,
    reference: &k8s_openapi::api::core::v1::ObjectReference,
    conditions: &mut Vec<k8s_openapi::apimachinery::pkg::apis::meta::v1::Condition>,
    generation: i64,
    (reason, message): (&'static str, &str),
) {
    use crate::lifecycle::conditions::{Status, set, types};
    let now = jiff::Timestamp::now();
    set(conditions, types::STALLED, Status::True, reason, message, generation, now);
    set(conditions, types::READY, Status::False, reason, message, generation, now);
    publish_event(&ctx.recorder, reference, true, reason, message).await;
}

/// How soon an owner whose pod was refused tries again.
pub const POD_REJECTED_RETRY: std::time::Duration = std::time::Duration::from_secs(30);

/// What a refusal of pod `name` means and how to fix it, from the API server's message.
pub fn pod_rejection(name: &str, namespace: &str, message: &str) -> String {
    let lower = message.to_ascii_lowercase();
    let fix = if lower.contains("serviceaccount") || lower.contains("service account") {
        format!(
            "the job's ServiceAccount is missing in namespace {namespace} (the operator creates it with the pod; \
             it was deleted meanwhile and is created again on the next try)"
        )
    } else if lower.contains("exceeded quota") || lower.contains("resourcequota") || lower.contains("must specify") {
        format!(
            "a ResourceQuota in namespace {namespace} refuses it: raise the quota, or lower spec.nodeType or \
             spec.worker.resources"
        )
    } else if lower.contains("podsecurity") || lower.contains("pod security") {
        format!(
            "Pod Security admission in namespace {namespace} refuses it (worker pods meet the restricted profile \
             unless spec.worker changes them): check the namespace's pod-security.kubernetes.io labels"
        )
    } else {
        "an admission check refuses it: see the message".to_owned()
    };
    format!("the API server refused pod {name}: {fix} ({})", message.chars().take(300).collect::<String>())
}

/// A status as JSON for server-side apply, without the fields another manager owns.
pub(crate) fn without_fields<S: serde::Serialize>(status: &S, owned_elsewhere: &[&str]) -> serde_json::Value {
    let mut v = serde_json::to_value(status).unwrap_or_else(|_| serde_json::json!({}));
    if let Some(map) = v.as_object_mut() {
        for f in owned_elsewhere {
            map.remove(*f);
        }
    }
    v
}

/// Records an Event on `reference`; a lost Event is logged, not worth failing a reconcile for.
pub(crate) async fn publish_event(
    recorder: &kube::runtime::events::Recorder,
    reference: &k8s_openapi::api::core::v1::ObjectReference,
    warning: bool,
    reason: &str,
    message: &str,
) {
    use kube::runtime::events::{Event, EventType};
    let event = Event {
        type_: if warning { EventType::Warning } else { EventType::Normal },
        reason: reason.to_owned(),
        note: Some(message.chars().take(1000).collect()),
        action: "Reconcile".into(),
        secondary: None,
    };
    if let Err(e) = recorder.publish(&event, reference).await {
        tracing::warn!(object = ?reference.name, error = %e, "could not publish an event");
    }
}
