"""`tasks.listing_prefetch`: a listing started early is taken once, only by the same arguments,
and a failed one is left for the list task to redo."""

from __future__ import annotations

from pipeline_fixtures import image_tree

from recordio_core.listing import list_images
from tasks.listing_prefetch import listing_key, prefetch_listing, take_prefetched


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
