"""Flink adapter: the session cluster's REST API and the `flink run` client."""
