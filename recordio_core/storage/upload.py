"""Writing an S3 object with its multipart upload's parts in flight while writing goes on.

s3fs's `fs.open(path, "wb")` uploads each part inside `write()`, one at a time, and a file
under its block size (50 MiB) as one PutObject at `close()`: at 20-60 ms per request, the
packing loop that writes a shard waits on the network. `S3PartWriter` buffers writes into
parts of `part_size` bytes (>= 5 MiB, S3's minimum for all parts but the last) and submits each
part's UploadPart as a coroutine on the filesystem's own loop, so writing goes on while up to
`max_in_flight` parts upload (the oldest is waited for beyond that: memory stays within about
`(max_in_flight + 1) * part_size`). The multipart upload itself is created by the first part's
coroutine, not in `write()`.

Nothing is visible until `commit()`: it uploads the rest, waits for every part and sends
CompleteMultipartUpload (an object smaller than one part goes as a single PutObject instead,
as s3fs does). `abort()` cancels the parts in flight and sends AbortMultipartUpload, so an
abandoned upload leaves neither an object nor stored parts behind. `recordio_core.storage.fsio.
atomic_write` uses it for S3 in binary mode.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import contextlib
from collections import deque
from typing import Any

MIN_PART = 5 << 20  # S3's minimum part size (all parts but the last)
DEFAULT_PART_SIZE = 8 << 20
DEFAULT_PARTS_IN_FLIGHT = 8
MAX_PARTS = 10_000  # S3's limit per upload


class S3PartWriter:
    """A binary file-like object (`write`, `tell`, `flush`) that uploads `path` on `fs` (an
    `s3fs.S3FileSystem` with a sync API) in concurrent parts; `commit()` or `abort()` ends it.

    `max_in_flight` should not exceed the instance's connection pool (botocore's
    `max_pool_connections`, 10 unless raised): parts beyond it queue inside aiohttp.
    """

    def __init__(
        self,
        fs: Any,
        path: str,
        *,
        part_size: int = DEFAULT_PART_SIZE,
        max_in_flight: int = DEFAULT_PARTS_IN_FLIGHT,
    ) -> None:
        if part_size < MIN_PART:
            raise ValueError(f"part_size must be >= {MIN_PART} bytes (S3), got {part_size}")
        if max_in_flight < 1:
            raise ValueError(f"max_in_flight must be >= 1, got {max_in_flight}")
        self.fs = fs
        self.path = path
        self.bucket, self.key, _ = fs.split_path(path)
        self.part_size = part_size
        self.max_in_flight = max_in_flight
        self._loop = fs.loop
        self._buffer = bytearray()
        self._size = 0
        self._create: concurrent.futures.Future | None = None
        self._parts: deque[concurrent.futures.Future] = deque()
        self._etags: list[dict[str, Any]] = []
        self._number = 0
        self.closed = False
        self.max_parts_in_flight = 0  # for tests: the most parts uploading at once

    # --- file-like ------------------------------------------------------------------------
    def write(self, data: Any) -> int:
        if self.closed:
            raise ValueError(f"write to a closed upload of {self.path}")
        n = len(data)
        self._buffer += data
        self._size += n
        while len(self._buffer) >= self.part_size:
            with memoryview(self._buffer) as view:
                part = bytes(view[: self.part_size])  # one copy, not a slice and then a copy
            del self._buffer[: self.part_size]
            self._submit(part)
        return n

    def tell(self) -> int:
        return self._size

    def flush(self) -> None:
        """Parts go out as they fill; nothing to force (S3 parts cannot be smaller)."""

    def writable(self) -> bool:
        return True

    # --- parts ------------------------------------------------------------------------------
    def _run(self, coro: Any) -> concurrent.futures.Future:
        return asyncio.run_coroutine_threadsafe(coro, self._loop)

    async def _create_upload(self) -> str:
        resp = await self.fs._call_s3("create_multipart_upload", Bucket=self.bucket, Key=self.key)
        return resp["UploadId"]

    async def _upload_part(self, number: int, data: bytes) -> dict[str, Any]:
        assert self._create is not None
        # shielded: cancelling this part (abort) must not cancel the shared creation, whose
        # UploadId the abort needs
        upload_id = await asyncio.shield(asyncio.wrap_future(self._create))
        resp = await self.fs._call_s3(
            "upload_part",
            Bucket=self.bucket,
            Key=self.key,
            UploadId=upload_id,
            PartNumber=number,
            Body=data,
        )
        return {"PartNumber": number, "ETag": resp["ETag"]}

    def _submit(self, data: bytes) -> None:
        if self._number >= MAX_PARTS:
            raise ValueError(
                f"{self.path}: more than {MAX_PARTS} parts of {self.part_size} bytes; "
                "use a larger part_size"
            )
        if self._create is None:
            self._create = self._run(self._create_upload())
        while len(self._parts) >= self.max_in_flight:  # back-pressure: wait for the oldest
            self._etags.append(self._parts.popleft().result())
        self._number += 1
        self._parts.append(self._run(self._upload_part(self._number, data)))
        running = sum(not f.done() for f in self._parts)
        self.max_parts_in_flight = max(self.max_parts_in_flight, running)

    # --- ending -----------------------------------------------------------------------------
    def commit(self) -> None:
        """Make the object visible with everything written (one PutObject when small)."""
        if self.closed:
            raise ValueError(f"the upload of {self.path} is already closed")
        try:
            if self._create is None:
                self.fs.call_s3(
                    "put_object", Bucket=self.bucket, Key=self.key, Body=bytes(self._buffer)
                )
            else:
                if self._buffer:
                    self._submit(bytes(self._buffer))
                while self._parts:
                    self._etags.append(self._parts.popleft().result())
                self.fs.call_s3(
                    "complete_multipart_upload",
                    Bucket=self.bucket,
                    Key=self.key,
                    UploadId=self._create.result(),
                    MultipartUpload={"Parts": sorted(self._etags, key=lambda p: p["PartNumber"])},
                )
        except BaseException:
            self.abort()
            raise
        self._buffer = bytearray()
        self.closed = True
        self.fs.invalidate_cache(self.path)

    def abort(self) -> None:
        """Drop everything: cancel parts in flight and abort the multipart upload (best effort;
        never raises, as it runs while another error is on its way up)."""
        if self.closed:
            return
        self.closed = True
        self._buffer = bytearray()
        for fut in self._parts:
            fut.cancel()
        for fut in self._parts:  # let cancelled parts settle before the abort
            with contextlib.suppress(BaseException):
                fut.result(timeout=30)
        self._parts.clear()
        if self._create is None:
            return
        with contextlib.suppress(BaseException):
            upload_id = self._create.result(timeout=30)
            self.fs.call_s3(
                "abort_multipart_upload", Bucket=self.bucket, Key=self.key, UploadId=upload_id
            )
