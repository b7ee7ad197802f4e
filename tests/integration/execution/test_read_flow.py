"""The whole read path as a user meets it: POST /orders → execution job → trade_executed → persistence →
GET /trades/search, /portfolio and /analytics/volume through the public API."""

from __future__ import annotations

import secrets
from decimal import Decimal

import httpx

from tests.integration.execution.conftest import Exchange, wait_for
from tradesim.services.admin_key import load_admin_key
from tradesim.settings import Settings


def test_an_order_placed_through_the_api_becomes_searchable_valued_and_counted(
        settings: Settings, ex: Exchange, symbol: str) -> None:
    admin = {"Authorization": f"Bearer {load_admin_key(settings, create=False)}"}
    with httpx.Client(base_url=settings.api.client_url, timeout=30) as http:
        name = "f" + secrets.token_hex(6)
        made = http.post("/accounts", json={"name": name, "cash": "10000"}, headers=admin)
        assert made.status_code == 201, made.text
        me = {"Authorization": f"Bearer {made.json()['api_key']}"}
        ex.price(symbol, 1, "50.00")
        placed = http.post("/orders", json={"symbol": symbol, "side": "buy", "qty": 10}, headers=me)
        assert placed.status_code == 202, placed.text
        order_id = placed.json()["order_id"]

        def searchable() -> list[dict[str, object]]:
            found = http.get("/trades/search", params={"symbol": symbol}, headers=me)
            assert found.status_code == 200, found.text
            return found.json()["trades"]

        def counted() -> list[dict[str, object]]:
            volume = http.get("/analytics/volume", params={"symbol": symbol, "interval": "1m"}, headers=me)
            assert volume.status_code == 200, volume.text
            return volume.json()["buckets"]

        # each read model has its own consumer group, so each is awaited on its own
        wait_for(lambda: searchable(), 120, "the order in /trades/search")
        wait_for(lambda: counted(), 60, "the order in /analytics/volume")
        (trade,) = searchable()
        assert trade["order_id"] == order_id
        assert trade["status"] == "executed"
        assert trade["order_type"] == "market"
        fill, fee = Decimal(trade["price"]), Decimal(trade["fee"])

        portfolio = http.get("/portfolio", headers=me).json()
        (position,) = [p for p in portfolio["positions"] if p["symbol"] == symbol]
        assert position["qty"] == 10
        paid = Decimal("10000") - Decimal(portfolio["cash"])  # the ledger's charge: notional to the cent, fee
        assert paid == (fill * 10).quantize(Decimal("0.01")) + fee
        assert Decimal(position["average_cost"]) == paid / 10

        (bucket,) = counted()
        assert (bucket["shares"], bucket["trades"], Decimal(bucket["vwap"])) == (10, 1, fill)

        other = http.post("/accounts", json={"name": "g" + secrets.token_hex(6), "cash": "1"}, headers=admin)
        theirs = {"Authorization": f"Bearer {other.json()['api_key']}"}
        assert http.get("/trades/search", params={"symbol": symbol}, headers=theirs).json()["trades"] == []
