"""The TUI in a process of its own, for `tradesim bench tui`: its CPU is then that process's, read from /proc.

    python -m benchmarks.tui_probe --out FILE [--headless] [--profile FILE]

Starts like `tradesim tui` (settings from the environment, the active account, its watchlist). In a terminal it
runs with Textual's real driver; `--headless` uses `App.run_test(headless=True)` (no escape sequences are
rendered or written, so it is cheaper than a terminal). FILE.ready appears once the first price is painted.
SIGUSR1 starts the measured phase, SIGUSR2 (or SIGTERM) writes FILE and exits.
"""

from __future__ import annotations

import time

STARTED_WALL = time.time()  # before the app's imports: process start → first price includes them

import argparse  # noqa: E402 - after the clock above, on purpose
import asyncio  # noqa: E402
import cProfile  # noqa: E402
import gc  # noqa: E402
import json  # noqa: E402
import signal  # noqa: E402
from pathlib import Path  # noqa: E402
from typing import Any  # noqa: E402

SIZE = (120, 36)


class Probe:
    """Counts what the app receives and keeps its paint latencies of the measured phase."""

    def __init__(self, app: Any, out: Path, profile: Path | None) -> None:
        self.app = app
        self.out = out
        self.profile_path = profile
        self.profiler: cProfile.Profile | None = None
        self.quotes = self.outcomes = 0
        self.marked_at: float | None = None
        self.counts_at_mark = (0, 0, 0)
        self.gc_pauses_ms: list[tuple[int, float]] = []  # (generation, pause) in the measured phase
        self._gc_started = 0.0
        feed_quote, feed_outcome = app.feed_quote, app.feed_outcome

        def counted_quote(*args: Any) -> None:
            self.quotes += 1
            feed_quote(*args)

        def counted_outcome(*args: Any) -> None:
            self.outcomes += 1
            feed_outcome(*args)

        # the feed calls these on the app object: counting wrappers on the instance, the app's code unchanged
        app.feed_quote, app.feed_outcome = counted_quote, counted_outcome

    def _gc(self, phase: str, info: dict[str, Any]) -> None:
        if phase == "start":
            self._gc_started = time.perf_counter()
        else:
            self.gc_pauses_ms.append((info["generation"], (time.perf_counter() - self._gc_started) * 1000))

    def _frames(self) -> int:
        feed = self.app.feed
        return int(feed.frames) if feed is not None else 0

    async def await_first_price(self) -> None:
        """Write FILE.ready once the first price is on screen (the bench waits for it before loading)."""
        # the app only records the moment (first_price_at); it posts no message to await
        while self.app.first_price_at is None:  # noqa: ASYNC110
            await asyncio.sleep(0.02)
        wall_of_perf = time.time() - time.perf_counter()
        first_wall = wall_of_perf + self.app.started_at + self.app.first_price_at
        ready = {"process_started_wall": STARTED_WALL, "first_price_wall": first_wall,
                 "app_first_price_s": self.app.first_price_at}
        _write(self.out.with_suffix(".ready"), ready)

    def mark(self) -> None:
        """Start of the measured phase: earlier latencies are dropped (the app only appends to its deque)."""
        self.app.paint_latencies_ms.clear()
        self.marked_at = time.perf_counter()
        self.counts_at_mark = (self.quotes, self.outcomes, self._frames())
        gc.callbacks.append(self._gc)  # the collector's pauses stop the app's loop: part of the latency
        if self.profile_path is not None:
            self.profiler = cProfile.Profile()
            self.profiler.enable()

    def write(self) -> None:
        if self._gc in gc.callbacks:
            gc.callbacks.remove(self._gc)
        if self.profiler is not None and self.profile_path is not None:
            self.profiler.disable()
            self.profiler.dump_stats(str(self.profile_path))
        q0, o0, f0 = self.counts_at_mark
        doc = {"paint_latencies_ms": list(self.app.paint_latencies_ms),
               "phase_s": time.perf_counter() - self.marked_at if self.marked_at is not None else None,
               "quotes": self.quotes - q0, "outcomes": self.outcomes - o0, "frames": self._frames() - f0,
               "bad_frames": self.app.feed.bad_frames if self.app.feed is not None else 0,
               "gc_pauses_ms": self.gc_pauses_ms}
        _write(self.out, doc)


def _write(path: Path, doc: dict[str, Any]) -> None:
    """Whole or not at all: the bench polls for the file and reads it as soon as it exists."""
    tmp = path.with_suffix(".tmp")
    tmp.write_text(json.dumps(doc))
    tmp.replace(path)


async def run(out: Path, headless: bool, profile: Path | None) -> None:
    from tradesim.tui.app import build

    app = build(None)  # as `tradesim tui` builds it, owning this process
    probe = Probe(app, out, profile)
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    loop.add_signal_handler(signal.SIGUSR1, probe.mark)
    loop.add_signal_handler(signal.SIGUSR2, stop.set)
    loop.add_signal_handler(signal.SIGTERM, stop.set)
    first = asyncio.create_task(probe.await_first_price(), name="first-price")
    try:
        if headless:
            async with app.run_test(headless=True, size=SIZE):
                await stop.wait()
                probe.write()
        else:
            running = asyncio.create_task(app.run_async(), name="app")
            stopping = asyncio.create_task(stop.wait(), name="stop")
            await asyncio.wait({running, stopping}, return_when=asyncio.FIRST_COMPLETED)
            if running.done():
                running.result()  # the app ended on its own: its exception is the probe's
                raise SystemExit("the app exited before the bench stopped it")
            probe.write()
            app.exit()
            await running
    finally:
        first.cancel()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("--out", type=Path, required=True, help="where the measurements go (JSON)")
    parser.add_argument("--headless", action="store_true", help="no terminal: App.run_test(headless=True)")
    parser.add_argument("--profile", type=Path, help="cProfile the measured phase into this file")
    args = parser.parse_args()
    asyncio.run(run(args.out, args.headless, args.profile))


if __name__ == "__main__":
    main()
