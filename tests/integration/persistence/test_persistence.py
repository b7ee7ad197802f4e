"""The persistence service carries `trade_executed` into OpenSearch and ClickHouse effectively once: repeats,
a kill -9 mid-run and a sink outage change nothing in what the read models add up to."""

from __future__ import annotations

import json
import os
import signal
import threading
import uuid

import pytest
from confluent_kafka import TopicPartition

from tests.integration.persistence.conftest import analysed, metric, publish, searched
from tradesim.adapters.clickhouse.trades import TradeStore
from tradesim.adapters.kafka.client import consumer as make_consumer
from tradesim.adapters.search.trades import TradeIndex
from tradesim.domain.events import DeadLetter, decode, encode
from tradesim.domain.trades import TradeQuery, fold, record_of
from tradesim.ports import Unavailable
from tradesim.settings import Settings
from tradesim.stack import registry
from tradesim.stack.supervisor import Supervisor
from tradesim.testing.factories import outcomes, unique_symbol
from tradesim.testing.letters import DeadLetters
from tradesim.testing.waiting import wait_for


def _users(n: int) -> list[str]:
    tag = uuid.uuid4().hex[:10]
    return [f"p-{tag}-{i}" for i in range(n)]


def _component(supervisor: Supervisor, name: str) -> object:
    (status,) = [c for c in supervisor.status() if c.name == name]
    return status


def test_every_outcome_lands_once_in_both_models_across_a_kill_9_mid_run(
        settings: Settings, supervisor: Supervisor, index: TradeIndex, store: TradeStore) -> None:
    users, symbols = _users(4), [unique_symbol("P") for _ in range(3)]
    events = outcomes(users, symbols, 3000, seed=14)
    expected = [record_of(e) for e in events]
    # every tenth outcome is published twice more, as a job replay after a restore would
    stream = [e for i, e in enumerate(events) for _ in range(3 if i % 10 == 0 else 1)]
    # a feed of ~6 s, so the kill lands while batches are being written and committed
    feeder = threading.Thread(target=publish, args=(settings, stream, 600))
    feeder.start()
    wait_for(lambda: len(searched(index, users[:1])) > 0, 60, "the first outcomes to be searchable")
    status = _component(supervisor, "persistence")
    os.kill(status.pid, signal.SIGKILL)  # type: ignore[attr-defined]
    assert len(searched(index, users)) < len(events), "the kill must land mid-run, not after the last batch"
    feeder.join(60)
    assert not feeder.is_alive()
    supervisor.up()  # the stack restarts what died
    # within the dead consumer's short session and the catch-up (a probe: 45 s, the default session, passed
    # before the restarted service got its partitions back, while search and analytics stood still)
    wait_for(lambda: len(searched(index, users)) == len(events), 30, "every outcome searchable")
    wait_for(lambda: len(analysed(store, users)) == len(events), 30, "every outcome in ClickHouse")

    for key in ("user_id", "symbol"):
        want = fold(expected, key)
        assert fold(searched(index, users), key) == want  # type: ignore[arg-type]
        assert fold(analysed(store, users), key) == want  # type: ignore[arg-type]
    assert {r.order_id for r in searched(index, users)} == {r.order_id for r in expected}
    assert sorted(analysed(store, users), key=lambda r: r.order_id) == sorted(expected, key=lambda r: r.order_id)


def test_malformed_records_go_to_dead_letter_with_the_reason_and_the_rest_flows(
        settings: Settings, index: TradeIndex) -> None:
    users = _users(1)
    marker = uuid.uuid4().hex
    bad = [f"not json {marker}".encode(), json.dumps({"type": "order_outcome", "marker": marker}).encode()]
    # well-formed but decided in year 33658: no sink can date it (it once held the ClickHouse sink in a retry loop)
    far = json.loads(encode(outcomes(users, [unique_symbol("P")], 1, seed=99)[0]))
    bad.append(json.dumps(far | {"order_id": f"far-{marker}", "decided_at_ms": 10**15}).encode())
    watcher = make_consumer(settings.kafka, f"test-{marker}")
    _, end = watcher.get_watermark_offsets(TopicPartition(settings.topics.dead_letter, 0), timeout=10)
    watcher.assign([TopicPartition(settings.topics.dead_letter, 0, end)])
    try:
        good = outcomes(users, [unique_symbol("P")], 5, seed=15)
        publish(settings, [bad[0], *good[:3], bad[1], *good[3:], bad[2]])
        letters: list[DeadLetter] = []

        def both_sinks_refused_both() -> bool:
            msg = watcher.poll(0.2)
            if msg is not None and msg.error() is None:
                letter = decode(DeadLetter, msg.value())
                if marker in letter.record:
                    letters.append(letter)
            return len(letters) == 6

        wait_for(both_sinks_refused_both, 60, "a dead letter from each sink for each malformed record")
    finally:
        watcher.close()
    prefix = settings.persistence.group_prefix
    assert sorted(letter.consumer for letter in letters) == sorted([f"{prefix}-search", f"{prefix}-analytics"] * 3)
    assert all(letter.source_topic == settings.topics.trade_executed for letter in letters)
    assert all(letter.reason.startswith("invalid outcome") for letter in letters)
    wait_for(lambda: len(searched(index, users)) == 5, 60, "the valid outcomes around them")


def test_a_sink_down_for_30_s_holds_only_its_own_position_and_converges_when_back(
        settings: Settings, index: TradeIndex, store: TradeStore) -> None:
    users, symbols = _users(2), [unique_symbol("P")]
    events = outcomes(users, symbols, 200, seed=16)
    clickhouse = Supervisor(settings, registry.build(settings, ["clickhouse"]))
    retries_before = metric(settings, "tradesim_persistence_retries_total", "analytics")
    clickhouse.down()
    try:
        publish(settings, events)
        wait_for(lambda: len(searched(index, users)) == len(events), 60, "search to converge while ClickHouse is down")
        wait_for(lambda: metric(settings, "tradesim_persistence_consumer_lag", "analytics") >= len(events), 30,
                 "the analytics lag to show the held outcomes")
        wait_for(lambda: metric(settings, "tradesim_persistence_retries_total", "analytics") > retries_before + 2,
                 30, "the analytics sink to retry")
        outage = threading.Event()
        outage.wait(30)  # the fault itself lasts 30 s (the scenario), nothing to poll for
    finally:
        clickhouse.up()
    wait_for(lambda: len(analysed(store, users)) == len(events), 60, "ClickHouse to converge once it is back")
    assert fold(analysed(store, users), "user_id") == fold([record_of(e) for e in events], "user_id")
    wait_for(lambda: metric(settings, "tradesim_persistence_consumer_lag", "analytics") == 0, 30,
             "the analytics lag back to 0")


def test_outcomes_written_while_the_search_index_is_gone_are_held_until_it_is_back(
        settings: Settings, index: TradeIndex) -> None:
    """A probe: with the index deleted by hand, the search sink took "no such index" as a refused document and
    dead-lettered every outcome (lost from search; `up` made the index again, empty of them), and
    `GET /trades/search` answered 500. Here the alias goes away (the data behind it stays, for later tests)."""
    (behind,) = index.current()
    users = _users(1)
    events = outcomes(users, [unique_symbol("P")], 20, seed=31)
    retries = metric(settings, "tradesim_persistence_retries_total", "search")
    with DeadLetters(settings) as watcher:
        index.client.update_aliases([{"remove": {"index": behind, "alias": index.alias}}])
        try:
            publish(settings, events)
            wait_for(lambda: metric(settings, "tradesim_persistence_retries_total", "search") > retries + 2, 30,
                     "the search sink to hold and retry")
            with pytest.raises(Unavailable, match="is missing"):  # the API's 503, not a 500
                index.search(TradeQuery(user_id=users[0]))
        finally:
            index.client.update_aliases([{"add": {"index": behind, "alias": index.alias, "is_write_index": True}}])
        wait_for(lambda: len(searched(index, users)) == len(events), 60, "search to converge once the index is back")
        assert [letter for e in events for letter in watcher.about(e.order_id)] == []


def _poison_outcomes(settings: Settings, users: list[str], seed: int) -> list:  # type: ignore[type-arg]
    poison = settings.faults.poison.get("persist")
    assert poison, "the test stack runs with faults.poison (tests/integration/conftest.py)"
    return outcomes(users, [poison], 1, seed=seed)


def test_a_record_a_sink_fails_on_goes_to_dead_letter_and_its_batch_lands(
        settings: Settings, index: TradeIndex, store: TradeStore) -> None:
    """`faults.poison["persist"]`: writing that symbol's outcomes raises, as a bug in a sink's encoding would."""
    users = _users(2)
    (bad,) = _poison_outcomes(settings, users, seed=21)
    good = outcomes(users, [unique_symbol("P")], 6, seed=22)
    with DeadLetters(settings) as watcher:
        publish(settings, [*good[:3], bad, *good[3:]])
        letters = watcher.wait(bad.order_id, 2)
    prefix = settings.persistence.group_prefix
    assert sorted(letter.consumer for letter in letters) == [f"{prefix}-analytics", f"{prefix}-search"]
    assert all("failed on this record: InjectedFault" in letter.reason for letter in letters)
    wait_for(lambda: len(searched(index, users)) == 6, 60, "the rest of the batch searchable")
    wait_for(lambda: len(analysed(store, users)) == 6, 60, "the rest of the batch in ClickHouse")


def test_a_poison_record_alone_is_set_aside_once_a_later_record_passes(
        settings: Settings, index: TradeIndex, store: TradeStore) -> None:
    """Alone, the record cannot be told from a broken sink, so the sink holds its position and retries (nothing is
    dropped on a guess); the next record that writes shows the sink is fine, and the poison one is set aside."""
    users = _users(1)
    (bad,) = _poison_outcomes(settings, users, seed=23)
    sinks = ("search", "analytics")
    retries = {sink: metric(settings, "tradesim_persistence_retries_total", sink) for sink in sinks}
    with DeadLetters(settings) as watcher:
        publish(settings, [bad])

        def held() -> bool:  # both sinks retry it, unless other traffic already told it apart
            return all(metric(settings, "tradesim_persistence_retries_total", s) > retries[s] for s in sinks) or \
                len(watcher.about(bad.order_id)) >= 2

        wait_for(held, 30, "the sinks to hold the record", poll_s=0.5)
        publish(settings, outcomes(users, [unique_symbol("P")], 2, seed=24))
        letters = watcher.wait(bad.order_id, 2)
    assert {letter.consumer.rsplit("-", 1)[1] for letter in letters} == {"search", "analytics"}
    wait_for(lambda: len(searched(index, users)) == 2, 60, "the next records searchable")
    wait_for(lambda: len(analysed(store, users)) == 2, 60, "the next records in ClickHouse")
    for sink in sinks:
        wait_for(lambda s=sink: metric(settings, "tradesim_persistence_consumer_lag", s) == 0, 30, f"{sink} lag 0")
