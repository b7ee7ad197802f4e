"""CPU and context switches per order in `bench e2e`: what a component spent on the load, net of what it spends
idle, and never a figure from a component that restarted in between."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from benchmarks.e2e import net_per_order
from benchmarks.usage import Usage, cpu_spent, switches_spent


def test_a_restarted_or_vanished_component_is_left_out() -> None:
    before = {"api": Usage(10, 5.0, 1, 1), "kafka": Usage(20, 50.0, 1, 1), "redis": Usage(30, 1.0, 1, 1)}
    after = {"api": Usage(10, 7.5, 1, 1), "kafka": Usage(21, 0.5, 1, 1)}
    assert cpu_spent(before, after) == {"api": pytest.approx(2.5)}


def test_switches_of_a_restarted_component_are_left_out() -> None:
    before = {"api": Usage(10, 5.0, 1, 1, switches=100), "kafka": Usage(20, 50.0, 1, 1, switches=9000)}
    after = {"api": Usage(10, 7.5, 1, 1, switches=350), "kafka": Usage(21, 0.5, 1, 1, switches=10)}
    assert switches_spent(before, after) == {"api": 250}


def test_per_order_subtracts_the_idle_rate_over_the_same_time() -> None:
    per = net_per_order({"api": 3.0, "flink": 6.0, "opensearch": 0.1}, {"flink": 0.2, "opensearch": 0.05},
                        elapsed_s=10.0, orders=1000)
    assert per == {"api": pytest.approx(0.003), "flink": pytest.approx(0.004), "opensearch": 0.0}


def test_a_threads_waits_are_counted_as_context_switches() -> None:
    # In a process of its own: a thread of pytest's that ended meanwhile would take its count out of the sum.
    child = """
import os, threading
from benchmarks.usage import _switches
before = _switches(os.getpid())
for _ in range(50):  # each join waits for a thread that has not finished: a voluntary switch at least
    t = threading.Thread(target=threading.Event().wait, args=(0.001,))
    t.start()
    t.join()
print(before, _switches(os.getpid()))
"""
    done = subprocess.run([sys.executable, "-c", child], capture_output=True, text=True, timeout=60, check=True,
                          cwd=Path(__file__).resolve().parents[2])
    before, after = map(int, done.stdout.split())
    assert after >= before + 50


def test_this_process_is_read_from_proc() -> None:
    from tradesim.stack.exporter import read_procs

    before = read_procs()[os.getpid()].cpu_s
    sum(i * i for i in range(2_000_000))  # burn some CPU so the reading must move
    assert read_procs()[os.getpid()].cpu_s > before


def test_state_on_disk_counts_each_components_folder(tmp_path) -> None:  # type: ignore[no-untyped-def]
    from benchmarks.usage import state_on_disk
    from tradesim.settings import Settings

    settings = Settings(home=tmp_path)
    kafka = settings.stack_dir / "kafka" / "data" / "trade_orders-0"
    kafka.mkdir(parents=True)
    (kafka / "00000000000000000000.log").write_bytes(os.urandom(100_000))  # incompressible
    (settings.stack_dir / "redis").mkdir()
    (settings.stack_dir / "state.json").write_text("{}")  # a file of the stack, not a component's folder
    sizes = state_on_disk(settings)
    assert set(sizes) == {"kafka", "redis"}
    assert sizes["kafka"] >= 100_000
    assert sizes["redis"] == 0


def _row(**anon: tuple[int, int]) -> dict[str, object]:
    return {"memory": {name: {"pid": pid, "anon": value} for name, (pid, value) in anon.items()}}


def test_soak_growth_compares_peaks_so_a_sawtooth_is_not_growth() -> None:
    from benchmarks.soak import peaks

    tooth = [_row(prom=(1, v), ch=(2, c)) for v, c in ((30, 40), (40, 41), (30, 42), (40, 43), (30, 44), (40, 45),
                                                       (31, 46))]
    got = peaks(tooth, 1, "anon")
    assert got["prom"] == (40, 40)  # ends low in its tooth, yet no growth
    assert got["ch"] == (43, 46)  # a climb still shows


def test_soak_growth_leaves_out_a_component_restarted_or_gone_in_a_window() -> None:
    from benchmarks.soak import peaks

    rows = [_row(a=(1, 10), b=(2, 10), c=(3, 10)) for _ in range(6)]
    rows[4] = _row(a=(1, 10), b=(9, 10), c=(3, 10))  # b restarted
    rows[5] = _row(a=(1, 12), b=(9, 10))  # c stopped
    assert peaks(rows, 0, "anon") == {"a": (10, 12)}


def test_soak_growth_windows_never_share_a_row_in_a_short_run() -> None:
    from benchmarks.soak import peaks

    climb = [_row(ch=(2, v)) for v in (10, 20, 30, 40, 50)]
    assert peaks(climb, 1, "anon") == {"ch": (30, 50)}  # two rows each: 20, 30 → 40, 50
    assert peaks(climb, 3, "anon") == {"ch": (40, 50)}  # one row each
    assert peaks(climb, 4, "anon") == {}  # the baseline is the last row


def test_latency_legs_split_each_order_at_the_202_and_the_decision() -> None:
    from benchmarks.e2e import _legs

    offset = 1_700_000_000.0  # wall clock minus monotonic clock
    scheduled = {"a": 10.0, "lost": 30.0}
    answered = {"a": 10.05, "lost": 30.01}
    decided_ms = {"a": round((10.08 + offset) * 1000)}  # the job's wall clock
    arrived = {"a": (10.1, "executed")}  # "lost" never came back: left out, not counted as zero
    legs = _legs(scheduled, answered, arrived, decided_ms, offset)
    assert {name: round(v["p99"]) for name, v in legs.items()} == {"API": 50, "to the decision": 30,
                                                                    "to the outcome": 20}
    assert legs["API"]["p50"] == legs["API"]["p99"]  # one order
