"""The `bars` job on the real cluster (its JVM implementation, held to the Python rule and schema): exact bars
with out-of-order ticks, per-symbol clocks, the records it takes and refuses, dead letters, TaskManager kill -9."""

from __future__ import annotations

import os
import signal
import time
from collections import defaultdict
from decimal import Decimal

import pytest

from tests.integration.flink import tick_records
from tests.integration.flink.conftest import BarsJob, make_tick, records
from tradesim.adapters.kafka.client import producer
from tradesim.domain.events import Bar, DeadLetter, decode, encode
from tradesim.jobs.bars_logic import classify, reference_bars
from tradesim.stack.flink import Flink

pytestmark = pytest.mark.integration
OOO_MS = 2000  # the job's default bounded out-of-orderness


def bars_of(got: list[tuple[bytes, bytes]], symbol: str) -> list[tuple[bytes, Bar]]:
    out = []
    for key, value in got:
        bar = decode(Bar, value)
        if bar.symbol == symbol:
            out.append((key, bar))
    return out


def distinct(bars: list[tuple[bytes, Bar]]) -> dict[tuple[str, int], Bar]:
    """Bars by window; fails if one window was emitted twice with different values."""
    seen: dict[tuple[str, int], Bar] = {}
    for _, bar in bars:
        k = (bar.interval, bar.window_start_ms)
        assert seen.setdefault(k, bar) == bar, f"window {k} emitted twice with different values"
    return seen


def test_exact_bars_with_out_of_order_ticks(bars_job: BarsJob) -> None:
    b0 = bars_job.take_minute()
    sym = "OOO" + os.urandom(2).hex().upper()
    ticks = [
        make_tick(sym, 1, b0 + 100, "10.00", 5),
        make_tick(sym, 2, b0 + 400, "10.50", 3),
        make_tick(sym, 4, b0 + 1200, "11.00", 2),
        make_tick(sym, 3, b0 + 900, "9.80", 10),   # 300 ms out of order: still in [b0, b0+1s)
        make_tick(sym, 5, b0 + 2500, "10.20", 1),
        make_tick(sym, 6, b0 + 1700, "10.90", 4),  # 800 ms out of order
    ]
    flush = make_tick(sym, 7, b0 + 60_000 + OOO_MS + 500, "1", 1)  # the symbol's clock passes every window above
    start = bars_job.end_offsets(bars_job.bars_topic)
    bars_job.produce(records([*ticks, flush]))
    got = bars_job.read_until(start, lambda g: len(distinct(bars_of(g, sym))) >= 4)
    bars = bars_of(got, sym)
    assert all(key == sym.encode() for key, _ in bars)  # keyed by symbol
    by_window = distinct(bars)
    D = Decimal
    assert by_window == {
        ("1s", b0): Bar(symbol=sym, interval="1s", window_start_ms=b0, window_end_ms=b0 + 1000, open=D("10.00"),
                        high=D("10.50"), low=D("9.80"), close=D("9.80"), vwap=D("9.97222222"), volume=18,
                        trade_count=3),
        ("1s", b0 + 1000): Bar(symbol=sym, interval="1s", window_start_ms=b0 + 1000, window_end_ms=b0 + 2000,
                               open=D("11.00"), high=D("11.00"), low=D("10.90"), close=D("10.90"),
                               vwap=D("10.93333333"), volume=6, trade_count=2),
        ("1s", b0 + 2000): Bar(symbol=sym, interval="1s", window_start_ms=b0 + 2000, window_end_ms=b0 + 3000,
                               open=D("10.20"), high=D("10.20"), low=D("10.20"), close=D("10.20"),
                               vwap=D("10.20"), volume=1, trade_count=1),
        ("1m", b0): Bar(symbol=sym, interval="1m", window_start_ms=b0, window_end_ms=b0 + 60_000, open=D("10.00"),
                        high=D("11.00"), low=D("9.80"), close=D("10.20"), vwap=D("10.212"), volume=25,
                        trade_count=6),
    }


def test_a_replay_on_an_older_clock_gets_its_bars_while_newer_time_goes_through(bars_job: BarsJob) -> None:
    """Event time is per symbol: the live market on today's clock does not make a 2024 replay's ticks late."""
    b0 = bars_job.take_minute()
    new, old = "NEW" + os.urandom(2).hex().upper(), "OLD" + os.urandom(2).hex().upper()
    o0 = b0 - 400 * 86_400_000  # more than a year behind
    replay = [make_tick(old, 1, o0 + 100, "10", 1), make_tick(old, 2, o0 + 1_100, "11", 2)]
    start = bars_job.end_offsets(bars_job.bars_topic)
    bars_job.produce(records([make_tick(new, 1, b0 + 100, "5", 1), make_tick(new, 2, b0 + 30_000, "5", 1),
                              *replay, make_tick(old, 3, o0 + 1_000 + OOO_MS + 1_500, "12", 1)]))
    got = bars_job.read_until(start, lambda g: len(bars_of(g, old)) >= 2 and len(bars_of(g, new)) >= 1, 60)
    assert [b for _, b in bars_of(got, old)] == reference_bars(replay, "1s")
    assert [b.window_start_ms for _, b in bars_of(got, new)] == [b0]


def test_malformed_record_goes_to_dead_letter_and_the_job_keeps_running(bars_job: BarsJob) -> None:
    b0 = bars_job.take_minute()
    sym = "DLQ" + os.urandom(2).hex().upper()
    bad_json = b"this is not json " + sym.encode()
    crossed = make_tick(sym, 1, b0, "10", 1).model_dump(mode="json") | {"bid": "11", "ask": "10"}
    import json

    bad_spread = json.dumps(crossed).encode()
    dl_start = bars_job.end_offsets(bars_job.dead_letter_topic)
    bars_start = bars_job.end_offsets(bars_job.bars_topic)
    bars_job.produce([(sym, bad_json), (sym, bad_spread)])
    letters = [decode(DeadLetter, v) for _, v in bars_job.read_until(dl_start, lambda g: len(g) >= 2, 60)]
    assert [(d.record.encode(), d.source_topic, d.consumer) for d in letters] == [
        (bad_json, bars_job.ticks_topic, "bars"), (bad_spread, bars_job.ticks_topic, "bars")]
    assert letters[0].reason.startswith("$: not JSON")
    assert "bid 11 is above ask 10" in letters[1].reason

    good = [make_tick(sym, 2, b0 + 10, "20.5", 2), make_tick(sym, 3, b0 + 20, "20.7", 2)]
    bars_job.produce(records([*good, make_tick(sym, 4, b0 + 1000 + OOO_MS + 500, "1", 1)]))
    got = bars_of(bars_job.read_until(bars_start, lambda g: len(bars_of(g, sym)) >= 1, 60), sym)
    assert [b for _, b in got if b.interval == "1s"] == reference_bars(good, "1s")
    assert bars_job.rest.job(bars_job.job_id)["state"] == "RUNNING"


def test_it_takes_and_refuses_exactly_the_records_the_tick_schema_does(bars_job: BarsJob) -> None:
    """Every way pydantic's lax mode writes a valid tick, and one fault per invalid record: the job's bars are
    the Python rule's over the valid ones, and each invalid one is dead-lettered naming the field Python names."""
    b0 = bars_job.take_minute()
    sym = "PAR" + os.urandom(2).hex().upper()
    raws = tick_records.records(sym, b0)
    judged = [(raw, *classify(raw.decode(), bars_job.ticks_topic)) for raw in raws]
    valid = [tick for _, tick, _ in judged if tick is not None]
    refused = [(raw, decode(DeadLetter, letter).reason.split(":", 1)[0]) for raw, _, letter in judged if letter]
    assert len(valid) >= 20, "the fixtures hold valid records"
    assert len(refused) >= 30, "the fixtures hold invalid records"
    dl_start = bars_job.end_offsets(bars_job.dead_letter_topic)
    start = bars_job.end_offsets(bars_job.bars_topic)
    flush = make_tick(sym, 1_000, b0 + 60_000 + OOO_MS + 500, "1", 1)
    bars_job.produce([(sym, raw) for raw in raws] + records([flush]))
    expected = {(b.interval, b.window_start_ms): b for iv in ("1s", "1m") for b in reference_bars(valid, iv)}
    got = bars_job.read_until(start, lambda g: len(distinct(bars_of(g, sym))) >= len(expected), 60)
    assert distinct(bars_of(got, sym)) == expected
    # byte for byte as Python encodes them (decimals as written: "1.50000" is not "1.5" here)
    assert {v for _, v in got if decode(Bar, v).symbol == sym} == {encode(b) for b in expected.values()}
    letters = [decode(DeadLetter, v) for _, v in
               bars_job.read_until(dl_start, lambda g: len(g) >= len(refused), 60)]
    assert [(d.record, d.reason.split(":", 1)[0]) for d in letters] == [(raw.decode(), f) for raw, f in refused]


def test_a_tombstone_is_dead_lettered_and_the_job_keeps_running(bars_job: BarsJob) -> None:
    """A record with no value (a compaction tombstone someone wrote to the topic) is a bad record, not a crash."""
    b0 = bars_job.take_minute()
    sym = "TMB" + os.urandom(2).hex().upper()
    dl_start = bars_job.end_offsets(bars_job.dead_letter_topic)
    bars_start = bars_job.end_offsets(bars_job.bars_topic)
    p = producer(bars_job.settings.kafka)
    p.produce(bars_job.ticks_topic, key=sym.encode(), value=None)
    assert p.flush(30) == 0
    good = [make_tick(sym, 1, b0 + 10, "20.5", 2)]
    bars_job.produce(records([*good, make_tick(sym, 2, b0 + 1000 + OOO_MS + 500, "1", 1)]))
    (letter,) = [decode(DeadLetter, v) for _, v in bars_job.read_until(dl_start, lambda g: len(g) >= 1, 60)]
    assert (letter.record, letter.consumer) == ("", "bars")
    assert letter.reason.startswith("$: not JSON")
    got = bars_of(bars_job.read_until(bars_start, lambda g: len(bars_of(g, sym)) >= 1, 60), sym)
    assert [b for _, b in got if b.interval == "1s"] == reference_bars(good, "1s")
    assert bars_job.rest.job(bars_job.job_id)["state"] == "RUNNING"


def test_a_tick_the_job_raises_on_is_dead_lettered_and_the_other_symbols_bars_go_on(bars_job: BarsJob) -> None:
    """`faults.poison["bars"]` (the test stack's) makes the bars stage raise on every tick of that symbol."""
    poison = bars_job.settings.faults.poison.get("bars")
    assert poison, "the test stack runs with faults.poison (tests/integration/conftest.py)"
    b0 = bars_job.take_minute()
    sym = "PSN" + os.urandom(2).hex().upper()
    dl_start = bars_job.end_offsets(bars_job.dead_letter_topic)
    bars_start = bars_job.end_offsets(bars_job.bars_topic)
    bad = make_tick(poison, 1, b0 + 5, "10", 1)
    good = [make_tick(sym, 1, b0 + 10, "20.5", 2), make_tick(sym, 2, b0 + 20, "20.7", 2)]
    bars_job.produce(records([bad, *good, make_tick(sym, 3, b0 + 1000 + OOO_MS + 500, "1", 1)]))
    (letter,) = [decode(DeadLetter, v) for _, v in bars_job.read_until(dl_start, lambda g: len(g) >= 1, 60)]
    assert (letter.record, letter.source_topic, letter.consumer) == (
        encode(bad).decode(), bars_job.ticks_topic, "bars")
    assert letter.reason.startswith(f"bars failed: InjectedFault: injected fault: bars fails on {poison}")
    got = bars_of(bars_job.read_until(bars_start, lambda g: len(bars_of(g, sym)) >= 1, 60), sym)
    assert [b for _, b in got if b.interval == "1s"] == reference_bars(good, "1s")
    assert [f for f in bars_job.rest.failures(bars_job.job_id) if "InjectedFault" in f] == []


def _running_again(bars_job: BarsJob, deadline: float) -> None:
    while time.monotonic() < deadline:
        detail = bars_job.rest.job(bars_job.job_id)
        if detail["state"] == "RUNNING" and all(v["status"] == "RUNNING" for v in detail["vertices"]):
            return
        time.sleep(0.5)
    pytest.fail(f"job not running again: {bars_job.rest.job(bars_job.job_id)['state']}")


def _restored(bars_job: BarsJob) -> dict | None:  # type: ignore[type-arg]
    return bars_job.rest._call("GET", f"/jobs/{bars_job.job_id}/checkpoints")["latest"].get("restored")


def test_taskmanager_kill_9_recovers_from_checkpoint_with_correct_bars(bars_job: BarsJob) -> None:
    flink = Flink(bars_job.settings)
    b0 = bars_job.take_minute()
    sym = "KIL" + os.urandom(2).hex().upper()
    batch_a = [make_tick(sym, i + 1, b0 + 100 + i * 250, f"{50 + i % 5}.{i:02d}", 1 + i % 3) for i in range(12)]
    batch_b = [make_tick(sym, 100 + i, b0 + 6_000 + i * 250, f"{60 - i % 4}.{i:02d}", 2 + i % 2) for i in range(12)]
    start = bars_job.end_offsets(bars_job.bars_topic)

    flush_a = make_tick(sym, 50, b0 + 3_000 + OOO_MS + 100, "1", 1)  # closes batch A's seconds on sym's clock
    bars_job.produce(records([*batch_a, flush_a]))
    emitted = bars_job.read_until(start, lambda g: len(bars_of(g, sym)) >= 3, 60)
    assert len(bars_of(emitted, sym)) >= 3, "batch A's bars were not emitted within 60 s"
    cp_before = (bars_job.rest._call("GET", f"/jobs/{bars_job.job_id}/checkpoints")["latest"]["completed"]
                 or {}).get("id", 0)
    deadline = time.monotonic() + 30  # a checkpoint after batch A's bars: the offsets past them are saved
    while time.monotonic() < deadline:
        latest = bars_job.rest._call("GET", f"/jobs/{bars_job.job_id}/checkpoints")["latest"]["completed"] or {}
        if latest.get("id", 0) > cp_before:
            break
        time.sleep(0.3)
    else:
        pytest.fail(f"no checkpoint completed after batch A's bars within 30 s (the latest: {cp_before})")

    bars_job.produce(records(batch_b))  # in window state, not yet emitted, when the TaskManager dies
    time.sleep(0.5)  # noqa: ASYNC251 - give the job a moment to ingest batch B (correctness does not depend on it)
    old_pid = flink.taskmanager_pid()
    assert old_pid
    os.kill(old_pid, signal.SIGKILL)

    deadline = time.monotonic() + 180
    while time.monotonic() < deadline and flink.taskmanager_pid() in (None, old_pid):
        time.sleep(0.3)
    assert flink.taskmanager_pid() not in (None, old_pid), "the TaskManager was not restarted"
    # the JobManager notices the lost TaskManager by heartbeat, restarts the job and restores the last checkpoint
    while time.monotonic() < deadline and not _restored(bars_job):
        time.sleep(0.5)
    assert _restored(bars_job), "the job did not restore from a checkpoint"
    _running_again(bars_job, deadline)

    bars_job.produce(records([make_tick(sym, 200, b0 + 60_000 + OOO_MS + 500, "1", 1)]))
    expected = {(b.interval, b.window_start_ms): b
                for iv in ("1s", "1m") for b in reference_bars([*batch_a, flush_a, *batch_b], iv)}
    got = bars_job.read_until(start, lambda g: len(distinct(bars_of(g, sym))) >= len(expected), 180)
    assert distinct(bars_of(got, sym)) == expected
    counts = defaultdict(int)
    for _, bar in bars_of(got, sym):
        counts[(bar.interval, bar.window_start_ms)] += 1
    print("emissions per window (>1 = replayed after recovery, identical):", dict(counts))
