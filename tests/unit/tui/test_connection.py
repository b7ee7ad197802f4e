"""The WebSocket session's protocol logic, fed scripted frames (the real server: tests/integration/tui)."""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator
from decimal import Decimal
from typing import Any

import pytest
from websockets.exceptions import ConnectionClosed

from tradesim.domain.events import Bar, OrderOutcome
from tradesim.tui.connection import Backoff, Feed
from tradesim.tui.model import Quote

# a wait on the fake link that never ends (a regression in the sync) fails in seconds, not at the suite's 600 s
pytestmark = pytest.mark.timeout(30)
TICK = {"symbol": "AAA", "bid": "1.00", "ask": "1.02", "last": "1.01", "event_time_ms": 1, "seq": 1, "run_id": 1,
        "size": 1, "scenario_id": "t", "schema_version": 1, "type": "tick"}
BAR = {"symbol": "AAA", "interval": "1m", "window_start_ms": 0, "window_end_ms": 60_000, "open": "1", "high": "2",
       "low": "1", "close": "2", "vwap": "1.5", "volume": 3, "trade_count": 2, "schema_version": 1, "type": "bar"}
OLD_SERVER_ERROR = {"type": "error", "code": "bad_request",
                    "message": 'expected {"op": "subscribe"|"unsubscribe", "symbols": [...]}'}


class Events:
    def __init__(self) -> None:
        self.got: list[tuple[str, Any]] = []
        self.ages: list[float] = []

    def feed_state(self, state: str, retry_in_s: float | None, detail: str) -> None:
        self.got.append(("state", state))

    def feed_quote(self, symbol: str, quote: Quote, received_at: float, age_s: float) -> None:
        self.got.append(("quote", (symbol, quote.last)))
        self.ages.append(age_s)

    def feed_bars(self, symbol: str, interval: str, bars: list[Bar]) -> None:
        self.got.append(("bars", (symbol, interval, len(bars))))

    def feed_bar(self, bar: Bar) -> None:
        self.got.append(("bar", bar.close))

    def feed_account(self, state: str) -> None:
        self.got.append(("account", state))

    def feed_outcome(self, outcome: OrderOutcome, received_at: float) -> None:
        self.got.append(("outcome", outcome.order_id))

    def feed_portfolio(self, data: dict[str, Any]) -> None:
        self.got.append(("portfolio", data["cash"]))

    def feed_unknown_symbols(self, symbols: list[str]) -> None:
        self.got.append(("unknown", symbols))


class Script:
    """A connection that answers with the given frames and records what the client sent."""

    def __init__(self, frames: list[object]) -> None:
        self.frames = [f if isinstance(f, str) else json.dumps(f) for f in frames]
        self.sent: list[dict[str, Any]] = []
        self.closed = False

    async def send(self, text: str) -> None:
        self.sent.append(json.loads(text))

    async def close(self) -> None:
        self.closed = True

    async def __aiter__(self) -> AsyncIterator[str]:
        for f in self.frames:
            yield f


def serve(frames: list[object], key: str | None = "k", refused: bool = False,
          delays: int = 0) -> tuple[Feed, Events, Script]:
    """Serve the frames to a feed whose backoff has been taken `delays` times (earlier failed connections)."""
    events = Events()
    feed = Feed("ws://unused", key, events)
    for _ in range(delays):
        feed.backoff.next()
    feed.account_refused = refused
    feed.prices = {"AAA"}
    feed.bars = {("AAA", "1m")}
    ws = Script(frames)
    feed._ws = ws  # type: ignore[assignment]

    async def go() -> None:
        await feed._serve(ws)  # type: ignore[arg-type]

    asyncio.run(go())
    return feed, events, ws


def test_backoff_doubles_up_to_the_cap_and_resets() -> None:
    b = Backoff(0.5, 4)
    assert [b.next() for _ in range(6)] == [0.5, 1, 2, 4, 4, 4]
    b.reset()
    assert b.next() == 0.5


def test_an_older_server_refuses_the_account_and_bars_ops_and_prices_keep_flowing() -> None:
    feed, events, ws = serve([{"type": "subscribed", "symbols": ["AAA"]}, {"type": "snapshot", "data": TICK},
                              OLD_SERVER_ERROR, OLD_SERVER_ERROR, {"type": "tick", "data": {**TICK, "seq": 2}}])
    assert [s["op"] for s in ws.sent] == ["account", "subscribe", "subscribe_bars"]  # bars only once answered
    assert ("account", "polling") in events.got
    assert feed.account_supported is False
    assert feed.bars_supported is False
    assert [g for g in events.got if g[0] == "quote"] == [("quote", ("AAA", Decimal("1.01")))] * 2


def test_a_snapshot_reports_its_price_age_and_a_tick_none() -> None:
    """The snapshot is the cache's price, possibly minutes old (the market stopped): its age comes with it, so the
    watchlist's stale mark counts from when the price was new, as the API's `stale_price` does."""
    _, events, _ = serve([{"type": "subscribed", "symbols": ["AAA"]},
                          {"type": "snapshot", "data": TICK, "age_ms": 95_000},
                          {"type": "tick", "data": {**TICK, "seq": 2}}])
    assert events.ages == [95.0, 0.0]
    _, events, _ = serve([{"type": "subscribed", "symbols": ["AAA"]}, {"type": "snapshot", "data": TICK}])
    assert events.ages == [0.0]  # an older server's snapshot: its age is not known, it counts from its arrival


def test_the_account_channel_and_bars_of_a_newer_server() -> None:
    outcome = {"order_id": "o1", "user_id": "u", "symbol": "AAA", "side": "buy", "qty": 1, "status": "executed",
               "fill_price": "1.02", "fee": "1.00", "cash_after": "97.98", "position_after": 1, "trade_id": "o1-1",
               "decided_at_ms": 5, "type": "order_outcome", "schema_version": 1}
    feed, events, ws = serve([
        {"type": "account", "user_id": "u"},
        {"type": "bars", "symbol": "AAA", "interval": "1m", "data": [BAR, {**BAR, "window_start_ms": 60_000,
                                                                           "window_end_ms": 120_000}]},
        {"type": "bar", "data": {**BAR, "close": "1.5"}},
        {"type": "outcome", "data": outcome},
        {"type": "portfolio", "data": {"user_id": "u", "symbol": "AAA", "cash": "97.98", "position": 1,
                                       "order_id": "o1", "as_of_ms": 5}},
    ])
    assert ws.sent[0] == {"op": "account", "api_key": "k"}
    assert ws.sent[2] == {"op": "subscribe_bars", "symbols": ["AAA"], "interval": "1m"}
    assert feed.account_supported
    assert feed.bars_supported
    assert [g for g in events.got if g[0] != "quote"] == [
        ("account", "live"), ("bars", ("AAA", "1m", 2)), ("bar", Decimal("1.5")), ("outcome", "o1"),
        ("portfolio", "97.98")]


def test_a_refused_key_is_not_offered_again_and_broken_frames_are_skipped() -> None:
    feed, events, ws = serve(["not json", {"type": "tick"}, {"type": "error", "code": "unauthorized",
                                                             "message": "unknown key"}])
    assert feed.account_refused
    assert ("account", "refused") in events.got
    assert feed.bad_frames == 2
    _, events, ws = serve([], refused=True)
    assert ws.sent[0]["op"] == "subscribe"
    assert ("account", "refused") in events.got


def test_a_symbol_the_server_never_priced_is_reported() -> None:
    _, events, _ = serve([{"type": "error", "code": "unknown_symbol", "symbols": ["ZZQX"],
                           "message": "no price was ever published for these symbols"}])
    assert ("unknown", ["ZZQX"]) in events.got  # before: ignored, the row showed "-" for ever


def test_a_symbol_the_server_never_priced_is_asked_for_again(monkeypatch: pytest.MonkeyPatch) -> None:
    """A probe: the watchlist's symbols, refused before `market start`, stayed without a price for the session: only
    a reconnect subscribed them again, and heartbeats kept the connection up."""
    from tradesim.tui import connection

    unknown = {"type": "error", "code": "unknown_symbol", "symbols": ["AAA"], "message": "never priced"}
    beats = [{"type": "heartbeat", "ts_ms": 1}] * 3
    _, _, ws = serve([unknown, *beats])
    assert [m["op"] for m in ws.sent if m["op"] == "subscribe"] == ["subscribe"]  # not yet: within the period
    monkeypatch.setattr(connection, "UNKNOWN_RETRY_S", 0.0)
    _, _, ws = serve([unknown, *beats])
    assert [m["symbols"] for m in ws.sent if m["op"] == "subscribe"] == [["AAA"], ["AAA"]]  # once per refusal
    _, _, ws = serve([{**unknown, "symbols": ["ZZZ"]}, *beats])  # refused, but no longer on the watchlist
    assert [m["symbols"] for m in ws.sent if m["op"] == "subscribe"] == [["AAA"]]


def test_frames_no_decoder_expects_are_skipped_and_the_session_goes_on() -> None:
    """Before: a frame that was not an object, a portfolio frame whose data was not one, or JSON's Infinity as a
    time ended the feed task while the status bar still said connected."""
    feed, events, _ = serve(["[]", '"x"', {"type": "portfolio", "data": []},
                             '{"type": "tick", "data": {"symbol": "AAA", "bid": "1", "ask": "1", "last": "1", '
                             '"event_time_ms": Infinity, "seq": 2}}',
                             {"type": "tick", "data": {**TICK, "last": "NaN", "seq": 3}},  # cannot be compared
                             {"type": "tick", "data": {**TICK, "seq": 4}}])
    assert feed.bad_frames == 5
    assert [g for g in events.got if g[0] == "quote"] == [("quote", ("AAA", Decimal("1.01")))]


def test_a_subscription_the_server_could_not_make_starts_a_new_connection() -> None:
    """The server answers `unavailable` (its Redis restarting) and holds nothing of the subscription: before, the
    TUI ignored it and the symbols had no price until the app restarted."""
    feed, _, ws = serve([{"type": "error", "code": "unavailable", "message": "the price cache is unavailable"}],
                        delays=2)
    assert ws.closed  # the run loop reconnects after its backoff and subscribes everything again
    assert feed.backoff.next() == 2  # and the backoff grows: the server never served (before: 0.5 s for ever)
    feed, _, _ = serve([{"type": "subscribed", "symbols": ["AAA"]}], delays=2)
    assert feed.backoff.next() == 0.5  # served: a later drop starts over
    _, _, ws = serve([{"type": "error", "code": "bad_request", "message": "no"}])
    assert not ws.closed


def test_a_watchlist_longer_than_one_request_may_name_is_subscribed_in_several() -> None:
    """A probe: 600 symbols went in one subscribe, which the server refuses (at most 500), and no price came."""
    from tradesim.domain.events import MAX_SYMBOLS_PER_REQUEST

    events = Events()
    feed = Feed("ws://unused", None, events)
    feed.prices = {f"S{i:04d}" for i in range(1200)}
    ws = Script([])
    feed._ws = ws  # type: ignore[assignment]
    asyncio.run(feed._serve(ws))  # type: ignore[arg-type]
    asyncio.run(feed.set_prices({f"T{i:04d}" for i in range(600)}))
    sizes = [(s["op"], len(s["symbols"])) for s in ws.sent]
    assert sizes == [("subscribe", 500), ("subscribe", 500), ("subscribe", 200),
                     ("subscribe", 500), ("subscribe", 100), ("unsubscribe", 500), ("unsubscribe", 500),
                     ("unsubscribe", 200)]
    assert all(n <= MAX_SYMBOLS_PER_REQUEST for _, n in sizes)
    assert {x for s in ws.sent[:3] for x in s["symbols"]} == {f"S{i:04d}" for i in range(1200)}


@pytest.mark.parametrize("before", [{"type": "account", "user_id": "u"}, {"type": "heartbeat", "ts_ms": 1}])
def test_an_account_ack_or_heartbeat_before_a_refused_subscription_does_not_start_the_backoff_over(
        before: dict[str, Any]) -> None:
    """A probe with Redis away: the account ack (answered before the subscriptions) and heartbeats counted as
    serving, so a TUI with a key reconnected every 0.5 s, refilling over REST each time, for the whole outage."""
    unavailable = {"type": "error", "code": "unavailable", "message": "the price cache is unavailable"}
    feed, _, ws = serve([before, unavailable], delays=2)
    assert ws.closed
    assert feed.backoff.next() == 2  # was 0.5
    feed, _, _ = serve([{"type": "account", "user_id": "u"}, {"type": "snapshot", "data": TICK}], delays=2)
    assert feed.backoff.next() == 0.5  # prices came: served


def test_the_account_ack_is_serving_when_nothing_else_was_asked_for() -> None:
    events = Events()
    feed = Feed("ws://unused", "k", events)
    feed.backoff.next()
    ws = Script([{"type": "account", "user_id": "u"}])
    feed._ws = ws  # type: ignore[assignment]
    asyncio.run(feed._serve(ws))  # type: ignore[arg-type]
    assert feed.backoff.next() == 0.5


class Link:
    """A connection over a slow link: each frame is written at once, and a send `hold()` picked returns only once
    `release()`d (as websockets' send waits for its buffer to drain); the server's frames come from `push`."""

    def __init__(self) -> None:
        self.sent: list[dict[str, Any]] = []
        self.frames: asyncio.Queue[str | None] = asyncio.Queue()
        self.held = asyncio.Event()  # the held send is written and waiting
        self._go = asyncio.Event()
        self._holding = False
        self._closed = False
        self._wrote = asyncio.Event()

    def hold(self) -> None:
        self._holding = True

    def release(self, *, closed: bool = False) -> None:
        self._closed = closed
        self._go.set()

    async def send(self, text: str) -> None:
        self.sent.append(json.loads(text))
        self._wrote.set()
        if self._holding:
            self._holding = False
            self.held.set()
            await self._go.wait()
            if self._closed:
                raise ConnectionClosed(None, None)

    async def close(self) -> None:
        self._closed = True

    async def until_sent(self, count: int) -> None:
        while len(self.sent) < count:
            self._wrote.clear()
            await self._wrote.wait()

    def push(self, frame: dict[str, Any] | None) -> None:
        self.frames.put_nowait(None if frame is None else json.dumps(frame))

    async def __aiter__(self) -> AsyncIterator[str]:
        while (frame := await self.frames.get()) is not None:
            yield frame


def bars_held(sent: list[dict[str, Any]]) -> set[tuple[str, str]]:
    """The bar subscriptions a server holds after these ops, in order."""
    held: set[tuple[str, str]] = set()
    for op in sent:
        pairs = {(s, op.get("interval", "")) for s in op.get("symbols", [])}
        if op["op"] == "subscribe_bars":
            held |= pairs
        elif op["op"] == "unsubscribe_bars":
            held -= pairs
    return held


def prices_held(sent: list[dict[str, Any]]) -> set[str]:
    held: set[str] = set()
    for op in sent:
        if op["op"] == "subscribe":
            held |= set(op["symbols"])
        elif op["op"] == "unsubscribe":
            held -= set(op["symbols"])
    return held


async def one_turn() -> None:
    """Let the tasks that are ready run to their next wait (a sync to its end, or to the lock another holds)."""
    await asyncio.sleep(0)


A1M, A1S, B1M, B1S = ("AAA", "1m"), ("AAA", "1s"), ("BBB", "1m"), ("BBB", "1s")


@pytest.mark.parametrize(("before", "first", "then"), [
    ({A1M, A1S}, {A1M}, {A1M, A1S}),  # `i` twice: 1 s bars dropped, and wanted again while that op waited
    ({A1M, B1M, A1S}, {A1M, B1M, B1S}, {A1M, B1M, A1S}),  # at 1 s, down then up: BBB, and back to AAA
    ({A1M}, {A1M, A1S}, {A1M}),  # `i` twice the other way: 1 s bars asked for, then not
], ids=["interval-back", "symbol-back", "interval-there-and-back"])
def test_the_bars_the_chart_wants_now_are_the_ones_subscribed_however_changes_overlap(
        before: set[tuple[str, str]], first: set[tuple[str, str]], then: set[tuple[str, str]]) -> None:
    """A change made while the previous one's op still waited on a slow link: before, the second diffed against a
    record the first wrote only at its end, so an `unsubscribe_bars` on its way was recorded as subscribed and the
    chart of the pair wanted again got no bar until a reconnect (and a subscription dropped meanwhile stayed)."""

    async def go() -> Link:
        feed = Feed("ws://unused", None, Events())
        feed.bars_supported = True
        ws = Link()
        feed._ws = ws  # type: ignore[assignment]
        await feed.set_bars(before)
        ws.hold()
        changing = asyncio.create_task(feed.set_bars(first))
        await ws.held.wait()  # its first op is written, its send waits on the link
        again = asyncio.create_task(feed.set_bars(then))
        await one_turn()
        ws.release()
        await asyncio.gather(changing, again)
        return ws

    ws = asyncio.run(go())
    assert bars_held(ws.sent) == then


def test_a_sync_a_dropped_link_left_waiting_sends_nothing_on_the_next_connection() -> None:
    """Before: the sync went on with its next ops on the new connection, ahead of the account op's answer (and took
    the pending op for its own, so an older server's refusal of the account op read as refusing bars), and recorded
    every pair as sent there: once the account op was answered, none was subscribed and the chart got no bar."""

    async def go() -> Link:
        feed = Feed("ws://unused", "k", Events())
        feed.bars_supported = True
        old, new = Link(), Link()
        feed._ws = old  # type: ignore[assignment]
        await feed.set_bars({A1M})
        old.hold()
        waiting = asyncio.create_task(feed.set_bars({A1M, B1M, A1S}))  # two ops: 1m BBB, then 1s AAA
        await old.held.wait()
        feed._ws = new  # type: ignore[assignment]  # the link dropped and `run` connected again
        serving = asyncio.create_task(feed._serve(new))  # type: ignore[arg-type]
        await new.until_sent(1)
        old.release(closed=True)
        await waiting
        assert [op["op"] for op in new.sent] == ["account"]  # nothing before the account op is answered
        new.push({"type": "account", "user_id": "u"})
        new.push(None)
        await serving
        assert feed.account_supported
        return new

    new = asyncio.run(go())
    assert new.sent[0]["op"] == "account"
    assert bars_held(new.sent) == {A1M, B1M, A1S}


def test_the_prices_the_watchlist_wants_now_are_the_ones_subscribed_however_changes_overlap() -> None:
    """As for bars: one change that adds and removes (a symbol added, another removed, applied together), and the
    removed one added back while its subscribe waited on the link: before, its `unsubscribe` went out after the
    new `subscribe`, and the symbol's row had no price again until a reconnect."""

    async def go() -> Link:
        feed = Feed("ws://unused", None, Events())
        ws = Link()
        feed._ws = ws  # type: ignore[assignment]
        await feed.set_prices({"AAA", "XXX"})
        ws.hold()
        changing = asyncio.create_task(feed.set_prices({"AAA", "YYY"}))
        await ws.held.wait()  # `subscribe YYY` written, waiting; `unsubscribe XXX` next
        again = asyncio.create_task(feed.set_prices({"AAA", "XXX", "YYY"}))
        await one_turn()
        ws.release()
        await asyncio.gather(changing, again)
        return ws

    ws = asyncio.run(go())
    assert prices_held(ws.sent) == {"AAA", "XXX", "YYY"}


def test_symbols_asked_for_again_go_through_the_one_path(monkeypatch: pytest.MonkeyPatch) -> None:
    """A review: the unknown symbols were asked for again on the side of `_sync_prices`, a request at a time, so one
    removed from the watchlist while the first request waited on the link was unsubscribed, then subscribed again
    by the second (its ticks came for the rest of the session)."""
    from tradesim.tui import connection

    monkeypatch.setattr(connection, "UNKNOWN_RETRY_S", 0.0)
    wanted = {f"S{i:04d}" for i in range(600)}  # two requests

    async def go() -> tuple[Link, int]:
        feed = Feed("ws://unused", None, Events())
        feed.prices = set(wanted)
        ws = Link()
        feed._ws = ws  # type: ignore[assignment]
        serving = asyncio.create_task(feed._serve(ws))  # type: ignore[arg-type]
        await ws.until_sent(2)
        refused = len(ws.sent)
        ws.hold()
        ws.push({"type": "error", "code": "unknown_symbol", "symbols": sorted(wanted), "message": "never priced"})
        ws.push({"type": "heartbeat", "ts_ms": 1})
        await ws.held.wait()  # the first request asking again waits on the link
        changing = asyncio.create_task(feed.set_prices(wanted - {"S0599"}))
        for _ in range(3):
            await one_turn()
        ws.release()
        await changing
        ws.push(None)
        await serving
        return ws, refused

    ws, refused = asyncio.run(go())
    assert prices_held(ws.sent[refused:]) == wanted - {"S0599"}  # the server held none of the refused symbols
    assert all(len(op["symbols"]) <= 500 for op in ws.sent)
