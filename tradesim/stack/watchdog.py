"""The watchdog `tradesim up` leaves running: it restarts a component whose process died, with backoff, and gives
up on one that keeps dying (like compose's `restart: unless-stopped` with a restart budget). Either way it keeps
each live server's log under `stack.log_rotate_mb`; with `stack.watchdog` off (or after a failed `up`) it runs for
that alone and restarts nothing.

It only acts on what the state file records as started by us, and a process counts as ours only by pid and start
time (as everywhere in the stack): it never signals anything, it only starts. `tradesim down` stops it first, so
it never races a deliberate stop. Its counts live in `<stack_dir>/watchdog.json` for `tradesim status`.

Run as `python -m tradesim.stack.watchdog [--logs-only]` (by `tradesim up`; logs to `<stack_dir>/watchdog.log`).
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
import signal
import sys
import time
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from tradesim.files import replace_text
from tradesim.settings import Settings, child_env, settings_to_env
from tradesim.stack.process import OsProcessTable, ProcessHandle, ProcessTable
from tradesim.stack.state import file_lock

log = logging.getLogger("tradesim.watchdog")
#: how often the watchdog tries to put back what a restarted component ran (Flink's jobs) before it gives up
PUT_BACK_TRIES = 5
LOGS_ONLY = "--logs-only"


@dataclass
class WatchdogState:
    """Contents of watchdog.json: the watchdog's own process, its restarts and what it gave up on."""

    pid: int | None = None
    start_ticks: int | None = None
    restarts: dict[str, list[float]] = field(default_factory=dict)  # component → wall-clock restart times
    gave_up: dict[str, str] = field(default_factory=dict)  # component → why
    restarting: bool = True  # False: it runs for the logs only (`stack.watchdog` off)
    settings_digest: str | None = None  # of the settings it runs with (a change replaces it at the next `up`)

    @property
    def handle(self) -> ProcessHandle | None:
        return None if self.pid is None or self.start_ticks is None else ProcessHandle(self.pid, self.start_ticks)


def _times(value: Any) -> list[float]:
    """A component's restart times as stored; anything but a list of numbers (a hand edit) counts as none: a string
    among them made `status` and the watchdog's every pass fail on comparing it with the clock."""
    if not isinstance(value, list):
        return []
    return [float(t) for t in value if isinstance(t, int | float) and not isinstance(t, bool)]


class WatchdogFile:
    def __init__(self, stack_dir: Path) -> None:
        self.path = stack_dir / "watchdog.json"
        self.log_path = stack_dir / "watchdog.log"
        self.lock_path = stack_dir / "watchdog.lock"  # start/stop (not the state lock, which a trim waits on)
        # a read-modify-write of the file; not `lock_path`, which `start`/`stop` hold while a watchdog ends its pass
        self.write_lock_path = stack_dir / "watchdog.json.lock"

    def load(self) -> WatchdogState:
        try:
            raw: dict[str, Any] = json.loads(self.path.read_text())
            return WatchdogState(pid=raw.get("pid"), start_ticks=raw.get("start_ticks"),
                                 restarts={k: _times(v) for k, v in raw.get("restarts", {}).items()},
                                 gave_up=dict(raw.get("gave_up", {})),
                                 restarting=bool(raw.get("restarting", True)),
                                 settings_digest=raw.get("settings_digest"))
        except (OSError, ValueError, TypeError, AttributeError):
            return WatchdogState()

    def save(self, state: WatchdogState) -> None:
        replace_text(self.path, json.dumps(asdict(state), indent=2) + "\n")


def running(settings: Settings, processes: ProcessTable | None = None) -> ProcessHandle | None:
    """The watchdog's process if it runs, else None."""
    handle = WatchdogFile(settings.stack_dir).load().handle
    return handle if handle is not None and (processes or OsProcessTable()).is_alive(handle) else None


def _digest(settings: Settings) -> str:
    return hashlib.sha256(json.dumps(sorted(settings_to_env(settings).items())).encode()).hexdigest()[:16]


def start(settings: Settings, processes: ProcessTable | None = None, *, restarting: bool = True) -> ProcessHandle:
    """Start the watchdog unless one of the kind asked runs with these settings (else it replaces it, keeping
    its counts); returns its process. `restarting=False`: one for the logs only."""
    table = processes or OsProcessTable()
    wd = WatchdogFile(settings.stack_dir)
    digest = _digest(settings)
    with file_lock(wd.lock_path):
        found = running(settings, table)
        current = wd.load() if found is not None else WatchdogState()
        if found is not None:
            if (current.restarting, current.settings_digest) == (restarting, digest):
                return found
            table.terminate(found, settings.stack.stop_timeout_s)
        env = {**child_env(settings), "PYTHONUNBUFFERED": "1"}  # the same settings as `up`
        argv = [sys.executable, "-m", "tradesim.stack.watchdog", *([] if restarting else [LOGS_ONLY])]
        # held until its pid is saved: else its first pass could read the file before, and write back after, the
        # pid it replaced (or none), and `down` would not find it to stop it
        with file_lock(wd.write_lock_path):
            handle = table.spawn(argv, env, settings.stack_dir, wd.log_path)
            wd.save(WatchdogState(pid=handle.pid, start_ticks=handle.start_ticks, restarts=current.restarts,
                                  gave_up=current.gave_up, restarting=restarting, settings_digest=digest))
        return handle


def stop(settings: Settings, processes: ProcessTable | None = None) -> bool:
    """Stop the watchdog if it runs (before anything else stops); True if it was running."""
    table = processes or OsProcessTable()
    if running(settings, table) is None:
        return False  # (before the lock, whose file would land in a folder no `up` made)
    with file_lock(WatchdogFile(settings.stack_dir).lock_path):
        found = running(settings, table)
        if found is None:
            return False
        table.terminate(found, settings.stack.stop_timeout_s)
        return True


class Watchdog:
    """One pass per poll: restart each recorded component whose process is gone, within its budget; bound the
    running servers' logs. Without `restarting` only the latter, and without probing anyone's health."""

    def __init__(self, settings: Settings, processes: ProcessTable | None = None, *, restarting: bool = True) -> None:
        from tradesim.stack import registry
        from tradesim.stack.supervisor import Supervisor

        self.settings = settings
        self.restarting = restarting
        self.file = WatchdogFile(settings.stack_dir)
        self.supervisor = Supervisor(settings, registry.build(settings), processes=processes,
                                     progress=lambda name, msg: log.info("%s: %s", name, msg))
        self.next_try: dict[str, float] = {}
        # what a restarted component ran, put back in a thread of its own (Flink's job submissions take a while,
        # and the other components stay watched meanwhile): component → (tries, next try)
        self.put_back: dict[str, tuple[int, float]] = {}
        self._pool = ThreadPoolExecutor(1, thread_name_prefix="put-back")
        self._putting_back: tuple[str, int, Future[None]] | None = None  # component, tries before, the attempt

    def check(self, now: float | None = None) -> list[str]:
        """Restart what died; returns the names restarted."""
        if not self.restarting:
            self._trim_logs()
            return []
        cfg = self.settings.stack
        now = time.time() if now is None else now
        state = self.file.load()
        done: list[str] = []
        rows = self.supervisor.status()
        for row in rows:
            if row.state == "running" and row.healthy and row.name in state.gave_up:
                del state.gave_up[row.name]  # `tradesim up` brought it back: watched again, with a fresh budget
                state.restarts.pop(row.name, None)
            if row.state != "down" or row.name in state.gave_up or now < self.next_try.get(row.name, 0):
                continue
            recent = [t for t in state.restarts.get(row.name, []) if t > now - cfg.watchdog_window_s]
            if len(recent) >= cfg.watchdog_max_restarts:
                state.gave_up[row.name] = (f"died {len(recent) + 1} times in {cfg.watchdog_window_s:g} s; "
                                           f"left down (see {row.log}); `tradesim up` starts it again")
                log.error("%s: giving up: %s", row.name, state.gave_up[row.name])
                continue
            log.warning("%s: process gone (%s): restarting", row.name, row.detail)
            state.restarts[row.name] = [*recent, now]
            self._save(state)  # counted before the attempt: `status` never shows it back without its count
            try:
                attempted = self.supervisor.restart(row.name)
                if attempted:
                    done.append(row.name)
                    self.put_back[row.name] = (0, 0.0)
            except Exception as exc:  # noqa: BLE001 - a failed start is retried after backoff, never fatal here
                log.error("%s: restart failed: %s", row.name, exc)
                attempted = True
            if attempted:  # the backoff runs from the end of the attempt (a start may take its whole deadline)
                self.next_try[row.name] = time.time() + min(2.0 ** len(recent), cfg.watchdog_backoff_max_s)
            else:  # someone (`tradesim up`) got there first: not a restart of ours
                state.restarts[row.name] = recent
        self._save(state)
        self._put_back_next(now)
        self._trim_logs()
        return done

    def _trim_logs(self, live: set[str] | None = None) -> None:
        """Bound each live server's log, healthy or not (`stack.log_rotate_mb`), under the state lock so never while
        a start moves it aside. `live` None: those whose recorded process is alive, asked only if a log is over."""
        from tradesim.stack.supervisor import trim_log

        limit = int(self.settings.stack.log_rotate_mb * 1024 * 1024)
        for comp in self.supervisor.components:
            try:
                if comp.log_path.stat().st_size < limit:
                    continue
                if live is None:
                    live = self.supervisor.alive()
                if comp.name not in live:
                    continue
                with self.supervisor.state_file.locked():
                    if trim_log(comp.log_path, limit):
                        log.info("%s: %s reached %g MB: copied to %s.1 and emptied", comp.name, comp.log_path,
                                 self.settings.stack.log_rotate_mb, comp.log_path.name)
            except FileNotFoundError:
                continue  # no log (yet)
            except OSError as exc:
                log.warning("%s: its log could not be trimmed: %s", comp.name, exc)

    def busy(self) -> bool:
        return self._putting_back is not None and not self._putting_back[2].done()

    def _put_back_next(self, now: float) -> None:
        """One `after_restart` at a time; one that raises is tried again after a backoff, up to PUT_BACK_TRIES. A
        restart while an attempt runs schedules a fresh one (the attempt was for the server before)."""
        if self._putting_back is not None:
            name, tries, future = self._putting_back
            if not future.done():
                return
            self._putting_back = None
            exc = future.exception()
            if exc is not None and tries + 1 < PUT_BACK_TRIES:
                log.warning("%s: putting back what it ran failed, trying again: %s", name, exc)
                self.put_back.setdefault(name, (tries + 1, now + min(2.0 ** (tries + 3), 60.0)))
            elif exc is not None and name not in self.put_back:  # (a newer restart's attempt is queued)
                log.error("%s: putting back what it ran failed %d times, giving up: %s", name, tries + 1, exc)
        due = next((n for n, (_, when) in self.put_back.items() if when <= now), None)
        if due is None:
            return
        tries, _ = self.put_back.pop(due)
        comp = next(c for c in self.supervisor.components if c.name == due)
        self._putting_back = due, tries, self._pool.submit(comp.after_restart,
                                                           lambda msg: log.info("%s: %s", due, msg))

    def _save(self, state: WatchdogState) -> None:
        with file_lock(self.file.write_lock_path):
            fresh = self.file.load()  # keep the pid fields `start` wrote; ours are the counts
            fresh.restarts, fresh.gave_up = state.restarts, state.gave_up
            self.file.save(fresh)


def main() -> None:
    from tradesim.logs import setup
    from tradesim.settings import load_settings

    setup("watchdog", level=logging.WARNING)  # clients' request logs stay out
    logging.getLogger("tradesim").setLevel(logging.INFO)
    settings = load_settings()
    restarting = LOGS_ONLY not in sys.argv[1:]
    stopping = False

    def _stop(signum: int, frame: object) -> None:
        nonlocal stopping
        stopping = True

    signal.signal(signal.SIGTERM, _stop)
    signal.signal(signal.SIGINT, _stop)
    dog = Watchdog(settings, restarting=restarting)
    log.info("watching the stack in %s every %g s%s", settings.stack_dir, settings.stack.watchdog_poll_s,
             "" if restarting else ", for the logs only (it restarts nothing)")
    while not stopping:
        OsProcessTable.reap_exited()  # the servers it restarted are its children
        try:
            dog.check()
        except Exception:  # noqa: BLE001 - the watchdog outlives any one bad pass
            log.exception("watchdog pass failed")
        deadline = time.monotonic() + settings.stack.watchdog_poll_s
        while not stopping and time.monotonic() < deadline:
            time.sleep(0.1)
    if dog.busy():  # `down` stops the watchdog first and waits a bounded time: never hold it up
        log.warning("stopping while putting back what a restarted component ran")
        logging.shutdown()
        os._exit(0)


if __name__ == "__main__":
    main()
