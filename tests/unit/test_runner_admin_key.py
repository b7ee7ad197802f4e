"""A scripted run on a stack whose API never made its admin key is "stack not usable" (exit 3, with its reports),
whichever error class says so."""

from __future__ import annotations

import pytest

from tradesim.runner.engine import ScenarioRunner, StackUnusable
from tradesim.scenarios.loader import find_scenario, load_scenario
from tradesim.settings import Settings


def test_no_admin_key_is_stack_unusable(settings: Settings) -> None:
    scenario = load_scenario(find_scenario("calm", settings.scenarios_dir))
    runner = ScenarioRunner(settings, scenario)
    with pytest.raises(StackUnusable, match="no admin key"):  # before: StackError escaped, exit 1, no report
        runner._admin_key()
