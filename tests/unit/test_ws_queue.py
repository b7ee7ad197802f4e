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


def test_a_subscriptions_replies_follow_the_replies_queued_before_them() -> None:
    """A probe: `subscribe_bars`, `unsubscribe_bars`, `subscribe_bars` of the same bars, back to back, were
    answered `bars`, `bars`, `unsubscribed_bars`: the last answer said unsubscribed while bars kept coming."""
    client = _client(64)
    client.send_now('{"type":"bars","n":1}')  # the first subscription's answer, not sent yet
    client.offer(_tick("AAA", 1))
    client.offer(_bar("AAA", 1000))
    client.offer(_bar("AAA", 2000))
    client.send_now('{"type":"unsubscribed_bars"}')
    covered = bar_key("AAA", "1s")
    client.splice([("", 0, 0, '{"type":"bars","n":2}')], lambda u: u[0] == covered and u[2] <= 1000)
    frames = [json.loads(u[3]) for u in client.queue]
    assert [f["type"] for f in frames] == ["bars", "unsubscribed_bars", "bars", "tick", "bar"]
    assert (frames[2]["n"], frames[4]["window_start_ms"]) == (2, 2000)  # the history covers the 1000 bar
    assert client.replies == 3



def _history(symbol: str, n: int) -> str:
    return json.dumps({"type": "bars", "symbol": symbol, "n": n, "data": ["x" * 1000]})


def test_asking_for_the_same_bars_again_unread_holds_one_history_per_key() -> None:
    """A probe re-subscribed held bars without reading: every answer queued its own ~66 KB history, 5,000 of them
    (~330 MB) before the reply bound closed it. An unsent history now gives way to the newer one of the same key:
    as many answers as requests, in order, but one string for them."""
    client = _client(64)
    aaa, bbb = bar_key("AAA", "1s"), bar_key("BBB", "1s")
    for n in range(100):
        answers = {aaa: _history("AAA", n), bbb: _history("BBB", n)}
        client.splice([("", 0, 0, answers[aaa]), ("", 0, 0, answers[bbb])], lambda u: False, answers)
    assert client.closing is None
    assert client.replies == 200
    frames = [u[3] for u in client.queue]
    assert len(frames) == 200
    assert len({id(f) for f in frames}) == 2  # before: 200 strings
    assert [json.loads(f)["n"] for f in frames[:2]] == [99, 99]  # the first answers carry the newest history


def test_a_history_being_sent_is_not_replaced_afterwards() -> None:
    client = _client(64)
    key = bar_key("AAA", "1s")
    first = _history("AAA", 1)
    client.splice([("", 0, 0, first)], lambda u: False, {key: first})
    client.leaving(client.queue.popleft()[3])  # what the pump does as the frame leaves the queue
    client.send_now('{"type":"unsubscribed_bars"}')
    second = _history("AAA", 2)
    client.splice([("", 0, 0, second)], lambda u: False, {key: second})
    assert [json.loads(u[3])["type"] for u in client.queue] == ["unsubscribed_bars", "bars"]
    assert client.histories == {key: second}
    assert client.history_keys == {id(second): (key, 1)}


def test_after_part_of_the_answers_went_out_later_requests_still_share_one_history_per_key() -> None:
    """A review: the first copy of a shared history leaving the queue ended its tracking while another answer still
    carried it, so each later request added a second string per key."""
    client = _client(64)
    keys = [bar_key(s, "1s") for s in ("AAA", "BBB")]

    def ask(n: int) -> None:
        answers = {k: _history(k, n) for k in keys}
        client.splice([("", 0, 0, answers[k]) for k in keys], lambda u: False, answers)

    ask(1)
    ask(2)
    for _ in range(2):  # the client reads the first two answers, then stops
        client.leaving(client.queue.popleft()[3])
    for n in range(3, 50):
        ask(n)
    assert len({id(u[3]) for u in client.queue}) == 2
    assert [json.loads(u[3])["n"] for u in client.queue][:2] == [49, 49]


def test_a_subscription_answered_after_the_client_was_closed_queues_nothing() -> None:
    client = _client(4)
    client.close_with(CloseCode.POLICY_VIOLATION, "unauthorized", "unknown API key")
    history = _history("AAA", 1)
    client.splice([("", 0, 0, history)], lambda u: False, {bar_key("AAA", "1s"): history})
    assert not client.queue
    assert not client.histories
