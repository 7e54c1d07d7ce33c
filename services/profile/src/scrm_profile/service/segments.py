"""Segments: rule-defined audiences kept current incrementally on every customer change, and by a sweep for rules
that depend on time (event counts in windows, "within the last N days")."""

from collections.abc import Mapping
from collections.abc import Set as AbstractSet
from dataclasses import dataclass
from datetime import datetime
from typing import Any

import orjson
from sqlalchemy import and_, delete, exists, func, literal, select
from sqlalchemy.dialects.postgresql import insert
from sqlalchemy.ext.asyncio import AsyncSession

from scrm_contracts import SegmentEntered, SegmentExited
from scrm_contracts.rules import AllRule, AnyRule, EventRule, FieldRule, NotRule, Rule, matcher, parse_rule
from scrm_kit.outbox import OutgoingRecord, enqueue
from scrm_profile.adapters.orm import CustomerRow, SegmentMemberRow, SegmentRow, outbox
from scrm_profile.adapters.rules_sql import compile_rule, event_count
from scrm_profile.service.snapshots import records, rule_facts, wire_record

TIME_OPS = {"within_last_days", "more_than_days_ago"}


@dataclass(frozen=True)
class Segment:
    segment_id: str
    name: str
    rule: Rule


def event_rules(rule: Rule) -> list[EventRule]:
    if isinstance(rule, EventRule):
        return [rule]
    if isinstance(rule, AllRule | AnyRule):
        return [e for r in (rule.all if isinstance(rule, AllRule) else rule.any) for e in event_rules(r)]
    if isinstance(rule, NotRule):
        return event_rules(rule.not_)
    return []


def time_dependent(rule: Rule) -> bool:
    """Whether the rule's answer can change with the clock alone (so the sweep must re-check it)."""
    if isinstance(rule, EventRule):
        return rule.within_days is not None
    if isinstance(rule, FieldRule):
        return rule.op in TIME_OPS
    if isinstance(rule, AllRule | AnyRule):
        return any(time_dependent(r) for r in (rule.all if isinstance(rule, AllRule) else rule.any))
    if isinstance(rule, NotRule):
        return time_dependent(rule.not_)
    return False


def rule_key(rule: EventRule) -> str:
    return rule.model_dump_json()


def _change(
    segment: Segment, customer_id: str, tenant_id: str, user_id: str | None, entered: bool, cause: str, now: datetime
) -> OutgoingRecord:
    return wire_record(
        SegmentEntered if entered else SegmentExited,
        event_id=f"seg:{segment.segment_id}:{customer_id}:{'in' if entered else 'out'}:{cause}"[:300],
        tenant_id=tenant_id,
        customer_id=customer_id,
        user_id=user_id,
        occurred_at=now,
        segment_id=segment.segment_id,
        segment_name=segment.name,
    )


class SegmentEvaluator:
    """A tenant's segments, evaluated in memory against one customer at a time."""

    def __init__(self, segments: list[Segment]) -> None:
        self.segments = segments
        self._matchers = [matcher(segment.rule) for segment in segments]  # prepared once per batch, run per event
        keyed = [(rule_key(r), r) for segment in segments for r in event_rules(segment.rule)]
        self._keys = {id(r): key for key, r in keyed}  # each rule object's key, looked up per event
        # Every distinct event rule of the tenant's segments, by rule key.
        self.event_rules: dict[str, EventRule] = dict(keyed)

    @classmethod
    async def load(cls, session: AsyncSession, tenant_id: str) -> "SegmentEvaluator":
        rows = (await session.execute(select(SegmentRow).where(SegmentRow.tenant_id == tenant_id))).scalars()
        return cls([Segment(r.segment_id, r.name, parse_rule(r.rule)) for r in rows])

    async def reevaluate(
        self, session: AsyncSession, customer: CustomerRow, snapshot: dict[str, Any], now: datetime, cause: str
    ) -> list[OutgoingRecord]:
        """Enter or leave segments after a change of this customer; returns the changes to publish."""
        if not self.segments:
            return []
        counts = await self._counts(session, customer, now)
        current = set(
            (
                await session.execute(
                    select(SegmentMemberRow.segment_id).where(
                        SegmentMemberRow.tenant_id == customer.tenant_id,
                        SegmentMemberRow.customer_id == customer.customer_id,
                    )
                )
            ).scalars()
        )
        moves = self.moves(customer, snapshot, now, cause, counts, current)
        for segment_id, entered, _ in moves:
            if entered:
                await session.execute(
                    insert(SegmentMemberRow)
                    .values(
                        tenant_id=customer.tenant_id,
                        segment_id=segment_id,
                        customer_id=customer.customer_id,
                        entered_at=now,
                    )
                    .on_conflict_do_nothing()
                )
            else:
                await session.execute(
                    delete(SegmentMemberRow).where(
                        SegmentMemberRow.tenant_id == customer.tenant_id,
                        SegmentMemberRow.segment_id == segment_id,
                        SegmentMemberRow.customer_id == customer.customer_id,
                    )
                )
        return [change for _, _, change in moves]

    def moves(
        self,
        customer: CustomerRow,
        snapshot: dict[str, Any],
        now: datetime,
        cause: str,
        counts: Mapping[str, int],
        current: AbstractSet[str],
    ) -> list[tuple[str, bool, OutgoingRecord]]:
        """(segment_id, entered, change) for each segment this customer enters or leaves, given their event counts
        per rule key and their current memberships (no I/O: the batch consumer calls it with counts it keeps)."""
        facts = rule_facts(customer, snapshot)
        moves: list[tuple[str, bool, OutgoingRecord]] = []
        keys = self._keys
        for segment, match in zip(self.segments, self._matchers, strict=True):
            member = match(facts, now, lambda r: counts[keys[id(r)]])
            if member == (segment.segment_id in current):
                continue
            change = _change(segment, customer.customer_id, customer.tenant_id, customer.user_id, member, cause, now)
            moves.append((segment.segment_id, member, change))
        return moves

    async def _counts(self, session: AsyncSession, customer: CustomerRow, now: datetime) -> dict[str, int]:
        counts: dict[str, int] = {}
        for key, rule in self.event_rules.items():
            query = select(event_count(rule, now, customer.tenant_id, customer.customer_id))
            counts[key] = int((await session.execute(query)).scalar_one())
        return counts


async def audience_count(session: AsyncSession, tenant_id: str, rule: Rule, now: datetime) -> int:
    query = (
        select(func.count()).select_from(CustomerRow).where(CustomerRow.tenant_id == tenant_id, compile_rule(rule, now))
    )
    return int((await session.execute(query)).scalar_one())


async def sync_segment(session: AsyncSession, tenant_id: str, segment: Segment, now: datetime) -> tuple[int, int]:
    """Set-based: make the members exactly the customers the rule matches now; publish who entered and left."""
    matches = compile_rule(segment.rule, now)
    member = exists().where(
        SegmentMemberRow.tenant_id == CustomerRow.tenant_id,
        SegmentMemberRow.segment_id == segment.segment_id,
        SegmentMemberRow.customer_id == CustomerRow.customer_id,
    )
    entered = (
        (
            await session.execute(
                insert(SegmentMemberRow)
                .from_select(
                    ["tenant_id", "segment_id", "customer_id", "entered_at"],
                    select(
                        CustomerRow.tenant_id, literal(segment.segment_id), CustomerRow.customer_id, literal(now)
                    ).where(CustomerRow.tenant_id == tenant_id, matches, ~member),
                )
                .on_conflict_do_nothing()
                .returning(SegmentMemberRow.customer_id)
            )
        )
        .scalars()
        .all()
    )
    still = select(CustomerRow.customer_id).where(
        CustomerRow.tenant_id == tenant_id, CustomerRow.customer_id == SegmentMemberRow.customer_id, matches
    )
    exited = (
        (
            await session.execute(
                delete(SegmentMemberRow)
                .where(
                    and_(
                        SegmentMemberRow.tenant_id == tenant_id,
                        SegmentMemberRow.segment_id == segment.segment_id,
                        ~exists(still),
                    )
                )
                .returning(SegmentMemberRow.customer_id)
            )
        )
        .scalars()
        .all()
    )
    cause = f"sweep:{now.isoformat()}"
    changes = [_change(segment, c, tenant_id, None, True, cause, now) for c in entered]
    changes += [_change(segment, c, tenant_id, None, False, cause, now) for c in exited]
    await enqueue(session, outbox, records(changes))
    return len(entered), len(exited)


def rule_json(rule: Rule) -> dict[str, Any]:
    return orjson.loads(orjson.dumps(rule.model_dump(mode="json", by_alias=True, exclude_defaults=True)))
