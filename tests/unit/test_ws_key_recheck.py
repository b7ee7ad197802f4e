"""The account channel's recheck of open connections' keys: a rotated key's connection is closed by the first
recheck after the rotation, not one cache time later (the key cache held the old key through that first pass)."""

from __future__ import annotations

import asyncio
from decimal import Decimal
from typing import Any, cast

import pytest
from websockets.frames import CloseCode

from tradesim.adapters.dynamodb.accounts import Account, hash_key
from tradesim.services.marketdata import ws
from tradesim.services.marketdata.keys import KeyChecker
from tradesim.services.marketdata.ws import Client, MarketDataHub
from tradesim.settings import Settings


class _Accounts:
    """The key-hash lookup of the accounts table, in memory: `rotate` gives a user a new key."""

    def __init__(self) -> None:
        self.by_hash: dict[str, Account] = {}

    def add(self, user_id: str, api_key: str) -> None:
        self.by_hash[hash_key(api_key)] = Account(user_id=user_id, api_key_hash=hash_key(api_key),
                                                  starting_cash=Decimal(1000), created_at_ms=0)

    def rotate(self, user_id: str, new_key: str) -> None:
        self.by_hash = {h: a for h, a in self.by_hash.items() if a.user_id != user_id}
        self.add(user_id, new_key)

    def by_key_hash(self, api_key_hash: str) -> Account | None:
        return self.by_hash.get(api_key_hash)


def test_a_rotated_key_is_closed_by_the_first_recheck_while_the_key_cache_still_holds_it(
        settings: Settings, monkeypatch: pytest.MonkeyPatch) -> None:
    """Live: a connection following an account, its key rotated, was closed 41 s later with `api.auth_cache_s` 30
    (up to twice that): the recheck asked the key cache, which the connection's own subscription had filled just
    before the rotation. Here the passes come every 10 ms and the cache keeps keys for an hour, so every pass
    comes while the cache holds the old key, as that first pass did."""
    monkeypatch.setattr(ws, "KEY_RECHECK_MIN_S", 0.0)
    accounts = _Accounts()
    accounts.add("alice", "key-a")
    accounts.add("bob", "key-b")
    checker = KeyChecker(settings.model_copy(update={"api": settings.api.model_copy(update={"auth_cache_s": 3600})}))
    checker.accounts = cast(Any, accounts)
    hub = MarketDataHub(settings.model_copy(update={"api": settings.api.model_copy(update={"auth_cache_s": 0.01})}),
                        checker)
    rotated, kept = Client(cast(Any, None), 100), Client(cast(Any, None), 100)  # the queues alone

    async def scenario() -> None:
        closed = asyncio.Event()
        close_with = rotated.close_with

        def closing(*args: Any) -> None:
            close_with(*args)
            closed.set()

        monkeypatch.setattr(rotated, "close_with", closing)
        hub.feed_ready.set()
        await hub.follow(rotated, "key-a")  # cached now
        await hub.follow(kept, "key-b")
        accounts.rotate("alice", "key-a2")
        recheck = asyncio.create_task(hub.recheck_keys())
        try:
            await asyncio.wait_for(closed.wait(), 2.0)  # ~200 passes
        finally:
            recheck.cancel()

    asyncio.run(scenario())
    assert rotated.closing == (CloseCode.POLICY_VIOLATION, "unauthorized")
    assert "alice" not in hub.by_user
    assert kept.closing is None
    assert kept in hub.by_user["bob"].clients
