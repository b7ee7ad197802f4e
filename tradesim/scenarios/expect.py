"""Checking a scenario run against its `expect` section: the runner fills a `RunResult`, `evaluate` turns every
stated expectation into one named `Check` (actual vs expected, as readable text), and `outcomes_hash` fingerprints
the run's behaviour so any change to it shows up. Pure: no I/O, no clock."""

from __future__ import annotations

import hashlib
import json
from collections.abc import Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from decimal import Decimal

from tradesim.domain.events import OrderType, Side
from tradesim.domain.money import money_text
from tradesim.domain.pnl import positions
from tradesim.domain.trades import ZERO, TradeRecord
from tradesim.scenarios.model import AccountExpect, Expect, OrderExpect, Range

#: first line of the hashed text: a change to the serialization below must change this tag
HASH_FORMAT = "tradesim-outcomes-v1"


@dataclass(frozen=True)
class Outcome:
    """How one order ended, in the script's terms (never the run's namespaced ids, never a wall time).

    `index` is the order's place in the script's `orders`; orders a strategy placed come after them, numbered in
    placing order, with `at_ms` their simulated placing offset and `order_id` a name the runner gives them.
    `status` is a terminal status, or `refused` when the API answered 4xx (then `reason` is its error code).
    `decided_ms`, the ledger's decision time (a wall time), only orders an account's fills for its realized P&L: it
    is in no report and not hashed.
    """

    order_id: str
    index: int
    at_ms: int
    account: str
    symbol: str
    side: Side
    qty: int
    type: OrderType
    status: str
    reason: str | None = None
    fill_price: Decimal | None = None
    fee: Decimal | None = None
    cash_after: Decimal | None = None
    position_after: int | None = None
    decided_ms: int | None = None

    @property
    def executed(self) -> bool:
        return self.status == "executed"


@dataclass(frozen=True)
class AccountResult:
    """An account at the end of a run: the ledger's cash and positions, and what its fills add up to."""

    cash: Decimal
    positions: Mapping[str, int]
    realized_pnl: Decimal
    executions: int


@dataclass(frozen=True)
class ReadSide:
    """What the read models showed once caught up: trade documents in search, executed shares per symbol."""

    searchable_trades: int
    volume: Mapping[str, int] = field(default_factory=dict)


@dataclass(frozen=True)
class RunResult:
    """Everything `evaluate` needs, keyed by script names. `bars`: interval → bars seen over all symbols;
    `read_side` None: it did not answer (its expectations fail rather than pass unchecked)."""

    outcomes: Sequence[Outcome]
    accounts: Mapping[str, AccountResult]
    bars: Mapping[str, int] = field(default_factory=dict)
    read_side: ReadSide | None = None

    def outcome(self, order_id: str) -> Outcome | None:
        return next((o for o in self.outcomes if o.order_id == order_id), None)

    @property
    def outcomes_hash(self) -> str:
        return outcomes_hash(self.outcomes)


@dataclass(frozen=True)
class Check:
    """One expectation and how the run met it; `name` is stable (a JUnit test case name)."""

    name: str
    passed: bool
    expected: str
    actual: str

    @property
    def message(self) -> str:
        return f"expected {self.expected}, got {self.actual}"


def account_result(cash: Decimal, held: Mapping[str, int], outcomes: Iterable[Outcome]) -> AccountResult:
    """An account's end state from the ledger's cash and positions and its outcomes (realized P&L by the
    average-cost method of `tradesim.domain.pnl`, folding the fills in the order the ledger decided them, not the
    script's: an order placed first may fill last; non-executed outcomes are skipped)."""
    executed = sorted((o for o in outcomes if o.executed), key=lambda o: (o.decided_ms is None, o.decided_ms or 0))
    records = [TradeRecord(order_id=o.order_id, user_id=o.account, symbol=o.symbol, side=o.side, qty=o.qty,
                           status=o.status, decided_at_ms=i, order_type=o.type, price=o.fill_price, fee=o.fee)
               for i, o in enumerate(executed)]
    realized = sum((p.realized for p in positions(records).values()), ZERO)
    return AccountResult(cash=cash, positions=dict(held), realized_pnl=realized, executions=len(executed))


def ordered(outcomes: Iterable[Outcome]) -> list[Outcome]:
    """Outcomes by (scripted time, script index): the order the script placed them in, whatever order they ended."""
    return sorted(outcomes, key=lambda o: (o.at_ms, o.index))


def _num(value: Decimal | None) -> str | None:
    """A decimal in one spelling: plain notation, no trailing zeros ("100.00" and "1E+2" → "100")."""
    if value is None:
        return None
    return "0" if value == 0 else format(value.normalize(), "f")


def canonical_outcomes(outcomes: Iterable[Outcome]) -> str:
    """The text `outcomes_hash` hashes: the line `tradesim-outcomes-v1`, then one compact JSON array per outcome in
    (at_ms, index) order — [order_id, symbol, side, qty, type, status, reason, fill_price, fee, cash_after,
    position_after] — decimals as normalized strings, absent values as null, lines joined by "\\n"."""
    lines = [HASH_FORMAT]
    for o in ordered(outcomes):
        row = [o.order_id, o.symbol, o.side, o.qty, o.type, o.status, o.reason, _num(o.fill_price), _num(o.fee),
               _num(o.cash_after), o.position_after]
        lines.append(json.dumps(row, separators=(",", ":"), ensure_ascii=False))
    return "\n".join(lines)


def outcomes_hash(outcomes: Iterable[Outcome]) -> str:
    """SHA-256 (hex) of `canonical_outcomes`: equal exactly when the runs decided the same things in script order."""
    return hashlib.sha256(canonical_outcomes(outcomes).encode("utf-8")).hexdigest()


def evaluate(expect: Expect | None, result: RunResult) -> list[Check]:
    """One check per stated expectation, in file order: orders, accounts, market, read side, outcomes hash."""
    if expect is None:
        return []
    checks: list[Check] = []
    for order_id, want in expect.orders.items():
        checks += _order_checks(order_id, want, result.outcome(order_id))
    for name, account in expect.accounts.items():
        checks += _account_checks(name, account, result.accounts.get(name))
    if expect.market is not None:
        for interval, count in expect.market.bars.items():
            seen = result.bars.get(interval)
            checks.append(_count(f"market bars {interval}", count, seen, "not counted"))
    if expect.read_side is not None:
        side = result.read_side
        if expect.read_side.searchable_trades is not None:
            checks.append(_count("read side searchable trades", expect.read_side.searchable_trades,
                                 None if side is None else side.searchable_trades, "read side unavailable"))
        for symbol, shares in expect.read_side.volume.items():
            checks.append(_count(f"read side volume {symbol}", shares,
                                 None if side is None else side.volume.get(symbol, 0), "read side unavailable"))
    if expect.outcomes_hash is not None:
        actual = result.outcomes_hash
        checks.append(Check("outcomes hash", actual == expect.outcomes_hash, expect.outcomes_hash, actual))
    return checks


def _order_checks(order_id: str, want: OrderExpect, got: Outcome | None) -> Iterator[Check]:
    prefix = f"order {order_id}"
    if want.status is not None:
        actual = "no outcome" if got is None else got.status + (f" ({got.reason})" if got.reason else "")
        yield Check(f"{prefix} status", got is not None and got.status == want.status, want.status, actual)
    if want.reason is not None:
        actual = "no outcome" if got is None else got.reason or "no reason"
        yield Check(f"{prefix} reason", got is not None and got.reason == want.reason, want.reason, actual)
    if want.fill_price is not None:
        if got is None or got.fill_price is None:
            actual = "no outcome" if got is None else f"no fill ({got.status})"
            yield Check(f"{prefix} fill price", False, str(want.fill_price), actual)
        else:
            yield _in_range(f"{prefix} fill price", want.fill_price, got.fill_price)


def _account_checks(name: str, want: AccountExpect, got: AccountResult | None) -> Iterator[Check]:
    prefix = f"account {name}"
    missing = "no such account in the run"
    if want.cash is not None:
        yield (_in_range(f"{prefix} cash", want.cash, got.cash) if got is not None
               else Check(f"{prefix} cash", False, str(want.cash), missing))
    for symbol, qty in want.positions.items():
        yield _count(f"{prefix} position {symbol}", qty, None if got is None else got.positions.get(symbol, 0),
                     missing)
    if want.realized_pnl is not None:
        yield (_in_range(f"{prefix} realized P&L", want.realized_pnl, got.realized_pnl) if got is not None
               else Check(f"{prefix} realized P&L", False, str(want.realized_pnl), missing))
    if want.executions is not None:
        yield _count(f"{prefix} executions", want.executions, None if got is None else got.executions, missing)


def _in_range(name: str, want: Range, value: Decimal) -> Check:
    return Check(name, value in want, str(want), money_text(value))


def _count(name: str, want: int | Range, value: int | None, missing: str) -> Check:
    if value is None:
        return Check(name, False, str(want), missing)
    passed = value in want if isinstance(want, Range) else value == want
    return Check(name, passed, str(want), str(value))
