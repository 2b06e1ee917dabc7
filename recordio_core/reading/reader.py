"""`ImageRecordReader`: MXNet's `ImageRecordIter` without MXNet, yielding numpy batches.

    from recordio_core.reading.reader import ImageRecordIter

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
    `prefetch_blocks + 1` blocks. See `recordio_core.reading.shuffle`.
  Without an index, records are shuffled within windows of `shuffle_chunk_size` MB (MXNet's
  chunk shuffle). Random crops and mirrors are drawn per record from `seed`, so results do not
  depend on the number of threads.
- Remote indexed shards are read in blocks also without `shuffle` (sequential order, fetched
  ahead). `cache_dir` keeps fetched blocks on local disk (at most `cache_limit_bytes`, least
  recently used out; see `recordio_core.storage.blockcache`), so later epochs read nothing remote.
- `batch.index` holds the records' header ids; `layout="NHWC"` is available.

The code, by concern: `recordio_core.reading.reader_options` (`ReaderOptions`, checked),
`recordio_core.reading.labels` (labels from `.lst` files or record headers),
`recordio_core.reading.reader_plan` (which records a part holds, in which order each epoch reads
them), `recordio_core.reading.reader_decode` (`Batch`, decoded on a thread pool),
`recordio_core.reading.reader_prefetch` (batches made ahead on a producer thread) and this module,
`ImageRecordReader`, which puts them together. The public names stay importable from here.
"""

from __future__ import annotations

import contextlib
import functools
from collections.abc import Iterator, Sequence
from typing import Any

from recordio_core.reading.labels import load_imglists as load_imglists
from recordio_core.reading.labels import parse_imglist as parse_imglist
from recordio_core.reading.labels import reader_labels
from recordio_core.reading.labels import record_label as record_label
from recordio_core.reading.reader_decode import Batch as Batch
from recordio_core.reading.reader_decode import _BatchDecoder, _Pending
from recordio_core.reading.reader_options import MAX_PREFETCH_BLOCKS as MAX_PREFETCH_BLOCKS
from recordio_core.reading.reader_options import MB as MB
from recordio_core.reading.reader_options import Layout as Layout
from recordio_core.reading.reader_options import ReaderOptions as ReaderOptions
from recordio_core.reading.reader_options import ShuffleMode as ShuffleMode
from recordio_core.reading.reader_plan import _Item, _RecordPlan, shuffle_mode_for
from recordio_core.reading.reader_plan import byte_part_records as byte_part_records
from recordio_core.reading.reader_prefetch import prefetched
from recordio_core.reading.sources import Shard, resolve_shards
from recordio_core.storage.fsio import StorageOptions, get_fs, is_local


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
        self.shuffle_mode = shuffle_mode_for(self.options, self.indexed, self.remote)
        labels = reader_labels(
            self.shards, path_imglist, labels_from_lst, self.options.label_width, storage_options
        )
        self._decoder = _BatchDecoder(self.options, labels, self.shards)
        self._plan = _RecordPlan(
            self.shards, self.options, storage_options, self.indexed, self.remote, self.shuffle_mode
        )
        self.blocks = self._plan.blocks  # with reads in blocks, else None
        self.cache = self._plan.cache  # with cache_dir and reads in blocks, else None
        self._epoch = 0
        self._current: Iterator[Batch] | None = None
        self._closed = False

    @property
    def num_records(self) -> int | None:
        """Records in this part (known with an index; None when it would need a full scan)."""
        return self._plan.num_records

    def __len__(self) -> int:
        """Batches per epoch (needs `num_records`)."""
        n = self.num_records
        if n is None:
            raise TypeError("the number of records is unknown without an index")
        b = self.options.batch_size
        return -(-n // b) if n else 0

    def epoch(self, epoch: int | None = None) -> Iterator[Batch]:
        """Iterate the batches of one epoch (the next one when `epoch` is None)."""
        if self._closed:
            raise RuntimeError("the reader is closed")
        if epoch is None:
            epoch = self._epoch
            self._epoch += 1
        return self._run(epoch)

    def _run(self, epoch: int) -> Iterator[Batch]:
        def submit(items: list[_Item], pad: int, batch_no: int) -> _Pending:
            return self._decoder.submit(items, pad, epoch, batch_no)

        batches = functools.partial(self._plan.batches, epoch)
        return prefetched(batches, submit, self.options.prefetch_buffer)

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
        self._decoder.close()
        self._plan.close()

    def __enter__(self) -> ImageRecordReader:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def __del__(self) -> None:
        with contextlib.suppress(Exception):
            self.close()


def ImageRecordIter(path_imgrec: str | Sequence[str], **kwargs: Any) -> ImageRecordReader:  # noqa: N802
    """MXNet's spelling: `ImageRecordIter(path_imgrec=..., data_shape=..., ...)`."""
    return ImageRecordReader(path_imgrec, **kwargs)
