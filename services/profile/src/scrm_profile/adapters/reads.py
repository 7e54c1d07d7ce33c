"""The customer read path of the API: one static statement, one round trip.

``GET /v1/customers/{ref}`` is the hottest read the frontends make. The statement below finds the customer by our
id (following merges) or by an identity, and gathers the identities, segment memberships and recent touches in
scalar subqueries, each an index lookup. It is plain SQL on purpose: built once, it costs no statement building
or cache-key work per request.
"""

from dataclasses import dataclass
from typing import Any

from sqlalchemy import text
from sqlalchemy.engine import Row
from sqlalchemy.ext.asyncio import AsyncSession

from scrm_profile.adapters.orm import SCHEMA
from scrm_profile.domain.identity import MERGED_KIND

RECENT_TOUCHES = 50

_DETAILS = f"""
    (SELECT coalesce(jsonb_agg(jsonb_build_array(i.kind, i.value) ORDER BY i.kind, i.value), '[]'::jsonb)
       FROM {SCHEMA}.identities i WHERE i.tenant_id = c.tenant_id AND i.customer_id = c.customer_id)
      AS identities_json,
    (SELECT coalesce(array_agg(m.segment_id ORDER BY m.segment_id), '{{}}'::text[])
       FROM {SCHEMA}.segment_members m WHERE m.tenant_id = c.tenant_id AND m.customer_id = c.customer_id)
      AS segment_ids,
    (SELECT coalesce(jsonb_agg(jsonb_build_object(
                'touch_key', t.touch_key, 'journey_id', t.journey_id, 'channel', t.channel,
                'template_id', t.template_id, 'status', t.status, 'reason', t.reason,
                'occurred_at', t.occurred_at) ORDER BY t.occurred_at DESC), '[]'::jsonb)
       FROM (SELECT * FROM {SCHEMA}.touches t0
              WHERE t0.tenant_id = c.tenant_id AND t0.customer_id = c.customer_id
              ORDER BY t0.occurred_at DESC LIMIT {RECENT_TOUCHES}) t)
      AS touches_json
"""

# By our id, or by an identity (kind, value); a merged-away id is an identity of its survivor.
_FIND = text(f"""
    SELECT c.*, {_DETAILS}
      FROM {SCHEMA}.customers c
     WHERE c.tenant_id = :tenant
       AND c.customer_id = coalesce(
             (SELECT customer_id FROM {SCHEMA}.customers
               WHERE tenant_id = :tenant AND customer_id = :customer_id),
             (SELECT customer_id FROM {SCHEMA}.identities
               WHERE tenant_id = :tenant AND kind = :kind AND value = :value))
""")  # noqa: S608 - only module constants are formatted in; every value is a bound parameter

_DETAILS_OF = text(f"""
    SELECT {_DETAILS} FROM {SCHEMA}.customers c WHERE c.tenant_id = :tenant AND c.customer_id = :customer_id
""")  # noqa: S608


@dataclass(frozen=True)
class CustomerDetails:
    identities: list[tuple[str, str]]  # (kind, value), sorted
    segments: list[str]  # sorted
    touches: list[dict[str, Any]]  # newest first, at most RECENT_TOUCHES


def _details(row: Row[Any]) -> CustomerDetails:
    return CustomerDetails(
        identities=[(kind, value) for kind, value in row.identities_json],
        segments=list(row.segment_ids),
        touches=list(row.touches_json),
    )


async def find_with_details(
    session: AsyncSession, tenant_id: str, *, customer_id: str | None = None, kind: str = "", value: str = ""
) -> tuple[Row[Any], CustomerDetails] | None:
    """The customer (a row with the customers columns) and their details, or None; pass our id or an identity."""
    if customer_id is not None:
        kind, value = MERGED_KIND, customer_id
    params = {"tenant": tenant_id, "customer_id": customer_id, "kind": kind, "value": value}
    row = (await session.execute(_FIND, params)).first()
    return (row, _details(row)) if row is not None else None


async def customer_details(session: AsyncSession, tenant_id: str, customer_id: str) -> CustomerDetails:
    """Identities, segment memberships and recent touches of a customer already loaded."""
    row = (await session.execute(_DETAILS_OF, {"tenant": tenant_id, "customer_id": customer_id})).one()
    return _details(row)
