"""Redis basics on the real server: key/value and pub/sub."""

from __future__ import annotations

import time
import uuid

import pytest

from tradesim.adapters.redis.client import connect
from tradesim.settings import Settings

pytestmark = pytest.mark.integration


def test_set_get(settings: Settings) -> None:
    r = connect(settings.redis)
    key = f"test:{uuid.uuid4().hex}"
    r.set(key, "101.25")
    assert r.get(key) == "101.25"
    r.delete(key)
    assert r.get(key) is None


def test_publish_subscribe(settings: Settings) -> None:
    r = connect(settings.redis)
    channel = f"test:{uuid.uuid4().hex}"
    sub = r.pubsub()
    sub.subscribe(channel)
    first = sub.get_message(timeout=5)
    assert first is not None
    assert first["type"] == "subscribe"
    payloads = [f"tick-{i}" for i in range(50)]
    for p in payloads:
        assert r.publish(channel, p) == 1  # exactly one subscriber received it
    got: list[str] = []
    deadline = time.monotonic() + 10
    while len(got) < len(payloads) and time.monotonic() < deadline:
        msg = sub.get_message(timeout=1)
        if msg and msg["type"] == "message":
            got.append(msg["data"])
    sub.close()
    assert got == payloads
