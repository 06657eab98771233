"""CPU-heavy image work off the event loop, in a bounded worker pool.

Decoding and resizing an upload takes milliseconds to seconds of CPU; on the event loop it would
stall every other upload. ``ImageWorkers`` runs it on a few threads (Pillow releases the GIL while
it decodes, resizes and encodes) and bounds the jobs waiting for them, so a burst of large images
queues on the loop instead of piling up decoded pixels in memory.

Hostile images: only the formats uploads may have are decoded (no EPS, which would run
Ghostscript, nor any other of Pillow's readers); the pixel count is read from the header and
checked before a single pixel is decoded, so a decompression bomb (a few KB of PNG declaring
30000x30000 pixels) is refused at once as ``PermanentError(check="media")`` (a dead letter). Data
that is not a readable image is sent as it is: the provider's own error names the problem better.
"""

from __future__ import annotations

import asyncio
import io
import os
import struct
import threading
import weakref
from concurrent.futures import ThreadPoolExecutor
from typing import Any

from PIL import Image

from consumer.errors import PermanentError, TransientError

__all__ = [
    "DEFAULT_MAX_PIXELS",
    "MAX_SIDE",
    "ImageWorkers",
    "default_workers",
    "fit_for_search",
]

DEFAULT_MAX_PIXELS = 40_000_000
MAX_SIDE = 2048  # ImageSearch's limit for the long side
SEARCH_FORMATS = frozenset({"JPEG", "PNG", "BMP"})  # what ImageSearch takes as it is
READ_FORMATS = ("JPEG", "PNG", "GIF", "WEBP", "BMP")  # what uploads may be (validation.py)

# What corrupt or truncated data raises from Pillow's readers. A Warning is here for processes
# whose warning filters make Pillow's warnings (corrupt EXIF, odd palettes) exceptions.
_UNREADABLE: tuple[type[BaseException], ...] = (
    OSError,  # UnidentifiedImageError, truncated data
    ValueError,
    SyntaxError,
    struct.error,
    MemoryError,
    EOFError,
    IndexError,
    TypeError,
    KeyError,
    Warning,
)


def fit_for_search(data: bytes, max_pixels: int = DEFAULT_MAX_PIXELS) -> bytes:
    """The image as ImageSearch accepts it: JPEG/PNG/BMP with a long side of at most 2048 pixels
    (otherwise shrunk and re-encoded as JPEG). Blocking: run it through ``ImageWorkers``.

    Raises PermanentError (check "media") for an image over ``max_pixels``; data Pillow cannot read
    is returned as it is (too-small images too: the provider's IS.0008 says it better).
    """
    try:
        return _fit(data, max_pixels)
    except (Image.DecompressionBombError, Image.DecompressionBombWarning):
        # Pillow's own check (over Image.MAX_IMAGE_PIXELS), met before ours could read the size
        raise PermanentError(f"image is over the {max_pixels}-pixel limit", check="media") from None
    except _UNREADABLE:
        return data


def _fit(data: bytes, max_pixels: int) -> bytes:
    with Image.open(io.BytesIO(data), formats=READ_FORMATS) as image:  # reads the header only
        width, height = image.size
        if width * height > max_pixels:
            raise PermanentError(
                f"image of {width}x{height} pixels is over the {max_pixels}-pixel limit", check="media"
            )
        if max(width, height) <= MAX_SIDE and image.format in SEARCH_FORMATS:
            return data
        scale = min(1.0, MAX_SIDE / max(width, height))
        size = (max(1, int(width * scale)), max(1, int(height * scale)))
        if image.format == "JPEG":
            image.draft("RGB", size)  # decode at 1/2 to 1/8 scale when that still covers ``size``
        rgb = _rgb(image)
        if rgb.size != size:
            rgb = rgb.resize(size, Image.Resampling.BICUBIC, reducing_gap=3.0)
        out = io.BytesIO()
        rgb.save(out, "JPEG", quality=90)
        return out.getvalue()


def _rgb(image: Image.Image) -> Image.Image:
    if image.mode == "RGB":
        image.load()
        return image
    if image.mode == "P":
        image = image.convert("RGBA")  # P straight to RGB warns when the palette has transparency
    return image.convert("RGB")


def _default_threads() -> int:
    return max(1, min(4, os.cpu_count() or 1))


class ImageWorkers:
    """A few threads for image jobs, with at most ``max_pending`` jobs queued or running.

    ``max_pixels`` is also set as Pillow's process-wide ``Image.MAX_IMAGE_PIXELS`` (Pillow warns
    over it and refuses twice it), so every decoder in the process shares the bound.
    """

    def __init__(
        self,
        max_workers: int | None = None,
        *,
        max_pending: int | None = None,
        max_pixels: int = DEFAULT_MAX_PIXELS,
    ) -> None:
        self.max_workers = max_workers or _default_threads()
        self.max_pending = max_pending or 4 * self.max_workers
        if self.max_workers < 1 or self.max_pending < 1 or max_pixels < 1:
            raise ValueError("max_workers, max_pending and max_pixels must be positive")
        self.max_pixels = max_pixels
        Image.MAX_IMAGE_PIXELS = max_pixels
        self._lock = threading.Lock()
        self._executor: ThreadPoolExecutor | None = None
        self._pending = 0  # jobs holding a slot; changed on event loop threads only
        # asyncio primitives belong to one loop; tests (and a restarted loop) bring new ones
        self._slots: weakref.WeakKeyDictionary[asyncio.AbstractEventLoop, asyncio.Semaphore] = (
            weakref.WeakKeyDictionary()
        )

    @property
    def pending(self) -> int:
        """Jobs queued for or running on the threads (at most ``max_pending`` per event loop)."""
        return self._pending

    def _pool(self) -> ThreadPoolExecutor:
        with self._lock:
            if self._executor is None:
                self._executor = ThreadPoolExecutor(self.max_workers, thread_name_prefix="image")
            return self._executor

    def _semaphore(self, loop: asyncio.AbstractEventLoop) -> asyncio.Semaphore:
        slots = self._slots.get(loop)
        if slots is None:
            slots = self._slots[loop] = asyncio.Semaphore(self.max_pending)
        return slots

    async def fit_for_search(self, data: bytes) -> bytes:
        """``fit_for_search`` on a worker thread (waits for a slot when ``max_pending`` are taken)."""
        loop = asyncio.get_running_loop()
        slots = self._semaphore(loop)
        await slots.acquire()
        self._pending += 1
        try:
            job = loop.run_in_executor(self._pool(), fit_for_search, data, self.max_pixels)
        except BaseException:
            self._release(slots)
            raise
        job.add_done_callback(lambda done: self._settle(done, slots))
        try:
            # a cancelled caller leaves the job running: its slot frees only when the thread is done
            return await asyncio.shield(job)
        except asyncio.CancelledError:
            task = asyncio.current_task()
            if job.cancelled() and task is not None and not task.cancelling():
                raise TransientError("image workers were closed", check="media") from None
            raise

    def _settle(self, job: asyncio.Future[Any], slots: asyncio.Semaphore) -> None:
        self._release(slots)
        if not job.cancelled():
            job.exception()  # retrieved: a job whose caller was cancelled must not log "never retrieved"

    def _release(self, slots: asyncio.Semaphore) -> None:
        self._pending -= 1
        slots.release()

    def close(self) -> None:
        """Stop the threads once their jobs are done; queued jobs are dropped."""
        with self._lock:
            executor, self._executor = self._executor, None
        if executor is not None:
            executor.shutdown(wait=False, cancel_futures=True)


# Not a switch: a pool with the default bounds, built once on first use, that nothing reconfigures;
# the service passes its own from settings (checks.builtin), so only clients built bare share this.
_default: ImageWorkers | None = None
_default_lock = threading.Lock()


def default_workers() -> ImageWorkers:
    """The process-wide pool, made on first use (the wiring may pass its own instead)."""
    global _default
    with _default_lock:
        if _default is None:
            _default = ImageWorkers()
        return _default
