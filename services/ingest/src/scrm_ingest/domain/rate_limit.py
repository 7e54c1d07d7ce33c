"""Per-tenant token buckets: a sustained rate of events per second with a burst allowance.

A request of ``n`` events takes ``n`` tokens. A request larger than the whole bucket is let through when the bucket
is full and leaves it in debt, so a big batch is slowed down rather than refused for ever. Time comes from an
injected monotonic clock, so the rules are tested without sleeping.
"""

from collections.abc import Callable
from dataclasses import dataclass


@dataclass
class TokenBucket:
    rate: float
    capacity: float
    tokens: float
    updated: float

    def take(self, count: int, now: float) -> float:
        """Take ``count`` tokens; 0.0 if allowed, else the seconds until it would be (nothing is taken then)."""
        self.tokens = min(self.capacity, self.tokens + (now - self.updated) * self.rate)
        self.updated = now
        needed = min(float(count), self.capacity)
        if self.tokens >= needed:
            self.tokens -= count
            return 0.0
        return (needed - self.tokens) / self.rate


class TenantRateLimiter:
    """One bucket per tenant; the tenant's own limit, else the default. Each replica limits what it receives."""

    def __init__(self, default_rate: float, burst_seconds: float, clock: Callable[[], float]) -> None:
        self._default_rate = default_rate
        self._burst_seconds = burst_seconds
        self._clock = clock
        self._buckets: dict[str, TokenBucket] = {}

    def take(self, tenant_id: str, count: int, rate: float | None = None) -> float:
        """0.0 if the tenant may send ``count`` events now, else the seconds to wait."""
        rate = rate or self._default_rate
        now = self._clock()
        bucket = self._buckets.get(tenant_id)
        if bucket is None or bucket.rate != rate:
            capacity = max(1.0, rate * self._burst_seconds)
            bucket = self._buckets[tenant_id] = TokenBucket(rate, capacity, capacity, now)
        return bucket.take(count, now)
