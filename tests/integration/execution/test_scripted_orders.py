"""Scripted orders on the real stack: POST /orders with a market time (`at_ms`, `cancel_at_ms`) → the execution
job holds them until the ticks pass that time and decides them on the quote in effect then — the same outcomes
whichever point of the tick stream they were placed at."""

from __future__ import annotations

import secrets
from collections.abc import Iterator
from decimal import Decimal
from typing import Any

import httpx
import pytest

from tradesim.services.admin_key import load_admin_key
from tradesim.services.ingest.publisher import publish_all
from tradesim.settings import Settings
from tradesim.testing.factories import tick, unique_symbol

from ..conftest import forget_idempotency_keys
from .conftest import Exchange, wait_for

pytestmark = pytest.mark.integration
T0 = 1_704_205_800_000  # 2024-01-02T14:30:00Z, a scenario's clock
TERMINAL = {"executed", "rejected", "cancelled", "expired"}


@pytest.fixture
def http(settings: Settings) -> Iterator[httpx.Client]:
    with httpx.Client(base_url=settings.api.client_url, timeout=30) as client:
        yield client


def _new_account(http: httpx.Client, settings: Settings) -> tuple[str, dict[str, str]]:
    """A fresh account: its user id and auth header."""
    admin = load_admin_key(settings, create=False)
    answer = http.post("/accounts", json={"name": "s" + secrets.token_hex(5), "cash": "100000"},
                       headers={"Authorization": f"Bearer {admin}"})
    assert answer.status_code == 201, answer.text
    return answer.json()["user_id"], {"Authorization": f"Bearer {answer.json()['api_key']}"}


def _account(http: httpx.Client, settings: Settings) -> dict[str, str]:
    return _new_account(http, settings)[1]


def _quote(symbol: str, seq: int, seconds: int, last: str) -> Any:
    """A tick `seconds` into the scenario with this last price (bid/ask ∓/± 0.01)."""
    return tick(symbol, seq, price=str(Decimal(last) - Decimal(seq) / 100), event_time_ms=T0 + seconds * 1000)


def _run(ex: Exchange, http: httpx.Client, ticks_before: int) -> list[tuple[str, str | None, str | None]]:
    """Publish `ticks_before` ticks, place the script, wait until the job holds it, publish the rest; outcomes."""
    settings = ex.settings
    sym = unique_symbol("S")
    auth = _account(http, settings)
    stream = [_quote(sym, i + 1, s, p) for i, (s, p) in enumerate([(0, "100"), (10, "101"), (20, "102"),
                                                                   (30, "99"), (40, "98")])]
    publish_all(settings, stream[:ticks_before])
    wait_for(lambda: (got := ex.cache.latest(sym)) is not None and got[0].seq == ticks_before, 30, "price cached")
    script = [
        {"symbol": sym, "side": "buy", "qty": 1, "at_ms": T0 + 15_000, "client_order_id": "mkt"},  # ask 101.01
        {"symbol": sym, "side": "buy", "qty": 1, "type": "limit", "limit_price": "99.50", "time_in_force": "gtc",
         "at_ms": T0 + 15_000},  # fills on the 30 s tick at ask 99.01
        {"symbol": sym, "side": "buy", "qty": 1, "type": "limit", "limit_price": "99.50", "time_in_force": "gtc",
         "at_ms": T0 + 12_000, "cancel_at_ms": T0 + 25_000},  # cancelled before the 30 s tick could fill it
    ]
    ids = []
    for i, body in enumerate(script):
        answer = http.post("/orders", json=body, headers={**auth, "Idempotency-Key": f"script-{i}"})
        assert answer.status_code == 202, answer.text
        ids.append(answer.json()["order_id"])

    def orders() -> list[dict[str, Any]]:
        return [http.get(f"/orders/{oid}", headers=auth).json() for oid in ids]

    wait_for(lambda: all(o["in_book"] for o in orders()), 60, "the job holds every scripted order")
    publish_all(settings, stream[ticks_before:])
    wait_for(lambda: all(o["status"] in TERMINAL for o in orders()), 60, "every scripted order decided")
    return [(o["status"], o.get("fill_price"), o.get("reason")) for o in orders()]


def test_scripted_orders_are_decided_on_the_quote_at_their_time_wherever_they_entered_the_stream(
        ex: Exchange, http: httpx.Client) -> None:
    first = _run(ex, http, ticks_before=1)
    (mkt_status, mkt_price, _), limit, cancelled = first
    assert mkt_status == "executed"
    assert mkt_price is not None
    # the quote in effect at 15 s is the 10 s tick's (ask 101.01), slipped by at most 2 bps — not the 20 s tick's
    assert Decimal("101.01") <= Decimal(mkt_price) <= Decimal("101.01") * Decimal("1.0002")
    assert limit[:2] == ("executed", "99.01")  # a limit order fills at the ask, no slippage
    assert cancelled[0] == "cancelled"
    assert _run(ex, http, ticks_before=2) == first  # same script, other account and arrival point: same outcomes


def test_a_scripted_order_needs_a_symbol_with_a_price(settings: Settings, http: httpx.Client) -> None:
    auth = _account(http, settings)
    answer = http.post("/orders", json={"symbol": unique_symbol("N"), "side": "buy", "qty": 1, "at_ms": T0},
                       headers=auth)
    assert answer.status_code == 422
    assert answer.json()["code"] == "unknown_symbol"
    answer = http.post("/orders", json={"symbol": "AAA", "side": "buy", "qty": 1, "at_ms": T0 + 5,
                                        "cancel_at_ms": T0 + 5}, headers=auth)
    assert answer.status_code == 422
    assert "cancel_at_ms must be after at_ms" in answer.text


def test_a_cancel_with_a_market_time_is_held_until_the_ticks_pass_it(ex: Exchange, http: httpx.Client) -> None:
    """DELETE ?at_ms: the order shows the held `cancel_at_ms`; the tick at that time still fills an order it
    reaches, and the next tick cancels one still open before matching it. The held time is not the order's
    body: a keyed retry of the body as placed is the same order, held or decided, after Redis forgot the key."""
    settings = ex.settings
    sym = unique_symbol("C")
    user_id, auth = _new_account(http, settings)
    stream = [_quote(sym, i + 1, s, p) for i, (s, p) in enumerate([(0, "100"), (10, "101"), (20, "99"),
                                                                   (30, "97")])]
    publish_all(settings, stream[:2])
    wait_for(lambda: (got := ex.cache.latest(sym)) is not None and got[0].seq == 2, 30, "price cached")
    bodies = [{"symbol": sym, "side": "buy", "qty": 1, "type": "limit", "limit_price": limit, "time_in_force": "gtc",
               "at_ms": T0 + at_s * 1000}  # the 20 s tick fills the first only; the third waits for the 30 s tick
              for limit, at_s in (("99.50", 10), ("98.00", 10), ("99.50", 20))]
    ids = [http.post("/orders", json=b, headers={**auth, "Idempotency-Key": f"held-{i}"}).json()["order_id"]
           for i, b in enumerate(bodies)]

    def retried_as_placed() -> None:
        forget_idempotency_keys(settings, user_id)
        for i, (body, oid) in enumerate(zip(bodies, ids, strict=True)):
            again = http.post("/orders", json=body, headers={**auth, "Idempotency-Key": f"held-{i}"})
            assert (again.status_code, again.json().get("order_id")) == (202, oid), again.text
            assert again.headers.get("idempotent-replayed") == "true"

    wait_for(lambda: all(http.get(f"/orders/{i}", headers=auth).json()["in_book"] for i in ids), 60, "held")
    for oid in ids:  # a strategy reacting to the 20 s tick, before that tick reached the job
        answer = http.delete(f"/orders/{oid}", params={"at_ms": T0 + 20_000}, headers=auth)
        assert answer.status_code == 202, answer.text
    wait_for(lambda: all(http.get(f"/orders/{i}", headers=auth).json().get("cancel_at_ms") == T0 + 20_000
                         for i in ids), 60, "the cancels held by the book")
    retried_as_placed()  # the third's held cancel equals its own at_ms, which no placed body may have
    publish_all(settings, stream[2:])
    wait_for(lambda: all(http.get(f"/orders/{i}", headers=auth).json()["status"] in TERMINAL for i in ids), 60,
             "all decided")
    got = [http.get(f"/orders/{i}", headers=auth).json() for i in ids]
    assert [(o["status"], o.get("fill_price")) for o in got] == [
        ("executed", "99.01"), ("cancelled", None), ("executed", "99.01")]
    retried_as_placed()


def test_a_cancel_market_time_must_be_a_time(ex: Exchange, http: httpx.Client) -> None:
    auth = _account(http, ex.settings)
    answer = http.delete("/orders/nosuchorder", params={"at_ms": "-5"}, headers=auth)
    assert answer.status_code == 422
    assert answer.json()["code"] == "invalid_request"
