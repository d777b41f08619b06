//! The Kubernetes controllers. Each reconcile observes (the resource, its pods), decides through
//! the pure lifecycle, acts through the API, and reports in status; nothing else decides.

pub mod batch;
pub mod compare;
pub mod observe;
pub mod pods;
pub mod syncjob;

/// An API error with what was being done.
pub(crate) fn api_err(what: impl Into<String>) -> impl FnOnce(kube::Error) -> syncjob::Error {
    let what = what.into();
    move |source| syncjob::Error::Api { what, source }
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
