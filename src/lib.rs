//! Ferry: a Kubernetes operator for database migration, continuous sync and data verification.
//!
//! `api` holds the resources, `lifecycle` decides phases, `testkit` starts throwaway database
//! servers for tests and demos.

pub mod api;
pub mod compare;
pub mod controller;
pub mod convert;
pub mod engine;
#[cfg(any(test, feature = "fuzzing"))]
pub mod fuzzing;
pub mod lifecycle;
pub mod operator;
pub mod run;
pub mod signals;
#[cfg(feature = "testkit")]
pub mod testkit;
pub mod tls;
pub mod worker;
