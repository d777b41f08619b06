//! `ferry convert drs FILE`: a DRS batch-create request body (`batch-async-create`: `jobs[]` of
//! `base_info`, `source_endpoint`, `target_endpoint`, `policy_config`, `db_object`,
//! `speed_limit`, `alarm_notify`, `node_info`) turned into a BatchJob plus a Secret skeleton.
//!
//! Passwords never come from the JSON: each endpoint gets a key in the Secret to fill in. Fields
//! without a Ferry counterpart (billing, VPC, EIP, tags…) are listed, not silently dropped; an
//! engine, or an engine pair, Ferry does not transfer ([`crate::engine::pairs`]) is an error that
//! names it and the pairs Ferry transfers. A field the request body cannot
//! have ([`request`]) is an error that names it, with its path.

pub mod request;

use serde_json::{Map, Value, json};

use crate::api::batch::BatchJob;
use crate::api::validate::describe;
use crate::api::{Engine, TaskType, strict};
use crate::engine::pairs;

/// Why a request cannot be converted.
#[derive(Debug, thiserror::Error)]
pub enum ConvertError {
    /// Not JSON, or not a batch-create body.
    #[error("not a DRS batch-create request: {0}")]
    Shape(String),
    /// Fields a batch-create request does not have: every one, with its path and a suggestion.
    #[error("DRS request {0}")]
    UnknownFields(String),
    /// An engine, or an engine pair, Ferry does not transfer.
    #[error("jobs[{index}] ({name}): engine_type {engine:?}: {why}")]
    Engine {
        /// Position in `jobs[]`.
        index: usize,
        /// The job's name.
        name: String,
        /// The engine type.
        engine: String,
        /// Why, with the pairs Ferry transfers.
        why: String,
    },
    /// The converted BatchJob does not validate.
    #[error("the converted BatchJob is invalid: {0}")]
    Invalid(String),
}

/// The result of a conversion.
#[derive(Debug)]
pub struct Converted {
    /// The BatchJob.
    pub batch: BatchJob,
    /// The Secret skeleton: one key per endpoint password, to fill in.
    pub secret: Value,
    /// Fields of the request with no Ferry counterpart, as `jobs[i].path: why`.
    pub dropped: Vec<String>,
}

impl Converted {
    /// Both manifests as YAML documents, Secret first.
    pub fn to_yaml(&self) -> Result<String, serde_yaml::Error> {
        Ok(format!("{}---\n{}", serde_yaml::to_string(&self.secret)?, serde_yaml::to_string(&self.batch)?))
    }
}

/// A Kubernetes-safe name: lowercase letters, digits and dashes.
pub fn dns_name(s: &str) -> String {
    let mut out: String =
        s.to_ascii_lowercase().chars().map(|c| if c.is_ascii_alphanumeric() { c } else { '-' }).collect();
    while out.contains("--") {
        out = out.replace("--", "-");
    }
    let out = out.trim_matches('-').chars().take(40).collect::<String>();
    if out.is_empty() { "job".into() } else { out }
}

/// The Ferry engine a DRS engine or `db_type` name stands for.
fn engine(name: &str) -> Result<Engine, String> {
    match name.to_ascii_lowercase().as_str() {
        "mysql" | "taurus" | "gaussdb-mysql" => Ok(Engine::Mysql),
        "mariadb" => Ok(Engine::Mariadb),
        "postgresql" | "postgres" | "pg" => Ok(Engine::Postgresql),
        _ => Err(format!("Ferry has no {name:?} engine; Ferry transfers {}", pairs::describe())),
    }
}

/// (source, target) engines of a DRS `engine_type` (`mysql`, `mysql-to-postgresql`, …; the
/// endpoints' `db_type` refine a single name), if Ferry transfers between them with `task`.
fn engines(
    engine_type: &str,
    source_db: Option<&str>,
    target_db: Option<&str>,
    task: TaskType,
) -> Result<(Engine, Engine), String> {
    let (a, b) = match engine_type.split_once("-to-") {
        Some((a, b)) => (engine(a)?, engine(b)?),
        None => {
            let e = engine(engine_type)?;
            (source_db.map(engine).transpose()?.unwrap_or(e), target_db.map(engine).transpose()?.unwrap_or(e))
        }
    };
    pairs::supported(a, b, task).map_err(|e| e.to_string())?;
    Ok((a, b))
}

/// A string or a number as text.
fn text(v: &Value) -> Option<String> {
    match v {
        Value::String(s) => Some(s.clone()),
        Value::Number(n) => Some(n.to_string()),
        _ => None,
    }
}

fn number(v: &Value) -> Option<u64> {
    text(v).and_then(|s| s.trim().parse().ok())
}

/// Converts one endpoint; its password becomes key `key` of Secret `secret`.
fn endpoint(v: &Value, engine: Engine, secret: &str, key: &str, at: &str, dropped: &mut Vec<String>) -> Value {
    let e = &v["endpoint"];
    let mut out = Map::new();
    out.insert("engine".into(), json!(engine));
    match (e.get("ip").and_then(text), e.get("instance_id").and_then(text)) {
        (Some(ip), _) => {
            out.insert("host".into(), json!(ip));
        }
        (None, Some(instance)) => {
            dropped.push(format!(
                "{at}.endpoint.instance_id: a cloud instance id, used as host {instance:?}; replace it with the database's address"
            ));
            out.insert("host".into(), json!(dns_name(&instance)));
        }
        (None, None) => {
            dropped.push(format!("{at}.endpoint: no ip; host set to REPLACE-ME"));
            out.insert("host".into(), json!("replace-me"));
        }
    }
    let default_port = match engine {
        Engine::Postgresql => 5432,
        Engine::Mysql | Engine::Mariadb => 3306,
    };
    out.insert("port".into(), json!(e.get("db_port").and_then(number).unwrap_or(default_port)));
    if let Some(db) = e.get("db_name").and_then(text) {
        out.insert("database".into(), json!(db));
    }
    if let Some(user) = e.get("db_user").and_then(text) {
        out.insert("user".into(), json!(user));
    }
    out.insert("passwordSecretRef".into(), json!({"name": secret, "key": key}));
    if v["ssl"]["ssl_link"] == json!(true) {
        out.insert("tls".into(), json!({"mode": "require"}));
        dropped.push(format!("{at}.ssl: certificates are not carried over; add tls.caSecretRef for verify-ca"));
    }
    for (field, why) in [
        ("endpoint_type", "Ferry connects to any reachable address"),
        ("cloud", "cloud region and project have no counterpart"),
        ("vpc", "VPC, subnet and security group are the cluster's network"),
    ] {
        if v.get(field).is_some() {
            dropped.push(format!("{at}.{field}: {why}"));
        }
    }
    if e.get("db_password").is_some() {
        dropped.push(format!(
            "{at}.endpoint.db_password: never taken from the request; fill in key {key} of Secret {secret}"
        ));
    }
    Value::Object(out)
}

/// Converts `db_object` into `objects`.
fn objects(v: &Value, engine: Engine, at: &str, dropped: &mut Vec<String>) -> Value {
    let scope = v.get("object_scope").and_then(text).unwrap_or_else(|| "table".into());
    let mut out = Map::new();
    out.insert("scope".into(), json!(if scope == "instance" { "all" } else { scope.as_str() }));
    if let Some(db) = v["target_root_db"].get("db_name").and_then(text) {
        out.insert("targetDatabase".into(), json!(db));
    }
    if v["target_root_db"].get("db_encoding").is_some() {
        dropped.push(format!("{at}.target_root_db.db_encoding: the target keeps each table's own character set"));
    }
    let mut databases = Vec::new();
    if let Some(info) = v.get("object_info").and_then(Value::as_object) {
        for (key, db) in info {
            let name = db.get("name").and_then(text).unwrap_or_else(|| key.clone());
            let all = db.get("all") == Some(&json!(true));
            let tables: Vec<Value> = db
                .get("tables")
                .and_then(Value::as_object)
                .map(|t| {
                    t.iter()
                        .map(|(k, tv)| {
                            let mut table = json!({"name": tv.get("name").and_then(text).unwrap_or_else(|| k.clone())});
                            if let Some(mapped) = tv.get("mapped_name").and_then(text) {
                                table["mappedName"] = json!(mapped);
                            }
                            table
                        })
                        .collect()
                })
                .unwrap_or_default();
            let mut d = json!({"name": name});
            if all {
                d["all"] = json!(true);
            } else if engine.has_schemas() {
                // PostgreSQL tables live in schemas; DRS names them under the database.
                d["schemas"] = json!([{"name": "public", "tables": tables}]);
            } else {
                d["tables"] = json!(tables);
            }
            databases.push(d);
        }
    }
    out.insert("databases".into(), Value::Array(databases));
    Value::Object(out)
}

/// Converts one `jobs[i]` into a SyncJob spec (JSON), its item name and its Secret keys.
fn job(
    i: usize,
    v: &Value,
    secret: &str,
    dropped: &mut Vec<String>,
) -> Result<(String, Value, Vec<String>), ConvertError> {
    let at = format!("jobs[{i}]");
    let base = &v["base_info"];
    let name = base.get("name").and_then(text).unwrap_or_else(|| format!("job-{i}"));
    let item = dns_name(&name);
    let engine_type = base.get("engine_type").and_then(text).unwrap_or_default();
    let db_type = |side: &str| v[side].get(0).and_then(|e| e.get("db_type")).and_then(Value::as_str);
    // What the job's spec will say (FULL_INCR_TRANS when DRS gives none), for the pair's check.
    let task = match base.get("task_type").and_then(text) {
        Some(t) => serde_json::from_value(json!(t)).unwrap_or_default(),
        None => TaskType::default(),
    };
    let (src_engine, tgt_engine) = engines(&engine_type, db_type("source_endpoint"), db_type("target_endpoint"), task)
        .map_err(|why| ConvertError::Engine { index: i, name: name.clone(), engine: engine_type.clone(), why })?;
    let (src_key, tgt_key) = (format!("{item}-source-password"), format!("{item}-target-password"));
    let mut spec = Map::new();
    if let Some(t) = base.get("job_type").and_then(text) {
        let t = match t.as_str() {
            "sync" => "sync",
            "cloudDataGuard" | "disaster_recovery" => "disasterRecovery",
            _ => "migration",
        };
        spec.insert("jobType".into(), json!(t));
    }
    if let Some(t) = base.get("task_type").and_then(text) {
        spec.insert("taskType".into(), json!(t));
    }
    if let Some(d) = base.get("description").and_then(text).filter(|d| !d.is_empty()) {
        spec.insert("description".into(), json!(d));
    }
    if let Some(days) = base.get("expired_days").and_then(number) {
        spec.insert("expiredDays".into(), json!(days));
    }
    for (field, why) in [
        ("net_type", "network type (EIP, VPN, VPC) is the cluster's network"),
        ("charging_mode", "billing has no counterpart"),
        ("enterprise_project_id", "enterprise projects have no counterpart; use namespaces"),
        ("tags", "tags have no counterpart; add labels to the BatchJob"),
        ("job_direction", "direction is implied by source and target"),
    ] {
        if base.get(field).is_some() {
            dropped.push(format!("{at}.base_info.{field}: {why}"));
        }
    }
    let source = v["source_endpoint"].get(0).cloned().unwrap_or(Value::Null);
    let mut target = v["target_endpoint"].get(0).cloned().unwrap_or(Value::Null);
    let source_db = source["endpoint"].get("db_name").cloned();
    if tgt_engine == Engine::Postgresql
        && target["endpoint"].get("db_name").is_none()
        && let Some(db) = source_db
        && let Some(e) = target.get_mut("endpoint").and_then(Value::as_object_mut)
    {
        // A PostgreSQL target needs a database to connect to; DRS names only the instance.
        dropped.push(format!("{at}.target_endpoint[0].endpoint: no db_name; the source's ({db}) is used"));
        e.insert("db_name".into(), db);
    }
    spec.insert(
        "source".into(),
        endpoint(&source, src_engine, secret, &src_key, &format!("{at}.source_endpoint[0]"), dropped),
    );
    spec.insert(
        "target".into(),
        endpoint(&target, tgt_engine, secret, &tgt_key, &format!("{at}.target_endpoint[0]"), dropped),
    );
    if let Some(o) = v.get("db_object") {
        spec.insert("objects".into(), objects(o, src_engine, &format!("{at}.db_object"), dropped));
    }
    let policy = &v["policy_config"];
    let mut p = Map::new();
    if let Some(ddl) = policy.get("ddl_trans").and_then(Value::as_bool) {
        p.insert("ddl".into(), json!({"enabled": ddl}));
    }
    if let Some(c) = policy.get("conflict_policy").and_then(text) {
        p.insert("conflict".into(), json!(c));
    }
    if !p.is_empty() {
        spec.insert("policy".into(), Value::Object(p));
    }
    if let Some(limits) = v.get("speed_limit").and_then(Value::as_array) {
        let limits: Vec<Value> = limits
            .iter()
            .map(|l| {
                json!({"begin": l.get("begin").and_then(text).unwrap_or_default(),
                       "end": l.get("end").and_then(text).unwrap_or_default(),
                       "mbPerSecond": l.get("speed").and_then(number).unwrap_or(1)})
            })
            .collect();
        spec.insert("speedLimits".into(), Value::Array(limits));
    }
    let alarm = &v["alarm_notify"];
    let mut a = Map::new();
    for (from, to) in [("delay_time", "delaySeconds"), ("rpo_delay", "rpoSeconds"), ("rto_delay", "rtoSeconds")] {
        if let Some(n) = alarm.get(from).and_then(number).filter(|n| *n > 0) {
            a.insert(to.into(), json!(n));
        }
    }
    if !a.is_empty() {
        spec.insert("alarm".into(), Value::Object(a));
    }
    for field in ["alarm_to_user", "topic_urn", "subscriptions"] {
        if alarm.get(field).is_some() {
            dropped.push(format!("{at}.alarm_notify.{field}: notifications go through Events and Prometheus alerts"));
        }
    }
    if let Some(node) = v["node_info"]["spec"].get("node_type").and_then(text) {
        spec.insert("nodeType".into(), json!(node));
    }
    Ok((item, Value::Object(spec), vec![src_key, tgt_key]))
}

/// Converts a batch-create request body into a BatchJob named `name` (in `namespace`, when
/// given) and its Secret skeleton.
pub fn drs(body: &str, name: &str, namespace: Option<&str>) -> Result<Converted, ConvertError> {
    let v: Value = serde_json::from_str(body).map_err(|e| ConvertError::Shape(e.to_string()))?;
    let unknown = strict::unknown_fields(&v, request::schema(), "");
    if !unknown.is_empty() {
        return Err(ConvertError::UnknownFields(describe(&unknown)));
    }
    let jobs = v.get("jobs").and_then(Value::as_array).ok_or_else(|| ConvertError::Shape("no jobs[]".into()))?;
    let batch_name = dns_name(name);
    let secret_name = format!("{batch_name}-credentials");
    let mut dropped = Vec::new();
    let mut items = Vec::new();
    let mut keys = Vec::new();
    for (i, j) in jobs.iter().enumerate() {
        let (item, spec, k) = job(i, j, &secret_name, &mut dropped)?;
        items.push((item, spec));
        keys.extend(k);
    }
    // What every item shares goes into the template; the rest stays in each item's overrides.
    let mut template = Map::new();
    if let Some((_, first)) = items.first()
        && let Some(first) = first.as_object()
    {
        for (k, val) in first {
            if items.iter().all(|(_, s)| s.get(k) == Some(val)) {
                template.insert(k.clone(), val.clone());
            }
        }
    }
    let jobs: Vec<Value> = items
        .into_iter()
        .map(|(item, spec)| {
            let overrides: Map<String, Value> = spec
                .as_object()
                .into_iter()
                .flatten()
                .filter(|(k, _)| !template.contains_key(*k))
                .map(|(k, v)| (k.clone(), v.clone()))
                .collect();
            json!({"name": item, "overrides": overrides})
        })
        .collect();
    let mut metadata = json!({"name": batch_name});
    let mut secret_meta = json!({"name": secret_name});
    if let Some(ns) = namespace {
        metadata["namespace"] = json!(ns);
        secret_meta["namespace"] = json!(ns);
    }
    let batch: BatchJob = serde_json::from_value(json!({
        "apiVersion": "ferry.dev/v1alpha1", "kind": "BatchJob", "metadata": metadata,
        "spec": {"template": template, "jobs": jobs},
    }))
    .map_err(|e| ConvertError::Invalid(e.to_string()))?;
    let errors = batch.spec.validate_named(&batch_name);
    if !errors.is_empty() {
        return Err(ConvertError::Invalid(describe(&errors)));
    }
    let data: Map<String, Value> = keys.into_iter().map(|k| (k, json!("REPLACE-ME"))).collect();
    let secret =
        json!({"apiVersion": "v1", "kind": "Secret", "metadata": secret_meta, "type": "Opaque", "stringData": data});
    Ok(Converted { batch, secret, dropped })
}
