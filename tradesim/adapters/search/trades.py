"""The `trades` index: its template, writes keyed by trade_id, filtered search, per-minute volume.

Mapping choices:
- ids, user, symbol and side are `keyword`: exact filters and terms aggregations, no analysis.
- price, fee and notional are `scaled_float` with scaling_factor 10000 (= PRICE_QUANTUM): numeric, so range
  queries and sorting work, and stored as a long internally, so they are exact at 4 decimal places. `_source`
  keeps the decimal strings, which is what reads return (a keyword-decimal would be exact too, but could not
  be range-queried or summed).
- Sums are the catch: OpenSearch's sum aggregation adds doubles, and scaled_float values come back as
  long / 10000 doubles, which are not exact. So each document also carries `notional_units` (the notional in
  1/10000 units, a `long`); doubles hold integers exactly up to 2^53, so its sum is exact up to ~9×10^11 per
  bucket, and the adapter checks that bound instead of returning a silently rounded number.
- `executed_at` is a `date` (millisecond resolution) accepting ISO-8601 or epoch millis.
- `dynamic: strict`: a document with an unknown field is refused instead of growing the mapping.
- One shard, no replicas: a single node stays green, and terms aggregations on one shard are exact.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from typing import Any

from tradesim.adapters.search.client import SearchClient
from tradesim.adapters.search.codec import MAX_EXACT_UNITS, MONEY_SCALE, decode, encode, format_time
from tradesim.adapters.search.errors import IndexingFailed, SearchRequestError
from tradesim.domain.money import PRICE_QUANTUM
from tradesim.domain.trades import Side, Trade
from tradesim.settings import OpenSearchSettings

#: index.max_result_window's default: deeper pages need search_after, which no caller needs yet
MAX_PAGE = 10_000
_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)


def _money() -> dict[str, Any]:
    return {"type": "scaled_float", "scaling_factor": MONEY_SCALE}


def trades_template(index: str) -> dict[str, Any]:
    """Composable index template for the trades index (applies when the index is created)."""
    return {
        "index_patterns": [index],
        "priority": 100,
        "template": {
            "settings": {"number_of_shards": 1, "number_of_replicas": 0},
            "mappings": {
                "dynamic": "strict",
                "properties": {
                    "trade_id": {"type": "keyword"},
                    "order_id": {"type": "keyword"},
                    "user_id": {"type": "keyword"},
                    "symbol": {"type": "keyword"},
                    "side": {"type": "keyword"},
                    "qty": {"type": "integer"},
                    "price": _money(),
                    "fee": _money(),
                    "notional": _money(),
                    "notional_units": {"type": "long"},
                    "executed_at": {"type": "date", "format": "strict_date_optional_time||epoch_millis"},
                },
            },
        },
    }


@dataclass(frozen=True)
class MinuteVolume:
    """Trading volume of one symbol in one UTC minute."""

    symbol: str
    minute: datetime
    qty: int
    trades: int
    notional: Decimal


def _exact_int(value: object, what: str) -> int:
    """An aggregation sum (a double) as an int, refusing a value the double may have rounded."""
    if not isinstance(value, int | float) or not float(value).is_integer() or abs(value) >= MAX_EXACT_UNITS:
        raise ArithmeticError(f"{what}: sum {value!r} is not exactly representable")
    return int(value)


class TradeIndex:
    """Read model of executed trades in one index; document id = trade_id, so writes are idempotent."""

    def __init__(self, client: SearchClient, index: str = "trades") -> None:
        self.client = client
        self.name = index

    @classmethod
    def from_settings(cls, settings: OpenSearchSettings, timeout_s: float | None = None) -> TradeIndex:
        return cls(SearchClient(settings, timeout_s), settings.trades_index)

    def close(self) -> None:
        self.client.close()

    def ensure(self) -> bool:
        """Install the template (always, so mapping changes reach new indices) and create the index if
        missing; returns True if it was created. An existing index keeps its mapping."""
        self.client.put_index_template(self.name, trades_template(self.name))
        return self.client.create_index(self.name)

    def drop(self) -> bool:
        """Delete the index with its documents (for rebuilds from the event log and tests)."""
        return self.client.delete_index(self.name)

    def index(self, trades: Sequence[Trade], refresh: bool = False) -> None:
        """Write trades in one bulk request; re-writing a trade replaces it. Raises IndexingFailed listing
        rejected trade ids, InvalidRecord before sending anything if a trade cannot be held exactly."""
        if not trades:
            return
        operations: list[dict[str, Any]] = []
        for trade in trades:
            operations.append({"index": {"_index": self.name, "_id": trade.trade_id}})
            operations.append(encode(trade))
        answer = self.client.bulk(operations, refresh=refresh)
        if answer.get("errors"):
            failures: dict[str, str] = {}
            for item in answer.get("items", []):
                result = next(iter(item.values()))
                error = result.get("error")
                if error:
                    failures[str(result.get("_id"))] = f"{error.get('type')}: {error.get('reason')}"
            raise IndexingFailed(failures or {"?": "bulk answer reported errors without details"})

    def refresh(self) -> None:
        """Make everything written so far visible to search."""
        self.client.refresh(self.name)

    def count(self) -> int:
        return self.client.count(self.name)

    @staticmethod
    def _filters(symbol: str | None, side: Side | None, user_id: str | None,
                 start: datetime | None, end: datetime | None) -> list[dict[str, Any]]:
        filters: list[dict[str, Any]] = []
        for field, value in (("symbol", symbol), ("side", side), ("user_id", user_id)):
            if value is not None:
                filters.append({"term": {field: value}})
        if start is not None or end is not None:
            bounds: dict[str, Any] = {"format": "strict_date_optional_time"}
            if start is not None:
                bounds["gte"] = format_time(start)
            if end is not None:
                bounds["lt"] = format_time(end)
            filters.append({"range": {"executed_at": bounds}})
        return filters

    def search(self, symbol: str | None = None, side: Side | None = None, user_id: str | None = None,
               start: datetime | None = None, end: datetime | None = None, size: int = 100) -> list[Trade]:
        """Trades matching every given filter, oldest first; time range is [start, end) at millisecond
        resolution. Raises InvalidRecord if a stored document is malformed."""
        if not 1 <= size <= MAX_PAGE:
            raise ValueError(f"size must be between 1 and {MAX_PAGE}, got {size}")
        body = {
            "size": size,
            "query": {"bool": {"filter": self._filters(symbol, side, user_id, start, end)}},
            "sort": [{"executed_at": "asc"}, {"trade_id": "asc"}],
        }
        answer = self.client.search(self.name, body)
        return [decode(hit["_source"]) for hit in answer["hits"]["hits"]]

    def volume_by_symbol_per_minute(self, symbol: str | None = None, side: Side | None = None,
                                    user_id: str | None = None, start: datetime | None = None,
                                    end: datetime | None = None, max_symbols: int = 1000) -> list[MinuteVolume]:
        """Exact qty, trade count and notional per symbol per UTC minute (minutes without trades are
        left out), ordered by symbol then minute. Raises SearchRequestError if there are more symbols than
        max_symbols rather than returning a partial answer."""
        body = {
            "size": 0,
            "query": {"bool": {"filter": self._filters(symbol, side, user_id, start, end)}},
            "aggs": {
                "by_symbol": {
                    "terms": {"field": "symbol", "size": max_symbols, "order": {"_key": "asc"}},
                    "aggs": {
                        "per_minute": {
                            "date_histogram": {"field": "executed_at", "fixed_interval": "1m",
                                               "min_doc_count": 1},
                            "aggs": {
                                "qty": {"sum": {"field": "qty"}},
                                "notional_units": {"sum": {"field": "notional_units"}},
                            },
                        },
                    },
                },
            },
        }
        answer = self.client.search(self.name, body)
        by_symbol = answer["aggregations"]["by_symbol"]
        if by_symbol.get("sum_other_doc_count", 0):
            raise SearchRequestError("volume by symbol", None, "too_many_symbols",
                                     f"more than {max_symbols} symbols; raise max_symbols")
        rows = []
        for sym in by_symbol["buckets"]:
            for minute in sym["per_minute"]["buckets"]:
                units = _exact_int(minute["notional_units"]["value"], "notional_units")
                rows.append(MinuteVolume(
                    symbol=sym["key"],
                    minute=_EPOCH + timedelta(milliseconds=int(minute["key"])),
                    qty=_exact_int(minute["qty"]["value"], "qty"),
                    trades=int(minute["doc_count"]),
                    notional=Decimal(units) * PRICE_QUANTUM,
                ))
        return rows
