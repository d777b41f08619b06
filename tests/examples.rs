//! Every example manifest — in deploy/examples, the README and docs — parses strictly (no field
//! its kind does not have) into its resource and passes `validate()`, and the shape the
//! foundation issue promises is accepted exactly as written. The example jobs run: each against
//! throwaway servers set up as the example says (TLS, a client certificate where it names one),
//! with only hosts, ports, passwords and certificates swapped for the test's, read through the
//! example's own Secrets and ConfigMaps as `ferry run` reads them.

mod my_support;
mod support;

use std::path::Path;
use std::time::{Duration, Instant};

use ferry::api::manifest::{self, Manifest};
use ferry::api::validate::Validate;
use ferry::api::{CompareResult, Endpoint, Engine, SyncJobPhase, TaskType};
use ferry::engine::{EngineError, Outcome, Side};
use ferry::testkit::{MariaDbOptions, MariaDbServer, PostgresOptions, PostgresServer, ServerTls, TLS_HOST, TestPki};
use k8s_openapi::ByteString;

fn check_all(text: &str, origin: &str) -> Vec<Manifest> {
    let docs = manifest::parse(text).unwrap_or_else(|e| panic!("{origin}: {e}"));
    for doc in &docs {
        let errors = match doc {
            Manifest::SyncJob(j) => j.spec.validate(),
            Manifest::CompareTask(c) => c.spec.validate(),
            Manifest::BatchJob(b) => b.spec.validate_named(b.metadata.name.as_deref().unwrap_or("")),
            Manifest::Secret(_) | Manifest::ConfigMap(_) => Vec::new(),
        };
        assert!(errors.is_empty(), "{origin}: {errors:#?}");
    }
    docs
}

#[test]
fn every_example_manifest_is_valid() {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("deploy/examples");
    let mut kinds = Vec::new();
    for entry in std::fs::read_dir(&dir).unwrap() {
        let path = entry.unwrap().path();
        if path.extension().is_some_and(|e| e == "yaml") {
            let text = std::fs::read_to_string(&path).unwrap();
            for doc in check_all(&text, &path.display().to_string()) {
                kinds.push(match doc {
                    Manifest::Secret(_) => "Secret",
                    Manifest::ConfigMap(_) => "ConfigMap",
                    Manifest::SyncJob(_) => "SyncJob",
                    Manifest::CompareTask(_) => "CompareTask",
                    Manifest::BatchJob(_) => "BatchJob",
                });
            }
        }
    }
    for kind in ["Secret", "ConfigMap", "SyncJob", "CompareTask", "BatchJob"] {
        assert!(kinds.contains(&kind), "no example of a {kind}");
    }
}

/// The ```yaml blocks of a Markdown file that are whole manifests of the kinds Ferry reads.
fn manifest_blocks(markdown: &str) -> Vec<String> {
    markdown
        .split("```yaml\n")
        .skip(1)
        .filter_map(|rest| rest.split_once("```").map(|(block, _)| block.to_owned()))
        .filter(|block| block.lines().any(|l| l.starts_with("apiVersion: ferry.dev/")))
        .collect()
}

#[test]
fn every_manifest_in_the_readme_and_docs_is_valid() {
    let root = Path::new(env!("CARGO_MANIFEST_DIR"));
    let mut files = vec![root.join("README.md")];
    for entry in std::fs::read_dir(root.join("docs")).unwrap() {
        let path = entry.unwrap().path();
        if path.extension().is_some_and(|e| e == "md") {
            files.push(path);
        }
    }
    let mut checked = 0;
    for path in files {
        for (i, block) in manifest_blocks(&std::fs::read_to_string(&path).unwrap()).iter().enumerate() {
            check_all(block, &format!("{} block {}", path.display(), i + 1));
            checked += 1;
        }
    }
    assert!(checked >= 2, "the README's SyncJob and docs/batch.md's BatchJob at least; found {checked}");
}

#[test]
fn a_misnamed_field_in_an_example_would_be_refused() {
    let text = std::fs::read_to_string(Path::new(env!("CARGO_MANIFEST_DIR")).join("deploy/examples/mariadb-sync.yaml"))
        .unwrap()
        .replacen("kind: SyncJob\n", "kind: SyncJob\nstatu: {}\n", 1);
    let err = manifest::parse(&text).unwrap_err().to_string();
    assert!(err.contains(": SyncJob statu: unknown field; did you mean status?"), "{err}");
}

#[test]
fn the_batch_example_merges_overrides_into_three_valid_children() {
    let text =
        std::fs::read_to_string(Path::new(env!("CARGO_MANIFEST_DIR")).join("deploy/examples/batch.yaml")).unwrap();
    let Some(Manifest::BatchJob(batch)) = manifest::parse(&text).unwrap().into_iter().next() else {
        panic!("not a BatchJob")
    };
    let children: Vec<_> = batch.spec.jobs.iter().map(|i| batch.spec.child_spec(i).unwrap()).collect();
    assert_eq!(children.len(), 3);
    assert_eq!(children[2].objects.databases[0].name, "tenant_initech");
    assert_eq!(children[2].node_type, ferry::api::NodeType::Medium);
    assert_eq!(children[0].node_type, ferry::api::NodeType::Small, "the template's value where no override");
}

#[test]
fn the_promised_syncjob_shape_is_accepted_as_written() {
    let text = r#"
apiVersion: ferry.dev/v1alpha1
kind: SyncJob
metadata: {name: orders-pg}
spec:
  jobType: sync
  taskType: FULL_INCR_TRANS
  source: {engine: postgresql, host: 127.0.0.1, port: 5432, database: shop, user: ferry,
           passwordSecretRef: {name: pg-creds, key: source-password}}
  target: {engine: postgresql, host: 127.0.0.1, port: 5433, database: shop, user: ferry,
           passwordSecretRef: {name: pg-creds, key: target-password}}
  objects:
    scope: table
    databases:
      - name: shop
        schemas:
          - name: public
            tables: [{name: orders}, {name: order_items, mappedName: items}]
  policy: {conflict: overwrite}
  nodeType: small
"#;
    let docs = check_all(text, "issue shape");
    let Manifest::SyncJob(job) = &docs[0] else { panic!("not a SyncJob") };
    assert_eq!(job.spec.task_type, TaskType::FullIncrTrans);
    assert_eq!(job.spec.source.engine, Engine::Postgresql);
    assert_eq!(job.spec.expired_days, 14, "defaults apply");
    assert!(job.spec.policy.indexes);
    let tables = job.spec.objects.tables(Engine::Postgresql);
    assert_eq!(tables.iter().map(|t| t.target_table()).collect::<Vec<_>>(), ["orders", "items"]);
    assert!(job.status.is_none());
    let _ = SyncJobPhase::Creating;
}

#[test]
fn secrets_are_read_from_string_data_and_data() {
    let text = r#"
apiVersion: v1
kind: Secret
metadata: {name: s}
stringData: {a: plain}
data: {b: c2VjcmV0}
"#;
    let docs = manifest::parse(text).unwrap();
    let Manifest::Secret(s) = &docs[0] else { panic!("not a Secret") };
    assert_eq!(manifest::secret_value(s, "a").as_deref(), Some("plain"));
    assert_eq!(manifest::secret_value(s, "b").as_deref(), Some("secret"));
    assert_eq!(manifest::secret_value(s, "c"), None);
}

#[test]
fn an_unknown_kind_or_a_bad_field_names_the_document() {
    let err = manifest::parse("apiVersion: v1\nkind: Service\n").unwrap_err().to_string();
    assert!(err.contains("document 1") && err.contains("Service"), "{err}");
    let err = manifest::parse("---\napiVersion: v1\nkind: Secret\n---\napiVersion: ferry.dev/v1alpha1\nkind: SyncJob\nmetadata: {name: x}\nspec: {taskType: SOMETIMES}\n")
        .unwrap_err()
        .to_string();
    assert!(err.contains("document 2"), "{err}");
}

fn example(name: &str) -> Vec<Manifest> {
    let path = Path::new(env!("CARGO_MANIFEST_DIR")).join("deploy/examples").join(name);
    manifest::parse(&std::fs::read_to_string(&path).unwrap()).unwrap()
}

/// A test server an example endpoint is pointed at.
struct Server {
    port: u16,
    password: String,
}

/// Points the example's SyncJob at the test servers: host `localhost` (the name in the test
/// certificates), the servers' ports, and the test's passwords, CA and client certificate
/// written into the example's own Secrets and ConfigMaps, under the keys the job names.
fn localize(mut docs: Vec<Manifest>, source: &Server, target: &Server, pki: &TestPki) -> Vec<Manifest> {
    let mut secrets: Vec<(String, String, String)> = Vec::new();
    let mut maps: Vec<(String, String, String)> = Vec::new();
    for doc in &mut docs {
        let Manifest::SyncJob(job) = doc else { continue };
        for (endpoint, server) in [(&mut job.spec.source, source), (&mut job.spec.target, target)] {
            endpoint.host = TLS_HOST.into();
            endpoint.port = server.port;
            if let Some(r) = &endpoint.password_secret_ref {
                secrets.push((r.name.clone(), r.key.clone(), server.password.clone()));
            }
            let Some(tls) = &endpoint.tls else { continue };
            if let Some(r) = &tls.ca_secret_ref {
                secrets.push((r.name.clone(), r.key.clone(), pki.ca_pem.clone()));
            }
            if let Some(r) = &tls.ca_config_map_ref {
                maps.push((r.name.clone(), r.key.clone(), pki.ca_pem.clone()));
            }
            if let Some(r) = &tls.client_cert_secret_ref {
                secrets.push((r.name.clone(), r.cert_key.clone(), pki.client_cert_pem.clone()));
                secrets.push((r.name.clone(), r.key_key.clone(), pki.client_key_pem.clone()));
            }
        }
    }
    for doc in &mut docs {
        match doc {
            Manifest::Secret(s) => {
                for (name, key, value) in &secrets {
                    if s.metadata.name.as_deref() == Some(name.as_str()) {
                        s.string_data.get_or_insert_default().remove(key);
                        s.data.get_or_insert_default().insert(key.clone(), ByteString(value.clone().into_bytes()));
                    }
                }
            }
            Manifest::ConfigMap(m) => {
                for (name, key, value) in &maps {
                    if m.metadata.name.as_deref() == Some(name.as_str()) {
                        m.data.get_or_insert_default().insert(key.clone(), value.clone());
                    }
                }
            }
            _ => {}
        }
    }
    docs
}

/// How a server must be set up for an example endpoint: TLS required when the endpoint uses
/// it, a client certificate required when it names one.
fn server_tls(endpoint: &Endpoint, pki: &TestPki) -> Option<ServerTls> {
    let tls = endpoint.tls.as_ref()?;
    Some(if tls.client_cert_secret_ref.is_some() {
        pki.server_requiring_client_certs()
    } else {
        ServerTls { require_tls: true, ..pki.server() }
    })
}

fn sync_job(docs: &[Manifest]) -> ferry::api::SyncJob {
    docs.iter()
        .find_map(|d| match d {
            Manifest::SyncJob(j) => Some((**j).clone()),
            _ => None,
        })
        .expect("a SyncJob")
}

type JobHandle = tokio::task::JoinHandle<Result<Outcome, EngineError>>;

/// Loads the localized file as `ferry run` does and starts its job.
fn start(
    docs: Vec<Manifest>,
) -> (ferry::api::SyncJob, ferry::engine::Credentials, tokio::sync::watch::Sender<bool>, JobHandle) {
    let (job, credentials) = ferry::run::load(docs).expect("the example's references resolve");
    let (stop_tx, stop) = tokio::sync::watch::channel(false);
    let (spec, creds) = (job.spec.clone(), credentials.clone());
    let handle = tokio::spawn(async move {
        let tracker = ferry::engine::Tracker::new(std::sync::Arc::new(ferry::engine::progress::NoProgress));
        ferry::engine::run(ferry::engine::Job { id: "examples/job", spec: &spec, credentials: &creds, tracker, stop })
            .await
    });
    (job, credentials, stop_tx, handle)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_postgres_example_job_and_the_compare_example_run_over_tls() {
    let pki = TestPki::new("ferry").unwrap();
    let docs = example("postgres-sync.yaml");
    let shipped = sync_job(&docs);
    let start_pg = |endpoint: &Endpoint| {
        let opts = PostgresOptions { tls: server_tls(endpoint, &pki), ..Default::default() };
        let server = PostgresServer::start_with(opts).unwrap();
        server.create_database("shop").unwrap();
        server
    };
    let (source, target) = (start_pg(&shipped.spec.source), start_pg(&shipped.spec.target));
    let server = |s: &PostgresServer| Server { port: s.port(), password: s.password().into() };
    let docs = localize(docs, &server(&source), &server(&target), &pki);
    let (job, credentials) = ferry::run::load(docs.clone()).unwrap();
    let spec = &job.spec;
    let src = ferry::engine::postgres::connect::connect(&spec.source, credentials.login(Side::Source), Side::Source)
        .await
        .unwrap();
    // The tables the example selects: its row filter (orders since 2024) and its column list
    // (order_items without internal_note, renamed to items) apply.
    src.batch_execute(
        "CREATE TABLE public.orders (id bigint PRIMARY KEY, created_at date NOT NULL, total numeric(12,2)); \
         CREATE TABLE public.order_items (order_id bigint, line int, sku text, internal_note text, \
                                          PRIMARY KEY (order_id, line)); \
         INSERT INTO public.orders SELECT g, DATE '2023-10-01' + g % 400, g * 1.5 FROM generate_series(1, 4000) g; \
         INSERT INTO public.order_items SELECT g % 4000 + 1, g, 'sku' || g, 'private' FROM generate_series(1, 8000) g;",
    )
    .await
    .unwrap();
    let (_, _, stop_tx, handle) = start(docs.clone());
    let deadline = Instant::now() + Duration::from_secs(90);
    let mut compare_docs = docs;
    compare_docs.extend(example("compare.yaml"));
    let mut changed = false;
    loop {
        assert!(!handle.is_finished(), "the job ended: {:?}", handle.await.unwrap());
        if !changed {
            src.batch_execute(
                "INSERT INTO public.orders VALUES (9001, DATE '2025-02-01', 10), (9002, DATE '2020-01-01', 20); \
                 UPDATE public.orders SET total = 0 WHERE id <= 50; DELETE FROM public.orders WHERE id BETWEEN 60 AND 70; \
                 UPDATE public.order_items SET sku = 'changed', internal_note = 'still private' WHERE line <= 30;",
            )
            .await
            .unwrap();
            changed = true;
        }
        // The compare example, run as `ferry run` runs it, for this job: it compares with the
        // job's filter and columns applied.
        match ferry::run::compare::run(compare_docs.clone()).await {
            Ok(CompareResult::Consistent) => break,
            other => assert!(Instant::now() < deadline, "the target never matched: {other:?}"),
        }
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
    let _ = stop_tx.send(true);
    let outcome = handle.await.unwrap();
    assert!(matches!(outcome, Ok(Outcome::Stopped)), "{outcome:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_mariadb_example_job_runs_over_tls_with_a_client_certificate() {
    let pki = TestPki::new("ferry").unwrap();
    let docs = example("mariadb-sync.yaml");
    let shipped = sync_job(&docs);
    let start_maria = |endpoint: &Endpoint| {
        MariaDbServer::start_with(MariaDbOptions { tls: server_tls(endpoint, &pki), ..Default::default() }).unwrap()
    };
    let (source, target) = (start_maria(&shipped.spec.source), start_maria(&shipped.spec.target));
    let server = |s: &MariaDbServer| Server { port: s.port(), password: s.password().into() };
    let docs = localize(docs, &server(&source), &server(&target), &pki);
    let (job, credentials) = ferry::run::load(docs.clone()).unwrap();
    let connect = |side: Side| {
        let ep = if side == Side::Source { job.spec.source.clone() } else { job.spec.target.clone() };
        let creds = credentials.clone();
        async move { ferry::engine::mysql::connect::connect(&ep, creds.login(side), side).await.unwrap() }
    };
    let mut src = connect(Side::Source).await;
    my_support::exec_each(
        &mut src,
        "CREATE DATABASE inventory; CREATE DATABASE sales; \
         CREATE TABLE inventory.items (id int PRIMARY KEY, name varchar(40)); \
         CREATE TABLE inventory.stock (item_id int PRIMARY KEY, qty int); \
         CREATE TABLE sales.invoices (id int PRIMARY KEY, total decimal(10,2)); \
         CREATE TABLE sales.invoice_lines (invoice_id int, line int, amount decimal(10,2), PRIMARY KEY (invoice_id, line)); \
         CREATE TABLE sales.not_selected (id int PRIMARY KEY); \
         INSERT INTO inventory.items SELECT seq, CONCAT('item', seq) FROM sales.seq_1_to_2000; \
         INSERT INTO inventory.stock SELECT seq, seq % 17 FROM sales.seq_1_to_2000; \
         INSERT INTO sales.invoices SELECT seq, seq * 2.5 FROM sales.seq_1_to_1000; \
         INSERT INTO sales.invoice_lines SELECT seq % 1000 + 1, seq, 1.25 FROM sales.seq_1_to_3000;",
    )
    .await;
    let (_, _, stop_tx, mut handle) = start(docs);
    let mut tgt = connect(Side::Target).await;
    my_support::wait_streaming(&mut tgt, &mut handle).await;
    // Changes, and a table created in the wholly selected database (DDL replay is on).
    my_support::exec_each(
        &mut src,
        "UPDATE inventory.stock SET qty = 0 WHERE item_id <= 100; DELETE FROM inventory.items WHERE id > 1990; \
         INSERT INTO sales.invoice_lines VALUES (1, 9001, 3.00); \
         CREATE TABLE inventory.locations (id int PRIMARY KEY, name varchar(20)); \
         INSERT INTO inventory.locations VALUES (1, 'north'), (2, 'south');",
    )
    .await;
    for (s, t) in [
        ("inventory.items", "inventory.items"),
        ("inventory.stock", "inventory.stock"),
        ("inventory.locations", "inventory.locations"),
        ("sales.invoices", "sales.invoices"),
        ("sales.invoice_lines", "sales.lines"),
    ] {
        let deadline = Instant::now() + Duration::from_secs(60);
        loop {
            let want = my_support::rows(&mut src, s).await;
            let have = my_support::try_rows(&mut tgt, t).await.unwrap_or_default();
            if want == have {
                break;
            }
            assert!(!handle.is_finished(), "the job ended: {:?}", handle.await.unwrap());
            assert!(Instant::now() < deadline, "{s} → {t}: {} rows vs {}", want.len(), have.len());
            tokio::time::sleep(Duration::from_millis(200)).await;
        }
    }
    assert!(my_support::try_rows(&mut tgt, "sales.not_selected").await.is_err(), "an unselected table stays away");
    let _ = stop_tx.send(true);
    let outcome = handle.await.unwrap();
    assert!(matches!(outcome, Ok(Outcome::Stopped)), "{outcome:?}");
}
