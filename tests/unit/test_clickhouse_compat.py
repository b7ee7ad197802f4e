"""The clickhouse-connect shim retries only its settings probe, only after 18.16's specific refusal."""

from __future__ import annotations

from typing import Any

import pytest
from clickhouse_connect.driver._backend.operations import CommandOp, QueryOp
from clickhouse_connect.driver.exceptions import DatabaseError, OperationalError
from clickhouse_connect.driver.httpclient import HttpClient

from tradesim.adapters.clickhouse.compat import LEGACY_SETTINGS_PROBE, SETTINGS_PROBE, CompatHttpClient

OLD_SERVER_ERROR = "Code: 47, e.displayText() = DB::Exception: Unknown identifier: readonly"


@pytest.fixture
def sent(monkeypatch: pytest.MonkeyPatch) -> list[str]:
    """Replace the library's transport step: an 18.16 server that lacks system.settings.readonly."""
    texts: list[str] = []

    def old_server(self: HttpClient, operation: Any) -> object:
        texts.append(operation.text)
        if "readonly FROM" in operation.text and "AS readonly" not in operation.text:
            raise DatabaseError(OLD_SERVER_ERROR)
        if operation.text == "SELECT broken":
            raise DatabaseError("Unknown identifier: readonly")  # same words, but not the probe
        if operation.text == "SELECT down":
            raise OperationalError("connection refused")
        return "ok"

    monkeypatch.setattr(HttpClient, "_execute_operation", old_server)
    return texts


def _client() -> CompatHttpClient:
    return CompatHttpClient.__new__(CompatHttpClient)  # no __init__: it would connect


def test_probe_is_retried_without_readonly(sent: list[str]) -> None:
    probe = QueryOp(SETTINGS_PROBE + " LIMIT 10000", settings={"x": 1})
    assert _client()._execute_operation(probe) == "ok"
    assert sent == [probe.text, LEGACY_SETTINGS_PROBE + " LIMIT 10000"]


def test_other_queries_pass_untouched(sent: list[str]) -> None:
    assert _client()._execute_operation(QueryOp("SELECT 1")) == "ok"
    assert sent == ["SELECT 1"]


def test_other_errors_are_not_swallowed(sent: list[str]) -> None:
    with pytest.raises(DatabaseError):
        _client()._execute_operation(QueryOp("SELECT broken"))
    with pytest.raises(OperationalError):
        _client()._execute_operation(QueryOp("SELECT down"))
    assert sent == ["SELECT broken", "SELECT down"]  # no retries


def test_commands_are_never_rewritten(sent: list[str]) -> None:
    with pytest.raises(DatabaseError):
        _client()._execute_operation(CommandOp(SETTINGS_PROBE))
    assert sent == [SETTINGS_PROBE]


def test_the_pinned_library_still_sends_the_probe_we_patch() -> None:
    """If an upgrade changes the probe, the shim would silently stop applying: fail here instead."""
    import inspect

    from clickhouse_connect.driver._backend import orchestration

    assert SETTINGS_PROBE in inspect.getsource(orchestration.init_sequence)


def test_a_clickhouse_that_does_not_answer_is_said_in_a_few_words() -> None:
    """A probe: the API's 503 and the CLI's `error:` line carried the client's ~600 characters (the URL with its
    query, urllib3's retry state). A word in the URL's query says nothing about the failure."""
    from tradesim.adapters.clickhouse.errors import translated
    from tradesim.ports import Unavailable

    long = ("HTTPDriver for http://127.0.0.1:8123/?query_id=x&query=SELECT+'reset'+FROM+t received error: "
            "HTTPConnectionPool(host='127.0.0.1', port=8123): Max retries exceeded with url: /?query=SELECT+'reset' "
            "(Caused by NewConnectionError(': Failed to establish a new connection: [Errno 111] Connection refused'))")
    for text, said in ((long, "connection refused"),
                       ("Read timed out. (read timeout=10) http://h/?q=refused", "timed out"),
                       ("something new " + "x" * 300, "something new " + "x" * 106)):
        with pytest.raises(Unavailable) as caught, translated("127.0.0.1:8123"):
            raise OperationalError(text)
        assert str(caught.value) == f"ClickHouse at 127.0.0.1:8123 did not answer ({said})"
