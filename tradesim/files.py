"""Files written whole or not at all. Stdlib only: any layer may use it."""

from __future__ import annotations

import os
import tempfile
from pathlib import Path


def replace_text(path: Path, text: str) -> None:
    """Write `text` as `path`'s new content: a reader, or a crash or kill mid-write, sees the old file or the new
    one, never a torn one (a torn state or marker file failed every later `up`). The temporary file is this
    call's own (two writers at once shared a fixed name, and one's rename found it gone), private (0600), beside
    `path` so the rename stays on one file system, and removed when the write fails."""
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, name = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    try:
        with os.fdopen(fd, "w") as f:
            f.write(text)
        os.replace(name, path)
    except BaseException:
        Path(name).unlink(missing_ok=True)
        raise
