"""``scrm clv``: fit the predictive CLV model (BG/NBD + Gamma-Gamma) on a CSV file and print the parameters as JSON."""

import csv
import json
import sys
from pathlib import Path
from typing import Annotated

import numpy as np
import typer

from scrm_profile.domain.clv import fit_clv
from scrm_profile.domain.clv_summary import (
    TIME_UNIT_DAYS,
    CustomerSummary,
    SummaryError,
    summarise_transactions,
    summary_from_arrays,
)

clv_app = typer.Typer(help="Predictive customer lifetime value.", no_args_is_help=True)


@clv_app.callback()
def clv() -> None:
    """Predictive customer lifetime value (BG/NBD + Gamma-Gamma)."""


SUMMARY_COLUMNS = ("customer_id", "frequency", "recency", "T", "monetary_value")
TRANSACTION_COLUMNS = ("customer_id", "date", "amount")


class InputError(Exception):
    """Bad command-line input; the message says which option, column or line."""


def read_columns(path: Path, wanted: tuple[str, ...]) -> dict[str, list[str]]:
    """Read the wanted columns of a CSV file with a header line, as strings."""
    try:
        with path.open(newline="", encoding="utf-8") as handle:
            reader = csv.reader(handle)
            header = [name.strip() for name in next(reader, [])]
            missing = [name for name in wanted if name not in header]
            if missing:
                raise InputError(f"{path}: missing column(s) {', '.join(missing)} (header has {', '.join(header)})")
            rows = list(reader)
    except OSError as exc:
        raise InputError(f"{path}: {exc.strerror}") from exc
    width = len(header)
    short = next((i for i, row in enumerate(rows) if len(row) != width), None)
    if short is not None:
        raise InputError(f"{path}: line {short + 2} has {len(rows[short])} fields, the header has {width}")
    if not rows:
        raise InputError(f"{path}: no data lines")
    columns = list(zip(*rows, strict=True))
    return {name: list(columns[header.index(name)]) for name in wanted}


def parse_numbers(path: Path, column: str, values: list[str]) -> np.ndarray:
    """Parse a column as floats; on failure name the first bad line."""
    try:
        return np.array(values, dtype=np.float64)
    except ValueError:
        for i, value in enumerate(values):
            try:
                float(value)
            except ValueError:
                raise InputError(f"{path}: line {i + 2}, column {column}: {value!r} is not a number") from None
        raise


def parse_dates(path: Path, column: str, values: list[str]) -> np.ndarray:
    """Parse a column of ISO dates (a time part is ignored); on failure name the first bad line."""
    try:
        return np.array(values, dtype="datetime64").astype("datetime64[D]")
    except ValueError:
        for i, value in enumerate(values):
            try:
                np.datetime64(value)
            except ValueError:
                raise InputError(f"{path}: line {i + 2}, column {column}: {value!r} is not a YYYY-MM-DD date") from None
        raise


def load_summary(path: Path) -> CustomerSummary:
    """Read a customer summary CSV (customer_id, frequency, recency, T, monetary_value)."""
    cols = read_columns(path, SUMMARY_COLUMNS)
    numbers = [parse_numbers(path, name, cols[name]) for name in SUMMARY_COLUMNS[1:]]
    try:
        return summary_from_arrays(np.array(cols["customer_id"]), *numbers)
    except SummaryError as exc:
        raise _located(path, exc) from exc


def load_transactions(path: Path, observation_end: str, time_unit: str) -> CustomerSummary:
    """Read a transactions CSV (customer_id, date, amount) and summarise it per customer."""
    if time_unit not in TIME_UNIT_DAYS:
        raise InputError(f"--time-unit: must be day or week, not {time_unit!r}")
    try:
        end = np.datetime64(observation_end, "D")
    except ValueError as exc:
        raise InputError(f"--observation-end: {observation_end!r} is not a YYYY-MM-DD date") from exc
    cols = read_columns(path, TRANSACTION_COLUMNS)
    dates = parse_dates(path, "date", cols["date"])
    amounts = parse_numbers(path, "amount", cols["amount"])
    try:
        return summarise_transactions(np.array(cols["customer_id"]), dates, amounts, end, time_unit)  # type: ignore[arg-type]
    except SummaryError as exc:
        raise _located(path, exc) from exc


def _located(path: Path, exc: SummaryError) -> InputError:
    line = "" if exc.row is None else f"line {exc.row + 2}, "
    return InputError(f"{path}: {line}column {exc.column}: {exc.problem}")


@clv_app.command("fit")
def fit(
    summary: Annotated[Path | None, typer.Option(help="CSV: customer_id,frequency,recency,T,monetary_value")] = None,
    transactions: Annotated[Path | None, typer.Option(help="CSV: customer_id,date,amount")] = None,
    observation_end: Annotated[str | None, typer.Option(help="YYYY-MM-DD, with --transactions")] = None,
    time_unit: Annotated[str, typer.Option(help="day or week, with --transactions")] = "day",
) -> None:
    """Fit BG/NBD and Gamma-Gamma; print their parameters, the customer count and the seconds as JSON."""
    try:
        if (summary is None) == (transactions is None):
            raise InputError("give exactly one of --summary or --transactions")
        if summary is not None:
            data = load_summary(summary)
        elif observation_end is None:
            raise InputError("--observation-end is required with --transactions")
        else:
            data = load_transactions(transactions, observation_end, time_unit)  # type: ignore[arg-type]
        result = fit_clv(data)
    except (InputError, ValueError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        raise typer.Exit(2) from exc
    bg, gg = result.bgnbd, result.gamma_gamma
    out = {
        "bgnbd": {"r": bg.r, "alpha": bg.alpha, "a": bg.a, "b": bg.b, "log_likelihood": bg.log_likelihood},
        "gamma_gamma": {"p": gg.p, "q": gg.q, "v": gg.v},
        "customers": result.customers,
        "seconds": round(result.seconds, 4),
    }
    print(json.dumps(out))
