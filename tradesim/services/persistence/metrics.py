"""Prometheus metrics of the persistence service, labelled by sink."""

from __future__ import annotations

from prometheus_client import Counter, Gauge, Histogram

WRITTEN = Counter("tradesim_persistence_written_total", "Outcomes written (repeats included)", ["sink"])
BATCHES = Counter("tradesim_persistence_batches_total", "Batches written and committed", ["sink"])
RETRIES = Counter("tradesim_persistence_retries_total", "Failed batch writes, retried after a backoff", ["sink"])
DEAD_LETTERS = Counter("tradesim_persistence_dead_letters_total", "Records sent to dead_letter", ["sink"])
LAG = Gauge("tradesim_persistence_consumer_lag", "Records of trade_executed the sink does not hold yet", ["sink"])
VISIBLE = Histogram(
    "tradesim_persistence_decided_to_written_seconds", "From an outcome's decision to its write in the sink",
    ["sink"], buckets=(0.05, 0.1, 0.25, 0.5, 1, 2, 5, 10, 30, 60))
