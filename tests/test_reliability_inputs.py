"""Reliability: bad inputs. Every bad image is a recorded reject or kept, never a crash and
never a silent gap (listed == packed + rejected), through the flow and through `recflow
im2rec`; invalid parameters are refused before any work with a message saying what is
allowed; hostile `.rec`/`.idx` files give the reader and validator a clear error in bounded
memory."""

from __future__ import annotations

import json
import os
import re
import struct
import tracemalloc
from pathlib import Path

import imagecases as ic
import pytest
from badfiles import DENIED_MARK, accounted, check_outcomes, write_catalogue
from pipeline_fixtures import (
    image_tree,
    prefect_harness,  # noqa: F401  (the shared server fixture)
)

from recordio_core.format.idx import read_idx
from recordio_core.format.lst import read_lst
from recordio_core.format.manifest import read_manifest

# the catalogue's 1e8-pixel header is over Pillow's warning limit (and refused by ours)
pytestmark = pytest.mark.filterwarnings("ignore::PIL.Image.DecompressionBombWarning")

SPECIAL = {
    "bad/vanish.jpg": "not found",  # removed between listing and packing
    f"bad/{DENIED_MARK}.jpg": "permission denied",  # unreadable
}


def make_source(root: Path) -> tuple[dict, list[str]]:
    """A class of good images, the catalogue, and the two special files; returns the
    catalogue and every image path (the listing)."""
    image_tree(root, classes=1, per_class=4)
    cases = write_catalogue(root, "bad")
    for rel in SPECIAL:
        (root / rel).write_bytes(ic.rgb_jpeg(seed=5))
    listed = sorted(p.relative_to(root).as_posix() for p in root.rglob("*") if p.is_file())
    return cases, listed


def check_everything_accounted(
    cases: dict, listed: list[str], packed: list[str], rejects: dict[str, str]
) -> None:
    assert accounted(listed, packed, rejects) == []
    assert check_outcomes(cases, packed, rejects) == []
    for rel, word in SPECIAL.items():
        assert word in rejects.get(rel, "").lower(), (rel, rejects.get(rel))
    assert {f"class0/img{i:02d}.{'png' if i == 2 else 'jpg'}" for i in range(4)} <= set(packed)


@pytest.mark.slow
@pytest.mark.usefixtures("prefect_harness")
def test_bad_images_through_the_flow(tmp_path, monkeypatch, capsys):
    from prefect.client.orchestration import get_client
    from prefect.client.schemas.filters import ArtifactFilter, ArtifactFilterKey

    import recordio_flow.tasks.pack
    from recordio_flow.flows.build import build_dataset
    from recordio_flow.flows.cli import main
    from recordio_flow.tasks.report import artifact_key

    root = tmp_path / "src"
    cases, listed = make_source(root)
    real_pack = recordio_flow.tasks.pack.pack_shard

    def pack_after_a_file_vanished(*args, **kwargs):
        (root / "bad" / "vanish.jpg").unlink(missing_ok=True)
        return real_pack(*args, **kwargs)

    monkeypatch.setattr(recordio_flow.tasks.pack, "pack_shard", pack_after_a_file_vanished)
    out = tmp_path / "out"
    summary = build_dataset(
        source=f"denied://{root}", output=str(out), resize=32, records_per_shard=12
    )

    m = read_manifest(str(out))
    packed = [e.path for _, s in m.shards() for e in read_lst(str(out / s.lst))]
    rejects = {r.path: r.reason for r in m.rejects}
    assert len(rejects) == len(m.rejects)  # one reject per image
    check_everything_accounted(cases, listed, packed, rejects)
    assert summary["images_listed"] == len(listed) == summary["records"] + summary["rejects"]
    # rejects.jsonl beside the manifest says the same
    lines = (out / "rejects.jsonl").read_text().splitlines()
    assert {json.loads(x)["path"]: json.loads(x)["reason"] for x in lines} == rejects
    # and the run's summary artifact
    with get_client(sync_client=True) as client:
        found = client.read_artifacts(
            artifact_filter=ArtifactFilter(
                key=ArtifactFilterKey(any_=[artifact_key("dataset", str(out))])
            )
        )
    assert f"**{len(rejects)}** rejects" in found[0].data
    assert "bad/bomb_20000x20000.png" in found[0].data
    # what was packed is a valid dataset
    assert main(["validate", str(out)]) == 0, capsys.readouterr()


def test_bad_images_through_recflow_im2rec(tmp_path, capsys):
    from recordio_flow.flows.cli import main

    root = tmp_path / "src"
    cases, listed = make_source(root)
    prefix = str(tmp_path / "lists" / "data")
    os.makedirs(tmp_path / "lists")
    assert (
        main(["im2rec", "--list", "--recursive", "--no-shuffle", prefix, f"denied://{root}"]) == 0
    )
    (root / "bad" / "vanish.jpg").unlink()  # gone between --list and packing
    capsys.readouterr()
    rc = main(["im2rec", prefix, f"denied://{root}", "--resize", "32", "--num-thread", "2"])
    text = capsys.readouterr().out
    assert rc == 0
    entries = read_lst(prefix + ".lst")
    assert sorted(e.path for e in entries) == listed
    keys = {k for k, _ in read_idx(prefix + ".idx")}
    packed = [e.path for e in entries if e.index in keys]
    rejects = dict(re.findall(r"^  rejected \d+ (.+?): (.+)$", text, flags=re.M))
    check_everything_accounted(cases, listed, packed, rejects)
    assert f"{len(keys)} records" in text and f"{len(rejects)} rejected" in text


def test_broken_links_and_special_files_are_reported_not_dropped(tmp_path, capsys):
    """im2rec.py silently skips names that are not regular files; a broken link to an image
    is an image gone missing, so the listing reports it (and the flow records a reject)."""
    from recordio_core.building.listing import list_images
    from recordio_flow.flows.cli import main

    root = tmp_path / "src"
    image_tree(root, classes=1, per_class=2)
    (root / "class0" / "moved.jpg").symlink_to(tmp_path / "gone.jpg")
    os.mkfifo(root / "class0" / "pipe.jpg")
    (root / "class0" / "alias.jpg").symlink_to(root / "class0" / "img00.jpg")
    (root / "class0" / "sub.jpg").mkdir()  # a folder named like an image: not an image
    listing = list_images(str(root), recursive=True)
    assert [e.path for e in listing.entries] == [
        "class0/alias.jpg",
        "class0/img00.jpg",
        "class0/img01.jpg",
    ]
    assert dict(listing.skipped) == {
        "class0/moved.jpg": "broken symbolic link (its target does not exist)",
        "class0/pipe.jpg": "not a regular file (a FIFO, socket or device)",
    }
    assert main(["im2rec", "--list", "--recursive", str(tmp_path / "d"), str(root)]) == 0
    err = capsys.readouterr().err
    assert "skipped 'class0/moved.jpg': broken symbolic link" in err and "pipe.jpg" in err


@pytest.mark.skipif(os.geteuid() == 0, reason="root reads chmod 000 files; denied:// covers it")
def test_unreadable_permissions_on_the_real_filesystem(tmp_path):
    from recordio_core.building.pack import PackOptions, pack_shard

    root = tmp_path / "src"
    image_tree(root, classes=1, per_class=2)
    locked = root / "class0" / "img00.jpg"
    locked.chmod(0)
    try:
        from recordio_core.building.listing import list_images

        entries = list_images(str(root), recursive=True).entries
        result = pack_shard(entries, str(root), str(tmp_path / "o"), PackOptions())
    finally:
        locked.chmod(0o644)
    assert result.records == 1 and [r.reason for r in result.rejects] == ["permission denied"]


def test_decompression_bomb_limit_is_honoured_and_configurable(tmp_path):
    from recordio_core.images.image import ImageError, ImageOptions, transform_image
    from recordio_flow.flows.build_options import pack_options
    from recordio_flow.flows.params import BuildParameters

    normal = ic.rgb_jpeg(64, 48)
    assert transform_image(normal, ImageOptions())  # 3072 pixels: fine by default
    with pytest.raises(ImageError, match="over the limit of 1000"):
        transform_image(normal, ImageOptions(max_pixels=1000))
    header = ic.png_header_only(10000, 10000)  # 1e8 pixels: over Pillow's default limit
    with pytest.raises(ImageError, match="over the limit"):
        transform_image(header, ImageOptions())
    with pytest.raises(ImageError, match="truncated"):  # limit raised: decoding is attempted
        transform_image(header, ImageOptions(max_pixels=150_000_000))
    with pytest.raises(ImageError, match="bomb"):  # Pillow's own ceiling (2x its limit) stays
        transform_image(ic.png_header_only(20000, 20000), ImageOptions(max_pixels=None))
    # the flow parameter reaches the packer
    p = BuildParameters(source="a", output="b", max_pixels=1000)
    assert pack_options(p).image.max_pixels == 1000


# --------------------------------------------------------------------------- parameters

BAD_PARAMETERS = [
    ({"resize": -1}, "greater than or equal to 0"),
    ({"quality": 101}, "less than or equal to 100"),
    ({"encoding": ".png", "quality": 50}, "PNG compression level 0-9"),
    ({"encoding": ".gif"}, "'.jpg' or '.png'"),
    ({"color": 2}, "-1, 0 or 1"),
    ({"label_width": 0}, "greater than or equal to 1"),
    ({"label_width": 2}, "needs a .lst"),
    ({"train_ratio": 1.5}, "less than or equal to 1"),
    ({"train_ratio": 0.8, "test_ratio": 0.3}, "train_ratio + test_ratio must be <= 1"),
    ({"chunks": 3}, "needs split_method='im2rec'"),
    ({"chunks": 0}, "greater than or equal to 1"),
    ({"records_per_shard": 0}, "greater than or equal to 1"),
    ({"num_workers": -1}, "greater than or equal to 0"),
    ({"reject_policy": "ignore"}, "'skip' or 'fail'"),
    ({"max_reject_fraction": 2.0}, "less than or equal to 1"),
    ({"inter_method": 5}, "0, 1, 2, 3, 4, 9 or 10"),
    ({"verify": "maybe"}, "'none', 'header' or 'decode'"),
    ({"split_method": "random"}, "'stable' or 'im2rec'"),
    ({"exts": ["jpg"]}, "look like '.jpg'"),
    ({"exts": []}, "at least 1 item"),
    ({"max_pixels": 0}, "greater than or equal to 1"),
    ({"reducing_gap": 0.5}, "greater than or equal to 1"),
    ({"pass_through": True, "resize": 32}, "cannot be combined with resize"),
    ({"output": "/data/src/"}, "different folder than source"),
    ({"resise": 32}, "Extra inputs are not permitted"),
    ({"storage_options": {"endpoint_url": "http://h", "secret": "S3CR3T-XYZ"}}, "credentials"),
    ({"source": "ftp://bob:S3CR3T-XYZ@host/imgs"}, "must not carry a password"),
    ({"output": "https://bob:S3CR3T-XYZ@host/out"}, "must not carry a password"),
]


@pytest.mark.parametrize(("change", "message"), BAD_PARAMETERS)
def test_invalid_parameters_are_refused_saying_what_is_allowed(change, message):
    from pydantic import ValidationError

    from recordio_flow.flows.params import BuildParameters

    with pytest.raises(ValidationError) as info:
        BuildParameters(**{"source": "/data/src", "output": "/data/out", **change})
    text = str(info.value)
    assert message in text
    field = next(iter(change))
    assert field in text or "train_ratio" in text or "output" in text
    assert "S3CR3T-XYZ" not in text  # an error never echoes a value back


@pytest.mark.slow
@pytest.mark.usefixtures("prefect_harness")
def test_invalid_parameters_stop_the_flow_before_any_work(tmp_path):
    from recordio_flow.flows.build import build_dataset

    src = tmp_path / "src"
    image_tree(src, classes=1, per_class=2)
    secret = [case for case in BAD_PARAMETERS if "storage_options" in case[0]]
    for change, message in BAD_PARAMETERS[:1] + secret:
        out = tmp_path / "out"
        state = build_dataset(source=str(src), output=str(out), **change, return_state=True)
        assert state.is_failed()
        text = str(state.result(raise_on_failure=False))
        assert message in text and "S3CR3T-XYZ" not in text
        assert not out.exists()


@pytest.mark.slow
@pytest.mark.usefixtures("prefect_harness")
def test_a_shard_result_that_loses_an_image_fails_the_run(tmp_path, monkeypatch):
    """The flow's own count check: a pack result must account for every planned image."""
    import dataclasses

    import recordio_flow.tasks.pack
    from recordio_flow.flows.build import build_dataset

    src = tmp_path / "src"
    image_tree(src, classes=1, per_class=3)
    (src / "class0" / "empty.jpg").write_bytes(b"")
    real_pack = recordio_flow.tasks.pack.pack_shard

    def pack_forgetting_rejects(*args, **kwargs):
        return dataclasses.replace(real_pack(*args, **kwargs), rejects=())

    monkeypatch.setattr(recordio_flow.tasks.pack, "pack_shard", pack_forgetting_rejects)
    out = tmp_path / "out"
    state = build_dataset(source=str(src), output=str(out), return_state=True)
    assert state.is_failed()
    assert "4 images planned but 3 packed and 0 rejected" in str(
        state.result(raise_on_failure=False)
    )
    assert not (out / "manifest.json").exists()


@pytest.mark.parametrize(
    ("argv", "message"),
    [
        (["build", "SRC", "OUT", "--resize", "-3"], "greater than or equal to 0"),
        (["build", "SRC", "OUT", "--train-ratio", "0.9", "--test-ratio", "0.2"], "<= 1"),
        (["build", "SRC", "OUT", "--encoding", ".png", "--quality", "90"], "0-9"),
        (["im2rec", "P", "SRC", "--resize", "-1"], "--resize must be >= 0"),
        (["im2rec", "P", "SRC", "--quality", "101"], "JPEG quality 0-100"),
        (["im2rec", "P", "SRC", "--num-thread", "0"], "--num-thread must be >= 1"),
        (["im2rec", "P", "SRC", "--list", "--exts", "jpg"], "must start with '.'"),
        (["im2rec", "P", "SRC", "--list", "--train-ratio", "1.2"], "must be in [0, 1]"),
        (["pack", "L.lst", "SRC", "OUT.rec", "resise=3"], "unknown option 'resise'"),
        (["pack", "L.lst", "SRC", "OUT.rec", "quality=x"], "quality must be an integer"),
        (["pack", "L.lst", "SRC", "OUT.rec", "part=2", "nsplit=2"], "part must be in [0, nsplit"),
        (["pack", "L.lst", "SRC", "OUT.rec", "allow_outside_root=2"], "must be 0 or 1"),
    ],
)
def test_invalid_command_line_options_are_refused_before_any_work(tmp_path, argv, message, capsys):
    from recordio_flow.flows.cli import main

    names = {"SRC": "src", "OUT": "out", "P": "p", "L.lst": "l.lst", "OUT.rec": "out.rec"}
    argv = [str(tmp_path / names[a]) if a in names else a for a in argv]
    assert main(argv) == 2
    assert message in capsys.readouterr().err
    assert list(tmp_path.iterdir()) == []  # nothing was read, nothing written


# --------------------------------------------------------------------------- hostile .rec/.idx


def _hostile_files(tmp_path: Path) -> dict[str, tuple[bytes, bytes]]:
    from recordio_core.format.framing import MAGIC, frame_record
    from recordio_core.format.recordio import IRHeader, pack

    good = frame_record(pack(IRHeader(0, 1.0, 0, 0), ic.rgb_jpeg()))
    rng = __import__("numpy").random.default_rng(0)
    return {
        # a part header claiming 512 MiB in a 64-byte file
        "huge_length": (struct.pack("<II", MAGIC, (1 << 29) - 1) + b"\0" * 56, b"0\t0\n"),
        # a multi-part record whose second part claims 256 MiB
        "multipart": (
            struct.pack("<II", MAGIC, (1 << 29) | 8)
            + b"x" * 8
            + struct.pack("<II", MAGIC, (2 << 29) | (1 << 28))
            + b"y" * 16,
            b"0\t0\n",
        ),
        "random_bytes": (rng.integers(0, 256, 1 << 20, dtype="uint8").tobytes(), b"0\t0\n"),
        # an image header declaring 2**31 labels
        "label_count": (frame_record(struct.pack("<IfQQ", 2**31, 0.0, 0, 0) + b"abc"), b"0\t0\n"),
        # a record holding a decompression bomb's header
        "bomb_record": (
            frame_record(pack(IRHeader(0, 1.0, 0, 0), ic.png_header_only(20000, 20000))),
            b"0\t0\n",
        ),
        "idx_past_end": (good, b"0\t0\n1\t4000000000000\n"),
        "idx_huge_number": (good, b"0\t0\n1\t" + b"9" * 5000 + b"\n"),
        "idx_negative": (good, b"0\t-4\n"),
        "idx_binary": (good, rng.integers(0, 256, 4096, dtype="uint8").tobytes()),
        "idx_one_column": (good, b"0\n"),
        "empty_rec": (b"", b"0\t0\n"),
    }


def test_hostile_rec_and_idx_give_clear_errors_in_bounded_memory(tmp_path):
    from recordio_core.building.validate import validate_shard
    from recordio_core.format.errors import IndexFileError, RecordIOError
    from recordio_core.format.recordio import MXIndexedRecordIO, MXRecordIO
    from recordio_core.reading.reader import ImageRecordIter

    for name, (rec_bytes, idx_bytes) in _hostile_files(tmp_path).items():
        rec, idx = tmp_path / f"{name}.rec", tmp_path / f"{name}.idx"
        rec.write_bytes(rec_bytes)
        idx.write_bytes(idx_bytes)
        tracemalloc.start()
        try:
            report = validate_shard(str(rec), str(idx), decode=True)
            assert not report.ok and report.problems, name
            assert str(rec) in " ".join(report.problems) or str(idx) in " ".join(report.problems)
            with pytest.raises((RecordIOError, IndexFileError)) as info:
                reader = ImageRecordIter(
                    str(rec), path_imgidx=str(idx), data_shape=(3, 8, 8), batch_size=1
                )
                next(iter(reader))
            assert f"{name}." in str(info.value), (name, info.value)
            try:
                r = MXIndexedRecordIO(str(idx), str(rec), "r")
                r.read_idx(r.keys[0])
                r.close()
            except (RecordIOError, IndexFileError) as exc:
                assert f"{name}." in str(exc)
            if name.startswith(("huge", "multi", "random")):
                with pytest.raises(RecordIOError, match="offset 0"):
                    MXRecordIO(str(rec), "r").read()
            peak = tracemalloc.get_traced_memory()[1]
        finally:
            tracemalloc.stop()
        assert peak < len(rec_bytes) + len(idx_bytes) + (8 << 20), (name, peak)


def test_recflow_validate_on_a_hostile_shard_exits_nonzero(tmp_path, capsys):
    from recordio_flow.flows.cli import main

    rec_bytes, idx_bytes = _hostile_files(tmp_path)["huge_length"]
    (tmp_path / "h.rec").write_bytes(rec_bytes)
    (tmp_path / "h.idx").write_bytes(idx_bytes)
    assert main(["validate", str(tmp_path / "h")]) == 1
    assert "declares 536870911 bytes" in capsys.readouterr().out


def test_validate_decode_refuses_a_bomb_record_instead_of_decoding_it(tmp_path, capsys):
    """1e8 pixels: under Pillow's hard ceiling (2x its limit), so only our limit stops the
    validator from allocating ~300 MB for it."""
    from recordio_core.format.framing import frame_record
    from recordio_core.format.recordio import IRHeader, pack
    from recordio_flow.flows.cli import main

    record = frame_record(pack(IRHeader(0, 0.0, 0, 0), ic.png_header_only(10000, 10000)))
    (tmp_path / "b.rec").write_bytes(record)
    (tmp_path / "b.idx").write_text("0\t0\n")
    prefix = str(tmp_path / "b")
    tracemalloc.start()
    try:
        assert main(["validate", prefix, "--decode"]) == 1
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    assert "over the limit of 89478485" in capsys.readouterr().out and peak < 16 << 20
    assert main(["validate", prefix]) == 0  # framing and index are fine
    assert main(["validate", prefix, "--decode", "--max-pixels", "-1"]) == 2
    assert "--max-pixels must be >= 0" in capsys.readouterr().err
