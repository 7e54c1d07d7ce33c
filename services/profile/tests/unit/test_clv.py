"""Unit tests of the CLV domain model: likelihoods, gradients, parameter recovery, safety, summaries."""

import math

import numpy as np
import pytest
from scipy.special import hyp2f1

from scrm_profile.domain.clv import (
    BgNbdParams,
    GammaGammaParams,
    bgnbd_gradient,
    bgnbd_log_likelihood,
    fit_bgnbd,
    fit_clv,
    fit_gamma_gamma,
    gamma_gamma_gradient,
    gamma_gamma_log_likelihood,
)
from scrm_profile.domain.clv_predict import (
    beta_quadrature,
    discounted_clv,
    expected_order_value,
    expected_purchases,
    probability_alive,
)
from scrm_profile.domain.clv_summary import summarise_transactions, summary_from_arrays

CDNOW = (0.24, 4.41, 0.79, 2.43)
SPEND = (6.25, 3.74, 15.44)


def plain_bgnbd_log_likelihood(r: float, alpha: float, a: float, b: float, x: int, t_x: float, T: float) -> float:
    """FHL (2005) eq. 6, term by term, with math.lgamma."""

    def log_beta(u: float, v: float) -> float:
        return math.lgamma(u) + math.lgamma(v) - math.lgamma(u + v)

    head = math.lgamma(r + x) - math.lgamma(r) + r * math.log(alpha)
    first = math.exp(log_beta(a, b + x) - log_beta(a, b) + head - (r + x) * math.log(alpha + T))
    second = 0.0
    if x > 0:
        second = math.exp(log_beta(a + 1, b + x - 1) - log_beta(a, b) + head - (r + x) * math.log(alpha + t_x))
    return math.log(first + second)


def plain_gamma_gamma_log_likelihood(p: float, q: float, v: float, x: int, m: float) -> float:
    """Density of the mean of x Gamma(p, nu) spends with nu ~ Gamma(q, v), written out."""
    return (
        math.lgamma(p * x + q) - math.lgamma(p * x) - math.lgamma(q) + q * math.log(v)
        + (p * x - 1) * math.log(m) + p * x * math.log(x) - (p * x + q) * math.log(v + x * m)
    )  # fmt: skip


def central_gradient(f, theta: np.ndarray, rel: float = 1e-6) -> np.ndarray:
    grad = np.empty_like(theta)
    for i in range(len(theta)):
        h = rel * theta[i]
        up, down = theta.copy(), theta.copy()
        up[i] += h
        down[i] -= h
        grad[i] = (f(up) - f(down)) / (2 * h)
    return grad


def random_customers(rng: np.random.Generator, n: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    x = rng.integers(0, 40, n).astype(float)
    T = rng.uniform(0.5, 120, n)
    t_x = np.where(x > 0, T * rng.uniform(0, 1, n), 0.0)
    return x, t_x, T


def simulate_bgnbd(rng: np.random.Generator, n: int, params: tuple[float, ...]) -> tuple[np.ndarray, ...]:
    """Per-customer simulation of the BG/NBD story: exponential gaps, dropout after each repeat purchase."""
    r, alpha, a, b = params
    x, t_x, T = np.zeros(n), np.zeros(n), rng.uniform(26, 78, n)
    for i in range(n):
        rate, p = rng.gamma(r, 1 / alpha), rng.beta(a, b)
        now = 0.0
        while True:
            now += rng.exponential(1 / rate)
            if now > T[i]:
                break
            x[i], t_x[i] = x[i] + 1, now
            if rng.random() < p:
                break
    return x, t_x, T


def test_vectorised_log_likelihood_equals_the_plain_formula() -> None:
    rng = np.random.default_rng(1)
    x, t_x, T = random_customers(rng, 300)
    for params in (CDNOW, (1.7, 0.3, 3.0, 0.6)):
        plain = [plain_bgnbd_log_likelihood(*params, int(xi), ti, Ti) for xi, ti, Ti in zip(x, t_x, T, strict=True)]
        np.testing.assert_allclose(bgnbd_log_likelihood(params, x, t_x, T), plain, rtol=1e-11, atol=1e-11)


def test_gamma_gamma_log_likelihood_equals_the_plain_formula() -> None:
    rng = np.random.default_rng(2)
    x, m = rng.integers(1, 60, 300).astype(float), rng.gamma(3, 20, 300)
    plain = [plain_gamma_gamma_log_likelihood(*SPEND, int(xi), mi) for xi, mi in zip(x, m, strict=True)]
    np.testing.assert_allclose(gamma_gamma_log_likelihood(SPEND, x, m), plain, rtol=1e-11)


@pytest.mark.parametrize("params", [CDNOW, (1.7, 0.3, 3.0, 0.6), (0.05, 40.0, 0.2, 9.0)])
def test_bgnbd_gradient_matches_central_differences(params: tuple[float, ...]) -> None:
    rng = np.random.default_rng(3)
    x, t_x, T = random_customers(rng, 400)
    w = rng.integers(1, 5, 400).astype(float)
    theta = np.array(params)
    numeric = central_gradient(lambda th: float(w @ bgnbd_log_likelihood(th, x, t_x, T)), theta)
    np.testing.assert_allclose(bgnbd_gradient(theta, x, t_x, T, weights=w), numeric, rtol=1e-6, atol=1e-5)


def test_gamma_gamma_gradient_matches_central_differences() -> None:
    rng = np.random.default_rng(4)
    x, m = rng.integers(1, 60, 400).astype(float), rng.gamma(3, 20, 400)
    theta = np.array(SPEND)
    numeric = central_gradient(lambda th: float(gamma_gamma_log_likelihood(th, x, m).sum()), theta)
    np.testing.assert_allclose(gamma_gamma_gradient(theta, x, m), numeric, rtol=1e-6, atol=1e-5)


def test_weights_equal_repeated_rows() -> None:
    x, t_x, T = np.array([0.0, 3.0, 1.0]), np.array([0.0, 20.0, 5.0]), np.array([30.0, 40.0, 50.0])
    w = np.array([2.0, 1.0, 3.0])
    fitted = fit_bgnbd(x, t_x, T, weights=w)
    expanded = fit_bgnbd(
        np.repeat(x, 2 * w.astype(int)), np.repeat(t_x, 2 * w.astype(int)), np.repeat(T, 2 * w.astype(int))
    )
    assert fitted.log_likelihood == pytest.approx(expanded.log_likelihood / 2, rel=1e-8)


def test_bgnbd_recovers_known_parameters() -> None:
    x, t_x, T = simulate_bgnbd(np.random.default_rng(2005), 20_000, CDNOW)
    fitted = fit_bgnbd(x, t_x, T)  # across seeds the estimates scatter by about 1.5%, 2.5%, 7% and 9% (one s.d.)
    recovered = fitted.as_array()
    relative_error = np.abs(recovered / np.array(CDNOW) - 1)
    assert np.all(relative_error < [0.06, 0.08, 0.2, 0.25]), (recovered, relative_error)
    assert np.isfinite(fitted.log_likelihood)
    assert fitted.log_likelihood >= float(bgnbd_log_likelihood(CDNOW, x, t_x, T).sum())


def test_gamma_gamma_recovers_known_parameters() -> None:
    rng = np.random.default_rng(42)
    p, q, v = SPEND
    x = rng.integers(1, 12, 20_000)
    nu = rng.gamma(q, 1 / v, len(x))
    owner = np.repeat(np.arange(len(x)), x)
    spends = rng.gamma(p, 1 / nu[owner])
    m = np.bincount(owner, weights=spends) / x
    fitted = fit_gamma_gamma(x, m)
    relative_error = np.abs(fitted.as_array() / np.array(SPEND) - 1)
    assert np.all(relative_error < [0.1, 0.1, 0.1]), (fitted, relative_error)


def test_heavy_buyers_stay_finite() -> None:
    x = np.array([0.0, 150.0, 400.0, 900.0, 900.0])
    T = np.array([3000.0, 2500.0, 4000.0, 5000.0, 5000.0])
    t_x = np.array([0.0, 2400.0, 3999.0, 5000.0, 10.0])
    for params in (CDNOW, (0.24, 30.87, 0.79, 2.43)):
        assert np.all(np.isfinite(bgnbd_log_likelihood(params, x, t_x, T)))
        assert np.all(np.isfinite(bgnbd_gradient(params, x, t_x, T)))
    summary = summary_from_arrays(np.arange(5), x, t_x, T, [0.0, 35.0, 80.0, 12.0, 12.0])
    value = discounted_clv(BgNbdParams(*CDNOW), GammaGammaParams(*SPEND), summary, unit_days=7.0)
    assert np.all(np.isfinite(value)) and np.all(value >= 0)
    assert value[3] > value[4]  # same history length, the one who just bought is worth more


def test_zero_repeat_customers_get_population_spend_and_finite_value() -> None:
    gg = GammaGammaParams(*SPEND)
    spend = expected_order_value(gg, [0.0, 0.0], [0.0, 50.0])
    np.testing.assert_allclose(spend, SPEND[0] * SPEND[2] / (SPEND[1] - 1))
    summary = summary_from_arrays(["a", "b"], [0.0, 0.0], [0.0, 0.0], [0.0, 700.0], [0.0, 0.0])
    value = discounted_clv(BgNbdParams(0.24, 30.87, 0.79, 2.43), gg, summary)
    assert np.all(np.isfinite(value)) and np.all(value > 0) and value[0] > value[1]
    assert np.isfinite(bgnbd_log_likelihood(CDNOW, [0.0], [0.0], [0.0])).all()


def closed_form_expected_purchases(params: tuple[float, ...], t: float, x: float, t_x: float, T: float) -> float:
    """FHL (2005) eq. 10 with the Gauss hypergeometric function."""
    r, alpha, a, b = params
    z = t / (alpha + T + t)
    head = (a + b + x - 1) / (a - 1)
    body = 1 - ((alpha + T) / (alpha + T + t)) ** (r + x) * hyp2f1(r + x, b + x, a + b + x - 1, z)
    tail = 1 + (x > 0) * a / (b + x - 1) * ((alpha + T) / (alpha + t_x)) ** (r + x)
    return head * body / tail


def test_expected_purchases_match_the_closed_form() -> None:
    rng = np.random.default_rng(5)
    x, t_x, T = random_customers(rng, 50)
    ours = expected_purchases(BgNbdParams(*CDNOW), 39.0, x, t_x, T)
    closed = [closed_form_expected_purchases(CDNOW, 39.0, *row) for row in zip(x, t_x, T, strict=True)]
    np.testing.assert_allclose(ours, closed, rtol=1e-8, atol=1e-12)


def test_probability_alive_is_one_without_repeat_purchases_and_falls_with_silence() -> None:
    alive = probability_alive(BgNbdParams(*CDNOW), [0.0, 5.0, 5.0], [0.0, 50.0, 10.0], [60.0, 60.0, 60.0])
    assert alive[0] == 1.0 and 0 < alive[2] < alive[1] < 1


def test_beta_quadrature_integrates_beta_moments() -> None:
    nodes, weights = beta_quadrature(0.79, 2.43 + 7, 16)
    assert weights.sum() == pytest.approx(1.0)
    a, b = 0.79, 9.43
    assert weights @ nodes == pytest.approx(a / (a + b), rel=1e-12)
    assert weights @ nodes**2 == pytest.approx(a * (a + 1) / ((a + b) * (a + b + 1)), rel=1e-12)


def test_discount_lowers_value_and_horizon_raises_it() -> None:
    summary = summary_from_arrays([1], [4.0], [200.0], [300.0], [40.0])
    bg, gg = BgNbdParams(0.24, 30.87, 0.79, 2.43), GammaGammaParams(*SPEND)
    base = discounted_clv(bg, gg, summary)[0]
    assert discounted_clv(bg, gg, summary, annual_discount=0.0)[0] > base
    assert discounted_clv(bg, gg, summary, horizon_days=730)[0] > base
    undiscounted = (
        expected_purchases(bg, 365.0, [4.0], [200.0], [300.0])[0] * expected_order_value(gg, [4.0], [40.0])[0]
    )
    assert discounted_clv(bg, gg, summary, annual_discount=0.0)[0] == pytest.approx(undiscounted, rel=1e-9)


TRANSACTIONS = [
    ("A", "2024-01-01", 10.0),
    ("A", "2024-01-01", 5.0),
    ("A", "2024-01-03", 20.0),
    ("A", "2024-01-10", 30.0),
    ("B", "2024-01-05", 7.0),
    ("C", "2024-01-02", 4.0),
    ("C", "2024-01-20", 100.0),
]


@pytest.mark.parametrize(
    ("unit", "expected"),
    [
        # days: A buys on Jan 1 (15), Jan 3, Jan 10 -> 2 repeats over 9 days, age 14, mean repeat 25; C's Jan 20 is late
        ("day", {"A": (2, 9, 14, 25.0), "B": (0, 0, 10, 0.0), "C": (0, 0, 13, 0.0)}),
        # Monday weeks: Jan 1-7, Jan 8-14, Jan 15-21 (end); C's Jan 20 shares the end week, so it counts
        ("week", {"A": (1, 1, 2, 30.0), "B": (0, 0, 2, 0.0), "C": (1, 2, 2, 100.0)}),
    ],
)
def test_summary_from_transactions_by_hand(unit: str, expected: dict[str, tuple[float, ...]]) -> None:
    ids, dates, amounts = zip(*TRANSACTIONS, strict=True)
    summary = summarise_transactions(ids, dates, amounts, "2024-01-15", unit)  # type: ignore[arg-type]
    got = {
        str(c): (f, r, t, m)
        for c, f, r, t, m in zip(
            summary.customer_id, summary.frequency, summary.recency, summary.T, summary.monetary_value, strict=True
        )
    }
    assert got == expected


def test_summary_rejects_unknown_time_unit() -> None:
    with pytest.raises(ValueError, match="time unit"):
        summarise_transactions(["a"], ["2024-01-01"], [1.0], "2024-01-02", "month")  # type: ignore[arg-type]


def test_fit_clv_on_simulated_customers() -> None:
    rng = np.random.default_rng(7)
    x, t_x, T = simulate_bgnbd(rng, 3000, CDNOW)
    m = np.where(x > 0, rng.gamma(6.0, 5.0, len(x)), 0.0)
    fit = fit_clv(summary_from_arrays(np.arange(len(x)), x, t_x, T, m))
    assert fit.customers == 3000 and fit.seconds > 0
    assert np.isfinite([fit.bgnbd.log_likelihood, fit.gamma_gamma.log_likelihood]).all()
