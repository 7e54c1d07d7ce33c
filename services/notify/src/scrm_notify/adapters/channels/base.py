"""What every channel adapter receives and how transport failures map into the outcome tree.

A transport failure before the request left us (connect error) is always retryable. One after it left (read
timeout, dropped connection) is retryable only for providers that dedupe on our key; for the others the
message may have gone out, so it is failed as ``outcome_unknown`` rather than risk sending it twice.
"""

from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any, Protocol

import httpx

from scrm_notify.domain.delivery import SendOutcome
from scrm_notify.domain.templates import RenderedMessage


@dataclass(frozen=True, slots=True)
class Credentials:
    """A tenant's configuration of one channel: ``settings`` (ids, names) and the ``secret`` (never logged)."""

    settings: Mapping[str, Any] = field(default_factory=dict)
    secret: str = ""
    url: str = ""

    def require(self, name: str) -> str:
        value = self.settings.get(name)
        if not value:
            raise MissingSetting(name)
        return str(value)


class MissingSetting(Exception):
    """The tenant's channel configuration lacks a setting the provider needs."""


@dataclass(frozen=True, slots=True)
class OutboundMessage:
    tenant_id: str
    touch_key: str
    channel: str
    address: str
    message: RenderedMessage
    credentials: Credentials
    customer_id: str = ""
    journey_id: str | None = None
    template_id: str = ""
    priority: str = "marketing"
    sender: str | None = None


class ChannelAdapter(Protocol):
    channel: str

    def provider(self, credentials: Credentials) -> str:
        """Name of the provider behind this channel for these credentials (rate limits, circuits)."""
        ...

    async def send(self, outbound: OutboundMessage) -> SendOutcome: ...


def transport_outcome(exc: httpx.HTTPError, provider: str, dedupes: bool) -> SendOutcome:
    """Map an httpx failure: never sent -> retryable; maybe sent -> retryable only if the provider dedupes."""
    name = type(exc).__name__
    if isinstance(exc, httpx.ConnectError | httpx.ConnectTimeout | httpx.PoolTimeout) or dedupes:
        return SendOutcome("retryable", f"{provider} unreachable: {name}")
    return SendOutcome("permanent", f"outcome_unknown: {provider} {name} after the request was sent; not retried")


def later(now: datetime, seconds: float) -> datetime:
    return now + timedelta(seconds=seconds)
