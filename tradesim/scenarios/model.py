"""The scenario file format: which symbols exist and how their prices move, on a simulated clock, and optionally
what is traded on them (accounts, scripted orders, a strategy) and what must come out (`expect`).

Every section forbids unknown keys so a typo fails validation instead of silently doing nothing; names that point
elsewhere in the file (an order's account, a symbol, an expected order id) are checked here, at their line.
"""

from __future__ import annotations

import math
import re
from collections.abc import Collection, Iterator
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from pathlib import Path
from typing import Annotated, Any, Literal, get_args

from pydantic import (
    AwareDatetime,
    BaseModel,
    BeforeValidator,
    ConfigDict,
    Discriminator,
    Field,
    PrivateAttr,
    Tag,
    ValidationInfo,
    field_validator,
    model_validator,
)

from tradesim.domain.events import (
    BAR_INTERVALS,
    CASH_DIGITS,
    MAX_EPOCH_MS,
    MAX_PRICE,
    MAX_PRINT_SIZE,
    MAX_QTY,
    PRICE_PLACES,
    SYMBOL_RE,
    IdStr,
    OrderType,
    RejectReason,
    Side,
    SymbolStr,
    TimeInForce,
    epoch_ms,
)
from tradesim.domain.money import plain_decimal
from tradesim.domain.orders import price_problems
from tradesim.scenarios.errors import CrossFieldError
from tradesim.scenarios.replay import CsvSummary, scan_csv

Loc = tuple[str | int, ...]


def _no_bool(value: Any) -> Any:
    """YAML `true` is no number (pydantic would read it as 1); YAML 1.1 strings like `1e9` stay numbers."""
    if isinstance(value, bool):
        raise ValueError("must be a number, not true/false")
    return value


def _finite(value: Any) -> Any:
    """YAML's .nan and .inf, refused as what they are (a NaN otherwise failed a bound: "must be >= 0"); a number
    written as a string is one as people write it (Python's float() also reads `1_20` and other scripts' digits)."""
    if isinstance(value, float) and not math.isfinite(value):
        raise ValueError("must be a finite number, not NaN or infinity")
    if isinstance(value, str) and plain_decimal(value) is None:
        raise ValueError(f"not a number: {value!r}")
    return value


NotBool = BeforeValidator(_no_bool)
FiniteFloat = Annotated[float, NotBool, BeforeValidator(_finite), Field(allow_inf_nan=False)]
Int = Annotated[int, NotBool]


#: ticks one pass of a scenario may generate: a run holds them in memory
MAX_GENERATED_TICKS = 10_000_000
#: a century: longer than any market history, and well inside the range of tick event times
MAX_DURATION_S = 100 * 365.25 * 86_400
#: one shock's reach: ×10,001 up, and a spread 10,000 times as wide (prices stay within the schema's cap anyway)
MAX_MOVE_PCT = 1_000_000
MAX_SPREAD_MULTIPLIER = 10_000
#: σ (100,000 %/√year) far past any market and well below where σ²/2 overflows a float (the path turned to NaN)
MAX_VOLATILITY = 1000.0
_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)

def _decimal_text(value: Any) -> Any:
    """A number written as a string is one as people write it (pydantic, as Python, also reads `1_85.50`, other
    scripts' digits and spaces around: a typo would be a price)."""
    if not isinstance(value, str):
        return value
    number = plain_decimal(value)
    if number is None:
        raise ValueError(f"not a number: {value!r} (write digits and a point, e.g. \"185.50\")")
    return number  # pydantic's own reading calls 1e1000000000000000000 no decimal, not too big as it is


#: a decimal field: a number, or a string that spells one plainly
DecimalText = Annotated[Decimal, BeforeValidator(_decimal_text)]


class _Section(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class Spread(_Section):
    """Quoted spread around the mid price: set exactly one of `bps` (of mid) or `absolute` (price units)."""

    bps: DecimalText | None = Field(None, ge=0, le=10_000, allow_inf_nan=False,
                                description="Full spread in basis points of mid (at most 10,000: the mid itself).")
    absolute: DecimalText | None = Field(None, ge=0, le=MAX_PRICE, allow_inf_nan=False,
                                     description="Full spread in price units.")

    @model_validator(mode="after")
    def _exactly_one(self) -> Spread:
        if (self.bps is None) == (self.absolute is None):
            raise ValueError("set exactly one of bps, absolute")
        return self

    def half_width(self, mid: float) -> float:
        """Half the spread at this mid price (float: the generator works in ticks, see generators.py)."""
        if self.bps is not None:
            return mid * float(self.bps) / 20_000.0
        return float(self.absolute or 0) / 2.0


class LognormalVolume(_Section):
    """Trade sizes from a lognormal with the given mean, rounded to whole lots (at least one lot)."""

    kind: Literal["lognormal"]
    mean: FiniteFloat = Field(gt=0, le=MAX_PRINT_SIZE, description="Mean size in shares.")
    # 5 is a spread of e^5 ≈ 150× per standard deviation; much more would overflow a draw
    sigma: FiniteFloat = Field(0.5, ge=0, le=5, description="Standard deviation of log size.")
    lot: Int = Field(1, ge=1, le=MAX_PRINT_SIZE, description="Sizes are multiples of this.")


class PoissonVolume(_Section):
    """Trade sizes as a Poisson count of lots (normal approximation for large means); may be zero."""

    kind: Literal["poisson"]
    mean: FiniteFloat = Field(gt=0, le=MAX_PRINT_SIZE, description="Mean size in shares.")
    lot: Int = Field(1, ge=1, le=MAX_PRINT_SIZE, description="Sizes are multiples of this.")


VolumeModel = Annotated[LognormalVolume | PoissonVolume, Field(discriminator="kind")]


class SymbolSpec(_Section):
    """One simulated instrument: seeded geometric Brownian motion plus spread and size models."""

    symbol: SymbolStr
    initial_price: DecimalText = Field(gt=0, le=MAX_PRICE, allow_inf_nan=False, decimal_places=PRICE_PLACES,
                                   description="Mid price at `start`.")
    drift: FiniteFloat = Field(0.0, description="Annual drift μ (0.05 = +5 %/year, calendar year).")
    volatility: FiniteFloat = Field(0.2, ge=0, le=MAX_VOLATILITY,
                                    description="Annual volatility σ (0.2 = 20 %/√year; at most 1,000).")
    tick_size: DecimalText = Field(Decimal("0.01"), gt=0, lt=MAX_PRICE, allow_inf_nan=False,
                               decimal_places=PRICE_PLACES, description="Prices are multiples.")
    spread: Spread = Spread(bps=Decimal(5))
    volume: VolumeModel = LognormalVolume(kind="lognormal", mean=100.0)

    @model_validator(mode="after")
    def _quotable(self) -> SymbolSpec:
        """Prices are whole ticks of at least one: an initial price under a tick was quoted at one tick from the
        first tick on (0.004 with the default tick showed 0.01, two and a half times it), without a word."""
        if self.initial_price < self.tick_size:
            raise CrossFieldError([(("initial_price",), f"below one tick_size ({self.tick_size}): prices are whole "
                                                         "ticks; give a smaller tick_size")])
        return self


class ShockSpec(_Section):
    """A deterministic price move layered on the random path: a gap (over_s 0) or a slide over a window."""

    at_s: FiniteFloat = Field(ge=0, description="Seconds after `start` when the move begins.")
    symbol: str = Field(pattern=f"^(\\*|{SYMBOL_RE})$", description="A symbol, or * for all.")
    move_pct: FiniteFloat = Field(gt=-100, le=MAX_MOVE_PCT,
                                  description="Total move in percent (−12 = down 12 %; at most 1,000,000).")
    over_s: FiniteFloat = Field(0.0, ge=0, le=MAX_DURATION_S,
                                description="Window the move is spread over (0 = instant gap).")
    spread_multiplier: FiniteFloat = Field(1.0, ge=1, le=MAX_SPREAD_MULTIPLIER,
                                           description="Spread is widened by this inside the window (at most 10,000).")

    @property
    def at_ms(self) -> int:
        """`at_s` in whole milliseconds after the start, as the generator applies it."""
        return round(self.at_s * 1000)

    @property
    def over_ms(self) -> int:
        """`over_s` in whole milliseconds, as the generator applies it (0: an instant gap, which has no window)."""
        return round(self.over_s * 1000)


class CsvSource(_Section):
    """Recorded ticks replayed as-is: columns timestamp, symbol, bid, ask, last, size (more are ignored)."""

    csv: Path = Field(description="CSV file, relative to the scenario file.")

    @field_validator("csv")
    @classmethod
    def _relative_to_scenario(cls, value: Path, info: ValidationInfo) -> Path:
        base = (info.context or {}).get("base_dir")
        return value if value.is_absolute() or base is None else Path(base) / value


_OFFSET_RE = re.compile(r"^(\d+(?:\.\d+)?)\s*(ms|s|m|h)?$", re.ASCII)
_UNIT_MS = {"ms": 1, "s": 1000, "m": 60_000, "h": 3_600_000}


def _offset_ms(value: Any) -> Any:
    """A time offset (60s, 1.5s, 2m, 250ms, 1h, or a number of seconds) as whole milliseconds after the start."""
    amount: Decimal | None = None
    unit = "s"
    if isinstance(value, int | float) and not isinstance(value, bool):
        amount = Decimal(str(value))
    elif isinstance(value, str) and (match := _OFFSET_RE.match(value.strip())):
        amount, unit = Decimal(match[1]), match[2] or "s"
    if amount is None or not amount.is_finite():
        raise ValueError(f"not a time offset: {value!r} (write e.g. 60s, 1.5s, 2m or a number of seconds)")
    if amount < 0:
        raise ValueError("must be >= 0")
    ms = amount * _UNIT_MS[unit]
    if ms > MAX_DURATION_S * 1000:  # (before: an OverflowError traceback where the file's times are shown)
        raise ValueError(f"must be before the end, and no scenario lasts longer than "
                         f"{MAX_DURATION_S / (365.25 * 86_400):g} years")
    if ms != ms.to_integral_value():
        raise ValueError(f"{value!r} is finer than a millisecond")
    return int(ms)


def _no_float(value: Any) -> Any:
    """Money in the trading sections is written as a string (or integer): YAML floats cannot hold every cent."""
    if isinstance(value, float | bool):
        raise ValueError(f"write money as a quoted decimal string, e.g. \"{value}\"")
    return value


def _no_number(value: Any) -> Any:
    """A time written as a number would be read as epoch seconds or milliseconds, by its size: refused."""
    if isinstance(value, int | float) or (isinstance(value, str) and _is_number(value)):
        raise ValueError("write a time as ISO-8601 with a UTC offset, e.g. 2024-03-15T13:30:00Z")
    return value


def _is_number(text: str) -> bool:
    try:
        float(text)
    except ValueError:
        return False
    return True


#: milliseconds after the scenario start; written as "60s", "1.5s", "2m" or seconds
SimOffset = Annotated[int, BeforeValidator(_offset_ms)]
Money = Annotated[Decimal, BeforeValidator(_decimal_text), BeforeValidator(_no_float), Field(allow_inf_nan=False)]
#: what the order API takes: positive, at most 4 decimal places
Price = Annotated[Decimal, BeforeValidator(_decimal_text), BeforeValidator(_no_float),
                  Field(gt=0, le=MAX_PRICE, allow_inf_nan=False, decimal_places=PRICE_PLACES)]
#: starting cash as the account API takes it: >= 0, cents
Cash = Annotated[Decimal, BeforeValidator(_decimal_text), BeforeValidator(_no_float),
                 Field(ge=0, lt=Decimal(10) ** CASH_DIGITS, allow_inf_nan=False, decimal_places=2)]
Count = Annotated[int, Field(ge=0, strict=True)]
#: an account name; the runner prefixes it per run (the API allows 40 characters), so it stays short
AccountName = Annotated[str, Field(pattern=r"^[a-z0-9][a-z0-9_\-]{0,23}$")]
#: the names the runner gives a strategy's orders, in the report, `expect.orders` and the outcomes hash: s1, s2, ...
STRATEGY_ORDER_ID = re.compile(r"s[1-9][0-9]*")


def strategy_order_id(n: int) -> str:
    """The name of a strategy's n-th order (from 1)."""
    return f"s{n}"


#: "package.module:ClassName"
CLASS_PATH_RE = r"^[A-Za-z_][A-Za-z0-9_]*(\.[A-Za-z_][A-Za-z0-9_]*)*:[A-Za-z_][A-Za-z0-9_]*$"
#: what an order's expected status can be: a terminal outcome (OrderStatus), `refused` (the API answered 4xx: never
#: placed), or `open` (still in the book when the run ended, e.g. a gtc limit never reached: the report's word).
#: One flat Literal, not a union, so a wrong value gets one plain error message
ExpectedStatus = Literal["executed", "rejected", "cancelled", "expired", "refused", "open"]
REJECT_REASONS: tuple[str, ...] = get_args(RejectReason)


#: the account the runner makes for itself in every run (it places the orders that mark the end of the run)
RUNNER_ACCOUNT = "barrier"


class Account(_Section):
    """A trading account, created fresh for each run (the runner namespaces its name by the run)."""

    name: AccountName
    cash: Cash = Field(description="Starting cash, a decimal string.")

    @field_validator("name")
    @classmethod
    def _not_the_runners(cls, value: str) -> str:
        if value == RUNNER_ACCOUNT:
            raise ValueError(f"{RUNNER_ACCOUNT!r} is the runner's own account in every run; choose another name")
        return value


class ScriptedOrder(_Section):
    """An order placed at a simulated time, as an account; optionally cancelled at a later simulated time."""

    id: IdStr = Field(description="Name used by `expect.orders`; defaults to o<index> (o0 is the first order).")
    at_ms: SimOffset = Field(alias="at", description="When it is placed, after the scenario start.")
    account: AccountName
    symbol: SymbolStr
    side: Side
    qty: int = Field(gt=0, le=MAX_QTY, strict=True, description="Shares, a positive integer.")
    type: OrderType = "market"
    limit_price: Price | None = Field(None, description="Required for limit and stop_limit, else absent.")
    stop_price: Price | None = Field(None, description="Required for stop and stop_limit, else absent.")
    time_in_force: TimeInForce = "day"
    cancel_at_ms: SimOffset | None = Field(None, alias="cancel_at", description="A cancel request, after `at`.")
    idempotency_key: IdStr | None = Field(None, description="Sent as Idempotency-Key (namespaced by the run).")

    @model_validator(mode="after")
    def _consistent(self) -> ScriptedOrder:
        problems: list[tuple[Loc, str]] = [
            ((name,), message)
            for name, message in price_problems(self.type, self.limit_price is not None, self.stop_price is not None)
        ]
        if self.cancel_at_ms is not None and self.cancel_at_ms <= self.at_ms:
            problems.append((("cancel_at",), f"must be after at ({seconds_text(self.at_ms)})"))
        if problems:
            raise CrossFieldError(problems)
        return self


class StrategyRef(_Section):
    """A strategy class the runner imports and drives; only the path's syntax is checked here."""

    class_path: str = Field(alias="class", pattern=CLASS_PATH_RE, description="package.module:ClassName")
    account: AccountName
    symbols: list[SymbolStr] = Field(min_length=1, description="What it trades (scenario symbols).")
    params: dict[str, Any] = Field(default_factory=dict, description="Passed to the class as is.")
    time_limit_s: FiniteFloat = Field(60, ge=1, le=3600, description="How long its import, constructor or one "
                                      "callback may run before the run gives up on it (exit 2 for the import or "
                                      "constructor, as a strategy that cannot load; exit 1 for a callback).")


class Range(_Section):
    """An inclusive range; set `min`, `max` or both."""

    min: Money | None = None
    max: Money | None = None

    @model_validator(mode="before")
    @classmethod
    def _mapping(cls, value: Any) -> Any:
        if not isinstance(value, dict | Range):  # else pydantic's words: "a valid dictionary or instance of Range"
            raise ValueError(f"a range is written {{min: ..., max: ...}} (either or both), not {value!r}")
        return value

    @model_validator(mode="after")
    def _bounds(self) -> Range:
        if self.min is None and self.max is None:
            raise ValueError("set min, max or both")
        if self.min is not None and self.max is not None and self.min > self.max:
            raise CrossFieldError([(("max",), f"must be >= min ({self.min})")])
        return self

    def __contains__(self, value: object) -> bool:
        if not isinstance(value, Decimal | int):
            return False
        return (self.min is None or value >= self.min) and (self.max is None or value <= self.max)

    def __str__(self) -> str:
        if self.min is not None and self.max is not None:
            return f"between {self.min} and {self.max}"
        return f"at least {self.min}" if self.min is not None else f"at most {self.max}"


class OrderExpect(_Section):
    """What one scripted order must end as."""

    status: ExpectedStatus | None = None
    reason: str | None = Field(None, pattern=r"^[a-z][a-z_]*$",
                               description="A reject/expiry reason, or the API's error code when refused.")
    fill_price: Range | None = None

    @model_validator(mode="after")
    def _consistent(self) -> OrderExpect:
        if self.status is None and self.reason is None and self.fill_price is None:
            raise ValueError("set status, reason or fill_price")
        problems: list[tuple[Loc, str]] = []
        if self.reason is not None and self.status != "refused" and self.reason not in REJECT_REASONS:
            problems.append((("reason",), f"unknown reason {self.reason!r} (one of {', '.join(REJECT_REASONS)}; "
                                          "an API error code needs status: refused)"))
        if self.fill_price is not None and self.status not in (None, "executed"):
            problems.append((("fill_price",), f"{_a(self.status)} order has no fill price"))
        if self.reason is not None and self.status in ("executed", "cancelled", "open"):
            problems.append((("reason",), f"{_a(self.status)} order has no reason (only rejected, expired and "
                                          "refused ones do)"))
        elif self.reason is not None and self.fill_price is not None:
            problems.append((("reason",), "an order with a reason has no fill price (it did not execute)"))
        if problems:
            raise CrossFieldError(problems)
        return self


def _a(word: str | None) -> str:
    return f"{'an' if (word or ' ')[0] in 'aeiou' else 'a'} {word}"


class AccountExpect(_Section):
    """An account at the end of the run."""

    cash: Range | None = None
    positions: dict[str, Count] = Field(default_factory=dict, description="Symbol → shares held (0: flat).")
    realized_pnl: Range | None = Field(None, description="Average-cost method, fees included.")
    executions: Count | None = Field(None, description="Orders of this account that executed.")

    @model_validator(mode="after")
    def _something(self) -> AccountExpect:
        if self.cash is None and not self.positions and self.realized_pnl is None and self.executions is None:
            raise ValueError("set cash, positions, realized_pnl or executions")
        return self


class CountRange(Range):
    """An inclusive range of counts: whole numbers, at least 0."""

    min: Count | None = None  # type: ignore[assignment]  # a Range whose bounds are counts
    max: Count | None = None  # type: ignore[assignment]


def _count_or_range(value: Any) -> str:
    return "range" if isinstance(value, dict) else "count"


#: a count, or a range written as a mapping: only the form written is checked (one problem, not one per form)
CountOrRange = Annotated[Annotated[Count, Tag("count")] | Annotated[CountRange, Tag("range")],
                         Discriminator(_count_or_range)]


class MarketExpect(_Section):
    """Market data the run produced."""

    bars: dict[str, CountOrRange] = Field(min_length=1, description="Interval → bars over all symbols.")

    @model_validator(mode="after")
    def _intervals(self) -> MarketExpect:
        unknown: list[tuple[Loc, str]] = [(("bars", k), f"unknown interval {k!r} (one of {', '.join(BAR_INTERVALS)})")
                                          for k in self.bars if k not in BAR_INTERVALS]
        if unknown:
            raise CrossFieldError(unknown)
        return self


class ReadSideExpect(_Section):
    """The read models after they caught up: search and analytics."""

    searchable_trades: Count | None = Field(None, description="Trade documents of the run's accounts.")
    volume: dict[str, Count] = Field(default_factory=dict, description="Symbol → executed shares (analytics).")

    @model_validator(mode="after")
    def _something(self) -> ReadSideExpect:
        if self.searchable_trades is None and not self.volume:
            raise ValueError("set searchable_trades or volume")
        return self


class Expect(_Section):
    """What the run must produce; each stated item becomes one check (see `tradesim.scenarios.expect`)."""

    orders: dict[str, OrderExpect] = Field(default_factory=dict, description="Scripted order id → outcome.")
    accounts: dict[str, AccountExpect] = Field(default_factory=dict, description="Account name → end state.")
    market: MarketExpect | None = None
    read_side: ReadSideExpect | None = None
    outcomes_hash: str | None = Field(None, pattern=r"^[0-9a-f]{64}$",
                                      description="SHA-256 of the ordered outcomes (tradesim.scenarios.expect).")

    @model_validator(mode="after")
    def _something(self) -> Expect:
        if not self.count():  # a run would pass with no check at all
            raise ValueError("set orders, accounts, market, read_side or outcomes_hash")
        return self

    def count(self) -> int:
        """How many checks these expectations make."""
        n = sum((o.status is not None) + (o.reason is not None) + (o.fill_price is not None)
                for o in self.orders.values())
        n += sum((a.cash is not None) + len(a.positions) + (a.realized_pnl is not None) + (a.executions is not None)
                 for a in self.accounts.values())
        if self.market is not None:
            n += len(self.market.bars)
        if self.read_side is not None:
            n += (self.read_side.searchable_trades is not None) + len(self.read_side.volume)
        return n + (self.outcomes_hash is not None)


def seconds_text(ms: int) -> str:
    """Exact, as a time offset is written: `:g` keeps six digits (1234.57s) and writes a million s as 1e+06s."""
    return f"{Decimal(ms) / 1000:f}s"


class Scenario(_Section):
    """A complete scenario; build it with `load_scenario`, which also resolves and checks the CSV."""

    schema_version: Literal[1] = 1
    id: str = Field(pattern=r"^[a-z0-9][a-z0-9._-]{0,127}$", description="Becomes Tick.scenario_id.")
    description: str = Field("", max_length=1000)
    start: Annotated[AwareDatetime, BeforeValidator(_no_number)] = Field(
        description="Simulated time of the first tick, ISO-8601 with a UTC offset (converted to UTC).")
    duration_s: FiniteFloat = Field(gt=0, le=MAX_DURATION_S, description="Simulated length of the generated part.")
    tick_interval_ms: Int = Field(ge=1, description="Each generated symbol ticks once per interval.")
    seed: Int = Field(description="Same seed ⇒ byte-identical tick stream.")
    symbols: list[SymbolSpec] = Field(default_factory=list, description="Generated symbols.")
    events: list[ShockSpec] = Field(default_factory=list, description="Shocks applied to generated symbols.")
    source: CsvSource | None = Field(None, description="Recorded ticks merged into the stream by time.")
    accounts: list[Account] = Field(default_factory=list, description="Created fresh for each run.")
    orders: list[ScriptedOrder] = Field(default_factory=list, description="Placed at simulated times.")
    strategy: StrategyRef | None = Field(None, description="A strategy class driven by the runner.")
    expect: Expect | None = Field(None, description="What the run must produce.")

    _replay: Any = PrivateAttr(default=None)  # the CSV source's CsvSummary, once scanned

    @model_validator(mode="before")
    @classmethod
    def _default_order_ids(cls, data: Any) -> Any:
        """An order without an `id` is o<index>, so expectations can name it."""
        if not isinstance(data, dict) or not isinstance(data.get("orders"), list):
            return data
        orders = [{**o, "id": f"o{i}"} if isinstance(o, dict) and "id" not in o else o
                  for i, o in enumerate(data["orders"])]
        return {**data, "orders": orders}

    @field_validator("expect", mode="before")
    @classmethod
    def _stated(cls, value: Any) -> Any:
        """`expect:` with nothing under it (its lines commented out) is YAML's null: judged as an empty section,
        which states nothing (a run would pass with no check)."""
        return {} if value is None else value

    @field_validator("start")
    @classmethod
    def _utc(cls, value: datetime) -> datetime:
        try:
            utc = value.astimezone(UTC)
        except OverflowError:
            raise ValueError("out of range once converted to UTC") from None
        if not _EPOCH <= utc <= _EPOCH + timedelta(milliseconds=MAX_EPOCH_MS):
            raise ValueError("must be from 1970-01-01T00:00:00Z on (tick times are epoch milliseconds)")
        return utc

    @model_validator(mode="after")
    def _consistent(self) -> Scenario:
        problems: list[tuple[tuple[str | int, ...], str]] = []
        if not self.symbols and self.source is None:
            problems.append((("symbols",), "give at least one symbol, or a source to replay"))
        seen: set[str] = set()
        for i, spec in enumerate(self.symbols):
            if spec.symbol in seen:
                problems.append((("symbols", i, "symbol"), f"duplicate symbol {spec.symbol}"))
            seen.add(spec.symbol)
        if self._duration_ms_exact % 1:
            problems.append((("duration_s",), "whole milliseconds only (at most 3 decimal places)"))
        if self.start_ms + self.duration_ms > MAX_EPOCH_MS:
            problems.append((("duration_s",), "the run would end after 9999-12-31T23:59:59.999Z"))
        if self.symbols and self.steps == 0:
            problems.append((("tick_interval_ms",), "longer than duration_s: no tick would be generated"))
        if self.steps * len(self.symbols) > MAX_GENERATED_TICKS:
            problems.append((("duration_s",), f"{self.steps * len(self.symbols):,} generated ticks; at most "
                             f"{MAX_GENERATED_TICKS:,} per pass (fewer symbols, a longer tick_interval_ms, or "
                             "`loop` for a longer live market)"))
        for i, shock in enumerate(self.events):
            if shock.symbol != "*" and shock.symbol not in seen:
                have = ", ".join(sorted(seen)) or "none"
                problems.append((("events", i, "symbol"), f"unknown symbol {shock.symbol} (generated: {have})"))
            if shock.at_s >= self.duration_s:
                problems.append((("events", i, "at_s"), f"must be < duration_s ({self.duration_s:g})"))
            else:
                problems += self._unseen_shock(i, shock)
        problems += self._trading_problems()
        if self.source is None:  # with a CSV source the loader checks symbols once it has scanned the file
            problems += self.unknown_symbols([spec.symbol for spec in self.symbols])
        if problems:
            raise CrossFieldError(problems)
        return self

    def _unseen_shock(self, i: int, shock: ShockSpec) -> list[tuple[Loc, str]]:
        """A shock no generated tick would show validated and then did nothing, in `replay` and in a live market's
        every pass alike: one after the last tick of the pass, one in a file with no generated symbol (`*`), or a
        `spread_multiplier` whose window holds no tick (an instant gap has no window at all)."""
        if not self.symbols:  # (a symbol it names is unknown already)
            return [] if shock.symbol != "*" else [
                (("events", i, "symbol"), "no generated symbols to shock (a replayed CSV is replayed as written)")]
        if self.steps == 0:
            return []  # reported at tick_interval_ms
        interval = self.tick_interval_ms
        first = -(-shock.at_ms // interval)  # the first tick at or after the shock's start
        if first >= self.steps:
            return [(("events", i, "at_s"), "after the last generated tick (at "
                     f"{seconds_text((self.steps - 1) * interval)}): the move would never show")]
        if shock.spread_multiplier != 1 and first * interval >= shock.at_ms + shock.over_ms:
            why = ("an instant gap (over_s 0) has no window to widen the spread in" if shock.over_ms == 0
                   else f"no tick falls inside the window ({seconds_text(shock.at_ms)} to "
                   f"{seconds_text(shock.at_ms + shock.over_ms)}, a tick every {seconds_text(interval)})")
            return [(("events", i, "spread_multiplier"), f"{why}; give over_s a window that holds a tick")]
        return []

    def _trading_problems(self) -> list[tuple[Loc, str]]:
        """Names that must exist elsewhere in the file (accounts, order ids) and times inside the duration."""
        problems: list[tuple[Loc, str]] = []
        accounts: set[str] = set()
        for i, account in enumerate(self.accounts):
            if account.name in accounts:
                problems.append((("accounts", i, "name"), f"duplicate account {account.name}"))
            accounts.add(account.name)
        have = ", ".join(sorted(accounts)) or "none defined"

        def known_account(loc: Loc, name: str) -> None:
            if name not in accounts:
                problems.append((loc, f"unknown account {name} (accounts: {have})"))

        ids: set[str] = set()
        end_ms = self.duration_ms
        for i, order in enumerate(self.orders):
            if order.id in ids:
                problems.append((("orders", i, "id"), f"duplicate order id {order.id}"))
            if self.strategy is not None and STRATEGY_ORDER_ID.fullmatch(order.id):
                problems.append((("orders", i, "id"), f"{order.id} names one of the strategy's orders (s1, s2, ...); "
                                 "pick another id"))
            ids.add(order.id)
            known_account(("orders", i, "account"), order.account)
            for name, ms in (("at", order.at_ms), ("cancel_at", order.cancel_at_ms)):
                if ms is not None and ms >= end_ms:
                    problems.append((("orders", i, name), f"must be before the end (duration_s {self.duration_s:g})"))
        if self.strategy is not None:
            known_account(("strategy", "account"), self.strategy.account)
            # the strategy's context counts its own orders' fills only: a scripted fill in its account would leave
            # the cash and positions it decides on wrong
            shared = next((i for i, o in enumerate(self.orders) if o.account == self.strategy.account), None)
            if shared is not None:
                problems.append((("strategy", "account"), f"{self.strategy.account} also places orders[{shared}]; give "
                                 "the strategy an account of its own (its context counts only its own orders)"))
            for j, symbol in enumerate(self.strategy.symbols):
                if symbol in self.strategy.symbols[:j]:
                    problems.append((("strategy", "symbols", j), f"duplicate symbol {symbol}"))
        if self.expect is not None:
            for order_id in self.expect.orders:
                if order_id not in ids and not (self.strategy is not None and STRATEGY_ORDER_ID.fullmatch(order_id)):
                    theirs = " or the strategy's s1, s2, ..." if self.strategy is not None else ""
                    problems.append((("expect", "orders", order_id),
                                     f"unknown order {order_id} (orders: {', '.join(sorted(ids)) or 'none'}{theirs})"))
            for name in self.expect.accounts:
                known_account(("expect", "accounts", name), name)
        return problems

    def symbol_references(self) -> Iterator[tuple[Loc, str]]:
        """Every symbol the trading sections name, with where: orders, strategy, expected positions and volume."""
        for i, order in enumerate(self.orders):
            yield ("orders", i, "symbol"), order.symbol
        if self.strategy is not None:
            for j, symbol in enumerate(self.strategy.symbols):
                yield ("strategy", "symbols", j), symbol
        if self.expect is not None:
            for name, account in self.expect.accounts.items():
                for symbol in account.positions:
                    yield ("expect", "accounts", name, "positions", symbol), symbol
            if self.expect.read_side is not None:
                for symbol in self.expect.read_side.volume:
                    yield ("expect", "read_side", "volume", symbol), symbol

    def unknown_symbols(self, known: Collection[str]) -> list[tuple[Loc, str]]:
        """References to symbols the scenario does not have."""
        have = ", ".join(known) or "none"
        return [(loc, f"unknown symbol {symbol} (scenario has: {have})")
                for loc, symbol in self.symbol_references() if symbol not in known]

    @property
    def start_ms(self) -> int:
        """`start` as epoch milliseconds UTC."""
        return epoch_ms(self.start)

    @property
    def _duration_ms_exact(self) -> Decimal:
        """`duration_s` in milliseconds as written (a float's 1.001 * 1000 is 1000.999…, not the 1001 it means)."""
        return Decimal(repr(self.duration_s)) * 1000

    @property
    def duration_ms(self) -> int:
        return round(self._duration_ms_exact)

    @property
    def steps(self) -> int:
        """Ticks per generated symbol: one at `start`, then one per interval while inside the duration."""
        return self.duration_ms // self.tick_interval_ms

    def symbol_names(self) -> list[str]:
        """Generated symbols in file order, then replayed ones (scanning the CSV once if not yet done)."""
        generated = [s.symbol for s in self.symbols]
        return generated + [s for s in self.replay_summary()[0] if s not in generated]

    def expected_ticks(self) -> int:
        """How many ticks `generate` yields for the whole scenario."""
        return self.steps * len(self.symbols) + self.replay_summary()[1]

    def replay_summary(self) -> tuple[tuple[str, ...], int]:
        """(symbols, rows) of the CSV source; ((), 0) without one."""
        csv = self._csv()
        return ((), 0) if csv is None else (csv.symbols, csv.rows)

    def replay_first_ms(self) -> int | None:
        """The CSV source's first tick time; None without one (or no rows)."""
        csv = self._csv()
        return None if csv is None else csv.first_ms

    def replay_last_ms(self) -> int | None:
        """The CSV source's last tick time; None without one (or no rows)."""
        csv = self._csv()
        return None if csv is None else csv.last_ms

    def _csv(self) -> CsvSummary | None:
        """The CSV source checked and summed up, scanned once."""
        if self.source is None:
            return None
        if self._replay is None:
            self._replay = scan_csv(self.source.csv)
        summary: CsvSummary = self._replay
        return summary




def model_field_names() -> set[str]:
    """Every key the format knows, for 'did you mean' hints on unknown fields."""
    names: set[str] = set()
    models: tuple[type[BaseModel], ...] = (
        Scenario, SymbolSpec, ShockSpec, Spread, LognormalVolume, PoissonVolume, CsvSource, Account, ScriptedOrder,
        StrategyRef, Range, CountRange, OrderExpect, AccountExpect, MarketExpect, ReadSideExpect, Expect)
    for model in models:
        names.update(info.alias or name for name, info in model.model_fields.items())
    return names
