"""The component model: every server of the stack is one `Component` with the same lifecycle.

provision → configure → start (by the supervisor) → health → initialize … stop (by the supervisor).
A component never spawns or kills processes itself; it only says what to run and how to check it, so the
supervisor (and its fake process layer in unit tests) owns all process handling.
"""

from __future__ import annotations

import os
import urllib.error
import urllib.request
from abc import ABC, abstractmethod
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path

from tradesim.settings import Settings, redacted
from tradesim.stack.tools import Report


@dataclass(frozen=True)
class PortSpec:
    """A port a component listens on and the setting that changes it."""

    host: str
    port: int
    setting: str


class Unhealthy(Exception):
    """A health probe failed; the message says why."""


class Component(ABC):
    """One server of the stack."""

    name: str
    #: other components that must answer before this one starts (the rest start side by side)
    needs: tuple[str, ...] = ()
    #: provisioning is a build of its own (minutes on a cold cache) that touches only its folder and the build
    #: tool's caches: `up` runs it beside the other servers' starts rather than before them
    builds_beside: bool = False

    def __init__(self, settings: Settings) -> None:
        self.settings = settings

    @property
    def dir(self) -> Path:
        """This component's folder in the stack: config, data, log."""
        return self.settings.stack_dir / self.name

    @property
    def log_path(self) -> Path:
        return self.dir / "server.log"

    @property
    def external(self) -> bool:
        """True when settings point at a server we do not run (only health and initialize apply)."""
        return False

    @abstractmethod
    def ports(self) -> list[PortSpec]:
        """Ports the local server binds."""

    @abstractmethod
    def address(self) -> str:
        """Where clients reach it."""

    def shown_address(self) -> str:
        """`address()` as messages and `status` print it: without a URL's password."""
        return redacted(self.address())

    @abstractmethod
    def version(self) -> str:
        """Version of the server that `provision` installs."""

    @abstractmethod
    def provision(self, report: Report) -> None:
        """Obtain artifacts through a package client; idempotent; raises ProvisionError. Called through
        `provision_locked`."""

    def provision_locked(self, report: Report) -> None:
        """`provision` under this component's lock in the artifact cache, which stacks share: two at once (two
        stacks' `up`, `provision` beside an `up`) staged into one folder, and one failed copying its jars."""
        from tradesim.stack.state import LockHeld, file_lock

        path = self.settings.cache_dir / "locks" / f"{self.name}.lock"
        try:
            path.parent.mkdir(parents=True, exist_ok=True)
            path.touch()
        except OSError:  # a cache this process cannot write (a shared read-only one): nothing to take turns on
            self.provision(report)
            return
        try:
            with file_lock(path, wait=False):
                self.provision(report)
                return
        except LockHeld as held:
            if held.args != (str(path),):
                raise
        report(f"waiting for another provisioning of {self.name} to finish (lock {path})")
        with file_lock(path):
            self.provision(report)

    @abstractmethod
    def configure(self) -> None:
        """Write config into `self.dir` (and one-time setup such as storage format); idempotent."""

    @abstractmethod
    def argv(self) -> list[str]:
        """Command line of the server process (foreground, logging to stdout)."""

    def env(self) -> dict[str, str]:
        return dict(os.environ)

    @abstractmethod
    def check_health(self) -> None:
        """One real protocol request with a short timeout; raises Unhealthy."""

    def initialize(self, report: Report) -> None:
        """Create topics / tables / indices; idempotent. Default: nothing."""
        return None

    def before_stop(self, report: Report) -> None:
        """What to do while the server still runs, before `down` stops it (not on a purge). Default: nothing."""
        return None

    def after_restart(self, report: Report) -> None:
        """What to put back after the watchdog started the server again once it died (not on `up`); raises when
        it should be tried again later. Default: nothing."""
        return None

    def start_after(self) -> tuple[str, ...]:
        """The components `up` waits for before starting this one: its `needs`, and whatever settings add."""
        return self.needs

    def not_requested(self) -> str | None:
        """For an on-demand component nobody asked to run (the live market): the hint that starts it, so `up`
        leaves it stopped and `status` shows it stopped without counting it as unhealthy. None: it should run."""
        return None


def shared_ports(comps: Iterable[Component]) -> list[str]:
    """The ports two settings give at once (`api.port` set to Flink's REST port, say): one line each. Only one
    server can bind such a port, so the other fails once it starts, after everything before it started."""
    users: dict[tuple[str, int], list[str]] = {}
    for comp in comps:
        for spec in comp.ports():
            users.setdefault((spec.host, spec.port), []).append(f"{comp.name} ({spec.setting})")
    return [f"port {host}:{port} is given to {' and '.join(names)}; set one of them to another port"
            for (host, port), names in users.items() if len(names) > 1]


def unbindable(spec: PortSpec, exc: OSError) -> tuple[str, str]:
    """A port that cannot be bound for another reason than its use (an address not of this machine, a name that
    does not resolve): why, and the host setting to change (`TRADESIM_KAFKA__PORT` → `TRADESIM_KAFKA__HOST`)."""
    host_setting = spec.setting.rsplit("__", 1)[0] + "__HOST"
    return (f"cannot listen on {spec.host}:{spec.port} ({exc.strerror or exc})",
            f"set {host_setting} to an address of this machine")


def answers(url: str, what: str, timeout_s: float = 2.0, *, any_status: bool = False) -> bytes:
    """GET `url` on our own server (no proxies); raises Unhealthy naming `what` when it does not answer 2xx, or
    with `any_status` when it does not answer HTTP at all (a receiver that takes only POSTs refuses a GET: b"")."""
    opener = urllib.request.build_opener(urllib.request.ProxyHandler({}))
    try:
        with opener.open(url, timeout=timeout_s) as answer:
            return bytes(answer.read())
    except (OSError, ValueError, urllib.error.URLError) as exc:
        if any_status and isinstance(exc, urllib.error.HTTPError):
            exc.close()
            return b""
        raise Unhealthy(f"{what} {redacted(url)} not answering: {exc}") from None


class ServiceComponent(Component):
    """A tradesim Python service run by the stack (`python -m <module>`): nothing to provision, and it sees
    exactly the settings the supervisor was built with (not whatever its working directory has)."""

    module: str
    #: runs with Settings.routed(): False for the stack's own processes, which must see the servers themselves
    routed: bool = True

    def version(self) -> str:
        import tradesim

        return tradesim.__version__

    def provision(self, report: Report) -> None:
        return None  # pure Python, installed with tradesim

    def configure(self) -> None:
        self.dir.mkdir(parents=True, exist_ok=True)

    def argv(self) -> list[str]:
        import sys

        return [sys.executable, "-m", self.module]

    def start_after(self) -> tuple[str, ...]:
        # routed through Toxiproxy when chaos is on: its proxies are the service's way to its servers; with
        # tracing on, Jaeger answers before a service sends its first span
        return (*self.needs, *(("toxiproxy",) if self.routed and self.settings.chaos.enabled else ()),
                *(("jaeger",) if self.settings.tracing.enabled else ()))

    def env(self) -> dict[str, str]:
        from tradesim.settings import child_env

        # a service reaches Redis and DynamoDB through Toxiproxy when chaos is on (Settings.routed)
        settings = self.settings.routed() if self.routed else self.settings
        return {**child_env(settings), "PYTHONUNBUFFERED": "1"}
