//! Leader election on a `coordination.k8s.io/v1` Lease, so two operator replicas can run and
//! only one reconciles.
//!
//! Expiry is judged the way client-go's leader election judges it: by how long *this replica*
//! has seen the lease record unchanged, on its own monotonic clock — never by comparing the
//! holder's `renewTime` with the local wall clock, which two machines with skewed clocks would
//! read differently (a replica whose clock runs ahead would take over a lease that is being
//! renewed). The holder renews every [`RETRY_PERIOD`]; a renewal that has not succeeded within
//! [`RENEW_DEADLINE`] — including one whose call hangs — makes the leader step down, before any
//! other replica may consider the lease expired ([`LEASE_DURATION`]).
//!
//! Written here rather than taken from a crate: `kube-lease-manager` (the one maintained crate
//! for kube 5) judges expiry from the holder's `renewTime` against the local clock, and
//! `kube-leader-election` targets an older kube.

use std::time::Duration;

use jiff::Timestamp;
use k8s_openapi::api::coordination::v1::{Lease, LeaseSpec};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{MicroTime, ObjectMeta};
use kube::api::{Api, PostParams};
use tokio::sync::Mutex;
use tokio::time::Instant;

/// How long a lease holds without an observed change.
pub const LEASE_DURATION: Duration = Duration::from_secs(15);
/// How long the leader keeps leading without a successful renewal.
pub const RENEW_DEADLINE: Duration = Duration::from_secs(10);
/// How often the holder renews, and others look again.
pub const RETRY_PERIOD: Duration = Duration::from_secs(2);

/// What a replica does with the lease it sees.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Step {
    /// No lease yet: create it, held by us.
    Create,
    /// We hold it: renew.
    Renew,
    /// Its holder let it expire: take it over.
    TakeOver,
    /// Someone else holds it.
    Wait,
}

/// Decides from the lease's spec (none when the lease does not exist) and how long this replica
/// has seen that spec unchanged.
pub fn decide(lease: Option<&LeaseSpec>, me: &str, unchanged_for: Duration) -> Step {
    let Some(spec) = lease else { return Step::Create };
    if spec.holder_identity.as_deref() == Some(me) {
        return Step::Renew;
    }
    let duration = spec.lease_duration_seconds.map_or(LEASE_DURATION, |s| Duration::from_secs(s.max(1) as u64));
    if spec.holder_identity.as_deref().is_none_or(str::is_empty) || unchanged_for >= duration {
        Step::TakeOver
    } else {
        Step::Wait
    }
}

/// Why a replica cannot compete for the lease at all.
#[derive(Debug, thiserror::Error)]
pub enum LeaseError {
    /// The lease's namespace does not exist.
    #[error(
        "the namespace {0} of the leader lease does not exist: create it, or run the operator with --namespace \
         (POD_NAMESPACE) naming its own namespace"
    )]
    NamespaceMissing(String),
    /// The operator may not read or write leases there.
    #[error(
        "the operator may not use leases in namespace {namespace}: grant it the ferry-operator-leader-election Role \
         (deploy/rbac.yaml) there ({message})"
    )]
    Forbidden {
        /// The lease's namespace.
        namespace: String,
        /// The API server's message.
        message: String,
    },
}

/// What one attempt came to.
#[derive(Debug)]
enum Attempt {
    Held,
    NotHeld,
    Fatal(LeaseError),
    Failed(String),
}

/// The lease record as last observed, and when (on this replica's clock) it last changed.
struct Observed {
    record: Option<LeaseSpec>,
    since: Instant,
}

/// One replica's view of a Lease.
pub struct Elector {
    api: Api<Lease>,
    namespace: String,
    name: String,
    me: String,
    observed: Mutex<Option<Observed>>,
}

impl Elector {
    /// Competes for `name` in `namespace` (the namespace of `api`) as `me` (the pod name).
    pub fn new(api: Api<Lease>, namespace: &str, name: &str, me: &str) -> Elector {
        Elector {
            api,
            namespace: namespace.to_owned(),
            name: name.to_owned(),
            me: me.to_owned(),
            observed: Mutex::new(None),
        }
    }

    /// How long the record has been seen unchanged, after noting `record` as seen now.
    async fn unchanged_for(&self, record: Option<&LeaseSpec>) -> Duration {
        let now = Instant::now();
        let mut observed = self.observed.lock().await;
        match observed.as_ref() {
            Some(o) if o.record.as_ref() == record => now.duration_since(o.since),
            _ => {
                *observed = Some(Observed { record: record.cloned(), since: now });
                Duration::ZERO
            }
        }
    }

    /// Tries once; true when we hold the lease afterwards. A conflict (someone else wrote first)
    /// is a plain false.
    pub async fn try_hold(&self) -> Result<bool, LeaseError> {
        match self.attempt().await {
            Attempt::Held => Ok(true),
            Attempt::NotHeld => Ok(false),
            Attempt::Fatal(e) => Err(e),
            Attempt::Failed(e) => {
                tracing::warn!(error = %e, "leader election: cannot reach the lease");
                Ok(false)
            }
        }
    }

    fn classify(&self, e: kube::Error) -> Attempt {
        match e {
            kube::Error::Api(s) if s.code == 409 => Attempt::NotHeld,
            kube::Error::Api(s) if s.code == 403 => {
                Attempt::Fatal(LeaseError::Forbidden { namespace: self.namespace.clone(), message: s.message })
            }
            kube::Error::Api(s) if s.code == 404 && s.message.contains("namespace") => {
                Attempt::Fatal(LeaseError::NamespaceMissing(self.namespace.clone()))
            }
            e => Attempt::Failed(e.to_string()),
        }
    }

    async fn attempt(&self) -> Attempt {
        let current = match self.api.get_opt(&self.name).await {
            Ok(c) => c,
            Err(e) => return self.classify(e),
        };
        let spec = current.as_ref().and_then(|l| l.spec.clone());
        let unchanged_for = self.unchanged_for(spec.as_ref()).await;
        let step = match (&current, decide(spec.as_ref(), &self.me, unchanged_for)) {
            // A lease with no spec at all is free.
            (Some(_), Step::Create) => Step::TakeOver,
            (_, step) => step,
        };
        if step == Step::Wait {
            return Attempt::NotHeld;
        }
        let now = Timestamp::now();
        let mut lease = current.unwrap_or_else(|| Lease {
            metadata: ObjectMeta { name: Some(self.name.clone()), ..Default::default() },
            spec: None,
        });
        let mut spec = lease.spec.take().unwrap_or_default();
        if step != Step::Renew {
            spec.holder_identity = Some(self.me.clone());
            spec.acquire_time = Some(MicroTime(now));
            spec.lease_transitions = Some(spec.lease_transitions.unwrap_or(0) + i32::from(step == Step::TakeOver));
        }
        spec.lease_duration_seconds = Some(LEASE_DURATION.as_secs() as i32);
        spec.renew_time = Some(MicroTime(now));
        lease.spec = Some(spec);
        let written = if step == Step::Create {
            self.api.create(&PostParams::default(), &lease).await
        } else {
            // The resourceVersion read above makes this a compare-and-swap.
            self.api.replace(&self.name, &PostParams::default(), &lease).await
        };
        match written {
            Ok(_) => Attempt::Held,
            Err(e) => self.classify(e),
        }
    }

    /// Waits until we hold the lease; an error when the lease cannot be used at all (its
    /// namespace is missing, or RBAC refuses it), since waiting would never end.
    pub async fn acquire(&self) -> Result<(), LeaseError> {
        loop {
            match tokio::time::timeout(RENEW_DEADLINE, self.attempt()).await {
                Ok(Attempt::Held) => return Ok(()),
                Ok(Attempt::Fatal(e)) => return Err(e),
                Ok(Attempt::NotHeld) => {}
                Ok(Attempt::Failed(e)) => tracing::warn!(error = %e, "leader election: cannot reach the lease"),
                Err(_) => tracing::warn!("leader election: the call to the lease hung"),
            }
            tokio::time::sleep(RETRY_PERIOD).await;
        }
    }

    /// Renews until a renewal has not succeeded for [`RENEW_DEADLINE`] (a call that hangs
    /// counts as not succeeding) or another replica holds the lease; then returns, and the
    /// caller must stop reconciling.
    pub async fn keep(&self) {
        let mut last_held = Instant::now();
        loop {
            tokio::time::sleep(RETRY_PERIOD).await;
            let left = RENEW_DEADLINE.saturating_sub(last_held.elapsed());
            match tokio::time::timeout(left, self.attempt()).await {
                Ok(Attempt::Held) => last_held = Instant::now(),
                Ok(Attempt::NotHeld) => {
                    tracing::error!("leader election: another replica holds the lease");
                    return;
                }
                Ok(Attempt::Fatal(e)) => tracing::warn!(error = %e, "leader election: renewal refused"),
                Ok(Attempt::Failed(e)) => tracing::warn!(error = %e, "leader election: renewal failed"),
                Err(_) => tracing::warn!("leader election: the renewal call hung"),
            }
            if last_held.elapsed() >= RENEW_DEADLINE {
                tracing::error!("leader election: could not renew the lease in time; stepping down");
                return;
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn held(by: &str, renewed_secs_ago: i64) -> LeaseSpec {
        LeaseSpec {
            holder_identity: Some(by.into()),
            lease_duration_seconds: Some(15),
            renew_time: Some(MicroTime(Timestamp::now() - jiff::SignedDuration::from_secs(renewed_secs_ago))),
            ..Default::default()
        }
    }

    #[test]
    fn a_replica_creates_renews_waits_or_takes_over_by_its_own_observation() {
        let s = Duration::from_secs;
        assert_eq!(decide(None, "a", s(0)), Step::Create);
        assert_eq!(decide(Some(&held("a", 3)), "a", s(0)), Step::Renew);
        assert_eq!(decide(Some(&held("b", 3)), "a", s(3)), Step::Wait);
        assert_eq!(decide(Some(&held("b", 3)), "a", s(15)), Step::TakeOver);
        assert_eq!(decide(Some(&LeaseSpec::default()), "a", s(0)), Step::TakeOver);
        // The holder's renewTime says an hour ago (its clock is behind ours): still held, since
        // we only just saw the record.
        assert_eq!(decide(Some(&held("b", 3600)), "a", s(0)), Step::Wait);
        // … and a renewTime in our future does not keep a dead holder's lease alive.
        assert_eq!(decide(Some(&held("b", -3600)), "a", s(16)), Step::TakeOver);
    }
}
