"""A price subscription's snapshot: what the order API reads from the cache, or none (a stand-in Redis)."""

from __future__ import annotations

import asyncio
import json
import threading
from typing import Any, cast

from tradesim.services.marketdata.ws import Client, MarketDataHub
from tradesim.settings import load_settings
from tradesim.testing.factories import tick


class _Pipe:
    def __init__(self, hashes: dict[str, dict[str, str]]) -> None:
        self.hashes, self.calls = hashes, list[tuple[str, str]]()

    def hget(self, key: str, name: str) -> None:
        self.calls.append((key, name))

    async def execute(self) -> list[str | None]:
        return [self.hashes.get(key, {}).get(name) for key, name in self.calls]


class _Redis:
    """The cache's price hashes (price:{SYM} → tick, updated_ms) and its set of symbols ever priced."""

    def __init__(self, hashes: dict[str, dict[str, str]]) -> None:
        self.hashes = hashes

    async def smismember(self, key: str, members: list[str]) -> list[int]:
        return [int(f"price:{m}" in self.hashes) for m in members]

    def pipeline(self, transaction: bool = True) -> _Pipe:
        return _Pipe(self.hashes)


def _frames(hashes: dict[str, dict[str, str]], symbols: list[str]) -> list[dict[str, Any]]:
    hub = MarketDataHub(load_settings(), cast(Any, None), threading.Event())
    hub.redis = cast(Any, _Redis(hashes))
    client = Client(cast(Any, None), 100)  # the queue alone: the pump is not running
    asyncio.run(hub.subscribe(client, symbols))
    return [json.loads(u[3]) for u in client.queue]


def test_a_cached_price_the_order_api_cannot_read_gets_no_snapshot() -> None:
    """A probe: a price cached before the schema's bounds (or not a tick of that symbol) was sent as the snapshot,
    where the API reads it as no price; `tradesim prices` then ended with "unexpected frame ... is it the tradesim
    market-data service?" (exit 1) for every symbol, the TUI dropped the frame."""
    good = tick("AAA", 3).model_dump_json()
    over = json.dumps(json.loads(tick("BBB", 3).model_dump_json()) | {"last": "99999999"})  # past MAX_PRICE
    other = tick("AAA", 4).model_dump_json()  # AAA's tick in CCC's hash
    nested = '{"symbol": "DDD", "seq": 1, "x": ' + "[" * 100_000 + "]" * 100_000 + "}"
    frames = _frames({f"price:{s}": {"tick": t, "updated_ms": "1"} for s, t in
                      (("AAA", good), ("BBB", over), ("CCC", other), ("DDD", nested))}, ["AAA", "BBB", "CCC", "DDD"])
    assert frames[0] == {"type": "subscribed", "symbols": ["AAA", "BBB", "CCC", "DDD"]}
    assert [(f["type"], f["data"]["symbol"], f["data"]["seq"]) for f in frames[1:]] == [("snapshot", "AAA", 3)]
