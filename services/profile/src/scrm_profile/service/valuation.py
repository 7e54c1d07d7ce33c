"""Customer value: CLV scoring (per order and after a tenant fit), RFM quintiles and tiers.

Per-customer scoring uses the tenant's last fitted BG/NBD and Gamma-Gamma parameters; the tenant-wide jobs are
set-based SQL plus one vectorised numpy pass, never a Python loop over customers.
"""

from collections.abc import Sequence
from dataclasses import asdict
from datetime import datetime
from decimal import Decimal
from typing import Any

import numpy as np
from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncSession

from scrm_profile.adapters import repository as repo
from scrm_profile.adapters.orm import CustomerRow, TenantSettingsRow
from scrm_profile.domain.clv import BgNbdParams, ClvFit, GammaGammaParams, fit_clv
from scrm_profile.domain.clv_predict import discounted_clv, expected_purchases, probability_alive
from scrm_profile.domain.clv_summary import CustomerSummary, summarise_orders
from scrm_profile.domain.rfm import segment_case_sql
from scrm_profile.domain.settings import ProfileSettings

SUMMARY_SQL = """
WITH days AS (
    SELECT customer_id, date_trunc('day', occurred_at, 'UTC') AS day, sum(amount - refunded_amount) AS value
    FROM profile.orders
    WHERE amount > refunded_amount AND tenant_id = :tenant
    GROUP BY customer_id, date_trunc('day', occurred_at, 'UTC')
)
SELECT customer_id,
       count(*) - 1 AS frequency,
       extract(epoch FROM max(day) - min(day)) / 86400.0 AS recency,
       greatest(extract(epoch FROM CAST(:now AS timestamptz) - min(day)) / 86400.0,
                extract(epoch FROM max(day) - min(day)) / 86400.0) AS age,
       CASE WHEN count(*) > 1
            THEN (sum(value) - (array_agg(value ORDER BY day))[1]) / (count(*) - 1) ELSE 0 END AS monetary
FROM days GROUP BY customer_id
"""


async def summaries(session: AsyncSession, tenant_id: str, now: datetime) -> CustomerSummary:
    """Every customer's (frequency, recency, T, monetary value) in days, the CLV libraries' convention, set-based
    (``clv_summary.summarise_orders`` makes the same summary of one customer's orders in memory)."""
    return _summary((await session.execute(text(SUMMARY_SQL), {"tenant": tenant_id, "now": now})).all())


def _summary(rows: Sequence[Any]) -> CustomerSummary:
    columns = list(zip(*rows, strict=True)) if rows else [[], [], [], [], []]
    return CustomerSummary(
        np.asarray(columns[0], dtype=object),
        *(np.asarray([float(v) for v in col], dtype=np.float64) for col in columns[1:]),
    )


def _params(raw: dict[str, Any] | None) -> tuple[BgNbdParams, GammaGammaParams] | None:
    if not raw:
        return None
    return BgNbdParams(**raw["bgnbd"]), GammaGammaParams(**raw["gamma_gamma"])


def score(
    summary: CustomerSummary, params: tuple[BgNbdParams, GammaGammaParams], settings: ProfileSettings
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(expected purchases over the horizon, probability alive, discounted CLV) per customer."""
    bgnbd, gamma_gamma = params
    purchases = expected_purchases(
        bgnbd, float(settings.clv_horizon_days), summary.frequency, summary.recency, summary.T
    )
    alive = probability_alive(bgnbd, summary.frequency, summary.recency, summary.T)
    clv = discounted_clv(
        bgnbd, gamma_gamma, summary, horizon_days=settings.clv_horizon_days, annual_discount=settings.clv_discount_rate
    )
    return purchases, alive, clv


async def refresh_value(session: AsyncSession, customer: CustomerRow, settings: ProfileSettings, now: datetime) -> None:
    """Re-score one customer's CLV after an order, with the tenant's last fitted parameters (if any)."""
    params = await clv_params(session, customer.tenant_id)
    if params is None:
        return
    facts = await repo.order_facts(session, customer.tenant_id, customer.customer_id)
    summary = summarise_orders({customer.customer_id: facts}, now)
    set_value(customer, score(summary, params, settings) if len(summary) else None)


async def clv_params(session: AsyncSession, tenant_id: str) -> tuple[BgNbdParams, GammaGammaParams] | None:
    """The tenant's last fitted parameters, or None before the first fit."""
    row = await session.get(TenantSettingsRow, tenant_id)
    return _params(row.clv_params if row else None)


def set_value(customer: CustomerRow, scores: tuple[np.ndarray, np.ndarray, np.ndarray] | None, at: int = 0) -> None:
    """Set a customer's value from row ``at`` of ``score``'s result (None: no orders worth scoring)."""
    if scores is None:
        customer.expected_purchases, customer.probability_alive, customer.clv = 0.0, 0.0, Decimal("0.00")
        return
    purchases, alive, clv = scores
    customer.expected_purchases = float(purchases[at])
    customer.probability_alive = float(alive[at])
    customer.clv = Decimal(f"{clv[at]:.2f}")


async def fit_tenant(session: AsyncSession, tenant_id: str, settings: ProfileSettings, now: datetime) -> ClvFit | None:
    """Fit both models on the tenant's history, store the parameters and score every customer."""
    summary = await summaries(session, tenant_id, now)
    if len(summary) < 20 or float(np.sum(summary.frequency > 0)) < 10:
        return None  # not enough history to say anything about this tenant yet
    fit = fit_clv(summary)
    stored = {
        "bgnbd": asdict(fit.bgnbd),
        "gamma_gamma": asdict(fit.gamma_gamma),
        "fitted_at": now.isoformat(),
        "customers": fit.customers,
        "seconds": fit.seconds,
    }
    await session.execute(
        text(
            "INSERT INTO profile.tenant_settings (tenant_id, settings, clv_params) "
            "VALUES (:t, '{}', CAST(:p AS jsonb)) "
            "ON CONFLICT (tenant_id) DO UPDATE SET clv_params = EXCLUDED.clv_params, updated_at = now()"
        ),
        {"t": tenant_id, "p": _json(stored)},
    )
    purchases, alive, clv = score(summary, (fit.bgnbd, fit.gamma_gamma), settings)
    await session.execute(
        text(
            """
            UPDATE profile.customers c SET expected_purchases = s.purchases, probability_alive = s.alive,
                   clv = round(s.clv::numeric, 2)
            FROM unnest(CAST(:ids AS text[]), CAST(:purchases AS float8[]), CAST(:alive AS float8[]),
                        CAST(:clv AS float8[])) AS s(customer_id, purchases, alive, clv)
            WHERE c.tenant_id = :tenant AND c.customer_id = s.customer_id
            """
        ),
        {
            "tenant": tenant_id,
            "ids": [str(i) for i in summary.customer_id],
            "purchases": purchases.tolist(),
            "alive": alive.tolist(),
            "clv": clv.tolist(),
        },
    )
    return fit


def _json(value: dict[str, Any]) -> str:
    import orjson

    return orjson.dumps(value).decode()


async def recompute_rfm(session: AsyncSession, tenant_id: str) -> list[str]:
    """Per-tenant quintile scores (R by days since last order, F by orders, M by revenue) and named segments;
    returns the customers whose scores changed."""
    result = await session.execute(
        text(
            f"""
            WITH scored AS (
                SELECT customer_id,
                       ntile(5) OVER (ORDER BY last_order_at ASC) AS r,
                       ntile(5) OVER (ORDER BY orders_count ASC, revenue_total ASC) AS f,
                       ntile(5) OVER (ORDER BY revenue_total ASC) AS m
                FROM profile.customers WHERE tenant_id = :tenant AND orders_count > 0
            )
            UPDATE profile.customers c SET rfm_r = s.r, rfm_f = s.f, rfm_m = s.m,
                   rfm_segment = {segment_case_sql("s.r", "s.f", "s.m")}, version = c.version + 1
            FROM scored s WHERE c.tenant_id = :tenant AND c.customer_id = s.customer_id
              AND (c.rfm_r, c.rfm_f, c.rfm_m) IS DISTINCT FROM (s.r, s.f, s.m)
            RETURNING c.customer_id
            """
        ),
        {"tenant": tenant_id},
    )
    return [r.customer_id for r in result]


async def recompute_tiers(
    session: AsyncSession, tenant_id: str, settings: ProfileSettings
) -> list[tuple[str, str | None, str]]:
    """Assign tiers; returns (customer_id, old tier, new tier) for every customer whose tier changed.

    B2C: the top ``high_value_percent`` by predicted CLV (revenue where no CLV yet) are ``dt``, the rest
    ``standard``. B2B: accounts making the first ``ka_revenue_share`` of revenue are ``ka``, the next
    ``growth_revenue_share`` ``growth``, the rest ``standard``."""
    if settings.tier_mode == "b2c":
        ranking = f"""
            SELECT customer_id, CASE WHEN cume_dist() OVER (ORDER BY COALESCE(clv, revenue_total) DESC)
                                          <= {settings.high_value_percent / 100.0} THEN 'dt' ELSE 'standard' END AS tier
            FROM profile.customers WHERE tenant_id = :tenant AND orders_count > 0"""
    else:
        ka = settings.ka_revenue_share
        growth = ka + settings.growth_revenue_share
        ranking = f"""
            SELECT customer_id, CASE WHEN share_before < {ka} THEN 'ka' WHEN share_before < {growth} THEN 'growth'
                                     ELSE 'standard' END AS tier
            FROM (SELECT customer_id,
                         COALESCE(sum(revenue_total) OVER (ORDER BY revenue_total DESC, customer_id
                                  ROWS BETWEEN UNBOUNDED PRECEDING AND 1 PRECEDING), 0)
                         / NULLIF(sum(revenue_total) OVER (), 0) AS share_before
                  FROM profile.customers WHERE tenant_id = :tenant AND orders_count > 0) ranked"""
    rows = await session.execute(
        text(
            f"""
            WITH ranked AS ({ranking}),
            changed AS (
                SELECT c.customer_id, c.tier AS old_tier, r.tier AS new_tier FROM profile.customers c
                JOIN ranked r ON r.customer_id = c.customer_id
                WHERE c.tenant_id = :tenant AND c.tier IS DISTINCT FROM r.tier
                FOR UPDATE OF c
            )
            UPDATE profile.customers c SET tier = changed.new_tier, version = c.version + 1, updated_at = now()
            FROM changed WHERE c.tenant_id = :tenant AND c.customer_id = changed.customer_id
            RETURNING c.customer_id, changed.old_tier, changed.new_tier
            """
        ),
        {"tenant": tenant_id},
    )
    return [(r.customer_id, r.old_tier, r.new_tier) for r in rows]
