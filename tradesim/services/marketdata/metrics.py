"""Prometheus metrics of the market-data service."""

from __future__ import annotations

from prometheus_client import Counter, Gauge, Histogram

TICKS_IN = Counter("tradesim_marketdata_ticks_in_total", "Records consumed from market_data")
TICKS_APPLIED = Counter("tradesim_marketdata_ticks_applied_total", "Ticks that moved the cached price")
TICKS_STALE = Counter("tradesim_marketdata_ticks_stale_total", "Ticks ignored as older or duplicate")
DEAD_LETTERS = Counter("tradesim_marketdata_dead_letters_total", "Malformed records sent to the dead-letter topic")
DEAD_LETTER_RETRIES = Counter("tradesim_marketdata_dead_letter_retries_total",
                              "Batches whose dead letters Kafka did not acknowledge in time (sent again, batch held)")
REDIS_ERRORS = Counter("tradesim_marketdata_redis_errors_total", "Failed Redis writes (retried)")
LAG = Gauge("tradesim_marketdata_consumer_lag", "Records behind the end of market_data (assigned partitions)")
BAD_UPDATES = Counter("tradesim_marketdata_bad_updates_total",
                      "Cached prices and bars, and messages on their channels, that are not a tick or bar of their "
                      "key (skipped)")
UPDATES_OUT = Counter("tradesim_marketdata_updates_out_total", "Frames sent to WebSocket clients")
QUEUE_DROPS = Counter("tradesim_marketdata_queue_drops_total", "Updates conflated away for slow clients")
CLIENTS = Gauge("tradesim_marketdata_clients", "Connected WebSocket clients")
ACCOUNT_CLIENTS = Gauge("tradesim_marketdata_account_clients", "WebSocket clients following an account")
OUTCOMES_IN = Counter("tradesim_marketdata_outcomes_in_total", "Order outcomes read from trade_executed")
OUTCOMES_PUSHED = Counter("tradesim_marketdata_outcomes_pushed_total",
                          "Order outcomes queued to account clients (one per client)")
OUTCOMES_SKIPPED = Counter("tradesim_marketdata_outcome_records_skipped_total",
                           "Malformed records on trade_executed, skipped")
ACCOUNT_AUTH_FAILURES = Counter("tradesim_marketdata_account_auth_failures_total",
                                "Account subscriptions refused", ["reason"])
ACCOUNT_OVERFLOWS = Counter("tradesim_marketdata_account_overflows_total",
                            "Account clients closed for falling too far behind their outcomes")
BARS_IN = Counter("tradesim_marketdata_bars_in_total", "Records consumed from market_bars")
BARS_APPLIED = Counter("tradesim_marketdata_bars_applied_total", "Bars written to the recent-bars cache")
BARS_LAG = Gauge("tradesim_marketdata_bars_consumer_lag", "Records behind the end of market_bars")
# a bound at 2 s, TradesimOrderOutcomeSlow's threshold: a p99 is interpolated within its bucket, and in (1, 2.5]
# orders all decided in 1.2 s read as a p99 of 2.485 s and fired the alert
ORDER_TO_OUTCOME = Histogram(
    "tradesim_order_outcome_seconds", "Market orders: placed (API clock) to decided (job clock), per outcome read",
    buckets=(0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2, 2.5, 5, 10, 30))
