"""The TUI's API client against a real (local, slow) HTTP server: an order may take longer than a read to answer."""

from __future__ import annotations

import asyncio
import json
from collections.abc import Awaitable, Callable
from pathlib import Path

import pytest

from tradesim.client.api import Api, ApiError, ApiUnreachable, credentials_update, load_credentials, save_credentials
from tradesim.settings import ApiSettings, load_settings

SLOW_S = 1.0


async def _slow_server(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
    """Answers every request after SLOW_S with a 202 order answer (headers and body read as HTTP/1.1)."""
    head = await reader.readuntil(b"\r\n\r\n")
    length = next((int(line.split(b":")[1]) for line in head.split(b"\r\n")
                   if line.lower().startswith(b"content-length:")), 0)
    await reader.readexactly(length)
    await asyncio.sleep(SLOW_S)
    body = json.dumps({"order_id": "o_1", "status": "accepted"}).encode()
    writer.write(b"HTTP/1.1 202 Accepted\r\ncontent-type: application/json\r\ncontent-length: "
                 + str(len(body)).encode() + b"\r\nconnection: close\r\n\r\n" + body)
    await writer.drain()
    writer.close()


def test_an_order_waits_for_its_own_deadline_not_the_reads() -> None:
    """Before, POST /orders had the reads' 10 s: a retry the API holds for `idempotency_wait_s` (10 s) for the
    key's first request timed out just before its answer, and the ticket said the API was unreachable."""
    async def main() -> None:
        server = await asyncio.start_server(_slow_server, "127.0.0.1", 0)
        port = server.sockets[0].getsockname()[1]
        api = Api(f"http://127.0.0.1:{port}", "ts_key", timeout_s=SLOW_S / 4, place_timeout_s=SLOW_S * 4)
        try:
            with pytest.raises(ApiUnreachable):
                await api.portfolio()  # a read keeps the short deadline
            placed = await api.place({"symbol": "ACME"}, "k1")
            assert placed == {"order_id": "o_1", "status": "accepted"}
        finally:
            await api.aclose()
            server.close()
            await server.wait_closed()

    asyncio.run(main())


def test_the_order_deadline_covers_the_apis_longest_answer() -> None:
    api = ApiSettings()
    assert api.order_answer_s > api.idempotency_wait_s + api.kafka_timeout_s
    slower = ApiSettings(idempotency_wait_s=60)
    assert slower.order_answer_s - api.order_answer_s == 50


@pytest.mark.parametrize("key", ["ключ", " ", "a\nb", "ab ", " ab", "", "k" * 256])
def test_a_key_no_request_can_carry_is_refused_before_sending(key: str) -> None:
    """A probe: 'ключ' escaped as a UnicodeEncodeError, ' ' and 'a\\nb' as "the API is not reachable" (httpx
    refused the header), which a ticket takes for "perhaps placed"."""
    async def place() -> None:
        api = Api("http://127.0.0.1:9", "k")  # nothing is sent
        try:
            await api.place({"symbol": "AAPL", "side": "buy", "qty": 1}, key)
        finally:
            await api.aclose()

    with pytest.raises(ValueError, match="Idempotency-Key must be 1 to 255 printable ASCII"):
        asyncio.run(place())


@pytest.mark.parametrize("method", ["cancel", "order"])
@pytest.mark.parametrize("order_id", ["../accounts/me", "x?at_ms=1", "", ".."])
def test_a_cancel_or_a_lookup_takes_only_an_order_id(order_id: str, method: str) -> None:
    """A probe: `cancel("x?at_ms=1")` added a query, `cancel("../accounts/me")` reached another route."""
    async def ask() -> None:
        api = Api("http://127.0.0.1:9", "k")
        try:
            await getattr(api, method)(order_id)
        finally:
            await api.aclose()

    with pytest.raises(ValueError, match="is not an order id"):
        asyncio.run(ask())


def test_each_home_keeps_its_own_keys_and_the_default_home_reads_the_earlier_file(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("XDG_DATA_HOME", str(tmp_path / "data"))  # platformdirs' folders, here
    monkeypatch.setenv("XDG_CONFIG_HOME", str(tmp_path / "config"))
    monkeypatch.delenv("TRADESIM_HOME", raising=False)
    monkeypatch.delenv("TRADESIM_API__CREDENTIALS_FILE", raising=False)
    earlier = tmp_path / "config" / "tradesim" / "credentials.json"
    earlier.parent.mkdir(parents=True)
    earlier.write_text(json.dumps({"active": "alice", "users": {"alice": {"user_id": "u_1", "api_key": "ts_a"}}}))

    default = load_settings()
    assert default.home == tmp_path / "data" / "tradesim"
    assert load_credentials(default)["users"] == {"alice": {"user_id": "u_1", "api_key": "ts_a"}}  # kept keys
    other = load_settings(home=tmp_path / "other")
    assert load_credentials(other) == {"active": None, "users": {}}  # another stack's keys are not its own

    saved = load_credentials(other)
    saved["users"]["alice"] = {"user_id": "u_2", "api_key": "ts_b"}  # the other stack's alice
    assert save_credentials(other, saved) == tmp_path / "other" / "credentials.json"
    assert load_credentials(default)["users"]["alice"]["api_key"] == "ts_a"  # before: replaced by ts_b

    data = load_credentials(default)
    data["active"] = None
    assert save_credentials(default, data) == tmp_path / "data" / "tradesim" / "credentials.json"
    earlier.unlink()  # the default home now reads its own file
    assert load_credentials(default)["users"]["alice"]["api_key"] == "ts_a"


def test_an_api_that_does_not_answer_in_time_is_told_so_by_name() -> None:
    """A probe: with the API stopped (SIGSTOP), the ticket said "the API is not reachable at …: ;" (an httpx
    timeout's text is empty, and the exception object itself, always true, was used for the or)."""
    import socket

    async def ask(url: str) -> None:
        api = Api(url, "key", timeout_s=0.3)
        try:
            await api.request("GET", "/portfolio")
        finally:
            await api.aclose()

    with socket.socket() as listener:
        listener.bind(("127.0.0.1", 0))
        listener.listen(1)  # connections are taken by the kernel and never answered
        with pytest.raises(ApiUnreachable) as exc:
            asyncio.run(ask(f"http://127.0.0.1:{listener.getsockname()[1]}"))
    assert exc.value.sent
    assert "did not answer in time" in str(exc.value)
    assert str(exc.value).endswith(": ReadTimeout")


def test_changes_to_the_credentials_file_wait_for_each_other(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Two changes at once (`accounts create alice` and `accounts create bob` in two shells): the second reads
    the file after the first wrote it, so both keys are kept (before, each wrote back what it had read)."""
    import threading
    import time

    monkeypatch.setenv("TRADESIM_API__CREDENTIALS_FILE", str(tmp_path / "credentials.json"))
    settings = load_settings(home=tmp_path / "home")
    inside = threading.Event()

    def add(name: str, hold_s: float) -> None:
        with credentials_update(settings) as data:
            inside.set()
            time.sleep(hold_s)
            data["users"][name] = {"user_id": name, "api_key": f"ts_{name}"}

    first = threading.Thread(target=add, args=("alice", 0.5))
    first.start()
    assert inside.wait(10)
    add("bob", 0)  # waits for alice's change to be written, then reads it
    first.join()
    assert sorted(load_credentials(settings)["users"]) == ["alice", "bob"]
    data_before = (tmp_path / "credentials.json").read_text()
    with credentials_update(settings):
        pass  # nothing changed: nothing written
    assert (tmp_path / "credentials.json").read_text() == data_before


def _refused_answer(status: int, body: bytes, read: Callable[[Api], Awaitable[object]]) -> ApiError:
    """The ApiError the TUI's client raises for `read` against a server answering `status` with JSON `body`."""
    from tradesim.testing.foreign import foreign_server

    async def ask(url: str) -> None:
        api = Api(url, "key")
        try:
            await read(api)
        finally:
            await api.aclose()

    with foreign_server(status, body, "application/json") as url, pytest.raises(ApiError) as exc:
        asyncio.run(ask(url))
    return exc.value


@pytest.mark.parametrize("body", [b"[]", b"null", b"1"])
def test_an_answer_that_is_not_a_json_object_is_an_api_error_not_a_crash(body: bytes) -> None:
    """Before, `[]` reached the TUI's callers, whose `answer["orders"]` raised TypeError in a worker."""
    error = _refused_answer(200, body, lambda api: api.orders())
    assert (error.status, error.code) == (502, "not_tradesim_api")


@pytest.mark.parametrize("status", [200, 422, 503])
def test_an_answer_nested_past_the_parsers_depth_is_an_api_error(status: int) -> None:
    """A probe: `[` × 100,000 as an answer escaped the TUI's client as RecursionError."""
    assert _refused_answer(status, b"[" * 100_000, lambda api: api.portfolio()).status == (502 if status == 200
                                                                                           else status)
