//! Leader election on a `coordination.k8s.io/v1` Lease, so two operator replicas can run and
//! only one reconciles. The holder renews the lease every [`RENEW_EVERY`]; another replica takes
//! it over once it has not been renewed for [`LEASE_DURATION`]. A leader that fails to renew in
//! time stops (and is restarted), rather than risk two controllers acting at once.

use std::time::Duration;

use jiff::Timestamp;
use k8s_openapi::api::coordination::v1::{Lease, LeaseSpec};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{MicroTime, ObjectMeta};
use kube::api::{Api, PostParams};

/// How long a lease holds without renewal.
pub const LEASE_DURATION: Duration = Duration::from_secs(15);
/// How often the holder renews it, and others retry.
pub const RENEW_EVERY: Duration = Duration::from_secs(5);

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

/// Decides from the lease's spec (none when the lease does not exist).
pub fn decide(lease: Option<&LeaseSpec>, me: &str, now: Timestamp) -> Step {
    let Some(spec) = lease else { return Step::Create };
    if spec.holder_identity.as_deref() == Some(me) {
        return Step::Renew;
    }
    let duration = spec.lease_duration_seconds.map_or(LEASE_DURATION, |s| Duration::from_secs(s.max(1) as u64));
    let expired = match spec.renew_time.as_ref().or(spec.acquire_time.as_ref()) {
        None => true,
        Some(MicroTime(t)) => t.checked_add(duration).is_ok_and(|end| end <= now),
    };
    if spec.holder_identity.is_none() || expired { Step::TakeOver } else { Step::Wait }
}

/// One replica's view of a Lease.
pub struct Elector {
    api: Api<Lease>,
    name: String,
    me: String,
}

impl Elector {
    /// Competes for `name` in the namespace of `api` as `me` (the pod name).
    pub fn new(api: Api<Lease>, name: &str, me: &str) -> Elector {
        Elector { api, name: name.to_owned(), me: me.to_owned() }
    }

    /// Tries once; true when we hold the lease afterwards. A conflict (someone else wrote first)
    /// is a plain false.
    pub async fn try_hold(&self) -> Result<bool, kube::Error> {
        let now = Timestamp::now();
        let current = self.api.get_opt(&self.name).await?;
        let step = decide(current.as_ref().and_then(|l| l.spec.as_ref()), &self.me, now);
        let mut lease = current.unwrap_or_else(|| Lease {
            metadata: ObjectMeta { name: Some(self.name.clone()), ..Default::default() },
            spec: None,
        });
        let mut spec = lease.spec.take().unwrap_or_default();
        match step {
            Step::Wait => return Ok(false),
            Step::Renew => {}
            Step::Create | Step::TakeOver => {
                spec.holder_identity = Some(self.me.clone());
                spec.acquire_time = Some(MicroTime(now));
                spec.lease_transitions = Some(spec.lease_transitions.unwrap_or(0) + i32::from(step == Step::TakeOver));
            }
        }
        spec.lease_duration_seconds = Some(LEASE_DURATION.as_secs() as i32);
        spec.renew_time = Some(MicroTime(now));
        lease.spec = Some(spec);
        let written = if step == Step::Create {
            self.api.create(&PostParams::default(), &lease).await
        } else {
            // resourceVersion makes this a compare-and-swap.
            self.api.replace(&self.name, &PostParams::default(), &lease).await
        };
        match written {
            Ok(_) => Ok(true),
            Err(kube::Error::Api(s)) if s.code == 409 => Ok(false),
            Err(e) => Err(e),
        }
    }

    /// Waits until we hold the lease.
    pub async fn acquire(&self) {
        loop {
            match self.try_hold().await {
                Ok(true) => return,
                Ok(false) => {}
                Err(e) => tracing::warn!(error = %e, "leader election: cannot reach the lease"),
            }
            tokio::time::sleep(RENEW_EVERY).await;
        }
    }

    /// Renews until a renewal fails for longer than the lease lasts; then returns (the caller
    /// must stop reconciling).
    pub async fn keep(&self) {
        let mut last_held = std::time::Instant::now();
        loop {
            tokio::time::sleep(RENEW_EVERY).await;
            match self.try_hold().await {
                Ok(true) => last_held = std::time::Instant::now(),
                Ok(false) => {
                    tracing::error!("leader election: another replica holds the lease");
                    return;
                }
                Err(e) => tracing::warn!(error = %e, "leader election: renewal failed"),
            }
            if last_held.elapsed() >= LEASE_DURATION - RENEW_EVERY {
                tracing::error!("leader election: could not renew the lease in time");
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
    fn a_replica_creates_renews_waits_or_takes_over() {
        let now = Timestamp::now();
        assert_eq!(decide(None, "a", now), Step::Create);
        assert_eq!(decide(Some(&held("a", 3)), "a", now), Step::Renew);
        assert_eq!(decide(Some(&held("b", 3)), "a", now), Step::Wait);
        assert_eq!(decide(Some(&held("b", 20)), "a", now), Step::TakeOver);
        assert_eq!(decide(Some(&LeaseSpec::default()), "a", now), Step::TakeOver);
    }
}
