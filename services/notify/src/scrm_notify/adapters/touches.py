"""Queries on touches, templates, policies and channel configs that the delivery pipeline needs."""

from datetime import datetime, timedelta

from sqlalchemy import and_, or_, select
from sqlalchemy.ext.asyncio import AsyncSession

from scrm_notify.adapters.channels.base import Credentials
from scrm_notify.adapters.orm import ChannelConfigRow, PolicyRow, TemplateRow, TouchRow
from scrm_notify.domain.gates import History
from scrm_notify.domain.policy import TenantPolicy
from scrm_notify.domain.templates import ANY_CHANNEL, DEFAULT_LOCALE, MessageKind, TemplateSource, built_in

COUNTED = ("sending", "sent", "delivered", "opened", "clicked", "replied")


async def history(session: AsyncSession, tenant_id: str, customer_id: str, now: datetime) -> History:
    """Touches sent to the customer in the last 32 days (covers weekly caps and calendar-month limits)."""
    rows = await session.execute(
        select(TouchRow.channel, TouchRow.sent_at, TouchRow.priority).where(
            TouchRow.tenant_id == tenant_id,
            TouchRow.customer_id == customer_id,
            TouchRow.sent_at > now - timedelta(days=32),
            TouchRow.status.in_(COUNTED),
        )
    )
    return History(sent=[(r.channel or "", r.sent_at, r.priority) for r in rows])


async def policy(session: AsyncSession, tenant_id: str) -> TenantPolicy:
    row = await session.get(PolicyRow, tenant_id)
    return TenantPolicy.model_validate(row.policy) if row else TenantPolicy()


async def credentials(session: AsyncSession, tenant_id: str, channel: str) -> Credentials | None:
    row = await session.get(ChannelConfigRow, (tenant_id, channel))
    return Credentials(settings=row.settings or {}, secret=row.secret, url=row.url) if row else None


async def template(
    session: AsyncSession, tenant_id: str, template_id: str, channel: str, locale: str | None
) -> TemplateSource | None:
    """The best match: exact channel before any channel, requested locale before the default; then built-ins."""
    locales = [loc for loc in (locale, DEFAULT_LOCALE) if loc]
    rows = (
        await session.execute(
            select(TemplateRow).where(
                TemplateRow.tenant_id == tenant_id,
                TemplateRow.template_id == template_id,
                TemplateRow.channel.in_([channel, ANY_CHANNEL]),
                TemplateRow.locale.in_(locales),
            )
        )
    ).scalars()
    ranked = sorted(rows, key=lambda r: (r.channel != channel, locales.index(r.locale)))
    if ranked:
        return source_of(ranked[0])
    return built_in(template_id, channel, locale)


def source_of(row: TemplateRow) -> TemplateSource:
    """A stored template as the renderer takes it."""
    kind: MessageKind = "subscribe" if row.kind == "subscribe" else "template"
    return TemplateSource(row.body, row.subject, row.provider_template, dict(row.params or {}), kind, row.page)


def due_filter(now: datetime):  # type: ignore[no-untyped-def]
    """Touches the scheduler owns that are due: waiting ones, and sends whose lease ran out (a crash mid-send)."""
    return and_(TouchRow.due_at <= now, or_(TouchRow.status.in_(("held", "deferred", "retrying", "sending"))))
