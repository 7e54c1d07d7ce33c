"""Customer summaries (frequency, recency, T, monetary value) from a transactions table, vectorised with numpy."""

from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from datetime import UTC, date, datetime
from decimal import Decimal
from typing import Literal

import numpy as np
from numpy.typing import ArrayLike, NDArray

from scrm_profile.domain.customers import OrderFact

TimeUnit = Literal["day", "week"]
TIME_UNIT_DAYS: dict[str, float] = {"day": 1.0, "week": 7.0}
_EPOCH_THURSDAY_SHIFT = 3  # 1970-01-01 was a Thursday; +3 days makes weeks run Monday..Sunday (pandas' W-SUN)


class SummaryError(ValueError):
    """Invalid input data; names the column and the first offending row (0-based) when there is one."""

    def __init__(self, column: str, problem: str, row: int | None = None) -> None:
        where = "" if row is None else f" (row {row})"
        super().__init__(f"{column}: {problem}{where}")
        self.column, self.problem, self.row = column, problem, row


def _check(column: str, ok: NDArray[np.bool_], problem: str) -> None:
    bad = np.flatnonzero(~ok)
    if len(bad):
        raise SummaryError(column, problem, int(bad[0]))


@dataclass(frozen=True, slots=True)
class CustomerSummary:
    """Per-customer RFM summary in one time unit; the lifetimes library's convention."""

    customer_id: NDArray[np.generic]
    frequency: NDArray[np.float64]
    recency: NDArray[np.float64]
    T: NDArray[np.float64]
    monetary_value: NDArray[np.float64]

    def __post_init__(self) -> None:
        sizes = {len(self.customer_id), len(self.frequency), len(self.recency), len(self.T), len(self.monetary_value)}
        if len(sizes) != 1:
            raise ValueError("customer summary columns must have equal lengths")

    def __len__(self) -> int:
        return len(self.frequency)


def summary_from_arrays(
    customer_id: ArrayLike, frequency: ArrayLike, recency: ArrayLike, T: ArrayLike, monetary_value: ArrayLike
) -> CustomerSummary:
    """Validate and wrap summary columns (non-negative, recency <= T, recency 0 when frequency is 0)."""
    x, t, age, m = (np.asarray(c, dtype=np.float64) for c in (frequency, recency, T, monetary_value))
    summary = CustomerSummary(np.asarray(customer_id), x, t, age, m)
    for name, col in (("frequency", x), ("recency", t), ("T", age), ("monetary_value", m)):
        _check(name, np.isfinite(col) & (col >= 0), "must be a finite, non-negative number")
    _check("frequency", x == np.round(x), "must be a whole number")
    _check("recency", t <= age * (1 + 1e-12), "must not exceed T")
    _check("recency", (x > 0) | (t == 0), "must be 0 when frequency is 0")
    return summary


def _periods(dates: NDArray[np.datetime64], unit: TimeUnit) -> NDArray[np.int64]:
    days = dates.astype("datetime64[D]").astype(np.int64)
    if unit == "day":
        return days
    if unit == "week":
        return np.floor_divide(days + _EPOCH_THURSDAY_SHIFT, 7)
    raise SummaryError("time unit", f"must be day or week, not {unit!r}")


def summarise_transactions(
    customer_id: ArrayLike, date: ArrayLike, amount: ArrayLike, observation_end: np.datetime64 | str, unit: TimeUnit
) -> CustomerSummary:
    """Summarise transactions per customer; one period's purchases merge, periods after observation_end's drop."""
    ids, amounts = np.asarray(customer_id), np.asarray(amount, dtype=np.float64)
    _check("amount", np.isfinite(amounts), "must be a finite number")
    dates = np.asarray(date, dtype="datetime64").astype("datetime64[D]")
    end = _periods(np.asarray([observation_end], dtype="datetime64[D]"), unit)[0]
    periods = _periods(dates, unit)
    keep = periods <= end
    ids, periods, amounts = ids[keep], periods[keep], amounts[keep]
    uniq, code = np.unique(ids, return_inverse=True)
    order = np.lexsort((periods, code))
    code, periods, amounts = code[order], periods[order], amounts[order]
    new_period = np.ones(len(code), dtype=bool)
    new_period[1:] = (code[1:] != code[:-1]) | (periods[1:] != periods[:-1])
    starts = np.flatnonzero(new_period)
    p_code, p_period = code[starts], periods[starts]
    p_amount = np.add.reduceat(amounts, starts) if len(starts) else amounts[:0]
    firsts = np.searchsorted(p_code, np.arange(len(uniq)), side="left")
    lasts = np.searchsorted(p_code, np.arange(len(uniq)), side="right") - 1
    frequency = (lasts - firsts).astype(np.float64)
    total = np.bincount(p_code, weights=p_amount, minlength=len(uniq))
    repeat_total = total - p_amount[firsts]
    monetary = np.divide(repeat_total, frequency, out=np.zeros(len(uniq)), where=frequency > 0)
    recency = (p_period[lasts] - p_period[firsts]).astype(np.float64)
    age = (end - p_period[firsts]).astype(np.float64)
    return CustomerSummary(uniq, frequency, recency, age, monetary)


def summarise_orders(histories: Mapping[str, Iterable[OrderFact]], now: datetime) -> CustomerSummary:
    """Per customer, the summary in days of their orders net of refunds as the tenant-wide fit's SQL makes it
    (``valuation.SUMMARY_SQL``): one purchase per UTC day with anything left after refunds, T up to ``now``.
    Customers with no such day are left out. For scoring one customer, or a batch's customers as each order left
    them, without a round trip per customer."""
    ids: list[str] = []
    columns: list[list[float]] = [[], [], [], []]
    for key, facts in histories.items():
        days: dict[date, Decimal] = {}
        for fact in facts:
            if fact.amount > fact.refunded_amount:
                day = fact.occurred_at.astimezone(UTC).date()
                days[day] = days.get(day, Decimal(0)) + (fact.amount - fact.refunded_amount)
        if not days:
            continue
        first, last = min(days), max(days)
        repeats = len(days) - 1
        recency = float((last - first).days)
        start = datetime(first.year, first.month, first.day, tzinfo=UTC)
        ids.append(key)
        columns[0].append(float(repeats))
        columns[1].append(recency)
        columns[2].append(max((now - start).total_seconds() / 86_400, recency))
        columns[3].append(float((sum(days.values()) - days[first]) / repeats) if repeats else 0.0)
    return CustomerSummary(np.asarray(ids, dtype=object), *(np.asarray(c, dtype=np.float64) for c in columns))
