"""Static checks of infra/: the compose file, the Kubernetes manifests and the Dockerfile.

No Docker engine or cluster exists on the build machines, so nothing here starts a container:
the checks read the files and look for the mistakes that would break a deployment (a
depends_on naming no service, an unpinned image, a probe on the wrong port, a secret set as a
literal or missing from the Secret, a rendering of sql/starrocks that leaves a placeholder).
tests/tests/infra.rs loads the same firn configurations through firn's own config loader.

Run: $(tests/scripts/python-env.sh) -m pytest tests/python/test_infra.py
"""

from __future__ import annotations

import os
import re
import subprocess
from pathlib import Path

import pytest
import yaml

try:
    import tomllib
except ModuleNotFoundError:  # Python 3.10
    import tomli as tomllib

ROOT = Path(__file__).resolve().parents[2]
INFRA = ROOT / "infra"
COMPOSE_DIR = INFRA / "compose"
K8S_DIR = INFRA / "k8s"
COMPOSE_FIRN_IMAGE = "firn:dev"
K8S_FIRN_IMAGE = "firn"
ADMIN_PROBES = {"livenessProbe": "/livez", "readinessProbe": "/readyz"}
MIB = 1024 * 1024

# firn's Secret-typed config structs and the config section each one is.
SECRET_SECTIONS = {
    "S3Config": "warehouse.s3",
    "CatalogConfig": "catalog",
    "RelayConfig": "relay",
    "SchemaRegistryConfig": "schema-registry",
}


def secret_keys() -> set[str]:
    """Config keys of type Secret, read from catalog/src/config.rs (`catalog.password`, ...)."""
    keys = set()
    struct = None
    for line in (ROOT / "catalog/src/config.rs").read_text().splitlines():
        if m := re.match(r"\s*pub struct (\w+)", line):
            struct = m.group(1)
        if m := re.match(r"\s*pub (\w+): Option<Secret>", line):
            assert struct in SECRET_SECTIONS, f"add {struct} (a struct with a Secret) to SECRET_SECTIONS"
            keys.add(f"{SECRET_SECTIONS[struct]}.{m.group(1).replace('_', '-')}")
    assert "catalog.password" in keys, "the Secret fields of config.rs were not found"
    return keys


def env_name(key: str) -> str:
    """`warehouse.s3.secret-access-key` -> `FIRN_WAREHOUSE__S3__SECRET_ACCESS_KEY`."""
    return "FIRN_" + "__".join(part.replace("-", "_").upper() for part in key.split("."))


SECRET_ENV = {env_name(key) for key in secret_keys()} | {"FIRN_KAFKA__PROPERTIES__SASL_PASSWORD"}


def load_yaml(path: Path) -> list:
    with path.open() as f:
        return [doc for doc in yaml.safe_load_all(f) if doc is not None]


def load_toml(path: Path) -> dict:
    with path.open("rb") as f:
        return tomllib.load(f)


def parse_size(text: str) -> int:
    m = re.fullmatch(r"(\d+)\s*(B|KB|MB|GB|KiB|MiB|GiB)?", str(text).strip())
    assert m, f"size {text!r}"
    factor = {None: 1, "B": 1, "KB": 10**3, "MB": 10**6, "GB": 10**9,
              "KiB": 2**10, "MiB": 2**20, "GiB": 2**30}[m.group(2)]
    return int(m.group(1)) * factor


def parse_quantity(text: str) -> int:
    """A Kubernetes memory quantity (`512Mi`, `2Gi`) in bytes."""
    m = re.fullmatch(r"(\d+)(Ki|Mi|Gi)?", str(text))
    assert m, f"quantity {text!r}"
    return int(m.group(1)) * {None: 1, "Ki": 2**10, "Mi": 2**20, "Gi": 2**30}[m.group(2)]


def admin_port(config: dict) -> int:
    return int(config["admin"]["listen"].rsplit(":", 1)[1])


def check_pinned(image: str, where: str) -> None:
    name, _, tag = image.rpartition(":") if ":" in image.split("/")[-1] else (image, "", "")
    assert tag, f"{where}: image {image!r} has no tag"
    assert tag != "latest" and not tag.endswith("-latest"), f"{where}: {image!r} is not pinned"
    assert "bitnami" not in name, f"{where}: Bitnami images are no longer maintained ({image})"
    assert "minio" not in name, f"{where}: MinIO's community images are archived ({image})"


# ---------------------------------------------------------------- compose

@pytest.fixture(scope="module")
def compose() -> dict:
    return load_yaml(COMPOSE_DIR / "compose.yaml")[0]


@pytest.fixture(scope="module")
def compose_config() -> dict:
    return load_toml(COMPOSE_DIR / "firn.toml")


def depends_on(service: dict) -> dict[str, str]:
    deps = service.get("depends_on", {})
    if isinstance(deps, list):
        return {name: "service_started" for name in deps}
    return {name: spec.get("condition", "service_started") for name, spec in deps.items()}


def firn_services(compose: dict) -> dict[str, dict]:
    return {n: s for n, s in compose["services"].items() if s.get("image") == COMPOSE_FIRN_IMAGE}


def test_every_yaml_file_parses():
    files = sorted(INFRA.rglob("*.yaml")) + sorted(INFRA.rglob("*.yml"))
    assert len(files) >= 7, files
    for path in files:
        assert load_yaml(path), f"{path} is empty"


def test_compose_depends_on_names_services_with_the_right_checks(compose):
    services = compose["services"]
    for name, service in services.items():
        for dep, condition in depends_on(service).items():
            assert dep in services, f"{name} depends on {dep}, which is not a service"
            target = services[dep]
            assert condition in {"service_started", "service_healthy", "service_completed_successfully"}
            if condition == "service_healthy":
                assert "healthcheck" in target, f"{name} waits for {dep} to be healthy, which has no healthcheck"
            if condition == "service_completed_successfully":
                assert target.get("restart", "no") in {"no", "on-failure"}, f"{dep} is waited for as a one-shot but restarts"
            # A service in the default profile cannot wait for one that only a profile starts.
            if not service.get("profiles"):
                assert not target.get("profiles"), f"{name} (always started) depends on {dep} (profile {target['profiles']})"


def test_compose_images_are_pinned(compose):
    built = {s["image"] for s in compose["services"].values() if "build" in s}
    assert built == {COMPOSE_FIRN_IMAGE}
    for name, service in compose["services"].items():
        assert "image" in service, f"{name} has no image"
        check_pinned(service["image"], f"compose service {name}")
        if service["image"] in built and "build" not in service:
            assert service.get("pull_policy") == "never", f"{name} would try to pull the locally built image"


def test_compose_variables_come_from_env_example(compose):
    lines = (COMPOSE_DIR / "compose.yaml").read_text().splitlines()
    text = "\n".join(line for line in lines if not line.lstrip().startswith("#"))
    used = {}
    for m in re.finditer(r"(?<!\$)\$\{([A-Za-z_][A-Za-z0-9_]*)(:?[-?+][^}]*)?\}", text):
        used.setdefault(m.group(1), set()).add(m.group(2) or "")
    example = {}
    for line in (COMPOSE_DIR / ".env.example").read_text().splitlines():
        if line.strip() and not line.startswith("#"):
            key, _, value = line.partition("=")
            example[key] = value
    assert set(used) == set(example), f"compose uses {sorted(used)}, .env.example has {sorted(example)}"
    for key, value in example.items():
        assert value.startswith("CHANGE-ME"), f".env.example: {key} must be a CHANGE-ME placeholder"
        assert all(form.startswith(":?") for form in used[key]), f"{key}: use ${{{key}:?...}} so compose refuses to start without it"


def test_compose_firn_secrets_come_from_the_environment(compose):
    services = firn_services(compose)
    assert set(services) == {"firn-init", "firn-ingest", "firn-transforms", "firn-relay"}
    for name, service in services.items():
        env = service["environment"]
        assert isinstance(env, dict), f"{name}: environment must be a map"
        for var in SECRET_ENV & set(env):
            assert re.fullmatch(r"\$\{[A-Z][A-Z0-9_]*:\?[^}]*\}", str(env[var])), f"{name}: {var} must be ${{VAR:?...}}, not a literal"
        for var in ("FIRN_CATALOG__PASSWORD", "FIRN_WAREHOUSE__S3__ACCESS_KEY_ID", "FIRN_WAREHOUSE__S3__SECRET_ACCESS_KEY"):
            assert var in env, f"{name}: {var} is not set"
    assert "FIRN_RELAY__PASSWORD" in services["firn-relay"]["environment"]
    assert "FIRN_RELAY__PASSWORD" not in services["firn-ingest"]["environment"], "only the relay needs the StarRocks password"


def test_compose_bind_mounts_exist(compose):
    for name, service in compose["services"].items():
        for volume in service.get("volumes", []):
            source = volume.split(":")[0]
            if source.startswith("."):
                assert (COMPOSE_DIR / source).exists(), f"{name} mounts {source}, which does not exist"
        build = service.get("build")
        if build:
            assert (COMPOSE_DIR / build["context"] / build["dockerfile"]).is_file()


def test_compose_firn_health_checks_probe_the_admin_port(compose, compose_config):
    port = admin_port(compose_config)
    assert compose_config["admin"]["listen"].startswith("0.0.0.0:"), "the health check and published port need all interfaces"
    for name in ("firn-ingest", "firn-relay"):
        service = compose["services"][name]
        probe = " ".join(service["healthcheck"]["test"])
        assert f"127.0.0.1:{port}/readyz" in probe, f"{name}: {probe!r} does not probe /readyz on {port}"
        published = {int(p.rsplit(":", 1)[1]) for p in service["ports"]}
        assert port in published, f"{name}: admin port {port} is not published"


def inline_scripts(compose: dict):
    """(service, shell, script) for every `bash -c` / `sh -c` command, with compose's `$$` unescaped."""
    for name, service in compose["services"].items():
        entrypoint = service.get("entrypoint") or []
        if entrypoint[:1] in (["bash"], ["sh"]) and entrypoint[1:] == ["-c"]:
            (script,) = service["command"]
            # A single `$` would be interpolated by compose, not passed to the shell.
            assert "$" not in script.replace("$$", ""), f"{name}: write $$ for the shell's $"
            yield name, entrypoint[0], script.replace("$$", "$")


def test_shell_scripts_parse(compose, k8s_docs):
    scripts = [(str(p), "sh" if p.name == "register.sh" else "bash", p.read_text()) for p in sorted(INFRA.rglob("*.sh"))]
    assert len(scripts) == 3
    scripts += list(inline_scripts(compose))
    for doc, _, container in firn_containers(k8s_docs):
        if container.get("command", [])[-1:] == ["-c"]:
            scripts.append((doc["metadata"]["name"], "bash", container["args"][0]))
    assert len(scripts) >= 8, [s[0] for s in scripts]
    for where, shell, script in scripts:
        assert "$$" not in script, f"{where}: a literal $$ reached the shell"
        done = subprocess.run([shell, "-n"], input=script, capture_output=True, text=True)
        assert done.returncode == 0, f"{where}: {shell} -n: {done.stderr}"


def test_compose_postgres_has_logical_replication(compose):
    command = compose["services"]["postgres"]["command"]
    assert "wal_level=logical" in command, "Debezium needs wal_level=logical"


def test_toml_files_hold_no_secrets():
    keys = secret_keys()
    files = sorted(INFRA.rglob("*.toml"))
    assert len(files) == 2, files

    def walk(table: dict, path: str):
        for key, value in table.items():
            if isinstance(value, dict):
                yield from walk(value, f"{path}{key}.")
            else:
                yield f"{path}{key}"

    for path in files:
        for key in walk(load_toml(path), ""):
            assert key not in keys, f"{path}: secret {key} in the file"
            if key.startswith("kafka.properties."):
                assert not re.search(r"password|secret|token|credential|private|key\.pem", key), f"{path}: {key} in the file"


# ---------------------------------------------------------------- StarRocks init rendering

def render_starrocks(*mode: str, **env: str) -> subprocess.CompletedProcess:
    base = {"PATH": os.environ.get("PATH", "/usr/bin:/bin"), "SQL_DIR": str(ROOT / "sql/starrocks")}
    return subprocess.run(["bash", str(COMPOSE_DIR / "starrocks/init.sh"), "render", *mode],
                          env={**base, **env}, capture_output=True, text=True)


SR_SECRETS = {"STARROCKS_LOADER_PASSWORD": "loader-pw&1", "FIRN_READER_PASSWORD": "reader|pw",
              "S3_ACCESS_KEY": "access-key-1", "S3_SECRET_KEY": "secret/key+1"}


def test_starrocks_init_fills_in_every_placeholder(compose, compose_config):
    done = render_starrocks(**SR_SECRETS)
    assert done.returncode == 0, done.stderr
    sql = "\n".join(line for line in done.stdout.splitlines() if not line.lstrip().startswith("--"))
    assert not re.search(r"<[a-z_-]+>", sql), f"placeholders left: {re.findall(r'<[a-z_-]+>', sql)}"
    assert not re.search(r"^(SELECT|SHOW) ", sql, re.M), "example queries need gold tables that do not exist yet"
    assert re.findall(r'"replication_num"\s*=\s*"(\d+)"', sql) == ["1"], "one BE: replication_num 1"
    # The external catalog must be called `firn` (catalog.name), over firn's catalog database.
    assert f"CREATE EXTERNAL CATALOG IF NOT EXISTS {compose_config['catalog']['name']}" in sql
    catalog = re.match(r"postgres://(\w+)@([\w.-]+):(\d+)/(\w+)", compose_config["catalog"]["uri"])
    assert f'"iceberg.catalog.uri" = "jdbc:postgresql://{catalog[2]}:{catalog[3]}/{catalog[4]}"' in sql
    assert f'"iceberg.catalog.warehouse" = "{compose_config["warehouse"]["uri"]}"' in sql
    assert f'"aws.s3.endpoint" = "{compose_config["warehouse"]["s3"]["endpoint"]}"' in sql
    assert '"aws.s3.use_instance_profile" = "false"' in sql
    assert '"aws.s3.enable_path_style_access" = "true"' in sql
    for value in SR_SECRETS.values():
        assert value in sql, f"{value!r} was not rendered verbatim"
    # Properties: a comma after every entry but the last.
    properties = re.search(r"PROPERTIES \((.*?)\n\);", sql.split("CREATE EXTERNAL CATALOG")[1], re.S).group(1)
    entries = [line.strip() for line in properties.splitlines() if line.strip()]
    assert all(e.endswith(",") for e in entries[:-1]) and not entries[-1].endswith(","), entries
    # The relay's user and database are the ones firn.toml loads into.
    relay = compose_config["relay"]
    assert f"CREATE USER IF NOT EXISTS '{relay['user']}'@'%'" in sql
    assert f"IN DATABASE {relay['database']} TO USER '{relay['user']}'" in sql
    assert f"CREATE DATABASE IF NOT EXISTS {relay['database']};" in sql
    # The compose services hand the script every secret it needs.
    init_env = compose["services"]["starrocks-init"]["environment"]
    assert set(SR_SECRETS) <= set(init_env)

    mv = render_starrocks("mv")
    assert mv.returncode == 0, mv.stderr
    assert re.findall(r'"replication_num"\s*=\s*"(\d+)"', mv.stdout) == ["1"]
    assert "CREATE MATERIALIZED VIEW" in mv.stdout


@pytest.mark.parametrize("bad", ["a'b", 'a"b', "a\\b", ""])
def test_starrocks_init_refuses_unsafe_or_missing_secrets(bad):
    done = render_starrocks(**{**SR_SECRETS, "FIRN_READER_PASSWORD": bad})
    assert done.returncode != 0 and "FIRN_READER_PASSWORD" in done.stderr, done


# ---------------------------------------------------------------- Kubernetes

@pytest.fixture(scope="module")
def kustomization() -> dict:
    return load_yaml(K8S_DIR / "kustomization.yaml")[0]


@pytest.fixture(scope="module")
def k8s_config(kustomization) -> dict:
    (generator,) = [g for g in kustomization["configMapGenerator"] if g["name"] == "firn-config"]
    (file,) = generator["files"]
    return load_toml(K8S_DIR / file)


@pytest.fixture(scope="module")
def k8s_docs(kustomization) -> list[dict]:
    docs = []
    for resource in kustomization["resources"]:
        assert (K8S_DIR / resource).is_file(), f"kustomization lists {resource}, which does not exist"
        docs.extend(load_yaml(K8S_DIR / resource))
    return docs


def pod_templates(docs: list[dict]):
    for doc in docs:
        if doc["kind"] in ("Deployment", "StatefulSet"):
            yield doc, doc["spec"]["template"]
        elif doc["kind"] == "CronJob":
            yield doc, doc["spec"]["jobTemplate"]["spec"]["template"]


def firn_containers(docs: list[dict]):
    for doc, template in pod_templates(docs):
        for container in template["spec"]["containers"]:
            if container["image"] == K8S_FIRN_IMAGE:
                yield doc, template, container


def test_k8s_images_are_pinned(kustomization, k8s_docs):
    mapped = {i["name"]: i for i in kustomization.get("images", [])}
    for doc, template in pod_templates(k8s_docs):
        for container in template["spec"]["containers"]:
            image = container["image"]
            if image in mapped:
                image = f"{mapped[image]['newName']}:{mapped[image]['newTag']}"
            check_pinned(image, f"{doc['kind']}/{doc['metadata']['name']}")


def test_k8s_probes_and_ports_match_the_admin_port(k8s_docs, k8s_config):
    port = admin_port(k8s_config)
    assert k8s_config["admin"]["listen"].startswith("0.0.0.0:"), "the kubelet probes the pod IP"
    deployments = 0
    for doc, template, container in firn_containers(k8s_docs):
        if doc["kind"] != "Deployment":
            assert not any(p in container for p in ADMIN_PROBES), "batch jobs serve no admin endpoint"
            continue
        deployments += 1
        where = doc["metadata"]["name"]
        ports = {p["name"]: p["containerPort"] for p in container["ports"]}
        assert ports.get("admin") == port, f"{where}: container port admin {ports} vs admin.listen {port}"
        for probe, path in {**ADMIN_PROBES, "startupProbe": "/livez"}.items():
            http = container[probe]["httpGet"]
            assert http["path"] == path, f"{where}: {probe} path {http['path']}"
            assert http["port"] in ("admin", port), f"{where}: {probe} port {http['port']}"
        annotations = template["metadata"]["annotations"]
        assert annotations["prometheus.io/scrape"] == "true"
        assert annotations["prometheus.io/port"] == str(port)
        assert annotations["prometheus.io/path"] == "/metrics"
    assert deployments == 2
    services = [d for d in k8s_docs if d["kind"] == "Service"]
    deployments_by_label = {d["spec"]["selector"]["matchLabels"]["app.kubernetes.io/name"]: d for d in k8s_docs if d["kind"] == "Deployment"}
    for service in services:
        (svc_port,) = service["spec"]["ports"]
        assert svc_port["port"] == port and svc_port["targetPort"] == "admin"
        assert service["metadata"]["annotations"]["prometheus.io/port"] == str(port)
        selected = service["spec"]["selector"]["app.kubernetes.io/name"]
        assert selected in deployments_by_label, f"Service {service['metadata']['name']} selects no Deployment"


def test_k8s_secrets_come_from_the_secret(kustomization, k8s_docs):
    (secret,) = load_yaml(K8S_DIR / "secret.example.yaml")
    assert secret["kind"] == "Secret"
    assert "secret.example.yaml" not in kustomization["resources"], "the template must not be applied with placeholders"
    for key, value in secret["stringData"].items():
        assert value == "CHANGE-ME", f"secret.example.yaml: {key} must be a CHANGE-ME placeholder"
    seen = set()
    for doc, _, container in firn_containers(k8s_docs):
        where = f"{doc['kind']}/{doc['metadata']['name']}"
        env = {e["name"]: e for e in container.get("env", [])}
        assert "FIRN_CATALOG__PASSWORD" in env, f"{where}: no catalog password"
        for name in SECRET_ENV & set(env):
            ref = env[name].get("valueFrom", {}).get("secretKeyRef")
            assert ref and "value" not in env[name], f"{where}: {name} must come from a Secret"
            assert ref["name"] == secret["metadata"]["name"], f"{where}: {name} reads Secret {ref['name']}"
            assert ref["key"] in secret["stringData"], f"{where}: {name} reads key {ref['key']}, not in the template"
            seen.add(name)
        for name, var in env.items():
            if "secretKeyRef" in var.get("valueFrom", {}):
                assert name in SECRET_ENV, f"{where}: {name} comes from the Secret but is not one of firn's secrets"
    assert {"FIRN_CATALOG__PASSWORD", "FIRN_RELAY__PASSWORD"} <= seen


def test_k8s_config_mount_and_resources(k8s_docs, k8s_config):
    sources = len(k8s_config["sources"])
    max_bytes = parse_size(k8s_config["commit"]["max-bytes"])
    # docs/benchmarks.md: RSS ≈ 100 MiB + 2.5 × max-bytes per bronze table (+ dead letters).
    ingest_rss = 100 * MIB + 2.5 * max_bytes * (sources + 1)
    in_flight = parse_size(k8s_config["relay"]["max-in-flight-bytes"])
    for doc, template, container in firn_containers(k8s_docs):
        where = doc["metadata"]["name"]
        args = container.get("command", []) + container.get("args", [])
        assert "--config /etc/firn/firn.toml" in " ".join(args), f"{where}: --config"
        mounts = {m["mountPath"]: m for m in container["volumeMounts"]}
        volumes = {v["name"]: v for v in template["spec"]["volumes"]}
        assert volumes[mounts["/etc/firn"]["name"]]["configMap"]["name"] == "firn-config"
        assert container["securityContext"]["readOnlyRootFilesystem"] is True
        assert "/tmp" in mounts, f"{where}: a read-only root needs a writable /tmp"
        assert template["spec"]["securityContext"]["runAsNonRoot"] is True
        limits = container["resources"]["limits"]
        requests = container["resources"]["requests"]
        limit = parse_quantity(limits["memory"])
        assert parse_quantity(requests["memory"]) <= limit
        if where == "firn-ingest":
            assert parse_quantity(requests["memory"]) >= ingest_rss, f"ingest request under the benchmarked {ingest_rss / MIB:.0f} MiB"
            assert limit >= 1.5 * ingest_rss
        if where == "firn-relay":
            assert limit >= 2 * in_flight + 512 * MIB, "the relay pauses Kafka at 2 × max-in-flight-bytes, plus its live rows"
        if where == "firn-transforms":
            script = " ".join(args)
            pool = int(re.search(r"--memory-limit (\d+)", script).group(1))
            assert limit >= 1.5 * pool, "DataFusion's pool is not the whole process"
            assert "--spill-dir /spill" in script and "/spill" in mounts
            assert re.search(r'"\$code" -eq 3 \]; then .*exit 0', script), "exit code 3 (nothing new) must not fail the Job"
            assert doc["spec"]["concurrencyPolicy"] == "Forbid"


# ---------------------------------------------------------------- Dockerfile

def test_dockerfile():
    text = (INFRA / "Dockerfile").read_text()
    args = dict(re.findall(r"^ARG (\w+)=(\S+)", text, re.M))
    froms = [re.sub(r"\$\{(\w+)\}", lambda m: args[m.group(1)], f) for f in re.findall(r"^FROM (\S+)", text, re.M)]
    assert len(froms) == 2, froms
    for image in froms:
        check_pinned(image, "infra/Dockerfile")
    # Same Debian release in both stages, so glibc and OpenSSL match.
    assert "bookworm" in froms[0] and froms[1].startswith("debian:12."), froms
    for package in ("pkg-config", "libssl-dev", "cmake", "build-essential"):
        assert package in text, f"the builder needs {package} for librdkafka"
    sources = [src for line in re.findall(r"^COPY (?!--from)(.+)$", text, re.M) for src in line.split()[:-1]]
    assert "sql" in sources and "Cargo.lock" in sources, sources
    for source in sources:
        assert (ROOT / source).exists(), f"COPY {source}: not in the repository"
    users = re.findall(r"^USER (\S+)", text, re.M)
    assert users and users[-1].split(":")[0] not in ("root", "0"), "the runtime runs as a non-root user"
    assert re.search(r'^ENTRYPOINT \["/usr/local/bin/firn"\]', text, re.M)
    ignore = (INFRA / "Dockerfile.dockerignore").read_text().splitlines()
    for source in sources:
        assert f"!{source.rstrip('/')}" in ignore or f"!{source.rstrip('/')}/" in ignore, f"{source} is excluded from the build context"
