"""Handlers for channel provider callbacks: authenticate, map to events, publish, and say what was accepted.

Nothing is published unless the callback is genuine (signature or URL secret). A body that cannot be read at all,
or whose every item is bad, is rejected naming the field; otherwise the good items are published (the answer waits
for Kafka's acks) and the bad ones are reported by index and field.
"""

import logging
from collections.abc import Callable, Mapping, Sequence
from functools import partial
from typing import Any, Protocol

import orjson

from scrm_contracts import TrackedEvent
from scrm_ingest.domain.callbacks_common import CallbackContext, ItemError, MappedCallback
from scrm_ingest.domain.callbacks_config import (
    CallbackConfig,
    ConfigError,
    Configured,
    Provider,
    configure,
)
from scrm_ingest.domain.callbacks_email import (
    SIGNATURE_HEADER,
    TIMESTAMP_HEADER,
    SendGridSignatureError,
    map_sendgrid_events,
    verify_sendgrid_signature,
)
from scrm_ingest.domain.callbacks_generic import SignatureError, map_generic_receipts, verify_signature
from scrm_ingest.domain.callbacks_sms import (
    map_aliyun_replies,
    map_aliyun_reports,
    map_tencent_replies,
    map_tencent_reports,
    unsubscribe_keywords,
)
from scrm_ingest.domain.callbacks_wechat_oa import map_official_account_message
from scrm_ingest.domain.callbacks_wecom import envelope_ciphertext, map_wecom_message
from scrm_ingest.domain.callbacks_wecom_crypto import CryptoError, WeComCrypto
from scrm_ingest.settings import Settings
from scrm_kit.clock import Clock
from scrm_kit.errors import InvalidInput
from scrm_kit.tenancy import Unauthorized

logger = logging.getLogger(__name__)

Mapper = Callable[[Any, CallbackContext], MappedCallback]
URL_SECRET_MAPPERS: dict[tuple[Provider, str], Mapper] = {
    (Provider.ALIYUN_SMS, "report"): map_aliyun_reports,
    (Provider.ALIYUN_SMS, "reply"): map_aliyun_replies,
    (Provider.TENCENT_SMS, "report"): map_tencent_reports,
    (Provider.TENCENT_SMS, "reply"): map_tencent_replies,
    (Provider.SENDGRID, "events"): map_sendgrid_events,
}
NOT_CONFIGURED = "callback not configured for this tenant and provider, or wrong credentials"


def parse_json(raw: bytes) -> Any:
    try:
        return orjson.loads(raw)
    except orjson.JSONDecodeError as exc:
        raise InvalidInput(f"body is not valid JSON: {exc}", field="body") from exc


class ConfigStore(Protocol):
    """Where callback configuration is kept (``adapters.callback_store.CallbackConfigStore``)."""

    async def load(self, tenant_id: str, provider: str) -> CallbackConfig | None: ...

    async def save(self, config: CallbackConfig) -> None: ...


class Publisher(Protocol):
    """Publishes events and returns once Kafka acknowledged them (``service.publish.EventPublisher``)."""

    async def publish(self, events: Sequence[TrackedEvent]) -> None: ...


class CallbackHandler:
    """One request's view of callback configuration, mapping and publishing."""

    def __init__(self, store: ConfigStore, publisher: Publisher, settings: Settings, clock: Clock) -> None:
        self._store = store
        self._publisher = publisher
        self._settings = settings
        self._clock = clock

    async def configure(self, tenant_id: str, provider: Provider, **values: str | None) -> Configured:
        """Save a fresh configuration for the tenant (rotating any earlier secret)."""
        try:
            configured = configure(tenant_id, provider, **values)
        except ConfigError as exc:
            raise InvalidInput(exc.message, field=exc.field) from exc
        await self._store.save(configured.config)
        logger.info("callback configured", extra={"tenant_id": tenant_id, "provider": provider.value})
        return configured

    async def current(self, tenant_id: str, provider: Provider) -> CallbackConfig | None:
        return await self._store.load(tenant_id, provider.value)

    async def _config(self, tenant_id: str, provider: Provider) -> CallbackConfig:
        config = await self._store.load(tenant_id, provider.value)
        if config is None:
            raise Unauthorized(NOT_CONFIGURED)
        return config

    def _context(self, tenant_id: str, provider: Provider) -> CallbackContext:
        return CallbackContext(
            tenant_id=tenant_id,
            provider=provider.value,
            received_at=self._clock.now(),
            unsubscribe_keywords=unsubscribe_keywords(self._settings.sms_unsubscribe_keywords),
            default_region=self._settings.default_phone_region,
        )

    async def receive_with_url_secret(
        self,
        tenant_id: str,
        provider: Provider,
        url_secret: str,
        kind: str,
        raw: bytes,
        headers: Mapping[str, str] | None = None,
    ) -> MappedCallback:
        """Aliyun / Tencent SMS push and SendGrid: the secret in the URL is the credential (plus SendGrid's
        ECDSA signature when the tenant configured its verification key)."""
        mapper = URL_SECRET_MAPPERS.get((provider, kind))
        if mapper is None:
            raise InvalidInput(f"unknown callback kind {kind!r} for {provider.value}", field="kind")
        config = await self._store.load(tenant_id, provider.value)
        if config is None or not config.url_secret_matches(url_secret):
            raise Unauthorized(NOT_CONFIGURED)
        if config.verification_key:
            headers = headers or {}
            try:
                verify_sendgrid_signature(
                    config.verification_key, headers.get(SIGNATURE_HEADER), headers.get(TIMESTAMP_HEADER), raw
                )
            except SendGridSignatureError as exc:
                raise Unauthorized(str(exc)) from exc
        return await self._map_and_publish(mapper, parse_json(raw), self._context(tenant_id, provider))

    async def receive_generic(self, tenant_id: str, signature: str | None, raw: bytes) -> MappedCallback:
        config = await self._config(tenant_id, Provider.GENERIC)
        assert config.signing_secret
        try:
            verify_signature(
                config.signing_secret,
                signature,
                raw,
                self._clock.now(),
                self._settings.callback_signature_tolerance_seconds,
            )
        except SignatureError as exc:
            raise Unauthorized(str(exc)) from exc
        return await self._map_and_publish(
            map_generic_receipts, parse_json(raw), self._context(tenant_id, Provider.GENERIC)
        )

    async def _crypto(self, tenant_id: str, provider: Provider = Provider.WECOM) -> tuple[WeComCrypto, str]:
        config = await self._config(tenant_id, provider)
        assert config.token and config.encoding_aes_key and config.receive_id
        return WeComCrypto(config.token, config.encoding_aes_key, config.receive_id), config.receive_id

    async def wecom_echo(self, tenant_id: str, msg_signature: str, timestamp: str, nonce: str, echostr: str) -> str:
        """WeCom's URL check: verify the signature over ``echostr`` and answer it decrypted."""
        crypto, _ = await self._crypto(tenant_id)
        try:
            return crypto.verify_and_decrypt(msg_signature, timestamp, nonce, echostr)
        except CryptoError as exc:
            raise Unauthorized(str(exc)) from exc

    async def official_account_echo(
        self, tenant_id: str, signature: str, timestamp: str, nonce: str, echostr: str
    ) -> str:
        """The official account's URL check: verify the plain signature and answer ``echostr`` as given."""
        crypto, _ = await self._crypto(tenant_id, Provider.WECHAT_OA)
        try:
            crypto.verify_plain(signature, timestamp, nonce)
        except CryptoError as exc:
            raise Unauthorized(str(exc)) from exc
        return echostr

    async def receive_encrypted(
        self, tenant_id: str, provider: Provider, msg_signature: str, timestamp: str, nonce: str, raw: bytes
    ) -> MappedCallback:
        """WeCom or official account (safe mode): verify ``msg_signature``, decrypt, map and publish."""
        crypto, receive_id = await self._crypto(tenant_id, provider)
        try:
            ciphertext = envelope_ciphertext(raw)
        except ItemError as exc:
            raise InvalidInput(exc.message, field=exc.field) from exc
        try:
            plaintext = crypto.verify_and_decrypt(msg_signature, timestamp, nonce, ciphertext)
        except CryptoError as exc:
            raise Unauthorized(str(exc)) from exc
        mapper: Mapper = map_wecom_message
        if provider == Provider.WECHAT_OA:
            mapper = partial(map_official_account_message, appid=receive_id)
        return await self._map_and_publish(mapper, plaintext, self._context(tenant_id, provider))

    async def _map_and_publish(self, mapper: Mapper, body: Any, ctx: CallbackContext) -> MappedCallback:
        try:
            mapped = mapper(body, ctx)
        except ItemError as exc:
            raise InvalidInput(exc.message, field=exc.field) from exc
        if mapped.errors and not mapped.events:
            first = mapped.errors[0]
            raise InvalidInput(first.message, field=first.field)
        if mapped.events:
            await self._publisher.publish(mapped.events)
        logger.info(
            "callback accepted",
            extra={
                "tenant_id": ctx.tenant_id,
                "provider": ctx.provider,
                "published": len(mapped.events),
                "rejected": len(mapped.errors),
                "ignored": mapped.ignored,
            },
        )
        return mapped
