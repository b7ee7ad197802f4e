"""A fleet of WebSocket clients in one process (run as a subprocess so it does not share the server's GIL).

Usage: python -m benchmarks.ws_clients URL SYMBOL CLIENTS EXPECTED_LAST_SEQ MODE [TIMEOUT_S]
MODE "tradesim" sends the subscribe op; "bare" just listens. Prints {"event": "ready"} once every client is in,
then one JSON line with the results (and every sampled latency, so a caller can pool rounds); if a client cannot
get ready, one {"event": "error"} line instead, and exits 1.
Latency = receive wall time - the tick's event_time_ms (the benchmark stamps ticks with wall time).

The clients speak just enough RFC 6455 on a bare asyncio protocol (no per-connection task or queue): the fleet is
the instrument, and one that needs most of a core to read 20,000 frames/s queues frames behind each other and
adds its own backlog to both sides' latencies.
"""

from __future__ import annotations

import asyncio
import base64
import json
import os
import sys
import time
from collections.abc import Callable
from functools import partial
from typing import Any
from urllib.parse import urlsplit

CONTINUATION, TEXT, CLOSE, PING, PONG = 0x0, 0x1, 0x8, 0x9, 0xA


class FleetError(Exception):
    """Some client could not connect or subscribe."""


def client_frame(opcode: int, payload: bytes) -> bytes:
    """A masked frame, as a client must send (RFC 6455 5.3); payloads here are short control or subscribe ops."""
    if len(payload) > 125:
        raise ValueError("client frames here stay under 126 bytes")
    mask = os.urandom(4)
    return bytes([0x80 | opcode, 0x80 | len(payload)]) + mask + bytes(b ^ mask[i % 4] for i, b in enumerate(payload))


def parse_frames(buf: bytearray) -> tuple[list[tuple[bool, int, bytes]], int]:
    """The whole (unmasked: a server's) frames at the start of `buf` as (final, opcode, payload), and the bytes
    used."""
    frames = []
    pos, end = 0, len(buf)
    while end - pos >= 2:
        final, opcode, size, head = bool(buf[pos] & 0x80), buf[pos] & 0x0F, buf[pos + 1] & 0x7F, 2
        if size == 126:
            if end - pos < 4:
                break
            size, head = int.from_bytes(buf[pos + 2:pos + 4], "big"), 4
        elif size == 127:
            if end - pos < 10:
                break
            size, head = int.from_bytes(buf[pos + 2:pos + 10], "big"), 10
        if end - pos < head + size:
            break
        frames.append((final, opcode, bytes(buf[pos + head:pos + head + size])))
        pos += head + size
    return frames, pos


class Fleet:
    def __init__(self, n: int) -> None:
        self.n = n
        self.frames = 0
        self.connected = 0  # connected, and subscribed where the mode subscribes
        self.finished = 0  # done, closed or lost
        self.failure: str | None = None  # why the first client that never got ready did not
        self.clients: list[Client] = []
        self.latencies: list[float] = []
        self.done: list[float] = []
        self.ready = asyncio.Event()
        self.over = asyncio.Event()

    def joined(self) -> None:
        self.connected += 1
        if self.connected == self.n:
            self.ready.set()

    def fail(self, reason: str) -> None:
        """A client will never be ready: stop waiting for the rest, and say why."""
        if self.failure is None:
            self.failure = reason
        self.ready.set()

    def finish(self) -> None:
        self.finished += 1
        if self.finished == self.n:
            self.over.set()


class Client(asyncio.Protocol):
    def __init__(self, fleet: Fleet, url: str, subscribe: bytes | None, last_seq: int, sample: bool) -> None:
        self.fleet = fleet
        self.url = urlsplit(url)
        self.subscribe = subscribe
        self.last = (f'"seq":{last_seq},'.encode(), f'"seq":{last_seq}}}'.encode())  # the next field, or the end
        self.sample = sample
        self.buf = bytearray()
        self.open = False
        self.joined = False
        self.over = False
        self.transport: asyncio.Transport | None = None

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        assert isinstance(transport, asyncio.Transport)
        self.transport = transport
        key = base64.b64encode(os.urandom(16)).decode()
        transport.write((f"GET {self.url.path or '/'} HTTP/1.1\r\nHost: {self.url.netloc}\r\nUpgrade: websocket\r\n"
                         f"Connection: Upgrade\r\nSec-WebSocket-Key: {key}\r\nSec-WebSocket-Version: 13\r\n\r\n")
                        .encode())

    def data_received(self, data: bytes) -> None:
        now = time.time() * 1000
        self.buf += data
        if not self.open:
            head_end = self.buf.find(b"\r\n\r\n")
            if head_end < 0:
                return
            if not self.buf.startswith(b"HTTP/1.1 101"):
                self._end(f"refused: {bytes(self.buf[:head_end]).decode(errors='replace').splitlines()[0]}")
                return
            del self.buf[:head_end + 4]
            self.open = True
            if self.subscribe is None:
                self._join()
            else:
                self._send(TEXT, self.subscribe)
        frames, used = parse_frames(self.buf)
        del self.buf[:used]
        for final, opcode, payload in frames:
            if not final or opcode == CONTINUATION:
                self._end("a fragmented frame (servers here send whole ones; this client does not join them)")
                return
            if opcode == PING:
                self._send(PONG, payload)
            elif opcode == CLOSE:
                self._end("closed by the server")
                return
            elif opcode == TEXT and not self.joined and self.subscribe is not None:
                if b'"subscribed"' in payload[:40]:
                    # ready once the server has the subscription: a feed that starts sooner would find the server
                    # still registering clients (work the bare side does not have) and some clients not yet there
                    self._join()
                elif b'"error"' in payload[:40]:
                    self._end(f"subscription refused: {payload[:200].decode(errors='replace')}")
                    return
            elif opcode == TEXT and b'"tick"' in payload[:40]:
                self.fleet.frames += 1
                # Only the sampled clients parse: parsing frames it does not measure costs the instrument CPU.
                if self.sample:
                    self.fleet.latencies.append(now - json.loads(payload)["data"]["event_time_ms"])
                if self.last[0] in payload or self.last[1] in payload:
                    self.fleet.done.append(time.monotonic())
                    self._end()
                    return

    def connection_lost(self, exc: Exception | None) -> None:
        self._end(f"connection lost: {exc or 'closed'}")

    def _send(self, opcode: int, payload: bytes) -> None:
        if self.transport is not None:
            self.transport.write(client_frame(opcode, payload))

    def _join(self) -> None:
        self.joined = True
        self.fleet.joined()

    def _end(self, reason: str = "") -> None:
        if not self.over:
            self.over = True
            if not self.joined:
                self.fleet.fail(reason or "ended before it was ready")
            self.fleet.finish()
            if self.transport is not None:
                self.transport.close()


async def run(url: str, symbol: str, n: int, last_seq: int, mode: str, timeout_s: float,
              on_ready: Callable[[], None]) -> dict[str, Any]:
    """Connect `n` clients, call `on_ready` once all are in (and subscribed), and return when each saw `last_seq`
    (or left, or `timeout_s` passed). FleetError if a client could not get ready."""
    parts = urlsplit(url)
    if parts.scheme != "ws" or not parts.hostname:
        raise FleetError(f"{url}: only ws://host[:port]/path URLs (no TLS)")
    fleet = Fleet(n)
    subscribe = json.dumps({"op": "subscribe", "symbols": [symbol]}).encode() if mode == "tradesim" else None

    def client(sample: bool) -> Client:
        fleet.clients.append(Client(fleet, url, subscribe, last_seq, sample))
        return fleet.clients[-1]

    try:
        return await _measure(fleet, url, parts.hostname, parts.port or 80, client, timeout_s, on_ready)
    finally:
        for c in fleet.clients:  # whatever is still connected (all of them when a client failed)
            if c.transport is not None:
                c.transport.close()


async def _measure(fleet: Fleet, url: str, host: str, port: int, client: Callable[[bool], Client],
                   timeout_s: float, on_ready: Callable[[], None]) -> dict[str, Any]:
    loop = asyncio.get_running_loop()
    n = fleet.n

    for i in range(n):
        # Every client recording latency would cost the client process more than the server: sample 1 in 10.
        try:
            await loop.create_connection(partial(client, i % 10 == 0), host, port)
        except OSError as exc:
            raise FleetError(f"client {i} could not connect to {url}: {exc}") from exc
        if i % 50 == 49:
            await asyncio.sleep(0.01)  # do not SYN-flood the listen backlog
    try:
        await asyncio.wait_for(fleet.ready.wait(), timeout=120)
    except TimeoutError:
        raise FleetError(f"{n - fleet.connected} of {n} clients not ready after 120 s") from None
    if fleet.failure is not None:
        raise FleetError(fleet.failure)
    on_ready()
    start = time.monotonic()
    try:
        await asyncio.wait_for(fleet.over.wait(), timeout_s)
    except TimeoutError:
        pass
    end = max(fleet.done) if fleet.done else time.monotonic()
    # the samples, not percentiles: the caller pools processes and rounds and takes them (benchmarks.stats)
    return {"event": "result", "frames": fleet.frames, "clients_done": len(fleet.done), "seconds": end - start,
            "samples": len(fleet.latencies), "latencies": fleet.latencies}


def main() -> None:
    url, symbol, n, last_seq, mode = sys.argv[1], sys.argv[2], int(sys.argv[3]), int(sys.argv[4]), sys.argv[5]
    timeout_s = float(sys.argv[6]) if len(sys.argv) > 6 else 120
    try:
        result = asyncio.run(run(url, symbol, n, last_seq, mode, timeout_s,
                                 lambda: print(json.dumps({"event": "ready"}), flush=True)))
    except FleetError as exc:  # one line the caller shows (it reads the first line for "ready")
        print(json.dumps({"event": "error", "message": str(exc)}), flush=True)
        sys.exit(1)
    print(json.dumps(result), flush=True)


if __name__ == "__main__":
    main()
