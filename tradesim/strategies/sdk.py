"""The strategy SDK: a `Strategy` reacts to ticks, bars and fills through a `Context` that places and cancels
orders, stamped with the market time it reacted at; `Driver` feeds it in market-time order; `load_strategy`
imports one by "package.module:Class".

A strategy's decisions may depend only on what it is fed (never wall time, randomness or reads of the API
mid-run), so the same scenario and seed give the same orders. The context keeps cash, positions and open orders
from the outcomes it is given, not from the API (whose answer depends on how far the stack has got).
"""

from __future__ import annotations

import hashlib
import importlib
import inspect
import re
import signal
import threading
import time
from abc import ABC, abstractmethod
from collections.abc import Callable, Iterator, Mapping, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, replace
from decimal import Decimal
from typing import Any, Protocol, TypeVar, get_args

from pydantic import BaseModel, ConfigDict, ValidationError

from tradesim.client.api import call
from tradesim.domain.events import Bar, OrderOutcome, OrderType, Side, Tick, TimeInForce
from tradesim.domain.money import price_error
from tradesim.domain.orders import price_problems
from tradesim.domain.pnl import cash_delta
from tradesim.domain.trades import record_of
from tradesim.services.api.schemas import CancelAccepted, OrderAccepted
from tradesim.settings import Settings
from tradesim.stack.errors import StackError, UserError
from tradesim.text import error_line, validation_message

CLASS_PATH = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*(\.[A-Za-z_][A-Za-z0-9_]*)*:[A-Za-z_][A-Za-z0-9_]*$")
#: the longest Idempotency-Key the API takes; a longer derived key is hashed
MAX_KEY_LEN = 255


#: how long a strategy's import, constructor or one callback may run before the run gives up on it
DEFAULT_TIME_LIMIT_S = 60.0


class StrategyTimeout(BaseException):
    """A strategy's code ran past its time limit. A BaseException, as KeyboardInterrupt is, so the strategy's own
    `except Exception` cannot swallow it."""


#: the strategy code's time limit is running (time_limit), so outside_time_limit has an alarm to pause
_limited = False


@contextmanager
def time_limit(seconds: float, what: str) -> Iterator[None]:
    """Raise StrategyTimeout in the block once it has run `seconds` (SIGALRM: it interrupts a loop of Python code,
    not a call blocked in C), and again every half second while it goes on (a bare `except:` in the strategy
    swallows one), and once more when the block returns after the limit fired (it swallowed them all: what it did
    then depends on where the alarm struck). No limit off the main thread, where SIGALRM is missing, or while
    another alarm is set (not ours to move: pytest-timeout's, say)."""
    global _limited
    if (seconds <= 0 or _limited or not hasattr(signal, "setitimer")
            or threading.current_thread() is not threading.main_thread()
            or signal.getitimer(signal.ITIMER_REAL)[0] > 0):
        yield
        return

    message = f"{what} did not return within {seconds:g} s (a loop that never ends?)"
    fired = in_block = False

    def expired(_signum: int, _frame: object) -> None:
        nonlocal fired
        fired = fired or in_block
        raise StrategyTimeout(message)

    previous = signal.signal(signal.SIGALRM, expired)
    _limited = True
    signal.setitimer(signal.ITIMER_REAL, seconds, 0.5)
    in_block = True
    try:
        yield
    finally:
        in_block = False
        while True:  # disarm even if the alarm fires meanwhile (the block has ended: that firing is moot)
            try:
                signal.setitimer(signal.ITIMER_REAL, 0)
                signal.signal(signal.SIGALRM, previous)
                _limited = False
                break
            except StrategyTimeout:
                continue
    if fired:
        raise StrategyTimeout(message)


@contextmanager
def outside_time_limit() -> Iterator[None]:
    """Pause a running time_limit for the block: work done for the strategy by the stack (an API request and its
    retries) is not the strategy's time."""
    if not _limited or threading.current_thread() is not threading.main_thread():
        yield
        return
    delay, interval = signal.setitimer(signal.ITIMER_REAL, 0)
    try:
        yield
    finally:
        if delay > 0:
            signal.setitimer(signal.ITIMER_REAL, delay, interval)


class StrategyError(ValueError):
    """A strategy that cannot be used: `field` is "class" (path, import, type) or "params"; one-line message."""

    def __init__(self, field: str, message: str) -> None:
        self.field = field
        super().__init__(message)


class OrderRefused(Exception):
    """The API refused an order or a cancel (a 4xx answer): `code` is its stable code, e.g. insufficient_funds."""

    def __init__(self, code: str, message: str) -> None:
        self.code = code
        super().__init__(message)


@dataclass(frozen=True)
class OpenOrder:
    """An order this context placed whose outcome it has not been given yet."""

    order_id: str
    symbol: str
    side: Side
    qty: int
    type: OrderType
    limit_price: Decimal | None
    stop_price: Decimal | None
    time_in_force: TimeInForce
    at_ms: int
    cancel_requested: bool = False


class Context(ABC):
    """What a strategy sees and does: market time, its symbols, cash and positions, orders.

    The bookkeeping (clock, holdings from outcomes, open orders) lives here; a subclass only sends: `_submit`
    an order, `_cancel` one. The runner side (`advance`, `apply`) is called by `Driver`, not by strategies.
    """

    def __init__(self, *, symbols: Sequence[str], cash: Decimal, start_ms: int,
                 positions: Mapping[str, int] | None = None) -> None:
        if not isinstance(cash, Decimal):
            raise TypeError(f"cash must be a Decimal, got {type(cash).__name__}")
        self._symbols = tuple(symbols)
        self._cash = cash
        self._positions = {s: q for s, q in (positions or {}).items() if q}
        self._now_ms = start_ms
        self._open: dict[str, OpenOrder] = {}
        self._decided: set[str] = set()

    # --- what strategies read ---

    @property
    def now_ms(self) -> int:
        """Market time (event time, epoch ms) of the tick or bar being handled; orders are stamped with it."""
        return self._now_ms

    @property
    def symbols(self) -> tuple[str, ...]:
        return self._symbols

    @property
    def cash(self) -> Decimal:
        """Cash after the fills given so far (the ledger's rule: notional rounded to cents, then the fee)."""
        return self._cash

    def position(self, symbol: str) -> int:
        """Shares held after the fills given so far."""
        return self._positions.get(symbol, 0)

    def positions(self) -> dict[str, int]:
        return dict(self._positions)

    def open_orders(self, symbol: str | None = None) -> list[OpenOrder]:
        """Placed and not yet decided (a cancel request leaves an order open until its outcome), oldest first."""
        return [o for o in self._open.values() if symbol is None or o.symbol == symbol]

    # --- what strategies do ---

    def buy(self, symbol: str, qty: int, *, type: OrderType = "market", limit_price: Decimal | None = None,
            stop_price: Decimal | None = None, time_in_force: TimeInForce = "day") -> str:
        """Place a buy at market time `now_ms`; returns the order id. Raises ValueError/TypeError for an order
        that cannot be valid, OrderRefused when the API refuses it."""
        return self._order("buy", symbol, qty, type, limit_price, stop_price, time_in_force)

    def sell(self, symbol: str, qty: int, *, type: OrderType = "market", limit_price: Decimal | None = None,
             stop_price: Decimal | None = None, time_in_force: TimeInForce = "day") -> str:
        """Place a sell at market time `now_ms`; returns the order id (see `buy`)."""
        return self._order("sell", symbol, qty, type, limit_price, stop_price, time_in_force)

    def cancel(self, order_id: str) -> None:
        """Ask to cancel one of this context's open orders at `now_ms`; the outcome (cancelled, or the fill that
        came first) arrives through on_fill. Cancelling an order that is no longer open does nothing."""
        order = self._open.get(order_id)
        if order is None or order.cancel_requested:
            return
        self._cancel(order_id)
        self._open[order_id] = replace(order, cancel_requested=True)

    # --- what the runner does (through Driver) ---

    def advance(self, now_ms: int) -> None:
        """Move market time forward; raises ValueError if it would go back (the feed is out of order)."""
        if now_ms < self._now_ms:
            raise ValueError(f"market time went back from {self._now_ms} to {now_ms}: feed ticks, bars and fills "
                             "in event-time order")
        self._now_ms = now_ms

    def apply(self, outcome: OrderOutcome) -> bool:
        """Book an order's outcome (each order id once); False for a repeat. A fill moves cash and position."""
        if outcome.order_id in self._decided:
            return False
        self._decided.add(outcome.order_id)
        self._open.pop(outcome.order_id, None)
        if outcome.status == "executed":
            self._cash += cash_delta(record_of(outcome))
            qty = self._positions.get(outcome.symbol, 0) + (outcome.qty if outcome.side == "buy" else -outcome.qty)
            if qty:
                self._positions[outcome.symbol] = qty
            else:
                self._positions.pop(outcome.symbol, None)
        return True

    # --- what a concrete context sends ---

    @abstractmethod
    def _submit(self, order: OpenOrder) -> str:
        """Send a new order (its `order_id` is ""); return the id it got. Raises OrderRefused."""

    @abstractmethod
    def _cancel(self, order_id: str) -> None:
        """Send a cancel request stamped `now_ms`. Raises OrderRefused."""

    def _order(self, side: Side, symbol: str, qty: int, type: OrderType, limit_price: Decimal | None,
               stop_price: Decimal | None, time_in_force: TimeInForce) -> str:
        if symbol not in self._symbols:
            raise ValueError(f"{symbol} is not one of this strategy's symbols ({', '.join(self._symbols)})")
        if isinstance(qty, bool) or not isinstance(qty, int) or qty <= 0:
            raise ValueError(f"qty must be a positive integer, got {qty!r}")
        # a name the SDK's types do not have is the strategy's typo, checked here: the API's refusal would be an
        # OrderRefused, which a strategy handling refusals swallows. A qty past the API's bound is the API's to
        # refuse: a refused outcome of the run, which an expectation can name
        for name, value, allowed in (("type", type, get_args(OrderType)),
                                     ("time_in_force", time_in_force, get_args(TimeInForce))):
            if not isinstance(value, str) or value not in allowed:
                raise ValueError(f"{name} must be one of {', '.join(allowed)}, got {value!r}")
        problems = price_problems(type, limit_price is not None, stop_price is not None)
        if problems:
            raise ValueError("; ".join(f"{name} is {problem}" for name, problem in problems))
        for name, price in (("limit_price", limit_price), ("stop_price", stop_price)):
            if price is not None:
                _check_price(name, price)
        order = OpenOrder("", symbol, side, qty, type, limit_price, stop_price, time_in_force, self._now_ms)
        order_id = self._submit(order)
        if order_id not in self._decided:  # an outcome given before the answer (a replayed run) stays decided
            self._open[order_id] = replace(order, order_id=order_id)
        return order_id


def _check_price(name: str, price: Decimal) -> None:
    if not isinstance(price, Decimal):
        raise TypeError(f"{name} must be a Decimal, got {type(price).__name__} {price!r}")
    if problem := price_error(price):
        raise ValueError(f"{name} {problem}, got {price}")


def price_text(price: Decimal) -> str:
    """A price as the API takes it: plain notation, no exponent, no trailing zeros past the cents."""
    whole, _, frac = format(price.normalize(), "f").partition(".")
    return f"{whole}.{frac.rstrip('0').ljust(2, '0')}"


class CallFn(Protocol):
    """The shape of `tradesim.client.api.call` (injectable for tests)."""

    def __call__(self, settings: Settings, method: str, path: str, key: str, *, shape: type[BaseModel],
                 json_body: Any = None, params: dict[str, Any] | None = None, headers: dict[str, str] | None = None,
                 timeout_s: float = 15.0) -> Any: ...


_CODE = re.compile(r"\(([a-z0-9_]+)\)$")
#: 4xx answers that mean "the same request may succeed shortly" (too fast)
_RETRY_CODES = frozenset({"rate_limited"})
#: how many times a rate-limited request is sent again, `retry_pause_s` apart
RATE_LIMITED_RETRIES = 120


def _code(exc: UserError) -> str:
    match = _CODE.search(str(exc))
    return match.group(1) if match else "refused"


def idempotency_key(run_id: str, strategy: str, counter: int) -> str:
    """The Idempotency-Key of a strategy's `counter`-th order in a run: the same inputs give the same key, so a
    retried (or re-run) request is the same order, never a second one."""
    key = f"strategy:{run_id}:{strategy}:{counter}"
    if len(key) <= MAX_KEY_LEN:
        return key
    return "strategy:" + hashlib.sha256(f"{run_id}\x00{strategy}\x00{counter}".encode()).hexdigest()


class ApiContext(Context):
    """A context over the public order API: POST /orders with `at_ms = now_ms` and a deterministic
    Idempotency-Key; DELETE /orders/{id}?at_ms=now_ms. Retries unreachable/5xx/in-progress answers with the same
    key; a refusal (4xx) raises OrderRefused; a stack that stays unusable raises StackError."""

    def __init__(self, settings: Settings, api_key: str, *, run_id: str, strategy: str, symbols: Sequence[str],
                 cash: Decimal, start_ms: int, positions: Mapping[str, int] | None = None, call_fn: CallFn = call,
                 retries: int = 3, retry_pause_s: float = 0.5,
                 sleep: Callable[[float], None] = time.sleep) -> None:
        super().__init__(symbols=symbols, cash=cash, start_ms=start_ms, positions=positions)
        self._settings, self._api_key = settings, api_key
        self.run_id, self.strategy = run_id, strategy
        self._call, self._retries, self._pause, self._sleep = call_fn, retries, retry_pause_s, sleep
        self._counter = 0

    def _submit(self, order: OpenOrder) -> str:
        self._counter += 1
        body: dict[str, Any] = {"symbol": order.symbol, "side": order.side, "qty": order.qty, "type": order.type,
                                "time_in_force": order.time_in_force, "at_ms": order.at_ms}
        if order.limit_price is not None:
            body["limit_price"] = price_text(order.limit_price)
        if order.stop_price is not None:
            body["stop_price"] = price_text(order.stop_price)
        key = idempotency_key(self.run_id, self.strategy, self._counter)
        answer = self._send("POST", "/orders", shape=OrderAccepted, json_body=body, headers={"Idempotency-Key": key},
                            timeout_s=self._settings.api.order_answer_s)
        return str(answer["order_id"])

    def _cancel(self, order_id: str) -> None:
        try:
            # at_ms: the cancel's market time, for an API that schedules cancels like orders (ignored otherwise)
            self._send("DELETE", f"/orders/{order_id}", shape=CancelAccepted, params={"at_ms": self._now_ms})
        except OrderRefused as exc:
            if exc.code != "order_not_open":  # decided already: its outcome is on its way to on_fill
                raise

    def _send(self, method: str, path: str, **kw: Any) -> Any:
        with outside_time_limit():  # the stack's time (requests, retries), not the strategy's
            return self._send_retrying(method, path, **kw)

    def _send_retrying(self, method: str, path: str, **kw: Any) -> Any:
        """A rate limit is waited out (RATE_LIMITED_RETRIES pauses, ~60 s by default): the pace of the requests
        (the runner polls with the same key) must not decide an order, or a run's outcomes would vary; other
        failures are retried `retries` times."""
        attempt = limited = 0
        while True:
            try:
                return self._call(self._settings, method, path, self._api_key, **kw)
            except UserError as exc:
                code = _code(exc)
                limited += code in _RETRY_CODES
                if code not in _RETRY_CODES or limited > RATE_LIMITED_RETRIES:
                    raise OrderRefused(code, str(exc)) from None
                self._sleep(self._pause)
                continue
            except StackError:
                attempt += 1
                if attempt > self._retries:
                    raise
            self._sleep(self._pause * attempt)


class Strategy:
    """Base of all strategies: override the hooks you need. Validate `params` in `__init__` (`parse_params`
    helps) and raise ValueError for a bad one. Keep state on the instance; use only what the hooks are given."""

    def __init__(self, params: Mapping[str, Any] | None = None) -> None:
        self.params: dict[str, Any] = dict(params or {})

    def on_start(self, ctx: Context) -> None:
        """Once, before the first tick, at the scenario's start time."""

    def on_tick(self, ctx: Context, tick: Tick) -> None:
        """Each tick of the strategy's symbols, in event-time order."""

    def on_bar(self, ctx: Context, bar: Bar) -> None:
        """Each closed 1 s / 1 min bar of the strategy's symbols, once the stream passed its window."""

    def on_fill(self, ctx: Context, outcome: OrderOutcome) -> None:
        """Each terminal outcome of the account's orders (executed, rejected, cancelled, expired), already booked
        into `ctx.cash` / `ctx.position`."""


class StrategyParams(BaseModel):
    """Base for a strategy's params model: unknown keys are refused (a typo must not silently default)."""

    model_config = ConfigDict(extra="forbid", frozen=True)


M = TypeVar("M", bound=BaseModel)


def parse_params(model: type[M], params: Mapping[str, Any]) -> M:
    """Validate params into `model`; raises ValueError naming the first bad one, in one line."""
    try:
        return model.model_validate(dict(params))
    except ValidationError as exc:
        first = exc.errors()[0]
        where = ".".join(str(p) for p in first["loc"]) or "params"
        message = validation_message(first)
        if first["type"] == "extra_forbidden":
            message = f"unknown param (known: {', '.join(model.model_fields) or 'none'})"
        raise ValueError(f"{where}: {message}") from None


def bar_time_ms(bar: Bar) -> int:
    """The market time a bar is handled at: the last instant of its window, so an order reacting to it is
    matched on the quote in effect at the close, not on a later tick."""
    return bar.window_end_ms - 1


class Driver:
    """Feeds one strategy through its context: sets market time, books outcomes before on_fill, skips data of
    symbols the strategy does not trade. Ticks and bars must come in event-time order, each bar before the
    tick that closed it (bars close on the stream's time across all symbols: a bar handled at
    `window_end_ms - 1` after a tick at or past `window_end_ms` is out of order and raises ValueError)."""

    def __init__(self, strategy: Strategy, ctx: Context) -> None:
        self.strategy, self.ctx = strategy, ctx

    def start(self) -> None:
        self.strategy.on_start(self.ctx)

    def tick(self, tick: Tick) -> None:
        self.ctx.advance(tick.event_time_ms)
        if tick.symbol in self.ctx.symbols:
            self.strategy.on_tick(self.ctx, tick)

    def bar(self, bar: Bar) -> None:
        self.ctx.advance(bar_time_ms(bar))
        if bar.symbol in self.ctx.symbols:
            self.strategy.on_bar(self.ctx, bar)

    def fill(self, outcome: OrderOutcome) -> None:
        """An outcome at the current market time; a repeat of an order's outcome is not passed on again."""
        if self.ctx.apply(outcome):
            self.strategy.on_fill(self.ctx, outcome)


def load_strategy(path: str, params: Mapping[str, Any] | None = None,
                  time_limit_s: float = DEFAULT_TIME_LIMIT_S) -> Strategy:
    """Import "package.module:Class", check it is a Strategy and build it with `params`, each within the time limit.
    Raises StrategyError (field "class" or "params") with a one-line message."""
    try:
        return _load_strategy(path, params, time_limit_s)
    except StrategyTimeout as exc:
        raise StrategyError("class", f"{path}: {exc}") from None


def _load_strategy(path: str, params: Mapping[str, Any] | None, time_limit_s: float) -> Strategy:
    if not CLASS_PATH.match(path):
        raise StrategyError("class", f"{path!r} is not a class path: write package.module:ClassName")
    module_name, _, class_name = path.partition(":")
    try:
        with time_limit(time_limit_s, "its import"):
            module = importlib.import_module(module_name)
    except ModuleNotFoundError as exc:
        if exc.name is not None and (module_name == exc.name or module_name.startswith(exc.name + ".")):
            raise StrategyError("class", f"no module {module_name!r} (not installed, on PYTHONPATH or "
                                "beside the scenario file)") from None
        raise StrategyError("class", f"module {module_name!r} could not be imported: it needs {exc.name!r}, "
                            "which is not installed") from None
    except (KeyboardInterrupt, StrategyTimeout):  # Ctrl-C (or a termination signal); the limit: said above
        raise
    except BaseException as exc:  # any failure while importing user code (an exit, asyncio's CancelledError too)
        raise StrategyError("class", f"module {module_name!r} failed to import: {type(exc).__name__}: "
                            f"{error_line(exc)}") from None
    cls = getattr(module, class_name, None)
    if cls is None:
        raise StrategyError("class", f"module {module_name!r} has no {class_name!r}")
    if not (isinstance(cls, type) and issubclass(cls, Strategy)):
        raise StrategyError("class", f"{path} is not a subclass of tradesim.strategies.Strategy")
    try:
        inspect.signature(cls).bind({})
    except TypeError:  # else its TypeError below reads as a bad param
        raise StrategyError("class", f"{path}'s constructor cannot take the params mapping alone: write "
                            "__init__(self, params)") from None
    except ValueError:
        pass  # no signature to read (a C-level class): the call below tells
    try:
        with time_limit(time_limit_s, "its constructor"):
            return cls(dict(params or {}))
    except (ValueError, TypeError) as exc:
        raise StrategyError("params", f"bad params for {path}: {error_line(exc)}") from None
    except (KeyboardInterrupt, StrategyTimeout):
        raise
    except BaseException as exc:  # user code: a param it needs and did not get is often a KeyError
        raise StrategyError("params", f"{path} failed to start: {type(exc).__name__}: {error_line(exc)}") from None
