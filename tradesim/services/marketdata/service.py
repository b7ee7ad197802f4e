"""The service's processes: the first runs the consumer threads and the metrics server and starts
`marketdata.hubs` hub processes (`--hub`), which serve the WebSocket clients on one port and follow outcomes.

A hub's fan-out holds its interpreter for tens of milliseconds per update at 1,000 clients; in a process of its
own it cannot hold up the consume loop's next Redis write. Every update reaches every hub through Redis pub/sub,
so a hub needs nothing from the others, and the kernel spreads new connections over the hubs' listening sockets
(SO_REUSEPORT).
"""

from __future__ import annotations

import asyncio
import logging
import os
import signal
import subprocess
import sys
import threading
from collections.abc import Callable

from prometheus_client import start_http_server

from tradesim.services.marketdata.consumer import bar_consumer, tick_consumer
from tradesim.services.marketdata.keys import KeyChecker
from tradesim.services.marketdata.outcomes import Outcome, OutcomeFeed
from tradesim.services.marketdata.ws import MarketDataHub, run_server
from tradesim.services.workers import exit_with_parent, metrics_registry
from tradesim.settings import Settings

#: seconds a hub gets to close its connections after SIGTERM before it is killed
HUB_STOP_S = 5.0


def _start(name: str, run: Callable[[], None], stop: threading.Event, log: logging.Logger) -> threading.Thread:
    """Run a consumer in a thread; if it crashes, stop the service so the stack restarts it."""

    def guarded() -> None:
        try:
            run()
        except Exception:
            log.exception("consumer crashed; stopping the service so the stack restarts it", extra={"thread": name})
            stop.set()

    thread = threading.Thread(target=guarded, name=name, daemon=True)
    thread.start()
    return thread


def _start_hubs(count: int, stop: threading.Event, log: logging.Logger) -> list[subprocess.Popen[bytes]]:
    """Start `count` hub processes; one that exits on its own stops the service (the stack then restarts it)."""
    hubs = []
    for index in range(1, count + 1):
        proc = subprocess.Popen([sys.executable, "-m", "tradesim.services.marketdata", "--hub", str(os.getpid()),
                                 str(index)])
        hubs.append(proc)

        def watch(proc: subprocess.Popen[bytes] = proc, index: int = index) -> None:
            code = proc.wait()
            if not stop.is_set():
                log.error("hub process exited; stopping the service so the stack restarts it",
                          extra={"hub": index, "pid": proc.pid, "code": code})
                stop.set()

        threading.Thread(target=watch, name=f"hub-{index}-watch", daemon=True).start()
    return hubs


def _stop_hubs(hubs: list[subprocess.Popen[bytes]]) -> None:
    for proc in hubs:
        if proc.poll() is None:
            proc.send_signal(signal.SIGTERM)
    for proc in hubs:
        try:
            proc.wait(HUB_STOP_S)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()


async def _serve(settings: Settings, keys: KeyChecker, stop_threads: threading.Event, threads: list[threading.Thread],
                 log: logging.Logger, *, record_metrics: bool) -> None:
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop.set)
    feed_ready = threading.Event()
    hub = MarketDataHub(settings, keys, feed_ready)

    def deliver(batch: list[Outcome]) -> None:
        try:
            loop.call_soon_threadsafe(hub.push_outcomes, batch)
        except RuntimeError:  # the loop is closed: the service is stopping
            stop_threads.set()

    feed = OutcomeFeed(settings, stop_threads, deliver, feed_ready, record_metrics=record_metrics)
    threads.append(_start("outcome-feed", feed.run, stop_threads, log))

    async def watch_threads() -> None:
        await asyncio.to_thread(stop_threads.wait)
        stop.set()

    watcher = asyncio.create_task(watch_threads(), name="consumer-watch")
    try:
        await run_server(hub, stop)
    finally:
        stop_threads.set()  # also releases the watcher's thread, so asyncio.run can shut its executor down
        watcher.cancel()


def run(settings: Settings, log: logging.Logger) -> None:
    """The first process: consumers and metrics; it starts the hubs and stops with any of them."""
    md = settings.marketdata
    stop = threading.Event()
    for sig in (signal.SIGTERM, signal.SIGINT):
        signal.signal(sig, lambda *_: stop.set())
    start_http_server(md.metrics_port, addr=md.host, registry=metrics_registry())
    threads = [_start("tick-consumer", tick_consumer(settings, stop).run, stop, log),
               _start("bar-consumer", bar_consumer(settings, stop).run, stop, log)]
    hubs = _start_hubs(md.hubs, stop, log)
    try:
        stop.wait()
    finally:
        stop.set()
        _stop_hubs(hubs)
        for thread in threads:
            thread.join(timeout=10)
    log.info("stopped")


def run_hub(settings: Settings, log: logging.Logger, parent_pid: int, index: int) -> None:
    """A hub started by the first process `parent_pid`: WebSocket clients, pub/sub and outcomes; the first hub
    also counts the outcome stream's metrics (once for the service, not once per hub)."""
    exit_with_parent(parent_pid)
    stop = threading.Event()
    threads: list[threading.Thread] = []
    keys = KeyChecker(settings)
    try:
        asyncio.run(_serve(settings, keys, stop, threads, log, record_metrics=index == 1))
    finally:
        stop.set()
        for thread in threads:
            thread.join(timeout=10)
        keys.close()
    log.info("stopped", extra={"hub": index})
