"""The admin key file: created whole or not at all, private, one key whatever the number of starters."""

from __future__ import annotations

import os
import stat
from concurrent.futures import ProcessPoolExecutor

import pytest

from tradesim.services.admin_key import AdminKeyError, admin_key_path, load_admin_key
from tradesim.settings import Settings


def test_the_key_is_created_private_and_read_back(settings: Settings) -> None:
    assert load_admin_key(settings, create=False) is None
    key = load_admin_key(settings, create=True)
    assert key is not None
    assert key.startswith("tsa_")
    path = admin_key_path(settings)
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    assert stat.S_IMODE(path.parent.stat().st_mode) == 0o700
    assert load_admin_key(settings, create=False) == key
    assert [p.name for p in path.parent.iterdir()] == ["admin.key"]  # no temporary file left behind


def _start(settings: Settings) -> str | None:
    return load_admin_key(settings, create=True)


def test_many_starters_at_once_agree_on_one_whole_key(settings: Settings) -> None:
    """API workers start together: each gets the same, complete key (never an empty or half-written one)."""
    with ProcessPoolExecutor(8) as pool:
        keys = list(pool.map(_start, [settings] * 32))
    assert len(set(keys)) == 1
    assert keys[0] is not None
    assert len(keys[0]) > 20


def test_a_key_file_others_may_read_is_refused_with_the_fix(settings: Settings) -> None:
    load_admin_key(settings, create=True)
    path = admin_key_path(settings)
    os.chmod(path, 0o644)
    with pytest.raises(AdminKeyError, match=rf"mode 644\): run `chmod 600 {path}`"):
        load_admin_key(settings, create=False)


def test_an_empty_key_file_is_refused(settings: Settings) -> None:
    path = admin_key_path(settings)
    path.parent.mkdir(parents=True)
    path.write_text("")
    os.chmod(path, 0o600)
    with pytest.raises(AdminKeyError, match="is empty"):
        load_admin_key(settings, create=True)
