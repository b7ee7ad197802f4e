"""Files written whole or not at all. Stdlib only: any layer may use it."""

from __future__ import annotations

import os
import tempfile
from pathlib import Path


def replace_text(path: Path, text: str, mode: int = 0o600) -> None:
    """Write `text` as `path`'s new content: a reader, or a crash or kill mid-write, sees the old file or the new
    one, never a torn one (a torn state or marker file failed every later `up`). The temporary file is this
    call's own (two writers at once shared a fixed name, and one's rename found it gone), beside `path` so the
    rename stays on one file system, and removed when the write fails. Private (0600) unless `mode` says otherwise
    (a backup's manifest is for whoever restores it)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, name = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    try:
        if mode != 0o600:  # mkstemp's own
            os.fchmod(fd, mode)
        with os.fdopen(fd, "w") as f:
            f.write(text)
        os.replace(name, path)
    except BaseException:
        Path(name).unlink(missing_ok=True)
        raise
