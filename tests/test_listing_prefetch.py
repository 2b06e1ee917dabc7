"""`tasks/listing_prefetch.py`: a listing started early is taken once, only by the same arguments,
and a failed one is left for the list task to redo."""

from __future__ import annotations

import multiprocessing
import pickle

import pytest
from pipeline_fixtures import image_tree

from recordio_core.building.listing import list_images
from recordio_flow.tasks import listing_prefetch
from recordio_flow.tasks.listing_prefetch import (
    _ProcessPrefetch,
    drop_prefetched,
    listing_columns,
    listing_from_columns,
    listing_key,
    prefetch_listing,
    take_prefetched,
)


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


def test_a_local_folder_is_listed_in_a_child_process(tmp_path):
    image_tree(tmp_path / "src", classes=2, per_class=3)
    src, missing = str(tmp_path / "src"), str(tmp_path / "no")
    args = {"recursive": True, "exts": [".jpg", ".png"], "storage_options": None}
    prefetch_listing(src, **args)
    prefetch_listing(missing, **args)
    workers = [listing_prefetch._started[listing_key(s, **args)] for s in (src, missing)]
    assert all(isinstance(w, _ProcessPrefetch) for w in workers)
    got = take_prefetched(src, **args)
    want = list_images(src, recursive=True, exts=(".jpg", ".png"), fingerprints=True)
    assert got == want and got.fingerprints == want.fingerprints
    assert take_prefetched(missing, **args) is None  # failed there: the task lists and reports
    assert take_prefetched(src, **args) is None
    assert not any(w._proc.is_alive() for w in workers)


def test_without_a_forkserver_it_lists_on_a_thread(tmp_path, monkeypatch):
    image_tree(tmp_path / "src", classes=2, per_class=2)
    monkeypatch.setattr(multiprocessing, "get_all_start_methods", lambda: ["fork", "spawn"])
    src = str(tmp_path / "src")
    args = {"recursive": True, "exts": [".jpg"], "storage_options": None}
    prefetch_listing(src, **args)
    assert not isinstance(listing_prefetch._started[listing_key(src, **args)], _ProcessPrefetch)
    assert take_prefetched(src, **args) == list_images(src, recursive=True, exts=(".jpg",))


def test_a_prefetch_nobody_took_is_stopped(tmp_path):
    image_tree(tmp_path / "src", classes=2, per_class=2)
    args = {"recursive": True, "exts": [".jpg"], "storage_options": None}
    prefetch_listing(str(tmp_path / "src"), **args)
    (worker,) = listing_prefetch._started.values()
    drop_prefetched()
    assert not worker._proc.is_alive()
    assert take_prefetched(str(tmp_path / "src"), **args) is None


@pytest.mark.parametrize(
    ("extra", "early"),
    [
        ({}, True),
        ({"streaming": True}, False),  # lists in parts of its own: not the whole tree twice
        ({"dask_address": "tcp://127.0.0.1:1"}, False),
        ({"source_credentials_block": "aws-credentials/creds"}, False),
    ],
)
def test_recflow_build_lists_early_only_where_the_list_task_takes_it(
    tmp_path, extra, early
) -> None:
    from recordio_flow.flows.cmd_build import lists_early
    from recordio_flow.flows.params import parse_parameters

    params = parse_parameters({"source": str(tmp_path), "output": str(tmp_path / "o"), **extra})
    assert lists_early(params) is early
