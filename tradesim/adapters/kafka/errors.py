"""Kafka errors in tradesim's terms."""

from __future__ import annotations


class KafkaUnavailable(Exception):
    """The cluster did not answer within the deadline."""


class KafkaDeliveryError(Exception):
    """A produced message was not acknowledged."""


class KafkaOutcomeUnknown(KafkaDeliveryError):
    """The record was sent but not acknowledged in time: it may or may not be on the log."""
