"""HTTP/1.1 load for the benchmarks, light enough not to be the bottleneck itself.

``open_loop`` (latency):
Requests leave on a fixed schedule (``rate`` per second) whether or not earlier ones have returned, over a set of
keep-alive connections; each request's latency runs from the moment it was due to the last byte of its answer, so
time spent waiting for a free connection counts (no coordinated omission). httpx's pool is avoided on purpose: with
hundreds of requests queued, its per-request bookkeeping grows with the queue and the client, not the server, sets
the figures. Requests are pre-encoded bytes, so the generator does no JSON or header work while measuring.

``closed_loop`` (throughput): a fixed number of clients, each sending its next request when the answer to its last
one arrived, as SDKs flushing batches do; connections are spread over one or more servers (replicas).
"""

import asyncio
import time
from collections import Counter
from dataclasses import dataclass, field
from urllib.parse import urlsplit


@dataclass
class LoadResult:
    latencies: list[float] = field(default_factory=list)  # seconds, one per answered request
    statuses: Counter[int] = field(default_factory=Counter)
    errors: Counter[str] = field(default_factory=Counter)
    seconds: float = 0.0

    def summary(self) -> dict[str, float | int | dict[str, int]]:
        ordered = sorted(self.latencies) or [float("inf")]
        answered = len(self.latencies)
        return {
            "p50_ms": ordered[len(ordered) // 2] * 1000,
            "p99_ms": ordered[min(len(ordered) - 1, int(len(ordered) * 0.99))] * 1000,
            "max_ms": ordered[-1] * 1000,
            "achieved_rps": answered / self.seconds if self.seconds else 0.0,
            "failed": sum(n for status, n in self.statuses.items() if status >= 400) + sum(self.errors.values()),
            "statuses": {str(k): v for k, v in self.statuses.items()},
            "errors": dict(self.errors),
        }


def request_bytes(method: str, url: str, path: str, headers: dict[str, str] | None = None, body: bytes = b"") -> bytes:
    """One HTTP/1.1 keep-alive request, encoded once."""
    host = urlsplit(url).netloc
    lines = [f"{method} {path} HTTP/1.1", f"Host: {host}", f"Content-Length: {len(body)}"]
    lines += [f"{name}: {value}" for name, value in (headers or {}).items()]
    return ("\r\n".join(lines) + "\r\n\r\n").encode() + body


async def _read_answer(reader: asyncio.StreamReader) -> int:
    head = await reader.readuntil(b"\r\n\r\n")
    status = int(head[9:12])
    length = 0
    for line in head.split(b"\r\n")[1:]:
        name, _, value = line.partition(b":")
        if name.strip().lower() == b"content-length":
            length = int(value)
    if length:
        await reader.readexactly(length)
    return status


async def open_loop(url: str, requests: list[bytes], rate: float, connections: int = 64) -> LoadResult:
    """Send ``requests`` at ``rate`` per second (in order, cycling if fewer than needed) and time each answer."""
    parts = urlsplit(url)
    host, port = parts.hostname or "127.0.0.1", parts.port or 80
    result = LoadResult()
    due: asyncio.Queue[tuple[float, bytes] | None] = asyncio.Queue()

    async def connection() -> None:
        reader, writer = await asyncio.open_connection(host, port)
        try:
            while (item := await due.get()) is not None:
                scheduled, raw = item
                try:
                    writer.write(raw)
                    status = await _read_answer(reader)
                except (OSError, asyncio.IncompleteReadError, ValueError) as exc:
                    result.errors[type(exc).__name__] += 1
                    writer.close()
                    reader, writer = await asyncio.open_connection(host, port)
                    continue
                result.latencies.append(time.perf_counter() - scheduled)
                result.statuses[status] += 1
        finally:
            writer.close()

    workers = [asyncio.create_task(connection()) for _ in range(connections)]
    await asyncio.sleep(0.2)  # connections open before the clock starts
    begin = time.perf_counter()
    total = len(requests)
    for i in range(total):
        scheduled = begin + i / rate
        delay = scheduled - time.perf_counter()
        if delay > 0:
            await asyncio.sleep(delay)
        due.put_nowait((scheduled, requests[i]))
    for _ in workers:
        due.put_nowait(None)
    await asyncio.gather(*workers)
    result.seconds = time.perf_counter() - begin
    return result


async def closed_loop(urls: list[str], requests: list[bytes], connections: int) -> LoadResult:
    """Send every request once over ``connections`` keep-alive connections spread round-robin over ``urls``."""
    result = LoadResult()
    pending = iter(requests)

    async def connection(url: str) -> None:
        parts = urlsplit(url)
        reader, writer = await asyncio.open_connection(parts.hostname or "127.0.0.1", parts.port or 80)
        try:
            for raw in pending:
                sent = time.perf_counter()
                writer.write(raw)
                try:
                    status = await _read_answer(reader)
                except (OSError, asyncio.IncompleteReadError, ValueError) as exc:
                    result.errors[type(exc).__name__] += 1
                    return
                result.latencies.append(time.perf_counter() - sent)
                result.statuses[status] += 1
        finally:
            writer.close()

    begin = time.perf_counter()
    await asyncio.gather(*(connection(urls[i % len(urls)]) for i in range(connections)))
    result.seconds = time.perf_counter() - begin
    return result
