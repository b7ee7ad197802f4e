"""Bars over the WebSocket: `market_bars` → the service's recent-bars cache → a subscriber gets the history, then
every newer bar, and never one the history already covered."""

from __future__ import annotations

import json
from decimal import Decimal

import pytest

from tests.integration.marketdata.conftest import recv_json, recv_until, ws_client
from tradesim.adapters.kafka.client import producer
from tradesim.adapters.redis.bars import BarCache, bars_key
from tradesim.adapters.redis.client import connect as redis_connect
from tradesim.domain.events import Bar, encode
from tradesim.settings import Settings
from tradesim.testing.factories import unique_symbol
from tradesim.testing.waiting import wait_for

pytestmark = pytest.mark.integration


def _bar(symbol: str, minute: int, close: str) -> Bar:
    c = Decimal(close)
    return Bar(symbol=symbol, interval="1m", window_start_ms=minute * 60_000, window_end_ms=(minute + 1) * 60_000,
               open=c, high=c, low=c, close=c, vwap=c, volume=100, trade_count=3)


def _produce(settings: Settings, bars: list[Bar]) -> None:
    p = producer(settings.kafka)
    for b in bars:
        p.produce(settings.topics.market_bars, key=b.key, value=encode(b))
    assert p.flush(30) == 0


def _cached_starts(settings: Settings, symbol: str) -> list[int]:
    return [json.loads(j)["window_start_ms"] // 60_000 for j in
            BarCache(redis_connect(settings.redis)).recent(symbol, "1m")]


def test_a_bar_subscriber_gets_the_history_then_each_newer_bar(settings: Settings) -> None:
    sym = unique_symbol()
    _produce(settings, [_bar(sym, m, f"{100 + m}") for m in (1, 2, 3)])
    wait_for(lambda: _cached_starts(settings, sym) == [1, 2, 3], 30, "bars cached by the service")
    with ws_client(settings) as ws:
        ws.send(json.dumps({"op": "subscribe_bars", "symbols": [sym], "interval": "1m"}))
        history = recv_until(ws, lambda f: f.get("type") == "bars")[-1]
        assert history["symbol"] == sym
        assert history["interval"] == "1m"
        assert [(b["window_start_ms"] // 60_000, b["close"]) for b in history["data"]] == [
            (1, "101"), (2, "102"), (3, "103")]
        _produce(settings, [_bar(sym, 4, "104")])
        live = recv_until(ws, lambda f: f.get("type") == "bar")[-1]["data"]
        assert (live["symbol"], live["window_start_ms"] // 60_000, live["close"]) == (sym, 4, "104")
        # the other interval is another subscription: nothing of it arrives, and an unknown one is refused
        ws.send(json.dumps({"op": "subscribe_bars", "symbols": [sym], "interval": "5m"}))
        err = recv_until(ws, lambda f: f.get("type") == "error")[-1]
        assert err["code"] == "bad_request"
        assert "interval" in err["message"]


def test_a_symbol_without_bars_gets_an_empty_history_and_its_first_bar_live(settings: Settings) -> None:
    sym = unique_symbol()
    with ws_client(settings) as ws:
        ws.send(json.dumps({"op": "subscribe_bars", "symbols": [sym], "interval": "1m"}))
        assert recv_json(ws) == {"type": "bars", "symbol": sym, "interval": "1m", "data": []}
        _produce(settings, [_bar(sym, 7, "50.5")])
        live = recv_until(ws, lambda f: f.get("type") == "bar")[-1]["data"]
        assert (live["window_start_ms"] // 60_000, live["close"]) == (7, "50.5")
        ws.send(json.dumps({"op": "unsubscribe_bars", "symbols": [sym], "interval": "1m"}))
        assert recv_until(ws, lambda f: f.get("type") == "unsubscribed_bars")[-1]["symbols"] == [sym]


def test_a_first_bar_cached_while_pubsub_reconnects_still_reaches_its_subscriber(settings: Settings) -> None:
    """A review: the catch-up after a pub/sub reconnect read only the bar keys that had fanned out a bar before, so
    a subscription whose history was empty missed every bar cached while the service was not listening."""
    sym = unique_symbol()
    first = _bar(sym, 7, "50.5")
    with ws_client(settings) as ws, redis_connect(settings.redis) as r:
        ws.send(json.dumps({"op": "subscribe_bars", "symbols": [sym], "interval": "1m"}))
        assert recv_json(ws) == {"type": "bars", "symbol": sym, "interval": "1m", "data": []}
        listeners = [c["id"] for c in r.client_list(_type="pubsub") if int(c["psub"]) > 0]
        assert listeners, "the service listens with patterns"
        drop_then_write = r.pipeline(transaction=True)  # one transaction: the bar is cached with no one listening
        for client_id in listeners:
            drop_then_write.client_kill_filter(_id=client_id)
        drop_then_write.zadd(bars_key(sym, "1m"), {encode(first): first.window_start_ms})
        drop_then_write.execute()
        frames = recv_until(ws, lambda f: f.get("type") == "bar", timeout_s=30)
        _produce(settings, [_bar(sym, 8, "51")])
        frames += recv_until(ws, lambda f: f.get("type") == "bar" and f["data"]["window_start_ms"] == 8 * 60_000,
                             timeout_s=30)
    assert [f["data"]["window_start_ms"] // 60_000 for f in frames if f["type"] == "bar"] == [7, 8]


def test_bar_subscriptions_of_one_connection_are_bounded(settings: Settings) -> None:
    from tradesim.services.marketdata.ws import MAX_SYMBOLS

    names = [f"{unique_symbol('B')[:10]}X{i}" for i in range(MAX_SYMBOLS + 1)]  # symbols with no bars: taken
    with ws_client(settings) as ws:
        ws.send(json.dumps({"op": "subscribe_bars", "symbols": names[:MAX_SYMBOLS], "interval": "1s"}))
        recv_until(ws, lambda f: f.get("type") == "bars" and f["symbol"] == max(names[:MAX_SYMBOLS]))
        ws.send(json.dumps({"op": "subscribe_bars", "symbols": names[MAX_SYMBOLS:], "interval": "1s"}))
        err = recv_until(ws, lambda f: f.get("type") == "error")[-1]  # before: no bound at all
        assert (err["code"], "at most" in err["message"]) == ("bad_request", True)
        ws.send(json.dumps({"op": "subscribe_bars", "symbols": names[:2], "interval": "1s"}))  # held: not counted again
        frames = recv_until(ws, lambda f: f.get("type") == "error" or f.get("symbol") == max(names[:2]))
        assert [f["type"] for f in frames] == ["bars", "bars"]
        ws.send(json.dumps({"op": "subscribe_bars", "symbols": names[MAX_SYMBOLS:], "interval": "1m"}))
        assert recv_until(ws, lambda f: f.get("type") == "bars")[-1]["symbol"] == names[MAX_SYMBOLS]


def test_requests_sent_back_to_back_are_answered_in_their_order(settings: Settings) -> None:
    """A probe: `subscribe_bars`, `unsubscribe_bars`, `subscribe_bars` sent at once were answered `bars`, `bars`,
    `unsubscribed_bars`: a client following the answers thought itself unsubscribed while bars kept coming."""
    sym = unique_symbol()
    _produce(settings, [_bar(sym, 1, "101")])
    wait_for(lambda: _cached_starts(settings, sym) == [1], 30, "bars cached by the service")
    with ws_client(settings) as ws:
        ask = {"symbols": [sym], "interval": "1m"}
        for op in ("subscribe_bars", "unsubscribe_bars", "subscribe_bars"):
            ws.send(json.dumps({"op": op, **ask}))
        ws.send(json.dumps({"op": "subscribe", "symbols": ["NOSUCH0"]}))  # a last request: its answer ends them
        answers = [f["type"] for f in recv_until(ws, lambda f: f.get("type") == "error")
                   if f["type"] in ("bars", "unsubscribed_bars", "error")]
        assert answers == ["bars", "unsubscribed_bars", "bars", "error"]
