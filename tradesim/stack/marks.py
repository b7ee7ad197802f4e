"""Marks in the stack folder for an operation that began changing the stack's data and did not finish: `up`,
`status` and `backup` name them until the operation finishes or `down --purge` empties the stack."""

from __future__ import annotations

import json
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from tradesim.files import replace_text
from tradesim.settings import Settings

UNFINISHED_RESTORE = "restore-unfinished.json"
UNFINISHED_REBUILD = "rebuild-unfinished-{model}.json"


def _write(path: Path, fields: dict[str, Any]) -> None:
    replace_text(path, json.dumps({**fields, "started_at": time.time()}) + "\n")


def _read(path: Path, field: str) -> tuple[str, time.struct_time] | tuple[None, None] | None:
    """(the mark's field, its start) — (None, None) if torn or hand-edited (still a mark); None if there is none."""
    try:
        began = json.loads(path.read_text())
        return str(began[field]), time.localtime(float(began["started_at"]))
    except FileNotFoundError:
        return None
    except (OSError, ValueError, TypeError, KeyError, OverflowError):
        return None, None


def _started(at: time.struct_time | None) -> str:
    return f" (started {time.strftime('%Y-%m-%d %H:%M:%S', at)})" if at else ""


def begin_restore(settings: Settings, folder: Path) -> None:
    _write(settings.stack_dir / UNFINISHED_RESTORE, {"folder": str(folder.resolve())})


def unfinished_restore(settings: Settings) -> str | None:
    """A line saying that a restore began changing this stack and did not finish (None: none did). Such a stack
    holds part of a backup, so its data and the backup's may disagree."""
    if (found := _read(settings.stack_dir / UNFINISHED_RESTORE, "folder")) is None:
        return None
    source, at = found
    return (f"a restore from {source or 'a backup'} did not finish{_started(at)}: the stack holds part of that "
            f"backup; start over with `tradesim down --purge && tradesim up && tradesim restore {source or 'DIR'}`")


def forget_unfinished_restore(settings: Settings) -> None:
    """No part of a backup alone any more: the stack was purged (`down --purge`), or a restore copied it all."""
    (settings.stack_dir / UNFINISHED_RESTORE).unlink(missing_ok=True)


def _rebuild_mark(settings: Settings, model: str) -> Path:
    return settings.stack_dir / UNFINISHED_REBUILD.format(model=model)


def begin_rebuild(settings: Settings, model: str) -> None:
    """A rebuild is switching `model` to its fresh copy: until its catch-up ends, that copy misses the outcomes that
    arrived during the load (the live service wrote them into the retired copy and went on)."""
    _write(_rebuild_mark(settings, model), {"model": model})


def rebuild_marked(settings: Settings, model: str) -> bool:
    return _rebuild_mark(settings, model).exists()


def finish_rebuild(settings: Settings, model: str) -> None:
    _rebuild_mark(settings, model).unlink(missing_ok=True)


def _rebuild_marks(settings: Settings) -> Iterator[tuple[str, time.struct_time | None]]:
    prefix, suffix = UNFINISHED_REBUILD.split("{model}")
    for path in sorted(settings.stack_dir.glob(UNFINISHED_REBUILD.format(model="*"))):
        if (found := _read(path, "model")) is not None:
            yield path.name.removeprefix(prefix).removesuffix(suffix), found[1]


def short_models(settings: Settings) -> list[str]:
    """The read models a rebuild switched and did not catch up (a backup carries them over to its restore)."""
    return [model for model, _ in _rebuild_marks(settings)]


def unfinished_rebuilds(settings: Settings) -> list[str]:
    """A line per read model a rebuild switched and did not catch up (it may miss outcomes until one finishes)."""
    return [f"a rebuild of {model} stopped at or after its switch to a fresh copy{_started(at)}: {model} may miss "
            f"outcomes that arrived during the load; run `tradesim rebuild {model}` again"
            for model, at in _rebuild_marks(settings)]


def forget_unfinished_rebuilds(settings: Settings) -> None:
    for path in settings.stack_dir.glob(UNFINISHED_REBUILD.format(model="*")):
        path.unlink(missing_ok=True)
