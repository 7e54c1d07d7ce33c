"""SMS through Aliyun (Dysmsapi ``SendSms``, RPC style, HMAC-SHA1 signed) or Tencent Cloud (``SendSms`` 2021-01-11,
TC3-HMAC-SHA256 signed). The tenant's ``sms`` channel setting ``provider`` picks one.

Codes into the outcome tree::

    Aliyun   retryable  isp.SYSTEM_ERROR
             deferred   isv.BUSINESS_LIMIT_CONTROL (an hour), isv.DAY_LIMIT_CONTROL (next day)
             permanent  isv.MOBILE_NUMBER_ILLEGAL, isv.BLACK_KEY_CONTROL_LIMIT,
                        isv.TEMPLATE_MISSING_PARAMETERS, unknown codes
             config     isv.AMOUNT_NOT_ENOUGH, isv.SMS_SIGNATURE_ILLEGAL, isv.SMS_TEMPLATE_ILLEGAL,
                        InvalidAccessKeyId.*, SignatureDoesNotMatch
    Tencent  retryable  InternalError.*
             deferred   LimitExceeded.PhoneNumberDailyLimit (next day), ...ThirtySecondLimit (30 s),
                        ...OneHourLimit (an hour), FailedOperation.MarketingSendTimeConstraint (08:00 Beijing)
             permanent  InvalidParameterValue.IncorrectPhoneNumber; FailedOperation.PhoneNumberInBlacklist (and
                        the customer is marked unsubscribed from SMS); unknown
             config     AuthFailure.*, FailedOperation.InsufficientBalanceInSmsPackage,
                        ...SignatureIncorrectOrUnapproved,
                        ...TemplateIncorrectOrUnapproved

Neither API dedupes a send: a timeout after the request left is ``outcome_unknown`` (failed, not retried).
``OutId`` / ``SessionContext`` carry the touch key so delivery reports match back.
"""

import base64
import hashlib
import hmac
import uuid
from datetime import UTC, datetime, time, timedelta
from urllib.parse import quote, urlparse

import httpx
import orjson

from scrm_kit.clock import Clock
from scrm_notify.adapters.channels.base import Credentials, MissingSetting, OutboundMessage, later, transport_outcome
from scrm_notify.domain.clock_rules import start_of_next_day, zone
from scrm_notify.domain.delivery import SendOutcome

BEIJING = zone("Asia/Shanghai", "UTC")


def _pct(value: str) -> str:
    return quote(value, safe="~")


def aliyun_signature(params: dict[str, str], secret: str, method: str = "POST") -> str:
    """Aliyun RPC signature: HMAC-SHA1 over the canonicalised, percent-encoded query, key ``secret&``."""
    canonical = "&".join(f"{_pct(k)}={_pct(v)}" for k, v in sorted(params.items()))
    to_sign = f"{method}&{_pct('/')}&{_pct(canonical)}"
    digest = hmac.new(f"{secret}&".encode(), to_sign.encode(), hashlib.sha1).digest()
    return base64.b64encode(digest).decode()


def tc3_authorization(secret_id: str, secret_key: str, host: str, body: bytes, timestamp: int) -> str:
    """Tencent Cloud TC3-HMAC-SHA256 ``Authorization`` header for a JSON POST to ``/``."""
    day = datetime.fromtimestamp(timestamp, UTC).strftime("%Y-%m-%d")
    canonical = "\n".join(
        [
            "POST",
            "/",
            "",
            f"content-type:application/json; charset=utf-8\nhost:{host}\n",
            "content-type;host",
            hashlib.sha256(body).hexdigest(),
        ]
    )
    scope = f"{day}/sms/tc3_request"
    to_sign = f"TC3-HMAC-SHA256\n{timestamp}\n{scope}\n{hashlib.sha256(canonical.encode()).hexdigest()}"
    key = f"TC3{secret_key}".encode()
    for part in (day, "sms", "tc3_request"):
        key = hmac.new(key, part.encode(), hashlib.sha256).digest()
    signature = hmac.new(key, to_sign.encode(), hashlib.sha256).hexdigest()
    return f"TC3-HMAC-SHA256 Credential={secret_id}/{scope}, SignedHeaders=content-type;host, Signature={signature}"


def _beijing_at(now: datetime, at: time) -> datetime:
    local = now.astimezone(BEIJING)
    target = datetime.combine(local.date(), at, tzinfo=BEIJING)
    return (target if target > local else target + timedelta(days=1)).astimezone(UTC)


class SmsAdapter:
    channel = "sms"
    dedupes = False

    def __init__(self, client: httpx.AsyncClient, clock: Clock, aliyun_url: str, tencent_url: str) -> None:
        self._client = client
        self._clock = clock
        self._aliyun = aliyun_url
        self._tencent = tencent_url

    def provider(self, credentials: Credentials) -> str:
        return f"sms_{credentials.settings.get('provider', 'aliyun')}"

    async def send(self, outbound: OutboundMessage) -> SendOutcome:
        try:
            if outbound.credentials.settings.get("provider", "aliyun") == "tencent":
                return await self._tencent_send(outbound)
            return await self._aliyun_send(outbound)
        except MissingSetting as exc:
            return SendOutcome("config", f"sms channel setting {exc} is missing")
        except httpx.HTTPError as exc:
            return transport_outcome(exc, self.provider(outbound.credentials), dedupes=False)

    async def _aliyun_send(self, outbound: OutboundMessage) -> SendOutcome:
        creds, message = outbound.credentials, outbound.message
        params = {
            "Action": "SendSms",
            "Version": "2017-05-25",
            "Format": "JSON",
            "RegionId": "cn-hangzhou",
            "AccessKeyId": creds.require("access_key_id"),
            "SignatureMethod": "HMAC-SHA1",
            "SignatureVersion": "1.0",
            "SignatureNonce": uuid.uuid4().hex,
            "Timestamp": self._clock.now().astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%SZ"),
            "PhoneNumbers": outbound.address,
            "SignName": creds.require("sign_name"),
            "TemplateCode": message.provider_template or creds.require("template_code"),
            "TemplateParam": orjson.dumps(dict(message.params)).decode(),
            "OutId": outbound.touch_key,
        }
        params["Signature"] = aliyun_signature(params, creds.secret)
        answer = (await self._client.post(self._aliyun, data=params)).json()
        return self._aliyun_outcome(str(answer.get("Code", "")), str(answer.get("Message", "")), answer.get("BizId"))

    def _aliyun_outcome(self, code: str, message: str, biz_id: object) -> SendOutcome:
        reason = f"aliyun {code}: {message}"
        now = self._clock.now()
        if code == "OK":
            return SendOutcome.ok(str(biz_id) if biz_id else None)
        if code == "isp.SYSTEM_ERROR":
            return SendOutcome("retryable", reason)
        if code == "isv.BUSINESS_LIMIT_CONTROL":
            return SendOutcome("deferred", reason, retry_at=later(now, 3600))
        if code == "isv.DAY_LIMIT_CONTROL":
            return SendOutcome("deferred", reason, retry_at=start_of_next_day(now, BEIJING))
        if code in (
            "isv.AMOUNT_NOT_ENOUGH",
            "isv.SMS_SIGNATURE_ILLEGAL",
            "isv.SMS_TEMPLATE_ILLEGAL",
            "SignatureDoesNotMatch",
        ) or code.startswith("InvalidAccessKeyId"):
            return SendOutcome("config", reason)
        return SendOutcome("permanent", reason)

    async def _tencent_send(self, outbound: OutboundMessage) -> SendOutcome:
        creds, message = outbound.credentials, outbound.message
        phone = outbound.address if outbound.address.startswith("+") else f"+86{outbound.address}"
        body = orjson.dumps(
            {
                "PhoneNumberSet": [phone],
                "SmsSdkAppId": creds.require("sdk_app_id"),
                "SignName": creds.require("sign_name"),
                "TemplateId": message.provider_template or creds.require("template_id"),
                "TemplateParamSet": list(message.params.values()),
                "SessionContext": outbound.touch_key,
            }
        )
        timestamp = int(self._clock.now().timestamp())
        host = urlparse(self._tencent).netloc
        headers = {
            "Content-Type": "application/json; charset=utf-8",
            "Host": host,
            "Authorization": tc3_authorization(creds.require("secret_id"), creds.secret, host, body, timestamp),
            "X-TC-Action": "SendSms",
            "X-TC-Version": "2021-01-11",
            "X-TC-Timestamp": str(timestamp),
            "X-TC-Region": str(creds.settings.get("region", "ap-guangzhou")),
        }
        answer = (await self._client.post(self._tencent, content=body, headers=headers)).json().get("Response", {})
        if "Error" in answer:
            return self._tencent_outcome(answer["Error"].get("Code", ""), answer["Error"].get("Message", ""), None)
        status = (answer.get("SendStatusSet") or [{}])[0]
        return self._tencent_outcome(
            str(status.get("Code", "")), str(status.get("Message", "")), status.get("SerialNo")
        )

    def _tencent_outcome(self, code: str, message: str, serial: object) -> SendOutcome:
        reason = f"tencent {code}: {message}"
        now = self._clock.now()
        deferrals = {
            "LimitExceeded.PhoneNumberDailyLimit": start_of_next_day(now, BEIJING),
            "LimitExceeded.PhoneNumberThirtySecondLimit": later(now, 30),
            "LimitExceeded.PhoneNumberOneHourLimit": later(now, 3600),
            "FailedOperation.MarketingSendTimeConstraint": _beijing_at(now, time(8, 0)),
        }
        if code == "Ok":
            return SendOutcome.ok(str(serial) if serial else None)
        if code.startswith("InternalError"):
            return SendOutcome("retryable", reason)
        if code in deferrals:
            return SendOutcome("deferred", reason, retry_at=deferrals[code])
        if code == "FailedOperation.PhoneNumberInBlacklist":
            return SendOutcome("permanent", reason, revoke="unsubscribed")
        if code.startswith("AuthFailure") or code in (
            "FailedOperation.InsufficientBalanceInSmsPackage",
            "FailedOperation.SignatureIncorrectOrUnapproved",
            "FailedOperation.TemplateIncorrectOrUnapproved",
        ):
            return SendOutcome("config", reason)
        return SendOutcome("permanent", reason)
