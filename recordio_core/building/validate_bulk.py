"""The common case of `validate_shard`, proved in bulk: a mapped `.rec` whose records are all
whole (one part each) and agree with its `.idx` and `.lst` line for line.

`records_agree` reads only each record's head and image header, with numpy, at the offsets
the `.idx` gives, and proves what the record-by-record walk (`validate_records.walk_records`)
would find: the `.idx`'s offsets, in line order, start at 0 and are exactly the chain of
records the walk follows to the end of the file (so every record is indexed once, and nothing
lies between them), each record starts with the magic word, is whole (cflag 0) and holds an
image header whose `id` is its key, the `.lst` lists the same keys in the same order, and each
header's labels are the line's (float32; all of them with `pack_label`, else the first).

`True` means the walk would find no problem; `False` only that this proof does not apply
(a multi-part record, lines with different label counts, or any disagreement): the caller
then walks record by record, which says what is wrong. About 10x less CPU than the walk on a
shard of small images.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from recordio_core.format.framing import MAGIC, MAX_PART_LENGTH, MmapSource
from recordio_core.format.lst import LstEntry

_IR_SIZE = 24  # the image header: flag u32, label f32, id u64, id2 u64
# In words from a record's start: magic, lrec, then the image header (flag, label, id as two
# words, id2 as two), then `flag` float32 labels with pack_label.
_HEAD_WORDS = 2 + _IR_SIZE // 4


def records_agree(
    src: MmapSource,
    pairs: Sequence[tuple[int, int]],
    entries: Sequence[LstEntry] | None,
    *,
    pack_label: bool,
) -> bool:
    """Whether the walk of `src` would find its records exactly as the `.idx`'s `pairs`
    (key, offset) and, when given, the `.lst`'s `entries` say (see the module's docstring)."""
    mm, size = src.mm, src.size
    n = len(pairs)
    if mm is None or n == 0 or size % 4 or (entries is not None and len(entries) != n):
        return False
    try:
        table = np.array(pairs, dtype=np.uint64).reshape(n, 2)
        lst_keys = None if entries is None else np.array([e.index for e in entries], np.uint64)
    except (OverflowError, TypeError, ValueError):  # a key outside [0, 2**64), a string key
        return False
    keys, offsets = table[:, 0], table[:, 1].astype(np.int64)
    if offsets[0] != 0 or offsets[-1] + 4 * _HEAD_WORDS > size or bool(np.any(offsets & 3)):
        return False
    if n > 1 and not bool(np.all(offsets[1:] > offsets[:-1])):
        return False
    if lst_keys is not None and not np.array_equal(lst_keys, keys):
        return False
    if np.unique(keys).size != n:
        return False
    words = np.frombuffer(mm, dtype="<u4")
    try:
        at = offsets >> 2
        if not bool(np.all(words[at] == MAGIC)):
            return False
        lrec = words[at + 1].astype(np.int64)
        if bool(np.any(lrec > MAX_PART_LENGTH)) or bool(np.any(lrec < _IR_SIZE)):
            return False  # a multi-part record (cflag in the top bits), or no image header
        ends = offsets + 8 + ((lrec + 3) & ~3)
        if ends[-1] != size or not np.array_equal(ends[:-1], offsets[1:]):
            return False
        ids = words[at + 4].astype(np.uint64) | (words[at + 5].astype(np.uint64) << np.uint64(32))
        if not np.array_equal(ids, keys):
            return False
        if entries is None:
            return True
        flags = words[at + 2]
        return _labels_agree(words, at, lrec, flags, entries, pack_label)
    finally:
        del words  # the mapping cannot close while an array still views it


def _labels_agree(
    words: np.ndarray,
    at: np.ndarray,
    lrec: np.ndarray,
    flags: np.ndarray,
    entries: Sequence[LstEntry],
    pack_label: bool,
) -> bool:
    """Whether each record's header labels are the ones im2rec writes for its line
    (`validate_records.label_problem` finds none), when all lines have as many labels."""
    width = len(entries[0].labels)
    if any(len(e.labels) != width for e in entries):
        return False
    want = np.array([e.labels for e in entries], dtype=np.float32).reshape(len(entries), width)
    if pack_label and width > 1:
        if not bool(np.all(flags == width)) or bool(np.any(lrec < _IR_SIZE + 4 * width)):
            return False
        got = words[(at + _HEAD_WORDS)[:, None] + np.arange(width)].view("<f4")
    else:
        if bool(np.any(flags != 0)):
            return False
        got = words[at + 3].view("<f4")[:, None]
        want = want[:, :1]
    return bool(np.all(got == want))
