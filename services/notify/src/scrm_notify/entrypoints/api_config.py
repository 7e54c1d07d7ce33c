"""Notify configuration API: channel credentials, contact policy (caps, quiet hours), templates and preview."""

from typing import Annotated

from fastapi import APIRouter, Path, Query, Request, Response
from pydantic import ValidationError
from sqlalchemy import func
from sqlalchemy.dialects.postgresql import insert

from scrm_kit.errors import InvalidInput, NotFound
from scrm_kit.runtime import SessionDep
from scrm_kit.tenancy import TenantDep
from scrm_notify.adapters import touches
from scrm_notify.adapters.orm import PolicyRow, TemplateRow
from scrm_notify.domain.policy import TenantPolicy
from scrm_notify.domain.templates import TemplateSource
from scrm_notify.entrypoints.schemas import (
    ChannelConfigIn,
    ChannelConfigOut,
    ChannelList,
    PreviewIn,
    PreviewOut,
    TemplateCheckIn,
    TemplateCheckOut,
    TemplateCoverageOut,
    TemplateIn,
    TemplateList,
    TemplateOut,
    WebhookConfigIn,
    WebhookConfigOut,
)
from scrm_notify.service import channels, templates

router = APIRouter(prefix="/v1", tags=["notify config"])
TemplateId = Annotated[str, Path(min_length=1, max_length=100, pattern=r"^[A-Za-z0-9_.:-]+$")]


@router.put("/channels/webhook", response_model=WebhookConfigOut)
async def put_webhook(body: WebhookConfigIn, tenant: TenantDep, request: Request) -> WebhookConfigOut:
    """Configure the tenant's webhook channel; a generated signing secret is shown once, in this answer."""
    url, secret = await channels.configure_webhook(
        request.app.state.runtime.sessions, tenant.tenant_id, body.url, body.secret
    )
    shown = secret if body.secret is None else channels.mask(secret)
    return WebhookConfigOut(channel="webhook", url=url, secret=shown)


@router.put("/channels/{channel}", response_model=ChannelConfigOut)
async def put_channel(
    channel: str, body: ChannelConfigIn, tenant: TenantDep, request: Request, session: SessionDep
) -> ChannelConfigOut:
    """Configure a provider channel (wecom, wechat_oa, sms, email, staff_task); the secret is never echoed."""
    await channels.configure_channel(
        request.app.state.runtime.sessions, tenant.tenant_id, channel, dict(body.settings), body.secret
    )
    return next(c for c in (await list_channels(tenant, session)).items if c.channel == channel)


@router.get("/channels", response_model=ChannelList)
async def list_channels(tenant: TenantDep, session: SessionDep) -> ChannelList:
    rows = await channels.list_channels(session, tenant.tenant_id)
    return ChannelList(
        items=[
            ChannelConfigOut(
                channel=r.channel,
                url=r.url or None,
                settings=r.settings or {},
                secret=channels.mask(r.secret),
                updated_at=r.updated_at,
            )
            for r in rows
        ]
    )


@router.get("/policy", response_model=TenantPolicy)
async def get_policy(tenant: TenantDep, session: SessionDep) -> TenantPolicy:
    """Frequency caps, quiet hours and platform limits in force for the tenant (defaults when never set)."""
    return await touches.policy(session, tenant.tenant_id)


@router.put("/policy", response_model=TenantPolicy)
async def put_policy(body: dict[str, object], tenant: TenantDep, request: Request) -> TenantPolicy:
    """Replace the tenant's policy; omitted fields take their defaults."""
    try:
        policy = TenantPolicy.model_validate(body)
    except ValidationError as exc:
        first = exc.errors()[0]
        raise InvalidInput(str(first["msg"]), field=".".join(str(p) for p in first["loc"]) or "body") from exc
    stored = policy.model_dump(mode="json")
    async with request.app.state.runtime.sessions() as session, session.begin():
        await session.execute(
            insert(PolicyRow)
            .values(tenant_id=tenant.tenant_id, policy=stored)
            .on_conflict_do_update(
                index_elements=[PolicyRow.tenant_id], set_={"policy": stored, "updated_at": func.now()}
            )
        )
    return policy


def _template_out(row: TemplateRow) -> TemplateOut:
    return TemplateOut(
        template_id=row.template_id,
        channel=row.channel,
        locale=row.locale,
        body=row.body,  # type: ignore[arg-type]
        subject=row.subject,
        provider_template=row.provider_template,
        params=row.params or {},
        kind="subscribe" if row.kind == "subscribe" else "template",
        page=row.page,
        updated_at=row.updated_at,
    )


def _source(body: TemplateIn) -> TemplateSource:
    return TemplateSource(body.body, body.subject, body.provider_template, body.params, body.kind, body.page)


@router.put("/templates/{template_id}", response_model=TemplateOut)
async def put_template(
    template_id: TemplateId, body: TemplateIn, tenant: TenantDep, request: Request, session: SessionDep
) -> TemplateOut:
    """Create or replace the template for one channel (``*`` for any) and locale; syntax is checked on save."""
    await templates.save(
        request.app.state.runtime.sessions, tenant.tenant_id, template_id, body.channel, body.locale, _source(body)
    )
    rows = await templates.listing(session, tenant.tenant_id, template_id)
    return _template_out(next(r for r in rows if r.channel == body.channel and r.locale == body.locale))


@router.get("/templates", response_model=TemplateList)
async def list_templates(tenant: TenantDep, session: SessionDep) -> TemplateList:
    return TemplateList(items=[_template_out(r) for r in await templates.listing(session, tenant.tenant_id)])


@router.get("/templates/{template_id}", response_model=TemplateList)
async def get_template(template_id: TemplateId, tenant: TenantDep, session: SessionDep) -> TemplateList:
    rows = await templates.listing(session, tenant.tenant_id, template_id)
    if not rows:
        raise NotFound(f"no template {template_id!r}")
    return TemplateList(items=[_template_out(r) for r in rows])


@router.delete("/templates/{template_id}", status_code=204, response_class=Response)
async def delete_template(
    template_id: TemplateId,
    tenant: TenantDep,
    request: Request,
    channel: str = Query(default="*"),
    locale: str = Query(default="default"),
) -> Response:
    await templates.remove(request.app.state.runtime.sessions, tenant.tenant_id, template_id, channel, locale)
    return Response(status_code=204)


@router.post("/templates/check", response_model=TemplateCheckOut)
async def check_templates(body: TemplateCheckIn, tenant: TenantDep, session: SessionDep) -> TemplateCheckOut:
    """Which (template id, channel) pairs a touch can render for a customer in the default locale: the tenant's
    own template (that channel or ``*``) or notify's built-in copy. The journey service asks this to validate."""
    needs = list({(n.template_id, n.channel): n for n in body.needs}.values())
    found = await templates.coverage(session, tenant.tenant_id, [(n.template_id, n.channel) for n in needs])
    return TemplateCheckOut(
        items=[
            TemplateCoverageOut(
                template_id=n.template_id, channel=n.channel, defined=c.source is not None, source=c.source,
                locales=c.locales,
            )
            for n, c in zip(needs, found, strict=True)
        ]
    )  # fmt: skip


@router.post("/templates/preview", response_model=PreviewOut)
async def preview_template(body: PreviewIn, tenant: TenantDep, session: SessionDep) -> PreviewOut:
    """Render a stored (or draft) template with a customer's profile and/or given variables."""
    draft = None
    if body.draft is not None:
        templates.validate(body.draft.channel, _source(body.draft))
        draft = _source(body.draft)
    rendered = await templates.preview(
        session, tenant.tenant_id, body.template_id, body.channel, body.locale, body.variables, body.customer_id, draft
    )
    return PreviewOut(
        text=rendered.text,
        subject=rendered.subject,
        provider_template=rendered.provider_template,
        params=dict(rendered.params),
        kind=rendered.kind,
        page=rendered.page,
    )
