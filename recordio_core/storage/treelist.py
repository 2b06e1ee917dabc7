"""Listing a tree on an object store with its top-level folders listed concurrently.

`fs.find(root)` on S3 is one ListObjectsV2 walk of 1,000 keys per page, each page waiting for
the one before: for a dataset with many class folders that is latency x pages. Here the root
is listed once with a delimiter (its files and folders), then each folder is listed on the
filesystem's loop, up to `concurrency` at once (on an instance whose connection pool is that
large). What comes back is the same set of files `fs.find` gives, with the same infos (size,
ETag, ...), so fingerprints need no request per object.

`reduce_tree(fs, root, reduce)` applies `reduce` to each listing (the root's own files, then
each folder's files) as it arrives and returns the reduced results in folder order, so a caller
that needs only names or fingerprints never holds the whole tree's info dicts (~1.2 KB a file)
at once. Filesystems other than S3 get one `fs.find`, reduced the same way.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable, Mapping
from typing import Any, TypeVar

import fsspec
from fsspec.asyn import sync

from recordio_core.storage.fetch import can_fetch_async, is_s3, pool_options
from recordio_core.storage.fsio import StorageOptions, get_fs

T = TypeVar("T")
Info = Mapping[str, Any]
DEFAULT_LIST_CONCURRENCY = 32


def listing_filesystem(
    url: str, storage_options: StorageOptions, concurrency: int = DEFAULT_LIST_CONCURRENCY
) -> tuple[fsspec.AbstractFileSystem, str]:
    """`(filesystem, path)` for `url`; for S3, an instance whose pool allows `concurrency`."""
    fs, path = get_fs(url, storage_options)
    if is_s3(fs):
        fs, path = get_fs(url, pool_options(storage_options, fs, concurrency))
    return fs, path


def lists_concurrently(fs: fsspec.AbstractFileSystem) -> bool:
    return is_s3(fs) and can_fetch_async(fs)


def reduce_tree(
    fs: fsspec.AbstractFileSystem,
    root: str,
    reduce: Callable[[list[Info]], T],
    *,
    concurrency: int = DEFAULT_LIST_CONCURRENCY,
) -> list[T]:
    """`reduce(file infos)` for the root's own files, then for each top-level folder's files
    (folders in sorted order); a missing root gives `[reduce([])]`. See the module docstring."""
    if concurrency < 1:
        raise ValueError(f"concurrency must be >= 1, got {concurrency}")
    base = root.rstrip("/")
    if not lists_concurrently(fs):
        try:
            found = fs.find(base, withdirs=False, detail=True)
        except FileNotFoundError:
            found = {}
        return [reduce(list(found.values()))]
    return sync(fs.loop, _reduce_s3, fs, base, reduce, concurrency)


async def _reduce_s3(
    fs: Any, base: str, reduce: Callable[[list[Info]], T], concurrency: int
) -> list[T]:
    try:
        top = await fs._ls(base, detail=True, refresh=True)
    except FileNotFoundError:
        return [reduce([])]
    files = [i for i in top if i.get("type") == "file"]
    folders = sorted(i["name"].rstrip("/") for i in top if i.get("type") == "directory")
    gate = asyncio.Semaphore(concurrency)

    async def one(folder: str) -> T:
        async with gate:
            found = await fs._find(folder, withdirs=False, detail=True)
        return reduce(list(found.values()))

    return [reduce(files), *await asyncio.gather(*(one(f) for f in folders))]
