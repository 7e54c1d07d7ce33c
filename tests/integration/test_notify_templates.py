"""Every template id the journey service's built-in playbooks send exists in notify, for every channel the
playbook may use, and renders with what the journey passes; a shop's own template still wins.

Looked up through notify's real template lookup on the real PostgreSQL, for a tenant with no templates of its own,
so a new playbook (or a renamed template id) without default copy fails here rather than in production.
"""

from collections.abc import AsyncIterator
from typing import Any

import pytest

from scrm_contracts import CustomerSnapshot
from scrm_journey.domain.definition import IssueCouponNode, SendTouchNode, StaffTaskNode
from scrm_journey.domain.playbooks import PLAYBOOKS
from scrm_notify.adapters import touches
from scrm_notify.domain.templates import TemplateSource, render_source
from scrm_notify.service import templates
from tests.integration.notify_harness import NotifyHarness, harness


def playbook_touches() -> list[tuple[str, str, str, str, dict[str, Any], str]]:
    """``(playbook, node, template_id, channel, node variables, priority)`` for every touch a playbook can send."""
    found = []
    for name, playbook in PLAYBOOKS.items():
        for node_id, node in playbook.definition.nodes.items():
            if isinstance(node, SendTouchNode):
                for channel in node.channels:
                    found.append((name, node_id, node.template_id, channel, dict(node.variables), node.priority))
            elif isinstance(node, IssueCouponNode):
                for channel in node.channels:
                    found.append((name, node_id, node.template_id, channel, {"coupon_id": node.coupon_id}, "marketing"))
            elif isinstance(node, StaffTaskNode):
                found.append((name, node_id, node.template_id, "staff_task", {"title": node.title}, "marketing"))
    return found


TOUCHES = playbook_touches()


def journey_variables(node_variables: dict[str, Any]) -> dict[str, Any]:
    """What a touch renders with: the customer's profile fields (as notify stores them), then the journey's."""
    profile = CustomerSnapshot(lifecycle_stage="active", traits={"name": "Li"}).model_dump(
        mode="json", exclude={"contact", "reachability"}
    )
    journey = {"customer_id": "cus_1", "user_id": "u_1", "journey_id": "j_1", **node_variables}
    return {**profile, "customer": profile, **journey}


@pytest.fixture
async def notify(db_url: str) -> AsyncIterator[NotifyHarness]:
    async for h in harness(db_url, "http://127.0.0.1:9"):
        yield h


def test_the_playbooks_send_touches_on_every_kind_of_channel() -> None:
    channels = {t[3] for t in TOUCHES}
    assert {"webhook", "wecom", "wechat_oa", "sms", "staff_task"} <= channels
    assert len({t[2] for t in TOUCHES}) >= 10, "the enumeration found the playbooks' template ids"


@pytest.mark.parametrize("locale", [None, "zh-CN", "en", "en-US"])
async def test_every_playbook_template_renders_on_every_channel_it_may_use(
    notify: NotifyHarness, locale: str | None
) -> None:
    missing, broken = [], []
    async with notify.sessions() as session:
        for playbook, node_id, template_id, channel, node_variables, priority in TOUCHES:
            where = f"{playbook}.{node_id}: {template_id!r} on {channel}"
            source = await touches.template(session, notify.tenant_id, template_id, channel, locale)
            if source is None:
                missing.append(where)
                continue
            try:
                message = render_source(template_id, source, journey_variables(node_variables))
            except Exception as exc:  # noqa: BLE001 - collect every failure, report them together
                broken.append(f"{where}: {exc}")
                continue
            assert message.text.strip(), where
            if channel == "sms" and priority == "marketing":
                assert "回T退订" in message.text or "opt out" in message.text, f"{where}: no unsubscribe hint"
            if channel == "email":
                assert message.subject, f"{where}: no subject"
            english = locale is not None and locale.startswith("en")
            assert english != any("\u4e00" <= ch <= "\u9fff" for ch in message.text), f"{where}: wrong language"
    assert missing == [], f"no notify template for: {missing}"
    assert broken == [], f"templates that do not render: {broken}"


async def test_a_shops_own_template_replaces_the_default_per_tenant(notify: NotifyHarness) -> None:
    await templates.save(
        notify.sessions,
        notify.tenant_id,
        "win_back_offer",
        "*",
        "default",
        TemplateSource("回来看看吧 {{ customer_id }}"),
    )
    async with notify.sessions() as session:
        own = await touches.template(session, notify.tenant_id, "win_back_offer", "wecom", None)
        other_tenant = await touches.template(session, f"{notify.tenant_id}_x", "win_back_offer", "wecom", None)
    assert own is not None and render_source("win_back_offer", own, {"customer_id": "c9"}).text == "回来看看吧 c9"
    assert other_tenant is not None and "回来看看吧" not in other_tenant.body
