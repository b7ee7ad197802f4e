"""The alias and its concrete indices on the real node: a rebuild loads `<alias>-<n+1>` and switches the alias
atomically while searches keep being served; a pre-alias index named like the alias is taken over sensibly."""

from __future__ import annotations

import threading
from collections.abc import Callable

import pytest

from tradesim.adapters.search.errors import IndexLayoutError
from tradesim.adapters.search.schema import REFRESH_INTERVAL, SCHEMA_VERSION
from tradesim.adapters.search.trades import Rebuild, TradeIndex
from tradesim.domain.trades import TradeQuery, TradeRecord, record_of
from tradesim.ports import Unavailable
from tradesim.settings import Settings
from tradesim.stack.component import Unhealthy
from tradesim.stack.opensearch import OpenSearch
from tradesim.testing.factories import outcomes

pytestmark = pytest.mark.integration

RECORDS = [record_of(o) for o in outcomes(["u1", "u2"], ["AAPL", "MSFT", "TSLA"], 300, seed=7)]


def ids(records: list[TradeRecord]) -> set[str]:
    return {r.order_id for r in records}


def stored(index: TradeIndex) -> set[str]:
    return ids(list(index.records()))


def test_ensure_creates_the_first_index_behind_the_alias_with_the_strict_mapping(fresh: TradeIndex) -> None:
    first = f"{fresh.alias}-1"
    assert fresh.current() == [first]
    assert fresh.indices() == {first: {fresh.alias}}
    mapping = fresh.client.get_mapping(first)[first]["mappings"]
    assert mapping["dynamic"] == "strict"
    assert mapping["_meta"] == {"schema_version": SCHEMA_VERSION}
    assert mapping["properties"]["decided_at"] == {"type": "date", "format": "epoch_millis"}
    assert fresh.ensure() is None


def test_a_rebuild_switches_the_alias_and_keeps_outcomes_written_meanwhile(fresh: TradeIndex) -> None:
    live, late = RECORDS[:200], RECORDS[200:]
    fresh.write(live, refresh=True)
    new = fresh.create_next()
    assert new == f"{fresh.alias}-2"
    assert fresh.indices() == {f"{fresh.alias}-1": {fresh.alias}, new: set()}
    assert fresh.client.get_settings(new)[new]["settings"]["index"]["refresh_interval"] == "-1"

    loader = fresh.on(new)
    loader.write(live[:150])  # the log up to where the rebuild read it
    loader.write(live[100:150])  # a rebuild may read some of it twice
    fresh.write(late, refresh=True)  # meanwhile the persistence service keeps writing through the alias
    assert fresh.count() == len(RECORDS)  # still served by the old index

    switched = fresh.switch(new)
    assert switched.retired == [f"{fresh.alias}-1"]
    assert switched.carried == len(RECORDS) - 150
    assert fresh.current() == [new]
    assert fresh.indices() == {new: {fresh.alias}}  # the old index is deleted
    assert fresh.client.get_settings(new)[new]["settings"]["index"]["refresh_interval"] == REFRESH_INTERVAL
    assert stored(fresh) == ids(RECORDS)
    fresh.write(RECORDS[:10], refresh=True)  # the new index is the write index, and still idempotent
    assert fresh.count() == len(RECORDS)
    assert fresh.create_next() == f"{fresh.alias}-3"  # names are never reused


def test_rebuild_drives_create_next_and_switch(fresh: TradeIndex) -> None:
    fresh.write(RECORDS[:50], refresh=True)
    rebuild = Rebuild(fresh)
    rebuild.fresh().write(RECORDS[:40])  # the log as far as the load read it
    rebuild.switch()
    rebuild.live().write(RECORDS[40:], refresh=True)  # the catch-up, through the alias
    assert rebuild.switched is not None
    assert rebuild.switched.carried == 0  # a rebuild equals the log: its catch-up brings what came meanwhile
    assert fresh.current() == [f"{fresh.alias}-2"]
    assert stored(fresh) == ids(RECORDS)
    rebuild.discard()  # as after a switch that failed once the alias had moved: the live index stays
    assert fresh.current() == [f"{fresh.alias}-2"]
    assert stored(fresh) == ids(RECORDS)
    unswitched = Rebuild(fresh)
    unswitched.fresh().write(RECORDS[:5])
    unswitched.discard()
    assert set(fresh.indices()) == {f"{fresh.alias}-2"}


def test_a_switch_that_fails_after_the_alias_moved_keeps_the_index(fresh: TradeIndex,
                                                                     monkeypatch: pytest.MonkeyPatch) -> None:
    """The discard after a failed switch must not delete what the alias may already point to."""
    fresh.write(RECORDS[:5], refresh=True)
    rebuild = Rebuild(fresh)
    rebuild.fresh().write(RECORDS[:8])

    def times_out(_index: str) -> None:
        raise Unavailable("blocking the old index's writes: no answer in time")

    monkeypatch.setattr(fresh.client, "block_writes", times_out)  # after the alias change
    with pytest.raises(Unavailable):
        rebuild.switch()
    rebuild.discard()
    assert fresh.current() == [rebuild.new]
    assert stored(fresh) == ids(RECORDS[:8])


def test_a_rebuild_deletes_an_index_a_killed_rebuild_left_once_it_is_stale(fresh: TradeIndex) -> None:
    """Before: an index outside the alias stayed for ever (`trades-N`, from a rebuild killed mid-load)."""
    fresh.write(RECORDS[:5], refresh=True)
    live = fresh.current()
    left = fresh.create_next()  # what a killed rebuild leaves: outside the alias, half loaded
    fresh.on(left).write(RECORDS[:3], refresh=True)
    recent = Rebuild(fresh)
    recent.fresh()
    assert left in fresh.indices()  # young: perhaps a rebuild still loading
    recent.discard()
    later = Rebuild(fresh)
    later.STALE_MS = -1  # every index outside the alias counts as stale now
    later.fresh()
    assert later.new is not None
    assert set(fresh.indices()) == {*live, later.new}  # the leftover is gone (its name may be taken again)
    fresh.refresh()
    assert fresh.on(later.new).count() == 0
    assert fresh.current() == live
    later.discard()


def test_searches_are_served_throughout_a_switch(fresh: TradeIndex) -> None:
    fresh.write(RECORDS, refresh=True)
    new = fresh.create_next()
    fresh.on(new).write(RECORDS[:250])
    totals: list[int] = []
    errors: list[BaseException] = []
    stop = threading.Event()

    def search() -> None:
        while not stop.is_set():
            try:
                totals.append(fresh.search(TradeQuery(size=1)).total)
            except Exception as exc:  # collected: the assertion below reports it
                errors.append(exc)

    reader = threading.Thread(target=search)
    reader.start()
    try:
        fresh.switch(new)
        fresh.switch(fresh.create_next(bulk_load=False))  # a second one, from an index loaded only by carry-over
    finally:
        stop.set()
        reader.join()
    assert errors == []
    assert len(totals) > 3
    assert set(totals) == {len(RECORDS)}  # no dip while the alias moved
    assert fresh.current() == [f"{fresh.alias}-3"]
    assert stored(fresh) == ids(RECORDS)


def test_a_switch_without_carry_over_serves_exactly_the_new_index(fresh: TradeIndex) -> None:
    fresh.write(RECORDS, refresh=True)
    new = fresh.create_next()
    fresh.on(new).write(RECORDS[:5])
    assert fresh.switch(new, carry_over=False).carried == 0
    assert stored(fresh) == ids(RECORDS[:5])


def test_switch_refuses_an_index_of_another_alias(fresh: TradeIndex) -> None:
    with pytest.raises(ValueError, match="not a concrete index"):
        fresh.switch("trades-1")


@pytest.fixture
def legacy(new_index: Callable[[], TradeIndex]) -> TradeIndex:
    """A concrete index named like the alias, as tradesim before 0.14 made it."""
    index = new_index()
    assert index.client.create_index(index.alias, {"settings": {"number_of_shards": 1, "number_of_replicas": 0}})
    return index


def test_an_empty_pre_alias_index_is_replaced(legacy: TradeIndex) -> None:
    assert legacy.current() == [legacy.alias]
    assert legacy.ensure() == f"{legacy.alias}-1"
    assert legacy.current() == [f"{legacy.alias}-1"]


def test_a_pre_alias_index_with_documents_is_left_alone_and_named(legacy: TradeIndex) -> None:
    old = {"trade_id": "t01", "symbol": "AAPL", "executed_at": "2024-03-01T14:30:00Z"}
    legacy.client.bulk([{"index": {"_index": legacy.alias, "_id": "t01"}}, old], refresh=True)
    with pytest.raises(IndexLayoutError, match="rebuild search") as info:
        legacy.ensure()
    assert "1 document" in str(info.value)
    assert legacy.current() == [legacy.alias]
    assert legacy.client.count(legacy.alias) == 1

    # a rebuild replaces it: the switch drops it in the same alias change (its documents have the old shape,
    # so there is nothing to carry over)
    new = legacy.create_next()
    assert new == f"{legacy.alias}-1"
    legacy.on(new).write(RECORDS[:20])
    switched = legacy.switch(new)
    assert (switched.retired, switched.carried) == ([legacy.alias], 0)
    assert legacy.current() == [new]
    assert stored(legacy) == ids(RECORDS[:20])
    assert legacy.ensure() is None


def test_up_reports_a_pre_alias_index_with_documents(settings: Settings, legacy: TradeIndex) -> None:
    legacy.client.bulk([{"index": {"_index": legacy.alias, "_id": "t01"}}, {"trade_id": "t01"}], refresh=True)
    component = OpenSearch(settings.model_copy(update={
        "opensearch": settings.opensearch.model_copy(update={"trades_index": legacy.alias})}))
    with pytest.raises(Unhealthy, match=f"{legacy.alias!r} is a concrete index from before"):
        component.initialize(lambda _: None)
    legacy.client.delete_index(legacy.alias)
    reports: list[str] = []
    component.initialize(reports.append)
    assert reports == [f"created index {legacy.alias}-1 behind alias {legacy.alias}"]
    component.initialize(reports.append)
    assert len(reports) == 1


def test_writes_meet_a_blocked_index_as_unavailable(fresh: TradeIndex) -> None:
    """What a writer sees if its request reached the old index as a switch retired it: retry, not refusal."""
    fresh.client.block_writes(f"{fresh.alias}-1")
    with pytest.raises(Unavailable, match="cluster_block_exception"):
        fresh.write(RECORDS[:3])
    fresh.client.put_settings(f"{fresh.alias}-1", {"index": {"blocks": {"write": None}}})
    fresh.write(RECORDS[:3], refresh=True)
    assert stored(fresh) == ids(RECORDS[:3])
