"""The ``scrm clv fit`` command on small generated CSV files."""

import csv
import json
from pathlib import Path

import numpy as np
import pytest
from typer.testing import CliRunner

from scrm_profile.entrypoints.cli import clv_app

runner = CliRunner()


def write_csv(path: Path, header: list[str], rows: list[list[object]]) -> Path:
    with path.open("w", newline="") as handle:
        writer = csv.writer(handle)
        writer.writerow(header)
        writer.writerows(rows)
    return path


@pytest.fixture
def summary_csv(tmp_path: Path) -> Path:
    rng = np.random.default_rng(11)
    n = 2000
    T = rng.uniform(30, 80, n).round(2)
    x = rng.poisson(rng.gamma(0.5, 4.0, n) * 0.1 * T / 10).astype(float)
    t_x = np.where(x > 0, (T * rng.uniform(0.2, 1, n)).round(2), 0.0)
    m = np.where(x > 0, rng.gamma(5, 8, n).round(2), 0.0)
    rows = [[f"c{i}", int(x[i]), t_x[i], T[i], m[i]] for i in range(n)]
    return write_csv(tmp_path / "summary.csv", ["customer_id", "frequency", "recency", "T", "monetary_value"], rows)


@pytest.fixture
def transactions_csv(tmp_path: Path) -> Path:
    rng = np.random.default_rng(12)
    days = np.datetime64("2024-01-01") + rng.integers(0, 365, 6000)
    customers = rng.integers(0, 800, 6000)
    amounts = rng.gamma(4, 10, 6000).round(2)
    rows = [[f"u{c}", str(d), a] for c, d, a in zip(customers, days, amounts, strict=True)]
    return write_csv(tmp_path / "tx.csv", ["customer_id", "date", "amount"], rows)


def test_fit_from_summary_prints_the_documented_json(summary_csv: Path) -> None:
    result = runner.invoke(clv_app, ["fit", "--summary", str(summary_csv)])
    assert result.exit_code == 0, result.output
    out = json.loads(result.stdout)
    assert set(out) == {"bgnbd", "gamma_gamma", "customers", "seconds"}
    assert set(out["bgnbd"]) == {"r", "alpha", "a", "b", "log_likelihood"}
    assert set(out["gamma_gamma"]) == {"p", "q", "v"}
    assert out["customers"] == 2000
    assert all(value > 0 for value in (*out["gamma_gamma"].values(), out["bgnbd"]["r"], out["bgnbd"]["alpha"]))
    assert out["bgnbd"]["log_likelihood"] < 0


@pytest.mark.parametrize("unit", ["day", "week"])
def test_fit_from_transactions(transactions_csv: Path, unit: str) -> None:
    args = ["fit", "--transactions", str(transactions_csv), "--observation-end", "2024-12-31", "--time-unit", unit]
    result = runner.invoke(clv_app, args)
    assert result.exit_code == 0, result.output
    assert json.loads(result.stdout)["customers"] == 800


def test_missing_column_is_named(tmp_path: Path) -> None:
    path = write_csv(tmp_path / "s.csv", ["customer_id", "frequency", "recency", "monetary_value"], [["a", 1, 2, 3]])
    result = runner.invoke(clv_app, ["fit", "--summary", str(path)])
    assert result.exit_code == 2
    assert "missing column(s) T" in result.stderr


def test_unparseable_number_names_the_line(tmp_path: Path) -> None:
    rows = [["a", 1, 2, 5, 10], ["b", 0, 0, 5, 0], ["c", "two", 1, 5, 3]]
    path = write_csv(tmp_path / "s.csv", ["customer_id", "frequency", "recency", "T", "monetary_value"], rows)
    result = runner.invoke(clv_app, ["fit", "--summary", str(path)])
    assert result.exit_code == 2
    assert "line 4, column frequency: 'two' is not a number" in result.stderr


def test_inconsistent_summary_names_the_line(tmp_path: Path) -> None:
    rows = [["a", 1, 2, 5, 10], ["b", 1, 9, 5, 4]]
    path = write_csv(tmp_path / "s.csv", ["customer_id", "frequency", "recency", "T", "monetary_value"], rows)
    result = runner.invoke(clv_app, ["fit", "--summary", str(path)])
    assert result.exit_code == 2
    assert "line 3, column recency: must not exceed T" in result.stderr


def test_bad_date_names_the_line(tmp_path: Path) -> None:
    path = write_csv(tmp_path / "t.csv", ["customer_id", "date", "amount"], [["a", "2024-01-01", 1], ["a", "soon", 2]])
    result = runner.invoke(clv_app, ["fit", "--transactions", str(path), "--observation-end", "2024-02-01"])
    assert result.exit_code == 2
    assert "line 3, column date" in result.stderr


def test_unknown_time_unit(transactions_csv: Path) -> None:
    args = ["fit", "--transactions", str(transactions_csv), "--observation-end", "2024-12-31", "--time-unit", "month"]
    result = runner.invoke(clv_app, args)
    assert result.exit_code == 2
    assert "--time-unit: must be day or week, not 'month'" in result.stderr


def test_needs_exactly_one_input(summary_csv: Path, transactions_csv: Path) -> None:
    both = ["fit", "--summary", str(summary_csv), "--transactions", str(transactions_csv)]
    assert runner.invoke(clv_app, both).exit_code == 2
    no_end = runner.invoke(clv_app, ["fit", "--transactions", str(transactions_csv)])
    assert no_end.exit_code == 2 and "--observation-end" in no_end.stderr


def test_registered_in_the_scrm_command() -> None:
    from scrm_cli.main import app

    result = runner.invoke(app, ["clv", "fit", "--help"])
    assert result.exit_code == 0 and "--transactions" in result.stdout
