"""recordio_core: the engine of recordio-flow. Pure functions and small classes, no Prefect.

`recordio_core.recordio` mirrors `mxnet.recordio` (same names and results).
"""

from recordio_core.recordio import (
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
