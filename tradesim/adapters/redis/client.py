"""Redis connections configured from settings."""

from __future__ import annotations

import redis

from tradesim.settings import RedisSettings


def connect(settings: RedisSettings, timeout_s: float = 2.0) -> redis.Redis:
    """A client; lazy, so no network I/O happens until the first command."""
    return redis.Redis.from_url(settings.client_url, socket_timeout=timeout_s, socket_connect_timeout=timeout_s,
                                decode_responses=True)
