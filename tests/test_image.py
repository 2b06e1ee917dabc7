"""recordio_core.images.image: MXNet's size arithmetic, options, colour modes, rejects, and pixels
against OpenCV (the MXNet venv's cv2 is the ground truth)."""

from __future__ import annotations

import io
import json
from pathlib import Path

import numpy as np
import pytest
from imagecases import (
    BAD,
    GOOD,
    encode,
    exif_jpeg,
    png_header_only,
    rgb_jpeg,
    solid_jpeg,
)
from PIL import Image, ImageOps

from recordio_core.images.image import (
    DEFAULT_MAX_PIXELS,
    ImageError,
    ImageOptions,
    center_crop_box,
    resize_size,
    transform_image,
    verify_image,
)


def decode(data: bytes) -> Image.Image:
    im = Image.open(io.BytesIO(data))
    im.load()
    return im


# --------------------------------------------------------------------------- arithmetic


@pytest.mark.parametrize(
    "w, h, resize, want",
    [
        (500, 375, 256, (341, 256)),  # landscape: 500 * 256 // 375
        (375, 500, 256, (256, 341)),  # portrait
        (256, 256, 256, (256, 256)),
        (300, 300, 100, (100, 100)),  # a square counts as landscape
        (333, 500, 224, (224, 336)),  # floor, not round: 500 * 224 / 333 = 336.3
        (500, 333, 224, (336, 224)),
        (1, 1, 256, (256, 256)),  # enlarging
        (4000, 20, 256, (51200, 256)),
        (20, 4000, 256, (256, 51200)),
        (640, 480, 0, (640, 480)),  # 0 keeps the size
        (641, 479, 1, (1, 1)),
    ],
)
def test_resize_size_is_mxnets_arithmetic(w, h, resize, want):
    assert resize_size(w, h, resize) == want
    if resize:  # im2rec.py's own expression, on an array of shape (h, w)
        mx = (resize, h * resize // w) if h > w else (w * resize // h, resize)
        assert resize_size(w, h, resize) == mx


@pytest.mark.parametrize(
    "w, h, want",
    [
        (500, 375, (62, 0, 437, 375)),  # margin (500 - 375) // 2 = 62
        (375, 500, (0, 62, 375, 437)),
        (5, 2, (1, 0, 3, 2)),
        (3, 2, (0, 0, 2, 2)),  # odd difference: the margin rounds down
        (7, 7, (0, 0, 7, 7)),
        (1, 1, (0, 0, 1, 1)),
        (20, 4000, (0, 1990, 20, 2010)),
    ],
)
def test_center_crop_box(w, h, want):
    box = center_crop_box(w, h)
    assert box == want
    assert box[2] - box[0] == box[3] - box[1] == min(w, h)


@pytest.mark.parametrize("fn", [lambda: resize_size(0, 5, 10), lambda: center_crop_box(4, 0)])
def test_sizes_must_be_positive(fn):
    with pytest.raises(ValueError, match="positive"):
        fn()


# --------------------------------------------------------------------------- options


@pytest.mark.parametrize(
    "kwargs, match",
    [
        ({"resize": -1}, "resize must be an int >= 0"),
        ({"resize": 2.5}, "resize"),
        ({"color": 2}, "color must be 1"),
        ({"color": True}, "color"),
        ({"encoding": ".bmp"}, "encoding must be '.jpg' or '.png'"),
        ({"quality": 101}, "JPEG quality 0-100"),
        ({"quality": -1}, "JPEG quality 0-100"),
        ({"encoding": ".png", "quality": 95}, "PNG compression level 0-9"),
        ({"inter_method": 5}, "inter_method must be one of"),
        ({"verify": "full"}, "verify must be one of"),
        ({"max_pixels": 0}, "max_pixels must be a positive int or None"),
        ({"reducing_gap": 0.5}, "reducing_gap must be a number >= 1.0"),
        ({"center_crop": 1}, "center_crop must be True or False"),
        ({"pass_through": "yes"}, "pass_through must be True or False"),
    ],
)
def test_options_are_checked_up_front(kwargs, match):
    with pytest.raises(ValueError, match=match):
        ImageOptions(**kwargs)


def test_option_defaults_and_normalisation():
    o = ImageOptions()
    assert (o.resize, o.center_crop, o.color, o.encoding, o.quality) == (0, False, 1, ".jpg", 95)
    assert (o.pass_through, o.inter_method, o.verify) == (False, 1, "header")
    assert o.max_pixels == DEFAULT_MAX_PIXELS == Image.MAX_IMAGE_PIXELS
    assert ImageOptions(encoding=".JPEG").encoding == ".jpeg"
    assert ImageOptions(encoding=".PNG", quality=9).is_png
    assert ImageOptions(max_pixels=None, reducing_gap=None).reducing_gap is None


# --------------------------------------------------------------------------- colour modes

# decoded output mode for (input, color, encoding)
MODES = {
    "rgb_jpeg": {1: "RGB", 0: "L", -1: ("RGB", "RGB")},
    "rgb_png": {1: "RGB", 0: "L", -1: ("RGB", "RGB")},
    "gray_jpeg": {1: "RGB", 0: "L", -1: ("L", "L")},
    "cmyk_jpeg": {1: "RGB", 0: "L", -1: ("RGB", "RGB")},
    "ycck_jpeg": {1: "RGB", 0: "L", -1: ("RGB", "RGB")},
    "palette_png": {1: "RGB", 0: "L", -1: ("RGB", "RGB")},
    "palette_alpha_png": {1: "RGB", 0: "L", -1: ("RGB", "RGBA")},
    "rgba_png": {1: "RGB", 0: "L", -1: ("RGB", "RGBA")},
    "la_png": {1: "RGB", 0: "L", -1: ("RGB", "RGBA")},  # OpenCV: gray+alpha -> BGRA
    "gray16_png": {1: "RGB", 0: "L", -1: ("L", "I;16")},
    "rgb16_png": {1: "RGB", 0: "L", -1: ("RGB", "RGB")},
    "exif6_jpeg": {1: "RGB", 0: "L", -1: ("RGB", "RGB")},
}


@pytest.mark.parametrize("kind", sorted(MODES))
@pytest.mark.parametrize("color", [1, 0, -1])
@pytest.mark.parametrize("encoding", [".jpg", ".png"])
def test_inputs_are_normalised_to_the_requested_color(kind, color, encoding):
    data = GOOD[kind]()
    quality = 9 if encoding == ".png" else 90
    out = decode(
        transform_image(
            data, ImageOptions(resize=24, color=color, encoding=encoding, quality=quality)
        )
    )
    want = MODES[kind][color]
    if color == -1:
        want = want[encoding == ".png"]
    got = "I;16" if out.mode in ("I;16", "I") and want == "I;16" else out.mode
    assert got == want
    assert out.format == ("PNG" if encoding == ".png" else "JPEG")
    assert min(out.size) == 24


def test_sixteen_bit_keeps_the_high_byte_like_opencv():
    data = GOOD["gray16_png"]()
    src = np.asarray(decode(data)).astype(np.uint16)
    out = np.asarray(
        decode(transform_image(data, ImageOptions(color=0, encoding=".png", quality=1)))
    )
    assert np.array_equal(out, (src >> 8).astype(np.uint8))
    kept = decode(transform_image(data, ImageOptions(color=-1, encoding=".png", quality=1)))
    assert np.array_equal(np.asarray(kept).astype(np.uint16), src)


def test_lossless_round_trip_without_resize():
    data = GOOD["rgb_png"]()
    out = transform_image(data, ImageOptions(encoding=".png", quality=6))
    assert np.array_equal(np.asarray(decode(out)), np.asarray(decode(data)))


def test_gray_jpeg_in_colour_has_equal_channels():
    out = np.asarray(
        decode(transform_image(GOOD["gray_jpeg"](), ImageOptions(encoding=".png", quality=1)))
    )
    assert out.ndim == 3 and np.array_equal(out[..., 0], out[..., 1])
    assert np.array_equal(out[..., 1], out[..., 2])


@pytest.mark.parametrize("orientation", [2, 3, 4, 5, 6, 7, 8])
def test_exif_orientation_is_applied_for_colour_and_gray(orientation):
    data = exif_jpeg(orientation, 40, 30)
    for color, mode in ((1, "RGB"), (0, "L")):
        src = Image.open(io.BytesIO(data))
        src.draft(mode, None)  # gray straight from the JPEG's Y channel, as libjpeg gives OpenCV
        upright = ImageOps.exif_transpose(src)
        out = decode(transform_image(data, ImageOptions(color=color, encoding=".png", quality=1)))
        assert out.size == upright.size
        assert np.array_equal(np.asarray(out), np.asarray(upright.convert(mode)))
    # -1 is "unchanged": OpenCV's IMREAD_UNCHANGED ignores EXIF, and so do we
    raw = decode(transform_image(data, ImageOptions(color=-1, encoding=".png", quality=1)))
    assert raw.size == (40, 30)


def test_exif_rotation_happens_before_crop_and_resize():
    out = decode(transform_image(exif_jpeg(6, 80, 40), ImageOptions(resize=20)))
    assert out.size == (20, 40)  # upright 40x80 -> shorter side 20
    crop = decode(transform_image(exif_jpeg(6, 80, 40), ImageOptions(resize=20, center_crop=True)))
    assert crop.size == (20, 20)


def test_exif_rotation_with_dct_scaled_decoding():
    data = exif_jpeg(6, 1200, 800)  # upright 800x1200: decoded at 1/2, rotated, resized
    for crop, size in ((False, (100, 150)), (True, (100, 100))):
        fast = decode(transform_image(data, ImageOptions(resize=100, center_crop=crop)))
        full = decode(
            transform_image(data, ImageOptions(resize=100, center_crop=crop, reducing_gap=None))
        )
        assert fast.size == full.size == size
        diff = np.abs(np.asarray(fast).astype(int) - np.asarray(full).astype(int))
        assert diff.mean() < 8  # noisy synthetic photo: aliasing differs, the picture not


def test_one_pixel_and_extreme_aspect_ratios():
    one = decode(
        transform_image(solid_jpeg(1, 1), ImageOptions(resize=16, encoding=".png", quality=1))
    )
    assert one.size == (16, 16)
    px = np.asarray(one).reshape(-1, 3)
    assert (px == px[0]).all()  # a single colour stays a single colour
    wide = decode(transform_image(GOOD["wide_png"](), ImageOptions(resize=8)))
    assert wide.size == (4000 * 8 // 20, 8)
    tall = Image.new("RGB", (20, 4000), (1, 2, 3))
    buf = io.BytesIO()
    tall.save(buf, "PNG")
    out = decode(transform_image(buf.getvalue(), ImageOptions(resize=4, center_crop=True)))
    assert out.size == (4, 4)


def test_center_crop_without_resize_crops_like_im2rec_py():
    out = decode(transform_image(rgb_jpeg(64, 48), ImageOptions(center_crop=True)))
    assert out.size == (48, 48)


@pytest.mark.parametrize("method", [0, 1, 2, 3, 4, 9, 10])
@pytest.mark.parametrize("size", [(90, 60), (10, 7)])
def test_every_inter_method_gives_mxnets_size(method, size):
    opts = ImageOptions(resize=32, inter_method=method, encoding=".png", quality=1)
    out = decode(transform_image(rgb_jpeg(*size), opts))
    assert out.size == resize_size(*size, 32)
    again = decode(transform_image(rgb_jpeg(*size), opts))
    assert np.array_equal(np.asarray(out), np.asarray(again))  # 10 is reproducible too


def test_resize_is_plain_bilinear_like_opencv():
    """Halving a 2x2-periodic checkerboard with half-pixel centres averages each 2x2 block."""
    board = (np.indices((64, 64)).sum(axis=0) % 2 * 255).astype(np.uint8)
    buf = io.BytesIO()
    Image.fromarray(board).save(buf, "PNG")
    out = np.asarray(
        decode(
            transform_image(
                buf.getvalue(), ImageOptions(resize=32, color=0, encoding=".png", quality=1)
            )
        )
    )
    assert np.abs(out.astype(int) - 128).max() <= 1


def test_jpeg_quality_and_png_compression_are_honoured():
    data = GOOD["rgb_png"]()
    small = transform_image(data, ImageOptions(quality=10))
    big = transform_image(data, ImageOptions(quality=100))
    assert len(small) < len(big)
    fast = transform_image(data, ImageOptions(encoding=".png", quality=0))
    best = transform_image(data, ImageOptions(encoding=".png", quality=9))
    assert len(best) < len(fast)
    assert np.array_equal(np.asarray(decode(fast)), np.asarray(decode(best)))


def test_dct_scaled_decoding_keeps_the_exact_size_and_stays_close():
    yy, xx = np.mgrid[0:1200, 0:1600]
    smooth = np.stack([xx * 255 // 1600, yy * 255 // 1200, (xx + yy) * 255 // 2800], axis=2)
    data = encode(Image.fromarray(smooth.astype(np.uint8)), "JPEG", quality=90)
    full = decode(
        transform_image(
            data, ImageOptions(resize=100, reducing_gap=None, encoding=".png", quality=1)
        )
    )
    for gap in (1.0, 2.0):
        fast = decode(
            transform_image(
                data, ImageOptions(resize=100, reducing_gap=gap, encoding=".png", quality=1)
            )
        )
        assert fast.size == full.size == (133, 100)
        diff = np.abs(np.asarray(fast).astype(int) - np.asarray(full).astype(int))
        assert diff.mean() < 1.0
    crop = decode(transform_image(data, ImageOptions(resize=50, center_crop=True)))
    assert crop.size == (50, 50)


# --------------------------------------------------------------------------- rejects


@pytest.mark.parametrize("kind", sorted(BAD))
def test_bad_inputs_raise_image_error_with_a_reason(kind):
    make, word = BAD[kind]
    with pytest.raises(ImageError) as err:
        transform_image(make(), ImageOptions(resize=32))
    assert word.lower() in str(err.value).lower()
    assert len(str(err.value)) < 300


def test_a_png_named_jpg_is_just_an_image():
    out = decode(transform_image(GOOD["rgb_png"](), ImageOptions()))
    assert out.format == "JPEG"


@pytest.mark.filterwarnings("ignore::PIL.Image.DecompressionBombWarning")
def test_decompression_bombs_are_refused_before_decoding():
    bomb = png_header_only(10_000, 10_000)  # 100 megapixels declared, 60 bytes of file
    with pytest.raises(ImageError, match="over the limit"):
        transform_image(bomb, ImageOptions())
    with pytest.raises(ImageError, match="over the limit of 100"):
        transform_image(rgb_jpeg(20, 10), ImageOptions(max_pixels=100))
    assert transform_image(rgb_jpeg(20, 10), ImageOptions(max_pixels=200))
    # Pillow's own hard limit (twice Image.MAX_IMAGE_PIXELS) still applies without ours
    with pytest.raises(ImageError, match="decompression bomb"):
        transform_image(png_header_only(20_000, 20_000), ImageOptions(max_pixels=None))


def test_a_resize_that_would_explode_is_refused():
    thin = Image.new("RGB", (1, 400))
    buf = io.BytesIO()
    thin.save(buf, "PNG")
    with pytest.raises(ImageError, match="would exceed"):
        transform_image(buf.getvalue(), ImageOptions(resize=256, max_pixels=1_000_000))


def test_pass_through_returns_the_bytes_untouched_after_the_chosen_check():
    data = GOOD["cmyk_jpeg"]()
    for verify in ("none", "header", "decode"):
        assert transform_image(data, ImageOptions(pass_through=True, verify=verify)) == data
    junk = b"not an image at all"
    assert transform_image(junk, ImageOptions(pass_through=True, verify="none")) == junk
    for bad in (junk, b""):
        with pytest.raises(ImageError):
            transform_image(bad, ImageOptions(pass_through=True))
    cut = BAD["truncated_jpeg"][0]()
    assert transform_image(cut, ImageOptions(pass_through=True)) == cut  # header only
    with pytest.raises(ImageError, match="truncated"):
        transform_image(cut, ImageOptions(pass_through=True, verify="decode"))


def test_verify_image():
    assert verify_image(rgb_jpeg(30, 20)) == ("JPEG", 30, 20)
    with pytest.raises(ImageError):
        verify_image(BAD["truncated_png"][0]())


# --------------------------------------------------------------------------- against OpenCV

CV_SCRIPT = r"""
import json, sys, cv2, numpy as np
out = {}
for spec in json.loads(sys.argv[1]):
    img = cv2.imread(spec["path"], spec["color"])
    if spec["crop"]:
        h, w = img.shape[:2]
        if h > w:
            m = (h - w) // 2; img = img[m:m + w, :]
        else:
            m = (w - h) // 2; img = img[:, m:m + h]
    if spec["resize"]:
        h, w = img.shape[:2]; r = spec["resize"]
        img = cv2.resize(img, (r, h * r // w) if h > w else (w * r // h, r))
    if img.ndim == 3:
        img = img[:, :, [2, 1, 0, 3][: img.shape[2]]]
    np.save(spec["path"] + spec["tag"] + ".npy", img)
    out[spec["path"] + spec["tag"]] = list(img.shape)
print(json.dumps(out))
"""


@pytest.fixture(params=["opencv", "pillow"])
def resize_backend(request, monkeypatch):
    """Run a test with OpenCV's resize (when installed) and with the Pillow-only form."""
    from recordio_core.images import image_opencv

    if request.param == "pillow":
        monkeypatch.setattr(image_opencv, "_opencv", lambda: None)
    elif image_opencv._opencv() is None:
        pytest.skip("opencv-python-headless is not installed (the `opencv` extra)")
    return request.param


@pytest.mark.mxnet
def test_pixels_match_opencv(mxnet_python, tmp_path: Path, resize_backend):
    from oracle import run_mxnet_json

    files = {
        "photo_land.jpg": rgb_jpeg(500, 375, seed=1, quality=90),
        "photo_port.jpg": rgb_jpeg(375, 500, seed=2, quality=90),
        "photo.png": GOOD["rgb_png"](),
        "gray.jpg": GOOD["gray_jpeg"](),
        "rgba.png": GOOD["rgba_png"](),
        "palette.png": GOOD["palette_png"](),
        "cmyk.jpg": GOOD["cmyk_jpeg"](),
        "ycck.jpg": GOOD["ycck_jpeg"](),
        "exif6.jpg": exif_jpeg(6, 120, 90),
        "small.png": GOOD["rgb_png"](),  # 64x48: enlarged
    }
    cases = []
    for name, data in files.items():
        (tmp_path / name).write_bytes(data)
        for color in (1, 0):
            for resize, crop in (
                (0, False),
                (32 if name == "small.png" else 256, False),
                (100, True),
            ):
                if name == "small.png" and resize == 100:
                    resize = 200
                tag = f".{color}.{resize}.{int(crop)}"
                cases.append(
                    {
                        "path": str(tmp_path / name),
                        "color": color,
                        "resize": resize,
                        "crop": crop,
                        "tag": tag,
                        "name": name,
                    }
                )
    cases.append(
        {
            "path": str(tmp_path / "small.png"),
            "color": 1,
            "resize": 256,
            "crop": False,
            "tag": ".up",
            "name": "small.png",
        }
    )
    shapes = run_mxnet_json(CV_SCRIPT, json.dumps(cases))
    report = []
    for case in cases:
        want = np.load(case["path"] + case["tag"] + ".npy").astype(int)
        opts = ImageOptions(
            resize=case["resize"],
            center_crop=case["crop"],
            color=case["color"],
            encoding=".png",
            quality=1,
            reducing_gap=None,
        )
        got = np.asarray(decode(transform_image(files[case["name"]], opts))).astype(int)
        assert list(got.shape) == shapes[case["path"] + case["tag"]] == list(want.shape), case
        diff = np.abs(got - want)
        report.append((case["name"], case["tag"], float(diff.mean()), int(diff.max())))
        cmyk = case["name"] in ("cmyk.jpg", "ycck.jpg")  # Pillow's CMYK->RGB rounds differently
        converted = case["color"] == 0 and case["name"].endswith(".png")  # RGB->gray formula
        assert diff.max() <= (4 if cmyk else 2 if converted else 2), report[-1]
        assert diff.mean() <= (1.5 if cmyk or converted else 0.5), report[-1]


@pytest.mark.parametrize(
    ("size", "out"),
    [
        ((414, 335), (316, 256)),  # 1.3x: the separable form
        ((600, 400), (384, 256)),  # 1.56x
        ((900, 600), (384, 256)),  # 2.3x: the four-corner form
        ((2000, 1500), (341, 256)),  # 5.9x
        ((333, 1000), (256, 768)),  # one axis 1.3x, the other 1.3x (portrait)
        ((1000, 300), (853, 256)),  # x 1.17x, y 1.17x
        ((700, 256), (700, 256)),  # nothing to do
        ((512, 700), (256, 700)),  # x only
        ((300, 900), (300, 256)),  # y only
    ],
)
@pytest.mark.parametrize("mode", ["RGB", "L", "RGBA"])
def test_both_bilinear_forms_match_the_float_reference(size, out, mode, monkeypatch):
    """The gather-and-blend shrink (separable below 1.7x, four corners above) stays close to
    Pillow's float affine bilinear, which matches OpenCV's INTER_LINEAR: two 8-bit blends round
    twice, so noise (the worst case) is off by up to 2 levels on a few pixels."""
    from recordio_core.images import image_opencv
    from recordio_core.images.image import _resize_affine, _resize_linear

    monkeypatch.setattr(image_opencv, "_opencv", lambda: None)
    rng = np.random.default_rng(sum(size) + sum(out))
    bands = len(mode)
    arr = rng.integers(0, 256, (size[1], size[0], bands), dtype=np.uint8)
    im = Image.fromarray(arr[:, :, 0] if bands == 1 else arr, mode)
    fast = np.asarray(_resize_linear(im, out)).astype(int)
    ref = np.asarray(_resize_affine(im, out)).astype(int)
    assert fast.shape == ref.shape
    diff = np.abs(fast - ref)
    assert diff.max() <= 2 and diff.mean() < 0.7, (diff.max(), diff.mean())


@pytest.mark.parametrize("mode", ["RGB", "L", "RGBA", "LA"])
@pytest.mark.parametrize(("size", "out"), [((414, 335), (316, 256)), ((900, 600), (384, 256))])
def test_opencv_resize_is_cv2_and_the_pillow_form_stays_close(size, out, mode, monkeypatch):
    import recordio_core.images.image as image_module
    from recordio_core.images import image_opencv

    cv2 = image_opencv._opencv()
    if cv2 is None:
        pytest.skip("opencv-python-headless is not installed (the `opencv` extra)")
    rng = np.random.default_rng(7)
    bands = len(mode)
    smooth = rng.integers(0, 256, (size[1] // 8 + 1, size[0] // 8 + 1, bands), dtype=np.uint8)
    arr = np.asarray(Image.fromarray(smooth[:, :, 0] if bands == 1 else smooth).resize(size))
    im = Image.fromarray(arr, mode)
    fast = np.asarray(image_module._resize_linear(im, out))
    assert np.array_equal(fast, cv2.resize(arr, out, interpolation=cv2.INTER_LINEAR))
    monkeypatch.setattr(image_opencv, "_opencv", lambda: None)
    pillow = np.asarray(image_module._resize_linear(im, out)).astype(int)
    assert np.abs(pillow - fast.astype(int)).max() <= 2


def test_recflow_opencv_0_turns_opencv_off(monkeypatch):
    from recordio_core.images import image_opencv

    monkeypatch.setenv("RECFLOW_OPENCV", "0")
    assert image_opencv._opencv.__wrapped__() is None


def test_a_missing_or_broken_opencv_falls_back_to_pillow(monkeypatch):
    import sys
    import types

    from recordio_core.images import image_opencv

    monkeypatch.delenv("RECFLOW_OPENCV", raising=False)
    monkeypatch.setitem(sys.modules, "cv2", None)  # not installed
    assert image_opencv._opencv.__wrapped__() is None
    monkeypatch.setitem(sys.modules, "cv2", types.ModuleType("cv2"))  # loads, but broken
    assert image_opencv._opencv.__wrapped__() is None


def test_recflow_opencv_accepts_only_0_or_1(monkeypatch):
    monkeypatch.setenv("RECFLOW_OPENCV", "yes")
    with pytest.raises(ValueError, match="RECFLOW_OPENCV must be 1 .* or 0"):
        ImageOptions(resize=64)
    monkeypatch.setenv("RECFLOW_OPENCV", "0")
    assert ImageOptions(resize=64).resize == 64


# --------------------------------------------------------------------------- JPEG encoder


def _pillow_jpeg(arr: np.ndarray, quality: int) -> bytes:
    out = io.BytesIO()
    Image.fromarray(arr, "L" if arr.ndim == 2 else "RGB").save(out, format="JPEG", quality=quality)
    return out.getvalue()


@pytest.mark.parametrize("quality", [0, 1, 2, 5, 10, 25, 50, 74, 75, 76, 90, 95, 99, 100])
@pytest.mark.parametrize("size", [(1, 1), (1, 7), (9, 1), (17, 13), (256, 341), (341, 256)])
@pytest.mark.parametrize("mode", ["RGB", "L"])
def test_opencv_jpeg_encoder_writes_pillows_bytes(quality, size, mode):
    """OpenCV's `imencode` and Pillow's `save` are the same libjpeg-turbo call with the same
    defaults (4:2:0, islow DCT, standard tables): the bytes must be equal, so which encoder ran
    never shows in a dataset."""
    from recordio_core.images import image_encode, image_opencv

    if image_opencv._opencv() is None:
        pytest.skip("opencv-python-headless is not installed (the `opencv` extra)")
    w, h = size
    arr = np.asarray(Image.open(io.BytesIO(rgb_jpeg(w, h, seed=w * h))).convert(mode))
    arr = np.ascontiguousarray(arr)
    assert image_encode._encode_jpeg_array(arr, quality) == _pillow_jpeg(arr, quality)


@pytest.mark.parametrize("kind", sorted(GOOD))
@pytest.mark.parametrize("resize", [0, 24])
@pytest.mark.parametrize("color", [1, 0])
def test_transform_bytes_do_not_depend_on_the_jpeg_encoder(kind, resize, color, monkeypatch):
    """Every input kind, through the fast array path and the general one: the same JPEG bytes
    whether OpenCV or Pillow encodes them."""
    from recordio_core.images import image_encode, image_opencv

    if image_opencv._opencv() is None:
        pytest.skip("opencv-python-headless is not installed (the `opencv` extra)")
    data = GOOD[kind]()
    opts = ImageOptions(resize=resize, color=color, quality=90)
    with_opencv = transform_image(data, opts)
    declined = []  # OpenCV's encoder declines (Pillow encodes), and was asked: the patch applies
    monkeypatch.setattr(
        image_encode, "_encode_jpeg_array", lambda arr, quality: declined.append(arr.shape)
    )
    assert transform_image(data, opts) == with_opencv
    assert declined


# --------------------------------------------------------------------------- PNG decoder


def _png_with(chunks_before_idat: list[tuple[bytes, bytes]], after: list[tuple[bytes, bytes]]):
    """An 8-bit RGB PNG of 40x30 with extra chunks placed around its IDAT."""
    import struct
    import zlib

    from imagecases import photo

    def chunk(kind: bytes, body: bytes) -> bytes:
        crc = zlib.crc32(kind + body) & 0xFFFFFFFF
        return struct.pack(">I", len(body)) + kind + body + struct.pack(">I", crc)

    arr = photo(40, 30, seed=5)
    raw = b"".join(b"\0" + arr[y].tobytes() for y in range(30))
    return (
        b"\x89PNG\r\n\x1a\n"
        + chunk(b"IHDR", struct.pack(">IIBBBBB", 40, 30, 8, 2, 0, 0, 0))
        + b"".join(chunk(k, b) for k, b in chunks_before_idat)
        + chunk(b"IDAT", zlib.compress(raw))
        + b"".join(chunk(k, b) for k, b in after)
        + chunk(b"IEND", b"")
    )


def _exif6() -> bytes:
    """EXIF saying "rotate 90 degrees" as an eXIf chunk holds it (TIFF header first)."""
    exif = Image.Exif()
    exif[0x0112] = 6
    raw = exif.tobytes()
    return raw[6:] if raw.startswith(b"Exif\0\0") else raw


def _exif6_text() -> bytes:
    """The same EXIF as ImageMagick's "Raw profile type exif" text chunk."""
    hexed = (b"Exif\0\0" + _exif6()).hex().encode()
    return b"Raw profile type exif\0\nexif\n%8d\n" % (len(hexed) // 2) + hexed + b"\n"


def _saved_png(mode: str, **save: object) -> bytes:
    from imagecases import photo

    out = io.BytesIO()
    Image.fromarray(photo(50, 36, seed=9)).convert(mode).save(out, format="PNG", **save)
    return out.getvalue()


PNG_CASES = {  # name: (bytes, whether OpenCV may decode it)
    "plain": (lambda: _png_with([], []), True),
    "gamma_and_text": (
        lambda: _png_with([(b"gAMA", (45455).to_bytes(4, "big"))], [(b"tEXt", b"Software\0x")]),
        True,
    ),
    "optimized": (lambda: _saved_png("RGB", optimize=True), True),
    "gray": (lambda: _saved_png("L"), True),
    "exif_after_idat": (lambda: _png_with([], [(b"eXIf", _exif6())]), False),
    "exif_before_idat": (lambda: _png_with([(b"eXIf", _exif6())], []), False),
    "exif_as_text": (lambda: _png_with([(b"zTXt", b"x\0\0")], [(b"tEXt", _exif6_text())]), False),
    "transparency_key": (lambda: _png_with([(b"tRNS", b"\0\1\0\2\0\3")], []), False),
    "sixteen_bit": (lambda: GOOD["rgb16_png"](), False),
    "palette": (lambda: GOOD["palette_png"](), False),
    "rgba": (lambda: GOOD["rgba_png"](), False),
}


@pytest.mark.parametrize("case", sorted(PNG_CASES))
@pytest.mark.parametrize(
    "opts",
    [
        ImageOptions(resize=24, quality=90),
        ImageOptions(color=0, quality=90),
        ImageOptions(resize=20, center_crop=True, encoding=".png", quality=1),
        ImageOptions(color=-1, resize=24, encoding=".png", quality=1),
    ],
)
def test_png_fast_path_gives_pillows_output(case, opts, monkeypatch):
    """OpenCV decodes only plain 8-bit gray/RGB PNGs without EXIF, tRNS or animation; the
    output is the same bytes as Pillow's decode gives, whichever path ran."""
    import recordio_core.images.image as image_module
    from recordio_core.images import image_fast, image_opencv

    if image_opencv._opencv() is None:
        pytest.skip("opencv-python-headless is not installed (the `opencv` extra)")
    make, plain = PNG_CASES[case]
    data = make()
    with Image.open(io.BytesIO(data)) as im:
        stored = im.mode
        assert image_module._plain_png(im, data, stored) is plain
    wanted = {1: "RGB", 0: "L", -1: stored}[opts.color]
    used = []
    real = image_fast._fast_png
    monkeypatch.setattr(
        image_fast,
        "_fast_png",
        lambda *a: used.append(1) or real(*a),  # type: ignore[func-returns-value]
    )
    fast = transform_image(data, opts)
    assert bool(used) is (plain and wanted == stored)
    monkeypatch.setattr(image_fast, "_fast_png", lambda *a, **k: None)
    assert transform_image(data, opts) == fast
    if case.startswith("exif") and opts.color != -1 and not opts.center_crop:
        assert Image.open(io.BytesIO(fast)).size[0] < Image.open(io.BytesIO(fast)).size[1]


@pytest.mark.parametrize("cut", [0.3, 0.6, 0.9, 0.99])
def test_png_fast_path_rejects_what_pillow_rejects(cut, monkeypatch):
    """A damaged PNG that OpenCV refuses goes to Pillow: the reject (or the pixels Pillow
    still gets) are the same as without the fast path."""
    from recordio_core.images import image_fast

    data = _saved_png("RGB")
    data = data[: int(len(data) * cut)]
    bad_crc = bytearray(_saved_png("RGB"))
    bad_crc[-20] ^= 0xFF  # inside the IDAT's data: zlib notices

    def outcome(d: bytes) -> object:
        try:
            return transform_image(d, ImageOptions(resize=24))
        except ImageError as exc:
            return str(exc)

    fast = [outcome(data), outcome(bytes(bad_crc))]
    monkeypatch.setattr(image_fast, "_fast_png", lambda *a, **k: None)
    assert [outcome(data), outcome(bytes(bad_crc))] == fast


# --------------------------------------------------------------------------- fast paths

FAST_PATH_OPTS = [
    ImageOptions(resize=24, quality=90),
    ImageOptions(resize=24, color=0, quality=90),
    ImageOptions(color=-1, quality=80),
    ImageOptions(resize=20, center_crop=True, encoding=".png", quality=1),
    ImageOptions(resize=9, reducing_gap=1.0, quality=90),
    ImageOptions(resize=24, inter_method=2, quality=90),
]


@pytest.mark.parametrize("kind", sorted(GOOD))
@pytest.mark.parametrize("opts", FAST_PATH_OPTS, ids=lambda o: f"{o.resize}-{o.color}-{o.encoding}")
@pytest.mark.parametrize("dhash", [False, True])
def test_fast_paths_give_the_general_paths_output(kind, opts, dhash, monkeypatch):
    """Every input kind: the array fast paths (`_jpeg_without_pillow`, `_fast_jpeg`,
    `_fast_png`) give the same bytes, warning and dHash as Pillow's general path."""
    from recordio_core.images import image_fast, jpeg
    from recordio_core.images.image import transform_image_checked

    data = GOOD[kind]()
    fast = transform_image_checked(data, opts, dhash=dhash)
    declined = []  # each stub declines, and was asked: the patches apply
    for name in ("_jpeg_without_pillow", "_fast_jpeg", "_fast_png"):
        monkeypatch.setattr(image_fast, name, lambda *a, name=name: declined.append(name))
    assert transform_image_checked(data, opts, dhash=dhash) == fast
    assert "_jpeg_without_pillow" in declined
    if kind in ("rgb_jpeg", "gray_jpeg") and jpeg.available():  # upright: Pillow asks too
        assert "_fast_jpeg" in declined


# Where tests and benchmarks patch the transform: each name is bound in its home module only,
# and every caller looks it up there, so a patch applies to every call.
PATCH_POINTS = {
    "image_opencv": ["_opencv"],
    "image_decode": ["_load", "_to_mode"],
    "image_fast": ["_jpeg_without_pillow", "_fast_jpeg", "_fast_png"],
    "image_encode": ["_encode_jpeg_array"],
}


@pytest.mark.parametrize("home", sorted(PATCH_POINTS))
def test_patch_points_are_bound_in_their_home_module_only(home):
    import importlib

    import recordio_core.images as images

    names = [p.stem for p in Path(images.__file__).parent.glob("image*.py")]
    modules = {n: importlib.import_module(f"recordio_core.images.{n}") for n in names}
    for name in PATCH_POINTS[home]:
        assert callable(getattr(modules[home], name))
        bound = sorted(n for n, m in modules.items() if n != home and hasattr(m, name))
        assert not bound, f"{name} is bound in {bound}: a patch of {home}.{name} would miss it"
