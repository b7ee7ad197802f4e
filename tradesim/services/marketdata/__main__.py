"""`python -m tradesim.services.marketdata`: the market-data service (`--hub PID N`: its WebSocket hub N, started
by the service's first process PID)."""

from __future__ import annotations

import sys

from tradesim import logs
from tradesim.services.workers import use_shared_metrics
from tradesim.settings import load_settings

USAGE = "usage: python -m tradesim.services.marketdata [--hub PARENT_PID INDEX]"


def _hub(args: list[str]) -> tuple[int, int] | None:
    """(parent pid, hub index) for a hub, None for the first process."""
    if not args:
        return None
    if len(args) == 3 and args[0] == "--hub" and args[1].isdigit() and args[2].isdigit():
        return int(args[1]), int(args[2])
    print(USAGE, file=sys.stderr)
    raise SystemExit(2)


def main() -> None:
    hub = _hub(sys.argv[1:])
    log = logs.setup("marketdata")
    settings = load_settings()
    if hub is None:
        # the hubs' metrics go to files the first process serves: chosen before prometheus_client is imported
        use_shared_metrics(settings.stack_dir / "marketdata" / f"metrics-{settings.marketdata.ws_port}")
    from tradesim.services.marketdata import service

    if hub is None:
        service.run(settings, log)
    else:
        service.run_hub(settings, log, *hub)


if __name__ == "__main__":
    main()
