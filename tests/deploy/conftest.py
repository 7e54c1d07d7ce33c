"""Fixtures for the deploy/ checks: the pinned helm binary (built from Go modules on first use), rendered charts,
and YAML loading that refuses duplicate keys (Kubernetes and Compose silently keep the last one)."""

import os
import subprocess
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
import yaml

ROOT = Path(__file__).resolve().parents[2]
CHART = ROOT / "deploy" / "helm" / "scrm"
COMPOSE_DIR = ROOT / "deploy" / "compose"
RELEASE = "scrm-check"

# Values layered on the defaults for the "everything on" rendering: every optional template is drawn.
ALL_FEATURES = [
    "--set",
    "serviceMonitor.enabled=true",
    "--set",
    "networkPolicy.enabled=true",
    "--set",
    "defaults.autoscaling.enabled=true",
    "--set",
    "services.profile.scheduler.enabled=true",
    "--set",
    "services.journey.scheduler.enabled=true",
    "--set",
    "services.notify.scheduler.enabled=true",
    "--set-string",
    "services.ingest.env.SCRM_MAX_EVENT_BYTES=65536",
    "--set-string",
    "services.notify.env.SCRM_WEBHOOK_TIMEOUT_SECONDS=3",
    "--set-string",
    "extraEnv.SCRM_KAFKA__CLIENT_ID=overridden",
]

RENDERINGS: dict[str, list[str]] = {
    "default": [],
    "prod": ["-f", str(CHART / "values-prod.yaml")],
    "all-features": ALL_FEATURES,
    "existing-secret": ["--set", "postgres.existingSecret=my-db", "--set", "postgres.existingSecretKey=url"],
}


class UniqueKeyLoader(yaml.SafeLoader):
    """A SafeLoader that raises on a mapping key given twice (after resolving `<<` merge keys)."""

    def construct_mapping(self, node: yaml.MappingNode, deep: bool = False) -> dict[Any, Any]:
        # Only the node's own keys count: keys merged in with `<<` may be overridden, that is what merges are for.
        own = [self.construct_object(k, deep=True) for k, _ in node.value if k.tag != "tag:yaml.org,2002:merge"]
        repeated = sorted({str(k) for k in own if own.count(k) > 1})
        if repeated:
            raise yaml.constructor.ConstructorError(None, None, f"duplicate keys {repeated}", node.start_mark)
        return super().construct_mapping(node, deep=deep)


def load_yaml_docs(text: str) -> list[Any]:
    return [doc for doc in yaml.load_all(text, Loader=UniqueKeyLoader) if doc is not None]


@pytest.fixture(scope="session")
def helm() -> str:
    """Path of the pinned helm binary; deploy/ensure-helm.sh builds it when absent (never skipped)."""
    if os.environ.get("HELM"):
        return os.environ["HELM"]
    result = subprocess.run(
        ["bash", str(ROOT / "deploy" / "ensure-helm.sh")],
        capture_output=True,
        text=True,
        timeout=1500,
        check=False,
    )
    assert result.returncode == 0, f"deploy/ensure-helm.sh failed:\n{result.stderr}"
    return result.stdout.strip().splitlines()[-1]


def helm_template(helm: str, *args: str) -> list[dict[str, Any]]:
    result = subprocess.run(
        [helm, "template", RELEASE, str(CHART), "--namespace", "scrm", *args],
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert result.returncode == 0, f"helm template {' '.join(args)} failed:\n{result.stderr}"
    return load_yaml_docs(result.stdout)


@pytest.fixture(scope="session")
def rendered(helm: str) -> dict[str, list[dict[str, Any]]]:
    """The chart rendered with each set of values in RENDERINGS."""
    return {name: helm_template(helm, *args) for name, args in RENDERINGS.items()}


@pytest.fixture(scope="session")
def render(helm: str) -> Callable[..., list[dict[str, Any]]]:
    """Render the chart with extra `helm template` arguments."""
    return lambda *args: helm_template(helm, *args)


@pytest.fixture(scope="session")
def compose() -> dict[str, Any]:
    docs = load_yaml_docs((COMPOSE_DIR / "compose.yaml").read_text())
    assert len(docs) == 1
    return docs[0]
