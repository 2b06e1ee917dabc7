"""Small fsspec helpers the pipeline tasks share (no Prefect)."""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from typing import Any

from recordio_core.storage.fsio import get_fs, url_dirname


def missing_urls(urls: Iterable[str], storage_options: Mapping[str, Any] | None) -> list[str]:
    """The URLs among `urls` that do not exist, from one fresh listing per folder."""
    by_dir: dict[str, list[str]] = {}
    for url in urls:
        by_dir.setdefault(url_dirname(url), []).append(url)
    missing: list[str] = []
    for folder, group in by_dir.items():
        fs, path = get_fs(folder, storage_options)
        fs.invalidate_cache(path)
        try:
            names = {name.rstrip("/") for name in fs.ls(path, detail=False)}
        except FileNotFoundError:
            names = set()
        for url in group:
            if get_fs(url, storage_options)[1].rstrip("/") not in names:
                missing.append(url)
    return missing
