"""Every SCRM_* variable that compose or the Helm chart sets for a container is one its Settings class reads.

The names are discovered from the Settings classes themselves (pydantic ``model_fields``, recursing into nested
groups, with the class's own ``env_prefix`` and ``env_nested_delimiter``), so a field added by a developer is
accepted here without touching this file, and a typo in compose.yaml or values.yaml fails.
"""

import importlib
import types
import typing
from collections.abc import Callable
from typing import Any

import pytest
from pydantic import BaseModel
from pydantic_settings import BaseSettings

from scrm_kit.settings import ServiceSettings

SERVICES = ("ingest", "profile", "journey", "notify")
REQUIRED_FOR_SERVICES = {"SCRM_DB__URL", "SCRM_KAFKA__BOOTSTRAP_SERVERS", "SCRM_ROLES"}
REQUIRED_FOR_JOBS = {"SCRM_DB__URL", "SCRM_KAFKA__BOOTSTRAP_SERVERS"}
# Variables for the Python runtime itself, not for Settings. Keep this short.
NOT_SETTINGS = {"PYTHONUNBUFFERED", "PYTHONDONTWRITEBYTECODE"}
VALID_ROLES = {"api", "consumer", "scheduler"}


def _nested_model(annotation: Any) -> type[BaseModel] | None:
    """The BaseModel class inside an annotation (plain, Optional, Annotated), if any."""
    if isinstance(annotation, type) and issubclass(annotation, BaseModel):
        return annotation
    if typing.get_origin(annotation) in (typing.Union, types.UnionType, typing.Annotated):
        for arg in typing.get_args(annotation):
            found = _nested_model(arg)
            if found is not None:
                return found
    return None


def env_names(settings_cls: type[BaseSettings]) -> set[str]:
    """Every environment variable a Settings class reads (upper-cased; pydantic-settings is case-insensitive)."""
    prefix = settings_cls.model_config.get("env_prefix", "")
    delimiter = settings_cls.model_config.get("env_nested_delimiter") or ""

    def walk(model: type[BaseModel], path: str) -> set[str]:
        names: set[str] = set()
        for field_name, field in model.model_fields.items():
            key = field.validation_alias if isinstance(field.validation_alias, str) else field.alias or field_name
            full = f"{path}{key}"
            names.add(full.upper())  # a whole group may also be given as JSON
            nested = _nested_model(field.annotation)
            if nested is not None and delimiter:
                names |= walk(nested, f"{full}{delimiter}")
        return names

    return walk(settings_cls, prefix)


def settings_for(service: str | None) -> type[BaseSettings]:
    """The Settings class of a service; None means the `scrm` CLI jobs (db upgrade, topics create)."""
    if service is None:
        return ServiceSettings
    return importlib.import_module(f"scrm_{service}.settings").Settings


def contract_errors(where: str, service: str | None, env: dict[str, Any], *, job: bool) -> list[str]:
    """What is wrong with one container's environment; empty when it keeps the contract."""
    allowed = env_names(settings_for(service))
    errors = [
        f"{where}: {name} is not read by {settings_for(service).__module__}.{settings_for(service).__name__}"
        for name in env
        if name.upper() not in allowed and name not in NOT_SETTINGS
    ]
    required = REQUIRED_FOR_JOBS if job else REQUIRED_FOR_SERVICES
    errors += [f"{where}: required {name} is not set" for name in sorted(required - set(env))]
    if not job and "SCRM_ROLES" in env and isinstance(env["SCRM_ROLES"], str):
        roles = {r.strip() for r in env["SCRM_ROLES"].split(",") if r.strip()}
        if not roles or not roles <= VALID_ROLES:
            errors.append(f"{where}: SCRM_ROLES={env['SCRM_ROLES']!r} is not a comma list of {sorted(VALID_ROLES)}")
        if service == "ingest" and roles != {"api"}:
            errors.append(f"{where}: ingest has only the api role, got {env['SCRM_ROLES']!r}")
    return errors


# --- the discovery itself ------------------------------------------------------------------------------------


def test_env_names_are_discovered_from_settings() -> None:
    base = env_names(ServiceSettings)
    assert {"SCRM_ENV", "SCRM_ROLES", "SCRM_DB__URL", "SCRM_DB__POOL_SIZE", "SCRM_KAFKA__BOOTSTRAP_SERVERS"} <= base
    assert "SCRM_NOPE" not in base
    assert "SCRM_CONSUMER_GROUP" in env_names(settings_for("profile"))
    assert "SCRM_WEBHOOK_TIMEOUT_SECONDS" in env_names(settings_for("notify"))
    assert "SCRM_WEBHOOK_TIMEOUT_SECONDS" not in env_names(settings_for("profile"))
    for service in SERVICES:
        assert base <= env_names(settings_for(service)), service


# --- compose ---------------------------------------------------------------------------------------------------


def _compose_env(spec: dict[str, Any]) -> dict[str, Any]:
    env = spec.get("environment") or {}
    if isinstance(env, list):
        env = dict(item.split("=", 1) if "=" in item else (item, None) for item in env)
    return dict(env)


def _compose_scrm_containers(compose: dict[str, Any]) -> dict[str, tuple[str | None, bool]]:
    """SCRM containers of compose.yaml: name -> (service or None for CLI jobs, is_job), from the build target."""
    found: dict[str, tuple[str | None, bool]] = {}
    for name, spec in compose["services"].items():
        target = (spec.get("build") or {}).get("target")
        if target in SERVICES:
            found[name] = (target, False)
        elif target == "runtime":
            found[name] = (None, True)
        else:
            assert not any(k.startswith("SCRM_") for k in _compose_env(spec)), (
                f"{name} sets SCRM_* but is no SCRM image"
            )
    return found


def test_compose_env_matches_settings(compose: dict[str, Any]) -> None:
    containers = _compose_scrm_containers(compose)
    assert {"migrate", "topics", "ingest", "profile-api", "profile-consumer"} <= set(containers)
    assert sum(1 for _, job in containers.values() if not job) >= 7, "four services, three split into api + consumer"
    errors: list[str] = []
    for name, (service, job) in containers.items():
        spec = compose["services"][name]
        assert not spec.get("env_file"), f"{name}: env_file would hide variables from this check; use environment"
        errors += contract_errors(f"compose {name}", service, _compose_env(spec), job=job)
    assert not errors, "\n".join(errors)


def test_compose_services_wait_for_migrate_and_topics(compose: dict[str, Any]) -> None:
    for name, (_, job) in _compose_scrm_containers(compose).items():
        spec = compose["services"][name]
        assert spec.get("healthcheck") or job, f"{name} has no healthcheck"
        if not job:
            deps = spec.get("depends_on") or {}
            for setup in ("migrate", "topics"):
                assert deps.get(setup, {}).get("condition") == "service_completed_successfully", (name, setup)
    assert compose["services"]["migrate"]["command"] == ["db", "upgrade"]
    assert compose["services"]["topics"]["command"][:2] == ["topics", "create"]


# --- Helm ------------------------------------------------------------------------------------------------------


def _helm_containers(docs: list[dict[str, Any]]) -> list[tuple[str, str | None, bool, dict[str, Any]]]:
    """(where, service, is_job, env) for each SCRM container of the rendered chart; env values may be refs."""
    by_kind_name = {(d["kind"], d["metadata"]["name"]): d for d in docs}
    found = []
    for doc in docs:
        if doc["kind"] == "Deployment":
            service = doc["metadata"]["labels"]["scrm.io/service"]
            assert service in SERVICES, doc["metadata"]["name"]
            job = False
        elif doc["kind"] == "Job":
            service, job = None, True
        else:
            continue
        for container in doc["spec"]["template"]["spec"]["containers"]:
            env: dict[str, Any] = {}
            for item in container.get("env", []):
                assert item["name"] not in env, f"{doc['metadata']['name']}: {item['name']} set twice"
                env[item["name"]] = item.get("value", item.get("valueFrom"))
            for source in container.get("envFrom", []):
                ref = source.get("configMapRef") or source.get("secretRef")
                kind = "ConfigMap" if "configMapRef" in source else "Secret"
                target = by_kind_name.get((kind, ref["name"]))
                assert target is not None, f"{doc['metadata']['name']}: envFrom {kind} {ref['name']} is not rendered"
                env.update(dict.fromkeys({**target.get("data", {}), **target.get("stringData", {})}, "<from envFrom>"))
            found.append((f"{doc['kind']} {doc['metadata']['name']}", service, job, env))
    return found


@pytest.mark.deploy
@pytest.mark.timeout(1800)
@pytest.mark.parametrize("values", ["default", "prod", "all-features", "existing-secret"])
def test_helm_env_matches_settings(rendered: dict[str, list[dict[str, Any]]], values: str) -> None:
    containers = _helm_containers(rendered[values])
    assert len([c for c in containers if not c[2]]) >= 7
    errors: list[str] = []
    for where, service, job, env in containers:
        errors += contract_errors(f"helm[{values}] {where}", service, env, job=job)
    assert not errors, "\n".join(errors)


@pytest.mark.deploy
@pytest.mark.timeout(1800)
@pytest.mark.parametrize("values", ["default", "prod", "all-features", "existing-secret"])
def test_helm_db_url_secret_exists(rendered: dict[str, list[dict[str, Any]]], values: str) -> None:
    """SCRM_DB__URL points at a Secret and key the chart renders (or at postgres.existingSecret)."""
    secrets = {
        d["metadata"]["name"]: {**d.get("data", {}), **d.get("stringData", {})}
        for d in rendered[values]
        if d["kind"] == "Secret"
    }
    external = {"existing-secret": "my-db", "prod": "scrm-db"}.get(values)
    for where, _, _, env in _helm_containers(rendered[values]):
        ref = env["SCRM_DB__URL"]["secretKeyRef"]
        if ref["name"] == external:
            continue
        assert ref["name"] in secrets, f"{where}: Secret {ref['name']} is not rendered"
        assert ref["key"] in secrets[ref["name"]], f"{where}: Secret {ref['name']} has no key {ref['key']}"


@pytest.mark.deploy
@pytest.mark.timeout(1800)
def test_helm_roles_split(rendered: dict[str, list[dict[str, Any]]]) -> None:
    roles = {
        (d["metadata"]["labels"]["scrm.io/service"], d["metadata"]["labels"]["scrm.io/role"])
        for d in rendered["default"]
        if d["kind"] == "Deployment"
    }
    assert roles == {("ingest", "api")} | {
        (s, r) for s in ("profile", "journey", "notify") for r in ("api", "consumer")
    }


@pytest.mark.deploy
@pytest.mark.timeout(1800)
def test_helm_contract_catches_a_typo(render: Callable[..., list[dict[str, Any]]]) -> None:
    """The check is not vacuous: a misspelt setting in values.yaml is reported."""
    docs = render("--set-string", "services.profile.env.SCRM_CONSUMER_GRUOP=profile")
    errors = [
        e for where, service, job, env in _helm_containers(docs) for e in contract_errors(where, service, env, job=job)
    ]
    assert any("SCRM_CONSUMER_GRUOP" in e and "profile-api" in e for e in errors), errors
