"""build-dataset end to end on local folders, on the shared Prefect test server."""

from __future__ import annotations

import json
import os
from pathlib import Path

import pytest
from pipeline_fixtures import (
    FlakyFileSystem,
    image_tree,
    prefect_harness,  # noqa: F401  (the shared server fixture)
    read_tree,
)

from recordio_core.format.manifest import read_manifest
from recordio_core.format.recordio import MXIndexedRecordIO, unpack, unpack_img

pytestmark = [pytest.mark.slow, pytest.mark.usefixtures("prefect_harness")]


def build(**kw):
    from recordio_flow.flows.build import build_dataset

    return build_dataset(**kw)


def build_state(**kw):
    from recordio_flow.flows.build import build_dataset

    return build_dataset(**kw, return_state=True)


def shard_files(out: Path) -> dict[str, bytes]:
    return {
        k: v for k, v in read_tree(out).items() if k.rsplit(".", 1)[-1] in ("rec", "idx", "lst")
    }


def records(out: Path) -> list[tuple]:
    """(split, header, image array shape) of every record, through the manifest."""
    m = read_manifest(str(out))
    rows = []
    for split, shard in m.shards():
        r = MXIndexedRecordIO(str(out / shard.idx), str(out / shard.rec), "r")
        for key in r.keys:
            header, img = unpack_img(r.read_idx(key))
            rows.append((split, header, img.shape))
        r.close()
    return rows


@pytest.fixture
def source(tmp_path):
    root = tmp_path / "src"
    image_tree(root, classes=3, per_class=6)
    (root / "class1" / "empty.jpg").write_bytes(b"")  # a reject
    return root


def test_end_to_end_then_rerun_reuses_everything(source, tmp_path):
    out = tmp_path / "out"
    kw = dict(
        source=str(source),
        output=str(out),
        train_ratio=0.7,
        test_ratio=0.15,
        records_per_shard=5,
        resize=24,
    )
    first = build(**kw)
    assert first["records"] == 18 and first["rejects"] == 1 and first["images_listed"] == 19
    assert first["shards_packed"] == first["shards"] and first["shards_cached"] == 0
    m = read_manifest(str(out))
    assert m.class_map == {"class0": 0, "class1": 1, "class2": 2}
    assert set(m.splits) == {"train", "val", "test"}
    assert sum(s.records for s in m.splits.values()) == 18
    assert m.parameters["resize"] == 24 and m.parameters["source"] == str(source)
    assert {"recordio-flow", "prefect", "pillow", "python"} <= set(m.tools)
    assert [r.path for r in m.rejects] == ["class1/empty.jpg"]
    rejects = [json.loads(x) for x in (out / "rejects.jsonl").read_text().splitlines()]
    assert rejects[0]["path"] == "class1/empty.jpg" and rejects[0]["reason"]
    assert json.loads((out / "class_map.json").read_text()) == m.class_map
    rows = records(out)
    assert len(rows) == 18 and all(min(shape[:2]) == 24 for _, _, shape in rows)
    assert (
        sorted(h.id for _, h, _ in rows) == sorted(i for i in range(19) if i != 7)
        or len({h.id for _, h, _ in rows}) == 18
    )
    for _, shard in m.shards():
        assert shard.rec.startswith(("train/", "val/", "test/"))
        assert (out / shard.lst).read_text().count("\n") == shard.records
    assert not (out / ".recflow.lock").exists()

    before = read_tree(out)
    mtimes = {p: os.stat(out / p).st_mtime_ns for p in shard_files(out)}
    second = build(**kw)
    assert second["shards_packed"] == 0 and second["shards_cached"] == first["shards"]
    assert read_tree(out) == before  # every byte, manifest included
    assert {p: os.stat(out / p).st_mtime_ns for p in shard_files(out)} == mtimes


def test_changed_parameters_rebuild_and_old_shards_go(source, tmp_path):
    out = tmp_path / "out"
    base = dict(source=str(source), output=str(out), records_per_shard=10)
    build(**base, resize=20)
    old = set(shard_files(out))
    summary = build(**base, resize=16)
    assert summary["shards_packed"] == summary["shards"]
    new = set(shard_files(out))
    assert not old & new  # new names, and the previous dataset's files were removed
    assert read_manifest(str(out)).parameters["resize"] == 16
    assert all(min(shape[:2]) == 16 for _, _, shape in records(out))


def test_label_width_and_pack_label_from_a_list(source, tmp_path):
    out = tmp_path / "out"
    lst = tmp_path / "two.lst"
    paths = sorted(p.relative_to(source).as_posix() for p in source.rglob("*.jpg"))
    paths = [p for p in paths if not p.endswith("empty.jpg")]
    lst.write_text("".join(f"{i}\t{i % 3}\t{i * 0.5}\t{p}\n" for i, p in enumerate(paths)))
    kw = dict(source=str(source), output=str(out), lst=str(lst), label_width=2)
    build(**kw, pack_label=False)  # explicitly off: the header holds the first label only
    m = read_manifest(str(out))
    assert m.records == len(paths) and m.class_map == {}
    assert m.parameters["pack_label"] is False
    _, shard = m.shards()[0]
    r = MXIndexedRecordIO(str(out / shard.idx), str(out / shard.rec), "r")
    header, _ = unpack(r.read_idx(3))
    assert header.flag == 0 and header.label == 0.0  # 3 % 3, first label only
    r.close()
    summary = build(**kw)  # left empty: label_width > 1 packs every label into the header
    assert summary["shards_packed"] == 1
    m = read_manifest(str(out))
    assert m.parameters["pack_label"] is True  # as the bytes hold it
    _, shard = m.shards()[0]
    r = MXIndexedRecordIO(str(out / shard.idx), str(out / shard.rec), "r")
    header, _ = unpack(r.read_idx(3))
    assert header.flag == 2 and list(header.label) == [0.0, 1.5]
    r.close()
    assert build(**kw, pack_label=True)["shards_packed"] == 0  # same bytes, same shard key
    # a list whose label columns do not match label_width is refused before any packing
    state = build_state(**{**kw, "output": str(tmp_path / "o3"), "label_width": 3})
    assert state.is_failed() and "label_width=3" in str(state.result(raise_on_failure=False))
    assert not (tmp_path / "o3").exists()


def test_records_mix_classes_unless_the_listing_order_is_asked(source, tmp_path):
    """record_order="hash" (the default) writes each split in the hash order of its paths,
    every record with its own id and labels; "listing" writes the listing's order (class after
    class), the bytes and shard names of earlier versions. A user's .lst is hash-ordered too,
    its index column kept."""
    from recordio_core.building.split import hash_order
    from recordio_core.format.lst import read_lst
    from recordio_core.format.recordio import MXRecordIO

    def written(out):
        """The one shard's .lst entries, the ids of its records in file order, its name."""
        ((_, shard),) = read_manifest(str(out)).shards()
        r = MXRecordIO(str(out / shard.rec), "r")
        ids = []
        while (item := r.read()) is not None:
            ids.append(unpack(item)[0].id)
        r.close()
        return read_lst(str(out / shard.lst)), ids, shard.rec

    kw = dict(source=str(source), pass_through=True)
    build(**kw, output=str(tmp_path / "hash"))
    build(**kw, output=str(tmp_path / "listing"), record_order="listing")
    hashed, hashed_ids, hashed_rec = written(tmp_path / "hash")
    listed, listed_ids, listed_rec = written(tmp_path / "listing")
    assert [e.index for e in listed] == listed_ids == sorted(listed_ids)
    assert [e.labels[0] for e in listed] == sorted(e.labels[0] for e in listed)
    assert hashed == hash_order(listed) != listed  # the same entries, ids and labels, mixed
    assert hashed_ids == [e.index for e in hashed]
    assert hashed_rec.split(".")[0] == listed_rec.split(".")[0] and hashed_rec != listed_rec

    lst = tmp_path / "mine.lst"
    mine = listed[::-1]  # ids of the user's own choosing, in the user's order
    lst.write_text("".join(f"{100 + e.index}\t{e.labels[0]:g}\t{e.path}\n" for e in mine))
    build(**kw, output=str(tmp_path / "lst"), lst=str(lst))
    from_lst, ids, _ = written(tmp_path / "lst")
    assert from_lst == hash_order(read_lst(str(lst)))
    assert ids == [e.index for e in from_lst] and min(ids) >= 100


def test_missing_or_damaged_shards_are_packed_again(source, tmp_path):
    out = tmp_path / "out"
    kw = dict(source=str(source), output=str(out), records_per_shard=4)
    build(**kw)
    m = read_manifest(str(out))
    good = shard_files(out)
    (_, first), (_, second) = m.shards()[:2]
    (out / first.idx).unlink()  # deleted behind the cache's back
    damaged = bytearray((out / second.rec).read_bytes())
    damaged[40] ^= 0xFF  # a flipped byte: caught by validation's sha256
    (out / second.rec).write_bytes(bytes(damaged))
    summary = build(**kw)
    assert summary["shards_packed"] == 2
    assert shard_files(out) == good


def test_a_failing_write_is_retried(source, tmp_path):
    clean = tmp_path / "clean"
    kw = dict(source=str(source), records_per_shard=6, resize=20)
    build(output=str(clean), **kw)
    FlakyFileSystem.fail_names = {"all-00001-of-"}
    FlakyFileSystem.failed = []
    flaky = tmp_path / "flaky"
    summary = build(output=f"flaky://{flaky}", **kw)
    assert FlakyFileSystem.failed and "all-00001-of-" in FlakyFileSystem.failed[0]
    assert summary["records"] == 18
    assert shard_files(flaky) == shard_files(clean)  # the same bytes as an undisturbed run
    assert not [p for p in read_tree(flaky) if ".tmp-" in p]


def test_a_failing_image_read_is_retried_not_rejected(source, tmp_path):
    """A read error that may pass (not "file not found") retries the shard instead of
    recording the image as a reject."""
    FlakyFileSystem.fail_reads = {"class2/img03.jpg"}
    FlakyFileSystem.failed = []
    out = tmp_path / "out"
    summary = build(source=f"flaky://{source}", output=str(out), records_per_shard=6)
    assert FlakyFileSystem.failed and summary["records"] == 18
    assert [r.path for r in read_manifest(str(out)).rejects] == ["class1/empty.jpg"]


def test_bad_parameters_fail_before_any_work(source, tmp_path):
    out = tmp_path / "out"
    state = build_state(source=str(source), output=str(out), train_ratio=0.9, test_ratio=0.3)
    assert state.is_failed()
    assert "train_ratio + test_ratio must be <= 1" in str(state.result(raise_on_failure=False))
    state = build_state(source=str(source), output=str(out), resize=-5)
    assert state.is_failed()
    assert not out.exists()


def test_reject_policy_fail_writes_no_manifest(source, tmp_path):
    out = tmp_path / "out"
    state = build_state(source=str(source), output=str(out), reject_policy="fail")
    assert state.is_failed()
    assert "class1/empty.jpg" in str(state.result(raise_on_failure=False))
    assert not (out / "manifest.json").exists()
    state = build_state(source=str(source), output=str(out), max_reject_fraction=0.01)
    assert state.is_failed() and not (out / "manifest.json").exists()
    assert build(source=str(source), output=str(out), max_reject_fraction=0.1)["rejects"] == 1


def test_artifacts_are_published(source, tmp_path):
    from prefect.client.orchestration import get_client
    from prefect.client.schemas.filters import ArtifactFilter, ArtifactFilterKey

    from recordio_flow.tasks.report import artifact_key

    out = tmp_path / "out"
    build(source=str(source), output=str(out), records_per_shard=7)
    with get_client(sync_client=True) as client:
        key = artifact_key("dataset", str(out))
        found = client.read_artifacts(
            artifact_filter=ArtifactFilter(key=ArtifactFilterKey(any_=[key]))
        )
        assert found and "Records per class" in found[0].data and "class2" in found[0].data
        table = client.read_artifacts(
            artifact_filter=ArtifactFilter(
                key=ArtifactFilterKey(any_=[artifact_key("shards", str(out))])
            )
        )
        rows = json.loads(table[0].data)
        assert len(rows) == 3 and {r["status"] for r in rows} == {"packed"}
        progress = [
            a
            for a in client.read_artifacts(limit=200)
            if a.type == "progress" and a.flow_run_id == found[0].flow_run_id
        ]
        assert progress and progress[0].data == 100.0


def test_recflow_build_command(source, tmp_path, capsys):
    from recordio_flow.flows.cli import main

    out = tmp_path / "out"
    rc = main(["build", str(source), str(out), "--resize", "20", "--records-per-shard", "9"])
    assert rc == 0
    text = capsys.readouterr().out
    assert f"dataset: {out}/manifest.json" in text and "18 records" in text
    rc = main(["build", str(tmp_path / "nothing-here"), str(tmp_path / "o2")])
    assert rc == 1
    assert "does not exist" in capsys.readouterr().err
