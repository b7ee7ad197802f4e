"""`python -m tradesim.services.marketdata`: the consumer threads and the WebSocket server in one process."""

from __future__ import annotations

import asyncio
import logging
import signal
import threading
from collections.abc import Callable

from prometheus_client import start_http_server

from tradesim import logs
from tradesim.services.marketdata.consumer import bar_consumer, tick_consumer
from tradesim.services.marketdata.keys import KeyChecker
from tradesim.services.marketdata.outcomes import Outcome, OutcomeFeed
from tradesim.services.marketdata.ws import MarketDataHub, run_server
from tradesim.settings import load_settings


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


def main() -> None:
    log = logs.setup("marketdata")
    settings = load_settings()
    start_http_server(settings.marketdata.metrics_port, addr=settings.marketdata.host)
    stop_consumer = threading.Event()
    threads = [_start("tick-consumer", tick_consumer(settings, stop_consumer).run, stop_consumer, log),
               _start("bar-consumer", bar_consumer(settings, stop_consumer).run, stop_consumer, log)]
    keys = KeyChecker(settings)

    async def serve() -> None:
        stop = asyncio.Event()
        loop = asyncio.get_running_loop()
        for sig in (signal.SIGTERM, signal.SIGINT):
            loop.add_signal_handler(sig, stop.set)
        hub = MarketDataHub(settings, keys)

        def on_loop(call: Callable[..., None], *args: object) -> None:
            """Run `call` on the loop (from the feed's thread)."""
            try:
                loop.call_soon_threadsafe(call, *args)
            except RuntimeError:  # the loop is closed: the service is stopping
                stop_consumer.set()

        def deliver(batch: list[Outcome]) -> None:
            on_loop(hub.push_outcomes, batch)

        feed = OutcomeFeed(settings, stop_consumer, deliver, lambda: on_loop(hub.feed_ready.set))
        threads.append(_start("outcome-feed", feed.run, stop_consumer, log))

        async def watch_consumer() -> None:
            await asyncio.to_thread(stop_consumer.wait)
            stop.set()

        watcher = asyncio.create_task(watch_consumer(), name="consumer-watch")
        try:
            await run_server(hub, stop)
        finally:
            stop_consumer.set()  # also releases the watcher's thread, so asyncio.run can shut its executor down
            watcher.cancel()

    asyncio.run(serve())
    stop_consumer.set()
    for thread in threads:
        thread.join(timeout=10)
    keys.close()
    log.info("stopped")


if __name__ == "__main__":
    main()
