"""Many shards as one: a combined `.idx` for DALI, and merging shards into one `.rec` + `.idx`.

NVIDIA DALI's `readers.mxnet(path=[a.rec, b.rec, ...], index_path=[combined.idx])` takes many
`.rec` files but exactly one index whose offsets count through the files' concatenation in the
order given. `combined_index` computes it from each shard's own `.idx` (or by scanning a shard
that has none); `write_combined_index` writes it atomically.

`merge_shards` concatenates the shards into one `.rec` (records are self-delimiting and every
shard ends on a 4-byte boundary, so this is a byte copy) and writes the shifted `.idx` (and the
concatenated `.lst` when every shard has one). On S3 the `.rec` is assembled by a multipart
upload whose parts are copied server-side (`UploadPartCopy`); only pieces too small for an S3
part (5 MiB, except the last) are downloaded and re-uploaded.
"""

from __future__ import annotations

import contextlib
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any, Literal

from recordio_core.format.errors import RecordIOError
from recordio_core.format.idx import format_idx, write_idx
from recordio_core.reading.partition import shard_bases
from recordio_core.reading.sources import Shard, resolve_shards, shard_offsets
from recordio_core.storage.fsio import (
    StorageOptions,
    atomic_write,
    get_fs,
    read_bytes,
    write_bytes_atomic,
)

KeyPolicy = Literal["keep", "renumber"]
S3_MIN_PART = 5 << 20  # 5 MiB: S3's smallest multipart part (all but the last)
S3_MAX_PART = 5 << 30  # 5 GiB: S3's largest part
COPY_BLOCK = 8 << 20  # 8 MiB per read when copying through this process


@dataclass(frozen=True)
class CombinedIndex:
    """Record keys and offsets through the concatenation of `recs` (in this order)."""

    recs: tuple[str, ...]
    sizes: tuple[int, ...]
    pairs: tuple[tuple[int, int], ...]

    @property
    def total_bytes(self) -> int:
        return sum(self.sizes)

    def locate(self, offset: int) -> tuple[int, int]:
        """`(shard number, offset in that shard)` of a combined offset."""
        bases = shard_bases(self.sizes)
        for i in range(len(self.sizes)):
            if bases[i] <= offset < bases[i + 1]:
                return i, offset - bases[i]
        raise ValueError(f"offset {offset} is outside the {bases[-1]} combined bytes")


@dataclass(frozen=True)
class MergeResult:
    rec: str
    idx: str
    lst: str | None
    records: int
    bytes: int
    copied_server_side: int
    copied_through: int

    def to_dict(self) -> dict[str, Any]:
        return dict(self.__dict__)


def _check_keys(keys: str) -> None:
    if keys not in ("keep", "renumber"):
        raise ValueError(f"keys must be 'keep' or 'renumber', got {keys!r}")


def _shards(source: str | Sequence[str] | Sequence[Shard], **kw: Any) -> list[Shard]:
    if not isinstance(source, str) and source and all(isinstance(s, Shard) for s in source):
        return list(source)  # type: ignore[arg-type]
    return resolve_shards(source, **kw)  # type: ignore[arg-type]


def combined_index(
    source: str | Sequence[str] | Sequence[Shard],
    *,
    keys: KeyPolicy = "keep",
    split: str | None = None,
    storage_options: StorageOptions = None,
) -> CombinedIndex:
    """The combined index of the shards of `source` (as the reader resolves it).

    `keys="keep"` keeps each record's key and raises `ValueError` naming both shards when a key
    repeats (an `MXIndexedRecordIO` would lose records); `keys="renumber"` numbers records
    0, 1, ... in order (DALI ignores keys anyway).
    """
    _check_keys(keys)
    shards = _shards(source, split=split, storage_options=storage_options)
    pairs: list[tuple[int, int]] = []
    sizes: list[int] = []
    owner: dict[int, str] = {}
    base = 0
    for shard in shards:
        fs, path = get_fs(shard.rec, storage_options)
        size = fs.size(path)
        if size % 4:
            raise RecordIOError(
                f"{shard.rec}: {size} bytes is not a multiple of 4; the file is truncated"
            )
        for key, offset in shard_offsets(shard, storage_options):
            if keys == "keep":
                if key in owner:
                    raise ValueError(
                        f"key {key} is in both {owner[key]} and {shard.rec}; use "
                        "keys='renumber' (--keys renumber) to number records 0..n-1"
                    )
                owner[key] = shard.rec
            pairs.append((key if keys == "keep" else len(pairs), base + offset))
        sizes.append(size)
        base += size
    return CombinedIndex(tuple(s.rec for s in shards), tuple(sizes), tuple(pairs))


def write_combined_index(
    source: str | Sequence[str] | Sequence[Shard],
    out_idx: str,
    *,
    keys: KeyPolicy = "keep",
    split: str | None = None,
    storage_options: StorageOptions = None,
) -> CombinedIndex:
    """Compute `combined_index` and write it to `out_idx` atomically."""
    combined = combined_index(source, keys=keys, split=split, storage_options=storage_options)
    write_idx(out_idx, list(combined.pairs), storage_options)
    return combined


def _s3_protocols(fs: Any) -> bool:
    protocols = (fs.protocol,) if isinstance(fs.protocol, str) else tuple(fs.protocol)
    return bool({"s3", "s3a"} & set(protocols))


def _copy_through(recs: Sequence[str], out_rec: str, so: StorageOptions) -> int:
    """Stream the files into `out_rec` (atomic) block by block; returns bytes copied."""
    total = 0
    with atomic_write(out_rec, so) as out:
        for rec in recs:
            fs, path = get_fs(rec, so)
            with fs.open(path, "rb") as f:
                while block := f.read(COPY_BLOCK):
                    out.write(block)
                    total += len(block)
    return total


class _MultipartCopy:
    """One S3 object assembled by a multipart upload from ranges of other objects: copied on
    the server where a range makes a valid part (>= 5 MiB, or the last), else downloaded into
    a buffer that is uploaded once it makes a part."""

    def __init__(self, fs: Any, out_path: str) -> None:
        self.fs = fs
        self.bucket, self.key, _ = fs.split_path(out_path)
        upload = fs.call_s3("create_multipart_upload", Bucket=self.bucket, Key=self.key)
        self.upload_id = upload["UploadId"]
        self.parts: list[dict[str, Any]] = []
        self.buffer = bytearray()
        self.server_side = self.through = 0

    def _call(self, op: str, **kwargs: Any) -> Any:
        return self.fs.call_s3(op, Bucket=self.bucket, Key=self.key, **kwargs)

    def put_buffer(self) -> None:
        number = len(self.parts) + 1
        resp = self._call(
            "upload_part", UploadId=self.upload_id, PartNumber=number, Body=bytes(self.buffer)
        )
        self.parts.append({"PartNumber": number, "ETag": resp["ETag"]})
        self.buffer = bytearray()

    def copy_range(self, src_path: str, lo: int, hi: int) -> None:
        src_bucket, src_key, _ = self.fs.split_path(src_path)
        pieces = -(-(hi - lo) // S3_MAX_PART)  # equal pieces, so none falls under 5 MiB
        step = -(-(hi - lo) // pieces)
        while lo < hi:
            end = min(hi, lo + step)
            number = len(self.parts) + 1
            resp = self._call(
                "upload_part_copy",
                UploadId=self.upload_id,
                PartNumber=number,
                CopySource={"Bucket": src_bucket, "Key": src_key},
                CopySourceRange=f"bytes={lo}-{end - 1}",
            )
            self.parts.append({"PartNumber": number, "ETag": resp["CopyPartResult"]["ETag"]})
            lo = end

    def add(self, src_path: str, size: int, last: bool) -> None:
        """Append the whole of `src_path` (`size` bytes); `last`: no object follows."""
        pos = 0
        if self.buffer:  # top the pending piece up to a valid part size from this file's head
            take = min(size, S3_MIN_PART - len(self.buffer))
            self.buffer += self.fs.cat_file(src_path, start=0, end=take)
            self.through += take
            pos = take
            if len(self.buffer) >= S3_MIN_PART:
                self.put_buffer()
        rest = size - pos
        if rest and (rest >= S3_MIN_PART or (last and not self.buffer)):
            self.copy_range(src_path, pos, size)
            self.server_side += rest
        elif rest:
            self.buffer += self.fs.cat_file(src_path, start=pos, end=size)
            self.through += rest

    def complete(self) -> None:
        if self.buffer or not self.parts:
            self.put_buffer()
        self._call(
            "complete_multipart_upload",
            UploadId=self.upload_id,
            MultipartUpload={"Parts": self.parts},
        )

    def abort(self) -> None:
        with contextlib.suppress(Exception):
            self._call("abort_multipart_upload", UploadId=self.upload_id)


def _copy_s3_multipart(
    recs: Sequence[str], sizes: Sequence[int], out_rec: str, so: StorageOptions
) -> tuple[int, int]:
    """Assemble `out_rec` on S3 from `recs` by multipart upload; returns (server-side bytes,
    bytes downloaded and re-uploaded)."""
    fs, out_path = get_fs(out_rec, so)
    copy = _MultipartCopy(fs, out_path)
    try:
        last = max((i for i, s in enumerate(sizes) if s), default=-1)
        for i, (rec, size) in enumerate(zip(recs, sizes, strict=True)):
            if size:
                copy.add(get_fs(rec, so)[1], size, last=i == last)
        copy.complete()
    except BaseException:
        copy.abort()
        raise
    fs.invalidate_cache(out_path)
    return copy.server_side, copy.through


def merge_shards(
    source: str | Sequence[str] | Sequence[Shard],
    out_prefix: str,
    *,
    keys: KeyPolicy = "keep",
    split: str | None = None,
    storage_options: StorageOptions = None,
) -> MergeResult:
    """Concatenate the shards of `source` into `out_prefix.rec` with `out_prefix.idx` (and
    `out_prefix.lst` when every shard has a `.lst` and keys are kept). The `.rec` is written
    first and the `.idx` last, each atomically, so a complete `.idx` marks a complete merge."""
    shards = _shards(source, split=split, storage_options=storage_options)
    out_rec, out_idx, out_lst = out_prefix + ".rec", out_prefix + ".idx", out_prefix + ".lst"
    if out_rec in {s.rec for s in shards}:
        raise ValueError(f"the output {out_rec} is one of the inputs")
    combined = combined_index(shards, keys=keys, storage_options=storage_options)
    fs, _ = get_fs(out_rec, storage_options)
    same_store = all(_s3_protocols(get_fs(r, storage_options)[0]) for r in combined.recs)
    if _s3_protocols(fs) and same_store:
        server_side, through = _copy_s3_multipart(
            combined.recs, combined.sizes, out_rec, storage_options
        )
    else:
        server_side, through = 0, _copy_through(combined.recs, out_rec, storage_options)
    written_lst: str | None = None
    if keys == "keep" and shards and all(s.lst for s in shards):
        texts = [read_bytes(s.lst or "", storage_options) for s in shards]
        body = b"".join(t if not t or t.endswith(b"\n") else t + b"\n" for t in texts)
        write_bytes_atomic(out_lst, body, storage_options)
        written_lst = out_lst
    write_bytes_atomic(out_idx, format_idx(combined.pairs).encode("ascii"), storage_options)
    return MergeResult(
        rec=out_rec,
        idx=out_idx,
        lst=written_lst,
        records=len(combined.pairs),
        bytes=combined.total_bytes,
        copied_server_side=server_side,
        copied_through=through,
    )
