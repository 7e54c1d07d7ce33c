"""``scrm import orders FILE``: historical orders from CSV or NDJSON into ``events.v1``, with a progress bar.

Exit codes: 0 every line accepted; 3 some lines rejected (see the rejects file); 2 the file cannot be imported
(missing, wrong format, required columns missing, unknown tenant); 1 Kafka did not acknowledge (nothing after the
last acknowledged chunk was accepted: re-run the file, it is safe).
"""

import asyncio
import json
import time
from pathlib import Path
from typing import Annotated

import typer
from aiokafka.errors import KafkaError
from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeRemainingColumn
from rich.table import Table

from scrm_ingest.service.bulk_import import (
    ImportFileError,
    ImportReport,
    OrderImporter,
    RejectsFile,
    detect_format,
    read_rows,
)
from scrm_ingest.settings import Settings
from scrm_kit.db import build_engine, build_sessionmaker
from scrm_kit.kafka import build_producer
from scrm_kit.tenancy import TenantDirectory

import_app = typer.Typer(help="Bulk imports into the platform.", no_args_is_help=True)
console = Console(stderr=True)


def _count_lines(path: Path) -> int:
    count = 0
    with path.open("rb") as raw:
        while chunk := raw.read(1 << 20):
            count += chunk.count(b"\n")
    return count


async def _tenant_id(settings: Settings, tenant_id: str | None, write_key: str | None) -> str:
    from sqlalchemy import select

    from scrm_kit.tenancy import tenants

    engine = build_engine(settings.db)
    try:
        if write_key:
            tenant = await TenantDirectory(build_sessionmaker(engine)).by_write_key(write_key)
            if tenant is None:
                raise ImportFileError("write-key: unknown write key")
            return tenant.tenant_id
        async with engine.connect() as conn:
            found = (await conn.execute(select(tenants.c.tenant_id).where(tenants.c.tenant_id == tenant_id))).first()
        if found is None:
            raise ImportFileError(f"tenant-id: no tenant {tenant_id!r}")
        return str(tenant_id)
    finally:
        await engine.dispose()


async def _import(path: Path, file_format: str | None, tenant_id: str, rejects: RejectsFile) -> ImportReport:
    settings = Settings()
    kind = detect_format(path, file_format)
    total = _count_lines(path)
    producer = build_producer(settings.kafka, "-import")
    await producer.start()
    report = ImportReport()
    started = time.perf_counter()
    columns = [TextColumn("importing"), BarColumn(), MofNCompleteColumn(), TimeRemainingColumn()]
    try:
        with path.open(newline="", encoding="utf-8-sig") as text, Progress(*columns, console=console) as bar:
            task = bar.add_task("lines", total=total)
            importer = OrderImporter(producer, tenant_id, on_reject=rejects)
            await importer.run(read_rows(text, kind), report, lambda done: bar.update(task, completed=done))
    finally:
        report.seconds = time.perf_counter() - started
        await producer.stop()
    return report


def _print_report(report: ImportReport, rejects: Path) -> None:
    table = Table(title="import report")
    for column in ("lines", "accepted", "rejected", "seconds", "orders/s"):
        table.add_column(column, justify="right")
    table.add_row(
        str(report.lines), str(report.accepted), str(report.rejected), f"{report.seconds:.1f}", f"{report.rate:,.0f}"
    )
    console.print(table)
    for r in report.examples[:5]:
        console.print(f"  line {r.line}: {r.column}: {r.reason}")
    if report.rejected:
        console.print(f"[yellow]{report.rejected} line(s) rejected; every one is in {rejects}[/yellow]")


@import_app.command("orders")
def import_orders(
    file: Annotated[Path, typer.Argument(help="CSV (with a header) or NDJSON file of orders", exists=False)],
    tenant_id: Annotated[str | None, typer.Option(help="Tenant to import into")] = None,
    write_key: Annotated[str | None, typer.Option(help="Or: the tenant's write key")] = None,
    file_format: Annotated[str | None, typer.Option("--format", help="csv or ndjson (default: by extension)")] = None,
    rejects: Annotated[Path | None, typer.Option(help="Where rejected lines go (default FILE.rejects.csv)")] = None,
    as_json: Annotated[bool, typer.Option("--json", help="Print the report as JSON on stdout")] = False,
) -> None:
    """Import historical orders (columns customer_id, order_id, occurred_at, total, currency, + identities)."""
    if not file.is_file():
        console.print(f"[red]file: {file} does not exist[/red]")
        raise typer.Exit(2)
    if not tenant_id and not write_key:
        console.print("[red]tenant-id: give --tenant-id or --write-key[/red]")
        raise typer.Exit(2)
    rejects_path = rejects or file.with_name(file.name + ".rejects.csv")
    rejects_path.unlink(missing_ok=True)
    sink = RejectsFile(rejects_path)
    try:
        tenant = asyncio.run(_tenant_id(Settings(), tenant_id, write_key))
        report = asyncio.run(_import(file, file_format, tenant, sink))
    except ImportFileError as exc:
        console.print(f"[red]{exc}[/red]")
        raise typer.Exit(2) from exc
    except (TimeoutError, KafkaError) as exc:
        console.print(f"[red]Kafka did not acknowledge the import ({type(exc).__name__}: {exc}); re-run the file[/red]")
        raise typer.Exit(1) from exc
    finally:
        sink.close()
    _print_report(report, rejects_path)
    if as_json:
        summary = {"lines": report.lines, "accepted": report.accepted, "rejected": report.rejected}
        print(json.dumps({**summary, "seconds": round(report.seconds, 3), "rejects_file": str(rejects_path)}))
    raise typer.Exit(3 if report.rejected else 0)
