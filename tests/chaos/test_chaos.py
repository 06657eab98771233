"""5,000 uploads through kill -9 at random moments (5 times, each followed by a restart), one broker
restart and a simulator answering 10 % 5xx, 5 % 429 and 2 % hangs. Afterwards every upload has a
verdict or a dead letter; exactly_once: a read_committed reader sees one each; at_least_once: the
duplicates are no more than what was in flight (produced, not committed) at the kills."""

from __future__ import annotations

import os
import random
from collections.abc import Callable

import pytest

from consumer.core.records import MediaType, UploadEvent
from consumer.serde import AvroCodec
from moderation_devtools.samples import image_bytes, make_image
from moderation_devtools.stack import produce_uploads, upload

from .harness import ChaosStack, OutputCollector, Source

pytestmark = [pytest.mark.integration, pytest.mark.chaos, pytest.mark.timeout(600)]

UPLOADS = 5_000
KILLS = 5


def uploads(rng: random.Random) -> list[UploadEvent]:
    images = [image_bytes(make_image(seed, (160, 120))) for seed in range(40)]
    found = []
    for i in range(UPLOADS):
        if i % 10 == 0:
            found.append(
                upload(MediaType.IMAGE, upload_id=f"c-{i}", data=rng.choice(images), content_type="image/png")
            )
        else:
            found.append(upload(MediaType.TEXT, upload_id=f"c-{i}", text=f"chaos upload {i} {rng.random()}"))
    return found


def poison() -> list[tuple[bytes | None, bytes]]:
    good = AvroCodec().encode("UploadEvent", upload(MediaType.TEXT, text="x").to_avro())
    return [(f"p-{i}".encode(), b"not avro" if i % 2 else good[: len(good) // 2]) for i in range(10)]


def sources_of(stack: ChaosStack) -> set[Source]:
    return {(p, o) for p, end in stack.input_ends().items() for o in range(end)}


def test_no_upload_is_lost_through_kills_a_broker_restart_and_provider_faults(
    stack: ChaosStack, accounting: Callable[[str], None]
) -> None:
    seed = int(os.environ.get("CHAOS_SEED", random.randrange(1 << 30)))
    rng = random.Random(seed)
    produce_uploads(stack.broker.bootstrap, stack.topics["input_topic"], uploads(rng), raw=poison())
    sources = sources_of(stack)
    total = len(sources)
    # kill moments: random points of progress; the broker restarts at another one
    events = [(t, "kill") for t in rng.sample(range(total // 20, total * 4 // 5), KILLS)]
    events.append((rng.randrange(total // 4, total * 3 // 4), "broker"))
    events.sort()
    in_flight_at_kills = 0
    kills = 0
    exactly_once = stack.mode == "exactly_once"
    with OutputCollector(
        stack.broker.bootstrap, stack.topics["verdict_topic"], stack.topics["dlq_topic"]
    ) as out:
        consumer = stack.start_consumer("a")
        for threshold, action in events:
            assert out.wait_answered(threshold, 180), stack.diagnose(
                out, f"stuck before {threshold} (seed {seed})"
            )
            if action == "broker":
                stack.restart_broker()
                continue
            consumer.kill()
            kills += 1
            if not exactly_once:
                assert out.caught_up(stack.output_ends(), 60)
                in_flight_at_kills += out.at_or_after(stack.committed())
            consumer = stack.start_consumer("a")
        assert out.wait_answered(total, 240), stack.diagnose(
            out, f"{total - out.answered()} unanswered (seed {seed})"
        )
        assert consumer.terminate(60) == 0
        if not exactly_once:
            assert out.caught_up(stack.output_ends(), 60)
        counts = out.accounting(sources)
    accounting(
        counts.line(
            mode=stack.mode, kills=kills, broker_restarts=1, in_flight_at_kills=in_flight_at_kills, seed=seed
        )
    )
    assert counts.missing == 0
    assert counts.dead_letters >= 10  # the poison records
    if exactly_once:
        assert counts.duplicates == 0
        assert stack.committed() == stack.input_ends()
    else:
        assert counts.duplicates <= in_flight_at_kills
