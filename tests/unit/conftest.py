from __future__ import annotations

from pathlib import Path

import pytest

from tradesim.settings import Settings, load_settings


@pytest.fixture
def settings(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Settings:
    monkeypatch.chdir(tmp_path)  # no tradesim.toml from the working tree leaks in
    return load_settings(home=tmp_path / "home", cache_dir=tmp_path / "cache",
                         stack={"start_timeout_s": 1.0, "stop_timeout_s": 1.0})
