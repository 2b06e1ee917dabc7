"""`imghead.header_size`: a clean JPEG/PNG header gives Pillow's own size; anything else None.

The promise that matters: whatever `header_size` accepts, Pillow opens with the same size
(so `verify="header"` keeps its outcomes), checked on every test image, the bad-file
catalogue and thousands of mutated headers.
"""

from __future__ import annotations

import io
import warnings

import badfiles
import imagecases as ic
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from PIL import Image

from recordio_core.images.image import ImageError, ImageOptions, transform_image
from recordio_core.images.imghead import header_size, jpeg_frame


def _pillow_size(data: bytes) -> tuple[str, int, int] | None:
    """What Pillow's open says, without its pixel limit (callers apply the limits)."""
    limit, Image.MAX_IMAGE_PIXELS = Image.MAX_IMAGE_PIXELS, None
    try:
        with Image.open(io.BytesIO(data)) as im:
            return str(im.format), im.width, im.height
    except Exception:
        return None
    finally:
        Image.MAX_IMAGE_PIXELS = limit


@pytest.mark.parametrize(
    ("make", "expected"),
    [
        (lambda: ic.rgb_jpeg(64, 48), ("JPEG", 64, 48)),
        (lambda: ic.gray_jpeg(31, 17), ("JPEG", 31, 17)),
        (lambda: ic.cmyk_jpeg(20, 10), ("JPEG", 20, 10)),
        (lambda: ic.ycck_jpeg(20, 10), ("JPEG", 20, 10)),
        (lambda: ic.exif_jpeg(6, 40, 30), ("JPEG", 40, 30)),  # stored size, not upright
        (lambda: ic.solid_jpeg(1, 1), ("JPEG", 1, 1)),
        (lambda: ic.encode(Image.new("RGB", (70, 9)), "JPEG", progressive=True), ("JPEG", 70, 9)),
        (lambda: ic.rgb_png(64, 48), ("PNG", 64, 48)),
        (lambda: ic.gray16_png(5, 6), ("PNG", 5, 6)),
        (lambda: ic.rgb16_png(5, 6), ("PNG", 5, 6)),
        (lambda: ic.palette_png(transparency=True), ("PNG", 64, 48)),
        (lambda: ic.rgba_png(3, 4), ("PNG", 3, 4)),
        (lambda: ic.la_png(3, 4), ("PNG", 3, 4)),
        (lambda: ic.encode(Image.new("1", (9, 9)), "PNG"), ("PNG", 9, 9)),
        (lambda: ic.encode(Image.new("RGB", (8, 8)), "PNG", interlace=1), None),  # not written
        (lambda: b"", None),
        (lambda: b"\xff\xd8\xff", None),
        (lambda: ic.rgb_jpeg()[:20], None),  # cut inside the headers
        (lambda: ic.rgb_png()[:30], None),
        (lambda: ic.encode(Image.new("RGB", (8, 8)), "GIF"), None),  # other formats: Pillow
        (lambda: ic.encode(Image.new("RGB", (8, 8)), "BMP"), None),
        (lambda: b"<!DOCTYPE html>", None),
    ],
)
def test_header_size_table(make, expected):
    data = make()
    got = header_size(data)
    if expected is not None:
        assert got == expected
        assert _pillow_size(data) == expected
    elif got is not None:  # only allowed when Pillow agrees (e.g. interlaced PNG)
        assert got == _pillow_size(data)


@pytest.mark.filterwarnings("ignore::PIL.Image.DecompressionBombWarning")
def test_the_bad_file_catalogue_keeps_its_outcomes(tmp_path):
    for case in badfiles.CASES:
        data = case.make()
        got = header_size(data)
        if got is not None:
            assert _pillow_size(data) == got, case.name
    # and pass-through's header check still rejects every 'reject' case with Pillow's reason
    opts = ImageOptions(pass_through=True, verify="header", max_pixels=10_000_000)
    for case in badfiles.CASES:
        if case.expect != "reject" or case.name.startswith("truncated"):
            continue  # truncated bodies have clean headers: only verify=decode sees them
        with pytest.raises(ImageError):
            transform_image(case.make(), opts)


def test_pass_through_header_check_honours_both_pixel_limits():
    data = ic.rgb_jpeg(20, 10)
    assert transform_image(data, ImageOptions(pass_through=True, max_pixels=200)) == data
    with pytest.raises(ImageError, match="over the limit of 199"):
        transform_image(data, ImageOptions(pass_through=True, max_pixels=199))


def _mutated(seed: bytes, edits: list[tuple[int, int]], cut: int) -> bytes:
    """`seed` with the bytes at `edits` positions changed, then cut after `cut` bytes."""
    data = bytearray(seed)
    for pos, value in edits:
        if pos < len(data):
            data[pos] = value
    return bytes(data[: max(cut, 2)]) if cut < len(data) else bytes(data)


_SEEDS = [ic.rgb_jpeg(33, 21), ic.cmyk_jpeg(9, 7), ic.rgb_png(12, 5), ic.palette_png()]


@settings(max_examples=1500, deadline=None)
@given(
    st.sampled_from(_SEEDS),
    st.lists(st.tuples(st.integers(0, 700), st.integers(0, 255)), min_size=1, max_size=4),
    st.integers(0, 800),
)
def test_whatever_it_accepts_pillow_opens_with_the_same_size(seed, edits, cut):
    data = _mutated(seed, edits, cut)
    got = header_size(data)
    if got is not None:
        assert _pillow_size(data) == got


_MODES = {1: "L", 3: "RGB", 4: "CMYK"}


def _pillow_frame(data: bytes) -> tuple[str, int, int, bool] | None:
    """Pillow's mode, size and whether it saw EXIF; its warnings about the mutated EXIF it
    reads for the resolution ("Corrupt EXIF data", ...) are beside the point here."""
    limit, Image.MAX_IMAGE_PIXELS = Image.MAX_IMAGE_PIXELS, None
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", UserWarning)
            with Image.open(io.BytesIO(data)) as im:
                return im.mode, im.width, im.height, "exif" in im.info
    except Exception:
        return None
    finally:
        Image.MAX_IMAGE_PIXELS = limit


@pytest.mark.parametrize(
    ("make", "components", "exif"),
    [
        (lambda: ic.rgb_jpeg(64, 48), 3, False),
        (lambda: ic.gray_jpeg(31, 17), 1, False),
        (lambda: ic.cmyk_jpeg(20, 10), 4, False),
        (lambda: ic.ycck_jpeg(20, 10), 4, False),
        (lambda: ic.exif_jpeg(6), 3, True),
        (lambda: ic.exif_jpeg(1), 3, True),
        (lambda: ic.solid_jpeg(1, 1), 3, False),
    ],
)
def test_jpeg_frame_table(make, components, exif):
    data = make()
    frame = jpeg_frame(data)
    assert frame is not None
    assert (frame.components, frame.exif) == (components, exif)
    assert _pillow_frame(data) == (_MODES[components], frame.width, frame.height, exif)


@settings(max_examples=1000, deadline=None)
@given(
    st.sampled_from([ic.rgb_jpeg(33, 21), ic.exif_jpeg(6, 20, 12), ic.gray_jpeg(9, 7)]),
    st.lists(st.tuples(st.integers(0, 400), st.integers(0, 255)), min_size=1, max_size=4),
    st.integers(0, 800),
)
def test_whatever_jpeg_frame_accepts_pillow_opens_the_same_way(seed, edits, cut):
    """Same size and mode as Pillow's open, and EXIF never missed (a re-encode that skips
    Pillow's open must not skip a rotation)."""
    data = _mutated(seed, edits, cut)
    frame = jpeg_frame(data)
    if frame is not None:
        pillow = _pillow_frame(data)
        assert pillow is not None
        mode, width, height, exif = pillow
        assert (mode, width, height) == (_MODES[frame.components], frame.width, frame.height)
        assert frame.exif or not exif


def _outcome(data: bytes, opts: ImageOptions) -> object:
    try:
        return transform_image(data, opts)
    except ImageError as exc:
        return f"reject: {exc}"


@pytest.mark.filterwarnings("ignore::UserWarning")  # Pillow, on the mutated EXIF it reads
@settings(max_examples=300, deadline=None)
@given(
    st.sampled_from([ic.rgb_jpeg(40, 30), ic.exif_jpeg(6, 20, 12), ic.gray_jpeg(25, 19)]),
    st.lists(st.tuples(st.integers(0, 2000), st.integers(0, 255)), max_size=3),
    st.integers(0, 2500),
    st.sampled_from([(1, 24), (0, 16), (-1, 0)]),
)
def test_re_encode_without_pillows_open_changes_no_outcome(seed, edits, cut, color_resize):
    """A re-encode that reads the JPEG header itself (`_jpeg_without_pillow`) gives the same
    bytes, or the same reject, as one that lets Pillow open the file, on damaged files too."""
    from recordio_core.images import image_fast

    data = _mutated(seed, edits, cut)
    color, resize = color_resize
    opts = ImageOptions(resize=resize, color=color, quality=90)
    fast = _outcome(data, opts)
    real = image_fast._jpeg_without_pillow
    declined = []  # the stub declines, and was asked: the patch applies
    image_fast._jpeg_without_pillow = lambda *a: declined.append(1)
    try:
        assert _outcome(data, opts) == fast
        assert declined
    finally:
        image_fast._jpeg_without_pillow = real
