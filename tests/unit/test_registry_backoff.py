"""The schema registry's one backoff (``registry_retrying``), which the start (``prepare_outputs``)
and the lookup of a new schema id (``RecordHandler``) both use: tries while the registry is
unreachable, no bound on tries, other errors the caller's, ``stop`` ends the waiting."""

from __future__ import annotations

import asyncio
from collections.abc import Callable

import pytest

from consumer.errors import RegistryUnavailable, SerializationError
from consumer.schema_registry import prepare_outputs, registry_retrying
from consumer.serde import AvroCodec


def _down_for(failures: int) -> tuple[list[int], Callable[[], str]]:
    calls: list[int] = []

    def call() -> str:
        calls.append(len(calls))
        if len(calls) <= failures:
            raise RegistryUnavailable("schema registry unreachable")
        return "schema"

    return calls, call


async def test_tries_until_the_registry_answers_and_reports_each_wait() -> None:
    calls, call = _down_for(7)  # more than any bounded retry policy would allow
    waits: list[float] = []
    async with asyncio.timeout(5):
        found = await registry_retrying(call, 0, lambda _exc, delay: waits.append(delay))
    assert found == "schema" and len(calls) == 8
    assert waits == [0.0] * 7, "a longest wait of 0 never waits"


async def test_other_errors_are_the_callers_at_once() -> None:
    calls = 0

    def unknown_id() -> str:
        nonlocal calls
        calls += 1
        raise SerializationError("schema id 7 is not registered")

    with pytest.raises(SerializationError):
        await registry_retrying(unknown_id, 10, lambda _exc, _delay: None)
    assert calls == 1


@pytest.mark.parametrize(("longest", "first"), [(10.0, 0.5), (0.1, 0.1)])
async def test_the_first_wait_is_half_a_second_at_most_and_stop_ends_it(longest: float, first: float) -> None:
    stop = asyncio.Event()
    waits: list[float] = []

    def told(_exc: RegistryUnavailable, delay: float) -> None:
        waits.append(delay)
        stop.set()

    _, call = _down_for(100)
    async with asyncio.timeout(5):
        with pytest.raises(RegistryUnavailable):
            await registry_retrying(call, longest, told, stop=stop)
    assert waits == [first]


class _UnreachableRegistry(AvroCodec):
    def __init__(self, stop: asyncio.Event, failures: int) -> None:
        super().__init__()
        self.tries, self._stop, self._failures = 0, stop, failures

    def prepare(self, outputs: object) -> None:  # type: ignore[override]
        self.tries += 1
        if self.tries <= self._failures:
            raise RegistryUnavailable("schema registry unreachable")


async def test_prepare_outputs_retries_then_returns_and_returns_once_stopped() -> None:
    stop = asyncio.Event()
    codec = _UnreachableRegistry(stop, failures=3)
    async with asyncio.timeout(5):
        await prepare_outputs(codec, {"verdicts": "ModerationVerdict"}, stop, 0)
    assert codec.tries == 4
    stop.set()
    never = _UnreachableRegistry(stop, failures=10**6)
    async with asyncio.timeout(5):
        await prepare_outputs(never, {"verdicts": "ModerationVerdict"}, stop, 10)
    assert never.tries == 0, "a stopped service does not ask the registry"
