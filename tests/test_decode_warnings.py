"""Corrupt-but-decodable JPEGs (libjpeg warnings through simplejpeg's strict decode), the
decoder switch keeping every byte, and the data-quality facts `pack_shard` reports."""

from __future__ import annotations

import hashlib
import io

import pytest
from imagecases import GOOD, exif_jpeg, gray_jpeg, photo, rgb_jpeg, truncated
from PIL import Image

import recordio_core.images.jpeg as jpeg
from recordio_core.building.pack import PackOptions, pack_shard
from recordio_core.building.quality import NO_DHASH, NO_DIGEST
from recordio_core.format.lst import LstEntry
from recordio_core.images.image import (
    ImageError,
    ImageOptions,
    transform_image,
    transform_image_checked,
)


def corrupt_but_decodable(data: bytes) -> bytes:
    """Stray bytes before the EOI marker: libjpeg warns ("extraneous bytes"), Pillow decodes."""
    return data[:-2] + b"\xab" * 16 + data[-2:]


def progressive_jpeg(w: int = 90, h: int = 70) -> bytes:
    buf = io.BytesIO()
    Image.fromarray(photo(w, h, seed=5)).save(buf, "JPEG", quality=90, progressive=True)
    return buf.getvalue()


@pytest.fixture
def pillow_only(monkeypatch):
    """Today's path: simplejpeg unavailable (as when it cannot be imported)."""
    monkeypatch.setattr(jpeg, "_simplejpeg", lambda: None)


OPTIONS = [
    ImageOptions(),
    ImageOptions(resize=24),
    ImageOptions(resize=10, center_crop=True),
    ImageOptions(resize=24, color=0),
    ImageOptions(resize=24, color=-1, encoding=".png", quality=3),
    ImageOptions(resize=24, inter_method=2),
    ImageOptions(resize=24, reducing_gap=None),
    ImageOptions(pass_through=True, verify="decode"),
]
JPEGS = {
    **{k: v for k, v in GOOD.items() if k.endswith("jpeg")},
    "progressive_jpeg": progressive_jpeg,
    "large_jpeg": lambda: rgb_jpeg(400, 300, seed=2),  # DCT-scaled decode at resize 24
    "exif8_gray_jpeg": lambda: exif_jpeg(8),
}


@pytest.mark.parametrize("name", sorted(JPEGS))
def test_simplejpeg_gives_the_same_bytes_as_pillow(name, monkeypatch):
    data = JPEGS[name]()
    ours = [transform_image_checked(data, o, dhash=True) for o in OPTIONS]
    monkeypatch.setattr(jpeg, "_simplejpeg", lambda: None)
    pillow = [transform_image_checked(data, o, dhash=True) for o in OPTIONS]
    assert ours == pillow  # data, warning ("") and hash alike
    assert all(t.warning == "" for t in ours)


@pytest.mark.parametrize("opts", OPTIONS[:4] + OPTIONS[-1:], ids=str)
def test_a_corrupt_but_decodable_jpeg_is_flagged_and_packed_as_before(opts, monkeypatch):
    for make in (lambda: rgb_jpeg(60, 40), lambda: gray_jpeg(60, 40), progressive_jpeg):
        data = corrupt_but_decodable(make())
        got = transform_image_checked(data, opts)
        assert "Corrupt JPEG data" in got.warning and "extraneous bytes" in got.warning
        with monkeypatch.context() as m:
            m.setattr(jpeg, "_simplejpeg", lambda: None)
            assert transform_image(data, opts) == got.data  # same pixels as today's path


def test_pass_through_sees_warnings_only_when_it_decodes():
    data = corrupt_but_decodable(rgb_jpeg(60, 40))
    header = ImageOptions(pass_through=True)
    decode = ImageOptions(pass_through=True, verify="decode")
    assert transform_image_checked(data, header).warning == ""
    assert transform_image_checked(data, header, dhash=True).dhash is None
    got = transform_image_checked(data, decode, dhash=True)
    assert got.data == data and "Corrupt JPEG data" in got.warning and got.dhash is not None


def test_what_pillow_rejects_stays_a_reject():
    data = truncated(rgb_jpeg(200, 150))
    for opts in (ImageOptions(resize=24), ImageOptions(pass_through=True, verify="decode")):
        with pytest.raises(ImageError, match="truncated"):
            transform_image_checked(data, opts)


def test_without_simplejpeg_nothing_is_flagged(pillow_only):
    assert not jpeg.available()
    data = corrupt_but_decodable(rgb_jpeg(60, 40))
    assert transform_image_checked(data, ImageOptions(resize=24)).warning == ""


def test_on_decode_warning_is_checked():
    with pytest.raises(ValueError, match="on_decode_warning must be 'keep'"):
        PackOptions(on_decode_warning="drop")
    with pytest.raises(ValueError, match="near_duplicates must be True or False"):
        PackOptions(near_duplicates=1)


def tree(root):
    files = {
        "a/good.jpg": rgb_jpeg(50, 40, seed=1),
        "a/scrambled.jpg": corrupt_but_decodable(rgb_jpeg(50, 40, seed=2)),
        "b/copy of good.JPEG": rgb_jpeg(50, 40, seed=1),
        "b/broken.jpg": b"\xff\xd8\xff not really",
    }
    for rel, data in files.items():
        (root / rel).parent.mkdir(parents=True, exist_ok=True)
        (root / rel).write_bytes(data)
    entries = [LstEntry(i, (float(i % 2),), rel) for i, rel in enumerate(files)]
    entries.append(LstEntry(9, (0.0,), "a/missing.jpg"))
    return files, entries


@pytest.mark.parametrize(("workers", "processes"), [(1, False), (2, False), (2, True)])
def test_pack_shard_reports_digests_warnings_and_hashes(tmp_path, workers, processes):
    files, entries = tree(tmp_path / "src")
    keep = PackOptions(ImageOptions(resize=16), num_workers=workers, near_duplicates=True)
    result = pack_shard(
        entries, str(tmp_path / "src"), str(tmp_path / "k"), keep, processes=processes
    )
    digests = [result.digests[i : i + 32] for i in range(0, len(result.digests), 32)]
    assert digests == [hashlib.sha256(d).digest() for d in files.values()] + [NO_DIGEST]
    assert digests[0] == digests[2]  # the copy under another folder and extension
    assert [(w.index, w.path) for w in result.warnings] == [(1, "a/scrambled.jpg")]
    assert result.records == 3 and {r.path for r in result.rejects} == {
        "b/broken.jpg",
        "a/missing.jpg",
    }
    assert result.dhashes[0] == result.dhashes[2] != NO_DHASH
    assert result.dhashes[3] == result.dhashes[4] == NO_DHASH

    reject = PackOptions(ImageOptions(resize=16), num_workers=workers, on_decode_warning="reject")
    again = pack_shard(
        entries, str(tmp_path / "src"), str(tmp_path / "r"), reject, processes=processes
    )
    assert again.records == 2 and again.warnings == result.warnings
    (why,) = [r.reason for r in again.rejects if r.path == "a/scrambled.jpg"]
    assert why.startswith("corrupt JPEG data (decoder warning): Corrupt JPEG data")
    assert set(again.dhashes) == {NO_DHASH}  # near_duplicates off: nothing hashed
    assert again.to_dict()["digests"][0] == hashlib.sha256(files["a/good.jpg"]).hexdigest()
