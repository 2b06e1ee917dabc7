"""The reliability suite's catalogue of awkward input files, and fsspec wrappers that inject
faults no ordinary file can (tests run as root, where `chmod 000` does not stop a read).

    from badfiles import CASES, write_catalogue, accounted   # tests/ is on sys.path

- `CASES`: every bad or awkward image the pipeline must survive, each with what must become
  of it: `keep` (it decodes: packed), `reject` (a recorded reject whose reason contains
  `reason`), or `either` (bytes a decoder may or may not recover from; it must still be one
  or the other, never lost).
- `write_catalogue(root, folder)`: write them under `root/folder`; returns `{rel: Case}`.
- `denied://` (`DeniedFileSystem`): the local filesystem, except that opening a file whose
  name contains `DENIED_MARK` raises `PermissionError`, as reading a `chmod 000` file does for
  an ordinary user.
- `failread://` (`FailingReadFileSystem`): reading a file whose name contains one of
  `FailingReadFileSystem.failing` raises `ConnectionResetError`, for as long as it is listed.
- `sleepy://` (`SleepyFileSystem`): the local filesystem, reading each file after sleeping
  `$RECFLOW_TEST_SLEEPY_READ` seconds (0 by default), so a subprocess can be killed
  mid-shard.
- `accounted(listed, packed, rejected)`: the count check every test makes: each listed path
  is packed or rejected, exactly once.
"""

from __future__ import annotations

import os
import time
from collections import Counter
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import imagecases as ic
import numpy as np
from fsspec.implementations.local import LocalFileSystem
from fsspec.registry import register_implementation

DENIED_MARK = "denied"
SLOW_ENV = "RECFLOW_TEST_SLEEPY_READ"


@dataclass(frozen=True)
class Case:
    """One catalogue file: its name, how to make its bytes, and what must become of it."""

    name: str
    make: Callable[[], bytes]
    expect: str  # "keep", "reject" or "either"
    reason: str = ""  # for rejects: a word the reason must contain (case-insensitive)


def _scrambled_body() -> bytes:
    """A JPEG whose headers are intact but whose entropy-coded data has random bytes."""
    data = bytearray(ic.rgb_jpeg(200, 150))
    rng = np.random.default_rng(1)
    for i in rng.integers(len(data) // 3, len(data) - 10, 40):
        data[i] = int(rng.integers(0, 256))
    return bytes(data)


def _gif() -> bytes:
    from PIL import Image

    return ic.encode(Image.fromarray(ic.photo(40, 30)).convert("P"), "GIF")


CASES: tuple[Case, ...] = (
    # decodable, in every awkward form: kept
    Case("png_named.jpg", ic.rgb_png, "keep"),
    Case("gif_named.jpg", _gif, "keep"),
    Case("cmyk.jpg", ic.cmyk_jpeg, "keep"),
    Case("ycck.jpg", ic.ycck_jpeg, "keep"),
    Case("gray.jpg", ic.gray_jpeg, "keep"),
    Case("gray16.png", ic.gray16_png, "keep"),
    Case("rgb16.png", ic.rgb16_png, "keep"),
    Case("palette.png", ic.palette_png, "keep"),
    Case("palette_alpha.png", lambda: ic.palette_png(transparency=True), "keep"),
    Case("rgba.png", ic.rgba_png, "keep"),
    Case("gray_alpha.png", ic.la_png, "keep"),
    Case("one_pixel.jpg", lambda: ic.solid_jpeg(1, 1), "keep"),
    Case("wide_4000x20.png", lambda: ic.noise_png(4000, 20), "keep"),
    Case("tall_20x4000.png", lambda: ic.noise_png(20, 4000, seed=1), "keep"),
    Case("exif_rot6.jpg", lambda: ic.exif_jpeg(6), "keep"),
    Case("exif_rot8.jpg", lambda: ic.exif_jpeg(8, w=30, h=50), "keep"),
    Case("exif_orientation_99.jpg", lambda: ic.exif_jpeg(99), "keep"),
    # not usable: recorded rejects
    Case("zero_byte.jpg", lambda: b"", "reject", "empty"),
    Case("truncated.jpg", lambda: ic.truncated(ic.rgb_jpeg(200, 150)), "reject", "truncated"),
    Case("truncated.png", lambda: ic.truncated(ic.rgb_png(200, 150)), "reject", "truncated"),
    Case("cut_after_header.jpg", lambda: ic.rgb_jpeg()[:20], "reject", "image"),
    Case(
        "scrambled.jpg",
        lambda: bytes(np.random.default_rng(3).integers(0, 256, 4096, np.uint8)),
        "reject",
        "not a recognised image",
    ),
    Case("text.jpg", lambda: b"hello, this is not an image\n" * 10, "reject", "text"),
    Case("html.jpg", lambda: b"<!DOCTYPE html><html><body>404</body></html>", "reject", "HTML"),
    Case("json.png", lambda: b'{"error": "AccessDenied"}', "reject", "JSON"),
    Case("header_garbage.jpg", lambda: ic.rgb_jpeg()[:20] + b"\0" * 300, "reject", "corrupt"),
    Case("bomb_20000x20000.png", lambda: ic.png_header_only(20000, 20000), "reject", "bomb"),
    Case("over_limit_10000x10000.png", lambda: ic.png_header_only(10000, 10000), "reject", "limit"),
    # a decoder may recover some pixels: either outcome, but one of them
    Case("scrambled_body.jpg", _scrambled_body, "either"),
)

KEEP = {c.name for c in CASES if c.expect == "keep"}
REJECT = {c.name for c in CASES if c.expect == "reject"}


def write_catalogue(root: Path, folder: str = "bad") -> dict[str, Case]:
    """Write every case under `root/folder`; return `{relative path: case}`."""
    out: dict[str, Case] = {}
    (root / folder).mkdir(parents=True, exist_ok=True)
    for case in CASES:
        rel = f"{folder}/{case.name}"
        (root / rel).write_bytes(case.make())
        out[rel] = case
    return out


def check_outcomes(
    cases: dict[str, Case], packed: Iterable[str], rejects: dict[str, str]
) -> list[str]:
    """What went wrong with the catalogue's outcomes (empty when everything is as expected).

    `packed`: relative paths that became records; `rejects`: relative path -> reason."""
    packed = set(packed)
    wrong = []
    for rel, case in cases.items():
        if case.expect == "keep" and rel not in packed:
            wrong.append(f"{rel} should be kept, got reject {rejects.get(rel)!r}")
        if case.expect == "reject":
            if rel not in rejects:
                wrong.append(f"{rel} should be a reject, but it was packed")
            elif case.reason.lower() not in rejects[rel].lower():
                wrong.append(f"{rel}: reject reason {rejects[rel]!r} lacks {case.reason!r}")
        if case.expect == "either" and (rel in packed) == (rel in rejects):
            wrong.append(f"{rel} must be packed or rejected, exactly one")
    return wrong


def accounted(listed: Iterable[str], packed: Iterable[str], rejected: Iterable[str]) -> list[str]:
    """Problems with `listed == packed + rejected` (each path exactly once); empty if none."""
    listed_c, out_c = Counter(list(listed)), Counter(list(packed)) + Counter(list(rejected))
    problems = [f"{p} listed but neither packed nor rejected" for p in listed_c - out_c]
    problems += [f"{p} packed/rejected more often than listed" for p in out_c - listed_c]
    return problems


# --------------------------------------------------------------------------- fsspec wrappers


class _LocalWrapper(LocalFileSystem):
    """A local filesystem under another protocol name (so the pipeline treats it as remote and
    reads through fsspec)."""

    protocol: Any = ("wrapped",)

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        kwargs.setdefault("auto_mkdir", True)
        super().__init__(*args, **kwargs)

    @classmethod
    def _strip_protocol(cls, path: Any) -> str:
        path = str(path)
        for proto in cls.protocol:
            if path.startswith(f"{proto}://"):
                path = path[len(proto) + 3 :]
        return LocalFileSystem._strip_protocol(path)

    def unstrip_protocol(self, name: str) -> str:
        return f"{self.protocol[0]}://{name}"


class DeniedFileSystem(_LocalWrapper):
    """`denied:///path`: reading a file whose name contains DENIED_MARK is refused."""

    protocol = ("denied",)

    def _open(self, path: str, mode: str = "rb", **kwargs: Any) -> Any:
        if "r" in mode and DENIED_MARK in os.path.basename(path):
            raise PermissionError(13, "Permission denied", path)
        return super()._open(path, mode, **kwargs)


class SleepyFileSystem(_LocalWrapper):
    """`sleepy:///path`: every file read starts after `$RECFLOW_TEST_SLEEPY_READ` seconds."""

    protocol = ("sleepy",)

    def _open(self, path: str, mode: str = "rb", **kwargs: Any) -> Any:
        if "r" in mode:
            time.sleep(float(os.environ.get(SLOW_ENV, "0") or 0))
        return super()._open(path, mode, **kwargs)


class FailingReadFileSystem(_LocalWrapper):
    """`failread:///path`: while a file's name contains one of `failing`, reading it fails
    like a dropped connection (a fault that outlasts every retry)."""

    protocol = ("failread",)
    failing: set[str] = set()

    def _open(self, path: str, mode: str = "rb", **kwargs: Any) -> Any:
        if "r" in mode and any(mark in os.path.basename(path) for mark in self.failing):
            raise ConnectionResetError(104, "injected: connection reset by peer", path)
        return super()._open(path, mode, **kwargs)


register_implementation("denied", DeniedFileSystem, clobber=True)
register_implementation("failread", FailingReadFileSystem, clobber=True)
register_implementation("sleepy", SleepyFileSystem, clobber=True)
