"""Deterministic sample media for the demo, tests and benchmarks (no files shipped)."""

from __future__ import annotations

import io
import random
import struct
import zlib
from typing import Any

from PIL import Image, ImageDraw

__all__ = ["bomb_png", "cropped", "image_bytes", "make_gif", "make_image", "make_video", "reencoded"]


def make_image(seed: int, size: tuple[int, int] = (480, 360)) -> Image.Image:
    """A textured image of overlapping shapes; different seeds give perceptually unrelated images."""
    rng = random.Random(seed)

    def colour() -> tuple[int, int, int]:
        return rng.randrange(256), rng.randrange(256), rng.randrange(256)

    image = Image.new("RGB", size, colour())
    draw = ImageDraw.Draw(image)
    w, h = size
    for _ in range(12):
        x0, y0 = rng.randrange(-w // 10, w), rng.randrange(-h // 7, h)
        x1, y1 = x0 + rng.randrange(w // 6, w * 2 // 3), y0 + rng.randrange(h // 5, h * 5 // 6)
        shape = draw.ellipse if rng.random() < 0.5 else draw.rectangle
        shape((x0, y0, x1, y1), fill=colour())
    return image


def image_bytes(image: Image.Image, fmt: str = "PNG", quality: int = 90) -> bytes:
    buf = io.BytesIO()
    if fmt == "JPEG":
        image.convert("RGB").save(buf, fmt, quality=quality)
    else:
        image.save(buf, fmt)
    return buf.getvalue()


def reencoded(image: Image.Image, scale: float = 0.5, quality: int = 70) -> bytes:
    """A resized JPEG copy: what a re-upload of a known image usually looks like."""
    w, h = image.size
    return image_bytes(image.resize((int(w * scale), int(h * scale))), "JPEG", quality)


def cropped(image: Image.Image, fraction: float = 0.01) -> bytes:
    w, h = image.size
    dx, dy = max(1, int(w * fraction)), max(1, int(h * fraction))
    return image_bytes(image.crop((dx, dy, w - dx, h - dy)), "PNG")


def make_gif(seeds: list[int], frame_ms: int = 1000, size: tuple[int, int] = (240, 180)) -> bytes:
    frames = [make_image(s, size).convert("P", palette=Image.Palette.ADAPTIVE) for s in seeds]
    buf = io.BytesIO()
    frames[0].save(buf, "GIF", save_all=True, append_images=frames[1:], duration=frame_ms, loop=0)
    return buf.getvalue()


def make_video(
    seeds: list[int], seconds_each: float = 1.0, fps: int = 4, size: tuple[int, int] = (320, 240)
) -> bytes:
    """A small deterministic MP4: each seed's image fills ``seconds_each`` seconds."""
    import av

    buf = io.BytesIO()
    with av.open(buf, mode="w", format="mp4") as container:
        codec = "libx264" if "libx264" in av.codecs_available else "mpeg4"
        stream: Any = container.add_stream(codec, rate=fps)
        stream.width, stream.height = size
        stream.pix_fmt = "yuv420p"
        if codec == "libx264":
            stream.options = {"preset": "ultrafast", "tune": "stillimage", "crf": "23"}
        for seed in seeds:
            frame = av.VideoFrame.from_image(make_image(seed, size))  # type: ignore[no-untyped-call]
            for _ in range(max(1, round(seconds_each * fps))):
                for packet in stream.encode(frame):
                    container.mux(packet)
        for packet in stream.encode():
            container.mux(packet)
    return buf.getvalue()


def _chunk(kind: bytes, data: bytes) -> bytes:
    return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))


def bomb_png(width: int = 30_000, height: int = 30_000) -> bytes:
    """A decompression bomb: a valid 1-bit grayscale PNG of width x height black pixels, about
    110 KB that would decode to 900 MB (Pillow keeps a byte per pixel). Written row by row, never
    held decoded."""
    rows, block = divmod(height, 1000)
    row = b"\x00" * (1 + (width + 7) // 8)  # filter byte + packed bits
    packer = zlib.compressobj(9)
    idat = b"".join(packer.compress(row * 1000) for _ in range(rows)) + packer.compress(row * block)
    idat += packer.flush()
    header = struct.pack(">IIBBBBB", width, height, 1, 0, 0, 0, 0)
    return b"\x89PNG\r\n\x1a\n" + _chunk(b"IHDR", header) + _chunk(b"IDAT", idat) + _chunk(b"IEND", b"")
