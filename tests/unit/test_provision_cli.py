"""`tradesim provision` installs without starting: an unknown name is a user mistake, what `up` would leave
stopped is skipped with the reason."""

from __future__ import annotations

from pathlib import Path

import pytest
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


def test_apt_get_waits_for_a_lock_another_apt_holds(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """A probe: a first `up` while another apt held the dpkg lock failed at once ("Could not get lock")."""
    import os
    import stat

    from tradesim.stack.tools import APT_LOCK_WAIT_S, apt_install

    if os.geteuid() != 0:
        pytest.skip("apt_install runs apt-get only as root")
    log = tmp_path / "apt.log"
    stub = tmp_path / "bin" / "apt-get"
    stub.parent.mkdir()
    stub.write_text(f'#!/bin/sh\necho "$@" >> "{log}"\n')
    stub.chmod(stub.stat().st_mode | stat.S_IEXEC)
    monkeypatch.setenv("PATH", f"{stub.parent}:/usr/bin:/bin")
    apt_install("redis", ["redis-server"], lambda _msg: None)
    (line,) = log.read_text().splitlines()
    assert line.startswith(f"-o DPkg::Lock::Timeout={APT_LOCK_WAIT_S} install ")
