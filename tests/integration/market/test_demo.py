"""`tradesim up --demo` without a terminal: the stack, the jobs, a running market and a demo account with cash,
reused on a second run; a market order of the demo user then executes."""

from __future__ import annotations

import json
import uuid
from collections.abc import Callable
from decimal import Decimal
from pathlib import Path

import httpx
import pytest

from tradesim.adapters.redis.prices import PriceCache
from tradesim.settings import Settings

from .conftest import TinyScenario, cli, market_row, wait_for

pytestmark = [pytest.mark.integration, pytest.mark.usefixtures("market")]


def test_up_demo_sets_up_a_market_and_an_account_whose_market_order_executes(
        settings: Settings, cache: PriceCache, tiny: Callable[..., TinyScenario], tmp_path: Path,
        monkeypatch: pytest.MonkeyPatch) -> None:
    sc = tiny(duration_s=60, interval_ms=250)
    a, _ = sc.symbols
    credentials = tmp_path / "credentials.json"
    monkeypatch.setenv("TRADESIM_API__CREDENTIALS_FILE", str(credentials))  # the user's own file stays untouched
    monkeypatch.setenv("TRADESIM_MARKET__SCENARIO", str(sc.path))  # symbols no other test trades
    # a fresh name: the shared stack's `demo` belongs to whoever ran the demo there first
    user = "demo-" + uuid.uuid4().hex[:8]

    first = cli("up", "--demo", "--demo-user", user)
    assert first.exit_code == 0, first.output
    assert "tradesim stack" in first.output  # the status table
    assert "watchdog: for the logs only" in first.output  # `stack.watchdog` is off in the tests
    assert "market running" in first.output
    assert f"account {user}: created with 100000" in first.output
    assert "open the trading terminal: tradesim tui" in first.output
    stored = json.loads(credentials.read_text())
    assert stored["active"] == user
    key = stored["users"][user]["api_key"]
    assert market_row(settings).state == "running"

    second = cli("up", "--demo", "--demo-user", user)  # idempotent: same market, same account
    assert second.exit_code == 0, second.output
    assert "market already running" in second.output
    assert f"account {user}: cash 100000" in second.output
    assert "reused" in second.output
    assert json.loads(credentials.read_text())["users"][user]["api_key"] == key

    wait_for(lambda: cache.latest(a) is not None, 30, f"a live price of {a}")
    auth = {"Authorization": f"Bearer {key}"}
    idempotency_key = uuid.uuid4().hex
    placed = cli("order", "buy", a, "10", "--idempotency-key", idempotency_key)  # as the demo user (active)
    assert placed.exit_code == 0, placed.output
    assert placed.stdout.startswith(f"accepted: buy 10 {a} market (day) — order o_"), placed.stdout
    order_id = placed.stdout.split("— order ")[1].split()[0]
    assert "not placed again" not in placed.stdout
    again = cli("order", "buy", a, "10", "--idempotency-key", idempotency_key)  # a retry: said so, same order
    assert again.exit_code == 0, again.output
    assert f"— order {order_id} (placed before with this --idempotency-key: the same order, not placed again)" in (
        again.stdout)
    with httpx.Client(base_url=settings.api.client_url, timeout=30) as http:

        def executed() -> bool:
            answer = http.get(f"/orders/{order_id}", headers=auth)
            assert answer.status_code == 200, answer.text
            status = answer.json()["status"]
            assert status in ("accepted", "executed"), answer.text
            return bool(status == "executed")

        wait_for(executed, 120, f"order {order_id} executed", poll_s=0.5)
        me = http.get("/accounts/me", headers=auth).json()
    assert me["positions"] == {a: 10}
    assert Decimal(me["cash"]) < Decimal("100000")
