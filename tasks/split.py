"""Task: cut the entries into train/val/test lists (`stable` hash split or im2rec's), in the
order their shards will hold them."""

from __future__ import annotations

from typing import Literal

from prefect import task
from prefect.cache_policies import NO_CACHE

from recordio_core.building.split import Order, SplitList, im2rec_split, stable_split
from recordio_flow.tasks.common import RETRY_OPTIONS, Carry, run_logger


@task(name="split-entries", cache_policy=NO_CACHE, **RETRY_OPTIONS)
def split_entries(
    entries: Carry,
    *,
    method: Literal["stable", "im2rec"] = "stable",
    train_ratio: float = 1.0,
    test_ratio: float = 0.0,
    shuffle: bool = True,
    seed: int = 100,
    chunks: int = 1,
    salt: str = "",
    order: Order = "hash",
) -> Carry:
    """`entries` (a carried sequence of `LstEntry`) cut into lists: a carried `list[SplitList]`.
    `shuffle`, `chunks` are im2rec's; `salt`, `order` the stable method's; `seed` is the
    im2rec shuffle's seed or the stable method's `order="hash"` seed."""
    entries = entries.value
    if method == "im2rec":
        lists = im2rec_split(
            entries,
            chunks=chunks,
            train_ratio=train_ratio,
            test_ratio=test_ratio,
            shuffle=shuffle,
            seed=seed,
        )
    elif method == "stable":
        lists = stable_split(
            entries,
            train_ratio=train_ratio,
            test_ratio=test_ratio,
            salt=salt,
            order=order,
            seed=seed,
        )
    else:
        raise ValueError(f"split method must be 'stable' or 'im2rec', got {method!r}")
    run_logger().info(
        "split %d entries: %s",
        len(entries),
        ", ".join(f"{split_key(s)}={len(s.entries)}" for s in lists),
    )
    return Carry(lists)


def split_key(split: SplitList) -> str:
    """The split's name in the dataset: `all`, `train`, `val`, `test`, or `3_train` per chunk."""
    return split.split if split.chunk is None else f"{split.chunk}_{split.split}"
