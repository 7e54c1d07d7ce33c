"""Stream a file of historical orders through ingest's validation into ``events.v1``.

Lines are read, validated and sent in chunks; a chunk counts as accepted only once Kafka acknowledged every record
of it (``acks=all``). Bad lines are reported with their line number, column and reason and never stop the rest.
If Kafka fails, the import stops and says how far it got: re-running the file is safe (message ids are derived
from order ids, and consumers deduplicate them).
"""

import csv
import io
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, Literal

import orjson
from aiokafka import AIOKafkaProducer

from scrm_contracts import Topic, TrackedEvent, record_key
from scrm_ingest.domain.orders_file import column_of, missing_columns, order_message
from scrm_ingest.domain.segment import MessageError, to_event
from scrm_kit.kafka import BatchedSender

FileFormat = Literal["csv", "ndjson"]
CHUNK = 5_000


class ImportFileError(Exception):
    """The file as a whole cannot be imported (unreadable, wrong format, required columns missing)."""


Raw = str | list[str]  # the line as read: text (NDJSON) or its CSV fields


@dataclass(frozen=True, slots=True)
class Rejected:
    line: int
    column: str
    reason: str
    raw: Raw


@dataclass
class ImportReport:
    lines: int = 0
    accepted: int = 0
    rejected: int = 0
    examples: list[Rejected] = field(default_factory=list)
    seconds: float = 0.0

    def reject(self, rejected: Rejected) -> None:
        self.rejected += 1
        if len(self.examples) < 20:
            self.examples.append(rejected)

    @property
    def rate(self) -> float:
        return self.accepted / self.seconds if self.seconds > 0 else 0.0


def detect_format(path: Path, given: str | None) -> FileFormat:
    name = (given or path.suffix.lstrip(".")).lower()
    if name in ("csv", "txt"):
        return "csv"
    if name in ("ndjson", "jsonl", "json"):
        return "ndjson"
    raise ImportFileError(f"cannot tell the format of {path.name}: use --format csv or --format ndjson")


def read_rows(text: io.TextIOBase, file_format: FileFormat) -> Iterator[tuple[int, Raw, dict[str, Any] | str]]:
    """(line number, raw line, row or the reason it could not be parsed) for every data line."""
    if file_format == "csv":
        yield from _csv_rows(text)
    else:
        yield from _ndjson_rows(text)


def _csv_rows(text: io.TextIOBase) -> Iterator[tuple[int, Raw, dict[str, Any] | str]]:
    reader = csv.reader(text)
    header = next(reader, None)
    if header is None:
        raise ImportFileError("the file is empty")
    header = [h.strip().lstrip("\ufeff") for h in header]
    if missing := missing_columns(header):
        raise ImportFileError(f"missing column(s) {', '.join(missing)} (header: {', '.join(header)})")
    for values in reader:
        line = reader.line_num
        if not any(v.strip() for v in values):
            continue
        if len(values) != len(header):
            yield line, values, f"has {len(values)} fields, the header has {len(header)}"
            continue
        yield line, values, dict(zip(header, values, strict=True))


def _ndjson_rows(text: io.TextIOBase) -> Iterator[tuple[int, Raw, dict[str, Any] | str]]:
    for line, raw in enumerate(text, start=1):
        if not raw.strip():
            continue
        try:
            row = orjson.loads(raw)
        except orjson.JSONDecodeError as exc:
            yield line, raw.rstrip("\n"), f"not valid JSON: {exc}"
            continue
        if not isinstance(row, dict):
            yield line, raw.rstrip("\n"), "each line must be a JSON object"
            continue
        yield line, raw.rstrip("\n"), {k: (v if isinstance(v, str) or v is None else str(v)) for k, v in row.items()}


def validate_row(row: dict[str, Any], tenant_id: str, received_at: datetime) -> TrackedEvent:
    """The event for one row, through the same validation as ``/v1/track``; raises ``MessageError``."""
    try:
        return to_event(order_message(row), tenant_id=tenant_id, kind=None, received_at=received_at)
    except MessageError as exc:
        raise MessageError(column_of(exc.field), exc.message) from exc


class OrderImporter:
    """Validates rows and sends them to ``events.v1`` in acknowledged chunks."""

    def __init__(
        self,
        producer: AIOKafkaProducer,
        tenant_id: str,
        on_reject: Callable[[Rejected], None] = lambda _: None,
        ack_timeout: float = 60.0,
    ) -> None:
        self._producer = producer
        self._on_reject = on_reject
        self._tenant_id = tenant_id
        self._ack_timeout = ack_timeout

    async def run(
        self,
        rows: Iterator[tuple[int, Raw, dict[str, Any] | str]],
        report: ImportReport,
        progress: Callable[[int], None] = lambda _: None,
    ) -> ImportReport:
        received_at = datetime.now(UTC)
        sender = BatchedSender(self._producer, Topic.EVENTS.value)
        unacked = 0
        for line, raw, row in rows:
            report.lines += 1
            if isinstance(row, str):
                self._reject(report, Rejected(line, "line", row, raw))
                continue
            try:
                event = validate_row(row, self._tenant_id, received_at)
            except MessageError as exc:
                self._reject(report, Rejected(line, exc.field, exc.message, raw))
                continue
            await sender.append(record_key(event.tenant_id, event.customer_key), event.to_wire())
            unacked += 1
            if unacked >= CHUNK:
                report.accepted += await sender.flush(self._ack_timeout)
                unacked = 0
                progress(report.lines)
        report.accepted += await sender.flush(self._ack_timeout)
        progress(report.lines)
        return report

    def _reject(self, report: ImportReport, rejected: Rejected) -> None:
        report.reject(rejected)
        self._on_reject(rejected)


class RejectsFile:
    """The rejects file: one CSV line per rejected input line (line number, column, reason, the line as it was).

    Created on the first rejection only, so a clean import leaves no file behind."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self._out: io.TextIOWrapper | None = None
        self._writer: Any = None

    def __call__(self, rejected: Rejected) -> None:
        if self._writer is None:
            self._out = self.path.open("w", newline="", encoding="utf-8")
            self._writer = csv.writer(self._out)
            self._writer.writerow(["line", "column", "reason", "raw"])
        raw = rejected.raw if isinstance(rejected.raw, str) else _csv_line(rejected.raw)
        self._writer.writerow([rejected.line, rejected.column, rejected.reason, raw])

    def close(self) -> None:
        if self._out is not None:
            self._out.close()


def _csv_line(values: list[str]) -> str:
    buffer = io.StringIO()
    csv.writer(buffer, lineterminator="").writerow(values)
    return buffer.getvalue()
