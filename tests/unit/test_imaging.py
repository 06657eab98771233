"""Image work off the event loop: decompression bombs refused from the header, corrupt data sent as
it is, large images shrunk on worker threads while the loop keeps running, a bounded queue."""

from __future__ import annotations

import asyncio
import io
import resource
import threading
import time
import warnings
from collections.abc import Iterator

import numpy as np
import pytest
from PIL import Image

from consumer.checks import imaging
from consumer.checks.imaging import MAX_SIDE, ImageWorkers, fit_for_search
from consumer.errors import PermanentError, TransientError
from moderation_devtools.samples import bomb_png

NEXT_LOOP_TURN = 0  # sleeping 0 s: one turn of the event loop, no waiting


@pytest.fixture(autouse=True)
def _pillow_limit_restored(monkeypatch: pytest.MonkeyPatch) -> None:
    """ImageWorkers sets Pillow's process-wide limit: give it back after each test."""
    monkeypatch.setattr(Image, "MAX_IMAGE_PIXELS", Image.MAX_IMAGE_PIXELS)


def encoded(image: Image.Image, fmt: str = "PNG") -> bytes:
    out = io.BytesIO()
    image.save(out, fmt)
    return out.getvalue()


def noise(size: tuple[int, int], seed: int = 1) -> Image.Image:
    pixels = np.random.default_rng(seed).integers(0, 256, (size[1], size[0], 3), dtype=np.uint8)
    return Image.fromarray(pixels, "RGB")


def peak_rss_mb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024  # kilobytes on Linux


@pytest.fixture
def workers() -> Iterator[ImageWorkers]:
    pool = ImageWorkers(2)
    yield pool
    pool.close()


async def test_a_decompression_bomb_is_refused_from_its_header(workers: ImageWorkers) -> None:
    bomb = bomb_png()
    assert len(bomb) < 200_000
    before, started = peak_rss_mb(), time.perf_counter()
    with pytest.raises(PermanentError, match="over the 40000000-pixel limit") as info:
        await workers.fit_for_search(bomb)
    assert time.perf_counter() - started < 5.0
    assert peak_rss_mb() - before < 200  # decoding it would take 900 MB
    assert info.value.check == "media" and info.value.concerns_content  # a dead letter


def test_an_image_over_the_limit_is_refused_by_our_own_header_check() -> None:
    # between 1x and 2x the limit Pillow only warns; with warnings ignored our check still refuses it
    data = encoded(Image.new("L", (120, 100)))
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        Image.MAX_IMAGE_PIXELS = 10_000
        with pytest.raises(PermanentError, match=r"image of 120x100 pixels is over the 10000-pixel limit"):
            fit_for_search(data, 10_000)


async def test_pillows_warning_between_one_and_two_times_the_limit_is_an_error_too() -> None:
    data = encoded(Image.new("L", (120, 100)))
    pool = ImageWorkers(1, max_pixels=10_000)
    try:
        assert Image.MAX_IMAGE_PIXELS == 10_000
        with pytest.raises(PermanentError, match="10000-pixel limit"):
            await pool.fit_for_search(data)
    finally:
        pool.close()


@pytest.mark.parametrize(
    "data",
    [
        b"",
        b"not an image at all",
        b"\x89PNG\r\n\x1a\n" + b"\x00" * 40,  # a PNG signature and garbage
        encoded(noise((300, 200)), "JPEG")[:400],  # truncated JPEG
        bomb_png(3000, 3000)[:120],  # header of a big PNG, then nothing
        b"%!PS-Adobe-3.0 EPSF-3.0\n%%BoundingBox: 0 0 10 10\n",  # EPS: never handed to Ghostscript
    ],
)
async def test_unreadable_data_is_sent_as_it_is(workers: ImageWorkers, data: bytes) -> None:
    assert await workers.fit_for_search(data) == data


async def test_small_search_formats_pass_untouched(workers: ImageWorkers) -> None:
    png = encoded(noise((400, 300)))
    assert await workers.fit_for_search(png) == png


async def test_other_formats_and_palettes_are_reencoded_as_jpeg(workers: ImageWorkers) -> None:
    palette = Image.new("P", (200, 150))
    palette.info["transparency"] = 0
    for data in (encoded(noise((200, 150)), "WEBP"), encoded(palette, "GIF"), encoded(palette, "PNG")):
        out = await workers.fit_for_search(data)
        assert Image.open(io.BytesIO(out)).format in ("JPEG", "PNG")


async def test_a_large_image_is_shrunk_off_the_event_loop(workers: ImageWorkers) -> None:
    big = encoded(noise((6000, 4000)), "JPEG")
    ticks = 0
    done = asyncio.Event()

    async def ticker() -> None:
        nonlocal ticks
        while not done.is_set():
            ticks += 1
            await asyncio.sleep(NEXT_LOOP_TURN)

    ticking = asyncio.create_task(ticker())
    await asyncio.sleep(NEXT_LOOP_TURN)
    ticks = 0  # count only what happens while the image is being worked on
    out = await workers.fit_for_search(big)
    during = ticks
    done.set()
    await ticking
    assert during >= 3  # on the loop, the ticker could not have run at all meanwhile
    image = Image.open(io.BytesIO(out))
    assert image.format == "JPEG" and image.size == (MAX_SIDE, 1365)


async def test_queued_jobs_are_bounded(monkeypatch: pytest.MonkeyPatch) -> None:
    release = threading.Event()
    started: list[bytes] = []
    lock = threading.Lock()

    def slow(data: bytes, max_pixels: int) -> bytes:
        with lock:
            started.append(data)
        release.wait(10)
        return data

    monkeypatch.setattr(imaging, "fit_for_search", slow)
    pool = ImageWorkers(1, max_pending=2)
    try:
        jobs = [asyncio.create_task(pool.fit_for_search(bytes([i]))) for i in range(5)]
        for _ in range(20):
            await asyncio.sleep(NEXT_LOOP_TURN)
        assert pool.pending == 2  # one running, one queued on the thread; three wait on the loop
        assert sum(job.done() for job in jobs) == 0
        release.set()
        assert await asyncio.gather(*jobs) == [bytes([i]) for i in range(5)]
        assert pool.pending == 0 and len(started) == 5
    finally:
        release.set()
        pool.close()


async def test_a_cancelled_caller_keeps_its_slot_until_the_thread_is_done(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    release = threading.Event()
    entered = threading.Event()

    def slow(data: bytes, max_pixels: int) -> bytes:
        entered.set()
        release.wait(10)
        return data

    monkeypatch.setattr(imaging, "fit_for_search", slow)
    pool = ImageWorkers(1, max_pending=1)
    try:
        job = asyncio.create_task(pool.fit_for_search(b"x"))
        await asyncio.to_thread(entered.wait, 10)
        job.cancel()
        with pytest.raises(asyncio.CancelledError):
            await job
        assert pool.pending == 1  # the thread still works on it
        release.set()
        assert await pool.fit_for_search(b"y") == b"y"
        assert pool.pending == 0
    finally:
        release.set()
        pool.close()


async def test_jobs_dropped_by_close_fail_as_transient(monkeypatch: pytest.MonkeyPatch) -> None:
    release = threading.Event()
    entered = threading.Event()

    def slow(data: bytes, max_pixels: int) -> bytes:
        entered.set()
        release.wait(10)
        return data

    monkeypatch.setattr(imaging, "fit_for_search", slow)
    pool = ImageWorkers(1, max_pending=2)
    try:
        first = asyncio.create_task(pool.fit_for_search(b"a"))
        await asyncio.to_thread(entered.wait, 10)
        queued = asyncio.create_task(pool.fit_for_search(b"b"))
        await asyncio.sleep(NEXT_LOOP_TURN)
        pool.close()
        with pytest.raises(TransientError, match="closed"):
            await queued
        release.set()
        assert await first == b"a"
    finally:
        release.set()
        pool.close()
