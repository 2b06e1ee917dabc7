"""`ReaderOptions`: `ImageRecordReader`'s options (MXNet's names and defaults unless noted),
checked when made, and the `AugmentSpec` they give the image pipeline."""

from __future__ import annotations

import math
import os
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Literal

from recordio_core.format.errors import check_int
from recordio_core.images.augment import INTER_METHODS, AugmentSpec, DType
from recordio_core.reading.partition import CountStyle, check_part

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
            check_int(name, getattr(self, name), 1)
        check_int("shuffle_chunk_size", self.shuffle_chunk_size, 1)
        check_int("seed", self.seed, 0)
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
        check_int("shuffle_buffer", self.shuffle_buffer, 1)
        check_int("block_bytes", self.block_bytes, 1)
        check_int("prefetch_blocks", self.prefetch_blocks, 1)
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
            check_int("cache_limit_bytes", self.cache_limit_bytes, 1)
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
