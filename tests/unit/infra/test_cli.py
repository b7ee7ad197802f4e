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

