"""Set-based reads and writes for the batch consumer: one statement per table per batch, over arrays (``unnest``)
or one JSON document (``json_to_recordset``: parsed once, never built as jsonb), never a statement per event.

The hot statements go straight to the asyncpg connection under the session's transaction (``_driver``): the
values they bind and the rows they return are plain arrays, numbers, text and times, so SQLAlchemy's statement
compilation and row processing added nothing but cost (a third of the client's time in the lock of 500 customers).
"""

import json
from collections import defaultdict
from collections.abc import Iterable, Sequence
from datetime import datetime
from decimal import Decimal
from types import SimpleNamespace
from typing import Any

import orjson
from sqlalchemy import ARRAY, Text, any_, bindparam, func, select, text
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


async def _driver(session: AsyncSession) -> Any:
    """The asyncpg connection of the session's transaction, begun if it was not yet."""
    connection = await session.connection()
    driver = (await connection.get_raw_connection()).driver_connection
    if not driver.is_in_transaction():  # SQLAlchemy begins it with the session's first statement
        await connection.execute(text("SELECT 1"))
    return driver


async def _fetch(session: AsyncSession, sql: str, *args: Any) -> list[Any]:
    return await (await _driver(session)).fetch(sql, *args)  # type: ignore[no-any-return]


async def _execute(session: AsyncSession, sql: str, *args: Any) -> None:
    await (await _driver(session)).execute(sql, *args)


def dumps(value: Any) -> str:
    return orjson.dumps(value, default=_json_default).decode()


async def identity_owners(
    session: AsyncSession, tenant_id: str, pairs: Iterable[tuple[str, str]]
) -> dict[tuple[str, str], str]:
    """Who owns each (kind, value) identifier today."""
    unique = list(dict.fromkeys(pairs))
    if not unique:
        return {}
    rows = await _fetch(
        session,
        "SELECT i.kind, i.value, i.customer_id FROM profile.identities i "
        "JOIN unnest($2::text[], $3::text[]) AS q(kind, value) ON i.kind = q.kind AND i.value = q.value "
        "WHERE i.tenant_id = $1",
        tenant_id,
        [k for k, _ in unique],
        [v for _, v in unique],
    )
    return {(kind, value): owner for kind, value, owner in rows}


async def existing_customer_ids(session: AsyncSession, tenant_id: str, ids: Iterable[str]) -> set[str]:
    wanted = list(set(ids))
    if not wanted:
        return set()
    rows = await _fetch(
        session,
        "SELECT customer_id FROM profile.customers WHERE tenant_id = $1 AND customer_id = ANY($2::text[])",
        tenant_id,
        wanted,
    )
    return {r[0] for r in rows}


async def order_owners(session: AsyncSession, tenant_id: str, order_ids: Iterable[str]) -> dict[str, str]:
    wanted = list(set(order_ids))
    if not wanted:
        return {}
    rows = await _fetch(
        session,
        "SELECT order_id, customer_id FROM profile.orders WHERE tenant_id = $1 AND order_id = ANY($2::text[])",
        tenant_id,
        wanted,
    )
    return dict(rows)  # type: ignore[arg-type]


_SELECT_CUSTOMERS = (
    f"SELECT {', '.join(name for name, _ in CUSTOMER_COLUMNS)} FROM profile.customers "
    "WHERE tenant_id = $1 AND customer_id = ANY($2::text[]) ORDER BY customer_id FOR UPDATE"
)


async def lock_customers(session: AsyncSession, tenant_id: str, ids: Iterable[str]) -> dict[str, SimpleNamespace]:
    """Lock and load customers in id order (every replica locks in the same order: no deadlock between batches).

    Rows come back as plain objects holding exactly the table's columns, not ORM instances: the batch writes them
    back itself, in one statement."""
    wanted = sorted(set(ids))
    if not wanted:
        return {}
    loaded = {}
    for row in await _fetch(session, _SELECT_CUSTOMERS, tenant_id, wanted):
        customer = SimpleNamespace(**dict(row.items()))
        if isinstance(customer.traits, str):  # a connection without SQLAlchemy's jsonb codec gives the text
            customer.traits = json.loads(customer.traits)
        loaded[customer.customer_id] = customer
    return loaded


async def order_facts(
    session: AsyncSession, tenant_id: str, customer_ids: Iterable[str]
) -> list[tuple[str, str, Decimal, Decimal, datetime]]:
    """(customer_id, order_id, amount, refunded_amount, occurred_at) of every order of these customers."""
    wanted = list(set(customer_ids))
    if not wanted:
        return []
    rows = await _fetch(
        session,
        "SELECT customer_id, order_id, amount, refunded_amount, occurred_at FROM profile.orders "
        "WHERE tenant_id = $1 AND customer_id = ANY($2::text[])",
        tenant_id,
        wanted,
    )
    return [tuple(r) for r in rows]  # type: ignore[misc]


async def refunds_of(
    session: AsyncSession, tenant_id: str, order_ids: Iterable[str]
) -> dict[str, list[Decimal | None]]:
    """Refund amounts recorded per order (None: a full refund)."""
    wanted = list(set(order_ids))
    found: dict[str, list[Decimal | None]] = defaultdict(list)
    if wanted:
        rows = await _fetch(
            session,
            "SELECT order_id, amount FROM profile.refunds WHERE tenant_id = $1 AND order_id = ANY($2::text[])",
            tenant_id,
            wanted,
        )
        for order_id, amount in rows:
            found[order_id].append(amount)
    return found


async def stored_value_balances(
    session: AsyncSession, tenant_id: str, customer_ids: Iterable[str]
) -> dict[str, Decimal]:
    """Top-ups minus spends per customer over the stored events (the same sum ``repository`` takes for one)."""
    wanted = list(set(customer_ids))
    if not wanted:
        return {}
    rows = await _fetch(
        session,
        """
        SELECT customer_id, sum(CASE WHEN event = $3 THEN (properties->>'amount')::numeric
                                     ELSE -(properties->>'amount')::numeric END) AS balance
        FROM profile.events
        WHERE tenant_id = $1 AND customer_id = ANY($2::text[]) AND event IN ($3, $4)
        GROUP BY customer_id
        """,
        tenant_id,
        wanted,
        TOPPED,
        SPENT,
    )
    return {customer_id: Decimal(balance) for customer_id, balance in rows}


async def segment_members(session: AsyncSession, tenant_id: str, customer_ids: Iterable[str]) -> dict[str, set[str]]:
    wanted = list(set(customer_ids))
    found: dict[str, set[str]] = defaultdict(set)
    if wanted:
        rows = await _fetch(
            session,
            "SELECT customer_id, segment_id FROM profile.segment_members "
            "WHERE tenant_id = $1 AND customer_id = ANY($2::text[])",
            tenant_id,
            wanted,
        )
        for customer_id, segment_id in rows:
            found[customer_id].add(segment_id)
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
        await _execute(
            session,
            "INSERT INTO profile.identities (tenant_id, kind, value, customer_id) "
            "SELECT $1, k, v, c FROM unnest($2::text[], $3::text[], $4::text[]) AS s(k, v, c) ON CONFLICT DO NOTHING",
            tenant_id,
            [r[0] for r in rows],
            [r[1] for r in rows],
            [r[2] for r in rows],
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
    result = await _fetch(
        session,
        """
        INSERT INTO profile.events (tenant_id, event_id, customer_id, event, occurred_at, properties)
        SELECT $1, e, c, n, at, p
        FROM ROWS FROM (json_to_recordset($2::json) AS (e text, c text, n text, at timestamptz, p jsonb))
             WITH ORDINALITY AS s(e, c, n, at, p, i)
        ORDER BY i
        ON CONFLICT DO NOTHING
        RETURNING event_id, CASE WHEN event = $3 THEN (properties->>'amount')::numeric
                                 WHEN event = $4 THEN -(properties->>'amount')::numeric END AS delta
        """,
        tenant_id,
        dumps([{"e": e, "c": c, "n": n, "at": at, "p": p} for e, c, n, at, p in rows]),
        TOPPED,
        SPENT,
    )
    return dict(result)  # type: ignore[arg-type]


async def insert_orders(
    session: AsyncSession, tenant_id: str, rows: Sequence[tuple[str, str, Decimal, str, datetime, str]]
) -> dict[str, Decimal]:
    """Store (order_id, customer_id, amount, currency, occurred_at, source_event_id) rows, refunds applied later;
    returns the orders stored now with their amount as stored."""
    if not rows:
        return {}
    result = await _fetch(
        session,
        """
        INSERT INTO profile.orders (tenant_id, order_id, customer_id, amount, refunded_amount, currency,
                                    occurred_at, source_event_id)
        SELECT $1, o, c, a, 0, cur, at, src
        FROM ROWS FROM (json_to_recordset($2::json) AS (o text, c text, a numeric, cur text, at timestamptz,
                                                        src text))
             WITH ORDINALITY AS s(o, c, a, cur, at, src, i)
        ORDER BY i
        ON CONFLICT DO NOTHING
        RETURNING order_id, amount
        """,
        tenant_id,
        dumps([{"o": o, "c": c, "a": a, "cur": cur, "at": at, "src": src} for o, c, a, cur, at, src in rows]),
    )
    return dict(result)  # type: ignore[arg-type]


async def insert_refunds(
    session: AsyncSession, tenant_id: str, rows: Sequence[tuple[str, str, Decimal | None, datetime]]
) -> dict[str, Decimal | None]:
    """Store (event_id, order_id, amount, occurred_at) refunds; returns the ones stored now with their amount."""
    if not rows:
        return {}
    result = await _fetch(
        session,
        """
        INSERT INTO profile.refunds (tenant_id, event_id, order_id, amount, occurred_at)
        SELECT $1, e, o, a, at FROM unnest($2::text[], $3::text[], $4::numeric[], $5::timestamptz[]) AS s(e, o, a, at)
        ON CONFLICT DO NOTHING
        RETURNING event_id, amount
        """,
        tenant_id,
        [r[0] for r in rows],
        [r[1] for r in rows],
        [r[2] for r in rows],
        [r[3] for r in rows],
    )
    return dict(result)  # type: ignore[arg-type]


async def apply_refunds(session: AsyncSession, tenant_id: str, order_ids: Iterable[str]) -> None:
    """Set each order's refunded amount from every refund recorded for it (as ``repository.apply_refunds``)."""
    wanted = list(set(order_ids))
    if wanted:
        await _execute(
            session,
            """
            UPDATE profile.orders o SET refunded_amount = LEAST(o.amount, COALESCE((
                SELECT CASE WHEN bool_or(r.amount IS NULL) THEN o.amount ELSE sum(r.amount) END
                FROM profile.refunds r WHERE r.tenant_id = o.tenant_id AND r.order_id = o.order_id), 0))
            WHERE o.tenant_id = $1 AND o.order_id = ANY($2::text[])
            """,
            tenant_id,
            wanted,
        )


async def insert_touches(session: AsyncSession, rows: Sequence[dict[str, Any]]) -> None:
    if rows:
        await _execute(
            session,
            """
            INSERT INTO profile.touches (tenant_id, event_id, touch_key, customer_id, journey_id, channel,
                                         template_id, status, reason, occurred_at)
            SELECT tenant_id, event_id, touch_key, customer_id, journey_id, channel, template_id, status, reason,
                   occurred_at
            FROM json_to_recordset($1::json) AS s(tenant_id text, event_id text, touch_key text,
                 customer_id text, journey_id text, channel text, template_id text, status text, reason text,
                 occurred_at timestamptz)
            ON CONFLICT DO NOTHING
            """,
            dumps(list(rows)),
        )


def _customer_json(customers: Iterable[SimpleNamespace]) -> str:
    # a customer's namespace holds exactly the table's columns (``lock_customers``, ``batch._new_customer``)
    return dumps([vars(c) for c in customers])


_RECORDSET = ", ".join(f"{name} {sql_type}" for name, sql_type in CUSTOMER_COLUMNS)
_NAMES = ", ".join(name for name, _ in CUSTOMER_COLUMNS)
_SETS = ", ".join(f"{name} = s.{name}" for name, _ in CUSTOMER_COLUMNS if name not in _KEY)


async def insert_customers(session: AsyncSession, customers: Sequence[SimpleNamespace]) -> None:
    if customers:
        await _execute(
            session,
            f"INSERT INTO profile.customers ({_NAMES}) SELECT {_NAMES} "
            f"FROM json_to_recordset($1::json) AS s({_RECORDSET})",
            _customer_json(customers),
        )


async def update_customers(session: AsyncSession, customers: Sequence[SimpleNamespace]) -> None:
    """Write every column of these (locked) customers back in one statement."""
    if customers:
        await _execute(
            session,
            f"UPDATE profile.customers c SET {_SETS} FROM json_to_recordset($1::json) AS s({_RECORDSET}) "
            "WHERE c.tenant_id = s.tenant_id AND c.customer_id = s.customer_id",
            _customer_json(customers),
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
        await _execute(
            session,
            "DELETE FROM profile.segment_members m USING unnest($2::text[], $3::text[]) AS q(s, c) "
            "WHERE m.tenant_id = $1 AND m.segment_id = q.s AND m.customer_id = q.c",
            tenant_id,
            [s for s, _ in exited],
            [c for _, c in exited],
        )
    if entered:
        await _execute(
            session,
            "INSERT INTO profile.segment_members (tenant_id, segment_id, customer_id, entered_at) "
            "SELECT $1, s, c, $4 FROM unnest($2::text[], $3::text[]) AS q(s, c) "
            "ON CONFLICT (tenant_id, segment_id, customer_id) DO UPDATE SET entered_at = EXCLUDED.entered_at",
            tenant_id,
            [s for s, _ in entered],
            [c for _, c in entered],
            now,
        )
