"""Object storage at real latency: packing fetches many images at once (one request each,
within a byte budget, transient errors retried per image), shards upload their parts
concurrently, and S3 listings list class folders concurrently. Latency comes from the
`LatencyProxy` in front of moto; the tests assert on its counters, never on timings."""

from __future__ import annotations

import os
from pathlib import Path
from urllib.parse import urlsplit

import pytest
from imagecases import rgb_jpeg
from latency_proxy import LatencyProxy

from recordio_core.building.listing import list_images
from recordio_core.building.pack import PackOptions, pack_shard
from recordio_core.building.shardkey import _fingerprint, fingerprint_size, source_fingerprints
from recordio_core.format.lst import LstEntry
from recordio_core.images.image import ImageOptions
from recordio_core.storage import fetch as fetchmod
from recordio_core.storage.fetch import (
    FetchStats,
    backoff_delays,
    fetch_filesystem,
    fetch_ordered,
    pool_options,
)
from recordio_core.storage.fsio import atomic_write, exists
from recordio_core.storage.upload import MIN_PART, S3PartWriter

pytestmark = pytest.mark.slow

RESIZE = ImageOptions(resize=16)


@pytest.fixture
def proxy(s3_server):
    where = urlsplit(s3_server.endpoint_url)
    with LatencyProxy(where.hostname, where.port, latency=0.02) as p:
        yield p


def proxied(s3_server, proxy) -> dict:
    return dict(s3_server.storage_options, endpoint_url=proxy.url)


def image_tree(root: Path, n: int, classes: int = 4) -> list[LstEntry]:
    """`n` small photos in `classes` folders, and their entries (a shuffled-looking order)."""
    entries = []
    for i in range(n):
        rel = f"class{i % classes}/img{i:03d}.jpg"
        (root / rel).parent.mkdir(parents=True, exist_ok=True)
        (root / rel).write_bytes(rgb_jpeg(24 + i % 7, 20 + i % 5, seed=i))
        entries.append(LstEntry(i, (float(i % classes),), rel))
    return entries


def upload_tree(s3_server, root: Path, bucket: str, prefix: str) -> str:
    fs = s3_server.fs()
    fs.pipe(
        {
            f"{bucket}/{prefix}/{p.relative_to(root).as_posix()}": p.read_bytes()
            for p in root.rglob("*")
            if p.is_file()
        }
    )
    return s3_server.url(bucket, prefix)


def shard_bytes(prefix: Path) -> dict[str, bytes]:
    return {ext: Path(str(prefix) + ext).read_bytes() for ext in (".rec", ".idx", ".lst")}


# --------------------------------------------------------------------------- pure parts


@pytest.mark.parametrize(
    "attempts, first, expected",
    [(1, 0.25, []), (2, 0.25, [0.25]), (4, 0.25, [0.25, 0.5, 1.0]), (3, 0.0, [0.0, 0.0])],
)
def test_backoff_delays(attempts, first, expected):
    assert backoff_delays(attempts, first) == expected


@pytest.mark.parametrize(
    "fingerprint, size",
    [('1234:"etag"', 1234), ("0:x", 0), ("None:x", None), ("missing", None), ("", None)],
)
def test_fingerprint_size(fingerprint, size):
    assert fingerprint_size(fingerprint) == size


def test_pool_is_raised_for_s3_only_and_user_config_is_kept(s3_server):
    fs = s3_server.fs()
    so = {"endpoint_url": "x", "config_kwargs": {"retries": {"max_attempts": 1}}}
    out = pool_options(so, fs, 64)
    assert out["config_kwargs"] == {"retries": {"max_attempts": 1}, "max_pool_connections": 64}
    assert so["config_kwargs"] == {"retries": {"max_attempts": 1}}  # not changed in place
    bigger = {"config_kwargs": {"max_pool_connections": 100}}
    assert pool_options(bigger, fs, 64)["config_kwargs"]["max_pool_connections"] == 100
    import fsspec

    assert pool_options({"a": 1}, fsspec.filesystem("memory"), 64) == {"a": 1}


@pytest.mark.parametrize(
    "kwargs, match",
    [
        ({"io_concurrency": 0}, "io_concurrency must be between 1 and 1024"),
        ({"io_concurrency": 2000}, "io_concurrency must be between 1 and 1024"),
        ({"io_concurrency": True}, "io_concurrency must be an int"),
        ({"io_budget": 0}, "io_budget must be >= 1 byte"),
        ({"io_budget": 1.5}, "io_budget must be an int"),
    ],
)
def test_io_options_are_checked(kwargs, match):
    with pytest.raises(ValueError, match=match):
        PackOptions(**kwargs)


def test_io_concurrency_is_a_flow_parameter_that_never_changes_the_content_key():
    from recordio_flow.flows.build_options import key_parameters, pack_options
    from recordio_flow.flows.cmd_build import register
    from recordio_flow.flows.params import parse_parameters

    p = parse_parameters({"source": "s3://a/b", "output": "s3://a/c", "io_concurrency": 8})
    assert pack_options(p).io_concurrency == 8
    default = parse_parameters({"source": "s3://a/b", "output": "s3://a/c"})
    assert pack_options(default).io_concurrency == 64
    assert key_parameters(pack_options(p)) == key_parameters(pack_options(default))
    with pytest.raises(ValueError, match="io_concurrency"):
        parse_parameters({"source": "s3://a/b", "output": "s3://a/c", "io_concurrency": 0})
    import argparse

    sub = argparse.ArgumentParser().add_subparsers()
    register(sub)
    args = sub.choices["build"].parse_args(["s3://a/b", "s3://a/c", "--io-concurrency", "16"])
    assert args.io_concurrency == 16


def test_fetch_arguments_are_checked(s3_server):
    fs = s3_server.fs()
    for kwargs, match in (
        ({"concurrency": 0}, "concurrency must be >= 1"),
        ({"budget": 0}, "budget must be >= 1"),
        ({"attempts": 0}, "attempts must be >= 1"),
        ({"sizes": [1]}, "sizes has 1 items for 2 paths"),
    ):
        with pytest.raises(ValueError, match=match):
            list(fetch_ordered(fs, ["a", "b"], **kwargs))
    import fsspec

    with pytest.raises(ValueError, match="no async API"):
        list(fetch_ordered(fsspec.filesystem("memory"), ["a"]))


# --------------------------------------------------------------------------- packing


def test_pack_from_s3_has_many_requests_in_flight_one_per_image_and_local_bytes(
    tmp_path, s3_server, s3_bucket, proxy
):
    root = tmp_path / "images"
    entries = image_tree(root, 48)
    url = upload_tree(s3_server, root, s3_bucket, "src")
    so = proxied(s3_server, proxy)
    local = tmp_path / "local"
    quality = {"near_duplicates": True}
    here = pack_shard(entries, str(root), str(local), PackOptions(RESIZE, num_workers=2, **quality))
    for processes in (False, True):
        proxy.reset_stats()
        out = tmp_path / f"remote-{processes}"
        opts = PackOptions(RESIZE, num_workers=2, io_concurrency=64, **quality)
        result = pack_shard(entries, url, str(out), opts, source_options=so, processes=processes)
        stats = proxy.stats()
        assert result.records == 48 and not result.rejects
        assert shard_bytes(out) == shard_bytes(local)  # entry order and bytes as a local pack
        # and the same data-quality facts (source digests, difference hashes)
        assert (result.digests, result.dhashes) == (here.digests, here.dhashes)
        assert stats["requests"] == 48  # one GET per image: no HEAD, no size probe
        assert stats["max_in_flight"] > 24  # far beyond botocore's default pool of 10


def test_io_concurrency_bounds_the_requests_in_flight(tmp_path, s3_server, s3_bucket, proxy):
    root = tmp_path / "images"
    entries = image_tree(root, 40)
    url = upload_tree(s3_server, root, s3_bucket, "src")
    opts = PackOptions(RESIZE, io_concurrency=5)
    pack_shard(entries, url, str(tmp_path / "s"), opts, source_options=proxied(s3_server, proxy))
    assert 1 < proxy.stats()["max_in_flight"] <= 5


def flaky_cat_file(monkeypatch, fs, fails: dict[str, int], exc: Exception) -> dict[str, int]:
    """Make `fs._cat_file` raise `exc` for the first `fails[name]` reads of objects whose name
    ends with `name` (forever when the count is -1); returns the per-name call counts."""
    real = fs._cat_file
    calls: dict[str, int] = {}

    async def cat_file(path, **kwargs):
        for name, count in fails.items():
            if path.endswith(name):
                calls[name] = calls.get(name, 0) + 1
                if count < 0 or calls[name] <= count:
                    raise exc
        return await real(path, **kwargs)

    monkeypatch.setattr(fs, "_cat_file", cat_file)
    monkeypatch.setattr(fetchmod, "DEFAULT_BACKOFF", 0.0)
    return calls


def test_transient_errors_are_retried_per_image(tmp_path, s3_server, s3_bucket, monkeypatch):
    root = tmp_path / "images"
    entries = image_tree(root, 24)
    url = upload_tree(s3_server, root, s3_bucket, "src")
    so = s3_server.storage_options
    opts = PackOptions(RESIZE, num_workers=2, io_concurrency=8)
    fs, _ = fetch_filesystem(url, so, opts.io_concurrency)  # the instance pack_shard uses
    calls = flaky_cat_file(
        monkeypatch, fs, {"img003.jpg": 2, "img017.jpg": 3}, ConnectionError("reset by peer")
    )
    result = pack_shard(entries, url, str(tmp_path / "s"), opts, source_options=so)
    assert result.records == 24 and not result.rejects
    assert calls == {"img003.jpg": 3, "img017.jpg": 4}  # retried alone, until it worked
    pack_shard(entries, str(root), str(tmp_path / "local"), opts)
    assert shard_bytes(tmp_path / "s") == shard_bytes(tmp_path / "local")


def test_an_image_failing_every_attempt_fails_the_shard(
    tmp_path, s3_server, s3_bucket, monkeypatch
):
    root = tmp_path / "images"
    entries = image_tree(root, 12)
    url = upload_tree(s3_server, root, s3_bucket, "src")
    so = s3_server.storage_options
    opts = PackOptions(RESIZE, io_concurrency=4)
    fs, _ = fetch_filesystem(url, so, opts.io_concurrency)
    calls = flaky_cat_file(monkeypatch, fs, {"img005.jpg": -1}, TimeoutError("read timed out"))
    out = tmp_path / "out"
    out.mkdir()
    with pytest.raises(TimeoutError):
        pack_shard(entries, url, str(out / "s"), opts, source_options=so)
    assert calls == {"img005.jpg": fetchmod.DEFAULT_ATTEMPTS}
    assert os.listdir(out) == []  # nothing half-written


def test_permanent_errors_are_rejects(tmp_path, s3_server, s3_bucket, monkeypatch):
    root = tmp_path / "images"
    entries = image_tree(root, 10)
    url = upload_tree(s3_server, root, s3_bucket, "src")
    s3_server.fs().rm(f"{s3_bucket}/src/{entries[2].path}")  # listed, then removed
    so = s3_server.storage_options
    opts = PackOptions(RESIZE, io_concurrency=4)
    fs, _ = fetch_filesystem(url, so, opts.io_concurrency)
    calls = flaky_cat_file(monkeypatch, fs, {"img007.jpg": -1}, PermissionError("denied"))
    result = pack_shard(entries, url, str(tmp_path / "s"), opts, source_options=so)
    reasons = {r.path: r.reason for r in result.rejects}
    assert "not found" in reasons[entries[2].path]
    assert reasons[entries[7].path] == "permission denied"
    assert calls == {"img007.jpg": 1}  # not retried
    assert result.records == 8


def test_byte_budget_is_honoured(tmp_path, s3_server, s3_bucket):
    root = tmp_path / "images"
    image_tree(root, 20)
    url = upload_tree(s3_server, root, s3_bucket, "src")
    fs, base = fetch_filesystem(url, s3_server.storage_options, 16)
    infos = sorted(fs.find(base, detail=True).values(), key=lambda i: i["name"])
    paths = [i["name"] for i in infos]
    sizes = [int(i["size"]) for i in infos]
    expected = [(root / p[len(base) + 1 :]).read_bytes() for p in paths]
    largest = max(sizes)
    for budget in (1, 3 * min(sizes)):
        for known in (sizes, None):
            stats = FetchStats()
            got = list(
                fetch_ordered(fs, paths, sizes=known, concurrency=16, budget=budget, stats=stats)
            )
            assert got == expected
            assert stats.peak_held <= max(budget, largest) + (0 if known else largest)
            assert stats.requests == len(paths)
    # a tiny budget (one image at a time) still packs everything, with the same bytes
    root_entries = [LstEntry(i, (0.0,), p[len(base) + 1 :]) for i, p in enumerate(paths)]
    tiny = pack_shard(
        root_entries,
        url,
        str(tmp_path / "t"),
        PackOptions(RESIZE, io_budget=1),
        source_options=s3_server.storage_options,
        sizes=sizes,
    )
    wide = pack_shard(root_entries, str(root), str(tmp_path / "w"), PackOptions(RESIZE))
    assert tiny.sha256 == wide.sha256 and tiny.records == 20


def test_sizes_must_match_the_entries(tmp_path):
    with pytest.raises(ValueError, match="sizes has 1 items for 2 entries"):
        pack_shard(
            [LstEntry(0, (0.0,), "a.jpg"), LstEntry(1, (0.0,), "b.jpg")],
            str(tmp_path),
            str(tmp_path / "s"),
            PackOptions(),
            sizes=[1],
        )


# --------------------------------------------------------------------------- uploading


def test_multipart_parts_upload_concurrently(s3_server, s3_bucket, proxy):
    import s3fs

    fs = s3fs.S3FileSystem(**proxied(s3_server, proxy), skip_instance_cache=True)
    data = os.urandom(3 * MIN_PART + 12345)
    proxy.reset_stats()
    writer = S3PartWriter(fs, f"{s3_bucket}/big.rec", part_size=MIN_PART, max_in_flight=4)
    for i in range(0, len(data), 1 << 20):
        writer.write(data[i : i + (1 << 20)])
    assert not s3_server.fs().exists(f"{s3_bucket}/big.rec")  # nothing visible yet
    writer.commit()
    assert s3_server.fs().cat_file(f"{s3_bucket}/big.rec") == data
    assert writer.max_parts_in_flight > 1
    assert proxy.stats()["max_in_flight"] > 1


def test_a_failed_upload_leaves_nothing_and_is_aborted(s3_server, s3_bucket):
    import boto3

    class Boom(Exception):
        pass

    so = s3_server.storage_options
    url = s3_server.url(s3_bucket, "ds", "train.rec")
    with pytest.raises(Boom), atomic_write(url, so) as f:
        f.write(os.urandom(2 * 8 * 2**20 + 5))  # two full parts in flight, then a failure
        raise Boom
    assert not exists(url, so)
    client = boto3.client("s3", endpoint_url=s3_server.endpoint_url, region_name="us-east-1")
    assert client.list_multipart_uploads(Bucket=s3_bucket).get("Uploads", []) == []
    # a small file is one PutObject at commit; a failed one never starts an upload
    with atomic_write(url, so) as f:
        f.write(b"small")
        assert not exists(url, so)
    assert s3_server.fs().cat_file(f"{s3_bucket}/ds/train.rec") == b"small"


# --------------------------------------------------------------------------- listing


def test_listing_many_class_folders_concurrently_gives_the_same_listing(
    tmp_path, s3_server, s3_bucket, proxy
):
    root = tmp_path / "images"
    image_tree(root, 48, classes=16)
    (root / "top.jpg").write_bytes(rgb_jpeg(20, 20))
    (root / "class3" / "deeper").mkdir()
    (root / "class3" / "deeper" / "x.png").write_bytes(b"png?")
    url = upload_tree(s3_server, root, s3_bucket, "src")
    so = proxied(s3_server, proxy)
    proxy.reset_stats()
    listing = list_images(url, recursive=True, storage_options=so)
    stats = proxy.stats()
    assert listing == list_images(str(root), recursive=True)
    assert stats["max_in_flight"] > 4  # the class folders were listed at once
    # fingerprints come from the listings: one request per folder, none per object
    proxy.reset_stats()
    paths = [e.path for e in listing.entries]
    fps = source_fingerprints(url, paths, so)
    assert proxy.stats()["requests"] <= 16 + 2
    fs = s3_server.fs()
    walked = {
        info["name"][len(f"{s3_bucket}/src/") :]: _fingerprint(info)
        for _, _, files in fs.walk(f"{s3_bucket}/src", detail=True)
        for info in files.values()
    }
    assert fps == {p: walked[p] for p in paths}
    assert all(fingerprint_size(fps[p]) == (root / p).stat().st_size for p in paths)
    # the listing can take them itself, with no more requests than without
    proxy.reset_stats()
    with_prints = list_images(url, recursive=True, storage_options=so, fingerprints=True)
    assert proxy.stats()["requests"] <= stats["requests"]  # none per object
    assert with_prints == listing and dict(with_prints.fingerprints) == fps
    local = list_images(str(root), recursive=True, fingerprints=True)
    assert dict(local.fingerprints) == source_fingerprints(str(root), paths)
