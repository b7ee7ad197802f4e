"""`python -m tradesim.services.marketdata`: the consumer thread and the WebSocket server in one process."""

from __future__ import annotations

import asyncio
import signal
import threading

from prometheus_client import start_http_server

from tradesim.services import logs
from tradesim.services.marketdata.consumer import TickConsumer
from tradesim.services.marketdata.ws import run_server
from tradesim.settings import load_settings


def main() -> None:
    log = logs.setup("marketdata")
    settings = load_settings()
    start_http_server(settings.marketdata.metrics_port, addr=settings.marketdata.host)
    stop_consumer = threading.Event()
    consumer = TickConsumer(settings, stop_consumer)

    def consume() -> None:
        try:
            consumer.run()
        except Exception:
            log.exception("consumer crashed; stopping the service so the stack restarts it")
            stop_consumer.set()

    thread = threading.Thread(target=consume, name="tick-consumer", daemon=True)
    thread.start()

    async def serve() -> None:
        stop = asyncio.Event()
        loop = asyncio.get_running_loop()
        for sig in (signal.SIGTERM, signal.SIGINT):
            loop.add_signal_handler(sig, stop.set)

        async def watch_consumer() -> None:
            await asyncio.to_thread(stop_consumer.wait)
            stop.set()

        watcher = asyncio.create_task(watch_consumer(), name="consumer-watch")
        try:
            await run_server(settings, stop)
        finally:
            stop_consumer.set()  # also releases the watcher's thread, so asyncio.run can shut its executor down
            watcher.cancel()

    asyncio.run(serve())
    stop_consumer.set()
    thread.join(timeout=10)
    log.info("stopped")


if __name__ == "__main__":
    main()
