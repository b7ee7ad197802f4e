"""Where the persistence service's sinks and the rebuilds are wired from settings."""

from __future__ import annotations

from collections.abc import Iterable

from tradesim.adapters.clickhouse import trades as analytics
from tradesim.adapters.search import trades as search
from tradesim.ports import Rebuildable, TradeSink
from tradesim.settings import Settings


def open_sinks(settings: Settings) -> list[TradeSink]:
    """Both read models, writing through their live names (the search alias, the `trades` table)."""
    return [search.TradeIndex.from_settings(settings.opensearch),
            analytics.TradeStore.from_settings(settings.clickhouse)]


def rebuildable(settings: Settings, names: Iterable[str]) -> list[Rebuildable]:
    """The rebuilds of the named read models (`search`, `analytics`), in that order."""
    known: dict[str, Rebuildable] = {
        "search": search.Rebuild(search.TradeIndex.from_settings(settings.opensearch)),
        "analytics": analytics.Rebuild(analytics.TradeStore.from_settings(settings.clickhouse)),
    }
    return [known[name] for name in names]
