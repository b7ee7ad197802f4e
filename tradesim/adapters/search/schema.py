"""The trades indices' template: settings, the `words` analyzer and the strict mapping (why each choice:
docs/design/search-model.md)."""

from __future__ import annotations

from typing import Any

from tradesim.adapters.search.codec import MONEY_SCALE

#: bumped when the mapping changes; a concrete index records the version it was created with in `_meta`
SCHEMA_VERSION = 1
#: the analysed field `TradeQuery.text` matches: a copy of order id, symbol, status and reason
TEXT_FIELD = "text"
KEYWORDS = ("order_id", "user_id", "symbol", "side", "status", "order_type", "reason")
_IN_TEXT = ("order_id", "symbol", "status", "reason")


def _money() -> dict[str, Any]:
    return {"type": "scaled_float", "scaling_factor": MONEY_SCALE}


def _time() -> dict[str, Any]:
    return {"type": "date", "format": "epoch_millis"}


#: how soon a write becomes searchable: half the default second, so an outcome is searchable within ~2 s of its
#: decision at the persistence service's 1 s batches (cheap at these rates: a refresh per ~150 documents at 300/s)
REFRESH_INTERVAL = "500ms"


def settings(replicas: int = 0) -> dict[str, Any]:
    return {
        "number_of_shards": 1,
        "number_of_replicas": replicas,
        "refresh_interval": REFRESH_INTERVAL,
        "analysis": {
            # Split on anything but letters and digits, so "insufficient_funds" and "o-7f3a" yield their words
            # (the standard tokenizer keeps "_" inside a word).
            "tokenizer": {"words": {"type": "pattern", "pattern": "[^\\p{L}\\p{N}]+"}},
            "analyzer": {"words": {"type": "custom", "tokenizer": "words", "filter": ["lowercase"]}},
        },
    }


def mapping() -> dict[str, Any]:
    properties: dict[str, Any] = {
        name: {"type": "keyword", **({"copy_to": TEXT_FIELD} if name in _IN_TEXT else {})} for name in KEYWORDS
    }
    properties.update({
        "qty": {"type": "long"},
        "price": _money(),
        "fee": _money(),
        "notional": _money(),
        "notional_units": {"type": "long"},
        "placed_at": _time(),
        "decided_at": _time(),
        TEXT_FIELD: {"type": "text", "analyzer": "words"},
    })
    return {"dynamic": "strict", "_meta": {"schema_version": SCHEMA_VERSION}, "properties": properties}


def template(alias: str, replicas: int = 0) -> dict[str, Any]:
    """Composable index template for the concrete indices `<alias>-<n>`. Its priority grows with the alias
    length: OpenSearch refuses two templates of equal priority whose patterns overlap, and `a-*` only overlaps
    a longer pattern such as `a-b-*`."""
    return {
        "index_patterns": [f"{alias}-*"],
        "priority": 100 + len(alias),
        "template": {"settings": settings(replicas), "mappings": mapping()},
    }
