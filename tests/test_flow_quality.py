"""build-dataset's data quality end to end: decoder warnings, duplicates and leakage,
near-duplicates, dedupe="drop", and dry runs that write nothing (locally and on S3)."""

from __future__ import annotations

import io
import json
from pathlib import Path

import pytest
from PIL import Image
from pipeline_fixtures import (
    image_tree,
    prefect_harness,  # noqa: F401  (the shared server fixture)
    read_tree,
)

from recordio_core.format.manifest import read_manifest

pytestmark = [pytest.mark.slow, pytest.mark.usefixtures("prefect_harness")]


def build(**kw):
    from recordio_flow.flows.build import build_dataset

    return build_dataset(**kw)


def corrupt_but_decodable(data: bytes) -> bytes:
    return data[:-2] + b"\xab" * 16 + data[-2:]


def reencoded(data: bytes, quality: int = 70) -> bytes:
    buf = io.BytesIO()
    Image.open(io.BytesIO(data)).convert("RGB").save(buf, "JPEG", quality=quality)
    return buf.getvalue()


@pytest.fixture
def messy(tmp_path) -> Path:
    """3 classes of 6 images, plus: a byte copy in another class under another extension, a
    byte copy in the same class, a broken file and its byte copy (both rejects), a re-encoded
    look-alike, and a corrupt-but-decodable JPEG."""
    root = tmp_path / "src"
    files = image_tree(root, classes=3, per_class=6)
    extra = {
        "class1/copy of class0 img00.JPEG": files["class0/img00.jpg"],
        "class0/sub/img01 again.jpg": files["class0/img01.jpg"],
        "class2/broken.jpg": b"\xff\xd8\xff broken",
        "class0/broken copy.jpg": b"\xff\xd8\xff broken",
        "class2/img04 q70.jpg": reencoded(files["class2/img04.jpg"]),
        "class1/scrambled.jpg": corrupt_but_decodable(files["class1/img03.jpg"]),
    }
    for rel, data in extra.items():
        (root / rel).parent.mkdir(parents=True, exist_ok=True)
        (root / rel).write_bytes(data)
    return root


def shard_names(out: Path) -> set[str]:
    return {k for k in read_tree(out) if k.endswith(".rec")}


def test_quality_report_rerun_and_dedupe(messy, tmp_path):
    out = tmp_path / "out"
    kw = dict(source=str(messy), train_ratio=0.6, test_ratio=0.2, records_per_shard=4)
    summary = build(output=str(out), near_duplicate_distance=3, **kw)
    m = read_manifest(str(out))
    doc = json.loads((out / "manifest.json").read_text())

    assert [w.path for w in m.warnings] == ["class1/scrambled.jpg"]
    assert "Corrupt JPEG data" in m.warnings[0].reason
    groups = {tuple(g["paths"]): g for g in doc["duplicates"]}
    assert set(groups) == {
        ("class0/broken copy.jpg", "class2/broken.jpg"),  # both rejects, still the same bytes
        ("class0/img00.jpg", "class1/copy of class0 img00.JPEG"),  # two classes
        ("class0/img01.jpg", "class0/sub/img01 again.jpg"),
    }
    two_classes = groups[("class0/img00.jpg", "class1/copy of class0 img00.JPEG")]
    assert len(set(two_classes["labels"])) == 2 and len(two_classes["sha256"]) == 64
    near = [tuple(g["paths"]) for g in doc["near_duplicates"]]
    assert ("class2/img04 q70.jpg", "class2/img04.jpg") in near
    q = summary["quality"]
    assert q["warnings"] == 1 and q["duplicate_groups"] == 3
    assert q["duplicate_groups_label_conflict"] >= 2  # img00's copy and the broken pair
    cross = sum(len(set(g["splits"])) > 1 for g in doc["duplicates"])
    assert q["duplicate_groups_cross_split"] == cross
    assert q["near_duplicate_groups"] == len(near) >= 1
    assert summary["rejects"] == 2

    # a rerun writes the same bytes, manifest included
    before = read_tree(out)
    again = build(output=str(out), near_duplicate_distance=3, **kw)
    assert again["shards_packed"] == 0 and read_tree(out) == before

    # dedupe="drop": each copy leaves its split; shards that kept their entries keep their
    # content keys (same file names, same bytes), only the shards that lost one change
    dropped_out = tmp_path / "dedupe"
    dropped = build(output=str(dropped_out), dedupe="drop", **kw)
    dm = read_manifest(str(dropped_out))
    dups = {r.path: r.reason for r in dm.rejects if r.reason.startswith("duplicate of")}
    assert dups == {
        "class1/copy of class0 img00.JPEG": "duplicate of class0/img00.jpg",
        "class0/sub/img01 again.jpg": "duplicate of class0/img01.jpg",
        "class2/broken.jpg": "duplicate of class0/broken copy.jpg",
    }
    assert "class0/broken copy.jpg" in {r.path for r in dm.rejects}  # the kept copy: a reject
    assert [
        g["paths"] for g in json.loads((dropped_out / "manifest.json").read_text())["duplicates"]
    ] == [g["paths"] for g in doc["duplicates"]]
    assert dropped["records"] == summary["records"] - 2
    assert dropped["quality"]["duplicate_groups"] == 3
    # by shard name (split/name-of-N): a shard whose entries did not change keeps its content
    # key and bytes; one whose records changed gets another key. (A shard that only lost a
    # dropped copy that was a reject anyway gets a new key for the same records: its planned
    # entries changed.)
    shards = {}
    for out_dir in (out, dropped_out):
        for _, shard in read_manifest(str(out_dir)).shards():
            name, key = shard.rec.rsplit(".", 2)[0], shard.rec.rsplit(".", 2)[1]
            lst = (out_dir / shard.lst).read_text()
            shards.setdefault(name, {})[out_dir] = (key, lst, (out_dir / shard.rec).read_bytes())
    kept = changed = 0
    for name, by_build in shards.items():
        if len(by_build) < 2:
            continue
        (key_a, lst_a, rec_a), (key_b, lst_b, rec_b) = by_build[out], by_build[dropped_out]
        if key_a == key_b:
            kept += 1
            assert lst_a == lst_b and rec_a == rec_b, name
        if lst_a != lst_b:
            changed += 1
            assert key_a != key_b, name
    assert kept and changed


def test_reject_policy_for_decoder_warnings(messy, tmp_path):
    out = tmp_path / "out"
    summary = build(source=str(messy), output=str(out), on_decode_warning="reject")
    m = read_manifest(str(out))
    reasons = {r.path: r.reason for r in m.rejects}
    assert reasons["class1/scrambled.jpg"].startswith("corrupt JPEG data (decoder warning)")
    assert [w.path for w in m.warnings] == ["class1/scrambled.jpg"]
    assert summary["rejects"] == 3


def test_dry_run_writes_nothing_and_reports_the_plan(messy, tmp_path, capsys):
    from recordio_flow.flows.cli import main

    out = tmp_path / "never"
    summary = build(
        source=str(messy), output=str(out), dry_run=True, train_ratio=0.5, records_per_shard=5
    )
    assert not out.exists()
    assert summary["dry_run"] is True and summary["images"] == 24
    assert sum(s["records"] for s in summary["splits"].values()) == 24
    assert set(summary["splits"]) == {"train", "val"}
    assert sum(sh["images"] for sh in summary["shards"]) == 24
    assert all(sh["rec"].endswith(".rec") for sh in summary["shards"])
    assert summary["estimated_bytes"] > 0 and summary["sample"]["images"] > 0
    labels = summary["splits"]["train"]["labels"]
    assert set(labels) <= {"0", "1", "2", "3"}  # class0/sub is a class of its own
    from prefect.client.orchestration import get_client
    from prefect.client.schemas.filters import ArtifactFilter, ArtifactFilterKey

    from recordio_flow.tasks.report import artifact_key

    key = artifact_key("dry-run", str(out))
    with get_client(sync_client=True) as client:
        (artifact,) = client.read_artifacts(
            artifact_filter=ArtifactFilter(key=ArtifactFilterKey(any_=[key])), limit=1
        )
    assert "nothing written" in artifact.data and "## Shards" in artifact.data

    # an existing dataset is left exactly as it was; the CLI prints the plan
    existing = tmp_path / "existing"
    build(source=str(messy), output=str(existing))
    before = read_tree(existing)
    rc = main(["build", str(messy), str(existing), "--dry-run", "--dedupe", "drop"])
    printed = capsys.readouterr().out
    assert rc == 0 and read_tree(existing) == before
    assert "dry run: nothing written" in printed and "3 duplicate copies dropped" in printed
    assert "estimated" in printed


def test_dry_run_on_s3_writes_nothing(s3_server, tmp_path):
    bucket = s3_server.make_bucket()
    local = tmp_path / "imgs"
    image_tree(local, classes=2, per_class=3)
    fs = s3_server.fs()
    fs.put(str(local) + "/", f"{bucket}/images/", recursive=True)
    so = {"endpoint_url": s3_server.endpoint_url}
    summary = build(
        source=f"s3://{bucket}/images",
        output=f"s3://{bucket}/datasets/dry",
        storage_options=so,
        dry_run=True,
        dedupe="drop",
    )
    assert summary["images"] == 6
    assert fs.find(f"{bucket}/datasets") == []


def test_empty_and_one_image_datasets(tmp_path):
    empty = tmp_path / "empty"
    empty.mkdir()
    for dry in (False, True):
        with pytest.raises(ValueError, match="no images found"):
            build(source=str(empty), output=str(tmp_path / "o"), dry_run=dry)
    assert not (tmp_path / "o").exists()
    one = tmp_path / "one"
    image_tree(one, classes=1, per_class=1)
    summary = build(
        source=str(one), output=str(tmp_path / "o1"), dedupe="drop", near_duplicate_distance=3
    )
    assert summary["records"] == 1
    assert summary["quality"]["duplicate_groups"] == 0
    assert summary["quality"]["near_duplicate_groups"] == 0
    dry = build(source=str(one), output=str(tmp_path / "o2"), dry_run=True)
    assert dry["images"] == 1 and not (tmp_path / "o2").exists()


@pytest.mark.parametrize("lst", [False, True], ids=["folder", "lst"])
def test_streaming_dedupe_drops_the_copies_the_in_memory_build_drops(messy, tmp_path, lst):
    """dedupe="drop" with streaming=True (issue 19): the copies are found bucket by bucket of
    size on the workers, and the shards, rejects ("duplicate of ..."), duplicate and near
    groups and summary equal the in-memory build's; a dry run counts the same drops."""
    kw = dict(
        source=str(messy),
        train_ratio=0.6,
        test_ratio=0.2,
        records_per_shard=3,
        dedupe="drop",
        near_duplicate_distance=3,
    )
    if lst:
        from recordio_core.building.listing import list_images
        from recordio_core.format.lst import LstEntry, format_lst

        entries = list(list_images(str(messy), recursive=True).entries)
        entries.append(LstEntry(len(entries) + 50, (7.0,), entries[2].path))  # listed twice
        (tmp_path / "u.lst").write_text(format_lst(entries))
        kw["lst"] = str(tmp_path / "u.lst")
    a = build(output=str(tmp_path / "mem"), **kw)
    b = build(output=str(tmp_path / "str"), streaming=True, **kw)
    files = {k: v for k, v in read_tree(tmp_path / "str").items() if not k.startswith(".recflow")}
    want = {k: v for k, v in read_tree(tmp_path / "mem").items() if not k.startswith(".recflow")}
    ma, mb = (json.loads(want.pop("manifest.json")), json.loads(files.pop("manifest.json")))
    assert files == want
    for key in ("splits", "rejects", "duplicates", "near_duplicates", "warnings"):
        assert mb[key] == ma[key], key
    dropped = [r for r in mb["rejects"] if r["reason"].startswith("duplicate of ")]
    assert len(dropped) == (4 if lst else 3)  # the broken pair too
    for key in ("records", "rejects", "images_listed", "splits", "quality", "shards"):
        assert b[key] == a[key], key
    dry = build(output=str(tmp_path / "dry"), streaming=True, dry_run=True, **kw)
    assert dry["dropped"] == len(dropped) and not (tmp_path / "dry").exists()
