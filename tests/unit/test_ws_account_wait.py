"""An account subscription that comes before the outcome feed is positioned (the service just started) waits for it
on the loop: it holds no executor thread, which the service's other requests need."""

from __future__ import annotations

import asyncio
from concurrent.futures import ThreadPoolExecutor
from typing import Any, cast

import pytest
from websockets.frames import CloseCode

from tradesim.services.marketdata import ws
from tradesim.services.marketdata.ws import Client, MarketDataHub
from tradesim.settings import load_settings


class _Keys:
    """Every key is its user's (`key-N` → `user-N`)."""

    async def user_of(self, api_key: str) -> str:
        return api_key.replace("key", "user")


def _hub() -> MarketDataHub:
    return MarketDataHub(load_settings(), cast(Any, _Keys()))


def _client() -> Client:
    return Client(cast(Any, None), 100)  # the queues alone: the pump is not running


def test_a_burst_of_account_subscriptions_at_start_leaves_the_executor_to_other_requests() -> None:
    """Before, each waited in a thread of the default executor (6 on a 2-core box, one held by the consumer watch)
    for up to FEED_WAIT_S: a few TUIs reconnecting at once held every thread, and what else runs there (the account
    key's lookup in DynamoDB, a host name lookup) waited behind them, for as long as the feed was not running."""
    clients = [_client() for _ in range(4)]

    async def scenario() -> None:
        loop = asyncio.get_running_loop()
        loop.set_default_executor(ThreadPoolExecutor(max_workers=2))  # fewer than the subscriptions, as there
        hub = _hub()
        follows = [asyncio.create_task(hub.follow(c, f"key-{i}")) for i, c in enumerate(clients)]
        try:  # (the subscriptions start waiting for the feed first: tasks start in the order they were made)
            assert await asyncio.wait_for(asyncio.to_thread(lambda: "ran"), 2) == "ran"
        finally:
            hub.feed_ready.set()  # the feed is positioned
        await asyncio.wait_for(asyncio.gather(*follows), 2)

    asyncio.run(scenario())
    assert [c.user_id for c in clients] == [f"user-{i}" for i in range(4)]
    assert [c.account[0] for c in clients] == [f'{{"type": "account", "user_id": "user-{i}"}}' for i in range(4)]


def test_an_account_subscription_the_feed_does_not_get_ready_for_is_closed_unavailable(
        monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(ws, "FEED_WAIT_S", 0.01)
    client = _client()
    asyncio.run(_hub().follow(client, "key-1"))
    assert client.closing == (CloseCode.INTERNAL_ERROR, "unavailable")
    assert client.user_id is None
