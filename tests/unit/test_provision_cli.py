"""`tradesim provision` installs without starting: an unknown name is a user mistake, what `up` would leave
stopped is skipped with the reason."""

from __future__ import annotations

from pathlib import Path

from typer.testing import CliRunner

from tradesim.cli.app import app


def test_unknown_component_exits_2_and_parked_ones_are_skipped(tmp_path: Path) -> None:
    env = {"TRADESIM_HOME": str(tmp_path), "TRADESIM_TRACING__ENABLED": "false", "TRADESIM_CHAOS__ENABLED": "false"}
    bad = CliRunner().invoke(app, ["provision", "--only", "nope"], env=env)
    assert bad.exit_code == 2
    assert "unknown component 'nope'" in bad.output
    parked = CliRunner().invoke(app, ["provision", "--only", "jaeger,toxiproxy,market"], env=env)
    assert parked.exit_code == 0, parked.output
    for name in ("jaeger", "toxiproxy", "market"):
        assert f"{name}" in parked.output
    assert parked.output.count("skipped") == 3
    assert "provisioned" not in parked.output
