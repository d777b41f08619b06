//! Each job's own worker identity: a ServiceAccount, a Role and a RoleBinding named after the
//! job, owned by it (the garbage collector deletes them with it), that let the job's worker pods
//! read their own resource and write its status, and a compare worker update its own report
//! ConfigMap — `resourceNames` limit every rule to those objects, so a worker cannot touch
//! another job of its namespace. The operator grants only what its own ClusterRole holds (the
//! API server's escalation check).
//!
//! An object of a derived name that exists and is not owned by the job is never adopted: the
//! job reports the name as taken and starts no pod.

use k8s_openapi::api::core::v1::ServiceAccount;
use k8s_openapi::api::rbac::v1::{PolicyRule, Role, RoleBinding, RoleRef, Subject};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{ObjectMeta, OwnerReference};
use kube::api::{Api, PostParams};
use kube::{Client, Resource, ResourceExt};

use super::pods::{LABEL_COMPONENT, LABEL_JOB, LABEL_MANAGED_BY, LABEL_NAME, MANAGER, label_value};
use super::{Error, api_err};

/// What a worker identity is for.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Grant {
    /// The pods of SyncJob `job`: read it, write its status, record Events.
    SyncJob {
        /// The job's name.
        job: String,
    },
    /// The pod of CompareTask `task`: read it and the SyncJob it names, write its status and
    /// update its report ConfigMap.
    Compare {
        /// The task's name.
        task: String,
        /// The SyncJob the task compares, if any.
        job: Option<String>,
        /// The report ConfigMap.
        report: String,
    },
}

impl Grant {
    /// The name shared by the ServiceAccount, the Role and the RoleBinding: `<job>-ferry-worker`
    /// or `<task>-ferry-compare`, at most 253 characters.
    pub fn account(&self) -> String {
        match self {
            Grant::SyncJob { job } => super::pods::fit_to(job, "-ferry-worker", 253),
            Grant::Compare { task, .. } => super::pods::fit_to(task, "-ferry-compare", 253),
        }
    }

    /// The rules of the Role: every one limited to the owner's own objects, except Events
    /// (created under generated names).
    pub fn rules(&self) -> Vec<PolicyRule> {
        let rule = |group: &str, resource: &str, name: &str, verbs: &[&str]| PolicyRule {
            api_groups: Some(vec![group.to_owned()]),
            resources: Some(vec![resource.to_owned()]),
            resource_names: Some(vec![name.to_owned()]),
            verbs: verbs.iter().map(|v| (*v).to_owned()).collect(),
            ..Default::default()
        };
        match self {
            Grant::SyncJob { job } => vec![
                rule("ferry.dev", "syncjobs", job, &["get"]),
                rule("ferry.dev", "syncjobs/status", job, &["get", "patch"]),
                // A worker that reconnects says so in an Event on its job.
                PolicyRule {
                    api_groups: Some(vec!["events.k8s.io".into()]),
                    resources: Some(vec!["events".into()]),
                    verbs: vec!["create".into(), "patch".into()],
                    ..Default::default()
                },
            ],
            Grant::Compare { task, job, report } => {
                let mut rules = vec![
                    rule("ferry.dev", "comparetasks", task, &["get"]),
                    rule("ferry.dev", "comparetasks/status", task, &["get", "patch"]),
                    // The operator creates the report; the worker only fills it in.
                    rule("", "configmaps", report, &["get", "update"]),
                ];
                if let Some(job) = job {
                    rules.push(rule("ferry.dev", "syncjobs", job, &["get"]));
                }
                rules
            }
        }
    }

    fn component(&self) -> &'static str {
        match self {
            Grant::SyncJob { .. } => "worker",
            Grant::Compare { .. } => "compare",
        }
    }

    fn owner_name(&self) -> &str {
        match self {
            Grant::SyncJob { job } => job,
            Grant::Compare { task, .. } => task,
        }
    }
}

/// The ServiceAccount, Role and RoleBinding of `grant` in `namespace`, owned by `owner`.
pub fn objects(grant: &Grant, namespace: &str, owner: &OwnerReference) -> (ServiceAccount, Role, RoleBinding) {
    let name = grant.account();
    let meta = ObjectMeta {
        name: Some(name.clone()),
        namespace: Some(namespace.to_owned()),
        labels: Some(
            [
                (LABEL_NAME.to_owned(), "ferry".to_owned()),
                (LABEL_COMPONENT.to_owned(), grant.component().to_owned()),
                (LABEL_JOB.to_owned(), label_value(grant.owner_name())),
                (LABEL_MANAGED_BY.to_owned(), MANAGER.to_owned()),
            ]
            .into(),
        ),
        owner_references: Some(vec![owner.clone()]),
        ..Default::default()
    };
    let account = ServiceAccount { metadata: meta.clone(), ..Default::default() };
    let role = Role { metadata: meta.clone(), rules: Some(grant.rules()) };
    let binding = RoleBinding {
        metadata: meta,
        role_ref: RoleRef { api_group: "rbac.authorization.k8s.io".into(), kind: "Role".into(), name: name.clone() },
        subjects: Some(vec![Subject {
            kind: "ServiceAccount".into(),
            name,
            namespace: Some(namespace.to_owned()),
            ..Default::default()
        }]),
    };
    (account, role, binding)
}

/// Whether `object` carries an ownerReference to the object of `uid`.
pub fn owned_by<K: Resource>(object: &K, uid: &str) -> bool {
    !uid.is_empty() && object.meta().owner_references.iter().flatten().any(|o| o.uid == uid)
}

/// What a derived name's object that someone else holds means: refused, never adopted.
pub fn taken_message(kind: &str, name: &str, namespace: &str, owner_kind: &str, owner: &str) -> String {
    format!(
        "{kind} {namespace}/{name} exists and does not belong to {owner_kind} {owner}; Ferry does not take over \
         objects it did not create: delete or rename that {kind}, or rename the {owner_kind}"
    )
}

/// Makes sure `object` exists as the owner's: created when absent; when present and owned,
/// brought in line with `desired` if `differs` says so; when present and not owned, left alone
/// and `Some(message)` returned.
pub async fn ensure_owned<K>(
    api: &Api<K>,
    desired: &K,
    owner: &OwnerReference,
    differs: impl Fn(&K, &K) -> bool,
) -> Result<Option<String>, Error>
where
    K: Resource<DynamicType = ()> + Clone + serde::Serialize + serde::de::DeserializeOwned + std::fmt::Debug,
{
    let name = desired.name_any();
    let kind = K::kind(&()).to_string();
    let namespace = desired.namespace().unwrap_or_default();
    let taken = || Some(taken_message(&kind, &name, &namespace, &owner.kind, &owner.name));
    let params = PostParams { field_manager: Some(MANAGER.into()), ..Default::default() };
    let existing = api.get_opt(&name).await.map_err(api_err(format!("reading {kind} {name}")))?;
    match existing {
        None => create_owned(api, desired, owner).await,
        Some(current) if !owned_by(&current, &owner.uid) => Ok(taken()),
        Some(current) if differs(&current, desired) => {
            let mut update = desired.clone();
            update.meta_mut().resource_version = current.resource_version();
            match api.replace(&name, &params, &update).await {
                Ok(_) => Ok(None),
                Err(kube::Error::Api(s)) if s.code == 409 => Err(Error::Conflict(format!("updating {kind} {name}"))),
                Err(e) => Err(Error::Api { what: format!("updating {kind} {name}"), source: e }),
            }
        }
        Some(_) => Ok(None),
    }
}

/// Creates `desired` for `owner`; when the name exists already, `Some(message)` unless the
/// object there is the owner's.
pub async fn create_owned<K>(api: &Api<K>, desired: &K, owner: &OwnerReference) -> Result<Option<String>, Error>
where
    K: Resource<DynamicType = ()> + Clone + serde::Serialize + serde::de::DeserializeOwned + std::fmt::Debug,
{
    let name = desired.name_any();
    let kind = K::kind(&()).to_string();
    let namespace = desired.namespace().unwrap_or_default();
    let params = PostParams { field_manager: Some(MANAGER.into()), ..Default::default() };
    match api.create(&params, desired).await {
        Ok(_) => Ok(None),
        // Someone else's, unless it names the owner.
        Err(kube::Error::Api(s)) if s.code == 409 => {
            let now = api.get_opt(&name).await.map_err(api_err(format!("reading {kind} {name}")))?;
            Ok(if now.is_some_and(|o| owned_by(&o, &owner.uid)) {
                None
            } else {
                Some(taken_message(&kind, &name, &namespace, &owner.kind, &owner.name))
            })
        }
        // What it refers to is gone: a RoleBinding's Role (the escalation check reads it), or the
        // namespace.
        Err(kube::Error::Api(s)) if s.code == 404 => Err(Error::Vanished(format!("creating {kind} {name}"))),
        Err(e) => Err(Error::Api { what: format!("creating {kind} {name}"), source: e }),
    }
}

/// Makes sure the worker identity of `grant` exists, owned by `owner`: `Some(message)` when one
/// of its names is taken.
pub async fn ensure(
    client: &Client,
    namespace: &str,
    grant: &Grant,
    owner: &OwnerReference,
) -> Result<Option<String>, Error> {
    let (account, role, binding) = objects(grant, namespace, owner);
    let accounts: Api<ServiceAccount> = Api::namespaced(client.clone(), namespace);
    let roles: Api<Role> = Api::namespaced(client.clone(), namespace);
    let bindings: Api<RoleBinding> = Api::namespaced(client.clone(), namespace);
    // The Role can be deleted between its check and the binding's creation (the garbage
    // collector deleting the owner's dependents): the binding is refused as NotFound, and one
    // more round creates the Role again. A second refusal is left to the reconcile's retry.
    let mut rounds = 0;
    loop {
        rounds += 1;
        if let Some(taken) = ensure_owned(&accounts, &account, owner, |_, _| false).await? {
            return Ok(Some(taken));
        }
        if let Some(taken) = ensure_owned(&roles, &role, owner, |a, b| a.rules != b.rules).await? {
            return Ok(Some(taken));
        }
        match ensure_owned(&bindings, &binding, owner, |_, _| false).await {
            Err(Error::Vanished(_)) if rounds < 2 => continue,
            other => return other,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_rule_but_events_names_the_owners_own_objects() {
        let grant = Grant::Compare { task: "check".into(), job: Some("orders".into()), report: "check-report".into() };
        assert_eq!(grant.account(), "check-ferry-compare");
        for rule in grant.rules() {
            assert!(rule.resource_names.is_some(), "{rule:?}");
            assert!(!rule.verbs.iter().any(|v| v == "create" || v == "list" || v == "watch" || v == "delete"));
        }
        let job = Grant::SyncJob { job: "orders".into() };
        assert_eq!(job.account(), "orders-ferry-worker");
        let names: Vec<_> = job.rules().iter().filter_map(|r| r.resource_names.clone()).flatten().collect();
        assert_eq!(names, ["orders", "orders"]);
        assert!(Grant::SyncJob { job: "x".repeat(253) }.account().len() <= 253);
    }
}
