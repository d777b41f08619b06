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
    /// Run a SyncJob locally, without a cluster: precheck, full transfer, change stream.
    ///
    /// FILE holds the manifests as one would `kubectl apply` them: the Secrets and one SyncJob.
    /// Ctrl-C (or SIGTERM) stops at a checkpoint; running again resumes from it.
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
    },
    /// Print the version.
    Version,
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    match cli.command {
        Command::Crd { out_dir } => match crd(out_dir) {
            Ok(()) => ExitCode::SUCCESS,
            Err(e) => {
                eprintln!("CRD_RENDER: {e}");
                ExitCode::from(2)
            }
        },
        Command::Run { file, status_file, release } => {
            init_tracing();
            let runtime = match tokio::runtime::Runtime::new() {
                Ok(r) => r,
                Err(e) => {
                    eprintln!("RUNTIME: {e}");
                    return ExitCode::from(2);
                }
            };
            match runtime.block_on(ferry::run::run(ferry::run::Options { file, status_file, release })) {
                Ok(()) => ExitCode::SUCCESS,
                Err(e) => {
                    println!("{e}");
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
    let filter = tracing_subscriber::EnvFilter::try_from_default_env()
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("warn"));
    let _ = tracing_subscriber::fmt().with_env_filter(filter).with_writer(std::io::stderr).try_init();
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
