"""Upload moderation consumer: Kafka uploads in, one Avro verdict per upload out."""

__version__ = "0.1.0"
