"""Templates per (template_id, channel, locale): save with a syntax check, list, delete, preview, and say which
(template id, channel) pairs a touch could render (what the journey service checks its definitions against)."""

from collections import defaultdict
from dataclasses import dataclass
from typing import Any, Literal

from sqlalchemy import delete, func, select
from sqlalchemy.dialects.postgresql import insert
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from scrm_kit.errors import InvalidInput, NotFound
from scrm_notify.adapters import directory, touches
from scrm_notify.adapters.orm import CustomerRow, TemplateRow
from scrm_notify.domain.policy import CHANNELS
from scrm_notify.domain.templates import (
    ANY_CHANNEL,
    DEFAULT_LOCALE,
    RenderedMessage,
    TemplateFailure,
    TemplateSource,
    built_in,
    check_syntax,
)
from scrm_notify.domain.templates import render_source as render


def validate(channel: str, source: TemplateSource) -> None:
    if channel != ANY_CHANNEL and channel not in CHANNELS:
        raise InvalidInput(f"unknown channel {channel!r}; one of *, {', '.join(CHANNELS)}", field="channel")
    if source.kind == "subscribe" and channel != "wechat_oa":
        raise InvalidInput("subscribe messages are sent on channel wechat_oa only", field="kind")
    if source.page and source.kind != "subscribe":
        raise InvalidInput("page is for subscribe messages (kind subscribe) only", field="page")
    parts = {"body": source.body, "subject": source.subject or "", "page": source.page or ""} | {
        f"params.{k}": v for k, v in source.params.items()
    }
    for name, text in parts.items():
        problem = check_syntax(text, name)
        if problem:
            raise InvalidInput(problem, field=name)


async def save(
    sessions: async_sessionmaker[AsyncSession],
    tenant_id: str,
    template_id: str,
    channel: str,
    locale: str,
    source: TemplateSource,
) -> None:
    validate(channel, source)
    values = {
        "body": source.body,
        "subject": source.subject,
        "provider_template": source.provider_template,
        "params": dict(source.params),
        "kind": source.kind,
        "page": source.page,
    }
    async with sessions() as session, session.begin():
        await session.execute(
            insert(TemplateRow)
            .values(tenant_id=tenant_id, template_id=template_id, channel=channel, locale=locale, **values)
            .on_conflict_do_update(
                index_elements=[
                    TemplateRow.tenant_id,
                    TemplateRow.template_id,
                    TemplateRow.channel,
                    TemplateRow.locale,
                ],
                set_={**values, "updated_at": func.now()},
            )
        )


async def remove(
    sessions: async_sessionmaker[AsyncSession], tenant_id: str, template_id: str, channel: str, locale: str
) -> None:
    async with sessions() as session, session.begin():
        gone = await session.execute(
            delete(TemplateRow)
            .where(
                TemplateRow.tenant_id == tenant_id,
                TemplateRow.template_id == template_id,
                TemplateRow.channel == channel,
                TemplateRow.locale == locale,
            )
            .returning(TemplateRow.template_id)
        )
        if gone.first() is None:
            raise NotFound(f"no template {template_id!r} for channel {channel!r} and locale {locale!r}")


async def listing(session: AsyncSession, tenant_id: str, template_id: str | None = None) -> list[TemplateRow]:
    query = select(TemplateRow).where(TemplateRow.tenant_id == tenant_id)
    if template_id:
        query = query.where(TemplateRow.template_id == template_id)
    rows = await session.execute(query.order_by(TemplateRow.template_id, TemplateRow.channel, TemplateRow.locale))
    return list(rows.scalars())


async def preview(
    session: AsyncSession,
    tenant_id: str,
    template_id: str,
    channel: str,
    locale: str | None,
    variables: dict[str, Any],
    customer_id: str | None,
    source: TemplateSource | None = None,
) -> RenderedMessage:
    """Render as a touch would (the customer's profile fields plus ``variables``); errors name what is missing."""
    if source is None:
        source = await touches.template(session, tenant_id, template_id, channel, locale)
    if source is None:
        raise NotFound(f"no template {template_id!r} for channel {channel!r}")
    profile: dict[str, Any] = {}
    if customer_id:
        row = await session.get(CustomerRow, (tenant_id, await directory.resolve(session, tenant_id, customer_id)))
        if row is None:
            raise NotFound(f"no customer {customer_id!r}")
        profile = dict(row.variables or {})
    context = {**profile, "customer": profile, **variables, "customer_id": customer_id or variables.get("customer_id")}
    try:
        return render(template_id, source, {k: v for k, v in context.items() if v is not None})
    except TemplateFailure as exc:
        raise InvalidInput(str(exc), field="variables") from exc


@dataclass(frozen=True, slots=True)
class Coverage:
    """Whether a touch of ``template_id`` on ``channel`` renders for a customer in the default locale, and from
    what: the tenant's own template (``tenant``), notify's default copy (``built_in``) or nothing (None).
    ``locales`` are the tenant's own locales of it on that channel (or ``*``)."""

    template_id: str
    channel: str
    source: Literal["tenant", "built_in"] | None
    locales: list[str]


async def coverage(session: AsyncSession, tenant_id: str, wanted: list[tuple[str, str]]) -> list[Coverage]:
    """For each (template id, channel): found as a touch looks it up (``touches.template``) for a customer
    without a locale of their own, i.e. the tenant's template for that channel or ``*`` in the default locale,
    else the built-in copy. A template only in other locales does not count: most customers would get nothing."""
    rows = await session.execute(
        select(TemplateRow.template_id, TemplateRow.channel, TemplateRow.locale).where(
            TemplateRow.tenant_id == tenant_id, TemplateRow.template_id.in_({t for t, _ in wanted})
        )
    )
    stored: dict[str, list[tuple[str, str]]] = defaultdict(list)
    for row in rows:
        stored[row.template_id].append((row.channel, row.locale))
    found = []
    for template_id, channel in wanted:
        locales = sorted({loc for ch, loc in stored[template_id] if ch in (channel, ANY_CHANNEL)})
        source: Literal["tenant", "built_in"] | None = None
        if DEFAULT_LOCALE in locales:
            source = "tenant"
        elif built_in(template_id, channel) is not None:
            source = "built_in"
        found.append(Coverage(template_id, channel, source, locales))
    return found
