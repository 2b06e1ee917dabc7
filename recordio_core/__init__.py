"""recordio_core: the engine of recordio-flow. Pure functions and small classes, no Prefect.

Grouped by concern, in the data's order: `format` (framing, the `mxnet.recordio` API, `.idx`,
`.lst`, the manifest), `storage` (fsspec I/O: atomic writes, fetches, uploads, block reads),
`images` (decode, resize, encode), `building` (list, split, plan, pack, validate, combine,
quality) and `reading` (the `ImageRecordIter`-style reader, shuffles, the PyTorch adapter).

`recordio_core.recordio` mirrors `mxnet.recordio` (same names and results); it and the other
paths the README documents (`recordio_core.reader`, `.torch_dataset`, `.manifest`) are the
modules of their new homes.
"""

from recordio_core.format.recordio import (
    IRHeader,
    MXIndexedRecordIO,
    MXRecordIO,
    pack,
    pack_img,
    unpack,
    unpack_img,
)

__version__ = "0.1.0"

__all__ = [
    "IRHeader",
    "MXIndexedRecordIO",
    "MXRecordIO",
    "__version__",
    "pack",
    "pack_img",
    "unpack",
    "unpack_img",
]
