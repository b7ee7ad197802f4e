"""The state file: what the stack started, where, and as which process, so any shell can run status/down."""

from __future__ import annotations

import fcntl
import json
from collections.abc import Iterator
from contextlib import AbstractContextManager, contextmanager
from dataclasses import asdict, dataclass, field
from pathlib import Path

from pydantic import TypeAdapter

from tradesim.files import replace_text
from tradesim.stack.errors import UserError
from tradesim.stack.process import ProcessHandle

STATE_SCHEMA_VERSION = 1
#: the file `up` leaves in the stack folder: `down --purge` deletes only folders that hold it
MARKER = ".tradesim-stack"


@dataclass
class ComponentRecord:
    """One started component as recorded in the state file."""

    pid: int
    start_ticks: int
    started_at: float
    address: str
    version: str
    log: str

    @property
    def handle(self) -> ProcessHandle:
        return ProcessHandle(pid=self.pid, start_ticks=self.start_ticks)


@dataclass
class StackState:
    """Contents of state.json."""

    runtime: str = "native"
    components: dict[str, ComponentRecord] = field(default_factory=dict)


_STATE: TypeAdapter[StackState] = TypeAdapter(StackState)


class StateFile:
    """Reads and atomically rewrites `<stack_dir>/state.json`; `locked()` serialises concurrent `up`/`down`."""

    def __init__(self, stack_dir: Path) -> None:
        self.path = stack_dir / "state.json"
        self._lock_path = stack_dir / ".lock"
        self._marker = stack_dir / MARKER

    def claim(self) -> None:
        """Mark the folder as the stack's (at every `up`): the proof `down` asks for before it writes or deletes.
        Raises UserError for a folder that holds something else and is not the stack's: `up` would write the
        components' files among the user's, and `down --purge` delete folders that bear their names."""
        folder = self._marker.parent
        if folder.is_dir() and not self.owned():
            others = sorted(p.name for p in folder.iterdir() if p != self._lock_path)
            if others:
                raise UserError(f"{folder} holds files `tradesim up` did not make ({', '.join(others[:3])}"
                                f"{', …' if len(others) > 3 else ''}): nothing started; point TRADESIM_HOME at "
                                "an empty or new folder")
        try:
            folder.mkdir(parents=True, exist_ok=True)
            self.mark()
        except OSError as exc:  # a file where the folder should be, a folder it may not write
            raise UserError(f"cannot use {folder} as the stack's folder ({exc.strerror or exc}); point "
                            "TRADESIM_HOME at an empty or new folder") from None

    def marked(self) -> bool:
        return self._marker.is_file()

    def mark(self) -> None:
        self._marker.touch()

    def owned(self) -> bool:
        """Whether tradesim made this folder: its marker, or (a stack started before the marker) a state file of
        tradesim's shape."""
        if self.marked():
            return True
        if not self.path.is_file():  # missing, or a FIFO whose read would block for ever
            return False
        try:
            raw = json.loads(self.path.read_text())
        except (OSError, ValueError):
            return False
        return isinstance(raw, dict) and raw.get("schema_version") == STATE_SCHEMA_VERSION and "components" in raw

    def load(self) -> StackState:
        """The recorded state; empty for a file that is missing, torn or hand-edited into another shape (it must
        not brick the CLI: preflight then names the processes on the ports), or not a regular file (a FIFO's read
        would block for ever)."""
        try:
            if not self.path.is_file():
                return StackState()
            raw = json.loads(self.path.read_text())
            if not isinstance(raw, dict) or raw.get("schema_version") != STATE_SCHEMA_VERSION:
                return StackState()
            return _STATE.validate_python({k: v for k, v in raw.items() if k in ("runtime", "components")})
        except (OSError, ValueError):  # (pydantic's ValidationError is a ValueError)
            return StackState()

    def save(self, state: StackState) -> None:
        payload = {
            "schema_version": STATE_SCHEMA_VERSION,
            "runtime": state.runtime,
            "components": {name: asdict(rec) for name, rec in sorted(state.components.items())},
        }
        replace_text(self.path, json.dumps(payload, indent=2) + "\n")

    def locked(self) -> AbstractContextManager[None]:
        folder = self._lock_path.parent
        if folder.exists() and not folder.is_dir():
            raise UserError(f"{folder} is not a folder, so it cannot be the stack's; point TRADESIM_HOME at an "
                            "empty or new folder")
        return file_lock(self._lock_path)


def claim_stack_dir(stack_dir: Path) -> None:
    """Check and mark the stack's folder as `up` does, before a command writes into it (a job's notes, the live
    market's request), so one run before the first `up` cannot leave files for which `up` refuses the folder.
    Raises UserError for a folder that holds something else. A folder already marked, or owned by its state file,
    costs no lock, so a caller that holds the state lock (`up`, which marks first; `down`, which parks the jobs)
    does not wait on its own lock."""
    state = StateFile(stack_dir)
    if state.marked():
        return
    if state.owned():  # a stack `up` started before the marker existed: `down` holds the lock and writes notes
        state.mark()
        return
    with state.locked():
        state.claim()


class LockHeld(Exception):
    """`file_lock(..., wait=False)` found the lock held by another process."""


@contextmanager
def file_lock(path: Path, *, wait: bool = True) -> Iterator[None]:
    """An exclusive lock other processes respect (flock on `path`, created if missing), for read-modify-write of
    the stack's small files; without `wait`, LockHeld if another holds it. The kernel drops it with its holder."""
    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path, "a") as fh:  # not "w": a link planted where the lock file goes does not empty what it names
        try:
            fcntl.flock(fh, fcntl.LOCK_EX if wait else fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            raise LockHeld(str(path)) from None
        try:
            yield
        finally:
            fcntl.flock(fh, fcntl.LOCK_UN)
