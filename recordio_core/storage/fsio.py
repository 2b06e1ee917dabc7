"""fsspec helpers: one way to open URLs, join them, and write files atomically.

Paths are fsspec URLs (`/local/path`, `file://...`, `s3://bucket/key`, `memory://...`);
`storage_options` are passed to fsspec untouched, but for one key: `CREDENTIALS_KEY` names
where credentials are kept (a Prefect block, say) instead of holding them, and is replaced by
what the resolver registered for it returns, in the process that opens the filesystem.
"""

from __future__ import annotations

import contextlib
import os
import posixpath
import threading
import uuid
from collections.abc import Callable, Iterator, Mapping
from typing import IO, Any

import fsspec
from fsspec.core import url_to_fs

StorageOptions = Mapping[str, Any] | None

# Storage options may name their credentials instead of holding them: `{CREDENTIALS_KEY: ref}`
# is turned into fsspec options by the resolver registered with `register_credentials`, where
# the filesystem is opened (a Dask worker, say), so the credentials themselves never travel in
# parameters or task arguments. This module knows nothing of what a ref is.
CREDENTIALS_KEY = "recflow_credentials"
CredentialsResolver = Callable[[str, str], Mapping[str, Any]]  # (ref, url) -> fsspec options
_credentials_resolver: CredentialsResolver | None = None


def register_credentials(resolver: CredentialsResolver) -> None:
    """Install the function that turns a `CREDENTIALS_KEY` ref into fsspec options."""
    global _credentials_resolver
    _credentials_resolver = resolver


def resolve_options(url: str, storage_options: StorageOptions) -> dict[str, Any]:
    """`storage_options` as fsspec takes them: a `CREDENTIALS_KEY` ref replaced by its options.

    The ref's options are the base; the mapping's own keys win, and its nested dicts
    (`client_kwargs`, `config_kwargs`) are merged into the ref's one level deep.
    """
    options = dict(storage_options or {})
    ref = options.pop(CREDENTIALS_KEY, None)
    if ref is None:
        return options
    if _credentials_resolver is None:
        raise ValueError(
            f"the storage options for {url} name credentials ({ref!r}) but nothing in this "
            "process can load them: import the pipeline's tasks (recordio_flow.tasks)"
        )
    merged = dict(_credentials_resolver(str(ref), url))
    for key, value in options.items():
        base = merged.get(key)
        if isinstance(base, Mapping) and isinstance(value, Mapping):
            merged[key] = {**base, **value}
        else:
            merged[key] = value
    return merged


def get_fs(
    url: str, storage_options: StorageOptions = None
) -> tuple[fsspec.AbstractFileSystem, str]:
    """Return `(filesystem, path)` for a URL; `path` is what the filesystem's methods take."""
    return url_to_fs(url, **resolve_options(url, storage_options))


def is_local(fs: fsspec.AbstractFileSystem) -> bool:
    protocol = fs.protocol if isinstance(fs.protocol, str) else fs.protocol[0]
    return protocol in ("file", "local")


def join_url(base: str, *parts: str) -> str:
    """Join URL parts with `/` (also for local paths); `base` keeps its scheme.

    Parts are relative: leading slashes (and backslashes, turned into slashes) never reset the
    path to the root, and empty parts are skipped: `join_url("s3://b/", "/x", "y.rec")` is
    `s3://b/x/y.rec`, `join_url("memory://", "d")` is `memory://d`.
    """
    out = base
    for part in parts:
        part = part.replace("\\", "/").lstrip("/")
        if not part:
            continue
        if not out or out.endswith("/"):
            out += part
        else:
            out += "/" + part
    return out


def _split_scheme(url: str) -> tuple[str, str]:
    scheme, sep, rest = url.partition("://")
    return (scheme + sep, rest) if sep else ("", url)


def url_basename(url: str) -> str:
    """The last path component (`s3://b/k/x.rec` -> `x.rec`; trailing slashes ignored)."""
    return posixpath.basename(_split_scheme(url)[1].rstrip("/"))


def url_dirname(url: str) -> str:
    """The URL of the parent folder, keeping the scheme (`s3://b/k/x.rec` -> `s3://b/k`,
    `/x.rec` -> `/`, `x.rec` -> ``, `s3://b` -> `s3://`)."""
    prefix, rest = _split_scheme(url)
    stripped = rest.rstrip("/")
    if not stripped:
        return prefix + ("/" if rest.startswith("/") else "")
    head, slash, _ = stripped.rpartition("/")
    if not slash:
        return prefix
    return prefix + (head.rstrip("/") or "/")


def open_url(
    url: str, mode: str = "rb", storage_options: StorageOptions = None, **kwargs: Any
) -> IO:
    """Open a URL with fsspec (the returned object is a context manager)."""
    fs, path = get_fs(url, storage_options)
    return fs.open(path, mode, **kwargs)


def read_bytes(url: str, storage_options: StorageOptions = None) -> bytes:
    fs, path = get_fs(url, storage_options)
    return fs.cat_file(path)


def read_text(url: str, storage_options: StorageOptions = None, encoding: str = "utf-8") -> str:
    return read_bytes(url, storage_options).decode(encoding)


def exists(url: str, storage_options: StorageOptions = None) -> bool:
    fs, path = get_fs(url, storage_options)
    return fs.exists(path)


class _EarlyWriteback:
    """A local file whose written data goes to disk while writing continues.

    `atomic_write` syncs a file before renaming it (so a crash never leaves a complete-looking
    name over missing data). Left to the kernel, a big shard's data would all reach the disk
    during that final fsync, with nothing else to do meanwhile (0.2 s for 160 MB here). Every
    `STEP` bytes a helper thread syncs what is written so far, overlapping the disk with the
    work that produces the next bytes; the final fsync then finds little left. Small files
    never start the thread. Everything else is the file's own.
    """

    STEP = 32 << 20

    def __init__(self, f: IO[Any]) -> None:
        self._f = f
        self._pending = 0
        self._thread: threading.Thread | None = None
        self._wake = threading.Event()
        self._done = False
        self._error: OSError | None = None

    def __getattr__(self, name: str) -> Any:
        return getattr(self._f, name)

    def __enter__(self) -> _EarlyWriteback:
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop()

    def write(self, data: Any) -> int:
        n = self._f.write(data)
        self._pending += len(data)
        if self._pending >= self.STEP:
            self._pending = 0
            self._f.flush()
            if self._thread is None:
                self._thread = threading.Thread(
                    target=self._sync_loop, name="recflow-writeback", daemon=True
                )
                self._thread.start()
            self._wake.set()
        return n

    def _sync_loop(self) -> None:
        fd = self._f.fileno()
        while True:
            self._wake.wait()
            self._wake.clear()
            if self._done:
                return
            try:
                os.fdatasync(fd)
            except OSError as exc:  # reported by finish(); the final fsync fails the same way
                self._error = exc
                return

    def _stop(self) -> None:
        if self._thread is not None:
            self._done = True
            self._wake.set()
            self._thread.join()
            self._thread = None

    def finish(self) -> None:
        """Stop the helper and flush; the caller then fsyncs."""
        self._stop()
        self._f.flush()
        if self._error is not None:
            raise self._error


@contextlib.contextmanager
def atomic_write(
    url: str, storage_options: StorageOptions = None, mode: str = "wb"
) -> Iterator[IO]:
    """Write `url` so that it exists only once complete.

    Local files are written to a hidden temporary name in the same folder and renamed with
    `os.replace`. Object stores (S3) make an object visible only when its upload completes, so
    the final key is written directly; on an exception the upload is discarded. On S3 in binary
    mode the parts upload concurrently while writing goes on (`recordio_core.storage.upload`), and a
    failure aborts the multipart upload. Other filesystems write a temporary name and move it.
    """
    fs, path = get_fs(url, storage_options)
    protocols = {fs.protocol} if isinstance(fs.protocol, str) else set(fs.protocol)
    if is_local(fs):
        writing = _write_local(path, mode)
    elif {"s3", "s3a"} & protocols and "b" in mode and hasattr(fs, "_call_s3"):
        writing = _write_s3_parts(fs, path)
    elif {"s3", "s3a", "gs", "gcs", "az", "abfs"} & protocols:
        writing = _write_object(fs, path, mode)
    else:
        writing = _write_and_move(fs, path, mode)
    with writing as f:
        yield f


@contextlib.contextmanager
def _write_local(path: str, mode: str) -> Iterator[IO]:
    """A hidden temporary file in the same folder, flushed, synced and renamed over `path`."""
    directory, name = os.path.split(path)
    os.makedirs(directory or ".", exist_ok=True)
    tmp = os.path.join(directory, f".{name}.tmp-{uuid.uuid4().hex[:12]}")
    try:
        with open(tmp, mode) as raw, _EarlyWriteback(raw) as f:
            yield f  # type: ignore[misc]
            f.finish()
            os.fsync(raw.fileno())
        os.replace(tmp, path)
    except BaseException:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(tmp)
        raise


@contextlib.contextmanager
def _write_s3_parts(fs: fsspec.AbstractFileSystem, path: str) -> Iterator[IO]:
    """A multipart upload whose parts go while writing goes on; aborted on an exception."""
    from recordio_core.storage.upload import S3PartWriter

    writer = S3PartWriter(fs, path)
    try:
        yield writer  # type: ignore[misc]
    except BaseException:
        writer.abort()
        raise
    writer.commit()


@contextlib.contextmanager
def _write_object(fs: fsspec.AbstractFileSystem, path: str, mode: str) -> Iterator[IO]:
    """The store's own file object: the object appears at close, is discarded on an error."""
    f = fs.open(path, mode)
    try:
        yield f
    except BaseException:
        discard = getattr(f, "discard", None)
        if discard is not None:
            discard()
        # s3fs's discard() leaves the file "open"; closing it later would try to upload
        with contextlib.suppress(Exception):
            f.closed = True
        raise
    f.close()


@contextlib.contextmanager
def _write_and_move(fs: fsspec.AbstractFileSystem, path: str, mode: str) -> Iterator[IO]:
    """Any other filesystem: a temporary name beside `path`, moved over it when complete."""
    parent = posixpath.dirname(path)
    if parent:
        fs.makedirs(parent, exist_ok=True)  # as the local branch does; a no-op on flat stores
    tmp = posixpath.join(parent, f".{posixpath.basename(path)}.tmp-{uuid.uuid4().hex[:12]}")
    try:
        with fs.open(tmp, mode) as f:
            yield f
        fs.mv(tmp, path)
    except BaseException:
        with contextlib.suppress(Exception):
            fs.rm(tmp)
        raise


def write_bytes_atomic(url: str, data: bytes, storage_options: StorageOptions = None) -> None:
    with atomic_write(url, storage_options) as f:
        f.write(data)
