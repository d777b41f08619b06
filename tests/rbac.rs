//! deploy/rbac.yaml: every object is a valid Kubernetes object (nothing unknown, nothing
//! dropped), and the roles grant exactly what the operator and the worker call.

use k8s_openapi::api::core::v1::ServiceAccount;
use k8s_openapi::api::rbac::v1::{ClusterRole, ClusterRoleBinding, PolicyRule, Role, RoleBinding};
use serde::Deserialize;
use serde::de::DeserializeOwned;
use serde_json::Value;

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
    assert_eq!(docs.len(), 8);
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
    ] {
        assert!(grants(&operator, group, resource, verb), "operator lacks {verb} {group}/{resource}");
    }
    let worker = cluster_role("ferry-worker");
    assert!(grants(&worker, "ferry.dev", "syncjobs", "get"));
    assert!(grants(&worker, "ferry.dev", "syncjobs/status", "patch"));
    assert!(grants(&worker, "ferry.dev", "comparetasks/status", "patch"));
    assert!(grants(&worker, "", "configmaps", "patch"), "the compare worker writes its report");
    assert!(grants(&worker, "events.k8s.io", "events", "create"), "the sync worker reports its reconnects");
    assert!(!grants(&worker, "ferry.dev", "syncjobs", "patch"), "a worker never edits the spec");
    assert!(!grants(&operator, "", "configmaps", "patch"), "the operator never writes a ConfigMap");
    for rules in [&operator, &worker] {
        assert!(
            !rules.iter().any(|r| r.resources.as_ref().is_some_and(|x| x.iter().any(|x| x == "secrets" || x == "*")))
        );
    }
    let leader = docs.iter().find(|d| d["kind"] == "Role").unwrap();
    let leader: Role = typed(leader);
    assert!(grants(leader.rules.as_deref().unwrap(), "coordination.k8s.io", "leases", "update"));
}
