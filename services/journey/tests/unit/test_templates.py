"""Template ids against notify's catalogue: which nodes send which template on which channels, the errors a user
reads when one is missing, and what happens when notify cannot answer (fakes of our own port; the real notify is
in tests/e2e/test_journey_templates.py)."""

import socket
from collections.abc import Sequence
from typing import Any

import httpx
import pytest

from scrm_journey.adapters.notify import NotifyTemplates
from scrm_journey.domain.templates import NotifyUnavailable, TemplateCoverage, template_uses
from scrm_journey.domain.validation import DefinitionError, parse_definition
from scrm_journey.service.definitions import checked_definition, validation_problems


class Catalogue:
    """A tenant's templates as {template id: {channel: locales}}; built-ins answer for every channel."""

    def __init__(self, templates: dict[str, dict[str, list[str]]], built_in: Sequence[str] = ()) -> None:
        self.templates = templates
        self.built_in = set(built_in)
        self.asked: list[tuple[str, str]] = []

    async def coverage(self, needs: Sequence[tuple[str, str]]) -> list[TemplateCoverage]:
        self.asked += needs
        found = []
        for template_id, channel in needs:
            mine = self.templates.get(template_id, {})
            locales = tuple(sorted({*mine.get(channel, []), *mine.get("*", [])}))
            defined = "default" in locales or template_id in self.built_in
            found.append(TemplateCoverage(template_id, channel, defined, locales))
        return found


class Down:
    async def coverage(self, needs: Sequence[tuple[str, str]]) -> list[TemplateCoverage]:
        raise NotifyUnavailable("notify (http://notify:8004) is unreachable (ConnectError)")


def journey(nodes: dict[str, Any]) -> dict[str, Any]:
    return {"name": "t", "trigger": {"type": "event", "event": "Signed Up"}, "start": next(iter(nodes)),
            "nodes": nodes}  # fmt: skip


SENDING = journey(
    {
        "hello": {"type": "send_touch", "channels": ["wecom", "sms"], "template_id": "spring_sale", "next": "task"},
        "task": {"type": "staff_task", "title": "Call", "timeout": {"days": 1}, "on_expired": "coupon"},
        "coupon": {"type": "issue_coupon", "coupon_id": "c1", "channels": ["email"], "next": "tag"},
        "tag": {"type": "tag", "add": ["x"]},
    }
)


def test_every_sending_node_is_found_with_the_channels_it_may_use() -> None:
    uses = {u.node_id: (u.template_id, u.channels) for u in template_uses(parse_definition(SENDING))}
    assert uses == {
        "hello": ("spring_sale", ("wecom", "sms")),
        "task": ("staff_task", ("staff_task",)),
        "coupon": ("coupon", ("email",)),
    }


async def test_a_template_missing_on_one_channel_is_an_error_naming_node_field_and_channel() -> None:
    catalogue = Catalogue({"spring_sale": {"wecom": ["default"]}}, built_in=["staff_task", "coupon"])
    with pytest.raises(DefinitionError) as caught:
        await checked_definition(SENDING, catalogue)
    [problem] = caught.value.problems
    assert problem.field == "nodes.hello.template_id"
    assert problem.message.startswith('template "spring_sale" is not defined in notify for channel sms ')
    assert "PUT /v1/templates/spring_sale" in problem.message
    assert sorted(catalogue.asked) == sorted(
        [("spring_sale", "wecom"), ("spring_sale", "sms"), ("staff_task", "staff_task"), ("coupon", "email")]
    )


async def test_missing_everywhere_lists_the_channels_and_a_template_only_in_english_says_so() -> None:
    catalogue = Catalogue({"spring_sale": {"*": ["en"]}})
    with pytest.raises(DefinitionError) as caught:
        await checked_definition(SENDING, catalogue)
    found = {p.field: p.message for p in caught.value.problems}
    assert found["nodes.hello.template_id"].startswith(
        'template "spring_sale" is not defined in notify for channels wecom and sms in the default locale (only in en)'
    )
    assert found["nodes.task.template_id"].startswith(
        'template "staff_task" is not defined in notify for channel staff'
    )
    assert found["nodes.coupon.template_id"].startswith('template "coupon" is not defined in notify for channel email')


async def test_a_definition_whose_templates_exist_passes() -> None:
    catalogue = Catalogue({"spring_sale": {"*": ["default"]}}, built_in=["staff_task", "coupon"])
    assert (await checked_definition(SENDING, catalogue)).start == "hello"


async def test_graph_and_template_problems_come_together() -> None:
    broken = journey({"a": {"type": "send_touch", "channels": ["sms"], "template_id": "nope", "next": "gone"}})
    with pytest.raises(DefinitionError) as caught:
        await checked_definition(broken, Catalogue({}))
    assert {p.field for p in caught.value.problems} == {"nodes.a", "nodes.a.template_id"}
    assert {p.field for p in await validation_problems(broken, Catalogue({}))} == {"nodes.a", "nodes.a.template_id"}


async def test_notify_down_refuses_to_store_but_validation_marks_each_node_not_checked() -> None:
    with pytest.raises(NotifyUnavailable, match="notify"):
        await checked_definition(SENDING, Down())
    problems = {p.field: p.message for p in await validation_problems(SENDING, Down())}
    assert set(problems) == {"nodes.hello.template_id", "nodes.task.template_id", "nodes.coupon.template_id"}
    assert problems["nodes.hello.template_id"].startswith('template "spring_sale" not checked: notify (http://notify')
    # a definition with graph problems still gets them (400), not a 503
    broken = journey({"a": {"type": "send_touch", "channels": ["sms"], "template_id": "x", "next": "gone"}})
    with pytest.raises(DefinitionError):
        await checked_definition(broken, Down())


async def test_the_http_adapter_names_notify_when_it_is_unreachable_or_failing() -> None:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        closed = sock.getsockname()[1]  # bound, never listening: connection refused
        async with httpx.AsyncClient(base_url=f"http://127.0.0.1:{closed}", timeout=2) as client:
            with pytest.raises(NotifyUnavailable, match=rf"notify \(http://127.0.0.1:{closed}\) is unreachable"):
                await NotifyTemplates(client, "Bearer at_x").coverage([("welcome", "sms")])

    def failing(request: httpx.Request) -> httpx.Response:
        assert request.headers["authorization"] == "Bearer at_x", "the caller's token is forwarded"
        return httpx.Response(500, text="boom")

    transport = httpx.MockTransport(failing)
    async with httpx.AsyncClient(base_url="http://notify:8004", transport=transport) as client:
        with pytest.raises(NotifyUnavailable, match=r"notify \(http://notify:8004\) answered 500"):
            await NotifyTemplates(client, "Bearer at_x").coverage([("welcome", "sms")])
