"""Delivery rules: what an adapter's answer means, backoff with jitter, a token bucket and a circuit breaker.

Outcome tree of one send attempt (every adapter maps its provider's codes into it)::

    SendOutcome
    ├── ok                   accepted by the provider (``provider_message_id`` when it gives one)
    ├── retryable            busy, 5xx, timeout: retry with backoff (or at ``retry_at`` if the provider says)
    ├── deferred             flow control / daily quota: try again at ``retry_at``, never dropped
    ├── permanent            this recipient can never get it (bad number, blocked): failed, not retried;
    │                        ``revoke`` marks the channel's consent (e.g. number on the provider's blacklist);
    │                        ``consent_used_up``: the provider says no one-time subscribe consent is left
    └── config               credentials, permission, IP whitelist: the circuit opens, operators alerted

Pure code on injected time (``now`` / ``monotonic`` values passed in), so it runs on a virtual clock.
"""

import random
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Literal

OutcomeKind = Literal["ok", "retryable", "deferred", "permanent", "config"]


@dataclass(frozen=True, slots=True)
class SendOutcome:
    kind: OutcomeKind
    reason: str | None = None
    provider_message_id: str | None = None
    retry_at: datetime | None = None
    revoke: str | None = None
    consent_used_up: bool = False

    @classmethod
    def ok(cls, provider_message_id: str | None = None) -> "SendOutcome":
        return cls("ok", provider_message_id=provider_message_id)


def backoff(
    attempt: int, now: datetime, base: float = 2.0, cap: float = 600.0, rng: random.Random | None = None
) -> datetime:
    """When to try again after ``attempt`` failed tries: exponential with full jitter in [half, full]."""
    delay = min(cap, base * 2 ** max(0, attempt - 1))
    jitter = (rng or random).uniform(0.5, 1.0)
    return now + timedelta(seconds=delay * jitter)


class TokenBucket:
    """``rate`` sends per second with bursts of ``burst``; ``take`` says how long to wait (0 when a token is free)."""

    def __init__(self, rate: float, burst: float) -> None:
        self.rate = rate
        self.burst = burst
        self._tokens = burst
        self._at: float | None = None

    def take(self, now: float) -> float:
        if self._at is not None:
            self._tokens = min(self.burst, self._tokens + (now - self._at) * self.rate)
        self._at = now
        if self._tokens >= 1:
            self._tokens -= 1
            return 0.0
        return (1 - self._tokens) / self.rate


class CircuitBreaker:
    """Opens after ``threshold`` consecutive failures (at once on a configuration error) for ``cooldown`` seconds;
    then lets one trial through per cooldown (half-open): success closes it, failure opens it again."""

    def __init__(self, threshold: int = 5, cooldown: timedelta = timedelta(seconds=30)) -> None:
        self.threshold = threshold
        self.cooldown = cooldown
        self.failures = 0
        self.open_until: datetime | None = None
        self._trial = False

    def allows(self, now: datetime) -> bool:
        if self.open_until is None:
            return True
        if now < self.open_until:
            return False
        # The next trial no sooner than a cooldown from now: a trial that never reports (its send did not happen
        # after all: the claim's lease ran short, the rate limit said later) must not keep the circuit open for good.
        self._trial = True
        self.open_until = now + self.cooldown
        return True

    def record(self, outcome: SendOutcome, now: datetime) -> None:
        if outcome.kind in ("ok", "permanent", "deferred"):
            self.failures, self.open_until, self._trial = 0, None, False
            return
        self.failures += 1
        if outcome.kind == "config" or self.failures >= self.threshold or self._trial:
            self.open_until = now + self.cooldown
            self._trial = False
