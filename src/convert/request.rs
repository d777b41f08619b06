//! The fields of a DRS batch-create request body that `ferry convert drs` knows, as a schema for
//! [`crate::api::strict`]: the request has no schema of its own to check it against, so this is
//! the explicit list, from DRS's API reference (the batch-create body and the job body it shares
//! with the job update API). A field not listed is refused with its path, never dropped in
//! silence: a misspelt `ddl_trans` would otherwise leave DDL replay off without a word.
//!
//! Fields are listed whether or not Ferry has a counterpart (those without one are reported as
//! dropped by the conversion). Sections with no counterpart at all (user migration, database
//! parameters, tuning, yearly/monthly billing) are taken whole, their content unchecked.

use std::sync::LazyLock;

use serde_json::{Map, Value, json};

/// The schema of a batch-create request body.
pub fn schema() -> &'static Value {
    static SCHEMA: LazyLock<Value> = LazyLock::new(build);
    &SCHEMA
}

/// An object with these fields and no others.
fn object(fields: &[(&str, Value)]) -> Value {
    let properties: Map<String, Value> = fields.iter().map(|(name, s)| ((*name).to_owned(), s.clone())).collect();
    json!({"type": "object", "properties": properties})
}

/// An object with these fields, each a scalar (not looked into).
fn scalars(names: &[&str]) -> Value {
    object(&names.iter().map(|n| (*n, json!({}))).collect::<Vec<_>>())
}

/// A list of `item`.
fn list(item: Value) -> Value {
    json!({"type": "array", "items": item})
}

/// A map from names the user chooses to `value`.
fn map(value: Value) -> Value {
    json!({"type": "object", "additionalProperties": value})
}

/// A section taken whole, its content unchecked.
fn whole() -> Value {
    json!({"type": "object", "x-kubernetes-preserve-unknown-fields": true})
}

fn build() -> Value {
    const ENDPOINT: &[&str] =
        &["id", "endpoint_name", "ip", "db_port", "db_user", "db_password", "instance_id", "instance_name", "db_name"];
    let endpoint_fields = |with_shards: bool| {
        let mut fields: Vec<(&str, Value)> = ENDPOINT.iter().map(|n| (*n, json!({}))).collect();
        if with_shards {
            fields.push(("source_sharding", list(scalars(ENDPOINT))));
        }
        object(&fields)
    };
    let endpoint = object(&[
        ("db_type", json!({})),
        ("endpoint_type", json!({})),
        ("endpoint_role", json!({})),
        ("endpoint", endpoint_fields(true)),
        ("cloud", scalars(&["region", "project_id", "az_code"])),
        ("vpc", scalars(&["vpc_id", "subnet_id", "security_group_id"])),
        ("config", scalars(&["is_target_readonly", "node_num"])),
        ("ssl", scalars(&["ssl_link", "ssl_cert_name", "ssl_cert_key", "ssl_cert_check_sum", "ssl_cert_password"])),
        ("customized_dns", scalars(&["is_set_dns", "set_dns_action", "dns_ip"])),
    ]);
    let column = scalars(&[
        "sync_type",
        "primary_key_for_data_filtering",
        "index_for_data_filtering",
        "name",
        "type",
        "primary_key_for_column_filtering",
        "filtered",
        "additional",
        "operation_type",
        "value",
    ]);
    let table = object(&[
        ("sync_type", json!({})),
        ("type", json!({})),
        ("name", json!({})),
        // OceanBase OMS's name for a table's target name; the conversion reads it.
        ("mapped_name", json!({})),
        ("all", json!({})),
        ("db_alias_name", json!({})),
        ("schema_alias_name", json!({})),
        ("filtered", json!({})),
        ("filter_conditions", json!({})),
        ("config_conditions", json!({})),
        ("is_synchronized", json!({})),
        ("columns", map(column)),
    ]);
    let schema =
        object(&[("sync_type", json!({})), ("name", json!({})), ("all", json!({})), ("tables", map(table.clone()))]);
    let database = object(&[
        ("sync_type", json!({})),
        ("name", json!({})),
        ("all", json!({})),
        ("schemas", map(schema)),
        ("tables", map(table)),
        ("total_table_num", json!({})),
        ("is_synchronized", json!({})),
    ]);
    let job = object(&[
        (
            "base_info",
            object(&[
                ("name", json!({})),
                ("job_type", json!({})),
                ("multi_write", json!({})),
                ("engine_type", json!({})),
                ("job_direction", json!({})),
                ("task_type", json!({})),
                ("net_type", json!({})),
                ("charging_mode", json!({})),
                ("enterprise_project_id", json!({})),
                ("description", json!({})),
                ("start_time", json!({})),
                ("expired_days", json!({})),
                ("tags", list(scalars(&["key", "value"]))),
                ("is_open_fast_clean", json!({})),
            ]),
        ),
        ("source_endpoint", list(endpoint.clone())),
        ("target_endpoint", list(endpoint)),
        (
            "alarm_notify",
            object(&[
                ("alarm_to_user", json!({})),
                ("topic_urn", json!({})),
                ("delay_time", json!({})),
                ("rpo_delay", json!({})),
                ("rto_delay", json!({})),
                ("subscriptions", list(scalars(&["protocol", "endpoints"]))),
            ]),
        ),
        ("speed_limit", list(scalars(&["begin", "end", "speed"]))),
        ("user_migration", whole()),
        (
            "policy_config",
            scalars(&[
                "filter_ddl_policy",
                "conflict_policy",
                "index_trans",
                "ddl_trans",
                "data_sync_topology_type",
                "support_ddl_info",
                "sync_type_policy",
                "increment_read_mode",
                "dml_types",
            ]),
        ),
        (
            "db_object",
            object(&[
                ("object_scope", json!({})),
                ("target_root_db", scalars(&["db_name", "db_encoding"])),
                ("object_info", map(database)),
            ]),
        ),
        ("db_param", whole()),
        ("tuning_params", whole()),
        ("period_order", whole()),
        (
            "node_info",
            object(&[
                ("spec", scalars(&["node_type"])),
                ("vpc", scalars(&["vpc_id", "subnet_id", "custom_node_ip", "security_group_id"])),
                ("base_info", scalars(&["instance_type", "arch", "availability_zone"])),
            ]),
        ),
    ]);
    object(&[("jobs", list(job))])
}
