"""Idempotency-Key records in Redis: an atomic claim (SET NX) holding the request's hash, then the first answer.

States of `idem:{user}:{sha256(key)}`: absent → {"state": "pending", "hash"} (claimed, short TTL so a crashed
claimer frees it) → {"state": "done", "hash", "status", "body"} (kept for the idempotency TTL). A claimer that
fails without an answer to keep releases the claim (only if it still holds it), so the key can be retried. Every
state has a TTL: at the memory cap Redis may evict a record (see docs/design/redis-full.md).
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass
from typing import Any

import redis.asyncio as aredis
from redis.asyncio.client import Pipeline

from tradesim.adapters.redis.client import execute_each
from tradesim.ports import StoreFull

# Delete only if the stored record is still our pending claim (compare-and-delete).
_RELEASE = """
if redis.call('GET', KEYS[1]) == ARGV[1] then return redis.call('DEL', KEYS[1]) end
return 0
"""


@dataclass(frozen=True)
class Record:
    state: str  # "pending" | "done"
    request_hash: str
    status: int = 0
    body: Any = None


def record_key(user_id: str, idempotency_key: str) -> str:
    return f"idem:{user_id}:{hashlib.sha256(idempotency_key.encode()).hexdigest()}"


def _decode(raw: str | None) -> Record | None:
    if raw is None:
        return None
    doc = json.loads(raw)
    return Record(state=doc["state"], request_hash=doc["hash"], status=int(doc.get("status", 0)),
                  body=doc.get("body"))


class IdempotencyStore:
    def __init__(self, client: aredis.Redis, *, pending_ttl_s: int = 60, done_ttl_s: int = 86_400) -> None:
        self._r = client
        self._pending_ttl_ms = pending_ttl_s * 1000
        self._done_ttl_s = done_ttl_s
        self._release = client.register_script(_RELEASE)

    @staticmethod
    def _pending(request_hash: str) -> str:
        return json.dumps({"state": "pending", "hash": request_hash})

    async def claim(self, key: str, request_hash: str) -> Record | None:
        """Claim the key; None if we hold it now, else the record someone else holds. Raises StoreFull (no room for
        the claim, and no record for the key), Unavailable."""
        pipe = self._r.pipeline(transaction=False)
        self.queue_claim(pipe, key, request_hash)
        won, raw = await execute_each(pipe)
        return self.claimed(won, raw, request_hash)

    def queue_claim(self, pipe: Pipeline, key: str, request_hash: str) -> None:
        """claim() as two commands on the caller's pipeline; pass their answers to claimed()."""
        pipe.set(key, self._pending(request_hash), nx=True, px=self._pending_ttl_ms)
        pipe.get(key)

    @staticmethod
    def claimed(won: object, raw: str | None, request_hash: str) -> Record | None:
        """`won`: SET NX's answer, or the StoreFull in its place (`execute_each`). Raises that StoreFull when no
        record is there either: nobody holds the key, and Redis has no room for our claim."""
        if isinstance(won, StoreFull):
            record = _decode(raw)
            if record is None:
                raise won
            return record  # refused for memory, but someone holds the key: its record answers as usual
        if won:
            return None
        record = _decode(raw)
        # the holder released it between SET and GET: report it as pending; the caller polls and claims again
        return record or Record(state="pending", request_hash=request_hash)

    async def get(self, key: str) -> Record | None:
        return _decode(await self._r.get(key))

    def finish_on(self, pipe: Pipeline, key: str, request_hash: str, body: Any, status: int = 202) -> None:
        """Keep the first answer for the TTL (queued on the caller's pipeline, sent with its other writes)."""
        doc = {"state": "done", "hash": request_hash, "status": status, "body": body}
        pipe.set(key, json.dumps(doc), ex=self._done_ttl_s)

    async def release(self, key: str, request_hash: str) -> None:
        """Give the claim up (no answer to keep), unless it is no longer ours."""
        await self._release(keys=[key], args=[self._pending(request_hash)])
