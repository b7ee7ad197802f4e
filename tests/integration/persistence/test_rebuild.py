"""`tradesim rebuild`: fresh read models loaded from trade_executed equal the live ones, also when outcomes
keep arriving during the load and the switch."""

from __future__ import annotations

import json
import threading
import uuid
from collections.abc import Callable, Sequence
from functools import partial

import pytest
from typer.testing import CliRunner

import tradesim.services.persistence.rebuild as rebuild_module
from tests.integration.persistence.conftest import analysed, outcome_ids_in_log, publish, searched
from tradesim.adapters.clickhouse.trades import TradeStore
from tradesim.adapters.search.trades import TradeIndex
from tradesim.cli.app import app
from tradesim.domain.trades import TradeRecord, fold, record_of
from tradesim.ports import Rebuildable, TradeSink, Unavailable
from tradesim.services.persistence import sinks
from tradesim.services.persistence.rebuild import rebuild
from tradesim.services.persistence.sinks import rebuildable
from tradesim.settings import Settings
from tradesim.testing.factories import outcomes, unique_symbol
from tradesim.testing.foreign import foreign_server
from tradesim.testing.waiting import wait_for


def test_rebuild_equals_live_while_outcomes_keep_arriving(settings: Settings, index: TradeIndex,
                                                         store: TradeStore) -> None:
    tag = uuid.uuid4().hex[:8]
    users, symbols = [f"r-{tag}-{i}" for i in range(3)], [unique_symbol("R") for _ in range(2)]
    before, during = outcomes(users, symbols, 500, seed=21), outcomes(users, symbols, 300, seed=22)
    publish(settings, before)
    wait_for(lambda: len(searched(index, users)) == len(before), 60, "the first outcomes searchable")
    wait_for(lambda: len(analysed(store, users)) == len(before), 60, "the first outcomes in ClickHouse")
    # a stray row in each live model that the log does not have: a rebuild must drop it (proof it switched)
    stray = [record_of(e) for e in outcomes([f"r-{tag}-stray"], symbols[:1], 1, seed=23)]
    index.write(stray)
    store.write(stray)
    index.refresh()
    assert len(searched(index, [stray[0].user_id])) == len(analysed(store, [stray[0].user_id])) == 1
    live_indices = index.current()
    live_counts = (index.count(), store.count_final())

    feeder = threading.Thread(target=publish, args=(settings, during))
    feeder.start()
    progress: list[tuple[int, int]] = []
    done = [rebuild(settings, model, lambda n, total: progress.append((n, total)))
            for model in rebuildable(settings, ["search", "analytics"])]
    feeder.join(60)

    assert [d.name for d in done] == ["search", "analytics"]
    assert searched(index, [stray[0].user_id]) == analysed(store, [stray[0].user_id]) == []
    assert not set(index.current()) & set(live_indices)
    assert all(d.read >= live_counts[0] for d in done)  # the whole log, not only this test's outcomes
    assert progress
    assert progress[-1][0] == progress[-1][1]
    everything = [record_of(e) for e in before + during]
    wait_for(lambda: len(searched(index, users)) == len(everything), 60, "every outcome in the rebuilt index")
    wait_for(lambda: len(analysed(store, users)) == len(everything), 60, "every outcome in the rebuilt table")
    for key in ("user_id", "symbol"):
        assert fold(searched(index, users), key) == fold(everything, key)  # type: ignore[arg-type]
        assert fold(analysed(store, users), key) == fold(everything, key)  # type: ignore[arg-type]
    # The rebuilt models hold exactly the log, nothing more, nothing less. Outcomes of earlier tests may still be
    # arriving (the stack outlives them), so: every outcome the log held before this check, and nothing it did not
    # hold after it.
    held = outcome_ids_in_log(settings)
    ids: dict[str, Callable[[], list[str]]] = {"search": lambda: [r.order_id for r in index.records()],
                                               "analytics": lambda: [r.order_id for r in store.rows_final()]}
    counts: dict[str, Callable[[], int]] = {"search": index.count, "analytics": store.count_final}
    seen: dict[str, int] = {}
    stored: dict[str, list[str]] = {}
    missing: dict[str, list[str]] = {}

    def has_held(model: str) -> bool:
        seen[model] = counts[model]()
        if seen[model] < len(held):  # cheap first: the ids are read only once the count is there
            return False
        stored[model] = ids[model]()
        missing[model] = sorted(held - set(stored[model]))
        return not missing[model]

    def lacking(model: str) -> str:
        return (f"{model} to hold the log's {len(held)} outcomes; it counted {seen.get(model)}, "
                f"missing e.g. {missing.get(model, [])[:5]}")

    for model in ids:
        wait_for(partial(has_held, model), 60, partial(lacking, model), poll_s=0.5)
    logged = outcome_ids_in_log(settings)
    for model, order_ids in stored.items():
        assert len(order_ids) == len(set(order_ids)), f"{model} holds an order id twice"
        extra = sorted(set(order_ids) - logged)
        assert not extra, f"{model} holds outcomes the log does not: {extra[:5]}"
    assert index.count() >= live_counts[0] - len(stray) + len(during)


class _Stopped(Exception):
    pass


def _stop(_read: int, _total: int) -> None:
    raise _Stopped


def test_a_rebuild_that_stops_mid_load_drops_its_unfinished_copy(settings: Settings, index: TradeIndex,
                                                                store: TradeStore) -> None:
    """Before: the copy stayed (a search index `trades-N` outside the alias, for ever)."""
    publish(settings, outcomes([f"s-{uuid.uuid4().hex[:8]}"], [unique_symbol("S")], 3, seed=5))
    indices, tables, live = set(index.indices()), store.table_names(), index.current()
    for model in rebuildable(settings, ["search", "analytics"]):
        with pytest.raises(_Stopped):
            rebuild(settings, model, _stop)  # stops after its first batch, before the switch
    assert (set(index.indices()), store.table_names(), index.current()) == (indices, tables, live)


def test_a_rebuild_from_a_topic_that_is_not_there_changes_nothing(settings: Settings, index: TradeIndex) -> None:
    live = index.current()
    wrong = settings.model_copy(update={"topics": settings.topics.model_copy(
        update={"trade_executed": f"no-such-topic-{uuid.uuid4().hex[:8]}"})})
    [model] = rebuildable(wrong, ["search"])
    with pytest.raises(Unavailable, match="is not on the Kafka cluster"):
        rebuild(wrong, model)  # before: read as an empty log, and the switch emptied the live model
    assert index.current() == live


@pytest.mark.parametrize(("model", "setting"), [("search", "TRADESIM_OPENSEARCH__URL"),
                                                 ("analytics", "TRADESIM_CLICKHOUSE__URL")])
def test_a_read_model_setting_that_names_another_server_is_one_line(model: str, setting: str,
                                                                     monkeypatch: pytest.MonkeyPatch) -> None:
    with foreign_server(401, b'{"code": "unauthorized",\n "message": "send a key"}', "application/json") as url:
        monkeypatch.setenv(setting, url)
        result = CliRunner().invoke(app, ["rebuild", model])
    assert result.exit_code == 1, result.output  # before: a traceback (SearchRequestError, DatabaseError)
    assert result.exception is None or isinstance(result.exception, SystemExit)
    [line] = [x for x in result.output.splitlines() if x.startswith("error:")]
    assert f"rebuild of {model} refused" in line
    assert "401" in line


class _Failing:
    """A writer through the live name whose server answers "later" `times` times (None: for good)."""

    def __init__(self, real: TradeSink, times: int | None) -> None:
        self.real, self.times, self.name = real, times, real.name

    def write(self, records: Sequence[TradeRecord]) -> None:
        if self.times is None or self.times > 0:
            self.times = None if self.times is None else self.times - 1
            raise Unavailable("a 429 from the node")
        self.real.write(records)


class _Arriving:
    """The search rebuild, with outcomes arriving while it loads (the live service writes them into the copy
    about to retire) and a catch-up whose server fails `times` times."""

    def __init__(self, real: Rebuildable, arrive: Callable[[], None], times: int | None) -> None:
        self.real, self.arrive, self.times, self.name = real, arrive, times, real.name

    def fresh(self) -> TradeSink:
        sink = self.real.fresh()  # after the rebuild read the log's ends: what is published now comes during the load
        self.arrive()
        return sink

    def switch(self) -> None:
        self.real.switch()

    def live(self) -> TradeSink:
        return _Failing(self.real.live(), self.times)

    def discard(self) -> None:
        self.real.discard()


def test_a_catch_up_stopped_after_the_switch_is_named_until_a_rebuild_finishes(
        settings: Settings, index: TradeIndex, monkeypatch: pytest.MonkeyPatch) -> None:
    """Before: the switched copy silently missed what arrived during the load (the live service had written it
    into the retired copy and committed past it), and the CLI said the live copy kept serving."""
    users = [f"c-{uuid.uuid4().hex[:8]}"]
    before, during = outcomes(users, [unique_symbol("C")], 20, seed=31), outcomes(users, [unique_symbol("C")], 7)
    publish(settings, before)
    wait_for(lambda: len(searched(index, users)) == len(before), 60, "the first outcomes searchable")

    def arrive() -> None:
        publish(settings, during)
        wait_for(lambda: len(searched(index, users)) == len(before) + len(during), 60,
                 "the live service wrote the outcomes that arrived during the load")

    real = sinks.rebuildable
    monkeypatch.setattr(sinks, "rebuildable", lambda s, names: [_Arriving(m, arrive, None) for m in real(s, names)])
    monkeypatch.setattr(rebuild_module, "PATIENCE_S", 0.5)
    cli = CliRunner()
    stopped = cli.invoke(app, ["rebuild", "search"])
    assert stopped.exit_code == 1, stopped.output
    [line] = [x for x in stopped.output.splitlines() if x.startswith("error:")]
    assert "search may miss outcomes that arrived during the load, if the switch to the fresh copy happened" in line
    assert len(searched(index, users)) == len(before)  # what the mark warns of
    warned = "warning: a rebuild of search stopped at or after its switch to a fresh copy"
    assert warned in cli.invoke(app, ["status"]).stderr
    assert json.loads(cli.invoke(app, ["status", "--json"]).stdout)["unfinished_rebuilds"]

    monkeypatch.undo()
    done = cli.invoke(app, ["rebuild", "search"])
    assert done.exit_code == 0, done.output
    assert len(searched(index, users)) == len(before) + len(during)
    assert warned not in cli.invoke(app, ["status"]).stderr
    assert json.loads(cli.invoke(app, ["status", "--json"]).stdout)["unfinished_rebuilds"] == []


def test_a_rebuild_rides_out_a_server_that_answers_later_a_few_times(settings: Settings, index: TradeIndex) -> None:
    """Before: one 429 (common right after a bulk load) stopped the rebuild, after its switch too."""
    users = [f"l-{uuid.uuid4().hex[:8]}"]
    before, during = outcomes(users, [unique_symbol("L")], 20, seed=32), outcomes(users, [unique_symbol("L")], 7)
    publish(settings, before)
    wait_for(lambda: len(searched(index, users)) == len(before), 60, "the first outcomes searchable")
    [model] = rebuildable(settings, ["search"])
    done = rebuild(settings, _Arriving(model, lambda: publish(settings, during), 2))
    assert done.name == "search"
    wait_for(lambda: len(searched(index, users)) == len(before) + len(during), 60, "every outcome searchable")
