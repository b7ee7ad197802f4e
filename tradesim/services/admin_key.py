"""The admin API key: `api.admin_key` if set, else generated once into `<home>/stack/api/admin.key`.

The API creates the file on first start; the CLI reads the same file (same TRADESIM_HOME), so an operator never
copies the key by hand. The file appears whole or not at all: the key is written to a private temporary file and
hard-linked into place, which fails if another starter (an API worker) linked first — so two starters never
write two keys and no reader ever sees a half-written one. The file must stay private (0600 in a 0700 folder).
"""

from __future__ import annotations

import os
import secrets
import stat
from pathlib import Path

from tradesim.settings import Settings, is_header_safe


class AdminKeyError(ValueError):
    """The admin key file cannot be used as it is; the message says how to fix it."""


def admin_key_path(settings: Settings) -> Path:
    return settings.stack_dir / "api" / "admin.key"


def load_admin_key(settings: Settings, *, create: bool) -> str | None:
    """The admin key; created if missing and `create`, else None when there is none yet. Raises AdminKeyError for
    a file others may read, or an empty one."""
    if settings.api.admin_key is not None and settings.api.admin_key.get_secret_value():
        return settings.api.admin_key.get_secret_value()
    path = admin_key_path(settings)
    key = _read(path)
    if key is not None or not create:
        return key
    path.parent.mkdir(mode=0o700, parents=True, exist_ok=True)
    os.chmod(path.parent, 0o700)
    tmp = path.parent / f".admin.key.{os.getpid()}.{secrets.token_hex(4)}"
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    try:
        with os.fdopen(fd, "w") as f:
            f.write("tsa_" + secrets.token_urlsafe(32) + "\n")
            f.flush()
            os.fsync(f.fileno())
        try:
            os.link(tmp, path)
        except FileExistsError:
            pass  # another starter linked its key first: that one is the key
    finally:
        tmp.unlink(missing_ok=True)
    return _read(path)


def _read(path: Path) -> str | None:
    try:
        mode = path.stat().st_mode
    except FileNotFoundError:
        return None
    except OSError as exc:  # e.g. TRADESIM_HOME names a file
        raise AdminKeyError(f"cannot read the admin key file {path}: {exc.strerror}") from None
    if not stat.S_ISREG(mode):  # a folder, or a FIFO whose read would wait for ever
        raise AdminKeyError(f"the admin key file {path} is not a regular file: delete it and run `tradesim up` to "
                            "make a new key")
    if mode & (stat.S_IRWXG | stat.S_IRWXO):
        raise AdminKeyError(f"the admin key file {path} is open to other users (mode {stat.S_IMODE(mode):o}): "
                            f"run `chmod 600 {path}`")
    try:
        key = path.read_text().strip()
    except (OSError, UnicodeDecodeError) as exc:
        raise AdminKeyError(f"cannot read the admin key file {path}: {exc}") from None
    if not key:
        raise AdminKeyError(f"the admin key file {path} is empty: delete it and run `tradesim up` to make a new key")
    if not is_header_safe(key):  # it travels in an HTTP header
        raise AdminKeyError(f"the admin key in {path} is not printable ASCII without spaces: delete the file and run "
                            "`tradesim up` "
                            "to make a new key")
    return key
