//! The `ferry` binary: one executable for every role. Subcommands only wire arguments to the
//! library.

use std::path::PathBuf;
use std::process::ExitCode;

use clap::{Parser, Subcommand};

/// Ferry: database migration, continuous sync and verification as Kubernetes resources.
#[derive(Parser)]
#[command(name = "ferry", version, about)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Print the CustomResourceDefinitions as YAML, or write one file per CRD into a directory.
    Crd {
        /// Write `<plural>.ferry.dev.yaml` files into this directory instead of printing.
        #[arg(long)]
        out_dir: Option<PathBuf>,
    },
    /// Run a SyncJob locally, without a cluster: precheck, full transfer, change stream. Or run a
    /// CompareTask: exit 0 consistent, 1 inconsistent, 2 failure.
    ///
    /// FILE holds the manifests as one would `kubectl apply` them: the Secrets and one SyncJob
    /// (plus a CompareTask to compare instead). Ctrl-C (or SIGTERM) stops a job at a checkpoint;
    /// running again resumes from it.
    Run {
        /// The manifest file.
        #[arg(short = 'f', long = "file")]
        file: PathBuf,
        /// Rewrite the job's status as JSON in this file at least once a second.
        #[arg(long)]
        status_file: Option<PathBuf>,
        /// After a clean stop, release the replication slot and publication.
        #[arg(long)]
        release: bool,
        /// Serve the worker metrics (`/metrics`) on this address while the job runs.
        #[arg(long)]
        metrics_listen: Option<std::net::SocketAddr>,
    },
    /// Run the operator: reconcile SyncJobs in the cluster (leader-elected), serve `/metrics`,
    /// `/healthz` and `/readyz`.
    Operator {
        /// Address of the metrics and health endpoints.
        #[arg(long, default_value = "0.0.0.0:8080")]
        listen: std::net::SocketAddr,
        /// Reconcile without competing for the lease (a single replica).
        #[arg(long)]
        no_leader_election: bool,
        /// Namespace of the leader lease (default: `POD_NAMESPACE`, else `ferry-system`).
        #[arg(long, env = "POD_NAMESPACE", default_value = "ferry-system")]
        namespace: String,
        /// This replica's identity in the lease (default: `POD_NAME`, else the host name).
        #[arg(long, env = "POD_NAME")]
        identity: Option<String>,
        /// Image of worker pods when a job names none (the operator's own image).
        #[arg(long, env = "FERRY_IMAGE", default_value = concat!("ghcr.io/ferry-dev/ferry:", env!("CARGO_PKG_VERSION")))]
        image: String,
        /// Further images a job's `spec.worker.image` may name (comma-separated): exact
        /// references, or prefixes ending in `*` such as `registry.example.com/ferry:*`; `*`
        /// alone allows any image. Default: only the operator's own image (`--image`).
        #[arg(long, env = "FERRY_ALLOWED_WORKER_IMAGES", value_delimiter = ',')]
        allowed_worker_images: Vec<String>,
        /// Toleration keys a job's `spec.worker.tolerations` may use (comma-separated); `*`
        /// allows any toleration. Default: none.
        #[arg(long, env = "FERRY_ALLOWED_TOLERATION_KEYS", value_delimiter = ',')]
        allowed_toleration_keys: Vec<String>,
        /// Node label keys a job's `spec.worker.nodeSelector` may use (comma-separated); `*`
        /// allows any. Default: kubernetes.io/arch, kubernetes.io/os,
        /// node.kubernetes.io/instance-type, topology.kubernetes.io/region and
        /// topology.kubernetes.io/zone.
        #[arg(long, env = "FERRY_ALLOWED_NODE_SELECTOR_KEYS", value_delimiter = ',')]
        allowed_node_selector_keys: Option<Vec<String>>,
        /// Secrets (in each job's namespace) worker pods pull their image with (comma-separated).
        #[arg(long, env = "FERRY_WORKER_IMAGE_PULL_SECRETS", value_delimiter = ',')]
        worker_image_pull_secrets: Vec<String>,
    },
    /// Run one step of a SyncJob inside its pod: the operator starts these.
    Worker {
        /// What to run.
        #[arg(value_enum)]
        task: ferry::worker::Task,
        /// The SyncJob, as NAMESPACE/NAME.
        #[arg(long)]
        job: String,
        /// Address of the worker's `/metrics`.
        #[arg(long, env = "FERRY_METRICS_LISTEN", default_value = "0.0.0.0:9464")]
        metrics_listen: std::net::SocketAddr,
    },
    /// Convert a request of another service into Ferry manifests.
    Convert {
        #[command(subcommand)]
        from: Convert,
    },
    /// Print the version.
    Version,
}

#[derive(Subcommand)]
enum Convert {
    /// A DRS batch-create request body (JSON) into a BatchJob and a Secret skeleton (YAML on
    /// stdout). Fields without a Ferry counterpart are listed on stderr.
    Drs {
        /// The request body.
        file: PathBuf,
        /// Name of the BatchJob (default: the file's name).
        #[arg(long)]
        name: Option<String>,
        /// Namespace of the manifests.
        #[arg(long)]
        namespace: Option<String>,
    },
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    ferry::tls::install_crypto_provider();
    match cli.command {
        Command::Crd { out_dir } => match crd(out_dir) {
            Ok(()) => ExitCode::SUCCESS,
            Err(e) => {
                eprintln!("CRD_RENDER: {e}");
                ExitCode::from(2)
            }
        },
        Command::Run { file, status_file, release, metrics_listen } => {
            init_tracing();
            let runtime = match tokio::runtime::Runtime::new() {
                Ok(r) => r,
                Err(e) => {
                    eprintln!("RUNTIME: {e}");
                    return ExitCode::from(2);
                }
            };
            if let Some(addr) = metrics_listen
                && let Some(bound) = runtime.block_on(ferry::worker::serve_metrics(addr))
            {
                eprintln!("metrics on http://{bound}/metrics");
            }
            match runtime.block_on(ferry::run::run(ferry::run::Options { file, status_file, release })) {
                Ok(ferry::run::Finished::Synced) => ExitCode::SUCCESS,
                Ok(ferry::run::Finished::Compared(ferry::api::CompareResult::Consistent)) => ExitCode::SUCCESS,
                Ok(ferry::run::Finished::Compared(ferry::api::CompareResult::Inconsistent)) => ExitCode::from(1),
                Err(e) => {
                    println!("{e}");
                    ExitCode::from(2)
                }
            }
        }
        Command::Operator {
            listen,
            no_leader_election,
            namespace,
            identity,
            image,
            allowed_worker_images,
            allowed_toleration_keys,
            allowed_node_selector_keys,
            worker_image_pull_secrets,
        } => {
            init_tracing_default("info");
            let identity = identity
                .or_else(|| std::env::var("HOSTNAME").ok())
                .unwrap_or_else(|| format!("ferry-operator-{}", std::process::id()));
            let nonempty = |list: Vec<String>| -> Vec<String> {
                list.into_iter().map(|s| s.trim().to_owned()).filter(|s| !s.is_empty()).collect()
            };
            let mut policy = ferry::controller::policy::WorkerPolicy::new(image);
            policy.allowed_images = nonempty(allowed_worker_images);
            policy.allowed_toleration_keys = nonempty(allowed_toleration_keys);
            if let Some(keys) = allowed_node_selector_keys {
                policy.allowed_node_selector_keys = nonempty(keys);
            }
            policy.image_pull_secrets = nonempty(worker_image_pull_secrets);
            tracing::info!(
                default_image = %policy.default_image,
                allowed_images = ?policy.allowed_images,
                allowed_toleration_keys = ?policy.allowed_toleration_keys,
                allowed_node_selector_keys = ?policy.allowed_node_selector_keys,
                "what jobs may ask of their worker pods"
            );
            let opts =
                ferry::operator::Options { listen, leader_election: !no_leader_election, namespace, identity, policy };
            match tokio::runtime::Runtime::new()
                .map_err(|e| e.to_string())
                .and_then(|r| r.block_on(ferry::operator::run(opts)).map_err(|e| e.to_string()))
            {
                Ok(()) => ExitCode::SUCCESS,
                Err(e) => {
                    eprintln!("OPERATOR: {e}");
                    ExitCode::from(2)
                }
            }
        }
        Command::Worker { task, job, metrics_listen } => {
            init_tracing_default("info");
            let result = tokio::runtime::Runtime::new()
                .map_err(|e| ferry::worker::WorkerError { code: "RUNTIME".into(), message: e.to_string() })
                .and_then(|r| {
                    r.block_on(async {
                        let client = kube::Client::try_default().await.map_err(|e| ferry::worker::WorkerError {
                            code: "KUBE_CONFIG".into(),
                            message: e.to_string(),
                        })?;
                        ferry::worker::serve_metrics(metrics_listen).await;
                        let stop = ferry::signals::stop_flag();
                        ferry::worker::run(client, task, &job, ferry::worker::credentials_from_env(), stop).await
                    })
                });
            match result {
                Ok(()) => ExitCode::SUCCESS,
                Err(e) => {
                    let line = e.line();
                    ferry::worker::write_termination(&line);
                    eprintln!("{line}");
                    ExitCode::from(2)
                }
            }
        }
        Command::Convert { from: Convert::Drs { file, name, namespace } } => {
            let name = name.unwrap_or_else(|| {
                file.file_stem().map(|s| s.to_string_lossy().into_owned()).unwrap_or_else(|| "batch".into())
            });
            let result = std::fs::read_to_string(&file)
                .map_err(|e| format!("CONVERT_INPUT: reading {}: {e}", file.display()))
                .and_then(|body| {
                    ferry::convert::drs(&body, &name, namespace.as_deref()).map_err(|e| format!("CONVERT: {e}"))
                })
                .and_then(|c| c.to_yaml().map(|y| (y, c.dropped)).map_err(|e| format!("CONVERT: {e}")));
            match result {
                Ok((yaml, dropped)) => {
                    print!("{yaml}");
                    for d in dropped {
                        eprintln!("dropped: {d}");
                    }
                    ExitCode::SUCCESS
                }
                Err(e) => {
                    eprintln!("{e}");
                    ExitCode::from(2)
                }
            }
        }
        Command::Version => {
            println!("ferry {}", env!("CARGO_PKG_VERSION"));
            ExitCode::SUCCESS
        }
    }
}

/// Logs to stderr, filtered by `RUST_LOG` (default: warnings).
fn init_tracing() {
    init_tracing_default("warn");
}

/// Logs to stderr, filtered by `RUST_LOG` (default: `level`); JSON lines when `FERRY_LOG_JSON`
/// is set, for log collectors.
fn init_tracing_default(level: &str) {
    let filter = tracing_subscriber::EnvFilter::try_from_default_env()
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new(level));
    let builder = tracing_subscriber::fmt().with_env_filter(filter).with_writer(std::io::stderr);
    let _ = if std::env::var_os("FERRY_LOG_JSON").is_some() { builder.json().try_init() } else { builder.try_init() };
}

fn crd(out_dir: Option<PathBuf>) -> Result<(), Box<dyn std::error::Error>> {
    match out_dir {
        None => print!("{}", ferry::api::crd::all_yaml()?),
        Some(dir) => {
            std::fs::create_dir_all(&dir)?;
            for (file, crd) in ferry::api::crd::all() {
                let path = dir.join(file);
                std::fs::write(&path, ferry::api::crd::to_yaml(&crd)?)
                    .map_err(|e| format!("writing {}: {e}", path.display()))?;
            }
        }
    }
    Ok(())
}
