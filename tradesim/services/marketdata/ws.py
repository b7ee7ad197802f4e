"""WebSocket push: prices (snapshot from Redis, then every update through Redis pub/sub) and one user's account.

Protocol (JSON text frames); one connection may carry price subscriptions and one account subscription:
  client → {"op": "subscribe", "symbols": ["AAPL", ...]} | {"op": "unsubscribe", "symbols": [...]}
           {"op": "account", "api_key": "<user API key>"}
           {"op": "subscribe_bars", "symbols": [...], "interval": "1s" | "1m"} | {"op": "unsubscribe_bars", ...}
  server → {"type": "subscribed", "symbols": [...]}  |  {"type": "unsubscribed", "symbols": [...]}
           {"type": "snapshot", "data": <tick>, "age_ms": <ms since the cache took it>}   once per symbol on
                                                  subscribe (if it has a price the order API can read: a cached
                                                  tick out of the schema's bounds is none); the age is what the API
                                                  judges a stale price by
           {"type": "tick", "data": <tick>}       every newer update after the snapshot, in (run_id, seq) order (one
                                                  that moved while pub/sub reconnected: once it is back)
           {"type": "bars", "symbol", "interval", "data": [<bar>, ...]}   on subscribe_bars: the recent bars
                                                  (oldest first, up to 300; [] when there are none yet; a cached
                                                  bar that is not one of that symbol and interval is left out)
           {"type": "bar", "data": <bar>}         every bar after that history, in window order
           {"type": "unsubscribed_bars", "symbols": [...], "interval": ...}
           {"type": "account", "user_id": ...}    ack: from here on every outcome of this user that the service
                                                  reads from trade_executed is pushed; older ones: over REST
           {"type": "outcome", "data": <OrderOutcome JSON exactly as on trade_executed>}
           {"type": "portfolio", "data": {"user_id", "symbol", "cash": "<decimal>", "position": <int>,
                                          "order_id", "as_of_ms": <decided_at_ms>}}   after each executed outcome
           {"type": "heartbeat", "ts_ms": ...}    when nothing else was sent for half of heartbeat_s (checked
                                                  every quarter), so no connection is silent for heartbeat_s
           {"type": "error", "code": "bad_request" | "unknown_symbol", "message": ..., "symbols"?: [...]}
           {"type": "error", "code": "unavailable", ...}   a (bar) subscription Redis refused: none of it holds
           {"type": "error", "code": "unauthorized", ...} then close 1008: unknown key, or not a user key (admin)
           {"type": "error", "code": "unavailable", ...} then close 1011: the key cannot be checked (DynamoDB
                                                  down; or the service is just starting), or the client fell
                                                  ACCOUNT_QUEUE account frames behind: reconnect with backoff and
                                                  fill the gap over REST
A protocol error is answered with an error frame and the connection stays usable. Binary frames are refused
with an error frame; frames over 64 KiB close the connection with 1009 (message too big).

Each client has a bounded price queue: a client that keeps up gets every update; when its queue is full it is
conflated to the latest update per symbol (counted as drops), so a slow client gets the latest price and never
holds up others. Account frames have their own queue, sent first and never conflated: a client that falls
ACCOUNT_QUEUE of them behind is closed instead (it refills over REST). Outcomes come at least once (the job's
sink); a copy of an order's outcome already pushed to that user is not pushed again.
"""

from __future__ import annotations

import asyncio
import json
import logging
import socket
import time
from collections import OrderedDict, deque
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from typing import Any, ParamSpec, TypeVar

import redis.asyncio as aioredis
from websockets.asyncio.server import Server, ServerConnection, serve
from websockets.exceptions import ConnectionClosed
from websockets.frames import CloseCode, Frame, Opcode
from websockets.protocol import State

from tradesim.adapters.redis.bars import CHANNEL_PATTERN as BARS_PATTERN
from tradesim.adapters.redis.bars import CHANNEL_PREFIX as BARS_PREFIX
from tradesim.adapters.redis.bars import KEEP as BARS_KEPT
from tradesim.adapters.redis.bars import bars_key, parse_channel, read_bar
from tradesim.adapters.redis.codec import read_text
from tradesim.adapters.redis.prices import (
    CHANNEL_PATTERN,
    CHANNEL_PREFIX,
    SYMBOLS_KEY,
    price_key,
    read_tick,
    written_ms,
)
from tradesim.domain.errors import InvalidRecord
from tradesim.domain.events import BAR_INTERVALS, MAX_SYMBOLS_PER_REQUEST, OrderOutcome, is_symbol, typed_symbol
from tradesim.domain.precheck import price_age_ms
from tradesim.ports import Unavailable
from tradesim.services.marketdata import metrics
from tradesim.services.marketdata.keys import KeyChecker, Refused
from tradesim.services.marketdata.outcomes import Outcome
from tradesim.services.tasks import create_task
from tradesim.settings import Settings, is_header_safe, redacted

log = logging.getLogger("tradesim.marketdata.ws")
T = TypeVar("T")
P = ParamSpec("P")
MAX_FRAME = 64 * 1024
MAX_SYMBOLS = MAX_SYMBOLS_PER_REQUEST
MAX_KEY = 512
SEND_BUFFER = 64 * 1024
#: bytes a client may have pending in user space before its updates go through its conflating queue instead
DIRECT_BACKLOG = 64 * 1024
#: account frames (≈350 bytes; an executed outcome makes two) a client may have unsent before it is closed: well
#: above one consume batch of a single user's outcomes (a job catching up after an outage), so a client that
#: reads is never closed by a burst; a stuck one costs ≤ 4 MB until then
ACCOUNT_QUEUE = 10_000
#: how often, at least, the keys of account connections are checked again (else every `api.auth_cache_s`)
KEY_RECHECK_MIN_S = 5.0
#: replies (acks, snapshots, bar histories, errors, heartbeats) a client may leave unread before it is closed (1008):
#: they are never conflated, so this is what bounds them for a client that sends requests and does not read
CONTROL_QUEUE = 5_000
#: bad frames a client may send within BAD_FRAMES_WINDOW_S before it is closed (1008)
BAD_FRAMES = 20
BAD_FRAMES_WINDOW_S = 10.0
#: order ids per followed user remembered to skip repeated outcomes (the job's sink is at-least-once)
RECENT_ORDERS = 1024
#: bars a bar subscription checks before it lets the loop run (~5 µs each: 500 symbols' histories take ~0.8 s)
HISTORY_SLICE = 2_000
#: bars of recent histories remembered as checked (≤ KEEP per key, whole keys dropped least recently read first):
#: ~200 histories, ~20 MB with the members it holds on to; a reconnect checks only the bars new since the last read
CHECKED_BARS = 60_000
#: seconds an account subscription waits, right after the service started, for the outcome feed to be positioned
FEED_WAIT_S = 5.0

#: (what it updates, then its order within that) and the frame: a price is (symbol, run_id, seq); a bar is
#: ("SYMBOL|interval", 0, window start); a control frame (ack, snapshot, error, heartbeat) is ("", 0, 0)
Update = tuple[str, int, int, str]


def _read(source: str, read: Callable[P, T], *args: P.args, **kwargs: P.kwargs) -> T | None:
    """What `read` (the Redis adapter's decoding) makes of a cached or published value, or None: anyone who can
    reach Redis can write these keys and publish on these channels, so a value that is not ours (not UTF-8, not
    JSON, nested too deep, out of the schema's bounds, another symbol's) is counted, logged with its key and
    skipped, never the end of a subscription, a connection or the listener."""
    try:
        return read(*args, **kwargs)
    except InvalidRecord as exc:
        metrics.BAD_UPDATES.inc()
        log.warning("skipped a cached or published value that is not a tick or bar",
                    extra={"key": source[:100], "error": str(exc)[:200]})
        return None


class CheckedBars:
    """The bars of recent histories already checked, by key and stored bytes: a history read again checks only its
    new members (each took ~5 µs of the loop, so a 50-symbol watchlist's reconnect held it ~90 ms). A key keeps what
    its last history held, so ≤ KEEP bars; a member that was not ours is not kept (it is checked, and skipped, again).
    """

    def __init__(self, limit: int) -> None:
        self.limit = limit
        self.size = 0
        self.by_key: OrderedDict[str, dict[bytes, int]] = OrderedDict()  # member → its window start

    def read(self, key: str, stored: list[bytes], symbol: str, interval: str) -> tuple[list[tuple[int, str]], int]:
        """The bars of one history that are ours, oldest first, as (window start, JSON text as stored); and how
        many members had to be checked."""
        known = self.by_key.pop(key, {})
        self.size -= len(known)
        kept: dict[bytes, int] = {}
        bars: list[tuple[int, str]] = []
        checked = 0
        for raw in stored:
            start = known.get(raw)
            if start is None:
                checked += 1
                bar = _read(bars_key(symbol, interval), read_bar, raw, symbol, interval)
                if bar is None:
                    continue
                start = bar[0].window_start_ms
            kept[raw] = start
            bars.append((start, raw.decode()))  # UTF-8: read_bar checked it
        if kept:  # a key with none: kept, it would take no room in `size` and so never be dropped
            self.by_key[key] = kept
            self.size += len(kept)
        while self.size > self.limit:
            self.size -= len(self.by_key.popitem(last=False)[1])
        return bars, checked


def _drop(index: dict[str, set[Client]], mine: set[str], client: Client, keys: list[str]) -> None:
    """Take the client off these keys of an index (symbol → clients, "SYMBOL|interval" → clients)."""
    for key in keys:
        mine.discard(key)
        subs = index.get(key)
        if subs:
            subs.discard(client)
            if not subs:
                del index[key]


def text_frame(text: str) -> bytes:
    """`text` as one unmasked, uncompressed WebSocket text frame: what a server writes, header included."""
    return Frame(Opcode.TEXT, text.encode()).serialize(mask=False, extensions=[])


def _fan_out(clients: Iterable[Client], frame: str, update: Update | None) -> None:
    """Encode `frame` once and write it to every client that keeps up (nothing queued, a small socket backlog), so
    order holds; queue it for the others: as a price `update` (which may be conflated), or without one as a
    control frame (which a conflation keeps, ahead of the prices). A connection no longer open is skipped.

    The frame's bytes go straight to each transport, whereas the library's `broadcast` serializes the frame again
    for every connection (docs/design/market-data.md)."""
    data = b""
    now = time.monotonic()
    sent = 0
    for client in clients:
        ws = client.ws
        if ws.protocol.state is not State.OPEN or ws.transport.is_closing():
            continue  # its handler is ending; as in the library's broadcast, nothing more goes to it
        if update is not None and client.floor and client.below_floor(update):
            continue
        if client.takes_directly():
            if not data:
                data = text_frame(frame)
            try:
                ws.transport.write(data)
            except Exception:  # one broken connection must not end the fan-out (the listener task) for all
                log.warning("direct write failed", exc_info=True, extra={"remote": str(ws.remote_address)})
                continue
            client.last_sent = now
            sent += 1
        elif update is not None:
            client.offer(update)
        else:
            client.send_now(frame)
    if sent:
        metrics.UPDATES_OUT.inc(sent)


#: a bar subscription's key is "SYMBOL|interval" (a symbol cannot hold it)
BAR_KEY_SEPARATOR = "|"


def bar_key(symbol: str, interval: str) -> str:
    return f"{symbol}{BAR_KEY_SEPARATOR}{interval}"


def _error(code: str, message: str) -> str:
    return json.dumps({"type": "error", "code": code, "message": message})


class Client:
    def __init__(self, ws: ServerConnection, limit: int) -> None:
        self.ws = ws
        self.limit = limit
        self.symbols: set[str] = set()
        self.bars: set[str] = set()  # "SYMBOL|interval"
        self.queue: deque[Update] = deque()
        self.wake = asyncio.Event()
        self.paused = False
        #: the followed account's user id, and its frames (sent before prices, never conflated)
        self.user_id: str | None = None
        self.api_key: str | None = None  # the key `user_id` was followed with, checked again now and then
        self.account: deque[str] = deque()
        #: set by close_with: the close code and reason to send once the account queue (the error frame) is out
        self.closing: tuple[CloseCode, str] | None = None
        self.bad: deque[float] = deque(maxlen=BAD_FRAMES)  # when its latest bad frames came
        self.replies = 0  # control frames in `queue`
        self.last_sent = time.monotonic()  # when a frame last went to its socket (heartbeats go to quiet ones)
        #: per symbol (or "SYMBOL|interval": (0, window start)), what a snapshot, a bar history or a catch-up already
        #: gave it: an update up to that one, read from pub/sub after them, is not sent; the entry goes once a newer
        #: one passed (pub/sub is in order from there)
        self.floor: dict[str, tuple[int, int]] = {}
        #: bar histories queued and not sent yet, by bar key, and for each (by the frame's id) its key and how many
        #: answers in the queue carry it: asking for the same bars again replaces an unsent history with the newer
        #: one, one string for all those answers, so a client re-subscribing without reading holds one history per
        #: bar key it asked for, not one per request (a probe: 5,000 unread answers of ~66 KB, ~330 MB)
        self.histories: dict[str, str] = {}
        self.history_keys: dict[int, tuple[str, int]] = {}

    def raise_floor(self, key: str, order: tuple[int, int]) -> None:
        self.floor[key] = max(self.floor.get(key, order), order)

    def below_floor(self, update: Update) -> bool:
        """Whether this price update is covered by what the client got from the cache (snapshot, catch-up)."""
        floor = self.floor.get(update[0])
        if floor is None:
            return False
        if (update[1], update[2]) <= floor:
            return True
        del self.floor[update[0]]
        return False

    def takes_directly(self) -> bool:
        """Whether a frame may be written to its open connection now, past its queues and the protocol: nothing
        of its own waits (account frames, queued updates, a subscription being answered), its socket backlog is
        small, no fragmented send is under way and no extension (compression) rewrites frames."""
        ws = self.ws
        return not (self.account or self.queue or self.paused or self.closing is not None
                    or ws.send_in_progress is not None or ws.protocol.extensions
                    or ws.transport.get_write_buffer_size() >= DIRECT_BACKLOG)

    def offer(self, update: Update) -> None:
        if self.closing is not None:
            return
        if len(self.queue) >= self.limit:
            self._conflate()
            if self.closing is not None:
                return
        self.queue.append(update)
        self.wake.set()

    def _conflate(self) -> None:
        """Keep the latest price per symbol; replies and bars each count (a bar is its window's whole, which no
        later bar repeats). Run when the queue is full: a client whose bars and replies are half of it or more is
        closed, as with them never dropped its conflations would free less and less, until one ran on every
        update."""
        latest: dict[str, Update] = {}
        control: list[Update] = []
        bars: list[Update] = []
        for u in self.queue:
            if not u[0]:
                control.append(u)  # acks, snapshots, errors
            elif BAR_KEY_SEPARATOR in u[0]:
                bars.append(u)
            else:
                latest[u[0]] = u
        kept = [*control, *bars, *sorted(latest.values(), key=lambda u: (u[1], u[2]))]
        if len(bars) + len(control) >= self.limit // 2:
            self.close_with(CloseCode.TRY_AGAIN_LATER, "too_slow", f"{len(bars)} bars and {len(kept) - len(bars)} "
                            "other frames unread; reconnect and subscribe again (a bar history holds the newest "
                            f"{BARS_KEPT} of each symbol)")
            return
        metrics.QUEUE_DROPS.inc(len(self.queue) - len(kept))
        self.queue = deque(kept)

    def forget(self, keys: list[str]) -> None:
        """Drop the queued updates and floors of these symbols (or "SYMBOL|interval" bar keys): unsubscribed, none
        may follow the acknowledgement."""
        gone = set(keys)
        for key in gone:
            self.floor.pop(key, None)
        if any(u[0] in gone for u in self.queue):
            self.queue = deque(u for u in self.queue if u[0] not in gone)

    def send_now(self, frame: str) -> None:
        if self.closing is not None:
            return
        self.queue.append(("", 0, 0, frame))
        self.replies += 1
        self.bound_replies()
        self.wake.set()

    def splice(self, replies: list[Update], covered: Callable[[Update], bool],
               histories: dict[str, str] | None = None) -> None:
        """Queue a subscription's replies after the replies queued before them (answers go out in the order they
        were asked for; before, a `subscribe_bars` after an `unsubscribe_bars` of the same bars was answered
        first) and ahead of the queued updates, less those the replies cover (a snapshot or history has them).
        `histories`: the bar histories among the replies, by bar key; an unsent one of the same key is replaced."""
        if self.closing is not None:  # closed while the subscription read Redis: nothing more is sent
            return
        earlier = [u for u in self.queue if not u[0]]
        if histories:
            newer: dict[int, str] = {}
            for key, frame in histories.items():
                old = self.histories.get(key)
                copies = 1
                if old is not None:
                    newer[id(old)] = frame
                    copies += self.history_keys.pop(id(old))[1]
                self.histories[key] = frame
                self.history_keys[id(frame)] = (key, copies)
            if newer:
                earlier = [(k, r, s, newer.get(id(f), f)) for k, r, s, f in earlier]
        updates = [u for u in self.queue if u[0] and not covered(u)]
        self.queue = deque([*earlier, *replies, *updates])
        self.replies = len(earlier) + sum(1 for u in replies if not u[0])
        self.bound_replies()

    def bound_replies(self) -> None:
        """Close a client that left more than CONTROL_QUEUE replies unread (they are never conflated)."""
        if self.closing is None and self.replies > CONTROL_QUEUE:
            self.close_with(CloseCode.POLICY_VIOLATION, "too_many_unread_replies",
                            f"more than {CONTROL_QUEUE} replies unread: read what you ask for")

    def count_bad_frame(self, now: float) -> bool:
        """Note a bad frame; True once BAD_FRAMES came within BAD_FRAMES_WINDOW_S (the client is then closed)."""
        self.bad.append(now)
        if len(self.bad) == BAD_FRAMES and now - self.bad[0] <= BAD_FRAMES_WINDOW_S:
            self.close_with(CloseCode.POLICY_VIOLATION, "too_many_bad_frames",
                            f"{BAD_FRAMES} bad frames within {BAD_FRAMES_WINDOW_S:g} s")
            return True
        return False

    def offer_account(self, frames: list[str]) -> bool:
        """Queue frames of the followed account; False if the client fell ACCOUNT_QUEUE behind (it is closed)."""
        if self.closing is not None:
            return False
        if len(self.account) + len(frames) > ACCOUNT_QUEUE:
            self.close_with(CloseCode.INTERNAL_ERROR, "unavailable", f"more than {ACCOUNT_QUEUE} account frames "
                            "unread; reconnect and fetch what was missed over REST")
            return False
        self.account.extend(frames)
        self.wake.set()
        return True

    def close_with(self, code: CloseCode, error: str, message: str) -> None:
        """Send an error frame, then close with `code`; what is still queued is dropped (refilled over REST)."""
        self.queue.clear()
        self.replies = 0
        self.histories.clear()
        self.history_keys.clear()
        self.account.clear()
        self.account.append(_error(error, message))
        self.closing = (code, error)
        self.wake.set()

    def leaving(self, frame: str) -> None:
        """A reply leaves the queue: an unsent bar history whose last answer this is is no longer one to replace."""
        held = self.history_keys.pop(id(frame), None)
        if held is None:
            return
        key, copies = held
        if copies > 1:
            self.history_keys[id(frame)] = (key, copies - 1)
        else:
            del self.histories[key]

    async def pump(self) -> None:
        while True:
            await self.wake.wait()
            self.wake.clear()
            while True:
                if self.account:
                    frame = self.account.popleft()
                elif self.queue and not self.paused and self.closing is None:
                    key, _, _, frame = self.queue.popleft()
                    if not key:
                        self.replies -= 1
                        if self.history_keys:
                            self.leaving(frame)
                else:
                    break
                await self.ws.send(frame)
                self.last_sent = time.monotonic()
                metrics.UPDATES_OUT.inc()
            if self.closing is not None:
                await self.ws.close(*self.closing)
                return


@dataclass
class Follow:
    """The clients following one user, and what was pushed to them."""

    clients: set[Client] = field(default_factory=set)
    recent: OrderedDict[str, None] = field(default_factory=OrderedDict)
    #: decided_at_ms of the newest portfolio frame pushed (an older one is a replayed copy: not pushed)
    as_of_ms: int = -1


def account_frames(outcome: OrderOutcome, outcome_json: str) -> list[str]:
    """The frames one outcome makes: itself, and after an execution what it left of the user's portfolio."""
    frames = ['{"type":"outcome","data":' + outcome_json + "}"]
    if outcome.status == "executed" and outcome.cash_after is not None and outcome.position_after is not None:
        frames.append(json.dumps({"type": "portfolio", "data": {
            "user_id": outcome.user_id, "symbol": outcome.symbol, "cash": str(outcome.cash_after),
            "position": outcome.position_after, "order_id": outcome.order_id, "as_of_ms": outcome.decided_at_ms}}))
    return frames


class MarketDataHub:
    """Fans pub/sub updates out to the clients subscribed to each symbol, and outcomes to their user's clients."""

    def __init__(self, settings: Settings, keys: KeyChecker) -> None:
        self.settings = settings
        self.redis = aioredis.Redis.from_url(settings.redis.client_url, decode_responses=True,
                                             socket_connect_timeout=2, health_check_interval=10)
        #: pub/sub and the catch-up read bytes: a message that is not UTF-8 is then one bad message, where the
        #: decoding client raised it out of the listener
        self.raw = aioredis.Redis.from_url(settings.redis.client_url, socket_connect_timeout=2,
                                           health_check_interval=10)
        self.keys = keys
        #: set (on the loop) once the outcome feed is positioned: account subscriptions wait for it here, not in an
        #: executor thread each (a few of them at start held every thread the key lookups need)
        self.feed_ready = asyncio.Event()
        self.by_symbol: dict[str, set[Client]] = {}
        self.by_bars: dict[str, set[Client]] = {}  # "SYMBOL|interval" → clients
        self.by_user: dict[str, Follow] = {}
        self.clients: set[Client] = set()
        #: per subscribed symbol, the (run_id, seq) of the newest tick fanned out: what a catch-up after a pub/sub
        #: reconnect compares the cache with
        self.fanned: dict[str, tuple[int, int]] = {}
        self.bars_fanned: dict[str, int] = {}  # "SYMBOL|interval" → window start of the newest bar fanned out
        self.checked_bars = CheckedBars(CHECKED_BARS)

    async def listen(self) -> None:
        """Forward every price and bar update to its subscribers; reconnect to Redis with backoff if it drops."""
        backoff = 0.1
        while True:
            pubsub = self.raw.pubsub()
            try:
                await pubsub.psubscribe(CHANNEL_PATTERN, BARS_PATTERN)
                await self._catch_up()
                backoff = 0.1  # listening again: a later drop starts its backoff over
                burst = 0
                async for msg in pubsub.listen():
                    if msg.get("type") != "pmessage":
                        continue
                    burst += 1
                    if burst % 64 == 0:
                        # Updates arrive in bursts (one consume batch at a time); let the client pumps run so a
                        # client that keeps up is never conflated just because the burst was read in one go.
                        await asyncio.sleep(0)
                    self._on_message(msg["channel"], msg["data"])
            except (aioredis.RedisError, OSError) as exc:  # a refused command too: the feed must outlive it
                log.warning("redis pub/sub lost, reconnecting", extra={"error": str(exc), "backoff_s": backoff})
                await asyncio.sleep(backoff)  # pacing a reconnect, not waiting for a condition
                backoff = min(backoff * 2, 2.0)
            finally:
                try:
                    await pubsub.aclose()
                except (aioredis.RedisError, OSError):
                    pass

    def _on_message(self, channel: bytes, data: bytes) -> None:
        """Fan out one published message. A value that is not ours is skipped where it is read (`_read`); this
        guards against a fault of ours, which must not end the feed for every client either."""
        try:
            self._message(channel, data)
        except Exception:
            log.exception("a published message could not be fanned out",
                          extra={"channel": channel[:100].decode(errors="replace")})

    def _message(self, name: bytes, raw: bytes) -> None:
        channel = _read(name[:100].decode(errors="replace"), read_text, name)
        if channel is None:
            return
        if channel.startswith(BARS_PREFIX):
            symbol, interval = parse_channel(channel)
            key = bar_key(symbol, interval)
            bar = _read(channel, read_bar, raw, symbol, interval) if key in self.by_bars else None
            if bar is not None:
                self._fan_bar(key, bar[0].window_start_ms, bar[1])
            return
        symbol = channel[len(CHANNEL_PREFIX):]
        subs = self.by_symbol.get(symbol)
        hit = _read(channel, read_tick, raw, symbol) if subs else None
        if subs and hit is not None:
            tick, data = hit
            order = (tick.run_id, tick.seq)
            self.fanned[symbol] = max(self.fanned.get(symbol, order), order)
            frame = '{"type":"tick","data":' + data + "}"
            _fan_out(subs, frame, (symbol, *order, frame))

    async def _catch_up(self) -> None:
        """Send subscribers what moved while pub/sub was not listening (Redis restarted, the connection dropped):
        each symbol's cached price if newer than the last one fanned out, and each bar key's newer bars. What was
        published then reached no one, and a feed that has paused would leave them stale until its next update.
        Runs once the patterns are subscribed again, so every later update comes through pub/sub; the clients'
        floors drop the copies of what this sends. Best effort: an entry that cannot be read is skipped."""
        symbols = list(self.by_symbol)
        bar_keys = list(self.by_bars)
        if not symbols and not bar_keys:
            return
        pipe = self.raw.pipeline(transaction=False)
        for s in symbols:
            pipe.hget(price_key(s), "tick")
        for key in bar_keys:
            symbol, _, interval = key.partition(BAR_KEY_SEPARATOR)
            # a key with none fanned out yet had no history when subscribed: every bar cached since is new to it
            after = self.bars_fanned.get(key)
            pipe.zrangebyscore(bars_key(symbol, interval), "-inf" if after is None else f"({after}", "+inf")
        got: list[Any] = await pipe.execute(raise_on_error=False)  # a wrong-typed key fails alone
        moved = 0
        for key, new in zip(bar_keys, got[len(symbols):], strict=True):
            if not isinstance(new, list):
                continue
            symbol, _, interval = key.partition(BAR_KEY_SEPARATOR)
            # oldest first, each newer than what the key's subscribers got
            bars = [b for b in (_read(bars_key(symbol, interval), read_bar, raw, symbol, interval) for raw in new)
                    if b is not None]
            for bar, text in bars:
                self._fan_bar(key, bar.window_start_ms, text)
            if bars:
                for client in self.by_bars.get(key, ()):
                    client.raise_floor(key, (0, bars[-1][0].window_start_ms))
                moved += 1
        for s, raw in zip(symbols, got[:len(symbols)], strict=True):
            subs = self.by_symbol.get(s)
            hit = _read(price_key(s), read_tick, raw, s) if isinstance(raw, bytes) and subs else None
            if not subs or hit is None:
                continue
            tick, text = hit
            run, seq = tick.run_id, tick.seq
            if (run, seq) <= self.fanned.get(s, (-1, -1)):
                continue  # nothing missed (or the cache restarted emptier: its next tick comes through pub/sub)
            self.fanned[s] = (run, seq)
            frame = '{"type":"tick","data":' + text + "}"
            _fan_out(list(subs), frame, (s, run, seq, frame))
            for client in subs:
                client.raise_floor(s, (run, seq))
            moved += 1
        if moved:
            log.info("caught up after a pub/sub reconnect", extra={"updated": moved})

    def _fan_bar(self, key: str, start: int, data: str) -> None:
        """Queue a bar (its window start and JSON text) to the key's subscribers."""
        subs = self.by_bars.get(key)
        if subs:
            self.bars_fanned[key] = max(self.bars_fanned.get(key, start), start)
            update = (key, 0, start, '{"type":"bar","data":' + data + "}")
            for client in list(subs):
                if not (client.floor and client.below_floor(update)):
                    client.offer(update)

    async def subscribe_bars(self, client: Client, symbols: list[str], interval: str) -> None:
        """Register, then send each symbol's recent bars; queued bars the history covers are dropped, so the
        client sees the history and then strictly newer bars (as for price snapshots). A symbol with no bars yet
        is taken (its first bar comes live), so a connection holds at most MAX_SYMBOLS of them per interval."""
        keys = [bar_key(s, interval) for s in symbols]
        held = sum(1 for k in client.bars if k.endswith(bar_key("", interval)))
        if held + len(set(keys) - client.bars) > MAX_SYMBOLS:
            if not client.count_bad_frame(time.monotonic()):
                client.send_now(_error("bad_request", f"at most {MAX_SYMBOLS} bar subscriptions per interval on one "
                                                      "connection; unsubscribe_bars some first"))
            return
        client.paused = True
        added = [k for k in keys if k not in client.bars]
        # keys other clients follow already: what they got is what a catch-up goes on from, not this history
        shared = {k for k in keys if self.by_bars.get(k, set()) - {client}}
        try:
            for key in keys:
                client.bars.add(key)
                self.by_bars.setdefault(key, set()).add(client)
            pipe = self.raw.pipeline(transaction=False)  # bytes: each bar is decoded (or skipped) alone
            for s in symbols:
                pipe.zrange(bars_key(s, interval), -BARS_KEPT, -1)
            try:
                histories: list[Any] = await pipe.execute()
            except BaseException:  # as for prices: a refused subscription holds nothing
                self.unsubscribe_bars(client, added)
                raise
            covered: dict[str, int] = {}
            frames: list[Update] = []
            by_key: dict[str, str] = {}  # the histories, for splice
            checked = 0
            for s, key, stored in zip(symbols, keys, histories, strict=True):
                if checked >= HISTORY_SLICE:  # let the fan-out run between slices of a long check
                    checked = 0
                    await asyncio.sleep(0)
                # a bar not ours to show is left out; before, one made the frame no JSON (or a bar a client
                # cannot read, which lost it the whole history), one nested too deep ended the connection
                bars, more = self.checked_bars.read(key, stored, s, interval)
                checked += more
                if bars:
                    covered[key] = bars[-1][0]
                head = json.dumps({"type": "bars", "symbol": s, "interval": interval})[:-1]
                by_key[key] = head + ',"data":[' + ",".join(t for _, t in bars) + "]}"  # bars stay as stored
                frames.append(("", 0, 0, by_key[key]))
            client.splice(frames, lambda u: u[0] in covered and u[2] <= covered[u[0]], by_key)
            for key, start in covered.items():  # a bar still on its way from pub/sub is not sent after its history
                client.raise_floor(key, (0, start))
                if key not in shared:  # (a review: raised by a newcomer during a pub/sub outage, the catch-up
                    # skipped the bars the earlier subscribers missed)
                    self.bars_fanned[key] = max(self.bars_fanned.get(key, start), start)
        finally:
            client.paused = False
            client.wake.set()

    def unsubscribe_bars(self, client: Client, keys: list[str]) -> None:
        _drop(self.by_bars, client.bars, client, keys)
        client.forget(keys)
        for key in keys:
            if key not in self.by_bars:
                self.bars_fanned.pop(key, None)

    async def heartbeat(self) -> None:
        """Tell quiet connections they are alive: a client that got any frame lately knows that already, and a
        heartbeat to 1,000 busy clients at once is a burst they must read before the next price."""
        # Checked every quarter for a half's quiet: no connection waits longer than three quarters and the loop's
        # lag, within heartbeat_s even when 1,000 clients make the fan-out slow.
        half = self.settings.marketdata.heartbeat_s / 2
        while True:
            await asyncio.sleep(half / 2)
            now = time.monotonic()
            quiet = [c for c in self.clients if now - c.last_sent >= half]
            if quiet:
                frame = json.dumps({"type": "heartbeat", "ts_ms": int(time.time() * 1000)})
                # Broadcast, not queued: 1,000 pumps woken at once held the next ticks back by tens of ms.
                _fan_out(quiet, frame, None)

    async def subscribe(self, client: Client, symbols: list[str], *, counted: bool = False) -> None:
        """`counted`: the frame was already counted as bad (it named malformed symbols too): once per frame."""
        known_flags = await self.redis.smismember(SYMBOLS_KEY, symbols) if symbols else []
        known = [s for s, k in zip(symbols, known_flags, strict=True) if k]
        unknown = [s for s, k in zip(symbols, known_flags, strict=True) if not k]
        # each costs a lookup: a loop is bad too
        if unknown and ((client.closing is None) if counted else not client.count_bad_frame(time.monotonic())):
            client.send_now(json.dumps({"type": "error", "code": "unknown_symbol", "symbols": unknown,
                                        "message": "no price was ever published for these symbols"}))
        if not known:
            return
        # Register first so no update is missed, hold the pump, read the snapshot, then drop queued updates
        # the snapshot already covers: the client sees snapshot then strictly newer ticks.
        client.paused = True
        added = [s for s in known if s not in client.symbols]
        try:
            for s in known:
                client.symbols.add(s)
                self.by_symbol.setdefault(s, set()).add(client)
            pipe = self.raw.pipeline(transaction=False)  # bytes: each price is decoded (or skipped) alone
            for s in known:
                pipe.hget(price_key(s), "tick")
                pipe.hget(price_key(s), "updated_ms")
            try:
                answers: list[Any] = await pipe.execute()
            except BaseException:  # refused (Redis away): not subscribed either, or ticks would come unannounced
                self.unsubscribe(client, added)
                raise
            now_ms = int(time.time() * 1000)
            covered: dict[str, tuple[int, int]] = {}
            frames = []
            for s, snap, written in zip(known, answers[::2], answers[1::2], strict=True):
                if not snap:
                    continue
                # read as the order API reads it (a price out of the schema's bounds is none there); before, such a
                # snapshot ended `tradesim prices`, and one nested too deep the connection
                hit = _read(price_key(s), read_tick, snap, s)
                if hit is None:  # not ours to show: no snapshot; the next tick comes live
                    continue
                tick, text = hit
                age_ms = price_age_ms(written_ms(written), now_ms)
                covered[s] = (tick.run_id, tick.seq)
                frames.append(("", 0, 0, '{"type":"snapshot","data":' + text + f',"age_ms":{age_ms}' + "}"))
            for s, order in covered.items():  # and a tick still on its way from pub/sub is not sent after it
                client.raise_floor(s, order)
            ack = ("", 0, 0, json.dumps({"type": "subscribed", "symbols": known}))
            client.splice([ack, *frames], lambda u: u[0] in covered and (u[1], u[2]) <= covered[u[0]])
        finally:
            client.paused = False
            client.wake.set()

    def unsubscribe(self, client: Client, symbols: list[str]) -> None:
        _drop(self.by_symbol, client.symbols, client, symbols)
        client.forget(symbols)
        for s in symbols:
            if s not in self.by_symbol:
                self.fanned.pop(s, None)

    def push_outcomes(self, batch: list[Outcome]) -> None:
        """Queue each outcome (and its portfolio frame) to the clients following its user; runs on the loop."""
        for outcome, text in batch:
            follow = self.by_user.get(outcome.user_id)
            if follow is None or outcome.order_id in follow.recent:
                continue
            follow.recent[outcome.order_id] = None
            if len(follow.recent) > RECENT_ORDERS:
                follow.recent.popitem(last=False)
            frames = account_frames(outcome, text)
            if len(frames) > 1:
                if outcome.decided_at_ms < follow.as_of_ms:
                    frames.pop()  # a replayed copy of an older decision: its portfolio is not the current one
                else:
                    follow.as_of_ms = outcome.decided_at_ms
            for client in list(follow.clients):
                if client.offer_account(frames):
                    metrics.OUTCOMES_PUSHED.inc()
                else:
                    metrics.ACCOUNT_OVERFLOWS.inc()
                    log.warning("account client fell behind, closing it", extra={
                        "user_id": outcome.user_id, "limit": ACCOUNT_QUEUE})
                    self.unfollow(client)

    async def follow(self, client: Client, api_key: str) -> None:
        """Authenticate the key and follow its user; refusals end the connection (unauthorized / unavailable)."""
        if client.user_id is not None:
            client.send_now(_error("bad_request", f"this connection follows {client.user_id!r} already; open "
                                   "another connection for another account"))
            return
        if not self.feed_ready.is_set():
            try:
                await asyncio.wait_for(self.feed_ready.wait(), FEED_WAIT_S)
            except TimeoutError:
                metrics.ACCOUNT_AUTH_FAILURES.labels("unavailable").inc()
                client.close_with(CloseCode.INTERNAL_ERROR, "unavailable", "the outcome feed is not running yet; retry")
                return
        try:
            user_id = await self.keys.user_of(api_key)
        except Refused as exc:
            metrics.ACCOUNT_AUTH_FAILURES.labels(exc.reason).inc()
            message = ("the admin key cannot follow an account; use the user's key" if exc.reason == "admin_key"
                       else "unknown API key")
            client.close_with(CloseCode.POLICY_VIOLATION, "unauthorized", message)
            return
        except Unavailable as exc:
            metrics.ACCOUNT_AUTH_FAILURES.labels("unavailable").inc()
            log.warning("cannot check an API key", extra={"error": str(exc)})
            client.close_with(CloseCode.INTERNAL_ERROR, "unavailable", "cannot check the API key now; retry")
            return
        if client.closing is not None:
            return
        client.user_id, client.api_key = user_id, api_key
        self.by_user.setdefault(user_id, Follow()).clients.add(client)
        metrics.ACCOUNT_CLIENTS.inc()
        # registered and acknowledged in one step of the loop: no outcome read after the ack can miss the client
        client.offer_account([json.dumps({"type": "account", "user_id": user_id})])

    async def recheck_keys(self) -> None:
        """Check the keys of the connections that follow an account again, as the key cache lets them go, and
        close those whose key no longer works (rotated, or the account gone): before, a connection opened with a
        key kept getting that user's fills and cash for as long as it stayed open. A key that cannot be checked
        now keeps its connection (the check comes again)."""
        while True:
            await asyncio.sleep(max(KEY_RECHECK_MIN_S, self.settings.api.auth_cache_s))
            await self.recheck_keys_once()

    async def recheck_keys_once(self) -> None:
        """One pass of `recheck_keys`. Each key is looked up in DynamoDB, not in the key cache: an entry cached
        since the last pass (a connection opened meanwhile) let a rotated key through this pass too, so its
        connections stayed open up to twice `api.auth_cache_s` after the rotation."""
        keys = {c.api_key for follow in self.by_user.values() for c in follow.clients if c.api_key}
        owners: dict[str, str | None] = {}
        for key in keys:  # each key once, however many connections share it
            try:
                owners[key] = await self.keys.user_of(key, fresh=True)
            except Refused:
                owners[key] = None
            except Exception as exc:  # noqa: BLE001 - cannot check now (DynamoDB away): the next pass does
                log.warning("cannot check the account connections' keys again", extra={"error": str(exc)})
                break
        for client in [c for follow in self.by_user.values() for c in follow.clients]:
            if client.api_key in owners and owners[client.api_key] != client.user_id and client.closing is None:
                metrics.ACCOUNT_AUTH_FAILURES.labels("revoked").inc()
                self.unfollow(client)
                client.close_with(CloseCode.POLICY_VIOLATION, "unauthorized",
                                  "the API key no longer works (rotated?); connect again with the new key")

    def unfollow(self, client: Client) -> None:
        follow = self.by_user.get(client.user_id or "")
        if follow is None or client not in follow.clients:
            return
        follow.clients.discard(client)
        metrics.ACCOUNT_CLIENTS.dec()
        if not follow.clients:
            del self.by_user[client.user_id or ""]

    async def handle(self, ws: ServerConnection) -> None:
        sock = ws.transport.get_extra_info("socket")
        if sock is not None:
            # Keep the kernel's send buffer small: prices parked there are stale and cannot be conflated, so a
            # slow client should back up into its own queue (where it gets the latest price) instead.
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_SNDBUF, SEND_BUFFER)
        client = Client(ws, self.settings.marketdata.client_queue)
        self.clients.add(client)
        metrics.CLIENTS.inc()
        pump = create_task(client.pump(), name=f"ws-pump-{id(ws)}")
        try:
            async for raw in ws:
                await self._on_frame(client, raw)
        except ConnectionClosed:
            pass
        finally:
            pump.cancel()
            self.unfollow(client)
            self.unsubscribe(client, list(client.symbols))
            self.unsubscribe_bars(client, list(client.bars))
            self.clients.discard(client)
            metrics.CLIENTS.dec()

    async def _on_frame(self, client: Client, raw: str | bytes) -> None:
        def error(message: str) -> None:
            if not client.count_bad_frame(time.monotonic()):
                client.send_now(json.dumps({"type": "error", "code": "bad_request", "message": message}))

        if client.closing is not None:
            return None
        if isinstance(raw, bytes):
            return error("binary frames are not supported; send JSON text")
        try:
            doc = json.loads(raw)
        except ValueError:
            return error("not JSON")
        except RecursionError:  # nested deeper than the interpreter's stack, well within MAX_FRAME
            return error("not JSON: nested too deep")
        if isinstance(doc, dict) and doc.get("op") == "account":
            key = doc.get("api_key")
            if not isinstance(key, str) or not 0 < len(key) <= MAX_KEY or not is_header_safe(key):
                return error(f"api_key must be a non-empty printable ASCII string without spaces, of at most "
                             f"{MAX_KEY} characters")
            return await self.follow(client, key)
        if not isinstance(doc, dict) or doc.get("op") not in ("subscribe", "unsubscribe", "subscribe_bars",
                                                              "unsubscribe_bars"):
            return error('expected {"op": "subscribe"|"unsubscribe", "symbols": [...]}, '
                         '{"op": "subscribe_bars"|"unsubscribe_bars", "symbols": [...], "interval": "1s"|"1m"} '
                         'or {"op": "account", "api_key": "..."}')
        symbols = doc.get("symbols")
        if (not isinstance(symbols, list) or not symbols or len(symbols) > MAX_SYMBOLS
                or not all(isinstance(s, str) and 0 < len(s) <= 16 for s in symbols)):
            return error(f"symbols must be a non-empty list of at most {MAX_SYMBOLS} symbol strings")
        if doc["op"] in ("subscribe_bars", "unsubscribe_bars") and doc.get("interval") not in BAR_INTERVALS:
            return error(f"interval must be one of {', '.join(BAR_INTERVALS)}")
        try:
            return await self._subscription(client, doc, symbols)
        except aioredis.RedisError as exc:  # Redis restarting: the request fails, the connection stays
            log.warning("a subscription failed on Redis", extra={"error": str(exc)})
            client.send_now(_error("unavailable", "the price cache is unavailable; subscribe again shortly"))
            return None

    async def _subscription(self, client: Client, doc: dict[str, Any], symbols: list[str]) -> None:
        wanted = sorted({typed_symbol(s) or s for s in symbols})  # what is not one is refused just below
        malformed = [s for s in wanted if not is_symbol(s)]
        if malformed:  # never priced, and kept away from Redis (a lone surrogate cannot even be encoded)
            wanted = [s for s in wanted if s not in malformed]
            if doc["op"] in ("subscribe", "subscribe_bars") and not client.count_bad_frame(time.monotonic()):
                client.send_now(json.dumps({"type": "error", "code": "unknown_symbol", "symbols": malformed,
                                            "message": "not symbols: a letter, then up to 15 letters, digits, "
                                            "'.' or '-'"}))
            if not wanted and doc["op"] in ("subscribe", "subscribe_bars"):
                return None  # answered just above; an unsubscribe is always confirmed (of what it could name)
        if doc["op"] in ("subscribe_bars", "unsubscribe_bars"):
            interval = str(doc["interval"])
            if doc["op"] == "subscribe_bars":
                await self.subscribe_bars(client, wanted, interval)
            else:
                self.unsubscribe_bars(client, [bar_key(s, interval) for s in wanted])
                client.send_now(json.dumps({"type": "unsubscribed_bars", "symbols": wanted, "interval": interval}))
            return None
        if doc["op"] == "subscribe":
            await self.subscribe(client, wanted, counted=bool(malformed))
        else:
            self.unsubscribe(client, wanted)
            client.send_now(json.dumps({"type": "unsubscribed", "symbols": wanted}))
        return None


async def run_server(hub: MarketDataHub, stop: asyncio.Event) -> None:
    settings = hub.settings
    listener = create_task(hub.listen(), name="redis-listener")
    beat = create_task(hub.heartbeat(), name="heartbeat")
    keys = create_task(hub.recheck_keys(), name="key-recheck")
    md = settings.marketdata
    # compression=None: per-message deflate would compress every frame once per client (the fan-out's main
    # cost) and keep a zlib context per connection, for ~250-byte JSON frames that barely compress.
    server: Server = await serve(hub.handle, md.host, md.ws_port, max_size=MAX_FRAME, ping_interval=20,
                                 ping_timeout=20, max_queue=64, compression=None)
    log.info("websocket server listening", extra={"url": redacted(md.client_ws_url)})
    try:
        await stop.wait()
    finally:
        server.close()
        await server.wait_closed()
        listener.cancel()
        beat.cancel()
        keys.cancel()
        await hub.redis.aclose()
        await hub.raw.aclose()
