"""`tradesim chaos run` against an in-memory Toxiproxy: however a run ends, the fault it put in place is gone."""

from __future__ import annotations

import sys
from pathlib import Path

import pytest
from typer.testing import CliRunner

from tradesim.adapters.toxiproxy.client import Proxy, ToxiproxyRefused
from tradesim.cli import chaos
from tradesim.cli import errors as cli_errors
from tradesim.cli.app import app

runner = CliRunner()


class FakeToxiproxy:
    """The proxies' state as Toxiproxy keeps it: enabled or not, the toxics on each. `interrupt_after_add`: Ctrl-C
    comes while the request that added a toxic waits for its answer (Toxiproxy has added it)."""

    def __init__(self, interrupt_after_add: bool = False) -> None:
        self.enabled = {"redis": True, "dynamodb": True, "kafka": True}
        self.toxics: dict[str, set[str]] = {name: set() for name in self.enabled}
        self.interrupt_after_add = interrupt_after_add

    def proxies(self) -> list[Proxy]:
        return [Proxy(n, "", "", on, tuple(sorted(self.toxics[n]))) for n, on in sorted(self.enabled.items())]

    def set_enabled(self, name: str, enabled: bool) -> None:
        self.enabled[name] = enabled

    def add_toxic(self, proxy: str, name: str, kind: str, attributes: dict[str, int]) -> None:
        if name in self.toxics[proxy]:
            raise ToxiproxyRefused("toxic already exists", 409)
        self.toxics[proxy].add(name)
        if self.interrupt_after_add:
            raise KeyboardInterrupt

    def remove_toxic(self, proxy: str, name: str) -> bool:
        had = name in self.toxics[proxy]
        self.toxics[proxy].discard(name)
        return had

    def close(self) -> None:
        return None

    @property
    def faulty(self) -> bool:
        return not all(self.enabled.values()) or any(self.toxics.values())


@pytest.fixture(autouse=True)
def _isolated(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("TRADESIM_HOME", str(tmp_path / "home"))
    monkeypatch.setenv("TRADESIM_CHAOS__ENABLED", "true")
    monkeypatch.setattr(chaos.time, "sleep", lambda _s: None)


def _with(monkeypatch: pytest.MonkeyPatch, tox: FakeToxiproxy) -> FakeToxiproxy:
    monkeypatch.setattr(chaos, "_proxy", lambda: tox)
    return tox


@pytest.mark.parametrize("name", ["redis-latency", "kafka-down"])
def test_a_run_that_cannot_announce_its_fault_still_removes_it(monkeypatch: pytest.MonkeyPatch, name: str) -> None:
    """A review: the fault went in before the line announcing it, which was outside the part whose end removes
    it: `tradesim chaos run redis-down | true` (the reader gone: BrokenPipeError), or a signal while the line was
    written, left the fault in place for ever."""
    tox = _with(monkeypatch, FakeToxiproxy())

    def gone(*_args: object, **_kwargs: object) -> None:
        raise BrokenPipeError

    monkeypatch.setattr(chaos.out, "print", gone)
    monkeypatch.setattr(cli_errors, "reader_gone", lambda: sys.exit(141))  # (CliRunner's stdout has no fd)
    result = runner.invoke(app, ["chaos", "run", name, "--seconds", "1"])
    assert result.exit_code == 141, result.output
    assert not tox.faulty


def test_a_run_interrupted_while_its_fault_goes_in_removes_it(monkeypatch: pytest.MonkeyPatch) -> None:
    """A review: Ctrl-C (or SIGTERM) while the request adding the toxic waited for its answer ended the run
    without removing the toxic Toxiproxy had added."""
    tox = _with(monkeypatch, FakeToxiproxy(interrupt_after_add=True))
    runner.invoke(app, ["chaos", "run", "redis-latency", "--seconds", "1"])
    assert not tox.faulty


def test_a_run_ends_with_its_fault_removed_and_a_second_one_is_refused(monkeypatch: pytest.MonkeyPatch) -> None:
    tox = _with(monkeypatch, FakeToxiproxy())
    tox.toxics["redis"].add(chaos_toxic())  # another run's, in place
    refused = runner.invoke(app, ["chaos", "run", "redis-bandwidth"])
    assert refused.exit_code == 2, refused.output
    assert tox.toxics["redis"] == {chaos_toxic()}  # the other run's fault is left alone
    tox.toxics["redis"].clear()
    done = runner.invoke(app, ["chaos", "run", "redis-down"])
    assert done.exit_code == 0, done.output
    assert "redis-down: removed" in done.output
    assert not tox.faulty


def chaos_toxic() -> str:
    from tradesim.stack.chaos import TOXIC

    return TOXIC
