"""Reliability: user `.lst` files. Every problem is an error naming the file and line before
any packing starts (library, `recflow im2rec`, `recflow pack` and the flow); paths that leave
the source root are refused unless explicitly allowed; CRLF line ends and blank lines are read
correctly (as MXNet reads them), never turned into bad paths or gaps."""

from __future__ import annotations

from pathlib import Path

import pytest
from pipeline_fixtures import (
    image_tree,
    prefect_harness,  # noqa: F401  (the shared server fixture)
)

from recordio_core.format.errors import ListFileError
from recordio_core.format.lst import read_lst

GOOD_LINES = "0\t0.000000\tclass0/img00.jpg\n1\t0.000000\tclass0/img01.jpg\n"

# name: (list text after two good lines, label_width, words the error must hold)
PROBLEMS: dict[str, tuple[bytes, int, str]] = {
    "too_few_columns": (b"2\tclass0/img03.jpg\n", 1, "found 2"),
    "one_column": (b"2\n", 1, "found 1"),
    "non_numeric_label": (b"2\tcat\tclass0/img03.jpg\n", 1, "'cat') is not a number"),
    "non_numeric_index": (b"two\t0\tclass0/img03.jpg\n", 1, "'two' is not an integer"),
    "negative_index": (b"-2\t0\tclass0/img03.jpg\n", 1, "outside [0, 2**64)"),
    "infinite_label": (b"2\tinf\tclass0/img03.jpg\n", 1, "not finite"),
    "label_width_more_columns": (b"2\t0\t1\tclass0/img03.jpg\n", 1, "label_width=1"),
    "label_width_fewer_columns": (b"2\t0\tclass0/img03.jpg\n", 2, "label_width=2"),
    "duplicate_index": (b"1\t0\tclass0/img03.jpg\n", 1, "duplicate index 1 (first seen on line 2)"),
    "empty_path": (b"2\t0\t\n", 1, "path (last column) is empty"),
    "blank_path": (b"2\t0\t   \n", 1, "path (last column) is empty"),
    "nul_in_path": (b"2\t0\tclass0/im\x00g.jpg\n", 1, "NUL"),
    "dot_dot": (b"2\t0\t../outside.jpg\n", 1, "climbs out of the image root"),
    "deep_dot_dot": (b"2\t0\tclass0/../../outside.jpg\n", 1, "climbs out"),
    "backslash_dot_dot": (b"2\t0\t..\\outside.jpg\n", 1, "climbs out"),
    "absolute": (b"2\t0\t/etc/passwd\n", 1, "absolute path"),
    "unc_path": (b"2\t0\t\\\\server\\share\\x.jpg\n", 1, "absolute path"),
    "url": (b"2\t0\ts3://other-bucket/x.jpg\n", 1, "URL"),
    "file_url": (b"2\t0\tfile:///etc/passwd\n", 1, "URL"),
    "drive_letter": (b"2\t0\tC:\\images\\x.jpg\n", 1, "drive"),
}
NOT_UTF8 = b"2\t0\tclass0/\xff\xfe.jpg\n"


def write_list(path: Path, tail: bytes, label_width: int = 1) -> Path:
    head = GOOD_LINES
    if label_width == 2:
        head = head.replace("0.000000\t", "0.000000\t1.000000\t")
    path.write_bytes(head.encode() + tail)
    return path


@pytest.mark.parametrize("name", list(PROBLEMS))
def test_list_problems_name_file_and_line(tmp_path, name):
    tail, width, words = PROBLEMS[name]
    lst = write_list(tmp_path / f"{name}.lst", tail, width)
    with pytest.raises(ListFileError) as info:
        read_lst(str(lst), label_width=width, allow_outside_root=False)
    assert str(info.value).startswith(f"{lst}:3: ") and words in str(info.value)


def test_outside_root_paths_are_accepted_only_when_allowed(tmp_path):
    for name in ("dot_dot", "absolute", "url", "drive_letter"):
        lst = write_list(tmp_path / f"{name}.lst", PROBLEMS[name][0])
        assert len(read_lst(str(lst), allow_outside_root=True)) == 3
    inside = write_list(tmp_path / "inside.lst", b"2\t0\tclass0/../class0/img02.png\n")
    assert len(read_lst(str(inside), allow_outside_root=False)) == 3


def test_not_utf8_is_an_error_naming_the_file(tmp_path):
    lst = write_list(tmp_path / "latin1.lst", NOT_UTF8)
    with pytest.raises(ListFileError, match=r"latin1\.lst:0: not UTF-8"):
        read_lst(str(lst))


def test_crlf_blank_lines_and_a_bom_read_like_lf(tmp_path):
    clean = GOOD_LINES + "2\t0.000000\tclass0/img02.png\n"
    variants = {
        "crlf": clean.replace("\n", "\r\n"),
        "cr": clean.replace("\n", "\r"),
        "blank": "\n" + clean.replace("\n", "\n\n   \n\t\n") + "\n\n",
        "crlf_blank": ("\r\n" + clean.replace("\n", "\r\n\r\n")),
        "bom_crlf": "\ufeff" + clean.replace("\n", "\r\n"),  # as Windows Notepad saves it
    }
    want = read_lst(str(_write(tmp_path / "clean.lst", clean)))
    for name, text in variants.items():
        got = read_lst(str(_write(tmp_path / f"{name}.lst", text)), allow_outside_root=False)
        assert got == want, name
        assert not any("\r" in e.path or e.path != e.path.strip() for e in got)


def _write(path: Path, text: str) -> Path:
    path.write_bytes(text.encode())
    return path


@pytest.fixture
def images(tmp_path: Path) -> Path:
    root = tmp_path / "src"
    image_tree(root, classes=1, per_class=4)
    return root


# im2rec.py has no label_width: each line has its own number of labels
IM2REC_PROBLEMS = [n for n in PROBLEMS if not n.startswith("label_width")] + ["not_utf8"]


@pytest.mark.parametrize("name", IM2REC_PROBLEMS)
def test_recflow_im2rec_refuses_a_bad_list_before_packing_any(tmp_path, images, name, capsys):
    """Two lists share the prefix: the good one comes first and must not be packed either."""
    from recordio_flow.flows.cli import main

    tail, width, words = PROBLEMS.get(name, (NOT_UTF8, 1, "not UTF-8"))
    folder = tmp_path / "lists"
    folder.mkdir()
    (folder / "data_a.lst").write_text(GOOD_LINES)
    bad = write_list(folder / "data_b.lst", tail, width)
    assert main(["im2rec", str(folder / "data"), str(images)]) == 2
    err = capsys.readouterr().err
    assert f"{bad}:{0 if name == 'not_utf8' else 3}: " in err and words in err
    assert sorted(p.name for p in folder.iterdir()) == ["data_a.lst", "data_b.lst"]


@pytest.mark.parametrize("name", ["non_numeric_label", "duplicate_index", "dot_dot", "absolute"])
def test_recflow_pack_refuses_a_bad_list_before_packing(tmp_path, images, name, capsys):
    from recordio_flow.flows.cli import main

    tail, width, words = PROBLEMS[name]
    lst = write_list(tmp_path / "l.lst", tail, width)
    out = tmp_path / "out.rec"
    assert main(["pack", str(lst), str(images), str(out)]) == 2
    err = capsys.readouterr().err
    assert f"{lst}:3: " in err and words in err
    assert not out.exists() and not (tmp_path / "out.idx").exists()


def test_outside_root_is_allowed_on_request_by_the_commands(tmp_path, images, capsys):
    from recordio_flow.flows.cli import main

    (tmp_path / "elsewhere").mkdir()
    (tmp_path / "elsewhere" / "x.jpg").write_bytes((images / "class0/img00.jpg").read_bytes())
    lst = write_list(tmp_path / "data.lst", b"2\t0\t../elsewhere/x.jpg\n")
    assert main(["pack", str(lst), str(images), str(tmp_path / "o.rec")]) == 2
    assert (
        main(["pack", str(lst), str(images), str(tmp_path / "o.rec"), "allow_outside_root=1"]) == 0
    )
    assert "3 records" in capsys.readouterr().out
    assert main(["im2rec", str(tmp_path / "data"), str(images), "--allow-outside-root"]) == 0
    assert "3 records" in capsys.readouterr().out


@pytest.mark.slow
@pytest.mark.usefixtures("prefect_harness")
def test_the_flow_takes_a_user_list_and_refuses_bad_ones_before_packing(tmp_path, images):
    from recordio_core.format.manifest import read_manifest
    from recordio_flow.flows.build import build_dataset

    def run(lst: Path, out: Path, **kw):
        return build_dataset(
            source=str(images), output=str(out), lst=str(lst), return_state=True, **kw
        )

    for name in ("too_few_columns", "dot_dot", "duplicate_index"):
        tail, _, words = PROBLEMS[name]
        lst = write_list(tmp_path / f"{name}.lst", tail)
        out = tmp_path / f"out-{name}"
        state = run(lst, out)
        assert state.is_failed()
        message = str(state.result(raise_on_failure=False))
        assert message.startswith(f"{lst}:3: ") and words in message
        assert not out.exists()  # nothing packed, nothing written

    # a user list with CRLF, blank lines and a path outside SOURCE, allowed explicitly
    (tmp_path / "elsewhere").mkdir()
    (tmp_path / "elsewhere" / "x.jpg").write_bytes((images / "class0/img00.jpg").read_bytes())
    text = GOOD_LINES + "\n" + "2\t1.000000\t../elsewhere/x.jpg\n"
    lst = _write(tmp_path / "user.lst", text.replace("\n", "\r\n"))
    out = tmp_path / "out-user"
    assert run(lst, out).is_failed()
    state = run(lst, out, allow_outside_root=True)
    assert state.is_completed()
    summary = state.result()
    assert summary["records"] == 3 and summary["rejects"] == 0
    m = read_manifest(str(out))
    assert m.parameters["allow_outside_root"] is True
    ((_, shard),) = m.shards()
    packed = read_lst(str(out / shard.lst), allow_outside_root=True)
    # every line's own index and label; in the hash order of the paths (record_order="hash")
    assert [(e.index, e.label, e.path) for e in packed] == [
        (2, 1.0, "../elsewhere/x.jpg"),
        (1, 0.0, "class0/img01.jpg"),
        (0, 0.0, "class0/img00.jpg"),
    ]
