"""What `pack_shard` takes and gives: `PackOptions` (how to pack), `Reject` (an image left out
of a shard, and why) and `ShardResult` (what a shard's packing wrote, with the data-quality
facts of every entry)."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from typing import Any, Literal

from recordio_core.images.image import ImageOptions
from recordio_core.storage.fetch import DEFAULT_IO_BUDGET, DEFAULT_IO_CONCURRENCY

ProgressCallback = Callable[[int], Any]
DECODE_WARNING_POLICIES = ("keep", "reject")


@dataclass(frozen=True)
class PackOptions:
    """How to pack: the image transform, labels and parallelism.

    - `label_width`: label columns each entry is expected to have (im2rec.cc's option; the
      `.lst` reader enforces it, `validate_shard` checks it).
    - `pack_label`: store all of an entry's labels after the header (flag = their count),
      exactly as im2rec.py does when a line has more than one label; otherwise the header
      holds the first label.
    - `header_label`: with `pack_label`, what the header's own `label` field holds: "zero"
      as im2rec.py (and `mxnet.recordio.pack`) writes it, or "first" (the first label) as
      im2rec.cc writes it. Readers use the labels after the header either way.
    - `num_workers`: threads decoding/encoding inside the shard (>= 1); output order and
      bytes do not depend on it.
    - `io_concurrency`: requests in flight when the images come from an object store (1-1024;
      `recordio_core.storage.fetch`); `io_budget`: bytes of fetched images held at once (>= 1; one
      image always fits). Neither changes the output bytes; local sources ignore both.
    - `on_decode_warning`: what to do with a JPEG that decodes only with libjpeg warnings
      (corrupt but decodable): "keep" packs it (and lists it in the result's `warnings`),
      "reject" also makes it a reject.
    - `near_duplicates`: also compute the difference hash of each image as packed (`dhashes`,
      `recordio_core.images.dhash`); it changes no byte of the output.
    """

    image: ImageOptions = field(default_factory=ImageOptions)
    label_width: int = 1
    pack_label: bool = False
    num_workers: int = 1
    header_label: Literal["zero", "first"] = "zero"
    io_concurrency: int = DEFAULT_IO_CONCURRENCY
    io_budget: int = DEFAULT_IO_BUDGET
    on_decode_warning: Literal["keep", "reject"] = "keep"
    near_duplicates: bool = False

    def __post_init__(self) -> None:
        if not isinstance(self.image, ImageOptions):
            raise ValueError(f"image must be an ImageOptions, got {type(self.image).__name__}")
        if isinstance(self.label_width, bool) or not isinstance(self.label_width, int):
            raise ValueError(f"label_width must be an int >= 1, got {self.label_width!r}")
        if self.label_width < 1:
            raise ValueError(f"label_width must be >= 1, got {self.label_width}")
        if not isinstance(self.pack_label, bool):
            raise ValueError(f"pack_label must be True or False, got {self.pack_label!r}")
        if isinstance(self.num_workers, bool) or not isinstance(self.num_workers, int):
            raise ValueError(f"num_workers must be an int >= 1, got {self.num_workers!r}")
        if not 1 <= self.num_workers <= 256:
            raise ValueError(f"num_workers must be between 1 and 256, got {self.num_workers}")
        if isinstance(self.io_concurrency, bool) or not isinstance(self.io_concurrency, int):
            raise ValueError(f"io_concurrency must be an int >= 1, got {self.io_concurrency!r}")
        if not 1 <= self.io_concurrency <= 1024:
            raise ValueError(
                f"io_concurrency must be between 1 and 1024, got {self.io_concurrency}"
            )
        if isinstance(self.io_budget, bool) or not isinstance(self.io_budget, int):
            raise ValueError(f"io_budget must be an int (bytes) >= 1, got {self.io_budget!r}")
        if self.io_budget < 1:
            raise ValueError(f"io_budget must be >= 1 byte, got {self.io_budget}")
        if self.header_label not in ("zero", "first"):
            raise ValueError(
                f"header_label must be 'zero' (im2rec.py) or 'first' (im2rec.cc), "
                f"got {self.header_label!r}"
            )
        if self.on_decode_warning not in DECODE_WARNING_POLICIES:
            raise ValueError(
                "on_decode_warning must be 'keep' (pack and flag) or 'reject', "
                f"got {self.on_decode_warning!r}"
            )
        if not isinstance(self.near_duplicates, bool):
            raise ValueError(f"near_duplicates must be True or False, got {self.near_duplicates!r}")


@dataclass(frozen=True)
class Reject:
    """An image left out of the shard, and why."""

    index: int
    path: str
    reason: str


@dataclass(frozen=True)
class ShardResult:
    """What `pack_shard` wrote. URLs are as given; `bytes` and `sha256` are the `.rec`'s.

    `lst` and `lst_sha256` are empty when the `.lst` was not written (`write_lst=False`).

    Per entry, in entry order (packed and rejected alike): `digests` holds the 32-byte sha256
    of each source file's bytes (32 zero bytes when it could not be read) and `dhashes` the
    difference hash of each image as packed (`NO_DHASH` when not computed). `warnings` lists
    the JPEGs that decoded only with libjpeg warnings (reason: libjpeg's message), packed or
    rejected.
    """

    rec: str
    idx: str
    lst: str
    records: int
    bytes: int
    sha256: str
    idx_sha256: str
    lst_sha256: str
    rejects: tuple[Reject, ...] = ()
    warnings: tuple[Reject, ...] = ()
    digests: bytes = b""
    dhashes: tuple[int, ...] = ()

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready: rejects and warnings become lists of dicts, digests hex strings."""
        out = asdict(self)
        out["rejects"] = [asdict(r) for r in self.rejects]
        out["warnings"] = [asdict(r) for r in self.warnings]
        out["digests"] = [self.digests[i : i + 32].hex() for i in range(0, len(self.digests), 32)]
        out["dhashes"] = list(self.dhashes)
        return out
