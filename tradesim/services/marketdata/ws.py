"""WebSocket push: snapshot from Redis first, then every update through Redis pub/sub.

Protocol (JSON text frames):
  client → {"op": "subscribe", "symbols": ["AAPL", ...]} | {"op": "unsubscribe", "symbols": [...]}
  server → {"type": "subscribed", "symbols": [...]}
           {"type": "snapshot", "data": <tick>}   once per symbol on subscribe (if it has a price)
           {"type": "tick", "data": <tick>}       every update after the snapshot, in (run_id, seq) order
           {"type": "heartbeat", "ts_ms": ...}    every heartbeat_s
           {"type": "error", "code": "bad_request" | "unknown_symbol", "message": ..., "symbols"?: [...]}
A protocol error is answered with an error frame and the connection stays usable. Binary frames are refused
with an error frame; frames over 64 KiB close the connection with 1009 (message too big).

Each client has a bounded queue: a client that keeps up gets every update; when its queue is full it is
conflated to the latest update per symbol (counted as drops), so a slow client gets the latest price and never
holds up others.
"""

from __future__ import annotations

import asyncio
import json
import logging
import socket
import time
from collections import deque
from typing import Any

import redis.asyncio as aioredis
from websockets.asyncio.server import Server, ServerConnection, broadcast, serve
from websockets.exceptions import ConnectionClosed

from tradesim.adapters.redis.prices import CHANNEL_PATTERN, CHANNEL_PREFIX, SYMBOLS_KEY, price_key
from tradesim.services.marketdata import metrics
from tradesim.services.tasks import create_task
from tradesim.settings import Settings

log = logging.getLogger("tradesim.marketdata.ws")
MAX_FRAME = 64 * 1024
MAX_SYMBOLS = 500
SEND_BUFFER = 64 * 1024
#: bytes a client may have pending in user space before its updates go through its conflating queue instead
DIRECT_BACKLOG = 64 * 1024

Update = tuple[str, int, int, str]  # symbol, run_id, seq, frame


def _order(tick_json: str) -> tuple[str, int, int]:
    doc = json.loads(tick_json)
    return doc["symbol"], int(doc.get("run_id", 0)), int(doc["seq"])


class Client:
    def __init__(self, ws: ServerConnection, limit: int) -> None:
        self.ws = ws
        self.limit = limit
        self.symbols: set[str] = set()
        self.queue: deque[Update] = deque()
        self.wake = asyncio.Event()
        self.paused = False

    def can_take_directly(self) -> bool:
        transport = self.ws.transport
        return (not self.queue and not self.paused and transport is not None
                and transport.get_write_buffer_size() < DIRECT_BACKLOG)

    def offer(self, update: Update) -> None:
        if len(self.queue) >= self.limit:
            self._conflate()
        self.queue.append(update)
        self.wake.set()

    def _conflate(self) -> None:
        latest: dict[str, Update] = {}
        for u in self.queue:
            latest[u[0]] = u
        metrics.QUEUE_DROPS.inc(len(self.queue) - len(latest))
        self.queue = deque(sorted(latest.values(), key=lambda u: (u[1], u[2])))

    def send_now(self, frame: str) -> None:
        self.queue.append(("", 0, 0, frame))
        self.wake.set()

    async def pump(self) -> None:
        while True:
            await self.wake.wait()
            self.wake.clear()
            while self.queue and not self.paused:
                _, _, _, frame = self.queue.popleft()
                await self.ws.send(frame)
                metrics.UPDATES_OUT.inc()


class MarketDataHub:
    """Fans pub/sub updates out to the clients subscribed to each symbol."""

    def __init__(self, settings: Settings) -> None:
        self.settings = settings
        self.redis = aioredis.Redis.from_url(settings.redis.client_url, decode_responses=True,
                                             socket_connect_timeout=2, health_check_interval=10)
        self.by_symbol: dict[str, set[Client]] = {}
        self.clients: set[Client] = set()

    async def listen(self) -> None:
        """Forward every price update to its subscribers; reconnect to Redis with backoff if it drops."""
        backoff = 0.1
        while True:
            pubsub = self.redis.pubsub()
            try:
                await pubsub.psubscribe(CHANNEL_PATTERN)
                backoff = 0.1
                burst = 0
                async for msg in pubsub.listen():
                    if msg.get("type") != "pmessage":
                        continue
                    burst += 1
                    if burst % 64 == 0:
                        # Updates arrive in bursts (one consume batch at a time); let the client pumps run so a
                        # client that keeps up is never conflated just because the burst was read in one go.
                        await asyncio.sleep(0)
                    subs = self.by_symbol.get(msg["channel"][len(CHANNEL_PREFIX):])
                    if subs:
                        data: str = msg["data"]
                        symbol, run, seq = _order(data)
                        frame = '{"type":"tick","data":' + data + "}"
                        update = (symbol, run, seq, frame)
                        direct = []
                        for client in subs:
                            if client.can_take_directly():
                                direct.append(client.ws)
                            else:
                                client.offer(update)
                        if direct:
                            # Fast path: encode once, write to every client that keeps up (no queue, small
                            # socket backlog); order holds because such clients have nothing queued.
                            broadcast(direct, frame)
                            metrics.UPDATES_OUT.inc(len(direct))
            except (aioredis.ConnectionError, aioredis.TimeoutError, OSError) as exc:
                log.warning("redis pub/sub lost, reconnecting", extra={"error": str(exc), "backoff_s": backoff})
                await asyncio.sleep(backoff)  # pacing a reconnect, not waiting for a condition
                backoff = min(backoff * 2, 2.0)
            finally:
                try:
                    await pubsub.aclose()
                except (aioredis.RedisError, OSError):
                    pass

    async def heartbeat(self) -> None:
        while True:
            await asyncio.sleep(self.settings.marketdata.heartbeat_s)
            frame = json.dumps({"type": "heartbeat", "ts_ms": int(time.time() * 1000)})
            for client in list(self.clients):
                client.send_now(frame)

    async def subscribe(self, client: Client, symbols: list[str]) -> None:
        known_flags = await self.redis.smismember(SYMBOLS_KEY, symbols) if symbols else []
        known = [s for s, k in zip(symbols, known_flags, strict=True) if k]
        unknown = [s for s, k in zip(symbols, known_flags, strict=True) if not k]
        if unknown:
            client.send_now(json.dumps({"type": "error", "code": "unknown_symbol", "symbols": unknown,
                                        "message": "no price was ever published for these symbols"}))
        if not known:
            return
        # Register first so no update is missed, hold the pump, read the snapshot, then drop queued updates
        # the snapshot already covers: the client sees snapshot then strictly newer ticks.
        client.paused = True
        try:
            for s in known:
                client.symbols.add(s)
                self.by_symbol.setdefault(s, set()).add(client)
            pipe = self.redis.pipeline(transaction=False)
            for s in known:
                pipe.hget(price_key(s), "tick")
            snaps: list[Any] = await pipe.execute()
            covered: dict[str, tuple[int, int]] = {}
            frames = []
            for s, snap in zip(known, snaps, strict=True):
                if snap:
                    _, run, seq = _order(snap)
                    covered[s] = (run, seq)
                    frames.append(("", 0, 0, '{"type":"snapshot","data":' + snap + "}"))
            kept = [u for u in client.queue if not (u[0] in covered and (u[1], u[2]) <= covered[u[0]])]
            ack = ("", 0, 0, json.dumps({"type": "subscribed", "symbols": known}))
            client.queue = deque([ack, *frames, *kept])
        finally:
            client.paused = False
            client.wake.set()

    def unsubscribe(self, client: Client, symbols: list[str]) -> None:
        for s in symbols:
            client.symbols.discard(s)
            subs = self.by_symbol.get(s)
            if subs:
                subs.discard(client)
                if not subs:
                    del self.by_symbol[s]

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
            self.unsubscribe(client, list(client.symbols))
            self.clients.discard(client)
            metrics.CLIENTS.dec()

    async def _on_frame(self, client: Client, raw: str | bytes) -> None:
        def error(message: str) -> None:
            client.send_now(json.dumps({"type": "error", "code": "bad_request", "message": message}))

        if isinstance(raw, bytes):
            return error("binary frames are not supported; send JSON text")
        try:
            doc = json.loads(raw)
        except ValueError:
            return error("not JSON")
        if not isinstance(doc, dict) or doc.get("op") not in ("subscribe", "unsubscribe"):
            return error('expected {"op": "subscribe"|"unsubscribe", "symbols": [...]}')
        symbols = doc.get("symbols")
        if (not isinstance(symbols, list) or not symbols or len(symbols) > MAX_SYMBOLS
                or not all(isinstance(s, str) and 0 < len(s) <= 16 for s in symbols)):
            return error(f"symbols must be a non-empty list of at most {MAX_SYMBOLS} symbol strings")
        wanted = sorted({s.upper() for s in symbols})
        if doc["op"] == "subscribe":
            await self.subscribe(client, wanted)
        else:
            self.unsubscribe(client, wanted)
            client.send_now(json.dumps({"type": "unsubscribed", "symbols": wanted}))
        return None


async def run_server(settings: Settings, stop: asyncio.Event) -> None:
    hub = MarketDataHub(settings)
    listener = create_task(hub.listen(), name="redis-listener")
    beat = create_task(hub.heartbeat(), name="heartbeat")
    md = settings.marketdata
    # compression=None: per-message deflate would compress every frame once per client (the fan-out's main
    # cost) and keep a zlib context per connection, for ~250-byte JSON frames that barely compress.
    server: Server = await serve(hub.handle, md.host, md.ws_port, max_size=MAX_FRAME, ping_interval=20,
                                 ping_timeout=20, max_queue=64, compression=None)
    log.info("websocket server listening", extra={"url": md.client_ws_url})
    try:
        await stop.wait()
    finally:
        server.close()
        await server.wait_closed()
        listener.cancel()
        beat.cancel()
        await hub.redis.aclose()
