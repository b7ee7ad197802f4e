"""`tradesim infra synth`: a missing Node.js or a bad option is one line and exit 2; the default writes
infra/cdk.out's templates."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
from typer.testing import CliRunner

from tests.unit.infra.conftest import stand_in_deps, stand_in_jar
from tradesim.cli import infra as infra_cli
from tradesim.cli.app import app
from tradesim.infra import synth

runner = CliRunner()


def test_without_node_it_says_so_in_one_line(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.setattr(synth.shutil, "which", lambda _: None)
    result = runner.invoke(app, ["infra", "synth", "--out", str(tmp_path / "out")])
    assert result.exit_code == 2
    assert result.output.strip().count("\n") == 0
    assert "Node.js" in result.output
    assert not (tmp_path / "out").exists()


def test_an_old_node_is_refused_too(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(synth, "node_major", lambda _: 16)
    with pytest.raises(synth.NodeMissing, match="Node.js 16"):
        synth.require_node()


@pytest.mark.parametrize("bad", ["ftp://x", "clickhouse:8123", "http://${X}", "http://a b:8123"])
def test_a_bad_clickhouse_url_is_one_line_and_exit_2(bad: str) -> None:
    result = runner.invoke(app, ["infra", "synth", "--clickhouse-url", bad])
    assert result.exit_code == 2
    assert result.output.strip().count("\n") == 0
    assert "--clickhouse-url" in result.output


def test_it_writes_the_template_where_asked(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    real = infra_cli.synthesize

    def with_stand_ins(env: str, outdir: Path, **kwargs: Any) -> synth.Synthesis:
        # the two built inputs stand in (no provisioned stack, no PyPI); the CLI's wiring is what is tested here
        return real(env, outdir, **kwargs, jobs_jar=stand_in_jar(tmp_path), deps=stand_in_deps(tmp_path))

    monkeypatch.setattr(infra_cli, "synthesize", with_stand_ins)
    result = runner.invoke(app, ["infra", "synth", "--env", "prod", "--out", str(tmp_path / "cdk.out")])
    assert result.exit_code == 0, result.output
    assert (tmp_path / "cdk.out" / "tradesim-prod.template.json").exists()
    # a folder an earlier synthesis wrote is written over, also one it left half-done (before CDK's own files)
    (tmp_path / "cdk.out" / synth.ASSEMBLY_MARKER).unlink()
    again = runner.invoke(app, ["infra", "synth", "--env", "prod", "--out", str(tmp_path / "cdk.out")])
    assert again.exit_code == 0, again.output

    mine = tmp_path / "mine"
    (mine / "flink-app").mkdir(parents=True)
    (mine / "flink-app" / "notes.txt").write_text("keep")
    refused = runner.invoke(app, ["infra", "synth", "--out", str(mine)])
    assert refused.exit_code == 2, refused.output  # before: flink-app replaced, CDK's files written among them
    assert "--out" in refused.output
    assert (mine / "flink-app" / "notes.txt").read_text() == "keep"



@pytest.mark.parametrize("url", ["https://analyst:s3cret@ch.example.com:8443", "http://analyst@ch.example.com:8123"])
def test_a_clickhouse_url_with_credentials_is_refused_without_showing_them(url: str, tmp_path: Path) -> None:
    """A probe: the password in `--clickhouse-url` went into the template in the clear (six places), and the
    services logged in with the stack's own generated password anyway."""
    result = runner.invoke(app, ["infra", "synth", "--clickhouse-url", url, "--out", str(tmp_path / "out")])
    assert result.exit_code == 2, result.output
    assert result.output.strip().count("\n") == 0
    assert "--clickhouse-user" in result.output
    assert "s3cret" not in result.output
    assert not (tmp_path / "out").exists()


def test_a_clickhouse_user_without_a_clickhouse_url_is_refused(tmp_path: Path) -> None:
    result = runner.invoke(app, ["infra", "synth", "--clickhouse-user", "analyst", "--out", str(tmp_path / "out")])
    assert result.exit_code == 2, result.output
    assert result.output.strip().count("\n") == 0
    assert "--clickhouse-url" in result.output


def test_a_failing_synthesis_is_one_line_not_a_traceback(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """A probe: any error of the CDK (it comes through jsii as RuntimeError), e.g. a folder where the template goes,
    ended in a Python traceback."""
    def failing(env: str, outdir: Path, **kwargs: Any) -> synth.Synthesis:
        raise RuntimeError("Error: EISDIR: illegal operation on a directory, open '/x/tradesim-dev.template.json'\n"
                           "    at Object.openSync (node:fs:573:18)")

    monkeypatch.setattr(infra_cli, "synthesize", failing)
    result = runner.invoke(app, ["infra", "synth", "--out", str(tmp_path / "out")])
    assert result.exit_code == 1, result.output
    assert "Traceback" not in result.output
    assert result.output.strip().count("\n") == 0
    assert "EISDIR" in result.output
    assert "openSync" not in result.output


def test_a_local_flink_of_another_line_than_the_managed_runtime_is_refused(tmp_path: Path,
                                                                           monkeypatch: pytest.MonkeyPatch) -> None:
    """A probe (from the code): the jobs jar and the Python pins came from the local `flink.version` while the
    runtime stayed FLINK-2_2, and nothing compared them."""
    monkeypatch.setenv("TRADESIM_FLINK__VERSION", "2.1.0")
    result = runner.invoke(app, ["infra", "synth", "--out", str(tmp_path / "out")])
    assert result.exit_code == 2, result.output
    assert result.output.strip().count("\n") == 0
    assert "FLINK-2_2" in result.output
    assert "2.1.0" in result.output
    assert not (tmp_path / "out").exists()
    synth.check_runtime("2.2.7")  # any patch release of the line is the runtime's


@pytest.mark.parametrize("bad", ["us-east", "US-EAST-1", "us-northeastsoutheastcentralwestern-1"])
def test_a_bad_region_is_one_line_and_exit_2(bad: str, tmp_path: Path) -> None:
    """A probe: a region of the right shape but longer than a region name can be (the settings' dynamodb.region
    takes 32 characters at most) passed the option's check and ended in a ValidationError traceback."""
    result = runner.invoke(app, ["infra", "synth", "--region", bad, "--out", str(tmp_path / "out")])
    assert result.exit_code == 2, result.output
    assert result.output.strip().count("\n") == 0
    assert "--region" in result.output
    assert not (tmp_path / "out").exists()
