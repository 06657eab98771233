"""The shutdown drain: running uploads finish within a deadline, then the broker acknowledges
their outputs within what is left of it, so that their offsets can be committed."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Collection
from typing import Protocol

__all__ = ["drain"]

log = logging.getLogger("consumer.service")


class Flushable(Protocol):
    async def flush(self, within_s: float) -> object: ...


async def drain(running: Collection[asyncio.Task[None]], sink: Flushable, within_s: float) -> None:
    """Wait up to ``within_s`` seconds for ``running``, cancel what is left (it is redelivered),
    then flush ``sink`` within the rest of the deadline (at least a second)."""
    loop = asyncio.get_running_loop()
    deadline = loop.time() + within_s
    if running:
        log.info("draining in-flight uploads", extra={"in_flight": len(running), "deadline_s": within_s})
        _, pending = await asyncio.wait(running, timeout=within_s)
        for task in pending:
            task.cancel()
        if pending:
            log.warning("drain deadline passed; %d uploads left for redelivery", len(pending))
            await asyncio.gather(*pending, return_exceptions=True)
    await sink.flush(max(1.0, deadline - loop.time()))
