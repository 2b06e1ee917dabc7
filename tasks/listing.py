"""Task: list the images of a source folder (or read a user's `.lst`)."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from prefect import task
from prefect.cache_policies import NO_CACHE

from recordio_core.building.listing import Listing, list_images
from recordio_core.format.lst import read_lst
from recordio_flow.tasks.common import RETRY_OPTIONS, Carry, run_logger
from recordio_flow.tasks.listing_prefetch import take_prefetched


@task(name="list-images", task_run_name="list {source}", cache_policy=NO_CACHE, **RETRY_OPTIONS)
def list_source(
    source: str,
    *,
    lst: str | None = None,
    allow_outside_root: bool = False,
    recursive: bool = True,
    exts: Sequence[str] = (".jpeg", ".jpg", ".png"),
    label_width: int = 1,
    storage_options: dict[str, Any] | None = None,
    lst_storage_options: dict[str, Any] | None = None,
) -> Carry:
    """The entries and class map of `source`; with `lst`, that list's entries (no class map),
    whose paths must stay inside `source` unless `allow_outside_root`.

    Not cached: a listing is cheap next to packing and must see images added since last time.
    A listing `recflow build` started while Prefect was starting (`tasks/listing_prefetch.py`)
    is taken when it was made with these very arguments.
    """
    logger = run_logger()
    if lst is not None:
        entries = read_lst(
            lst,
            lst_storage_options,
            label_width=label_width,
            allow_outside_root=allow_outside_root,
        )
        logger.info("read %d entries from %s", len(entries), lst)
        return Carry(Listing(entries=tuple(entries), class_map={}))
    listing = take_prefetched(
        source, recursive=recursive, exts=exts, storage_options=storage_options
    )
    early = listing is not None
    if listing is None:
        listing = list_images(
            source,
            recursive=recursive,
            exts=tuple(exts),
            storage_options=storage_options,
            fingerprints=True,  # the plan's shard keys need them: one listing for both
        )
    logger.info(
        "found %d images in %d classes under %s%s%s",
        len(listing.entries),
        len(listing.class_map),
        source,
        f" ({len(listing.skipped)} skipped)" if listing.skipped else "",
        " (listed while Prefect started)" if early else "",
    )
    return Carry(listing)
