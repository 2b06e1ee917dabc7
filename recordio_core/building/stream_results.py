"""A packed shard's result kept beside the dataset, keyed by the shard's content key, so a
streaming build resumes shard by shard (`OUTPUT/.recflow/results/<key>.json`).

A streaming build packs many shards per task run; a task that fails or is killed half way
has packed some of them. Each shard's result (`ShardResult`, with the per-image digests and
difference hashes the quality report needs) is written once the shard is packed and
validated; the next run finds it under the same key,
validates the files again (their sha256) and reuses them instead of packing again. The result
names the files it describes, so a result is only trusted with those files.
"""

from __future__ import annotations

import json
from dataclasses import replace
from typing import Any

from recordio_core.building.pack_options import Reject, ShardResult
from recordio_core.storage.fsio import StorageOptions, join_url, read_bytes, write_bytes_atomic

RESULTS_FOLDER = ".recflow/results"


def result_url(output: str, key: str) -> str:
    """Where the result of the shard with content key `key` is kept under `output`."""
    return join_url(output, RESULTS_FOLDER, f"{key}.json")


def slim(result: ShardResult) -> ShardResult:
    """The result without its per-image digests and difference hashes."""
    return replace(result, digests=b"", dhashes=())


def save_result(url: str, result: ShardResult, storage_options: StorageOptions = None) -> None:
    out = slim(result).to_dict()
    out["digests"] = result.digests.hex()
    out["dhashes"] = list(result.dhashes)
    write_bytes_atomic(url, json.dumps(out, sort_keys=True).encode(), storage_options)


def load_result(url: str, storage_options: StorageOptions = None) -> ShardResult | None:
    """The result kept at `url`, or None when there is none or it cannot be read."""
    try:
        doc: dict[str, Any] = json.loads(read_bytes(url, storage_options))
        return ShardResult(
            **{k: doc[k] for k in ("rec", "idx", "lst", "records", "bytes", "sha256")},
            idx_sha256=doc["idx_sha256"],
            lst_sha256=doc["lst_sha256"],
            rejects=tuple(Reject(**r) for r in doc["rejects"]),
            warnings=tuple(Reject(**r) for r in doc["warnings"]),
            digests=bytes.fromhex(doc.get("digests", "")),
            dhashes=tuple(int(h) for h in doc.get("dhashes", ())),
        )
    except FileNotFoundError:
        return None
    except (ValueError, KeyError, TypeError):  # damaged: pack again
        return None
