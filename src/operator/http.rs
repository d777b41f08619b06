//! `/metrics`, `/healthz` and `/readyz` on one port: a small HTTP/1.1 responder on a TCP
//! listener (three GET routes need no framework).

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpListener;

/// What the endpoints report.
pub struct Health {
    /// Renders `/metrics`.
    pub metrics: Box<dyn Fn() -> String + Send + Sync>,
    /// `/readyz` answers 200 once this is true.
    pub ready: AtomicBool,
}

fn response(status: &str, content_type: &str, body: &str) -> String {
    format!(
        "HTTP/1.1 {status}\r\ncontent-type: {content_type}\r\ncontent-length: {}\r\nconnection: close\r\n\r\n{body}",
        body.len()
    )
}

/// The response to a request line's path.
pub fn route(path: &str, health: &Health) -> String {
    match path {
        "/metrics" => response("200 OK", "text/plain; version=0.0.4; charset=utf-8", &(health.metrics)()),
        "/healthz" => response("200 OK", "text/plain", "ok\n"),
        "/readyz" if health.ready.load(Ordering::SeqCst) => response("200 OK", "text/plain", "ready\n"),
        "/readyz" => response("503 Service Unavailable", "text/plain", "starting\n"),
        _ => response("404 Not Found", "text/plain", "not found\n"),
    }
}

/// Serves the endpoints on `listener` until the task is dropped.
pub async fn serve(listener: TcpListener, health: Arc<Health>) {
    loop {
        let Ok((mut stream, _)) = listener.accept().await else { continue };
        let health = Arc::clone(&health);
        tokio::spawn(async move {
            let mut buf = vec![0u8; 4096];
            let n = match tokio::time::timeout(std::time::Duration::from_secs(5), stream.read(&mut buf)).await {
                Ok(Ok(n)) => n,
                _ => return,
            };
            let request = String::from_utf8_lossy(&buf[..n]);
            let path = request.split_whitespace().nth(1).unwrap_or("/");
            let path = path.split('?').next().unwrap_or(path);
            let _ = stream.write_all(route(path, &health).as_bytes()).await;
            let _ = stream.shutdown().await;
        });
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn the_three_endpoints_answer_over_tcp() {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let metrics = Arc::new(super::super::metrics::Metrics::default());
        drop(metrics.reconcile("syncjob"));
        let health = Arc::new(Health { metrics: Box::new(move || metrics.encode()), ready: AtomicBool::new(false) });
        tokio::spawn(serve(listener, Arc::clone(&health)));
        let get = |path: &'static str| async move {
            let mut s = tokio::net::TcpStream::connect(addr).await.unwrap();
            s.write_all(format!("GET {path} HTTP/1.1\r\nhost: x\r\n\r\n").as_bytes()).await.unwrap();
            let mut out = String::new();
            s.read_to_string(&mut out).await.unwrap();
            out
        };
        assert!(get("/healthz").await.starts_with("HTTP/1.1 200"));
        assert!(get("/readyz").await.starts_with("HTTP/1.1 503"));
        health.ready.store(true, Ordering::SeqCst);
        assert!(get("/readyz").await.starts_with("HTTP/1.1 200"));
        assert!(get("/metrics").await.contains("ferry_reconcile_runs_total{controller=\"syncjob\"} 1"));
        assert!(get("/nope").await.starts_with("HTTP/1.1 404"));
    }
}
