"""recordio_core.format.manifest and recordio_core.building.shardkey: pure, no Prefect."""

from __future__ import annotations

import json
import os
import time

import pytest

from recordio_core.building.shardkey import MISSING, shard_key, source_fingerprints
from recordio_core.format.lst import LstEntry
from recordio_core.format.manifest import (
    MANIFEST_NAME,
    Manifest,
    ManifestError,
    RejectEntry,
    ShardEntry,
    SplitEntry,
    parse_manifest,
    read_manifest,
    relative_path,
    tool_versions,
    write_manifest,
    write_rejects,
)

SHA = "a" * 64


def _manifest() -> Manifest:
    shard = ShardEntry(
        rec="train/train-00000-of-00001.abc.rec",
        idx="train/train-00000-of-00001.abc.idx",
        lst="train/train-00000-of-00001.abc.lst",
        records=3,
        bytes=300,
        sha256=SHA,
        idx_sha256="b" * 64,
        lst_sha256="c" * 64,
    )
    return Manifest(
        parameters={"resize": 0, "source": "/src"},
        class_map={"cats": 0, "dogs": 1},
        splits={"train": SplitEntry(shards=(shard,)), "val": SplitEntry(shards=())},
        rejects=(RejectEntry(path="cats/bad.jpg", reason="cannot decode", index=4),),
        tools={"python": "3.11"},
    )


def test_round_trip_and_layout(tmp_path):
    m = _manifest()
    url = write_manifest(str(tmp_path), m)
    assert url.endswith(MANIFEST_NAME)
    doc = json.loads((tmp_path / MANIFEST_NAME).read_text())
    assert list(doc) == [
        "format",
        "version",
        "parameters",
        "class_map",
        "splits",
        "rejects",
        "warnings",
        "duplicates",
        "near_duplicates",
        "tools",
    ]
    assert doc["splits"]["train"]["records"] == 3
    assert set(doc["splits"]["train"]["shards"][0]) >= {
        "rec",
        "idx",
        "lst",
        "records",
        "bytes",
        "sha256",
    }
    assert doc["rejects"] == [{"path": "cats/bad.jpg", "reason": "cannot decode", "index": 4}]
    back = read_manifest(str(tmp_path))
    assert back == m or back.to_json() == m.to_json()
    assert read_manifest(url).to_json() == m.to_json()
    assert back.records == 3 and back.bytes == 300
    assert back.files() == [
        "train/train-00000-of-00001.abc.rec",
        "train/train-00000-of-00001.abc.idx",
        "train/train-00000-of-00001.abc.lst",
    ]


def test_json_is_deterministic():
    assert _manifest().to_json() == _manifest().to_json()
    assert _manifest().to_json().endswith(b"\n")


@pytest.mark.parametrize(
    ("mutate", "message"),
    [
        (lambda d: d.update(format="other"), "format"),
        (lambda d: d.update(version=99), "version 99"),
        (lambda d: d.pop("splits"), "missing 'splits'"),
        (lambda d: d["splits"]["train"].update(records=7), "records is 7"),
        (lambda d: d["splits"]["train"]["shards"][0].update(rec="/abs.rec"), "relative"),
        (lambda d: d["splits"]["train"]["shards"][0].update(rec="../x.rec"), "relative"),
        (lambda d: d["splits"]["train"]["shards"][0].update(sha256="zz"), "sha256"),
        (lambda d: d["splits"]["train"]["shards"][0].update(records="3"), "wrong type"),
        (lambda d: d["class_map"].update(cats="0"), "class_map"),
        (lambda d: d["rejects"].append({"path": "x"}), "missing 'reason'"),
    ],
)
def test_malformed_manifests_are_named(mutate, message):
    doc = _manifest().to_dict()
    mutate(doc)
    with pytest.raises(ManifestError, match=message):
        parse_manifest(json.dumps(doc), source="m.json")


def test_not_json():
    with pytest.raises(ManifestError, match="not JSON"):
        parse_manifest(b"{nope", source="m.json")


def test_relative_path():
    assert relative_path("s3://b/out", "s3://b/out/train/a.rec") == "train/a.rec"
    assert relative_path("/x/out/", "/x/out/a.rec") == "a.rec"
    with pytest.raises(ValueError, match="not inside"):
        relative_path("/x/out", "/x/other/a.rec")


def test_tool_versions_name_the_tools():
    tools = tool_versions()
    assert {"python", "recordio-flow", "pillow", "prefect"} <= set(tools)


def test_rejects_jsonl(tmp_path):
    url = str(tmp_path / "rejects.jsonl")
    write_rejects(url, [RejectEntry("a.jpg", "empty"), RejectEntry("b.jpg", "bad", 3)])
    lines = [json.loads(x) for x in (tmp_path / "rejects.jsonl").read_text().splitlines()]
    assert lines == [
        {"path": "a.jpg", "reason": "empty"},
        {"path": "b.jpg", "reason": "bad", "index": 3},
    ]


def _entries(*paths):
    return [LstEntry(index=i, labels=(float(i % 2),), path=p) for i, p in enumerate(paths)]


# Keys name the files of every dataset already built and decide what a rerun reuses: a change
# in how they are computed would repack every shard. Pinned as computed on 2026-12-03.
_FPS = {"a/x.jpg": "10:1.5", "b/y.png": "20:2.5", "c/z.jpg": "30:abc"}


@pytest.mark.parametrize(
    ("entries", "key"),
    [
        (
            [LstEntry(0, (3.0,), "a/x.jpg"), LstEntry(1, (0.5,), "b/y.png")],
            "f165b66d289a2bc9ec472df6adf778b10ab082f13d6b1ff877946f3dd45c152b",
        ),
        (
            [LstEntry(7, (1.0, -2.25, 1e-7), "c/z.jpg")],
            "cfb6fcbcade83b62ac769680e3d13b8c514b06e63ae1a27f272c076983e66475",
        ),
        (  # a fingerprint the listing did not have: MISSING
            [LstEntry(2**63, (0.0,), "é/ü 1.jpg")],
            "3a14f3134f8aa4254cfffadc0b060a44894e4d973a4fb5da05013064f52c9810",
        ),
        ([], "cc1841fd9136d42cf3732887c95aa9d84caeb33b15de5d8f9fdaad925e068c29"),
    ],
)
def test_shard_keys_do_not_move(entries, key):
    params = {"resize": 256, "shard": "all/x"}
    assert shard_key(entries, root="s3://b/root/", fingerprints=_FPS, params=params) == key


def test_shard_key_depends_on_what_changes_bytes(tmp_path):
    (tmp_path / "a").mkdir()
    for name in ("a/1.jpg", "a/2.jpg"):
        (tmp_path / name).write_bytes(b"x" * 10)
    entries = _entries("a/1.jpg", "a/2.jpg")
    fps = source_fingerprints(str(tmp_path), [e.path for e in entries])
    base = {"resize": 0, "quality": 95, "label_width": 1}
    key = shard_key(entries, root=str(tmp_path), fingerprints=fps, params=base)
    assert key == shard_key(entries, root=str(tmp_path), fingerprints=fps, params=dict(base))
    for change in ({"resize": 128}, {"quality": 90}, {"label_width": 2}):
        other = shard_key(entries, root=str(tmp_path), fingerprints=fps, params={**base, **change})
        assert other != key, change
    swapped = _entries("a/2.jpg", "a/1.jpg")
    assert shard_key(swapped, root=str(tmp_path), fingerprints=fps, params=base) != key
    relabelled = [LstEntry(e.index, (5.0,), e.path) for e in entries]
    assert shard_key(relabelled, root=str(tmp_path), fingerprints=fps, params=base) != key
    # an image replaced in place (new size / mtime) changes the key
    time.sleep(0.01)
    (tmp_path / "a/2.jpg").write_bytes(b"y" * 11)
    fps2 = source_fingerprints(str(tmp_path), [e.path for e in entries])
    assert fps2["a/1.jpg"] == fps["a/1.jpg"] and fps2["a/2.jpg"] != fps["a/2.jpg"]
    assert shard_key(entries, root=str(tmp_path), fingerprints=fps2, params=base) != key


def test_fingerprints_flat_and_missing(tmp_path):
    (tmp_path / "x.jpg").write_bytes(b"123")
    fps = source_fingerprints(str(tmp_path), ["x.jpg", "gone.jpg"])
    assert fps["gone.jpg"] == MISSING
    assert fps["x.jpg"].startswith("3:")
    st = os.stat(tmp_path / "x.jpg")
    assert str(st.st_mtime)[:8] in fps["x.jpg"]


def test_fingerprints_on_s3(s3_server):
    bucket = s3_server.make_bucket()
    fs = s3_server.fs()
    fs.pipe(f"{bucket}/src/c/a.jpg", b"abc")
    so = s3_server.storage_options
    fps = source_fingerprints(f"s3://{bucket}/src", ["c/a.jpg", "c/none.jpg"], so)
    assert fps["c/a.jpg"].startswith("3:") and len(fps["c/a.jpg"]) > 4
    assert fps["c/none.jpg"] == MISSING
