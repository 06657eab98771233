"""``run --workers N``: every worker's series reach one scrape.

Worker 0 serves ``/metrics`` on the configured ``health.port``; the others listen on any free port
and announce where in a directory the supervisor made (``Worker.directory``, one
``worker-<i>.url`` file each, rewritten when a restarted worker binds again). A scrape of worker
0 reads the others' ``/metrics`` (all at once, ``PEER_TIMEOUT_S`` each) and answers
with every worker's series, each labelled ``worker``, plus ``moderation_worker_up{worker}`` (0 for a
worker that did not answer: restarting, or hung). One process alone (no supervisor) answers with
its own series, unlabelled. Counters stay per worker, so a restarted worker is an ordinary counter
reset to ``rate()``."""

from __future__ import annotations

import asyncio
import contextlib
import os
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path

import aiohttp
from prometheus_client import generate_latest
from prometheus_client.metrics_core import Metric
from prometheus_client.parser import text_string_to_metric_families
from prometheus_client.registry import Collector

from consumer.telemetry import metrics
from consumer.transports.serving import local_url

__all__ = ["PEER_MAX_BYTES", "PEER_TIMEOUT_S", "Worker", "announce", "exposition", "merge", "peers"]

PEER_TIMEOUT_S = 2.0
PEER_MAX_BYTES = 16 << 20  # a peer's exposition; a longer answer counts as no answer (worker_up 0)


@dataclass(frozen=True, slots=True)
class Worker:
    """This process's place under ``run --workers``: its index, how many there are, and the
    directory they announce in (the supervisor passes them on each worker's command line). One
    process alone is worker 0 of 1, with no directory."""

    index: int = 0
    count: int = 1
    directory: Path | None = None


def announce(worker: Worker, host: str, port: int | None) -> None:
    """Under ``--workers``: a worker other than 0 serves ``/metrics`` on ``host:port`` (a wildcard
    host is reached on loopback)."""
    if worker.directory is None or worker.index == 0 or port is None:
        return
    url = local_url(host, port)
    temporary = worker.directory / f".worker-{worker.index}.url.{os.getpid()}"
    temporary.write_text(url)
    temporary.replace(worker.directory / f"worker-{worker.index}.url")  # atomic: a reader sees old or new


def peers(directory: Path) -> dict[int, str]:
    """The announced base URLs of workers 1..N-1."""
    found = {}
    for path in directory.glob("worker-*.url"):
        with contextlib.suppress(ValueError, OSError):
            found[int(path.stem.removeprefix("worker-"))] = path.read_text().strip()
    return found


async def exposition(worker: Worker) -> bytes:
    """What ``/metrics`` answers: this process's series, and under ``--workers`` on worker 0 every
    worker's."""
    own = generate_latest(metrics.REGISTRY)
    if worker.directory is None or worker.index != 0:
        return own
    urls = peers(worker.directory)
    count = max(worker.count, 1 + max(urls, default=0))
    texts: dict[int, str | None] = {0: own.decode()}
    timeout = aiohttp.ClientTimeout(total=PEER_TIMEOUT_S)
    async with aiohttp.ClientSession(timeout=timeout) as session:
        indexes = [i for i in range(1, count) if i in urls]
        answers = await asyncio.gather(*(_scrape(session, urls[i]) for i in indexes), return_exceptions=True)
    for i, answer in zip(indexes, answers, strict=True):
        texts[i] = answer if isinstance(answer, str) else None
    for i in range(1, count):
        texts.setdefault(i, None)
    return merge(texts)


async def _scrape(session: aiohttp.ClientSession, url: str, limit: int = PEER_MAX_BYTES) -> str:
    async with session.get(f"{url}/metrics") as response:
        response.raise_for_status()
        body = bytearray()
        async for chunk in response.content.iter_chunked(1 << 16):
            body += chunk
            if len(body) > limit:
                raise ValueError(f"a worker's exposition is over {limit} bytes")
        return body.decode("utf-8", "replace")


class _Families(Collector):
    def __init__(self, families: list[Metric]) -> None:
        self._families = families

    def collect(self) -> list[Metric]:
        return self._families


def merge(texts: Mapping[int, str | None]) -> bytes:
    """Expositions by worker index (None: that worker did not answer) as one, every series labelled
    with its ``worker``, and ``moderation_worker_up``."""
    families: dict[str, Metric] = {}
    for worker, text in sorted(texts.items()):
        for family in text_string_to_metric_families(text or ""):
            merged = families.get(family.name)
            if merged is None:
                merged = families[family.name] = Metric(family.name, family.documentation, family.type)
            for sample in family.samples:
                labels = {**sample.labels, "worker": str(worker)}
                merged.add_sample(sample.name, labels, sample.value, sample.timestamp, sample.exemplar)
    up = Metric("moderation_worker_up", "1 when the worker answered this scrape (worker 0 asks).", "gauge")
    for worker, text in sorted(texts.items()):
        up.add_sample("moderation_worker_up", {"worker": str(worker)}, 0.0 if text is None else 1.0)
    return generate_latest(_Families([*families.values(), up]))
