//! The Kubernetes controllers. Each reconcile observes (the resource, its pods), decides through
//! the pure lifecycle, acts through the API, and reports in status; nothing else decides.

pub mod compare;
pub mod observe;
pub mod pods;
pub mod syncjob;
