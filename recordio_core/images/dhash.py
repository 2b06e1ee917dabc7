"""A 64-bit difference hash (dHash) of decoded images, and grouping hashes within a Hamming
distance without comparing all pairs.

**The hash** (`dhash`): the hashes of one dataset must all be made the same way (hashes made
with different filters differ by ~6 bits on average, up to 22: shared/docs/jpeg-notes.md), so
there is exactly one path, whatever the image and whatever else is installed:

1. the image as packed: decoded, upright, cropped and resized, just before it is encoded (so
   its pixels are at hand and the same size for every image of a build; with pass-through and
   `verify="decode"`, the decoded file turned upright by its EXIF orientation);
2. a 72x64 grid of nearest samples (Pillow's `resize(NEAREST)`: one sample per output pixel,
   cheap at any input size);
3. gray by Pillow's ITU-R 601-2 luma (`convert("L")`; 16-bit samples keep their high byte);
4. the 8x8 block means of that grid (Pillow's `reduce(8)`): a 9x8 thumbnail;
5. bit `8 * row + col` (from the most significant) is set when thumbnail pixel `(row, col)` is
   darker than its right neighbour `(row, col + 1)`.

It works on 72x64 pixels or fewer whatever the image size; measured inside the packer on the
bench corpus it still costs ~0.2 ms per image (~5 % of the packing CPU: five Pillow calls on
cold caches), which is why near-duplicate detection is opt-in. Re-encoded or resized copies of
a photo land within a few bits of each other; hashes of one build are comparable, hashes of
builds with other crop/resize parameters are not. A flat image (sky, blank page) has almost no set
bits: hashes with `popcount <= FLAT_BITS` carry no information and never match anything.

**Grouping** (`near_groups`): multi-index hashing. With threshold `t`, the 64 bits are cut into
`m = t // 2 + 1` bands; two hashes within `t` bits differ in at most one bit in at least one band
(pigeonhole: `m * 2 > t`). For every band, each hash probes the sorted band values for its own
value and its one-bit neighbours (`1 + width` binary searches, vectorised over all hashes),
and only the pairs found are compared in full. For t = 3 that is 2 bands of 32 bits: 1.28 M
random hashes give ~10^4 candidate pairs instead of 8 * 10^11 (measured: 16 s for 1.28 M
hashes on one core at t = 3, 32 s at t = 4 or 5; t = 6 would need 16-bit bands and ~30x
more candidates, hence `MAX_DISTANCE`). Groups are the connected components of the matched
pairs.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
from PIL import Image

GRID = (72, 64)  # nearest samples (w, h): 8x8 per cell of the 9x8 thumbnail
FLAT_BITS = 4  # hashes with at most this many set bits never match (flat images)
MAX_DISTANCE = 5  # beyond, 64-bit hashes need bands too narrow to stay sparse at 1 M images
EXIF_TRANSPOSE = {  # EXIF orientation (2-8) -> the transpose that makes the image upright
    2: Image.Transpose.FLIP_LEFT_RIGHT,
    3: Image.Transpose.ROTATE_180,
    4: Image.Transpose.FLIP_TOP_BOTTOM,
    5: Image.Transpose.TRANSPOSE,
    6: Image.Transpose.ROTATE_270,
    7: Image.Transpose.TRANSVERSE,
    8: Image.Transpose.ROTATE_90,
}
_SIXTEEN_BIT = ("I;16", "I;16B", "I;16L", "I;16N", "I")


def dhash(im: Image.Image, orientation: int = 1) -> int:
    """The dHash (an int in [0, 2**64)) of the decoded image `im`, seen upright after the EXIF
    `orientation` (1-8) is applied (the image itself is not transposed: only the samples)."""
    w, h = GRID
    rotated = orientation in (5, 6, 7, 8)
    grid = im.resize((h, w) if rotated else (w, h), Image.Resampling.NEAREST)
    if orientation in EXIF_TRANSPOSE:
        grid = grid.transpose(EXIF_TRANSPOSE[orientation])
    if grid.mode in _SIXTEEN_BIT:
        grid = Image.fromarray((np.asarray(grid).astype(np.int64) >> 8).astype(np.uint8), "L")
    elif grid.mode == "P":
        grid = grid.convert("RGB")
    if grid.mode != "L":
        grid = grid.convert("L")
    return dhash_from_thumbnail(grid.reduce(8).tobytes())


def dhash_from_thumbnail(pixels: bytes) -> int:
    """The dHash of a 9x8 gray thumbnail (72 bytes, row by row): bit `8 * row + col`, from
    the most significant, is set when pixel `(row, col)` is darker than `(row, col + 1)`."""
    if len(pixels) != 72:
        raise ValueError(f"expected 72 bytes (9x8 gray pixels), got {len(pixels)}")
    a = np.frombuffer(pixels, dtype=np.uint8).reshape(8, 9)
    return int.from_bytes(np.packbits(a[:, :-1] < a[:, 1:]).tobytes(), "big")


def hamming(a: int, b: int) -> int:
    return (a ^ b).bit_count()


# --------------------------------------------------------------------------- grouping


def bands(distance: int) -> list[tuple[int, int]]:
    """`(shift, width)` of the `distance // 2 + 1` bands the 64 bits are cut into."""
    if isinstance(distance, bool) or not isinstance(distance, int):
        raise ValueError(f"distance must be an int, got {distance!r}")
    if not 0 <= distance <= MAX_DISTANCE:
        raise ValueError(f"distance must be between 0 and {MAX_DISTANCE} bits, got {distance}")
    m = distance // 2 + 1
    widths = [64 // m + (1 if i < 64 % m else 0) for i in range(m)]
    out, shift = [], 64
    for width in widths:
        shift -= width
        out.append((shift, width))
    return out


def _popcount(x: np.ndarray) -> np.ndarray:
    """Set bits of each uint64."""
    x = x - ((x >> np.uint64(1)) & np.uint64(0x5555555555555555))
    x = (x & np.uint64(0x3333333333333333)) + ((x >> np.uint64(2)) & np.uint64(0x3333333333333333))
    x = (x + (x >> np.uint64(4))) & np.uint64(0x0F0F0F0F0F0F0F0F)
    return (x * np.uint64(0x0101010101010101)) >> np.uint64(56)


def near_pairs(hashes: np.ndarray, distance: int) -> np.ndarray:
    """`(k, 2)` int64 array of index pairs `i < j` with `hamming(h[i], h[j]) <= distance`,
    sorted, each once; flat hashes (`popcount <= FLAT_BITS`) take part in none."""
    h = np.asarray(hashes, dtype=np.uint64).ravel()
    plan = bands(distance)
    radius = 1 if distance >= 1 else 0
    keep = np.flatnonzero(_popcount(h) > FLAT_BITS)
    hk = h[keep]
    found: list[np.ndarray] = []
    if len(hk) < 2:
        return np.zeros((0, 2), dtype=np.int64)
    for shift, width in plan:
        mask = np.uint64((1 << width) - 1)
        v = (hk >> np.uint64(shift)) & mask
        order = np.argsort(v, kind="stable")
        sv = v[order]
        # end of the run of equal values starting at each sorted position
        starts = np.flatnonzero(np.r_[True, sv[1:] != sv[:-1]])
        run_end = np.repeat(np.r_[starts[1:], len(sv)], np.diff(np.r_[starts, len(sv)]))
        flips = [0] + ([1 << b for b in range(width)] if radius else [])
        for flip in flips:
            # probing in sorted order keeps the binary searches cache-friendly: flipping one
            # bit only swaps blocks of the sorted values, so the queries stay nearly sorted
            q = sv ^ np.uint64(flip)
            lo = np.searchsorted(sv, q, side="left")
            inside = lo < len(sv)
            hit = np.zeros(len(q), dtype=bool)
            hit[inside] = sv[lo[inside]] == q[inside]
            qi = np.flatnonzero(hit)
            if not len(qi):
                continue
            lo_h = lo[qi]
            counts = run_end[lo_h] - lo_h
            left = order[np.repeat(qi, counts)]
            offs = np.arange(counts.sum()) - np.repeat(np.cumsum(counts) - counts, counts)
            right = order[np.repeat(lo_h, counts) + offs]
            sel = left < right
            left, right = left[sel], right[sel]
            close = _popcount(hk[left] ^ hk[right]) <= np.uint64(distance)
            if close.any():
                found.append(np.stack([left[close], right[close]], axis=1))
    if not found:
        return np.zeros((0, 2), dtype=np.int64)
    pairs = np.unique(np.concatenate(found), axis=0)
    return keep[pairs].astype(np.int64)


def components(n: int, pairs: np.ndarray) -> list[list[int]]:
    """Connected components (size >= 2) of the graph on `range(n)` with edges `pairs`:
    each sorted, the list sorted by first member."""
    parent = list(range(n))

    def find(i: int) -> int:
        while parent[i] != i:
            parent[i] = parent[parent[i]]
            i = parent[i]
        return i

    for a, b in np.asarray(pairs).tolist():
        ra, rb = find(a), find(b)
        if ra != rb:
            parent[max(ra, rb)] = min(ra, rb)
    groups: dict[int, list[int]] = {}
    for i in sorted({int(x) for x in np.asarray(pairs).ravel().tolist()}):
        groups.setdefault(find(i), []).append(i)
    return sorted((g for g in groups.values() if len(g) > 1), key=lambda g: g[0])


def near_groups(hashes: Sequence[int] | np.ndarray, distance: int) -> list[list[int]]:
    """Groups of indexes whose hashes are linked by chains of pairs within `distance` bits."""
    h = np.asarray(hashes, dtype=np.uint64)
    return components(len(h), near_pairs(h, distance))
