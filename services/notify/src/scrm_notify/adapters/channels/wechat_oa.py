"""WeChat official account template messages (``message/template/send``) and subscribe messages
(``message/subscribe/bizsend``, for a template of kind ``subscribe``: each spends one of the customer's one-time
consents for that WeChat template), token from ``stable_token`` (safe when several workers share one app: it
does not invalidate tokens other instances hold).

Error codes (errcode) into the outcome tree::

    retryable   -1 (busy)
    refresh     40001, 40014, 42001: refresh once and retry
    deferred    45009 (daily quota): the next day
    permanent   43004 (not following: revokes), 43101 (refused; for a subscribe message: no one-time consent
                left, which clears the customer's grants for the template), 40003 (bad openid), any unknown code
    config      40037 (bad template id), 47003 (template data), 41030 (bad page)

A template message's ``client_msg_id`` carries our touch key, so WeChat dedupes a retried request. ``bizsend``
takes no such key: a subscribe message whose answer was lost after the request went out is not sent again.
"""

from typing import Any

import httpx

from scrm_kit.clock import Clock
from scrm_notify.adapters.channels.base import Credentials, MissingSetting, OutboundMessage, transport_outcome
from scrm_notify.adapters.channels.tokens import TokenCache
from scrm_notify.domain.clock_rules import start_of_next_day, zone
from scrm_notify.domain.delivery import SendOutcome

REFRESH = {40001, 40014, 42001}
CONFIG = {40037, 47003, 41030}


class WeChatOfficialAccountAdapter:
    channel = "wechat_oa"
    dedupes = True

    def __init__(self, client: httpx.AsyncClient, clock: Clock, base_url: str, tokens: TokenCache) -> None:
        self._client = client
        self._clock = clock
        self._base = base_url.rstrip("/")
        self._tokens = tokens

    def provider(self, credentials: Credentials) -> str:
        return "wechat_oa"

    async def _fetch(self, appid: str, secret: str) -> tuple[str, int]:
        body = {"grant_type": "client_credential", "appid": appid, "secret": secret, "force_refresh": False}
        answer = (await self._client.post(f"{self._base}/stable_token", json=body)).json()
        if answer.get("errcode", 0) != 0:
            raise MissingSetting(f"valid appid/secret (stable_token errcode {answer['errcode']})")
        return str(answer["access_token"]), int(answer.get("expires_in", 7200))

    def classify(self, errcode: int, errmsg: str) -> SendOutcome:
        reason = f"wechat errcode {errcode}: {errmsg}"
        if errcode in (-1, *REFRESH):
            return SendOutcome("retryable", reason)
        if errcode == 45009:
            return SendOutcome(
                "deferred", reason, retry_at=start_of_next_day(self._clock.now(), zone("Asia/Shanghai", "UTC"))
            )
        if errcode in CONFIG:
            return SendOutcome("config", reason)
        return SendOutcome("permanent", reason, revoke="unsubscribed" if errcode == 43004 else None)

    def _request(self, outbound: OutboundMessage, template_id: Any) -> tuple[str, dict[str, Any]]:
        """The API path and body of this message: a subscribe message or a template message."""
        message = outbound.message
        body: dict[str, Any] = {"touser": outbound.address, "template_id": template_id}
        data = {k: {"value": v} for k, v in (message.params or {"content": message.text}).items()}
        if message.kind == "subscribe":
            if message.page:
                body["page"] = message.page
            return "message/subscribe/bizsend", {**body, "data": data}
        return "message/template/send", {**body, "client_msg_id": outbound.touch_key, "data": data}

    async def send(self, outbound: OutboundMessage) -> SendOutcome:
        message = outbound.message
        subscribe = message.kind == "subscribe"
        # The shop's template names the approved WeChat template; else the channel's default ``template_id``.
        template_id = message.provider_template or outbound.credentials.settings.get("template_id")
        path, body = self._request(outbound, template_id)
        try:
            appid = outbound.credentials.require("appid")
            key = (self._base, appid, outbound.credentials.secret)
            if not template_id:
                raise MissingSetting("provider_template on the template (or template_id in the channel settings)")
            stale: str | None = None
            for _ in range(2):
                token = await self._tokens.get(key, lambda: self._fetch(appid, outbound.credentials.secret), stale)
                answer = (
                    await self._client.post(f"{self._base}/{path}", params={"access_token": token}, json=body)
                ).json()
                if answer.get("errcode", 0) not in REFRESH:
                    break
                stale = token
        except MissingSetting as exc:
            return SendOutcome("config", f"wechat_oa: {exc} is missing")
        except httpx.HTTPError as exc:
            return transport_outcome(exc, "wechat_oa", dedupes=not subscribe)
        errcode = int(answer.get("errcode", 0))
        if errcode != 0:
            outcome = self.classify(errcode, str(answer.get("errmsg", "")))
            if subscribe and errcode == 43101:
                reason = f"{outcome.reason} (no one-time subscribe consent left for WeChat template {template_id})"
                return SendOutcome("permanent", reason, consent_used_up=True)
            return outcome
        msgid = answer.get("msgid")
        return SendOutcome.ok(str(msgid) if msgid is not None else None)
