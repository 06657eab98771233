"""A thin typed layer over confluent-kafka: the service's consumer (``Source``), producers
(``Sink``, ``TransactionalSink``), topic administration, and the tools' one pass over a topic
(``scan``: dead letter replay, policy backtest). The callback relay's listener also uses
confluent-kafka's clients directly."""

from consumer.kafka.admin import ensure_topics, output_limit
from consumer.kafka.sink import Sink
from consumer.kafka.source import Source

__all__ = ["Sink", "Source", "ensure_topics", "output_limit"]
