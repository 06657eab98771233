"""Fixtures shared by every test: retries without waiting, sample media factories."""

from __future__ import annotations

from collections.abc import Callable, Iterator

import pytest

from consumer import retry
from consumer.devtools.samples import image_bytes, make_image


@pytest.fixture(autouse=True, scope="session")
def _retries_without_waiting() -> Iterator[None]:
    retry.testing(True)
    yield
    retry.testing(False)


@pytest.fixture
def png() -> Callable[[int], bytes]:
    """png(seed) -> bytes of a deterministic textured image."""
    return lambda seed: image_bytes(make_image(seed))
