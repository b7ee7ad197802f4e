from __future__ import annotations

import textwrap
from collections.abc import Callable
from pathlib import Path

import pytest

from tradesim.settings import REPO_SCENARIOS

HEADER = """\
id: t
start: 2024-01-02T14:30:00Z
duration_s: 300
tick_interval_ms: 1000
seed: 1
"""


@pytest.fixture
def repo_scenarios() -> Path:
    return REPO_SCENARIOS


@pytest.fixture
def write(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Callable[[str, str], Path]:
    """Write a file under a fresh working directory; returns its path relative to it (as a user types it)."""
    monkeypatch.chdir(tmp_path)

    def _write(name: str, text: str) -> Path:
        path = Path(name)
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(textwrap.dedent(text), encoding="utf-8")
        return path

    return _write
