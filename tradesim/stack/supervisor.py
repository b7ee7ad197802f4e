"""Runs the lifecycle of components as native processes and keeps the state file honest."""

from __future__ import annotations

import errno
import os
import shutil
import threading
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, Literal

from tradesim.settings import Settings
from tradesim.stack.component import Component, PortSpec, Unhealthy, shared_ports, unbindable
from tradesim.stack.errors import PortInUseError, StackError, StartError, UserError
from tradesim.stack.process import OsProcessTable, ProcessTable
from tradesim.stack.state import MARKER, ComponentRecord, StateFile

State = Literal["running", "unhealthy", "down", "stopped", "external"]
#: (component name, short phase message); the CLI renders these live
Progress = Callable[[str, str], None]
STATUS_SCHEMA_VERSION = 1
LOG_TAIL_LINES = 12


#: how long a crashed component's port may stay held (by children finishing) before `up` calls it taken
PORT_RELEASE_S = 15.0
#: health polling of starting servers: fast at first (most answer within a second), then every quarter second
HEALTH_POLL_FIRST_S, HEALTH_POLL_S = 0.05, 0.25

def _no_progress(_: str, __: str) -> None:
    return None


class _Builds:
    """The `builds_beside` provisionings of an `up`, one after another in a thread of their own, so the servers
    that do not wait for them boot meanwhile (a cold Jaeger build takes minutes)."""

    def __init__(self, comps: list[Component], progress: Progress) -> None:
        self.pending = {c.name for c in comps}
        self.error: BaseException | None = None
        self.failed = ""  # the component whose build raised `error`
        self.abandoned = False
        self.changed = threading.Condition()
        self.thread = threading.Thread(target=self._run, args=(comps, progress), name="builds", daemon=True)
        if comps:
            self.thread.start()

    def _run(self, comps: list[Component], progress: Progress) -> None:
        for comp in comps:
            if self.abandoned:
                return
            try:
                progress(comp.name, "provisioning")
                comp.provision_locked(lambda msg, n=comp.name: progress(n, msg))  # type: ignore[misc]
            except BaseException as exc:  # noqa: BLE001 - handed to `up`'s thread, which raises it
                with self.changed:
                    self.error, self.failed = exc, comp.name
                    self.changed.notify_all()
                return
            with self.changed:
                self.pending.discard(comp.name)
                self.changed.notify_all()

    def state(self) -> tuple[set[str], tuple[str, BaseException] | None]:
        """One consistent look: the builds still running or waiting, and the failed one with its error."""
        with self.changed:
            return set(self.pending), (self.failed, self.error) if self.error is not None else None

    def abandon(self) -> None:
        """The `up` failed: no further build, and the running one's command killed (it must not outlive `up`)."""
        from tradesim.stack.tools import stop_tools

        self.abandoned = True
        if self.thread.is_alive():
            stop_tools()
            self.thread.join(10)

    def wait(self, timeout_s: float) -> None:
        with self.changed:
            if self.pending and self.error is None:
                self.changed.wait(timeout_s)


def last_lines(path: Path, count: int = LOG_TAIL_LINES, block: int = 64 * 1024) -> list[str]:
    """The file's last `count` whole lines, read backwards a block at a time (before: the last 64 KiB only, so
    `tradesim logs -n 5000` printed a few hundred lines, the first of them cut)."""
    try:
        with open(path, "rb") as fh:
            start = fh.seek(0, 2)
            chunks: list[bytes] = []
            newlines = 0
            while start > 0 and newlines <= count:
                size = min(block, start)
                start -= size
                fh.seek(start)
                chunks.append(fh.read(size))
                newlines += chunks[-1].count(b"\n")
    except OSError:
        return []
    # lines end at "\n" alone, as counted above and as `tail -n` counts (not at a progress bar's "\r" or a form
    # feed, where splitlines() would cut them)
    text = b"".join(reversed(chunks)).decode("utf-8", "replace")
    lines = [line.removesuffix("\r") for line in text.removesuffix("\n").split("\n")] if text else []
    if start > 0:
        lines = lines[1:]  # the block began inside this one
    return lines[-count:]


def rotate_log(path: Path, limit_bytes: int) -> None:
    """Before a server starts: a log at the limit becomes `<name>.1` (replacing the one before), so each start
    appends to a log of bounded size and the previous run's tail is still at hand after a crash."""
    try:
        if path.stat().st_size >= limit_bytes:
            path.replace(path.with_name(path.name + ".1"))
    except FileNotFoundError:
        return


def trim_log(path: Path, limit_bytes: int) -> bool:
    """While a server runs: a log past the limit is copied to `<name>.1` and emptied in place, since the server
    holds it open (`rotate_log` works only before a start). The server appends (O_APPEND), so its next line lands
    at the new start; a line written between the copy and the truncation is lost. On a full disk the log is
    emptied without its copy: the servers' room to write comes first. True if it trimmed."""
    try:
        if path.is_symlink() or path.stat().st_size < limit_bytes:
            return False  # (a server writes its log as a file; a link may lead out of the home)
    except FileNotFoundError:
        return False
    older = path.with_name(path.name + ".1")
    older.unlink(missing_ok=True)  # replaced, never written through: it too could be a link
    try:
        shutil.copyfile(path, older)
    except OSError as exc:
        if exc.errno != errno.ENOSPC:
            raise
        older.unlink(missing_ok=True)
    os.truncate(path, 0)
    return True


@dataclass
class ComponentStatus:
    """One row of `tradesim status`; its JSON form is documented in the README and kept stable."""

    name: str
    state: State
    healthy: bool
    pid: int | None = None
    address: str | None = None
    version: str | None = None
    started_at: str | None = None
    uptime_s: float | None = None
    detail: str | None = None
    log: str | None = None
    last_log_lines: list[str] = field(default_factory=list)
    restarts: int = 0  # by the watchdog within its window (`stack.watchdog_window_s`)

    def to_json(self) -> dict[str, Any]:
        return asdict(self)


class Supervisor:
    """up / down / status over a list of components."""

    def __init__(self, settings: Settings, components: list[Component],
                 processes: ProcessTable | None = None, progress: Progress = _no_progress) -> None:
        self.settings = settings
        self.components = components
        self.processes = processes or OsProcessTable()
        self.progress = progress
        self.state_file = StateFile(settings.stack_dir)

    # ---- status -------------------------------------------------------------------------------------------

    def _health(self, comp: Component) -> str | None:
        try:
            comp.check_health()
        except Unhealthy as exc:
            return str(exc)
        return None

    def probe(self, comp: Component, record: ComponentRecord | None) -> ComponentStatus:
        if comp.external:
            problem = self._health(comp)
            return ComponentStatus(comp.name, "external", problem is None, address=comp.shown_address(),
                                   detail=problem or "external endpoint, not managed by tradesim")
        off = comp.not_requested()
        if off is not None and (record is None or not self.processes.is_alive(record.handle)):
            # stopped on purpose: as it should be, so it does not make the stack unhealthy
            return ComponentStatus(comp.name, "stopped", True, address=comp.shown_address(), log=str(comp.log_path),
                                   detail=off)
        if record is None:
            return ComponentStatus(comp.name, "stopped", False, address=comp.shown_address(), log=str(comp.log_path))
        base = dict(pid=record.pid, address=record.address, version=record.version, log=record.log)
        if not self.processes.is_alive(record.handle):
            if self.processes.pid_exists(record.pid):
                why = f"stale state: pid {record.pid} now belongs to another process"
            else:
                why = f"stale state: process {record.pid} is gone (the server died or was killed)"
            return ComponentStatus(comp.name, "down", False, detail=why,
                                   last_log_lines=last_lines(Path(record.log)), **base)  # type: ignore[arg-type]
        started = datetime.fromtimestamp(record.started_at, UTC).isoformat(timespec="seconds")
        uptime = round(time.time() - record.started_at, 1)
        problem = self._health(comp)
        if problem is None:
            return ComponentStatus(comp.name, "running", True, started_at=started, uptime_s=uptime,
                                   **base)  # type: ignore[arg-type]
        return ComponentStatus(comp.name, "unhealthy", False, started_at=started, uptime_s=uptime, detail=problem,
                               last_log_lines=last_lines(Path(record.log)), **base)  # type: ignore[arg-type]

    def status(self) -> list[ComponentStatus]:
        from tradesim.stack.watchdog import WatchdogFile

        state = self.state_file.load()
        rows = [self.probe(c, state.components.get(c.name)) for c in self.components]
        dog = WatchdogFile(self.settings.stack_dir).load()
        since = time.time() - self.settings.stack.watchdog_window_s  # the watchdog trims its list only at a death
        for row in rows:
            row.restarts = sum(1 for t in dog.restarts.get(row.name, []) if t > since)
            if row.name in dog.gave_up and not row.healthy:
                row.detail = f"watchdog gave up: {dog.gave_up[row.name]}"
        return rows

    def alive(self) -> set[str]:
        """The components whose recorded process is alive, without asking their health (cheap enough per second)."""
        records = self.state_file.load().components
        return {c.name for c in self.components
                if (record := records.get(c.name)) is not None and self.processes.is_alive(record.handle)}

    # ---- up -----------------------------------------------------------------------------------------------

    def up(self) -> list[ComponentStatus]:
        """Start what is not running healthy; leave the rest alone. Raises StackError with a precise cause."""
        with self.state_file.locked():
            self.state_file.claim()
            state = self.state_file.load()
            to_start: list[Component] = []
            parked: set[str] = set()  # on-demand components nobody asked for: left stopped, not initialized
            for comp in self.components:
                status = self.probe(comp, state.components.get(comp.name))
                if status.state in ("running", "external") and status.healthy:
                    self.progress(comp.name, "already running" if status.state == "running" else "external")
                    continue
                if status.state == "stopped" and status.healthy:
                    self.progress(comp.name, status.detail or "not requested")
                    parked.add(comp.name)
                    continue
                if status.state == "external":
                    raise StartError(f"{comp.name}: external endpoint {comp.shown_address()} is not healthy: "
                                     f"{status.detail}")
                if status.state == "unhealthy":
                    # Alive but not answering: give a starting server its deadline before replacing it.
                    record = state.components[comp.name]
                    self.progress(comp.name, f"not answering: waiting up to {self.settings.stack.start_timeout_s:g} "
                                  "s before restarting it")
                    if self._await_health(comp, record):
                        self.progress(comp.name, "already running")
                        continue
                    self.progress(comp.name, "not answering: restarting")
                    self.processes.terminate(record.handle, self.settings.stack.stop_timeout_s)
                    if self.processes.is_alive(record.handle):
                        # (stuck in the kernel): its record is kept, or neither `status` nor `down` would know it,
                        # and the port it holds would read as "in use by another process"
                        raise StartError(f"{comp.name}: pid {record.pid} did not stop (not answering, then SIGTERM "
                                         "and SIGKILL); it stays recorded for `tradesim status` and `tradesim down` "
                                         "(nothing was started)")
                if status.state in ("down", "unhealthy"):
                    if status.state == "down":
                        self.progress(comp.name, "recovering: " + (status.detail or "process gone"))
                    # a process stopped just now (killed, or terminated above) may hold its ports a moment longer
                    # (before: a hung server replaced by `up` failed the port check, and stayed stopped)
                    self._await_ports_released([comp])
                    del state.components[comp.name]
                    self.state_file.save(state)
                to_start.append(comp)

            self._preflight_ports(to_start)
            for comp in to_start:
                if not comp.builds_beside:
                    self.progress(comp.name, "provisioning")
                    comp.provision_locked(lambda msg, n=comp.name: self.progress(n, msg))  # type: ignore[misc]

            builds = _Builds([c for c in to_start if c.builds_beside], self.progress)
            try:
                self._start_together(to_start, state, builds)
            except BaseException:
                builds.abandon()
                raise

            for comp in self.components:
                if comp.name in parked:
                    continue
                self.progress(comp.name, "initializing")
                try:
                    comp.initialize(lambda msg, n=comp.name: self.progress(n, msg))  # type: ignore[misc]
                except Unhealthy as exc:
                    raise StartError(f"{comp.name}: initialization failed: {exc}") from None
                self.progress(comp.name, "ready")
        return self.status()

    def restart(self, name: str) -> bool:
        """Start one component again if its recorded process is gone (the watchdog's step); False if it is not
        down (running, stopped on purpose, never started). Raises StackError."""
        comp = next(c for c in self.components if c.name == name)
        with self.state_file.locked():
            state = self.state_file.load()
            if self.probe(comp, state.components.get(name)).state != "down":
                return False
            self._await_ports_released([comp])
            self._preflight_ports([comp])  # raises while a leftover holds the port: the record stays, it is retried
            old = state.components.pop(name)
            try:
                self._start(comp, state)
            except StackError:
                if name not in state.components:  # not even spawned: keep it down (and retried), not forgotten
                    state.components[name] = old
                    self.state_file.save(state)
                raise
            try:
                comp.initialize(lambda msg: self.progress(name, msg))
            except Unhealthy as exc:
                raise StartError(f"{name}: initialization failed: {exc}") from None
        return True

    def _await_ports_released(self, comps: list[Component], timeout_s: float = PORT_RELEASE_S) -> None:
        """Give a port that a server killed just now still holds a moment to free: the children it forked (a
        Redis snapshot in progress, a worker) close it as they exit."""
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline and any(self._held(p) for c in comps for p in c.ports()):
            time.sleep(0.2)

    def _held(self, spec: PortSpec) -> bool:
        try:
            return self.processes.port_in_use(spec.host, spec.port)
        except OSError:
            # cannot be bound at all (a host setting naming an address not of this machine): nothing to wait for;
            # the preflight of `up` and `restart` names it (`unbindable`), and `down` has done its work
            return False

    def _preflight_ports(self, comps: list[Component]) -> None:
        """Fail before starting anything if a port is taken, naming component, port and setting: UserError when
        only the settings are at fault (two given one port, a host not of this machine), else PortInUseError."""
        problems = shared_ports(comps)
        taken_by_others = False
        for comp in comps:
            for spec in comp.ports():
                try:
                    taken = self.processes.port_in_use(spec.host, spec.port)
                except OSError as exc:
                    why, fix = unbindable(spec, exc)
                    problems.append(f"{comp.name}: {why}; {fix}")
                    continue
                if taken:
                    taken_by_others = True
                    problems.append(f"{comp.name}: port {spec.host}:{spec.port} is already in use by another "
                                    f"process; stop it or set {spec.setting} to a free port")
        if problems:
            error = PortInUseError if taken_by_others else UserError
            raise error("; ".join(problems) + " (nothing was started)")

    def _start_together(self, to_start: list[Component], state: Any, builds: _Builds | None = None, *,
                        note_left_running: bool = True) -> None:
        """Start each component as soon as the ones it `needs` (among these) answer and its build (`builds`) is
        done, and wait for all of them at once: independent servers boot side by side instead of one after
        another. Health is polled fast right after each spawn, then every HEALTH_POLL_S. Raises StackError for
        the first that fails, saying (`note_left_running`) what was left running."""
        builds = builds or _Builds([], self.progress)
        names = {c.name for c in to_start}
        pending, healthy = list(to_start), set[str]()
        waiting: dict[str, tuple[Component, ComponentRecord, float]] = {}
        spawned: list[str] = []
        poll_s = HEALTH_POLL_FIRST_S
        while pending or waiting:
            current = ""
            try:
                building, failed = builds.state()  # one look, so a build ending meanwhile is no false cycle
                if failed is not None:
                    current = failed[0]
                    raise failed[1]
                for comp in [c for c in pending if all(n in healthy or n not in names for n in c.start_after())]:
                    current = comp.name
                    if comp.name in building:
                        continue
                    pending.remove(comp)
                    record = self._spawn(comp, state)
                    spawned.append(comp.name)
                    waiting[comp.name] = (comp, record, time.monotonic() + self.settings.stack.start_timeout_s)
                    poll_s = HEALTH_POLL_FIRST_S  # a server just spawned: look at it often
                if not waiting and not any(c.name in building for c in pending):
                    # a need that nothing here provides: a cycle in `needs`
                    current = ", ".join(c.name for c in pending)
                    raise StartError(f"{current}: `needs` form a cycle")
                for name, (comp, record, deadline) in list(waiting.items()):
                    current = name
                    if self._health_step(comp, record, deadline):
                        del waiting[name]
                        healthy.add(name)
                        self.progress(name, "healthy")
            except StackError as exc:
                self.progress(current, "failed")
                if note_left_running:
                    # what runs now: started in this call, or left alone because it was already running
                    still = [n for n in spawned if n != current] + [
                        c.name for c in self.components if c not in to_start and c.name in state.components]
                    note = (f" (left running: {', '.join(still)}; `tradesim down` stops them)" if still
                            else " (nothing else was started)")
                    exc.args = (f"{exc}{note}",)  # same type and fields (ProvisionError has its own signature)
                raise exc from None
            if waiting:
                time.sleep(poll_s)
                poll_s = min(poll_s * 2, HEALTH_POLL_S)
            elif pending:
                builds.wait(HEALTH_POLL_S)  # nothing starting: only a build is left to wait for

    def _health_step(self, comp: Component, record: ComponentRecord, deadline: float) -> bool:
        """One health probe of a starting server: True when it answers; raises StartError when it exited or
        its time is up."""
        if not self.processes.is_alive(record.handle):
            problem = "the server exited while starting"
        else:
            try:
                comp.check_health()
                return True
            except Unhealthy:
                if time.monotonic() < deadline:
                    return False
            problem = f"not healthy after {self.settings.stack.start_timeout_s:.0f} s"
        tail = "\n".join(last_lines(comp.log_path))
        raise StartError(f"{comp.name}: {problem} (log {comp.log_path}):\n{tail}")

    def _start(self, comp: Component, state: Any) -> None:
        self._start_together([comp], state, note_left_running=False)

    def _spawn(self, comp: Component, state: Any) -> ComponentRecord:
        self.progress(comp.name, "configuring")
        comp.configure()
        self.progress(comp.name, "starting")
        argv = comp.argv()
        rotate_log(comp.log_path, int(self.settings.stack.log_rotate_mb * 1024 * 1024))
        with open(comp.log_path, "ab") as log:
            log.write(f"\n===== tradesim: starting {comp.name} at {datetime.now(UTC).isoformat()} =====\n".encode())
        try:
            handle = self.processes.spawn(argv, comp.env(), comp.dir, comp.log_path)
        except OSError as exc:
            raise StartError(f"{comp.name}: cannot run {argv[0]}: {exc}") from None
        record = ComponentRecord(pid=handle.pid, start_ticks=handle.start_ticks, started_at=time.time(),
                                 address=comp.shown_address(), version=comp.version(), log=str(comp.log_path))
        state.components[comp.name] = record
        self.state_file.save(state)
        self.progress(comp.name, "waiting for health")
        return record

    def _await_health(self, comp: Component, record: ComponentRecord) -> bool:
        """Give a server that is alive but not answering its start deadline: True once it answers, False if it
        exits or the time is up."""
        deadline = time.monotonic() + self.settings.stack.start_timeout_s
        try:
            while not self._health_step(comp, record, deadline):
                time.sleep(HEALTH_POLL_S)
        except StartError:
            return False
        return True

    # ---- down ---------------------------------------------------------------------------------------------

    def down(self, purge: bool = False) -> list[str]:
        """Stop our processes (reverse start order); returns the names stopped. purge also deletes data, only in a
        folder `up` made (a home pointed at the user's own files must not lose them)."""
        stopped: list[str] = []
        if not self.state_file.owned():
            folder = self.settings.stack_dir
            if purge and folder.is_dir() and any(folder.iterdir()):
                raise UserError(f"{self.settings.stack_dir} was not made by `tradesim up` (no {MARKER} in it): "
                                "nothing deleted; check TRADESIM_HOME, or remove the folder by hand")
            return stopped  # nothing of ours runs from here, and nothing is written into it
        with self.state_file.locked():
            state = self.state_file.load()
            for comp in reversed(self.components):
                record = state.components.pop(comp.name, None)
                if record and self.processes.is_alive(record.handle):
                    if not purge:
                        try:
                            comp.before_stop(lambda message, name=comp.name: self.progress(name, message))
                        except Exception as exc:  # noqa: BLE001 - best effort: the stop itself must go on
                            self.progress(comp.name, f"before stopping: {type(exc).__name__}: {exc}")
                    self.progress(comp.name, "stopping")
                    self.processes.terminate(record.handle, self.settings.stack.stop_timeout_s)
                    stopped.append(comp.name)
                self.state_file.save(state)
                if purge:
                    shutil.rmtree(comp.dir, ignore_errors=True)
                if comp.name in stopped or purge:  # a second `down` has nothing to say of what it did not stop
                    self.progress(comp.name, ("stopped and purged" if purge else "stopped") if comp.name in stopped
                                  else "purged")
            # a `down` then `up` (market start with a new choice, a restore) must not find a port still held by
            # what the stopped process forked
            self._await_ports_released([c for c in self.components if c.name in stopped])
        return stopped


def status_document(settings: Settings, runtime: str, rows: list[ComponentStatus]) -> dict[str, Any]:
    """The stable `tradesim status --json` shape (schema_version 1)."""
    from tradesim.stack.marks import unfinished_rebuilds, unfinished_restore

    return {
        "schema_version": STATUS_SCHEMA_VERSION,
        "runtime": runtime,
        "stack_dir": str(settings.stack_dir),
        "healthy": all(r.healthy for r in rows),
        "components": [r.to_json() for r in rows],
        "unfinished_restore": unfinished_restore(settings),
        "unfinished_rebuilds": unfinished_rebuilds(settings),
        "watchdog": watchdog_state(settings, rows),
    }


def watchdog_state(settings: Settings, rows: list[ComponentStatus]) -> str:
    """"running" (one that restarts, whatever the setting says); "off" (`stack.watchdog` false); "idle" (nothing
    runs); or "not running" while components run and nothing restarts what dies, which `status` warns about."""
    from tradesim.stack.process import OsProcessTable
    from tradesim.stack.watchdog import WatchdogFile

    dog = WatchdogFile(settings.stack_dir).load()
    if dog.restarting and dog.handle is not None and OsProcessTable().is_alive(dog.handle):
        return "running"
    if not settings.stack.watchdog:
        return "off"
    return "not running" if any(r.state in ("running", "unhealthy", "down") for r in rows) else "idle"
