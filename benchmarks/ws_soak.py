"""A fleet of WebSocket clients for `tradesim bench soak`, in its own process (so it does not share the load
generator's GIL), subscribed to one symbol for a fixed time.

Usage: python -m benchmarks.ws_soak URL SYMBOL CLIENTS SECONDS INTERVAL
Prints {"event": "ready"} once every client is subscribed, then one JSON line per interval: frames received,
tick → client latency p50/p99 (a sample of clients; ticks carry wall time), clients connected, connections lost.
"""

from __future__ import annotations

import asyncio
import json
import sys
import time

from websockets.asyncio.client import connect
from websockets.exceptions import WebSocketException

from benchmarks.stats import percentile


class Fleet:
    def __init__(self, clients: int) -> None:
        self.wanted = clients
        self.connected = 0
        self.lost = 0
        self.frames = 0
        self.latencies: list[float] = []
        self.ready = asyncio.Event()

    async def client(self, url: str, symbol: str, sample: bool) -> None:
        """Receives until cancelled (the end of the run); a connection that ends before is counted as lost."""
        try:
            async with connect(url, max_queue=None, open_timeout=60, ping_interval=None) as ws:
                await ws.send(json.dumps({"op": "subscribe", "symbols": [symbol]}))
                self.connected += 1
                if self.connected == self.wanted:
                    self.ready.set()
                async for raw in ws:
                    if '"tick"' not in str(raw)[:40]:
                        continue
                    self.frames += 1
                    if sample:
                        self.latencies.append(time.time() * 1000 - json.loads(raw)["data"]["event_time_ms"])
            self.lost += 1  # the server closed it
        except (OSError, WebSocketException):
            self.lost += 1
        finally:
            self.connected -= 1

    def report(self) -> dict[str, object]:
        lat, self.latencies = sorted(self.latencies), []
        frames, self.frames = self.frames, 0
        return {"event": "interval", "frames": frames, "connected": self.connected, "lost": self.lost,
                "p50_ms": percentile(lat, 50) if lat else None, "p99_ms": percentile(lat, 99) if lat else None}


async def main() -> None:
    url, symbol, n = sys.argv[1], sys.argv[2], int(sys.argv[3])
    seconds, interval = float(sys.argv[4]), float(sys.argv[5])
    fleet = Fleet(n)
    tasks = []
    for i in range(n):
        # every client timing every frame would cost this process more than the server: sample 1 in 10
        tasks.append(asyncio.create_task(fleet.client(url, symbol, i % 10 == 0)))
        if i % 50 == 49:
            await asyncio.sleep(0.01)  # do not SYN-flood the listen backlog
    await asyncio.wait_for(fleet.ready.wait(), timeout=120)
    print(json.dumps({"event": "ready"}), flush=True)
    start = time.monotonic()
    fleet.report()  # frames before the start do not count
    for k in range(1, int(seconds // interval) + 1):
        await asyncio.sleep(max(0.0, start + k * interval - time.monotonic()))  # the report's pace
        print(json.dumps(fleet.report()), flush=True)
    for t in tasks:
        t.cancel()
    await asyncio.gather(*tasks, return_exceptions=True)


if __name__ == "__main__":
    asyncio.run(main())
