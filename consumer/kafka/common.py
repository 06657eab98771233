"""Client configuration shared by the source, the sink and the admin client."""

from __future__ import annotations

import logging
from typing import Any

from consumer.settings_sections import KafkaSettings

__all__ = ["base_config", "error_callback"]

log = logging.getLogger("consumer.kafka")


def error_callback(err: Any) -> None:
    """librdkafka's global errors: fatal ones are logged as errors, the rest as warnings."""
    level = logging.ERROR if err.fatal() else logging.WARNING
    log.log(level, "kafka client error: %s", err.str(), extra={"kafka_error": err.name()})


def base_config(settings: KafkaSettings) -> dict[str, Any]:
    return {
        "bootstrap.servers": settings.bootstrap_servers,
        "error_cb": error_callback,
        "logger": logging.getLogger("consumer.librdkafka"),
        # TCP_NODELAY: a request is sent at once, not held back by Nagle until the previous one's
        # bytes are acknowledged (librdkafka leaves Nagle on). Under a steady load verdicts leave
        # nearly one by one (linger.ms 1), so one produced while another is unacknowledged could
        # wait for that round trip
        "socket.nagle.disable": True,
        **settings.client_config,
    }
