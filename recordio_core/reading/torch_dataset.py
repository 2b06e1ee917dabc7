"""Map-style access to image records, and a PyTorch `Dataset` built on it (torch optional).

    from recordio_core.reading.torch_dataset import RecordDataset, TorchRecordDataset

    ds = RecordDataset("out/manifest.json", split="train")   # no torch needed
    img, label = ds[0]                       # PIL image (RGB), float label

    tds = TorchRecordDataset("out/manifest.json", split="train", transform=my_transforms)
    loader = torch.utils.data.DataLoader(tds, batch_size=64, shuffle=True, num_workers=4)

Records are addressed by position through the shards' `.idx` files (a shard without one is
scanned once when the dataset is made). Labels follow `ImageRecordIter`'s rules
(`label_width`, `path_imglist`, `labels_from_lst`). Files are opened lazily in each process, so
the dataset pickles into DataLoader workers. `TorchRecordDataset` imports torch on first use;
without a `transform` it returns a uint8 CHW tensor, and labels are float32 tensors.

Access is by record: on an object store, `DataLoader(shuffle=True)` costs one ranged request
per record. For remote shards, `recordio_core.reading.reader.ImageRecordIter`'s block shuffle (and
its local cache) reads a few large ranges per epoch instead.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Sequence
from typing import Any

import numpy as np

from recordio_core.format.errors import RecordIOError, check_int
from recordio_core.format.framing import FileSource, MmapSource, open_source, read_record_at
from recordio_core.images.augment import open_image
from recordio_core.reading.partition import count_range
from recordio_core.reading.reader import load_imglists, record_label
from recordio_core.reading.sources import Shard, display_name, resolve_shards, shard_offsets
from recordio_core.storage.fsio import StorageOptions

_CHANNELS = {"L": 1, "RGB": 3, "RGBA": 4}


class RecordDataset:
    """`ds[i] -> (image, label)` over the records of `source` (what the reader accepts)."""

    def __init__(
        self,
        source: str | Sequence[str],
        *,
        split: str | None = None,
        label_width: int = 1,
        path_imglist: str | Sequence[str] | None = None,
        labels_from_lst: bool = False,
        mode: str = "RGB",
        transform: Callable[[Any], Any] | None = None,
        target_transform: Callable[[Any], Any] | None = None,
        num_parts: int = 1,
        part_index: int = 0,
        storage_options: StorageOptions = None,
    ) -> None:
        if mode not in _CHANNELS:
            raise ValueError(f"mode must be one of {sorted(_CHANNELS)}, got {mode!r}")
        check_int("label_width", label_width)
        if path_imglist and labels_from_lst:
            raise ValueError("give path_imglist or labels_from_lst=True, not both")
        self.shards: list[Shard] = resolve_shards(
            source, split=split, storage_options=storage_options
        )
        self.label_width = label_width
        self.mode = mode
        self.transform = transform
        self.target_transform = target_transform
        self.storage_options = storage_options
        lists: list[str] = []
        if labels_from_lst:
            missing = [s.rec for s in self.shards if not s.lst]
            if missing:
                raise ValueError(f"labels_from_lst=True but these shards have no .lst: {missing}")
            lists = [s.lst for s in self.shards if s.lst]
        elif path_imglist:
            lists = [path_imglist] if isinstance(path_imglist, str) else list(path_imglist)
        self._labels = load_imglists(lists, label_width, storage_options) if lists else None
        refs = [
            (i, off)
            for i, shard in enumerate(self.shards)
            for _, off in shard_offsets(shard, storage_options)
        ]
        start, stop = count_range(len(refs), num_parts, part_index)
        self._refs = refs[start:stop]
        self._sources: dict[int, MmapSource | FileSource] = {}
        self._pid = os.getpid()

    def __len__(self) -> int:
        return len(self._refs)

    def _source(self, shard: int) -> MmapSource | FileSource:
        if self._pid != os.getpid():  # a forked worker: open its own files
            self._sources = {}
            self._pid = os.getpid()
        src = self._sources.get(shard)
        if src is None:
            src = self._sources[shard] = open_source(self.shards[shard].rec, self.storage_options)
        return src

    def record(self, index: int) -> bytes:
        """The raw payload of record `index`."""
        if not -len(self._refs) <= index < len(self._refs):
            raise IndexError(f"record {index} is out of range for {len(self._refs)} records")
        shard, offset = self._refs[index]
        payload, _ = read_record_at(self._source(shard), offset)
        return payload

    def __getitem__(self, index: int) -> tuple[Any, Any]:
        payload = self.record(index)
        shard, offset = self._refs[index]
        try:
            label, _rid, img = record_label(payload, self.label_width, self._labels)
            image: Any = open_image(img, _CHANNELS[self.mode])
        except ValueError as exc:
            where = f"{display_name(self.shards[shard].rec)} record at offset {offset}"
            raise RecordIOError(f"{where}: {exc}") from None
        if self.transform is not None:
            image = self.transform(image)
        if self.target_transform is not None:
            label = self.target_transform(label)
        return image, label

    def close(self) -> None:
        for src in self._sources.values():
            src.close()
        self._sources = {}

    def __getstate__(self) -> dict[str, Any]:
        state = dict(self.__dict__)
        state["_sources"] = {}
        return state

    def __setstate__(self, state: dict[str, Any]) -> None:
        self.__dict__.update(state)
        self._pid = os.getpid()


_TORCH_CLASS: type | None = None


def _torch_class() -> type:
    """Build `TorchRecordDataset` (a `torch.utils.data.Dataset`) on first use."""
    global _TORCH_CLASS
    if _TORCH_CLASS is not None:
        return _TORCH_CLASS
    try:
        import torch
        from torch.utils.data import Dataset
    except ImportError as exc:
        raise ImportError(
            "TorchRecordDataset needs PyTorch (pip install torch); RecordDataset works without it"
        ) from exc

    class TorchRecordDataset(RecordDataset, Dataset):  # type: ignore[misc,valid-type]
        """A `torch.utils.data.Dataset` of `(image, label)`: the transform's output (or a
        uint8 CHW tensor without one) and a float32 label tensor."""

        def __getitem__(self, index: int) -> tuple[Any, Any]:
            image, label = super().__getitem__(index)
            if self.transform is None:
                arr = np.asarray(image)
                arr = arr[:, :, None] if arr.ndim == 2 else arr
                image = torch.from_numpy(np.ascontiguousarray(arr.transpose(2, 0, 1)))
            if self.target_transform is None:
                label = torch.as_tensor(np.asarray(label, dtype=np.float32))
            return image, label

    TorchRecordDataset.__module__ = __name__
    TorchRecordDataset.__qualname__ = "TorchRecordDataset"
    _TORCH_CLASS = TorchRecordDataset
    return TorchRecordDataset


def __getattr__(name: str) -> Any:
    if name == "TorchRecordDataset":
        return _torch_class()
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
