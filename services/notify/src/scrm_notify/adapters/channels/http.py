"""The HTTP client every channel adapter shares.

httpcore looks at every connection of its pool on each request (``has_expired`` polls each idle socket), so one
pool sized for many sends in flight costs O(connections) syscalls per request. The shared client spreads its
requests over a few small pools instead: the same number of keep-alive connections, a few checks per request.
"""

import httpx


class ShardedTransport(httpx.AsyncBaseTransport):
    """Send each request through the least busy of ``shards`` connection pools of ``per_shard`` connections."""

    def __init__(self, shards: int, per_shard: int) -> None:
        limits = httpx.Limits(max_connections=per_shard, max_keepalive_connections=per_shard)
        self._pools = [httpx.AsyncHTTPTransport(limits=limits) for _ in range(max(1, shards))]
        self._in_flight = [0] * len(self._pools)

    async def handle_async_request(self, request: httpx.Request) -> httpx.Response:
        shard = min(range(len(self._pools)), key=self._in_flight.__getitem__)
        self._in_flight[shard] += 1
        try:
            return await self._pools[shard].handle_async_request(request)
        finally:
            self._in_flight[shard] -= 1

    async def aclose(self) -> None:
        for pool in self._pools:
            await pool.aclose()


def build_client(concurrency: int, timeout: float, per_shard: int = 4) -> httpx.AsyncClient:
    """One client for all adapters: ``2 * concurrency`` keep-alive connections in pools of ``per_shard``."""
    shards = max(1, -(-2 * concurrency // per_shard))
    return httpx.AsyncClient(timeout=timeout, transport=ShardedTransport(shards, per_shard))
