"""The persistence service: `trade_executed` → the read models (OpenSearch, ClickHouse), effectively once."""
