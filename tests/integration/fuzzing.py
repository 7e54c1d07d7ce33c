"""Property-based fuzz of a service's HTTP API from its own OpenAPI schema (schemathesis)."""

from typing import Any

import schemathesis
from hypothesis import HealthCheck, given, settings


def operations(base_url: str) -> list[Any]:
    """Every operation under ``/v1/`` the service's ``/openapi.json`` documents."""
    schema = schemathesis.openapi.from_url(f"{base_url}/openapi.json").include(path_regex="^/v1/")
    return [result.ok() for result in schema.get_all_operations()]


def fuzz(operation: Any, headers: dict[str, str], allowed: tuple[int, ...] | None = None, examples: int = 30) -> None:
    """Send generated requests to one operation: none may answer 5xx; with ``allowed``, only those statuses."""

    @given(case=operation.as_strategy())
    @settings(max_examples=examples, deadline=None, suppress_health_check=list(HealthCheck), database=None)
    def no_server_error(case: Any) -> None:
        response = case.call(headers=headers)
        assert response.status_code < 500, (
            f"{case.method} {case.formatted_path}: {response.status_code} {response.text[:300]} "
            f"(query {case.query!r}, body {case.body!r})"[:1000]
        )
        if allowed is not None:
            assert response.status_code in allowed, f"{case.path}: {response.text[:300]}"

    no_server_error()
