"""Loading what a run needs from a scenario file — the scenario and its strategy — with every problem as one
`file:line: field: message` line (exit 2), like `tradesim scenarios validate`."""

from __future__ import annotations

import sys
from datetime import UTC, datetime, timedelta
from pathlib import Path

import yaml

from tradesim.domain.events import MAX_EPOCH_MS
from tradesim.runner.engine import DAY_MS, AliasError, aliases, script_end_ms
from tradesim.scenarios.errors import ScenarioError, display_path
from tradesim.scenarios.model import Scenario
from tradesim.strategies.sdk import Strategy, StrategyError, load_strategy


def _line(path: Path, *keys: str) -> int:
    """1-based line of a nested key (the deepest one found), 1 if the file cannot be walked."""
    try:
        node: yaml.Node | None = yaml.compose(path.read_text(encoding="utf-8"))
    except (OSError, yaml.YAMLError):
        return 1
    line = 1
    for key in keys:
        if not isinstance(node, yaml.MappingNode):
            break
        match = next(((k, v) for k, v in node.value if getattr(k, "value", None) == key), None)
        if match is None:
            break
        line, node = match[0].start_mark.line + 1, match[1]
    return line


def _iso(ms: int) -> str:
    """Exact to the millisecond (ms / 1000 as a float showed the last market time as ...59.998Z)."""
    moment = datetime(1970, 1, 1, tzinfo=UTC) + timedelta(milliseconds=ms)
    return moment.isoformat(timespec="milliseconds").replace("+00:00", "Z")


#: the folder `_beside` last put on sys.path, and the modules loaded before it did: only one first imported since,
#: from that folder, is a scenario file's to forget (so tradesim's own, loaded first, stay even for a file in its
#: checkout); None while it has put none there
_put: tuple[str, frozenset[str]] | None = None


def _beside(folder: Path) -> None:
    """Search `folder` for a strategy module after anything installed (a module there cannot shadow one), in place
    of an earlier scenario file's folder, whose modules are forgotten: with `mystrat.py` beside two files, each
    file's strategy is its own, not the first one's cached under the same name."""
    global _put
    where = str(folder)
    if _put is not None and _put[0] != where:
        old, before = _put
        if old in sys.path:
            sys.path.remove(old)
        tops = {name.partition(".")[0] for name in sys.modules} - before
        gone = {top for top in tops if _imported_from(Path(old), top)}  # all, before a package's submodules go
        for name in [name for name in sys.modules if name.partition(".")[0] in gone]:
            del sys.modules[name]
        _put = None
    if where not in sys.path:  # else on PYTHONPATH, or put there for an earlier file of this folder already
        sys.path.append(where)
        if _put is None:
            _put = (where, frozenset(sys.modules))


def _imported_from(folder: Path, top: str) -> bool:
    """Whether top-level module `top` was found in `folder` (folder/top.py, a package folder/top/)."""
    module = sys.modules.get(top)
    places = getattr(module, "__path__", None) or [getattr(module, "__file__", None)]
    return any(place is not None and Path(place).parent == folder for place in places)


def require_expect(scenario: Scenario, path: Path) -> None:
    """ScenarioError for a file without `expect`: `tradesim run` refuses it (a CI job whose expectations were deleted
    would stay green), and `scenarios validate` of a file that trades (only `run` uses its trading sections) says
    so too, rather than `ok` for a file `run` then refuses."""
    if scenario.expect is None:
        raise ScenarioError.one(path, "expect", "the file has no `expect` section, so a run would pass with "
                                "nothing checked; add what must come out (scenarios/README.md)")


def load_run(path: Path) -> tuple[Scenario, Strategy | None]:
    """The scenario (ScenarioError as the loader raises it) and its strategy built, or ScenarioError."""
    from tradesim.scenarios.loader import load_scenario

    scenario = load_scenario(path)
    shown = display_path(path)
    generated = len(scenario.symbols)
    names = scenario.symbol_names()
    for some, keys in ((names[:generated], ("symbols",)), (names[generated:], ("source", "csv"))):
        try:  # each named where it comes from: the file's symbols, or the CSV's
            aliases(some, "x" * 5)
        except AliasError as exc:
            raise ScenarioError.one(shown, ".".join(keys), str(exc), _line(path, *keys)) from None
    end_ms = script_end_ms(scenario.start_ms + scenario.duration_ms, scenario.start_ms, scenario.orders)
    if end_ms + DAY_MS > MAX_EPOCH_MS:  # the closing ticks (a minute on) and their orders must be market times
        raise ScenarioError.one(shown, "start", f"a run needs a day of market time after its end ({_iso(end_ms)}),"
                                f" before {_iso(MAX_EPOCH_MS)}; start earlier", _line(path, "start"))
    last_ms = scenario.replay_last_ms()
    if last_ms is not None and last_ms + DAY_MS > MAX_EPOCH_MS:  # the run ends after the CSV's last tick, too
        raise ScenarioError.one(shown, "source.csv", f"its last tick ({_iso(last_ms)}) leaves a run no day of "
                                f"market time after it, before {_iso(MAX_EPOCH_MS)}", _line(path, "source", "csv"))
    first_ms = scenario.replay_first_ms()
    if first_ms is not None and first_ms < scenario.start_ms:
        # a run's market time begins at `start` (orders' times count from it, a strategy's clock starts there)
        raise ScenarioError.one(shown, "source.csv", f"its first tick ({_iso(first_ms)}) is before start "
                                f"({_iso(scenario.start_ms)}); a run begins at start", _line(path, "source", "csv"))
    ref = scenario.strategy
    if ref is None:
        return scenario, None
    _beside(path.resolve().parent)
    try:
        return scenario, load_strategy(ref.class_path, ref.params, ref.time_limit_s)
    except StrategyError as exc:
        key = "class" if exc.field == "class" else "params"
        raise ScenarioError.one(shown, f"strategy.{key}", str(exc), _line(path, "strategy", key)) from None
