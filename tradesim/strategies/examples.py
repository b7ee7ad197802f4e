"""Example strategies shipped with the SDK: buy-and-hold, a moving-average cross, a stop-loss ladder.

Each decides from what it is fed alone (ticks, bars, outcomes) with Decimal prices, so a scenario replays to the
same orders.
"""

from __future__ import annotations

from collections import deque
from collections.abc import Mapping
from decimal import ROUND_DOWN, Decimal
from typing import Any

from pydantic import Field, model_validator

from tradesim.domain.events import MAX_QTY, Bar, BarInterval, OrderOutcome, Tick
from tradesim.domain.money import CENT
from tradesim.strategies.sdk import Context, Strategy, StrategyParams, parse_params

Qty = Field(strict=True, gt=0, le=MAX_QTY, description="shares per order")


class BuyAndHold(Strategy):
    """Buys `qty` shares of each of its symbols at market on that symbol's first tick, then holds."""

    class Params(StrategyParams):
        qty: int = Qty

    def __init__(self, params: Mapping[str, Any] | None = None) -> None:
        super().__init__(params)
        self.cfg = parse_params(self.Params, self.params)
        self.bought: set[str] = set()

    def on_tick(self, ctx: Context, tick: Tick) -> None:
        if tick.symbol not in self.bought:
            self.bought.add(tick.symbol)
            ctx.buy(tick.symbol, self.cfg.qty)


class MovingAverageCross(Strategy):
    """Simple moving averages of the last `fast` and `slow` bar closes (bars of `interval`): buys `qty` at market
    when the fast one crosses above the slow one (golden cross) while flat, sells the whole position when it
    crosses below (death cross). A cross needs `slow` closes on both sides of it, so it does not fire on the
    first full window."""

    class Params(StrategyParams):
        fast: int = Field(5, strict=True, ge=1, description="bars in the fast average")
        slow: int = Field(20, strict=True, ge=2, description="bars in the slow average")
        qty: int = Qty
        interval: BarInterval = Field("1s", description="which bars to average")

        @model_validator(mode="after")
        def _fast_below_slow(self) -> MovingAverageCross.Params:
            if self.fast >= self.slow:
                raise ValueError(f"fast ({self.fast}) must be smaller than slow ({self.slow})")
            return self

    def __init__(self, params: Mapping[str, Any] | None = None) -> None:
        super().__init__(params)
        self.cfg = parse_params(self.Params, self.params)
        self.closes: dict[str, deque[Decimal]] = {}
        #: fast − slow at the previous bar, per symbol (None until the slow window is full)
        self.spread: dict[str, Decimal] = {}

    def on_bar(self, ctx: Context, bar: Bar) -> None:
        if bar.interval != self.cfg.interval:
            return
        closes = self.closes.setdefault(bar.symbol, deque(maxlen=self.cfg.slow))
        closes.append(bar.close)
        if len(closes) < self.cfg.slow:
            return
        fast = sum(list(closes)[-self.cfg.fast:], Decimal(0)) / self.cfg.fast
        slow = sum(closes, Decimal(0)) / self.cfg.slow
        spread, before = fast - slow, self.spread.get(bar.symbol)
        self.spread[bar.symbol] = spread
        if before is None:
            return
        if before <= 0 < spread:
            self._golden(ctx, bar.symbol)
        elif before >= 0 > spread:
            self._death(ctx, bar.symbol)

    def _golden(self, ctx: Context, symbol: str) -> None:
        for order in ctx.open_orders(symbol):
            if order.side == "sell":
                ctx.cancel(order.order_id)
        if ctx.position(symbol) == 0 and not any(o.side == "buy" for o in ctx.open_orders(symbol)):
            ctx.buy(symbol, self.cfg.qty)

    def _death(self, ctx: Context, symbol: str) -> None:
        for order in ctx.open_orders(symbol):
            if order.side == "buy":
                ctx.cancel(order.order_id)  # not filled yet: a late fill would leave a position the sell missed
        held = ctx.position(symbol)
        if held > 0 and not any(o.side == "sell" for o in ctx.open_orders(symbol)):
            ctx.sell(symbol, held)


class StopLossLadder(Strategy):
    """Buys `qty` shares of each symbol at market on its first tick; once filled, protects them with `steps` stop
    sells (good till cancelled) at `step_pct` %, 2 × `step_pct` %, ... below the fill price, the shares split
    evenly (the shallower steps take the remainder)."""

    class Params(StrategyParams):
        qty: int = Qty
        steps: int = Field(3, strict=True, ge=1, le=100, description="stop orders in the ladder")
        step_pct: Decimal = Field(Decimal(2), gt=0, allow_inf_nan=False, description="% between rungs")

        @model_validator(mode="after")
        def _fits(self) -> StopLossLadder.Params:
            if self.qty < self.steps:
                raise ValueError(f"qty ({self.qty}) must be at least steps ({self.steps}): one share per stop")
            if self.steps * self.step_pct >= 100:
                raise ValueError(f"steps × step_pct ({self.steps * self.step_pct} %) must stay below 100 %")
            return self

    def __init__(self, params: Mapping[str, Any] | None = None) -> None:
        super().__init__(params)
        self.cfg = parse_params(self.Params, self.params)
        self.entered: set[str] = set()
        self.entries: dict[str, str] = {}  # entry order id → symbol

    def on_tick(self, ctx: Context, tick: Tick) -> None:
        if tick.symbol not in self.entered:
            self.entered.add(tick.symbol)
            self.entries[ctx.buy(tick.symbol, self.cfg.qty)] = tick.symbol

    def on_fill(self, ctx: Context, outcome: OrderOutcome) -> None:
        if self.entries.pop(outcome.order_id, None) is None or outcome.status != "executed":
            return
        assert outcome.fill_price is not None  # noqa: S101 - an executed outcome carries its price
        for qty, stop in self.ladder(outcome.qty, outcome.fill_price):
            ctx.sell(outcome.symbol, qty, type="stop", stop_price=stop, time_in_force="gtc")

    def ladder(self, qty: int, entry: Decimal) -> list[tuple[int, Decimal]]:
        """(shares, stop price) per rung, shallowest first; prices rounded down to the cent, at least a cent."""
        base, extra = divmod(qty, self.cfg.steps)
        rungs = []
        for k in range(1, self.cfg.steps + 1):
            stop = (entry * (1 - k * self.cfg.step_pct / 100)).quantize(CENT, rounding=ROUND_DOWN)
            rungs.append((base + (1 if k <= extra else 0), max(stop, CENT)))
        return rungs
