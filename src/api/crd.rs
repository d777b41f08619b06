//! The CustomResourceDefinitions generated from the Rust types, as `ferry crd` prints them and
//! `crds/` stores them.

use k8s_openapi::apiextensions_apiserver::pkg::apis::apiextensions::v1::CustomResourceDefinition;
use kube::CustomResourceExt;

use super::{BatchJob, CompareTask, SyncJob};

/// The three CRDs, in a stable order, with the file name each is stored under in `crds/`.
pub fn all() -> Vec<(&'static str, CustomResourceDefinition)> {
    vec![
        ("syncjobs.ferry.dev.yaml", SyncJob::crd()),
        ("comparetasks.ferry.dev.yaml", CompareTask::crd()),
        ("batchjobs.ferry.dev.yaml", BatchJob::crd()),
    ]
}

/// One CRD rendered as YAML.
pub fn to_yaml(crd: &CustomResourceDefinition) -> Result<String, serde_yaml::Error> {
    serde_yaml::to_string(crd)
}

/// Every CRD as one multi-document YAML stream, as `ferry crd` prints it.
pub fn all_yaml() -> Result<String, serde_yaml::Error> {
    let mut out = String::new();
    for (_, crd) in all() {
        out.push_str("---\n");
        out.push_str(&to_yaml(&crd)?);
    }
    Ok(out)
}
