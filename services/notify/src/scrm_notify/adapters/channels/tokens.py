"""Access tokens of WeCom and the WeChat official account: fetched once, cached until shortly before expiry,
refreshed on the provider's expiry codes, one refresh at a time per credential."""

import asyncio
from collections.abc import Awaitable, Callable
from datetime import datetime, timedelta

from scrm_kit.clock import Clock

Fetch = Callable[[], Awaitable[tuple[str, int]]]


class TokenCache:
    def __init__(self, clock: Clock, margin: timedelta = timedelta(minutes=5)) -> None:
        self._clock = clock
        self._margin = margin
        self._tokens: dict[tuple[str, ...], tuple[str, datetime]] = {}
        self._locks: dict[tuple[str, ...], asyncio.Lock] = {}

    async def get(self, key: tuple[str, ...], fetch: Fetch, stale: str | None = None) -> str:
        """The cached token for ``key``; ``stale`` (a token the provider rejected) forces one refresh."""
        lock = self._locks.setdefault(key, asyncio.Lock())
        async with lock:
            cached = self._tokens.get(key)
            if cached is not None and cached[0] != stale and cached[1] > self._clock.now():
                return cached[0]
            token, expires_in = await fetch()
            self._tokens[key] = (token, self._clock.now() + timedelta(seconds=expires_in) - self._margin)
            return token
