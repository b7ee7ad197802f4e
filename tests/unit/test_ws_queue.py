"""A slow WebSocket client's queue: prices conflate to the newest per symbol; bars and replies never do."""

from __future__ import annotations

import json
from typing import Any, cast

from websockets.frames import CloseCode

from tradesim.services.marketdata.ws import Client, bar_key


def _client(limit: int) -> Client:
    return Client(cast(Any, None), limit)  # the queue alone: nothing here writes to the connection


def _bar(symbol: str, window_ms: int) -> tuple[str, int, int, str]:
    return (bar_key(symbol, "1s"), 0, window_ms, json.dumps({"type": "bar", "window_start_ms": window_ms}))


def _tick(symbol: str, seq: int) -> tuple[str, int, int, str]:
    return (symbol, 1, seq, json.dumps({"type": "tick", "seq": seq}))


def test_prices_conflate_to_the_newest_while_every_bar_and_reply_stays_in_order() -> None:
    client = _client(16)
    client.send_now('{"type":"subscribed"}')
    for i in range(5):
        client.offer(_tick("AAA", i))
        client.offer(_bar("AAA", i * 1000))
    for i in range(5, 11):  # the 16th queued update makes the next offer conflate
        client.offer(_tick("AAA", i))
    kinds = [(u[0], u[2]) for u in client.queue]
    assert client.closing is None
    assert [w for key, w in kinds if key == bar_key("AAA", "1s")] == [0, 1000, 2000, 3000, 4000]  # before: 4000
    assert [s for key, s in kinds if key == "AAA"] == [9, 10]  # the newest price before the conflation, then one
    assert kinds[0] == ("", 0)  # the reply, first


def test_a_client_that_conflation_cannot_bring_under_half_its_queue_is_closed() -> None:
    """Bars (and replies) are never dropped, so a client that does not read them is closed rather than being
    passed over on every update with a full queue."""
    client = _client(4)
    for i in range(5):
        client.offer(_bar("AAA", i * 1000))
    assert client.closing == (CloseCode.TRY_AGAIN_LATER, "too_slow")
    assert not client.queue
    error = json.loads(client.account[0])
    assert (error["type"], error["code"]) == ("error", "too_slow")
    assert error["message"].startswith("4 bars and 0 other frames unread; reconnect and subscribe again")
