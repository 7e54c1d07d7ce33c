"""Benchmark: fit BG/NBD + Gamma-Gamma on 1,000,000 simulated customers, ours against the lifetimes library.

Run from the workspace root:  uv run --group bench python bench/clv_fit.py [--customers N] [--no-lifetimes]
Writes bench/results/clv_fit.json.
"""

import argparse
import json
import os
import platform
import statistics
import time
from pathlib import Path

import numpy as np

from scrm_profile.domain.clv import bgnbd_log_likelihood, fit_clv, gamma_gamma_log_likelihood
from scrm_profile.domain.clv_predict import discounted_clv
from scrm_profile.domain.clv_summary import CustomerSummary

TRUE_BGNBD = {"r": 0.24, "alpha": 4.41, "a": 0.79, "b": 2.43}  # CDNOW estimates, weeks
TRUE_SPEND = {"p": 6.25, "q": 3.74, "v": 15.44}
RESULTS = Path(__file__).resolve().parent / "results" / "clv_fit.json"


def simulate(n: int, seed: int = 2005) -> CustomerSummary:
    """CDNOW-like cohort: first purchases over 12 weeks, observed to week 78, purchase days recorded, times in weeks."""
    rng = np.random.default_rng(seed)
    r, alpha, a, b = TRUE_BGNBD.values()
    first_day = rng.integers(0, 84, n)
    t_days_total = 546 - first_day
    age = t_days_total / 7
    rate, dropout = rng.gamma(r, 1 / alpha, n), rng.beta(a, b, n)
    dies_after = rng.geometric(dropout)  # the repeat purchase after which the customer leaves
    arrivals = rng.poisson(rate * age)  # purchases an immortal customer would make before T
    x = np.minimum(dies_after, arrivals)
    # the x-th of `arrivals` uniform purchase times on [0, T] is Beta(x, arrivals - x + 1) * T
    last = rng.beta(np.maximum(x, 1), arrivals - x + 1)
    recency = np.where(x > 0, np.floor(last * t_days_total), 0) / 7
    p, q, v = TRUE_SPEND.values()
    nu = rng.gamma(q, 1 / v, n)
    spend = rng.gamma(p * np.maximum(x, 1), 1 / (np.maximum(x, 1) * nu))  # mean of x Gamma(p, nu) orders
    monetary = np.where(x > 0, np.round(spend, 2), 0.0)
    return CustomerSummary(np.arange(n), x.astype(np.float64), recency, age, monetary)


def time_ours(data: CustomerSummary, repeats: int) -> dict[str, object]:
    runs, cpu, fit = [], [], None
    for _ in range(repeats):
        started, started_cpu = time.perf_counter(), time.process_time()
        fit = fit_clv(data)
        runs.append(time.perf_counter() - started)
        cpu.append(time.process_time() - started_cpu)
    assert fit is not None
    started = time.perf_counter()
    value = discounted_clv(fit.bgnbd, fit.gamma_gamma, data, unit_days=7.0)
    predict = time.perf_counter() - started
    bg, gg = fit.bgnbd, fit.gamma_gamma
    return {
        "seconds_median": statistics.median(runs),
        "seconds_runs": runs,
        "cpu_seconds_median": statistics.median(cpu),
        "bgnbd": {"r": bg.r, "alpha": bg.alpha, "a": bg.a, "b": bg.b, "log_likelihood": bg.log_likelihood},
        "gamma_gamma": {"p": gg.p, "q": gg.q, "v": gg.v, "log_likelihood": gg.log_likelihood},
        "clv_365d_seconds": predict,
        "clv_365d_mean": float(value.mean()),
    }


def time_lifetimes(data: CustomerSummary, repeats: int) -> dict[str, object]:
    import pandas as pd
    from lifetimes import BetaGeoFitter, GammaGammaFitter

    x, t_x, age, m = (pd.Series(c) for c in (data.frequency, data.recency, data.T, data.monetary_value))
    repeat = x > 0
    runs = []
    for _ in range(repeats):
        started = time.perf_counter()
        bg = BetaGeoFitter().fit(x, t_x, age)
        gg = GammaGammaFitter().fit(x[repeat], m[repeat])
        runs.append(time.perf_counter() - started)
    bp, gp = bg.params_, gg.params_
    theta = [bp["r"], bp["alpha"], bp["a"], bp["b"]]
    repeaters = data.frequency > 0
    return {
        "seconds_median": statistics.median(runs),
        "seconds_runs": runs,
        "bgnbd": {k: float(bp[k]) for k in ("r", "alpha", "a", "b")}
        | {"log_likelihood": float(bgnbd_log_likelihood(theta, data.frequency, data.recency, data.T).sum())},
        "gamma_gamma": {k: float(gp[k]) for k in ("p", "q", "v")}
        | {
            "log_likelihood": float(
                gamma_gamma_log_likelihood(
                    [gp["p"], gp["q"], gp["v"]], data.frequency[repeaters], data.monetary_value[repeaters]
                ).sum()
            )
        },
    }


def print_table(results: dict[str, object]) -> None:
    ours, theirs = results["ours"], results.get("lifetimes")
    rows = [("seconds (median)", "seconds_median", None)]
    rows += [(f"bgnbd {k}", "bgnbd", k) for k in ("r", "alpha", "a", "b", "log_likelihood")]
    rows += [(f"gamma_gamma {k}", "gamma_gamma", k) for k in ("p", "q", "v", "log_likelihood")]
    truth = TRUE_BGNBD | TRUE_SPEND
    print(f"{results['customers']:,} customers ({results['repeat_buyers']:,} repeat buyers)")
    print(f"{'':22}{'ours':>18}{'lifetimes':>18}{'true':>10}")
    for label, key, sub in rows:
        ours_v = ours[key] if sub is None else ours[key][sub]  # type: ignore[index]
        their_v = "" if theirs is None else (theirs[key] if sub is None else theirs[key][sub])  # type: ignore[index]
        their_s = f"{their_v:>18.6g}" if their_v != "" else f"{'-':>18}"
        true_s = f"{truth[sub]:>10}" if sub in truth else f"{'':>10}"
        print(f"{label:22}{ours_v:>18.6g}{their_s}{true_s}")
    if theirs is not None:
        print(f"lifetimes / ours time ratio: {results['ratio_lifetimes_over_ours']:.1f}x")
    print(f"ours: CPU seconds (median) {ours['cpu_seconds_median']:.3f}; load average at start {results['load']}")  # type: ignore[index]
    print(f"ours: 365-day discounted CLV for all customers in {ours['clv_365d_seconds']:.2f}s")  # type: ignore[index]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--customers", type=int, default=1_000_000)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--lifetimes-repeats", type=int, default=1)
    parser.add_argument("--no-lifetimes", action="store_true")
    args = parser.parse_args()
    data = simulate(args.customers)
    results: dict[str, object] = {
        "customers": len(data),
        "repeat_buyers": int((data.frequency > 0).sum()),
        "machine": {"cpus": os.cpu_count(), "python": platform.python_version()},
        "load": [round(v, 2) for v in os.getloadavg()],
        "true": {"bgnbd": TRUE_BGNBD, "gamma_gamma": TRUE_SPEND},
        "ours": time_ours(data, args.repeats),
    }
    if not args.no_lifetimes:
        results["lifetimes"] = time_lifetimes(data, args.lifetimes_repeats)
        ours_s = results["ours"]["seconds_median"]  # type: ignore[index]
        results["ratio_lifetimes_over_ours"] = results["lifetimes"]["seconds_median"] / ours_s  # type: ignore[index]
    RESULTS.parent.mkdir(parents=True, exist_ok=True)
    RESULTS.write_text(json.dumps(results, indent=2))
    print_table(results)
    print(f"wrote {RESULTS}")


if __name__ == "__main__":
    main()
