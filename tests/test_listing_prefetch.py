"""`tasks.listing_prefetch`: a listing started early is taken once, only by the same arguments,
and a failed one is left for the list task to redo."""

from __future__ import annotations

import json
import pickle
import subprocess
import sys
import threading
from pathlib import Path

from pipeline_fixtures import image_tree

from recordio_core.listing import list_images
from tasks import listing_prefetch
from tasks.listing_prefetch import (
    _ForkPrefetch,
    listing_columns,
    listing_from_columns,
    listing_key,
    prefetch_listing,
    take_prefetched,
)

REPO = Path(__file__).resolve().parent.parent


def test_a_prefetched_listing_is_the_listing_and_is_taken_once(tmp_path):
    image_tree(tmp_path / "src", classes=2, per_class=3)
    src = str(tmp_path / "src")
    args = {"recursive": True, "exts": [".jpg", ".png"], "storage_options": {}}
    prefetch_listing(src, **args)
    assert take_prefetched(src, **{**args, "recursive": False}) is None  # other arguments
    got = take_prefetched(src, **args)
    assert got == list_images(src, recursive=True, exts=(".jpg", ".png"))
    assert take_prefetched(src, **args) is None  # used once


def test_a_failed_prefetch_is_none(tmp_path):
    args = {"recursive": True, "exts": [".jpg"], "storage_options": None}
    prefetch_listing(str(tmp_path / "missing"), **args)
    assert take_prefetched(str(tmp_path / "missing"), **args) is None


def test_the_key_treats_no_options_as_empty_ones():
    assert listing_key("s", True, (".jpg",), None) == listing_key("s", True, [".jpg"], {})
    assert listing_key("s", True, [".jpg"], {}) != listing_key("s", False, [".jpg"], {})


def test_the_columns_carry_the_whole_listing(tmp_path):
    image_tree(tmp_path / "src", classes=3, per_class=2)
    (tmp_path / "src" / "class0" / "a\tb.jpg").write_bytes(b"x")  # skipped: a tab
    listing = list_images(str(tmp_path / "src"), recursive=True, fingerprints=True)
    assert listing.skipped and listing.fingerprints
    back = listing_from_columns(pickle.loads(pickle.dumps(listing_columns(listing))))
    assert back == listing
    assert back.fingerprints == listing.fingerprints and back.skipped == listing.skipped
    bare = list_images(str(tmp_path / "src"), recursive=True)
    assert listing_from_columns(listing_columns(bare)).fingerprints is None


# A fresh interpreter has no other thread, so a local folder is listed in a forked child there
# (pytest's own process may run threads, where the thread path is taken instead).
_IN_A_FRESH_PROCESS = r"""
import json, sys, threading
from recordio_core.listing import list_images
from tasks.listing_prefetch import _ForkPrefetch, _started, prefetch_listing, take_prefetched
src, missing = sys.argv[1], sys.argv[2]
args = {"recursive": True, "exts": [".jpg", ".png"], "storage_options": None}
prefetch_listing(src, **args)
prefetch_listing(missing, **args)
kinds = sorted(type(w).__name__ for w in _started.values())
got = take_prefetched(src, **args)
want = list_images(src, recursive=True, exts=(".jpg", ".png"), fingerprints=True)
print(json.dumps({
    "kinds": kinds,
    "same": got == want and got.fingerprints == want.fingerprints,
    "missing": take_prefetched(missing, **args) is None,
    "again": take_prefetched(src, **args) is None,
    "threads": threading.active_count(),
}))
"""


def test_a_local_folder_is_listed_in_a_forked_child(tmp_path):
    image_tree(tmp_path / "src", classes=2, per_class=3)
    proc = subprocess.run(
        [sys.executable, "-c", _IN_A_FRESH_PROCESS, str(tmp_path / "src"), str(tmp_path / "no")],
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert proc.returncode == 0, proc.stderr
    out = json.loads(proc.stdout)
    assert out == {
        "kinds": ["_ForkPrefetch", "_ForkPrefetch"],
        "same": True,
        "missing": True,  # the child's listing failed: the task lists (and reports) itself
        "again": True,
        "threads": 1,
    }


def test_a_threaded_process_lists_on_a_thread(tmp_path, monkeypatch):
    image_tree(tmp_path / "src", classes=2, per_class=2)
    monkeypatch.setattr(threading, "active_count", lambda: 2)
    src = str(tmp_path / "src")
    args = {"recursive": True, "exts": [".jpg"], "storage_options": None}
    prefetch_listing(src, **args)
    assert not isinstance(listing_prefetch._started[listing_key(src, **args)], _ForkPrefetch)
    assert take_prefetched(src, **args) == list_images(src, recursive=True, exts=(".jpg",))


_DROPPED = r"""
import json, sys
from tasks import listing_prefetch
from tasks.listing_prefetch import drop_prefetched, prefetch_listing, take_prefetched
args = {"recursive": True, "exts": [".jpg"], "storage_options": None}
prefetch_listing(sys.argv[1], **args)
(worker,) = listing_prefetch._started.values()
drop_prefetched()
print(json.dumps({"alive": worker._proc.is_alive(), "taken": take_prefetched(sys.argv[1], **args)}))
"""


def test_a_prefetch_nobody_took_is_stopped(tmp_path):
    image_tree(tmp_path / "src", classes=2, per_class=2)
    proc = subprocess.run(
        [sys.executable, "-c", _DROPPED, str(tmp_path / "src")],
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert proc.returncode == 0, proc.stderr
    assert json.loads(proc.stdout) == {"alive": False, "taken": None}
    assert "Traceback" not in proc.stderr
