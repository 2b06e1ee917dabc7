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

import json
from pathlib import Path

import pytest
from imagetree import make_image_tree
from oracle import run_mxnet

from flows.cli import main as recflow

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
