"""`trade_orders` retention follows the processing deadline: an accepted order is processed or expired by the
execution job, never deleted unseen while the job is down for less than the deadline."""

from __future__ import annotations

import pytest

from tradesim.settings import Settings, TradingSettings
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
    assert specs[settings.topics.trade_executed].config["retention.ms"] == week_ms
