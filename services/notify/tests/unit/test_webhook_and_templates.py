from datetime import UTC, datetime

import httpx
import pytest

from scrm_kit.errors import RetryableError
from scrm_notify.adapters.webhook import WebhookAdapter, WebhookTarget, sign, verify
from scrm_notify.domain.templates import TemplateFailure, render

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


async def _send(status: int) -> object:
    seen: list[httpx.Request] = []

    def handler(request: httpx.Request) -> httpx.Response:
        seen.append(request)
        return httpx.Response(status)

    async with httpx.AsyncClient(transport=httpx.MockTransport(handler)) as client:
        result = await WebhookAdapter(client).send(WebhookTarget("http://hook.test/x", "k" * 20), "tk1", {"a": 1}, NOW)
    assert verify("k" * 20, seen[0].headers["X-SCRM-Signature"], seen[0].content)
    assert seen[0].headers["X-SCRM-Touch-Key"] == "tk1"
    return result


async def test_webhook_outcomes_by_status() -> None:
    assert (await _send(200)).ok  # type: ignore[attr-defined]
    rejected = await _send(410)
    assert not rejected.ok and "410" in rejected.reason  # type: ignore[attr-defined]
    for status in (429, 503):
        with pytest.raises(RetryableError):
            await _send(status)
