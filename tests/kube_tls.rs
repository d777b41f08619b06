//! The binary's real Kubernetes client path: a kubeconfig with an `https://` server → a
//! `kube::Client` → a request over TLS, for the operator and the worker entry points.
//!
//! The mocked-API scenarios never build a TLS client, so they could not see that rustls panics
//! when it cannot choose a crypto provider (the operator and every worker died before their
//! first request to a real API server). Here the test stands up a TLS endpoint with a
//! self-signed certificate, points `ferry operator` and `ferry worker` at it, and checks that
//! their requests arrive, carrying the kubeconfig's token.

use std::io::Write;
use std::process::{Child, Command, Stdio};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio_rustls::TlsAcceptor;
use tokio_rustls::rustls::{self, pki_types};

/// What the endpoint saw: one line per request, `METHOD path authorization`.
type Seen = Arc<Mutex<Vec<String>>>;

/// A TLS endpoint on a free loopback port answering every request with a Kubernetes 404
/// `Status`; returns its port, the certificate (PEM) and what it sees.
async fn endpoint() -> (u16, String, Seen) {
    let key = rcgen::generate_simple_self_signed(vec!["127.0.0.1".to_owned(), "localhost".to_owned()])
        .expect("a self-signed certificate");
    let pem = key.cert.pem();
    let provider = Arc::new(rustls::crypto::aws_lc_rs::default_provider());
    let config = rustls::ServerConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .unwrap()
        .with_no_client_auth()
        .with_single_cert(
            vec![key.cert.der().clone()],
            pki_types::PrivateKeyDer::Pkcs8(key.signing_key.serialize_der().into()),
        )
        .expect("a server configuration");
    let acceptor = TlsAcceptor::from(Arc::new(config));
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let port = listener.local_addr().unwrap().port();
    let seen: Seen = Arc::default();
    let recorded = Arc::clone(&seen);
    tokio::spawn(async move {
        loop {
            let Ok((tcp, _)) = listener.accept().await else { return };
            let (acceptor, seen) = (acceptor.clone(), Arc::clone(&recorded));
            tokio::spawn(async move {
                let Ok(mut tls) = acceptor.accept(tcp).await else { return };
                let mut head = Vec::new();
                let mut buf = [0u8; 4096];
                while !head.windows(4).any(|w| w == b"\r\n\r\n") {
                    match tls.read(&mut buf).await {
                        Ok(0) | Err(_) => return,
                        Ok(n) => head.extend_from_slice(&buf[..n]),
                    }
                }
                let head = String::from_utf8_lossy(&head).into_owned();
                let request = head.lines().next().unwrap_or("").to_owned();
                let auth = head
                    .lines()
                    .find_map(|l| {
                        let (k, v) = l.split_once(':')?;
                        k.eq_ignore_ascii_case("authorization").then(|| v.trim().to_owned())
                    })
                    .unwrap_or_default();
                let mut parts = request.split_whitespace();
                let (method, path) = (parts.next().unwrap_or(""), parts.next().unwrap_or(""));
                seen.lock().unwrap().push(format!("{method} {path} {auth}"));
                let body = r#"{"apiVersion":"v1","kind":"Status","status":"Failure","reason":"NotFound","code":404,"message":"not found","metadata":{}}"#;
                let answer = format!(
                    "HTTP/1.1 404 Not Found\r\nContent-Type: application/json\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
                    body.len()
                );
                let _ = tls.write_all(answer.as_bytes()).await;
                let _ = tls.shutdown().await;
            });
        }
    });
    (port, pem, seen)
}

/// A kubeconfig naming the endpoint, trusting its certificate, with a bearer token.
fn kubeconfig(dir: &std::path::Path, port: u16, ca_pem: &str) -> std::path::PathBuf {
    use std::fmt::Write as _;
    // certificate-authority-data is base64, as k8s-openapi serializes bytes.
    let b64 = serde_json::to_value(k8s_openapi::ByteString(ca_pem.as_bytes().to_vec())).unwrap();
    let b64 = b64.as_str().unwrap();
    let mut text = String::new();
    writeln!(
        text,
        "apiVersion: v1\nkind: Config\nclusters:\n- name: local\n  cluster:\n    server: https://127.0.0.1:{port}\n    certificate-authority-data: {b64}\nusers:\n- name: ferry\n  user:\n    token: tls-test-token\ncontexts:\n- name: local\n  context: {{cluster: local, user: ferry, namespace: shop}}\ncurrent-context: local"
    )
    .unwrap();
    let path = dir.join("kubeconfig");
    std::fs::File::create(&path).unwrap().write_all(text.as_bytes()).unwrap();
    path
}

fn ferry(kubeconfig: &std::path::Path, dir: &std::path::Path, args: &[&str]) -> Child {
    Command::new(env!("CARGO_BIN_EXE_ferry"))
        .args(args)
        .env("KUBECONFIG", kubeconfig)
        .env("FERRY_TERMINATION_LOG", dir.join("termination-log"))
        .env("FERRY_METRICS_LISTEN", "127.0.0.1:0")
        .env_remove("KUBERNETES_SERVICE_HOST")
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(std::fs::File::create(dir.join(format!("{}.log", args[0]))).unwrap())
        .spawn()
        .expect("ferry starts")
}

/// Waits until `done` holds for what the endpoint saw, failing with the process's log when the
/// process ends first or the time runs out.
async fn wait_until(child: &mut Child, log: &std::path::Path, seen: &Seen, done: impl Fn(&[String]) -> bool) {
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        if done(&seen.lock().unwrap()) {
            return;
        }
        if let Some(status) = child.try_wait().unwrap() {
            panic!(
                "ferry ended ({status}) before its requests arrived; seen {:?}; log:\n{}",
                seen.lock().unwrap(),
                std::fs::read_to_string(log).unwrap_or_default()
            );
        }
        assert!(
            Instant::now() < deadline,
            "no request arrived in time; seen {:?}; log:\n{}",
            seen.lock().unwrap(),
            std::fs::read_to_string(log).unwrap_or_default()
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_operator_reaches_an_https_api_server_with_its_kubeconfig() {
    let (port, pem, seen) = endpoint().await;
    let dir = tempfile::tempdir().unwrap();
    let config = kubeconfig(dir.path(), port, &pem);
    let mut operator =
        ferry(&config, dir.path(), &["operator", "--listen", "127.0.0.1:0", "--namespace", "ferry-system"]);
    let log = dir.path().join("operator.log");
    // Leader election first: the lease is read over TLS with the kubeconfig's token.
    wait_until(&mut operator, &log, &seen, |s| {
        s.iter().any(|l| l.starts_with("GET /apis/coordination.k8s.io/v1/namespaces/ferry-system/leases/"))
    })
    .await;
    operator.kill().unwrap();
    let _ = operator.wait();
    for line in seen.lock().unwrap().iter() {
        assert!(line.ends_with("Bearer tls-test-token"), "{line}");
    }

    // Without leader election the three controllers list their resources at once.
    let mut operator = ferry(&config, dir.path(), &["operator", "--listen", "127.0.0.1:0", "--no-leader-election"]);
    wait_until(&mut operator, &log, &seen, |s| {
        ["syncjobs", "comparetasks", "batchjobs"]
            .iter()
            .all(|kind| s.iter().any(|l| l.starts_with(&format!("GET /apis/ferry.dev/v1alpha1/{kind}"))))
    })
    .await;
    operator.kill().unwrap();
    let _ = operator.wait();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_worker_reaches_an_https_api_server_and_reports_what_it_answered() {
    let (port, pem, seen) = endpoint().await;
    let dir = tempfile::tempdir().unwrap();
    let config = kubeconfig(dir.path(), port, &pem);
    for task in ["precheck", "sync", "compare"] {
        let mut worker = ferry(&config, dir.path(), &["worker", task, "--job", "shop/orders"]);
        let status = tokio::task::spawn_blocking(move || worker.wait().unwrap()).await.unwrap();
        let log = std::fs::read_to_string(dir.path().join("worker.log")).unwrap();
        // The API's 404 came back over TLS and became the worker's own error; a panic exits 101.
        assert_eq!(status.code(), Some(2), "{task}: {log}");
        let termination = std::fs::read_to_string(dir.path().join("termination-log")).unwrap_or_default();
        assert!(
            termination.starts_with("JOB_NOT_FOUND: ") || termination.starts_with("TASK_NOT_FOUND: "),
            "{task}: {termination}\n{log}"
        );
    }
    let seen = seen.lock().unwrap();
    assert!(
        seen.iter().any(|l| l == "GET /apis/ferry.dev/v1alpha1/namespaces/shop/syncjobs/orders Bearer tls-test-token"),
        "{seen:?}"
    );
    assert!(
        seen.iter().any(|l| l.starts_with("GET /apis/ferry.dev/v1alpha1/namespaces/shop/comparetasks/orders ")),
        "{seen:?}"
    );
}
