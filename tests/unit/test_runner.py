"""The runner's pure parts: per-run symbol aliases and the bars it hands a strategy (the `bars` job's values,
closed on stream time)."""

from __future__ import annotations

from decimal import Decimal

import pytest

from tradesim.domain.events import Bar, OrderPlaced
from tradesim.jobs.bars_logic import reference_bars
from tradesim.runner.bars import BarBuilder
from tradesim.runner.engine import AliasError, aliases, new_suffix
from tradesim.settings import Settings
from tradesim.testing.factories import tick

T0 = 1_704_205_800_000


def test_aliases_namespace_symbols_and_refuse_ones_too_long() -> None:
    suffix = new_suffix()
    assert len(suffix) == 5
    assert aliases(["AAPL", "BRK.B"], "k3z9a") == {"AAPL": "AAPL.K3Z9A", "BRK.B": "BRK.B.K3Z9A"}
    assert aliases(["ABCDEFGHIJ"], "k3z9a") == {"ABCDEFGHIJ": "ABCDEFGHIJ.K3Z9A"}  # 16: fits
    with pytest.raises(AliasError, match="at most 10"):
        aliases(["ABCDEFGHIJK"], "k3z9a")


def test_bars_are_the_jobs_bars_handed_out_once_their_window_passed() -> None:
    ticks = [tick("A", i + 1, event_time_ms=T0 + i * 400) for i in range(400)]
    ticks += [tick("B", i + 1, event_time_ms=T0 + i * 700) for i in range(200)]
    ticks.sort(key=lambda t: t.event_time_ms)
    builder = BarBuilder()
    handed: list[Bar] = []
    for t in ticks:
        closed = builder.closed_by(t.event_time_ms)
        assert all(b.window_end_ms <= t.event_time_ms for b in closed)
        handed += closed
        builder.add(t)
    handed += builder.closed_by(2**62)
    for interval in ("1s", "1m"):
        mine = sorted((b for b in handed if b.interval == interval), key=lambda b: (b.symbol, b.window_start_ms))
        assert mine == reference_bars(ticks, interval)
    ends = [b.window_end_ms for b in handed]
    assert ends == sorted(ends)


@pytest.mark.parametrize("suffix", ["k3z9a", "0abcd"])
def test_same_time_bars_come_in_the_scenarios_symbol_order_whatever_the_runs_suffix(suffix: str) -> None:
    """A probe: bars of one window were ordered by the run's names, and `BRK.K3Z9A` sorts before `BRK.B.K3Z9A`
    but `BRK.0ABCD` after `BRK.B.0ABCD`, so a strategy's orders (and the outcomes hash) changed between runs."""
    alias = aliases(["BRK", "BRK.B"], suffix)
    builder = BarBuilder({run: name for name, run in alias.items()}.__getitem__)
    for name in ("BRK.B", "BRK"):
        builder.add(tick(alias[name], 1, event_time_ms=T0))
    assert [b.symbol for b in builder.closed_by(T0 + 1_000)] == [alias["BRK"], alias["BRK.B"]]


def test_the_run_context_names_the_scenarios_symbols_and_tells_the_runner_what_it_placed_and_cancelled(
        settings: Settings) -> None:
    """A review: `_cancel` slipped into another class, so the runner never awaited a strategy's cancels."""
    from decimal import Decimal

    from tests.unit.test_strategies import FakeCall
    from tradesim.runner.engine import _RunContext
    from tradesim.stack.errors import UserError
    from tradesim.strategies.sdk import OrderRefused

    call = FakeCall(UserError("qty too large (invalid_request)"))
    ctx = _RunContext(settings, "key-1", run_id="r", strategy="s", symbols=["AAPL"], cash=Decimal("1000"),
                      start_ms=T0, call_fn=call, retry_pause_s=0, sleep=lambda _: None,
                      aliases={"AAPL": "AAPL.X1Y2Z"})
    with pytest.raises(OrderRefused):
        ctx.buy("AAPL", 10**9)
    order_id = ctx.buy("AAPL", 1)
    assert call.requests[0]["json"]["symbol"] == "AAPL.X1Y2Z"  # sent under the run's name
    # a refused order is told too, with its code, in placing order (a probe: it was missing from the report)
    assert [(i, o.symbol, o.qty, code) for i, o, code in ctx.placed] == [
        (None, "AAPL", 10**9, "invalid_request"), (order_id, "AAPL", 1, None)]
    ctx.cancel(order_id)
    assert ctx.cancelled == [order_id]
    assert ctx.open_orders("AAPL")[0].cancel_requested


def test_the_runners_requests_wait_out_the_apis_rate_limit(monkeypatch: pytest.MonkeyPatch) -> None:
    """Before: a script of 150-300 orders ended `stack not usable` (exit 3) on a healthy stack: polling its own
    orders, the runner went past the account's requests/s and took the 429 for a broken API."""
    import json
    import threading
    from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

    from tradesim.runner import engine

    answers = [429, 429, 200]
    seen: list[str] = []

    class Handler(BaseHTTPRequestHandler):
        def do_GET(self) -> None:  # noqa: N802 - http.server's name
            seen.append(self.path)
            status = answers.pop(0) if answers else 429
            body = json.dumps({"code": "rate_limited"} if status == 429 else {"status": "accepted"}).encode()
            self.send_response(status)
            if status == 429:
                self.send_header("Retry-After", "0")  # taken as the 0.05 s floor
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def log_message(self, *_args: object) -> None:
            return None

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    try:
        http = engine.Http(Settings(api={"url": f"http://127.0.0.1:{server.server_address[1]}"}))
        assert http.ok("GET", "/orders/o_1", "key") == {"status": "accepted"}
        assert seen == ["/orders/o_1"] * 3
        monkeypatch.setattr(engine, "RATE_LIMIT_WAIT_S", 0.2)  # a limit that does not end: the 429 counts then
        status, body = http.request("GET", "/orders/o_2", "key")
        assert (status, body) == (429, {"code": "rate_limited"})
        http.close()
    finally:
        server.shutdown()
        server.server_close()


def _closing_decisions(script: list[OrderPlaced], ticks: list[int], end_ms: int) -> list[list[str]]:
    """What a book decides at the runner's closing and final ticks, after `ticks` (market times) at price 100
    and the scripted orders, with an end barrier held as the runner holds it."""
    from tradesim.domain.book import Book
    from tradesim.domain.matching import SlippageModel
    from tradesim.runner.engine import barrier_body, closing_times

    book, slip = Book(), SlippageModel()
    for seq, at_ms in enumerate(ticks, start=1):
        book.on_tick(tick("AAA", seq, price="100", event_time_ms=at_ms), slip)
    close_ms, final_ms = closing_times(end_ms, 200)
    body = barrier_body("AAA", end_ms, close_ms)
    barrier = OrderPlaced(order_id="barrier", user_id="a", order_type=body.pop("type"), placed_at_ms=T0, **body)
    for order in (*script, barrier):
        book.on_order(order, slip, now_ms=T0)
    seq = len(ticks)
    return [[f"{d.kind} {d.order.order_id}" for d in book.on_tick(
        tick("AAA", seq + k, price="100", event_time_ms=at_ms), slip)] for k, at_ms in ((1, close_ms), (2, final_ms))]


def _low(order_id: str, **times: int) -> OrderPlaced:
    return OrderPlaced(order_id=order_id, user_id="a", symbol="AAA", side="buy", qty=1, order_type="limit",
                       limit_price=Decimal(1), placed_at_ms=T0, **times)


def test_the_end_barrier_comes_after_every_scripted_time_so_the_closing_tick_decides_the_script_first() -> None:
    """A probe: ticks at 0 and 60 s, an order scripted at 90 s with a cancel at 100 s. The barrier was held for just
    after the last tick, so the closing tick released it first and cancelled it first; the runner stops reading at
    the barrier's cancellation, so the order could be reported open."""
    from tradesim.runner.engine import script_end_ms
    from tradesim.scenarios.model import ScriptedOrder

    script = [ScriptedOrder.model_validate({
        "id": "low", "at": "90s", "account": "a", "symbol": "AAA", "side": "buy", "qty": 1, "type": "limit",
        "limit_price": "1", "time_in_force": "gtc", "cancel_at": "100s"})]
    last_tick = T0 + 60_000
    end = script_end_ms(last_tick, T0, script)
    assert end == T0 + 100_000
    assert script_end_ms(last_tick, T0, []) == last_tick
    low = _low("low", at_ms=T0 + 90_000, cancel_at_ms=T0 + 100_000)
    assert _closing_decisions([low], [T0, last_tick], end) == [["cancel low"], ["cancel barrier"]]


def test_a_closing_tick_past_midnight_expires_day_orders_before_the_barrier_is_cancelled() -> None:
    """A probe: a scenario ending a minute before UTC midnight. The closing tick (61 s on) passes midnight and
    expires an open DAY order, but it cancelled the barrier first: the runner, which stops reading at the barrier,
    reported the order open or expired depending on what its last read held. Now the barrier waits for the
    final tick, after every decision of the closing one."""
    midnight = (T0 // 86_400_000 + 1) * 86_400_000
    start, last_tick = midnight - 90_000, midnight - 30_000
    day = _low("day", at_ms=start + 10_000)
    gtc = _low("gtc", at_ms=start + 10_000).model_copy(update={"time_in_force": "gtc"})
    assert _closing_decisions([day, gtc], [start, last_tick], last_tick) == [["expire day"], ["cancel barrier"]]
    # the same order a day earlier in the scenario's time, far from midnight: open at the end, nothing expires
    assert _closing_decisions([day], [start - 3_600_000, last_tick - 3_600_000], last_tick - 3_600_000) == [
        [], ["cancel barrier"]]
    # a review: a closing tick a millisecond before midnight left the final tick to pass it
    from tradesim.runner.engine import closing_times

    end = midnight - 1 - 61_000 - 200
    assert closing_times(end, 200)[0] + 1 == midnight + 1  # both after midnight, not one on each side
    assert _closing_decisions([day.model_copy(update={"at_ms": end - 10_000})], [end - 20_000, end], end) == [
        ["expire day"], ["cancel barrier"]]



def test_a_callback_raising_a_base_exception_ends_the_run_in_one_line(settings: Settings) -> None:
    """A probe: asyncio's CancelledError (no Exception) from a callback left the run with a traceback; Ctrl-C (a
    KeyboardInterrupt, also what a termination signal raises) still ends the command as it does."""
    import asyncio

    from tradesim.runner.engine import ScenarioRunner, StrategyFailed
    from tradesim.scenarios.loader import load_scenario
    from tradesim.settings import REPO_SCENARIOS
    from tradesim.strategies.sdk import Strategy

    class Raises(Strategy):
        def on_start(self, ctx: object) -> None:
            raise asyncio.CancelledError("stopped")

        def on_tick(self, ctx: object, tick: object) -> None:
            raise KeyboardInterrupt

    runner = ScenarioRunner(settings, load_scenario(REPO_SCENARIOS / "strategy-ma-cross.yaml"), strategy=Raises())
    try:
        runner.keys["quant"] = "key-1"
        driver = runner._driver()
        with pytest.raises(StrategyFailed, match=r"raised at market time 0 ms: CancelledError: stopped$"):
            runner._strategy_step(driver, driver.start)
        with pytest.raises(KeyboardInterrupt):
            runner._strategy_step(driver, lambda: driver.tick(tick("AAPL", 1, event_time_ms=runner.start_ms)))
    finally:
        runner.http.close()
