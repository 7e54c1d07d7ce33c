"""WeCom (企业微信): mass messages to external contacts (``externalcontact/add_msg_template``) and app messages
to staff (``message/send``), with the corp access token cached and refreshed.

Error codes (errcode) into the outcome tree::

    retryable   -1 (busy), 6000, 41063, 45033 (concurrency)
    deferred    45009 (frequency limit: wait out the window)
    refresh     40014, 42001 (token invalid/expired): refresh once and retry
    permanent   40003, 40096, 41048, 41050, 41051, 41053, 81013 (this recipient), any unknown code
    config      40001 (bad secret), 48002 (no API permission), 60020 (IP not trusted)

``add_msg_template`` success only creates a task the staff member confirms in the WeCom client: "sent" here
means "handed to the staff member"; the per-recipient result (``get_groupmsg_send_result``) is a receipt.
It is not idempotent, so a timeout after the request left is ``outcome_unknown``, never retried.
"""

from typing import Any

import httpx

from scrm_kit.clock import Clock
from scrm_notify.adapters.channels.base import Credentials, MissingSetting, OutboundMessage, later, transport_outcome
from scrm_notify.adapters.channels.tokens import TokenCache
from scrm_notify.domain.delivery import SendOutcome

REFRESH = {40014, 42001}
RETRYABLE = {-1, 6000, 41063, 45033}
PERMANENT = {40003, 40096, 41048, 41050, 41051, 41053, 81013}
CONFIG = {40001, 48002, 60020}


class TokenError(Exception):
    def __init__(self, errcode: int, errmsg: str) -> None:
        super().__init__(f"gettoken errcode {errcode}: {errmsg}")
        self.errcode = errcode


def classify(errcode: int, errmsg: str, clock: Clock) -> SendOutcome:
    reason = f"wecom errcode {errcode}: {errmsg}"
    if errcode in RETRYABLE or errcode in REFRESH:
        return SendOutcome("retryable", reason)
    if errcode == 45009:
        return SendOutcome("deferred", reason, retry_at=later(clock.now(), 60))
    if errcode in CONFIG:
        return SendOutcome("config", reason)
    return SendOutcome("permanent", reason)


class WeComAdapter:
    channel = "wecom"
    dedupes = False

    def __init__(self, client: httpx.AsyncClient, clock: Clock, base_url: str, tokens: TokenCache) -> None:
        self._client = client
        self._clock = clock
        self._base = base_url.rstrip("/")
        self._tokens = tokens

    def provider(self, credentials: Credentials) -> str:
        return "wecom"

    async def _fetch(self, corp_id: str, secret: str) -> tuple[str, int]:
        answer = (
            await self._client.get(f"{self._base}/gettoken", params={"corpid": corp_id, "corpsecret": secret})
        ).json()
        if answer.get("errcode", 0) != 0:
            raise TokenError(int(answer["errcode"]), str(answer.get("errmsg", "")))
        return str(answer["access_token"]), int(answer.get("expires_in", 7200))

    async def call(self, credentials: Credentials, path: str, body: dict[str, Any]) -> dict[str, Any]:
        """POST with the access token; on an expiry code refresh the token once and try again."""
        corp_id = credentials.require("corp_id")
        key = (self._base, corp_id, credentials.secret)
        stale: str | None = None
        for _ in range(2):
            token = await self._tokens.get(key, lambda: self._fetch(corp_id, credentials.secret), stale)
            answer: dict[str, Any] = (
                await self._client.post(f"{self._base}{path}", params={"access_token": token}, json=body)
            ).json()
            if answer.get("errcode", 0) not in REFRESH:
                return answer
            stale = token
        return answer

    async def send(self, outbound: OutboundMessage) -> SendOutcome:
        """A mass message (企业群发) from the customer's staff member to this one customer."""
        body = {
            "chat_type": "single",
            "external_userid": [outbound.address],
            "sender": outbound.sender,
            "text": {"content": outbound.message.text},
        }
        return await self._post(outbound.credentials, "/externalcontact/add_msg_template", body, outbound.address)

    async def send_app_message(self, credentials: Credentials, staff_ids: list[str], text: str) -> SendOutcome:
        """An app message to staff members (task notifications); duplicate check on within the window."""
        body = {
            "touser": "|".join(staff_ids),
            "msgtype": "text",
            "agentid": int(credentials.require("agent_id")),
            "text": {"content": text},
            "enable_duplicate_check": 1,
        }
        return await self._post(credentials, "/message/send", body, None)

    async def _post(
        self, credentials: Credentials, path: str, body: dict[str, Any], recipient: str | None
    ) -> SendOutcome:
        try:
            answer = await self.call(credentials, path, body)
        except MissingSetting as exc:
            return SendOutcome("config", f"wecom channel setting {exc} is missing")
        except TokenError as exc:
            return (
                classify(exc.errcode, str(exc), self._clock)
                if exc.errcode not in REFRESH
                else SendOutcome("config", str(exc))
            )
        except httpx.HTTPError as exc:
            return transport_outcome(exc, "wecom", dedupes=path == "/message/send")
        errcode = int(answer.get("errcode", 0))
        if errcode != 0:
            return classify(errcode, str(answer.get("errmsg", "")), self._clock)
        if recipient is not None and recipient in (answer.get("fail_list") or []):
            return SendOutcome("permanent", "wecom: not a contact of the sender any more", revoke="blocked")
        if answer.get("invaliduser"):
            return SendOutcome("permanent", f"wecom: invalid users {answer['invaliduser']}")
        return SendOutcome.ok(str(answer.get("msgid") or "") or None)
