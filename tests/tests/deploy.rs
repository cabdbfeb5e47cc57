//! deploy/ is checked, not just shipped: the compose file, the Prometheus and Grafana
//! provisioning and the Kubernetes example parse, and every metric the dashboard queries is
//! one the library emits.
#![allow(clippy::unwrap_used, clippy::expect_used, missing_docs)]

use std::collections::BTreeSet;
use std::path::PathBuf;

use serde_yaml::Value;

fn deploy(path: &str) -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("../deploy")
        .join(path)
}

fn yaml(path: &str) -> Value {
    let text = std::fs::read_to_string(deploy(path)).unwrap_or_else(|e| panic!("{path}: {e}"));
    serde_yaml::from_str(&text).unwrap_or_else(|e| panic!("{path} is not valid YAML: {e}"))
}

#[test]
fn compose_has_every_server_and_the_monitoring_stack() {
    let c = yaml("docker-compose.yml");
    let services = c["services"].as_mapping().expect("services");
    let names: BTreeSet<_> = services.keys().filter_map(Value::as_str).collect();
    for s in [
        "redis",
        "mongo",
        "mongo-init",
        "kafka",
        "prometheus",
        "grafana",
    ] {
        assert!(names.contains(s), "service {s} missing: {names:?}");
    }
    assert_eq!(
        c["services"]["kafka"]["environment"]["KAFKA_PROCESS_ROLES"], "broker,controller",
        "KRaft mode"
    );
    let mongo_cmd = serde_yaml::to_string(&c["services"]["mongo"]["command"]).unwrap();
    assert!(
        mongo_cmd.contains("--replSet"),
        "change streams need a replica set"
    );
    // Files the compose file mounts exist.
    for v in ["prometheus", "grafana"] {
        for m in c["services"][v]["volumes"].as_sequence().unwrap() {
            let host = m.as_str().unwrap().split(':').next().unwrap();
            assert!(
                deploy(host).exists(),
                "{v} mounts {host}, which does not exist"
            );
        }
    }
    let p = yaml("prometheus/prometheus.yml");
    assert_eq!(p["scrape_configs"][0]["metrics_path"], "/metrics");
    yaml("grafana/provisioning/datasources/prometheus.yml");
    yaml("grafana/provisioning/dashboards/unireader.yml");
}

#[test]
fn every_metric_the_dashboard_queries_exists() {
    let text = std::fs::read_to_string(deploy("grafana/unireader.json")).unwrap();
    let d: serde_json::Value = serde_json::from_str(&text).unwrap();
    let known: BTreeSet<&str> = reader_core::metrics::ALL.iter().copied().collect();
    let mut used = BTreeSet::new();
    for p in d["panels"].as_array().unwrap() {
        for t in p["targets"].as_array().unwrap() {
            let expr = t["expr"].as_str().unwrap();
            let mut rest = expr;
            while let Some(at) = rest.find("unireader_") {
                let name: String = rest[at..]
                    .chars()
                    .take_while(|c| c.is_ascii_alphanumeric() || *c == '_')
                    .collect();
                rest = &rest[at + name.len()..];
                let base = ["_bucket", "_sum", "_count"]
                    .iter()
                    .find_map(|s| name.strip_suffix(s))
                    .unwrap_or(&name)
                    .to_owned();
                assert!(
                    known.contains(base.as_str()),
                    "the dashboard queries {name}, which unireader does not emit"
                );
                used.insert(base);
            }
        }
    }
    for required in [
        "unireader_messages_total",
        "unireader_read_latency_seconds",
        "unireader_retries_total",
        "unireader_reconnect_duration_seconds",
        "unireader_connection_state",
        "unireader_kafka_lag_records",
        "unireader_redis_pending_entries",
        "unireader_mongo_checkpoint_age_seconds",
    ] {
        assert!(
            used.contains(required),
            "the dashboard has no panel for {required}"
        );
    }
}

#[test]
fn the_kubernetes_example_probes_the_health_endpoint() {
    let text = std::fs::read_to_string(deploy("k8s/unireader.yaml")).unwrap();
    let docs: Vec<Value> = serde_yaml::Deserializer::from_str(&text)
        .map(|d| serde::Deserialize::deserialize(d).unwrap())
        .collect();
    let dep = docs
        .iter()
        .find(|d| d["kind"] == "Deployment")
        .expect("a Deployment");
    let c = &dep["spec"]["template"]["spec"]["containers"][0];
    assert_eq!(c["livenessProbe"]["httpGet"]["path"], "/health/live");
    assert_eq!(c["readinessProbe"]["httpGet"]["path"], "/health/ready");
    let ann = &dep["spec"]["template"]["metadata"]["annotations"];
    assert_eq!(ann["prometheus.io/scrape"], "true");
    assert!(
        docs.iter().any(|d| d["kind"] == "ConfigMap"),
        "a ConfigMap of URLs"
    );
}
