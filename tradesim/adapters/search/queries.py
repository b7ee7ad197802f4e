"""TradeQuery → search request body: filters, the text match, a total sort order and the page position."""

from __future__ import annotations

import hashlib
import json
from typing import Any

from tradesim.adapters.search.schema import TEXT_FIELD
from tradesim.domain.trades import MAX_PAGE_SIZE, SORTS, TradeQuery

#: sort name → (field, direction, type of its sort value); each ends with order_id, so the order is total and
#: search_after never skips or repeats a document among ties
SORT_KEYS: dict[str, tuple[tuple[str, str, type], ...]] = {
    "decided_desc": (("decided_at", "desc", int), ("order_id", "asc", str)),
    "decided_asc": (("decided_at", "asc", int), ("order_id", "asc", str)),
    "qty_desc": (("qty", "desc", int), ("decided_at", "desc", int), ("order_id", "asc", str)),
    # the exact integer units, not the scaled_float, whose sort values are doubles
    "notional_desc": (("notional_units", "desc", int), ("decided_at", "desc", int), ("order_id", "asc", str)),
}
if set(SORT_KEYS) != set(SORTS):  # pragma: no cover - a domain sort without a spec here is a programming error
    raise ImportError(f"search sorts {sorted(SORT_KEYS)} differ from the domain's {sorted(SORTS)}")

_FILTERS = ("user_id", "symbol", "side", "status")


def validate(query: TradeQuery) -> None:
    """Raises ValueError for a page size or sort the read model does not offer."""
    if isinstance(query.size, bool) or not isinstance(query.size, int) or not 1 <= query.size <= MAX_PAGE_SIZE:
        raise ValueError(f"size must be between 1 and {MAX_PAGE_SIZE}, got {query.size!r}")
    if query.sort not in SORT_KEYS:
        raise ValueError(f"sort must be one of {', '.join(SORTS)}, got {query.sort!r}")
    for name in ("from_ms", "to_ms"):
        value = getattr(query, name)
        if value is not None and (isinstance(value, bool) or not isinstance(value, int)):
            raise ValueError(f"{name} must be an integer (epoch ms), got {value!r}")


def digest(query: TradeQuery) -> str:
    """What a cursor is bound to: the filters, the text and the sort (not the page size)."""
    key = [query.user_id, query.symbol, query.side, query.status, query.from_ms, query.to_ms, query.text, query.sort]
    return hashlib.sha256(json.dumps(key, separators=(",", ":")).encode()).hexdigest()[:16]


def sort_kinds(sort: str) -> tuple[type, ...]:
    return tuple(kind for _, _, kind in SORT_KEYS[sort])


def filters(query: TradeQuery) -> list[dict[str, Any]]:
    out: list[dict[str, Any]] = [{"term": {name: getattr(query, name)}} for name in _FILTERS
                                 if getattr(query, name) is not None]
    if query.from_ms is not None or query.to_ms is not None:
        bounds: dict[str, Any] = {"format": "epoch_millis"}
        if query.from_ms is not None:
            bounds["gte"] = query.from_ms
        if query.to_ms is not None:
            bounds["lt"] = query.to_ms
        out.append({"range": {"decided_at": bounds}})
    if query.text is not None and query.text.strip():
        # every word must occur; in filter context, since the sort, not a score, orders the hits
        out.append({"match": {TEXT_FIELD: {"query": query.text, "operator": "and"}}})
    return out


def search_body(query: TradeQuery, after: list[object] | None) -> dict[str, Any]:
    """One page plus one hit, which tells whether another page follows."""
    body: dict[str, Any] = {
        "size": query.size + 1,
        "query": {"bool": {"filter": filters(query)}},
        "sort": [{field: {"order": direction}} for field, direction, _ in SORT_KEYS[query.sort]],
        "track_total_hits": True,
    }
    if after is not None:
        body["search_after"] = after
    return body
