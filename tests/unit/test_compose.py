"""The docker runtime and the native runtime must describe the same stack on the same ports."""

from __future__ import annotations

import re

import yaml

from tradesim.settings import Settings
from tradesim.stack import registry
from tradesim.stack.docker import REPO_COMPOSE, compose_env


def _published(service: dict) -> dict[str, int]:  # type: ignore[type-arg]
    """Map env var -> default host port from '127.0.0.1:${VAR:-9092}:9092' entries."""
    found = {}
    for entry in service.get("ports", []):
        m = re.fullmatch(r"127\.0\.0\.1:\$\{(\w+):-(\d+)\}:\d+", entry)
        assert m, f"port {entry!r} must be bound to 127.0.0.1 and come from a TRADESIM_* variable"
        found[m.group(1)] = int(m.group(2))
    return found


def test_compose_has_every_native_component_on_the_same_ports(settings: Settings) -> None:
    compose = yaml.safe_load(REPO_COMPOSE.read_text())
    assert set(compose["services"]) == set(registry.NAMES)
    env = compose_env(settings)
    for comp in registry.build(settings):
        published = _published(compose["services"][comp.name])
        native = {spec.setting: spec.port for spec in comp.ports()}
        for var, default in published.items():
            assert var in native, f"{comp.name}: compose publishes {var}, which the native component lacks"
            assert native[var] == default, f"{comp.name}: {var} defaults differ"
            assert env[var] == str(native[var])
        assert set(published) <= set(native)
