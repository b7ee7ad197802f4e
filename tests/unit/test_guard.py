"""The jobs' per-record guard: dead letters name the stage, the error and where it was raised; a batch with one
bad item settles the others."""

from __future__ import annotations

from collections.abc import Sequence

import pytest

from tradesim.domain.events import DeadLetter, Tick, decode, encode
from tradesim.jobs import guard
from tradesim.ports import InjectedFault
from tradesim.settings import FaultSettings
from tradesim.testing.factories import tick


def test_a_failed_record_s_letter_has_the_stage_the_error_and_the_record() -> None:
    t = tick("ACME", 1)
    try:
        {}["missing"]  # noqa: B018 - raise a real KeyError with a traceback
    except KeyError as exc:
        letter = decode(DeadLetter, guard.failed(t, exc, stage="bars", source_topic="market_data", consumer="bars"))
    assert (letter.source_topic, letter.consumer) == ("market_data", "bars")
    assert letter.reason.startswith("bars failed: KeyError: 'missing' at test_guard.py:")
    assert decode(Tick, letter.record) == t
    assert letter.record == encode(t).decode()


def _double_unless_bad(items: Sequence[int]) -> list[int]:
    if any(i < 0 for i in items):
        raise ValueError(f"bad in {list(items)}")
    return [i * 2 for i in items]


def test_isolate_passes_a_good_batch_through_whole() -> None:
    calls: list[list[int]] = []

    def call(items: Sequence[int]) -> list[int]:
        calls.append(list(items))
        return _double_unless_bad(items)

    assert guard.isolate([1, 2, 3], call) == ([2, 4, 6], [])
    assert calls == [[1, 2, 3]]


def test_isolate_settles_the_others_of_a_batch_with_a_bad_item_one_by_one() -> None:
    results, bad = guard.isolate([1, -5, 3, -7], _double_unless_bad)
    assert results == [2, 6]
    assert [(item, str(exc)) for item, exc in bad] == [(-5, "bad in [-5]"), (-7, "bad in [-7]")]


def test_isolate_does_not_repeat_a_single_item() -> None:
    calls: list[list[int]] = []

    def call(items: Sequence[int]) -> list[int]:
        calls.append(list(items))
        return _double_unless_bad(items)

    results, bad = guard.isolate([-1], call)
    assert (results, [i for i, _ in bad], calls) == ([], [-1], [[-1]])


@pytest.mark.parametrize(("stage", "symbol", "raises"), [
    ("match", "PSN", True), ("match", "OTHER", False), ("settle", "PSN", False), ("bars", None, False)])
def test_faults_raise_only_for_their_stage_and_symbol(stage: str, symbol: str | None, raises: bool) -> None:
    faults = FaultSettings(poison={"match": "PSN"})
    if raises:
        with pytest.raises(InjectedFault, match="match fails on PSN"):
            faults.check(stage, symbol)  # type: ignore[arg-type]
    else:
        faults.check(stage, symbol)  # type: ignore[arg-type]


def test_an_unknown_fault_stage_is_a_settings_error() -> None:
    with pytest.raises(ValueError, match="poison"):
        FaultSettings(poison={"nowhere": "PSN"})  # type: ignore[dict-item]
