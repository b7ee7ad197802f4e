"""The market-data service's command line: a bad argument is one usage line and exit 2, before anything starts."""

from __future__ import annotations

import subprocess
import sys

import pytest

from tradesim.services.marketdata.__main__ import USAGE


@pytest.mark.parametrize("args", [["--hub"], ["--hub", "12"], ["--hub", "x", "1"], ["--hubs", "2"],
                                  ["--hub", "12", "1", "extra"]])
def test_a_bad_argument_is_one_usage_line_and_exit_2(args: list[str]) -> None:
    done = subprocess.run([sys.executable, "-m", "tradesim.services.marketdata", *args], capture_output=True,
                          text=True, timeout=60)
    assert done.returncode == 2
    assert done.stderr.strip().splitlines() == [USAGE]
    assert done.stdout == ""
