"""WeCom (企业微信): mass messages to external contacts (``externalcontact/add_msg_template``) and app messages
to staff (``message/send``), with the corp access token cached and refreshed.

Error codes (errcode) into the outcome tree::

    retryable   -1 (busy), 6000, 41063, 45033 (concurrency)
    deferred    45009 (frequency limit: wait out the window)
    refresh     40014, 42001 (token invalid/expired): refresh once and retry
    permanent   40003, 40096, 41048, 41050, 41051, 41053, 81013 (this recipient), any unknown code
    config      40001 (bad secret), 48002 (no API permission), 60020 (IP not trusted)

``add_msg_template`` success only creates a task the staff member confirms in the WeCom client: "sent" here
means "handed to the staff member". The second phase reads the task back (``mass_results``): the sender's task
status from ``get_groupmsg_task`` (0 not sent, 2 sent) and, once sent, each recipient's status from
``get_groupmsg_send_result`` (0 not sent, 1 sent, 2 not a friend any more, 3 over the mass-message quota), both
paged with ``limit`` and ``next_cursor``. ``add_msg_template`` is not idempotent, so a timeout after the request
left is ``outcome_unknown``, never retried.

``send_welcome_msg`` answers a contact-added callback with its ``WelcomeCode`` (valid 20 seconds, usable once:
41050 expired or invalid, 41051 used or the customer is already chatting); one immediate retry on -1 (busy) while
the code is still valid.
"""

from dataclasses import dataclass, field
from datetime import UTC, datetime
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


BUSY = -1
TASK_SENT = 2  # get_groupmsg_task: the sender confirmed and sent


@dataclass(frozen=True, slots=True)
class MassResults:
    """What WeCom says about one mass message: ``sent_by`` the senders who confirmed it, ``statuses`` per
    recipient (external_userid -> 0/1/2/3, with ``send_times``); ``error`` when it could not be read."""

    sent_by: frozenset[str] = frozenset()
    statuses: dict[str, int] = field(default_factory=dict)
    send_times: dict[str, datetime] = field(default_factory=dict)
    error: SendOutcome | None = None


@dataclass(frozen=True, slots=True)
class WelcomeAnswer:
    outcome: SendOutcome
    errcode: int | None = None


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

    async def send_welcome(
        self, credentials: Credentials, welcome_code: str, text: str, retry_busy_until: datetime
    ) -> WelcomeAnswer:
        """The welcome message for a new contact; one more try on -1 (busy) while ``retry_busy_until`` is ahead."""
        body = {"welcome_code": welcome_code, "text": {"content": text}}
        for attempt in range(2):
            answer, failed = await self._answer(credentials, "/externalcontact/send_welcome_msg", body)
            if failed is not None:
                return WelcomeAnswer(failed)
            errcode = int(answer.get("errcode", 0))
            if errcode == 0:
                return WelcomeAnswer(SendOutcome.ok(None), 0)
            if errcode != BUSY or attempt == 1 or self._clock.now() >= retry_busy_until:
                return WelcomeAnswer(classify(errcode, str(answer.get("errmsg", "")), self._clock), errcode)
        raise AssertionError("unreachable")

    async def mass_results(self, credentials: Credentials, msgid: str, sender: str | None, limit: int) -> MassResults:
        """Read a mass message's second phase: who sent it, then each recipient's status (all pages)."""
        tasks, error = await self._pages(credentials, "/externalcontact/get_groupmsg_task", {"msgid": msgid}, limit)
        if error is not None:
            return MassResults(error=error)
        sent = [t for t in tasks if int(t.get("status", 0)) == TASK_SENT and t.get("userid")]
        sent_by = frozenset(str(t["userid"]) for t in sent)
        task_times = {str(t["userid"]): int(t["send_time"]) for t in sent if t.get("send_time")}
        statuses: dict[str, int] = {}
        send_times: dict[str, datetime] = {}
        for userid in sorted(sent_by if sender is None else sent_by & {sender}):
            body = {"msgid": msgid, "userid": userid}
            sends, error = await self._pages(credentials, "/externalcontact/get_groupmsg_send_result", body, limit)
            if error is not None:
                return MassResults(error=error)
            for item in sends:
                recipient = item.get("external_userid")
                if not recipient:
                    continue
                statuses[str(recipient)] = int(item.get("status", 0))
                # When it went out to them, else when the sender sent the task (over-quota answers carry none).
                sent_at = item.get("send_time") or task_times.get(userid)
                if sent_at:
                    send_times[str(recipient)] = datetime.fromtimestamp(int(sent_at), UTC)
        return MassResults(sent_by, statuses, send_times)

    async def _pages(
        self, credentials: Credentials, path: str, body: dict[str, Any], limit: int
    ) -> tuple[list[dict[str, Any]], SendOutcome | None]:
        """Every item of a cursor-paged list (``task_list`` / ``send_list``), or the error that stopped it."""
        items: list[dict[str, Any]] = []
        cursor = ""
        list_key = "task_list" if path.endswith("get_groupmsg_task") else "send_list"
        while True:
            page_body = {**body, "limit": limit, **({"cursor": cursor} if cursor else {})}
            answer, failed = await self._answer(credentials, path, page_body)
            if failed is not None:
                return items, failed
            errcode = int(answer.get("errcode", 0))
            if errcode != 0:
                return items, classify(errcode, str(answer.get("errmsg", "")), self._clock)
            items.extend(answer.get(list_key) or [])
            cursor = str(answer.get("next_cursor") or "")
            if not cursor:
                return items, None

    async def _answer(
        self, credentials: Credentials, path: str, body: dict[str, Any]
    ) -> tuple[dict[str, Any], SendOutcome | None]:
        """The provider's JSON answer, or the outcome of a failure before there was one."""
        try:
            return await self.call(credentials, path, body), None
        except MissingSetting as exc:
            return {}, SendOutcome("config", f"wecom channel setting {exc} is missing")
        except TokenError as exc:
            if exc.errcode in REFRESH:
                return {}, SendOutcome("config", str(exc))
            return {}, classify(exc.errcode, str(exc), self._clock)
        except httpx.HTTPError as exc:
            reads = path in ("/externalcontact/get_groupmsg_task", "/externalcontact/get_groupmsg_send_result")
            return {}, transport_outcome(exc, "wecom", dedupes=path == "/message/send" or reads)

    async def _post(
        self, credentials: Credentials, path: str, body: dict[str, Any], recipient: str | None
    ) -> SendOutcome:
        answer, failed = await self._answer(credentials, path, body)
        if failed is not None:
            return failed
        errcode = int(answer.get("errcode", 0))
        if errcode != 0:
            return classify(errcode, str(answer.get("errmsg", "")), self._clock)
        if recipient is not None and recipient in (answer.get("fail_list") or []):
            return SendOutcome("permanent", "wecom: not a contact of the sender any more", revoke="blocked")
        if answer.get("invaliduser"):
            return SendOutcome("permanent", f"wecom: invalid users {answer['invaliduser']}")
        return SendOutcome.ok(str(answer.get("msgid") or "") or None)
