"""Which user an API key belongs to, for the account channel: the accounts adapter's key-hash lookup, in a thread.

Good keys are cached for api.auth_cache_s (as the API does), unknown keys never: a key created a moment ago
works at once. The admin key is refused: the channel carries one user's outcomes, and admin reads name a user.
"""

from __future__ import annotations

import asyncio
import secrets
import time

from tradesim.adapters.dynamodb.accounts import AccountStore, hash_key
from tradesim.adapters.dynamodb.client import DynamoDB
from tradesim.adapters.dynamodb.errors import DynamoDBError
from tradesim.ports import Unavailable
from tradesim.services.admin_key import AdminKeyError, load_admin_key
from tradesim.settings import Settings

#: while there is no admin key yet, how often its file is looked for
ADMIN_KEY_REREAD_S = 5.0
#: cached keys beyond this are dropped all at once (a bound, not an eviction policy: a service sees few keys)
MAX_CACHED = 100_000


class Refused(Exception):
    """The key is not a user key; `reason` labels the failure metric."""

    def __init__(self, reason: str) -> None:
        self.reason = reason
        super().__init__(reason)


class KeyChecker:
    def __init__(self, settings: Settings) -> None:
        self.settings = settings
        self.db = DynamoDB(settings.dynamodb)  # the default bounded timeouts: a down store answers in seconds
        self.accounts = AccountStore(self.db)
        self._admin = ""  # read when first needed: the API may write the generated key after this service starts
        self._admin_read_at = -ADMIN_KEY_REREAD_S
        self._cache: dict[str, tuple[str, float]] = {}

    async def user_of(self, api_key: str, *, fresh: bool = False) -> str:
        """The user id the key belongs to. Raises Refused (unknown or admin key), Unavailable (cannot check).

        `fresh`: ask DynamoDB even while the key is cached (and cache the answer): the recheck of open connections,
        which a cache entry would let pass for another round, a rotated key's connection up to twice the cache time."""
        if not self._admin and time.monotonic() - self._admin_read_at >= ADMIN_KEY_REREAD_S:
            self._admin_read_at = time.monotonic()
            try:
                self._admin = load_admin_key(self.settings, create=False) or ""
            except AdminKeyError:
                self._admin = ""  # a key file others may read: the API refuses to start with it anyway
        if self._admin and secrets.compare_digest(api_key.encode(), self._admin.encode()):
            raise Refused("admin_key")
        digest = hash_key(api_key)
        now = time.monotonic()
        hit = None if fresh else self._cache.get(digest)
        if hit is not None and hit[1] > now:
            return hit[0]
        try:
            account = await asyncio.to_thread(self.accounts.by_key_hash, digest)
        except DynamoDBError as exc:  # a setup problem (missing table): the client cannot fix it, but may retry
            raise Unavailable(str(exc)) from None
        if account is None:
            raise Refused("unknown_key")
        ttl = self.settings.api.auth_cache_s
        if ttl > 0:
            if len(self._cache) >= MAX_CACHED:
                self._cache.clear()
            self._cache[digest] = (account.user_id, now + ttl)
        return account.user_id

    def close(self) -> None:
        self.db.close()
