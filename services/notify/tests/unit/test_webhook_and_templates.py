from datetime import UTC, datetime

import httpx
import pytest

from scrm_kit.clock import FixedClock
from scrm_notify.adapters.channels.base import Credentials, OutboundMessage
from scrm_notify.adapters.channels.webhook import WebhookAdapter, sign, verify
from scrm_notify.domain.templates import RenderedMessage, TemplateFailure, TemplateSource, render, render_source

NOW = datetime(2026, 11, 25, 12, 0, tzinfo=UTC)


def test_signature_verifies_only_the_exact_body_and_secret() -> None:
    header = sign("s3cret-s3cret-s3cret", 1_700_000_000, b'{"a":1}')
    assert verify("s3cret-s3cret-s3cret", header, b'{"a":1}')
    assert not verify("s3cret-s3cret-s3cret", header, b'{"a":2}')
    assert not verify("another-secret-value", header, b'{"a":1}')
    assert not verify("s3cret-s3cret-s3cret", "garbage", b'{"a":1}')


def test_missing_template_variable_is_an_error_not_a_blank() -> None:
    assert "cus_1" in render("welcome", {"customer_id": "cus_1"})
    with pytest.raises(TemplateFailure):
        render("welcome", {})
    with pytest.raises(TemplateFailure):
        render("no-such-template", {"customer_id": "cus_1"})


def test_every_part_of_a_template_is_rendered_and_checked() -> None:
    source = TemplateSource("Hi {{ name }}", subject="For {{ name }}", params={"amount": "{{ coupon }}"})
    message = render_source("t", source, {"name": "Li", "coupon": "20"})
    assert (message.text, message.subject, dict(message.params)) == ("Hi Li", "For Li", {"amount": "20"})
    with pytest.raises(TemplateFailure, match="params.amount"):
        render_source("t", source, {"name": "Li"})


def test_sandbox_refuses_unsafe_attribute_access() -> None:
    with pytest.raises(TemplateFailure):
        render_source("t", TemplateSource("{{ x.__class__.__mro__[1].__subclasses__() }}"), {"x": 1})


async def _send(status: int) -> object:
    seen: list[httpx.Request] = []

    def handler(request: httpx.Request) -> httpx.Response:
        seen.append(request)
        return httpx.Response(status)

    outbound = OutboundMessage(
        "ten_1",
        "tk1",
        "webhook",
        "cus_1",
        RenderedMessage("hello"),
        Credentials(secret="k" * 20, url="http://hook.test"),
    )
    async with httpx.AsyncClient(transport=httpx.MockTransport(handler)) as client:
        result = await WebhookAdapter(client, FixedClock(NOW)).send(outbound)
    assert verify("k" * 20, seen[0].headers["X-SCRM-Signature"], seen[0].content)
    assert seen[0].headers["X-SCRM-Touch-Key"] == "tk1"
    return result


async def test_webhook_outcomes_by_status() -> None:
    assert (await _send(200)).kind == "ok"  # type: ignore[attr-defined]
    rejected = await _send(410)
    assert rejected.kind == "permanent" and "410" in rejected.reason  # type: ignore[attr-defined]
    for status in (408, 429, 503):
        assert (await _send(status)).kind == "retryable"  # type: ignore[attr-defined]
