"""Kafka adapter on confluent-kafka."""

#: the logger librdkafka's own lines go to (connection failures and retries, which a caller also sees as an error
#: of its own): a one-shot command quiets it, a service keeps it in its JSON log
LIBRDKAFKA_LOGGER = "tradesim.kafka.librdkafka"
