"""`synth://`: a read-only fsspec filesystem of up to 100 M tiny JPEGs that holds none of them.

    import synthfs  # registers the protocol (benchmarks/ on sys.path)
    fs = fsspec.filesystem("synth")
    fs.ls("synth://n25-f10/")              # ['n25-f10/c0', 'n25-f10/c1', 'n25-f10/c2']
    fs.cat_file("synth://n25-f10/c2/i24.jpg")

The first path component says what the tree holds: `n{N}-f{F}` is N files in folders of F
(the last folder holds the rest), e.g. `synth://n100000000-f10000/` is 100,000,000 files in
10,000 class folders `c00000/ ... c09999/`, each holding `i000000000.jpg`-style names. Files
are numbered globally (folder k holds k*F ... k*F+F-1); names are zero padded to the digits of
the folder count and of N, so sorted order is numeric order.

Every file is one of a handful of baseline JPEGs (~330-590 bytes, encoded once with Pillow,
picked by file number) with a fixed-width comment segment carrying the file number, so every
file's bytes differ while its size is known without building it. `ls` of a folder builds only
that folder's dicts (name, size, type, a deterministic mtime); `info`, `exists`, `isdir` and
`cat_file` (with start/end) are O(1) arithmetic on the name, so memory stays O(folder size).
`find`/`walk` are fsspec's defaults over `ls`. Run its tests with
`.venv/bin/python -m pytest tests/test_synthfs.py`.
"""

from __future__ import annotations

import functools
import io
import re
from typing import Any

import fsspec
from fsspec.spec import AbstractFileSystem

PROTOCOL = "synth"
MTIME_BASE = 1_700_000_000.0  # file i's mtime is MTIME_BASE + i (seconds since the epoch)
_SPEC = re.compile(r"^n([0-9]+)-f([0-9]+)$")
_VARIANT_SIZES = ((8, 8), (16, 8), (16, 16), (24, 16), (16, 24), (24, 24), (32, 24), (32, 32))


@functools.cache
def variants() -> tuple[bytes, ...]:
    """The pre-encoded baseline JPEGs (Pillow, quality 70, optimized Huffman tables)."""
    from PIL import Image, ImageDraw

    out = []
    for k, (w, h) in enumerate(_VARIANT_SIZES):
        img = Image.new("RGB", (w, h), ((40 * k) % 256, 90, 160))
        draw = ImageDraw.Draw(img)
        draw.ellipse((1, 1, w - 2, h - 2), fill=((k * 60) % 256, 200 - k * 20, 30 + k * 25))
        draw.line((0, 0, w, h), fill=(255, 255, 255))
        buf = io.BytesIO()
        img.save(buf, "JPEG", quality=70, optimize=True)
        out.append(buf.getvalue())
    return tuple(out)


class Tree:
    """The arithmetic of one `n{N}-f{F}` tree: names <-> file numbers, sizes, bytes."""

    def __init__(self, spec: str, n: int, per_folder: int) -> None:
        if n < 1 or per_folder < 1:
            raise FileNotFoundError(f"synth tree {spec!r}: N and F must be >= 1")
        self.spec, self.n, self.per_folder = spec, n, per_folder
        self.folders = -(-n // per_folder)
        self.folder_width = len(str(self.folders))
        self.file_width = len(str(n))
        extra = len(self._comment(0))  # the comment has a fixed width
        self.sizes = tuple(len(blob) + extra for blob in variants())

    def folder_name(self, k: int) -> str:
        return f"c{k:0{self.folder_width}d}"

    def file_name(self, i: int) -> str:
        return f"i{i:0{self.file_width}d}.jpg"

    def folder_range(self, k: int) -> range:
        return range(k * self.per_folder, min(self.n, (k + 1) * self.per_folder))

    def folder_of(self, name: str) -> int | None:
        """The folder number `name` (e.g. 'c00012') names, or None."""
        if len(name) != 1 + self.folder_width or name[0] != "c" or not name[1:].isdigit():
            return None
        k = int(name[1:])
        return k if k < self.folders else None

    def file_of(self, k: int, name: str) -> int | None:
        """The file number `name` names inside folder k, or None."""
        digits = name[1 : -len(".jpg")]
        if len(name) != 5 + self.file_width or name[0] != "i" or not name.endswith(".jpg"):
            return None
        if not digits.isdigit():
            return None
        i = int(digits)
        return i if i in self.folder_range(k) else None

    def _comment(self, i: int) -> bytes:
        note = f"synth {self.spec} {i:0{self.file_width}d}".encode()
        return b"\xff\xfe" + (len(note) + 2).to_bytes(2, "big") + note

    def size(self, i: int) -> int:
        return self.sizes[i % len(self.sizes)]

    def data(self, i: int) -> bytes:
        """File i's bytes: its variant with a comment segment right after SOI."""
        blob = variants()[i % len(variants())]
        return blob[:2] + self._comment(i) + blob[2:]


@functools.lru_cache(maxsize=64)
def tree(spec: str) -> Tree:
    found = _SPEC.match(spec)
    if not found:
        raise FileNotFoundError(f"not a synth tree (expected n<N>-f<F>): {spec!r}")
    return Tree(spec, int(found.group(1)), int(found.group(2)))


class SynthFileSystem(AbstractFileSystem):
    """See the module docstring. Read-only; every path starts with its tree's `n{N}-f{F}`."""

    protocol = PROTOCOL
    root_marker = ""

    @classmethod
    def _strip_protocol(cls, path: str) -> str:
        if path.startswith(f"{PROTOCOL}://"):
            path = path[len(PROTOCOL) + 3 :]
        return path.strip("/")

    def _resolve(self, path: str) -> tuple[Tree, int | None, int | None]:
        """`(tree, folder, file)` for a path; None for levels it does not reach."""
        parts = self._strip_protocol(path).split("/")
        t = tree(parts[0])
        if len(parts) > 3:
            raise FileNotFoundError(path)
        k = t.folder_of(parts[1]) if len(parts) > 1 else None
        if len(parts) > 1 and k is None:
            raise FileNotFoundError(path)
        i = t.file_of(k, parts[2]) if len(parts) > 2 and k is not None else None
        if len(parts) > 2 and i is None:
            raise FileNotFoundError(path)
        return t, k, i

    def _file_info(self, t: Tree, k: int, i: int) -> dict[str, Any]:
        return self._file_infos(t, k, range(i, i + 1))[0]

    def _file_infos(self, t: Tree, k: int, numbers: range) -> list[dict[str, Any]]:
        folder, width, sizes = f"{t.spec}/{t.folder_name(k)}/i", t.file_width, t.sizes
        return [
            {
                "name": f"{folder}{i:0{width}d}.jpg",
                "size": sizes[i % len(sizes)],
                "type": "file",
                "mtime": MTIME_BASE + i,
            }
            for i in numbers
        ]

    def ls(self, path: str, detail: bool = True, **kwargs: Any) -> list[Any]:
        t, k, i = self._resolve(path)
        if i is not None:
            infos = [self._file_info(t, k, i)]  # type: ignore[arg-type]
        elif k is None:
            infos = [
                {"name": f"{t.spec}/{t.folder_name(j)}", "size": 0, "type": "directory"}
                for j in range(t.folders)
            ]
        else:
            infos = self._file_infos(t, k, t.folder_range(k))
        return infos if detail else [d["name"] for d in infos]

    def info(self, path: str, **kwargs: Any) -> dict[str, Any]:
        t, k, i = self._resolve(path)
        if i is not None and k is not None:
            return self._file_info(t, k, i)
        name = t.spec if k is None else f"{t.spec}/{t.folder_name(k)}"
        return {"name": name, "size": 0, "type": "directory"}

    def exists(self, path: str, **kwargs: Any) -> bool:
        try:
            self._resolve(path)
        except FileNotFoundError:
            return False
        return True

    def isdir(self, path: str) -> bool:
        try:
            return self._resolve(path)[2] is None
        except FileNotFoundError:
            return False

    def isfile(self, path: str) -> bool:
        try:
            return self._resolve(path)[2] is not None
        except FileNotFoundError:
            return False

    def _data(self, path: str) -> bytes:
        t, _, i = self._resolve(path)
        if i is None:
            raise IsADirectoryError(path)
        return t.data(i)

    def cat_file(
        self, path: str, start: int | None = None, end: int | None = None, **kwargs: Any
    ) -> bytes:
        return self._data(path)[start:end]

    def _open(self, path: str, mode: str = "rb", **kwargs: Any) -> io.BytesIO:
        if "r" not in mode or "+" in mode:
            raise PermissionError(f"synth:// is read-only (mode {mode!r})")
        return io.BytesIO(self._data(path))

    def mkdir(self, path: str, create_parents: bool = True, **kwargs: Any) -> None:
        raise PermissionError("synth:// is read-only")

    makedirs = mkdir  # type: ignore[assignment]

    def rm_file(self, path: str) -> None:
        raise PermissionError("synth:// is read-only")


fsspec.register_implementation(PROTOCOL, SynthFileSystem, clobber=True)
