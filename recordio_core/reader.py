"""`ImageRecordReader`: MXNet's `ImageRecordIter` without MXNet, yielding numpy batches.

    from recordio_core.reader import ImageRecordIter

    it = ImageRecordIter(path_imgrec="data/train.rec", data_shape=(3, 28, 28),
                         path_imglist="data/image.lst", label_width=4, batch_size=32)
    for batch in it:            # one epoch; iterate again for the next one
        batch.data, batch.label, batch.pad   # (N, 3, 28, 28) float32, (N, 4) float32, int

Sources: `path_imgrec` is a `.rec` URL, a list of them, a glob (`s3://b/train-*.rec`), a
prefix, a folder or a `manifest.json` (choose `split=`); any fsspec URL (`storage_options` go
to fsspec untouched). Each `PREFIX.rec` uses `PREFIX.idx` when it exists (`use_index`).

Parameters keep MXNet's names and meanings: `data_shape`, `batch_size`, `label_width`,
`path_imgidx`, `path_imglist` (labels from a `.lst` matched by record id, parsed as MXNet does:
white space separated, the `label_width` numbers after the index), `shuffle`, `seed`, `resize`,
`rand_crop`, `rand_mirror`, `inter_method`, `mean_r/g/b/a`, `std_r/g/b/a`, `scale`,
`round_batch`, `num_parts`/`part_index`, `preprocess_threads`, `prefetch_buffer`,
`shuffle_chunk_size`, `dtype`.

Where we differ from MXNet, on purpose:
- `round_batch=False` ends an epoch with a short batch (MXNet returns a full batch whose tail
  holds stale data and `pad=0`); `round_batch=True` fills the last batch from the start of the
  epoch's order and sets `pad` like MXNet, and every epoch starts from its beginning.
- Partitions with an index are balanced by record count (sizes differ by at most one); MXNet's
  are `ceil(n / num_parts)` records each (`part_style="mxnet"` reproduces them). Without an
  index both cut the byte range identically.
- `shuffle` with an index has two modes (`shuffle_mode`; `"auto"` picks `"global"` for local
  files and `"block"` when any shard is remote):
  * `"global"`: a uniform permutation of all records per epoch (`seed`, epoch number); on an
    object store that is one ranged GET per record.
  * `"block"`: records are grouped into blocks (consecutive records of one shard, at most
    `block_bytes` bytes and `shuffle_buffer // 4` records); each epoch permutes the blocks,
    fetches them ahead with one ranged read each (`prefetch_blocks` in flight) and mixes
    records in a buffer of `shuffle_buffer` records. Memory holds at most the buffer plus
    `prefetch_blocks + 1` blocks. See `recordio_core.shuffle`.
  Without an index, records are shuffled within windows of `shuffle_chunk_size` MB (MXNet's
  chunk shuffle). Random crops and mirrors are drawn per record from `seed`, so results do not
  depend on the number of threads.
- Remote indexed shards are read in blocks also without `shuffle` (sequential order, fetched
  ahead). `cache_dir` keeps fetched blocks on local disk (at most `cache_limit_bytes`, least
  recently used out; see `recordio_core.blockcache`), so later epochs read nothing remote.
- `batch.index` holds the records' header ids; `layout="NHWC"` is available.
"""

from __future__ import annotations

import contextlib
import math
import os
import queue
import threading
from collections.abc import Iterator, Sequence
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass, field
from typing import Any, Literal

import numpy as np

from recordio_core.augment import (
    INTER_METHODS,
    AugmentSpec,
    DType,
    ImageWriter,
    image_bytes,
)
from recordio_core.blockcache import BlockCache, object_version
from recordio_core.blockfetch import BlockFetcher, block_records
from recordio_core.errors import RecordIOError
from recordio_core.framing import (
    FileSource,
    MmapSource,
    find_record_start,
    open_source,
    read_record_at,
)
from recordio_core.fsio import StorageOptions, get_fs, is_local, read_text
from recordio_core.partition import CountStyle, check_part, count_range, local_byte_ranges
from recordio_core.shuffle import (
    Block,
    Extent,
    block_order,
    buffer_shuffle,
    plan_blocks,
    record_extents,
)
from recordio_core.sources import Shard, display_name, resolve_shards, shard_offsets
from recordio_core.textio import split_lines

Layout = Literal["NCHW", "NHWC"]
ShuffleMode = Literal["auto", "global", "block"]
MB = 1 << 20
MAX_PREFETCH_BLOCKS = 64


@dataclass(frozen=True)
class ReaderOptions:
    """Validated reader options (MXNet's names and defaults unless noted)."""

    data_shape: tuple[int, int, int]
    batch_size: int = 1
    label_width: int = 1
    shuffle: bool = False
    seed: int = 0
    resize: int = -1
    rand_crop: bool = False
    rand_mirror: bool = False
    inter_method: int = 1
    mean_r: float = 0.0
    mean_g: float = 0.0
    mean_b: float = 0.0
    mean_a: float = 0.0
    std_r: float = 1.0
    std_g: float = 1.0
    std_b: float = 1.0
    std_a: float = 1.0
    scale: float = 1.0
    round_batch: bool = True
    num_parts: int = 1
    part_index: int = 0
    preprocess_threads: int = 4
    prefetch_buffer: int = 4
    shuffle_chunk_size: int = 64
    part_style: CountStyle = "balanced"
    dtype: DType = "float32"
    layout: Layout = "NCHW"
    shuffle_mode: ShuffleMode = "auto"
    shuffle_buffer: int = 1024
    block_bytes: int = 8 * MB
    prefetch_blocks: int = 4
    cache_dir: str | None = None
    cache_limit_bytes: int | None = None

    def __post_init__(self) -> None:
        shape = tuple(self.data_shape) if isinstance(self.data_shape, Sequence) else ()
        if (
            len(shape) != 3
            or not all(isinstance(v, int) and not isinstance(v, bool) for v in shape)
            or shape[0] not in (1, 3, 4)
            or min(shape) < 1
        ):
            raise ValueError(
                "data_shape must be (channels, height, width) with channels 1, 3 or 4 and "
                f"positive sizes, got {self.data_shape!r}"
            )
        object.__setattr__(self, "data_shape", shape)
        for name in ("batch_size", "label_width", "preprocess_threads", "prefetch_buffer"):
            _check_int(name, getattr(self, name), 1)
        _check_int("shuffle_chunk_size", self.shuffle_chunk_size, 1)
        _check_int("seed", self.seed, 0)
        if isinstance(self.resize, bool) or not isinstance(self.resize, int) or self.resize < -1:
            raise ValueError(
                f"resize must be -1 or 0 (off) or a positive size, got {self.resize!r}"
            )
        if self.inter_method not in INTER_METHODS:
            raise ValueError(
                f"inter_method must be one of {INTER_METHODS} (0 nearest, 1 bilinear, 2 cubic, "
                f"3 area, 4 lanczos, 9 auto, 10 random), got {self.inter_method!r}"
            )
        check_part(self.num_parts, self.part_index)
        if self.part_style not in ("balanced", "mxnet"):
            raise ValueError(f"part_style must be 'balanced' or 'mxnet', got {self.part_style!r}")
        for name in ("std_r", "std_g", "std_b", "std_a"):
            value = getattr(self, name)
            if not isinstance(value, int | float) or not value > 0 or math.isinf(value):
                raise ValueError(f"{name} must be a positive number, got {value!r}")
        for name in ("mean_r", "mean_g", "mean_b", "mean_a", "scale"):
            value = getattr(self, name)
            if not isinstance(value, int | float) or not math.isfinite(value):
                raise ValueError(f"{name} must be a finite number, got {value!r}")
        if self.dtype not in ("float32", "uint8"):
            raise ValueError(f"dtype must be 'float32' or 'uint8', got {self.dtype!r}")
        if self.dtype == "uint8" and (
            self.mean != (0.0,) * 4 or self.std != (1.0,) * 4 or self.scale != 1
        ):
            raise ValueError(
                "dtype='uint8' returns raw pixels: leave mean_*, std_* and scale at their "
                "defaults (or use dtype='float32')"
            )
        if self.layout not in ("NCHW", "NHWC"):
            raise ValueError(f"layout must be 'NCHW' or 'NHWC', got {self.layout!r}")
        self._check_block_options()

    def _check_block_options(self) -> None:
        if self.shuffle_mode not in ("auto", "global", "block"):
            raise ValueError(
                "shuffle_mode must be 'auto' (global for local files, block for remote ones), "
                f"'global' or 'block', got {self.shuffle_mode!r}"
            )
        _check_int("shuffle_buffer", self.shuffle_buffer, 1)
        _check_int("block_bytes", self.block_bytes, 1)
        _check_int("prefetch_blocks", self.prefetch_blocks, 1)
        if self.prefetch_blocks > MAX_PREFETCH_BLOCKS:
            raise ValueError(
                f"prefetch_blocks must be at most {MAX_PREFETCH_BLOCKS}, got {self.prefetch_blocks}"
            )
        if self.cache_dir is not None:
            if isinstance(self.cache_dir, os.PathLike):
                object.__setattr__(self, "cache_dir", os.fspath(self.cache_dir))
            if not isinstance(self.cache_dir, str) or not self.cache_dir:
                raise ValueError(f"cache_dir must be a local folder path, got {self.cache_dir!r}")
            scheme = self.cache_dir.partition("://")[0] if "://" in self.cache_dir else ""
            if scheme and scheme not in ("file", "local"):
                raise ValueError(
                    f"cache_dir must be a local folder, got the {scheme}:// URL {self.cache_dir!r}"
                )
        if self.cache_limit_bytes is not None:
            if self.cache_dir is None:
                raise ValueError("cache_limit_bytes needs cache_dir (the folder it limits)")
            _check_int("cache_limit_bytes", self.cache_limit_bytes, 1)
            if self.cache_limit_bytes < self.block_bytes:
                raise ValueError(
                    f"cache_limit_bytes ({self.cache_limit_bytes}) must be at least block_bytes "
                    f"({self.block_bytes}): the cache must hold one block"
                )

    @property
    def mean(self) -> tuple[float, float, float, float]:
        return (self.mean_r, self.mean_g, self.mean_b, self.mean_a)

    @property
    def std(self) -> tuple[float, float, float, float]:
        return (self.std_r, self.std_g, self.std_b, self.std_a)

    def augment_spec(self) -> AugmentSpec:
        return AugmentSpec(
            data_shape=self.data_shape,
            resize=self.resize,
            rand_crop=self.rand_crop,
            rand_mirror=self.rand_mirror,
            inter_method=self.inter_method,
            mean=self.mean,
            std=self.std,
            scale=float(self.scale),
            dtype=self.dtype,
            layout=self.layout,
        )


def _check_int(name: str, value: Any, minimum: int) -> None:
    if isinstance(value, bool) or not isinstance(value, int) or value < minimum:
        raise ValueError(f"{name} must be an integer >= {minimum}, got {value!r}")


@dataclass(frozen=True)
class Batch:
    """One batch: `data` (N, C, H, W) or (N, H, W, C); `label` (N,) when `label_width` is 1,
    else (N, label_width); `pad` trailing items that repeat earlier records (round_batch);
    `index` the records' header ids."""

    data: np.ndarray
    label: np.ndarray
    pad: int = 0
    index: np.ndarray = field(default_factory=lambda: np.zeros(0, dtype=np.uint64))


def parse_imglist(text: str, label_width: int, source: str = "<imglist>") -> dict[int, np.ndarray]:
    """Labels by record id from `.lst` text, as MXNet's `ImageLabelMap` reads it: fields split
    on any white space, the index, then exactly `label_width` numbers (further columns, the
    path, are ignored). A later line with the same index wins, as in MXNet."""
    labels: dict[int, np.ndarray] = {}
    for lineno, line in enumerate(split_lines(text), start=1):
        fields = line.split()
        if not fields:
            continue
        if len(fields) < 1 + label_width:
            raise ValueError(
                f"{source}:{lineno}: label_width={label_width} needs {label_width} label "
                f"column(s) after the index, found {len(fields) - 1}: {line!r}"
            )
        try:
            key = int(fields[0])
            values = [float(v) for v in fields[1 : 1 + label_width]]
        except ValueError:
            raise ValueError(
                f"{source}:{lineno}: expected an integer index and {label_width} number(s), "
                f"got {line!r}"
            ) from None
        labels[key] = np.asarray(values, dtype=np.float32)
    return labels


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


def record_label(
    payload: bytes, label_width: int, labels: dict[int, Any] | None = None
) -> tuple[np.ndarray | float, int, memoryview]:
    """`(label, record id, image bytes)` of an image record, as `ImageRecordIter` takes it:
    from `labels` (record id -> label, from a `.lst`) when given, else from the header (a
    float when `label_width` is 1, else the header's `label_width` float32 labels). Raises
    `ValueError` when the record does not provide what `label_width` asks for."""
    flag, header_label, rid, img = image_bytes(payload)
    if labels is not None:
        try:
            return labels[rid], rid, img
        except KeyError:
            raise ValueError(f"record id {rid} is not in path_imglist") from None
    if flag > 0:
        if flag != label_width:
            raise ValueError(f"the record holds {flag} labels but label_width is {label_width}")
        return np.frombuffer(payload, np.float32, flag, 24), rid, img
    if label_width != 1:
        raise ValueError(
            f"the record holds one label; label_width={label_width} needs path_imglist (or "
            "labels_from_lst) or records packed with pack_label"
        )
    return header_label, rid, img


def load_imglists(
    urls: Sequence[str], label_width: int, storage_options: StorageOptions = None
) -> dict[int, Any]:
    """Record id -> label from `.lst` files (later files win): a float when `label_width` is
    1, else a float32 array."""
    labels: dict[int, Any] = {}
    for url in urls:
        labels.update(parse_imglist(read_text(url, storage_options), label_width, url))
    if label_width == 1:
        return {key: float(value[0]) for key, value in labels.items()}
    return labels


@dataclass(frozen=True)
class _Item:
    shard: int
    offset: int
    payload: bytes


class ImageRecordReader:
    """Batches of decoded, augmented images and their labels from RecordIO shards.

    See the module documentation. Iterating runs one epoch (`for batch in reader`); each new
    iteration is the next epoch. MXNet style also works: `reader.next()` / `reader.reset()`.
    Use as a context manager, or call `close()`, to stop its threads and close files.
    """

    def __init__(
        self,
        path_imgrec: str | Sequence[str],
        data_shape: Sequence[int],
        batch_size: int = 1,
        *,
        path_imgidx: str | None = None,
        path_imglist: str | Sequence[str] | None = None,
        labels_from_lst: bool = False,
        split: str | None = None,
        use_index: bool | None = None,
        storage_options: StorageOptions = None,
        **options: Any,
    ) -> None:
        try:
            self.options = ReaderOptions(
                data_shape=tuple(data_shape), batch_size=batch_size, **options
            )
        except TypeError as exc:
            allowed = ", ".join(sorted(ReaderOptions.__dataclass_fields__))
            raise TypeError(f"{exc}; reader options are: {allowed}") from None
        if path_imglist and labels_from_lst:
            raise ValueError("give path_imglist or labels_from_lst=True, not both")
        self.storage_options = storage_options
        self.shards: list[Shard] = resolve_shards(
            path_imgrec,
            path_imgidx=path_imgidx,
            split=split,
            use_index=use_index,
            storage_options=storage_options,
        )
        self.indexed = all(sh.idx is not None for sh in self.shards)
        self.remote = any(not is_local(get_fs(sh.rec, storage_options)[0]) for sh in self.shards)
        self.shuffle_mode = self._resolve_mode()
        self._labels = self._load_labels(path_imglist, labels_from_lst)
        self._writer = ImageWriter(self.options.augment_spec())
        # opened on first use: reads in blocks need none
        self._sources: list[MmapSource | FileSource | None] = [None] * len(self.shards)
        self._refs: list[tuple[int, int]] | None = None
        self._extents: list[Extent] = []
        self.blocks: list[Block] | None = None
        self._fetcher: BlockFetcher | None = None
        self.cache: BlockCache | None = None
        if self.indexed:
            self._plan_records()
        else:  # byte-range parts need every file's size
            for i in range(len(self.shards)):
                self._source(i)
        self._pool: ThreadPoolExecutor | None = None
        self._epoch = 0
        self._current: Iterator[Batch] | None = None
        self._closed = False

    # -- record plan --------------------------------------------------------------------------
    def _resolve_mode(self) -> str:
        """The shuffle mode in use: 'global', 'block', or 'chunk' (no index: MXNet's)."""
        opts = self.options
        if not self.indexed:
            if opts.shuffle and opts.shuffle_mode != "auto":
                raise ValueError(
                    f"shuffle_mode={opts.shuffle_mode!r} needs an .idx for every shard; without "
                    "one use shuffle_mode='auto' (records shuffled within windows of "
                    "shuffle_chunk_size MB, as MXNet does)"
                )
            return "chunk"
        if opts.shuffle_mode == "auto":
            return "block" if self.remote else "global"
        return opts.shuffle_mode

    def _plan_records(self) -> None:
        """This part's records in index order; blocks when they are read in blocks (a
        shuffle in block mode, or any read of remote shards without the global shuffle)."""
        opts = self.options
        so = self.storage_options
        by_blocks = (self.shuffle_mode == "block") if opts.shuffle else self.remote

        def meta(shard: Shard) -> tuple[list[int], dict[str, Any] | None]:
            offsets = [off for _, off in shard_offsets(shard, so)]
            if not by_blocks:
                return offsets, None
            fs, path = get_fs(shard.rec, so)
            return offsets, fs.info(path)

        # the shards' indexes are read concurrently: on an object store each costs a round trip
        with ThreadPoolExecutor(min(16, len(self.shards)), "recordio-index") as pool:
            metas = list(pool.map(meta, self.shards))
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
            storage_options=so,
            versions=versions,
            cache=self.cache,
        )

    # -- labels -------------------------------------------------------------------------------
    def _load_labels(
        self, path_imglist: str | Sequence[str] | None, labels_from_lst: bool
    ) -> dict[int, Any] | None:
        width = self.options.label_width
        if labels_from_lst:
            missing = [sh.rec for sh in self.shards if sh.lst is None]
            if missing:
                raise ValueError(f"labels_from_lst=True but these shards have no .lst: {missing}")
            lists: list[str] = [sh.lst for sh in self.shards if sh.lst]
        elif path_imglist:
            lists = [path_imglist] if isinstance(path_imglist, str) else list(path_imglist)
        else:
            return None
        return load_imglists(lists, width, self.storage_options)

    def _source(self, shard: int) -> MmapSource | FileSource:
        src = self._sources[shard]
        if src is None:
            src = self._sources[shard] = open_source(self.shards[shard].rec, self.storage_options)
        return src

    def _where(self, item: _Item) -> str:
        return f"{display_name(self.shards[item.shard].rec)} record at offset {item.offset}"

    # -- record order -------------------------------------------------------------------------
    @property
    def num_records(self) -> int | None:
        """Records in this part (known with an index; None when it would need a full scan)."""
        if self._refs is not None:
            return len(self._refs)
        if self.options.num_parts == 1 and all(sh.records is not None for sh in self.shards):
            return sum(sh.records or 0 for sh in self.shards)
        return None

    def __len__(self) -> int:
        """Batches per epoch (needs `num_records`)."""
        n = self.num_records
        if n is None:
            raise TypeError("the number of records is unknown without an index")
        b = self.options.batch_size
        return -(-n // b) if n else 0

    def _records(self, epoch: int) -> Iterator[_Item]:
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
                payload, _ = read_record_at(self._source(shard), offset)
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
            [self._source(i) for i in range(len(self.shards))], opts.num_parts, opts.part_index
        ):
            yield _Item(shard, offset, payload)

    def _batches(self, epoch: int) -> Iterator[tuple[list[_Item], int]]:
        size = self.options.batch_size
        batch: list[_Item] = []
        for item in self._records(epoch):
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
            for item in self._records(epoch):
                batch.append(item)
                if len(batch) == size:
                    break
        yield batch, pad

    # -- decoding -----------------------------------------------------------------------------
    def _pool_get(self) -> ThreadPoolExecutor:
        if self._pool is None:
            self._pool = ThreadPoolExecutor(
                self.options.preprocess_threads, thread_name_prefix="recordio-decode"
            )
        return self._pool

    def _draws(self, epoch: int, n: int, batch_no: int) -> np.ndarray | None:
        if not self._writer.spec.needs_draws:
            return None
        rng = np.random.default_rng([self.options.seed, epoch, batch_no, 1])
        return rng.random((n, 4))

    def _decode_range(
        self,
        items: list[_Item],
        lo: int,
        hi: int,
        data: np.ndarray,
        label: np.ndarray,
        index: np.ndarray,
        draws: np.ndarray | None,
    ) -> None:
        for i in range(lo, hi):
            item = items[i]
            rid: int | None = None
            try:
                value, rid, img = record_label(item.payload, self.options.label_width, self._labels)
                label[i] = value
                index[i] = rid
                self._writer.process(img, data[i], tuple(draws[i]) if draws is not None else ())
            except ValueError as exc:
                what = "" if rid is None else f" (id {rid})"
                raise RecordIOError(f"{self._where(item)}{what}: {exc}") from None

    def _submit(self, items: list[_Item], pad: int, epoch: int, batch_no: int) -> _Pending:
        n = len(items)
        width = self.options.label_width
        data = self._writer.allocate(n)
        label = np.empty((n,) if width == 1 else (n, width), dtype=np.float32)
        index = np.empty(n, dtype=np.uint64)
        draws = self._draws(epoch, n, batch_no)
        pool = self._pool_get()
        step = max(1, -(-n // (self.options.preprocess_threads * 4)))
        futures = [
            pool.submit(self._decode_range, items, lo, min(lo + step, n), data, label, index, draws)
            for lo in range(0, n, step)
        ]
        return _Pending(Batch(data, label, pad, index), futures)

    # -- iteration ----------------------------------------------------------------------------
    def epoch(self, epoch: int | None = None) -> Iterator[Batch]:
        """Iterate the batches of one epoch (the next one when `epoch` is None)."""
        if self._closed:
            raise RuntimeError("the reader is closed")
        if epoch is None:
            epoch = self._epoch
            self._epoch += 1
        return self._run(epoch)

    def _run(self, epoch: int) -> Iterator[Batch]:
        q: queue.Queue[Any] = queue.Queue(maxsize=self.options.prefetch_buffer)
        stop = threading.Event()

        def put(obj: Any) -> None:
            while not stop.is_set():
                try:
                    q.put(obj, timeout=0.05)
                    return
                except queue.Full:
                    continue

        def produce() -> None:
            try:
                for batch_no, (items, pad) in enumerate(self._batches(epoch)):
                    if stop.is_set():
                        return
                    put(self._submit(items, pad, epoch, batch_no))
            except BaseException as exc:  # handed to the consumer, raised there
                put(_Failure(exc))
            finally:
                put(_END)

        producer = threading.Thread(target=produce, name="recordio-read", daemon=True)
        producer.start()
        try:
            while True:
                obj = q.get()
                if obj is _END:
                    return
                if isinstance(obj, _Failure):
                    raise obj.exc
                yield obj.result()
        finally:
            stop.set()
            with contextlib.suppress(queue.Empty):
                while True:
                    obj = q.get_nowait()
                    if isinstance(obj, _Pending):
                        obj.cancel()
            producer.join()

    def __iter__(self) -> Iterator[Batch]:
        return self.epoch()

    def next(self) -> Batch:
        """MXNet style: the next batch of the current epoch; `StopIteration` at its end."""
        if self._current is None:
            self._current = self.epoch()
        return next(self._current)

    __next__ = next

    def reset(self) -> None:
        """MXNet style: end the current epoch; the next `next()` starts a new one."""
        if self._current is not None:
            close = getattr(self._current, "close", None)
            if close is not None:
                close()
        self._current = None

    def close(self) -> None:
        if self._closed:
            return
        self.reset()
        self._closed = True
        if self._pool is not None:
            self._pool.shutdown(wait=True, cancel_futures=True)
            self._pool = None
        if self._fetcher is not None:
            self._fetcher.close()
        for src in self._sources:
            if src is None:
                continue
            src.close()

    def __enter__(self) -> ImageRecordReader:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def __del__(self) -> None:
        with contextlib.suppress(Exception):
            self.close()


class _Pending:
    def __init__(self, batch: Batch, futures: list[Future[None]]) -> None:
        self.batch = batch
        self.futures = futures

    def result(self) -> Batch:
        for f in self.futures:
            f.result()
        return self.batch

    def cancel(self) -> None:
        for f in self.futures:
            f.cancel()
        for f in self.futures:
            with contextlib.suppress(BaseException):
                f.result()


@dataclass(frozen=True)
class _Failure:
    exc: BaseException


_END = object()


def ImageRecordIter(path_imgrec: str | Sequence[str], **kwargs: Any) -> ImageRecordReader:  # noqa: N802
    """MXNet's spelling: `ImageRecordIter(path_imgrec=..., data_shape=..., ...)`."""
    return ImageRecordReader(path_imgrec, **kwargs)
