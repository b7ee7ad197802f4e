"""`trade_orders` retention follows the processing deadline: an accepted order is processed or expired by the
execution job, never deleted unseen while the job is down for less than the deadline."""

from __future__ import annotations

import pytest

from tradesim.settings import KafkaSettings, Settings, TradingSettings
from tradesim.stack.kafka import Kafka, orders_retention


@pytest.mark.parametrize("deadline_s", [5, 3_600, 86_400, 7 * 86_400])
def test_orders_outlive_the_processing_deadline(deadline_s: int) -> None:
    deadline_ms = TradingSettings(processing_deadline_s=deadline_s).processing_deadline_ms
    cfg = orders_retention(deadline_ms)
    # Kafka deletes a segment only once its newest record is older than retention.ms: a record lives at least that
    assert int(cfg["retention.ms"]) > deadline_ms
    assert 0 < int(cfg["segment.ms"]) <= int(cfg["retention.ms"])


def test_the_default_deadline_is_at_least_a_day() -> None:
    assert TradingSettings().processing_deadline_s >= 86_400


def test_trade_orders_topic_gets_the_derived_retention() -> None:
    settings = Settings(trading=TradingSettings(processing_deadline_s=7_200))
    specs = {s.name: s for s in Kafka(settings).topic_specs()}
    assert specs[settings.topics.trade_orders].config == orders_retention(7_200_000)
    week_ms = str(settings.kafka.retention_hours * 3_600_000)
    assert specs[settings.topics.market_data].config["retention.ms"] == week_ms


def test_trade_executed_is_kept_forever_unless_a_retention_is_set() -> None:
    """The read models' source of truth: a rebuild replays it from its first offset."""
    forever = {s.name: s for s in Kafka(Settings()).topic_specs()}
    assert forever[Settings().topics.trade_executed].config["retention.ms"] == "-1"
    bounded = Settings(kafka=KafkaSettings(executed_retention_hours=48))
    specs = {s.name: s for s in Kafka(bounded).topic_specs()}
    assert specs[bounded.topics.trade_executed].config["retention.ms"] == str(48 * 3_600_000)
