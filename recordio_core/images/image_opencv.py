"""OpenCV, when installed and wanted: `RECFLOW_OPENCV` and the cached module.

Every caller looks `_opencv` up on this module (`image_opencv._opencv()`), never imports it by
name, so one patch here (tests, benchmarks) switches OpenCV off or wraps it everywhere.
"""

from __future__ import annotations

import functools
import os
from typing import Any


def opencv_wanted() -> bool:
    """`RECFLOW_OPENCV`: "1" (the default) resizes with OpenCV when it is installed, "0" with
    Pillow only. Anything else is a ValueError (checked when ImageOptions are made)."""
    raw = os.environ.get("RECFLOW_OPENCV", "1")
    if raw not in ("0", "1"):
        raise ValueError(
            "RECFLOW_OPENCV must be 1 (resize with OpenCV when installed, the default) or 0 "
            f"(Pillow only), got {raw!r}"
        )
    return raw == "1"


@functools.cache
def _opencv() -> Any:
    """OpenCV's module when it is installed (the `opencv` extra), else None.

    Its INTER_LINEAR *is* MXNet's resize (im2rec.py calls `cv2.resize`), SIMD-fast: about a
    fifth of the gather-and-blend form's time. It runs single-threaded here, because packing
    already keeps every core busy with one image per worker. Set `RECFLOW_OPENCV=0` to use
    Pillow only.
    """
    if not opencv_wanted():
        return None
    try:
        import cv2

        cv2.setNumThreads(1)
    except Exception:  # absent, or a build that cannot load here: Pillow does the work
        return None
    return cv2
