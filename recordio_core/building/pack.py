"""Pack one shard: images listed by `.lst` entries -> `.rec` + `.idx` (+ `.lst`).

`pack_shard` reads each image through fsspec (`join_url(root, entry.path)`), transforms it
(`recordio_core.images.image.transform_image`: decode, colour, crop, resize, encode, or
pass-through) on `num_workers` threads, and writes the records **in entry order** whatever the
worker count, so the bytes never depend on it. Pillow releases the GIL while it decodes, resizes and
encodes, but the Python glue around those calls (~0.5 ms per image) still serialises the
threads: on 2 cores, 2 threads reach only ~85 % of 2x. `pack_shard(..., processes=True)` runs
the workers as forked processes instead, each reading (local sources; from an object store the
parent fetches), transforming and framing chunks of images; measured on 2,000 photos,
`--resize 256`, 2 workers: 3.6 s against 4.1 s with threads, same bytes. Plain forking is for
a process that owns itself (the `recflow im2rec` command line); in a threaded process (a flow
run) `start_method="forkserver"` forks the workers from a clean server process instead. The
library default stays threads. A worker task carries a chunk of images that grows to about
2 MiB of records (`chunk_size`), so thousands of small files do not pay a round trip each.

Object stores (S3, ...): an I/O stage apart from the CPU stage. `recordio_core.storage.fetch` keeps
`opts.io_concurrency` requests in flight on the filesystem's own loop, one request per image,
within a byte budget (`opts.io_budget`), and hands the bytes over in entry order to the
transform workers (threads, or with `processes=True` forked processes that receive the bytes).
A transient error is retried per image with backoff before it fails the shard.

Streaming: at most `4 * num_workers` images are being transformed by threads, or two chunks
per worker process (plus, from an object store, the fetched images within the byte budget).
Records reach the writer in batches of consecutive entries (at most ~2 MiB of records or 512
entries), each written with one write per file, so thousands of small files do not cost the
writing process a few writes each, and memory does not grow with the number of images.

Atomicity: the three files are written to temporary names and committed only after the last
record, in the order `.rec`, `.lst`, `.idx` (an old `.idx` at the destination is removed
first). An `.idx` therefore only ever sits beside the `.rec` and `.lst` it describes; an
exception or a kill before the commit leaves the destination as it was.

An image that cannot be read or used is a `Reject` (index, path, reason) in the result: never
an exception, never a silent gap. Data-quality facts come back too, computed by the workers on
bytes and pixels already in memory: the sha256 of every source file's bytes (`digests`), JPEG
decoder warnings (`warnings`; with `on_decode_warning="reject"` the image is also a reject) and,
with `near_duplicates`, the difference hash of each image as packed (`dhashes`); see
`recordio_core.building.quality`. A *transient* read error (connection dropped, timeout, I/O error)
is different: it is raised (from an object store, after the per-image retries), so the shard fails
whole and a retry packs it completely.

The code, by concern: `recordio_core.building.pack_options` (`PackOptions`, `Reject`,
`ShardResult`), `pack_source` (reading the images), `pack_record` (one image -> one record and its
facts), `pack_batch` (records in batches, as the writer takes them), `pack_workers` (process pools
and the work of their tasks), `pack_pipeline` (the thread, process and object-store pipelines that
turn entries into batches in order), `pack_write` (the shard's files, hashed as written) and
this module, `pack_shard`, which puts them together. The public names stay importable from here.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterable, Sequence

from recordio_core.building.pack_batch import chunk_size as chunk_size
from recordio_core.building.pack_options import DECODE_WARNING_POLICIES as DECODE_WARNING_POLICIES
from recordio_core.building.pack_options import PackOptions as PackOptions
from recordio_core.building.pack_options import ProgressCallback as ProgressCallback
from recordio_core.building.pack_options import Reject as Reject
from recordio_core.building.pack_options import ShardResult as ShardResult
from recordio_core.building.pack_pipeline import _results
from recordio_core.building.pack_record import record_payload as record_payload
from recordio_core.building.pack_source import _Reader as _Reader
from recordio_core.building.pack_source import read_local_file as read_local_file
from recordio_core.building.pack_workers import START_METHODS as START_METHODS
from recordio_core.building.pack_workers import StartMethod as StartMethod
from recordio_core.building.pack_workers import process_context as process_context
from recordio_core.building.pack_write import _remove_if_exists, _ShardFiles
from recordio_core.format.lst import LstEntry
from recordio_core.storage.fsio import StorageOptions


def pack_shard(
    entries: Iterable[LstEntry],
    root: str,
    out_prefix: str,
    opts: PackOptions,
    *,
    source_options: StorageOptions = None,
    storage_options: StorageOptions = None,
    progress: ProgressCallback | None = None,
    write_lst: bool = True,
    processes: bool = False,
    sizes: Sequence[int | None] | None = None,
    start_method: StartMethod = "fork",
) -> ShardResult:
    """Pack `entries` (images under `root`) into `out_prefix + ".rec"/".idx"` (and `".lst"`).

    - `root`: fsspec URL of the image folder; `source_options` for its filesystem.
    - `out_prefix`: fsspec URL prefix of the outputs; `storage_options` for its filesystem.
    - The `.lst` (with `write_lst`, the default) lists exactly the packed records, in order;
      pass `write_lst=False` to leave a user's own `.lst` alone (the im2rec drop-in).
    - `progress(n)` is called with the number of entries just finished (packed or rejected).
    - `processes`: transform on `opts.num_workers` worker processes instead of threads
      (faster: the workers' Python glue does not share a GIL); the output bytes are the same
      either way. From an object store the parent fetches and the workers transform.
    - `start_method`: how worker processes start (local sources): "fork" (the fastest) only
      in a process that may fork safely (a command line, not a threaded server); "forkserver"
      anywhere (workers fork from a clean server process that has the packing code loaded).
      As with any forkserver or spawn start, a script that calls this must guard its main
      code with `if __name__ == "__main__":` (the workers import the main module).
    - `sizes`: the images' sizes in bytes if known (from the listing; `None` for unknown),
      aligned with `entries`; they make the fetch's byte budget (`opts.io_budget`) exact.

    Bad images become `Reject`s in the result. Errors writing the output (or a bad argument)
    raise, leaving no partial files at the destination.
    """
    entries, sizes = _checked_arguments(entries, out_prefix, opts, start_method, sizes)
    reader = _Reader(root, source_options, opts.io_concurrency)
    with contextlib.ExitStack() as stack:
        files = _ShardFiles(
            stack,
            out_prefix + ".rec",
            out_prefix + ".idx",
            out_prefix + ".lst" if write_lst else "",
            storage_options,
        )
        batches = stack.enter_context(
            contextlib.closing(
                _results(entries, reader, opts, processes, sizes, start_method, write_lst)
            )
        )
        for batch in batches:
            files.write(batch)
            if progress is not None:
                progress(len(batch.entries))
        # Everything is written; an old index must not survive next to the new .rec.
        _remove_if_exists(files.idx_url, storage_options)
    return files.result()


def _checked_arguments(
    entries: Iterable[LstEntry],
    out_prefix: str,
    opts: PackOptions,
    start_method: StartMethod,
    sizes: Sequence[int | None] | None,
) -> tuple[list[LstEntry], list[int | None] | None]:
    """`pack_shard`'s entries and sizes as lists, after checking its arguments (`ValueError`)."""
    if not isinstance(opts, PackOptions):
        raise ValueError(f"opts must be a PackOptions, got {type(opts).__name__}")
    if not out_prefix:
        raise ValueError("out_prefix must be a non-empty URL prefix")
    entries = list(entries)
    for e in entries:
        if not isinstance(e, LstEntry):
            raise ValueError(f"entries must be LstEntry objects, got {type(e).__name__}")
    if start_method not in START_METHODS:
        raise ValueError(
            f"start_method must be one of {', '.join(map(repr, START_METHODS))}, "
            f"got {start_method!r}"
        )
    if sizes is not None:
        sizes = list(sizes)
        if len(sizes) != len(entries):
            raise ValueError(f"sizes has {len(sizes)} items for {len(entries)} entries")
    return entries, sizes
