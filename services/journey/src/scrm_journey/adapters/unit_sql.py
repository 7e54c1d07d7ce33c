"""A unit of work's writes as ONE statement: each table's change is a data-modifying CTE over typed arrays.

PostgreSQL runs every data-modifying ``WITH`` part exactly once, on the same snapshot, whether or not the main query
reads it. The parts never touch the same rows (an instance created in the unit is inserted with its final state, a
timer is either cleared or set), so one round trip does what five statements did: on a loaded machine each round
trip waits for two processes to be scheduled, and the consumer's latency is mostly such waits.
"""

from datetime import datetime
from typing import Any

import orjson
from sqlalchemy import TextClause, text

from scrm_kit.outbox import OutgoingRecord

# Column -> PostgreSQL array element type ("jsonb" travels as text and is cast per row). asyncpg encodes each Python
# list as one array, and SQLAlchemy has no per-element bind processing to do.
INSTANCE_COLUMNS = {
    "instance_id": "text", "tenant_id": "text", "journey_id": "text", "journey_version": "int", "customer_id": "text",
    "user_id": "text", "entered_at": "timestamptz", "state": "text", "current_node": "text", "holdout": "boolean",
    "context": "jsonb", "goal_at": "timestamptz", "updated_at": "timestamptz",
}  # fmt: skip
CHANGE_COLUMNS = {
    "instance_id": "text", "state": "text", "current_node": "text", "holdout": "boolean", "context": "jsonb",
    "goal_at": "timestamptz",
}  # fmt: skip
MOVE_COLUMNS = {"instance_id": "text", "tenant_id": "text", "node_id": "text", "outcome": "text", "at": "timestamptz"}
TIMER_COLUMNS = {
    "timer_id": "text", "kind": "text", "tenant_id": "text", "journey_id": "text", "customer_id": "text",
    "instance_id": "text", "due_at": "timestamptz",
}  # fmt: skip
OUTBOX_COLUMNS = {"topic": "text", "key": "bytea", "value": "bytea", "headers": "jsonb"}


def _unnest(prefix: str, columns: dict[str, str]) -> str:
    return ", ".join(
        f"CAST(unnest(CAST(:{prefix}{n} AS text[])) AS jsonb)"
        if kind == "jsonb"
        else f"unnest(CAST(:{prefix}{n} AS {kind}[]))"
        for n, kind in columns.items()
    )


def _arrays(prefix: str, rows: list[dict[str, Any]], columns: dict[str, str]) -> dict[str, list[Any]]:
    return {
        f"{prefix}{n}": [None if r[n] is None else orjson.dumps(r[n]).decode() for r in rows]
        if kind == "jsonb"
        else [r[n] for r in rows]
        for n, kind in columns.items()
    }


def _insert(table: str, prefix: str, columns: dict[str, str]) -> str:
    return f"INSERT INTO journey.{table} ({', '.join(columns)}) SELECT {_unnest(prefix, columns)}"


_PARTS = {
    "created": _insert("instances", "i_", INSTANCE_COLUMNS),
    "changed": (
        "UPDATE journey.instances AS i SET state = u.state, current_node = u.current_node, holdout = u.holdout, "
        "context = u.context, goal_at = u.goal_at, updated_at = :now "
        f"FROM (SELECT {_unnest('u_', CHANGE_COLUMNS)}) AS u({', '.join(CHANGE_COLUMNS)}) "
        "WHERE i.instance_id = u.instance_id"
    ),
    "moves": _insert("transitions", "m_", MOVE_COLUMNS),
    "cleared": "DELETE FROM journey.timers WHERE timer_id = ANY(CAST(:cleared AS text[]))",
    "timers": (
        _insert("timers", "t_", TIMER_COLUMNS) + " "
        "ON CONFLICT (timer_id) DO UPDATE SET due_at = excluded.due_at, paused = false, "
        "customer_id = excluded.customer_id"
    ),
    "outgoing": _insert("outbox", "o_", OUTBOX_COLUMNS),
}


def unit_statement(
    now: datetime,
    created: list[dict[str, Any]],
    changed: list[dict[str, Any]],
    moves: list[dict[str, Any]],
    cleared: list[str],
    timers_set: list[dict[str, Any]],
    outgoing: list[OutgoingRecord],
) -> tuple[TextClause, dict[str, Any]] | None:
    """The one statement writing all of it (None when there is nothing to write)."""
    parts: list[str] = []
    params: dict[str, Any] = {}
    if created:
        parts.append("created")
        params |= _arrays("i_", created, INSTANCE_COLUMNS)
    if changed:
        parts.append("changed")
        params |= _arrays("u_", changed, CHANGE_COLUMNS) | {"now": now}
    if moves:
        parts.append("moves")
        params |= _arrays("m_", moves, MOVE_COLUMNS)
    if cleared:
        parts.append("cleared")
        params["cleared"] = cleared
    if timers_set:
        parts.append("timers")
        params |= _arrays("t_", timers_set, TIMER_COLUMNS)
    if outgoing:
        parts.append("outgoing")
        rows = [
            {"topic": r.topic, "key": r.key, "value": r.value, "headers": dict(r.headers) if r.headers else None}
            for r in outgoing
        ]
        params |= _arrays("o_", rows, OUTBOX_COLUMNS)
    if not parts:
        return None
    ctes = ", ".join(f"{name} AS ({_PARTS[name]})" for name in parts)
    return text(f"WITH {ctes} SELECT 1"), params
