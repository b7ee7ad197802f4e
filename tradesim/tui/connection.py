"""The TUI's two links to the system: the order API over HTTP and one market-data WebSocket session.

The WebSocket carries prices, bars and the account channel on one connection and reconnects with capped
exponential backoff, re-sending every subscription. Newer operations (`account`, `subscribe_bars`) are probed on
each connection: an older server answers them with a `bad_request` error frame, which is then read as "not
supported here" (prices keep flowing; the app polls the API instead). The server handles a connection's frames
in order, so the account op is resolved (ack or error) before the bars ops are sent, and each error frame
belongs to the one op still unanswered. Subscriptions change through one path (`_sync_prices`, `_sync_bars`), one
change at a time, each op recorded as it goes out on the connection it began on.
"""

from __future__ import annotations

import asyncio
import json
import time
from collections.abc import Iterable
from typing import Any, Protocol

from pydantic import ValidationError
from websockets.asyncio.client import ClientConnection, connect
from websockets.exceptions import ConnectionClosed, InvalidHandshake, InvalidURI

from tradesim.domain.events import MAX_SYMBOLS_PER_REQUEST, Bar, OrderOutcome
from tradesim.tui.model import Quote, parse_quote

#: how often symbols the server called unknown are asked for again (each refusal is one of its 20 bad frames in 10 s)
UNKNOWN_RETRY_S = 10.0
#: frames that answer or carry a price or bar subscription, or the account's data: the server is serving
SERVING = frozenset({"subscribed", "snapshot", "tick", "unsubscribed", "bars", "bar", "unsubscribed_bars", "outcome",
                     "portfolio"})


class Backoff:
    """Capped exponential delays: first, first·2, … up to cap; reset after a success."""

    def __init__(self, first_s: float = 0.5, cap_s: float = 10.0) -> None:
        self.first_s, self.cap_s = first_s, cap_s
        self._next = first_s

    def next(self) -> float:
        delay = self._next
        self._next = min(self.cap_s, self._next * 2)
        return delay

    def reset(self) -> None:
        self._next = self.first_s


class FeedEvents(Protocol):
    """What the WebSocket session reports (called on the event loop, one frame at a time)."""

    def feed_state(self, state: str, retry_in_s: float | None, detail: str) -> None: ...
    def feed_quote(self, symbol: str, quote: Quote, received_at: float, age_s: float) -> None: ...
    def feed_bars(self, symbol: str, interval: str, bars: list[Bar]) -> None: ...
    def feed_bar(self, bar: Bar) -> None: ...
    def feed_account(self, state: str) -> None: ...
    def feed_outcome(self, outcome: OrderOutcome, received_at: float) -> None: ...
    def feed_portfolio(self, data: dict[str, Any]) -> None: ...
    def feed_unknown_symbols(self, symbols: list[str]) -> None: ...


class Feed:
    """One market-data WebSocket session: wanted subscriptions are kept here and re-sent on every connect."""

    def __init__(self, url: str, api_key: str | None, events: FeedEvents, backoff: Backoff | None = None,
                 open_timeout_s: float = 5.0) -> None:
        self.url = url
        self.api_key = api_key
        self.events = events
        self.backoff = backoff or Backoff()
        self.open_timeout_s = open_timeout_s
        self.prices: set[str] = set()
        self.bars: set[tuple[str, str]] = set()
        #: per connection: None until the server answered the op once, then whether it knows it
        self.account_supported: bool | None = None
        self.bars_supported: bool | None = None
        self.account_refused = False
        self._ws: ClientConnection | None = None
        #: what this connection was asked for so far, op by op (the wanted sets are `prices` and `bars`)
        self._prices_sent: set[str] = set()
        self._bars_sent: set[tuple[str, str]] = set()
        #: held while a sync sends: two overlapping ones each diffed against what the other had not yet recorded
        self._syncing = asyncio.Lock()
        self._pending: str | None = None  # the newer op ("account" / "bars") still unanswered on this connection
        #: symbols the server called unknown (never priced), asked again every UNKNOWN_RETRY_S on this connection:
        #: a market started later prices them, and nothing else would subscribe them again
        self.unknown: set[str] = set()
        self._unknown_asked = 0.0
        self.frames = 0
        self.bad_frames = 0

    async def run(self) -> None:
        """Connect, serve, and reconnect forever (cancel the task to stop)."""
        while True:
            detail = ""
            try:
                async with connect(self.url, open_timeout=self.open_timeout_s, max_size=2**24, compression=None,
                                   ping_interval=10, ping_timeout=10, close_timeout=1) as ws:
                    self._ws = ws
                    self.events.feed_state("connected", None, "")
                    await self._serve(ws)
                    detail = "closed by the server"
            except (OSError, TimeoutError, InvalidHandshake, InvalidURI, ConnectionClosed) as exc:
                detail = str(exc) or type(exc).__name__
            finally:
                self._ws = None
            delay = self.backoff.next()
            self.events.feed_state("down", delay, detail)
            await asyncio.sleep(delay)  # pacing reconnects, not waiting for a condition
            self.events.feed_state("connecting", None, "")

    async def _serve(self, ws: ClientConnection) -> None:
        self._prices_sent = set()
        self._bars_sent = set()
        self.unknown = set()  # every wanted symbol is asked for below
        self.account_supported = self.bars_supported = None
        self._pending = None
        if self.api_key and not self.account_refused:
            self._pending = "account"
            await ws.send(json.dumps({"op": "account", "api_key": self.api_key}))
        else:
            self.events.feed_account("refused" if self.account_refused else "polling")
        await self._sync_prices()
        if self._pending is None:
            await self._sync_bars()
        served = False
        async for raw in ws:
            received = time.perf_counter()
            self.frames += 1
            try:
                frame = json.loads(raw)
                if not served and self._serves(frame.get("type")):
                    # the backoff starts over once the server serves, not once it accepts: a subscription it
                    # answers `unavailable` (a new connection follows) must not reconnect at the first delay for ever
                    served = True
                    self.backoff.reset()
                await self._on_frame(frame, received)
                await self._ask_unknown_again(received)
            except (ValueError, KeyError, TypeError, AttributeError, ArithmeticError, ValidationError):
                # a frame that is not an object, a number JSON's Infinity made too big for int(): one broken
                # frame must not end the session
                self.bad_frames += 1

    def _serves(self, kind: object) -> bool:
        """Whether a frame of this type shows the server serving what this connection asked for. The account ack
        and heartbeats come before a price or bar subscription Redis refuses (the ack is answered first): counted,
        they made a TUI with a key reconnect every 0.5 s for as long as Redis was away, refilling over REST each
        time. The ack counts when nothing else was asked for."""
        if kind == "account":
            return not (self.prices or self.bars)
        return kind in SERVING

    async def _on_frame(self, frame: dict[str, Any], received: float) -> None:
        kind = frame.get("type")
        if kind in ("tick", "snapshot"):
            symbol, quote = parse_quote(frame["data"])
            # a snapshot is the cache's price, already this old when it came: its staleness counts from then
            age_s = max(0.0, float(frame.get("age_ms") or 0) / 1000) if kind == "snapshot" else 0.0
            self.events.feed_quote(symbol, quote, received, age_s)
        elif kind == "bar":
            self._bars_known()
            self.events.feed_bar(Bar.model_validate(frame["data"]))
        elif kind == "bars":
            self._bars_known()
            self.events.feed_bars(frame["symbol"], frame["interval"], [Bar.model_validate(b) for b in frame["data"]])
        elif kind == "outcome":
            self.events.feed_outcome(OrderOutcome.model_validate(frame["data"]), received)
        elif kind == "portfolio":
            self.events.feed_portfolio(frame["data"])
        elif kind == "account":
            await self._account_answered(True)
        elif kind == "error":
            await self._on_error(frame)

    async def _on_error(self, frame: dict[str, Any]) -> None:
        code = frame.get("code")
        if code == "bad_request" and self._pending == "account":
            await self._account_answered(False)
        elif code == "bad_request" and self._pending == "bars":
            self._pending = None
            self.bars_supported = False
            self._bars_sent = set()
        elif code == "unavailable" and self._ws is not None:
            # a subscription the server could not make (its Redis restarting): nothing of it holds, so start over
            # on a new connection, which sends every wanted subscription again after the backoff
            await self._ws.close()
        elif code == "unknown_symbol":
            symbols = [s for s in frame.get("symbols") or [] if isinstance(s, str)]
            if not self.unknown:
                self._unknown_asked = time.perf_counter()
            self.unknown.update(symbols)
            self.events.feed_unknown_symbols(symbols)
        elif code == "unauthorized":
            self.account_refused = True  # the server closes the socket now; the next connection skips the op
            self.events.feed_account("refused")
            if self._pending == "account":
                self._pending = None

    async def _ask_unknown_again(self, now: float) -> None:
        """Every frame (a heartbeat at least every few seconds) checks whether to ask for the unknown symbols again;
        each refusal counts as one bad frame at the server, so a slow period keeps far below its limit."""
        if not self.unknown or now - self._unknown_asked < UNKNOWN_RETRY_S:
            return
        again, self.unknown = self.unknown, set()
        self._unknown_asked = now
        # Through the one path: sent on the side, over several requests, a symbol removed while one waited on the
        # link went out again after its unsubscribe (a review).
        await self._sync_prices(again)

    async def _account_answered(self, supported: bool) -> None:
        if self._pending == "account":
            self._pending = None
        self.account_supported = supported
        self.events.feed_account("live" if supported else "polling")
        await self._sync_bars()

    def _bars_known(self) -> None:
        if self._pending == "bars":
            self._pending = None
        self.bars_supported = True

    async def set_prices(self, symbols: Iterable[str]) -> None:
        self.prices = set(symbols)
        await self._sync_prices()

    async def set_bars(self, pairs: Iterable[tuple[str, str]]) -> None:
        self.bars = set(pairs)
        if self._pending != "account":
            await self._sync_bars()

    async def set_account(self, api_key: str | None) -> None:
        """Trade as another user: a new connection subscribes the new key's channel."""
        self.api_key = api_key
        self.account_refused = False
        if self._ws is not None:
            await self._ws.close()

    async def _sync_prices(self, refused: Iterable[str] = ()) -> None:
        """Bring this connection's price subscriptions to `prices`: what was added, then what was removed. `refused`:
        symbols the server called unknown, subscribed again if still wanted (one no longer wanted is unsubscribed
        as usual: it may have been subscribed again since)."""
        ws = self._ws  # before waiting its turn: a sync that waited over a reconnect has nothing to do there
        async with self._syncing:
            if ws is not None and ws is self._ws:
                self._prices_sent.difference_update(self.prices.intersection(refused))
            while ws is not None and ws is self._ws:
                added, removed = self.prices - self._prices_sent, self._prices_sent - self.prices
                if added:
                    symbols = _requests(added)[0]
                    self._prices_sent.update(symbols)
                    await self._send({"op": "subscribe", "symbols": symbols}, ws)
                elif removed:
                    symbols = _requests(removed)[0]
                    self._prices_sent.difference_update(symbols)
                    await self._send({"op": "unsubscribe", "symbols": symbols}, ws)
                else:
                    return

    async def _sync_bars(self) -> None:
        """Bring this connection's bar subscriptions to `bars`: what was removed, then what was added, an interval at a
        time; stops when the connection it began on is gone (the next one's `_serve` subscribes from scratch)."""
        # One sync at a time, each op recorded as it goes out and the difference taken again after each send: a
        # change made while a send waits then diffs against what really went out (CHANGELOG, fifty-seventh session).
        ws = self._ws  # before waiting its turn: on the next connection it would go before the account op's answer
        async with self._syncing:
            while ws is not None and ws is self._ws and self.bars_supported is not False:
                op, interval, symbols = self._next_bars_op()
                if not op:
                    return
                pairs = {(s, interval) for s in symbols}
                if op == "subscribe_bars":
                    if self.bars_supported is None:
                        self._pending = "bars"
                    self._bars_sent.update(pairs)
                else:
                    self._bars_sent.difference_update(pairs)
                await self._send({"op": op, "symbols": symbols, "interval": interval}, ws)

    def _next_bars_op(self) -> tuple[str, str, list[str]]:
        """(op, interval, symbols) of the next bars request towards `bars`; ("", "", []) when none is needed."""
        for op, pairs in (("unsubscribe_bars", self._bars_sent - self.bars),
                          ("subscribe_bars", self.bars - self._bars_sent)):
            if pairs:
                interval = min(i for _, i in pairs)
                return op, interval, _requests(s for s, i in pairs if i == interval)[0]
        return "", "", []

    async def _send(self, doc: dict[str, Any], ws: ClientConnection | None = None) -> None:
        """Send on `ws` (by default the connection now) while it is the connection now; else nothing: the next
        connect sends what is wanted."""
        if ws is None:
            ws = self._ws
        if ws is None or ws is not self._ws:
            return
        try:
            await ws.send(json.dumps(doc))
        except ConnectionClosed:
            pass  # the reader sees the close and reconnects, re-sending the wanted state


def _requests(symbols: Iterable[str]) -> list[list[str]]:
    """The symbols, sorted, in as many requests as the server's limit per request needs (a watchlist of 600
    in one request was refused, and no price came at all)."""
    ordered = sorted(symbols)
    return [ordered[i:i + MAX_SYMBOLS_PER_REQUEST] for i in range(0, len(ordered), MAX_SYMBOLS_PER_REQUEST)]
