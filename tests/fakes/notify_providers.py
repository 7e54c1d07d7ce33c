"""Local fake providers on loopback that speak the providers' documented request and response shapes.

One FastAPI app, one prefix per provider. Each provider has a script: a queue of answers to give before
behaving normally (an errcode, an HTTP status, a delay), so tests drive busy, rate-limited, slow, expired-token
and permanently-failing providers. Every request is recorded.
"""

import asyncio
import base64
import hashlib
import hmac
import itertools
import time
import uuid
from collections import defaultdict
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import parse_qsl, quote

import uvicorn
from fastapi import FastAPI, Request
from fastapi.responses import JSONResponse, Response

from scrm_notify.adapters.channels.webhook import verify
from scrm_stack.launcher import free_port

SECRET = "fake-provider-secret-0123456789"


@dataclass
class Step:
    code: Any = None
    delay: float = 0.0
    headers: dict[str, str] = field(default_factory=dict)


@dataclass
class Seen:
    provider: str
    path: str
    body: Any
    headers: dict[str, str]


def _pct(value: str) -> str:
    return quote(value, safe="~")


class FakeProviders:
    def __init__(self) -> None:
        self.url = ""  # where it listens, once running
        self.seen: list[Seen] = []
        self.script: dict[str, list[Step]] = defaultdict(list)
        self.tokens: set[str] = set()
        self.webhook_accepted: dict[str, int] = defaultdict(int)
        self.webhook_duplicates = 0
        self.webhook_delay = 0.0
        # One-time subscribe consents WeChat holds per (openid, WeChat template id): accept adds, bizsend spends.
        self.oa_consents: dict[tuple[str, str], int] = defaultdict(int)
        self._ids = itertools.count(1)
        self._run = uuid.uuid4().hex[:8]
        # WeCom mass messages: msgid -> (sender, recipients); each recipient's status (0 until a test sets it).
        self.wecom_mass: dict[str, tuple[str, list[str]]] = {}
        self.wecom_recipient_status: dict[str, int] = {}
        # WeCom welcome codes: code -> issued at (monotonic); used codes; the validity window.
        self.welcome_codes: dict[str, float] = {}
        self.welcome_used: set[str] = set()
        self.welcome_valid_seconds = 20.0
        self.welcomed: list[dict[str, Any]] = []
        self.wecom_send_time: int | None = None  # unix seconds WeCom reports as send_time (omitted when None)
        self.app = self._build()

    def fail_next(self, provider: str, *steps: Step) -> None:
        self.script[provider].extend(steps)

    def of(self, provider: str) -> list[Seen]:
        return [s for s in self.seen if s.provider == provider]

    async def _step(self, provider: str) -> Step | None:
        queue = self.script[provider]
        step = queue.pop(0) if queue else None
        if step is not None and step.delay:
            await asyncio.sleep(step.delay)
        return step

    def oa_accept(self, openid: str, template_id: str, times: int = 1) -> None:
        """The customer tapped "accept" in the official account's subscribe prompt ``times`` times."""
        self.oa_consents[(openid, template_id)] += times

    def expire_tokens(self) -> None:
        self.tokens.clear()

    def mass_status(self, external_userid: str, status: int) -> None:
        """What WeCom will report for this recipient of any mass message (0 not sent, 1 sent, 2 not a friend, 3
        over quota); the sender's task counts as sent once a recipient's status is not 0."""
        self.wecom_recipient_status[external_userid] = status

    def welcome_code(self) -> str:
        """A WelcomeCode as WeCom puts in an add_external_contact callback: valid for a while, usable once."""
        code = f"wc-{next(self._ids)}"
        self.welcome_codes[code] = time.monotonic()
        return code

    def _mass_message(self, body: dict[str, Any]) -> dict[str, Any]:
        msgid = f"msg-{self._run}-{next(self._ids)}"  # unique across fakes: databases outlive them
        self.wecom_mass[msgid] = (str(body.get("sender") or ""), list(body.get("external_userid") or []))
        return {"errcode": 0, "errmsg": "ok", "fail_list": [], "msgid": msgid}

    def _page(self, items: list[dict[str, Any]], body: dict[str, Any], key: str) -> dict[str, Any]:
        limit = min(int(body.get("limit") or 500), 1000)
        start = int(body.get("cursor") or 0)
        page = items[start : start + limit]
        more = start + limit < len(items)
        return {"errcode": 0, "errmsg": "ok", "next_cursor": str(start + limit) if more else "", key: page}

    def _group_task(self, body: dict[str, Any]) -> dict[str, Any]:
        if body.get("msgid") not in self.wecom_mass:
            return {"errcode": 41063, "errmsg": "invalid msgid"}
        sender, recipients = self.wecom_mass[body["msgid"]]
        sent = any(self.wecom_recipient_status.get(r, 0) for r in recipients)
        when = {"send_time": self.wecom_send_time} if sent and self.wecom_send_time else {}
        task = {"userid": sender, "status": 2 if sent else 0, **when}
        return self._page([task], body, "task_list")

    def _send_result(self, body: dict[str, Any]) -> dict[str, Any]:
        if body.get("msgid") not in self.wecom_mass:
            return {"errcode": 41063, "errmsg": "invalid msgid"}
        sender, recipients = self.wecom_mass[body["msgid"]]
        if body.get("userid") != sender:
            return self._page([], body, "send_list")
        sends = []
        for recipient in recipients:
            status = self.wecom_recipient_status.get(recipient, 0)
            sends.append(
                {"external_userid": recipient, "userid": sender, "status": status}
                | ({"send_time": self.wecom_send_time} if status == 1 and self.wecom_send_time else {})
            )
        return self._page(sends, body, "send_list")

    def _welcome(self, body: dict[str, Any]) -> dict[str, Any]:
        code = str(body.get("welcome_code") or "")
        issued = self.welcome_codes.get(code)
        if issued is None or time.monotonic() - issued > self.welcome_valid_seconds:
            return {"errcode": 41050, "errmsg": "invalid welcome_code"}
        if code in self.welcome_used:
            return {"errcode": 41051, "errmsg": "welcome_code already used or customer is chatting"}
        if not (body.get("text") or {}).get("content") and not body.get("attachments"):
            return {"errcode": 41048, "errmsg": "empty welcome message"}
        self.welcome_used.add(code)
        self.welcomed.append(body)
        return {"errcode": 0, "errmsg": "ok"}

    def _token(self) -> dict[str, Any]:
        token = f"tok-{next(self._ids)}"
        self.tokens.add(token)
        return {"errcode": 0, "errmsg": "ok", "access_token": token, "expires_in": 7200}

    def _build(self) -> FastAPI:
        app = FastAPI()
        self._wecom(app)
        self._wechat(app)
        self._sms(app)
        self._email_and_webhook(app)
        return app

    def _wecom(self, app: FastAPI) -> None:
        @app.get("/wecom/gettoken")
        async def gettoken(corpid: str, corpsecret: str) -> dict[str, Any]:
            if corpsecret != SECRET:
                return {"errcode": 40001, "errmsg": "invalid credential"}
            return self._token()

        @app.post("/wecom/{path:path}")
        async def wecom(path: str, request: Request, access_token: str = "") -> dict[str, Any]:
            body = await request.json()
            self.seen.append(Seen("wecom", path, body, dict(request.headers)))
            if access_token not in self.tokens:
                return {"errcode": 42001, "errmsg": "access_token expired"}
            step = await self._step("wecom")
            if step is not None and step.code is not None:
                return {"errcode": step.code, "errmsg": "scripted"}
            if path == "message/send":
                return {"errcode": 0, "errmsg": "ok", "invaliduser": "", "msgid": f"app-{next(self._ids)}"}
            if path == "externalcontact/get_groupmsg_task":
                return self._group_task(body)
            if path == "externalcontact/get_groupmsg_send_result":
                return self._send_result(body)
            if path == "externalcontact/send_welcome_msg":
                return self._welcome(body)
            return self._mass_message(body)

    def _wechat(self, app: FastAPI) -> None:
        @app.post("/wechat/stable_token")
        async def stable_token(request: Request) -> dict[str, Any]:
            body = await request.json()
            if body.get("secret") != SECRET or body.get("grant_type") != "client_credential":
                return {"errcode": 40125, "errmsg": "invalid appsecret"}
            return self._token()

        sent_ids: dict[str, int] = {}

        @app.post("/wechat/message/template/send")
        async def template_send(request: Request, access_token: str = "") -> dict[str, Any]:
            body = await request.json()
            self.seen.append(Seen("wechat_oa", "message/template/send", body, dict(request.headers)))
            if access_token not in self.tokens:
                return {"errcode": 40001, "errmsg": "invalid credential, access_token is invalid or not latest"}
            step = await self._step("wechat_oa")
            if step is not None and step.code is not None:
                return {"errcode": step.code, "errmsg": "scripted"}
            msgid = sent_ids.setdefault(body["client_msg_id"], next(self._ids))  # WeChat dedupes client_msg_id
            return {"errcode": 0, "errmsg": "ok", "msgid": msgid}

        @app.post("/wechat/message/subscribe/bizsend")
        async def subscribe_send(request: Request, access_token: str = "") -> dict[str, Any]:
            body = await request.json()
            self.seen.append(Seen("wechat_oa", "message/subscribe/bizsend", body, dict(request.headers)))
            if access_token not in self.tokens:
                return {"errcode": 40001, "errmsg": "invalid credential, access_token is invalid or not latest"}
            if not body.get("touser") or not body.get("template_id") or not isinstance(body.get("data"), dict):
                return {"errcode": 47001, "errmsg": "data format error: touser, template_id and data are required"}
            step = await self._step("wechat_oa")
            if step is not None and step.code is not None:
                return {"errcode": step.code, "errmsg": "scripted"}
            consent = (body["touser"], body["template_id"])
            if self.oa_consents[consent] < 1:  # no one-time consent left for this template: WeChat refuses
                return {"errcode": 43101, "errmsg": "user refuse to accept the msg"}
            self.oa_consents[consent] -= 1
            return {"errcode": 0, "errmsg": "ok"}

    def _sms(self, app: FastAPI) -> None:
        @app.post("/aliyun/")
        async def aliyun(request: Request) -> dict[str, Any]:
            form = dict(parse_qsl((await request.body()).decode(), keep_blank_values=True))
            self.seen.append(Seen("sms_aliyun", "SendSms", form, dict(request.headers)))
            if self.webhook_delay:
                await asyncio.sleep(self.webhook_delay)
            signature = str(form.pop("Signature", ""))
            canonical = "&".join(f"{_pct(k)}={_pct(str(v))}" for k, v in sorted(form.items()))
            to_sign = f"POST&%2F&{_pct(canonical)}"
            expected = base64.b64encode(hmac.new(f"{SECRET}&".encode(), to_sign.encode(), hashlib.sha1).digest())
            if signature != expected.decode():
                return {"Code": "SignatureDoesNotMatch", "Message": "Specified signature is not matched"}
            step = await self._step("sms_aliyun")
            if step is not None and step.code is not None:
                return {"Code": step.code, "Message": "scripted", "RequestId": "r"}
            return {"Code": "OK", "Message": "OK", "BizId": f"biz-{next(self._ids)}", "RequestId": "r"}

        @app.post("/tencent/")
        async def tencent(request: Request) -> dict[str, Any]:
            body = await request.json()
            self.seen.append(Seen("sms_tencent", "SendSms", body, dict(request.headers)))
            if not request.headers.get("authorization", "").startswith("TC3-HMAC-SHA256 Credential="):
                return {"Response": {"Error": {"Code": "AuthFailure.SignatureFailure", "Message": "bad"}}}
            step = await self._step("sms_tencent")
            code = step.code if step is not None and step.code is not None else "Ok"
            if code.startswith("InternalError") or code.startswith("AuthFailure"):
                return {"Response": {"Error": {"Code": code, "Message": "scripted"}, "RequestId": "r"}}
            status = {
                "SerialNo": f"sn-{next(self._ids)}",
                "PhoneNumber": body["PhoneNumberSet"][0],
                "Code": code,
                "Message": "send success" if code == "Ok" else "scripted",
                "SessionContext": body.get("SessionContext"),
            }
            return {"Response": {"SendStatusSet": [status], "RequestId": "r"}}

    def _email_and_webhook(self, app: FastAPI) -> None:
        @app.post("/sendgrid/v3/mail/send")
        async def sendgrid(request: Request) -> Response:
            body = await request.json()
            self.seen.append(Seen("email_sendgrid", "mail/send", body, dict(request.headers)))
            if request.headers.get("authorization") != f"Bearer {SECRET}":
                return JSONResponse({"errors": [{"message": "unauthorized"}]}, status_code=401)
            step = await self._step("email_sendgrid")
            if step is not None and step.code is not None:
                return JSONResponse({"errors": [{"message": "scripted"}]}, status_code=step.code, headers=step.headers)
            return Response(status_code=202, headers={"X-Message-Id": f"sg-{next(self._ids)}"})

        @app.post("/hook/{name}")
        async def hook(name: str, request: Request) -> Response:
            raw = await request.body()
            key = request.headers.get("x-scrm-touch-key", "")
            self.seen.append(Seen("webhook", name, raw, dict(request.headers)))
            if self.webhook_delay:
                await asyncio.sleep(self.webhook_delay)
            step = await self._step("webhook")
            if step is not None and step.code is not None:
                return Response(status_code=step.code)
            if not verify(SECRET, request.headers.get("x-scrm-signature", ""), raw):
                return Response(status_code=401)
            if self.webhook_accepted[key]:
                self.webhook_duplicates += 1  # receivers dedupe on X-SCRM-Touch-Key, as the contract tells them
            else:
                self.webhook_accepted[key] += 1
            return Response(status_code=200)


async def serve(fake: FakeProviders, port: int) -> tuple[uvicorn.Server, "asyncio.Task[None]"]:
    """Run the fake on loopback inside the current event loop."""
    server = uvicorn.Server(uvicorn.Config(fake.app, host="127.0.0.1", port=port, log_level="warning", lifespan="off"))
    task = asyncio.create_task(server.serve())
    while not server.started:
        await asyncio.sleep(0.02)
    return server, task


@asynccontextmanager
async def running(fake: FakeProviders) -> AsyncIterator[FakeProviders]:
    """The fake serving on a free loopback port (``fake.url``) until the block ends."""
    port = free_port()
    server, task = await serve(fake, port)
    fake.url = f"http://127.0.0.1:{port}"
    try:
        yield fake
    finally:
        server.should_exit = True
        await task


class FakeSmtp(asyncio.Protocol):
    """Just enough SMTP (RFC 5321) for the e-mail adapter: refuses recipients starting with ``bounce``."""

    messages: list[bytes] = []

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport: Any = transport
        self.buffer = b""
        self.in_data = False
        self.transport.write(b"220 fake-smtp ESMTP\r\n")

    def data_received(self, data: bytes) -> None:
        self.buffer += data
        while True:
            if self.in_data:
                end = self.buffer.find(b"\r\n.\r\n")
                if end < 0:
                    return
                FakeSmtp.messages.append(self.buffer[:end])
                self.buffer, self.in_data = self.buffer[end + 5 :], False
                self.transport.write(b"250 2.0.0 queued\r\n")
                continue
            line_end = self.buffer.find(b"\r\n")
            if line_end < 0:
                return
            line, self.buffer = self.buffer[:line_end], self.buffer[line_end + 2 :]
            self.transport.write(self._answer(line.decode().upper(), line.decode()))

    def _answer(self, command: str, raw: str) -> bytes:
        if command.startswith(("EHLO", "HELO")):
            return b"250 fake-smtp\r\n"
        if command.startswith("RCPT TO:") and "<BOUNCE" in command:
            return b"550 5.1.1 no such user\r\n"
        if command.startswith("DATA"):
            self.in_data = True
            return b"354 go ahead\r\n"
        if command.startswith("QUIT"):
            self.transport.close()
            return b"221 bye\r\n"
        return b"250 ok\r\n"
