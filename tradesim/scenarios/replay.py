"""Replay of recorded ticks from CSV: every row becomes exactly one Tick with the same values.

Values are kept as written (Decimal from the CSV text, so "101.50" stays "101.50" on the wire). Rows must
be in time order, which lets a large file be streamed and merged with generated symbols without sorting.
Parquet is not supported: pyarrow is a heavy dependency for a small feature.
"""

from __future__ import annotations

import csv
import re
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import datetime
from decimal import Decimal
from pathlib import Path

from pydantic import ValidationError

from tradesim.domain.events import Tick, epoch_ms
from tradesim.domain.money import plain_decimal
from tradesim.scenarios.errors import Problem, ScenarioError, display_path
from tradesim.text import validation_message

COLUMNS = ("timestamp", "symbol", "bid", "ask", "last", "size")
MAX_PROBLEMS = 20  # enough to see a pattern without flooding the terminal on a broken file
#: an integer field: at most 19 digits (a size or an epoch-ms time never needs more, and Python refuses to read
#: integers past 4,300 digits)
_INT = re.compile(r"^[0-9]{1,19}$")


@dataclass(frozen=True)
class CsvSummary:
    symbols: tuple[str, ...]
    rows: int
    first_ms: int | None
    last_ms: int | None


class _RowError(Exception):
    def __init__(self, column: str, message: str) -> None:
        self.column = column
        self.message = message


def parse_timestamp(text: str) -> int:
    """ISO-8601 with a UTC offset, or integer epoch milliseconds → epoch ms UTC (sub-ms digits truncated)."""
    text = text.strip()
    if _INT.match(text):
        return int(text)
    try:
        moment = datetime.fromisoformat(text)
    except ValueError:
        raise _RowError("timestamp", f"unparsable timestamp {text[:40]!r} (ISO-8601 with offset, or epoch ms)"
                        ) from None
    if moment.tzinfo is None:
        raise _RowError("timestamp", f"timestamp {text!r} has no UTC offset (add Z or +00:00)")
    return epoch_ms(moment)


def _decimal(row: dict[str, str], column: str) -> Decimal:
    text = row[column].strip()
    value = plain_decimal(text)  # not Decimal(): it reads `1_04.18` and other scripts' digits
    if value is None:
        raise _RowError(column, f"not a decimal number: {text!r}")
    return value


def _size(row: dict[str, str]) -> int:
    text = row["size"].strip()
    if not _INT.match(text):
        raise _RowError("size", f"not a non-negative integer of at most 19 digits: {text[:40]!r}")
    return int(text)


def _tick(row: dict[str, str], seq: int, scenario_id: str) -> Tick:
    ts = parse_timestamp(row["timestamp"])
    bid, ask, last = _decimal(row, "bid"), _decimal(row, "ask"), _decimal(row, "last")
    size = _size(row)
    try:
        return Tick(symbol=row["symbol"].strip(), bid=bid, ask=ask, last=last, size=size,
                    event_time_ms=ts, seq=seq, scenario_id=scenario_id)
    except ValidationError as exc:
        first = exc.errors()[0]
        column = str(first["loc"][0]) if first["loc"] else "bid"  # model-level check is the bid/ask order
        raise _RowError(column, validation_message(first)) from None


def _rows(path: Path) -> Iterator[tuple[int, dict[str, str]]]:
    """(line number, row) pairs; raises ScenarioError if the file or a required column is missing."""
    shown = display_path(path)
    try:
        fh = open(path, newline="", encoding="utf-8-sig")  # a byte-order mark (spreadsheets write one) is no header
    except OSError as exc:
        raise ScenarioError.one(shown, "csv", f"cannot read: {exc.strerror or exc}") from None
    with fh:
        reader = csv.DictReader(fh)
        try:
            header = [h.strip() for h in (reader.fieldnames or [])]
            reader.fieldnames = header
            missing = [c for c in COLUMNS if c not in header]
            if missing:
                raise ScenarioError([
                    Problem(shown, 1, c, f"missing column (header has: {', '.join(header) or 'nothing'})")
                    for c in missing
                ])
            twice = [c for c in COLUMNS if header.count(c) > 1]  # which copy holds the value would be a guess
            if twice:
                raise ScenarioError([Problem(shown, 1, c, f"column named {header.count(c)} times in the header")
                                     for c in twice])
            for row in reader:
                if None in row or any(v is None for v in row.values()):
                    raise ScenarioError.one(shown, "row", "wrong number of fields", reader.line_num)
                yield reader.line_num, row
        except UnicodeDecodeError as exc:  # (decoded a block at a time: no line to name)
            raise ScenarioError.one(shown, "csv", f"not UTF-8 text (byte {exc.start} of a block)") from None
        except csv.Error as exc:  # e.g. a field over the csv module's size limit
            # (raised before the reader counts the line it was reading)
            raise ScenarioError.one(shown, "csv", f"not readable as CSV: {exc}", reader.line_num + 1) from None


def scan_csv(path: Path) -> CsvSummary:
    """Check every row without keeping them; raises ScenarioError with up to MAX_PROBLEMS problems."""
    shown = display_path(path)
    problems: list[Problem] = []
    counts: dict[str, int] = {}
    first_ms: int | None = None
    prev: tuple[int, int] | None = None  # (event_time_ms, line) of the last good row
    rows = 0
    for line, row in _rows(path):
        rows += 1
        try:
            tick = _tick(row, counts.get(row["symbol"].strip(), 0) + 1, "scan")
        except _RowError as exc:
            problems.append(Problem(shown, line, exc.column, exc.message))
            if len(problems) >= MAX_PROBLEMS:
                break
            continue
        if prev is not None and tick.event_time_ms < prev[0]:
            problems.append(Problem(shown, line, "timestamp",
                                    f"earlier than the row on line {prev[1]}; sort the file by timestamp"))
        prev = (tick.event_time_ms, line)
        first_ms = tick.event_time_ms if first_ms is None else first_ms
        counts[tick.symbol] = counts.get(tick.symbol, 0) + 1
    if problems:
        raise ScenarioError(problems)
    return CsvSummary(tuple(counts), rows, first_ms, prev[0] if prev else None)


def read_csv(path: Path, scenario_id: str, symbols: set[str] | None = None) -> Iterator[Tick]:
    """Ticks in file order with per-symbol seq 1..n; `symbols` filters without changing anyone's seq."""
    shown = display_path(path)
    counts: dict[str, int] = {}
    for line, row in _rows(path):
        symbol = row["symbol"].strip()
        if symbols is not None and symbol not in symbols:
            continue
        seq = counts.get(symbol, 0) + 1
        try:
            tick = _tick(row, seq, scenario_id)
        except _RowError as exc:
            raise ScenarioError.one(shown, exc.column, exc.message, line) from None
        counts[symbol] = seq
        yield tick
