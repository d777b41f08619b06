//! What the operator lets a job ask of its worker pods: the image, the tolerations and the node
//! selector in `spec.worker` are limited by operator settings (`--allowed-worker-images`,
//! `--allowed-toleration-keys`, `--allowed-node-selector-keys`), so that whoever may create a
//! SyncJob, CompareTask or BatchJob cannot run an image of their choosing with the job's Secrets,
//! nor place it on nodes the cluster admin keeps apart (control plane nodes, dedicated pools).
//! Pure: the controllers turn what this finds into a spec error (`CREATE_FAILED`).

use crate::api::WorkerOverrides;
use crate::api::validate::FieldError;

/// Node labels a job may select by default: where a node is and what it runs, never which node
/// it is or what role it has.
pub const DEFAULT_NODE_SELECTOR_KEYS: [&str; 5] = [
    "kubernetes.io/arch",
    "kubernetes.io/os",
    "node.kubernetes.io/instance-type",
    "topology.kubernetes.io/region",
    "topology.kubernetes.io/zone",
];

/// The operator's limits on `spec.worker`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct WorkerPolicy {
    /// The operator's own image: the default, always allowed.
    pub default_image: String,
    /// Further images a job may name: an exact reference, or a prefix ending in `*`
    /// (`registry.example.com/ferry:*`); `*` alone allows any image.
    pub allowed_images: Vec<String>,
    /// Toleration keys a job may use; `*` allows any toleration, including one without a key.
    pub allowed_toleration_keys: Vec<String>,
    /// Node label keys a job may select on; `*` allows any.
    pub allowed_node_selector_keys: Vec<String>,
    /// Secrets (in the job's namespace) worker pods pull their image with.
    pub image_pull_secrets: Vec<String>,
}

impl WorkerPolicy {
    /// The defaults: only the operator's own image, no tolerations, the node labels of
    /// [`DEFAULT_NODE_SELECTOR_KEYS`].
    pub fn new(default_image: impl Into<String>) -> WorkerPolicy {
        WorkerPolicy {
            default_image: default_image.into(),
            allowed_images: Vec::new(),
            allowed_toleration_keys: Vec::new(),
            allowed_node_selector_keys: DEFAULT_NODE_SELECTOR_KEYS.iter().map(|k| (*k).to_owned()).collect(),
            image_pull_secrets: Vec::new(),
        }
    }

    /// Whether worker pods may run `image`.
    pub fn allows_image(&self, image: &str) -> bool {
        image == self.default_image
            || self.allowed_images.iter().any(|p| match p.strip_suffix('*') {
                Some(prefix) => image.starts_with(prefix),
                None => image == p,
            })
    }

    /// Makes a worker pod what the operator allows, whatever built it: an image it does not
    /// allow becomes the operator's own, tolerations and node labels it does not allow are
    /// dropped. Jobs asking for more never get this far (their spec is invalid), except a job
    /// that must still release its source resources: its release pod runs like this. Adds the
    /// operator's image pull Secrets.
    pub fn enforce(&self, pod: &mut k8s_openapi::api::core::v1::Pod) {
        let Some(spec) = pod.spec.as_mut() else { return };
        for c in &mut spec.containers {
            if !c.image.as_deref().is_some_and(|i| self.allows_image(i)) {
                c.image = Some(self.default_image.clone());
            }
        }
        if let Some(tolerations) = spec.tolerations.as_mut() {
            tolerations.retain(|t| Self::allows_key(&self.allowed_toleration_keys, t.key.as_deref().unwrap_or("")));
        }
        if let Some(selector) = spec.node_selector.as_mut() {
            selector.retain(|k, _| Self::allows_key(&self.allowed_node_selector_keys, k));
        }
        if !self.image_pull_secrets.is_empty() {
            spec.image_pull_secrets = Some(
                self.image_pull_secrets
                    .iter()
                    .map(|name| k8s_openapi::api::core::v1::LocalObjectReference { name: name.clone() })
                    .collect(),
            );
        }
    }

    fn allows_key(list: &[String], key: &str) -> bool {
        list.iter().any(|k| k == "*" || (!key.is_empty() && k == key))
    }

    fn listed(list: &[String]) -> String {
        if list.is_empty() { "none".to_owned() } else { list.join(", ") }
    }

    /// What in `overrides` (found at `path`, e.g. `spec.worker`) the operator does not allow:
    /// each violation names the field, what was asked, what is allowed and the setting that
    /// allows more.
    pub fn check(&self, overrides: Option<&WorkerOverrides>, path: &str) -> Vec<FieldError> {
        let Some(o) = overrides else { return Vec::new() };
        let mut errors = Vec::new();
        if let Some(image) = o.image.as_deref()
            && !self.allows_image(image)
        {
            let mut allowed = vec![self.default_image.clone()];
            allowed.extend(self.allowed_images.iter().cloned());
            errors.push(FieldError {
                path: format!("{path}.image"),
                message: format!(
                    "image {image:?} is not allowed by the operator: worker pods run with the job's Secrets, so \
                     only images the cluster admin allows may run them ({}; operator setting \
                     --allowed-worker-images, Helm value workers.allowedImages)",
                    allowed.join(", ")
                ),
            });
        }
        for (i, t) in o.tolerations.iter().enumerate() {
            let key = t.key.as_deref().unwrap_or("");
            if !Self::allows_key(&self.allowed_toleration_keys, key) {
                let what = if key.is_empty() {
                    "a toleration without a key (it tolerates every taint)".to_owned()
                } else {
                    format!("toleration key {key:?}")
                };
                errors.push(FieldError {
                    path: format!("{path}.tolerations[{i}]"),
                    message: format!(
                        "{what} is not allowed by the operator: taints keep worker pods off nodes the cluster admin \
                         reserves (allowed keys: {}; operator setting --allowed-toleration-keys, Helm value \
                         workers.allowedTolerationKeys)",
                        Self::listed(&self.allowed_toleration_keys)
                    ),
                });
            }
        }
        for key in o.node_selector.keys() {
            if !Self::allows_key(&self.allowed_node_selector_keys, key) {
                errors.push(FieldError {
                    path: format!("{path}.nodeSelector"),
                    message: format!(
                        "node label {key:?} is not allowed by the operator (allowed keys: {}; operator setting \
                         --allowed-node-selector-keys, Helm value workers.allowedNodeSelectorKeys)",
                        Self::listed(&self.allowed_node_selector_keys)
                    ),
                });
            }
        }
        errors
    }
}

#[cfg(test)]
mod tests {
    use k8s_openapi::api::core::v1::Toleration;

    use super::*;

    fn overrides(image: Option<&str>, toleration: Option<&str>, selector: Option<&str>) -> WorkerOverrides {
        WorkerOverrides {
            image: image.map(Into::into),
            tolerations: toleration
                .map(|k| {
                    vec![Toleration {
                        key: (!k.is_empty()).then(|| k.to_owned()),
                        operator: Some("Exists".into()),
                        ..Default::default()
                    }]
                })
                .unwrap_or_default(),
            node_selector: selector.map(|k| [(k.to_owned(), "x".to_owned())].into()).unwrap_or_default(),
            ..Default::default()
        }
    }

    #[test]
    fn by_default_only_the_operators_image_and_no_toleration_pass() {
        let policy = WorkerPolicy::new("ghcr.io/ferry-dev/ferry:1.0");
        assert!(policy.check(None, "spec.worker").is_empty());
        assert!(
            policy
                .check(
                    Some(&overrides(Some("ghcr.io/ferry-dev/ferry:1.0"), None, Some("topology.kubernetes.io/zone"))),
                    "spec.worker"
                )
                .is_empty()
        );
        let errors = policy.check(
            Some(&overrides(
                Some("evil.example.com/miner:latest"),
                Some(""),
                Some("node-role.kubernetes.io/control-plane"),
            )),
            "spec.worker",
        );
        let paths: Vec<_> = errors.iter().map(|e| e.path.as_str()).collect();
        let mut job = crate::api::SyncJob::new("orders", crate::api::SyncJobSpec::test());
        job.metadata.namespace = Some("shop".into());
        job.metadata.uid = Some("uid-1".into());
        job.spec.worker =
            Some(overrides(Some("evil.example.com/miner:latest"), Some(""), Some("kubernetes.io/hostname")));
        let mut pod = crate::controller::pods::build(&job, crate::controller::pods::Role::Release, 1, "x").unwrap();
        policy.enforce(&mut pod);
        let spec = pod.spec.unwrap();
        assert_eq!(spec.containers[0].image.as_deref(), Some("ghcr.io/ferry-dev/ferry:1.0"));
        assert_eq!(spec.tolerations, Some(vec![]));
        assert_eq!(spec.node_selector, Some(Default::default()));
        assert_eq!(paths, ["spec.worker.image", "spec.worker.tolerations[0]", "spec.worker.nodeSelector"]);
        assert!(
            errors[0].message.contains("\"evil.example.com/miner:latest\" is not allowed"),
            "{}",
            errors[0].message
        );
        assert!(errors[0].message.contains("--allowed-worker-images"));
        assert!(errors[1].message.contains("without a key"), "{}", errors[1].message);
        assert!(errors[2].message.contains("node-role.kubernetes.io/control-plane"));
    }

    #[test]
    fn patterns_and_keys_set_on_the_operator_allow_more() {
        let mut policy = WorkerPolicy::new("ferry:1");
        policy.allowed_images = vec!["registry.example.com/ferry:*".into(), "ferry:debug".into()];
        policy.allowed_toleration_keys = vec!["dedicated".into()];
        policy.allowed_node_selector_keys = vec!["pool".into()];
        assert!(policy.allows_image("registry.example.com/ferry:1.2"));
        assert!(policy.allows_image("ferry:debug"));
        assert!(!policy.allows_image("registry.example.com/ferry-evil:1"));
        assert!(!policy.allows_image("ferry:debug2"));
        assert!(policy.check(Some(&overrides(None, Some("dedicated"), Some("pool"))), "w").is_empty());
        assert_eq!(policy.check(Some(&overrides(None, Some(""), Some("kubernetes.io/hostname"))), "w").len(), 2);
        policy.allowed_toleration_keys = vec!["*".into()];
        policy.allowed_images = vec!["*".into()];
        assert!(policy.check(Some(&overrides(Some("any:thing"), Some(""), None)), "w").is_empty());
    }
}
