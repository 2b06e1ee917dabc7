"""`inspect_dataset` and `recflow inspect`."""

from __future__ import annotations

import json

import numpy as np
import pytest
from PIL import Image
from reader_data import make_dataset, make_raw_records, write_manifest

from recordio_core.format.recordio import IRHeader, pack, pack_img
from recordio_core.reading.inspect import contact_sheet, inspect_dataset
from recordio_flow.flows.cli import main


@pytest.fixture(scope="module")
def dataset(tmp_path_factory):
    folder = tmp_path_factory.mktemp("insp")
    a = make_dataset(str(folder), "train-0", n=10, seed=1)
    b = make_dataset(str(folder), "train-1", n=5, start_id=100, seed=2)
    v = make_dataset(str(folder), "val-0", n=3, start_id=500, seed=3)
    manifest = write_manifest(str(folder), {"train": [a, b], "val": [v]})
    return folder, a, b, manifest


def test_counts_histograms_and_sheet(dataset, tmp_path):
    folder, a, b, manifest = dataset
    sheet = str(tmp_path / "sheet.png")
    report = inspect_dataset(manifest, split="train", sheet=sheet, per_class=4, thumb=32)
    assert (report.shards, report.records, report.complete) == (2, 15, True)
    assert report.labels == {"0": 6, "1": 5, "2": 4}
    assert report.class_names == {"0": "cat", "1": "dog", "2": "eel"}
    assert sum(report.sizes.values()) == 15 and report.formats == {"JPEG": 15}
    assert report.size_buckets == {"0-63": 15}
    assert "36x36" in report.sizes
    with Image.open(sheet) as im:
        assert im.format == "PNG"
        assert im.height == 3 * (32 + 4) + 4  # one row per class
    json.dumps(report.to_dict())  # JSON-ready


def test_multi_label_undecodable_and_limit(tmp_path):
    rec = str(tmp_path / "m.rec")
    img = np.zeros((10, 12, 3), np.uint8)
    make_raw_records(
        rec,
        [
            pack_img(IRHeader(0, [1.0, 2.0], 0, 0), img),
            pack_img(IRHeader(0, [1.0, 2.0], 1, 0), img, img_fmt=".png"),
            pack(IRHeader(0, 3.0, 2, 0), b"garbage"),
            b"short",
        ],
    )
    report = inspect_dataset(rec)
    assert report.labels == {"1,2": 2, "3": 1, "(no header)": 1}
    assert report.undecodable == 2
    assert report.formats == {"JPEG": 1, "PNG": 1} and report.sizes == {"12x10": 2}
    limited = inspect_dataset(rec, max_records=2)
    assert limited.records == 2 and not limited.complete
    with pytest.raises(ValueError, match="per_class"):
        inspect_dataset(rec, per_class=0)


def test_contact_sheet_without_images():
    png = contact_sheet({}, {}, {})
    assert png.startswith(b"\x89PNG")


def test_cli_inspect_text_and_json(dataset, tmp_path, capsys, monkeypatch):
    folder, a, b, manifest = dataset
    monkeypatch.chdir(tmp_path)
    assert main(["inspect", manifest, "--split", "val"]) == 0
    out = capsys.readouterr().out
    assert "records: 3" in out and "contact sheet: inspect-val.png" in out
    assert (tmp_path / "inspect-val.png").exists()
    assert main(["inspect", a.rec, "--json", "--no-sheet"]) == 0
    report = json.loads(capsys.readouterr().out)
    assert report["records"] == 10 and report["sheet"] is None
    assert main(["inspect", str(folder / "nothing.rec")]) == 2
    assert "error" in capsys.readouterr().err
