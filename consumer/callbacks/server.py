"""The callback server: the receiver over HTTP and the relay listener, started together."""

from __future__ import annotations

import asyncio
import logging
import secrets
from collections.abc import Awaitable, Callable

from aiohttp import web

from consumer.callbacks.bodies import MAX_CALLBACK_BYTES
from consumer.callbacks.receiver import AsyncTasks, CallbackReceiver, Correlator
from consumer.callbacks.relay import RelayListener, kafka_relay
from consumer.config import Settings
from consumer.errors import BrokerError
from consumer.kafka.sink import Sink
from consumer.transports.serving import KEEPALIVE_S, local_url

__all__ = ["CallbackServer"]

log = logging.getLogger("consumer.callbacks")
Handler = Callable[[web.Request], Awaitable[web.Response]]


class CallbackServer:
    """The receiver (``POST /callbacks/<token>``, ``/metrics``) and the relay listener, a part the
    service starts when async tasks are used. Intake starts only once the relay listens, so no
    callback can slip past. Under ``--workers``, worker 0 owns the configured port; the others listen
    on any free one and advertise worker 0's, since a callback reaching any process reaches all."""

    def __init__(
        self, settings: Settings, relay_sink: Sink, correlator: Correlator, worker: int, metrics: Handler
    ) -> None:
        """``worker``: this process's index under ``--workers``; ``metrics``: what ``/metrics`` answers."""
        self._settings = settings
        self._sink = relay_sink
        self.correlator = correlator
        self._worker = worker
        self._metrics = metrics
        self._web: web.AppRunner | None = None
        self._relay: RelayListener | None = None
        self.url: str | None = None

    async def start(self, loop: asyncio.AbstractEventLoop) -> AsyncTasks:
        c, k = self._settings.callbacks, self._settings.kafka
        token = c.token.get_secret_value() if c.token else secrets.token_urlsafe(24)
        if c.token is None:
            log.warning(
                "callbacks.token is not set: using a random one, so callbacks only work while this"
                " process lives; give every process of the group the same token"
            )
        app = web.Application(client_max_size=MAX_CALLBACK_BYTES)
        CallbackReceiver(token, kafka_relay(self._sink, k.callback_topic, token.encode())).routes(app)
        app.router.add_get("/metrics", self._metrics)
        self._web = web.AppRunner(app, access_log=None, keepalive_timeout=KEEPALIVE_S)
        await self._web.setup()
        await web.TCPSite(self._web, c.host, c.port if self._worker == 0 else 0).start()
        port = c.port if self._worker > 0 and c.port else int(self._web.addresses[0][1])
        base = c.public_url or local_url(c.host, port)
        self.url = f"{base.rstrip('/')}/callbacks/{token}"
        self._relay = RelayListener(k, self.correlator, loop, token.encode())
        self._relay.start()
        if not await asyncio.to_thread(self._relay.assigned.wait, 60):
            raise BrokerError(f"callback relay topic {k.callback_topic} was not assigned within 60s")
        log.info("callback receiver listening", extra={"port": port, "relay_topic": k.callback_topic})
        return AsyncTasks(
            self.correlator, self.url, poll_after_s=c.poll_after_s, poll_interval_s=c.poll_interval_s
        )

    async def stop(self) -> None:
        if self._relay is not None:
            await asyncio.to_thread(self._relay.stop)
        if self._web is not None:
            await self._web.cleanup()
