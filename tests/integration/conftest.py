"""Integration tests run against the real servers: the session brings the stack up through the same
Supervisor `tradesim up` uses, and stops it at the end if it was not running before."""

from __future__ import annotations

import contextlib
import json
import os
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from tradesim.adapters.redis.client import connect as redis_connect
from tradesim.adapters.toxiproxy.client import Toxiproxy
from tradesim.settings import Settings, load_settings
from tradesim.stack import registry
from tradesim.stack.supervisor import Supervisor

#: The test stack's deliberate faults: stages that raise on every record of these symbols, which no other test
#: uses (tests/integration/execution/test_poison.py, flink/test_bars.py, persistence/test_persistence.py).
POISON = {"bars": "ZZPOISON", "match": "ZZPOISON", "settle": "ZZPOISON.S", "persist": "ZZPOISON.P"}
os.environ.setdefault("TRADESIM_FAULTS__POISON", json.dumps(POISON))
#: no watchdog restarts what a test kills on purpose (`tradesim up` through the CLI leaves one for the logs only);
#: the watchdog tests start their own
os.environ.setdefault("TRADESIM_STACK__WATCHDOG", "false")
#: Toxiproxy between the services and Redis / DynamoDB, for tests/integration/faults (idle proxies otherwise)
os.environ.setdefault("TRADESIM_CHAOS__ENABLED", "true")
#: Jaeger receives every order's spans, for tests/integration/execution/test_tracing.py; built unoptimized (the same
#: setting as the Makefile's background build, whose binary the session's `up` then finds)
os.environ.setdefault("TRADESIM_TRACING__ENABLED", "true")
os.environ.setdefault("TRADESIM_TRACING__OPTIMIZED_BUILD", "false")
#: a price stays fresh for orders this long: tests that restart jobs between a tick and their orders took over the
#: default 30 s on a busy box and met 422 stale_price (the staleness test itself uses an hour-old price)
os.environ.setdefault("TRADESIM_MARKETDATA__STALE_AFTER_S", "600")
#: a body that stops short is answered 408 after this (tests/integration/api/test_limits.py waits it out)
os.environ.setdefault("TRADESIM_API__BODY_TIMEOUT_S", "3")
#: a sink's retries back off to 2 s at most (10 s by default): after a 30 s outage the convergence waits of
#: tests/integration/persistence no longer wait out a 10 s backoff once the server is back
os.environ.setdefault("TRADESIM_PERSISTENCE__BACKOFF_MAX_S", "2")
#: a watchdog's pass every 0.25 s (1 s by default): the watchdog tests wait for a restart or a log trim to begin
os.environ.setdefault("TRADESIM_STACK__WATCHDOG_POLL_S", "0.25")


def forget_idempotency_keys(settings: Settings, user_id: str) -> int:
    """What an expired `api.idempotency_ttl_s`, a failed answer write or a Redis data loss leave: no key record
    of the user in Redis. Returns how many there were."""
    r = redis_connect(settings.redis)
    try:
        keys = list(r.scan_iter(f"idem:{user_id}:*"))
        return int(r.delete(*keys)) if keys else 0
    finally:
        r.close()


#: components that were running before this session: a test that purges data runs only when this is empty
FOUND_RUNNING: set[str] = set()


#: the session's stack start and stop, line by line with the time: pytest shows a fixture's output only when a
#: test fails, and CI's first test spends minutes there (provisioning on an empty home)
STACK_LOG = Path(__file__).resolve().parents[2] / "build" / "test-stack.log"
STACK_LOG.unlink(missing_ok=True)  # each test session starts it afresh


def _progress(component: str, message: str) -> None:
    line = f"[stack] {component}: {message}"
    print(line, flush=True)
    with contextlib.suppress(OSError):
        STACK_LOG.parent.mkdir(exist_ok=True)
        with STACK_LOG.open("a") as log:
            log.write(f"{time.strftime('%Y-%m-%d %H:%M:%S')} {line}\n")


@pytest.fixture(scope="session")
def settings() -> Settings:
    return load_settings()


@pytest.fixture(scope="session")
def stack_components(pytestconfig: pytest.Config) -> list[str]:
    only = pytestconfig.getoption("--stack-only")
    return [n.strip() for n in only.split(",")] if only else list(registry.NAMES)


@pytest.fixture(scope="session")
def supervisor(settings: Settings, stack_components: list[str]) -> Supervisor:
    return Supervisor(settings, registry.build(settings, stack_components), progress=_progress)


@pytest.fixture
def dynamodb_alone(settings: Settings) -> Supervisor:
    """The store's own supervisor, for a test that restarts only it (the rest of the stack rides that out)."""
    return Supervisor(settings, registry.build(settings, ["dynamodb"]))


@pytest.fixture
def tox(settings: Settings) -> Iterator[Toxiproxy]:
    """Toxiproxy, with every proxy enabled and no toxic before and after the test."""
    assert settings.chaos.enabled, "the test stack runs with chaos on (see above)"
    proxy = Toxiproxy(settings.chaos.api_url)
    proxy.reset()
    yield proxy
    proxy.reset()
    proxy.close()


@pytest.fixture(scope="session", autouse=True)
def stack(supervisor: Supervisor) -> Iterator[Supervisor]:
    # Stop at the end only what this session started: a component with a live process (even one restarting or
    # briefly unhealthy) belongs to whoever started it, so a session never takes down a stack it found.
    from tradesim.stack import watchdog

    found = {s.name for s in supervisor.status() if s.state in ("running", "unhealthy", "external")}
    FOUND_RUNNING.update(found)
    dog_found = watchdog.running(supervisor.settings) is not None
    supervisor.up()
    yield supervisor
    if not dog_found:  # one a test's `tradesim up` left (for the logs only, as the tests run) goes first
        watchdog.stop(supervisor.settings)
    ours = [c for c in supervisor.components if c.name not in found]
    if ours:
        Supervisor(supervisor.settings, ours, progress=_progress).down()

