"""Schema checks of the deploy artefacts: helm lint, the rendered chart against the Kubernetes schemas
(kubernetes-validate, strict), compose.yaml against the Compose Specification schema, and the monitoring files."""

import json
import re
import subprocess
from collections.abc import Callable
from importlib import resources
from pathlib import Path
from typing import Any

import jsonschema
import kubernetes_validate
import pytest
import yaml

ROOT = Path(__file__).resolve().parents[2]
CHART = ROOT / "deploy" / "helm" / "scrm"
COMPOSE_DIR = ROOT / "deploy" / "compose"

# Oldest Kubernetes the chart supports (Chart.yaml kubeVersion) and the newest the schemas know.
KUBERNETES_VERSIONS = ["1.27.0", "1.37.0"]
# Custom resources with no schema in kubernetes-validate, checked by hand below.
CUSTOM_KINDS = {("monitoring.coreos.com/v1", "ServiceMonitor")}
METRICS = [
    "scrm_consumer_records_total",
    "scrm_consumer_lag",
    "scrm_consumer_batch_seconds",
    "scrm_outbox_published_total",
    "scrm_outbox_pending",
    "scrm_touches_total",
    "scrm_journey_timers_due",
]


# --- Helm ------------------------------------------------------------------------------------------------------


@pytest.mark.deploy
@pytest.mark.timeout(1800)
@pytest.mark.parametrize("values", [[], ["-f", str(CHART / "values-prod.yaml")]], ids=["default", "prod"])
def test_helm_lint(helm: str, values: list[str]) -> None:
    result = subprocess.run(
        [helm, "lint", "--strict", str(CHART), *values], capture_output=True, text=True, timeout=120, check=False
    )
    assert result.returncode == 0, result.stdout + result.stderr


@pytest.mark.deploy
@pytest.mark.timeout(1800)
@pytest.mark.parametrize("kube", KUBERNETES_VERSIONS)
@pytest.mark.parametrize("values", ["default", "prod", "all-features", "existing-secret"])
def test_rendered_chart_is_valid_kubernetes(rendered: dict[str, list[dict[str, Any]]], values: str, kube: str) -> None:
    docs = rendered[values]
    assert docs, "nothing rendered"
    errors = []
    for doc in docs:
        if (doc.get("apiVersion"), doc.get("kind")) in CUSTOM_KINDS:
            continue
        try:
            kubernetes_validate.validate(doc, kube, strict=True)
        except (kubernetes_validate.ValidationError, kubernetes_validate.SchemaNotFoundError) as exc:
            errors.append(f"{doc.get('kind')} {doc.get('metadata', {}).get('name')}: {exc}")
    assert not errors, "\n".join(errors)


@pytest.mark.deploy
@pytest.mark.timeout(1800)
def test_rendered_chart_is_checked_strictly(render: Callable[..., list[dict[str, Any]]]) -> None:
    """The validation is not vacuous: a misplaced field is rejected."""
    deployment = next(d for d in render() if d["kind"] == "Deployment")
    deployment["spec"]["template"]["spec"]["containers"][0]["livenessProbe"]["httpGett"] = {"path": "/healthz"}
    with pytest.raises(kubernetes_validate.ValidationError):
        kubernetes_validate.validate(deployment, KUBERNETES_VERSIONS[-1], strict=True)


@pytest.mark.deploy
@pytest.mark.timeout(1800)
def test_components_are_wired(rendered: dict[str, list[dict[str, Any]]]) -> None:
    """Services select their Deployment's pods, probes use /healthz and /readyz, HPAs and PDBs point at real
    Deployments, the hook Jobs run the right commands, and every component has a `helm test` pod."""
    docs = rendered["all-features"]
    by_kind: dict[str, dict[str, dict[str, Any]]] = {}
    for doc in docs:
        by_kind.setdefault(doc["kind"], {})[doc["metadata"]["name"]] = doc
    deployments = by_kind["Deployment"]
    assert len(deployments) == 10  # ingest api + 3 x (api, consumer, scheduler)
    for name, deployment in deployments.items():
        labels = deployment["spec"]["template"]["metadata"]["labels"]
        selector = deployment["spec"]["selector"]["matchLabels"]
        assert selector.items() <= labels.items(), name
        assert by_kind["Service"][name]["spec"]["selector"] == selector, name
        container = deployment["spec"]["template"]["spec"]["containers"][0]
        assert container["livenessProbe"]["httpGet"]["path"] == "/healthz", name
        assert container["readinessProbe"]["httpGet"]["path"] == "/readyz", name
        assert container["args"][:2] == ["serve", labels["scrm.io/service"]], name
        assert by_kind["HorizontalPodAutoscaler"][name]["spec"]["scaleTargetRef"]["name"] == name
        assert by_kind["NetworkPolicy"][name]["spec"]["podSelector"]["matchLabels"] == selector
        assert any(name in " ".join(p["spec"]["containers"][0]["args"]) for p in by_kind["Pod"].values()), name
    for name in by_kind["PodDisruptionBudget"]:
        assert name in deployments
    jobs = {j["metadata"]["labels"]["app.kubernetes.io/component"]: j for j in by_kind["Job"].values()}
    assert jobs["migrate"]["spec"]["template"]["spec"]["containers"][0]["args"] == ["db", "upgrade"]
    assert jobs["topics"]["spec"]["template"]["spec"]["containers"][0]["args"][:2] == ["topics", "create"]
    for job in jobs.values():
        assert "pre-install" in job["metadata"]["annotations"]["helm.sh/hook"]
        assert "pre-upgrade" in job["metadata"]["annotations"]["helm.sh/hook"]
    for pod in by_kind["Pod"].values():
        assert pod["metadata"]["annotations"]["helm.sh/hook"] == "test"
        assert pod["spec"]["containers"][0]["args"][-1].endswith("/healthz")
    (monitor,) = by_kind["ServiceMonitor"].values()
    assert monitor["spec"]["endpoints"][0]["path"] == "/metrics"
    assert all(
        s["spec"]["ports"][0]["name"] == monitor["spec"]["endpoints"][0]["port"] for s in by_kind["Service"].values()
    )


@pytest.mark.deploy
@pytest.mark.timeout(1800)
def test_prod_topics_fit_consumer_replicas(rendered: dict[str, list[dict[str, Any]]]) -> None:
    """No consumer HPA may grow past the partition count: the extra pods would sit idle."""
    docs = rendered["prod"]
    topics = next(d for d in docs if d["kind"] == "Job" and d["metadata"]["name"].endswith("-topics"))
    args = topics["spec"]["template"]["spec"]["containers"][0]["args"]
    partitions = int(args[args.index("--partitions") + 1])
    assert int(args[args.index("--replication") + 1]) >= 3
    for hpa in (d for d in docs if d["kind"] == "HorizontalPodAutoscaler"):
        if hpa["metadata"]["labels"]["scrm.io/role"] == "consumer":
            assert hpa["spec"]["maxReplicas"] <= partitions, hpa["metadata"]["name"]


# --- Compose ---------------------------------------------------------------------------------------------------


def _compose_schema() -> dict[str, Any]:
    """The Compose Specification schema as vendored by the check-jsonschema package (from compose-spec/compose-spec)."""
    vendor = resources.files("check_jsonschema.builtin_schemas.vendor")
    return json.loads((vendor / "compose-spec.json").read_text())


def _interpolate(value: Any, env: dict[str, str]) -> Any:
    """Compose's ${VAR}, ${VAR:-default}, ${VAR-default}, ${VAR:?err} and $$ on every string of a document."""
    pattern = re.compile(r"\$\$|\$\{([A-Za-z_][A-Za-z0-9_]*)(?:(:?[-?])([^}]*))?\}|\$([A-Za-z_][A-Za-z0-9_]*)")

    def one(match: re.Match[str]) -> str:
        if match.group(0) == "$$":
            return "$"
        name = match.group(1) or match.group(4)
        op, arg = match.group(2), match.group(3)
        if op in (":-", ":?") and not env.get(name):
            if op == ":?":
                raise KeyError(f"{name}: {arg}")
            return arg
        if op in ("-", "?") and name not in env:
            if op == "?":
                raise KeyError(f"{name}: {arg}")
            return arg
        return env.get(name, "")

    if isinstance(value, str):
        return pattern.sub(one, value)
    if isinstance(value, list):
        return [_interpolate(v, env) for v in value]
    if isinstance(value, dict):
        return {k: _interpolate(v, env) for k, v in value.items()}
    return value


def _env_example() -> dict[str, str]:
    env = {}
    for line in (COMPOSE_DIR / ".env.example").read_text().splitlines():
        if line.strip() and not line.lstrip().startswith("#"):
            key, _, value = line.partition("=")
            env[key.strip()] = value.strip()
    return env


def _schema_errors(document: dict[str, Any]) -> list[str]:
    schema = _compose_schema()
    validator = jsonschema.validators.validator_for(schema)(schema, format_checker=jsonschema.FormatChecker())
    return [f"{'/'.join(map(str, e.absolute_path))}: {e.message}" for e in validator.iter_errors(document)]


def test_compose_matches_the_compose_spec(compose: dict[str, Any]) -> None:
    assert not _schema_errors(compose)
    interpolated = _interpolate(compose, _env_example())
    assert not _schema_errors(interpolated)


def test_compose_needs_the_passwords(compose: dict[str, Any]) -> None:
    """Without .env the stack refuses to start rather than run with a default password."""
    env = {k: v for k, v in _env_example().items() if "PASSWORD" not in k}
    with pytest.raises(KeyError):
        _interpolate(compose, env)


def test_compose_schema_check_is_not_vacuous(compose: dict[str, Any]) -> None:
    broken = json.loads(json.dumps(compose))
    broken["services"]["ingest"]["depends_onn"] = ["postgres"]
    broken["services"]["postgres"]["volumes"] = "postgres-data"  # must be a list
    assert len(_schema_errors(broken)) >= 2


def test_compose_references_resolve(compose: dict[str, Any]) -> None:
    services = compose["services"]
    for name, spec in services.items():
        for dep in spec.get("depends_on") or {}:
            assert dep in services, f"{name} depends on unknown {dep}"
        for volume in spec.get("volumes", []):
            source = volume.split(":", 1)[0]
            if source.startswith("."):
                assert (COMPOSE_DIR / source).exists(), f"{name}: {source} does not exist"
            else:
                assert source in compose["volumes"], f"{name}: volume {source} is not declared"
    assert services["kafka"]["image"].startswith("apache/kafka:4.")
    assert re.fullmatch(r"postgres:1[78](\..*|-.*)?", services["postgres"]["image"])
    assert services["prometheus"]["profiles"] == ["monitoring"] == services["grafana"]["profiles"]


def test_env_example_covers_compose_variables(compose: dict[str, Any]) -> None:
    """Every ${VAR} compose.yaml reads is explained in .env.example."""
    text = (COMPOSE_DIR / "compose.yaml").read_text()
    used = set(re.findall(r"\$\{([A-Za-z_][A-Za-z0-9_]*)", text))
    missing = used - set(_env_example())
    assert not missing, f"add to .env.example: {sorted(missing)}"


def test_prometheus_scrapes_every_scrm_container(compose: dict[str, Any]) -> None:
    config = yaml.safe_load((COMPOSE_DIR / "prometheus" / "prometheus.yml").read_text())
    targets = {t for job in config["scrape_configs"] for group in job["static_configs"] for t in group["targets"]}
    for name, spec in compose["services"].items():
        target = (spec.get("build") or {}).get("target")
        if target and target != "runtime":
            port = spec["healthcheck"]["test"][-1].split("127.0.0.1:")[1].split("/")[0]
            assert f"{name}:{port}" in targets, f"Prometheus does not scrape {name}:{port}"


def test_grafana_dashboard_covers_the_metrics() -> None:
    dashboards = list((COMPOSE_DIR / "grafana" / "dashboards").glob("*.json"))
    assert dashboards
    exprs = " ".join(
        target["expr"]
        for path in dashboards
        for panel in json.loads(path.read_text())["panels"]
        for target in panel.get("targets", [])
    )
    missing = [metric for metric in METRICS if metric not in exprs]
    assert not missing, f"no panel for {missing}"


def test_dockerfile_targets_and_hardening() -> None:
    dockerfile = (ROOT / "deploy" / "docker" / "Dockerfile").read_text()
    targets = set(re.findall(r"^FROM \S+ AS (\S+)$", dockerfile, flags=re.MULTILINE))
    assert {"build", "runtime", "ingest", "profile", "journey", "notify"} <= targets
    assert "uv sync --frozen --no-dev" in dockerfile
    assert re.search(r"^USER 10001", dockerfile, flags=re.MULTILINE)
    assert "STOPSIGNAL SIGTERM" in dockerfile
    for service, port in (("ingest", 8001), ("profile", 8002), ("journey", 8003), ("notify", 8004)):
        assert f'ENTRYPOINT ["scrm", "serve", "{service}", "--host", "0.0.0.0", "--port", "{port}"]' in dockerfile
        assert f"http://127.0.0.1:{port}/healthz" in dockerfile
