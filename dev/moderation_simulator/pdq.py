"""PDQ perceptual hashing (Meta's reference implementation through the ``pdqhash`` package).

A hash is a 256-bit int; two images match when their Hamming distance is at most ``MATCH_DISTANCE``
for any of the eight dihedral variants (rotations and flips) of the query. Hashes of quality below
``MIN_QUALITY`` (flat, featureless images) are discarded, as the PDQ documentation advises.
"""

from __future__ import annotations

import hashlib
import io
from collections import OrderedDict
from dataclasses import dataclass

import numpy as np
import pdqhash
from PIL import Image, ImageSequence, UnidentifiedImageError

__all__ = [
    "MATCH_DISTANCE",
    "MIN_QUALITY",
    "CorruptMedia",
    "PdqHash",
    "decode_frames",
    "distance",
    "from_hex",
    "hash_image",
    "hash_variants",
    "to_hex",
]

MATCH_DISTANCE = 31
MIN_QUALITY = 50


class CorruptMedia(ValueError):
    """The bytes are not an image this simulator can decode."""


@dataclass(frozen=True, slots=True)
class PdqHash:
    value: int
    quality: int

    @property
    def usable(self) -> bool:
        return self.quality >= MIN_QUALITY


def _pack(bits: np.ndarray) -> int:
    return int.from_bytes(np.packbits(bits.astype(np.uint8)).tobytes(), "big")


def _rgb(image: Image.Image) -> np.ndarray:
    return np.asarray(image.convert("RGB"), dtype=np.uint8)


def hash_image(image: Image.Image) -> PdqHash:
    bits, quality = pdqhash.compute(_rgb(image))
    return PdqHash(_pack(bits), int(quality))


_VARIANTS: OrderedDict[bytes, list[PdqHash]] = OrderedDict()
_VARIANTS_KEPT = 4096


def hash_variants(image: Image.Image) -> list[PdqHash]:
    """The eight dihedral variants' hashes, computed in one pass; remembered by pixel content, since
    one upload is hashed by several endpoints (CSAM, then the custom index) and PDQ dominates the
    simulator's CPU."""
    rgb = _rgb(image)
    key = hashlib.blake2b(rgb.tobytes(), digest_size=16).digest() + repr(rgb.shape).encode()
    found = _VARIANTS.get(key)
    if found is not None:
        _VARIANTS.move_to_end(key)
        return found
    all_bits, quality = pdqhash.compute_dihedral(rgb)
    found = _VARIANTS[key] = [PdqHash(_pack(b), int(quality)) for b in all_bits]
    if len(_VARIANTS) > _VARIANTS_KEPT:
        _VARIANTS.popitem(last=False)
    return found


def distance(a: int, b: int) -> int:
    return (a ^ b).bit_count()


def to_hex(value: int) -> str:
    return f"{value:064x}"


def from_hex(text: str) -> int:
    if len(text) != 64:
        raise ValueError("a PDQ hash is 64 hex digits")
    return int(text, 16)


def open_image(data: bytes) -> Image.Image:
    try:
        image = Image.open(io.BytesIO(data))
        image.load()
    except (UnidentifiedImageError, OSError, ValueError, Image.DecompressionBombError) as exc:
        raise CorruptMedia(f"cannot decode image: {exc}") from None
    return image


def decode_frames(data: bytes, fps: float = 1.0) -> list[tuple[float, Image.Image]]:
    """Frames of an image or animated GIF sampled at ``fps``: [(time_seconds, frame)]."""
    image = open_image(data)
    if not getattr(image, "is_animated", False):
        return [(0.0, image.convert("RGB"))]
    frames: list[tuple[float, Image.Image]] = []
    t = 0.0
    next_sample = 0.0
    for frame in ImageSequence.Iterator(image):
        if t >= next_sample:
            frames.append((round(t, 3), frame.convert("RGB")))
            next_sample += 1.0 / fps
        t += float(frame.info.get("duration", 100)) / 1000.0
    return frames
