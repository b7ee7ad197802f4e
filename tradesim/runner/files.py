"""Loading what a run needs from a scenario file — the scenario and its strategy — with every problem as one
`file:line: field: message` line (exit 2), like `tradesim scenarios validate`."""

from __future__ import annotations

import sys
from datetime import UTC, datetime
from pathlib import Path

import yaml

from tradesim.runner.engine import AliasError, aliases
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
    return datetime.fromtimestamp(ms / 1000, UTC).isoformat(timespec="milliseconds").replace("+00:00", "Z")


def load_run(path: Path) -> tuple[Scenario, Strategy | None]:
    """The scenario (ScenarioError as the loader raises it) and its strategy built, or ScenarioError."""
    from tradesim.scenarios.loader import load_scenario

    scenario = load_scenario(path)
    shown = display_path(path)
    try:
        aliases(scenario.symbol_names(), "x" * 5)
    except AliasError as exc:
        raise ScenarioError.one(shown, "symbols", str(exc), _line(path, "symbols")) from None
    first_ms = scenario.replay_first_ms()
    if first_ms is not None and first_ms < scenario.start_ms:
        # a run's market time begins at `start` (orders' times count from it, a strategy's clock starts there)
        raise ScenarioError.one(shown, "source.csv", f"its first tick ({_iso(first_ms)}) is before start "
                                f"({_iso(scenario.start_ms)}); a run begins at start", _line(path, "source", "csv"))
    ref = scenario.strategy
    if ref is None:
        return scenario, None
    folder = str(path.resolve().parent)
    if folder not in sys.path:  # a strategy module beside its scenario file, after anything installed (no shadowing)
        sys.path.append(folder)
    try:
        return scenario, load_strategy(ref.class_path, ref.params, ref.time_limit_s)
    except StrategyError as exc:
        key = "class" if exc.field == "class" else "params"
        raise ScenarioError.one(shown, f"strategy.{key}", str(exc), _line(path, "strategy", key)) from None
