"""Integration tests run against the real servers: the session brings the stack up through the same
Supervisor `tradesim up` uses, and stops it at the end if it was not running before."""

from __future__ import annotations

import json
import os
import threading
from collections.abc import Iterator
from pathlib import Path

import pytest

from tradesim.settings import Settings, load_settings
from tradesim.stack import registry
from tradesim.stack.component import Component
from tradesim.stack.jaeger import Jaeger
from tradesim.stack.supervisor import Supervisor

#: The test stack's deliberate faults: stages that raise on every record of these symbols, which no other test
#: uses (tests/integration/execution/test_poison.py, flink/test_bars.py, persistence/test_persistence.py).
POISON = {"bars": "ZZPOISON", "match": "ZZPOISON", "settle": "ZZPOISON.S", "persist": "ZZPOISON.P"}
os.environ.setdefault("TRADESIM_FAULTS__POISON", json.dumps(POISON))
#: no watchdog restarts what a test kills on purpose (`tradesim up` through the CLI would leave one); the watchdog
#: tests start their own
os.environ.setdefault("TRADESIM_STACK__WATCHDOG", "false")
#: Toxiproxy between the services and Redis / DynamoDB, for tests/integration/faults (idle proxies otherwise)
os.environ.setdefault("TRADESIM_CHAOS__ENABLED", "true")
#: Jaeger receives every order's spans, for tests/integration/execution/test_tracing.py
os.environ.setdefault("TRADESIM_TRACING__ENABLED", "true")


#: components that were running before this session: a test that purges data runs only when this is empty
FOUND_RUNNING: set[str] = set()


def _progress(component: str, message: str) -> None:
    print(f"[stack] {component}: {message}", flush=True)


@pytest.fixture(scope="session")
def settings() -> Settings:
    return load_settings()


@pytest.fixture(scope="session")
def stack_components(pytestconfig: pytest.Config) -> list[str]:
    only = pytestconfig.getoption("--stack-only") or os.environ.get("TRADESIM_TEST_STACK_ONLY")
    return [n.strip() for n in only.split(",")] if only else list(registry.NAMES)


@pytest.fixture(scope="session")
def supervisor(settings: Settings, stack_components: list[str]) -> Supervisor:
    return Supervisor(settings, registry.build(settings, stack_components), progress=_progress)


#: test folders whose tests need neither spans nor every component up: they run while a first Jaeger build (minutes
#: on a cold Go cache, as in CI) is still going; every other test waits for Jaeger (LateStart)
EARLY = ("api", "clickhouse", "dynamodb")


class LateStart(threading.Thread):
    """Builds Jaeger and starts it once the rest of the stack is up, so that the EARLY tests run during the build.
    The build runs outside the stack's lock (Jaeger's own file lock guards it); only the start takes that lock."""

    def __init__(self, settings: Settings, components: list[Component]) -> None:
        super().__init__(name="late start", daemon=True)
        self.settings, self.components = settings, components
        self.error: BaseException | None = None

    def run(self) -> None:
        try:
            for comp in self.components:
                comp.provision(lambda msg, n=comp.name: _progress(n, msg))
            Supervisor(self.settings, self.components, progress=_progress).up()
        except BaseException as exc:  # noqa: BLE001 - raised again in the test that waits for it
            self.error = exc

    def wait(self) -> None:
        if self.components:
            self.join()
            if self.error is not None:
                raise RuntimeError(f"the late start of {[c.name for c in self.components]} failed") from self.error


@pytest.fixture(scope="session", autouse=True)
def stack(supervisor: Supervisor) -> Iterator[LateStart]:
    # Stop at the end only what this session started: a component with a live process (even one restarting or
    # briefly unhealthy) belongs to whoever started it, so a session never takes down a stack it found.
    found = {s.name for s in supervisor.status() if s.state in ("running", "unhealthy", "external")}
    FOUND_RUNNING.update(found)
    late = [c for c in supervisor.components if isinstance(c, Jaeger) and c.name not in found
            and c.not_requested() is None and not c.external and not c.binary.exists()]
    Supervisor(supervisor.settings, [c for c in supervisor.components if c not in late], supervisor.processes,
               _progress).up()
    starting = LateStart(supervisor.settings, late)
    if late:
        starting.start()
    yield starting
    if late:
        starting.join()  # a late start that failed has failed its tests already
    ours = [c for c in supervisor.components if c.name not in found]
    if ours:
        Supervisor(supervisor.settings, ours, progress=_progress).down()


@pytest.fixture(autouse=True)
def whole_stack(request: pytest.FixtureRequest, stack: LateStart) -> None:
    """Every test but the EARLY folders' waits until the late start is done."""
    folder = Path(str(request.node.path)).relative_to(Path(__file__).parent).parts[0]
    if folder not in EARLY:
        stack.wait()
