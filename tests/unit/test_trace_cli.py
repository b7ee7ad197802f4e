"""`tradesim trace` answers every mistake and every missing or wrong server with one line and an exit code."""

from __future__ import annotations

from collections.abc import Iterator

import pytest
from typer.testing import CliRunner

from tradesim.cli.app import app
from tradesim.testing.foreign import foreign_server
from tradesim.testing.net import free_port

ON = {"TRADESIM_TRACING__ENABLED": "true"}


def _invoke(env: dict[str, str], *args: str) -> tuple[int, str]:
    got = CliRunner().invoke(app, ["trace", *args], env=env)
    assert got.exception is None or isinstance(got.exception, SystemExit), got.exception
    return got.exit_code, got.output


@pytest.fixture
def not_jaeger() -> Iterator[str]:
    """A real HTTP server that is not Jaeger (answers 200 with text)."""
    with foreign_server(200, b"hello", "text/plain") as url:
        yield url


def test_user_mistakes_exit_2_with_one_line() -> None:
    code, out = _invoke({"TRADESIM_TRACING__ENABLED": "false"}, "o_1")
    assert (code, out.strip().splitlines()[0]) == (2, "error: tracing is off: set tracing.enabled "
                                                       "(TRADESIM_TRACING__ENABLED=true) and run `tradesim up`")
    code, out = _invoke(ON, "o 1; drop")
    assert code == 2
    assert "is not an order id" in out
    code, out = _invoke({**ON, "TRADESIM_TRACING__QUERY_URL": "http://[::1"}, "o_1")
    assert code == 2
    assert out.startswith("error: invalid setting tracing.query_url")


def test_a_missing_or_wrong_server_exits_1_with_the_cause(not_jaeger: str) -> None:
    code, out = _invoke({**ON, "TRADESIM_TRACING__QUERY_URL": f"http://127.0.0.1:{free_port()}"}, "o_1")
    assert code == 1
    assert "Jaeger query API" in out
    assert "Traceback" not in out
    code, out = _invoke({**ON, "TRADESIM_TRACING__QUERY_URL": not_jaeger}, "o_1")
    assert code == 1
    assert "not JSON: is it Jaeger?" in out


def test_a_trace_with_a_time_no_integer_can_hold_is_a_wrong_server_not_a_traceback() -> None:
    body = b'{"data": [{"traceID": "t", "spans": [{"spanID": "a", "startTime": 1e400, "duration": 1}]}]}'
    with foreign_server(200, body, "application/json") as url:
        code, out = _invoke({**ON, "TRADESIM_TRACING__QUERY_URL": url}, "o_1")
    assert code == 1
    assert "answered a trace it cannot be: OverflowError" in out
