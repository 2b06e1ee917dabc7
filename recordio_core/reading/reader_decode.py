"""Decoding batches: `_BatchDecoder.submit` turns a batch of records into a `Batch` (labels,
header ids, and images decoded and augmented by `recordio_core.images.augment.ImageWriter`) on a
pool of `preprocess_threads` threads, and returns at once with a `_Pending` one."""

from __future__ import annotations

import contextlib
from collections.abc import Sequence
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from recordio_core.format.errors import RecordIOError
from recordio_core.images.augment import ImageWriter
from recordio_core.reading.labels import record_label
from recordio_core.reading.reader_options import ReaderOptions
from recordio_core.reading.reader_plan import _Item, item_where
from recordio_core.reading.sources import Shard


@dataclass(frozen=True)
class Batch:
    """One batch: `data` (N, C, H, W) or (N, H, W, C); `label` (N,) when `label_width` is 1,
    else (N, label_width); `pad` trailing items that repeat earlier records (round_batch);
    `index` the records' header ids."""

    data: np.ndarray
    label: np.ndarray
    pad: int = 0
    index: np.ndarray = field(default_factory=lambda: np.zeros(0, dtype=np.uint64))


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


class _BatchDecoder:
    """Decodes batches of `shards`' records as `options` say, with `labels` (record id ->
    label) when given, else the records' header labels. The thread pool starts with the first
    batch; `close()` stops it."""

    def __init__(
        self, options: ReaderOptions, labels: dict[int, Any] | None, shards: Sequence[Shard]
    ) -> None:
        self.options = options
        self._labels = labels
        self._shards = shards
        self._writer = ImageWriter(options.augment_spec())
        self._pool: ThreadPoolExecutor | None = None

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
                raise RecordIOError(f"{item_where(self._shards, item)}{what}: {exc}") from None

    def submit(self, items: list[_Item], pad: int, epoch: int, batch_no: int) -> _Pending:
        """Batch `batch_no` of `epoch` (its random draws depend on both), being decoded."""
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

    def close(self) -> None:
        if self._pool is not None:
            self._pool.shutdown(wait=True, cancel_futures=True)
            self._pool = None
