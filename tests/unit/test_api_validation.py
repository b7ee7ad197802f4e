"""The order API's validation and idempotency rules that need no server."""

from __future__ import annotations

import json
from decimal import Decimal
from pathlib import Path

import pytest
from pydantic import ValidationError
from typer.testing import CliRunner

from tradesim.cli.app import app
from tradesim.cli.orders import order_body
from tradesim.domain.errors import InsufficientFunds, InsufficientShares
from tradesim.domain.fees import FeeModel
from tradesim.domain.precheck import (
    OrderIntent,
    StalePrice,
    UnknownSymbol,
    check_affordable,
    check_fresh,
    estimated_cost,
    order_id_for,
)
from tradesim.services.api.orders import request_hash
from tradesim.services.api.schemas import OrderRequest
from tradesim.stack.errors import UserError
from tradesim.testing.factories import tick

FEES = FeeModel()
T = tick("ACME", 1)  # last 100.01, ask 100.02


def test_order_id_is_deterministic_per_user_and_key() -> None:
    assert order_id_for("alice", "k1") == order_id_for("alice", "k1")
    assert len({order_id_for("alice", "k1"), order_id_for("alice", "k2"), order_id_for("bob", "k1")}) == 3
    assert order_id_for("a", "b").startswith("o_")
    assert len(order_id_for("a", "b")) <= 64


def test_fresh_unknown_and_stale_prices() -> None:
    with pytest.raises(UnknownSymbol):
        check_fresh("ACME", None, 10_000, 30)
    assert check_fresh("ACME", (T, 10_000), 40_000, 30) == T
    with pytest.raises(StalePrice):
        check_fresh("ACME", (T, 10_000), 40_001, 30)


def test_market_buy_is_budgeted_at_the_ask_plus_buffer_and_fees() -> None:
    intent = OrderIntent("ACME", "buy", 10, "market")
    # 10 × 100.02 × 1.02 = 1020.204 → 1020.20, fee max(1.00, 0.05 + 0.102) = 1.00
    assert estimated_cost(intent, T, Decimal(2), FEES) == Decimal("1021.20")
    check_affordable(intent, T, Decimal("1021.20"), 0, buffer_pct=Decimal(2), fees=FEES)
    with pytest.raises(InsufficientFunds):
        check_affordable(intent, T, Decimal("1021.19"), 0, buffer_pct=Decimal(2), fees=FEES)
    # cash in cents, as every other view shows it (a probe: "cash 72.1", "cash 1000")
    with pytest.raises(InsufficientFunds, match=r"^cash 72\.10 cannot cover the estimated 1021\.20 "):
        check_affordable(intent, T, Decimal("72.1"), 0, buffer_pct=Decimal(2), fees=FEES)


def test_limit_buy_is_budgeted_at_the_limit_and_stop_buy_at_least_at_the_stop() -> None:
    limit = OrderIntent("ACME", "buy", 10, "limit", limit_price=Decimal("90"))
    assert estimated_cost(limit, T, Decimal(2), FEES) == Decimal("901.00")
    stop = OrderIntent("ACME", "buy", 10, "stop", stop_price=Decimal("200"))
    assert estimated_cost(stop, T, Decimal(0), FEES) == Decimal("2001.00")


def test_sells_need_the_position() -> None:
    sell = OrderIntent("ACME", "sell", 5, "market")
    check_affordable(sell, T, Decimal(0), 5, buffer_pct=Decimal(2), fees=FEES)
    for held in (4, 0):
        with pytest.raises(InsufficientShares):
            check_affordable(sell, T, Decimal(0), held, buffer_pct=Decimal(2), fees=FEES)


def test_a_sell_whose_proceeds_cannot_cover_its_fee_needs_the_rest_in_cash() -> None:
    """Before: accepted with 202 on the position alone, then rejected `insufficient_funds` by the job's write."""
    penny = tick("PENNY", 1, price="0.10")  # bid 0.10, last 0.11
    sell = OrderIntent("PENNY", "sell", 5, "market")
    # budgeted at the bid less 2 %: 5 × 0.098 = 0.49 of proceeds against the 1.00 minimum fee
    assert estimated_cost(sell, penny, Decimal(2), FEES) == Decimal("0.51")
    check_affordable(sell, penny, Decimal("0.51"), 5, buffer_pct=Decimal(2), fees=FEES)
    with pytest.raises(InsufficientFunds):
        check_affordable(sell, penny, Decimal("0.50"), 5, buffer_pct=Decimal(2), fees=FEES)
    limit = OrderIntent("PENNY", "sell", 5, "limit", limit_price=Decimal("0.20"))  # at its limit: 1.00 - 1.00
    check_affordable(limit, penny, Decimal(0), 5, buffer_pct=Decimal(2), fees=FEES)
    stop = OrderIntent("PENNY", "sell", 10, "stop", stop_price=Decimal("0.05"))  # budgeted below its stop
    assert estimated_cost(stop, penny, Decimal(0), FEES) == Decimal("0.50")


def test_short_selling_is_not_a_setting_any_more() -> None:
    """`trading.allow_short` was honoured by the API's pre-check but not by the job's write; it is gone, and an old
    tradesim.toml or environment that still sets it is refused rather than silently ignored."""
    from pydantic import ValidationError

    from tradesim.settings import TradingSettings

    with pytest.raises(ValidationError, match="allow_short"):
        TradingSettings(allow_short=True)  # type: ignore[call-arg]


@pytest.mark.parametrize("change", [
    {"qty": 0}, {"qty": -1}, {"qty": 1.5}, {"qty": "1"}, {"qty": True}, {"type": "limit"},
    {"type": "market", "stop_price": "1"}, {"type": "limit", "limit_price": "1e3"},
    {"type": "limit", "limit_price": 10.5}, {"type": "limit", "limit_price": "0.0000"}, {"extra": 1},
    # a control character could make two bodies hash alike (the hash joins the fields with \x1f)
    {"client_order_id": "c\x1fat=1700000000000"}, {"client_order_id": "line\n"}, {"client_order_id": "\x7f"},
    {"client_order_id": "\x9b2J"}, {"client_order_id": "a\x85b"}, {"client_order_id": "x\u202ey"},  # C1, bidi
    {"client_order_id": "a\u2028b"}, {"client_order_id": "a\u200bb"}, {"client_order_id": "\ufeffa"},
    {"client_order_id": "a\u061cb"},
])
def test_order_request_refuses(change: dict[str, object]) -> None:
    with pytest.raises(ValidationError):
        OrderRequest.model_validate({"symbol": "ACME", "side": "buy", "qty": 1, **change})


def test_request_hash_ignores_key_order_and_spacing_but_not_values() -> None:
    a = OrderRequest.model_validate_json('{"symbol":"ACME","side":"buy","qty":1}')
    b = OrderRequest.model_validate_json('{ "qty": 1,  "side": "buy", "symbol": "ACME" }')
    c = OrderRequest.model_validate(json.loads('{"symbol":"ACME","side":"buy","qty":2}'))
    assert request_hash(a) == request_hash(b) != request_hash(c)


def test_cli_order_body() -> None:
    assert order_body("buy", "acme", "3", "10.5", None, "gtc") == {
        "symbol": "ACME", "side": "buy", "qty": 3, "time_in_force": "gtc", "limit_price": "10.5", "type": "limit"}
    assert order_body("sell", "ACME", "1", "9", "10", "day")["type"] == "stop_limit"
    assert order_body("sell", "ACME", "1", None, None, "day")["type"] == "market"
    for args in (("buy", "ACME", "0", None, None, "day"), ("buy", "ACME", "1.5", None, None, "day"),
                 ("buy", "ACME", "1", "-3", None, "day"), ("buy", "ACME", "1", None, None, "week"),
                 ("buy", "ac me", "1", None, None, "day")):
        with pytest.raises(UserError):
            order_body(*args)


@pytest.mark.parametrize("argv", [["order", "buy", "ACME", "0"], ["order", "sell", "ACME", "2", "--limit", "x"],
                                  ["order", "show", "bad id!"]])
def test_cli_bad_input_exits_2_with_one_line(argv: list[str], monkeypatch: pytest.MonkeyPatch,
                                             tmp_path: Path) -> None:
    monkeypatch.setenv("TRADESIM_HOME", str(tmp_path / "home"))
    creds = tmp_path / "creds.json"
    creds.write_text(json.dumps({"active": "a", "users": {"a": {"user_id": "a", "api_key": "k"}}}))
    monkeypatch.setenv("TRADESIM_API__CREDENTIALS_FILE", str(creds))
    result = CliRunner().invoke(app, argv)
    assert result.exit_code == 2, result.output
    lines = [ln for ln in result.output.splitlines() if ln.strip()]
    assert len(lines) == 1, result.output
    assert lines[0].startswith("error: ")


def test_cli_without_an_account_says_how_to_create_one(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.setenv("TRADESIM_API__CREDENTIALS_FILE", str(tmp_path / "none.json"))
    result = CliRunner().invoke(app, ["orders"])
    assert result.exit_code == 2
    assert "tradesim accounts create" in result.output
