"""`python -m tradesim.services.persistence`: one SinkWorker thread per read model, /metrics on one port."""

from __future__ import annotations

import signal
import threading
from types import FrameType

from prometheus_client import start_http_server

from tradesim import logs
from tradesim.adapters.tracing import PERSISTENCE_SERVICE, Tracing
from tradesim.services.persistence.pipeline import SinkWorker
from tradesim.services.persistence.sinks import open_sinks
from tradesim.settings import load_settings


def main() -> None:
    log = logs.setup("persistence")
    settings = load_settings()
    start_http_server(settings.persistence.metrics_port, addr=settings.persistence.host)
    stop = threading.Event()

    def on_signal(_signum: int, _frame: FrameType | None) -> None:
        stop.set()

    signal.signal(signal.SIGTERM, on_signal)
    signal.signal(signal.SIGINT, on_signal)
    tracing = Tracing(settings.tracing, PERSISTENCE_SERVICE)
    workers = [SinkWorker.wired(settings, sink, stop, tracing) for sink in open_sinks(settings)]

    def run(worker: SinkWorker) -> None:
        try:
            worker.run()
        except Exception:
            log.exception("worker crashed; stopping the service so the stack restarts it",
                          extra={"sink": worker.sink.name})
            stop.set()

    threads = [threading.Thread(target=run, args=(w,), name=f"sink-{w.sink.name}") for w in workers]
    for thread in threads:
        thread.start()
    stop.wait()
    for thread in threads:
        thread.join(timeout=30)
    tracing.shutdown()
    log.info("stopped")


if __name__ == "__main__":
    main()
