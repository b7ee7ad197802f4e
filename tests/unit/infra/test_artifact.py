"""The jobs' pins for the Managed Flink artifact, read from a site-packages folder (here a made-up one)."""

from __future__ import annotations

from pathlib import Path

import pytest

from tradesim.infra import artifact
from tradesim.stack.errors import ProvisionError


def _dist(site: Path, name: str, version: str, *requires: str) -> None:
    info = site / f"{name.replace('-', '_')}-{version}.dist-info"
    info.mkdir(parents=True)
    lines = ["Metadata-Version: 2.1", f"Name: {name}", f"Version: {version}",
             *(f"Requires-Dist: {r}" for r in requires)]
    (info / "METADATA").write_text("\n".join(lines) + "\n")


def test_pins_follow_requirements_for_the_services_python_through_extras_and_cycles(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(artifact, "JOB_RUNTIME_DEPS", ("top",))
    _dist(tmp_path, "top", "1.0", "Mid[fast]>=2", "only-old; python_version < '3.12'",
          "only-win; sys_platform == 'win32'")
    _dist(tmp_path, "mid", "2.5", "top", "speedup; extra == 'fast'", "docs; extra == 'docs'")  # a cycle back to top
    _dist(tmp_path, "speedup", "0.3")
    _dist(tmp_path, "only-old", "9.9")  # installed here, but not needed on Python 3.12
    assert artifact.job_pins(tmp_path) == ["mid==2.5", "speedup==0.3", "top==1.0"]


def test_a_requirement_missing_from_the_venv_says_to_provision_again(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(artifact, "JOB_RUNTIME_DEPS", ("top",))
    _dist(tmp_path, "top", "1.0", "gone>=1")
    with pytest.raises(ProvisionError, match="gone is not in .*provision --only flink"):
        artifact.job_pins(tmp_path)


def test_an_assembly_folder_inside_the_package_stays_out_of_its_copy(tmp_path: Path,
                                                                      monkeypatch: pytest.MonkeyPatch) -> None:
    """A probe: with `--out` inside the tradesim package the artifact copied the package with the folder the copy
    was being made in, into itself, until the path was too long (ENAMETOOLONG, the partial copies left behind)."""
    package = tmp_path / "tradesim"
    (package / "jobs").mkdir(parents=True)
    (package / "jobs" / "execution.py").write_text("")
    monkeypatch.setattr(artifact, "PACKAGE", package)
    deps, jar = tmp_path / "deps", tmp_path / "jobs.jar"
    deps.mkdir()
    jar.write_bytes(b"jar")
    target = package / "cdk.out" / "flink-app"
    artifact.stage_artifact(target, jar, deps)
    copied = target / artifact.PYLIB / "tradesim"
    assert (copied / "jobs" / "execution.py").exists()
    assert not (copied / "cdk.out").exists()
