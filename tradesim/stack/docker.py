"""The docker runtime: the same stack through `docker compose` for machines that have a Docker engine."""

from __future__ import annotations

import os
import shutil
import subprocess
from pathlib import Path

from tradesim.settings import Settings, settings_to_env
from tradesim.stack.component import Component
from tradesim.stack.errors import StackError, UserError

REPO_COMPOSE = Path(__file__).resolve().parents[2] / "docker" / "compose.yaml"


def compose_file(settings: Settings) -> Path:
    return settings.stack.compose_file or REPO_COMPOSE


def compose_env(settings: Settings) -> dict[str, str]:
    """Settings flow into compose's ${TRADESIM_*} substitutions, so both runtimes use the same ports."""
    return {**os.environ, **settings_to_env(settings)}


class DockerRuntime:
    def __init__(self, settings: Settings, components: list[Component]) -> None:
        self.settings = settings
        self.components = components

    def _compose(self, *args: str) -> None:
        if shutil.which("docker") is None:
            raise StackError("docker runtime: the `docker` command is not installed; use --runtime native")
        argv = ["docker", "compose", "-f", str(compose_file(self.settings)), *args]
        done = subprocess.run(argv, env=compose_env(self.settings), capture_output=True, text=True, check=False)
        if done.returncode != 0:
            tail = "\n".join((done.stdout + done.stderr).strip().splitlines()[-10:])
            raise StackError(f"docker runtime: {' '.join(argv[:3])} {' '.join(args)} failed:\n{tail}")

    def up(self) -> None:
        self._compose("up", "-d", "--wait", *[c.name for c in self.components])

    def down(self, purge: bool = False, everything: bool = True) -> None:
        """`everything`: the whole project (`down`); else only these components' containers are stopped, and a
        purge is refused, since compose removes volumes only for the whole project."""
        if everything:
            self._compose("down", *(["-v"] if purge else []))
        elif purge:
            raise UserError("with the docker runtime, --purge removes every volume of the project: run it without "
                            "--only")
        else:
            self._compose("stop", *[c.name for c in self.components])
