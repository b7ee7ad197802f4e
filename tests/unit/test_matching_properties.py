"""Property tests of matching and portfolio maths (hypothesis): conservation, no negatives, limit guarantees."""

from __future__ import annotations

from decimal import Decimal

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from tradesim.domain.errors import InsufficientFunds, InsufficientShares
from tradesim.domain.events import OrderOutcome, OrderPlaced
from tradesim.domain.fees import FeeModel
from tradesim.domain.matching import Expire, Fill, Quote, Rest, SlippageModel, decide
from tradesim.domain.portfolio import Holdings, fill_change, fold

prices = st.decimals(min_value=Decimal("0.01"), max_value=Decimal("5000"), places=4)
qtys = st.integers(min_value=1, max_value=10_000)
sides = st.sampled_from(["buy", "sell"])
FEES = FeeModel()
SLIP = SlippageModel(max_bps=Decimal("5"))


@st.composite
def quotes(draw: st.DrawFn) -> Quote:
    bid = draw(prices)
    spread = draw(st.decimals(min_value=Decimal("0"), max_value=Decimal("1"), places=4))
    last = draw(st.sampled_from([bid, bid + spread]))
    return Quote(bid=bid, ask=bid + spread, last=last, event_time_ms=1_000)


def _order(side: str, kind: str, *, limit: Decimal | None = None, stop: Decimal | None = None,
           tif: str = "gtc", oid: str = "o-1") -> OrderPlaced:
    return OrderPlaced(order_id=oid, user_id="u", symbol="AAA", side=side, qty=10, order_type=kind,  # type: ignore[arg-type]
                       limit_price=limit, stop_price=stop, time_in_force=tif, placed_at_ms=0)  # type: ignore[arg-type]


@given(side=sides, limit=prices, quote=quotes())
def test_limit_orders_never_fill_worse_than_their_limit(side: str, limit: Decimal, quote: Quote) -> None:
    d = decide(_order(side, "limit", limit=limit), quote, SLIP)
    if isinstance(d, Fill):
        assert d.price <= limit if side == "buy" else d.price >= limit
        assert d.price == (quote.ask if side == "buy" else quote.bid) or d.price == limit
    else:
        # it rests only when the quote does not cross
        assert quote.ask > limit if side == "buy" else quote.bid < limit


@given(side=sides, quote=quotes(), oid=st.text(min_size=1, max_size=12, alphabet="abcdef0123456789"))
def test_market_price_is_within_slippage_and_deterministic(side: str, quote: Quote, oid: str) -> None:
    order = _order(side, "market", oid=oid)
    d = decide(order, quote, SLIP)
    assert isinstance(d, Fill)
    assert d == decide(order, quote, SLIP)  # same order id ⇒ same price after a restore
    tol = Decimal("0.0001")
    if side == "buy":
        assert quote.ask - tol <= d.price <= quote.ask * (1 + SLIP.max_bps / 10_000) + tol
    else:
        assert quote.bid * (1 - SLIP.max_bps / 10_000) - tol <= d.price <= quote.bid + tol


@given(side=sides, stop=prices, quote=quotes())
def test_stop_triggers_only_when_last_crosses(side: str, stop: Decimal, quote: Quote) -> None:
    d = decide(_order(side, "stop", stop=stop), quote, SLIP)
    crossed = quote.last >= stop if side == "buy" else quote.last <= stop
    assert isinstance(d, Fill) == crossed


@given(quote=quotes(), limit=prices)
def test_ioc_fills_now_or_expires(quote: Quote, limit: Decimal) -> None:
    d = decide(_order("buy", "limit", limit=limit, tif="ioc"), quote, SLIP)
    assert isinstance(d, Fill | Expire)
    assert not isinstance(d, Rest)


def test_day_order_expires_after_its_day() -> None:
    order = _order("buy", "limit", limit=Decimal("1"), tif="day")
    late = Quote(bid=Decimal("5"), ask=Decimal("5.01"), last=Decimal("5"), event_time_ms=86_400_000)
    assert isinstance(decide(order, late, SLIP), Expire)


fills = st.lists(st.tuples(sides, st.sampled_from(["AAA", "BBB"]), st.integers(1, 500), prices), max_size=40)


@settings(max_examples=300)
@given(cash=st.decimals(min_value=Decimal("0"), max_value=Decimal("1000000"), places=2), seq=fills)
def test_conservation_and_no_negatives(cash: Decimal, seq: list[tuple[str, str, int, Decimal]]) -> None:
    h = Holdings(cash=cash)
    basis = Decimal(0)  # Σ signed position × fill price
    fees = Decimal(0)
    for side, symbol, qty, price in seq:
        change = fill_change(side, qty, price, FEES)  # type: ignore[arg-type]
        before = h.cash + basis
        try:
            h.apply(symbol, change)
        except (InsufficientFunds, InsufficientShares):
            assert h.cash + basis == before  # a refused fill changes nothing
            continue
        basis += change.qty_delta * price
        fees += change.fee
        # cash + Σ position × fill price moves only by the fee (plus ≤ half a cent of cash rounding)
        assert abs((h.cash + basis) - before + change.fee) <= Decimal("0.005")
        assert h.cash >= 0
        assert all(q > 0 for q in h.positions.values())
    assert abs((h.cash + basis) - (cash - fees)) <= Decimal("0.005") * max(1, len(seq))


def _outcome(oid: str, side: str, qty: int, price: Decimal) -> OrderOutcome:
    return OrderOutcome(order_id=oid, user_id="u", symbol="AAA", side=side, qty=qty, status="executed",  # type: ignore[arg-type]
                        fill_price=price, fee=FEES.fee(qty, price), trade_id=f"{oid}-1", decided_at_ms=1)


@given(st.lists(st.tuples(st.integers(1, 50), prices), min_size=1, max_size=20), st.data())
def test_fold_counts_each_order_once(buys: list[tuple[int, Decimal]], data: st.DataObject) -> None:
    outcomes = [_outcome(f"o{i}", "buy", q, p) for i, (q, p) in enumerate(buys)]
    cash = sum((FEES.buy_cost(q, p) for q, p in buys), Decimal(0))
    once = fold(cash, outcomes)
    replayed = outcomes + data.draw(st.lists(st.sampled_from(outcomes), max_size=10))
    assert fold(cash, replayed) == once
    assert once.cash == 0
    assert once.positions == {"AAA": sum(q for q, _ in buys)}


def test_refused_fill_raises_typed_errors() -> None:
    h = Holdings(cash=Decimal("10"))
    with pytest.raises(InsufficientFunds):
        h.apply("AAA", fill_change("buy", 1, Decimal("100"), FEES))
    with pytest.raises(InsufficientShares):
        h.apply("AAA", fill_change("sell", 1, Decimal("1"), FEES))


def test_a_sale_of_shares_never_held_is_refused_for_the_shares_even_when_the_fee_is_not_covered_either() -> None:
    """A probe: the API's pre-check said insufficient_shares, settlement insufficient_funds (it tested cash
    first), so a scripted sale of shares never held ended `insufficient_funds`."""
    change = fill_change("sell", 1, Decimal("0.50"), FEES)
    assert change.cash_delta < 0  # the fee is more than the proceeds: cash 0 cannot cover it either
    with pytest.raises(InsufficientShares):
        Holdings(cash=Decimal("0")).apply("AAA", change)


def test_a_market_sale_never_fills_at_zero_whatever_the_slippage() -> None:
    """Before: at `slippage_bps` near 10,000 a sale of a one-cent bid rounded to 0.0000 now and then; the job's ledger
    wrote the sale, then the outcome refused the price, and every settle of the order raised (no outcome, ever)."""
    wide = SlippageModel(max_bps=Decimal("10000"))
    penny = Quote(bid=Decimal("0.01"), ask=Decimal("0.02"), last=Decimal("0.01"), event_time_ms=1_000)
    for i in range(2_000):  # o19942 rounded to 0 before; ~0.4% of ids did
        order = _order("sell", "market", oid=f"o{i}" if i else "o19942")
        d = decide(order, penny, wide)
        assert isinstance(d, Fill)
        assert d.price >= Decimal("0.0001")
        change = fill_change("sell", order.qty, d.price, FEES)
        OrderOutcome(order_id=order.order_id, user_id="u", symbol="AAA", side="sell", qty=order.qty,
                     status="executed", fill_price=d.price, fee=change.fee, trade_id=f"{order.order_id}-1",
                     decided_at_ms=1_000)
