"""One scripted scenario run on the real stack, made deterministic by sequencing, not by timing.

The script enters the book before the tick stream can pass it (every scripted order is placed with its market
time and awaited `in_book` before the second tick is published); a strategy's orders are awaited the same way
before the next tick, its cancels until the book holds them, and it is handed its outcomes at fixed points of the
stream (a probe order released by a tick before the book matches it); an end barrier (an order per account and
symbol, cancelled by the closing tick) proves the execution job processed every tick. Accounts and symbols are
namespaced per run (`trader-k3z9`, `AAPL.K3Z9`), so runs never see each other.
Design note: docs/design/scripted-runs.md.
"""

from __future__ import annotations

import secrets
import string
import time
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field, replace
from decimal import Decimal
from typing import Any, TypeVar

import httpx
import redis

from tradesim.adapters.kafka.errors import KafkaDeliveryError
from tradesim.client.api import retry_after
from tradesim.domain.events import MAX_PRICE, Bar, Event, OrderOutcome, Tick
from tradesim.domain.money import cash_text
from tradesim.scenarios.expect import AccountResult, Outcome, ReadSide, RunResult, account_result, ordered
from tradesim.scenarios.model import RUNNER_ACCOUNT, Scenario, ScriptedOrder, strategy_order_id
from tradesim.settings import Settings
from tradesim.stack.errors import StackError
from tradesim.strategies.sdk import (
    ApiContext,
    Driver,
    OpenOrder,
    OrderRefused,
    Strategy,
    StrategyTimeout,
    price_text,
    time_limit,
)
from tradesim.text import error_line

TERMINAL = frozenset({"executed", "rejected", "cancelled", "expired"})
ALPHABET = string.digits + string.ascii_lowercase
MAX_SYMBOL = 16
DAY_MS = 86_400_000
#: the closing tick comes this long after the last one (plus the bars job's out-of-orderness), so the last 1 min
#: bar window closes on each symbol's clock too
CLOSE_GAP_MS = 61_000
#: a probe needs two market milliseconds before its tick that the symbol's previous tick did not pass
PROBE_GAP_MS = 2
BARRIER_CASH = "1000000"
#: the runner's own orders (barriers, probes) are sells at the schema's price cap: they rest until cancelled, as
#: a tick's bid is below the cap by the schema (`events.Tick`), and reserve no cash (a buy at a penny could fill on
#: a crashed quote)
UNREACHABLE = price_text(MAX_PRICE)
#: how long a run's own symbols keep their cached prices and bars after it ends (to look at them), then expire
RUN_CACHE_TTL_S = 3600


class StackUnusable(Exception):
    """The stack cannot run a scenario (API not ready, Kafka unreachable, jobs not submittable, a deadline passed
    while waiting on it): `tradesim run` exits 3."""


class StrategyFailed(Exception):
    """The strategy raised in a callback (a refused order it did not catch, a bug): the run cannot complete."""


class AliasError(ValueError):
    """A scenario symbol too long to namespace per run (`SYM.SUFFIX` must fit 16 characters)."""


def new_suffix(length: int = 5) -> str:
    """A run's namespace: base36, lowercase (account names) / uppercase (symbol aliases)."""
    return "".join(secrets.choice(ALPHABET) for _ in range(length))


def aliases(symbols: list[str], suffix: str) -> dict[str, str]:
    """Scenario symbol → this run's symbol; raises AliasError for one that does not fit."""
    out: dict[str, str] = {}
    for symbol in symbols:
        alias = f"{symbol}.{suffix.upper()}"
        if len(alias) > MAX_SYMBOL:
            raise AliasError(f"symbol {symbol} is too long to namespace per run ({alias} > {MAX_SYMBOL} characters;"
                             f" use at most {MAX_SYMBOL - len(suffix) - 1})")
        out[symbol] = alias
    return out


def script_end_ms(last_tick_ms: int, start_ms: int, orders: Sequence[ScriptedOrder]) -> int:
    """The market time the end barrier comes after: the last tick's, or the latest scripted `at` or `cancel_at`."""
    scripted = [start_ms + t for o in orders for t in (o.at_ms, o.cancel_at_ms) if t is not None]
    return max([last_tick_ms, *scripted])


def barrier_body(symbol: str, end_ms: int, close_ms: int) -> dict[str, Any]:
    """An end barrier's `POST /orders` body: held until just after `end_ms`, cancelled by the first tick after
    `close_ms` (the final tick of `closing_times`)."""
    return {"symbol": symbol, "side": "sell", "qty": 1, "type": "limit", "limit_price": UNREACHABLE,
            "time_in_force": "gtc", "at_ms": end_ms + 1, "cancel_at_ms": close_ms}


def closing_times(end_ms: int, out_of_orderness_ms: int) -> tuple[int, int]:
    """(closing tick, final tick) market times after `end_ms` (`script_end_ms`). The closing tick decides what the
    market's end decides (held orders, scripted cancels, DAY orders when it passes a UTC midnight) and closes the
    last bar windows; the final tick, a millisecond on, only cancels the end barriers, so on `trade_executed` every
    decision of the closing tick comes before them."""
    close_ms = end_ms + CLOSE_GAP_MS + out_of_orderness_ms
    if (close_ms + 1) % DAY_MS == 0:
        close_ms += 1  # the final tick may not be the one that passes midnight: the closing one expires DAY orders
    return close_ms, close_ms + 1


@dataclass
class Placed:
    """An order the runner placed or saw placed (script, strategy or barrier), by its API id."""

    order_id: str
    name: str
    index: int
    at_ms: int  # relative to the scenario start
    account: str
    symbol: str  # scenario symbol
    side: str
    qty: int
    type: str
    state: dict[str, Any] = field(default_factory=dict)

    @property
    def status(self) -> str:
        return str(self.state.get("status", "accepted"))

    @property
    def terminal(self) -> bool:
        return self.status in TERMINAL


E = TypeVar("E", bound=Event)


class _TopicTail:
    """A topic read from where it ended when the run began (each partition's end then): what the run made."""

    def __init__(self, settings: Settings, topic: str) -> None:
        from confluent_kafka import TopicPartition

        from tradesim.adapters.kafka.client import consumer

        try:
            self._c = consumer(settings.kafka, f"tradesim-run-{new_suffix(8)}")
            parts = self._c.list_topics(topic, timeout=10).topics[topic].partitions
            self._c.assign([TopicPartition(topic, p, self._c.get_watermark_offsets(
                TopicPartition(topic, p), timeout=10)[1]) for p in parts])
        except Exception as exc:  # no broker answered: Kafka is not usable
            raise StackUnusable(f"Kafka is not usable: {exc}") from None

    def _read(self, kind: type[E]) -> Iterator[E]:
        """What has arrived since the last read, all of it (a busy topic, read rarely, holds a backlog); a record
        that is not a `kind` is not ours to judge (the topic's owners dead-letter it)."""
        from tradesim.domain.errors import InvalidRecord
        from tradesim.domain.events import decode

        full = True
        while full:
            batch = self._c.consume(1000, timeout=0.01)
            full = len(batch) == 1000
            for m in batch:
                if m.error() is not None:
                    continue
                try:
                    yield decode(kind, m.value() or b"")
                except InvalidRecord:
                    continue

    def close(self) -> None:
        self._c.close()


class OutcomeLog(_TopicTail):
    """The outcomes of the run's users on `trade_executed`."""

    def __init__(self, settings: Settings, users: set[str]) -> None:
        super().__init__(settings, settings.topics.trade_executed)
        self.users = users
        self.seen: dict[str, OrderOutcome] = {}

    def poll(self) -> bool:
        """Read what has arrived; True (so it can lead a wait condition)."""
        for outcome in self._read(OrderOutcome):
            if outcome.user_id in self.users:
                self.seen.setdefault(outcome.order_id, outcome)  # the first copy: at-least-once repeats it
        return True


class BarLog(_TopicTail):
    """The windows of the run's symbols' bars on `market_bars`, per interval (the bar cache keeps only the newest
    few of each symbol, so a long run is counted here)."""

    def __init__(self, settings: Settings, symbols: set[str]) -> None:
        super().__init__(settings, settings.topics.market_bars)
        self.symbols = symbols
        self.windows: dict[str, set[tuple[str, int]]] = {}  # interval → (symbol, window start); repeats fold

    def poll(self) -> bool:
        for bar in self._read(Bar):
            if bar.symbol in self.symbols:
                self.windows.setdefault(bar.interval, set()).add((bar.symbol, bar.window_start_ms))
        return True


@dataclass
class Progress:
    """What the runner reports while it works (the CLI prints it); the default says nothing."""

    step: Callable[[str], None] = lambda _msg: None


#: how long the runner waits out the API's rate limit on one request before the 429 counts (see Http.request)
RATE_LIMIT_WAIT_S = 60.0


class Http:
    """The public API over one connection; 5xx or no answer → StackUnusable, 4xx → (status, problem)."""

    def __init__(self, settings: Settings) -> None:
        self._client = httpx.Client(base_url=settings.api.client_url, timeout=max(30.0, settings.api.order_answer_s))

    def request(self, method: str, path: str, key: str, **kw: Any) -> tuple[int, Any]:
        """The answer; a 429 is waited out (its Retry-After) for up to RATE_LIMIT_WAIT_S: the runner's own pace
        (placing a long script, polling its orders) is not the scenario's outcome, so it is never one."""
        headers = {**({"Authorization": f"Bearer {key}"} if key else {}), **kw.pop("headers", {})}
        attempt = 0
        limited_until = time.monotonic() + RATE_LIMIT_WAIT_S
        while True:
            try:
                answer = self._client.request(method, path, headers=headers, **kw)
            except httpx.HTTPError as exc:
                attempt += 1
                if attempt == 4:
                    raise StackUnusable(f"the API is not reachable: {exc}") from None
                time.sleep(0.2 * attempt)  # pause before retrying an unreachable API
                continue
            if answer.status_code >= 500:
                attempt += 1
                if attempt == 4:
                    raise StackUnusable(f"API error {answer.status_code} on {method} {path}: {answer.text[:200]}")
                time.sleep(0.2 * attempt)
                continue
            if answer.status_code == 429 and time.monotonic() < limited_until:
                wait = retry_after(answer)  # the API says whole seconds; 1 if it says nothing
                time.sleep(min(5.0, max(0.05, 1.0 if wait is None else wait)))
                continue
            try:
                body = answer.json()
            except ValueError:
                body = {"code": f"http_{answer.status_code}", "message": answer.text}
            return answer.status_code, body

    def ok(self, method: str, path: str, key: str, **kw: Any) -> Any:
        status, body = self.request(method, path, key, **kw)
        if status >= 400:
            raise StackUnusable(f"{method} {path} answered {status}: {body}")
        return body

    def close(self) -> None:
        self._client.close()


def await_(cond: Callable[[], bool], timeout_s: float, what: str, poll_s: float = 0.02) -> None:
    """Poll `cond` until true; a deadline passing means the stack is not keeping up (StackUnusable)."""
    deadline = time.monotonic() + timeout_s
    while not cond():
        if time.monotonic() > deadline:
            raise StackUnusable(f"timed out after {timeout_s:g} s waiting for {what}")
        time.sleep(poll_s)


class _RunContext(ApiContext):
    """The strategy's ApiContext, telling the runner what it placed and cancelled (to await them). The strategy
    names the scenario's symbols; its orders go out under the run's (`aliases`: name → the run's symbol)."""

    def __init__(self, *args: Any, aliases: Mapping[str, str], **kw: Any) -> None:
        super().__init__(*args, **kw)
        self.aliases = aliases
        #: (order id, order, refusal code) in placing order: an order the API refused has no id, only the code
        self.placed: list[tuple[str | None, OpenOrder, str | None]] = []
        self.cancelled: list[str] = []

    def _submit(self, order: OpenOrder) -> str:
        try:
            order_id = super()._submit(replace(order, symbol=self.aliases[order.symbol]))
        except OrderRefused as exc:  # the strategy may catch it and go on: the report lists it all the same
            self.placed.append((None, order, exc.code))
            raise
        self.placed.append((order_id, order, None))
        return order_id

    def _cancel(self, order_id: str) -> None:
        super()._cancel(order_id)
        self.cancelled.append(order_id)


class _NamedDriver(Driver):
    """Shows the strategy the scenario's symbol names (`AAPL`), not the run's (`AAPL.L2XQP`, new every run), so
    its parameters and its logic may name them (`names`: the run's symbol → the scenario's)."""

    def __init__(self, strategy: Any, ctx: _RunContext, names: Mapping[str, str]) -> None:
        super().__init__(strategy, ctx)
        self.names = names

    def tick(self, tick: Tick) -> None:
        super().tick(tick.model_copy(update={"symbol": self.names.get(tick.symbol, tick.symbol)}))

    def bar(self, bar: Bar) -> None:
        super().bar(bar.model_copy(update={"symbol": self.names.get(bar.symbol, bar.symbol)}))

    def fill(self, outcome: OrderOutcome) -> None:
        super().fill(outcome.model_copy(update={"symbol": self.names.get(outcome.symbol, outcome.symbol)}))


@dataclass
class Run:
    """What a finished run hands back: the result in scenario terms and the run's own names."""

    result: RunResult
    suffix: str
    placed: list[Placed]
    start_cash: dict[str, Decimal]


class ScenarioRunner:
    """Runs one scenario (see the module docstring); `speed` None is as fast as possible."""

    def __init__(self, settings: Settings, scenario: Scenario, *, speed: float | None = None,
                 strategy: Strategy | None = None, progress: Progress | None = None,
                 settle_timeout_s: float = 60, read_side_timeout_s: float = 60) -> None:
        self.settings, self.scenario, self.speed, self.strategy = settings, scenario, speed, strategy
        self.progress = progress or Progress()
        self.settle_s, self.read_side_s = settle_timeout_s, read_side_timeout_s
        self.suffix = new_suffix()
        self.alias = aliases(scenario.symbol_names(), self.suffix)
        self.unalias = {v: k for k, v in self.alias.items()}
        self.start_ms = scenario.start_ms
        self.began_ms = 0  # the wall clock's time when the run began (its run id)
        self.http = Http(settings)
        self.keys: dict[str, str] = {}  # scenario account → api key
        self.users: dict[str, str] = {}  # scenario account → user id
        self.placed: list[Placed] = []
        self.outcomes: dict[str, Outcome] = {}  # script or strategy order id → refused outcome (never placed)
        self.strategy_orders: dict[str, Placed] = {}
        self.n_strategy_orders = 0  # placed or refused: each takes the next name (s1, s2, ...)
        self.delivered: set[str] = set()
        self._ctx: _RunContext | None = None
        self._log: OutcomeLog | None = None
        self._bars_log: BarLog | None = None
        self.barriers: list[Placed] = []
        self.probes: list[Placed] = []
        self._ref: Any = None

    # ---- the run -----------------------------------------------------------------------------------------

    def run(self) -> Run:
        from tradesim.adapters.redis.client import connect
        from tradesim.adapters.redis.prices import PriceCache
        from tradesim.scenarios.generators import generate

        redis_failed = False
        try:
            self._check_stack()
            admin = self._admin_key()
            self._accounts(admin)
            run_id = self.began_ms = int(time.time() * 1000)
            ticks = [t.model_copy(update={"symbol": self.alias[t.symbol], "run_id": run_id})
                     for t in generate(self.scenario)]
            if not ticks:
                raise StackUnusable("the scenario generated no ticks")
            publisher = self._publisher()
            self._bars_log = BarLog(self.settings, set(self.alias.values()))
            cache = PriceCache(connect(self.settings.redis))
            first: dict[str, Tick] = {}
            for t in ticks:
                first.setdefault(t.symbol, t)
            head = list(first.values())
            self.progress.step(f"run {self.suffix}: {len(ticks)} ticks, symbols "
                               + ", ".join(self.alias.values()))
            for t in head:
                publisher.publish(t)
            self._flush(publisher)
            await_(lambda: all((got := cache.latest(t.symbol)) is not None and got[0].run_id == run_id
                               and got[0].seq >= t.seq for t in head), self.settle_s, "the first prices cached")
            self._log = OutcomeLog(self.settings, set(self.users.values()))
            self._place_script()
            # a Flink job submitted just now starts reading `market_data` at its end: the first ticks may have gone
            # by before it looked; published again (same run and seq: a no-op where they were seen) they are in the
            # book before any tick moves the script
            for t in head:
                publisher.publish(t)
            self._flush(publisher)
            driver = self._driver() if self.strategy is not None else None
            self._stream(publisher, ticks, head, driver)
            last = {t.symbol: t for t in ticks}
            self._barrier(publisher, last, driver)
            publisher.close()
            accounts = self._account_results()
            outcomes = self._outcomes()
            read_side = self._read_side(outcomes)
            bars = self._bars(ticks)
            return Run(RunResult(outcomes=outcomes, accounts=accounts, bars=bars, read_side=read_side),
                       self.suffix, self.placed, {a.name: a.cash for a in self.scenario.accounts})
        except (redis.RedisError, KafkaDeliveryError) as exc:  # a server went away mid-run
            redis_failed = isinstance(exc, redis.RedisError)
            raise StackUnusable(f"{type(exc).__name__}: {exc}") from None
        finally:
            self.http.close()
            for tail in (self._log, self._bars_log):
                if tail is not None:
                    tail.close()
            if not redis_failed:  # else it would only wait out another timeout before the error is shown
                self._retire_symbols()

    def _retire_symbols(self) -> None:
        """The run's own symbols (aliases no later run uses) leave the price and bar caches after RUN_CACHE_TTL_S:
        kept, every run added up to 600 bars per symbol to Redis for good, and `tradesim prices` listed them all."""
        from tradesim.adapters.redis.bars import BarCache
        from tradesim.adapters.redis.client import connect
        from tradesim.adapters.redis.prices import PriceCache

        symbols = list(self.alias.values())
        try:
            client = connect(self.settings.redis)
            PriceCache(client).retire(symbols, RUN_CACHE_TTL_S)
            BarCache(client).retire(symbols, RUN_CACHE_TTL_S)
        except redis.RedisError:
            pass  # Redis away: they stay cached (the run itself reports a Redis that failed it)

    def _check_stack(self) -> None:
        from tradesim.stack.errors import UserError
        from tradesim.stack.jobs import submit_standard_jobs

        try:
            status, body = self.http.request("GET", "/readyz", "")
        except StackUnusable as exc:
            raise StackUnusable(f"the API is not usable: {exc}") from None
        if status != 200:
            raise StackUnusable(f"the API is not ready (/readyz {status}: {body})")
        try:
            for line in submit_standard_jobs(self.settings):
                if line.startswith("submitted"):
                    self.progress.step(line)
        except (StackError, UserError) as exc:
            raise StackUnusable(f"the Flink jobs cannot be submitted: {exc}") from None

    def _admin_key(self) -> str:
        from tradesim.client.api import admin_key
        from tradesim.stack.errors import StackError

        try:
            return admin_key(self.settings)
        except StackError as exc:  # none yet (the API never started), or a file that cannot be used (UserError)
            raise StackUnusable(str(exc)) from None

    def _accounts(self, admin: str) -> None:
        for account in [*self.scenario.accounts, None]:
            name, cash = (RUNNER_ACCOUNT, Decimal(BARRIER_CASH)) if account is None else (account.name, account.cash)
            user = f"{name}-{self.suffix}"
            body = self.http.ok("POST", "/accounts", admin, json={"name": user, "cash": cash_text(cash)})
            self.keys[name] = body["api_key"]  # (no scenario account can be named RUNNER_ACCOUNT)
            self.users[name] = body["user_id"]

    def _publisher(self) -> Any:
        from tradesim.services.ingest.publisher import TickPublisher

        try:
            return TickPublisher(self.settings, paced=self.speed is not None)  # at a clock's pace or as fast as it goes
        except Exception as exc:  # a producer that cannot be built: Kafka is not usable
            raise StackUnusable(f"Kafka is not usable: {exc}") from None

    def _flush(self, publisher: Any) -> None:
        """Wait until Kafka acknowledged every tick published so far."""
        deadline = time.monotonic() + self.settle_s
        while publisher.stats.delivered + publisher.stats.failed < publisher.stats.sent:
            if time.monotonic() > deadline:
                raise StackUnusable("Kafka did not acknowledge the ticks in time (is it up?)")
            publisher.poll(0.02)
        if publisher.stats.failed:
            raise StackUnusable(f"Kafka refused ticks: {publisher.stats.first_error}")

    # ---- orders ------------------------------------------------------------------------------------------

    def _place_script(self) -> None:
        for index, order in enumerate(self.scenario.orders):
            status, body = self.http.request(
                "POST", "/orders", self.keys[order.account], json=self._script_body(order),
                headers={"Idempotency-Key": self._script_key(order)})
            if status >= 400:
                self.outcomes[order.id] = Outcome(
                    order_id=order.id, index=index, at_ms=order.at_ms, account=order.account, symbol=order.symbol,
                    side=order.side, qty=order.qty, type=order.type, status="refused",
                    reason=str(body.get("code", f"http_{status}")) if isinstance(body, dict) else f"http_{status}")
                continue
            self.placed.append(Placed(body["order_id"], order.id, index, order.at_ms, order.account, order.symbol,
                                      order.side, order.qty, order.type))
        self._await_in_book(self.placed, "the scripted orders to enter the book")

    def _script_key(self, order: ScriptedOrder) -> str:
        """The order's Idempotency-Key, namespaced by the run; a key the file gives and the id an order without one
        falls back to live apart, so `idempotency_key: a` is never taken for order `a`'s retry."""
        return (f"{self.suffix}-key-{order.idempotency_key}" if order.idempotency_key
                else f"{self.suffix}-id-{order.id}")

    def _script_body(self, order: ScriptedOrder) -> dict[str, Any]:
        body: dict[str, Any] = {"symbol": self.alias[order.symbol], "side": order.side, "qty": order.qty,
                                "type": order.type, "time_in_force": order.time_in_force,
                                "at_ms": self.start_ms + order.at_ms, "client_order_id": order.id}
        if order.limit_price is not None:
            body["limit_price"] = price_text(order.limit_price)
        if order.stop_price is not None:
            body["stop_price"] = price_text(order.stop_price)
        if order.cancel_at_ms is not None:
            body["cancel_at_ms"] = self.start_ms + order.cancel_at_ms
        return body

    def _refresh(self, order: Placed) -> dict[str, Any]:
        order.state = self.http.ok("GET", f"/orders/{order.order_id}", self._key_of(order))
        return order.state

    def _key_of(self, order: Placed) -> str:
        return self.keys[order.account]

    def _await_in_book(self, orders: list[Placed], what: str) -> None:
        pending = [o for o in orders if not o.terminal and not o.state.get("in_book")]

        def done() -> bool:
            pending[:] = [o for o in pending if not ((s := self._refresh(o))["in_book"] or s["status"] in TERMINAL)]
            return not pending

        await_(done, self.settle_s, what)

    # ---- the tick stream ---------------------------------------------------------------------------------

    def _driver(self) -> Driver:
        ref = self.scenario.strategy
        if ref is None or self.strategy is None:
            raise ValueError("a strategy run needs the scenario's strategy and its instance")
        self._ref, self._ctx = ref, None
        cash = next(a.cash for a in self.scenario.accounts if a.name == ref.account)
        ctx = _RunContext(self.settings, self.keys[ref.account], run_id=f"{self.suffix}-{self.start_ms}",
                          strategy=ref.class_path, symbols=list(ref.symbols), cash=cash, start_ms=self.start_ms,
                          aliases=self.alias)
        self._ctx = ctx
        return _NamedDriver(self.strategy, ctx, self.unalias)

    def _stream(self, publisher: Any, ticks: list[Tick], head: list[Tick], driver: Driver | None) -> None:
        """Publish `ticks` but the `head` (each symbol's first, published already) at their times, and hand the
        strategy every tick in event-time order: a symbol that starts later reaches it at its own time."""
        from tradesim.runner.bars import BarBuilder
        from tradesim.scenarios.runner import SimClock

        clock = SimClock(self.speed, start_ms=self.start_ms)
        builder = BarBuilder(self.unalias.__getitem__)
        if driver is not None:
            self._strategy_step(driver, driver.start)
        firsts = {id(t) for t in head}
        last_ms = {t.symbol: t.event_time_ms for t in head}
        for t in ticks:
            clock.wait_until(t.event_time_ms)
            if driver is not None:
                for bar in builder.closed_by(t.event_time_ms):
                    self._strategy_step(driver, lambda bar=bar: driver.bar(bar))  # type: ignore[misc]
            builder.add(t)
            probe = None
            if id(t) not in firsts:
                if (self._ctx is not None and self._ctx.open_orders(self.unalias[t.symbol])
                        and t.event_time_ms - last_ms[t.symbol] >= PROBE_GAP_MS):
                    probe = self._probe(t)
                last_ms[t.symbol] = t.event_time_ms
                publisher.publish(t)
            if driver is None or self._ctx is None:
                publisher.poll(0)
                continue
            self._ctx.advance(t.event_time_ms)  # what the strategy does on a fill happens at this tick's time
            if probe is not None:
                self._flush(publisher)
                self._deliver_before(driver, probe, t.symbol)
            self._strategy_step(driver, lambda t=t: driver.tick(t))  # type: ignore[misc]
        if driver is not None:
            self._tail_bars = builder

    def _probe(self, tick: Tick) -> str:
        """A held order of the strategy's account, released and cancelled by `tick` before the book matches it.
        On `trade_executed` (one partition per user) every outcome `tick`'s symbol decided before that tick comes
        before the probe's, and none that the tick's matching decides: a fixed point of the stream."""
        owner = self._ref.account
        body = {"symbol": tick.symbol, "side": "sell", "qty": 1, "type": "limit", "limit_price": UNREACHABLE,
                "time_in_force": "gtc", "at_ms": tick.event_time_ms - 2, "cancel_at_ms": tick.event_time_ms - 1}
        answer = self.http.ok("POST", "/orders", self.keys[owner], json=body,
                              headers={"Idempotency-Key": f"{self.suffix}-probe-{tick.symbol}-{tick.seq}"})
        probe = Placed(answer["order_id"], "probe", -1, 0, owner, self.unalias[tick.symbol], "sell", 1, "limit")
        self.probes.append(probe)
        self._await_in_book([probe], "a probe order to enter the book")
        return probe.order_id

    def _deliver_before(self, driver: Driver, probe: str, symbol: str) -> None:
        """Hand the strategy, in the book's order, the outcomes of its orders on `symbol` decided before `probe`."""
        log = self._outcome_log()
        await_(lambda: log.poll() and probe in log.seen, self.settle_s, "a probe order's outcome (the book "
               "processing the tick)", poll_s=0)
        for order_id, outcome in list(log.seen.items()):
            if order_id == probe:
                break
            if outcome.symbol == symbol:
                self._deliver(driver, outcome)

    def _deliver(self, driver: Driver, outcome: OrderOutcome) -> None:
        if outcome.order_id in self.strategy_orders and outcome.order_id not in self.delivered:
            self.delivered.add(outcome.order_id)
            self._strategy_step(driver, lambda: driver.fill(outcome))

    def _strategy_step(self, driver: Driver, step: Callable[[], None]) -> None:
        """One strategy callback, then wait until what it placed is in the book and what it cancelled is decided."""
        ctx, ref = self._ctx, self._ref
        if ctx is None:
            raise ValueError("no strategy context")
        try:
            with time_limit(ref.time_limit_s, "a callback"):
                step()
        except StrategyTimeout as exc:
            raise StrategyFailed(f"strategy {ref.class_path} at market time {ctx.now_ms - self.start_ms} ms: {exc}"
                                 ) from None
        except (StackUnusable, StrategyFailed, KeyboardInterrupt):  # the last: Ctrl-C or a termination signal
            raise
        except StackError as exc:
            raise StackUnusable(f"the strategy's requests failed: {exc}") from None
        except BaseException as exc:  # anything a strategy raises (an exit, a CancelledError) ends the run, one line
            text = error_line(exc)
            raise StrategyFailed(f"strategy {ref.class_path} raised at market time {ctx.now_ms - self.start_ms} ms: "
                                 f"{type(exc).__name__}: {text}") from None
        new: list[Placed] = []
        for order_id, order, refused in ctx.placed:
            self.n_strategy_orders += 1
            name = strategy_order_id(self.n_strategy_orders)
            index = len(self.scenario.orders) + self.n_strategy_orders - 1
            if order_id is None:  # refused by the API (4xx): an outcome of the run, as a scripted order's
                self.outcomes[name] = Outcome(
                    order_id=name, index=index, at_ms=order.at_ms - self.start_ms, account=ref.account,
                    symbol=order.symbol, side=order.side, qty=order.qty, type=order.type, status="refused",
                    reason=refused)
                continue
            placed = Placed(order_id, name, index, order.at_ms - self.start_ms,
                            ref.account, order.symbol, order.side, order.qty, order.type)
            self.strategy_orders[order_id] = placed
            self.placed.append(placed)
            new.append(placed)
        ctx.placed.clear()
        if new:
            self._await_in_book(new, "the strategy's orders to enter the book")
        if ctx.cancelled:
            gone = [self.strategy_orders[i] for i in ctx.cancelled if i in self.strategy_orders]
            ctx.cancelled.clear()
            self._await_cancel_held(gone, ctx.now_ms)

    def _await_cancel_held(self, orders: list[Placed], at_ms: int) -> None:
        """Until the book holds each cancel at `at_ms` (the order shows that `cancel_at_ms`) or the order is
        decided: the next tick then finds the cancel in the book, wherever it reached the job."""
        pending = [o for o in orders if not o.terminal]

        def done() -> bool:
            pending[:] = [o for o in pending if not ((s := self._refresh(o))["status"] in TERMINAL or (
                s.get("cancel_at_ms") is not None and s["cancel_at_ms"] <= at_ms))]
            return not pending

        await_(done, self.settle_s, "the strategy's cancels to be held in the book")

    # ---- the end barrier ---------------------------------------------------------------------------------

    def _barrier(self, publisher: Any, last: Mapping[str, Tick], driver: Driver | None) -> None:
        """An order per (account, symbol), cancelled by the closing tick. An account's outcomes are on
        `trade_executed` in the order its decisions were made (one partition per user), so once an account's
        barriers are cancelled there, every outcome of that account the ticks before the closing one decided is
        too; what has none is open. The barrier comes after the last tick and after every scripted time, so the
        closing tick releases and cancels each scripted order before it (a book releases held orders by time and
        cancels in the order they entered); the barriers' cancels wait for a final tick (`closing_times`)."""
        last_ms = script_end_ms(max(t.event_time_ms for t in last.values()), self.start_ms, self.scenario.orders)
        close_ms, final_ms = closing_times(last_ms, self.settings.flink.out_of_orderness_ms)
        owners = [a.name for a in self.scenario.accounts] or [RUNNER_ACCOUNT]
        barriers: list[Placed] = []
        for owner in owners:
            for alias in last:
                body = barrier_body(alias, last_ms, close_ms)
                answer = self.http.ok("POST", "/orders", self.keys[owner], json=body,
                                      headers={"Idempotency-Key": f"{self.suffix}-barrier-{alias}"})
                barriers.append(Placed(answer["order_id"], "barrier", -1, 0, owner, self.unalias[alias], "sell", 1,
                                       "limit"))
        self.barriers = barriers
        self._await_in_book(barriers, "the end barrier to enter the book")
        if driver is not None:
            for bar in self._tail_bars.closed_by(close_ms):
                self._strategy_step(driver, lambda bar=bar: driver.bar(bar))  # type: ignore[misc]
        for step, at_ms in ((1, close_ms), (2, final_ms)):
            for t in last.values():
                publisher.publish(t.model_copy(update={"size": 0, "seq": t.seq + step, "event_time_ms": at_ms}))
        self._flush(publisher)
        log = self._outcome_log()
        await_(lambda: log.poll() and all(b.order_id in log.seen for b in barriers), self.settle_s,
               "the end barrier on trade_executed (the job processing every tick)")
        if driver is None:
            return
        placed_before = len(self.placed)
        # the rest, per symbol in the scenario's names' order (the symbols' interleaving may vary; the run's names
        # do not sort alike every run: BRK.K3Z9A before BRK.B.K3Z9A, BRK.0ABCD after BRK.B.0ABCD)
        for symbol in sorted(last, key=self.unalias.__getitem__):
            for outcome in list(log.seen.values()):
                if outcome.symbol == symbol:
                    self._deliver(driver, outcome)
        # what the strategy placed in those callbacks met the final quote on arrival: the decided ones are awaited
        # on trade_executed, so the report and the account agree (their fills are not handed to the strategy)
        late = [o for o in self.placed[placed_before:] if o.terminal]
        await_(lambda: log.poll() and all(o.order_id in log.seen for o in late), self.settle_s,
               "the outcomes of the orders the strategy placed at the close")

    # ---- results -----------------------------------------------------------------------------------------

    def _bar_log(self) -> BarLog:
        if self._bars_log is None:
            raise RuntimeError("the bar log is opened before the first tick is published")
        return self._bars_log

    def _outcome_log(self) -> OutcomeLog:
        if self._log is None:
            raise RuntimeError("the outcome log is opened before the script is placed")
        return self._log

    def _outcomes(self) -> list[Outcome]:
        out = list(self.outcomes.values())
        for order in self.placed:
            decided = self._outcome_log().seen.get(order.order_id)
            s = {} if decided is None else decided.model_dump(mode="json")
            status = s["status"] if decided is not None else "open"
            out.append(Outcome(
                order_id=order.name, index=order.index, at_ms=order.at_ms, account=order.account,
                symbol=order.symbol, side=order.side,  # type: ignore[arg-type]
                qty=order.qty, type=order.type,  # type: ignore[arg-type]
                status=status, reason=s.get("reason"),
                fill_price=Decimal(s["fill_price"]) if s.get("fill_price") else None,
                fee=Decimal(s["fee"]) if s.get("fee") else None,
                decided_ms=None if decided is None else decided.decided_at_ms))
        return ordered(out)

    def _account_results(self) -> dict[str, AccountResult]:
        outcomes = self._outcomes()
        results: dict[str, AccountResult] = {}
        for account in self.scenario.accounts:
            me = self.http.ok("GET", "/accounts/me", self.keys[account.name])
            held = {self.unalias.get(sym, sym): qty for sym, qty in (me.get("positions") or {}).items()}
            cash = Decimal(me["cash"]) if me.get("cash") is not None else Decimal(0)
            results[account.name] = account_result(cash, held, [o for o in outcomes if o.account == account.name])
        return results

    def _read_side(self, outcomes: list[Outcome]) -> ReadSide | None:
        """Wait (deadline) until search holds every decided outcome and analytics every executed share."""
        admin = self._admin_key()
        own = self.barriers + self.probes  # the runner's orders: searchable too, not the run's
        want_trades = {a.name: sum(o.account == a.name and o.status in TERMINAL for o in outcomes)
                       + sum(b.account == a.name for b in own) for a in self.scenario.accounts}
        want_volume = {s: sum(o.qty for o in outcomes if o.executed and o.symbol == s) for s in self.alias}
        got: dict[str, Any] = {}
        refused: list[str] = []

        def answered(path: str, status: int, body: dict[str, Any]) -> bool:
            if status != 200:  # said when the wait ends; a poll with a refusal counts nothing (a 403 is no volume)
                refused[:] = [f"GET {path} answered {status}: {body.get('message', body)}"]
            return status == 200

        def caught_up() -> bool:
            refused.clear()  # what the last poll was refused, if anything, is what the end says
            trades = 0
            ok = True
            for name, want in want_trades.items():
                status, body = self.http.request("GET", "/trades/search", admin,
                                                 params={"user": self.users[name], "size": 1})
                if not answered("/trades/search", status, body):
                    return False
                n = int(body.get("total", 0))
                trades += n
                ok = ok and n == want
            volume: dict[str, int] = {}
            for symbol, want in want_volume.items():
                # analytics buckets by decision time, the wall clock's (not the scenario's, which may be 1995)
                status, body = self.http.request("GET", "/analytics/volume", admin, params={
                    "symbol": self.alias[symbol], "interval": "1d", "from": str(self.began_ms - DAY_MS),
                    "to": str(int(time.time() * 1000) + DAY_MS)})
                if not answered("/analytics/volume", status, body):
                    return False
                volume[symbol] = shares = sum(int(b["shares"]) for b in body.get("buckets", []))
                ok = ok and shares == want
            # (the runner's orders in the accounts counted: with none of the scenario's, its barriers are its own)
            got.update(trades=trades - sum(b.account in want_trades for b in own), volume=volume)
            return ok

        try:
            await_(caught_up, self.read_side_s, "the read side", poll_s=0.5)
        except StackUnusable:
            self.progress.step(f"read side did not catch up within {self.read_side_s:g} s; reporting what it shows"
                               + (f" ({refused[0]})" if refused else ""))
            if not got:
                return None
        return ReadSide(searchable_trades=got["trades"], volume=got["volume"])

    def _bars(self, ticks: list[Tick]) -> dict[str, int]:
        """Bars per interval over the run's symbols with a window over the scenario's time, as the `bars` job put them
        on `market_bars`; waits (deadline) until each symbol's last window is there (the closing ticks close it
        on the symbol's own clock)."""
        from tradesim.jobs.bars_logic import INTERVALS_MS

        bars = self._bar_log()
        end_ms = self.start_ms + self.scenario.duration_ms
        last: dict[str, int] = {}  # each symbol's last tick inside the scenario: its feed may stop early
        for t in ticks:
            if self.start_ms <= t.event_time_ms < end_ms:
                last[t.symbol] = max(last.get(t.symbol, t.event_time_ms), t.event_time_ms)

        def inside(interval: str) -> set[tuple[str, int]]:
            """The windows holding the scenario's time (a start off the minute: the first one began before it)."""
            size = INTERVALS_MS[interval]
            return {w for w in bars.windows.get(interval, ()) if self.start_ms - size < w[1] < end_ms}

        def complete() -> bool:
            bars.poll()
            return all((symbol, at - at % size) in inside(interval)
                       for interval, size in INTERVALS_MS.items() for symbol, at in last.items())

        try:
            await_(complete, self.settle_s, "the last bars", poll_s=0.2)
        except StackUnusable:
            self.progress.step("market_bars did not show every symbol's last bars in time; counting what is there")
        return {interval: len(inside(interval)) for interval in INTERVALS_MS}
