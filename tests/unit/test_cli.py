"""CLI contract: user mistakes exit 2 with one readable line, no traceback."""

from __future__ import annotations

from pathlib import Path

import pytest
from typer.testing import CliRunner

from tradesim.cli.app import app

runner = CliRunner()


@pytest.fixture(autouse=True)
def _isolated(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("TRADESIM_HOME", str(tmp_path / "home"))


def _one_line_error(output: str) -> str:
    lines = [ln for ln in output.strip().splitlines() if ln.strip()]
    assert len(lines) == 1, output
    assert "Traceback" not in output
    return lines[0]


def test_invalid_port_setting_exits_2(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("TRADESIM_KAFKA__PORT", "99999")
    result = runner.invoke(app, ["status"])
    assert result.exit_code == 2
    line = _one_line_error(result.output)
    assert "kafka.port" in line
    assert "TRADESIM_KAFKA__PORT" in line


def test_unknown_component_in_only_exits_2() -> None:
    result = runner.invoke(app, ["up", "--only", "kafka,zookeeper"])
    assert result.exit_code == 2
    assert "unknown component 'zookeeper'" in _one_line_error(result.output)


def test_unknown_runtime_exits_2() -> None:
    result = runner.invoke(app, ["up", "--runtime", "podman"])
    assert result.exit_code == 2
    assert "unknown runtime" in _one_line_error(result.output)


def test_logs_of_never_started_component_exits_2() -> None:
    result = runner.invoke(app, ["logs", "redis"])
    assert result.exit_code == 2
    assert "no log yet" in _one_line_error(result.output)


def test_status_json_of_empty_stack_has_stable_shape() -> None:
    import json

    result = runner.invoke(app, ["status", "--json", "--only", "redis"])
    assert result.exit_code == 1  # nothing runs: not healthy
    doc = json.loads(result.stdout)
    assert set(doc) == {"schema_version", "runtime", "stack_dir", "healthy", "components"}
    assert doc["schema_version"] == 1
    (row,) = doc["components"]
    assert set(row) == {"name", "state", "healthy", "pid", "address", "version", "started_at", "uptime_s",
                        "detail", "log", "last_log_lines"}
    assert (row["name"], row["state"], row["healthy"]) == ("redis", "stopped", False)
