"""The live market: a scenario fed to Kafka `market_data` continuously, looping without a price jump."""
