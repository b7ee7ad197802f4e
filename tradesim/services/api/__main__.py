"""`python -m tradesim.services.api`: the order API on uvicorn (uvloop + httptools when installed)."""

from __future__ import annotations

import os
from typing import Literal

import uvicorn

from tradesim import logs
from tradesim.services.api import metrics
from tradesim.services.api.app import create_app
from tradesim.settings import load_settings

#: uvicorn's HTTP protocol with a JSON 400 for bytes that are not HTTP (an import string: workers import it too),
#: and no WebSocket support: the API has no WebSocket route, and uvicorn's handshake errors are plain text
HTTP_PROTOCOL = "tradesim.services.api.protocol:JsonErrorsHttpProtocol"
WS_PROTOCOL: Literal["none"] = "none"


def main() -> None:
    log = logs.setup("api")
    settings = load_settings()
    api = settings.api
    log.info("serving", extra={"host": api.host, "port": api.port, "workers": api.workers})
    if api.workers > 1:
        # each worker builds its own app (and clients) from the same TRADESIM_* environment, and writes its
        # metrics to files that every worker's /metrics adds up (prometheus-client's multiprocess mode)
        os.environ["PROMETHEUS_MULTIPROC_DIR"] = str(metrics.fresh_multiprocess_dir(settings))
        uvicorn.run("tradesim.services.api.app:app_from_env", factory=True, host=api.host, port=api.port,
                    workers=api.workers, log_config=None, access_log=False, timeout_graceful_shutdown=5,
                    timeout_keep_alive=api.keep_alive_s, http=HTTP_PROTOCOL, ws=WS_PROTOCOL)
    else:
        uvicorn.run(create_app(settings, tune_gc=True), host=api.host, port=api.port, log_config=None, access_log=False,
                    timeout_graceful_shutdown=5, timeout_keep_alive=api.keep_alive_s, http=HTTP_PROTOCOL,
                    ws=WS_PROTOCOL)
    log.info("stopped")


if __name__ == "__main__":
    main()
