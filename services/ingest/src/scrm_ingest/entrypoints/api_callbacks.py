"""Channel provider callbacks: delivery receipts, replies and contact events become events on ``events.v1``.

Configure with ``PUT /v1/callbacks/{provider}`` (the tenant's API token as Bearer); the answer carries the callback
URL(s) to give the provider and the secrets, shown once. Each provider is answered the way it expects: WeCom
``success``, Aliyun ``{"code": 0, "msg": "成功"}``, Tencent ``{"result": 0, "errmsg": "OK"}``, SendGrid and generic
receipts ``{"success": true}`` (generic: ``207`` with ``errors`` when some items were bad). Wrong or missing
signature or URL secret: ``401`` and nothing published.
"""

from typing import Annotated, Any, Literal

from fastapi import APIRouter, Depends, Header, Path, Query, Request
from fastapi.responses import JSONResponse, PlainTextResponse
from pydantic import BaseModel, Field

from scrm_ingest.adapters.callback_store import CallbackConfigStore
from scrm_ingest.domain.callbacks_common import MappedCallback
from scrm_ingest.domain.callbacks_config import Provider, callback_urls, mask
from scrm_ingest.service.callbacks import CallbackHandler
from scrm_ingest.settings import Settings
from scrm_kit.clock import SystemClock
from scrm_kit.errors import InvalidInput, NotFound
from scrm_kit.runtime import ErrorBody, error_response
from scrm_kit.tenancy import TenantDep

router = APIRouter(prefix="/v1/callbacks", tags=["callbacks"])
ERRORS: dict[int | str, dict[str, Any]] = {
    400: {"model": ErrorBody},
    401: {"model": ErrorBody},
    503: {"model": ErrorBody},
}


def _handler(request: Request) -> CallbackHandler:
    state = request.app.state
    return CallbackHandler(
        CallbackConfigStore(state.runtime.sessions),
        state.publisher,
        state.settings,
        getattr(state, "clock", None) or SystemClock(),
    )


HandlerDep = Annotated[CallbackHandler, Depends(_handler)]
TenantPath = Annotated[str, Path(min_length=1, max_length=100, description="The tenant id")]


class CallbackConfigIn(BaseModel):
    corp_id: str | None = Field(default=None, description="wecom: the corp id (receive id of the encrypted messages)")
    appid: str | None = Field(default=None, description="wechat-oa: the official account's appid")
    token: str | None = Field(default=None, description="wecom: the callback Token (generated when omitted)")
    encoding_aes_key: str | None = Field(default=None, description="wecom: 43-character EncodingAESKey (generated)")
    secret: str | None = Field(default=None, description="generic: HMAC signing secret, >= 16 chars (generated)")
    verification_key: str | None = Field(
        default=None, description="sendgrid: the Signed Event Webhook's verification key; then signatures are required"
    )


class CallbackConfigOut(BaseModel):
    provider: Provider
    urls: dict[str, str] = Field(description="What to enter in the provider's console")
    secrets: dict[str, str] = Field(description="Shown whole only in the answer to PUT; masked afterwards")
    corp_id: str | None = Field(default=None, description="The receive id: WeCom corp id, or the appid (wechat-oa)")


class ItemErrorOut(BaseModel):
    field: str
    message: str


class CallbackAnswer(BaseModel):
    success: bool
    accepted: int
    errors: list[ItemErrorOut] | None = None


class AliyunAnswer(BaseModel):
    code: int
    msg: str
    errors: list[ItemErrorOut] | None = None


class TencentAnswer(BaseModel):
    result: int
    errmsg: str
    errors: list[ItemErrorOut] | None = None


def _errors(mapped: MappedCallback) -> list[ItemErrorOut] | None:
    return [ItemErrorOut(field=e.field, message=e.message) for e in mapped.errors] or None


def _base_url(request: Request) -> str:
    settings: Settings = request.app.state.settings
    return settings.callback_public_url or str(request.base_url)


async def _body(request: Request) -> bytes:
    settings: Settings = request.app.state.settings
    raw = await request.body()
    if len(raw) > settings.max_batch_bytes:
        raise InvalidInput(f"body is larger than {settings.max_batch_bytes // 1024} KB", field="body")
    return raw


@router.put("/{provider}", response_model=CallbackConfigOut, responses=ERRORS)
async def put_callback(
    provider: Provider, body: CallbackConfigIn, tenant: TenantDep, handler: HandlerDep, request: Request
) -> CallbackConfigOut:
    """Configure one provider's callbacks for the tenant; answers the URL(s) and the secrets (shown once)."""
    configured = await handler.configure(tenant.tenant_id, provider, **body.model_dump())
    urls = callback_urls(_base_url(request), tenant.tenant_id, provider, configured.url_secret)
    receive_id = configured.config.receive_id
    return CallbackConfigOut(provider=provider, urls=urls, secrets=configured.shown, corp_id=receive_id)


@router.get("/{provider}", response_model=CallbackConfigOut, responses={404: {"model": ErrorBody}, **ERRORS})
async def get_callback(
    provider: Provider, tenant: TenantDep, handler: HandlerDep, request: Request
) -> CallbackConfigOut:
    """The tenant's configuration of one provider, secrets masked."""
    config = await handler.current(tenant.tenant_id, provider)
    if config is None:
        raise NotFound(f"no {provider.value} callback configured")
    secrets = {
        "token": config.token,
        "encoding_aes_key": config.encoding_aes_key,
        "secret": config.signing_secret,
        "verification_key": config.verification_key,
    }
    shown = {k: mask(v) or "" for k, v in secrets.items() if v}
    if config.url_secret_sha256:
        shown["url_secret"] = "cbs_…"
    return CallbackConfigOut(
        provider=provider,
        urls=callback_urls(_base_url(request), tenant.tenant_id, provider, None),
        secrets=shown,
        corp_id=config.receive_id,
    )


@router.get("/wecom/{tenant_id}", response_class=PlainTextResponse, responses=ERRORS)
async def wecom_verify_url(
    tenant_id: TenantPath,
    handler: HandlerDep,
    msg_signature: Annotated[str, Query(min_length=1)],
    timestamp: Annotated[str, Query(min_length=1)],
    nonce: Annotated[str, Query(min_length=1)],
    echostr: Annotated[str, Query(min_length=1)],
) -> PlainTextResponse:
    """WeCom's URL verification: answers ``echostr`` decrypted when the signature is good."""
    return PlainTextResponse(await handler.wecom_echo(tenant_id, msg_signature, timestamp, nonce, echostr))


@router.post("/wecom/{tenant_id}", response_class=PlainTextResponse, responses=ERRORS)
async def wecom_callback(
    tenant_id: TenantPath,
    handler: HandlerDep,
    request: Request,
    msg_signature: Annotated[str, Query(min_length=1)],
    timestamp: Annotated[str, Query(min_length=1)],
    nonce: Annotated[str, Query(min_length=1)],
) -> PlainTextResponse:
    """WeCom's encrypted XML callback (``change_external_contact``); answers ``success``."""
    await handler.receive_encrypted(tenant_id, Provider.WECOM, msg_signature, timestamp, nonce, await _body(request))
    return PlainTextResponse("success")


@router.get("/wechat-oa/{tenant_id}", response_class=PlainTextResponse, responses=ERRORS)
async def official_account_verify_url(
    tenant_id: TenantPath,
    handler: HandlerDep,
    signature: Annotated[str, Query(min_length=1)],
    timestamp: Annotated[str, Query(min_length=1)],
    nonce: Annotated[str, Query(min_length=1)],
    echostr: Annotated[str, Query(min_length=1)],
) -> PlainTextResponse:
    """The official account's URL check: answers ``echostr`` when the signature is good."""
    return PlainTextResponse(await handler.official_account_echo(tenant_id, signature, timestamp, nonce, echostr))


@router.post("/wechat-oa/{tenant_id}", response_class=PlainTextResponse, responses=ERRORS)
async def official_account_callback(
    tenant_id: TenantPath,
    handler: HandlerDep,
    request: Request,
    msg_signature: Annotated[str, Query(min_length=1, description="Safe mode only (encrypt_type=aes)")],
    timestamp: Annotated[str, Query(min_length=1)],
    nonce: Annotated[str, Query(min_length=1)],
) -> PlainTextResponse:
    """Official account messages in safe mode (follows, unfollows, template receipts); answers ``success``."""
    raw = await _body(request)
    await handler.receive_encrypted(tenant_id, Provider.WECHAT_OA, msg_signature, timestamp, nonce, raw)
    return PlainTextResponse("success")


@router.post("/generic/{tenant_id}", response_model=CallbackAnswer, response_model_exclude_none=True, responses=ERRORS)
async def generic_callback(
    tenant_id: TenantPath,
    handler: HandlerDep,
    request: Request,
    x_scrm_signature: Annotated[str | None, Header()] = None,
) -> CallbackAnswer | JSONResponse:
    """Our own signed JSON receipts (``X-SCRM-Signature``); ``207`` names the bad items when some were bad."""
    mapped = await handler.receive_generic(tenant_id, x_scrm_signature, await _body(request))
    answer = CallbackAnswer(success=not mapped.errors, accepted=len(mapped.events), errors=_errors(mapped))
    if mapped.errors:
        return JSONResponse(status_code=207, content=answer.model_dump(exclude_none=True))
    return answer


@router.post(
    "/sendgrid/{tenant_id}/{url_secret}",
    response_model=CallbackAnswer,
    response_model_exclude_none=True,
    responses=ERRORS,
)
async def sendgrid_callback(
    tenant_id: TenantPath, url_secret: str, handler: HandlerDep, request: Request
) -> CallbackAnswer:
    """SendGrid's event webhook (delivered, open, click, bounce, dropped, spamreport, unsubscribe); signed when
    the tenant configured a verification key."""
    raw = await _body(request)
    mapped = await handler.receive_with_url_secret(
        tenant_id, Provider.SENDGRID, url_secret, "events", raw, request.headers
    )
    return CallbackAnswer(success=True, accepted=len(mapped.events), errors=_errors(mapped))


@router.post(
    "/{provider}/{tenant_id}/{url_secret}/{kind}",
    response_model=AliyunAnswer | TencentAnswer,
    response_model_exclude_none=True,
    responses=ERRORS,
)
async def sms_callback(
    provider: Literal["aliyun-sms", "tencent-sms"],
    tenant_id: TenantPath,
    url_secret: str,
    kind: Literal["report", "reply"],
    handler: HandlerDep,
    request: Request,
) -> AliyunAnswer | TencentAnswer:
    """Aliyun SmsReport / SmsUp and Tencent Cloud SMS status / reply pushes."""
    mapped = await handler.receive_with_url_secret(
        tenant_id, Provider(provider), url_secret, kind, await _body(request)
    )
    if provider == Provider.ALIYUN_SMS:
        return AliyunAnswer(code=0, msg="成功", errors=_errors(mapped))
    return TencentAnswer(result=0, errmsg="OK", errors=_errors(mapped))


@router.api_route("/{provider}/{rest:path}", methods=["GET", "POST"], include_in_schema=False)
async def unknown_callback(provider: str, rest: str) -> JSONResponse:
    """Anything else under /v1/callbacks: name what is wrong instead of a bare 404."""
    known = ", ".join(p.value for p in Provider)
    return error_response(400, "invalid_input", f"unknown callback provider or path; providers: {known}", "provider")
