"""Property: however duplicates and replays of a user's orders interleave — settled alone or in groups, before or
after their outcomes left the portfolio item for `Orders` — each order keeps its first outcome and the portfolio
is the fold of those first outcomes. Runs the settle logic on the real portfolio store (dynalite); the replays
carry other prices, as a replay after a restore may meet other ticks."""

from __future__ import annotations

import time
import uuid
from collections.abc import Iterator
from decimal import Decimal

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from tradesim.adapters.dynamodb.client import DynamoDB
from tradesim.adapters.dynamodb.orders import OrderStore
from tradesim.adapters.dynamodb.portfolios import PortfolioStore
from tradesim.domain.book import Decision
from tradesim.domain.events import OrderOutcome, OrderPlaced
from tradesim.domain.portfolio import fold
from tradesim.domain.settlement import settle_group
from tradesim.settings import Settings

pytestmark = pytest.mark.integration
CASH = Decimal("1000")
PRICES = [Decimal("90"), Decimal("100"), Decimal("120")]


@pytest.fixture(scope="module")
def db(settings: Settings) -> Iterator[DynamoDB]:
    handle = DynamoDB(settings.dynamodb)
    yield handle
    handle.close()


class Clock:
    """The store's clock: real time plus whatever the schedule let pass (so outcomes age and leave the item)."""

    def __init__(self) -> None:
        self.offset = 0.0

    def __call__(self) -> float:
        return time.time() + self.offset


orders_st = st.lists(st.tuples(st.sampled_from(["buy", "sell"]), st.integers(1, 4)), min_size=2, max_size=6)
step_st = st.one_of(
    st.tuples(st.just("settle"), st.lists(st.tuples(st.integers(0, 5), st.integers(0, 2)), min_size=1, max_size=4)),
    st.tuples(st.just("mirror"), st.just([])),
    st.tuples(st.just("age"), st.just([])),
)


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(spec=orders_st, steps=st.lists(step_st, max_size=16), final_prices=st.lists(st.integers(0, 2), min_size=6,
                                                                                    max_size=6))
def test_any_interleaving_of_duplicates_and_replays_gives_the_fold_of_the_first_outcomes(
        db: DynamoDB, spec: list[tuple[str, int]], steps: list[tuple[str, list[tuple[int, int]]]],
        final_prices: list[int]) -> None:
    user = "prop-" + uuid.uuid4().hex[:10]
    clock = Clock()
    archive = OrderStore(db)
    store = PortfolioStore(db, horizon_ms=1, prune_above=1, archive=archive, clock=clock)
    store.create(user, CASH)
    fees = Settings().trading.fee_model()
    now_ms = int(time.time() * 1000)
    orders = [OrderPlaced(order_id=f"{user}-{i}", user_id=user, symbol="PROP", side=side, qty=qty,  # type: ignore[arg-type]
                          order_type="market", placed_at_ms=now_ms + i) for i, (side, qty) in enumerate(spec)]
    emitted: list[OrderOutcome] = []
    mirrored = 0

    def settle(picks: list[tuple[int, int]]) -> None:
        decisions = [Decision(orders[i % len(orders)], "fill", price=PRICES[p]) for i, p in picks]
        emitted.extend(s.outcome for s in settle_group(user, decisions, store, fees))

    for kind, picks in steps:
        if kind == "settle":
            settle(picks)
        elif kind == "mirror":  # the job's mirror: what was emitted so far reaches Orders
            archive.record_outcomes([(orders[int(o.order_id.rsplit("-", 1)[1])], o) for o in emitted[mirrored:]])
            mirrored = len(emitted)
        else:
            clock.offset += 2.0  # a prune is due at most once a second per user
    settle([(i, final_prices[i]) for i in range(len(orders))])  # every order at least once, replays at new prices

    first: dict[str, OrderOutcome] = {}
    for o in emitted:
        seen = first.setdefault(o.order_id, o)
        assert (o.status, o.reason, o.fill_price, o.fee, o.decided_at_ms) == (
            seen.status, seen.reason, seen.fill_price, seen.fee, seen.decided_at_ms), o.order_id
    expected = fold(CASH, first.values())
    got = store.get(user)
    assert got is not None
    assert (got.cash, {s: q for s, q in got.positions.items() if q}) == (expected.cash, expected.positions)
