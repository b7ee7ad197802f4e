"""The strategy SDK and the shipped examples: decisions on hand-made ticks, bars and fills (a recording context
stands in for the API), load_strategy's errors, and ApiContext's requests built through an injected `call`."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import textwrap
import time
from decimal import Decimal
from pathlib import Path
from typing import Any

import pytest
from pydantic import BaseModel

from tradesim.domain.events import Bar, OrderOutcome, Tick
from tradesim.settings import Settings
from tradesim.stack.errors import StackError, UserError
from tradesim.strategies import examples
from tradesim.strategies.sdk import (
    MAX_KEY_LEN,
    ApiContext,
    Context,
    Driver,
    OpenOrder,
    OrderRefused,
    Strategy,
    StrategyError,
    StrategyTimeout,
    bar_time_ms,
    idempotency_key,
    load_strategy,
    outside_time_limit,
    time_limit,
)

T0 = 1_704_205_800_000  # 2024-01-02T14:30:00Z
REPO = Path(__file__).resolve().parents[2]


class RecordingContext(Context):
    """Records what a strategy sends; order ids r1, r2, ... in placing order."""

    def __init__(self, symbols: list[str], cash: str = "100000.00") -> None:
        super().__init__(symbols=symbols, cash=Decimal(cash), start_ms=T0)
        self.sent: list[tuple[Any, ...]] = []

    def _submit(self, order: OpenOrder) -> str:
        order_id = f"r{sum(1 for s in self.sent if s[0] == 'order') + 1}"
        self.sent.append(("order", order_id, order.at_ms, order.side, order.symbol, order.qty, order.type,
                          order.limit_price, order.stop_price, order.time_in_force))
        return order_id

    def _cancel(self, order_id: str) -> None:
        self.sent.append(("cancel", order_id, self.now_ms))


def tick(symbol: str, seq: int, last: str, at_ms: int) -> Tick:
    price = Decimal(last)
    return Tick(symbol=symbol, bid=price - Decimal("0.01"), ask=price + Decimal("0.01"), last=price, size=100,
                event_time_ms=at_ms, seq=seq, scenario_id="unit")


def bar(symbol: str, i: int, close: str, interval: str = "1s") -> Bar:
    """The i-th bar (from 0) of `interval` after T0, flat at `close`."""
    width = 1_000 if interval == "1s" else 60_000
    price = Decimal(close)
    return Bar(symbol=symbol, interval=interval, window_start_ms=T0 + i * width,
               window_end_ms=T0 + (i + 1) * width, open=price, high=price, low=price, close=price, vwap=price,
               volume=100, trade_count=1)


def outcome(order_id: str, symbol: str, side: str, qty: int, status: str = "executed", price: str | None = "100.00",
            fee: str = "0.00") -> OrderOutcome:
    executed = status == "executed"
    return OrderOutcome(order_id=order_id, user_id="u1", symbol=symbol, side=side, qty=qty,
                        status=status, reason="insufficient_funds" if status == "rejected" else None,
                        fill_price=Decimal(price) if executed and price else None,
                        fee=Decimal(fee) if executed else None, trade_id=f"{order_id}-t" if executed else None,
                        decided_at_ms=1)


def fill_of(ctx: RecordingContext, order_id: str, price: str) -> OrderOutcome:
    """The executed outcome of a recorded order, at `price`."""
    sent = next(s for s in ctx.sent if s[0] == "order" and s[1] == order_id)
    return outcome(order_id, sent[4], sent[3], sent[5], price=price)


# --- the examples' decisions ---


def test_buy_and_hold_buys_each_symbol_once_on_its_first_tick_at_that_ticks_time() -> None:
    ctx = RecordingContext(["AAPL", "MSFT"])
    driver = Driver(examples.BuyAndHold({"qty": 10}), ctx)
    driver.start()
    for t in (tick("AAPL", 1, "185.50", T0 + 100), tick("IBM", 1, "150.00", T0 + 150),
              tick("AAPL", 2, "185.60", T0 + 200), tick("MSFT", 1, "370.00", T0 + 300),
              tick("MSFT", 2, "371.00", T0 + 400)):
        driver.tick(t)
    assert ctx.sent == [
        ("order", "r1", T0 + 100, "buy", "AAPL", 10, "market", None, None, "day"),
        ("order", "r2", T0 + 300, "buy", "MSFT", 10, "market", None, None, "day"),
    ]


CLOSES = ["10", "10", "10", "10", "10", "11", "12", "13", "9", "8"]


def run_ma_cross(fill: bool = True, interval: str = "1s") -> RecordingContext:
    """fast 2 / slow 4 over 1 s bars closing at CLOSES: flat (spread 0), golden cross at bar 5 (10.5 > 10.25),
    death cross at bar 8 (11 < 11.25). Another symbol's bars are fed in between and must not count."""
    ctx = RecordingContext(["AAPL"])
    driver = Driver(examples.MovingAverageCross({"fast": 2, "slow": 4, "qty": 50, "interval": interval}), ctx)
    driver.start()
    for i, close in enumerate(CLOSES):
        driver.bar(bar("MSFT", i, "1" if i % 2 else "100"))
        driver.bar(bar("AAPL", i, close))
        if fill:
            for order in ctx.open_orders():
                driver.fill(fill_of(ctx, order.order_id, close))
    return ctx


def test_moving_average_cross_buys_the_golden_cross_and_sells_the_position_on_the_death_cross() -> None:
    ctx = run_ma_cross()
    assert ctx.sent == [
        ("order", "r1", T0 + 6_000 - 1, "buy", "AAPL", 50, "market", None, None, "day"),
        ("order", "r2", T0 + 9_000 - 1, "sell", "AAPL", 50, "market", None, None, "day"),
    ]
    assert ctx.position("AAPL") == 0
    assert ctx.cash == Decimal("100000.00") - 50 * Decimal(11) + 50 * Decimal(9)


def test_moving_average_cross_averages_only_bars_of_its_interval() -> None:
    assert run_ma_cross(interval="1m").sent == []


def test_moving_average_cross_cancels_a_buy_still_open_at_the_death_cross_instead_of_selling() -> None:
    ctx = run_ma_cross(fill=False)
    assert ctx.sent == [
        ("order", "r1", T0 + 6_000 - 1, "buy", "AAPL", 50, "market", None, None, "day"),
        ("cancel", "r1", T0 + 9_000 - 1),
    ]
    assert [o.cancel_requested for o in ctx.open_orders()] == [True]


def test_moving_average_cross_does_not_take_the_first_full_window_for_a_cross() -> None:
    ctx = RecordingContext(["AAPL"])
    driver = Driver(examples.MovingAverageCross({"fast": 2, "slow": 3, "qty": 1}), ctx)
    for i, close in enumerate(["1", "2", "3", "4", "5", "6"]):  # rising from the start: fast > slow throughout
        driver.bar(bar("AAPL", i, close))
    assert ctx.sent == []


def test_stop_loss_ladder_buys_then_places_stops_below_the_fill_price() -> None:
    ctx = RecordingContext(["AAPL", "MSFT"])
    driver = Driver(examples.StopLossLadder({"qty": 10, "steps": 3, "step_pct": 2.5}), ctx)
    driver.tick(tick("AAPL", 1, "123.40", T0 + 1_000))
    driver.tick(tick("MSFT", 1, "300.00", T0 + 1_500))
    driver.tick(tick("AAPL", 2, "123.50", T0 + 2_000))
    driver.fill(fill_of(ctx, "r1", "123.45"))
    driver.fill(outcome("r2", "MSFT", "buy", 10, status="rejected"))
    driver.tick(tick("AAPL", 3, "123.60", T0 + 3_000))
    # 123.45 × (1 − 2.5 %, 5 %, 7.5 %) = 120.36375, 117.2775, 114.19125 → down to the cent; 10 shares as 4 + 3 + 3
    assert ctx.sent == [
        ("order", "r1", T0 + 1_000, "buy", "AAPL", 10, "market", None, None, "day"),
        ("order", "r2", T0 + 1_500, "buy", "MSFT", 10, "market", None, None, "day"),
        ("order", "r3", T0 + 2_000, "sell", "AAPL", 4, "stop", None, Decimal("120.36"), "gtc"),
        ("order", "r4", T0 + 2_000, "sell", "AAPL", 3, "stop", None, Decimal("117.27"), "gtc"),
        ("order", "r5", T0 + 2_000, "sell", "AAPL", 3, "stop", None, Decimal("114.19"), "gtc"),
    ]
    assert sum(o.qty for o in ctx.open_orders("AAPL")) == ctx.position("AAPL") == 10


def transcript() -> str:
    """Every example's decisions on the fixed inputs, as JSON (the determinism tests compare these)."""
    out: dict[str, Any] = {"ma": run_ma_cross().sent, "ma_unfilled": run_ma_cross(fill=False).sent}
    ctx = RecordingContext(["AAPL", "MSFT", "IBM", "TSLA"])
    driver = Driver(examples.StopLossLadder({"qty": 7, "steps": 2, "step_pct": "1.5"}), ctx)
    hold = RecordingContext(["AAPL", "MSFT", "IBM", "TSLA"])
    hold_driver = Driver(examples.BuyAndHold({"qty": 3}), hold)
    for seq, symbol in enumerate(["TSLA", "IBM", "AAPL", "MSFT", "IBM", "TSLA"], start=1):
        t = tick(symbol, seq, f"{100 + seq}.25", T0 + seq * 10)
        driver.tick(t)
        hold_driver.tick(t)
        for order in ctx.open_orders():
            if order.type == "market":
                driver.fill(fill_of(ctx, order.order_id, f"{100 + seq}.25"))
    out["ladder"], out["hold"] = ctx.sent, hold.sent
    return json.dumps(out, default=str)


def test_the_examples_decide_without_reading_the_wall_clock(monkeypatch: pytest.MonkeyPatch) -> None:
    def wall_clock(*_: object) -> float:
        raise AssertionError("a strategy read the wall clock")

    for name in ("time", "time_ns", "monotonic", "perf_counter"):
        monkeypatch.setattr(time, name, wall_clock)
    assert json.loads(transcript())["ma"]


def test_the_examples_decide_the_same_in_separate_processes_with_different_hash_seeds() -> None:
    """Set iteration order changes with the hash seed; decisions must not."""
    runs = []
    for seed in ("1", "2"):
        result = subprocess.run(
            [sys.executable, "-c", "from tests.unit.test_strategies import transcript; print(transcript())"],
            cwd=REPO, env={**os.environ, "PYTHONHASHSEED": seed}, capture_output=True, text=True, timeout=120,
            check=True)
        runs.append(result.stdout)
    assert runs[0] == runs[1] == transcript() + "\n"


# --- the context's bookkeeping ---


def test_the_context_books_cash_and_positions_from_outcomes_once_each_by_the_ledgers_rule() -> None:
    seen: list[str] = []

    class Watch(Strategy):
        def on_fill(self, ctx: Context, outcome: OrderOutcome) -> None:
            seen.append(outcome.order_id)

    ctx = RecordingContext(["AAPL"], cash="10000.00")
    driver = Driver(Watch(), ctx)
    buy = ctx.buy("AAPL", 10, type="limit", limit_price=Decimal("100.005"))
    assert [o.order_id for o in ctx.open_orders()] == [buy]
    filled = outcome(buy, "AAPL", "buy", 10, price="100.005", fee="0.10")
    driver.fill(filled)
    driver.fill(filled)  # a repeat: booked and passed on once
    assert seen == [buy]
    assert ctx.open_orders() == []
    assert ctx.cash == Decimal("10000.00") - Decimal("1000.05") - Decimal("0.10")  # notional rounded to cents
    assert ctx.position("AAPL") == 10
    sell = ctx.sell("AAPL", 10)
    driver.fill(outcome(sell, "AAPL", "sell", 10, price="101.00", fee="0.10"))
    driver.fill(outcome("someone-else", "AAPL", "buy", 1, status="cancelled"))
    assert ctx.cash == Decimal("10000.00") - Decimal("1000.15") + Decimal("1009.90")
    assert ctx.position("AAPL") == 0
    assert ctx.positions() == {}
    assert seen == [buy, sell, "someone-else"]


def test_market_time_never_goes_back_and_a_bar_is_handled_at_the_end_of_its_window() -> None:
    ctx = RecordingContext(["AAPL"])
    driver = Driver(Strategy(), ctx)
    driver.tick(tick("AAPL", 1, "10", T0 + 500))
    driver.bar(bar("AAPL", 0, "10"))
    assert ctx.now_ms == bar_time_ms(bar("AAPL", 0, "10")) == T0 + 999
    driver.tick(tick("AAPL", 2, "10", T0 + 1_000))
    with pytest.raises(ValueError, match="went back"):
        driver.bar(bar("AAPL", 0, "10"))  # the bar after the tick that closed it


@pytest.mark.parametrize(("kwargs", "error", "match"), [
    ({"symbol": "MSFT"}, ValueError, "not one of this strategy's symbols"),
    ({"qty": 0}, ValueError, "positive integer"),
    ({"qty": True}, ValueError, "positive integer"),
    ({"type": "limit"}, ValueError, "limit_price is required"),
    ({"stop_price": Decimal("9")}, ValueError, "stop_price is not allowed"),
    ({"type": "limit", "limit_price": 10.5}, TypeError, "must be a Decimal"),
    ({"type": "limit", "limit_price": Decimal("10.00001")}, ValueError, "at most 4 decimal places"),
    ({"type": "stop", "stop_price": Decimal("-1")}, ValueError, "positive price"),
    # a review found 1e30 ending in decimal.InvalidOperation (quantize past 28 digits), and the cap unchecked
    ({"type": "limit", "limit_price": Decimal("1e30")}, ValueError, "at most 1000000"),
    ({"type": "limit", "limit_price": Decimal("1000000.01")}, ValueError, "at most 1000000"),
    # the API refuses these too: sent, they came back as OrderRefused, which a strategy catching refusals
    # (insufficient funds) swallowed, and a run reported as an outcome of its own
    ({"type": "limt"}, ValueError, "type must be one of market, limit, stop, stop_limit"),
    ({"time_in_force": "gtd"}, ValueError, "time_in_force must be one of day, gtc, ioc"),
])
def test_an_order_that_cannot_be_valid_is_refused_before_it_is_sent(kwargs: dict[str, Any], error: type[Exception],
                                                                     match: str) -> None:
    ctx = RecordingContext(["AAPL"])
    with pytest.raises(error, match=match):
        ctx.buy(**{"symbol": "AAPL", "qty": 1, **kwargs})
    assert ctx.sent == []
    assert ctx.open_orders() == []


def test_cancel_sends_once_and_ignores_orders_that_are_not_open() -> None:
    ctx = RecordingContext(["AAPL"])
    order_id = ctx.buy("AAPL", 1, type="limit", limit_price=Decimal("1.00"))
    ctx.cancel(order_id)
    ctx.cancel(order_id)
    ctx.cancel("unknown")
    assert ctx.sent[1:] == [("cancel", order_id, T0)]


# --- load_strategy ---


def test_load_strategy_builds_the_class_with_its_params() -> None:
    strategy = load_strategy("tradesim.strategies.examples:MovingAverageCross",
                             {"fast": 3, "slow": 8, "qty": 5, "interval": "1m"})
    assert isinstance(strategy, examples.MovingAverageCross)
    assert (strategy.cfg.fast, strategy.cfg.slow, strategy.cfg.qty, strategy.cfg.interval) == (3, 8, 5, "1m")
    ladder = load_strategy("tradesim.strategies.examples:StopLossLadder", {"qty": 4, "step_pct": "0.5"})
    assert isinstance(ladder, examples.StopLossLadder)
    assert ladder.cfg.step_pct == Decimal("0.5")


@pytest.fixture
def user_modules(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    (tmp_path / "needs_missing.py").write_text("import tradesim_no_such_dependency\n")
    (tmp_path / "breaks_on_import.py").write_text("raise RuntimeError('boom\\nsecond line')\n")
    (tmp_path / "plain.py").write_text(textwrap.dedent("""
        class NotAStrategy:
            pass
        VALUE = 3
    """))
    (tmp_path / "exits_on_import.py").write_text("import sys\nsys.exit(3)\n")
    (tmp_path / "cancelled.py").write_text(textwrap.dedent("""
        import asyncio
        from tradesim.strategies import Strategy

        class Starts(Strategy):
            def __init__(self, params):
                raise asyncio.CancelledError("stopped")

        if not hasattr(asyncio, "tradesim_probe"):
            raise asyncio.CancelledError("at import")
    """))
    (tmp_path / "keyed.py").write_text(textwrap.dedent("""
        from tradesim.strategies import Strategy

        class NeedsQty(Strategy):
            def __init__(self, params):
                self.qty = params["qty"]

        class NoParams(Strategy):
            def __init__(self):
                super().__init__()
    """))
    monkeypatch.syspath_prepend(str(tmp_path))
    for name in ("needs_missing", "breaks_on_import", "plain", "exits_on_import", "keyed", "cancelled"):
        monkeypatch.delitem(sys.modules, name, raising=False)
    return tmp_path


@pytest.mark.usefixtures("user_modules")
@pytest.mark.parametrize(("path", "params", "field", "message"), [
    ("examples.MovingAverageCross", {}, "class", "is not a class path: write package.module:ClassName"),
    ("tradesim.strategies.nope:X", {}, "class", "no module 'tradesim.strategies.nope'"),
    ("needs_missing:S", {}, "class", "it needs 'tradesim_no_such_dependency', which is not installed"),
    ("breaks_on_import:S", {}, "class", "failed to import: RuntimeError: boom second line"),
    ("tradesim.strategies.examples:Nope", {}, "class", "has no 'Nope'"),
    ("plain:NotAStrategy", {}, "class", "is not a subclass of tradesim.strategies.Strategy"),
    ("plain:VALUE", {}, "class", "is not a subclass"),
    ("tradesim.strategies.sdk:Context", {}, "class", "is not a subclass"),
    # user code that ends the process or raises what a constructor often raises (before: exit 3, a traceback)
    ("exits_on_import:S", {}, "class", "failed to import: SystemExit: 3"),
    ("keyed:NeedsQty", {}, "params", "keyed:NeedsQty failed to start: KeyError: 'qty'"),
    # a probe: a BaseException other than an exit (asyncio's CancelledError) ended `validate` with a traceback
    ("cancelled:Starts", {}, "class", "failed to import: CancelledError: at import"),
    # a probe: reported as a bad param ("takes 1 positional argument but 2 were given")
    ("keyed:NoParams", {}, "class",
     "keyed:NoParams's constructor cannot take the params mapping alone: write __init__(self, params)"),
    ("tradesim.strategies.examples:MovingAverageCross", {"qty": 1, "fats": 2}, "params",
     "fats: unknown param (known: fast, slow, qty, interval)"),
    ("tradesim.strategies.examples:MovingAverageCross", {"qty": 1, "fast": 9, "slow": 9}, "params",
     "fast (9) must be smaller than slow (9)"),
    ("tradesim.strategies.examples:MovingAverageCross", {"fast": 2}, "params", "qty: Field required"),
    ("tradesim.strategies.examples:BuyAndHold", {"qty": "10"}, "params", "qty: Input should be a valid integer"),
    ("tradesim.strategies.examples:BuyAndHold", {"qty": 0}, "params", "qty: Input should be greater than 0"),
    ("tradesim.strategies.examples:StopLossLadder", {"qty": 2, "steps": 3}, "params",
     "qty (2) must be at least steps (3)"),
    ("tradesim.strategies.examples:StopLossLadder", {"qty": 50, "steps": 10, "step_pct": 10}, "params",
     "must stay below 100 %"),
])
def test_load_strategy_explains_what_is_wrong_in_one_line(path: str, params: dict[str, Any], field: str,
                                                          message: str) -> None:
    with pytest.raises(StrategyError) as caught:
        load_strategy(path, params)
    assert caught.value.field == field
    assert message in str(caught.value)
    assert "\n" not in str(caught.value)


@pytest.mark.timeout(60, method="thread")  # the limit under test is SIGALRM, which the signal method would hold
def test_a_strategy_that_never_finishes_importing_or_starting_is_given_up_in_one_line(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Before: `scenarios validate` and `run` waited for ever (a CI job until its own timeout)."""
    (tmp_path / "loops_on_import.py").write_text(textwrap.dedent("""
        while True:
            try:
                pass
            except Exception:  # a strategy's own catch-all does not swallow the limit
                pass
    """))
    (tmp_path / "slow_start.py").write_text(textwrap.dedent("""
        from tradesim.strategies import Strategy

        class Forever(Strategy):
            def __init__(self, params):
                while True:
                    pass
    """))
    monkeypatch.syspath_prepend(str(tmp_path))
    for path in ("loops_on_import:S", "slow_start:Forever"):
        monkeypatch.delitem(sys.modules, path.partition(":")[0], raising=False)
        started = time.monotonic()
        with pytest.raises(StrategyError, match=r"did not return within 0\.5 s \(a loop that never ends\?\)$"):
            load_strategy(path, {}, time_limit_s=0.5)
        assert time.monotonic() - started < 30
    assert signal.getitimer(signal.ITIMER_REAL) == (0.0, 0.0)  # no alarm left behind
    assert load_strategy("tradesim.strategies.examples:BuyAndHold", {"qty": 1}, time_limit_s=0.5)


@pytest.mark.timeout(60, method="thread")
def test_the_time_limit_fires_again_after_a_bare_except_and_pauses_for_the_stacks_own_work() -> None:
    def swallows_the_first() -> None:
        try:
            while True:
                pass
        except BaseException:  # noqa: BLE001, S110 - what a careless strategy does
            pass
        while True:
            pass

    with pytest.raises(StrategyTimeout, match=r"^a callback did not return within 0\.2 s"):
        with time_limit(0.2, "a callback"):
            swallows_the_first()
    with time_limit(0.2, "a callback"):
        with outside_time_limit():
            time.sleep(0.5)  # an API request and its retries: not the strategy's time
        time.sleep(0.1)
    assert signal.getitimer(signal.ITIMER_REAL) == (0.0, 0.0)
    assert signal.getsignal(signal.SIGALRM) in (signal.SIG_DFL, signal.default_int_handler, None)


@pytest.mark.timeout(60, method="thread")
def test_a_callback_that_swallows_the_time_limit_and_returns_still_ends_over_it() -> None:
    """A probe: `try: <work> except: return` returned normally after the limit, what it did depending on where the
    alarm struck; the run went on as if nothing happened."""
    def gives_up_quietly() -> None:
        try:
            while True:
                pass
        except BaseException:  # noqa: BLE001 - what a careless strategy does
            return

    with pytest.raises(StrategyTimeout, match=r"^a callback did not return within 0\.2 s"):
        with time_limit(0.2, "a callback"):
            gives_up_quietly()
    assert signal.getitimer(signal.ITIMER_REAL) == (0.0, 0.0)
    with time_limit(0.2, "a callback"):
        pass  # returns in time: nothing raised after it


# --- ApiContext: the requests it makes ---


class FakeCall:
    """Stands in for tradesim.client.api.call: records each request and answers from a script."""

    def __init__(self, *answers: Any) -> None:
        self.answers = list(answers)
        self.requests: list[dict[str, Any]] = []

    def __call__(self, settings: Settings, method: str, path: str, key: str, *, shape: type[BaseModel],
                 json_body: Any = None, params: dict[str, Any] | None = None, headers: dict[str, str] | None = None,
                 timeout_s: float = 15.0) -> Any:
        self.requests.append({"method": method, "path": path, "key": key, "json": json_body, "params": params,
                              "headers": headers, "shape": shape.__name__})
        answer = self.answers.pop(0) if self.answers else {"order_id": f"o{len(self.requests)}",
                                                           "status": "accepted"}
        if isinstance(answer, Exception):
            raise answer
        return answer


def api_context(settings: Settings, call: FakeCall, run_id: str = "run-1", **kw: Any) -> ApiContext:
    return ApiContext(settings, "key-1", run_id=run_id, strategy="ma", symbols=["AAPL"], cash=Decimal("1000.00"),
                      start_ms=T0, call_fn=call, retry_pause_s=0, sleep=lambda _: None, **kw)


def place_some(ctx: ApiContext) -> None:
    ctx.advance(T0 + 1_000)
    ctx.buy("AAPL", 5)
    ctx.advance(T0 + 2_500)
    ctx.sell("AAPL", 5, type="stop_limit", stop_price=Decimal("99.5000"), limit_price=Decimal("99.25"),
             time_in_force="gtc")


def test_api_context_places_orders_at_market_time_with_deterministic_idempotency_keys(settings: Settings) -> None:
    first, again, other_run = FakeCall(), FakeCall(), FakeCall()
    for call, run_id in ((first, "run-1"), (again, "run-1"), (other_run, "run-2")):
        place_some(api_context(settings, call, run_id))
    assert first.requests == [
        {"method": "POST", "path": "/orders", "key": "key-1", "params": None,
         "json": {"symbol": "AAPL", "side": "buy", "qty": 5, "type": "market", "time_in_force": "day",
                  "at_ms": T0 + 1_000},
         "headers": {"Idempotency-Key": "strategy:run-1:ma:1"}, "shape": "OrderAccepted"},
        {"method": "POST", "path": "/orders", "key": "key-1", "params": None,
         "json": {"symbol": "AAPL", "side": "sell", "qty": 5, "type": "stop_limit", "time_in_force": "gtc",
                  "at_ms": T0 + 2_500, "limit_price": "99.25", "stop_price": "99.50"},
         "headers": {"Idempotency-Key": "strategy:run-1:ma:2"}, "shape": "OrderAccepted"},
    ]
    assert again.requests == first.requests  # a re-run of the same run asks for the same orders
    assert [r["headers"] for r in other_run.requests] == [{"Idempotency-Key": "strategy:run-2:ma:1"},
                                                          {"Idempotency-Key": "strategy:run-2:ma:2"}]


def test_idempotency_keys_are_a_function_of_run_strategy_and_counter() -> None:
    assert idempotency_key("r", "s", 1) == idempotency_key("r", "s", 1)
    keys = {idempotency_key(*k) for k in (("r", "s", 1), ("r", "s", 2), ("r", "t", 1), ("q", "s", 1))}
    assert len(keys) == 4
    long = idempotency_key("r" * 200, "pkg.module:Strategy" * 5, 7)
    assert len(long) <= MAX_KEY_LEN
    assert long == idempotency_key("r" * 200, "pkg.module:Strategy" * 5, 7)
    assert long != idempotency_key("r" * 200, "pkg.module:Strategy" * 5, 8)


def test_api_context_retries_an_unusable_stack_with_the_same_key_then_gives_up(settings: Settings) -> None:
    call = FakeCall(StackError("API error 503: unknown (outcome_unknown)"),
                    UserError("too fast (rate_limited)"), {"order_id": "o_abc", "status": "accepted"})
    ctx = api_context(settings, call)
    assert ctx.buy("AAPL", 1) == "o_abc"
    assert [r["headers"] for r in call.requests] == [{"Idempotency-Key": "strategy:run-1:ma:1"}] * 3
    assert [o.order_id for o in ctx.open_orders()] == ["o_abc"]

    down = FakeCall(*[StackError("the API is not reachable")] * 3)
    with pytest.raises(StackError, match="not reachable"):
        api_context(settings, down, retries=2).buy("AAPL", 1)
    assert len(down.requests) == 3
    assert [r["headers"] for r in down.requests] == [{"Idempotency-Key": "strategy:run-1:ma:1"}] * 3


def test_api_context_waits_out_a_rate_limit_before_it_counts_as_a_refusal(settings: Settings) -> None:
    """A review: three tries, then `refused (rate_limited)` in a run's report: the requests' pace (the runner polls
    with the same key) changed a run's outcomes and its hash."""
    from tradesim.strategies.sdk import RATE_LIMITED_RETRIES

    limited = [UserError("too fast (rate_limited)")] * 10
    call = FakeCall(*limited, {"order_id": "o_abc", "status": "accepted"})
    assert api_context(settings, call).buy("AAPL", 1) == "o_abc"
    assert len(call.requests) == 11
    never = FakeCall(*[UserError("too fast (rate_limited)")] * (RATE_LIMITED_RETRIES + 1))
    with pytest.raises(OrderRefused) as caught:
        api_context(settings, never).buy("AAPL", 1)
    assert caught.value.code == "rate_limited"
    assert len(never.requests) == RATE_LIMITED_RETRIES + 1


def test_api_context_raises_a_refusal_with_its_code_without_retrying(settings: Settings) -> None:
    call = FakeCall(UserError("cash 10.00 cannot cover 500.00 (insufficient_funds)"))
    ctx = api_context(settings, call)
    with pytest.raises(OrderRefused, match="cannot cover") as caught:
        ctx.buy("AAPL", 5)
    assert caught.value.code == "insufficient_funds"
    assert len(call.requests) == 1
    assert ctx.open_orders() == []


def test_api_context_cancels_with_delete_at_market_time_and_ignores_an_order_already_decided(
        settings: Settings) -> None:
    call = FakeCall({"order_id": "o1", "status": "accepted"}, {"order_id": "o2", "status": "accepted"},
                    {"order_id": "o1", "status": "cancel_requested"},
                    UserError("order 'o2' is already executed (order_not_open)"))
    ctx = api_context(settings, call)
    ctx.buy("AAPL", 1, type="limit", limit_price=Decimal("1"))
    ctx.buy("AAPL", 1, type="limit", limit_price=Decimal("2"))
    ctx.advance(T0 + 7_000)
    ctx.cancel("o1")
    ctx.cancel("o2")
    assert [(r["method"], r["path"], r["params"], r["json"], r["shape"]) for r in call.requests[2:]] == [
        ("DELETE", "/orders/o1", {"at_ms": T0 + 7_000}, None, "CancelAccepted"),
        ("DELETE", "/orders/o2", {"at_ms": T0 + 7_000}, None, "CancelAccepted")]
    assert [r["json"]["limit_price"] for r in call.requests[:2]] == ["1.00", "2.00"]


@pytest.mark.usefixtures("user_modules")
def test_a_constructor_raising_a_base_exception_is_a_strategy_that_cannot_start(
        monkeypatch: pytest.MonkeyPatch) -> None:
    """A probe: asyncio's CancelledError (no Exception) from a constructor was a traceback, not one line."""
    import asyncio

    monkeypatch.setattr(asyncio, "tradesim_probe", True, raising=False)  # the module imports this time
    with pytest.raises(StrategyError) as caught:
        load_strategy("cancelled:Starts", {})
    assert (caught.value.field, str(caught.value)) == ("params", "cancelled:Starts failed to start: "
                                                                 "CancelledError: stopped")
    with pytest.raises(KeyboardInterrupt):  # Ctrl-C (and a termination signal) still ends the command
        load_strategy("tests.unit.test_strategies:Interrupted", {})


class Interrupted(Strategy):
    def __init__(self, params: Any) -> None:
        raise KeyboardInterrupt
