"""CLV predictions from fitted BG/NBD and Gamma-Gamma parameters: P(alive), expected purchases, discounted value.

Expected purchases use E[Y(t)] = P(alive) * E[(1 - ((alpha+T) / (alpha+T+p t))^(r+x)) / p] with p ~ Beta(a, b+x), the
posterior of the dropout probability of a customer alive after x repeat purchases; the expectation over p is
Gauss-Jacobi quadrature (Golub-Welsch), which stays finite for heavy buyers where the closed form's 2F1 overflows.
"""

import functools

import numpy as np
from numpy.typing import ArrayLike, NDArray
from scipy.linalg import eigh_tridiagonal
from scipy.special import expit

from scrm_profile.domain.clv import BgNbdParams, GammaGammaParams
from scrm_profile.domain.clv_summary import CustomerSummary

Array = NDArray[np.float64]
_CHUNK = 1 << 15


@functools.lru_cache(maxsize=4096)
def beta_quadrature(a: float, b: float, nodes: int = 32) -> tuple[Array, Array]:
    """Gauss nodes on [0, 1] and weights summing to 1 for the Beta(a, b) distribution (read-only arrays).

    Remembered per (a, b, nodes): the consumer scores every batch with one tenant's fitted (a, b) and the few
    distinct purchase counts its customers have, and each table costs an eigendecomposition."""
    al, be = b - 1.0, a - 1.0  # Jacobi weight (1-u)^al (1+u)^be on [-1, 1], p = (1+u)/2
    k = np.arange(nodes, dtype=np.float64)
    s = 2 * k + al + be
    diag = np.empty(nodes)
    diag[0] = (be - al) / (al + be + 2)
    diag[1:] = (be**2 - al**2) / (s[1:] * (s[1:] + 2))
    k1, s1 = k[1:], s[1:]
    off2 = 4 * k1 * (k1 + al) * (k1 + be) * (k1 + al + be) / (s1**2 * (s1 + 1) * (s1 - 1))
    if nodes > 1:
        off2[0] = 4 * (1 + al) * (1 + be) / ((2 + al + be) ** 2 * (3 + al + be))
    u, vectors = eigh_tridiagonal(diag, np.sqrt(off2))
    weights = vectors[0] ** 2
    p_nodes, w_nodes = np.clip((1 + u) / 2, 0.0, 1.0), weights / weights.sum()
    p_nodes.flags.writeable = w_nodes.flags.writeable = False  # shared by every caller of the cache
    return p_nodes, w_nodes


def probability_alive(params: BgNbdParams, frequency: ArrayLike, recency: ArrayLike, T: ArrayLike) -> Array:
    """Probability that each customer is still alive at the end of observation."""
    x, t_x, age = (np.asarray(c, dtype=np.float64) for c in (frequency, recency, T))
    pos = x > 0
    bx1 = np.where(pos, params.b + x - 1, 1.0)
    log_odds = (
        np.log(params.a) - np.log(bx1) + (params.r + x) * (np.log(params.alpha + age) - np.log(params.alpha + t_x))
    )
    return np.where(pos, expit(-log_odds), 1.0)


def _alive_purchases(params: BgNbdParams, times: Array, x: Array, age: Array, nodes: int) -> Array:
    """E[purchases in (T, T+t]] given alive, for each row and each t in times: shape (rows, len(times))."""
    xs, xk = np.unique(x, return_inverse=True)
    tables = [beta_quadrature(float(params.a), float(params.b + xv), nodes) for xv in xs]
    p_nodes, w_nodes = np.array([t[0] for t in tables]), np.array([t[1] for t in tables])
    out = np.empty((len(x), len(times)))
    for lo in range(0, len(x), _CHUNK):
        sl = slice(lo, lo + _CHUNK)
        p, w = p_nodes[xk[sl]], w_nodes[xk[sl]]
        rx, scale = (params.r + x[sl])[:, None], (params.alpha + age[sl])[:, None]
        safe_p = np.maximum(p, 1e-300)
        for j, t in enumerate(times):
            ratio = t / scale
            gone = -np.expm1(-rx * np.log1p(safe_p * ratio))
            per_node = np.where(p > 0, gone / safe_p, rx * ratio)  # limit p -> 0: (r+x) t / (alpha+T)
            out[sl, j] = (w * per_node).sum(axis=1)
    return out


def expected_purchases(
    params: BgNbdParams, horizon: float | ArrayLike, frequency: ArrayLike, recency: ArrayLike, T: ArrayLike
) -> Array:
    """Expected purchases in the next horizon (same time unit as T); one column per horizon when given several."""
    times = np.atleast_1d(np.asarray(horizon, dtype=np.float64))
    x, t_x, age = (np.asarray(c, dtype=np.float64) for c in (frequency, recency, T))
    keys = np.stack([x, age], axis=1)
    distinct, inverse = np.unique(keys, axis=0, return_inverse=True)
    alive = _alive_purchases(params, times, distinct[:, 0], distinct[:, 1], nodes=32)[inverse.ravel()]
    result = probability_alive(params, x, t_x, age)[:, None] * alive
    return result[:, 0] if np.ndim(horizon) == 0 else result


def expected_order_value(params: GammaGammaParams, frequency: ArrayLike, monetary_value: ArrayLike) -> Array:
    """Conditional expected spend per order; the population mean for customers without repeat purchases."""
    if params.q <= 1:
        raise ValueError(f"Gamma-Gamma q={params.q} <= 1: the population mean spend is infinite")
    x, m = np.asarray(frequency, dtype=np.float64), np.asarray(monetary_value, dtype=np.float64)
    population = params.p * params.v / (params.q - 1)
    known = (x > 0) & (m > 0)
    individual = params.p * (params.v + x * m) / (params.p * x + params.q - 1)
    return np.where(known, individual, population)


def discounted_clv(
    bgnbd: BgNbdParams,
    gamma_gamma: GammaGammaParams,
    summary: CustomerSummary,
    *,
    unit_days: float = 1.0,
    horizon_days: float = 365.0,
    annual_discount: float = 0.10,
    steps: int = 12,
) -> Array:
    """Discounted expected value over the horizon: sum over steps of purchases in the step x spend / (1+d)^years."""
    if steps < 1 or horizon_days <= 0 or annual_discount <= -1 or unit_days <= 0:
        raise ValueError("steps >= 1, horizon_days > 0, annual_discount > -1 and unit_days > 0 are required")
    ends = np.arange(1, steps + 1) * (horizon_days / steps)
    cumulative = expected_purchases(bgnbd, ends / unit_days, summary.frequency, summary.recency, summary.T)
    in_step = np.clip(np.diff(cumulative, axis=1, prepend=0.0), 0.0, None)
    discount = (1.0 + annual_discount) ** (-ends / 365.0)
    value = np.einsum("ij,j->i", in_step, discount) * expected_order_value(
        gamma_gamma, summary.frequency, summary.monetary_value
    )
    if not np.all(np.isfinite(value)):
        raise ArithmeticError("CLV is not finite for some customers")
    return np.clip(value, 0.0, None)
