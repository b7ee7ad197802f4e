"""Market-data service: Kafka `market_data` → Redis latest-price cache + pub/sub → WebSocket clients."""
