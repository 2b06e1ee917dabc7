"""Labels as `ImageRecordIter` reads them: from `.lst` files by record id (`path_imglist`, or
each shard's own `.lst` with `labels_from_lst`), parsed as MXNet parses them, or else from
each record's header (`record_label`)."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np

from recordio_core.format.textio import split_lines
from recordio_core.images.augment import image_bytes
from recordio_core.reading.sources import Shard
from recordio_core.storage.fsio import StorageOptions, read_text


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


def reader_labels(
    shards: Sequence[Shard],
    path_imglist: str | Sequence[str] | None,
    labels_from_lst: bool,
    label_width: int,
    storage_options: StorageOptions = None,
) -> dict[int, Any] | None:
    """The labels `ImageRecordReader` takes by record id: from `path_imglist` (one URL or
    several), or with `labels_from_lst` from every shard's `.lst` (`ValueError` when one has
    none); None when neither is asked for (labels then come from the records' headers)."""
    if labels_from_lst:
        missing = [sh.rec for sh in shards if sh.lst is None]
        if missing:
            raise ValueError(f"labels_from_lst=True but these shards have no .lst: {missing}")
        lists: list[str] = [sh.lst for sh in shards if sh.lst]
    elif path_imglist:
        lists = [path_imglist] if isinstance(path_imglist, str) else list(path_imglist)
    else:
        return None
    return load_imglists(lists, label_width, storage_options)
