//! `ferry run -f` on a CompareTask: a table of results, exit 0 when consistent, 1 when not.

mod support;

use std::process::Command;

use ferry::api::TaskType;
use support::Pair;

fn compare(dir: &std::path::Path, manifest: &str) -> (i32, String) {
    let path = dir.join("compare.yaml");
    std::fs::write(&path, manifest).unwrap();
    let out = Command::new(env!("CARGO_BIN_EXE_ferry")).args(["run", "-f"]).arg(&path).output().unwrap();
    (out.status.code().unwrap_or(-1), String::from_utf8_lossy(&out.stdout).into_owned())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_compare_task_runs_locally_and_exits_like_diff() {
    let pair = Pair::start();
    pair.source()
        .await
        .batch_execute("CREATE TABLE orders (id int PRIMARY KEY, v text); INSERT INTO orders SELECT g, 'v' || g FROM generate_series(1, 3000) g")
        .await
        .unwrap();
    let spec = pair.spec(TaskType::FullTrans, &["orders"]);
    let (_tx, stop) = tokio::sync::watch::channel(false);
    let tracker = ferry::engine::Tracker::new(std::sync::Arc::new(ferry::engine::progress::NoProgress));
    let creds = pair.credentials();
    ferry::engine::run(ferry::engine::Job { id: "test/orders", spec: &spec, credentials: &creds, tracker, stop })
        .await
        .unwrap();
    let task = "---\napiVersion: ferry.dev/v1alpha1\nkind: CompareTask\nmetadata: {name: check, namespace: test}\n\
                spec: {syncJobRef: {name: orders}, type: content}\n";
    let manifest = format!("{}{task}", pair.manifest("orders", &spec));
    let dir = tempfile::tempdir().unwrap();

    let (code, out) = compare(dir.path(), &manifest);
    assert_eq!(code, 0, "{out}");
    assert!(out.contains("public.orders → public.orders") && out.trim_end().ends_with("CONSISTENT"), "{out}");
    assert!(!out.contains(pair.source.password()));

    pair.target().await.batch_execute("UPDATE orders SET v = 'changed' WHERE id = 42").await.unwrap();
    let (code, out) = compare(dir.path(), &manifest);
    assert_eq!(code, 1, "{out}");
    assert!(out.contains("ValuesDiffer  key (42)") && out.trim_end().ends_with("INCONSISTENT"), "{out}");

    let broken = manifest.replace("syncJobRef: {name: orders}", "syncJobRef: {name: nope}");
    let (code, out) = compare(dir.path(), &broken);
    assert_eq!(code, 2, "{out}");
    assert!(out.contains("SyncJob \"nope\" is not in the file"), "{out}");
}
