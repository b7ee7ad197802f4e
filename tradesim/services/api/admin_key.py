"""The admin API key: `api.admin_key` if set, else generated once into `<home>/stack/api/admin.key` (0600).

The API creates the file on first start; the CLI reads the same file (same TRADESIM_HOME), so an operator never
copies the key by hand. Creation is O_EXCL, so two starters cannot write two different keys.
"""

from __future__ import annotations

import os
import secrets
from pathlib import Path

from tradesim.settings import Settings


def admin_key_path(settings: Settings) -> Path:
    return settings.stack_dir / "api" / "admin.key"


def load_admin_key(settings: Settings, *, create: bool) -> str | None:
    """The admin key; created if missing and `create`, else None when there is none yet."""
    if settings.api.admin_key is not None and settings.api.admin_key.get_secret_value():
        return settings.api.admin_key.get_secret_value()
    path = admin_key_path(settings)
    if path.exists():
        return path.read_text().strip()
    if not create:
        return None
    path.parent.mkdir(parents=True, exist_ok=True)
    key = "tsa_" + secrets.token_urlsafe(32)
    try:
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    except FileExistsError:
        return path.read_text().strip()
    with os.fdopen(fd, "w") as f:
        f.write(key + "\n")
    return key
