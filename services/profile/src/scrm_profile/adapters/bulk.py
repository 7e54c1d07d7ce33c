"""Set-based reads and writes for the batch consumer: one statement per table per batch, over arrays (``unnest``)
or one JSON document (``json_to_recordset``: parsed once, never built as jsonb), never a statement per event."""

from collections import defaultdict
from collections.abc import Iterable, Sequence
from datetime import datetime
from decimal import Decimal
from types import SimpleNamespace
from typing import Any

import orjson
from sqlalchemy import ARRAY, Row, Text, any_, bindparam, func, select, text
from sqlalchemy.dialects import postgresql
from sqlalchemy.dialects.postgresql import JSONB
from sqlalchemy.ext.asyncio import AsyncSession

from scrm_contracts import SemanticEvent
from scrm_contracts.rules import EventRule
from scrm_profile.adapters.orm import CustomerRow, EventRow

CUSTOMERS = CustomerRow.__table__
_DIALECT = postgresql.dialect()  # type: ignore[no-untyped-call]
CUSTOMER_COLUMNS = [(c.name, c.type.compile(dialect=_DIALECT)) for c in CUSTOMERS.columns]
_KEY = ("tenant_id", "customer_id")
TOPPED, SPENT = SemanticEvent.STORED_VALUE_TOPPED_UP.value, SemanticEvent.STORED_VALUE_SPENT.value


def _json_default(value: Any) -> Any:
    if isinstance(value, Decimal):
        return str(value)
    raise TypeError(f"cannot encode {type(value).__name__}")


async def _all(session: AsyncSession, statement: Any, params: dict[str, Any] | None = None) -> Sequence[Row[Any]]:
    """Every row at once (a row at a time through the async adapter costs more than the query, for big batches)."""
    return (await session.execute(statement, params)).all()


def dumps(value: Any) -> str:
    return orjson.dumps(value, default=_json_default).decode()


async def identity_owners(
    session: AsyncSession, tenant_id: str, pairs: Iterable[tuple[str, str]]
) -> dict[tuple[str, str], str]:
    """Who owns each (kind, value) identifier today."""
    unique = list(dict.fromkeys(pairs))
    if not unique:
        return {}
    rows = await _all(
        session,
        text(
            "SELECT i.kind, i.value, i.customer_id FROM profile.identities i "
            "JOIN unnest(CAST(:kinds AS text[]), CAST(:values AS text[])) AS q(kind, value) "
            "ON i.kind = q.kind AND i.value = q.value WHERE i.tenant_id = :t"
        ),
        {"t": tenant_id, "kinds": [k for k, _ in unique], "values": [v for _, v in unique]},
    )
    return {(r.kind, r.value): r.customer_id for r in rows}


async def existing_customer_ids(session: AsyncSession, tenant_id: str, ids: Iterable[str]) -> set[str]:
    wanted = list(set(ids))
    if not wanted:
        return set()
    rows = await _all(
        session,
        text("SELECT customer_id FROM profile.customers WHERE tenant_id = :t AND customer_id = ANY(:ids)"),
        {"t": tenant_id, "ids": wanted},
    )
    return {r.customer_id for r in rows}


async def order_owners(session: AsyncSession, tenant_id: str, order_ids: Iterable[str]) -> dict[str, str]:
    wanted = list(set(order_ids))
    if not wanted:
        return {}
    rows = await _all(
        session,
        text("SELECT order_id, customer_id FROM profile.orders WHERE tenant_id = :t AND order_id = ANY(:ids)"),
        {"t": tenant_id, "ids": wanted},
    )
    return {r.order_id: r.customer_id for r in rows}


async def lock_customers(session: AsyncSession, tenant_id: str, ids: Iterable[str]) -> dict[str, SimpleNamespace]:
    """Lock and load customers in id order (every replica locks in the same order: no deadlock between batches).

    Rows come back as plain objects, not ORM instances: the batch writes them back itself, in one statement."""
    wanted = sorted(set(ids))
    if not wanted:
        return {}
    result = await session.execute(
        select(CUSTOMERS)
        .where(
            CUSTOMERS.c.tenant_id == tenant_id, CUSTOMERS.c.customer_id == any_(bindparam("ids", wanted, ARRAY(Text)))
        )
        .order_by(CUSTOMERS.c.customer_id)
        .with_for_update()
    )
    names = list(result.keys())
    return {row.customer_id: SimpleNamespace(**dict(zip(names, row, strict=True))) for row in result.all()}


async def order_facts(
    session: AsyncSession, tenant_id: str, customer_ids: Iterable[str]
) -> list[tuple[str, str, Decimal, Decimal, datetime]]:
    """(customer_id, order_id, amount, refunded_amount, occurred_at) of every order of these customers."""
    wanted = list(set(customer_ids))
    if not wanted:
        return []
    rows = await _all(
        session,
        text(
            "SELECT customer_id, order_id, amount, refunded_amount, occurred_at FROM profile.orders "
            "WHERE tenant_id = :t AND customer_id = ANY(:ids)"
        ),
        {"t": tenant_id, "ids": wanted},
    )
    return [(r.customer_id, r.order_id, r.amount, r.refunded_amount, r.occurred_at) for r in rows]


async def refunds_of(
    session: AsyncSession, tenant_id: str, order_ids: Iterable[str]
) -> dict[str, list[Decimal | None]]:
    """Refund amounts recorded per order (None: a full refund)."""
    wanted = list(set(order_ids))
    found: dict[str, list[Decimal | None]] = defaultdict(list)
    if wanted:
        rows = await _all(
            session,
            text("SELECT order_id, amount FROM profile.refunds WHERE tenant_id = :t AND order_id = ANY(:ids)"),
            {"t": tenant_id, "ids": wanted},
        )
        for r in rows:
            found[r.order_id].append(r.amount)
    return found


async def stored_value_balances(
    session: AsyncSession, tenant_id: str, customer_ids: Iterable[str]
) -> dict[str, Decimal]:
    """Top-ups minus spends per customer over the stored events (the same sum ``repository`` takes for one)."""
    wanted = list(set(customer_ids))
    if not wanted:
        return {}
    rows = await _all(
        session,
        text(
            """
            SELECT customer_id, sum(CASE WHEN event = :topped THEN (properties->>'amount')::numeric
                                         ELSE -(properties->>'amount')::numeric END) AS balance
            FROM profile.events
            WHERE tenant_id = :t AND customer_id = ANY(:ids) AND event IN (:topped, :spent)
            GROUP BY customer_id
            """
        ),
        {"t": tenant_id, "ids": wanted, "topped": TOPPED, "spent": SPENT},
    )
    return {r.customer_id: Decimal(r.balance) for r in rows}


async def segment_members(session: AsyncSession, tenant_id: str, customer_ids: Iterable[str]) -> dict[str, set[str]]:
    wanted = list(set(customer_ids))
    found: dict[str, set[str]] = defaultdict(set)
    if wanted:
        rows = await _all(
            session,
            text(
                "SELECT customer_id, segment_id FROM profile.segment_members "
                "WHERE tenant_id = :t AND customer_id = ANY(:ids)"
            ),
            {"t": tenant_id, "ids": wanted},
        )
        for r in rows:
            found[r.customer_id].add(r.segment_id)
    return found


def _rule_filter(query: Any, rule: EventRule, now: datetime) -> Any:
    from datetime import timedelta

    from sqlalchemy import cast, literal

    query = query.where(EventRow.event == rule.event)
    if rule.within_days:
        query = query.where(EventRow.occurred_at >= now - timedelta(days=rule.within_days))
    if rule.where:
        query = query.where(EventRow.properties.contains(cast(literal(rule.where, JSONB), JSONB)))
    return query


async def event_counts(
    session: AsyncSession, tenant_id: str, customer_ids: Iterable[str], rule: EventRule, now: datetime
) -> dict[str, int]:
    """Per customer, the count of stored events an event rule matches (as ``rules_sql.event_count`` counts)."""
    wanted = list(set(customer_ids))
    if not wanted:
        return {}
    query = select(EventRow.customer_id, func.count()).where(
        EventRow.tenant_id == tenant_id, EventRow.customer_id == any_(bindparam("ids", wanted, ARRAY(Text)))
    )
    rows = await session.execute(_rule_filter(query, rule, now).group_by(EventRow.customer_id))
    return {customer_id: int(count) for customer_id, count in rows}


async def matching_events(
    session: AsyncSession, tenant_id: str, event_ids: Iterable[str], rule: EventRule, now: datetime
) -> set[str]:
    """Which of these stored events an event rule counts."""
    wanted = list(set(event_ids))
    if not wanted:
        return set()
    query = select(EventRow.event_id).where(
        EventRow.tenant_id == tenant_id, EventRow.event_id == any_(bindparam("ids", wanted, ARRAY(Text)))
    )
    return set((await session.execute(_rule_filter(query, rule, now))).scalars())


async def insert_identities(session: AsyncSession, tenant_id: str, rows: Sequence[tuple[str, str, str]]) -> None:
    """Attach (kind, value, customer_id) identifiers; one already owned stays with its owner."""
    if rows:
        await session.execute(
            text(
                "INSERT INTO profile.identities (tenant_id, kind, value, customer_id) "
                "SELECT :t, k, v, c FROM unnest(CAST(:k AS text[]), CAST(:v AS text[]), CAST(:c AS text[])) "
                "AS s(k, v, c) ON CONFLICT DO NOTHING"
            ),
            {"t": tenant_id, "k": [r[0] for r in rows], "v": [r[1] for r in rows], "c": [r[2] for r in rows]},
        )


async def insert_events(
    session: AsyncSession, tenant_id: str, rows: Sequence[tuple[str, str, str, datetime, dict[str, Any]]]
) -> dict[str, Decimal | None]:
    """Store (event_id, customer_id, event, occurred_at, properties) rows; returns the ids stored now, each with
    the amount it moves a stored-value balance (None for other events).

    The rows go as one JSON document: binding five arrays cost the consumer twice the CPU (asyncpg encodes each
    element of a timestamptz or text array on its own)."""
    if not rows:
        return {}
    result = await _all(
        session,
        text(
            """
            INSERT INTO profile.events (tenant_id, event_id, customer_id, event, occurred_at, properties)
            SELECT :t, e, c, n, at, p
            FROM ROWS FROM (json_to_recordset(CAST(:rows AS json)) AS (e text, c text, n text, at timestamptz, p jsonb))
                 WITH ORDINALITY AS s(e, c, n, at, p, i)
            ORDER BY i
            ON CONFLICT DO NOTHING
            RETURNING event_id, CASE WHEN event = :topped THEN (properties->>'amount')::numeric
                                     WHEN event = :spent THEN -(properties->>'amount')::numeric END AS delta
            """
        ),
        {
            "t": tenant_id,
            "rows": dumps([{"e": e, "c": c, "n": n, "at": at, "p": p} for e, c, n, at, p in rows]),
            "topped": TOPPED,
            "spent": SPENT,
        },
    )
    return {r.event_id: r.delta for r in result}


async def insert_orders(
    session: AsyncSession, tenant_id: str, rows: Sequence[tuple[str, str, Decimal, str, datetime, str]]
) -> dict[str, Decimal]:
    """Store (order_id, customer_id, amount, currency, occurred_at, source_event_id) rows, refunds applied later;
    returns the orders stored now with their amount as stored."""
    if not rows:
        return {}
    result = await _all(
        session,
        text(
            """
            INSERT INTO profile.orders (tenant_id, order_id, customer_id, amount, refunded_amount, currency,
                                        occurred_at, source_event_id)
            SELECT :t, o, c, a, 0, cur, at, src
            FROM unnest(CAST(:o AS text[]), CAST(:c AS text[]), CAST(:a AS numeric[]), CAST(:cur AS text[]),
                        CAST(:at AS timestamptz[]), CAST(:src AS text[])) WITH ORDINALITY AS s(o, c, a, cur, at, src, i)
            ORDER BY i
            ON CONFLICT DO NOTHING
            RETURNING order_id, amount
            """
        ),
        {
            "t": tenant_id,
            "o": [r[0] for r in rows],
            "c": [r[1] for r in rows],
            "a": [r[2] for r in rows],
            "cur": [r[3] for r in rows],
            "at": [r[4] for r in rows],
            "src": [r[5] for r in rows],
        },
    )
    return {r.order_id: r.amount for r in result}


async def insert_refunds(
    session: AsyncSession, tenant_id: str, rows: Sequence[tuple[str, str, Decimal | None, datetime]]
) -> dict[str, Decimal | None]:
    """Store (event_id, order_id, amount, occurred_at) refunds; returns the ones stored now with their amount."""
    if not rows:
        return {}
    result = await _all(
        session,
        text(
            """
            INSERT INTO profile.refunds (tenant_id, event_id, order_id, amount, occurred_at)
            SELECT :t, e, o, a, at
            FROM unnest(CAST(:e AS text[]), CAST(:o AS text[]), CAST(:a AS numeric[]), CAST(:at AS timestamptz[]))
                 AS s(e, o, a, at)
            ON CONFLICT DO NOTHING
            RETURNING event_id, amount
            """
        ),
        {
            "t": tenant_id,
            "e": [r[0] for r in rows],
            "o": [r[1] for r in rows],
            "a": [r[2] for r in rows],
            "at": [r[3] for r in rows],
        },  # fmt: skip
    )
    return {r.event_id: r.amount for r in result}


async def apply_refunds(session: AsyncSession, tenant_id: str, order_ids: Iterable[str]) -> None:
    """Set each order's refunded amount from every refund recorded for it (as ``repository.apply_refunds``)."""
    wanted = list(set(order_ids))
    if wanted:
        await session.execute(
            text(
                """
                UPDATE profile.orders o SET refunded_amount = LEAST(o.amount, COALESCE((
                    SELECT CASE WHEN bool_or(r.amount IS NULL) THEN o.amount ELSE sum(r.amount) END
                    FROM profile.refunds r WHERE r.tenant_id = o.tenant_id AND r.order_id = o.order_id), 0))
                WHERE o.tenant_id = :t AND o.order_id = ANY(:ids)
                """
            ),
            {"t": tenant_id, "ids": wanted},
        )


async def insert_touches(session: AsyncSession, rows: Sequence[dict[str, Any]]) -> None:
    if rows:
        await session.execute(
            text(
                """
                INSERT INTO profile.touches (tenant_id, event_id, touch_key, customer_id, journey_id, channel,
                                             template_id, status, reason, occurred_at)
                SELECT tenant_id, event_id, touch_key, customer_id, journey_id, channel, template_id, status, reason,
                       occurred_at
                FROM json_to_recordset(CAST(:rows AS json)) AS s(tenant_id text, event_id text, touch_key text,
                     customer_id text, journey_id text, channel text, template_id text, status text, reason text,
                     occurred_at timestamptz)
                ON CONFLICT DO NOTHING
                """
            ),
            {"rows": dumps(list(rows))},
        )


def _customer_json(customers: Iterable[SimpleNamespace]) -> str:
    # a customer's namespace holds exactly the table's columns (``lock_customers``, ``batch._new_customer``)
    return dumps([vars(c) for c in customers])


_RECORDSET = ", ".join(f"{name} {sql_type}" for name, sql_type in CUSTOMER_COLUMNS)
_NAMES = ", ".join(name for name, _ in CUSTOMER_COLUMNS)
_SETS = ", ".join(f"{name} = s.{name}" for name, _ in CUSTOMER_COLUMNS if name not in _KEY)


async def insert_customers(session: AsyncSession, customers: Sequence[SimpleNamespace]) -> None:
    if customers:
        await session.execute(
            text(
                f"INSERT INTO profile.customers ({_NAMES}) SELECT {_NAMES} "
                f"FROM json_to_recordset(CAST(:rows AS json)) AS s({_RECORDSET})"
            ),
            {"rows": _customer_json(customers)},
        )


async def update_customers(session: AsyncSession, customers: Sequence[SimpleNamespace]) -> None:
    """Write every column of these (locked) customers back in one statement."""
    if customers:
        await session.execute(
            text(
                f"UPDATE profile.customers c SET {_SETS} "
                f"FROM json_to_recordset(CAST(:rows AS json)) AS s({_RECORDSET}) "
                "WHERE c.tenant_id = s.tenant_id AND c.customer_id = s.customer_id"
            ),
            {"rows": _customer_json(customers)},
        )


async def write_segment_members(
    session: AsyncSession,
    tenant_id: str,
    entered: Sequence[tuple[str, str]],
    exited: Sequence[tuple[str, str]],
    now: datetime,
) -> None:
    """(segment_id, customer_id) pairs that are members now (entered at ``now``) and that are not any more."""
    if exited:
        await session.execute(
            text(
                "DELETE FROM profile.segment_members m USING unnest(CAST(:s AS text[]), CAST(:c AS text[])) AS q(s, c) "
                "WHERE m.tenant_id = :t AND m.segment_id = q.s AND m.customer_id = q.c"
            ),
            {"t": tenant_id, "s": [s for s, _ in exited], "c": [c for _, c in exited]},
        )
    if entered:
        await session.execute(
            text(
                "INSERT INTO profile.segment_members (tenant_id, segment_id, customer_id, entered_at) "
                "SELECT :t, s, c, :now FROM unnest(CAST(:s AS text[]), CAST(:c AS text[])) AS q(s, c) "
                "ON CONFLICT (tenant_id, segment_id, customer_id) DO UPDATE SET entered_at = EXCLUDED.entered_at"
            ),
            {"t": tenant_id, "s": [s for s, _ in entered], "c": [c for _, c in entered], "now": now},
        )
