"""The outcome horizon and `trade_orders` retention: a replayable order must always find its recorded outcome."""

from __future__ import annotations

import pytest

from tradesim.settings import Settings, TradingSettings
from tradesim.stack.kafka import RETENTION_CHECK_MS, Kafka, orders_retention


@pytest.mark.parametrize("minutes", [20, 60, 24 * 60])
def test_orders_outlive_neither_the_horizon(minutes: int) -> None:
    horizon_ms = TradingSettings(outcome_horizon_min=minutes).outcome_horizon_ms
    cfg = orders_retention(horizon_ms)
    # Kafka deletes a segment once its newest record is older than retention.ms, checking every interval; the
    # active segment rolls after segment.ms. So a record lives at most retention + segment + one check.
    longest_life_ms = int(cfg["retention.ms"]) + int(cfg["segment.ms"]) + RETENTION_CHECK_MS
    assert longest_life_ms <= horizon_ms


def test_horizon_shorter_than_the_deletion_check_is_refused() -> None:
    with pytest.raises(ValueError, match="outcome_horizon_min"):
        TradingSettings(outcome_horizon_min=5)


def test_trade_orders_topic_gets_the_derived_retention() -> None:
    settings = Settings(trading=TradingSettings(outcome_horizon_min=120))
    specs = {s.name: s for s in Kafka(settings).topic_specs()}
    assert specs[settings.topics.trade_orders].config == orders_retention(120 * 60_000)
    week_ms = str(settings.kafka.retention_hours * 3_600_000)
    assert specs[settings.topics.trade_executed].config["retention.ms"] == week_ms
