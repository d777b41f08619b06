//! The pod runner: plays the node for the pods the operator creates. It watches them, runs each
//! container's command as a local `ferry` process with the pod's environment — every
//! `secretKeyRef` resolved through the API, and a kubeconfig carrying a bound token of the pod's
//! own ServiceAccount, so the worker's RBAC is exercised for real — and writes the pod's status
//! back as a kubelet would: Running, then Succeeded or Failed with the exit code and the
//! termination message (the log's tail when the message is empty, as `FallbackToLogsOnError`
//! has it). A pod deleted while its process runs gets SIGTERM, then SIGKILL after its grace
//! period.

use std::collections::HashMap;
use std::path::PathBuf;
use std::time::Duration;

use futures::StreamExt;
use k8s_openapi::api::core::v1::{ConfigMap, Pod, Secret};
use kube::api::{Api, Patch, PatchParams};
use kube::runtime::WatchStreamExt;
use kube::runtime::watcher::{self, Event};
use kube::{Client, ResourceExt};
use serde_json::json;

use super::harness::{ClusterAccess, Pids, dies_with_us, token};

fn now() -> String {
    jiff::Timestamp::now().to_string()
}

/// Runs until the process ends.
pub async fn run(client: Client, access: ClusterAccess, logs: PathBuf, pids: Pids) {
    let pods: Api<Pod> = Api::all(client.clone());
    let config = watcher::Config::default().labels("app.kubernetes.io/managed-by=ferry-operator");
    let mut events = watcher::watcher(pods, config).default_backoff().boxed();
    let mut started: HashMap<String, String> = HashMap::new();
    while let Some(event) = events.next().await {
        let pod = match event {
            Ok(Event::Apply(p) | Event::InitApply(p)) => p,
            Ok(Event::Delete(p)) => {
                stop(&pids, &key(&p));
                continue;
            }
            Ok(_) => continue,
            Err(e) => {
                eprintln!("e2e runner: watch: {e}");
                continue;
            }
        };
        let uid = pod.uid().unwrap_or_default();
        if pod.metadata.deletion_timestamp.is_some() {
            stop(&pids, &key(&pod));
            continue;
        }
        let phase = pod.status.as_ref().and_then(|s| s.phase.clone());
        if started.contains_key(&uid) || !matches!(phase.as_deref(), None | Some("Pending")) {
            continue;
        }
        started.insert(uid, key(&pod));
        let (client, access, logs, pids) = (client.clone(), access.clone(), logs.clone(), pids.clone());
        tokio::spawn(async move {
            let name = key(&pod);
            if let Err(e) = run_pod(client, access, logs, pids, pod).await {
                eprintln!("e2e runner: pod {name}: {e}");
            }
        });
    }
}

fn key(pod: &Pod) -> String {
    format!("{}/{}", pod.namespace().unwrap_or_default(), pod.name_any())
}

/// SIGTERM now, SIGKILL after 30 s, to the process of `pod`.
fn stop(pids: &Pids, pod: &str) {
    let Some(pid) = pids.lock().unwrap().get(pod).copied() else { return };
    // SAFETY: signalling a child we started.
    unsafe { libc::kill(pid as i32, libc::SIGTERM) };
    let pids = pids.clone();
    let pod = pod.to_owned();
    tokio::spawn(async move {
        tokio::time::sleep(Duration::from_secs(30)).await;
        if pids.lock().unwrap().get(&pod) == Some(&pid) {
            // SAFETY: as above.
            unsafe { libc::kill(pid as i32, libc::SIGKILL) };
        }
    });
}

async fn status(pods: &Api<Pod>, name: &str, status: serde_json::Value) {
    if let Err(e) = pods.patch_status(name, &PatchParams::default(), &Patch::Merge(&json!({"status": status}))).await {
        // A pod deleted meanwhile has no status to write.
        if !matches!(&e, kube::Error::Api(s) if s.code == 404) {
            eprintln!("e2e runner: status of pod {name}: {e}");
        }
    }
}

async fn run_pod(client: Client, access: ClusterAccess, logs: PathBuf, pids: Pids, pod: Pod) -> Result<(), String> {
    let namespace = pod.namespace().unwrap_or_default();
    let name = pod.name_any();
    let pods: Api<Pod> = Api::namespaced(client.clone(), &namespace);
    let spec = pod.spec.clone().ok_or("no spec")?;
    let container = spec.containers.first().cloned().ok_or("no container")?;

    // The environment, with each secretKeyRef read through the API; a missing Secret leaves the
    // pod waiting, as a kubelet does.
    let secrets: Api<Secret> = Api::namespaced(client.clone(), &namespace);
    let mut env: Vec<(String, String)> = Vec::new();
    for var in container.env.clone().unwrap_or_default() {
        if let Some(value) = var.value {
            env.push((var.name, value));
        } else if let Some(r) = var.value_from.and_then(|v| v.secret_key_ref) {
            let value = loop {
                let found = secrets
                    .get_opt(&r.name)
                    .await
                    .ok()
                    .flatten()
                    .and_then(|s| s.data)
                    .and_then(|d| d.get(&r.key).map(|v| String::from_utf8_lossy(&v.0).into_owned()));
                if let Some(v) = found {
                    break v;
                }
                let waiting = json!({"phase": "Pending", "containerStatuses": [{
                    "name": container.name, "image": container.image, "imageID": "", "ready": false,
                    "restartCount": 0, "state": {"waiting": {"reason": "CreateContainerConfigError",
                    "message": format!("secret {:?} or its key {:?} not found", r.name, r.key)}}}]});
                status(&pods, &name, waiting).await;
                if matches!(pods.get_opt(&name).await, Ok(None)) {
                    return Ok(());
                }
                tokio::time::sleep(Duration::from_secs(2)).await;
            };
            env.push((var.name, value));
        }
    }

    // The pod's own ServiceAccount, as a bound token in a kubeconfig.
    let account = spec.service_account_name.clone().unwrap_or_else(|| "default".into());
    // A missing ServiceAccount leaves the pod in ContainerCreating, retried as a kubelet retries
    // the projected token's mount, until the operator creates the account again or the pod goes.
    let mut reported = false;
    let token = loop {
        match token(&client, &namespace, &account).await {
            Ok(token) => break token,
            Err(kube::Error::Api(s)) if s.code == 404 => {
                if !reported {
                    reported = true;
                    let waiting = json!({"phase": "Pending", "containerStatuses": [{
                    "name": container.name, "image": container.image, "imageID": "", "ready": false,
                        "restartCount": 0, "state": {"waiting": {"reason": "ContainerCreating"}}}]});
                    status(&pods, &name, waiting).await;
                }
                if matches!(pods.get_opt(&name).await, Ok(None)) {
                    return Ok(());
                }
                tokio::time::sleep(Duration::from_secs(2)).await;
            }
            Err(e) => return Err(format!("token of {account}: {e}")),
        }
    };
    let dir = logs.join(format!("{namespace}.{name}"));
    std::fs::create_dir_all(&dir).map_err(|e| e.to_string())?;
    let kubeconfig = dir.join("kubeconfig");
    access.write_kubeconfig(&kubeconfig, &token);
    // Projected volumes (TLS files from Secrets and ConfigMaps) are written under the pod's
    // directory, and environment values naming their mount points follow them there.
    let root = dir.join("root");
    let mut mounts = Vec::new();
    for mount in container.volume_mounts.clone().unwrap_or_default() {
        let Some(volume) = spec.volumes.iter().flatten().find(|v| v.name == mount.name) else { continue };
        let Some(projected) = &volume.projected else { continue };
        let target = root.join(mount.mount_path.trim_start_matches('/'));
        std::fs::create_dir_all(&target).map_err(|e| e.to_string())?;
        for source in projected.sources.iter().flatten() {
            let files: Vec<(String, Vec<u8>)> = if let Some(s) = &source.secret {
                let secret = secrets.get(&s.name).await.map_err(|e| format!("Secret {}: {e}", s.name))?;
                let data = secret.data.unwrap_or_default();
                s.items
                    .iter()
                    .flatten()
                    .map(|i| (i.path.clone(), data.get(&i.key).map(|v| v.0.clone()).unwrap_or_default()))
                    .collect()
            } else if let Some(c) = &source.config_map {
                let maps: Api<ConfigMap> = Api::namespaced(client.clone(), &namespace);
                let map = maps.get(&c.name).await.map_err(|e| format!("ConfigMap {}: {e}", c.name))?;
                let data = map.data.unwrap_or_default();
                c.items
                    .iter()
                    .flatten()
                    .map(|i| (i.path.clone(), data.get(&i.key).cloned().unwrap_or_default().into_bytes()))
                    .collect()
            } else {
                Vec::new()
            };
            for (path, bytes) in files {
                std::fs::write(target.join(path), bytes).map_err(|e| e.to_string())?;
            }
        }
        mounts.push(mount.mount_path.clone());
    }
    for (_, value) in env.iter_mut() {
        if value.starts_with('/') && mounts.iter().any(|m| m.starts_with(value.as_str())) {
            *value = root.join(value.trim_start_matches('/')).display().to_string();
        }
    }
    let termination = dir.join("termination-log");
    let log_path = dir.join("log");
    let log = std::fs::File::create(&log_path).map_err(|e| e.to_string())?;

    let mut command = std::process::Command::new(env!("CARGO_BIN_EXE_ferry"));
    command
        .args(container.args.clone().unwrap_or_default())
        .env_clear()
        .env("PATH", std::env::var("PATH").unwrap_or_default())
        .envs(env)
        .env("KUBECONFIG", &kubeconfig)
        .env("FERRY_TERMINATION_LOG", &termination)
        // Every process here shares the host's network: no fixed metrics port.
        .env("FERRY_METRICS_LISTEN", "127.0.0.1:0")
        .env("POD_NAME", &name)
        .env("POD_NAMESPACE", &namespace)
        .stdin(std::process::Stdio::null())
        .stdout(log.try_clone().map_err(|e| e.to_string())?)
        .stderr(log);
    dies_with_us(&mut command);
    let mut child = tokio::process::Command::from(command).spawn().map_err(|e| format!("starting ferry: {e}"))?;
    let pid = child.id().unwrap_or(0);
    pids.lock().unwrap().insert(format!("{namespace}/{name}"), pid);
    let started = now();
    let running = json!({"phase": "Running", "startTime": started,
        "conditions": [{"type": "Ready", "status": "True", "lastTransitionTime": started}],
        "containerStatuses": [{"name": container.name, "image": container.image, "imageID": "", "ready": true,
            "started": true, "restartCount": 0, "state": {"running": {"startedAt": started}}}]});
    status(&pods, &name, running).await;

    let exit = child.wait().await.map_err(|e| e.to_string())?;
    pids.lock().unwrap().remove(&format!("{namespace}/{name}"));
    let code = exit.code().unwrap_or_else(|| 128 + std::os::unix::process::ExitStatusExt::signal(&exit).unwrap_or(0));
    let mut message = std::fs::read_to_string(&termination).unwrap_or_default();
    if message.trim().is_empty() && code != 0 {
        let text = std::fs::read_to_string(&log_path).unwrap_or_default();
        let lines: Vec<&str> = text.lines().collect();
        message = lines[lines.len().saturating_sub(80)..].join("\n");
    }
    let finished = now();
    let (phase, reason) = if code == 0 { ("Succeeded", "Completed") } else { ("Failed", "Error") };
    let terminated = json!({"phase": phase,
        "conditions": [{"type": "Ready", "status": "False", "lastTransitionTime": finished}],
        "containerStatuses": [{"name": container.name, "image": container.image, "imageID": "", "ready": false,
            "started": false, "restartCount": 0, "state": {"terminated": {"exitCode": code, "reason": reason,
            "message": message, "startedAt": started, "finishedAt": finished}}}]});
    status(&pods, &name, terminated).await;
    Ok(())
}
