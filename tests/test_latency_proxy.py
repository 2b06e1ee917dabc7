"""The latency proxy itself: every S3 request through it is counted and delayed."""

from __future__ import annotations

import time
from urllib.parse import urlsplit

import pytest
from latency_proxy import LatencyProxy


@pytest.fixture
def proxied(s3_server):
    host_port = urlsplit(s3_server.endpoint_url)
    with LatencyProxy(host_port.hostname, host_port.port, latency=0.05) as proxy:
        yield proxy


def _fs(s3_server, proxy, **config):
    import s3fs

    so = dict(s3_server.storage_options, endpoint_url=proxy.url)
    return s3fs.S3FileSystem(
        **so, skip_instance_cache=True, use_listings_cache=False, config_kwargs=config
    )


def test_each_request_is_counted_and_delayed(s3_server, s3_bucket, proxied):
    fs = _fs(s3_server, proxied)
    fs.pipe_file(f"{s3_bucket}/a", b"x" * 1000)
    proxied.reset_stats()
    start = time.perf_counter()
    assert fs.cat_file(f"{s3_bucket}/a", start=0, end=1000) == b"x" * 1000
    elapsed = time.perf_counter() - start
    stats = proxied.stats()
    assert stats["requests"] == 1
    assert stats["max_in_flight"] == 1
    assert stats["in_flight"] == 0
    assert stats["bytes_down"] > 1000
    assert elapsed >= 0.05  # the one delay is a floor, not a timing target


def test_concurrent_requests_are_in_flight_together(s3_server, s3_bucket, proxied):
    fs = _fs(s3_server, proxied, max_pool_connections=32)
    paths = [f"{s3_bucket}/obj{i}" for i in range(32)]
    fs.pipe({p: b"y" * 100 for p in paths})
    proxied.reset_stats()
    out = fs.cat_ranges(paths, [0] * len(paths), [None] * len(paths), batch_size=32)
    assert out == [b"y" * 100] * len(paths)
    stats = proxied.stats()
    assert stats["requests"] == 32
    assert stats["max_in_flight"] > 10  # beyond botocore's default pool of 10


def test_negative_latency_is_refused():
    with pytest.raises(ValueError, match="latency must be >= 0"):
        LatencyProxy("127.0.0.1", 1, latency=-1)
