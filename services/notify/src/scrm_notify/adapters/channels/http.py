"""The HTTP client every channel adapter shares: an ``httpx.AsyncClient`` over a lean HTTP/1.1 keep-alive
transport (asyncio protocols, the ``httptools`` parser that uvicorn uses).

Why not httpcore's pool: it looks at every pooled connection on each request (a poll syscall per idle socket),
writes headers and body with two syscalls, and goes through anyio on every read and write; profiled, that was
about half of notify's CPU per touch. This transport checks only the connection it picks, writes each request
with one syscall, and is driven by asyncio callbacks. The adapters still speak httpx (requests, responses,
timeouts, exceptions), so ``transport_outcome`` classifies failures the same way: a failure to connect is
``ConnectError``/``ConnectTimeout``/``PoolTimeout`` (never sent); a failure after the request went out is
``ReadTimeout``/``RemoteProtocolError`` (maybe sent).

This transport speaks only directly to the origin. Where the environment names a proxy for a URL
(``HTTP_PROXY``, ``HTTPS_PROXY``, ``ALL_PROXY``, lower case too, minus the hosts ``NO_PROXY`` exempts), that
request goes through httpx's standard transport and the proxy instead (``ProxyRouter``).
"""

import asyncio
import select
import ssl
import time
import urllib.request
from collections import deque
from collections.abc import Mapping

import httptools
import httpx

# Below the 5 s idle timeout of common servers (uvicorn, Node), so we never reuse one they are closing.
KEEPALIVE_EXPIRY = 4.0
Origin = tuple[bytes, str, int]


class _Connection(asyncio.Protocol):
    """One keep-alive connection; one request at a time."""

    def __init__(self) -> None:
        self.transport: asyncio.Transport | None = None
        self.closed = False
        self.idle_since = 0.0
        self._waiter: asyncio.Future[None] | None = None
        self._headers: list[tuple[bytes, bytes]] = []
        self._body: list[bytes] = []
        self._headers_done = False
        self._keep_alive = False
        self._parser = httptools.HttpResponseParser(self)

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = transport  # type: ignore[assignment]

    def data_received(self, data: bytes) -> None:
        if self._waiter is None:  # data on an idle connection: the server is closing it, or talking nonsense
            self.close()
            return
        try:
            self._parser.feed_data(data)
        except httptools.HttpParserError as exc:
            self._fail(httpx.RemoteProtocolError(f"malformed response: {exc}"))
            self.close()

    def connection_lost(self, exc: Exception | None) -> None:
        self.closed = True
        waiter = self._waiter
        if waiter is None or waiter.done():
            return
        # A response without length or chunking ends with the connection.
        framed = any(n.lower() in (b"content-length", b"transfer-encoding") for n, _ in self._headers)
        if self._headers_done and not framed:
            waiter.set_result(None)
        else:
            self._fail(httpx.RemoteProtocolError("the server closed the connection before a complete response"))

    def _fail(self, exc: Exception) -> None:
        if self._waiter is not None and not self._waiter.done():
            self._waiter.set_exception(exc)

    def on_header(self, name: bytes, value: bytes) -> None:
        self._headers.append((name, value))

    def on_headers_complete(self) -> None:
        self._headers_done = True

    def on_body(self, body: bytes) -> None:
        self._body.append(body)

    def on_message_complete(self) -> None:
        # Read it now: the parser forgets once the message is complete.
        self._keep_alive = self._parser.should_keep_alive()
        if self._waiter is not None and not self._waiter.done():
            self._waiter.set_result(None)

    def stale(self, now: float) -> bool:
        """Closed, idle too long, or readable while idle (the server's FIN or garbage)."""
        if self.closed or now - self.idle_since > KEEPALIVE_EXPIRY or self.transport is None:
            return True
        sock = self.transport.get_extra_info("socket")
        if sock is None:
            return True
        readable = select.poll()
        readable.register(sock.fileno(), select.POLLIN)
        return bool(readable.poll(0))

    async def exchange(self, data: bytes, timeout: float | None) -> httpx.Response:
        assert self.transport is not None
        self._headers, self._body, self._headers_done, self._keep_alive = [], [], False, False
        self._parser = httptools.HttpResponseParser(self)
        self._waiter = asyncio.get_running_loop().create_future()
        try:
            self.transport.write(data)
            async with asyncio.timeout(timeout):
                await self._waiter
        except TimeoutError as exc:
            self.close()
            raise httpx.ReadTimeout("no complete response within the read timeout") from exc
        finally:
            self._waiter = None
        if not self._keep_alive:
            self.close()
        self.idle_since = time.monotonic()
        return httpx.Response(
            self._parser.get_status_code(),
            headers=self._headers,
            stream=httpx.ByteStream(b"".join(self._body)),
            extensions={"http_version": b"HTTP/1.1"},
        )

    def close(self) -> None:
        self.closed = True
        if self.transport is not None:
            self.transport.close()


class LeanTransport(httpx.AsyncBaseTransport):
    """At most ``max_connections`` connections in all; idle ones kept per origin and reused newest first."""

    def __init__(self, max_connections: int) -> None:
        self._slots = asyncio.Semaphore(max_connections)
        self._idle: dict[Origin, deque[_Connection]] = {}
        self._tls: ssl.SSLContext | None = None

    async def handle_async_request(self, request: httpx.Request) -> httpx.Response:
        timeouts = request.extensions.get("timeout", {})
        url = request.url
        scheme = url.raw_scheme
        if scheme not in (b"http", b"https"):
            raise httpx.UnsupportedProtocol(f"unsupported URL scheme {url.scheme!r}")
        origin = (scheme, url.host, url.port or (443 if scheme == b"https" else 80))
        head = [b"%s %s HTTP/1.1\r\n" % (request.method.encode(), url.raw_path)]
        head += [b"%s: %s\r\n" % pair for pair in request.headers.raw]
        data = b"".join(head) + b"\r\n" + await request.aread()
        try:
            async with asyncio.timeout(timeouts.get("pool")):
                await self._slots.acquire()
        except TimeoutError as exc:
            raise httpx.PoolTimeout("no free connection within the pool timeout") from exc
        try:
            connection = self._reusable(origin) or await self._connect(origin, timeouts.get("connect"))
            try:
                response = await connection.exchange(data, timeouts.get("read"))
            except BaseException:
                connection.close()
                raise
            if not connection.closed:
                self._idle.setdefault(origin, deque()).append(connection)
            return response
        finally:
            self._slots.release()

    def _reusable(self, origin: Origin) -> _Connection | None:
        idle = self._idle.get(origin)
        now = time.monotonic()
        while idle:
            connection = idle.pop()
            if not connection.stale(now):
                return connection
            connection.close()
        return None

    async def _connect(self, origin: Origin, timeout: float | None) -> _Connection:
        scheme, host, port = origin
        tls = None
        if scheme == b"https":
            self._tls = tls = self._tls or httpx.create_ssl_context()
        loop = asyncio.get_running_loop()
        try:
            async with asyncio.timeout(timeout):
                _, connection = await loop.create_connection(
                    _Connection, host, port, ssl=tls, server_hostname=host if tls else None
                )
        except TimeoutError as exc:
            raise httpx.ConnectTimeout(f"no connection to {host}:{port} within the connect timeout") from exc
        except (OSError, ssl.SSLError) as exc:
            raise httpx.ConnectError(f"cannot connect to {host}:{port}: {exc}") from exc
        return connection

    async def aclose(self) -> None:
        for idle in self._idle.values():
            while idle:
                idle.pop().close()


class ProxyRouter(httpx.AsyncBaseTransport):
    """Each request to the lean transport, unless the environment's proxy settings send its origin through a proxy:
    then to httpx's standard transport for that proxy (one per proxy URL, sharing the connection limit's size)."""

    def __init__(self, direct: LeanTransport, proxies: Mapping[str, str], max_connections: int) -> None:
        self._direct = direct
        self._proxies = dict(proxies)
        self._max_connections = max_connections
        self._via: dict[tuple[str, str], httpx.AsyncBaseTransport | None] = {}
        self._proxied: dict[str, httpx.AsyncHTTPTransport] = {}

    def proxy_for(self, url: httpx.URL) -> str | None:
        """The proxy URL the environment names for this URL, or None (no proxy, or its host is in NO_PROXY)."""
        proxy = self._proxies.get(url.scheme) or self._proxies.get("all")
        if not proxy:
            return None
        host = url.host if url.port is None else f"{url.host}:{url.port}"
        return None if urllib.request.proxy_bypass(host) else proxy

    def _transport(self, url: httpx.URL) -> httpx.AsyncBaseTransport:
        key = (url.scheme, url.netloc.decode("ascii"))
        if key not in self._via:
            proxy = self.proxy_for(url)
            if proxy is None:
                self._via[key] = None
            else:
                if proxy not in self._proxied:
                    limits = httpx.Limits(max_connections=self._max_connections)
                    self._proxied[proxy] = httpx.AsyncHTTPTransport(proxy=proxy, limits=limits, trust_env=True)
                self._via[key] = self._proxied[proxy]
        return self._via[key] or self._direct

    async def handle_async_request(self, request: httpx.Request) -> httpx.Response:
        return await self._transport(request.url).handle_async_request(request)

    async def aclose(self) -> None:
        await self._direct.aclose()
        for transport in self._proxied.values():
            await transport.aclose()


def build_client(concurrency: int, timeout: float) -> httpx.AsyncClient:
    """One client for all adapters, with ``2 * concurrency`` connections at most (per route: direct or a proxy);
    the environment's proxy settings, read now, decide which requests go through a proxy."""
    direct = LeanTransport(2 * concurrency)
    proxies = {scheme: url for scheme, url in urllib.request.getproxies().items() if scheme in ("http", "https", "all")}
    transport: httpx.AsyncBaseTransport = ProxyRouter(direct, proxies, 2 * concurrency) if proxies else direct
    return httpx.AsyncClient(timeout=timeout, transport=transport)
