"""The generic webhook channel: an HTTP POST of the message, HMAC-SHA256 signed.

Receivers verify ``X-SCRM-Signature: t=<unix seconds>,v1=<hex>`` where ``v1`` is
``HMAC_SHA256(secret, f"{t}.{raw body}")``, and dedupe on ``X-SCRM-Touch-Key`` (a retried delivery carries the
same key). Answers: 2xx sent; 408, 429, 5xx and network errors retryable; other 4xx permanent.
"""

import hashlib
import hmac

import httpx
import orjson

from scrm_kit.clock import Clock
from scrm_notify.adapters.channels.base import Credentials, OutboundMessage, transport_outcome
from scrm_notify.domain.delivery import SendOutcome

RETRYABLE_STATUS = {408, 425, 429}


def sign(secret: str, timestamp: int, body: bytes) -> str:
    digest = hmac.new(secret.encode(), f"{timestamp}.".encode() + body, hashlib.sha256).hexdigest()
    return f"t={timestamp},v1={digest}"


def verify(secret: str, header: str, body: bytes) -> bool:
    """Check a signature header against the body (for receivers and tests)."""
    try:
        parts = dict(item.split("=", 1) for item in header.split(","))
        expected = sign(secret, int(parts["t"]), body)
    except (KeyError, ValueError):
        return False
    return hmac.compare_digest(expected, header)


class WebhookAdapter:
    channel = "webhook"
    dedupes = True

    def __init__(self, client: httpx.AsyncClient, clock: Clock) -> None:
        self._client = client
        self._clock = clock

    def provider(self, credentials: Credentials) -> str:
        return "webhook"

    def payload(self, outbound: OutboundMessage) -> bytes:
        return orjson.dumps(
            {
                "touch_key": outbound.touch_key,
                "tenant_id": outbound.tenant_id,
                "customer_id": outbound.customer_id,
                "journey_id": outbound.journey_id,
                "template_id": outbound.template_id,
                "priority": outbound.priority,
                "channel": "webhook",
                "text": outbound.message.text,
                "subject": outbound.message.subject,
            }
        )

    async def send(self, outbound: OutboundMessage) -> SendOutcome:
        body = self.payload(outbound)
        headers = {
            "Content-Type": "application/json",
            "X-SCRM-Signature": sign(outbound.credentials.secret, int(self._clock.now().timestamp()), body),
            "X-SCRM-Touch-Key": outbound.touch_key,
            "User-Agent": "scrm-notify/0.1",
        }
        try:
            response = await self._client.post(outbound.credentials.url, content=body, headers=headers)
        except httpx.HTTPError as exc:
            return transport_outcome(exc, "webhook", dedupes=True)
        status = response.status_code
        if status in RETRYABLE_STATUS or status >= 500:
            return SendOutcome("retryable", f"webhook answered {status}")
        if status >= 400:
            return SendOutcome("permanent", f"webhook answered {status}")
        return SendOutcome.ok(response.headers.get("X-Message-Id"))
