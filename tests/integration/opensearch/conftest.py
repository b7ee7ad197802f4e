"""The search read model's tests use aliases of their own (`tst-search-<random>`), never the live `trades`."""

from __future__ import annotations

import uuid
from collections.abc import Callable, Iterator

import pytest

from tradesim.adapters.search.client import SearchClient
from tradesim.adapters.search.trades import TradeIndex
from tradesim.settings import Settings


@pytest.fixture(scope="session")
def new_index(settings: Settings) -> Iterator[Callable[[], TradeIndex]]:
    """Makes read models on aliases of their own (nothing is created yet); all are deleted at the end."""
    made: list[TradeIndex] = []

    def make() -> TradeIndex:
        made.append(TradeIndex(SearchClient(settings.opensearch), f"tst-search-{uuid.uuid4().hex[:10]}"))
        return made[-1]

    yield make
    for index in made:
        index.drop()
        index.close()


@pytest.fixture
def fresh(new_index: Callable[[], TradeIndex]) -> Iterator[TradeIndex]:
    """An empty read model behind an alias of its own, deleted afterwards."""
    index = new_index()
    index.ensure()
    yield index
    index.drop()
