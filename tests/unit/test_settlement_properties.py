"""Property tests of settling, the portfolio fold, the API's pre-check and P&L (hypothesis; the ledger is the
in-memory stand-in of test_execution_logic): the first recorded outcome wins whatever replays come, the ledger is
the fold of the outcomes announced, nothing goes negative, the pre-check never passes an order its own quote's fill
must refuse, and realized + unrealized P&L is exactly what the trades did to cash and holdings."""

from __future__ import annotations

from decimal import Decimal
from typing import Any

from hypothesis import given, settings
from hypothesis import strategies as st

from tests.unit.test_execution_logic import GroupingStore, MemoryStore
from tradesim.domain.book import Decision
from tradesim.domain.errors import InsufficientFunds, InsufficientShares
from tradesim.domain.events import OrderOutcome, OrderPlaced, Tick
from tradesim.domain.fees import FeeModel
from tradesim.domain.matching import Fill, Quote, SlippageModel, decide
from tradesim.domain.pnl import pnl_series, positions, value
from tradesim.domain.portfolio import Holdings, fill_change, fold
from tradesim.domain.precheck import OrderIntent, check_affordable
from tradesim.domain.settlement import DecisionClock, Settled, decided_before, settle, settle_group
from tradesim.domain.trades import record_of

PROPS = settings(max_examples=150, derandomize=True, deadline=None)
FEES = FeeModel()
prices = st.decimals(min_value=Decimal("0.0001"), max_value=Decimal("2000"), places=4)
symbols = st.sampled_from(["AAA", "BBB"])


@st.composite
def decisions(draw: st.DrawFn, oid: str, order: OrderPlaced | None = None) -> Decision:
    kind = draw(st.sampled_from(["fill", "fill", "fill", "cancel", "expire", "reject"]))
    order = order or OrderPlaced(order_id=oid, user_id="u1", symbol=draw(symbols), qty=draw(st.integers(1, 300)),
                                 side=draw(st.sampled_from(["buy", "sell"])), order_type="market", placed_at_ms=0)
    if kind == "fill":
        return Decision(order, "fill", price=draw(prices))
    reason = {"cancel": None, "expire": "expired", "reject": "unknown_symbol"}[kind]
    return Decision(order, kind, reason=reason)  # type: ignore[arg-type]


@st.composite
def deliveries(draw: st.DrawFn) -> list[Decision]:
    """Decisions of distinct orders, each delivered at least once, some again (replays) anywhere after."""
    first = [draw(decisions(f"o{n}")) for n in range(draw(st.integers(1, 12)))]
    out = list(first)
    for _ in range(draw(st.integers(0, 8))):
        d = draw(st.sampled_from(first))
        # a replay may decide the order otherwise (the book restored and met other ticks): the first still wins
        if draw(st.booleans()):
            d = draw(decisions(d.order.order_id, d.order))  # the same order (one id carries one body)
        out.insert(draw(st.integers(out.index(next(x for x in out if x.order.order_id == d.order.order_id)) + 1,
                                    len(out))), d)
    return out


cash_amounts = st.decimals(min_value=0, max_value=Decimal("200000"), places=2)


def _comparable(o: OrderOutcome) -> dict[str, Any]:
    """An outcome as a replay re-emits it: without the balances the first emission had (the README says so)."""
    return o.model_dump(exclude={"cash_after", "position_after", "traceparent"})


def _clock() -> DecisionClock:
    ticks = iter(range(1_000, 10**9))
    return DecisionClock(lambda: next(ticks))


def _check(cash: Decimal, store: MemoryStore, settled: list[Settled]) -> None:
    first: dict[str, OrderOutcome] = {}
    for s in settled:
        first.setdefault(s.order.order_id, s.outcome)
        assert _comparable(s.outcome) == _comparable(first[s.order.order_id])  # the first recorded outcome wins
        if s.outcome.cash_after is not None:
            assert s.outcome.cash_after >= 0
    assert store.cash >= 0
    assert all(q >= 0 for q in store.positions.values())
    folded = fold(cash, [s.outcome for s in settled])  # replays included: each order counts once
    assert folded.cash == store.cash
    assert folded.positions == {k: v for k, v in store.positions.items() if v}
    for s in settled:  # what a replay that now rests finds is what settling recorded
        again = decided_before(Decision(s.order, "rest"), store)
        assert again is not None
        assert _comparable(again.outcome) == _comparable(first[s.order.order_id])


@PROPS
@given(cash=cash_amounts, stream=deliveries())
def test_the_ledger_is_the_fold_of_the_outcomes_whatever_replays_come(cash: Decimal, stream: list[Decision]) -> None:
    store = MemoryStore(cash=cash)
    clock = _clock()
    _check(cash, store, [settle(d, store, FEES, clock.now_ms) for d in stream])


@PROPS
@given(cash=cash_amounts, stream=deliveries(), data=st.data())
def test_settling_in_groups_is_settling_one_by_one(cash: Decimal, stream: list[Decision], data: st.DataObject) -> None:
    one = MemoryStore(cash=cash)
    clock = _clock()
    singly = [settle(d, one, FEES, clock.now_ms) for d in stream]
    store = GroupingStore(cash)
    clock = _clock()
    grouped: list[Settled] = []
    rest = list(stream)
    while rest:
        n = data.draw(st.integers(1, len(rest)))
        store.lose = data.draw(st.integers(0, 1))  # the group's write may lose to another writer
        grouped += settle_group("u1", rest[:n], store, FEES, clock)
        rest = rest[n:]
    _check(cash, store, grouped)
    assert [_comparable(s.outcome) | {"decided_at_ms": 0} for s in grouped] == [
        _comparable(s.outcome) | {"decided_at_ms": 0} for s in singly]
    assert (store.cash, store.positions) == (one.cash, one.positions)
    times = [s.outcome.decided_at_ms for s in grouped if s.written is not None]
    assert times == sorted(set(times))  # new outcomes of a user: strictly increasing decision times


def _tick(bid: Decimal, spread: Decimal, last: Decimal) -> Tick:
    return Tick(symbol="AAA", bid=bid, ask=bid + spread, last=last, size=1, event_time_ms=1_000, seq=1,
                scenario_id="p", run_id=1)


@st.composite
def fee_models(draw: st.DrawFn) -> FeeModel:
    return draw(st.sampled_from([FEES, FeeModel(Decimal(0), Decimal(0), Decimal(0)),
                                 FeeModel(Decimal("0.01"), Decimal("30"), Decimal("5"))]))


@PROPS
@given(cash=cash_amounts, held=st.integers(0, 500), side=st.sampled_from(["buy", "sell"]), qty=st.integers(1, 500),
       kind=st.sampled_from(["market", "limit", "stop", "stop_limit"]), limit=prices, stop=prices,
       bid=prices.filter(lambda p: p < 1999), spread=st.decimals(0, 1, places=4), last_up=st.booleans(),
       fees=fee_models(), slippage_bps=st.sampled_from([Decimal(0), Decimal(2), Decimal(50)]))
def test_the_pre_check_never_passes_an_order_a_fill_on_its_own_quote_must_refuse(
        cash: Decimal, held: int, side: str, qty: int, kind: str, limit: Decimal, stop: Decimal, bid: Decimal,
        spread: Decimal, last_up: bool, fees: FeeModel, slippage_bps: Decimal) -> None:
    """Advisory, as it says: the price may move before the fill. On the quote it checked, with a buffer no smaller
    than the slippage, a fill the order gets there must pass the ledger's own check."""
    tick = _tick(bid, spread, bid + spread if last_up else bid)
    intent = OrderIntent("AAA", side, qty, kind,  # type: ignore[arg-type]
                         limit_price=limit if kind in ("limit", "stop_limit") else None,
                         stop_price=stop if kind in ("stop", "stop_limit") else None)
    holdings = Holdings(cash=cash, positions={"AAA": held} if held else {})
    try:
        check_affordable(intent, tick, cash, held, buffer_pct=slippage_bps / 100, fees=fees)
    except (InsufficientFunds, InsufficientShares):
        return
    order = OrderPlaced(order_id="o1", user_id="u1", symbol="AAA", side=side, qty=qty, order_type=kind,  # type: ignore[arg-type]
                        limit_price=intent.limit_price, stop_price=intent.stop_price, time_in_force="gtc",
                        placed_at_ms=0)
    d = decide(order, Quote.of(tick), SlippageModel(max_bps=slippage_bps))
    if isinstance(d, Fill):
        holdings.check("AAA", fill_change(order.side, qty, d.price, fees))  # raises if the ledger must refuse


@PROPS
@given(cash=cash_amounts, fills=st.lists(st.tuples(symbols, st.sampled_from(["buy", "sell"]), st.integers(1, 300),
                                                     prices), max_size=30),
       reset_at=st.integers(0, 30), marks=st.fixed_dictionaries({"AAA": prices, "BBB": prices}))
def test_realized_plus_unrealized_is_what_the_trades_did_to_cash_and_holdings(
        cash: Decimal, fills: list[tuple[str, str, int, Decimal]], reset_at: int, marks: dict[str, Decimal]) -> None:
    """pnl's promise: equity − cash before the trades = realized + unrealized, to the cent (average cost, partial
    sales, a sale of everything); trades before the account's last reset are not of this account."""
    h = Holdings(cash=cash)
    records = []
    #: the account's equity at the marks just after each fill's time (bucket end), as the ledger held it
    equities: dict[int, Decimal] = {}
    for i, (symbol, side, qty, price) in enumerate(fills):
        change = fill_change(side, qty, price, FEES)  # type: ignore[arg-type]
        if i == reset_at:
            h = Holdings(cash=cash)  # the account's reset: its cash and positions start over
        try:
            h.apply(symbol, change)
        except (InsufficientFunds, InsufficientShares):
            continue  # the ledger refused it: no execution
        finally:
            equities[10 * (i + 1) + 5] = h.cash + sum((marks[s] * q for s, q in h.positions.items()), Decimal(0))
        records.append(record_of(OrderOutcome(
            order_id=f"o{i}", user_id="u1", symbol=symbol, side=side, qty=qty, status="executed",  # type: ignore[arg-type]
            fill_price=price, fee=change.fee, trade_id=f"o{i}-1", decided_at_ms=10 * (i + 1))))
    since = 10 * (reset_at + 1) if reset_at < len(fills) else 0
    held = positions(records, since_ms=since)
    total = Decimal(0)
    for symbol, p in held.items():
        assert p.qty == h.position(symbol)
        valued = value(p, h.position(symbol), marks[symbol], None)
        assert valued.unrealized is not None
        total += valued.realized + valued.unrealized
    equity = h.cash + sum((marks[s] * q for s, q in h.positions.items()), Decimal(0))
    assert total == equity - cash
    (point,) = pnl_series(records, h.cash, [10**6], {10**6: marks}, since_ms=since)
    assert point.equity == equity
    assert point.realized == sum((p.realized for p in held.values()), Decimal(0))
    ends = sorted(equities)
    series = pnl_series(records, h.cash, ends, dict.fromkeys(ends, marks), since_ms=since)
    assert [p.equity for p in series] == [None if end <= since else equities[end] for end in ends]
