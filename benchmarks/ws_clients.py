"""A fleet of WebSocket clients in one process (run as a subprocess so it does not share the server's GIL).

Usage: python -m benchmarks.ws_clients URL SYMBOL CLIENTS EXPECTED_LAST_SEQ MODE [TIMEOUT_S]
MODE "tradesim" sends the subscribe op; "bare" just listens. Prints one JSON line with the results (and every
sampled latency, so a caller can pool rounds).
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
from typing import Any
from urllib.parse import urlsplit

TEXT, CLOSE, PING, PONG = 0x1, 0x8, 0x9, 0xA


def client_frame(opcode: int, payload: bytes) -> bytes:
    """A masked frame, as a client must send (RFC 6455 5.3); payloads here are short control or subscribe ops."""
    if len(payload) > 125:
        raise ValueError("client frames here stay under 126 bytes")
    mask = os.urandom(4)
    return bytes([0x80 | opcode, 0x80 | len(payload)]) + mask + bytes(b ^ mask[i % 4] for i, b in enumerate(payload))


def parse_frames(buf: bytearray) -> tuple[list[tuple[int, bytes]], int]:
    """The whole (unmasked, unfragmented: servers send those) frames at the start of `buf`, and the bytes used."""
    frames = []
    pos, end = 0, len(buf)
    while end - pos >= 2:
        opcode, size, head = buf[pos] & 0x0F, buf[pos + 1] & 0x7F, 2
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
        frames.append((opcode, bytes(buf[pos + head:pos + head + size])))
        pos += head + size
    return frames, pos


class Fleet:
    def __init__(self, n: int) -> None:
        self.n = n
        self.frames = 0
        self.connected = 0  # connected, and subscribed where the mode subscribes
        self.finished = 0  # done, closed or lost
        self.latencies: list[float] = []
        self.done: list[float] = []
        self.ready = asyncio.Event()
        self.over = asyncio.Event()

    def joined(self) -> None:
        self.connected += 1
        if self.connected == self.n:
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
                self._end()
                return
            del self.buf[:head_end + 4]
            self.open = True
            if self.subscribe is None:
                self.fleet.joined()
            else:
                self._send(TEXT, self.subscribe)
        frames, used = parse_frames(self.buf)
        del self.buf[:used]
        for opcode, payload in frames:
            if opcode == PING:
                self._send(PONG, payload)
            elif opcode == CLOSE:
                self._end()
                return
            elif opcode == TEXT and b'"subscribed"' in payload[:40]:
                # ready once the server has the subscription: a feed that starts sooner would find the server
                # still registering clients (work the bare side does not have) and some clients not yet there
                self.fleet.joined()
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
        self._end()

    def _send(self, opcode: int, payload: bytes) -> None:
        if self.transport is not None:
            self.transport.write(client_frame(opcode, payload))

    def _end(self) -> None:
        if not self.over:
            self.over = True
            self.fleet.finish()
            if self.transport is not None:
                self.transport.close()


async def run(url: str, symbol: str, n: int, last_seq: int, mode: str, timeout_s: float,
              on_ready: Callable[[], None]) -> dict[str, Any]:
    """Connect `n` clients, call `on_ready` once all are in (and subscribed), and return when each saw `last_seq`
    (or left, or `timeout_s` passed)."""
    loop = asyncio.get_running_loop()
    fleet = Fleet(n)
    parts = urlsplit(url)
    subscribe = json.dumps({"op": "subscribe", "symbols": [symbol]}).encode() if mode == "tradesim" else None
    for i in range(n):
        # Every client recording latency would cost the client process more than the server: sample 1 in 10.
        await loop.create_connection(lambda i=i: Client(fleet, url, subscribe, last_seq, sample=i % 10 == 0),
                                     parts.hostname, parts.port)
        if i % 50 == 49:
            await asyncio.sleep(0.01)  # do not SYN-flood the listen backlog
    await asyncio.wait_for(fleet.ready.wait(), timeout=120)
    on_ready()
    start = time.monotonic()
    try:
        await asyncio.wait_for(fleet.over.wait(), timeout_s)
    except TimeoutError:
        pass
    end = max(fleet.done) if fleet.done else time.monotonic()
    latencies = sorted(fleet.latencies)

    def pct(p: float) -> float | None:
        return latencies[min(len(latencies) - 1, int(p * len(latencies)))] if latencies else None

    return {"event": "result", "frames": fleet.frames, "clients_done": len(fleet.done), "seconds": end - start,
            "p50_ms": pct(0.50), "p99_ms": pct(0.99), "samples": len(latencies), "latencies": latencies}


def main() -> None:
    url, symbol, n, last_seq, mode = sys.argv[1], sys.argv[2], int(sys.argv[3]), int(sys.argv[4]), sys.argv[5]
    timeout_s = float(sys.argv[6]) if len(sys.argv) > 6 else 120
    result = asyncio.run(run(url, symbol, n, last_seq, mode, timeout_s,
                             lambda: print(json.dumps({"event": "ready"}), flush=True)))
    print(json.dumps(result), flush=True)


if __name__ == "__main__":
    main()
