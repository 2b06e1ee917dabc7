"""The pipeline's parts without a Prefect server: parameters, plans, cache keys, the commit
lock and manifest commit, reports, and the command line's argument handling."""

from __future__ import annotations

import dataclasses
import inspect
import io
import json
import time
from typing import Annotated

import pytest
from pipeline_fixtures import image_tree  # also sets the Prefect test environment
from pydantic import Field

from recordio_core.building.split import SplitList
from recordio_core.format.lst import LstEntry
from recordio_core.format.manifest import read_manifest
from recordio_flow.flows.param_secrets import secret_paths, split_secrets
from recordio_flow.flows.params import BuildParameters


def params(**kw):
    return BuildParameters(source="/src", output="/out", **kw)


# --------------------------------------------------------------------------- parameters
@pytest.mark.parametrize(
    ("kw", "message"),
    [
        ({"resize": -1}, "greater than or equal to 0"),
        ({"train_ratio": 0.8, "test_ratio": 0.5}, "train_ratio \\+ test_ratio must be <= 1"),
        ({"encoding": ".gif"}, "'.jpg' or '.png'"),
        ({"label_width": 0}, "greater than or equal to 1"),
        ({"quality": 101}, "less than or equal to 100"),
        ({"encoding": ".png", "quality": 95}, "PNG compression level 0-9"),
        ({"chunks": 2}, "chunks > 1 needs split_method='im2rec'"),
        ({"inter_method": 5}, "Input should be 0, 1, 2, 3, 4, 9 or 10"),
        ({"label_width": 2}, "needs a .lst"),
        ({"pass_through": True, "resize": 64}, "pass_through"),
        ({"exts": ["jpg"]}, "extensions look like"),
        ({"records_per_shard": 0}, "greater than or equal to 1"),
        ({"storage_options": {"key": "AKIA", "endpoint_url": "x"}}, "must not hold credentials"),
        ({"storage_options": {"client_kwargs": {"aws_secret_access_key": "s"}}}, "credentials"),
        ({"resise": 3}, "Extra inputs are not permitted"),
    ],
)
def test_invalid_parameters_are_refused_with_the_reason(kw, message):
    with pytest.raises(ValueError, match=message):
        params(**kw)


def test_flow_signature_matches_the_parameter_model():
    from recordio_flow.flows.build import build_dataset

    sig = inspect.signature(build_dataset.fn)
    assert list(sig.parameters) == list(BuildParameters.model_fields)
    defaults = params()
    for name, p in sig.parameters.items():
        if p.default is inspect.Parameter.empty:
            continue
        value = list(p.default) if isinstance(p.default, tuple) else p.default
        assert value == getattr(defaults, name), name


FORM_FIRST = [
    "source",
    "output",
    "resize",
    "label_width",
    "train_ratio",
    "test_ratio",
    "quality",
    "pass_through",
]


def _form_schema(schema: dict) -> list[tuple[str, dict]]:
    return sorted(schema["properties"].items(), key=lambda kv: kv[1]["position"])


def test_every_form_field_has_the_help_text_of_the_command_line():
    """The deployment's parameter schema (what the UI's form shows) describes every field with
    the text `recflow build --help` prints, and puts the most used fields first."""
    from recordio_flow.flows.build import build_dataset

    dep = build_dataset.to_deployment(name="t", parameters={"source": "/a", "output": "/b"})
    form = _form_schema(dep._parameter_openapi_schema.model_dump())
    assert [name for name, _ in form][: len(FORM_FIRST)] == FORM_FIRST
    assert len(form) == len(BuildParameters.model_fields)
    for name, prop in form:
        assert prop.get("description"), f"{name} has no description in the form"
        assert (
            " ".join(BuildParameters.model_fields[name].description.split())
            == (prop["description"])
        )
    assert "label_width > 1" in dict(form)["pack_label"]["description"]


# aliases written as in flows/params.py (module level: annotations are strings here)
Colour = Annotated[str, Field(min_length=1, description="Paint: red, or blue (say 'x: y').")]
Layers = Annotated[int, Field(ge=1, description="How many coats.")]
Width = Annotated[Layers, Field(le=9)]  # an alias of an alias keeps its description


def test_an_alias_in_the_house_style_is_described_automatically():
    from recordio_flow.flows.params import describe_parameters

    @describe_parameters
    def f(colour: Colour, layers: Width = 2, plain: int = 0) -> None:
        """Paint."""

    from prefect.utilities.callables import parameter_schema

    props = parameter_schema(f).model_dump()["properties"]
    assert props["colour"]["description"] == "Paint: red, or blue (say 'x: y')."
    assert props["layers"]["description"] == "How many coats."
    assert props["layers"]["maximum"] == 9 and props["layers"]["minimum"] == 1
    assert "description" not in props["plain"]
    assert f.__doc__.startswith("Paint.\n\nArgs:\n")


def test_flow_validate_parameters_checks_types_before_the_run():
    """What Prefect checks when a run starts (the UI checks the same JSON schema)."""
    from recordio_flow.flows.build import build_dataset

    ok = build_dataset.validate_parameters({"source": "/a", "output": "/b", "resize": "128"})
    assert ok["resize"] == 128
    for bad in ({"resize": -3}, {"encoding": ".bmp"}, {"label_width": 0}, {"test_ratio": 2}):
        with pytest.raises(Exception, match="invalid parameters"):
            build_dataset.validate_parameters({"source": "/a", "output": "/b", **bad})
    schema = build_dataset.parameters.model_dump()
    assert schema["properties"]["encoding"]["enum"] == [".jpg", ".png"]
    assert schema["properties"]["resize"]["minimum"] == 0
    assert set(schema["required"]) == {"source", "output"}


def test_secret_detection():
    so = {"endpoint_url": "http://x", "key": "k", "client_kwargs": {"region_name": "r"}}
    assert secret_paths(so) == ["key"]
    assert secret_paths({"config_kwargs": {"aws_session_token": "t"}}) == [
        "config_kwargs.aws_session_token"
    ]
    public, secret = split_secrets({"endpoint_url": "e", "secret": "s", "token": "t", "anon": 0})
    assert public == {"endpoint_url": "e", "anon": 0} and set(secret) == {"secret", "token"}


# --------------------------------------------------------------------------- planning & keys
def _split(name, split, n, start=0):
    entries = tuple(
        LstEntry(index=start + i, labels=(float(i % 3),), path=f"c{i % 3}/{i}.jpg")
        for i in range(n)
    )
    return SplitList(name, split, None, entries)


def test_jobs_are_named_keyed_and_cover_every_entry():
    from recordio_flow.flows.build_options import key_parameters, pack_options
    from recordio_flow.tasks.plan import make_jobs

    splits = [_split("_val", "val", 3), _split("_train", "train", 25, start=3)]
    kp = key_parameters(pack_options(params()))
    jobs = make_jobs(
        splits,
        source="/src",
        output="s3://b/out",
        records_per_shard=10,
        key_params=kp,
        fingerprints={},
    )
    assert [j.label for j in jobs] == [
        "val/val-00000-of-00001",
        "train/train-00000-of-00003",
        "train/train-00001-of-00003",
        "train/train-00002-of-00003",
    ]
    assert [j.count for j in jobs] == [3, 9, 8, 8]
    assert jobs[1].prefix == f"s3://b/out/train/train-00000-of-00003.{jobs[1].key[:12]}"
    assert [e.index for j in jobs for e in j.entries()] == list(range(28))
    assert jobs[1].entries()[0] == splits[1].entries[0]
    from recordio_flow.flows.build_plan import Planned

    planned = Planned(None, 28, splits, None, jobs)  # the flow's slices equal the decoded jobs
    assert [list(e) for e in planned.job_entries] == [list(j.entries()) for j in jobs]
    assert len({j.key for j in jobs}) == 4
    again = make_jobs(
        splits, source="/src", output="/x", records_per_shard=10, key_params=kp, fingerprints={}
    )
    assert [j.key for j in again] == [j.key for j in jobs]  # output folder is not in the key


# The names of shards already built, from a listing through the stable split to the plan: a
# change here repacks every dataset built before it. The listing order's keys were pinned on
# 2026-12-06 before the hash order became the default; the hash order's on the same day, when
# it did (the one change of names for datasets built with the default).
_PLANNED = [LstEntry(i, (float(i // 4),), f"class{i // 4}/{i % 4}.jpg") for i in range(12)]
_PLANNED_KEYS = {
    "listing": [
        (
            "val/val-00000-of-00001",
            [1, 4, 10],
            "04a2eec4942845767762f6f9a515075a4ce0f601c4952ba761f227312e36d0c5",
        ),
        (
            "train/train-00000-of-00003",
            [0, 2, 3],
            "81251fa934318b09897a0dca8123a71b374463b2f0cf6426469b2d878ecd3ffe",
        ),
        (
            "train/train-00001-of-00003",
            [5, 6, 7],
            "56c77daffa4079d133255285dc87c22ba10a69676b0cae640569d82e25ad0e6f",
        ),
        (
            "train/train-00002-of-00003",
            [8, 9, 11],
            "80a4c858e0991ef0f59316a2dc2e17607e7f11ed41931dd4ea518ab39c4bcc1a",
        ),
    ],
    "hash": [
        (
            "val/val-00000-of-00001",
            [1, 10, 4],
            "0f74aeeb0a69fef85cd66e713e573fb666e355f3037d0d3fb614d304eb010c0e",
        ),
        (
            "train/train-00000-of-00003",
            [7, 5, 9],
            "4d0e4522c6fa1535cd3d970500af92eabfe81941f3e0e4cd5a67874c6595c0b7",
        ),
        (
            "train/train-00001-of-00003",
            [3, 6, 2],
            "8c0f24d336874a26c98119203e31ec48b49bca0a225c76086a21f3db3332201d",
        ),
        (
            "train/train-00002-of-00003",
            [0, 8, 11],
            "814855d66bbcf53287072d72fcf202c4623eef76f1e9700e587bc182d06b0827",
        ),
    ],
}


@pytest.mark.parametrize("order", [None, "hash", "listing"])
def test_planned_shard_keys_do_not_move(order):
    """record_order="listing" with reducing_gap=2.0 (the defaults before 2026-12-07) keeps the
    names (and bytes) of the shards earlier versions built; the defaults now are "hash" and a
    full-size decode. The order is not a key parameter: the entries in order already are."""
    from recordio_core.building.split import stable_split
    from recordio_flow.flows.build_options import key_parameters, pack_options
    from recordio_flow.tasks.plan import make_jobs

    old = {"reducing_gap": 2.0}  # with record_order="listing": the options of before
    p = (
        params()
        if order is None
        else params(record_order=order, **(old if order == "listing" else {}))
    )
    fps = {e.path: f"{100 + e.index}:1.5" for e in _PLANNED}
    jobs = make_jobs(
        stable_split(_PLANNED, train_ratio=0.75, order=p.record_order, seed=p.seed),
        source="/src",
        output="/out",
        records_per_shard=4,
        key_params=key_parameters(pack_options(p)),
        fingerprints=fps,
    )
    got = [(j.label, [e.index for e in j.entries()], j.key) for j in jobs]
    assert got == _PLANNED_KEYS[order or "hash"]


def test_cache_key_covers_byte_parameters_not_workers():
    from recordio_flow.flows.build_options import key_parameters, pack_options
    from recordio_flow.tasks.pack import pack_cache_key
    from recordio_flow.tasks.plan import make_jobs

    def key(p, workers=1):
        kp = key_parameters(pack_options(p, workers))
        jobs = make_jobs(
            [_split("", "all", 5)],
            source="/src",
            output="/out",
            records_per_shard=10,
            key_params=kp,
            fingerprints={},
        )
        return pack_cache_key(None, {"job": jobs[0]})

    base = key(params())
    assert base.startswith("pack-") and key(params(), workers=8) == base
    assert key(params(num_workers=3)) == base and key(params(records_per_shard=7)) == base
    for change in (
        {"resize": 128},
        {"quality": 90},
        {"encoding": ".png", "quality": 3},
        {"color": 0},
        {"center_crop": True},
        {"inter_method": 2},
        {"max_pixels": 1000},
        {"reducing_gap": 2.0},
    ):
        assert key(params(**change)) != base, change
    lw = params(lst="/l.lst", label_width=2)
    assert key(lw) != key(params(lst="/l.lst"))
    # the key follows the bytes: one label is stored the same with or without pack_label, and
    # an empty pack_label packs several labels, like pack_label=True
    assert key(params(pack_label=True)) == key(params(pack_label=False)) == base
    assert key(lw) == key(params(lst="/l.lst", label_width=2, pack_label=True))
    assert key(lw) != key(params(lst="/l.lst", label_width=2, pack_label=False))


@pytest.mark.parametrize(
    ("label_width", "pack_label", "packs"),
    [(1, None, False), (1, True, False), (1, False, False)]
    + [(4, None, True), (4, True, True), (4, False, False)],
)
def test_pack_label_left_empty_packs_several_labels(label_width, pack_label, packs):
    p = params(lst="/l.lst", label_width=label_width, pack_label=pack_label)
    assert p.packs_labels is packs


def test_records_per_shard_is_raised_to_cap_the_shard_count():
    from recordio_flow.tasks.plan import effective_records_per_shard

    assert effective_records_per_shard([100, 10], 50, 256) == 50
    rps = effective_records_per_shard([100_000, 30, 0], 10, 20)
    from recordio_core.building.plan import num_shards_for

    assert sum(num_shards_for(n, records_per_shard=rps) for n in [100_000, 30, 0]) <= 20


@pytest.mark.parametrize(
    ("size", "records_per_shard", "shards"),
    [
        (100_000, None, 3),  # photos: 2,000 per shard, as always
        (1_000, None, 1),  # 1 KB files: 64 MiB of them per shard
        (1_000, 1000, 5),  # asked for: exactly that
        (None, None, 3),  # sizes unknown: 2,000 per shard
    ],
)
def test_plan_shards_sizes_shards_by_bytes_unless_told(tmp_path, size, records_per_shard, shards):
    from recordio_core.building.split import SplitList
    from recordio_core.format.lst import LstEntry
    from recordio_flow.tasks.common import Carry
    from recordio_flow.tasks.plan import plan_shards

    entries = tuple(LstEntry(i, (0.0,), f"c/{i}.jpg") for i in range(5000))
    prints = {e.path: f"{size}:1.0" if size else "unknown" for e in entries}
    jobs = plan_shards.fn(
        Carry([SplitList("", "all", None, entries)]),
        source=str(tmp_path / "src"),
        output=str(tmp_path / "out"),
        records_per_shard=records_per_shard,
        key_params={},
        max_shards=256,
        fingerprints=Carry(prints),
    )
    assert len(jobs) == shards
    assert sum(j.count for j in jobs) == 5000


def test_retry_condition_only_retries_transient_errors():
    from recordio_flow.tasks.common import is_transient

    assert is_transient(OSError("reset")) and is_transient(ConnectionError("x"))
    assert is_transient(TimeoutError()) and is_transient(RuntimeError("unknown"))
    assert not is_transient(ValueError("bad list")) and not is_transient(None)


# --------------------------------------------------------------------------- commit & lock
def test_commit_lock_is_exclusive_and_recovers_stale_locks(tmp_path):
    from recordio_flow.tasks.commit import LOCK_NAME, LockBusy, commit_lock

    out = str(tmp_path)
    with commit_lock(out, "run-a"):
        assert json.loads((tmp_path / LOCK_NAME).read_text())["owner"] == "run-a"
        with (
            pytest.raises(LockBusy, match="held by run run-a"),
            commit_lock(out, "run-b", wait_seconds=0.3),
        ):
            pass
    assert not (tmp_path / LOCK_NAME).exists()
    (tmp_path / LOCK_NAME).write_text(json.dumps({"owner": "dead", "time": time.time() - 3600}))
    with commit_lock(out, "run-c"):
        assert json.loads((tmp_path / LOCK_NAME).read_text())["owner"] == "run-c"
    assert not (tmp_path / LOCK_NAME).exists()


def test_commit_lock_on_s3(s3_server):
    from recordio_flow.tasks.commit import LockBusy, commit_lock

    bucket = s3_server.make_bucket()
    out = f"s3://{bucket}/ds"
    so = s3_server.storage_options
    with (
        commit_lock(out, "one", so),
        pytest.raises(LockBusy),
        commit_lock(out, "two", so, wait_seconds=0.3),
    ):
        pass
    with commit_lock(out, "three", so):
        pass
    assert not s3_server.fs().exists(f"{bucket}/ds/.recflow.lock")


def _fake_result(out, split, name, payload: bytes):
    import hashlib

    from recordio_core.building.pack import ShardResult

    prefix = f"{out}/{split}/{name}"
    (tmp := __import__("pathlib").Path(f"{out}/{split}")).mkdir(parents=True, exist_ok=True)
    for ext, data in ((".rec", payload), (".idx", b"0\t0\n"), (".lst", b"0\t0.000000\ta.jpg\n")):
        (tmp / f"{name}{ext}").write_bytes(data)
    return ShardResult(
        rec=prefix + ".rec",
        idx=prefix + ".idx",
        lst=prefix + ".lst",
        records=1,
        bytes=len(payload),
        sha256=hashlib.sha256(payload).hexdigest(),
        idx_sha256="",
        lst_sha256="",
        rejects=(),
    )


def test_commit_writes_manifest_last_and_prunes_the_previous_dataset(tmp_path):
    from recordio_core.format.manifest import RejectEntry
    from recordio_flow.tasks.commit import build_manifest, commit_dataset

    out = str(tmp_path / "ds")
    old = _fake_result(out, "all", "all-00000-of-00001.aaaa", b"old")
    m1 = build_manifest(
        output=out,
        parameters={"resize": 0},
        class_map={"c": 0},
        split_names=["all"],
        results=[("all", old)],
        rejects=[RejectEntry("bad.jpg", "empty file", 3)],
    )
    url = commit_dataset.fn(m1, output=out, owner="r1")
    assert read_manifest(url).splits["all"].shards[0].rec == "all/all-00000-of-00001.aaaa.rec"
    assert (tmp_path / "ds/rejects.jsonl").read_text().count("bad.jpg") == 1
    assert json.loads((tmp_path / "ds/class_map.json").read_text()) == {"c": 0}
    new = _fake_result(out, "all", "all-00000-of-00001.bbbb", b"new")
    m2 = build_manifest(
        output=out,
        parameters={"resize": 64},
        class_map={"c": 0},
        split_names=["all"],
        results=[("all", new)],
        rejects=[],
    )
    commit_dataset.fn(m2, output=out, owner="r2")
    assert sorted(p.name for p in (tmp_path / "ds/all").iterdir()) == [
        "all-00000-of-00001.bbbb.idx",
        "all-00000-of-00001.bbbb.lst",
        "all-00000-of-00001.bbbb.rec",
    ]
    assert read_manifest(out).parameters == {"resize": 64}
    # a manifest is never written when a file it names is gone
    (tmp_path / "ds/all/all-00000-of-00001.bbbb.idx").unlink()
    with pytest.raises(FileNotFoundError, match="disappeared before the commit"):
        commit_dataset.fn(m2, output=out, owner="r3")


# --------------------------------------------------------------------------- reports
def test_summary_markdown_and_table():
    from recordio_core.format.manifest import Manifest, RejectEntry, SplitEntry
    from recordio_flow.tasks.report import (
        ShardOutcome,
        artifact_key,
        build_summary,
        shard_table,
        summary_markdown,
    )

    outcomes = [
        ShardOutcome("train", "train-00000-of-00001", "t.rec", 4, 400, "f" * 64, 1, False),
        ShardOutcome("val", "val-00000-of-00001", "v.rec", 1, 100, "e" * 64, 0, True),
    ]
    outcomes[0].labels.update({"0": 3, "1": 1})
    outcomes[1].labels.update({"1": 1})
    manifest = Manifest(
        parameters={},
        class_map={"cats": 0, "dogs": 1},
        splits={"train": SplitEntry(()), "val": SplitEntry(())},
        rejects=(RejectEntry("dogs/x.jpg", "empty file", 9),),
    )
    summary = build_summary(
        output="s3://b/ds",
        manifest_url="s3://b/ds/manifest.json",
        manifest=manifest,
        outcomes=outcomes,
        seconds=2.0,
        listed=6,
    )
    assert summary["shards_packed"] == 1 and summary["shards_cached"] == 1
    assert summary["splits"]["train"]["labels"] == {"0": 3, "1": 1}
    md = summary_markdown(summary, manifest.class_map, list(manifest.rejects))
    assert "| cats | 0 | 3 | 0 |" in md and "| dogs | 1 | 1 | 1 |" in md
    assert "`dogs/x.jpg`: empty file" in md
    table = shard_table(outcomes)
    assert table[1]["status"] == "reused" and table[0]["sha256"] == "f" * 16
    key = artifact_key("dataset", "s3://My_Bucket/data sets/")
    assert key == "dataset-s3-my-bucket-data-sets"
    assert "**Labels:**" not in md and "data:image" not in md
    # several labels: the summary says where they are; a contact sheet is embedded
    for packed, words in ((True, "all in each record's header"), (False, "only the first")):
        multi = dataclasses.replace(manifest, parameters={"label_width": 4, "pack_label": packed})
        summary = build_summary(
            output="o", manifest_url="o/m", manifest=multi, outcomes=outcomes, seconds=1, listed=6
        )
        assert summary["label_width"] == 4 and summary["labels_in_header"] is packed
        assert words in summary_markdown(summary, {}, [])
    md = summary_markdown(summary, {}, [], sheet_png=b"\x89PNG")
    assert "![contact sheet](data:image/png;base64,iVBORw==)" in md


def test_summary_contact_sheet_shows_a_few_packed_records_per_class(tmp_path):
    from PIL import Image

    from recordio_core.building.pack import PackOptions, pack_shard
    from recordio_core.reading.inspect import sheet_from_records
    from recordio_flow.tasks.report import sheet_picks

    src = tmp_path / "src"
    image_tree(src, classes=3, per_class=6)
    entries = [
        LstEntry(
            i, (float(i // 6),), f"class{i // 6}/img{i % 6:02d}{'.png' if i % 3 == 2 else '.jpg'}"
        )
        for i in range(18)
    ]
    entries.append(LstEntry(18, (0.5,), "class0/img00.jpg"))  # not a whole class number
    shard = pack_shard(entries, str(src), str(tmp_path / "s"), PackOptions())
    picks = sheet_picks([(shard.rec, shard.idx, entries, [1])], per_class=4, max_classes=2)
    assert [(p.cls, p.key) for p in picks] == [(0, 0), (0, 2), (0, 3), (0, 4)] + [
        (1, k) for k in (6, 7, 8, 9)
    ]
    png = sheet_from_records(picks, {"0": 6, "1": 6}, {0: "class0", 1: "class1"})
    assert len(png) < 40_000  # small enough to embed in a markdown artifact
    with Image.open(io.BytesIO(png)) as im:
        assert im.format == "PNG" and im.height < 2 * 60 and im.width > 4 * 48


# --------------------------------------------------------------------------- command line
def test_build_options_mirror_the_parameters(capsys):
    from recordio_flow.flows.cli import main

    with pytest.raises(SystemExit):
        main(["build", "--help"])
    text = capsys.readouterr().out
    for name in BuildParameters.model_fields:
        if name not in ("source", "output"):
            assert "--" + name.replace("_", "-") in text, name
    assert "--no-recursive" in text and "--dask-address" in text


def test_build_refuses_bad_options_before_starting_prefect(tmp_path, capsys):
    from recordio_flow.flows.cli import main

    rc = main(
        ["build", str(tmp_path), str(tmp_path / "o"), "--train-ratio", "0.9", "--test-ratio", "0.2"]
    )
    assert rc == 2
    err = capsys.readouterr().err
    assert "train_ratio + test_ratio must be <= 1" in err
    assert not (tmp_path / "o").exists()


def test_build_keeps_credentials_out_of_the_parameters(monkeypatch):
    import fsspec.config

    from recordio_flow.flows.cli import build_parser
    from recordio_flow.flows.cmd_build import parameters_from_args

    monkeypatch.setattr(fsspec.config, "conf", {})
    args = build_parser().parse_args(
        [
            "build",
            "s3://b/src",
            "s3://b/out",
            "--resize",
            "64",
            "--no-recursive",
            "--storage-options",
            '{"endpoint_url": "http://h:1", "key": "AK", "secret": "SEKRIT"}',
        ]
    )
    values = parameters_from_args(args)
    assert values["storage_options"] == {"endpoint_url": "http://h:1"}
    assert values["resize"] == 64 and values["recursive"] is False
    assert "SEKRIT" not in json.dumps(values)
    assert fsspec.config.conf["s3"] == {"key": "AK", "secret": "SEKRIT"}
    BuildParameters(**values)


def test_serve_param_parsing():
    from recordio_flow.flows.cmd_serve import parse_params

    assert parse_params(["resize=128", "encoding=.png", "pass_through=true"]) == {
        "resize": 128,
        "encoding": ".png",
        "pass_through": True,
    }
    with pytest.raises(ValueError, match="build-dataset parameter"):
        parse_params(["size=3"])


def test_image_tree_helper_is_deterministic(tmp_path):
    a = image_tree(tmp_path / "a", classes=2, per_class=3)
    b = image_tree(tmp_path / "b", classes=2, per_class=3)
    assert a == b and len(a) == 6


def test_debris_of_killed_runs_is_removed_only_when_old(tmp_path):
    import os

    from recordio_flow.tasks.commit import remove_debris

    folder = tmp_path / "train"
    folder.mkdir()
    old = folder / ".train-00000-of-00001.abc.rec.tmp-123"
    young = folder / ".train-00001-of-00002.abc.rec.tmp-456"
    keep = folder / "train-00000-of-00001.abc.rec"
    for p in (old, young, keep):
        p.write_bytes(b"x")
    os.utime(old, (time.time() - 7200, time.time() - 7200))
    os.utime(keep, (time.time() - 7200, time.time() - 7200))
    assert remove_debris(str(tmp_path), ["train", "missing"], None) == [f"train/{old.name}"]
    assert young.exists() and keep.exists() and not old.exists()


def test_serve_refuses_bad_defaults_before_starting(capsys):
    from recordio_flow.flows.cli import main

    assert main(["serve", "--param", "resize=-2"]) == 2
    assert "resize" in capsys.readouterr().err
    assert main(["serve", "--storage-options", '{"secret": "x"}']) == 2
    assert "credentials" in capsys.readouterr().err
