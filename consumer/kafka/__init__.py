"""A thin typed layer over confluent-kafka: the only place that imports it."""

from .admin import ensure_topics, output_limit
from .sink import Sink
from .source import Source

__all__ = ["Sink", "Source", "ensure_topics", "output_limit"]
