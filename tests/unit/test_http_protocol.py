"""Bytes that are not an HTTP request get the API's JSON problem body (uvicorn's own answer is plain text)."""

from __future__ import annotations

import json
import socket
import threading
from collections.abc import Iterator
from typing import Any

import pytest
import uvicorn

from tradesim.services.api.__main__ import HTTP_PROTOCOL, WS_PROTOCOL
from tradesim.testing.waiting import wait_for


async def _app(scope: dict[str, Any], receive: Any, send: Any) -> None:
    if scope["type"] != "http":
        return
    headers = [(b"content-type", b"text/plain"), (b"content-length", b"2")]
    await send({"type": "http.response.start", "status": 200, "headers": headers})
    await send({"type": "http.response.body", "body": b"ok"})


def _serve(http: str) -> Iterator[int]:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    ws = WS_PROTOCOL if http == HTTP_PROTOCOL else "auto"  # the API's options, or uvicorn's defaults
    server = uvicorn.Server(uvicorn.Config(_app, host="127.0.0.1", port=port, log_config=None, http=http, ws=ws,
                                           timeout_keep_alive=1, lifespan="off"))
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    wait_for(lambda: server.started, 10, "uvicorn started")
    yield port
    server.should_exit = True
    thread.join(10)


@pytest.fixture(params=[HTTP_PROTOCOL, "auto"], ids=["ours", "uvicorn's"])
def served(request: pytest.FixtureRequest) -> Iterator[tuple[str, int]]:
    for port in _serve(request.param):
        yield request.param, port


def _exchange(port: int, data: bytes) -> bytes:
    with socket.create_connection(("127.0.0.1", port), timeout=10) as conn:
        conn.sendall(data)
        answer = b""
        while chunk := conn.recv(65536):  # the server closes after its 400
            answer += chunk
    return answer


@pytest.mark.parametrize("data", [
    b"GET /orders?symbol=" + b"A" * 70_000 + b" HTTP/1.1\r\nHost: x\r\n\r\n",  # a line over the parser's limit
    b"GET /orders HTTP/1.1\r\nHost: x\r\nno colon here\r\n\r\n",
    b"\x16\x03\x01\x02\x00\x01\x00\x01\xfc\x03\x03 TLS hello on the plain port\r\n\r\n",
])
def test_bytes_that_are_not_http_get_a_json_400_and_a_closed_connection(served: tuple[str, int],
                                                                         data: bytes) -> None:
    http, port = served
    head, _, body = _exchange(port, data).partition(b"\r\n\r\n")
    assert head.startswith(b"HTTP/1.1 400"), head
    if http != HTTP_PROTOCOL:  # what it answered before: the proof that these bytes reach send_400_response
        assert b"content-type: text/plain" in head.lower()
        return
    assert b"content-type: application/json" in head.lower()
    assert b"connection: close" in head.lower()
    problem = json.loads(body)
    assert problem["code"] == "bad_request"
    assert "could not be parsed" in problem["message"]


def test_a_valid_request_is_served_as_before(served: tuple[str, int]) -> None:
    _, port = served
    answer = _exchange(port, b"GET / HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
    assert answer.startswith(b"HTTP/1.1 200")
    assert answer.endswith(b"\r\n\r\nok")


def test_a_websocket_upgrade_is_an_ordinary_request_to_the_api(served: tuple[str, int]) -> None:
    """A review: uvicorn answered a half handshake with its plain-text 400; the API has no WebSocket route, so
    the upgrade header is ignored and the app answers."""
    http, port = served
    answer = _exchange(port, b"GET / HTTP/1.1\r\nHost: x\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n\r\n")
    if http != HTTP_PROTOCOL:
        assert answer.startswith(b"HTTP/1.1 400"), answer[:200]  # uvicorn's "Missing Sec-WebSocket-Key header"
        return
    assert answer.startswith(b"HTTP/1.1 200"), answer[:200]


def test_an_api_worker_writes_the_services_json_log_lines(monkeypatch: pytest.MonkeyPatch) -> None:
    """A probe: `tradesim logs api` showed `request failed` and nothing else: a uvicorn worker (a fresh interpreter)
    never set up the JSON logging `main` sets up, so the fields of its lines (route, status, error) were lost."""
    import logging

    from tradesim.logs import JsonFormatter
    from tradesim.services.api import app as api_app

    root = logging.getLogger()
    kept = root.handlers[:], root.level
    monkeypatch.setattr(api_app, "_exit_with_the_server", lambda: None)  # not in pytest itself
    monkeypatch.setattr(api_app, "create_app", lambda settings, tune_gc: "app")
    try:
        root.handlers[:] = []
        assert api_app.app_from_env() == "app"
        assert [type(h.formatter) for h in root.handlers] == [JsonFormatter]
    finally:
        root.handlers[:], _ = kept
        root.setLevel(kept[1])
