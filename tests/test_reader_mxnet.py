"""The reader against MXNet 1.9.1's `mx.io.ImageRecordIter` on the same `.rec` files."""

from __future__ import annotations

import json
import os

import numpy as np
import pytest
from oracle import run_mxnet, run_mxnet_json
from reader_data import make_dataset

from recordio_core.format.recordio import IRHeader, MXIndexedRecordIO, pack, unpack
from recordio_core.reading.reader import ImageRecordReader

pytestmark = pytest.mark.mxnet

ITER_SCRIPT = r"""
import json, sys
import numpy as np
import mxnet as mx
configs = json.loads(open(sys.argv[1]).read())
out = {}
for name, kw in configs.items():
    it = mx.io.ImageRecordIter(**kw)
    data, label, pad = [], [], []
    for b in it:
        data.append(b.data[0].asnumpy())
        label.append(b.label[0].asnumpy())
        pad.append(int(b.pad))
    np.savez(sys.argv[2] + "/" + name + ".npz", data=np.concatenate(data),
             label=np.concatenate(label), pad=np.array(pad))
    out[name] = len(pad)
print(json.dumps(out))
"""


def _ours(rec: str, **kw) -> tuple[np.ndarray, np.ndarray, list[int]]:
    with ImageRecordReader(rec, preprocess_threads=2, **kw) as reader:
        batches = list(reader)
    return (
        np.concatenate([b.data for b in batches]),
        np.concatenate([b.label for b in batches]),
        [b.pad for b in batches],
    )


@pytest.fixture(scope="module")
def mx_results(tmp_path_factory, mxnet_python):
    folder = tmp_path_factory.mktemp("mxread")
    ds = make_dataset(str(folder), "data", n=23)
    base = {"path_imgrec": ds.rec, "batch_size": 5}
    configs = {
        "plain": {**base, "data_shape": [3, 24, 24]},
        "imglist4": {
            **base,
            "data_shape": [3, 24, 24],
            "path_imglist": ds.lst,
            "label_width": 4,
            "resize": 28,
        },
        "imglist1": {**base, "data_shape": [3, 20, 30], "path_imglist": ds.lst},
        "gray": {**base, "data_shape": [1, 20, 20], "resize": 22},
        "norm": {
            **base,
            "data_shape": [3, 24, 24],
            "mean_r": 123.68,
            "mean_g": 116.28,
            "mean_b": 103.53,
            "std_r": 58.4,
            "std_g": 57.1,
            "std_b": 57.4,
        },
        "noround": {**base, "data_shape": [3, 16, 16], "round_batch": False, "batch_size": 4},
    }
    for k in range(3):
        configs[f"ipart{k}"] = {
            **base,
            "path_imgidx": ds.idx,
            "data_shape": [3, 16, 16],
            "num_parts": 3,
            "part_index": k,
            "round_batch": False,
            "batch_size": 1,
        }
        configs[f"part{k}"] = {
            **base,
            "data_shape": [3, 16, 16],
            "num_parts": 3,
            "part_index": k,
            "round_batch": False,
            "batch_size": 1,
        }
    cfg = folder / "configs.json"
    cfg.write_text(json.dumps(configs))
    run_mxnet_json(ITER_SCRIPT, str(cfg), str(folder))
    results = {name: dict(np.load(folder / f"{name}.npz")) for name in configs}
    return ds, configs, results


def _kwargs(config: dict) -> dict:
    kw = dict(config)
    kw.pop("path_imgrec")
    kw["data_shape"] = tuple(kw["data_shape"])
    return kw


@pytest.mark.parametrize("name", ["plain", "imglist4", "imglist1", "gray", "norm"])
def test_same_labels_and_close_pixels(mx_results, name):
    ds, configs, results = mx_results
    theirs = results[name]
    data, label, pads = _ours(ds.rec, use_index=False, **_kwargs(configs[name]))
    assert label.shape == theirs["label"].shape
    np.testing.assert_array_equal(label, theirs["label"])
    assert pads == theirs["pad"].tolist()
    assert data.shape == theirs["data"].shape
    diff = np.abs(data.astype(np.float64) - theirs["data"])
    if name == "norm":  # back to grey levels
        diff *= np.array([58.4, 57.1, 57.4])[None, :, None, None]
    assert diff.max() <= 2.0, f"max pixel difference {diff.max()}"
    assert diff.mean() < 0.5


def test_labels_with_index_match(mx_results):
    """The same order through the `.idx` (MXNet reads records in file order, so do we)."""
    ds, configs, results = mx_results
    _, label, _ = _ours(ds.rec, **_kwargs(configs["imglist4"]))
    np.testing.assert_array_equal(label, results["imglist4"]["label"])


def test_short_last_batch_without_round_batch(mx_results):
    ds, configs, results = mx_results
    data, label, pads = _ours(ds.rec, **_kwargs(configs["noround"]))
    theirs = results["noround"]
    # MXNet fills the short last batch with stale data and pad 0; we return it short
    n = len(ds.ids)
    assert len(label) == n and pads == [0] * len(pads)
    np.testing.assert_array_equal(label, theirs["label"][:n])
    assert np.abs(data - theirs["data"][:n]).max() <= 2.0


def test_byte_range_parts_match_mxnet(mx_results):
    """Without an index our parts hold exactly the records MXNet's parts hold."""
    ds, configs, results = mx_results
    seen = []
    for k in range(3):
        data, label, _ = _ours(ds.rec, use_index=False, **_kwargs(configs[f"part{k}"]))
        theirs = results[f"part{k}"]
        np.testing.assert_array_equal(label, theirs["label"])
        assert np.abs(data - theirs["data"]).max() <= 2.0
        seen.extend(label.tolist())
    assert len(seen) == len(ds.ids)


def test_indexed_parts_match_mxnet_with_part_style(mx_results):
    """With an index MXNet cuts ceil(n / parts) records per part; part_style="mxnet" agrees,
    the default balances counts; both cover every record once."""
    ds, configs, results = mx_results
    mx_sizes, ours_sizes = [], []
    for k in range(3):
        kw = _kwargs(configs[f"ipart{k}"])
        path_imgidx = kw.pop("path_imgidx")
        _, label, _ = _ours(ds.rec, path_imgidx=path_imgidx, part_style="mxnet", **kw)
        np.testing.assert_array_equal(label, results[f"ipart{k}"]["label"])
        mx_sizes.append(len(label))
        _, balanced, _ = _ours(ds.rec, path_imgidx=path_imgidx, **kw)
        ours_sizes.append(len(balanced))
    assert mx_sizes == [8, 8, 7] and ours_sizes == [7, 8, 8]


INSIGHTFACE_SCRIPT = r"""
import json, sys
import numpy as np
from mxnet import recordio
r = recordio.MXIndexedRecordIO(sys.argv[1], sys.argv[2], "r")
h0, s0 = recordio.unpack(r.read_idx(0))
out = {"keys": sorted(int(k) for k in r.keys), "flag0": int(h0.flag),
       "label0": [float(x) for x in h0.label], "rest0": len(s0)}
rows = []
for k in sorted(r.keys)[1:]:
    h, s = recordio.unpack(r.read_idx(k))
    rows.append([int(k), int(h.flag), float(h.label) if h.flag == 0 else list(map(float, h.label)),
                 int(h.id), s.hex()])
out["rows"] = rows
if len(sys.argv) > 3:  # write one back in MXNet's hands
    w = recordio.MXIndexedRecordIO(sys.argv[3] + ".idx", sys.argv[3] + ".rec", "w")
    w.write_idx(0, recordio.pack(recordio.IRHeader(2, [4.0, 6.0], 0, 0), b""))
    for i in range(1, 4):
        w.write_idx(i, recordio.pack(recordio.IRHeader(0, float(i % 2), i, 0), bytes([i]) * 9))
    for i in range(4, 6):
        w.write_idx(i, recordio.pack(recordio.IRHeader(2, [float(i - 4 + 1), float(i)], 0, 0),
                                     b""))
    w.close()
print(json.dumps(out))
"""


def test_insightface_metadata_record_reads_unchanged(tmp_path, mxnet_python):
    """InsightFace: record 0 holds metadata (flag 2: [first identity record, end]) and no
    image; identity records after the images hold ranges. The MXIndexedRecordIO API reads
    them unchanged in both directions."""
    prefix = str(tmp_path / "faces")
    w = MXIndexedRecordIO(prefix + ".idx", prefix + ".rec", "w")
    w.write_idx(0, pack(IRHeader(2, [4.0, 6.0], 0, 0), b""))
    payloads = {i: bytes([i]) * (5 + i) for i in range(1, 4)}
    for i, p in payloads.items():
        w.write_idx(i, pack(IRHeader(0, float(i % 2), i, 0), p))
    for i in range(4, 6):
        w.write_idx(i, pack(IRHeader(2, [float(i - 3), float(i - 2)], 0, 0), b""))
    w.close()
    out = run_mxnet_json(INSIGHTFACE_SCRIPT, prefix + ".idx", prefix + ".rec")
    assert out["keys"] == list(range(6))
    assert out["flag0"] == 2 and out["label0"] == [4.0, 6.0] and out["rest0"] == 0
    for k, flag, label, rid, hexdata in out["rows"]:
        if k < 4:
            assert (flag, label, rid) == (0, float(k % 2), k)
            assert bytes.fromhex(hexdata) == payloads[k]
        else:
            assert flag == 2 and label == [float(k - 3), float(k - 2)]

    theirs = str(tmp_path / "theirs")
    run_mxnet(INSIGHTFACE_SCRIPT, prefix + ".idx", prefix + ".rec", theirs)
    r = MXIndexedRecordIO(theirs + ".idx", theirs + ".rec", "r")
    header, rest = unpack(r.read_idx(0))
    assert header.flag == 2 and rest == b""
    np.testing.assert_array_equal(header.label, [4.0, 6.0])
    first, end = (int(x) for x in header.label)
    for i in range(1, first):
        h, s = unpack(r.read_idx(i))
        assert h.flag == 0 and h.label == float(i % 2) and s == bytes([i]) * 9
    for i in range(first, end):
        h, _ = unpack(r.read_idx(i))
        np.testing.assert_array_equal(h.label, [float(i - 4 + 1), float(i)])
    r.close()
    assert os.path.getsize(theirs + ".rec") > 0
