"""Redis connections configured from settings."""

from __future__ import annotations

import hashlib
from collections.abc import Awaitable, Sequence
from typing import Any, TypeVar

import redis
from redis.asyncio.client import Pipeline
from redis.exceptions import NoScriptError, OutOfMemoryError

from tradesim.ports import StoreFull, Unavailable
from tradesim.settings import RedisSettings

T = TypeVar("T")

#: what Redis drops at its memory cap (the local server's config, the cloud's parameter group): only keys with a
#: TTL, least recently used first. Those are rate-limit counters, Idempotency-Key records (the order's claim in
#: `Orders` guards the key without one) and holdings views (read again from DynamoDB); prices and bars carry none,
#: so they stay. Under noeviction a cap filled by idempotency answers refused every order's rate-limit count
#: (docs/design/redis-full.md).
MAXMEMORY_POLICY = "volatile-lru"


def connect(settings: RedisSettings, timeout_s: float = 2.0) -> redis.Redis:
    """A client; lazy, so no network I/O happens until the first command."""
    return redis.Redis.from_url(settings.client_url, socket_timeout=timeout_s, socket_connect_timeout=timeout_s,
                                decode_responses=True)


ScriptCall = tuple[Sequence[str], Sequence[bytes | str | int]]
"""One call of a Lua script: its keys and its arguments."""


class BatchScript:
    """A Lua script called many times in one round trip (synchronous client).

    redis-py's `Script` on a pipeline asks `SCRIPT EXISTS` before every execute, a second round trip on every
    batch; this sends `EVALSHA` at once and loads the script only when Redis answers `NOSCRIPT` (a restarted or
    flushed Redis), then sends the batch again: a call refused for `NOSCRIPT` ran nothing."""

    def __init__(self, client: redis.Redis, source: str) -> None:
        self._r = client
        self._source = source
        self.sha = hashlib.sha1(source.encode()).hexdigest()  # noqa: S324 - Redis names scripts by SHA-1

    def run(self, calls: Sequence[ScriptCall]) -> list[Any]:
        """Every call in order, in one round trip (two when Redis must load the script first)."""
        if not calls:
            return []
        try:
            return self._send(calls)
        except NoScriptError:
            self._r.script_load(self._source)
            return self._send(calls)

    def queue(self, pipe: redis.client.Pipeline, calls: Sequence[ScriptCall]) -> None:
        """Add the calls to the caller's pipeline (a transaction makes them atomic with its other commands), after
        loading the script: a NOSCRIPT inside it could not be sent again alone."""
        self._r.script_load(self._source)
        self._add(pipe, calls)

    def _send(self, calls: Sequence[ScriptCall]) -> list[Any]:
        pipe = self._r.pipeline(transaction=False)
        self._add(pipe, calls)
        return pipe.execute()

    def _add(self, pipe: redis.client.Pipeline, calls: Sequence[ScriptCall]) -> None:
        for keys, args in calls:
            pipe.evalsha(self.sha, len(keys), *keys, *args)  # type: ignore[arg-type]  # typed as str only


async def execute(pipe: Pipeline) -> list[Any]:
    """Send a pipeline the caller queued; a Redis failure becomes Unavailable (StoreFull: a write refused for
    memory)."""
    return await unavailable_on_error(pipe.execute())


async def execute_each(pipe: Pipeline) -> list[Any]:
    """Send a pipeline the caller queued and answer each command: one Redis refused for memory (at `maxmemory`,
    nothing left to evict) answers a StoreFull in its place, and the others still ran. Any other failure raises
    Unavailable."""
    answers: list[Any] = await unavailable_on_error(pipe.execute(raise_on_error=False))
    for answer in answers:
        if isinstance(answer, redis.RedisError) and not isinstance(answer, OutOfMemoryError):
            raise Unavailable(f"redis: {answer}")
    return [StoreFull(f"redis: {a}") if isinstance(a, OutOfMemoryError) else a for a in answers]


async def unavailable_on_error(call: Awaitable[T]) -> T:
    """Await a Redis call; a Redis failure becomes Unavailable (the API answers 503, the caller may go on), a
    write Redis refused for memory StoreFull."""
    try:
        return await call
    except OutOfMemoryError as exc:
        raise StoreFull(f"redis: {exc}") from None
    except redis.RedisError as exc:
        raise Unavailable(f"redis: {exc}") from None
