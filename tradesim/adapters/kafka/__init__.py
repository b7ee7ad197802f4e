"""Kafka adapter on confluent-kafka."""
