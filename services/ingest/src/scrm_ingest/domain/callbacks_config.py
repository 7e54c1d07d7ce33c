"""Callback configuration per tenant and provider, and the URLs a tenant gives each provider.

Providers that sign their callbacks (WeCom, our generic receipts) are verified by signature. Providers that cannot
(Aliyun and Tencent SMS push; SendGrid, whose ECDSA signature is optional) are authenticated by an unguessable
secret in the callback URL; only its SHA-256 digest is stored, and it is compared in constant time.
"""

import hashlib
import hmac
import secrets
import string
from dataclasses import dataclass
from enum import StrEnum

from scrm_ingest.domain.callbacks_email import load_verification_key
from scrm_ingest.domain.callbacks_wecom_crypto import decode_aes_key


class Provider(StrEnum):
    WECOM = "wecom"
    WECHAT_OA = "wechat-oa"
    ALIYUN_SMS = "aliyun-sms"
    TENCENT_SMS = "tencent-sms"
    SENDGRID = "sendgrid"
    GENERIC = "generic"


URL_SECRET_PROVIDERS = {Provider.ALIYUN_SMS, Provider.TENCENT_SMS, Provider.SENDGRID}
_ALNUM = string.ascii_letters + string.digits


class ConfigError(ValueError):
    """A configuration value is wrong: names the field."""

    def __init__(self, field: str, message: str) -> None:
        super().__init__(f"{field}: {message}")
        self.field = field
        self.message = message


@dataclass(frozen=True, slots=True)
class CallbackConfig:
    tenant_id: str
    provider: str
    url_secret_sha256: str | None = None
    signing_secret: str | None = None
    token: str | None = None
    encoding_aes_key: str | None = None
    receive_id: str | None = None
    verification_key: str | None = None

    def url_secret_matches(self, given: str) -> bool:
        if not self.url_secret_sha256:
            return False
        return hmac.compare_digest(secret_digest(given), self.url_secret_sha256)


@dataclass(frozen=True, slots=True)
class Configured:
    """A saved configuration plus the secrets to show the tenant this once."""

    config: CallbackConfig
    url_secret: str | None
    shown: dict[str, str]


def secret_digest(secret: str) -> str:
    return hashlib.sha256(secret.encode()).hexdigest()


def mask(secret: str | None) -> str | None:
    """What a later read shows of a secret: its first four characters."""
    return f"{secret[:4]}…" if secret else None


def _random_alnum(length: int) -> str:
    return "".join(secrets.choice(_ALNUM) for _ in range(length))


def _encrypted(
    provider: Provider, tenant_id: str, receive_id: str | None, token: str | None, aes_key: str | None
) -> Configured:
    """WeCom and the official account: Token and EncodingAESKey (generated when omitted), and the receive id."""
    if not receive_id or not receive_id.strip():
        field = "corp_id" if provider == Provider.WECOM else "appid"
        raise ConfigError(field, "is required (the WeCom corp id, or the official account's appid)")
    token = token if token is not None else _random_alnum(32)
    if not (1 <= len(token) <= 32) or any(c not in _ALNUM for c in token):
        raise ConfigError("token", "must be 1-32 letters or digits (WeCom's rule)")
    aes_key = aes_key if aes_key is not None else _random_alnum(43)
    try:
        decode_aes_key(aes_key)
    except ValueError as exc:
        raise ConfigError("encoding_aes_key", str(exc)) from exc
    config = CallbackConfig(tenant_id, provider, token=token, encoding_aes_key=aes_key, receive_id=receive_id.strip())
    return Configured(config, None, {"token": token, "encoding_aes_key": aes_key})


def configure(
    tenant_id: str,
    provider: Provider,
    *,
    corp_id: str | None = None,
    appid: str | None = None,
    token: str | None = None,
    encoding_aes_key: str | None = None,
    secret: str | None = None,
    verification_key: str | None = None,
) -> Configured:
    """A fresh configuration (a new URL or signing secret each time: configuring again rotates it)."""
    if provider == Provider.WECOM:
        return _encrypted(provider, tenant_id, corp_id, token, encoding_aes_key)
    if provider == Provider.WECHAT_OA:
        return _encrypted(provider, tenant_id, appid, token, encoding_aes_key)
    if provider == Provider.GENERIC:
        if secret is not None and len(secret) < 16:
            raise ConfigError("secret", "must be at least 16 characters")
        secret = secret or f"whsec_{secrets.token_urlsafe(24)}"
        return Configured(CallbackConfig(tenant_id, provider, signing_secret=secret), None, {"secret": secret})
    if verification_key is not None and provider == Provider.SENDGRID:
        try:
            load_verification_key(verification_key)
        except ValueError as exc:
            raise ConfigError("verification_key", str(exc)) from exc
    elif verification_key is not None:
        raise ConfigError("verification_key", f"only SendGrid signs with a verification key, not {provider.value}")
    url_secret = f"cbs_{secrets.token_urlsafe(24)}"
    config = CallbackConfig(
        tenant_id, provider, url_secret_sha256=secret_digest(url_secret), verification_key=verification_key
    )
    return Configured(config, url_secret, {"url_secret": url_secret})


def callback_urls(base_url: str, tenant_id: str, provider: Provider, url_secret: str | None) -> dict[str, str]:
    """The URLs to enter in the provider's console (``url_secret`` None gives them masked)."""
    root = f"{base_url.rstrip('/')}/v1/callbacks/{provider.value}/{tenant_id}"
    if provider not in URL_SECRET_PROVIDERS:
        return {"callback": root}
    shown = url_secret or "<secret shown once when configured>"
    if provider == Provider.SENDGRID:
        return {"events": f"{root}/{shown}"}
    return {"report": f"{root}/{shown}/report", "reply": f"{root}/{shown}/reply"}
