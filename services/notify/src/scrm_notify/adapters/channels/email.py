"""E-mail through SendGrid's v3 API (``POST /v3/mail/send``) or plain SMTP (standard library, in a thread).

Answers into the outcome tree::

    SendGrid  202 ok (``X-Message-Id``); 429 retryable at ``X-RateLimit-Reset``; 5xx retryable;
              401/403 config; 400/413 and other 4xx permanent
    SMTP      recipient refused -> permanent; authentication -> config; 4xx reply, disconnect,
              connect failure -> retryable; 5xx reply -> permanent

Neither dedupes: a timeout after the request left is ``outcome_unknown`` (failed, not retried). The touch key
travels as ``custom_args.touch_key`` (SendGrid event webhook) and in the ``Message-ID`` (SMTP).
"""

import asyncio
import smtplib
from datetime import UTC, datetime
from email.message import EmailMessage

import httpx

from scrm_kit.clock import Clock
from scrm_notify.adapters.channels.base import Credentials, MissingSetting, OutboundMessage, transport_outcome
from scrm_notify.domain.delivery import SendOutcome


class EmailAdapter:
    channel = "email"
    dedupes = False

    def __init__(self, client: httpx.AsyncClient, clock: Clock, sendgrid_url: str, smtp_timeout: float = 10.0) -> None:
        self._client = client
        self._clock = clock
        self._sendgrid = sendgrid_url.rstrip("/")
        self._smtp_timeout = smtp_timeout

    def provider(self, credentials: Credentials) -> str:
        return f"email_{credentials.settings.get('provider', 'sendgrid')}"

    async def send(self, outbound: OutboundMessage) -> SendOutcome:
        try:
            if outbound.credentials.settings.get("provider", "sendgrid") == "smtp":
                return await asyncio.to_thread(self._smtp_send, outbound)
            return await self._sendgrid_send(outbound)
        except MissingSetting as exc:
            return SendOutcome("config", f"email channel setting {exc} is missing")

    async def _sendgrid_send(self, outbound: OutboundMessage) -> SendOutcome:
        body = {
            "personalizations": [
                {"to": [{"email": outbound.address}], "custom_args": {"touch_key": outbound.touch_key}}
            ],
            "from": {"email": outbound.credentials.require("from")},
            "subject": outbound.message.subject or outbound.credentials.settings.get("default_subject", "(no subject)"),
            "content": [{"type": "text/plain", "value": outbound.message.text}],
        }
        headers = {"Authorization": f"Bearer {outbound.credentials.secret}"}
        try:
            response = await self._client.post(f"{self._sendgrid}/v3/mail/send", json=body, headers=headers)
        except httpx.HTTPError as exc:
            return transport_outcome(exc, "sendgrid", dedupes=False)
        status = response.status_code
        if status in (200, 202):
            return SendOutcome.ok(response.headers.get("X-Message-Id"))
        reason = f"sendgrid answered {status}"
        if status == 429:
            reset = response.headers.get("X-RateLimit-Reset")
            retry_at = datetime.fromtimestamp(int(reset), UTC) if reset and reset.isdigit() else None
            return SendOutcome("retryable", reason, retry_at=retry_at)
        if status >= 500:
            return SendOutcome("retryable", reason)
        if status in (401, 403):
            return SendOutcome("config", reason)
        return SendOutcome("permanent", reason)

    def _smtp_send(self, outbound: OutboundMessage) -> SendOutcome:
        creds = outbound.credentials
        mail = EmailMessage()
        mail["From"] = creds.require("from")
        mail["To"] = outbound.address
        mail["Subject"] = outbound.message.subject or "(no subject)"
        mail["Message-ID"] = f"<{outbound.touch_key.replace(':', '.')}@scrm-notify>"
        mail.set_content(outbound.message.text)
        try:
            with smtplib.SMTP(
                creds.require("host"), int(creds.settings.get("port", 25)), timeout=self._smtp_timeout
            ) as smtp:
                if creds.settings.get("starttls"):
                    smtp.starttls()
                if creds.settings.get("username"):
                    smtp.login(str(creds.settings["username"]), creds.secret)
                smtp.send_message(mail)
        except smtplib.SMTPRecipientsRefused as exc:
            return SendOutcome("permanent", f"smtp refused the recipient: {list(exc.recipients.values())[0]}")
        except smtplib.SMTPAuthenticationError as exc:
            return SendOutcome("config", f"smtp authentication failed: {exc.smtp_code}")
        except smtplib.SMTPResponseException as exc:
            kind = "retryable" if 400 <= exc.smtp_code < 500 else "permanent"
            return SendOutcome(kind, f"smtp answered {exc.smtp_code}")
        except (smtplib.SMTPServerDisconnected, ConnectionError, TimeoutError, OSError) as exc:
            return SendOutcome("retryable", f"smtp unreachable: {type(exc).__name__}")
        return SendOutcome.ok(mail["Message-ID"])
