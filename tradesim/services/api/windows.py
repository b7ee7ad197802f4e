"""Time parameters of the read API: `from`/`to` as ISO-8601 or epoch milliseconds, bucket intervals, limits."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Annotated, Any, Literal

from fastapi import Query
from fastapi.exceptions import RequestValidationError

from tradesim.domain.events import ISO_TIME_RE, MAX_EPOCH_MS, MIN_QUERY_EPOCH_MS, epoch_ms

Interval = Literal["1m", "5m", "1h", "1d"]
INTERVAL_S: dict[str, int] = {"1m": 60, "5m": 300, "1h": 3600, "1d": 86_400}
MAX_BUCKETS = 10_000
DEFAULT_SPAN_MS = 24 * 3600 * 1000
DAY_MS = 86_400_000
#: epoch ms (digits), or an ISO-8601 date / date-time; the parser decides the rest (naive times are UTC)
TIME_PATTERN = f"^([0-9]{{1,15}}|{ISO_TIME_RE})$"
_TIME_HELP = ("ISO-8601 (`2025-01-31`, `2025-01-31T09:30:00Z`, `…+01:00`; without an offset: UTC) or epoch "
              "milliseconds (`1738315800000`; `0` for the beginning; other values below 10,000,000,000 are refused, "
              "as seconds or compact dates)")


def time_query(what: str, alias: str | None = None) -> Any:
    return Query(alias=alias, pattern=TIME_PATTERN, max_length=40, description=f"{what}: {_TIME_HELP}",
                 examples=["2025-01-31T09:30:00Z"])


#: `from` is a Python keyword: the parameter is named from_ with this alias
FromParam = Annotated[str | None, time_query("start, inclusive", alias="from")]
ToParam = Annotated[str | None, time_query("end, exclusive")]


def invalid(name: str, message: str, kind: str = "value_error") -> RequestValidationError:
    """A 422 `invalid_request` with the same `errors` body as FastAPI's own validation."""
    return RequestValidationError([{"loc": ("query", name), "msg": message, "type": kind}])


def not_a_time(value: object) -> str:
    return (f"not an ISO-8601 time or epoch milliseconds: {value!r} (in a URL, send the `+` of an offset as "
            "`%2B`)")


def parse_time(name: str, value: str | None) -> int | None:
    """Epoch ms of a `from`/`to` value; raises a 422 naming the parameter."""
    if value is None:
        return None
    if value.isdigit():
        ms = int(value)
        if 0 < ms < MIN_QUERY_EPOCH_MS:
            raise invalid(name, f"{value!r} would be epoch milliseconds in 1970: send epoch milliseconds "
                          "(13 digits today, e.g. 1738315800000, not seconds), 0 for the beginning, or an "
                          "ISO-8601 date such as 2025-01-31")
    else:
        try:
            when = datetime.fromisoformat(value)
        except ValueError:
            raise invalid(name, not_a_time(value)) from None
        if when.tzinfo is None:
            when = when.replace(tzinfo=UTC)
        try:
            ms = epoch_ms(when)
        except OverflowError:
            raise invalid(name, f"out of range: {value!r}") from None
    if not 0 <= ms <= MAX_EPOCH_MS:
        raise invalid(name, f"must be between 1970-01-01 and 9999-12-31 (epoch ms 0..{MAX_EPOCH_MS}), got {value!r}")
    return ms


def time_range(from_: str | None, to: str | None) -> tuple[int | None, int | None]:
    """An optional [from, to) range; 422 if from > to."""
    start, end = parse_time("from", from_), parse_time("to", to)
    if start is not None and end is not None and start > end:
        raise invalid("from", "must not be after `to`")
    return start, end


@dataclass(frozen=True)
class Window:
    """[from_ms, to_ms) cut into buckets aligned to the epoch (UTC midnight for `1d`)."""

    from_ms: int
    to_ms: int
    interval_s: int

    @property
    def interval_ms(self) -> int:
        return self.interval_s * 1000

    def starts(self) -> list[int]:
        """Starts of the buckets that overlap the window."""
        if self.to_ms <= self.from_ms:
            return []
        step = self.interval_ms
        return list(range(self.from_ms - self.from_ms % step, self.to_ms, step))

    def ends(self) -> list[int]:
        """End of each bucket, the last one cut at `to_ms` (so a window ending now ends with now)."""
        return [min(start + self.interval_ms, self.to_ms) for start in self.starts()]


def bucket_count(from_ms: int, to_ms: int, interval_s: int) -> int:
    step = interval_s * 1000
    return 0 if to_ms <= from_ms else (to_ms - 1) // step - from_ms // step + 1


def window(from_: str | None, to: str | None, interval: str, now_ms: int) -> Window:
    """The window of an analytics request: `to` defaults to now, `from` to 24 h before `to`. Raises a 422 if
    from > to or it holds more than MAX_BUCKETS buckets."""
    start, end = time_range(from_, to)
    if end is None:
        end = now_ms
        if start is not None and start > end:
            raise invalid("from", "must not be after `to` (now, when `to` is not given)")
    if start is None:
        start = max(0, end - DEFAULT_SPAN_MS)
    interval_s = INTERVAL_S[interval]
    n = bucket_count(start, end, interval_s)
    if n > MAX_BUCKETS:
        if interval_s == max(INTERVAL_S.values()):  # no longer interval to advise (before: "choose a longer one")
            raise invalid("from", f"{n} buckets of {interval} between `from` and `to`; at most {MAX_BUCKETS}: "
                          "choose a shorter range")
        raise invalid("interval", f"{n} buckets of {interval} between `from` and `to`; at most {MAX_BUCKETS}: "
                      "choose a longer interval or a shorter range")
    return Window(start, end, interval_s)
