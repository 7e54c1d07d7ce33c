"""Segments API: CRUD, members and counts, and ad-hoc audience counts."""

import secrets
from typing import Annotated, Any

from fastapi import APIRouter, Query, Request
from pydantic import ValidationError
from sqlalchemy import delete, func, select

from scrm_contracts.rules import Rule, parse_rule
from scrm_kit.errors import InvalidInput, NotFound
from scrm_kit.runtime import ReadSessionDep
from scrm_kit.tenancy import TenantDep
from scrm_profile.adapters.orm import CustomerRow, SegmentMemberRow, SegmentRow
from scrm_profile.entrypoints import schemas as s
from scrm_profile.service.segments import Segment, audience_count, rule_json, sync_segment, time_dependent

router = APIRouter(prefix="/v1", tags=["segments"])


def _rule(raw: dict[str, Any]) -> Rule:
    try:
        return parse_rule(raw)
    except ValidationError as exc:
        first = exc.errors()[0]
        where = _rule_path(first["loc"])
        raise InvalidInput(f"{first['msg']}", field=f"rule.{where}" if where else "rule") from exc


def _rule_path(loc: tuple[Any, ...]) -> str:
    """The error location without the union's tags: ('all', 'all', 0, 'field', 'op') -> 'all.0.op'."""
    tags = {"all", "any", "not", "event", "field"}
    parts: list[str] = []
    expect_tag = True
    for part in loc:
        if expect_tag and part in tags:
            expect_tag = False
            continue
        parts.append(str(part))
        expect_tag = isinstance(part, int) or part == "not"
    return ".".join(parts)


async def _out(session: Any, row: SegmentRow) -> s.SegmentOut:
    members = (
        await session.execute(
            select(func.count())
            .select_from(SegmentMemberRow)
            .where(SegmentMemberRow.tenant_id == row.tenant_id, SegmentMemberRow.segment_id == row.segment_id)
        )
    ).scalar_one()
    return s.SegmentOut(
        segment_id=row.segment_id,
        name=row.name,
        rule=row.rule,
        time_dependent=row.time_dependent,
        members=members,
        created_at=row.created_at,
        updated_at=row.updated_at,
    )


@router.post("/segments", response_model=s.SegmentOut, status_code=201)
async def create_segment(body: s.SegmentIn, tenant: TenantDep, request: Request) -> s.SegmentOut:
    """Create a segment; its members are computed at once (set-based) and `segment.entered` published."""
    rule = _rule(body.rule)
    now = request.app.state.clock.now()
    async with request.app.state.runtime.sessions() as session, session.begin():
        row = SegmentRow(
            tenant_id=tenant.tenant_id,
            segment_id=f"seg_{secrets.token_hex(8)}",
            name=body.name,
            rule=rule_json(rule),
            time_dependent=time_dependent(rule),
            created_at=now,
            updated_at=now,
        )
        session.add(row)
        await session.flush()
        await sync_segment(session, tenant.tenant_id, Segment(row.segment_id, row.name, rule), now)
        return await _out(session, row)


@router.get("/segments", response_model=list[s.SegmentOut])
async def list_segments(tenant: TenantDep, session: ReadSessionDep) -> list[s.SegmentOut]:
    rows = (
        (
            await session.execute(
                select(SegmentRow).where(SegmentRow.tenant_id == tenant.tenant_id).order_by(SegmentRow.created_at)
            )
        )
        .scalars()
        .all()
    )
    return [await _out(session, r) for r in rows]


async def _segment(session: Any, tenant_id: str, segment_id: str) -> SegmentRow:
    row = await session.get(SegmentRow, (tenant_id, segment_id))
    if row is None:
        raise NotFound(f"no segment {segment_id!r} in this tenant")
    return row


@router.get("/segments/{segment_id}", response_model=s.SegmentOut)
async def get_segment(segment_id: str, tenant: TenantDep, session: ReadSessionDep) -> s.SegmentOut:
    return await _out(session, await _segment(session, tenant.tenant_id, segment_id))


@router.put("/segments/{segment_id}", response_model=s.SegmentOut)
async def update_segment(segment_id: str, body: s.SegmentIn, tenant: TenantDep, request: Request) -> s.SegmentOut:
    """Change a segment's name or rule; members are re-synced and entries/exits published."""
    rule = _rule(body.rule)
    now = request.app.state.clock.now()
    async with request.app.state.runtime.sessions() as session, session.begin():
        row = await _segment(session, tenant.tenant_id, segment_id)
        row.name, row.rule, row.time_dependent, row.updated_at = body.name, rule_json(rule), time_dependent(rule), now
        await session.flush()
        await sync_segment(session, tenant.tenant_id, Segment(row.segment_id, row.name, rule), now)
        return await _out(session, row)


@router.delete("/segments/{segment_id}", status_code=204)
async def delete_segment(segment_id: str, tenant: TenantDep, request: Request) -> None:
    async with request.app.state.runtime.sessions() as session, session.begin():
        row = await _segment(session, tenant.tenant_id, segment_id)
        await session.execute(
            delete(SegmentMemberRow).where(
                SegmentMemberRow.tenant_id == tenant.tenant_id, SegmentMemberRow.segment_id == segment_id
            )
        )
        await session.delete(row)


@router.get("/segments/{segment_id}/members", response_model=s.CustomerPage)
async def segment_members(
    segment_id: str,
    tenant: TenantDep,
    session: ReadSessionDep,
    limit: Annotated[int, Query(ge=1, le=1000)] = 100,
    cursor: str | None = None,
) -> s.CustomerPage:
    """The segment's customers in pages of `limit` (cursor pagination by customer id)."""
    await _segment(session, tenant.tenant_id, segment_id)
    query = (
        select(CustomerRow)
        .join(
            SegmentMemberRow,
            (SegmentMemberRow.tenant_id == CustomerRow.tenant_id)
            & (SegmentMemberRow.customer_id == CustomerRow.customer_id),
        )
        .where(CustomerRow.tenant_id == tenant.tenant_id, SegmentMemberRow.segment_id == segment_id)
    )
    if cursor:
        query = query.where(CustomerRow.customer_id > cursor)
    rows = (await session.execute(query.order_by(CustomerRow.customer_id).limit(limit + 1))).scalars().all()
    page = rows[:limit]
    return s.CustomerPage(
        items=[s.CustomerSummaryOut.of(c) for c in page],
        next_cursor=page[-1].customer_id if len(rows) > limit else None,
    )


@router.get("/segments/{segment_id}/count", response_model=s.CountOut)
async def segment_count(segment_id: str, tenant: TenantDep, session: ReadSessionDep, request: Request) -> s.CountOut:
    """How many customers match the segment's rule right now (computed, not cached)."""
    row = await _segment(session, tenant.tenant_id, segment_id)
    return s.CountOut(
        count=await audience_count(session, tenant.tenant_id, _rule(row.rule), request.app.state.clock.now())
    )


@router.post("/audiences/count", response_model=s.CountOut)
async def count_audience(
    body: dict[str, Any], tenant: TenantDep, session: ReadSessionDep, request: Request
) -> s.CountOut:
    """Count the customers an ad-hoc rule matches (body: `{"rule": {...}}`), e.g. while designing a segment."""
    if not isinstance(body.get("rule"), dict):
        raise InvalidInput('body must be {"rule": {...}}', field="rule")
    return s.CountOut(
        count=await audience_count(session, tenant.tenant_id, _rule(body["rule"]), request.app.state.clock.now())
    )
