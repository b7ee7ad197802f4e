"""The library's own limit: a bare `websockets` server that broadcasts frames to every client, no tradesim logic.

Usage: python -m benchmarks.bare_broadcast HOST PORT; then write "SYMBOL COUNT RATE" on stdin to broadcast
COUNT tick frames (rate 0 = as fast as possible), stamped with wall time like the tradesim run.
"""

from __future__ import annotations

import asyncio
import sys
import time

from websockets.asyncio.server import broadcast, serve

from tradesim.testing.factories import tick


async def main() -> None:
    host, port = sys.argv[1], int(sys.argv[2])
    clients = set()

    async def handler(ws) -> None:  # noqa: ANN001
        clients.add(ws)
        try:
            await ws.wait_closed()
        finally:
            clients.discard(ws)

    async with serve(handler, host, port, ping_interval=None, compression=None):  # same as the service
        print("listening", flush=True)
        loop = asyncio.get_running_loop()
        reader = asyncio.StreamReader()
        await loop.connect_read_pipe(lambda: asyncio.StreamReaderProtocol(reader), sys.stdin)
        while line := await reader.readline():
            symbol, count, rate = line.decode().split()
            interval = 1 / float(rate) if float(rate) > 0 else 0.0
            next_at = time.monotonic()
            for seq in range(1, int(count) + 1):
                t = tick(symbol, seq, event_time_ms=int(time.time() * 1000))
                broadcast(clients, '{"type":"tick","data":' + t.model_dump_json() + "}")
                if interval:
                    next_at += interval
                    await asyncio.sleep(max(0.0, next_at - time.monotonic()))
                elif seq % 64 == 0:
                    await asyncio.sleep(0)
            print("sent", flush=True)


if __name__ == "__main__":
    asyncio.run(main())
