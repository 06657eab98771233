"""PDQ matching as the simulator uses it: near-duplicates match, unrelated images do not."""

from __future__ import annotations

from PIL import Image

from moderation_devtools.samples import cropped, make_image, reencoded
from moderation_simulator import pdq

SEEDS = range(10)


def h(image: Image.Image) -> int:
    return pdq.hash_image(image).value


def best(query: Image.Image, reference: int) -> int:
    return min(pdq.distance(reference, v.value) for v in pdq.hash_variants(query))


def test_resized_and_reencoded_copies_match() -> None:
    for seed in SEEDS:
        original = make_image(seed)
        copy = pdq.open_image(reencoded(original))
        assert best(copy, h(original)) <= pdq.MATCH_DISTANCE, seed


def test_slightly_cropped_copies_match() -> None:
    for seed in SEEDS:
        original = make_image(seed)
        assert best(pdq.open_image(cropped(original, 0.01)), h(original)) <= pdq.MATCH_DISTANCE, seed


def test_rotated_and_flipped_copies_match_through_dihedral_variants() -> None:
    for seed in SEEDS:
        original = make_image(seed)
        for op in (Image.Transpose.FLIP_LEFT_RIGHT, Image.Transpose.ROTATE_90, Image.Transpose.ROTATE_180):
            assert best(original.transpose(op), h(original)) <= pdq.MATCH_DISTANCE, (seed, op)


def test_unrelated_images_do_not_match() -> None:
    hashes = [h(make_image(seed)) for seed in SEEDS]
    for i, a in enumerate(hashes):
        for b in hashes[i + 1 :]:
            assert pdq.distance(a, b) > pdq.MATCH_DISTANCE * 2


def test_flat_images_have_unusable_quality() -> None:
    assert not pdq.hash_image(Image.new("RGB", (200, 200), (90, 90, 90))).usable
    assert pdq.hash_image(make_image(1)).usable


def test_hex_round_trip_and_corrupt_bytes() -> None:
    value = h(make_image(3))
    assert pdq.from_hex(pdq.to_hex(value)) == value
    try:
        pdq.open_image(b"not an image")
    except pdq.CorruptMedia as exc:
        assert "cannot decode image" in str(exc)
    else:
        raise AssertionError("corrupt bytes decoded")
