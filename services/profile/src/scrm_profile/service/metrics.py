"""Dashboard metrics for frontends: one tenant's customer base in numbers (set-based SQL)."""

from datetime import datetime
from decimal import Decimal

from pydantic import BaseModel
from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncSession


class CohortRetention(BaseModel):
    cohort: str
    customers: int
    retained_7d: float
    retained_30d: float
    retained_90d: float


class ClvDistribution(BaseModel):
    customers_scored: int
    p10: Decimal | None
    p25: Decimal | None
    p50: Decimal | None
    p75: Decimal | None
    p90: Decimal | None
    p99: Decimal | None
    total: Decimal | None


class Dashboard(BaseModel):
    customers: int
    buyers: int
    revenue_total: Decimal
    orders: int
    repurchase_rate: float
    purchase_frequency: float
    average_order_value: Decimal | None
    by_stage: dict[str, int]
    by_tier: dict[str, int]
    by_rfm_segment: dict[str, int]
    by_rfm_cell: dict[str, int]
    cohorts: list[CohortRetention]
    clv: ClvDistribution


async def _counts(session: AsyncSession, tenant_id: str, column: str) -> dict[str, int]:
    rows = await session.execute(
        text(
            f"SELECT COALESCE({column}::text, 'none') AS k, count(*) AS n FROM profile.customers "
            "WHERE tenant_id = :t GROUP BY 1 ORDER BY 1"
        ),
        {"t": tenant_id},
    )
    return {r.k: r.n for r in rows}


async def dashboard(session: AsyncSession, tenant_id: str, now: datetime) -> Dashboard:
    params = {"t": tenant_id, "now": now}
    totals = (
        await session.execute(
            text(
                "SELECT count(*) AS customers, count(*) FILTER (WHERE orders_count > 0) AS buyers, "
                "COALESCE(sum(revenue_total), 0) AS revenue, COALESCE(sum(orders_count), 0) AS orders, "
                "count(*) FILTER (WHERE orders_count > 1) AS repeaters FROM profile.customers WHERE tenant_id = :t"
            ),
            params,
        )
    ).one()
    cohorts = (
        await session.execute(
            text(
                """
        SELECT to_char(c.first_order_at, 'YYYY-MM') AS cohort, count(*) AS customers,
               avg((EXISTS (SELECT 1 FROM profile.orders o WHERE o.tenant_id = c.tenant_id
                    AND o.customer_id = c.customer_id AND o.amount > o.refunded_amount
                    AND o.occurred_at > c.first_order_at AND o.occurred_at <= c.first_order_at + interval '7 days'
                   ))::int) AS r7,
               avg((EXISTS (SELECT 1 FROM profile.orders o WHERE o.tenant_id = c.tenant_id
                    AND o.customer_id = c.customer_id AND o.amount > o.refunded_amount
                    AND o.occurred_at > c.first_order_at AND o.occurred_at <= c.first_order_at + interval '30 days'
                   ))::int) AS r30,
               avg((EXISTS (SELECT 1 FROM profile.orders o WHERE o.tenant_id = c.tenant_id
                    AND o.customer_id = c.customer_id AND o.amount > o.refunded_amount
                    AND o.occurred_at > c.first_order_at AND o.occurred_at <= c.first_order_at + interval '90 days'
                   ))::int) AS r90
        FROM profile.customers c WHERE c.tenant_id = :t AND c.first_order_at IS NOT NULL
        GROUP BY 1 ORDER BY 1
        """
            ),
            params,
        )
    ).all()
    clv = (
        await session.execute(
            text(
                "SELECT count(clv) AS n, percentile_cont(ARRAY[0.1, 0.25, 0.5, 0.75, 0.9, 0.99]) WITHIN GROUP "
                "(ORDER BY clv) AS p, sum(clv) AS total FROM profile.customers WHERE tenant_id = :t AND clv IS NOT NULL"
            ),
            params,
        )
    ).one()
    quantiles = [Decimal(f"{v:.2f}") for v in clv.p] if clv.p else [None] * 6
    buyers = totals.buyers or 0
    return Dashboard(
        customers=totals.customers,
        buyers=buyers,
        revenue_total=totals.revenue,
        orders=totals.orders,
        repurchase_rate=(totals.repeaters / buyers) if buyers else 0.0,
        purchase_frequency=(float(totals.orders) / buyers) if buyers else 0.0,
        average_order_value=(Decimal(totals.revenue) / totals.orders).quantize(Decimal("0.01"))
        if totals.orders
        else None,
        by_stage=await _counts(session, tenant_id, "lifecycle_stage"),
        by_tier=await _counts(session, tenant_id, "tier"),
        by_rfm_segment=await _counts(session, tenant_id, "rfm_segment"),
        by_rfm_cell=await _counts(session, tenant_id, "(rfm_r::text || rfm_f::text || rfm_m::text)"),
        cohorts=[
            CohortRetention(
                cohort=c.cohort,
                customers=c.customers,
                retained_7d=float(c.r7),
                retained_30d=float(c.r30),
                retained_90d=float(c.r90),
            )
            for c in cohorts
        ],
        clv=ClvDistribution(
            customers_scored=clv.n,
            p10=quantiles[0],
            p25=quantiles[1],
            p50=quantiles[2],
            p75=quantiles[3],
            p90=quantiles[4],
            p99=quantiles[5],
            total=clv.total,
        ),
    )
