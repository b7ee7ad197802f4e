"""Ingestion: a scenario's ticks onto Kafka `market_data`, keyed by symbol."""
