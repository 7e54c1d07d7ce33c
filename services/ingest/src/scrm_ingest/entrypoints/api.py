"""Ingest HTTP API: the Segment HTTP Tracking API (``/v1/track``, ``/v1/identify``, ..., ``/v1/batch``).

Authentication is Segment's: the write key as the HTTP Basic user (password empty), or ``writeKey`` in the body.
Answers: ``200 {"success": true}`` when everything was accepted; a batch with some bad items accepts the good
ones and answers ``207`` with ``errors`` naming each bad item by index, field and reason; a single bad message or
an all-bad batch is ``400``; ``401`` for a wrong key; ``413`` past the size limits; ``503`` when Kafka cannot
acknowledge (nothing was accepted then, so retrying is safe).
"""

import base64
import gzip
import time
import zlib
from datetime import UTC, datetime
from typing import Any

import orjson
from fastapi import APIRouter, FastAPI, Request
from fastapi.responses import JSONResponse
from pydantic import BaseModel

from scrm_contracts import TrackedEvent
from scrm_ingest.bootstrap import build_runtime
from scrm_ingest.domain.rate_limit import TenantRateLimiter
from scrm_ingest.domain.segment import MessageError, MessageType, SegmentMessage, to_event
from scrm_ingest.entrypoints.api_callbacks import router as callbacks_router
from scrm_ingest.service.publish import EventPublisher
from scrm_ingest.settings import Settings
from scrm_kit.errors import InvalidInput, RateLimited
from scrm_kit.runtime import ErrorBody, create_app, error_response
from scrm_kit.tenancy import Tenant, TenantDirectory, Unauthorized
from scrm_kit.textcheck import NUL_ESCAPE

router = APIRouter(prefix="/v1", tags=["tracking"])


class ItemError(BaseModel):
    index: int
    field: str
    message: str


class Accepted(BaseModel):
    success: bool
    accepted: int | None = None
    errors: list[ItemError] | None = None


RESPONSES: dict[int | str, dict[str, Any]] = {
    207: {"model": Accepted, "description": "Some batch items were rejected; the rest were accepted"},
    400: {"model": ErrorBody},
    401: {"model": ErrorBody},
    413: {"model": ErrorBody},
    429: {"model": ErrorBody, "description": "Over the tenant's rate limit: retry after `Retry-After` seconds"},
    503: {"model": ErrorBody},
}


def _request_body(schema: dict[str, Any]) -> dict[str, Any]:
    """OpenAPI for a body the route reads itself (size caps, gzip): clients and fuzzers still see its shape."""
    return {"requestBody": {"required": True, "content": {"application/json": {"schema": schema}}}}


_MESSAGE_SCHEMA = SegmentMessage.model_json_schema(by_alias=True)
_BATCH_SCHEMA: dict[str, Any] = {
    "type": "object",
    "required": ["batch"],
    "properties": {
        "batch": {"type": "array", "items": _MESSAGE_SCHEMA},
        "context": {"type": "object"},
        "sentAt": {"type": "string", "format": "date-time"},
        "writeKey": {"type": "string"},
    },
}


class PayloadTooLarge(InvalidInput):
    code = "payload_too_large"
    http_status = 413


async def _read_capped(request: Request, limit: int) -> bytes:
    """The request body, refusing (without reading it all) one larger than ``limit``."""
    declared = request.headers.get("content-length", "")
    if declared.isdigit() and int(declared) > limit:
        raise PayloadTooLarge(f"body is larger than {limit // 1024} KB", field="body")
    chunks: list[bytes] = []
    size = 0
    async for chunk in request.stream():
        size += len(chunk)
        if size > limit:
            raise PayloadTooLarge(f"body is larger than {limit // 1024} KB", field="body")
        chunks.append(chunk)
    return b"".join(chunks)


async def _read_json(request: Request, limit: int) -> tuple[Any, bool]:
    """The body parsed, and whether it may hold a NUL character (``textcheck``: to_event looks where)."""
    raw = await _read_capped(request, limit)
    encoding = request.headers.get("content-encoding", "").lower()
    if encoding == "gzip":
        try:
            decompressor = zlib.decompressobj(16 + zlib.MAX_WBITS)
            raw = decompressor.decompress(raw, limit + 1)
        except (zlib.error, gzip.BadGzipFile) as exc:
            raise InvalidInput("body is not valid gzip", field="body") from exc
    elif encoding not in ("", "identity"):
        raise InvalidInput(f"unsupported Content-Encoding {encoding!r}", field="Content-Encoding")
    if len(raw) > limit:
        raise PayloadTooLarge(f"body is larger than {limit // 1024} KB", field="body")
    try:
        return orjson.loads(raw), NUL_ESCAPE in raw
    except orjson.JSONDecodeError as exc:
        raise InvalidInput(f"body is not valid JSON: {exc}", field="body") from exc


async def _tenant(request: Request, body: Any) -> Tenant:
    write_key = ""
    header = request.headers.get("authorization", "")
    if header.lower().startswith("basic "):
        try:
            write_key = base64.b64decode(header[6:]).decode().split(":", 1)[0]
        except (ValueError, UnicodeDecodeError) as exc:
            raise Unauthorized("malformed Basic authorization header") from exc
    if not write_key and isinstance(body, dict) and isinstance(body.get("writeKey"), str):
        write_key = body["writeKey"]
    if not write_key:
        raise Unauthorized("missing write key: send it as the HTTP Basic user or as writeKey in the body")
    directory: TenantDirectory = request.app.state.tenants
    tenant = await directory.by_write_key(write_key)
    if tenant is None:
        raise Unauthorized("unknown write key")
    return tenant


def _within_rate(request: Request, tenant: Tenant, count: int) -> None:
    limiter: TenantRateLimiter = request.app.state.limiter
    wait = limiter.take(tenant.tenant_id, count, tenant.events_per_second)
    if wait > 0:
        raise RateLimited(f"over this tenant's rate limit; retry in {wait:.1f}s", retry_after=wait)


async def _accept_one(request: Request, kind: MessageType) -> Accepted:
    settings: Settings = request.app.state.settings
    body, maybe_nul = await _read_json(request, settings.max_event_bytes)
    tenant = await _tenant(request, body)
    _within_rate(request, tenant, 1)
    try:
        event = to_event(
            body, tenant_id=tenant.tenant_id, kind=kind, received_at=datetime.now(UTC), nul_free=not maybe_nul
        )
    except MessageError as exc:
        raise InvalidInput(exc.message, field=exc.field) from exc
    publisher: EventPublisher = request.app.state.publisher
    await publisher.publish([event])
    return Accepted(success=True)


def _single(kind: MessageType):  # type: ignore[no-untyped-def]
    async def accept(request: Request) -> Accepted:
        return await _accept_one(request, kind)

    accept.__name__ = f"accept_{kind}"
    accept.__doc__ = f"Segment `{kind}` call."
    return accept


TRACKING_CALLS = ("track", "identify", "page", "screen", "group", "alias")
for _kind in TRACKING_CALLS:
    router.add_api_route(
        f"/{_kind}",
        _single(_kind),
        methods=["POST"],
        response_model=Accepted,
        response_model_exclude_none=True,  # type: ignore[arg-type]
        responses=RESPONSES,
        openapi_extra=_request_body(_MESSAGE_SCHEMA),
    )


@router.post(
    "/batch",
    response_model=Accepted,
    response_model_exclude_none=True,
    responses=RESPONSES,
    openapi_extra=_request_body(_BATCH_SCHEMA),
)
@router.post(
    "/import", response_model=Accepted, response_model_exclude_none=True, responses=RESPONSES, include_in_schema=False
)
async def accept_batch(request: Request) -> Accepted | JSONResponse:
    """Segment `batch`: up to 500 KB of messages, each with its own `type`."""
    settings: Settings = request.app.state.settings
    body, maybe_nul = await _read_json(request, settings.max_batch_bytes)
    tenant = await _tenant(request, body)
    if not isinstance(body, dict) or not isinstance(body.get("batch"), list):
        raise InvalidInput("body must be an object with a 'batch' array", field="batch")
    _within_rate(request, tenant, max(1, len(body["batch"])))
    received_at = datetime.now(UTC)
    shared_context = body.get("context") if isinstance(body.get("context"), dict) else {}
    events: list[TrackedEvent] = []
    errors: list[ItemError] = []
    for index, item in enumerate(body["batch"]):
        try:
            if isinstance(item, dict) and shared_context:
                item = {**item, "context": {**shared_context, **(item.get("context") or {})}}
            if isinstance(item, dict) and "sentAt" not in item and "sentAt" in body:
                item = {**item, "sentAt": body["sentAt"]}
            if isinstance(item, dict) and len(orjson.dumps(item)) > settings.max_event_bytes:
                raise MessageError("body", f"event is larger than {settings.max_event_bytes // 1024} KB")
            event = to_event(
                item, tenant_id=tenant.tenant_id, kind=None, received_at=received_at, nul_free=not maybe_nul
            )
            events.append(event)
        except MessageError as exc:
            errors.append(ItemError(index=index, field=f"batch[{index}].{exc.field}", message=exc.message))
    if not events:
        if not errors:
            raise InvalidInput("batch is empty", field="batch")
        return error_response(400, "invalid_input", errors[0].message, errors[0].field)
    publisher: EventPublisher = request.app.state.publisher
    await publisher.publish(events)
    if errors:
        content = Accepted(success=False, accepted=len(events), errors=errors).model_dump()
        return JSONResponse(status_code=207, content=content)
    return Accepted(success=True)


def app() -> FastAPI:
    """ASGI factory: ``uvicorn --factory scrm_ingest.entrypoints.api:app``."""
    settings = Settings()

    def runtime_factory():  # type: ignore[no-untyped-def]
        runtime, publisher = build_runtime(settings)
        application.state.publisher = publisher
        return runtime

    application = create_app(
        runtime_factory,
        title="SCRM ingest",
        routers=[router, callbacks_router],
        raw_body_paths=tuple(f"/v1/{kind}" for kind in (*TRACKING_CALLS, "batch", "import")),
    )
    application.state.settings = settings
    application.state.limiter = TenantRateLimiter(
        settings.rate_limit_events_per_second, settings.rate_limit_burst_seconds, time.monotonic
    )
    return application
