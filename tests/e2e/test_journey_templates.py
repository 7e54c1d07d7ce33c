"""Journey definitions name templates that must exist in notify, checked against the running notify.

An unknown template id is refused naming the node and field; a template created through notify's API makes the
journey valid (per channel, per tenant); the built-in playbooks pass on notify's built-in copy; and a journey
service that cannot reach notify refuses to publish rather than accept unchecked template ids.
"""

import logging
import socket
from collections.abc import AsyncIterator
from typing import Any

import httpx
import pytest

from scrm_stack.launcher import Stack
from tests.conftest import TenantCredentials, create_tenant

pytestmark = pytest.mark.e2e


def sale(template_id: str = "spring_sale", channels: tuple[str, ...] = ("wecom", "sms")) -> dict[str, Any]:
    return {
        "name": "Spring sale",
        "trigger": {"type": "event", "event": "Joined Club"},
        "start": "wait",
        "nodes": {
            "wait": {"type": "wait", "duration": {"days": 1}, "next": "nudge"},
            "nudge": {"type": "send_touch", "channels": list(channels), "template_id": template_id},
        },
    }


def journey_api(stack: Stack, tenant: TenantCredentials) -> httpx.AsyncClient:
    return httpx.AsyncClient(base_url=stack.url("journey"), headers=tenant.bearer, timeout=30)


def notify_api(stack: Stack, tenant: TenantCredentials) -> httpx.AsyncClient:
    return httpx.AsyncClient(base_url=stack.url("notify"), headers=tenant.bearer, timeout=30)


def refused_field(response: httpx.Response) -> tuple[str, str]:
    assert response.status_code == 400, response.text
    error = response.json()["error"]
    assert error["code"] == "invalid_input"
    return error["field"], error["message"]


async def put_template(stack: Stack, tenant: TenantCredentials, template_id: str, **body: str) -> None:
    async with notify_api(stack, tenant) as notify:
        saved = await notify.put(f"/v1/templates/{template_id}", json={"body": "春季特惠，欢迎选购。", **body})
        assert saved.status_code == 200, saved.text


async def test_an_unknown_template_is_refused_naming_the_node_and_field(
    stack: Stack, tenant: TenantCredentials
) -> None:
    async with journey_api(stack, tenant) as api:
        refused = await api.post("/v1/journeys", json=sale("no_such_template"))
        field, message = refused_field(refused)
        assert field == "nodes.nudge.template_id"
        assert 'template "no_such_template" is not defined in notify for channels wecom and sms' in message
        checked = (await api.post("/v1/journeys/validate", json=sale("no_such_template"))).json()
        assert checked["valid"] is False
        assert [e["field"] for e in checked["errors"]] == ["nodes.nudge.template_id"]
        assert [j["journey_id"] for j in (await api.get("/v1/journeys")).json()] == ["welcome"], "nothing stored"


async def test_a_template_made_through_notify_counts_per_channel_and_publish_checks_again(
    stack: Stack, tenant: TenantCredentials
) -> None:
    await put_template(stack, tenant, "spring_sale", channel="wecom")
    async with journey_api(stack, tenant) as api:
        field, message = refused_field(await api.post("/v1/journeys", json=sale()))
        assert field == "nodes.nudge.template_id"
        assert message.startswith(
            'nodes.nudge.template_id: template "spring_sale" is not defined in notify for channel sms '
        ), message
        await put_template(stack, tenant, "spring_sale", channel="sms")
        assert (await api.post("/v1/journeys/validate", json=sale())).json() == {"valid": True, "errors": []}
        created = await api.post("/v1/journeys", json=sale())
        assert created.status_code == 201, created.text
        journey_id = created.json()["journey_id"]
        async with notify_api(stack, tenant) as notify:
            deleted = await notify.delete("/v1/templates/spring_sale", params={"channel": "sms"})
            assert deleted.status_code == 204
        field, message = refused_field(await api.post(f"/v1/journeys/{journey_id}/publish"))
        assert field == "nodes.nudge.template_id" and "for channel sms" in message
        assert (await api.get(f"/v1/journeys/{journey_id}")).json()["status"] == "draft", "not published"
        await put_template(stack, tenant, "spring_sale")  # channel "*": any channel
        published = await api.post(f"/v1/journeys/{journey_id}/publish")
        assert published.status_code == 200, published.text
        assert (published.json()["status"], published.json()["version"]) == ("active", 1)


async def test_a_template_only_in_another_locale_is_not_enough(stack: Stack, tenant: TenantCredentials) -> None:
    await put_template(stack, tenant, "spring_sale_en", locale="en", body="Spring sale!")
    async with journey_api(stack, tenant) as api:
        field, message = refused_field(await api.post("/v1/journeys", json=sale("spring_sale_en", ("sms",))))
        assert field == "nodes.nudge.template_id"
        assert "in the default locale (only in en)" in message
    async with notify_api(stack, tenant) as notify:  # notify's own answer, as its docs describe it
        needs = [{"template_id": "spring_sale_en", "channel": "sms"}, {"template_id": "welcome", "channel": "sms"}]
        answer = await notify.post("/v1/templates/check", json={"needs": needs})
    assert answer.status_code == 200, answer.text
    assert answer.json()["items"] == [
        {"template_id": "spring_sale_en", "channel": "sms", "defined": False, "source": None, "locales": ["en"]},
        {"template_id": "welcome", "channel": "sms", "defined": True, "source": "built_in", "locales": []},
    ]


async def test_built_in_playbooks_validate_and_install_on_notify_built_in_copy(
    stack: Stack, tenant: TenantCredentials
) -> None:
    async with journey_api(stack, tenant) as api:
        playbooks = (await api.get("/v1/playbooks")).json()
        assert len(playbooks) >= 7
        for playbook in playbooks:
            checked = (await api.post("/v1/journeys/validate", json=playbook["definition"])).json()
            assert checked == {"valid": True, "errors": []}, (playbook["name"], checked)
            if playbook["default"]:
                continue
            installed = await api.post(f"/v1/playbooks/{playbook['name']}/install")
            assert installed.status_code == 201, installed.text
            assert installed.json()["status"] == "active"
        # the tenant's own copy of a playbook, edited and republished, is checked like any definition
        edited = dict(playbooks[0]["definition"], name="Welcome (ours)")
        assert (await api.put(f"/v1/journeys/{playbooks[0]['name']}", json=edited)).status_code == 200
        assert (await api.post(f"/v1/journeys/{playbooks[0]['name']}/publish")).status_code == 200


async def test_another_tenants_template_does_not_count(stack: Stack, tenant: TenantCredentials) -> None:
    other = create_tenant(stack, "template owner")
    await put_template(stack, other, "vip_gala")
    async with journey_api(stack, tenant) as api:
        field, message = refused_field(await api.post("/v1/journeys", json=sale("vip_gala")))
        assert field == "nodes.nudge.template_id" and 'template "vip_gala" is not defined' in message
    async with journey_api(stack, other) as api:
        assert (await api.post("/v1/journeys", json=sale("vip_gala"))).status_code == 201


def closed_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


@pytest.fixture
async def journey_without_notify(stack: Stack, monkeypatch: pytest.MonkeyPatch) -> AsyncIterator[httpx.AsyncClient]:
    """The journey API in-process, on the stack's database and Kafka, with SCRM_NOTIFY_URL where nothing listens."""
    from scrm_journey.entrypoints.api import app

    env = stack.service_env()
    for name in ("SCRM_DB__URL", "SCRM_KAFKA__BOOTSTRAP_SERVERS", "SCRM_KAFKA__ENABLE_IDEMPOTENCE"):
        monkeypatch.setenv(name, env[name])
    monkeypatch.setenv("SCRM_ROLES", "api")
    monkeypatch.setenv("SCRM_ENV", "test")
    monkeypatch.setenv("SCRM_NOTIFY_URL", f"http://127.0.0.1:{closed_port()}")
    application = app()
    root = logging.getLogger()
    handlers, level = root.handlers[:], root.level  # the service sets up its own JSON logging on start
    try:
        async with application.router.lifespan_context(application):
            transport = httpx.ASGITransport(app=application)
            async with httpx.AsyncClient(transport=transport, base_url="http://journey", timeout=30) as client:
                yield client
    finally:
        root.handlers[:] = handlers
        root.setLevel(level)


async def test_with_notify_unreachable_publish_refuses_with_503_naming_notify(
    stack: Stack, tenant: TenantCredentials, journey_without_notify: httpx.AsyncClient
) -> None:
    async with journey_api(stack, tenant) as api:  # stored while notify was up
        created = await api.post("/v1/journeys", json=sale("welcome"))
        assert created.status_code == 201, created.text
        journey_id = created.json()["journey_id"]
    api = journey_without_notify
    refused = await api.post(f"/v1/journeys/{journey_id}/publish", headers=tenant.bearer)
    assert refused.status_code == 503, refused.text
    error = refused.json()["error"]
    assert error["code"] == "notify_unavailable"
    assert error["message"].startswith("notify (http://127.0.0.1:") and "is unreachable" in error["message"]
    assert (await api.get(f"/v1/journeys/{journey_id}", headers=tenant.bearer)).json()["status"] == "draft"
    assert (await api.post("/v1/journeys", json=sale("welcome"), headers=tenant.bearer)).status_code == 503
    checked = (await api.post("/v1/journeys/validate", json=sale("welcome"), headers=tenant.bearer)).json()
    assert checked["valid"] is False
    assert [e["field"] for e in checked["errors"]] == ["nodes.nudge.template_id"]
    assert "not checked: notify" in checked["errors"][0]["message"]
    # what does not store a definition still works: installing a built-in playbook, pausing
    installed = await api.post("/v1/playbooks/time_slice/install", headers=tenant.bearer)
    assert installed.status_code == 201, installed.text
    assert (await api.post("/v1/journeys/time_slice/pause", headers=tenant.bearer)).status_code == 200
