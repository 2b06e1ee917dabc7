"""recordio_core.building.validate_bulk: the bulk proof says a shard is fine only when the
record-by-record walk finds nothing wrong with it, and says so for every shard we write."""

from __future__ import annotations

import random
import struct
from pathlib import Path

import numpy as np
import pytest
from imagecases import rgb_jpeg

from recordio_core.building import validate
from recordio_core.building.pack import PackOptions, ShardResult, pack_shard
from recordio_core.building.validate import validate_shard
from recordio_core.building.validate_bulk import records_agree
from recordio_core.format.framing import MAGIC_BYTES, MmapSource
from recordio_core.format.idx import parse_idx
from recordio_core.format.lst import LstEntry, read_lst
from recordio_core.images.image import ImageOptions


def _shard(tmp_path: Path, labels: int, pack_label: bool, n: int = 8) -> ShardResult:
    root = tmp_path / "images"
    root.mkdir(exist_ok=True)
    entries = []
    for i in range(n):
        (root / f"{i}.jpg").write_bytes(rgb_jpeg(20 + i, 16 + i, seed=i))
        entries.append(LstEntry(100 + 3 * i, tuple((i + j) / 3 for j in range(labels)), f"{i}.jpg"))
    options = PackOptions(ImageOptions(pass_through=True), pack_label=pack_label)
    return pack_shard(entries, str(root), str(tmp_path / "data"), options)


def _agree(result: ShardResult, pack_label: bool, lst: bool = True) -> bool:
    src = MmapSource(result.rec)
    try:
        pairs = parse_idx(Path(result.idx).read_text())
        entries = read_lst(result.lst, allow_duplicates=True) if lst else None
        return records_agree(src, pairs, entries, pack_label=pack_label)
    finally:
        src.close()


def _walked(result: ShardResult, pack_label: bool, monkeypatch) -> tuple[str, ...]:
    """The problems the record-by-record walk finds (the bulk proof switched off)."""
    with monkeypatch.context() as m:
        m.setattr(validate, "records_agree", lambda *a, **k: False)
        return validate_shard(
            result.rec, result.idx, result.lst, pack_label=pack_label, label_width=None
        ).problems


@pytest.mark.parametrize(("labels", "pack_label"), [(1, False), (1, True), (3, True), (3, False)])
def test_every_shard_we_pack_is_proved_in_bulk(tmp_path, labels, pack_label):
    result = _shard(tmp_path, labels, pack_label)
    assert _agree(result, pack_label)
    assert _agree(result, pack_label, lst=False)
    report = validate_shard(
        result.rec, result.idx, result.lst, pack_label=pack_label, label_width=labels
    )
    assert report.ok and report.records == 8


def test_a_record_in_several_parts_is_left_to_the_walk(tmp_path):
    root = tmp_path / "images"
    root.mkdir()
    # a JPEG followed by the magic word at 4-aligned places of its record: packed in parts
    jpeg = rgb_jpeg(20, 16, seed=2)
    (root / "a.jpg").write_bytes(rgb_jpeg(20, 16, seed=1))
    (root / "b.jpg").write_bytes(jpeg + b"\0" * (-len(jpeg) % 4) + MAGIC_BYTES * 3)
    entries = [LstEntry(0, (0.0,), "a.jpg"), LstEntry(1, (1.0,), "b.jpg")]
    result = pack_shard(
        entries, str(root), str(tmp_path / "d"), PackOptions(ImageOptions(pass_through=True))
    )
    second = parse_idx(Path(result.idx).read_text())[1][1]
    (lrec,) = struct.unpack_from("<I", Path(result.rec).read_bytes(), second + 4)
    assert lrec >> 29 == 1  # the first of several parts
    assert not _agree(result, False)
    assert validate_shard(result.rec, result.idx, result.lst).ok


def _mutations(result: ShardResult, rng: random.Random):
    """(name, file, new bytes): damage of the kinds the walk reports, each one at a time."""
    rec = Path(result.rec).read_bytes()
    idx = Path(result.idx).read_text().splitlines(keepends=True)
    lst = Path(result.lst).read_text().splitlines(keepends=True)
    offsets = [int(line.split("\t")[1]) for line in idx]
    for _ in range(40):  # a byte of a record's head or image header changed
        at = rng.choice(offsets) + rng.randrange(32)
        data = bytearray(rec)
        data[at] ^= 1 << rng.randrange(8)
        yield f"rec byte {at}", result.rec, bytes(data)
    yield "rec cut", result.rec, rec[: len(rec) - 4]
    yield "rec grown", result.rec, rec + b"\0" * 8
    yield "garbage inside", result.rec, rec[: offsets[3]] + b"\1\2\3\4" + rec[offsets[3] :]
    yield "idx lines swapped", result.idx, "".join([idx[1], idx[0], *idx[2:]]).encode()
    yield "idx line lost", result.idx, "".join(idx[:-1]).encode()
    yield (
        "idx key changed",
        result.idx,
        "".join([idx[0].replace("100\t", "101\t"), *idx[1:]]).encode(),
    )
    yield "idx key repeated", result.idx, "".join([idx[0], idx[0], *idx[2:]]).encode()
    yield "lst lines swapped", result.lst, "".join([lst[1], lst[0], *lst[2:]]).encode()
    yield "lst line lost", result.lst, "".join(lst[1:]).encode()
    cols = lst[2].rstrip("\n").split("\t")
    for i in range(1, len(cols) - 1):
        changed = cols[:i] + [str(float(cols[i]) + 1e-3)] + cols[i + 1 :]
        yield (
            f"lst label {i}",
            result.lst,
            "".join([*lst[:2], "\t".join(changed) + "\n", *lst[3:]]).encode(),
        )
    yield (
        "lst label dropped",
        result.lst,
        "".join([*lst[:2], "\t".join(cols[:1] + cols[2:]) + "\n", *lst[3:]]).encode(),
    )


@pytest.mark.parametrize(("labels", "pack_label"), [(1, False), (1, True), (3, True), (3, False)])
def test_the_proof_never_passes_what_the_walk_fails(tmp_path, labels, pack_label, monkeypatch):
    result = _shard(tmp_path, labels, pack_label)
    rng = random.Random(labels * 2 + pack_label)
    checked = 0
    for name, path, data in _mutations(result, rng):
        original = Path(path).read_bytes()
        Path(path).write_bytes(data)
        try:
            problems = _walked(result, pack_label, monkeypatch)
            if problems:
                checked += 1
                try:
                    agreed = _agree(result, pack_label)
                except Exception:  # the .lst or .idx no longer parses: the walk's case
                    agreed = False
                assert not agreed, (name, problems)
        finally:
            Path(path).write_bytes(original)
    assert checked > 20


def test_a_header_label_of_another_float32_is_found(tmp_path, monkeypatch):
    result = _shard(tmp_path, 1, False)
    data = bytearray(Path(result.rec).read_bytes())
    (label,) = struct.unpack_from("<f", data, 12)
    struct.pack_into("<f", data, 12, float(np.nextafter(np.float32(label), np.float32(10))))
    Path(result.rec).write_bytes(bytes(data))
    assert not _agree(result, False)
    assert any("label" in p for p in _walked(result, False, monkeypatch))
