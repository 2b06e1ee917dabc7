"""The numpy reader without MXNet: sources, labels, partitions, shuffle, options, errors."""

from __future__ import annotations

import os

import fsspec
import numpy as np
import pytest
from reader_data import make_dataset, make_raw_records, write_manifest

from recordio_core.format.errors import RecordIOError
from recordio_core.format.recordio import IRHeader, pack, pack_img
from recordio_core.reading.reader import (
    ImageRecordIter,
    ImageRecordReader,
    ReaderOptions,
    parse_imglist,
)
from recordio_core.reading.sources import resolve_shards


def read_all(source, **kw):
    kw.setdefault("data_shape", (3, 16, 16))
    kw.setdefault("batch_size", 4)
    kw.setdefault("preprocess_threads", 2)
    with ImageRecordReader(source, **kw) as reader:
        batches = list(reader)
    return batches


def labels_of(batches):
    return np.concatenate([b.label for b in batches]) if batches else np.zeros(0)


def ids_of(batches):
    return [int(i) for b in batches for i in b.index[: len(b.index) - b.pad]]


@pytest.fixture(scope="module")
def ds(tmp_path_factory):
    return make_dataset(str(tmp_path_factory.mktemp("ds")), "data", n=22)


@pytest.fixture(scope="module")
def shards(tmp_path_factory):
    folder = tmp_path_factory.mktemp("shards")
    a = make_dataset(str(folder), "train-00000-of-00002", n=7, start_id=0, seed=1)
    b = make_dataset(str(folder), "train-00001-of-00002", n=6, start_id=100, seed=2)
    v = make_dataset(str(folder), "val-00000-of-00001", n=4, start_id=500, seed=3)
    manifest = write_manifest(str(folder), {"train": [a, b], "val": [v]})
    return folder, a, b, v, manifest


def test_seed_example_multi_label_from_imglist(ds):
    """The seed's call: labels from the .lst (4 per image), matched by record id."""
    it = ImageRecordIter(
        path_imgrec=ds.rec, data_shape=(3, 28, 28), path_imglist=ds.lst, label_width=4
    )
    with it:
        batches = list(it)
    assert len(batches) == len(ds.ids)  # batch_size defaults to 1
    np.testing.assert_array_equal(labels_of(batches), np.asarray(ds.labels4, np.float32))
    assert batches[0].data.shape == (1, 3, 28, 28) and batches[0].data.dtype == np.float32
    assert batches[0].label.shape == (1, 4)


def test_header_labels_and_round_batch(ds):
    batches = read_all(ds.rec, batch_size=5)
    assert [len(b.label) for b in batches] == [5] * 5
    assert [b.pad for b in batches] == [0, 0, 0, 0, 3]
    labels = labels_of(batches)
    np.testing.assert_array_equal(labels[:22], ds.labels)
    np.testing.assert_array_equal(labels[22:], ds.labels[:3])  # wrapped from the start
    assert ids_of(batches) == ds.ids


def test_no_round_batch_gives_short_last_batch(ds):
    batches = read_all(ds.rec, batch_size=5, round_batch=False)
    assert [len(b.label) for b in batches] == [5, 5, 5, 5, 2]
    assert all(b.pad == 0 for b in batches)


def test_fewer_records_than_a_batch_cycles(tmp_path):
    small = make_dataset(str(tmp_path), "s", n=2)
    (batch,) = read_all(small.rec, batch_size=5)
    assert batch.pad == 3
    np.testing.assert_array_equal(batch.label, [0, 1, 0, 1, 0])


def test_packed_header_labels(tmp_path):
    d = make_dataset(str(tmp_path), "p", n=5, pack_label=True)
    batches = read_all(d.rec, label_width=4)
    np.testing.assert_array_equal(labels_of(batches)[:5], np.asarray(d.labels4, np.float32))
    with pytest.raises(RecordIOError, match="holds 4 labels but label_width is 1"):
        read_all(d.rec)


def test_label_width_needs_a_source_of_labels(ds):
    with pytest.raises(RecordIOError, match="label_width=4 needs path_imglist"):
        read_all(ds.rec, label_width=4)


def test_missing_id_in_imglist_names_record(ds, tmp_path):
    lst = tmp_path / "short.lst"
    lst.write_text("0\t1.0\ta.jpg\n")
    with pytest.raises(
        RecordIOError, match=r"data.rec record at offset \d+: record id 3 is not in"
    ):
        read_all(ds.rec, path_imglist=str(lst))


def test_parse_imglist_is_mxnet_tolerant():
    text = "5 1.5 2.5 a b.jpg\n\n 7\t3\t4\tc.jpg\r\n5 9 9 x.jpg\n"
    labels = parse_imglist(text, 2)
    assert list(labels) == [5, 7]
    np.testing.assert_array_equal(labels[5], [9, 9])  # a later line wins, as in MXNet
    with pytest.raises(ValueError, match=r"<imglist>:1: label_width=4 needs 4"):
        parse_imglist("1 2 a.jpg", 4)
    with pytest.raises(ValueError, match=r":1: expected an integer index"):
        parse_imglist("x 2 a.jpg", 1)


@pytest.mark.parametrize("use_index", [True, False])
@pytest.mark.parametrize("parts", [1, 2, 3, 5, 8])
def test_parts_cover_every_record_once(ds, use_index, parts):
    seen = []
    counts = []
    for k in range(parts):
        batches = read_all(
            ds.rec,
            use_index=use_index,
            num_parts=parts,
            part_index=k,
            round_batch=False,
            batch_size=3,
        )
        got = ids_of(batches)
        counts.append(len(got))
        seen += got
    assert sorted(seen) == ds.ids
    if use_index:
        assert max(counts) - min(counts) <= 1


@pytest.mark.parametrize("parts", [1, 2, 4, 7])
def test_parts_over_many_shards(shards, parts):
    folder, a, b, _, _ = shards
    for use_index in (True, False):
        seen = []
        for k in range(parts):
            batches = read_all(
                [a.rec, b.rec],
                num_parts=parts,
                part_index=k,
                round_batch=False,
                use_index=use_index,
            )
            seen += ids_of(batches)
        assert sorted(seen) == a.ids + b.ids


def test_shuffle_is_seeded_global_and_per_epoch(ds):
    with ImageRecordReader(
        ds.rec, data_shape=(3, 8, 8), batch_size=4, shuffle=True, seed=7, round_batch=False
    ) as reader:
        e0 = [int(i) for b in reader for i in b.index]
        e1 = [int(i) for b in reader for i in b.index]
    with ImageRecordReader(
        ds.rec, data_shape=(3, 8, 8), batch_size=6, shuffle=True, seed=7, round_batch=False
    ) as reader:
        again = [int(i) for b in reader for i in b.index]
    assert sorted(e0) == sorted(e1) == ds.ids
    assert e0 != ds.ids and e0 != e1
    assert again == e0  # the order depends on seed and epoch, not on batch size


def test_shuffle_without_index_covers_all(ds):
    batches = read_all(ds.rec, shuffle=True, use_index=False, round_batch=False, seed=3)
    got = ids_of(batches)
    assert sorted(got) == ds.ids and got != ds.ids


def test_sources_list_glob_prefix_folder_manifest(shards):
    folder, a, b, v, manifest = shards
    expected = a.ids + b.ids
    assert ids_of(read_all([a.rec, b.rec], round_batch=False)) == expected
    assert ids_of(read_all(str(folder / "train-*.rec"), round_batch=False)) == expected
    assert ids_of(read_all(manifest, split="train", round_batch=False)) == expected
    assert ids_of(read_all(manifest, split="val", round_batch=False)) == v.ids
    assert ids_of(read_all(a.rec[: -len(".rec")], round_batch=False)) == a.ids
    with pytest.raises(ValueError, match=r"holds splits \['train', 'val'\]"):
        read_all(manifest)
    with pytest.raises(ValueError, match="no split 'test'"):
        read_all(str(folder), split="test")  # a folder with a manifest reads the manifest
    with pytest.raises(ValueError, match="no .rec files match"):
        read_all(str(folder / "nothing-*.rec"))


def test_manifest_records_give_length(shards):
    _, a, b, _, manifest = shards
    with ImageRecordReader(manifest, data_shape=(3, 8, 8), split="train", use_index=False) as r:
        assert r.num_records == len(a.ids) + len(b.ids)
        assert len(r) == r.num_records


def test_labels_from_each_shards_lst(shards):
    _, a, b, _, manifest = shards
    batches = read_all(manifest, split="train", labels_from_lst=True, label_width=4)
    expected = np.asarray(a.labels4 + b.labels4, np.float32)
    np.testing.assert_array_equal(labels_of(batches)[: len(expected)], expected)


def test_remote_filesystem_reads_like_local(ds):
    fs = fsspec.filesystem("memory")
    for path in (ds.rec, ds.idx, ds.lst):
        with open(path, "rb") as f:
            fs.pipe(f"/reader/{os.path.basename(path)}", f.read())
    local = read_all(ds.rec, path_imglist=ds.lst, label_width=4)
    remote = read_all(
        "memory://reader/data.rec", path_imglist="memory://reader/data.lst", label_width=4
    )
    for x, y in zip(local, remote, strict=True):
        np.testing.assert_array_equal(x.data, y.data)
        np.testing.assert_array_equal(x.label, y.label)
    shards_ = resolve_shards("memory://reader/data.rec")
    assert shards_[0].idx == "memory://reader/data.idx"


def test_layout_dtype_and_normalisation_agree(ds):
    base = read_all(ds.rec, dtype="uint8", batch_size=22)[0].data
    assert base.dtype == np.uint8 and base.shape == (22, 3, 16, 16)
    nhwc = read_all(ds.rec, dtype="uint8", batch_size=22, layout="NHWC")[0].data
    np.testing.assert_array_equal(nhwc, base.transpose(0, 2, 3, 1))
    f = read_all(ds.rec, batch_size=22)[0].data
    np.testing.assert_array_equal(f, base.astype(np.float32))
    norm = read_all(
        ds.rec, batch_size=22, mean_r=10, mean_g=20, mean_b=30, std_r=2, std_g=4, std_b=5, scale=3
    )[0].data
    mean = np.array([10, 20, 30], np.float32)[None, :, None, None]
    mul = np.array([3 / 2, 3 / 4, 3 / 5], np.float32)[None, :, None, None]
    np.testing.assert_allclose(norm, (base - mean) * mul, rtol=1e-6, atol=1e-5)


def test_augmentation_is_deterministic_across_threads(ds):
    kw = dict(rand_crop=True, rand_mirror=True, resize=24, seed=11, batch_size=5)
    one = read_all(ds.rec, preprocess_threads=1, **kw)
    three = read_all(ds.rec, preprocess_threads=3, **kw)
    for x, y in zip(one, three, strict=True):
        np.testing.assert_array_equal(x.data, y.data)
    plain = read_all(ds.rec, resize=24, batch_size=5)
    assert any(not np.array_equal(x.data, y.data) for x, y in zip(one, plain, strict=True))


def test_mirror_flips_columns(tmp_path):
    img = np.zeros((16, 16, 3), np.uint8)
    img[:, :8] = 255
    rec = str(tmp_path / "m.rec")
    make_raw_records(
        rec, [pack_img(IRHeader(0, 0.0, i, 0), img, img_fmt=".png") for i in range(40)]
    )
    (batch,) = read_all(rec, rand_mirror=True, batch_size=40, dtype="uint8")
    left = batch.data[:, 0, 8, 0]
    assert set(left.tolist()) == {0, 255}  # some flipped, some not


def test_gray_and_rgba(tmp_path):
    rgba = np.zeros((20, 20, 4), np.uint8)
    rgba[..., 0], rgba[..., 3] = 200, 77
    rec = str(tmp_path / "a.rec")
    make_raw_records(rec, [pack_img(IRHeader(0, 1.0, 0, 0), rgba, img_fmt=".png")])
    (batch,) = read_all(rec, data_shape=(4, 10, 10), batch_size=1, dtype="uint8")
    assert batch.data.shape == (1, 4, 10, 10)
    assert batch.data[0, 0].min() == 200 and batch.data[0, 3].max() == 77
    (gray,) = read_all(rec, data_shape=(1, 10, 10), batch_size=1, dtype="uint8")
    assert gray.data.shape == (1, 1, 10, 10)


def test_undecodable_image_names_the_record(tmp_path):
    rec = str(tmp_path / "bad.rec")
    offsets = make_raw_records(
        rec,
        [
            pack_img(IRHeader(0, 0.0, 1, 0), np.zeros((16, 16, 3), np.uint8)),
            pack(IRHeader(0, 0.0, 2, 0), b"not an image"),
        ],
    )
    with pytest.raises(RecordIOError, match=rf"bad.rec record at offset {offsets[1]} \(id 2\)"):
        read_all(rec, batch_size=1)


def test_mxnet_style_next_and_reset(ds):
    with ImageRecordIter(ds.rec, data_shape=(3, 8, 8), batch_size=10, round_batch=False) as it:
        first = it.next()
        assert [len(it.next().label)] == [10]
        assert len(it.next().label) == 2
        with pytest.raises(StopIteration):
            it.next()
        it.reset()
        np.testing.assert_array_equal(it.next().label, first.label)


def test_breaking_out_early_and_close_do_not_hang(ds):
    reader = ImageRecordReader(ds.rec, data_shape=(3, 8, 8), batch_size=1, prefetch_buffer=1)
    for i, _ in enumerate(reader):
        if i == 1:
            break
    reader.close()
    with pytest.raises(RuntimeError, match="closed"):
        list(reader)


@pytest.mark.parametrize(
    ("kw", "match"),
    [
        ({"data_shape": (2, 8, 8)}, "data_shape"),
        ({"data_shape": (3, 8)}, "data_shape"),
        ({"batch_size": 0}, "batch_size"),
        ({"label_width": 0}, "label_width"),
        ({"std_g": 0}, "std_g"),
        ({"resize": -2}, "resize"),
        ({"inter_method": 5}, "inter_method"),
        ({"num_parts": 2, "part_index": 2}, "part_index"),
        ({"dtype": "uint8", "mean_r": 1.0}, "dtype='uint8'"),
        ({"dtype": "float16"}, "dtype"),
        ({"layout": "CHW"}, "layout"),
        ({"preprocess_threads": 0}, "preprocess_threads"),
        ({"part_style": "even"}, "part_style"),
    ],
)
def test_invalid_options(kw, match):
    kw = {"data_shape": (3, 8, 8), **kw}
    with pytest.raises(ValueError, match=match):
        ReaderOptions(**kw)


def test_unknown_option_lists_the_known_ones(ds):
    with pytest.raises(TypeError, match="reader options are: .*rand_crop"):
        ImageRecordReader(ds.rec, data_shape=(3, 8, 8), max_rotate_angle=10)
    with pytest.raises(ValueError, match="not both"):
        ImageRecordReader(ds.rec, data_shape=(3, 8, 8), path_imglist=ds.lst, labels_from_lst=True)
    with pytest.raises(ValueError, match="path_imgidx names one index"):
        ImageRecordReader([ds.rec, ds.rec], data_shape=(3, 8, 8), path_imgidx=ds.idx)


def test_map_style_dataset_without_torch(shards):
    import pickle
    import subprocess
    import sys

    from recordio_core.reading.torch_dataset import RecordDataset

    _, a, b, _, manifest = shards
    ds = RecordDataset(manifest, split="train", label_width=4, labels_from_lst=True)
    assert len(ds) == len(a.ids) + len(b.ids)
    image, label = ds[len(a.ids)]
    assert image.mode == "RGB" and image.size[0] > 0
    np.testing.assert_array_equal(label, b.labels4[0])
    clone = pickle.loads(pickle.dumps(ds))
    np.testing.assert_array_equal(clone[-1][1], b.labels4[-1])
    with pytest.raises(IndexError):
        ds[len(ds)]
    parts = [RecordDataset([a.rec, b.rec], num_parts=3, part_index=k) for k in range(3)]
    assert sum(len(p) for p in parts) == len(ds)
    gray = RecordDataset(a.rec, mode="L", transform=np.asarray)
    assert gray[0][0].ndim == 2 and gray[0][1] == a.labels[0]
    probe = "import sys, recordio_core.reading.torch_dataset; print('torch' in sys.modules)"
    out = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "False"  # importing the module never imports torch


def test_torch_dataset_if_torch_is_installed(shards):
    torch = pytest.importorskip("torch")
    from recordio_core.reading.torch_dataset import TorchRecordDataset

    _, a, _, _, _ = shards
    ds = TorchRecordDataset(a.rec)
    assert isinstance(ds, torch.utils.data.Dataset)
    image, label = ds[0]
    assert image.dtype == torch.uint8 and image.shape[0] == 3
    assert label.dtype == torch.float32
    loader = torch.utils.data.DataLoader(ds, batch_size=2, collate_fn=lambda x: x)
    assert sum(len(batch) for batch in loader) == len(a.ids)


@pytest.mark.slow
def test_reads_from_s3_with_index_and_shuffle(shards, s3_server, s3_bucket):
    folder, a, b, _, _ = shards
    fs = s3_server.fs()
    for d in (a, b):
        for path in (d.rec, d.idx, d.lst):
            fs.put(path, s3_server.url(s3_bucket, "ds", os.path.basename(path)))
    kw = dict(shuffle=True, seed=5, round_batch=False, label_width=4, labels_from_lst=True)
    kw["shuffle_mode"] = "global"  # remote shards default to the block shuffle
    local = read_all([a.rec, b.rec], **kw)
    remote = read_all(
        s3_server.url(s3_bucket, "ds", "train-*.rec"),
        storage_options=s3_server.storage_options,
        **kw,
    )
    assert ids_of(remote) == ids_of(local)
    for x, y in zip(local, remote, strict=True):
        np.testing.assert_array_equal(x.data, y.data)
        np.testing.assert_array_equal(x.label, y.label)
