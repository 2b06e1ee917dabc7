"""The difference hash and near-duplicate grouping (recordio_core.images.dhash): table tests, the
hash's robustness to re-encoding and resizing, and a scale test on synthetic hashes."""

from __future__ import annotations

import io

import numpy as np
import pytest
from PIL import Image

from recordio_core.images.dhash import (
    FLAT_BITS,
    bands,
    components,
    dhash,
    dhash_from_thumbnail,
    hamming,
    near_groups,
    near_pairs,
)


def textured(seed: int, w: int = 320, h: int = 240) -> Image.Image:
    """A photo-like image with structure at the scale of a 9x8 thumbnail."""
    rng = np.random.default_rng(seed)
    coarse = rng.uniform(0, 255, size=(6, 8, 3)).astype(np.uint8)
    im = Image.fromarray(coarse).resize((w, h), Image.Resampling.BICUBIC)
    arr = np.asarray(im).astype(np.float32) + rng.normal(0, 6, size=(h, w, 3))
    return Image.fromarray(np.clip(arr, 0, 255).astype(np.uint8))


def reencode(im: Image.Image, quality: int) -> Image.Image:
    buf = io.BytesIO()
    im.save(buf, format="JPEG", quality=quality)
    return Image.open(io.BytesIO(buf.getvalue())).convert("RGB")


@pytest.mark.parametrize(
    ("distance", "expected"),
    [
        (0, [(0, 64)]),
        (1, [(0, 64)]),
        (2, [(32, 32), (0, 32)]),
        (3, [(32, 32), (0, 32)]),
        (4, [(42, 22), (21, 21), (0, 21)]),
        (5, [(42, 22), (21, 21), (0, 21)]),
    ],
)
def test_bands_cover_64_bits_and_satisfy_the_pigeonhole(distance, expected):
    assert bands(distance) == expected
    m = len(expected)
    assert m * (2 if distance else 1) > distance  # some band within 1 bit (0 bits for t=0)


@pytest.mark.parametrize("bad", [-1, 6, 1.5, True, "3"])
def test_bands_refuse_bad_distances(bad):
    with pytest.raises(ValueError, match="distance"):
        bands(bad)


@pytest.mark.parametrize(
    ("pixels", "expected"),
    [
        (bytes(range(9)) * 8, 2**64 - 1),  # rising left to right: every bit set
        (bytes(range(8, -1, -1)) * 8, 0),  # falling: none
        (bytes([5] * 72), 0),  # flat: none
        (bytes([0, 1] + [0] * 7) + bytes(63), 1 << 63),  # only the first pair rises
    ],
)
def test_dhash_bits_from_a_thumbnail(pixels, expected):
    assert dhash_from_thumbnail(pixels) == expected


def test_dhash_from_thumbnail_wants_72_bytes():
    with pytest.raises(ValueError, match="72 bytes"):
        dhash_from_thumbnail(b"\0" * 71)


def test_copies_stay_close_and_different_pictures_do_not():
    base = textured(1)
    h = dhash(base)
    assert FLAT_BITS < h.bit_count() < 64 - FLAT_BITS
    assert hamming(h, dhash(reencode(base, 75))) <= 3
    assert hamming(h, dhash(base.resize((160, 120), Image.Resampling.BILINEAR))) <= 3
    assert hamming(h, dhash(base.convert("L"))) <= 1  # gray: the same luma
    others = [dhash(textured(seed)) for seed in range(2, 12)]
    assert min(hamming(h, o) for o in others) > 6


def test_orientation_hashes_the_upright_picture():
    base = textured(3)
    rotated = base.transpose(Image.Transpose.ROTATE_90)  # stored sideways, EXIF 6 restores it
    assert hamming(dhash(base), dhash(rotated, orientation=6)) <= 2


@pytest.mark.parametrize("mode", ["L", "RGBA", "LA", "P", "I;16", "CMYK"])
def test_every_mode_hashes(mode):
    im = textured(4)
    if mode == "I;16":
        im = Image.fromarray(np.asarray(im.convert("L")).astype(np.uint16) * 257)
    else:
        im = im.convert(mode)
    assert 0 <= dhash(im) < 2**64


def brute_force(hashes, distance):
    out = []
    for i in range(len(hashes)):
        for j in range(i + 1, len(hashes)):
            a, b = int(hashes[i]), int(hashes[j])
            if (
                a.bit_count() > FLAT_BITS
                and b.bit_count() > FLAT_BITS
                and hamming(a, b) <= distance
            ):
                out.append((i, j))
    return out


@pytest.mark.parametrize("distance", [0, 1, 2, 3, 4, 5])
def test_near_pairs_match_brute_force(distance):
    rng = np.random.default_rng(distance)
    base = rng.integers(0, 2**63, size=60, dtype=np.uint64) * np.uint64(2) + np.uint64(1)
    hashes = list(base)
    for i in range(0, 60, 3):  # near copies at 0..6 bits
        flips = rng.choice(64, size=int(rng.integers(0, 7)), replace=False)
        h = int(base[i])
        for f in flips:
            h ^= 1 << int(f)
        hashes.append(np.uint64(h))
    hashes += [np.uint64(0), np.uint64(1), np.uint64(0b1111)]  # flat: never matched
    arr = np.array(hashes, dtype=np.uint64)
    got = [tuple(p) for p in near_pairs(arr, distance).tolist()]
    assert got == brute_force(arr, distance)


def test_flat_hashes_never_match_even_when_equal():
    flat = [0, 0, 1, 1 << 63, 0b1111, 0b1111]
    assert near_groups(flat, 5) == []
    assert near_groups([0b11111, 0b11111], 0) == [[0, 1]]  # five set bits: informative


@pytest.mark.parametrize(
    ("n", "pairs", "expected"),
    [
        (5, [], []),
        (5, [(0, 1)], [[0, 1]]),
        (6, [(3, 4), (0, 1), (1, 2)], [[0, 1, 2], [3, 4]]),
        (6, [(4, 5), (0, 5)], [[0, 4, 5]]),
    ],
)
def test_components(n, pairs, expected):
    assert components(n, np.array(pairs, dtype=np.int64).reshape(-1, 2)) == expected


def test_grouping_scales_without_all_pairs():
    """200,000 random hashes (2 * 10^10 pairs) with 500 planted near copies: found in seconds,
    none invented. `near_groups` on 1.28 M hashes takes ~16 s (module notes)."""
    rng = np.random.default_rng(7)
    n = 200_000
    hashes = rng.integers(0, 2**63, size=n, dtype=np.uint64) * np.uint64(2) + rng.integers(
        0, 2, size=n, dtype=np.uint64
    )
    src = rng.choice(n, size=500, replace=False)
    copies = hashes[src].copy()
    for _ in range(3):
        copies ^= np.uint64(1) << rng.integers(0, 64, size=500).astype(np.uint64)
    groups = near_groups(np.concatenate([hashes, copies]), 3)
    planted = {(int(s), n + k) for k, s in enumerate(src)}
    found = {tuple(g) for g in groups}
    assert planted <= found
    assert len(found - planted) <= 2  # random hashes within 3 bits: ~10^-11 per pair
