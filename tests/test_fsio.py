"""fsspec helpers: URL arithmetic, opening by URL, and atomic writes (local and memory://;
the S3 cases live in test_s3_recordio.py)."""

from __future__ import annotations

import os
import time
from pathlib import Path

import pytest

from recordio_core.storage.fsio import (
    atomic_write,
    exists,
    get_fs,
    is_local,
    join_url,
    open_url,
    read_bytes,
    read_text,
    url_basename,
    url_dirname,
    write_bytes_atomic,
)


@pytest.mark.parametrize(
    ("args", "expected"),
    [
        (("s3://b", "a", "b.rec"), "s3://b/a/b.rec"),
        (("s3://b/", "/x"), "s3://b/x"),
        (("s3://", "bucket"), "s3://bucket"),
        (("memory://", "d", "f"), "memory://d/f"),
        (("/tmp/x/", "y"), "/tmp/x/y"),
        (("/", "a"), "/a"),
        (("", "a"), "a"),
        (("rel", "a\\b.jpg"), "rel/a/b.jpg"),
        (("file:///", "x"), "file:///x"),
        (("s3://b", ""), "s3://b"),
    ],
)
def test_join_url(args, expected):
    assert join_url(*args) == expected


@pytest.mark.parametrize(
    ("url", "dirname", "basename"),
    [
        ("s3://b/k/x.rec", "s3://b/k", "x.rec"),
        ("s3://b", "s3://", "b"),
        ("memory://x/y/", "memory://x", "y"),
        ("/x.rec", "/", "x.rec"),
        ("/a/b/", "/a", "b"),
        ("x.rec", "", "x.rec"),
        ("a/b", "a", "b"),
    ],
)
def test_dirname_basename(url, dirname, basename):
    assert url_dirname(url) == dirname
    assert url_basename(url) == basename


def test_get_fs_and_is_local(tmp_path):
    fs, path = get_fs(str(tmp_path / "a.rec"))
    assert is_local(fs) and path == str(tmp_path / "a.rec")
    fs, path = get_fs(f"file://{tmp_path}/a.rec")
    assert is_local(fs) and path == f"{tmp_path}/a.rec"
    fs, path = get_fs("memory://bucket/a.rec")
    assert not is_local(fs) and path.endswith("bucket/a.rec")


def test_storage_options_pass_through():
    fs, _ = get_fs("memory://x", {"skip_instance_cache": True})
    fs2, _ = get_fs("memory://x")
    assert fs is not fs2


@pytest.mark.parametrize("base", ["local", "memory"])
def test_read_write_helpers(tmp_path, base):
    root = str(tmp_path) if base == "local" else "memory://fsio-rw"
    url = join_url(root, "sub", "f.txt")
    assert not exists(url)
    write_bytes_atomic(url, "héllo\n".encode())
    assert exists(url)
    assert read_bytes(url) == "héllo\n".encode()
    assert read_text(url) == "héllo\n"
    with open_url(url, "rb") as f:
        assert f.read(2) == b"h\xc3"


class Boom(Exception):
    pass


@pytest.mark.parametrize("base", ["local", "memory"])
def test_atomic_write_appears_only_complete(tmp_path, base):
    root = str(tmp_path) if base == "local" else "memory://fsio-atomic"
    url = join_url(root, "out", "data.bin")
    with atomic_write(url) as f:
        f.write(b"part one, ")
        assert not exists(url)
        f.write(b"part two")
    assert read_bytes(url) == b"part one, part two"
    # a failed rewrite leaves the old file in place and no temporary files behind
    with pytest.raises(Boom), atomic_write(url) as f:
        f.write(b"half")
        raise Boom
    assert read_bytes(url) == b"part one, part two"
    fs, path = get_fs(url_dirname(url))
    assert [os.path.basename(p.rstrip("/")) for p in fs.ls(path, detail=False)] == ["data.bin"]


def test_atomic_write_text_mode(tmp_path):
    url = str(tmp_path / "t.txt")
    with atomic_write(url, mode="w") as f:
        f.write("line\n")
    assert Path(url).read_text() == "line\n"


def test_atomic_write_failure_on_new_file(tmp_path):
    url = str(tmp_path / "new.bin")
    with pytest.raises(Boom), atomic_write(url) as f:
        f.write(b"x")
        raise Boom
    assert not exists(url)
    assert list(tmp_path.iterdir()) == []


def test_atomic_write_creates_parent_folders_on_other_filesystems():
    import fsspec

    from recordio_core.storage.fsio import atomic_write

    url = "memory://atomic-parents/a/b/c.bin"
    with atomic_write(url) as f:
        f.write(b"done")
    fs = fsspec.filesystem("memory")
    assert fs.cat_file("/atomic-parents/a/b/c.bin") == b"done"
    assert [p for p in fs.ls("/atomic-parents/a/b") if ".tmp-" in p] == []


@pytest.mark.parametrize("fail", [False, True])
def test_atomic_write_syncs_big_files_while_writing(tmp_path, monkeypatch, fail):
    """Past every STEP bytes a helper thread fdatasyncs what is written so far; the bytes are
    the same, and the helper is gone when the block ends, whether it succeeds or fails."""
    import threading

    from recordio_core.storage import fsio

    synced: list[int] = []
    real = os.fdatasync
    monkeypatch.setattr(fsio._EarlyWriteback, "STEP", 1000)
    monkeypatch.setattr(fsio.os, "fdatasync", lambda fd: (synced.append(fd), real(fd)))
    url = str(tmp_path / "big.bin")
    chunks = [bytes([i]) * 300 for i in range(40)]

    def write_all(f):
        for c in chunks:
            f.write(c)
        deadline = time.monotonic() + 10
        while not synced and time.monotonic() < deadline:  # the helper runs on its own time
            time.sleep(0.01)

    if fail:
        with pytest.raises(Boom), atomic_write(url) as f:
            write_all(f)
            raise Boom
        assert list(tmp_path.iterdir()) == []
    else:
        with atomic_write(url) as f:
            write_all(f)
        assert Path(url).read_bytes() == b"".join(chunks)
    assert synced  # the helper ran
    assert not [t for t in threading.enumerate() if t.name == "recflow-writeback"]


def test_atomic_write_reports_a_failed_background_sync(tmp_path, monkeypatch):
    from recordio_core.storage import fsio

    def broken(fd):
        raise OSError(5, "Input/output error")

    monkeypatch.setattr(fsio._EarlyWriteback, "STEP", 10)
    monkeypatch.setattr(fsio.os, "fdatasync", broken)
    url = str(tmp_path / "x.bin")
    with pytest.raises(OSError, match="Input/output"), atomic_write(url) as f:
        for _ in range(10):
            f.write(b"0123456789")
        deadline = time.monotonic() + 10
        while f._error is None and time.monotonic() < deadline:  # the helper has run
            time.sleep(0.01)
    assert list(tmp_path.iterdir()) == []
