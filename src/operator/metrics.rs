//! The operator's Prometheus metrics (prefix `ferry_`): reconcile runs, failures by category and
//! duration per controller, and the per-resource series of [`super::resources`]. One registry,
//! encoded on `/metrics` in the Prometheus text format.

use std::sync::Arc;
use std::time::Instant;

use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::histogram::{Histogram, exponential_buckets};
use prometheus_client::registry::Registry;

use super::resources::ResourceMetrics;

/// Labels of per-controller series.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct ControllerLabels {
    /// `syncjob`, `comparetask`, `batchjob`.
    pub controller: String,
}

/// Labels of failure series.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct FailureLabels {
    /// The controller.
    pub controller: String,
    /// The error's category (`api`, `conflict`, `malformed`).
    pub category: String,
}

/// The operator's metrics.
pub struct Metrics {
    /// The registry `/metrics` encodes.
    pub registry: Registry,
    runs: Family<ControllerLabels, Counter>,
    failures: Family<FailureLabels, Counter>,
    duration: Family<ControllerLabels, Histogram>,
    /// Per-resource series, described once the caches are there.
    pub resources: Arc<ResourceMetrics>,
}

impl Default for Metrics {
    fn default() -> Self {
        let mut registry = Registry::with_prefix("ferry");
        let runs = Family::<ControllerLabels, Counter>::default();
        let failures = Family::<FailureLabels, Counter>::default();
        let duration = Family::<ControllerLabels, Histogram>::new_with_constructor(|| {
            Histogram::new(exponential_buckets(0.005, 2.0, 12))
        });
        registry.register("reconcile_runs", "Reconciles run, per controller", runs.clone());
        registry.register(
            "reconcile_failures",
            "Reconciles that failed, per controller and error category",
            failures.clone(),
        );
        registry.register("reconcile_duration_seconds", "Time a reconcile took, per controller", duration.clone());
        let resources = Arc::new(ResourceMetrics::default());
        registry.register_collector(Box::new(Arc::clone(&resources)));
        Metrics { registry, runs, failures, duration, resources }
    }
}

impl Metrics {
    /// Starts timing a reconcile of `controller`; the guard records it when dropped.
    pub fn reconcile(self: &Arc<Self>, controller: &str) -> ReconcileGuard {
        let labels = ControllerLabels { controller: controller.to_owned() };
        self.runs.get_or_create(&labels).inc();
        ReconcileGuard { metrics: Arc::clone(self), labels, started: Instant::now() }
    }

    /// Counts a failed reconcile.
    pub fn failed(&self, controller: &str, category: &str) {
        self.failures
            .get_or_create(&FailureLabels { controller: controller.to_owned(), category: category.to_owned() })
            .inc();
    }

    /// The metrics in the Prometheus text format.
    pub fn encode(&self) -> String {
        crate::engine::metrics::encode(&self.registry)
    }
}

/// Records a reconcile's duration when dropped, however the reconcile ended.
pub struct ReconcileGuard {
    metrics: Arc<Metrics>,
    labels: ControllerLabels,
    started: Instant,
}

impl Drop for ReconcileGuard {
    fn drop(&mut self) {
        self.metrics.duration.get_or_create(&self.labels).observe(self.started.elapsed().as_secs_f64());
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reconciles_are_counted_timed_and_encoded_with_the_prefix() {
        let m = Arc::new(Metrics::default());
        drop(m.reconcile("syncjob"));
        m.failed("syncjob", "api");
        let text = m.encode();
        assert!(text.contains("ferry_reconcile_runs_total{controller=\"syncjob\"} 1"), "{text}");
        assert!(text.contains("ferry_reconcile_failures_total{controller=\"syncjob\",category=\"api\"} 1"), "{text}");
        assert!(text.contains("ferry_reconcile_duration_seconds_count{controller=\"syncjob\"} 1"), "{text}");
    }
}
