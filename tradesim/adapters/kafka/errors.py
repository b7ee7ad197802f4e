"""Kafka errors in tradesim's terms."""

from __future__ import annotations


class KafkaUnavailable(Exception):
    """The cluster did not answer within the deadline."""


class KafkaDeliveryError(Exception):
    """A produced message was not acknowledged."""
