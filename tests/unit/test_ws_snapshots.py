"""What a subscription and the pub/sub listener read from Redis (a stand-in): a price's snapshot, a bar history, a
published tick or bar, the catch-up after a reconnect. Anyone who can reach Redis can write these keys and publish
on these channels: a value that is not ours is skipped, never the end of a subscription or of the listener."""

from __future__ import annotations

import asyncio
import json
import logging
from collections.abc import AsyncIterator, Callable
from types import SimpleNamespace
from typing import Any, cast

import pytest
from prometheus_client import REGISTRY
from websockets.protocol import State

from tradesim.domain.events import Bar
from tradesim.services.marketdata import ws
from tradesim.services.marketdata.ws import DIRECT_BACKLOG, Client, MarketDataHub
from tradesim.settings import load_settings
from tradesim.testing.factories import tick

Stored = str | bytes


class _Pipe:
    def __init__(self, redis: _Redis) -> None:
        self.redis, self.calls = redis, list[Callable[[], Any]]()

    def hget(self, key: str, name: str) -> None:
        self.calls.append(lambda: self.redis.answer(self.redis.hashes.get(key, {}).get(name)))

    def zrange(self, key: str, start: int, end: int) -> None:  # the whole set: no test keeps more than KEEP bars
        self.calls.append(lambda: [self.redis.answer(v) for v in self.redis.zsets.get(key, [])])

    def zrangebyscore(self, key: str, low: str, high: str) -> None:  # the whole set: each test's bars are all new
        self.zrange(key, 0, -1)

    async def execute(self, raise_on_error: bool = True) -> list[Any]:
        return [call() for call in self.calls]


class _PubSub:
    """Pattern subscriptions that deliver what a test puts on `published`."""

    def __init__(self, published: asyncio.Queue[dict[str, Any]]) -> None:
        self.published = published

    async def psubscribe(self, *patterns: str) -> None:
        pass

    async def listen(self) -> AsyncIterator[dict[str, Any]]:
        while True:
            yield await self.published.get()

    async def aclose(self) -> None:
        pass


class _Redis:
    """The cache's price hashes (price:{SYM} → tick, updated_ms), bar sets (bars:{SYM}:{interval}, oldest first) and
    set of symbols ever priced; answers bytes as the hub's raw client does, or strings as its decoding one (which
    raises UnicodeDecodeError on a value that is not UTF-8)."""

    def __init__(self, hashes: dict[str, dict[str, Stored]], zsets: dict[str, list[Stored]] | None = None, *,
                 decode: bool) -> None:
        self.hashes, self.zsets, self.decode = hashes, zsets or {}, decode
        self.published: asyncio.Queue[dict[str, Any]] = asyncio.Queue()

    def answer(self, value: Stored | None) -> Stored | None:
        raw = value.encode() if isinstance(value, str) else value
        return raw.decode() if self.decode and raw is not None else raw

    async def smismember(self, key: str, members: list[str]) -> list[int]:
        return [int(f"price:{m}" in self.hashes) for m in members]

    def pipeline(self, transaction: bool = True) -> _Pipe:
        return _Pipe(self)

    def pubsub(self) -> _PubSub:
        return _PubSub(self.published)


def _hub(hashes: dict[str, dict[str, Stored]], zsets: dict[str, list[Stored]] | None = None) -> MarketDataHub:
    hub = MarketDataHub(load_settings(), cast(Any, None))
    hub.redis = cast(Any, _Redis(hashes, zsets, decode=True))
    hub.raw = cast(Any, _Redis(hashes, zsets, decode=False))
    return hub


def _backlogged() -> Any:
    """A connection whose socket is backed up: the fan-out queues its updates (where a test reads them)."""
    return SimpleNamespace(protocol=SimpleNamespace(state=State.OPEN, extensions=[]), send_in_progress=None,
                           transport=SimpleNamespace(is_closing=lambda: False,
                                                     get_write_buffer_size=lambda: DIRECT_BACKLOG))


def _client() -> Client:
    return Client(_backlogged(), 100)  # the queue alone: the pump is not running


def _sent(client: Client) -> list[dict[str, Any]]:
    return [json.loads(u[3]) for u in client.queue]


def _frames(hashes: dict[str, dict[str, Stored]], symbols: list[str]) -> list[dict[str, Any]]:
    hub = _hub(hashes)
    client = _client()
    asyncio.run(hub.subscribe(client, symbols))
    return _sent(client)


def _bar(symbol: str, second: int, interval: str = "1s") -> str:
    start = 1_790_000_000_000 + second * 1000
    return Bar(symbol=symbol, interval=interval, window_start_ms=start, window_end_ms=start + 1000, open="10",
               high="11", low="9", close="10.5", vwap="10.2", volume=7, trade_count=2).model_dump_json()


NESTED = '{"symbol": "AAA", "seq": 9, "window_start_ms": 9, "x": ' + "[" * 100_000 + "]" * 100_000 + "}"


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


def test_a_price_hash_not_ours_fails_neither_the_subscription_nor_the_connection() -> None:
    """Before: an `updated_ms` of 4,301 digits or more raised ValueError out of the subscription (the connection
    ended, 1011); a tick or `updated_ms` that is not UTF-8 made every subscription naming that symbol `unavailable`
    (the TUI reconnected for ever). Now the first is a stale price (as the order API reads it) and the second none."""
    hub = _hub({"price:AAA": {"tick": tick("AAA", 3).model_dump_json(), "updated_ms": "9" * 5000},
                "price:BBB": {"tick": b"\xff" + tick("BBB", 3).model_dump_json().encode(), "updated_ms": "1"},
                "price:CCC": {"tick": tick("CCC", 3).model_dump_json(), "updated_ms": b"\xff1"}})
    client = _client()

    async def subscribe(symbols: list[str]) -> None:
        await hub._on_frame(client, json.dumps({"op": "subscribe", "symbols": symbols}))

    asyncio.run(subscribe(["AAA", "BBB", "CCC"]))
    frames = _sent(client)
    assert frames[0] == {"type": "subscribed", "symbols": ["AAA", "BBB", "CCC"]}
    assert [(f["type"], f["data"]["symbol"]) for f in frames[1:]] == [("snapshot", "AAA"), ("snapshot", "CCC")]
    assert frames[1]["age_ms"] == frames[2]["age_ms"] > 1_700_000_000_000  # as old as can be: stale
    assert client.symbols == {"AAA", "BBB", "CCC"}  # BBB's next tick comes live


def test_a_bar_history_leaves_out_each_bar_that_is_not_ours_and_keeps_the_rest() -> None:
    """Before: a history was sent as stored, so a bar that is not JSON made the whole frame no JSON and one with a
    non-numeric price lost a client every bar of it (the TUI reads them together); one nested too deep, last in
    the set, ended the connection (RecursionError); one not UTF-8 made the subscription `unavailable`."""
    first, second = _bar("AAA", 1), _bar("AAA", 2)
    stored: list[Stored] = [first, "not json", json.dumps(json.loads(_bar("AAA", 3)) | {"open": "ten"}),
                            b"\xff" + _bar("AAA", 4).encode(), _bar("BBB", 5), _bar("AAA", 6, "1m"), second, NESTED]
    hub = _hub({}, {"bars:AAA:1s": stored})
    client = _client()
    asyncio.run(hub._on_frame(client, json.dumps({"op": "subscribe_bars", "symbols": ["AAA"], "interval": "1s"})))
    (history,) = _sent(client)
    assert history == {"type": "bars", "symbol": "AAA", "interval": "1s", "data": [json.loads(first),
                                                                                   json.loads(second)]}
    assert client.floor == {"AAA|1s": (0, Bar.model_validate_json(second).window_start_ms)}  # the newest shown


def test_a_long_bar_history_check_lets_the_loop_run_between_slices(monkeypatch: pytest.MonkeyPatch) -> None:
    """Every bar of a history is checked now (~5 µs each; 500 symbols' 300 bars, ~0.8 s): the fan-out must not
    wait for all of it."""
    monkeypatch.setattr(ws, "HISTORY_SLICE", 2)
    symbols = ["AAA", "BBB", "CCC"]
    hub = _hub({}, {f"bars:{s}:1s": [_bar(s, 1), _bar(s, 2)] for s in symbols})
    client = _client()

    async def scenario() -> bool:
        ran = asyncio.Event()
        asyncio.get_running_loop().call_soon(ran.set)  # other work, waiting for the loop
        await hub.subscribe_bars(client, symbols, "1s")  # the stand-in's reads never suspend it
        return ran.is_set()

    assert asyncio.run(scenario())
    assert [len(f["data"]) for f in _sent(client)] == [2, 2, 2]


def test_a_bar_history_read_again_checks_only_its_new_bars(monkeypatch: pytest.MonkeyPatch) -> None:
    """A review: every stored bar was checked on each subscription (~5 µs each; a 50-symbol watchlist's reconnect
    held the loop ~90 ms, for every TUI after a service restart). A bar checked before is not checked again; a new
    or rewritten one is, and one that is not ours is still skipped each time."""
    reads: list[bytes] = []
    real = ws.read_bar

    def counted(raw: bytes, symbol: str, interval: str) -> Any:
        reads.append(raw)
        return real(raw, symbol, interval)

    monkeypatch.setattr(ws, "read_bar", counted)
    first, second, third = _bar("AAA", 1), _bar("AAA", 2), _bar("AAA", 3)
    stored: list[Stored] = [first, "not json", second]
    hub = _hub({}, {"bars:AAA:1s": stored})

    def history() -> list[dict[str, Any]]:
        client = _client()
        asyncio.run(hub.subscribe_bars(client, ["AAA"], "1s"))
        (frame,) = _sent(client)
        return cast(list[dict[str, Any]], frame["data"])

    assert history() == [json.loads(first), json.loads(second)]
    assert len(reads) == 3
    reads.clear()
    assert history() == [json.loads(first), json.loads(second)]
    assert reads == [b"not json"]  # skipped again, the others not checked again
    reads.clear()
    rewritten = json.dumps(json.loads(second) | {"close": "ten"})  # a window's bar replaced by one not ours
    stored[1:] = [rewritten, third]
    assert history() == [json.loads(first), json.loads(third)]
    assert reads == [rewritten.encode(), third.encode()]


def test_the_checked_bars_kept_are_bounded() -> None:
    """Per key, what its last history held; over all keys, the limit (the least recently read keys go first)."""
    checked = ws.CheckedBars(limit=5)
    histories = {s: [_bar(s, k).encode() for k in range(3)] for s in ("AAA", "BBB", "CCC")}
    for s in ("AAA", "BBB"):
        assert checked.read(f"{s}|1s", histories[s], s, "1s")[1] == 3
    assert list(checked.by_key) == ["BBB|1s"]  # AAA's history made room
    assert checked.read("BBB|1s", histories["BBB"][1:], "BBB", "1s")[1] == 0  # the oldest bar trimmed
    assert checked.size == 2
    assert checked.read("CCC|1s", histories["CCC"], "CCC", "1s")[1] == 3
    assert checked.size == 5
    assert list(checked.by_key) == ["BBB|1s", "CCC|1s"]


def test_a_published_tick_or_bar_that_is_not_ours_reaches_no_client() -> None:
    """Before, any published JSON with a symbol and a seq went out as a tick (and any with a window start as a bar):
    one with a price that is no number ended `tradesim prices --watch` ("unexpected frame")."""
    hub = _hub({"price:AAA": {}})
    client = _client()
    hub.by_symbol["AAA"], hub.by_bars["AAA|1s"] = {client}, {client}
    good_tick, good_bar = tick("AAA", 5).model_dump_json(), _bar("AAA", 1)
    counted = REGISTRY.get_sample_value("tradesim_marketdata_bad_updates_total") or 0
    for bad in ('{"symbol": "AAA", "seq": 4, "last": "abc"}', tick("BBB", 4).model_dump_json(), NESTED, "null"):
        hub._on_message(b"prices:AAA", bad.encode())
    for bad in (json.dumps(json.loads(_bar("AAA", 0)) | {"volume": "many"}), _bar("AAA", 0, "1m"), NESTED):
        hub._on_message(b"bars:AAA:1s", bad.encode())
    hub._on_message(b"prices:AAA", b"\xff" + good_tick.encode())
    hub._on_message(b"prices:AAA\xff", good_tick.encode())  # a channel name not UTF-8
    hub._on_message(b"prices:AAA", good_tick.encode())
    hub._on_message(b"bars:AAA:1s", good_bar.encode())
    assert _sent(client) == [{"type": "tick", "data": json.loads(good_tick)},
                             {"type": "bar", "data": json.loads(good_bar)}]
    assert REGISTRY.get_sample_value("tradesim_marketdata_bad_updates_total") == counted + 9  # each bad one


@pytest.mark.parametrize("bad", ["tick", "bar"])
def test_a_cached_value_not_ours_read_in_the_catch_up_leaves_the_listener_running(
        bad: str, caplog: pytest.LogCaptureFixture) -> None:
    """Before, a cached tick nested too deep, or such a bar last in the set, raised RecursionError out of the
    catch-up after each pub/sub (re)connect: the listener task ended and no client got another price or bar."""
    hub = _hub({"price:AAA": {"tick": NESTED if bad == "tick" else tick("AAA", 1).model_dump_json()}},
               {"bars:AAA:1s": [_bar("AAA", 1), NESTED] if bad == "bar" else [_bar("AAA", 1)]})
    client = _client()
    hub.by_symbol["AAA"], hub.by_bars["AAA|1s"] = {client}, {client}
    live = tick("AAA", 2).model_dump_json()

    async def scenario() -> None:
        listener = asyncio.create_task(hub.listen())
        try:
            cast(_Redis, hub.raw).published.put_nowait({"type": "pmessage", "channel": b"prices:AAA",
                                                        "data": live.encode()})
            while not (client.queue and client.queue[-1][0] == "AAA" and client.queue[-1][2] == 2):
                await asyncio.wait_for(client.wake.wait(), 5)
                client.wake.clear()
            assert not listener.done()
        finally:
            listener.cancel()

    with caplog.at_level(logging.WARNING, "tradesim.marketdata.ws"):
        asyncio.run(scenario())
    assert [f["data"]["seq"] if f["type"] == "tick" else f["type"] for f in _sent(client)] == (
        ["bar", 2] if bad == "tick" else ["bar", 1, 2])
    skipped = [r for r in caplog.records if r.getMessage().startswith("skipped a cached or published value")]
    assert [cast(Any, r).key for r in skipped] == ["price:AAA" if bad == "tick" else "bars:AAA:1s"]


def test_the_checked_bars_keep_no_key_without_a_bar() -> None:
    """A key whose history holds no bar of ours (none yet, or only foreign ones) is not kept: it counted nothing
    against the limit, so a client subscribing to ever new symbols grew the service's memory without end."""
    checked = ws.CheckedBars(limit=5)
    for n in range(1_000):
        checked.read(f"S{n}|1s", [], f"S{n}", "1s")
    checked.read("BAD|1s", [b"not json"], "BAD", "1s")
    assert not checked.by_key
    assert checked.size == 0
