"""Kafka errors in tradesim's terms."""

from __future__ import annotations

from confluent_kafka import KafkaError


class KafkaUnavailable(Exception):
    """The cluster did not answer within the deadline."""


class KafkaDeliveryError(Exception):
    """A produced message was not acknowledged."""


class KafkaOutcomeUnknown(KafkaDeliveryError):
    """The record was sent but not acknowledged in time: it may or may not be on the log."""


#: delivery errors after which the record is certainly not on the log: it never left this process, or the broker
#: refused it for good for what it is (so no earlier attempt of the idempotent producer can have written it). Any
#: other failure — a timeout, a lost connection, a retriable broker error — may follow a write the broker did make.
NOT_WRITTEN = frozenset({
    KafkaError._INVALID_ARG, KafkaError._UNKNOWN_TOPIC, KafkaError._UNKNOWN_PARTITION, KafkaError._PURGE_QUEUE,
    KafkaError.MSG_SIZE_TOO_LARGE, KafkaError.RECORD_LIST_TOO_LARGE, KafkaError.INVALID_RECORD,
    KafkaError.TOPIC_AUTHORIZATION_FAILED,
})
