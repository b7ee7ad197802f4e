"""A fleet of WebSocket clients in one process (run as a subprocess so it does not share the server's GIL).

Usage: python -m benchmarks.ws_clients URL SYMBOL CLIENTS EXPECTED_LAST_SEQ MODE [TIMEOUT_S]
MODE "tradesim" sends the subscribe op; "bare" just listens. Prints one JSON line with the results (and every
sampled latency, so a caller can pool rounds).
Latency = receive wall time - the tick's event_time_ms (the benchmark stamps ticks with wall time).
"""

from __future__ import annotations

import asyncio
import json
import sys
import time

from websockets.asyncio.client import connect


async def _client(url: str, symbol: str, mode: str, last_seq: int, ready: asyncio.Event, counter: list[int],
                  latencies: list[float], done: list[float], sample: bool) -> None:
    async with connect(url, max_queue=None, open_timeout=60, ping_interval=None) as ws:
        if mode == "tradesim":
            await ws.send(json.dumps({"op": "subscribe", "symbols": [symbol]}))
        counter[1] += 1
        if counter[1] == counter[2]:
            ready.set()
        last = (f'"seq":{last_seq},', f'"seq":{last_seq}}}')  # followed by the next field, or the end
        async for raw in ws:
            now = time.time() * 1000
            if '"tick"' not in raw[:40]:
                continue
            counter[0] += 1
            # Only the sampled clients parse: the fleet is the instrument, and one that is busy parsing frames
            # it does not measure adds its own queueing to both sides' latencies.
            if sample:
                latencies.append(now - json.loads(raw)["data"]["event_time_ms"])
            if last[0] in raw or last[1] in raw:
                done.append(time.monotonic())
                return


async def main() -> None:
    url, symbol, n, last_seq, mode = sys.argv[1], sys.argv[2], int(sys.argv[3]), int(sys.argv[4]), sys.argv[5]
    ready = asyncio.Event()
    counter = [0, 0, n]  # frames received, clients connected, clients wanted
    latencies: list[float] = []
    done: list[float] = []
    tasks = []
    for i in range(n):
        # Every client records latency would cost the client process more than the server: sample 1 in 10.
        tasks.append(asyncio.create_task(_client(url, symbol, mode, last_seq, ready, counter, latencies, done,
                                                 sample=i % 10 == 0)))
        if i % 50 == 49:
            await asyncio.sleep(0.01)  # do not SYN-flood the listen backlog
    await asyncio.wait_for(ready.wait(), timeout=120)
    print(json.dumps({"event": "ready"}), flush=True)
    start = time.monotonic()
    await asyncio.wait(tasks, timeout=float(sys.argv[6]) if len(sys.argv) > 6 else 120)
    end = max(done) if done else time.monotonic()
    latencies.sort()

    def pct(p: float) -> float | None:
        return latencies[min(len(latencies) - 1, int(p * len(latencies)))] if latencies else None

    print(json.dumps({"event": "result", "frames": counter[0], "clients_done": len(done), "seconds": end - start,
                      "p50_ms": pct(0.50), "p99_ms": pct(0.99), "samples": len(latencies),
                      "latencies": latencies}), flush=True)


if __name__ == "__main__":
    asyncio.run(main())
