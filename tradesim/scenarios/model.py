"""The scenario file format: which symbols exist and how their prices move, on a simulated clock.

Every section forbids unknown keys so a typo fails validation instead of silently doing nothing.
`accounts`, `orders` and `expectations` are reserved for later issues (scripted trading and checks);
until then a file that sets them is refused rather than half-understood.
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from decimal import Decimal
from pathlib import Path
from typing import Annotated, Any, Literal

from pydantic import (
    AwareDatetime,
    BaseModel,
    ConfigDict,
    Field,
    PrivateAttr,
    ValidationInfo,
    field_validator,
    model_validator,
)

from tradesim.domain.events import SYMBOL_RE, SymbolStr
from tradesim.scenarios.errors import CrossFieldError

FiniteFloat = Annotated[float, Field(allow_inf_nan=False)]


class _Section(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class Spread(_Section):
    """Quoted spread around the mid price: set exactly one of `bps` (of mid) or `absolute` (price units)."""

    bps: Decimal | None = Field(None, ge=0, allow_inf_nan=False, description="Full spread in basis points of mid.")
    absolute: Decimal | None = Field(None, ge=0, allow_inf_nan=False, description="Full spread in price units.")

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
    mean: FiniteFloat = Field(gt=0, description="Mean size in shares.")
    sigma: FiniteFloat = Field(0.5, ge=0, description="Standard deviation of log size.")
    lot: int = Field(1, ge=1, description="Sizes are multiples of this.")


class PoissonVolume(_Section):
    """Trade sizes as a Poisson count of lots (normal approximation for large means); may be zero."""

    kind: Literal["poisson"]
    mean: FiniteFloat = Field(gt=0, description="Mean size in shares.")
    lot: int = Field(1, ge=1, description="Sizes are multiples of this.")


VolumeModel = Annotated[LognormalVolume | PoissonVolume, Field(discriminator="kind")]


class SymbolSpec(_Section):
    """One simulated instrument: seeded geometric Brownian motion plus spread and size models."""

    symbol: SymbolStr
    initial_price: Decimal = Field(gt=0, allow_inf_nan=False, description="Mid price at `start`.")
    drift: FiniteFloat = Field(0.0, description="Annual drift μ (0.05 = +5 %/year, calendar year).")
    volatility: FiniteFloat = Field(0.2, ge=0, description="Annual volatility σ (0.2 = 20 %/√year).")
    tick_size: Decimal = Field(Decimal("0.01"), gt=0, allow_inf_nan=False, description="Prices are multiples.")
    spread: Spread = Spread(bps=Decimal(5))
    volume: VolumeModel = LognormalVolume(kind="lognormal", mean=100.0)


class ShockSpec(_Section):
    """A deterministic price move layered on the random path: a gap (over_s 0) or a slide over a window."""

    at_s: FiniteFloat = Field(ge=0, description="Seconds after `start` when the move begins.")
    symbol: str = Field(pattern=f"^(\\*|{SYMBOL_RE})$", description="A symbol, or * for all.")
    move_pct: FiniteFloat = Field(gt=-100, description="Total move in percent (−12 = down 12 %).")
    over_s: FiniteFloat = Field(0.0, ge=0, description="Window the move is spread over (0 = instant gap).")
    spread_multiplier: FiniteFloat = Field(1.0, ge=1, description="Spread is widened by this inside the window.")


class CsvSource(_Section):
    """Recorded ticks replayed as-is: columns timestamp, symbol, bid, ask, last, size (more are ignored)."""

    csv: Path = Field(description="CSV file, relative to the scenario file.")

    @field_validator("csv")
    @classmethod
    def _relative_to_scenario(cls, value: Path, info: ValidationInfo) -> Path:
        base = (info.context or {}).get("base_dir")
        return value if value.is_absolute() or base is None else Path(base) / value


def _reserved(value: Any) -> Any:
    if value is not None:
        raise ValueError("reserved for a later version of the format; not supported yet")
    return value


class Scenario(_Section):
    """A complete scenario; build it with `load_scenario`, which also resolves and checks the CSV."""

    schema_version: Literal[1] = 1
    id: str = Field(pattern=r"^[a-z0-9][a-z0-9._-]{0,127}$", description="Becomes Tick.scenario_id.")
    description: str = ""
    start: AwareDatetime = Field(description="Simulated time of the first tick (converted to UTC).")
    duration_s: FiniteFloat = Field(gt=0, description="Simulated length of the generated part.")
    tick_interval_ms: int = Field(ge=1, description="Each generated symbol ticks once per interval.")
    seed: int = Field(description="Same seed ⇒ byte-identical tick stream.")
    symbols: list[SymbolSpec] = Field(default_factory=list, description="Generated symbols.")
    events: list[ShockSpec] = Field(default_factory=list, description="Shocks applied to generated symbols.")
    source: CsvSource | None = Field(None, description="Recorded ticks merged into the stream by time.")
    # Reserved so later issues can add scripted trading to the same file without renaming anything.
    accounts: list[dict[str, Any]] | None = None
    orders: list[dict[str, Any]] | None = None
    expectations: list[dict[str, Any]] | None = None

    _replay_symbols: tuple[str, ...] | None = PrivateAttr(default=None)
    _replay_rows: int | None = PrivateAttr(default=None)

    _check_reserved = field_validator("accounts", "orders", "expectations", mode="before")(_reserved)

    @field_validator("start")
    @classmethod
    def _utc(cls, value: datetime) -> datetime:
        return value.astimezone(UTC)

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
        if self.symbols and self.steps == 0:
            problems.append((("tick_interval_ms",), "longer than duration_s: no tick would be generated"))
        for i, shock in enumerate(self.events):
            if shock.symbol != "*" and shock.symbol not in seen:
                have = ", ".join(sorted(seen)) or "none"
                problems.append((("events", i, "symbol"), f"unknown symbol {shock.symbol} (generated: {have})"))
            if shock.at_s >= self.duration_s:
                problems.append((("events", i, "at_s"), f"must be < duration_s ({self.duration_s:g})"))
        if problems:
            raise CrossFieldError(problems)
        return self

    @property
    def start_ms(self) -> int:
        """`start` as epoch milliseconds UTC."""
        return (self.start - datetime(1970, 1, 1, tzinfo=UTC)) // _MS

    @property
    def steps(self) -> int:
        """Ticks per generated symbol: one at `start`, then one per interval while inside the duration."""
        return int(self.duration_s * 1000) // self.tick_interval_ms

    def symbol_names(self) -> list[str]:
        """Generated symbols in file order, then replayed ones (scanning the CSV once if not yet done)."""
        generated = [s.symbol for s in self.symbols]
        return generated + [s for s in self.replay_summary()[0] if s not in generated]

    def expected_ticks(self) -> int:
        """How many ticks `generate` yields for the whole scenario."""
        return self.steps * len(self.symbols) + self.replay_summary()[1]

    def replay_summary(self) -> tuple[tuple[str, ...], int]:
        """(symbols, rows) of the CSV source; ((), 0) without one."""
        if self.source is None:
            return (), 0
        if self._replay_symbols is None or self._replay_rows is None:
            from tradesim.scenarios.replay import scan_csv

            summary = scan_csv(self.source.csv)
            self._replay_symbols, self._replay_rows = summary.symbols, summary.rows
        return self._replay_symbols, self._replay_rows


_MS = timedelta(milliseconds=1)


def model_field_names() -> set[str]:
    """Every key the format knows, for 'did you mean' hints on unknown fields."""
    names: set[str] = set()
    for model in (Scenario, SymbolSpec, ShockSpec, Spread, LognormalVolume, PoissonVolume, CsvSource):
        names.update(model.model_fields)
    return names
