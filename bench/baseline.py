"""The baseline: the consumer a competent engineer writes in an afternoon, to compare the engine with.

A confluent-kafka ``Consumer`` read without blocking from asyncio (``consume(n, 0)``, a short sleep
when nothing came), an ``asyncio.Semaphore`` bounding the uploads in flight (intake waits while it
is full), one ``aiohttp.ClientSession`` whose pool is two connections per upload in flight (the
default of 100 would cap the semaphore; an upload makes two calls at once). Each upload: CSAM hash
matching, then (no match) visual classification and the custom-index similarity query together,
the same Hive requests as the engine's; the verdict built by our policy (``consumer.policy``) and
encoded by the same ``AvroCodec``, produced with a confluent-kafka ``Producer`` (idempotent,
acks=all) keyed as the engine keys it, REVIEW and ESCALATE copied to their topics. An offset is
committed only once every record of its partition up to it has its verdicts acknowledged
(``Acknowledged``), so a crash loses nothing (records after the commit are done again).

What the afternoon leaves out: no dead-letter topic (an undecodable record is logged and skipped),
no per-key ordering, no adaptive concurrency, no result cache, no metrics, a fixed retry.

``python -m bench.baseline BOOTSTRAP TOPIC VERDICT_TOPIC SIMULATOR_URL [--in-flight N] [--group G]``;
runs until SIGTERM or SIGINT, then finishes what is in flight, commits and exits.
"""

from __future__ import annotations

import argparse
import asyncio
import logging
import signal
import time
from collections.abc import Callable, Iterable
from typing import Any

import aiohttp
from confluent_kafka import Consumer, KafkaError, Message, Producer, TopicPartition

from consumer.core.index_metadata import own_matches
from consumer.core.records import CheckRun, CsamResult, Decision, SimilarityMatch, UploadEvent
from consumer.errors import SerializationError
from consumer.policy.decision import CheckResults, Frame
from consumer.policy.evidence import RECORDED_FLOOR, evidence_of, verdict_of
from consumer.policy.tenants import load_policies
from consumer.serde import AvroCodec
from moderation_simulator.state import DEFAULT_KEYS

log = logging.getLogger("bench.baseline")

TASK_PATH = "/api/v1/task/sync"  # the engine's default (hive.api_version v1)
INDEX_PATH = "/api/v2/custom_index/query/sync"
ATTEMPTS = 3
RETRIED = {429, 500, 502, 503, 504}
COMMIT_EVERY_S = 1.0
BATCH = 500

TP = tuple[str, int]
Called = tuple[dict[str, Any] | None, str, float, int]
_NO_MODEL: tuple[str | None, str | None] = (None, None)


class Acknowledged:
    """Per partition, the offsets consumed whose verdicts are not yet acknowledged, and the offset
    after the last one consumed. What may be committed is the lowest unacknowledged offset (or,
    none left, the one after the last consumed): every record before it has its verdicts."""

    def __init__(self) -> None:
        self.pending: dict[TP, set[int]] = {}
        self.after: dict[TP, int] = {}

    def consumed(self, tp: TP, offset: int) -> None:
        self.pending.setdefault(tp, set()).add(offset)
        self.after[tp] = offset + 1

    def acknowledged(self, tp: TP, offset: int) -> None:
        found = self.pending.get(tp)
        if found is not None:  # None: a partition revoked meanwhile
            found.discard(offset)

    def committable(self, tps: Iterable[TP] | None = None) -> dict[TP, int]:
        return {
            tp: min(self.pending[tp]) if self.pending[tp] else self.after[tp]
            for tp in (self.pending if tps is None else tps)
            if tp in self.pending
        }

    def forget(self, tps: Iterable[TP]) -> None:
        for tp in tps:
            self.pending.pop(tp, None)
            self.after.pop(tp, None)


class Baseline:
    def __init__(
        self, bootstrap: str, topic: str, out: str, sim_url: str, in_flight: int, group: str
    ) -> None:
        self.topic, self.out, self.sim_url = topic, out, sim_url.rstrip("/")
        self.in_flight = in_flight
        self.codec, self.policies = AvroCodec(), load_policies()
        self.copies = {Decision.REVIEW: out + ".review", Decision.ESCALATE: out + ".esc"}
        self.acks = Acknowledged()
        self.consumer = Consumer(
            {
                "bootstrap.servers": bootstrap,
                "group.id": group,
                "auto.offset.reset": "earliest",
                "enable.auto.commit": False,
            }
        )
        self.producer = Producer(
            {
                "bootstrap.servers": bootstrap,
                "acks": "all",
                "enable.idempotence": True,
                "linger.ms": 5,
                "compression.type": "lz4",
            }
        )

    # --- offsets ---------------------------------------------------------------------------------

    def commit(self, tps: Iterable[TP] | None = None, *, wait: bool = False) -> None:
        offsets = [TopicPartition(t, p, o) for (t, p), o in self.acks.committable(tps).items()]
        if not offsets:
            return
        try:
            if wait:
                self.consumer.commit(offsets=offsets, asynchronous=False)
            else:
                self.consumer.commit(offsets=offsets, asynchronous=True)
        except Exception as exc:  # e.g. no coordinator for a moment: the next commit covers it
            log.warning("commit failed: %s", exc)

    def _revoked(self, _consumer: Consumer, partitions: list[TopicPartition]) -> None:
        tps = [(p.topic, p.partition) for p in partitions]
        self.producer.flush(10)  # acknowledgements of what is done, then its offsets
        self.commit(tps, wait=True)
        self.acks.forget(tps)  # what is still in flight there is done again by the next owner

    def _lost(self, _consumer: Consumer, partitions: list[TopicPartition]) -> None:
        self.acks.forget((p.topic, p.partition) for p in partitions)

    # --- one upload ------------------------------------------------------------------------------

    async def call(
        self,
        session: aiohttp.ClientSession,
        path: str,
        project: str,
        upload: UploadEvent,
        wanted: frozenset[str] | None = None,
    ) -> Called | None:
        """(answer or None, why not, latency ms, attempts): a sync Hive call, retried on 429 / 5xx;
        None when the tenant's policy does not run the check (``wanted``)."""
        check = "similarity" if project == "index" else project
        if wanted is not None and check not in wanted:
            return None
        key = DEFAULT_KEYS[project]  # type: ignore[index]  # a project the simulator knows
        started, why = time.monotonic(), ""
        for attempt in range(1, ATTEMPTS + 1):
            form = aiohttp.FormData()
            form.add_field(
                "media",
                upload.media_bytes or b"",
                filename="upload",
                content_type=upload.content_type or "application/octet-stream",
            )
            try:
                async with session.post(
                    self.sim_url + path,
                    data=form,
                    headers={"authorization": f"token {key}", "accept": "application/json"},
                ) as resp:
                    if resp.status == 200:
                        body: dict[str, Any] = await resp.json()
                        return body, "", (time.monotonic() - started) * 1000, attempt
                    why = f"HTTP {resp.status}"
                    if resp.status not in RETRIED:
                        break
            except (aiohttp.ClientError, TimeoutError) as exc:
                why = type(exc).__name__
            if attempt < ATTEMPTS:
                await asyncio.sleep(0.2 * 2**attempt)
        return None, why, (time.monotonic() - started) * 1000, ATTEMPTS

    async def moderate(
        self, session: aiohttp.ClientSession, upload: UploadEvent, msg: Message
    ) -> list[tuple[str, bytes]]:
        """The records (topic, value) of one upload's verdict."""
        policy = self.policies.for_tenant(upload.tenant_id)
        wanted = policy.checks
        results, runs = CheckResults(), []

        def scored(check: str, got: Called | None, parse: Callable[[dict[str, Any]], None]) -> None:
            """``parse`` the answer when it scored; else the check is unavailable (fail closed) or
            rejected; nothing when it did not run (``got`` None)."""
            if got is None:
                return
            body, why, latency, attempts = got
            outcome, model = "ok", _NO_MODEL
            if body is None:
                results.unavailable[check], outcome = why, "unavailable"
            else:
                code, message, model = _status(body)
                if code not in ("0", "200"):
                    results.rejected[check], outcome = message, "rejected"
                else:
                    try:
                        parse(body)
                    except (LookupError, TypeError, ValueError, AttributeError) as exc:
                        results.unavailable[check], outcome = f"unexpected answer: {exc!r}", "unavailable"
            runs.append(CheckRun(check, "hive", round(latency, 3), outcome, *model, attempts))

        def csam(body: dict[str, Any]) -> None:
            hashes = body["status"][0]["response"]["output"][0].get("hashes") or [{}]
            match = (hashes[0].get("matches") or [{}])[0]
            found = CsamResult(bool(hashes[0]), hashes[0].get("hashType"), match.get("matchDistance"))
            results.hash_matches["csam"] = found

        def visual(body: dict[str, Any]) -> None:
            frames = [
                (float(f["time"]), {c["class"]: float(c["score"]) for c in f["classes"]})
                for f in body["status"][0]["response"]["output"]
            ]
            benign = frozenset(
                n for _, s in frames for n in s if n.startswith(("no_", "not_")) or "_not_" in n
            )
            results.classifications["visual"] = [Frame(t, s, benign) for t, s in frames]

        def similarity(body: dict[str, Any]) -> None:
            found = [
                SimilarityMatch(str(m["id"]), float(m["similarity_score"]), m.get("metadata"), m.get("url"))
                for m in body["response"]["output"]["matches"]
            ]
            results.similarity["similarity"] = own_matches(found, upload.tenant_id)

        scored("csam", await self.call(session, TASK_PATH, "csam", upload), csam)
        hash_match = results.hash_matches.get("csam")
        if hash_match is None or not hash_match.matched:  # a match ends the checks
            classified, similar = await asyncio.gather(
                self.call(session, TASK_PATH, "visual", upload, wanted),
                self.call(session, INDEX_PATH, "index", upload, wanted),
            )
            scored("visual", classified, visual)
            scored("similarity", similar, similarity)
        verdict = verdict_of(
            policy,
            results,
            upload_id=upload.upload_id,
            tenant_id=upload.tenant_id,
            source_topic=msg.topic() or self.topic,
            source_partition=msg.partition() or 0,
            source_offset=msg.offset() or 0,
            processed_at=int(time.time() * 1000),
            checks=tuple(runs),
            evidence=evidence_of(results, RECORDED_FLOOR),
        )
        value = self.codec.encode("ModerationVerdict", verdict.to_avro())
        copy = self.copies.get(verdict.decision)
        return [(self.out, value)] + ([(copy, value)] if copy else [])

    async def handle(self, session: aiohttp.ClientSession, msg: Message, slots: asyncio.Semaphore) -> None:
        tp, offset = (msg.topic() or self.topic, msg.partition() or 0), msg.offset() or 0
        try:
            try:
                upload = UploadEvent.from_avro(self.codec.decode(msg.value(), "UploadEvent"))
            except SerializationError as exc:  # skipped: an afternoon's consumer has no dead letters
                log.error("record %s@%s skipped: %s", tp, offset, exc)
                self.acks.acknowledged(tp, offset)
                return
            outputs = await self.moderate(session, upload, msg)
            key = msg.key() or upload.upload_id.encode()  # as the engine keys its verdicts
            left = [len(outputs)]

            def delivered(err: KafkaError | None, _msg: Message) -> None:
                if err is not None:  # not acknowledged: its offset is never committed past
                    log.error("verdict of %s@%s not delivered: %s", tp, offset, err)
                    return
                left[0] -= 1
                if left[0] == 0:
                    self.acks.acknowledged(tp, offset)

            for topic, value in outputs:
                await self.produce(topic, key, value, delivered)
        except Exception:  # never acknowledged: its offset is not committed past (done again)
            log.exception("record %s@%s failed", tp, offset)
        finally:
            slots.release()

    async def produce(
        self, topic: str, key: bytes, value: bytes, cb: Callable[[KafkaError | None, Message], None]
    ) -> None:
        while True:
            try:
                self.producer.produce(topic, value, key, on_delivery=cb)
                return
            except BufferError:  # the producer's queue is full: let it drain
                self.producer.poll(0)
                await asyncio.sleep(0.01)

    # --- the loops -------------------------------------------------------------------------------

    async def housekeeping(self, stop: asyncio.Event) -> None:
        """Serve delivery callbacks often; commit what they acknowledged every second."""
        last = time.monotonic()
        while not stop.is_set():
            self.producer.poll(0)
            if time.monotonic() - last >= COMMIT_EVERY_S:
                self.commit()
                last = time.monotonic()
            await asyncio.sleep(0.005)

    async def run(self) -> None:
        stop = asyncio.Event()
        loop = asyncio.get_running_loop()
        for sig in (signal.SIGTERM, signal.SIGINT):
            loop.add_signal_handler(sig, stop.set)
        slots = asyncio.Semaphore(self.in_flight)
        tasks: set[asyncio.Task[None]] = set()
        connector = aiohttp.TCPConnector(limit=2 * self.in_flight)
        timeout = aiohttp.ClientTimeout(total=10)
        self.consumer.subscribe([self.topic], on_revoke=self._revoked, on_lost=self._lost)
        async with aiohttp.ClientSession(connector=connector, timeout=timeout) as session:
            keeper = asyncio.create_task(self.housekeeping(stop))
            while not stop.is_set():
                msgs = self.consumer.consume(BATCH, 0)
                if not msgs:
                    await asyncio.sleep(0.005)
                    continue
                for msg in msgs:
                    if msg.error():
                        log.warning("consume: %s", msg.error())
                        continue
                    await slots.acquire()  # full: intake waits here
                    self.acks.consumed((msg.topic() or self.topic, msg.partition() or 0), msg.offset() or 0)
                    task = asyncio.create_task(self.handle(session, msg, slots))
                    tasks.add(task)
                    task.add_done_callback(tasks.discard)
                await asyncio.sleep(0)
            await asyncio.gather(*tasks)
            await keeper
        self.producer.flush(30)
        self.commit(wait=True)
        self.consumer.close()


def _status(body: dict[str, Any]) -> tuple[str, str, tuple[str | None, str | None]]:
    """(code, message, (model, its version)) of a Hive answer: a task's status is a list (one per
    input), the custom index's one object (no model)."""
    status, model = body.get("status"), _NO_MODEL
    if isinstance(status, list):
        first = status[0]
        given = first.get("response", {}).get("input", {})
        model = (
            given.get("model"),
            None if given.get("model_version") is None else str(given["model_version"]),
        )
        status = first.get("status")
    status = status or {}
    return str(status.get("code", "0")), str(status.get("message", "")), model


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("bootstrap")
    parser.add_argument("topic")
    parser.add_argument("verdict_topic")
    parser.add_argument("simulator_url")
    parser.add_argument("--in-flight", type=int, default=1000)
    parser.add_argument("--group", default="bench-baseline")
    args = parser.parse_args()
    logging.basicConfig(level=logging.WARNING)
    baseline = Baseline(
        args.bootstrap, args.topic, args.verdict_topic, args.simulator_url, args.in_flight, args.group
    )
    asyncio.run(baseline.run())


if __name__ == "__main__":
    main()
