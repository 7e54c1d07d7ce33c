"""The operators' and frontends' APIs under generated input: profile, journey and notify, each fuzzed from its own
OpenAPI schema with a tenant's API token. Whatever the request, the answer is never a 5xx: bad input is a 4xx
naming the field (ingest's own fuzz is in ``test_ingest_clients``)."""

import pytest

from scrm_stack.launcher import Stack
from tests.conftest import TenantCredentials, create_tenant
from tests.integration.fuzzing import fuzz, operations


@pytest.fixture(scope="module")
def fuzz_tenant(stack: Stack) -> TenantCredentials:
    return create_tenant(stack, "api-fuzz")


@pytest.mark.parametrize("service", ["profile", "journey", "notify"])
def test_fuzzed_requests_never_get_a_server_error(stack: Stack, fuzz_tenant: TenantCredentials, service: str) -> None:
    found = operations(stack.url(service))
    assert len(found) >= 3, [o.label for o in found]  # the schema documents the service's API
    failures = []
    for operation in found:  # every operation's first failure, not only the first operation's
        try:
            fuzz(operation, fuzz_tenant.bearer, examples=25)
        except AssertionError as failed:
            failures.append(str(failed).splitlines()[0])
    assert failures == [], "\n".join(failures)
