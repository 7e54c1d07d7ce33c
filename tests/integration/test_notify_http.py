"""The notify HTTP client's transport against a real local HTTP/1.1 server: keep-alive reuse, response framings,
and the httpx exceptions the adapters classify (never sent -> ConnectError; maybe sent -> ReadTimeout or
RemoteProtocolError)."""

import asyncio
import gzip
from collections.abc import AsyncIterator

import httpx
import pytest

from scrm_notify.adapters.channels.http import build_client


class Server:
    def __init__(self) -> None:
        self.connections = 0
        self.url = ""
        self.targets: list[bytes] = []

    async def handle(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self.connections += 1
        try:
            while True:
                head = await reader.readuntil(b"\r\n\r\n")
                length = 0
                for line in head.split(b"\r\n"):
                    if line.lower().startswith(b"content-length:"):
                        length = int(line.split(b":", 1)[1])
                body = await reader.readexactly(length)
                path = head.split(b" ")[1]
                self.targets.append(path)
                if path == b"/gzip":
                    packed = gzip.compress(b'{"ok": 1}')
                    writer.write(
                        b"HTTP/1.1 200 OK\r\nContent-Encoding: gzip\r\nContent-Length: %d\r\n\r\n" % len(packed)
                    )
                    writer.write(packed)
                elif path == b"/chunked":
                    writer.write(
                        b"HTTP/1.1 201 Created\r\nTransfer-Encoding: chunked\r\nX-Id: m1\r\n\r\n5\r\nhello\r\n0\r\n\r\n"
                    )
                elif path == b"/close":
                    writer.write(b"HTTP/1.1 503 Service Unavailable\r\nConnection: close\r\n\r\nuntil the end")
                    await writer.drain()
                    writer.close()
                    return
                elif path == b"/slow":
                    await asyncio.sleep(1.5)
                    writer.write(b"HTTP/1.1 200 OK\r\nContent-Length: 0\r\n\r\n")
                elif path == b"/drop":
                    writer.close()
                    return
                else:
                    writer.write(b"HTTP/1.1 200 OK\r\nContent-Length: %d\r\n\r\n%s" % (len(body), body))
                await writer.drain()
        except (asyncio.IncompleteReadError, ConnectionError, asyncio.CancelledError):
            writer.close()


@pytest.fixture
async def server() -> AsyncIterator[Server]:
    state = Server()
    listening = await asyncio.start_server(state.handle, "127.0.0.1", 0)
    state.url = f"http://127.0.0.1:{listening.sockets[0].getsockname()[1]}"
    yield state
    listening.close()


async def test_requests_reuse_one_keep_alive_connection_and_read_every_framing(server: Server) -> None:
    async with build_client(concurrency=2, timeout=1.0) as client:
        for n in range(5):
            answer = await client.post(f"{server.url}/echo?n={n}", json={"n": n})
            assert (answer.status_code, answer.json()) == (200, {"n": n})
        assert server.connections == 1
        assert (await client.get(f"{server.url}/gzip")).json() == {"ok": 1}
        chunked = await client.get(f"{server.url}/chunked")
        assert (chunked.status_code, chunked.text, chunked.headers["X-Id"]) == (201, "hello", "m1")
        closing = await client.get(f"{server.url}/close")
        assert (closing.status_code, closing.text) == (503, "until the end")
        form = await client.post(f"{server.url}/echo", data={"k": "v w"})
        assert form.text == "k=v+w"
        answers = await asyncio.gather(*(client.post(f"{server.url}/echo", content=str(n).encode()) for n in range(12)))
        assert [a.text for a in answers] == [str(n) for n in range(12)]
        assert server.connections <= 1 + 1 + 4, "at most 2 * concurrency connections at once, reused"


async def test_failures_map_to_the_httpx_exceptions_the_adapters_classify(server: Server) -> None:
    async with build_client(concurrency=1, timeout=0.5) as client:
        with pytest.raises(httpx.ReadTimeout):
            await client.get(f"{server.url}/slow")
        with pytest.raises(httpx.RemoteProtocolError):
            await client.get(f"{server.url}/drop")
        with pytest.raises(httpx.ConnectError):
            await client.get("http://127.0.0.1:1/refused")
        assert (await client.get(f"{server.url}/echo")).status_code == 200, "the client recovers after failures"


PROXY_VARIABLES = ("http_proxy", "https_proxy", "all_proxy", "no_proxy")


@pytest.fixture
def no_proxy_env(monkeypatch: pytest.MonkeyPatch) -> pytest.MonkeyPatch:
    """None of the machine's proxy variables, in either case; a test sets its own on the returned monkeypatch."""
    for name in PROXY_VARIABLES:
        monkeypatch.delenv(name, raising=False)
        monkeypatch.delenv(name.upper(), raising=False)
    return monkeypatch


async def test_requests_the_environment_sends_through_a_proxy_go_through_it(
    server: Server, no_proxy_env: pytest.MonkeyPatch
) -> None:
    no_proxy_env.setenv("HTTP_PROXY", server.url)  # the local server plays the forward proxy
    no_proxy_env.setenv("NO_PROXY", "direct.invalid")
    async with build_client(concurrency=2, timeout=1.0) as client:
        answer = await client.post("http://provider.invalid/echo", content=b"via the proxy")
        assert (answer.status_code, answer.text) == (200, "via the proxy")
        assert server.targets == [b"http://provider.invalid/echo"], "the proxy got the request in absolute form"
        with pytest.raises(httpx.ConnectError):
            await client.get("http://direct.invalid/echo")  # exempt by NO_PROXY: tried directly, no such host
    assert server.targets == [b"http://provider.invalid/echo"]


async def test_without_proxy_variables_requests_go_straight_to_the_origin(
    server: Server, no_proxy_env: pytest.MonkeyPatch
) -> None:
    async with build_client(concurrency=2, timeout=1.0) as client:
        assert (await client.get(f"{server.url}/echo")).status_code == 200
        with pytest.raises(httpx.ConnectError):
            await client.get("http://provider.invalid/echo")
    assert server.targets == [b"/echo"]
