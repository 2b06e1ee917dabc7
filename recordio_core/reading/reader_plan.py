"""Which records one part of a reader's shards holds, and in which order each epoch reads them.

`shuffle_mode_for` settles the shuffle mode; `_RecordPlan` holds the part's records and yields
them per epoch (`records`) and in batches (`batches`, `round_batch` included):

- with an index for every shard: the part's records in index order, read one by one, in a
  uniform permutation per epoch with the global shuffle; or read in blocks (`blocks`, fetched
  ahead by a `recordio_core.storage.blockfetch.BlockFetcher`, through a
  `recordio_core.storage.blockcache` with `cache_dir`), shuffled as `recordio_core.reading.shuffle`
  plans it;
- without: the part's byte range of the shards' concatenation, scanned (`byte_part_records`)
  and shuffled within windows of `shuffle_chunk_size` MB, as MXNet does.
"""

from __future__ import annotations

import os
from collections.abc import Iterator, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from typing import Any

import numpy as np

from recordio_core.format.framing import (
    FileSource,
    MmapSource,
    find_record_start,
    open_source,
    read_record_at,
)
from recordio_core.reading.partition import count_range, local_byte_ranges
from recordio_core.reading.reader_options import MB, ReaderOptions
from recordio_core.reading.shuffle import (
    Block,
    Extent,
    block_order,
    buffer_shuffle,
    plan_blocks,
    record_extents,
)
from recordio_core.reading.sources import Shard, display_name, shard_offsets
from recordio_core.storage.blockcache import BlockCache, object_version
from recordio_core.storage.blockfetch import BlockFetcher, block_records
from recordio_core.storage.fsio import StorageOptions, get_fs


@dataclass(frozen=True)
class _Item:
    shard: int
    offset: int
    payload: bytes


def item_where(shards: Sequence[Shard], item: _Item) -> str:
    """Where `item` is, for an error message: its shard's name and offset."""
    return f"{display_name(shards[item.shard].rec)} record at offset {item.offset}"


def byte_part_records(
    sources: Sequence[MmapSource | FileSource], num_parts: int, part_index: int
) -> Iterator[tuple[int, int, bytes]]:
    """`(source number, offset, payload)` of the records of one byte-range part of the
    concatenation of `sources`, in order (MXNet's partitioning without an index: each range
    resynchronises on the first record start at or after its beginning)."""
    sizes = [src.size for src in sources]
    for shard, lo, hi in local_byte_ranges(sizes, num_parts, part_index):
        src = sources[shard]
        pos = find_record_start(src, lo, hi)
        while pos < hi:
            payload, nxt = read_record_at(src, pos)
            yield shard, pos, payload
            pos = nxt


def shuffle_mode_for(opts: ReaderOptions, indexed: bool, remote: bool) -> str:
    """The shuffle mode in use: 'global', 'block', or 'chunk' (no index: MXNet's)."""
    if not indexed:
        if opts.shuffle and opts.shuffle_mode != "auto":
            raise ValueError(
                f"shuffle_mode={opts.shuffle_mode!r} needs an .idx for every shard; without "
                "one use shuffle_mode='auto' (records shuffled within windows of "
                "shuffle_chunk_size MB, as MXNet does)"
            )
        return "chunk"
    if opts.shuffle_mode == "auto":
        return "block" if remote else "global"
    return opts.shuffle_mode


class _RecordPlan:
    """The records of one part of `shards` (`opts.num_parts`, `opts.part_index`), per epoch.

    With `indexed` the plan is made now (the indexes read, the blocks planned); without, every
    file is opened now (byte-range parts need their sizes). Otherwise files are opened on first
    use: reads in blocks need none. `close()` stops the block fetcher and closes the files.
    """

    def __init__(
        self,
        shards: list[Shard],
        opts: ReaderOptions,
        storage_options: StorageOptions,
        indexed: bool,
        remote: bool,
        shuffle_mode: str,
    ) -> None:
        self.shards = shards
        self.options = opts
        self.storage_options = storage_options
        self.remote = remote
        self.shuffle_mode = shuffle_mode
        self._sources: list[MmapSource | FileSource | None] = [None] * len(shards)
        self._refs: list[tuple[int, int]] | None = None
        self._extents: list[Extent] = []
        self.blocks: list[Block] | None = None
        self._fetcher: BlockFetcher | None = None
        self.cache: BlockCache | None = None
        if indexed:
            self._plan_records()
        else:  # byte-range parts need every file's size
            for i in range(len(shards)):
                self.source(i)

    # -- the plan -----------------------------------------------------------------------------
    def _plan_records(self) -> None:
        """This part's records in index order; blocks when they are read in blocks (a
        shuffle in block mode, or any read of remote shards without the global shuffle)."""
        opts = self.options
        by_blocks = (self.shuffle_mode == "block") if opts.shuffle else self.remote
        metas = self._index_metas(by_blocks)
        n = sum(len(offsets) for offsets, _ in metas)
        start, stop = count_range(n, opts.num_parts, opts.part_index, opts.part_style)
        if not by_blocks:
            refs = [(i, off) for i, (offsets, _) in enumerate(metas) for off in offsets]
            self._refs = refs[start:stop]
            return
        infos = [info or {} for _, info in metas]
        extents = [
            e
            for i, (offsets, _) in enumerate(metas)
            for e in record_extents(i, offsets, int(infos[i]["size"]))
        ][start:stop]
        self._extents = extents
        self._refs = [(e.shard, e.offset) for e in extents]
        self._plan_blocks(infos)

    def _index_metas(self, by_blocks: bool) -> list[tuple[list[int], dict[str, Any] | None]]:
        """Each shard's record offsets, from its index, and for reads in blocks its `.rec`'s
        file info (size, version)."""
        so = self.storage_options

        def meta(shard: Shard) -> tuple[list[int], dict[str, Any] | None]:
            offsets = [off for _, off in shard_offsets(shard, so)]
            if not by_blocks:
                return offsets, None
            fs, path = get_fs(shard.rec, so)
            return offsets, fs.info(path)

        # the shards' indexes are read concurrently: on an object store each costs a round trip
        with ThreadPoolExecutor(min(16, len(self.shards)), "recordio-index") as pool:
            return list(pool.map(meta, self.shards))

    def _plan_blocks(self, infos: list[dict[str, Any]]) -> None:
        """The blocks of this part's records (`_extents`), and the fetcher that reads them."""
        opts = self.options
        extents = self._extents
        # a shuffle buffer spans at least four blocks; a sequential read has no record limit
        max_records = max(1, opts.shuffle_buffer // 4) if opts.shuffle else max(1, len(extents))
        self.blocks = plan_blocks(extents, opts.block_bytes, max_records)
        versions = None
        if opts.cache_dir is not None:
            folder = opts.cache_dir.removeprefix("file://").removeprefix("local://")
            folder = os.path.expanduser(folder)
            self.cache = BlockCache(folder, opts.cache_limit_bytes)
            versions = [
                object_version(info, sh.sha256) for sh, info in zip(self.shards, infos, strict=True)
            ]
        self._fetcher = BlockFetcher(
            [sh.rec for sh in self.shards],
            prefetch=opts.prefetch_blocks,
            storage_options=self.storage_options,
            versions=versions,
            cache=self.cache,
        )

    def source(self, shard: int) -> MmapSource | FileSource:
        src = self._sources[shard]
        if src is None:
            src = self._sources[shard] = open_source(self.shards[shard].rec, self.storage_options)
        return src

    @property
    def num_records(self) -> int | None:
        """Records in this part (known with an index; None when it would need a full scan)."""
        if self._refs is not None:
            return len(self._refs)
        if self.options.num_parts == 1 and all(sh.records is not None for sh in self.shards):
            return sum(sh.records or 0 for sh in self.shards)
        return None

    # -- record order -------------------------------------------------------------------------
    def records(self, epoch: int) -> Iterator[_Item]:
        opts = self.options
        if self.blocks is not None:
            yield from self._block_records(epoch)
            return
        if self._refs is not None:
            refs = self._refs
            if opts.shuffle:
                order = np.random.default_rng([opts.seed, epoch]).permutation(len(refs))
                refs = [refs[i] for i in order]
            for shard, offset in refs:
                payload, _ = read_record_at(self.source(shard), offset)
                yield _Item(shard, offset, payload)
            return
        stream = self._scan_part()
        if not opts.shuffle:
            yield from stream
            return
        rng = np.random.default_rng([opts.seed, epoch])
        window: list[_Item] = []
        held = 0
        limit = opts.shuffle_chunk_size * MB
        for item in stream:
            window.append(item)
            held += len(item.payload)
            if held >= limit:
                yield from (window[i] for i in rng.permutation(len(window)))
                window, held = [], 0
        yield from (window[i] for i in rng.permutation(len(window)))

    def _block_records(self, epoch: int) -> Iterator[_Item]:
        opts = self.options
        blocks = self.blocks or []
        fetcher = self._fetcher
        if fetcher is None:
            raise RuntimeError("block reads without a fetcher")
        if opts.shuffle:
            blocks = [blocks[i] for i in block_order(len(blocks), opts.seed, epoch)]
        stream = fetcher.stream(blocks)
        items = (
            _Item(block.shard, offset, payload)
            for block, data in stream
            for offset, payload in block_records(
                block, data, self._extents, self.shards[block.shard].rec
            )
        )
        try:
            if not opts.shuffle:
                yield from items
            else:
                rng = np.random.default_rng([opts.seed, epoch, 2])
                yield from buffer_shuffle(items, opts.shuffle_buffer, rng)
        finally:
            stream.close()  # cancel the blocks still being fetched

    def _scan_part(self) -> Iterator[_Item]:
        opts = self.options
        for shard, offset, payload in byte_part_records(
            [self.source(i) for i in range(len(self.shards))], opts.num_parts, opts.part_index
        ):
            yield _Item(shard, offset, payload)

    def batches(self, epoch: int) -> Iterator[tuple[list[_Item], int]]:
        """The epoch's records in batches of `batch_size`, with the pad of the last one: with
        `round_batch` it is filled from the start of the epoch's order, else left short."""
        size = self.options.batch_size
        batch: list[_Item] = []
        for item in self.records(epoch):
            batch.append(item)
            if len(batch) == size:
                yield batch, 0
                batch = []
        if not batch:
            return
        if not self.options.round_batch:
            yield batch, 0
            return
        pad = size - len(batch)
        while len(batch) < size:
            for item in self.records(epoch):
                batch.append(item)
                if len(batch) == size:
                    break
        yield batch, pad

    def close(self) -> None:
        if self._fetcher is not None:
            self._fetcher.close()
        for src in self._sources:
            if src is None:
                continue
            src.close()
