"""Average-cost P&L (domain/pnl.py): cost basis, realized P&L, valuation and the P&L series, no server."""

from __future__ import annotations

from decimal import Decimal

from hypothesis import given
from hypothesis import strategies as st

from tradesim.domain.pnl import PnlPoint, PositionCost, cash_delta, pnl_series, positions, value
from tradesim.domain.trades import TradeRecord

D = Decimal


def fill(side: str, qty: int, price: str, fee: str = "1.00", *, at: int = 0, symbol: str = "ACME",
         oid: str | None = None) -> TradeRecord:
    return TradeRecord(order_id=oid or f"o{at}-{side}-{qty}", user_id="u", symbol=symbol, side=side,  # type: ignore[arg-type]
                       qty=qty, status="executed", decided_at_ms=at, price=D(price), fee=D(fee))


def refused(at: int = 0) -> TradeRecord:
    return TradeRecord(order_id=f"r{at}", user_id="u", symbol="ACME", side="buy", qty=5, status="rejected",
                       decided_at_ms=at, reason="insufficient_funds")


def test_a_buy_puts_its_notional_and_fee_into_the_cost_basis() -> None:
    (pos,) = positions([fill("buy", 10, "100.00", "1.00")]).values()
    assert (pos.qty, pos.cost, pos.realized) == (10, D("1001.00"), 0)
    assert pos.average_cost == D("100.1")


def test_a_sale_realizes_proceeds_less_fee_less_the_average_cost_of_the_shares_sold() -> None:
    pos = positions([fill("buy", 10, "100.00", "1.00", at=1), fill("buy", 10, "110.00", "1.00", at=2),
                     fill("sell", 5, "120.00", "1.00", at=3)])["ACME"]
    # average cost (1001 + 1101) / 20 = 105.10; 5 sold: proceeds 600 − fee 1 − cost 525.50 = 73.50
    assert pos.qty == 15
    assert pos.realized == D("73.50")
    assert pos.cost == D("1576.50")
    assert pos.average_cost == D("105.1")  # a sale leaves the average cost of what is left unchanged


def test_selling_everything_empties_the_cost_basis() -> None:
    pos = positions([fill("buy", 3, "10.00", "1.00", at=1), fill("sell", 3, "9.00", "1.00", at=2)])["ACME"]
    assert (pos.qty, pos.cost, pos.average_cost) == (0, 0, None)
    assert pos.realized == D("27.00") - 1 - D("31.00")


def test_a_sale_beyond_the_known_history_never_goes_negative() -> None:
    # a partial history (the buy not yet in the read model): the shares' cost is unknown, so 0
    pos = PositionCost("ACME").after(fill("sell", 4, "50.00", "1.00"))
    assert (pos.qty, pos.cost) == (0, 0)
    assert pos.realized == D("199.00")


def test_outcomes_that_did_not_execute_are_skipped() -> None:
    assert positions([refused(1)]) == {}
    assert positions([refused(1), fill("buy", 1, "5.00", at=2)])["ACME"].qty == 1


def test_cash_delta_of_a_buy_and_a_sell() -> None:
    assert cash_delta(fill("buy", 10, "100.00", "1.50")) == D("-1001.50")
    assert cash_delta(fill("sell", 10, "100.00", "1.50")) == D("998.50")
    assert cash_delta(refused()) == 0


def test_value_at_a_price() -> None:
    pos = positions([fill("buy", 10, "100.00", "1.00")])["ACME"]
    v = value(pos, 10, D("105.00"), D("102.00"))
    assert v.market_value == D("1050.00")
    assert v.unrealized == D("49.00")
    assert v.day_change == D("30.00")
    assert v.average_cost == D("100.1")


def test_value_without_a_price_or_with_a_ledger_that_disagrees() -> None:
    pos = positions([fill("buy", 10, "100.00", "1.00")])["ACME"]
    v = value(pos, 10, None, D("102.00"))
    assert (v.market_value, v.unrealized, v.day_change) == (None, None, None)
    # the ledger holds 12 (a fill the read model has not seen yet): the cost basis is not the ledger's shares'
    v = value(pos, 12, D("105.00"), None)
    assert v.market_value == D("1260.00")
    assert (v.unrealized, v.day_change, v.cost) == (None, None, None)


def test_value_carries_the_cost_basis_itself_not_a_rounded_average_times_qty() -> None:
    pos = positions([fill("buy", 3, "10.00", "1.00")])["ACME"]
    v = value(pos, 3, D("11.00"), None)
    assert (v.cost, v.average_cost, v.unrealized) == (D("31.00"), D("10.33333333"), D("2.00"))
    assert v.market_value - v.cost == v.unrealized  # average × qty (30.99999999) would not add up


fills = st.lists(st.tuples(st.sampled_from(["buy", "sell"]), st.integers(1, 500),
                           st.decimals(min_value=D("0.01"), max_value=D("5000"), places=4),
                           st.decimals(min_value=D("0"), max_value=D("20"), places=2),
                           st.sampled_from(["AAA", "BBB"])), max_size=40)


@given(fills, st.decimals(min_value=D("0.01"), max_value=D("5000"), places=4))
def test_equity_gain_is_realized_plus_unrealized_to_the_cent(steps: list[tuple[str, int, Decimal, Decimal, str]],
                                                             mark: Decimal) -> None:
    held: dict[str, int] = {}
    records = []
    for i, (side, qty, price, fee, symbol) in enumerate(steps):
        if side == "sell":
            qty = min(qty, held.get(symbol, 0))  # the ledger refuses short sales
            if qty == 0:
                continue
        held[symbol] = held.get(symbol, 0) + (qty if side == "buy" else -qty)
        records.append(fill(side, qty, str(price), str(fee), at=i, symbol=symbol, oid=f"o{i}"))
    cash_change = sum((cash_delta(r) for r in records), D(0))
    folded = positions(records)
    valued = [value(p, held[s], mark, None) for s, p in folded.items()]
    realized = sum((v.realized for v in valued), D(0))
    unrealized = sum((v.unrealized or D(0) for v in valued), D(0))
    market = sum((v.market_value or D(0) for v in valued), D(0))
    assert all(v.unrealized is not None for v in valued)
    assert cash_change + market == realized + unrealized
    assert all(p.qty == held[s] and p.cost >= 0 for s, p in folded.items())


def test_pnl_series_replays_cash_and_positions_at_each_bucket_end() -> None:
    history = [fill("buy", 10, "100.00", "1.00", at=1_000), fill("sell", 4, "110.00", "1.00", at=2_000),
               refused(2_500)]
    cash_now = D("10000.00") - D("1001.00") + D("439.00")
    marks = {1_000: {}, 2_000: {"ACME": D("105.00")}, 3_000: {"ACME": D("110.00")}}
    series = pnl_series(history, cash_now, [500, 1_000, 2_000, 3_000], marks)
    # a fill at exactly a bucket end belongs to the next bucket ([start, end))
    assert series[0] == PnlPoint(500, D(0), D("10000.00"))
    assert series[1] == PnlPoint(1_000, D(0), D("10000.00"))
    assert series[2] == PnlPoint(2_000, D(0), D("8999.00") + D("1050.00"))
    # sold 4 at average 100.10: 440 − 1 − 400.40 = 38.60; 6 left at 110 plus cash
    assert series[3] == PnlPoint(3_000, D("38.60"), cash_now + D("660.00"))


def test_pnl_series_equity_is_unknown_without_a_mark_for_a_held_symbol() -> None:
    series = pnl_series([fill("buy", 1, "10.00", "0", at=1)], D("90"), [2], {2: {}})
    assert series == [PnlPoint(2, D(0), None)]


def test_pnl_series_cash_counts_back_from_now_over_fills_after_the_last_bucket() -> None:
    history = [fill("buy", 1, "10.00", "0", at=1), fill("buy", 1, "20.00", "0", at=50)]
    (point,) = pnl_series(history, D("70"), [10], {10: {"ACME": D("12.00")}})
    assert point.equity == D("100") - D("10.00") + D("12.00")


def test_cash_and_cost_follow_the_ledger_which_rounds_the_notional_to_the_cent() -> None:
    bought = fill("buy", 10, "50.0212")  # notional 500.212 → the ledger charges 500.21 + fee 1.00
    assert cash_delta(bought) == D("-501.21")
    assert positions([bought])["ACME"].cost == D("501.21")
    sold = fill("sell", 10, "50.0257", at=1)  # 500.257 → 500.26 − 1.00
    assert cash_delta(sold) == D("499.26")
    assert positions([bought, sold])["ACME"].realized == D("499.26") - D("501.21")


def test_a_reset_starts_the_cost_basis_and_the_series_over() -> None:
    history = [fill("buy", 10, "100.00", at=10), fill("sell", 4, "150.00", at=20),  # the account before its reset
               fill("buy", 2, "120.00", at=40)]
    assert positions(history, since_ms=30) == {"ACME": PositionCost("ACME", 2, D("241.00"), D(0))}
    cash_now = D("10000") - D("241.00")  # the reset set 10,000; one buy since
    marks = {25: {"ACME": D("150")}, 50: {"ACME": D("121")}}
    assert pnl_series(history, cash_now, [25, 30, 50], marks, since_ms=30) == [
        PnlPoint(25, D(0), None), PnlPoint(30, D(0), None), PnlPoint(50, D(0), cash_now + 2 * D("121"))]
