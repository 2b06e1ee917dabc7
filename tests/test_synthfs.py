"""`benchmarks/synthfs.py`, the `synth://` filesystem bench_scale.py lists 100 M images from.

.venv/bin/python -m pytest tests/test_synthfs.py
"""

from __future__ import annotations

import io
import sys
from pathlib import Path

import fsspec
import pytest
from PIL import Image

sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "benchmarks"))

import synthfs  # noqa: E402  (registers synth://)

from recordio_core.building.listing import list_images  # noqa: E402

SPEC = "n25-f10"
URL = f"synth://{SPEC}/"


@pytest.fixture
def fs() -> fsspec.AbstractFileSystem:
    return fsspec.filesystem("synth")


@pytest.mark.parametrize(
    ("spec", "folders", "counts", "first", "last"),
    [
        ("n25-f10", ["c0", "c1", "c2"], [10, 10, 5], "c0/i00.jpg", "c2/i24.jpg"),
        ("n10-f10", ["c0"], [10], "c0/i00.jpg", "c0/i09.jpg"),
        ("n1000-f100", [f"c{k:02d}" for k in range(10)], [100] * 10, "c00/i0000.jpg", None),
        ("n7-f1", [f"c{k}" for k in range(7)], [1] * 7, "c0/i0.jpg", "c6/i6.jpg"),
    ],
)
def test_tree_shape(fs, spec: str, folders: list, counts: list, first: str, last) -> None:
    names = fs.ls(f"synth://{spec}/", detail=False)
    assert names == [f"{spec}/{f}" for f in folders] == sorted(names)
    assert all(i["type"] == "directory" for i in fs.ls(spec))
    files = [fs.ls(name, detail=False) for name in names]
    assert [len(f) for f in files] == counts
    flat = [name for f in files for name in f]
    assert flat == sorted(flat) and len(set(flat)) == len(flat)
    assert flat[0] == f"{spec}/{first}"
    assert last is None or flat[-1] == f"{spec}/{last}"
    assert sorted(fs.find(f"synth://{spec}")) == flat


def test_names_of_100m_tree(fs) -> None:
    """Widths come from N and the folder count: only one folder is built."""
    spec = "n100000000-f10000"
    last = fs.ls(f"synth://{spec}/c09999", detail=True)
    assert len(last) == 10_000
    assert last[-1]["name"] == f"{spec}/c09999/i099999999.jpg"
    assert fs.info(f"{spec}/c00000/i000000000.jpg")["type"] == "file"


def test_bytes_are_jpegs_and_sizes_agree(fs) -> None:
    infos = [i for folder in fs.ls(URL, detail=False) for i in fs.ls(folder)]
    blobs = [fs.cat_file(i["name"]) for i in infos]
    assert [len(b) for b in blobs] == [i["size"] for i in infos]
    assert len(set(blobs)) == len(blobs)  # every file's bytes differ
    assert len({b[-200:] for b in blobs}) == len(synthfs.variants())
    assert all(300 <= len(b) <= 700 for b in blobs)
    for blob in blobs[:8]:
        with Image.open(io.BytesIO(blob)) as img:
            assert img.format == "JPEG" and img.mode == "RGB"
            img.load()
        assert b"\xff\xc0" in blob  # baseline (SOF0)
    info = fs.info(f"{URL}c1/i13.jpg")
    assert info == infos[13] and info["mtime"] == synthfs.MTIME_BASE + 13
    with fs.open(f"{URL}c1/i13.jpg", "rb") as f:
        assert f.read() == blobs[13]


@pytest.mark.parametrize(("start", "end"), [(None, None), (0, 2), (2, 40), (-10, None), (5, -5)])
def test_ranges(fs, start, end) -> None:
    whole = fs.cat_file(f"{SPEC}/c0/i03.jpg")
    assert fs.cat_file(f"{URL}c0/i03.jpg", start=start, end=end) == whole[start:end]


@pytest.mark.parametrize(
    "path",
    [
        "n25-f10/c3",  # past the last folder
        "n25-f10/c2/i19.jpg",  # a file of another folder
        "n25-f10/c0/i0.jpg",  # wrong width
        "n25-f10/c00",
        "n25-f10/c0/i00.png",
        "n25-f10/c0/i00.jpg/x",
        "n0-f10",
        "nope",
    ],
)
def test_missing(fs, path: str) -> None:
    assert not fs.exists(path) and not fs.isdir(path) and not fs.isfile(path)
    with pytest.raises(FileNotFoundError):
        fs.info(path)


def test_kinds_and_read_only(fs) -> None:
    assert fs.isdir(URL) and fs.isdir(f"{URL}c2") and not fs.isfile(f"{URL}c2")
    assert fs.isfile(f"{URL}c2/i20.jpg") and not fs.isdir(f"{URL}c2/i20.jpg")
    assert [d for d, _, _ in fs.walk(URL)] == [SPEC, f"{SPEC}/c0", f"{SPEC}/c1", f"{SPEC}/c2"]
    with pytest.raises(PermissionError):
        fs.open(f"{URL}c0/new.jpg", "wb")


def test_list_images() -> None:
    listing = list_images(URL, recursive=True)
    assert len(listing.entries) == 25
    assert listing.class_map == {"c0": 0, "c1": 1, "c2": 2}
    assert [e.path for e in listing.entries][:2] == ["c0/i00.jpg", "c0/i01.jpg"]
    assert [e.labels[0] for e in listing.entries] == [0.0] * 10 + [1.0] * 10 + [2.0] * 5
