"""recordio_core.building.validate and `recflow validate`: every injected corruption is detected."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from imagecases import rgb_jpeg

from recordio_core.building.pack import PackOptions, ShardResult, pack_shard
from recordio_core.building.validate import MAX_LISTED_PROBLEMS, ValidationReport, validate_shard
from recordio_core.format.framing import frame_record
from recordio_core.format.lst import LstEntry
from recordio_core.format.manifest import Manifest, ShardEntry, SplitEntry, write_manifest
from recordio_core.images.image import ImageOptions
from recordio_flow.flows.cli import main


@pytest.fixture
def shard(tmp_path: Path) -> ShardResult:
    root = tmp_path / "images"
    root.mkdir()
    entries = []
    for i in range(6):
        (root / f"{i}.jpg").write_bytes(rgb_jpeg(30 + i, 20 + i, seed=i))
        entries.append(LstEntry(10 + i, (float(i),), f"{i}.jpg"))
    out = tmp_path / "data"
    return pack_shard(entries, str(root), str(out), PackOptions(ImageOptions(resize=16)))


def check(result: ShardResult, **kw) -> ValidationReport:
    kw.setdefault("expected_sha256", result.sha256)
    return validate_shard(result.rec, result.idx, result.lst, **kw)


def idx_lines(result: ShardResult) -> list[str]:
    return Path(result.idx).read_text().splitlines(keepends=True)


def problems_text(report: ValidationReport) -> str:
    assert not report.ok
    return "\n".join(report.problems)


def test_a_good_shard_is_valid(shard):
    report = check(shard, decode=True)
    assert report.ok, report.problems
    assert (report.records, report.bytes, report.sha256) == (6, shard.bytes, shard.sha256)
    assert report.to_dict()["ok"] is True
    assert validate_shard(shard.rec, shard.idx).ok  # without a .lst


def test_flipped_byte_is_caught_by_the_sha256(shard):
    data = bytearray(Path(shard.rec).read_bytes())
    data[len(data) // 2] ^= 0x01
    Path(shard.rec).write_bytes(bytes(data))
    assert "sha256" in problems_text(check(shard))


def test_truncated_rec(shard):
    data = Path(shard.rec).read_bytes()
    Path(shard.rec).write_bytes(data[:-50])
    text = problems_text(check(shard, expected_sha256=None))
    assert "remain in the file" in text or "truncated" in text
    assert "holds 5 record(s) but" in text


def test_idx_line_removed(shard):
    lines = idx_lines(shard)
    Path(shard.idx).write_text("".join(lines[:2] + lines[3:]))
    text = problems_text(check(shard))
    assert "is not in" in text  # the record the line pointed at is not indexed
    assert "lists 6 entries but" in text


def test_idx_lines_shifted(shard):
    lines = idx_lines(shard)
    keys = [line.split("\t")[0] for line in lines]
    offsets = [line.split("\t")[1] for line in lines]
    shifted = [f"{k}\t{o}" for k, o in zip(keys, offsets[1:] + offsets[:1], strict=True)]
    Path(shard.idx).write_text("".join(shifted))
    assert "has id" in problems_text(check(shard))


@pytest.mark.parametrize(
    "offset, words", [(10**9, "past the end"), (4, "not the start of a record")]
)
def test_idx_offset_outside_or_inside_a_record(shard, offset, words):
    lines = idx_lines(shard)
    key = lines[1].split("\t")[0]
    lines[1] = f"{key}\t{offset}\n"
    Path(shard.idx).write_text("".join(lines))
    assert words in problems_text(check(shard))


def test_malformed_and_duplicate_idx_lines(shard):
    lines = idx_lines(shard)
    Path(shard.idx).write_text("".join(lines + [lines[0]]))
    assert "duplicate key" in problems_text(check(shard))
    Path(shard.idx).write_text("".join(lines) + "not\tanumber\n")
    assert "unreadable index" in problems_text(check(shard))


def test_lst_label_changed(shard):
    text = Path(shard.lst).read_text().replace("\t3.000000\t", "\t7.000000\t")
    Path(shard.lst).write_text(text)
    assert "differs from the .lst's 7.0" in problems_text(check(shard))


def test_lst_line_removed_or_reordered(shard):
    lines = Path(shard.lst).read_text().splitlines(keepends=True)
    Path(shard.lst).write_text("".join(lines[1:]))
    assert "lists 5 entries" in problems_text(check(shard))
    Path(shard.lst).write_text("".join([lines[1], lines[0], *lines[2:]]))
    assert "different order" in problems_text(check(shard))


def test_garbage_between_records_is_found_and_the_walk_goes_on(shard):
    data = Path(shard.rec).read_bytes()
    cut = int(idx_lines(shard)[3].split("\t")[1])
    Path(shard.rec).write_bytes(data[:cut] + b"\x00" * 16 + data[cut:])
    report = check(shard, expected_sha256=None)
    text = problems_text(report)
    assert "magic" in text and "resumes" in text
    assert report.records == 6  # every record was still found


def test_a_record_missing_from_the_idx_is_found_by_walking(shard):
    extra = frame_record(b"\0" * 24 + b"payload")
    Path(shard.rec).write_bytes(Path(shard.rec).read_bytes() + extra)
    text = problems_text(check(shard, expected_sha256=None))
    assert "is not in" in text and "holds 7 record(s)" in text


def test_labels_must_match_pack_label(tmp_path):
    root = tmp_path / "images"
    root.mkdir()
    (root / "a.jpg").write_bytes(rgb_jpeg())
    entries = [LstEntry(1, (1.0, 2.0), "a.jpg")]
    multi = pack_shard(entries, str(root), str(tmp_path / "m"), PackOptions(pack_label=True))
    assert check(multi, pack_label=True, label_width=2).ok
    assert "labels in its header" in problems_text(check(multi, label_width=2))
    assert "label_width=1" in problems_text(check(multi))  # the .lst has 2 label columns
    single = pack_shard(entries, str(root), str(tmp_path / "s"), PackOptions())
    assert "label(s) in its header" in problems_text(check(single, pack_label=True, label_width=2))


def test_decode_finds_images_that_do_not_decode(tmp_path):
    root = tmp_path / "images"
    root.mkdir()
    (root / "junk.jpg").write_bytes(b"definitely not an image")
    opts = PackOptions(ImageOptions(pass_through=True, verify="none"))
    result = pack_shard([LstEntry(0, (0.0,), "junk.jpg")], str(root), str(tmp_path / "j"), opts)
    assert check(result).ok
    assert "does not decode" in problems_text(check(result, decode=True))


def test_missing_files_are_problems(shard, tmp_path):
    assert "file not found" in problems_text(validate_shard(str(tmp_path / "nope.rec"), shard.idx))
    Path(shard.idx).unlink()
    assert "file not found" in problems_text(check(shard))


def test_arguments_are_checked(shard):
    with pytest.raises(ValueError, match="64 hex digits"):
        validate_shard(shard.rec, shard.idx, expected_sha256="abc")
    with pytest.raises(ValueError, match="label_width"):
        validate_shard(shard.rec, shard.idx, label_width=0)


def test_an_impossibly_large_idx_is_not_read(shard):
    Path(shard.idx).write_bytes(b"0\t0\n" * (shard.bytes * 3))
    assert "not read" in problems_text(check(shard))


def test_problem_lists_are_capped(shard):
    Path(shard.idx).write_text("".join(f"{k}\t{10**9 + 4 * k}\n" for k in range(300)))
    report = check(shard, expected_sha256=None)
    assert len(report.problems) == MAX_LISTED_PROBLEMS + 1
    assert "more problem(s) not listed" in report.problems[-1]


# --------------------------------------------------------------------------- recflow validate


def test_cli_exit_codes_and_json(shard, capsys):
    prefix = shard.rec[: -len(".rec")]
    assert main(["validate", prefix, "--decode"]) == 0
    assert "all valid" in capsys.readouterr().out
    assert main(["validate", shard.rec, "--sha256", shard.sha256]) == 0
    capsys.readouterr()
    lines = idx_lines(shard)
    Path(shard.idx).write_text("".join(lines[1:]))
    assert main(["validate", prefix, "--json"]) == 1
    (report,) = json.loads(capsys.readouterr().out)
    assert report["ok"] is False and report["problems"]
    assert main(["validate", prefix, "--sha256", "zz"]) == 2  # bad argument


def test_cli_on_a_manifest(shard, tmp_path, capsys):
    def entry(url: str) -> str:
        return Path(url).name

    manifest = Manifest(
        parameters={"label_width": 1, "pack_label": False},
        class_map={},
        splits={
            "all": SplitEntry(
                (
                    ShardEntry(
                        rec=entry(shard.rec),
                        idx=entry(shard.idx),
                        lst=entry(shard.lst),
                        records=shard.records,
                        bytes=shard.bytes,
                        sha256=shard.sha256,
                        idx_sha256=shard.idx_sha256,
                        lst_sha256=shard.lst_sha256,
                    ),
                )
            )
        },
    )
    url = write_manifest(str(tmp_path), manifest)
    assert main(["validate", url]) == 0
    assert main(["validate", str(tmp_path)]) == 0  # the folder holding manifest.json
    capsys.readouterr()
    # a .lst label changed: caught by the label check and the manifest's lst sha256
    text = Path(shard.lst).read_text().replace("\t2.000000\t", "\t9.000000\t", 1)
    Path(shard.lst).write_text(text)
    assert main(["validate", url]) == 1
    out = capsys.readouterr().out
    assert "differs from the .lst's 9.0" in out and "recorded in manifest.json" in out
