"""Property tests of the order book (hypothesis): a scripted order's outcome depends on the tick stream alone, not
on when it (or its timed cancel) arrived; every order is decided at most once; a pickled book decides the same."""

from __future__ import annotations

import pickle
from dataclasses import dataclass
from decimal import Decimal

from hypothesis import given, settings
from hypothesis import strategies as st

from tradesim.domain.book import Book, Decision
from tradesim.domain.events import OrderCancelRequested, OrderPlaced, Tick
from tradesim.domain.matching import DAY_MS, SlippageModel
from tradesim.domain.orders import NOT_PROCESSED

SLIP = SlippageModel(max_bps=Decimal("3"))
DAY0 = 19_725 * DAY_MS + 23 * 3_600_000  # an hour before a market day ends: DAY orders may expire mid-script
STEP = 600_000  # ten minutes between ticks
N_TICKS = 8
PROPS = settings(max_examples=150, derandomize=True, deadline=None)


def _tick(i: int, price: Decimal) -> Tick:
    return Tick(symbol="AAA", bid=price - Decimal("0.05"), ask=price + Decimal("0.05"), last=price, size=1,
                event_time_ms=DAY0 + i * STEP, seq=i + 1, scenario_id="p", run_id=1)


#: market times a script names: before the first tick, on a tick, just before or after one; the last tick comes
#: after every scripted time (the runner's end barrier), so every time is passed
times = st.integers(min_value=-1, max_value=N_TICKS - 2).flatmap(
    lambda i: st.sampled_from([DAY0 + i * STEP, DAY0 + i * STEP + 1, DAY0 + i * STEP - 1]))
prices = st.sampled_from([Decimal(p) for p in ("99", "99.5", "100", "100.5", "101", "102")])


@st.composite
def scripted_orders(draw: st.DrawFn, oid: str) -> OrderPlaced:
    kind = draw(st.sampled_from(["market", "limit", "stop", "stop_limit"]))
    at_ms = draw(times)
    cancel_at = draw(st.none() | times.filter(lambda t: t > at_ms))
    return OrderPlaced(
        order_id=oid, user_id="u1", symbol="AAA", side=draw(st.sampled_from(["buy", "sell"])), qty=1,
        order_type=kind, limit_price=draw(prices) if kind in ("limit", "stop_limit") else None,
        stop_price=draw(prices) if kind in ("stop", "stop_limit") else None,
        time_in_force=draw(st.sampled_from(["day", "gtc", "ioc"])), client_order_id=oid, placed_at_ms=0,
        at_ms=at_ms, cancel_at_ms=cancel_at)


@dataclass(frozen=True)
class Script:
    ticks: list[Tick]
    #: the orders and timed cancels, each with the market time the runner must have sent it by
    events: list[tuple[OrderPlaced | OrderCancelRequested, int]]


@st.composite
def scripts(draw: st.DrawFn) -> Script:
    ticks = [_tick(i, p) for i, p in enumerate(draw(st.lists(prices, min_size=N_TICKS, max_size=N_TICKS)))]
    events: list[tuple[OrderPlaced | OrderCancelRequested, int]] = []
    for n in range(draw(st.integers(1, 5))):
        order = draw(scripted_orders(f"o{n}"))
        assert order.at_ms is not None
        events.append((order, order.at_ms))
        for cancel_ms in draw(st.lists(times, max_size=2)):
            events.append((OrderCancelRequested(order_id=order.order_id, user_id="u1", symbol="AAA",
                                                requested_at_ms=0, at_ms=cancel_ms), cancel_ms))
    return Script(ticks, events)


def _due(ticks: list[Tick], time_ms: int) -> int:
    """The index of the first tick past `time_ms`: the runner sends what is scripted for that time before it."""
    return next((i for i, t in enumerate(ticks) if t.event_time_ms > time_ms), len(ticks))


def feed(book: Book, e: Tick | OrderPlaced | OrderCancelRequested) -> list[Decision]:
    if isinstance(e, Tick):
        return book.on_tick(e, SLIP)
    if isinstance(e, OrderPlaced):
        return book.on_order(e, SLIP, now_ms=0)
    return book.on_cancel(e)


def outcomes(decisions: list[Decision]) -> dict[str, list[tuple[str, Decimal | None, str | None]]]:
    out: dict[str, list[tuple[str, Decimal | None, str | None]]] = {}
    for d in decisions:
        if d.kind != "rest":
            out.setdefault(d.order.order_id, []).append((d.kind, d.price, d.reason))
    return out


def arrange(script: Script, slots: list[int], order: list[int]) -> list[Tick | OrderPlaced | OrderCancelRequested]:
    """The stream with each scripted event sent before tick `slots[i]` (at most its due tick), in `order`."""
    before: dict[int, list[OrderPlaced | OrderCancelRequested]] = {}
    for i in order:
        before.setdefault(slots[i], []).append(script.events[i][0])
    stream: list[Tick | OrderPlaced | OrderCancelRequested] = []
    for i, t in enumerate([*script.ticks, None]):
        stream += before.get(i, [])
        if t is not None:
            stream.append(t)
    return stream


@st.composite
def arrivals(draw: st.DrawFn, script: Script) -> tuple[list[int], list[int]]:
    slots = [draw(st.integers(0, _due(script.ticks, due))) for _, due in script.events]
    return slots, draw(st.permutations(range(len(script.events))))


def run(stream: list[Tick | OrderPlaced | OrderCancelRequested], pickle_at: frozenset[int] = frozenset()) -> tuple[
        dict[str, list[tuple[str, Decimal | None, str | None]]], Book]:
    book = Book()
    out: list[Decision] = []
    for i, e in enumerate(stream):
        if i in pickle_at:
            book = pickle.loads(pickle.dumps(book))  # noqa: S301 - our own state, as Flink keeps it
        out += feed(book, e)
    return outcomes(out), book


@PROPS
@given(data=st.data(), script=scripts())
def test_a_scripts_outcomes_do_not_depend_on_when_its_orders_and_timed_cancels_arrived(
        data: st.DataObject, script: Script) -> None:
    """The module's promise: held until the stream passes their times, so only the tick stream decides."""
    first, _ = run(arrange(script, [0] * len(script.events), list(range(len(script.events)))))
    slots, order = data.draw(arrivals(script))
    again, _ = run(arrange(script, slots, order))
    assert again == first


@PROPS
@given(data=st.data(), script=scripts())
def test_every_order_is_decided_at_most_once_and_an_undecided_one_is_still_held(
        data: st.DataObject, script: Script) -> None:
    slots, order = data.draw(arrivals(script))
    stream = arrange(script, slots, order)
    # immediate cancels too, anywhere (their outcome may depend on arrival; deciding twice never may)
    for oid in data.draw(st.lists(st.sampled_from([f"o{n}" for n in range(5)]), max_size=3)):
        stream.insert(data.draw(st.integers(0, len(stream))),
                      OrderCancelRequested(order_id=oid, user_id="u1", symbol="AAA", requested_at_ms=0))
    # and re-deliveries of a tick (an order delivered again after it was decided is decided again: settling keeps
    # its first outcome)
    for _ in range(data.draw(st.integers(0, 2))):
        stream.insert(data.draw(st.integers(0, len(stream))), data.draw(st.sampled_from(script.ticks)))
    decided, book = run(stream)
    assert all(len(kinds) == 1 for kinds in decided.values()), decided
    placed = {e.order_id for e, _ in script.events if isinstance(e, OrderPlaced)}
    held = set(book.resting) | {o.order_id for o in book.scheduled}
    assert not held & set(decided)
    assert decided.keys() | held == placed  # every order is decided or held: none is lost


@PROPS
@given(data=st.data(), script=scripts())
def test_a_book_pickled_and_restored_anywhere_decides_the_same(data: st.DataObject, script: Script) -> None:
    """The execution job's keyed state is the pickled book: a restore must not change a decision."""
    slots, order = data.draw(arrivals(script))
    stream = arrange(script, slots, order)
    pickle_at = frozenset(data.draw(st.lists(st.integers(0, len(stream)), max_size=4)))
    assert run(stream, pickle_at)[0] == run(stream)[0]


@st.composite
def live_orders(draw: st.DrawFn, oid: str, user: str) -> OrderPlaced:
    kind = draw(st.sampled_from(["market", "limit", "stop", "stop_limit"]))
    return OrderPlaced(
        order_id=oid, user_id=user, symbol="AAA", side=draw(st.sampled_from(["buy", "sell"])), qty=1,
        order_type=kind, limit_price=draw(prices) if kind in ("limit", "stop_limit") else None,
        stop_price=draw(prices) if kind in ("stop", "stop_limit") else None,
        time_in_force=draw(st.sampled_from(["day", "gtc", "ioc"])), placed_at_ms=draw(st.integers(0, 3)),
        cancel_at_ms=draw(st.none() | times))


@st.composite
def mixed_streams(draw: st.DrawFn) -> tuple[list[Tick | OrderPlaced | OrderCancelRequested], set[str]]:
    """Live and scripted orders, immediate and timed cancels (some by another user, some before their order),
    re-delivered ticks and orders that still wait, in any order."""
    script = draw(scripts())
    slots, order = draw(arrivals(script))
    stream = arrange(script, slots, order)
    placed = {e.order_id for e, _ in script.events if isinstance(e, OrderPlaced)}
    for n in range(draw(st.integers(0, 4))):
        live = draw(live_orders(f"l{n}", "u1"))
        placed.add(live.order_id)
        stream.insert(draw(st.integers(0, len(stream))), live)
    for _ in range(draw(st.integers(0, 4))):
        stream.insert(draw(st.integers(0, len(stream))), OrderCancelRequested(
            order_id=draw(st.sampled_from(sorted(placed))), user_id=draw(st.sampled_from(["u1", "u2"])),
            symbol="AAA", requested_at_ms=draw(st.integers(0, 3)), at_ms=draw(st.none() | times)))
    for _ in range(draw(st.integers(0, 2))):
        stream.insert(draw(st.integers(0, len(stream))), draw(st.sampled_from(script.ticks)))
    return stream, placed


def run_live(stream: list[Tick | OrderPlaced | OrderCancelRequested], fallback: Tick | None,
             pickle_at: frozenset[int] = frozenset()) -> tuple[list[Decision], Book]:
    book = Book()
    out: list[Decision] = []
    for i, e in enumerate(stream):
        if i in pickle_at:
            book = pickle.loads(pickle.dumps(book))  # noqa: S301 - our own state, as Flink keeps it
        if isinstance(e, OrderPlaced):  # a live order placed before 2 comes too late (scripted ones in time)
            out += book.on_order(e, SLIP, lambda _: fallback, now_ms=5 if e.at_ms is None else 0, deadline_ms=3)
        else:
            out += feed(book, e)
    return out, book


@PROPS
@given(data=st.data(), mixed=mixed_streams(), use_fallback=st.booleans())
def test_live_and_scripted_orders_are_each_decided_once_and_a_restored_book_decides_the_same(
        data: st.DataObject, mixed: tuple[list[Tick | OrderPlaced | OrderCancelRequested], set[str]],
        use_fallback: bool) -> None:
    stream, placed = mixed
    fallback = _tick(0, Decimal("100")) if use_fallback else None
    out, book = run_live(stream, fallback)
    decided = outcomes(out)
    assert all(len(kinds) == 1 for kinds in decided.values()), decided
    held = set(book.resting) | {o.order_id for o in book.scheduled}
    assert not held & set(decided)
    assert decided.keys() | held == placed
    for e in stream:  # one that came too late expires, as readers show it by then, whatever cancels came first
        if isinstance(e, OrderPlaced) and e.at_ms is None and e.placed_at_ms < 2:
            assert decided[e.order_id] == [("expire", None, NOT_PROCESSED)]
    for d in out:  # what a book announces as resting, it holds (or decides later in this stream)
        if d.kind == "rest":
            assert d.order.order_id in held or d.order.order_id in decided
    pickle_at = frozenset(data.draw(st.lists(st.integers(0, len(stream)), max_size=4)))
    again, _ = run_live(stream, fallback, pickle_at)
    assert [(d.order, d.kind, d.price, d.reason) for d in again] == [(d.order, d.kind, d.price, d.reason) for d in out]
