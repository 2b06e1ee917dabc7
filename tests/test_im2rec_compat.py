"""`recflow im2rec` against MXNet 1.9.1's own `python -m mxnet.tools.im2rec` (the oracle).

Both tools run on the same generated image trees (`imagetree.DEFAULT_TREE`: nested folders,
spaces and non-ASCII names, RGB/gray/RGBA/palette/CMYK/16-bit inputs, odd sizes):

- `--list` with combinations of --recursive, --no-shuffle, --chunks, ratios, --exts: the same
  list files, byte for byte;
- `--pass-through` and `--pack-label --pass-through`: byte-identical `.rec` and `.idx`;
- re-encoding (resize, center crop, gray, PNG, threads): the same keys, labels and image sizes,
  with pixels close (OpenCV and Pillow resample and convert slightly differently).

The oracle runs im2rec.py as `-m mxnet.tools.im2rec` does (`runpy`, `__main__`), several
command lines per interpreter start to keep the suite fast.
"""

from __future__ import annotations

import io
import json
import struct
from pathlib import Path

import numpy as np
import pytest
from imagetree import DEFAULT_BROKEN, make_image_tree
from oracle import run_mxnet
from PIL import Image

from recordio_core.format.lst import LstEntry, format_lst, parse_lst
from recordio_core.format.recordio import MXIndexedRecordIO, unpack
from recordio_flow.flows.cli import main as recflow

pytestmark = pytest.mark.mxnet

# Runs `python -m mxnet.tools.im2rec ARGS` for each ARGS in a JSON list, in one interpreter.
ORACLE = r"""
import json, os, runpy, sys, warnings
warnings.filterwarnings("ignore")
runs = json.loads(sys.argv[1])
for argv in runs:
    sys.argv = ["im2rec.py", *argv]
    runpy.run_module("mxnet.tools.im2rec", run_name="__main__", alter_sys=True)
print(json.dumps("done"))
"""


def oracle_im2rec(*runs: list[str], cwd: Path) -> str:
    proc = run_mxnet(ORACLE, json.dumps([list(map(str, r)) for r in runs]), cwd=cwd)
    return proc.stdout


def ours(*argv: str) -> int:
    return recflow(["im2rec", *map(str, argv)])


@pytest.fixture(scope="module")
def tree(tmp_path_factory) -> Path:
    root = tmp_path_factory.mktemp("compat") / "images"
    make_image_tree(root)
    return root


def files_of(folder: Path) -> dict[str, bytes]:
    return {p.name: p.read_bytes() for p in sorted(folder.iterdir()) if p.is_file()}


LIST_CASES = [
    [],
    ["--no-shuffle"],
    ["--recursive"],
    ["--recursive", "--no-shuffle"],
    ["--recursive", "--chunks", "3"],
    ["--recursive", "--chunks", "4", "--no-shuffle", "--train-ratio", "0.5"],
    ["--recursive", "--train-ratio", "0.6", "--test-ratio", "0.2"],
    ["--recursive", "--train-ratio", "0.7", "--test-ratio", "0.3"],
    ["--recursive", "--train-ratio", "0.6", "--test-ratio", "0.3", "--chunks", "2"],
    ["--recursive", "--chunks", "40"],
    ["--recursive", "--exts", ".png", ".jpeg"],
]


def test_list_files_are_identical(tree, tmp_path, capsys):
    """Every case: the same .lst file names and bytes as im2rec.py --list."""
    theirs_runs = []
    for i, case in enumerate(LIST_CASES):
        (tmp_path / f"theirs{i}").mkdir()
        (tmp_path / f"ours{i}").mkdir()
        theirs_runs.append([str(tmp_path / f"theirs{i}" / "data"), str(tree), "--list", *case])
        assert ours(tmp_path / f"ours{i}" / "data", tree, "--list", *case) == 0
    oracle_out = oracle_im2rec(*theirs_runs, cwd=tmp_path)
    ours_out = capsys.readouterr().out
    for i, case in enumerate(LIST_CASES):
        theirs = files_of(tmp_path / f"theirs{i}")
        mine = files_of(tmp_path / f"ours{i}")
        assert sorted(mine) == sorted(theirs), case
        for name in theirs:
            assert mine[name] == theirs[name], (case, name)
        assert any(theirs.values()) or "--exts" in case
    # the class map lines im2rec.py prints are printed by us too
    for line in (". 0", "cats/kittens 2", "dogs b 4", "ünïcødé/deep/er 8"):
        assert f"\n{line}\n" in oracle_out and f"\n{line}\n" in ours_out


def test_list_relative_prefix_and_class_map(tree, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    (tmp_path / "t").mkdir()
    (tmp_path / "o").mkdir()
    oracle_im2rec(["t/rel", str(tree), "--list", "--recursive"], cwd=tmp_path)
    assert ours("o/rel", tree, "--list", "--recursive", "--save-class-map") == 0
    assert (tmp_path / "o" / "rel.lst").read_bytes() == (tmp_path / "t" / "rel.lst").read_bytes()
    classes = json.loads((tmp_path / "o" / "rel.classes.json").read_text(encoding="utf-8"))
    assert classes["ünïcødé/deep/er"] == 8 and classes["."] == 0


# ---------------------------------------------------------------- pack mode


@pytest.fixture(scope="module")
def lists(tree, tmp_path_factory) -> dict[str, str]:
    """`.lst` texts for the default tree: the recursive shuffled list in two chunks."""
    out = tmp_path_factory.mktemp("lists")
    assert ours(out / "data", tree, "--list", "--recursive", "--chunks", "2") == 0
    return {p.name: p.read_text(encoding="utf-8") for p in sorted(out.glob("*.lst"))}


def multi_label(lists: dict[str, str]) -> dict[str, str]:
    """The same images with three float labels per line."""
    out = {}
    for name, text in lists.items():
        entries = parse_lst(text)
        rows = [
            LstEntry(e.index, (e.label, e.index * 0.5 - 3.25, float(len(e.path))), e.path)
            for e in entries
        ]
        out[name] = format_lst(rows)
    return out


def pack_both(
    cases: dict[str, tuple[dict[str, str], list[str]]], root: Path, tmp_path: Path
) -> dict[str, tuple[Path, Path]]:
    """For each case (list files, options): pack with the oracle and with us, in two folders."""
    runs = []
    folders = {}
    for name, (list_files, options) in cases.items():
        pair = (tmp_path / name / "theirs", tmp_path / name / "ours")
        for folder in pair:
            folder.mkdir(parents=True)
            for fname, text in list_files.items():
                (folder / fname).write_text(text, encoding="utf-8")
        runs.append([str(pair[0] / "data"), str(root), *options])
        assert ours(pair[1] / "data", root, *options) == 0, name
        folders[name] = pair
    oracle_im2rec(*runs, cwd=tmp_path)
    return folders


def test_pass_through_and_pack_label_are_byte_identical(tree, lists, tmp_path):
    cases = {
        "pass": (lists, ["--pass-through"]),
        "pass_threads": (lists, ["--pass-through", "--num-thread", "2"]),
        "pack_label": (multi_label(lists), ["--pass-through", "--pack-label"]),
        "no_pack_label": (multi_label(lists), ["--pass-through"]),
    }
    for name, (theirs, mine) in pack_both(cases, tree, tmp_path).items():
        got, want = files_of(mine), files_of(theirs)
        assert sorted(got) == sorted(want) == [
            "data_0.idx", "data_0.lst", "data_0.rec", "data_1.idx", "data_1.lst", "data_1.rec"
        ], name  # fmt: skip
        for fname in want:
            assert got[fname] == want[fname], (name, fname)
        assert got["data_0.lst"] == cases[name][0]["data_0.lst"].encode()  # lists untouched


def read_payloads(rec: Path) -> dict[int, bytes]:
    """key -> raw record payload, via the .idx."""
    reader = MXIndexedRecordIO(str(rec.with_suffix(".idx")), str(rec), "r")
    try:
        return {int(key): reader.read_idx(key) for key in reader.keys}
    finally:
        reader.close()


def read_records(rec: Path) -> dict[int, tuple[tuple, np.ndarray]]:
    """key -> ((flag, label(s), id, id2), decoded pixels) for every record via the .idx."""
    reader = MXIndexedRecordIO(str(rec.with_suffix(".idx")), str(rec), "r")
    out = {}
    try:
        for key in reader.keys:
            header, data = unpack(reader.read_idx(key))
            label = np.atleast_1d(np.asarray(header.label, dtype=np.float32)).tolist()
            with Image.open(io.BytesIO(data)) as im:
                pixels = np.asarray(im)
            out[int(key)] = ((header.flag, label, header.id, header.id2), pixels)
    finally:
        reader.close()
    return out


REENCODE_CASES = {
    "default": [],
    "resize": ["--resize", "24"],
    "resize_crop": ["--resize", "20", "--center-crop"],
    "crop_only": ["--center-crop"],
    "gray": ["--color", "0", "--resize", "32"],
    "png": ["--encoding", ".png", "--resize", "26"],
    "gray_png": ["--color", "0", "--encoding", ".png"],
    "quality_threads": ["--quality", "60", "--num-thread", "2", "--resize", "30"],
    "unchanged_jpg": ["--color", "-1"],
    "unchanged_png": ["--color", "-1", "--encoding", ".png"],
}
# With --color -1 OpenCV keeps what Pillow cannot or we choose not to: gray+alpha becomes
# 4-channel BGRA, 16-bit PNGs stay 16-bit, and EXIF orientation is NOT applied. These images
# are compared for keys and labels only in the --color -1 cases.
UNCHANGED_DIFFERS = {"cats/kittens/k2.png", "cats/C4.JPG", "dogs/d3.png"}


def test_reencoded_records_match_keys_labels_sizes_and_pixels(tree, lists, tmp_path):
    cases = {name: (lists, opts) for name, opts in REENCODE_CASES.items()}
    paths = {e.index: e.path for text in lists.values() for e in parse_lst(text)}
    report = []
    for name, (theirs, mine) in pack_both(cases, tree, tmp_path).items():
        case_means = []
        for chunk in ("data_0", "data_1"):
            want = read_records(theirs / f"{chunk}.rec")
            got = read_records(mine / f"{chunk}.rec")
            assert list(got) == list(want), (name, chunk)  # same keys, same order
            assert (mine / f"{chunk}.idx").read_text().count("\n") == len(want)
            for key, (header, pixels) in want.items():
                my_header, my_pixels = got[key]
                assert my_header == header, (name, key)
                if name.startswith("unchanged") and paths[key] in UNCHANGED_DIFFERS:
                    continue
                assert my_pixels.shape == pixels.shape, (name, paths[key])
                diff = np.abs(my_pixels.astype(np.int16) - pixels.astype(np.int16))
                report.append((round(float(diff.mean()), 3), name, paths[key]))
                case_means.append(float(diff.mean()))
                # issue 21's criterion for pixels against im2rec.py: <= 3.0 levels for the
                # worst image, <= 1.0 averaged over the images
                assert diff.mean() <= 3.0, (name, paths[key], float(diff.mean()))
        assert np.mean(case_means) <= 1.0, (name, float(np.mean(case_means)))
    assert len(report) == len(REENCODE_CASES) * 30 - 2 * len(UNCHANGED_DIFFERS)
    report.sort(reverse=True)
    print("worst mean |diff|:", report[:5])


def test_unreadable_images_are_rejects_not_gaps(tmp_path, capsys):
    root = tmp_path / "broken_root"
    make_image_tree(root, DEFAULT_BROKEN)
    (tmp_path / "o").mkdir()
    assert ours(tmp_path / "o" / "b", root, "--list", "--recursive", "--no-shuffle") == 0
    text = (tmp_path / "o" / "b.lst").read_text(encoding="utf-8")
    cases = {"broken": ({"data.lst": text}, ["--num-thread", "2"])}
    capsys.readouterr()
    theirs, mine = pack_both(cases, root, tmp_path)["broken"]
    out = capsys.readouterr().out
    names = {e.index: e.path for e in parse_lst(text)}
    got = {k: names[k] for k in read_records(mine / "data.rec")}
    want = {k: names[k] for k in read_records(theirs / "data.rec")}
    # OpenCV decodes what it can of a truncated JPEG; we reject it (Pillow refuses it)
    assert set(got.values()) == {"broken/fine.jpg", "broken/png_named.jpg"}
    assert set(want.values()) - set(got.values()) <= {"broken/truncated.jpg"}
    for path in ("broken/zero.jpg", "broken/text.png", "broken/truncated.jpg"):
        assert path in out
    assert "3 rejected" in out


def test_recflow_pack_matches_im2rec_py(tree, lists, tmp_path):
    """`recflow pack` (im2rec.cc's form) writes what im2rec.py writes for the same settings."""
    one = {"data_0.lst": lists["data_0.lst"]}
    multi = {"data_0.lst": multi_label(lists)["data_0.lst"]}
    cases = {
        "pass": (one, ["--pass-through"]),
        "pack_label": (multi, ["--pass-through", "--pack-label"]),
        "resize": (one, ["--resize", "24"]),
    }
    folders = pack_both(cases, tree, tmp_path)
    mine = tmp_path / "cc"
    mine.mkdir()
    spaced = lists["data_0.lst"].replace("\t", " ")  # the seed's space-separated form works too
    (mine / "spaced.lst").write_text(spaced, encoding="utf-8")
    lst = {name: folders[name][0] / "data_0.lst" for name in cases}
    runs = {
        "pass": [lst["pass"], tree, mine / "pass.bin", "unchanged=1"],
        "spaced": [mine / "spaced.lst", tree, mine / "spaced.bin", "unchanged=1"],
        "pack_label": [lst["pack_label"], tree, mine / "pl.rec"]
        + ["label_width=3", "pack_label=1", "unchanged=1", "num_thread=2"],
        "resize": [lst["resize"], tree, mine / "resize.rec", "resize=24"],
    }
    for argv in runs.values():
        assert recflow(["pack", *map(str, argv)]) == 0
    theirs = {name: folders[name][0] for name in cases}
    assert (mine / "pass.bin").read_bytes() == (theirs["pass"] / "data_0.rec").read_bytes()
    assert (mine / "pass.idx").read_bytes() == (theirs["pass"] / "data_0.idx").read_bytes()
    assert (mine / "spaced.bin").read_bytes() == (theirs["pass"] / "data_0.rec").read_bytes()
    # im2rec.cc keeps the first label in the header's label field where im2rec.py writes 0:
    # the records differ in exactly those four bytes and are the same length.
    assert (mine / "pl.idx").read_bytes() == (theirs["pack_label"] / "data_0.idx").read_bytes()
    ours_pl = read_payloads(mine / "pl.rec")
    theirs_pl = read_payloads(theirs["pack_label"] / "data_0.rec")
    assert list(ours_pl) == list(theirs_pl)
    for key, payload in theirs_pl.items():
        header, _ = unpack(payload)
        first = struct.pack("<f", float(header.label[0]))
        assert ours_pl[key] == payload[:4] + first + payload[8:]
    want = read_records(theirs["resize"] / "data_0.rec")
    got = read_records(mine / "resize.rec")
    assert list(got) == list(want)
    for key, (header, pixels) in want.items():
        assert got[key][0] == header
        assert got[key][1].shape == pixels.shape
        assert np.abs(got[key][1].astype(np.int16) - pixels).mean() <= 3.0
    assert sorted(p.name for p in mine.iterdir()) == [
        "pass.bin", "pass.idx", "pl.idx", "pl.rec", "resize.idx", "resize.rec",
        "spaced.bin", "spaced.idx", "spaced.lst",
    ]  # fmt: skip
