//! Every example manifest parses into its resource and passes `validate()`, and the shape the
//! foundation issue promises is accepted exactly as written.

use std::path::Path;

use ferry::api::manifest::{self, Manifest};
use ferry::api::validate::Validate;
use ferry::api::{Engine, SyncJobPhase, TaskType};

fn check_all(text: &str, origin: &str) -> Vec<Manifest> {
    let docs = manifest::parse(text).unwrap_or_else(|e| panic!("{origin}: {e}"));
    for doc in &docs {
        let errors = match doc {
            Manifest::SyncJob(j) => j.spec.validate(),
            Manifest::CompareTask(c) => c.spec.validate(),
            Manifest::BatchJob(b) => b.spec.validate_named(b.metadata.name.as_deref().unwrap_or("")),
            Manifest::Secret(_) => Vec::new(),
        };
        assert!(errors.is_empty(), "{origin}: {errors:#?}");
    }
    docs
}

#[test]
fn every_example_manifest_is_valid() {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("deploy/examples");
    let mut kinds = Vec::new();
    for entry in std::fs::read_dir(&dir).unwrap() {
        let path = entry.unwrap().path();
        if path.extension().is_some_and(|e| e == "yaml") {
            let text = std::fs::read_to_string(&path).unwrap();
            for doc in check_all(&text, &path.display().to_string()) {
                kinds.push(match doc {
                    Manifest::Secret(_) => "Secret",
                    Manifest::SyncJob(_) => "SyncJob",
                    Manifest::CompareTask(_) => "CompareTask",
                    Manifest::BatchJob(_) => "BatchJob",
                });
            }
        }
    }
    for kind in ["Secret", "SyncJob", "CompareTask", "BatchJob"] {
        assert!(kinds.contains(&kind), "no example of a {kind}");
    }
}

#[test]
fn the_batch_example_merges_overrides_into_three_valid_children() {
    let text =
        std::fs::read_to_string(Path::new(env!("CARGO_MANIFEST_DIR")).join("deploy/examples/batch.yaml")).unwrap();
    let Some(Manifest::BatchJob(batch)) = manifest::parse(&text).unwrap().into_iter().next() else {
        panic!("not a BatchJob")
    };
    let children: Vec<_> = batch.spec.jobs.iter().map(|i| batch.spec.child_spec(i).unwrap()).collect();
    assert_eq!(children.len(), 3);
    assert_eq!(children[2].objects.databases[0].name, "tenant_initech");
    assert_eq!(children[2].node_type, ferry::api::NodeType::Medium);
    assert_eq!(children[0].node_type, ferry::api::NodeType::Small, "the template's value where no override");
}

#[test]
fn the_promised_syncjob_shape_is_accepted_as_written() {
    let text = r#"
apiVersion: ferry.dev/v1alpha1
kind: SyncJob
metadata: {name: orders-pg}
spec:
  jobType: sync
  taskType: FULL_INCR_TRANS
  source: {engine: postgresql, host: 127.0.0.1, port: 5432, database: shop, user: ferry,
           passwordSecretRef: {name: pg-creds, key: source-password}}
  target: {engine: postgresql, host: 127.0.0.1, port: 5433, database: shop, user: ferry,
           passwordSecretRef: {name: pg-creds, key: target-password}}
  objects:
    scope: table
    databases:
      - name: shop
        schemas:
          - name: public
            tables: [{name: orders}, {name: order_items, mappedName: items}]
  policy: {conflict: overwrite}
  nodeType: small
"#;
    let docs = check_all(text, "issue shape");
    let Manifest::SyncJob(job) = &docs[0] else { panic!("not a SyncJob") };
    assert_eq!(job.spec.task_type, TaskType::FullIncrTrans);
    assert_eq!(job.spec.source.engine, Engine::Postgresql);
    assert_eq!(job.spec.expired_days, 14, "defaults apply");
    assert!(job.spec.policy.indexes);
    let tables = job.spec.objects.tables(Engine::Postgresql);
    assert_eq!(tables.iter().map(|t| t.target_table()).collect::<Vec<_>>(), ["orders", "items"]);
    assert!(job.status.is_none());
    let _ = SyncJobPhase::Creating;
}

#[test]
fn secrets_are_read_from_string_data_and_data() {
    let text = r#"
apiVersion: v1
kind: Secret
metadata: {name: s}
stringData: {a: plain}
data: {b: c2VjcmV0}
"#;
    let docs = manifest::parse(text).unwrap();
    let Manifest::Secret(s) = &docs[0] else { panic!("not a Secret") };
    assert_eq!(manifest::secret_value(s, "a").as_deref(), Some("plain"));
    assert_eq!(manifest::secret_value(s, "b").as_deref(), Some("secret"));
    assert_eq!(manifest::secret_value(s, "c"), None);
}

#[test]
fn an_unknown_kind_or_a_bad_field_names_the_document() {
    let err = manifest::parse("apiVersion: v1\nkind: ConfigMap\n").unwrap_err().to_string();
    assert!(err.contains("document 1") && err.contains("ConfigMap"), "{err}");
    let err = manifest::parse("---\napiVersion: v1\nkind: Secret\n---\napiVersion: ferry.dev/v1alpha1\nkind: SyncJob\nmetadata: {name: x}\nspec: {taskType: SOMETIMES}\n")
        .unwrap_err()
        .to_string();
    assert!(err.contains("document 2"), "{err}");
}
