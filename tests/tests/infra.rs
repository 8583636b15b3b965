//! Static checks of `infra/`: every firn configuration that the compose file and the
//! Kubernetes manifests use loads through the real config loader
//! (`PipelineConfig::from_toml`) with the environment those manifests give the container,
//! and agrees with them: admin port versus health checks, probes and published ports, host
//! names versus compose services, Debezium topics versus the source templates, the StarRocks
//! database versus `sql/starrocks/01_hot_tables.sql`, gold SQL paths versus the image.
//!
//! No Docker engine or cluster is needed (none exists on the build machines): the YAML is
//! parsed by the test Python's pyyaml (`FIRN_TEST_PYTHON`), everything else is read here.
//! `tests/python/test_infra.py` checks the YAML's own structure (depends_on, image pins,
//! probes, Secret references).

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};
use std::process::Command;

use firn_catalog::PipelineConfig;
use firn_catalog::config::{CatalogDatabase, TopicTemplate, WarehouseLocation};
use serde_json::Value;

/// The image name the compose file gives the image it builds from `infra/Dockerfile`.
const COMPOSE_FIRN_IMAGE: &str = "firn:dev";
/// The image name the Kubernetes manifests use (kustomization.yaml maps it to a registry).
const K8S_FIRN_IMAGE: &str = "firn";
/// Where the image keeps `sql/` (infra/Dockerfile).
const IMAGE_SQL_DIR: &str = "/opt/firn/sql";

fn repo_root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .expect("repository root")
        .to_path_buf()
}

fn read(path: &Path) -> String {
    std::fs::read_to_string(path).unwrap_or_else(|err| panic!("read {}: {err}", path.display()))
}

/// Every YAML document of a file, as JSON (anchors and `<<` merges resolved by pyyaml).
fn yaml_documents(path: &Path) -> Vec<Value> {
    const SCRIPT: &str = "import json, sys, yaml\n\
                          with open(sys.argv[1]) as f:\n    \
                          print(json.dumps([d for d in yaml.safe_load_all(f) if d is not None]))";
    let output = Command::new(firn_tests::test_python())
        .args(["-c", SCRIPT])
        .arg(path)
        .output()
        .expect("run the test Python");
    assert!(
        output.status.success(),
        "pyyaml could not read {}: {}",
        path.display(),
        String::from_utf8_lossy(&output.stderr)
    );
    match serde_json::from_slice(&output.stdout).expect("pyyaml output is JSON") {
        Value::Array(documents) => documents,
        other => panic!("expected a list of documents, got {other}"),
    }
}

/// A placeholder for a secret the manifests take from `.env` or a Secret. Unique per
/// source, so the test can see it arrived in the right key and never shows up in Debug.
fn placeholder(name: &str) -> String {
    format!("placeholder-secret-{}", name.to_lowercase())
}

/// Compose's interpolation of one environment value: `${VAR}`, `${VAR:?msg}`, `${VAR:-x}`
/// become a placeholder for VAR (what .env would supply); anything else stays.
fn interpolate(value: &str) -> String {
    match value
        .strip_prefix("${")
        .and_then(|rest| rest.strip_suffix('}'))
    {
        Some(inner) => {
            let name = inner.split([':', '-', '?']).next().unwrap_or(inner);
            placeholder(name)
        }
        None => value.to_string(),
    }
}

fn string_list(value: &Value) -> Vec<String> {
    match value {
        Value::Array(items) => items
            .iter()
            .map(|item| item.as_str().expect("a list of strings").to_string())
            .collect(),
        Value::String(text) => vec![text.clone()],
        Value::Null => Vec::new(),
        other => panic!("expected a string or a list of strings, got {other}"),
    }
}

/// The path after `--config` in a command line, given as an argument list or inside a
/// shell script (`bash -c '... --config PATH ...'`).
fn config_path(command: &[String]) -> Option<String> {
    if let Some(index) = command.iter().position(|arg| arg == "--config") {
        return command.get(index + 1).cloned();
    }
    command.iter().find_map(|arg| {
        let (_, rest) = arg.split_once("--config ")?;
        rest.split_whitespace().next().map(str::to_string)
    })
}

fn host_and_port(address: &str) -> (String, u16) {
    let address = address
        .trim_start_matches("http://")
        .trim_start_matches("https://")
        .trim_end_matches('/');
    let (host, port) = address
        .rsplit_once(':')
        .unwrap_or_else(|| panic!("`{address}` has no port"));
    (
        host.to_string(),
        port.parse()
            .unwrap_or_else(|_| panic!("`{address}`: bad port")),
    )
}

fn admin_port(config: &PipelineConfig) -> u16 {
    config
        .admin
        .listen
        .parse::<std::net::SocketAddr>()
        .expect("admin.listen was validated")
        .port()
}

/// The database `sql/starrocks/01_hot_tables.sql` creates: the relay's target.
fn hot_database() -> String {
    let sql = read(&repo_root().join("sql/starrocks/01_hot_tables.sql"));
    sql.lines()
        .find_map(|line| line.strip_prefix("CREATE DATABASE IF NOT EXISTS "))
        .map(|rest| rest.trim_end_matches(';').trim().to_string())
        .expect("01_hot_tables.sql creates a database")
}

/// Checks shared by every deployment: catalog name, secrets delivered and redacted, gold
/// SQL present in the image, relay target as in the StarRocks DDL.
fn check_common(config: &PipelineConfig, env: &[(String, String)], what: &str) {
    assert_eq!(
        config.catalog.name, "firn",
        "{what}: StarRocks' external catalog and pyiceberg expect the catalog name `firn`"
    );
    let catalog_url = match config.catalog_database().expect("validated") {
        CatalogDatabase::Postgres(url) => url,
        CatalogDatabase::Sqlite(path) => panic!(
            "{what}: a shared deployment needs the Postgres catalog, not SQLite at {}",
            path.display()
        ),
    };
    let user_info = catalog_url
        .split_once("://")
        .and_then(|(_, rest)| rest.split_once('@'))
        .map(|(user_info, _)| user_info)
        .unwrap_or_default();
    assert!(
        !user_info.contains(':'),
        "{what}: the catalog URL must not carry a password: {}",
        firn_catalog::config::redact_uri(&catalog_url)
    );
    let password = config
        .catalog
        .password
        .as_ref()
        .unwrap_or_else(|| panic!("{what}: no FIRN_CATALOG__PASSWORD reaches the config"));
    assert!(
        password.expose().starts_with("placeholder-secret-"),
        "{what}: the catalog password must come from a secret, got a literal"
    );
    let debug = format!("{config:?}");
    for (name, value) in env {
        if value.starts_with("placeholder-secret-") {
            assert!(
                !debug.contains(value.as_str()),
                "{what}: the secret in {name} shows up in the config's Debug output"
            );
        }
    }
    assert!(
        matches!(
            config.warehouse_location().expect("validated"),
            WarehouseLocation::S3 { .. }
        ),
        "{what}: the warehouse must be on S3 so every pod sees it"
    );
    let sql_dir = repo_root().join("sql");
    assert_eq!(config.gold.len(), 3, "{what}: the three gold models");
    for model in &config.gold {
        let sql = model
            .sql
            .as_deref()
            .unwrap_or_else(|| panic!("{what}: gold {} needs an absolute sql path", model.name));
        let relative = sql.strip_prefix(IMAGE_SQL_DIR).unwrap_or_else(|| {
            panic!(
                "{what}: gold {} reads {sql}, outside the image's {IMAGE_SQL_DIR}",
                model.name
            )
        });
        let file = sql_dir.join(relative.trim_start_matches('/'));
        assert!(
            file.is_file(),
            "{what}: gold {} reads {sql}, but {} does not exist",
            model.name,
            file.display()
        );
    }
    let relay = config
        .relay
        .as_ref()
        .unwrap_or_else(|| panic!("{what}: the [relay] section is missing"));
    assert_eq!(
        relay.database,
        hot_database(),
        "{what}: relay.database must be the database sql/starrocks/01_hot_tables.sql creates"
    );
    let sources: BTreeSet<&str> = config.sources.iter().map(|s| s.table.as_str()).collect();
    assert_eq!(
        sources,
        BTreeSet::from(["customers", "order_items", "orders", "products"]),
        "{what}: the four shop sources the gold models read"
    );
}

fn dockerfile_copies_sql() {
    let dockerfile = read(&repo_root().join("infra/Dockerfile"));
    assert!(
        dockerfile
            .lines()
            .any(|line| line.trim() == format!("COPY sql {IMAGE_SQL_DIR}")),
        "infra/Dockerfile must copy sql/ to {IMAGE_SQL_DIR}, where the configurations point"
    );
}

struct ComposeFile {
    dir: PathBuf,
    services: serde_json::Map<String, Value>,
}

impl ComposeFile {
    fn load() -> ComposeFile {
        let dir = repo_root().join("infra/compose");
        let documents = yaml_documents(&dir.join("compose.yaml"));
        let services = documents[0]["services"]
            .as_object()
            .expect("compose.yaml has services")
            .clone();
        ComposeFile { dir, services }
    }

    fn service(&self, name: &str) -> &Value {
        self.services
            .get(name)
            .unwrap_or_else(|| panic!("compose.yaml has no service `{name}`"))
    }

    /// The host file mounted at `container_path`.
    fn mounted_file(&self, service: &Value, container_path: &str) -> PathBuf {
        let volumes = string_list(&service["volumes"]);
        let host = volumes
            .iter()
            .find_map(|volume| {
                let mut parts = volume.split(':');
                let host = parts.next()?;
                (parts.next()? == container_path).then_some(host)
            })
            .unwrap_or_else(|| panic!("nothing is mounted at {container_path}"));
        self.dir.join(host)
    }

    /// The published container ports of a service.
    fn container_ports(service: &Value) -> BTreeSet<u16> {
        string_list(&service["ports"])
            .iter()
            .map(|mapping| {
                mapping
                    .rsplit(':')
                    .next()
                    .and_then(|port| port.parse().ok())
                    .unwrap_or_else(|| panic!("port mapping `{mapping}`"))
            })
            .collect()
    }
}

#[test]
fn compose_configurations_load_and_match_the_services() {
    dockerfile_copies_sql();
    let compose = ComposeFile::load();
    let firn_services: Vec<(&String, &Value)> = compose
        .services
        .iter()
        .filter(|(_, service)| service["image"] == COMPOSE_FIRN_IMAGE)
        .collect();
    let names: BTreeSet<&str> = firn_services.iter().map(|(n, _)| n.as_str()).collect();
    assert_eq!(
        names,
        BTreeSet::from(["firn-ingest", "firn-init", "firn-relay", "firn-transforms"]),
        "the compose services that run firn"
    );
    let builder = firn_services
        .iter()
        .find(|(_, service)| service.get("build").is_some())
        .expect("one firn service builds the image");
    assert_eq!(builder.1["build"]["dockerfile"], "infra/Dockerfile");

    for (name, service) in &firn_services {
        let what = format!("compose service {name}");
        let mut command = string_list(&service["entrypoint"]);
        command.extend(string_list(&service["command"]));
        let path = config_path(&command).unwrap_or_else(|| panic!("{what}: no --config"));
        let toml_file = compose.mounted_file(service, &path);
        let env: Vec<(String, String)> = service["environment"]
            .as_object()
            .unwrap_or_else(|| panic!("{what}: environment must be a map"))
            .iter()
            .map(|(key, value)| {
                let value = match value {
                    Value::String(text) => interpolate(text),
                    other => other.to_string(),
                };
                (key.clone(), value)
            })
            .collect();
        let base_dir = Path::new(&path).parent().expect("config directory");
        let config = PipelineConfig::from_toml(&read(&toml_file), env.clone(), base_dir)
            .unwrap_or_else(|err| panic!("{what}: {} does not load: {err}", toml_file.display()));
        check_common(&config, &env, &what);

        // Every host firn connects to is a service of this file.
        let CatalogDatabase::Postgres(url) = config.catalog_database().unwrap() else {
            unreachable!("checked above")
        };
        let host = url
            .split('@')
            .nth(1)
            .and_then(|rest| rest.split(['/', ':']).next())
            .expect("catalog host");
        compose.service(host);
        let endpoint =
            config.warehouse.s3.endpoint.as_deref().unwrap_or_else(|| {
                panic!("{what}: the compose S3 store needs warehouse.s3.endpoint")
            });
        let (s3_host, s3_port) = host_and_port(endpoint);
        compose.service(&s3_host);
        assert_eq!(
            compose.service(&s3_host)["environment"]["RUSTFS_ADDRESS"],
            format!(":{s3_port}"),
            "{what}: the S3 store listens where warehouse.s3.endpoint points"
        );
        assert!(config.warehouse.s3.path_style, "{what}: path-style S3");
        for (key, secret) in [
            ("access-key-id", &config.warehouse.s3.access_key_id),
            ("secret-access-key", &config.warehouse.s3.secret_access_key),
        ] {
            assert!(
                secret.is_some(),
                "{what}: warehouse.s3.{key} must come from the environment"
            );
        }
        for broker in config
            .kafka
            .brokers
            .as_deref()
            .expect("kafka.brokers")
            .split(',')
        {
            let (broker_host, broker_port) = host_and_port(broker);
            let listeners =
                compose.service(&broker_host)["environment"]["KAFKA_ADVERTISED_LISTENERS"]
                    .as_str()
                    .expect("the broker advertises its listeners")
                    .to_string();
            assert!(
                listeners.contains(&format!("//{broker_host}:{broker_port}")),
                "{what}: {broker} is not among the broker's advertised listeners {listeners}"
            );
        }
        let relay = config.relay.as_ref().expect("checked above");
        for fe in &relay.fe_urls {
            let (fe_host, _) = host_and_port(fe);
            assert_eq!(
                compose.service(&fe_host)["hostname"],
                fe_host.as_str(),
                "{what}: the FE runs with --host_type FQDN under its service name"
            );
        }

        // The admin endpoint: published, and probed by the health check.
        let port = admin_port(&config);
        if let Some(test) = service.get("healthcheck").map(|h| string_list(&h["test"])) {
            let probe = test.join(" ");
            assert!(
                probe.contains(&format!("127.0.0.1:{port}/readyz")),
                "{what}: the health check `{probe}` does not probe /readyz on admin port {port}"
            );
            assert!(
                ComposeFile::container_ports(service).contains(&port),
                "{what}: admin port {port} is not published"
            );
        }
        if *name == "firn-relay" {
            assert!(
                relay.password.is_some(),
                "{what}: FIRN_RELAY__PASSWORD must reach the relay"
            );
        }
    }
}

#[test]
fn debezium_topics_match_the_source_templates() {
    let compose = ComposeFile::load();
    let service = compose.service("firn-ingest");
    let toml_file = compose.mounted_file(service, "/etc/firn/firn.toml");
    let config = PipelineConfig::from_toml(&read(&toml_file), Vec::new(), Path::new("/etc/firn"))
        .expect("the compose config loads");
    let postgres_tenants: BTreeSet<String> =
        compose.service("postgres")["environment"]["SHOP_TENANTS"]
            .as_str()
            .expect("SHOP_TENANTS")
            .split_whitespace()
            .map(str::to_string)
            .collect();

    let mut connector_tenants = BTreeSet::new();
    let connectors = std::fs::read_dir(compose.dir.join("debezium")).expect("debezium/");
    for entry in connectors {
        let path = entry.expect("directory entry").path();
        if path.extension().and_then(|e| e.to_str()) != Some("json") {
            continue;
        }
        let connector: Value = serde_json::from_str(&read(&path)).expect("connector JSON");
        let what = path.display().to_string();
        assert_eq!(
            connector["database.password"], "${env:DEBEZIUM_PASSWORD}",
            "{what}: the password comes from the worker's environment"
        );
        assert_eq!(
            connector["value.converter.schemas.enable"], "true",
            "{what}: embedded schemas type the bronze columns"
        );
        let prefix = connector["topic.prefix"].as_str().expect("topic.prefix");
        let tenant = prefix.rsplit('.').next().expect("prefix segment");
        connector_tenants.insert(tenant.to_string());
        let database = connector["database.dbname"].as_str().expect("dbname");
        assert_eq!(
            database,
            format!("shop_{tenant}"),
            "{what}: the tenant's database"
        );
        let tables = connector["table.include.list"]
            .as_str()
            .expect("table.include.list");
        let mut covered = BTreeSet::new();
        for qualified in tables.split(',') {
            // Debezium's Postgres connector names topics <topic.prefix>.<schema>.<table>.
            let topic = format!("{prefix}.{qualified}");
            let source = config
                .source_for_topic(&topic)
                .unwrap_or_else(|| panic!("{what}: no source matches topic {topic}"));
            let table = qualified.rsplit('.').next().expect("table");
            assert_eq!(
                source.table, table,
                "{what}: {topic} lands in the wrong table"
            );
            let template = TopicTemplate::parse(&source.topic).expect("validated");
            assert_eq!(
                template.matches(&topic),
                Some(tenant),
                "{what}: {topic} must yield tenant `{tenant}`"
            );
            covered.insert(source.table.clone());
        }
        let all: BTreeSet<String> = config.sources.iter().map(|s| s.table.clone()).collect();
        assert_eq!(covered, all, "{what}: every source table is captured");
    }
    assert_eq!(
        connector_tenants, postgres_tenants,
        "one connector per shop database that postgres/init.sh creates"
    );
}

/// A container of a pod template, with the pod's volumes and annotations.
struct Container<'a> {
    workload: String,
    container: &'a Value,
    pod: &'a Value,
    annotations: Option<&'a Value>,
}

fn k8s_containers(documents: &[Value]) -> Vec<Container<'_>> {
    let mut found = Vec::new();
    for document in documents {
        let kind = document["kind"].as_str().unwrap_or_default();
        let template = match kind {
            "Deployment" | "StatefulSet" => &document["spec"]["template"],
            "CronJob" => &document["spec"]["jobTemplate"]["spec"]["template"],
            _ => continue,
        };
        for container in template["spec"]["containers"]
            .as_array()
            .expect("containers")
        {
            found.push(Container {
                workload: format!("{kind}/{}", document["metadata"]["name"].as_str().unwrap()),
                container,
                pod: &template["spec"],
                annotations: template["metadata"].get("annotations"),
            });
        }
    }
    found
}

#[test]
fn kubernetes_configurations_load_and_match_the_manifests() {
    dockerfile_copies_sql();
    let dir = repo_root().join("infra/k8s");
    let kustomization = &yaml_documents(&dir.join("kustomization.yaml"))[0];
    let generator = kustomization["configMapGenerator"]
        .as_array()
        .expect("configMapGenerator")
        .iter()
        .find(|g| g["name"] == "firn-config")
        .expect("the firn-config ConfigMap");
    let toml_name = string_list(&generator["files"])
        .into_iter()
        .next()
        .expect("the ConfigMap's file");
    let toml_text = read(&dir.join(&toml_name));
    let mut documents = Vec::new();
    for resource in string_list(&kustomization["resources"]) {
        documents.extend(yaml_documents(&dir.join(resource)));
    }
    let containers: Vec<Container<'_>> = k8s_containers(&documents)
        .into_iter()
        .filter(|c| c.container["image"] == K8S_FIRN_IMAGE)
        .collect();
    let workloads: BTreeSet<&str> = containers.iter().map(|c| c.workload.as_str()).collect();
    assert_eq!(
        workloads,
        BTreeSet::from([
            "CronJob/firn-transforms",
            "Deployment/firn-ingest",
            "Deployment/firn-relay"
        ])
    );

    for Container {
        workload,
        container,
        pod,
        annotations,
    } in &containers
    {
        let what = workload.as_str();
        let mut command = string_list(&container["command"]);
        command.extend(string_list(&container["args"]));
        let path = config_path(&command).unwrap_or_else(|| panic!("{what}: no --config"));
        let (mount_dir, file_name) = path.rsplit_once('/').expect("absolute config path");
        assert_eq!(
            file_name, toml_name,
            "{what}: the ConfigMap's key is the file name"
        );
        let mount = container["volumeMounts"]
            .as_array()
            .expect("volumeMounts")
            .iter()
            .find(|m| m["mountPath"] == mount_dir)
            .unwrap_or_else(|| panic!("{what}: nothing is mounted at {mount_dir}"));
        let volume = pod["volumes"]
            .as_array()
            .expect("volumes")
            .iter()
            .find(|v| v["name"] == mount["name"])
            .expect("the mounted volume");
        assert_eq!(
            volume["configMap"]["name"], "firn-config",
            "{what}: {mount_dir} must be the firn-config ConfigMap"
        );

        let env: Vec<(String, String)> = container["env"]
            .as_array()
            .map(Vec::as_slice)
            .unwrap_or_default()
            .iter()
            .map(|var| {
                let name = var["name"].as_str().expect("env name").to_string();
                let value = if let Some(value) = var["value"].as_str() {
                    value.to_string()
                } else if var["valueFrom"].get("secretKeyRef").is_some() {
                    placeholder(&name)
                } else {
                    format!("from-{name}")
                };
                (name, value)
            })
            .collect();
        let config = PipelineConfig::from_toml(&toml_text, env.clone(), Path::new(mount_dir))
            .unwrap_or_else(|err| panic!("{what}: {toml_name} does not load: {err}"));
        check_common(&config, &env, what);

        // The admin port: the container port named `admin`, the probes, the scrape annotation.
        let port = admin_port(&config);
        if what.starts_with("Deployment/") {
            let ports = container["ports"].as_array().expect("ports");
            let admin = ports
                .iter()
                .find(|p| p["name"] == "admin")
                .unwrap_or_else(|| panic!("{what}: no container port named admin"));
            assert_eq!(admin["containerPort"], port, "{what}: admin containerPort");
            for (probe, path) in [("livenessProbe", "/livez"), ("readinessProbe", "/readyz")] {
                let http = &container[probe]["httpGet"];
                assert_eq!(http["path"], path, "{what}: {probe} path");
                assert!(
                    http["port"] == "admin" || http["port"] == port,
                    "{what}: {probe} probes port {}, admin is {port}",
                    http["port"]
                );
            }
            let annotations = annotations.expect("pod annotations");
            assert_eq!(
                annotations["prometheus.io/port"],
                port.to_string(),
                "{what}: the scrape annotation's port"
            );
            if what == "Deployment/firn-relay" {
                assert!(
                    config.relay.as_ref().unwrap().password.is_some(),
                    "{what}: FIRN_RELAY__PASSWORD must reach the relay"
                );
            }
        }
    }

    // The Services expose the admin port by name, on the same number.
    let services: Vec<&Value> = documents
        .iter()
        .filter(|d| d["kind"] == "Service")
        .collect();
    assert_eq!(services.len(), 2, "admin Services for ingest and relay");
    let config = PipelineConfig::from_toml(&toml_text, Vec::new(), Path::new("/etc/firn"))
        .expect("the Kubernetes config loads without secrets too");
    for service in services {
        let port = &service["spec"]["ports"][0];
        assert_eq!(
            port["port"],
            admin_port(&config),
            "{}",
            service["metadata"]["name"]
        );
        assert_eq!(
            port["targetPort"], "admin",
            "{}",
            service["metadata"]["name"]
        );
        assert_eq!(
            service["metadata"]["annotations"]["prometheus.io/port"],
            admin_port(&config).to_string()
        );
    }
}

#[test]
fn configurations_hold_no_secrets() {
    // Loaded without any environment, no secret is set: the TOML files carry none.
    let files: BTreeMap<&str, PathBuf> = BTreeMap::from([
        ("compose", repo_root().join("infra/compose/firn.toml")),
        ("kubernetes", repo_root().join("infra/k8s/firn.toml")),
    ]);
    for (what, file) in files {
        let config = PipelineConfig::from_toml(&read(&file), Vec::new(), Path::new("/etc/firn"))
            .unwrap_or_else(|err| panic!("{what}: {} does not load: {err}", file.display()));
        assert!(
            config.catalog.password.is_none(),
            "{what}: catalog.password in the file"
        );
        let s3 = &config.warehouse.s3;
        assert!(
            s3.access_key_id.is_none()
                && s3.secret_access_key.is_none()
                && s3.session_token.is_none(),
            "{what}: S3 credentials in the file"
        );
        assert!(
            config.relay.as_ref().is_none_or(|r| r.password.is_none()),
            "{what}: relay.password in the file"
        );
        assert!(
            config
                .schema_registry
                .as_ref()
                .is_none_or(|r| r.password.is_none()),
            "{what}: schema-registry.password in the file"
        );
        let sensitive: Vec<&String> = config
            .kafka
            .properties
            .keys()
            .filter(|key| firn_catalog::config::is_sensitive_key(key))
            .collect();
        assert!(
            sensitive.is_empty(),
            "{what}: Kafka secrets in the file: {sensitive:?}"
        );
    }
}
