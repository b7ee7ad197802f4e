"""The status bar's stack and job state (`tui/health.py`)."""

from __future__ import annotations

from tradesim.settings import Settings
from tradesim.testing.net import free_port
from tradesim.tui.health import poll


def test_a_docker_stack_is_not_told_as_the_native_one_stopped(settings: Settings) -> None:
    """A probe: with `stack.runtime = "docker"` the status bar showed the native stack's state, every component
    stopped, while the containers served (`tradesim status` refuses to read it for that reason)."""
    docker = settings.model_copy(update={
        "stack": settings.stack.model_copy(update={"runtime": "docker"}),
        "flink": settings.flink.model_copy(update={"rest_url": f"http://127.0.0.1:{free_port()}"})})  # none here
    health = poll(docker)
    assert health.components is None
    assert health.text().startswith("stack: docker (docker compose ps) · ")
