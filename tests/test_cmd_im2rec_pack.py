"""`recflow im2rec` / `recflow pack` option handling (no MXNet needed)."""

from __future__ import annotations

import subprocess
import sys

import pytest
from imagetree import ImageSpec, make_image_tree

from recordio_flow.flows.cli import main as recflow
from recordio_flow.flows.cmd_im2rec import find_lists
from recordio_flow.flows.cmd_pack import DEFAULTS, output_paths, parse_options, read_part


@pytest.mark.parametrize(
    ("argv", "message"),
    [
        (["--chunks", "0"], "--chunks must be >= 1"),
        (["--train-ratio", "1.5"], r"--train-ratio must be in \[0, 1\]"),
        (["--test-ratio", "-0.1"], r"--test-ratio must be in \[0, 1\]"),
        (["--resize", "-2"], "--resize must be >= 0"),
        (["--num-thread", "0"], "--num-thread must be >= 1"),
        (["--io-concurrency", "0"], "--io-concurrency must be between 1 and 1024"),
        (["--quality", "101"], "JPEG quality 0-100"),
        (["--encoding", ".png", "--quality", "10"], "PNG compression level 0-9"),
        (["--exts", "jpg"], "must start with '.'"),
    ],
)
def test_im2rec_bad_options_fail_before_any_work(tmp_path, capsys, argv, message):
    code = recflow(["im2rec", str(tmp_path / "p"), str(tmp_path / "missing"), "--list", *argv])
    assert code == 2
    err = capsys.readouterr().err
    assert "recflow im2rec: error:" in err
    import re

    assert re.search(message, err), err
    assert list(tmp_path.iterdir()) == []


def test_im2rec_list_missing_root_is_an_error(tmp_path, capsys):
    assert recflow(["im2rec", str(tmp_path / "p"), str(tmp_path / "nope"), "--list"]) == 2
    assert "does not exist" in capsys.readouterr().err


def test_im2rec_pack_without_lists_fails(tmp_path, capsys):
    assert recflow(["im2rec", str(tmp_path / "p"), str(tmp_path)]) == 1
    assert "Did not find any list file" in capsys.readouterr().err


def test_find_lists_uses_im2rec_prefix_rules(tmp_path):
    for name in ("data.lst", "data_train.lst", "data_0_val.lst", "datax.lst", "other.lst"):
        (tmp_path / name).write_text("")
    (tmp_path / "data.txt").write_text("")
    (tmp_path / "data_dir.lst").mkdir()
    got = [p.rsplit("/", 1)[1] for p in find_lists(str(tmp_path / "data"))]
    assert got == ["data.lst", "data_0_val.lst", "data_train.lst", "datax.lst"]
    # a folder as prefix: every list in it
    assert len(find_lists(str(tmp_path))) == 5


def test_im2rec_list_writes_lists_and_class_map(tmp_path, capsys):
    root = tmp_path / "imgs"
    make_image_tree(root, {"a/x.jpg": ImageSpec(8, 8), "b/y.png": ImageSpec(8, 8)})
    out = tmp_path / "out"
    code = recflow(
        ["im2rec", str(out / "ds"), str(root), "--list", "--recursive", "--no-shuffle"]
        + ["--train-ratio", "0.5", "--save-class-map", str(out / "c.json")]
    )
    assert code == 0
    assert (out / "ds_train.lst").read_text() == "0\t0.000000\ta/x.jpg\n"
    assert (out / "ds_val.lst").read_text() == "1\t1.000000\tb/y.png\n"
    assert (out / "c.json").read_text() == '{\n  "a": 0,\n  "b": 1\n}\n'
    assert "a 0\nb 1\n" in capsys.readouterr().out


def test_pack_defaults_are_im2rec_cc_defaults():
    assert parse_options([]) == DEFAULTS
    assert DEFAULTS["resize"] == -1 and DEFAULTS["quality"] == 95 and DEFAULTS["color"] == 1


@pytest.mark.parametrize(
    ("items", "changes"),
    [
        (["resize=256", "label_width=4"], {"resize": 256, "label_width": 4}),
        (["encoding=.png"], {"encoding": ".png", "quality": 3}),  # im2rec.cc: > 9 becomes 3
        (["encoding=.png", "quality=7"], {"encoding": ".png", "quality": 7}),
        (["label_width=2", "pack_label=1"], {"label_width": 2, "pack_label": 1}),
        (["nsplit=4", "part=3"], {"nsplit": 4, "part": 3}),
        (["resize=1", "resize=2"], {"resize": 2}),  # the last one wins, as in im2rec.cc
        (["inter_method=9", "num_thread=3"], {"inter_method": 9, "num_thread": 3}),
        (["unchanged=1", "verify=none"], {"unchanged": 1, "verify": "none"}),
        (["on_decode_warning=reject"], {"on_decode_warning": "reject"}),
        (
            ["unchanged=1", "color=-1", "center_crop=1"],
            {"unchanged": 1, "color": -1, "center_crop": 1},
        ),
    ],
)
def test_pack_options(items, changes):
    assert parse_options(items) == {**DEFAULTS, **changes}


@pytest.mark.parametrize(
    ("items", "message"),
    [
        (["size=256"], "unknown option 'size'; known keys: resize, label_width, pack_label"),
        (["resize"], "options are key=value"),
        (["=3"], "options are key=value"),
        (["resize=big"], "resize must be an integer, got 'big'"),
        (["color=2"], "color must be -1, 0 or 1"),
        (["encoding=.bmp"], "encoding must be .jpg or .png"),
        (["pack_label=1"], "pack_label=1 can only be used when label_width > 1"),
        (["label_width=0"], "label_width must be >= 1"),
        (["nsplit=0"], "nsplit must be >= 1"),
        (["nsplit=2", "part=2"], r"part must be in \[0, nsplit=2\)"),
        (["inter_method=5"], "inter_method must be one of 0, 1, 2, 3, 4, 9, 10"),
        (["quality=101"], "JPEG quality 0-100"),
        (["encoding=.png", "quality=-1"], "PNG compression 0-9"),
        (["unchanged=2"], "unchanged must be 0 or 1"),
        (["num_thread=0"], "num_thread must be >= 1"),
        (["io_concurrency=2000"], "io_concurrency must be between 1 and 1024"),
        (["verify=all"], "verify must be none, header or decode"),
        (["on_decode_warning=drop"], "on_decode_warning must be keep or reject"),
    ],
)
def test_pack_bad_options(items, message):
    with pytest.raises(ValueError, match=message):
        parse_options(items)


def test_pack_bad_option_on_the_command_line(tmp_path, capsys):
    code = recflow(["pack", "a.lst", str(tmp_path), str(tmp_path / "o.rec"), "size=3"])
    assert code == 2
    assert "unknown option 'size'" in capsys.readouterr().err


@pytest.mark.parametrize(
    ("output", "nsplit", "part", "expected"),
    [
        ("out/output.bin", 1, 0, ("out/output.bin", "out/output.idx")),
        ("output.rec", 1, 0, ("output.rec", "output.idx")),
        ("data/output", 1, 0, ("data/output", "data/output.idx")),
        ("a.b/output", 1, 0, ("a.b/output", "a.b/output.idx")),
        ("output.bin", 4, 3, ("output.bin.part003", "output.part003.idx")),
        ("output", 2, 0, ("output.part000", "output.part000.idx")),
        ("s3://b/x/out.rec", 1, 0, ("s3://b/x/out.rec", "s3://b/x/out.idx")),
    ],
)
def test_output_paths(output, nsplit, part, expected):
    assert output_paths(output, nsplit, part) == expected


def test_output_named_idx_is_refused():
    with pytest.raises(ValueError, match="overwritten by its own index"):
        output_paths("x.idx", 1, 0)


def test_read_part_splits_like_im2rec_cc_and_numbers_lines(tmp_path):
    lst = tmp_path / "l.lst"
    lst.write_bytes(b"0 0 a.jpg\n1 1 b c.jpg\n2\t2.000000\tc.jpg\n3 3 d.jpg\n")
    parts = [read_part(str(lst), 1, 2, p) for p in range(2)]
    assert [[e.path for e in part] for part in parts] == [["a.jpg", "b c.jpg", "c.jpg"], ["d.jpg"]]
    lst.write_bytes(b"0 0 a.jpg\n1 1 b.jpg\n2 x c.jpg\n")
    with pytest.raises(ValueError, match=r"l\.lst:3: label in field 2"):
        read_part(str(lst), 1, 2, 1)


@pytest.fixture
def small_tree(tmp_path):
    root = tmp_path / "imgs"
    specs = {f"c{i % 3}/img {i:02d}.jpg": ImageSpec(20 + i, 30 - i // 2) for i in range(17)}
    make_image_tree(root, specs)
    assert recflow(["im2rec", str(tmp_path / "all"), str(root), "--list", "--recursive"]) == 0
    return root, tmp_path / "all.lst"


def _records(rec_path, idx_path) -> list[tuple[int, bytes]]:
    from recordio_core.format.recordio import MXIndexedRecordIO

    reader = MXIndexedRecordIO(str(idx_path), str(rec_path), "r")
    try:
        return [(int(k), reader.read_idx(k)) for k in reader.keys]
    finally:
        reader.close()


def test_pack_nsplit_parts_add_up_to_the_whole(small_tree, tmp_path, capsys):
    root, lst = small_tree
    out = tmp_path / "out"
    assert recflow(["pack", str(lst), str(root), str(out / "whole.rec"), "unchanged=1"]) == 0
    whole = _records(out / "whole.rec", out / "whole.idx")
    assert len(whole) == 17
    parts = []
    for part in range(3):
        argv = ["pack", str(lst), str(root), str(out / "whole.rec"), "nsplit=3", f"part={part}"]
        assert recflow([*argv, "unchanged=1"]) == 0
        parts.append(_records(out / f"whole.rec.part{part:03d}", out / f"whole.part{part:03d}.idx"))
    assert [r for p in parts for r in p] == whole
    assert all(parts)  # 17 lines of similar length: every part gets some
    assert "part 2 of 3" in capsys.readouterr().out


def test_pack_reports_rejects_and_keeps_going(small_tree, tmp_path, capsys):
    root, lst = small_tree
    (root / "c0" / "img 00.jpg").unlink()
    (root / "c1" / "img 01.jpg").write_bytes(b"garbage")
    assert recflow(["pack", str(lst), str(root), str(tmp_path / "o.rec"), "resize=16"]) == 0
    out = capsys.readouterr().out
    assert "15 records" in out and "2 rejected" in out
    assert "c0/img 00.jpg: file not found" in out
    assert "c1/img 01.jpg" in out
    assert len(_records(tmp_path / "o.rec", tmp_path / "o.idx")) == 15


def test_pack_to_s3_with_any_output_name(small_tree, s3_server):
    root, lst = small_tree
    bucket = s3_server.make_bucket()
    out = s3_server.url(bucket, "ds", "output.bin")
    # a subprocess, so fsspec picks up FSSPEC_S3_ENDPOINT_URL (the moto server) at import
    proc = subprocess.run(
        [
            sys.executable,
            "-m",
            "recordio_flow.flows.cli",
            "pack",
            str(lst),
            str(root),
            out,
            "unchanged=1",
        ],
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert proc.returncode == 0, proc.stderr
    fs = s3_server.fs()
    names = sorted(p.rsplit("/", 1)[1] for p in fs.ls(f"{bucket}/ds"))
    assert names == ["output.bin", "output.idx"]
    local = lst.parent / "local.rec"
    assert recflow(["pack", str(lst), str(root), str(local), "unchanged=1"]) == 0
    assert fs.cat_file(f"{bucket}/ds/output.bin") == local.read_bytes()
    assert fs.cat_file(f"{bucket}/ds/output.idx") == local.with_suffix(".idx").read_bytes()


def test_im2rec_pack_mode_keeps_the_users_lists(small_tree, tmp_path):
    root, lst = small_tree
    before = lst.read_bytes()
    assert recflow(["im2rec", str(tmp_path / "all"), str(root), "--resize", "12"]) == 0
    assert lst.read_bytes() == before
    assert len(_records(tmp_path / "all.rec", tmp_path / "all.idx")) == 17


def test_pass_through_of_non_images_needs_verify_none(tmp_path, capsys):
    root = tmp_path / "files"
    make_image_tree(root, {"a.npy": b"\x93NUMPY data", "b.npy": b"more"})
    prefix = str(tmp_path / "f")
    assert recflow(["im2rec", prefix, str(root), "--list", "--exts", ".npy"]) == 0
    assert recflow(["im2rec", prefix, str(root), "--pass-through"]) == 0
    assert "0 records" in capsys.readouterr().out
    assert recflow(["im2rec", prefix, str(root), "--pass-through", "--verify", "none"]) == 0
    records = _records(tmp_path / "f.rec", tmp_path / "f.idx")
    assert sorted(payload[24:] for _, payload in records) == [b"more", b"\x93NUMPY data"]
    out = tmp_path / "cc.rec"
    lst = str(tmp_path / "f.lst")
    assert recflow(["pack", lst, str(root), str(out), "unchanged=1", "verify=none"]) == 0
    assert out.read_bytes() == (tmp_path / "f.rec").read_bytes()


def _corrupt_but_decodable(path):
    data = path.read_bytes()
    path.write_bytes(data[:-2] + b"\xab" * 16 + data[-2:])


def test_pack_and_im2rec_flag_or_reject_corrupt_but_decodable_jpegs(small_tree, tmp_path, capsys):
    root, lst = small_tree
    _corrupt_but_decodable(root / "c1" / "img 01.jpg")
    (root / "c0" / "img 00 copy.jpg").write_bytes((root / "c0" / "img 00.jpg").read_bytes())
    assert recflow(["pack", str(lst), str(root), str(tmp_path / "k.rec"), "resize=16"]) == 0
    out = capsys.readouterr().out
    assert "17 records" in out and "0 rejected" in out
    assert "warning" in out and "c1/img 01.jpg: Corrupt JPEG data" in out
    argv = ["pack", str(lst), str(root), str(tmp_path / "r.rec"), "on_decode_warning=reject"]
    assert recflow(argv) == 0
    out = capsys.readouterr().out
    assert "16 records" in out and "1 rejected" in out
    assert "corrupt JPEG data (decoder warning)" in out
    # im2rec.py's drop-in: the same option, as a flag; byte-identical files are counted
    work = tmp_path / "im2rec"
    work.mkdir()
    lines = lst.read_text().splitlines()
    lines.append("99\t0.000000\tc0/img 00 copy.jpg")
    (work / "data.lst").write_text("\n".join(lines) + "\n")
    argv = ["im2rec", str(work / "data"), str(root), "--on-decode-warning", "reject"]
    assert recflow(argv) == 0
    out = capsys.readouterr().out
    assert "1 rejected" in out and "warning" in out
    assert "1 group(s) of byte-identical images (2 images" in out
