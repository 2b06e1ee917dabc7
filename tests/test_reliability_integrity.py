"""Reliability: integrity. `recflow validate` on a dataset built by the flow detects every
injected corruption (exit 1, the problem named) and says when all is well (exit 0); no
credential (storage-options secrets, AWS keys from the environment) reaches logs, artifacts,
the manifest, Prefect's database, result storage or error messages, on success or failure."""

from __future__ import annotations

import json
import shutil
from collections.abc import Callable
from pathlib import Path

import pytest
from pipeline_fixtures import (
    _HOME,
    image_tree,
    prefect_harness,  # noqa: F401  (the shared server fixture)
)

from recordio_core.format.manifest import MANIFEST_NAME, read_manifest

pytestmark = [pytest.mark.slow, pytest.mark.usefixtures("prefect_harness")]


@pytest.fixture(scope="module")
def dataset(tmp_path_factory, prefect_harness) -> Path:  # noqa: F811
    """One dataset built by the flow (train/val, several shards, a reject); tests corrupt
    copies of it."""
    from recordio_flow.flows.build import build_dataset

    root = tmp_path_factory.mktemp("integrity-src")
    image_tree(root, classes=2, per_class=6)
    (root / "class0" / "broken.jpg").write_bytes(b"<html>not an image</html>")
    out = tmp_path_factory.mktemp("integrity") / "dataset"
    build_dataset(
        source=str(root), output=str(out), train_ratio=0.7, records_per_shard=4, resize=20
    )
    return out


def _first_shard(out: Path):
    return read_manifest(str(out)).shards()[0][1]


def _edit(path: Path, fn: Callable[[bytes], bytes]) -> None:
    path.write_bytes(fn(path.read_bytes()))


def _flip(data: bytes, at: int) -> bytes:
    b = bytearray(data)
    b[at] ^= 0x01
    return bytes(b)


def _idx_lines(fn: Callable[[list[str]], list[str]]) -> Callable[[bytes], bytes]:
    return lambda data: "".join(fn(data.decode().splitlines(keepends=True))).encode()


def _shift_offsets(lines: list[str]) -> list[str]:
    """Each key gets the next key's offset (an .idx shifted by one line)."""
    keys = [x.split("\t")[0] for x in lines]
    offsets = [x.split("\t")[1] for x in lines]
    return [f"{k}\t{o}" for k, o in zip(keys, offsets[1:] + offsets[:1], strict=True)]


def _change_label(data: bytes) -> bytes:
    lines = data.decode().splitlines(keepends=True)
    index, label, path = lines[1].split("\t")
    lines[1] = "\t".join([index, f"{float(label) + 1:f}", path])
    return "".join(lines).encode()


def _manifest_sha(out: Path) -> None:
    doc = json.loads((out / MANIFEST_NAME).read_text())
    shard = next(iter(doc["splits"].values()))["shards"][0]
    shard["sha256"] = "0" * 64
    (out / MANIFEST_NAME).write_text(json.dumps(doc))


# name: (corrupt the copy, a word `recflow validate` must print)
CORRUPTIONS: dict[str, tuple[Callable[[Path], None], str]] = {
    "rec_flipped_byte_in_an_image": (
        lambda out: _edit(out / _first_shard(out).rec, lambda d: _flip(d, len(d) // 2)),
        "sha256",
    ),
    "rec_flipped_byte_in_a_magic_word": (
        lambda out: _edit(out / _first_shard(out).rec, lambda d: _flip(d, 0)),
        "magic",
    ),
    "rec_truncated": (
        lambda out: _edit(out / _first_shard(out).rec, lambda d: d[: len(d) - 10]),
        "remain in the file",
    ),
    "rec_truncated_to_zero": (lambda out: _edit(out / _first_shard(out).rec, lambda d: b""), "0"),
    "rec_garbage_appended": (
        lambda out: _edit(out / _first_shard(out).rec, lambda d: d + b"\0" * 64),
        "magic",
    ),
    "rec_deleted": (lambda out: (out / _first_shard(out).rec).unlink(), "not found"),
    "idx_lines_shifted": (
        lambda out: _edit(out / _first_shard(out).idx, _idx_lines(_shift_offsets)),
        "has id",
    ),
    "idx_line_removed": (
        lambda out: _edit(out / _first_shard(out).idx, _idx_lines(lambda x: x[:1] + x[2:])),
        "not in",
    ),
    "idx_lines_swapped": (
        lambda out: _edit(out / _first_shard(out).idx, _idx_lines(lambda x: [x[1], x[0], *x[2:]])),
        "different order",
    ),
    "idx_offset_moved": (
        lambda out: _edit(
            out / _first_shard(out).idx,
            _idx_lines(lambda x: [x[0].split("\t")[0] + "\t4\n", *x[1:]]),
        ),
        "not the start of a record",
    ),
    "idx_emptied": (lambda out: _edit(out / _first_shard(out).idx, lambda d: b""), "lists 0"),
    "lst_label_changed": (lambda out: _edit(out / _first_shard(out).lst, _change_label), "label"),
    "lst_line_removed": (
        lambda out: _edit(out / _first_shard(out).lst, _idx_lines(lambda x: x[1:])),
        "not in",
    ),
    "manifest_sha256_changed": (_manifest_sha, "sha256"),
}


def test_an_intact_dataset_validates(dataset, capsys):
    from recordio_flow.flows.cli import main

    assert main(["validate", str(dataset)]) == 0
    assert main(["validate", str(dataset / MANIFEST_NAME), "--decode"]) == 0
    assert "all valid" in capsys.readouterr().out


@pytest.mark.parametrize("name", list(CORRUPTIONS))
def test_recflow_validate_detects_each_corruption(dataset, tmp_path, name, capsys):
    from recordio_flow.flows.cli import main

    copy = tmp_path / "copy"
    shutil.copytree(dataset, copy)
    corrupt, word = CORRUPTIONS[name]
    corrupt(copy)
    capsys.readouterr()
    assert main(["validate", str(copy / MANIFEST_NAME)]) == 1
    out = capsys.readouterr()
    failing = [line for line in out.out.splitlines() if line.startswith("FAIL")]
    assert len(failing) == 1 and _first_shard(copy).rec.rpartition("/")[2] in failing[0]
    assert word in out.out, out.out
    assert "1 of " in out.err
    # the JSON report agrees
    assert main(["validate", str(copy), "--json"]) == 1
    reports = json.loads(capsys.readouterr().out)
    assert [r["ok"] for r in reports].count(False) == 1


def test_an_unreadable_manifest_is_a_clear_error(dataset, tmp_path, capsys):
    from recordio_flow.flows.cli import main

    copy = tmp_path / "copy"
    shutil.copytree(dataset, copy)
    (copy / MANIFEST_NAME).write_text('{"format": "recordio-flow/manifest", "version": 1')
    assert main(["validate", str(copy)]) == 2
    assert f"{copy / MANIFEST_NAME}: not JSON" in capsys.readouterr().err


# --------------------------------------------------------------------------- credentials

SO_SECRET = "so-SECRET-4f1e9c0b-never-shown"
ENV_SECRET = "env-SECRET-77aa21d3-never-shown"


def _files_holding(needles: list[bytes], roots: list[Path]) -> list[str]:
    found = []
    for root in roots:
        for path in [root] if root.is_file() else root.rglob("*"):
            if path.is_file():
                data = path.read_bytes()
                found += [f"{path}: {n.decode()}" for n in needles if n in data]
    return found


def test_no_credential_in_logs_artifacts_manifest_database_or_errors(
    s3_server, tmp_path, monkeypatch, capsys
):
    import fsspec.config
    from prefect.events.worker import EventsWorker
    from prefect.logging.handlers import APILogWorker
    from prefect.settings import PREFECT_SERVER_DATABASE_CONNECTION_URL

    from recordio_flow.flows.cli import main

    monkeypatch.setattr(fsspec.config, "conf", {})
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", ENV_SECRET)  # moto accepts any key
    bucket = s3_server.make_bucket()
    image_tree(tmp_path / "imgs", classes=2, per_class=3)
    (tmp_path / "imgs" / "class1" / "bad.jpg").write_bytes(b"")
    s3_server.fs().put(str(tmp_path / "imgs") + "/", f"{bucket}/images/", recursive=True)
    so = json.dumps({"endpoint_url": s3_server.endpoint_url, "key": "testing", "secret": SO_SECRET})
    out = f"s3://{bucket}/dataset"
    # a run that succeeds (with a reject), one that fails in a task, one refused up front
    assert main(["build", f"s3://{bucket}/images", out, "--storage-options", so]) == 0
    assert main(["build", f"s3://{bucket}/nothing", f"{out}2", "--storage-options", so]) == 1
    assert main(["build", f"s3://{bucket}/images", f"{out}3", "--storage-options", so,
                 "--resize", "-1"]) == 2  # fmt: skip
    printed = capsys.readouterr()
    APILogWorker.drain_all(timeout=10)  # logs and events reach the database now
    EventsWorker.drain_all(timeout=10)
    needles = [SO_SECRET.encode(), ENV_SECRET.encode()]
    text = printed.out + printed.err
    assert "does not exist" in text and not [n for n in needles if n.decode() in text]

    fs = s3_server.fs()
    objects = {p: fs.cat_file(p) for p in fs.find(f"{bucket}/dataset")}
    assert f"{bucket}/dataset/manifest.json" in objects
    assert f"{bucket}/dataset/rejects.jsonl" in objects
    assert not [p for p, data in objects.items() for n in needles if n in data]
    manifest = json.loads(objects[f"{bucket}/dataset/manifest.json"])
    assert manifest["parameters"]["storage_options"] == {"endpoint_url": s3_server.endpoint_url}

    # Prefect's database (flow and task runs, parameters, states, logs, artifacts, events)
    # and its home (result storage, the pack cache)
    db = Path(PREFECT_SERVER_DATABASE_CONNECTION_URL.value().split(":///", 1)[1])
    assert db.exists()
    roots = [p for p in db.parent.glob(db.name + "*")] + [Path(_HOME)]
    assert _files_holding(needles, roots) == []
    # control: what the runs did store is found by the same scan
    assert _files_holding([f"{out}2".encode()], roots[:-1])
