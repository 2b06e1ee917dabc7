"""recordio_core.building.listing: im2rec.py's listing order/labels, fsspec roots, class maps, cc
lists."""

from __future__ import annotations

import os
import uuid
from pathlib import Path

import fsspec
import pytest
from imagetree import DEFAULT_TREE, ImageSpec, make_image_tree

from recordio_core.building.listing import (
    DEFAULT_EXTS,
    Listing,
    format_class_map,
    list_images,
    normalize_exts,
    parse_lst_cc,
    read_class_map,
    write_class_map,
)
from recordio_core.format.errors import ListFileError
from recordio_core.format.lst import LstEntry

# The default tree, walked like im2rec.py: (relative path, label), in index order.
RECURSIVE = [
    ("Zeta.jpeg", 0),
    ("root a.jpg", 0),
    ("root_b.PNG", 0),
    ("cats/C4.JPG", 1),
    ("cats/c1.jpg", 1),
    ("cats/c2.jpg", 1),
    ("cats/c3 copy.png", 1),
    ("cats/kittens/k1.jpg", 2),
    ("cats/kittens/k2.png", 2),
    ("dogs/d1.jpg", 3),
    ("dogs/d2.jpg", 3),
    ("dogs/d3.png", 3),
    ("dogs b/spaced name.jpg", 4),
    ("dogs b/x.jpg", 4),
    ("dogs-b/dash.jpg", 5),
    *((f"zz/{c}.{'png' if c in 'beh' else 'jpg'}", 6) for c in "abcdefghijkl"),
    ("ünïcødé/ñame é.jpg", 7),
    ("ünïcødé/日本.png", 7),
    ("ünïcødé/deep/er/leaf.jpeg", 8),
]
CLASS_MAP = {
    ".": 0,
    "cats": 1,
    "cats/kittens": 2,
    "dogs": 3,
    "dogs b": 4,
    "dogs-b": 5,
    "zz": 6,
    "ünïcødé": 7,
    "ünïcødé/deep/er": 8,
}


@pytest.fixture(scope="module")
def tree(tmp_path_factory) -> Path:
    root = tmp_path_factory.mktemp("tree") / "images"
    make_image_tree(root)
    return root


def _pairs(listing: Listing) -> list[tuple[str, int]]:
    assert [e.index for e in listing.entries] == list(range(len(listing.entries)))
    return [(e.path, int(e.label)) for e in listing.entries]


def test_recursive_matches_im2rec_walk_order(tree):
    listing = list_images(str(tree), recursive=True)
    assert _pairs(listing) == RECURSIVE
    assert listing.class_map == CLASS_MAP
    assert list(listing.class_map) == list(CLASS_MAP)  # label order
    assert listing.skipped == ()
    assert all(e.labels == (float(e.label),) for e in listing.entries)


def test_non_recursive_lists_root_files_with_label_0(tree):
    listing = list_images(str(tree))
    assert _pairs(listing) == [("Zeta.jpeg", 0), ("root a.jpg", 0), ("root_b.PNG", 0)]
    assert listing.class_map == {".": 0}


@pytest.mark.parametrize(
    ("exts", "expected"),
    [
        ((".png",), ["root_b.PNG"]),
        ((".PNG",), ["root_b.PNG"]),
        ((".gif", ".jpeg"), ["Zeta.jpeg", "anim.gif"]),
        ((".txt",), ["notes.txt"]),
        ((".webp",), []),
    ],
)
def test_exts_are_case_insensitive(tree, exts, expected):
    assert [e.path for e in list_images(str(tree), exts=exts).entries] == expected


@pytest.mark.parametrize(
    ("exts", "message"),
    [
        (("jpg",), "must start with '.'"),
        ((".",), "must start with '.'"),
        ((), "at least one"),
        (".jpg", "sequence of extensions"),
        ((".a/b",), "must start with '.'"),
    ],
)
def test_bad_exts_are_value_errors(exts, message):
    with pytest.raises(ValueError, match=message):
        normalize_exts(exts)


def test_normalize_exts_lowercases_and_dedupes():
    assert normalize_exts([".JPG", ".jpg", ".Png"]) == (".jpg", ".png")
    assert normalize_exts(DEFAULT_EXTS) == DEFAULT_EXTS


def test_empty_root_and_missing_root(tmp_path):
    (tmp_path / "empty").mkdir()
    assert list_images(str(tmp_path / "empty"), recursive=True) == Listing((), {})
    assert list_images(str(tmp_path / "empty")) == Listing((), {})
    with pytest.raises(FileNotFoundError, match="does not exist"):
        list_images(str(tmp_path / "missing"))
    (tmp_path / "file.jpg").write_bytes(b"x")
    with pytest.raises(NotADirectoryError, match="not a folder"):
        list_images(str(tmp_path / "file.jpg"))


def test_symlinks_hidden_files_and_folders_named_like_images(tmp_path):
    real = tmp_path / "real"
    make_image_tree(real, {"x.jpg": ImageSpec(8, 8)})
    root = tmp_path / "root"
    make_image_tree(root, {"a/.hidden.jpg": ImageSpec(8, 8), "b.jpg/inside.jpg": ImageSpec(8, 8)})
    os.symlink(real, root / "linked")  # followed, like os.walk(followlinks=True)
    os.symlink(real / "x.jpg", root / "a" / "link.jpg")  # a file through a link is a file
    os.symlink(tmp_path / "nowhere.jpg", root / "a" / "dangling.jpg")  # not a file
    listing = list_images(str(root), recursive=True)
    assert _pairs(listing) == [
        ("a/.hidden.jpg", 0),
        ("a/link.jpg", 0),
        ("b.jpg/inside.jpg", 1),
        ("linked/x.jpg", 2),
    ]
    assert list_images(f"file://{root}", recursive=True) == listing


def test_unlistable_names_are_skipped_with_a_reason(tmp_path):
    make_image_tree(
        tmp_path,
        {
            "ok.jpg": ImageSpec(8, 8),
            "tab\there.jpg": ImageSpec(8, 8),
            "new\nline.jpg": ImageSpec(8, 8),
            " lead.jpg": ImageSpec(8, 8),
            "sub/trail.jpg ": ImageSpec(8, 8, fmt="JPEG"),
            "sub/z.jpg": ImageSpec(8, 8),
        },
    )
    listing = list_images(str(tmp_path), recursive=True)
    assert _pairs(listing) == [("ok.jpg", 0), ("sub/z.jpg", 1)]
    reasons = dict(listing.skipped)
    assert set(reasons) == {"tab\there.jpg", "new\nline.jpg", " lead.jpg"}
    assert "tab" in reasons["tab\there.jpg"]
    assert "white space" in reasons[" lead.jpg"]


def _copy_to(fs, local: Path, base: str) -> None:
    for path in sorted(local.rglob("*")):
        if path.is_file():
            fs.pipe_file(f"{base}/{path.relative_to(local).as_posix()}", path.read_bytes())


@pytest.mark.parametrize("recursive", [False, True])
def test_memory_filesystem_gives_the_same_listing(tree, recursive):
    base = f"/listing-{uuid.uuid4().hex[:8]}/images"
    fs = fsspec.filesystem("memory")
    _copy_to(fs, tree, base)
    try:
        remote = list_images(f"memory://{base}", recursive=recursive)
        assert remote == list_images(str(tree), recursive=recursive)
        assert list_images(f"memory://{base}/", recursive=recursive) == remote
    finally:
        fs.rm(base.rsplit("/", 1)[0], recursive=True)


def test_memory_root_missing_is_file_not_found():
    with pytest.raises(FileNotFoundError):
        list_images(f"memory://nothing-{uuid.uuid4().hex}")


def test_s3_listing_matches_local(tree, s3_server):
    bucket = s3_server.make_bucket()
    _copy_to(s3_server.fs(), tree, f"{bucket}/data/images")
    url = s3_server.url(bucket, "data", "images")
    so = s3_server.storage_options
    for recursive in (False, True):
        assert list_images(url, recursive=recursive, storage_options=so) == list_images(
            str(tree), recursive=recursive
        )


def test_class_map_round_trip_and_format(tmp_path):
    url = str(tmp_path / "out" / "classes.json")
    write_class_map(url, {"b": 1, ".": 0, "ünï": 2})
    assert read_class_map(url) == {".": 0, "b": 1, "ünï": 2}
    assert list(read_class_map(url)) == [".", "b", "ünï"]
    assert "ünï" in Path(url).read_text(encoding="utf-8")  # readable, not \\u-escaped
    assert format_class_map({"b": 1, ".": 0}) == ". 0\nb 1\n"


@pytest.mark.parametrize(
    ("content", "message"),
    [
        ("[1, 2]", "JSON object"),
        ('{"a": "1"}', "non-negative integer"),
        ('{"a": true}', "non-negative integer"),
        ('{"a": -1}', "non-negative integer"),
        ('{"a": 0, "b": 0}', "unique"),
        ("{not json", "not a JSON class map"),
    ],
)
def test_bad_class_maps_are_value_errors(tmp_path, content, message):
    path = tmp_path / "c.json"
    path.write_text(content)
    with pytest.raises(ValueError, match=message):
        read_class_map(str(path))


def test_write_class_map_rejects_duplicate_labels(tmp_path):
    with pytest.raises(ValueError, match="unique"):
        write_class_map(str(tmp_path / "c.json"), {"a": 0, "b": 0})
    assert not (tmp_path / "c.json").exists()


@pytest.mark.parametrize(
    ("text", "label_width", "expected"),
    [
        ("1 3.0 a.jpg\n", 1, [LstEntry(1, (3.0,), "a.jpg")]),
        ("1\t3.000000\ta b.jpg\n", 1, [LstEntry(1, (3.0,), "a b.jpg")]),
        ("  7   2   my file name.jpg  \r\n\n", 1, [LstEntry(7, (2.0,), "my file name.jpg")]),
        ("5 1 2 3 4 x/y.jpg\n", 4, [LstEntry(5, (1.0, 2.0, 3.0, 4.0), "x/y.jpg")]),
        (
            "5\t1\t2\tz.png\n9 0 1 q.png",
            2,
            [LstEntry(5, (1, 2), "z.png"), LstEntry(9, (0, 1), "q.png")],
        ),
        (
            "95099 464.000000 n04467665_17283.JPEG\n",
            1,
            [LstEntry(95099, (464.0,), "n04467665_17283.JPEG")],
        ),
        ("", 1, []),
    ],
)
def test_parse_lst_cc(text, label_width, expected):
    assert parse_lst_cc(text, label_width=label_width) == expected


@pytest.mark.parametrize(
    ("text", "label_width", "message"),
    [
        ("1 a.jpg\n", 1, r"x\.lst:1: expected 'index label path'"),
        ("1 2 a.jpg\n", 2, "expected 'index label label path'"),
        ("x 2 a.jpg\n", 1, "index 'x' is not an integer"),
        ("-1 2 a.jpg\n", 1, "outside"),
        ("1 2 x a.jpg\n", 2, "not a number"),
        ("1 nan a.jpg\n", 1, "not finite"),
        ("1\t2\t3\ta.jpg\n", 1, "label_width=1 but the line has 2"),
        ("1 0 a.jpg\n\n1 0 b.jpg\n", 1, r"x\.lst:3: duplicate index 1 \(first seen on line 1\)"),
    ],
)
def test_parse_lst_cc_errors(text, label_width, message):
    with pytest.raises(ListFileError, match=message):
        parse_lst_cc(text, source="x.lst", label_width=label_width)


def test_parse_lst_cc_options():
    with pytest.raises(ValueError, match="label_width"):
        parse_lst_cc("1 0 a", label_width=0)
    text = "1 0 a.jpg\n1 0 b.jpg\n"
    assert len(parse_lst_cc(text, allow_duplicates=True)) == 2
    with pytest.raises(ListFileError, match="x:11:"):
        parse_lst_cc("1 0\n", source="x", first_lineno=11)


def test_default_tree_is_what_the_tables_describe():
    images = [r for r in DEFAULT_TREE if os.path.splitext(r)[1].lower() in DEFAULT_EXTS]
    assert sorted(images) == sorted(p for p, _ in RECURSIVE)
