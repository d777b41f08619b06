//! The pods the SyncJob controller runs: precheck, worker (sync) and release. Pure builders —
//! names derived from the job and the attempt so creation is idempotent, `app.kubernetes.io/*`
//! labels, restricted pod security, resources from `nodeType`, passwords wired from the job's
//! Secrets into environment variables and TLS CA bundles and client certificates mounted from
//! its Secrets and ConfigMaps (the operator never reads a Secret's value), and the job's own
//! ServiceAccount ([`super::identity`]).

use std::collections::BTreeMap;

use k8s_openapi::api::core::v1::{
    Capabilities, ConfigMapProjection, Container, ContainerPort, EmptyDirVolumeSource, EnvVar, EnvVarSource, KeyToPath,
    Pod, PodSecurityContext, PodSpec, ProjectedVolumeSource, ResourceRequirements, SeccompProfile, SecretKeySelector,
    SecretProjection, SecurityContext, Volume, VolumeMount, VolumeProjection,
};
use k8s_openapi::apimachinery::pkg::api::resource::Quantity;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{ObjectMeta, OwnerReference};
use kube::Resource;

use crate::api::{NodeType, SyncJob, TlsConfig};

/// Label: the application (`ferry`).
pub const LABEL_NAME: &str = "app.kubernetes.io/name";
/// Label: the pod's role (`precheck`, `worker`, `release`).
pub const LABEL_COMPONENT: &str = "app.kubernetes.io/component";
/// Label: the SyncJob (or CompareTask) the pod works for. Not `app.kubernetes.io/instance`:
/// Argo CD's label tracking reads that one as the name of the application a resource belongs to,
/// and would prune the pods of a job named like an application.
pub const LABEL_JOB: &str = "ferry.dev/job";
/// Label: who manages the pod.
pub const LABEL_MANAGED_BY: &str = "app.kubernetes.io/managed-by";
/// Label: the worker attempt or the spec generation the pod runs for.
pub const LABEL_ATTEMPT: &str = "ferry.dev/attempt";
/// The operator's name as `managed-by` and as its field manager.
pub const MANAGER: &str = "ferry-operator";
/// Port of a worker's `/metrics` (its default `--metrics-listen`).
pub const METRICS_PORT: i32 = 9464;
/// Environment variable carrying the source password into a worker.
pub const ENV_SOURCE_PASSWORD: &str = "FERRY_SOURCE_PASSWORD";
/// Environment variable carrying the target password into a worker.
pub const ENV_TARGET_PASSWORD: &str = "FERRY_TARGET_PASSWORD";
/// Environment variable naming the directory where a worker finds each side's TLS files
/// (`<dir>/source/ca.crt`, `tls.crt`, `tls.key`; the same under `target`).
pub const ENV_TLS_DIR: &str = "FERRY_TLS_DIR";
/// Where worker pods mount the TLS files.
pub const TLS_DIR: &str = "/etc/ferry/tls";
/// The user and group worker containers run as.
const WORKER_UID: i64 = 65532;

/// What a pod does for its job.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Role {
    /// Checks both databases for the current spec generation.
    Precheck,
    /// Runs the transfer.
    Worker,
    /// Releases the source resources.
    Release,
    /// Runs a CompareTask.
    Compare,
}

impl Role {
    /// The `ferry worker` subcommand and the component label.
    pub fn as_str(self) -> &'static str {
        match self {
            Role::Precheck => "precheck",
            Role::Worker => "sync",
            Role::Release => "release",
            Role::Compare => "compare",
        }
    }

    /// The role a component label names.
    pub fn from_label(label: &str) -> Option<Role> {
        [Role::Precheck, Role::Worker, Role::Release, Role::Compare].into_iter().find(|r| r.as_str() == label)
    }
}

/// The longest name a pod or a label value may have.
pub const MAX_LABEL: usize = 63;

/// `name` followed by `suffix` in at most 63 characters: a name too long for that is cut and a
/// hash of the whole name keeps it unique.
fn fit(name: &str, suffix: &str) -> String {
    fit_to(name, suffix, MAX_LABEL)
}

/// `name` followed by `suffix` in at most `max` characters, cut and hashed as [`fit`] does.
pub fn fit_to(name: &str, suffix: &str, max: usize) -> String {
    if name.len() + suffix.len() <= max {
        return format!("{name}{suffix}");
    }
    let hash = name.bytes().fold(0x811c_9dc5u32, |h, b| (h ^ u32::from(b)).wrapping_mul(0x0100_0193));
    let keep = max.saturating_sub(suffix.len() + 9);
    let cut: String = name.chars().take(keep).collect();
    format!("{}-{hash:08x}{suffix}", cut.trim_end_matches(['-', '.']))
}

/// `<job>-<role>-<n>`, at most 63 characters: a long job name is cut and a hash of the full
/// name keeps it unique.
pub fn pod_name(job: &str, role: Role, n: i64) -> String {
    fit(job, &format!("-{}-{n}", role.as_str()))
}

/// A resource's name as a label value, which may hold at most 63 characters while a SyncJob's,
/// CompareTask's or BatchJob's name may hold 253: a longer name is cut and hashed as in
/// [`pod_name`]. Labels and the selectors that find them both go through here.
pub fn label_value(name: &str) -> String {
    fit(name, "")
}

/// Requests and limits for a `nodeType`.
pub fn resources(node: NodeType) -> ResourceRequirements {
    let (cpu, mem, cpu_max, mem_max) = match node {
        NodeType::Micro => ("250m", "256Mi", "500m", "512Mi"),
        NodeType::Small => ("500m", "512Mi", "1", "1Gi"),
        NodeType::Medium => ("1", "1Gi", "2", "2Gi"),
        NodeType::High => ("2", "4Gi", "4", "8Gi"),
    };
    let q = |cpu: &str, mem: &str| {
        BTreeMap::from([("cpu".to_owned(), Quantity(cpu.to_owned())), ("memory".to_owned(), Quantity(mem.to_owned()))])
    };
    ResourceRequirements { requests: Some(q(cpu, mem)), limits: Some(q(cpu_max, mem_max)), ..Default::default() }
}

/// The labels of a job's pod.
pub fn labels(job: &str, role: Role, n: i64) -> BTreeMap<String, String> {
    BTreeMap::from([
        (LABEL_NAME.to_owned(), "ferry".to_owned()),
        (LABEL_COMPONENT.to_owned(), role.as_str().to_owned()),
        (LABEL_JOB.to_owned(), label_value(job)),
        (LABEL_MANAGED_BY.to_owned(), MANAGER.to_owned()),
        (LABEL_ATTEMPT.to_owned(), n.to_string()),
    ])
}

/// The projected volume holding one side's CA bundle and client certificate, readable by the
/// worker's group only, if the side names any.
fn tls_volume(side: &str, tls: Option<&TlsConfig>) -> Option<Volume> {
    let tls = tls?;
    let item = |key: &str, path: &str| KeyToPath { key: key.to_owned(), path: path.to_owned(), mode: None };
    let mut sources = Vec::new();
    if let Some(r) = &tls.ca_secret_ref {
        sources.push(VolumeProjection {
            secret: Some(SecretProjection {
                name: r.name.clone(),
                items: Some(vec![item(&r.key, "ca.crt")]),
                optional: Some(false),
            }),
            ..Default::default()
        });
    }
    if let Some(r) = &tls.ca_config_map_ref {
        sources.push(VolumeProjection {
            config_map: Some(ConfigMapProjection {
                name: r.name.clone(),
                items: Some(vec![item(&r.key, "ca.crt")]),
                optional: Some(false),
            }),
            ..Default::default()
        });
    }
    if let Some(r) = &tls.client_cert_secret_ref {
        sources.push(VolumeProjection {
            secret: Some(SecretProjection {
                name: r.name.clone(),
                items: Some(vec![item(&r.cert_key, "tls.crt"), item(&r.key_key, "tls.key")]),
                optional: Some(false),
            }),
            ..Default::default()
        });
    }
    (!sources.is_empty()).then(|| Volume {
        name: format!("tls-{side}"),
        projected: Some(ProjectedVolumeSource { sources: Some(sources), default_mode: Some(0o440) }),
        ..Default::default()
    })
}

fn password_env(name: &str, secret: Option<&crate::api::SecretKeyRef>) -> Option<EnvVar> {
    let secret = secret?;
    Some(EnvVar {
        name: name.to_owned(),
        value_from: Some(EnvVarSource {
            secret_key_ref: Some(SecretKeySelector {
                name: secret.name.clone(),
                key: secret.key.clone(),
                optional: Some(false),
            }),
            ..Default::default()
        }),
        ..Default::default()
    })
}

/// The pod that runs `ferry worker <role> --job <namespace>/<name>` for `job`, owned by it.
/// `n` is the spec generation for a precheck, the attempt otherwise; `default_image` is the
/// operator's own image.
pub fn build(job: &SyncJob, role: Role, n: i64, default_image: &str) -> Option<Pod> {
    let name = job.metadata.name.as_deref()?;
    let namespace = job.metadata.namespace.as_deref()?;
    let owner: OwnerReference = job.controller_owner_ref(&())?;
    let spec = &job.spec;
    Some(build_for(PodParams {
        owner,
        name,
        namespace,
        role,
        n,
        args: vec!["worker".into(), role.as_str().into(), "--job".into(), format!("{namespace}/{name}")],
        source: spec.source.password_secret_ref.as_ref(),
        target: spec.target.password_secret_ref.as_ref(),
        source_tls: spec.source.tls.as_ref(),
        target_tls: spec.target.tls.as_ref(),
        node_type: spec.node_type,
        overrides: spec.worker.clone().unwrap_or_default(),
        default_image,
        service_account: super::identity::Grant::SyncJob { job: name.to_owned() }.account(),
    }))
}

/// What a worker pod is built from.
pub struct PodParams<'a> {
    /// The owning resource.
    pub owner: OwnerReference,
    /// The owner's name (labels and the pod's name derive from it).
    pub name: &'a str,
    /// Namespace.
    pub namespace: &'a str,
    /// The pod's role.
    pub role: Role,
    /// Attempt, generation or run number.
    pub n: i64,
    /// The `ferry` arguments.
    pub args: Vec<String>,
    /// Secret key of the source password.
    pub source: Option<&'a crate::api::SecretKeyRef>,
    /// Secret key of the target password.
    pub target: Option<&'a crate::api::SecretKeyRef>,
    /// Source TLS settings (CA bundle and client certificate to mount).
    pub source_tls: Option<&'a TlsConfig>,
    /// Target TLS settings.
    pub target_tls: Option<&'a TlsConfig>,
    /// Size class.
    pub node_type: NodeType,
    /// Image, resources and placement overrides.
    pub overrides: crate::api::WorkerOverrides,
    /// The operator's own image.
    pub default_image: &'a str,
    /// The owner's own ServiceAccount ([`super::identity`]).
    pub service_account: String,
}

/// A worker pod: owned, labelled, restricted, passwords from Secret references.
pub fn build_for(p: PodParams<'_>) -> Pod {
    let overrides = p.overrides;
    let env: Vec<EnvVar> = [
        password_env(ENV_SOURCE_PASSWORD, p.source),
        password_env(ENV_TARGET_PASSWORD, p.target),
        Some(EnvVar { name: "RUST_LOG".into(), value: Some("info".into()), ..Default::default() }),
        Some(EnvVar { name: ENV_TLS_DIR.into(), value: Some(TLS_DIR.into()), ..Default::default() }),
    ]
    .into_iter()
    .flatten()
    .collect();
    let mut volumes =
        vec![Volume { name: "tmp".into(), empty_dir: Some(EmptyDirVolumeSource::default()), ..Default::default() }];
    let mut mounts = vec![VolumeMount { name: "tmp".into(), mount_path: "/tmp".into(), ..Default::default() }];
    for (side, tls) in [("source", p.source_tls), ("target", p.target_tls)] {
        if let Some(volume) = tls_volume(side, tls) {
            mounts.push(VolumeMount {
                name: volume.name.clone(),
                mount_path: format!("{TLS_DIR}/{side}"),
                read_only: Some(true),
                ..Default::default()
            });
            volumes.push(volume);
        }
    }
    let container = Container {
        name: p.role.as_str().to_owned(),
        image: Some(overrides.image.clone().unwrap_or_else(|| p.default_image.to_owned())),
        args: Some(p.args),
        env: Some(env),
        // `ferry worker` serves its metrics here; the chart's PodMonitor scrapes the port by name.
        ports: Some(vec![ContainerPort {
            name: Some("metrics".into()),
            container_port: METRICS_PORT,
            protocol: Some("TCP".into()),
            ..Default::default()
        }]),
        resources: Some(overrides.resources.clone().unwrap_or_else(|| resources(p.node_type))),
        security_context: Some(SecurityContext {
            allow_privilege_escalation: Some(false),
            read_only_root_filesystem: Some(true),
            run_as_non_root: Some(true),
            capabilities: Some(Capabilities { drop: Some(vec!["ALL".into()]), ..Default::default() }),
            seccomp_profile: Some(SeccompProfile { type_: "RuntimeDefault".into(), ..Default::default() }),
            ..Default::default()
        }),
        // The worker writes `CODE: message` there on failure; the log's tail otherwise.
        termination_message_policy: Some("FallbackToLogsOnError".into()),
        volume_mounts: Some(mounts),
        ..Default::default()
    };
    Pod {
        metadata: ObjectMeta {
            name: Some(pod_name(p.name, p.role, p.n)),
            namespace: Some(p.namespace.to_owned()),
            labels: Some(labels(p.name, p.role, p.n)),
            owner_references: Some(vec![p.owner]),
            ..Default::default()
        },
        spec: Some(PodSpec {
            containers: vec![container],
            // Retries are the operator's: a failed worker stays failed for it to see.
            restart_policy: Some("Never".into()),
            service_account_name: Some(p.service_account),
            security_context: Some(PodSecurityContext {
                run_as_non_root: Some(true),
                run_as_user: Some(WORKER_UID),
                run_as_group: Some(WORKER_UID),
                // Mounted TLS files belong to this group, readable by it only.
                fs_group: Some(WORKER_UID),
                seccomp_profile: Some(SeccompProfile { type_: "RuntimeDefault".into(), ..Default::default() }),
                ..Default::default()
            }),
            node_selector: (!overrides.node_selector.is_empty()).then(|| overrides.node_selector.clone()),
            tolerations: (!overrides.tolerations.is_empty()).then(|| overrides.tolerations.clone()),
            volumes: Some(volumes),
            ..Default::default()
        }),
        status: None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn job() -> SyncJob {
        let mut j = SyncJob::new("orders", crate::api::SyncJobSpec::test());
        j.metadata.namespace = Some("shop".into());
        j.metadata.uid = Some("uid-1".into());
        j
    }

    #[test]
    fn pod_names_follow_job_role_and_attempt_and_stay_within_63_characters() {
        assert_eq!(pod_name("orders", Role::Worker, 3), "orders-sync-3");
        assert_eq!(pod_name("orders", Role::Precheck, 2), "orders-precheck-2");
        let long = "x".repeat(80);
        let a = pod_name(&long, Role::Release, 12);
        assert!(a.len() <= 63 && a.ends_with("-release-12"), "{a}");
        assert_ne!(a, pod_name(&format!("{long}y"), Role::Release, 12));
    }

    #[test]
    fn a_worker_pod_is_owned_restricted_and_gets_passwords_from_secret_references_only() {
        let pod = build(&job(), Role::Worker, 1, "ferry:1").unwrap();
        assert_eq!(pod.metadata.name.as_deref(), Some("orders-sync-1"));
        let owner = &pod.metadata.owner_references.as_ref().unwrap()[0];
        assert_eq!((owner.kind.as_str(), owner.controller), ("SyncJob", Some(true)));
        let spec = pod.spec.unwrap();
        assert_eq!(spec.restart_policy.as_deref(), Some("Never"));
        assert_eq!(spec.service_account_name.as_deref(), Some("orders-ferry-worker"), "the job's own account");
        let c = &spec.containers[0];
        assert_eq!(c.args.as_ref().unwrap(), &["worker", "sync", "--job", "shop/orders"]);
        let sc = c.security_context.as_ref().unwrap();
        assert_eq!(sc.read_only_root_filesystem, Some(true));
        assert_eq!(sc.allow_privilege_escalation, Some(false));
        assert_eq!(sc.capabilities.as_ref().unwrap().drop.as_ref().unwrap(), &["ALL"]);
        assert_eq!(spec.security_context.as_ref().unwrap().run_as_non_root, Some(true));
        let env = c.env.as_ref().unwrap();
        let pw = env.iter().find(|e| e.name == ENV_SOURCE_PASSWORD).unwrap();
        assert!(pw.value.is_none(), "never a literal password");
        assert!(pw.value_from.as_ref().unwrap().secret_key_ref.is_some());
        assert_eq!(c.resources.as_ref().unwrap(), &resources(NodeType::Small));
        assert_eq!(pod.metadata.labels.unwrap()[LABEL_COMPONENT], "sync");
    }

    #[test]
    fn tls_files_are_mounted_from_the_named_secrets_and_config_maps_readable_by_the_worker_only() {
        use crate::api::{ClientCertSecretRef, ConfigMapKeyRef, SecretKeyRef, TlsConfig, TlsMode};
        let mut j = job();
        j.spec.source.tls = Some(TlsConfig {
            mode: TlsMode::VerifyFull,
            ca_config_map_ref: Some(ConfigMapKeyRef { name: "rds-ca".into(), key: "bundle.pem".into() }),
            client_cert_secret_ref: Some(ClientCertSecretRef {
                name: "client".into(),
                cert_key: "tls.crt".into(),
                key_key: "tls.key".into(),
            }),
            ..Default::default()
        });
        j.spec.target.tls = Some(TlsConfig {
            mode: TlsMode::VerifyCa,
            ca_secret_ref: Some(SecretKeyRef { name: "db-ca".into(), key: "ca.crt".into() }),
            ..Default::default()
        });
        let pod = build(&j, Role::Worker, 1, "ferry:1").unwrap();
        let spec = pod.spec.unwrap();
        let c = &spec.containers[0];
        let mounts: Vec<_> = c.volume_mounts.as_ref().unwrap().iter().map(|m| m.mount_path.as_str()).collect();
        assert_eq!(mounts, ["/tmp", "/etc/ferry/tls/source", "/etc/ferry/tls/target"]);
        let env = c.env.as_ref().unwrap();
        assert!(env.iter().any(|e| e.name == ENV_TLS_DIR && e.value.as_deref() == Some(TLS_DIR)));
        let volumes = spec.volumes.unwrap();
        let source = volumes[1].projected.as_ref().unwrap();
        assert_eq!(source.default_mode, Some(0o440));
        let sources = source.sources.as_ref().unwrap();
        let ca = sources[0].config_map.as_ref().unwrap();
        assert_eq!((ca.name.as_str(), ca.items.as_ref().unwrap()[0].path.as_str()), ("rds-ca", "ca.crt"));
        let client = sources[1].secret.as_ref().unwrap();
        let paths: Vec<_> = client.items.as_ref().unwrap().iter().map(|i| (i.key.as_str(), i.path.as_str())).collect();
        assert_eq!(paths, [("tls.crt", "tls.crt"), ("tls.key", "tls.key")]);
        let target = volumes[2].projected.as_ref().unwrap().sources.as_ref().unwrap();
        assert_eq!(target[0].secret.as_ref().unwrap().name, "db-ca");
        assert_eq!(spec.security_context.unwrap().fs_group, Some(65532));
        // A side without TLS files gets no volume.
        let plain = build(&job(), Role::Worker, 1, "ferry:1").unwrap();
        assert_eq!(plain.spec.unwrap().volumes.unwrap().len(), 1);
    }

    #[test]
    fn overrides_replace_image_and_resources() {
        let mut j = job();
        j.spec.worker = Some(crate::api::WorkerOverrides {
            image: Some("registry.local/ferry:dev".into()),
            resources: Some(resources(NodeType::High)),
            ..Default::default()
        });
        let pod = build(&j, Role::Precheck, 4, "ferry:1").unwrap();
        let c = &pod.spec.unwrap().containers[0];
        assert_eq!(c.image.as_deref(), Some("registry.local/ferry:dev"));
        assert_eq!(c.resources.as_ref().unwrap(), &resources(NodeType::High));
    }
}
