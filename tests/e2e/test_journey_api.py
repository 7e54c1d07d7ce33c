"""The journey API on the running stack: definitions in JSON and YAML, validation errors, publish, stats,
simulate, playbooks, and a journey run end to end (tracked event -> touch -> signed webhook), across a kill -9."""

import signal
import uuid
from typing import Any

import httpx
import pytest

from scrm_stack.launcher import Stack
from tests.conftest import TenantCredentials
from tests.e2e.helpers import eventually
from tests.e2e.test_walking_skeleton import point_webhook_at_sink, profile_of, webhooks_for

pytestmark = pytest.mark.e2e

YAML_JOURNEY = """
name: Club welcome
trigger: {type: event, event: Joined Club}
start: pause
nodes:
  pause: {type: wait, duration: {seconds: 6}, next: hello}
  hello: {type: send_touch, channels: [webhook], template_id: welcome, priority: transactional}
goal: {event: Order Completed, within_days: 30}
"""


def client(stack: Stack, tenant: TenantCredentials) -> httpx.AsyncClient:
    return httpx.AsyncClient(base_url=stack.url("journey"), headers=tenant.bearer, timeout=30)


async def test_definitions_validation_errors_publish_stats_and_simulate(
    stack: Stack, tenant: TenantCredentials
) -> None:
    async with client(stack, tenant) as api:
        listed = (await api.get("/v1/journeys")).json()
        assert [(j["journey_id"], j["built_in"], j["status"]) for j in listed] == [("welcome", True, "active")]
        split = {"type": "split", "branches": [{"weight": 70, "next": None}, {"weight": 20}]}
        bad = {"name": "x", "trigger": {"type": "event", "event": "A"}, "start": "s", "nodes": {"s": split}}
        refused = await api.post("/v1/journeys", json=bad)
        assert refused.status_code == 400
        assert refused.json()["error"]["field"] == "nodes.s.branches"
        assert "sum to 90" in refused.json()["error"]["message"]
        checked = await api.post(
            "/v1/journeys/validate",
            content="name: x\ntrigger: {type: event, event: A}\nstart: a\nnodes:\n  a: {type: send_touch, "
            "channels: [fax], template_id: t, next: b}\n",
            headers={"Content-Type": "application/yaml"},
        )
        assert checked.json()["valid"] is False
        assert {e["field"] for e in checked.json()["errors"]} == {"nodes.a.channels.0"}
        created = await api.post("/v1/journeys", content=YAML_JOURNEY, headers={"Content-Type": "application/yaml"})
        assert created.status_code == 201, created.text
        journey_id = created.json()["journey_id"]
        assert created.json()["status"] == "draft" and created.json()["version"] is None
        published = (await api.post(f"/v1/journeys/{journey_id}/publish")).json()
        assert (published["status"], published["version"]) == ("active", 1)
        simulated = await api.post(
            f"/v1/journeys/{journey_id}/simulate",
            json={"start_at": "2031-01-01T00:00:00Z",
                  "events": [{"at": "2031-01-02T00:00:00Z", "event": "Order Completed"}]},
        )  # fmt: skip
        assert simulated.status_code == 200, simulated.text
        result = simulated.json()
        assert [t["template_id"] for t in result["touches"]] == ["welcome"]
        assert result["touches"][0]["at"] == "2031-01-01T00:00:06Z"
        assert result["state"] == "completed" and result["goal_at"] == "2031-01-02T00:00:00Z"
        stats = (await api.get(f"/v1/journeys/{journey_id}/stats")).json()
        assert stats["entered"] == 0 and [n["node_id"] for n in stats["nodes"]] == ["pause", "hello"]
        assert (await api.get("/v1/journeys/nope/stats")).status_code == 404
        assert (await httpx.AsyncClient(base_url=stack.url("journey")).get("/v1/journeys")).status_code == 401


async def test_playbooks_install_once_and_stay_editable(stack: Stack, tenant: TenantCredentials) -> None:
    async with client(stack, tenant) as api:
        names = {p["name"] for p in (await api.get("/v1/playbooks")).json()}
        assert {"welcome", "first_three_purchases", "lifecycle_care", "high_value_care", "membership_expiry",
                "time_slice"} <= names  # fmt: skip
        installed = await api.post("/v1/playbooks/lifecycle_care/install")
        assert installed.status_code == 201 and installed.json()["status"] == "active"
        again = await api.post("/v1/playbooks/lifecycle_care/install")
        assert again.status_code == 409 and again.json()["error"]["code"] == "conflict"
        assert again.json()["error"]["field"] == "name" and "already installed" in again.json()["error"]["message"]
        edited = dict(installed.json()["definition"], name="Lifecycle care (ours)")
        assert (await api.put("/v1/journeys/lifecycle_care", json=edited)).status_code == 200
        republished = (await api.post("/v1/journeys/lifecycle_care/publish")).json()
        assert (republished["name"], republished["version"]) == ("Lifecycle care (ours)", 2)
        paused = (await api.post("/v1/journeys/welcome/pause")).json()
        assert (paused["status"], paused["built_in"]) == ("paused", False)


async def test_conflicts_are_409_naming_the_field(stack: Stack, tenant: TenantCredentials) -> None:
    async with client(stack, tenant) as api:
        created = await api.post("/v1/journeys", content=YAML_JOURNEY, headers={"Content-Type": "application/yaml"})
        journey_id = created.json()["journey_id"]
        url = f"/v1/journeys/{journey_id}"

        async def conflict(response: httpx.Response) -> str:
            assert response.status_code == 409, response.text
            error = response.json()["error"]
            assert error["code"] == "conflict" and journey_id in error["message"]
            return str(error["field"])

        assert await conflict(await api.post(f"{url}/resume")) == "status"  # a draft is not paused
        assert await conflict(await api.post(f"{url}/pause")) == "status"  # nor active yet
        assert (await api.post(f"{url}/publish")).status_code == 200
        published = await api.get(f"{url}/versions/1")
        assert published.status_code == 200 and published.json()["definition"]["name"] == "Club welcome"
        assert (await api.get(f"{url}/versions/7")).status_code == 404
        edited = await api.put(f"{url}/versions/1", content=YAML_JOURNEY, headers={"Content-Type": "application/yaml"})
        assert await conflict(edited) == "version"
        assert "PUT /v1/journeys/" in edited.json()["error"]["message"]
        assert (await api.post(f"{url}/pause")).status_code == 200
        assert await conflict(await api.post(f"{url}/pause")) == "status"
        assert (await api.post(f"{url}/archive")).status_code == 200
        assert await conflict(await api.post(f"{url}/publish")) == "status"
        put = await api.put(url, content=YAML_JOURNEY, headers={"Content-Type": "application/yaml"})
        assert await conflict(put) == "status"
        assert await conflict(await api.post(f"{url}/resume")) == "status"
        assert (await api.get(url)).json()["status"] == "archived"


async def test_tracked_event_runs_a_journey_to_a_signed_webhook_across_a_kill(
    stack: Stack, tenant: TenantCredentials
) -> None:
    await point_webhook_at_sink(stack, tenant)
    async with client(stack, tenant) as api:
        journey_id = (
            await api.post("/v1/journeys", content=YAML_JOURNEY, headers={"Content-Type": "application/yaml"})
        ).json()["journey_id"]
        await api.post(f"/v1/journeys/{journey_id}/publish")
    event = {"userId": "u-club", "messageId": f"m-{uuid.uuid4()}", "event": "Joined Club", "properties": {}}
    async with httpx.AsyncClient(base_url=stack.url("ingest")) as ingest:
        assert (await ingest.post("/v1/track", auth=(tenant.write_key, ""), json=event)).status_code == 200
    customer = await eventually(lambda: profile_of(stack, tenant, "u-club"), what="the customer in profile")

    async def instances() -> list[dict[str, Any]]:
        async with client(stack, tenant) as api:
            found = (await api.get(f"/v1/customers/{customer['customer_id']}/journeys")).json()["instances"]
        return [i for i in found if i["journey_id"] == journey_id]

    waiting = await eventually(instances, what="the instance waiting")
    assert waiting[0]["state"] == "waiting"
    stack.stop_process("journey", signal.SIGKILL)  # mid-wait: nothing graceful
    stack.start_service("journey", stack.service_env() | {"SCRM_ENV": "test"})
    stack.wait_ready(("journey",))

    async def hooks() -> list[dict[str, Any]]:
        return await webhooks_for(stack, tenant)

    [hook] = await eventually(hooks, timeout=60, what="the club webhook after the restart")
    assert hook["signature_valid"] is True
    assert hook["touch_key"] == f"{waiting[0]['instance_id']}:hello:1"
    done = await eventually(lambda: _completed(instances), what="the instance completed")
    assert [t["outcome"] for t in done["transitions"]].count("waited") == 1
    async with client(stack, tenant) as api:
        stats = (await api.get(f"/v1/journeys/{journey_id}/stats")).json()
    assert stats["entered"] == 1 and stats["states"] == {"completed": 1}
    assert {n["node_id"]: n["passed"] for n in stats["nodes"]} == {"pause": 1, "hello": 1}
    assert len(await hooks()) == 1


async def _completed(instances: Any) -> dict[str, Any] | None:
    found = await instances()
    return found[0] if found and found[0]["state"] == "completed" else None
