"""Cross-checks of the format layer against the real MXNet 1.9.1 (the oracle venv).

One oracle run per module does all MXNet work (its import costs 1-2 s): it writes the same
records we write, reads the files we wrote, unpacks our packed records, runs
`mx.io.ImageRecordIter` over our `pack_img` files, and packs images with its own `pack_img`
for us to read. The tests below then compare, each on one aspect.
"""

from __future__ import annotations

import hashlib
import json
import random
from pathlib import Path

import numpy as np
import pytest
from oracle import run_mxnet_json

from recordio_core.format.framing import MAGIC_BYTES
from recordio_core.format.recordio import (
    IRHeader,
    MXIndexedRecordIO,
    MXRecordIO,
    pack,
    pack_img,
    unpack,
    unpack_img,
)

pytestmark = pytest.mark.mxnet


def payload_cases() -> list[bytes]:
    rng = random.Random(20240601)
    cases = [b"", b"a", b"ab", b"abc", b"abcd", b"", MAGIC_BYTES, MAGIC_BYTES * 2, MAGIC_BYTES * 5]
    for prefix in range(9):  # the magic word at every alignment, with every tail length
        cases.append(b"p" * prefix + MAGIC_BYTES + b"s" * (prefix % 5))
    cases.append(MAGIC_BYTES + rng.randbytes(100) + MAGIC_BYTES)  # at the start and the end
    cases.append(rng.randbytes(101) + MAGIC_BYTES)  # an unaligned one at the end
    cases.append(MAGIC_BYTES[:3] + MAGIC_BYTES + MAGIC_BYTES[1:])
    big = bytearray(rng.randbytes(300_001))
    for k in range(0, 300_000, 40_000):
        big[k : k + 4] = MAGIC_BYTES  # aligned: cut
        big[k + 9 : k + 13] = MAGIC_BYTES  # unaligned: kept
    cases.append(bytes(big))
    cases += [rng.randbytes(rng.randint(0, 5000)) for _ in range(40)]
    return cases


PAYLOADS = payload_cases()
KEYS = [i * 7 + 3 for i in range(len(PAYLOADS))]

# (flag given, label, id, id2, data): pack() must force flag 0 for numbers and len for arrays
HEADERS = [
    (0, 0.0, 0, 0, b""),
    (9, 3.5, 2**64 - 1, 2**64 - 1, b"x"),
    (0, [1.0, 2.0], 7, 0, MAGIC_BYTES + b"img" + MAGIC_BYTES),
    (0, [5.0], 1, 2, b"one label in an array"),
    (3, -1.25, 42, 0, bytes(range(256)) * 4),
    (0, [float(i) / 8 for i in range(10)], 2**63, 2**32, MAGIC_BYTES * 3),
    (0, [0.1, 1e30, -3.4e38], 5, 6, b"\0\0\0"),
]

IMG_H, IMG_W = 8, 6


def sha(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def make_images() -> dict[str, np.ndarray]:
    rng = np.random.default_rng(5)
    yy, xx = np.mgrid[0:40, 0:50]
    return {
        "noisy": rng.integers(0, 256, (IMG_H, IMG_W, 3), dtype=np.uint8),
        "smooth": np.stack([yy * 5, xx * 4, (yy + xx) * 2], axis=2).astype(np.uint8),
        "gray": rng.integers(0, 256, (33, 21), dtype=np.uint8),
    }


ORACLE = r"""
import hashlib, json, sys
import numpy as np
import mxnet as mx
from mxnet import recordio

d = sys.argv[1]
spec = json.load(open(d + "/spec.json"))
blob = open(d + "/payloads.bin", "rb").read()
payloads, pos = [], 0
for n in spec["lengths"]:
    payloads.append(blob[pos:pos + n])
    pos += n
sha = lambda b: hashlib.sha256(b).hexdigest()
out = {}

# 1. MXNet writes the same records (indexed) and packed headers
w = recordio.MXIndexedRecordIO(d + "/mx.idx", d + "/mx.rec", "w")
for key, p in zip(spec["keys"], payloads):
    w.write_idx(key, p)
w.close()
w = recordio.MXRecordIO(d + "/mx_packed.rec", "w")
for flag, label, id_, id2, data in spec["headers"]:
    w.write(recordio.pack(recordio.IRHeader(flag, label, id_, id2), bytes.fromhex(data)))
w.close()

# 2. MXNet reads our files: sequentially, and by key in reverse order
r = recordio.MXRecordIO(d + "/ours.rec", "r")
seq = []
while True:
    b = r.read()
    if b is None:
        break
    seq.append(sha(b))
r.close()
out["seq"] = seq
r = recordio.MXIndexedRecordIO(d + "/ours.idx", d + "/ours.rec", "r")
out["keys"] = r.keys
out["by_key"] = {str(k): sha(r.read_idx(k)) for k in reversed(r.keys)}
r.close()

# 3. MXNet unpacks our packed records
r = recordio.MXRecordIO(d + "/ours_packed.rec", "r")
unpacked = []
while True:
    b = r.read()
    if b is None:
        break
    h, s = recordio.unpack(b)
    label = h.label.tolist() if h.flag > 0 else h.label
    unpacked.append([h.flag, label, h.id, h.id2, s.hex()])
r.close()
out["unpacked"] = unpacked

# 4. ImageRecordIter over our pack_img files
out["iter"] = {}
for name, lw, shape in spec["iters"]:
    it = mx.io.ImageRecordIter(
        path_imgrec=d + "/" + name + ".rec", data_shape=tuple(shape), batch_size=spec["n_img"],
        label_width=lw, shuffle=False, preprocess_threads=1, round_batch=False,
    )
    batch = next(iter(it))
    np.save(d + "/iter_" + name + ".npy", batch.data[0].asnumpy())
    out["iter"][name] = {"labels": batch.label[0].asnumpy().tolist(), "pad": batch.pad}

# 5. MXNet's pack_img of (BGR) arrays, and its own unpack_img of them
imgs = np.load(d + "/images.npz")
w = recordio.MXIndexedRecordIO(d + "/mx_img.idx", d + "/mx_img.rec", "w")
decoded = {}
for i, (name, fmt, quality, label) in enumerate(spec["mx_images"]):
    s = recordio.pack_img(recordio.IRHeader(0, label, 1000 + i, 0), imgs[name], quality, fmt)
    w.write_idx(i, s)
    for c in (-1, 0, 1):
        decoded["%d_%d" % (i, c)] = recordio.unpack_img(s, c)[1]
w.close()
np.savez(d + "/mx_decoded.npz", **decoded)
print(json.dumps(out))
"""


@pytest.fixture(scope="module")
def oracle(tmp_path_factory, mxnet_python) -> dict:
    d = tmp_path_factory.mktemp("mxcompat")
    (d / "payloads.bin").write_bytes(b"".join(PAYLOADS))
    with MXIndexedRecordIO(str(d / "ours.idx"), str(d / "ours.rec"), "w") as w:
        for key, p in zip(KEYS, PAYLOADS, strict=True):
            w.write_idx(key, p)
    with MXRecordIO(str(d / "ours_packed.rec"), "w") as w:
        for flag, label, id_, id2, data in HEADERS:
            w.write(pack(IRHeader(flag, label, id_, id2), data))

    images = make_images()
    np.savez(d / "images.npz", **images)
    rng = np.random.default_rng(9)
    n_img = 6
    small = [rng.integers(0, 256, (IMG_H, IMG_W, 3), dtype=np.uint8) for _ in range(n_img)]
    np.save(d / "small.npy", np.stack(small))
    big = [np.roll(images["smooth"], 3 * i, axis=1) for i in range(n_img)]
    np.save(d / "big.npy", np.stack(big))
    with MXIndexedRecordIO(str(d / "png1.idx"), str(d / "png1.rec"), "w") as w:
        for i, img in enumerate(small):
            w.write_idx(i, pack_img(IRHeader(0, float(2 * i), i, 0), img, img_fmt=".png"))
    with MXRecordIO(str(d / "png2.rec"), "w") as w:
        for i, img in enumerate(small):
            w.write(pack_img(IRHeader(0, [i, i + 0.5], i, 0), img, img_fmt=".png"))
    with MXRecordIO(str(d / "jpg1.rec"), "w") as w:
        for i, img in enumerate(big):
            w.write(pack_img(IRHeader(0, float(i), i, 0), img, quality=95))

    mx_images = [
        ("noisy", ".png", 95, 1.0),  # MXNet's default quality 95 with PNG: OpenCV clamps to 9
        ("noisy", ".jpg", 90, 2.0),
        ("smooth", ".jpg", 95, [3.0, 4.0]),
        ("smooth", ".png", 3, 5.0),
        ("gray", ".jpg", 80, 6.0),
        ("gray", ".png", 1, [7.0]),
    ]
    spec = {
        "lengths": [len(p) for p in PAYLOADS],
        "keys": KEYS,
        "headers": [[f, lab, i, i2, data.hex()] for f, lab, i, i2, data in HEADERS],
        "iters": [
            ["png1", 1, [3, IMG_H, IMG_W]],
            ["png2", 2, [3, IMG_H, IMG_W]],
            ["jpg1", 1, [3, 40, 50]],
        ],
        "n_img": n_img,
        "mx_images": mx_images,
    }
    (d / "spec.json").write_text(json.dumps(spec))
    result = run_mxnet_json(ORACLE, str(d))
    return {"dir": d, "out": result, "spec": spec, "images": images}


def read_all(rec: str) -> list[bytes]:
    out = []
    with MXRecordIO(rec, "r") as r:
        while (b := r.read()) is not None:
            out.append(b)
    return out


class TestByteIdentical:
    def test_rec_and_idx_identical_to_mxnets(self, oracle):
        d = oracle["dir"]
        assert (d / "ours.rec").read_bytes() == (d / "mx.rec").read_bytes()
        assert (d / "ours.idx").read_bytes() == (d / "mx.idx").read_bytes()

    def test_packed_records_identical_to_mxnets(self, oracle):
        d = oracle["dir"]
        assert (d / "ours_packed.rec").read_bytes() == (d / "mx_packed.rec").read_bytes()


class TestMXNetReadsOurs:
    def test_sequential(self, oracle):
        assert oracle["out"]["seq"] == [sha(p) for p in PAYLOADS]

    def test_by_key(self, oracle):
        assert oracle["out"]["keys"] == KEYS
        assert oracle["out"]["by_key"] == {
            str(k): sha(p) for k, p in zip(KEYS, PAYLOADS, strict=True)
        }

    def test_mxnet_unpacks_our_headers(self, oracle):
        got = oracle["out"]["unpacked"]
        for (_, label, id_, id2, data), (flag, mx_label, mx_id, mx_id2, mx_data) in zip(
            HEADERS, got, strict=True
        ):
            if isinstance(label, list):
                assert flag == len(label)
                np.testing.assert_array_equal(
                    np.float32(mx_label), np.asarray(label, dtype=np.float32)
                )
            else:
                assert flag == 0 and mx_label == np.float32(label)
            assert (mx_id, mx_id2, bytes.fromhex(mx_data)) == (id_, id2, data)


class TestWeReadMXNets:
    def test_sequential(self, oracle):
        assert read_all(str(oracle["dir"] / "mx.rec")) == PAYLOADS

    def test_indexed(self, oracle):
        d = oracle["dir"]
        with MXIndexedRecordIO(str(d / "mx.idx"), str(d / "mx.rec"), "r") as r:
            assert r.keys == KEYS
            for key, payload in reversed(list(zip(KEYS, PAYLOADS, strict=True))):
                assert r.read_idx(key) == payload

    def test_unpack_mxnet_packed(self, oracle):
        records = read_all(str(oracle["dir"] / "mx_packed.rec"))
        for (_, label, id_, id2, data), rec in zip(HEADERS, records, strict=True):
            header, rest = unpack(rec)
            assert (header.id, header.id2, rest) == (id_, id2, data)
            if isinstance(label, list):
                assert header.flag == len(label)
                np.testing.assert_array_equal(header.label, np.asarray(label, np.float32))
            else:
                assert (header.flag, header.label) == (0, np.float32(label))


class TestImageRecordIter:
    @pytest.mark.parametrize("name", ["png1", "png2"])
    def test_reads_our_png_records_exactly(self, oracle, name):
        d = oracle["dir"]
        info = oracle["out"]["iter"][name]
        small = np.load(d / "small.npy")
        data = np.load(d / f"iter_{name}.npy")
        assert info["pad"] == 0
        assert data.shape == (6, 3, IMG_H, IMG_W)
        # ImageRecordIter yields RGB, which is what our pack_img takes by default
        np.testing.assert_array_equal(data.transpose(0, 2, 3, 1), small.astype(np.float32))
        if name == "png1":
            assert info["labels"] == [2.0 * i for i in range(6)]
        else:
            assert info["labels"] == [[i, i + 0.5] for i in range(6)]

    def test_reads_our_jpeg_records(self, oracle):
        d = oracle["dir"]
        info = oracle["out"]["iter"]["jpg1"]
        data = np.load(d / "iter_jpg1.npy")
        assert data.shape == (6, 3, 40, 50)
        assert info["labels"] == [float(i) for i in range(6)]
        ours = np.stack([unpack_img(r)[1] for r in read_all(str(d / "jpg1.rec"))])
        diff = np.abs(data.transpose(0, 2, 3, 1) - ours.astype(np.float32))
        assert diff.max() <= 2, "MXNet's bundled OpenCV and Pillow decode our JPEGs alike"
        big = np.load(d / "big.npy").astype(np.float32)
        assert np.abs(data.transpose(0, 2, 3, 1) - big).mean() < 2  # quality 95


class TestUnpackMXNetImages:
    def test_headers_and_pixels(self, oracle):
        d = oracle["dir"]
        images = oracle["images"]
        decoded = np.load(d / "mx_decoded.npz")
        with MXIndexedRecordIO(str(d / "mx_img.idx"), str(d / "mx_img.rec"), "r") as r:
            records = [r.read_idx(k) for k in r.keys]
        for i, (name, fmt, _, label) in enumerate(oracle["spec"]["mx_images"]):
            header, _ = unpack(records[i])
            assert header.id == 1000 + i
            if isinstance(label, list):
                np.testing.assert_array_equal(header.label, np.float32(label))
            else:
                assert header.label == label
            for iscolor in (-1, 0, 1):
                theirs = decoded[f"{i}_{iscolor}"]
                _, bgr = unpack_img(records[i], iscolor, channel_order="bgr")
                assert bgr.shape == theirs.shape, (name, fmt, iscolor)
                if iscolor == 0 and images[name].ndim == 3:
                    # colour -> gray: OpenCV's and Pillow's formulas differ in rounding; for
                    # JPEG OpenCV also lets libjpeg convert while decoding
                    limit = 1 if fmt == ".png" else 16
                    assert np.abs(bgr.astype(int) - theirs).max() <= limit, (name, fmt)
                else:
                    np.testing.assert_array_equal(bgr, theirs, err_msg=f"{name}{fmt} {iscolor}")
                if bgr.ndim == 3:
                    _, rgb = unpack_img(records[i], iscolor)
                    np.testing.assert_array_equal(rgb, bgr[:, :, ::-1])
            if fmt == ".png" and images[name].ndim == 3:  # lossless: our RGB is their BGR
                _, rgb = unpack_img(records[i])
                np.testing.assert_array_equal(rgb, images[name][:, :, ::-1])


def test_payload_cases_cover_the_interesting_shapes():
    assert b"" in PAYLOADS and MAGIC_BYTES in PAYLOADS
    assert any(p.startswith(MAGIC_BYTES) and p.endswith(MAGIC_BYTES) for p in PAYLOADS)
    assert {p.find(MAGIC_BYTES) % 4 for p in PAYLOADS if MAGIC_BYTES in p} == {0, 1, 2, 3}
    assert Path(__file__).name == "test_mxnet_compat_format.py"
