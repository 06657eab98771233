"""A thin typed layer over confluent-kafka: the service's consumer (``Source``), producers
(``Sink``, ``TransactionalSink``) and topic administration. The callback relay's listener and the
dead-letter replay tool also use confluent-kafka's clients directly."""

from consumer.kafka.admin import ensure_topics, output_limit
from consumer.kafka.sink import Sink
from consumer.kafka.source import Source

__all__ = ["Sink", "Source", "ensure_topics", "output_limit"]
