"""One synthesis per environment for the whole module (each takes seconds: jsii runs the CDK on Node.js)."""

from __future__ import annotations

import json
import zipfile
from pathlib import Path
from typing import Any

import pytest
from aws_cdk.assertions import Template

from tradesim.infra.synth import Synthesis, synthesize


class Synthesized:
    def __init__(self, result: Synthesis) -> None:
        self.result = result
        self.template: dict[str, Any] = json.loads(result.template.read_text())
        self.resources: dict[str, dict[str, Any]] = self.template["Resources"]
        #: the same template under the CDK's own assertions (for the checks they state best)
        self.cdk = Template.from_json(self.template)

    def of_type(self, kind: str) -> dict[str, dict[str, Any]]:
        found = {name: r for name, r in self.resources.items() if r["Type"] == kind}
        assert found, f"the template has no {kind}"
        return found

    def properties(self, kind: str) -> list[dict[str, Any]]:
        return [r.get("Properties", {}) for r in self.of_type(kind).values()]


_DONE: dict[str, Synthesized] = {}


def stand_in_jar(folder: Path) -> Path:
    """A jar in place of the jobs jar, which only a provisioned Flink compiles: the templates must not depend on
    what this machine's stack has built (tests/integration/flink/test_managed.py runs the real one)."""
    jar = folder / "tradesim-jobs.jar"
    if not jar.exists():
        with zipfile.ZipFile(jar, "w") as z:
            z.writestr("META-INF/MANIFEST.MF", "Manifest-Version: 1.0\nMain-Class: dev.tradesim.jobs.Managed\n")
    return jar


def stand_in_deps(folder: Path) -> Path:
    """A folder in place of the vendored packages, which come from a provisioned PyFlink venv and PyPI
    (tests/integration/flink/test_managed.py vendors the real ones)."""
    deps = folder / "deps"
    (deps / "example-1.0.dist-info").mkdir(parents=True, exist_ok=True)
    (deps / "example").mkdir(exist_ok=True)
    (deps / "example" / "__init__.py").write_text("")
    return deps


def synthesize_for_test(env: str, outdir: Path) -> Synthesis:
    """Synthesis with stand-ins for the two built inputs: no network, no provisioned stack, no settings read."""
    return synthesize(env, outdir, jobs_jar=stand_in_jar(outdir.parent), deps=stand_in_deps(outdir.parent))


def _synthesize(env: str, factory: pytest.TempPathFactory) -> Synthesized:
    if env not in _DONE:
        _DONE[env] = Synthesized(synthesize_for_test(env, factory.mktemp(f"infra-{env}") / "cdk.out"))
    return _DONE[env]


@pytest.fixture(scope="session", params=["dev", "prod"])
def synthesized(request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory) -> Synthesized:
    return _synthesize(request.param, tmp_path_factory)


@pytest.fixture(scope="session")
def dev(tmp_path_factory: pytest.TempPathFactory) -> Synthesized:
    return _synthesize("dev", tmp_path_factory)


@pytest.fixture(scope="session")
def prod(tmp_path_factory: pytest.TempPathFactory) -> Synthesized:
    return _synthesize("prod", tmp_path_factory)
