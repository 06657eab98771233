"""Decoding what the simulator receives: images, animated GIFs and videos, sampled at 1 fps."""

from __future__ import annotations

import io
from dataclasses import dataclass
from typing import Any

from PIL import Image, ImageSequence

from moderation_simulator import pdq

__all__ = ["Decoded", "decode"]

VIDEO_FORMATS = {"mp4", "mov,mp4,m4a,3gp,3g2,mj2", "mov"}


@dataclass(frozen=True, slots=True)
class Decoded:
    kind: str  # photo, gif, video
    mimetype: str
    format: str  # PIL format name or container name
    width: int
    height: int
    num_frames: int
    duration: float
    frames: list[tuple[float, Image.Image]]  # sampled at 1 fps: (time in seconds, RGB frame)


def decode(data: bytes, fps: float = 1.0) -> Decoded:
    """Raise ``pdq.CorruptMedia`` for bytes that are no image, GIF or video we can read."""
    try:
        image = pdq.open_image(data)
    except pdq.CorruptMedia:
        return _video(data, fps)
    if getattr(image, "is_animated", False):
        return _gif(image, fps)
    return Decoded(
        "photo",
        Image.MIME.get(image.format or "", "image/png"),
        image.format or "PNG",
        image.width,
        image.height,
        1,
        0.0,
        [(0.0, image.convert("RGB"))],
    )


def _gif(image: Image.Image, fps: float) -> Decoded:
    spans: list[tuple[float, float, Image.Image]] = []
    t = 0.0
    for frame in ImageSequence.Iterator(image):
        length = float(frame.info.get("duration", 100) or 100) / 1000.0
        spans.append((t, t + length, frame.convert("RGB")))
        t += length
    samples = _sample([(start, img) for start, _, img in spans], t, fps)
    return Decoded("gif", "image/gif", "GIF", image.width, image.height, len(spans), round(t, 3), samples)


def _sample(
    frames: list[tuple[float, Image.Image]], duration: float, fps: float
) -> list[tuple[float, Image.Image]]:
    """The frame showing at each sampling instant 0, 1/fps, 2/fps … < duration."""
    samples: list[tuple[float, Image.Image]] = []
    step = 1.0 / fps
    instant = 0.0
    i = 0
    while instant < max(duration, 1e-9) and frames:
        while i + 1 < len(frames) and frames[i + 1][0] <= instant + 1e-6:
            i += 1
        samples.append((round(instant, 3), frames[i][1]))
        instant += step
    return samples


def _video(data: bytes, fps: float) -> Decoded:
    import av

    container: Any
    try:
        with av.open(io.BytesIO(data)) as container:
            if not container.streams.video:
                raise pdq.CorruptMedia("no video stream")
            stream = container.streams.video[0]
            fmt = container.format.name
            decoded: list[tuple[float, Image.Image]] = []
            next_sample = 0.0
            count = 0
            last_time = 0.0
            for frame in container.decode(stream):
                count += 1
                t = float(frame.time or 0.0)
                last_time = max(last_time, t)
                if t + 1e-6 >= next_sample:
                    decoded.append((round(next_sample, 3), frame.to_image().convert("RGB")))
                    next_sample += 1.0 / fps
            rate = float(stream.average_rate or 0) or 1.0
            duration = float(container.duration / 1_000_000) if container.duration else last_time + 1.0 / rate
            width, height = stream.codec_context.width, stream.codec_context.height
    except pdq.CorruptMedia:
        raise
    except Exception as exc:  # PyAV raises many error types for garbage input
        raise pdq.CorruptMedia(f"cannot decode media: {type(exc).__name__}") from None
    if not decoded:
        raise pdq.CorruptMedia("video has no frames")
    mimetype = "video/quicktime" if fmt.startswith("mov") and "mp4" not in fmt else "video/mp4"
    return Decoded("video", mimetype, fmt, width, height, count, round(duration, 3), decoded)
