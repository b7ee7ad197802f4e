"""Prometheus metrics of the live market feed (its /metrics port is also its health check)."""

from __future__ import annotations

from prometheus_client import Counter, Gauge

PUBLISHED = Counter("tradesim_market_ticks_published_total", "Ticks Kafka acknowledged")
FAILED = Counter("tradesim_market_ticks_failed_total", "Ticks Kafka did not take (delivery failed)")
LOOPS = Counter("tradesim_market_loops_completed_total", "Passes of the scenario completed")
LAST_EVENT_TIME = Gauge("tradesim_market_last_event_time_seconds", "Event time of the last tick sent (epoch s)")
RUN_ID = Gauge("tradesim_market_run_id", "Run id stamped on the ticks (epoch ms of the feed's start)")
FINISHED = Gauge("tradesim_market_finished", "1 once a non-looping market has played its scenario to the end")
