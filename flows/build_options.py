"""What the build flow derives from its parameters: the pack options, which of them change a
shard's bytes (the content key's parameters), and how many workers each shard task gets."""

from __future__ import annotations

import os
from typing import Any

from recordio_core.building.pack import PackOptions
from recordio_core.images.image import ImageOptions
from recordio_flow.flows.params import BuildParameters

SHARD_CONCURRENCY = max(2, os.cpu_count() or 1)  # shard tasks at once on the thread pool


def workers_per_shard(p: BuildParameters, shards: int) -> int:
    """Threads inside each shard task: as asked, or share the CPUs among concurrent shards."""
    if p.num_workers:
        return p.num_workers
    cpus = os.cpu_count() or 1
    return max(1, cpus // max(1, min(cpus, shards)))


def pack_options(p: BuildParameters, num_workers: int = 1) -> PackOptions:
    image = ImageOptions(
        resize=p.resize,
        center_crop=p.center_crop,
        color=p.color,
        encoding=p.encoding,
        quality=p.quality,
        pass_through=p.pass_through,
        inter_method=p.inter_method,
        verify=p.verify,
        max_pixels=p.max_pixels,
        reducing_gap=p.reducing_gap,
    )
    return PackOptions(
        image=image,
        label_width=p.label_width,
        pack_label=p.packs_labels,
        num_workers=num_workers,
        io_concurrency=p.io_concurrency,
        on_decode_warning=p.on_decode_warning,
        near_duplicates=p.near_duplicate_distance is not None,
    )


# Pack options that change no byte of a shard: always (worker counts, I/O concurrency,
# near-duplicate hashing only reports) or at today's value (`on_decode_warning="keep"`). They
# stay out of the content key then, so adding them moved no existing shard's key.
_NO_BYTES = {"num_workers", "io_concurrency", "io_budget", "near_duplicates"}
_NO_BYTES_AT = {"on_decode_warning": "keep"}


def key_parameters(opts: PackOptions) -> dict[str, Any]:
    """Everything in the pack options that can change bytes: all of it but worker counts, I/O
    concurrency, near-duplicate hashing and `on_decode_warning="keep"`."""
    image = {f"image.{k}": v for k, v in vars(opts.image).items()}
    rest = {
        k: v
        for k, v in vars(opts).items()
        if k != "image" and k not in _NO_BYTES and _NO_BYTES_AT.get(k, object()) != v
    }
    return {**image, **rest}


def total_workers(opts: PackOptions, shards: int) -> int:
    """Images transformed at once: workers per shard times shards packed at once."""
    return opts.num_workers * max(1, min(shards, SHARD_CONCURRENCY))
