"""Importing Prefect without the garbage collector's help.

Prefect's imports (pydantic models, SQLAlchemy tables, the server app) make hundreds of
thousands of objects, none of them garbage. Each full collection afterwards walks all of them
again: in a `recflow build` of 100,000 small files that was ~0.8 s of the flow process's
GIL in nine collections, on a process that the GIL already bounds. `frozen_imports` pauses
the collector while they import, collects once, and freezes the survivors out of every later
collection (`gc.freeze`): 0.3 s of collections in the same build. Objects made later are
collected as usual.
"""

from __future__ import annotations

import contextlib
import gc
from collections.abc import Iterator


@contextlib.contextmanager
def frozen_imports() -> Iterator[None]:
    """Import (or build) long-lived things inside: no collections meanwhile, then the
    survivors are frozen. The collector is left as it was found (enabled or not)."""
    enabled = gc.isenabled()
    gc.disable()
    try:
        yield
    finally:
        gc.collect()
        gc.freeze()
        if enabled:
            gc.enable()
