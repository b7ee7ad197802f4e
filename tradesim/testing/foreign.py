"""Real HTTP servers on loopback that answer from a fixed script: what a client meets when a setting points at a
server that is not the one it expects (another service, a proxy, a load balancer before a stopped server), or when
one route of the right server fails (a read model down behind the API)."""

from __future__ import annotations

import http.server
import json
import threading
from collections.abc import Callable, Iterator
from contextlib import contextmanager


@contextmanager
def foreign_server(status: int, body: bytes, content_type: str = "text/html") -> Iterator[str]:
    """Serve `status` and `body` to any method and path; yields the base URL."""
    with scripted_server({"/": (status, body, content_type)}) as url:
        yield url


@contextmanager
def scripted_server(routes: dict[str, tuple[int, bytes, str]]) -> Iterator[str]:
    """Serve each request the (status, body, content type) of the longest path prefix in `routes` that its path
    starts with (404 when none does); yields the base URL."""

    def answer(target: str) -> tuple[int, bytes, str]:
        path = target.split("?", 1)[0]
        prefix = max((p for p in routes if path.startswith(p)), key=len, default=None)
        return routes[prefix] if prefix is not None else (404, b"", "text/plain")

    with _serving(answer) as url:
        yield url


@contextmanager
def json_server(answer: Callable[[str], object]) -> Iterator[str]:
    """Serve each request 200 with `answer(path and query)` as JSON (a stand-in for an API whose answers a test
    chooses per request); yields the base URL."""
    with _serving(lambda target: (200, json.dumps(answer(target)).encode(), "application/json")) as url:
        yield url


@contextmanager
def _serving(answer: Callable[[str], tuple[int, bytes, str]]) -> Iterator[str]:
    """A loopback server answering every request (any method) with `answer(path and query)`."""

    class Answer(http.server.BaseHTTPRequestHandler):
        def _answer(self) -> None:
            self.rfile.read(int(self.headers.get("Content-Length") or 0))
            status, body, content_type = answer(self.path)
            self.send_response(status)
            self.send_header("Content-Type", content_type)
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        do_GET = do_POST = do_PUT = do_DELETE = do_HEAD = _answer  # noqa: N815 - the base class's names

        def log_message(self, format: str, *args: object) -> None:  # noqa: A002 - the base class's name
            pass

    with http.server.ThreadingHTTPServer(("127.0.0.1", 0), Answer) as server:
        threading.Thread(target=server.serve_forever, daemon=True).start()
        try:
            yield f"http://127.0.0.1:{server.server_address[1]}"
        finally:
            server.shutdown()
