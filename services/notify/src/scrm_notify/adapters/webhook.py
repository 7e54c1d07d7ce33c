"""The generic webhook channel: an HTTP POST of the message, HMAC-SHA256 signed.

Receivers verify ``X-SCRM-Signature: t=<unix seconds>,v1=<hex>`` where ``v1`` is
``HMAC_SHA256(secret, f"{t}.{raw body}")``, and dedupe on ``X-SCRM-Touch-Key`` (a retried delivery carries the
same key).
"""

import hashlib
import hmac
from dataclasses import dataclass
from datetime import datetime
from typing import Any

import httpx
import orjson

from scrm_kit.errors import RetryableError


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


@dataclass(frozen=True, slots=True)
class WebhookTarget:
    url: str
    secret: str


@dataclass(frozen=True, slots=True)
class Delivery:
    ok: bool
    reason: str | None = None
    provider_message_id: str | None = None


class WebhookAdapter:
    channel = "webhook"

    def __init__(self, client: httpx.AsyncClient) -> None:
        self._client = client

    async def send(self, target: WebhookTarget, touch_key: str, payload: dict[str, Any], now: datetime) -> Delivery:
        """POST the payload; 2xx is sent, 4xx a permanent failure, 5xx/429/network errors are retryable."""
        body = orjson.dumps(payload)
        headers = {
            "Content-Type": "application/json",
            "X-SCRM-Signature": sign(target.secret, int(now.timestamp()), body),
            "X-SCRM-Touch-Key": touch_key,
            "User-Agent": "scrm-notify/0.1",
        }
        try:
            response = await self._client.post(target.url, content=body, headers=headers)
        except httpx.TransportError as exc:
            raise RetryableError(f"webhook unreachable: {type(exc).__name__}") from exc
        if response.status_code == 429 or response.status_code >= 500:
            raise RetryableError(f"webhook answered {response.status_code}")
        if response.status_code >= 400:
            return Delivery(False, f"webhook answered {response.status_code}")
        return Delivery(True, provider_message_id=response.headers.get("X-Message-Id"))
