//! deploy/rbac.yaml: every object is a valid Kubernetes object (nothing unknown, nothing
//! dropped), the operator's roles grant what it calls, and everything the per-job worker Roles
//! grant, which the API server requires of whoever creates a Role.

use k8s_openapi::api::core::v1::ServiceAccount;
use k8s_openapi::api::rbac::v1::{ClusterRole, ClusterRoleBinding, PolicyRule, Role, RoleBinding};
use serde::Deserialize;
use serde::de::DeserializeOwned;
use serde_json::Value;

use ferry::controller::identity::Grant;

fn documents() -> Vec<Value> {
    let text = std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/deploy/rbac.yaml")).unwrap();
    serde_yaml::Deserializer::from_str(&text).map(|d| Value::deserialize(d).unwrap()).collect()
}

/// Deserializes into the typed object and back: any field the type does not know would be lost.
fn typed<T: DeserializeOwned + serde::Serialize>(doc: &Value) -> T {
    let t: T = serde_json::from_value(doc.clone()).unwrap();
    assert_eq!(&serde_json::to_value(&t).unwrap(), doc, "unknown or misspelt fields in {doc}");
    t
}

fn grants(rules: &[PolicyRule], group: &str, resource: &str, verb: &str) -> bool {
    rules.iter().any(|r| {
        r.api_groups.as_ref().is_some_and(|g| g.iter().any(|g| g == group))
            && r.resources.as_ref().is_some_and(|x| x.iter().any(|x| x == resource))
            && r.verbs.iter().any(|v| v == verb)
    })
}

#[test]
fn every_object_is_a_valid_kubernetes_object() {
    let docs = documents();
    assert_eq!(docs.len(), 5, "the operator's objects only: workers get a Role per job");
    for doc in &docs {
        match doc["kind"].as_str().unwrap() {
            "ServiceAccount" => drop(typed::<ServiceAccount>(doc)),
            "ClusterRole" => drop(typed::<ClusterRole>(doc)),
            "ClusterRoleBinding" => drop(typed::<ClusterRoleBinding>(doc)),
            "Role" => drop(typed::<Role>(doc)),
            "RoleBinding" => drop(typed::<RoleBinding>(doc)),
            k => panic!("unexpected kind {k}"),
        }
    }
}

#[test]
fn the_roles_grant_what_the_operator_and_the_worker_call_and_no_secrets() {
    let docs = documents();
    let cluster_role = |name: &str| -> Vec<PolicyRule> {
        let d = docs.iter().find(|d| d["kind"] == "ClusterRole" && d["metadata"]["name"] == name).unwrap();
        typed::<ClusterRole>(d).rules.unwrap_or_default()
    };
    let operator = cluster_role("ferry-operator");
    for (group, resource, verb) in [
        ("ferry.dev", "syncjobs", "watch"),
        ("ferry.dev", "syncjobs", "list"),
        ("ferry.dev", "syncjobs", "patch"),
        ("ferry.dev", "syncjobs/status", "patch"),
        ("", "pods", "create"),
        ("", "pods", "delete"),
        ("", "pods", "watch"),
        ("events.k8s.io", "events", "create"),
        ("ferry.dev", "comparetasks", "watch"),
        ("ferry.dev", "comparetasks/status", "patch"),
        ("ferry.dev", "batchjobs", "watch"),
        ("ferry.dev", "batchjobs/status", "patch"),
        ("ferry.dev", "syncjobs", "create"),
        ("ferry.dev", "syncjobs", "delete"),
        ("ferry.dev", "batchjobs/finalizers", "update"),
        ("", "configmaps", "get"),
        ("", "configmaps", "create"),
        ("", "serviceaccounts", "create"),
        ("rbac.authorization.k8s.io", "roles", "create"),
        ("rbac.authorization.k8s.io", "roles", "update"),
        ("rbac.authorization.k8s.io", "rolebindings", "create"),
    ] {
        assert!(grants(&operator, group, resource, verb), "operator lacks {verb} {group}/{resource}");
    }
    for verb in ["escalate", "bind", "*"] {
        assert!(!grants(&operator, "rbac.authorization.k8s.io", "roles", verb), "{verb} would let it grant anything");
    }
    assert!(!grants(&operator, "", "configmaps", "patch") && !grants(&operator, "", "configmaps", "delete"));
    let workers = [
        Grant::SyncJob { job: "orders".into() },
        Grant::Compare { task: "check".into(), job: Some("orders".into()), report: "check-report".into() },
    ];
    for grant in &workers {
        let rules = grant.rules();
        // The API server lets the operator create this Role only if it holds every rule itself.
        for rule in &rules {
            for group in rule.api_groups.iter().flatten() {
                for resource in rule.resources.iter().flatten() {
                    for verb in &rule.verbs {
                        assert!(
                            grants(&operator, group, resource, verb),
                            "{grant:?}: operator lacks {verb} {resource}"
                        );
                    }
                }
            }
            let events = rule.api_groups.as_deref() == Some(&["events.k8s.io".to_owned()][..]);
            assert!(
                events || rule.resource_names.as_ref().is_some_and(|n| !n.is_empty()),
                "{rule:?} names its objects"
            );
        }
        assert!(!grants(&rules, "ferry.dev", "syncjobs", "patch"), "a worker never edits the spec");
        assert!(!grants(&rules, "ferry.dev", "syncjobs", "list"), "nor lists other jobs");
        assert!(!grants(&rules, "", "configmaps", "create"), "nor creates ConfigMaps");
    }
    let sync = workers[0].rules();
    assert!(grants(&sync, "ferry.dev", "syncjobs/status", "patch"));
    assert!(grants(&sync, "events.k8s.io", "events", "create"), "the sync worker reports its reconnects");
    let compare = workers[1].rules();
    assert!(grants(&compare, "", "configmaps", "update"), "the compare worker fills in its report");
    assert!(grants(&compare, "ferry.dev", "comparetasks/status", "patch"));
    for rules in [&operator, &sync, &compare] {
        assert!(
            !rules.iter().any(|r| r.resources.as_ref().is_some_and(|x| x.iter().any(|x| x == "secrets" || x == "*")))
        );
    }
    let leader = docs.iter().find(|d| d["kind"] == "Role").unwrap();
    let leader: Role = typed(leader);
    assert!(grants(leader.rules.as_deref().unwrap(), "coordination.k8s.io", "leases", "update"));
}
