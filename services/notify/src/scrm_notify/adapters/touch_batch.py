"""Set-based reads and writes of the delivery pipeline: a whole batch of touches costs a fixed number of round
trips (pairs and keys passed as arrays with ``unnest``), never several per touch.

Rows are locked in (tenant_id, key) order so two batches that overlap never wait on each other in a circle.
"""

from collections import defaultdict
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field, fields
from datetime import datetime, timedelta
from typing import Any

from sqlalchemy import Text, bindparam, func, select, text, tuple_
from sqlalchemy.dialects.postgresql import ARRAY, insert
from sqlalchemy.ext.asyncio import AsyncSession

from scrm_contracts import TouchRequest
from scrm_notify.adapters import subscribe_grants
from scrm_notify.adapters.channels.base import Credentials
from scrm_notify.adapters.directory import view_of
from scrm_notify.adapters.orm import (
    ChannelConfigRow,
    ConsentRow,
    CustomerAliasRow,
    CustomerRow,
    ErasedCustomerRow,
    PolicyRow,
    StaffTaskRow,
    TemplateRow,
    TouchRow,
    WeComQuotaHoldRow,
)
from scrm_notify.adapters.subscribe_grants import Grants
from scrm_notify.adapters.touches import COUNTED, due_filter, source_of
from scrm_notify.domain.consent import ConsentRecord, CustomerView
from scrm_notify.domain.policy import TenantPolicy
from scrm_notify.domain.templates import ANY_CHANNEL, DEFAULT_LOCALE, TemplateSource, built_in

Pair = tuple[str, str]
touches = TouchRow.__table__


@dataclass(slots=True)
class TouchState:
    """A touch row as the pipeline changes it in memory; ``write`` stores a batch of them in one statement."""

    tenant_id: str
    touch_key: str
    customer_id: str
    journey_id: str | None
    template_id: str
    priority: str
    status: str
    channel: str | None = None
    reason_code: str | None = None
    reason: str | None = None
    attempts: int = 0
    body: str | None = None
    provider_message_id: str | None = None
    request: dict[str, Any] | None = None
    due_at: datetime | None = None
    sent_at: datetime | None = None
    updated_at: datetime | None = None

    @property
    def key(self) -> Pair:
        return (self.tenant_id, self.touch_key)

    @property
    def customer(self) -> Pair:
        return (self.tenant_id, self.customer_id)


_STATE_COLUMNS = [touches.c[f.name] for f in fields(TouchState)]


def _state(row: Any) -> TouchState:
    return TouchState(*row)


def _text_array(name: str, values: Sequence[str]) -> Any:
    return func.unnest(bindparam(name, list(values), type_=ARRAY(Text)))


def _pairs_in(left: Any, right: Any, pairs: Iterable[Pair]) -> Any:
    unique = list(dict.fromkeys(pairs))
    return tuple_(left, right).in_(
        select(_text_array("pair_a", [a for a, _ in unique]), _text_array("pair_b", [b for _, b in unique]))
    )


async def resolve(session: AsyncSession, pairs: Iterable[Pair]) -> dict[Pair, str]:
    """The survivor of every merged (tenant_id, customer_id) among ``pairs``."""
    rows = await session.execute(
        select(CustomerAliasRow.tenant_id, CustomerAliasRow.merged_id, CustomerAliasRow.customer_id).where(
            _pairs_in(CustomerAliasRow.tenant_id, CustomerAliasRow.merged_id, pairs)
        )
    )
    return {(t, merged): survivor for t, merged, survivor in rows}


_INSERT = text(
    """
    INSERT INTO notify.touches AS t (tenant_id, touch_key, customer_id, journey_id, template_id, priority, status,
                                     attempts, request, requested_at, updated_at)
    SELECT u.tenant_id, u.touch_key, u.customer_id, u.journey_id, u.template_id, u.priority, 'received', 0,
           CAST(u.request AS jsonb), u.requested_at, :now
    FROM unnest(
        CAST(:tenant_id AS text[]), CAST(:touch_key AS text[]), CAST(:customer_id AS text[]),
        CAST(:journey_id AS text[]), CAST(:template_id AS text[]), CAST(:priority AS text[]),
        CAST(:request AS text[]), CAST(:requested_at AS timestamptz[])
    ) AS u(tenant_id, touch_key, customer_id, journey_id, template_id, priority, request, requested_at)
    ON CONFLICT DO NOTHING
    RETURNING t.tenant_id, t.touch_key
    """
)


async def insert_received(
    session: AsyncSession, requests: Sequence[tuple[TouchRequest, str]], now: datetime
) -> set[Pair]:
    """Record new touches (status ``received``) in one statement; return the keys that were not there before."""
    if not requests:
        return set()
    params = {
        "tenant_id": [r.tenant_id for r, _ in requests],
        "touch_key": [r.touch_key for r, _ in requests],
        "customer_id": [customer_id for _, customer_id in requests],
        "journey_id": [r.journey_id for r, _ in requests],
        "template_id": [r.template_id for r, _ in requests],
        "priority": [r.priority for r, _ in requests],
        "request": [r.model_dump_json() for r, _ in requests],
        "requested_at": [r.requested_at for r, _ in requests],
        "now": now,
    }
    return {(t, k) for t, k in await session.execute(_INSERT, params)}


async def lock_due(session: AsyncSession, keys: Sequence[Pair], now: datetime) -> list[TouchState]:
    """The touches among ``keys`` that are still due, locked; rows another replica holds are skipped."""
    rows = await session.execute(
        select(*_STATE_COLUMNS)
        .where(_pairs_in(touches.c.tenant_id, touches.c.touch_key, keys), due_filter(now))
        .order_by(touches.c.tenant_id, touches.c.touch_key)
        .with_for_update(skip_locked=True)
    )
    return [_state(r) for r in rows]


async def lock_claims(session: AsyncSession, claims: Sequence[tuple[str, str, int]]) -> dict[Pair, TouchState]:
    """The claimed touches that still carry the claim's attempt number, locked for settling."""
    stmt = (
        select(*_STATE_COLUMNS)
        .where(
            tuple_(touches.c.tenant_id, touches.c.touch_key, touches.c.attempts).in_(
                select(
                    _text_array("claim_tenants", [t for t, _, _ in claims]),
                    _text_array("claim_keys", [k for _, k, _ in claims]),
                    func.unnest(
                        bindparam("claim_attempts", [a for _, _, a in claims], type_=ARRAY(touches.c.attempts.type))
                    ),
                )
            )
        )
        .order_by(touches.c.tenant_id, touches.c.touch_key)
        .with_for_update()
    )
    return {(s.tenant_id, s.touch_key): s for s in map(_state, await session.execute(stmt))}


_WRITE = text(
    """
    UPDATE notify.touches AS t SET
        status = u.status, channel = u.channel, reason_code = u.reason_code, reason = u.reason,
        attempts = u.attempts, body = u.body, provider_message_id = u.provider_message_id,
        due_at = u.due_at, sent_at = u.sent_at, updated_at = u.updated_at
    FROM unnest(
        CAST(:tenant_id AS text[]), CAST(:touch_key AS text[]), CAST(:status AS text[]), CAST(:channel AS text[]),
        CAST(:reason_code AS text[]), CAST(:reason AS text[]), CAST(:attempts AS integer[]), CAST(:body AS text[]),
        CAST(:provider_message_id AS text[]), CAST(:due_at AS timestamptz[]), CAST(:sent_at AS timestamptz[]),
        CAST(:updated_at AS timestamptz[])
    ) AS u(tenant_id, touch_key, status, channel, reason_code, reason, attempts, body, provider_message_id,
           due_at, sent_at, updated_at)
    WHERE t.tenant_id = u.tenant_id AND t.touch_key = u.touch_key
    """
)
_WRITTEN = (
    "tenant_id",
    "touch_key",
    "status",
    "channel",
    "reason_code",
    "reason",
    "attempts",
    "body",
    "provider_message_id",
    "due_at",
    "sent_at",
    "updated_at",
)


async def write(session: AsyncSession, states: Sequence[TouchState]) -> None:
    """Store the changed fields of every touch in ``states`` in one statement."""
    if states:
        await session.execute(_WRITE, {name: [getattr(s, name) for s in states] for name in _WRITTEN})


async def insert_tasks(session: AsyncSession, tasks: Sequence[dict[str, Any]]) -> None:
    if tasks:
        await session.execute(insert(StaffTaskRow).values(list(tasks)))


@dataclass(slots=True)
class GateContext:
    """Everything the gates read for a batch, loaded with one query per table; the customers are locked."""

    customers: dict[Pair, CustomerRow] = field(default_factory=dict)
    views: dict[Pair, CustomerView] = field(default_factory=dict)
    erased: set[Pair] = field(default_factory=set)
    configs: dict[Pair, Credentials] = field(default_factory=dict)
    consents: dict[Pair, dict[str, ConsentRecord]] = field(default_factory=lambda: defaultdict(dict))
    history: dict[Pair, list[tuple[str, datetime, str]]] = field(default_factory=lambda: defaultdict(list))
    policies: dict[str, TenantPolicy] = field(default_factory=dict)
    templates: dict[tuple[str, str], list[TemplateRow]] = field(default_factory=lambda: defaultdict(list))
    grants: Grants = field(default_factory=Grants)
    wecom_quota_holds: dict[Pair, datetime] = field(default_factory=dict)

    def policy(self, tenant_id: str) -> TenantPolicy:
        found = self.policies.get(tenant_id)
        if found is None:
            found = self.policies[tenant_id] = TenantPolicy()
        return found

    def template(self, tenant_id: str, template_id: str, channel: str, locale: str | None) -> TemplateSource | None:
        """As ``touches.template``: exact channel before any, requested locale before default; then built-ins."""
        locales = [loc for loc in (locale, DEFAULT_LOCALE) if loc]
        rows = [
            r
            for r in self.templates.get((tenant_id, template_id), ())
            if r.channel in (channel, ANY_CHANNEL) and r.locale in locales
        ]
        if rows:
            return source_of(min(rows, key=lambda r: (r.channel != channel, locales.index(r.locale))))
        return built_in(template_id, channel, locale)


async def load_context(
    session: AsyncSession,
    customers: Iterable[Pair],
    template_ids: Iterable[tuple[str, str]],
    skip: set[Pair],
    now: datetime,
) -> GateContext:
    """Load (and lock, in key order) the batch's customers and what the gates need about them, one query each.

    ``skip``: touches of this batch, left out of the send history (they are being decided now).
    """
    pairs = sorted(set(customers))
    ctx = GateContext()
    await _customers(session, ctx, pairs)
    await _tenant_settings(session, ctx, sorted({t for t, _ in pairs}))
    known = list(ctx.customers)
    if known:
        await _consents_and_history(session, ctx, known, skip, now)
        # Official account customers only: the one-time subscribe consents their touches may spend.
        on_oa = [pair for pair in known if (pair[0], "wechat_oa") in ctx.configs]
        ctx.grants = await subscribe_grants.load(session, on_oa, skip)
    wanted = list(dict.fromkeys(template_ids))
    if wanted:
        stored = await session.execute(
            select(TemplateRow).where(_pairs_in(TemplateRow.tenant_id, TemplateRow.template_id, wanted))
        )
        for tpl in stored.scalars():
            ctx.templates[(tpl.tenant_id, tpl.template_id)].append(tpl)
    return ctx


async def _customers(session: AsyncSession, ctx: GateContext, pairs: list[Pair]) -> None:
    rows = await session.execute(
        select(CustomerRow)
        .where(_pairs_in(CustomerRow.tenant_id, CustomerRow.customer_id, pairs))
        .order_by(CustomerRow.tenant_id, CustomerRow.customer_id)
        .with_for_update()
    )
    for row in rows.scalars():
        ctx.customers[(row.tenant_id, row.customer_id)] = row
        ctx.views[(row.tenant_id, row.customer_id)] = view_of(row)
    unknown = [p for p in pairs if p not in ctx.customers]
    if unknown:
        erased = await session.execute(
            select(ErasedCustomerRow.tenant_id, ErasedCustomerRow.customer_id).where(
                _pairs_in(ErasedCustomerRow.tenant_id, ErasedCustomerRow.customer_id, unknown)
            )
        )
        ctx.erased = {(tenant_id, customer_id) for tenant_id, customer_id in erased}


async def _tenant_settings(session: AsyncSession, ctx: GateContext, tenants: list[str]) -> None:
    """Channel configurations and policies of the batch's tenants."""
    of_tenants = bindparam("tenants", tenants, type_=ARRAY(Text))
    configs = await session.execute(select(ChannelConfigRow).where(ChannelConfigRow.tenant_id == func.any(of_tenants)))
    for cfg in configs.scalars():
        credentials = Credentials(settings=cfg.settings or {}, secret=cfg.secret, url=cfg.url)
        ctx.configs[(cfg.tenant_id, cfg.channel)] = credentials
    policies = await session.execute(select(PolicyRow).where(PolicyRow.tenant_id == func.any(of_tenants)))
    for policy in policies.scalars():
        ctx.policies[policy.tenant_id] = TenantPolicy.model_validate(policy.policy)


async def _consents_and_history(
    session: AsyncSession, ctx: GateContext, known: list[Pair], skip: set[Pair], now: datetime
) -> None:
    """Explicit consents, touches sent in the last 32 days (weekly caps and calendar-month limits), and WeCom's
    over-quota answers still in force."""
    consents = await session.execute(
        select(ConsentRow).where(_pairs_in(ConsentRow.tenant_id, ConsentRow.customer_id, known))
    )
    for consent in consents.scalars():
        record = ConsentRecord(consent.status, consent.source, consent.occurred_at)  # type: ignore[arg-type]
        ctx.consents[(consent.tenant_id, consent.customer_id)][consent.channel] = record
    sent = await session.execute(
        select(
            TouchRow.tenant_id,
            TouchRow.customer_id,
            TouchRow.touch_key,
            TouchRow.channel,
            TouchRow.sent_at,
            TouchRow.priority,
        ).where(
            _pairs_in(TouchRow.tenant_id, TouchRow.customer_id, known),
            TouchRow.sent_at > now - timedelta(days=32),
            TouchRow.status.in_(COUNTED),
        )
    )
    for tenant_id, customer_id, touch_key, channel, sent_at, priority in sent:
        if (tenant_id, touch_key) not in skip and sent_at is not None:
            ctx.history[(tenant_id, customer_id)].append((channel or "", sent_at, priority))
    holds = await session.execute(
        select(WeComQuotaHoldRow.tenant_id, WeComQuotaHoldRow.customer_id, WeComQuotaHoldRow.hold_until).where(
            _pairs_in(WeComQuotaHoldRow.tenant_id, WeComQuotaHoldRow.customer_id, known),
            WeComQuotaHoldRow.hold_until > now,
        )
    )
    ctx.wecom_quota_holds = {(tenant_id, customer_id): until for tenant_id, customer_id, until in holds}
