//! `ferry run` reads manifests strictly, as `kubectl apply --validate=strict` does: a field the
//! kind does not have is refused with its path and a suggestion before anything is touched.

use std::process::Command;

/// Two ports nothing listens on: a run that got as far as connecting would fail there instead.
fn closed_ports() -> (u16, u16) {
    let bind = || std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let (a, b) = (bind(), bind());
    (a.local_addr().unwrap().port(), b.local_addr().unwrap().port())
}

/// Secrets and a SyncJob whose endpoints are closed ports, with `policy.ddl` as given and `extra`
/// lines at the end; the SyncJob also misspells `columns`.
fn manifest(ddl: &str, extra: &str) -> String {
    let (port, target) = closed_ports();
    format!(
        r#"apiVersion: v1
kind: Secret
metadata: {{name: pg-creds}}
stringData: {{source-password: a, target-password: b}}
---
apiVersion: ferry.dev/v1alpha1
kind: SyncJob
metadata: {{name: orders}}
spec:
  taskType: FULL_INCR_TRANS
  source: {{engine: postgresql, host: 127.0.0.1, port: {port}, database: shop, user: ferry,
           passwordSecretRef: {{name: pg-creds, key: source-password}}}}
  target: {{engine: postgresql, host: 127.0.0.1, port: {target}, database: shop, user: ferry,
           passwordSecretRef: {{name: pg-creds, key: target-password}}}}
  objects:
    scope: table
    databases:
      - name: shop
        schemas:
          - name: public
            tables: [{{name: orders}}, {{name: items, colums: {{exclude: [note]}}}}]
  policy: {{ddl: {ddl}}}
{extra}"#
    )
}

/// Runs `ferry run -f` on `text`: exit code, stdout, stderr.
fn ferry_run(text: &str) -> (Option<i32>, String, String) {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("job.yaml");
    std::fs::write(&path, text).unwrap();
    let out = Command::new(env!("CARGO_BIN_EXE_ferry")).args(["run", "-f"]).arg(&path).output().unwrap();
    (
        out.status.code(),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

#[test]
fn ferry_run_refuses_a_misnamed_field_before_touching_a_database() {
    let (code, stdout, stderr) = ferry_run(&manifest("{replay: true}", ""));
    assert_eq!(code, Some(2), "{stdout}{stderr}");
    // `ferry run` prints its failure as the last line `CODE: message`, after any phase lines.
    let last = stdout.lines().last().unwrap_or_default();
    assert_eq!(
        last,
        "MANIFEST_INVALID: document 2: SyncJob \
         spec.objects.databases[0].schemas[0].tables[1].colums: unknown field; did you mean columns?; \
         spec.policy.ddl.replay: unknown field; did you mean enabled?",
        "{stdout}{stderr}"
    );
    assert_eq!(stdout.lines().count(), 1, "nothing ran: {stdout}");
    assert!(!stderr.contains("connect"), "no database was touched: {stderr}");
}

#[test]
fn unknown_fields_of_every_document_are_reported_together() {
    let text = manifest("{enabled: true}", "  nodeTyp: small\n")
        .replace("stringData:", "stringdata:")
        .replace("metadata: {name: orders}", "metadata: {name: orders, lables: {a: b}}");
    let (code, stdout, _) = ferry_run(&text);
    assert_eq!(code, Some(2), "{stdout}");
    let last = stdout.lines().last().unwrap_or_default();
    assert_eq!(
        last,
        "MANIFEST_INVALID: document 1: Secret stringdata: unknown field; did you mean stringData?; \
         document 2: SyncJob metadata.lables: unknown field; did you mean labels?; \
         spec.nodeTyp: unknown field; did you mean nodeType?; \
         spec.objects.databases[0].schemas[0].tables[1].colums: unknown field; did you mean columns?"
    );
}

#[test]
fn the_status_of_kubectl_get_output_is_checked_and_otherwise_ignored() {
    // A status with a field no version has is refused like any other…
    let text = manifest("{enabled: true}", "status: {phase: CREATING, progres: {}}\n").replace("colums:", "columns:");
    let (code, stdout, _) = ferry_run(&text);
    assert_eq!(code, Some(2), "{stdout}");
    assert!(stdout.ends_with("status.progres: unknown field; did you mean progress?\n"), "{stdout}");
    // …and a known status is read past: the run starts and fails where a run would, connecting.
    let text = manifest("{enabled: true}", "status: {phase: INCRE_TRANSFER_STARTED}\n").replace("colums:", "columns:");
    let (code, stdout, _) = ferry_run(&text);
    assert_eq!(code, Some(2), "{stdout}");
    assert!(!stdout.contains("MANIFEST_INVALID"), "{stdout}");
    assert!(stdout.contains("CONFIGURATION"), "the run starts from its own status: {stdout}");
}
